"""A repeated text is a new message; only an SMSC redelivery is folded (issue 9 point 1,
SPEC §3 step 2). The suspect bookkeeping on its own, then the daemon in a subprocess
against the node-smpp simulator and against a bare SMSC written here over raw sockets
with gateway.smpp.codec, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator

from conftest import Gateway, gateway_config, wait_for
from simctl import Simulator

from gateway.redelivery import Fate, Suspects
from gateway.smpp.codec import Decoder, decode, encode
from gateway.smpp.connection import AnsweredLog
from gateway.smpp.pdu import (
    BindTransceiverResp,
    CommandId,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    Pdu,
    Unbind,
    UnbindResp,
)

VMN = "5551000100"
CUSTOMER = "15551234567"

NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]
reply = "got: {{text}}"

[[number.keyword]]
keyword = "Y"
reply = "Thanks for your Y"
"""


# --------------------------------------------------------------------------- pure


def test_a_suspect_folds_one_copy_then_is_forgotten() -> None:
    s = Suspects(600)
    s.add("k", 100.0)
    assert s.take("other", 101.0) == (False, None)
    assert s.take("k", 101.0) == (True, None)
    assert s.take("k", 102.0) == (False, None)  # the person sending it again
    assert len(s) == 0


def test_a_suspect_expires_after_the_window() -> None:
    s = Suspects(10)
    s.add("old", 100.0)
    assert s.take("old", 110.5) == (False, None)
    s.add("a", 100.0)
    s.add("b", 105.0)
    s.prune(110.5)  # `a` is past the window, `b` is not
    assert set(s.keys) == {"b"}
    # Re-added later: the newer time counts, the stale queue entry removes nothing.
    s.add("b", 109.0)
    s.prune(115.5)
    assert set(s.keys) == {"b"}
    assert s.live(116.0) == [("b", 109.0)]


def test_a_suspect_keeps_its_originals_fate() -> None:
    s = Suspects(600)
    pending, lost = Fate(), Fate(False)
    s.add("pending", 1.0, pending)
    s.add("lost", 1.0, lost)
    hit, origin = s.take("pending", 2.0)
    assert hit and origin is pending  # answered once the original's commit is known
    # An original whose commit failed was never stored: its redelivery is new.
    assert s.take("lost", 2.0) == (False, None)
    s.add("lost2", 1.0, Fate(False))
    assert s.live(3.0) == []


def test_a_zero_window_folds_nothing() -> None:
    s = Suspects(0)
    s.add("k", 1.0)
    assert s.take("k", 1.0) == (False, None) and len(s) == 0


def test_answers_in_flight_are_those_of_the_last_response_timeout() -> None:
    log = AnsweredLog(10)
    log.answered(100.0, ["a", "b"])
    log.answered(105.0, ["c"])
    assert log.in_flight(109.0) == ["a", "b", "c"]
    assert log.in_flight(112.0) == ["c"]  # `a`, `b` answered 12 s before the drop
    log.answered(114.0, ["d"])  # prunes what is older than the window
    assert log.in_flight(104.0) == ["c", "d"]
    log.settled(110.0)  # the SMSC answered a request written at 110: it read `c`
    assert log.in_flight(114.0) == ["d"]


# --------------------------------------------------------------------------- helpers


def mos_text(gw: Gateway, text: str) -> list[dict[str, object]]:
    return [m for m in gw.mos() if m["text"] == text]


def wait_rows(gw: Gateway, text: str, n: int) -> list[dict[str, object]]:
    return wait_for(lambda: (lambda r: r if len(r) == n else None)(mos_text(gw, text)),
                    what=f"{n} row(s) of {text!r}")


def start(make_gateway: Callable[..., Gateway], sim: Simulator, db_url: str,
          **kw: object) -> Gateway:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, numbers=NUMBERS, **kw))
    sim.wait_bound(timeout=20)
    return gw


def csv_rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out, newline="")))


# --------------------------------------------------------------------------- simulator


def test_stop_start_stop_within_a_minute_ends_opted_out(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    for word in ("STOP", "START", "STOP"):
        assert sim.mo(source=CUSTOMER, destination=VMN, text=word)["statuses"] == [0]
    wait_rows(gw, "STOP", 2)
    assert len(mos_text(gw, "START")) == 1
    states = {(r["msisdn"], r["vmn"]): r["state"]
              for r in csv_rows(gw.cli("optins", "--csv").stdout)}
    assert states == {(CUSTOMER, VMN): "out"}
    hist = csv_rows(gw.cli("optins", "--history", "--msisdn", CUSTOMER, "--csv").stdout)
    assert [(r["state"], r["keyword"]) for r in hist] == \
        [("out", "STOP"), ("in", "START"), ("out", "STOP")]


def test_y_twice_gets_two_replies_and_two_log_rows(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    for _ in range(2):
        assert sim.mo(source=CUSTOMER, destination=VMN, text="Y")["statuses"] == [0]
    rows = wait_rows(gw, "Y", 2)
    assert len({r["id"] for r in rows}) == 2
    subs = sim.wait_submits(2, timeout=20)
    replies = [s for s in subs if s["destination_addr"] == CUSTOMER]
    assert len(replies) == 2
    assert not gw.log_events("intake.late_answer")


def test_a_graceful_stop_leaves_nothing_suspect(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = start(make_gateway, sim, db_url)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="before stop")["statuses"] == [0]
    wait_rows(gw, "before stop", 1)
    assert gw.terminate() == 0
    sim.wait_unbound()
    gw.start()
    sim.wait_bound(timeout=20)
    # The person sends the same text again right after the restart: a new message.
    assert sim.mo(source=CUSTOMER, destination=VMN, text="before stop")["statuses"] == [0]
    wait_rows(gw, "before stop", 2)
    loaded = gw.log_events("intake.suspects_loaded")
    assert [(e["after"], e["suspects"]) for e in loaded][-1] == ("stop", 0)


def test_after_a_crash_the_last_answers_are_suspect(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    """kill -9 between a commit and its ack cannot be told from one just after the ack:
    the MOs stored within response_timeout of the last one fold their first copy."""
    gw = start(make_gateway, sim, db_url)
    assert sim.mo(source=CUSTOMER, destination=VMN, text="older")["statuses"] == [0]
    assert sim.mo(source=CUSTOMER, destination=VMN, text="last")["statuses"] == [0]
    wait_rows(gw, "last", 1)
    gw.kill()
    sim.wait_unbound()
    gw.start()
    sim.wait_bound(timeout=20)
    for _ in range(2):  # a redelivery (folded), then the person again (stored)
        assert sim.mo(source=CUSTOMER, destination=VMN, text="last")["statuses"] == [0]
    wait_rows(gw, "last", 2)
    loaded = gw.log_events("intake.suspects_loaded")
    assert [(e["after"], e["suspects"]) for e in loaded][-1] == ("crash", 2)


# --------------------------------------------------------------------------- bare SMSC


class SmscConn:
    """One ESME connection to the bare SMSC: answers bind, enquire_link and unbind,
    sends what the test says and queues every response it gets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.bound = threading.Event()
        self._responses: dict[int, Pdu] = {}
        self._got = threading.Condition()
        self._seq = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        dec = Decoder()
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            dec.receive_data(data)
            while (frame := dec.next_frame()) is not None:
                pdu = decode(frame)
                cid = pdu.command_id
                if cid == CommandId.BIND_TRANSCEIVER:
                    self._send(BindTransceiverResp(sequence_number=pdu.sequence_number,
                                                   system_id="bare"))
                    self.bound.set()
                elif cid == CommandId.ENQUIRE_LINK:
                    self._send(EnquireLinkResp(sequence_number=pdu.sequence_number))
                elif cid == CommandId.UNBIND:
                    self._send(UnbindResp(sequence_number=pdu.sequence_number))
                elif cid & 0x80000000:
                    with self._got:
                        self._responses[pdu.sequence_number] = pdu
                        self._got.notify_all()

    def _send(self, pdu: Pdu) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(encode(pdu))

    def mo(self, text: str, source: str = CUSTOMER) -> int:
        """Send one deliver_sm (a fresh sequence number, as a redelivery has)."""
        self._seq += 1
        self._send(DeliverSm(sequence_number=self._seq, source_addr_ton=1,
                             source_addr_npi=1, source_addr=source, dest_addr_ton=1,
                             dest_addr_npi=1, destination_addr=VMN,
                             short_message=text.encode()))
        return self._seq

    def _response(self, seq: int, timeout: float = 30.0) -> Pdu:
        with self._got:
            assert self._got.wait_for(lambda: seq in self._responses, timeout), seq
            return self._responses.pop(seq)

    def answer(self, seq: int) -> int:
        pdu = self._response(seq)
        assert pdu.command_id == CommandId.DELIVER_SM_RESP
        return pdu.command_status

    def ping(self) -> None:
        """An enquire_link round trip: the gateway has read everything sent before."""
        self._seq += 1
        self._send(EnquireLink(sequence_number=self._seq))
        assert self._response(self._seq).command_id == CommandId.ENQUIRE_LINK_RESP

    def drop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def unbind(self) -> None:
        self._seq += 1
        self._send(Unbind(sequence_number=self._seq))


class BareSmsc:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: queue.Queue[SmscConn] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            self.conns.put(SmscConn(sock))

    def next_bound(self, timeout: float = 30.0) -> SmscConn:
        conn = self.conns.get(timeout=timeout)
        assert conn.bound.wait(timeout)
        return conn

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def bare_smsc() -> Iterator[BareSmsc]:
    smsc = BareSmsc()
    try:
        yield smsc
    finally:
        smsc.close()


def bare_config(db_url: str, port: int, *, response_timeout: float = 10) -> str:
    return f"""
[gateway]
database = "{db_url}"
mt_poll_interval = 0.1

[[smsc]]
name = "bare"
port = {port}
system_id = "gw"
reconnect_min = 0.1
reconnect_max = 0.5
enquire_link_interval = 300
response_timeout = {response_timeout}
{NUMBERS}"""


@contextlib.contextmanager
def write_lock(db_url: str) -> Iterator[None]:
    """Hold the database's write lock (SQLite) or a lock on `messages` (PostgreSQL)
    from outside the gateway, so that its next intake commit waits."""
    if db_url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    import asyncpg

    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    t = threading.Thread(target=lambda: asyncio.run(hold()), daemon=True)
    t.start()
    assert locked.wait(30)
    try:
        yield
    finally:
        release.set()
        t.join(30)


def test_a_redelivery_after_a_drop_is_stored_once(
        db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    with bare_smsc() as smsc:
        gw = make_gateway(bare_config(db_url, smsc.port))
        first = smsc.next_bound()
        # Two MOs, and the connection dies before their answers can be read.
        first.mo("hello")
        first.mo("world")
        first.drop()
        again = smsc.next_bound()
        # The SMSC redelivers both: acknowledged, stored once.
        assert again.answer(again.mo("hello")) == 0
        assert again.answer(again.mo("world")) == 0
        wait_rows(gw, "hello", 1)
        wait_rows(gw, "world", 1)
        # The person sends "hello" once more on the live connection: a new message,
        # and so is a same-text PDU that arrives before the first is answered.
        a, b = again.mo("hello"), again.mo("hello")
        assert (again.answer(a), again.answer(b)) == (0, 0)
        wait_rows(gw, "hello", 3)
        assert len(mos_text(gw, "world")) == 1
        assert gw.log_events("intake.redelivery_expected")


def test_an_answer_later_than_the_response_timeout_folds_the_redelivery(
        db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    with bare_smsc() as smsc:
        gw = make_gateway(bare_config(db_url, smsc.port, response_timeout=1))
        conn = smsc.next_bound()
        with write_lock(db_url):
            seq = conn.mo("slow")
            time.sleep(1.5)  # the commit waits past the SMSC's 1 s response timeout
        assert conn.answer(seq) == 0  # answered, but too late for the SMSC
        assert conn.answer(conn.mo("slow")) == 0  # its redelivery: folded
        wait_rows(gw, "slow", 1)
        assert conn.answer(conn.mo("slow")) == 0  # the person again: stored
        wait_rows(gw, "slow", 2)
        assert gw.log_events("intake.late_answer")


def test_a_redelivery_during_its_originals_commit_gets_the_originals_fate(
        db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    with bare_smsc() as smsc:
        gw = make_gateway(bare_config(db_url, smsc.port))
        first = smsc.next_bound()
        with write_lock(db_url):  # the original's commit waits
            first.mo("held")
            first.ping()
            first.drop()
            again = smsc.next_bound()
            seq = again.mo("held")
            again.ping()  # the redelivery was taken while the original is uncommitted
        assert again.answer(seq) == 0  # once the original is stored
        wait_rows(gw, "held", 1)
