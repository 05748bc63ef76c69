"""What `run` would die of at start-up, found before it starts (and by `check`).

A valid file can still name a listen address that another process holds or an
SQLite database in a directory that does not exist or that this user cannot
write. The daemon would fail deep inside its start-up with a traceback; these
checks turn each into one `ConfigError` naming the key path and the address or
path. They need no SMSC, broker or database server: PostgreSQL URLs are not
checked (the daemon's own error names the server it could not reach).

An address in use is an `AddressInUse`: `check` run beside the gateway's own
running daemon sees the daemon's ports taken, so `check` shows it as a warning
while `run` refuses to start.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.config import Config, ConfigError, split_host_port

__all__ = ["AddressInUse", "preflight"]


class AddressInUse(ConfigError):
    """A listen address that some process (maybe this gateway's daemon) already holds."""


def preflight(config: Config) -> list[ConfigError]:
    """Start-up problems of `config` on this host, the database first (the daemon
    opens it first); [] when `run` can start."""
    file = config.source_file or "<memory>"
    problems: list[ConfigError] = []
    db_problem = _database_problem(config.gateway.database)
    if db_problem is not None:
        problems.append(ConfigError(file, "gateway.database", db_problem))
    for path, address in _listen_addresses(config):
        problem = _listen_problem(file, path, address)
        if problem is not None:
            problems.append(problem)
    return problems


def _listen_addresses(config: Config) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if config.gateway.admin_listen:
        out.append(("gateway.admin_listen", config.gateway.admin_listen))
    if config.email_replies is not None:
        out.append(("email_replies.listen", config.email_replies.listen))
    if config.api is not None:
        out.append(("api.listen", config.api.listen))
    return out


def _listen_problem(file: str, path: str, address: str) -> ConfigError | None:
    host, port = split_host_port(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return ConfigError(file, path, f"cannot listen on {address}: {exc.strerror or exc}")
    # Bound the way asyncio's create_server binds (aiohttp and aiosmtpd use it): every
    # address the host resolves to, SO_REUSEADDR, IPv6 sockets v6-only; a family this
    # host lacks is skipped as asyncio skips it.
    for family, kind, proto, _name, sockaddr in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                return _bind_error(file, path, address, exc)
    return None


def _bind_error(file: str, path: str, address: str, exc: OSError) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(file, path, f"{address} is already in use by another process")
    if exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = "no interface of this host has that address"
    else:
        reason = exc.strerror or str(exc)
    return ConfigError(file, path, f"cannot listen on {address}: {reason}")


def _database_problem(url: str) -> str | None:
    """Why SQLite could not create or write the database file of `url`, or None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the model validated its form; leave the rest to the driver
    if not parsed.drivername.startswith("sqlite"):
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or name.startswith("file:") or "mode" in parsed.query:
        return None  # in memory, or a URI whose meaning SQLite decides
    # Relative to the working directory, as SQLite opens it; shown absolute so that an
    # operator sees which directory that was.
    db = Path(os.path.abspath(name))
    directory = db.parent
    if db.is_dir():
        return f"database {db} is a directory, not a file"
    if not directory.exists():
        return f"database directory {directory} does not exist (create it or change the path)"
    if not directory.is_dir():
        return f"database directory {directory} is not a directory"
    # SQLite writes its -wal and -shm files beside the database: the directory must be
    # writable even when the file exists.
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"database directory {directory} is not writable by this user"
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        return f"database {db} is not writable by this user"
    return None
