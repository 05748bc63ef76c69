"""The daemon's start keeps alembic out of its memory (issue 12): the schema revision is
read with plain SQL, a database at HEAD is left alone, one behind is migrated by a child
process, and a migration that fails stops the start with one line, nothing half-done."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from conftest import REPO, Gateway, gateway_config, run_sql
from simctl import Simulator
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.storage import db
from gateway.storage.db import (
    HEAD,
    MIGRATIONS,
    SchemaError,
    create_engine,
    ensure_schema,
    migrate,
    schema_revision,
)


def test_head_is_the_newest_migration() -> None:
    """A new migration that forgets to move HEAD fails here (the daemon would otherwise
    think an old database current, or migrate on every start)."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == HEAD


def _migrated(url: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(go())


def _revision_and_columns(url: str) -> tuple[str | None, set[str]]:
    async def go() -> tuple[str | None, set[str]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                columns = await conn.run_sync(
                    lambda c: {col["name"] for col in inspect(c).get_columns("mt_segments")}
                    if inspect(c).has_table("mt_segments") else set())
            return await schema_revision(engine), columns
        finally:
            await engine.dispose()

    return asyncio.run(go())


_START = """
import asyncio, json, sys
from gateway import eventloop
from gateway.storage.db import create_engine, ensure_schema, schema_revision

async def main():
    engine = create_engine(sys.argv[1])
    try:
        await ensure_schema(engine, country_code="44")
        return await schema_revision(engine)
    finally:
        await engine.dispose()

eventloop.install()
revision = asyncio.run(main())
print(json.dumps({"revision": revision, "alembic": sorted(
    m for m in sys.modules if m == "alembic" or m.startswith("alembic."))}))
"""


def _start_in_a_fresh_process(url: str) -> dict[str, Any]:
    import json

    res = subprocess.run([sys.executable, "-c", _START, url], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_an_empty_database_is_migrated_without_alembic_in_the_process(db_url: str) -> None:
    out = _start_in_a_fresh_process(db_url)
    assert out == {"revision": HEAD, "alembic": []}
    revision, columns = _revision_and_columns(db_url)
    assert revision == HEAD
    assert "match_key" in columns  # the newest migration's column: the whole schema is there
    # The next start finds it current, still without alembic.
    assert _start_in_a_fresh_process(db_url) == {"revision": HEAD, "alembic": []}


async def test_a_current_database_starts_without_a_child(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        spawned: list[str] = []

        async def spawn(url: str, country_code: str) -> None:
            spawned.append(url)

        monkeypatch.setattr(db, "_spawn_migration", spawn)
        await ensure_schema(engine)
        assert spawned == []
    finally:
        await engine.dispose()


async def test_the_child_gets_the_url_from_its_environment_not_its_argv(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = asyncio.create_subprocess_exec

    async def exec_(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        seen["argv"], seen["env"] = args, kwargs["env"]
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", exec_)
    engine = create_engine(db_url)
    try:
        await ensure_schema(engine, country_code="44")
        assert await schema_revision(engine) == HEAD
    finally:
        await engine.dispose()
    assert seen["argv"][-2:] == ("-m", "gateway.storage.migrator")
    assert not any("://" in a for a in seen["argv"])
    assert seen["env"][db.MIGRATE_URL_ENV] == db_url
    assert seen["env"][db.MIGRATE_COUNTRY_ENV] == "44"


def _break_the_last_migration(url: str) -> None:
    """A database at 0011 on which 0012 fails at its second step: its column is added,
    then its index name is taken."""
    _migrated(url)
    run_sql(url,
            "DROP INDEX ix_mt_segments_match_key",
            "ALTER TABLE mt_segments DROP COLUMN match_key",
            "CREATE INDEX ix_mt_segments_match_key ON mt_segments (seq)",
            "UPDATE alembic_version SET version_num = '0011'")


async def test_a_failed_migration_is_a_clear_error_and_changes_nothing(db_url: str) -> None:
    await asyncio.to_thread(_break_the_last_migration, db_url)
    engine = create_engine(db_url)
    try:
        with pytest.raises(SchemaError) as failed:
            await ensure_schema(engine)
    finally:
        await engine.dispose()
    message = str(failed.value)
    assert message.startswith("cannot migrate the database "), message
    assert f"to schema revision {HEAD}: " in message
    assert "ix_mt_segments_match_key" in message and "already exists" in message, message
    assert "\n" not in message and "Traceback" not in message
    # Rolled back whole: still at 0011, the column of its first step not there.
    revision, columns = await asyncio.to_thread(_revision_and_columns, db_url)
    assert revision == "0011"
    assert "match_key" not in columns


def test_the_daemon_stops_its_start_on_a_failed_migration(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    _break_the_last_migration(db_url)
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    assert gw.proc is not None
    assert gw.proc.wait(60) == 1
    out = gw.log_path.read_text()
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    assert errors[0].startswith("error: cannot migrate the database "), out
    assert "already exists" in errors[0], out
    assert _revision_and_columns(db_url)[0] == "0011"


async def test_an_in_memory_database_is_migrated_in_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A child could not see it: the one case where alembic is imported here."""
    async def spawn(url: str, country_code: str) -> None:
        raise AssertionError("a child for an in-memory database")

    monkeypatch.setattr(db, "_spawn_migration", spawn)
    # (create_engine's pool options do not apply to one: SQLAlchemy's defaults.)
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        await ensure_schema(engine)
        assert await schema_revision(engine) == HEAD
    finally:
        await engine.dispose()
