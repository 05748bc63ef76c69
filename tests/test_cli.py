"""The operator's commands (issue 10, points 6-9), run as the real command: read-only
commands that need only the database, help for people, validated filters, and a log
that tells the story of each message, retries and redrives included."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import REPO, Gateway, gateway_config, wait_for
from peers import HttpRecorder
from simctl import Simulator
from sqlalchemy import inspect, text

from gateway.cli import build_parser
from gateway.config import load_config
from gateway.routing.router import Route
from gateway.storage.db import create_engine as create_async_engine
from gateway.storage.db import migrate

VMN = "5551000100"
CUSTOMER = "15551234567"
UNSET = "VMN_TEST_CLI_SURELY_UNSET"


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def migrated(url: str) -> str:
    async def go() -> None:
        engine = create_async_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(go())
    return url


def only_database(url: str) -> str:
    """A file whose only usable part is [gateway] database: a secret from an unset
    variable, an unknown key, no [[number]]."""
    return f"""
[gateway]
database = "{url}"
no_such_key = true

[[smsc]]
name = "sim"
system_id = "x"
password_env = "{UNSET}"
"""


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


# --------------------------------------------------------------------- 6: the database


def test_read_commands_need_only_the_database(db_url: str, tmp_path: Path) -> None:
    conf = tmp_path / "gateway.toml"
    conf.write_text(only_database(migrated(db_url)))
    assert cli("check", "-c", str(conf)).returncode == 1  # the file is not valid
    for args in (["logs"], ["logs", "--json"], ["optins"], ["optins", "--history"],
                 ["polls"], ["leads"], ["redrive"]):
        res = cli(*args, "-c", str(conf))
        assert res.returncode == 0, (args, res.stderr)
        # --database works without any file
        res = cli(*args, "--database", db_url)
        assert res.returncode == 0, (args, res.stderr)
    assert cli("redrive", "--database", db_url).stdout.startswith("re-queued 0 action(s)")
    res = cli("logs")
    assert res.returncode == 1 and "--database" in res.stderr


def test_a_missing_sqlite_database_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gateway.db"
    res = cli("logs", "--database", f"sqlite+aiosqlite:///{missing}")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and str(missing) in res.stderr, res.stderr
    assert not missing.parent.exists()
    # the same through a file, with a relative path
    conf = tmp_path / "etc" / "gateway.toml"
    conf.parent.mkdir()
    conf.write_text(only_database("sqlite+aiosqlite:///./state.db"))
    for command in ("logs", "optins", "polls", "leads", "redrive"):
        res = cli(command, "-c", str(conf))
        assert res.returncode == 1 and str(conf.parent / "state.db") in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert not (conf.parent / "state.db").exists() and not (REPO / "state.db").exists()


def test_a_relative_sqlite_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "gateway.toml"
    (tmp_path / "etc" / "data").mkdir(parents=True)
    migrated(f"sqlite+aiosqlite:///{tmp_path}/etc/data/gw.db")
    conf.write_text(only_database("sqlite+aiosqlite:///data/gw.db"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    res = cli("logs", "-c", str(conf), cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert not list(elsewhere.iterdir())
    # The daemon reads the same rule (load_config), whatever its working directory.
    conf.write_text(f"""
[gateway]
database = "sqlite+aiosqlite:///./data/gw.db"
[[smsc]]
name = "sim"
system_id = "x"
[[number]]
vmn = "{VMN}"
[number.default]
""")
    cfg = load_config(conf)
    assert cfg.gateway.database == f"sqlite+aiosqlite:///{tmp_path}/etc/data/gw.db"


def test_shipped_example_and_unit_agree_on_the_database() -> None:
    example = (REPO / "config" / "gateway.example.toml").read_text()
    unit = (REPO / "systemd" / "vmn-gateway.service").read_text()
    db = re.search(r'^database = "sqlite\+aiosqlite:///(.*)"$', example, re.MULTILINE)
    assert db is not None
    state = re.search(r"^StateDirectory=(.*)$", unit, re.MULTILINE)
    assert state is not None
    assert Path(db[1]).parent == Path("/var/lib") / state[1].strip()


def test_an_older_database_is_not_migrated_by_a_read_command(db_url: str) -> None:
    from alembic import command

    from gateway.storage.db import _alembic_config

    def tables() -> list[str]:
        async def go() -> list[str]:
            engine = create_async_engine(db_url)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(lambda c: inspect(c).get_table_names())
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def version_num() -> str:
        async def go() -> str:
            engine = create_async_engine(db_url)
            try:
                async with engine.connect() as conn:
                    res = await conn.execute(text("SELECT version_num FROM alembic_version"))
                    return str(res.scalar())
            finally:
                await engine.dispose()

        return asyncio.run(go())

    if db_url.startswith("sqlite"):
        sqlite_path(db_url).touch()  # an empty file: not a vmn-gateway database
    res = cli("logs", "--database", db_url)
    assert res.returncode == 1 and "not a vmn-gateway database" in res.stderr, res.stderr
    assert tables() == []  # nothing was created in it

    async def old() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0001"))
        finally:
            await engine.dispose()

    asyncio.run(old())
    res = cli("logs", "--database", db_url)
    assert res.returncode == 1 and "vmn-gateway run" in res.stderr, res.stderr
    assert version_num() == "0001"


# ------------------------------------------------------------------------- 7: --help


def test_help_is_for_people() -> None:
    top = cli("--help")
    assert top.returncode == 0
    commands = ["run", "check", "send", "logs", "redrive", "optins", "polls", "leads", "demo"]
    for name in commands:
        assert re.search(rf"^\s+{name}\s+\S", top.stdout, re.MULTILINE), name
    assert "action-worker" not in top.stdout
    for out in [top.stdout] + [cli(name, "--help").stdout for name in commands]:
        assert "==SUPPRESS==" not in out and "argument parsing" not in out
        assert "#" not in out
    logs_help = cli("logs", "--help").stdout
    for route in Route:
        assert route.value in logs_help
    # every option of every listed command has help text and a description
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():  # type: ignore[union-attr]
        assert sp.description, name
        for action in sp._actions:
            assert action.help and action.help != "==SUPPRESS==", (name, action.dest)
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"vmn-gateway {version('vmn-gateway')}"


# ------------------------------------------------------- 8 and 9: filters, the story

STORY_NUMBERS = f"""
[callback_profiles.crm]
url = "@HOOK@/crm"
max_attempts = 3

[[number]]
vmn = "{VMN}"
[number.default]
reply = "Thanks"

[[number.keyword]]
keyword = "VOTE"
poll = {{ name = "color", options = ["RED", "BLUE"], invalid_reply = "Vote RED or BLUE" }}

[[number.keyword]]
keyword = "JOIN"
lead = true

[[number.keyword]]
keyword = "HELLO"
callback_profile = "crm"
"""


@pytest.fixture
def hooks() -> Iterator[HttpRecorder]:
    with HttpRecorder() as h:
        yield h


def story_gateway(db: str, sim: Simulator, hooks: HttpRecorder,
                  make_gateway: Callable[..., Gateway]) -> Gateway:
    gw = make_gateway(gateway_config(
        db=db, sim=sim, extra_gateway="retry_base = 0.05\nretry_max = 0.2",
        numbers=STORY_NUMBERS.replace("@HOOK@", hooks.url(""))))
    sim.wait_bound(timeout=20)
    return gw


def test_filters_are_validated_and_the_log_tells_the_story(
        sim: Simulator, db_url: str, hooks: HttpRecorder,
        make_gateway: Callable[..., Gateway]) -> None:
    gw = story_gateway(db_url, sim, hooks, make_gateway)
    for n, body in enumerate(["VOTE red", "VOTE purple", "JOIN me", "what time?", "STOP"]):
        sim.mo(source=CUSTOMER if body == "STOP" else f"1555000{n:04d}", destination=VMN,
               text=body)
    wait_for(lambda: len(gw.mos()) == 5, what="5 MOs")
    mt_id = gw.send(VMN, CUSTOMER, "promo")
    wait_for(lambda: [r for r in gw.logs("--id", mt_id) if r["status"] == "blocked"],
             what="the MT blocked")

    bogus = gw.cli("logs", "--route", "bogus", check=False)
    assert bogus.returncode == 2
    assert all(r.value in bogus.stderr for r in Route), bogus.stderr
    picked = gw.logs("--route", "keyword", "--route", "optout")
    assert sorted(r["route"] for r in picked) == ["keyword", "keyword", "keyword", "optout"]
    assert [r["id"] for r in gw.logs("--id", mt_id)] == [mt_id]
    res = gw.cli("logs", "--id", "nosuchmessage", check=False)
    assert res.returncode == 1 and "no such message" in res.stderr
    res = gw.cli("polls", "nosuchpoll", check=False)
    assert res.returncode == 1 and "no such poll" in res.stderr and "color" in res.stderr
    assert "RED" in gw.cli("polls", "color").stdout
    res = gw.cli("redrive", "--id", "12345", check=False)
    assert res.returncode == 1 and "no such job: 12345" in res.stderr

    story = gw.cli("logs").stdout
    assert "keyword=VOTE" in story and "keyword=JOIN" in story
    assert "vote: color = RED (valid" in story
    assert "vote: color: not an option (invalid" in story
    assert "lead: recorded" in story
    assert "blocked: recipient opted out" in story
    mo = next(r for r in gw.mos() if r["text"] == "VOTE red")
    assert mo["vote"] == {"poll": "color", "option": "RED"}
    assert next(r for r in gw.mos() if r["text"] == "JOIN me")["lead"] is True


def test_a_redriven_action_numbers_every_attempt_in_order(
        sim: Simulator, db_url: str, hooks: HttpRecorder,
        make_gateway: Callable[..., Gateway]) -> None:
    gw = story_gateway(db_url, sim, hooks, make_gateway)
    hooks.status = 500
    sim.mo(source=CUSTOMER, destination=VMN, text="HELLO there")

    def crm() -> dict[str, object] | None:
        for m in gw.mos():
            for a in m["actions"]:
                if a["target"] == "profile:crm":
                    return dict(a)
        return None

    job = wait_for(lambda: (lambda a: a if a and a["status"] == "dead" else None)(crm()),
                   what="the dead-lettered webhook")
    dead = wait_for(lambda: gw.log_events("action.dead_lettered"), what="dead-letter log")
    assert dead[0]["outcome"] == "dead" and dead[0]["level"] == "error"
    assert dead[0]["job"] == job["job"] and dead[0]["attempt"] == 3
    hooks.status = 200
    assert gw.cli("redrive", "--id", str(job["job"])).stdout.startswith("re-queued 1 ")
    job = wait_for(lambda: (lambda a: a if a and a["status"] == "done" else None)(crm()),
                   what="the redriven webhook delivered")
    tries = job["attempts_log"]
    assert isinstance(tries, list)
    assert [t["attempt"] for t in tries] == [1, 2, 3, 4]
    assert [t["at"] for t in tries] == sorted(t["at"] for t in tries)
    assert [t["outcome"] for t in tries] == ["retry", "retry", "retry", "ok"]
    story = gw.cli("logs").stdout
    assert f"(job {job['job']}): done after 4 attempt(s)" in story
    numbers = [int(n) for n in re.findall(r"^\s+attempt (\d+) ", story, re.MULTILINE)]
    assert numbers == [1, 2, 3, 4]
