/* mimequote.h — IMAP string writers for ENVELOPE/BODYSTRUCTURE (internal
 * to proto/). They choose quoted vs literal the way Dovecot does, so the
 * precomputed strings match it octet for octet. A NUL ends the input, as
 * header values are C strings in the reference. */
#ifndef COFFER_MIMEQUOTE_H
#define COFFER_MIMEQUOTE_H
#include <stddef.h>
#include "proto/buf.h"

/* "quoted", or {n} literal for CR, LF, 8-bit or more than 4 specials. */
int mq_string(struct buf *out, const unsigned char *s, size_t n);
/* NIL when s is NULL. */
int mq_nstring(struct buf *out, const unsigned char *s, size_t n);
/* Same, with CR and LF removed first. */
int mq_nstring_nolf(struct buf *out, const unsigned char *s, size_t n);
/* Subject and display names: TAB/CR/LF to space, runs of spaces collapsed,
 * trimmed, NUL to 0x80; literal when anything had to change. */
int mq_humans(struct buf *out, const unsigned char *s, size_t n);

#endif
