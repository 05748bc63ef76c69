"""`python -m gateway.storage.migrator`: migrate one database to HEAD, then exit.

The daemon's start migrates in a fork of itself (`db.prepare_schema`); it runs this as
a new process only when it cannot fork safely (threads already running), so that
alembic, needed only to migrate, never stays in the daemon's memory. The database URL
and the country code come from the environment (`db.MIGRATE_URL_ENV`,
`db.MIGRATE_COUNTRY_ENV`), never argv, which any user can read in `ps`. Exit 0 when the
database is at HEAD; otherwise 1 and one line on stderr, `error: ...`, that the daemon
repeats in its own."""

from __future__ import annotations

import asyncio
import os
import sys

from gateway.storage.db import MIGRATE_COUNTRY_ENV, MIGRATE_URL_ENV, migrate_url, migration_error


def main() -> int:
    url = os.environ.get(MIGRATE_URL_ENV)
    if not url:
        print(f"error: {MIGRATE_URL_ENV} is not set (the daemon sets it)", file=sys.stderr)
        return 2
    try:
        asyncio.run(migrate_url(url, os.environ.get(MIGRATE_COUNTRY_ENV) or "1"))
    except KeyboardInterrupt:  # the migration's transaction is rolled back
        return 130
    except Exception as exc:
        print(f"error: {migration_error(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
