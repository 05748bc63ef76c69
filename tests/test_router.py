"""Routing: destination forms, opt words, keyword matching, windows, defaults, args.

Table-driven over one realistic configuration, plus property tests that compare the
compiled matcher with a plain reference matcher.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Config, MatchMode, normalize_keyword
from gateway.routing import Decision, KeywordTrie, Route, Router, normalize_head, normalize_text

LONG = "5551000100"
SHORT = "55510"
OTHER = "5551000200"  # has a STOP keyword; global opt words
CC44 = "5551000300"

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SALE_STARTS = datetime(2025, 1, 1, tzinfo=UTC)
SALE_EXPIRES = datetime(2025, 2, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def make_config(
    numbers: list[dict[str, Any]],
    *,
    gateway: dict[str, Any] | None = None,
    optout: dict[str, Any] | None = None,
) -> Config:
    data: dict[str, Any] = {"smsc": [{"name": "sim", "system_id": "test"}], "number": numbers}
    if gateway is not None:
        data["gateway"] = gateway
    if optout is not None:
        data["optout"] = optout
    # Validated by the models but without the file's cross-checks: a keyword that an opt
    # word shadows (OTHER's STOP) is a config error since issue 10, yet the router's
    # precedence must hold for whatever configuration it is given.
    cc = (gateway or {}).get("country_code", "1")
    return Config.model_validate(data, by_alias=True, by_name=False,
                                 context={"country_code": cc})


NUMBERS: list[dict[str, Any]] = [
    {
        "vmn": LONG,
        "default": {"reply": "default long"},
        "keyword": [
            {"keyword": "Hello", "aliases": ["HI", "hey there"], "reply": "hello {args}"},
            {"keyword": "PRICE", "reply": "p"},
            {"keyword": "price list", "reply": "pl"},
            {"keyword": "GET  PRICE", "reply": "gp"},  # stored collapsed: "GET PRICE"
            {"keyword": "JOIN", "match": "exact", "opt_in": True},
            {"keyword": "ПРИВЕТ", "reply": "ru"},
            {"keyword": "STRASSE", "reply": "de"},
            {"keyword": "OFFICE", "reply": "ligature"},
            {"keyword": "C++", "reply": "cpp"},
            {
                "keyword": "SALE",
                "starts": SALE_STARTS.isoformat(),
                "expires": SALE_EXPIRES.isoformat(),
                "expiry_reply": "over",
                "reply": "20% off",
            },
            {"keyword": "OLD", "expires": "2020-01-01T00:00:00Z", "expiry_reply": "gone"},
            {"keyword": "SOON", "starts": "2099-01-01T00:00:00Z", "reply": "later"},
        ],
    },
    {
        "vmn": SHORT,
        "optout": {"stop_keywords": ["ARRET", "Stop"], "help_keywords": ["AIDE"]},
        "default": {"reply": "default short"},
        "keyword": [{"keyword": "VOTE", "reply": "v"}],
    },
    {
        "vmn": OTHER,
        "default": {},
        "keyword": [{"keyword": "STOP", "reply": "a keyword, not the opt word"}],
    },
]

CFG = make_config(NUMBERS)
ROUTER = Router(CFG)


def kw(vmn: str, name: str) -> Any:
    number = CFG.number(vmn)
    assert number is not None
    return next(k for k in number.keywords if k.keyword == name)


# ------------------------------------------------------------------ keyword matching

# (text, route, keyword, args) on LONG
KEYWORD_CASES = [
    pytest.param("hello", Route.KEYWORD, "Hello", "", id="first-word-alone"),
    pytest.param("HELLO world", Route.KEYWORD, "Hello", "world", id="first-word-then-text"),
    pytest.param("HELLO!", Route.KEYWORD, "Hello", "", id="punct-bang"),
    pytest.param("hello,world", Route.KEYWORD, "Hello", "world", id="punct-comma-no-space"),
    pytest.param("hello, world", Route.KEYWORD, "Hello", "world", id="punct-comma"),
    pytest.param("hello-there", Route.KEYWORD, "Hello", "there", id="punct-dash"),
    pytest.param("hello...  you there?", Route.KEYWORD, "Hello", "you there?", id="args-punct"),
    pytest.param("HELLOWORLD", Route.DEFAULT, None, "", id="no-match-inside-word"),
    pytest.param("hello2", Route.DEFAULT, None, "", id="digit-is-not-a-boundary"),
    pytest.param("  hello\t\tworld  ", Route.KEYWORD, "Hello", "world", id="case-whitespace"),
    pytest.param("hElLo\nWorld\n", Route.KEYWORD, "Hello", "World", id="newline-args-case-kept"),
    pytest.param("hi", Route.KEYWORD, "Hello", "", id="alias"),
    pytest.param("Hi, Bob", Route.KEYWORD, "Hello", "Bob", id="alias-args"),
    pytest.param("HEY   THERE you", Route.KEYWORD, "Hello", "you", id="multi-word-alias"),
    pytest.param("hey", Route.DEFAULT, None, "", id="half-of-multi-word-alias"),
    pytest.param("get price", Route.KEYWORD, "GET PRICE", "", id="multi-word"),
    pytest.param("Get\t Price of milk", Route.KEYWORD, "GET PRICE", "of milk", id="multi-ws"),
    pytest.param("get prices", Route.DEFAULT, None, "", id="multi-word-no-boundary"),
    pytest.param("price", Route.KEYWORD, "PRICE", "", id="shorter"),
    pytest.param("price list", Route.KEYWORD, "price list", "", id="longest-wins"),
    pytest.param("PRICE LIST please", Route.KEYWORD, "price list", "please", id="longest-args"),
    pytest.param("price listing", Route.KEYWORD, "PRICE", "listing", id="longest-no-boundary"),
    pytest.param("price, list", Route.KEYWORD, "PRICE", "list", id="punct-breaks-multi-word"),
    pytest.param("join", Route.KEYWORD, "JOIN", "", id="exact"),
    pytest.param("  JOIN ", Route.KEYWORD, "JOIN", "", id="exact-trimmed"),
    pytest.param("join now", Route.DEFAULT, None, "", id="exact-not-first-word"),
    pytest.param("join!", Route.DEFAULT, None, "", id="exact-not-with-punct"),
    pytest.param("привет", Route.KEYWORD, "ПРИВЕТ", "", id="cyrillic-casefold"),
    pytest.param("Привет, мир", Route.KEYWORD, "ПРИВЕТ", "мир", id="cyrillic-args"),
    pytest.param("ПРИВЕТ😀", Route.KEYWORD, "ПРИВЕТ", "", id="emoji-boundary"),
    pytest.param("hello 😀 friend", Route.KEYWORD, "Hello", "friend", id="emoji-stripped-args"),
    pytest.param("приветик", Route.DEFAULT, None, "", id="cyrillic-inside-word"),
    pytest.param("straße", Route.KEYWORD, "STRASSE", "", id="sharp-s-casefold"),
    pytest.param("Straße 5", Route.KEYWORD, "STRASSE", "5", id="sharp-s-args"),
    pytest.param("STRASSE", Route.KEYWORD, "STRASSE", "", id="sharp-s-upper"),
    pytest.param("o\ufb03ce,5", Route.KEYWORD, "OFFICE", "5", id="ffi-ligature-args"),
    pytest.param("c++ rocks", Route.KEYWORD, "C++", "rocks", id="keyword-with-punct"),
    pytest.param("c+", Route.DEFAULT, None, "", id="keyword-with-punct-partial"),
    pytest.param("", Route.DEFAULT, None, "", id="empty"),
    pytest.param(" \t ", Route.DEFAULT, None, "", id="blank"),
    pytest.param("what is this", Route.DEFAULT, None, "", id="default"),
    pytest.param("old stuff", Route.EXPIRED, "OLD", "stuff", id="expired"),
    pytest.param("soon", Route.EXPIRED, "SOON", "", id="not-started"),
]


@pytest.mark.parametrize(("text", "route", "keyword", "args"), KEYWORD_CASES)
def test_keyword_matching(text: str, route: Route, keyword: str | None, args: str) -> None:
    d = ROUTER.route(LONG, text, NOW)
    assert (d.route, d.keyword, d.args) == (route, keyword, args)
    assert d.vmn == LONG
    assert d.number is CFG.numbers[0]
    assert d.reject is False
    if route is Route.DEFAULT:
        assert d.action is CFG.numbers[0].default
    else:
        assert d.action is kw(LONG, keyword or "")


def test_opt_in_keyword_is_a_keyword_route() -> None:
    d = ROUTER.route(LONG, "join", NOW)
    assert d.route is Route.KEYWORD
    assert d.action is not None and d.action.opt_in


# ------------------------------------------------------------------ windows

WINDOW_CASES = [
    pytest.param(SALE_STARTS - timedelta(days=1), Route.EXPIRED, id="before-start"),
    pytest.param(SALE_STARTS - US, Route.EXPIRED, id="just-before-start"),
    pytest.param(SALE_STARTS, Route.KEYWORD, id="at-start-in-window"),
    pytest.param(SALE_EXPIRES - US, Route.KEYWORD, id="just-before-expires"),
    pytest.param(SALE_EXPIRES, Route.EXPIRED, id="at-expires-out"),
    pytest.param(SALE_EXPIRES + timedelta(days=1), Route.EXPIRED, id="after-expires"),
]


@pytest.mark.parametrize(("now", "route"), WINDOW_CASES)
def test_keyword_window(now: datetime, route: Route) -> None:
    d = ROUTER.route(LONG, "SALE today", now)
    assert (d.route, d.keyword, d.args) == (route, "SALE", "today")
    assert d.action is kw(LONG, "SALE")  # the caller sends its expiry_reply when expired


@pytest.mark.parametrize(("now", "route"), WINDOW_CASES)
def test_keyword_window_in_unix_seconds(now: datetime, route: Route) -> None:
    """The intake and the fan-out pass the MO's receipt time as UNIX seconds (a datetime
    is made only for a keyword with a window): the same decision, to the microsecond."""
    d = ROUTER.route(LONG, "SALE today", now.timestamp())
    assert (d.route, d.keyword, d.args) == (route, "SALE", "today")
    assert ROUTER.route(LONG, "zzz no keyword", now.timestamp()).route is Route.DEFAULT


# ------------------------------------------------------------------ destinations

DESTINATION_CASES = [
    pytest.param(LONG, LONG, id="vmn"),
    pytest.param("1" + LONG, LONG, id="cc-vmn"),
    pytest.param("+1" + LONG, LONG, id="plus-cc-vmn"),
    pytest.param("+" + LONG, LONG, id="plus-vmn"),
    pytest.param("001" + LONG, LONG, id="00-cc-vmn"),
    pytest.param(f" {LONG} ", LONG, id="padded"),
    pytest.param(SHORT, SHORT, id="short-code"),
    pytest.param("1" + SHORT, SHORT, id="cc-short-code"),
    pytest.param("+" + SHORT, SHORT, id="plus-short-code"),
    pytest.param("5551000101", None, id="unknown"),
    pytest.param("2" + LONG, None, id="wrong-cc"),
    pytest.param("++" + LONG, None, id="double-plus"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize(("destination", "vmn"), DESTINATION_CASES)
def test_destination_forms(destination: str, vmn: str | None) -> None:
    d = ROUTER.route(destination, "what is this", NOW)
    if vmn is None:
        assert d == Decision(route=Route.UNROUTED, vmn=None, reject=False)
    else:
        assert (d.route, d.vmn) == (Route.DEFAULT, vmn)
        assert d.number is CFG.number(vmn)


@pytest.mark.parametrize(
    ("destination", "vmn"),
    [
        pytest.param("44" + CC44, CC44, id="cc44"),
        pytest.param("+44" + CC44, CC44, id="plus-cc44"),
        pytest.param("0044" + CC44, CC44, id="00-cc44"),
        pytest.param("1" + CC44, None, id="cc1-not-configured"),
    ],
)
def test_country_code_setting(destination: str, vmn: str | None) -> None:
    cfg = make_config([{"vmn": CC44, "default": {}}], gateway={"country_code": "44"})
    assert Router(cfg).route(destination, "x", NOW).vmn == vmn


@pytest.mark.parametrize(
    ("unrouted", "reject"),
    [pytest.param("accept", False, id="accept"), pytest.param("reject", True, id="reject")],
)
def test_unrouted(unrouted: str, reject: bool) -> None:
    router = Router(make_config(NUMBERS, gateway={"unrouted": unrouted}))
    d = router.route("5559999999", "HELLO", NOW)
    assert d == Decision(route=Route.UNROUTED, vmn=None, reject=reject)
    assert (d.keyword, d.action, d.args, d.number) == (None, None, "", None)
    assert router.route(LONG, "HELLO", NOW).reject is False


def test_vmns() -> None:
    assert ROUTER.vmns() == frozenset({LONG, SHORT, OTHER})
    assert Router(make_config([])).vmns() == frozenset()


def test_no_keywords_and_no_numbers() -> None:
    router = Router(make_config([{"vmn": LONG, "default": {}}]))
    assert router.route(LONG, "hello", NOW).route is Route.DEFAULT
    assert Router(make_config([])).route(LONG, "hello", NOW).route is Route.UNROUTED


# ------------------------------------------------------------------ opt words

OPT_CASES = [
    pytest.param(LONG, "STOP", Route.OPTOUT, "STOP", id="stop"),
    pytest.param(LONG, " stop ", Route.OPTOUT, "STOP", id="stop-trimmed-lower"),
    pytest.param(LONG, "\tStopAll\n", Route.OPTOUT, "STOPALL", id="stopall"),
    pytest.param(LONG, "unsubscribe", Route.OPTOUT, "UNSUBSCRIBE", id="unsubscribe"),
    pytest.param(LONG, "start", Route.OPTIN, "START", id="start"),
    pytest.param(LONG, "Yes", Route.OPTIN, "YES", id="yes"),
    pytest.param(LONG, "help", Route.HELP, "HELP", id="help"),
    pytest.param(LONG, "INFO", Route.HELP, "INFO", id="info"),
    pytest.param(LONG, "Stop please", Route.DEFAULT, None, id="stop-not-one-word"),
    pytest.param(LONG, "STOP!", Route.DEFAULT, None, id="stop-punct-not-whole"),
    pytest.param(LONG, "help me", Route.DEFAULT, None, id="help-not-one-word"),
    pytest.param(OTHER, "stop", Route.OPTOUT, "STOP", id="opt-word-before-keyword"),
    pytest.param(OTHER, "stop please", Route.KEYWORD, "STOP", id="keyword-when-not-whole"),
    # SHORT overrides stop and help words; start words are the global ones.
    pytest.param(SHORT, "arret", Route.OPTOUT, "ARRET", id="override-stop"),
    pytest.param(SHORT, "stop", Route.OPTOUT, "STOP", id="override-stop-upper-cased"),
    pytest.param(SHORT, "END", Route.DEFAULT, None, id="override-replaces-global"),
    pytest.param(SHORT, "aide", Route.HELP, "AIDE", id="override-help"),
    pytest.param(SHORT, "info", Route.DEFAULT, None, id="override-help-replaces-info"),
    pytest.param(SHORT, "start", Route.OPTIN, "START", id="override-keeps-global-start"),
    pytest.param(LONG, "arret", Route.DEFAULT, None, id="override-is-per-number"),
]


@pytest.mark.parametrize(("vmn", "text", "route", "keyword"), OPT_CASES)
def test_opt_words(vmn: str, text: str, route: Route, keyword: str | None) -> None:
    d = ROUTER.route(vmn, text, NOW)
    assert (d.route, d.keyword, d.vmn) == (route, keyword, vmn)
    assert d.number is CFG.number(vmn)
    if route in (Route.OPTOUT, Route.OPTIN, Route.HELP):
        assert (d.action, d.args) == (None, "")


def test_opt_words_casefold() -> None:
    router = Router(make_config([{"vmn": LONG, "default": {}}], optout={"stop_keywords": ["ß"]}))
    d = router.route(LONG, "SS", NOW)
    assert (d.route, d.keyword) == (Route.OPTOUT, "SS")


def test_default_decision_is_shared() -> None:
    # The default decision is precompiled: routing it allocates nothing.
    assert ROUTER.route(LONG, "a", NOW) is ROUTER.route(LONG, "b", NOW)


# ------------------------------------------------------------------ long texts


def test_long_text_keyword_and_args() -> None:
    tail = "word " * 400
    d = ROUTER.route(LONG, "PRICE LIST " + tail, NOW)
    assert (d.route, d.keyword, d.args) == (Route.KEYWORD, "price list", tail.strip())


def test_long_text_is_not_exact_or_opt_word() -> None:
    assert ROUTER.route(LONG, "join" + " " * 500 + "x", NOW).route is Route.DEFAULT
    assert ROUTER.route(LONG, "stop" + "!" * 500, NOW).route is Route.DEFAULT


def test_long_whitespace_before_keyword() -> None:
    d = ROUTER.route(LONG, " " * 300 + "join" + " " * 300, NOW)
    assert (d.route, d.keyword) == (Route.KEYWORD, "JOIN")
    d = ROUTER.route(LONG, "\t" * 300 + "STOP", NOW)
    assert d.route is Route.OPTOUT


# ------------------------------------------------------------------ KeywordTrie directly


def test_trie_normalizes_keywords() -> None:
    trie = KeywordTrie([("  Get\tPRICE ", 1), ("straße", 2)])
    assert trie.longest_match("get price now") == (1, 9)
    assert trie.longest_match("strasse") == (2, 7)
    assert "get price" in trie and len(trie) == 2


def test_trie_rejects_empty_and_duplicate_keywords() -> None:
    with pytest.raises(ValueError, match="empty"):
        KeywordTrie([(" \t", 1)])
    with pytest.raises(ValueError, match="twice"):
        KeywordTrie([("a", 1), ("A", 2)])


def test_trie_empty() -> None:
    trie: KeywordTrie[int] = KeywordTrie([])
    assert (trie.longest_match("hello"), trie.longest_match(""), trie.max_length) == (None, None, 0)


def test_trie_values_may_be_falsy() -> None:
    trie = KeywordTrie([("a", 0), ("b", None)])
    assert trie.longest_match("a b") == (0, 1)
    assert trie.longest_match("b") == (None, 1)


# ------------------------------------------------------------------ properties

ALPHABET = "abfis"
keyword_text = st.lists(
    st.text(alphabet=ALPHABET, min_size=1, max_size=4), min_size=1, max_size=3
).map(" ".join)
keyword_sets = st.lists(
    st.tuples(keyword_text, st.sampled_from([MatchMode.FIRST_WORD, MatchMode.EXACT])),
    min_size=1,
    max_size=12,
    unique_by=lambda kv: kv[0],
)
FILLERS = [" ", "  ", "\t", "!", ",", "-", ".", "x", "a", "s", "ß", "İ", "\ufb03", "É", "😀", "\n"]


@st.composite
def keywords_and_text(draw: st.DrawFn) -> tuple[list[tuple[str, MatchMode]], str]:
    keywords = draw(keyword_sets)
    pieces = st.one_of(
        st.sampled_from([k for k, _ in keywords]).map(
            lambda k: k.upper() if len(k) % 2 else k  # some upper case
        ),
        st.sampled_from(FILLERS),
    )
    text = "".join(draw(st.lists(pieces, max_size=8)))
    return keywords, text


def reference_match(keywords: list[tuple[str, MatchMode]], text: str) -> tuple[str, int] | None:
    """Try every keyword; keep those that match; the longest wins."""
    norm = " ".join(text.casefold().split())
    best: tuple[str, int] | None = None
    for keyword, mode in keywords:
        k = " ".join(keyword.casefold().split())
        if mode is MatchMode.EXACT:
            ok = norm == k
        else:
            ok = norm.startswith(k) and (len(norm) == len(k) or not norm[len(k)].isalnum())
        if ok and (best is None or len(k) > best[1]):
            best = (keyword, len(k))
    return best


def reference_args(text: str, matched_length: int) -> str:
    """The text after the shortest prefix whose normalized form covers the keyword."""
    i = 0
    while len(normalize_text(text[:i])) < matched_length:
        i += 1
    rest = text[i:]
    while rest and not rest[0].isalnum():
        rest = rest[1:]
    return rest.rstrip()


@settings(max_examples=400, deadline=None)
@given(keywords_and_text())
def test_trie_equals_reference(case: tuple[list[tuple[str, MatchMode]], str]) -> None:
    keywords, text = case
    modes = dict(keywords)
    trie = KeywordTrie([(k, k) for k, _ in keywords], exact=lambda k: modes[k] is MatchMode.EXACT)
    expected = reference_match(keywords, text)
    assert trie.longest_match(normalize_text(text)) == expected
    assert trie.longest_match(normalize_head(text, trie.max_length)) == expected


@settings(max_examples=150, deadline=None)
@given(keywords_and_text())
def test_router_equals_reference(case: tuple[list[tuple[str, MatchMode]], str]) -> None:
    keywords, text = case
    cfg = make_config(
        [
            {
                "vmn": LONG,
                "default": {},
                "keyword": [{"keyword": k, "match": m.value} for k, m in keywords],
            }
        ]
    )
    d = Router(cfg).route(LONG, text, NOW)
    expected = reference_match(keywords, text)
    if normalize_text(text) in {"stop", "start", "yes", "end", "info", "help"}:
        return  # opt words (none is made of ALPHABET letters but be safe)
    if expected is None:
        assert (d.route, d.keyword, d.args) == (Route.DEFAULT, None, "")
    else:
        assert (d.route, d.keyword) == (Route.KEYWORD, expected[0])
        assert d.args == reference_args(text, expected[1])


@given(st.text())
def test_normalize_text_agrees_with_config(s: str) -> None:
    assert normalize_text(s) == normalize_keyword(s)


@given(
    st.text(alphabet=st.sampled_from([" ", "\t", "a", "B", "ß", "!", "\u0130"]), max_size=400),
    st.integers(min_value=0, max_value=60),
)
def test_normalize_head_is_enough(s: str, limit: int) -> None:
    head, full = normalize_head(s, limit), normalize_text(s)
    assert full.startswith(head)
    assert head == full or len(head) > limit


def test_fast_decision_equals_dataclass_init() -> None:
    from dataclasses import fields

    from gateway.routing.router import _decision

    number = CFG.numbers[0]
    action = number.keywords[0]
    built = _decision(Route.KEYWORD, LONG, "Hello", action, "args", number, True)
    expected = Decision(
        route=Route.KEYWORD,
        vmn=LONG,
        keyword="Hello",
        action=action,
        args="args",
        number=number,
        reject=True,
    )
    # A new Decision field must be added to _decision too.
    assert [f.name for f in fields(Decision)] == [
        "route", "vmn", "keyword", "action", "args", "number", "reject",
    ]  # fmt: skip
    assert built == expected
    with pytest.raises(AttributeError):
        built.args = "x"  # type: ignore[misc]


def test_each_number_gets_its_own_optout_override() -> None:
    numbers = [
        {"vmn": f"55510{i:05d}", "default": {}, "optout": {"stop_keywords": [f"STOP{i}"]}}
        for i in range(50)
    ]
    router = Router(make_config(numbers))
    for i in range(50):
        vmn = f"55510{i:05d}"
        assert router.route(vmn, f"stop{i}", NOW).route is Route.OPTOUT
        assert router.route(vmn, f"stop{(i + 1) % 50}", NOW).route is Route.DEFAULT
        assert router.route(vmn, "start", NOW).route is Route.OPTIN
