/* admin.h — the writer side of the store, used by the `coffer` CLI only.
 *
 * Only one writer per environment at a time: opening the registry or an
 * instance writable takes flock() on <env>/write.lock. A second writer gets
 * STORE_EBUSY with a message, or waits when store_set_wait(true) was called.
 * Readers (cofferd) are never blocked.
 *
 * Writes happen in batches: inst_wr_begin() / inst_wr_commit(). Each batch
 * first calls mdb_reader_check() to clear readers of dead processes. Every
 * batch is durable and consistent on its own, so a crash at any point loses
 * at most the uncommitted batch, and re-running an import finishes the job
 * (source keys make it idempotent). */
#ifndef COFFER_STORE_ADMIN_H
#define COFFER_STORE_ADMIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "store/store.h"

/* mkdir -p with mode; 0 or -1 (errno). */
int store_mkdir_p(const char *path, unsigned mode);

/* Wait for another writer instead of failing with STORE_EBUSY. */
void store_set_wait(bool wait);

/* ---- registry ---- */
/* Create the instance (registry record + its env with all databases). */
int registry_instance_add(struct registry *r, const char *id, const char **err);
/* cb gets the id, disabled flag and the aliases as a comma-separated list. */
int registry_instance_list(struct registry *r,
                           int (*cb)(void *ctx, const char *id, bool disabled,
                                     const char *aliases), void *ctx);
int registry_alias_add(struct registry *r, const char *id, const char *alias, const char **err);
int registry_alias_rm(struct registry *r, const char *id, const char *alias, const char **err);
int registry_instance_disable(struct registry *r, const char *id, bool disabled, const char **err);
/* Refuses (STORE_EEXIST) an instance with users or messages unless force. */
int registry_instance_rm(struct registry *r, const char *id, bool force, const char **err);
/* Like registry_resolve, but disabled instances resolve too. */
int registry_lookup(struct registry *r, const char *name, char id[STORE_ID_MAX + 1], bool *disabled);

/* ---- write batches on an instance opened writable ---- */
int inst_wr_begin(struct inst *in, const char **err);
int inst_wr_commit(struct inst *in, const char **err);
void inst_wr_abort(struct inst *in);

/* ---- users and grants (each its own batch) ---- */
/* password may be NULL (account without a password: cannot log in). */
int inst_user_add(struct inst *in, const char *name, const char *password, bool admin,
                  const char **err);
int inst_user_passwd(struct inst *in, const char *name, const char *password, const char **err);
int inst_user_set_flags(struct inst *in, const char *name, int admin, int disabled,
                        const char **err);   /* -1 = leave unchanged */
int inst_user_rm(struct inst *in, const char *name, const char **err);
int inst_grant(struct inst *in, const char *reader, const char *owner, bool grant,
               const char **err);

/* Secrets (store/secret.c). out sizes as in struct user_rec. */
int secret_yescrypt(const char *password, char out[160], const char **err);
int secret_scram(const char *password, unsigned iterations, char out[256], const char **err);
/* Constant-time check of a password against a stored crypt(3) hash. */
bool secret_check_password(const char *hash, const char *password);
/* Pragmatic SASLprep (RFC 4013 subset): valid UTF-8, no control
 * characters, non-ASCII spaces mapped to U+0020, soft hyphen and zero-width
 * characters dropped. Other code points are passed through unchanged (not
 * NFKC-normalised). */
int secret_saslprep(const char *in, char *out, size_t outlen, const char **err);

/* ---- import (store/import.c) ---- */
struct import_opts {
    const char *folder;          /* target folder or NULL */
    const char *default_tz;      /* for zone-less dates: "+0100", "UTC", "Europe/Berlin" */
    bool progress;               /* progress bar on stderr */
    FILE *warn;                  /* where warnings go (stderr) */
    unsigned batch_msgs;         /* messages per write txn (0 = default) */
    uint64_t batch_bytes;        /* raw bytes per write txn (0 = default) */
};
struct import_stats {
    uint64_t imported, present, malformed, bytes, skipped, vanished, deduped;
};
/* Import SOURCEs ("-" = one message on stdin) into owner's archive. */
int store_import(struct inst *in, const char *owner, const char *const *sources, size_t n,
                 const struct import_opts *o, struct import_stats *st, const char **err);

/* Lower level, used by import and tests: one message into a mailbox. The
 * caller holds a write batch. Creates the mailbox if needed. */
struct import_msg {
    const unsigned char *raw; size_t len;
    uint32_t flags;
    int64_t internaldate; int32_t tz;
    const void *srckey; size_t srckey_len;   /* NULL = none */
    const void *fromline; size_t fromline_len; /* mbox only: record for export */
};
/* *added false when srckey was already present (nothing changed). */
int store_add_message(struct inst *in, const char *owner, const char *mbox,
                      const struct import_msg *m, bool *added, uint32_t *uid_out,
                      const char **err);
int store_mbox_ensure(struct inst *in, const char *owner, const char *name,
                      struct mbox_rec *out, const char **err);

/* ---- export (store/export.c) ---- */
enum export_fmt { EXPORT_MBOX, EXPORT_MAILDIR, EXPORT_EML };
int store_export(struct inst *in, const char *owner, const char *folder,
                 enum export_fmt fmt, const char *dest, uint64_t *nmsgs, const char **err);
/* Raw (original) octets of a message. */
int inst_msg_raw(struct inst *in, uint64_t msgnum,
                 int (*sink)(void *ctx, const void *p, size_t n), void *ctx);

/* ---- maintenance (store/maint.c) ---- */
/* Walk everything: hashes, CRCs, refcounts, cross references, index.
 * Returns the number of faults (0 = clean), or < 0 on error. */
long store_verify_inst(struct inst *in, FILE *report);
int store_backup(const struct store_cfg *cfg, const char *id, const char *dest, const char **err);
int store_restore(struct registry *r, const char *src, const char *id, const char **err);
int store_stats(struct inst *in, FILE *out);
int store_reindex(struct inst *in, bool all, uint64_t *n, const char **err);
/* Schema version of an instance env on disk; migrate to the current one. */
int store_upgrade_inst(const struct store_cfg *cfg, const char *id, int *from, int *to,
                       const char **err);

#endif
