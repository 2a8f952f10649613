#!/usr/bin/env python3
"""The writer thread for long responses (server/outpipe.c, output_thread):
a large FETCH over TLS and over TLS+COMPRESS gives the same bytes with and
without it; a client that does not read is dropped by the write timeout
while the thread is running; LOGOUT pipelined after a large FETCH; a client
killed mid-stream; SIGTERM while the writer is blocked; TLS 1.3 KeyUpdate
before a large FETCH. Run as root (the children chroot)."""

import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coffer_harness import (CofferServer, TIMEOUT_SCALE, UNDER_VALGRIND,  # noqa: E402
                            require_root, run_tests)

# ~20 KiB each: far more than the socket buffers and the two 256 KiB pipe
# buffers together; fewer under valgrind (memcheck is ~50x slower).
NMSG = 120 if UNDER_VALGRIND else 250
USER, PW = "acme/ann", "pw-outpipe"
_mbox = None


def mbox_path():
    """An mbox of NMSG messages, ~20 KiB each (~8 MB): text that deflate
    can compress but not to nothing, and sizes that vary."""
    global _mbox
    if _mbox:
        return _mbox
    rnd = random.Random(4978)
    words = ["archive", "coffer", "thread", "deflate", "record", "socket", "mailbox",
             "quarterly", "invoice", "meeting", "draft", "release", "zebra", "omega"]
    fd, _mbox = tempfile.mkstemp(prefix="outpipe-", suffix=".mbox")
    with os.fdopen(fd, "w") as f:
        for i in range(NMSG):
            f.write("From sender%d@example.org Mon Jan  1 00:00:00 2024\n" % i)
            f.write("From: Sender %d <sender%d@example.org>\n" % (i, i))
            f.write("To: ann@example.com\nSubject: message %d %s\n" % (i, rnd.choice(words)))
            f.write("Date: Mon, 1 Jan 2024 00:%02d:%02d +0000\n" % (i // 60 % 60, i % 60))
            f.write("Message-ID: <m%d@example.org>\n\n" % i)
            for _ in range(rnd.randint(150, 350)):
                f.write(" ".join(rnd.choice(words) + str(rnd.randint(0, 999))
                                 for _ in range(10)) + "\n")
            f.write("\n")
    os.chmod(_mbox, 0o644)
    return _mbox


def server(**config):
    cfg = {"allow_plaintext_auth": "yes", "output_thread": "yes"}
    cfg.update(config)
    return CofferServer(instances={"acme": {"users": {"ann": PW},
                                            "imports": [("ann", "INBOX", mbox_path())]}},
                        config=cfg)


class Raw:
    """Exact bytes over TLS, optionally under COMPRESS=DEFLATE."""

    def __init__(self, s, rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(60)
        raw.connect((s.host, s.tls_port))
        self.sock = s.ssl_context().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.inf = None
        self.dfl = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.dfl:
            data = self.dfl.compress(data) + self.dfl.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def more(self, n=262144):
        d = self.sock.recv(n)
        if not d:
            raise EOFError("closed; have %d bytes" % len(self.buf))
        if self.inf:
            d = self.inf.decompress(d)
        self.buf += d

    def until_tagged(self, tag):
        """Everything up to and including the tagged line (the FETCH data
        contains no line starting with these tags)."""
        pat = re.compile(rb"(?:^|\r\n)" + re.escape(tag.encode()) + rb" [^\r\n]*\r\n")
        start = 0
        while True:
            m = pat.search(self.buf, start)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            # the next match can only begin at the last line start
            nl = self.buf.rfind(b"\r\n")
            start = max(nl, 0)
            self.more()

    def login(self):
        self.until_tagged("*")   # not tagged: the greeting ends with "\r\n"
        self.send("L LOGIN %s %s\r\n" % (USER, PW))
        r = self.until_tagged("L")
        assert b"L OK" in r, r

    def compress(self):
        self.send("Z COMPRESS DEFLATE\r\n")
        r = self.until_tagged("Z")
        assert b"Z OK" in r, r
        self.inf = zlib.decompressobj(-15)
        self.dfl = zlib.compressobj(6, zlib.DEFLATED, -15)
        if self.buf:
            self.buf = self.inf.decompress(self.buf)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


FETCH_ALL = "F UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n"
FETCH_HDRS = ("H UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
              "(From To Subject Date Message-ID)])\r\n")


def session_bytes(s, compress):
    c = Raw(s)
    try:
        c.login()
        if compress:
            c.compress()
        c.send("S SELECT INBOX\r\n")
        c.until_tagged("S")
        c.send(FETCH_ALL)
        body = c.until_tagged("F")
        c.send(FETCH_HDRS)
        hdrs = c.until_tagged("H")
        c.send("N NOOP\r\n")
        c.until_tagged("N")
        return body, hdrs
    finally:
        c.close()


def writer_threads(pid):
    """The child's writer threads, by name (sanitizer runtimes may run
    threads of their own)."""
    n = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                n += f.read().strip() == "coffer-writer"
    except OSError:
        pass
    return n


def wait_writer(s, n=1, timeout=10):
    """The one child has n writer threads."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = s.child_pids()
        if len(kids) == 1 and writer_threads(kids[0]) == n:
            return True
        time.sleep(0.02)
    return False


def test_same_bytes_with_and_without_thread():
    got = {}
    with server(output_thread="yes") as s:
        for compress in (False, True):
            got["yes", compress] = session_bytes(s, compress)
        s.write_config(output_thread="no")
        s.reload()
        for compress in (False, True):
            got["no", compress] = session_bytes(s, compress)
        # auto: with or without the thread, depending on the machine's load
        s.write_config(output_thread="auto")
        s.reload()
        got["auto", True] = session_bytes(s, True)
        assert "output thread unavailable" not in s.log(), s.log()[-2000:]
    assert got["auto", True] == got["no", True]
    for compress in (False, True):
        body, hdrs = got["yes", compress]
        assert body.count(b" FETCH (") == NMSG, body[-300:]
        assert body.endswith(b"F OK Fetch completed\r\n"), body[-200:]
        assert len(body) > NMSG * 16384
        assert hdrs.count(b" FETCH (") == NMSG
        assert got["yes", compress] == got["no", compress], "compress=%s: differ" % compress


def test_thread_runs_and_slow_reader_is_dropped():
    """A client that stops reading: the writer thread blocks, the write
    timeout (command_timeout) ends the session, the child exits."""
    with server(command_timeout="2s") as s:
        c = Raw(s, rcvbuf=8192)
        c.login()
        c.send("S SELECT INBOX\r\n")
        c.until_tagged("S")
        assert s.wait_children(1)
        assert writer_threads(s.child_pids()[0]) == 0
        c.send(FETCH_ALL * 4)
        # the responses are far larger than the socket buffers (the send
        # buffer alone grows to 4 MiB): the writer thread exists and blocks
        assert wait_writer(s), "no writer thread: %s" % s.log()[-2000:]
        t0 = time.time()
        assert s.wait_children(0, timeout=20), "slow reader not dropped: " + s.log()[-3000:]
        took = time.time() - t0
        assert took < 15 * TIMEOUT_SCALE, took
        c.close()
        assert re.search(r"disconnect in=\d+ out=\d+", s.log()), s.log()[-2000:]


def test_small_output_has_no_thread():
    """Responses under 64 KiB stay synchronous, and the thread of a large
    one is gone once the session waits for the client again."""
    with server() as s:
        c = Raw(s)
        c.login()
        c.send("S SELECT INBOX\r\n")
        c.until_tagged("S")
        kid = s.child_pids()[0]
        c.send("a UID FETCH 1:3 (UID FLAGS)\r\n")
        c.until_tagged("a")
        assert writer_threads(kid) == 0
        c.send(FETCH_ALL)
        c.until_tagged("F")
        # the session settles (joins the writer) before it waits for input
        deadline = time.time() + 5
        while writer_threads(kid) and time.time() < deadline:
            time.sleep(0.02)
        assert writer_threads(kid) == 0, "thread outlived the response"
        c.close()


def test_logout_pipelined_after_large_fetch():
    for compress in (False, True):
        with server() as s:
            c = Raw(s)
            c.login()
            if compress:
                c.compress()
            c.send("S SELECT INBOX\r\n" + FETCH_ALL + "B LOGOUT\r\n")
            c.until_tagged("S")
            body = c.until_tagged("F")
            assert body.count(b" FETCH (") == NMSG
            tail = c.until_tagged("B")
            assert tail.startswith(b"* BYE") and b"B OK" in tail, tail
            try:
                while True:
                    c.more()
            except (EOFError, ConnectionError, ssl.SSLError):
                pass
            assert c.buf == b"", c.buf[:200]
            c.close()
            assert s.wait_children(0, timeout=10), "child did not exit after LOGOUT"


def test_client_killed_mid_stream():
    for compress in (False, True):
        with server() as s:
            c = Raw(s)
            c.login()
            if compress:
                c.compress()
            c.send("S SELECT INBOX\r\n")
            c.until_tagged("S")
            c.send(FETCH_ALL)
            while len(c.buf) < 300000:
                c.more()
            # RST, as when the client process is killed
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sock.close()
            assert s.wait_children(0, timeout=10), "child stuck after the client died"
            log = s.log()
            assert "disconnect" in log and "signal" not in log, log[-2000:]


def test_sigterm_while_writer_blocked():
    """SIGTERM with the writer thread blocked on a client that does not
    read: the child still ends (at the latest at the write timeout) and the
    daemon stops cleanly."""
    with server(command_timeout="3s") as s:
        c = Raw(s, rcvbuf=8192)
        c.login()
        c.send("S SELECT INBOX\r\n")
        c.until_tagged("S")
        c.send(FETCH_ALL * 4)   # more than the socket buffers hold
        assert wait_writer(s), "no writer thread"
        t0 = time.time()
        s.proc.send_signal(15)
        s.proc.wait(timeout=30)
        assert time.time() - t0 < 20 * TIMEOUT_SCALE
        assert s.proc.returncode == 0, s.proc.returncode
        c.close()


def test_tls13_keyupdate_then_large_fetch():
    """A TLS 1.3 KeyUpdate asking for ours (s_client 'K'), read by the
    session thread; then a long response through the writer thread with
    the new keys: the client decrypts all of it."""
    with server() as s:
        # (no line may start with Q or R: s_client takes those as commands)
        errf = tempfile.TemporaryFile()
        p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (s.host, s.tls_port),
                              "-tls1_3", "-crlf", "-quiet", "-no_ign_eof"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
        out = b""
        deadline = time.time() + 180

        def until(marker):
            nonlocal out
            while marker not in out and time.time() < deadline:
                d = os.read(p.stdout.fileno(), 1 << 20)
                if not d:
                    break
                out += d

        def say(line):
            # one stdin read per line, so that K is seen as a command
            p.stdin.write(line.encode())
            p.stdin.flush()

        until(b"* OK")
        say("L LOGIN %s %s\n" % (USER, PW))
        until(b"L OK")
        say("K\n")
        time.sleep(0.5)
        say("S SELECT INBOX\n")
        until(b"S OK")
        say("F UID FETCH 1:* (UID BODY.PEEK[])\n")
        until(b"F OK")
        say("X LOGOUT\n")
        until(b"X OK")
        p.stdin.close()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        errf.seek(0)
        err = errf.read()
        assert b"KEYUPDATE" in err, err[-500:]
        assert out.count(b" FETCH (") == NMSG, (out[-500:], err[-500:])
        assert b"F OK" in out and b"X OK" in out, out[-500:]


if __name__ == "__main__":
    require_root()
    try:
        run_tests(globals(), sys.argv[1:] or None)
    finally:
        if _mbox:
            os.unlink(_mbox)
