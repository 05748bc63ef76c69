#!/usr/bin/env bash
# Development set-up for a fresh clone (Debian 12 or similar): system packages that are
# missing, the Python venv (.venv) with the test extras, and the SMSC simulator's
# node_modules. Idempotent: run it again at any time; it only does what is missing or
# out of date, and says what it does.
#
#   scripts/setup.sh              # from anywhere
#   VMN_SETUP_FORCE=1 scripts/setup.sh   # reinstall the Python package and node_modules
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
FORCE=${VMN_SETUP_FORCE:-0}

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- system packages (only the missing ones, only as root with apt-get) -----------------
missing=()
have python3 || missing+=(python3)
if have python3 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
have node || missing+=(nodejs)
have npm || missing+=(npm)
# Services for the test suite: normally preinstalled here; installed only when absent.
have mosquitto || missing+=(mosquitto)
if ! have pg_ctlcluster || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    missing+=(postgresql)
fi
have pg_isready || missing+=(postgresql-client)
# tests/test_durability.py traces the daemon's fsyncs with it (skipped without).
have strace || missing+=(strace)
# The web console's browser tests (tests/test_console*.py) drive Debian's Chromium with
# Playwright; Playwright's own browser download cannot work offline.
[[ -x /usr/bin/chromium ]] || missing+=(chromium)

if ((${#missing[@]})); then
    if have apt-get && [[ $(id -u) -eq 0 ]]; then
        say "installing missing system packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        say "warning: missing system packages (${missing[*]}); install them as root with apt-get"
    fi
else
    say "system packages: present"
fi

# --- Python -----------------------------------------------------------------------------
have python3 || die "python3 not found"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python >= 3.11 needed, python3 is $(python3 -V 2>&1)"

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    say "creating .venv with $(python3 -V 2>&1)"
    rm -rf .venv
    python3 -m venv .venv
else
    say ".venv: present ($(.venv/bin/python -V 2>&1))"
fi

# Reinstall only when pyproject.toml changed since the last install (or when the
# installed package does not point at this tree), so re-running the script does not
# disturb tests that are using the venv at the same time.
stamp=.venv/.vmn-setup-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have_pkg=$(.venv/bin/python - "$ROOT" <<'EOF' 2>/dev/null || true
import importlib.util, os, sys
spec = importlib.util.find_spec("gateway")
ok = spec is not None and spec.origin is not None and os.path.realpath(spec.origin).startswith(
    os.path.realpath(sys.argv[1]) + os.sep)
print("yes" if ok else "no")
EOF
)
if [[ $FORCE == 1 || ! -f $stamp || $(cat "$stamp") != "$want" || $have_pkg != yes ]]; then
    say "installing vmn-gateway (editable) with the test extras into .venv"
    .venv/bin/pip install -q -e '.[test]'
    echo "$want" >"$stamp"
else
    say "python package: up to date with pyproject.toml"
fi

# --- SMSC simulator ---------------------------------------------------------------------
have npm || die "npm not found"
# npm keeps a copy of the lock in node_modules/.package-lock.json; reinstall when the
# project's lock is newer, or when node_modules is missing.
if [[ $FORCE == 1 || ! -f sim/node_modules/.package-lock.json \
      || sim/package-lock.json -nt sim/node_modules/.package-lock.json \
      || ! -d sim/node_modules/smpp ]]; then
    say "npm ci --prefix sim"
    npm ci --prefix sim --no-audit --no-fund
else
    say "sim/node_modules: up to date with sim/package-lock.json"
fi

say "done"
