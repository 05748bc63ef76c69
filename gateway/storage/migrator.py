"""`python -m gateway.storage.migrator`: migrate one database to HEAD, then exit.

The daemon runs this as a child process (`db.ensure_schema`) so that alembic, needed
only to migrate, never stays in the daemon's memory. The database URL and the country
code come from the environment (`db.MIGRATE_URL_ENV`, `db.MIGRATE_COUNTRY_ENV`), never
argv, which any user can read in `ps`. Exit 0 when the database is at HEAD; otherwise
1 and one line on stderr, `error: ...`, that the daemon repeats in its own."""

from __future__ import annotations

import asyncio
import os
import sys

from gateway.log import describe_error, redact_urls
from gateway.storage.db import MIGRATE_COUNTRY_ENV, MIGRATE_URL_ENV, create_engine, migrate


async def _migrate(url: str, country_code: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine, country_code=country_code)
    finally:
        await engine.dispose()


def _describe(exc: BaseException) -> str:
    if getattr(exc, "orig", None) is not None or type(exc).__module__.startswith("sqlalchemy"):
        return describe_error(exc)  # a statement's error: without its values
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact_urls(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def main() -> int:
    url = os.environ.get(MIGRATE_URL_ENV)
    if not url:
        print(f"error: {MIGRATE_URL_ENV} is not set (the daemon sets it)", file=sys.stderr)
        return 2
    try:
        asyncio.run(_migrate(url, os.environ.get(MIGRATE_COUNTRY_ENV) or "1"))
    except KeyboardInterrupt:  # the migration's transaction is rolled back
        return 130
    except Exception as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
