"""What the gateway shows: no secret or personal data in logs (issue 9 point 15), and
customer text never reaches the operator's terminal as control sequences (point 18).
The daemon runs as a subprocess against the simulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, Gateway, gateway_config, run_sql, wait_for
from peers import free_port
from simctl import Simulator
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.exc import IntegrityError

from gateway import cli, log
from gateway.storage.db import create_engine

VMN = "5551000100"
CUSTOMER = "15557654321"

# =========================================================================== redaction


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://app:pa/ss@db.example:5432/gw?sslmode=require",
         "postgresql+asyncpg://app:***@db.example:5432/gw?sslmode=***"),
        ("postgresql://app:p?ss@db/gw", "postgresql://app:***@db/gw"),
        ("postgresql://app:p@ss@db/gw", "postgresql://app:***@db/gw"),
        ("https://user:hunter2@hooks.example/in?token=abc123&x=1",
         "https://user:***@hooks.example/in?token=***&x=***"),
        ("https://T0KEN@hooks.example/in", "https://***@hooks.example/in"),
        ("https://hooks.example/in#frag", "https://hooks.example/in#***"),
        ("https://hooks.example/users/@me?k", "https://hooks.example/users/@me?***"),
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        ("sqlite+aiosqlite:///./vmn-gateway.db", "sqlite+aiosqlite:///./vmn-gateway.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert log.redact_url(url) == shown


def test_redact_urls_in_text() -> None:
    text = "Cannot connect to https://u:hunter2@h.example/x?token=abc123: refused."
    assert log.redact_urls(text) == (
        "Cannot connect to https://u:***@h.example/x?token=***: refused.")


async def test_sql_errors_carry_no_parameters(db_url: str) -> None:
    """The engines hide a failed statement's values, and `describe_error` keeps only the
    driver's exception and its first line."""
    engine = create_engine(db_url)
    meta = MetaData()
    t = Table("h5_secret", meta, Column("id", Integer, primary_key=True),
              Column("text", String(50)))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            await conn.execute(t.insert().values(id=1, text="first"))
        with pytest.raises(IntegrityError) as info:
            async with engine.begin() as conn:
                await conn.execute(t.insert().values(id=1, text="my PIN is 4321"))
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)
        await engine.dispose()
    assert "4321" not in str(info.value)
    described = log.describe_error(info.value)
    assert "4321" not in described and "INSERT" not in described
    assert "\n" not in described and "Error" in described.split(":")[0]


# =========================================================================== check


def test_check_shows_no_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
database = "postgresql+asyncpg://app:pa/ss-w0rd@db.example:5432/gw?sslmode=require"

[[smsc]]
name = "a"
host = "127.0.0.1"
port = 2775
system_id = "gw"
password = "smpS3cr!"

[callback_profiles.crm]
url = "https://crm-user:hunter2@crm.example/in?token=abc123"
secret = "hmac-s3cret"

[[number]]
vmn = "{VMN}"
[number.default]
webhook = "https://hook-user:hunter3@hooks.example/x?api_key=def456"
""")
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(cfg)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for secret in ["pa/ss", "w0rd", "smpS3cr!", "hunter2", "abc123", "hmac-s3cret",
                   "hunter3", "def456"]:
        assert secret not in out, (secret, out)
    assert "app:***@db.example:5432/gw" in out
    assert "https://crm-user:***@crm.example/in?token=***" in out


# =========================================================================== daemon logs


def test_failing_webhook_url_is_redacted_in_logs(
    sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    port = free_port()  # nobody listens: every call is refused
    hook = f"http://hook-user:hunter2@127.0.0.1:{port}/in?token=abc123"
    gw = make_gateway(gateway_config(
        db=db_url, sim=sim, extra_gateway="retry_base = 0.05\nretry_max = 0.1\nmax_attempts = 2",
        numbers=f'[[number]]\nvmn = "{VMN}"\n[number.default]\nwebhook = "{hook}"\n'))
    sim.wait_bound()
    assert sim.mo(source=CUSTOMER, destination=VMN, text="hello")["statuses"] == [0]
    failed = wait_for(lambda: gw.log_events("action.attempt_failed"), what="a failed call")
    assert failed[0]["target"] == f"http://hook-user:***@127.0.0.1:{port}/in?token=***"
    wait_for(lambda: any(a["status"] == "dead" for m in gw.mos() for a in m["actions"]),
             what="the call dead-lettered")
    human = gw.cli("logs").stdout
    as_json = gw.cli("logs", "--json").stdout
    daemon_log = gw.log_path.read_text()
    for out in (human, as_json, daemon_log):
        assert "hunter2" not in out and "abc123" not in out
    assert "token=***" in human and "token=***" in as_json and "token=***" in daemon_log


def _fail_inserts(url: str) -> None:
    if url.startswith("sqlite"):
        run_sql(url, "CREATE TRIGGER fail BEFORE INSERT ON messages "
                     "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    else:
        run_sql(url,
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$",
                "CREATE TRIGGER fail BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION fail()")


def test_intake_commit_failure_logs_no_message_data(
    sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim))
    sim.wait_bound()
    wait_for(lambda: gw.log_events("daemon.started"), what="the daemon")  # migrated
    _fail_inserts(db_url)
    secret_text = "my card is 4111 1111 1111 1111"
    res = sim.mo(source=CUSTOMER, destination=VMN, text=secret_text)
    assert res["statuses"] == [0x64], res
    wait_for(lambda: gw.log_events("intake.commit_failed"), what="the failure logged")
    lines = [line for line in gw.log_path.read_text().splitlines()
             if '"intake.' in line and '"error"' in line]
    assert lines
    for line in lines:
        assert "4111" not in line and CUSTOMER not in line and "parameters" not in line
        assert "disk on fire" in line  # what went wrong is still said


# =========================================================================== terminal

HOSTILE = "\x1b]0;pwned\x07 hi \x1b[2J there\x9b31m é 👍"


def test_printable() -> None:
    assert cli.printable(HOSTILE) == "\\x1b]0;pwned\\x07 hi \\x1b[2J there\\x9b31m é 👍"
    assert cli.printable("a\nb\tc\x7f\u202eevil") == "a\\nb\\tc\\x7f\\u202eevil"
    assert cli.printable(None) == ""


def test_customer_text_is_escaped_on_the_terminal(
    sim: Simulator, db_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(gateway_config(db=db_url, sim=sim, numbers=f"""
[[number]]
vmn = "{VMN}"
[number.default]
lead = true
"""))
    sim.wait_bound()
    res = sim.mo(source=CUSTOMER, destination=VMN, text=HOSTILE, encoding="ucs2")
    assert res["statuses"] == [0]
    wait_for(lambda: gw.cli("leads").stdout.count("\n") >= 2, what="the lead")
    # An opt-in row whose keyword and number hold escapes (any stored value is shown).
    run_sql(db_url, "INSERT INTO opt_state (msisdn, vmn, state, keyword, updated_at) "
                    f"VALUES ('1555\x1b[2J', '{VMN}', 'out', 'STOP\x1b]0;x\x07', 0)")
    for command in (["logs"], ["leads"], ["optins"]):
        out = gw.cli(*command).stdout
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, command
    assert "\\x1b]0;pwned\\x07 hi \\x1b[2J there" in gw.cli("leads").stdout
    assert "1555\\x1b[2J" in gw.cli("optins").stdout
    assert HOSTILE in gw.cli("leads", "--csv").stdout  # machine output keeps the text
    records = [json.loads(line) for line in gw.cli("logs", "--json").stdout.splitlines()]
    assert [r["text"] for r in records if r["direction"] == "mo"] == [HOSTILE]
