#!/usr/bin/env python3
"""dns_cancel: a query still ends at once while api_url's host name is
being resolved by a DNS server that never answers.

Run by test/dns_cancel.sh, which starts the cluster in a mount namespace
whose /etc/resolv.conf names a UDP listener that reads and never answers
(timeout 15 s).  libcurl resolves in a thread; removing a transfer that is
still resolving used to wait for getaddrinfo to give up, so a cancel or
statement_timeout took the resolver's whole timeout (15 s here), and no
second cancel helped.  Each check asserts the exact error and that it came
in under a second.
"""
import subprocess
import threading
import time

from pgtest import Results, psql

DB = "postgres"


def main():
    res = Results()
    psql("""CREATE EXTENSION coding_fdw;
            CREATE SERVER slow_dns FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend',
              api_url 'http://slow-dns-test-host.example/open-api', connect_timeout_ms '60000');
            CREATE USER MAPPING FOR CURRENT_USER SERVER slow_dns OPTIONS (token 'x');
            CREATE FOREIGN TABLE slow_dns_issues (code int) SERVER slow_dns OPTIONS (resource 'issues')""",
         db=DB)

    def timed(sql):
        t0 = time.monotonic()
        r = psql(sql, db=DB, check=False)
        return r, time.monotonic() - t0

    def statement_timeout():
        r, took = timed("SET statement_timeout = 300; SELECT count(*) FROM slow_dns_issues")
        assert "ERROR:  canceling statement due to statement timeout" in r.stderr, r.stderr
        assert took < 1.3, "the statement ended after %.2f s" % took
    res.check("statement_timeout 300 ms during a name lookup: 57014 in under a second", statement_timeout)

    def cancel():
        # the backend's pid comes from the application name it is given
        def cancel_soon():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                n = psql("SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity "
                         "WHERE application_name = 'slow_dns' AND state = 'active'", db=DB)
                if n == "1":
                    return
                time.sleep(0.05)     # polling for the query to start, with a deadline
        t = threading.Thread(target=cancel_soon)
        t.start()
        t0 = time.monotonic()
        r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-d", DB, "-c",
                            "SET application_name = 'slow_dns'; SELECT count(*) FROM slow_dns_issues"],
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        t.join()
        assert "ERROR:  canceling statement due to user request" in r.stderr, r.stderr
        assert took < 3, "the cancelled statement ended after %.2f s" % took
    res.check("pg_cancel_backend during a name lookup: 57014 at once", cancel)
    res.finish()


if __name__ == "__main__":
    main()
