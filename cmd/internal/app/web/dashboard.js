"use strict";
const lifecycles = ["proposed","conceived","gestating","live","reaping","corpse","tombstone"];
const statuses = ["requested","executionPending","executing"];
const outcomeColors = {success: "#2f9e55", warning: "#c9a227", partial_error: "#e08a2c", fatal_error: "#d1453b", handled_error: "#8e6bbf", not_applicable: "#9aa5b4", unknown: "#6b7686", in_progress: "#4a8fd6"};
const statusColors = {requested: "#4a8fd6", executionPending: "#c9a227", executing: "#8e6bbf"};
let last = null, win = "hour";
function counter(label, value, id) {
  return el("div", {class: "counter", "data-counter": id}, el("span", {class: "value"}, String(value)), el("span", {class: "label"}, label));
}
function badge(a) {
  const maint = a.administrativeAvailabilityStatus === "maintenance";
  // Maintenance is not "all is well": the badge takes the maintenance colour, not up's green.
  return el("span", {class: "avail " + (maint ? "maintenance" : a.availability)}, a.availability + (maint ? " · maintenance" : ""));
}
function charts(r, cw) {
  const rc = cw.resources[r.resource];
  const start = Date.parse(cw.start), step = cw.stepSeconds;
  const per = step === 60 ? "minute" : (step / 60) + " minutes";
  const box = el("div", {class: "charts"});
  if (!rc) return box;
  const outcomes = Object.keys(rc.outcomes).sort().map(k => ({name: k, color: outcomeColors[k] || "#6b7686", values: rc.outcomes[k]}));
  box.append(barChart(r.resource + ".operations", "operations completed per " + per + ", by outcome", start, step, outcomes.length ? outcomes : [{name: "none yet", color: "#9aa5b4", values: rc.failures.map(() => 0)}]));
  box.append(barChart(r.resource + ".failures", "failures per " + per, start, step, [{name: "failed attempts and fatal errors", color: "#d1453b", values: rc.failures}]));
  box.append(lineChart(r.resource + ".retryBacklog", "retry backlog", start, step, [{name: "postponed for retry", color: "#e08a2c", values: rc.retryBacklog}]));
  box.append(lineChart(r.resource + ".pending", "pending operations by status", start, step, statuses.map(s => ({name: s, color: statusColors[s], values: rc.pending[s] || []}))));
  box.append(availabilityBand(r.resource + ".availability", start, start + cw.n * step * 1000, r.availability));
  return box;
}
function history(a) {
  const hist = el("ol", {class: "history"});
  const all = [...(a.changes || []), ...(a.administrativeChanges || [])].sort((x, y) => Date.parse(y.time) - Date.parse(x.time));
  for (const c of all) hist.append(el("li", {}, ts(c.time), " " + c.status + (c.reason ? " — " + c.reason : "")));
  return hist;
}
// The resource's last reconciliation: its state and what it found (the drift: accounts changed,
// created or deleted on the target outside shadowbridge).
function reconciliation(resource, run) {
  if (!run) return el("p", {class: "muted"}, "never reconciled (shadowbridge reconcile " + resource + " --wait)");
  const c = run.counts || {};
  const row = el("div", {class: "row"});
  for (const [k, label] of [["accounts", "accounts listed"], ["changed", "changed on the target"], ["discovered", "discovered"],
    ["gone", "gone"], ["recreated", "re-created"], ["skipped", "skipped (in flight)"], ["unchanged", "unchanged"]])
    row.append(counter(label, c[k] || 0, resource + ".reconciliation." + k));
  const when = el("p", {"data-reconciliation": run.state}, run.state + (run.reason ? " (" + run.reason + ")" : "") + " · started ", ts(run.startedAt),
    run.finishedAt ? el("span", {}, " · ended ", ts(run.finishedAt)) : "", " · " + run.pages + " page(s)");
  return el("div", {}, when, row);
}
function render(d) {
  last = d;
  const cw = d.charts[win];
  const main = document.getElementById("resources");
  main.replaceChildren();
  for (const r of d.resources) {
    const box = el("article", {class: "resource", "data-resource": r.resource});
    box.append(el("h2", {}, r.resource + " ", badge(r.availability)));
    const lc = el("div", {class: "row"});
    lc.append(counter("shadows", r.counts.shadows, r.resource + ".shadows"));
    for (const l of lifecycles) lc.append(counter(l, r.counts.byLifecycle[l] || 0, r.resource + "." + l));
    box.append(el("h3", {}, "shadows by lifecycle state"), lc);
    const ps = el("div", {class: "row"});
    for (const s of statuses) ps.append(counter(s, r.counts.pendingByStatus[s] || 0, r.resource + "." + s));
    ps.append(counter("retry backlog", r.counts.retryBacklog, r.resource + ".retryBacklog"));
    ps.append(counter("failures, last hour", r.counts.failuresLastHour, r.resource + ".failuresLastHour"));
    box.append(el("h3", {}, "pending operations"), ps);
    box.append(el("h3", {}, win === "hour" ? "the last hour" : "the last day"), charts(r, cw));
    box.append(el("h3", {}, "availability history"), history(r.availability));
    box.append(el("h3", {}, "last reconciliation"), reconciliation(r.resource, r.availability.reconciliation));
    main.append(box);
  }
  const svc = document.getElementById("service");
  svc.replaceChildren(el("h2", {}, "service"), el("div", {class: "charts"},
    lineChart("projectionLag", "projection lag (records behind the log)", Date.parse(cw.start), cw.stepSeconds, [{name: "lag", color: "#4a8fd6", values: cw.projectionLag}])));
  pendingPage(d);
  failures(d.recentFailures || []);
  const rs = document.getElementById("resource");
  if (rs.options.length === 1) for (const r of d.resources) rs.append(el("option", {value: r.resource}, r.resource));
  document.getElementById("status").replaceChildren("live · updated ", ts(d.time));
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  refreshList();
}
// The pending table: the first page comes with every push; a later page is fetched again
// (GET /api/pending) on each push, so that it stays live too.
const pendingCursors = [""], pendingPageSize = 50; // projections.DashboardPageSize
function pendingPage(d) {
  const after = pendingCursors[pendingCursors.length - 1];
  if (after === "") { showPending({shadows: d.pending, total: d.pendingTotal, next: d.pending.length < d.pendingTotal ? cursorOf(d.pending) : ""}); return; }
  fetch("/api/pending?" + new URLSearchParams({after: after, limit: String(pendingPageSize)})).then(r => r.ok ? r.json() : null).then(p => { if (p) showPending(p); });
}
function cursorOf(rows) { const l = rows[rows.length - 1]; return l ? l.resource + "." + l.shadowId : ""; }
function showPending(p) {
  const tb = document.querySelector("#pending tbody");
  tb.replaceChildren();
  const now = Date.now();
  for (const s of p.shadows) {
    const ops = s.pendingOperations.map(o => o.delta.changeType + " " + o.executionStatus + (o.attemptNumber ? " #" + o.attemptNumber : "") + (o.change ? " (" + o.change + ")" : "")).join(", ");
    tb.append(el("tr", {"data-shadow": s.shadowId}, el("td", {}, s.resource), el("td", {}, el("a", {href: "/shadow/" + s.shadowId}, s.shadowId)),
      el("td", {}, s.lifecycleState), el("td", {}, ops), el("td", {"data-col": "age"}, s.since ? age(now - Date.parse(s.since)) : ""),
      el("td", {"data-col": "next"}, s.nextAttempt ? ts(s.nextAttempt) : ""), el("td", {"data-col": "error"}, s.lastError ? ts(s.lastErrorAt) : "", s.lastError ? " " : "", clipped(s.lastError || "", 90))));
  }
  const first = (pendingCursors.length - 1) * pendingPageSize;
  document.getElementById("pendingCount").textContent = p.total === 0 ? "none" :
    (first + 1) + "–" + (first + p.shadows.length) + " of " + p.total;
  const next = document.getElementById("pendingNext");
  next.disabled = !p.next;
  next.onclick = () => { pendingCursors.push(p.next); if (last) pendingPage(last); };
  document.getElementById("pendingFirst").disabled = pendingCursors.length === 1;
  document.body.dataset.pendingPages = String(Number(document.body.dataset.pendingPages || 0) + 1);
}
document.getElementById("pendingFirst").addEventListener("click", () => { pendingCursors.length = 1; if (last) pendingPage(last); });
// age says how long ago, in the largest two units.
function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
}
// The recent failures, newest first: each links to its shadow's page (the whole story).
function failures(list) {
  const tb = document.querySelector("#failures tbody");
  tb.replaceChildren();
  if (!list.length) { tb.append(el("tr", {}, el("td", {colspan: "6", class: "muted"}, "no failures in the projection"))); return; }
  for (const f of list) tb.append(el("tr", {"data-failure": f.operationId}, el("td", {}, ts(f.time)), el("td", {}, f.resource),
    el("td", {}, el("a", {href: "/shadow/" + f.shadowId}, f.shadowId)), el("td", {}, f.changeType + " " + f.operationId),
    el("td", {}, f.fatal ? "ended with fatal_error" : f.retrying ? "attempt failed (retried)" : "attempt failed"), el("td", {}, clipped(f.error, 90))));
}
for (const b of document.querySelectorAll("[data-window]")) b.addEventListener("click", () => {
  win = b.dataset.window;
  document.querySelectorAll("[data-window]").forEach(x => x.classList.toggle("on", x === b));
  if (last) render(last);
});
// The list of all shadows: searched and paged on the server (GET /api/shadows).
const pages = [""];
let current = "", inflight = false, again = false;
// refreshList re-runs the current search when the dashboard changes (one at a time).
function refreshList() {
  if (inflight) { again = true; return; }
  search(current);
}
async function search(after) {
  current = after;
  inflight = true;
  try { await searchOnce(after); } finally {
    inflight = false;
    if (again) { again = false; search(current); }
  }
}
async function searchOnce(after) {
  const p = new URLSearchParams({q: document.getElementById("q").value, state: document.getElementById("state").value,
    resource: document.getElementById("resource").value, after: after, limit: "25"});
  const res = await fetch("/api/shadows?" + p);
  if (!res.ok) { document.getElementById("found").textContent = "search failed: " + res.status; return; }
  const list = await res.json();
  const tb = document.querySelector("#shadows tbody");
  tb.replaceChildren();
  for (const s of list.shadows) tb.append(el("tr", {}, el("td", {}, s.resource), el("td", {}, el("a", {href: "/shadow/" + s.shadowId}, s.shadowId)),
    el("td", {}, s.login), el("td", {}, s.uid), el("td", {}, s.lifecycleState), el("td", {}, String(s.pending))));
  document.getElementById("found").textContent = list.total === 1 ? "1 shadow" : list.total + " shadows";
  const next = document.getElementById("next");
  next.disabled = !list.next;
  next.onclick = () => { pages.push(list.next); search(list.next); };
  document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
}
for (const l of lifecycles) document.getElementById("state").append(el("option", {value: l}, l));
document.getElementById("search").addEventListener("submit", ev => { ev.preventDefault(); pages.length = 1; search(""); });
document.getElementById("first").addEventListener("click", () => { pages.length = 1; search(""); });
search("");
const es = new EventSource("/api/stream");
es.addEventListener("dashboard", ev => render(JSON.parse(ev.data)));
es.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
