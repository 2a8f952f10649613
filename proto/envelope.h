/* envelope.h — ENVELOPE (RFC 3501 7.4.2) of a header section (internal to
 * proto/), and the parsed Date: for SENTBEFORE/SENTSINCE. Address lists
 * (RFC 5322 3.4 with groups and obsolete routes) are read with Dovecot's
 * recovery rules and placeholders (MISSING_MAILBOX, MISSING_DOMAIN,
 * SYNTAX_ERROR, INVALID_ROUTE). */
#ifndef COFFER_ENVELOPE_H
#define COFFER_ENVELOPE_H
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"

/* Append the ten ENVELOPE fields, space separated, without the outer
 * parentheses. */
int envelope_write(const unsigned char *hdr, size_t len, struct buf *out);
/* Date: of the header as UTC seconds and zone (minutes east); *t =
 * INT64_MIN when missing or unparseable. */
void envelope_date(const unsigned char *hdr, size_t len, int64_t *t, int32_t *tz);
/* Parse an RFC 5322 date-time; 0 on success. */
int rfc822_date_parse(const unsigned char *s, size_t n, int64_t *t, int32_t *tz);

#endif
