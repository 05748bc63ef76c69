"""WalGuard (gateway/storage/db.py): over the limit, the writer restarts the SQLite WAL
in place. A TRUNCATE checkpoint emptied the file instead: its ftruncate took ~33 ms,
and every commit after it grew the file again, so its fdatasync also wrote the file's
new size. With a webhook on every MO that put the MO->webhook p99 at 1,000 MO/s paced at
~100 ms against ~15 ms (bench/vs_kannel.py, docs/PERFORMANCE.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.storage.db import WalGuard, wal_bytes


def _wal_db(tmp_path: Path) -> tuple[sqlite3.Connection, Path]:
    db = tmp_path / "g.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as the daemon's writer
    conn.execute("CREATE TABLE t (x BLOB)")
    return conn, Path(str(db) + "-wal")


def _write(conn: sqlite3.Connection, rows: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,) for _ in range(rows)])
    conn.execute("COMMIT")


def test_over_the_limit_the_wal_restarts_in_place_and_stays_bounded(tmp_path: Path) -> None:
    conn, wal = _wal_db(tmp_path)
    limit = 256 * 1024
    guard = WalGuard(wal, limit)
    _write(conn, 100)  # ~400 KB of frames: over the limit
    over = wal_bytes(wal)
    assert over > limit
    guard.after_write(conn)
    assert guard.truncations == 1 and guard.failures == 0
    # Not emptied: the file is reused from its start by the next transaction.
    assert wal_bytes(wal) > 0
    _write(conn, 5)
    after = wal_bytes(wal)
    assert 0 < after <= over, "the next commit wrote at the start of the WAL"
    # Bounded however long the writes go on.
    peak = 0
    for _ in range(40):
        _write(conn, 20)
        guard.after_write(conn)
        peak = max(peak, wal_bytes(wal))
    assert peak <= limit + 200 * 1024  # the limit plus one transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 905
    conn.close()


def test_under_the_limit_nothing_is_checkpointed(tmp_path: Path) -> None:
    conn, wal = _wal_db(tmp_path)
    guard = WalGuard(wal, 1024 * 1024)
    _write(conn, 10)
    size = wal_bytes(wal)
    guard.after_write(conn)
    assert guard.truncations == 0 and wal_bytes(wal) == size
    conn.close()


def _passive(db: Path) -> None:
    """A PASSIVE checkpoint pass on a connection of its own (the daemon's loop)."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("PRAGMA wal_checkpoint(PASSIVE)")
    other.close()


def test_with_a_checkpointer_the_writer_hands_the_restart_over(tmp_path: Path) -> None:
    """Restarting at the commit that crossed the limit held the writer while it copied up
    to a second of frames: 17-50 ms without a commit or an ack. With a checkpointer (the
    daemon's loop) the writer only wakes it, once; the loop's PASSIVE pass copies the
    frames off the writer, and the restart after it has little left."""
    conn, wal = _wal_db(tmp_path)
    limit = 256 * 1024
    guard = WalGuard(wal, limit)
    woken: list[int] = []
    guard.checkpointer = lambda: woken.append(1)
    _write(conn, 68)  # ~280 KB: over the limit, under its headroom
    size = wal_bytes(wal)
    assert limit < size <= guard.hard_limit
    guard.after_write(conn)
    guard.after_write(conn)
    assert guard.truncations == 0, "the writer restarted the WAL itself"
    assert woken == [1], "the checkpointer is woken once"
    assert wal_bytes(wal) == size and guard.due()
    _passive(tmp_path / "g.db")
    guard.after_passive(conn)
    assert guard.truncations == 1 and guard.failures == 0
    _write(conn, 5)
    assert wal_bytes(wal) <= limit, "the next commit wrote at the start of the WAL"
    assert not guard.due()
    # Over the limit again: woken again.
    _write(conn, 70)
    guard.after_write(conn)
    assert woken == [1, 1]
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 143
    conn.close()


def test_far_over_the_limit_the_writer_restarts_at_once(tmp_path: Path) -> None:
    """The checkpointer stalled (or writes outran its pass): beyond the headroom the
    writer restarts the WAL itself, so it stays bounded whatever the loop does."""
    conn, wal = _wal_db(tmp_path)
    limit = 256 * 1024
    guard = WalGuard(wal, limit)
    woken: list[int] = []
    guard.checkpointer = lambda: woken.append(1)
    _write(conn, 100)  # ~400 KB: beyond limit x (1 + HEADROOM)
    assert wal_bytes(wal) > guard.hard_limit
    guard.after_write(conn)
    assert guard.truncations == 1 and woken == []
    conn.close()


def test_after_a_pass_under_the_limit_nothing_is_restarted(tmp_path: Path) -> None:
    conn, wal = _wal_db(tmp_path)
    guard = WalGuard(wal, 1024 * 1024)
    _write(conn, 10)
    _passive(tmp_path / "g.db")
    guard.after_passive(conn)
    assert guard.truncations == 0 and guard.failures == 0
    conn.close()
