#!/usr/bin/env bash
# test/upgrade.sh: subscriptions across pg_upgrade (test/upgrade.py), in
# two clusters of its own; prints "N passed, N failed".  As root (CI) the
# servers run as postgres.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="$(pwd)/test" python3 test/upgrade.py
