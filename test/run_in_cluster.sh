#!/usr/bin/env bash
# test/run_in_cluster.sh: runs the suites against the cluster pg_virtualenv
# made (PG* variables set) and a simulated Coding server started here.
#   run_in_cluster.sh            the simulator's self-test, pg_regress and
#                                test/t_*.py (no shared_preload_libraries:
#                                the foreign tables must work without it)
#   run_in_cluster.sh --preload  test/tp_*.py, in a cluster started with
#                                shared_preload_libraries = coding_fdw
#   run_in_cluster.sh [--preload] NAME...
#                                only the parts named: test_sim, pg_regress
#                                or a script's file name (test/memcheck.sh
#                                runs pg_regress and tp_faults.py this way,
#                                under valgrind); a name that matches
#                                nothing is a failure, not a silent skip
# Prints one "N passed, N failed" line at the end.  Of each script's output
# it shows the failures and the last TAIL_LINES lines (default 15; a large
# value shows every check with its time).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/coding_fdw_test.XXXXXX)
chmod 755 "$WORK"
PASSED=0
FAILED=0
FAILED_NAMES=()

record() {   # record NAME PASSED FAILED
    PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
    if [ "$3" -gt 0 ]; then FAILED_NAMES+=("$1"); fi
}

# wait_for_file FILE SECONDS: wait on a condition with a deadline
wait_for_file() {
    local deadline=$((SECONDS + $2))
    while [ ! -s "$1" ]; do
        if [ $SECONDS -ge $deadline ]; then return 1; fi
        sleep 0.05
    done
}

# start_sim NAME ARGS...: start a simulated server, export its URLs
start_sim() {
    local name=$1; shift
    python3 "$ROOT/test/coding_sim.py" --host 127.0.0.1 --port 0 \
        --port-file "$WORK/$name.port" --quiet "$@" >"$WORK/$name.log" 2>&1 &
    echo $! >"$WORK/$name.pid"
    if ! wait_for_file "$WORK/$name.port" 60; then
        echo "simulated server $name did not start:"; cat "$WORK/$name.log"; return 1
    fi
}

cleanup() {
    for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    # KEEP_RESULTS=DIR keeps pg_regress's results there (to update expected/)
    if [ -n "${KEEP_RESULTS:-}" ] && [ -d "$WORK/regress" ]; then
        rm -rf "$KEEP_RESULTS"; cp -r "$WORK/regress" "$KEEP_RESULTS"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PRELOAD=0
ONLY=()
for arg in "$@"; do
    case "$arg" in
        --preload) PRELOAD=1 ;;
        *) ONLY+=("$arg") ;;
    esac
done
declare -A KNOWN=()

# wanted NAME: whether this part runs (every part when none is named);
# remembers NAME as a part that exists here
wanted() {
    KNOWN[$1]=1
    [ ${#ONLY[@]} -eq 0 ] && return 0
    local n
    for n in "${ONLY[@]}"; do [ "$n" = "$1" ] && return 0; done
    return 1
}

if [ $PRELOAD -eq 1 ]; then
    SCRIPTS=("$ROOT"/test/tp_*.py)
else
    SCRIPTS=("$ROOT"/test/t_*.sh "$ROOT"/test/t_*.py)
fi

# 1. the simulated server's own tests
if [ $PRELOAD -eq 0 ] && wanted test_sim; then
echo "== test/test_sim.py"
out=$(python3 "$ROOT/test/test_sim.py" 2>&1); rc=$?
echo "$out" | tail -5
line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
if [ -n "$line" ]; then
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    record test_sim "$p" "$f"
else
    record test_sim 0 1
fi
fi

# 2. pg_regress suites against a small deterministic project
if [ $PRELOAD -eq 0 ] && wanted pg_regress; then
echo "== pg_regress"
start_sim regress --team acme --project backend:60 --project mobile:5 \
    --token secret-token --oauth-token oauth-token \
    --limited-token limited-token:issues --seed 42 || { echo "0 passed, 1 failed"; exit 1; }
PORT=$(cat "$WORK/regress.port")
export CODING_SIM_URL="http://127.0.0.1:$PORT/open-api"
export CODING_SIM_CONTROL="http://127.0.0.1:$PORT"
export SIMCTL="python3 $ROOT/test/simctl.py"
# a port nothing listens on, for "unreachable" tests
export CODING_DEAD_URL="http://127.0.0.1:9/open-api"
make -s installcheck REGRESS_OPTS="--outputdir=$WORK/regress --load-extension=coding_fdw --encoding=UTF8" \
    >"$WORK/regress.out" 2>&1
cat "$WORK/regress.out" | grep -E '\.\.\. |tests' || true
p=$(grep -cE '\.\.\. ok' "$WORK/regress.out")
f=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$WORK/regress.out")
if [ "$f" -gt 0 ] && [ -f "$WORK/regress/regression.diffs" ]; then
    head -200 "$WORK/regress/regression.diffs"
fi
[ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1
record pg_regress "$p" "$f"

fi

# 3. script tests: each prints its own "N passed, N failed"
SCRIPT_TIMEOUT=${SCRIPT_TIMEOUT:-900}
for t in "${SCRIPTS[@]}"; do
    [ -e "$t" ] || continue
    name=$(basename "$t")
    wanted "$name" || continue
    echo "== $name"
    # a hung script ends as a failure, not as the whole run's time-out
    # (timeout signals its process group: the script's simulator too)
    case "$t" in
        *.py) out=$(timeout -k 10 "$SCRIPT_TIMEOUT" python3 "$t" 2>&1); rc=$? ;;
        *) out=$(timeout -k 10 "$SCRIPT_TIMEOUT" bash "$t" 2>&1); rc=$? ;;
    esac
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        out="$out
FAIL $name did not end within $SCRIPT_TIMEOUT s (SCRIPT_TIMEOUT)"
    fi
    # the seed (to reproduce) and every failure, wherever it is, then the end
    echo "$out" | grep -E '^(seed|FAIL)' | cut -c1-2000
    echo "$out" | tail -${TAIL_LINES:-15}
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    else
        p=0; f=1
    fi
    record "$name" "$p" "$f"
done

for n in "${ONLY[@]}"; do
    if [ -z "${KNOWN[$n]:-}" ]; then echo "no part named $n here"; record "$n" 0 1; fi
done
if [ ${#FAILED_NAMES[@]} -gt 0 ]; then echo "failed suites: ${FAILED_NAMES[*]}"; fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
