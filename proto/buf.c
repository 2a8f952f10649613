#include "proto/buf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX / 2;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_reset(struct buf *b) { b->len = 0; }

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > b->limit || b->len > b->limit - extra)
        return BUF_ETOOBIG;
    size_t need = b->len + extra + 1; /* room for buf_cstr's NUL */
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    unsigned char *p = realloc(b->data, ncap);
    if (!p)
        return BUF_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int r = buf_reserve(b, n);
    if (r)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_putc(struct buf *b, unsigned char c) { return buf_append(b, &c, 1); }
int buf_puts(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[256];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return BUF_ENOMEM;
    if ((size_t)n < sizeof tmp)
        return buf_append(b, tmp, (size_t)n);
    int r = buf_reserve(b, (size_t)n);
    if (r)
        return r;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_put_u32be(struct buf *b, uint32_t v)
{
    unsigned char t[4] = {v >> 24, v >> 16, v >> 8, v};
    return buf_append(b, t, 4);
}

int buf_put_u64be(struct buf *b, uint64_t v)
{
    unsigned char t[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        t[i] = (unsigned char)v;
    return buf_append(b, t, 8);
}

const char *buf_cstr(struct buf *b)
{
    if (buf_reserve(b, 0))
        return "";
    b->data[b->len] = 0;
    return (const char *)b->data;
}
