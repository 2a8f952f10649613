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

int canon_append(struct buf *out, const unsigned char *raw, size_t len, int *prev_cr)
{
    size_t start = 0, i = 0;
    int pcr = *prev_cr;
    while (i < len) {
        const unsigned char *lf = memchr(raw + i, '\n', len - i);
        if (lf == NULL)
            break;
        size_t j = (size_t)(lf - raw);
        int before_cr = j > i ? raw[j - 1] == '\r' : pcr;
        if (!before_cr) {
            if (buf_append(out, raw + start, j - start) || buf_append(out, "\r\n", 2))
                return -1;
            start = j + 1;
        }
        pcr = 0;
        i = j + 1;
    }
    if (len > 0)
        pcr = raw[len - 1] == '\r';
    *prev_cr = pcr;
    return buf_append(out, raw + start, len - start) ? -1 : 0;
}
