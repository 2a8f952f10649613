# store/: the LMDB archive store (needs proto/ for the MIME parser).
noinst_LIBRARIES += libcofferstore.a
STORE_CORE_SRC = store/store.h store/store_int.h store/admin.h store/crc32c.c store/env.c store/registry.c store/inst.c store/users.c store/secret.c store/write.c store/chunk.c store/date.c store/date.h store/import_int.h store/import.c store/import_mbox.c store/import_maildir.c store/export.c store/maint.c
STORE_INDEX_SRC = store/index.h store/index.c store/index_read.h store/index_int.h store/index_seg.c
libcofferstore_a_SOURCES = $(STORE_CORE_SRC) $(STORE_INDEX_SRC)
libcofferstore_a_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(OPENSSL_CFLAGS) $(ZSTD_CFLAGS) $(CRYPT_CFLAGS)
STORE_LIBS = libcofferstore.a libcofferproto.a $(LMDB_LIBS) $(OPENSSL_LIBS) $(ZSTD_LIBS) $(CRYPT_LIBS)
