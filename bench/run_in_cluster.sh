#!/usr/bin/env bash
# bench/run_in_cluster.sh OUT LIST [--quick]: runs the benchmarks in LIST
# (comma-separated) against the cluster pg_virtualenv made (PG* variables
# set); each starts its own simulated Coding server.  Called by
# bench/run_bench.sh.  Progress (stderr) goes to the terminal; each
# benchmark's report (stdout) replaces that benchmark's section of OUT, so
# running a subset (--only details) keeps the other sections.
set -uo pipefail
OUT=$1
ONLY=$2
QUICK=${3:-}
cd "$(dirname "$0")" || exit 1
WORK=$(mktemp -d /tmp/coding_bench_report.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

scale=full
[ -n "$QUICK" ] && scale=quick
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rev=$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C .. diff --quiet HEAD -- src sql Makefile 2>/dev/null || rev="$rev + uncommitted changes"
pgv=$(psql -X -A -t -c 'SELECT version()' | cut -d' ' -f1-2)
machine="$(nproc) CPUs ($cpu), $((mem_kb / 1024)) MB memory"
{
    echo "# coding_fdw benchmark results"
    echo
    echo "Machine: $machine; $pgv; $(curl --version | head -1 | cut -d' ' -f1-2);" \
         "Python $(python3 -c 'import platform; print(platform.python_version())')."
    echo "Each section below says when it was run, at which scale and on which commit;"
    echo "bench/run_bench.sh --only NAME replaces that section alone."
    echo
} >"$WORK/header"

failed=()
for b in ${ONLY//,/ }; do
    echo "== $b ($scale scale)" >&2
    start=$SECONDS
    when=$(date -u '+%Y-%m-%d %H:%M UTC')
    load=$(cut -d' ' -f1 /proc/loadavg)
    python3 "$b.py" ${QUICK:+"$QUICK"} >"$WORK/$b.out"
    rc=$?
    cat "$WORK/$b.out"
    {
        echo "---- bench: $b ----"
        echo "Run $when, $scale scale, coding_fdw $rev, $machine, load average $load at start."
        echo
        cat "$WORK/$b.out"
        if [ "$rc" -ne 0 ]; then
            printf 'FAILED (exit %s; the error was printed on the terminal)\n\n' "$rc"
            failed+=("$b")
        fi
        printf '(%s took %d s)\n\n' "$b" $((SECONDS - start))
    } >"$WORK/$b.section"
done

python3 - "$OUT" "$WORK" <<'EOF'
import os, re, sys
out, work = sys.argv[1], sys.argv[2]
order = ["calls", "scan_speed", "memory", "details", "sync", "webhook"]
sections = {}
if os.path.exists(out):
    text = open(out, encoding="utf-8").read()
    for m in re.finditer(r"^---- bench: (\w+) ----\n(.*?)(?=^---- bench: |\Z)", text, re.S | re.M):
        sections[m.group(1)] = m.group(0)
for name in order:
    p = os.path.join(work, name + ".section")
    if os.path.exists(p):
        sections[name] = open(p, encoding="utf-8").read()
with open(out + ".tmp", "w", encoding="utf-8") as f:
    f.write(open(os.path.join(work, "header"), encoding="utf-8").read())
    for name in order:
        if name in sections:
            f.write(sections[name].rstrip("\n") + "\n\n")
os.chmod(out + ".tmp", 0o644)
os.replace(out + ".tmp", out)
EOF
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
