/* store_int.h — store-internal definitions shared by the store sources only.
 *
 * Instance env databases (all keys big-endian so LMDB order = numeric order):
 *   meta    "schema" u32, "next_msgnum" u64, "next_mbox" u32, "next_uidv" u32
 *   users   canonical name -> user record (u8 flags, pw_hash\0, scram\0, crc)
 *   grants  reader \0 owner -> "" (reader may read owner's archive)
 *   mboxes  owner \0 name -> mbox record (fixed 36 octets incl. crc)
 *   mboxid  mbox_id -> owner \0 name (reverse map, for export/verify/stats)
 *   mmsg    (mbox_id, uid) -> msg_ref record (fixed 36 octets incl. crc)
 *   hash    SHA-256(raw) -> msgnum
 *   msg     msgnum -> message record (hash, refcount, sizes, chunk table, crc)
 *   blob    (msgnum, chunk) -> one zstd frame of <= STORE_CHUNK raw octets
 *   info    msgnum -> u32 parser version, u32 crc32c, msginfo record
 *   src     (mbox_id, source key) -> uid (idempotent re-import)
 *   fromln  (mbox_id, uid) -> mbox From_ line + separator (byte-exact export)
 * plus the text index's own databases (store/index.c). */
#ifndef COFFER_STORE_INT_H
#define COFFER_STORE_INT_H
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"
#include "store/index.h"
#include "proto/buf.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_CHUNK (256u * 1024u)          /* raw octets per zstd frame */
#define STORE_MSG_MAX (1024u * 1024u * 1024u) /* largest message we import */
#define STORE_SRCKEY_MAX 400                /* longer source keys are hashed */
#define STORE_MAX_DBS 32

enum {
    DB_META, DB_USERS, DB_GRANTS, DB_MBOXES, DB_MBOXID, DB_MMSG, DB_HASH,
    DB_MSG, DB_BLOB, DB_INFO, DB_SRC, DB_FROMLN, DB__N
};
extern const char *const store_db_names[DB__N];

struct inst {
    MDB_env *env;
    MDB_dbi dbi[DB__N];
    struct index_dbs idx;
    bool have_index;
    bool writable;
    MDB_txn *rd;          /* read txn (reset between commands) */
    bool rd_active;
    MDB_txn *wr;          /* write txn while a batch is open */
    int lockfd;           /* flock'ed write.lock, -1 for readers */
    char id[STORE_ID_MAX + 1];
    char dir[4096];
    struct buf *scratch;  /* decompression scratch for inst_msg_read */
    void *map_base;       /* writer: the env map (found lazily), -1 unknown */
    size_t map_len;
};

struct registry {
    MDB_env *env;
    MDB_dbi inst, alias;
    bool writable;
    int lockfd;
    char dir[4096];
    struct store_cfg cfg;
    char data_dir[4096];
};

/* Record formats */
#define MBOX_REC_LEN 36
#define MMSG_REC_LEN 36
#define MSG_REC_HDR 65    /* ver u8, sha[32], refcount u64, raw u64, canon u64, nchunks u32 */
#define MSG_CHUNK_ENT 21  /* raw_len u32, canon_off u64, canon_len u32, prev_cr u8, clen u32 */

struct msg_chunk {
    uint32_t raw_len;
    uint64_t canon_off;
    uint32_t canon_len;
    uint8_t prev_cr;
    uint32_t stored_len;
};
struct msg_rec {
    unsigned char sha[32];
    uint64_t refcount, raw_size, canon_size;
    uint32_t nchunks;
    const unsigned char *chunks;    /* raw table, decode with msg_rec_chunk */
};

/* crc32c.c */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* util: big-endian helpers */
static inline void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}
static inline uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32)); put_be32(p + 4, (uint32_t)v);
}
static inline uint64_t get_be64(const unsigned char *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* env.c */
const char *store_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int store_mdb_err(int rc, const char *what, const char **err);
int store_env_open(const char *dir, const struct store_cfg *cfg, bool writable,
                   bool create, MDB_env **out, const char **err);
int store_txn_begin(MDB_env *env, bool rdonly, MDB_txn **out);
int store_lock(const char *dir, int *fd, const char **err);
void store_unlock(int *fd);
bool store_id_valid(const char *s);
int store_mkdir_p(const char *path, unsigned mode);
extern bool store_wait_for_lock;

/* inst.c */
MDB_txn *inst_cur_txn(struct inst *in);
/* Unmap the env's pages from this process (they stay in the page cache;
 * data read through the map stays valid). Long walks call it now and then
 * so RSS does not grow with the archive. */
void inst_release_map(struct inst *in);
int msg_rec_decode(const void *data, size_t len, struct msg_rec *out);
void msg_rec_chunk(const struct msg_rec *m, uint32_t i, struct msg_chunk *out);
int mbox_rec_decode(const void *data, size_t len, struct mbox_rec *out);
void mbox_rec_encode(unsigned char out[MBOX_REC_LEN], const struct mbox_rec *m);
int mmsg_rec_decode(const void *data, size_t len, uint32_t uid, struct msg_ref *out);
void mmsg_rec_encode(unsigned char out[MMSG_REC_LEN], const struct msg_ref *m);
int inst_open_dbs(struct inst *in, MDB_txn *txn, bool create, const char **err);

/* write.c: derived data (msginfo + index) of one message, in in->wr */
int store_derive(struct inst *in, uint64_t msgnum, const unsigned char *raw, size_t len,
                 const char **err);
/* The text index (store/index.c, SEARCH engineer) is wired in when it exists. */
#ifndef STORE_HAVE_INDEX
#define STORE_HAVE_INDEX 1
#endif

/* write.c: writer primitives (txn open via inst_wr_begin in admin.h) */
int meta_get_u64(struct inst *in, MDB_txn *txn, const char *key, uint64_t *v);
int meta_put_u64(struct inst *in, MDB_txn *txn, const char *key, uint64_t v);

#endif
