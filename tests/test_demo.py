"""`vmn-gateway demo`, run the way a newcomer runs it: a subprocess of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CUSTOMER = "15551234567"


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "demo", *args], cwd=REPO, env=full_env,
        capture_output=True, text=True, encoding="utf-8", timeout=120,
    )


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    res = run_demo(env={"TMPDIR": str(tmp_path)})
    out = res.stdout
    assert res.returncode == 0, f"stdout:\n{out}\nstderr:\n{res.stderr}"
    lines = out.splitlines()

    def block(label: str) -> tuple[str, list[str]]:
        """The table row of one MO and the reply lines under it."""
        found = [i for i, line in enumerate(lines) if line.startswith(f"  {label}")]
        assert found, f"{label!r} not in the output:\n{out}"
        i = found[0]
        replies = []
        for line in lines[i + 1:]:
            if not line.startswith("      "):
                break
            replies.append(line.strip())
        return lines[i], replies

    def cells(row: str, label: str) -> list[str]:
        return row[len(label) + 2:].split()

    hello, replies = block("HELLO there")
    assert cells(hello, "HELLO there")[:3] == ["keyword", "HELLO", "1/0"], hello
    assert "mo + 2 mt_status" in hello
    assert replies == [f"reply: Hello {CUSTOMER}! You said: there"]

    default, replies = block("What time do you open?")
    assert cells(default, "What time do you open?")[:2] == ["default", "-"], default
    assert "mo + 2 mt_status" in default
    assert replies == [f"reply: Thanks {CUSTOMER}, we got your message"]

    stop, replies = block("STOP")
    assert " optout " in stop and " STOP " in stop and stop.rstrip().endswith("-"), stop
    assert len(replies) == 1 and "unsubscribed" in replies[0]

    long, replies = block("Привет!")
    assert " default " in long and "/8 " in long, long  # UCS-2, reassembled from its parts
    assert int(long.split("/8")[0].split()[-1]) > 1  # several parts
    assert "mo + 2 mt_status" in long
    assert replies == [f"reply: Thanks {CUSTOMER}, we got your message"]

    sale, replies = block("SALE")
    assert cells(sale, "SALE") == ["expired", "SALE", "1/0", "-"], sale  # no webhook
    assert replies == ["reply: The SALE has ended"]  # only the expiry reply

    price, replies = block("PRICE?")
    assert cells(price, "PRICE?")[:2] == ["keyword", "PRICE"], price
    assert replies == ["reply: Our prices: https://example.com/prices"]

    hooks = next(line for line in lines if line.startswith("Webhook receiver:"))
    assert "(3 mo, 6 mt_status)" in hooks, hooks  # HELLO and the two defaults
    mt = next(line for line in lines if "Your table is ready" in line and "MT" in line)
    assert "delivered" in mt and CUSTOMER in mt and "sim-" in mt
    acks = next(line for line in lines if line.startswith("Simulator:"))
    assert "deliver_sm_resp status 0:" in acks and "8 submit_sm accepted" in acks, acks
    api = next(line for line in lines if "POST /v1/messages to" in line)
    assert "'Your order has shipped'" in api and CUSTOMER in api, api
    assert "queued, submitted, delivered (DELIVRD)" in api, api
    assert any(line.startswith("Sent an MT through the HTTP API: POST /v1/messages -> 202")
               for line in lines), out
    assert "Gateway stopped cleanly" in out
    assert "MISSING" not in out and "not active yet" not in out
    assert len(lines) <= 40, out  # short and friendly
    assert not list(tmp_path.glob("vmn-demo-*"))  # the temporary files are gone


def test_demo_keep_leaves_the_files(tmp_path: Path) -> None:
    res = run_demo("--keep", env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    (workdir,) = tmp_path.glob("vmn-demo-*")
    assert str(workdir) in res.stdout
    for name in ("gateway.toml", "gateway.db", "gateway.log", "simulator.log"):
        assert (workdir / name).is_file(), name
    cfg = str(workdir / "gateway.toml")
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", cfg],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "@WEBHOOK@" not in (workdir / "gateway.toml").read_text()
    # What the gateway itself recorded.
    logs = subprocess.run([sys.executable, "-m", "gateway", "logs", "-c", cfg, "--json",
                           "--limit", "0"], cwd=REPO, capture_output=True, text=True,
                          encoding="utf-8", timeout=60)
    assert logs.returncode == 0, logs.stderr
    records = [json.loads(line) for line in logs.stdout.splitlines() if line.strip()]
    mos = {r["text"]: r for r in records if r["direction"] == "mo"}
    assert {r["route"] for r in mos.values()} == {"keyword", "default", "optout", "expired"}

    def replies(text: str) -> list[dict[str, object]]:
        return [r for r in records if r.get("in_reply_to") == mos[text]["id"]]

    sale = mos["SALE"]
    assert sale["route"] == "expired" and sale["keyword"] == "SALE"
    assert [r["text"] for r in replies("SALE")] == ["The SALE has ended"]
    assert not [a for a in sale["actions"] if a["kind"] == "webhook"]
    for text in ("HELLO there", "What time do you open?"):
        hooks = [a for a in mos[text]["actions"] if a["kind"] == "webhook"]
        assert hooks and all(a["status"] == "done" for a in hooks), mos[text]
    assert all(r["status"] == "submitted" for t in mos for r in replies(t))
    sent = {r["text"]: r["status"] for r in records
            if r["direction"] == "mt" and r["in_reply_to"] is None}
    # One with `vmn-gateway send`, one through the HTTP API.
    assert sent == {"Your table is ready": "delivered", "Your order has shipped": "delivered"}


def test_demo_without_simulator_dependencies_explains_the_fix(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "smsc.js").write_text("// no node_modules next to me\n")
    res = run_demo(env={"VMN_SIM_DIR": str(sim), "TMPDIR": str(tmp_path)})
    assert res.returncode == 1
    assert "npm ci --prefix" in res.stdout, res.stdout
    assert not list(tmp_path.glob("vmn-demo-*"))  # nothing left behind
