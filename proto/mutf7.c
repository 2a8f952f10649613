/* mutf7.c — modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8. See mutf7.h. */
#include "proto/mutf7.h"

#include <stdbool.h>
#include <stdint.h>

#include "proto/buf.h"

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

/* Decode one UTF-8 code point at s[*i]; -1 when invalid. */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if (c >= 0xc2 && c <= 0xdf) {
        cp = c & 0x1f;
        n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        cp = c & 0x0f;
        n = 2;
    } else if (c >= 0xf0 && c <= 0xf4) {
        cp = c & 0x07;
        n = 3;
    } else {
        return -1;
    }
    if (len - *i <= n)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        unsigned char d = s[*i + k];
        if ((d & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (d & 0x3f);
    }
    /* overlongs, surrogates, out of range */
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += n + 1;
    return (int32_t)cp;
}

int utf8_valid(const char *in, size_t len)
{
    size_t i = 0;
    while (i < len)
        if (utf8_next((const unsigned char *)in, len, &i) < 0)
            return 0;
    return 1;
}

static int put_utf8(struct buf *out, uint32_t cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return buf_append(out, b, n);
}

/* Base64 writer state for one shifted run. */
struct b64w {
    uint32_t bits;
    unsigned nbits;
};

static int b64w_put16(struct b64w *w, struct buf *out, uint32_t u)
{
    w->bits = (w->bits << 16) | u;
    w->nbits += 16;
    while (w->nbits >= 6) {
        w->nbits -= 6;
        if (buf_putc(out, (unsigned char)b64chars[(w->bits >> w->nbits) & 0x3f]) != 0)
            return -1;
    }
    w->bits &= (1u << w->nbits) - 1;
    return 0;
}

int mutf7_encode(const char *in, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x20 && c <= 0x7e) {
            if (buf_append(out, c == '&' ? "&-" : (const char *)&s[i], c == '&' ? 2 : 1) != 0)
                return -1;
            i++;
            continue;
        }
        struct b64w w = {0, 0};
        if (buf_putc(out, '&') != 0)
            return -1;
        while (i < len && (s[i] < 0x20 || s[i] > 0x7e)) {
            int32_t cp = utf8_next(s, len, &i);
            if (cp < 0)
                return -1;
            if (cp >= 0x10000) {
                uint32_t v = (uint32_t)cp - 0x10000;
                if (b64w_put16(&w, out, 0xd800 | (v >> 10)) != 0 ||
                    b64w_put16(&w, out, 0xdc00 | (v & 0x3ff)) != 0)
                    return -1;
            } else if (b64w_put16(&w, out, (uint32_t)cp) != 0) {
                return -1;
            }
        }
        if (w.nbits > 0 &&
            buf_putc(out, (unsigned char)b64chars[(w.bits << (6 - w.nbits)) & 0x3f]) != 0)
            return -1;
        if (buf_putc(out, '-') != 0)
            return -1;
    }
    return 0;
}

int mutf7_decode(const char *in, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    bool after_shift = false;   /* "&..-&..-" must have been one run */
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e)
            return -1;
        bool was_after = after_shift;
        after_shift = false;
        if (c != '&') {
            if (buf_putc(out, c) != 0)
                return -1;
            i++;
            continue;
        }
        i++;
        if (i < len && s[i] == '-') {
            if (buf_putc(out, '&') != 0)
                return -1;
            i++;
            continue;
        }
        if (was_after)
            return -1;
        uint32_t bits = 0, hi_sur = 0;
        unsigned nbits = 0;
        bool any = false;
        while (i < len && s[i] != '-') {
            int v = b64val(s[i]);
            if (v < 0)
                return -1;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            i++;
            if (nbits < 16)
                continue;
            nbits -= 16;
            uint32_t u = (bits >> nbits) & 0xffff;
            bits &= (1u << nbits) - 1;
            any = true;
            if (hi_sur != 0) {
                if (u < 0xdc00 || u > 0xdfff)
                    return -1;
                uint32_t cp = 0x10000 + ((hi_sur - 0xd800) << 10) + (u - 0xdc00);
                hi_sur = 0;
                if (put_utf8(out, cp) != 0)
                    return -1;
            } else if (u >= 0xd800 && u <= 0xdbff) {
                hi_sur = u;
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                return -1;
            } else if (u >= 0x20 && u <= 0x7e) {
                return -1;   /* printable ASCII must not be encoded */
            } else if (put_utf8(out, u) != 0) {
                return -1;
            }
        }
        /* unterminated, empty, dangling surrogate, or non-zero/too many pad bits */
        if (i >= len || !any || hi_sur != 0 || nbits >= 6 || bits != 0)
            return -1;
        i++;   /* '-' */
        after_shift = true;
    }
    return 0;
}
