#!/usr/bin/env bash
# test/run_tests.sh: the test command (README "Running the tests"; .ci/run).
#
# Run as root on a fresh Debian 12 machine: installs the Debian packages it
# needs, builds and installs coding_fdw, then runs every suite inside a
# throwaway cluster made by pg_virtualenv (PostgreSQL refuses to run as
# root; pg_virtualenv runs the server as "postgres").  Ends with one line
# "N passed, N failed" and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! bash scripts/build_install.sh; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "== running suites in a throwaway cluster"
exec pg_virtualenv -v 15 "$(pwd)/test/run_in_cluster.sh"
