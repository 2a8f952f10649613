"""search_bench.py — driver for tests/bench/search.sh (see there)."""
import imaplib, signal, json, os, statistics, subprocess, sys, tempfile, time
imaplib._MAXLINE = 50_000_000     # an all-matching UID SEARCH at 1M messages is ~8 MB
# a timeout (SIGTERM) must still stop Dovecot in the finally: below
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
from coffer_harness import CofferServer, free_port

count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
src = os.environ.get("COFFER_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
shared = os.environ.get("COFFER_SHARED") or os.path.join(src, "..", "shared")
tools = os.path.join(shared, "tools")
work = tempfile.mkdtemp(prefix="coffer-bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
os.chmod(work, 0o755)     # coffer runs as the coffer user
# BENCH_MBOX: an existing gen-corpus mbox (with its .stats.json) of COUNT
# messages, e.g. for the 1,000,000-message run
mbox = os.environ.get("BENCH_MBOX") or os.path.join(work, "bench.mbox")
if not os.environ.get("BENCH_MBOX"):
    subprocess.run([os.path.join(tools, "gen-corpus"), "--format", "mbox", "--count", str(count),
                    "--seed", "1", "--out", mbox, "--quiet"], check=True)
st = json.load(open(mbox + ".stats.json"))
raw = os.path.getsize(mbox)


def q(s):
    return '"%s"' % s


queries = [
    ("BODY rare word", "BODY " + q(st["rare_body_words"][0][0])),
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


def child_cpu_ms(server):
    """CPU milliseconds used so far by the server's session processes: on a
    loaded machine the wall times mostly measure the wait for a core."""
    tot = 0
    for pid in server.child_pids():
        try:
            f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tot += int(f[11]) + int(f[12])
    return tot * 1000.0 / os.sysconf("SC_CLK_TCK")


def timed(m, query):
    ts, res = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        typ, d = m.uid("SEARCH", query)
        ts.append(time.perf_counter() - t0)
        res = d[0].split() if typ == "OK" else ["ERR"]
    return statistics.median(ts) * 1000, len(res)


# BENCH_NO_DOVECOT=1: Coffer only (for the large sizes where loading
# Dovecot through APPEND would take most of an hour)
with_dovecot = os.environ.get("BENCH_NO_DOVECOT") != "1"
dport = free_port()
name = "coffersearchbench%d" % os.getpid()
if with_dovecot:
    subprocess.run([os.path.join(tools, "imap-test-servers"), "dovecot-start", name, str(dport)],
                   check=True, stdout=subprocess.DEVNULL)
try:
    with CofferServer(instances={"b": {"users": {"u": "p"}}}, start=False) as s:
        t0 = time.perf_counter()
        s.coffer("import", "b/u", "--folder", "bench", mbox)
        imp = time.perf_counter() - t0
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
        print("coffer import with indexing: %.1f s = %.0f msg/s; index %.1f MB = %.2fx raw"
              % (imp, count / imp, ixbytes / 1e6, ixbytes / raw))
        if with_dovecot:
            print("dovecot imap-append: %.1f s" % dimp)
        print("%-28s %10s %10s %8s %8s %7s" % ("query", "coffer ms", "dovecot ms", "n(C)", "n(D)", "speedup")
              + "  coffer CPU ms/run")
        for label, query in queries:
            c0 = child_cpu_ms(s)
            tc, nc = timed(c, query)
            ccpu = (child_cpu_ms(s) - c0) / repeat
            td, nd = timed(d, query) if d else (0.0, nc)
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
