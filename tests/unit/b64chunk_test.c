/* b64chunk_test.c — the base64 chunk form (store/b64chunk.c): exact round
 * trips over base64 bodies of every shape and any slice of them, fallback
 * on text that is not regular base64, and a reader that rejects malformed
 * values without writing outside its buffer. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "tests/unit/unit_main.h"
#include "store/b64chunk.h"
#include "store/store_int.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int have_simd;   /* b64c_use_simd as the library set it */
static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* n octets: random, or a repetitive table (compressible) */
static unsigned char *binary(size_t n, bool text)
{
    unsigned char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = text ? (unsigned char)"0123456789;abc\n"[(i * 7 + i / 15) % 15]
                    : (unsigned char)(next() >> 56);
    return b;
}

/* RFC 2045 base64 of bin with lines of `line` characters, CR LF or LF,
 * with or without a line end after the last line */
static char *encode(const unsigned char *bin, size_t n, unsigned line, bool crlf, bool final_eol,
                    size_t *len)
{
    char *t = malloc(n * 2 + 16);
    size_t o = 0, col = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        uint32_t v = (uint32_t)bin[i] << 16 | (k > 1 ? (uint32_t)bin[i + 1] << 8 : 0) |
                     (k > 2 ? bin[i + 2] : 0);
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], k > 1 ? b64[(v >> 6) & 63] : '=',
                     k > 2 ? b64[v & 63] : '='};
        for (int j = 0; j < 4; j++) {
            if (col == line) {
                if (crlf)
                    t[o++] = '\r';
                t[o++] = '\n';
                col = 0;
            }
            t[o++] = q[j];
            col++;
        }
    }
    if (final_eol) {
        if (crlf)
            t[o++] = '\r';
        t[o++] = '\n';
    }
    *len = o;
    return t;
}

/* Reference canonical form: a CR before every LF without one (pcr: the
 * octet before p was a CR). */
static unsigned char *canonical(const unsigned char *p, size_t n, int pcr, size_t *len)
{
    unsigned char *c = malloc(2 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && !(i ? p[i - 1] == '\r' : pcr))
            c[o++] = '\r';
        c[o++] = p[i];
    }
    *len = o;
    return c;
}

/* Pack raw[0..n); when it packs, the stored value (octets raw, and again
 * as a zstd frame of them) must give back raw exactly. Returns whether it
 * packed. */
static bool roundtrip(const unsigned char *raw, size_t n)
{
    unsigned char *out = malloc(n + B64C_HDR), *tmp = malloc(n + 1), *back = malloc(n + 1);
    size_t ml, bl;
    bool packed = b64c_pack(raw, n, out, tmp, &ml, &bl) == 0;
    /* both encoders: the SSSE3 one where the CPU has it, and the scalar */
    for (int simd = have_simd; packed && simd >= 0; simd--) {
        b64c_use_simd = simd;
        ck_assert(b64c_is(out, ml + bl));
        ck_assert_uint_eq(bl % 3, 0);
        ck_assert_uint_le(ml + bl, n * 3 / 4 + B64C_HDR + 2 * B64C_PFX_MAX);
        memset(back, 0xAA, n + 1);
        ck_assert_int_eq(b64c_unpack(out, ml + bl, back, n, NULL), 0);
        ck_assert_mem_eq(back, raw, n);
        ck_assert_uint_eq(back[n], 0xAA);          /* nothing written past raw_len */
        /* the zstd payload variant, decompressed into the tail of back */
        size_t cap = ZSTD_compressBound(bl);
        unsigned char *z = malloc(ml + cap);
        memcpy(z, out, ml);
        size_t zl = ZSTD_compress(z + ml, cap, out + ml, bl, 3);
        ck_assert(!ZSTD_isError(zl));
        b64c_set_zstd(z);
        ZSTD_DCtx *d = ZSTD_createDCtx();
        memset(back, 0x55, n + 1);
        ck_assert_int_eq(b64c_unpack(z, ml + zl, back, n, d), 0);
        ck_assert_mem_eq(back, raw, n);
        ck_assert_uint_eq(back[n], 0x55);
        /* the wrong raw length is refused */
        ck_assert_int_eq(b64c_unpack(z, ml + zl, back, n - 1, d), -1);
        /* the canonical form written straight out, with the raw CRC */
        for (int pcr = 0; pcr < 2; pcr++) {
            size_t cl;
            unsigned char *want = canonical(raw, n, pcr, &cl), *got = malloc(cl + 1);
            unsigned char *zt = malloc(bl + 1);
            for (int zs = 0; zs < 2; zs++) {
                uint32_t crc = 0;
                memset(got, 0x33, cl + 1);
                ck_assert_int_eq(b64c_unpack_canon(zs ? z : out, zs ? ml + zl : ml + bl, n, pcr,
                                                   got, cl, zt, d, &crc), 0);
                ck_assert_mem_eq(got, want, cl);
                ck_assert_uint_eq(got[cl], 0x33);
                ck_assert_uint_eq(crc, crc32c(0, raw, n));
                /* room for one octet less or more: refused */
                ck_assert_int_eq(b64c_unpack_canon(zs ? z : out, zs ? ml + zl : ml + bl, n, pcr,
                                                   got, cl - 1, zt, d, &crc), -1);
                ck_assert_int_eq(b64c_unpack_canon(zs ? z : out, zs ? ml + zl : ml + bl, n, pcr,
                                                   got, cl + 1, zt, d, &crc), -1);
            }
            free(zt);
            free(got);
            free(want);
        }
        ZSTD_freeDCtx(d);
        free(z);
    }
    b64c_use_simd = have_simd;
    free(out);
    free(tmp);
    free(back);
    return packed;
}

/* Whole bodies: line lengths 76/64/72 and odd ones, CR LF and LF, 0/1/2
 * '=' of padding, with and without a final line end. The decoded octets
 * of a body that starts at its first line are the original ones. */
START_TEST(test_bodies)
{
    static const unsigned lines[] = {76, 64, 72, 57, 75, 4, 5, 998};
    for (size_t li = 0; li < sizeof lines / sizeof *lines; li++)
        for (int crlf = 0; crlf < 2; crlf++)
            for (int pad = 0; pad < 3; pad++)
                for (int eol = 0; eol < 2; eol++)
                    for (int text = 0; text < 2; text++) {
                        size_t n = 6000 + (size_t)(3 - pad) % 3;
                        unsigned char *bin = binary(n, text);
                        size_t tl;
                        char *t = encode(bin, n, lines[li], crlf, eol, &tl);
                        const unsigned char *raw = (const unsigned char *)t;
                        ck_assert_msg(roundtrip(raw, tl), "line %u crlf %d pad %d eol %d",
                                      lines[li], crlf, pad, eol);
                        unsigned char *out = malloc(tl + B64C_HDR), *tmp = malloc(tl);
                        size_t ml, bl;
                        ck_assert_int_eq(b64c_pack(raw, tl, out, tmp, &ml, &bl), 0);
                        if (lines[li] % 4 == 0) {
                            /* all quads but the padded one; nothing literal before */
                            ck_assert_uint_eq(ml, B64C_HDR + (tl - (bl / 3 * 4 + (bl / 3 * 4 - 1) / lines[li] * (1 + crlf))));
                            ck_assert_mem_eq(out + ml, bin, bl);
                            ck_assert_uint_ge(bl, n - 3);
                        }
                        free(out);
                        free(tmp);
                        free(t);
                        free(bin);
                    }
}
END_TEST

/* Any slice of a body (a chunk cut anywhere: partial first and last
 * lines, a cut between CR and LF, inside a quad) packs exactly, or not at
 * all; slices of at least 2 KiB of 76-character lines always pack. */
START_TEST(test_slices)
{
    for (int crlf = 0; crlf < 2; crlf++)
        for (int li = 0; li < 3; li++) {
            unsigned line = li == 0 ? 76 : li == 1 ? 64 : 73;
            size_t n = 30000, tl;
            unsigned char *bin = binary(n, li == 2);
            char *t = encode(bin, n, line, crlf, true, &tl);
            int packed = 0;
            for (int k = 0; k < 300; k++) {
                size_t a = next() % tl, len = 1 + next() % (k < 150 ? 600 : 12000);
                if (len > tl - a)
                    len = tl - a;
                bool ok = roundtrip((const unsigned char *)t + a, len);
                packed += ok;
                if (len >= 2048 && line != 73)
                    ck_assert_msg(ok, "slice %zu+%zu line %u crlf %d", a, len, line, crlf);
                if (len < 64)
                    ck_assert(!ok);                /* too small to pay */
            }
            ck_assert_int_gt(packed, 100);
            free(t);
            free(bin);
        }
}
END_TEST

/* Every chunk size from 1 to 700 at two places, then every 7th: exact
 * or not packed. */
START_TEST(test_sizes)
{
    size_t n = 3000, tl;
    unsigned char *bin = binary(n, false);
    char *t = encode(bin, n, 76, true, true, &tl);
    for (size_t len = 1; len <= tl - 101; len += len < 700 ? 1 : 7) {
        roundtrip((const unsigned char *)t, len);
        roundtrip((const unsigned char *)t + 101, len);
    }
    free(t);
    free(bin);
}
END_TEST

/* Text that is not regular base64 falls back (or, when the irregular part
 * is short and at an edge, is kept literally: still exact). */
START_TEST(test_irregular)
{
    size_t n = 15000, tl;
    unsigned char *bin = binary(n, false);
    char *t = encode(bin, n, 76, false, true, &tl);
    unsigned char *c = malloc(tl + 1000);
    size_t mid = tl / 2;
    /* a junk octet, a space, a NUL, an '=' in the middle of the body */
    static const char junk[] = {'*', ' ', '\0', '=', '-', '\x80'};
    for (size_t j = 0; j < sizeof junk; j++) {
        memcpy(c, t, tl);
        c[mid] = (unsigned char)junk[j];
        ck_assert_msg(!roundtrip(c, tl), "junk %d", junk[j]);
    }
    /* whitespace at the end of every line */
    size_t o = 0;
    for (size_t i = 0; i < tl; i++) {
        if (t[i] == '\n')
            c[o++] = ' ';
        c[o++] = (unsigned char)t[i];
    }
    ck_assert(!roundtrip(c, o));
    /* one short line in the middle */
    memcpy(c, t, tl);
    size_t ls = mid - mid % 77;                 /* a line start (77 = 76 + LF) */
    memmove(c + ls + 40, c + ls + 41, tl - ls - 41);
    c[ls + 40 - 1] = '\n';
    ck_assert(!roundtrip(c, tl - 1));
    /* a CR LF line end among LF ones */
    memcpy(c, t, ls);
    c[ls - 1] = '\r';
    c[ls] = '\n';
    memcpy(c + ls + 1, t + ls, tl - ls);
    ck_assert(!roundtrip(c, tl + 1));
    /* bits set in the padding positions of the last quad ("QR==" where
     * "QQ==" is canonical): the quad is literal, the round trip exact */
    unsigned char *b2 = binary(3001, false);
    size_t l2;
    char *t2 = encode(b2, 3001, 76, true, false, &l2);
    ck_assert_uint_eq((unsigned char)t2[l2 - 1], '=');
    ck_assert_uint_eq((unsigned char)t2[l2 - 2], '=');
    char *p = strchr(b64, t2[l2 - 3]);
    t2[l2 - 3] = b64[(p - b64) | 15];
    ck_assert(roundtrip((const unsigned char *)t2, l2));
    /* text before and after the body (a part header, a boundary) */
    memcpy(c, "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n", 65);
    memcpy(c + 65, t, tl);
    memcpy(c + 65 + tl, "\n--boundary--\n", 14);
    ck_assert(roundtrip(c, 65 + tl + 14));
    /* plain text is not base64 */
    for (size_t i = 0; i < 8000; i++)
        c[i] = (unsigned char)"The quick brown fox jumps over the lazy dog.\n"[i % 45];
    ck_assert(!roundtrip(c, 8000));
    free(t2);
    free(b2);
    free(c);
    free(t);
    free(bin);
}
END_TEST

/* Malformed stored values are refused, and no value makes the reader
 * write past raw_len (ASan/valgrind watch the random mutations). */
START_TEST(test_unpack_rejects)
{
    size_t n = 5000, tl;
    unsigned char *bin = binary(n, false);
    char *t = encode(bin, n, 76, true, false, &tl);
    unsigned char *v = malloc(tl + B64C_HDR), *tmp = malloc(tl), *back = malloc(tl + 1);
    size_t ml, bl;
    ck_assert_int_eq(b64c_pack((const unsigned char *)t, tl, v, tmp, &ml, &bl), 0);
    size_t vl = ml + bl;
    ck_assert_int_eq(b64c_unpack(v, vl, back, tl, NULL), 0);
    ck_assert_int_eq(b64c_unpack(v, vl - 1, back, tl, NULL), -1);     /* truncated */
    ck_assert_int_eq(b64c_unpack(v, vl, back, tl + 1, NULL), -1);
    ck_assert_int_eq(b64c_unpack(v, B64C_HDR - 1, back, tl, NULL), -1);
    static const struct { size_t at; unsigned char val; } bad[] = {
        {0, 'X'}, {4, 4}, {4, 0x80}, {5, 1}, {6, 0}, {7, 0},     /* magic, flags, line 0 */
        {8, 1}, {9, 76},                                     /* col >= line */
        {10, 0xFF}, {12, 0xFF}, {17, 0xFF}, {14, 0x80},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char *w = malloc(vl);
        memcpy(w, v, vl);
        w[bad[i].at] = bad[i].val;
        if (bad[i].at == 6)
            w[7] = 0;
        ck_assert_msg(b64c_unpack(w, vl, back, tl, NULL) == -1, "mutation %zu", i);
        free(w);
    }
    /* a value without a run (the writer never makes one, the reader takes
     * it): prefix "a\r" + suffix "\nb", the CR LF across the two */
    {
        unsigned char e[B64C_HDR + 4] = {'C', 'B', '6', '4', 0, 0, 0, 76, 0, 0, 0, 2, 0, 2,
                                         0, 0, 0, 0, 'a', '\r', '\n', 'b'};
        unsigned char o4[5] = {0}, c4[5] = {0};
        uint32_t crc;
        ck_assert_int_eq(b64c_unpack(e, sizeof e, o4, 4, NULL), 0);
        ck_assert_mem_eq(o4, "a\r\nb", 4);
        ck_assert_int_eq(b64c_unpack_canon(e, sizeof e, 4, 0, c4, 4, NULL, NULL, &crc), 0);
        ck_assert_mem_eq(c4, "a\r\nb", 4);
        ck_assert_uint_eq(crc, crc32c(0, "a\r\nb", 4));
    }
    /* a zstd flag on raw octets: not a frame */
    unsigned char *w = malloc(vl);
    memcpy(w, v, vl);
    b64c_set_zstd(w);
    ck_assert_int_eq(b64c_unpack(w, vl, back, tl, NULL), -1);
    /* random mutations of the header: refused, or exactly tl octets */
    for (int k = 0; k < 5000; k++) {
        memcpy(w, v, vl);
        for (int j = 0; j < 3; j++)
            w[next() % B64C_HDR] ^= (unsigned char)(1u << (next() % 8));
        back[tl] = 0x77;
        int rc = b64c_unpack(w, vl, back, tl, NULL);
        ck_assert(rc == 0 || rc == -1);
        ck_assert_uint_eq(back[tl], 0x77);
    }
    free(w);
    free(v);
    free(tmp);
    free(back);
    free(t);
    free(bin);
}
END_TEST

int main(void)
{
    have_simd = b64c_use_simd;
    printf("b64chunk_test: SSSE3 encoder %s\n", have_simd ? "tested too" : "not available");
    Suite *s = suite_create("b64chunk");
    TCase *t = tcase_create("codec");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_bodies);
    tcase_add_test(t, test_slices);
    tcase_add_test(t, test_sizes);
    tcase_add_test(t, test_irregular);
    tcase_add_test(t, test_unpack_rejects);
    suite_add_tcase(s, t);
    return unit_run(s);
}
