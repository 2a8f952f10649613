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

The clients come from LOAD_SOURCES source addresses (default 25:
127.0.0.2 ... 127.0.0.26), one imapbench per address, with the per-IP cap
at its default (20): the cap stays on and every address stays within it.
Every 10 s the cofferd tree (parent + children) is sampled: summed VmRSS
and PSS (/proc/PID/smaps_rollup; PSS divides shared pages among their
users, so it is the tree's real footprint); first/last/max are reported,
and per child RssAnon and PSS (mean/median/max, total) at the start, the
middle and the end, and the server's CPU time and minor page faults per
command (parent plus reaped children, from the start of browsing).
Logins are kept apart from the load: the imapbench processes start
LOAD_RAMP seconds apart (default 2), every client logs in at once and then
waits for a common start time (imapbench -T), after which all browse for
SECONDS. (500 logins inside the load queue behind cofferd's password-check
slots, auth_concurrency = one per core, for more than their 30 s wait and
are refused with NO [UNAVAILABLE]: that is a login-storm test, not this
one.) The sampler runs at nice -5 (root) so samples stay about 10 s apart
on a saturated machine.

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
NSRC = int(os.environ.get("LOAD_SOURCES") or 25)
RAMP = float(os.environ.get("LOAD_RAMP") or 2)
LOGIN_SLACK = float(os.environ.get("LOAD_LOGIN_SLACK") or 60)
SAMPLE_S = 10
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


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid, reaped=False):
    """utime+stime of pid (with reaped=True: plus its waited-for children's)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    v = st[st.rindex(")") + 2:].split()
    ticks = int(v[11]) + int(v[12]) + ((int(v[13]) + int(v[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def minflt(pid):
    """minor page faults of pid plus its waited-for children."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0
    v = st[st.rindex(")") + 2:].split()
    return int(v[7]) + int(v[8])


def spread(vals):
    """mean / median / max of a list of kB figures, as MB text."""
    if not vals:
        return "n/a"
    v = sorted(vals)
    return "mean %.2f median %.2f max %.2f MB" % (sum(v) / len(v) / 1024, v[len(v) // 2] / 1024,
                                                 v[-1] / 1024)


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
    sources = ["127.0.0.%d" % (2 + i) for i in range(NSRC)]
    per = [SESSIONS // NSRC + (1 if i < SESSIONS % NSRC else 0) for i in range(NSRC)]
    cfg = {"max_connections": SESSIONS + 50, "idle_timeout": "30m"}
    if max(per) > 20:   # the default per-IP cap
        cfg["max_connections_per_ip"] = max(per)
    failures = []
    try:
        with CofferServer(instances={"load": {"users": {"u": "load-pw"},
                                              "imports": [("u", "INBOX", mbox)]}},
                          config=cfg) as s:
            print("load.py: %d sessions from %d source addresses (%s ... %s), %d-%d each, "
                  "per-IP cap %s" % (SESSIONS, NSRC, sources[0], sources[-1], min(per), max(per),
                                     cfg.get("max_connections_per_ip", "20 (default)")),
                  flush=True)
            benches = []
            start_at = time.time() + RAMP * NSRC + LOGIN_SLACK
            for i, (src, n) in enumerate(zip(sources, per)):
                if n == 0:
                    continue
                if benches:
                    time.sleep(RAMP)
                benches.append(subprocess.Popen(
                    [ib, "-t", "-h", "127.0.0.1", "-p", str(s.tls_port), "-S", src,
                     "-s", str(1 + 1000 * i), "-u", "load/u", "-P", "load-pw", "-m", "INBOX",
                     "-b", "%g" % SECONDS, "-T", "%.3f" % start_at, "-k", str(n)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            try:
                os.setpriority(os.PRIO_PROCESS, 0, -5)
            except OSError:
                pass
            kids = s.child_pids()
            print("load.py: %d sessions connected before the start (logins: %d)" % (
                len(kids), s.log().count(" login load/u")), flush=True)
            time.sleep(max(0.0, start_at - time.time()))
            kids = s.child_pids()
            print("load.py: browsing starts with %d sessions (logins: %d)" % (
                len(kids), s.log().count(" login load/u")), flush=True)
            samples = []
            tree = []   # (t, tree VmRSS kB, tree PSS kB)
            per_child = []   # (t, [(RssAnon kB, PSS kB) per child])
            cpu0 = cpu_s(s.proc.pid, True) + sum(cpu_s(p) for p in kids)
            flt0 = minflt(s.proc.pid) + sum(minflt(p) for p in kids)
            t0 = time.monotonic()
            while any(b.poll() is None for b in benches):
                time.sleep(SAMPLE_S)
                kids = s.child_pids()
                # one pass per child, so that a child that exits while a
                # sample is taken (at the end, 500 reads take seconds on a
                # saturated machine) is left out of every figure
                got = [(rss_kb(p), rss_kb(p, "RssAnon:"), pss_kb(p)) for p in kids]
                got = [g for g in got if g[0] and g[2]]
                rs = [g[0] for g in got]
                anon = [g[1] for g in got]
                ps = [g[2] for g in got]
                mean = sum(rs) / len(rs) if rs else 0
                amean = sum(anon) / len(anon) if anon else 0
                prss = rss_kb(s.proc.pid)
                samples.append((time.monotonic() - t0, len(got), amean, max(anon or [0]),
                                prss, mean))
                per_child.append((samples[-1][0], list(zip(anon, ps))))
                tree.append((samples[-1][0], prss + sum(rs), pss_kb(s.proc.pid) + sum(ps)))
                print("t=%5.0fs children=%4d child RssAnon mean %.0f kB max %d kB, parent "
                      "VmRSS %d kB, child VmRSS mean %.0f kB" % samples[-1]
                      + ", tree VmRSS %.1f MB PSS %.1f MB" % (tree[-1][1] / 1024, tree[-1][2] / 1024),
                      flush=True)
                if time.monotonic() - t0 > SECONDS + 600:
                    for b in benches:
                        b.kill()
                    failures.append("imapbench did not finish")
            # server CPU: the parent's own plus every reaped child's, once
            # the sessions are gone (minus what the logins cost before t0)
            for _ in range(300):
                if not s.child_pids():
                    break
                time.sleep(0.1)
            cpu = cpu_s(s.proc.pid, True) - cpu0
            flt = minflt(s.proc.pid) - flt0
            ok = errs = 0
            rate = 0.0
            for b in benches:
                out, err = b.communicate()
                out = out.decode(errors="replace")
                m = re.search(r"RESULT mode=browse .*ok=(\d+) errors=(\d+) rate=([\d.]+)", out)
                if not m:
                    failures.append("no RESULT from imapbench: %s %s" % (out[-500:], err[-500:]))
                    continue
                ok, errs, rate = ok + int(m.group(1)), errs + int(m.group(2)), rate + float(m.group(3))
            if errs:
                failures.append("%d protocol errors" % errs)
            log = s.log()
            crashed = len(re.findall(r"died of signal", log))
            peers = set(re.findall(r"conn (127\.0\.0\.\d+):\d+: connect", log))
            print("load.py: connections came from %d distinct addresses" % len(peers))
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
            up_pc = [x for x, y in zip(per_child, samples) if y[1] >= SESSIONS * 0.95]
            if up_pc:
                for name, (ts, v) in (("start", up_pc[0]), ("middle", up_pc[len(up_pc) // 2]),
                                      ("end", up_pc[-1])):
                    print("PER-CHILD %-6s t=%4.0fs n=%d: RssAnon %s; PSS %s; children PSS total "
                          "%.1f MB" % (name, ts, len(v), spread([a for a, _ in v]),
                                       spread([q for _, q in v]), sum(q for _, q in v) / 1024))
            print("SERVER CPU %.1f s for %d commands (%.1f us/command), %.2f minor faults/command, "
                  "parent + children, from the start of browsing" % (
                      cpu, ok, cpu * 1e6 / ok if ok else 0, flt / ok if ok else 0))
            if tree:
                up = ([x for x, y in zip(tree, samples) if y[1] >= SESSIONS * 0.95] or
                      [x for x, y in zip(tree, samples) if y[1] > 0] or tree)
                print("TREE (parent + children, every %d s while >= 95%% of the sessions were up): "
                      "VmRSS first %.1f last %.1f max %.1f MB; PSS first %.1f last %.1f max %.1f MB" % (
                          SAMPLE_S, up[0][1] / 1024, up[-1][1] / 1024, max(x[1] for x in up) / 1024,
                          up[0][2] / 1024, up[-1][2] / 1024, max(x[2] for x in up) / 1024))
            print("RESULT sessions=%d sources=%d seconds=%g messages=%d ok=%d errors=%d rate=%.1f/s "
                  "crashed=%d %s" % (SESSIONS, NSRC, SECONDS, COUNT, ok, errs, rate, crashed, flat))
    finally:
        subprocess.run(["rm", "-rf", work])
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
