# store/: the LMDB archive store (needs proto/ for the MIME parser).
noinst_LIBRARIES += libcofferstore.a
STORE_CORE_SRC = store/store.h
STORE_INDEX_SRC = store/index.h
libcofferstore_a_SOURCES = $(STORE_CORE_SRC) $(STORE_INDEX_SRC)
libcofferstore_a_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS) $(ZSTD_CFLAGS) $(CRYPT_CFLAGS)
STORE_LIBS = libcofferstore.a libcofferproto.a $(LMDB_LIBS) $(OPENSSL_LIBS) $(ZSTD_LIBS) $(CRYPT_LIBS)
