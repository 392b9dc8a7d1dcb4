#!/usr/bin/env bash
# test/run_tests.sh: the test command (README "Running the tests"; .ci/run).
#
# Run as root on a fresh Debian 12 machine: installs the Debian packages it
# needs, builds and installs coding_fdw, then runs every suite inside a
# throwaway cluster made by pg_virtualenv (PostgreSQL refuses to run as
# root; pg_virtualenv runs the server as "postgres").  Ends with one line
# "N passed, N failed" and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! bash scripts/build_install.sh; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "== running suites in a throwaway cluster"
log=$(mktemp)
pg_virtualenv -v 15 "$(pwd)/test/run_in_cluster.sh" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# pg_virtualenv talks after the suites end: repeat their summary last
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
rm -f "$log"
if [ -z "$summary" ]; then summary="0 passed, 1 failed"; rc=1; fi
echo "$summary"
exit "$rc"
