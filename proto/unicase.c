/* unicase.c — i;unicode-casemap folding (see unicase.h). */
#include "proto/unicase.h"
#include "proto/unicase_table.h"

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_NV 21u
#define HANGUL_NT 28u
#define HANGUL_COUNT 11172u

size_t unicase_utf8_get(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2; v = c & 0x1F; min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3; v = c & 0x0F; min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4; v = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

int unicase_utf8_put(struct buf *out, uint32_t cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        return buf_putc(out, (unsigned char)cp);
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(out, b, n);
}

static int lookup(uint32_t cp)
{
    size_t lo = 0, hi = UNICASE_NKEYS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (unicase_keys[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < UNICASE_NKEYS && unicase_keys[lo] == cp ? (int)lo : -1;
}

static int put_replacement(struct buf *out)
{
    static const unsigned char rc[3] = { 0xEF, 0xBF, 0xBD };
    if (out->len >= 3 && out->data[out->len - 3] == rc[0] &&
        out->data[out->len - 2] == rc[1] && out->data[out->len - 1] == rc[2])
        return 0;
    return buf_append(out, rc, 3);
}

static int fold_cp(struct buf *out, uint32_t cp)
{
    int rc;
    if (cp - HANGUL_S < HANGUL_COUNT) {
        uint32_t si = cp - HANGUL_S;
        if ((rc = unicase_utf8_put(out, HANGUL_L + si / (HANGUL_NV * HANGUL_NT))) ||
            (rc = unicase_utf8_put(out, HANGUL_V + (si % (HANGUL_NV * HANGUL_NT)) / HANGUL_NT)))
            return rc;
        if (si % HANGUL_NT)
            return unicase_utf8_put(out, HANGUL_T + si % HANGUL_NT);
        return 0;
    }
    int k = lookup(cp);
    if (k < 0)
        return unicase_utf8_put(out, cp);
    uint32_t ol = unicase_offlen[k];
    for (uint32_t i = 0; i < (ol & 0xFF); i++)
        if ((rc = unicase_utf8_put(out, unicase_data[(ol >> 8) + i])))
            return rc;
    return 0;
}

int unicase_fold(const unsigned char *s, size_t len, struct buf *out)
{
    size_t i = 0;
    int rc;
    if ((rc = buf_reserve(out, len)))
        return rc;
    while (i < len) {
        /* ASCII runs are the common case: fold them without a lookup. */
        unsigned char c = s[i];
        if (c < 0x80) {
            if (out->len + 1 >= out->cap && (rc = buf_reserve(out, len - i)))
                return rc;
            out->data[out->len++] = (unsigned char)(c >= 'a' && c <= 'z' ? c - 32 : c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = unicase_utf8_get(s + i, len - i, &cp);
        if (n == 0) {
            if ((rc = put_replacement(out)))
                return rc;
            i++;
            continue;
        }
        if ((rc = fold_cp(out, cp)))
            return rc;
        i += n;
    }
    return 0;
}
