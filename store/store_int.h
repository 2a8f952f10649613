/* store_int.h — store-internal definitions shared by the store sources only.
 *
 * Instance env databases (all keys big-endian so LMDB order = numeric order):
 *   meta    "schema" u32, "next_msgnum" u64, "next_mbox" u32, "next_uidv" u32,
 *           "next_chunk" u64
 *   users   canonical name -> user record (u8 flags, pw_hash\0, scram\0, crc)
 *   grants  reader \0 owner -> "" (reader may read owner's archive)
 *   mboxes  owner \0 name -> mbox record (fixed 36 octets incl. crc)
 *   mboxid  mbox_id -> owner \0 name (reverse map, for export/verify/stats)
 *   mmsg    (mbox_id, uid) -> msg_ref record (fixed 36 octets incl. crc)
 *   hash    SHA-256(raw) -> msgnum
 *   msg     msgnum -> message record (hash, refcount, sizes, chunk table, crc);
 *           version 1 tables name frames in blob, version 2 in chunk
 *   blob    (msgnum, chunk) -> one zstd frame of <= STORE_CHUNK raw octets
 *           (version 1 records only: stores written before schema 2)
 *   chunk   chunk id -> u32 raw length, u32 crc32c(raw), then a zstd frame
 *           or (schema 3) the base64 form, "CB64" + header (store/b64chunk.h)
 *   cref    SHA-256(raw chunk) -> u64 chunk id, u64 refcount (references from
 *           chunk tables), u32 raw length, u32 frame length, u32 crc32c
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

/* Schema 2 added content-keyed chunks (chunk, cref). A schema 1 store is
 * read as it is (version 1 records keep their blob frames); a writable
 * open adds the two databases and records schema 2 (docs/ARCHITECTURE.md).
 * Schema 3 added the base64 chunk form (store/b64chunk.h): nothing to
 * migrate, but a writable open records 3, so a Coffer that knows only
 * zstd chunk values refuses the store ("upgrade Coffer") instead of
 * calling its new chunks corrupt. */
#define STORE_SCHEMA_VERSION 3
#define STORE_SCHEMA_OLDEST 1
#define STORE_CHUNK (256u * 1024u)          /* raw octets per zstd frame */
#define STORE_MSG_MAX (1024u * 1024u * 1024u) /* largest message we import */
#define STORE_SRCKEY_MAX 400                /* longer source keys are hashed */
#define STORE_MAX_DBS 32

enum {
    DB_META, DB_USERS, DB_GRANTS, DB_MBOXES, DB_MBOXID, DB_MMSG, DB_HASH,
    DB_MSG, DB_BLOB, DB_INFO, DB_SRC, DB_FROMLN, DB_CHUNK, DB_CREF, DB__N
};
#define DB__N_V1 DB_CHUNK   /* databases every schema 1 store has */
extern const char *const store_db_names[DB__N];

struct inst {
    MDB_env *env;
    MDB_dbi dbi[DB__N];
    struct index_dbs idx;
    bool have_index;
    bool have_chunks;     /* chunk + cref exist (a schema 1 store read-only may lack them) */
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
    uintptr_t win_lo, win_hi;   /* reader: map window read last, dropped when reads move on */
    MDB_cursor *cur[DB__N];     /* reader: store_get's cursors, renewed with rd */
    unsigned cur_gen[DB__N];    /* rd_gen the cursor was last bound to */
    unsigned char cur_skip[DB__N];   /* seeks left before store_get tries MDB_NEXT again */
    unsigned rd_gen;            /* bumped by every inst_rd_begin */
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
#define MSG_CHUNK_ENT2 29 /* version 2: the same + u64 chunk id */
#define CHUNK_KEY 32      /* cref key: SHA-256 of the raw chunk */
#define CHUNK_VAL_HDR 8   /* raw_len u32, crc32c(raw) u32, then the zstd frame or base64 form */
#define CREF_REC_LEN 28

struct msg_chunk {
    uint32_t raw_len;
    uint64_t canon_off;
    uint32_t canon_len;
    uint8_t prev_cr;
    uint32_t stored_len;
    uint64_t chunk_id;              /* version 2: key in chunk; 0: blob (msgnum, i) */
};
struct msg_rec {
    uint8_t version;                /* 1: frames in blob, 2: content-keyed chunks */
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

/* chunk.c: content-defined chunking and the content-keyed chunk store.
 * Cut parameters: min, average (a power of two) and max raw octets. */
struct cdc_params { size_t min, avg, max; };
extern const struct cdc_params store_cdc;
const struct cdc_params *store_cdc_params(void);   /* store_cdc or a benchmark override */
/* Length of the next chunk of p[0..n): a content-defined cut (gear hash over
 * the last 64 octets), at least c->min and at most c->max octets, or n. */
size_t cdc_cut(const unsigned char *p, size_t n, const struct cdc_params *c);
struct msginfo;
/* Chunk boundaries of a message: *cuts gets increasing raw end offsets (the
 * last is len): after the header (hdr_len, 0 = none), at the start and end
 * of every leaf body of at least STORE_PART_CUT octets (canonical offsets
 * from mi mapped back to raw ones; mi may be NULL), and content-defined
 * cuts inside longer spans. Caller frees *cuts. */
#define STORE_PART_CUT 4096
int chunk_plan(const unsigned char *raw, size_t len, size_t hdr_len, const struct msginfo *mi,
               const struct cdc_params *c, size_t **cuts, size_t *ncuts);
/* Store raw[0..n) once (in in->wr): refcount + 1 if a chunk with its
 * SHA-256 exists, else compress it and add it under the next chunk id.
 * how: CHUNK_Z compresses at level 3; CHUNK_RAWLIT with raw (not
 * Huffman-coded) literals when the library allows it (small text chunks:
 * chunk.c rawlit_cctx); CHUNK_STORED stores the octets in raw blocks
 * (chunk_stored_frame); CHUNK_SMALL (the header chunk and small text
 * chunks) stores them when a raw-literal frame would save little (chunk.c
 * store_keep), else compresses with raw literals. CHUNK_Z and
 * CHUNK_RAWLIT chunks that are mostly base64 lines take the base64 form
 * instead (decoded octets, raw or a zstd frame of them: store/b64chunk.h);
 * every other value is an ordinary zstd frame. *id gets its chunk id,
 * *stored the value's length after CHUNK_VAL_HDR. */
enum { CHUNK_Z = 0, CHUNK_RAWLIT = 1, CHUNK_STORED = 2, CHUNK_SMALL = 3, CHUNK_SMALL_TEXT = 4 };
int chunk_ref(struct inst *in, const unsigned char *raw, size_t n, int how, uint64_t *id,
              uint32_t *stored, const char **err);
/* Write a zstd frame of raw blocks holding src[0..n) to f (room for
 * n + 9 + 3 * (n / 128 KiB + 1) octets); returns its length. */
size_t chunk_stored_frame(unsigned char *f, const unsigned char *src, size_t n);
/* The raw octets of chunk id, checked (length, CRC32C): *data points into
 * the map for a one-block stored frame (valid while txn lives), else into
 * scratch, where the frame was decompressed or the base64 form
 * re-encoded. frame/flen as chunk_load. */
int chunk_view(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len, uint32_t stored_len,
               struct buf *scratch, const unsigned char **data, const void **frame, size_t *flen);
/* chunk_view, except that when canon is set and the chunk is in the base64
 * form, its canonical octets (exactly canon_len: the chunk table's
 * canon_len; prev_cr from it too) are written straight to canon, the CRC32C
 * of the raw octets checked on the way, and *data is set to NULL: the
 * converted octets need no second pass. */
int chunk_view_canon(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len,
                     uint32_t stored_len, int prev_cr, unsigned char *canon, size_t canon_len,
                     struct buf *scratch, const unsigned char **data, const void **frame,
                     size_t *flen);
/* mdb_get through a cursor kept per database while the reader's txn
 * lives (inst.c): consecutive keys on one leaf page skip the descent from
 * the root. Any other txn (a writer's) uses mdb_get. */
int store_get(struct inst *in, MDB_txn *txn, int db, MDB_val *k, MDB_val *v);
/* Decompress chunk id into out (reset first), checking its length and
 * CRC32C: STORE_ECORRUPT on any mismatch. frame and flen (may be NULL)
 * get the stored frame (valid while txn lives). */
int chunk_load(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len,
               uint32_t stored_len, struct buf *out, const void **frame, size_t *flen);
struct cref { uint64_t id, refcount; uint32_t raw_len, stored_len; };
int cref_decode(const void *data, size_t len, struct cref *out);
void cref_encode(unsigned char out[CREF_REC_LEN], const struct cref *c);
/* Make the chunk databases usable in a reader that opened before a writer
 * created them (schema 1 stores); STORE_ECORRUPT if they still do not exist. */
int inst_chunk_dbs(struct inst *in);
/* The process's reused zstd decompression context (inst.c). */
struct ZSTD_DCtx_s;
struct ZSTD_DCtx_s *store_dctx(void);

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
