"""cofferlib — shared helpers for Coffer integration tests (tests/integration/*.py).

Tests are plain scripts run by the automake harness (PY_LOG_COMPILER=python3):
exit 0 = pass, 77 = skip, 99 = hard error, anything else = fail. Everything
they need comes from the environment set in Makefile.am, so the same test
runs in build/, in distcheck's read-only tree, and under tests/valgrind-all:

    COFFER, COFFERD        binaries to run (may be memcheck wrappers)
    COFFER_BUILDDIR/SRCDIR top build / source dirs
    COFFER_SHARED          ../shared next to the checkout
    COFFER_REQUIRE_SHARED  1 in scripts/check: missing shared data fails
    COFFER_TIMEOUT_SCALE   multiply time limits (valgrind sets 10)
    COFFER_TEST_HOOKS      "yes" when built with --enable-test-hooks

Usage:
    import cofferlib as T
    d = T.tmpdir()                       # removed at exit, usable by `coffer` user
    T.coffer('--data-dir', d, 'instance', 'add', 'demo')
"""
import atexit
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SKIP, HARD_ERROR = 77, 99

BUILDDIR = os.environ.get('COFFER_BUILDDIR', '')
SRCDIR = os.environ.get('COFFER_SRCDIR', '')
COFFER = os.environ.get('COFFER') or os.path.join(BUILDDIR, 'coffer')
COFFERD = os.environ.get('COFFERD') or os.path.join(BUILDDIR, 'cofferd')
SHARED = os.environ.get('COFFER_SHARED') or os.path.join(SRCDIR, '..', 'shared')
REQUIRE_SHARED = os.environ.get('COFFER_REQUIRE_SHARED') == '1'
SCALE = float(os.environ.get('COFFER_TIMEOUT_SCALE', '1') or 1)
TEST_HOOKS = os.environ.get('COFFER_TEST_HOOKS') == 'yes'


def log(*a):
    print(*a, flush=True)


def skip(why):
    log('SKIP:', why)
    sys.exit(SKIP)


def fail(why):
    log('FAIL:', why)
    sys.exit(1)


def check(cond, why):
    """Assert that keeps running under python3 -O."""
    if not cond:
        fail(why)


def timeout(seconds):
    return seconds * SCALE


def shared(*parts):
    """Path under ../shared. Missing: skip locally, fail in scripts/check."""
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        msg = 'shared data missing: %s (set COFFER_SHARED)' % p
        if REQUIRE_SHARED:
            fail(msg)
        skip(msg)
    return p


def need_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        # Registered in TESTS but the program is not built: that is a failure.
        fail('binary not found: %s' % path)
    return path


def srcpath(*parts):
    return os.path.join(SRCDIR, *parts)


def _coffer_ids():
    try:
        pw = pwd.getpwnam('coffer')
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return None


def tmpdir(prefix='coffer-test.'):
    """A fresh directory, removed at exit. When the tests run as root, the
    tools switch to the `coffer` user, so the directory is handed to it."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    if os.geteuid() == 0:
        ids = _coffer_ids()
        if ids:
            os.chown(d, *ids)
    os.chmod(d, 0o755)
    return d


def coffer(*args, input=None, check_rc=True, timeout_s=300):
    """Run the admin CLI; returns CompletedProcess (stdout/stderr as bytes)."""
    need_binary(COFFER.split()[0] if ' ' in COFFER else COFFER)
    p = subprocess.run([COFFER] + [str(a) for a in args], input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout(timeout_s))
    if check_rc and p.returncode != 0:
        fail('coffer %s: exit %d\n%s' % (' '.join(map(str, args)), p.returncode,
                                         p.stderr.decode(errors='replace')))
    return p


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (tests run in parallel)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, host='127.0.0.1', seconds=10, proc=None):
    end = time.monotonic() + timeout(seconds)
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            fail('server exited with %s before listening on %d' % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    fail('nothing listening on %s:%d after %ss' % (host, port, seconds))


def make_cert(d, cn='localhost'):
    """Self-signed certificate + key in d; returns (cert, key)."""
    cert, key = os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=' + cn,
                    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.geteuid() == 0 and _coffer_ids():
        os.chown(key, *_coffer_ids())
    os.chmod(key, 0o600)
    return cert, key


def canonical(b):
    """The form IMAP serves (proto/canon.h): every bare LF becomes CRLF,
    a bare CR stays."""
    return b.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
