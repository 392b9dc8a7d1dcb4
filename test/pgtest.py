"""pgtest: small helpers shared by the script tests in test/t_*.py.

The tests run inside the cluster that test/run_tests.sh makes with
pg_virtualenv (PG* variables set), talk to PostgreSQL through psql (no
driver needed) and start their own simulated Coding server.  Nothing here
sleeps as synchronisation: every wait polls a condition until a deadline.
"""
import contextlib
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "test", "coding_sim.py")
# TEST_TIME_SCALE stretches every deadline: test/memcheck.sh runs the server
# under valgrind, where CPU work is 20-50 times slower
TIME_SCALE = float(os.environ.get("TEST_TIME_SCALE", "1"))


# TRACE_SLOW=SECONDS prints every wait and every psql call that took
# longer, with the test line it came from: for finding where a slow check
# spends its time
TRACE_SLOW = float(os.environ.get("TRACE_SLOW", "0"))


def scaled(seconds):
    """A deadline in seconds, stretched by TEST_TIME_SCALE."""
    return seconds * TIME_SCALE


def trace_slow(start, what):
    """Under TRACE_SLOW, report a call that took longer than it."""
    took = time.monotonic() - start
    if TRACE_SLOW and took >= TRACE_SLOW:
        import traceback
        callers = [f for f in traceback.extract_stack()[:-2] if f.filename != __file__][-2:]
        where = " < ".join("%s:%d" % (os.path.basename(f.filename), f.lineno) for f in reversed(callers))
        print("     slow: %.1fs at %s %s" % (took, where, " ".join(str(what).split())[:100]))


def wait_until(condition, timeout, what, interval=0.02):
    """Poll condition() until it returns a true value or timeout seconds
    (stretched by TEST_TIME_SCALE) pass."""
    timeout = scaled(timeout)
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = condition()
        if value:
            trace_slow(start, what)
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


class Sim:
    """A simulated Coding server in a child process, on an ephemeral port."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="coding_sim_")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--host", "127.0.0.1", "--port", "0",
             "--port-file", port_file, "--quiet"] + list(args),
            stdout=self.log, stderr=subprocess.STDOUT)

        def port():
            if self.proc.poll() is not None:
                raise AssertionError("simulated server exited: %s" % self.proc.returncode)
            try:
                with open(port_file) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None
        self.port = wait_until(port, 120, "the simulated server to listen")
        self.control = "http://127.0.0.1:%s" % self.port
        self.url = self.control + "/open-api"

    def call(self, method, path, body=None):
        """Call a control endpoint; return the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def fault(self, **spec):
        self.call("POST", "/_sim/fault", spec)

    def wait_held(self, action, what, timeout=20):
        """Wait until a request for action is being held by a "delay"
        fault (the log entry is written before the delay)."""
        wait_until(lambda: any(e.get("fault") == "delay" for e in
                               self.call("GET", "/_sim/log?action=" + action)["requests"]), timeout, what)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def server_log():
    """The cluster's log file as pg_virtualenv set it up."""
    root = os.environ.get("PG_CLUSTER_CONF_ROOT", "")
    files = glob.glob(os.path.join(os.path.dirname(root), "log", "postgresql-*.log"))
    assert files, "no server log next to %s" % root
    with open(files[0], errors="replace") as f:
        return f.read()


def psql(sql, db=None, check=True, timeout=600):
    """Run SQL with psql (unaligned, tuples only); return stdout."""
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]
    if db:
        cmd += ["-d", db]
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(timeout))
    trace_slow(start, sql)
    if check and r.returncode != 0:
        raise AssertionError("psql failed: %s\n%s" % (sql[:200], r.stderr))
    return r.stdout.strip() if check else r


@contextlib.contextmanager
def open_transaction(sql, db=None, end="COMMIT"):
    """A session that runs BEGIN; sql and keeps its transaction (and its
    locks) open for the with block, then ends it with end."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + (["-d", db] if db else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        p.stdin.write("BEGIN; %s; SELECT 'open transaction ready';\n" % sql)
        p.stdin.flush()
        seen = []
        for line in p.stdout:          # psql ends (EOF) on an error
            if line.strip() == "open transaction ready":
                break
            seen.append(line)
        else:
            raise AssertionError("could not open the transaction: %s" % "".join(seen))
        yield p
    finally:
        if p.poll() is None:
            p.stdin.write(end + ";\n")
            p.stdin.close()
            p.wait(scaled(20))


def setup_db(name, sim, project, extra_server_options=""):
    """A fresh database with coding_fdw, a server on sim and imported tables."""
    psql("DROP DATABASE IF EXISTS %s" % name)
    psql("CREATE DATABASE %s" % name)
    psql("""
        CREATE EXTENSION coding_fdw;
        CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
          OPTIONS (team 'acme', project '%s', api_url '%s', rate_limit '100000' %s);
        CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
        CREATE SCHEMA coding;
        IMPORT FOREIGN SCHEMA %s FROM SERVER coding INTO coding;
    """ % (project, sim.url, extra_server_options, project), db=name)


@contextlib.contextmanager
def scenario(db, *sim_args):
    """A simulated server for one test script; on the way out it is stopped
    and the script's database dropped, whatever happened."""
    sim = Sim(*sim_args)
    try:
        yield sim
    finally:
        sim.stop()
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db, check=False)


class Results:
    """Counts checks and prints the closing 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        start = time.monotonic()
        try:
            fn()
        except Exception as e:  # a failed check must not stop the others
            self.failed += 1
            import traceback
            where = traceback.extract_tb(e.__traceback__)[-1]
            print("FAIL %s: %s (%s line %d: %s)" % (name, e or type(e).__name__,
                                                   os.path.basename(where.filename), where.lineno, where.line))
        else:
            self.passed += 1
            print("ok   %s (%.1fs)" % (name, time.monotonic() - start))
        sys.stdout.flush()

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
