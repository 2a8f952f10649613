/* canon.h — the canonical form IMAP serves: every bare LF becomes CRLF.
 *
 * The store keeps a message's original octets; IMAP sizes, offsets and
 * partial fetches all count the canonical octets. A bare CR is left alone
 * (Dovecot serves Maildir files the same way). The converter is streaming:
 * `prev_cr` carries the one byte of state across chunk boundaries. */
#ifndef COFFER_CANON_H
#define COFFER_CANON_H
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"

/* Canonical length of raw[0..len) given that the octet before it was a CR
 * (*prev_cr); updates *prev_cr for the next chunk. */
uint64_t canon_len(const unsigned char *raw, size_t len, int *prev_cr);
/* Append the canonical form of raw[0..len) to out. */
int canon_append(struct buf *out, const unsigned char *raw, size_t len, int *prev_cr);

#endif
