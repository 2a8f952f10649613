# tests/: Check unit suites (one per module), integration and fuzz targets.
if HAVE_CHECK
UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS)
UNIT_LIBS = $(SERVER_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/unit/imapparse_test
TESTS += tests/unit/imapparse_test
tests_unit_imapparse_test_SOURCES = tests/unit/imapparse_test.c
tests_unit_imapparse_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_imapparse_test_LDADD = $(UNIT_LIBS)
endif

# ---- test driver setup (BUILD) ----
# Integration tests are scripts: tests/integration/*.py run with python3,
# *.sh with sh. Exit 0 = pass, 77 = skip, 99 = hard error. They find the
# binaries and data through the environment below, never through fixed paths:
#   COFFER_BUILDDIR, COFFER_SRCDIR  top build and source directories
#   COFFER, COFFERD                 the binaries to run (tests/valgrind-all
#                                   points them at memcheck wrappers)
#   COFFER_SHARED                   ../shared next to the checkout
#   COFFER_REQUIRE_SHARED=1         (scripts/check) a missing ../shared fails
#                                   the tests that need it instead of skipping
#   COFFER_TEST_HOOKS               yes when built with --enable-test-hooks
TEST_EXTENSIONS = .py .sh
PY_LOG_COMPILER = python3
SH_LOG_COMPILER = sh
AM_TESTS_ENVIRONMENT = \
	COFFER_BUILDDIR='$(abs_top_builddir)'; export COFFER_BUILDDIR; \
	COFFER_SRCDIR='$(abs_top_srcdir)'; export COFFER_SRCDIR; \
	COFFER="$${COFFER:-$(abs_top_builddir)/coffer}"; export COFFER; \
	COFFERD="$${COFFERD:-$(abs_top_builddir)/cofferd}"; export COFFERD; \
	COFFER_SHARED="$${COFFER_SHARED:-$(abs_top_srcdir)/../shared}"; export COFFER_SHARED; \
	COFFER_TEST_HOOKS='$(enable_test_hooks)'; export COFFER_TEST_HOOKS; \
	PYTHONDONTWRITEBYTECODE=1; export PYTHONDONTWRITEBYTECODE;
# distcheck builds the production configuration (no test hooks).
AM_DISTCHECK_CONFIGURE_FLAGS = --enable-werror --quiet
EXTRA_DIST += tests/unit/unit_main.h
EXTRA_DIST += tests/integration tests/fuzz tests/valgrind-all tests/valgrind-subset tests/valgrind.supp .ci/run
# Directories in EXTRA_DIST are copied from the build dir too, so test logs,
# objects and fuzz binaries would ride along: keep only what the source has.
dist-hook:
	cd "$(distdir)" && for d in tests/integration tests/fuzz scripts docs; do \
	  find "$$d" -depth -print | while IFS= read -r f; do \
	    test -e "$(abs_top_srcdir)/$$f" || rm -rf "./$$f"; \
	  done; \
	  find "$$d" \( -name '*.log' -o -name '*.trs' -o -name '*.o' -o -name '.deps' \
	    -o -name '.dirstamp' -o -name '__pycache__' -o -name '*.pyc' \) -prune -exec rm -rf {} +; \
	done

# ---- fuzz targets (BUILD plumbing; one paragraph per target) ----
# Convention: tests/fuzz/fuzz_NAME.c, seed corpus tests/fuzz/corpus/NAME/,
# optional dictionary tests/fuzz/NAME.dict. scripts/check runs each one.

if HAVE_CHECK
check_PROGRAMS += tests/unit/search_test
TESTS += tests/unit/search_test
tests_unit_search_test_SOURCES = tests/unit/search_test.c
tests_unit_search_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_search_test_LDADD = $(UNIT_LIBS)
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_imapparse
tests_fuzz_fuzz_imapparse_SOURCES = tests/fuzz/fuzz_imapparse.c
tests_fuzz_fuzz_imapparse_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_imapparse_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_imapparse_LDADD = libcofferproto.a
endif

if HAVE_CHECK
check_PROGRAMS += tests/unit/index_test
TESTS += tests/unit/index_test
tests_unit_index_test_SOURCES = tests/unit/index_test.c
tests_unit_index_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_index_test_LDADD = $(UNIT_LIBS)
endif

# ---- cofferd integration tests (DAEMON): daemon, TLS, SASL, limits ----
TESTS += tests/integration/test_auth.py tests/integration/test_tls.py tests/integration/test_daemon.py

if HAVE_CHECK
check_PROGRAMS += tests/unit/store_test
TESTS += tests/unit/store_test
tests_unit_store_test_SOURCES = tests/unit/store_test.c
tests_unit_store_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_store_test_LDADD = $(STORE_LIBS) $(CHECK_LIBS)
endif

if HAVE_CHECK
check_PROGRAMS += tests/unit/session_test
TESTS += tests/unit/session_test
tests_unit_session_test_SOURCES = tests/unit/session_test.c
tests_unit_session_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_session_test_LDADD = $(UNIT_LIBS)
endif

# ---- session integration tests (SESSION): commands over a real cofferd ----
TESTS += tests/integration/test_session.py

TESTS += tests/integration/test_cli.py tests/integration/test_crash.py

if HAVE_CHECK
check_PROGRAMS += tests/unit/daemon_test
TESTS += tests/unit/daemon_test
tests_unit_daemon_test_SOURCES = tests/unit/daemon_test.c
tests_unit_daemon_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_daemon_test_LDADD = $(UNIT_LIBS)
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_search
tests_fuzz_fuzz_search_SOURCES = tests/fuzz/fuzz_search.c
tests_fuzz_fuzz_search_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_search_LDADD = libcofferproto.a
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_mbox
tests_fuzz_fuzz_mbox_SOURCES = tests/fuzz/fuzz_mbox.c
tests_fuzz_fuzz_mbox_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_mbox_LDADD = $(STORE_LIBS)
endif

# store benchmark helper (tests/bench/import.sh uses it)
noinst_PROGRAMS += tests/bench/store_bench
tests_bench_store_bench_SOURCES = tests/bench/store_bench.c
tests_bench_store_bench_LDADD = $(STORE_LIBS)
EXTRA_DIST += tests/bench/import.sh

# cofferd against Dovecot over ../shared/corpus and a gen-corpus archive:
# LIST, EXAMINE, every FETCH item (parts, BINARY) and the SEARCH queries
TESTS += tests/integration/compare_vs_dovecot.sh
EXTRA_DIST += tests/bench/search.sh tests/bench/search_bench.py

# ---- MIME (msginfo): unit suite, and msginfo-dump for mime_vs_dovecot.py ----
if HAVE_CHECK
check_PROGRAMS += tests/unit/mime_test
TESTS += tests/unit/mime_test
tests_unit_mime_test_SOURCES = tests/unit/mime_test.c
tests_unit_mime_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_mime_test_LDADD = $(UNIT_LIBS)
endif

noinst_PROGRAMS += tests/tools/msginfo-dump
tests_tools_msginfo_dump_SOURCES = tests/tools/msginfo-dump.c
tests_tools_msginfo_dump_LDADD = libcofferproto.a
# mime_vs_dovecot.py (the MIME library alone against Dovecot, through
# msginfo-dump) is run by hand; compare_vs_dovecot.sh covers the same
# messages and items through the server

# IMAP bulk client for tests/bench/run.sh (BENCH): cofferd vs Dovecot
noinst_PROGRAMS += tests/bench/imapbench
tests_bench_imapbench_SOURCES = tests/bench/imapbench.c
tests_bench_imapbench_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS) $(ZLIB_CFLAGS)
tests_bench_imapbench_LDADD = $(OPENSSL_LIBS) $(ZLIB_LIBS)
EXTRA_DIST += tests/bench/run.sh

# concurrent sessions and memory per idle session (DAEMON): docs/BENCHMARKS.md
EXTRA_DIST += tests/bench/conns.py

# ---- real clients (BUILD): mbsync and curl against cofferd vs coffer export ----
TESTS += tests/integration/test_realclients.sh

# ---- reliability (HOSTILE): hostile clients, tenant isolation, brute force, faults ----
TESTS += tests/integration/test_hostile.py tests/integration/test_isolation.py \
	tests/integration/test_bruteforce.py tests/integration/test_faults.py
# load test: 500 TLS sessions for 5 minutes (separate; see docs/RELIABILITY.md)
EXTRA_DIST += tests/bench/load.py

if HAVE_CHECK
check_PROGRAMS += tests/unit/search_exec_test
TESTS += tests/unit/search_exec_test
tests_unit_search_exec_test_SOURCES = tests/unit/search_exec_test.c
tests_unit_search_exec_test_CFLAGS = $(UNIT_CFLAGS)
tests_unit_search_exec_test_LDADD = $(UNIT_LIBS)
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_mime
tests_fuzz_fuzz_mime_SOURCES = tests/fuzz/fuzz_mime.c
tests_fuzz_fuzz_mime_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_mime_LDADD = libcofferproto.a
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_sasl
tests_fuzz_fuzz_sasl_SOURCES = tests/fuzz/fuzz_sasl.c tests/fuzz/harness_server.c tests/fuzz/harness_server.h
tests_fuzz_fuzz_sasl_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_sasl_LDADD = $(SERVER_LIBS)
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz_session
tests_fuzz_fuzz_session_SOURCES = tests/fuzz/fuzz_session.c tests/fuzz/harness_server.c tests/fuzz/harness_server.h
tests_fuzz_fuzz_session_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_session_LDADD = $(SERVER_LIBS)
endif
