"""API key checks: a key's scrypt runs once however many requests bring it at once
(the first second of a client's load ran one per request, in the MO path's time)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_durability import _intake

from gateway.api.auth import Authenticator
from gateway.api.context import ApiContext
from gateway.api.problems import Problem
from gateway.config import parse_config
from gateway.storage import apikeys

CONFIG: dict[str, Any] = {"smsc": [{"name": "sim", "system_id": "test"}],
                          "api": {"listen": "127.0.0.1:8080"}}


async def test_a_key_is_hashed_once_for_requests_that_come_together(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, store, _ = await _intake(db_url, max_commits=1)
    try:
        key = await store.transaction(apikeys.create, name="herd", scopes=frozenset({"read"}),
                                      now=time.time())
        hashed: list[str] = []
        real = apikeys.matches

        def matches(presented: str, stored: apikeys.StoredKey) -> bool:
            hashed.append(presented)
            return real(presented, stored)

        monkeypatch.setattr(apikeys, "matches", matches)
        cfg = parse_config(CONFIG, file="auth.toml", env={})
        auth = Authenticator(ApiContext(config=lambda: cfg, store=store))
        got = await asyncio.gather(*(auth.authenticate(key) for _ in range(20)))
        assert {k.name for k in got} == {"herd"}
        assert len(hashed) == 1, f"{len(hashed)} scrypt runs for one key"
        # a wrong key of the same id: refused, once for all its requests, and not cached
        wrong = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
        results = await asyncio.gather(*(auth.authenticate(wrong) for _ in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, Problem) and r.status == 401 for r in results)
        assert len(hashed) == 2
        with pytest.raises(Problem):
            await auth.authenticate(wrong)
        assert len(hashed) == 3
        # a request that goes away does not cancel the check the others wait for
        ctx2 = Authenticator(ApiContext(config=lambda: cfg, store=store))
        first = asyncio.ensure_future(ctx2.authenticate(key))
        second = asyncio.ensure_future(ctx2.authenticate(key))
        await asyncio.sleep(0)
        first.cancel()
        assert (await second).name == "herd"
    finally:
        await store.close()
        await engine.dispose()
