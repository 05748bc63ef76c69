"""Engine set-up (SQLite WAL + BEGIN IMMEDIATE, or PostgreSQL) and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Table, event, text
from sqlalchemy import create_engine as create_sync_engine_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x766D6E67  # "vmng": one migrator at a time across instances


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, synchronous: str = "FULL") -> AsyncEngine:
    """An async engine. On SQLite every connection uses WAL, `synchronous` (FULL: a
    commit is on disk when it returns) and BEGIN IMMEDIATE, so a writer never fails
    half-way through a transaction on a lock upgrade."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    # A small pool: opening a SQLite connection (and its pragmas) per query would cost
    # more than most queries. The intake writer keeps one connection of its own.
    engine = create_async_engine(url, pool_size=4, max_overflow=4, connect_args={"timeout": 30})
    _sqlite_events(engine.sync_engine, synchronous)
    return engine


def create_sync_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """The blocking twin of an async SQLite URL, for the writer thread (pysqlite)."""
    sync_url = url.replace("sqlite+aiosqlite:", "sqlite:", 1)
    engine = create_sync_engine_(sync_url, pool_size=1, max_overflow=0,
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
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front; readers (see `reader`) do not take it.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for read-only work: on SQLite a deferred transaction, which never
    waits for (nor blocks) the writer under WAL."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(sqlite_begin="DEFERRED")


def _alembic_config(conn: Connection, country_code: str = "1") -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    # Migrations that rewrite phone numbers read national ones in this country (0005).
    cfg.attributes["country_code"] = country_code
    return cfg


def _upgrade(conn: Connection, country_code: str = "1") -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    command.upgrade(_alembic_config(conn, country_code), "head")


async def migrate(engine: AsyncEngine, *, country_code: str = "1") -> None:
    """Apply every pending migration (idempotent; safe with several instances);
    `country_code` is `[gateway] country_code`."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, country_code)


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
