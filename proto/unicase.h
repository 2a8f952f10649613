/* unicase.h — the i;unicode-casemap comparator (RFC 5051): simple titlecase,
 * then compatibility decomposition, one code point at a time, the way
 * Dovecot folds. SEARCH keys, the text index and the executor's
 * confirmation all fold with this one function, or substring matches would
 * be missed. Tables: proto/unicase_table.h (scripts/gen-unicase.py). */
#ifndef COFFER_UNICASE_H
#define COFFER_UNICASE_H
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"

#define UNICASE_REPLACEMENT 0xFFFDu

/* Append the fold of UTF-8 s[0..len) to out. Each invalid sequence becomes
 * one U+FFFD (never two in a row, as Dovecot). Returns 0 or a BUF_E* code. */
int unicase_fold(const unsigned char *s, size_t len, struct buf *out);
/* Decode one UTF-8 sequence at s[0..len): returns its length and *cp, or 0
 * when invalid (overlong, surrogate, > U+10FFFF, truncated). */
size_t unicase_utf8_get(const unsigned char *s, size_t len, uint32_t *cp);
/* Append cp as UTF-8. */
int unicase_utf8_put(struct buf *out, uint32_t cp);

#endif
