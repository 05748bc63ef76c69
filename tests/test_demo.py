"""`vmn-gateway demo`, run the way a newcomer runs it: a subprocess of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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

    def line_with(text: str) -> str:
        found = [line for line in lines if text in line]
        assert found, f"{text!r} not in the output:\n{out}"
        return found[0]

    assert "received" in line_with("HELLO there")
    assert "received" in line_with("What time do you open?")
    stop = line_with("opt-out")
    assert "STOP" in stop and "received" in stop
    long = line_with("Привет!")
    assert " 8 " in long and "received" in long  # UCS-2, reassembled from its parts
    sale = line_with("expired SALE")
    assert "SALE" in sale and "received" in sale
    mt = line_with("Your table is ready")
    assert "delivered" in mt and "15551234567" in mt and "sim-1" in mt
    assert "Gateway stopped cleanly" in out
    assert "MISSING" not in out
    assert len(lines) <= 35, out  # short and friendly
    assert not list(tmp_path.glob("vmn-demo-*"))  # the temporary files are gone


def test_demo_keep_leaves_the_files(tmp_path: Path) -> None:
    res = run_demo("--keep", env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    (workdir,) = tmp_path.glob("vmn-demo-*")
    assert str(workdir) in res.stdout
    for name in ("gateway.toml", "gateway.db", "gateway.log", "simulator.log"):
        assert (workdir / name).is_file(), name
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(workdir / "gateway.toml")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_demo_without_simulator_dependencies_explains_the_fix(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "smsc.js").write_text("// no node_modules next to me\n")
    res = run_demo(env={"VMN_SIM_DIR": str(sim), "TMPDIR": str(tmp_path)})
    assert res.returncode == 1
    assert "npm ci --prefix" in res.stdout, res.stdout
    assert not list(tmp_path.glob("vmn-demo-*"))  # nothing left behind
