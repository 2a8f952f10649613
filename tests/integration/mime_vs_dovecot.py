#!/usr/bin/env python3
"""mime_vs_dovecot -- compare Coffer's MIME code (through tests/tools/msginfo-dump)
with a Dovecot reference server on a directory of .eml messages.

For every message it compares RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY,
BODY[], BODY[HEADER], BODY[TEXT], BODY[HEADER.FIELDS (...)],
BODY[HEADER.FIELDS.NOT (Received)], and for every part path p: BODY[p],
BODY[p.MIME], BODY[p.HEADER]/BODY[p.TEXT] of message/rfc822 parts and
BINARY.SIZE[p] of leaf parts. Values are compared after parsing (quoted vs
literal is free, RFC 3501 4.3); everything else must be identical.

  mime_vs_dovecot.py --dump BUILD/tests/tools/msginfo-dump [--start-dovecot]
                     [--host 127.0.0.1:11151] DIR [DIR...]

With --start-dovecot it starts (and stops) a private instance with
shared/tools/imap-test-servers. Differences listed in --accept FILE
(lines "ITEM<TAB>path-of-message", '#' comments) are reported but do not
fail the run; they are the cases docs/COMPATIBILITY.md justifies.
Exit: 0 no unaccepted difference, 1 differences, 2 setup error (77 = skip,
when Dovecot or the shared tools are not available).
"""
import argparse
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("COFFER_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
DEFAULT_TOOLS = os.environ.get("COFFER_SHARED_TOOLS", os.path.join(SHARED, "tools"))
DEFAULT_DUMP = os.path.join(os.environ.get("COFFER_BUILDDIR", "."), "tests", "tools", "msginfo-dump")


def free_port():
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def skip(msg):
    """77 = skipped; under scripts/check (COFFER_REQUIRE_SHARED=1) a missing
    prerequisite is a failure instead."""
    print(("FAIL: " if os.environ.get("COFFER_REQUIRE_SHARED") == "1" else "SKIP: ") + msg)
    return 1 if os.environ.get("COFFER_REQUIRE_SHARED") == "1" else 77


def load_tools(tools):
    sys.path.insert(0, tools)
    import imapwire  # noqa: E402
    loader = importlib.machinery.SourceFileLoader("imap_append", os.path.join(tools, "imap-append"))
    spec = importlib.util.spec_from_loader("imap_append", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return imapwire, mod


def read_units(data):
    """Split IMAP response bytes into units (line + literals)."""
    units, i, n = [], 0, len(data)
    while i < n:
        start = i
        while True:
            j = data.find(b"\r\n", i)
            if j < 0:
                j = n
            line = data[i:j]
            m = re.search(rb"~?\{(\d+)\}$", line)
            i = j + 2
            if m and j < n:
                i += int(m.group(1))
                continue
            break
        units.append(data[start:min(i, n)].rstrip(b"\r\n") if i >= n else data[start:i - 2])
    return units


def category(key):
    k = key.upper()
    if k in ("RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY"):
        return k
    if k.startswith("BINARY.SIZE["):
        return "BINARY.SIZE[p]"
    m = re.match(r"BODY\[([0-9.]*?)\.?(MIME|HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT)?( \(.*\))?\]$", k)
    if not m:
        return k
    path, spec, _ = m.groups()
    if path:
        return "BODY[p%s]" % ("." + spec if spec else "")
    return "BODY[%s]" % (spec or "")


def canon_key(k):
    if isinstance(k, bytes):
        k = k.decode("latin-1")
    k = k.upper().replace(".PEEK", "")
    return re.sub(r"\s+", " ", k)


def norm(W, v):
    """Comparable form of a parsed value: strings by octets."""
    if isinstance(v, W.Str):
        return ("S", v.b)
    if isinstance(v, W.Atom):
        return ("A", v.b)
    if isinstance(v, list):
        return ("L", tuple(norm(W, x) for x in v))
    if v is None:
        return ("NIL",)
    return ("V", v)


def show(W, v, limit=300):
    try:
        s = W.render(v)
    except Exception:
        s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", default=DEFAULT_DUMP, help="path of the msginfo-dump program")
    ap.add_argument("--tools", default=DEFAULT_TOOLS, help="shared/tools directory")
    ap.add_argument("--host", default="127.0.0.1:11151")
    ap.add_argument("--user", default="test")
    ap.add_argument("--password", default="test")
    ap.add_argument("--mailbox", default="mimecmp")
    ap.add_argument("--start-dovecot", action="store_true")
    ap.add_argument("--instance", default="mimecmp")
    ap.add_argument("--no-load", action="store_true", help="the mailbox is already loaded")
    ap.add_argument("--accept", help="file of accepted differences")
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--max-messages", type=int, default=0)
    ap.add_argument("dirs", nargs="*",
                    help="directories of .eml (default: every $COFFER_SHARED/corpus/messages/*; "
                         "then a private Dovecot is started on a free port)")
    a = ap.parse_args()

    if not os.path.isdir(a.tools):
        return skip("shared tools not found at %s" % a.tools)
    if not os.access(a.dump, os.X_OK):
        return skip("msginfo-dump not built at %s" % a.dump)
    if not a.dirs:
        root = os.path.join(SHARED, "corpus", "messages")
        if not os.path.isdir(root):
            return skip("no corpus at %s" % root)
        a.dirs = [os.path.join(root, d) for d in sorted(os.listdir(root))]
        a.start_dovecot = True
        a.instance = "mimecmp%d" % os.getpid()
        a.host = "127.0.0.1:%d" % free_port()
    W, APP = load_tools(a.tools)
    host, port = a.host.rsplit(":", 1)
    servers = os.path.join(a.tools, "imap-test-servers")
    started = False
    if a.start_dovecot:
        try:
            subprocess.run([servers, "dovecot-start", a.instance, port], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            started = True
        except Exception as e:  # noqa: BLE001
            return skip("cannot start Dovecot: %s" % e)
    try:
        return run(a, W, APP, host, int(port))
    finally:
        if started:
            subprocess.run([servers, "dovecot-stop", a.instance], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)


def connect(W, a, host, port):
    c = W.Client(host, port, timeout=30, command_timeout=120)
    c.connect()
    r = c.login(a.user, a.password)
    if r is not None and hasattr(r, "ok") and not r.ok:
        raise SystemExit("login failed")
    return c


def altered(W, mine, theirs):
    """True when the reference's BODY[] is our (unchanged) message with bare
    CRs dropped before CR LF or at the very end."""
    if not isinstance(mine, W.Str) or not isinstance(theirs, W.Str) or mine.b == theirs.b:
        return False
    fixed = re.sub(rb"\r+\r\n", b"\r\n", mine.b)
    if fixed.endswith(b"\r"):
        fixed = fixed[:-1]
    return fixed == theirs.b


def rfc_deviation(W, bs):
    """Where Coffer deliberately differs from Dovecot (docs/COMPATIBILITY.md):
    an invalid Content-Type, which Dovecot shows as ("" ""), is text/plain by
    RFC 2045 5.2; a boundary given only in RFC 2231 form (boundary*=) is a
    boundary (RFC 2231 4), which Dovecot ignores."""
    def walk(v):
        if not isinstance(v, list):
            return None
        if len(v) >= 2 and all(isinstance(x, W.Str) and x.b == b"" for x in v[:2]):
            return "invalid Content-Type, RFC 2045 5.2"
        keys = [x.b.lower() for x in v[0::2] if isinstance(x, W.Str)] if len(v) % 2 == 0 else []
        if b"boundary*" in keys and b"boundary" not in keys:
            return "RFC 2231 boundary"
        for x in v:
            r = walk(x)
            if r:
                return r
        return None
    return walk(bs)


def dump_bytes(W, dump, data):
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(data)
        f.flush()
        out = subprocess.run([dump, f.name], stdout=subprocess.PIPE, check=False).stdout
    for u in read_units(out):
        if not u.startswith(b"# "):
            r = W.parse_response(u)
            if r.name == "FETCH":
                return {canon_key(k): v for k, v in r.data}
    return {}


def binary_len(W, c, n, key):
    req = key.replace("BINARY.SIZE[", "BINARY.PEEK[")
    try:
        res = c.command(b"FETCH", str(n).encode(), ("(" + req + ")").encode())
    except W.ConnectionLost:
        return None
    for u in res.untagged:
        if u.name == "FETCH" and u.num == n and isinstance(u.data, list):
            for k, v in u.data:
                if canon_key(k).startswith("BINARY[") and isinstance(v, W.Str):
                    return len(v.b)
    return None


def run(a, W, APP, host, port):
    labels = [lab for lab, _ in APP.expand_sources(a.dirs, "*.eml", False, False)]
    if a.max_messages:
        labels = labels[:a.max_messages]
    failed = set()
    if not a.no_load:
        c = connect(W, a, host, port)
        c.command(b"DELETE", a.mailbox.encode())
        c.logout()
        with tempfile.NamedTemporaryFile("r", suffix=".failed") as ff:
            cmd = [sys.executable, os.path.join(a.tools, "imap-append"), "--host", "%s:%d" % (host, port),
                   "--user", a.user, "--pass", a.password, "--create", "--mailbox", a.mailbox,
                   "--failed-list", ff.name]
            if a.max_messages:
                cmd += ["--max-messages", str(a.max_messages)]
            subprocess.run(cmd + a.dirs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            failed = set(l.strip() for l in open(ff.name) if l.strip())
    files = [lab for lab in labels if lab not in failed]
    accept = set()
    if a.accept:
        for line in open(a.accept):
            line = line.rstrip("\n")
            if line and not line.startswith("#") and "\t" in line:
                item, path = line.split("\t", 1)
                accept.add((item, os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)))

    # ours
    ours, paths = {}, {}
    with tempfile.TemporaryFile() as out:
        for i in range(0, len(files), 500):
            subprocess.run([a.dump] + files[i:i + 500], stdout=out, check=False)
        out.seek(0)
        data = out.read()
    seq = 0
    for u in read_units(data):
        if u.startswith(b"# "):
            seq += 1
            head, _, rest = u[2:].partition(b"\t")
            paths[seq] = [p.split(b":") for p in rest.split()]
            continue
        r = W.parse_response(u)
        if r.name == "FETCH":
            ours[seq] = {canon_key(k): v for k, v in r.data}

    c = connect(W, a, host, port)
    r = c.command(b"EXAMINE", a.mailbox.encode())
    stats, examples, conn_err, altered_msgs, rfc_msgs = {}, {}, 0, [], []
    for n in range(1, seq + 1):
        if c.dead:
            c = connect(W, a, host, port)
            c.command(b"EXAMINE", a.mailbox.encode())
        mine = ours.get(n, {})
        base = ["RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "BODY.PEEK[]", "BODY.PEEK[HEADER]",
                "BODY.PEEK[TEXT]",
                "BODY.PEEK[HEADER.FIELDS (From Subject Date To Cc Message-ID References)]",
                "BODY.PEEK[HEADER.FIELDS.NOT (Received)]"]
        binreq = []
        for p, kind in paths.get(n, []):
            ps = p.decode()
            base += ["BODY.PEEK[%s]" % ps, "BODY.PEEK[%s.MIME]" % ps]
            if kind == b"R":
                base += ["BODY.PEEK[%s.HEADER]" % ps, "BODY.PEEK[%s.TEXT]" % ps]
            elif kind.startswith(b"L") and kind != b"L5":
                binreq.append("BINARY.SIZE[%s]" % ps)
        theirs = {}
        for group in (base, binreq):
            if not group:
                continue
            try:
                res = c.command(b"FETCH", str(n).encode(), ("(" + " ".join(group) + ")").encode())
                for u in res.untagged:
                    if u.name == "FETCH" and u.num == n and isinstance(u.data, list):
                        for k, v in u.data:
                            theirs[canon_key(k)] = v
            except W.ConnectionLost:
                conn_err += 1
                c = connect(W, a, host, port)
                c.command(b"EXAMINE", a.mailbox.encode())
        fname = files[n - 1]
        short = os.path.basename(os.path.dirname(fname)) + "/" + os.path.basename(fname)
        if altered(W, mine.get("BODY[]"), theirs.get("BODY[]")):
            # Dovecot stores "CR CR LF" as CR LF and drops a final bare CR
            # (Maildir keeps LF only); every size and section of such a
            # message then differs. Coffer keeps the octets (RFC 3501
            # 2.3.4, docs/COMPATIBILITY.md). The parser is still compared:
            # on the octets the reference actually holds.
            altered_msgs.append(short)
            mine = dump_bytes(W, a.dump, theirs["BODY[]"].b)
        rfc = rfc_deviation(W, theirs.get("BODYSTRUCTURE"))
        if rfc:
            rfc_msgs.append("%s (%s)" % (short, rfc))
        for k in sorted(set(mine) | set(theirs)):
            if k == "UID" or k not in theirs:
                continue   # reference could not answer (e.g. disconnect on broken base64)
            cat = category(k)
            st = stats.setdefault(cat, [0, 0, 0, 0])
            st[0] += 1
            if k in mine and norm(W, mine[k]) == norm(W, theirs[k]):
                st[1] += 1
                continue
            if rfc or (cat, short) in accept or (k, short) in accept:
                st[3] += 1
                continue
            if cat == "BINARY.SIZE[p]" and k in mine and binary_len(W, c, n, k) == mine[k]:
                # Dovecot's BINARY.SIZE disagrees with the length of its own
                # BINARY[p] answer; ours matches the data (RFC 3516 4.3).
                st[3] += 1
                continue
            st[2] += 1
            ex = examples.setdefault(cat, [])
            if len(ex) < a.examples:
                ex.append((short, k, show(W, mine.get(k)), show(W, theirs[k])))
    c.logout()
    print("messages compared: %d (refused by the reference: %d, reference disconnects: %d)"
          % (seq, len(failed), conn_err))
    if altered_msgs:
        print("messages whose octets the reference altered (compared on its octets): %d"
              % len(altered_msgs))
        for m in altered_msgs[:a.examples]:
            print("  " + m)
    if rfc_msgs:
        print("messages where Coffer follows the RFC instead (differences accepted): %d"
              % len(rfc_msgs))
        for m in rfc_msgs[:a.examples]:
            print("  " + m)
    print("%-22s %9s %9s %9s %9s" % ("item", "compared", "equal", "differ", "accepted"))
    bad = 0
    for cat in sorted(stats):
        s = stats[cat]
        bad += s[2]
        print("%-22s %9d %9d %9d %9d" % (cat, s[0], s[1], s[2], s[3]))
    for cat in sorted(examples):
        for short, k, mv, tv in examples[cat]:
            print("\n--- %s  %s\n  ours:   %s\n  dovecot: %s" % (short, k, mv, tv))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
