#!/bin/sh
# search.sh — SEARCH speed, Coffer vs Dovecot without fts, on one
# gen-corpus mailbox. Usage: tests/bench/search.sh [COUNT] [REPEAT]
# (default 10000 messages, 5 runs per query; median reported). Also reports
# import speed with indexing and the index size. Needs root (cofferd),
# dovecot-imapd and ../shared/tools. Env: COFFER_BUILDDIR (binaries),
# COFFER_SHARED (../shared), BENCH_DIR (work dir, default /tmp), BENCH_MBOX
# (an existing gen-corpus mbox of COUNT messages: skips generating one),
# BENCH_NO_DOVECOT=1 (Coffer only).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/../integration${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$here/search_bench.py" "$@"
