"""The rules that span several keys (unique names and VMNs, keyword and opt-word
clashes, callback profiles that exist, polls with one set of options), for the whole
file (`check_cross_references`) and for one number against the rest (`NumberChecker`,
the HTTP API's numbers). Each failure names the later of the places.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from gateway.config.errors import ConfigError, NumberRejected, describe_error, format_loc
from gateway.config.models import (
    ActionConfig,
    Config,
    NumberConfig,
    OptoutConfig,
    OptoutOverride,
)
from gateway.config.types import normalize_keyword, quote


def check_cross_references(config: Config, file: str) -> None:
    """Rules that span several keys; each failure names the later of the places."""

    def fail(path: str, expected: str) -> None:
        raise ConfigError(file, path, expected)

    smsc_names: dict[str, int] = {}
    for i, smsc in enumerate(config.smsc):
        if smsc.name in smsc_names:
            other = smsc_names[smsc.name]
            fail(f"smsc[{i}].name", f"duplicate name {quote(smsc.name)} (also smsc[{other}].name)")
        smsc_names[smsc.name] = i

    profiles = config.callback_profiles

    def check_profile(name: str | None, path: str) -> None:
        if name is not None and name not in profiles:
            defined = ", ".join(profiles) or "none"
            fail(path, f"unknown callback profile {quote(name)} (defined: {defined})")

    check_profile(config.optout.callback_profile, "optout.callback_profile")
    _check_optout_lists(config.optout, None, "optout", "optout", fail)

    vmns: dict[str, int] = {}
    polls: _Polls = {}
    cc = config.gateway.country_code
    for i, number in enumerate(config.numbers):
        base = f"number[{i}]"
        if number.vmn in vmns:
            other = vmns[number.vmn]
            fail(f"{base}.vmn", f"duplicate VMN {quote(number.vmn)} (also number[{other}].vmn)")
        vmns[number.vmn] = i
        _check_number(config, number, _Paths(base), polls, fail)

    # An incoming destination_addr of country_code + vmn matches vmn: it must not be
    # another configured VMN.
    for i, number in enumerate(config.numbers):
        if cc + number.vmn in vmns:
            other = vmns[cc + number.vmn]
            fail(
                f"number[{other}].vmn",
                f"ambiguous: equals number[{i}].vmn with country code {cc} prepended",
            )


# Poll name -> (normalized options, the key path of the first poll of that name).
_Polls = dict[str, tuple[tuple[str, ...], str]]


class _Paths:
    """Key paths inside one number: ``number[2].keyword[0].reply`` in the file, or
    ``keywords[0].reply`` in a number on its own (the JSON of the HTTP API)."""

    def __init__(self, base: str, keywords: str = "keyword") -> None:
        self.base = base
        self.keywords = keywords

    def __call__(self, path: str) -> str:
        return f"{self.base}.{path}" if self.base else path

    def keyword(self, j: int) -> str:
        return self(f"{self.keywords}[{j}]")


def _check_number(
    config: Config,
    number: NumberConfig,
    at: _Paths,
    polls: _Polls,
    fail: Callable[[str, str], None],
) -> None:
    """The cross-checks of one number against `config` (callback profiles, [smtp],
    opt words) and the polls seen so far (`polls`, filled in)."""
    profiles = config.callback_profiles

    def check_profile(name: str | None, path: str) -> None:
        if name is not None and name not in profiles:
            defined = ", ".join(profiles) or "none"
            fail(path, f"unknown callback profile {quote(name)} (defined: {defined})")

    if number.optout is not None:
        check_profile(number.optout.callback_profile, at("optout.callback_profile"))
        _check_optout_lists(
            config.optout_for(number), number.optout, "optout", at("optout"), fail
        )

    default = number.default
    if default.aliases:
        fail(at("default.aliases"), "not allowed in the default configuration")
    if "match" in default.model_fields_set:
        fail(at("default.match"), "not allowed in the default configuration")

    seen: dict[str, str] = {}
    for j, keyword in enumerate(number.keywords):
        kbase = at.keyword(j)
        names = [(f"{kbase}.keyword", keyword.keyword)]
        names += [(f"{kbase}.aliases[{k}]", a) for k, a in enumerate(keyword.aliases)]
        for path, text in names:
            key = normalize_keyword(text)
            if key in seen:
                fail(path, f"{quote(text)} clashes with {seen[key]}")
            seen[key] = path
    _check_shadowed_keywords(config, number, at("optout"), seen, fail)

    for cpath, action in _configurations(number, at):
        check_profile(action.callback_profile, f"{cpath}.callback_profile")
        if action.forward_email and config.smtp is None:
            fail(f"{cpath}.forward_email", "needs an [smtp] section to send mail")
        if action.poll is not None:
            options = tuple(normalize_keyword(o) for o in action.poll.options)
            earlier = polls.setdefault(action.poll.name, (options, f"{cpath}.poll"))
            if earlier[0] != options:
                fail(
                    f"{cpath}.poll.options",
                    f"poll {quote(action.poll.name)} has other options at {earlier[1]}",
                )


def _check_shadowed_keywords(
    config: Config,
    number: NumberConfig,
    optout_path: str,
    keywords: Mapping[str, str],
    fail: Callable[[str, str], None],
) -> None:
    """A keyword (or alias) that is also an opt-out/opt-in/help word: a message of that
    word alone is taken by the opt handling first (SPEC §3), so it would only fire with
    more text after it."""
    effective = config.optout_for(number)
    override = number.optout
    for field in ("stop_keywords", "start_keywords", "help_keywords"):
        own = override is not None and getattr(override, field) is not None
        list_base = optout_path if own else "optout"
        for k, word in enumerate(getattr(effective, field)):
            path = keywords.get(normalize_keyword(word))
            if path is not None:
                fail(
                    path,
                    f"{quote(word)} is an opt word ({list_base}.{field}[{k}]), which is "
                    "matched first: this keyword would never fire on its own "
                    "(choose another word or remove it from that list)",
                )


def _check_optout_lists(
    effective: OptoutConfig,
    override: OptoutOverride | None,
    global_base: str,
    override_base: str,
    fail: Callable[[str, str], None],
) -> None:
    """A word may be in only one of stop/start/help keywords."""
    owner: dict[str, str] = {}
    for field in ("stop_keywords", "start_keywords", "help_keywords"):
        base = override_base if override is not None and getattr(override, field) else global_base
        for k, word in enumerate(getattr(effective, field)):
            key = normalize_keyword(word)
            path = f"{base}.{field}[{k}]"
            if key in owner:
                fail(path, f"{quote(word)} is also in {owner[key]}")
            owner[key] = path


def parse_number(data: Mapping[str, Any], rest: Config) -> NumberConfig:
    """One ``[[number]]`` table given as JSON (its keyword tables under ``keywords``),
    validated by the models and cross-checks of the file against `rest`, the rest of
    the configuration (which must not hold this VMN): the callback profiles, [smtp],
    the opt words, the polls and the VMNs of the other numbers. Raises NumberRejected
    with every model error, or else the first cross-check that fails; key paths are
    relative to the number (``keywords[0].reply``) and the wording is `check`'s."""
    return NumberChecker(rest).check(data)


class NumberChecker:
    """`parse_number` for many numbers in a row: each checked against `rest` and the
    numbers `add`ed so far, without walking all of them again for each."""

    def __init__(self, rest: Config) -> None:
        self.rest = rest
        self._vmns: set[str] = set()
        self._polls: _Polls = {}
        for number in rest.numbers:
            self.add(number)

    def add(self, number: NumberConfig) -> None:
        """Count `number` in (its VMN and polls) for the numbers checked after it."""
        self._vmns.add(number.vmn)
        for path, action in _configurations(number, _Paths(f"number[{quote(number.vmn)}]")):
            if action.poll is not None:
                options = tuple(normalize_keyword(o) for o in action.poll.options)
                self._polls.setdefault(action.poll.name, (options, f"{path}.poll"))

    def check(self, data: Mapping[str, Any]) -> NumberConfig:
        """The number of `data`; NumberRejected if the file would not accept it."""
        cc = self.rest.gateway.country_code
        try:
            number = NumberConfig.model_validate(data, by_alias=False, by_name=True,
                                                 context={"country_code": cc})
        except ValidationError as e:
            errors = e.errors(include_url=False)
            # Described as if at numbers[0] of a file: the same words, suggestions included.
            raise NumberRejected([
                (format_loc(err["loc"]),
                 describe_error({**err, "loc": ("numbers", 0, *err["loc"])}, names=True))
                for err in errors
            ]) from None

        def fail(path: str, expected: str) -> None:
            raise NumberRejected([(path, " ".join(expected.split()))])

        vmn = number.vmn
        if vmn in self._vmns:
            fail("vmn", f"duplicate VMN {quote(vmn)} (configured already)")
        # An incoming destination_addr of country_code + vmn matches vmn (as in the file).
        for other in (cc + vmn, vmn[len(cc):] if vmn.startswith(cc) else None):
            if other in self._vmns:
                fail("vmn", f"ambiguous: equals number[{quote(other)}].vmn with country code "
                            f"{cc} prepended")
        _check_number(self.rest, number, _Paths("", "keywords"), dict(self._polls), fail)
        return number


def _configurations(number: NumberConfig, at: _Paths) -> list[tuple[str, ActionConfig]]:
    """The default and keyword configurations of `number` with their key paths."""
    return [(at("default"), number.default),
            *((at.keyword(j), k) for j, k in enumerate(number.keywords))]
