"""The web console (SPEC §9, issue 14) in a real browser: Debian's Chromium driven by
Playwright for Python, against the real daemon (a subprocess with `[api] listen`), the
node-smpp simulator and SQLite or PostgreSQL (VMN_TEST_DB).

One operator's day, in order: sign in, see the dashboard chart of traffic injected through
the simulator (and one more MO appear without a reload), see the webhook queue grow while
its receiver is down and drain when it is back, find a message and its status
history, receipt, and the MO it answers with its webhook attempt; create a number and a
keyword in the forms and see the next MO routed by that keyword; see a validation error
next to the field it names; edit and delete the keyword; see a file-defined number
read-only; opt a number out and see a send to it refused; view the poll chart; export
opt-ins and leads as CSV; stop and start the bind from the dashboard; reach every page
with the keyboard. Then every page at 375 px and 1440 px: no sideways scrolling, text
contrast >= WCAG AA, a screenshot. Last, edit the number made in the console and delete it.
Any browser console error fails the test, except the network log lines of the two refusals
the scenario provokes on purpose (HTTP 422: the validation error and the opted-out send).

Screenshots go to the test's tmp dir; with VMN_CONSOLE_SHOTS=1 they replace the ones in
docs/console/ (the README shows them)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import REPO, wait_for
from peers import HttpRecorder
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

if TYPE_CHECKING:  # a plugin (below): imported by pytest, so that its asserts are rewritten
    from apihelp import ApiGateway

pytest_plugins = ["apihelp"]  # the api_gateway and hooks fixtures

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTHS = (375, 1440)

A = "5551000100"       # defined in the file: read-only in the console
B = "5551000700"       # created in the console
ALICE = "15550107001"  # votes, asks for a call, is opted out by hand later
BOB = "15550107002"    # texts the keyword created in the console
CAROL = "15550107003"
DAVE = "15550107004"   # votes while the webhook receiver is down
NUMBERS = """
[[number]]
vmn = "{A}"
[number.default]
reply = "A got: {{text}}"

[[number.keyword]]
keyword = "VOTE"
reply = "Thanks for voting {{args}}"
webhook = "{hook}"
[number.keyword.poll]
name = "colour"
options = ["RED", "GREEN", "BLUE"]

[[number.keyword]]
keyword = "CALLME"
lead = true
reply = "We will call you"
"""
expect.set_options(timeout=15_000)

# The console's own network log lines that the scenario provokes on purpose.
EXPECTED_REFUSAL = re.compile(
    r"^Failed to load resource: the server responded with a status of 422\b")

# Contrast of every visible text against its effective background (WCAG 2.x formula):
# returns the failures as "text: ratio < needed".
CONTRAST_JS = """
() => {
  const lum = (rgb) => {
    const c = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92
                                                            : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const parse = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const p = parse(getComputedStyle(e).backgroundColor);
      if (p.length === 3 || (p.length === 4 && p[3] > 0.5)) return p.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("[hidden], .visually-hidden, canvas, option")) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || st.display === "none" || Number(st.opacity) < 0.5) continue;
    const fg = lum(parse(st.color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(st.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    const need = large ? 3 : 4.5;
    const text = el.textContent.trim().slice(0, 40);
    if (ratio < need) bad.push(`${text}: ${ratio.toFixed(2)} < ${need}`);
  }
  return bad;
}
"""


class Console:
    """One browser page on the console, with every console error it logged."""

    def __init__(self, browser: Browser, base: str, width: int, errors: list[str]) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": 900},
                                           accept_downloads=True)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(20000)
        self.errors = errors
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning", "assert"):
            self.errors.append(f"{msg.type}: {msg.text}")

    def sign_in(self, key: str) -> None:
        page = self.page
        page.goto(self.base + "/")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    def open(self, route: str) -> Page:
        """Go to #/route and wait until the page has rendered."""
        self.page.goto(f"{self.base}/#/{route}")
        self.settled()
        return self.page

    def settled(self) -> None:
        expect(self.page.locator("main h1")).to_be_visible()
        expect(self.page.locator(".page[aria-busy]")).to_have_count(0)

    def nav(self, label: str) -> None:
        self.page.get_by_role("navigation", name="main").get_by_role("link", name=label).click()
        self.settled()

    def field_error(self, label: str) -> str:
        """The error shown next to the field labelled `label` (via aria-describedby)."""
        field = self.page.get_by_label(label, exact=True)
        ids = (field.get_attribute("aria-describedby") or "").split()
        err = next(i for i in ids if i.endswith("-err"))
        return self.page.locator(f"#{err}").inner_text()

    def download(self, button: str) -> str:
        with self.page.expect_download() as info:
            self.page.get_by_role("button", name=button).click()
        path = info.value.path()
        return Path(path).read_text(encoding="utf-8")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path / "shots"


def api_items(g: ApiGateway, key: str, path: str) -> list[dict[str, Any]]:
    r = g.call("GET", path, key=key)
    assert r.status == 200, r.text
    body = r.json()
    return list(body["items"] if isinstance(body, dict) else body)


def test_operator_day(api_gateway: Callable[..., ApiGateway], browser: Browser,
                      hooks: HttpRecorder, shots: Path) -> None:
    g = api_gateway(numbers=NUMBERS.format(A=A, hook=f"http://127.0.0.1:{hooks.port}/vote"),
                    extra_gateway="retry_max = 1.0\nmax_attempts = 100")
    key = g.key("console", scope="send,read,manage")
    errors: list[str] = []

    # Traffic through the simulator before the operator looks.
    for text in ("hello there", "VOTE red", "CALLME please"):
        g.mo(ALICE, A, text)
    g.mo(BOB, A, "VOTE red")
    g.mo(CAROL, A, "VOTE blue")
    wait_for(lambda: len(g.sim.submits()) >= 5, what="the five replies")
    replies = len(g.sim.submits())
    [vote_reply] = [s for s in g.sim.submits()
                    if s["destination_addr"] == ALICE and s["text"] == "Thanks for voting red"]
    assert g.sim.receipt(message_id=vote_reply["message_id"], stat="DELIVRD", err="000",
                         source=ALICE, destination=A)["status"] == 0
    wait_for(lambda: len([r for r in hooks.requests if r.json()["type"] == "mo"]) == 3,
             what="the three VOTE webhooks")

    c = Console(browser, g.base, 1440, errors)
    page = c.page

    # --- sign in; the dashboard chart shows the five MOs and their replies -----------------
    c.sign_in(key)
    expect(page.locator("#traffic-chart canvas")).to_have_count(1)
    expect(page.locator("#traffic-chart .u-legend")).to_contain_text(f"{A} MO")
    totals = page.locator(".totals tbody tr", has_text=A)
    expect(totals.locator("td").nth(1)).to_have_text("5")
    expect(totals.locator("td").nth(2)).to_have_text(str(replies), timeout=30000)
    expect(page.locator(".binds")).to_contain_text("sim")
    expect(page.locator(".binds .badge")).to_have_text("bound")
    # Refreshed live: one more MO shows up without a reload.
    g.mo(BOB, A, "hello again")
    expect(totals.locator("td").nth(1)).to_have_text("6", timeout=30000)
    # The last day: 1440 steps of a minute, the same totals.
    page.get_by_role("link", name="last day").click()
    c.settled()
    expect(page.get_by_role("link", name="last day")).to_have_attribute("aria-current", "page")
    expect(page.locator("#traffic-chart canvas")).to_have_count(1)
    expect(totals.locator("td").nth(1)).to_have_text("6")

    # --- the queues (GET /v1/queues), refreshed live -------------------------------------
    queues = page.locator("#queues")
    for name in ("MT queued", "MT sending", "MO fan-out", "Action webhook", "Action mqtt",
                 "Action email", "Dead-lettered", "Failed"):
        expect(queues.locator("tr", has_text=name)).to_have_count(1)
    webhook = queues.locator("tr", has_text="Action webhook").locator("td")
    expect(webhook.nth(1)).to_have_text("0", timeout=30000)
    expect(webhook.nth(2)).to_have_text("empty")
    # The receiver refuses: Dave's vote (and its reply's status) wait in the webhook queue,
    # with their age; it answers again: the queue drains (the gateway above retries every
    # second and does not dead-letter them meanwhile).
    hooks.status = 503
    g.mo(DAVE, A, "VOTE green")
    expect(webhook.nth(1)).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=30000)
    expect(webhook.nth(2)).to_have_text(re.compile(r"^\d+ s$"))
    hooks.status = 200
    expect(webhook.nth(1)).to_have_text("0", timeout=30000)
    expect(queues.locator("tr", has_text="Dead-lettered").locator("td").nth(1)).to_have_text("0")

    # --- find a message (Alice's vote reply) and its history ---------------------------
    c.nav("Messages")
    search = page.get_by_role("search", name="search messages")
    search.get_by_label("Number").fill(ALICE)
    search.get_by_label("Direction").select_option("mt")
    search.get_by_role("button", name="Search").click()
    c.settled()
    expect(page).to_have_url(re.compile(r"msisdn=15550107001.*direction=mt|direction=mt.*msisdn"))
    page.get_by_role("link", name="Thanks for voting red").click()
    c.settled()
    expect(page.locator(".sms-text")).to_have_text("Thanks for voting red")
    history = page.get_by_role("region", name="Status history", exact=True)
    for status in ("queued", "submitted", "delivered"):
        expect(history).to_contain_text(status)
    expect(page.get_by_role("region", name="Receipt")).to_contain_text("DELIVRD")
    message_route = page.url.split("#/")[1]
    # The MO it answers: routed by VOTE, its webhook delivered at the first attempt.
    page.locator("dd a").click()  # "In reply to"
    c.settled()
    expect(page.locator(".sms-text")).to_have_text("VOTE red")
    expect(page.locator("dl.fields").first).to_contain_text("keyword")
    expect(page.locator("dl.fields").first).to_contain_text("VOTE")
    action = page.locator("article.action")
    expect(action).to_contain_text("webhook")
    expect(action).to_contain_text(f"http://127.0.0.1:{hooks.port}/vote")
    expect(action.locator("tbody tr")).to_have_count(1)
    expect(action.locator("tbody tr")).to_contain_text("200")

    # --- a number and a keyword created in the forms; the next MO is routed by it ---------
    c.nav("Numbers")
    page.get_by_role("link", name="New number").click()
    c.settled()
    page.get_by_label("VMN").fill(B)
    page.get_by_label("Auto-reply").fill("B default")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Number {B}")
    page.get_by_role("link", name="New keyword").click()
    c.settled()
    page.get_by_label("Keyword", exact=True).fill("PROMO")
    page.get_by_label("Auto-reply").fill("Promo code for {from}")
    page.get_by_role("button", name="Create keyword").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Number {B}")
    expect(page.get_by_role("link", name="PROMO")).to_be_visible()

    g.mo(BOB, B, "promo please")
    wait_for(lambda: any(s["text"] == f"Promo code for {BOB}" for s in g.sim.submits()),
             what="the PROMO reply")
    c.nav("Messages")
    search = page.get_by_role("search", name="search messages")
    search.get_by_label("VMN").fill(B)
    search.get_by_role("button", name="Search").click()
    c.settled()
    row = page.locator("tbody tr", has_text="promo please")
    expect(row).to_contain_text("keyword")
    expect(row).to_contain_text("PROMO")

    # --- a validation error next to its field -----------------------------------------
    c.open(f"numbers/{B}/keywords/new")
    page.get_by_label("Keyword", exact=True).fill("BAD")
    page.get_by_label("Auto-reply").fill("Hello {nope}")
    page.get_by_role("button", name="Create keyword").click()
    expect(page.get_by_label("Auto-reply")).to_have_attribute("aria-invalid", "true")
    assert "unknown placeholder {nope}" in c.field_error("Auto-reply")
    assert c.field_error("Keyword") == ""
    page.screenshot(path=str(shots / "keyword-error-1440.png"), full_page=True)
    r = g.call("GET", f"/v1/numbers/{B}", key=key)
    assert [k["keyword"] for k in r.json()["keywords"]] == ["PROMO"], r.text

    # --- edit the keyword, then delete it ------------------------------------------------
    c.open(f"numbers/{B}")
    page.get_by_role("link", name="PROMO").click()
    c.settled()
    expect(page.get_by_label("Keyword", exact=True)).to_have_attribute("readonly", "")
    page.get_by_label("Auto-reply").fill("Promo v2 for {from}")
    page.get_by_role("button", name="Save keyword").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Number {B}")
    r = g.call("GET", f"/v1/numbers/{B}", key=key)
    assert [(k["keyword"], k["reply"]) for k in r.json()["keywords"]] == [
        ("PROMO", "Promo v2 for {from}")], r.text
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="delete keyword PROMO").click()
    expect(page.get_by_role("link", name="PROMO")).to_have_count(0)
    wait_for(lambda: g.call("GET", f"/v1/numbers/{B}", key=key).json()["keywords"] == [],
             what="PROMO deleted")

    # --- a number from the file is read-only ------------------------------------------
    c.open(f"numbers/{A}")
    expect(page.locator("main")).to_contain_text("read-only")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("link", name="VOTE")).to_be_visible()

    # --- opt Alice out by hand; a send to her is refused --------------------------------
    c.nav("Opt-ins")
    change = page.get_by_role("form", name="change an opt-in by hand")
    change.get_by_label("VMN").fill(A)
    change.get_by_label("Number").fill(ALICE)
    change.get_by_label("New state").select_option("out")
    change.get_by_role("button", name="Apply").click()
    expect(change).to_contain_text(f"{ALICE} is now opted out")
    optins = c.download("Export CSV")
    rows = list(csv.DictReader(io.StringIO(optins)))
    assert any(r.get("msisdn") == ALICE and r.get("state") == "out" for r in rows), optins

    c.nav("Messages")
    page.get_by_text("Send a message").click()
    send = page.get_by_role("form", name="send a message")
    send.get_by_label("From (VMN)").fill(A)
    send.get_by_label("To").fill(ALICE)
    send.get_by_label("Text").fill("a send after the opt-out")
    send.get_by_role("button", name="Send").click()
    expect(send.locator(".notice-error")).to_contain_text("opted")
    blocked = api_items(g, key, f"/v1/messages?msisdn={ALICE}&status=blocked")
    assert [m["text"] for m in blocked] == ["a send after the opt-out"], blocked
    assert not [s for s in g.sim.submits() if s["text"] == "a send after the opt-out"]

    # --- the poll as a bar chart; leads with CSV export ---------------------------------
    c.nav("Polls")
    chart = page.locator("figure.bars", has_text="colour")
    expect(chart.locator(".bar-row", has_text="RED").locator(".bar-value")).to_have_text("2")
    expect(chart.locator(".bar-row", has_text="BLUE").locator(".bar-value")).to_have_text("1")
    # Dave's, cast while the webhook receiver was down
    expect(chart.locator(".bar-row", has_text="GREEN").locator(".bar-value")).to_have_text("1")

    c.nav("Leads")
    expect(page.locator("main")).to_contain_text(ALICE)
    leads = c.download("Export CSV")
    assert ALICE in leads and "CALLME" in leads, leads

    # --- stop the bind from the dashboard, and start it again ----------------------------
    c.open("dashboard")
    binds = page.locator(".binds")
    binds.get_by_role("button", name="stop bind sim").click()
    expect(binds.locator(".badge")).to_have_text("stopped")
    g.sim.wait_unbound()
    binds.get_by_role("button", name="start bind sim").click()
    g.sim.wait_bound(timeout=20)
    expect(binds.locator(".badge")).to_have_text("bound", timeout=30000)

    # --- keyboard: from the skip link (the first stop), Tab reaches every page --------------
    c.open("dashboard")
    page.locator(".skip").focus()
    reached = ["Skip to content"]
    for _ in range(9):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert reached[:9] == ["Skip to content", "vmn-gateway", "Dashboard", "Messages",
                           "Numbers", "Opt-ins", "Polls", "Leads", "Sign out"], reached
    page.get_by_role("link", name="Opt-ins").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Opt-ins")
    c.context.close()

    # --- every page at both widths: no sideways scroll, contrast, a screenshot -------------
    pages = {
        "dashboard": "dashboard", "messages": "messages", "message": message_route,
        "numbers": "numbers", "number-file": f"numbers/{A}", "number-api": f"numbers/{B}",
        "keyword-file": f"numbers/{A}/keywords/VOTE", "keyword-new": f"numbers/{B}/keywords/new",
        "optins": "optins", "polls": "polls",
        "leads": "leads",
    }
    for width in WIDTHS:
        c = Console(browser, g.base, width, errors)
        c.sign_in(key)
        for name, route in pages.items():
            page = c.open(route)
            if name == "dashboard":
                expect(page.locator("#traffic-chart canvas")).to_have_count(1)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} at {width} px scrolls sideways by {overflow} px"
            assert page.evaluate(CONTRAST_JS) == [], f"{name} at {width} px"
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        c.context.close()

    # --- edit the number, then delete it ------------------------------------------------
    c = Console(browser, g.base, 1440, errors)
    c.sign_in(key)
    page = c.open(f"numbers/{B}")
    page.get_by_label("Auto-reply").fill("B default v2")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".notice-ok")).to_have_text("Saved.")
    assert g.call("GET", f"/v1/numbers/{B}", key=key).json()["default"] == {
        "reply": "B default v2"}
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete number").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Numbers")
    expect(page.get_by_role("link", name=B)).to_have_count(0)
    expect(page.get_by_role("link", name=A)).to_be_visible()
    assert g.call("GET", f"/v1/numbers/{B}", key=key).status == 404
    c.context.close()

    unexpected = [e for e in errors if not EXPECTED_REFUSAL.match(e.split(": ", 1)[1])]
    assert unexpected == [], unexpected
    assert len(errors) == 2, errors  # the validation error and the refused send

    if os.environ.get("VMN_CONSOLE_SHOTS"):
        docs = REPO / "docs" / "console"
        docs.mkdir(parents=True, exist_ok=True)
        for shot in shots.glob("*.png"):
            shutil.copy(shot, docs / shot.name)
