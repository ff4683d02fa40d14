"use strict";
// Renders the cards of an apn scan report from the JSON block, one page at a time. Every value taken
// from the records goes through textContent or setAttribute, never through markup.
(function () {
  const PAGE = 48;
  const VERDICTS = ["ai-generated", "inconclusive", "real", "error"];
  const data = JSON.parse(document.getElementById("apn-data").textContent);
  const items = data.records.map((record, index) => ({record, images: data.images[index],
    verdict: record.verdict || "error", key: String(record.path).toLowerCase()}));
  const state = {shown: new Set(VERDICTS), sort: "p-desc", search: "", page: 0};

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function percent(value) {
    return Math.max(0, Math.min(100, 100 * value)) + "%";
  }

  function bar(record) {
    const box = el("div", "bar");
    box.title = "p(AI) " + record.p_ai + ", threshold " + record.threshold;
    if (data.band) {
      const band = el("div", "band");
      band.style.left = percent(data.band[0]);
      band.style.width = percent(data.band[1] - data.band[0]);
      box.append(band);
    }
    const fill = el("div", "fill v-" + (record.verdict || "error"));
    fill.style.width = percent(record.p_ai);
    const mark = el("div", "mark");
    mark.style.left = percent(record.threshold);
    box.append(fill, mark);
    return box;
  }

  function provenance(record) {
    const box = el("div", "small");
    const prov = record.provenance;
    if (!prov) return box;
    const c2pa = prov.c2pa || {};
    let c2paState = "not checked";
    if (c2pa.checked) {
      c2paState = !c2pa.present ? "no manifest" : (c2pa.trusted ? "valid, trusted signer"
        : (c2pa.valid ? "valid, signer not trusted" : "present, not valid"));
    }
    box.append(el("div", null, "declared: " + (prov.summary || "none") + " · C2PA: " + c2paState));
    for (const item of (prov.items || []).slice(0, 4)) {
      const value = item.error ? "unreadable: " + item.error : item.value;
      box.append(el("div", null, item.source + " " + item.field + ": " + String(value).slice(0, 160)));
    }
    return box;
  }

  function reasons(record) {
    const box = el("div");
    if (record.error) box.append(el("div", "reason", "not scored: " + record.error));
    if (record.low_signal) {
      const why = typeof record.low_signal === "string" ? record.low_signal : "too little image signal";
      box.append(el("div", "reason", "low signal: " + why));
    }
    if (record.figure_error) box.append(el("div", "reason", "no explanation figure: " + record.figure_error));
    return box;
  }

  function card(item) {
    const record = item.record;
    const node = el("article", "card");
    node.dataset.verdict = item.verdict;
    const top = el("div", "top");
    if (item.images.thumb) {
      const img = el("img", "thumb");
      img.setAttribute("loading", "lazy");
      img.setAttribute("alt", "thumbnail");
      img.setAttribute("src", item.images.thumb);
      top.append(img);
    } else {
      top.append(el("div", "nothumb", "no preview"));
    }
    const head = el("div", "head");
    const line = el("div");
    line.append(el("span", "badge v-" + item.verdict, item.verdict), el("span", "proof", "evidence, not proof"));
    head.append(line);
    if (record.p_ai !== null && record.p_ai !== undefined) {
      head.append(el("div", "small", "p(AI) " + record.p_ai.toFixed(3) + " · threshold " + record.threshold.toFixed(3)));
      head.append(bar(record));
    }
    const size = record.width ? record.width + "×" + record.height + " px, " + record.crops + " crop(s)" : "";
    head.append(el("div", "small", size));
    top.append(head);
    node.append(top, el("div", "path", record.path), reasons(record), provenance(record));
    if (item.images.figure) {
      const details = el("details");
      details.append(el("summary", null, "explanation figure"));
      const img = el("img", "figure");
      img.setAttribute("loading", "lazy");
      img.setAttribute("alt", "explanation figure");
      img.setAttribute("src", item.images.figure);
      details.append(img);
      node.append(details);
    } else if (record.figure) {
      node.append(el("div", "small", "explanation figure: " + record.figure));
    }
    return node;
  }

  const ORDER = {
    "p-desc": (a, b) => (b.record.p_ai ?? -1) - (a.record.p_ai ?? -1),
    "p-asc": (a, b) => (a.record.p_ai ?? 2) - (b.record.p_ai ?? 2),
    "path": (a, b) => (a.record.path < b.record.path ? -1 : a.record.path > b.record.path ? 1 : 0),
    "verdict": (a, b) => VERDICTS.indexOf(a.verdict) - VERDICTS.indexOf(b.verdict),
  };

  function selected() {
    const chosen = items.filter((item) => state.shown.has(item.verdict)
      && (!state.search || item.key.includes(state.search)));
    return chosen.sort((a, b) => ORDER[state.sort](a, b) || ORDER.path(a, b));
  }

  function pageButton(label, page, current) {
    const button = el("button", null, label);
    button.type = "button";
    if (current) button.setAttribute("aria-current", "page");
    button.addEventListener("click", () => { state.page = page; render(); window.scrollTo(0, 0); });
    return button;
  }

  function render() {
    const chosen = selected();
    const pages = Math.max(1, Math.ceil(chosen.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * PAGE;
    const cards = document.getElementById("cards");
    cards.replaceChildren(...chosen.slice(start, start + PAGE).map(card));
    document.getElementById("shown").textContent = chosen.length
      ? "showing " + (start + 1) + "–" + Math.min(start + PAGE, chosen.length) + " of " + chosen.length
      : "no image matches";
    const pager = document.getElementById("pager");
    pager.replaceChildren();
    if (pages > 1) {
      const near = new Set([0, pages - 1]);
      for (let p = state.page - 2; p <= state.page + 2; p++) if (p >= 0 && p < pages) near.add(p);
      let last = -1;
      for (const p of [...near].sort((a, b) => a - b)) {
        if (p > last + 1) pager.append(el("span", null, "…"));
        pager.append(pageButton(String(p + 1), p, p === state.page));
        last = p;
      }
    }
  }

  const counts = {};
  for (const item of items) counts[item.verdict] = (counts[item.verdict] || 0) + 1;
  const filters = document.getElementById("filters");
  for (const verdict of VERDICTS) {
    const button = el("button", "v-" + verdict, verdict + " (" + (counts[verdict] || 0) + ")");
    button.type = "button";
    button.dataset.verdict = verdict;
    button.setAttribute("aria-pressed", "true");
    button.addEventListener("click", () => {
      if (state.shown.has(verdict)) state.shown.delete(verdict); else state.shown.add(verdict);
      button.setAttribute("aria-pressed", String(state.shown.has(verdict)));
      state.page = 0;
      render();
    });
    filters.append(button);
  }
  document.getElementById("sort").addEventListener("change", (event) => {
    state.sort = event.target.value; state.page = 0; render();
  });
  document.getElementById("search").addEventListener("input", (event) => {
    state.search = event.target.value.toLowerCase(); state.page = 0; render();
  });
  render();
})();
