"""`python -m gateway` and the `vmn-gateway` script."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(_signum: int, _frame: object) -> None:
    print("vmn-gateway: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


def main() -> int:
    # Ctrl-C while the modules load (a second or more on a busy host) printed a
    # KeyboardInterrupt traceback from deep inside an import. Until a command's event
    # loop takes SIGINT over (the daemon: a graceful stop), it ends the process quietly.
    signal.signal(signal.SIGINT, _interrupted)
    from gateway import eventloop

    try:
        eventloop.install()
    except eventloop.LoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from gateway.cli import main as cli

    return cli()


if __name__ == "__main__":
    raise SystemExit(main())
