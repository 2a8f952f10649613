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
wait_children(n), reload(), stop(), write_config(**overrides).

Environment: COFFERD / COFFER name the binaries (else COFFER_BUILDDIR/cofferd
and COFFER_BUILDDIR/coffer, else ./cofferd and ./coffer).
"""

import imaplib
import os
import pwd
import grp
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
# tests/valgrind-all runs the binaries under memcheck: stretch time limits
# by COFFER_TIMEOUT_SCALE; timing comparisons should check UNDER_VALGRIND.
TIMEOUT_SCALE = float(os.environ.get("COFFER_TIMEOUT_SCALE") or 1)
UNDER_VALGRIND = bool(os.environ.get("COFFER_VALGRIND"))


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

    # ---- lifecycle ----
    def __enter__(self):
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
                raise RuntimeError("cofferd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            # cofferd logs "ready:" once it listens; with log = syslog fall
            # back to probing the ports.
            if "ready:" in self.log()[log_start:]:
                return
            if self.config_dict().get("log") == "syslog" and \
                    self._accepts(self.tls_port) and self._accepts(self.port):
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
            if getattr(self, "_logf", None):
                self._logf.close()
            if self.tmp and not os.environ.get("COFFER_KEEP_TMP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

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


def run_tests(namespace, names=None):
    """Run every test_* function of a module (or the given names) in order;
    prints one line per test; exits 0 if all passed, 1 otherwise."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    # COFFER_TESTS="test_a test_b": only those, in every module that has them
    # (re-running single tests through `make check`, e.g. under valgrind-all)
    if not names and os.environ.get("COFFER_TESTS"):
        names = os.environ["COFFER_TESTS"].split()
    if names:
        tests = [(n, f) for n, f in tests if n in names]
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print("PASS %s (%.1fs)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, time.time() - t0), flush=True)
            traceback.print_exc()
    print("%d/%d passed" % (len(tests) - failed, len(tests)))
    sys.exit(1 if failed else 0)
