// Messages: search the log (VMN, number, direction, route, status, time), page through it,
// and send an MT (the send is refused, with the API's reason, e.g. to an opted-out number).

import { api, listItems } from "../api.js";
import { badge, h, notice, replace, table, when } from "../dom.js";
import { clearErrors, errorSummary, field, showErrors, valueOf } from "../forms.js";

export const title = "Messages";

const FILTERS = ["vmn", "msisdn", "direction", "route", "status", "since", "until"];
const ROUTES = ["", "keyword", "default", "optout", "optin", "help", "expired", "unrouted"];
const STATUSES = ["", "received", "incomplete", "queued", "sending", "submitted", "delivered",
                  "failed", "blocked"];

export async function render(main, { query }) {
  const opts = (list) => list.map((v) => [v, v || "any"]);
  const form = h("form", { class: "search", role: "search", "aria-label": "search messages" },
    field("vmn", "VMN", { value: query.get("vmn"), inputmode: "numeric" }),
    field("msisdn", "Number", { value: query.get("msisdn"), inputmode: "tel" }),
    field("direction", "Direction", { kind: "select", value: query.get("direction"),
                                      options: [["", "any"], ["mo", "MO"], ["mt", "MT"]] }),
    field("route", "Route", { kind: "select", value: query.get("route"), options: opts(ROUTES) }),
    field("status", "Status", { kind: "select", value: query.get("status"),
                                options: opts(STATUSES) }),
    field("since", "Since", { value: query.get("since"), placeholder: "2h",
                              hint: "ISO-8601, or an age: 15m, 2h, 7d" }),
    field("until", "Until", { value: query.get("until"), placeholder: "now",
                              hint: "ISO-8601, or an age" }),
    errorSummary(),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const f of FILTERS) if (valueOf(form, f)) q.set(f, valueOf(form, f));
    window.location.hash = `#/messages?${q}`;
  });

  const results = h("div", { class: "results" });
  main.append(h("section", { "aria-labelledby": "search-h" },
    h("h2", { id: "search-h" }, "Search"), form), h("section", { "aria-labelledby": "log-h" },
    h("h2", { id: "log-h" }, "Log"), results), sendSection());

  const params = {};
  for (const f of FILTERS) if (query.get(f)) params[f] = query.get(f);
  const rows = [];
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const body = h("div");
  results.append(body, more);
  let cursor = null;
  const load = async () => {
    try {
      const page = await api("/v1/messages", { query: { ...params, limit: 50, cursor } });
      rows.push(...listItems(page));
      cursor = page?.next_cursor || null;
      more.hidden = !cursor;
      replace(body, messageTable(rows));
    } catch (err) {
      showErrors(form, err);
      replace(body, notice(err.message, "error"));
    }
  };
  more.addEventListener("click", load);
  await load();
}

export function messageTable(rows) {
  return table([
    ["Time", (m) => when(m.created_at || m.received_at || m.at)],
    ["Dir", (m) => (m.direction || "").toUpperCase()],
    ["From", (m) => m.from ?? ""],
    ["To", (m) => m.to ?? m.vmn ?? ""],
    ["Text", (m) => h("a", { href: `#/messages/${encodeURIComponent(m.id)}` },
      truncate(m.text, 60) || "(empty)")],
    ["Route", (m) => [m.route || "", m.keyword ? h("span", { class: "muted" },
      ` ${m.keyword}`) : null]],
    ["Status", (m) => badge(m.status)],
  ], rows, { caption: "messages", empty: "No messages match." });
}

function truncate(text, n) {
  const t = String(text ?? "");
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

function sendSection() {
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "send", "aria-label": "send a message" },
    field("from", "From (VMN)", { required: true, inputmode: "numeric" }),
    field("to", "To", { required: true, inputmode: "tel" }),
    field("text", "Text", { kind: "textarea", required: true }),
    errorSummary(),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Send")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    out.replaceChildren();
    try {
      const res = await api("/v1/messages", { method: "POST", body: {
        from: valueOf(form, "from"), to: valueOf(form, "to"), text: valueOf(form, "text") } });
      out.append(notice([`Queued as `, h("a", { href: `#/messages/${encodeURIComponent(res.id)}` },
        String(res.id)), ` (${res.status}, ${res.parts} part(s)).`], "ok"));
    } catch (err) {
      showErrors(form, err);
      out.append(notice(`Refused: ${err.problem?.title || ""} ${err.message}`.trim(), "error"));
    }
  });
  return h("section", { "aria-labelledby": "send-h" },
    h("details", {}, h("summary", { id: "send-h" }, "Send a message"), form));
}
