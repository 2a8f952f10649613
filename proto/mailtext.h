/* mailtext.h — the decoded, folded text of a message that SEARCH matches
 * against and the text index is built from. Both use this one producer, so
 * an index candidate is confirmed against exactly the text it was indexed
 * from.
 *
 * What is searched follows Dovecot (see docs/COMPATIBILITY.md):
 * - header fields are unfolded, RFC 2047 encoded words decoded (charset
 *   converted to UTF-8), then folded with i;unicode-casemap;
 * - a part's body counts as text when the part is a leaf whose Content-Type
 *   is text/ or message/ (or absent); base64/QP decoded, charset converted;
 * - TEXT sees, per part, "Name: value" of every header field followed by
 *   the body text; BODY sees body text only; matches never span parts.
 * Segments (parts, repeated fields) are separated by MAILTEXT_SEP, an octet
 * that never occurs in UTF-8, so no match can straddle two segments. */
#ifndef COFFER_MAILTEXT_H
#define COFFER_MAILTEXT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"
#include "proto/msginfo.h"

#define MAILTEXT_SEP 0xFFu
#define MAILTEXT_PART_MAX (64u * 1024u * 1024u)  /* text octets kept per part */

enum mailtext_field {
    MT_BODY = 0,     /* body text of text parts */
    MT_HDR,          /* every part's header fields, "Name: value" each */
    MT_FROM, MT_TO, MT_CC, MT_BCC, MT_SUBJECT, MT_MSGID,   /* top-level header */
    MT_TEXT,         /* per part: header text + body text (not indexed) */
    MT__N
};
#define MT_BIT(f) (1u << (f))

/* Reads canonical octets [off, off+len) of the message, appending to out. */
typedef int (*mailtext_read_fn)(void *ctx, uint64_t off, uint64_t len, struct buf *out);

struct mailtext {
    struct buf f[MT__N];
};

void mailtext_init(struct mailtext *t);
void mailtext_free(struct mailtext *t);
/* Fill the fields in `mask` (others are left empty). Returns 0, or -1 with
 * *err (allocation, or the reader failed: its code is kept in *read_rc). */
int mailtext_build(const struct msginfo *mi, mailtext_read_fn rd, void *rdctx,
                   unsigned mask, struct mailtext *t, int *read_rc, const char **err);

/* Decode RFC 2047 encoded words in an unfolded header value, appending
 * UTF-8 (unknown charsets: the decoded octets are kept, as Dovecot does). */
int mailtext_decode_2047(const unsigned char *v, size_t len, struct buf *out);
/* Append fold(decode_2047(unfold(value))) of each field `name` of the header
 * hdr[0..len), segments separated by MAILTEXT_SEP. *present: any such field.
 * compress_lwsp: runs of SP/TAB become one SP first (SUBJECT, as Dovecot). */
int mailtext_field(const unsigned char *hdr, size_t len, const char *name,
                   bool compress_lwsp, struct buf *out, bool *present);

/* Substring test on folded text (key folded too). Empty key matches. */
bool mailtext_contains(const struct buf *text, const unsigned char *key, size_t klen);

#endif
