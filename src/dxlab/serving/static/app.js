// dxlab clinician page: findings in, differential out. Plain JavaScript, no framework, no third-party request.
// Nothing is written to localStorage, sessionStorage or cookies: the patient lives in this page's memory only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const findings = new Map(); // hpo_id -> {name, status: "present" | "excluded"}
  const combo = { options: [], active: -1, seq: 0 };
  let note = null; // {text, mentions} of the last note read
  let predictSeq = 0;
  let updates = 0;
  let changedAt = null; // performance.now() of the first change the next render answers (latency, for the tests)

  // -- helpers ------------------------------------------------------------------------------------------------
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("api-key").value;
    if (key) h["X-API-Key"] = key;
    return h;
  }

  function errorText(status, body) {
    const detail = body && body.detail;
    if (Array.isArray(detail) && detail.length) return `${status}: ${detail.map((d) => d.msg).join("; ")}`;
    return `${status}: ${typeof detail === "string" ? detail : "request failed"}`;
  }

  async function call(url, options = {}) {
    const response = await fetch(url, { ...options, credentials: "same-origin", cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(errorText(response.status, body));
    return body;
  }

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  const percent = (p) => `${(100 * p).toFixed(p >= 0.1 ? 0 : 1)}%`;

  // -- autocomplete (WAI-ARIA combobox with a listbox popup) ---------------------------------------------------
  const input = $("finding-input");
  const listbox = $("suggestions");

  function closeList() {
    listbox.hidden = true;
    listbox.replaceChildren();
    combo.options = [];
    combo.active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function option(term, i) {
    const recorded = findings.get(term.hpo_id);
    return el("li", { id: `term-${i}`, role: "option", "aria-selected": "false", "data-hpo": term.hpo_id,
                      onmousedown: (event) => { event.preventDefault(); pick(i); } },
      term.name,
      term.synonym ? el("span", { class: "syn", text: ` (${term.synonym})` }) : null,
      el("span", { class: "id", text: ` ${term.hpo_id}${recorded ? ", recorded" : ""}` }));
  }

  function showOptions(terms) {
    combo.options = terms;
    if (!terms.length) {
      listbox.replaceChildren(el("li", { role: "option", "aria-disabled": "true", text: "no matching finding" }));
      combo.active = -1;
    } else {
      listbox.replaceChildren(...terms.map(option));
      combo.active = 0;
    }
    listbox.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight();
  }

  function highlight() {
    [...listbox.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === combo.active)));
    const current = combo.active >= 0 ? listbox.children[combo.active] : null;
    if (current) {
      input.setAttribute("aria-activedescendant", current.id);
      current.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function pick(i) {
    const term = combo.options[i];
    if (!term) return;
    addFinding(term.hpo_id, term.name, "present");
    input.value = "";
    closeList();
    input.focus();
  }

  const lookup = debounce(async () => {
    const query = input.value.trim();
    if (!query) return closeList();
    const mine = ++combo.seq;
    try {
      const body = await call(`/v1/terms?limit=10&q=${encodeURIComponent(query)}`);
      if (mine === combo.seq && input.value.trim() === query) showOptions(body.terms);
    } catch (err) {
      setStatus(`Autocomplete unavailable (${err.message})`, true);
    }
  }, 60);

  input.addEventListener("input", lookup);
  input.addEventListener("blur", () => setTimeout(closeList, 150));
  input.addEventListener("keydown", (event) => {
    const n = combo.options.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (listbox.hidden) { lookup(); return; }
      if (!n) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      combo.active = (combo.active + step + n) % n;
      highlight();
    } else if (event.key === "Enter") {
      event.preventDefault(); // the form is never submitted
      if (!listbox.hidden && combo.active >= 0) pick(combo.active);
    } else if (event.key === "Escape") {
      closeList();
    }
  });

  // -- the findings ---------------------------------------------------------------------------------------------
  function addFinding(id, name, status) {
    const known = findings.get(id);
    findings.set(id, { name: name || (known && known.name) || id, status });
    renderFindings();
    scheduleUpdate();
  }

  function setStatusOf(id, status) {
    const known = findings.get(id);
    if (!known || known.status === status) return;
    known.status = status;
    renderFindings();
    renderNote();
    scheduleUpdate();
  }

  function removeFinding(id) {
    findings.delete(id);
    renderFindings();
    renderNote();
    scheduleUpdate();
    input.focus();
  }

  function findingItem([id, f]) {
    const select = el("select", { "aria-label": `Status of ${f.name}`,
                                  onchange: (event) => setStatusOf(id, event.target.value) },
      el("option", { value: "present", text: "present" }),
      el("option", { value: "excluded", text: "excluded (absent)" }));
    select.value = f.status;
    return el("li", { class: f.status, "data-hpo": id },
      el("span", { class: "name" }, f.name, el("span", { class: "id", text: ` ${id}` })),
      select,
      el("button", { type: "button", "aria-label": `Remove ${f.name}`, text: "Remove",
                     onclick: () => removeFinding(id) }));
  }

  function renderFindings() {
    $("findings").replaceChildren(...[...findings.entries()].map(findingItem));
    const present = [...findings.values()].filter((f) => f.status === "present").length;
    $("findings-count").textContent = findings.size ? `(${present} present, ${findings.size - present} excluded)` : "";
    $("no-findings").hidden = findings.size > 0;
  }

  // -- the note -------------------------------------------------------------------------------------------------
  const ASSERTION = { present: "present", negated: "excluded", uncertain: "uncertain, not used",
                      family: "a relative's, not used" };

  function mentionNode(m) {
    const recorded = findings.get(m.hpo_id);
    const kind = recorded && (m.assertion === "present" || m.assertion === "negated")
      ? (recorded.status === "present" ? "present" : "negated") : m.assertion;
    const label = `${m.name || m.hpo_id}: ${ASSERTION[kind]}`;
    if (!recorded || !(kind === "present" || kind === "negated")) {
      return el("mark", { class: kind, title: label }, m.text);
    }
    const other = kind === "present" ? "excluded" : "present";
    return el("button", { type: "button", class: `mention ${kind}`, title: `${label}; click to mark ${other}`,
                          "aria-label": `${m.text} (${label}); mark ${other}`,
                          onclick: () => setStatusOf(m.hpo_id, other) }, m.text);
  }

  function renderNote() {
    const view = $("note-view");
    if (!note) { view.replaceChildren(); return; }
    const parts = [];
    let at = 0;
    for (const m of [...note.mentions].sort((a, b) => a.start - b.start)) {
      if (m.start < at) continue; // overlapping mentions: the first one shown
      parts.push(note.text.slice(at, m.start), mentionNode(m));
      at = m.end;
    }
    parts.push(note.text.slice(at));
    view.replaceChildren(...parts);
  }

  async function readNote() {
    const text = $("note").value;
    if (!text.trim()) return;
    try {
      const body = await call("/v1/annotate", { method: "POST", headers: headers(), body: JSON.stringify({ text }) });
      note = { text, mentions: body.mentions };
      for (const m of body.mentions) {
        if ((m.assertion === "present" || m.assertion === "negated") && !findings.has(m.hpo_id)) {
          const status = m.assertion === "present" ? "present" : "excluded";
          findings.set(m.hpo_id, { name: m.name || m.hpo_id, status });
        }
      }
      if (body.family_history === true) $("family").value = "true";
      renderFindings();
      renderNote();
      scheduleUpdate();
    } catch (err) {
      setStatus(`The note could not be read (${err.message})`, true);
    }
  }
  $("read-note").addEventListener("click", readNote);

  // -- the differential -----------------------------------------------------------------------------------------
  function link(id) {
    const [db, number] = id.split(":");
    const url = db === "OMIM" ? `https://omim.org/entry/${number}`
      : db === "ORPHA" ? `https://www.orpha.net/en/disease/detail/${number}` : null;
    if (!url) return el("span", { text: id });
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer",
                     "aria-label": `${id} (opens ${db === "OMIM" ? "OMIM" : "Orphanet"} in a new tab)` }, id);
  }

  function why(kind, items) {
    if (!items.length) return null;
    const text = items.map((f) => {
      if (kind === "for") return f.name || f.hpo_id;
      const reason = f.finding === "excluded" ? "excluded, usually present" : "rare in this disease";
      return `${f.name || f.hpo_id} (${reason})`;
    }).join(", ");
    return el("p", { class: `why ${kind}` },
      el("span", { class: "label", text: kind === "for" ? "For: " : "Against: " }), text);
  }

  function diagnosisItem(d) {
    const bar = el("span");
    bar.style.width = `${Math.max(0.5, 100 * d.probability).toFixed(1)}%`;
    return el("li", { "data-disease": d.disease_id },
      el("div", { class: "dx-head" },
        el("span", { class: "dx-name", text: d.name || d.disease_id }),
        el("span", { class: "dx-id" }, link(d.disease_id)),
        el("span", { class: "dx-p", text: percent(d.probability) })),
      el("div", { class: "bar", "aria-hidden": "true" }, bar),
      why("for", d.supporting || []),
      why("against", d.against || []));
  }

  function renderAnomaly(anomaly) {
    const box = $("anomaly");
    if (anomaly && anomaly.flag === true) {
      box.textContent = `Unusual presentation (anomaly score ${anomaly.score.toFixed(2)}): this combination of ` +
        "findings, age and sex lies outside the patients the model learned from; its probabilities are less " +
        "reliable here.";
      box.hidden = false;
    } else {
      box.hidden = true;
      box.textContent = "";
    }
  }

  function askItem(s) {
    const who = s.diseases.length
      ? `in ${s.diseases.map((d) => `${d.name || d.disease_id} (${percent(d.frequency)})`).join(", ")}`
      : "in none of the leading diseases: its absence is expected";
    return el("li", { "data-hpo": s.hpo_id },
      el("span", { class: "q", text: s.name || s.hpo_id }),
      el("span", { class: "id", text: ` ${s.hpo_id}, ${s.expected_gain.toFixed(2)} bits` }),
      el("button", { type: "button", "aria-label": `Add ${s.name} as present`, text: "Present",
                     onclick: () => { addFinding(s.hpo_id, s.name, "present"); input.focus(); } }),
      el("button", { type: "button", "aria-label": `Add ${s.name} as absent`, text: "Absent",
                     onclick: () => { addFinding(s.hpo_id, s.name, "excluded"); input.focus(); } }),
      el("div", { class: "who", text: who }));
  }

  function clearResults(text) {
    $("differential").replaceChildren();
    $("ask-next").replaceChildren();
    renderAnomaly(null);
    setStatus(text);
  }

  function render(answer) {
    const prediction = answer.predictions[0];
    const top = prediction.diagnoses;
    $("differential").replaceChildren(...top.map(diagnosisItem));
    $("ask-next").replaceChildren(...(prediction.ask_next || []).map(askItem));
    renderAnomaly(prediction.anomaly);
    const checked = prediction.anomaly && prediction.anomaly.flag === false ? "; anomaly check: typical" : "";
    $("model").textContent = `Model ${answer.model}, version ${answer.model_version}${checked}.`;
    const lead = top[0];
    setStatus(lead ? `Differential updated: ${lead.name || lead.disease_id} first (${percent(lead.probability)}).`
      : "No disease scored.");
    if (changedAt !== null) document.body.dataset.latency = (performance.now() - changedAt).toFixed(1);
    changedAt = null;
    document.body.dataset.updates = String(++updates);
  }

  function patient() {
    const ids = (status) => [...findings].filter(([, f]) => f.status === status).map(([id]) => id);
    const age = parseFloat($("age").value);
    const family = $("family").value;
    return { findings: ids("present"), excluded: ids("excluded"),
             age: Number.isFinite(age) && age >= 0 && age <= 120 ? age : null,
             sex: $("sex").value || null, family_history: family === "" ? null : family === "true" };
  }

  async function update() {
    const body = patient();
    const mine = ++predictSeq;
    if (!body.findings.length) {
      clearResults("Add at least one present finding to see the differential.");
      return;
    }
    setStatus("Updating…");
    try {
      const answer = await call("/v1/predict?ask_next=5", { method: "POST", headers: headers(),
                                                            body: JSON.stringify(body) });
      if (mine === predictSeq) render(answer);
    } catch (err) {
      if (mine === predictSeq) setStatus(`The differential could not be computed (${err.message})`, true);
    }
  }
  // A click (add, exclude, remove, a suggestion) updates at once -- changes made together (a note's findings) share
  // one request; typing an age waits for a pause.
  const refresh = debounce(update, 0);
  const refreshTyped = debounce(update, 250);
  function scheduleUpdate() {
    if (changedAt === null) changedAt = performance.now();
    refresh();
  }
  function scheduleTyped() {
    if (changedAt === null) changedAt = performance.now();
    refreshTyped();
  }

  for (const id of ["sex", "family"]) $(id).addEventListener("change", scheduleUpdate);
  $("age").addEventListener("input", scheduleTyped);
  $("patient-form").addEventListener("submit", (event) => event.preventDefault());
  renderFindings();
})();
