#include "proto/canon.h"
#include <string.h>

/* Both functions jump from line end to line end with memchr: messages are
 * mostly long runs without LF, and this is on the FETCH hot path. */
uint64_t canon_len(const unsigned char *raw, size_t len, int *prev_cr)
{
    uint64_t n = len;
    size_t i = 0;
    int pcr = *prev_cr;
    while (i < len) {
        const unsigned char *lf = memchr(raw + i, '\n', len - i);
        if (lf == NULL)
            break;
        size_t j = (size_t)(lf - raw);
        int before_cr = j > i ? raw[j - 1] == '\r' : pcr;
        if (!before_cr)
            n++;
        pcr = 0;
        i = j + 1;
    }
    if (len > 0)
        pcr = raw[len - 1] == '\r';
    *prev_cr = pcr;
    return n;
}

/* Append p[0..n) and, when crlf, a CRLF. The capacity check is inline:
 * this runs once per line of every message served. */
static inline int emit(struct buf *out, const unsigned char *p, size_t n, int crlf)
{
    size_t need = n + (crlf ? 2 : 0);
    if ((out->cap - out->len <= need || out->limit - out->len < need) &&
        buf_reserve(out, need) != 0)
        return -1;
    unsigned char *o = out->data + out->len;
    if (n)
        memcpy(o, p, n);
    if (crlf) {
        o[n] = '\r';
        o[n + 1] = '\n';
    }
    out->len += need;
    return 0;
}

int canon_append(struct buf *out, const unsigned char *raw, size_t len, int *prev_cr)
{
    size_t start = 0, i = 0;
    int pcr = *prev_cr;
    /* one reservation for the usual case (a CRLF per ~40 octets or fewer);
     * when it does not fit the limit, emit() grows the buffer as it goes */
    if (len > 0 && out->limit - out->len > len + len / 16 + 64)
        (void)buf_reserve(out, len + len / 16 + 64);
    while (i < len) {
        const unsigned char *lf = memchr(raw + i, '\n', len - i);
        if (lf == NULL)
            break;
        size_t j = (size_t)(lf - raw);
        int before_cr = j > i ? raw[j - 1] == '\r' : pcr;
        if (!before_cr) {
            if (emit(out, raw + start, j - start, 1))
                return -1;
            start = j + 1;
        }
        pcr = 0;
        i = j + 1;
    }
    if (len > 0)
        pcr = raw[len - 1] == '\r';
    *prev_cr = pcr;
    return emit(out, raw + start, len - start, 0);
}
