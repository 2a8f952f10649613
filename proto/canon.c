#include "proto/canon.h"
#include <string.h>

uint64_t canon_len(const unsigned char *raw, size_t len, int *prev_cr)
{
    uint64_t n = len;
    int pcr = *prev_cr;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '\n' && !pcr)
            n++;
        pcr = raw[i] == '\r';
    }
    *prev_cr = pcr;
    return n;
}

int canon_append(struct buf *out, const unsigned char *raw, size_t len, int *prev_cr)
{
    size_t start = 0;
    int pcr = *prev_cr;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '\n' && !pcr) {
            if (buf_append(out, raw + start, i - start) || buf_append(out, "\r\n", 2))
                return -1;
            start = i + 1;
        }
        pcr = raw[i] == '\r';
    }
    *prev_cr = pcr;
    return buf_append(out, raw + start, len - start) ? -1 : 0;
}
