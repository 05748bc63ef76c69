// Dashboard: binds with their last error, queue depths and oldest ages (/v1/queues), and
// MO/MT per minute per VMN over the last hour or day, refreshed live.

import { api, listItems } from "../api.js";
import { statsSeries, trafficChart } from "../chart.js";
import { badge, h, notice, replace, table, when } from "../dom.js";

const REFRESH_MS = 10000;
const RANGES = { hour: 3600, day: 86400 };

export const title = "Dashboard";

export async function render(main, { query }) {
  const range = RANGES[query.get("range")] ? query.get("range") : "hour";
  const bindsBox = h("div", { class: "binds" }, h("p", { class: "muted" }, "Loading…"));
  const queuesBox = h("div", { class: "queues", id: "queues" },
    h("p", { class: "muted" }, "Loading…"));
  const chartBox = h("div", { class: "chart", id: "traffic-chart" });
  const totalsBox = h("div", { class: "totals" });
  const status = h("p", { class: "muted live", "aria-live": "polite" });
  main.append(
    h("section", { "aria-labelledby": "binds-h" }, h("h2", { id: "binds-h" }, "Binds"), bindsBox),
    h("section", { "aria-labelledby": "queues-h" }, h("h2", { id: "queues-h" }, "Queues"),
      queuesBox),
    h("section", { "aria-labelledby": "traffic-h" },
      h("div", { class: "section-head" },
        h("h2", { id: "traffic-h" }, "Traffic per minute"),
        h("nav", { class: "segmented", "aria-label": "time range" },
          Object.keys(RANGES).map((r) => h("a", { href: `#/dashboard?range=${r}`,
            "aria-current": r === range ? "page" : false }, `last ${r}`)))),
      h("p", { class: "muted" }, "MO solid, MT dashed; one colour per VMN."),
      chartBox, totalsBox, status));

  let chart = null;
  let stopped = false;
  let timer = null;

  const refresh = async () => {
    const until = new Date();
    const since = new Date(until.getTime() - RANGES[range] * 1000);
    const step = 60;
    const [binds, queues, stats] = await Promise.allSettled([
      api("/v1/binds"),
      api("/v1/queues"),
      api("/v1/stats", { query: { since: since.toISOString(), until: until.toISOString(),
                                  step } }),
    ]);
    if (stopped) return;
    if (binds.status === "fulfilled") renderBinds(bindsBox, binds.value, refresh);
    else replace(bindsBox, notice(`Binds: ${binds.reason.message}`, "error"));
    if (queues.status === "fulfilled") renderQueues(queuesBox, queues.value);
    else replace(queuesBox, notice(`Queues: ${queues.reason.message}`, "error"));
    if (stats.status === "fulfilled") {
      const data = statsSeries(stats.value, { since: since.toISOString(),
                                              until: until.toISOString(), step });
      if (!data.series.length) {
        chart?.destroy();
        chart = null;
        replace(chartBox, h("p", { class: "empty" }, "No traffic in this period."));
      } else if (chart) {
        chart.update(data);
      } else {
        chartBox.replaceChildren();
        chart = trafficChart(chartBox, data);
      }
      renderTotals(totalsBox, data);
    } else {
      replace(chartBox, notice(`Traffic: ${stats.reason.message}`, "error"));
    }
    status.textContent = `Updated ${until.toLocaleTimeString()}; refreshes every ` +
      `${REFRESH_MS / 1000} s.`;
  };

  const loop = async () => {
    try {
      await refresh();
    } finally {
      if (!stopped) timer = setTimeout(loop, REFRESH_MS);
    }
  };
  await loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
    chart?.destroy();
  };
}

function renderBinds(box, answer, refresh) {
  const binds = listItems(answer);
  const counters = (b) => {
    const c = b.counters || {};
    return Object.entries(c).map(([k, v]) => `${k} ${v}`).join(" · ");
  };
  const control = (b) => {
    const verb = b.state === "stopped" ? "start" : "stop";
    return h("button", { type: "button", class: "small secondary",
      "aria-label": `${verb} bind ${b.name}`, onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await api(`/v1/binds/${encodeURIComponent(b.name)}/${verb}`, { method: "POST" });
        } catch (err) {
          box.prepend(notice(`${verb} ${b.name}: ${err.message}`, "error"));
        }
        await refresh();
      } }, verb === "stop" ? "Stop" : "Start");
  };
  replace(box, table([
    ["Bind", (b) => [h("strong", {}, b.name), b.host ? h("div", { class: "muted" },
      `${b.host}:${b.port}`) : null]],
    ["State", (b) => badge(b.state)],
    ["Since", (b) => when(b.since || b.state_since)],
    ["Last error", (b) => b.last_error ? [h("span", { class: "error-text" },
      typeof b.last_error === "object" ? JSON.stringify(b.last_error) : b.last_error),
      b.last_error_at ? h("div", { class: "muted" }, when(b.last_error_at)) : null]
      : h("span", { class: "muted" }, "none")],
    ["In flight", (b) => (b.outstanding !== undefined ? String(b.outstanding) : "")],
    ["Counters", counters],
    ["", control],
  ], binds, { caption: "binds", empty: "No binds configured." }));
}

/** Seconds as a short age: 42 s, 3 min, 5 h, 2 d. */
function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

function renderQueues(box, q) {
  const rows = [
    { name: "MT queued", about: "waiting for a bind or a retry", ...q.mt.queued },
    { name: "MT sending", about: "submit_sm not yet answered", ...q.mt.sending },
    { name: "MO fan-out", about: "actions not yet expanded", ...q.mo_fanout },
    ...Object.entries(q.actions).map(([kind, a]) => ({ name: `Action ${kind}`,
      about: "pending or retrying", ...a })),
    { name: "Dead-lettered", about: "retries exhausted: vmn-gateway redrive", depth: q.dead,
      bad: true },
    { name: "Failed", about: "permanent errors", depth: q.failed, bad: true },
  ];
  replace(box, table([
    ["Queue", (r) => [h("strong", {}, r.name), h("div", { class: "muted" }, r.about)]],
    ["Depth", (r) => h("span", { class: r.depth && r.bad ? "error-text" : null,
      "data-queue-depth": r.name }, String(r.depth))],
    ["Oldest", (r) => r.oldest_at ? h("span", { title: r.oldest_at }, age(r.oldest_age))
      : h("span", { class: "muted" }, r.bad ? "" : "empty")],
  ], rows, { caption: "queues" }));
}

function renderTotals(box, data) {
  const vmns = [...new Set(data.series.map((s) => s.vmn))];
  const sum = (vmn, dir) => data.series.filter((s) => s.vmn === vmn && s.dir === dir)
    .reduce((a, s) => a + s.values.reduce((x, y) => x + y, 0), 0);
  replace(box, table([
    ["VMN", (v) => v],
    ["MO", (v) => String(sum(v, "mo"))],
    ["MT", (v) => String(sum(v, "mt"))],
  ], vmns, { caption: "totals in this period", empty: "" }));
}
