// Form fields that show the API's validation errors (problem `errors[].loc`) next to
// the field they name. Each field carries its key path (data-loc, e.g. "default.reply"
// or "keywords[0].poll.options"); an error's loc is matched to the field whose key
// path is the longest tail of it, so "number[0].default.reply", "body.default.reply"
// and "default.reply" all land on the same input.

import { h } from "./dom.js";

let counter = 0;

/** Split "a.b[0].c" / "a -> b -> 0" / ["a","b",0] into ["a","b","0","c"]. */
export function locParts(loc) {
  if (Array.isArray(loc)) return loc.map(String);
  return String(loc ?? "")
    .replace(/\[(\d+)\]/g, ".$1")
    .split(/\s*->\s*|\./)
    .filter((p) => p !== "");
}

/**
 * A labelled input. kind: "text" (default), "textarea", "select", "checkbox",
 * "datetime". `options` for select: [[value, label]].
 */
export function field(loc, label, { kind = "text", value = "", hint, options, readonly,
                                    required, placeholder, inputmode } = {}) {
  const id = `f${++counter}`;
  const errId = `${id}-err`;
  const hintId = hint ? `${id}-hint` : null;
  const common = { id, name: loc, "data-loc": loc, "aria-describedby":
    [hintId, errId].filter(Boolean).join(" "), readonly: readonly && kind !== "select",
    disabled: readonly && (kind === "select" || kind === "checkbox"), required,
    placeholder, inputmode };
  let input;
  if (kind === "textarea") {
    input = h("textarea", { ...common, rows: 3 }, value ?? "");
  } else if (kind === "select") {
    input = h("select", common, options.map(([v, l]) =>
      h("option", { value: v, selected: String(v) === String(value ?? "") }, l)));
  } else if (kind === "checkbox") {
    input = h("input", { ...common, type: "checkbox", checked: Boolean(value) });
  } else {
    input = h("input", { ...common, type: "text", value: value ?? "" });
  }
  const wrap = h("div", { class: `field field-${kind}` },
    kind === "checkbox" ? h("label", { for: id }, input, " ", label)
      : [h("label", { for: id }, label), input],
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
    h("p", { id: errId, class: "field-error", "aria-live": "polite" }));
  return wrap;
}

/** Clear every error shown in `form`. */
export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const summary = form.querySelector(".form-errors");
  if (summary) summary.replaceChildren();
}

/**
 * Show an ApiError's errors next to their fields; errors that match no field (and the
 * problem's detail when there are no errors) go to the form's summary. Focuses the
 * first invalid field.
 */
export function showErrors(form, err) {
  clearErrors(form);
  const inputs = [...form.querySelectorAll("[data-loc]")];
  const summary = form.querySelector(".form-errors");
  const loose = [];
  let first = null;
  for (const e of err.errors || []) {
    const parts = locParts(e.loc);
    let best = null;
    let bestLen = 0;
    for (const input of inputs) {
      const own = locParts(input.dataset.loc);
      if (own.length > parts.length || own.length <= bestLen) continue;
      const tail = parts.slice(parts.length - own.length);
      if (tail.every((p, i) => p === own[i])) {
        best = input;
        bestLen = own.length;
      }
    }
    if (best) {
      const slot = document.getElementById(`${best.id}-err`);
      slot.textContent = slot.textContent ? `${slot.textContent}; ${e.msg}` : e.msg;
      best.setAttribute("aria-invalid", "true");
      first = first || best;
    } else {
      loose.push(`${Array.isArray(e.loc) ? e.loc.join(".") : e.loc}: ${e.msg}`);
    }
  }
  if (!err.errors || !err.errors.length) loose.push(err.message);
  if (summary && loose.length) {
    summary.append(h("div", { role: "alert" },
      h("strong", {}, err.problem?.title || "The gateway refused this"),
      h("ul", {}, loose.map((t) => h("li", {}, t)))));
  }
  (first || summary)?.focus?.();
}

/** The value of the field with key path `loc` in `form` ("" when empty). */
export function valueOf(form, loc) {
  const el = form.querySelector(`[data-loc="${CSS.escape(loc)}"]`);
  if (!el) return undefined;
  if (el.type === "checkbox") return el.checked;
  return el.value.trim();
}

/** "a, b\nc" -> ["a", "b", "c"]. */
export function splitList(text) {
  return String(text || "").split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

/** The summary box a form's unmatched errors go to. */
export function errorSummary() {
  return h("div", { class: "form-errors", tabindex: "-1" });
}
