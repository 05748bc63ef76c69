// The console's shell: sign-in, the navigation, and a hash router that renders one page
// at a time into <main>. Pages are modules with `title` and `render(main, ctx)`; render
// may return a cleanup function (the dashboard stops its refresh timer with it).

import { api, apiKey, setApiKey, whenUnauthorized } from "./api.js";
import { h, notice } from "./dom.js";
import * as dashboard from "./pages/dashboard.js";
import * as leads from "./pages/leads.js";
import * as message from "./pages/message.js";
import * as messages from "./pages/messages.js";
import * as numbers from "./pages/numbers.js";
import * as optins from "./pages/optins.js";
import * as polls from "./pages/polls.js";

const NAV = [["dashboard", "Dashboard"], ["messages", "Messages"], ["numbers", "Numbers"],
             ["optins", "Opt-ins"], ["polls", "Polls"], ["leads", "Leads"]];

const ROUTES = [
  [/^dashboard$/, dashboard.render, "Dashboard"],
  [/^messages$/, messages.render, "Messages"],
  [/^messages\/(.+)$/, message.render, "Message"],
  [/^numbers$/, numbers.render, "Numbers"],
  [/^numbers\/([^/]+)$/, numbers.renderNumber, "Number"],
  [/^numbers\/([^/]+)\/keywords\/(.+)$/, numbers.renderKeyword, "Keyword"],
  [/^optins$/, optins.render, "Opt-ins"],
  [/^polls$/, polls.render, "Polls"],
  [/^leads$/, leads.render, "Leads"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
let cleanup = null;
let generation = 0;

whenUnauthorized(() => {
  setApiKey(null);
  route();
});

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  return { path: path || "dashboard", query: new URLSearchParams(qs || "") };
}

function renderNav(current) {
  nav.replaceChildren(h("ul", {}, NAV.map(([path, label]) => h("li", {},
    h("a", { href: `#/${path}`, "aria-current": current.split("/")[0] === path ? "page" : false },
      label)))));
  account.replaceChildren(h("button", { type: "button", class: "secondary small",
    onclick: () => { setApiKey(null); route(); } }, "Sign out"));
}

async function route() {
  const mine = ++generation;
  if (cleanup) {
    try { cleanup(); } catch { /* a page's cleanup must not block navigation */ }
    cleanup = null;
  }
  main.replaceChildren();
  if (!apiKey()) {
    nav.replaceChildren();
    account.replaceChildren();
    signIn();
    return;
  }
  const { path, query } = parseHash();
  renderNav(path);
  let found = null;
  for (const [re, render, title] of ROUTES) {
    const m = path.match(re);
    if (m) {
      found = { render, title, params: m.slice(1).map(decodeURIComponent) };
      break;
    }
  }
  const heading = h("h1", { tabindex: "-1" }, found ? found.title : "Not found");
  main.append(heading);
  document.title = `${heading.textContent} · vmn-gateway console`;
  heading.focus();
  if (!found) {
    main.append(notice(`No page at #/${path}.`, "error"));
    return;
  }
  const box = h("div", { class: "page", "aria-busy": "true" });
  main.append(box);
  try {
    const setTitle = (text) => {
      heading.textContent = text;
      document.title = `${text} · vmn-gateway console`;
    };
    const done = await found.render(box, { params: found.params, query, setTitle });
    if (mine !== generation) {
      if (typeof done === "function") done();
      return;
    }
    cleanup = typeof done === "function" ? done : null;
  } catch (err) {
    if (mine !== generation) return;
    box.append(notice(err.message || String(err), "error"));
  } finally {
    box.removeAttribute("aria-busy");
  }
}

function signIn() {
  document.title = "Sign in · vmn-gateway console";
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off",
                             required: true, "aria-describedby": "api-key-hint api-key-err" });
  const err = h("p", { id: "api-key-err", class: "field-error", role: "alert" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-h" },
    h("h1", { id: "signin-h", tabindex: "-1" }, "Sign in"),
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input,
      h("small", { id: "api-key-hint", class: "hint" },
        "Made with: vmn-gateway apikey create NAME --scope read,manage,send. " +
        "Kept only for this browser tab.")),
    err, h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    setApiKey(input.value.trim());
    try {
      await api("/v1/numbers", { signingIn: true });
    } catch (e) {
      if (e.status === 401) {
        setApiKey(null);
        err.textContent = "This key is not valid (or was revoked).";
        input.focus();
        return;
      }
      // 403: a valid key without the read scope; the pages say what it may not do.
    }
    if (!window.location.hash || window.location.hash === "#/") {
      window.location.hash = "#/dashboard";
    } else {
      route();
    }
  });
  main.append(form);
  input.focus();
}

// The skip link must not change the hash (the router owns it): move the focus instead.
document.querySelector(".skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
route();
