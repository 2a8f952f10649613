/* store.h — the Coffer archive store (LMDB). Public read API for cofferd,
 * plus what the admin CLI uses (store/admin.h holds the writer API).
 *
 * CAVEATS (read first)
 *  - Open environments after fork(), never before: an LMDB env must not be
 *    used across fork.
 *  - Readers need write access to lock.mdb; data_dir belongs to the coffer
 *    user. store_check_lockfiles() tells cofferd, before it starts, which
 *    lock.mdb its session user could not open.
 *  - One short read transaction per IMAP command: inst_rd_begin() before,
 *    inst_rd_end() after. Never hold one across IDLE or a blocked client
 *    write. Pointers returned by the read API are valid only until
 *    inst_rd_end().
 *  - MDB_READERS_FULL is retried once after mdb_reader_check();
 *    MDB_MAP_RESIZED is handled by re-adopting the map size. Callers see
 *    neither.
 *  - Every derived record carries a CRC32C checked on read. A mismatch
 *    returns STORE_ECORRUPT and is logged; corrupt data is never served.
 *
 * Layout: <data_dir>/registry/ (instances, aliases) and
 * <data_dir>/instances/<id>/ (one env per instance). See docs/ARCHITECTURE.md.
 *
 * Errors: functions return STORE_OK (0) or a negative STORE_E* code and,
 * where they take `const char **err`, a message a sysadmin can act on
 * (static or thread-local storage; valid until the next call). */
#ifndef COFFER_STORE_H
#define COFFER_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_OK         0
#define STORE_ENOTFOUND (-1)
#define STORE_ECORRUPT  (-2)   /* CRC mismatch or malformed record */
#define STORE_EIO       (-3)   /* LMDB or filesystem error */
#define STORE_EINVAL    (-4)   /* bad name or argument */
#define STORE_EEXIST    (-5)
#define STORE_EBUSY     (-6)   /* another writer holds the lock */
#define STORE_EFULL     (-7)   /* map full or disk full */
#define STORE_EVERSION  (-8)   /* schema too old/new: run `coffer upgrade` */
#define STORE_EREADERS  (-9)   /* LMDB reader table full (a read txn found no slot) */

#define STORE_ID_MAX    63     /* instance ids and aliases: [a-z0-9][a-z0-9._-]{0,62} */
#define STORE_USER_MAX  255    /* octets, UTF-8, NFC, case-folded */
#define STORE_MBOX_MAX  1024   /* mailbox name octets (UTF-8, '/' separated) */

/* Message flags as stored (\Deleted is never stored). */
#define STORE_F_SEEN     0x01u
#define STORE_F_ANSWERED 0x02u
#define STORE_F_FLAGGED  0x04u
#define STORE_F_DRAFT    0x08u

/* SPECIAL-USE attributes of a mailbox (RFC 6154). */
#define STORE_SU_ARCHIVE 0x01u
#define STORE_SU_DRAFTS  0x02u
#define STORE_SU_JUNK    0x04u
#define STORE_SU_SENT    0x08u
#define STORE_SU_TRASH   0x10u
#define STORE_SU_ALL     0x20u
#define STORE_SU_FLAGGED 0x40u

struct store_cfg {
    const char *data_dir;
    uint64_t map_size;        /* default 1 TiB (sparse) */
    unsigned max_readers;     /* >= max_connections + 8 */
};
void store_cfg_default(struct store_cfg *cfg, const char *data_dir);

/* ---- registry ---- */
struct registry;
int registry_open(const struct store_cfg *cfg, bool writable,
                  struct registry **out, const char **err);
void registry_close(struct registry *r);
/* Map an instance id or alias (case-insensitive) to the canonical id.
 * STORE_ENOTFOUND for unknown or disabled instances. */
int registry_resolve(struct registry *r, const char *name, char id[STORE_ID_MAX + 1]);

/* ---- instance ---- */
struct inst;
int inst_open(const struct store_cfg *cfg, const char *id, bool writable,
              struct inst **out, const char **err);
void inst_close(struct inst *in);
int inst_rd_begin(struct inst *in);   /* begin or renew the read txn */
void inst_rd_end(struct inst *in);    /* reset it */
/* Drop the pages of the env map from this process (they stay in the page
 * cache): a reader between commands need not carry what the last command
 * touched in its RSS/PSS. Pointers from the read API fault back in. */
void inst_release_pages(struct inst *in);
/* LMDB transaction id of the current snapshot: changes when anything was
 * committed (cofferd polls it to announce new mail). */
uint64_t inst_snapshot_id(struct inst *in);

/* Users. Names are looked up in canonical form (NFC, case-folded):
 * store_user_canon() produces it and rejects invalid names. */
int store_user_canon(const char *in, char out[STORE_USER_MAX + 1], const char **err);

struct user_rec {
    char name[STORE_USER_MAX + 1];     /* canonical */
    char pw_hash[160];                 /* yescrypt, crypt(3) format */
    char scram[256];                   /* RFC 5803: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey> */
    bool admin, disabled;
};
int inst_user_get(struct inst *in, const char *canon_name, struct user_rec *out);
/* Callback returns non-zero to stop the walk (that value is returned). */
int inst_user_list(struct inst *in, int (*cb)(void *ctx, const struct user_rec *u), void *ctx);
/* May `reader` read `owner`'s archive? (same user, granted, or admin) */
bool inst_may_read(struct inst *in, const char *reader, const char *owner);
/* Owners `reader` was explicitly granted (not admin-implied). */
int inst_grants_of(struct inst *in, const char *reader,
                   int (*cb)(void *ctx, const char *owner), void *ctx);

/* Mailboxes of one owner. Names are UTF-8 with '/' as separator, INBOX
 * spelled "INBOX". */
struct mbox_rec {
    uint32_t id;              /* instance-wide mailbox id */
    uint32_t uidvalidity, uidnext;
    uint32_t messages, unseen;
    uint64_t size;            /* sum of canonical sizes */
    uint32_t special_use;     /* STORE_SU_* */
};
int inst_mbox_list(struct inst *in, const char *owner,
                   int (*cb)(void *ctx, const char *name, const struct mbox_rec *m),
                   void *ctx);
int inst_mbox_get(struct inst *in, const char *owner, const char *name, struct mbox_rec *out);

/* Messages of a mailbox, in UID order. */
struct msg_ref {
    uint32_t uid;
    uint32_t flags;           /* STORE_F_* */
    uint64_t msgnum;          /* instance-wide message number (dedup target) */
    int64_t internaldate;     /* UTC seconds */
    int32_t internal_tz;      /* minutes east of UTC */
    uint64_t size;            /* canonical size = RFC822.SIZE */
};
/* Walk messages with uid >= from_uid; cb returns non-zero to stop. */
int inst_msgs_walk(struct inst *in, uint32_t mbox_id, uint32_t from_uid,
                   int (*cb)(void *ctx, const struct msg_ref *m), void *ctx);
int inst_msg_get(struct inst *in, uint32_t mbox_id, uint32_t uid, struct msg_ref *out);

/* The msginfo record (proto/msginfo.h) of a message, CRC-checked. */
int inst_msg_info(struct inst *in, uint64_t msgnum, const void **data, size_t *len);
/* Read canonical octets [off, off+len) of a message, decompressing only the
 * frames that cover the range; sink gets them in order (possibly in several
 * calls) and returns non-zero to abort. Range is clipped to the message. */
int inst_msg_read(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len,
                  int (*sink)(void *ctx, const void *p, size_t n), void *ctx);
/* Decompress and check every frame inst_msg_read would need for the same
 * range, producing nothing: STORE_OK when that read would succeed. Lets a
 * server answer NO for a damaged message before a large literal starts
 * (bounded memory: one frame at a time). */
int inst_msg_check(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len);
/* inst_msg_read appending to out (grown as needed, within its limit)
 * instead of calling a sink: a chunk stored with CRLF line ends is copied
 * once, a LF one converted straight into out, with no intermediate copy.
 * On error out->len may have grown: the caller drops what was appended. */
struct buf;
int inst_msg_read_buf(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len,
                      struct buf *out);
/* The stored (raw) octets whose canonical form is exactly the message's
 * canonical octets [0, len), when its first chunk holds exactly those (the
 * header chunk: a HEADER.FIELDS fetch filters them without a canonical
 * copy, msginfo_header_filter_set with to_crlf). *raw stays valid until
 * the next store call or the end of the read txn. STORE_ENOTFOUND when
 * the message is cut otherwise: use inst_msg_read. */
int inst_msg_head_raw(struct inst *in, uint64_t msgnum, uint64_t len, const unsigned char **raw,
                      size_t *rawlen);

/* cofferd, before it forks: every lock.mdb under data_dir must be
 * writable by uid/gid. On failure *bad_path names the first that is not. */
int store_check_lockfiles(const char *data_dir, unsigned uid, unsigned gid,
                          char *bad_path, size_t bad_path_len);

const char *store_strerror(int code);

/* For the full-text index readers (server/search_exec.c, store/index.c):
 * the current read transaction and the index's databases. */
struct MDB_txn;
struct index_dbs;
struct MDB_txn *inst_txn(struct inst *in);
const struct index_dbs *inst_index_dbs(struct inst *in);

#endif
