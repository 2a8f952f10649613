/* index_read.h — streaming reader over one trigram's postings, for the
 * SEARCH executor. A posting list is a run of blocks keyed
 * (field, trigram, first msgnum); the reader decodes one block at a time,
 * so a common trigram is never loaded whole. Every block's CRC32C is
 * checked before use. */
#ifndef COFFER_INDEX_READ_H
#define COFFER_INDEX_READ_H
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include "store/index.h"

#define IX_BLOCK_MAX_BYTES 480      /* encoded payload per block */
#define IX_BLOCK_MAX_ENTRIES 480    /* varints are >= 1 octet */

struct ix_cursor {
    MDB_cursor *cur;
    unsigned char prefix[4];        /* field, trigram */
    uint64_t ent[IX_BLOCK_MAX_ENTRIES];
    size_t n, pos;                  /* decoded block, next position */
    bool loaded, end;
};

/* field: enum mailtext_field (MT_BODY..MT_MSGID). Returns 0 or STORE_E*. */
int ix_cursor_open(MDB_txn *txn, const struct index_dbs *dbs, int field,
                   const unsigned char tri[3], struct ix_cursor *c);
/* Smallest msgnum >= target in the list: 1 with *out, 0 when none is left,
 * or STORE_ECORRUPT / STORE_EIO. Targets must not decrease between calls. */
int ix_cursor_seek(struct ix_cursor *c, uint64_t target, uint64_t *out);
void ix_cursor_close(struct ix_cursor *c);

/* The folded text a message was indexed from, field by field (enum
 * mailtext_field MT_BODY..MT_MSGID; segments separated by MAILTEXT_SEP).
 * out holds the octets; fields[] point into it. STORE_ENOTFOUND when there
 * is no record (decode the message instead), STORE_ECORRUPT on a CRC or
 * format error. */
struct ix_text {
    const unsigned char *p;
    size_t len;
};
struct buf;
int ix_text_get(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                struct buf *out, struct ix_text *fields);

/* Is msgnum indexed at all (false: the executor must scan it)? */
bool ix_has_doc(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum);

#endif
