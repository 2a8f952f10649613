/* index.h — the full-text index of an instance env (substring-exact:
 * trigram postings over i;unicode-casemap folded, decoded text; header
 * fields clients search get their own postings). Written in the same
 * transaction as the message it indexes, so it is crash-safe and an
 * import re-run is idempotent.
 *
 * Store-internal: the import path calls index_open() when it opens the
 * env and index_add_message() for every new unique message. */
#ifndef COFFER_INDEX_H
#define COFFER_INDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>
#include "proto/msginfo.h"

#define INDEX_VERSION 2      /* 2: postings in segments (index_int.h) */

struct index_dbs {
    MDB_dbi dbi[8];           /* owned by index.c */
    unsigned n;
    /* Optional, set by the writer's owner: drop the env map's pages from
     * this process (inst_release_map). Level merges read many MB through
     * the map within one transaction and call it as they go, so that the
     * import's RSS stays bounded. */
    void (*release_map)(void *ctx);
    void *release_ctx;
};

/* Open (or with create, create) the index's named databases. */
int index_open(MDB_txn *txn, bool create, struct index_dbs *dbs, const char **err);
/* Index one message (canonical octets + its msginfo). */
int index_add_message(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                      const unsigned char *canon, size_t len,
                      const struct msginfo *mi, const char **err);
/* Optional batching (import speed): after index_batch_begin(txn), the
 * index_add_message() calls on txn keep their postings in memory, and
 * index_flush(txn) writes them all — it MUST run before txn commits
 * (inst_wr_commit); index_discard() drops them when txn is aborted.
 * Without index_batch_begin(), every message is written at once. */
int index_batch_begin(MDB_txn *txn, const struct index_dbs *dbs);
int index_flush(MDB_txn *txn, const struct index_dbs *dbs, const char **err);
void index_discard(void);
/* Record that message msgnum is UID uid of mailbox mbox_id (every store
 * of a (mailbox, UID) record calls it, in the same transaction), so that
 * SEARCH can map index candidates to UIDs without walking the mailbox. */
int index_add_member(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                     uint32_t mbox_id, uint32_t uid, const char **err);
/* Drop one message's postings (reindex, purge). */
int index_remove_message(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                         const char **err);
/* Drop everything (before a full reindex); marks the index incomplete
 * (searches scan) until index_mark_complete() ends the rebuild, which
 * must have re-added every message's postings and every member
 * (index_add_member for each (mailbox, UID) record). */
int index_clear(MDB_txn *txn, const struct index_dbs *dbs, const char **err);
int index_mark_complete(MDB_txn *txn, const struct index_dbs *dbs, const char **err);
/* Check CRCs and structure; report problems through cb; returns count. */
long index_verify(MDB_txn *txn, const struct index_dbs *dbs,
                  void (*report)(void *ctx, const char *msg), void *ctx);

#endif
