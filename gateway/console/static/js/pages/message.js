// One message: text, addresses, route and keyword, every status change, the receipt, and
// the actions it caused with their attempts.

import { api } from "../api.js";
import { badge, dl, h, table, when } from "../dom.js";

export const title = "Message";

export async function render(main, { params, setTitle }) {
  const id = params[0];
  setTitle(`Message ${id}`);
  const m = await api(`/v1/messages/${encodeURIComponent(id)}`);
  const history = m.history || m.status_history || m.statuses || [];
  const actions = m.actions || [];
  const receipt = m.receipt;
  main.append(
    h("p", {}, h("a", { href: "#/messages" }, "← all messages")),
    h("section", { "aria-labelledby": "msg-h" },
      h("h2", { id: "msg-h" }, "Text"),
      h("blockquote", { class: "sms-text" }, m.text ?? ""),
      dl([
        ["Direction", (m.direction || "").toUpperCase()],
        ["From", m.from], ["To", m.to], ["VMN", m.vmn],
        ["Route", m.route], ["Keyword", m.keyword],
        ["Status", m.status ? badge(m.status) : null],
        ["Customer", m.msisdn],
        [m.direction === "mo" ? "Received" : "Created", when(m.received_at || m.created_at)],
        ["Last change", when(m.updated_at)],
        ["SMSC", m.smsc],
        ["SMSC message id", (m.smsc_message_ids || [m.smsc_message_id]).filter(Boolean)
          .join(", ")],
        ["Poll vote", m.vote ? `${m.vote.poll}: ${m.vote.option}` : null],
        ["Lead", m.lead ? "recorded" : null],
        ["Segments", m.segments ?? m.parts], ["Data coding", m.data_coding],
        ["In reply to", m.in_reply_to ? h("a", { href:
          `#/messages/${encodeURIComponent(m.in_reply_to)}` }, String(m.in_reply_to)) : null],
        ["Reference", m.reference], ["Error", m.error],
      ])),
    h("section", { "aria-labelledby": "hist-h" },
      h("h2", { id: "hist-h" }, "Status history"),
      table([
        ["Time", (s) => when(s.at || s.time || s.changed_at)],
        ["Status", (s) => badge(s.status || s.state)],
        ["Detail", (s) => s.detail || s.error || s.note || ""],
      ], history, { caption: "status history", empty: "No status changes recorded." })),
    h("section", { "aria-labelledby": "rcpt-h" },
      h("h2", { id: "rcpt-h" }, "Receipt"),
      receipt ? dl(Object.entries(receipt).map(([k, v]) => [k,
        /(_at|date)$/.test(k) ? when(v) : String(v ?? "")]))
        : h("p", { class: "empty" }, m.direction === "mt" ? "No receipt yet." : "Not an MT.")),
    h("section", { "aria-labelledby": "act-h" },
      h("h2", { id: "act-h" }, "Actions"),
      actions.length ? actions.map(actionBlock)
        : h("p", { class: "empty" }, "This message caused no actions.")));
}

function actionBlock(a) {
  // attempts_log: one row per attempt; attempts: how many (a number) or the rows.
  const log = a.attempts_log || (Array.isArray(a.attempts) ? a.attempts : []);
  const count = typeof a.attempts === "number" ? a.attempts : log.length;
  return h("article", { class: "action" },
    h("h3", {}, a.kind || a.action || a.name || "action", " ", badge(a.status || a.state)),
    dl([["Target", a.target || a.url],
        ["Attempts", a.max_attempts ? `${count} of at most ${a.max_attempts}` : String(count)],
        ["Last status", a.last_status], ["Last error", a.last_error || a.error],
        ["Next try", when(a.next_at)]]),
    table([
      ["#", (t) => String(t.attempt ?? t.n ?? "")],
      ["Time", (t) => when(t.at || t.started_at)],
      ["Outcome", (t) => badge(t.outcome || (t.ok === true ? "ok" : t.ok === false
        ? "failed" : ""))],
      ["Status", (t) => String(t.status ?? t.http_status ?? "")],
      ["Latency", (t) => (typeof t.latency_ms === "number" ? `${Math.round(t.latency_ms)} ms`
        : "")],
      ["Detail", (t) => t.detail || t.error || ""],
    ], log, { caption: "attempts", empty: "No attempts yet." }));
}
