#!/usr/bin/env python3
"""vgcheck: reads the valgrind logs of a memcheck run (test/memcheck.sh) and
decides whether it passed (issue #7 item 4).

valgrind writes one text log per process (--log-file=DIR/%p.log; the
server's backends are fork()ed, so each has its own).  A log is a series
of records separated by empty "==PID== " lines:

  - an error (invalid read or write, use of an uninitialised value, a
    syscall given uninitialised bytes, an invalid free, an overlap, a fatal
    signal): a message followed by a stack.  Any error, wherever it is,
    fails the check; test/valgrind.supp already removed PostgreSQL's known
    false positives;
  - a leak record; "definitely lost" fails the check only when the
    allocation's stack goes through our code: a frame in coding_fdw.so or
    in src/*.c or *.cpp, or in a library only coding_fdw loads (libcurl,
    cJSON, simdjson, libmicrohttpd).  PostgreSQL's own leaks at exit (the
    postmaster's ps-display strings, ...) are reported but not ours to fix;
  - information (headers, HEAP SUMMARY, ERROR SUMMARY).

The records read are cross-checked against valgrind's own count: "ERROR
SUMMARY: n errors from m contexts" must equal the error and definite-leak
records read, so a record this parser did not understand fails the check
instead of passing unseen; a log without an ERROR SUMMARY (a process killed
before valgrind's leak check) fails too.  valgrind runs verbose (-v): its
"--PID--" lines say which objects each process loaded (a phase where
coding_fdw.so never ran under valgrind fails: the check would be vacuous)
and how often each suppression was used; after the ERROR SUMMARY, -v
repeats the errors, which are not counted twice.

  vgcheck.py [--root DIR] LABEL=LOGDIR...   three checks per log directory
  vgcheck.py --valgrind-options LOGDIR [--suppressions FILE]
                                            valgrind's options, one a line
                                            (test/memcheck.sh uses them)
  vgcheck.py --self-test                    the parser on synthetic logs and
                                            on a real valgrind run of a toy
                                            coding_fdw.so with a bug and a leak

Prints one line per check and "N passed, N failed" at the end.
"""
import argparse
import collections
import contextlib
import glob
import io
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = re.compile(r"^==(\d+)== ?(.*)$")
VERBOSE = re.compile(r"^--(\d+)-- ?(.*)$")
READING = re.compile(r"^Reading syms from (\S+)")
USED = re.compile(r"^used_suppression:\s+([\d,]+) (\S+)")
CONTEXT = re.compile(r"^[\d,]+ errors? in context \d+ of \d+:$")
PARENT = re.compile(r"^Parent PID: (\d+)$")
# -v's notices about valgrind's own function redirections (their details
# are "--PID--" lines); they come without an empty line before the record
# that follows
NOISE = re.compile(r"^(WARNING: new redirection conflicts with existing -- ignoring it"
                   r"|Preferring higher priority redirection:)$")
FRAME = re.compile(r"^\s+(?:at|by) 0x[0-9A-Fa-f]+: (.*)$")
LEAK = re.compile(r"^[\d,]+ (?:\([\d,]+ direct, [\d,]+ indirect\) )?bytes in [\d,]+ blocks are "
                  r"(definitely lost|indirectly lost|possibly lost|still reachable)")
SUMMARY = re.compile(r"ERROR SUMMARY: ([\d,]+) errors? from ([\d,]+) contexts?")
# objects that only coding_fdw brings into a PostgreSQL process
OUR_OBJECTS = re.compile(r"\(in [^)]*/(?:coding_fdw\.so|lib(?:curl|cjson|microhttpd|simdjson)[^/)]*)\)")


def valgrind_options(logdir, root=ROOT, suppressions=None):
    """memcheck's options: verbose (objects loaded, suppressions used, the
    error list at exit), no gdbserver (no pipes left in /tmp), children
    followed (exec'd ones; forked ones always are), full leak check with
    only definite leaks shown and counted as errors, full source paths (to
    tell our src/*.c from PostgreSQL's), proposed suppressions in the log,
    one log per process.  The suppressions are test/valgrind.supp unless
    given: a server run as another user may not read the source tree (a
    clone in root's home)."""
    return ["--tool=memcheck", "-v", "--vgdb=no", "--trace-children=yes", "--leak-check=full",
            "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite", "--num-callers=30",
            "--fullpath-after=", "--gen-suppressions=all",
            "--suppressions=%s" % (suppressions or os.path.join(root, "test", "valgrind.supp")),
            "--log-file=%s" % os.path.join(logdir, "%p.log")]


def our_source_frame(root):
    """A regex matching a frame in one of our source files: valgrind runs
    with --fullpath-after= so the path is complete, and the file must sit
    directly in a directory named src (PostgreSQL has its own functions.c,
    but in src/backend/executor/)."""
    names = sorted(os.path.basename(p) for ext in ("c", "h", "cpp")
                   for p in glob.glob(os.path.join(root, "src", "*." + ext)))
    if not names:
        raise SystemExit("vgcheck: no sources in %s/src" % root)
    return re.compile(r"\((?:/[^():]*)?/src/(?:%s):\d+\)" % "|".join(re.escape(n) for n in names))


class Record:
    """One record of a log: its "==PID=="-prefixed lines, plus any
    unprefixed lines after it (the {...} block of --gen-suppressions)."""

    def __init__(self, lines):
        self.lines = lines
        self.extra = []

    def text(self):
        """The record as valgrind printed it, to compare a parent's and a
        child's copies of an inherited error."""
        return "\n".join(self.lines)

    def excerpt(self, limit=60):
        """What a failure shows: the record and the suppression valgrind
        proposes for it, cut at limit lines."""
        return "\n".join((self.lines + self.extra)[:limit])


class Log:
    """One process's valgrind log, parsed into records."""

    def __init__(self, path, ours):
        self.path = path
        self.pid = None
        self.parent = None        # "Parent PID:" (the postmaster, for a backend)
        self.errors = []          # error records shown as they happened
        self.listed = []          # errors -v lists at exit, inherited ones too
        self.definite = []        # definitely lost leak records
        self.warnings = []        # valgrind's own warnings: shown, not failures
        self.summary = None       # (errors, contexts) from ERROR SUMMARY
        self.objects = set()      # files valgrind read symbols from
        self.suppressed = collections.Counter()   # suppression name -> uses
        self.ours = ours
        with open(path, errors="replace") as f:
            self._parse(f.read().splitlines())

    def _parse(self, lines):
        """Split the prefixed lines into records separated by empty ones (or
        by a line at the left margin after an indented one: a record's
        stack is indented), and read -v's "--PID--" lines (objects read,
        suppressions used)."""
        lines_of_record = []
        last = None
        for line in lines:
            v = VERBOSE.match(line)
            if v:
                m = READING.match(v.group(2))
                if m:
                    self.objects.add(m.group(1))
                m = USED.match(v.group(2))
                if m:
                    self.suppressed[m.group(2)] += int(m.group(1).replace(",", ""))
                continue
            m = PREFIX.match(line)
            if not m:
                if last is not None and not lines_of_record:
                    last.extra.append(line)
                continue
            self.pid = self.pid or m.group(1)
            text = m.group(2)
            if NOISE.match(text):
                continue
            if lines_of_record and text.strip() and not text[0].isspace() and lines_of_record[-1][0].isspace():
                last = self._classify(Record(lines_of_record))
                lines_of_record = []
            if text.strip():
                lines_of_record.append(text)
            elif lines_of_record:
                last = self._classify(Record(lines_of_record))
                lines_of_record = []
        if lines_of_record:
            self._classify(Record(lines_of_record))

    def _classify(self, record):
        """Sort one record into errors, definite leaks, warnings or
        information, and pick up the parent's pid and the ERROR SUMMARY;
        after it, -v lists every error context again ("n errors in
        context k of m:"), those inherited from the parent at fork too."""
        first = record.lines[0]
        if self.summary is not None:
            if CONTEXT.match(first):
                self.listed.append(Record(record.lines[1:]))
            return record
        for line in record.lines:
            m = PARENT.match(line)
            if m:
                self.parent = m.group(1)
            m = SUMMARY.search(line)
            if m:
                self.summary = tuple(int(g.replace(",", "")) for g in m.groups())
                return record
        leak = LEAK.match(first)
        if leak:
            if leak.group(1) == "definitely lost":
                self.definite.append(record)
        elif first.lower().startswith("warning:"):
            self.warnings.append(record)
        elif any(FRAME.match(line) for line in record.lines):
            self.errors.append(record)
        return record

    def is_ours(self, record):
        """True when a frame of the record is in our code or our libraries."""
        for line in record.lines:
            m = FRAME.match(line)
            if m and (OUR_OBJECTS.search(m.group(1)) or self.ours.search(m.group(1))):
                return True
        return False

    def problems(self, by_pid):
        """What fails the check in this log: (kind, text) pairs.  An error
        listed at exit but not shown here must be one the parent made before
        the fork (its log shows it); anything else was not understood."""
        out = []
        shown = {r.text() for r in self.errors}
        inherited = [r for r in self.listed if r.text() not in shown]
        if self.summary is None:
            out.append(("incomplete", "no ERROR SUMMARY: the process ended before valgrind's leak check "
                                      "(killed?) or is still running"))
        elif self.summary[1] != len(self.errors) + len(self.definite) + len(inherited):
            out.append(("not understood", "valgrind counted %d contexts; read: %d errors, %d definite leaks, "
                                          "%d errors inherited" % (self.summary[1], len(self.errors),
                                                                   len(self.definite), len(inherited))))
        for r in inherited:
            if not self._ancestor_shows(r.text(), by_pid):
                out.append(("not understood", "listed at exit, shown neither here nor in a parent's log:\n"
                            + r.excerpt()))
        for r in self.errors:
            out.append(("error" + (" in our code" if self.is_ours(r) else ""), r.excerpt()))
        for r in self.definite:
            if self.is_ours(r):
                out.append(("definite leak in our code", r.excerpt()))
        return out

    def _ancestor_shows(self, text, by_pid):
        """Whether the parent's log (or its parent's...) shows this error."""
        log, seen = self, set()
        while log.parent in by_pid and log.parent not in seen:
            seen.add(log.parent)
            log = by_pid[log.parent]
            if any(r.text() == text for r in log.errors):
                return True
        return False


def check_dir(label, logdir, ours, show=5):
    """Parse every log of one phase; print its figures; return (passed, failed)."""
    logs = [Log(p, ours) for p in sorted(glob.glob(os.path.join(logdir, "*.log")))]
    by_pid = {g.pid: g for g in logs if g.pid}
    errors = sum(len(g.errors) for g in logs)
    our_leaks = sum(1 for g in logs for r in g.definite if g.is_ours(r))
    pg_leaks = sum(1 for g in logs for r in g.definite if not g.is_ours(r))
    warnings = sum(len(g.warnings) for g in logs)
    incomplete = [g for g in logs if g.summary is None]
    loaded = sum(1 for g in logs if any(o.endswith("/coding_fdw.so") for o in g.objects))
    suppressed = collections.Counter()
    for g in logs:
        suppressed.update(g.suppressed)
    print("memcheck %s: %d processes checked, %d errors, %d definite leaks in our code "
          "(%d in PostgreSQL itself, not ours), %d valgrind warnings%s"
          % (label, len(logs), errors, our_leaks, pg_leaks, warnings,
             ", %d logs incomplete" % len(incomplete) if incomplete else ""))
    # a child counts again what its parent had used before the fork
    print("memcheck %s: suppressions used (test/valgrind.supp; counted in each process that inherited "
          "them): %s" % (label, ", ".join("%s %d" % kv for kv in sorted(suppressed.items())) or "none"))
    found = [(g, kind, text) for g in logs for kind, text in g.problems(by_pid)]
    for g, kind, text in found[:show]:
        print("---- %s (%s, pid %s):" % (kind, os.path.basename(g.path), g.pid))
        print(text)
    if len(found) > show:
        print("---- ... and %d more in %s" % (len(found) - show, logdir))
    passed = failed = 0
    mem_ok = bool(logs) and not any(k for _, k, _ in found if not k.startswith("definite leak"))
    leak_ok = bool(logs) and not any(k for _, k, _ in found if k.startswith("definite leak"))
    for ok, name in ((loaded > 0, "coding_fdw.so ran under valgrind (loaded by %d processes, "
                                  "the others inherited it or did not need it)" % loaded),
                     (mem_ok, "no memory errors in %d processes" % len(logs)),
                     (leak_ok, "no definite leak in our code")):
        print("%s memcheck %s: %s" % ("ok  " if ok else "FAIL", label, name))
        passed += ok
        failed += not ok
    return passed, failed


# ---------------------------------------------------------------- self-test

HEADER = """==%(pid)d== Memcheck, a memory error detector
--%(pid)d-- Reading syms from /usr/lib/postgresql/15/lib/coding_fdw.so
==%(pid)d== Copyright (C) 2002-2022, and GNU GPL'd, by Julian Seward et al.
==%(pid)d== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==%(pid)d== Command: /usr/lib/postgresql/15/bin/postgres -D /tmp/data
==%(pid)d== Parent PID: 100
==%(pid)d== 
"""
INVALID_READ_OURS = """==%(pid)d== Invalid read of size 1
==%(pid)d==    at 0x4848F44: strlen (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==%(pid)d==    by 0x6E8C2B1: coding_error_detail (/build/coding_fdw/src/coding_client.c:412)
==%(pid)d==    by 0x6E8D0A2: coding_batch_run (/build/coding_fdw/src/coding_client.c:733)
==%(pid)d==    by 0x5B1F3C: ExecScan (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d==  Address 0x9a1b0c4 is 0 bytes after a block of size 4 alloc'd
==%(pid)d==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==%(pid)d==    by 0x6E8C101: body_append (/build/coding_fdw/src/coding_client.c:220)
==%(pid)d== 
{
   <insert_a_suppression_name_here>
   Memcheck:Addr1
   fun:strlen
   fun:coding_error_detail
}
"""
UNINIT_POSTGRES = """==%(pid)d== Conditional jump or move depends on uninitialised value(s)
==%(pid)d==    at 0x62A1B3: hash_search_with_hash_value (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d==    by 0x25D975: main (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d== 
"""
HEAP = """==%(pid)d== HEAP SUMMARY:
==%(pid)d==     in use at exit: 358,871 bytes in 443 blocks
==%(pid)d==   total heap usage: 8,931 allocs, 8,488 frees, 1,907,594 bytes allocated
==%(pid)d== 
"""
LEAK_POSTGRES = """==%(pid)d== 20 bytes in 1 blocks are definitely lost in loss record 15 of 52
==%(pid)d==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==%(pid)d==    by 0x58799A9: strdup (string/./string/strdup.c:42)
==%(pid)d==    by 0x50193E: PostmasterMain (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d==    by 0x61A0C2: ExecInitNode (./build/../src/backend/executor/functions.c:1087)
==%(pid)d==    by 0x25D975: main (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d== 
"""
LEAK_OURS_NO_DEBUGINFO = """==%(pid)d== 1,992 (360 direct, 1,632 indirect) bytes in 1 blocks are definitely lost in loss record 3 of 9
==%(pid)d==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==%(pid)d==    by 0x6E91B2C: ??? (in /usr/lib/postgresql/15/lib/coding_fdw.so)
==%(pid)d==    by 0x5B1F3C: ExecScan (in /usr/lib/postgresql/15/bin/postgres)
==%(pid)d== 
"""
LEAK_CURL = """==%(pid)d== 64 bytes in 1 blocks are definitely lost in loss record 7 of 52
==%(pid)d==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==%(pid)d==    by 0x7A2C10E: curl_easy_init (in /usr/lib/x86_64-linux-gnu/libcurl.so.4.8.0)
==%(pid)d== 
"""
TAIL = """==%(pid)d== LEAK SUMMARY:
==%(pid)d==    definitely lost: 20 bytes in 1 blocks
==%(pid)d==    indirectly lost: 0 bytes in 0 blocks
==%(pid)d== 
==%(pid)d== ERROR SUMMARY: %(n)d errors from %(n)d contexts (suppressed: 3 from 1)
--%(pid)d-- 
--%(pid)d-- used_suppression:      3 pg_wal_padding_static_xlogwrite /x/test/valgrind.supp:26
==%(pid)d== 
%(listed)s==%(pid)d== ERROR SUMMARY: %(n)d errors from %(n)d contexts (suppressed: 3 from 1)
"""
LISTED = """==%(pid)d== 1 errors in context 1 of 1:
""" + UNINIT_POSTGRES


def self_test():
    """The parser must catch an error and a leak in our code, not count a
    PostgreSQL-only leak as ours, and fail a log it cannot account for."""
    ours = re.compile(r"\((?:/[^():]*)?/src/(?:coding_client\.c|functions\.c|fdw\.c):\d+\)")
    cases = []   # (name, log text, expected problem kinds, expected our leaks, expected PG leaks)

    def log(pid, *parts, n=None, tail=True, listed=""):
        """A synthetic log of the given records; n overrides the contexts
        valgrind would count, tail=False cuts the log before its summary."""
        text = HEADER + "".join(parts) + HEAP
        count = n if n is not None else sum(1 for p in parts if p is not HEAP)
        return (text + (TAIL if tail else "")) % {"pid": pid, "n": count, "listed": listed % {"pid": pid}}

    cases.append(("an invalid read in coding_client.c is an error in our code",
                  log(11, INVALID_READ_OURS), ["error in our code"], 0, 0))
    cases.append(("an uninitialised value in PostgreSQL is still an error",
                  log(12, UNINIT_POSTGRES), ["error"], 0, 0))
    cases.append(("a definite leak in coding_fdw.so (no debug info) is ours",
                  log(13, LEAK_POSTGRES, LEAK_OURS_NO_DEBUGINFO), ["definite leak in our code"], 1, 1))
    cases.append(("a definite leak allocated by libcurl is ours",
                  log(14, LEAK_CURL), ["definite leak in our code"], 1, 0))
    cases.append(("a PostgreSQL-only leak (its functions.c is not ours) passes",
                  log(15, LEAK_POSTGRES), [], 0, 1))
    cases.append(("a log without ERROR SUMMARY (killed process) fails",
                  log(16, LEAK_POSTGRES, tail=False), ["incomplete"], 0, 1))
    cases.append(("a record the parser missed (count mismatch) fails",
                  log(17, LEAK_POSTGRES, n=2), ["not understood"], 0, 1))
    cases.append(("an error listed at exit but shown neither in the log nor in its parent's fails",
                  log(18, LEAK_POSTGRES, n=2, listed=LISTED), ["not understood"], 0, 1))
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        for i, (name, text, kinds, n_ours, n_pg) in enumerate(cases):
            path = os.path.join(d, "%d.log" % i)
            with open(path, "w") as f:
                f.write(text)
            g = Log(path, ours)
            got = [k for k, _ in g.problems({})]
            got_ours = sum(1 for r in g.definite if g.is_ours(r))
            ok = got == kinds and got_ours == n_ours and len(g.definite) - got_ours == n_pg
            print("%s vgcheck self-test: %s%s" % ("ok  " if ok else "FAIL", name,
                                                 "" if ok else " (got %s, %d ours)" % (got, got_ours)))
            passed += ok
            failed += not ok
        # a whole directory: one failing log fails the phase's check
        for i, text in enumerate((log(21, LEAK_POSTGRES), log(22, INVALID_READ_OURS))):
            with open(os.path.join(d, "dir%d.log" % i), "w") as f:
                f.write(text)
        sub = os.path.join(d, "phase")
        os.mkdir(sub)
        for name in ("dir0.log", "dir1.log"):
            os.rename(os.path.join(d, name), os.path.join(sub, name))
        with contextlib.redirect_stdout(io.StringIO()) as out:
            p, f = check_dir("self-test phase", sub, ours, show=0)
        ok = (p, f) == (2, 1) and "1 errors, 0 definite leaks in our code" in out.getvalue()
        print("%s vgcheck self-test: a phase with one bad log fails its memory check" % ("ok  " if ok else "FAIL"))
        passed += ok
        failed += not ok
        ok, why = real_valgrind_run(d)
        print("%s vgcheck self-test: valgrind on a toy coding_fdw.so: its overrun (before a fork) and "
              "its leak (in the child) found, the child's own leak not ours%s"
              % ("ok  " if ok else "FAIL", "" if ok else ": " + why))
        passed += ok
        failed += not ok
    return passed, failed


TOY_LIB = """#include <stdlib.h>
#include <string.h>
/* a leak and an overrun, in a file named like one of ours */
char *toy_leak(void) { char *p = malloc(32); strcpy(p, "lost"); return p; }
void toy_overrun(void) { char *p = malloc(4); volatile char c = p[4]; (void) c; free(p); }
"""
TOY_MAIN = """#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
char *toy_leak(void);
void toy_overrun(void);
/* named like PostgreSQL's executor/functions.c: its leak is not ours.  The
   overrun happens before fork(), as in a postmaster: the child's valgrind
   inherits it and lists it again at exit */
int main(void)
{
    toy_overrun();
    if (fork() == 0)
    {
        volatile char *pg = malloc(16);
        pg = NULL;
        (void) pg;
        (void) toy_leak();
        _exit(0);
    }
    wait(NULL);
    return 0;
}
"""


def real_valgrind_run(d):
    """Build a toy coding_fdw.so (src/coding_client.c) with an overrun and a
    leak, and a program that overruns in it, forks like a postmaster, and
    leaks in the child (once through the toy library, once on its own);
    run it under valgrind with memcheck.sh's options and parse the two
    logs: this checks the options and the parser against the installed
    valgrind's real output."""
    for sub in ("src", "backend", "vg"):
        os.makedirs(os.path.join(d, "toy", sub))
    toy = os.path.join(d, "toy")
    with open(os.path.join(toy, "src", "coding_client.c"), "w") as f:
        f.write(TOY_LIB)
    with open(os.path.join(toy, "backend", "functions.c"), "w") as f:
        f.write(TOY_MAIN)
    lib = os.path.join(toy, "coding_fdw.so")
    try:
        subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", lib,
                        os.path.join(toy, "src", "coding_client.c")], check=True, capture_output=True)
        subprocess.run(["gcc", "-g", "-O0", "-o", os.path.join(toy, "toy"),
                        os.path.join(toy, "backend", "functions.c"), lib, "-Wl,-rpath," + toy],
                       check=True, capture_output=True)
        subprocess.run(["valgrind"] + valgrind_options(os.path.join(toy, "vg")) + [os.path.join(toy, "toy")],
                       check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return False, "could not build or run the toy: %s" % e
    logs = [Log(p, our_source_frame(ROOT)) for p in glob.glob(os.path.join(toy, "vg", "*.log"))]
    by_pid = {g.pid: g for g in logs}
    parent = [g for g in logs if g.parent not in by_pid]
    child = [g for g in logs if g.parent in by_pid]
    if len(parent) != 1 or len(child) != 1:
        return False, "%d logs, not a parent's and a child's" % len(logs)
    parent, child = parent[0], child[0]
    got = ([k for k, _ in parent.problems(by_pid)], [k for k, _ in child.problems(by_pid)])
    want = (["error in our code"], ["definite leak in our code"])
    ours = [r.text().splitlines()[0] for r in child.definite if child.is_ours(r)]
    if got != want or len(ours) != 1 or len(child.definite) != 2 or lib not in parent.objects:
        return False, "problems %s, child's leaks ours: %s of %d, parent's objects %s" % (
            got, ours, len(child.definite), sorted(parent.objects))
    return True, ""


def main():
    """Self-test, print valgrind's options, or check log directories."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="the source tree (its src/ names our source files)")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--valgrind-options", metavar="LOGDIR")
    ap.add_argument("--suppressions", metavar="FILE", help="instead of test/valgrind.supp")
    ap.add_argument("phases", nargs="*", metavar="LABEL=LOGDIR")
    args = ap.parse_args()
    if args.valgrind_options:
        print("\n".join(valgrind_options(args.valgrind_options, args.root, args.suppressions)))
        return
    if args.self_test:
        passed, failed = self_test()
    else:
        ours = our_source_frame(args.root)
        passed = failed = 0
        for spec in args.phases:
            label, _, logdir = spec.partition("=")
            p, f = check_dir(label, logdir, ours)
            passed += p
            failed += f
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
