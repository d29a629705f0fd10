"use strict";
// Plain SVG charts (no library, no build step). Each chart carries data-total, the sum of what
// it shows, so a test can see it move.
const W = 360, H = 90, PAD = 18;
function barChart(id, title, start, step, series) {
  const n = series.length ? series[0].values.length : 0;
  const totals = Array.from({length: n}, (_, i) => series.reduce((s, x) => s + Math.max(0, x.values[i]), 0));
  const max = Math.max(1, ...totals);
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H + PAD}`, class: "chart", "data-chart": id, "data-total": String(totals.reduce((a, b) => a + b, 0))});
  const bw = (W - 2) / Math.max(1, n);
  for (let i = 0; i < n; i++) {
    let y = H;
    for (const s of series) {
      const v = Math.max(0, s.values[i]);
      if (!v) continue;
      const h = v / max * (H - 4);
      y -= h;
      const r = svgEl("rect", {x: (1 + i * bw).toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: h.toFixed(1), fill: s.color});
      r.append(svgEl("title", {}, `${s.name}: ${v} at ${new Date(start + i * step * 1000).toLocaleString()}`));
      svg.append(r);
    }
  }
  return frame(svg, title, max, series, start, step, n);
}
function lineChart(id, title, start, step, series) {
  const n = series.length ? series[0].values.length : 0;
  const all = series.flatMap(s => s.values.filter(v => v >= 0));
  const max = Math.max(1, ...all);
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H + PAD}`, class: "chart", "data-chart": id, "data-total": String(all.reduce((a, b) => a + b, 0)), "data-samples": String(all.length)});
  const x = i => (1 + (i + 0.5) * (W - 2) / Math.max(1, n)).toFixed(1);
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v < 0) { pen = false; return; }  // no sample: a gap, not a zero
      const y = (H - v / max * (H - 4)).toFixed(1);
      d += (pen ? "L" : "M") + x(i) + " " + y + " ";
      pen = true;
    });
    if (d) svg.append(svgEl("path", {d, fill: "none", stroke: s.color, "stroke-width": "1.5"}));
    s.values.forEach((v, i) => { if (v >= 0 && (i === 0 || s.values[i - 1] < 0) && (i === n - 1 || s.values[i + 1] < 0)) svg.append(svgEl("circle", {cx: x(i), cy: (H - v / max * (H - 4)).toFixed(1), r: "1.5", fill: s.color})); });
  }
  return frame(svg, title, max, series, start, step, n);
}
function frame(svg, title, max, series, start, step, n) {
  svg.prepend(svgEl("line", {x1: 0, y1: H, x2: W, y2: H, stroke: "#c7ced9"}));
  svg.append(svgEl("text", {x: 2, y: 10, class: "axis"}, String(max)));
  svg.append(svgEl("text", {x: 2, y: H + 13, class: "axis"}, new Date(start).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})));
  svg.append(svgEl("text", {x: W - 2, y: H + 13, class: "axis", "text-anchor": "end"}, "now"));
  const legend = el("div", {class: "legend"});
  for (const s of series) legend.append(el("span", {}, svgEl("svg", {width: 10, height: 10}, svgEl("rect", {width: 10, height: 10, fill: s.color})), " " + s.name));
  return el("figure", {class: "chartbox"}, el("figcaption", {}, title), svg, legend);
}
// availabilityBand draws the resource's availability over the window from its recorded changes
// (up, down, broken) and maintenance periods.
function availabilityBand(id, start, end, availability) {
  const svg = svgEl("svg", {viewBox: `0 0 ${W} 14`, class: "band", "data-chart": id});
  const span = end - start;
  const x = t => Math.min(W, Math.max(0, (t - start) / span * W));
  const segs = (changes, current, key) => {
    const cs = (changes || []).map(c => ({t: Date.parse(c.time), s: c[key]})).sort((a, b) => a.t - b.t);
    let before = cs.filter(c => c.t <= start).pop();
    let state = before ? before.s : (cs.length ? null : current);
    const out = [];
    let from = start;
    for (const c of cs.filter(c => c.t > start)) { out.push({from, to: c.t, s: state}); from = c.t; state = c.s; }
    out.push({from, to: end, s: state});
    return out;
  };
  for (const g of segs(availability.changes, availability.availability, "status"))
    if (g.s) svg.append(svgEl("rect", {x: x(g.from), y: 0, width: Math.max(0.5, x(g.to) - x(g.from)), height: 14, class: "st-" + g.s}, svgEl("title", {}, g.s)));
  for (const g of segs(availability.administrativeChanges, availability.administrativeAvailabilityStatus, "status"))
    if (g.s === "maintenance") svg.append(svgEl("rect", {x: x(g.from), y: 9, width: Math.max(0.5, x(g.to) - x(g.from)), height: 5, class: "st-maintenance"}, svgEl("title", {}, "maintenance")));
  return el("figure", {class: "chartbox wide"}, el("figcaption", {}, "availability (band: up, down, broken; maintenance below)"), svg);
}
