"""Numbers and keywords managed through the HTTP API: stored in the database, validated
like the file, merged with the file's numbers and applied live on every instance.

- `merge` (pure): the file's configuration plus the stored numbers. A VMN of the file
  shadows a stored one (the file wins, the API cannot change it); a stored number that
  the current file no longer accepts (e.g. its callback profile was removed) is left
  out and logged, never a reason to stop routing the others.
- `LiveNumbers`: the changes (validate with `config.parse_number`, then a
  compare-and-set write, gateway/storage/numbers.py), and the watcher that applies
  them. Every instance polls the version row every `interval` seconds; a change made
  in this process is applied before its request is answered. Applying builds the
  merged configuration in a thread and hands it to `install` (the daemon compiles the
  router off the event loop and swaps it in one assignment, as a SIGHUP reload does).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from gateway.config import (
    Config,
    NumberChecker,
    NumberConfig,
    NumberRejected,
    format_loc,
    normalize_keyword,
    parse_number,
)
from gateway.log import describe_error
from gateway.storage import numbers as rows
from gateway.storage.repo import Store

log = structlog.get_logger("gateway.dynnumbers")

Source = Literal["file", "api"]
# Compare-and-set attempts of one change before it gives up (each loses only to a
# change committed meanwhile, so this is reached only under a storm of writes).
ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Merged:
    """The configuration in force: the file's, with the stored numbers appended."""

    config: Config
    api_vmns: frozenset[str] = frozenset()
    # VMN -> why a stored number is not applied (shadowed by the file, or invalid).
    skipped: Mapping[str, str] = field(default_factory=dict)

    def source(self, vmn: str) -> Source:
        return "api" if vmn in self.api_vmns else "file"


def merge(file_cfg: Config, stored: Mapping[str, Mapping[str, Any]]) -> Merged:
    """`file_cfg` with the `stored` numbers (VMN -> JSON table) that it accepts, each
    validated against the file and the stored numbers before it (in VMN order)."""
    checker = NumberChecker(file_cfg)
    added: list[NumberConfig] = []
    skipped: dict[str, str] = {}
    file_vmns = {n.vmn for n in file_cfg.numbers}
    for vmn in sorted(stored):
        if vmn in file_vmns:
            skipped[vmn] = "defined in the configuration file, which wins"
            continue
        try:
            number = checker.check(stored[vmn])
        except NumberRejected as exc:
            skipped[vmn] = str(exc)
            continue
        if number.vmn != vmn:
            skipped[vmn] = f"stored as {vmn} but holds vmn {number.vmn}"
            continue
        checker.add(number)
        added.append(number)
    current = file_cfg.model_copy(update={"numbers": (*file_cfg.numbers, *added)}) \
        if added else file_cfg
    return Merged(current, frozenset(n.vmn for n in added), skipped)


def dump(number: NumberConfig) -> dict[str, Any]:
    """A number as the API's JSON (what was given; `keywords` for the keyword tables):
    validating it again gives the same number."""
    # warnings=False: pydantic warns of the JSON form of a datetime behind a
    # PlainValidator (`expires`) while writing it right (ISO-8601, checked by the tests).
    out: dict[str, Any] = number.model_dump(mode="json", by_alias=False, exclude_unset=True,
                                            warnings=False)
    out["vmn"] = number.vmn
    out["sender_id"] = number.sender_id
    return out


class NotFound(Exception):
    """No such number (or keyword)."""


class ReadOnly(Exception):
    """The number is defined in the configuration file."""


class Busy(Exception):
    """Other changes kept coming first (see ATTEMPTS)."""


class LiveNumbers:
    """The stored numbers of one instance: changes, and the watcher that applies them."""

    def __init__(self, store: Store, file_cfg: Config,
                 install: Callable[[Merged], Awaitable[None]], *,
                 interval: float = 0.5) -> None:
        self.store = store
        self.file_cfg = file_cfg
        self.interval = interval
        self._install = install
        self.version = -1
        self.stored: Mapping[str, Mapping[str, Any]] = {}
        self.merged = Merged(file_cfg)
        self._apply_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()

    # -- reading ----------------------------------------------------------------------
    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        async with self.store.reader.connect() as conn:
            return await conn.run_sync(fn)

    def numbers(self) -> list[tuple[NumberConfig, Source]]:
        """Every number in force, the file's first."""
        merged = self.merged
        return [(n, merged.source(n.vmn)) for n in merged.config.numbers]

    def get(self, vmn: str) -> tuple[NumberConfig, Source]:
        merged = self.merged
        number = merged.config.number(vmn)
        if number is None:
            raise NotFound(f"the number {vmn} is not configured")
        return number, merged.source(vmn)

    # -- applying ---------------------------------------------------------------------
    async def load(self) -> Merged:
        """At start-up: read the stored numbers and merge them (nothing installed)."""
        snap: rows.Snapshot = await self._read(rows.snapshot)
        self.version, self.stored = snap.version, snap.numbers
        self.merged = await asyncio.to_thread(self._merge, self.file_cfg, self.stored)
        return self.merged

    async def rebuild(self, file_cfg: Config | None = None) -> Merged:
        """Merge the latest file configuration (a reload passes it) with the latest
        stored numbers and install the result. Serialized: whoever runs last read
        both inputs after every earlier change, so no change is lost to a race."""
        async with self._apply_lock:
            if file_cfg is not None:
                self.file_cfg = file_cfg
            merged = await asyncio.to_thread(self._merge, self.file_cfg, self.stored)
            await self._install(merged)
            self.merged = merged
            return merged

    @staticmethod
    def _merge(file_cfg: Config, stored: Mapping[str, Mapping[str, Any]]) -> Merged:
        merged = merge(file_cfg, stored)
        for vmn, why in merged.skipped.items():
            log.warning("numbers.skipped", vmn=vmn, reason=why)
        return merged

    async def refresh(self) -> bool:
        """Apply the stored numbers if their version moved; True when it did."""
        async with self._refresh_lock:
            at: int = await self._read(rows.version)
            if at == self.version:
                return False
            snap: rows.Snapshot = await self._read(rows.snapshot)
            self.stored = snap.numbers
            merged = await self.rebuild()
            self.version = snap.version  # only once applied: else tried again next turn
            log.info("numbers.applied", version=snap.version, stored=len(snap.numbers),
                     applied=len(merged.api_vmns))
            return True

    async def watch(self) -> None:
        """Poll the version (a cheap one-row read) and apply what changed; a database
        that is away only delays the next change."""
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:
                if not failing:  # once per outage, not twice a second
                    log.warning("numbers.refresh_failed", error=describe_error(exc))
                failing = True
            else:
                if failing:
                    log.info("numbers.refresh_recovered")
                failing = False

    # -- changing ---------------------------------------------------------------------
    async def put(self, vmn: str, body: Mapping[str, Any]) -> tuple[NumberConfig, bool]:
        """Create or replace the stored number `vmn` from its JSON table; (the number,
        created?). Raises ReadOnly, NumberRejected, Busy."""
        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any]:
            data = {k: v for k, v in body.items() if k != "source"}  # as GET shows it
            data.setdefault("vmn", vmn)
            # Not a string: the model says what it expects, as `check` would.
            if isinstance(data["vmn"], str) and data["vmn"] != vmn:
                raise NumberRejected([("vmn", f'expected "{vmn}", the VMN of the URL '
                                              f'(got {_shown(data["vmn"])})')])
            return data

        return await self._change(vmn, change, create=True)

    async def put_keyword(self, vmn: str, keyword: str,
                          body: Mapping[str, Any]) -> tuple[NumberConfig, bool]:
        """Create or replace one keyword (compared case-folded) of a stored number;
        (the number, created?). Key paths of errors in the keyword are relative to it
        (`reply`), others to the number (`default.poll`)."""
        key = normalize_keyword(keyword)
        created = False
        position = 0

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any]:
            nonlocal created, position
            if current is None:
                raise NotFound(_no_number(vmn))
            data = {k: v for k, v in body.items()}
            data.setdefault("keyword", keyword)
            given = data["keyword"]
            if not isinstance(given, str) or normalize_keyword(given) != key:
                raise NumberRejected([("keyword", f"expected {_shown(keyword)}, the keyword "
                                                  f"of the URL (got {_shown(given)})")])
            keywords = list(current.get("keywords", []))
            same = [i for i, k in enumerate(keywords)
                    if normalize_keyword(str(k.get("keyword", ""))) == key]
            created = not same
            position = same[0] if same else len(keywords)
            if same:
                keywords[position] = data
            else:
                keywords.append(data)
            return {**current, "keywords": keywords}

        try:
            number, _ = await self._change(vmn, change, create=False)
        except NumberRejected as exc:
            prefix = f"keywords[{position}]"
            raise NumberRejected([(_relative(p, prefix), e) for p, e in exc.errors]) from None
        return number, created

    async def delete(self, vmn: str) -> None:
        """Delete a stored number. Raises ReadOnly, NotFound, Busy."""
        for _ in range(ATTEMPTS):
            snap = await self._snapshot_for(vmn)
            if vmn not in snap.numbers:
                raise NotFound(_no_number(vmn))
            if await self.store.transaction(rows.remove, vmn, expect=snap.version):
                await self._applied()
                log.info("numbers.deleted", vmn=vmn)
                return
        raise Busy(vmn)

    async def delete_keyword(self, vmn: str, keyword: str) -> NumberConfig:
        """Delete one keyword of a stored number: its MOs fall back to the default."""
        key = normalize_keyword(keyword)

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any]:
            if current is None:
                raise NotFound(_no_number(vmn))
            keywords = list(current.get("keywords", []))
            kept = [k for k in keywords if normalize_keyword(str(k.get("keyword", ""))) != key]
            if len(kept) == len(keywords):
                raise NotFound(f"the number {vmn} has no keyword {_shown(keyword)}")
            return {**current, "keywords": kept}

        number, _ = await self._change(vmn, change, create=False)
        return number

    async def _snapshot_for(self, vmn: str) -> rows.Snapshot:
        snap: rows.Snapshot = await self._read(rows.snapshot)
        if self.file_cfg.number(vmn) is not None:
            raise ReadOnly(vmn)
        return snap

    async def _change(self, vmn: str,
                      change: Callable[[Mapping[str, Any] | None], Mapping[str, Any]], *,
                      create: bool) -> tuple[NumberConfig, bool]:
        """Read, change, validate against the file and the other stored numbers, and
        write if nothing changed meanwhile (else again, up to ATTEMPTS times)."""
        for _ in range(ATTEMPTS):
            snap = await self._snapshot_for(vmn)
            current = snap.numbers.get(vmn)
            data = change(current)
            others = {v: b for v, b in snap.numbers.items() if v != vmn}
            file_cfg = self.file_cfg
            number = await asyncio.to_thread(self._validate, file_cfg, others, data)
            if await self.store.transaction(rows.put, vmn, dump(number), expect=snap.version,
                                            now=time.time()):
                await self._applied()
                log.info("numbers.stored", vmn=vmn, created=current is None,
                         keywords=len(number.keywords))
                return number, current is None and create
        raise Busy(vmn)

    async def _applied(self) -> None:
        """After a committed change: apply it here before answering. The change is
        stored either way: if this fails, the watcher applies it on its next turn."""
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("numbers.refresh_failed", error=describe_error(exc))

    @staticmethod
    def _validate(file_cfg: Config, others: Mapping[str, Mapping[str, Any]],
                  data: Mapping[str, Any]) -> NumberConfig:
        bad = _not_text(data, ())
        if bad is not None:
            raise NumberRejected([(format_loc(bad), "expected text (got a lone UTF-16 "
                                                    "surrogate, which no SMS can carry)")])
        # The others as they are applied: one the file no longer accepts is no
        # reason to refuse this one.
        return parse_number(data, merge(file_cfg, others).config)


def _not_text(value: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    """Where in a JSON value a string (or key) is not Unicode text: JSON may carry a lone
    surrogate (TOML cannot), which neither an SMS nor the database can hold."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return loc
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = _not_text(k, (*loc, "[key]")) if isinstance(k, str) else None
            where = where or _not_text(v, (*loc, str(k)))
            if where is not None:
                return where
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            where = _not_text(v, (*loc, i))
            if where is not None:
                return where
    return None


def _no_number(vmn: str) -> str:
    return f"the number {vmn} is not stored through the API"


def _relative(path: str, prefix: str) -> str:
    """`keywords[2].reply` -> `reply` for prefix `keywords[2]`; other paths unchanged."""
    if path == prefix:
        return ""
    return path[len(prefix) + 1:] if path.startswith(prefix + ".") else path


def _shown(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
