#!/usr/bin/env python3
"""cofferd sessions and commands (issue 3 item 4): capabilities before and
after auth, LIST/STATUS/SELECT against what was imported, read-only
answers, the Users/ namespace, FETCH sections, COMPRESS, IDLE with mail
imported meanwhile, SEARCH/ESEARCH/SEARCHRES, limits, and Thunderbird's
command sequence replayed verbatim."""

import base64
import email
import email.policy
import glob
import imaplib
import os
import re
import socket
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from coffer_harness import (CofferServer, LineClient, TIMEOUT_SCALE, require_root,  # noqa: E402
                            run_tests)

SRCDIR = os.environ.get("COFFER_SRCDIR") or os.path.join(HERE, "..", "..")
SAMPLE = os.path.join(SRCDIR, "scripts", "sample")     # six .eml files, in the repo
SAMPLE_FILES = sorted(glob.glob(os.path.join(SAMPLE, "*.eml")))


def canonical(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _mbox(tmpdir, name, files, status=None):
    """An mbox built from .eml files (for a second folder); status[i], when
    given, becomes message i's Status: header (flags come from it)."""
    p = os.path.join(tmpdir, name)
    with open(p, "wb") as f:
        for i, fn in enumerate(files):
            with open(fn, "rb") as g:
                data = g.read().replace(b"\r\n", b"\n")
            f.write(b"From sender@example.org Mon Mar  3 09:15:02 2025\n")
            if status is not None:
                f.write(b"Status: " + status[i] + b"\n")
            for ln in data.split(b"\n"):
                f.write((b">" + ln if ln.startswith(b"From ") else ln) + b"\n")
            f.write(b"\n")
    os.chmod(p, 0o644)
    return p


_SERVER = None


def server():
    """One server for the read-mostly tests (users: jon, bob, carol, boss)."""
    global _SERVER
    if _SERVER is None:
        import tempfile
        import atexit
        import shutil
        tmp = tempfile.mkdtemp(prefix="coffer-sess-")
        atexit.register(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        arch = _mbox(tmp, "archive.mbox", SAMPLE_FILES[:3])
        bobs = _mbox(tmp, "bob.mbox", SAMPLE_FILES[3:5])
        carols = _mbox(tmp, "carol.mbox", SAMPLE_FILES[5:])
        unseen = _mbox(tmp, "unseen.mbox", SAMPLE_FILES[:3], status=[b"RO", b"O", b"O"])
        s = CofferServer(instances={
            "jdcorp": {"aliases": ["jd"],
                       "users": {"jon": "jon-pw", "bob": "bob-pw", "carol": "carol-pw",
                                 "boss": {"password": "boss-pw", "admin": True}},
                       "imports": [("jon", "INBOX", SAMPLE),
                                   ("jon", "Archive/2024", arch),
                                   ("jon", "Entw\u00fcrfe", SAMPLE_FILES[0]),
                                   ("jon", "Unread", unseen),
                                   ("bob", "INBOX", bobs),
                                   ("carol", "INBOX", carols)]}},
            config={"idle_timeout": "10m"})
        s.__enter__()
        s.coffer("grant", "jdcorp/jon", "--read", "jdcorp/bob")
        _SERVER = s
    return _SERVER


class Raw:
    """Raw IMAP client over implicit TLS that understands literals."""

    def __init__(self, s, tls=True, sock=None):
        self.sock = sock or s.connect(tls=tls)
        self.buf = b""
        self.n = 0
        self.inflate = None
        self.deflate = None
        self.greeting = self.line()

    def _recv(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("closed; pending %r" % self.buf)
        if self.inflate:
            d = self.inflate.decompress(d)
        self.buf += d

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def line(self):
        """One response line with its literals inlined (bytes)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._recv()
            ln, self.buf = self.buf.split(b"\r\n", 1)
            out += ln
            m = re.search(rb"~?\{(\d+)\}$", ln)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._recv()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def cmd(self, text, tag=None):
        self.n += 1
        tag = tag or "t%d" % self.n
        self.send("%s %s\r\n" % (tag, text))
        return self.until(tag)

    def until(self, tag):
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag.encode() + b" "):
                return lines

    def login(self, user, pw):
        r = self.cmd('LOGIN "%s" "%s"' % (user, pw))
        assert r[-1].split()[1] == b"OK", r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tagged(lines):
    return lines[-1].split(b" ", 2)[1]


def untagged(lines, word):
    return [ln for ln in lines if ln.startswith(b"* ") and word in ln.split(b" ")[1:3]]


# ---------------------------------------------------------------- tests

def test_capabilities():
    s = server()
    c = Raw(s, tls=False)
    caps = c.cmd("CAPABILITY")[0]
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps, caps
    assert b"AUTH=" not in caps, caps
    assert b"LITERAL+" in caps and b"LITERAL-" not in caps, caps
    r = c.cmd('LOGIN "jd/jon" "jon-pw"')
    assert tagged(r) == b"NO" and b"[PRIVACYREQUIRED]" in r[-1], r
    c.close()
    c = Raw(s)
    caps = c.cmd("CAPABILITY")[0]
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    assert b"COMPRESS=DEFLATE" not in caps
    r = c.login("jd/jon", "jon-pw")
    for cap in (b"COMPRESS=DEFLATE", b"IMAP4rev2", b"LIST-EXTENDED", b"LIST-STATUS",
                b"SPECIAL-USE", b"ESEARCH", b"SEARCHRES", b"BINARY", b"IDLE", b"NAMESPACE",
                b"UNSELECT", b"CHILDREN", b"ENABLE", b"ID", b"SASL-IR"):
        assert cap in r[-1], (cap, r)
    assert b"AUTH=" not in r[-1]
    c.cmd("LOGOUT")
    c.close()


def test_list_status_select():
    s = server()
    m = s.login("jd/jon", "jon-pw")
    typ, data = m.list('""', '"*"')
    assert typ == "OK"
    names = {}
    for d in data:
        mm = re.match(rb'\(([^)]*)\) "/" "?([^"]*)"?', d)
        names[mm.group(2).decode()] = mm.group(1).decode()
    assert "\\HasNoChildren" in names["INBOX"], names
    assert "\\Noselect" in names["Archive"] and "\\HasChildren" in names["Archive"], names
    assert "Archive/2024" in names and "\\Noselect" not in names["Archive/2024"]
    assert "Users/bob/INBOX" in names and "\\Noselect" in names["Users/bob"], names
    assert not any(n.startswith("Users/carol") for n in names), names
    assert not any(n.startswith("Users/boss") for n in names), names
    typ, st = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE)")
    mm = re.search(rb"MESSAGES (\d+).*UIDNEXT (\d+).*UIDVALIDITY (\d+).*SIZE (\d+)", st[0])
    assert int(mm.group(1)) == len(SAMPLE_FILES), st
    assert int(mm.group(2)) == len(SAMPLE_FILES) + 1, st
    size = sum(len(canonical(open(f, "rb").read())) for f in SAMPLE_FILES)
    assert int(mm.group(4)) == size, (st, size)
    typ, st = m.status("Archive/2024", "(MESSAGES)")
    assert b"MESSAGES 3" in st[0], st
    try:
        m.select("INBOX")               # SELECT, as Thunderbird does
        assert False, "SELECT did not answer READ-ONLY"
    except imaplib.IMAP4.readonly:
        pass
    assert m.untagged_responses["EXISTS"] == [b"%d" % len(SAMPLE_FILES)]
    assert m.untagged_responses["PERMANENTFLAGS"] == [b"()"]
    assert m.untagged_responses["RECENT"] == [b"0"]
    m.untagged_responses.clear()
    typ, d = m.select("Archive")        # \Noselect
    assert typ == "NO"
    typ, d = m.select("Users/carol/INBOX")   # not granted: does not exist for jon
    assert typ == "NO" and b"NONEXISTENT" in d[0], d
    typ, st = m.status("Users/carol/INBOX", "(MESSAGES)")
    assert typ == "NO"
    m.logout()


def test_starttls_and_sasl_ir():
    s = server()
    m = s.imap(tls=False)
    m.starttls(ssl_context=s.ssl_context())
    typ, caps = m.capability()
    assert b"AUTH=PLAIN" in caps[0] and b"STARTTLS" not in caps[0], caps
    m.login("jd/jon", "jon-pw")
    m.logout()
    c = Raw(s)
    ir = base64.b64encode(b"\0jd/jon\0jon-pw").decode()
    r = c.cmd("AUTHENTICATE PLAIN " + ir)          # SASL-IR: no "+" round trip
    assert tagged(r) == b"OK" and len(r) == 1, r
    c.close()
    c = Raw(s)
    c.send("a1 AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ ", "empty challenge expected"
    c.send("*\r\n")                               # cancelled
    assert c.line().startswith(b"a1 BAD"), "cancel"
    # before login only small literals are accepted
    c.send("a2 LOGIN {100000}\r\n")
    assert c.line().startswith(b"a2 BAD"), "big pre-auth literal"
    c.close()


def test_mutf7_names_and_unseen():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    r = c.cmd('LIST "" "Entw*"')
    assert untagged(r, b"LIST") == [b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"'], r
    r = c.cmd('SELECT "Entw&APw-rfe"')
    assert tagged(r) == b"OK" and b"* 1 EXISTS" in r, r
    r = c.cmd('STATUS "Unread" (MESSAGES UNSEEN)')
    assert r[0] == b'* STATUS "Unread" (MESSAGES 3 UNSEEN 2)', r
    r = c.cmd('SELECT "Unread"')
    assert b"* OK [UNSEEN 2] First unseen" in r, r
    assert any(b"[CLOSED]" in ln for ln in r), r
    r = c.cmd("FETCH 1:3 (FLAGS)")
    assert r[:3] == [b"* 1 FETCH (FLAGS (\\Seen))", b"* 2 FETCH (FLAGS ())",
                     b"* 3 FETCH (FLAGS ())"], r
    r = c.cmd("SEARCH UNSEEN")
    assert r[0] == b"* SEARCH 2 3", r
    r = c.cmd("ENABLE IMAP4rev2")
    r = c.cmd('LIST "" "Entw*"')
    assert untagged(r, b"LIST") == [b'* LIST (\\HasNoChildren) "/" "Entw\xc3\xbcrfe"'], r
    c.send('u1 STATUS "Entw\u00fcrfe" (MESSAGES)\r\n'.encode())
    r = c.until("u1")
    assert r[0] == '* STATUS "Entw\u00fcrfe" (MESSAGES 1)'.encode(), r
    c.close()


def test_list_extended():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    r = c.cmd('LIST (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT))')
    assert tagged(r) == b"OK", r
    lists = untagged(r, b"LIST")
    assert all(b"\\Subscribed" in ln for ln in lists), lists
    st = [ln for ln in r if ln.startswith(b'* STATUS "INBOX"')]
    assert st and b"MESSAGES %d" % len(SAMPLE_FILES) in st[0], r
    r = c.cmd('LIST "" "%"')
    top = [ln.rsplit(b" ", 1)[1] for ln in untagged(r, b"LIST")]
    assert b'"INBOX"' in top and b'"Archive"' in top and b'"Users"' in top, top
    assert b'"Archive/2024"' not in top, top
    r = c.cmd('LIST "Archive/" "%"')
    assert [ln.rsplit(b" ", 1)[1] for ln in untagged(r, b"LIST")] == [b'"Archive/2024"'], r
    r = c.cmd('LIST "" ""')
    assert untagged(r, b"LIST")[0] == b'* LIST (\\Noselect) "/" ""', r
    r = c.cmd('LSUB "" "*"')
    assert b'"Users/bob/INBOX"' in b"".join(untagged(r, b"LSUB")), r
    r = c.cmd("NAMESPACE")
    assert r[0] == b'* NAMESPACE (("" "/")) (("Users/" "/")) NIL', r
    c.close()
    # an admin sees everyone under Users/, listed but not subscribed
    c = Raw(s)
    c.login("jd/boss", "boss-pw")
    r = c.cmd('LIST "" "Users/*" RETURN (SUBSCRIBED)')
    lists = untagged(r, b"LIST")
    carol = [ln for ln in lists if ln.endswith(b'"Users/carol/INBOX"')]
    assert carol and b"\\Subscribed" not in carol[0], lists
    r = c.cmd('LSUB "" "*"')
    assert not any(b"Users/carol" in ln for ln in r), r
    r = c.cmd('EXAMINE "Users/carol/INBOX"')
    assert tagged(r) == b"OK" and b"[READ-ONLY]" in r[-1], r
    c.close()
    time.sleep(0.3)
    assert re.search(r"audit: jdcorp/boss opened carol's archive", s.log()), s.log()[-2000:]


def _list_view(lines):
    """{name: (subscribed, childinfo)} from LIST responses."""
    out = {}
    for ln in lines:
        m = re.match(rb'\* LIST \(([^)]*)\) "/" ("(?:[^"\\]|\\.)*"|\S+)(.*)$', ln)
        if not m:
            continue
        name = m.group(2).strip(b'"')
        out[name] = (b"\\subscribed" in m.group(1).lower(),
                     # the tag is an astring: Dovecot sends it as an atom
                     re.search(rb'\(\s*"?CHILDINFO"?\s+\(\s*"SUBSCRIBED"\s*\)\s*\)',
                               m.group(3), re.I) is not None)
    return out


CHILDINFO_CASES = [('"" "%"'), ('"" "*"'), ('"Archive/" "%"'), ('"" "Users/%"')]


def _dovecot_childinfo(shared):
    """The same folders and subscriptions in a private Dovecot; returns
    {case: view}, or None when Dovecot or the tools are missing."""
    import shutil
    import subprocess
    tool = os.path.join(shared, "tools", "imap-test-servers")
    if not (os.access(tool, os.X_OK) and shutil.which("dovecot")):
        return None
    import socket as _s
    ports = []
    for _ in range(2):
        k = _s.socket()
        k.bind(("127.0.0.1", 0))
        ports.append(k.getsockname()[1])
        k.close()
    name = "childinfo%d" % os.getpid()
    subprocess.run([tool, "dovecot-start", name, str(ports[0]), str(ports[1])], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    try:
        m = imaplib.IMAP4("127.0.0.1", ports[0])
        m.login("test", "test")
        for f in ("Archive/2024", "Entw&APw-rfe", "Unread", "Users/bob/INBOX"):
            assert m.create(f)[0] == "OK", f
        for f in ("INBOX", "Archive/2024", "Entw&APw-rfe", "Unread", "Users/bob/INBOX"):
            assert m.subscribe(f)[0] == "OK", f
        res = {}
        for case in CHILDINFO_CASES:
            typ, data = m._simple_command("LIST", "(SUBSCRIBED RECURSIVEMATCH)",
                                          *case.split(" "))
            lines = [b"* LIST " + d for d in m.untagged_responses.pop("LIST", [])
                     if isinstance(d, bytes)]
            res[case] = _list_view(lines)
        m.logout()
        return res
    finally:
        subprocess.run([tool, "dovecot-stop", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)


def test_list_childinfo():
    """RFC 5258 RECURSIVEMATCH: a mailbox whose subscribed descendants the
    pattern does not reach is returned with CHILDINFO, even when it is not
    subscribed itself (a \\Noselect parent); compared with Dovecot on the
    same folders and subscriptions."""
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    ours = {}
    for case in CHILDINFO_CASES:
        r = c.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) %s" % case)
        assert tagged(r) == b"OK", r
        ours[case] = _list_view(r)
    top = ours['"" "%"']
    assert top[b"INBOX"] == (True, False), top
    assert top[b"Unread"] == (True, False), top
    assert top[b"Archive"] == (False, True), top     # only Archive/2024 is subscribed
    assert top[b"Users"] == (False, True), top       # Users/bob/INBOX: granted
    assert not any(ci for _, ci in ours['"" "*"'].values()), ours['"" "*"']
    assert ours['"Archive/" "%"'] == {b"Archive/2024": (True, False)}, ours
    assert ours['"" "Users/%"'] == {b"Users/bob": (False, True)}, ours
    # CHILDINFO only with RECURSIVEMATCH
    r = c.cmd('LIST (SUBSCRIBED) "" "%"')
    assert b"CHILDINFO" not in b"".join(r), r
    r = c.cmd('LIST (RECURSIVEMATCH) "" "%"')
    assert tagged(r) == b"BAD", r
    c.close()
    # an admin's view of other users is not subscribed: no Users branch
    c = Raw(s)
    c.login("jd/boss", "boss-pw")
    r = c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'"Users"' not in b"".join(untagged(r, b"LIST")), r
    c.close()
    shared = os.environ.get("COFFER_SHARED") or os.path.join(SRCDIR, "..", "shared")
    ref = _dovecot_childinfo(shared)
    if ref is None:
        print("note: Dovecot comparison skipped (no dovecot or ../shared/tools)")
        return
    for case in CHILDINFO_CASES:
        assert ours[case] == ref[case], (case, ours[case], ref[case])


def test_utf8_accept():
    """RFC 6855: UTF8=ACCEPT is offered; after ENABLE UTF8=ACCEPT mailbox
    names travel as UTF-8 (not modified UTF-7) both ways, and 8-bit header
    octets are served as stored. (Dovecot 2.3 does not offer UTF8=ACCEPT,
    so there is no reference to compare with.)"""
    s = server()
    c = Raw(s)
    r = c.login("jd/jon", "jon-pw")
    assert b"UTF8=ACCEPT" in r[-1], r
    r = c.cmd('LIST "" "Entw*"')
    assert untagged(r, b"LIST")[0].endswith(b'"Entw&APw-rfe"'), r
    r = c.cmd("ENABLE UTF8=ACCEPT")
    assert r[0] == b"* ENABLED UTF8=ACCEPT" and tagged(r) == b"OK", r
    r = c.cmd("ENABLE UTF8=ACCEPT")
    assert r[0] == b"* ENABLED", r                    # already on: nothing newly enabled
    r = c.cmd('LIST "" "Entw*"')
    assert untagged(r, b"LIST")[0].endswith('"Entwürfe"'.encode()), r
    r = c.cmd('STATUS "Entwürfe" (MESSAGES)')
    assert r[0] == '* STATUS "Entwürfe" (MESSAGES 1)'.encode(), r
    r = c.cmd('SELECT "Entw&APw-rfe"')                 # now a literal name: no such folder
    assert tagged(r) == b"NO", r
    r = c.cmd('SELECT "Entwürfe"')
    assert tagged(r) == b"OK" and b"* 1 EXISTS" in r, r
    # a raw 8-bit Subject (scripts/sample/06-legacy-bare-lf.eml) as stored
    r = c.cmd("SELECT INBOX")
    assert tagged(r) == b"OK", r
    r = c.cmd("UID SEARCH SUBJECT nightly")
    uids = r[0].split()[2:]
    assert len(uids) == 1, r
    # RFC 6855 section 3: after ENABLE UTF8=ACCEPT a CHARSET label
    # conflicts with the UTF-8 strings: BAD, whichever charset it names
    # (docs/COMPATIBILITY.md; Dovecot 2.3 does not implement UTF8=ACCEPT)
    for q in ("UID SEARCH CHARSET UTF-8 SUBJECT nightly", "SEARCH CHARSET US-ASCII ALL",
              "UID SEARCH RETURN (COUNT) CHARSET UTF-8 ALL", "SEARCH CHARSET KOI8-R ALL",
              "SEARCH CHARSET X-NO-SUCH ALL"):
        r = c.cmd(q)
        assert len(r) == 1 and tagged(r) == b"BAD" and b"UTF8=ACCEPT" in r[0], (q, r)
    r = c.cmd("UID SEARCH SUBJECT nightly CHARSET")    # an ordinary key argument
    assert tagged(r) == b"BAD" and b"UTF8=ACCEPT" not in r[-1], r
    r = c.cmd("UID SEARCH RETURN (COUNT) SUBJECT nightly", tag="u8")
    assert r[0] == b'* ESEARCH (TAG "u8") UID COUNT 1', r
    r = c.cmd("UID FETCH %s BODY.PEEK[HEADER.FIELDS (SUBJECT)]" % uids[0].decode())
    want = "Subject: nightly report: 3 warnings, 0 errors (Größe ok)\r\n".encode("latin-1")
    want_utf8 = "Subject: nightly report: 3 warnings, 0 errors (Größe ok)\r\n".encode()
    with open(os.path.join(SAMPLE, "06-legacy-bare-lf.eml"), "rb") as f:
        stored = [ln for ln in f.read().split(b"\n") if ln.startswith(b"Subject:")][0]
    assert stored + b"\r\n" in (want, want_utf8), stored
    assert (stored + b"\r\n\r\n") in r[0], r
    c.close()


def test_readonly_answers():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    c.cmd("SELECT INBOX")
    r = c.cmd("UID STORE 1 +FLAGS (\\Seen)")
    assert tagged(r) == b"OK", r
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(.*\)\)", r[0]), r
    r = c.cmd("STORE 1:2 -FLAGS.SILENT (\\Seen \\Flagged)")
    assert tagged(r) == b"OK" and len(r) == 1, r
    for cmd in ("COPY 1 Archive/2024", "MOVE 1 Archive/2024", "UID COPY 1 X", "UID MOVE 1 X",
                "EXPUNGE", "UID EXPUNGE 1", "CREATE Trash", "DELETE INBOX",
                "RENAME INBOX Other"):
        r = c.cmd(cmd)
        assert tagged(r) == b"NO" and b"[CANNOT]" in r[-1], (cmd, r)
    r = c.cmd("SUBSCRIBE Trash")
    assert tagged(r) == b"OK", r
    r = c.cmd("UNSUBSCRIBE INBOX")
    assert tagged(r) == b"OK", r
    # APPEND with a synchronising literal: refused before the client sends it
    c.send("ap1 APPEND INBOX (\\Seen) {11}\r\n")
    ln = c.line()
    assert ln.startswith(b"ap1 NO [CANNOT]"), ln
    # non-synchronising: the literal is read and dropped, the session goes on
    c.send("ap2 APPEND INBOX {11+}\r\nHello world\r\n")
    ln = c.line()
    assert ln.startswith(b"ap2 NO [CANNOT]"), ln
    r = c.cmd("NOOP")
    assert tagged(r) == b"OK", r
    r = c.cmd("CHECK")
    assert tagged(r) == b"OK", r
    r = c.cmd("FETCH 99 (FLAGS)")                 # past the end
    assert tagged(r) == b"BAD", r
    r = c.cmd("FETCH 99:* (UID)")                 # n:* covers the last message
    assert r[0] == b"* %d FETCH (UID %d)" % (len(SAMPLE_FILES), len(SAMPLE_FILES)), r
    r = c.cmd("UID FETCH 1000:2000 (UID)")        # no such UIDs: nothing, OK
    assert len(r) == 1 and tagged(r) == b"OK", r
    r = c.cmd("CLOSE")
    assert tagged(r) == b"OK", r
    r = c.cmd("FETCH 1 FLAGS")
    assert tagged(r) == b"BAD", r
    c.close()


def _msgid_of(path):
    msg = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.compat32)
    return (msg.get("Message-ID") or "").strip()


def test_fetch_sections():
    s = server()
    m = s.login("jd/jon", "jon-pw")
    m.select("INBOX", readonly=True)
    by_id = {_msgid_of(f): f for f in SAMPLE_FILES}
    typ, data = m.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Message-ID)])")
    assert typ == "OK"
    seen = 0
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, hdr = item
        mid = hdr.decode().split(":", 1)[1].strip() if hdr.strip() else ""
        f = by_id.get(mid)
        if f is None:
            continue
        seq = int(head.split()[0])
        raw = canonical(open(f, "rb").read())
        size = int(re.search(rb"RFC822.SIZE (\d+)", head).group(1))
        assert size == len(raw), (f, size, len(raw))
        typ, d = m.fetch(str(seq), "(BODY.PEEK[])")
        assert d[0][1] == raw, f
        typ, d = m.fetch(str(seq), "(BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        assert d[0][1] + d[1][1] == raw, f
        typ, d = m.fetch(str(seq), "(BODY.PEEK[]<7.20>)")
        assert b"BODY[]<7> {20}" in d[0][0] and d[0][1] == raw[7:27], d
        typ, d = m.fetch(str(seq), "(RFC822.HEADER)")
        assert b"RFC822.HEADER {" in d[0][0] and raw.startswith(d[0][1]), d
        seen += 1
    assert seen >= 4, (seen, data[:4])
    # the HEADER.FIELDS list is echoed exactly as sent
    typ, d = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (fRoM Subject)])")
    assert b"BODY[HEADER.FIELDS (fRoM Subject)]" in d[0][0], d
    # BINARY decodes base64: compare with Python's decoder on the attachment
    att = [f for f in SAMPLE_FILES if "attach" in f]
    if att:
        msg = email.message_from_bytes(open(att[0], "rb").read(), policy=email.policy.compat32)
        parts = [p for p in msg.walk() if not p.is_multipart()]
        seq = [i + 1 for i, f in enumerate(SAMPLE_FILES) if f == att[0]][0]
        for n, p in enumerate(parts, 1):
            typ, d = m.fetch(str(seq), "(BINARY.PEEK[%d] BINARY.SIZE[%d])" % (n, n))
            assert typ == "OK", d
            want = p.get_payload(decode=True)
            assert d[0][1] == want, (n, d[0][1][:40], want[:40])
            assert b"BINARY.SIZE[%d] %d" % (n, len(want)) in d[1], d
    typ, d = m.fetch("1", "(FLAGS INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK" and b"ENVELOPE (" in d[0] and b"BODYSTRUCTURE (" in d[0], d
    assert re.search(rb'INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', d[0]), d
    typ, d = m.fetch("1", "ALL")
    assert typ == "OK" and b"ENVELOPE" in d[0] and b"RFC822.SIZE" in d[0], d
    typ, d = m.fetch("1", "(BODY[99])")        # a part that does not exist
    assert typ == "OK", d
    typ, d = m.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and len(d) == len(SAMPLE_FILES), d
    m.logout()


def test_search():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    c.cmd("SELECT INBOX")
    r = c.cmd("SEARCH ALL")
    assert r[0] == b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, len(SAMPLE_FILES) + 1)), r
    r = c.cmd("UID SEARCH RETURN (MIN MAX COUNT) ALL", tag="es1")
    assert r[0] == b'* ESEARCH (TAG "es1") UID MIN 1 MAX %d COUNT %d' % (
        len(SAMPLE_FILES), len(SAMPLE_FILES)), r
    r = c.cmd("SEARCH RETURN (SAVE) 2:3")
    assert tagged(r) == b"OK" and len(r) == 1, r
    r = c.cmd("FETCH $ (UID)")
    assert [ln for ln in r if b"FETCH" in ln] == [b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)"], r
    r = c.cmd("ENABLE IMAP4rev2")
    assert r[0] == b"* ENABLED IMAP4rev2", r
    r = c.cmd("SEARCH 1:2", tag="es2")
    assert r[0] == b'* ESEARCH (TAG "es2") ALL 1:2', r
    # without UTF8=ACCEPT a CHARSET stays allowed (also under IMAP4rev2)
    r = c.cmd("SEARCH CHARSET UTF-8 1:2", tag="es3")
    assert r[0] == b'* ESEARCH (TAG "es3") ALL 1:2', r
    r = c.cmd("SEARCH CHARSET X-NO-SUCH ALL")
    assert tagged(r) == b"NO" and b"[BADCHARSET" in r[-1], r
    r = c.cmd("SELECT INBOX")
    assert not any(b"RECENT" in ln for ln in r), r
    assert any(ln.startswith(b'* LIST () "/" "INBOX"') for ln in r), r
    assert any(b"[CLOSED]" in ln for ln in r), r
    c.close()


def _mdb_rss_kib(pid):
    """Resident KiB of the child's data.mdb mapping(s)."""
    total, cur = 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for ln in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", ln):
                cur = ln.rstrip().endswith("/data.mdb")
            elif cur and ln.startswith("Rss:"):
                total += int(ln.split()[1])
    return total


def test_idle_session_drops_store_pages():
    """A session that went quiet (and one in IDLE) keeps none of the
    archive's pages mapped: the chrooted child finds the LMDB map without
    /proc and drops it (pages stay in the page cache), so memory per idle
    connection does not grow with the folder."""
    s = server()
    before = set(s.child_pids())
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    r = c.cmd("SELECT INBOX")
    assert tagged(r) == b"OK", r
    r = c.cmd("FETCH 1:* (BODY.PEEK[] BODYSTRUCTURE)")
    assert tagged(r) == b"OK", r
    pids = [p for p in s.child_pids() if p not in before]
    assert len(pids) == 1, pids
    pid = pids[0]
    time.sleep(0.5)
    assert _mdb_rss_kib(pid) == 0, _mdb_rss_kib(pid)
    c.send("i IDLE\r\n")
    assert c.line().startswith(b"+"), "no IDLE continuation"
    time.sleep(0.3)
    assert _mdb_rss_kib(pid) == 0, _mdb_rss_kib(pid)
    c.send("DONE\r\n")
    assert tagged(c.until("i")) == b"OK"
    # the pages come back on demand: the same data is still served
    r = c.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert tagged(r) == b"OK" and b"Subject:" in r[0], r
    c.cmd("LOGOUT")
    c.close()


def test_compress():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    r = c.cmd("COMPRESS DEFLATE")
    assert tagged(r) == b"OK", r
    c.inflate = zlib.decompressobj(-15)
    c.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    r = c.cmd("SELECT INBOX")
    assert tagged(r) == b"OK", r
    r = c.cmd("FETCH 1:* (RFC822.SIZE BODY.PEEK[])")
    assert tagged(r) == b"OK" and len(r) == len(SAMPLE_FILES) + 1, r
    r = c.cmd("COMPRESS DEFLATE")
    assert tagged(r) == b"NO" and b"COMPRESSIONACTIVE" in r[-1], r
    r = c.cmd("LOGOUT")
    assert r[0].startswith(b"* BYE"), r
    c.close()


def test_idle_sees_new_mail():
    s = server()
    c = Raw(s)
    c.login("jd/bob", "bob-pw")
    r = c.cmd("SELECT INBOX")
    n0 = int(untagged(r, b"EXISTS")[0].split()[1])
    c.send("i1 IDLE\r\n")
    assert c.line().startswith(b"+ "), "no continuation"
    s.coffer("import", "jdcorp/bob", "--folder", "INBOX", SAMPLE_FILES[0])
    c.sock.settimeout(20)
    ln = c.line()
    assert ln == b"* %d EXISTS" % (n0 + 1), ln
    c.send("DONE\r\n")
    assert c.line().startswith(b"i1 OK"), "IDLE not completed"
    r = c.cmd("UID FETCH %d:* (UID)" % (n0 + 1))
    assert len(r) == 2, r
    c.close()
    # another session sees it only through EXISTS at the end of a command
    c = Raw(s)
    c.login("jd/bob", "bob-pw")
    r = c.cmd("SELECT INBOX")
    n1 = int(untagged(r, b"EXISTS")[0].split()[1])
    s.coffer("import", "jdcorp/bob", "--folder", "INBOX", SAMPLE_FILES[1])
    r = c.cmd("NOOP")
    assert r[0] == b"* %d EXISTS" % (n1 + 1), r
    c.close()


def test_limits():
    s = server()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    r = c.cmd("LIST " + "(" * 100 + ")" * 100 + ' "" "*"')
    assert tagged(r) == b"BAD", r
    c.send("l1 LOGIN {999999999999}\r\n")
    ln = c.line()
    assert ln.startswith(b"l1 BAD") or ln.startswith(b"l1 NO"), ln
    r = c.cmd("NOOP")
    assert tagged(r) == b"OK", r
    c.send("l2 NOOP " + "x" * 70000 + "\r\n")
    ln = c.line()
    assert ln.startswith(b"* BYE"), ln
    c.close()
    c = Raw(s)
    c.login("jd/jon", "jon-pw")
    c.send("l3 LOGIN {999999999999+}\r\n" + "x" * 1000)
    c.sock.shutdown(socket.SHUT_WR)
    lines = []
    try:
        while True:
            lines.append(c.line())
    except (EOFError, OSError):
        pass
    assert not any(ln.startswith(b"l3 OK") for ln in lines), lines
    c.close()
    # a refused non-synchronising literal is read up to the limit (16 KiB
    # before login), then BYE
    c = Raw(s)
    c.send("l4 LOGIN {40000+}\r\n" + "x" * 16384)   # exactly what is read: no RST
    ln = c.line()
    assert ln.startswith(b"* BYE") and b"TOOBIG" in ln, ln
    c.close()
    c = Raw(s)
    r = c.cmd("SELECT INBOX")
    assert tagged(r) == b"BAD", r          # not authenticated
    r = c.cmd("FOO")
    assert tagged(r) == b"BAD", r
    c.send("\r\n")
    assert c.line().startswith(b"* BAD"), "empty line"
    c.close()


def test_disabled_user_gets_bye():
    s = server()
    pf = os.path.join(s.tmp, "dave-pw")
    with open(pf, "w") as f:
        f.write("dave-pw\n")
    os.chmod(pf, 0o644)
    s.coffer("user", "add", "jdcorp/dave", "--password-file", pf)
    c = Raw(s)
    c.login("jd/dave", "dave-pw")
    r = c.cmd("NOOP")
    assert tagged(r) == b"OK", r
    s.coffer("user", "disable", "jdcorp/dave")
    c.send("d1 NOOP\r\n")
    ln = c.line()
    assert ln.startswith(b"* BYE"), ln
    c.close()


def test_thunderbird_sequence():
    """Thunderbird 153 as observed: AUTHENTICATE PLAIN waiting for "+", ID,
    NAMESPACE, LIST (SUBSCRIBED) ... RETURN (SPECIAL-USE), SELECT, UID fetch
    of flags, headers and bodies, uid store, STATUS, CREATE/SUBSCRIBE Trash,
    IDLE, then it drops the connection without LOGOUT."""
    s = server()
    c = Raw(s)
    assert c.greeting.startswith(b"* OK"), c.greeting
    r = c.cmd("capability", tag="1")
    assert b"AUTH=PLAIN" in r[0], r
    c.send("2 authenticate PLAIN\r\n")
    assert c.line().startswith(b"+"), "no + for AUTHENTICATE PLAIN"
    c.send(base64.b64encode(b"\0jd/jon\0jon-pw").decode() + "\r\n")
    r = c.until("2")
    assert tagged(r) == b"OK", r
    r = c.cmd('ID ("name" "Thunderbird" "version" "153.0")', tag="3")
    assert r[0].startswith(b"* ID ("), r
    assert tagged(c.cmd("namespace", tag="4")) == b"OK"
    r = c.cmd('list (subscribed) "" "*" return (special-use)', tag="5")
    assert tagged(r) == b"OK" and any(b'"INBOX"' in ln for ln in r), r
    r = c.cmd('select "INBOX"', tag="6")
    assert tagged(r) == b"OK" and b"READ-ONLY" in r[-1], r
    r = c.cmd("UID fetch 1:* (FLAGS)", tag="7")
    assert tagged(r) == b"OK" and len(r) == len(SAMPLE_FILES) + 1, r
    r = c.cmd("UID fetch 1:%d (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
              "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
              "Content-Type Reply-To)])" % len(SAMPLE_FILES), tag="8")
    assert tagged(r) == b"OK", r
    assert all(b"BODY[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority "
               b"X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)]" in ln
               for ln in r[:-1]), r[0]
    r = c.cmd("UID fetch 1 (UID RFC822.SIZE BODY.PEEK[])", tag="9")
    assert tagged(r) == b"OK", r
    r = c.cmd("UID fetch 2 (UID RFC822.SIZE BODY.PEEK[]<0.65536>)", tag="10")
    assert tagged(r) == b"OK" and b"BODY[]<0> {" in r[0], r
    r = c.cmd("uid store 1 +Flags (\\Seen)", tag="11")
    assert tagged(r) == b"OK", r
    r = c.cmd('STATUS "Archive/2024" (UIDNEXT MESSAGES UNSEEN RECENT)', tag="12")
    assert tagged(r) == b"OK" and b"MESSAGES 3" in r[0], r
    for i in range(3):   # it retries CREATE twice
        r = c.cmd('create "Trash"', tag="13%d" % i)
        assert tagged(r) == b"NO" and b"[CANNOT]" in r[-1], r
    r = c.cmd('subscribe "Trash"', tag="14")
    assert tagged(r) == b"OK", r
    c.send("15 IDLE\r\n")
    assert c.line().startswith(b"+"), "IDLE"
    c.send("DONE\r\n")
    assert c.line().startswith(b"15 OK"), "DONE"
    c.close()                    # no LOGOUT
    # and four more connections at once, each logging in
    ms = [s.login("jd/jon", "jon-pw") for _ in range(4)]
    for m in ms:
        typ, d = m.select("INBOX", readonly=True)
        assert typ == "OK"
    for m in ms:
        m.shutdown()


def test_literals_in_commands():
    s = server()
    c = Raw(s)
    c.send('a1 LOGIN {6}\r\n')
    assert c.line().startswith(b"+"), "no continuation"
    c.send('jd/jon {6+}\r\njon-pw\r\n')
    r = c.until("a1")
    assert tagged(r) == b"OK", r
    c.send('a2 SELECT {5+}\r\nINBOX\r\n')
    r = c.until("a2")
    assert tagged(r) == b"OK", r
    r = c.cmd('STATUS "&-amp" (MESSAGES)')     # mUTF-7 "&amp": no such mailbox
    assert tagged(r) == b"NO", r
    r = c.cmd('STATUS "&Jjo" (MESSAGES)')      # invalid mUTF-7
    assert tagged(r) == b"BAD", r
    c.close()


def test_autologout():
    # memcheck on a loaded machine: the TLS handshake alone can outlast a 1 s
    # pre-auth timeout (the child then closes before its greeting)
    sc = max(1, min(int(TIMEOUT_SCALE), 5))
    with CofferServer(instances={"x": {"users": {"u": "pw"}}},
                      config={"preauth_timeout": "%ds" % sc, "idle_timeout": "3s"}) as s:
        c = Raw(s)
        t0 = time.monotonic()
        ln = c.line()
        assert ln.startswith(b"* BYE") and time.monotonic() - t0 < 8 * sc, ln
        c.close()
        c = Raw(s)
        c.login("x/u", "pw")
        c.send("i IDLE\r\n")
        assert c.line().startswith(b"+"), "IDLE"
        t0 = time.monotonic()
        ln = c.line()
        assert ln.startswith(b"* BYE") and time.monotonic() - t0 < 10 * sc, ln
        c.close()


if __name__ == "__main__":
    require_root()
    try:
        run_tests(globals(), sys.argv[1:] or None)
    finally:
        if _SERVER is not None:
            _SERVER.cleanup()
