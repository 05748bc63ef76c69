// Polls: every poll's tally as a bar chart.

import { api, listItems } from "../api.js";
import { barChart } from "../chart.js";
import { h } from "../dom.js";

export const title = "Polls";

export async function render(main) {
  const polls = listItems(await api("/v1/polls"));
  if (!polls.length) {
    main.append(h("p", { class: "empty" }, "No polls yet: a keyword with a poll creates one."));
    return;
  }
  const grid = h("div", { class: "poll-grid" });
  main.append(grid);
  for (const p of polls) {
    const name = p.poll ?? p.name;
    const detail = p.tally ? p : await api(`/v1/polls/${encodeURIComponent(name)}`);
    const chart = barChart(name, tallyOf(detail));
    if (Array.isArray(detail.vmns)) {
      chart.append(h("p", { class: "muted" }, detail.vmns.length
        ? `On ${detail.vmns.join(", ")}` : "No longer configured on any number"));
    }
    grid.append(chart);
  }
}

/** {option: count} from {tally: {...}} or {options: [{option, count}]}. */
function tallyOf(p) {
  if (p.tally && !Array.isArray(p.tally)) return p.tally;
  const list = Array.isArray(p.tally) ? p.tally : p.options || [];
  return Object.fromEntries(list.map((o) => typeof o === "object"
    ? [o.option ?? o.name, o.count ?? o.votes ?? 0] : [o, 0]));
}
