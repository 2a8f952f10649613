#!/usr/bin/env python3
"""Faults and data safety (issue 6 item 6), against a real cofferd:

  - kill -9 of connection children and then of the parent while clients
    browse: clients reconnect (after a restart for the parent), and not one
    byte of the data_dir changes (SHA-256 of every file except LMDB's
    lock.mdb before and after): cofferd never writes the store;
  - a corrupted record in a copy of an instance (a backup restored under a
    new name, bytes flipped inside data.mdb): cofferd answers NO for the
    damaged message and logs it, the other messages are still served,
    `coffer verify` reports it with a non-zero exit, and the original
    instance is unaffected;
  - `coffer import` of a gen-corpus archive running (and killed with -9 at
    random points, then resumed) while readers browse: every message a
    reader ever fetched is byte-identical to the final stored message with
    that UID (never a half-imported message), within a selected mailbox the
    view never changes without a NOOP, and the final set is exact.

kill -9 of `coffer import` alone (20 kills, verify after each, exact
re-import) is tests/integration/test_crash.py; it is not repeated here.
Env: COFFER_FAULTS_COUNT (messages for the import test, default 2000; 500
when COFFER_TIMEOUT_SCALE stretches timeouts for instrumented builds),
COFFER_FAULTS_READERS (its concurrent reader sessions, default 200; 16 under memcheck)."""

import hashlib
import os
import random
import re
import select
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from coffer_harness import (CofferServer, LineClient, TIMEOUT_SCALE,  # noqa: E402
                            UNDER_VALGRIND, coffer_path, require_root, run_tests,
                            skip_part)

SRCDIR = os.environ.get("COFFER_SRCDIR") or os.path.join(HERE, "..", "..")
SHARED = os.environ.get("COFFER_SHARED") or os.path.join(SRCDIR, "..", "shared")
# instrumented builds (scripts/check san stage, valgrind) import far slower
COUNT = int(os.environ.get("COFFER_FAULTS_COUNT") or (2000 if TIMEOUT_SCALE == 1 else 500))
# concurrent reader sessions of the import test (the issue: "hundreds")
# Under memcheck each reader's child costs ~100 MB and 50x the CPU: 200 of
# them would not fit the machine; there the test is for memory errors.
READERS = int(os.environ.get("COFFER_FAULTS_READERS") or (16 if UNDER_VALGRIND else 200))
rng = random.Random(int(os.environ.get("COFFER_TEST_SEED") or 0) or None)


def small_mbox(d, name, marker, n, corrupt_at=None):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        for i in range(1, n + 1):
            subj = "%s %d" % (marker, i)
            if i == corrupt_at:
                subj = "CORRUPT-ME-%s" % marker
            f.write(("From x@example.org Mon Jan  6 10:00:00 2025\n"
                     "From: Sender <x@example.org>\nTo: jon@example.org\n"
                     "Subject: %s\nDate: Mon, 6 Jan 2025 10:%02d:00 +0100\n"
                     "Message-ID: <%s-%d@example.org>\n\n"
                     "%s\n\n" % (subj, i % 60, marker, i,
                                 " ".join("%s%d" % (marker, j) for j in range(i * 30)))).encode())
    os.chmod(p, 0o644)
    return p


def gen_corpus(out, count, seed):
    gen = os.path.join(SHARED, "tools", "gen-corpus")
    if not os.path.exists(gen):
        if os.environ.get("COFFER_REQUIRE_SHARED") == "1":
            raise AssertionError("missing %s" % gen)
        return None
    subprocess.run([sys.executable, gen, "--format", "mbox", "--count", str(count),
                    "--out", out, "--seed", str(seed), "--quiet"], check=True, timeout=300)
    os.chmod(out, 0o644)
    return out


def tree_sums(top):
    sums = {}
    for root, dirs, files in os.walk(top):
        for f in files:
            p = os.path.join(root, f)
            if f == "lock.mdb" or not os.path.isfile(p) or os.path.islink(p):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for blk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(blk)
            sums[os.path.relpath(p, top)] = h.hexdigest()
    return sums


def greet(s, timeout=15):
    c = LineClient(s.connect(tls=True, timeout=timeout))
    assert c.line().startswith("* OK")
    return c


def cmd(c, tag, line):
    c.send("%s %s\r\n" % (tag, line))
    return c.until_tagged(tag)


def login(s, user, pw):
    c = greet(s)
    r = cmd(c, "l", 'LOGIN "%s" "%s"' % (user, pw))
    assert r[-1].startswith("l OK"), r
    return c


# ---------------------------------------------------------------------------

class Load:
    """Clients looping login / select / fetch / search / logout, reconnecting
    whenever their connection dies."""

    def __init__(self, s, users, n=6):
        self.s = s
        self.users = users
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.cycles = 0
        self.disconnects = 0
        self.protocol_errors = []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]
        self.cycle_times = []

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def run(self, i):
        r = random.Random(i)
        while not self.stop.is_set():
            user, pw, n = self.users[i % len(self.users)]
            try:
                c = greet(self.s, timeout=10)
                for tag, line in (("l", 'LOGIN "%s" "%s"' % (user, pw)), ("s", "SELECT INBOX"),
                                  ("f", "FETCH %d:%d (UID RFC822.SIZE BODY.PEEK[])" %
                                   (r.randint(1, n), n)),
                                  ("e", "UID SEARCH TEXT %s" % r.choice(["alpha", "beta", "zz"])),
                                  ("z", "LOGOUT")):
                    res = cmd(c, tag, line)
                    if not res[-1].startswith(tag + " OK"):
                        with self.lock:
                            self.protocol_errors.append((line, res[-1]))
                        break
                c.close()
                with self.lock:
                    self.cycles += 1
                    self.cycle_times.append(time.monotonic())
            except (OSError, EOFError, ssl.SSLError, AssertionError, socket.timeout):
                with self.lock:
                    self.disconnects += 1
                time.sleep(0.1)

    def cycles_since(self, t):
        with self.lock:
            return sum(1 for x in self.cycle_times if x > t)


def wait_until(cond, seconds, what):
    """Poll cond() for up to seconds (scaled); fail with what if it never
    holds (what empty: just return, the caller asserts)."""
    deadline = time.monotonic() + seconds * TIMEOUT_SCALE
    while not cond():
        if time.monotonic() > deadline:
            assert not what, what
            return
        time.sleep(0.1)


def kill_live_child(s):
    """SIGKILL one connection child of s that is alive at the moment of the
    kill. A pid from s.child_pids() may exit (a client's LOGOUT) before we
    signal it, and its number could even be reused; a pidfd pins the
    process, and the parent and state are checked through it. Returns True
    once a live child was killed and is gone, False if none was live."""
    kids = s.child_pids()
    rng.shuffle(kids)
    for pid in kids:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            continue
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[1]) != s.proc.pid:
                continue       # exiting, or the pid went to someone else
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                continue
            # the pidfd turns readable when the process has exited
            r, _, _ = select.select([fd], [], [], 10 * TIMEOUT_SCALE)
            assert r, "child %d survived SIGKILL" % pid
            return True
        except OSError:
            continue
        finally:
            os.close(fd)
    return False


def test_kill9_children_and_parent_under_load():
    tmp = tempfile.mkdtemp(prefix="coffer-faults-")
    os.chmod(tmp, 0o755)
    inst = {"alpha": {"users": {"jon": "a-pw"},
                      "imports": [("jon", "INBOX", small_mbox(tmp, "a.mbox", "alpha", 40))]},
            "beta": {"users": {"jon": "b-pw"},
                     "imports": [("jon", "INBOX", small_mbox(tmp, "b.mbox", "beta", 40))]}}
    orphans = set()
    try:
        with CofferServer(instances=inst, config={"max_connections_per_ip": 50}) as s:
            before = tree_sums(s.data_dir)
            assert any(k.endswith("data.mdb") for k in before), before
            load = Load(s, [("alpha/jon", "a-pw", 40), ("beta/jon", "b-pw", 40)])
            load.start()
            wait_until(lambda: load.cycles > 0, 30, "no client cycle before the kills")
            killed = 0
            t_end = time.monotonic() + 5 * TIMEOUT_SCALE
            while killed < 16 and time.monotonic() < t_end:
                if kill_live_child(s):
                    killed += 1
                time.sleep(0.3)
            t_after_kids = time.monotonic()
            # recovery is the verdict; how long a loaded machine takes to
            # show it is not, so wait for it (bounded) rather than sleeping
            wait_until(lambda: load.cycles_since(t_after_kids) > 0, 30,
                       "clients did not recover after kills")
            # now the parent
            orphans |= set(s.child_pids())
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait()
            time.sleep(0.5)
            orphans |= set(p for p in orphans if os.path.exists("/proc/%d" % p))
            t_restart = time.monotonic()
            s.start()
            wait_until(lambda: load.cycles_since(t_restart) > 0, 30, "")
            recovered = load.cycles_since(t_restart)
            load.finish()
            orphans |= set(s.child_pids())
            print("  killed %d children and the parent; %d cycles, %d disconnects, "
                  "%d cycles after the restart" % (killed, load.cycles, load.disconnects,
                                                     recovered))
            assert killed >= 5
            assert recovered > 0, "no client got through after the restart:\n" + s.log()[-3000:]
            assert not load.protocol_errors, load.protocol_errors[:5]
            c = login(s, "beta/jon", "b-pw")
            assert cmd(c, "s", "SELECT INBOX")[-1].startswith("s OK")
            c.close()
            s.stop()
            after = tree_sums(s.data_dir)
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            assert not changed, "files changed by cofferd: %r" % changed
            assert "died of signal" not in s.log()
    finally:
        for p in orphans:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["rm", "-rf", tmp])


def flip_in_file(path, marker, replacement):
    with open(path, "r+b") as f:
        data = f.read()
        hits = [m.start() for m in re.finditer(re.escape(marker), data)]
        for h in hits:
            f.seek(h)
            f.write(replacement)
    return len(hits)


def damage_frames(path):
    """Flip octets 40-45 of every zstd frame (by its magic) in an env file;
    returns how many frames were hit."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        frames = [m.start() for m in re.finditer(re.escape(b"\x28\xb5\x2f\xfd"), data)]
        for fr in frames:
            for k in range(40, 46):
                if fr + k < len(data):
                    data[fr + k] ^= 0x5a
        f.seek(0)
        f.write(data)
    return len(frames)


def restored_copy(s, tmp):
    """Back up instance alpha into tmp and restore it as instance "damaged"
    (coffer runs as the coffer user, so tmp becomes its); returns the copy's
    data.mdb, for a test to damage while alpha stays the intact original."""
    os.chown(tmp, s.uid, s.gid)
    bk = os.path.join(tmp, "backup")
    s.coffer("backup", "alpha", bk)
    s.coffer("restore", bk, "damaged")
    return os.path.join(s.data_dir, "instances", "damaged", "data.mdb")


def test_corrupted_record_in_instance_copy():
    tmp = tempfile.mkdtemp(prefix="coffer-corrupt-")
    os.chmod(tmp, 0o755)
    inst = {"alpha": {"users": {"jon": "a-pw"},
                      "imports": [("jon", "INBOX",
                                   small_mbox(tmp, "a.mbox", "alpha", 6, corrupt_at=3))]}}
    try:
        with CofferServer(instances=inst, start=False) as s:
            env = restored_copy(s, tmp)
            orig = os.path.join(s.data_dir, "instances", "alpha", "data.mdb")
            with open(orig, "rb") as f:
                orig_sum = hashlib.sha256(f.read()).hexdigest()
            n = flip_in_file(env, b"CORRUPT-ME-alpha", b"CORRUPT-ME-XXXX")
            assert n >= 1, "marker not found in the copy's data.mdb"
            s._chown_data()
            s.start()
            # the damaged copy: NO for the damaged message, the others served
            c = login(s, "damaged/jon", "a-pw")
            r = cmd(c, "s", "SELECT INBOX")
            assert r[-1].startswith("s OK") and "* 6 EXISTS" in r, r
            r = cmd(c, "a", "FETCH 3 (ENVELOPE)")
            assert r[-1].startswith("a NO"), r
            assert not any("CORRUPT-ME" in x for x in r), r
            r = cmd(c, "b", "FETCH 1:2,4:6 (ENVELOPE)")
            assert r[-1].startswith("b OK") and len(r) == 6, r
            r = cmd(c, "c", "FETCH 1:* (ENVELOPE)")
            assert r[-1].startswith(("c NO", "c OK")), r
            assert not any("CORRUPT-ME" in x for x in r), r
            r = cmd(c, "d", "FETCH 3 (BODYSTRUCTURE)")
            assert r[-1].startswith("d NO"), r
            r = cmd(c, "e", "SEARCH SUBJECT alpha")
            assert r[-1].startswith(("e NO", "e OK")), r
            r = cmd(c, "n", "NOOP")
            assert r[-1].startswith("n OK"), r       # the session carries on
            c.close()
            time.sleep(0.3)
            log = s.log()
            assert re.search(r"corrupt|CRC", log, re.I), log[-2000:]
            assert "died of signal" not in log
            # a damaged message body (zstd frames) in a second copy: the
            # damage is found and logged, no altered bytes are served
            s.stop()
            s.coffer("restore", os.path.join(tmp, "backup"), "damaged2")
            env2 = os.path.join(s.data_dir, "instances", "damaged2", "data.mdb")
            assert damage_frames(env2) > 0, "no zstd frame found in data.mdb"
            s._chown_data()
            s.start()
            for i in range(1, 7):
                c = RawReader(s.connect(tls=True, timeout=15))
                c.line()
                assert c.tagged("l", 'LOGIN "damaged2/jon" "a-pw"')[-1].startswith("l OK")
                assert c.tagged("s", "SELECT INBOX")[-1].startswith("s OK")
                # small messages are built in memory before they are sent,
                # so the damage is a tagged NO, never a cut literal or an
                # OK with wrong bytes
                res = c.tagged("b", "FETCH %d (BODY.PEEK[])" % i)
                assert res[-1].startswith("b NO"), res
                assert not any("BODY[]" in r for r in res), res
                c.s.close()
            c = login(s, "damaged2/jon", "a-pw")
            assert cmd(c, "s", "SELECT INBOX")[-1].startswith("s OK")
            r = cmd(c, "e", "FETCH 1:* (ENVELOPE RFC822.SIZE)")    # the index is intact
            assert r[-1].startswith("e OK") and len(r) == 7, r
            c.close()
            time.sleep(0.3)
            assert re.search(r"read failed|corrupt", s.log(), re.I), s.log()[-2000:]
            assert "died of signal" not in s.log()
            v = s.coffer("verify", "damaged2", check=False)
            assert v.returncode != 0, v.stdout
            # the original instance is unaffected
            c = login(s, "alpha/jon", "a-pw")
            assert cmd(c, "s", "SELECT INBOX")[-1].startswith("s OK")
            r = cmd(c, "a", "FETCH 1:* (ENVELOPE BODY.PEEK[])")
            assert r[-1].startswith("a OK"), r
            assert any("CORRUPT-ME-alpha" in x for x in r), r
            c.close()
            s.stop()
            v = s.coffer("verify", "damaged", check=False)
            out = v.stdout.decode(errors="replace") + v.stderr.decode(errors="replace")
            assert v.returncode != 0 and re.search(r"CRC|corrupt|FAULTS", out), (v.returncode, out)
            v = s.coffer("verify", "alpha", check=False)
            assert v.returncode == 0, v.stdout
            with open(orig, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == orig_sum
    finally:
        subprocess.run(["rm", "-rf", tmp])



def big_mbox(d, name, size):
    """One small message, then one whose body is over `size` octets of
    varied text (it spans many frames), then a small one."""
    r = random.Random(7)
    words = ["w%d" % i for i in range(5000)]
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        for i, n in ((1, 200), (2, size), (3, 200)):
            body, got = [], 0
            while got < n:
                ln = " ".join(r.choice(words) for _ in range(12))
                body.append(ln)
                got += len(ln) + 1
            f.write(("From x@example.org Mon Jan  6 10:00:00 2025\n"
                     "From: Sender <x@example.org>\nTo: jon@example.org\n"
                     "Subject: big %d\nDate: Mon, 6 Jan 2025 10:0%d:00 +0100\n"
                     "Message-ID: <big-%d@example.org>\n\n%s\n\n"
                     % (i, i, i, "\n".join(body))).encode())
    os.chmod(p, 0o644)
    return p


def test_damaged_frame_in_large_response():
    """A FETCH response over 4 MiB (streamed, not built in memory) whose
    frames are damaged: a tagged NO for that message, no literal started,
    and the connection carries on (issue 6: it used to be cut mid-literal)."""
    tmp = tempfile.mkdtemp(prefix="coffer-bigcorrupt-")
    os.chmod(tmp, 0o755)
    inst = {"alpha": {"users": {"jon": "a-pw"},
                      "imports": [("jon", "INBOX", big_mbox(tmp, "big.mbox", 5 << 20))]}}
    try:
        with CofferServer(instances=inst, start=False) as s:
            env = restored_copy(s, tmp)
            assert damage_frames(env) > 3, "too few zstd frames in data.mdb"
            s._chown_data()
            s.start()
            # the undamaged original: message 2 is served whole, over 5 MiB
            c = RawReader(s.connect(tls=True, timeout=30))
            c.line()
            assert c.tagged("l", 'LOGIN "alpha/jon" "a-pw"')[-1].startswith("l OK")
            assert c.tagged("s", "SELECT INBOX")[-1].startswith("s OK")
            res = c.tagged("f", "FETCH 2 (UID RFC822.SIZE BODY.PEEK[])")
            got = [x for x in res if isinstance(x, tuple)]
            assert res[-1].startswith("f OK") and len(got) == 1, res[-1]
            assert got[0][3] > (5 << 20) and len(got[0][4]) == got[0][3], got[0][3]
            c.s.close()
            c = RawReader(s.connect(tls=True, timeout=30))
            c.line()
            assert c.tagged("l", 'LOGIN "damaged/jon" "a-pw"')[-1].startswith("l OK")
            assert c.tagged("s", "SELECT INBOX")[-1].startswith("s OK")
            for tag, line in (("a", "FETCH 2 (UID RFC822.SIZE BODY.PEEK[])"),
                              ("b", "FETCH 2 (BODY.PEEK[TEXT])"),
                              ("c", "FETCH 1:3 (UID RFC822.SIZE BODY.PEEK[])"),
                              ("d", "FETCH 2 (BINARY.PEEK[1])")):
                res = c.tagged(tag, line)
                assert res[-1].startswith(tag + " NO"), (line, res[-1])
                assert not any(isinstance(x, tuple) or " FETCH " in x for x in res), (line, res)
                assert not any("BYE" in x for x in res if isinstance(x, str)), res
            # the session carries on, and what is intact is still served
            res = c.tagged("e", "FETCH 1:3 (UID RFC822.SIZE ENVELOPE)")
            assert res[-1].startswith("e OK") and len(res) == 4, res
            assert c.tagged("n", "NOOP")[-1].startswith("n OK")
            c.s.close()
            time.sleep(0.3)
            assert "read failed" in s.log(), s.log()[-2000:]
            assert "died of signal" not in s.log()
    finally:
        subprocess.run(["rm", "-rf", tmp])


def damage_leaf_page(path, *needles):
    """Make the LMDB leaf page holding every one of needles claim to be a
    LEAF2 page (a flipped flag bit in its 16-octet header): a lookup that
    reaches it gets MDB_CORRUPTED, and the read txn is left unusable.
    Returns the page number."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        # the free DB's md_pad in meta page 0 holds the env's page size
        psize = int.from_bytes(data[40:44], "little")
        assert psize in (4096, 8192, 16384, 32768, 65536), psize
        for m in re.finditer(re.escape(needles[0]), data):
            pg = m.start() // psize * psize
            page = bytes(data[pg:pg + psize])
            flags = int.from_bytes(data[pg + 10:pg + 12], "little")
            if flags == 0x02 and all(n in page for n in needles):    # P_LEAF
                data[pg + 10] ^= 0x22                                 # P_LEAF -> P_LEAF2
                f.seek(pg)
                f.write(data[pg:pg + psize])
                return pg // psize
    raise AssertionError("no leaf page holds %r" % (needles,))


def test_damaged_page_other_messages_served():
    """A damaged LMDB page (the leaf page holding one message's header
    chunk, in a restored copy of an instance): that message gets a tagged
    NO, and FETCH 1:* still returns every message whose records are intact,
    byte-exact, then ends NO. LMDB leaves a read txn that met the page
    unusable; cofferd used to treat every later lookup's failure as a
    vanished message and silently stopped answering (issue 6, audit G8)."""
    tmp = tempfile.mkdtemp(prefix="coffer-page-")
    os.chmod(tmp, 0o755)
    n, bad_at = 60, 30
    inst = {"alpha": {"users": {"jon": "a-pw"},
                      "imports": [("jon", "INBOX",
                                   small_mbox(tmp, "p.mbox", "pg", n, corrupt_at=bad_at))]}}
    items = "(UID RFC822.SIZE BODY.PEEK[])"

    def session(s, user):
        c = RawReader(s.connect(tls=True, timeout=30))
        c.line()
        assert c.tagged("l", 'LOGIN "%s" "a-pw"' % user)[-1].startswith("l OK")
        res = c.tagged("s", "SELECT INBOX")
        assert res[-1].startswith("s OK") and "* %d EXISTS" % n in res, res
        return c

    def fetched(res):
        got = {}
        for x in res:
            if isinstance(x, tuple):
                assert x[1] not in got and x[5] == b")\r\n", x
                got[x[1]] = (x[2], x[3], x[4])
            else:
                assert " FETCH " not in x and "BYE" not in x, x
        return got

    try:
        with CofferServer(instances=inst, start=False) as s:
            env = restored_copy(s, tmp)
            orig = os.path.join(s.data_dir, "instances", "alpha", "data.mdb")
            with open(orig, "rb") as f:
                orig_sum = hashlib.sha256(f.read()).hexdigest()
            pgno = damage_leaf_page(env, b"CORRUPT-ME-pg", b"Message-ID: <pg-%d@" % bad_at)
            s._chown_data()
            s.start()
            # the originals, from the intact instance
            c = session(s, "alpha/jon")
            res = c.tagged("a", "FETCH 1:* " + items)
            assert res[-1].startswith("a OK"), res[-1]
            want = fetched(res)
            assert sorted(want) == list(range(1, n + 1)), sorted(want)
            for i, (uid, size, body) in want.items():
                assert len(body) == size and b"Message-ID: <pg-%d@" % i in body, (i, size)
            c.s.close()
            c = session(s, "damaged/jon")
            # one message at a time, each on a fresh read txn: which ones
            # does the damaged page take down?
            bad = set()
            for i in range(1, n + 1):
                res = c.tagged("f", "FETCH %d %s" % (i, items))
                got = fetched(res)
                if res[-1].startswith("f NO"):
                    assert not got, (i, res)
                    bad.add(i)
                else:
                    assert res[-1].startswith("f OK") and got == {i: want[i]}, (i, res[-1])
            # the message whose header chunk is on the page, perhaps a
            # neighbour or two whose chunks share it; never the whole tail
            assert bad_at in bad and len(bad) <= 6, sorted(bad)
            for tag, line in (("a", "FETCH 1:* " + items), ("b", "UID FETCH 1:* " + items)):
                res = c.tagged(tag, line)
                assert res[-1].startswith(tag + " NO [SERVERBUG]"), (line, res[-1])
                got = fetched(res)
                assert sorted(got) == sorted(set(range(1, n + 1)) - bad), (line, sorted(got))
                for i in got:
                    assert got[i] == want[i], (line, i)
            assert c.tagged("n", "NOOP")[-1].startswith("n OK")    # the session carries on
            res = c.tagged("e", "FETCH 1:* (UID RFC822.SIZE ENVELOPE)")    # records intact
            assert res[-1].startswith("e OK") and len(res) == n + 1, res[-1]
            c.s.close()
            c = session(s, "alpha/jon")        # the original instance is unaffected
            res = c.tagged("a", "FETCH 1:* " + items)
            assert res[-1].startswith("a OK") and fetched(res) == want, res[-1]
            c.s.close()
            time.sleep(0.3)
            log = s.log()
            for i in bad:
                assert re.search(r"instance damaged folder INBOX UID %d\b.*(read failed|"
                                 r"cannot read)" % i, log), (i, log[-3000:])
            assert "died of signal" not in log and "Sanitizer" not in log, log[-3000:]
            s.stop()
            # LMDB itself may fault walking the page: verify survives that
            # in a child and reports it, which a sanitizer's SEGV handler
            # would turn into an ordinary failed exit, and memcheck into an
            # error of ours (tests/valgrind-all: COFFER_VG_BYPASS)
            venv = dict(os.environ)
            venv["ASAN_OPTIONS"] = venv.get("ASAN_OPTIONS", "") + ":handle_segv=0"
            venv["COFFER_VG_BYPASS"] = "1"
            v = subprocess.run([coffer_path(), "-c", s.conf_path, "--data-dir", s.data_dir,
                                "verify", "damaged"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=300, env=venv)
            out = v.stdout.decode(errors="replace") + v.stderr.decode(errors="replace")
            assert v.returncode == 3 and re.search(r"damaged.*corrupt", out, re.I), \
                (v.returncode, out)
            v = s.coffer("verify", "alpha", check=False)
            assert v.returncode == 0, v.stdout
            with open(orig, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == orig_sum
            print("  leaf page %d damaged: NO for %s, the other %d served by FETCH 1:*"
                  % (pgno, sorted(bad), n - len(bad)))
    finally:
        subprocess.run(["rm", "-rf", tmp])


# ---------------------------------------------------------------------------

FETCH_RE = re.compile(rb"^\* (\d+) FETCH \(UID (\d+) RFC822\.SIZE (\d+) BODY\[\] \{(\d+)\}\r\n")


class RawReader:
    """Reads FETCH responses with literals exactly (bytes)."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(262144)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln + b"\r\n"

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, b):
        self.s.sendall(b)

    def tagged(self, tag, line):
        self.send(("%s %s\r\n" % (tag, line)).encode())
        out = []
        while True:
            ln = self.line()
            m = FETCH_RE.match(ln)
            if m:
                body = self.exact(int(m.group(4)))
                rest = self.line()
                out.append(("FETCH", int(m.group(1)), int(m.group(2)), int(m.group(3)), body,
                            rest))
                continue
            out.append(ln.decode(errors="replace").rstrip("\r\n"))
            if ln.startswith(tag.encode() + b" "):
                return out


def exists_in(res):
    return [int(x.split()[1]) for x in res if isinstance(x, str) and x.endswith(" EXISTS")]


class _Reader:
    """One reader's connection in browse(): a non-blocking socket, what has
    arrived of the current response, and the session's script."""

    def __init__(self, i, src):
        self.i, self.src = i, src
        self.me = {"rounds": 0, "logged": False}
        self.sock = self.gen = self.tag = self.lit = None
        self.buf, self.out, self.items = bytearray(), b"", []
        self.state, self.wake, self.last, self.n = "sleep", 0.0, time.time(), 0

    def parse(self):
        """Consume buf into items; True once the tagged line (or, before
        the first command, the greeting) has arrived. Literals are taken
        by their exact size, as RawReader does."""
        while True:
            if self.lit is not None:
                m, n = self.lit
                end = self.buf.find(b"\r\n", n) if len(self.buf) >= n else -1
                if end < 0:
                    return False
                body, rest = bytes(self.buf[:n]), bytes(self.buf[n:end + 2])
                del self.buf[:end + 2]
                self.items.append(("FETCH", int(m.group(1)), int(m.group(2)), int(m.group(3)),
                                   body, rest))
                self.lit = None
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            ln = bytes(self.buf[:end + 2])
            del self.buf[:end + 2]
            m = FETCH_RE.match(ln)
            if m:
                self.lit = (m, int(m.group(4)))
                continue
            txt = ln.decode(errors="replace").rstrip("\r\n")
            if self.tag is None:
                self.items.append(txt)
                return True
            if txt.startswith(self.tag + " "):
                self.items.append(txt[len(self.tag) + 1:])   # "OK ...", "NO ...", "BAD ..."
                return True
            self.items.append(txt)


def reader_script(r, stop, importing, me, seen, stats):
    """One reader session as a generator: yields a command line (without
    tag) or a pause in seconds, is sent the response (the tagged line last,
    tag removed). It browses until stop is set and it has done one round."""
    res = yield 'LOGIN "jd/jon" "pw"'
    assert res[-1].startswith("OK"), res
    me["logged"] = True
    stats["live"] += 1
    stats["peak"] = max(stats["peak"], stats["live"])
    while not (stop.is_set() and me["rounds"] > 0):
        res = yield "%s Live" % r.choice(("SELECT", "EXAMINE"))
        if res[-1].startswith("NO"):
            yield r.uniform(0.1, 0.3)      # the folder is not there yet
            continue
        exists = exists_in(res)
        assert res[-1].startswith("OK") and exists, res
        n = exists[0]
        if n == 0:
            continue
        lo = r.randint(1, n)
        hi = min(n, lo + r.randint(0, 40))
        res = yield "FETCH %d:%d (UID RFC822.SIZE BODY.PEEK[])" % (lo, hi)
        assert res[-1].startswith("OK"), res[-1]
        got = [x for x in res if isinstance(x, tuple)]
        n = max([n] + exists_in(res))
        # the selected view is a snapshot: exactly the messages asked for
        assert [x[1] for x in got] == list(range(lo, hi + 1)), ([x[1] for x in got], lo, hi)
        for _, seq, uid, size, body, _rest in got:
            assert len(body) == size, (uid, len(body), size)
            seen.setdefault(uid, set()).add(hashlib.sha256(body).hexdigest())
        stats["fetched"] += len(got)
        # the same FETCH again: the same messages; new mail may be announced
        # (EXISTS is allowed during FETCH), never an EXPUNGE
        res2 = yield "FETCH %d:%d (UID RFC822.SIZE)" % (lo, hi)
        assert res2[-1].startswith("OK") and \
            not any(isinstance(x, str) and "EXPUNGE" in x for x in res2[:-1]), res2
        uids2 = [int(x.split()[4]) for x in res2 if isinstance(x, str) and " FETCH (UID " in x]
        assert uids2 == [x[2] for x in got], (uids2, [x[2] for x in got])
        n = max([n] + exists_in(res2))
        res3 = yield "SEARCH ALL"
        allseq = [x for x in res3 if isinstance(x, str) and x.startswith("* SEARCH")]
        n3 = max([n] + exists_in(res3))
        assert allseq and len(allseq[0].split()) - 2 in (n, n3), \
            "SEARCH ALL gave %d numbers (last %s) with %d EXISTS announced; other " \
            "lines %r" % (len(allseq[0].split()) - 2, allseq[0].split()[-1], n3,
                          [x for x in res3 if "SEARCH" not in str(x)])
        me["rounds"] += 1
        stats["rounds"] += 1
        if importing.is_set():
            stats["rounds_importing"] += 1


def browse(s, nreaders, stop, importing, seen, errors, stats):
    """nreaders concurrent reader sessions from this one thread (selectors,
    non-blocking plain-port sockets, LOGIN), at most 15 per source address
    127.0.0.10... so that cofferd's per-IP cap (20) holds. Runs until stop
    is set and every reader has done at least one round."""
    sel = selectors.DefaultSelector()
    rs = [_Reader(i, "127.0.0.%d" % (10 + i // 15)) for i in range(nreaders)]
    stall = 120 * TIMEOUT_SCALE

    def close(c, again):
        if c.sock is not None:
            sel.unregister(c.sock)
            c.sock.close()
            c.sock = None
        if c.me["logged"]:
            c.me["logged"] = False
            stats["live"] -= 1
        c.gen = c.tag = c.lit = None
        c.buf, c.out, c.items = bytearray(), b"", []
        c.state, c.wake = ("sleep", time.time() + 0.1) if again else ("done", 0.0)

    def send(c, data):
        c.out += data
        n = c.sock.send(c.out)
        c.out = c.out[n:]
        sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)

    def step(c, res):
        try:
            x = c.gen.send(res)
        except StopIteration:
            close(c, False)
            return
        except AssertionError as e:
            errors.append("reader %d: %s" % (c.i, repr(e)[:500]))
            close(c, False)
            return
        c.items = []
        if isinstance(x, float):
            c.state, c.wake = "sleep", time.time() + x
            return
        c.n += 1
        c.tag = "t%d" % c.n
        c.state, c.last = "busy", time.time()
        send(c, ("%s %s\r\n" % (c.tag, x)).encode())

    def connect(c):
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.sock.setblocking(False)
        c.sock.bind((c.src, 0))
        c.sock.connect_ex((s.host, s.port))
        c.state, c.last = "connecting", time.time()
        sel.register(c.sock, selectors.EVENT_WRITE, c)

    try:
        while True:
            now = time.time()
            live = [c for c in rs if c.state != "done"]
            if not live:
                return
            for c in live:
                if c.state == "sleep" and c.wake <= now:
                    if c.gen is None:
                        if stop.is_set() and c.me["rounds"] > 0:
                            close(c, False)
                        else:
                            connect(c)
                    else:
                        step(c, None)
                elif c.state in ("connecting", "greeting", "busy") and now - c.last > stall:
                    errors.append("reader %d: no answer for %d s (%s)" % (c.i, stall, c.state))
                    close(c, False)
            for key, mask in sel.select(0.05):
                c = key.data
                try:
                    if c.state == "connecting":
                        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, os.strerror(err))
                        c.state = "greeting"
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    if mask & selectors.EVENT_WRITE and c.out:
                        send(c, b"")
                    if not mask & selectors.EVENT_READ:
                        continue
                    d = c.sock.recv(262144)
                    if not d:
                        raise EOFError
                    c.buf += d
                    c.last = time.time()
                    while c.sock is not None and c.state in ("greeting", "busy") and c.parse():
                        res = c.items
                        if c.state == "greeting":
                            if not res[0].startswith("* OK"):
                                raise EOFError(res[0])
                            c.gen = reader_script(random.Random(rng.random()), stop, importing,
                                                  c.me, seen, stats)
                            step(c, None)
                        else:
                            step(c, res)
                except (OSError, EOFError):
                    stats["reconnects"] += 1
                    close(c, True)
    finally:
        for c in rs:
            if c.sock is not None:
                c.sock.close()
        sel.close()


def test_import_while_readers_browse():
    tmp = tempfile.mkdtemp(prefix="coffer-live-")
    os.chmod(tmp, 0o755)
    try:
        src = gen_corpus(os.path.join(tmp, "live.mbox"), COUNT, 11)
        if src is None:
            print("  SKIP-PART: ../shared/tools/gen-corpus not found")
            return
        # plain port with LOGIN: hundreds of TLS handshakes would eat the budget
        with CofferServer(instances={"jdcorp": {"aliases": ["jd"], "users": {"jon": "pw"}}},
                          config={"allow_plaintext_auth": "yes",
                                  "max_connections": max(1000, READERS + 50)}) as s:
            stop, importing = threading.Event(), threading.Event()
            importing.set()
            seen, errors = {}, []
            stats = {"live": 0, "peak": 0, "rounds": 0, "rounds_importing": 0, "fetched": 0,
                     "reconnects": 0}

            def drive():
                try:
                    browse(s, READERS, stop, importing, seen, errors, stats)
                except Exception as e:       # a bug of the driver itself fails the test
                    errors.append("browse: %r" % e)
            t0 = time.time()
            readers = [threading.Thread(target=drive)]
            for t in readers:
                t.start()
            env = dict(os.environ, COFFER_IMPORT_BATCH="50")
            imp = [coffer_path(), "-c", s.conf_path, "--data-dir", s.data_dir, "import",
                   "jdcorp/jon", "--folder", "Live", src]
            kills = 0
            try:
                # every reader logged in (the folder does not exist yet) before the import
                wait_until(lambda: stats["peak"] == READERS or errors, 60,
                           "%d reader sessions logged in" % READERS)
                t_login = time.time() - t0
                for i in range(4):
                    p = subprocess.Popen(imp, env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                    time.sleep(rng.uniform(0.3, 1.2))
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
                        kills += 1
                    p.wait()
                    s._chown_data()
                    time.sleep(0.3)
                r = subprocess.run(imp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=600)
                importing.clear()
                assert r.returncode == 0, r.stderr
                s._chown_data()
                time.sleep(2.0)
            finally:
                importing.clear()
                stop.set()
                for t in readers:
                    t.join(180 * TIMEOUT_SCALE)
            assert not readers[0].is_alive(), "the readers did not finish"
            assert not errors, (len(errors), errors[:3])
            out = r.stdout.decode()
            m = re.search(r"imported (\d+), already present (\d+)", out)
            assert m and int(m.group(1)) + int(m.group(2)) == COUNT, out
            # the final state, read once at rest
            c = RawReader(s.connect(tls=True, timeout=60))
            c.line()
            assert c.tagged("l", 'LOGIN "jd/jon" "pw"')[-1].startswith("l OK")
            res = c.tagged("s", "EXAMINE Live")
            assert "* %d EXISTS" % COUNT in res, res
            final = {}
            for lo in range(1, COUNT + 1, 500):
                res = c.tagged("f", "FETCH %d:%d (UID RFC822.SIZE BODY.PEEK[])" %
                               (lo, min(COUNT, lo + 499)))
                assert res[-1].startswith("f OK"), res[-1]
                for _, seq, uid, size, body, _rest in (x for x in res if isinstance(x, tuple)):
                    final[uid] = hashlib.sha256(body).hexdigest()
            assert len(final) == COUNT
            bad = [u for u, hs in seen.items() if hs != {final.get(u)}]
            print("  %d kills of the import; %d concurrent reader sessions (all logged in "
                  "after %.1f s, %d reconnects); %d reader rounds (%d while the import ran), "
                  "%d messages fetched and checked, %d distinct; %.1f s with readers" %
                  (kills, stats["peak"], t_login, stats["reconnects"], stats["rounds"],
                   stats["rounds_importing"], stats["fetched"], len(seen), time.time() - t0))
            assert not bad, "readers saw messages that differ from the final ones: %r" % bad[:5]
            assert stats["peak"] == READERS, stats
            assert stats["rounds_importing"] > 0 and seen, "readers never saw the import"
            v = s.coffer("verify", "jdcorp", check=False)
            assert v.returncode == 0, v.stdout
    finally:
        subprocess.run(["rm", "-rf", tmp])


def stats_count(s, inst):
    out = s.coffer("stats", inst).stdout.decode()
    m = re.search(r"messages: (\d+) in mailboxes, (\d+) unique", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_map_full_and_disk_full_during_import():
    """LMDB map full, then a full file system: the import stops with an
    error naming the cause, what was committed verifies and is served,
    and once there is room the re-run completes with exactly the source."""
    tmp = tempfile.mkdtemp(prefix="coffer-full-")
    os.chmod(tmp, 0o755)
    mnt = []

    def unmount():
        while mnt:
            m = mnt.pop()
            if subprocess.run(["umount", m]).returncode != 0:
                subprocess.run(["umount", "-l", m])
    try:
        n = min(COUNT, 1000)
        src = gen_corpus(os.path.join(tmp, "full.mbox"), n, 5)
        if src is None:
            print("  SKIP-PART: ../shared/tools/gen-corpus not found")
            return
        env = dict(os.environ, COFFER_IMPORT_BATCH="25")
        with CofferServer(instances={"jdcorp": {"aliases": ["jd"], "users": {"jon": "pw"}}},
                          config={"map_size": "4M"}) as s:
            imp = [coffer_path(), "-c", s.conf_path, "--data-dir", s.data_dir, "import",
                   "jdcorp/jon", "--folder", "Big", src]
            r = subprocess.run(imp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=300)
            err = r.stderr.decode(errors="replace")
            assert r.returncode != 0 and "map_size" in err, (r.returncode, err)
            v = s.coffer("verify", "jdcorp", check=False)
            assert v.returncode == 0, v.stdout
            partial, _ = stats_count(s, "jdcorp")
            assert 0 < partial < n, partial
            s._chown_data()
            # a session open across the map growth
            old = login(s, "jd/jon", "pw")
            res = cmd(old, "s", "EXAMINE Big")
            assert "* %d EXISTS" % partial in res, res
            s.write_config(map_size="1G")
            r = subprocess.run(imp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=300)
            assert r.returncode == 0, r.stderr
            m = re.search(r"imported (\d+), already present (\d+)", r.stdout.decode())
            assert m and int(m.group(1)) == n - partial and int(m.group(2)) == partial, \
                r.stdout
            assert stats_count(s, "jdcorp") == (n, n)
            s._chown_data()
            res = cmd(old, "n", "NOOP")      # the grown map: new mail, or a clean NO
            assert res[-1].startswith(("n OK", "n NO")), res
            if res[-1].startswith("n OK"):
                assert "* %d EXISTS" % n in res, res
            old.close()
            c = login(s, "jd/jon", "pw")
            assert "* %d EXISTS" % n in cmd(c, "s", "EXAMINE Big")
            c.close()
            time.sleep(0.3)
            assert "died of signal" not in s.log()

            # disk full: the instance directory on an 8 MiB tmpfs
            s.stop()
            s.coffer("instance", "add", "small")
            s.coffer("user", "add", "small/jon", "--password-file",
                     os.path.join(s.tmp, "pw", "pw1"))
            idir = os.path.join(s.data_dir, "instances", "small")
            keep = idir + ".keep"
            os.rename(idir, keep)
            os.mkdir(idir)
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", idir],
                              stderr=subprocess.DEVNULL).returncode != 0:
                skip_part("cannot mount a tmpfs here: disk-full case not run")
                return
            mnt.append(idir)
            harness_cleanup = s.cleanup
            s.cleanup = lambda: (unmount(), harness_cleanup())    # unmount before rmtree
            subprocess.run(["cp", "-a", keep + "/.", idir], check=True)
            imp[imp.index("jdcorp/jon")] = "small/jon"
            r = subprocess.run(imp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=300)
            err = r.stderr.decode(errors="replace")
            assert r.returncode != 0, r.stdout
            print("  disk full: %s" % err.strip().splitlines()[-1])
            v = s.coffer("verify", "small", check=False)
            assert v.returncode == 0, v.stdout
            partial, _ = stats_count(s, "small")
            assert partial < n
            s._chown_data()
            s.start()
            c = login(s, "small/jon", "pw")
            res = cmd(c, "s", "EXAMINE Big")
            assert (partial == 0 and res[-1].startswith("s NO")) or \
                "* %d EXISTS" % partial in res, (partial, res)
            c.close()
            s.stop()
            subprocess.run(["mount", "-o", "remount,size=256m", idir], check=True)
            r = subprocess.run(imp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=300)
            assert r.returncode == 0, r.stderr
            assert stats_count(s, "small") == (n, n)
            assert s.coffer("verify", "small", check=False).returncode == 0
            unmount()           # before the harness removes data_dir
    finally:
        unmount()
        subprocess.run(["rm", "-rf", tmp])


def lock_slots(path):
    """Reader slots of an LMDB lock file, from its size: LMDB 0.9 lays it out
    as one header (MDB_txninfo) plus (maxreaders - 1) 64-octet MDB_reader
    entries."""
    return (os.path.getsize(path) - LOCK_HDR) // 64 + 1


LOCK_HDR = 192   # sizeof(MDB_txninfo), LMDB 0.9 on x86-64 Linux (12 slots: 896 octets)


def test_reader_table_full_then_regrown():
    """LMDB sizes an env's reader table when a process opens it while no
    other has it open (it then holds the exclusive lock and may grow the
    file), and every later opener adopts that size. cofferd asks for
    max_connections + 8. So after raising max_connections (SIGHUP) the new
    size only takes effect once every session of the instance has closed;
    until then a login that finds the table full gets NO [UNAVAILABLE] and
    a log line naming the cause, and is not counted as a failed login."""
    tmp = tempfile.mkdtemp(prefix="coffer-readers-")
    os.chmod(tmp, 0o755)
    inst = {"alpha": {"users": {"jon": "a-pw"},
                      "imports": [("jon", "INBOX", small_mbox(tmp, "a.mbox", "alpha", 5))]}}
    held = []
    try:
        with CofferServer(instances=inst, start=False,
                          config={"max_connections": 4, "max_connections_per_ip": 100,
                                  "auth_penalty_max": "10s"}) as s:
            lock = os.path.join(s.data_dir, "instances", "alpha", "lock.mdb")
            # `coffer` made the table with its own size (at least 512); nobody
            # has the env open now, so emptying the lock file is safe: the
            # first session finds it too small and grows it to cofferd's size
            # (cofferd cannot create it: the confined child may only write
            # existing lock files)
            os.truncate(lock, 0)
            s.start()
            held.append(login(s, "alpha/jon", "a-pw"))
            assert lock_slots(lock) == 4 + 8, os.path.getsize(lock)
            s.write_config(max_connections=40)
            s.reload()
            # one slot per logged-in session: 11 more fit, the 13th does not
            for _ in range(11):
                held.append(login(s, "alpha/jon", "a-pw"))
            for c in held:
                assert cmd(c, "s", "SELECT INBOX")[-1].startswith("s OK")
            c = greet(s)
            r = cmd(c, "l", 'LOGIN "alpha/jon" "a-pw"')
            assert r[-1].startswith("l NO [UNAVAILABLE]"), r
            assert "AUTHENTICATIONFAILED" not in r[-1], r
            c.close()
            log = s.log()
            full = [ln for ln in log.splitlines() if "reader table full" in ln]
            assert full, log[-2000:]
            print("  log: " + full[0])
            assert lock_slots(lock) == 12
            # not a failed login: no penalty for the address, no BYE
            t0 = time.monotonic()
            held.pop().close()
            c = login(s, "alpha/jon", "a-pw")
            assert time.monotonic() - t0 < 5 * TIMEOUT_SCALE
            held.append(c)
            # every session gone: the next opener sizes the table anew
            for c in held:
                c.close()
            held = []
            assert s.wait_children(0), s.child_pids()
            for _ in range(13):
                held.append(login(s, "alpha/jon", "a-pw"))
            assert lock_slots(lock) == 40 + 8, os.path.getsize(lock)
            for c in held:
                assert cmd(c, "n", "NOOP")[-1].startswith("n OK")
            print("  table 12 slots: 12 sessions served, the 13th refused with NO "
                  "[UNAVAILABLE]; after every session closed: 48 slots, 13 sessions served")
    finally:
        for c in held:
            c.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    require_root()
    run_tests(globals(), sys.argv[1:] or None)
