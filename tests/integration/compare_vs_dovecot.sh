#!/bin/sh
# compare_vs_dovecot.sh — import ../shared/corpus and a gen-corpus archive
# into cofferd, copy every message from cofferd into a private Dovecot (same
# octets, flags and INTERNALDATE), and compare the two servers with
# ../shared/tools/imap-compare: LIST, EXAMINE, every FETCH item (ENVELOPE,
# BODYSTRUCTURE, BODY, RFC822.SIZE, BODY[] and every BODY[section], the
# partials, BINARY and BINARY.SIZE of every leaf part) of every message, and
# the result of every query in search-queries.txt. Passes when every
# difference is listed, with its reason, in compare-known-diffs.txt (FETCH,
# LIST, EXAMINE) or search-known-diffs.txt (SEARCH), each explained in
# docs/COMPATIBILITY.md. Listed differences that went away are reported.
#
# Env: COFFER_SHARED (../shared), COFFER_SRCDIR, COFFER_BUILDDIR (see
# Makefile.am); SEARCH_CORPUS_FULL=1 also runs the SEARCH queries over
# the 3,000 spamassassin and 787 sisimai messages (FETCH always covers
# every message); COFFER_TEST_GEN_COUNT=N (or SEARCH_GENCORPUS=N) sets
# the size of the generated archive also compared (default 10000, 0 = none);
# COMPARE_REPORT=FILE keeps the imap-compare text reports, COMPARE_JSON=PREFIX
# their --json reports (PREFIX.<run>.json).
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
export FETCH_KNOWN="$here/compare-known-diffs.txt"
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
fetch_known_file = os.environ["FETCH_KNOWN"]
report = os.environ.get("COMPARE_REPORT") or os.environ.get("SEARCH_REPORT")
json_keep = os.environ.get("COMPARE_JSON")

# (mailbox, source): every directory of .eml files and every mbox file of
# the corpus. SEARCH runs its queries over search_mboxes only (the messages
# search-queries.txt and search-known-diffs.txt were written for; with
# SEARCH_CORPUS_FULL=1 also the 3,787 spamassassin and sisimai messages);
# FETCH, LIST and EXAMINE cover every mailbox.
sources = []
search_mboxes = set()
sdirs = ["bouncycastle", "flanker", "mail-parser", "mime4j", "mimekit",
         "nodemailer-mailparser", "postal-mime", "python-test_email", "ruby-mail",
         "stalwart-mail-parser", "spamassassin-hard_ham"]
if os.environ.get("SEARCH_CORPUS_FULL") == "1":
    sdirs += ["sisimai", "spamassassin-easy_ham", "spamassassin-spam"]
for d in sorted(os.listdir(os.path.join(corpus, "messages"))):
    p = os.path.join(corpus, "messages", d)
    if os.path.isdir(p):
        sources.append(("m-" + d, p))
        if d in sdirs:
            search_mboxes.add("m-" + d)
for f in sorted(os.listdir(os.path.join(corpus, "mbox"))):
    # sisimai-size-{0,1,2} (0-3 octets) hold no message and
    # mimekit-unmunged starts with a byte-order mark, not "From ": not mbox
    # files, and coffer import refuses them
    with open(os.path.join(corpus, "mbox", f), "rb") as fh:
        is_mbox = fh.read(5) == b"From "
    if f.endswith(".mbox") and is_mbox:
        sources.append(("x-" + f[:-5], os.path.join(corpus, "mbox", f)))
        if f.startswith("imaptest-search-") or f.startswith("mimekit-simple"):
            search_mboxes.add("x-" + f[:-5])

# A gen-corpus archive (COFFER_TEST_GEN_COUNT messages, default 10000;
# 0 = none) with the queries gen-corpus suggests for it, compared in a
# second run (its own query file).
gen_count = int(os.environ.get("COFFER_TEST_GEN_COUNT") or os.environ.get("SEARCH_GENCORPUS") or "10000")
gen_queries = None
work = tempfile.mkdtemp(prefix="coffer-compare-")
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
name = "cmp%d" % os.getpid()
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
                    # not dst.append(): imaplib rewrites every bare CR and
                    # bare LF to CRLF, and Dovecot must get our octets
                    dst.literal = body
                    typ, _ = dst._simple_command("APPEND", mbox, "(%s)" % flags, '"%s"' % idate)
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


def load_known(path, width):
    known = {}
    with open(path, encoding="utf-8") as f:
        for ln in f:
            if ln.strip() and not ln.startswith("#"):
                p = [x.strip() for x in ln.rstrip("\n").split(" | ")]
                known[tuple(p[:width])] = p[width] if len(p) > width else ""
    return known


def fetch_key(item, ex):
    """A difference's identity in compare-known-diffs.txt: item, mailbox,
    sequence number (stable: both stores are loaded in the same order) and
    the section fetched."""
    sec = ex.get("section") or ""
    for pre in ("BODY.PEEK", "BINARY.PEEK"):
        if sec.startswith(pre):
            sec = pre[:-5] + sec[len(pre):]
    who = "seq %s" % ex["seq_a"] if ex.get("seq_a") is not None else "-"
    if sec:
        who += " " + sec
    return (item, ex.get("mailbox") or "-", who)


def err_code(v):
    m = re.match(r"<ERROR (\w+)(?: \[([\w-]+))?", v or "")
    return m.groups() if m else None


stats = {}   # item -> summed compared/equal/differ/err_a/err_b, for the table
accepted = {}   # reason -> count


dovecot_conn = {}


def dovecot_fetch(mbox, seq, req):
    """One FETCH on Dovecot (own connection, EXAMINE); returns the literal
    of the first item, or None."""
    c = dovecot_conn.get("c")
    if c is None:
        c = dovecot_conn["c"] = imaplib.IMAP4("127.0.0.1", dport)
        c.login("test", "test")
        dovecot_conn["mbox"] = None
    if dovecot_conn["mbox"] != mbox:
        c.select(mbox, readonly=True)
        dovecot_conn["mbox"] = mbox
    try:
        typ, d = c.fetch(str(seq), "(%s)" % req)
    except imaplib.IMAP4.abort:
        dovecot_conn.pop("c", None)
        return None
    for x in d or []:
        if isinstance(x, tuple):
            return x[1]
    return None


def verify_binary_size(item, ex):
    """BINARY-SIZE-SELF: Dovecot's BINARY.SIZE is not the length of its own
    BINARY answer for the part, and ours is exactly that length."""
    if item != "BINARY.SIZE[p]" or not re.fullmatch(r"\d+", ex.get("a") or "") or \
            not re.fullmatch(r"\d+", ex.get("b") or ""):
        return False, "not two numbers"
    part = re.search(r"\[([\d.]+)\]", ex.get("section") or "")
    if not part:
        return False, "no part"
    body = dovecot_fetch(ex["mailbox"], ex["seq_a"], "BINARY.PEEK[%s]" % part.group(1))
    if body is None:
        return False, "Dovecot gave no BINARY"
    return len(body) == int(ex["b"]) and len(body) != int(ex["a"]), len(body)


def verify_unmarked(item, ex):
    """LIST-UNMARKED: the attributes differ only by Dovecot's \\Unmarked."""
    if item != "LIST: mailbox attributes":
        return False, "not LIST"
    attrs = lambda v: set(re.findall(r"\\\w+", (v or "").upper()))
    a, b = attrs(ex.get("a")), attrs(ex.get("b"))
    return a - b == {"\\UNMARKED"} and b <= a, sorted(a ^ b)


# reasons whose every occurrence the test checks itself (compare-known-diffs.txt
# may list them for any message, with "*")
VERIFY = {"BINARY-SIZE-SELF": verify_binary_size, "LIST-UNMARKED": verify_unmarked}


def compare(s, mboxes, qfile):
    """One imap-compare run; returns the number of unexplained differences."""
    out = os.path.join(work, "compare.json")
    args = [os.path.join(tools, "imap-compare"),
            "--a", "127.0.0.1:%d" % dport, "--a-user", "test", "--a-pass", "test",
            "--a-mode", "plain",
            "--b", "%s:%d" % (s.host, s.port), "--b-user", "t/u", "--b-pass", "p",
            "--b-mode", "starttls", "--insecure",
            "--json", out, "--max-examples", "3", "--json-max-examples", "100000",
            # every part path (flanker seq 22 has 3,041; the default is 200)
            "--max-parts", "5000"]
    args += ["--search-file", qfile] if qfile else ["--no-search"]
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
    label = ",".join(mboxes) if len(mboxes) < 3 else "corpus" if qfile else "corpus-more"
    if json_keep:
        os.replace(out, "%s.%s.json" % (json_keep, label))
    else:
        os.unlink(out)
    new = 0
    rows = {x["item"]: x for x in doc["summary"]}
    for item, row in rows.items():
        t = stats.setdefault(item, {})
        for k, v in row.items():
            if k != "item":
                t[k] = t.get(k, 0) + v
    for item in (("SEARCH",) if qfile else ()) + ("ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "BODY[]",
                 "BODY[p]", "BINARY[p]", "BINARY.SIZE[p]"):
        if item not in rows or rows[item].get("compared", 0) == 0:
            new += 1
            print("%s: nothing compared for %s" % (label, item))
    for line in doc.get("notes", []) if isinstance(doc.get("notes"), list) else []:
        print("NOTE  %s" % line)
    known_s = load_known(known_file, 4)
    known_f = load_known(fetch_known_file, 3)
    seen_s, seen_f = set(), set()
    diffs = doc.get("differences", {})
    for item, exs in diffs.items():
        if len(exs) < rows.get(item, {}).get("differ", 0):
            raise SystemExit("report truncated for %s: raise --json-max-examples" % item)
        for ex in exs:
            if item == "SEARCH":
                k = (ex.get("mailbox"), ex.get("query"), ex.get("only_in_a"), ex.get("only_in_b"))
                if k in known_s:
                    seen_s.add(k)
                    accepted[known_s[k]] = accepted.get(known_s[k], 0) + 1
                else:
                    new += 1
                    print("DIFF  SEARCH %s | %s | only Dovecot: %s | only Coffer: %s" % k)
                continue
            k = fetch_key(item, ex)
            why = known_f.get(k) or known_f.get(k[:2] + ("*",)) or known_f.get((k[0], "*", "*"))
            if why and why.split()[0] in VERIFY:
                ok, evidence = VERIFY[why.split()[0]](item, ex)
                if not ok:
                    why = None
            elif why and k not in known_f:
                why = None   # a wildcard line needs a reason the test can verify
            if why:
                seen_f.add(k if k in known_f else k[:2] + ("*",) if k[:2] + ("*",) in known_f
                           else (k[0], "*", "*"))
                accepted[why] = accepted.get(why, 0) + 1
            else:
                new += 1
                print("DIFF  %s | %s | %s   [%s; Dovecot %s, Coffer %s]" % (
                    k + (ex.get("first_difference"), (ex.get("a") or "")[:160],
                         (ex.get("b") or "")[:160])))
    for k in known_s:
        if k not in seen_s and k[0] in mboxes:
            print("GONE  SEARCH %s | %s (listed as known, no longer differs)" % k[:2])
    for k in known_f:
        if k not in seen_f and k[1] in mboxes and k[2] != "*":
            print("GONE  %s | %s | %s (listed as known, no longer differs)" % k)
    # errors on both sides: only a different response code counts (the text
    # is free); an error on one side only is already a difference above
    for item, exs in doc.get("error_examples", {}).items():
        for ex in exs:
            ca, cb = err_code(ex.get("a")), err_code(ex.get("b"))
            if ca and cb and ca != cb and item == "SEARCH":
                new += 1
                print("ERR   %s %s" % (item, json.dumps(ex, ensure_ascii=False)[:600]))
    print("%s: %d unexplained differences" % (label, new))
    return new


rc = 1
try:
    inst = {"t": {"users": {"u": "p"}, "imports": [("u", mbox, src) for mbox, src in sources]}}
    with CofferServer(instances=inst) as s:
        mirror(s, [m for m, _ in sources])
        runs = [([m for m, _ in sources if m in search_mboxes], queries),
                # INBOX: empty on both (coffer user add creates it)
                (["INBOX"] + [m for m, _ in sources if m not in search_mboxes and m != "g-gen"],
                 None)]
        if gen_queries:
            runs.append((["g-gen"], gen_queries))
        new = 0
        for mboxes, qfile in runs:
            new += compare(s, mboxes, qfile)
        print("\n%-34s %9s %9s %7s %6s %6s" % ("item", "compared", "equal", "differ", "ERR-A", "ERR-B"))
        for item, t in stats.items():
            print("%-34s %9d %9d %7d %6d %6d" % (item[:34], t.get("compared", 0), t.get("equal", 0),
                                               t.get("differ", 0), t.get("err_a", 0), t.get("err_b", 0)))
        print("\naccepted differences by reason:")
        for why, n in sorted(accepted.items()):
            print("  %5d  %s" % (n, why))
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
