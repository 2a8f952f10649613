/* maint.c — verify, backup/restore, stats, reindex, upgrade. */
#include "store/admin.h"
#include "store/store_int.h"
#include "store/index_read.h"
#include "proto/canon.h"
#include "proto/msginfo.h"
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

int inst_open_any_schema(const struct store_cfg *cfg, const char *id, struct inst **out,
                         const char **err);

/* ---- verify ---- */

struct vctx {
    struct inst *in;
    FILE *out;
    long faults;
    uint32_t *refs;        /* references per msgnum from mailbox messages */
    uint64_t nmax;
};

static void fault(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fault(struct vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(v->out, "instance %s: ", v->in->id);
    vfprintf(v->out, fmt, ap);
    fputc('\n', v->out);
    va_end(ap);
    v->faults++;
}

static void idx_report(void *ctx, const char *msg)
{
    fault(ctx, "text index: %s", msg);
}

#if STORE_HAVE_INDEX
/* The index's member map (msgnum, mailbox, UID) must mirror mmsg exactly
 * once it is marked complete: SEARCH trusts it to find every message. */
static void verify_members(struct vctx *v, MDB_txn *txn)
{
    struct inst *in = v->in;
    MDB_cursor *c;
    MDB_val k, d;
    MDB_stat st;
    if (!ix_members_complete(txn, &in->idx) || ix_members_open(txn, &in->idx, &c) != STORE_OK)
        return;
    uint64_t n = 0;
    int rc;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        const unsigned char *p = k.mv_data;
        if (k.mv_size != 16) {
            fault(v, "text index: member map key of %zu octets", k.mv_size);
            continue;
        }
        uint64_t num = get_be64(p);
        uint32_t mb = get_be32(p + 8), uid = get_be32(p + 12);
        unsigned char mk[8];
        put_be32(mk, mb);
        put_be32(mk + 4, uid);
        MDB_val kk = {8, mk}, vv;
        struct msg_ref r;
        if (mdb_get(txn, in->dbi[DB_MMSG], &kk, &vv) ||
            mmsg_rec_decode(vv.mv_data, vv.mv_size, uid, &r) || r.msgnum != num)
            fault(v, "text index: member map says message %llu is mailbox %u uid %u; "
                  "the mailbox does not (run `coffer reindex`)", (unsigned long long)num, mb, uid);
        if (++n % 10000 == 0)
            inst_release_map(in);
    }
    mdb_cursor_close(c);
    if (mdb_stat(txn, in->dbi[DB_MMSG], &st) == 0 && st.ms_entries != n)
        fault(v, "text index: member map has %llu entries for %llu mailbox messages "
              "(run `coffer reindex`)", (unsigned long long)n, (unsigned long long)st.ms_entries);
}
#endif

static void verify_mailboxes(struct vctx *v, MDB_txn *txn)
{
    struct inst *in = v->in;
    MDB_cursor *c, *cm;
    MDB_val k, d;
    mdb_cursor_open(txn, in->dbi[DB_MBOXES], &c);
    mdb_cursor_open(txn, in->dbi[DB_MMSG], &cm);
    uint64_t nmb = 0;
    for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        struct mbox_rec m;
        nmb++;
        const char *key = k.mv_data;
        const char *z = memchr(key, 0, k.mv_size);
        if (!z || mbox_rec_decode(d.mv_data, d.mv_size, &m)) {
            fault(v, "mailbox record '%.*s': bad CRC or format", (int)k.mv_size, key);
            continue;
        }
        unsigned char idk[4];
        put_be32(idk, m.id);
        MDB_val ik = {4, idk}, iv;
        if (mdb_get(txn, in->dbi[DB_MBOXID], &ik, &iv) || iv.mv_size != k.mv_size ||
            memcmp(iv.mv_data, k.mv_data, k.mv_size))
            fault(v, "mailbox %u: id map does not point back to it", m.id);
        /* Recount the mailbox from its messages. */
        uint32_t n = 0, unseen = 0, maxuid = 0;
        uint64_t size = 0;
        unsigned char mk[8];
        put_be32(mk, m.id);
        put_be32(mk + 4, 0);
        MDB_val kk = {8, mk}, vv;
        for (int r2 = mdb_cursor_get(cm, &kk, &vv, MDB_SET_RANGE); !r2;
             r2 = mdb_cursor_get(cm, &kk, &vv, MDB_NEXT)) {
            if (kk.mv_size != 8 || get_be32(kk.mv_data) != m.id)
                break;
            struct msg_ref r;
            uint32_t uid = get_be32((unsigned char *)kk.mv_data + 4);
            if (mmsg_rec_decode(vv.mv_data, vv.mv_size, uid, &r)) {
                fault(v, "mailbox %u uid %u: bad CRC or format", m.id, uid);
                continue;
            }
            if (++n % 1000 == 0)
                inst_release_map(in);
            if (!(r.flags & STORE_F_SEEN))
                unseen++;
            size += r.size;
            if (uid > maxuid)
                maxuid = uid;
            if (r.msgnum == 0 || r.msgnum >= v->nmax)
                fault(v, "mailbox %u uid %u: refers to unknown message %llu", m.id, uid,
                      (unsigned long long)r.msgnum);
            else
                v->refs[r.msgnum]++;
        }
        if (n != m.messages || unseen != m.unseen || size != m.size)
            fault(v, "mailbox %u ('%s'): counters say %u messages/%u unseen/%llu octets, "
                  "found %u/%u/%llu", m.id, z + 1, m.messages, m.unseen,
                  (unsigned long long)m.size, n, unseen, (unsigned long long)size);
        if (maxuid >= m.uidnext)
            fault(v, "mailbox %u: uid %u >= uidnext %u", m.id, maxuid, m.uidnext);
    }
    mdb_cursor_close(c);
    mdb_cursor_close(cm);
    MDB_stat st;
    if (mdb_stat(txn, in->dbi[DB_MBOXID], &st) == 0 && st.ms_entries != nmb)
        fault(v, "mailbox id map has %zu entries for %llu mailboxes", st.ms_entries,
              (unsigned long long)nmb);
}

struct shactx { EVP_MD_CTX *md; };
static int sha_sink(void *ctx, const void *p, size_t n)
{
    return EVP_DigestUpdate(((struct shactx *)ctx)->md, p, n) == 1 ? 0 : STORE_EIO;
}

/* Every chunk: its reference record's CRC, refcount = references from
 * chunk tables (counted per chunk id in crefs), frame decompresses (length
 * + CRC32C) to octets whose SHA-256 is the record's key; every frame has
 * exactly one reference record. */
static void verify_chunks(struct vctx *v, MDB_txn *txn, uint32_t *crefs, uint64_t nids)
{
    struct inst *in = v->in;
    if (!in->have_chunks)
        return;
    MDB_cursor *c;
    MDB_val k, d;
    struct buf raw;
    buf_init(&raw, STORE_CHUNK);
    uint64_t nchunks = 0;
    unsigned char *seen = calloc(nids ? nids : 1, 1);
    if (!seen) {
        fault(v, "out of memory checking chunks");
        return;
    }
    mdb_cursor_open(txn, in->dbi[DB_CREF], &c);
    for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (++nchunks % 200 == 0)
            inst_release_map(in);
        const unsigned char *key = k.mv_data;
        struct cref cr;
        if (k.mv_size != CHUNK_KEY || cref_decode(d.mv_data, d.mv_size, &cr)) {
            fault(v, "chunk reference record %llu: bad key, CRC or format",
                  (unsigned long long)nchunks);
            continue;
        }
        if (cr.id == 0 || cr.id >= nids || seen[cr.id]++) {
            fault(v, "chunk %llu: id out of range or named by two reference records",
                  (unsigned long long)cr.id);
            continue;
        }
        if (cr.refcount != crefs[cr.id])
            fault(v, "chunk %llu: refcount %llu but %u chunk table references",
                  (unsigned long long)cr.id, (unsigned long long)cr.refcount, crefs[cr.id]);
        unsigned char sha[32];
        if (chunk_load(in, txn, cr.id, cr.raw_len, cr.stored_len, &raw, NULL, NULL)) {
            fault(v, "chunk %llu: frame missing, damaged or fails its CRC32C",
                  (unsigned long long)cr.id);
            continue;
        }
        SHA256(raw.data, raw.len, sha);
        if (memcmp(sha, key, CHUNK_KEY))
            fault(v, "chunk %llu: SHA-256 of the frame's octets is not its key",
                  (unsigned long long)cr.id);
    }
    mdb_cursor_close(c);
    buf_free(&raw);
    for (uint64_t i = 1; i < nids; i++)
        if (!seen[i] && crefs[i])
            fault(v, "chunk %llu: named by %u chunk tables but has no reference record",
                  (unsigned long long)i, crefs[i]);
    free(seen);
    MDB_stat st;
    if (mdb_stat(txn, in->dbi[DB_CHUNK], &st) == 0 && st.ms_entries != nchunks)
        fault(v, "%zu chunk frames stored but %llu chunk reference records", st.ms_entries,
              (unsigned long long)nchunks);
}

static void verify_messages(struct vctx *v, MDB_txn *txn)
{
    struct inst *in = v->in;
    MDB_cursor *c;
    MDB_val k, d;
    uint64_t chunks = 0, nmsg = 0, nids = 0;
    uint32_t *crefs = NULL;
    if (in->have_chunks && !meta_get_u64(in, txn, "next_chunk", &nids) &&
        nids < (uint64_t)1 << 34 && !(crefs = calloc(nids ? nids : 1, sizeof *crefs)))
        fault(v, "out of memory counting chunk references");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    mdb_cursor_open(txn, in->dbi[DB_MSG], &c);
    for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (++nmsg % 50 == 0)
            inst_release_map(in);
        if (k.mv_size != 8) {
            fault(v, "message table: malformed key");
            continue;
        }
        uint64_t num = get_be64(k.mv_data);
        struct msg_rec m;
        if (msg_rec_decode(d.mv_data, d.mv_size, &m)) {
            fault(v, "message %llu: record fails its CRC32C", (unsigned long long)num);
            continue;
        }
        if (m.version == 1)
            chunks += m.nchunks;      /* frames in blob */
        uint32_t want = num < v->nmax ? v->refs[num] : 0;
        if (m.refcount != want)
            fault(v, "message %llu: refcount %llu but %u mailbox references",
                  (unsigned long long)num, (unsigned long long)m.refcount, want);
        uint64_t raw = 0, canon = 0;
        for (uint32_t i = 0; i < m.nchunks; i++) {
            struct msg_chunk ch;
            msg_rec_chunk(&m, i, &ch);
            if (ch.canon_off != canon || ch.raw_len > STORE_CHUNK || ch.prev_cr > 1 ||
                ch.canon_len < ch.raw_len)
                fault(v, "message %llu chunk %u: chunk table inconsistent",
                      (unsigned long long)num, i);
            raw += ch.raw_len;
            canon += ch.canon_len;
            if (ch.chunk_id && (!crefs || ch.chunk_id >= nids))
                fault(v, "message %llu chunk %u: unknown chunk %llu", (unsigned long long)num,
                      i, (unsigned long long)ch.chunk_id);
            else if (ch.chunk_id)
                crefs[ch.chunk_id]++;
        }
        struct shactx sc = {md};
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        int r = inst_msg_raw(in, num, sha_sink, &sc);
        unsigned char sha[32];
        unsigned int sl;
        EVP_DigestFinal_ex(md, sha, &sl);
        if (r)
            fault(v, "message %llu: stored frames unreadable (%s)", (unsigned long long)num,
                  store_strerror(r));
        else if (memcmp(sha, m.sha, 32))
            fault(v, "message %llu: SHA-256 of the stored octets does not match",
                  (unsigned long long)num);
        if (raw != m.raw_size || canon != m.canon_size)
            fault(v, "message %llu: sizes disagree with the chunk table",
                  (unsigned long long)num);
        MDB_val hk = {32, m.sha}, hv;
        if (mdb_get(txn, in->dbi[DB_HASH], &hk, &hv) || hv.mv_size != 8 ||
            get_be64(hv.mv_data) != num)
            fault(v, "message %llu: hash index does not point to it", (unsigned long long)num);
        const void *info;
        size_t il;
        r = inst_msg_info(in, num, &info, &il);
        if (r)
            fault(v, "message %llu: msginfo %s", (unsigned long long)num,
                  r == STORE_ENOTFOUND ? "missing" : "fails its CRC32C");
        else {
            MDB_val ik = {8, k.mv_data}, iv;
            if (!mdb_get(txn, in->dbi[DB_INFO], &ik, &iv) && iv.mv_size >= 4 &&
                get_be32(iv.mv_data) != MSGINFO_VERSION)
                fprintf(v->out, "instance %s: message %llu: derived data from parser "
                        "version %u (current %u): run `coffer reindex`\n", in->id,
                        (unsigned long long)num, get_be32(iv.mv_data), MSGINFO_VERSION);
        }
    }
    mdb_cursor_close(c);
    EVP_MD_CTX_free(md);
    if (crefs)
        verify_chunks(v, txn, crefs, nids);
    free(crefs);
    MDB_stat st;
    if (mdb_stat(txn, in->dbi[DB_BLOB], &st) == 0 && st.ms_entries != chunks)
        fault(v, "%zu frames stored but message records name %llu", st.ms_entries,
              (unsigned long long)chunks);
    if (mdb_stat(txn, in->dbi[DB_HASH], &st) == 0 && st.ms_entries != nmsg)
        fault(v, "hash index has %zu entries for %llu messages", st.ms_entries,
              (unsigned long long)nmsg);
    if (mdb_stat(txn, in->dbi[DB_INFO], &st) == 0 && st.ms_entries != nmsg)
        fault(v, "%zu msginfo records for %llu messages", st.ms_entries,
              (unsigned long long)nmsg);
}

static int count_user(void *ctx, const struct user_rec *u)
{
    (void)u;
    (void)ctx;
    return 0;
}

long store_verify_inst(struct inst *in, FILE *report)
{
    if (inst_rd_begin(in))
        return -1;
    MDB_txn *txn = inst_cur_txn(in);
    struct vctx v = {in, report, 0, NULL, 0};
    uint64_t next;
    if (meta_get_u64(in, txn, "next_msgnum", &next)) {
        fault(&v, "meta record unreadable");
        inst_rd_end(in);
        return v.faults;
    }
    v.nmax = next ? next : 1;
    if (v.nmax > (uint64_t)1 << 34 || !(v.refs = calloc(v.nmax, sizeof *v.refs))) {
        fault(&v, "next message number %llu is implausible", (unsigned long long)next);
        inst_rd_end(in);
        return v.faults;
    }
    if (inst_user_list(in, count_user, NULL))
        fault(&v, "a user record fails its CRC32C");
    verify_mailboxes(&v, txn);
    verify_messages(&v, txn);
#if STORE_HAVE_INDEX
    if (in->have_index) {
        long f = index_verify(txn, &in->idx, idx_report, &v);
        (void)f;
        verify_members(&v, txn);
    }
#else
    (void)idx_report;
#endif
    free(v.refs);
    inst_rd_end(in);
    return v.faults;
}

/* ---- backup / restore ---- */

int store_backup(const struct store_cfg *cfg, const char *id, const char *dest, const char **err)
{
    struct inst *in;
    int rc = inst_open(cfg, id, false, &in, err);
    if (rc)
        return rc;
    if (store_mkdir_p(dest, 0750)) {
        *err = store_seterr("cannot create %s: %s", dest, strerror(errno));
        inst_close(in);
        return STORE_EIO;
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/data.mdb", dest);
    if (access(p, F_OK) == 0) {
        *err = store_seterr("%s already exists; give an empty or new directory", p);
        inst_close(in);
        return STORE_EEXIST;
    }
    /* mdb_env_copy2 runs in its own read txn: a consistent snapshot while
     * imports go on. */
    int m = mdb_env_copy2(in->env, dest, MDB_CP_COMPACT);
    inst_close(in);
    if (m)
        return store_mdb_err(m, "backup (mdb_env_copy2)", err);
    snprintf(p, sizeof p, "%s/COFFER-BACKUP", dest);
    FILE *f = fopen(p, "w");
    if (f) {
        fprintf(f, "coffer backup of instance %s, schema %d\n", id, STORE_SCHEMA_VERSION);
        fclose(f);
    }
    return STORE_OK;
}

static int copy_file(const char *from, const char *to, const char **err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
    if (in < 0) {
        *err = store_seterr("%s: %s", from, strerror(errno));
        return STORE_EIO;
    }
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        *err = store_seterr("%s: %s", to, strerror(errno));
        close(in);
        return STORE_EIO;
    }
    static char b[1 << 20];
    ssize_t n;
    int rc = STORE_OK;
    while ((n = read(in, b, sizeof b)) > 0) {
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out, b + o, (size_t)(n - o));
            if (w <= 0) {
                rc = errno == ENOSPC ? STORE_EFULL : STORE_EIO;
                *err = store_seterr("%s: %s", to, strerror(errno));
                break;
            }
            o += w;
        }
        if (rc)
            break;
    }
    if (n < 0) {
        rc = STORE_EIO;
        *err = store_seterr("%s: %s", from, strerror(errno));
    }
    if (!rc && fsync(out)) {
        rc = STORE_EIO;
        *err = store_seterr("%s: %s", to, strerror(errno));
    }
    close(in);
    if (close(out) && !rc) {
        rc = STORE_EIO;
        *err = store_seterr("%s: %s", to, strerror(errno));
    }
    return rc;
}

int registry_instance_register(struct registry *r, const char *id, const char **err);

int store_restore(struct registry *r, const char *src, const char *id, const char **err)
{
    char tmp[STORE_ID_MAX + 1];
    bool dis;
    if (!store_id_valid(id)) {
        *err = store_seterr("invalid instance id '%s'", id);
        return STORE_EINVAL;
    }
    if (registry_lookup(r, id, tmp, &dis) == STORE_OK) {
        *err = store_seterr("instance or alias '%s' exists; remove it first or restore "
                            "under another id", id);
        return STORE_EEXIST;
    }
    char from[4200], dir[4200], stage[4300], to[4400];
    snprintf(from, sizeof from, "%s/data.mdb", src);
    snprintf(dir, sizeof dir, "%s/instances/%s", r->data_dir, id);
    snprintf(stage, sizeof stage, "%s/instances/.restore-%s", r->data_dir, id);
    if (access(from, R_OK)) {
        *err = store_seterr("%s: %s (not a coffer backup directory?)", from, strerror(errno));
        return STORE_ENOTFOUND;
    }
    if (access(dir, F_OK) == 0) {
        *err = store_seterr("%s exists but is not registered; move it away first", dir);
        return STORE_EEXIST;
    }
    snprintf(to, sizeof to, "%s/data.mdb", stage);
    unlink(to);
    char lk[4400];
    snprintf(lk, sizeof lk, "%s/lock.mdb", stage);
    unlink(lk);
    rmdir(stage);
    if (store_mkdir_p(stage, 0750)) {
        *err = store_seterr("cannot create %s: %s", stage, strerror(errno));
        return STORE_EIO;
    }
    int rc = copy_file(from, to, err);
    if (rc)
        return rc;
    if (rename(stage, dir)) {
        *err = store_seterr("rename %s -> %s: %s", stage, dir, strerror(errno));
        return STORE_EIO;
    }
    /* Open it once: checks the schema and that it is an LMDB env at all. */
    struct inst *in;
    rc = inst_open(&r->cfg, id, true, &in, err);
    if (rc)
        return rc;
    inst_close(in);
    return registry_instance_register(r, id, err);
}

/* ---- stats ---- */

struct st_mb { struct inst *in; FILE *out; const char *owner; };

static int stat_mbox(void *ctx, const char *name, const struct mbox_rec *m)
{
    struct st_mb *s = ctx;
    fprintf(s->out, "    %-30s %8u messages %8u unseen %12llu octets%s\n", name, m->messages,
            m->unseen, (unsigned long long)m->size, m->special_use ? " (special-use)" : "");
    return 0;
}

static int stat_user(void *ctx, const struct user_rec *u)
{
    struct st_mb *s = ctx;
    fprintf(s->out, "  user %s%s%s\n", u->name, u->admin ? " (admin)" : "",
            u->disabled ? " (disabled)" : "");
    s->owner = u->name;
    return inst_mbox_list(s->in, u->name, stat_mbox, s);
}

int store_stats(struct inst *in, FILE *out)
{
    if (inst_rd_begin(in))
        return STORE_EIO;
    MDB_txn *txn = inst_cur_txn(in);
    uint64_t uniq = 0, raw = 0, stored = 0, refs = 0, refraw = 0, canon = 0;
    MDB_cursor *c;
    MDB_val k, d;
    mdb_cursor_open(txn, in->dbi[DB_MSG], &c);
    for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        struct msg_rec m;
        if (msg_rec_decode(d.mv_data, d.mv_size, &m))
            continue;
        if (++uniq % 200 == 0)
            inst_release_map(in);
        raw += m.raw_size;
        canon += m.canon_size;
        refs += m.refcount;
        refraw += m.raw_size * m.refcount;
        for (uint32_t i = 0; i < m.nchunks && m.version == 1; i++) {
            struct msg_chunk ch;
            msg_rec_chunk(&m, i, &ch);
            stored += ch.stored_len;
        }
    }
    mdb_cursor_close(c);
    /* version 2 messages: every chunk counts once, however many tables
     * name it */
    uint64_t nch = 0, chrefs = 0, chraw = 0, chrefraw = 0;
    if (in->have_chunks && !mdb_cursor_open(txn, in->dbi[DB_CREF], &c)) {
        for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc;
             rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
            struct cref cr;
            if (cref_decode(d.mv_data, d.mv_size, &cr))
                continue;
            nch++;
            chrefs += cr.refcount;
            chraw += cr.raw_len;
            chrefraw += (uint64_t)cr.raw_len * cr.refcount;
            stored += cr.stored_len;
        }
        mdb_cursor_close(c);
    }
    MDB_envinfo ei;
    MDB_stat es;
    mdb_env_info(in->env, &ei);
    mdb_env_stat(in->env, &es);
    char p[4200];
    struct stat fs;
    snprintf(p, sizeof p, "%s/data.mdb", in->dir);
    uint64_t fsize = stat(p, &fs) == 0 ? (uint64_t)fs.st_blocks * 512 : 0;
    fprintf(out, "instance %s\n", in->id);
    fprintf(out, "  messages: %llu in mailboxes, %llu unique\n", (unsigned long long)refs,
            (unsigned long long)uniq);
    fprintf(out, "  raw bytes: %llu (all copies %llu), canonical %llu\n",
            (unsigned long long)raw, (unsigned long long)refraw, (unsigned long long)canon);
    fprintf(out, "  stored bytes: %llu compressed frames, %llu on disk (data.mdb)\n",
            (unsigned long long)stored, (unsigned long long)fsize);
    fprintf(out, "  dedup ratio: %.3f (raw of all copies / unique raw)\n",
            raw ? (double)refraw / (double)raw : 1.0);
    fprintf(out, "  chunk dedup: %llu chunks, %llu references; %llu unique raw octets of "
            "%llu referenced (saves %.1f%%)\n", (unsigned long long)nch,
            (unsigned long long)chrefs, (unsigned long long)chraw,
            (unsigned long long)chrefraw,
            chrefraw ? 100.0 * (double)(chrefraw - chraw) / (double)chrefraw : 0.0);
    fprintf(out, "  compression ratio: %.3f (compressed / raw); disk/raw %.3f\n",
            raw ? (double)stored / (double)raw : 0.0, raw ? (double)fsize / (double)raw : 0.0);
    struct st_mb s = {in, out, NULL};
    int rc = inst_user_list(in, stat_user, &s);
    inst_rd_end(in);
    return rc;
}

/* ---- reindex ---- */

static int sink_buf(void *ctx, const void *p, size_t n)
{
    return buf_append(ctx, p, n) ? STORE_EIO : 0;
}

#if STORE_HAVE_INDEX
/* Refill the index's member map from every (mailbox, UID) record. */
static int reindex_members(struct inst *in, const char **err)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(in->wr, in->dbi[DB_MMSG], &c);
    if (rc)
        return store_mdb_err(rc, "mmsg", err);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct msg_ref r;
        uint32_t uid = k.mv_size == 8 ? get_be32((unsigned char *)k.mv_data + 4) : 0;
        if (k.mv_size != 8 || mmsg_rec_decode(v.mv_data, v.mv_size, uid, &r)) {
            mdb_cursor_close(c);
            *err = "corrupt mailbox message record (run `coffer verify`)";
            return STORE_ECORRUPT;
        }
        int arc = index_add_member(in->wr, &in->idx, r.msgnum, get_be32(k.mv_data), uid, err);
        if (arc) {
            mdb_cursor_close(c);
            return arc;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? STORE_OK : store_mdb_err(rc, "mmsg", err);
}
#endif

int store_reindex(struct inst *in, bool all, uint64_t *count, const char **err)
{
    uint64_t next = 0, n = 0;
    int rc = inst_wr_begin(in, err);
    if (rc)
        return rc;
    if ((rc = meta_get_u64(in, in->wr, "next_msgnum", &next))) {
        inst_wr_abort(in);
        return store_mdb_err(rc, "meta", err);
    }
#if STORE_HAVE_INDEX
    if (all && in->have_index && index_clear(in->wr, &in->idx, err)) {
        inst_wr_abort(in);
        return STORE_EIO;
    }
#endif
    struct buf raw;
    buf_init(&raw, STORE_MSG_MAX + 1);
    for (uint64_t num = 1; num < next && !rc; num++) {
        unsigned char key[8];
        put_be64(key, num);
        MDB_val k = {8, key}, v;
        if (mdb_get(in->wr, in->dbi[DB_MSG], &k, &v))
            continue;          /* purged number */
        if (!all) {
            MDB_val iv;
            if (!mdb_get(in->wr, in->dbi[DB_INFO], &k, &iv) && iv.mv_size >= 8 &&
                get_be32(iv.mv_data) == MSGINFO_VERSION &&
                get_be32((unsigned char *)iv.mv_data + 4) ==
                    crc32c(0, (unsigned char *)iv.mv_data + 8, iv.mv_size - 8))
                continue;
#if STORE_HAVE_INDEX
            if (in->have_index)
                index_remove_message(in->wr, &in->idx, num, err);
#endif
        }
        buf_reset(&raw);
        if ((rc = inst_msg_raw(in, num, sink_buf, &raw))) {
            *err = store_seterr("message %llu: %s (run `coffer verify`)",
                                (unsigned long long)num, store_strerror(rc));
            break;
        }
        if ((rc = store_derive(in, num, raw.data, raw.len, err)))
            break;
        if (++n % 500 == 0 && !(rc = inst_wr_commit(in, err)))
            rc = inst_wr_begin(in, err);
    }
    buf_free(&raw);
    if (rc) {
        inst_wr_abort(in);
        return rc;
    }
    *count = n;
#if STORE_HAVE_INDEX
    /* the rebuilt index covers every message again (same commit) */
    if (all && in->have_index && (rc = reindex_members(in, err))) {
        inst_wr_abort(in);
        return rc;
    }
    if (all && in->have_index && (rc = index_mark_complete(in->wr, &in->idx, err))) {
        inst_wr_abort(in);
        return rc;
    }
#endif
    return inst_wr_commit(in, err);
}

/* ---- upgrade ---- */

int store_upgrade_inst(const struct store_cfg *cfg, const char *id, int *from, int *to,
                       const char **err)
{
    struct inst *in;
    int rc = inst_open_any_schema(cfg, id, &in, err);
    if (rc)
        return rc;
    uint64_t v = 0;
    if ((rc = inst_wr_begin(in, err))) {
        inst_close(in);
        return rc;
    }
    meta_get_u64(in, in->wr, "schema", &v);
    *from = (int)v;
    *to = STORE_SCHEMA_VERSION;
    if (v > STORE_SCHEMA_VERSION) {
        inst_close(in);
        *err = store_seterr("instance '%s' has schema %llu, newer than this Coffer (%d)", id,
                            (unsigned long long)v, STORE_SCHEMA_VERSION);
        return STORE_EVERSION;
    }
    /* Schema 0 -> 1 and 1 -> 2: the databases (2: chunk, cref) are created
     * by the writable open; only the version record is new. Version 1
     * message records stay as they are: readers take both versions.
     * Later migrations go here, one step each. */
    if (v < STORE_SCHEMA_VERSION)
        rc = meta_put_u64(in, in->wr, "schema", STORE_SCHEMA_VERSION);
    if (rc) {
        inst_close(in);
        return store_mdb_err(rc, "upgrade", err);
    }
    rc = inst_wr_commit(in, err);
    inst_close(in);
    return rc;
}
