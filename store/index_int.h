/* index_int.h — internals shared by index.c (records, batching) and
 * index_seg.c (posting segments: codec, writer, merges, reader).
 *
 * Postings live in segments, an LSM layout: each index flush (one import
 * transaction) writes its postings as a new level-0 segment, appended at
 * the end of ix_l0 in key order (MDB_APPEND: no existing page is touched,
 * whatever the archive size). When a level holds its fan-out of segments,
 * they are merged into one segment of the next level and the level's
 * database is emptied. The top level is never merged further, which caps a
 * merge's size, and so the dirty pages LMDB keeps in memory until the
 * commit, at IX_FANOUT0 * IX_FANOUT1 batches (8,000 messages: ~45 MB).
 *
 *   ix_l<L>  seg u32 BE, field u8, trigram[3], first msgnum u64 BE ->
 *            u32 crc32c(payload), u16 count, u64 last, payload: the first
 *            entry's position mask (struct ix_ent), then per further entry
 *            its varint msgnum delta and mask
 *   ix_sdir  seg u32 BE -> u32 crc32c(rest), u8 level, 3 zero octets,
 *            u64 lowest msgnum, u64 highest msgnum
 * Blocks of one (segment, field, trigram) hold disjoint increasing ranges.
 * Fields 8 + f hold a long gram's hash in place of the trigram (index_read.h). */
#ifndef COFFER_INDEX_INT_H
#define COFFER_INDEX_INT_H
#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>
#include "store/index.h"
#include "store/index_read.h"

#define DBI_META 0
#define DBI_DOC 1
#define DBI_TEXT 2
#define DBI_SDIR 3
#define DBI_L0 4                 /* level L is dbi[DBI_L0 + L] */
#define IX_NDBI (DBI_L0 + IX_LEVELS)   /* the databases every format 2 index has */
#define DBI_MEM IX_NDBI                /* optional ix_mem (index.c) */
#define IX_MEMKEY 16

#define IX_KEYLEN 16
#define IX_VHDR 14
#define IX_SDIR_LEN 24
#define IX_FANOUT0 8             /* level-0 segments merged into one of level 1 */
#define IX_FANOUT1 4             /* level-1 segments merged into one of level 2 */
#define IX_NFIELDS 8             /* enum mailtext_field: MT_BODY..MT_MSGID */

struct ix_seg {
    uint32_t id;
    unsigned level;
    uint64_t lo, hi;
    bool done;                   /* reader: no posting >= the last target */
};

/* Segment directory sorted by id; STORE_ECORRUPT on a bad record. */
int ixs_load(MDB_txn *txn, const struct index_dbs *dbs, struct ix_seg **out, size_t *n);

/* Write one new level-0 segment from sorted (key, msgnum) pairs: key is
 * field << 24 | trigram, sorted by key then msgnum, no duplicates. */
struct ix_pend {
    uint32_t key;
    uint8_t mask;
    uint64_t msgnum;
};
int ixs_write_level0(MDB_txn *txn, const struct index_dbs *dbs, const struct ix_pend *p,
                     size_t n, const char **err);
/* Merge full levels (after a write). */
int ixs_compact(MDB_txn *txn, const struct index_dbs *dbs, const char **err);
/* Drop msgnum from every segment. */
int ixs_remove(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum, const char **err);
/* Check every segment and block; returns the number of faults. */
long ixs_verify(MDB_txn *txn, const struct index_dbs *dbs,
                void (*report)(void *ctx, const char *msg), void *ctx);

#endif
