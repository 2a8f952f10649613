/* inst.c — instance env: open/close, read transactions, and the read API
 * cofferd uses (mailboxes, messages, msginfo, canonical partial reads). */
#include "store/admin.h"
#include "store/store_int.h"
#include "proto/canon.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

const char *const store_db_names[DB__N] = {
    "meta", "users", "grants", "mboxes", "mboxid", "mmsg", "hash",
    "msg", "blob", "info", "src", "fromln", "chunk", "cref",
};

MDB_txn *inst_cur_txn(struct inst *in)
{
    if (in->wr)
        return in->wr;
    if (!in->rd_active && inst_rd_begin(in) != STORE_OK)
        return NULL;
    return in->rd;
}

MDB_txn *inst_txn(struct inst *in) { return inst_cur_txn(in); }

const struct index_dbs *inst_index_dbs(struct inst *in)
{
    return in->have_index ? &in->idx : NULL;
}

#if STORE_HAVE_INDEX
static void index_release_cb(void *ctx)
{
    inst_release_map(ctx);
}
#endif

int inst_open_dbs(struct inst *in, MDB_txn *txn, bool create, const char **err)
{
    in->have_chunks = true;
    for (int i = 0; i < DB__N; i++) {
        int rc = mdb_dbi_open(txn, store_db_names[i], create ? MDB_CREATE : 0, &in->dbi[i]);
        if (rc == MDB_NOTFOUND && i >= DB__N_V1) {
            /* a schema 1 store opened read-only: it has version 1 records
             * only (until a writer adds the databases: inst_chunk_dbs) */
            in->have_chunks = false;
            continue;
        }
        if (rc) {
            if (rc == MDB_NOTFOUND) {
                *err = store_seterr("instance '%s' lacks database '%s': "
                                    "run `coffer upgrade` (or `coffer verify`)",
                                    in->id, store_db_names[i]);
                return STORE_EVERSION;
            }
            return store_mdb_err(rc, "open database", err);
        }
    }
#if STORE_HAVE_INDEX
    if (index_open(txn, create, &in->idx, err) != 0) {
        if (!create) {
            in->have_index = false;   /* reader: serve without the index */
            return STORE_OK;
        }
        return STORE_EIO;
    }
    in->have_index = true;
    if (create) {
        in->idx.release_map = index_release_cb;
        in->idx.release_ctx = in;
    }
#endif
    return STORE_OK;
}

int meta_get_u64(struct inst *in, MDB_txn *txn, const char *key, uint64_t *v)
{
    MDB_val k = {strlen(key), (void *)key}, d;
    int rc = mdb_get(txn, in->dbi[DB_META], &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc)
        return rc;
    if (d.mv_size != 8)
        return MDB_CORRUPTED;
    *v = get_be64(d.mv_data);
    return 0;
}

int meta_put_u64(struct inst *in, MDB_txn *txn, const char *key, uint64_t v)
{
    unsigned char b[8];
    put_be64(b, v);
    MDB_val k = {strlen(key), (void *)key}, d = {8, b};
    return mdb_put(txn, in->dbi[DB_META], &k, &d, 0);
}

static int inst_open2(const struct store_cfg *cfg, const char *id, bool writable,
                      bool create, bool any_schema, struct inst **out, const char **err)
{
    const char *e = NULL;
    if (!err)
        err = &e;
    if (!store_id_valid(id)) {
        *err = store_seterr("invalid instance id '%s'", id);
        return STORE_EINVAL;
    }
    struct inst *in = calloc(1, sizeof *in);
    if (!in) {
        *err = "out of memory";
        return STORE_EIO;
    }
    in->lockfd = -1;
    in->writable = writable;
    snprintf(in->id, sizeof in->id, "%s", id);
    snprintf(in->dir, sizeof in->dir, "%s/instances/%s", cfg->data_dir, id);
    int rc;
    if (writable) {
        if (create && store_mkdir_p(in->dir, 0750)) {
            *err = store_seterr("cannot create %s: %s", in->dir, strerror(errno));
            free(in);
            return STORE_EIO;
        }
        if (!create && access(in->dir, F_OK)) {
            *err = store_seterr("instance '%s' has no store at %s", id, in->dir);
            free(in);
            return STORE_ENOTFOUND;
        }
        if ((rc = store_lock(in->dir, &in->lockfd, err))) {
            free(in);
            return rc;
        }
    }
    rc = store_env_open(in->dir, cfg, writable, create, &in->env, err);
    if (rc) {
        store_unlock(&in->lockfd);
        free(in);
        return rc;
    }
    MDB_txn *txn;
    if (writable) {
        int dead;
        mdb_reader_check(in->env, &dead);
    }
    if ((rc = store_txn_begin(in->env, !writable, &txn))) {
        rc = store_mdb_err(rc, "begin transaction", err);
        inst_close(in);
        return rc;
    }
    rc = inst_open_dbs(in, txn, writable, err);
    uint64_t schema = 0;
    if (!rc) {
        int m = meta_get_u64(in, txn, "schema", &schema);
        if (!m && schema == 0 && create)
            m = meta_put_u64(in, txn, "schema", STORE_SCHEMA_VERSION);
        else if (!m && writable && !any_schema && schema >= STORE_SCHEMA_OLDEST &&
                 schema < STORE_SCHEMA_VERSION)
            /* older schemas are read as they are; the writable open just
             * created the databases newer code writes to */
            m = meta_put_u64(in, txn, "schema", STORE_SCHEMA_VERSION);
        else if (!m && !any_schema &&
                 (schema < STORE_SCHEMA_OLDEST || schema > STORE_SCHEMA_VERSION)) {
            *err = store_seterr("instance '%s' has store schema %llu, this Coffer uses %d: %s",
                                id, (unsigned long long)schema, STORE_SCHEMA_VERSION,
                                schema < STORE_SCHEMA_VERSION ? "run `coffer upgrade`"
                                : "upgrade Coffer");
            rc = STORE_EVERSION;
        }
        if (m)
            rc = store_mdb_err(m, "meta", err);
    }
    if (!rc) {
        int c = mdb_txn_commit(txn);
        if (c)
            rc = store_mdb_err(c, "commit", err);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc) {
        inst_close(in);
        return rc;
    }
    in->scratch = calloc(2, sizeof(struct buf));
    if (!in->scratch) {
        inst_close(in);
        *err = "out of memory";
        return STORE_EIO;
    }
    buf_init(&in->scratch[0], STORE_MSG_MAX);
    buf_init(&in->scratch[1], STORE_MSG_MAX);
    *out = in;
    return STORE_OK;
}

int inst_open(const struct store_cfg *cfg, const char *id, bool writable, struct inst **out,
              const char **err)
{
    return inst_open2(cfg, id, writable, false, false, out, err);
}

int inst_open_create(const struct store_cfg *cfg, const char *id, struct inst **out,
                     const char **err);
int inst_open_create(const struct store_cfg *cfg, const char *id, struct inst **out,
                     const char **err)
{
    return inst_open2(cfg, id, true, true, false, out, err);
}

int inst_open_any_schema(const struct store_cfg *cfg, const char *id, struct inst **out,
                         const char **err);
int inst_open_any_schema(const struct store_cfg *cfg, const char *id, struct inst **out,
                         const char **err)
{
    return inst_open2(cfg, id, true, false, true, out, err);
}

void inst_close(struct inst *in)
{
    if (!in)
        return;
    for (int i = 0; i < DB__N; i++)
        if (in->cur[i])
            mdb_cursor_close(in->cur[i]);
    if (in->wr)
        mdb_txn_abort(in->wr);
    if (in->rd)
        mdb_txn_abort(in->rd);
    if (in->env)
        mdb_env_close(in->env);
    store_unlock(&in->lockfd);
    if (in->scratch) {
        buf_free(&in->scratch[0]);
        buf_free(&in->scratch[1]);
        free(in->scratch);
    }
    free(in);
}

int inst_rd_begin(struct inst *in)
{
    if (in->wr)
        return STORE_OK;
    if (in->rd_active)
        inst_rd_end(in);
    if (!in->have_chunks)
        inst_chunk_dbs(in);   /* a schema 1 store: has a writer added them? */
    int rc = MDB_BAD_TXN;
    if (in->rd) {
        rc = mdb_txn_renew(in->rd);
        if (rc) {
            mdb_txn_abort(in->rd);
            in->rd = NULL;
        }
    }
    if (!in->rd)
        rc = store_txn_begin(in->env, true, &in->rd);
    if (rc) {
        in->rd = NULL;
        return store_mdb_err(rc, "read transaction", NULL);
    }
    in->rd_active = true;
    in->rd_gen++;               /* store_get renews its cursors lazily */
    return STORE_OK;
}

/* A read txn's cursors outlive it (LMDB: closed explicitly, renewable),
 * so a FETCH over 1:* positions them once and then mostly finds the next
 * message's records on the leaf page it is on: mdb_cursor_get(MDB_SET)
 * checks the current page's first and last keys before searching from
 * the root. */
int store_get(struct inst *in, MDB_txn *txn, int db, MDB_val *k, MDB_val *v)
{
    if (in->wr || !in->rd_active || txn != in->rd)
        return mdb_get(txn, in->dbi[db], k, v);
    MDB_cursor *c = in->cur[db];
    if (!c) {
        if (mdb_cursor_open(txn, in->dbi[db], &c))
            return mdb_get(txn, in->dbi[db], k, v);
        in->cur[db] = c;
        in->cur_gen[db] = in->rd_gen;
        in->cur_skip[db] = 1;
    } else if (in->cur_gen[db] != in->rd_gen) {
        if (mdb_cursor_renew(txn, c)) {
            mdb_cursor_close(c);
            in->cur[db] = NULL;
            return mdb_get(txn, in->dbi[db], k, v);
        }
        in->cur_gen[db] = in->rd_gen;
        in->cur_skip[db] = 1;
    }
    /* FETCH 1:* reads mmsg, msg and info in key order: the next record
     * is usually the wanted one, and MDB_NEXT is cheaper than a page
     * search. After a miss, plain seeks for a while (the chunk ids of a
     * folder open's header chunks are not consecutive). */
    if (in->cur_skip[db] == 0) {
        MDB_val nk, nv;
        /* up to 4 steps: a folder open reads one header chunk per message,
         * with the message's few body chunks between two of them */
        for (int step = 0; step < 4; step++) {
            if (mdb_cursor_get(c, &nk, &nv, MDB_NEXT) != 0 || nk.mv_size != k->mv_size)
                break;
            int d = memcmp(nk.mv_data, k->mv_data, k->mv_size);
            if (d == 0) {
                *v = nv;
                return 0;
            }
            if (d > 0)
                break;
        }
        in->cur_skip[db] = 16;
    } else {
        in->cur_skip[db]--;
    }
    return mdb_cursor_get(c, k, v, MDB_SET);
}

void inst_rd_end(struct inst *in)
{
    if (in->rd && in->rd_active)
        mdb_txn_reset(in->rd);
    in->rd_active = false;
}

uint64_t inst_snapshot_id(struct inst *in)
{
    MDB_txn *t = inst_cur_txn(in);
    return t ? (uint64_t)mdb_txn_id(t) : 0;
}

/* Drop the env map's pages from this process (they stay in the page
 * cache). Fault-around maps up to 64 KiB around every page LMDB touches,
 * mostly frames written moments ago, so without this a long import's RSS
 * grows with the archive; after a commit nothing in the map is needed. */
void inst_release_map(struct inst *in)
{
    if (!in->map_base) {
        /* LMDB does not expose its map address (me_mapaddr is only set for
         * MDB_FIXEDMAP): find the mapping of data.mdb once. */
        char want[4200], line[4600];
        snprintf(want, sizeof want, "%s/data.mdb", in->dir);
        char *rp = realpath(want, NULL);
        FILE *f = fopen("/proc/self/maps", "r");
        in->map_base = (void *)-1;
        if (rp && f) {
            while (fgets(line, sizeof line, f)) {
                unsigned long lo, hi;
                char *path = strchr(line, '/');
                if (!path || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
                    continue;
                path[strcspn(path, "\n")] = 0;
                if (!strcmp(path, rp) && hi - lo > in->map_len) {
                    in->map_base = (void *)lo;
                    in->map_len = hi - lo;
                }
            }
        }
        if (f)
            fclose(f);
        free(rp);
    }
    MDB_envinfo ei;
    MDB_stat st;
    if (in->map_base == (void *)-1 || mdb_env_info(in->env, &ei) || mdb_env_stat(in->env, &st))
        return;
    size_t used = (size_t)(ei.me_last_pgno + 1) * st.ms_psize;
    if (used > in->map_len)
        used = in->map_len;
    madvise(in->map_base, used, MADV_DONTNEED);
    in->win_lo = in->win_hi = 0;     /* the pending read window went too */
}

/* ---- record codecs ---- */

void mbox_rec_encode(unsigned char b[MBOX_REC_LEN], const struct mbox_rec *m)
{
    put_be32(b, m->id);
    put_be32(b + 4, m->uidvalidity);
    put_be32(b + 8, m->uidnext);
    put_be32(b + 12, m->messages);
    put_be32(b + 16, m->unseen);
    put_be64(b + 20, m->size);
    put_be32(b + 28, m->special_use);
    put_be32(b + 32, crc32c(0, b, 32));
}

int mbox_rec_decode(const void *data, size_t len, struct mbox_rec *m)
{
    const unsigned char *b = data;
    if (len != MBOX_REC_LEN || get_be32(b + 32) != crc32c(0, b, 32))
        return STORE_ECORRUPT;
    m->id = get_be32(b);
    m->uidvalidity = get_be32(b + 4);
    m->uidnext = get_be32(b + 8);
    m->messages = get_be32(b + 12);
    m->unseen = get_be32(b + 16);
    m->size = get_be64(b + 20);
    m->special_use = get_be32(b + 28);
    return STORE_OK;
}

void mmsg_rec_encode(unsigned char b[MMSG_REC_LEN], const struct msg_ref *m)
{
    put_be32(b, m->flags);
    put_be64(b + 4, m->msgnum);
    put_be64(b + 12, (uint64_t)m->internaldate);
    put_be32(b + 20, (uint32_t)m->internal_tz);
    put_be64(b + 24, m->size);
    put_be32(b + 32, crc32c(0, b, 32));
}

int mmsg_rec_decode(const void *data, size_t len, uint32_t uid, struct msg_ref *m)
{
    const unsigned char *b = data;
    if (len != MMSG_REC_LEN || get_be32(b + 32) != crc32c(0, b, 32))
        return STORE_ECORRUPT;
    m->uid = uid;
    m->flags = get_be32(b);
    m->msgnum = get_be64(b + 4);
    m->internaldate = (int64_t)get_be64(b + 12);
    m->internal_tz = (int32_t)get_be32(b + 20);
    m->size = get_be64(b + 24);
    return STORE_OK;
}

int msg_rec_decode(const void *data, size_t len, struct msg_rec *m)
{
    const unsigned char *b = data;
    if (len < MSG_REC_HDR + 4 || (b[0] != 1 && b[0] != 2) ||
        get_be32(b + len - 4) != crc32c(0, b, len - 4))
        return STORE_ECORRUPT;
    m->version = b[0];
    memcpy(m->sha, b + 1, 32);
    m->refcount = get_be64(b + 33);
    m->raw_size = get_be64(b + 41);
    m->canon_size = get_be64(b + 49);
    m->nchunks = get_be32(b + 57);
    if ((uint64_t)m->nchunks * (m->version == 1 ? MSG_CHUNK_ENT : MSG_CHUNK_ENT2) +
            MSG_REC_HDR + 4 != len)
        return STORE_ECORRUPT;
    m->chunks = b + MSG_REC_HDR;
    return STORE_OK;
}

void msg_rec_chunk(const struct msg_rec *m, uint32_t i, struct msg_chunk *c)
{
    const unsigned char *p =
        m->chunks + (size_t)i * (m->version == 1 ? MSG_CHUNK_ENT : MSG_CHUNK_ENT2);
    c->raw_len = get_be32(p);
    c->canon_off = get_be64(p + 4);
    c->canon_len = get_be32(p + 12);
    c->prev_cr = p[16];
    c->stored_len = get_be32(p + 17);
    c->chunk_id = m->version == 1 ? 0 : get_be64(p + MSG_CHUNK_ENT);
}

/* ---- mailboxes ---- */

static int owner_key(const char *owner, const char *name, char *k, size_t cap, size_t *klen)
{
    size_t ol = strlen(owner), nl = name ? strlen(name) : 0;
    if (ol + 1 + nl > cap || ol + 1 + nl > 511)
        return STORE_EINVAL;
    memcpy(k, owner, ol);
    k[ol] = 0;
    if (nl)
        memcpy(k + ol + 1, name, nl);
    *klen = ol + 1 + nl;
    return STORE_OK;
}

int inst_mbox_list(struct inst *in, const char *owner,
                   int (*cb)(void *ctx, const char *name, const struct mbox_rec *m), void *ctx)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    char key[512];
    size_t kl;
    if (owner_key(owner, NULL, key, sizeof key, &kl))
        return STORE_EINVAL;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, in->dbi[DB_MBOXES], &c);
    if (rc)
        return store_mdb_err(rc, "mailboxes", NULL);
    MDB_val k = {kl, key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < kl || memcmp(k.mv_data, key, kl))
            break;
        struct mbox_rec m;
        char name[STORE_MBOX_MAX + 1];
        size_t nl = k.mv_size - kl;
        if (nl > STORE_MBOX_MAX || mbox_rec_decode(v.mv_data, v.mv_size, &m)) {
            ret = STORE_ECORRUPT;
            break;
        }
        memcpy(name, (char *)k.mv_data + kl, nl);
        name[nl] = 0;
        if ((ret = cb(ctx, name, &m)))
            break;
    }
    mdb_cursor_close(c);
    return ret;
}

int inst_mbox_get(struct inst *in, const char *owner, const char *name, struct mbox_rec *out)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    char key[512];
    size_t kl;
    if (owner_key(owner, name, key, sizeof key, &kl))
        return STORE_ENOTFOUND;
    MDB_val k = {kl, key}, v;
    int rc = mdb_get(txn, in->dbi[DB_MBOXES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "mailbox", NULL);
    return mbox_rec_decode(v.mv_data, v.mv_size, out);
}

/* ---- messages ---- */

int inst_msgs_walk(struct inst *in, uint32_t mbox_id, uint32_t from_uid,
                   int (*cb)(void *ctx, const struct msg_ref *m), void *ctx)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    unsigned char key[8];
    put_be32(key, mbox_id);
    put_be32(key + 4, from_uid);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, in->dbi[DB_MMSG], &c);
    if (rc)
        return store_mdb_err(rc, "mailbox messages", NULL);
    MDB_val k = {8, key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8 || get_be32(k.mv_data) != mbox_id)
            break;
        struct msg_ref m;
        if (mmsg_rec_decode(v.mv_data, v.mv_size, get_be32((unsigned char *)k.mv_data + 4), &m)) {
            ret = STORE_ECORRUPT;
            break;
        }
        if ((ret = cb(ctx, &m)))
            break;
    }
    mdb_cursor_close(c);
    return ret;
}

int inst_msg_get(struct inst *in, uint32_t mbox_id, uint32_t uid, struct msg_ref *out)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    unsigned char key[8];
    put_be32(key, mbox_id);
    put_be32(key + 4, uid);
    MDB_val k = {8, key}, v;
    int rc = store_get(in, txn, DB_MMSG, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "mailbox message", NULL);
    return mmsg_rec_decode(v.mv_data, v.mv_size, uid, out);
}

int inst_msg_info(struct inst *in, uint64_t msgnum, const void **data, size_t *len)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    unsigned char key[8];
    put_be64(key, msgnum);
    MDB_val k = {8, key}, v;
    int rc = store_get(in, txn, DB_INFO, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "msginfo", NULL);
    const unsigned char *b = v.mv_data;
    if (v.mv_size < 8 || get_be32(b + 4) != crc32c(0, b + 8, v.mv_size - 8)) {
        fprintf(stderr, "coffer: instance %s: msginfo of message %llu fails its CRC32C\n",
                in->id, (unsigned long long)msgnum);
        return STORE_ECORRUPT;
    }
    *data = b + 8;
    *len = v.mv_size - 8;
    return STORE_OK;
}

static int get_msg_rec(struct inst *in, MDB_txn *txn, uint64_t msgnum, struct msg_rec *m)
{
    unsigned char key[8];
    put_be64(key, msgnum);
    MDB_val k = {8, key}, v;
    int rc = store_get(in, txn, DB_MSG, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "message", NULL);
    return msg_rec_decode(v.mv_data, v.mv_size, m);
}

/* One decompression context per process, reused: ZSTD_decompress() builds
 * and frees a context on every call, and building one runs CPUID, which
 * traps to the hypervisor on virtual machines; profiled, that was most of
 * the FETCH CPU time (tests/bench/run.sh, docs/BENCHMARKS.md). cofferd
 * children are single-threaded, and each process creates its own. */
ZSTD_DCtx *store_dctx(void)
{
    static ZSTD_DCtx *dctx;
    if (!dctx)
        dctx = ZSTD_createDCtx();
    return dctx;
}

/* A frame was read through the map: unmap the window around it. A page
 * fault maps a whole page-cache folio (up to 2 MiB for a file written
 * sequentially), so without this, sessions and walks that read many
 * messages accumulate the archive in their RSS (clean, shared pages, but
 * counted). Pointers into the map stay valid: the pages fault back in. */
/* Where /proc is out of reach (cofferd children are chrooted), find the
 * map from a pointer a read-only txn returned: it lies in an LMDB page
 * whose header starts with that page's number, so the map starts
 * pgno * psize before the page; page 0 there must be a meta page. Only
 * valid for read txns: a write txn also returns pointers into its dirty
 * (malloc'ed) pages. */
static void locate_map_from(struct inst *in, const void *p)
{
    MDB_stat st;
    MDB_envinfo ei;
    if (in->wr || mdb_env_stat(in->env, &st) || mdb_env_info(in->env, &ei) || !st.ms_psize)
        return;
    uintptr_t ps = st.ms_psize, page = (uintptr_t)p & ~(ps - 1);
    size_t pgno;
    memcpy(&pgno, (const void *)page, sizeof pgno);
    if (pgno > ei.me_last_pgno || pgno * ps > page)
        return;
    const unsigned char *base = (const unsigned char *)(page - pgno * ps);
    uint16_t flags;
    size_t pg0;
    memcpy(&pg0, base, sizeof pg0);
    memcpy(&flags, base + 10, sizeof flags);   /* MDB_page.mp_flags */
    if (pg0 != 0 || !(flags & 0x08))           /* P_META */
        return;
    in->map_base = (void *)base;
    in->map_len = ei.me_mapsize;
}

static void drop_window(struct inst *in, const void *p, size_t n)
{
    if (!in->map_base)
        inst_release_map(in);      /* first call locates the map */
    if (in->map_base == (void *)-1)
        locate_map_from(in, p);
    if (in->map_base == (void *)-1 || !in->map_base)
        return;
    const uintptr_t w = (uintptr_t)2 << 20;
    uintptr_t lo = (uintptr_t)in->map_base, hi = lo + in->map_len;
    uintptr_t a = (uintptr_t)p & ~(w - 1), b = ((uintptr_t)p + n + w - 1) & ~(w - 1);
    if (a < lo)
        a = lo;
    if (b > hi)
        b = hi;
    /* Frames read one after the other mostly share a window (chunks are
     * appended in id order): drop a window once reads have moved on, not
     * after each ~8 KiB chunk (every drop costs the next frame faults). */
    if (a >= in->win_lo && b <= in->win_hi)
        return;
    if (in->win_lo < in->win_hi)
        madvise((void *)in->win_lo, in->win_hi - in->win_lo, MADV_DONTNEED);
    in->win_lo = a;
    in->win_hi = b;
}

/* A reader going idle (cofferd between commands): drop every env page
 * this process has mapped. SELECT of a large folder walks its whole mmsg
 * tree, and those pages would otherwise stay counted in the child's PSS
 * for the life of the session. In a chroot (no /proc) the map is found
 * from a record pointer of the open read txn. */
void inst_release_pages(struct inst *in)
{
    if (in->wr)
        return;
    if (!in->map_base)
        inst_release_map(in);      /* locates the map through /proc */
    if (in->map_base == (void *)-1 && in->rd_active) {
        MDB_val k = {6, (void *)"schema"}, d;
        if (mdb_get(in->rd, in->dbi[DB_META], &k, &d) == 0)
            locate_map_from(in, d.mv_data);
    }
    if (in->map_base != (void *)-1 && in->map_base)
        inst_release_map(in);
}

/* The raw octets of chunk i of a message: *data points into the map (a
 * stored frame) or into in->scratch[0] (decompressed there). */
static int view_chunk(struct inst *in, MDB_txn *txn, uint64_t msgnum, uint32_t i,
                      const struct msg_chunk *c, const unsigned char **data)
{
    if (c->chunk_id) {
        const void *fr = NULL;
        size_t fl = 0;
        int r = chunk_view(in, txn, c->chunk_id, c->raw_len, c->stored_len, &in->scratch[0], data,
                           &fr, &fl);
        /* content-defined chunks are ~8 KiB: drop every frame that has
         * overflow pages of its own, or reading a big message would map
         * it all (a frame served from the map stays readable: dropped
         * pages fault back in from the page cache) */
        if (fr && fl >= 4096)
            drop_window(in, fr, fl);
        return r;
    }
    unsigned char key[12];
    put_be64(key, msgnum);
    put_be32(key + 8, i);
    MDB_val k = {12, key}, v;
    int rc = mdb_get(txn, in->dbi[DB_BLOB], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ECORRUPT;   /* the message record names it */
    if (rc)
        return store_mdb_err(rc, "blob", NULL);
    struct buf *b = &in->scratch[0];
    buf_reset(b);
    if (v.mv_size != c->stored_len || buf_reserve(b, c->raw_len))
        return STORE_ECORRUPT;
    ZSTD_DCtx *dctx = store_dctx();
    size_t n = dctx ? ZSTD_decompressDCtx(dctx, b->data, c->raw_len, v.mv_data, v.mv_size)
                    : ZSTD_decompress(b->data, c->raw_len, v.mv_data, v.mv_size);
    if (v.mv_size >= 16384)
        drop_window(in, v.mv_data, v.mv_size);
    if (ZSTD_isError(n) || n != c->raw_len)
        return STORE_ECORRUPT;
    b->len = n;
    *data = b->data;
    return STORE_OK;
}

int inst_msg_raw(struct inst *in, uint64_t msgnum,
                 int (*sink)(void *ctx, const void *p, size_t n), void *ctx)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    struct msg_rec m;
    int rc = get_msg_rec(in, txn, msgnum, &m);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < m.nchunks; i++) {
        struct msg_chunk c;
        msg_rec_chunk(&m, i, &c);
        const unsigned char *p;
        if ((rc = view_chunk(in, txn, msgnum, i, &c, &p)))
            return rc;
        if ((rc = sink(ctx, p, c.raw_len)))
            return rc;
    }
    return STORE_OK;
}

/* The message record and the first chunk ending after *off, with *len
 * clamped to the message: the start shared by both range readers. *len is
 * 0 when nothing is to be read. */
static int range_begin(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t *len,
                       MDB_txn **txn, struct msg_rec *m, uint32_t *first)
{
    if (!(*txn = inst_cur_txn(in)))
        return STORE_EIO;
    int rc = get_msg_rec(in, *txn, msgnum, m);
    if (rc)
        return rc;
    if (off >= m->canon_size) {
        *len = 0;
        return STORE_OK;
    }
    if (*len > m->canon_size - off)
        *len = m->canon_size - off;
    /* Content-defined chunks are small (tens of thousands in a big
     * message): find the first chunk ending after off by bisection. */
    uint32_t lo = 0, hi = m->nchunks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        struct msg_chunk c;
        msg_rec_chunk(m, mid, &c);
        if (c.canon_off + c.canon_len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    *first = lo;
    return STORE_OK;
}

/* Appends the canonical octets [0, e) of chunk c (raw octets p) to dst, and
 * perhaps a few more. A canonical offset is never below its raw one, so
 * the first e raw octets cover canonical [0, e): a header fetch converts
 * the header, not the whole chunk. */
static int canon_prefix(const struct msg_chunk *c, const unsigned char *p, uint64_t e,
                        struct buf *dst)
{
    size_t base = dst->len, need = e < c->raw_len ? (size_t)e : c->raw_len;
    int pcr = c->prev_cr;
    if (canon_append(dst, p, need, &pcr))
        return STORE_EIO;
    size_t got = dst->len - base;
    return (need == c->raw_len ? got != c->canon_len : got < e) ? STORE_ECORRUPT : STORE_OK;
}

int inst_msg_read(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len,
                  int (*sink)(void *ctx, const void *p, size_t n), void *ctx)
{
    MDB_txn *txn;
    struct msg_rec m;
    uint32_t first;
    int rc = range_begin(in, msgnum, off, &len, &txn, &m, &first);
    if (rc || !len)
        return rc;
    uint64_t end = off + len;
    for (uint32_t i = first; i < m.nchunks && off < end; i++) {
        struct msg_chunk c;
        msg_rec_chunk(&m, i, &c);
        uint64_t cs = c.canon_off, ce = c.canon_off + c.canon_len;
        if (ce <= off)
            continue;
        if (cs >= end)
            break;
        const unsigned char *p;
        if ((rc = view_chunk(in, txn, msgnum, i, &c, &p)))
            return rc;
        uint64_t s = off - cs, e = (end < ce ? end : ce) - cs;
        if (c.canon_len != c.raw_len) {
            struct buf *cb = &in->scratch[1];
            buf_reset(cb);
            if ((rc = canon_prefix(&c, p, e, cb)))
                return rc;
            p = cb->data;
        }
        if ((rc = sink(ctx, p + s, (size_t)(e - s))))
            return rc;
        off = cs + e;
    }
    return STORE_OK;
}

int inst_msg_read_buf(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len,
                      struct buf *out)
{
    MDB_txn *txn;
    struct msg_rec m;
    uint32_t first;
    int rc = range_begin(in, msgnum, off, &len, &txn, &m, &first);
    if (rc || !len)
        return rc;
    uint64_t end = off + len;
    if (buf_reserve(out, (size_t)len))
        return STORE_EIO;
    for (uint32_t i = first; i < m.nchunks && off < end; i++) {
        struct msg_chunk c;
        msg_rec_chunk(&m, i, &c);
        uint64_t cs = c.canon_off, ce = c.canon_off + c.canon_len;
        if (ce <= off)
            continue;
        if (cs >= end)
            break;
        const unsigned char *p;
        uint64_t s = off - cs, e = (end < ce ? end : ce) - cs;
        if (c.chunk_id && s == 0 && e == c.canon_len) {
            /* a whole chunk: one in the base64 form writes its canonical
             * octets straight into out (room reserved above), no scratch
             * copy and no second pass to insert CRs */
            const void *fr = NULL;
            size_t fl = 0;
            rc = chunk_view_canon(in, txn, c.chunk_id, c.raw_len, c.stored_len, c.prev_cr,
                                  out->data + out->len, c.canon_len, &in->scratch[0], &p, &fr,
                                  &fl);
            if (fr && fl >= 4096)
                drop_window(in, fr, fl);
            if (rc)
                return rc;
            if (!p) {
                out->len += c.canon_len;
                off = cs + e;
                continue;
            }
        } else if ((rc = view_chunk(in, txn, msgnum, i, &c, &p))) {
            return rc;
        }
        if (c.canon_len == c.raw_len) {
            if (buf_append(out, p + s, (size_t)(e - s)))
                return STORE_EIO;
        } else if (s == 0) {
            /* converted straight into out, cut back to [0, e) */
            size_t base = out->len;
            if ((rc = canon_prefix(&c, p, e, out)))
                return rc;
            out->len = base + (size_t)e;
        } else {
            struct buf *cb = &in->scratch[1];
            buf_reset(cb);
            if ((rc = canon_prefix(&c, p, e, cb)))
                return rc;
            if (buf_append(out, cb->data + s, (size_t)(e - s)))
                return STORE_EIO;
        }
        off = cs + e;
    }
    return STORE_OK;
}

int inst_msg_head_raw(struct inst *in, uint64_t msgnum, uint64_t len, const unsigned char **raw,
                      size_t *rawlen)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    struct msg_rec m;
    int rc = get_msg_rec(in, txn, msgnum, &m);
    if (rc)
        return rc;
    struct msg_chunk c;
    if (m.nchunks == 0)
        return STORE_ENOTFOUND;
    msg_rec_chunk(&m, 0, &c);
    if (c.canon_off != 0 || c.canon_len != len || c.prev_cr)
        return STORE_ENOTFOUND;
    if ((rc = view_chunk(in, txn, msgnum, 0, &c, raw)))
        return rc;
    *rawlen = c.raw_len;
    return STORE_OK;
}

static int discard_sink(void *ctx, const void *p, size_t n)
{
    (void)p;
    *(uint64_t *)ctx += n;
    return 0;
}

int inst_msg_check(struct inst *in, uint64_t msgnum, uint64_t off, uint64_t len)
{
    uint64_t got = 0;
    return inst_msg_read(in, msgnum, off, len, discard_sink, &got);
}
