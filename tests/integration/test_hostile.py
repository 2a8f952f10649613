#!/usr/bin/env python3
"""Hostile clients against a real cofferd (issue 6 item 3): lines and
literals beyond every limit, a literal announced as 4 GiB, deep nesting, a
slowloris client, a pipelined flood that never reads (the child's RSS must
stay bounded), TLS renegotiation, disconnects mid-literal and mid-handshake,
garbage before the ClientHello, STARTTLS twice, commands in the wrong
state, 8-bit and NUL bytes in every argument, hostile mailbox names and
broken modified UTF-7.

Every case asserts the exact kind of answer (a tagged BAD/NO for the
offending tag, or an untagged BYE and a closed connection), and after each
case a "bystander" client that has been logged in all along must still be
served; at the end the daemon log must not show a child killed by a signal
(and the harness's cleanup fails the run if the log shows any sanitizer
report, crashed child or child's non-zero exit). Also: an AUTHENTICATE
response line over 16 KiB, and LITERAL+ literals each under max_literal
that together pass the 64 MiB whole-command limit."""

import base64
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from coffer_harness import (CofferServer, LineClient, TIMEOUT_SCALE, UNDER_VALGRIND,  # noqa: E402
                            require_root, run_tests)

# memcheck's shadow memory (valgrind) or ASan's quarantine (scripts/check
# stretches timeouts for sanitizer builds) dominate a child's RSS there
RSS_SLACK_KB = 16 * 1024 if not UNDER_VALGRIND and TIMEOUT_SCALE == 1 else 1 << 30

SRCDIR = os.environ.get("COFFER_SRCDIR") or os.path.join(HERE, "..", "..")
SAMPLE = os.path.join(SRCDIR, "scripts", "sample")

MAX_LINE = 8192
MAX_LITERAL = 65536
CONFIG = {
    "max_line": "8K",
    "max_literal": "64K",
    "command_timeout": "2s",
    # instrumented builds: a TLS handshake alone can take seconds, and a
    # connection whose greeting never came is no test of anything
    "preauth_timeout": "%ds" % (4 * max(1, min(int(TIMEOUT_SCALE), 5))),
    "max_connections_per_ip": 60,
    "max_auth_failures": 100,
}

_S = None
_BYSTANDER = None


def server():
    global _S, _BYSTANDER
    if _S is None:
        s = CofferServer(instances={
            "jdcorp": {"aliases": ["jd"], "users": {"jon": "jon-pw"},
                       "imports": [("jon", "INBOX", SAMPLE), ("jon", "Archive", SAMPLE)]},
            "other": {"users": {"jon": "other-pw"}}}, config=CONFIG)
        s.__enter__()
        _S = s
        _BYSTANDER = login(s)
        _BYSTANDER.send("s SELECT INBOX\r\n")
        assert _BYSTANDER.until_tagged("s")[-1].startswith("s OK")
    return _S


def shutdown():
    global _S
    if _S is not None:
        _S.__exit__(None, None, None)
        _S = None


def greet(s, tls=True, source=None):
    c = LineClient(s.connect(tls=tls, source=source, timeout=10))
    g = c.line()
    assert g.startswith("* OK"), g
    return c


def login(s, user="jd/jon", pw="jon-pw", tls=True):
    c = greet(s, tls=tls)
    c.send('l LOGIN "%s" "%s"\r\n' % (user, pw))
    r = c.until_tagged("l")
    assert r[-1].startswith("l OK"), r
    return c


def selected(s):
    c = login(s)
    c.send("s SELECT INBOX\r\n")
    r = c.until_tagged("s")
    assert r[-1].startswith("s OK"), r
    return c


def answer(c, tag, timeout=10):
    """Lines up to the tagged answer, or up to EOF after a BYE. Returns
    (lines, closed)."""
    c.s.settimeout(timeout * TIMEOUT_SCALE)
    lines = []
    try:
        while True:
            ln = c.line()
            lines.append(ln)
            if ln.startswith(tag + " "):
                return lines, False
    except (EOFError, ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return lines, True
    except socket.timeout:
        raise AssertionError("no answer for %s within %ss; got %r" % (tag, timeout, lines))


def expect_tagged(c, tag, kinds=("BAD",), timeout=10):
    lines, closed = answer(c, tag, timeout)
    assert not closed and lines, (tag, lines, closed)
    status = lines[-1].split(" ", 2)[1] if len(lines[-1].split(" ")) > 1 else ""
    assert status in kinds, "tag %s: expected %s, got %r" % (tag, kinds, lines)
    return lines


def expect_bye(c, timeout=10):
    lines, closed = answer(c, "\x00never", timeout)
    assert closed, lines
    assert any(ln.startswith("* BYE") for ln in lines), "closed without BYE: %r" % lines
    return lines


def expect_bad_or_bye(c, tag, timeout=10):
    """A tagged BAD/NO for tag, or a BYE and a closed connection."""
    lines, closed = answer(c, tag, timeout)
    if closed:
        assert any(ln.startswith("* BYE") for ln in lines), "closed without BYE: %r" % lines
        return lines, True
    st = lines[-1].split(" ")
    assert len(st) > 1 and st[1] in ("BAD", "NO"), "tag %s: %r" % (tag, lines)
    return lines, False


def still_alive(c):
    c.send("n NOOP\r\n")
    r = c.until_tagged("n")
    assert r[-1].startswith("n OK"), r


def others_served(s):
    """The bystander (logged in since the start) and a fresh client both work."""
    c = _BYSTANDER
    c.s.settimeout(10 * TIMEOUT_SCALE)
    c.send("b FETCH 1 (UID FLAGS)\r\n")
    r = c.until_tagged("b")
    assert r[-1].startswith("b OK") and "UID" in r[0], r
    n = greet(s)
    n.send("c CAPABILITY\r\n")
    assert n.until_tagged("c")[-1].startswith("c OK")
    n.close()


def no_crash(s):
    log = s.log()
    bad = [ln for ln in log.splitlines()
           if re.search(r"died of signal|crash|AddressSanitizer|runtime error", ln, re.I)]
    assert not bad, bad


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def new_child(s, before):
    deadline = time.time() + 5
    while time.time() < deadline:
        new = set(s.child_pids()) - before
        if new:
            return new.pop()
        time.sleep(0.02)
    raise AssertionError("no new child")


# ---------------------------------------------------------------------------

def test_line_beyond_limit():
    s = server()
    for pre in (False, True):
        c = login(s) if pre else greet(s)
        c.send(b"a NOOP " + b"x" * (MAX_LINE + 100) + b"\r\n")
        ln = expect_bye(c)
        assert any("Line too long" in x for x in ln), ln
        c.close()
    # exactly at the limit is fine (line incl. CRLF <= max_line)
    c = greet(s)
    c.send(b"a NOOP " + b"x" * (MAX_LINE - 200) + b"\r\n")
    expect_tagged(c, "a", ("BAD", "OK"))
    still_alive(c)
    c.close()
    # a line with no CRLF at all, 1 MiB of it
    c = greet(s)
    try:
        c.send(b"a " + b"y" * (1 << 20))
    except OSError:
        pass
    expect_bye(c)
    c.close()
    others_served(s)


def test_literal_beyond_limit():
    s = server()
    c = login(s)
    c.send("a SEARCH TEXT {%d}\r\n" % (MAX_LITERAL + 1))
    ln = expect_tagged(c, "a", ("BAD",))
    assert "TOOBIG" in ln[-1], ln
    still_alive(c)              # a refused synchronising literal keeps the session
    # non-synchronising (LITERAL+) beyond the limit: the bytes are coming anyway
    c.send(b"b SEARCH TEXT {%d+}\r\n" % (MAX_LITERAL + 1) + b"z" * (MAX_LITERAL + 1) + b"\r\n")
    ln = expect_bye(c)
    assert any("TOOBIG" in x for x in ln), ln
    c.close()
    # before authentication only small literals are accepted
    c = greet(s)
    c.send("a LOGIN {%d}\r\n" % (MAX_LITERAL - 1))
    ln = expect_tagged(c, "a", ("BAD",))
    assert "TOOBIG" in ln[-1], ln
    still_alive(c)
    c.close()
    others_served(s)


def test_literal_4gib():
    s = server()
    for pre in (False, True):
        for n in ("4294967296", "4294967295", "18446744073709551616",
                  "99999999999999999999999999"):
            c = greet(s) if not pre else login(s)
            c.send("a LOGIN {%s}\r\n" % n if not pre else "a SEARCH TEXT {%s}\r\n" % n)
            t0 = time.monotonic()
            lines, closed = expect_bad_or_bye(c, "a")
            assert time.monotonic() - t0 < 3 * TIMEOUT_SCALE
            assert not any(x.startswith("+") for x in lines), lines
            if not closed:
                still_alive(c)
            c.close()
        # the non-synchronising form: announced, then nothing (or a little) sent
        c = greet(s) if not pre else login(s)
        c.send(b"a LOGIN {4294967296+}\r\nxxxx")
        pid = s.child_pids()
        t0 = time.monotonic()
        lines, closed = expect_bad_or_bye(c, "a", timeout=10)
        # the bytes are coming (LITERAL+), so no tagged answer: BYE once the
        # 2 s command timeout expires, naming the reason
        assert time.monotonic() - t0 < 6 * TIMEOUT_SCALE
        assert closed and any(x.startswith("* BYE [TOOBIG]") for x in lines), lines
        for p in pid:
            try:
                assert rss_kb(p) < 64 * 1024 + RSS_SLACK_KB, "child %d RSS %d kB" % (p, rss_kb(p))
            except FileNotFoundError:
                pass
        c.close()
    others_served(s)


SASL_LINE_MAX = 16384                 # cmd_auth.c: one AUTHENTICATE response line
MAX_COMMAND = max(MAX_LITERAL, 64 << 20)   # cofferd.c: whole command, literals included


def test_authenticate_response_line_beyond_limit():
    """A SASL response line over cmd_auth.c's 16 KiB: the exact tagged BAD,
    and the same connection can still authenticate; a line just under the
    limit is read (and answered as bad SASL data, not as too long)."""
    s = server()
    c = greet(s)
    c.send(b"q AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith("+"), "no SASL continuation"
    c.send(b"A" * 20000 + b"\r\n")
    lines = expect_tagged(c, "q", ("BAD",))
    assert lines[-1] == "q BAD Authentication response too long", lines
    still_alive(c)
    # just under the limit the line is taken (16,383 octets: the CR counts
    # against cmd_auth.c's 16,384-octet line buffer)
    c.send(b"r AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith("+"), "no SASL continuation"
    c.send(b"A" * (SASL_LINE_MAX - 1) + b"\r\n")
    lines, closed = answer(c, "r")
    assert not closed and lines[-1].split(" ")[1] in ("BAD", "NO"), lines
    assert "too long" not in lines[-1], lines
    # too long in its first piece: the rest of the line, sent later, is
    # discarded (not read as a command: "u" below would see its answer)
    c.send(b"t AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith("+"), "no SASL continuation"
    c.send(b"A" * (SASL_LINE_MAX + 1))
    time.sleep(0.2)
    c.send(b"AAAA\r\n")
    lines = expect_tagged(c, "t", ("BAD",))
    assert lines[-1] == "t BAD Authentication response too long", lines
    # the session goes on: a real AUTHENTICATE PLAIN on the same connection
    c.send(b"u AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith("+"), "no SASL continuation"
    c.send(base64.b64encode(b"\0jd/jon\0jon-pw") + b"\r\n")
    lines = expect_tagged(c, "u", ("OK",))
    c.send("s SELECT INBOX\r\n")
    expect_tagged(c, "s", ("OK",))
    c.close()
    others_served(s)


def literal_plus_flood(c, lit, ends_refused):
    """One SEARCH of LITERAL+ literals of len(lit) octets, streamed (one
    buffer, reused). session.c's read_command keeps the command's lines,
    CRLFs and literals and refuses the literal that would take the total
    past MAX_COMMAND. ends_refused: send through that literal; else stop
    one literal short and end the command. Returns the literals sent."""
    n = len(lit)
    total, k = 0, 0
    line = b"a SEARCH TEXT {%d+}" % n
    while True:
        assert total + len(line) + 2 <= MAX_COMMAND + 64, "line limit first"
        refused = total + len(line) + n > MAX_COMMAND
        if refused and not ends_refused:
            c.send(b"\r\n")
            return k
        if refused:
            # up to here no BYE: the limit is the whole command's, not less
            assert not readable(c, 0), "answer before the limit: %r" % c.line()
        c.send(line + b"\r\n")
        c.send(lit)
        k += 1
        if refused:
            return k
        total += len(line) + 2 + n
        line = b" TEXT {%d+}" % n


def test_literal_plus_literals_past_command_limit():
    """LITERAL+ literals each under max_literal (64 KiB here) but together
    past the 64 MiB whole-command limit: one command just under the limit
    is read whole and answered; one literal more is refused with
    `* BYE [TOOBIG] Literal too large` (no safe way back: the client
    does not wait for a "+"), and others are still served."""
    s = server()
    lit = b"z" * 65000
    c = login(s)
    t0 = time.monotonic()
    k = literal_plus_flood(c, lit, ends_refused=False)
    # read whole and parsed: a tagged answer (more than 1,024 search keys,
    # or not selected), not a BYE
    lines, closed = answer(c, "a", timeout=60)
    assert not closed and lines[-1].split(" ")[1] in ("BAD", "NO"), lines[-3:]
    assert not any(x.startswith("* BYE") for x in lines), lines[-3:]
    still_alive(c)
    c.close()
    c = login(s)
    k2 = literal_plus_flood(c, lit, ends_refused=True)
    assert k2 == k + 1, (k, k2)
    lines = expect_bye(c, timeout=60)
    assert "* BYE [TOOBIG] Literal too large" in lines, lines
    assert not any(x.startswith("a ") for x in lines), lines
    c.close()
    print("  %d literals of %d octets read, literal %d refused (%.1fs)"
          % (k, len(lit), k2, time.monotonic() - t0))
    others_served(s)


def test_deep_nesting():
    s = server()
    c = selected(s)
    cases = [
        # (all within max_line = 8K, so it is the nesting that is refused)
        "a SEARCH " + "(" * 3500 + "ALL" + ")" * 3500,
        "b FETCH 1 " + "(" * 2000 + "FLAGS" + ")" * 2000,
        "c SEARCH " + "NOT " * 1500 + "ALL",
        "d SEARCH " + "OR ALL " * 1000 + "ALL",
        "e FETCH 1 (BODY[HEADER.FIELDS " + "(" * 1000 + "Subject" + ")" * 1000 + "])",
        "f LIST " + "(" * 1000 + ' "" "*"',
        "g SEARCH " + "(" * 4000,          # unbalanced
        "h FETCH 1 " + ")" * 100,
    ]
    for line in cases:
        tag = line.split(" ", 1)[0]
        c.send(line + "\r\n")
        lines = expect_tagged(c, tag, ("BAD",))
        assert not any(x.startswith("* SEARCH") or "FETCH (" in x for x in lines), lines
    # more SEARCH keys than the 1,024 allowed (within max_line)
    c.send("k SEARCH " + "ALL " * 1100 + "\r\n")
    lines = expect_tagged(c, "k", ("BAD",))
    assert "too many" in lines[-1], lines
    # nesting within the limit still works
    c.send("i SEARCH " + "(" * 10 + "ALL" + ")" * 10 + "\r\n")
    r = expect_tagged(c, "i", ("OK",))
    assert r[0].startswith("* SEARCH 1"), r
    still_alive(c)
    c.close()
    others_served(s)


def readable(c, timeout):
    """True once c has something to read (buffered, in TLS or on the
    socket) within timeout seconds: select() instead of a blind sleep."""
    if c.buf or (hasattr(c.s, "pending") and c.s.pending()):
        return True
    r, _, _ = select.select([c.s], [], [], timeout)
    return bool(r)


def test_slowloris_one_byte_per_second():
    """One byte a second: the command timeout (2 s here) ends the session
    with the server's own `* BYE Timeout reading command` (session.c
    read_command), before or after login, and the client is not served."""
    s = server()
    for pre in (True, False):
        c = greet(s) if pre else login(s)
        t0 = time.monotonic()
        lines, closed, sent = [], False, 0
        for ch in b"a NOOP\r\n":
            try:
                c.send(bytes([ch]))
                sent += 1
            except OSError:
                closed = True
                break
            # wait a second for the next drip, but read whatever the server says
            if readable(c, 1.0):
                lines, closed = answer(c, "a", timeout=6)
                break
            if time.monotonic() - t0 > 8 * TIMEOUT_SCALE:
                break
        dt = time.monotonic() - t0
        # command_timeout = 2 s: dropped by the per-line deadline, not served
        assert closed, (pre, sent, lines)
        assert "* BYE Timeout reading command" in lines, (pre, sent, lines)
        assert not any(x.startswith("a ") for x in lines), lines
        assert sent < len(b"a NOOP\r\n"), "the whole command went out: %d bytes" % sent
        assert dt < 6 * TIMEOUT_SCALE, "dripping client kept %.1fs" % dt
        c.close()
        others_served(s)


def test_slow_handshake_silent_client_and_slow_literal():
    s = server()
    hello = client_hello()
    # a ClientHello dripped at 2 bytes/s: the handshake is bounded by the
    # pre-auth timeout (4 s, scaled), not by the client's patience
    raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=15)
    t0 = time.monotonic()
    try:
        for b in hello:
            raw.sendall(bytes([b]))
            time.sleep(0.5)
            if time.monotonic() - t0 > 12:
                break
        raw.recv(10)
    except OSError:
        pass
    dt = time.monotonic() - t0
    raw.close()
    assert dt < 8 * TIMEOUT_SCALE, "slow ClientHello kept %.1fs" % dt
    # a TCP connection to the TLS port that never says anything
    raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=15 * TIMEOUT_SCALE)
    t0 = time.monotonic()
    try:
        assert raw.recv(10) == b""
    except ConnectionResetError:
        pass
    dt = time.monotonic() - t0
    raw.close()
    assert 3 < dt < 8 * TIMEOUT_SCALE, "silent TLS client kept %.1fs" % dt
    # a literal dripped at 2 bytes/s after login: BYE at the command timeout
    c = login(s)
    c.send("a SEARCH TEXT {50}\r\n")
    assert c.line().startswith("+")
    t0 = time.monotonic()
    try:
        for _ in range(50):
            c.send("x")
            time.sleep(0.5)
            if time.monotonic() - t0 > 8:
                break
    except OSError:
        pass
    lines, closed = answer(c, "a", timeout=8)
    dt = time.monotonic() - t0
    assert closed and any(x.startswith("* BYE") and "Timeout" in x for x in lines), lines
    assert dt < 6 * TIMEOUT_SCALE, dt
    c.close()
    others_served(s)


def test_hostile_input_during_idle():
    s = server()
    for payload, want in ((b"garbage\r\n", "BAD"), (b"DONE\xff\r\n", "BAD"),
                          (b"DONE\x00\r\n", "BAD"), (b"DONE DONE\r\n", "BAD"),
                          (b"a NOOP\r\n", "BAD"), (b"done\r\n", "OK")):
        c = selected(s)
        c.send("i IDLE\r\n")
        assert c.line().startswith("+ "), "no IDLE continuation"
        c.send(payload)
        expect_tagged(c, "i", (want,))
        still_alive(c)
        c.close()
    # a long line instead of DONE, and a DONE dripped past the command timeout
    c = selected(s)
    c.send("i IDLE\r\n")
    assert c.line().startswith("+ ")
    try:
        c.send(b"x" * 20000)
    except OSError:
        pass
    ln = expect_bye(c)
    assert any("too long" in x for x in ln), ln
    c.close()
    c = selected(s)
    c.send("i IDLE\r\n")
    assert c.line().startswith("+ ")
    t0 = time.monotonic()
    c.send("DO")
    ln = expect_bye(c, timeout=10)
    assert any("Timeout" in x for x in ln), ln
    assert time.monotonic() - t0 < 6 * TIMEOUT_SCALE
    c.close()
    others_served(s)


def test_pipelined_flood_bounded_memory():
    """Thousands of FETCHes, responses never read: the child must stop
    reading (its writes block) rather than queue output without bound."""
    s = server()
    before = set(s.child_pids())
    c = selected(s)
    pid = new_child(s, before)
    base = rss_kb(pid)
    cmd = b"".join(b"f%d UID FETCH 1:* (BODY.PEEK[] FLAGS)\r\n" % i for i in range(1000))
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_kb(pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.02)
    w = threading.Thread(target=watch)
    w.start()
    sent = 0
    c.s.settimeout(3)
    blocked = False
    try:
        # kernel buffers on both sides hold some MB; past that the
        # server must have stopped reading
        while sent < 1500000:
            c.s.sendall(cmd)
            sent += 1000
    except socket.timeout:
        blocked = True
    except OSError:
        blocked = True      # the server gave up on us (write timeout): also bounded
    time.sleep(1.0)
    stop.set()
    w.join()
    c.close()
    assert blocked, "server consumed %d pipelined FETCHes without us reading" % sent
    assert peak[0] - base < RSS_SLACK_KB, "child RSS grew from %d to %d kB" % (base, peak[0])
    print("  flood: %d commands sent before blocking; RSS %d -> %d kB" % (sent, base, peak[0]))
    # the flooded child is gone within command_timeout (blocked write) + slack
    deadline = time.time() + 8 * TIMEOUT_SCALE
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.1)
    assert not os.path.exists("/proc/%d" % pid), "flooded child %d still there" % pid
    others_served(s)


def test_compress_bomb():
    """COMPRESS=DEFLATE, then ~256 MiB of one byte, deflated to a few hundred
    KB: the child inflates only up to max_line and says BYE, RSS bounded."""
    import zlib
    s = server()
    before = set(s.child_pids())
    c = login(s)
    pid = new_child(s, before)
    base = rss_kb(pid)
    c.send("z COMPRESS DEFLATE\r\n")
    assert c.until_tagged("z")[-1].startswith("z OK")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    dec = zlib.decompressobj(-15)
    chunk = comp.compress(b"a NOOP " + b"x" * (1 << 20))
    peak = base
    got = b""
    c.s.settimeout(5)
    try:
        c.s.sendall(chunk)
        for _ in range(256):
            c.s.sendall(comp.compress(b"x" * (1 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH))
            try:
                peak = max(peak, rss_kb(pid))
            except FileNotFoundError:
                break
    except OSError:
        pass                   # the server closed on us: expected
    try:
        while True:
            d = c.s.recv(65536)
            if not d:
                break
            got += dec.decompress(d)
    except (OSError, zlib.error):
        pass
    c.close()
    assert b"* BYE" in got and b"too long" in got, got[-200:]
    assert peak - base < RSS_SLACK_KB, "child RSS %d -> %d kB" % (base, peak)
    others_served(s)


def test_pipelined_noops_are_all_answered():
    s = server()
    c = login(s)
    n = 3000
    c.send(b"".join(b"p%d NOOP\r\n" % i for i in range(n)))
    got = 0
    while got < n:
        ln = c.line()
        if ln.startswith("p") and " OK" in ln:
            assert ln.startswith("p%d OK" % got), (got, ln)
            got += 1
    still_alive(c)
    c.close()


def openssl_renegotiate(s):
    """Log in through `openssl s_client`, then ask it to renegotiate (its
    "R" command) and send a NOOP. Driven by what s_client prints, not by
    sleeps: logged in first, so no pre-auth deadline runs out while a slow
    (memcheck) server handshakes. Returns everything s_client printed."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.tls_port,
                          "-tls1_2", "-servername", "localhost"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = []
    cv = threading.Condition()

    def reader():
        for ln in iter(p.stdout.readline, b""):
            with cv:
                out.append(ln.decode(errors="replace"))
                cv.notify_all()
        with cv:
            out.append("\x00EOF")
            cv.notify_all()

    def wait_for(pred, timeout):
        with cv:
            return cv.wait_for(lambda: pred("".join(out)) or "\x00EOF" in out,
                               timeout * TIMEOUT_SCALE) and pred("".join(out))

    def send(b):
        try:
            p.stdin.write(b)
            p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        assert wait_for(lambda o: "* OK" in o, 10), "no greeting: %s" % "".join(out)
        send(b'l LOGIN "jd/jon" "jon-pw"\r\n')
        assert wait_for(lambda o: "l OK" in o, 10), "no login: %s" % "".join(out)
        send(b"R\n")
        # the refusal: an alert from the server, or the connection gone
        wait_for(lambda o: "RENEGOTIATING" in o and ("alert" in o or "error" in o), 10)
        send(b"a NOOP\r\n")
        wait_for(lambda o: "a OK" in o, 1)
        try:
            p.stdin.close()         # s_client quits at EOF if still connected
        except BrokenPipeError:
            pass
        p.wait(timeout=10 * TIMEOUT_SCALE)
        t.join(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return "".join(out)


def test_tls_renegotiation_refused():
    s = server()
    out = openssl_renegotiate(s)
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out, out
    assert "* OK" in out, out
    assert "RENEGOTIATING" in out, out
    # refused: the server answers the renegotiation with an alert (no_renegotiation
    # or a failure) and the NOOP after it is never served
    assert "a OK" not in out, out
    assert "no renegotiation" in out, out
    others_served(s)


def client_hello():
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_disconnect_mid_literal_and_mid_handshake():
    s = server()
    # mid-literal, before and after login
    c = greet(s)
    c.send("a LOGIN {10}\r\n")
    assert c.line().startswith("+"), "no continuation"
    c.send("jd/")
    c.close()
    c = login(s)
    c.send("a SEARCH TEXT {1000}\r\n")
    assert c.line().startswith("+")
    c.send("x" * 500)
    c.close()
    c = login(s)
    c.send(b"a SEARCH TEXT {1000+}\r\n" + b"x" * 10)
    c.close()
    # mid-handshake: half a ClientHello, then a reset
    hello = client_hello()
    assert len(hello) > 100 and hello[0] == 0x16, hello[:8]
    for cut in (1, 5, len(hello) // 2, len(hello) - 1):
        raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=5)
        raw.sendall(hello[:cut])
        raw.close()
    # STARTTLS then vanish before the ClientHello / mid ClientHello
    for cut in (0, 30):
        c = greet(s, tls=False)
        c.send("t STARTTLS\r\n")
        assert c.until_tagged("t")[-1].startswith("t OK")
        if cut:
            c.s.sendall(hello[:cut])
        c.close()
    # a complete handshake, then a RST instead of a close_notify
    raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=5)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t = s.ssl_context().wrap_socket(raw, server_hostname="localhost")
    t.recv(100)
    t.sendall(b"a LOGIN {5}\r\n")
    t.close()           # SO_LINGER 0: the kernel sends an RST
    # every abandoned child exits at once (EOF), not at a timeout: only
    # the bystander's child remains
    assert s.wait_children(1, timeout=1.5), s.child_pids()
    others_served(s)


def test_garbage_before_client_hello():
    s = server()
    hello = client_hello()
    for junk in (b"GET / HTTP/1.0\r\n\r\n", b"\x00" * 64, b"a LOGIN x y\r\n",
                 os.urandom(4096), b"\x16\x03\x01\xff\xff" + b"\x00" * 100):
        raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=5)
        try:
            raw.sendall(junk + hello)
            data = b""
            while True:
                d = raw.recv(4096)
                if not d:
                    break
                data += d
                if len(data) > 65536:
                    break
        except OSError:
            data = b""
        finally:
            raw.close()
        # never a ServerHello after garbage: at most an alert record, then close
        assert not data or data[0] == 0x15, (junk[:16], data[:16])
        assert b"* OK" not in data
    others_served(s)


def test_starttls_twice_and_on_tls_port():
    s = server()
    c = greet(s, tls=False)
    c.send("t STARTTLS\r\n")
    assert c.until_tagged("t")[-1].startswith("t OK")
    c.s = s.ssl_context().wrap_socket(c.s, server_hostname="localhost")
    c.send("u STARTTLS\r\n")
    expect_tagged(c, "u", ("BAD", "NO"))
    c.send('l LOGIN "jd/jon" "jon-pw"\r\n')
    assert c.until_tagged("l")[-1].startswith("l OK")
    c.send("v STARTTLS\r\n")
    expect_tagged(c, "v", ("BAD", "NO"))
    still_alive(c)
    c.close()
    c = greet(s, tls=True)
    c.send("t STARTTLS\r\n")
    expect_tagged(c, "t", ("BAD", "NO"))
    still_alive(c)
    c.close()
    # two STARTTLS pipelined in one packet: the second is plaintext
    # injection and must be discarded, not answered inside TLS
    c = greet(s, tls=False)
    c.send("t STARTTLS\r\nu STARTTLS\r\n")
    assert c.until_tagged("t")[-1].startswith("t OK")
    c.s = s.ssl_context().wrap_socket(c.s, server_hostname="localhost")
    c.send("w NOOP\r\n")
    r = c.until_tagged("w")
    assert r[-1].startswith("w OK") and not any(x.startswith("u ") for x in r), r
    c.close()
    others_served(s)


def test_commands_in_wrong_state():
    s = server()
    c = greet(s)
    for cmd in ("SELECT INBOX", "EXAMINE INBOX", "LIST \"\" *", "LSUB \"\" *",
                "STATUS INBOX (MESSAGES)", "FETCH 1 FLAGS", "UID FETCH 1 FLAGS",
                "SEARCH ALL", "CLOSE", "UNSELECT", "EXPUNGE", "IDLE", "CHECK",
                "NAMESPACE", "GETQUOTAROOT INBOX", "ENABLE CONDSTORE",
                "COPY 1 INBOX", "STORE 1 +FLAGS (\\Seen)"):
        c.send("w %s\r\n" % cmd)
        lines = expect_tagged(c, "w", ("BAD", "NO"))
        assert not any(x.startswith(("* LIST", "* FLAGS", "* SEARCH", "* STATUS",
                                     "* NAMESPACE", "+")) for x in lines), (cmd, lines)
    still_alive(c)
    c.close()
    c = login(s)
    for cmd in ("FETCH 1 FLAGS", "UID FETCH 1:* FLAGS", "SEARCH ALL", "CLOSE",
                "EXPUNGE", "STORE 1 +FLAGS (\\Seen)", "COPY 1 INBOX",
                'LOGIN "jd/jon" "jon-pw"', "AUTHENTICATE PLAIN", "STARTTLS",
                "UID SEARCH ALL"):
        c.send("w %s\r\n" % cmd)
        lines = expect_tagged(c, "w", ("BAD", "NO"))
        assert not any(x.startswith(("* SEARCH", "+")) or " FETCH " in x for x in lines), \
            (cmd, lines)
    # writes are refused on the read-only archive, even when selected
    c.send("s SELECT INBOX\r\n")
    assert c.until_tagged("s")[-1].startswith("s OK")
    for cmd in ("CREATE Foo", "DELETE INBOX", "RENAME INBOX Bar", "EXPUNGE",
                "APPEND INBOX {3}", "COPY 1 Archive", "MOVE 1 Archive",
                "UID EXPUNGE 1"):
        c.send("w %s\r\n" % cmd)
        lines = expect_tagged(c, "w", ("BAD", "NO"))
        assert not any(x.startswith("+") or "EXPUNGE" in x.split(" ")[2:3] for x in lines), \
            (cmd, lines)
    c.send("f FETCH 1:* (UID)\r\n")
    r = c.until_tagged("f")
    assert r[-1].startswith("f OK") and len(r) == 7, r      # six messages, none gone
    c.close()
    others_served(s)


def test_eight_bit_and_nul_in_every_argument():
    s = server()
    templates = [
        'LOGIN "{A}" "jon-pw"', 'LOGIN jd/jon {A}', 'LOGIN {A} {A}',
        'AUTHENTICATE {A}', 'CAPABILITY {A}', 'ID ("name" "{A}")', '{A} NOOP',
    ]
    auth_templates = [
        'SELECT "{A}"', 'SELECT {A}', 'EXAMINE {A}', 'LIST "{A}" "*"', 'LIST "" "{A}"',
        'STATUS {A} (MESSAGES)', 'STATUS INBOX ({A})', 'ENABLE {A}', 'ID ("{A}" NIL)',
        'NAMESPACE {A}', 'GETQUOTAROOT {A}', 'LIST ({A}) "" "*"',
    ]
    sel_templates = [
        'FETCH {A} FLAGS', 'FETCH 1 ({A})', 'FETCH 1 BODY[{A}]',
        'FETCH 1 BODY[HEADER.FIELDS ({A})]', 'SEARCH {A}', 'SEARCH SUBJECT "{A}"',
        'SEARCH CHARSET {A} ALL', 'SEARCH HEADER {A} x', 'SEARCH SINCE {A}',
        'UID {A} 1', 'UID FETCH {A} UID', 'STORE 1 FLAGS ({A})', 'SEARCH TEXT {A}',
        'FETCH 1 BINARY[{A}]', 'SEARCH RETURN ({A}) ALL',
    ]
    payloads = [b"\x00", b"a\x00b", b"\xff\xfe", b"\x80", b"\xc3\xa9", b"\r", b"\x1b[2J"]
    for state, tmpls in (("pre", templates), ("auth", auth_templates), ("sel", sel_templates)):
        c = {"pre": greet, "auth": login, "sel": selected}[state](s)
        for t in tmpls:
            for p in payloads:
                line = t.encode().replace(b"{A}", p)
                tag = b"x"
                c.send(tag + b" " + line + b"\r\n")
                lines, closed = answer(c, "x")
                assert not closed, (line, lines)
                # a NUL or bare CR anywhere is a syntax error; 8-bit text in
                # a quoted string may be legal (then NO/OK), never a crash
                st = lines[-1].split(" ")[1] if lines and " " in lines[-1] else ""
                if b"\x00" in p or p == b"\r":
                    assert st == "BAD" or (lines[-1].startswith("* BAD")), (line, lines)
                else:
                    assert st in ("BAD", "NO", "OK"), (line, lines)
                if state == "pre":
                    assert st != "OK" or not t.startswith("LOGIN"), (line, lines)
                # a stray untagged BAD (unparsable tag) must not hang us
                if lines and lines[-1].startswith("* BAD"):
                    pass
            still_alive(c)
        # a literal carrying NUL: RFC 3501 forbids NUL in literals
        if state == "sel":
            c.send(b"y SEARCH TEXT {3}\r\n")
            assert c.line().startswith("+")
            c.send(b"a\x00b\r\n")
            lines, closed = answer(c, "y")
            assert not closed and lines[-1].split(" ")[1] in ("BAD", "NO", "OK"), lines
        still_alive(c)
        c.close()
    # 8-bit, NUL and non-base64 bytes as a SASL continuation
    c = greet(s)
    for resp in (b"\xff\xfe", b"\x00", b"AG\x00Fi", b"=====", b"A" * 5000):
        c.send(b"q AUTHENTICATE PLAIN\r\n")
        assert c.line().startswith("+"), "no SASL continuation"
        c.send(resp + b"\r\n")
        lines, closed = answer(c, "q")
        assert not closed and lines[-1].split(" ")[1] in ("BAD", "NO"), (resp[:10], lines)
    still_alive(c)
    # a tag longer than the 64-octet limit, and tags with IMAP specials
    for tag in (b"t" * 100, b"a{", b"a*", b"a%", b'a"', b"+", b"a(b"):
        c.send(tag + b" NOOP\r\n")
        ln = c.line()
        assert ln.startswith("* BAD") or ln.split(" ")[1] == "BAD", (tag, ln)
    still_alive(c)
    c.close()
    # a tag made of 8-bit / NUL bytes gets an untagged BAD
    c = greet(s)
    for tag in (b"\xff", b"\x00", b"a\x00", b"\xc3\xa9"):
        c.send(tag + b" NOOP\r\n")
        ln = c.line()
        assert ln.startswith("* BAD") or ln.split(" ")[1] == "BAD", (tag, ln)
    still_alive(c)
    c.close()
    others_served(s)


def list_names(lines):
    out = []
    for ln in lines:
        m = re.match(r'\* LIST \([^)]*\) (?:"."|NIL) (.*)$', ln)
        if m:
            out.append(m.group(1).strip('"'))
    return out


def test_hostile_mailbox_names():
    s = server()
    c = login(s)
    c.send('a LIST "" "*"\r\n')
    mine = sorted(list_names(c.until_tagged("a")))
    assert "INBOX" in mine and "Archive" in mine, mine
    for name in ('".."', '"../other"', '"../../instances/other/INBOX"', '"/"', '"/etc/passwd"',
                 '"INBOX/.."', '"INBOX/../Archive"', '"./INBOX"', '"%"', '"*"', '"INBOX*"',
                 '"INBOX%"', '"Users/../INBOX"', '"Users/%"', '"Users/*"', '"~jon"',
                 '"#shared"', '"INBOX/"', '"/INBOX"', '"Archive//"', '""', '"INBOX\\\\"'):
        for cmd in ("SELECT", "EXAMINE", "STATUS"):
            tail = " (MESSAGES)" if cmd == "STATUS" else ""
            c.send("m %s %s%s\r\n" % (cmd, name, tail))
            lines = expect_tagged(c, "m", ("NO", "BAD"))
            assert not any(x.startswith(("* STATUS", "* FLAGS")) or " EXISTS" in x
                           for x in lines), (cmd, name, lines)
    # LIST with hostile reference / pattern: only our own names, nothing invented
    for ref, pat in (('""', '"../*"'), ('"../"', '"*"'), ('"/"', '"*"'), ('".."', '"%"'),
                     ('""', '"/*"'), ('""', '"*/../*"'), ('"Users/"', '"../*"'),
                     ('""', '"**%%**%%"' * 1), ('""', '"%/%/%/%/%/%/%/%/%/%/%/%/%"'),
                     ('""', '"' + "*%" * 200 + '"')):
        c.send("l LIST %s %s\r\n" % (ref, pat))
        lines, closed = answer(c, "l")
        assert not closed and lines[-1].split(" ")[1] in ("OK", "NO", "BAD"), lines
        for n in list_names(lines):
            assert n in mine or n.startswith("Users/"), (ref, pat, n)
            assert ".." not in n and "other" not in n, (ref, pat, n)
    # a pathological pattern is answered quickly (no exponential matching)
    t0 = time.monotonic()
    c.send('p LIST "" "' + "*a" * 60 + 'b"\r\n')
    lines = expect_tagged(c, "p", ("OK", "BAD", "NO"))
    assert time.monotonic() - t0 < 3 * TIMEOUT_SCALE
    still_alive(c)
    c.close()
    others_served(s)


def test_bad_modified_utf7():
    s = server()
    c = login(s)
    # &-shifted sequences that are not valid modified UTF-7 (RFC 3501 5.1.3):
    # unterminated, ASCII encoded in base64, bad base64, odd bit counts,
    # adjacent encoded runs, lone surrogates, invalid characters after '&'.
    bad = ["&", "&Jjo", "&AGE-", "&ZeVnLIqe", "&U,BTFw-&ZeVnLIqe-", "&2D0-", "&3gA-",
           "&!!-", "&AAA-", "&Jj-", "INBOX&", "&ANw", "&-&", "&AC8-", "&AD0A-"]
    for name in bad:
        for cmd, tail in (("SELECT", ""), ("EXAMINE", ""), ("STATUS", " (MESSAGES)")):
            c.send('u %s "%s"%s\r\n' % (cmd, name, tail))
            lines = expect_tagged(c, "u", ("NO", "BAD"))
            assert not any(" EXISTS" in x or x.startswith("* STATUS") for x in lines), \
                (cmd, name, lines)
        c.send('v LIST "" "%s"\r\n' % name)
        lines = expect_tagged(c, "v", ("OK", "NO", "BAD"))
        assert not list_names(lines), (name, lines)
    # 8-bit (raw UTF-8) mailbox names are not modified UTF-7 either
    c.send('w SELECT "Entw\xc3\xbcrfe"\r\n'.encode("latin-1"))
    expect_tagged(c, "w", ("NO", "BAD"))
    # the valid encoding of an existing name still works
    c.send('x SELECT "&-"\r\n')
    expect_tagged(c, "x", ("NO",))           # "&" itself: valid, not present
    c.send("y SELECT Archive\r\n")
    expect_tagged(c, "y", ("OK",))
    still_alive(c)
    c.close()
    others_served(s)


def test_no_child_crashed():
    s = server()
    others_served(s)
    time.sleep(0.5)
    no_crash(s)
    assert s.proc.poll() is None, "cofferd parent exited"


if __name__ == "__main__":
    require_root()
    try:
        run_tests(globals(), sys.argv[1:] or None)
    finally:
        shutdown()
