# proto/: pure IMAP/MIME functions, libc only. One line per owner area.
noinst_LIBRARIES += libcofferproto.a
PROTO_CORE_SRC = proto/buf.c proto/buf.h proto/canon.c proto/canon.h proto/imaparg.h
PROTO_MIME_SRC = proto/msginfo.h proto/msginfo.c proto/cte.h proto/cte.c proto/mime.h proto/mime.c proto/mimehdr.h proto/mimehdr.c proto/rfc822.h proto/rfc822.c proto/mimequote.h proto/mimequote.c proto/envelope.h proto/envelope.c proto/bodystructure.h proto/bodystructure.c
PROTO_IMAP_SRC = proto/imapparse.c proto/imapparse.h proto/seqset.c proto/seqset.h proto/mutf7.c proto/mutf7.h
PROTO_SEARCH_SRC = proto/search.h proto/search.c proto/search_prog.h proto/unicase.h proto/unicase.c proto/unicase_table.h proto/charset.h proto/charset.c proto/mailtext.h proto/mailtext.c
libcofferproto_a_SOURCES = $(PROTO_CORE_SRC) $(PROTO_MIME_SRC) $(PROTO_IMAP_SRC) $(PROTO_SEARCH_SRC)
