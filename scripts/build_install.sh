#!/usr/bin/env bash
# scripts/build_install.sh: install the Debian packages coding_fdw needs
# (only the missing ones), then build and install the extension.
# Shared by the demo (demo.sh) and the test command (test/run_tests.sh);
# extra Debian packages may be named as arguments (the tests add valgrind).
# Run as root on Debian 12.  Fails if the build prints any warning.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="postgresql-15 postgresql-server-dev-15 postgresql-common libcurl4-openssl-dev
      libcjson-dev libmicrohttpd-dev libsimdjson-dev pkg-config make gcc g++ python3 curl
      ca-certificates $*"
missing=$(for p in $DEBS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
done)
if [ -n "$missing" ]; then
    echo "== installing Debian packages: $(echo $missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $DEBS >/dev/null
fi

echo "== building coding_fdw"
log=$(mktemp)
make -s clean >/dev/null 2>&1 || true
if ! make -s >"$log" 2>&1; then cat "$log"; exit 1; fi
if grep -q "warning:" "$log"; then cat "$log"; echo "the build has warnings"; exit 1; fi
make -s install >/dev/null
rm -f "$log"
