"""test_cli — the `coffer` admin CLI end to end (issue 2).

Instances, aliases, users, grants; import of every file of ../shared/corpus
and of a gen-corpus archive; export as mbox, eml and Maildir compared byte
for byte; re-import adds nothing; every bad input of issue 2 item 6; verify,
stats, backup/restore, reindex, upgrade.
Env: COFFER_TEST_GEN_COUNT (default 10000) sizes the generated archive."""
import hashlib
import os
import re
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cofferlib as T  # noqa: E402

TOP = T.tmpdir()
DATA = os.path.join(TOP, 'data')


def C(*args, rc=0, data=DATA, input=None):
    p = T.coffer('--data-dir', data, *args, check_rc=False, input=input)
    out = p.stdout.decode(errors='replace')
    err = p.stderr.decode(errors='replace')
    if rc is not None and p.returncode != rc:
        T.fail('coffer %s: exit %d, wanted %d\nstdout: %s\nstderr: %s'
               % (' '.join(map(str, args)), p.returncode, rc, out, err))
    return out, err


def summary(out):
    m = re.search(r'imported (\d+), already present (\d+), malformed \(archived as is\) (\d+), '
                  r'(\d+) bytes', out)
    T.check(m, 'no summary line in: %r' % out)
    return tuple(int(x) for x in m.groups())


def write(path, data, mode=0o644):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def split_mbox(data):
    """The splitting rule of ../shared/tools/imap-append, plus mboxrd
    un-quoting (what coffer stores)."""
    msgs, cur, prev_blank = [], None, True
    for ln in data.splitlines(True):
        if ln.startswith(b'From ') and prev_blank:
            if cur is not None:
                msgs.append(cur)
            cur, prev_blank = [], False
            continue
        if cur is not None:
            cur.append(ln)
        prev_blank = ln in (b'\n', b'\r\n')
    if cur is not None:
        msgs.append(cur)
    out = []
    for m in msgs:
        if m and m[-1] in (b'\n', b'\r\n'):
            m = m[:-1]
        out.append(b''.join(re.sub(rb'^>(>*From )', rb'\1', x) for x in m))
    return out


pw = os.path.join(TOP, 'pw')
write(pw, b'Secr3t pass\n')

# ---- instances, aliases, users, grants ----
C('instance', 'add', 'demo', '--alias', 'Example')
out, _ = C('instance', 'list')
T.check('demo aliases: example' in out, 'instance list: %r' % out)
_, err = C('instance', 'add', '-bad', rc=1)
T.check('[a-z0-9._-]' in err, 'bad id message: %r' % err)
_, err = C('instance', 'add', 'b/d', rc=1)
T.check('[a-z0-9._-]' in err, 'bad id message: %r' % err)
_, err = C('instance', 'alias', 'add', 'demo', 'DEMO', rc=1)
T.check('already' in err, 'alias = id accepted: %r' % err)
_, err = C('instance', 'add', 'example', rc=1)
T.check('already' in err, 'id = alias accepted: %r' % err)
C('user', 'add', 'example/Alice', '--password-file', pw)
C('user', 'add', 'demo/boss', '--admin', '--password-file', pw)
C('user', 'add', 'demo/bob', input=b'pw-from-stdin\n')
out, _ = C('user', 'list', 'demo')
T.check(out.split('\n')[:3] == ['alice', 'bob', 'boss admin'], 'user list: %r' % out)
_, err = C('user', 'add', 'demo/a%b', '--password-file', pw, rc=1)
T.check("'%'" in err and 'allowed' in err, 'bad user name: %r' % err)
_, err = C('user', 'add', 'nope/x', '--password-file', pw, rc=1)
T.check('unknown instance' in err, 'unknown instance: %r' % err)
C('instance', 'add', 'other')
C('user', 'add', 'other/bob', '--password-file', pw)
_, err = C('grant', 'demo/bob', '--read', 'other/bob', rc=1)
T.check('one instance' in err, 'cross-instance grant: %r' % err)
C('grant', 'demo/bob', '--read', 'example/alice')
C('revoke', 'demo/bob', '--read', 'demo/alice')
_, err = C('revoke', 'demo/bob', '--read', 'demo/alice', rc=1)
C('user', 'disable', 'demo/bob')
out, _ = C('user', 'list', 'demo')
T.check('bob disabled' in out, 'disable: %r' % out)
C('instance', 'disable', 'other')
out, _ = C('instance', 'list')
T.check('other (disabled)' in out, 'instance disable: %r' % out)
_, err = C('instance', 'rm', 'other', rc=1)
T.check('--force' in err, 'rm of non-empty instance: %r' % err)
C('instance', 'rm', 'other', '--force')
out, _ = C('instance', 'list')
T.check('other' not in out, 'instance rm: %r' % out)

# run as root, coffer works as the owner of data_dir: no root-owned lock.mdb
if os.geteuid() == 0 and T._coffer_ids():
    for f in ('registry/lock.mdb', 'instances/demo/lock.mdb', 'instances/demo/data.mdb'):
        st = os.stat(os.path.join(DATA, f))
        T.check(st.st_uid == T._coffer_ids()[0], '%s is not owned by the coffer user' % f)
        T.check(not st.st_mode & 0o007, '%s is world-accessible (umask 027)' % f)

# ---- the whole shared corpus ----
corpus = T.shared('corpus')
emls, mbox_msgs, mboxes = [], 0, []
for root, dirs, files in os.walk(corpus):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(root, f)
        if f.endswith('.eml'):
            emls.append(p)
        elif f.endswith('.mbox'):
            data = read(p)
            if data.startswith(b'From ') or data.startswith(b'\xef\xbb\xbfFrom '):
                mbox_msgs += len(split_mbox(data[3:] if data[:3] == b'\xef\xbb\xbf' else data))
                mboxes.append(p)
            elif data:
                mbox_msgs += 1          # archived whole, with a warning
total = len(emls) + mbox_msgs
out, err = C('import', 'demo/alice', corpus)
imported, present, malformed, nbytes = summary(out)
T.check(imported == total and present == 0, 'corpus import: %r, expected %d' % (out, total))
T.check(malformed > 0, 'the corpus has malformed messages on purpose')
out, _ = C('import', 'demo/alice', corpus)
T.check(summary(out)[:2] == (0, total), 're-import added something: %r' % out)

exp = os.path.join(TOP, 'exp-mbox')
C('export', 'demo/alice', '--format', 'mbox', exp)
for p in mboxes:
    rel = os.path.relpath(p, corpus)
    got = os.path.join(exp, rel)
    T.check(os.path.exists(got), 'missing export %s' % got)
    T.check(read(got) == read(p), 'mbox round trip differs: %s' % rel)
exp = os.path.join(TOP, 'exp-eml')
C('export', 'demo/alice', '--format', 'eml', exp)
bydir = {}
for p in emls:
    bydir.setdefault(os.path.dirname(os.path.relpath(p, corpus)), []).append(p)
for d, files in bydir.items():
    got = sorted(os.listdir(os.path.join(exp, d)))
    T.check(len(got) == len(files), 'eml export count differs in %s' % d)
    for src, g in zip(files, got):
        T.check(read(src) == read(os.path.join(exp, d, g)), 'eml differs: %s' % src)

# Maildir export -> import as another user -> same messages, flags, folders
md = os.path.join(TOP, 'exp-maildir')
C('export', 'demo/alice', '--format', 'maildir', md)
C('user', 'add', 'demo/carol', '--password-file', pw)
out, _ = C('import', 'demo/carol', md)
T.check(summary(out)[0] == total, 'maildir re-import: %r' % out)
md2 = os.path.join(TOP, 'exp-maildir2')
C('export', 'demo/carol', '--format', 'maildir', md2)
listing = lambda r: sorted((os.path.relpath(dp, r), sorted(fs)) for dp, _, fs in os.walk(r))
T.check(listing(md) == listing(md2), 'maildir round trip: different files')
for dp, _, fs in os.walk(md):
    for f in fs:
        a = os.path.join(dp, f)
        T.check(read(a) == read(os.path.join(md2, os.path.relpath(a, md))), 'maildir %s' % a)

# ---- a generated archive ----
count = int(os.environ.get('COFFER_TEST_GEN_COUNT', '10000'))
gen = os.path.join(T.shared('tools'), 'gen-corpus')
big = os.path.join(TOP, 'big.mbox')
subprocess.run([sys.executable, gen, '--format', 'mbox', '--count', str(count), '--out', big,
                '--quiet'], check=True)
C('user', 'add', 'demo/gen', '--password-file', pw)
out, _ = C('import', 'demo/gen', '--folder', 'Archives/Big', big)
T.check(summary(out)[0] == count, 'gen-corpus import: %r' % out)
back = os.path.join(TOP, 'big-back.mbox')
C('export', 'demo/gen', '--folder', 'Archives/Big', '--format', 'mbox', back)
T.check(read(back) == read(big), 'gen-corpus mbox round trip differs')
os.unlink(back)
# ... and its attachments were stored in the base64 chunk form (decoded
# octets, store/b64chunk.h): the round trip above went through it. Count
# the values' magic in data.mdb (by chance in stored text: ~1 per 16 M).
def count_in_file(path, needle, piece=1 << 24):
    n, tail = 0, b''
    with open(path, 'rb') as f:
        while True:
            b = f.read(piece)
            if not b:
                return n
            n += (tail + b).count(needle)
            tail = b[-(len(needle) - 1):]
nb64 = count_in_file(os.path.join(DATA, 'instances', 'demo', 'data.mdb'), b'CB64')
T.check(nb64 >= count // 10, 'gen-corpus: only %d base64-form chunks' % nb64)
out, _ = C('import', 'demo/gen', '--folder', 'Archives/Big', big)
T.check(summary(out)[:2] == (0, count), 'gen-corpus re-import: %r' % out)

# ---- bad inputs (issue 2 item 6) ----
C('user', 'add', 'demo/bad', '--password-file', pw)
bad = os.path.join(TOP, 'bad')
os.mkdir(bad)
os.chmod(bad, 0o755)
if os.geteuid() == 0 and T._coffer_ids():
    os.chown(bad, *T._coffer_ids())     # exports are written by the coffer user
_, err = C('import', 'demo/bad', os.path.join(bad, 'missing'), rc=1)
T.check('No such file' in err, 'missing source: %r' % err)
unreadable = os.path.join(bad, 'secret.eml')
write(unreadable, b'Subject: x\n\ny\n', 0o000)
if os.geteuid() != 0 or T._coffer_ids():
    _, err = C('import', 'demo/bad', unreadable, rc=1)
    T.check('Permission denied' in err, 'unreadable source: %r' % err)
notmd = os.path.join(bad, 'notmaildir')
os.makedirs(os.path.join(notmd, 'sub'))
write(os.path.join(notmd, 'README.txt'), b'hello')
_, err = C('import', 'demo/bad', notmd, rc=1)
T.check('neither a Maildir' in err, 'not a Maildir: %r' % err)
binp = os.path.join(bad, 'binary.mbox')
write(binp, bytes(range(256)) * 64)
_, err = C('import', 'demo/bad', binp, rc=1)
T.check('not an mbox' in err, 'binary as mbox: %r' % err)
empty = os.path.join(bad, 'empty.eml')
write(empty, b'')
_, err = C('import', 'demo/bad', empty, rc=1)
T.check('empty' in err, 'empty file: %r' % err)
src = read(os.path.join(corpus, 'mbox', 'imaptest-fetch-body.mbox'))
trunc = os.path.join(bad, 'trunc.mbox')
write(trunc, src[:len(src) * 2 // 3])
out, _ = C('import', 'demo/bad', trunc)
want = split_mbox(src[:len(src) * 2 // 3])
T.check(summary(out)[0] == len(want), 'truncated mbox: %r' % out)
tb = os.path.join(bad, 'trunc-back.mbox')
C('export', 'demo/bad', '--folder', 'trunc', '--format', 'mbox', tb)
T.check(split_mbox(read(tb)) == want, 'truncated mbox: messages differ')
nul = os.path.join(bad, 'nul.eml')
write(nul, b'Subject: nul\n\nbefore\0after\n')
out, _ = C('import', 'demo/bad', '--folder', 'Nul', nul)
T.check(summary(out)[0] == 1 and summary(out)[2] == 1, 'NUL message: %r' % out)
C('export', 'demo/bad', '--folder', 'Nul', '--format', 'eml', os.path.join(bad, 'nul-out'))
T.check(read(os.path.join(bad, 'nul-out', '0000000001.eml')) == read(nul), 'NUL round trip')
# 50 MiB message
hugep = os.path.join(bad, 'huge.eml')
line = (hashlib.sha256(b'x').hexdigest() * 2)[:76] + '\n'
body = ''.join(line for _ in range(50 * 1024 * 1024 // 77 + 1)).encode()
write(hugep, b'Subject: huge\nContent-Type: text/plain\n\n' + body)
del body
out, _ = C('import', 'demo/bad', '--folder', 'Huge', hugep)
T.check(summary(out)[0] == 1, '50 MiB message: %r' % out)
C('export', 'demo/bad', '--folder', 'Huge', '--format', 'eml', os.path.join(bad, 'huge-out'))
T.check(read(os.path.join(bad, 'huge-out', '0000000001.eml')) == read(hugep), '50 MiB round trip')
os.unlink(hugep)
# Maildir with files vanishing during import (a dangling entry stands for a
# file removed between listing and reading)
vm = os.path.join(bad, 'vanish')
for s in ('cur', 'new', 'tmp'):
    os.makedirs(os.path.join(vm, s))
write(os.path.join(vm, 'cur', '1.A.h:2,S'), b'Subject: stays\n\n1\n')
os.symlink(os.path.join(vm, 'gone'), os.path.join(vm, 'cur', '2.B.h:2,S'))
write(os.path.join(vm, 'new', '3.C.h'), b'Subject: stays too\n\n3\n')
out, err = C('import', 'demo/bad', '--folder', 'Vanish', vm)
T.check(summary(out)[0] == 2 and 'vanished' in out and 'vanished' in err,
        'vanishing files: %r %r' % (out, err))
# unknown instance / user
_, err = C('import', 'nope/alice', trunc, rc=1)
T.check('unknown instance' in err, 'unknown instance: %r' % err)
_, err = C('import', 'demo/nobody', trunc, rc=1)
T.check('unknown user' in err, 'unknown user: %r' % err)
# LMDB map full: clear error, store still consistent
small = os.path.join(TOP, 'small-data')
conf = os.path.join(TOP, 'small.conf')
write(conf, b'map_size = 2M\n')
T.coffer('-c', conf, '--data-dir', small, 'instance', 'add', 'tiny')
T.coffer('-c', conf, '--data-dir', small, 'user', 'add', 'tiny/u', '--password-file', pw)
rnd = os.path.join(bad, 'random.eml')
write(rnd, b'Subject: r\n\n' + os.urandom(3 * 1024 * 1024))
p = T.coffer('-c', conf, '--data-dir', small, 'import', 'tiny/u', rnd, check_rc=False)
T.check(p.returncode == 1 and b'map_size' in p.stderr, 'map full: %r' % p.stderr)
p = T.coffer('-c', conf, '--data-dir', small, 'verify', check_rc=False)
T.check(p.returncode == 0, 'verify after map full: %r' % p.stdout)

# ---- verify, stats, reindex, upgrade, backup/restore ----
out, _ = C('verify')
T.check('instance demo: OK' in out, 'verify: %r' % out)
out, _ = C('stats', 'example')
T.check('dedup ratio' in out and 'compression ratio' in out and 'user alice' in out,
        'stats: %r' % out)
m = re.search(r'chunk dedup: (\d+) chunks, (\d+) references; (\d+) unique raw octets of (\d+)', out)
T.check(m and 0 < int(m.group(1)) <= int(m.group(2)) and 0 < int(m.group(3)) <= int(m.group(4)),
        'stats chunk dedup line: %r' % out)
out, _ = C('upgrade')
T.check('up to date' in out, 'upgrade: %r' % out)
bk = os.path.join(TOP, 'backup')
C('backup', 'demo', bk)
C('restore', bk, 'demo2')
_, err = C('restore', bk, 'demo2', rc=1)
out, _ = C('verify', 'demo2')
T.check('OK' in out, 'verify of restored instance: %r' % out)
out, _ = C('user', 'list', 'demo2')
T.check('boss admin' in out and 'bob disabled' in out, 'restored users: %r' % out)
r1, r2 = os.path.join(TOP, 'r1.mbox'), os.path.join(TOP, 'r2.mbox')
C('export', 'demo/alice', '--folder', 'mbox/imaptest-default', '--format', 'mbox', r1)
C('export', 'demo2/alice', '--folder', 'mbox/imaptest-default', '--format', 'mbox', r2)
T.check(read(r1) == read(r2), 'restored instance exports differently')
out, _ = C('reindex', 'demo2')
T.check(re.search(r'reindexed \d+ messages', out), 'reindex: %r' % out)
out, _ = C('verify', 'demo2')
T.check('OK' in out, 'verify after reindex: %r' % out)

# a damaged store: verify fails with a precise report and exit 3
victim = os.path.join(DATA, 'instances', 'demo2', 'data.mdb')
raw = bytearray(read(victim))
pos = raw.find(b'"s22"')     # ENVELOPE subject inside a msginfo record
T.check(pos > 0, 'msginfo record of imaptest-default not found in data.mdb')
raw[pos + 2] ^= 0x01
st = os.stat(victim)
write(victim, bytes(raw), stat.S_IMODE(st.st_mode))
if os.geteuid() == 0:
    os.chown(victim, st.st_uid, st.st_gid)
p = T.coffer('--data-dir', DATA, 'verify', 'demo2', check_rc=False)
T.check(p.returncode == 3 and b'demo2' in p.stdout, 'verify missed corruption: %d %r'
        % (p.returncode, p.stdout[-400:]))
# ---- import UX: progress ETA for directories, --folder Users, full disk ----
# On a terminal the progress line has a percentage and an ETA for directory
# sources too (the files are counted first): the final line reads 100%.
import pty  # noqa: E402
ux = os.path.join(TOP, 'ux')
os.makedirs(ux)
md = os.path.join(ux, 'Maildir')
for sub in ('cur', 'new', 'tmp', '.Sub/cur', '.Sub/new', '.Sub/tmp'):
    os.makedirs(os.path.join(md, sub))
for i in range(30):
    write(os.path.join(md, 'new' if i % 2 else '.Sub/cur', '%d.M%d.host:2,S' % (1700000000 + i, i)),
          b'Subject: ux %d\n\n' % i + b'x' * 5000 + b'\n')
write(os.path.join(md, 'dovecot-uidlist'), b'3 V1 N31\n' + b'#' * 100000)   # not mail
emls = os.path.join(ux, 'emls')
os.makedirs(emls)
for i in range(12):
    write(os.path.join(emls, '%02d.eml' % i), b'Subject: e %d\n\n' % i + b'y' * 3000 + b'\n')
for d in (ux, md, emls):
    os.chmod(d, 0o755)
for root, dirs, files in os.walk(ux):
    for x in dirs:
        os.chmod(os.path.join(root, x), 0o755)
C('user', 'add', 'demo/ux', '--password-file', pw)


def import_on_tty(*args):
    master, slave = pty.openpty()
    p = subprocess.Popen(T.COFFER.split() + ['--data-dir', DATA, 'import'] + list(args),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    out = p.stdout.read().decode(errors='replace')
    p.wait(timeout=T.timeout(120))
    os.close(master)
    return p.returncode, out, b''.join(chunks).decode(errors='replace')


for src, n in ((md, 30), (emls, 12)):
    rc, out, tty = import_on_tty('demo/ux', '--folder', 'UX/%s' % os.path.basename(src), src)
    T.check(rc == 0 and summary(out)[0] == n, 'tty import of %s: %r %r' % (src, out, tty))
    last = tty.replace('\r\n', '\n').split('\r')[-1]
    T.check(re.search(r'\] 100%% %d msgs .* ETA \d+m\d\ds' % n, last),
            'progress of a directory import has no percentage/ETA: %r' % tty[-300:])
# an explicit --folder inside the Users/ namespace is refused, clearly;
# a source folder named Users is renamed with a warning (as before)
for name in ('Users', 'users/bob', 'USERS/x/y'):
    _, err = C('import', 'demo/ux', '--folder', name, os.path.join(emls, '00.eml'), rc=1)
    T.check('Users/' in err and 'namespace' in err and 'Users-imported' in err,
            '--folder %s: %r' % (name, err))
out, _ = C('stats', 'demo')
T.check(not re.search(r'^\s+users(/|\s)', out, re.I | re.M), 'a Users folder was created: %r' % out)
mu = os.path.join(ux, 'Maildir2')
for sub in ('cur', 'new', 'tmp', '.Users.bob/cur', '.Users.bob/new', '.Users.bob/tmp'):
    os.makedirs(os.path.join(mu, sub))
write(os.path.join(mu, '.Users.bob/cur', '1.M1.h:2,S'), b'Subject: u\n\nu\n')
for root, dirs, files in os.walk(mu):
    os.chmod(root, 0o755)
out, err = C('import', 'demo/ux', mu)
T.check(summary(out)[0] == 1 and "renamed to 'Users-imported/bob'" in err, 'Users maildir: %r' % err)
# a full file system: a clear "No space left on device", never a bare EIO,
# and the store stays consistent (root only: needs a small tmpfs)
mnt = os.path.join(TOP, 'tiny-fs')
os.makedirs(mnt)
if os.geteuid() == 0 and subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt],
                                        stderr=subprocess.DEVNULL).returncode == 0:
    try:
        if T._coffer_ids():
            os.chown(mnt, *T._coffer_ids())
        fd = os.path.join(mnt, 'data')
        C('instance', 'add', 'full', data=fd)
        C('user', 'add', 'full/u', '--password-file', pw, data=fd)
        big = os.path.join(ux, 'big.eml')
        import base64  # noqa: E402
        write(big, b'Subject: big\n\n' + base64.encodebytes(os.urandom(4 * 1024 * 1024)))
        out, err = C('import', 'full/u', big, data=fd, rc=1)
        T.check('No space left on device' in err and 'is full' in err, 'disk full: %r' % err)
        T.check('stopped by the error' in out, 'disk full summary: %r' % out)
        out, _ = C('verify', 'full', data=fd)
        T.check('instance full: OK' in out, 'verify after disk full: %r' % out)
    finally:
        subprocess.run(['umount', '-l', mnt])
else:
    T.log('SKIP-PART: full disk (needs root and a tmpfs mount)')

T.log('ok: %d corpus messages, %d generated, all round trips byte-exact' % (total, count))
