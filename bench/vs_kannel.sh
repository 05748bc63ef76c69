#!/bin/sh
# vmn-gateway against Kannel, same generator (bench/loadgen.py), same run: acks mode
# (bearerbox acking / the gateway with no actions) and webhook mode (smsbox post-url /
# a gateway webhook on every MO, to the same sink), medians of 3 runs, window 50.
# Installs Kannel from Debian when missing (as root; its system service is then stopped
# and disabled: the bench starts its own bearerbox/smsbox on free ports).
# Extra arguments go to bench/vs_kannel.py, e.g.:
#   bench/vs_kannel.sh --windows 10 50 200 --json-out /tmp/vs_kannel.json
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python bench/vs_kannel.py --runs 3 "$@"
