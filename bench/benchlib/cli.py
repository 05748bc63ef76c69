"""The options the benches share, with each bench's own defaults: runs, the load's
shape (count, window, warm-up, paced phase), the target timeouts, the output."""

from __future__ import annotations

import argparse


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the bench's docstring, as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_runs(
    p: argparse.ArgumentParser, default: int = 3, help: str = "runs per target (median)",
    short: bool = True,
) -> None:
    """``--runs`` (and ``-k`` unless ``short`` is False)."""
    names = ("--runs", "-k") if short else ("--runs",)
    p.add_argument(*names, type=int, default=default, help=help)


def add_load(
    p: argparse.ArgumentParser,
    *,
    count: int,
    count_help: str = "burst MOs (unlimited rate)",
    window: int | None = 1000,
    warmup: int = 1000,
    warmup_help: str = "unmeasured MOs first",
    lat_count: int = 5000,
    lat_count_help: str = "paced-phase MOs",
    lat_rate_help: str = "paced-phase MO/s",
) -> None:
    """``--count``, ``--window`` (unless None), ``--warmup``, ``--lat-count``, ``--lat-rate``."""
    p.add_argument("--count", type=int, default=count, help=count_help)
    if window is not None:
        p.add_argument("--window", type=int, default=window, help="max outstanding deliver_sm")
    p.add_argument("--warmup", type=int, default=warmup, help=warmup_help)
    p.add_argument("--lat-count", type=int, default=lat_count, help=lat_count_help)
    p.add_argument("--lat-rate", type=float, default=1000.0, help=lat_rate_help)


def add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="where the load generator listens")


def add_timeouts(
    p: argparse.ArgumentParser,
    *,
    stall_help: str = "give up a push / a drain after this long without progress",
    drain: bool = False,
) -> None:
    """``--bind-timeout``, ``--stall-timeout``, ``--drain-timeout`` (if ``drain``),
    ``--stop-timeout``."""
    p.add_argument("--bind-timeout", type=float, default=30.0, help="seconds")
    p.add_argument("--stall-timeout", type=float, default=30.0, help=stall_help)
    if drain:
        p.add_argument(
            "--drain-timeout",
            type=float,
            default=180.0,
            help="max seconds to wait for the receivers after a push",
        )
    p.add_argument("--stop-timeout", type=float, default=10.0, help="SIGTERM grace before SIGKILL")


def add_output(p: argparse.ArgumentParser, keep_tmp: bool = True) -> None:
    """``--json-out`` and ``--keep-tmp``."""
    p.add_argument("--json-out", default=None, help="write full results as JSON here")
    if keep_tmp:
        p.add_argument(
            "--keep-tmp",
            action="store_true",
            help="keep every run's temp dir (failed runs always keep theirs)",
        )
