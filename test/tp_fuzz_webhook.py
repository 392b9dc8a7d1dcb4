#!/usr/bin/env python3
"""tp_fuzz_webhook: generated hostile requests against the webhook
listener (issue #7, fuzzing): random bytes, truncated and deeply nested
JSON, wrong types, huge strings, unknown events, bad headers, wrong methods
and paths, and slow senders that never finish.  Every request must get its
documented answer (interface.md §6, README "What each answer means"), the
listener must neither crash nor restart, keep serving while slow senders
hold connections, and every stored malformed event must end applied,
ignored or as a dead letter with its error: nothing silently lost.

FUZZ_COUNT sets the number of generated requests (default 10000); the
seed is printed and FUZZ_SEED reproduces a run.
"""
import http.client
import json
import os
import random
import socket
import time
import urllib.parse

from pgtest import Results, Sim, psql, wait_until

DB = "postgres"


def q(sql):
    return psql(sql, db=DB)


def nested(depth):
    return "[" * depth + "]" * depth


def generate(rng, n):
    """(name, method, path_kind, headers, body, allowed statuses, stored?)"""
    cases = []
    base_event = {"event": "FUZZ_UNKNOWN_EVENT", "project": {"id": 1}}
    for i in range(n):
        kind = rng.choice(["random", "truncated", "deep", "deep_ok", "types", "huge", "too_big",
                           "unknown", "bad_delivery", "long_header", "method", "path", "form",
                           "malformed_entity", "utf8"])
        h = {"Content-Type": "application/json", "X-Coding-Delivery": "fuzz-%d" % i}
        method, path = "POST", "key"
        if kind == "random":
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
            ok = {400}
        elif kind == "truncated":
            full = json.dumps(dict(base_event, issue={"code": rng.randint(1, 99), "title": "t" * 50})).encode()
            body = full[:rng.randint(1, len(full) - 1)]
            ok = {400}
        elif kind == "deep":
            body = ('{"event":"FUZZ_X","x":%s}' % nested(rng.randint(1100, 5000))).encode()
            ok = {400}
        elif kind == "deep_ok":
            body = ('{"event":"FUZZ_X","x":%s}' % nested(rng.randint(10, 200))).encode()
            ok = {200}
        elif kind == "types":
            body = json.dumps(rng.choice([{"event": 123}, {"event": None}, {"event": ["ISSUE_UPDATED"]},
                                          {"event": ""}, [], "str", 42, None])).encode()
            ok = {400}
        elif kind == "huge":
            body = json.dumps(dict(base_event, blob="x" * rng.randint(100000, 900000))).encode()
            ok = {200}
        elif kind == "too_big":
            body = b'{"event":"FUZZ","blob":"' + b"y" * (1024 * 1024 + rng.randint(1, 5000)) + b'"}'
            ok = {413}
        elif kind == "unknown":
            body = json.dumps(dict(base_event, event="EV_%d" % rng.randint(0, 10 ** 6))).encode()
            ok = {200}
        elif kind == "bad_delivery":
            h["X-Coding-Delivery"] = rng.choice(["d" * 300, ""])
            body = json.dumps(base_event).encode()
            ok = {400} if h["X-Coding-Delivery"] else {200, 400}
        elif kind == "long_header":
            h["X-Fuzz"] = "h" * rng.randint(40000, 60000)
            body = json.dumps(base_event).encode()
            ok = {431, 413, 400}
        elif kind == "method":
            method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"])
            body = json.dumps(base_event).encode()
            ok = {405}
        elif kind == "path":
            path = rng.choice(["/", "/coding_fdw/webhook/", "/coding_fdw/webhook/../x",
                               "/coding_fdw/webhook/" + "a" * 200, "/coding_fdw/webhook/%00",
                               "/coding_fdw/webhook/" + "f" * 64])
            body = json.dumps(base_event).encode()
            ok = {404, 400}
        elif kind == "form":
            h["Content-Type"] = "application/x-www-form-urlencoded"
            good = rng.random() < 0.5
            payload = json.dumps(base_event) if good else "{broken"
            body = urllib.parse.urlencode({"payload": payload, "other": "x"}).encode()
            ok = {200} if good else {400}
        elif kind == "malformed_entity":
            h["X-Coding-Service-Hook-Event"] = rng.choice(["ITERATION_UPDATED", "MEMBER_CREATED", "ISSUE_UPDATED"])
            body = json.dumps({"iteration": rng.choice(["x", 1, [], {"code": "abc"}, {"code": -5}]),
                               "member": {"id": "nope"}, "issue": {"code": {"x": 1}}}).encode()
            ok = {200}
        else:  # utf8
            body = b'{"event":"FUZZ","s":"' + bytes([0xc3, 0x28, 0xff]) + b'"}'
            ok = {400}
        cases.append((kind, method, path, h, body, ok))
    return cases


def answer_left(conn, method):
    """The status of an answer already on conn's socket, None if there is none."""
    if conn.sock is None:
        return None
    try:
        r = http.client.HTTPResponse(conn.sock, method=method)
        r.begin()
        return r.status
    except (OSError, http.client.HTTPException):
        return None


def main():
    res = Results()
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(10 ** 9)))
    count = int(os.environ.get("FUZZ_COUNT", "10000"))
    print("seed %d, %d requests" % (seed, count))
    rng = random.Random(seed)
    sim = Sim("--team", "acme", "--project", "backend:20", "--token", "secret-token", "--seed", "5")
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("DROP SCHEMA IF EXISTS fz CASCADE")
        q("CREATE EXTENSION coding_fdw")
        q("""CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
               OPTIONS (team 'acme', project 'backend', api_url '%s', rate_limit '100000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');""" % sim.url)
        q("SELECT coding_fdw.sync_start('coding', 'fz', 'webhook')")
        assert q("SELECT coding_fdw.wait_for_sync('coding')") == "t"
        q("ALTER SYSTEM SET coding_fdw.webhook_max_attempts = 1")
        q("SELECT pg_reload_conf()")
        url = urllib.parse.urlsplit(q("SELECT coding_fdw.webhook_url('coding')"))
        pid = q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw webhook listener'")
        started = q("SELECT pg_postmaster_start_time()")
        cases = generate(rng, count)
        counts = {}

        def run_all():
            conn = None
            wrong = []
            for kind, method, path, h, body, ok in cases:
                p = url.path if path == "key" else path
                status = None
                for _ in range(2):       # one reconnect if the server closed a kept-alive connection
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                        try:
                            conn.request(method, p, body, h)
                        except (BrokenPipeError, ConnectionResetError):
                            # the listener answered (431 for a header past its
                            # limit) and closed while the rest was still being
                            # sent: read the answer it left on the socket
                            r = answer_left(conn, method)
                            if r is None:
                                raise
                            status = r
                            conn.close()
                            conn = None
                            break
                        r = conn.getresponse()
                        r.read()
                        status = r.status
                        if r.getheader("Connection", "").lower() == "close":
                            conn.close()
                            conn = None
                        break
                    except (OSError, http.client.HTTPException) as e:
                        if conn is not None:
                            conn.close()
                        conn = None
                        status = "error: %s" % type(e).__name__
                counts[(kind, status)] = counts.get((kind, status), 0) + 1
                if status not in ok:
                    wrong.append((kind, method, p[:60], status, sorted(ok)))
            for k in sorted(counts, key=str):
                print("   %-18s %-24s %d" % (k[0], k[1], counts[k]))
            assert not wrong, "%d unexpected answers, e.g. %s" % (len(wrong), wrong[:5])
        res.check("%d generated requests each get their documented answer" % count, run_all)

        def slow_senders():
            # connections that send half a request and stall, or trickle
            held = []
            for i in range(40):
                s = socket.create_connection((url.hostname, url.port))
                s.sendall(b"POST " + url.path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
                if i % 2:
                    s.sendall(b"\r\n{\"event\":")
                held.append(s)
            t0 = time.monotonic()
            c = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
            c.request("GET", url.path)
            assert c.getresponse().status == 200
            assert time.monotonic() - t0 < 2, "the listener stalled behind slow senders"
            for s in held:
                s.close()
        res.check("slow senders holding 40 connections do not stop the listener answering", slow_senders)

        def nothing_crashed():
            assert q("SELECT pg_postmaster_start_time()") == started, "the cluster restarted"
            now = q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw webhook listener'")
            assert now == pid, "the listener restarted (%s -> %s)" % (pid, now)
            stored = sum(v for (k, st), v in counts.items() if st == 200 and k not in ("bad_delivery",))
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_inbox") == "0", 120,
                       "every stored event applied, ignored or dead")
            states = dict(x.split("|") for x in q("SELECT state, count(*) FROM coding_fdw.webhook_event "
                                                  "GROUP BY 1").splitlines())
            total = sum(int(v) for v in states.values())
            assert total >= stored, (states, stored)
            dead = int(states.get("dead", 0))
            expected_dead = counts.get(("malformed_entity", 200), 0)
            assert dead == expected_dead, (states, expected_dead)
            assert q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE error IS NULL") == "0"
        res.check("no crash, no restart; every stored event ends applied, ignored or a dead letter with its error",
                  nothing_crashed)
    finally:
        sim.stop()
        psql("ALTER SYSTEM RESET coding_fdw.webhook_max_attempts", db=DB, check=False)
        psql("SELECT pg_reload_conf()", db=DB, check=False)
        psql("DROP EXTENSION IF EXISTS coding_fdw CASCADE", db=DB, check=False)
        psql("DROP SCHEMA IF EXISTS fz CASCADE", db=DB, check=False)
    res.finish()


if __name__ == "__main__":
    main()
