"use strict";
const id = location.pathname.split("/").pop();
function td(...xs) { return xs.map(x => { const e = document.createElement("td"); e.textContent = x == null ? "" : String(x); return e; }); }
function render(d) {
  const s = d.shadow;
  document.getElementById("title").textContent = s.resource + " · " + s.objectClass + " · " + id + " · " + s.lifecycleState;
  document.getElementById("why").textContent = d.explanation.why.join("; ");
  const next = document.getElementById("next"); next.replaceChildren();
  for (const n of d.explanation.next) { const li = document.createElement("li"); li.textContent = (n.at || "waiting") + " — " + n.what; next.append(li); }
  const ops = document.querySelector("#ops tbody"); ops.replaceChildren();
  for (const p of s.pendingOperations) { const tr = document.createElement("tr"); tr.append(...td(p.id, p.type, p.delta.changeType, p.executionStatus, p.resultStatus, p.attemptNumber, p.lastError ? p.lastError.category + ": " + p.lastError.message : "")); ops.append(tr); }
  document.getElementById("attrs").textContent = JSON.stringify(s.attributes, null, 2);
  const tl = document.querySelector("#timeline tbody"); tl.replaceChildren();
  for (const e of d.history) { const tr = document.createElement("tr"); tr.append(...td(e.time, e.type, e.operationId, e.attempt, e.requestId, e.outcome)); tl.append(tr); }
  document.getElementById("status").textContent = "live · updated " + new Date().toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}
const es = new EventSource("/api/shadow/" + id + "/stream");
es.addEventListener("shadow", ev => render(JSON.parse(ev.data)));
es.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
