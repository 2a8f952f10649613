/* charset.h — conversion of message and SEARCH-key text to UTF-8.
 *
 * iconv descriptors for every charset we know by name are opened by
 * charset_init(), which cofferd calls (through search_charsets_init())
 * before the session is confined: glibc loads gconv modules lazily, which
 * a confined process may not be able to do. Charsets not in the table are
 * opened on first use where that still works (import, CLI) and cached. */
#ifndef COFFER_CHARSET_H
#define COFFER_CHARSET_H
#include <stdbool.h>
#include <stddef.h>
#include "proto/buf.h"

#define CHARSET_UTF8    0
#define CHARSET_ASCII   1
#define CHARSET_UNKNOWN (-1)

/* Open the descriptors. Returns 0, or -1 with *err naming one that failed
 * (the others are still usable). Idempotent. */
int charset_init(const char **err);
/* Handle for a charset name (case-insensitive, common aliases; '-', '_'
 * and spaces ignored), or CHARSET_UNKNOWN. */
int charset_find(const char *name, size_t len);
/* True for the charsets SEARCH CHARSET accepts (the RFC 3501 BADCHARSET
 * list: UTF-8, US-ASCII, ISO-8859-*, WINDOWS-125x, KOI8-R/U). */
bool charset_search_ok(int h);
/* "UTF-8 US-ASCII ISO-8859-1 ..." for NO [BADCHARSET (...)]. */
const char *charset_search_list(void);

/* Append in[0..len) converted from charset h to UTF-8. Invalid input
 * becomes U+FFFD (strict: returns 1 instead). UTF-8 is copied unchanged
 * (the folder replaces invalid sequences). Returns 0, 1, or BUF_E*. */
int charset_to_utf8(int h, const unsigned char *in, size_t len, bool strict,
                    struct buf *out);

#endif
