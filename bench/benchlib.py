"""benchlib: helpers shared by the benchmarks in bench/*.py.

The benchmarks run inside a cluster made by pg_virtualenv (PG* variables
set; bench/run_bench.sh does it), talk to PostgreSQL through psql (no
driver needed) and start their own simulated Coding server
(test/coding_sim.py) with a fixed seed, so every run sees the same data.
Progress goes to stderr; the report (the tables that end up in
bench/results.txt) goes to stdout.  Python standard library only.
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "test", "coding_sim.py")
TOKEN = "secret-token"
PAGE = 500          # Coding's largest PageSize, coding_fdw's default


def progress(msg):
    """One progress line on stderr, with the time since the script started."""
    sys.stderr.write("  [%6.1fs] %s\n" % (time.monotonic() - _T0, msg))
    sys.stderr.flush()


_T0 = time.monotonic()


def pages(n, size=PAGE):
    """List calls needed to read n rows (an empty result still costs one call)."""
    return max(1, math.ceil(n / size))


def median(xs):
    return statistics.median(xs)


class Sim:
    """A simulated Coding server in a child process on an ephemeral port."""

    def __init__(self, projects, seed, *extra, ready_timeout=600):
        self.dir = tempfile.mkdtemp(prefix="coding_bench_")
        port_file = os.path.join(self.dir, "port")
        args = [sys.executable, SIM, "--host", "127.0.0.1", "--port", "0",
                "--port-file", port_file, "--team", "acme", "--token", TOKEN,
                "--seed", str(seed), "--quiet"]
        for name, n in projects:
            args += ["--project", "%s:%d" % (name, n)]
        args += list(extra)
        self.logfile = open(os.path.join(self.dir, "sim.log"), "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("simulated server exited with %s (log %s)"
                                   % (self.proc.returncode, self.logfile.name))
            try:
                with open(port_file) as f:
                    port = f.read().strip()
                if port:
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("simulated server did not start in %ss" % ready_timeout)
            time.sleep(0.05)
        self.port = int(port)
        self.control = "http://127.0.0.1:%d" % self.port
        self.url = self.control + "/open-api"
        progress("simulated Coding server on port %d (%s, seed %s, started in %.1fs)"
                 % (self.port, ", ".join("%s:%d" % p for p in projects), seed,
                    time.monotonic() - t0))

    def call(self, method, path, body=None, timeout=300):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def clear_log(self):
        self.call("DELETE", "/_sim/log")

    def log(self, action=None):
        q = "" if action is None else "?action=" + action
        return self.call("GET", "/_sim/log" + q)["requests"]

    def count(self, action=None):
        q = "" if action is None else "?action=" + action
        return self.call("GET", "/_sim/log/count" + q)["count"]

    def dump(self, project):
        return self.call("GET", "/_sim/dump?project=" + project)["projects"][project]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logfile.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def psql(sql, db=None, timeout=3600, check=True):
    """Run SQL through psql (unaligned, tuples only) in a fresh backend; return stdout."""
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    if db:
        cmd += ["-d", db]
    r = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql.strip()[:300], r.stderr.strip()))
    return r.stdout if check else r


TIME_RE = re.compile(r"^Time: ([0-9.]+) ms", re.M)


def timed_psql(statements, db):
    """Run statements in ONE session with \\timing; return (stdout, [ms per statement])."""
    out = psql("\\timing on\n" + "".join(s.rstrip().rstrip(";") + ";\n" for s in statements), db=db)
    times = [float(x) for x in TIME_RE.findall(out)]
    if len(times) != len(statements):
        raise RuntimeError("expected %d timings, got %d:\n%s" % (len(statements), len(times), out))
    return out, times


def setup_db(db, sim, project, server_options=""):
    """A fresh database with coding_fdw, a server on sim and the imported tables in
    schema coding.  server_options: extra ", name 'value'" pairs."""
    psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    psql("CREATE DATABASE %s" % db)
    psql("""
        CREATE EXTENSION coding_fdw;
        CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
          OPTIONS (team 'acme', project '%s', api_url '%s'%s);
        CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token '%s');
        CREATE SCHEMA coding;
        IMPORT FOREIGN SCHEMA %s FROM SERVER coding INTO coding;
    """ % (project, sim.url, server_options, TOKEN, project), db=db)


def drop_db(db):
    psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db, check=False)


def table(headers, rows, align=None):
    """A plain-text table (also valid Markdown)."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    align = align or ["<"] * len(headers)

    def line(cells):
        return "| " + " | ".join(("{:%s%d}" % (a, w)).format(c)
                                 for c, a, w in zip(cells, align, widths)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == ">" else ("-" * (w + 2))
                         for a, w in zip(align, widths)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def scale_arg():
    """An argument parser with --quick (small scale smoke test)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small scale, for a smoke test")
    return ap


def header(title, quick):
    print("## %s (%s scale)" % (title, "quick" if quick else "full"))
    print()
