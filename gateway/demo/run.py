"""Runs the demo: starts the simulator, the webhook receiver and the gateway, plays the
scenario (gateway/demo/scenario.py), prints the outcome and stops everything in order."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.demo.output import next_steps, report, say, short
from gateway.demo.processes import (
    DemoError,
    Gateway,
    WebhookReceiver,
    free_port,
    wait_for,
    write_config,
)
from gateway.demo.scenario import (
    API_TEXT,
    CUSTOMER,
    MOS,
    MT_TEXT,
    OTHER_PHONE,
    VMN,
    Outcome,
    outcomes,
)
from gateway.testing.sim import Simulator, SimulatorError, ucs2_parts

BIND_TIMEOUT = 20.0
STEP_TIMEOUT = 30.0


def run_demo(*, keep: bool = False) -> int:
    """Run the demo; 0 on success, 1 (with the reason printed) on failure."""
    workdir = Path(tempfile.mkdtemp(prefix="vmn-demo-"))
    sim: Simulator | None = None
    hooks = WebhookReceiver()
    gw: Gateway | None = None
    ok = False
    # The children run in their own sessions (a Ctrl-C must not reach them before the
    # demo stops them in order); a SIGTERM to the demo is handled like a Ctrl-C.
    previous = _on_sigterm(_interrupt)
    try:
        say("vmn-gateway demo: an SMSC simulator, a webhook receiver and the gateway "
            "on 127.0.0.1")
        sim = _start_simulator(workdir / "simulator.log")
        hooks.start()
        api_port = free_port()
        cfg = write_config(workdir, sim.smpp_port, hooks.url, api_port)
        gw = Gateway(cfg, workdir / "gateway.log")
        gw.api_base = f"http://127.0.0.1:{api_port}"
        _demo(sim, hooks, gw)
        ok = True
    except (DemoError, SimulatorError, OSError) as exc:
        say(f"\ndemo failed: {exc}")
    except KeyboardInterrupt:
        say("\ndemo interrupted")
    finally:
        ok = _cleanup(sim, hooks, gw) and ok
        if ok:
            next_steps(workdir, keep)
        elif gw is not None or (workdir / "simulator.log").exists():
            say(f"Logs and configuration kept in {workdir}")
            keep = True
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        _on_sigterm(previous)
    return 0 if ok else 1


def _start_simulator(log_path: Path) -> Simulator:
    """The simulator in its own session (the demo stops it in order on a Ctrl-C)."""
    try:
        return Simulator.start(quiet=True, log_path=log_path, new_session=True)
    except SimulatorError as exc:
        raise DemoError(str(exc)) from None


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: _Handler) -> _Handler:
    """Install a SIGTERM handler (main thread only); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _demo(sim: Simulator, hooks: WebhookReceiver, gw: Gateway) -> None:
    say(f"  simulator: SMPP on port {sim.smpp_port}, control API on port {sim.control_port}")
    say(f"  webhooks:  {hooks.url} (the trigger URL in the demo's configuration)")
    gw.start()

    def alive() -> None:
        sim.check_running()
        gw.alive()

    binds = wait_for(lambda: sim.state()["binds"], BIND_TIMEOUT,
                     "the gateway to bind to the simulator", alive)
    say(f"  gateway:   bound as {binds[0]['system_id']!r} ({binds[0]['bind_type']}), "
        f"config {gw.config_path}")

    say(f"\nSending {len(MOS)} MOs to {VMN} from {CUSTOMER} (STOP from {OTHER_PHONE}) ...")
    for mo in MOS:
        body: dict[str, Any] = {"source": mo.sender, "destination": VMN, "text": mo.text,
                                **mo.extra}
        if mo.extra.get("mode") == "udh8":
            body["order"] = list(range(ucs2_parts(mo.text), 0, -1))  # last part first
        alive()
        res = sim.mo(**body)
        bad = [s for s in res.get("statuses", []) if s != 0]
        if bad or res.get("sent") != len(res.get("statuses", [])):
            say(f"  note: {short(mo.text, 20)!r} was answered with {res.get('statuses')}")

    mt_id = gw.cli("send", "--from", VMN, "--to", CUSTOMER, MT_TEXT).strip()
    submit = wait_for(
        lambda: next((s for s in sim.submits() if s.get("destination_addr") == CUSTOMER
                      and s.get("text") == MT_TEXT and s.get("command_status") == 0), None),
        STEP_TIMEOUT, "the MT's submit_sm at the simulator", alive)
    rcpt = sim.receipt(message_id=submit["message_id"], stat="DELIVRD")
    say(f"Queued an MT with `vmn-gateway send` -> submit_sm {submit['message_id']}, "
        f"receipt DELIVRD sent (deliver_sm_resp {rcpt.get('status')})")
    api_id = _api_send(sim, gw, alive)

    # Wait until every MO has its reply submitted, the webhook heard what it should,
    # and the MT is delivered; on a timeout, show how far it got.
    seen: dict[str, Any] = {"outcomes": outcomes([], []), "mt": None, "events": []}

    def finished() -> bool:
        logs, events = gw.logs(), hooks.events()
        results = outcomes(logs, events)
        mt = next((r for r in logs if r["id"] == mt_id), None)
        api_mt = next((r for r in logs if r["id"] == api_id), None)
        seen.update(outcomes=results, mt=mt, events=events, api_mt=api_mt)
        return (all(o.problem() is None for o in results)
                and mt is not None and mt["status"] == "delivered"
                and api_mt is not None and api_mt["status"] == "delivered")

    problems: list[str] = []
    try:
        wait_for(finished, STEP_TIMEOUT, "the replies, the webhook calls and the MT's "
                 "receipt", alive, 0.3)
    except DemoError as exc:
        problems.append(str(exc))
    results: list[Outcome] = seen["outcomes"]
    mt: dict[str, Any] | None = seen["mt"]
    api_mt = seen.get("api_mt")
    status, shown = gw.api("GET", f"/v1/messages/{api_id}", gw.api_key)
    api_line = None
    if status == 200:
        changes = ", ".join(h["status"] for h in shown["history"])
        receipt = shown["receipt"] or {}
        api_line = (f"  MT POST /v1/messages to {shown['to']}: {shown['text']!r} -> "
                    f"{changes} ({receipt.get('stat')})")
    report(results, seen["events"], mt, sim.state(), sim.submits(), api_line)
    problems += [f"{o.mo.label}: {o.problem()}" for o in results if o.problem()]
    if mt is None or mt["status"] != "delivered":
        problems.append(f"the MT is {'missing' if mt is None else mt['status']}")
    if api_mt is None or api_mt["status"] != "delivered" or status != 200:
        problems.append("the MT sent through the HTTP API is "
                        f"{'missing' if api_mt is None else api_mt['status']}")
    if problems:
        raise DemoError("; ".join(problems) + f"; see {gw.log_path}")


def _api_send(sim: Simulator, gw: Gateway, alive: Callable[[], None]) -> str:
    """Make an API key, send one MT with POST /v1/messages, answer it with a receipt."""
    gw.api_key = gw.cli("apikey", "demo-app", "--scope", "send,read",
                        sub=("create",)).strip().split()[-1]
    status, body = gw.api("POST", "/v1/messages", gw.api_key,
                          {"from": VMN, "to": f"+{CUSTOMER}", "text": API_TEXT})
    if status != 202:
        raise DemoError(f"POST /v1/messages answered {status}: {body}")
    submit = wait_for(
        lambda: next((s for s in sim.submits() if s.get("text") == API_TEXT
                      and s.get("command_status") == 0), None),
        STEP_TIMEOUT, "the API MT's submit_sm at the simulator", alive)
    sim.receipt(message_id=submit["message_id"], stat="DELIVRD")
    say(f"Sent an MT through the HTTP API: POST /v1/messages -> {status} "
        f"{{status: {body['status']}, parts: {body['parts']}}}, receipt DELIVRD sent")
    return str(body["id"])


def _cleanup(sim: Simulator | None, hooks: WebhookReceiver, gw: Gateway | None) -> bool:
    """Stop the gateway (it must exit 0 on SIGTERM), the simulator and the webhook
    receiver; True if the gateway stopped cleanly."""
    clean = True
    try:
        if gw is not None and gw.proc is not None:
            already = gw.proc.poll() is not None
            rc = gw.stop()
            if already:
                clean = False
            elif rc == 0:
                say("\nGateway stopped cleanly on SIGTERM (exit 0).")
            elif rc == -signal.SIGTERM:
                say("\nThe gateway was killed by SIGTERM before it had set up its signal "
                    f"handlers; see {gw.log_path}")
                clean = False
            else:
                say(f"\nThe gateway exited with {rc} on SIGTERM; see {gw.log_path}")
                clean = False
    finally:
        if sim is not None:
            sim.stop()
        hooks.stop()
    return clean
