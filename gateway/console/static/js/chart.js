// Charts: the dashboard's MO/MT time series (uPlot, vendored) and the polls' bar charts
// (plain HTML bars: readable at any width and by screen readers, no canvas needed).

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";

// Colours with >= 3:1 contrast on white (WCAG non-text contrast), MO solid, MT dashed.
const PALETTE = ["#0b57d0", "#b3261e", "#146c2e", "#8e4a00", "#6b3fa0", "#00677d", "#a0245a",
                 "#4a5a00"];

/**
 * Turn a /v1/stats answer into {times: [unix s], series: [{label, vmn, dir, values}]}.
 * The API answers {buckets: [ISO], series: [{vmn, mo: [n], mt: [n]}]}; also accepted: rows ({vmn, at|t|time|start|bucket, mo, mt} or {..., direction, count}) under
 * `items`/`buckets`/`rows`, or a per-VMN form ({series|vmns: [{vmn, points|items: rows}]}).
 */
export function statsSeries(answer, { since, until, step }) {
  // The API's form: one time axis (`buckets`) and per VMN one count per bucket.
  if (answer && Array.isArray(answer.buckets) && Array.isArray(answer.series)) {
    const times = answer.buckets.map((b) => (typeof b === "number" ? b : Date.parse(b) / 1000));
    const series = [];
    for (const s of [...answer.series].sort((a, b) => String(a.vmn).localeCompare(b.vmn))) {
      for (const dir of ["mo", "mt"]) {
        series.push({ vmn: String(s.vmn), dir, label: `${s.vmn} ${dir.toUpperCase()}`,
                      values: (s[dir] || []).map(Number) });
      }
    }
    return { times, series };
  }
  const rows = [];
  const push = (r, vmn) => rows.push({ ...r, vmn: r.vmn ?? vmn });
  const list = Array.isArray(answer) ? answer
    : answer.items || answer.buckets || answer.rows || answer.series || answer.vmns || [];
  for (const entry of list) {
    const inner = entry.points || entry.items || entry.buckets;
    if (Array.isArray(inner)) inner.forEach((r) => push(r, entry.vmn));
    else push(entry, entry.vmn);
  }
  const stepS = Number(answer.step || step);
  const start = Math.floor(Date.parse(since) / 1000 / stepS) * stepS;
  const end = Math.floor(Date.parse(until) / 1000 / stepS) * stepS;
  const times = [];
  for (let t = start; t <= end; t += stepS) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const byKey = new Map();
  const vmns = new Set();
  const add = (vmn, dir, t, n) => {
    const key = `${vmn}|${dir}`;
    if (!byKey.has(key)) byKey.set(key, new Array(times.length).fill(0));
    const bucket = Math.floor(t / stepS) * stepS;
    if (index.has(bucket)) byKey.get(key)[index.get(bucket)] += Number(n) || 0;
  };
  for (const r of rows) {
    const at = r.at ?? r.t ?? r.time ?? r.start ?? r.bucket ?? r.ts;
    const t = typeof at === "number" ? at : Date.parse(at) / 1000;
    if (!Number.isFinite(t) || r.vmn === undefined) continue;
    vmns.add(String(r.vmn));
    if (r.direction) add(r.vmn, r.direction, t, r.count ?? r.n ?? 0);
    else {
      add(r.vmn, "mo", t, r.mo ?? 0);
      add(r.vmn, "mt", t, r.mt ?? 0);
    }
  }
  const series = [];
  for (const vmn of [...vmns].sort()) {
    for (const dir of ["mo", "mt"]) {
      series.push({ vmn, dir, label: `${vmn} ${dir.toUpperCase()}`,
                    values: byKey.get(`${vmn}|${dir}`) || new Array(times.length).fill(0) });
    }
  }
  return { times, series };
}

/** A live uPlot chart inside `box`; returns {update(data), destroy()}. */
export function trafficChart(box, data) {
  let plot = null;
  let shape = "";
  const width = () => Math.max(280, box.clientWidth);
  const build = (d) => {
    plot?.destroy();
    const opts = {
      width: width(),
      height: 280,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
      axes: [{ stroke: "#1f1f1f" }, { stroke: "#1f1f1f", label: "messages / step" }],
      legend: { live: true },
      series: [{ label: "time" }, ...d.series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[Math.floor(i / 2) % PALETTE.length],
        width: 2,
        dash: s.dir === "mt" ? [6, 4] : undefined,
        points: { show: false },
      }))],
    };
    plot = new uPlot(opts, [d.times, ...d.series.map((s) => s.values)], box);
    shape = d.series.map((s) => s.label).join(",");
  };
  build(data);
  const resize = new ResizeObserver(() => plot?.setSize({ width: width(), height: 280 }));
  resize.observe(box);
  return {
    update(d) {
      if (d.series.map((s) => s.label).join(",") !== shape) build(d);
      else plot.setData([d.times, ...d.series.map((s) => s.values)]);
    },
    destroy() {
      resize.disconnect();
      plot?.destroy();
    },
  };
}

/** A horizontal bar chart of {label: count}. */
export function barChart(title, tally) {
  const entries = Object.entries(tally || {});
  const max = Math.max(1, ...entries.map(([, n]) => Number(n) || 0));
  const total = entries.reduce((s, [, n]) => s + (Number(n) || 0), 0);
  return h("figure", { class: "bars", "aria-label": `${title}: ${entries.map(([k, n]) =>
      `${k} ${n}`).join(", ")}` },
    h("figcaption", {}, title, h("span", { class: "muted" }, ` · ${total} votes`)),
    entries.length ? entries.map(([label, n]) => h("div", { class: "bar-row" },
      h("span", { class: "bar-label" }, label),
      h("span", { class: "bar-track", "aria-hidden": "true" },
        barFill((100 * (Number(n) || 0)) / max)),
      h("span", { class: "bar-value" }, String(n))))
      : h("p", { class: "empty" }, "No options."));
}

// Set through the CSSOM, not a style attribute, so a strict Content-Security-Policy holds.
function barFill(percent) {
  const el = h("span", { class: "bar-fill" });
  el.style.width = `${percent}%`;
  return el;
}
