#!/usr/bin/env python3
"""Tenant isolation (issue 6 item 4): two instances, alpha and beta, with the
same user names (jon, admin) and the same mailbox names (INBOX, Archive)
but different mail. Whatever a user of alpha does -- LIST patterns
("*", "%", "Users/*", "Users/%/%", references with "../"), SELECT/EXAMINE/
STATUS of Users/..., ../ paths, the other instance's name in every letter
case, aliases, a PLAIN authzid naming beta's user -- nothing of beta's mail
shows up. Every message of beta carries the marker BETA-SECRET, which is
searched for in every byte alpha's clients receive.

Then the confinement itself: with COFFER_TEST_OPEN_AFTER_LOGIN (a test-hook
build) the child tries open() of a path right after login. Beta's files,
which exist and are readable by the coffer user, must be refused with
EACCES by Landlock (inside the chroot the path exists, so this is not a
missing file or a skipped attempt); a host path is refused by the chroot
(ENOENT), and the same hook opening alpha's own data.mdb succeeds, which
proves the hook really attempts the open. Writing is refused even for the
own instance's data.mdb: only LMDB lock files are writable."""

import base64
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from coffer_harness import (CofferServer, LineClient, Skip, TIMEOUT_SCALE,  # noqa: E402
                            landlock_active, require_root, run_tests)

SECRET_B = "BETA-SECRET"
SECRET_A = "ALPHA-MAIL"


def mbox(d, name, marker, n):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        for i in range(n):
            f.write(("From x@example.org Mon Jan  6 10:00:00 2025\n"
                     "From: Sender <x@example.org>\n"
                     "To: jon@example.org\n"
                     "Subject: %s %s %d\n"
                     "Date: Mon, 6 Jan 2025 10:00:%02d +0100\n"
                     "Message-ID: <%s-%s-%d@example.org>\n"
                     "\n"
                     "Body of %s message %d.\n\n" % (marker, name, i, i, marker, name, i,
                                                     marker, i)).encode())
    os.chmod(p, 0o644)
    return p


_S = None


def instances(tmp):
    os.chmod(tmp, 0o755)
    spec = {}
    for inst, marker, alias in (("alpha", SECRET_A, "al"), ("beta", SECRET_B, "be")):
        imports = []
        for user in ("jon", "admin"):
            imports.append((user, "INBOX", mbox(tmp, "%s-%s-inbox" % (inst, user), marker, 3)))
            imports.append((user, "Archive", mbox(tmp, "%s-%s-arch" % (inst, user), marker, 2)))
        spec[inst] = {"aliases": [alias],
                      "users": {"jon": inst + "-pw",
                                "admin": {"password": inst + "-admin", "admin": True}},
                      "imports": imports}
    return spec


def server():
    global _S
    if _S is None:
        tmp = tempfile.mkdtemp(prefix="coffer-iso-")
        s = CofferServer(instances=instances(tmp),
                         config={"max_auth_failures": 100, "max_connections_per_ip": 50})
        s.__enter__()
        s.coffer("grant", "alpha/admin", "--read", "alpha/jon")
        s._mbox_tmp = tmp
        _S = s
    return _S


def shutdown():
    global _S
    if _S is not None:
        import shutil
        shutil.rmtree(_S._mbox_tmp, ignore_errors=True)
        _S.__exit__(None, None, None)
        _S = None


class Spy(LineClient):
    """A LineClient that keeps every byte received, to grep for beta's mail."""

    def __init__(self, sock):
        super().__init__(sock)
        self.seen = []

    def line(self):
        ln = super().line()
        self.seen.append(ln)
        return ln

    def clean(self):
        blob = "\n".join(self.seen)
        assert SECRET_B not in blob, [ln for ln in self.seen if SECRET_B in ln][:5]


def greet(s):
    c = Spy(s.connect(tls=True, timeout=15))
    assert c.line().startswith("* OK")
    return c


def login(s, user, pw):
    c = greet(s)
    c.send('l LOGIN "%s" "%s"\r\n' % (user, pw))
    r = c.until_tagged("l")
    return c, r[-1]


def tagged(c, tag, line):
    c.send("%s %s\r\n" % (tag, line))
    return c.until_tagged(tag)


def list_names(lines):
    out = []
    for ln in lines:
        m = re.match(r'\* LIST \([^)]*\) (?:"."|NIL) "?(.*?)"?$', ln)
        if m:
            out.append(m.group(1))
    return out


PATTERNS = [('""', '"*"'), ('""', '"%"'), ('""', '"Users/*"'), ('""', '"Users/%"'),
            ('""', '"Users/%/%"'), ('"Users/"', '"*"'), ('""', '"../*"'), ('"../"', '"*"'),
            ('"../beta/"', '"*"'), ('""', '"../beta/*"'), ('""', '"Users/../../beta/*"'),
            ('""', '"beta/*"'), ('""', '"BETA/*"'), ('""', '"*beta*"'), ('""', '"/*"'),
            ('"/"', '"*"'), ('""', '"#shared/*"'), ('""', '"~*"'), ('"Users/jon/"', '"*"'),
            ('""', '"Users/*/../../*"'), ('""', '"instances/*"')]

BOXES = ["INBOX", "Archive", "Users/jon/INBOX", "Users/admin/INBOX", "Users/jon",
         "../beta/INBOX", "../../beta/INBOX", "beta/INBOX", "BETA/INBOX", "Beta/jon/INBOX",
         "Users/beta/jon/INBOX", "Users/BETA/jon/INBOX", "Users/../../beta/jon/INBOX",
         "Users/jon/../../beta/INBOX", "Users/jon@beta/INBOX", "Users/be/jon/INBOX",
         "Users/jon/../admin/INBOX", "/instances/beta/INBOX", "instances/beta/INBOX",
         "~jon/INBOX", "#shared/beta/INBOX", "Users/%/INBOX", "Users/*/INBOX",
         "beta:INBOX", "Users/jon%beta/INBOX"]


def browse_everything(c):
    """Every LIST pattern, and SELECT/EXAMINE/STATUS of every box name; for
    what opens, FETCH and SEARCH everything. Returns the names that opened."""
    opened = []
    for ref, pat in PATTERNS:
        r = tagged(c, "L", "LIST %s %s" % (ref, pat))
        assert r[-1].split(" ")[1] in ("OK", "NO", "BAD"), r
        for n in list_names(r):
            assert "beta" not in n.lower() and ".." not in n, (ref, pat, n)
    r = tagged(c, "L", 'LIST (SUBSCRIBED REMOTE) "" "*" RETURN (STATUS (MESSAGES))')
    r = tagged(c, "N", "NAMESPACE")
    for box in BOXES:
        for cmd in ("EXAMINE", "SELECT", "STATUS"):
            tail = " (MESSAGES UIDNEXT)" if cmd == "STATUS" else ""
            r = tagged(c, "S", '%s "%s"%s' % (cmd, box, tail))
            if r[-1].startswith("S OK") and cmd != "STATUS":
                opened.append(box)
                f = tagged(c, "F", "FETCH 1:* (BODY.PEEK[] ENVELOPE)")
                assert f[-1].startswith("F OK"), f
                assert any(SECRET_A in x for x in f), (box, f[:3])
                t = tagged(c, "T", "SEARCH TEXT %s" % SECRET_B)
                assert t[0] == "* SEARCH", (box, t)
                t = tagged(c, "T", "UID SEARCH HEADER Message-ID beta")
                assert t[0] == "* SEARCH", (box, t)
    c.clean()
    return sorted(set(opened))


def test_same_names_reach_only_own_instance():
    s = server()
    for user, pw in (("alpha/jon", "alpha-pw"), ("al/jon", "alpha-pw"),
                     ("ALPHA/jon", "alpha-pw"), ("alpha/admin", "alpha-admin")):
        c, st = login(s, user, pw)
        assert st.startswith("l OK"), (user, st)
        opened = browse_everything(c)
        assert "INBOX" in opened and "Archive" in opened, opened
        print("  %s opened %s" % (user, opened))
        for box in opened:
            assert box in ("INBOX", "Archive") or box.startswith("Users/"), (user, box)
        if user.endswith("/jon"):
            # within the instance too: jon was granted nothing by admin
            assert "Users/admin/INBOX" not in opened, (user, opened)
        else:
            assert "Users/jon/INBOX" in opened, (user, opened)     # the admin sees all
        c.close()
    # and the mirror image: beta's user never sees alpha's mail
    c, st = login(s, "beta/jon", "beta-pw")
    assert st.startswith("l OK")
    c.send('a SELECT INBOX\r\n')
    c.until_tagged("a")
    r = tagged(c, "F", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert any(SECRET_B in x for x in r) and not any(SECRET_A in x for x in r), r
    c.close()


def test_login_names_and_case_games():
    s = server()
    # beta's password never opens alpha, and alpha's never opens beta, whatever
    # spelling of the instance; the answer names no instance
    tries = [("alpha/jon", "beta-pw"), ("al/jon", "beta-pw"), ("ALPHA/jon", "beta-pw"),
             ("beta/jon", "alpha-pw"), ("BETA/jon", "alpha-pw"), ("Be/jon", "alpha-pw"),
             ("alpha/../beta/jon", "beta-pw"), ("alpha/beta/jon", "beta-pw"),
             ("beta /jon", "beta-pw"), (" beta/jon", "beta-pw"), ("beta//jon", "beta-pw"),
             ("beta\\/jon", "beta-pw"), ("jon@beta", "beta-pw"), ("jon", "beta-pw"),
             ("alpha/jon/../../beta/jon", "beta-pw"), ("alpha/JON", "beta-pw"),
             ("./beta/jon", "beta-pw"), ("instances/beta/jon", "beta-pw")]
    for user, pw in tries:
        c, st = login(s, user, pw)
        assert st.startswith(("l NO", "l BAD")), (user, pw, st)
        assert "beta" not in st.lower() and "alpha" not in st.lower(), st
        c.close()
    # a legitimate login in another case reaches the right instance
    c, st = login(s, "BeTa/jon", "beta-pw")
    assert st.startswith("l OK"), st
    r = tagged(c, "F", "SELECT INBOX")
    r = tagged(c, "F", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert any(SECRET_B in x for x in r), r
    c.close()


def test_alias_and_id_collisions_refused():
    """No instance id or alias can be made to shadow another instance's id
    or alias in any letter case, and a refused alias leaves nothing behind."""
    s = server()
    for args in (("instance", "add", "gamma", "--alias", "beta"),
                 ("instance", "add", "gamma", "--alias", "BETA"),
                 ("instance", "add", "gamma", "--alias", "be"),
                 ("instance", "add", "gamma", "--alias", "ok1", "--alias", "Be"),
                 ("instance", "add", "gamma", "--alias", "gamma"),
                 ("instance", "add", "gamma", "--alias", "../beta"),
                 ("instance", "add", "BETA"), ("instance", "add", "Be"),
                 ("instance", "add", "../beta"), ("instance", "add", "alpha/beta"),
                 ("instance", "alias", "add", "alpha", "beta"),
                 ("instance", "alias", "add", "alpha", "BE"),
                 ("instance", "alias", "add", "alpha", "../beta")):
        r = s.coffer(*args, check=False)
        assert r.returncode != 0, (args, r.stdout)
        lst = s.coffer("instance", "list").stdout.decode()
        assert "gamma" not in lst and "ok1" not in lst, (args, lst)
        assert not os.path.exists(os.path.join(s.data_dir, "instances", "gamma")), args
    lst = s.coffer("instance", "list").stdout.decode()
    assert re.search(r"^alpha aliases: al$", lst, re.M) and \
        re.search(r"^beta aliases: be$", lst, re.M), lst
    c, st = login(s, "be/jon", "beta-pw")
    assert st.startswith("l OK"), st
    r = tagged(c, "s", "SELECT INBOX")
    r = tagged(c, "f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert any(SECRET_B in x for x in r), r
    c.close()


def plain(authz, authn, pw):
    return base64.b64encode(("%s\0%s\0%s" % (authz, authn, pw)).encode()).decode()


def test_plain_authzid_of_other_instance():
    s = server()
    for authz in ("beta/jon", "beta/admin", "BETA/jon", "be/jon", "../beta/jon",
                  "alpha/../beta/jon", "beta/jon\x00", "Users/beta/jon"):
        for authn, pw in (("alpha/admin", "alpha-admin"), ("alpha/jon", "alpha-pw")):
            c = greet(s)
            c.send("p AUTHENTICATE PLAIN %s\r\n" % plain(authz, authn, pw))
            r = c.until_tagged("p")
            assert r[-1].startswith(("p NO", "p BAD")), (authz, authn, r)
            c.send("q SELECT INBOX\r\n")        # still not authenticated
            q = c.until_tagged("q")
            assert q[-1].startswith(("q BAD", "q NO")), q
            c.clean()
            c.close()
    # control: the same mechanism with a same-instance authzid works for the admin
    c = greet(s)
    c.send("p AUTHENTICATE PLAIN %s\r\n" % plain("alpha/jon", "alpha/admin", "alpha-admin"))
    assert c.until_tagged("p")[-1].startswith("p OK")
    r = tagged(c, "s", "SELECT INBOX")
    r = tagged(c, "f", "FETCH 1:* (BODY.PEEK[])")
    assert any(SECRET_A in x for x in r)
    c.clean()
    c.close()


def hook_server(target):
    tmp = tempfile.mkdtemp(prefix="coffer-isoh-")
    spec = instances(tmp)
    return tmp, CofferServer(instances=spec, env={"COFFER_TEST_OPEN_AFTER_LOGIN": target})


def hook_result(target, user="alpha/jon", pw="alpha-pw"):
    import shutil
    tmp, s = hook_server(target)
    try:
        with s:
            c, st = login(s, user, pw)
            assert st.startswith("l OK"), st
            c.send("z LOGOUT\r\n")
            c.until_tagged("z")
            c.close()
            deadline = time.time() + 5 * TIMEOUT_SCALE
            m = None
            while time.time() < deadline and not m:
                m = re.search(r"test hook: open\(%s\) after login: (.*)" % re.escape(target),
                              s.log())
                time.sleep(0.05)
            assert m, "hook did not run (built without --enable-test-hooks?)\n" + s.log()
            exists = os.path.exists(os.path.join(s.data_dir, target.lstrip("/")))
            return m.group(1).strip(), s.log(), exists
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_confinement_refuses_other_instance_files():
    if os.environ.get("COFFER_TEST_HOOKS") != "yes":
        raise Skip("cofferd built without --enable-test-hooks: confinement hook not run")
    # control: the hook really opens (own instance's files)
    res, log, _ = hook_result("/instances/alpha/data.mdb")
    assert res == "SUCCEEDED", res
    # beta's files exist inside the chroot with the coffer user's ownership:
    # only Landlock stands between the child and them (auth.secret: its mode)
    landlock = landlock_active(log, "other instance's files not refused after login "
                               "(isolation by chroot only)")
    for target in ("/instances/beta/data.mdb", "/instances/beta/lock.mdb",
                   "/instances/beta", "/instances/alpha/../beta/data.mdb",
                   "/registry/data.mdb", "/auth.secret"):
        if not landlock and target != "/auth.secret":
            continue
        res, log, exists = hook_result(target)
        assert exists, target       # so a refusal cannot be a missing file
        assert res == "Permission denied", (target, res)
    # the same from beta's side
    if landlock:
        res, _, _ = hook_result("/instances/alpha/data.mdb", "beta/jon", "beta-pw")
        assert res == "Permission denied", res
    # host paths do not exist inside the chroot
    res, _, _ = hook_result("/etc/passwd")
    assert res in ("No such file or directory", "Permission denied"), res
    res, _, _ = hook_result("/instances/BETA/data.mdb")
    assert res in ("No such file or directory", "Permission denied"), res


def test_confinement_store_read_only():
    """Landlock from before the first client byte lets a child write only
    the LMDB lock files: its own instance's data.mdb cannot be opened for
    writing (a compromised child cannot corrupt the archive), while
    lock.mdb can (LMDB readers need their reader slot: the control)."""
    if os.environ.get("COFFER_TEST_HOOKS") != "yes":
        raise Skip("cofferd built without --enable-test-hooks: confinement hook not run")
    res, log, _ = hook_result("w:/instances/alpha/lock.mdb")
    assert res == "SUCCEEDED", res
    if not landlock_active(log, "data.mdb writes not refused after login"):
        return
    for target in ("w:/instances/alpha/data.mdb", "w:/registry/data.mdb",
                   "w:/instances/beta/data.mdb", "w:/instances/beta/lock.mdb"):
        res, _, _ = hook_result(target)
        assert res == "Permission denied", (target, res)


def test_preauth_confinement_matches_threat_model():
    """The pre-auth layer alone (docs/RELIABILITY.md, threat model, "a
    compromised pre-auth child"): with COFFER_TEST_OPEN_BEFORE_LOGIN the
    child tries each item once its confinement is in place and before it
    reads the first command. The doc's claims, each checked: it CAN read
    every file under data_dir (every instance's data.mdb, the registry:
    the admitted gap) and write every LMDB lock file; it CANNOT write any
    data.mdb, create a file anywhere, read outside data_dir or
    auth.secret, start a process or regain root."""
    if os.environ.get("COFFER_TEST_HOOKS") != "yes":
        raise Skip("cofferd built without --enable-test-hooks: pre-auth confinement hook not run")
    import shutil
    can = ["/instances/alpha/data.mdb", "/instances/beta/data.mdb", "/registry/data.mdb",
           "/instances/beta/lock.mdb",
           "w:/instances/alpha/lock.mdb", "w:/instances/beta/lock.mdb", "w:/registry/lock.mdb"]
    landlock_cannot = ["w:/instances/alpha/data.mdb", "w:/instances/beta/data.mdb",
                       "w:/registry/data.mdb", "c:/instances/alpha/new.mdb",
                       "c:/instances/beta/new", "c:/registry/new", "c:/new"]
    cannot = {"/etc/passwd": ("No such file or directory", "Permission denied"),
              "/auth.secret": ("Permission denied",),
              "fork": ("Operation not permitted",),
              "setuid0": ("Operation not permitted",)}
    items = can + landlock_cannot + sorted(cannot)
    tmp = tempfile.mkdtemp(prefix="coffer-isop-")
    try:
        with CofferServer(instances=instances(tmp),
                          env={"COFFER_TEST_OPEN_BEFORE_LOGIN": ",".join(items)}) as s:
            for p in can[:4] + ["/auth.secret"]:
                # so a refusal cannot be a missing file, nor a success a new one
                assert os.path.exists(os.path.join(s.data_dir, p.split(":")[-1].lstrip("/"))), p
            c = LineClient(s.connect(tls=True, timeout=15))
            assert c.line().startswith("* OK")
            c.send("z LOGOUT\r\n")
            c.until_tagged("z")
            c.close()
            res = {}
            deadline = time.time() + 5 * TIMEOUT_SCALE
            while time.time() < deadline and len(res) < len(items):
                log = s.log()
                # the pre-auth hook's lines only (the after-login one says "open(")
                res = dict(re.findall(r"test hook: (\S+) before login: (.*)", log))
                time.sleep(0.05)
            assert len(res) == len(items), (sorted(set(items) - set(res)), log)
            landlock = landlock_active(log, "pre-auth data.mdb writes and file creation")
            created = [p for p in landlock_cannot if p.startswith("c:") and
                       os.path.exists(os.path.join(s.data_dir, p[2:].lstrip("/")))]
        res = {k: v.strip() for k, v in res.items()}
        print("  pre-auth child (Landlock %s): %s" %
              ("on" if landlock else "off",
               "; ".join("%s -> %s" % (k, res[k]) for k in items)))
        # the admission, checked: reading every tenant's env works before login
        for p in can:
            assert res[p] == "SUCCEEDED", (p, res[p])
        for p, ok in cannot.items():
            assert res[p] in ok, (p, res[p])
        if not landlock:
            print("  (without Landlock: %s)"
                  % ", ".join("%s -> %s" % (p, res[p]) for p in landlock_cannot))
            return
        for p in landlock_cannot:
            assert res[p] == "Permission denied", (p, res[p])
        assert not created, created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    require_root()
    try:
        run_tests(globals(), sys.argv[1:] or None)
    finally:
        shutdown()
