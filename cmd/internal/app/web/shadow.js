"use strict";
const id = location.pathname.split("/").pop();
function td(...xs) { return xs.map(x => el("td", {}, x == null ? "" : (x instanceof Node ? x : String(x)))); }
function render(d) {
  const s = d.shadow;
  document.getElementById("title").textContent = s.resource + " · " + s.objectClass + " · " + id + " · " + s.lifecycleState;
  const why = document.getElementById("why"); why.replaceChildren();
  d.explanation.why.forEach((w, i) => why.append(i ? "; " : "", withTimes(w)));
  const next = document.getElementById("next"); next.replaceChildren();
  for (const n of d.explanation.next) next.append(el("li", {}, n.at ? ts(n.at) : "waiting", " — ", withTimes(n.what)));
  const ops = document.querySelector("#ops tbody"); ops.replaceChildren();
  for (const p of s.pendingOperations) ops.append(el("tr", {"data-op": p.id}, ...td(p.id, p.type, p.delta.changeType, changeSummary(p.delta), p.executionStatus, p.resultStatus,
    p.attemptNumber, ts(p.requestTimestamp), ts(p.lastAttemptTimestamp), errorText(p.lastError))));
  const attrs = document.querySelector("#attrs tbody"); attrs.replaceChildren();
  for (const name of Object.keys(s.attributes || {}).sort()) attrs.append(el("tr", {"data-attr": name}, ...td(name, s.attributes[name].map(String).join(", "))));
  const tl = document.querySelector("#timeline tbody"); tl.replaceChildren();
  for (const e of d.history) {
    // A timer shows when it is due; an operation's request shows what it carries.
    let outcome = e.outcome || "";
    let extra = null;
    if (e.type === "TimerSet" && e.event && e.event.at) { outcome = "due "; extra = ts(e.event.at); }
    tl.append(el("tr", {"data-type": e.type}, ...td(ts(e.time), e.type, e.operationId, e.attempt || "", e.requestId), el("td", {}, outcome, extra)));
  }
  document.getElementById("status").replaceChildren("live · updated ", ts(new Date().toISOString()));
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}
const es = new EventSource("/api/shadow/" + id + "/stream");
es.addEventListener("shadow", ev => render(JSON.parse(ev.data)));
es.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
