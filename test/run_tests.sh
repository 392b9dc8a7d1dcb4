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
ROOT=$(pwd)

DEBS="postgresql-15 postgresql-server-dev-15 postgresql-common libcurl4-openssl-dev
      libcjson-dev libmicrohttpd-dev pkg-config make gcc python3 curl ca-certificates"
missing=$(for p in $DEBS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== installing Debian packages: $(echo $missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $DEBS >/dev/null
fi

echo "== building coding_fdw"
make -s clean >/dev/null 2>&1 || true
make -s 2>&1 | tee /tmp/coding_fdw_build.log
if grep -q "warning:" /tmp/coding_fdw_build.log; then
    echo "build has warnings"; echo "0 passed, 1 failed"; exit 1
fi
make -s install >/dev/null

echo "== running suites in a throwaway cluster"
exec pg_virtualenv -v 15 "$ROOT/test/run_in_cluster.sh" "$@"
