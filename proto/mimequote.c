/* mimequote.c — see mimequote.h. */
#include "proto/mimequote.h"
#include <stdbool.h>
#include <string.h>

#define MAX_ESCAPES 4

static size_t cstrlen(const unsigned char *s, size_t n)
{
    const unsigned char *z = memchr(s, 0, n);
    return z ? (size_t)(z - s) : n;
}

static int quoted(struct buf *out, const unsigned char *s, size_t n)
{
    if (buf_putc(out, '"'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '\r' || ch == '\n' || ch >= 0x80)
            continue;
        if ((ch == '"' || ch == '\\') && buf_putc(out, '\\'))
            return -1;
        if (buf_putc(out, ch))
            return -1;
    }
    return buf_putc(out, '"');
}

int mq_string(struct buf *out, const unsigned char *s, size_t n)
{
    unsigned esc = 0;
    n = cstrlen(s, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        bool lit = false;
        if (ch == '"' || ch == '\\')
            lit = esc++ >= MAX_ESCAPES;
        else if (ch == '\r' || ch == '\n' || ch >= 0x80)
            lit = true;
        if (lit) {
            if (buf_printf(out, "{%zu}\r\n", n))
                return -1;
            return buf_append(out, s, n);
        }
    }
    return quoted(out, s, n);
}

int mq_nstring(struct buf *out, const unsigned char *s, size_t n)
{
    if (!s)
        return buf_puts(out, "NIL");
    return mq_string(out, s, n);
}

int mq_nstring_nolf(struct buf *out, const unsigned char *s, size_t n)
{
    if (!s)
        return buf_puts(out, "NIL");
    n = cstrlen(s, n);
    if (!memchr(s, '\r', n) && !memchr(s, '\n', n))
        return mq_string(out, s, n);
    /* a line break not followed by white space becomes one space, so the
     * words on both sides stay apart (as the reference does) */
    struct buf t;
    buf_init(&t, 0);
    for (size_t i = 0; i < n; i++) {
        int e = 0;
        if (s[i] != '\r' && s[i] != '\n') {
            e = buf_putc(&t, s[i]);
        } else if (i + 1 < n && s[i + 1] != ' ' && s[i + 1] != '\t' && s[i + 1] != '\r' &&
                   s[i + 1] != '\n') {
            e = buf_putc(&t, ' ');
        }
        if (e) {
            buf_free(&t);
            return -1;
        }
    }
    int r = mq_string(out, t.data ? t.data : (const unsigned char *)"", t.len);
    buf_free(&t);
    return r;
}

int mq_humans(struct buf *out, const unsigned char *s, size_t n)
{
    size_t remove = 0, i;
    bool ws_prefix = true, last_lwsp = true, modify = false;
    for (i = 0; i < n; i++) {
        switch (s[i]) {
        case 0:
            last_lwsp = false;
            modify = true;
            break;
        case '\r':
        case '\n':
        case '\t':
            modify = true;
            /* fall through */
        case ' ':
            if (last_lwsp) {
                modify = true;
                remove++;
            }
            last_lwsp = true;
            break;
        case '"':
        case '\\':
            modify = true;
            last_lwsp = false;
            break;
        default:
            if (s[i] & 0x80)
                modify = true;
            last_lwsp = false;
            break;
        }
        if (!last_lwsp)
            ws_prefix = false;
    }
    if (last_lwsp && i > 0 && !ws_prefix) {
        modify = true;
        remove++;
    }
    if (!modify) {
        if (buf_putc(out, '"') || buf_append(out, s, n) || buf_putc(out, '"'))
            return -1;
        return 0;
    }
    if (n == remove)
        return buf_puts(out, "\"\"");
    /* build the cleaned text first so the literal length is exact */
    struct buf t;
    buf_init(&t, 0);
    last_lwsp = true;
    ws_prefix = true;
    for (i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == 0) {
            buf_putc(&t, 0x80);
            last_lwsp = false;
        } else if (ch == '\r' || ch == '\n' || ch == '\t' || ch == ' ') {
            if (!last_lwsp)
                buf_putc(&t, ' ');
            last_lwsp = true;
        } else {
            last_lwsp = false;
            buf_putc(&t, ch);
        }
        if (!last_lwsp)
            ws_prefix = false;
    }
    if (last_lwsp && i > 0 && !ws_prefix && t.len > 0)
        t.len--;
    int r = buf_printf(out, "{%zu}\r\n", t.len) || buf_append(out, t.data, t.len) ? -1 : 0;
    buf_free(&t);
    return r;
}
