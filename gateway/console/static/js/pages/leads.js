// Leads: the recorded leads, newest first as the API gives them, with CSV export.

import { allItems, api, listItems } from "../api.js";
import { download, toCsv } from "../csv.js";
import { h, notice, replace, table, when } from "../dom.js";

export const title = "Leads";

export async function render(main) {
  const body = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  main.append(h("div", { class: "section-head" }, h("h2", {}, "Recorded leads"),
    h("button", { type: "button", class: "secondary", onclick: async () => {
      download("leads.csv", toCsv(await allItems("/v1/leads")));
    } }, "Export CSV")), body, more);
  const rows = [];
  let cursor = null;
  const load = async () => {
    try {
      const page = await api("/v1/leads", { query: { limit: 100, cursor } });
      rows.push(...listItems(page));
      cursor = page?.next_cursor || null;
      more.hidden = !cursor;
      replace(body, table([
        ["Last seen", (l) => when(l.last_seen || l.at || l.created_at)],
        ["Number", (l) => l.msisdn ?? l.from ?? ""],
        ["VMN", (l) => l.vmn ?? ""],
        ["Keyword", (l) => l.keyword || h("span", { class: "muted" }, "default")],
        ["Latest text", (l) => l.message_id
          ? h("a", { href: `#/messages/${encodeURIComponent(l.message_id)}` }, l.text ?? "")
          : l.text ?? ""],
        ["Times", (l) => String(l.count ?? 1)],
        ["First seen", (l) => when(l.first_seen)],
      ], rows, { caption: "leads", empty: "No leads yet." }));
    } catch (err) {
      replace(body, notice(err.message, "error"));
    }
  };
  more.addEventListener("click", load);
  await load();
}
