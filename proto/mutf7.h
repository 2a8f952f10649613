/* mutf7.h — mailbox names in modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8.
 *
 * Decoding is strict where ambiguity would let two wire names reach the
 * same mailbox: non-minimal base64, "&-" only for '&', no encoded
 * printable ASCII, no unpaired surrogates, proper padding bits. */
#ifndef COFFER_MUTF7_H
#define COFFER_MUTF7_H
#include <stddef.h>

struct buf;

/* UTF-8 -> modified UTF-7, appended to out. -1 if in is not valid UTF-8. */
int mutf7_encode(const char *in, size_t len, struct buf *out);
/* modified UTF-7 -> UTF-8, appended to out. -1 if in is not valid mUTF-7
 * (8-bit octets, bad base64, bad shift sequences). */
int mutf7_decode(const char *in, size_t len, struct buf *out);
/* Is in[0..len) well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF)? */
int utf8_valid(const char *in, size_t len);

#endif
