"""The webhook action: deliver an event (SPEC §4) to an HTTP endpoint (SPEC §5).

`job.target` is either a plain ``http(s)://`` URL (a configuration's ``webhook =``
trigger URL: POST JSON, unsigned, ``default_timeout``), ``"profile:NAME"`` (the
``[callback_profiles.NAME]`` of the *current* configuration, read through the
``profiles()`` callable on every run, so a reload takes effect at once), or
``"callback:URL"`` (an MT's ``callback_url`` given to the HTTP API: POST JSON, signed
with ``[api] callback_secret`` read through ``callback_secret()`` on every run).

Requests
    POST: the body is ``json.dumps(payload, separators=(",", ":"), ensure_ascii=False)``
    in UTF-8, sent with ``Content-Type: application/json`` and ``X-VMN-Event-Id``.

    GET: the profile URL's ``{field}`` placeholders are replaced by
    ``urllib.parse.quote(str(payload[field]), safe="")`` (a missing field or ``None``
    gives ""); there is no body and no Content-Type. The rest of the URL is normalized
    (percent-encoded) once, and the filled URL is then sent verbatim: its path and
    query are exactly the request target on the wire.

Signature (profiles with ``secret``/``secret_env`` only)
    ``X-VMN-Signature: sha256=<hex HMAC-SHA256>`` keyed with the secret (UTF-8) over

    * POST: the raw request body (the bytes sent);
    * GET: the final URL string, UTF-8 (``scheme://host[:port]/path?query``, exactly as
      the gateway built it; the receiver recomputes it from the configured URL and the
      request target it received). There is no body to sign, and signing the URL
      authenticates the payload fields it carries.

Headers precedence
    ``User-Agent: vmn-gateway``, ``Accept: */*`` and ``Authorization: Basic`` (from
    ``user:password@`` in the URL, latin-1, else UTF-8) < the profile's ``headers``
    (names compared case-insensitively) < the gateway's own headers.
    Custom headers named (case-insensitively) ``Content-Type``, ``Content-Length``,
    ``Transfer-Encoding``, ``X-VMN-Event-Id`` or ``X-VMN-Signature`` are ignored: a
    profile cannot forge the event id or the signature, nor break the framing. Other
    ``X-VMN-*`` names are allowed. The ignored names are logged once per profile.

Outcome (the outbox does retries, backoff and dead-lettering)
    2xx -> OK. 5xx, 408, 429 -> RETRY. Other 4xx -> FAIL (RETRY with ``retry_on_4xx``).
    3xx -> FAIL: redirects are never followed (a moved endpoint is a configuration
    problem; following it would also re-send the signed payload to another host).
    Timeouts (``timeout`` covers waiting for a pooled connection, connect, send and
    reading the response) and connection errors -> RETRY; so is an ``https`` certificate
    that does not verify against the system's CAs for the URL's host (SNI is sent), and
    a response that is not valid HTTP/1.1. An unknown profile, an invalid URL or an
    unserializable payload -> FAIL. `run` never raises (cancellation excepted).
    ``Result.detail`` is short: ``"HTTP 503"`` (plus up to 80 characters of the response
    body for non-2xx), ``"timeout after 10.0s"``, ``"connection refused: host:port"``...

Performance
    Requests go through `gateway.http.pool.HttpPool` (a keep-alive HTTP/1.1 pool on
    ``asyncio.Protocol`` with the httptools parser, created lazily on the running loop),
    at most ``concurrency`` connections per host: ~3x less main-thread CPU per delivery
    than aiohttp (docs/PERFORMANCE.md). Per target (plain URL or profile object) the
    origin, the request head (request line, ``Host``, ``User-Agent``, ``Accept``, the
    profile's headers, ``Content-Type``), the timeout and the HMAC key state are prepared
    once; a request appends ``X-VMN-Event-Id``, the signature, ``Content-Length`` and
    the body. A reload (new profile objects) re-prepares. At most 64 KiB of a response
    body is read; past it the connection is dropped instead of reused. A server that
    closed an idle keep-alive connection gets the request again once, on a new
    connection, when no byte of a response had come back (see the pool).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import quote

import structlog
from yarl import URL

from gateway.actions.base import Job, Outcome, Result
from gateway.actions.kind import Kind, Runtime
from gateway.config import CallbackProfile, HttpMethod
from gateway.http.errors import (
    ConnectError,
    Disconnected,
    HttpError,
    HttpTimeout,
    InvalidURL,
    ProtocolError,
)
from gateway.http.pool import HttpPool, Origin, build_head, split_url
from gateway.http.response import Response
from gateway.model import ActionKind, JobKind

if TYPE_CHECKING:
    from gateway.actions.base import Action
    from gateway.actions.emitter import Emitter
    from gateway.config import ActionConfig, Config

__all__ = ["CALLBACK_PREFIX", "PROFILE_PREFIX", "WebhookAction"]

log = structlog.get_logger("gateway.actions.webhook")

PROFILE_PREFIX: Final = "profile:"
CALLBACK_PREFIX: Final = "callback:"
USER_AGENT: Final = "vmn-gateway"
BODY_LIMIT: Final = 64 * 1024  # read at most this much of a response (then drop the conn)
SNIPPET_CHARS: Final = 80  # of a non-2xx response body, in Result.detail
DETAIL_MAX: Final = 200
_PLAIN_CACHE_MAX: Final = 1024

_RESERVED_HEADERS: Final = frozenset(
    {"content-type", "content-length", "transfer-encoding", "x-vmn-event-id", "x-vmn-signature"}
)
_PLACEHOLDER_RE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RETRY_4XX: Final = frozenset({408, 429})


@dataclass(slots=True, kw_only=True)
class _Target:
    """Everything about a target that does not depend on the job."""

    source: CallbackProfile | str  # the profile object (identity-checked) or the plain URL
    method: str
    origin: Origin | None  # POST: where to send, parsed once
    head: bytes  # POST: the request head without the per-request headers
    template: tuple[str | int, ...]  # GET: literal parts and field indexes
    fields: tuple[str, ...]  # GET: placeholder names, by index
    headers: dict[str, str]  # the job-independent headers (GET: the head is per request)
    mac: hmac.HMAC | None  # keyed with the secret, copied per request
    timeout_s: float
    retry_on_4xx: bool


def _split_template(url: str) -> tuple[tuple[str | int, ...], tuple[str, ...]]:
    """Normalize a GET profile URL around its placeholders and split it.

    Placeholders are swapped for lowercase alphanumeric tokens (which URL normalization
    leaves alone), the URL is normalized by yarl (a #fragment, never sent, is dropped),
    then cut back at the tokens.
    """
    fields: list[str] = []
    prefix = "vmnph"
    while prefix in url.lower():
        prefix += "x"

    def token(m: re.Match[str]) -> str:
        fields.append(m[1])
        return f"{prefix}{len(fields) - 1}z"

    normalized = str(URL(_PLACEHOLDER_RE.sub(token, url)).with_fragment(None))
    parts: list[str | int] = []
    pos = 0
    for m in re.finditer(rf"{prefix}(\d+)z", normalized):
        if m.start() > pos:
            parts.append(normalized[pos : m.start()])
        parts.append(int(m[1]))
        pos = m.end()
    if pos < len(normalized):
        parts.append(normalized[pos:])
    return tuple(parts), tuple(fields)


def _fill(target: _Target, payload: Mapping[str, Any]) -> str:
    values = []
    for name in target.fields:
        value = payload.get(name)
        values.append("" if value is None else quote(str(value), safe=""))
    return "".join(p if isinstance(p, str) else values[p] for p in target.template)


def _basic_auth(url: URL) -> str | None:
    """``Authorization: Basic`` for credentials in the URL (as aiohttp sent them)."""
    if url.raw_user is None and url.raw_password is None:
        return None
    credentials = f"{url.user or ''}:{url.password or ''}"
    try:
        raw = credentials.encode("latin-1")
    except UnicodeEncodeError:
        raw = credentials.encode()
    return "Basic " + base64.b64encode(raw).decode()


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_detail(exc: HttpError) -> str:
    if isinstance(exc, ConnectError):
        where = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return f"DNS lookup failed: {exc.host}"
        if isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED:
            return f"connection refused: {where}"
        if isinstance(os_error, ssl.SSLError):
            return f"TLS error with {where}: {os_error}"
        return f"cannot connect to {where}: {os_error.strerror or os_error}"
    if isinstance(exc, Disconnected):
        return "server disconnected"
    if isinstance(exc, ProtocolError):
        return f"invalid response: {exc}"
    return f"connection error: {type(exc).__name__}: {exc}"


class WebhookAction:
    """POST/GET events to webhook URLs and callback profiles (see the module docstring)."""

    kind: ClassVar[str] = JobKind.WEBHOOK

    def __init__(
        self,
        profiles: Callable[[], Mapping[str, CallbackProfile]],
        *,
        concurrency: int = 64,
        default_timeout: float = 10.0,
        callback_secret: Callable[[], str | None] = lambda: None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if default_timeout <= 0:
            raise ValueError("default_timeout must be > 0")
        self.concurrency = concurrency
        self._profiles = profiles
        self._default_timeout = float(default_timeout)
        self._pool: HttpPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_profile: dict[str, _Target] = {}
        self._by_url: dict[str, _Target] = {}
        self._callback_secret = callback_secret
        # callback URL -> (the secret it was prepared with, target)
        self._by_callback: dict[str, tuple[str | None, _Target]] = {}

    # ------------------------------------------------------------------ pool

    def _get_pool(self) -> HttpPool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.closed or self._loop is not loop:
            pool = HttpPool(limit_per_host=self.concurrency, body_limit=BODY_LIMIT)
            self._pool, self._loop = pool, loop
        return pool

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None and not pool.closed:
            await pool.close()

    # ------------------------------------------------------------------ targets

    def _prepare(self, source: CallbackProfile | str, name: str | None) -> _Target:
        headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if isinstance(source, str):
            url, method, secret = source, HttpMethod.POST, None
            timeout_s, retry_on_4xx = self._default_timeout, False
        else:
            url, method, secret = source.url, source.method, source.secret_value()
            timeout_s, retry_on_4xx = float(source.timeout), source.retry_on_4xx
            ignored = []
            for key, value in source.headers.items():
                if key.lower() in _RESERVED_HEADERS:
                    ignored.append(key)
                else:
                    for ours in [k for k in headers if k.lower() == key.lower()]:
                        del headers[ours]  # the profile's value replaces our default
                    headers[key] = value
            if ignored:
                log.warning("webhook_headers_ignored", profile=name, headers=ignored)
        template: tuple[str | int, ...] = ()
        fields: tuple[str, ...] = ()
        origin: Origin | None = None
        head = b""
        if method is HttpMethod.GET:
            template, fields = _split_template(url)
            build_head("GET", "/", "h", headers)  # invalid header names/values fail here
        else:
            headers["Content-Type"] = "application/json"
            parsed = URL(url)
            origin, request_target, host = split_url(parsed)
            auth = _basic_auth(parsed)
            if auth is not None and not any(k.lower() == "authorization" for k in headers):
                headers["Authorization"] = auth
            head = build_head("POST", request_target, host, headers)
        return _Target(
            source=source,
            method=method.value,
            origin=origin,
            head=head,
            template=template,
            fields=fields,
            headers=headers,
            mac=None if secret is None else hmac.new(secret.encode(), digestmod=hashlib.sha256),
            timeout_s=timeout_s,
            retry_on_4xx=retry_on_4xx,
        )

    def _target(self, spec: str) -> _Target | Result:
        if spec.startswith(CALLBACK_PREFIX):
            url, secret = spec[len(CALLBACK_PREFIX) :], self._callback_secret()
            cached = self._by_callback.get(url)
            if cached is None or cached[0] != secret:
                if len(self._by_callback) >= _PLAIN_CACHE_MAX:
                    self._by_callback.clear()
                made = CallbackProfile(url=url, secret=secret,
                                       timeout=self._default_timeout)
                cached = self._by_callback[url] = (secret, self._prepare(made, None))
            return cached[1]
        if spec.startswith(PROFILE_PREFIX):
            name = spec[len(PROFILE_PREFIX) :]
            profile = self._profiles().get(name)
            if profile is None:
                return Result(outcome=Outcome.FAIL, detail=f"unknown callback profile {name!r}")
            target = self._by_profile.get(name)
            if target is None or target.source is not profile:
                target = self._by_profile[name] = self._prepare(profile, name)
            return target
        target = self._by_url.get(spec)
        if target is None:
            if len(self._by_url) >= _PLAIN_CACHE_MAX:
                self._by_url.clear()
            target = self._by_url[spec] = self._prepare(spec, None)
        return target

    # ------------------------------------------------------------------ run

    async def run(self, job: Job) -> Result:
        try:
            prepared = self._target(job.target)
            if isinstance(prepared, Result):
                return prepared
            target = prepared
            event_id = job.event_id
            if "\r" in event_id or "\n" in event_id:
                raise ValueError(f"invalid event id {event_id!r}")
            if target.origin is not None:  # POST
                origin = target.origin
                body = job.body()
                extra = b"X-VMN-Event-Id: %b\r\n" % event_id.encode()
                if target.mac is not None:
                    mac = target.mac.copy()
                    mac.update(body)
                    extra += b"X-VMN-Signature: sha256=%b\r\n" % mac.hexdigest().encode()
                data = b"%b%bContent-Length: %d\r\n\r\n%b" % (
                    target.head,
                    extra,
                    len(body),
                    body,
                )
            else:  # GET: the URL carries the payload; no body
                text = _fill(target, job.payload)
                parsed = URL(text, encoded=True)
                origin, request_target, host = split_url(parsed)
                headers = target.headers.copy()
                auth = _basic_auth(parsed)
                if auth is not None and not any(k.lower() == "authorization" for k in headers):
                    headers["Authorization"] = auth
                headers["X-VMN-Event-Id"] = event_id
                if target.mac is not None:
                    mac = target.mac.copy()
                    mac.update(text.encode())
                    headers["X-VMN-Signature"] = "sha256=" + mac.hexdigest()
                data = build_head("GET", request_target, host, headers) + b"\r\n"
        except InvalidURL as exc:
            return Result(outcome=Outcome.FAIL, detail=_one_line(f"invalid URL: {exc}", DETAIL_MAX))
        except Exception as exc:  # a bad URL or payload: retrying cannot help
            return Result(
                outcome=Outcome.FAIL, detail=_one_line(f"{type(exc).__name__}: {exc}", DETAIL_MAX)
            )
        return await self._send(target, origin, data)

    async def _send(self, target: _Target, origin: Origin, data: bytes) -> Result:
        start = time.perf_counter()
        try:
            response = await self._get_pool().request(origin, data, target.timeout_s)
        except HttpTimeout:
            return Result(
                outcome=Outcome.RETRY,
                detail=f"timeout after {target.timeout_s}s",
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )
        except HttpError as exc:
            return Result(
                outcome=Outcome.RETRY,
                detail=_one_line(_error_detail(exc), DETAIL_MAX),
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )
        except Exception as exc:  # a bug of ours or of the platform: never raise from run
            return Result(
                outcome=Outcome.FAIL,
                detail=_one_line(f"{type(exc).__name__}: {exc}", DETAIL_MAX),
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )
        return _classify(target, response, (time.perf_counter() - start) * 1000.0)


def _classify(target: _Target, response: Response, latency: float) -> Result:
    status = response.status
    if 200 <= status < 300:
        return Result(
            outcome=Outcome.OK, detail=f"HTTP {status}", status=status, latency_ms=latency
        )
    if 300 <= status < 400:
        detail = f"HTTP {status} redirect not followed"
        location = response.headers.get("location", "")
        if location:
            detail += f" (Location: {location})"
        return Result(
            outcome=Outcome.FAIL,
            detail=_one_line(detail, DETAIL_MAX),
            status=status,
            latency_ms=latency,
        )
    if status >= 500 or status in _RETRY_4XX or (status >= 400 and target.retry_on_4xx):
        outcome = Outcome.RETRY
    else:
        outcome = Outcome.FAIL  # other 4xx, or a 1xx as a final answer
    detail = f"HTTP {status}"
    snippet = response.body[: SNIPPET_CHARS * 4]
    if snippet and "content-encoding" not in response.headers:
        text = _one_line(snippet.decode("utf-8", "replace"), SNIPPET_CHARS)
        if text:
            detail += f": {text}"
    return Result(outcome=outcome, detail=detail, status=status, latency_ms=latency)


# --- the webhook kind (gateway/actions/registry.py) ------------------------------------
def target(action: ActionConfig | None) -> str | None:
    """The webhook of a configuration: its URL, or "profile:NAME"; None when it has none.
    Its MO's event goes there, then the status events of the MTs it sent."""
    if action is None:
        return None
    if action.webhook:
        return action.webhook
    if action.callback_profile:
        return f"profile:{action.callback_profile}"
    return None


def _attempts(emitter: Emitter, target: str) -> int:
    if target.startswith("profile:"):
        return emitter.profile_attempts.get(target[8:], emitter.max_attempts)
    if target.startswith("callback:"):  # an API MT's callback_url
        return emitter.callback_attempts
    return emitter.max_attempts


def _runner(_cfg: Config, rt: Runtime) -> Action:
    def secret() -> str | None:
        api = rt.config().api
        return api.callback_secret_value() if api else None

    return WebhookAction(lambda: rt.config().callback_profiles, callback_secret=secret)


# No step of its own: fan-out sends the MO's event to `target` first, with its MQTT job.
KIND = Kind(kind=ActionKind.WEBHOOK, fields=("webhook", "callback_profile"),
            enabled=lambda a: a.webhook is not None or a.callback_profile is not None,
            label=lambda a: (f"webhook({a.callback_profile})" if a.callback_profile is not None
                             else "webhook"),
            job=JobKind.WEBHOOK, max_attempts=_attempts, runner=_runner)
