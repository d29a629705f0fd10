"use strict";
const lifecycles = ["proposed","conceived","gestating","live","reaping","corpse","tombstone"];
const statuses = ["requested","executionPending","executing"];
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function counter(label, value, id) {
  return el("div", {class: "counter", "data-counter": id}, el("span", {class: "value"}, String(value)), el("span", {class: "label"}, label));
}
function render(d) {
  const main = document.getElementById("resources");
  main.replaceChildren();
  for (const r of d.resources) {
    const box = el("article", {class: "resource", "data-resource": r.resource});
    const avail = r.availability.availability + (r.availability.administrativeAvailabilityStatus === "maintenance" ? " · maintenance" : "");
    box.append(el("h2", {}, r.resource + " ", el("span", {class: "avail " + r.availability.availability}, avail)));
    const lc = el("div", {class: "row"});
    lc.append(counter("shadows", r.counts.shadows, r.resource + ".shadows"));
    for (const l of lifecycles) lc.append(counter(l, r.counts.byLifecycle[l] || 0, r.resource + "." + l));
    box.append(el("h3", {}, "shadows by lifecycle state"), lc);
    const ps = el("div", {class: "row"});
    for (const s of statuses) ps.append(counter(s, r.counts.pendingByStatus[s] || 0, r.resource + "." + s));
    ps.append(counter("retry backlog", r.counts.retryBacklog, r.resource + ".retryBacklog"));
    ps.append(counter("failures, last hour", r.counts.failuresLastHour, r.resource + ".failuresLastHour"));
    box.append(el("h3", {}, "pending operations"), ps);
    const hist = el("ol", {class: "history"});
    for (const c of (r.availability.changes || []).slice().reverse()) hist.append(el("li", {}, c.time + " " + c.status + (c.reason ? " — " + c.reason : "")));
    for (const c of (r.availability.administrativeChanges || []).slice().reverse()) hist.append(el("li", {}, c.time + " " + c.status + (c.reason ? " — " + c.reason : "")));
    box.append(el("h3", {}, "availability history"), hist);
    main.append(box);
  }
  const tb = document.querySelector("#pending tbody");
  tb.replaceChildren();
  for (const s of d.pending) {
    const ops = s.pendingOperations.filter(p => p.executionStatus !== "completed").map(p => p.delta.changeType + " " + p.executionStatus + (p.attemptNumber ? " #" + p.attemptNumber : "")).join(", ");
    tb.append(el("tr", {}, el("td", {}, s.resource), el("td", {}, el("a", {href: "/shadow/" + s.shadowId}, s.shadowId)), el("td", {}, s.lifecycleState), el("td", {}, ops)));
  }
  document.getElementById("status").textContent = "live · updated " + new Date().toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}
const es = new EventSource("/api/stream");
es.addEventListener("dashboard", ev => render(JSON.parse(ev.data)));
es.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
