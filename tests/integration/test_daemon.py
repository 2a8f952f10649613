#!/usr/bin/env python3
"""cofferd as a daemon: confinement of the connection child (uid, chroot,
no_new_privs, Landlock per instance), connection limits overall and per
client IP, SIGHUP reload, SIGTERM shutdown with BYE, --check-config,
timeouts (pre-auth, a client dripping bytes), line and literal limits,
log lines, --inetd, systemd socket activation and sd_notify, IPv6."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coffer_harness import (CofferServer, LineClient, TIMEOUT_SCALE, UNDER_VALGRIND,  # noqa: E402
                            cofferd_path, landlock_active, make_cert, require_root,
                            run_tests)

# Under tests/valgrind-all a memcheck finding turns the exit status into 99;
# valgrind-all reports those findings itself from the per-process logs.
CLEAN_EXIT = (0, 99) if UNDER_VALGRIND else (0,)

INSTANCES = {
    "jdcorp": {"aliases": ["jd"], "users": {"jon.doe": "s3cret"}},
    "other": {"users": {"eve": "eve-pw"}},
}


def server(**config):
    return CofferServer(instances=INSTANCES, config=config)


def greet(s, tls=True, source=None):
    c = LineClient(s.connect(tls=tls, source=source))
    g = c.line()
    assert g.startswith("* OK"), g
    return c


def login_raw(s, user="jd/jon.doe", pw="s3cret", source=None):
    c = greet(s, source=source)
    c.send('a LOGIN "%s" "%s"\r\n' % (user, pw))
    r = c.until_tagged("a")
    assert r[-1].startswith("a OK"), r
    return c


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)


def expect_closed(c, timeout=5):
    """Read until EOF; returns the lines seen (e.g. a BYE)."""
    c.s.settimeout(timeout * TIMEOUT_SCALE)
    lines = []
    try:
        while True:
            lines.append(c.line())
    except (EOFError, ConnectionResetError):
        return lines
    except socket.timeout:
        raise AssertionError("connection not closed; got %r" % lines)


def test_child_confined_before_reading():
    with server() as s:
        c = greet(s)           # the child waits for our first byte
        assert s.wait_children(1), s.child_pids()
        pid = s.child_pids()[0]
        st = proc_status(pid)
        uids = st["Uid"].split()
        gids = st["Gid"].split()
        assert all(u != "0" for u in uids), st["Uid"]
        assert all(g != "0" for g in gids), st["Gid"]
        assert st["Groups"].split() in ([], [gids[0]]), st["Groups"]
        assert st["NoNewPrivs"].strip() == "1"
        assert st["CapEff"].strip() == "0000000000000000", st["CapEff"]
        assert os.path.realpath(os.readlink("/proc/%d/root" % pid)) == os.path.realpath(s.data_dir)
        # libsasl2's random source inside the chroot is the real device.
        st_u = os.stat(os.path.join(s.data_dir, "dev", "urandom"))
        import stat as _stat
        assert _stat.S_ISCHR(st_u.st_mode) and os.major(st_u.st_rdev) == 1 and \
            os.minor(st_u.st_rdev) == 9, st_u
        c.send('a LOGIN "jd/jon.doe" "s3cret"\r\n')
        assert c.until_tagged("a")[-1].startswith("a OK")
        st = proc_status(pid)
        assert all(u != "0" for u in st["Uid"].split())
        c.close()
        # The parent itself keeps root (to re-read keys on SIGHUP), nothing else.
        assert proc_status(s.proc.pid)["Uid"].split()[0] == "0"


def test_hook_cannot_open_other_instance_after_login():
    if os.environ.get("COFFER_TEST_HOOKS") != "yes":
        print("  (cofferd built without --enable-test-hooks: hook test not run)")
        return
    for target, must_open in (("/instances/other/data.mdb", False),
                              ("/instances/jdcorp/data.mdb", True),
                              ("/auth.secret", False)):
        with CofferServer(instances=INSTANCES,
                          env={"COFFER_TEST_OPEN_AFTER_LOGIN": target}) as s:
            c = login_raw(s)
            c.send("z LOGOUT\r\n")
            expect_closed(c)
            time.sleep(0.2)
            m = re.search(r"test hook: open\(%s\) after login: (.*)" % re.escape(target), s.log())
            assert m, s.log()
            if must_open:
                assert m.group(1) == "SUCCEEDED", m.group(0)
            elif target.startswith("/instances/") and not landlock_active(
                    s.log(), "other instance's data.mdb not refused after login"):
                pass
            else:
                assert m.group(1) != "SUCCEEDED", m.group(0)


MBOX = (b"From sender@example.org Mon Jan  6 10:00:00 2025\n"
        b"From: Sender <sender@example.org>\n"
        b"To: jon.doe@example.org\n"
        b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\n"
        b"Date: Mon, 6 Jan 2025 10:00:00 +0100\n"
        b"Message-ID: <1@example.org>\n"
        b"\n"
        b"Hello.\n"
        b"\n"
        b"From sender@example.org Mon Jan  6 11:00:00 2025\n"
        b"From: Sender <sender@example.org>\n"
        b"To: jon.doe@example.org\n"
        b"Subject: plain ascii\n"
        b"Date: Mon, 6 Jan 2025 11:00:00 +0100\n"
        b"Message-ID: <2@example.org>\n"
        b"\n"
        b"Bye.\n")


def test_scram_login_and_charset_search_inside_confinement():
    """Everything prepared before confinement works after it: libsasl2's
    random source for SCRAM nonces and iconv for SEARCH CHARSET."""
    d = tempfile.mkdtemp(prefix="coffer-mbox-")
    try:
        mbox = os.path.join(d, "inbox.mbox")
        with open(mbox, "wb") as f:
            f.write(MBOX)
        os.chmod(d, 0o755)
        os.chmod(mbox, 0o644)
        inst = {"jdcorp": {"users": {"jon.doe": "s3cret"},
                           "imports": [("jon.doe", "INBOX", mbox)]}}
        with CofferServer(instances=inst) as s:
            from imap_sasl import ScramClient
            m = s.imap()
            sc = ScramClient("jdcorp/jon.doe", "s3cret")
            assert m.authenticate("SCRAM-SHA-256", sc.imaplib_callback())[0] == "OK"
            assert sc.server_verified
            pid = [p for p in s.child_pids()][0]
            assert all(u != "0" for u in proc_status(pid)["Uid"].split())
            typ, data = m.select("INBOX", readonly=True)
            assert typ == "OK" and data[0] == b"2", data
            m.literal = "Grüße aus Köln".encode("latin-1")
            typ, data = m.search("ISO-8859-1", "SUBJECT")
            assert typ == "OK" and data[0].split() == [b"1"], (typ, data)
            m.literal = "köln".encode("latin-1")
            typ, data = m.search("ISO-8859-1", "SUBJECT")
            assert typ == "OK" and data[0].split() == [b"1"], (typ, data)
            m.logout()
    finally:
        subprocess.run(["rm", "-rf", d])


def test_per_ip_limit():
    with server(max_connections_per_ip=2) as s:
        keep = [greet(s, tls=False, source="127.0.0.2"), greet(s, tls=True, source="127.0.0.2")]
        c = LineClient(s.connect(tls=False, source="127.0.0.2"))
        lines = expect_closed(c)
        assert lines and lines[0].startswith("* BYE"), lines
        other = greet(s, tls=True, source="127.0.0.5")   # another address is still served
        other.close()
        for k in keep:
            k.close()
        assert "max_connections_per_ip" in s.log()
        assert s.wait_children(0)   # (slow to exit under valgrind)
        greet(s, tls=False, source="127.0.0.2").close()    # slots are freed when children exit


def test_max_connections():
    with server(max_connections=3, max_connections_per_ip=10) as s:
        keep = [greet(s, source="127.0.0.%d" % i) for i in (6, 7, 8)]
        assert s.wait_children(3)
        c = LineClient(s.connect(tls=False, source="127.0.0.9"))
        lines = expect_closed(c)
        assert lines and lines[0].startswith("* BYE"), lines
        for k in keep:
            k.close()


def cert_cn(s, port):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port],
                       input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20 * TIMEOUT_SCALE)
    m = re.search(r"subject=.*CN\s*=\s*([^\s,/]+)", r.stdout.decode(errors="replace"))
    return m.group(1) if m else None


def test_sighup_reloads_cert_and_config():
    with server(max_connections_per_ip=10) as s:
        old = login_raw(s)
        assert cert_cn(s, s.tls_port) == "localhost"
        cert, key = make_cert(s.tmp, cn="reloaded.example", name="new")
        s.write_config(tls_cert=cert, tls_key=key)
        s.reload()
        s.cert = cert     # what our clients trust from now on
        assert cert_cn(s, s.tls_port) == "reloaded.example"
        old.send("n NOOP\r\n")                    # existing sessions carry on
        assert old.until_tagged("n")[-1].startswith("n OK")
        s.write_config(max_connections_per_ip=1)
        s.reload()
        # max_connections_per_ip = 1 now applies: `old` holds the only slot.
        c = LineClient(s.connect(tls=False))
        assert expect_closed(c)[0].startswith("* BYE")
        # A broken config is refused and the running one is kept.
        with open(s.conf_path, "a") as f:
            f.write("no_such_key = 1\n")
        s.reload()
        assert "keeping the old configuration" in s.log()
        assert s.proc.poll() is None
        old.close()
        assert s.wait_children(0)   # (slow to exit under valgrind)
        greet(s, tls=False).close()


def test_sigterm_says_bye_and_exits():
    with server() as s:
        a = login_raw(s)
        b = greet(s, tls=False)
        assert s.wait_children(2)
        kids = s.child_pids()
        s.proc.send_signal(signal.SIGTERM)
        for c in (a, b):
            lines = expect_closed(c, timeout=10)
            assert lines and lines[0].startswith("* BYE"), lines
        assert s.proc.wait(15 * TIMEOUT_SCALE) in CLEAN_EXIT
        for pid in kids:
            assert not os.path.exists("/proc/%d" % pid), "child %d survived" % pid
        try:
            socket.create_connection(("127.0.0.1", s.tls_port), timeout=2).close()
            raise AssertionError("still accepting after SIGTERM")
        except OSError:
            pass


def check_config(text):
    d = tempfile.mkdtemp(prefix="coffer-cc-")
    try:
        path = os.path.join(d, "cofferd.conf")
        with open(path, "w") as f:
            f.write(text.replace("@DIR@", d))
        os.mkdir(os.path.join(d, "data"))
        cert, key = make_cert(d)
        with open(path) as f:
            body = f.read().replace("@CERT@", cert).replace("@KEY@", key)
        with open(path, "w") as f:
            f.write(body)
        r = subprocess.run([cofferd_path(), "--check-config", "-c", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30 * TIMEOUT_SCALE)
        return r.returncode, r.stdout.decode(errors="replace")
    finally:
        subprocess.run(["rm", "-rf", d])


GOOD = """# sample
data_dir = @DIR@/data
listen = 127.0.0.1:1143, [::1]:1143
listen_tls = 127.0.0.1:1993
tls_cert = @CERT@
tls_key = @KEY@
user = nobody
group = nogroup
"""


def test_check_config():
    rc, out = check_config(GOOD)
    assert rc == 0 and "OK" in out, out
    for bad, line, words in (
            ("bogus_key = 1\n", 10, "unknown key"),
            ("max_connections = lots\n", 10, "max_connections"),
            ("listen_tls = 127.0.0.1:99999\n", 10, "address"),
            ("allow_plaintext_auth = maybe\n", 10, "allow_plaintext_auth"),
            ("idle_timeout = soon\n", 10, "idle_timeout"),
            ("log = file\n", 10, "log"),
            ("just some words\n", 10, "key = value"),
            ("tls_protocols = SSLv3\n", 10, "tls_protocols")):
        rc, out = check_config(GOOD + "\n" + bad)
        assert rc != 0, (bad, out)
        assert re.search(r"cofferd\.conf:%d:" % line, out), (bad, out)
        assert words in out, (bad, out)
    rc, out = check_config(GOOD.replace("@CERT@", "/nonexistent/cert.pem"))
    assert rc != 0 and "/nonexistent/cert.pem" in out, out


def test_preauth_timeout():
    with server(preauth_timeout="1s") as s:
        c = greet(s)
        t0 = time.monotonic()
        lines = expect_closed(c, timeout=10)
        dt = time.monotonic() - t0
        assert 0.8 <= dt < 5 * TIMEOUT_SCALE, dt
        assert not lines or lines[-1].startswith("* BYE"), lines


def test_dripping_client_dropped_at_line_deadline():
    with server(command_timeout="1s", preauth_timeout="30s") as s:
        c = greet(s)
        t0 = time.monotonic()
        closed = False
        for ch in "a LOGIN \"jd/jon.doe\" \"s3cret\"":
            try:
                c.send(ch)
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            if time.monotonic() - t0 > 6 * TIMEOUT_SCALE:
                break
        if not closed:
            expect_closed(c, timeout=5)
        assert time.monotonic() - t0 < 5 * TIMEOUT_SCALE, "dripping client kept for %.1fs" % (time.monotonic() - t0)


def test_line_and_literal_limits():
    with server(max_line="1K", max_literal="1K") as s:
        c = greet(s)
        c.send("a NOOP " + "x" * 5000 + "\r\n")
        ln = c.line()
        assert ln.startswith(("a BAD", "* BAD", "* BYE", "a NO")), ln
        if not ln.startswith("* BYE"):
            c.send("b NOOP\r\n")
            assert c.until_tagged("b")[-1].startswith("b OK")
        c.close()
        c = greet(s)
        c.send("c LOGIN {5000}\r\n")
        ln = c.line()
        assert ln.startswith(("c NO", "c BAD", "* BYE")), ln
        c.close()
        assert "died of signal" not in s.log()


def test_log_lines():
    with server() as s:
        c = login_raw(s, source="127.0.0.11")
        c.send("z LOGOUT\r\n")
        expect_closed(c)
        c = greet(s, source="127.0.0.12")
        c.send('a LOGIN "jd/jon.doe" "bad"\r\n')
        c.until_tagged("a")
        c.close()
        time.sleep(0.5)
        log = s.log()
        assert re.search(r"127\.0\.0\.11:\d+: connect tls", log), log
        assert re.search(r"login jdcorp/jon\.doe mech=\S+ tls=TLSv1\.[23] \S+", log), log
        assert re.search(r"disconnect in=\d+ out=\d+ commands=\d+ duration=", log), log
        assert re.search(r"auth failure from 127\.0\.0\.12", log), log
        # exactly one line for the end of each connection, naming the user
        # when there was a login
        ends11 = re.findall(r"conn 127\.0\.0\.11:\d+: ((?:disconnect|logout)\b.*)", log)
        ends12 = re.findall(r"conn 127\.0\.0\.12:\d+: ((?:disconnect|logout)\b.*)", log)
        assert len(ends11) == 1 and len(ends12) == 1, log
        assert re.search(r"^disconnect in=[1-9]\d* out=[1-9]\d* commands=2 duration=[\d.]+s "
                         r"user=jdcorp/jon\.doe$", ends11[0]), ends11
        assert "user=" not in ends12[0], ends12


# Runs cofferd in a private mount namespace whose /dev is a tmpfs holding
# the few devices it needs plus /dev/log bound to the test's socket: the
# host's /dev is never touched.
SYSLOG_WRAP = r"""
set -e
d=$1; shift
mkdir -p "$d/olddev"
mount --bind /dev "$d/olddev"
mount -t tmpfs -o mode=755 devtmp /dev
for n in null zero random urandom full; do
    touch "/dev/$n"; mount --bind "$d/olddev/$n" "/dev/$n"
done
touch /dev/log
mount --bind "$d/log.sock" /dev/log
exec "$@"
"""


def test_log_syslog():
    if subprocess.run(["unshare", "-m", "true"], stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: cannot create a mount namespace")
        return
    d = tempfile.mkdtemp(prefix="coffer-syslog-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(d, "log.sock"))
    os.chmod(os.path.join(d, "log.sock"), 0o666)
    sock.settimeout(0.2)
    got = []

    def drain(want, timeout=10):
        deadline = time.time() + timeout * TIMEOUT_SCALE
        while time.time() < deadline and not all(any(re.search(w, m) for m in got)
                                                 for w in want):
            try:
                got.append(sock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
        return got

    try:
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", SYSLOG_WRAP, "sh", d]
        with CofferServer(instances=INSTANCES, config={"log": "syslog"}, wrap=wrap) as s:
            pid = s.proc.pid
            c = login_raw(s, source="127.0.0.21")
            c.send("z LOGOUT\r\n")
            expect_closed(c)
            # <22> is LOG_MAIL|LOG_INFO; the parent and the child log with
            # their own pids, the ident is cofferd
            want = [r"^<22>.*cofferd\[%d\]: ready: " % pid,
                    r"^<22>.*cofferd\[\d+\]: conn 127\.0\.0\.21:\d+: connect tls$",
                    r"^<22>.*cofferd\[\d+\]: conn 127\.0\.0\.21:\d+: login jdcorp/jon\.doe ",
                    r"^<22>.*cofferd\[\d+\]: conn 127\.0\.0\.21:\d+: disconnect .*"
                    r"user=jdcorp/jon\.doe$"]
            msgs = drain(want)
            for w in want:
                assert any(re.search(w, m) for m in msgs), (w, msgs)
            ends = [m for m in msgs if re.search(r"127\.0\.0\.21:\d+: (disconnect|logout)", m)]
            assert len(ends) == 1, msgs
            # syslog only: nothing of it on stderr
            assert "connect tls" not in s.log() and "login jdcorp" not in s.log(), s.log()
    finally:
        sock.close()
        subprocess.run(["rm", "-rf", d])


def test_inetd_mode():
    with CofferServer(instances=INSTANCES, start=False) as s:
        p = subprocess.run([cofferd_path(), "-c", s.conf_path, "--inetd"],
                           input=b"a CAPABILITY\r\nb LOGOUT\r\n", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * TIMEOUT_SCALE)
        out = p.stdout.decode(errors="replace")
        assert out.startswith("* OK"), (out, p.stderr)
        assert "STARTTLS" in out and "LOGINDISABLED" in out, out
        assert re.search(r"^b OK", out, re.M), out


def test_inetd_tls_mode():
    with CofferServer(instances=INSTANCES, start=False) as s:
        mine, theirs = socket.socketpair()
        p = subprocess.Popen([cofferd_path(), "-c", s.conf_path, "--inetd", "--tls"],
                             stdin=theirs, stdout=theirs, stderr=open(s.log_path, "ab"))
        theirs.close()
        try:
            ctx = s.ssl_context()
            tls = ctx.wrap_socket(mine, server_hostname="localhost")
            c = LineClient(tls)
            assert c.line().startswith("* OK")
            c.send('a LOGIN "jd/jon.doe" "s3cret"\r\nb LOGOUT\r\n')
            assert c.until_tagged("a")[-1].startswith("a OK")
            assert c.until_tagged("b")[-1].startswith("b OK")
            c.close()
            assert p.wait(20 * TIMEOUT_SCALE) in CLEAN_EXIT
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_socket_activation_and_notify():
    with CofferServer(instances=INSTANCES, start=False) as s:
        plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        plain.bind(("127.0.0.1", 0))
        plain.listen(16)
        tls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tls.bind(("127.0.0.1", 0))
        tls.listen(16)
        notify_path = os.path.join(s.tmp, "notify.sock")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify_path)
        ns.settimeout(15)
        # Bogus listen addresses prove the inherited sockets are used.
        s.write_config(listen="127.0.0.1:1", listen_tls="127.0.0.1:2")
        env = dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES="imaps:imap",
                   NOTIFY_SOCKET=notify_path)

        def preexec():
            # Via high numbers first: either socket may itself be fd 3 or 4.
            a, b = os.dup(tls.fileno()) + 100, os.dup(plain.fileno()) + 100
            os.dup2(tls.fileno(), a)
            os.dup2(plain.fileno(), b)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.environ["LISTEN_PID"] = str(os.getpid())
            os.putenv("LISTEN_PID", str(os.getpid()))

        # env=None so the LISTEN_PID set in preexec reaches the exec'd daemon.
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            p = subprocess.Popen([cofferd_path(), "-F", "-c", s.conf_path], preexec_fn=preexec,
                                 pass_fds=(tls.fileno(), plain.fileno()),
                                 stdout=subprocess.DEVNULL, stderr=open(s.log_path, "ab"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            msg = ns.recv(4096).decode()
            assert "READY=1" in msg, msg
            s.tls_port = tls.getsockname()[1]
            s.port = plain.getsockname()[1]
            m = s.login("jd/jon.doe", "s3cret")
            m.logout()
            c = greet(s, tls=False)
            c.send("a CAPABILITY\r\n")
            assert "STARTTLS" in " ".join(c.until_tagged("a"))
            c.close()
            p.send_signal(signal.SIGHUP)
            msgs = ns.recv(4096).decode()
            if "READY=1" not in msgs:
                msgs += ns.recv(4096).decode()
            assert "RELOADING=1" in msgs and "READY=1" in msgs, msgs
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
            for x in (plain, tls, ns):
                x.close()


def test_ipv6_listener():
    if not socket.has_ipv6:
        raise AssertionError("no IPv6 support in Python")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        port6 = probe.getsockname()[1]
        probe.close()
    except OSError:
        print("  (no ::1 on this host: IPv6 listener not tested)")
        return
    with CofferServer(instances=INSTANCES, start=False) as s:
        s.write_config(listen_tls="127.0.0.1:%d, [::1]:%d" % (s.tls_port, port6))
        s.start()
        raw = socket.create_connection(("::1", port6), timeout=10)
        c = LineClient(s.ssl_context().wrap_socket(raw, server_hostname="localhost"))
        assert c.line().startswith("* OK")
        c.send('a LOGIN "jd/jon.doe" "s3cret"\r\n')
        assert c.until_tagged("a")[-1].startswith("a OK")
        c.close()


if __name__ == "__main__":
    require_root()
    run_tests(globals(), sys.argv[1:] or None)
