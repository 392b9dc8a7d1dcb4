#!/usr/bin/env bash
# test/memcheck.sh: the memory check (issue #7 item 4), the third phase of
# the test command (test/run_tests.sh).
#
# Starts two PostgreSQL 15 servers under valgrind's memcheck (Debian's
# stock binary: every backend and background worker is fork()ed from the
# postmaster, so valgrind follows each into its own log) and runs in them,
# at the same time:
#   - the pg_regress suites, in a cluster without shared_preload_libraries
#     (their expected output assumes no sync worker);
#   - the fault matrix (test/tp_faults.py), in a cluster with
#     shared_preload_libraries = coding_fdw, so the sync worker and the
#     webhook listener run under valgrind too.
# Both through test/run_in_cluster.sh, with TEST_TIME_SCALE stretching the
# tests' deadlines.  Then test/vgcheck.py reads every process's log: any
# memory error, or a definite leak whose stack goes through our code, fails
# (PostgreSQL's known false positives are in test/valgrind.supp).
#
# The default is a subset of the matrix, sized for CI (about 2.5 minutes
# on 2 CPUs); MEMCHECK_FULL=1 runs all of it (70 cells, about 7.5 minutes).
# MEMCHECK_CELLS overrides the cells (tp_faults.py's MATRIX_CELLS syntax);
# MEMCHECK_KEEP=1 keeps the logs (they are kept anyway when a check fails).
#
# Run as root (the servers then run as "postgres") or as a user who may
# run PostgreSQL.  Prints one "N passed, N failed" line at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
START=$SECONDS
PASSED=0
FAILED=0

# the CI subset: every fault on the foreign scan (every error path of the
# client in a backend), and on the other paths (the detail fetch, the sync
# worker, the webhook listener, repetition in one backend) the distinct
# outcomes: retried then fine, HTTP error, token refused, malformed or
# oversized answer, dropped connection, a stall past the timeout
CI_CELLS="scan
  detail:http_500 detail:auth_failure detail:truncated_json detail:huge_body detail:drop_connection
  sync:http_500 sync:invalid_json poll:auth_failure poll:drop_connection
  webhook:http_500 webhook:truncated_json webhook:stall_mid_body
  repeated:http_500 repeated:invalid_json repeated:huge_body"
if [ -n "${MEMCHECK_CELLS:-}" ]; then
    CELLS=$MEMCHECK_CELLS
elif [ "${MEMCHECK_FULL:-0}" = 1 ]; then
    CELLS=""
else
    CELLS=$CI_CELLS
fi

# record NAME PASSED FAILED: add to the phase's totals; a failure is named
# on a FAIL line of its own, so it stands out in a long output
record() {
    PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
    if [ "$3" -gt 0 ]; then echo "FAIL memcheck: $1"; fi
}

# add_total FILE: count the last "N passed, N failed" line of FILE; a part
# that died before printing its total counts as a failure
add_total() {
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1)
    if [ -n "$line" ]; then
        record "$(basename "$1")" "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
    else
        record "$(basename "$1") ended without its total" 0 1
    fi
}

if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed (scripts/build_install.sh installs it)"
    echo "0 passed, 1 failed"
    exit 1
fi

# the servers cannot run as root
if [ "$(id -u)" -eq 0 ]; then
    AS=(runuser -u postgres --)
else
    AS=()
fi
BASE=$(mktemp -d /tmp/coding_fdw_memcheck.XXXXXX)
chmod 755 "$BASE"
[ ${#AS[@]} -gt 0 ] && chown postgres "$BASE"
# the servers run as postgres, who may not read the source tree (a clone
# in root's home, mode 700): valgrind gets its own copy of the suppressions
cp "$ROOT/test/valgrind.supp" "$BASE/valgrind.supp"
chmod 644 "$BASE/valgrind.supp"

# free_port: a TCP port nothing listens on now, so that the webhook
# listener and the sockets never clash with another cluster on the machine
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster NAME PORT [SETTING...]: initdb, then the postmaster under
# valgrind (done here: pg_virtualenv cannot wrap the server in a tool);
# waits, with a deadline, until it accepts connections
start_cluster() {
    local name=$1 port=$2 dir=$BASE/$1 setting
    shift 2
    "${AS[@]}" mkdir -p "$dir/vg" "$dir/sock"
    if ! "${AS[@]}" "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log"; return 1
    fi
    # jit off: LLVM's generated code is not ours and is slow to check;
    # autovacuum off: its workers would only add unrelated processes
    for setting in "port = $port" "unix_socket_directories = '$dir/sock'" "listen_addresses = ''" \
                   "shared_buffers = 16MB" "fsync = off" "jit = off" "autovacuum = off" "$@"; do
        echo "$setting"
    done | "${AS[@]}" tee -a "$dir/data/postgresql.conf" >/dev/null
    # valgrind's options are vgcheck.py's, which its self-test tried
    local options
    mapfile -t options < <(python3 "$ROOT/test/vgcheck.py" --valgrind-options "$dir/vg" \
                                   --suppressions "$BASE/valgrind.supp")
    "${AS[@]}" valgrind "${options[@]}" "$PGBIN/postgres" -D "$dir/data" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/valgrind.pid"
    local deadline=$((SECONDS + 180))
    until "$PGBIN/pg_isready" -q -h "$dir/sock" -p "$port"; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$dir/valgrind.pid")" 2>/dev/null; then
            echo "the $name server did not start:"; tail -20 "$dir/server.log"; return 1
        fi
        sleep 0.2
    done
}

# stop_cluster NAME: fast shutdown, then wait (with a deadline) until the
# postmaster's own log has valgrind's final summary: its leak check runs
# after the pid file is gone, and it exits after all its children
stop_cluster() {
    local dir=$BASE/$1 pm deadline
    [ -f "$dir/data/postmaster.pid" ] || return 0
    pm=$(head -1 "$dir/data/postmaster.pid")
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$dir/data" stop -m fast -w -t 300 >/dev/null
    deadline=$((SECONDS + 120))
    until grep -q "ERROR SUMMARY" "$dir/vg/$pm.log" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then echo "the $1 postmaster's valgrind did not finish"; return 1; fi
        sleep 0.2
    done
    wait "$(cat "$dir/valgrind.pid")" 2>/dev/null
    return 0
}

# cleanup: stop what is still running (an interrupted run must not leave a
# server behind) and remove the logs unless they are needed
cleanup() {
    local name
    for name in regress faults; do
        [ -f "$BASE/$name/data/postmaster.pid" ] &&
            "${AS[@]}" "$PGBIN/pg_ctl" -D "$BASE/$name/data" stop -m immediate >/dev/null 2>&1
    done
    if [ "$FAILED" -eq 0 ] && [ "${MEMCHECK_KEEP:-0}" != 1 ]; then
        rm -rf "$BASE"
    else
        echo "valgrind logs kept in $BASE/*/vg"
    fi
}
trap cleanup EXIT

# 1. the check can fail: the parser catches errors and leaks in our code,
# in synthetic logs and in a real valgrind run of a toy coding_fdw.so
echo "== test/vgcheck.py --self-test"
python3 "$ROOT/test/vgcheck.py" --self-test >"$BASE/selftest.out" 2>&1
cat "$BASE/selftest.out"
add_total "$BASE/selftest.out"

# 2. the suites, both servers at once (most of the matrix's time is spent
# waiting for timeouts and retries)
regress_port=$(free_port)
faults_port=$(free_port)
hook_port=$(free_port)
echo "== starting two servers under valgrind"
if ! start_cluster regress "$regress_port" ||
   ! start_cluster faults "$faults_port" "shared_preload_libraries = 'coding_fdw'" \
        "coding_fdw.webhook_port = $hook_port"; then
    record "servers under valgrind" 0 1
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi
export PGUSER=postgres PGDATABASE=postgres TEST_TIME_SCALE=5 MEMCHECK=valgrind
PGHOST=$BASE/regress/sock PGPORT=$regress_port \
    bash "$ROOT/test/run_in_cluster.sh" pg_regress >"$BASE/regress.out" 2>&1 &
regress_job=$!
PGHOST=$BASE/faults/sock PGPORT=$faults_port MATRIX_REPS=20 MATRIX_CELLS="$CELLS" \
    bash "$ROOT/test/run_in_cluster.sh" --preload tp_faults.py >"$BASE/faults.out" 2>&1 &
faults_job=$!
wait $regress_job
wait $faults_job
for name in regress faults; do
    echo "== under valgrind: $name"
    cat "$BASE/$name.out"
    add_total "$BASE/$name.out"
done
stop_cluster regress || record "regress server stopped" 0 1
stop_cluster faults || record "faults server stopped" 0 1

# 3. every process's valgrind log
echo "== valgrind logs"
python3 "$ROOT/test/vgcheck.py" --root "$ROOT" regress="$BASE/regress/vg" \
    faults="$BASE/faults/vg" >"$BASE/vgcheck.out" 2>&1
cat "$BASE/vgcheck.out"
add_total "$BASE/vgcheck.out"

echo "memcheck took $((SECONDS - START)) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
