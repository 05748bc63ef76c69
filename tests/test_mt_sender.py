"""The MT sender against a hostile SMSC (issue 9, points 3, 7 and 8).

The SMSC is written here over raw sockets with gateway.smpp.codec, in its own thread:
it binds anyone and answers submit_sm as the test decides (throttled, accepted, or
never). The sender runs in-process (its lease made short through `gateway.mt.LEASE`)
or as the real daemon; the database is the run's backend (`db_url`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import structlog.testing
from conftest import Gateway, run_sql, wait_for
from sqlalchemy import select

import gateway.mt as mt_module
from gateway.actions.emitter import Emitter
from gateway.binds import session_settings
from gateway.config import SmscConfig
from gateway.mt import MtSender
from gateway.smpp.codec import Decoder, encode
from gateway.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    EnquireLink,
    EnquireLinkResp,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from gateway.smpp.session import SmppSession
from gateway.storage import mts
from gateway.storage.db import create_engine, migrate
from gateway.storage.repo import Store
from gateway.storage.schema import jobs, messages, opt_state, status_history

VMN = "5551000100"
THROTTLED = int(CommandStatus.ESME_RTHROTTLED)


@dataclass(frozen=True)
class Seen:
    """One submit_sm as the SMSC received it, and what it answered (None: nothing)."""

    at: float
    to: str
    text: bytes
    status: int | None


class HostileSmsc:
    """Binds anyone, answers enquire_link and unbind; every submit_sm is recorded and
    answered with `answer(pdu)`: a command_status, or None for no answer at all."""

    def __init__(self, answer: Callable[[SubmitSm], int | None]) -> None:
        self.answer = answer
        self.seen: list[Seen] = []
        self.binds = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._server: asyncio.Server | None = None
        self._count = 0

    def __enter__(self) -> HostileSmsc:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def submits(self, text: bytes) -> list[Seen]:
        return [s for s in list(self.seen) if text in s.text]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        owner = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # uvloop's transports are not asyncio.Transport subclasses
                self.transport = cast(asyncio.Transport, transport)
                self.decoder = Decoder()

            def data_received(self, data: bytes) -> None:
                self.decoder.receive_data(data)
                while (item := self.decoder.next_pdu()) is not None:
                    self.handle(item[0])

            def send(self, pdu: Pdu) -> None:
                self.transport.write(encode(pdu))

            def handle(self, pdu: Pdu) -> None:
                seq = pdu.sequence_number
                if isinstance(pdu, BindTransceiver):
                    owner.binds += 1
                    self.send(BindTransceiverResp(sequence_number=seq, system_id="hostile"))
                elif isinstance(pdu, EnquireLink):
                    self.send(EnquireLinkResp(sequence_number=seq))
                elif isinstance(pdu, Unbind):
                    self.send(UnbindResp(sequence_number=seq))
                    self.transport.close()
                elif isinstance(pdu, SubmitSm):
                    status = owner.answer(pdu)
                    owner.seen.append(Seen(time.time(), pdu.destination_addr,
                                           pdu.short_message, status))
                    if status is not None:
                        owner._count += 1
                        self.send(SubmitSmResp(
                            sequence_number=seq, command_status=status,
                            message_id=f"h{owner._count}" if status == 0 else ""))

        async def start() -> None:
            self._server = await asyncio.get_running_loop().create_server(
                Conn, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


class _NoMo:
    def on_mo(self, *_args: Any) -> None:
        raise AssertionError("the hostile SMSC sends no MO")


@pytest.fixture
async def store(db_url: str) -> Any:
    engine = create_engine(db_url)
    await migrate(engine)
    st = Store(engine)
    st.emitter = Emitter(mqtt_prefix="t")  # mt_status events become jobs we can count
    yield st
    await st.close()
    await engine.dispose()


def smsc_config(port: int, **kw: Any) -> SmscConfig:
    return SmscConfig.model_validate({
        "name": "hostile", "host": "127.0.0.1", "port": port, "system_id": "gw",
        "reconnect_min": 0.1, "reconnect_max": 1.0, **kw})


async def probe(what: str, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Wait for a condition of the test's own making (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


async def row(store: Store, msg_id: str) -> Any:
    async with store.reader.connect() as conn:
        return (await conn.execute(select(messages).where(messages.c.id == msg_id))).one()


async def history(store: Store, msg_id: str) -> list[str]:
    async with store.reader.connect() as conn:
        return [s for (s,) in await conn.execute(
            select(status_history.c.status).where(status_history.c.message_id == msg_id)
            .order_by(status_history.c.id))]


async def status_events(store: Store, msg_id: str) -> list[str]:
    import json

    async with store.reader.connect() as conn:
        return [json.loads(p)["status"] for (p,) in await conn.execute(
            select(jobs.c.payload).where(jobs.c.message_id == msg_id, jobs.c.kind == "mqtt")
            .order_by(jobs.c.id))]



@contextlib.asynccontextmanager
async def running(session: SmppSession, sender: MtSender) -> AsyncIterator[None]:
    """The bind and the MT sender running for the body; stopped in the daemon's order
    (every sender task has ended after `sender.stop`), then cancelled."""
    tasks = [asyncio.create_task(session.run()), asyncio.create_task(sender.run())]
    try:
        yield
    finally:
        await sender.stop(5)
        await session.stop(2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

async def test_stop_during_throttling_blocks_the_mt_and_a_lost_lease_sends_nothing(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 3. The SMSC throttles; each pause (0.4 s, doubling) outlasts the 0.3 s
    lease, so the MTs are claimed again mid-retry. A STOP stored meanwhile: the queued
    MT ends `blocked` with no submit_sm after the STOP, the old senders write nothing,
    and the STOP confirmation (exempt) goes out once."""
    monkeypatch.setattr(mt_module, "LEASE", 0.3)
    to = "15559870301"
    throttling = True

    def answer(_pdu: SubmitSm) -> int:
        return THROTTLED if throttling else 0

    with HostileSmsc(answer) as smsc, structlog.testing.capture_logs() as logs:
        cfg = smsc_config(smsc.port, throttle_backoff=0.4)
        session = SmppSession(session_settings(cfg), _NoMo())
        # Each pause sees several claims (each counts an attempt): no limit here.
        sender = MtSender(store, [session], smscs=[cfg], poll_interval=0.05,
                          max_attempts=10_000)
        queued = await store.queue_mt(sender=VMN, recipient=to, text="queued before STOP")
        async with running(session, sender):
            # Throttled twice, and claimed again while its first sender was pausing.
            async def reclaimed() -> bool:
                return (len(smsc.submits(b"queued before STOP")) >= 2
                        and (await row(store, queued)).attempts >= 2)

            await probe("a throttled retry after the MT was claimed again", reclaimed)
            # Right after a throttled answer the session pauses >= 0.4 s: store the STOP
            # (and its confirmation, in one transaction, as the MO path does) inside it.
            before = len(smsc.submits(b"queued before STOP"))
            await probe("the next throttled submit",
                        lambda: len(smsc.submits(b"queued before STOP")) > before)

            def stop(conn: Any) -> str:
                conn.execute(opt_state.insert().values(
                    msisdn=to, vmn=VMN, state="out", keyword="STOP", updated_at=time.time()))
                return mts.insert_mt(conn, store.emitter, sender=VMN, recipient=to,
                                     text="You are unsubscribed", now=time.time(),
                                     exempt=True)

            confirmation = await store.transaction(stop)
            stopped_at = time.time()
            await probe("the queued MT blocked",
                        lambda: _status_is(store, queued, "blocked"))
            await probe("the confirmation throttled",
                        lambda: len(smsc.submits(b"unsubscribed")) >= 1)
            throttling = False
            await probe("the confirmation submitted",
                        lambda: _status_is(store, confirmation, "submitted"))

    late = [s for s in smsc.submits(b"queued before STOP") if s.at >= stopped_at]
    assert late == [], "a submit_sm went out after the STOP was stored"
    assert all(s.status == THROTTLED for s in smsc.submits(b"queued before STOP"))
    assert await history(store, queued) == ["queued", "blocked"]
    assert await status_events(store, queued) == ["queued", "blocked"]
    accepted = [s for s in smsc.submits(b"unsubscribed") if s.status == 0]
    assert len(accepted) == 1, f"the STOP confirmation went out {len(accepted)} times"
    assert await history(store, confirmation) == ["queued", "submitted"]
    assert await status_events(store, confirmation) == ["queued", "submitted"]
    # The senders that lost their lease said so, and wrote nothing (the histories above).
    assert any(e["event"] == "mt.lease_lost" and e["id"] == confirmation for e in logs)


async def _status_is(store: Store, msg_id: str, status: str) -> bool:
    return bool((await row(store, msg_id)).status == status)


async def test_an_mt_the_codec_refuses_fails_once_with_an_event(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 8. Fullwidth digits pass `\\d`: such a `to` reached the queue, the codec
    refuses it (not latin-1) on every attempt, and the MT stayed `sending`, claimed
    again after every lease forever. Now it ends `failed` with its event at once,
    and the SMSC never sees it."""
    monkeypatch.setattr(mt_module, "LEASE", 0.2)
    with HostileSmsc(lambda _pdu: 0) as smsc:
        cfg = smsc_config(smsc.port)
        session = SmppSession(session_settings(cfg), _NoMo())
        sender = MtSender(store, [session], smscs=[cfg], poll_interval=0.05, max_attempts=3)
        bad = await store.queue_mt(sender=VMN, recipient="\uff11\uff15\uff15\uff15\uff19"
                                   "\uff18\uff17\uff10\uff13\uff10\uff12", text="hello")
        good = await store.queue_mt(sender=VMN, recipient="15559870302", text="fine")
        async with running(session, sender):
            await probe("the good MT submitted", lambda: _status_is(store, good, "submitted"))
            await probe("the bad MT failed", lambda: _status_is(store, bad, "failed"))
            later = await store.queue_mt(sender=VMN, recipient="15559870307", text="later")
            await probe("a later MT submitted", lambda: _status_is(store, later, "submitted"))
    r = await row(store, bad)
    assert (r.status, r.attempts) == ("failed", 1)
    assert "latin-1" in r.error
    assert await history(store, bad) == ["queued", "failed"]
    assert await status_events(store, bad) == ["queued", "failed"]
    assert sorted(s.to for s in smsc.seen) == ["15559870302", "15559870307"]


async def test_an_mt_whose_senders_keep_dying_fails_at_max_attempts(
        store: Store, db_url: str) -> None:
    """Point 8. An MT left `sending` by a sender that died (kill -9, a crash in the
    send path) is claimed again when its lease runs out; after max_attempts claims it
    is `failed` with its event instead of being claimed forever."""
    with HostileSmsc(lambda _pdu: 0) as smsc:
        cfg = smsc_config(smsc.port)
        session = SmppSession(session_settings(cfg), _NoMo())
        sender = MtSender(store, [session], smscs=[cfg], poll_interval=0.05, max_attempts=3)
        doomed = await store.queue_mt(sender=VMN, recipient="15559870303", text="doomed")
        # What three dead senders leave behind: claimed three times, lease run out.
        await asyncio.to_thread(run_sql, db_url, (
            f"UPDATE messages SET status = 'sending', attempts = 3, "
            f"next_attempt_at = {time.time() - 1} WHERE id = '{doomed}'"))
        good = await store.queue_mt(sender=VMN, recipient="15559870304", text="fine")
        async with running(session, sender):
            await probe("the good MT submitted", lambda: _status_is(store, good, "submitted"))
            await probe("the doomed MT failed", lambda: _status_is(store, doomed, "failed"))
    r = await row(store, doomed)
    assert (r.status, r.attempts) == ("failed", 3)
    assert "gave up after 3 attempts" in r.error
    assert await status_events(store, doomed) == ["queued", "failed"]
    assert smsc.submits(b"doomed") == []


# ------------------------------------------------------------------ SIGTERM (point 7)


def daemon_config(db_url: str, port: int) -> str:
    return f"""
[gateway]
name = "h3"
database = "{db_url}"
mt_poll_interval = 0.1
shutdown_timeout = 3

[[smsc]]
name = "hostile"
host = "127.0.0.1"
port = {port}
system_id = "gw"
reconnect_min = 0.2
reconnect_max = 1
response_timeout = 60

[[number]]
vmn = "{VMN}"
[number.default]
"""


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[[str], Gateway]]:
    started: list[Gateway] = []

    def make(config: str) -> Gateway:
        path = tmp_path / f"gateway{len(started)}.toml"
        path.write_text(config)
        gw = Gateway(path, tmp_path / f"gateway{len(started)}.log")
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        if gw.running:
            gw.kill()


def test_sigterm_with_a_submit_in_flight_never_sends_it_again(
        db_url: str, gateways: Callable[[str], Gateway]) -> None:
    """Point 7. The SMSC holds the answer of a submit_sm; SIGTERM meanwhile. The daemon
    exits 0 having recorded the MT `submitted` (unconfirmed: it may have reached the
    SMSC); after a restart it is not submitted again."""
    answering = False

    def answer(_pdu: SubmitSm) -> int | None:
        return 0 if answering else None

    with HostileSmsc(answer) as smsc:
        gw = gateways(daemon_config(db_url, smsc.port))
        wait_for(lambda: smsc.binds >= 1, what="the bind")
        gw.send(VMN, "15559870305", "in flight at SIGTERM")
        wait_for(lambda: smsc.submits(b"in flight at SIGTERM"), what="the submit_sm")
        assert gw.terminate() == 0
        [mt] = [r for r in gw.logs() if r["direction"] == "mt"]
        assert mt["status"] == "submitted", mt
        assert "unconfirmed" in (mt["error"] or "")
        assert gw.log_events("mt.unconfirmed")

        answering = True
        gw2 = gateways(daemon_config(db_url, smsc.port))
        gw2.send(VMN, "15559870306", "after the restart")

        def settled() -> bool:
            rows = {r["text"]: r["status"] for r in gw2.logs() if r["direction"] == "mt"}
            return (rows.get("after the restart") == "submitted"
                    and rows.get("in flight at SIGTERM") not in ("queued", "sending"))

        wait_for(settled, what="the restarted gateway to send and settle")
        assert gw2.terminate() == 0
    assert len(smsc.submits(b"in flight at SIGTERM")) == 1
    assert len(smsc.submits(b"after the restart")) == 1
