/* index.c — trigram full-text index (see index.h, index_read.h): records,
 * batching and format migration; the postings themselves are segments
 * (index_int.h, index_seg.c).
 *
 * Databases:
 *   ix_meta  "version" -> u32; "incomplete" -> "1" while the index does not
 *            cover every message (after a format migration, during a
 *            reindex): the executor scans instead of trusting it
 *   ix_doc   msgnum (u64 BE) -> u32 version, u32 crc32c(version)
 *   ix_text  msgnum (u64 BE) -> u32 crc32c(rest), u32 plain length, zstd
 *            frame of the folded text of every indexed field (u32 length +
 *            octets each, MT_BODY..MT_MSGID): the executor confirms a
 *            candidate against it without decoding the message again
 *   ix_sdir, ix_l0, ix_l1, ix_l2: posting segments (index_int.h)
 *   ix_mem   msgnum u64 BE, mailbox id u32 BE, UID u32 BE -> empty: where
 *            each message is (the reverse of the store's mmsg), so SEARCH
 *            can start from the index's candidates and look up only those
 *            instead of walking the whole mailbox. Optional: indexes from
 *            before it have none (opened by a writer: created empty). The
 *            executor trusts it only while ix_meta "members" -> "1" says it
 *            covers every mmsg record: set when the index is created with
 *            the instance, and by a full reindex, which refills it.
 * Version 1 kept every (field, trigram) list in one database, ix_post,
 * updated in place: every import transaction rewrote a page per list it
 * touched, so the cost of a batch grew with the archive (5.5 GB written
 * for a 20,000-message import). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/index.h"
#include "store/index_int.h"
#include "store/store_int.h"
#include "proto/mailtext.h"
#include <zstd.h>

#define TEXT_MAX (512u * 1024u * 1024u)   /* plain text record limit */
#define NFIELDS (MT_MSGID + 1)

_Static_assert(NFIELDS == IX_NFIELDS, "index_int.h field count");
_Static_assert(IX_GRAM_FIELD(0) == NFIELDS, "long grams follow the trigram fields");
_Static_assert(DBI_MEM < sizeof ((struct index_dbs *)0)->dbi / sizeof (MDB_dbi), "dbi room");

static const char *const dbnames[DBI_MEM + 1] = { "ix_meta", "ix_doc", "ix_text", "ix_sdir",
                                                  "ix_l0", "ix_l1", "ix_l2", "ix_mem" };
static const MDB_val k_version = { 7, (void *)"version" };
static const MDB_val k_incomplete = { 10, (void *)"incomplete" };
static const MDB_val k_members = { 7, (void *)"members" };
static const MDB_val k_grams = { 5, (void *)"grams" };

static int mdb_fail(int rc, const char *what, const char **err)
{
    return store_mdb_err(rc, what, err);
}

static int set_incomplete(MDB_txn *txn, const struct index_dbs *dbs, bool on)
{
    MDB_val k = k_incomplete, v = { 1, (void *)"1" };
    int rc = on ? mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0)
                : mdb_del(txn, dbs->dbi[DBI_META], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Version 1 -> 2 (writer only): drop the old postings and records; new
 * messages are indexed in the new format and the index is marked
 * incomplete, so searches scan until `coffer reindex` rebuilds it. */
static int migrate_v1(MDB_txn *txn, struct index_dbs *dbs, const char **err)
{
    static const char *const old[] = { "ix_post", "ix_doc", "ix_text" };
    for (unsigned i = 0; i < 3; i++) {
        MDB_dbi d;
        int rc = mdb_dbi_open(txn, old[i], 0, &d);
        if (rc == MDB_NOTFOUND)
            continue;
        if (!rc)
            rc = mdb_drop(txn, d, i == 0);    /* ix_post goes, the others are emptied */
        if (rc)
            return mdb_fail(rc, "migrating the text index", err);
    }
    (void)dbs;
    return STORE_OK;
}

int index_open(MDB_txn *txn, bool create, struct index_dbs *dbs, const char **err)
{
    int rc = mdb_dbi_open(txn, dbnames[DBI_META], create ? MDB_CREATE : 0, &dbs->dbi[DBI_META]);
    if (rc)
        return mdb_fail(rc, "opening the text index", err);
    MDB_val k = k_version, v;
    bool fresh = false, migrated = false;
    rc = mdb_get(txn, dbs->dbi[DBI_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        fresh = true;
    } else if (rc) {
        return mdb_fail(rc, "reading the text index version", err);
    } else if (v.mv_size != 4 || get_be32(v.mv_data) != INDEX_VERSION) {
        uint32_t ver = v.mv_size == 4 ? get_be32(v.mv_data) : 0;
        if (!create || ver == 0 || ver > INDEX_VERSION) {
            *err = ver > INDEX_VERSION ? "text index is newer than this Coffer"
                                       : "text index has an older format: run `coffer reindex`";
            return STORE_EVERSION;
        }
        if ((rc = migrate_v1(txn, dbs, err)))
            return rc;
        migrated = true;
    }
    for (unsigned i = 1; i < IX_NDBI; i++) {
        rc = mdb_dbi_open(txn, dbnames[i], create ? MDB_CREATE : 0, &dbs->dbi[i]);
        if (rc == MDB_NOTFOUND) {
            *err = "text index lacks a database: run `coffer reindex`";
            return STORE_EVERSION;
        }
        if (rc)
            return mdb_fail(rc, "opening the text index", err);
    }
    dbs->n = IX_NDBI;
    /* ix_mem came later: a reader of an older index goes without it */
    rc = mdb_dbi_open(txn, dbnames[DBI_MEM], create ? MDB_CREATE : 0, &dbs->dbi[DBI_MEM]);
    if (rc == 0)
        dbs->n = DBI_MEM + 1;
    else if (rc != MDB_NOTFOUND)
        return mdb_fail(rc, "opening the text index", err);
    if ((fresh && create) || migrated) {
        unsigned char b[4];
        put_be32(b, INDEX_VERSION);
        v = (MDB_val){ 4, b };
        k = k_version;
        if ((rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0)) ||
            (migrated && (rc = set_incomplete(txn, dbs, true))))
            return mdb_fail(rc, "writing the text index version", err);
        /* created with the instance: every message to come is added, with
         * its long grams */
        k = k_members;
        v = (MDB_val){ 1, (void *)"1" };
        if (fresh && (rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0)))
            return mdb_fail(rc, "writing the text index version", err);
        k = k_grams;
        v = (MDB_val){ 1, (void *)"1" };
        if (fresh && (rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0)))
            return mdb_fail(rc, "writing the text index version", err);
    }
    return STORE_OK;
}

bool ix_complete(MDB_txn *txn, const struct index_dbs *dbs)
{
    MDB_val k = k_incomplete, v;
    return mdb_get(txn, dbs->dbi[DBI_META], &k, &v) == MDB_NOTFOUND;
}

int index_mark_complete(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    int rc = set_incomplete(txn, dbs, false);
    if (rc == 0) {     /* the rebuild re-added every message with its grams */
        MDB_cursor *c;
        MDB_val k, v;
        bool fits = true;       /* no msgnum beyond the grams' tag room */
        if ((rc = mdb_cursor_open(txn, dbs->dbi[DBI_DOC], &c)) == 0) {
            int r = mdb_cursor_get(c, &k, &v, MDB_LAST);
            fits = r != 0 || (k.mv_size == 8 && get_be64(k.mv_data) <= IX_GRAM_MSGMASK);
            mdb_cursor_close(c);
        }
        k = k_grams;
        v = (MDB_val){ 1, (void *)"1" };
        if (rc == 0 && fits)
            rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0);
    }
    if (rc == 0 && dbs->n > DBI_MEM) {
        MDB_val k = k_members, v = { 1, (void *)"1" };
        rc = mdb_put(txn, dbs->dbi[DBI_META], &k, &v, 0);
    }
    return rc ? mdb_fail(rc, "writing the text index", err) : STORE_OK;
}

bool ix_grams_complete(MDB_txn *txn, const struct index_dbs *dbs)
{
    MDB_val k = k_grams, v;
    return mdb_get(txn, dbs->dbi[DBI_META], &k, &v) == 0 && v.mv_size == 1 &&
           *(const char *)v.mv_data == '1';
}

bool ix_members_complete(MDB_txn *txn, const struct index_dbs *dbs)
{
    MDB_val k = k_members, v;
    return dbs->n > DBI_MEM && mdb_get(txn, dbs->dbi[DBI_META], &k, &v) == 0 &&
           v.mv_size == 1 && *(const char *)v.mv_data == '1';
}

int index_add_member(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                     uint32_t mbox_id, uint32_t uid, const char **err)
{
    if (dbs->n <= DBI_MEM)
        return STORE_OK;
    unsigned char key[IX_MEMKEY];
    put_be64(key, msgnum);
    put_be32(key + 8, mbox_id);
    put_be32(key + 12, uid);
    MDB_val k = { IX_MEMKEY, key }, v = { 0, key };
    int rc = mdb_put(txn, dbs->dbi[DBI_MEM], &k, &v, 0);
    return rc ? mdb_fail(rc, "updating the text index", err) : STORE_OK;
}

int ix_members_open(MDB_txn *txn, const struct index_dbs *dbs, MDB_cursor **c)
{
    *c = NULL;
    if (dbs->n <= DBI_MEM)
        return STORE_ENOTFOUND;
    return mdb_cursor_open(txn, dbs->dbi[DBI_MEM], c) ? STORE_EIO : STORE_OK;
}

int ix_members_get(MDB_cursor *c, uint64_t msgnum, uint32_t mbox_id, uint32_t *uids,
                   size_t cap, size_t *n)
{
    unsigned char key[IX_MEMKEY];
    put_be64(key, msgnum);
    put_be32(key + 8, mbox_id);
    put_be32(key + 12, 0);
    MDB_val k = { IX_MEMKEY, key }, v;
    *n = 0;
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != IX_MEMKEY)
            return STORE_ECORRUPT;
        const unsigned char *p = k.mv_data;
        if (get_be64(p) != msgnum || get_be32(p + 8) != mbox_id)
            return STORE_OK;
        if (*n < cap)
            uids[*n] = get_be32(p + 12);
        (*n)++;
    }
    return rc == MDB_NOTFOUND ? STORE_OK : STORE_EIO;
}

/* LSD radix sort of keys below 2^bits: trigram lists are long (one per
 * text octet) and qsort showed up first in import profiles. */
static void radix_sort(uint32_t *a, uint32_t *tmp, size_t n, unsigned bits)
{
    for (unsigned shift = 0; shift < bits; shift += 8) {
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

/* Distinct trigrams of t (none spanning a segment separator), sorted, as
 * trigram << 8 | mask of their positions mod 8 (struct ix_ent). */
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
        a[m++] = ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) << 3 | (i & 7);
    }
    radix_sort(a, tmp, m, 27);
    free(tmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t tri = a[i] >> 3, bit = 1u << (a[i] & 7);
        if (u > 0 && a[u - 1] >> 8 == tri)
            a[u - 1] |= bit;
        else
            a[u++] = tri << 8 | bit;
    }
    *out = a;
    *n = u;
    return 0;
}

/* Distinct winnowed long grams of t (index_gram.c), sorted, as hash << 8
 * (gram blocks keep no position masks: index_seg.c). */
static int long_grams(const struct buf *t, uint32_t **out, size_t *n)
{
    *n = 0;
    *out = NULL;
    if (t->len < IX_GRAM_MINKEY)
        return 0;
    struct ix_gram *g = malloc(t->len * sizeof *g);
    uint32_t *a = malloc(t->len * sizeof *a), *tmp = malloc(t->len * sizeof *a);
    if (!g || !a || !tmp) {
        free(g);
        free(a);
        free(tmp);
        return -1;
    }
    size_t m = ix_winnow_text(t->data, t->len, g);
    for (size_t i = 0; i < m; i++)
        a[i] = g[i].hash;
    free(g);
    radix_sort(a, tmp, m, IX_GRAM_BITS);
    free(tmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || a[u - 1] >> 8 != a[i])
            a[u++] = a[i] << 8 | 0xFF;
    *out = a;
    *n = u;
    return 0;
}

/* ---- stored folded text ---- */

static int write_text(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                      const struct mailtext *t, const char **err)
{
    if (dbs->n < IX_NDBI)
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
    if (dbs->n < IX_NDBI)
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
 * index_add_message() collects (field << 24 | trigram, msgnum) pairs; the
 * flush sorts them and writes one new level-0 segment (appends only), then
 * merges full levels. Without index_batch_begin() each message is flushed
 * on its own (a segment of one message, merged away soon). */

static struct {
    MDB_txn *txn;               /* batch open for this transaction */
    const struct index_dbs *dbs;
    struct ix_pend *e;
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

static int pend_cmp(const void *a, const void *b)
{
    const struct ix_pend *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->msgnum < y->msgnum ? -1 : x->msgnum > y->msgnum;
}

/* Sort by (key, msgnum) and drop repeats. A stable LSD radix sort on the
 * key keeps msgnums in call order, which is increasing in an import. */
static int pend_sort(struct ix_pend *a, size_t n, size_t *out)
{
    struct ix_pend *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return -1;
    struct ix_pend *x = a, *y = tmp;
    for (unsigned shift = 0; shift < 32; shift += 8) {
        size_t cnt[257] = { 0 };
        for (size_t i = 0; i < n; i++)
            cnt[((x[i].key >> shift) & 0xFF) + 1]++;
        for (unsigned b = 0; b < 256; b++)
            cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < n; i++)
            y[cnt[(x[i].key >> shift) & 0xFF]++] = x[i];
        struct ix_pend *t = x;
        x = y;
        y = t;
    }
    free(tmp);              /* four passes: the sorted data is back in a */
    /* msgnums of one key are in call order; a long-gram bucket's carry
     * tags (index_read.h), so its run is sorted on its own */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        bool sorted = true;
        for (; j < n && a[j].key == a[i].key; j++)
            if (a[j].msgnum <= a[j - 1].msgnum)
                sorted = false;
        if (!sorted)
            qsort(a + i, j - i, sizeof *a, pend_cmp);
        i = j;
    }
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && pend_cmp(&a[u - 1], &a[i]) == 0)
            a[u - 1].mask |= a[i].mask;
        else
            a[u++] = a[i];
    }
    *out = u;
    return 0;
}

static int pend_flush(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    int rc = STORE_OK;
    size_t n = batch.n;
    if (n > 0) {
        if (pend_sort(batch.e, n, &n)) {
            *err = "out of memory flushing the text index";
            return STORE_EIO;
        }
        rc = ixs_write_level0(txn, dbs, batch.e, n, err);
        if (rc == STORE_OK)
            rc = ixs_compact(txn, dbs, err);
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
    for (int g = 0; g < 2 * NFIELDS; g++) {
        /* trigrams of every field, then its long grams (field 8 + f) */
        int f = g % NFIELDS;
        uint32_t *tri;
        size_t n;
        if (g >= NFIELDS && (!(IX_GRAM_FIELDS & (1u << f)) || msgnum > IX_GRAM_MSGMASK))
            continue;
        if (g < NFIELDS ? trigrams(&t->f[f], &tri, &n) : long_grams(&t->f[f], &tri, &n)) {
            *err = "out of memory";
            return STORE_EIO;
        }
        if (batch.n + n > batch.cap) {
            size_t nc = batch.cap ? batch.cap : 65536;
            while (nc < batch.n + n)
                nc *= 2;
            struct ix_pend *ne = realloc(batch.e, nc * sizeof *ne);
            if (!ne) {
                free(tri);
                *err = "out of memory";
                return STORE_EIO;
            }
            batch.e = ne;
            batch.cap = nc;
        }
        if (g < NFIELDS)
            for (size_t i = 0; i < n; i++)
                batch.e[batch.n++] = (struct ix_pend){ (uint32_t)g << 24 | tri[i] >> 8,
                                                       (uint8_t)tri[i], msgnum };
        else        /* bucket in the key, tag in the msgnum (index_read.h) */
            for (size_t i = 0; i < n; i++)
                batch.e[batch.n++] = (struct ix_pend){
                    (uint32_t)g << 24 | (tri[i] >> 16) << 8, (uint8_t)tri[i],
                    (uint64_t)(tri[i] >> 8 & 0xFF) << IX_GRAM_TAGSHIFT | msgnum };
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
    if (msgnum > IX_GRAM_MSGMASK) {
        /* no room for its grams' tags: the executor keeps to trigrams */
        MDB_val gk = k_grams;
        rc = mdb_del(txn, dbs->dbi[DBI_META], &gk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return mdb_fail(rc, "updating the text index", err);
    }
    if (batch.txn && batch.txn != txn) {
        if (batch.n || batch.ndocs) {
            /* a batch was committed without index_flush(): store bug */
            *err = "text index batch was not flushed before its transaction ended";
            index_discard();
            return STORE_EIO;
        }
        index_discard();
    }
    for (size_t i = 0; i < batch.ndocs; i++)
        if (batch.txn == txn && batch.docs[i] == msgnum)
            return STORE_OK;            /* already in this batch */

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
    /* unbatched: a batch of this one message */
    index_batch_begin(txn, dbs);
    rc = batch_add(txn, dbs, msgnum, &t, err);
    mailtext_free(&t);
    if (rc == STORE_OK)
        rc = pend_flush(txn, dbs, err);
    index_discard();
    return rc;
}

int index_remove_message(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum,
                         const char **err)
{
    /* Postings are not listed per message: walk them all. Purge is rare
     * and offline; import never calls this. */
    int rc = ixs_remove(txn, dbs, msgnum, err);
    if (rc)
        return rc;
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val dkv = { 8, dk };
    rc = mdb_del(txn, dbs->dbi[DBI_DOC], &dkv, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "updating the text index", err);
    rc = mdb_del(txn, dbs->dbi[DBI_TEXT], &dkv, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "updating the text index", err);
    return STORE_OK;
}

int index_clear(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    for (unsigned i = DBI_DOC; i < dbs->n; i++) {
        int rc = mdb_drop(txn, dbs->dbi[i], 0);
        if (rc)
            return mdb_fail(rc, "clearing the text index", err);
    }
    /* until the caller's rebuild calls index_mark_complete() */
    MDB_val mk = k_members, gk = k_grams;
    int rc = mdb_del(txn, dbs->dbi[DBI_META], &mk, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_del(txn, dbs->dbi[DBI_META], &gk, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail(rc, "clearing the text index", err);
    rc = set_incomplete(txn, dbs, true);
    return rc ? mdb_fail(rc, "clearing the text index", err) : STORE_OK;
}

static void no_report(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
}

long index_verify(MDB_txn *txn, const struct index_dbs *dbs,
                  void (*report)(void *ctx, const char *msg), void *ctx)
{
    char msg[160];
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;
    if (!report)
        report = no_report;
    long bad = ixs_verify(txn, dbs, report, ctx);
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
    if (mdb_cursor_open(txn, dbs->dbi[DBI_TEXT], &cur) == 0) {
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

bool ix_has_doc(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum)
{
    unsigned char dk[8];
    put_be64(dk, msgnum);
    MDB_val k = { 8, dk }, v;
    return dbs->n >= IX_NDBI && mdb_get(txn, dbs->dbi[DBI_DOC], &k, &v) == 0;
}
