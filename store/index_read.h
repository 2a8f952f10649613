/* index_read.h — streaming reader over one trigram's postings, for the
 * SEARCH executor. A posting list is a run of blocks keyed
 * (segment, field, trigram, first msgnum) over a few segments (index_int.h);
 * the reader decodes one block at a time, so a common trigram is never
 * loaded whole. Every block's CRC32C is checked before use. */
#ifndef COFFER_INDEX_READ_H
#define COFFER_INDEX_READ_H
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
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
    bool gram;                      /* a long gram's cursor: entries carry tag */
    uint64_t tag;                   /* (hash & 0xFF) << IX_GRAM_TAGSHIFT */
};

/* field: enum mailtext_field (MT_BODY..MT_MSGID). Returns 0 or STORE_E*. */
int ix_cursor_open(MDB_txn *txn, const struct index_dbs *dbs, int field,
                   const unsigned char tri[3], struct ix_cursor *c);
/* The same over one long gram's postings in field IX_GRAM_FIELD(field);
 * hash: IX_GRAM_BITS bits (struct ix_gram). Seeks answer plain msgnums. */
int ix_cursor_open_gram(MDB_txn *txn, const struct index_dbs *dbs, int field, uint32_t hash,
                        struct ix_cursor *c);
/* Smallest msgnum >= target in the list: 1 with *out, 0 when none is left,
 * or STORE_ECORRUPT / STORE_EIO. Targets must not decrease between calls. */
int ix_cursor_seek(struct ix_cursor *c, uint64_t target, uint64_t *out);
/* Position mask (struct ix_ent) of the posting the last seek returned. */
static inline uint8_t ix_cursor_mask(const struct ix_cursor *c) { return c->mask; }
void ix_cursor_close(struct ix_cursor *c);

/* Long grams (store/index_gram.c). Besides trigrams, the folded text of
 * the fields in IX_GRAM_FIELDS posts the hashes of winnowed IX_GRAM_K-octet
 * grams under field IX_GRAM_FIELD(f) (same segments, blocks, merges and
 * cursors; no position masks: a gram cursor reports all ones).
 * A key of at least IX_GRAM_MINKEY octets selects grams that every text
 * containing it has selected at the same offsets, so each is one more list
 * to join: a rare key's grams are about as rare as the key, whatever its
 * trigrams. Hash collisions only add candidates; every candidate is still
 * confirmed.
 *
 * Most grams occur in one or two messages of a segment, and a block of
 * its own per gram would cost ~40 octets of LMDB key and header for a few
 * octets of postings (the index grew 2.7x that way). So the gram lists of
 * one bucket (the hash's top 16 bits, the key's "trigram" octets 0-1, octet
 * 2 zero) share blocks: each posting's "msgnum" is the composite
 * (hash & 0xFF) << IX_GRAM_TAGSHIFT | msgnum, so one bucket holds its
 * grams' lists one after the other, each in msgnum order, and a gram
 * cursor seeks (tag | target) and stops where the tag changes. Messages
 * numbered from 2^IX_GRAM_TAGSHIFT on get no grams (the index then drops
 * its "grams" mark). */
#define IX_GRAM_K 6                 /* octets per gram */
#define IX_GRAM_W 3                 /* grams per winnowing window */
#define IX_GRAM_MINKEY (IX_GRAM_K + IX_GRAM_W - 1)
#define IX_GRAM_BITS 24             /* hash bits: 16 of bucket, 8 of tag */
#define IX_GRAM_FIELD(f) (8 + (f))  /* fields 8..15 */
#define IX_GRAM_TAGSHIFT 40
#define IX_GRAM_MSGMASK ((UINT64_C(1) << IX_GRAM_TAGSHIFT) - 1)
/* Fields with long grams (bit f): the body text (MT_BODY) and Message-ID
 * (MT_MSGID: unique keys). Not the whole header text (MT_HDR), whose unique
 * tokens (Received lines, IDs, dates) would double the grams' size, nor the
 * address and Subject fields (short texts: few postings per block, so the
 * most octets per posting, for keys that are mostly common). Keys on other
 * fields (TEXT, FROM, generic HEADER...) join trigrams only, as before. */
#define IX_GRAM_FIELDS 0x81u
struct ix_gram {
    uint32_t hash;                  /* IX_GRAM_BITS bits */
    uint32_t pos;                   /* octet offset of the gram */
};
/* The selected grams of p[0..len) in position order, each position once:
 * at most len of them. ix_winnow_text treats MAILTEXT_SEP as a boundary
 * no gram spans (index side); ix_winnow takes one segment (a key). */
size_t ix_winnow(const unsigned char *p, size_t len, struct ix_gram *out);
size_t ix_winnow_text(const unsigned char *p, size_t len, struct ix_gram *out);
/* Do the long-gram postings cover every message (ix_meta "grams", set at
 * creation and by a full reindex)? Only then may the executor use them. */
bool ix_grams_complete(MDB_txn *txn, const struct index_dbs *dbs);

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
