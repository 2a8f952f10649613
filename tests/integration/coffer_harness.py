"""coffer_harness — start a real cofferd on loopback for integration tests.

Python 3 standard library only. Typical use:

    from coffer_harness import CofferServer, require_root, run_tests

    def test_login():
        with CofferServer(instances={
                "jdcorp": {"aliases": ["jd"],
                           "users": {"jon.doe": "secret",
                                     "boss": {"password": "pw", "admin": True}},
                           "imports": [("jon.doe", "INBOX", "/path/to/mbox")]},
                "closed": {"users": {"amy": "pw"}, "disabled": True}},
                config={"max_connections_per_ip": 5}) as s:
            m = s.login("jd/jon.doe", "secret")          # imaplib over implicit TLS
            m.select("INBOX"); m.logout()
            m = s.imap(tls=False); m.starttls(s.ssl_context()) ...

    if __name__ == "__main__":
        require_root()            # exit 77 unless root
        run_tests(globals())      # runs every test_* function, exit 0/1

Attributes of a running CofferServer: host, port (STARTTLS), tls_port,
data_dir, conf_path, cert, key, proc (the Popen of the parent), log() (the
daemon's stderr so far). Methods: coffer(*args) runs the admin CLI
(`coffer --data-dir DIR ...`), imap(tls=True), login(user, pw, tls=True),
connect(tls=True, source=None) -> raw socket, ssl_context(), child_pids(),
wait_children(n), reload(), stop(), write_config(**overrides), cleanup().

cleanup() (also on leaving the `with` block, and run_tests' end for a
server still running) raises AssertionError when the daemon log shows a
sanitizer report, a child killed by a signal other than SIGTERM/SIGKILL or
a child's non-zero exit (LOG_FAILURE_RE): such a report may come after the
client's last answer, where no assertion of the test looks.

A test that cannot run here raises Skip(reason); a sub-check that cannot,
skip_part(reason) (landlock_active(log, what) does that for Landlock, or
fails under COFFER_REQUIRE_LANDLOCK=1): run_tests prints and counts both.

Environment: COFFERD / COFFER name the binaries (else COFFER_BUILDDIR/cofferd
and COFFER_BUILDDIR/coffer, else ./cofferd and ./coffer).
"""

import imaplib
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77
HARD_ERROR = 99
# What in a daemon log means a child (or the parent) went wrong even when
# every client got its answer: a sanitizer report, a child killed by a
# signal (reap() leaves out SIGTERM and SIGKILL, the intended kills), or a
# child that exited non-zero (a sanitizer under halt_on_error exits 1).
LOG_FAILURE_RE = (r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                  r"died of signal|child \d+ exited with status")
# tests/valgrind-all runs the binaries under memcheck: stretch time limits
# by COFFER_TIMEOUT_SCALE; timing comparisons should check UNDER_VALGRIND.
TIMEOUT_SCALE = float(os.environ.get("COFFER_TIMEOUT_SCALE") or 1)
UNDER_VALGRIND = bool(os.environ.get("COFFER_VALGRIND"))


class _PortTaken(RuntimeError):
    """cofferd could not bind a port free_port() had found free."""


class Skip(Exception):
    """Raised by a test that cannot run here: run_tests reports it as SKIP."""


_skipped_parts = []


def skip_part(reason):
    """A sub-check of a passing test that cannot run here: printed as
    'SKIP: reason' and counted in run_tests' summary line (a PASS that
    checked less must say so)."""
    print("  SKIP: %s" % reason, flush=True)
    _skipped_parts.append(reason)


def landlock_active(log, what):
    """True if the daemon log says Landlock is available. Otherwise the
    Landlock sub-check `what` is skipped (skip_part), or fails when
    COFFER_REQUIRE_LANDLOCK=1 (a machine known to have Landlock)."""
    if "Landlock available" in log:
        return True
    if os.environ.get("COFFER_REQUIRE_LANDLOCK") == "1":
        raise AssertionError("COFFER_REQUIRE_LANDLOCK=1 but cofferd reports no Landlock (%s)"
                             % what)
    skip_part("no Landlock on this kernel: %s" % what)
    return False


def require_root():
    """Exit with the automake SKIP code unless running as root."""
    if os.geteuid() != 0:
        print("SKIP: needs root (cofferd children chroot and drop privileges)")
        sys.exit(SKIP)


def _binary(env, name):
    p = os.environ.get(env)
    if p:
        return p
    bd = os.environ.get("COFFER_BUILDDIR")
    if bd:
        return os.path.join(bd, name)
    return os.path.abspath(name)


def cofferd_path():
    return _binary("COFFERD", "cofferd")


def coffer_path():
    return _binary("COFFER", "coffer")


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_system_user(name="coffer"):
    """The unprivileged user the children run as; created when missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                        "--shell", "/usr/sbin/nologin", name], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pw = pwd.getpwnam(name)
        return name, grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        return "nobody", "nogroup"


def make_cert(directory, cn="localhost", name="cert"):
    """Self-signed EC certificate for cn (+ IP 127.0.0.1); returns (cert, key)."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=" + cn, "-days", "2",
                    "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % cn,
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


class CofferServer:
    def __init__(self, instances=None, config=None, start=True, host="127.0.0.1", env=None,
                 wrap=None):
        self.instances = instances or {}
        self.wrap = list(wrap or [])   # command prefix for cofferd (must exec it, same pid)
        self.env = dict(env or {})
        self.extra_config = dict(config or {})
        self.host = host
        self.auto_start = start
        self.proc = None
        self.tmp = None
        self.checked_log = False
        self.started_once = False

    # ---- lifecycle ----
    def __enter__(self):
        _live.append(self)
        try:
            if not self.tmp:
                self.setup()
            if self.auto_start and not self.proc:
                self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def setup(self):
        self.tmp = tempfile.mkdtemp(prefix="coffer-it-")
        os.chmod(self.tmp, 0o755)
        self.data_dir = os.path.join(self.tmp, "data")
        os.mkdir(self.data_dir, 0o750)
        self.user, self.group = ensure_system_user()
        self.uid = pwd.getpwnam(self.user).pw_uid
        self.gid = grp.getgrnam(self.group).gr_gid
        os.chown(self.data_dir, self.uid, self.gid)
        self.cert, self.key = make_cert(self.tmp)
        self.port = free_port(self.host)
        self.tls_port = free_port(self.host)
        self.conf_path = os.path.join(self.tmp, "cofferd.conf")
        self.log_path = os.path.join(self.tmp, "cofferd.log")
        self.write_config()
        self._populate()

    def _populate(self):
        pwdir = os.path.join(self.tmp, "pw")
        os.mkdir(pwdir, 0o755)
        n = 0
        for inst, spec in self.instances.items():
            args = ["instance", "add", inst]
            for a in spec.get("aliases", []):
                args += ["--alias", a]
            self.coffer(*args)
            for user, u in spec.get("users", {}).items():
                if isinstance(u, str):
                    u = {"password": u}
                n += 1
                pf = os.path.join(pwdir, "pw%d" % n)
                with open(pf, "w") as f:
                    f.write(u["password"] + "\n")
                os.chmod(pf, 0o644)
                args = ["user", "add", "%s/%s" % (inst, user)]
                if u.get("admin"):
                    args.append("--admin")
                args += ["--password-file", pf]
                self.coffer(*args)
                if u.get("disabled"):
                    self.coffer("user", "disable", "%s/%s" % (inst, user))
            if spec.get("disabled"):
                self.coffer("instance", "disable", inst)
            for imp in spec.get("imports", []):
                user, folder, source = imp
                args = ["import", "%s/%s" % (inst, user)]
                if folder:
                    args += ["--folder", folder]
                args.append(source)
                self.coffer(*args)
        self._chown_data()

    def _chown_data(self):
        for root, dirs, files in os.walk(self.data_dir):
            for d in dirs:
                p = os.path.join(root, d)
                if not os.path.islink(p):
                    os.lchown(p, self.uid, self.gid)
            for f in files:
                p = os.path.join(root, f)
                if f == "auth.secret" or root.endswith("/dev"):
                    continue
                os.lchown(p, self.uid, self.gid)

    def coffer(self, *args, check=True, input=None):
        """Run the admin CLI (with this server's config and data_dir);
        returns the CompletedProcess."""
        cmd = [coffer_path(), "-c", self.conf_path, "--data-dir", self.data_dir] + list(args)
        r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=600)
        if check and r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                       r.stderr.decode(errors="replace")))
        return r

    def config_dict(self):
        c = {
            "data_dir": self.data_dir,
            "listen": "%s:%d" % (self.host, self.port),
            "listen_tls": "%s:%d" % (self.host, self.tls_port),
            "tls_cert": self.cert,
            "tls_key": self.key,
            "user": self.user,
            "group": self.group,
            "log": "stderr",
            "hostname": "localhost",
            "auth_failure_delay": "100ms",
            "auth_penalty_max": "0",
        }
        if UNDER_VALGRIND:
            c["map_size"] = "1G"     # memcheck cannot map the default 1 TiB
        c.update(self.extra_config)
        return c

    def write_config(self, **overrides):
        self.extra_config.update(overrides)
        with open(self.conf_path, "w") as f:
            f.write("# written by coffer_harness\n")
            for k, v in self.config_dict().items():
                if isinstance(v, (list, tuple)):
                    for item in v:
                        f.write("%s = %s\n" % (k, item))
                elif v is not None:
                    f.write("%s = %s\n" % (k, v))

    def start(self, timeout=15):
        """Start cofferd and wait until it listens. free_port() only finds a
        port free at that moment: another test running at the same time can
        take it before cofferd binds it. On a first start with the harness's
        own ports, such a collision picks new ports and tries again; a
        restart keeps its ports (clients of the test know them)."""
        for attempt in range(5):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if attempt == 4 or self.started_once or \
                        {"listen", "listen_tls"} & set(self.extra_config):
                    raise
                self.port = free_port(self.host)
                self.tls_port = free_port(self.host)
                self.write_config()

    def _start_once(self, timeout):
        timeout *= TIMEOUT_SCALE
        if getattr(self, "_logf", None):
            self._logf.close()
        self._logf = open(self.log_path, "ab")
        log_start = len(self.log())
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("LISTEN_FDS", None)
        env.update(self.env)
        self.proc = subprocess.Popen(self.wrap + [cofferd_path(), "-F", "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                err = _PortTaken if "Address already in use" in self.log()[log_start:] \
                    else RuntimeError
                raise err("cofferd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            # cofferd logs "ready:" once it listens; with log = syslog fall
            # back to probing the ports.
            if "ready:" in self.log()[log_start:]:
                self.started_once = True
                return
            if self.config_dict().get("log") == "syslog" and \
                    self._accepts(self.tls_port) and self._accepts(self.port):
                self.started_once = True
                return
            time.sleep(0.05)
        raise RuntimeError("cofferd did not start listening:\n" + self.log())

    def _accepts(self, port):
        # A bare TCP probe: cofferd forks a child that sees EOF and exits.
        try:
            s = socket.create_connection((self.host, port), timeout=0.5 * TIMEOUT_SCALE)
            s.close()
            return True
        except OSError:
            return False

    def stop(self, timeout=20):
        """SIGTERM the parent and wait; returns its exit status."""
        timeout *= TIMEOUT_SCALE
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def reload(self, settle=0.5):
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(settle)

    def cleanup(self):
        """Stop cofferd, kill leftover children, remove the temporary
        directory; then raise AssertionError if the daemon log shows a
        sanitizer report or a crashed child (log_failures())."""
        bad = []
        try:
            if self.proc and self.proc.poll() is None:
                self.stop()
            if self.proc:
                for pid in self.child_pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        finally:
            if self in _live:
                _live.remove(self)
            if getattr(self, "_logf", None):
                self._logf.close()
            # read before the directory goes; once per server
            if self.tmp and not self.checked_log:
                self.checked_log = True
                bad = self.log_failures()
            if self.tmp and not os.environ.get("COFFER_KEEP_TMP"):
                shutil.rmtree(self.tmp, ignore_errors=True)
        if bad:
            raise AssertionError("cofferd log shows %d failure line(s):\n  %s"
                                 % (len(bad), "\n  ".join(bad[:20])))

    def log_failures(self):
        """The daemon log's lines that mean something went wrong in a
        child or the parent (LOG_FAILURE_RE); a sanitizer's 'ERROR:' line
        comes with the three after it (the access, the first frames)."""
        lines = self.log().splitlines()
        out = []
        for i, ln in enumerate(lines):
            if re.search(LOG_FAILURE_RE, ln):
                out.append(ln.strip())
                if "ERROR: " in ln:
                    out.extend("    " + x.strip() for x in lines[i + 1:i + 4])
        return out

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- clients ----
    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx

    def imap(self, tls=True, timeout=30):
        if tls:
            return imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=self.ssl_context(),
                                     timeout=timeout * TIMEOUT_SCALE)
        return imaplib.IMAP4(self.host, self.port, timeout=timeout * TIMEOUT_SCALE)

    def login(self, user, password, tls=True):
        m = self.imap(tls=tls)
        if not tls:
            m.starttls(ssl_context=self.ssl_context())
        m.login(user, password)
        return m

    def connect(self, tls=True, source=None, timeout=30, server_hostname="localhost"):
        """A raw socket (TLS-wrapped for the implicit-TLS port)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout * TIMEOUT_SCALE)
        if source:
            s.bind((source, 0))
        s.connect((self.host, self.tls_port if tls else self.port))
        if tls:
            s = self.ssl_context().wrap_socket(s, server_hostname=server_hostname)
        return s

    def child_pids(self):
        """pids of the parent's current children (one per connection)."""
        if not self.proc:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                if ppid == self.proc.pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
        return out

    def wait_children(self, n, timeout=10):
        timeout *= TIMEOUT_SCALE
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.child_pids()) == n:
                return True
            time.sleep(0.05)
        return False


class LineClient:
    """Minimal raw IMAP line client over a (TLS) socket, for tests that need
    exact bytes: send(), line(), until_tagged(tag)."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed; pending %r" % self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode(errors="replace")

    def until_tagged(self, tag):
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + " "):
                return lines

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


_live = []      # CofferServers entered and not yet cleaned up


def run_tests(namespace, names=None):
    """Run every test_* function of a module (or the given names) in order;
    prints one line per test (PASS, FAIL, SKIP); then cleans up every
    server still running (a module-wide one), which fails like a test if
    its log shows a sanitizer report or a crashed child. Exits 1 if
    anything failed, 77 (automake SKIP) if every test was skipped, else 0;
    the summary line counts skipped tests and skipped sub-checks."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    # COFFER_TESTS="test_a test_b": only those, in every module that has them
    # (re-running single tests through `make check`, e.g. under valgrind-all)
    if not names and os.environ.get("COFFER_TESTS"):
        names = os.environ["COFFER_TESTS"].split()
    if names:
        tests = [(n, f) for n, f in tests if n in names]
    failed = skipped = 0
    for name, fn in tests:
        t0 = time.time()
        parts = len(_skipped_parts)
        try:
            fn()
            extra = len(_skipped_parts) - parts
            print("PASS %s (%.1fs)%s" % (name, time.time() - t0,
                                         " [%d part(s) skipped]" % extra if extra else ""),
                  flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s (%.1fs): %s" % (name, time.time() - t0, e), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, time.time() - t0), flush=True)
            traceback.print_exc()
    torn = 0
    for srv in list(_live):
        try:
            srv.cleanup()
        except Exception:
            torn += 1
            print("FAIL teardown of a cofferd still running after the tests", flush=True)
            traceback.print_exc()
    summary = "%d/%d passed" % (len(tests) - failed - skipped, len(tests))
    if torn:
        summary += ", %d teardown(s) FAILED" % torn
        failed += torn
    if skipped or _skipped_parts:
        summary += "; SKIP: %d test(s), %d sub-check(s) skipped" % (skipped, len(_skipped_parts))
        for r in sorted(set(_skipped_parts)):
            summary += "\n  SKIP: %s" % r
    print(summary, flush=True)
    if failed:
        sys.exit(1)
    sys.exit(SKIP if tests and skipped == len(tests) else 0)
