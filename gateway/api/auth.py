"""Who is calling: `Authorization: Bearer <key>` checked against `api_keys`
(storage/apikeys.py), its scopes and its rate. 401 without a valid key, 403 outside
its scopes (or, in the handlers, its VMNs: `forbid_unless`), 429 with `Retry-After`
above its rate.

A key checked once (scrypt, in a thread: the loop never waits for it) is trusted for
`ApiContext.key_ttl` seconds (1 s); after that its row is read again, so that a
revocation, made by any instance or the CLI, stops it everywhere within that time.
The rate is a token bucket per key and instance (a burst of one second's worth)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.context import ApiContext
from gateway.api.problems import Problem, retry_after
from gateway.storage import apikeys
from gateway.storage.apikeys import ApiKey, StoredKey

__all__ = ["ApiKey", "Authenticator", "forbid_unless", "require"]

_CACHE_MAX = 10_000
_bearer = HTTPBearer(auto_error=False, description="an API key from `vmn-gateway apikey create`")


@dataclass(slots=True)
class _Checked:
    stored: StoredKey
    at: float  # monotonic time of the last read of its row


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="vmn-gateway"'})


class Authenticator:
    """Checks keys for one app (one instance); see the module docstring."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._checked: dict[bytes, _Checked] = {}
        self._buckets: dict[str, _Bucket] = {}
        # Checks under way, by key digest: the requests that come with a key while it
        # is being checked wait for that check. Without it the first second of a
        # client's load (and each new key) ran one scrypt per request at once, each
        # 16 MiB and tens of ms of CPU, in the middle of whatever the MO path was doing.
        self._checking: dict[bytes, asyncio.Future[ApiKey]] = {}

    async def _read(self, key_id: str) -> StoredKey | None:
        return await self.ctx.store.read(apikeys.lookup, key_id)

    async def authenticate(self, presented: str) -> ApiKey:
        digest = hashlib.sha256(presented.encode()).digest()
        now = time.monotonic()
        hit = self._checked.get(digest)
        if hit is not None and now - hit.at < self.ctx.key_ttl:
            return hit.stored.key
        check = self._checking.get(digest)
        if check is None:
            check = asyncio.ensure_future(self._check(presented, digest, hit))
            self._checking[digest] = check
            check.add_done_callback(lambda done: self._settled(digest, done))
        # shielded: a request that goes away does not cancel the others' check
        return await asyncio.shield(check)

    def _settled(self, digest: bytes, done: asyncio.Future[ApiKey]) -> None:
        self._checking.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: a 401 whose requests all went away is not logged

    async def _check(self, presented: str, digest: bytes, hit: _Checked | None) -> ApiKey:
        key_id = apikeys.key_id_of(presented)
        if key_id is None:
            raise _unauthorized("not an API key of this gateway")
        stored = await self._read(key_id)
        if stored is None:
            self._checked.pop(digest, None)
            raise _unauthorized("unknown or revoked API key")
        # The same row as when this key was last checked: no need to hash it again.
        same = hit is not None and hit.stored.hash == stored.hash
        if not same and not await asyncio.to_thread(apikeys.matches, presented, stored):
            raise _unauthorized("unknown or revoked API key")
        if len(self._checked) >= _CACHE_MAX:
            self._checked.clear()
        self._checked[digest] = _Checked(stored, time.monotonic())
        return stored.key

    def take(self, key: ApiKey) -> None:
        """One request of `key`'s rate, or 429 with when to retry."""
        if key.rate is None:
            return
        now = time.monotonic()
        burst = max(1.0, key.rate)
        b = self._buckets.get(key.name)
        if b is None:
            b = self._buckets[key.name] = _Bucket(burst, now)
        b.tokens = min(burst, b.tokens + (now - b.at) * key.rate)
        b.at = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / key.rate
            raise Problem(429, f"over this key's rate of {key.rate:g} requests per second",
                          headers={"Retry-After": retry_after(wait)})
        b.tokens -= 1.0


async def authenticator(request: Request) -> Authenticator:
    auth = request.app.state.auth
    assert isinstance(auth, Authenticator)
    return auth


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency: the calling key, which must hold `scope`."""
    if scope not in apikeys.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        auth: Authenticator = Depends(authenticator),  # noqa: B008
    ) -> ApiKey:
        if credentials is None:
            raise _unauthorized("send the API key as Authorization: Bearer <key>")
        key = await auth.authenticate(credentials.credentials)
        if scope not in key.scopes:
            raise Problem(403, f"the key {key.name!r} does not have the {scope!r} scope")
        auth.take(key)
        return key

    dependency.__name__ = f"require_{scope}"
    return dependency


def forbid_unless(key: ApiKey, vmn: str) -> None:
    """403 unless `key` may use `vmn` (its VMN list is empty or names it)."""
    if not key.may_use(vmn):
        raise Problem(403, f"the key {key.name!r} may not use the VMN {vmn}")

