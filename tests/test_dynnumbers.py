"""Numbers managed through the API, below HTTP: one number validated like the file
(`config.parse_number`), the rows and their compare-and-set (both databases), the merge
with the file, and two instances on one database seeing each other's changes."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import Gateway, gateway_config, wait_for
from simctl import Simulator

from gateway.config import Config, ConfigError, NumberRejected, parse_config, parse_number
from gateway.dynnumbers import LiveNumbers, Merged, NotFound, ReadOnly, dump, merge
from gateway.routing.router import Route, Router
from gateway.storage import numbers as rows
from gateway.storage.db import create_engine, migrate
from gateway.storage.repo import Store

FILE: dict[str, Any] = {
    "smsc": [{"name": "a", "system_id": "x"}],
    "callback_profiles": {"crm": {"url": "http://127.0.0.1:9/hook"}},
    "number": [{"vmn": "5551000100", "default": {"poll": {"name": "fav",
                                                          "options": ["A", "B"]}}}],
}


def file_cfg(**extra: Any) -> Config:
    return parse_config({**FILE, **extra}, file="gateway.toml", env={})


def rejected(data: dict[str, Any], rest: Config | None = None) -> list[tuple[str, str]]:
    with pytest.raises(NumberRejected) as err:
        parse_number(data, rest or file_cfg())
    return err.value.errors


# ------------------------------------------------------------------ one number, as check


def check_error(number: dict[str, Any]) -> ConfigError:
    """What `check` says of `number` as the file's number[1] (the TOML shape)."""
    toml = {**number}
    if "keywords" in toml:
        toml["keyword"] = toml.pop("keywords")
    with pytest.raises(ConfigError) as err:
        parse_config({**FILE, "number": [*FILE["number"], toml]}, file="gateway.toml", env={})
    return err.value


@pytest.mark.parametrize("number", [
    {"vmn": "5551000200", "default": {}, "keywords": [{"keyword": "JOIN", "reply": "{x}"}]},
    {"vmn": "5551000200", "default": {}, "keywords": [{"keyword": "STOP"}]},
    {"vmn": "5551000200", "default": {"callback_profile": "nope"}},
    {"vmn": "5551000200", "default": {"forward_email": ["a@example.com"]}},
    {"vmn": "5551000200", "default": {"poll": {"name": "fav", "options": ["A", "C"]}}},
    {"vmn": "5551000200", "default": {},
     "keywords": [{"keyword": "JOIN"}, {"keyword": "Go", "aliases": ["join"]}]},
    {"vmn": "5551000200", "default": {"aliases": ["X"]}},
    {"vmn": "5551000200", "default": {}, "keywords": [{"keyword": "A", "expires": "soon"}]},
    {"vmn": "5551000200", "default": {}, "keywords": [{"keyword": "A", "repyl": "hi"}]},
    {"vmn": "555100020", "default": {}},
])
def test_one_number_fails_with_the_words_of_check(number: dict[str, Any]) -> None:
    [(path, expected)] = rejected(number)
    in_file = check_error(number)
    assert in_file.path == "number[1]." + as_in_file(path)
    assert in_file.expected == as_in_file(expected)


def as_in_file(text: str) -> str:
    """An API key path (or a message naming one) as `check` writes it for number[1]:
    `keywords[0].reply` -> `keyword[0].reply` (`number[1].keyword[0]...` inside a
    message); another number is named by its VMN instead of its index."""
    if re.fullmatch(r"keywords\[.*", text):
        return text.replace("keywords[", "keyword[", 1)
    text = re.sub(r"(?<![\w.])keywords\[", "number[1].keyword[", text)
    return text.replace('number["5551000100"]', "number[0]")


def test_all_model_errors_at_once_and_json_names() -> None:
    errors = rejected({"vmn": "5551000200", "default": {}, "sender": "x",
                       "keyword": [{"keyword": "A"}]})
    assert ("sender", "unknown key (did you mean sender_id?)") in errors
    assert ("keyword", "unknown key (did you mean keywords?)") in errors


def test_a_vmn_ambiguous_with_another_by_country_code() -> None:
    for mine, other in (("55510", "155510"), ("155510", "55510")):
        cfg = parse_config({**FILE, "number": [{"vmn": other, "default": {}}]}, file="f",
                           env={})
        assert rejected({"vmn": mine, "default": {}}, cfg) == [
            ("vmn", f'ambiguous: equals number["{other}"].vmn with country code 1 prepended')]


def test_dump_validates_to_the_same_number() -> None:
    data = {"vmn": "5551000200", "default": {"reply": "hi {from}"},
            "keywords": [{"keyword": " Join  Now ", "expires": "2030-12-31",
                          "forward_sms": ["5551234567"], "poll": {
                              "name": "p2", "options": ["Y", "N"],
                              "aliases": {"Y": ["yes"]}}}]}
    number = parse_number(data, file_cfg())
    again = parse_number(dump(number), file_cfg())
    assert again == number
    assert dump(again) == dump(number)
    assert dump(number)["keywords"][0]["keyword"] == "Join Now"
    assert "match" not in dump(number)["default"]  # as given: `check` refuses it there


# ------------------------------------------------------------------ merge (pure)


def test_merge_file_wins_and_invalid_stored_numbers_are_left_out() -> None:
    stored = {
        "5551000100": {"vmn": "5551000100", "default": {}},  # also in the file
        "5551000200": {"vmn": "5551000200", "default": {"callback_profile": "crm"}},
        "5551000300": {"vmn": "5551000300", "default": {"callback_profile": "gone"}},
    }
    merged = merge(file_cfg(), stored)
    assert [n.vmn for n in merged.config.numbers] == ["5551000100", "5551000200"]
    assert merged.api_vmns == {"5551000200"}
    assert merged.source("5551000100") == "file"
    assert set(merged.skipped) == {"5551000100", "5551000300"}
    assert "unknown callback profile" in merged.skipped["5551000300"]
    # The file's own number 5551000100 is the file's (its poll default), not the stored one.
    number = merged.config.number("5551000100")
    assert number is not None and number.default.poll is not None


# ------------------------------------------------------------------ rows, both databases


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await migrate(engine)
    s = Store(engine)
    try:
        yield s
    finally:
        await s.close()
        await engine.dispose()


async def read(store: Store) -> rows.Snapshot:
    async with store.reader.connect() as conn:
        snap: rows.Snapshot = await conn.run_sync(rows.snapshot)
        return snap


async def test_rows_compare_and_set(store: Store) -> None:
    assert (await read(store)).version == 0
    body = {"vmn": "5551000200", "default": {"reply": "héllo"}}
    assert await store.transaction(rows.put, "5551000200", body, expect=0, now=1.0)
    # A change validated against version 0 comes too late: refused, nothing written.
    assert not await store.transaction(rows.put, "5551000200", {"x": 1}, expect=0, now=2.0)
    assert not await store.transaction(rows.remove, "5551000200", expect=0)
    snap = await read(store)
    assert snap.version == 1 and snap.numbers == {"5551000200": body}
    assert await store.transaction(rows.put, "5551000300", body, expect=1, now=3.0)
    assert await store.transaction(rows.remove, "5551000200", expect=2)
    snap = await read(store)
    assert snap.version == 3 and list(snap.numbers) == ["5551000300"]


async def test_concurrent_changes_one_wins_the_other_retries(store: Store) -> None:
    """Two writers that read the same version: exactly one commits."""
    results = await asyncio.gather(*(
        store.transaction(rows.put, f"55510002{i:02d}", {"vmn": "x"}, expect=0, now=1.0)
        for i in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert (await read(store)).version == 1


# ------------------------------------------------------------------ two instances


class Instance:
    """A LiveNumbers with what a daemon would install: the router of the merged config."""

    def __init__(self, store: Store, cfg: Config) -> None:
        self.router = Router(cfg)
        self.installed: list[Merged] = []
        self.live = LiveNumbers(store, cfg, self.install, interval=0.05)

    async def install(self, merged: Merged) -> None:
        self.router = await asyncio.to_thread(Router, merged.config)
        self.installed.append(merged)

    def route(self, text: str, vmn: str = "5551000200") -> tuple[Route, str | None]:
        d = self.router.route(vmn, text, time.time())
        return d.route, d.keyword


async def eventually(check: Any, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "not applied within 2 s"
        await asyncio.sleep(0.02)


async def test_a_change_on_one_instance_routes_on_the_other(db_url: str) -> None:
    engines = [create_engine(db_url) for _ in range(2)]
    await migrate(engines[0])
    stores = [Store(e) for e in engines]
    a, b = (Instance(s, file_cfg()) for s in stores)
    await a.live.load()
    await b.live.load()
    watcher = asyncio.create_task(b.live.watch())
    try:
        number, created = await a.live.put(
            "5551000200", {"default": {"reply": "default"}})
        assert created and number.vmn == "5551000200"
        # Applied in the writer's process before put() returns.
        assert a.route("JOIN now") == (Route.DEFAULT, None)
        _, created = await a.live.put_keyword("5551000200", "join", {"reply": "welcome"})
        assert created
        assert a.route("JOIN now") == (Route.KEYWORD, "join")
        await eventually(lambda: b.route("join now") == (Route.KEYWORD, "join"))
        # Replacing keeps one keyword; deleting falls back to the default.
        _, created = await a.live.put_keyword("5551000200", "JOIN", {"reply": "again"})
        assert not created
        assert len(a.live.get("5551000200")[0].keywords) == 1
        await a.live.delete_keyword("5551000200", "Join")
        assert a.route("join now") == (Route.DEFAULT, None)
        await eventually(lambda: b.route("join now") == (Route.DEFAULT, None))
        await a.live.delete("5551000200")
        await eventually(lambda: b.route("join")[0] is Route.UNROUTED)
    finally:
        watcher.cancel()
        for s in stores:
            await s.close()
        for e in engines:
            await e.dispose()


async def test_refusals(store: Store) -> None:
    inst = Instance(store, file_cfg())
    await inst.live.load()
    with pytest.raises(ReadOnly):
        await inst.live.put("5551000100", {"default": {}})
    with pytest.raises(ReadOnly):
        await inst.live.put_keyword("5551000100", "JOIN", {})
    with pytest.raises(ReadOnly):
        await inst.live.delete("5551000100")
    with pytest.raises(NotFound):
        await inst.live.put_keyword("5551000200", "JOIN", {})
    with pytest.raises(NotFound):
        await inst.live.delete("5551000200")
    with pytest.raises(NumberRejected) as err:
        await inst.live.put("5551000200", {"vmn": "5551000300", "default": {}})
    assert err.value.errors == [("vmn", 'expected "5551000200", the VMN of the URL '
                                        '(got "5551000300")')]
    await inst.live.put("5551000200", {"default": {}, "keywords": [{"keyword": "A"}]})
    # Errors in a keyword are relative to it; those of the number stay whole.
    with pytest.raises(NumberRejected) as err:
        await inst.live.put_keyword("5551000200", "JOIN", {"reply": "{nope}"})
    assert [p for p, _ in err.value.errors] == ["reply"]
    with pytest.raises(NumberRejected) as err:
        await inst.live.put_keyword("5551000200", "JOIN", {"aliases": ["a"]})
    assert err.value.errors[0] == ("aliases[0]", '"a" clashes with keywords[0].keyword')
    with pytest.raises(NumberRejected) as err:
        await inst.live.put_keyword("5551000200", "JOIN", {"keyword": "OTHER"})
    assert err.value.errors[0][0] == "keyword"
    with pytest.raises(NotFound):
        await inst.live.delete_keyword("5551000200", "JOIN")
    # JSON can carry a lone surrogate (TOML cannot): no SMS or database can hold it.
    with pytest.raises(NumberRejected) as err:
        await inst.live.put_keyword("5551000200", "JOIN", {"aliases": ["ok", "x\ud800"]})
    assert err.value.errors == [("aliases[1]", "expected text (got a lone UTF-16 surrogate, "
                                               "which no SMS can carry)")]
    # Nothing refused was stored.
    snap = await read(store)
    assert snap.version == 1
    assert snap.numbers["5551000200"]["keywords"] == [{"keyword": "A"}]


async def test_a_stored_number_survives_a_new_instance(store: Store) -> None:
    first = Instance(store, file_cfg())
    await first.live.load()
    await first.live.put("5551000200", {"default": {}, "keywords": [{"keyword": "JOIN"}]})
    second = LiveNumbers(store, file_cfg(), first.install)
    merged = await second.load()
    assert merged.api_vmns == {"5551000200"}
    number = merged.config.number("5551000200")
    assert number is not None and [k.keyword for k in number.keywords] == ["JOIN"]


# ------------------------------------------------------------------ the daemon


def test_the_daemon_applies_a_stored_change_within_2s_and_after_a_restart(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """Another instance (here: the test, through the same storage) stores a number with
    a keyword: the running daemon routes the next MO by it within 2 s, falls back to
    the default when the keyword goes, and a restarted daemon still has the number."""
    vmn = "5551000200"
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    sim.wait_bound(timeout=20)
    wait_for(lambda: gw.log_events("daemon.ready"), what="daemon.ready")

    def other_instance(change: Callable[[LiveNumbers], Awaitable[object]]) -> None:
        async def go() -> None:
            engine = create_engine(db_url)
            store = Store(engine)
            try:
                live = LiveNumbers(store, parse_config(
                    tomllib.loads(gw.config_path.read_text()), file="t", env={}), _nothing)
                await live.load()
                await change(live)
            finally:
                await store.close()
                await engine.dispose()
        asyncio.run(go())

    def route_of(text: str) -> tuple[str, str | None]:
        before = len(gw.log_events("mo.received"))
        assert sim.mo(source="15551234567", destination=vmn, text=text)["statuses"] == [0]
        line = wait_for(lambda: gw.log_events("mo.received")[before:], what="mo.received")[0]
        return line["route"], line["keyword"]

    other_instance(lambda live: live.put(vmn, {"default": {},
                                               "keywords": [{"keyword": "JOIN"}]}))
    stored_at = time.monotonic()
    wait_for(lambda: gw.log_events("numbers.applied"), what="numbers.applied", timeout=2)
    assert time.monotonic() - stored_at < 2.0
    assert route_of("join us") == ("keyword", "JOIN")

    # A SIGHUP reload merges the new file with the stored numbers again.
    gw.config_path.write_text(gw.config_path.read_text().replace(
        "[number.default]", '[number.default]\n[[number.keyword]]\nkeyword = "HELLO"'))
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    reloaded = wait_for(lambda: gw.log_events("config.reloaded"), what="config.reloaded")
    assert reloaded[0]["numbers"] == 2
    assert route_of("join us") == ("keyword", "JOIN")

    other_instance(lambda live: live.delete_keyword(vmn, "join"))
    wait_for(lambda: len(gw.log_events("numbers.applied")) == 2, what="applied", timeout=2)
    assert route_of("join us") == ("default", None)

    other_instance(lambda live: live.put_keyword(vmn, "HOURS", {"reply": "9-5"}))
    wait_for(lambda: len(gw.log_events("numbers.applied")) == 3, what="applied", timeout=2)
    assert gw.terminate() == 0
    again = make_gateway(gw.config_path.read_text())
    sim.wait_bound(timeout=20)
    wait_for(lambda: again.log_events("daemon.ready"), what="daemon.ready")
    gw = again
    assert route_of("hours?") == ("keyword", "HOURS")
    assert again.terminate() == 0


async def _nothing(_merged: Merged) -> None:
    return None
