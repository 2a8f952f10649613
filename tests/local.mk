# tests/: Check unit suites (one per module), integration and fuzz targets.
if HAVE_CHECK
UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS)
UNIT_LIBS = $(SERVER_LIBS) $(CHECK_LIBS)
endif
