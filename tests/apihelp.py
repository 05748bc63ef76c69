"""Helpers for HTTP API tests: a real daemon (subprocess, bound to the simulator) with
`[api] listen` on a free loopback port, API keys made with the real CLI, and a small
blocking HTTP client (urllib: no client library in the way of what goes on the wire).

    def test_x(api_gateway):
        g = api_gateway()                       # daemon + simulator + [api], ready
        key = g.key("app", scope="send,read")   # `vmn-gateway apikey create`
        r = g.call("POST", "/v1/messages", key=key, json={...})
        assert r.status == 202, r.text

`api_gateway(numbers=..., extra=..., api_extra=..., **smsc)` takes what
`conftest.gateway_config` takes; `extra` is appended to the file (other sections),
`api_extra` goes into the `[api]` table. `launch(make_gateway, sim, db, ...)` is the
same for a test that needs its own simulator or database; `g.mo(...)` injects an MO
through the simulator and checks it was acknowledged; `hooks` is a webhook receiver
(peers.HttpRecorder). Test modules load this file with `pytest_plugins = ["apihelp"]`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import Gateway, gateway_config, wait_for
from peers import HttpRecorder, free_port
from simctl import Simulator

__all__ = ["ApiGateway", "Response", "api_section", "cli", "free_port", "launch", "request"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


def request(base: str, method: str, path: str, *, key: str | None = None,
            json_body: Any = None, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Response:
    """One HTTP request; any status comes back as a Response (never raises for 4xx/5xx)."""
    h = dict(headers or {})
    data = body
    if json_body is not None:
        data = json.dumps(json_body).encode()
        h.setdefault("Content-Type", "application/json")
    if key is not None:
        h.setdefault("Authorization", f"Bearer {key}")
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                            resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


@dataclass
class ApiGateway:
    gw: Gateway
    sim: Simulator
    port: int
    db: str
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key(self, name: str, scope: str = "send,read,manage", vmns: tuple[str, ...] = (),
            rate: float | None = None) -> str:
        """`vmn-gateway apikey create` through the CLI; returns the key it printed."""
        args = ["apikey", "create", "-c", str(self.gw.config_path), name, "--scope", scope]
        for v in vmns:
            args += ["--vmn", v]
        if rate is not None:
            args += ["--rate", str(rate)]
        res = cli(self.gw, *args)
        key = res.stdout.strip()
        assert key.startswith("vmn_"), res
        self.keys[name] = key
        return key

    def revoke(self, name: str) -> None:
        cli(self.gw, "apikey", "revoke", "-c", str(self.gw.config_path), name)

    def call(self, method: str, path: str, *, key: str | None = None, json: Any = None,
             body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Response:
        return request(self.base, method, path, key=key, json_body=json, body=body,
                       headers=headers)

    def mo(self, source: str, destination: str, text: str) -> None:
        """One MO through the simulator; the daemon must acknowledge it (ESME_ROK)."""
        res = self.sim.mo(source=source, destination=destination, text=text)
        assert res["statuses"] == [0], res

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            try:
                return request(self.base, "GET", "/openapi.json", timeout=2).status == 200
            except OSError:
                assert self.gw.running, self.gw.log_path.read_text()[-3000:]
                return False

        wait_for(up, timeout=timeout, what="the API to answer")


def cli(gw: Gateway, *args: str) -> Any:
    import subprocess
    import sys

    from conftest import REPO

    res = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise AssertionError(f"cli {args} failed: {res.stderr}")
    return res


def api_section(port: int, extra: str = "") -> str:
    return f'\n[api]\nlisten = "127.0.0.1:{port}"\n{extra}\n'


def launch(make_gateway: Callable[..., Gateway], sim: Simulator, db: str, *,
           numbers: str = "", extra: str = "", api_extra: str = "", bound: bool = True,
           **kw: Any) -> ApiGateway:
    """Start a daemon bound to `sim` with the API on a free port; wait until the API
    answers and (unless `bound` is False) the bind is up. `kw` goes to gateway_config."""
    port = free_port()
    config = gateway_config(db=db, sim=sim, numbers=numbers, **kw)
    gw = make_gateway(config + api_section(port, api_extra) + extra)
    g = ApiGateway(gw, sim, port, db)
    g.wait_ready()
    if bound:
        sim.wait_bound(timeout=20)
    return g


@pytest.fixture
def api_gateway(sim: Simulator, db_url: str,
                make_gateway: Callable[..., Gateway]) -> Iterator[Callable[..., ApiGateway]]:
    """A factory: start a daemon with the API on a free port, wait until the bind and
    the API are up (`launch` with the test's simulator and database)."""
    def start(**kw: Any) -> ApiGateway:
        return launch(make_gateway, sim, db_url, **kw)

    yield start


@pytest.fixture
def hooks() -> Iterator[HttpRecorder]:
    """A webhook receiver on a free port (peers.HttpRecorder)."""
    with HttpRecorder() as h:
        yield h
