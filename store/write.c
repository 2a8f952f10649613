/* write.c — the writer primitives: batches, mailboxes, adding a message
 * (hash, dedup, content-keyed chunks + chunk table, msginfo, text index). */
#include "store/admin.h"
#include "store/store_int.h"
#include "proto/canon.h"
#include "proto/msginfo.h"
#include "proto/mutf7.h"
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/statvfs.h>

/* LMDB reports a write cut short by a full file system as a bare EIO
 * (mdb_page_flush: short pwrite); say what happened when the file system
 * holding the env is (nearly) out of space. */
static int disk_full_err(struct inst *in, int rc, const char *what, const char **err)
{
    struct statvfs vf;
    if ((rc == EIO || rc == ENOSPC || rc == EDQUOT) && statvfs(in->dir, &vf) == 0 &&
        (uint64_t)vf.f_bavail * vf.f_frsize < 16u * 1024u * 1024u) {
        *err = store_seterr("%s: No space left on device: the file system holding %s is full "
                            "(LMDB reported: %s); free some space and run the import again "
                            "(the store is unchanged since the last commit)",
                            what, in->dir, mdb_strerror(rc));
        return STORE_EFULL;
    }
    return store_mdb_err(rc, what, err);
}

int inst_wr_begin(struct inst *in, const char **err)
{
    const char *e;
    if (!err)
        err = &e;
    if (!in->writable) {
        *err = "instance opened read-only";
        return STORE_EINVAL;
    }
    if (in->wr)
        return STORE_OK;
    inst_rd_end(in);
    int dead, rc;
    mdb_reader_check(in->env, &dead);
    if ((rc = store_txn_begin(in->env, false, &in->wr))) {
        in->wr = NULL;
        return store_mdb_err(rc, "begin write transaction", err);
    }
#if STORE_HAVE_INDEX
    /* postings of the whole batch are merged and written at commit */
    if (in->have_index)
        index_batch_begin(in->wr, &in->idx);
#endif
    return STORE_OK;
}

int inst_wr_commit(struct inst *in, const char **err)
{
    const char *e;
    if (!err)
        err = &e;
    if (!in->wr)
        return STORE_OK;
#if STORE_HAVE_INDEX
    if (in->have_index) {
        int frc = index_flush(in->wr, &in->idx, err);
        if (frc) {
            mdb_txn_abort(in->wr);
            in->wr = NULL;
            return frc < 0 ? frc : STORE_EIO;
        }
    }
#endif
    int rc = mdb_txn_commit(in->wr);
    in->wr = NULL;
    if (!rc)
        inst_release_map(in);
    if (rc) {
        char what[128];
        snprintf(what, sizeof what, "commit to instance '%s'", in->id);
        return disk_full_err(in, rc, what, err);
    }
    return STORE_OK;
}

void inst_wr_abort(struct inst *in)
{
    if (in->wr) {
        mdb_txn_abort(in->wr);
#if STORE_HAVE_INDEX
        index_discard();
#endif
    }
    in->wr = NULL;
}

/* Mailbox names: UTF-8, '/'-separated, no empty component, no control
 * characters, INBOX (any case) spelled "INBOX". */
static int mbox_name_ok(const char *name, char *out, const char **err)
{
    size_t n = strlen(name);
    if (n == 0 || n > STORE_MBOX_MAX || name[0] == '/' || name[n - 1] == '/' ||
        strstr(name, "//")) {
        *err = store_seterr("invalid mailbox name '%s'", name);
        return STORE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7F) {
            *err = store_seterr("invalid mailbox name: control character");
            return STORE_EINVAL;
        }
    }
    if (!utf8_valid(name, n)) {
        *err = store_seterr("invalid mailbox name: not UTF-8");
        return STORE_EINVAL;
    }
    if (!strncasecmp(name, "INBOX", 5) && (name[5] == 0 || name[5] == '/')) {
        memcpy(out, "INBOX", 5);
        memcpy(out + 5, name + 5, n - 5 + 1);
    } else {
        memcpy(out, name, n + 1);
    }
    return STORE_OK;
}

static uint32_t special_use_of(const char *name)
{
    if (strchr(name, '/'))
        return 0;
    static const struct { const char *n; uint32_t su; } t[] = {
        {"Sent", STORE_SU_SENT}, {"Sent Items", STORE_SU_SENT}, {"Sent Messages", STORE_SU_SENT},
        {"Sent Mail", STORE_SU_SENT}, {"Drafts", STORE_SU_DRAFTS}, {"Trash", STORE_SU_TRASH},
        {"Deleted Items", STORE_SU_TRASH}, {"Deleted Messages", STORE_SU_TRASH},
        {"Junk", STORE_SU_JUNK}, {"Spam", STORE_SU_JUNK}, {"Junk E-mail", STORE_SU_JUNK},
        {"Archive", STORE_SU_ARCHIVE}, {"Archives", STORE_SU_ARCHIVE},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcasecmp(name, t[i].n))
            return t[i].su;
    return 0;
}

static int put_mbox(struct inst *in, const char *owner, const char *name,
                    const struct mbox_rec *m)
{
    char key[512];
    size_t ol = strlen(owner), nl = strlen(name);
    if (ol + 1 + nl > sizeof key - 1)
        return MDB_BAD_VALSIZE;
    memcpy(key, owner, ol);
    key[ol] = 0;
    memcpy(key + ol + 1, name, nl);
    unsigned char rec[MBOX_REC_LEN];
    mbox_rec_encode(rec, m);
    MDB_val k = {ol + 1 + nl, key}, v = {sizeof rec, rec};
    return mdb_put(in->wr, in->dbi[DB_MBOXES], &k, &v, 0);
}

int store_mbox_ensure(struct inst *in, const char *owner, const char *name,
                      struct mbox_rec *out, const char **err)
{
    char nm[STORE_MBOX_MAX + 1];
    int rc = mbox_name_ok(name, nm, err);
    if (rc)
        return rc;
    if (strlen(owner) + strlen(nm) + 1 > 511) {
        *err = store_seterr("mailbox name too long: '%s'", nm);
        return STORE_EINVAL;
    }
    rc = inst_mbox_get(in, owner, nm, out);
    if (rc != STORE_ENOTFOUND)
        return rc;
    uint64_t id, uidv;
    if ((rc = meta_get_u64(in, in->wr, "next_mbox", &id)) ||
        (rc = meta_get_u64(in, in->wr, "next_uidv", &uidv)))
        return store_mdb_err(rc, "meta", err);
    if (!id)
        id = 1;
    if (!uidv)   /* start from the clock so a restored-from-scratch store differs */
        uidv = (uint64_t)time(NULL) & 0x3fffffff;
    if (id > UINT32_MAX - 1 || uidv >= UINT32_MAX) {
        *err = "mailbox id space exhausted";
        return STORE_EFULL;
    }
    memset(out, 0, sizeof *out);
    out->id = (uint32_t)id;
    out->uidvalidity = (uint32_t)uidv;
    out->uidnext = 1;
    out->special_use = special_use_of(nm);
    unsigned char idk[4];
    put_be32(idk, out->id);
    size_t ol = strlen(owner), nl = strlen(nm);
    char rev[512];
    memcpy(rev, owner, ol);
    rev[ol] = 0;
    memcpy(rev + ol + 1, nm, nl);
    MDB_val k = {4, idk}, v = {ol + 1 + nl, rev};
    if ((rc = meta_put_u64(in, in->wr, "next_mbox", id + 1)) ||
        (rc = meta_put_u64(in, in->wr, "next_uidv", uidv + 1)) ||
        (rc = mdb_put(in->wr, in->dbi[DB_MBOXID], &k, &v, 0)) ||
        (rc = put_mbox(in, owner, nm, out)))
        return store_mdb_err(rc, "create mailbox", err);
    return STORE_OK;
}

/* Length of the header through its blank line when the message has a
 * body and the header fits one chunk, else 0. That header gets a frame of
 * its own: a folder open fetches header fields of every message, and then
 * only the header is decompressed (readers take any chunk table). */
static size_t header_chunk(const unsigned char *raw, size_t len)
{
    size_t lim = len < STORE_CHUNK ? len : STORE_CHUNK;
    for (const unsigned char *p = raw; (p = memchr(p, '\n', lim - (size_t)(p - raw)));) {
        size_t i = (size_t)(p - raw) + 1;
        if (i < lim && raw[i] == '\n')
            return i + 1 < len ? i + 1 : 0;
        if (i + 1 < lim && raw[i] == '\r' && raw[i + 1] == '\n')
            return i + 2 < len ? i + 2 : 0;
        p = raw + i;
    }
    return 0;
}

/* Derived data, step 1: the canonical form (into in->scratch[1], which the
 * text index reads in step 2) and the msginfo record (version + CRC in
 * front) into info. */
static int derive_info(struct inst *in, const unsigned char *raw, size_t len, struct buf *info,
                       const char **err)
{
    struct buf *canon = &in->scratch[1];
    int pcr = 0;
    buf_reset(canon);
    if (canon_append(canon, raw, len, &pcr)) {
        *err = "out of memory (canonical form)";
        return STORE_EIO;
    }
    if (buf_append(info, "\0\0\0\0\0\0\0\0", 8) ||
        msginfo_build(canon->data, canon->len, info, err)) {
        if (!*err)
            *err = "msginfo_build failed";
        return STORE_EIO;
    }
    put_be32(info->data, MSGINFO_VERSION);
    put_be32(info->data + 4, crc32c(0, info->data + 8, info->len - 8));
    return STORE_OK;
}

/* Derived data, step 2: store the msginfo record and index the message. */
static int derive_put(struct inst *in, uint64_t msgnum, const struct buf *info, const char **err)
{
    unsigned char key[8];
    put_be64(key, msgnum);
    MDB_val k = {8, key}, v = {info->len, info->data};
    int mrc = mdb_put(in->wr, in->dbi[DB_INFO], &k, &v, 0);
    if (mrc)
        return store_mdb_err(mrc, "store msginfo", err);
#if STORE_HAVE_INDEX
    /* COFFER_BENCH_NO_INDEX: benchmarks only (docs/BENCHMARKS.md measures
     * the store without the text index); `coffer reindex` adds it later. */
    static int no_index = -1;
    if (no_index < 0)
        no_index = getenv("COFFER_BENCH_NO_INDEX") != NULL;
    if (in->have_index && !no_index) {
        struct msginfo mi;
        struct buf *canon = &in->scratch[1];
        if (msginfo_open(&mi, info->data + 8, info->len - 8, err) ||
            index_add_message(in->wr, &in->idx, msgnum, canon->data, canon->len, &mi, err))
            return STORE_EIO;
    }
#endif
    return STORE_OK;
}

/* Chunks of at most this many raw octets that lie in text leaf bodies
 * only get raw literals like the header chunk (chunk.c rawlit_cctx): a
 * BODY.PEEK[1] of a short text part decompresses one such frame. 8 KiB
 * keeps almost all of the decode saving of 16 KiB on gen-corpus for 2/3 of
 * its size cost on the real corpus (docs/BENCHMARKS.md, Import).
 * COFFER_BENCH_RAW_LIT_TEXT=N overrides it (0: headers only): benchmarks
 * only. */
#define RAW_LIT_TEXT_MAX 8192

/* A size limit read once from a COFFER_BENCH_* variable (benchmarks only),
 * dflt when it is unset; negative values mean 0. */
static size_t bench_size(const char *name, long dflt, long *cache)
{
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = e ? atol(e) : dflt;
        if (*cache < 0)
            *cache = 0;
    }
    return (size_t)*cache;
}

static size_t raw_lit_text_max(void)
{
    static long v = -1;
    return bench_size("COFFER_BENCH_RAW_LIT_TEXT", RAW_LIT_TEXT_MAX, &v);
}

/* Text chunks of at most this many raw octets may be stored uncompressed
 * (chunk.c chunk_stored_frame; CHUNK_SMALL_TEXT: when raw literals would
 * keep more than half of them), like the header chunk: BODY.PEEK[1] of a
 * short text part is then served from the map without zstd.
 * COFFER_BENCH_STORED_TEXT=N overrides it: benchmarks only. */
#define STORED_TEXT_MAX 8192
static size_t stored_text_max(void)
{
    static long v = -1;
    return bench_size("COFFER_BENCH_STORED_TEXT", STORED_TEXT_MAX, &v);
}

/* The header chunk is stored uncompressed (chunk.c chunk_stored_frame)
 * unless raw literals would keep at most 70 % of it (CHUNK_SMALL): a
 * folder open then filters it in place. COFFER_BENCH_HEADER_RAWLIT=1
 * always compresses it with raw literals as before: benchmarks only. */
static int header_how(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("COFFER_BENCH_HEADER_RAWLIT") ? CHUNK_RAWLIT : CHUNK_SMALL;
    return v;
}

/* Does canonical [off, off + len) overlap a text leaf body and no other
 * leaf body? Called for chunks in order: leaf bodies do not overlap and
 * come in offset order, so *from skips the entries that end before off and
 * a message costs O(chunks + parts), not their product. (A part table that
 * breaks the order only changes which frames get raw literals.) */
static bool text_only(const struct msginfo *mi, uint32_t *from, uint64_t off, uint64_t len)
{
    bool text = false;
    for (uint32_t i = *from; i < mi->nparts; i++) {
        struct msginfo_part pt;
        bool leaf = !msginfo_part(mi, i, &pt) &&
                    (pt.type == MSGINFO_T_TEXT || pt.type == MSGINFO_T_OTHER);
        if (!leaf || pt.body_off + pt.body_len <= off) {
            if (i == *from)
                (*from)++;
            continue;
        }
        if (pt.body_off >= off + len)
            break;
        if (pt.type != MSGINFO_T_TEXT)
            return false;
        text = true;
    }
    return text;
}

/* Store a new unique message under msgnum: msginfo first (its part table
 * places the chunk cuts), then content-keyed chunks and a version 2 chunk
 * table, then the text index. */
static int store_new_message(struct inst *in, uint64_t msgnum, const unsigned char *sha,
                             const unsigned char *raw, size_t len, uint64_t *canon_size,
                             const char **err)
{
    struct buf rec, info;
    buf_init(&rec, 0);
    buf_init(&info, 0);
    size_t *cuts = NULL, ncuts = 0;
    int rc, mrc = 0;
    struct msginfo mi;
    if ((rc = derive_info(in, raw, len, &info, err)))
        goto out;
    if (msginfo_open(&mi, info.data + 8, info.len - 8, err)) {
        rc = STORE_EIO;
        goto out;
    }
    size_t hdr_len = header_chunk(raw, len);
    rc = chunk_plan(raw, len, hdr_len, &mi, store_cdc_params(), &cuts, &ncuts);
    if (rc) {
        *err = "cannot plan the chunks of a message (out of memory?)";
        goto out;
    }
    size_t reclen = MSG_REC_HDR + ncuts * MSG_CHUNK_ENT2 + 4;
    if (ncuts > UINT32_MAX || buf_reserve(&rec, reclen)) {
        *err = "out of memory";
        rc = STORE_EIO;
        goto out;
    }
    unsigned char *r = rec.data;
    memset(r, 0, reclen);   /* octets 61..64 of the header are reserved (zero) */
    r[0] = 2;
    memcpy(r + 1, sha, 32);
    put_be64(r + 33, 1);
    put_be64(r + 41, len);
    put_be32(r + 57, (uint32_t)ncuts);
    uint64_t coff = 0;
    int pcr = 0;
    size_t off = 0;
    uint32_t part = 0;   /* text_only's cursor */
    for (size_t i = 0; i < ncuts; i++) {
        size_t n = cuts[i] - off;
        int prev = pcr;
        uint64_t cl = canon_len(raw + off, n, &pcr);
        unsigned char *e = r + MSG_REC_HDR + i * MSG_CHUNK_ENT2;
        uint32_t z;
        uint64_t id;
        /* the header chunk, and small chunks of text bodies: see chunk.c rawlit_cctx */
        bool small_text = n <= raw_lit_text_max() && text_only(&mi, &part, coff, cl);
        int how = i == 0 && hdr_len && cuts[0] == hdr_len ? header_how()
                  : small_text && n <= stored_text_max() ? CHUNK_SMALL_TEXT
                  : small_text ? CHUNK_RAWLIT
                  : CHUNK_Z;
        if ((rc = chunk_ref(in, raw + off, n, how, &id, &z, err)))
            goto out;
        put_be64(e + MSG_CHUNK_ENT, id);
        put_be32(e, (uint32_t)n);
        put_be64(e + 4, coff);
        put_be32(e + 12, (uint32_t)cl);
        e[16] = (unsigned char)prev;
        put_be32(e + 17, z);
        coff += cl;
        off = cuts[i];
    }
    put_be64(r + 49, coff);
    put_be32(r + reclen - 4, crc32c(0, r, reclen - 4));
    *canon_size = coff;
    {
        unsigned char key[8];
        put_be64(key, msgnum);
        MDB_val k = {8, key}, v = {reclen, r};
        if ((mrc = mdb_put(in->wr, in->dbi[DB_MSG], &k, &v, MDB_NOOVERWRITE)))
            goto out;
        MDB_val hk = {32, (void *)sha}, hv = {8, key};
        if ((mrc = mdb_put(in->wr, in->dbi[DB_HASH], &hk, &hv, MDB_NOOVERWRITE)))
            goto out;
    }
    rc = derive_put(in, msgnum, &info, err);
out:
    free(cuts);
    buf_free(&rec);
    buf_free(&info);
    if (mrc)
        rc = store_mdb_err(mrc, "store message", err);
    return rc;
}

/* Derived data of one message: msginfo (+CRC, parser version) and the
 * text index postings. Used by reindex. */
int store_derive(struct inst *in, uint64_t msgnum, const unsigned char *raw, size_t len,
                 const char **err)
{
    struct buf info;
    buf_init(&info, 0);
    int rc = derive_info(in, raw, len, &info, err);
    if (!rc)
        rc = derive_put(in, msgnum, &info, err);
    buf_free(&info);
    return rc;
}

int store_add_message(struct inst *in, const char *owner, const char *mbox,
                      const struct import_msg *m, bool *added, uint32_t *uid_out,
                      const char **err)
{
    const char *e = NULL;
    if (!err)
        err = &e;
    *added = false;
    if (!in->wr) {
        *err = "store_add_message outside a write batch";
        return STORE_EINVAL;
    }
    if (m->len > STORE_MSG_MAX) {
        *err = store_seterr("message of %zu octets exceeds the %u octet limit", m->len,
                            STORE_MSG_MAX);
        return STORE_EINVAL;
    }
    struct mbox_rec mb;
    int rc = store_mbox_ensure(in, owner, mbox, &mb, err);
    if (rc)
        return rc;
    char nm[STORE_MBOX_MAX + 1];
    mbox_name_ok(mbox, nm, err);
    int mrc = 0;
    /* Source key: (mbox id, key) -> uid. Long keys are hashed. */
    unsigned char sk[4 + STORE_SRCKEY_MAX];
    size_t skl = 0;
    if (m->srckey) {
        put_be32(sk, mb.id);
        if (m->srckey_len > STORE_SRCKEY_MAX) {
            SHA256(m->srckey, m->srckey_len, sk + 4);
            skl = 4 + 32;
        } else {
            memcpy(sk + 4, m->srckey, m->srckey_len);
            skl = 4 + m->srckey_len;
        }
        MDB_val k = {skl, sk}, v;
        rc = mdb_get(in->wr, in->dbi[DB_SRC], &k, &v);
        if (rc == 0) {
            if (uid_out && v.mv_size == 4)
                *uid_out = get_be32(v.mv_data);
            return STORE_OK;
        }
        if (rc != MDB_NOTFOUND)
            return store_mdb_err(rc, "source keys", err);
    }
    if (mb.uidnext == UINT32_MAX) {
        *err = store_seterr("mailbox '%s' has used up its UIDs", nm);
        return STORE_EFULL;
    }
    unsigned char sha[32];
    SHA256(m->raw, m->len, sha);
    MDB_val hk = {32, sha}, hv;
    uint64_t msgnum, canon_size = 0;
    rc = mdb_get(in->wr, in->dbi[DB_HASH], &hk, &hv);
    if (rc == 0 && hv.mv_size == 8) {
        msgnum = get_be64(hv.mv_data);
        unsigned char key[8];
        put_be64(key, msgnum);
        MDB_val k = {8, key}, v;
        if ((mrc = mdb_get(in->wr, in->dbi[DB_MSG], &k, &v)))
            goto mdberr;
        struct msg_rec mr;
        if (msg_rec_decode(v.mv_data, v.mv_size, &mr)) {
            *err = store_seterr("message %llu: corrupt record", (unsigned long long)msgnum);
            return STORE_ECORRUPT;
        }
        canon_size = mr.canon_size;
        /* Rewrite in place with refcount + 1 (record sizes are fixed). */
        size_t n = v.mv_size;
        unsigned char *copy = malloc(n);
        if (!copy) {
            *err = "out of memory";
            return STORE_EIO;
        }
        memcpy(copy, v.mv_data, n);
        put_be64(copy + 33, mr.refcount + 1);
        put_be32(copy + n - 4, crc32c(0, copy, n - 4));
        v.mv_data = copy;
        mrc = mdb_put(in->wr, in->dbi[DB_MSG], &k, &v, 0);
        free(copy);
        if (mrc)
            goto mdberr;
    } else if (rc == MDB_NOTFOUND || rc == 0) {
        if (rc == 0) {
            *err = "corrupt hash record";
            return STORE_ECORRUPT;
        }
        if ((mrc = meta_get_u64(in, in->wr, "next_msgnum", &msgnum)))
            goto mdberr;
        if (!msgnum)
            msgnum = 1;
        if ((mrc = meta_put_u64(in, in->wr, "next_msgnum", msgnum + 1)))
            goto mdberr;
        if ((rc = store_new_message(in, msgnum, sha, m->raw, m->len, &canon_size, err)))
            return rc;
    } else {
        mrc = rc;
        goto mdberr;
    }
    struct msg_ref ref = {
        .uid = mb.uidnext, .flags = m->flags & 0x0f, .msgnum = msgnum,
        .internaldate = m->internaldate, .internal_tz = m->tz, .size = canon_size,
    };
    unsigned char key[8], rec[MMSG_REC_LEN];
    put_be32(key, mb.id);
    put_be32(key + 4, ref.uid);
    mmsg_rec_encode(rec, &ref);
    MDB_val k = {8, key}, v = {sizeof rec, rec};
    if ((mrc = mdb_put(in->wr, in->dbi[DB_MMSG], &k, &v, MDB_NOOVERWRITE)))
        goto mdberr;
#if STORE_HAVE_INDEX
    if (in->have_index && (rc = index_add_member(in->wr, &in->idx, msgnum, mb.id, ref.uid, err)))
        return rc;
#endif
    if (m->fromline) {
        MDB_val fv = {m->fromline_len, (void *)m->fromline};
        if ((mrc = mdb_put(in->wr, in->dbi[DB_FROMLN], &k, &fv, 0)))
            goto mdberr;
    }
    if (skl) {
        unsigned char u[4];
        put_be32(u, ref.uid);
        MDB_val sk2 = {skl, sk}, sv = {4, u};
        if ((mrc = mdb_put(in->wr, in->dbi[DB_SRC], &sk2, &sv, 0)))
            goto mdberr;
    }
    mb.uidnext++;
    mb.messages++;
    if (!(ref.flags & STORE_F_SEEN))
        mb.unseen++;
    mb.size += canon_size;
    if ((mrc = put_mbox(in, owner, nm, &mb)))
        goto mdberr;
    *added = true;
    if (uid_out)
        *uid_out = ref.uid;
    return STORE_OK;
mdberr:
    return store_mdb_err(mrc, "add message", err);
}
