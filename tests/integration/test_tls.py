#!/usr/bin/env python3
"""cofferd TLS: the plain port before STARTTLS (LOGINDISABLED, no AUTH=,
PRIVACYREQUIRED), STARTTLS injection (CVE-2011-0411 class), openssl
s_client on both ports, protocol/cipher profile, SNI certificates,
stateless ticket resumption across children, COMPRESS=DEFLATE."""

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coffer_harness import (CofferServer, LineClient, TIMEOUT_SCALE, make_cert,  # noqa: E402
                            require_root, run_tests)
from imap_sasl import plain  # noqa: E402

INSTANCES = {"jdcorp": {"aliases": ["jd"], "users": {"jon.doe": "s3cret"}}}


def server(**config):
    return CofferServer(instances=INSTANCES, config=config)


def capability_line(c, tag="c"):
    c.send("%s CAPABILITY\r\n" % tag)
    lines = c.until_tagged(tag)
    caps = [ln for ln in lines if ln.upper().startswith("* CAPABILITY")]
    assert caps and lines[-1].startswith(tag + " OK"), lines
    return caps[0].upper().split()[2:]


def s_client(args, stdin=b"", timeout=20):
    r = subprocess.run(["openssl", "s_client", "-ign_eof"] + args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout * TIMEOUT_SCALE)
    return r.returncode, r.stdout.decode(errors="replace")


def test_plain_port_before_starttls():
    with server() as s:
        c = LineClient(s.connect(tls=False))
        g = c.line()
        assert g.startswith("* OK"), g
        caps = capability_line(c)
        assert "STARTTLS" in caps and "LOGINDISABLED" in caps, caps
        assert not [x for x in caps if x.startswith("AUTH=")], caps
        c.send('a LOGIN "jd/jon.doe" "s3cret"\r\n')
        r = c.until_tagged("a")[-1]
        assert r.startswith("a NO [PRIVACYREQUIRED]"), r
        c.send("b AUTHENTICATE PLAIN %s\r\n" % base64.b64encode(plain("jd/jon.doe", "s3cret")).decode())
        r = c.until_tagged("b")[-1]
        assert r.startswith("b NO [PRIVACYREQUIRED]"), r
        c.close()
        assert "login " not in s.log()


def test_starttls_then_login():
    with server() as s:
        m = s.imap(tls=False)
        m.starttls(ssl_context=s.ssl_context())
        caps = [c.upper() for c in m.capabilities]
        assert "AUTH=PLAIN" in caps and "AUTH=SCRAM-SHA-256" in caps, caps
        assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
        m.login("jd/jon.doe", "s3cret")
        m.logout()


def test_allow_plaintext_auth_for_test_rigs():
    with server(allow_plaintext_auth="yes") as s:
        m = s.imap(tls=False)
        caps = [c.upper() for c in m.capabilities]
        assert "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps, caps
        m.login("jd/jon.doe", "s3cret")
        m.logout()


def test_starttls_discards_pipelined_plaintext():
    with server() as s:
        raw = s.connect(tls=False)
        c = LineClient(raw)
        assert c.line().startswith("* OK")
        # The injected command must not be executed after the handshake.
        c.send('a STARTTLS\r\nb LOGIN "jd/jon.doe" "s3cret"\r\nx CAPABILITY\r\n')
        r = c.line()
        assert r.startswith("a OK"), r
        assert c.buf == b"", "server sent plaintext after the STARTTLS OK: %r" % c.buf
        tls = s.ssl_context().wrap_socket(raw, server_hostname="localhost")
        c = LineClient(tls)
        caps = capability_line(c, "c")
        assert "AUTH=PLAIN" in caps, caps
        c.send("d NOOP\r\n")
        lines = c.until_tagged("d")
        for ln in lines:
            assert not ln.startswith(("b ", "x ")), "injected command answered: %r" % ln
        c.close()
        assert "login " not in s.log(), "injected LOGIN was executed:\n" + s.log()


def test_openssl_s_client_both_ports():
    with server() as s:
        rc, out = s_client(["-connect", "127.0.0.1:%d" % s.port, "-starttls", "imap",
                            "-CAfile", s.cert, "-verify_return_error", "-quiet"],
                           b'a LOGIN "jd/jon.doe" "s3cret"\r\nb LOGOUT\r\n')
        assert re.search(r"^a OK", out, re.M), out
        rc, out = s_client(["-connect", "127.0.0.1:%d" % s.tls_port, "-CAfile", s.cert,
                            "-verify_return_error", "-quiet"],
                           b'a LOGIN "jdcorp/jon.doe" "s3cret"\r\nb LOGOUT\r\n')
        assert re.search(r"^a OK", out, re.M), out


def test_protocols_and_ciphers_profile():
    with server() as s:
        base = ["-connect", "127.0.0.1:%d" % s.tls_port, "-CAfile", s.cert]
        rc, out = s_client(base + ["-tls1_3"], b"a LOGOUT\r\n")
        assert "TLSv1.3" in out and rc == 0, out
        rc, out = s_client(base + ["-tls1_2"], b"a LOGOUT\r\n")
        assert rc == 0 and re.search(r"Cipher is ECDHE-", out), out
        rc, out = s_client(base + ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], b"a LOGOUT\r\n")
        assert rc != 0 or "Cipher is (NONE)" in out, "TLS 1.1 accepted:\n" + out
        # TLS 1.2 without ECDHE (static RSA / DHE / plain ECDSA kx) is refused.
        rc, out = s_client(base + ["-tls1_2", "-cipher", "AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256"],
                           b"a LOGOUT\r\n")
        assert rc != 0 or "Cipher is (NONE)" in out, "non-ECDHE suite accepted:\n" + out
        # Renegotiation is disabled: a client-initiated one gets the
        # no_renegotiation alert.
        p = subprocess.Popen(["openssl", "s_client", "-msg"] + base + ["-tls1_2"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # renegotiate only after the greeting arrived (slow under valgrind)
        time.sleep(0.5 * TIMEOUT_SCALE)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.0 * TIMEOUT_SCALE)
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        p.stdin = None
        out = p.communicate(timeout=20 * TIMEOUT_SCALE)[0].decode(errors="replace")
        assert "no_renegotiation" in out or "no renegotiation" in out, out[-2000:]


def test_configured_protocols_tls13_only():
    with server(tls_protocols="TLSv1.3") as s:
        rc, out = s_client(["-connect", "127.0.0.1:%d" % s.tls_port, "-tls1_2"], b"a LOGOUT\r\n")
        assert rc != 0 or "Cipher is (NONE)" in out, out


def test_sni_certificates():
    d = tempfile.mkdtemp(prefix="coffer-sni-")
    cert2, key2 = make_cert(d, cn="mail.customer.example", name="c2")
    cert3, key3 = make_cert(d, cn="wild.example", name="c3")
    try:
        with server(tls_sni=["mail.customer.example %s %s" % (cert2, key2),
                             "*.hosted.example %s %s" % (cert3, key3)]) as s:
            def subject(name):
                args = ["-connect", "127.0.0.1:%d" % s.tls_port]
                if name:
                    args += ["-servername", name]
                rc, out = s_client(args, b"a LOGOUT\r\n")
                m = re.search(r"subject=.*CN\s*=\s*([^\s,/]+)", out)
                return m.group(1) if m else out
            assert subject("mail.customer.example") == "mail.customer.example"
            assert subject("imap.hosted.example") == "wild.example"
            assert subject("unknown.example") == "localhost"
            assert subject(None) == "localhost"
    finally:
        subprocess.run(["rm", "-rf", d])


def test_ticket_resumption_across_children():
    with server() as s:
        d = tempfile.mkdtemp(prefix="coffer-sess-")
        sess = os.path.join(d, "sess.pem")
        try:
            for ver in ("-tls1_2", "-tls1_3"):
                base = ["-connect", "127.0.0.1:%d" % s.tls_port, "-CAfile", s.cert, ver]
                rc, out = s_client(base + ["-sess_out", sess], b"a NOOP\r\nb LOGOUT\r\n")
                assert rc == 0, out
                rc, out = s_client(base + ["-sess_in", sess], b"a LOGOUT\r\n")
                assert "Reused" in out, "%s: session not resumed:\n%s" % (ver, out)
        finally:
            subprocess.run(["rm", "-rf", d])


def test_ticket_key_rotation():
    """A ticket stays good while its key is current or previous (one
    rotation: accepted); after a second
    rotation it is refused and the client gets a full handshake. The test
    hook SIGUSR1 makes the parent rotate now instead of every
    tls_ticket_rotate."""
    with server() as s:
        d = tempfile.mkdtemp(prefix="coffer-sess-")

        def rotate():
            before = s.log().count("TLS ticket keys rotated")
            os.kill(s.proc.pid, signal.SIGUSR1)
            deadline = time.time() + 10
            while s.log().count("TLS ticket keys rotated") < before + 1:
                assert time.time() < deadline, "no rotation logged (built without test hooks?)"
                time.sleep(0.05)

        try:
            for ver in ("-tls1_2", "-tls1_3"):
                base = ["-connect", "127.0.0.1:%d" % s.tls_port, "-CAfile", s.cert, ver]
                k1 = os.path.join(d, "k1" + ver)
                k2 = os.path.join(d, "k2" + ver)
                rc, out = s_client(base + ["-sess_out", k1], b"a NOOP\r\nb LOGOUT\r\n")
                assert rc == 0, out
                rc, out = s_client(base + ["-sess_in", k1], b"a NOOP\r\nb LOGOUT\r\n")
                assert "Reused" in out, "%s: not resumed within the key's life:\n%s" % (ver, out)
                rotate()
                # previous key: still accepted
                rc, out = s_client(base + ["-sess_in", k1], b"a NOOP\r\nb LOGOUT\r\n")
                assert "Reused" in out, "%s: previous key refused:\n%s" % (ver, out)
                rc, out = s_client(base + ["-sess_out", k2], b"a NOOP\r\nb LOGOUT\r\n")
                assert rc == 0 and os.path.exists(k2), out
                rotate()
                rc, out = s_client(base + ["-sess_in", k1], b"a NOOP\r\nb LOGOUT\r\n")
                assert rc == 0 and "Reused" not in out and "New," in out, \
                    "%s: ticket of a retired key accepted:\n%s" % (ver, out)
                assert "* OK" in out, out   # full handshake, session works
                rc, out = s_client(base + ["-sess_in", k2], b"a NOOP\r\nb LOGOUT\r\n")
                assert "Reused" in out, "%s: ticket of the previous key refused:\n%s" % (ver, out)
        finally:
            subprocess.run(["rm", "-rf", d])


class DeflateClient(LineClient):
    """LineClient over RFC 4978 raw DEFLATE."""

    def __init__(self, sock, buf=b""):
        super().__init__(sock)
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        self.buf = self.decomp.decompress(buf)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH))

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("closed")
            self.buf += self.decomp.decompress(d)
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode(errors="replace")


def test_compress_deflate():
    with server() as s:
        c = LineClient(s.connect(tls=True))
        c.line()
        c.send('a LOGIN "jd/jon.doe" "s3cret"\r\n')
        assert c.until_tagged("a")[-1].startswith("a OK")
        caps = capability_line(c, "b")
        assert "COMPRESS=DEFLATE" in caps, caps
        c.send("z COMPRESS DEFLATE\r\n")
        r = c.line()
        assert r.startswith("z OK"), r
        dc = DeflateClient(c.s, c.buf)
        for i in range(3):
            dc.send("n%d NOOP\r\n" % i)
            assert dc.until_tagged("n%d" % i)[-1].startswith("n%d OK" % i)
        caps = capability_line(dc, "y")
        assert "COMPRESS=DEFLATE" not in caps, caps
        dc.send("l LIST \"\" \"*\"\r\n")
        assert dc.until_tagged("l")[-1].startswith("l OK")
        dc.send("q LOGOUT\r\n")
        assert dc.until_tagged("q")[-1].startswith("q OK")
        c.close()


def test_tls_handshake_garbage_does_not_crash():
    with server() as s:
        raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=10)
        raw.sendall(b"a LOGIN x y\r\n" * 10)
        try:
            raw.recv(100)
        except OSError:
            pass
        raw.close()
        m = s.login("jd/jon.doe", "s3cret")
        m.logout()
        assert "died of signal" not in s.log()


if __name__ == "__main__":
    require_root()
    run_tests(globals(), sys.argv[1:] or None)
