// Tags taught by example: answer a tag page's photos with y / n (or the buttons), and
// "Tag as…" selected results on the search page. Each answer is one POST of JSON.
(function () {
  "use strict";

  async function teach(url, body) {
    const r = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body), credentials: "same-origin",
    });
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }

  // --- a tag's page -----------------------------------------------------------------------
  const page = document.querySelector(".tag-page");
  if (page) {
    const status = document.getElementById("tag-status");
    async function answer(item, side) {
      if (!item || item.dataset.answered) return;
      item.dataset.answered = side;
      try {
        const info = await teach(page.dataset.url, {[side]: [Number(item.dataset.id)]});
        item.classList.add(side === "add" ? "keep" : "rejected");
        status.textContent = (side === "add" ? "Confirmed. " : "Rejected. ") +
          `The tag now has ${info.count} photos (reload for new suggestions).`;
      } catch (err) {
        delete item.dataset.answered;
        status.textContent = "Not saved: " + err.message;
      }
      const next = item.nextElementSibling;
      if (next) next.focus();
    }
    page.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-answer]");
      if (button) answer(button.closest(".tag-photo"), button.dataset.answer);
    });
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || !["y", "n"].includes(e.key)) return;
      let item = document.activeElement && document.activeElement.closest(".tag-photo");
      if (!item) item = document.querySelector(".tag-photo:not([data-answered])");
      if (item) { e.preventDefault(); answer(item, e.key === "y" ? "add" : "not"); }
    });
  }

  // --- "Tag as…" on the search page -------------------------------------------------------
  const form = document.getElementById("tag-as");
  const results = document.getElementById("results");
  if (form && results) {
    // Selecting is a mode the person turns on, so the results stay as they are until then.
    form.hidden = false;
    const toggle = document.getElementById("tag-select");
    let selecting = false;
    function addBox(tile) {
      if (tile.querySelector(".tag-select")) return;
      const label = document.createElement("label");
      label.className = "tag-select";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = tile.dataset.id;
      label.append(box, " Select");
      tile.append(label);
    }
    new MutationObserver(() => {
      if (selecting) results.querySelectorAll("li[data-id]").forEach(addBox);
    }).observe(results, {childList: true, subtree: true});
    toggle.addEventListener("click", () => {
      selecting = !selecting;
      toggle.setAttribute("aria-pressed", String(selecting));
      document.getElementById("tag-as-fields").hidden = !selecting;
      if (selecting) results.querySelectorAll("li[data-id]").forEach(addBox);
      else results.querySelectorAll(".tag-select").forEach((l) => l.remove());
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = form.elements.tag.value.trim();
      const ids = [...results.querySelectorAll(".tag-select input:checked")].map((b) => Number(b.value));
      const out = document.getElementById("tag-as-status");
      if (!ids.length) { out.textContent = "Select photos first."; return; }
      try {
        const info = await teach(form.dataset.url.replace("__name__", encodeURIComponent(name)), {add: ids});
        out.innerHTML = "";
        const link = document.createElement("a");
        link.href = form.dataset.page.replace("__name__", encodeURIComponent(name));
        link.textContent = `“${info.name}”: ${info.count} photos`;
        out.append("Tagged. ", link);
      } catch (err) {
        out.textContent = "Not tagged: " + err.message;
      }
    });
  }
})();
