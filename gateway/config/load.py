"""Reading the file: TOML -> `*_env` secrets from the environment -> the models ->
the cross-checks (`gateway.config.checks`); a relative SQLite path is made absolute
against the file's directory. Any problem is one `ConfigError`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.checks import check_cross_references
from gateway.config.errors import ConfigError, describe_error, format_loc
from gateway.config.models import Config
from gateway.config.types import DIGITS_RE


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a TOML configuration file."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(file, "", f"cannot read file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "invalid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", _toml_error_text(str(e))) from None
    config = parse_config(data, file=file, env=os.environ if env is None else env)
    url = sqlite_relative_to(config.gateway.database, Path(path).parent)
    if url == config.gateway.database:
        return config
    return config.model_copy(update={"gateway": config.gateway.model_copy(
        update={"database": url})})


def sqlite_relative_to(url: str, base: Path) -> str:
    """`url` with a relative SQLite path made absolute against `base` (the directory of
    the configuration file): the daemon and the read-only commands then find the same
    file whatever their working directory."""
    m = re.fullmatch(r"(sqlite(?:\+[A-Za-z0-9_]+)?:///)([^?]*)(\?.*)?", url, re.DOTALL)
    if m is None or not m[2] or m[2] == ":memory:" or m[2].startswith("/"):
        return url
    return f"{m[1]}{(base.absolute() / m[2]).resolve()}{m[3] or ''}"


def _toml_error_text(message: str) -> str:
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if m:
        return f"line {m[2]} column {m[3]}: invalid TOML ({m[1]})"
    m = re.fullmatch(r"(.*) \(at end of document\)", message, re.DOTALL)
    if m:
        return f"end of file: invalid TOML ({m[1]})"
    return f"invalid TOML ({message})"


def parse_config(data: Mapping[str, Any], *, file: str, env: Mapping[str, str]) -> Config:
    """Validate already-parsed TOML `data`; `file` is only used in error messages."""
    if "source_file" in data:
        raise ConfigError(file, "source_file", "unknown key")
    resolved = _resolve_env_secrets(data, file, env)
    resolved["source_file"] = file
    gateway = resolved.get("gateway")
    cc = gateway.get("country_code") if isinstance(gateway, dict) else None
    # Numbers elsewhere in the file (forward_sms) are read in this country; a bad
    # country_code is reported on its own key, by the model.
    context = {"country_code": cc if isinstance(cc, str) and DIGITS_RE.fullmatch(cc) else "1"}
    try:
        config = Config.model_validate(resolved, by_alias=True, by_name=False, context=context)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # A misspelt key also leaves the key it meant "missing": name the cause.
        first = next((err for err in errors if err["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(file, format_loc(first["loc"]), describe_error(first)) from None
    check_cross_references(config, file)
    return config


def _resolve_env_secrets(
    data: Mapping[str, Any], file: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Copy `data`, filling ``password`` from ``password_env`` etc.; the *_env key stays."""

    def resolve(table: Any, path: str, key: str) -> Any:
        if not isinstance(table, dict) or not isinstance(table.get(f"{key}_env"), str):
            return table  # absent or mistyped: model validation reports it
        var = table[f"{key}_env"]
        if key in table:
            raise ConfigError(
                file, f"{path}.{key}_env", f"give either {key} or {key}_env, not both"
            )
        if var not in env:
            raise ConfigError(file, f"{path}.{key}_env", f"environment variable {var} is not set")
        return {**table, key: env[var]}

    out = dict(data)
    if "gateway" in out:
        out["gateway"] = resolve(out["gateway"], "gateway", "database")
    for section in ("mqtt", "smtp"):
        if section in out:
            out[section] = resolve(out[section], section, "password")
    if "api" in out:
        out["api"] = resolve(out["api"], "api", "callback_secret")
    if isinstance(out.get("smsc"), list):
        out["smsc"] = [
            resolve(entry, f"smsc[{i}]", "password") for i, entry in enumerate(out["smsc"])
        ]
    if isinstance(out.get("callback_profiles"), dict):
        out["callback_profiles"] = {
            name: resolve(profile, format_loc(("callback_profiles", name)), "secret")
            for name, profile in out["callback_profiles"].items()
        }
    return out
