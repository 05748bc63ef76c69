// Tiny DOM helpers. Every piece of data goes into the page as a text node or an
// attribute value, never as HTML, so nothing an SMS contains can inject markup.

/**
 * Build an element: h("a", {href: "#/x", class: "btn", onclick: fn}, "text", child...).
 * Attributes starting with "on" become event listeners; `true` sets a boolean
 * attribute, `false`/null/undefined leaves it out. Children may be strings, numbers,
 * nodes, arrays of those, or null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value" && "value" in el) {
      el.value = value;
    } else if (name === "checked") {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns = [[header, row => cell]], rows = array; empty text when none. */
export function table(columns, rows, { caption, empty = "Nothing found." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region",
                    "aria-label": caption || "table" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.map((row) =>
        h("tr", {}, columns.map(([title, cell]) => h("td", { "data-label": title }, h("div", {}, cell(row)))))))));
}

/** A definition list from [[term, value]] pairs; null/undefined/"" values are skipped. */
export function dl(pairs) {
  return h("dl", { class: "fields" }, pairs
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** ISO-8601 time to a short local form, keeping the ISO text as a tooltip. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString());
}

/** A coloured status badge (the text is always there; colour is only a hint). */
export function badge(text) {
  const t = String(text ?? "");
  return h("span", { class: `badge badge-${t.replace(/[^a-z_]/gi, "").toLowerCase()}` }, t);
}

/** A message line (role=status/alert) that screen readers announce. */
export function notice(text, kind = "info") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    text);
}
