"""Engine set-up (SQLite WAL + BEGIN IMMEDIATE, or PostgreSQL) and migrations."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Table, event, inspect, text
from sqlalchemy import create_engine as create_sync_engine_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.log import describe_error, redact_urls

if TYPE_CHECKING:  # alembic costs the daemon 9 MiB: imported only to migrate
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision, known without importing alembic (the daemon compares
# the database's with it on every start). tests/test_schema_start.py checks it against
# alembic's own head, so a new migration that does not move it fails.
HEAD = "0012"
_PG_MIGRATION_LOCK = 0x766D6E67  # "vmng": one migrator at a time across instances
BUSY_TIMEOUT_MS = 30000
DEFAULT_WAL_LIMIT = 64 * 1024 * 1024

log = structlog.get_logger("gateway.storage")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# `[gateway] durability`: what an acknowledged MO survives, as each backend spells it.
# "power-loss": the commit is on disk (fsync/fdatasync of the WAL) before the ack.
# "crash": the commit is in the OS (SQLite: written to the WAL file) or in the database
# server (PostgreSQL: its WAL buffers) before the ack, flushed to disk a little later.
DURABILITY_MODES = ("power-loss", "crash")
_SQLITE_SYNCHRONOUS = {"power-loss": "FULL", "crash": "NORMAL"}
_PG_SYNCHRONOUS_COMMIT = {"power-loss": "on", "crash": "off"}


def sqlite_synchronous(durability: str) -> str:
    """PRAGMA synchronous of a durability mode (WAL): FULL or NORMAL."""
    return _SQLITE_SYNCHRONOUS[durability]


def pg_synchronous_commit(durability: str) -> str:
    """synchronous_commit of a durability mode: on or off."""
    return _PG_SYNCHRONOUS_COMMIT[durability]


def create_engine(url: str, *, durability: str = "power-loss") -> AsyncEngine:
    """An async engine whose commits keep `durability` (see DURABILITY_MODES). On SQLite
    every connection uses WAL, PRAGMA synchronous (FULL: a commit is on disk when it
    returns; NORMAL: in the OS, synced at checkpoints) and BEGIN IMMEDIATE, so a writer
    never fails half-way through a transaction on a lock upgrade. On PostgreSQL every
    connection sets synchronous_commit (on / off) for its session."""
    # hide_parameters: a failed statement's error never carries its values (message
    # texts, phone numbers, PDUs), whoever logs it.
    if not is_sqlite(url):
        settings = {"synchronous_commit": pg_synchronous_commit(durability)}
        return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True,
                                   hide_parameters=True,
                                   connect_args={"server_settings": settings})
    # A small pool: opening a SQLite connection (and its pragmas) per query would cost
    # more than most queries. The intake writer keeps one connection of its own.
    engine = create_async_engine(url, pool_size=4, max_overflow=4, connect_args={"timeout": 30},
                                 hide_parameters=True)
    _sqlite_events(engine.sync_engine, sqlite_synchronous(durability))
    return engine


def create_sync_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """The blocking twin of an async SQLite URL, for the writer thread (pysqlite)."""
    sync_url = url.replace("sqlite+aiosqlite:", "sqlite:", 1)
    engine = create_sync_engine_(sync_url, pool_size=1, max_overflow=0, hide_parameters=True,
                                 connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_events(engine, synchronous)
    return engine


def _sqlite_events(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front; readers (see `reader`) do not take it.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def wal_path(url: str) -> Path | None:
    """The WAL file of a SQLite database URL (None for PostgreSQL or an in-memory one)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + "-wal")


def wal_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class WalGuard:
    """Keeps a SQLite WAL file under `limit` bytes, run by the writer after each commit.

    The daemon checkpoints PASSIVE once a second off the ack path, but under steady
    writes a checkpoint never catches up with the last frame, so the WAL is never
    restarted and grows without end (447 MB in 60 s at 300 MO/s). Once the file is over
    the limit, a RESTART checkpoint on the writer (between its transactions, so no write
    of ours can slip in) copies what is left and waits briefly for readers of older
    snapshots; the next transaction then writes from the start of the file, over the old
    frames, and `journal_size_limit` trims what lies beyond the limit. A reader that
    holds a snapshot longer than CHECKPOINT_WAIT only postpones the restart by
    RETRY_AFTER.

    When that restart runs matters: it holds the writer while it copies every frame the
    last PASSIVE pass did not, and syncs the database file. Run at whatever commit
    crossed the limit, that was up to a second of frames: 17-50 ms during which no MO
    was committed or acked and no job claimed (MO->webhook p99 at 1,000 MO/s 25-39 ms
    against 8-13 ms in the runs without one, docs/PERFORMANCE.md). Run right after a
    PASSIVE pass, 4 ms. So when a `checkpointer` is set (the daemon's checkpoint loop),
    the writer over the limit only wakes it; the loop runs a PASSIVE pass, then asks the
    writer for the restart (`after_passive`). Only over `limit` + HEADROOM x `limit`
    (the loop stalled, or writes far faster than a pass) does the writer restart at
    once, as without a loop. So the WAL stays within (1 + HEADROOM) x `limit` plus one
    transaction.

    Not TRUNCATE: emptying the file cost an ftruncate (~33 ms of a 64 MiB WAL) on the
    writer, and then every commit grew the file again, so its fdatasync wrote the new
    size too: with a webhook on every MO, MO->webhook p99 at 1,000 MO/s was ~100 ms
    against ~15 ms with RESTART (bench/vs_kannel.py, docs/PERFORMANCE.md). The metric
    keeps its name (`vmn_sqlite_wal_truncations`): it counts these restarts."""

    CHECKPOINT_WAIT_MS = 250
    RETRY_AFTER = 1.0
    HEADROOM = 0.25

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.hard_limit = limit + int(limit * self.HEADROOM)
        self.truncations = 0
        self.failures = 0
        # Called (on the writer thread) when the WAL is over the limit: it must run a
        # PASSIVE checkpoint soon, then `after_passive` on the writer. None: restart
        # at once.
        self.checkpointer: Callable[[], None] | None = None
        self._asked = False  # the checkpointer was woken and has not answered yet
        self._retry_at = 0.0
        self._configured: Any = None  # the driver connection set up for the limit

    def over(self) -> bool:
        """Whether the WAL is over the limit (and not backing off from a long reader)."""
        return wal_bytes(self.path) > self.limit and time.monotonic() >= self._retry_at

    def due(self) -> bool:
        """Whether the checkpointer should call `after_passive` after its pass."""
        return self._asked or self.over()

    def after_write(self, dbapi_conn: sqlite3.Connection) -> None:
        """Never raises: the transaction before it is committed already."""
        try:
            if self._configured is not dbapi_conn:
                dbapi_conn.execute(f"PRAGMA journal_size_limit={self.limit}")
                self._configured = dbapi_conn
            size = wal_bytes(self.path)
            if size <= self.limit or time.monotonic() < self._retry_at:
                return
            checkpointer = self.checkpointer
            if checkpointer is not None and size <= self.hard_limit:
                if not self._asked:
                    self._asked = True
                    checkpointer()
                return
            self._restart(dbapi_conn)
        except Exception as exc:  # the next write tries again
            self._failed(exc)

    def after_passive(self, dbapi_conn: sqlite3.Connection) -> None:
        """On the writer, right after a PASSIVE checkpoint pass: restart the WAL if it is
        over the limit (little is left to copy). Never raises."""
        self._asked = False
        try:
            if self.over():
                self._restart(dbapi_conn)
        except Exception as exc:  # the next pass tries again
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        log.warning("storage.wal_checkpoint_failed", error=str(exc) or type(exc).__name__)

    def _restart(self, dbapi_conn: sqlite3.Connection) -> None:
        started = time.monotonic()
        dbapi_conn.execute(f"PRAGMA busy_timeout={self.CHECKPOINT_WAIT_MS}")
        try:
            busy = dbapi_conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        finally:
            dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not busy:
            self.truncations += 1
            return
        self.failures += 1
        waited = time.monotonic() - started
        # Failing at once means another checkpoint (the PASSIVE one) held the lock: try
        # after the next write. Failing after the wait means a long reader: back off, so
        # the intake is not stalled on every commit while it reads.
        if waited * 2000 >= self.CHECKPOINT_WAIT_MS:
            self._retry_at = time.monotonic() + self.RETRY_AFTER
            log.warning("storage.wal_checkpoint_busy", wal_bytes=wal_bytes(self.path),
                        limit=self.limit, waited=round(waited, 3))


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for read-only work: on SQLite a deferred transaction, which never
    waits for (nor blocks) the writer under WAL."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(sqlite_begin="DEFERRED")


def _alembic_config(conn: Connection, country_code: str = "1") -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    # Migrations that rewrite phone numbers read national ones in this country (0004).
    cfg.attributes["country_code"] = country_code
    return cfg


def _upgrade(conn: Connection, country_code: str = "1") -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    from alembic import command

    command.upgrade(_alembic_config(conn, country_code), "head")


async def migrate(engine: AsyncEngine, *, country_code: str = "1") -> None:
    """Apply every pending migration (idempotent; safe with several instances);
    `country_code` is `[gateway] country_code`. Imports alembic into this process: the
    daemon calls `ensure_schema` instead."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, country_code)


class SchemaError(Exception):
    """The database could not be brought to this version's schema (the message says
    why, its URL without a password)."""


def _revision(conn: Connection) -> str | None:
    """The schema revision alembic recorded (None: an empty database), read with plain
    SQL so that checking it does not import alembic."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return ",".join(sorted(rows)) or None


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The database's schema revision (None when it has none yet); HEAD when current."""
    async with reader(engine).connect() as conn:
        return await conn.run_sync(_revision)


# The migration child reads these, not its argv: the URL may hold a password.
MIGRATE_URL_ENV = "VMN_MIGRATE_DATABASE_URL"
MIGRATE_COUNTRY_ENV = "VMN_MIGRATE_COUNTRY_CODE"


async def ensure_schema(engine: AsyncEngine, *, country_code: str = "1") -> None:
    """The daemon's check on its own loop: the database at HEAD (like `migrate`) without
    importing alembic into this process, which stays resident (9 MiB of a 100 MB
    budget). After `prepare_schema` (`vmn-gateway run`), or at HEAD already: one query.
    Else (a daemon run without `prepare_schema`, its threads already running: no fork) a
    new process (`gateway.storage.migrator`) runs `migrate` and exits; an in-memory
    SQLite database, which a child cannot see, is migrated here. SchemaError when the
    migration fails (its transaction rolled back: nothing half-done)."""
    if await schema_revision(engine) == HEAD:
        return
    url = engine.url.render_as_string(hide_password=False)
    if is_sqlite(url) and wal_path(url) is None:
        await migrate(engine, country_code=country_code)
        return
    await _spawn_migration(url, country_code)
    reached = await schema_revision(engine)
    if reached != HEAD:
        raise SchemaError(f"the database {redact_urls(url)} is at schema revision {reached} after "
                          f"its migration, this vmn-gateway expects {HEAD}")


def prepare_schema(url: str, *, country_code: str = "1") -> str:
    """`vmn-gateway run`'s start, before its event loop and its threads: bring the
    database to HEAD without importing alembic into this process, cheaply. At HEAD (every
    start but the first of a version): one query. Else a fork of this process (its
    modules already imported: no new interpreter to start) migrates and exits; only when
    threads already exist (a fork would copy their locks half-held) a new interpreter
    (`gateway.storage.migrator`) does. An in-memory SQLite database is left to
    `ensure_schema` (migrated in-process). Returns which path ran ("current", "fork",
    "spawn" or "in-process"); SchemaError when the migration fails (rolled back whole)."""
    if is_sqlite(url) and wal_path(url) is None:
        path = "in-process"
    elif _read_revision(url) == HEAD:
        path = "current"
    elif threading.active_count() == 1:
        log.info("storage.migrating", database=redact_urls(url), to=HEAD)
        _fork_migration(url, country_code)
        path = "fork"
    else:
        _spawn_migration_sync(url, country_code)
        path = "spawn"
    log.debug("storage.schema_start", path=path, threads=threading.active_count())
    return path


def _read_revision(url: str) -> str | None:
    """The schema revision, read without an event loop left behind or a thread left
    running: SQLite through the stdlib, PostgreSQL on a short-lived standard loop and a
    connection closed before returning."""
    if is_sqlite(url):
        database = make_url(url).database
        if not database or not Path(database).exists():
            return None
        conn = sqlite3.connect(database, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'alembic_version'").fetchone() is None:
                return None
            rows = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        finally:
            conn.close()
        return ",".join(sorted(rows)) or None

    async def read() -> str | None:
        from sqlalchemy.pool import NullPool

        engine = create_async_engine(url, poolclass=NullPool, hide_parameters=True)
        try:
            return await schema_revision(engine)
        finally:
            await engine.dispose()

    # The standard loop (not uvloop, whose resolver threads would outlive it): closing
    # the runner joins the threads of its executor.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(read())


def _fork_migration(url: str, country_code: str) -> None:
    """Migrate in a fork of this (single-threaded) process; SchemaError unless it exits
    0. Its one-line error comes back through a pipe."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read_end)
            # Ctrl-C reaches the whole group: the parent says so, the child just ends
            # (its transaction rolled back by the database).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # what alembic prints: not in the daemon's output
            os.dup2(devnull, 2)
            try:
                with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                    runner.run(migrate_url(url, country_code))
                status = 0
            except BaseException as exc:
                os.write(write_end, migration_error(exc).encode()[:2000])
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    try:
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    _check_migrator(url, os.waitstatus_to_exitcode(wait_status), b"".join(chunks))


async def migrate_url(url: str, country_code: str = "1") -> None:
    """`migrate` on an engine of its own (a migration child's)."""
    engine = create_engine(url)
    try:
        await migrate(engine, country_code=country_code)
    finally:
        await engine.dispose()


def migration_error(exc: BaseException) -> str:
    """One line for a failed migration, without a statement's values or a password."""
    if getattr(exc, "orig", None) is not None or type(exc).__module__.startswith("sqlalchemy"):
        return describe_error(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact_urls(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _interpreter_flags() -> list[str]:
    """The flags of this interpreter that decide where the child finds `gateway`: with
    the same executable, environment and working directory, it imports the same code."""
    flags = sys.flags
    return [opt for opt, on in (("-I", flags.isolated), ("-E", flags.ignore_environment),
                                ("-s", flags.no_user_site), ("-P", flags.safe_path)) if on]


def _migrator_command(url: str, country_code: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, **{MIGRATE_URL_ENV: url, MIGRATE_COUNTRY_ENV: country_code})
    return [sys.executable, *_interpreter_flags(), "-m", "gateway.storage.migrator"], env


def _spawn_migration_sync(url: str, country_code: str) -> None:
    """`_spawn_migration` for a caller without an event loop."""
    argv, env = _migrator_command(url, country_code)
    log.info("storage.migrating", database=redact_urls(url), to=HEAD)
    res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    _check_migrator(url, res.returncode, res.stderr)


async def _spawn_migration(url: str, country_code: str) -> None:
    """Run `python -m gateway.storage.migrator` to its end; SchemaError unless it exits 0."""
    argv, env = _migrator_command(url, country_code)
    log.info("storage.migrating", database=redact_urls(url), to=HEAD)
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = await proc.communicate()
    except BaseException:  # cancelled: do not leave a migrator behind (it rolls back)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    _check_migrator(url, proc.returncode, err)


def _check_migrator(url: str, returncode: int | None, err: bytes) -> None:
    """SchemaError unless a migration child exited 0; its last line of `err` says why."""
    if returncode == 0:
        return
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    if lines:
        why = lines[-1].removeprefix("error: ")[:500]
    elif returncode is not None and returncode < 0:
        why = f"the migration process was killed by signal {-returncode}"
    else:
        why = f"the migration process exited with status {returncode}"
    raise SchemaError(f"cannot migrate the database {redact_urls(url)} to schema revision "
                      f"{HEAD}: {why}")


def upsert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` with `on_conflict_do_update` / `.excluded` (SQLite 3.24+ and PostgreSQL
    spell it alike): safe when two instances write the same key at once."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def placeholders(engine: AsyncEngine | Engine | Connection, n: int) -> str:
    """`?, ?, ?` or `$1, $2, $3`: positional markers in the driver's paramstyle, for the
    hot-path statements that bypass SQLAlchemy's per-row parameter processing."""
    style = engine.dialect.paramstyle
    if style == "qmark":
        return ", ".join("?" * n)
    if style == "numeric_dollar":
        return ", ".join(f"${i}" for i in range(1, n + 1))
    if style == "format":
        return ", ".join(["%s"] * n)
    raise ValueError(f"unsupported paramstyle {style}")


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (as opposed to a statement
    it refused): connection refused or reset, server gone, pool exhausted."""
    if isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
