/* b64chunk.c — the base64 chunk form (format: store/b64chunk.h).
 *
 * Why: attachments are most of a mailbox's octets, and they are base64
 * text. Stored as zstd frames of that text, a full download spent three
 * quarters of its instructions in zstd decoding Huffman-coded literals
 * (docs/BENCHMARKS.md, Session 4 (DLSPEED)). The decoded octets are 3/4 of
 * the text before any compression, and re-encoding them is a table lookup
 * per 12 bits. */
#include "store/b64chunk.h"
#include "store/store_int.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#define B64C_SSSE3 1
#include <immintrin.h>
#else
#define B64C_SSSE3 0
#endif

static const char alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* pair[v] = the two characters of the 12-bit value v, in memory order;
 * val[c] = the 6-bit value of character c, or 0xFF */
static unsigned char pair[4096][2];
static unsigned char val[256];
int b64c_use_simd;

/* Built before main(): no lazy initialisation racing between threads. */
__attribute__((constructor)) static void tables_init(void)
{
    memset(val, 0xFF, sizeof val);
    for (int i = 0; i < 64; i++)
        val[(unsigned char)alphabet[i]] = (unsigned char)i;
    for (int v = 0; v < 4096; v++) {
        pair[v][0] = (unsigned char)alphabet[v >> 6];
        pair[v][1] = (unsigned char)alphabet[v & 63];
    }
#if B64C_SSSE3
    __builtin_cpu_init();
    b64c_use_simd = __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.2") &&
                    !getenv("COFFER_BENCH_B64_SCALAR");
#endif
}

/* ---- re-encoding (the read path) ---- */

struct form {
    unsigned line, col, plen, slen, crlf;
    size_t nq;
};

/* Where re-encoded text goes: line ends written as CR LF (crlf_out) or
 * LF, and, when crc is set, the CRC-32C of the chunk's raw octets (line
 * ends as stored: raw_crlf) computed on the way, one line at a time (seg:
 * the start of the characters not yet in it). */
struct sink {
    uint32_t *crc;
    const unsigned char *seg;
    bool crlf_out, raw_crlf;
};

static inline unsigned char *put_eol(struct sink *k, unsigned char *o)
{
    if (k->crc) {
        *k->crc = crc32c(*k->crc, k->seg, (size_t)(o - k->seg));
        *k->crc = crc32c(*k->crc, &"\r\n"[!k->raw_crlf], 1 + k->raw_crlf);
    }
    if (k->crlf_out)
        *o++ = '\r';
    *o++ = '\n';
    k->seg = o;
    return o;
}

#if B64C_SSSE3
__attribute__((target("ssse3"))) static inline void step_ssse3(unsigned char *dst,
                                                                 const unsigned char *src)
{
    const __m128i spread = _mm_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    const __m128i m_ac = _mm_set1_epi32(0x0FC0FC00), mul_ac = _mm_set1_epi32(0x04000040);
    const __m128i m_bd = _mm_set1_epi32(0x003F03F0), mul_bd = _mm_set1_epi32(0x01000010);
    const __m128i k51 = _mm_set1_epi8(51), k26 = _mm_set1_epi8(26), k13 = _mm_set1_epi8(13);
    /* offset to add to a value: index 0 a-z (26..51), 1-10 digits (52..61),
     * 11 '+', 12 '/', 13 A-Z (0..25) */
    const __m128i off = _mm_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                      '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62,
                                      '/' - 63, 'A', 0, 0);
    __m128i in = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)src), spread);
    __m128i v = _mm_or_si128(_mm_mulhi_epu16(_mm_and_si128(in, m_ac), mul_ac),
                             _mm_mullo_epi16(_mm_and_si128(in, m_bd), mul_bd));
    __m128i r = _mm_or_si128(_mm_subs_epu8(v, k51), _mm_and_si128(_mm_cmpgt_epi8(k26, v), k13));
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_add_epi8(_mm_shuffle_epi8(off, r), v));
}

/* Four quads per step: 12 octets -> 16 characters in SSE registers. Each
 * 32-bit lane gets octets (s1, s0, s2, s1) of its group, so that its two
 * 16-bit halves hold s0:s1 and s1:s2; two masked multiplies move the four
 * 6-bit fields into the lane's four octets; a 16-entry table of offsets,
 * picked by range (A-Z, a-z, 0-9, '+', '/'), turns values into characters.
 * Reads 16 octets per step, so only while 16 remain. Same in-place rule
 * as quads(): 16 characters never pass the 12 octets just read. */
__attribute__((target("ssse3"))) static unsigned char *quads_ssse3(unsigned char *o,
                                                                  const unsigned char **bp,
                                                                  size_t *tp, size_t *leftp,
                                                                  bool overlap)
{
    const unsigned char *b = *bp;
    size_t t = *tp, left = *leftp;
    for (;;) {
        while (t >= 4 && left >= 16) {
            step_ssse3(o, b);
            o += 16, b += 12, t -= 4, left -= 12;
        }
        /* the 1-3 quads left of a line: step back over quads already
         * written and write them again (the same characters) with the
         * last ones; not in place, where those octets may be overwritten */
        size_t back = 4 - t;
        if (!overlap || !t || t >= 4 || left + 3 * back < 16)
            break;
        o -= 4 * back, b -= 3 * back, left += 3 * back, t = 4;
        overlap = false;
    }
    *bp = b, *tp = t, *leftp = left;
    return o;
}

/* CRC-32C (internal state: not inverted) of p[0..n), with the SSE 4.2
 * instruction: the lines' CRC is taken right after they are written. */
__attribute__((target("sse4.2"))) static inline uint32_t crc_mem(uint32_t c,
                                                                const unsigned char *p, size_t n)
{
    uint64_t x = c;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        x = _mm_crc32_u64(x, w);
    }
    uint32_t y = (uint32_t)x;
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        y = _mm_crc32_u32(y, w);
        p += 4, n -= 4;
    }
    while (n--)
        y = _mm_crc32_u8(y, *p++);
    return y;
}

/* Whole lines of line = 4 * q characters (q >= 4), from a line start
 * (*col 0 or line), while q + 2 quads are left (the last step of a line
 * reads 4 octets past it): each line is q / 4 steps plus, for q % 4, one
 * step that ends at the line's end and rewrites up to 3 quads (so never
 * in place). Constants stay in registers across lines: this loop is the
 * whole cost of re-encoding an attachment. */
__attribute__((target("ssse3,sse4.2"))) static unsigned char *lines_ssse3(unsigned char *o,
                                                                  const unsigned char *bin,
                                                                  size_t *kp, size_t nq,
                                                                  unsigned *col, unsigned line,
                                                                  struct sink *sk)
{
    size_t k = *kp, q = line / 4, full = q / 4 * 4;
    uint32_t c = 0;
    if (sk->crc) {
        /* what the caller wrote before: into the CRC, then it runs here */
        c = ~crc32c(*sk->crc, sk->seg, (size_t)(o - sk->seg));
    }
    while (nq - k >= q + 2) {
        if (*col == line) {
            if (sk->crc)
                c = sk->raw_crlf ? _mm_crc32_u8(_mm_crc32_u8(c, '\r'), '\n')
                                 : _mm_crc32_u8(c, '\n');
            if (sk->crlf_out)
                *o++ = '\r';
            *o++ = '\n';
        }
        const unsigned char *b = bin + 3 * k;
        for (size_t j = 0; j < full; j += 4)
            step_ssse3(o + 4 * j, b + 3 * j);
        if (q != full)
            step_ssse3(o + 4 * q - 16, b + 3 * q - 12);
        if (sk->crc)
            c = crc_mem(c, o, 4 * q);
        o += 4 * q, k += q;
        *col = line;
    }
    if (sk->crc) {
        *sk->crc = ~c;
        sk->seg = o;
    }
    *kp = k;
    return o;
}
#endif


static inline void quad(unsigned char *o, const unsigned char *b)
{
    uint32_t v = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
    memcpy(o, pair[v >> 12], 2);
    memcpy(o + 2, pair[v & 0xFFF], 2);
}

/* t quads from b (left octets readable from b) to o. In place (b ahead
 * of o in the same buffer) each step reads its octets before it writes
 * and never writes past the octets it has read (b64c_unpack's tail layout
 * guarantees it), so overlap (rewriting earlier quads) must be off. */
static inline unsigned char *quads(unsigned char *o, const unsigned char *b, size_t t,
                                   size_t left, bool overlap)
{
#if B64C_SSSE3
    if (b64c_use_simd && t >= 4)
        o = quads_ssse3(o, &b, &t, &left, overlap);
#else
    (void)overlap;
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* two quads per step from one 8-octet load while 8 octets remain (never
     * past the payload's end: it may be the last octets of the map) */
    while (t >= 2 && left >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        w = __builtin_bswap64(w);          /* b[0] in the top octet */
        uint32_t v0 = (uint32_t)(w >> 40), v1 = (uint32_t)(w >> 16) & 0xFFFFFF;
        unsigned char c[8];
        memcpy(c, pair[v0 >> 12], 2);
        memcpy(c + 2, pair[v0 & 0xFFF], 2);
        memcpy(c + 4, pair[v1 >> 12], 2);
        memcpy(c + 6, pair[v1 & 0xFFF], 2);
        memcpy(o, c, 8);
        o += 8, b += 6, t -= 2, left -= 6;
    }
#else
    (void)left;
#endif
    while (t--) {
        quad(o, b);
        o += 4, b += 3;
    }
    return o;
}

/* The encoded run of f from bin into o; returns the end. inplace: bin
 * lies in the output buffer, ahead of o. */
static unsigned char *expand(const struct form *f, const unsigned char *bin, unsigned char *o,
                             bool inplace, struct sink *sk)
{
    size_t k = 0, nq = f->nq;
    unsigned col = f->col, line = f->line;
#if B64C_SSSE3
    bool fast = b64c_use_simd && !inplace && line % 4 == 0 && line >= 16;
#endif
    while (k < nq) {
#if B64C_SSSE3
        if (fast && (col == 0 || col == line) && nq - k >= line / 4 + 2) {
            o = lines_ssse3(o, bin, &k, nq, &col, line, sk);
            continue;
        }
#endif
        if (col == line) {
            o = put_eol(sk, o);
            col = 0;
        }
        size_t t = (line - col) / 4;
        if (t > nq - k)
            t = nq - k;
        if (t) {
            o = quads(o, bin + 3 * k, t, 3 * (nq - k), !inplace);
            k += t;
            col += 4 * (unsigned)t;
            continue;
        }
        /* a quad across a line end */
        unsigned char c[4];
        quad(c, bin + 3 * k);
        for (int i = 0; i < 4; i++) {
            if (col == line) {
                o = put_eol(sk, o);
                col = 0;
            }
            *o++ = c[i];
            col++;
        }
        k++;
    }
    if (sk->crc)
        *sk->crc = crc32c(*sk->crc, sk->seg, (size_t)(o - sk->seg));
    return o;
}

/* Octets the form stands for (64-bit: no header overflows it). */
static uint64_t form_len(const struct form *f)
{
    uint64_t chars = 4 * (uint64_t)f->nq;
    uint64_t neol = chars ? ((uint64_t)f->col + chars - 1) / f->line : 0;
    return f->plen + chars + neol * (1 + f->crlf) + f->slen;
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8), p[1] = (unsigned char)v;
}

/* Header of the value v[0..vlen) standing for raw_len octets: the form,
 * prefix, suffix and payload (*pl octets). */
static int parse(const unsigned char *v, size_t vlen, size_t raw_len, struct form *f,
                 const unsigned char **pre, const unsigned char **suf,
                 const unsigned char **pay, size_t *pl)
{
    if (vlen < B64C_HDR || !b64c_is(v, vlen) || (v[4] & ~3u) || v[5])
        return -1;
    *f = (struct form){
        .crlf = v[4] & B64C_F_CRLF, .line = get16(v + 6), .col = get16(v + 8),
        .plen = get16(v + 10), .slen = get16(v + 12),
        .nq = (size_t)v[14] << 24 | (size_t)v[15] << 16 | (size_t)v[16] << 8 | v[17],
    };
    if (!f->line || f->col >= f->line || (size_t)B64C_HDR + f->plen + f->slen > vlen ||
        form_len(f) != raw_len)
        return -1;
    *pre = v + B64C_HDR, *suf = *pre + f->plen, *pay = *suf + f->slen;
    *pl = vlen - B64C_HDR - f->plen - f->slen;
    return 0;
}

/* The decoded octets: the payload itself, or its zstd frame decompressed
 * into dst (3 * nq octets). */
static const unsigned char *payload(const unsigned char *v, const struct form *f,
                                    const unsigned char *pay, size_t pl, unsigned char *dst,
                                    void *dctx)
{
    size_t bl = 3 * f->nq;
    if (!(v[4] & B64C_F_ZSTD))
        return pl == bl ? pay : NULL;
    size_t d = dctx ? ZSTD_decompressDCtx(dctx, dst, bl, pay, pl) : ZSTD_decompress(dst, bl, pay, pl);
    return ZSTD_isError(d) || d != bl ? NULL : dst;
}

int b64c_unpack(const unsigned char *v, size_t vlen, unsigned char *out, size_t raw_len,
                void *dctx)
{
    struct form f;
    const unsigned char *pre, *suf, *pay;
    size_t pl;
    if (parse(v, vlen, raw_len, &f, &pre, &suf, &pay, &pl))
        return -1;
    /* a zstd payload goes to the tail: the encoder writes 4 octets (plus
     * line ends) per 3 it has read, and the prefix, line ends and suffix
     * ahead of the tail keep its writes behind its reads */
    const unsigned char *bin = payload(v, &f, pay, pl, out + raw_len - 3 * f.nq, dctx);
    if (!bin)
        return -1;
    memcpy(out, pre, f.plen);
    struct sink sk = {.crlf_out = f.crlf};
    unsigned char *o = expand(&f, bin, out + f.plen, bin != pay, &sk);
    memcpy(o, suf, f.slen);
    return 0;
}

/* p[0..n) made canonical (a CR before every LF that has none) into o;
 * *pcr: the octet before p was a CR. Returns the end, or NULL past lim. */
static unsigned char *canon_lit(unsigned char *o, const unsigned char *lim, const unsigned char *p,
                                size_t n, int *pcr)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && !*pcr) {
            if (o == lim)
                return NULL;
            *o++ = '\r';
        }
        if (o == lim)
            return NULL;
        *o++ = p[i];
        *pcr = p[i] == '\r';
    }
    return o;
}

int b64c_unpack_canon(const unsigned char *v, size_t vlen, size_t raw_len, int prev_cr,
                      unsigned char *out, size_t canon_len, unsigned char *tmp, void *dctx,
                      uint32_t *crc)
{
    struct form f;
    const unsigned char *pre, *suf, *pay;
    size_t pl;
    if (parse(v, vlen, raw_len, &f, &pre, &suf, &pay, &pl))
        return -1;
    const unsigned char *bin = payload(v, &f, pay, pl, tmp, dctx);
    if (!bin)
        return -1;
    /* the run's line ends are never bare CRs or preceded by one: they
     * become CR LF, and the run starts and ends with a character */
    uint64_t chars = 4 * (uint64_t)f.nq;
    uint64_t neol = chars ? ((uint64_t)f.col + chars - 1) / f.line : 0;
    const unsigned char *lim = out + canon_len;
    int pcr = prev_cr;
    unsigned char *o = canon_lit(out, lim, pre, f.plen, &pcr);
    if (!o || (uint64_t)(lim - o) < chars + 2 * neol)
        return -1;
    uint32_t c = crc32c(0, pre, f.plen);
    struct sink sk = {.crc = &c, .seg = o, .crlf_out = true, .raw_crlf = f.crlf};
    o = expand(&f, bin, o, false, &sk);
    if (f.nq)
        pcr = 0;                     /* the run ends with a character */
    if (!(o = canon_lit(o, lim, suf, f.slen, &pcr)) || o != lim)
        return -1;
    *crc = crc32c(c, suf, f.slen);
    return 0;
}

void b64c_set_zstd(unsigned char *meta)
{
    meta[4] |= B64C_F_ZSTD;
}

/* ---- fitting (the write path; raw is untrusted message text) ---- */

/* Line ending at the LF raw[lf]: content length and whether it is CR LF. */
static size_t line_len(const unsigned char *raw, size_t start, size_t lf, bool crlf, bool *ok)
{
    size_t len = lf - start;
    *ok = true;
    if (crlf) {
        if (!len || raw[lf - 1] != '\r')
            *ok = false;
        else
            len--;
    } else if (len && raw[lf - 1] == '\r') {
        *ok = false;
    }
    return len;
}

static bool all64(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (val[p[i]] == 0xFF)
            return false;
    return true;
}

/* Does the line at s continue a run of lines of len characters: the same
 * length and line end, or the chunk ends inside it? (So a short header
 * line of letters is not taken for the first line of the run.) */
static bool next_like(const unsigned char *raw, size_t n, size_t s, size_t len, bool crlf)
{
    size_t full = len + 1 + crlf;
    if (n - s < full)
        return all64(raw + s, n - s < len ? n - s : len);
    return all64(raw + s, len) && (!crlf || raw[s + len] == '\r') && raw[s + len + crlf] == '\n';
}

/* Where the run starts (*start), its line length and column, and its end
 * after whole quads; -1 when there is no run worth it. */
static int fit(const unsigned char *raw, size_t n, struct form *f, size_t *start)
{
    const unsigned char *nl = memchr(raw, '\n', n);
    if (!nl)
        return -1;
    /* the first full line: all alphabet, 4..1000 characters, after a line
     * end, within the prefix limit */
    size_t prev = 0, ls = (size_t)(nl - raw) + 1, prev_lf = (size_t)(nl - raw), L = 0;
    bool crlf = false;
    while (ls < n && ls <= B64C_PFX_MAX) {
        const unsigned char *e = memchr(raw + ls, '\n', n - ls);
        if (!e)
            return -1;
        size_t lf = (size_t)(e - raw), len = lf - ls;
        crlf = len && raw[lf - 1] == '\r';
        len -= crlf;
        if (len >= 4 && len <= 1000 && all64(raw + ls, len) && next_like(raw, n, lf + 1, len, crlf)) {
            L = len;
            break;
        }
        prev = ls, prev_lf = lf, ls = lf + 1;
    }
    if (!L)
        return -1;
    /* the line before it may be the run's partial first line */
    size_t rs = ls;
    unsigned col = 0;
    bool ok;
    size_t len0 = line_len(raw, prev, prev_lf, crlf, &ok);
    if (ok && len0 <= L && all64(raw + prev, len0) && len0 % 4 < len0) {
        /* quads on the line's columns that are multiples of 4 from its
         * end (so, for lines of 4k characters, from the line start) */
        rs = prev + len0 % 4;
        col = (unsigned)(L - len0 + len0 % 4);
    }
    if (rs > B64C_PFX_MAX + 3)
        return -1;
    /* walk the run: characters, a line end each time the column reaches L */
    size_t i = rs, m = 0, end4 = rs;
    unsigned c = col;
    while (i < n) {
        if (c == L) {
            if (crlf && i + 1 < n && raw[i] == '\r' && raw[i + 1] == '\n')
                i += 2;
            else if (!crlf && raw[i] == '\n')
                i++;
            else
                break;
            c = 0;
            continue;
        }
        if (val[raw[i]] == 0xFF)
            break;
        i++, m++, c++;
        if (!(m & 3))
            end4 = i;
    }
    size_t nq = m / 4;
    if (n - end4 > B64C_SFX_MAX || nq < 16 || nq > 0xFFFFFFFFu || 8 * nq < n)
        return -1;                  /* the run must be at least half the chunk */
    *f = (struct form){.line = (unsigned)L, .col = col, .plen = (unsigned)rs,
                       .slen = (unsigned)(n - end4), .crlf = crlf, .nq = nq};
    *start = rs;
    return 0;
}

int b64c_pack(const unsigned char *raw, size_t n, unsigned char *out, unsigned char *tmp,
              size_t *meta_len, size_t *bin_len)
{
    struct form f;
    size_t rs;
    if (fit(raw, n, &f, &rs))
        return -1;
    unsigned char *h = out;
    memcpy(h, "CB64", 4);
    h[4] = f.crlf ? B64C_F_CRLF : 0;
    h[5] = 0;
    put16(h + 6, f.line);
    put16(h + 8, f.col);
    put16(h + 10, f.plen);
    put16(h + 12, f.slen);
    h[14] = (unsigned char)(f.nq >> 24), h[15] = (unsigned char)(f.nq >> 16);
    h[16] = (unsigned char)(f.nq >> 8), h[17] = (unsigned char)f.nq;
    memcpy(h + B64C_HDR, raw, f.plen);
    memcpy(h + B64C_HDR + f.plen, raw + n - f.slen, f.slen);
    size_t ml = B64C_HDR + f.plen + f.slen;
    /* decode the run with the walk's rule */
    unsigned char *b = out + ml;
    size_t i = rs;
    unsigned c = f.col;
    for (size_t k = 0; k < f.nq; k++) {
        uint32_t q = 0;
        for (int j = 0; j < 4; j++) {
            if (c == f.line) {
                i += 1 + f.crlf;
                c = 0;
            }
            q = q << 6 | val[raw[i++]];
            c++;
        }
        b[3 * k] = (unsigned char)(q >> 16);
        b[3 * k + 1] = (unsigned char)(q >> 8);
        b[3 * k + 2] = (unsigned char)q;
    }
    /* exactness: the stored form must give back raw, octet for octet */
    if (form_len(&f) != n || b64c_unpack(out, ml + 3 * f.nq, tmp, n, NULL) ||
        memcmp(tmp, raw, n))
        return -1;
    *meta_len = ml;
    *bin_len = 3 * f.nq;
    return 0;
}
