#!/usr/bin/env python3
"""load.py — bounded load test (issue 6 item 5): N concurrent TLS sessions
browsing and fetching against one cofferd for S seconds, with the
tests/bench/imapbench browse loop (SELECT, a 100-message header window,
three whole bodies, NOOP). Pass criteria: zero protocol errors, zero
children killed by a signal, RSS flat (the children's mean RssAnon at the
end within 20 % of the first sample after every session is up; the
parent's VmRSS within 20 % + 1 MB).

    python3 tests/bench/load.py [SESSIONS [SECONDS [MESSAGES]]]
    (defaults: 500 sessions, 300 s, 2000 messages; the issue's figure)

Needs root, a build (COFFER_BUILDDIR, with tests/bench/imapbench) and
../shared/tools/gen-corpus. Prints one summary line per sample and a final
RESULT line; exit 0 = pass, 1 = fail, 77 = cannot run here."""

import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from coffer_harness import CofferServer, require_root  # noqa: E402

SESSIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 300
COUNT = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
SRC = os.environ.get("COFFER_SRCDIR") or os.path.join(HERE, "..", "..")
SHARED = os.environ.get("COFFER_SHARED") or os.path.join(SRC, "..", "shared")
BUILD = os.environ.get("COFFER_BUILDDIR") or "."


def rss_kb(pid, field="VmRSS:"):
    """VmRSS includes the pages of the shared, read-only LMDB map a child
    has touched (they grow with the data browsed, and are page cache, not
    the child's memory); RssAnon is the child's own heap and stacks."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith(field):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def main():
    require_root()
    ib = os.path.join(BUILD, "tests", "bench", "imapbench")
    gen = os.path.join(SHARED, "tools", "gen-corpus")
    for f in (ib, gen):
        if not os.path.exists(f):
            print("load.py: missing %s" % f)
            sys.exit(77)
    work = tempfile.mkdtemp(prefix="coffer-load-")
    os.chmod(work, 0o755)
    mbox = os.path.join(work, "load.mbox")
    subprocess.run([sys.executable, gen, "--format", "mbox", "--count", str(COUNT), "--seed", "3",
                    "--out", mbox, "--quiet"], check=True)
    os.chmod(mbox, 0o644)
    cfg = {"max_connections": SESSIONS + 50, "max_connections_per_ip": SESSIONS + 50,
           "idle_timeout": "30m"}
    failures = []
    try:
        with CofferServer(instances={"load": {"users": {"u": "load-pw"},
                                              "imports": [("u", "INBOX", mbox)]}},
                          config=cfg) as s:
            bench = subprocess.Popen([ib, "-t", "-h", "127.0.0.1", "-p", str(s.tls_port),
                                      "-u", "load/u", "-P", "load-pw", "-m", "INBOX",
                                      "-b", str(SECONDS), "-k", str(SESSIONS)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            samples = []
            t0 = time.monotonic()
            while bench.poll() is None:
                time.sleep(5)
                kids = s.child_pids()
                rs = [rss_kb(p) for p in kids]
                anon = [rss_kb(p, "RssAnon:") for p in kids]
                mean = sum(rs) / len(rs) if rs else 0
                amean = sum(anon) / len(anon) if anon else 0
                samples.append((time.monotonic() - t0, len(kids), amean, max(anon or [0]),
                                rss_kb(s.proc.pid), mean))
                print("t=%5.0fs children=%4d child RssAnon mean %.0f kB max %d kB, parent "
                      "VmRSS %d kB, child VmRSS mean %.0f kB" % samples[-1], flush=True)
                if time.monotonic() - t0 > SECONDS + 600:
                    bench.kill()
                    failures.append("imapbench did not finish")
            out, err = bench.communicate()
            out = out.decode(errors="replace")
            m = re.search(r"RESULT mode=browse .*ok=(\d+) errors=(\d+) rate=([\d.]+)", out)
            if not m:
                failures.append("no RESULT from imapbench: %s %s" % (out[-500:], err[-500:]))
                ok = errs = 0
                rate = 0.0
            else:
                ok, errs, rate = int(m.group(1)), int(m.group(2)), float(m.group(3))
            if errs:
                failures.append("%d protocol errors" % errs)
            crashed = len(re.findall(r"died of signal", s.log()))
            if crashed:
                failures.append("%d children died of a signal" % crashed)
            # flatness: from the first sample with (nearly) every session up
            # to the last sample with them still up
            full = [x for x in samples if x[1] >= SESSIONS * 0.95]
            if len(full) >= 2:
                first, last = full[0], full[-1]
                if last[2] > first[2] * 1.2:
                    failures.append("child RssAnon grew %.0f -> %.0f kB" % (first[2], last[2]))
                if last[4] > first[4] * 1.2 + 1024:
                    failures.append("parent RSS grew %d -> %d kB" % (first[4], last[4]))
                flat = ("child mean RssAnon %.0f -> %.0f kB (VmRSS incl. the shared map "
                        "%.0f -> %.0f kB), parent %d -> %d kB" % (
                            first[2], last[2], first[5], last[5], first[4], last[4]))
            else:
                failures.append("never had %d sessions up at once (max %d)" %
                                (SESSIONS, max([x[1] for x in samples] or [0])))
                flat = "n/a"
            print("RESULT sessions=%d seconds=%g messages=%d ok=%d errors=%d rate=%.1f/s "
                  "crashed=%d %s" % (SESSIONS, SECONDS, COUNT, ok, errs, rate, crashed, flat))
    finally:
        subprocess.run(["rm", "-rf", work])
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
