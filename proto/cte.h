/* cte.h — streaming Content-Transfer-Encoding decoders (base64,
 * quoted-printable) for BINARY[] and for search text. Fed chunk by chunk;
 * never need the whole part in memory. Decoding is lenient the way Dovecot
 * is (invalid base64 characters skipped, bad QP escapes kept literally). */
#ifndef COFFER_CTE_H
#define COFFER_CTE_H
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"

struct cte_dec {
    int cte;                 /* enum msginfo_cte */
    uint32_t state, bits;    /* private */
    unsigned char pend[4];
    size_t npend;
};

void cte_dec_init(struct cte_dec *d, int cte);
/* Append the decoded form of in[0..len) to out. */
int cte_dec_feed(struct cte_dec *d, const unsigned char *in, size_t len, struct buf *out);
int cte_dec_finish(struct cte_dec *d, struct buf *out);
/* Decoded size of base64 in[0..len) without decoding it (what the decoder
 * above would produce). */
uint64_t cte_base64_size(const unsigned char *in, size_t len);

#endif
