# proto/: pure IMAP/MIME functions, libc only. One line per owner area.
noinst_LIBRARIES += libcofferproto.a
PROTO_CORE_SRC = proto/buf.c proto/buf.h proto/canon.c proto/canon.h proto/imaparg.h
PROTO_MIME_SRC = proto/msginfo.h proto/cte.h
PROTO_IMAP_SRC =
PROTO_SEARCH_SRC = proto/search.h
libcofferproto_a_SOURCES = $(PROTO_CORE_SRC) $(PROTO_MIME_SRC) $(PROTO_IMAP_SRC) $(PROTO_SEARCH_SRC)
