"""Configuration: one TOML file -> validated, frozen models.

`load_config` reads the file, resolves `*_env` secrets from the environment,
validates every key and then the cross-references (unique VMNs, keyword clashes,
callback profiles that exist). Any problem is one `ConfigError` naming the file,
the key path and what was expected::

    gateway.toml: number[2].keyword[0].expires: not an ISO-8601 date-time

Library code never exits; the CLI prints the error and decides.

One module per job, each importing only the ones above it:

- `types`: the values of one key (annotated types, validators, enums) and the forms
  shared with the rest of the gateway (`normalize_keyword`, `render_template`,
  `split_host_port`);
- `models`: the tables of the file as pydantic models;
- `errors`: `ConfigError`, `NumberRejected` and the wording of `check`;
- `checks`: the rules across keys, for the file and for one number (`NumberChecker`);
- `load`: TOML and the environment -> a checked `Config`;
- `summary`: what `vmn-gateway check` prints.

Import from `gateway.config`, not from the modules: this is the public surface.
"""

from gateway.config.checks import NumberChecker, parse_number
from gateway.config.errors import ConfigError, NumberRejected, describe_error, format_loc
from gateway.config.load import load_config, parse_config, sqlite_relative_to
from gateway.config.models import (
    ActionConfig,
    ApiConfig,
    CallbackProfile,
    Config,
    EmailRepliesConfig,
    GatewayConfig,
    KeywordConfig,
    MqttConfig,
    NumberConfig,
    OptoutConfig,
    OptoutOverride,
    PollConfig,
    SmscConfig,
    SmtpConfig,
)
from gateway.config.summary import summary
from gateway.config.types import (
    DEFAULT_DATABASE,
    KEYWORD_MAX_LENGTH,
    TEMPLATE_PLACEHOLDERS,
    AcceptFrom,
    Alphabet,
    Durability,
    FrozenDict,
    HttpMethod,
    HttpUrl,
    LogLevel,
    MatchMode,
    MessageIdForm,
    OptoutScope,
    Unrouted,
    normalize_keyword,
    render_template,
    split_host_port,
)

__all__ = [
    "DEFAULT_DATABASE",
    "KEYWORD_MAX_LENGTH",
    "TEMPLATE_PLACEHOLDERS",
    "AcceptFrom",
    "ActionConfig",
    "Alphabet",
    "ApiConfig",
    "CallbackProfile",
    "Config",
    "ConfigError",
    "Durability",
    "EmailRepliesConfig",
    "FrozenDict",
    "GatewayConfig",
    "HttpMethod",
    "HttpUrl",
    "KeywordConfig",
    "LogLevel",
    "MatchMode",
    "MessageIdForm",
    "MqttConfig",
    "NumberChecker",
    "NumberConfig",
    "NumberRejected",
    "OptoutConfig",
    "OptoutOverride",
    "OptoutScope",
    "PollConfig",
    "SmscConfig",
    "SmtpConfig",
    "Unrouted",
    "describe_error",
    "format_loc",
    "load_config",
    "normalize_keyword",
    "parse_config",
    "parse_number",
    "render_template",
    "split_host_port",
    "sqlite_relative_to",
    "summary",
]
