#!/usr/bin/env python3
"""webhook.py: webhook ingest, durable acknowledgements against pgbench
(benchmark 6, bench/README.md "Webhook ingest"; issue #6 item 8).

Runs in the database postgres of a cluster with shared_preload_libraries =
coding_fdw, fsync = on and a free coding_fdw.webhook_port (bench/run_bench.sh
makes it; pg_virtualenv alone turns fsync off, so this refuses to run
unless SHOW fsync says on and synchronous_commit is on).

Setup: a simulated Coding server (seed 1, project backend with 50
issues), server coding, sync_start('coding', 'mirror', 'webhook'),
wait_for_sync.  The load generator bench/hookload.c (C, libcurl multi, C
keep-alive connections) is built into a temporary directory.

For each concurrency C (1, 8, 32; the target is stated at 8), in ONE run,
in 3 alternating rounds (listener then pgbench, pgbench then listener,
listener then pgbench: this machine's fsync latency drifts by 2x within a
minute, so neither side gets the good minute), E/3 events per round:
  a) hookload POSTs distinct ITERATION_CREATED deliveries (each a new
     iteration code) to webhook_url('coding') over C connections; the
     listener answers 200 only after the event's commit, so acknowledged
     events/s = ok answers / (last answer - first send).  The events worker
     applies them meanwhile, as in production.  Then, polling with a
     deadline, wait until all are applied; latency POST -> visible =
     webhook_event.done_at (clock_timestamp() in the apply transaction) -
     the client's send time (both CLOCK_REALTIME on this machine).
     Checked: every request answered 200 {"ok":true}, every acknowledged
     delivery is in webhook_event, applied, and made its row in
     mirror.iterations.
  b) pgbench -n -c C -j min(C,4) -t E/3/C runs the equivalent single-row
     INSERT (the listener's own INSERT .. ON CONFLICT DO NOTHING of the same
     body) into a table shaped like coding_fdw.webhook_event (same columns,
     defaults, constraints and indexes), one transaction per row, with
     synchronous_commit = on.  Its per-transaction log gives the commit
     latency percentiles.
Each side's rate = its events over its summed time; ratio = listener
events/s / pgbench tps, both from this run (the ratio of each round is
shown too).  A CHECKPOINT precedes every measured phase so neither pays
for the other's dirty buffers.

Diagnostic (printed apart, not the figure): after the rounds, one more
listener round per concurrency with the worker's apply held back by a
session holding LOCK TABLE mirror.iterations IN EXCLUSIVE MODE until the
ingest ends: the listener's own rate, without the apply competing for the
machine's CPUs.

Progress goes to stderr, the report to stdout (bench/results.txt).
"""
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchlib import Sim, header, progress, psql, scale_arg, table

DB = "postgres"
HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = "coding"
SCHEMA = "mirror"
TARGET_CONC = 8
APPLY_DEADLINE = 600        # s: the worker must apply a run's events within this
PGB_TABLE = "public.bench_webhook_event"


def q(sql):
    """One statement in database postgres; its output, stripped."""
    return psql(sql, db=DB).strip()


def body(code):
    """One real-shaped ITERATION_CREATED delivery (its code is the new row's key)."""
    return json.dumps({
        "event": "ITERATION_CREATED", "eventName": "创建迭代",
        "iteration": {"title": "Sprint %d" % code, "goal": "", "code": code,
                      "status": "WAIT_PROCESS", "start_at": 1668009600000,
                      "end_at": 1668268799000, "created_at": 1665309831747,
                      "updated_at": 1665309831747,
                      "creator": {"id": 8613060, "login": "cxRf", "name": "Gavin"}},
        "project": {"id": 1, "name": "backend"}, "team": {"id": 1, "domain": "acme"}},
        ensure_ascii=False, separators=(",", ":"))


def percentile(xs, p):
    """The p-th percentile (nearest rank) of a non-empty list."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def check_settings():
    """Refuse to measure durability without it: fsync and synchronous_commit on."""
    fsync = q("SHOW fsync")
    sc = q("SHOW synchronous_commit")
    if fsync != "on" or sc != "on":
        raise RuntimeError("fsync = %s, synchronous_commit = %s: this benchmark measures durable "
                           "commits and needs both on (pg_virtualenv -o fsync=on; "
                           "bench/run_bench.sh does it)" % (fsync, sc))
    return {k: q("SHOW %s" % k) for k in ("fsync", "synchronous_commit", "wal_sync_method",
                                          "commit_delay", "shared_buffers", "max_wal_size")}


def build_hookload(tmp):
    """Compile bench/hookload.c into the temporary directory (no binary is committed)."""
    exe = os.path.join(tmp, "hookload")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, os.path.join(HERE, "hookload.c"), "-lcurl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("building hookload failed:\n" + r.stderr)
    return exe


def wait_for(condition, timeout, what, interval=0.05):
    """Poll condition() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = condition()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(interval)


def listener_up(url):
    """The listener answers a GET on the subscription's URL (200, a ping)."""
    def ping():
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
    wait_for(ping, 60, "the webhook listener to answer on %s" % url, interval=0.1)


def setup(sim):
    """A fresh extension and a webhook subscription, fully synced; returns its URL."""
    q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
    q("DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA)
    q("DROP TABLE IF EXISTS %s" % PGB_TABLE)
    q("CREATE EXTENSION coding_fdw")
    q("CREATE SERVER %s FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend', "
      "api_url '%s', rate_limit '100000')" % (SERVER, sim.url))
    q("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token 'secret-token')" % SERVER)
    q("SELECT coding_fdw.sync_start('%s', '%s', 'webhook')" % (SERVER, SCHEMA))
    ok = q("SELECT coding_fdw.wait_for_sync('%s', '10 min')" % SERVER)
    if ok != "t":
        raise RuntimeError("full sync did not finish: %s" % q(
            "SELECT string_agg(state || ' ' || coalesce(last_error, ''), '; ') "
            "FROM coding_fdw.sync_status WHERE server = '%s'" % SERVER))
    url = q("SELECT coding_fdw.webhook_url('%s')" % SERVER)
    listener_up(url)
    # the pgbench side: the same columns, defaults, constraints and indexes,
    # taken from the real table so the two cannot drift apart
    q("CREATE TABLE %s (LIKE coding_fdw.webhook_event INCLUDING ALL)" % PGB_TABLE)
    return url


def hook_run(exe, url, tmp, tag, conc, n, code_base):
    """Send n deliveries over conc connections; returns (summary dict, rows by delivery)."""
    inp = os.path.join(tmp, "in_%s.tsv" % tag)
    out = os.path.join(tmp, "out_%s.tsv" % tag)
    with open(inp, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write("%s-%d\tITERATION_CREATED\t%s\n" % (tag, i, body(code_base + i)))
    r = subprocess.run([exe, url, str(conc), inp, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("hookload failed (%d): %s" % (r.returncode, r.stderr.strip()[-2000:]))
    line = [l for l in r.stdout.splitlines() if l.startswith("hookload:")][-1]
    w = line.split()[1:]
    summary = {w[i]: float(w[i + 1]) for i in range(0, len(w), 2)}
    rows = {}
    with open(out, encoding="utf-8") as f:
        for l in f:
            d, sent, acked, status, ok = l.rstrip("\n").split("\t")
            rows[d] = (float(sent), float(acked), int(status), ok == "1")
    if r.stderr.strip():
        progress("hookload stderr: " + r.stderr.strip()[-500:])
    return summary, rows


def wait_applied(tag, n):
    """Poll (deadline APPLY_DEADLINE) until the n events of a run are done; fail on any
    that ended other than applied or was retried."""
    def done():
        applied, other, retried = q(
            "SELECT count(*) FILTER (WHERE state = 'applied'), "
            "       count(*) FILTER (WHERE state IN ('ignored', 'dead')), "
            "       count(*) FILTER (WHERE attempts > 0) "
            "  FROM coding_fdw.webhook_event WHERE delivery LIKE '%s-%%'" % tag).split("|")
        if int(other) or int(retried):
            raise RuntimeError("run %s: %s events ignored or dead, %s retried: %s" % (
                tag, other, retried, q("SELECT string_agg(DISTINCT last_error, '; ') FROM "
                                       "coding_fdw.webhook_event WHERE delivery LIKE '%s-%%'" % tag)))
        return int(applied) == n
    wait_for(done, APPLY_DEADLINE, "the %d events of run %s to be applied" % (n, tag), interval=0.2)


class ApplyHeld:
    """While open, the events worker cannot apply: a session holds LOCK TABLE
    mirror.iterations IN EXCLUSIVE MODE (reads pass, the apply's INSERT waits;
    after the worker's lock_timeout, 10 s, the attempt fails and is retried
    with its back-off, which does not touch the listener).
    Diagnostic only: it shows the listener's rate without the apply competing
    for the CPUs.  The lock is confirmed by a reply, released by COMMIT."""

    def __enter__(self):
        self.p = subprocess.Popen(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", DB],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN; LOCK TABLE %s.iterations IN EXCLUSIVE MODE; SELECT 'held';\n"
                           % SCHEMA)
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()   # psql answers once the lock is granted
        if line != "held":
            raise RuntimeError("could not lock %s.iterations: %r" % (SCHEMA, line))
        return self

    def __exit__(self, *exc):
        self.p.stdin.write("COMMIT;\n")
        self.p.stdin.close()
        if self.p.wait(60) != 0:
            raise RuntimeError("the session holding the lock failed")
        return False


def listener_phase(exe, url, tmp, tag, conc, n, code_base, hold=False):
    """Part a): ingest n events, wait until applied, check them; returns a result dict
    with the rate and the per-event latencies (ms).  hold: ingest with the apply
    held back (ApplyHeld), the latencies then meaningless."""
    q("CHECKPOINT")
    if hold:
        with ApplyHeld():
            summary, rows = hook_run(exe, url, tmp, tag, conc, n, code_base)
    else:
        summary, rows = hook_run(exe, url, tmp, tag, conc, n, code_base)
    acked = {d for d, v in rows.items() if v[3]}
    bad = [(d, v[2]) for d, v in rows.items() if not v[3]]
    if bad:
        raise RuntimeError("run %s: %d of %d requests not acknowledged (first: %s)"
                           % (tag, len(bad), n, bad[:5]))
    wait_applied(tag, len(acked))
    stored = {}
    for l in q("SELECT delivery, extract(epoch FROM done_at) FROM coding_fdw.webhook_event "
               "WHERE delivery LIKE '%s-%%'" % tag).splitlines():
        d, done = l.split("|")
        stored[d] = float(done)
    missing = acked - set(stored)
    if missing:
        raise RuntimeError("run %s: %d acknowledged deliveries are not in webhook_event (e.g. %s)"
                           % (tag, len(missing), sorted(missing)[:5]))
    made = int(q("SELECT count(*) FROM %s.iterations WHERE code >= %d AND code < %d"
                 % (SCHEMA, code_base, code_base + n)))
    if made != len(acked):
        raise RuntimeError("run %s: %d acknowledged events but %d new rows in %s.iterations"
                           % (tag, len(acked), made, SCHEMA))
    first_send = min(v[0] for v in rows.values())
    return {"n": len(acked), "secs": summary["seconds"], "rate": summary["events/s"],
            "conns": int(summary["connections"]), "rows": made,
            "ack": [(rows[d][1] - rows[d][0]) * 1000 for d in acked],
            "vis": [(stored[d] - rows[d][0]) * 1000 for d in acked],
            "apply_secs": max(stored.values()) - first_send}


def pgbench_phase(tmp, tag, conc, n):
    """Part b): pgbench's single-row INSERT transactions at the same concurrency."""
    q("CHECKPOINT")
    script = os.path.join(tmp, "insert_%s.sql" % tag)
    # the listener's INSERT of the same body; :k counts per client (pgbench keeps
    # variables per client across transactions), so deliveries and codes are distinct
    template = body(2000000000).replace("2000000000", " :code")
    with open(script, "w", encoding="utf-8") as f:
        f.write("\\set k :k + 1\n"
                "\\set code 1000000000 + :client_id * 1000000 + :k\n"
                "INSERT INTO %s (server_oid, delivery, event, payload) "
                "VALUES (1, '%s-:client_id-:k', 'ITERATION_CREATED', '%s'::jsonb) "
                "ON CONFLICT (server_oid, delivery) DO NOTHING;\n" % (PGB_TABLE, tag, template))
    logdir = os.path.join(tmp, "pgb_" + tag)
    os.mkdir(logdir)
    env = dict(os.environ, PGOPTIONS="-c synchronous_commit=on")
    per_client = n // conc
    cmd = ["pgbench", "-n", "-c", str(conc), "-j", str(min(conc, 4)), "-t", str(per_client),
           "-D", "k=0", "-f", script, "-l", "--log-prefix", os.path.join(logdir, "tx"), DB]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("pgbench failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr))
    tps = None
    for l in r.stdout.splitlines():
        if l.startswith("tps = ") and "without initial connection time" in l:
            tps = float(l.split()[2])
    if tps is None:
        raise RuntimeError("no tps in pgbench's output:\n" + r.stdout)
    lat = []
    for p in glob.glob(os.path.join(logdir, "tx*")):
        with open(p) as f:
            lat += [int(l.split()[2]) / 1000.0 for l in f if l.strip()]
    if len(lat) != per_client * conc:
        raise RuntimeError("pgbench logged %d transactions, expected %d" % (len(lat), per_client * conc))
    rows = int(q("SELECT count(*) FROM %s WHERE delivery LIKE '%s-%%'" % (PGB_TABLE, tag)))
    if rows != per_client * conc:
        raise RuntimeError("pgbench inserted %d rows, expected %d" % (rows, per_client * conc))
    return {"tps": tps, "n": len(lat), "secs": len(lat) / tps, "lat": lat}


def fmt_ms(xs):
    """'p50 / p99' of latencies in ms."""
    return "%.2f / %.2f" % (percentile(xs, 50), percentile(xs, 99))


def main():
    ap = scale_arg()
    ap.add_argument("--events", type=int,
                    help="events (and pgbench transactions) per concurrency (default 20000, quick 3000)")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated list (default 1,8,32)")
    ap.add_argument("--rounds", type=int, help="alternating rounds per concurrency (default 3, quick 1)")
    args = ap.parse_args()
    n_events = args.events or (3000 if args.quick else 20000)
    rounds = args.rounds or (1 if args.quick else 3)
    concs = [int(c) for c in args.concurrency.split(",")]
    header("Benchmark 6: webhook ingest, durable acknowledgements against pgbench single-row "
           "INSERTs (%d events per concurrency, %d round%s)"
           % (n_events, rounds, "s" if rounds > 1 else ""), args.quick)
    settings = check_settings()
    progress("settings: " + ", ".join("%s=%s" % kv for kv in settings.items()))
    tmp = tempfile.mkdtemp(prefix="coding_bench_hook_")
    sim = Sim([("backend", 50)], 1)
    try:
        exe = build_hookload(tmp)
        url = setup(sim)
        progress("subscription synced; listener at %s/..." % url.rsplit("/", 1)[0])

        # warm-up: connections, plans and caches of listener, worker and pgbench
        progress("warm-up: 1000 events at concurrency %d, pgbench 1000 transactions" % TARGET_CONC)
        listener_phase(exe, url, tmp, "warm", TARGET_CONC, 1000, 100000)
        pgbench_phase(tmp, "pgwarm", TARGET_CONC, 1000)

        results = []
        run = 0
        for conc in concs:
            # the machine's fsync latency drifts: the two sides alternate in
            # rounds (L P, P L, L P, ...) and each side's rate is its total
            # events over its total time
            per = n_events // rounds
            per -= per % conc
            lrs, prs = [], []
            for r in range(rounds):
                order = ("L", "P") if r % 2 == 0 else ("P", "L")
                for side in order:
                    run += 1
                    if side == "L":
                        lr = listener_phase(exe, url, tmp, "c%dr%d" % (conc, r), conc, per,
                                            1000000 * run)
                        lrs.append(lr)
                        progress("concurrency %d round %d: listener %.0f events/s (%d events, "
                                 "%d connections), visible p50 %.1f ms p99 %.1f ms"
                                 % (conc, r + 1, lr["rate"], per, lr["conns"],
                                    percentile(lr["vis"], 50), percentile(lr["vis"], 99)))
                    else:
                        pr = pgbench_phase(tmp, "pgb%dr%d" % (conc, r), conc, per)
                        prs.append(pr)
                        progress("concurrency %d round %d: pgbench %.0f tps (%d transactions)"
                                 % (conc, r + 1, pr["tps"], per))
            # diagnostic: the same ingest with the apply held back until it ends
            run += 1
            held = listener_phase(exe, url, tmp, "c%dheld" % conc, conc, per, 1000000 * run,
                                  hold=True)
            progress("concurrency %d, apply held back: listener %.0f events/s"
                     % (conc, held["rate"]))
            results.append((conc, lrs, prs, held))

        rows = []
        summary = {}
        for conc, lrs, prs, held in results:
            l_rate = sum(x["n"] for x in lrs) / sum(x["secs"] for x in lrs)
            p_rate = sum(x["n"] for x in prs) / sum(x["secs"] for x in prs)
            ack = [v for x in lrs for v in x["ack"]]
            vis = [v for x in lrs for v in x["vis"]]
            plat = [v for x in prs for v in x["lat"]]
            applied = sum(x["n"] for x in lrs) / sum(x["apply_secs"] for x in lrs)
            summary[conc] = (l_rate, p_rate, held["rate"])
            rows.append([conc, sum(x["n"] for x in lrs), "%.0f" % l_rate, "%.0f" % p_rate,
                         "%.3f" % (l_rate / p_rate),
                         " / ".join("%.2f" % (a["rate"] / b["tps"]) for a, b in zip(lrs, prs)),
                         fmt_ms(ack), fmt_ms(plat),
                         "%.1f / %.1f" % (percentile(vis, 50), percentile(vis, 99)),
                         "%.0f" % applied])
        print(table(["concurrency", "events", "listener acked/s", "pgbench tps", "ratio",
                     "ratio by round", "ack p50 / p99 (ms)", "pgbench p50 / p99 (ms)",
                     "POST->visible p50 / p99 (ms)", "applied/s"], rows,
                    [">", ">", ">", ">", ">", "<", ">", ">", ">", ">"]))
        print()
        if TARGET_CONC in summary:
            l_rate, p_rate, _ = summary[TARGET_CONC]
            print("at concurrency %d: listener %.0f events/s / pgbench %.0f tps = %.3f "
                  "(target >= 1: %s)" % (TARGET_CONC, l_rate, p_rate, l_rate / p_rate,
                                        "met" if l_rate >= p_rate else "NOT met"))
        print("Diagnostic, not the figure: one more listener round per concurrency with the "
              "events worker's apply held back (a session holds LOCK TABLE %s.iterations IN "
              "EXCLUSIVE MODE during the ingest), against the same pgbench rate: %s"
              % (SCHEMA, "; ".join("concurrency %d: %.0f events/s = %.3f x pgbench"
                                   % (c, v[2], v[2] / v[1]) for c, v in summary.items())))
        print("checked: every request answered 200 {\"ok\":true}; every acknowledged delivery "
              "in coding_fdw.webhook_event, applied, and its row in %s.iterations (%d rows); "
              "hookload opened one connection per slot (%s)"
              % (SCHEMA, sum(x["rows"] for r in results for x in r[1] + [r[3]]),
                 ", ".join("%d at concurrency %d" % (r[1][0]["conns"], r[0]) for r in results)))
        print("settings: " + ", ".join("%s = %s" % kv for kv in settings.items()))
        print()
    finally:
        sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        psql("DROP EXTENSION IF EXISTS coding_fdw CASCADE", db=DB, check=False)
        psql("DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA, db=DB, check=False)
        psql("DROP TABLE IF EXISTS %s" % PGB_TABLE, db=DB, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
