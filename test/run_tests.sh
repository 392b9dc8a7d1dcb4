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
log5=$(mktemp)
log6=$(mktemp)
rcdir=$(mktemp -d)

# free_port: a TCP port nobody listens on now (for a cluster or a listener)
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# in_cluster NAME LOG [pg_virtualenv options] -- [run_in_cluster.sh args]:
# one throwaway cluster on a port of its own (two start at once, and
# pg_createcluster's own choice of port could race); its output goes to LOG
# and, prefixed with NAME, to the terminal; its exit status to $rcdir/NAME
in_cluster() {
    local name=$1 log=$2 opts=()
    shift 2
    while [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    { PGPORT=$(free_port) pg_virtualenv -t -v 15 "${opts[@]}" "$(pwd)/test/run_in_cluster.sh" "$@" 2>&1
      echo $? >"$rcdir/$name"; } | tee "$log" | sed -u "s/^/[$name] /"
}

# The preloaded scripts mostly wait (for workers, time-outs, back-offs), so
# they run in two clusters at once: the three longest in one, the others
# after the throwaway cluster's suites in the other.  Each cluster has its
# own simulators and webhook port.
LONG_SCRIPTS=(tp_sync.py tp_webhook.py tp_soak.py)
OTHER_SCRIPTS=()
for t in test/tp_*.py; do
    name=$(basename "$t")
    case " ${LONG_SCRIPTS[*]} " in *" $name "*) ;; *) OTHER_SCRIPTS+=("$name") ;; esac
done
echo "== two lines of clusters at once:"
echo "==   [plain] suites without shared_preload_libraries, then [preload-a] ${OTHER_SCRIPTS[*]}"
echo "==   [preload-b] ${LONG_SCRIPTS[*]}, then [upgrade] test/upgrade.sh (pg_upgrade, clusters of its own)"
(
    in_cluster plain "$log1" -- 
    in_cluster preload-a "$log2" -o shared_preload_libraries=coding_fdw \
        -o coding_fdw.webhook_port="$(free_port)" -- --preload "${OTHER_SCRIPTS[@]}"
) &
line_a=$!
(
    in_cluster preload-b "$log5" -o shared_preload_libraries=coding_fdw \
        -o coding_fdw.webhook_port="$(free_port)" -- --preload "${LONG_SCRIPTS[@]}"
    { bash test/upgrade.sh 2>&1; echo $? >"$rcdir/upgrade"; } | tee "$log6" | sed -u "s/^/[upgrade] /"
) &
line_b=$!
wait $line_a $line_b
rc1=$(cat "$rcdir/plain" 2>/dev/null || echo 1)
rc2=$(cat "$rcdir/preload-a" 2>/dev/null || echo 1)
rc5=$(cat "$rcdir/preload-b" 2>/dev/null || echo 1)
rc6=$(cat "$rcdir/upgrade" 2>/dev/null || echo 1)
echo "== memory check: pg_regress and the fault matrix under valgrind"
# its own two servers under valgrind (pg_virtualenv cannot start one so)
bash test/memcheck.sh 2>&1 | tee "$log3"
rc3=${PIPESTATUS[0]}
echo "== cancel during a name lookup: a cluster whose DNS server never answers"
bash test/dns_cancel.sh 2>&1 | tee "$log4"
rc4=${PIPESTATUS[0]}
# each phase ends with its total; add them up and repeat the sum last,
# after pg_virtualenv's own messages (a phase without a total failed)
total=$(for log in "$log1" "$log2" "$log5" "$log6" "$log3" "$log4"; do
            grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 | grep . || echo "0 passed, 1 failed"
        done | awk '{p += $1; f += $3} END {print p " passed, " f " failed"}')
rm -rf "$log1" "$log2" "$log3" "$log4" "$log5" "$log6" "$rcdir"
echo "$total"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$rc3" -eq 0 ] && [ "$rc4" -eq 0 ] && [ "$rc5" -eq 0 ] && [ "$rc6" -eq 0 ] && [ "${total#* passed, }" = "0 failed" ]
