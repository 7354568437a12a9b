// The autowrkers dashboard: a view over the REST API and the event WebSocket of `serve`.
// No framework and no inline script (the page's CSP forbids it); text is always set as text.
"use strict";

const TOKEN = document.querySelector('meta[name="autowrkers-token"]').content;
const API = "/api/workflow";
const view = document.getElementById("view");
let sockets = [];

// ---- helpers -------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
async function api(method, path, body, raw) {
  const opts = { method, headers: { Authorization: "Bearer " + TOKEN } };
  if (body !== undefined) {
    if (raw) { opts.body = body; opts.headers["Content-Type"] = "text/plain; charset=utf-8"; }
    else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  }
  const res = await fetch(API + path, opts);
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const msg = data && data.error ? data.error.message : String(data);
    const err = new Error(msg); err.status = res.status; throw err;
  }
  return data;
}
function usd(x) { return x === null || x === undefined ? "—" : "$" + Number(x).toFixed(4); }
function short(id) { return String(id).slice(0, 8); }
function badge(status) { return h("span", { class: "status s-" + status, "data-status": status }, status.replace(/_/g, " ")); }
function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.classList.add("shown");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.classList.remove("shown"), 2500);
}
function closeSockets() { for (const s of sockets) { s.onclose = null; s.close(); } sockets = []; }
function socket(query, onEvent) {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + API + "/ws?token=" + encodeURIComponent(TOKEN) + query();
  const ws = new WebSocket(url);
  const conn = document.getElementById("conn");
  ws.onopen = () => conn.classList.add("live");
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    conn.classList.remove("live");
    // Reconnect from where it stopped (query() gives the offset to start from).
    if (sockets.includes(ws)) setTimeout(() => { sockets = sockets.filter(s => s !== ws); if (current === route()) socket(query, onEvent); }, 1000);
  };
  sockets.push(ws);
  return ws;
}
function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
// replaceChildren would write a null child as the text "null": empty slots are dropped.
function fill(el, ...children) { el.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined && c !== false)); }
function show(...children) { fill(view, ...children); }
function failure(e) { show(h("div", { class: "card error", "data-error": "" }, e.message || String(e))); }

// ---- executions ----------------------------------------------------------------------
async function executionsView() {
  const body = h("tbody");
  const table = h("table", { id: "executions" },
    h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "status"), h("th", {}, "template"), h("th", {}, "task"), h("th", { class: "num" }, "cost"), h("th", {}, "updated"))),
    body);
  show(h("h1", {}, "Executions"), table);
  const load = async () => {
    const data = await api("GET", "/executions?limit=100");
    fill(body, ...data.executions.map(x => h("tr", { "data-id": x.id },
      h("td", {}, h("a", { href: "#/x/" + x.id, class: "mono" }, short(x.id))),
      h("td", {}, badge(x.status)),
      h("td", {}, x.template),
      h("td", {}, x.task_description.split("\n")[0].slice(0, 120)),
      h("td", { class: "num" }, usd(x.total_cost_usd)),
      h("td", { class: "dim" }, x.updated_at || x.created_at))));
    if (!data.executions.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "dim" }, "No executions yet. Start one under New, or with `autowrkers run`.")));
  };
  await load();
  socket(() => "", debounce(load, 150));
}

function phaseRow(p, outputs) {
  const out = outputs[p.id] || (outputs[p.id] = { lines: [], expanded: false });
  const pre = h("div", { class: "output", "data-output": p.id });
  const toggle = h("button", { class: "toggle", "data-toggle": p.id, onclick: () => { out.expanded = !out.expanded; render(); } });
  function render() {
    const lines = out.lines;
    const hidden = out.expanded ? 0 : Math.max(0, lines.length - 5);
    fill(pre);
    if (hidden) pre.append(h("div", { class: "hidden-note" }, "… " + hidden + " lines hidden"));
    pre.append(lines.slice(hidden).join("\n"));
    toggle.textContent = out.expanded ? "[−] collapse" : "[+] expand";
    pre.hidden = out.lines.length === 0;
    toggle.hidden = lines.length <= 5;
  }
  out.render = render;
  render();
  return h("div", { "data-phase": p.id },
    h("div", { class: "phase" },
      h("div", {}, badge(p.status)),
      h("div", {}, h("b", {}, p.name), " ", h("span", { class: "dim" }, p.role)),
      h("div", { class: "dim" }, "[" + p.provider + (p.model ? " " + p.model : "") + "]"),
      h("div", { class: "num" }, p.cost_usd === null || p.cost_usd === undefined ? "—" : usd(p.cost_usd)),
      h("div", {}, toggle)),
    pre);
}

async function executionView(id) {
  const outputs = {};
  let offset = 0;
  const head = h("div", { class: "card" });
  const phases = h("div", { class: "card", id: "phases" });
  const arts = h("div", { class: "card", id: "artifacts" });
  show(head, phases, arts);
  let detail;
  let shown = "";
  const load = async () => {
    detail = await api("GET", "/executions/" + id);
    const d = detail;
    // Re-rendered only when something changed: a button is not replaced under the pointer.
    const now = JSON.stringify(d);
    if (now === shown) return;
    shown = now;
    const actionButtons = d.actions.map(a => h("button", {
      "data-action": a, class: a === "approve" ? "primary" : (a === "cancel" || a === "reject") ? "danger" : "",
      onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api("POST", "/executions/" + d.id + "/" + a, a === "skip-phase" ? {} : undefined); toast(a + " requested"); }
        catch (e) { toast(e.message); }
        shown = "";
        await load();
      } }, a));
    fill(head, 
      h("h1", {}, d.task_description.split("\n")[0]),
      h("div", { class: "line" },
        h("span", {}, "status ", badge(d.status)),
        h("span", {}, "iteration ", h("b", { "data-iteration": "" }, d.iteration + "/" + d.max_iterations)),
        h("span", {}, "cost ", h("b", {}, usd(d.total_cost_usd) + (d.budget_limit ? " / $" + d.budget_limit.toFixed(2) : ""))),
        h("span", {}, "template ", h("b", {}, d.template.name)),
        h("span", { class: "mono dim" }, d.id)),
      h("div", { class: "dim" }, d.project_path),
      d.message ? h("div", { class: "dim", "data-message": "" }, d.message) : null,
      h("div", { class: "actions" }, actionButtons));
    fill(phases, h("h2", {}, "Phases"), ...d.phases.map(p => phaseRow(p, outputs)));
    fill(arts, h("h2", {}, "Artifacts"),
      d.artifacts.length ? h("table", {}, h("tbody", {}, d.artifacts.map(a => h("tr", {},
        h("td", {}, h("a", { href: "#/a/" + a.id, "data-artifact": a.id }, a.iteration + "/" + a.phase_id)),
        h("td", {}, a.artifact_type), h("td", { class: "dim" }, a.is_edited ? "edited" : ""))))) : h("p", { class: "dim" }, "none yet"));
  };
  await load();
  const reload = debounce(load, 100);
  socket(() => "&execution_id=" + encodeURIComponent(detail.id) + "&since=" + offset, (ev) => {
    offset = ev.offset + 1;
    if (ev.type === "workflow:phase_progress" && ev.text) {
      const out = outputs[ev.phase_id] || (outputs[ev.phase_id] = { lines: [], expanded: false });
      out.lines.push(...ev.text.replace(/\n$/, "").split("\n"));
      if (out.render) out.render();
    } else {
      reload();
    }
  });
}

// ---- artifacts ------------------------------------------------------------------------
async function artifactView(id) {
  const a = await api("GET", "/artifacts/" + id);
  const area = h("textarea", { id: "artifact-text", spellcheck: "false" });
  area.value = a.content;
  const msg = h("div", { id: "artifact-msg" });
  const save = h("button", { class: "primary", id: "artifact-save", onclick: async () => {
    msg.className = ""; msg.textContent = "";
    if (a.artifact_type !== "code_diff" && a.artifact_type !== "implementation_plan" && a.artifact_type !== "documentation") {
      try { JSON.parse(area.value.trim().replace(/^```json\s*|```\s*$/g, "")); }
      catch (e) { msg.className = "error"; msg.textContent = "not saved: invalid JSON: " + e.message; return; }
    }
    try {
      const r = await api("PUT", "/artifacts/" + id, area.value, true);
      msg.className = "ok";
      msg.textContent = "saved. " + (r.stale_phases.length ? "These phases will re-run: " + r.stale_phases.join(", ") : "No phase reads it.") + " (execution " + r.status + ")";
    } catch (e) { msg.className = "error"; msg.textContent = "not saved: " + e.message; }
  } }, "Save");
  const download = h("button", { onclick: async () => {
    const res = await fetch(API + "/artifacts/" + id + "/download", { headers: { Authorization: "Bearer " + TOKEN } });
    const url = URL.createObjectURL(await res.blob());
    h("a", { href: url, download: id }).click();
    URL.revokeObjectURL(url);
  } }, "Download");
  show(h("h1", {}, "Artifact " + a.iteration + "/" + a.phase_id),
    h("div", { class: "line" }, h("span", {}, a.artifact_type), h("a", { href: "#/x/" + a.execution_id }, "execution " + short(a.execution_id)), a.is_edited ? h("span", {}, "edited") : null),
    h("p", { class: "dim", id: "read-by" }, a.read_by.length ? "Saving re-runs: " + a.read_by.join(", ") : "No phase read it yet."),
    area, h("div", { class: "actions" }, save, download), msg);
}

// ---- templates ------------------------------------------------------------------------
async function templatesView() {
  const data = await api("GET", "/templates");
  const importArea = h("textarea", { id: "import-yaml", placeholder: "Paste a template's YAML to import it", style: "min-height:120px" });
  const msg = h("div");
  const rows = data.templates.map(t => h("tr", { "data-template": t.id },
    h("td", {}, h("a", { href: "#/t/" + encodeURIComponent(t.id) }, t.id), t.is_default ? h("span", { class: "dim" }, " (default)") : null),
    h("td", {}, t.name), h("td", { class: "dim" }, t.scope), h("td", { class: "num" }, t.phases),
    h("td", {},
      h("button", { onclick: async () => { const name = prompt("Name of the copy", t.name + " copy"); if (!name) return; try { await api("POST", "/templates/" + encodeURIComponent(t.id) + "/duplicate", { name }); templatesView(); } catch (e) { toast(e.message); } } }, "Duplicate"), " ",
      h("button", { onclick: async () => { try { await api("POST", "/templates/" + encodeURIComponent(t.id) + "/default"); templatesView(); } catch (e) { toast(e.message); } } }, "Set default"), " ",
      t.editable ? h("button", { class: "danger", onclick: async () => { if (!confirm("Delete " + t.id + "?")) return; try { await api("DELETE", "/templates/" + encodeURIComponent(t.id)); templatesView(); } catch (e) { toast(e.message); } } }, "Delete") : null)));
  show(h("h1", {}, "Templates"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "scope"), h("th", { class: "num" }, "phases"), h("th", {}, ""))), h("tbody", {}, rows)),
    data.errors.length ? h("div", { class: "card error" }, data.errors.join("\n")) : null,
    h("h2", {}, "Import"), importArea,
    h("div", { class: "actions" }, h("button", { class: "primary", onclick: async () => {
      try { const r = await api("POST", "/templates/import", importArea.value, true); msg.className = "ok"; msg.textContent = "imported " + r.id; setTimeout(templatesView, 400); }
      catch (e) { msg.className = "error"; msg.textContent = e.message; }
    } }, "Import")), msg);
}

async function templateView(id) {
  const t = await api("GET", "/templates/" + encodeURIComponent(id));
  const area = h("textarea", { id: "template-yaml", spellcheck: "false" });
  area.value = t.yaml;
  const msg = h("div", { id: "template-msg" });
  const exportButton = h("button", { onclick: async () => {
    const yaml = await api("GET", "/templates/" + encodeURIComponent(id) + "/export");
    const url = URL.createObjectURL(new Blob([yaml], { type: "application/yaml" }));
    h("a", { href: url, download: id + ".yaml" }).click(); URL.revokeObjectURL(url);
  } }, "Export");
  const save = t.summary.editable ? h("button", { class: "primary", id: "template-save", onclick: async () => {
    try { await api("PUT", "/templates/" + encodeURIComponent(id), area.value, true); msg.className = "ok"; msg.textContent = "saved"; }
    catch (e) { msg.className = "error"; msg.textContent = e.message; }
  } }, "Save") : h("span", { class: "dim" }, "Built in: duplicate it to edit.");
  show(h("h1", {}, t.template.name), h("div", { class: "line" }, h("span", {}, t.summary.scope), h("span", { class: "mono" }, t.summary.source)),
    area, h("div", { class: "actions" }, save, exportButton), msg);
}

// ---- new execution --------------------------------------------------------------------
async function newView() {
  const [projects, templates] = await Promise.all([api("GET", "/projects"), api("GET", "/templates")]);
  const project = h("select", { id: "new-project" }, projects.projects.map(p => h("option", { value: p }, p)));
  const task = h("textarea", { id: "new-task", style: "min-height:90px", placeholder: "What should change?" });
  const template = h("select", { id: "new-template" }, templates.templates.map(t => h("option", { value: t.id, selected: t.is_default }, t.name + " (" + t.id + ")")));
  const budget = h("input", { type: "number", id: "new-budget", min: "0", step: "0.5", placeholder: "no limit" });
  const interactive = h("input", { type: "checkbox", id: "new-interactive" });
  const estimate = h("div", { id: "estimate" });
  const msg = h("div");
  const start = h("button", { class: "primary", id: "new-start", disabled: true, onclick: async () => {
    try {
      const body = { project_path: project.value, task_description: task.value, template_id: template.value, interactive_mode: interactive.checked };
      if (budget.value) body.budget_limit = Number(budget.value);
      const x = await api("POST", "/executions", body);
      location.hash = "#/x/" + x.id;
    } catch (e) { msg.className = "error"; msg.textContent = e.message; }
  } }, "Start");
  const price = h("button", { id: "new-estimate", onclick: async () => {
    msg.textContent = "";
    try {
      const e = await api("GET", "/cost-estimate?project=" + encodeURIComponent(project.value) + "&template=" + encodeURIComponent(template.value) + "&task=" + encodeURIComponent(task.value || "(task)"));
      fill(estimate, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "phase"), h("th", {}, "provider"), h("th", { class: "num" }, "per call"), h("th", { class: "num" }, "runs"), h("th", { class: "num" }, "subtotal"))),
        h("tbody", {}, e.phases.map(p => h("tr", {}, h("td", {}, p.name), h("td", {}, p.provider), h("td", { class: "num" }, usd(p.per_call_usd)), h("td", { class: "num" }, p.runs), h("td", { class: "num" }, usd(p.subtotal_usd)))))),
        h("p", {}, "Worst case: ", h("b", { "data-total": "" }, usd(e.total_usd)), e.unknown_cost_phases.length ? " + unknown for " + e.unknown_cost_phases.join(", ") : "", " over up to " + e.max_iterations + " iterations."));
      start.disabled = !task.value.trim();
    } catch (err) { msg.className = "error"; msg.textContent = err.message; }
  } }, "Estimate cost");
  show(h("h1", {}, "New execution"), h("div", { class: "card" },
    h("label", { for: "new-project" }, "Project"), project,
    h("label", { for: "new-task" }, "Task"), task,
    h("label", { for: "new-template" }, "Template"), template,
    h("label", { for: "new-budget" }, "Budget (USD)"), budget,
    h("label", {}, interactive, " Interactive (pause for approval when the template says so)"),
    h("div", { class: "actions" }, price, start), estimate, msg));
}

// ---- budget and providers ------------------------------------------------------------
async function budgetView() {
  const [status, history] = await Promise.all([api("GET", "/budget"), api("GET", "/budget/history?days=30")]);
  const rows = status.budgets.map(b => {
    const input = h("input", { type: "number", min: "0", step: "1", value: b.limit ?? "", placeholder: "no limit", style: "width:110px" });
    return h("tr", { "data-scope": b.scope },
      h("td", {}, b.label), h("td", {}, b.period), h("td", { class: "num" }, usd(b.spent)), h("td", { class: "num" }, b.limit ? "$" + b.limit.toFixed(2) : "no limit"),
      h("td", { class: "num" }, usd(b.left)), h("td", { class: "num" }, b.calls),
      h("td", {}, input, " ", h("button", { onclick: async () => {
        try { await api("PUT", "/budget/" + b.scope + "/" + encodeURIComponent(b.scope === "global" ? "current" : b.id), { limit: input.value ? Number(input.value) : null }); budgetView(); }
        catch (e) { toast(e.message); } } }, "Set")));
  });
  show(h("h1", {}, "Budget"),
    h("table", { id: "budgets" }, h("thead", {}, h("tr", {}, ["scope", "period", "spent", "limit", "left", "calls", "set limit"].map(x => h("th", {}, x)))), h("tbody", {}, rows)),
    h("h2", {}, "Ledger, last 30 days"),
    h("table", {}, h("thead", {}, h("tr", {}, ["day", "provider", "model", "calls", "cost"].map(x => h("th", {}, x)))),
      h("tbody", {}, history.history.map(d => h("tr", {}, h("td", {}, d.day), h("td", {}, d.provider), h("td", {}, d.model), h("td", { class: "num" }, d.calls), h("td", { class: "num" }, usd(d.usd)))))));
}

async function providersView() {
  const data = await api("GET", "/providers");
  const keyed = data.providers.filter(p => p.key_name);
  const which = h("select", { id: "key-provider" }, keyed.map(p => h("option", { value: p.provider }, p.provider)));
  const key = h("input", { type: "password", id: "key-value", autocomplete: "off", placeholder: "paste the key" });
  const msg = h("div");
  const models = h("div", { id: "models" });
  show(h("h1", {}, "Providers"),
    h("table", { id: "providers" }, h("thead", {}, h("tr", {}, ["provider", "key", "base URL", ""].map(x => h("th", {}, x)))),
      h("tbody", {}, data.providers.map(p => h("tr", { "data-provider": p.provider },
        h("td", {}, p.provider),
        h("td", {}, p.set ? "set (" + p.source + ")" : p.key_required ? h("span", { class: "s-failed" }, "missing") : h("span", { class: "dim" }, "not needed")),
        h("td", { class: "mono" }, p.base_url || "(api_url in the template)"),
        h("td", {}, p.detectable ? h("button", { onclick: async () => {
          try { const r = await api("POST", "/providers/" + p.provider + "/detect", {}); fill(models, h("h2", {}, r.models.length + " models at " + r.url), h("ul", {}, r.models.map(m => h("li", { class: "mono" }, m.id)))); }
          catch (e) { toast(e.message); } } }, "Detect models") : null))))),
    data.key_store_error ? h("div", { class: "error" }, data.key_store_error) : null,
    h("h2", {}, "Set a key"), h("div", { class: "card" }, which, h("label", { for: "key-value" }, "Key (stored encrypted; never shown again)"), key,
      h("div", { class: "actions" }, h("button", { class: "primary", onclick: async () => {
        try { await api("POST", "/providers/keys", { [which.value]: key.value }); key.value = ""; msg.className = "ok"; msg.textContent = "saved"; setTimeout(providersView, 500); }
        catch (e) { msg.className = "error"; msg.textContent = e.message; } } }, "Save key")), msg),
    models);
}

// ---- routing -------------------------------------------------------------------------
function route() { return location.hash || "#/"; }
let current = null;
async function go() {
  current = route();
  closeSockets();
  const [, page, arg] = current.split("/");
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.getAttribute("href") === "#/" + (page || ""));
  try {
    if (!page) await executionsView();
    else if (page === "x") await executionView(arg);
    else if (page === "a") await artifactView(arg);
    else if (page === "templates") await templatesView();
    else if (page === "t") await templateView(decodeURIComponent(arg));
    else if (page === "new") await newView();
    else if (page === "budget") await budgetView();
    else if (page === "providers") await providersView();
    else show(h("p", {}, "No such page."));
    document.body.dataset.ready = current;
  } catch (e) { failure(e); document.body.dataset.ready = current; }
}
window.addEventListener("hashchange", go);
go();
