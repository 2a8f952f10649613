"""test_crash — kill -9 an import at random points (20 times); after each
kill `coffer verify` must pass; re-running finishes the job with exactly the
source's messages (export is byte-identical). A backup taken while an
import runs restores to an instance that verifies.
Env: COFFER_TEST_CRASH_COUNT (default 3000 messages), COFFER_TEST_KILLS (20)."""
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cofferlib as T  # noqa: E402

TOP = T.tmpdir()
DATA = os.path.join(TOP, 'data')
count = int(os.environ.get('COFFER_TEST_CRASH_COUNT', '3000'))
kills = int(os.environ.get('COFFER_TEST_KILLS', '20'))
rng = random.Random(int(os.environ.get('COFFER_TEST_SEED', '0')) or None)


def C(*args, rc=0):
    p = T.coffer('--data-dir', DATA, *args, check_rc=False)
    if rc is not None and p.returncode != rc:
        T.fail('coffer %s: exit %d\n%s%s' % (' '.join(args), p.returncode,
                                            p.stdout.decode(errors='replace'),
                                            p.stderr.decode(errors='replace')))
    return p.stdout.decode(errors='replace')


src = os.path.join(TOP, 'src.mbox')
gen = os.path.join(T.shared('tools'), 'gen-corpus')
subprocess.run([sys.executable, gen, '--format', 'mbox', '--count', str(count), '--out', src,
                '--seed', '7', '--quiet'], check=True)
with open(os.path.join(TOP, 'pw'), 'w') as f:
    f.write('pw')
C('instance', 'add', 'crash')
C('user', 'add', 'crash/u', '--password-file', os.path.join(TOP, 'pw'))

env = dict(os.environ, COFFER_IMPORT_BATCH='25')   # many small commits
cmd = [T.COFFER, '--data-dir', DATA, 'import', 'crash/u', '--folder', 'Crash', src]

# Each run gets a short random time before the kill, so the kills fall at
# different points of the import (between and inside commits).
window = T.timeout(0.2)
done_early = 0
for i in range(kills):
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.02, window))
    if p.poll() is not None:
        done_early += 1
    p.send_signal(signal.SIGKILL)
    p.wait()
    out = C('verify', 'crash', rc=None)
    T.check('instance crash: OK' in out, 'verify after kill %d failed:\n%s' % (i, out))

out = C('import', 'crash/u', '--folder', 'Crash', src)
m = re.search(r'imported (\d+), already present (\d+)', out)
T.check(m and int(m.group(1)) + int(m.group(2)) == count, 'final import: %r' % out)
back = os.path.join(TOP, 'back.mbox')
C('export', 'crash/u', '--folder', 'Crash', '--format', 'mbox', back)
with open(back, 'rb') as a, open(src, 'rb') as b:
    T.check(a.read() == b.read(), 'after %d kills the archive differs from the source' % kills)
out = C('stats', 'crash')
T.check('messages: %d in mailboxes, %d unique' % (count, count) in out, 'stats: %r' % out)

# backup while an import runs (a second folder), restore, verify
C('user', 'add', 'crash/v', '--password-file', os.path.join(TOP, 'pw'))
p = subprocess.Popen([T.COFFER, '--data-dir', DATA, 'import', 'crash/v', src], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(rng.uniform(0.1, window))
bk = os.path.join(TOP, 'backup')
C('backup', 'crash', bk)
p.wait()
T.check(p.returncode == 0, 'import during backup failed')
C('restore', bk, 'restored')
out = C('verify', 'restored')
T.check('instance restored: OK' in out, 'restored backup does not verify: %r' % out)
T.log('ok: %d kills (%d after the import had finished), archive exact' % (kills, done_early))
