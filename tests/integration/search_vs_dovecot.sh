#!/bin/sh
# search_vs_dovecot.sh — import ../shared/corpus into cofferd, copy every
# message from cofferd into a private Dovecot (same octets, flags and
# INTERNALDATE), and compare the results of every query in
# search-queries.txt with ../shared/tools/imap-compare. Passes when every
# SEARCH difference is listed, with its reason, in search-known-diffs.txt
# (explained in docs/COMPATIBILITY.md). FETCH rows are the MIME tests'
# business and are not judged here.
#
# Env: COFFER_SHARED (../shared), COFFER_SRCDIR, COFFER_BUILDDIR (see
# tests/local.mk); SEARCH_CORPUS_FULL=1 adds the 3,000 spamassassin and
# 787 sisimai messages; SEARCH_GENCORPUS=N sets the size of the generated
# archive also compared (default 10000, 0 = none); SEARCH_REPORT=FILE keeps
# the imap-compare reports.
# Exit: 0 pass, 1 differences, 77 skip (not root, no Dovecot, no ../shared).
set -u
here=$(cd "$(dirname "$0")" && pwd)
srcdir=${COFFER_SRCDIR:-$here/../..}
shared=${COFFER_SHARED:-$srcdir/../shared}
tools=$shared/tools
skip() {
    echo "SKIP: $*"
    if [ "${COFFER_REQUIRE_SHARED:-0}" = 1 ]; then exit 99; fi
    exit 77
}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (cofferd chroots)"; exit 77; }
[ -x "$tools/imap-compare" ] || skip "no $tools/imap-compare"
[ -d "$shared/corpus/messages" ] || skip "no $shared/corpus"
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || { echo "SKIP: dovecot-imapd not installed"; exit 77; }

export SEARCH_SHARED="$shared" SEARCH_QUERIES="$here/search-queries.txt" SEARCH_KNOWN="$here/search-known-diffs.txt"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec python3 - "$@" <<'PYEOF'
import imaplib, signal, json, os, re, subprocess, sys, tempfile
# a timeout (SIGTERM) must still stop Dovecot in the finally: below
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
from coffer_harness import CofferServer, free_port

shared = os.environ["SEARCH_SHARED"]
tools = os.path.join(shared, "tools")
corpus = os.path.join(shared, "corpus")
queries = os.environ["SEARCH_QUERIES"]
known_file = os.environ["SEARCH_KNOWN"]
report = os.environ.get("SEARCH_REPORT")

# (mailbox, source): directories of .eml files and single mbox files
sources = []
dirs = ["bouncycastle", "flanker", "mail-parser", "mime4j", "mimekit",
        "nodemailer-mailparser", "postal-mime", "python-test_email", "ruby-mail",
        "stalwart-mail-parser", "spamassassin-hard_ham"]
if os.environ.get("SEARCH_CORPUS_FULL") == "1":
    dirs += ["sisimai", "spamassassin-easy_ham", "spamassassin-spam"]
for d in dirs:
    p = os.path.join(corpus, "messages", d)
    if os.path.isdir(p):
        sources.append(("m-" + d, p))
for f in sorted(os.listdir(os.path.join(corpus, "mbox"))):
    if f.startswith("imaptest-search-") or f.startswith("mimekit-simple"):
        sources.append(("x-" + f[:-5], os.path.join(corpus, "mbox", f)))

# A gen-corpus archive (SEARCH_GENCORPUS messages, default 10000; 0 = none)
# with the queries gen-corpus suggests for it, compared in a second run
# that skips the FETCH comparison (--max-messages 1).
gen_count = int(os.environ.get("SEARCH_GENCORPUS", "10000"))
gen_queries = None
work = tempfile.mkdtemp(prefix="coffer-search-")
os.chmod(work, 0o755)
if gen_count > 0:
    gen_mbox = os.path.join(work, "gen.mbox")
    subprocess.run([os.path.join(tools, "gen-corpus"), "--format", "mbox", "--count",
                    str(gen_count), "--seed", "1", "--out", gen_mbox, "--quiet"], check=True)
    st = json.load(open(gen_mbox + ".stats.json"))
    gen_queries = os.path.join(work, "gen-queries.txt")
    with open(gen_queries, "w", encoding="utf-8") as f:
        f.write(open(queries, encoding="utf-8").read())
        f.write("\n# from gen-corpus stats\n")
        for gq in st.get("search_queries", []):
            f.write(gq["query"] + "\n")
        for w, _ in st.get("rare_body_words", [])[:5] + st.get("mid_body_words", [])[:5]:
            f.write('TEXT "%s"\nUNDELETED BODY "%s"\n' % (w, w))
        for w, _ in st.get("subject_words", [])[:3]:
            f.write('SUBJECT "%s"\nNOT SUBJECT "%s"\n' % (w, w))
        for a, _ in st.get("top_senders", [])[:3]:
            f.write('FROM "%s"\nOR FROM "%s" BODY "regards"\n' % (a, a.split("@")[0]))
    sources.append(("g-gen", gen_mbox))

dport = free_port()
name = "coffersearch%d" % os.getpid()
subprocess.run([os.path.join(tools, "imap-test-servers"), "dovecot-start", name, str(dport)],
               check=True, stdout=subprocess.DEVNULL)


def mirror(s, mboxes):
    """Copy every message from cofferd to Dovecot with the same octets, flags
    and INTERNALDATE, so the two stores differ in nothing SEARCH looks at
    (coffer import and imap-append pick INTERNALDATE and flags differently)."""
    src = s.login("t/u", "p")
    dst = imaplib.IMAP4("127.0.0.1", dport)
    dst.login("test", "test")
    for mbox in mboxes:
        dst.create(mbox)
        typ, data = src.select(mbox, readonly=True)
        n = int(data[0])
        for lo in range(1, n + 1, 200):
            hi = min(n, lo + 199)
            typ, d = src.fetch("%d:%d" % (lo, hi), "(FLAGS INTERNALDATE BODY.PEEK[])")
            msgs = [x for x in d if isinstance(x, tuple)]
            if len(msgs) != hi - lo + 1:
                raise SystemExit("short FETCH from cofferd in %s" % mbox)
            for meta, body in msgs:
                meta = meta.decode()
                flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)
                idate = re.search(r'INTERNALDATE "([^"]*)"', meta).group(1)
                try:
                    typ, _ = dst.append(mbox, "(%s)" % flags, '"%s"' % idate, body)
                except imaplib.IMAP4.error:
                    typ = "NO"
                if typ != "OK":
                    # a gap would shift every later sequence number
                    raise SystemExit("Dovecot refused a message of %s" % mbox)
    src.logout()
    # SELECT (not EXAMINE) once so Dovecot forgets \Recent: nothing in an
    # archive is recent
    for mbox in mboxes:
        dst.select(mbox)
    dst.logout()


def compare(s, mboxes, qfile, extra):
    """One imap-compare run; returns the number of unexplained differences."""
    out = os.path.join(work, "compare.json")
    args = [os.path.join(tools, "imap-compare"),
            "--a", "127.0.0.1:%d" % dport, "--a-user", "test", "--a-pass", "test",
            "--a-mode", "plain",
            "--b", "%s:%d" % (s.host, s.port), "--b-user", "t/u", "--b-pass", "p",
            "--b-mode", "starttls", "--insecure",
            "--no-parts", "--no-binary", "--search-file", qfile,
            "--json", out, "--max-examples", "500", "--json-max-examples", "500"] + extra
    for mbox in mboxes:
        args += ["--mailbox", mbox]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if report:
        with open(report, "a") as f:
            f.write(r.stdout)
    if r.returncode == 2:
        print(r.stdout[-4000:])
        raise SystemExit("imap-compare failed to run")
    doc = json.load(open(out))
    os.unlink(out)
    row = [x for x in doc["summary"] if x["item"] == "SEARCH"]
    if not row:
        raise SystemExit("no SEARCH row in the report")
    row = row[0]
    print("SEARCH %s: %s" % (",".join(mboxes) if len(mboxes) < 3 else "corpus",
                             {k: v for k, v in row.items() if k != "item"}))
    known = {}
    with open(known_file, encoding="utf-8") as f:
        for ln in f:
            if ln.strip() and not ln.startswith("#"):
                p = [x.strip() for x in ln.split(" | ")]
                known[tuple(p[:4])] = p[4] if len(p) > 4 else ""
    diffs = doc.get("differences", {}).get("SEARCH", [])
    if len(diffs) < row.get("differ", 0):
        raise SystemExit("report truncated: raise --json-max-examples")
    new = 0
    seen = set()
    for ex in diffs:
        k = (ex.get("mailbox"), ex.get("query"), ex.get("only_in_a"), ex.get("only_in_b"))
        if k in known:
            seen.add(k)
            print("KNOWN %s | %s | only Dovecot: %s | only Coffer: %s  [%s]" % (k + (known[k],)))
        else:
            new += 1
            print("DIFF  %s | %s | only Dovecot: %s | only Coffer: %s" % k)
    for k in known:
        if k not in seen and k[0] in mboxes:
            print("GONE  %s | %s (listed as known, no longer differs)" % k[:2])
    # errors: only a different response code counts (the text is free)
    for ex in doc.get("error_examples", {}).get("SEARCH", []):
        code = lambda v: re.match(r"<ERROR (\w+)(?: \[(\w+))?", v or "")
        ca, cb = code(ex.get("a")), code(ex.get("b"))
        if not ca or not cb or ca.groups() != cb.groups():
            new += 1
            print("ERR   %s" % json.dumps(ex, ensure_ascii=False)[:600])
    if row.get("compared", 0) == 0:
        new += 1
        print("nothing compared")
    return new


rc = 1
try:
    inst = {"t": {"users": {"u": "p"}, "imports": [("u", mbox, src) for mbox, src in sources]}}
    with CofferServer(instances=inst) as s:
        mirror(s, [m for m, _ in sources])
        runs = [([m for m, _ in sources if m != "g-gen"], queries, [])]
        if gen_queries:
            runs.append((["g-gen"], gen_queries, ["--max-messages", "1"]))
        new = 0
        for mboxes, qfile, extra in runs:
            new += compare(s, mboxes, qfile, extra)
        rc = 0 if new == 0 else 1
        print("%d unexplained differences" % new)
finally:
    subprocess.run([os.path.join(tools, "imap-test-servers"), "dovecot-stop", name],
                   stdout=subprocess.DEVNULL)
    # imap-test-servers keeps the instance's mail under /tmp/diff-dovecot-NAME
    subprocess.run(["rm", "-rf", "/tmp/diff-dovecot-" + name])
    subprocess.run(["rm", "-rf", work])
sys.exit(rc)
PYEOF
