/* chunk.c — content-defined chunking and the content-keyed chunk store.
 *
 * A message's raw octets are cut into chunks: after the header, at the
 * start and end of every large leaf body (so an attachment that recurs in
 * other messages dedups from its first octet, and a FETCH of one part
 * decompresses only the frames covering it), and inside long spans at
 * content-defined points (a gear hash over the last 64 octets), so that the
 * same octets recurring at another offset, with other octets before them,
 * are cut the same way after the first cut. Each chunk is stored once per
 * instance: cref maps its SHA-256 to a dense chunk id and its refcount, and
 * chunk holds the zstd frame under that id. Why two databases: bumping a
 * refcount rewrites a 28-octet record, not the frame's overflow pages
 * (LMDB copies a changed value whole); frames are appended in id order,
 * so their pages are full and a commit rewrites only the right edge of the
 * tree (random 32-octet keys left leaf pages about 2/3 full and freed
 * pages on every batch: data.mdb of the real corpus 41 MB instead of 33);
 * and chunk tables hold 8-octet ids instead of 32-octet hashes. */
#include "store/admin.h"
#include "store/b64chunk.h"
#include "store/store_int.h"
#include "proto/msginfo.h"
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_ZSTD_LITERAL_MODE
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_c_literalCompressionMode, see rawlit_cctx */
#endif
#include <zstd.h>

#define ZSTD_LEVEL 3

/* A context for small text frames: literals stored raw, not Huffman-coded.
 * Why: a folder open (HEADER.FIELDS over 1:*) decompresses one ~1.8 KiB
 * header frame per message, and BODY.PEEK[1] one small text frame; for
 * frames that small building the literals' Huffman table is most of
 * zstd's decode work. Raw literals cut the instructions per message of a
 * folder open by 36 % and of BODY.PEEK[1] by 40 %, for a larger stored
 * size (docs/BENCHMARKS.md, Import). Any decoder reads such a frame. The
 * parameter is experimental: its enum value may mean something else in
 * another libzstd, so it is set only when the library is the version of
 * the zstd.h we were compiled against; otherwise (or if zstd refuses it)
 * NULL, and these frames are compressed like the others.
 * COFFER_BENCH_HUFFMAN_ONLY=1 compresses every frame as before (Huffman
 * literals): benchmarks only, to compare the two. */
static ZSTD_CCtx *rawlit_cctx(void)
{
    static ZSTD_CCtx *c;
    static int tried;
    if (tried)
        return c;
    tried = 1;
#ifdef HAVE_ZSTD_LITERAL_MODE
    if (ZSTD_versionNumber() != ZSTD_VERSION_NUMBER || getenv("COFFER_BENCH_HUFFMAN_ONLY"))
        return NULL;
    if (!(c = ZSTD_createCCtx()))
        return NULL;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_literalCompressionMode, ZSTD_ps_disable))) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
#endif
    return c;
}

/* CHUNK_SMALL (header) and CHUNK_SMALL_TEXT (small text) store a chunk
 * uncompressed when its raw-literal frame would keep more than this
 * fraction of its octets: little storage lost, no zstd on the read.
 * Chosen on gen-corpus and the real corpus (docs/BENCHMARKS.md, Session 3
 * (FETCHCPU)): storing all of them took the real corpus' stored/raw from
 * 0.461 to 0.617; these give 0.502. COFFER_BENCH_STORE_KEEP=F and
 * COFFER_BENCH_STORE_KEEP_TEXT=F override them: benchmarks only. */
#define STORE_KEEP 0.70
#define STORE_KEEP_TEXT 0.50
static double store_keep(bool text)
{
    static double v[2] = {-1, -1};
    if (v[text] < 0) {
        const char *e = getenv(text ? "COFFER_BENCH_STORE_KEEP_TEXT" : "COFFER_BENCH_STORE_KEEP");
        v[text] = e ? atof(e) : text ? STORE_KEEP_TEXT : STORE_KEEP;
        if (v[text] < 0)
            v[text] = 0;
    }
    return v[text];
}

/* Chosen by measurement on a 20,000-message gen-corpus mbox and on the
 * real corpus (docs/BENCHMARKS.md, Import): smaller chunks find more
 * shared octets at the edges of recurring data, larger ones compress text
 * better and cost fewer records. Changing them is safe (readers follow the
 * chunk table) but chunks cut with other parameters no longer dedup
 * against the old ones. */
const struct cdc_params store_cdc = {
    .min = 2048, .avg = 8192, .max = 65536,
};

/* COFFER_BENCH_CDC=min,avg,max overrides the parameters: benchmarks only
 * (docs/BENCHMARKS.md compares settings with it). */
const struct cdc_params *store_cdc_params(void)
{
    static struct cdc_params p;
    static int ready;
    if (!ready) {
        const char *e = getenv("COFFER_BENCH_CDC");
        unsigned long a, b, c;
        p = store_cdc;
        if (e && sscanf(e, "%lu,%lu,%lu", &a, &b, &c) == 3 && a >= 64 && a < b && b < c &&
            c <= STORE_CHUNK && !(b & (b - 1)))
            p = (struct cdc_params){.min = a, .avg = b, .max = c};
        ready = 1;
    }
    return &p;
}

/* Spans shorter than this are not cut by content: a small body or header
 * stays one frame (it compresses better whole). */
#define CDC_SPAN_MIN (16u * 1024u)

/* The gear table: 256 fixed pseudo-random words (splitmix64 from a fixed
 * seed). It must never change: it defines where chunks are cut, and so
 * which chunks of a new message equal stored ones. */
static uint64_t gear[256];
static int gear_ready;

static void gear_init(void)
{
    uint64_t x = 0x636f66666572ull;   /* "coffer" */
    for (int i = 0; i < 256; i++) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        gear[i] = z ^ (z >> 31);
    }
    gear_ready = 1;
}

static unsigned log2_floor(size_t v)
{
    unsigned b = 0;
    while (v >>= 1)
        b++;
    return b;
}

/* Normalised chunking (after FastCDC): a stricter test before the average
 * size and a looser one after it keep chunk sizes close to the average.
 * The hash of position i depends on octets i-63..i only (each step shifts
 * one bit out), so the warm-up starts 64 octets before the minimum and a
 * cut depends on nothing before it: that is what resynchronises two
 * streams after an insertion. The high bits are tested: they depend on
 * the most octets. */
size_t cdc_cut(const unsigned char *p, size_t n, const struct cdc_params *c)
{
    if (n <= c->min)
        return n;
    if (!gear_ready)
        gear_init();
    size_t lim = n < c->max ? n : c->max;
    size_t mid = c->avg < lim ? c->avg : lim;
    unsigned bits = log2_floor(c->avg);
    uint64_t mask_s = ~0ull << (64 - (bits + 1)), mask_l = ~0ull << (64 - (bits - 1));
    uint64_t h = 0;
    size_t i = c->min > 64 ? c->min - 64 : 0;
    for (; i < c->min; i++)
        h = (h << 1) + gear[p[i]];
    for (; i < mid; i++) {
        h = (h << 1) + gear[p[i]];
        if (!(h & mask_s))
            return i + 1;
    }
    for (; i < lim; i++) {
        h = (h << 1) + gear[p[i]];
        if (!(h & mask_l))
            return i + 1;
    }
    return lim;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Canonical offsets t[0..nt) (sorted) -> raw offsets, in place. The
 * canonical form inserts a CR before every bare LF, so within one raw line
 * the two advance together; an offset that falls between an inserted CR
 * and its LF maps to the LF. */
static void canon_to_raw(const unsigned char *raw, size_t len, uint64_t *t, size_t nt)
{
    size_t r = 0, k = 0;
    uint64_t c = 0;
    while (k < nt) {
        const unsigned char *nl = r < len ? memchr(raw + r, '\n', len - r) : NULL;
        size_t lf = nl ? (size_t)(nl - raw) : len;
        for (; k < nt && (t[k] <= c + (lf - r) || !nl); k++) {
            uint64_t x = t[k] > c ? r + (t[k] - c) : r;
            t[k] = x < len ? x : len;
        }
        if (!nl)
            break;
        int bare = lf == 0 || raw[lf - 1] != '\r';
        c += (lf - r) + 1 + (uint64_t)bare;
        r = lf + 1;
    }
}

int chunk_plan(const unsigned char *raw, size_t len, size_t hdr_len, const struct msginfo *mi,
               const struct cdc_params *c, size_t **cuts_out, size_t *ncuts_out)
{
    uint32_t np = mi ? mi->nparts : 0;
    /* forced cuts: the header end, two per large leaf, and len */
    uint64_t *f = malloc(((size_t)np * 2 + 2) * sizeof *f);
    if (!f)
        return STORE_EIO;
    size_t nf = 0;
    for (uint32_t i = 0; i < np; i++) {
        struct msginfo_part pt;
        if (msginfo_part(mi, i, &pt) ||
            (pt.type != MSGINFO_T_TEXT && pt.type != MSGINFO_T_OTHER) ||
            pt.body_len < STORE_PART_CUT)
            continue;
        f[nf++] = pt.body_off;
        f[nf++] = pt.body_off + pt.body_len;
    }
    if (nf) {
        qsort(f, nf, sizeof *f, cmp_u64);
        canon_to_raw(raw, len, f, nf);
    }
    if (hdr_len)
        f[nf++] = hdr_len;
    f[nf++] = len;
    qsort(f, nf, sizeof *f, cmp_u64);
    /* Every cut is at least min apart from the previous one, except
     * forced ones; the worst case is one cut per min octets plus the
     * forced cuts. */
    size_t cap = len / (c->min ? c->min : 1) + nf + 2;
    size_t *cuts = malloc(cap * sizeof *cuts), n = 0;
    if (!cuts) {
        free(f);
        return STORE_EIO;
    }
    size_t s = 0;
    for (size_t i = 0; i < nf; i++) {
        size_t e = (size_t)f[i];
        if (e <= s)
            continue;            /* duplicate or empty span */
        /* the header stays one frame: a folder open decompresses it alone */
        if ((e - s < CDC_SPAN_MIN && e - s <= c->max) || (s == 0 && e == hdr_len)) {
            cuts[n++] = e;
        } else {
            while (s < e && n < cap) {
                s += cdc_cut(raw + s, e - s, c);
                cuts[n++] = s;
            }
        }
        s = e;
    }
    free(f);
    if (n ? cuts[n - 1] != len : len != 0) {   /* cannot happen: cap covers every cut */
        free(cuts);
        return STORE_EINVAL;
    }
    *cuts_out = cuts;
    *ncuts_out = n;
    return STORE_OK;
}

int cref_decode(const void *data, size_t len, struct cref *c)
{
    const unsigned char *b = data;
    if (len != CREF_REC_LEN || get_be32(b + 24) != crc32c(0, b, 24))
        return STORE_ECORRUPT;
    c->id = get_be64(b);
    c->refcount = get_be64(b + 8);
    c->raw_len = get_be32(b + 16);
    c->stored_len = get_be32(b + 20);
    return STORE_OK;
}

void cref_encode(unsigned char b[CREF_REC_LEN], const struct cref *c)
{
    put_be64(b, c->id);
    put_be64(b + 8, c->refcount);
    put_be32(b + 16, c->raw_len);
    put_be32(b + 20, c->stored_len);
    put_be32(b + 24, crc32c(0, b, 24));
}

/* A zstd frame that stores src[0..n) uncompressed: frame header (single
 * segment, 4-octet content size, no checksum: the chunk record has its
 * own CRC-32C) and raw blocks of at most ZSTD_BLOCKSIZE_MAX octets. It is
 * an ordinary frame (RFC 8878 3.1.1), so every reader and every zstd
 * decoder reads it; cofferd serves a one-block frame straight from the map
 * (chunk_view), without decompressing or copying. Returns the frame
 * length; cap must be at least CHUNK_STORED_BOUND(n). */
#define ZBLOCK_MAX (128u * 1024u)
#define CHUNK_STORED_HDR 9
#define CHUNK_STORED_BOUND(n) (CHUNK_STORED_HDR + 3 * ((n) / ZBLOCK_MAX + 1) + (n))
size_t chunk_stored_frame(unsigned char *f, const unsigned char *src, size_t n)
{
    f[0] = 0x28, f[1] = 0xB5, f[2] = 0x2F, f[3] = 0xFD;   /* magic, little-endian */
    f[4] = 0xA0;                  /* FCS field 4 octets, single segment */
    f[5] = (unsigned char)n, f[6] = (unsigned char)(n >> 8);
    f[7] = (unsigned char)(n >> 16), f[8] = (unsigned char)(n >> 24);
    size_t o = CHUNK_STORED_HDR, done = 0;
    do {
        size_t b = n - done < ZBLOCK_MAX ? n - done : ZBLOCK_MAX;
        uint32_t bh = (uint32_t)b << 3 | (done + b == n);   /* type 0 (raw), last flag */
        f[o] = (unsigned char)bh, f[o + 1] = (unsigned char)(bh >> 8);
        f[o + 2] = (unsigned char)(bh >> 16);
        if (b)
            memcpy(f + o + 3, src + done, b);
        o += 3 + b;
        done += b;
    } while (done < n);
    return o;
}

/* The decoded octets of a base64 chunk are kept as a zstd frame only when
 * it keeps at most this fraction of them (compressible attachments: text
 * documents, uncompressed images); otherwise as they are, and a read
 * re-encodes them straight from the map. COFFER_BENCH_B64_ZKEEP=F
 * overrides it, COFFER_BENCH_NO_B64=1 turns the form off: benchmarks only. */
#define B64_ZKEEP 0.90
static double b64_zkeep(void)
{
    static double v = -1;
    if (v < 0) {
        const char *e = getenv("COFFER_BENCH_B64_ZKEEP");
        v = e ? atof(e) : B64_ZKEEP;
        if (v < 0)
            v = 0;
    }
    return v;
}

static bool b64_enabled(void)
{
    static int v = -1;
    if (v < 0)
        v = !getenv("COFFER_BENCH_NO_B64");
    return v;
}

/* The base64 form of raw[0..n) (store/b64chunk.h) into f, or 0 when the
 * chunk is not one: header, prefix, suffix, then the decoded octets or a
 * zstd frame of them. f has room for n + B64C_HDR octets. */
static size_t b64_frame(ZSTD_CCtx *cctx, unsigned char *f, const unsigned char *raw, size_t n)
{
    static unsigned char *tmp, *z;
    static size_t zcap;
    if (!b64_enabled())
        return 0;
    if (!tmp) {
        zcap = ZSTD_compressBound(STORE_CHUNK);
        tmp = malloc(STORE_CHUNK);
        z = malloc(zcap);
        if (!tmp || !z) {
            free(tmp);
            free(z);
            tmp = z = NULL;
            return 0;                /* the chunk is stored as before */
        }
    }
    size_t ml, bl;
    if (b64c_pack(raw, n, f, tmp, &ml, &bl))
        return 0;
    size_t zl = ZSTD_compressCCtx(cctx, z, zcap, f + ml, bl, ZSTD_LEVEL);
    if (ZSTD_isError(zl) || (double)zl > b64_zkeep() * (double)bl)
        return ml + bl;
    memcpy(f + ml, z, zl);
    b64c_set_zstd(f);
    return ml + zl;
}

int chunk_ref(struct inst *in, const unsigned char *raw, size_t n, int how, uint64_t *id,
              uint32_t *stored, const char **err)
{
    static ZSTD_CCtx *cctx;
    static unsigned char *frame;
    static size_t frame_cap;
    if (n > STORE_CHUNK) {
        *err = "chunk larger than STORE_CHUNK";
        return STORE_EINVAL;
    }
    unsigned char key[CHUNK_KEY], rec[CREF_REC_LEN];
    SHA256(raw, n, key);
    MDB_val k = {CHUNK_KEY, key}, v;
    struct cref c;
    int mrc = mdb_get(in->wr, in->dbi[DB_CREF], &k, &v);
    if (mrc == 0) {
        if (cref_decode(v.mv_data, v.mv_size, &c) || c.raw_len != n) {
            *err = store_seterr("chunk reference record fails its CRC32C or length");
            return STORE_ECORRUPT;
        }
        c.refcount++;
        cref_encode(rec, &c);
        MDB_val rv = {sizeof rec, rec};
        if ((mrc = mdb_put(in->wr, in->dbi[DB_CREF], &k, &rv, 0)))
            return store_mdb_err(mrc, "chunk reference", err);
        *id = c.id;
        *stored = c.stored_len;
        return STORE_OK;
    }
    if (mrc != MDB_NOTFOUND)
        return store_mdb_err(mrc, "chunk reference", err);
    if (!cctx && !(cctx = ZSTD_createCCtx())) {
        *err = "out of memory";
        return STORE_EIO;
    }
    if (!frame) {
        frame_cap = CHUNK_VAL_HDR + ZSTD_compressBound(STORE_CHUNK);
        if (frame_cap < CHUNK_VAL_HDR + CHUNK_STORED_BOUND(STORE_CHUNK))
            frame_cap = CHUNK_VAL_HDR + CHUNK_STORED_BOUND(STORE_CHUNK);
        if (!(frame = malloc(frame_cap))) {
            *err = "out of memory";
            return STORE_EIO;
        }
    }
    ZSTD_CCtx *hc = how != CHUNK_Z ? rawlit_cctx() : NULL;
    /* attachments and large text chunks: base64 text is kept decoded when
     * it is one. Not the header, and not small text chunks: those are
     * stored as they are when they do not compress (base64 text parts),
     * and BODY.PEEK[1] then serves them from the map without re-encoding
     * (trying them cost it 12 % more instructions per message) */
    size_t z = how == CHUNK_Z || how == CHUNK_RAWLIT
                   ? b64_frame(cctx, frame + CHUNK_VAL_HDR, raw, n)
                   : 0;
    bool b64 = z != 0;
    if (!b64)
        z = how == CHUNK_STORED ? chunk_stored_frame(frame + CHUNK_VAL_HDR, raw, n)
               : hc ? ZSTD_compress2(hc, frame + CHUNK_VAL_HDR, frame_cap - CHUNK_VAL_HDR, raw, n)
                    : ZSTD_compressCCtx(cctx, frame + CHUNK_VAL_HDR, frame_cap - CHUNK_VAL_HDR,
                                        raw, n, ZSTD_LEVEL);
    /* CHUNK_SMALL: stored when compression keeps more than store_keep()
     * of the octets (it saves little, and a stored frame is served from
     * the map without zstd); otherwise the raw-literal frame */
    if ((how == CHUNK_SMALL || how == CHUNK_SMALL_TEXT) && !b64 && !ZSTD_isError(z) &&
        (double)z > store_keep(how == CHUNK_SMALL_TEXT) * (double)n)
        z = chunk_stored_frame(frame + CHUNK_VAL_HDR, raw, n);
    if (ZSTD_isError(z)) {
        *err = store_seterr("zstd: %s", ZSTD_getErrorName(z));
        return STORE_EIO;
    }
    put_be32(frame, (uint32_t)n);
    put_be32(frame + 4, crc32c(0, raw, n));
    uint64_t next;
    if ((mrc = meta_get_u64(in, in->wr, "next_chunk", &next)))
        return store_mdb_err(mrc, "meta", err);
    if (!next)
        next = 1;
    unsigned char idk[8];
    put_be64(idk, next);
    MDB_val ik = {8, idk}, fv = {CHUNK_VAL_HDR + z, frame};
    /* ids only grow: appending fills pages and skips the tree search */
    mrc = mdb_put(in->wr, in->dbi[DB_CHUNK], &ik, &fv, MDB_APPEND);
    if (mrc == MDB_KEYEXIST) {
        *err = "chunk id counter is behind the stored chunks (run `coffer verify`)";
        return STORE_ECORRUPT;
    }
    if (mrc || (mrc = meta_put_u64(in, in->wr, "next_chunk", next + 1)))
        return store_mdb_err(mrc, "store chunk", err);
    c = (struct cref){.id = next, .refcount = 1, .raw_len = (uint32_t)n,
                      .stored_len = (uint32_t)z};
    cref_encode(rec, &c);
    MDB_val rv = {sizeof rec, rec};
    if ((mrc = mdb_put(in->wr, in->dbi[DB_CREF], &k, &rv, MDB_NOOVERWRITE)))
        return store_mdb_err(mrc, "chunk reference", err);
    *id = next;
    *stored = (uint32_t)z;
    return STORE_OK;
}

int inst_chunk_dbs(struct inst *in)
{
    if (in->have_chunks)
        return STORE_OK;
    if (in->wr || in->rd_active)
        return STORE_ECORRUPT;       /* writers created them; see below */
    /* A reader opened the env before a writer added the databases: open
     * them in a transaction of their own, so the handles outlive it. Only
     * between read transactions (inst_rd_begin): a transaction sees the
     * handles that existed when it began. */
    MDB_txn *t;
    if (store_txn_begin(in->env, true, &t))
        return STORE_EIO;
    int rc = mdb_dbi_open(t, store_db_names[DB_CHUNK], 0, &in->dbi[DB_CHUNK]);
    if (!rc)
        rc = mdb_dbi_open(t, store_db_names[DB_CREF], 0, &in->dbi[DB_CREF]);
    if (rc) {
        mdb_txn_abort(t);
        return STORE_ECORRUPT;
    }
    if (mdb_txn_commit(t))
        return STORE_EIO;
    in->have_chunks = true;
    return STORE_OK;
}

/* The octets of a one-raw-block frame (chunk_stored_frame), or NULL. */
static const unsigned char *stored_payload(const unsigned char *f, size_t flen, uint32_t raw_len)
{
    if (flen != (size_t)CHUNK_STORED_HDR + 3 + raw_len || raw_len > ZBLOCK_MAX ||
        f[0] != 0x28 || f[1] != 0xB5 || f[2] != 0x2F || f[3] != 0xFD || f[4] != 0xA0 ||
        (f[5] | f[6] << 8 | f[7] << 16 | (uint32_t)f[8] << 24) != raw_len)
        return NULL;
    uint32_t bh = f[9] | f[10] << 8 | (uint32_t)f[11] << 16;
    return bh == (raw_len << 3 | 1) ? f + CHUNK_STORED_HDR + 3 : NULL;
}

static int chunk_view_val(const unsigned char *b, uint32_t raw_len, uint32_t stored_len,
                          struct buf *scratch, const unsigned char **data);

/* The stored value of chunk id, its lengths checked. */
static int chunk_get(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len,
                     uint32_t stored_len, const unsigned char **val, const void **frame,
                     size_t *flen)
{
    if (!in->have_chunks)
        return STORE_ECORRUPT;       /* a version 2 record in a store without chunks */
    unsigned char key[8];
    put_be64(key, id);
    MDB_val k = {8, key}, v;
    int rc = store_get(in, txn, DB_CHUNK, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ECORRUPT;   /* a chunk table names it */
    if (rc)
        return store_mdb_err(rc, "chunk", NULL);
    const unsigned char *b = v.mv_data;
    if (frame) {
        *frame = b;
        *flen = v.mv_size;
    }
    if (v.mv_size != CHUNK_VAL_HDR + (size_t)stored_len || get_be32(b) != raw_len)
        return STORE_ECORRUPT;
    *val = b;
    return STORE_OK;
}

int chunk_view_canon(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len,
                     uint32_t stored_len, int prev_cr, unsigned char *canon, size_t canon_len,
                     struct buf *scratch, const unsigned char **data, const void **frame,
                     size_t *flen)
{
    const unsigned char *b = NULL;
    int rc = chunk_get(in, txn, id, raw_len, stored_len, &b, frame, flen);
    if (rc)
        return rc;
    if (!canon || !b64c_is(b + CHUNK_VAL_HDR, stored_len))
        return chunk_view_val(b, raw_len, stored_len, scratch, data);
    /* scratch only holds a zstd payload's decoded octets (3/4 of raw) */
    uint32_t crc;
    buf_reset(scratch);
    if (buf_reserve(scratch, raw_len ? raw_len : 1) ||
        b64c_unpack_canon(b + CHUNK_VAL_HDR, stored_len, raw_len, prev_cr, canon, canon_len,
                          scratch->data, store_dctx(), &crc) ||
        crc != get_be32(b + 4))
        return STORE_ECORRUPT;
    *data = NULL;
    return STORE_OK;
}

int chunk_view(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len, uint32_t stored_len,
               struct buf *scratch, const unsigned char **data, const void **frame, size_t *flen)
{
    return chunk_view_canon(in, txn, id, raw_len, stored_len, 0, NULL, 0, scratch, data, frame,
                            flen);
}

/* chunk_view's work once the value b (header included) is found. */
static int chunk_view_val(const unsigned char *b, uint32_t raw_len, uint32_t stored_len,
                          struct buf *scratch, const unsigned char **data)
{
    const unsigned char *p = stored_payload(b + CHUNK_VAL_HDR, stored_len, raw_len);
    size_t n = raw_len;
    if (!p && b64c_is(b + CHUNK_VAL_HDR, stored_len)) {
        /* the base64 form: re-encoded into scratch (a zstd payload is
         * decompressed into its tail first) */
        buf_reset(scratch);
        if (buf_reserve(scratch, raw_len ? raw_len : 1) ||
            b64c_unpack(b + CHUNK_VAL_HDR, stored_len, scratch->data, raw_len, store_dctx()))
            return STORE_ECORRUPT;
        scratch->len = raw_len;
        p = scratch->data;
    } else if (!p) {
        buf_reset(scratch);
        if (buf_reserve(scratch, raw_len ? raw_len : 1))
            return STORE_ECORRUPT;
        ZSTD_DCtx *dctx = (ZSTD_DCtx *)store_dctx();
        n = dctx ? ZSTD_decompressDCtx(dctx, scratch->data, raw_len, b + CHUNK_VAL_HDR, stored_len)
                 : ZSTD_decompress(scratch->data, raw_len, b + CHUNK_VAL_HDR, stored_len);
        if (ZSTD_isError(n) || n != raw_len)
            return STORE_ECORRUPT;
        scratch->len = n;
        p = scratch->data;
    }
    /* zstd frames carry no checksum of their content: a flipped literal
     * decodes "fine". The CRC32C of the raw chunk catches it. */
    if (crc32c(0, p, n) != get_be32(b + 4))
        return STORE_ECORRUPT;
    *data = p;
    return STORE_OK;
}

int chunk_load(struct inst *in, MDB_txn *txn, uint64_t id, uint32_t raw_len,
               uint32_t stored_len, struct buf *out, const void **frame, size_t *flen)
{
    const unsigned char *p;
    int rc = chunk_view(in, txn, id, raw_len, stored_len, out, &p, frame, flen);
    if (rc)
        return rc;
    if (p != out->data) {
        buf_reset(out);
        if (buf_append(out, p, raw_len))
            return STORE_ECORRUPT;
    }
    out->len = raw_len;
    return STORE_OK;
}
