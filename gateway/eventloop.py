"""Which asyncio event loop the process runs: uvloop when it is installed (the default:
measured faster on the SMPP, HTTP and MQTT paths), or the standard one. `VMN_LOOP`
chooses: `auto` (default), `uvloop` (an error if it is not installed) or `asyncio`.
Chosen once, before any loop is created, by installing the loop policy."""

from __future__ import annotations

import asyncio
import os

ENV = "VMN_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class LoopError(Exception):
    """VMN_LOOP names a loop that cannot be used."""


def policy(choice: str | None = None) -> asyncio.AbstractEventLoopPolicy:
    """The loop policy for `choice` (default: the VMN_LOOP environment variable)."""
    if choice is None:
        choice = os.environ.get(ENV, "") or "auto"
    choice = choice.strip().lower()
    if choice not in CHOICES:
        raise LoopError(f"{ENV}={choice!r}: must be one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise LoopError(f"{ENV}=uvloop but uvloop is not installed") from None
        else:
            fast: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
            return fast
    return asyncio.DefaultEventLoopPolicy()


def install(choice: str | None = None) -> str:
    """Install the chosen loop policy; returns its name ("uvloop" or "asyncio")."""
    p = policy(choice)
    asyncio.set_event_loop_policy(p)
    return "asyncio" if type(p) is asyncio.DefaultEventLoopPolicy else "uvloop"


def running() -> str:
    """The running loop's kind: "uvloop" or "asyncio" (for the start-up log)."""
    mod = type(asyncio.get_running_loop()).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"
