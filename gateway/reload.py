"""SIGHUP: what changed between two configurations, by key path, and which of those
changes the running daemon can take without a restart.

The diff is a pure function of the two models. Everything the routing reads (numbers,
keywords, opt-out words, callback profiles) is swapped in one step; sections whose
objects are built once at start (binds, the MQTT link, the e-mail listener, the
database, the admin listener, the HTTP API) need a restart, and a reload says so per key path
instead of pretending to have applied them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config

# Key paths (or their prefixes) applied live. Anything else that differs needs a restart.
LIVE_PREFIXES: tuple[str, ...] = (
    "number",
    "callback_profiles",
    "optout",
    "gateway.max_attempts",
)
# Not gateway.log_level: structlog caches each logger's level on first use
# (cache_logger_on_first_use), so a new level would reach only some modules.
# Sections read through `daemon.cfg` at each use: live when present before and after
# (adding or removing one changes which actions exist, which is built at start).
LIVE_WHEN_PRESENT: tuple[str, ...] = ("smtp",)

RESULTS = ("applied", "partial", "rejected")


def _key(item: Any, index: int) -> str:
    if isinstance(item, Mapping):
        for name in ("name", "vmn", "keyword"):
            if isinstance(item.get(name), str):
                return str(item[name])
    return str(index)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        if not value and path:
            out[path] = {}
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{path}.{_key(v, i)}", out)
    else:
        out[path] = value


def flatten(cfg: Config) -> dict[str, Any]:
    """Leaf values by dotted key path (`smsc.alpha.window`, `number.5551000100.reply`).
    Lists of tables are keyed by their name / vmn / keyword, so that reordering them
    is no change. Secrets compare by value (SecretStr.__eq__) and are never printed."""
    data = cfg.model_dump(by_alias=True, exclude={"source_file"})
    out: dict[str, Any] = {}
    _flatten(data, "", out)
    return out


def diff(old: Config, new: Config) -> list[str]:
    """Sorted key paths whose value differs (added, removed or changed)."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def needs_restart(old: Config, new: Config, changed: Iterable[str]) -> list[str]:
    """The changed key paths that a running daemon cannot apply."""
    out = []
    for path in changed:
        if any(_under(path, p) for p in LIVE_PREFIXES):
            continue
        section = path.split(".", 1)[0]
        if section in LIVE_WHEN_PRESENT and getattr(old, section) is not None \
                and getattr(new, section) is not None:
            continue
        out.append(path)
    return out


def effective(old: Config, new: Config) -> Config:
    """`new` with every part that needs a restart kept as it runs (`old`): what the
    daemon actually works with after the reload, and what the next reload diffs."""
    gw = old.gateway.model_copy(update={"max_attempts": new.gateway.max_attempts})
    smtp = new.smtp if old.smtp is not None and new.smtp is not None else old.smtp
    return new.model_copy(update={"gateway": gw, "smsc": old.smsc, "mqtt": old.mqtt,
                                  "smtp": smtp, "email_replies": old.email_replies,
                                  "api": old.api})


def file_hash(path: str) -> str:
    """sha256 of the file's bytes, hex."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@dataclass
class ConfigState:
    """What /metrics says about the configuration in force."""

    sha256: str = ""
    loaded_at: float = field(default_factory=time.time)
    reloads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    restart_needed: list[str] = field(default_factory=list)

    @property
    def hash_number(self) -> int:
        """The first 52 bits of the hash: exact in a float64 gauge."""
        return int(self.sha256[:13], 16) if self.sha256 else 0
