"""search_bench.py — driver for tests/bench/search.sh (see there)."""
import imaplib, resource, signal, json, os, statistics, subprocess, sys, tempfile, time
imaplib._MAXLINE = 50_000_000     # an all-matching UID SEARCH at 1M messages is ~8 MB
# a timeout (SIGTERM) must still stop Dovecot in the finally: below
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
from coffer_harness import CofferServer, coffer_path, free_port

count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
src = os.environ.get("COFFER_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
shared = os.environ.get("COFFER_SHARED") or os.path.join(src, "..", "shared")
tools = os.path.join(shared, "tools")
work = tempfile.mkdtemp(prefix="coffer-bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
os.chmod(work, 0o755)     # coffer runs as the coffer user
# BENCH_MBOX: an existing gen-corpus mbox (with its .stats.json) of COUNT
# messages, e.g. for the 1,000,000-message run. BENCH_DATA: a data dir that
# is kept: imported into (instance b, user u, folder bench) when it has no
# instance yet, else searched as it is (one import serves several runs).
# BENCH_IMPORT_NICE: niceness of that import (default 0).
mbox = os.environ.get("BENCH_MBOX") or os.path.join(work, "bench.mbox")
if not os.environ.get("BENCH_MBOX"):
    subprocess.run([os.path.join(tools, "gen-corpus"), "--format", "mbox", "--count", str(count),
                    "--seed", "1", "--out", mbox, "--quiet"], check=True)
# BENCH_STATS: the stats sidecar to take the query words from (default
# BENCH_MBOX's own); BENCH_RAW_BYTES: the archive's raw size when BENCH_DATA
# holds more than BENCH_MBOX (an archive imported in pieces)
st = json.load(open(os.environ.get("BENCH_STATS") or mbox + ".stats.json"))
raw = int(os.environ.get("BENCH_RAW_BYTES") or os.path.getsize(mbox))


def q(s):
    return '"%s"' % s


queries = [
    ("BODY rare word", "BODY " + q(st["rare_body_words"][0][0])),
    ("BODY rare word [4] (%d)" % st["rare_body_words"][4][1], "BODY " + q(st["rare_body_words"][4][0])),
    ("BODY rare word [5] (%d)" % st["rare_body_words"][5][1], "BODY " + q(st["rare_body_words"][5][0])),
    ("TEXT rare word [3] (%d)" % st["rare_body_words"][3][1], "TEXT " + q(st["rare_body_words"][3][0])),
    ("UNDELETED BODY rare word", "UNDELETED BODY " + q(st["rare_body_words"][1][0])),
    ("BODY absent word", "BODY " + q(st["absent_words"][0])),
    ("TEXT common word", "TEXT " + q(st["common_body_words"][0][0])),
    ("BODY common word", "BODY " + q(st["common_body_words"][1][0])),
    ("FROM top sender", "FROM " + q(st["top_senders"][0][0])),
    ("SUBJECT word", "SUBJECT " + q(st["subject_words"][0][0])),
    ("HEADER Message-ID", "HEADER Message-ID " + q(st["sample_message_ids"][0][1])),
    ("SINCE/BEFORE", "SINCE 1-Jan-2018 BEFORE 1-Jul-2018"),
    ("OR/NOT combination", "OR BODY %s NOT SUBJECT %s" % (q(st["rare_body_words"][2][0]),
                                                          q(st["subject_words"][1][0]))),
    ("BODY cross-word substring", "BODY " + q("ds, " + st["rare_body_words"][3][0][:4])),
]

# BENCH_WORDS=w1,w2: extra BODY queries for fixed words (the same words at
# every archive size, unlike the stats sidecar's, which scale with it)
for w in filter(None, os.environ.get("BENCH_WORDS", "").split(",")):
    queries.append(("BODY " + w, "BODY " + q(w)))


def child_cpu_ms(server):
    """CPU milliseconds used so far by the server's session processes: on a
    loaded machine the wall times mostly measure the wait for a core.
    /proc/PID/schedstat counts nanoseconds (stat only 10 ms ticks)."""
    tot = 0.0
    for pid in (server.child_pids() if server else []):
        try:
            tot += int(open("/proc/%d/schedstat" % pid).read().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            try:
                f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
                tot += (int(f[11]) + int(f[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue
    return tot


def timed(m, query, server=None):
    """Median wall ms, median server CPU ms (per run), result count."""
    ts, cs, res = [], [], None
    for _ in range(repeat):
        c0 = child_cpu_ms(server)
        t0 = time.perf_counter()
        typ, d = m.uid("SEARCH", query)
        ts.append(time.perf_counter() - t0)
        cs.append(child_cpu_ms(server) - c0)
        res = d[0].split() if typ == "OK" else ["ERR"]
    return statistics.median(ts) * 1000, statistics.median(cs), len(res)


# BENCH_NO_DOVECOT=1: Coffer only (for the large sizes where loading
# Dovecot through APPEND would take most of an hour)
with_dovecot = os.environ.get("BENCH_NO_DOVECOT") != "1"
dport = free_port()
name = "coffersearchbench%d" % os.getpid()
if with_dovecot:
    subprocess.run([os.path.join(tools, "imap-test-servers"), "dovecot-start", name, str(dport)],
                   check=True, stdout=subprocess.DEVNULL)
try:
    bench_data = os.environ.get("BENCH_DATA")
    with CofferServer(instances={} if bench_data else {"b": {"users": {"u": "p"}}},
                      start=False) as s:
        do_import = True
        if bench_data:
            s.data_dir = os.path.abspath(bench_data)
            s.write_config()
            if os.path.isdir(os.path.join(s.data_dir, "instances", "b")):
                do_import = False
            else:
                os.makedirs(s.data_dir, 0o750, exist_ok=True)
                os.chown(s.data_dir, s.uid, s.gid)
                pf = os.path.join(s.tmp, "benchpw")
                with open(pf, "w") as f:
                    f.write("p\n")
                s.coffer("instance", "add", "b")
                s.coffer("user", "add", "b/u", "--password-file", pf)
        imp = imp_cpu = 0.0
        if do_import:
            t0 = time.perf_counter()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # not s.coffer(): its 10-minute timeout is too short for 1M
            subprocess.run(["nice", "-n", os.environ.get("BENCH_IMPORT_NICE", "0"), coffer_path(),
                            "-c", s.conf_path, "--data-dir", s.data_dir,
                            "import", "b/u", "--folder", "bench", mbox], check=True)
            imp = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            imp_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        s._chown_data()
        ixbytes = 0
        r = subprocess.run(["mdb_stat", "-a", os.path.join(s.data_dir, "instances", "b")],
                           stdout=subprocess.PIPE, text=True)
        cur = None
        for ln in r.stdout.splitlines():
            if ln.startswith("Status of "):
                cur = ln[10:].strip()
            elif cur and cur.startswith("ix_") and ("pages" in ln):
                ixbytes += int(ln.split(":")[1]) * 4096
        s.start()
        dimp, d = 0.0, None
        if with_dovecot:
            t0 = time.perf_counter()
            subprocess.run([os.path.join(tools, "imap-append"), "--host", "127.0.0.1:%d" % dport,
                            "--user", "test", "--pass", "test", "--plain", "--create",
                            "--mailbox", "bench", mbox], check=True, stdout=subprocess.DEVNULL)
            dimp = time.perf_counter() - t0
            d = imaplib.IMAP4("127.0.0.1", dport)
            d.login("test", "test")
            d.select("bench", readonly=True)
        c = s.login("b/u", "p")
        c.select("bench", readonly=True)
        print("messages %d, raw %.1f MB, repeat %d (median ms)" % (count, raw / 1e6, repeat))
        if imp:
            print("coffer import with indexing: %.1f s = %.0f msg/s wall; CPU %.1f s = %.0f msg/s"
                  % (imp, count / imp, imp_cpu, count / imp_cpu if imp_cpu else 0))
        print("index %.1f MB = %.3fx raw; load average %s" % (ixbytes / 1e6, ixbytes / raw,
                                                          " ".join(open("/proc/loadavg").read().split()[:3])))
        if with_dovecot:
            print("dovecot imap-append: %.1f s" % dimp)
        print("%-28s %10s %10s %8s %8s %7s" % ("query", "coffer ms", "dovecot ms", "n(C)", "n(D)", "speedup")
              + "  coffer CPU ms/run (median)")
        for label, query in queries:
            tc, ccpu, nc = timed(c, query, s)
            td, _, nd = timed(d, query) if d else (0.0, 0.0, nc)
            print("%-28s %10.2f %10.2f %8d %8d %6.0fx  %6.1f%s" % (label, tc, td, nc, nd, td / tc if tc else 0,
                                                                ccpu, "" if nc == nd else "  RESULTS DIFFER"))
            sys.stdout.flush()
        c.logout()
        if d:
            d.logout()
finally:
    if with_dovecot:
        subprocess.run([os.path.join(tools, "imap-test-servers"), "dovecot-stop", name],
                       stdout=subprocess.DEVNULL)
        # imap-test-servers keeps the instance's mail under /tmp/diff-dovecot-NAME
        subprocess.run(["rm", "-rf", "/tmp/diff-dovecot-" + name])
    subprocess.run(["rm", "-rf", work])
