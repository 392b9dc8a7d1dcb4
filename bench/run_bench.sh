#!/usr/bin/env bash
# bench/run_bench.sh: the benchmark command (bench/README.md).
#
# Run as root on Debian 12: builds and installs coding_fdw with
# scripts/build_install.sh, then runs the benchmarks inside one throwaway
# cluster made by pg_virtualenv (PostgreSQL refuses to run as root;
# pg_virtualenv runs the server as "postgres") and writes the report to
# bench/results.txt.  Progress goes to the terminal.
#
#   bench/run_bench.sh [--quick] [--no-build] [--only LIST] [--out FILE]
#
#   --quick     every benchmark at a small scale (a smoke test, under 2 minutes)
#   --no-build  use the coding_fdw already installed
#   --only LIST comma-separated subset of: calls,scan_speed,memory,details,sync,webhook
#               (default: all; details and sync take 8-9 minutes each at full scale)
#   --out FILE  where the report goes (default bench/results.txt)
#
# webhook runs in a cluster of its own with fsync = on (pg_virtualenv turns
# it off; a durability benchmark needs it) and a free webhook port.
#
# Exits non-zero if a benchmark failed (its error is in the report).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

QUICK=""
BUILD=1
ONLY="calls,scan_speed,memory,details,sync,webhook"
OUT="$ROOT/bench/results.txt"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK="--quick" ;;
        --no-build) BUILD=0 ;;
        --only) ONLY="$2"; shift ;;
        --only=*) ONLY="${1#--only=}" ;;
        --out) OUT="$2"; shift ;;
        --out=*) OUT="${1#--out=}" ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for b in ${ONLY//,/ }; do
    case "$b" in
        calls|scan_speed|memory|details|sync|webhook) ;;
        *) echo "unknown benchmark: $b (calls, scan_speed, memory, details, sync, webhook)" >&2; exit 2 ;;
    esac
done
case "$OUT" in /*) ;; *) OUT="$(pwd)/$OUT" ;; esac

if [ "$BUILD" = 1 ]; then
    bash scripts/build_install.sh || { echo "build failed"; exit 1; }
fi

# webhook apart: it needs a cluster with fsync on; the others keep theirs
REST=""
HOOK=0
for b in ${ONLY//,/ }; do
    if [ "$b" = webhook ]; then HOOK=1; else REST="${REST:+$REST,}$b"; fi
done

rc=0
if [ -n "$REST" ]; then
    echo "== running benchmarks ($REST${QUICK:+, quick scale}) in a throwaway cluster"
    # -t: a temporary cluster directory even as root, so this never collides with
    # another pg_virtualenv (test/run_tests.sh) running on the machine.
    # preloaded: the sync benchmark needs the worker (database postgres)
    # and the listener (sync's webhooks) on a port nobody else uses
    main_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg_virtualenv -t -v 15 -o shared_preload_libraries=coding_fdw -o coding_fdw.webhook_port="$main_port" \
        bash "$ROOT/bench/run_in_cluster.sh" "$OUT" "$REST" $QUICK
    rc=$?
fi
if [ "$HOOK" = 1 ]; then
    echo "== running benchmark webhook${QUICK:+ (quick scale)} in a throwaway cluster with fsync = on"
    # the listener on a port nobody else uses
    hook_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # fsync=on after pg_virtualenv's own fsync=off wins: acknowledgements must be durable
    pg_virtualenv -t -v 15 -o shared_preload_libraries=coding_fdw -o fsync=on \
        -o synchronous_commit=on -o coding_fdw.webhook_port="$hook_port" \
        bash "$ROOT/bench/run_in_cluster.sh" "$OUT" webhook $QUICK || rc=1
fi
echo "== report: $OUT"
exit $rc
