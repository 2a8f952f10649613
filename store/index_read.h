/* index_read.h — streaming reader over one trigram's postings, for the
 * SEARCH executor. A posting list is a run of blocks keyed
 * (segment, field, trigram, first msgnum) over a few segments (index_int.h);
 * the reader decodes one block at a time, so a common trigram is never
 * loaded whole. Every block's CRC32C is checked before use. */
#ifndef COFFER_INDEX_READ_H
#define COFFER_INDEX_READ_H
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include "store/index.h"

#define IX_BLOCK_MAX_BYTES 480      /* encoded payload per block */
#define IX_BLOCK_MAX_ENTRIES 480    /* varints are >= 1 octet */
#define IX_LEVELS 3                 /* posting segment levels (index_int.h) */

/* A posting: the message, and a mask of the positions (mod 8) where the
 * trigram starts in the field's text. A key's trigrams at query offsets k
 * can only be one occurrence if some p has bit (p + k) % 8 set in each
 * one's mask: the executor drops most false candidates with that before
 * it decodes any text. */
struct ix_ent {
    uint64_t msgnum;
    uint8_t mask;
};

struct ix_seg;
struct ix_cursor {
    MDB_cursor *cur[IX_LEVELS];     /* one per level database */
    unsigned char ft[4];            /* field, trigram */
    struct ix_seg *seg;             /* this cursor's copy of the segments, by lo */
    size_t nseg, first;             /* segments before first are exhausted */
    size_t bseg;                    /* segment of the decoded block, or SIZE_MAX */
    bool at_block;                  /* cur[level of bseg] is on the decoded block */
    struct ix_ent ent[IX_BLOCK_MAX_ENTRIES];
    size_t n, pos;                  /* decoded block, next position */
    uint8_t mask;                   /* of the posting the last seek returned */
    bool end;
};

/* field: enum mailtext_field (MT_BODY..MT_MSGID). Returns 0 or STORE_E*. */
int ix_cursor_open(MDB_txn *txn, const struct index_dbs *dbs, int field,
                   const unsigned char tri[3], struct ix_cursor *c);
/* Smallest msgnum >= target in the list: 1 with *out, 0 when none is left,
 * or STORE_ECORRUPT / STORE_EIO. Targets must not decrease between calls. */
int ix_cursor_seek(struct ix_cursor *c, uint64_t target, uint64_t *out);
/* Position mask (struct ix_ent) of the posting the last seek returned. */
static inline uint8_t ix_cursor_mask(const struct ix_cursor *c) { return c->mask; }
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
/* Does the index cover every message? False after a format migration or
 * while `coffer reindex` runs: the executor must then scan instead. */
bool ix_complete(MDB_txn *txn, const struct index_dbs *dbs);

/* Can the member map (index_add_member) be trusted to list every
 * (mailbox, UID) of every message? False for indexes built before it. */
bool ix_members_complete(MDB_txn *txn, const struct index_dbs *dbs);
/* A cursor for ix_members_get (close with mdb_cursor_close);
 * STORE_ENOTFOUND when the index has no member map. */
int ix_members_open(MDB_txn *txn, const struct index_dbs *dbs, MDB_cursor **c);
/* The UIDs msgnum has in mailbox mbox_id, ascending: *n of them, of which
 * the first min(*n, cap) are stored in uids. */
int ix_members_get(MDB_cursor *c, uint64_t msgnum, uint32_t mbox_id, uint32_t *uids,
                   size_t cap, size_t *n);

#endif
