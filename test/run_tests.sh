#!/usr/bin/env bash
# test/run_tests.sh: the test command (README "Running the tests"; .ci/run).
#
# Run as root on a fresh Debian 12 machine: installs the Debian packages it
# needs, builds and installs coding_fdw, then runs every suite inside a
# throwaway cluster made by pg_virtualenv (PostgreSQL refuses to run as
# root; pg_virtualenv runs the server as "postgres"; -t keeps its clusters
# in a temporary directory, so an interrupted run leaves nothing behind),
# then the memory check (test/memcheck.sh: pg_regress and the fault matrix
# against servers under valgrind) and the name-lookup cancel check
# (test/dns_cancel.sh: its own cluster in a mount namespace).  Ends with one line
# "N passed, N failed" and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! bash scripts/build_install.sh valgrind; then
    echo "0 passed, 1 failed"
    exit 1
fi
log1=$(mktemp)
log2=$(mktemp)
log3=$(mktemp)
log4=$(mktemp)
echo "== running suites in a throwaway cluster"
pg_virtualenv -t -v 15 "$(pwd)/test/run_in_cluster.sh" 2>&1 | tee "$log1"
rc1=${PIPESTATUS[0]}
echo "== running suites in a cluster with shared_preload_libraries = coding_fdw"
# the webhook listener on a port nobody else uses
hook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_virtualenv -t -v 15 -o shared_preload_libraries=coding_fdw -o coding_fdw.webhook_port="$hook_port" \
    "$(pwd)/test/run_in_cluster.sh" --preload 2>&1 | tee "$log2"
rc2=${PIPESTATUS[0]}
echo "== memory check: pg_regress and the fault matrix under valgrind"
# its own two servers under valgrind (pg_virtualenv cannot start one so)
bash test/memcheck.sh 2>&1 | tee "$log3"
rc3=${PIPESTATUS[0]}
echo "== cancel during a name lookup: a cluster whose DNS server never answers"
bash test/dns_cancel.sh 2>&1 | tee "$log4"
rc4=${PIPESTATUS[0]}
# each phase ends with its total; add them up and repeat the sum last,
# after pg_virtualenv's own messages (a phase without a total failed)
total=$(for log in "$log1" "$log2" "$log3" "$log4"; do
            grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 | grep . || echo "0 passed, 1 failed"
        done | awk '{p += $1; f += $3} END {print p " passed, " f " failed"}')
rm -f "$log1" "$log2" "$log3" "$log4"
echo "$total"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$rc3" -eq 0 ] && [ "$rc4" -eq 0 ] && [ "${total#* passed, }" = "0 failed" ]
