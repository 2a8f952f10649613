/* index_seg.c — posting segments of the text index (layout in index_int.h):
 * block codec, level-0 writer, level merges, removal, verify, and the
 * streaming reader the SEARCH executor joins with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/index_int.h"
#include "store/store_int.h"

#define VAL_MAX (IX_VHDR + IX_BLOCK_MAX_BYTES + 11)
#define RELEASE_EVERY (2u << 20)   /* merge input read between map releases */

static const char corrupt_msg[] = "corrupt text index block (run `coffer reindex`)";

/* ---- block codec ---- */

/* Long-gram buckets (index_read.h) carry a tag above the msgnum, and no
 * position masks: a gram is posted only where winnowing selected it, which
 * filters as well as a mask, and a mask octet per posting would be a third
 * of the grams' size. They decode with all-ones masks. */
static bool is_gram(unsigned field)
{
    return field >= IX_GRAM_FIELD(0);
}

static uint64_t ent_msg(unsigned field, uint64_t v)
{
    return is_gram(field) ? v & IX_GRAM_MSGMASK : v;
}

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

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Decode a block into ent[]; STORE_ECORRUPT on any inconsistency. */
static int block_decode(const unsigned char *key, const MDB_val *v, struct ix_ent *ent, size_t *n)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < IX_VHDR || v->mv_size > VAL_MAX)
        return STORE_ECORRUPT;
    if (crc32c(0, p + IX_VHDR, v->mv_size - IX_VHDR) != get_be32(p))
        return STORE_ECORRUPT;
    size_t count = (size_t)p[4] << 8 | p[5];
    uint64_t last = get_be64(p + 6);
    if (count == 0 || count > IX_BLOCK_MAX_ENTRIES)
        return STORE_ECORRUPT;
    uint64_t cur = get_be64(key + 8);
    unsigned mk = is_gram(key[4]) ? 0 : 1;     /* mask octets per entry */
    if (v->mv_size < IX_VHDR + mk)
        return STORE_ECORRUPT;
    ent[0] = (struct ix_ent){ cur, mk ? p[IX_VHDR] : 0xFF };
    size_t off = IX_VHDR + mk, i = 1;
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
        if (d == 0 || cur + d < cur || off + mk > v->mv_size)
            return STORE_ECORRUPT;
        cur += d;
        ent[i++] = (struct ix_ent){ cur, mk ? p[off] : 0xFF };
        off += mk;
    }
    if (off != v->mv_size || cur != last)
        return STORE_ECORRUPT;
    *n = count;
    return STORE_OK;
}

/* How many of m[0..cnt) (increasing) fit in one block. */
static size_t block_take(const struct ix_ent *m, size_t cnt, unsigned mk)
{
    size_t take = 1, size = IX_VHDR + mk;
    while (take < cnt && take < IX_BLOCK_MAX_ENTRIES &&
           size + varint_len(m[take].msgnum - m[take - 1].msgnum) + mk <=
               IX_VHDR + IX_BLOCK_MAX_BYTES)
        size += varint_len(m[take].msgnum - m[take - 1].msgnum) + mk, take++;
    return take;
}

/* Encode ent[0..n) (the key carries ent[0]'s msgnum); n from block_take. */
static size_t block_encode(const struct ix_ent *ent, size_t n, unsigned mk, unsigned char *out)
{
    size_t off = IX_VHDR;
    if (mk)
        out[off++] = ent[0].mask;
    for (size_t i = 1; i < n; i++) {
        off += put_varint(out + off, ent[i].msgnum - ent[i - 1].msgnum);
        if (mk)
            out[off++] = ent[i].mask;
    }
    out[4] = (unsigned char)(n >> 8);
    out[5] = (unsigned char)n;
    put_be64(out + 6, ent[n - 1].msgnum);
    put_be32(out, crc32c(0, out + IX_VHDR, off - IX_VHDR));
    return off;
}

static void make_key(unsigned char *k, uint32_t seg, const unsigned char *ft, uint64_t first)
{
    put_be32(k, seg);
    memcpy(k + 4, ft, 4);
    put_be64(k + 8, first);
}

/* ---- segment directory ---- */

static int seg_cmp_id(const void *a, const void *b)
{
    const struct ix_seg *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int ixs_load(MDB_txn *txn, const struct index_dbs *dbs, struct ix_seg **out, size_t *n)
{
    MDB_cursor *c;
    *out = NULL;
    *n = 0;
    if (mdb_cursor_open(txn, dbs->dbi[DBI_SDIR], &c))
        return STORE_EIO;
    size_t cap = 0;
    struct ix_seg *s = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const unsigned char *p = v.mv_data;
        if (k.mv_size != 4 || v.mv_size != IX_SDIR_LEN ||
            crc32c(0, p + 4, IX_SDIR_LEN - 4) != get_be32(p) || p[4] >= IX_LEVELS) {
            rc = STORE_ECORRUPT;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            struct ix_seg *ns = realloc(s, cap * sizeof *ns);
            if (!ns) {
                rc = STORE_EIO;
                break;
            }
            s = ns;
        }
        s[*n] = (struct ix_seg){ get_be32(k.mv_data), p[4], get_be64(p + 8), get_be64(p + 16),
                                 false };
        (*n)++;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) {
        free(s);
        *n = 0;
        return rc == STORE_ECORRUPT ? rc : STORE_EIO;
    }
    *out = s;
    return STORE_OK;
}

static int sdir_put(MDB_txn *txn, const struct index_dbs *dbs, const struct ix_seg *s)
{
    unsigned char kb[4], vb[IX_SDIR_LEN] = { 0 };
    put_be32(kb, s->id);
    vb[4] = (unsigned char)s->level;
    put_be64(vb + 8, s->lo);
    put_be64(vb + 16, s->hi);
    put_be32(vb, crc32c(0, vb + 4, IX_SDIR_LEN - 4));
    MDB_val k = { 4, kb }, v = { IX_SDIR_LEN, vb };
    return mdb_put(txn, dbs->dbi[DBI_SDIR], &k, &v, 0);
}

static int next_id(MDB_txn *txn, const struct index_dbs *dbs, uint32_t *id)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbs->dbi[DBI_SDIR], &c);
    if (rc)
        return rc;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *id = 1;
        return 0;
    }
    if (rc)
        return rc;
    if (k.mv_size != 4 || get_be32(k.mv_data) == UINT32_MAX)
        return MDB_CORRUPTED;
    *id = get_be32(k.mv_data) + 1;
    return 0;
}

/* ---- writer: one new segment, lists appended in key order ---- */

struct segw {
    MDB_cursor *cur;
    struct ix_seg seg;
    bool any;
};

static int segw_open(MDB_txn *txn, const struct index_dbs *dbs, unsigned level, struct segw *w,
                     const char **err)
{
    memset(w, 0, sizeof *w);
    int rc = next_id(txn, dbs, &w->seg.id);
    if (!rc)
        rc = mdb_cursor_open(txn, dbs->dbi[DBI_L0 + level], &w->cur);
    if (rc)
        return store_mdb_err(rc, "writing the text index", err);
    w->seg.level = level;
    return STORE_OK;
}

/* m[0..cnt): increasing msgnums of one (field, trigram). New ids are the
 * largest of the level's database, so every block is an append. */
static int segw_list(struct segw *w, uint32_t ftkey, const struct ix_ent *m, size_t cnt,
                     const char **err)
{
    unsigned char ft[4], key[IX_KEYLEN], val[VAL_MAX];
    put_be32(ft, ftkey);
    uint64_t lo = m[0].msgnum, hi = m[cnt - 1].msgnum;
    if (is_gram(ft[0])) {
        /* the segment's range is of plain msgnums */
        lo = UINT64_MAX;
        hi = 0;
        for (size_t i = 0; i < cnt; i++) {
            uint64_t x = m[i].msgnum & IX_GRAM_MSGMASK;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
    }
    if (!w->any || lo < w->seg.lo)
        w->seg.lo = lo;
    if (!w->any || hi > w->seg.hi)
        w->seg.hi = hi;
    w->any = true;
    for (size_t i = 0; i < cnt;) {
        unsigned mk = is_gram(ft[0]) ? 0 : 1;
        size_t take = block_take(m + i, cnt - i, mk);
        size_t len = block_encode(m + i, take, mk, val);
        make_key(key, w->seg.id, ft, m[i].msgnum);
        MDB_val k = { IX_KEYLEN, key }, v = { len, val };
        int rc = mdb_cursor_put(w->cur, &k, &v, MDB_APPEND);
        if (rc)
            return store_mdb_err(rc, "writing the text index", err);
        i += take;
    }
    return STORE_OK;
}

static int segw_close(MDB_txn *txn, const struct index_dbs *dbs, struct segw *w, const char **err)
{
    mdb_cursor_close(w->cur);
    w->cur = NULL;
    if (!w->any)
        return STORE_OK;
    int rc = sdir_put(txn, dbs, &w->seg);
    return rc ? store_mdb_err(rc, "writing the text index", err) : STORE_OK;
}

int ixs_write_level0(MDB_txn *txn, const struct index_dbs *dbs, const struct ix_pend *p,
                     size_t n, const char **err)
{
    if (n == 0)
        return STORE_OK;
    struct segw w;
    int rc = segw_open(txn, dbs, 0, &w, err);
    if (rc)
        return rc;
    struct ix_ent *m = malloc(n * sizeof *m);
    if (!m) {
        mdb_cursor_close(w.cur);
        *err = "out of memory writing the text index";
        return STORE_EIO;
    }
    for (size_t i = 0; i < n && rc == STORE_OK;) {
        size_t c = 0, j = i;
        for (; j < n && p[j].key == p[i].key; j++)
            m[c++] = (struct ix_ent){ p[j].msgnum, p[j].mask };
        rc = segw_list(&w, p[i].key, m, c, err);
        i = j;
    }
    free(m);
    if (rc) {
        mdb_cursor_close(w.cur);
        return rc;
    }
    return segw_close(txn, dbs, &w, err);
}

/* ---- merges ---- */

static int entcmp(const void *a, const void *b)
{
    uint64_t x = ((const struct ix_ent *)a)->msgnum, y = ((const struct ix_ent *)b)->msgnum;
    return x < y ? -1 : x > y;
}

struct head {
    MDB_cursor *c;
    uint32_t id;
    MDB_val k, v;
    bool live;
};

static void head_check(struct head *h, int rc)
{
    h->live = rc == 0 && h->k.mv_size == IX_KEYLEN && get_be32(h->k.mv_data) == h->id;
}

/* Merge every segment of `level` (seg[0..n), sorted by lo) into one segment
 * of level + 1, then empty the level's database: a k-way merge by
 * (field, trigram), each list read block by block and written as appends. */
static int merge_level(MDB_txn *txn, const struct index_dbs *dbs, unsigned level,
                       const struct ix_seg *seg, size_t n, const char **err)
{
    struct head *h = calloc(n, sizeof *h);
    struct ix_ent *m = NULL, ent[IX_BLOCK_MAX_ENTRIES];
    size_t mcap = 0, read = 0;
    struct segw w;
    int rc = h ? segw_open(txn, dbs, level + 1, &w, err) : STORE_EIO;
    if (rc) {
        free(h);
        if (rc == STORE_EIO && !h)
            *err = "out of memory merging the text index";
        return rc;
    }
    for (size_t i = 0; i < n && rc == STORE_OK; i++) {
        unsigned char key[IX_KEYLEN] = { 0 };
        h[i].id = seg[i].id;
        put_be32(key, seg[i].id);
        h[i].k = (MDB_val){ IX_KEYLEN, key };
        if ((rc = mdb_cursor_open(txn, dbs->dbi[DBI_L0 + level], &h[i].c))) {
            rc = store_mdb_err(rc, "merging the text index", err);
            break;
        }
        int r = mdb_cursor_get(h[i].c, &h[i].k, &h[i].v, MDB_SET_RANGE);
        if (r && r != MDB_NOTFOUND)
            rc = store_mdb_err(r, "merging the text index", err);
        head_check(&h[i], r);
    }
    while (rc == STORE_OK) {
        const unsigned char *min = NULL;
        for (size_t i = 0; i < n; i++)
            if (h[i].live && (!min || memcmp((unsigned char *)h[i].k.mv_data + 4, min, 4) < 0))
                min = (unsigned char *)h[i].k.mv_data + 4;
        if (!min)
            break;
        unsigned char ft[4];
        memcpy(ft, min, 4);
        size_t c = 0;
        bool sorted = true;
        for (size_t i = 0; i < n && rc == STORE_OK; i++) {
            while (h[i].live && memcmp((unsigned char *)h[i].k.mv_data + 4, ft, 4) == 0) {
                size_t bn;
                if (block_decode(h[i].k.mv_data, &h[i].v, ent, &bn)) {
                    *err = corrupt_msg;
                    rc = STORE_ECORRUPT;
                    break;
                }
                if (c + bn > mcap) {
                    size_t nc = mcap ? mcap * 2 : 4096;
                    while (nc < c + bn)
                        nc *= 2;
                    struct ix_ent *nm = realloc(m, nc * sizeof *nm);
                    if (!nm) {
                        *err = "out of memory merging the text index";
                        rc = STORE_EIO;
                        break;
                    }
                    m = nm;
                    mcap = nc;
                }
                if (c && ent[0].msgnum <= m[c - 1].msgnum)
                    sorted = false;
                memcpy(m + c, ent, bn * sizeof *ent);
                c += bn;
                read += h[i].k.mv_size + h[i].v.mv_size;
                int r = mdb_cursor_get(h[i].c, &h[i].k, &h[i].v, MDB_NEXT);
                if (r && r != MDB_NOTFOUND) {
                    rc = store_mdb_err(r, "merging the text index", err);
                    break;
                }
                head_check(&h[i], r);
            }
        }
        if (rc)
            break;
        if (!sorted) {
            /* overlapping segments (reindex order): sort, drop repeats */
            qsort(m, c, sizeof *m, entcmp);
            size_t u = 0;
            for (size_t x = 0; x < c; x++) {
                if (u > 0 && m[u - 1].msgnum == m[x].msgnum)
                    m[u - 1].mask |= m[x].mask;
                else
                    m[u++] = m[x];
            }
            c = u;
        }
        rc = segw_list(&w, get_be32(ft), m, c, err);
        if (read > RELEASE_EVERY && dbs->release_map) {
            /* the heads' k/v point into the map: they fault back in */
            dbs->release_map(dbs->release_ctx);
            read = 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (h[i].c)
            mdb_cursor_close(h[i].c);
    free(h);
    free(m);
    if (rc) {
        mdb_cursor_close(w.cur);
        return rc;
    }
    if ((rc = segw_close(txn, dbs, &w, err)))
        return rc;
    /* every segment of the level was merged: empty its database at once
     * (frees its pages without touching each key) */
    int r = mdb_drop(txn, dbs->dbi[DBI_L0 + level], 0);
    for (size_t i = 0; i < n && !r; i++) {
        unsigned char kb[4];
        put_be32(kb, seg[i].id);
        MDB_val k = { 4, kb };
        r = mdb_del(txn, dbs->dbi[DBI_SDIR], &k, NULL);
    }
    return r ? store_mdb_err(r, "merging the text index", err) : STORE_OK;
}

static int seg_cmp_lo(const void *a, const void *b)
{
    const struct ix_seg *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return seg_cmp_id(a, b);
}

int ixs_compact(MDB_txn *txn, const struct index_dbs *dbs, const char **err)
{
    static const size_t fanout[IX_LEVELS - 1] = { IX_FANOUT0, IX_FANOUT1 };
    for (unsigned level = 0; level + 1 < IX_LEVELS; level++) {
        struct ix_seg *s, *sel;
        size_t n, k = 0;
        int rc = ixs_load(txn, dbs, &s, &n);
        if (rc) {
            *err = rc == STORE_ECORRUPT ? "corrupt text index directory (run `coffer reindex`)"
                                        : "cannot read the text index";
            return rc;
        }
        sel = s;
        for (size_t i = 0; i < n; i++)
            if (s[i].level == level)
                sel[k++] = s[i];
        if (k >= fanout[level]) {
            qsort(sel, k, sizeof *sel, seg_cmp_lo);
            rc = merge_level(txn, dbs, level, sel, k, err);
        }
        free(s);
        if (rc)
            return rc;
        if (k < fanout[level])
            break;
    }
    return STORE_OK;
}

/* ---- removal (purge, partial reindex: rare and offline) ---- */

int ixs_remove(MDB_txn *txn, const struct index_dbs *dbs, uint64_t msgnum, const char **err)
{
    struct ix_ent ent[IX_BLOCK_MAX_ENTRIES];
    for (unsigned level = 0; level < IX_LEVELS; level++) {
        MDB_cursor *cur;
        MDB_dbi dbi = dbs->dbi[DBI_L0 + level];
        int rc = mdb_cursor_open(txn, dbi, &cur);
        if (rc)
            return store_mdb_err(rc, "updating the text index", err);
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == 0) {
            unsigned char key[IX_KEYLEN];
            size_t n;
            if (k.mv_size != IX_KEYLEN || block_decode(k.mv_data, &v, ent, &n)) {
                mdb_cursor_close(cur);
                *err = corrupt_msg;
                return STORE_ECORRUPT;
            }
            memcpy(key, k.mv_data, IX_KEYLEN);
            unsigned field = key[4];
            uint64_t orig_last = ent[n - 1].msgnum;
            size_t u = n;
            if (is_gram(field) || (msgnum >= ent[0].msgnum && msgnum <= orig_last)) {
                u = 0;              /* a gram bucket may hold it once per tag */
                for (size_t i = 0; i < n; i++)
                    if (ent_msg(field, ent[i].msgnum) != msgnum)
                        ent[u++] = ent[i];
            }
            if (u == n) {
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
                continue;
            }
            if ((rc = mdb_cursor_del(cur, 0)))
                break;
            if (u > 0) {
                unsigned char val[VAL_MAX];
                size_t len = block_encode(ent, u, is_gram(field) ? 0 : 1, val);
                put_be64(key + 8, ent[0].msgnum);
                MDB_val nk = { IX_KEYLEN, key }, nv = { len, val };
                if ((rc = mdb_put(txn, dbi, &nk, &nv, 0)))
                    break;
            }
            /* continue after the rewritten block */
            put_be64(key + 8, orig_last + 1);
            k = (MDB_val){ IX_KEYLEN, key };
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND)
            return store_mdb_err(rc, "updating the text index", err);
    }
    return STORE_OK;
}

/* ---- verify ---- */

long ixs_verify(MDB_txn *txn, const struct index_dbs *dbs,
                void (*report)(void *ctx, const char *msg), void *ctx)
{
    long bad = 0;
    char msg[200];
    struct ix_seg *s;
    size_t ns;
    int rc = ixs_load(txn, dbs, &s, &ns);
    if (rc) {
        report(ctx, "text index: corrupt or unreadable segment directory");
        return 1;
    }
    struct ix_ent ent[IX_BLOCK_MAX_ENTRIES];
    for (unsigned level = 0; level < IX_LEVELS; level++) {
        MDB_cursor *cur;
        if (mdb_cursor_open(txn, dbs->dbi[DBI_L0 + level], &cur)) {
            report(ctx, "text index: cannot open a postings database");
            bad++;
            continue;
        }
        MDB_val k, v;
        unsigned char prev[8] = { 0 };
        uint64_t prev_last = 0;
        bool have_prev = false;
        const struct ix_seg *sg = NULL;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const unsigned char *kp = k.mv_data;
            size_t n;
            if (k.mv_size != IX_KEYLEN || kp[4] >= IX_GRAM_FIELD(IX_NFIELDS) ||
                (is_gram(kp[4]) && kp[7] != 0)) {
                bad++;
                report(ctx, "text index: malformed posting key");
                continue;
            }
            uint32_t id = get_be32(kp);
            if (!sg || sg->id != id) {
                struct ix_seg key = { .id = id };
                sg = bsearch(&key, s, ns, sizeof *s, seg_cmp_id);
            }
            if (!sg || sg->level != level) {
                bad++;
                snprintf(msg, sizeof msg, "text index: posting block of unknown segment %u",
                         (unsigned)id);
                report(ctx, msg);
                continue;
            }
            if (block_decode(kp, &v, ent, &n)) {
                bad++;
                snprintf(msg, sizeof msg,
                         "text index: corrupt posting block (segment %u, field %u, trigram "
                         "%02x%02x%02x, msgnum %llu)", (unsigned)id, kp[4], kp[5], kp[6], kp[7],
                         (unsigned long long)get_be64(kp + 8));
                report(ctx, msg);
                have_prev = false;
                continue;
            }
            bool out = false;
            for (size_t i = 0; i < n && !out; i++)
                out = ent_msg(kp[4], ent[i].msgnum) < sg->lo ||
                      ent_msg(kp[4], ent[i].msgnum) > sg->hi;
            if ((have_prev && memcmp(prev, kp, 8) == 0 && ent[0].msgnum <= prev_last) || out) {
                bad++;
                report(ctx, "text index: posting block out of its segment's order or range");
            }
            memcpy(prev, kp, 8);
            prev_last = ent[n - 1].msgnum;
            have_prev = true;
        }
        mdb_cursor_close(cur);
    }
    free(s);
    return bad;
}

/* ---- reader ---- */

int ix_cursor_open(MDB_txn *txn, const struct index_dbs *dbs, int field,
                   const unsigned char tri[3], struct ix_cursor *c)
{
    memset(c, 0, sizeof *c);
    c->ft[0] = (unsigned char)field;
    memcpy(c->ft + 1, tri, 3);
    c->bseg = SIZE_MAX;
    if (dbs->n < IX_NDBI)
        return STORE_EIO;
    int rc = ixs_load(txn, dbs, &c->seg, &c->nseg);
    if (rc)
        return rc;
    if (c->nseg > 1)
        qsort(c->seg, c->nseg, sizeof *c->seg, seg_cmp_lo);
    for (unsigned l = 0; l < IX_LEVELS; l++)
        if (mdb_cursor_open(txn, dbs->dbi[DBI_L0 + l], &c->cur[l])) {
            ix_cursor_close(c);
            return STORE_EIO;
        }
    return STORE_OK;
}

int ix_cursor_open_gram(MDB_txn *txn, const struct index_dbs *dbs, int field, uint32_t hash,
                        struct ix_cursor *c)
{
    unsigned char b[3] = { (unsigned char)(hash >> 16), (unsigned char)(hash >> 8), 0 };
    int rc = ix_cursor_open(txn, dbs, IX_GRAM_FIELD(field), b, c);
    c->gram = true;
    c->tag = (uint64_t)(hash & 0xFF) << IX_GRAM_TAGSHIFT;
    return rc;
}

void ix_cursor_close(struct ix_cursor *c)
{
    for (unsigned l = 0; l < IX_LEVELS; l++)
        if (c->cur[l])
            mdb_cursor_close(c->cur[l]);
    memset(c->cur, 0, sizeof c->cur);
    free(c->seg);
    c->seg = NULL;
    c->nseg = 0;
}

static bool same_list(const struct ix_cursor *c, uint32_t id, const MDB_val *k)
{
    return k->mv_size == IX_KEYLEN && get_be32(k->mv_data) == id &&
           memcmp((unsigned char *)k->mv_data + 4, c->ft, 4) == 0;
}

static int load(struct ix_cursor *c, size_t si, const MDB_val *k, const MDB_val *v, bool at)
{
    c->bseg = SIZE_MAX;
    c->at_block = false;
    if (block_decode(k->mv_data, v, c->ent, &c->n))
        return STORE_ECORRUPT;
    c->pos = 0;
    c->bseg = si;
    c->at_block = at;
    return STORE_OK;
}

/* The target lies past the decoded block of segment si: most often in the
 * next block of the list (a dense list read in order), which MDB_NEXT
 * reaches without a descent from the root. 1: loaded and it covers the
 * target; 0: not there (seek instead); -1 the list ended (*done). */
static int next_block(struct ix_cursor *c, size_t si, uint64_t target, bool *done)
{
    struct ix_seg *s = &c->seg[si];
    MDB_val k, v;
    *done = false;
    int rc = mdb_cursor_get(c->cur[s->level], &k, &v, MDB_NEXT);
    if (rc && rc != MDB_NOTFOUND)
        return STORE_EIO;
    if (rc == MDB_NOTFOUND || !same_list(c, s->id, &k)) {
        *done = true;
        return 0;
    }
    if (load(c, si, &k, &v, true))
        return STORE_ECORRUPT;
    return c->ent[c->n - 1].msgnum >= target;
}

/* Smallest posting >= target in segment si: 1 with *out and its *mask,
 * 0 none left. */
static int seg_seek(struct ix_cursor *c, size_t si, uint64_t target, uint64_t *out,
                    uint8_t *mask)
{
    struct ix_seg *s = &c->seg[si];
    int near = 0;
    if (c->bseg == si && c->at_block && c->ent[c->n - 1].msgnum < target) {
        bool done;
        near = next_block(c, si, target, &done);
        if (near < 0)
            return near;
        if (done) {
            s->done = true;
            c->bseg = SIZE_MAX;
            return 0;
        }
    }
    if (!near && (c->bseg != si || c->ent[c->n - 1].msgnum < target)) {
        MDB_cursor *mc = c->cur[s->level];
        unsigned char key[IX_KEYLEN];
        make_key(key, s->id, c->ft, target);
        MDB_val k = { IX_KEYLEN, key }, v;
        int rc = mdb_cursor_get(mc, &k, &v, MDB_SET_RANGE);
        if (rc && rc != MDB_NOTFOUND)
            return STORE_EIO;
        bool exact = rc == 0 && same_list(c, s->id, &k) &&
                     get_be64((unsigned char *)k.mv_data + 8) == target;
        bool loaded = false;
        if (!exact) {
            /* the block before may still cover target */
            MDB_val pk, pv;
            int prc = mdb_cursor_get(mc, &pk, &pv, rc == 0 ? MDB_PREV : MDB_LAST);
            if (prc == 0 && same_list(c, s->id, &pk)) {
                if (load(c, si, &pk, &pv, true))
                    return STORE_ECORRUPT;
                loaded = c->ent[c->n - 1].msgnum >= target;
            } else if (prc && prc != MDB_NOTFOUND) {
                return STORE_EIO;
            }
        }
        if (!loaded) {
            /* k, v from SET_RANGE stay valid: nothing writes meanwhile */
            if (rc == MDB_NOTFOUND || !same_list(c, s->id, &k)) {
                s->done = true;
                c->bseg = SIZE_MAX;
                return 0;
            }
            /* the cursor is on the block before (or on k when exact) */
            if (load(c, si, &k, &v, exact))
                return STORE_ECORRUPT;
        }
    }
    /* the first entry >= target, from pos: gallop, then bisect (a join
     * mostly moves a few entries at a time) */
    size_t lo = c->pos, hi = c->n;
    if (lo < hi && c->ent[lo].msgnum < target) {
        size_t b = lo, step = 1;              /* ent[b] < target */
        while (b + step < c->n && c->ent[b + step].msgnum < target) {
            b += step;
            step <<= 1;
        }
        lo = b + 1;
        hi = b + step < c->n ? b + step : c->n;   /* ent[hi] >= target, if any */
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->ent[mid].msgnum < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    c->pos = lo;
    if (lo >= c->n) {
        s->done = true;     /* cannot happen: the block's last is >= target */
        return 0;
    }
    *out = c->ent[lo].msgnum;
    *mask = c->ent[lo].mask;
    return 1;
}

int ix_cursor_seek(struct ix_cursor *c, uint64_t target, uint64_t *out)
{
    if (c->end)
        return 0;
    /* Segments are sorted by lo and usually disjoint (one import appends
     * increasing msgnums), so this touches one segment; overlapping ones
     * (reindex order) are handled by taking the minimum. */
    while (c->first < c->nseg && (c->seg[c->first].done || c->seg[c->first].hi < target))
        c->first++;
    uint64_t best = UINT64_MAX;
    uint8_t best_mask = 0;
    for (size_t i = c->first; i < c->nseg; i++) {
        struct ix_seg *s = &c->seg[i];
        if (s->lo >= best)
            break;
        if (s->done || s->hi < target)
            continue;
        uint64_t v;
        uint8_t mk;
        int r = seg_seek(c, i, c->tag | target, &v, &mk);
        if (r < 0)
            return r;
        if (r == 1 && c->gram) {
            if ((v & ~IX_GRAM_MSGMASK) != c->tag) {
                s->done = true;       /* past this gram's run in the bucket */
                continue;
            }
            v &= IX_GRAM_MSGMASK;
        }
        if (r == 1 && v < best)
            best = v, best_mask = mk;
        else if (r == 1 && v == best)
            best_mask |= mk;        /* overlapping segments */
        if (best == target)
            break;
    }
    if (best == UINT64_MAX) {
        c->end = true;
        return 0;
    }
    *out = best;
    c->mask = best_mask;
    return 1;
}
