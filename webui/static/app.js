// pixseek search page: conveniences on top of plain HTML forms and links (no build step).
// Every state is a server-rendered URL; this script only makes moving between them smoother.
"use strict";

(function () {
  // A ?token= link has done its job once the cookie is set: keep it out of history.
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  const search = document.querySelector("form.search");
  const example = document.querySelector("form.example");
  const fileInput = example && example.querySelector("input[type=file]");
  const message = document.getElementById("message");
  const progress = document.getElementById("progress");
  const main = document.getElementById("main");
  const maxBytes = example ? Number(example.dataset.maxBytes || 0) : 0;

  function showError(text) {
    message.textContent = text;
    message.hidden = false;
  }

  // Every search says it is under way; the first one after a start also loads the model.
  function loading(text) {
    if (!progress) return;
    const cold = main && main.dataset.modelLoaded === "0";
    progress.textContent = cold
      ? "Loading the model… the first search after a start takes a few seconds."
      : (text || "Searching…");
    document.body.setAttribute("aria-busy", "true");
  }

  function busy(form) {
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    loading(form === example ? "Uploading the image and searching…" : "Searching…");
  }

  // Search by example: send as soon as a file is chosen, dropped or pasted.
  function submitFile(file) {
    if (!file || !file.type.startsWith("image/")) {
      showError("That is not an image file: choose a photo to search by example.");
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      showError("That image is too large to upload: the limit is "
        + Math.round(maxBytes / 1048576) + " MB.");
      return;
    }
    if (fileInput.files[0] !== file) {
      const dt = new DataTransfer();
      dt.items.add(file);
      fileInput.files = dt.files;
    }
    busy(example);
    example.submit();
  }

  if (fileInput) {
    fileInput.addEventListener("change", () => submitFile(fileInput.files[0]));
    document.addEventListener("dragover", (e) => {
      if (e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files")) {
        e.preventDefault();
        document.body.classList.add("dragging");
      }
    });
    document.addEventListener("dragleave", (e) => {
      if (e.relatedTarget === null) document.body.classList.remove("dragging");
    });
    document.addEventListener("drop", (e) => {
      document.body.classList.remove("dragging");
      if (e.dataTransfer && e.dataTransfer.files.length) {
        e.preventDefault();
        submitFile(e.dataTransfer.files[0]);
      }
    });
    document.addEventListener("paste", (e) => {
      const files = e.clipboardData ? Array.from(e.clipboardData.files) : [];
      const image = files.find((f) => f.type.startsWith("image/"));
      if (image) {
        e.preventDefault();
        submitFile(image);
      }
    });
  }

  if (search) {
    const box = search.querySelector("input[name=q]");
    search.addEventListener("submit", (e) => {
      if (!box.value.trim()) {
        e.preventDefault();
        showError("The query is empty: type what the photos show, e.g. 'dog on a beach'.");
        box.focus();
        return;
      }
      busy(search);
    });
    // "/" jumps to the search box, as on most search sites.
    document.addEventListener("keydown", (e) => {
      if (e.key === "/" && !e.ctrlKey && !e.metaKey && !e.target.closest("input, select, dialog")) {
        e.preventDefault();
        box.focus();
        box.select();
      }
    });
  }

  // The filter panel: empty fields stay out of the URL, which is then short and shareable.
  const filters = document.querySelector(".filters form");
  if (filters) {
    filters.addEventListener("submit", () => {
      filters.querySelectorAll("input, select").forEach((el) => {
        if (!el.value || (el.name === "sort" && el.value === "relevance")) el.disabled = true;
      });
      busy(filters);
    });
  }
  // Links that start a search (Similar, Find similar) are searches too.
  document.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-search]");
    if (link && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.button === 0) loading();
  });

  // Justified rows: the exact aspect ratio of each photo (the CSS classes are coarse).
  function shape(tile) {
    const w = Number(tile.dataset.width), h = Number(tile.dataset.height);
    if (w > 0 && h > 0) tile.style.setProperty("--ar", Math.min(Math.max(w / h, 0.4), 3).toFixed(3));
    // A thumbnail that cannot be made (file gone since the search): hide its tile.
    const img = tile.querySelector("img");
    if (img) img.addEventListener("error", () => { tile.hidden = true; });
  }
  document.querySelectorAll(".result").forEach(shape);

  // More: append the next page in place (the link works as a plain page without JS).
  const results = document.getElementById("results");
  const photos = (n) => n + (n === 1 ? " photo" : " photos");
  document.addEventListener("click", async (e) => {
    const more = e.target.closest("#more");
    if (!more || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    loading("Loading more photos…");
    try {
      const resp = await fetch(more.href, { credentials: "same-origin" });
      if (!resp.ok) throw new Error("the server answered " + resp.status);
      const next = new DOMParser().parseFromString(await resp.text(), "text/html");
      const added = [];
      ["strong", "weak"].forEach((kind) => {
        const incoming = next.getElementById(kind);
        if (!incoming) return;
        const tiles = Array.from(incoming.children);
        const list = document.getElementById(kind);
        if (list) {
          list.append(...tiles);
        } else {  // the first weaker matches: the heading comes along with them
          const heading = next.getElementById("weaker");
          if (heading && kind === "weak") results.append(heading);
          results.append(incoming);
        }
        tiles.forEach((t) => { shape(t); added.push(t); });
      });
      const nextMore = next.getElementById("more");
      if (nextMore) more.href = nextMore.href; else more.closest(".more").remove();
      // The heading counts what is on show, appended pages included.
      const shown = document.getElementById("shown");
      if (shown) shown.textContent = photos(document.querySelectorAll("#results .result").length);
      progress.textContent = photos(added.length).replace(" ", " more ") + ".";
      // Keyboard users carry on from the first new photo.
      if (added.length) added[0].querySelector("a.open").focus();
    } catch (err) {
      progress.textContent = "";
      showError("Could not load more photos: " + err.message);
    } finally {
      document.body.removeAttribute("aria-busy");
    }
  });

  // ---- The detail view: a modal dialog with its own URL (?photo=ID), so Back closes it
  // and the address can be shared. Arrow keys and swipes move through the results.
  const dialog = document.getElementById("detail");
  if (!dialog || typeof dialog.showModal !== "function") return;
  const $ = (id) => document.getElementById("detail-" + id);
  let current = null;  // the tile of the photo shown (null when opened from a URL alone)
  let pushed = false;  // whether opening it added a history entry (then closing goes Back)

  const tiles = () => Array.from(document.querySelectorAll(".result:not([hidden])"));
  const tileOf = (id) => tiles().find((t) => t.dataset.id === String(id)) || null;

  function altText(info) {
    const date = (info.date || "").slice(0, 10);
    let text = (info.taken_at ? "Photo taken " : "Photo from ") + date;
    if (info.camera) text += " with " + info.camera;
    const folder = info.path.split("/").slice(-2, -1)[0];
    return text + ", in " + (folder || "the library");
  }
  function size(bytes) {
    if (bytes < 1000) return bytes + " bytes";
    return bytes < 1e6 ? (bytes / 1e3).toFixed(1) + " KB" : (bytes / 1e6).toFixed(1) + " MB";
  }
  function setNav(link, tile) {
    link.hidden = !tile;
    if (tile) link.href = tile.querySelector("a.open").href;
  }

  function fill(info, tile) {
    const img = $("img");
    img.removeAttribute("srcset");  // the old photo must not linger while the new one loads
    img.src = info.thumb_url_2x;
    img.srcset = info.thumb_url_2x + " 640w, " + info.image_url + " " + info.width + "w";
    img.alt = altText(info);
    $("name").textContent = info.path.split("/").pop();
    $("paths").replaceChildren(...info.paths.map((p) => {
      const li = document.createElement("li");
      li.textContent = p;
      return li;
    }));
    $("paths").closest("dd").previousElementSibling.textContent =
      info.paths.length > 1 ? "Paths" : "Path";
    $("date").textContent = (info.date || "unknown").replace("T", " ").slice(0, 16)
      + (info.date_source === "exif" ? " (from EXIF)" : " (file time)");
    $("camera").textContent = info.camera || "unknown";
    const place = info.place;
    $("place").textContent = place
      ? [place.city, place.region, place.country].filter(Boolean).join(", ")
        + " (" + place.latitude.toFixed(5) + ", " + place.longitude.toFixed(5) + ")"
      : "unknown";
    $("text").textContent = info.text || "none read";
    $("dims").textContent = info.width + " × " + info.height + " pixels";
    $("size").textContent = size(info.size);
    $("score").textContent = tile ? Number(tile.dataset.score).toFixed(3) : "not in these results";
    $("similar").href = "/?similar=" + info.id;
    $("original").href = info.image_url;
    const all = tiles(), at = all.indexOf(tile);
    setNav($("prev"), at > 0 ? all[at - 1] : null);
    setNav($("next"), at >= 0 && at + 1 < all.length ? all[at + 1] : null);
    dialog.dataset.id = info.id;
  }

  async function show(tile, how) {
    const href = tile.querySelector("a.open").href;
    current = tile;
    try {
      const resp = await fetch("/api/photos/" + tile.dataset.id, { credentials: "same-origin" });
      const info = await resp.json();
      if (!resp.ok) throw new Error(info.error || resp.status);
      if (current !== tile) return;  // another photo was asked for meanwhile
      fill(info, tile);
    } catch (err) {
      showError("Could not open the photo: " + err.message);
      return;
    }
    if (how === "push") {
      history.pushState({ photo: tile.dataset.id }, "", href);
      pushed = true;
    } else if (how === "replace") {
      history.replaceState({ photo: tile.dataset.id }, "", href);
    }
    if (!dialog.open) {
      dialog.showModal();
      $("close").focus();
    }
  }

  function step(delta) {
    const all = tiles(), at = all.indexOf(current);
    const next = at >= 0 ? all[at + delta] : null;
    if (next) show(next, "replace");
  }

  // Closing: back to the results URL (Back, when opening pushed an entry), focus on the tile.
  function close() {
    if (pushed) {
      history.back();  // popstate finishes the job
      return;
    }
    history.replaceState(null, "", $("close").href);
    hide();
  }
  function hide() {
    pushed = false;
    if (dialog.open) dialog.close();
    if (current) current.querySelector("a.open").focus();
  }

  document.addEventListener("click", (e) => {
    const open = e.target.closest(".result a.open");
    if (!open || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    show(open.closest(".result"), dialog.open ? "replace" : "push");
  });
  $("close").addEventListener("click", (e) => { e.preventDefault(); close(); });
  $("prev").addEventListener("click", (e) => { e.preventDefault(); step(-1); });
  $("next").addEventListener("click", (e) => { e.preventDefault(); step(1); });
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });  // Esc
  dialog.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      step(e.key === "ArrowLeft" ? -1 : 1);
    }
  });
  window.addEventListener("popstate", () => {
    const id = new URL(window.location.href).searchParams.get("photo");
    const tile = id && tileOf(id);
    if (tile) show(tile, null); else hide();
  });

  // Swipe left or right on the photo (pointer events: touch, pen and mouse alike).
  let start = null;
  const media = dialog.querySelector(".detail-media");
  media.addEventListener("pointerdown", (e) => { start = [e.clientX, e.clientY]; });
  media.addEventListener("pointerup", (e) => {
    if (!start) return;
    const dx = e.clientX - start[0], dy = e.clientY - start[1];
    start = null;
    if (Math.abs(dx) > 50 && Math.abs(dx) > 1.5 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
  });
  media.addEventListener("pointercancel", () => { start = null; });

  // Copy path: only where the clipboard API exists (a secure context: localhost, HTTPS).
  const copy = $("copy");
  if (navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", async () => {
      const path = $("paths").firstElementChild.textContent;
      try {
        await navigator.clipboard.writeText(path);
        progress.textContent = "Copied " + path;
      } catch (err) {
        progress.textContent = "Could not copy the path: " + err.message;
      }
    });
  }

  // Opened from its URL (rendered by the server): the same dialog, made modal.
  if (dialog.open) {
    current = tileOf(dialog.dataset.id);
    dialog.close();
    dialog.showModal();
    $("close").focus();
  }

  // Back from another page (restored from cache): the forms are usable again.
  window.addEventListener("pageshow", () => {
    document.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    document.querySelectorAll(".filters [disabled]").forEach((el) => { el.disabled = false; });
    document.body.removeAttribute("aria-busy");
    if (progress) progress.textContent = "";
  });
})();
