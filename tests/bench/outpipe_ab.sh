#!/bin/bash
# outpipe_ab.sh — cofferd with and without the output writer thread
# (output_thread = yes/no), same messages, same server, alternating.
#
#   tests/bench/outpipe_ab.sh [COUNT] [ROUNDS]   (default 20000 messages, 3)
#
# One gen-corpus Maildir is imported once; each round runs, for
# output_thread = yes and then no (switched by SIGHUP, which applies to new
# connections): the Thunderbird folder open (header fetch 1:*) three times,
# the full download (UID FETCH 1:* BODY.PEEK[]) twice over TLS, and the
# folder open three times over TLS+COMPRESS; with BENCH_Z_DOWNLOAD=1 also
# one full download over TLS+COMPRESS per mode at the end (slow: deflate
# of every octet). Prints one line per command: mode, workload, wall
# seconds, octets, and the server's CPU seconds for the whole imapbench run
# (utime+stime of the process tree, reaped children included). Alternating
# the modes in every round spreads the noise of a shared machine evenly.
# Needs root, ../shared/tools/gen-corpus and a build (COFFER_BUILDDIR).
set -euo pipefail

COUNT=${1:-20000}
ROUNDS=${2:-3}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${COFFER_BUILDDIR:-.}" && pwd)
shared=${COFFER_SHARED:-$src/../shared}
ib=$build/tests/bench/imapbench
COFFER=${COFFER:-$build/coffer}
COFFERD=${COFFERD:-$build/cofferd}
[ "$(id -u)" = 0 ] || { echo "outpipe_ab.sh: needs root" >&2; exit 77; }
for f in "$ib" "$COFFER" "$COFFERD" "$shared/tools/gen-corpus"; do
    [ -x "$f" ] || { echo "outpipe_ab.sh: missing $f" >&2; exit 77; }
done

work=$(mktemp -d "${BENCH_DIR:-/tmp}/coffer-ab-XXXXXX")
chmod 755 "$work"
cpid=
cleanup() {
    [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu() { # ROOTPID: utime+stime+cutime+cstime of the tree, seconds
    python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            st = open("/proc/%s/stat" % d).read()
            f = st[st.rindex(")") + 2:].split()
            kids.setdefault(int(f[1]), []).append(int(d))
        except OSError:
            pass
todo, total = [root], 0
while todo:
    pid = todo.pop()
    try:
        st = open("/proc/%d/stat" % pid).read()
    except OSError:
        continue
    f = st[st.rindex(")") + 2:].split()
    total += sum(int(x) for x in f[11:15])
    todo += kids.get(pid, [])
print("%.3f" % (total / os.sysconf("SC_CLK_TCK")))
EOF
}

log "generating $COUNT messages"
"$shared/tools/gen-corpus" --format maildir --count "$COUNT" --seed 1 --out "$work/md" --quiet
data=$work/data
mkdir -m 750 "$data"
cuser=coffer
id "$cuser" >/dev/null 2>&1 || useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$cuser"
chown "$cuser:$(id -gn $cuser)" "$data"
ctls=$(freeport)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -days 2 -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
conf() {
    cat > "$work/cofferd.conf" <<EOF
data_dir = $data
listen = 127.0.0.1:$(freeport)
listen_tls = 127.0.0.1:$ctls
tls_cert = $work/cert.pem
tls_key = $work/key.pem
user = $cuser
group = $(id -gn $cuser)
log = stderr
hostname = localhost
output_thread = $1
EOF
}
conf yes
C() { "$COFFER" -c "$work/cofferd.conf" --data-dir "$data" "$@"; }
C instance add b >/dev/null
echo test > "$work/pw"
C user add b/test --password-file "$work/pw" >/dev/null
log "import"
C import b/test --folder bench "$work/md" >/dev/null
find "$data" \( -name auth.secret -o -path "$data/dev*" \) -prune -o -print0 |
    xargs -0 chown -h "$cuser:$(id -gn $cuser)"
"$COFFERD" -F -c "$work/cofferd.conf" >"$work/cofferd.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q "ready:" "$work/cofferd.log" && break; sleep 0.1; done

hdr='UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To Received)])'
dl='UID FETCH 1:* BODY.PEEK[]'
one() { # MODE LABEL imapbench-args...
    local mode=$1 label=$2; shift 2
    local c0 c1
    c0=$(cpu "$cpid")
    "$ib" -t -h 127.0.0.1 -p "$ctls" -u b/test -P test -m bench "$@" > "$work/out" 2>&1 ||
        log "imapbench failed: $(head -c 300 "$work/out")"
    sleep 0.3
    c1=$(cpu "$cpid")
    grep '^RESULT mode=cmd' "$work/out" | while read -r _ _ idx _ wall ccpu octets _; do
        echo "$mode $label $idx $wall $octets $ccpu server_cpu_run=$(python3 -c "print('%.2f' % ($c1 - $c0))")"
    done
}
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for mode in yes no; do
        conf "$mode"
        kill -HUP "$cpid"
        sleep 0.5
        one "$mode" folderopen -e "$hdr" -e "$hdr" -e "$hdr"
        one "$mode" download -e "$dl" -e "$dl"
        one "$mode" folderopen_z -z -e "$hdr" -e "$hdr" -e "$hdr"
    done
    log "round $r done; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
if [ "${BENCH_Z_DOWNLOAD:-0}" = 1 ]; then
    for mode in yes no; do
        conf "$mode"
        kill -HUP "$cpid"
        sleep 0.5
        one "$mode" download_z -z -e "$dl"
    done
    log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
grep -c "output thread unavailable" "$work/cofferd.log" | sed 's/^/thread-unavailable lines: /'
