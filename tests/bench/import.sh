#!/bin/sh
# import.sh — import benchmark for docs/BENCHMARKS.md (issue 2).
#
#   tests/bench/import.sh [COUNT]          (default 100000 messages)
#
# Env: COFFER (coffer binary), STORE_BENCH (tests/bench/store_bench),
#      COFFER_SHARED (../shared), BENCH_DIR (work dir, default mktemp),
#      INDEX_COUNT (messages for the with-index run, default 20000; 0 = skip),
#      DOVEADM=no to skip the Dovecot comparison.
# Pinned to one core with taskset when available. Prints a markdown table.
set -eu
COUNT=${1:-100000}
INDEX_COUNT=${INDEX_COUNT:-20000}
here=$(cd "$(dirname "$0")" && pwd)
COFFER=${COFFER:-$(pwd)/coffer}
STORE_BENCH=${STORE_BENCH:-$(pwd)/tests/bench/store_bench}
SHARED=${COFFER_SHARED:-$here/../../../shared}
GEN=$SHARED/tools/gen-corpus
W=${BENCH_DIR:-$(mktemp -d /tmp/coffer-bench.XXXXXX)}
mkdir -p "$W"
# run as root, coffer works as the `coffer` user: it must write exports here
if [ "$(id -u)" = 0 ] && id coffer >/dev/null 2>&1; then chown coffer "$W"; fi
[ -x "$COFFER" ] || { echo "coffer not found: $COFFER (set COFFER)" >&2; exit 1; }
[ -x "$GEN" ] || { echo "gen-corpus not found: $GEN (set COFFER_SHARED)" >&2; exit 1; }
PIN=""
command -v taskset >/dev/null && PIN="taskset -c 0"
TIME=/usr/bin/time
[ -x $TIME ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

# run LABEL CMD...: wall seconds and peak RSS (KiB) into $W/LABEL.time
run() {
    label=$1; shift
    $TIME -f '%e %M %U %S' -o "$W/$label.time" "$@" > "$W/$label.out" 2> "$W/$label.err"
}
secs() { cut -d' ' -f1 "$W/$1.time"; }
cpu() { awk '{printf "%.2f", $3 + $4}' "$W/$1.time"; }
rss_mib() { awk '{printf "%.0f", $2/1024}' "$W/$1.time"; }

mbox=$W/bench-$COUNT.mbox
[ -s "$mbox" ] || python3 "$GEN" --format mbox --count "$COUNT" --out "$mbox" --quiet
raw=$(stat -L -c %s "$mbox")
pw=$W/pw; printf bench > "$pw"

D=$W/data-noindex
rm -rf "$D"
$COFFER --data-dir "$D" instance add bench
$COFFER --data-dir "$D" user add bench/u --password-file "$pw"
COFFER_BENCH_NO_INDEX=1 run import $PIN $COFFER --data-dir "$D" import bench/u --folder Bench "$mbox"
t=$(secs import)
$COFFER --data-dir "$D" stats bench > "$W/stats.out"
stored=$(sed -n 's/.*stored bytes: \([0-9]*\) compressed.*/\1/p' "$W/stats.out")
disk=$(sed -n 's/.* \([0-9]*\) on disk.*/\1/p' "$W/stats.out")
run export $PIN $COFFER --data-dir "$D" export bench/u --folder Bench --format mbox "$W/back.mbox"
te=$(secs export)
cmp -s "$mbox" "$W/back.mbox" && same=identical || same=DIFFERENT
rm -f "$W/back.mbox"

# a 50 MiB message, then the last 64 KiB of it the way FETCH reads it
python3 - "$W/huge.eml" <<'PY'
import sys, random
r = random.Random(1)
words = [''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(r.randint(2, 9))) for _ in range(5000)]
with open(sys.argv[1], 'w') as f:
    f.write('Subject: huge\nContent-Type: text/plain\n\n')
    n = 0
    while n < 50 * 1024 * 1024:
        line = ' '.join(r.choice(words) for _ in range(12)) + '\n'
        f.write(line); n += len(line)
PY
COFFER_BENCH_NO_INDEX=1 $COFFER --data-dir "$D" import bench/u --folder Huge "$W/huge.eml" >/dev/null
partial=$($STORE_BENCH "$D" bench u Huge 65536)

idx=""
if [ "$INDEX_COUNT" -gt 0 ]; then
    imbox=$W/bench-$INDEX_COUNT.mbox
    [ -s "$imbox" ] || python3 "$GEN" --format mbox --count "$INDEX_COUNT" --out "$imbox" --quiet
    DI=$W/data-index
    rm -rf "$DI"
    $COFFER --data-dir "$DI" instance add bench
    $COFFER --data-dir "$DI" user add bench/u --password-file "$pw"
    run import-index $PIN $COFFER --data-dir "$DI" import bench/u "$imbox"
    idx="$INDEX_COUNT $(secs import-index) $(rss_mib import-index) $(du -sb "$DI" | cut -f1) $(stat -L -c %s "$imbox")"
fi

dv=""
if [ "${DOVEADM:-yes}" != no ] && command -v doveadm >/dev/null && command -v dovecot >/dev/null \
   && [ "$(id -u)" = 0 ]; then
    V=$W/dovecot
    rm -rf "$V"; mkdir -p "$V/run" "$V/state" "$V/mail" "$V/src"
    ln "$mbox" "$V/src/bench.mbox" 2>/dev/null || cp "$mbox" "$V/src/bench.mbox"
    chown -R 65534:65534 "$V/mail" "$V/src"
    cat > "$V/dovecot.conf" <<CONF
base_dir = $V/run
state_dir = $V/state
log_path = $V/dovecot.log
ssl = no
protocols = imap
service imap-login {
  inet_listener imap {
    port = 0
  }
}
default_internal_user = nobody
default_login_user = nobody
mail_location = maildir:$V/mail/%u
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$V/home/%u
}
passdb {
  driver = static
  args = nopassword=y
}
CONF
    dovecot -c "$V/dovecot.conf"
    sleep 1
    run doveadm $PIN doveadm -c "$V/dovecot.conf" import -u bench \
        "mbox:$V/src:INBOX=$V/src/bench.mbox" "" all || true
    kill "$(cat "$V/run/master.pid")" 2>/dev/null || true
    n=$(find "$V/mail/bench" \( -path '*/cur/*' -o -path '*/new/*' \) -type f | wc -l)
    dv="$(secs doveadm) $n $(cpu doveadm)"
fi

mps=$(awk -v n="$COUNT" -v t="$t" 'BEGIN{printf "%.0f", n/t}')
mbs=$(awk -v b="$raw" -v t="$t" 'BEGIN{printf "%.1f", b/t/1e6}')
echo "| metric | result |"
echo "|---|---|"
echo "| messages, raw mbox size | $COUNT, $raw bytes |"
c=$(cpu import)
echo "| import (no text index), 1 core | $t s wall = $mps messages/s, $mbs MB/s; CPU $c s = $(awk -v n="$COUNT" -v t="$c" 'BEGIN{printf "%.0f", n/t}') messages/s |"
echo "| peak RSS, import | $(rss_mib import) MiB |"
echo "| stored / raw (zstd frames) | $(awk -v s="$stored" -v r="$raw" 'BEGIN{printf "%.3f", s/r}') |"
echo "| data.mdb on disk / raw | $(awk -v s="$disk" -v r="$raw" 'BEGIN{printf "%.3f", s/r}') |"
echo "| export mbox | $te s = $(awk -v b="$raw" -v t="$te" 'BEGIN{printf "%.1f", b/t/1e6}') MB/s, output $same to the input, peak RSS $(rss_mib export) MiB |"
echo "| $partial | |"
if [ -n "$idx" ]; then
    set -- $idx
    echo "| import with text index: $1 messages | $2 s = $(awk -v n="$1" -v t="$2" 'BEGIN{printf "%.0f", n/t}') messages/s, peak RSS $3 MiB, store/raw $(awk -v s="$4" -v r="$5" 'BEGIN{printf "%.2f", s/r}') |"
fi
if [ -n "$dv" ]; then
    set -- $dv
    echo "| doveadm import (Maildir), same mbox | $1 s wall (CPU $3 s) for $2 messages; coffer is $(awk -v a="$1" -v b="$t" 'BEGIN{printf "%.1f", a/b}')x faster (wall) |"
fi
echo "(work dir: $W)"
