// Opt-ins: search the opt-in database, change a number's state by hand (recorded by the
// API with source "api"), and export the search as CSV.

import { allItems, api, listItems } from "../api.js";
import { toCsv, download } from "../csv.js";
import { badge, h, notice, replace, table, when } from "../dom.js";
import { clearErrors, errorSummary, field, showErrors, valueOf } from "../forms.js";

export const title = "Opt-ins";

const FILTERS = ["vmn", "msisdn", "state"];
const enc = encodeURIComponent;

export async function render(main, { query }) {
  const params = {};
  for (const f of FILTERS) if (query.get(f)) params[f] = query.get(f);

  const search = h("form", { class: "search", role: "search", "aria-label": "search opt-ins" },
    field("vmn", "VMN", { value: query.get("vmn"), hint: "* = every sender" }),
    field("msisdn", "Number", { value: query.get("msisdn"), inputmode: "tel" }),
    field("state", "State", { kind: "select", value: query.get("state"),
                              options: [["", "any"], ["in", "in"], ["out", "out"]] }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"),
      h("button", { type: "button", class: "secondary", onclick: exportCsv }, "Export CSV")));
  search.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const f of FILTERS) if (valueOf(search, f)) q.set(f, valueOf(search, f));
    window.location.hash = `#/optins?${q}`;
  });

  const out = h("div", { "aria-live": "polite" });
  const change = h("form", { class: "inline", "aria-label": "change an opt-in by hand" },
    field("vmn", "VMN", { hint: "* = every sender", required: true }),
    field("msisdn", "Number", { required: true, inputmode: "tel" }),
    field("state", "New state", { kind: "select", value: "out",
                                  options: [["out", "out (opt out)"], ["in", "in (opt in)"]] }),
    errorSummary(),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply")), out);
  change.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(change);
    out.replaceChildren();
    const vmn = valueOf(change, "vmn");
    const msisdn = valueOf(change, "msisdn");
    const state = valueOf(change, "state");
    try {
      await setState(vmn, msisdn, state);
      out.append(notice(`${msisdn} is now opted ${state} for ${vmn}.`, "ok"));
      await load(true);
    } catch (err) {
      showErrors(change, err);
    }
  });

  const body = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  main.append(
    h("section", { "aria-labelledby": "s-h" }, h("h2", { id: "s-h" }, "Search"), search),
    h("section", { "aria-labelledby": "r-h" }, h("h2", { id: "r-h" }, "Opt-in database"),
      body, more),
    h("section", { "aria-labelledby": "c-h" }, h("h2", { id: "c-h" }, "Manual change"), change));

  let rows = [];
  let cursor = null;
  async function load(reset = false) {
    if (reset) {
      rows = [];
      cursor = null;
    }
    try {
      const page = await api("/v1/optins", { query: { ...params, limit: 100, cursor } });
      rows.push(...listItems(page));
      cursor = page?.next_cursor || null;
      more.hidden = !cursor;
      replace(body, table([
        ["Number", (o) => o.msisdn],
        ["VMN", (o) => o.vmn],
        ["State", (o) => badge(o.state)],
        ["Changed", (o) => when(o.at || o.updated_at || o.changed_at)],
        ["By", (o) => o.keyword || o.source || "api"],
        ["", (o) => {
          const next = o.state === "out" ? "in" : "out";
          return h("button", { type: "button", class: "small secondary",
            "aria-label": `opt ${o.msisdn} ${next} for ${o.vmn}`, onclick: async () => {
              try {
                await setState(o.vmn, o.msisdn, next);
                await load(true);
              } catch (err) {
                body.prepend(notice(err.message, "error"));
              }
            } }, `Opt ${next}`);
        }],
      ], rows, { caption: "opt-ins", empty: "No opt-in records match." }));
    } catch (err) {
      replace(body, notice(err.message, "error"));
    }
  }
  more.addEventListener("click", () => load());

  async function exportCsv() {
    const items = await allItems("/v1/optins", params);
    download("optins.csv", toCsv(items));
  }
  await load();
}

function setState(vmn, msisdn, state) {
  return api(`/v1/optins/${enc(vmn)}/${enc(msisdn)}`, { method: "PUT", body: { state } });
}
