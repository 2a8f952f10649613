#!/bin/sh
# search.sh — SEARCH speed, Coffer vs Dovecot without fts, on one
# gen-corpus mailbox. Usage: tests/bench/search.sh [COUNT] [REPEAT]
# (default 10000 messages, 5 runs per query; median reported). Also reports
# import speed with indexing and the index size. Needs root (cofferd),
# dovecot-imapd and ../shared/tools. Env: COFFER_BUILDDIR (binaries),
# COFFER_SHARED (../shared), BENCH_DIR (work dir, default /tmp), BENCH_MBOX
# (an existing gen-corpus mbox of COUNT messages: skips generating one),
# BENCH_NO_DOVECOT=1 (Coffer only), BENCH_DATA (a kept data dir: imported
# into when it has no instance, else searched as it is), BENCH_IMPORT_NICE,
# BENCH_STATS (stats sidecar for the query words), BENCH_RAW_BYTES (raw size
# of an archive imported in pieces), BENCH_WORDS=w1,w2 (extra BODY queries
# for fixed words). The import line also gives its CPU time.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/../integration${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$here/search_bench.py" "$@"
