#!/bin/bash
# run.sh — cofferd vs Dovecot, same messages, same run, same client.
#
#   tests/bench/run.sh [COUNT]          (default 20000 messages)
#
# Loads one gen-corpus Maildir into a private Dovecot (written straight into
# its mail location) and, through `coffer import`, into a private cofferd;
# then runs every workload against both with tests/bench/imapbench over
# implicit TLS and reports wall time, server CPU seconds (utime+stime of the
# server's whole process tree, reaped children included) and the ratio.
# Needs root, dovecot-imapd and ../shared/tools. Environment:
#   COFFER_BUILDDIR   top build dir (default: current directory)
#   COFFER_SHARED     ../shared (default: next to the source tree)
#   BENCH_DIR         where the work dir goes (default /tmp)
#   BENCH_BROWSE      seconds of the concurrent browsing runs (default 30)
#   BENCH_CLIENTS     concurrent browsing clients, one run per number
#                     (default "20 50")
#   BENCH_LOGINS      TLS logins per server (default 200)
#   BENCH_HOLD        idle connections for the memory figure (default 50)
#   BENCH_KEEP=1      keep the work dir
# The report (markdown) goes to stdout and to WORKDIR/report.md.
set -euo pipefail

COUNT=${1:-20000}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${COFFER_BUILDDIR:-.}" && pwd)
shared=${COFFER_SHARED:-$src/../shared}
tools=$shared/tools
ib=$build/tests/bench/imapbench
COFFER=${COFFER:-$build/coffer}
COFFERD=${COFFERD:-$build/cofferd}
BROWSE=${BENCH_BROWSE:-30}
CLIENTS=${BENCH_CLIENTS:-20 50}
LOGINS=${BENCH_LOGINS:-200}
HOLD=${BENCH_HOLD:-50}

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (cofferd)" >&2; exit 77; }
for f in "$ib" "$COFFER" "$COFFERD" "$tools/gen-corpus" "$tools/imap-test-servers"; do
    [ -x "$f" ] || { echo "run.sh: missing $f (build first; set COFFER_BUILDDIR)" >&2; exit 77; }
done
command -v dovecot >/dev/null || { echo "run.sh: dovecot-imapd not installed" >&2; exit 77; }

work=$(mktemp -d "${BENCH_DIR:-/tmp}/coffer-run-XXXXXX")
chmod 755 "$work"
name=bench$$
ddir=/tmp/diff-dovecot-$name
cpid=
cleanup() {
    [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
    "$tools/imap-test-servers" dovecot-stop "$name" >/dev/null 2>&1 || true
    rm -rf "$ddir"
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# Sum over a process tree of utime+stime+cutime+cstime (seconds). A live
# process's cutime only holds its reaped children, so nothing counts twice.
tree() { # ROOTPID cpu|pss
    python3 - "$1" "$2" <<'EOF'
import os, sys
root, what = int(sys.argv[1]), sys.argv[2]
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            st = open("/proc/%s/stat" % d).read()
            f = st[st.rindex(")") + 2:].split()
            kids.setdefault(int(f[1]), []).append((int(d), f))
        except OSError:
            pass
tick = os.sysconf("SC_CLK_TCK")
todo, total, anon, n = [root], 0.0, 0, 0
try:
    st = open("/proc/%d/stat" % root).read()
    rootf = st[st.rindex(")") + 2:].split()
except OSError:
    sys.exit("no such process %d" % root)
procs = [(root, rootf)]
while todo:
    p = todo.pop()
    for c in kids.get(p, []):
        procs.append(c)
        todo.append(c[0])
for pid, f in procs:
    if what == "cpu":
        total += sum(int(x) for x in f[11:15]) / tick
    else:
        try:
            for ln in open("/proc/%d/smaps_rollup" % pid):
                if ln.startswith("Pss:"):
                    total += int(ln.split()[1])
                elif ln.startswith("Pss_Anon:"):
                    anon += int(ln.split()[1])
        except OSError:
            pass
    n += 1
print("%.3f %d" % (total, n) if what == "cpu" else "%d %d %d" % (total, n, anon))
EOF
}

# ---------------------------------------------------------------- corpus
log "Dovecot: starting private instance"
dport=$(freeport); dtls=$(freeport)
"$tools/imap-test-servers" dovecot-start "$name" "$dport" "$dtls" >/dev/null
# Same EC certificate and the same yescrypt password cost as cofferd, so the
# handshake and login figures compare servers, not key types or hashes.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -days 2 -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
chmod 644 "$work/key.pem"
cp "$work/cert.pem" "$ddir/tls/cert.pem"; cp "$work/key.pem" "$ddir/tls/key.pem"
hash=$(python3 -W ignore -c 'import crypt,os,base64
a="./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
print(crypt.crypt("test","$y$j9T$"+"".join(a[b%64] for b in os.urandom(16))))')
case "$hash" in '$y$'*) ;; *) echo "run.sh: no yescrypt in crypt()" >&2; exit 99;; esac
sed -i "s|^test:{PLAIN}test:|test:{CRYPT}$hash:|" "$ddir/passwd"
cat >> "$ddir/dovecot.conf" <<'EOF'
# run.sh: COMPRESS like cofferd, and room for the concurrent clients
mail_plugins = $mail_plugins zlib
protocol imap {
  mail_plugins = $mail_plugins imap_zlib
  mail_max_userip_connections = 1000
}
EOF
doveadm -c "$ddir/dovecot.conf" reload
home=$ddir/mail/test
mkdir -p "$home/Maildir"
log "generating $COUNT messages into Dovecot's Maildir"
t0=$(date +%s.%N)
"$tools/gen-corpus" --format maildir --count "$COUNT" --seed 1 --out "$home/Maildir/.bench" \
    --stats "$work/stats.json" --quiet
chown -R 65534:65534 "$home"
rawbytes=$(du -sb "$home/Maildir/.bench/cur" | cut -f1)

log "cofferd: data dir and import"
data=$work/data
mkdir -m 750 "$data"
cuser=coffer
id "$cuser" >/dev/null 2>&1 || useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$cuser"
chown "$cuser:$(id -gn $cuser)" "$data"
cport=$(freeport); ctls=$(freeport)
cat > "$work/cofferd.conf" <<EOF
data_dir = $data
listen = 127.0.0.1:$cport
listen_tls = 127.0.0.1:$ctls
tls_cert = $work/cert.pem
tls_key = $work/key.pem
user = $cuser
group = $(id -gn $cuser)
log = stderr
hostname = localhost
max_connections = 2000
max_connections_per_ip = 1000
EOF
C() { "$COFFER" -c "$work/cofferd.conf" --data-dir "$data" "$@"; }
C instance add b >/dev/null
echo test > "$work/pw"
C user add b/test --password-file "$work/pw" >/dev/null
ti0=$(date +%s.%N)
C import b/test --folder bench "$home/Maildir/.bench" >/dev/null
ti1=$(date +%s.%N)
find "$data" \( -name auth.secret -o -path "$data/dev*" \) -prune -o -print0 |
    xargs -0 chown -h "$cuser:$(id -gn $cuser)"
"$COFFERD" -F -c "$work/cofferd.conf" >"$work/cofferd.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q "ready:" "$work/cofferd.log" && break; sleep 0.1; done
grep -q "ready:" "$work/cofferd.log" || { cat "$work/cofferd.log" >&2; exit 99; }
# Dovecot syncs the new Maildir once (uidlist + index), as delivery would have.
tdi0=$(date +%s.%N)
doveadm -c "$ddir/dovecot.conf" mailbox status -u test messages bench >/dev/null
tdi1=$(date +%s.%N)
dmaster=$(cat "$ddir/run/master.pid")

# ---------------------------------------------------------------- runner
# run LABEL SERVER imapbench-args... → appends "LABEL SERVER cpu RESULT..." lines
results=$work/results.txt
: > "$results"
run() {
    local label=$1 srv=$2; shift 2
    local root port user
    if [ "$srv" = coffer ]; then root=$cpid; port=$ctls; user=b/test
    else root=$dmaster; port=$dtls; user=test; fi
    local c0 c1
    c0=$(tree "$root" cpu | cut -d' ' -f1)
    "$ib" -t -h 127.0.0.1 -p "$port" -u "$user" -P test -m bench "$@" > "$work/out" 2>"$work/err" ||
        log "$label $srv: imapbench exit $? $(head -c 300 "$work/err")"
    sleep 0.5      # let the server reap its children before reading /proc
    c1=$(tree "$root" cpu | cut -d' ' -f1)
    local cpu
    cpu=$(python3 -c "print('%.2f' % ($c1 - $c0))")
    grep '^RESULT' "$work/out" | grep -v 'mode=select' | sed "s|^|$label $srv cpu=$cpu |" >> "$results" || true
}
both() { local label=$1; shift; log "$label"; run "$label" coffer "$@"; run "$label" dovecot "$@"; }

hdr='UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To Received)])'
q() { python3 -c "import json,sys;d=json.load(open('$work/stats.json'));print($1)"; }
s_rare=$(q 'd["rare_body_words"][0][0]')
s_common=$(q 'd["common_body_words"][0][0]')
s_from=$(q 'd["top_senders"][0][0]')
s_subj=$(q 'd["subject_words"][0][0]')
s_mid=$(q 'd["sample_message_ids"][0][1]')
s_rare2=$(q 'd["rare_body_words"][2][0]')
s_subj2=$(q 'd["subject_words"][1][0]')

both login "-n" "$LOGINS" -k 4
# FETCH workloads: the first run, then two more ("repeated" = their median)
three() { local l=$1 c=$2; both "$l" -e "$c" -e "$c" -e "$c"; }
three folderopen "$hdr"
three download 'UID FETCH 1:* BODY.PEEK[]'
three bsenv 'UID FETCH 1:* (BODYSTRUCTURE ENVELOPE)'
three body1 'UID FETCH 1:* BODY.PEEK[1]'
sq() { both "$1" -e "UID SEARCH $2" -e "UID SEARCH $2" -e "UID SEARCH $2"; }
sq s_body_rare "BODY \"$s_rare\""
sq s_text_common "TEXT \"$s_common\""
sq s_from "FROM \"$s_from\""
sq s_subject "SUBJECT \"$s_subj\""
sq s_msgid "HEADER Message-ID \"$s_mid\""
sq s_dates "SINCE 1-Jan-2018 BEFORE 1-Jul-2018"
sq s_ornot "OR BODY \"$s_rare2\" NOT SUBJECT \"$s_subj2\""
for k in $CLIENTS; do both "browse$k" -b "$BROWSE" -k "$k"; done

# memory per idle logged-in connection: the server tree's PSS with HOLD idle
# TLS+COMPRESS sessions (each has SELECTed the mailbox) minus without.
mem() {
    local srv=$1 root port user
    if [ "$srv" = coffer ]; then root=$cpid; port=$ctls; user=b/test
    else root=$dmaster; port=$dtls; user=test; fi
    sleep 1
    local base held n0 n1 a0 a1
    read -r base n0 a0 < <(tree "$root" pss)
    "$ib" -t -z -h 127.0.0.1 -p "$port" -u "$user" -P test -m bench -H "$HOLD" -w 8 > "$work/hold" 2>&1 &
    local hp=$!
    for _ in $(seq 600); do grep -q '^HELD' "$work/hold" && break; sleep 0.1; done
    sleep 2
    read -r held n1 a1 < <(tree "$root" pss)
    wait "$hp" || true
    echo "mem $srv held=$(grep '^HELD' "$work/hold" | cut -d' ' -f2) base_kib=$base held_kib=$held procs_before=$n0 procs_held=$n1 per_conn_kib=$(( (held - base) / HOLD )) anon_per_conn_kib=$(( (a1 - a0) / HOLD ))" >> "$results"
}
log "memory per idle connection"
mem coffer; mem dovecot

# BENCH_PERF=1: where cofferd spends its CPU on folder open and
# BODYSTRUCTURE ENVELOPE (system-wide perf, reported for cofferd only; the
# point is that no MIME parser function shows up on the FETCH path).
if [ "${BENCH_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
    for w in folderopen bsenv; do
        [ $w = folderopen ] && c=$hdr || c='UID FETCH 1:* (BODYSTRUCTURE ENVELOPE)'
        log "perf: $w"
        perf record -q -a -F 1999 -o "$work/perf-$w.data" -- "$ib" -t -h 127.0.0.1 -p "$ctls" \
            -u b/test -P test -m bench -e "$c" -e "$c" -e "$c" >/dev/null 2>&1 || true
        perf report -q -i "$work/perf-$w.data" --comm cofferd --no-children --sort dso,symbol \
            --percent-limit 0.3 2>/dev/null | sed 's/ *$//' | head -25 > "$work/perf-$w.txt" || true
    done
fi

# ---------------------------------------------------------------- report
python3 - "$results" "$COUNT" "$rawbytes" "$ti0" "$ti1" "$tdi0" "$tdi1" "$work/stats.json" \
    "$LOGINS" "$BROWSE" "$CLIENTS" "$HOLD" <<'EOF' | tee "$work/report.md"
import sys, re, statistics, json
res, count, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ti0, ti1, td0, td1 = map(float, sys.argv[4:8])
logins, browse, clients, hold = sys.argv[9:13]
R = {}
for ln in open(res):
    p = ln.split()
    label, srv = p[0], p[1]
    kv = dict(x.split("=", 1) for x in p[2:] if "=" in x)
    R.setdefault((label, srv), []).append(kv)
def g(label, srv, i, k):
    return R[(label, srv)][i][k]
out = []
def row(name, c, d, unit, better_high, cc="", dc=""):
    ratio = (c / d if better_high else d / c) if c and d else float("nan")
    cr = "%.2fx" % (float(dc) / float(cc)) if cc and dc and float(cc) > 0 else ""
    out.append("| %s | %s | %s | %.2fx | %s | %s | %s |" % (name, fmt(c, unit), fmt(d, unit), ratio, cc, dc, cr))
def fmt(v, unit):
    if unit == "ms": return "%.1f ms" % (v * 1000)
    if unit == "s": return "%.2f s" % v
    if unit == "MB/s": return "%.1f MB/s" % v
    if unit == "/s": return "%.1f/s" % v
    return str(v)
print("%d messages, %.1f MB raw Maildir; coffer import %.1f s; Dovecot first sync %.1f s\n" %
      (count, raw / 1e6, ti1 - ti0, td1 - td0))
print("Ratio: how many times better cofferd is (time: Dovecot/cofferd; rate: cofferd/Dovecot). "
      "CPU: server CPU seconds (whole process tree) over the whole workload: all three runs for the "
      "FETCH rows, all three for SEARCH; CPU ratio = Dovecot/cofferd.\n")
print("| workload | cofferd | Dovecot | ratio | cofferd CPU s | Dovecot CPU s | CPU ratio |")
print("|---|---|---|---|---|---|---|")
def cpu(label, srv): return R[(label, srv)][0]["cpu"]
l = lambda s: float(g("login", s, 0, "rate"))
row("TLS connect+LOGIN+LOGOUT (%s, 4 clients), errors %s/%s" % (logins, g("login","coffer",0,"errors"), g("login","dovecot",0,"errors")),
    l("coffer"), l("dovecot"), "/s", True, cpu("login","coffer"), cpu("login","dovecot"))
names = {"folderopen": "Thunderbird folder open (header fetch 1:*)", "bsenv": "UID FETCH 1:* (BODYSTRUCTURE ENVELOPE)",
         "body1": "UID FETCH 1:* BODY.PEEK[1]"}
def wall(lab, srv, what):
    w = [float(x["wall"]) for x in R[(lab, srv)]]
    return w[0] if what == "first" else statistics.median(w[1:])
for lab in ("folderopen", "bsenv", "body1"):
    for what in ("first", "repeated"):
        row("%s, %s" % (names[lab], what), wall(lab, "coffer", what), wall(lab, "dovecot", what),
            "ms", False, cpu(lab, "coffer") if what == "first" else "", cpu(lab, "dovecot") if what == "first" else "")
for what in ("first", "repeated"):
    mb = lambda s: int(g("download", s, 0, "octets")) / 1e6 / wall("download", s, what)
    row("full download UID FETCH 1:* BODY.PEEK[], %s (%.0f MB)" % (what, int(g("download", "coffer", 0, "octets")) / 1e6),
        mb("coffer"), mb("dovecot"), "MB/s", True, cpu("download","coffer") if what == "first" else "", cpu("download","dovecot") if what == "first" else "")
st = json.load(open(sys.argv[8]))
for lab, name in (("s_body_rare", "SEARCH BODY rare word"), ("s_text_common", "SEARCH TEXT common word"),
                  ("s_from", "SEARCH FROM"), ("s_subject", "SEARCH SUBJECT"), ("s_msgid", "SEARCH HEADER Message-ID"),
                  ("s_dates", "SEARCH SINCE/BEFORE"), ("s_ornot", "SEARCH OR BODY/NOT SUBJECT")):
    med = lambda s: statistics.median(float(x["wall"]) for x in R[(lab, s)])
    row(name + " (median of 3)", med("coffer"), med("dovecot"), "ms", False, cpu(lab, "coffer"), cpu(lab, "dovecot"))
for k in clients.split():
    lab = "browse" + k
    b = lambda s: float(g(lab, s, 0, "rate"))
    row("%s clients browsing %s s: commands/s (errors %s/%s)" % (k, browse, g(lab,"coffer",0,"errors"), g(lab,"dovecot",0,"errors")),
        b("coffer"), b("dovecot"), "/s", True, cpu(lab,"coffer"), cpu(lab,"dovecot"))
for ln in out: print(ln)
print()
for ln in open(res):
    if ln.startswith("mem "):
        kv = dict(x.split("=") for x in ln.split()[2:])
        print("- memory %s: %s idle TLS+COMPRESS sessions, tree PSS %s KiB -> %s KiB (%s -> %s processes): "
              "%s KiB PSS per connection, of which %s KiB anonymous (the rest is the shared, read-only "
              "mappings of the store or index files and libraries, split among the processes that map them)" %
              (ln.split()[1], kv["held"], kv["base_kib"], kv["held_kib"], kv["procs_before"], kv["procs_held"],
               kv["per_conn_kib"], kv["anon_per_conn_kib"]))
import os, glob
for pf in sorted(glob.glob(os.path.join(os.path.dirname(res), "perf-*.txt"))):
    print("\nperf, cofferd processes only, %s (3 runs):\n\n```\n%s```" % (os.path.basename(pf)[5:-4], open(pf).read()))
print("\nRaw results:\n")
print("```")
for ln in open(res): print(ln.rstrip())
print("```")
EOF
