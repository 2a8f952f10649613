/* index.c — trigram full-text index (see index.h, index_read.h).
 *
 * Databases:
 *   ix_meta  "version" -> u32
 *   ix_doc   msgnum (u64 BE) -> u32 version, u32 crc32c(version)
 *   ix_text  msgnum (u64 BE) -> u32 crc32c(rest), u32 plain length, zstd
 *            frame of the folded text of every indexed field (u32 length +
 *            octets each, MT_BODY..MT_MSGID): the executor confirms a
 *            candidate against it without decoding the message again
 *   ix_post  field u8, trigram[3], first msgnum u64 BE ->
 *            u32 crc32c(deltas), u16 count, u64 last, varint deltas
 *            (count-1 of them; the first entry is the key's msgnum).
 *            The CRC covers the deltas only, so an append extends it
 *            (CRC chaining) without reading the block; count and last are
 *            checked against the decoded deltas instead.
 * Blocks of one (field, trigram) hold disjoint, increasing ranges. Import
 * appends increasing msgnums, so the common write is "extend the last
 * block"; a smaller msgnum (reindex order, purge) is inserted in place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/index.h"
#include "store/index_read.h"
#include "store/store_int.h"
#include "proto/mailtext.h"
#include <zstd.h>

#define DBI_META 0
#define DBI_DOC 1
#define DBI_POST 2
#define DBI_TEXT 3
#define TEXT_MAX (512u * 1024u * 1024u)   /* plain text record limit */
#define KEYLEN 12
#define VHDR 14
#define NFIELDS (MT_MSGID + 1)

static const char *const dbnames[4] = { "ix_meta", "ix_doc", "ix_post", "ix_text" };

static int mdb_fail(int rc, const char *what, const char **err)
{
    return store_mdb_err(rc, what, err);
}

int index_open(MDB_txn *txn, bool create, struct index_dbs *dbs, const char **err)
{
    int rc;
    for (unsigned i = 0; i < 3; i++) {
        rc = mdb_dbi_open(txn, dbnames[i], create ? MDB_CREATE : 0, &dbs->dbi[i]);
        if (rc)
            return mdb_fail(rc, "opening the text index", err);
    }
    dbs->n = 3;
    /* ix_text came later: an env without it still answers (the executor
     * then decodes candidates itself) */
    rc = mdb_dbi_open(txn, dbnames[DBI_TEXT], create ? MDB_CREATE : 0, &dbs->dbi[DBI_TEXT]);
    if (rc == 0)
        dbs->n = 4;
    else if (rc != MDB_NOTFOUND)
        return mdb_fail(rc, "opening the text index", err);
    MDB_val k = { 7, (void *)"version" }, v;
    rc = mdb_get(txn, dbs->dbi[DBI_META], &k, &v);
    if (rc == MDB_NOTFOUND && create) {
        unsigned char b[4];
        put_be32(b, INDEX_VERSION);
        v.mv_size = 4;
        v.mv_data = b;
        if ((rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0)))
            return mdb_fail(rc, "writing the text index version", err);
    } else if (rc == 0) {
        if (v.mv_size != 4 || get_be32(v.mv_data) != INDEX_VERSION) {
            *err = "text index has another version: run `coffer reindex`";
            return STORE_EVERSION;
        }
    } else if (rc != MDB_NOTFOUND) {
        return mdb_fail(rc, "reading the text index version", err);
    }
    return STORE_OK;
}

/* ---- block codec ---- */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* Decode a block into ent[]; STORE_ECORRUPT on any inconsistency. */
static int block_decode(const unsigned char *key, const MDB_val *v, uint64_t *ent, size_t *n)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < VHDR || v->mv_size > VHDR + IX_BLOCK_MAX_BYTES + 10)
        return STORE_ECORRUPT;
    if (crc32c(0, p + VHDR, v->mv_size - VHDR) != get_be32(p))
        return STORE_ECORRUPT;
    size_t count = (size_t)p[4] << 8 | p[5];
    uint64_t last = get_be64(p + 6);
    if (count == 0 || count > IX_BLOCK_MAX_ENTRIES)
        return STORE_ECORRUPT;
    uint64_t cur = get_be64(key + 4);
    ent[0] = cur;
    size_t off = VHDR, i = 1;
    while (i < count) {
        uint64_t d = 0;
        unsigned shift = 0;
        for (;;) {
            if (off >= v->mv_size || shift > 63)
                return STORE_ECORRUPT;
            unsigned char b = p[off++];
            d |= (uint64_t)(b & 0x7F) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        if (d == 0 || cur + d < cur)
            return STORE_ECORRUPT;
        cur += d;
        ent[i++] = cur;
    }
    if (off != v->mv_size || cur != last)
        return STORE_ECORRUPT;
    *n = count;
    return STORE_OK;
}

/* Encode ent[0..n) (value only; the key carries ent[0]). Returns size or 0
 * when it does not fit in one block. */
static size_t block_encode(const uint64_t *ent, size_t n, unsigned char *out)
{
    size_t off = VHDR;
    for (size_t i = 1; i < n; i++) {
        if (off + 10 > VHDR + IX_BLOCK_MAX_BYTES)
            return 0;
        off += put_varint(out + off, ent[i] - ent[i - 1]);
    }
    out[4] = (unsigned char)(n >> 8);
    out[5] = (unsigned char)n;
    put_be64(out + 6, ent[n - 1]);
    put_be32(out, crc32c(0, out + VHDR, off - VHDR));
    return off;
}

static void make_key(unsigned char *k, int field, const unsigned char *tri, uint64_t first)
{
    k[0] = (unsigned char)field;
    memcpy(k + 1, tri, 3);
    put_be64(k + 4, first);
}

static int put_block(MDB_txn *txn, MDB_dbi dbi, const unsigned char *prefix,
                     const uint64_t *ent, size_t n, const char **err)
{
    unsigned char key[KEYLEN], val[VHDR + IX_BLOCK_MAX_BYTES + 10];
    /* split until each piece fits */
    size_t len = block_encode(ent, n, val);
    if (len == 0) {
        int rc = put_block(txn, dbi, prefix, ent, n / 2, err);
        return rc ? rc : put_block(txn, dbi, prefix, ent + n / 2, n - n / 2, err);
    }
    make_key(key, prefix[0], prefix + 1, ent[0]);
    MDB_val k = { KEYLEN, key }, v = { len, val };
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc ? mdb_fail(rc, "writing the text index", err) : STORE_OK;
}

/* Add msgnum to the postings of (field, tri). */
static int post_add(MDB_txn *txn, MDB_cursor *cur, MDB_dbi dbi, int field,
                    const unsigned char *tri, uint64_t msgnum, uint64_t *scratch,
                    const char **err)
{
    unsigned char key[KEYLEN];
    make_key(key, field, tri, msgnum);
    MDB_val k = { KEYLEN, key }, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == KEYLEN && memcmp(k.mv_data, key, KEYLEN) == 0)
        return STORE_OK;                    /* already the first of a block */
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "reading the text index", err);
    if (rc == MDB_NOTFOUND || k.mv_size != KEYLEN || memcmp(k.mv_data, key, 4) != 0) {
        uint64_t one = msgnum;
        return put_block(txn, dbi, key, &one, 1, err);
    }
    unsigned char bkey[KEYLEN];
    memcpy(bkey, k.mv_data, KEYLEN);
    const unsigned char *old = v.mv_data;
    if (v.mv_size < VHDR || v.mv_size > VHDR + IX_BLOCK_MAX_BYTES + 10) {
        *err = "corrupt text index block (run `coffer reindex`)";
        return STORE_ECORRUPT;
    }
    size_t n = (size_t)old[4] << 8 | old[5];
    uint64_t last = get_be64(old + 6);
    if (msgnum > last) {
        /* Fast path (every import): extend the block in place, chaining
         * its CRC over the new delta; nothing is decoded. */
        if (n < IX_BLOCK_MAX_ENTRIES && v.mv_size + 10 <= VHDR + IX_BLOCK_MAX_BYTES) {
            unsigned char val[VHDR + IX_BLOCK_MAX_BYTES + 10];
            memcpy(val, old, v.mv_size);
            size_t dl = put_varint(val + v.mv_size, msgnum - last);
            n++;
            val[4] = (unsigned char)(n >> 8);
            val[5] = (unsigned char)n;
            put_be64(val + 6, msgnum);
            put_be32(val, crc32c(get_be32(old), val + v.mv_size, dl));
            MDB_val bk = { KEYLEN, bkey }, nv = { v.mv_size + dl, val };
            rc = mdb_cursor_put(cur, &bk, &nv, MDB_CURRENT);
            return rc ? mdb_fail(rc, "writing the text index", err) : STORE_OK;
        }
        uint64_t one = msgnum;
        return put_block(txn, dbi, key, &one, 1, err);
    }
    if ((rc = block_decode(bkey, &v, scratch, &n))) {
        *err = "corrupt text index block (run `coffer reindex`)";
        return rc;
    }
    /* inside the block's range: insert unless present */
    size_t i = 0;
    while (i < n && scratch[i] < msgnum)
        i++;
    if (i < n && scratch[i] == msgnum)
        return STORE_OK;
    memmove(scratch + i + 1, scratch + i, (n - i) * sizeof *scratch);
    scratch[i] = msgnum;
    return put_block(txn, dbi, bkey, scratch, n + 1, err);
}

/* LSD radix sort of 24-bit keys: trigram lists are long (one per text
 * octet) and qsort showed up first in import profiles. */
static void radix24(uint32_t *a, uint32_t *tmp, size_t n)
{
    for (unsigned shift = 0; shift < 24; shift += 8) {
        size_t cnt[257] = { 0 };
        for (size_t i = 0; i < n; i++)
            cnt[((a[i] >> shift) & 0xFF) + 1]++;
        for (unsigned b = 0; b < 256; b++)
            cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < n; i++)
            tmp[cnt[(a[i] >> shift) & 0xFF]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
}

struct canon_src {
    const unsigned char *p;
    size_t len;
};

static int canon_read(void *ctx, uint64_t off, uint64_t len, struct buf *out)
{
    const struct canon_src *s = ctx;
    if (off >= s->len)
        return 0;
    if (len > s->len - off)
        len = s->len - off;
    return buf_append(out, s->p + off, (size_t)len) ? STORE_EIO : 0;
}

/* Distinct trigrams of t (none spanning a segment separator), sorted. */
static int trigrams(const struct buf *t, uint32_t **out, size_t *n)
{
    *n = 0;
    *out = NULL;
    if (t->len < 3)
        return 0;
    uint32_t *a = malloc((t->len - 2) * sizeof *a), *tmp = malloc((t->len - 2) * sizeof *a);
    if (!a || !tmp) {
        free(a);
        free(tmp);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i + 2 < t->len; i++) {
        const unsigned char *p = t->data + i;
        if (p[0] == MAILTEXT_SEP || p[1] == MAILTEXT_SEP || p[2] == MAILTEXT_SEP)
            continue;
        a[m++] = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    }
    radix24(a, tmp, m);
    free(tmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || a[u - 1] != a[i])
            a[u++] = a[i];
    *out = a;
    *n = u;
    return 0;
}

/* ---- stored folded text ---- */

static int write_text(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                      const struct mailtext *t, const char **err)
{
    if (dbs->n < 4)
        return STORE_OK;
    struct buf plain;
    size_t total = 0;
    for (int f = 0; f < NFIELDS; f++)
        total += 4 + t->f[f].len;
    if (total > TEXT_MAX)
        return STORE_OK;       /* no record: the executor decodes this one */
    buf_init(&plain, 0);
    int rc = buf_reserve(&plain, total);
    for (int f = 0; f < NFIELDS && rc == 0; f++)
        if (!(rc = buf_put_u32be(&plain, (uint32_t)t->f[f].len)))
            rc = buf_append(&plain, t->f[f].data, t->f[f].len);
    size_t bound = ZSTD_compressBound(plain.len);
    unsigned char *val = rc ? NULL : malloc(8 + bound);
    if (!val) {
        buf_free(&plain);
        *err = "out of memory";
        return STORE_EIO;
    }
    size_t cl = ZSTD_compress(val + 8, bound, plain.data, plain.len, 1);
    buf_free(&plain);
    if (ZSTD_isError(cl)) {
        free(val);
        *err = "cannot compress index text";
        return STORE_EIO;
    }
    put_be32(val + 4, (uint32_t)total);
    put_be32(val, crc32c(0, val + 4, cl + 4));
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val k = { 8, dk }, v = { cl + 8, val };
    rc = mdb_put(txn, dbs->dbi[DBI_TEXT], &k, &v, 0);
    free(val);
    return rc ? mdb_fail(rc, "writing the text index", err) : STORE_OK;
}

/* Reused per process: ZSTD_decompress() builds a context per call, and
 * that runs CPUID, which traps on virtual machines (see store/inst.c). */
static ZSTD_DCtx *text_dctx(void)
{
    static ZSTD_DCtx *dctx;
    if (!dctx)
        dctx = ZSTD_createDCtx();
    return dctx;
}

int ix_text_get(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                struct buf *out, struct ix_text *fields)
{
    if (dbs->n < 4)
        return STORE_ENOTFOUND;
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val k = { 8, dk }, v;
    int rc = mdb_get(txn, dbs->dbi[DBI_TEXT], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return STORE_EIO;
    const unsigned char *p = v.mv_data;
    if (v.mv_size < 8 || crc32c(0, p + 4, v.mv_size - 4) != get_be32(p))
        return STORE_ECORRUPT;
    size_t plain = get_be32(p + 4);
    if (plain > TEXT_MAX)
        return STORE_ECORRUPT;
    buf_reset(out);
    if (buf_reserve(out, plain))
        return STORE_EIO;
    ZSTD_DCtx *dctx = text_dctx();
    size_t dl = dctx ? ZSTD_decompressDCtx(dctx, out->data, plain, p + 8, v.mv_size - 8)
                     : ZSTD_decompress(out->data, plain, p + 8, v.mv_size - 8);
    if (ZSTD_isError(dl) || dl != plain)
        return STORE_ECORRUPT;
    out->len = plain;
    size_t off = 0;
    for (int f = 0; f < NFIELDS; f++) {
        if (off + 4 > plain)
            return STORE_ECORRUPT;
        size_t l = get_be32(out->data + off);
        off += 4;
        if (l > plain - off)
            return STORE_ECORRUPT;
        fields[f].p = out->data + off;
        fields[f].len = l;
        off += l;
    }
    return off == plain ? STORE_OK : STORE_ECORRUPT;
}

/* ---- batching: postings of a whole import transaction at once ----
 *
 * Writing each message's ~1,500 postings on its own costs one B-tree
 * descent and one page update each. In batch mode they are collected in
 * memory and written per (field, trigram) at index_flush(), one update per
 * list per batch. Without index_batch_begin() every message is written
 * directly (the default, so a caller that never flushes loses nothing). */

struct pend {
    uint32_t key;               /* field << 24 | trigram */
    uint64_t msgnum;
};

static struct {
    MDB_txn *txn;               /* batch open for this transaction */
    const struct index_dbs *dbs;
    struct pend *e;
    size_t n, cap;
    uint64_t *docs;
    size_t ndocs, capdocs;
} batch;

#define BATCH_MAX_ENTRIES (4u << 20)    /* ~64 MiB: flushed early beyond this */

static int write_doc(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                     const char **err)
{
    unsigned char dk[8], dv[8];
    put_be64(dk, msgnum);
    put_be32(dv, INDEX_VERSION);
    put_be32(dv + 4, crc32c(0, dv, 4));
    MDB_val k = { 8, dk }, v = { 8, dv };
    int rc = mdb_put(txn, dbs->dbi[DBI_DOC], &k, &v, 0);
    return rc ? mdb_fail(rc, "writing the text index", err) : STORE_OK;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Add the sorted, distinct msgnums m[0..cnt) to the list of one key. */
static int group_write(MDB_txn *txn, MDB_cursor *cur, MDB_dbi dbi, uint32_t key,
                       const uint64_t *m, size_t cnt, uint64_t *scratch, const char **err)
{
    unsigned char prefix[KEYLEN];
    prefix[0] = (unsigned char)(key >> 24);
    prefix[1] = (unsigned char)(key >> 16);
    prefix[2] = (unsigned char)(key >> 8);
    prefix[3] = (unsigned char)key;
    put_be64(prefix + 4, UINT64_MAX);
    MDB_val k = { KEYLEN, prefix }, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "reading the text index", err);
    bool have = rc == 0 && k.mv_size == KEYLEN && memcmp(k.mv_data, prefix, 4) == 0;
    size_t i = 0;
    if (have) {
        const unsigned char *old = v.mv_data;
        if (v.mv_size < VHDR || v.mv_size > VHDR + IX_BLOCK_MAX_BYTES + 10) {
            *err = "corrupt text index block (run `coffer reindex`)";
            return STORE_ECORRUPT;
        }
        size_t n = (size_t)old[4] << 8 | old[5];
        uint64_t last = get_be64(old + 6);
        if (m[0] <= last) {
            /* not an append (reindex order, re-add): one at a time */
            for (size_t j = 0; j < cnt; j++) {
                unsigned char tri[3] = { prefix[1], prefix[2], prefix[3] };
                if ((rc = post_add(txn, cur, dbi, prefix[0], tri, m[j], scratch, err)))
                    return rc;
            }
            return STORE_OK;
        }
        unsigned char val[VHDR + IX_BLOCK_MAX_BYTES + 10], bkey[KEYLEN];
        size_t len = v.mv_size;
        memcpy(val, old, len);
        memcpy(bkey, k.mv_data, KEYLEN);
        uint32_t crc = get_be32(old);
        while (i < cnt && n < IX_BLOCK_MAX_ENTRIES && len + 10 <= VHDR + IX_BLOCK_MAX_BYTES) {
            size_t dl = put_varint(val + len, m[i] - last);
            crc = crc32c(crc, val + len, dl);
            len += dl;
            last = m[i++];
            n++;
        }
        if (i > 0) {
            val[4] = (unsigned char)(n >> 8);
            val[5] = (unsigned char)n;
            put_be64(val + 6, last);
            put_be32(val, crc);
            MDB_val bk = { KEYLEN, bkey }, nv = { len, val };
            if ((rc = mdb_cursor_put(cur, &bk, &nv, MDB_CURRENT)))
                return mdb_fail(rc, "writing the text index", err);
        }
    }
    while (i < cnt) {
        /* greedily fill new blocks */
        size_t take = 1, size = VHDR;
        while (i + take < cnt && take < IX_BLOCK_MAX_ENTRIES &&
               size + varint_len(m[i + take] - m[i + take - 1]) + 10 <= VHDR + IX_BLOCK_MAX_BYTES)
            size += varint_len(m[i + take] - m[i + take - 1]), take++;
        if ((rc = put_block(txn, dbi, prefix, m + i, take, err)))
            return rc;
        i += take;
    }
    return STORE_OK;
}

static int u64cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int pend_flush(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    int rc = STORE_OK;
    size_t n = batch.n;
    if (n > 0) {
        struct pend *tmp = malloc(n * sizeof *tmp);
        uint64_t *m = malloc(n * sizeof *m);
        uint64_t *scratch = malloc((IX_BLOCK_MAX_ENTRIES + 1) * sizeof *scratch);
        MDB_cursor *cur = NULL;
        if (!tmp || !m || !scratch) {
            *err = "out of memory flushing the text index";
            rc = STORE_EIO;
        } else if ((rc = mdb_cursor_open(txn, dbs->dbi[DBI_POST], &cur))) {
            rc = mdb_fail(rc, "opening the text index", err);
        }
        if (rc == STORE_OK) {
            /* stable LSD radix sort on the key keeps msgnums in call order */
            struct pend *a = batch.e, *b = tmp;
            for (unsigned shift = 0; shift < 32; shift += 8) {
                size_t cnt[257] = { 0 };
                for (size_t i = 0; i < n; i++)
                    cnt[((a[i].key >> shift) & 0xFF) + 1]++;
                for (unsigned x = 0; x < 256; x++)
                    cnt[x + 1] += cnt[x];
                for (size_t i = 0; i < n; i++)
                    b[cnt[(a[i].key >> shift) & 0xFF]++] = a[i];
                struct pend *t = a;
                a = b;
                b = t;
            }
            /* four passes: the sorted data is back in batch.e */
            for (size_t i = 0; i < n && rc == STORE_OK;) {
                size_t j = i, c = 0;
                bool sorted = true;
                while (j < n && a[j].key == a[i].key) {
                    if (c && a[j].msgnum < m[c - 1])
                        sorted = false;
                    m[c++] = a[j++].msgnum;
                }
                if (!sorted)
                    qsort(m, c, sizeof *m, u64cmp);
                size_t u = 0;
                for (size_t x = 0; x < c; x++)
                    if (u == 0 || m[u - 1] != m[x])
                        m[u++] = m[x];
                rc = group_write(txn, cur, dbs->dbi[DBI_POST], a[i].key, m, u, scratch, err);
                i = j;
            }
        }
        if (cur)
            mdb_cursor_close(cur);
        free(tmp);
        free(m);
        free(scratch);
    }
    for (size_t i = 0; i < batch.ndocs && rc == STORE_OK; i++)
        rc = write_doc(txn, dbs, batch.docs[i], err);
    batch.n = 0;
    batch.ndocs = 0;
    return rc;
}

int index_batch_begin(MDB_txn *txn, const struct index_dbs *dbs)
{
    batch.n = 0;
    batch.ndocs = 0;
    batch.txn = txn;
    batch.dbs = dbs;
    return STORE_OK;
}

int index_flush(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    int rc = STORE_OK;
    if (batch.txn == txn)
        rc = pend_flush(txn, dbs, err);
    index_discard();
    return rc;
}

void index_discard(void)
{
    batch.txn = NULL;
    batch.dbs = NULL;
    batch.n = 0;
    batch.ndocs = 0;
}

static int batch_add(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                     struct mailtext *t, const char **err)
{
    for (int f = 0; f < NFIELDS; f++) {
        uint32_t *tri;
        size_t n;
        if (trigrams(&t->f[f], &tri, &n)) {
            *err = "out of memory";
            return STORE_EIO;
        }
        if (batch.n + n > batch.cap) {
            size_t nc = batch.cap ? batch.cap : 65536;
            while (nc < batch.n + n)
                nc *= 2;
            struct pend *ne = realloc(batch.e, nc * sizeof *ne);
            if (!ne) {
                free(tri);
                *err = "out of memory";
                return STORE_EIO;
            }
            batch.e = ne;
            batch.cap = nc;
        }
        for (size_t i = 0; i < n; i++)
            batch.e[batch.n++] = (struct pend){ (uint32_t)f << 24 | tri[i], msgnum };
        free(tri);
    }
    if (batch.ndocs == batch.capdocs) {
        size_t nc = batch.capdocs ? batch.capdocs * 2 : 1024;
        uint64_t *nd = realloc(batch.docs, nc * sizeof *nd);
        if (!nd) {
            *err = "out of memory";
            return STORE_EIO;
        }
        batch.docs = nd;
        batch.capdocs = nc;
    }
    batch.docs[batch.ndocs++] = msgnum;
    if (batch.n > BATCH_MAX_ENTRIES)
        return pend_flush(txn, dbs, err);
    return STORE_OK;
}

int index_add_message(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                      const unsigned char *canon, size_t len,
                      const struct msginfo *mi, const char **err)
{
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val k = { 8, dk }, v;
    int rc = mdb_get(txn, dbs->dbi[DBI_DOC], &k, &v);
    if (rc == 0)
        return STORE_OK;                /* idempotent: already indexed */
    if (rc != MDB_NOTFOUND)
        return mdb_fail(rc, "reading the text index", err);
    if (batch.txn && batch.txn != txn) {
        if (batch.n || batch.ndocs) {
            /* a batch was committed without index_flush(): store bug */
            *err = "text index batch was not flushed before its transaction ended";
            index_discard();
            return STORE_EIO;
        }
        index_discard();
    }

    struct mailtext t;
    struct canon_src src = { canon, len };
    int read_rc = 0;
    unsigned mask = 0;
    for (int f = 0; f < NFIELDS; f++)
        mask |= MT_BIT(f);
    mailtext_init(&t);
    if (mailtext_build(mi, canon_read, &src, mask, &t, &read_rc, err) != 0) {
        mailtext_free(&t);
        return read_rc ? read_rc : STORE_EIO;
    }
    if ((rc = write_text(txn, dbs, msgnum, &t, err))) {
        mailtext_free(&t);
        return rc;
    }
    if (batch.txn == txn) {
        rc = batch_add(txn, dbs, msgnum, &t, err);
        mailtext_free(&t);
        return rc;
    }
    MDB_cursor *cur = NULL;
    uint64_t *scratch = malloc((IX_BLOCK_MAX_ENTRIES + 1) * sizeof *scratch);
    if (!scratch || (rc = mdb_cursor_open(txn, dbs->dbi[DBI_POST], &cur))) {
        free(scratch);
        mailtext_free(&t);
        return scratch ? mdb_fail(rc, "opening the text index", err)
                       : (*err = "out of memory", STORE_EIO);
    }
    rc = STORE_OK;
    for (int f = 0; f < NFIELDS && rc == STORE_OK; f++) {
        uint32_t *tri;
        size_t n;
        if (trigrams(&t.f[f], &tri, &n)) {
            *err = "out of memory";
            rc = STORE_EIO;
            break;
        }
        for (size_t i = 0; i < n && rc == STORE_OK; i++) {
            unsigned char tb[3] = { (unsigned char)(tri[i] >> 16), (unsigned char)(tri[i] >> 8),
                                    (unsigned char)tri[i] };
            rc = post_add(txn, cur, dbs->dbi[DBI_POST], f, tb, msgnum, scratch, err);
        }
        free(tri);
    }
    mdb_cursor_close(cur);
    free(scratch);
    mailtext_free(&t);
    if (rc)
        return rc;
    return write_doc(txn, dbs, msgnum, err);
}

int index_remove_message(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                         const char **err)
{
    /* Postings are not listed per message: walk them all. Purge is rare
     * and offline; import never calls this. */
    MDB_cursor *cur;
    uint64_t *ent = malloc((IX_BLOCK_MAX_ENTRIES + 1) * sizeof *ent);
    int rc = ent ? mdb_cursor_open(txn, dbs->dbi[DBI_POST], &cur) : ENOMEM;
    if (rc) {
        free(ent);
        return mdb_fail(rc, "opening the text index", err);
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        unsigned char key[KEYLEN];
        size_t n;
        if (k.mv_size != KEYLEN || block_decode(k.mv_data, &v, ent, &n)) {
            rc = STORE_ECORRUPT;
            *err = "corrupt text index block (run `coffer reindex`)";
            break;
        }
        memcpy(key, k.mv_data, KEYLEN);
        if (msgnum >= ent[0] && msgnum <= ent[n - 1]) {
            size_t i = 0;
            while (i < n && ent[i] != msgnum)
                i++;
            if (i < n) {
                memmove(ent + i, ent + i + 1, (n - i - 1) * sizeof *ent);
                if ((rc = mdb_cursor_del(cur, 0)))
                    break;
                if (n > 1 && (rc = put_block(txn, dbs->dbi[DBI_POST], key, ent, n - 1, err)))
                    break;
                /* reposition after the rewritten block */
                MDB_val rk = { KEYLEN, key };
                put_be64(key + 4, msgnum + 1);
                rc = mdb_cursor_get(cur, &rk, &v, MDB_SET_RANGE);
                k = rk;
                continue;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    free(ent);
    if (rc == STORE_ECORRUPT)
        return rc;
    if (rc != MDB_NOTFOUND && rc != 0)
        return mdb_fail(rc, "updating the text index", err);
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val dkv = { 8, dk };
    rc = mdb_del(txn, dbs->dbi[DBI_DOC], &dkv, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "updating the text index", err);
    if (dbs->n >= 4) {
        rc = mdb_del(txn, dbs->dbi[DBI_TEXT], &dkv, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return mdb_fail(rc, "updating the text index", err);
    }
    return STORE_OK;
}

int index_clear(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    for (unsigned i = DBI_DOC; i < dbs->n; i++) {
        int rc = mdb_drop(txn, dbs->dbi[i], 0);
        if (rc)
            return mdb_fail(rc, "clearing the text index", err);
    }
    return STORE_OK;
}

long index_verify(MDB_txn *txn, const struct index_dbs *dbs,
                  void (*report)(void *ctx, const char *msg), void *ctx)
{
    long bad = 0;
    char msg[160];
    MDB_cursor *cur;
    uint64_t *ent = malloc((IX_BLOCK_MAX_ENTRIES + 1) * sizeof *ent);
    if (!ent || mdb_cursor_open(txn, dbs->dbi[DBI_POST], &cur)) {
        free(ent);
        report(ctx, "text index: cannot open the postings database");
        return 1;
    }
    MDB_val k, v;
    unsigned char prev[4] = { 0 };
    uint64_t prev_last = 0;
    bool have_prev = false;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t n;
        const unsigned char *kp = k.mv_data;
        if (k.mv_size != KEYLEN || kp[0] >= NFIELDS) {
            bad++;
            report(ctx, "text index: malformed posting key");
            continue;
        }
        if (block_decode(kp, &v, ent, &n)) {
            bad++;
            snprintf(msg, sizeof msg,
                     "text index: corrupt posting block (field %u, trigram %02x%02x%02x, msgnum %llu)",
                     kp[0], kp[1], kp[2], kp[3], (unsigned long long)get_be64(kp + 4));
            report(ctx, msg);
            have_prev = false;
            continue;
        }
        if (have_prev && memcmp(prev, kp, 4) == 0 && ent[0] <= prev_last) {
            bad++;
            report(ctx, "text index: overlapping posting blocks");
        }
        memcpy(prev, kp, 4);
        prev_last = ent[n - 1];
        have_prev = true;
    }
    mdb_cursor_close(cur);
    free(ent);
    if (mdb_cursor_open(txn, dbs->dbi[DBI_DOC], &cur) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const unsigned char *p = v.mv_data;
            if (k.mv_size != 8 || v.mv_size != 8 || crc32c(0, p, 4) != get_be32(p + 4) ||
                get_be32(p) != INDEX_VERSION) {
                bad++;
                report(ctx, "text index: corrupt document record");
            }
        }
        mdb_cursor_close(cur);
    }
    if (dbs->n >= 4 && mdb_cursor_open(txn, dbs->dbi[DBI_TEXT], &cur) == 0) {
        struct buf b;
        struct ix_text fl[MT_MSGID + 1];
        buf_init(&b, 0);
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 8 ||
                ix_text_get(txn, dbs, get_be64(k.mv_data), &b, fl) != STORE_OK) {
                bad++;
                snprintf(msg, sizeof msg, "text index: corrupt text record (msgnum %llu)",
                         k.mv_size == 8 ? (unsigned long long)get_be64(k.mv_data) : 0ull);
                report(ctx, msg);
            }
        }
        buf_free(&b);
        mdb_cursor_close(cur);
    }
    return bad;
}

/* ---- reader ---- */

int ix_cursor_open(MDB_txn *txn, const struct index_dbs *dbs, int field,
                   const unsigned char tri[3], struct ix_cursor *c)
{
    memset(c, 0, sizeof *c);
    c->prefix[0] = (unsigned char)field;
    memcpy(c->prefix + 1, tri, 3);
    if (dbs->n < 3 || mdb_cursor_open(txn, dbs->dbi[DBI_POST], &c->cur))
        return STORE_EIO;
    return STORE_OK;
}

void ix_cursor_close(struct ix_cursor *c)
{
    if (c->cur)
        mdb_cursor_close(c->cur);
    c->cur = NULL;
}

static int load(struct ix_cursor *c, const MDB_val *k, const MDB_val *v)
{
    if (block_decode(k->mv_data, v, c->ent, &c->n))
        return STORE_ECORRUPT;
    c->pos = 0;
    c->loaded = true;
    return STORE_OK;
}

static bool same_prefix(const struct ix_cursor *c, const MDB_val *k)
{
    return k->mv_size == KEYLEN && memcmp(k->mv_data, c->prefix, 4) == 0;
}

int ix_cursor_seek(struct ix_cursor *c, uint64_t target, uint64_t *out)
{
    if (c->end)
        return 0;
    if (!c->loaded || c->ent[c->n - 1] < target) {
        /* The block that may hold target starts at or before it. */
        unsigned char key[KEYLEN];
        memcpy(key, c->prefix, 4);
        put_be64(key + 4, target);
        MDB_val k = { KEYLEN, key }, v;
        int rc = mdb_cursor_get(c->cur, &k, &v, MDB_SET_RANGE);
        if (rc && rc != MDB_NOTFOUND)
            return STORE_EIO;
        bool exact = rc == 0 && same_prefix(c, &k) && get_be64((unsigned char *)k.mv_data + 4) == target;
        if (!exact) {
            /* the block before may still cover target */
            MDB_val pk, pv;
            int prc = mdb_cursor_get(c->cur, &pk, &pv, rc == 0 ? MDB_PREV : MDB_LAST);
            if (prc == 0 && same_prefix(c, &pk)) {
                if (load(c, &pk, &pv))
                    return STORE_ECORRUPT;
                if (c->ent[c->n - 1] >= target)
                    goto scan;
            } else if (prc && prc != MDB_NOTFOUND) {
                return STORE_EIO;
            }
            if (rc == MDB_NOTFOUND) {
                c->end = true;
                return 0;
            }
            /* k, v from SET_RANGE stay valid: nothing writes meanwhile */
        }
        if (!same_prefix(c, &k)) {
            c->end = true;
            return 0;
        }
        if (load(c, &k, &v))
            return STORE_ECORRUPT;
    }
scan:
    while (c->pos < c->n && c->ent[c->pos] < target)
        c->pos++;
    if (c->pos >= c->n) {
        c->end = true;     /* cannot happen: the block's last is >= target */
        return 0;
    }
    *out = c->ent[c->pos];
    return 1;
}

bool ix_has_doc(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum)
{
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val k = { 8, dk }, v;
    return dbs->n >= 3 && mdb_get(txn, dbs->dbi[DBI_DOC], &k, &v) == 0;
}
