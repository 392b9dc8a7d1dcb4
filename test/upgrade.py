#!/usr/bin/env python3
"""upgrade.py: subscriptions across pg_upgrade (run by test/upgrade.sh).

pg_upgrade restores the foreign servers with new oids and copies the
extension's tables (which refer to servers by oid) as they were.  This
makes an old cluster that preloads coding_fdw for the database "postgres"
(the default, whose restore pg_upgrade drops and creates again), with two
subscriptions of two owners and servers whose oids do not follow their
names, runs pg_upgrade into a new cluster and checks:

- pg_upgrade succeeds: the workers do not run under it (postmaster -b);
- the workers relink each subscription to its server's new oid, with its
  source schema renamed to match, and log it;
- the Service URLs keep their keys (Coding holds them), every row, event
  and counter stays, and both owners sync on as before.

Whether a new oid happened to be another server's old one (the two
subscriptions then swap oids: tp_sync.py makes that case on purpose) is
printed.  Runs the servers as postgres when started as root.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request

from pgtest import Results, Sim, wait_until

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
# functions that make the new oid of one server the old oid of the other
PAD = int(os.environ.get("UPGRADE_PAD", "59"))
AS = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """A cluster of our own in base/name (initdb, start, stop)."""

    def __init__(self, base, name):
        self.base, self.name = base, name
        self.data = os.path.join(base, name)
        self.sock = os.path.join(base, "sock")
        self.port = free_port()
        self.webhook_port = free_port()
        self.log = os.path.join(base, name + ".log")

    def initdb(self):
        run(AS + [PGBIN + "/initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n"
                    "shared_preload_libraries = 'coding_fdw'\ncoding_fdw.webhook_port = %d\n"
                    "fsync = off\nautovacuum = off\n" % (self.port, self.sock, self.webhook_port))

    def start(self):
        run(AS + [PGBIN + "/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120", "start"])

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            run(AS + [PGBIN + "/pg_ctl", "-D", self.data, "-w", "-t", "120", "stop", "-m", "fast"])

    def q(self, sql, check=True):
        r = subprocess.run([PGBIN + "/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                            "-c", sql], capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError("psql failed: %s\n%s" % (sql, r.stderr))
        return r.stdout.strip() if check else r

    def server_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout[-3000:],
                                                       r.stderr[-3000:]))
    return r.stdout


def main():
    res = Results()
    base = tempfile.mkdtemp(prefix="coding_fdw_upgrade_")
    os.chmod(base, 0o755)
    if AS:
        shutil.chown(base, "postgres")
    os.makedirs(os.path.join(base, "sock"))
    if AS:
        shutil.chown(os.path.join(base, "sock"), "postgres")
    sim = Sim("--team", "acme", "--project", "backend:30", "--project", "frontend:20",
              "--token", "tokA", "--seed", "3")
    old, new = Cluster(base, "old"), Cluster(base, "new")
    before = {}
    try:
        def old_cluster():
            old.initdb()
            old.start()
            wait_until(lambda: old.q("SELECT count(*) FROM pg_stat_activity "
                                     "WHERE backend_type = 'coding_fdw sync worker'") == "1",
                       30, "the old cluster's workers")
            # oids that do not follow the names: pg_dump restores servers
            # in name order, so each gets another oid than before
            old.q("CREATE EXTENSION coding_fdw; CREATE ROLE alice LOGIN; "
                  "GRANT CREATE ON DATABASE postgres TO alice")
            for name, project in (("tmp1", "backend"), ("zeta", "backend"), ("alpha", "frontend")):
                old.q("CREATE SERVER %s FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', "
                      "project '%s', api_url '%s', rate_limit '100000')" % (name, project, sim.url))
            old.q("DROP SERVER tmp1; "
                  "CREATE USER MAPPING FOR postgres SERVER zeta OPTIONS (token 'tokA'); "
                  "CREATE USER MAPPING FOR alice SERVER alpha OPTIONS (token 'tokA'); "
                  "GRANT USAGE ON FOREIGN SERVER alpha TO alice; "
                  "CREATE SCHEMA s_alpha AUTHORIZATION alice")
            # functions made after the servers are restored before them:
            # they push the servers' new oids up, here onto an old one
            old.q("DO $$BEGIN FOR i IN 1..%d LOOP EXECUTE format('CREATE FUNCTION public.pad%%s() "
                  "RETURNS int LANGUAGE sql AS ''SELECT 1''', i); END LOOP; END$$" % PAD)
            old.q("SELECT coding_fdw.sync_start('zeta', 's_zeta', mode => 'both', poll_interval => '1 hour', "
                  "details => false)")
            old.q("SET ROLE alice; SELECT coding_fdw.sync_start('alpha', 's_alpha', poll_interval => '1 hour', "
                  "details => false)")
            for s in ("zeta", "alpha"):
                assert old.q("SELECT coding_fdw.wait_for_sync('%s', '60 s')" % s) == "t", s
            # a webhook event, stored and applied, so there is one to keep
            url = old.q("SELECT coding_fdw.webhook_url('zeta')")
            body = {"event": "ITERATION_CREATED", "eventName": "创建迭代",
                    "iteration": {"title": "kept", "goal": "g", "code": 900, "status": "WAIT_PROCESS",
                                  "creator": {"id": 8613060, "login": "cxRf", "name": "Gavin"},
                                  "plan_issue_number": 0, "start_at": 1668009600000, "end_at": 1668268799000,
                                  "created_at": 1665309831747, "updated_at": 1700000000000},
                    "project": {"id": 1, "name": "backend"}, "team": {"id": 1, "domain": "acme"}}
            req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(), headers={
                "Content-Type": "application/json", "X-Coding-Delivery": "upgrade-1"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
            assert old.q("SELECT coding_fdw.wait_for_sync('zeta', '60 s')") == "t"
            assert old.q("SELECT name FROM s_zeta.iterations WHERE code = 900") == "kept"
            before["oids"] = old.q("SELECT string_agg(srvname || '=' || oid, ' ' ORDER BY srvname) "
                                   "FROM pg_foreign_server")
            before["urls"] = {s: old.q("SELECT coding_fdw.webhook_url('%s')" % s) for s in ("zeta", "alpha")}
            before["state"] = state(old)
            old.stop()
        res.check("an old cluster: two subscriptions of two owners, synced, one webhook event applied",
                  old_cluster)

        def upgrade():
            new.initdb()
            run(AS + [PGBIN + "/pg_upgrade", "-b", PGBIN, "-B", PGBIN, "-d", old.data, "-D", new.data,
                      "-p", str(old.port), "-P", str(new.port), "-s", old.sock], cwd=base)
        res.check("pg_upgrade succeeds with coding_fdw preloaded for the database \"postgres\"", upgrade)

        def relinked():
            new.start()
            wait_until(lambda: new.q("SELECT count(*) FROM coding_fdw._moved_servers()") == "0", 30,
                       "the workers to relink the subscriptions", interval=0.2)
            after = new.q("SELECT string_agg(srvname || '=' || oid, ' ' ORDER BY srvname) FROM pg_foreign_server")
            olds, news = dict(x.split("=") for x in before["oids"].split()), \
                dict(x.split("=") for x in after.split())
            print("server oids: before %s, after %s; %s" % (
                before["oids"], after, "a new oid is another server's old one"
                if any(news[a] == olds[b] for a in news for b in olds if a != b) else "no collision"))
            assert news != olds, "pg_upgrade kept the oids: nothing to relink"
            assert new.q("SELECT string_agg(format('%s %s %s', server_name, server_oid = "
                         "(SELECT oid FROM pg_foreign_server WHERE srvname = server_name), "
                         "source_schema = 'coding_fdw_src_' || server_oid), ', ' ORDER BY server_name) "
                         "FROM coding_fdw.subscription") == "alpha t t, zeta t t"
            assert state(new) == before["state"], (state(new), before["state"])
            log = new.server_log()
            for s in (s for s in ("zeta", "alpha") if news[s] != olds[s]):
                assert re.search(r'LOG:  coding_fdw: the subscription of server "%s" referred to server oid '
                                 r'%s, now %s: relinked' % (s, olds[s], news[s]), log), log[-3000:]
            for s in ("zeta", "alpha"):
                url = new.q("SET ROLE %s; SELECT coding_fdw.webhook_url('%s')"
                            % ("postgres" if s == "zeta" else "alice", s))
                assert url.split("/")[3:] == before["urls"][s].split("/")[3:], (url, before["urls"][s])
        res.check("the workers relink each subscription to its server's new oid: same rows, events, "
                  "counters and Service URL keys", relinked)

        def syncs_on():
            sim.call("PATCH", "/_sim/projects/backend/issues/1", {"Name": "after the upgrade"})
            sim.call("PATCH", "/_sim/projects/frontend/issues/1", {"Name": "alice's, after the upgrade"})
            new.q("SELECT coding_fdw.sync_now('zeta')")
            new.q("SET ROLE alice; SELECT coding_fdw.sync_now('alpha')")
            for s in ("zeta", "alpha"):
                assert new.q("SELECT coding_fdw.wait_for_sync('%s', '60 s')" % s) == "t", s
            assert new.q("SELECT name FROM s_zeta.issues WHERE code = 1") == "after the upgrade"
            assert new.q("SELECT name FROM s_alpha.issues WHERE code = 1") == "alice's, after the upgrade"
            assert new.q("SELECT string_agg(DISTINCT server || ' ' || state, ', ' ORDER BY server || ' ' || state) "
                         "FROM coding_fdw.sync_status") == "alpha idle, zeta idle"
            # DROP SERVER ends its own subscription, not the one that had its oid
            new.q("DROP SERVER alpha CASCADE")
            assert new.q("SELECT string_agg(server_name, ',') FROM coding_fdw.subscription") == "zeta"
        res.check("both owners sync on; DROP SERVER ends only its own subscription", syncs_on)
    finally:
        for c in (new, old):
            try:
                c.stop()
            except AssertionError as e:
                print(e)
        sim.stop()
        if res.failed == 0:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print("kept for a look: %s" % base)
    res.finish()


def state(c):
    """Each subscription's rows, events and counters, by server name."""
    return c.q("SELECT string_agg(format('%s %s %s %s %s %s', s.server_name, s.into_schema, "
               "(SELECT count(*) FROM coding_fdw.webhook_event e WHERE e.server_oid = s.server_oid), "
               "(SELECT coalesce(sum(received), 0) FROM coding_fdw.webhook_counts w "
               "  WHERE w.server_oid = s.server_oid), "
               "(SELECT coalesce(sum(inserted), 0) FROM coding_fdw.sync_counts n "
               "  WHERE n.server_oid = s.server_oid), s.webhook_key IS NOT NULL), ', ' "
               "ORDER BY s.server_name) FROM coding_fdw.subscription s") + " | " + \
        c.q("SELECT (SELECT count(*) FROM s_zeta.issues) || ' ' || (SELECT count(*) FROM s_zeta.iterations) "
            "|| ' ' || (SELECT count(*) FROM s_alpha.issues)")


if __name__ == "__main__":
    sys.exit(main())
