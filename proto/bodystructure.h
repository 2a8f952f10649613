/* bodystructure.h — BODY and BODYSTRUCTURE strings of a parsed message
 * (internal to proto/), written as RFC 3501 7.4.2 and Dovecot write them. */
#ifndef COFFER_BODYSTRUCTURE_H
#define COFFER_BODYSTRUCTURE_H
#include <stdbool.h>
#include <stddef.h>
#include "proto/buf.h"
#include "proto/mime.h"
#include "proto/msginfo.h"

/* extended = BODYSTRUCTURE, else BODY. Part idx (0 = the message). */
int bodystructure_write(const unsigned char *m, const struct mime_tree *t, uint32_t idx,
                        bool extended, struct buf *out);
/* The Content-Transfer-Encoding of a part as enum msginfo_cte. */
int bodystructure_cte(const unsigned char *m, const struct mime_tree *t, uint32_t idx);

#endif
