#!/usr/bin/env python3
"""tp_sync: the sync engine's first slice, in a cluster with
shared_preload_libraries = coding_fdw (the worker serves the database named
by coding_fdw.database, 'postgres' by default, which this test uses).

Checks: sync_start refuses another database; the worker reloads on SIGHUP,
stops promptly on SIGTERM and comes back; the full sync equals the
foreign tables in every column; creates, updates and deletes on the server
arrive after sync_now with exact counts in sync_status; sync_now(full)
removes issues Coding deleted; iteration and member diffs are exact; an
outage shows in sync_status and heals; two subscriptions stay separate;
sync_stop ends a subscription and keeps (or drops) the tables.  Every wait
is wait_for_sync or a polled condition with a deadline.
"""
import json
import os
import re
import signal
import subprocess
import time

from pgtest import Results, Sim, open_transaction, psql, server_log, wait_until

DB = "postgres"


def q(sql):
    return psql(sql, db=DB)


def status(server, table):
    """sync_status of one table as a dict."""
    out = q("SELECT row_to_json(s) FROM coding_fdw.sync_status s "
            "WHERE server = '%s' AND table_name = '%s'" % (server, table))
    return json.loads(out)


def mirror_diff(schema, table, src, skip=()):
    """Rows differing between a local table (without synced_* and the
    columns in skip) and its foreign source, both ways."""
    skipped = ", ".join("'%s'" % c for c in ("synced_at", "synced_by") + tuple(skip))
    cols = q("SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
             "WHERE attrelid = '%s.%s'::regclass AND attnum > 0 AND NOT attisdropped "
             "AND attname NOT IN (%s)" % (schema, table, skipped))
    return int(q("SELECT (SELECT count(*) FROM (SELECT %s FROM %s.%s EXCEPT SELECT %s FROM %s.%s) a) "
                 "+ (SELECT count(*) FROM (SELECT %s FROM %s.%s EXCEPT SELECT %s FROM %s.%s) b)"
                 % (cols, schema, table, cols, src, table, cols, src, table, cols, schema, table)))


def wait_for_sync(server, timeout="60 s"):
    return q("SELECT coding_fdw.wait_for_sync('%s', '%s')" % (server, timeout)) == "t"


def post_event(hook, payload, delivery):
    """Deliver one webhook event to a Service URL, as Coding would; 200."""
    import urllib.request
    req = urllib.request.Request(hook, data=json.dumps(payload).encode(), method="POST", headers={
        "Content-Type": "application/json", "X-Coding-Delivery": delivery})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def main():
    res = Results()
    sim = Sim("--team", "acme", "--project", "backend:700", "--project", "mobile:40",
              "--project", "big:20000", "--token", "secret-token", "--seed", "9",
              "--limited-token", "limited:issues")
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("CREATE EXTENSION coding_fdw")
        for name, project in (("coding", "backend"), ("mob", "mobile"), ("big", "big")):
            q("CREATE SERVER %s FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', "
              "project '%s', api_url '%s', rate_limit '100000')" % (name, project, sim.url))
            q("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token 'secret-token')" % name)
        q("CREATE SCHEMA src; IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO src")

        def other_database():
            psql("DROP DATABASE IF EXISTS tp_sync_other")
            psql("CREATE DATABASE tp_sync_other")
            try:
                psql("CREATE EXTENSION coding_fdw; CREATE SERVER x FOREIGN DATA WRAPPER coding_fdw "
                     "OPTIONS (team 'acme', project 'backend')", db="tp_sync_other")
                r = psql("SELECT coding_fdw.sync_start('x', 'mirror')", db="tp_sync_other", check=False)
                assert r.returncode != 0 and 'ERROR:  the coding_fdw workers serve database "%s", not this one\n' \
                    "HINT:  They serve one database: subscribe there, or set coding_fdw.database = " \
                    "'tp_sync_other' in postgresql.conf and restart the server." % DB in r.stderr, r.stderr
            finally:
                psql("DROP DATABASE IF EXISTS tp_sync_other")
        res.check("sync_start in a database the worker does not serve says what to configure",
                  other_database)

        def full_sync():
            q("SELECT coding_fdw.sync_start('coding', 'mirror', poll_interval => '2 s')")
            assert wait_for_sync("coding"), "the full sync did not finish"
            for t in ("issues", "iterations", "project_members"):
                n = mirror_diff("mirror", t, "src")
                assert n == 0, "%s differs from Coding in %d rows" % (t, n)
            st = status("coding", "issues")
            assert st["rows"] == 700 and st["full_inserted"] == 700, st
            assert st["state"] == "idle" and st["last_error"] is None, st
            assert q("SELECT DISTINCT synced_by FROM mirror.issues") == "full"
            assert q("SELECT count(*) FROM mirror.issues WHERE epic IS NOT NULL") != "0"
        res.check("sync_start: the full sync equals Coding's data in every column (detail columns too)",
                  full_sync)

        def second_start():
            # refused before it creates anything (it used to fail on the
            # source schema the first call had made)
            r = subprocess.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", DB, "-c",
                                "SELECT coding_fdw.sync_start('coding', 'mirror2')"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode != 0
            assert ('ERROR:  42710: server "coding" already has a subscription\n'
                    "HINT:  coding_fdw.sync_stop() ends it.") in r.stderr, r.stderr
            assert q("SELECT count(*) FROM pg_namespace WHERE nspname = 'mirror2'") == "0"
            assert q("SELECT count(*) FROM coding_fdw.sync_status WHERE server = 'coding'") == "3"
        res.check("a second sync_start for the same server: 42710 with a hint, nothing created",
                  second_start)

        def start_refusals():
            # each refused before anything is created, with what to do
            q("CREATE SERVER noproj FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', api_url '%s'); "
              "CREATE SCHEMA taken; CREATE TABLE taken.iterations (x int)" % sim.url)
            try:
                for sql, want in (
                        ("SELECT coding_fdw.sync_start('noproj', 'np')",
                         'ERROR:  HV00J: server "noproj" has no "project" option\n'
                         "HINT:  A subscription follows the server's project: "
                         "ALTER SERVER noproj OPTIONS (ADD project 'NAME')."),
                        ("SELECT coding_fdw.sync_start('mob', 'coding_fdw')",
                         'ERROR:  3F000: schema "coding_fdw" cannot hold synced tables\n'
                         "HINT:  Choose a schema of your own."),
                        ("SELECT coding_fdw.sync_start('mob', 'taken')",
                         'ERROR:  42P07: schema "taken" already has a table issues, iterations or '
                         "project_members\nHINT:  Sync into another schema, or drop those tables first "
                         "(sync_stop(server, drop_tables => true) drops a subscription's own).")):
                    r = subprocess.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", DB, "-c", sql],
                                       capture_output=True, text=True, timeout=60)
                    assert r.returncode != 0 and want in r.stderr, (sql, r.stderr)
                assert q("SELECT count(*) FROM pg_namespace WHERE nspname = 'np' OR nspname IN "
                         "(SELECT format('coding_fdw_src_%s', oid) FROM pg_foreign_server "
                         "WHERE srvname IN ('noproj', 'mob'))") == "0"
                assert q("SELECT count(*) FROM pg_tables WHERE schemaname IN ('taken', 'coding_fdw') "
                         "AND tablename IN ('issues', 'project_members')") == "0"
                assert q("SELECT count(*) FROM coding_fdw.sync_status WHERE server IN ('noproj', 'mob')") == "0"
                # a source schema left by a restored dump (or DROP EXTENSION)
                # under this server's oid: said so, not "already exists" alone
                mob = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'mob'")
                q("CREATE SCHEMA coding_fdw_src_%s; CREATE TABLE coding_fdw_src_%s.issues (x int)" % (mob, mob))
                r = subprocess.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", DB, "-c",
                                    "SELECT coding_fdw.sync_start('mob', 'fresh_mirror')"],
                                   capture_output=True, text=True, timeout=60)
                want = ('ERROR:  42P06: schema "coding_fdw_src_%s" already exists\n'
                        "HINT:  It is left from an earlier subscription (a restored dump, or DROP EXTENSION): "
                        "DROP SCHEMA coding_fdw_src_%s CASCADE, then sync_start again." % (mob, mob))
                assert r.returncode != 0 and want in r.stderr, r.stderr
                assert q("SELECT count(*) FROM pg_namespace WHERE nspname = 'fresh_mirror'") == "0"
            finally:
                q("DROP SERVER noproj; DROP SCHEMA taken CASCADE; "
                  "DROP SCHEMA IF EXISTS coding_fdw_src_%s CASCADE" % q("SELECT oid FROM pg_foreign_server "
                                                                        "WHERE srvname = 'mob'"))
        res.check("sync_start refuses a server without project, the extension's schema, taken tables "
                  "and a left-over source schema",
                  start_refusals)

        def cheap_failure():
            # a token that may read issues but not iterations: the sync
            # fails on the iterations, before any issue page or DescribeIssue
            # (it used to read every issue first, and again every 30 s);
            # each further failure waits twice as long
            q("CREATE SERVER lim FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'mobile', "
              "api_url '%s', rate_limit '100000'); "
              "CREATE USER MAPPING FOR CURRENT_USER SERVER lim OPTIONS (token 'limited')" % sim.url)
            try:
                sim.call("DELETE", "/_sim/log")
                q("SELECT coding_fdw.sync_start('lim', 'lim_mirror', poll_interval => '1 s')")
                first = wait_until(lambda: q("SELECT last_error_at FROM coding_fdw.sync_status "
                                             "WHERE server = 'lim' AND table_name = 'issues' AND state = 'error'"),
                                   30, "the failure in sync_status")
                second = wait_until(lambda: (lambda t: t if t and t != first else None)(
                    q("SELECT last_error_at FROM coding_fdw.sync_status WHERE server = 'lim' "
                      "AND table_name = 'issues'")), 30, "a second failure")
                wait = float(q("SELECT extract(epoch FROM next_poll - last_error_at) FROM coding_fdw.sync_status "
                               "WHERE server = 'lim' AND table_name = 'issues'"))
                assert 1.5 <= wait <= 2.5, "the second retry waits %.2f s, not 2 s" % wait
                mobile = [e["action"] for e in sim.call("GET", "/_sim/log")["requests"]
                          if isinstance(e.get("body"), dict) and e["body"].get("ProjectName") == "mobile"]
                assert "DescribeIterationList" in mobile, mobile
                assert not {"DescribeIssue", "DescribeIssueListWithPage"} & set(mobile), mobile
                assert "permission" in q("SELECT last_error FROM coding_fdw.sync_status "
                                         "WHERE server = 'lim' AND table_name = 'issues'")
            finally:
                q("SELECT coding_fdw.sync_stop('lim', drop_tables => true) FROM coding_fdw.sync_status "
                  "WHERE server = 'lim' LIMIT 1; DROP SCHEMA IF EXISTS lim_mirror CASCADE; DROP SERVER lim CASCADE")
        res.check("a sync the token cannot read fails on the cheap tables first, retries back off",
                  cheap_failure)

        def deltas():
            # columns a user added to the synced tables (notes of her own)
            # are left alone: the apply used to name them in its reads of
            # Coding and failed (column "note" does not exist)
            q("ALTER TABLE mirror.issues ADD COLUMN note text DEFAULT 'mine'; "
              "ALTER TABLE mirror.iterations ADD COLUMN note text; UPDATE mirror.iterations SET note = 'kept'")
            try:
                before = status("coding", "issues")
                sim.call("POST", "/_sim/projects/backend/issues", {"Name": "new from Coding", "Type": "DEFECT"})
                sim.call("PATCH", "/_sim/projects/backend/issues/5", {"Name": "renamed in Coding"})
                # a sub-task and an epic: their copies in other issues follow
                child = q("SELECT min(code) FROM mirror.issues WHERE parent_code IS NOT NULL AND code <> 5")
                epic = q("SELECT min((epic->>'Code')::int) FROM mirror.issues WHERE epic IS NOT NULL")
                sim.call("PATCH", "/_sim/projects/backend/issues/%s" % child, {"Name": "sub-task renamed"})
                sim.call("PATCH", "/_sim/projects/backend/issues/%s" % epic, {"Name": "epic renamed"})
                sim.call("PATCH", "/_sim/projects/backend/iterations/1", {"Name": "renamed sprint"})
                sim.call("DELETE", "/_sim/projects/backend/iterations/2")
                sim.call("DELETE", "/_sim/log")
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding")
                # the copies are read with DescribeIssue, and the renamed
                # iteration's issues with one list of them: every list read of
                # this poll is filtered (UPDATED_AT, ITERATION), none lists the
                # whole project
                lists = sim.call("GET", "/_sim/log?action=DescribeIssueListWithPage")["requests"]
                assert lists and all(any(c.get("Key") in ("UPDATED_AT", "ITERATION")
                                         for c in e["body"].get("Conditions", []))
                                     for e in lists), [e["body"] for e in lists]
                after = status("coding", "issues")
                assert after["poll_inserted"] - before["poll_inserted"] == 1, after
                # issue 5 changed, and the deleted iteration moved its issues out
                assert after["poll_updated"] - before["poll_updated"] >= 1, after
                assert q("SELECT name FROM mirror.issues WHERE code = 5") == "renamed in Coding"
                assert q("SELECT synced_by FROM mirror.issues WHERE code = 5") == "poll"
                it = status("coding", "iterations")
                assert it["poll_updated"] == 1 and it["poll_deleted"] == 1 and it["poll_inserted"] == 0, it
                # the iteration's name in raw, sub_tasks, parent and epic change
                # without the issues' UpdatedAt: they follow what they copy
                assert q("SELECT count(*) FROM mirror.issues WHERE sub_tasks @> '[{\"Name\": \"sub-task renamed\"}]'") \
                    != "0"
                assert q("SELECT count(*) FROM mirror.issues WHERE epic->>'Name' = 'epic renamed'") != "0"
                assert q("SELECT count(*) FROM mirror.issues WHERE raw->'Iteration'->>'Name' = 'renamed sprint'") \
                    != "0"
                n = mirror_diff("mirror", "issues", "src", skip=("note",))
                assert n == 0, "issues differ in %d rows: %s" % (n, q(
                    "SELECT string_agg(format('%s: local %s/%s/%s, Coding %s/%s/%s', m.code, m.name, "
                    "m.iteration_code, m.updated_at, s.name, s.iteration_code, s.updated_at), '; ') "
                    "FROM mirror.issues m FULL JOIN src.issues s USING (code) "
                    "WHERE m.updated_at IS DISTINCT FROM s.updated_at OR m.iteration_code IS DISTINCT FROM "
                    "s.iteration_code OR m.name IS DISTINCT FROM s.name"))
                n = mirror_diff("mirror", "iterations", "src", skip=("note",))
                assert n == 0, "iterations differ in %d rows" % n
                assert q("SELECT (SELECT count(*) FROM mirror.issues WHERE note IS DISTINCT FROM 'mine') "
                         "+ (SELECT count(*) FROM mirror.iterations WHERE note IS DISTINCT FROM 'kept')") == "0"
            finally:
                q("ALTER TABLE mirror.issues DROP COLUMN IF EXISTS note; "
                  "ALTER TABLE mirror.iterations DROP COLUMN IF EXISTS note")
        res.check("poll: a create, an update and iteration changes arrive with exact counts; "
                  "columns the user added are left alone", deltas)

        def reconcile():
            sim.call("DELETE", "/_sim/projects/backend/issues/7")
            q("SELECT coding_fdw.sync_now('coding')")
            assert wait_for_sync("coding")
            # a delta poll cannot see a delete
            assert q("SELECT count(*) FROM mirror.issues WHERE code = 7") == "1"
            before = status("coding", "issues")["full_deleted"]
            q("SELECT coding_fdw.sync_now('coding', \"full\" => true)")
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FROM mirror.issues WHERE code = 7") == "0"
            assert status("coding", "issues")["full_deleted"] - before == 1
            assert mirror_diff("mirror", "issues", "src") == 0
        res.check("sync_now(full => true) removes the issue Coding deleted", reconcile)

        def members():
            sim.call("DELETE", "/_sim/projects/backend/members/%s" %
                     q("SELECT max(id) FROM mirror.project_members WHERE id NOT IN "
                       "(SELECT creator_id FROM mirror.issues WHERE creator_id IS NOT NULL)"))
            q("SELECT coding_fdw.sync_now('coding')")
            assert wait_for_sync("coding")
            st = status("coding", "project_members")
            assert st["poll_deleted"] == 1 and st["poll_updated"] == 0, st
            assert mirror_diff("mirror", "project_members", "src") == 0
        res.check("members: a removed member is deleted, nothing else counted", members)

        def worker_visible():
            out = q("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'coding_fdw sync worker' "
                    "AND application_name = 'coding_fdw sync worker'")
            assert out == "1", out
        res.check("the worker shows in pg_stat_activity", worker_visible)

        def notify():
            listener = subprocess.Popen(["psql", "-X", "-q", "-d", DB], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1)
            try:
                listener.stdin.write("LISTEN coding_fdw_changes;\n")
                # an issue no other issue copies (no parent, sub-task or epic
                # relation), so the poll updates exactly one row
                lone = q("SELECT min(code) FROM mirror.issues i WHERE parent_code IS NULL AND type <> 'EPIC' "
                         "AND NOT EXISTS (SELECT 1 FROM mirror.issues c WHERE c.parent_code = i.code)")
                sim.call("PATCH", "/_sim/projects/backend/issues/%s" % lone, {"Name": "notify me"})
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding")
                listener.stdin.write("SELECT 1;\n\\q\n")
                out = listener.communicate(timeout=30)[0]
            finally:
                if listener.poll() is None:
                    listener.kill()
            line = [l for l in out.splitlines() if "coding_fdw_changes" in l and '"issues"' in l]
            assert line, out
            payload = json.loads(line[0].split('payload "', 1)[1].rsplit('" received', 1)[0])
            assert payload == {"server": "coding", "table": "issues", "source": "poll",
                               "inserted": 0, "updated": 1, "deleted": 0}, payload
        res.check("NOTIFY coding_fdw_changes after a sync with the counts", notify)

        def reconcile_interval():
            q("SELECT coding_fdw.sync_start('mob', 'mobile_rec', poll_interval => '1 s', "
              "reconcile_interval => '1 s')")
            assert wait_for_sync("mob")
            q("CREATE SCHEMA src_mob; IMPORT FOREIGN SCHEMA mobile FROM SERVER mob INTO src_mob")
            # a sub-task: its parent's sub_tasks lists it, and Coding
            # changes neither the parent's UpdatedAt nor sends anything
            child, parent = q("SELECT code, parent_code FROM mobile_rec.issues "
                              "WHERE parent_code IS NOT NULL ORDER BY code LIMIT 1").split("|")
            listed = "SELECT count(*) FROM mobile_rec.issues WHERE code = %s AND sub_tasks @> '[{\"Code\": %s}]'" \
                % (parent, child)
            assert q(listed) == "1"
            sim.call("DELETE", "/_sim/projects/mobile/issues/%s" % child)
            wait_until(lambda: q("SELECT count(*) FROM mobile_rec.issues WHERE code = %s" % child) == "0",
                       30, "the periodic reconciliation to remove the deleted issue")
            assert status("mob", "issues")["poll_deleted"] == 1
            # the parent was read again in the same sync
            assert q(listed) == "0"
            n = mirror_diff("mobile_rec", "issues", "src_mob")
            assert n == 0, "issues differ in %d rows" % n
            # rows deleted by hand come back at the next reconciliation (no
            # poll could see them: Coding did not change them), counted as
            # inserted by a poll
            try:
                inserted = status("mob", "issues")["poll_inserted"]
                # rows older than what a poll re-lists (the cursor minus a day)
                old = "FROM mobile_rec.issues WHERE updated_at < (SELECT max(updated_at) - interval '2 days' " \
                      "FROM mobile_rec.issues) AND code % 2 = 0"
                gone = int(q("SELECT count(*) " + old))
                assert gone > 0
                q("DELETE " + old)
                wait_until(lambda: status("mob", "issues")["poll_inserted"] == inserted + gone, 30,
                           "the reconciliation to put the deleted rows back")
                assert mirror_diff("mobile_rec", "issues", "src_mob") == 0
            finally:
                q("SELECT coding_fdw.sync_stop('mob', drop_tables => true)")
        res.check("reconcile_interval: polling alone removes a deleted sub-task and its parent's copy, "
                  "and puts back rows deleted by hand", reconcile_interval)

        def kill_worker():
            q("SELECT coding_fdw.sync_start('big', 'big_mirror')")
            # kill -9 the worker in the middle of the full sync
            wait_until(lambda: int(sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"]) > 3000,
                       120, "the full sync to be under way")
            pid = int(q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw sync worker'"))
            os.kill(pid, signal.SIGKILL)
            # the kill must land before the sync had read every issue
            done = int(sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"])
            assert done < 20000, "the full sync had finished (%d calls) before the kill" % done

            def back():
                r = psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'coding_fdw sync worker'",
                         db=DB, check=False)
                return r.returncode == 0 and r.stdout.strip() == "1"
            wait_until(back, 60, "the server and the worker to come back", interval=0.2)
            assert wait_for_sync("big", "300 s"), "the full sync did not converge after the kill"
            assert q("SELECT count(*), count(DISTINCT code) FROM big_mirror.issues") == "20000|20000"
            q("CREATE SCHEMA IF NOT EXISTS bigsrc; "
              "IMPORT FOREIGN SCHEMA big LIMIT TO (issues) FROM SERVER big INTO bigsrc")
            n = mirror_diff("big_mirror", "issues", "bigsrc", skip=("assignee", "creator", "watchers",
                            "files", "sub_tasks", "third_links", "project_module", "requirement_type",
                            "defect_type", "epic", "parent"))
            assert n == 0, "%d rows differ after the restart" % n
            st = status("big", "issues")
            assert st["state"] == "idle" and st["rows"] == 20000, st
        res.check("kill -9 of the worker during a 20,000-issue full sync converges", kill_worker)

        def sighup():
            pid = q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw sync worker'")
            q("ALTER SYSTEM SET log_min_messages = 'notice'")
            try:
                assert q("SELECT pg_reload_conf()") == "t"
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding"), "the worker stopped serving after a reload"
                assert q("SELECT pid FROM pg_stat_activity "
                         "WHERE backend_type = 'coding_fdw sync worker'") == pid, "the worker restarted"
            finally:
                q("ALTER SYSTEM RESET log_min_messages")
                q("SELECT pg_reload_conf()")
        res.check("SIGHUP (pg_reload_conf) reloads the worker's configuration; it keeps serving", sighup)

        def sigterm():
            pid = int(q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw sync worker'"))
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % pid) == "0",
                       5, "the worker to stop after SIGTERM")
            wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE backend_type = 'coding_fdw sync worker'") == "1",
                       30, "the postmaster to start the worker again", interval=0.2)
            q("SELECT coding_fdw.sync_now('coding')")
            assert wait_for_sync("coding"), "the restarted worker does not serve"
        res.check("SIGTERM stops the worker promptly; it is started again and serves", sigterm)

        def immediate_shutdown():
            q("SELECT coding_fdw.sync_now('big', \"full\" => true)")
            before = int(sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"])
            wait_until(lambda: int(sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"])
                       > before + 3000, 120, "the full sync to be under way")
            cluster = os.environ.get("PGVERSION", "15")
            subprocess.run(["pg_ctlcluster", cluster, "regress", "stop", "-m", "immediate"], check=True)
            done = int(sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"]) - before
            assert done < 20000, "the full sync had finished (%d calls) before the shutdown" % done
            subprocess.run(["pg_ctlcluster", cluster, "regress", "start"], check=True)

            def up():
                r = psql("SELECT 1", db=DB, check=False)
                return r.returncode == 0
            wait_until(up, 60, "the server to accept connections again", interval=0.2)
            assert wait_for_sync("big", "300 s"), "the full sync did not converge after the shutdown"
            assert q("SELECT count(*), count(DISTINCT code) FROM big_mirror.issues") == "20000|20000"
            assert q("SELECT count(*) FROM big_mirror.issues WHERE synced_by = 'full'") == "20000"
            st = status("big", "issues")
            assert st["state"] == "idle", st
        res.check("an immediate shutdown during a full sync converges after restart", immediate_shutdown)

        def outage():
            rows = q("SELECT count(*) FROM mirror.issues")
            sim.fault(type="http_500", count=0)     # until cleared
            try:
                q("SELECT coding_fdw.sync_now('coding')")
                assert not wait_for_sync("coding", "3 s"), "a sync succeeded during the outage"
                st = wait_until(lambda: (lambda s: s if s["state"] == "error" else None)(
                    status("coding", "issues")), 30, "the error to show in sync_status")
                assert "Coding request failed" in st["last_error"], st
                assert st["last_error_at"] is not None
                assert q("SELECT count(*) FROM mirror.issues") == rows   # untouched
                # the next retry (pushed an hour out here) is past the
                # deadline: wait_for_sync says why and returns false at once
                q("UPDATE coding_fdw.subscription SET next_poll = now() + interval '1 hour' "
                  "WHERE server_name = 'coding'")
                t0 = time.monotonic()
                r = psql("SELECT coding_fdw.wait_for_sync('coding', '50 s')", db=DB, check=False)
                assert time.monotonic() - t0 < 25, "wait_for_sync waited for a retry past its deadline"
                assert r.stdout.strip() == "f", r.stdout
                assert 'NOTICE:  the last sync of server "coding" failed: Coding request failed' in r.stderr, r.stderr
                assert "HINT:  coding_fdw.sync_status shows the error; coding_fdw.sync_now retries at once." \
                    in r.stderr, r.stderr
                q("SELECT coding_fdw.sync_now('coding')")       # the retry comes back to now
            finally:
                sim.call("DELETE", "/_sim/faults")
            assert wait_for_sync("coding"), "the subscription did not heal"
            st = status("coding", "issues")
            assert st["state"] == "idle" and st["last_error"] is None, st
        res.check("an outage shows in sync_status and heals by itself", outage)

        def two():
            sim.call("DELETE", "/_sim/log")
            q("SELECT coding_fdw.sync_start('mob', 'mobile_mirror', details => false)")
            assert wait_for_sync("mob")
            # list columns only: the full sync made no DescribeIssue call
            assert sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"] == 0
            assert q("SELECT count(*) FROM pg_attribute WHERE attrelid = 'mobile_mirror.issues'::regclass "
                     "AND attname IN ('epic', 'watchers') AND NOT attisdropped") == "0"
            coding_has = len(sim.call("GET", "/_sim/dump?project=mobile")["projects"]["mobile"]["issues"])
            assert q("SELECT count(*) FROM mobile_mirror.issues") == str(coding_has)
            assert q("SELECT DISTINCT project FROM mobile_mirror.issues") == "mobile"
            assert q("SELECT DISTINCT project FROM mirror.issues") == "backend"
        res.check("two subscriptions (two projects) stay separate; details => false lists only", two)

        def rename():
            # the subscription follows the server, not its old name
            q("ALTER SERVER mob RENAME TO mob_renamed")
            try:
                q("SELECT coding_fdw.sync_now('mob_renamed')")
                assert wait_for_sync("mob_renamed")
                assert q("SELECT string_agg(DISTINCT server, ',') FROM coding_fdw.sync_status "
                         "WHERE server LIKE 'mob%'") == "mob_renamed"
                r = psql("SELECT coding_fdw.sync_now('mob')", db=DB, check=False)
                assert 'ERROR:  server "mob" does not exist' in r.stderr, r.stderr
            finally:
                q("ALTER SERVER mob_renamed RENAME TO mob")
            assert wait_for_sync("mob")
        res.check("a renamed server keeps its subscription under its new name", rename)

        def same_transaction():
            # the worker cannot see a sync_now (or sync_start) before its
            # transaction commits: waiting for it there is an error at once,
            # not the whole timeout (one psql -c is one transaction)
            t0 = time.monotonic()
            r = psql("SELECT coding_fdw.sync_now('mob'); SELECT coding_fdw.wait_for_sync('mob', '60 s')",
                     db=DB, check=False)
            assert r.returncode != 0 and "ERROR:  the workers cannot see this transaction's sync_start or " \
                "sync_now of server \"mob\" before it commits\nHINT:  Call wait_for_sync after COMMIT, in a " \
                "transaction of its own." in r.stderr, r.stderr
            assert time.monotonic() - t0 < 10
            q("SELECT coding_fdw.sync_now('mob')")
            assert wait_for_sync("mob")
        res.check("wait_for_sync in the transaction that asked for the sync: an error at once", same_transaction)

        def options_changed():
            # a subscription keeps the team and project it started with.  An
            # ALTER SERVER naming another team fails each step, saying so (it
            # used to mix two teams' rows in one table), and an event waits
            # without counting an attempt.  Set back, all goes on.  A new
            # project on the server is the foreign tables' default only: the
            # subscription reads its own (the imported tables' option).
            hook = q("SELECT coding_fdw.webhook_url('mob')")
            mid = q("SELECT min(id) FROM mobile_mirror.project_members")
            q("ALTER SERVER mob OPTIONS (SET team 'other')")
            try:
                calls = sim.call("GET", "/_sim/log/count")["count"]
                q("SELECT coding_fdw.sync_now('mob')")
                wait_until(lambda: status("mob", "issues")["state"] == "error", 20, "the sync to fail")
                err = status("mob", "issues")["last_error"]
                assert err == 'server "mob" now names team "other", its subscription follows team "acme"', err
                assert sim.call("GET", "/_sim/log/count")["count"] == calls, "the failed sync called Coding"
                post_event(hook, {"event": "MEMBER_ROLE_UPDATED",
                                  "member": {"id": int(mid), "name": "m", "login": "x"}}, "opt-1")
                wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery = 'opt-1' "
                                     "AND last_error LIKE '%now names team%'") == "1",
                           20, "the event to wait with the error")
                assert q("SELECT state || ' ' || attempts FROM coding_fdw.webhook_event "
                         "WHERE delivery = 'opt-1'") == "pending 0"
            finally:
                q("ALTER SERVER mob OPTIONS (SET team 'acme')")
            wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'opt-1'")
                       == "applied", 30, "the event applied once the option is set back")
            q("SELECT coding_fdw.sync_now('mob')")
            wait_until(lambda: status("mob", "issues")["state"] == "idle", 30, "the sync to succeed again")
            q("ALTER SERVER mob OPTIONS (SET project 'backend')")
            try:
                q("SELECT coding_fdw.sync_now('mob')")
                assert wait_for_sync("mob"), status("mob", "issues")
            finally:
                q("ALTER SERVER mob OPTIONS (SET project 'mobile')")
            assert q("SELECT count(*) FROM mobile_mirror.issues WHERE team <> 'acme' OR project <> 'mobile'") \
                == "0"
            # the imported table's own project option, changed by hand
            src = "coding_fdw_src_" + q("SELECT oid FROM pg_foreign_server WHERE srvname = 'mob'")
            q("ALTER FOREIGN TABLE %s.issues OPTIONS (SET project 'backend')" % src)
            try:
                q("SELECT coding_fdw.sync_now('mob')")
                wait_until(lambda: status("mob", "issues")["state"] == "error", 20, "the sync to fail")
                err = status("mob", "issues")["last_error"]
                assert err == ('the foreign table %s.issues now names project "backend", the subscription of '
                               'server "mob" follows project "mobile"' % src), err
            finally:
                q("ALTER FOREIGN TABLE %s.issues OPTIONS (SET project 'mobile')" % src)
            q("SELECT coding_fdw.sync_now('mob')")
            wait_until(lambda: status("mob", "issues")["state"] == "idle", 30, "the sync to succeed again")
            # rows of another team or project (left by that mix) are not
            # Coding's: a full sync deletes them (it matched the code only)
            q("CREATE TEMP TABLE stray AS SELECT * FROM mobile_mirror.issues LIMIT 1; "
              "UPDATE stray SET team = 'other'; INSERT INTO mobile_mirror.issues SELECT * FROM stray")
            q("CREATE TEMP TABLE stray AS SELECT * FROM mobile_mirror.project_members LIMIT 1; "
              "UPDATE stray SET project = 'backend'; INSERT INTO mobile_mirror.project_members SELECT * FROM stray")
            q("SELECT coding_fdw.sync_now('mob', full => true)")
            assert wait_for_sync("mob")
            assert q("SELECT (SELECT count(*) FROM mobile_mirror.issues WHERE team <> 'acme') "
                     "+ (SELECT count(*) FROM mobile_mirror.project_members WHERE project <> 'mobile')") == "0"
        res.check("ALTER SERVER naming another team (or the imported tables another project): each step "
                  "fails saying so, events wait; a full sync deletes other projects' rows", options_changed)

        def rejected_token_events():
            # a rejected token is the set-up's fault, not the event's: the
            # event waits for the owner to mend it, its attempts uncounted
            # (it was a dead letter after 5 attempts, about 15 s)
            hook = q("SELECT coding_fdw.webhook_url('mob')")
            code = q("SELECT min(code) FROM mobile_mirror.issues")
            q("ALTER USER MAPPING FOR CURRENT_USER SERVER mob OPTIONS (SET token 'wrong-token')")
            try:
                post_event(hook, {"event": "ISSUE_UPDATED", "issue": {"code": int(code)}}, "tok-1")
                wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery = 'tok-1' "
                                     "AND last_error LIKE 'Coding rejected the token%'") == "1",
                           20, "the event to fail on the token")
                # failing again and again (1 s, 2 s, 4 s ...), never counted
                wait_until(lambda: q("SELECT next_attempt > received_at + interval '2 s' "
                                     "FROM coding_fdw.webhook_event WHERE delivery = 'tok-1'") == "t",
                           20, "the event's third attempt")
                assert q("SELECT state || ' ' || attempts FROM coding_fdw.webhook_event "
                         "WHERE delivery = 'tok-1'") == "pending 0"
            finally:
                q("ALTER USER MAPPING FOR CURRENT_USER SERVER mob OPTIONS (SET token 'secret-token')")
            wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'tok-1'") == "applied",
                       30, "the event applied once the token is mended")
        res.check("an event whose token Coding rejects waits for the owner, uncounted", rejected_token_events)

        def dropped_server():
            # DROP SERVER ... CASCADE ends the subscription (its tables stay);
            # the worker used to fail on it for good
            q("CREATE SERVER gone FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'mobile', "
              "api_url '%s', rate_limit '100000'); "
              "CREATE USER MAPPING FOR CURRENT_USER SERVER gone OPTIONS (token 'secret-token'); "
              "SELECT coding_fdw.sync_start('gone', 'gone_mirror', details => false)" % sim.url)
            assert wait_for_sync("gone")
            src = "coding_fdw_src_" + q("SELECT oid FROM pg_foreign_server WHERE srvname = 'gone'")
            rows = q("SELECT count(*) FROM gone_mirror.issues")
            q("DROP SERVER gone CASCADE")
            assert q("SELECT count(*) FROM coding_fdw.sync_status WHERE server = 'gone'") == "0"
            assert q("SELECT count(*) FROM pg_namespace WHERE nspname = '%s'" % src) == "0"
            assert q("SELECT count(*) FROM gone_mirror.issues") == rows != "0"
            q("SELECT coding_fdw.sync_now('coding')")
            assert wait_for_sync("coding"), "the worker stopped serving"
            assert q("SELECT count(*) FROM coding_fdw.sync_status WHERE state = 'error'") == "0"
            q("DROP SCHEMA gone_mirror CASCADE")
        res.check("DROP SERVER ... CASCADE ends its subscription, keeps its tables", dropped_server)

        def stop_during_sync():
            # the worker held in the middle of a sync, after it read one
            # source table and before the next: a DROP that took the tables
            # in its own order deadlocked with it (the worker lost, its sync
            # failed; a DROP SERVER could lose instead).  sync_stop and DROP
            # SERVER now wait for the step.
            def server():
                q("CREATE SERVER race FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', "
                  "project 'mobile', api_url '%s', rate_limit '100000'); "
                  "CREATE USER MAPPING FOR CURRENT_USER SERVER race OPTIONS (token 'secret-token')" % sim.url)
            q("DROP ROLE IF EXISTS race_peeker; CREATE ROLE race_peeker")
            try:
                for action, how in (("DescribeIterationList", "stop"), ("DescribeProjectMembers", "stop"),
                                    ("DescribeIssueListWithPage", "stop"), ("DescribeIterationList", "drop"),
                                    ("DescribeProjectMembers", "drop")):
                    if q("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'race'") == "0":
                        server()
                    q("SELECT coding_fdw.sync_start('race', 'race_mirror', details => false)")
                    assert wait_for_sync("race")
                    log_start = len(server_log())
                    sim.call("DELETE", "/_sim/log")
                    sim.fault(type="delay", action=action, seconds=2)
                    q("SELECT coding_fdw.sync_now('race')")
                    sim.wait_held(action, "the worker's %s to be held by the simulator" % action)
                    # the sync's writes are not visible yet; that it runs is
                    assert q("SELECT string_agg(DISTINCT syncing::text, ',') FROM coding_fdw.sync_status "
                             "WHERE server = 'race'") == "true"
                    # ... to its owner only: another role is not told
                    assert q("SET SESSION AUTHORIZATION race_peeker; "
                             "SELECT coding_fdw._syncing(oid) FROM pg_foreign_server "
                             "WHERE srvname = 'race'") == "f"
                    if how == "stop":
                        q("SELECT coding_fdw.sync_stop('race', drop_tables => true)")
                        assert q("SELECT to_regclass('race_mirror.issues') IS NULL") == "t"
                    else:
                        q("DROP SERVER race CASCADE")
                        assert q("SELECT count(*) FROM race_mirror.issues") != "0"
                        q("DROP SCHEMA race_mirror CASCADE")
                    assert q("SELECT count(*) FROM coding_fdw.subscription "
                             "WHERE server_name = 'race'") == "0"
                    # the worker finished that sync (it may log nothing)
                    wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                         "AND query LIKE 'coding_fdw: syncing server race%'") == "0",
                               20, "the worker to end its sync of race")
                    log = server_log()[log_start:]
                    assert "deadlock" not in log and 'server "race" failed' not in log, (action, how, log)
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding"), "the worker stopped serving"
            finally:
                q("DROP SCHEMA IF EXISTS race_mirror CASCADE; DROP SERVER IF EXISTS race CASCADE; "
                  "DROP ROLE race_peeker")
        res.check("sync_stop or DROP SERVER during a sync waits for it: no deadlock, no failed sync",
                  stop_during_sync)

        def user_lock():
            # a user's lock on a synced table fails that subscription's step
            # after the worker's lock_timeout; the others are served meanwhile.
            # Its log line carries the SQLSTATE (shown with verbose errors)
            q("ALTER SYSTEM SET log_error_verbosity = 'verbose'")
            q("SELECT pg_reload_conf()")
            log_start = len(server_log())
            q("SELECT coding_fdw.sync_now('coding'), coding_fdw.sync_now('mob')")
            assert wait_for_sync("coding") and wait_for_sync("mob")
            with open_transaction("LOCK TABLE mobile_mirror.issues IN EXCLUSIVE MODE", DB):
                q("SELECT coding_fdw.sync_now('mob')")
                wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND query LIKE 'coding_fdw: syncing server mob%'") == "1",
                           20, "the worker to wait for the user's lock")
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding", "30 s"), "the worker stayed behind the user's lock"
                st = status("mob", "issues")
                assert st["state"] == "error" and "lock timeout" in st["last_error"], st
            q("ALTER SYSTEM RESET log_error_verbosity")
            q("SELECT pg_reload_conf()")
            assert 'LOG:  55P03: coding_fdw: sync of server "mob" failed' in server_log()[log_start:]
            q("SELECT coding_fdw.sync_now('mob')")
            assert wait_for_sync("mob"), status("mob", "issues")
            wait_until(lambda: q("SELECT string_agg(DISTINCT syncing::text, ',') FROM coding_fdw.sync_status "
                                 "WHERE server = 'mob'") == "false", 10, "mob's sync to show as ended")
        res.check("a user's lock on a synced table fails that sync after lock_timeout, not the others",
                  user_lock)

        def unrecorded_failure():
            # a user's open transaction holds the subscription row (an
            # uncommitted sync_stop): the sync fails on it, and so does
            # recording that failure; the worker then holds the server back
            # itself (it used to start the sync again at once, forever)
            q("SELECT coding_fdw.sync_now('mob')")
            assert wait_for_sync("mob")
            log_start = len(server_log())
            # the worker busy with another sync (held 3 s by the simulator)
            # while mob's sync is asked for and its row taken
            sim.call("DELETE", "/_sim/log")
            sim.fault(type="delay", action="DescribeIterationList", seconds=3)
            q("SELECT coding_fdw.sync_now('coding')")
            sim.wait_held("DescribeIterationList", "the worker's sync of coding to be held by the simulator")
            q("SELECT coding_fdw.sync_now('mob')")
            with open_transaction("SELECT coding_fdw.sync_stop('mob')", DB, end="ROLLBACK"):
                wait_until(lambda: 'could not record the failure for server "mob"' in server_log()[log_start:],
                           60, "the unrecorded failure")
                syncing = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' " \
                          "AND query LIKE 'coding_fdw: syncing server mob%'"
                t0 = time.monotonic()
                while time.monotonic() - t0 < 5:       # a window of absence, not synchronisation
                    assert q(syncing) == "0", "the worker started the failed sync again at once"
                    time.sleep(0.2)
            assert server_log()[log_start:].count("could not record the failure") == 1
            # the hold is on that version of the row: the owner's next
            # sync_now is served at once, not after the 30 s (nor does a
            # new subscription of the same server inherit it, set_role)
            q("SELECT coding_fdw.sync_now('mob')")
            assert wait_for_sync("mob", "8 s"), status("mob", "issues")
        res.check("a failure that cannot be recorded holds the server back, not retried at once; "
                  "a sync_now is served", unrecorded_failure)

        def moved_servers():
            # pg_upgrade restores the servers with new oids and copies the
            # extension's tables as they were; here the two servers came
            # back with each other's oids: each subscription's rows (and its
            # events, counters, tombstones) under the other's oid, and its
            # source schema named after it (test/upgrade.sh runs pg_upgrade)
            a = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'coding'")
            b = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'mob'")
            swap = ["UPDATE coding_fdw.subscription SET server_oid = CASE server_oid WHEN %s THEN 1 ELSE 2 END "
                    "WHERE server_oid IN (%s, %s)" % (a, a, b),
                    "UPDATE coding_fdw.subscription SET server_oid = CASE server_oid WHEN 1 THEN %s ELSE %s END, "
                    "source_schema = 'coding_fdw_src_' || CASE server_oid WHEN 1 THEN %s ELSE %s END "
                    "WHERE server_oid IN (1, 2)" % (b, a, b, a)]
            for t in ("webhook_event", "webhook_counts", "tombstone"):
                swap += ["UPDATE coding_fdw.%s SET server_oid = CASE server_oid WHEN %s THEN 1 ELSE 2 END "
                         "WHERE server_oid IN (%s, %s)" % (t, a, a, b),
                         "UPDATE coding_fdw.%s SET server_oid = CASE server_oid WHEN 1 THEN %s ELSE %s END "
                         "WHERE server_oid IN (1, 2)" % (t, b, a)]
            swap += ["ALTER SCHEMA coding_fdw_src_%s RENAME TO swapping" % a,
                     "ALTER SCHEMA coding_fdw_src_%s RENAME TO coding_fdw_src_%s" % (b, a),
                     "ALTER SCHEMA swapping RENAME TO coding_fdw_src_%s" % b]
            state = ("SELECT string_agg(format('%%s %%s %%s %%s', s.server_oid, s.into_schema, s.source_schema, "
                     "(SELECT count(*) FROM coding_fdw.webhook_event e WHERE e.server_oid = s.server_oid)"
                     " + (SELECT count(*) FROM coding_fdw.tombstone t WHERE t.server_oid = s.server_oid)"
                     " + (SELECT coalesce(sum(received), 0) FROM coding_fdw.webhook_counts c "
                     "     WHERE c.server_oid = s.server_oid)"
                     " + (SELECT coalesce(sum(inserted), 0) FROM coding_fdw.sync_counts c "
                     "     WHERE c.server_oid = s.server_oid)), ', ' ORDER BY s.server_oid) "
                     "FROM coding_fdw.subscription s WHERE server_oid IN (%s, %s)" % (a, b))
            before = q(state)
            url = q("SELECT coding_fdw.webhook_url('coding')")
            assert ("%s mirror coding_fdw_src_%s" % (a, a)) in before and \
                ("%s mobile_mirror coding_fdw_src_%s" % (b, b)) in before, before
            # a function that names a server relinks first, in its own
            # transaction: the URL is coding's, not mob's
            out = q("BEGIN; %s; SELECT coding_fdw.webhook_url('coding'); COMMIT" % "; ".join(swap))
            assert out.split("\n")[-1] == url, (out, url)
            assert q(state) == before
            # nobody asks: the workers relink before their next pass
            log_start = len(server_log())
            q("BEGIN; %s; COMMIT" % "; ".join(swap))
            wait_until(lambda: q(state) == before, 20, "the workers to relink the subscriptions", interval=0.2)
            log = server_log()[log_start:]
            for name, old, new in (("coding", b, a), ("mob", a, b)):
                assert ('coding_fdw: the subscription of server "%s" referred to server oid %s, now %s: '
                        'relinked' % (name, old, new)) in log, log[-3000:]
            assert q("SELECT count(*) FROM coding_fdw._moved_servers()") == "0"
            q("SELECT coding_fdw.sync_now('mob')")
            assert wait_for_sync("mob", "30 s"), status("mob", "issues")
            assert status("mob", "issues")["into_schema"] == "mobile_mirror"
            assert mirror_diff("mobile_mirror", "issues", "coding_fdw_src_%s" % b) == 0
        res.check("servers with new oids (pg_upgrade): a subscription follows its source tables' server, "
                  "relinked by the first call naming a server or by the workers", moved_servers)

        def stop():
            kept = q("SELECT count(*) FROM mobile_mirror.issues")
            q("SELECT coding_fdw.sync_stop('mob')")
            assert q("SELECT count(*) FROM coding_fdw.sync_status WHERE server = 'mob'") == "0"
            assert q("SELECT count(*) FROM mobile_mirror.issues") == kept != "0"
            q("SELECT coding_fdw.sync_stop('coding', drop_tables => true)")
            assert q("SELECT to_regclass('mirror.issues') IS NULL") == "t"
            r = psql("SELECT coding_fdw.sync_now('coding')", db=DB, check=False)
            assert "server \"coding\" has no subscription" in r.stderr, r.stderr
            r = psql("SELECT coding_fdw.wait_for_sync('nosuch')", db=DB, check=False)
            assert 'ERROR:  server "nosuch" does not exist' in r.stderr and "HINT" not in r.stderr, r.stderr
        res.check("sync_stop ends a subscription; tables stay unless asked", stop)

        def set_role():
            # SET ROLE alice, then sync_start: alice owns the subscription and
            # the tables, the worker reads with her mapping, she stops it
            q("DROP ROLE IF EXISTS alice; CREATE ROLE alice; GRANT USAGE ON FOREIGN SERVER mob TO alice; "
              "GRANT CREATE ON DATABASE %s TO alice; "
              "CREATE USER MAPPING FOR alice SERVER mob OPTIONS (token 'secret-token')" % DB)
            try:
                q("SET ROLE alice; SELECT coding_fdw.sync_start('mob', 'alice_mirror', details => false)")
                assert q("SET ROLE alice; SELECT coding_fdw.wait_for_sync('mob')") == "t"
                assert q("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'alice_mirror.issues'::regclass") \
                    == "alice"
                st = q("SET ROLE alice; SELECT string_agg(DISTINCT state || ' ' || coalesce(last_error, ''), ',') "
                       "FROM coding_fdw.sync_status WHERE server = 'mob'")
                assert st == "idle", st   # and no last_error
                assert q("SELECT count(*) FROM alice_mirror.issues") != "0"
                # after SET ROLE a session has that role's rights: a NOINHERIT
                # authenticator (PostgREST's pattern) acts as alice once it
                # is alice, and a member of alice that is carol is not alice
                q("DROP ROLE IF EXISTS auth_ni, auth_in, carol; CREATE ROLE carol; "
                  "CREATE ROLE auth_ni NOINHERIT; GRANT alice TO auth_ni; "
                  "CREATE ROLE auth_in; GRANT alice, carol TO auth_in")
                assert q("SET SESSION AUTHORIZATION auth_ni; SET ROLE alice; "
                         "SELECT coding_fdw.webhook_url('mob') LIKE 'http%' AND coding_fdw.wait_for_sync('mob')") == "t"
                r = psql("SET SESSION AUTHORIZATION auth_in; SET ROLE carol; SELECT coding_fdw.sync_now('mob')",
                         db=DB, check=False)
                assert 'permission denied for the subscription of server "mob"' in r.stderr, r.stderr
                r = psql("SET SESSION AUTHORIZATION auth_in; SET ROLE carol; SELECT coding_fdw.webhook_url('mob')",
                         db=DB, check=False)
                assert r.returncode != 0 and "/coding_fdw/webhook/" not in r.stdout, (r.stdout, r.stderr)
                # her webhook events are applied as alice, who cannot read the
                # inbox: member events that look up earlier ones still apply
                # (a MEMBER_CREATED failed with "permission denied")
                hook = q("SET ROLE alice; SELECT coding_fdw.webhook_url('mob')")
                mid = int(q("SELECT min(id) FROM alice_mirror.project_members"))
                for delivery, event, member in (("al-1", "MEMBER_DELETED", 777001), ("al-2", "MEMBER_CREATED", 777001),
                                                ("al-3", "MEMBER_ROLE_UPDATED", mid)):
                    post_event(hook, {"event": event, "member": {"id": member, "name": "m", "login": "x"}}, delivery)
                wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event "
                                     "WHERE delivery LIKE 'al-_' AND (state <> 'pending' OR attempts > 0)") == "3",
                           30, "alice's events applied or failed")
                got = q("SELECT string_agg(delivery || ' ' || state || coalesce(' ' || last_error, ''), ', ' "
                        "ORDER BY id) FROM coding_fdw.webhook_event WHERE delivery LIKE 'al-_'")
                assert got == "al-1 applied, al-2 applied, al-3 applied", got
                # the add that came after a removal is checked by a poll
                wait_until(lambda: q("SELECT count(*) FROM alice_mirror.project_members WHERE id = 777001") == "0",
                           30, "the poll to remove a member Coding does not have")
                q("SET ROLE alice; SELECT coding_fdw.sync_stop('mob', drop_tables => true)")
                assert q("SELECT to_regclass('alice_mirror.issues') IS NULL") == "t"
            finally:
                q("SELECT coding_fdw.sync_stop('mob', drop_tables => true) "
                  "FROM coding_fdw.sync_status WHERE server = 'mob' LIMIT 1; "
                  "DROP SCHEMA IF EXISTS alice_mirror CASCADE; DROP USER MAPPING IF EXISTS FOR alice SERVER mob; "
                  "REVOKE ALL ON FOREIGN SERVER mob FROM alice; REVOKE ALL ON DATABASE %s FROM alice; "
                  "DROP ROLE IF EXISTS auth_ni, auth_in, carol; DROP ROLE alice" % DB)
        res.check("sync_start after SET ROLE: the role owns the subscription and tables, and can stop it",
                  set_role)

        def hostile_owner():
            # A subscriber's own code runs inside the worker (a trigger on her
            # tables) and her schemas can shadow functions: neither may act
            # for another subscription, nor as the superuser.  Both made an
            # ordinary role superuser before (ownership checked session_user,
            # the worker's superuser; no search_path was pinned).
            import urllib.request
            env = dict(os.environ, PGUSER="mallory", PGPASSWORD="mallory-pw")

            def as_mallory(sql):
                r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c", sql],
                                   capture_output=True, text=True, env=env, timeout=120)
                assert r.returncode == 0, (sql[:80], r.stderr)
                return r.stdout.strip()
            big = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'big'")
            q("DROP ROLE IF EXISTS mallory; CREATE ROLE mallory LOGIN PASSWORD 'mallory-pw'; "
              "GRANT CREATE ON DATABASE %s TO mallory; GRANT USAGE ON FOREIGN SERVER mob TO mallory; "
              "CREATE USER MAPPING FOR mallory SERVER mob OPTIONS (token 'secret-token')" % DB)
            try:
                as_mallory("SELECT coding_fdw.sync_start('mob', 'mal_mirror', details => false)")
                assert as_mallory("SELECT coding_fdw.wait_for_sync('mob')") == "t"
                as_mallory("""
                    CREATE TABLE mal_mirror.loot (info text);
                    CREATE FUNCTION mal_mirror.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
                    BEGIN
                      BEGIN
                        INSERT INTO mal_mirror.loot SELECT 'key ' || webhook_key FROM coding_fdw._get(%(big)s);
                      EXCEPTION WHEN OTHERS THEN INSERT INTO mal_mirror.loot VALUES ('get: ' || SQLERRM);
                      END;
                      BEGIN
                        PERFORM coding_fdw._register(%(big)s, 'big', 'mal_mirror', 'coding_fdw_src_%(big)s',
                                                     'polling', '1 s', NULL, '1 hour', 10);
                        INSERT INTO mal_mirror.loot VALUES ('registered');
                      EXCEPTION WHEN OTHERS THEN INSERT INTO mal_mirror.loot VALUES ('register: ' || SQLERRM);
                      END;
                      RETURN NULL;
                    END $f$;
                    CREATE TRIGGER grab AFTER INSERT ON mal_mirror.iterations
                      FOR EACH STATEMENT EXECUTE FUNCTION mal_mirror.grab();
                    GRANT USAGE ON SCHEMA mal_mirror TO PUBLIC; GRANT INSERT ON mal_mirror.loot TO PUBLIC;
                    CREATE SCHEMA postgres; GRANT USAGE ON SCHEMA postgres TO PUBLIC;
                    CREATE FUNCTION postgres.unnest(oid[]) RETURNS SETOF oid LANGUAGE plpgsql AS $f$
                    BEGIN
                      INSERT INTO mal_mirror.loot VALUES ('unnest as ' || current_user);
                      RETURN QUERY SELECT pg_catalog.unnest($1);
                    END $f$;
                    CREATE FUNCTION postgres.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $f$
                    BEGIN
                      INSERT INTO mal_mirror.loot VALUES ('quote_ident as ' || current_user);
                      RETURN pg_catalog.quote_ident($1::text);
                    END $f$;""" % {"big": big})
                # her own sync (the trigger), a superuser's sync, and a
                # webhook the listener stores as superuser
                as_mallory("SELECT coding_fdw.sync_now('mob')")
                assert as_mallory("SELECT coding_fdw.wait_for_sync('mob')") == "t"
                q("SELECT coding_fdw.sync_now('big')")
                assert wait_for_sync("big", "300 s")
                url = as_mallory("SELECT coding_fdw.webhook_url('mob')")
                req = urllib.request.Request(url, data=b'{"event": "GIT_PUSHED"}', method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "X-Coding-Delivery": "mallory-1"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == 200
                assert as_mallory("SELECT coding_fdw.wait_for_sync('mob')") == "t"
                assert q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery = 'mallory-1'") == "1"
                loot = q("SELECT string_agg(DISTINCT info, ' | ' ORDER BY info) FROM mal_mirror.loot")
                assert loot == ("get: permission denied for the subscription of server %s | "
                                "register: permission denied for foreign server big" % big), loot
                assert q("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == "f"
                # the lock DROP SERVER takes first is taken only for what the
                # caller may drop: locking a row assigns a transaction id
                lock = ("BEGIN; SELECT coding_fdw._before_drop(ARRAY[%s]::oid[], '{}', '{}'); "
                        "SELECT txid_current_if_assigned() IS NULL; COMMIT" % big)
                assert as_mallory(lock).split()[-1] == "t"
                assert q(lock).split()[-1] == "f"
                assert q("SELECT owner_oid FROM coding_fdw.subscription WHERE server_name = 'big'") == \
                    q("SELECT oid FROM pg_roles WHERE rolname = current_user")
            finally:
                q("DROP SCHEMA IF EXISTS postgres CASCADE")
                q("SELECT coding_fdw.sync_stop('mob', drop_tables => true) FROM coding_fdw.sync_status "
                  "WHERE server = 'mob' LIMIT 1")
                q("DROP SCHEMA IF EXISTS mal_mirror CASCADE; DROP USER MAPPING IF EXISTS FOR mallory SERVER mob; "
                  "REVOKE ALL ON FOREIGN SERVER mob FROM mallory; REVOKE ALL ON DATABASE %s FROM mallory; "
                  "DROP OWNED BY mallory; DROP ROLE mallory" % DB)
        res.check("a subscriber's trigger in the worker and her look-alike functions act for no one else",
                  hostile_owner)

        workers = ("coding_fdw sync worker", "coding_fdw events worker", "coding_fdw webhook listener")

        def restart_cluster():
            cluster = os.environ.get("PGVERSION", "15")
            subprocess.run(["pg_ctlcluster", cluster, "regress", "restart"], check=True)
            wait_until(lambda: psql("SELECT 1", db=DB, check=False).returncode == 0, 60,
                       "the server to accept connections again", interval=0.2)

        def connected(db):
            return q("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND backend_type IN %s"
                     % (db, str(workers))) == "3"

        def missing_database():
            q("DROP DATABASE IF EXISTS tp_sync_gone")
            q("CREATE DATABASE tp_sync_gone")
            q("ALTER SYSTEM SET coding_fdw.database = 'tp_sync_gone'")
            try:
                restart_cluster()
                wait_until(lambda: connected("tp_sync_gone"), 30, "the workers to serve tp_sync_gone",
                           interval=0.2)
                log_start = len(server_log())
                q("DROP DATABASE tp_sync_gone WITH (FORCE)")
                # restarted 5 s after each exit; attempts 1 and 2 at once,
                # then 5 s and 15 s more: the log says when the next one is
                line = r'LOG:  %s could not connect to database "tp_sync_gone" \(%d attempts in a row\)\n' \
                       r'[^\n]*DETAIL:  The next attempt is in %d s\.'
                wait_until(lambda: all(re.search(line % (w, 3, 15), server_log()[log_start:])
                                       for w in workers), 60, "each worker's third failure", interval=0.2)
                log = server_log()[log_start:]
                for w in workers:
                    assert re.search(line % (w, 2, 5), log), (w, log[-3000:])
                    assert "%s could not connect to database \"tp_sync_gone\" (1 attempts" % w not in log
                # three attempts each in about 25 s: no fourth within 15 s
                # of the third (without the back-off: one every 5 s)
                fatal = 'FATAL:  database "tp_sync_gone" does not exist'
                assert log.count(fatal) == 9, log[-3000:]
                q("CREATE DATABASE tp_sync_gone")
                wait_until(lambda: connected("tp_sync_gone"), 40, "the workers to come back", interval=0.2)
                log = server_log()[log_start:]
                assert 'coding_fdw sync worker started for database "tp_sync_gone"' in log
                assert log.count(fatal) == 9, "an attempt came earlier than its back-off"
            finally:
                q("ALTER SYSTEM RESET coding_fdw.database")
                restart_cluster()
                wait_until(lambda: connected(DB), 30, "the workers to serve %s again" % DB, interval=0.2)
                q("DROP DATABASE IF EXISTS tp_sync_gone")
        res.check("without their database the workers back off, up to a minute, saying when they try "
                  "next; they come back when it is created", missing_database)
    finally:
        sim.stop()
        psql("DROP EXTENSION IF EXISTS coding_fdw CASCADE", db=DB, check=False)
        psql("DROP SCHEMA IF EXISTS mirror, mobile_mirror, mobile_rec, big_mirror, src, bigsrc CASCADE",
             db=DB, check=False)
    res.finish()


if __name__ == "__main__":
    main()
