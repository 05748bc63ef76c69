"""The daemon's start keeps alembic out of its memory (issue 12): the schema revision is
read with plain SQL, a database at HEAD is left alone, one behind is migrated by a fork
of the daemon (`prepare_schema`, before its loop and threads; a new interpreter only when
threads exist), and a migration that fails stops the start with one line, nothing
half-done."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
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
    prepare_schema,
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


def _start_in_a_fresh_process(url: str, script: str = _START) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-c", script, url], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_ensure_schema_migrates_an_empty_database_in_a_new_interpreter(db_url: str) -> None:
    """The fallback (a daemon on a loop that did not go through `prepare_schema`)."""
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


# `vmn-gateway run`'s start: after the daemon's imports, before its loop. The fork is
# counted and the child writes its /proc/self/cmdline (a new interpreter would have its
# own: `-m gateway.storage.migrator`); the new-interpreter fallbacks must not run.
_PREPARE = """
import asyncio, json, os, sys, threading
from gateway import daemon, eventloop
from gateway.storage import db

url, cmdline_out = sys.argv[1], sys.argv[2]
forks = []
real_fork = os.fork

def fork():
    pid = real_fork()
    if pid == 0:
        with open(cmdline_out, "wb") as f:
            f.write(open("/proc/self/cmdline", "rb").read())
    else:
        forks.append(pid)
    return pid

def no_spawn(*args, **kwargs):
    raise AssertionError("a new interpreter was started")

os.fork = fork
db._spawn_migration_sync = db._spawn_migration = no_spawn
eventloop.install()
try:
    path = db.prepare_schema(url, country_code="44")
    error = None
except db.SchemaError as exc:
    path, error = None, str(exc)
print(json.dumps({"path": path, "error": error, "forks": len(forks),
                  "threads": threading.active_count(),
                  "cmdline": open("/proc/self/cmdline", "rb").read().decode(),
                  "alembic": sorted(m for m in sys.modules
                                    if m == "alembic" or m.startswith("alembic."))}))
"""


def _prepare_in_a_fresh_process(url: str, tmp_path: Any) -> tuple[dict[str, Any], str | None]:
    cmdline_out = tmp_path / "child-cmdline"
    res = subprocess.run([sys.executable, "-c", _PREPARE, url, str(cmdline_out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    child = cmdline_out.read_bytes().decode() if cmdline_out.exists() else None
    return out, child


def test_the_start_migrates_an_empty_database_in_a_fork(db_url: str, tmp_path: Any) -> None:
    out, child_cmdline = _prepare_in_a_fresh_process(db_url, tmp_path)
    assert out["path"] == "fork", out
    assert out["forks"] == 1 and out["threads"] == 1
    assert out["alembic"] == []  # the parent: alembic was imported by the child only
    assert child_cmdline == out["cmdline"]  # the child is this process, not a new program
    revision, columns = _revision_and_columns(db_url)
    assert revision == HEAD and "match_key" in columns
    # The next start: one query, no fork.
    (tmp_path / "child-cmdline").unlink()
    again, child_cmdline = _prepare_in_a_fresh_process(db_url, tmp_path)
    assert (again["path"], again["forks"], again["alembic"]) == ("current", 0, [])
    assert child_cmdline is None


def test_a_failed_migration_in_the_fork_is_one_line_and_changes_nothing(
        db_url: str, tmp_path: Any) -> None:
    _break_the_last_migration(db_url)
    out, _ = _prepare_in_a_fresh_process(db_url, tmp_path)
    assert out["forks"] == 1 and out["path"] is None, out
    message = out["error"]
    assert message.startswith("cannot migrate the database "), message
    assert f"to schema revision {HEAD}: " in message
    assert "ix_mt_segments_match_key" in message and "already exists" in message, message
    assert "\n" not in message and "Traceback" not in message
    revision, columns = _revision_and_columns(db_url)
    assert revision == "0011" and "match_key" not in columns


def test_with_threads_running_the_start_starts_a_new_interpreter_instead(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork copies only the calling thread, and the locks the others held: unsafe."""
    def fork() -> int:
        raise AssertionError("forked with threads running")

    monkeypatch.setattr(os, "fork", fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert prepare_schema(db_url) == "spawn"
    finally:
        stop.set()
        other.join()
    assert _revision_and_columns(db_url)[0] == HEAD


def test_the_daemon_migrates_an_empty_database_in_a_fork_and_binds(
        sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, extra_gateway='log_level = "debug"'))
    sim.wait_bound(60)
    out = gw.log_path.read_text()
    starts = [json.loads(line) for line in out.splitlines() if "storage.schema_start" in line]
    assert [s["path"] for s in starts] == ["fork"], out
    assert "Traceback" not in out, out
    assert _revision_and_columns(db_url)[0] == HEAD
