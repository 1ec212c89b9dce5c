// pixseek search page: small conveniences on top of plain HTML forms (no build step).
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
  const maxBytes = example ? Number(example.dataset.maxBytes || 0) : 0;

  function showError(text) {
    message.textContent = text;
    message.hidden = false;
  }

  function busy(form) {
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    document.body.setAttribute("aria-busy", "true");
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
      if (e.key === "/" && document.activeElement !== box && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        box.focus();
        box.select();
      }
    });
  }

  // A thumbnail that cannot be made (file gone since the search): hide its tile.
  document.querySelectorAll(".result img").forEach((img) => {
    const hide = () => { img.closest(".result").hidden = true; };
    img.addEventListener("error", hide);
  });

  // Back from a result (page restored from cache): the forms are usable again.
  window.addEventListener("pageshow", () => {
    document.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    document.body.removeAttribute("aria-busy");
  });
})();
