/* mimehdr.h — read the header fields of a message or MIME part, as the
 * MIME parser does (same field boundaries, same name rules), for modules
 * that need header data beyond what msginfo precomputes: SEARCH (header
 * matching, charset of body text), FETCH helpers, tools.
 *
 * Everything works on the canonical (CRLF) octets and never allocates
 * except into caller buffers. */
#ifndef COFFER_MIMEHDR_H
#define COFFER_MIMEHDR_H
#include <stdbool.h>
#include <stddef.h>
#include "proto/buf.h"
#include "proto/msginfo.h"

struct mimehdr_field {
    const unsigned char *name;   /* before ':', trailing SP/TAB removed; the */
    size_t name_len;             /* whole line when it has no ':' */
    const unsigned char *value;  /* after ':' and leading SP/TAB; folded (the */
    size_t value_len;            /* CRLFs of continuation lines are kept) */
    const unsigned char *raw;    /* the field exactly as in the message, */
    size_t raw_len;              /* including its final line end (if any) */
    bool has_colon;
};

struct mimehdr_iter {
    const unsigned char *p, *end;
};

/* hdr[0..len) is a header section (msginfo_part hdr_off/hdr_len). */
void mimehdr_init(struct mimehdr_iter *it, const unsigned char *hdr, size_t len);
/* 1 = *f filled; 0 = the header ended (blank line or end of range). */
int mimehdr_next(struct mimehdr_iter *it, struct mimehdr_field *f);
/* Append the value with RFC 5322 unfolding (CRLF before WSP removed). */
int mimehdr_unfold(const struct mimehdr_field *f, struct buf *out);
/* Case-insensitive field-name test. */
bool mimehdr_name_is(const struct mimehdr_field *f, const char *name);

/* Content-Type of a header section: type and subtype lower-cased into
 * type/subtype (empty when absent or unparseable) and the parameters
 * (RFC 2231 merged, see rfc822.h rfc2231_params) into params as key\0value\0
 * pairs. Returns 1 if a Content-Type field was found, 0 if not. */
int mimehdr_content_type(const unsigned char *hdr, size_t len, struct buf *type,
                         struct buf *subtype, struct buf *params);
/* Value of parameter `name` (case-insensitive) in such a list, or NULL. */
const char *mimehdr_param(const struct buf *params, const char *name);

/* The charset a text part's body is in: its Content-Type charset parameter
 * (RFC 2231 `charset*=utf-8''` form decoded to its charset name), or
 * "us-ascii" when none is given (RFC 2045 5.2). canon is the whole canonical
 * message, p a part from msginfo_part(). Writes a NUL-terminated name into
 * out[0..outsz); returns 0, or -1 if it does not fit. */
int mimehdr_part_charset(const unsigned char *canon, size_t canon_len,
                         const struct msginfo_part *p, char *out, size_t outsz);

#endif
