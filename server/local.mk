# server/: cofferd (daemon, TLS, SASL, sessions, commands) and coffer (CLI).
# Everything but main() lives in libcofferserver.a so tests can link it.
noinst_LIBRARIES += libcofferserver.a
SERVER_DAEMON_SRC = server/log.c server/log.h server/conn.h server/auth.h
SERVER_SESSION_SRC = server/session.h
SERVER_SEARCH_SRC = server/search_exec.h
libcofferserver_a_SOURCES = $(SERVER_DAEMON_SRC) $(SERVER_SESSION_SRC) $(SERVER_SEARCH_SRC)
libcofferserver_a_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS) $(SASL_CFLAGS) $(ZLIB_CFLAGS)
SERVER_LIBS = libcofferserver.a $(STORE_LIBS) $(SASL_LIBS) $(ZLIB_LIBS)
