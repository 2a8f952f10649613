#!/usr/bin/env python3
"""cofferd authentication: login by id and alias, PLAIN/LOGIN/SCRAM-SHA-256
(SASL-IR and continuations), authzid policy, uniform failures (responses
and timings), failure limit, per-IP penalty."""

import base64
import imaplib
import math
import os
import random
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coffer_harness import (CofferServer, LineClient, UNDER_VALGRIND, require_root,  # noqa: E402
                            run_tests)
from imap_sasl import ScramClient, plain  # noqa: E402

rng = random.Random(int(os.environ.get("COFFER_TEST_SEED") or 0) or None)

INSTANCES = {
    "jdcorp": {"aliases": ["jd", "jd-archive"],
               "users": {"jon.doe": "s3cret pass",
                         "boss": {"password": "b0ss", "admin": True},
                         "gone": {"password": "gone-pw", "disabled": True}}},
    "other": {"users": {"boss": {"password": "other-b0ss", "admin": True},
                        "eve": "eve-pw"}},
    "closed": {"aliases": ["cl"], "users": {"amy": "amy-pw"}, "disabled": True},
}


def server(**config):
    return CofferServer(instances=INSTANCES, config=config)


def b64(b):
    return base64.b64encode(b).decode() or "="


def greet(s, source=None):
    c = LineClient(s.connect(tls=True, source=source))
    g = c.line()
    assert g.startswith("* OK"), g
    return c


def norm(lines):
    """Responses with the tag and volatile SCRAM data normalised."""
    out = []
    for ln in lines:
        ln = re.sub(r"^[A-Za-z0-9]+ ", "TAG ", ln) if not ln.startswith(("*", "+")) else ln
        out.append(ln)
    return out


def attempt_login(s, user, pw):
    c = greet(s)
    t0 = time.monotonic()
    c.send('a LOGIN "%s" "%s"\r\n' % (user, pw))
    lines = c.until_tagged("a")
    dt = time.monotonic() - t0
    c.close()
    return norm(lines), dt


def attempt_plain_ir(s, user, pw):
    c = greet(s)
    t0 = time.monotonic()
    c.send("a AUTHENTICATE PLAIN %s\r\n" % b64(plain(user, pw)))
    lines = c.until_tagged("a")
    dt = time.monotonic() - t0
    c.close()
    return norm(lines), dt


def attempt_scram(s, user, pw):
    """Returns (normalised lines, time, server-first attributes)."""
    c = greet(s)
    sc = ScramClient(user, pw)
    t0 = time.monotonic()
    c.send("a AUTHENTICATE SCRAM-SHA-256 %s\r\n" % b64(sc.first()))
    lines = []
    attrs = None
    while True:
        ln = c.line()
        if ln.startswith("+"):
            chal = base64.b64decode(ln[2:] if len(ln) > 1 else "")
            if attrs is None:
                attrs = dict(kv.split("=", 1) for kv in chal.decode().split(","))
                lines.append("+ server-first")
                c.send(b64(sc.final(chal)) + "\r\n")
            else:
                lines.append("+ server-final")
                sc.verify(chal)
                c.send("\r\n")
            continue
        lines.append(ln)
        if ln.startswith("a "):
            break
    dt = time.monotonic() - t0
    c.close()
    return norm(lines), dt, attrs


def test_login_by_id_and_alias_any_case():
    with server() as s:
        for name in ("jdcorp/jon.doe", "jd/jon.doe", "JD-Archive/Jon.Doe", "JDCORP/JON.DOE"):
            m = s.login(name, "s3cret pass")
            assert m.state == "AUTH", (name, m.state)
            m.logout()
        assert "login jdcorp/jon.doe" in s.log()


def test_authenticate_plain_ir_and_continuation():
    with server() as s:
        c = greet(s)
        c.send("a AUTHENTICATE PLAIN %s\r\n" % b64(plain("jd/jon.doe", "s3cret pass")))
        r = c.until_tagged("a")
        assert r[-1].startswith("a OK"), r
        c.close()
        c = greet(s)
        c.send("b AUTHENTICATE PLAIN\r\n")
        ln = c.line()
        assert ln.startswith("+"), ln
        c.send(b64(plain("jdcorp/jon.doe", "s3cret pass")) + "\r\n")
        r = c.until_tagged("b")
        assert r[-1].startswith("b OK"), r
        c.close()


def test_authenticate_login_mechanism():
    with server() as s:
        m = s.imap()
        answers = iter([b"jd/jon.doe", b"s3cret pass"])
        typ, _ = m.authenticate("LOGIN", lambda chal: next(answers))
        assert typ == "OK"
        m.logout()


def test_scram_sha256_login_and_server_signature():
    with server() as s:
        m = s.imap()
        sc = ScramClient("jd/jon.doe", "s3cret pass")
        typ, _ = m.authenticate("SCRAM-SHA-256", sc.imaplib_callback())
        assert typ == "OK"
        assert sc.server_verified, "server signature (v=) did not verify"
        assert sc.iterations >= 4096 and len(sc.salt) == 16
        m.logout()
        m = s.imap()
        sc = ScramClient("jd/jon.doe", "wrong")
        try:
            m.authenticate("SCRAM-SHA-256", sc.imaplib_callback())
            raise AssertionError("SCRAM with a wrong password succeeded")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e), e


def test_scram_fake_secret_looks_real_and_is_stable():
    with server() as s:
        _, _, real = attempt_scram(s, "jdcorp/jon.doe", "x")
        _, _, fake1 = attempt_scram(s, "jdcorp/nobody", "x")
        _, _, fake2 = attempt_scram(s, "jdcorp/nobody", "x")
        _, _, fake3 = attempt_scram(s, "nosuch/nobody", "x")
        for a in (real, fake1, fake3):
            assert a["i"] == real["i"]
            assert len(base64.b64decode(a["s"])) == len(base64.b64decode(real["s"]))
        assert fake1["s"] == fake2["s"], "fake salt changes between attempts"
        assert fake1["s"] != fake3["s"]


# Timing verdict: every failure case against "wrong password", measured in
# the same round (paired), so that load drifting during the test cancels
# out. The tolerance comes from the measurement: three standard errors of
# the median paired difference, at least TIMING_FLOOR, never more than
# TIMING_CAP (below the 200 ms failure delay, so a case that skips the
# delay always fails). While the noise alone would need more than the cap,
# more rounds are measured (up to TIMING_MAX_ROUNDS) - the measurement is
# repeated, never the verdict.
TIMING_ROUNDS = 8 if not UNDER_VALGRIND else 3   # memcheck: sequences only
TIMING_MAX_ROUNDS = 32
TIMING_FLOOR = 0.05
TIMING_CAP = 0.15


def timing_verdict(times, ref):
    """times: case -> [seconds per round]. Returns (ok, tolerance, detail)
    or None while the noise is too high to judge."""
    n = len(times[ref])
    worst = 0.0
    detail = {}
    diffs = {}
    for case, ts in times.items():
        if case == ref:
            continue
        d = [a - b for a, b in zip(ts, times[ref])]
        med = statistics.median(d)
        mad = statistics.median(abs(x - med) for x in d)
        se = 1.253 * 1.4826 * mad / math.sqrt(n)
        worst = max(worst, 3 * se)
        diffs[case] = med
    tol = max(TIMING_FLOOR, worst)
    if tol > TIMING_CAP:
        if n < TIMING_MAX_ROUNDS:
            return None
        tol = TIMING_CAP
    for case, med in diffs.items():
        detail[case] = "%+.0fms" % (1000 * med)
    return all(abs(m) < tol for m in diffs.values()), tol, detail


def test_uniform_failures_responses_and_timing():
    with server(auth_failure_delay="200ms") as s:
        cases = {
            "unknown instance": ("nosuch/jon.doe", "s3cret pass"),
            "unknown user": ("jdcorp/nobody", "s3cret pass"),
            "disabled user": ("jdcorp/gone", "gone-pw"),
            "disabled instance": ("cl/amy", "amy-pw"),
            "wrong password": ("jdcorp/jon.doe", "not it"),
        }
        order = list(cases)
        for fn in (attempt_login, attempt_plain_ir, attempt_scram):
            seqs, times = {}, {}
            verdict = None
            while verdict is None:
                for _round in range(TIMING_ROUNDS):
                    rng.shuffle(order)
                    for case in order:
                        u, p = cases[case]
                        r = fn(s, u, p)
                        seqs.setdefault(case, r[0])
                        assert r[0] == seqs[case], (fn.__name__, case, r[0], seqs[case])
                        times.setdefault(case, []).append(r[1])
                if UNDER_VALGRIND:
                    break   # memcheck distorts timings; the sequences still count
                verdict = timing_verdict(times, "wrong password")
            ref = seqs["wrong password"]
            assert ref[-1].startswith("TAG NO [AUTHENTICATIONFAILED]"), ref
            for case, seq in seqs.items():
                assert seq == ref, "%s: %s differs: %r vs %r" % (fn.__name__, case, seq, ref)
            med = {c: statistics.median(t) for c, t in times.items()}
            print("  %s medians over %d rounds: %s" % (
                fn.__name__, len(times["wrong password"]),
                ", ".join("%s=%.0fms" % (c, 1000 * v) for c, v in med.items())))
            # the failure delay is paid, every time
            assert min(min(t) for t in times.values()) >= 0.15, times
            if verdict is None:
                continue
            ok, tol, detail = verdict
            print("  %s paired difference to a wrong password (tolerance %.0f ms): %s" % (
                fn.__name__, tol * 1000, detail))
            assert ok, "%s timing differs (tolerance %.0f ms): %r" % (fn.__name__, tol * 1000,
                                                                      detail)


def test_authzid_only_admin_of_same_instance():
    with server() as s:
        def plain_as(authc, pw, authz):
            c = greet(s)
            c.send("a AUTHENTICATE PLAIN %s\r\n" % b64(plain(authc, pw, authz)))
            r = c.until_tagged("a")
            c.close()
            return r[-1]
        assert plain_as("jdcorp/boss", "b0ss", "jd/jon.doe").startswith("a OK")
        assert "audit:" in s.log()
        assert plain_as("jdcorp/jon.doe", "s3cret pass", "jdcorp/boss").startswith("a NO")
        assert plain_as("other/boss", "other-b0ss", "jdcorp/jon.doe").startswith("a NO")
        # SCRAM carries the authzid in its GS2 header; the same policy applies.
        m = s.imap()
        sc = ScramClient("jdcorp/boss", "b0ss", authzid="jdcorp/jon.doe")
        assert m.authenticate("SCRAM-SHA-256", sc.imaplib_callback())[0] == "OK"
        m.logout()
        m = s.imap()
        sc = ScramClient("other/eve", "eve-pw", authzid="other/boss")
        try:
            m.authenticate("SCRAM-SHA-256", sc.imaplib_callback())
            raise AssertionError("non-admin authorised as another user")
        except imaplib.IMAP4.error:
            pass


def test_too_many_failures_bye():
    with server(max_auth_failures=2, auth_failure_delay="50ms") as s:
        c = greet(s)
        c.send('a LOGIN "jd/jon.doe" "x"\r\n')
        assert c.until_tagged("a")[-1].startswith("a NO")
        c.send('b LOGIN "jd/jon.doe" "y"\r\n')
        rest = c.until_tagged("b")
        assert rest[-1].startswith("b NO"), rest
        ln = c.line()
        assert ln.startswith("* BYE"), ln
        try:
            extra = c.line()
            raise AssertionError("connection still open after BYE: %r" % extra)
        except (EOFError, OSError):
            pass


def test_per_ip_penalty_doubles_and_resets():
    with server(auth_penalty_max="4s", auth_failure_delay="10ms") as s:
        for _ in range(3):
            c = greet(s, source="127.0.0.3")
            c.send('a LOGIN "jd/jon.doe" "bad"\r\n')
            c.until_tagged("a")
            c.close()
        time.sleep(0.3)

        def timed_login(src):
            c = greet(s, source=src)
            t0 = time.monotonic()
            c.send('a LOGIN "jd/jon.doe" "s3cret pass"\r\n')
            r = c.until_tagged("a")
            c.close()
            assert r[-1].startswith("a OK"), r
            return time.monotonic() - t0
        penalised = timed_login("127.0.0.3")
        clean = timed_login("127.0.0.4")
        assert penalised >= 0.9, penalised        # 250 ms doubled twice
        fast = 0.6 if not UNDER_VALGRIND else 5
        assert clean < fast, clean
        time.sleep(0.3)
        assert timed_login("127.0.0.3") < fast     # success cleared the record


def test_auth_concurrency_slots():
    """Password checks take one of auth_concurrency slots (record locks on a
    memfd the parent shares with its children): with every slot held from
    outside, a LOGIN waits; released, it completes."""
    import fcntl
    with server(auth_concurrency=1) as s:
        slots = None
        for fd in os.listdir("/proc/%d/fd" % s.proc.pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (s.proc.pid, fd))
            except OSError:
                continue
            if "coffer-auth-slots" in target:
                slots = os.open("/proc/%d/fd/%s" % (s.proc.pid, fd), os.O_RDWR)
        assert slots is not None, "no auth slot memfd in the parent"
        try:
            fcntl.lockf(slots, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            c = greet(s)
            c.send('a LOGIN "jd/jon.doe" "s3cret pass"\r\n')
            c.s.settimeout(1.5)
            try:
                ln = c.line()
                raise AssertionError("login answered while every slot was busy: %r" % ln)
            except OSError:
                pass
            fcntl.lockf(slots, fcntl.LOCK_UN, 1, 0)
            c.s.settimeout(20)
            assert c.until_tagged("a")[-1].startswith("a OK")
            c.close()
        finally:
            os.close(slots)


if __name__ == "__main__":
    require_root()
    run_tests(globals(), sys.argv[1:] or None)
