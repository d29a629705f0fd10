"use strict";
// Shared by the pages: element building, readable local timestamps with the exact value on hover.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
function svgEl(tag, attrs, ...kids) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
// ts renders an RFC 3339 time as local, readable text; the exact value is the title (hover).
function ts(iso) {
  if (!iso || iso.startsWith("0001-")) return el("span", {}, "");
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const text = today ? d.toLocaleTimeString() : d.toLocaleString();
  return el("time", {datetime: iso, title: iso}, text);
}
// withTimes renders a server's sentence with its RFC 3339 times (UTC) as local times (ts).
function withTimes(text) {
  const out = el("span", {});
  const re = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g;
  let at = 0;
  for (const m of text.matchAll(re)) {
    out.append(text.slice(at, m.index), ts(m[0]));
    at = m.index + m[0].length;
  }
  out.append(text.slice(at));
  return out;
}
// errorText is an operation error as "category: message", the category said once (as the
// server's OperationError.String).
function errorText(e) {
  if (!e) return "";
  return e.message.startsWith(e.category + ": ") ? e.message : e.category + ": " + e.message;
}
// clipped shows the first n characters of a long text, all of it on hover.
function clipped(text, n) {
  return text.length <= n ? text : el("span", {title: text}, text.slice(0, n - 1) + "…");
}
function changeSummary(delta) {
  const vals = vs => (vs || []).map(String).join("|");
  const parts = [];
  if (delta.changeType === "add") for (const [n, vs] of Object.entries(delta.attributes || {})) parts.push(n + "=" + vals(vs));
  if (delta.changeType === "modify") for (const [n, c] of Object.entries(delta.changes || {})) {
    if (c.replace) parts.push(n + "=" + vals(c.replace));
    if (c.add && c.add.length) parts.push(n + "+=" + vals(c.add));
    if (c.delete && c.delete.length) parts.push(n + "-=" + vals(c.delete));
  }
  return parts.join(", ");
}
