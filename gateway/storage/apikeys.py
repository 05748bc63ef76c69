"""API keys (`api_keys`, SPEC §8): made, listed and revoked by `vmn-gateway apikey`,
checked by the HTTP API on every request (gateway/api/auth.py).

A key reads `vmn_<key_id>_<secret>`: `key_id` (12 hex digits) finds its row, the whole
key is checked against `hash`, an scrypt of it with the row's own salt. The key itself
is printed once by `apikey create` and never stored: a copy of the database does not
give anyone a working key. Blocking functions over a Connection, run inside
`Store.transaction` (writes) or a reader connection."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from gateway.storage.schema import api_keys

SCOPES = ("send", "read", "manage")
_KEY_RE = re.compile(r"vmn_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# scrypt cost: ~16 MiB and tens of ms per check; the API caches a checked key for at
# most a second (gateway/api/auth.py), so this is paid once per key, not per request.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class KeyRefused(ValueError):
    """A refused `apikey` command: the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """The calling key as the handlers see it: scopes, VMNs (empty: all), rate."""

    name: str
    scopes: frozenset[str]
    vmns: tuple[str, ...] = ()
    rate: float | None = None  # requests per second, per instance; None: no limit

    def may_use(self, vmn: str) -> bool:
        return not self.vmns or vmn in self.vmns


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKey:
    key: ApiKey
    key_id: str
    salt: str
    hash: str
    created_at: float
    revoked_at: float | None


def key_id_of(presented: str) -> str | None:
    """The `key_id` of a well-formed key, else None (then no database lookup is made)."""
    m = _KEY_RE.fullmatch(presented)
    return m[1] if m else None


def hash_key(presented: str, salt: str) -> str:
    return hashlib.scrypt(presented.encode(), salt=bytes.fromhex(salt), **_SCRYPT).hex()


def matches(presented: str, stored: StoredKey) -> bool:
    """Whether `presented` is the key of `stored` (slow: scrypt; run it off the loop)."""
    return hmac.compare_digest(hash_key(presented, stored.salt), stored.hash)


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise KeyRefused(f"name: expected 1-64 letters, digits, '_', '.', '-' (got {name!r})")
    return name


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(p.strip().lower() for p in parts if p.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise KeyRefused(f"--scope: expected a comma-separated list of {', '.join(SCOPES)} "
                        f"(got {','.join(parts) if not isinstance(text, str) else text!r})")
    return scopes


def _row_key(r: object) -> StoredKey:
    m = r._mapping  # type: ignore[attr-defined]
    return StoredKey(
        key=ApiKey(name=m["name"], scopes=frozenset(s for s in m["scopes"].split(",") if s),
                   vmns=tuple(v for v in m["vmns"].split(",") if v), rate=m["rate"]),
        key_id=m["key_id"], salt=m["salt"], hash=m["hash"], created_at=m["created_at"],
        revoked_at=m["revoked_at"])


def create(conn: Connection, *, name: str, scopes: frozenset[str], vmns: Iterable[str] = (),
           rate: float | None = None, now: float) -> str:
    """Store a new key and return it (the only time it exists in clear). A name in use
    by a live key is refused; a revoked key's name may be given to a new key."""
    check_name(name)
    if rate is not None and not rate > 0:
        raise KeyRefused(f"--rate: expected requests per second > 0 (got {rate:g})")
    existing = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.name == name)).first()
    if existing is not None and existing[0] is None:
        raise KeyRefused(f"a key named {name!r} exists (revoke it first, or pick another name)")
    key_id = secrets.token_hex(6)
    key = f"vmn_{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(16)
    values = {"key_id": key_id, "salt": salt, "hash": hash_key(key, salt),
              "scopes": ",".join(s for s in SCOPES if s in scopes),
              "vmns": ",".join(dict.fromkeys(vmns)), "rate": rate, "created_at": now,
              "revoked_at": None}
    if existing is not None:
        conn.execute(update(api_keys).where(api_keys.c.name == name).values(**values))
    else:
        conn.execute(api_keys.insert().values(name=name, **values))
    return key


def revoke(conn: Connection, name: str, *, now: float) -> bool:
    """Revoke the live key `name`; False when there is none."""
    res = conn.execute(update(api_keys).where(api_keys.c.name == name,
                                              api_keys.c.revoked_at.is_(None))
                       .values(revoked_at=now))
    return res.rowcount == 1


def list_keys(conn: Connection) -> list[StoredKey]:
    return [_row_key(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.name))]


def lookup(conn: Connection, key_id: str) -> StoredKey | None:
    """The live key whose public part is `key_id` (None: unknown or revoked)."""
    r = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id,
                                            api_keys.c.revoked_at.is_(None))).first()
    return None if r is None else _row_key(r)
