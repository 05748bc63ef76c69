"""What `vmn-gateway check` says about a bad file: `ConfigError` (file, key path,
expected), `NumberRejected` for a number given on its own (the HTTP API), and the
wording of a pydantic error in the file's terms (`format_loc`, `describe_error`),
with a "did you mean" for a misspelt key.

These are the texts users and tests read: keep them byte for byte.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from gateway.config.models import Config
from gateway.config.types import FrozenDict, quote


class ConfigError(Exception):
    """An invalid configuration file: which file, which key, what was expected.

    `str(err)` is one line: ``"{file}: {path}: {expected}"`` (``"{file}: {expected}"``
    when the problem has no key path, e.g. a TOML syntax error).
    """

    def __init__(self, file: str, path: str, expected: str) -> None:
        self.file = file
        self.path = path
        # The message must stay on one line whatever the offending value holds.
        self.expected = " ".join(expected.split())
        super().__init__(file, path, self.expected)

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.expected}"
        return f"{self.file}: {self.expected}"


class NumberRejected(ValueError):
    """A number given on its own (`parse_number`) that the file would not accept:
    ``errors`` are ``(key path, expected)`` pairs, paths relative to the number."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {e}" if p else e for p, e in self.errors))


# Secrets (each may come from the environment as `<key>_env = "VAR"`): an error
# never shows their value.
_SECRET_KEYS = frozenset({"password", "secret", "database", "callback_secret"})


def format_loc(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a key path of the file: ``number[2].keyword[0].reply``,
    ``callback_profiles."my crm".url``, ``callback_profiles (key)``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            path += f".{text}" if path else text
    return path


# Names from older versions or other products, and what the key is called here.
_RENAMED_KEYS = {"trigger_url": "webhook", "expiry_message": "expiry_reply"}


def _suggestion(loc: Sequence[int | str], names: bool = False) -> str:
    """`` (did you mean KEY?)`` for an unknown key at `loc`, or ""."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    key = loc[-1]
    known = _known_keys(loc[:-1], names)
    if not known:
        return ""
    if key in _RENAMED_KEYS and _RENAMED_KEYS[key] in known:
        match: str | None = _RENAMED_KEYS[key]
    elif key.lower() in known:
        match = key.lower()
    else:
        matches = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.7)
        match = matches[0] if matches else None
    return f" (did you mean {match}?)" if match else ""


def _key_name(name: str, field: FieldInfo, names: bool) -> str:
    return name if names else (field.alias or name)


def _known_keys(loc: Sequence[int | str], names: bool = False) -> list[str]:
    """The TOML keys of the table at `loc` in the file (by the models), [] if unknown;
    `names`: the field names (the API's JSON, e.g. `keywords`), not the TOML aliases."""
    current: Any = Config
    for part in loc:
        current = _unwrap_annotation(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {_key_name(n, f, names): f for n, f in current.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return []
            current = fields[part].annotation
            continue
        origin, args = get_origin(current), get_args(current)
        if origin is tuple and isinstance(part, int) and args:
            current = args[0]
        elif origin in (dict, FrozenDict) and isinstance(part, str) and len(args) == 2:
            current = args[1]
        else:
            return []
    current = _unwrap_annotation(current)
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    keys = [_key_name(n, f, names) for n, f in current.model_fields.items()]
    return [k for k in keys if k != "source_file"]


def _unwrap_annotation(tp: Any) -> Any:
    """`X` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


_MISSING_HINTS = {
    "default": "missing (exactly one default configuration per VMN)",
    "smsc": "missing (at least one [[smsc]] entry)",
}

_TYPE_NAMES = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "finite_number": "expected a finite number",
}


def describe_error(error: ErrorDetails, names: bool = False) -> str:
    """Turn one pydantic error into the `expected` text of a ConfigError."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    loc = error["loc"]
    last = loc[-1] if loc else ""
    if kind == "missing":
        return _MISSING_HINTS.get(str(last), "missing")
    if kind == "extra_forbidden":
        return "unknown key" + _suggestion(loc, names)
    if kind == "value_error":
        return str(ctx["error"])
    bounds: dict[str, Callable[[Any], str]] = {
        "greater_than": lambda b: f"expected a value > {b}",
        "greater_than_equal": lambda b: f"expected a value >= {b}",
        "less_than": lambda b: f"expected a value < {b}",
        "less_than_equal": lambda b: f"expected a value <= {b}",
    }
    if kind in _TYPE_NAMES:
        text = _TYPE_NAMES[kind]
    elif kind in bounds:
        text = bounds[kind](next(iter(ctx.values())))
    elif kind in ("enum", "literal_error"):
        text = "expected " + str(ctx["expected"]).replace("'", '"')
    elif kind == "string_too_short":
        text = "expected a non-empty string"
    elif kind == "string_too_long":
        text = f"expected at most {ctx['max_length']} characters"
    elif kind == "too_short":
        n = ctx["min_length"]
        text = f"expected at least {n} {'entry' if n == 1 else 'entries'}"
    elif kind == "too_long":
        text = f"expected at most {ctx['max_length']} entries"
    else:
        text = error["msg"]
    secret = any(str(part) in _SECRET_KEYS for part in loc)
    value = error.get("input")
    if not secret and isinstance(value, str | int | float | bool) and len(quote(value)) <= 60:
        text += f" (got {quote(value)})"
    return text
