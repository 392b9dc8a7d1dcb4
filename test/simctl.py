#!/usr/bin/env python3
"""simctl.py: tiny client for coding_sim.py's control endpoints (/_sim/...).

Used by SQL tests through psql ``\\!`` and by shell scripts, so its output is
stable: mutating commands (fault, clear-faults, rate-limit, clear-log, reset,
delete, webhook, clear-deliveries) print NOTHING on success; failures print one
line on stderr and exit non-zero (1 = the simulator refused the request,
2 = the simulator could not be reached or the arguments are wrong).

    simctl.py [--url URL] [--project P] COMMAND ...

    health                             wait for /_sim/health (--timeout S, default 10)
    fault '<json>'                     queue a fault ({"type": ..., "action": ..., ...})
    faults                             list pending faults (JSON)
    clear-faults                       drop pending faults
    rate-limit N                       N requests/second per Action (0 = off)
    log [--action A] [--since ID]      request log (JSON)
    clear-log                          empty the request log
    count [--action A]                 number of logged requests
    create issue|iteration|member '<json>'          prints the created object (JSON)
    update issue|iteration|member KEY '<json>'      prints the updated object (JSON)
    delete issue|iteration|member KEY
    get issue|iteration|member [KEY]                prints the object(s) (JSON)
    reset ['<json>']                   regenerate ({"seed": .., "projects": {"backend": 2000}})
    dump                               the whole model (JSON; --project limits it)
    webhook '<json>'                   configure Service Hook delivery
    deliveries                         webhook delivery attempts (JSON)
    clear-deliveries                   forget delivery attempts

URL defaults to $CODING_SIM_CONTROL (e.g. http://127.0.0.1:PORT).  ``-q``
suppresses the JSON printed by create/update.  ``--event NAME`` on
create/update/delete sends that webhook event name instead of the default.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

KINDS = {"issue": "issues", "iteration": "iterations", "member": "members"}


class SimError(Exception):
    """A failed control call: message and exit status."""

    def __init__(self, message, status=1):
        """Message for stderr and the exit status."""
        super().__init__(message)
        self.status = status


def call(base, method, path, body=None, query=None, timeout=30):
    """One JSON request to the simulator; returns the decoded answer."""
    url = base.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace").strip()
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise SimError(f"simctl: {method} {path}: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SimError(f"simctl: cannot reach {base}: {reason}", 2) from None
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        raise SimError(f"simctl: {method} {path}: answer is not JSON") from None


def parse_json_arg(text, what):
    """A JSON command-line argument (object expected)."""
    try:
        v = json.loads(text)
    except ValueError as e:
        raise SimError(f"simctl: {what} is not valid JSON: {e}", 2) from None
    if not isinstance(v, dict):
        raise SimError(f"simctl: {what} must be a JSON object", 2)
    return v


def out(obj):
    """Print JSON (UTF-8, one line, keys sorted for stable output)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")


def entity_path(project, kind, key=None):
    """/_sim[/projects/P]/KIND[/KEY]."""
    if kind not in KINDS:
        raise SimError(f"simctl: unknown kind {kind!r}: issue, iteration or member", 2)
    p = "/_sim"
    if project:
        p += "/projects/" + urllib.parse.quote(project, safe="")
    p += "/" + KINDS[kind]
    if key is not None:
        if not str(key).lstrip("-").isdigit():
            raise SimError(f"simctl: key must be an integer, got {key!r}", 2)
        p += f"/{key}"
    return p


def build_parser():
    """Argument parser (see module docstring)."""
    ap = argparse.ArgumentParser(prog="simctl.py", description="coding_sim control client")
    ap.add_argument("--url", default=os.environ.get("CODING_SIM_CONTROL"),
                    help="simulator base URL (default $CODING_SIM_CONTROL)")
    ap.add_argument("--project", help="project for create/update/delete/get/dump (default: first)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no output from create/update")
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("health")
    h.add_argument("--timeout", type=float, default=10.0)
    sub.add_parser("fault").add_argument("spec")
    sub.add_parser("faults")
    sub.add_parser("clear-faults")
    sub.add_parser("rate-limit").add_argument("n", type=float)
    lg = sub.add_parser("log")
    lg.add_argument("--action")
    lg.add_argument("--since", type=int)
    sub.add_parser("clear-log")
    b = sub.add_parser("bodies", help="logged request bodies, one compact JSON line each")
    b.add_argument("--action")
    b.add_argument("--omit", default="", help="comma-separated keys to leave out")
    c = sub.add_parser("count")
    c.add_argument("--action")
    for name in ("create", "update", "delete", "get"):
        s = sub.add_parser(name)
        s.add_argument("--project", default=argparse.SUPPRESS, help="project (default: first)")
        s.add_argument("kind", choices=sorted(KINDS))
        if name in ("update", "delete"):
            s.add_argument("key")
        if name == "get":
            s.add_argument("key", nargs="?")
        if name in ("create", "update"):
            s.add_argument("spec")
        if name != "get":
            s.add_argument("--event", help="webhook event name to send instead of the default")
    sub.add_parser("reset").add_argument("spec", nargs="?", default="{}")
    sub.add_parser("dump").add_argument("--project", default=argparse.SUPPRESS)
    sub.add_parser("webhook").add_argument("spec")
    sub.add_parser("deliveries")
    sub.add_parser("clear-deliveries")
    return ap


def run(args):
    """Execute one command."""
    base = args.url
    if not base:
        raise SimError("simctl: no simulator URL: pass --url or set CODING_SIM_CONTROL", 2)
    cmd = args.cmd
    if cmd == "health":
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                call(base, "GET", "/_sim/health", timeout=2)
                return
            except SimError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
    if cmd == "fault":
        call(base, "POST", "/_sim/fault", parse_json_arg(args.spec, "fault"))
    elif cmd == "faults":
        out(call(base, "GET", "/_sim/faults"))
    elif cmd == "clear-faults":
        call(base, "DELETE", "/_sim/faults")
    elif cmd == "rate-limit":
        n = int(args.n) if args.n == int(args.n) else args.n
        call(base, "POST", "/_sim/rate_limit", {"per_second": n})
    elif cmd == "log":
        out(call(base, "GET", "/_sim/log", query={"action": args.action, "since": args.since}))
    elif cmd == "bodies":
        # stable text for regress tests: sorted keys, no Action, no ids or times
        omit = set(filter(None, args.omit.split(","))) | {"Action"}
        for r in call(base, "GET", "/_sim/log", query={"action": args.action})["requests"]:
            body = {k: v for k, v in (r.get("body") or {}).items() if k not in omit}
            print(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")))
    elif cmd == "clear-log":
        call(base, "DELETE", "/_sim/log")
    elif cmd == "count":
        print(call(base, "GET", "/_sim/log/count", query={"action": args.action})["count"])
    elif cmd == "create":
        r = call(base, "POST", entity_path(args.project, args.kind),
                 parse_json_arg(args.spec, args.kind), query={"event": args.event})
        if not args.quiet:
            out(r)
    elif cmd == "update":
        r = call(base, "PATCH", entity_path(args.project, args.kind, args.key),
                 parse_json_arg(args.spec, args.kind), query={"event": args.event})
        if not args.quiet:
            out(r)
    elif cmd == "delete":
        call(base, "DELETE", entity_path(args.project, args.kind, args.key), query={"event": args.event})
    elif cmd == "get":
        out(call(base, "GET", entity_path(args.project, args.kind, args.key)))
    elif cmd == "reset":
        call(base, "POST", "/_sim/reset", parse_json_arg(args.spec, "reset"))
    elif cmd == "dump":
        out(call(base, "GET", "/_sim/dump", query={"project": args.project}, timeout=600))
    elif cmd == "webhook":
        call(base, "POST", "/_sim/webhook", parse_json_arg(args.spec, "webhook"))
    elif cmd == "deliveries":
        out(call(base, "GET", "/_sim/webhook/deliveries"))
    elif cmd == "clear-deliveries":
        call(base, "DELETE", "/_sim/webhook/deliveries")


def main(argv=None):
    """Entry point: exit 0 on success, 1/2 with a stderr message on failure."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except SimError as e:
        sys.stderr.write(str(e) + "\n")
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
