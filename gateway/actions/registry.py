"""The action kinds, in one table: what each is enabled by, what it does with an MO, how
its jobs run.

Each kind is one module under gateway/actions/ that declares a `Kind`
(gateway/actions/kind.py; opt.py declares two: opt_in and opt_out): its config keys
(`fields`, `enabled`), its fan-out `step` (an MO on a keyword or default route whose
configuration enables it -> MTs, jobs, rows), the routes it answers alone (STOP/START/
HELP, an expired keyword), and for the kinds that run from the durable outbox its
`JobKind`, the attempts a job gets and the `Action` that runs it. The daemon, the
action worker, the CLI, admin and fan-out read this table; a new kind is a new module
and one line in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.actions import (
    forward_email,
    forward_sms,
    lead,
    mqtt_events,
    opt,
    poll,
    reply,
    webhook,
)
from gateway.actions.kind import Kind, RouteStep, Runtime, Step
from gateway.config import ActionConfig
from gateway.model import ActionKind
from gateway.routing.router import Route

if TYPE_CHECKING:
    from gateway.actions.base import Action
    from gateway.config import Config

# The order fan-out runs the steps of one MO in: an opt keyword first, the poll (an
# invalid vote withholds the keyword's reply), the lead, the reply, the forwards.
KINDS: tuple[Kind, ...] = (*opt.KINDS, poll.KIND, lead.KIND, reply.KIND, forward_sms.KIND,
                           forward_email.KIND, webhook.KIND, mqtt_events.KIND)

BY_KIND: dict[ActionKind, Kind] = {k.kind: k for k in KINDS}
JOBS: dict[str, Kind] = {k.job.value: k for k in KINDS if k.job is not None}  # by job kind
# (enabled, step) of the kinds with a step, in their order
STEPS: tuple[tuple[Callable[[ActionConfig], bool], Step], ...] = tuple(
    (k.enabled, k.step) for k in KINDS if k.step is not None)
ROUTES: dict[Route, RouteStep] = {r: s for k in KINDS for r, s in k.routes.items()}
# Job kinds whose jobs to one target keep their order (one action worker per target).
ORDERED_JOBS: frozenset[str] = frozenset(k.job for k in KINDS if k.job is not None
                                         and k.ordered)
assert set(BY_KIND) == set(ActionKind), "every ActionKind has its module"
assert len(ROUTES) == sum(len(k.routes) for k in KINDS), "one kind per route"


def enabled_names(action: ActionConfig) -> tuple[str, ...]:
    """The kinds `action` enables, in `ActionKind` order (`ActionConfig.action_names`)."""
    return tuple(k.value for k in ActionKind if BY_KIND[k].enabled(action))


def describe(action: ActionConfig) -> list[str]:
    """`check`'s words for the kinds `action` enables, e.g. ["webhook", "poll(color)"]."""
    out = []
    for name in enabled_names(action):
        label = BY_KIND[ActionKind(name)].label
        out.append(label(action) if label is not None else name)
    return out


def runners(cfg: Config, rt: Runtime) -> dict[str, Action]:
    """The `Action` of every job kind `cfg` configures, by job kind, in `ActionKind`
    order (the outbox's and the action worker's)."""
    out: dict[str, Action] = {}
    for name in ActionKind:
        k = BY_KIND[name]
        if k.runner is not None and k.job is not None:
            action = k.runner(cfg, rt)
            if action is not None:
                out[k.job.value] = action
    return out
