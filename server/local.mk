# server/: cofferd (daemon, TLS, SASL, sessions, commands) and coffer (CLI).
# Everything but main() lives in libcofferserver.a so tests can link it.
noinst_LIBRARIES += libcofferserver.a
SERVER_DAEMON_SRC = server/log.c server/log.h server/conn.c server/conn.h server/auth.c server/auth.h server/config.c server/config.h server/tls.c server/tls.h server/confine.c server/confine.h
SERVER_SESSION_SRC = server/session.h server/session_int.h server/session.c server/sess_mbox.c server/cmd_auth.c server/cmd_list.c server/cmd_select.c server/cmd_fetch.c server/cmd_store.c server/cmd_search.c server/cmd_idle.c
SERVER_SEARCH_SRC = server/search_exec.h server/search_exec.c
libcofferserver_a_SOURCES = $(SERVER_DAEMON_SRC) $(SERVER_SESSION_SRC) $(SERVER_SEARCH_SRC)
libcofferserver_a_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS) $(SASL_CFLAGS) $(ZLIB_CFLAGS)
SERVER_LIBS = libcofferserver.a $(STORE_LIBS) $(SASL_LIBS) $(ZLIB_LIBS)
sbin_PROGRAMS += cofferd
cofferd_SOURCES = server/cofferd.c
cofferd_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS) $(SASL_CFLAGS)
cofferd_LDADD = $(SERVER_LIBS)
sbin_PROGRAMS += coffer
coffer_SOURCES = server/coffer.c server/coffer_int.h server/coffer_cmd.c server/coffer_maint.c
coffer_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS)
coffer_LDADD = $(SERVER_LIBS)
dist_man_MANS += docs/cofferd.8 docs/cofferd.conf.5
dist_man_MANS += docs/coffer.8
