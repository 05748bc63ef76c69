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
    ``User-Agent: vmn-gateway`` < the profile's ``headers`` < the gateway's own headers.
    Custom headers named (case-insensitively) ``Content-Type``, ``Content-Length``,
    ``Transfer-Encoding``, ``X-VMN-Event-Id`` or ``X-VMN-Signature`` are ignored: a
    profile cannot forge the event id or the signature, nor break the framing. Other
    ``X-VMN-*`` names are allowed. The ignored names are logged once per profile.

Outcome (the outbox does retries, backoff and dead-lettering)
    2xx -> OK. 5xx, 408, 429 -> RETRY. Other 4xx -> FAIL (RETRY with ``retry_on_4xx``).
    3xx -> FAIL: redirects are never followed (a moved endpoint is a configuration
    problem; following it would also re-send the signed payload to another host).
    Timeouts (``timeout`` covers connect, send and reading the response) and connection
    errors -> RETRY. An unknown profile, an invalid URL or an unserializable payload ->
    FAIL. `run` never raises (cancellation excepted). ``Result.detail`` is short:
    ``"HTTP 503"`` (plus up to 80 characters of the response body for non-2xx),
    ``"timeout after 10.0s"``, ``"connection refused: host:port"``...

Performance
    One `aiohttp.ClientSession` per action (created lazily on the running loop) with a
    keep-alive pool of ``concurrency`` connections, no cookie jar, no proxy lookup, no
    response decompression. Per target (plain URL or profile object) the URL, the
    header set, the timeout and the HMAC key state are prepared once and reused; a
    reload (new profile objects) re-prepares. The response body is read (up to 64 KiB,
    then discarded) so that the connection returns to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

from gateway.actions.base import Job, Outcome, Result
from gateway.config import CallbackProfile, HttpMethod

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
    url: URL | None  # POST: parsed once
    template: tuple[str | int, ...]  # GET: literal parts and field indexes
    fields: tuple[str, ...]  # GET: placeholder names, by index
    headers: dict[str, str]  # the job-independent headers
    mac: hmac.HMAC | None  # keyed with the secret, copied per request
    timeout: aiohttp.ClientTimeout
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


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _connect_detail(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed: {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED:
            return f"connection refused: {where}"
        return f"cannot connect to {where}: {os_error.strerror or os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return f"connection error: {type(exc).__name__}: {exc}"


class WebhookAction:
    """POST/GET events to webhook URLs and callback profiles (see the module docstring)."""

    kind: ClassVar[str] = "webhook"

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
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_profile: dict[str, _Target] = {}
        self._by_url: dict[str, _Target] = {}
        self._callback_secret = callback_secret
        # callback URL -> (the secret it was prepared with, target)
        self._by_callback: dict[str, tuple[str | None, _Target]] = {}

    # ------------------------------------------------------------------ session

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=self.concurrency,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
                trust_env=False,
            )
            self._session, self._loop = session, loop
        return session

    async def close(self) -> None:
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ targets

    def _prepare(self, source: CallbackProfile | str, name: str | None) -> _Target:
        headers: dict[str, str] = {"User-Agent": USER_AGENT}
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
                    headers[key] = value
            if ignored:
                log.warning("webhook_headers_ignored", profile=name, headers=ignored)
        template: tuple[str | int, ...] = ()
        fields: tuple[str, ...] = ()
        parsed: URL | None = None
        if method is HttpMethod.GET:
            template, fields = _split_template(url)
        else:
            parsed = URL(url)
            headers["Content-Type"] = "application/json"
        return _Target(
            source=source,
            method=method.value,
            url=parsed,
            template=template,
            fields=fields,
            headers=headers,
            mac=None if secret is None else hmac.new(secret.encode(), digestmod=hashlib.sha256),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
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
            headers = target.headers.copy()
            headers["X-VMN-Event-Id"] = job.event_id
            body: bytes | None
            if target.url is not None:
                body = job.body()
                url = target.url
                signed = body
            else:
                body = None
                text = _fill(target, job.payload)
                url = URL(text, encoded=True)
                signed = text.encode()
            if target.mac is not None:
                mac = target.mac.copy()
                mac.update(signed)
                headers["X-VMN-Signature"] = "sha256=" + mac.hexdigest()
        except Exception as exc:  # a bad URL or payload: retrying cannot help
            return Result(
                outcome=Outcome.FAIL, detail=_one_line(f"{type(exc).__name__}: {exc}", DETAIL_MAX)
            )
        return await self._send(target, url, body, headers)

    async def _send(
        self, target: _Target, url: URL, body: bytes | None, headers: dict[str, str]
    ) -> Result:
        status = 0
        snippet = b""
        encoded = False
        location = ""
        start = time.perf_counter()
        try:
            async with self._get_session().request(
                target.method,
                url,
                data=body,
                headers=headers,
                timeout=target.timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                encoded = "Content-Encoding" in resp.headers
                location = resp.headers.get("Location", "")
                # A failure while reading the body does not change the receiver's answer
                # (the status); the connection is just not reused.
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    snippet = await _drain(resp.content)
        except asyncio.CancelledError:
            raise
        except TimeoutError:  # also aiohttp.ServerTimeoutError (and it is an OSError too)
            latency = (time.perf_counter() - start) * 1000.0
            return Result(
                outcome=Outcome.RETRY,
                detail=f"timeout after {target.timeout_s}s",
                latency_ms=latency,
            )
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            return Result(outcome=Outcome.FAIL, detail=_one_line(f"invalid URL: {exc}", DETAIL_MAX))
        except (aiohttp.ClientConnectionError, OSError) as exc:
            latency = (time.perf_counter() - start) * 1000.0
            return Result(
                outcome=Outcome.RETRY,
                detail=_one_line(_connect_detail(exc), DETAIL_MAX),
                latency_ms=latency,
            )
        except aiohttp.ClientError as exc:  # e.g. a malformed response: the receiver's fault
            latency = (time.perf_counter() - start) * 1000.0
            return Result(
                outcome=Outcome.RETRY,
                detail=_one_line(f"{type(exc).__name__}: {exc}", DETAIL_MAX),
                latency_ms=latency,
            )
        except Exception as exc:
            latency = (time.perf_counter() - start) * 1000.0
            return Result(
                outcome=Outcome.FAIL,
                detail=_one_line(f"{type(exc).__name__}: {exc}", DETAIL_MAX),
                latency_ms=latency,
            )
        latency = (time.perf_counter() - start) * 1000.0
        if 200 <= status < 300:
            return Result(
                outcome=Outcome.OK, detail=f"HTTP {status}", status=status, latency_ms=latency
            )
        if 300 <= status < 400:
            detail = f"HTTP {status} redirect not followed"
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
        if snippet and not encoded:
            text = _one_line(snippet.decode("utf-8", "replace"), SNIPPET_CHARS)
            if text:
                detail += f": {text}"
        return Result(outcome=outcome, detail=detail, status=status, latency_ms=latency)


async def _drain(content: aiohttp.StreamReader) -> bytes:
    """Read the response body to its end (at most BODY_LIMIT); return its first bytes."""
    head = b""
    total = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return head
        if total < SNIPPET_CHARS * 4:
            head += chunk[: SNIPPET_CHARS * 4 - total]
        total += len(chunk)
        if total > BODY_LIMIT:
            return head  # too big: stop; releasing the response closes the connection
