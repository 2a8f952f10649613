#!/usr/bin/env python3
"""conns.py — many concurrent idle sessions against one cofferd.

    tests/bench/conns.py [--conns 1000] [--sources 50] [--messages 20000 | --mbox FILE]
                         [--no-compress] [--idle] [--hold SECONDS] [--measure-at 50]

Imports one folder (gen-corpus, or an mbox you give), starts cofferd with
the default limits (max_connections 1000, max_connections_per_ip 20), and
opens --conns implicit-TLS sessions spread over --sources loopback source
addresses (127.0.1.1, 127.0.1.2, ...), so the per-IP limit applies as in
production. Each session logs in, sends COMPRESS DEFLATE (unless
--no-compress), SELECTs the folder and NOOPs (then IDLEs with --idle, as
Thunderbird does); every answer is checked
(EXISTS equal to the imported count, tagged OK). With all sessions up and
idle it reads the server's process tree PSS (/proc/PID/smaps_rollup, as
tests/bench/run.sh does) and reports the PSS and anonymous PSS per
connection (held minus before, divided by the number of sessions). Then
every session NOOPs again and LOGOUTs, and the daemon log is checked for
refusals and errors. Exit status 0 only when every session succeeded.

Needs root (cofferd confines its children) and ../shared/tools/gen-corpus
(or --mbox). Environment as for tests/integration (COFFERD, COFFER).
"""
import argparse
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from coffer_harness import CofferServer, require_root  # noqa: E402


class Sess:
    """One IMAP session over TLS, with optional COMPRESS=DEFLATE."""

    def __init__(self, srv, source, ctx):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(120)
        s.bind((source, 0))
        s.connect((srv.host, srv.tls_port))
        self.s = ctx.wrap_socket(s, server_hostname="localhost")
        self.buf = b""
        self.zin = self.zout = None
        self.n = 0

    def send(self, data):
        if self.zout:
            data = self.zout.compress(data) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("closed; pending %r" % self.buf[:200])
            self.buf += self.zin.decompress(d) if self.zin else d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode(errors="replace")

    def cmd(self, text):
        self.n += 1
        tag = "t%d" % self.n
        self.send(("%s %s\r\n" % (tag, text)).encode())
        out = []
        while True:
            ln = self.line()
            out.append(ln)
            if ln.startswith(tag + " "):
                if not ln.startswith(tag + " OK"):
                    raise RuntimeError("%s -> %s" % (text.split()[0], ln))
                return out

    def compress(self):
        self.cmd("COMPRESS DEFLATE")
        if self.buf:
            raise RuntimeError("data after COMPRESS OK")
        self.zin = zlib.decompressobj(-15)
        self.zout = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def tree_pss(root):
    """PSS and anonymous PSS (KiB) of root and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/stat" % d).read()
                kids.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError):
                pass
    todo, procs = [root], [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            procs.append(c)
            todo.append(c)
    pss = anon = 0
    for pid in procs:
        try:
            for ln in open("/proc/%d/smaps_rollup" % pid):
                if ln.startswith("Pss:"):
                    pss += int(ln.split()[1])
                elif ln.startswith("Pss_Anon:"):
                    anon += int(ln.split()[1])
        except OSError:
            pass
    return pss, anon, len(procs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--mbox", help="import this mbox instead of generating one")
    ap.add_argument("--no-compress", action="store_true")
    ap.add_argument("--hold", type=float, default=3.0, help="idle seconds before measuring")
    ap.add_argument("--workers", type=int, default=8, help="client threads opening sessions")
    ap.add_argument("--idle", action="store_true",
                    help="hold the sessions in IDLE (as Thunderbird does) instead of plain idle")
    ap.add_argument("--measure-at", type=int, default=50,
                    help="also measure PSS with this many sessions held (as run.sh's BENCH_HOLD)")
    a = ap.parse_args()
    require_root()
    need = a.conns + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    tmp = tempfile.mkdtemp(prefix="coffer-conns-")
    mbox = a.mbox
    t0 = time.time()
    if not mbox:
        shared = os.environ.get("COFFER_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
        mbox = os.path.join(tmp, "g.mbox")
        subprocess.run([os.path.join(shared, "tools", "gen-corpus"), "--format", "mbox",
                        "--count", str(a.messages), "--out", mbox, "--quiet"], check=True)
    inst = {"b": {"users": {"test": "test"}, "imports": [("test", "bench", mbox)]}}
    print("setup: importing %s" % mbox, flush=True)
    with CofferServer(instances=inst) as srv:
        print("setup: %.0f s; cofferd pid %d" % (time.time() - t0, srv.proc.pid), flush=True)
        expect = None
        ctx = ssl.create_default_context(cafile=srv.cert)
        # the first session tells how many messages the folder holds
        probe = Sess(srv, "127.0.1.1", ctx)
        probe.line()
        probe.cmd('LOGIN "b/test" "test"')
        for ln in probe.cmd("SELECT bench"):
            m = re.match(r"\* (\d+) EXISTS", ln)
            if m:
                expect = int(m.group(1))
        probe.cmd("LOGOUT")
        probe.close()
        time.sleep(1)
        base, base_anon, nbase = tree_pss(srv.proc.pid)
        sessions = [None] * a.conns
        errors = []
        lock = threading.Lock()

        def opener(w, lo, hi):
            for i in range(lo + w, hi, a.workers):
                src = "127.0.1.%d" % (1 + i % a.sources)
                try:
                    c = Sess(srv, src, ctx)
                    g = c.line()
                    if not g.startswith("* OK"):
                        raise RuntimeError("greeting: " + g)
                    c.cmd('LOGIN "b/test" "test"')
                    if not a.no_compress:
                        c.compress()
                    got = [ln for ln in c.cmd("SELECT bench") if ln.endswith(" EXISTS")]
                    if got != ["* %d EXISTS" % expect]:
                        raise RuntimeError("SELECT: %r" % got)
                    c.cmd("NOOP")
                    if a.idle:
                        c.n += 1
                        c.idle_tag = "t%d" % c.n
                        c.send(("%s IDLE\r\n" % c.idle_tag).encode())
                        ln = c.line()
                        if not ln.startswith("+"):
                            raise RuntimeError("IDLE: " + ln)
                    sessions[i] = c
                except Exception as e:  # noqa: BLE001 — every failure is counted
                    with lock:
                        errors.append("open %d from %s: %s" % (i, src, e))

        def open_range(lo, hi):
            th = [threading.Thread(target=opener, args=(w, lo, hi)) for w in range(a.workers)]
            for t in th:
                t.start()
            for t in th:
                t.join()

        t1 = time.time()
        first = min(a.measure_at, a.conns)
        small = None
        if 0 < first < a.conns:
            open_range(0, first)
            time.sleep(a.hold)
            p, pa, _ = tree_pss(srv.proc.pid)
            n = sum(1 for c in sessions if c)
            small = (n, (p - base) / max(n, 1), (pa - base_anon) / max(n, 1))
            print("RESULT-AT held=%d pss_per_conn_kib=%.0f anon_per_conn_kib=%.0f"
                  % small, flush=True)
            t1 = time.time()
        open_range(first if small else 0, a.conns)
        t_open = time.time() - t1
        up = sum(1 for c in sessions if c)
        print("opened %d/%d sessions in %.1f s (%d errors)" % (up, a.conns, t_open, len(errors)),
              flush=True)
        time.sleep(a.hold)
        held, held_anon, nheld = tree_pss(srv.proc.pid)
        per = (held - base) / max(up, 1)
        per_anon = (held_anon - base_anon) / max(up, 1)

        def closer(w):
            for i in range(w, a.conns, a.workers):
                c = sessions[i]
                if not c:
                    continue
                try:
                    if a.idle:
                        c.send(b"DONE\r\n")
                        while True:
                            ln = c.line()
                            if ln.startswith(c.idle_tag + " "):
                                if not ln.startswith(c.idle_tag + " OK"):
                                    raise RuntimeError("IDLE end: " + ln)
                                break
                    c.cmd("NOOP")
                    out = c.cmd("LOGOUT")
                    if not any(ln.startswith("* BYE") for ln in out):
                        raise RuntimeError("no BYE: %r" % out)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append("close %d: %s" % (i, e))
                c.close()

        th = [threading.Thread(target=closer, args=(w,)) for w in range(a.workers)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        time.sleep(1)
        log = srv.log()
        bad = [ln for ln in log.splitlines()
               if re.search(r"refused|error|failed|died|READERS_FULL|cannot", ln, re.I)]
        print("RESULT conns=%d up=%d errors=%d log_problems=%d messages=%d compress=%s "
              "procs=%d tree_pss_kib=%d->%d pss_per_conn_kib=%.0f anon_per_conn_kib=%.0f "
              "open_s=%.1f" % (a.conns, up, len(errors), len(bad), expect, not a.no_compress,
                              nheld, base, held, per, per_anon, t_open))
        for e in errors[:10]:
            print("  error:", e)
        for ln in bad[:10]:
            print("  log:", ln)
        ok = up == a.conns and not errors and not bad
    subprocess.run(["rm", "-rf", tmp])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
