// Numbers and keywords: list, create, edit, delete through /v1/numbers. Validation errors
// from the API (problem errors[].loc) are shown next to the field they name; numbers
// defined in the configuration file are shown read-only (the API answers 409 for them).

import { allItems, api } from "../api.js";
import { badge, dl, h, notice, table } from "../dom.js";
import { clearErrors, errorSummary, field, showErrors, splitList, valueOf } from "../forms.js";

export const title = "Numbers";

/** True when the API says this number comes from the file (read-only through the API). */
export function isReadOnly(n) {
  return n.read_only === true || n.editable === false || n.source === "file";
}

const enc = encodeURIComponent;

export async function render(main) {
  const numbers = await allItems("/v1/numbers", {}, { pageSize: 1000 });
  main.append(
    h("div", { class: "section-head" }, h("h2", {}, "All numbers"),
      h("a", { class: "button", href: "#/numbers/new" }, "New number")),
    table([
      ["VMN", (n) => h("a", { href: `#/numbers/${enc(n.vmn)}` }, n.vmn)],
      ["Sender ID", (n) => n.sender_id || ""],
      ["Keywords", (n) => (n.keywords || []).map((k) => k.keyword).join(", ")],
      ["Source", (n) => badge(isReadOnly(n) ? "file" : "api")],
    ], numbers, { caption: "numbers", empty: "No numbers yet." }));
}

/** #/numbers/new and #/numbers/VMN */
export async function renderNumber(main, { params, setTitle }) {
  const isNew = params[0] === "new";
  setTitle(isNew ? "New number" : `Number ${params[0]}`);
  const n = isNew ? { default: {}, keywords: [] } : await api(`/v1/numbers/${enc(params[0])}`);
  main.append(h("p", {}, h("a", { href: "#/numbers" }, "← all numbers")));
  if (!isNew && isReadOnly(n)) {
    main.append(notice("Defined in the configuration file: read-only here. Change the file " +
      "and reload the gateway to edit it.", "info"), numberView(n));
    return;
  }
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "config", "aria-label": isNew ? "new number" : `number ${n.vmn}` },
    h("fieldset", {}, h("legend", {}, "Number"),
      field("vmn", "VMN", { value: n.vmn, readonly: !isNew, required: true,
                            inputmode: "numeric", hint: "10 digits, or a 5-6 digit short code" }),
      field("sender_id", "Sender ID", { value: n.sender_id, hint: "default: the VMN" })),
    configFields("default", n.default || {}, { legend: "Default configuration" }),
    errorSummary(),
    h("div", { class: "actions" }, h("button", { type: "submit" }, isNew ? "Create" : "Save"),
      isNew ? null : h("button", { type: "button", class: "danger", onclick: async () => {
        if (!window.confirm(`Delete number ${n.vmn} and its keywords?`)) return;
        try {
          await api(`/v1/numbers/${enc(n.vmn)}`, { method: "DELETE" });
          window.location.hash = "#/numbers";
        } catch (err) {
          showErrors(form, err);
        }
      } }, "Delete number")),
    out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    out.replaceChildren();
    const vmn = valueOf(form, "vmn");
    const body = { ...n, vmn };
    setOrDrop(body, "sender_id", valueOf(form, "sender_id"));
    body.default = readConfig(form, "default", n.default || {});
    delete body.read_only;
    delete body.source;
    delete body.editable;
    try {
      await api(`/v1/numbers/${enc(vmn)}`, { method: "PUT", body });
      if (isNew) window.location.hash = `#/numbers/${enc(vmn)}`;
      else out.append(notice("Saved.", "ok"));
    } catch (err) {
      showErrors(form, err);
    }
  });
  main.append(h("div", { class: "two-col" }, form, isNew ? null : keywordList(n)));
}

function keywordList(n) {
  const box = h("section", { "aria-labelledby": "kw-h" });
  box.append(h("div", { class: "section-head" }, h("h2", { id: "kw-h" }, "Keywords"),
    h("a", { class: "button", href: `#/numbers/${enc(n.vmn)}/keywords/new` }, "New keyword")),
  table([
    ["Keyword", (k) => h("a", { href: `#/numbers/${enc(n.vmn)}/keywords/${enc(k.keyword)}` },
      k.keyword)],
    ["Aliases", (k) => (k.aliases || []).join(", ")],
    ["Actions", (k) => actionNames(k).join(", ")],
    ["", (k) => h("button", { type: "button", class: "danger small", "aria-label":
      `delete keyword ${k.keyword}`, onclick: async (ev) => {
      if (!window.confirm(`Delete keyword ${k.keyword}?`)) return;
      try {
        await api(`/v1/numbers/${enc(n.vmn)}/keywords/${enc(k.keyword)}`, { method: "DELETE" });
        ev.target.closest("tr").remove();
      } catch (err) {
        box.append(notice(err.message, "error"));
      }
    } }, "Delete")],
  ], n.keywords || [], { caption: "keywords", empty: "No keywords: every MO gets the default." }));
  return box;
}

/** #/numbers/VMN/keywords/new and #/numbers/VMN/keywords/KEYWORD */
export async function renderKeyword(main, { params, setTitle }) {
  const [vmn, kw] = params;
  const isNew = kw === "new";
  setTitle(isNew ? `New keyword for ${vmn}` : `Keyword ${kw} of ${vmn}`);
  const n = await api(`/v1/numbers/${enc(vmn)}`);
  const k = isNew ? {} : (n.keywords || []).find((x) => x.keyword === kw);
  main.append(h("p", {}, h("a", { href: `#/numbers/${enc(vmn)}` }, `← number ${vmn}`)));
  if (!k) {
    main.append(notice(`Number ${vmn} has no keyword ${kw}.`, "error"));
    return;
  }
  const readOnly = isReadOnly(n);
  if (readOnly) {
    main.append(notice("Defined in the configuration file: read-only here.", "info"));
  }
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "config", "aria-label": isNew ? "new keyword"
                                                                : `keyword ${kw}` },
    configFields("", k, { keyword: true, isNew, readOnly,
                          legend: isNew ? `New keyword for ${vmn}` : `Keyword ${kw}` }),
    errorSummary(),
    readOnly ? null : h("div", { class: "actions" },
      h("button", { type: "submit" }, isNew ? "Create keyword" : "Save keyword")),
    out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    out.replaceChildren();
    const body = readConfig(form, "", k);
    const name = body.keyword || "";
    if (!name) {
      showErrors(form, { errors: [{ loc: "keyword", msg: "a keyword is required" }],
                         message: "a keyword is required", problem: {} });
      return;
    }
    try {
      await api(`/v1/numbers/${enc(vmn)}/keywords/${enc(name)}`, { method: "PUT", body });
      window.location.hash = `#/numbers/${enc(vmn)}`;
    } catch (err) {
      showErrors(form, err);
    }
  });
  main.append(form);
}

// --- a configuration (the default or a keyword) as form fields -------------------------

const TEXT_LISTS = ["aliases", "forward_sms", "forward_email"];

function configFields(prefix, c, { keyword = false, isNew = false, readOnly = false,
                                   legend }) {
  const p = (k) => (prefix ? `${prefix}.${k}` : k);
  const poll = c.poll || {};
  const ro = { readonly: readOnly };
  return h("fieldset", {}, h("legend", {}, legend),
    keyword ? field(p("keyword"), "Keyword", { value: c.keyword, readonly: readOnly || !isNew,
                                               required: true, hint: "1-30 characters" }) : null,
    keyword ? field(p("aliases"), "Aliases", { value: (c.aliases || []).join(", "),
                                               hint: "comma-separated", ...ro }) : null,
    keyword ? field(p("match"), "Match", { kind: "select", value: c.match || "first_word",
      options: [["first_word", "first word"], ["exact", "exact (whole message)"]], ...ro })
      : null,
    field(p("reply"), "Auto-reply", { kind: "textarea", value: c.reply, ...ro,
      hint: "template: {from} {vmn} {keyword} {text} {args}" }),
    field(p("webhook"), "Webhook URL", { value: c.webhook, ...ro }),
    field(p("callback_profile"), "Callback profile", { value: c.callback_profile, ...ro }),
    field(p("forward_sms"), "Forward to numbers", { value: (c.forward_sms || []).join(", "),
                                                    hint: "comma-separated", ...ro }),
    field(p("forward_email"), "Forward to e-mail", { value: (c.forward_email || []).join(", "),
                                                     hint: "comma-separated", ...ro }),
    keyword ? field(p("starts"), "Starts", { value: c.starts, hint: "ISO-8601", ...ro }) : null,
    keyword ? field(p("expires"), "Expires", { value: c.expires, hint: "ISO-8601", ...ro })
      : null,
    keyword ? field(p("expiry_reply"), "Expiry reply", { value: c.expiry_reply, ...ro }) : null,
    h("div", { class: "checks" },
      field(p("opt_in"), "Opts the sender in", { kind: "checkbox", value: c.opt_in, ...ro }),
      field(p("opt_out"), "Opts the sender out", { kind: "checkbox", value: c.opt_out, ...ro }),
      field(p("lead"), "Record as a lead", { kind: "checkbox", value: c.lead, ...ro })),
    h("fieldset", { class: "poll" }, h("legend", {}, "Poll"),
      field(p("poll.name"), "Poll name", { value: poll.name, ...ro }),
      field(p("poll.options"), "Options", { value: (poll.options || []).join(", "),
                                            hint: "comma-separated", ...ro }),
      field(p("poll.invalid_reply"), "Invalid-vote reply", { value: poll.invalid_reply, ...ro })));
}

function setOrDrop(obj, key, value) {
  if (value === "" || value === undefined || (Array.isArray(value) && !value.length)) {
    delete obj[key];
  } else {
    obj[key] = value;
  }
}

/** The configuration from the form, on top of `orig` (keys the form does not show stay). */
function readConfig(form, prefix, orig) {
  const p = (k) => (prefix ? `${prefix}.${k}` : k);
  const c = { ...orig };
  for (const key of ["keyword", "match", "reply", "webhook", "callback_profile", "starts",
                     "expires", "expiry_reply"]) {
    const v = valueOf(form, p(key));
    if (v !== undefined) setOrDrop(c, key, v);
  }
  for (const key of TEXT_LISTS) {
    const v = valueOf(form, p(key));
    if (v !== undefined) setOrDrop(c, key, splitList(v));
  }
  for (const key of ["opt_in", "opt_out", "lead"]) {
    const v = valueOf(form, p(key));
    if (v === undefined) continue;
    if (v || key in orig) c[key] = v;
  }
  const pollName = valueOf(form, p("poll.name"));
  const pollOptions = splitList(valueOf(form, p("poll.options")));
  const invalid = valueOf(form, p("poll.invalid_reply"));
  if (pollName || pollOptions.length || invalid) {
    const poll = { ...(orig.poll || {}) };
    setOrDrop(poll, "name", pollName);
    setOrDrop(poll, "options", pollOptions);
    setOrDrop(poll, "invalid_reply", invalid);
    c.poll = poll;
  } else {
    delete c.poll;
  }
  return c;
}

function actionNames(c) {
  return ["reply", "webhook", "callback_profile", "forward_sms", "forward_email", "opt_in",
          "opt_out", "poll", "lead"].filter((k) => c[k] && (!Array.isArray(c[k]) || c[k].length));
}

function numberView(n) {
  return h("div", {},
    dl([["VMN", n.vmn], ["Sender ID", n.sender_id], ["Default actions",
      actionNames(n.default || {}).join(", ") || "none"]]),
    h("h2", {}, "Keywords"),
    table([
      ["Keyword", (k) => h("a", { href: `#/numbers/${enc(n.vmn)}/keywords/${enc(k.keyword)}` },
        k.keyword)],
      ["Aliases", (k) => (k.aliases || []).join(", ")],
      ["Actions", (k) => actionNames(k).join(", ")],
    ], n.keywords || [], { caption: "keywords", empty: "No keywords." }),
    h("details", {}, h("summary", {}, "As JSON"),
      h("pre", { class: "json" }, JSON.stringify(n, null, 2))));
}
