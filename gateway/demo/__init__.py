"""`vmn-gateway demo`: a newcomer's first run.

Starts the SMSC simulator (``node sim/smsc.js``, through gateway/testing/sim.py, the
driver the tests use too), a small webhook receiver (in this process) and the gateway
daemon on loopback, sends a handful of MOs through the simulator (a keyword, a default,
STOP, a long UCS-2 message in reverse order, an expired keyword, a keyword alias), queues
one MT with ``vmn-gateway send`` and one through the HTTP API (``POST /v1/messages`` with
a key from ``vmn-gateway apikey create``), answers both with delivery receipts, waits
until every MO got its reply and the webhook its events, and shows what happened to
each. The gateway and the CLI run in subprocesses, exactly as a user would run them.

Rooms: scenario.py (the MOs and when each is done), processes.py (the daemon, its CLI
and API, the webhook receiver), output.py (what is printed), run.py (the order of it all).
"""

from gateway.demo.run import run_demo

__all__ = ["run_demo"]
