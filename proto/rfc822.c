/* rfc822.c — structured header tokenizer; see rfc822.h. The recovery rules
 * (what is accepted where, what a broken value still yields) follow the
 * way Dovecot reads headers, because FETCH output must match it. */
#include "proto/rfc822.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 1 = atext, 2 = alnum or 8-bit, 4 = atext that is a MIME tspecial. */
static const unsigned char atext_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 4,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 4, 0, 4,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

bool rfc822_is_atext(unsigned char ch) { return atext_tab[ch] != 0; }
static bool is_token(unsigned char ch) { return (atext_tab[ch] & 3) != 0 || ch == '.'; }
bool rfc822_is_lwsp(unsigned char ch) { return ch == ' ' || ch == '\t'; }

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

int rfc822_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = lower((unsigned char)*a), y = lower((unsigned char)*b);
        if (x != y || !x)
            return x - y;
    }
}

int rfc822_ncasecmp(const char *a, const char *b, size_t n)
{
    for (; n > 0; n--, a++, b++) {
        int x = lower((unsigned char)*a), y = lower((unsigned char)*b);
        if (x != y || !x)
            return x - y;
    }
    return 0;
}

void rfc822_init(struct rfc822_ctx *c, const unsigned char *s, size_t n,
                 struct buf *last_comment)
{
    c->p = s;
    c->end = s + n;
    c->last_comment = last_comment;
}

static int more(const struct rfc822_ctx *c) { return c->p < c->end ? 1 : 0; }

int rfc822_skip_comment(struct rfc822_ctx *c)
{
    int level = 1;
    if (c->last_comment)
        buf_reset(c->last_comment);
    const unsigned char *start = ++c->p;
    for (; c->p < c->end; c->p++) {
        switch (*c->p) {
        case '(':
            level++;
            break;
        case ')':
            if (--level == 0) {
                if (c->last_comment)
                    buf_append(c->last_comment, start, (size_t)(c->p - start));
                c->p++;
                return more(c);
            }
            break;
        case '\\':
            if (c->last_comment)
                buf_append(c->last_comment, start, (size_t)(c->p - start));
            start = c->p + 1;
            c->p++;
            if (c->p >= c->end)
                return -1;
            break;
        }
    }
    return -1;
}

int rfc822_skip_lwsp(struct rfc822_ctx *c)
{
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            c->p++;
            continue;
        }
        if (ch != '(')
            break;
        if (rfc822_skip_comment(c) < 0)
            return -1;
    }
    return more(c);
}

int rfc822_atom(struct rfc822_ctx *c, struct buf *out)
{
    if (c->p >= c->end || !rfc822_is_atext(*c->p))
        return -1;
    const unsigned char *start = c->p++;
    while (c->p < c->end && rfc822_is_atext(*c->p))
        c->p++;
    buf_append(out, start, (size_t)(c->p - start));
    return c->p < c->end ? rfc822_skip_lwsp(c) : 0;
}

int rfc822_dot_atom(struct rfc822_ctx *c, struct buf *out)
{
    if (c->p >= c->end || !rfc822_is_atext(*c->p))
        return -1;
    const unsigned char *start = c->p++;
    for (;;) {
        while (c->p < c->end && rfc822_is_atext(*c->p))
            c->p++;
        buf_append(out, start, (size_t)(c->p - start));
        if (c->p >= c->end)
            return 0;
        int r = rfc822_skip_lwsp(c);
        if (r <= 0)
            return r;
        if (*c->p != '.')
            return 1;
        c->p++;
        buf_putc(out, '.');
        if ((r = rfc822_skip_lwsp(c)) <= 0)
            return r;
        start = c->p;
    }
}

int rfc822_mime_token(struct rfc822_ctx *c, struct buf *out)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && is_token(*c->p))
        c->p++;
    buf_append(out, start, (size_t)(c->p - start));
    return c->p < c->end ? rfc822_skip_lwsp(c) : 0;
}

int rfc822_quoted_string(struct rfc822_ctx *c, struct buf *out)
{
    c->p++;
    const unsigned char *start = c->p;
    for (; c->p < c->end; c->p++) {
        switch (*c->p) {
        case '"':
            buf_append(out, start, (size_t)(c->p - start));
            c->p++;
            return rfc822_skip_lwsp(c);
        case '\n': {
            size_t len = (size_t)(c->p - start);
            if (len > 0 && start[len - 1] == '\r')
                len--;
            buf_append(out, start, len);
            start = c->p + 1;
            break;
        }
        case '\\':
            c->p++;
            if (c->p >= c->end)
                return -1;
            buf_append(out, start, (size_t)(c->p - start - 1));
            start = c->p;
            break;
        }
    }
    return -1;
}

static int atom_or_dot(struct rfc822_ctx *c, struct buf *out)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && (rfc822_is_atext(*c->p) || *c->p == '.'))
        c->p++;
    buf_append(out, start, (size_t)(c->p - start));
    return c->p < c->end ? rfc822_skip_lwsp(c) : 0;
}

int rfc822_phrase(struct rfc822_ctx *c, struct buf *out)
{
    if (c->p >= c->end)
        return 0;
    if (*c->p == '.')
        return -1;
    for (;;) {
        int r = *c->p == '"' ? rfc822_quoted_string(c, out) : atom_or_dot(c, out);
        if (r <= 0)
            return r;
        unsigned char ch = *c->p;
        if (!rfc822_is_atext(ch) && ch != '"' && ch != '.')
            break;
        buf_putc(out, ' ');
    }
    return rfc822_skip_lwsp(c);
}

static int domain_literal(struct rfc822_ctx *c, struct buf *out)
{
    const unsigned char *start = c->p;
    for (; c->p < c->end; c->p++) {
        if (*c->p == '\\') {
            c->p++;
            if (c->p >= c->end)
                break;
        } else if (*c->p == ']') {
            c->p++;
            buf_append(out, start, (size_t)(c->p - start));
            return rfc822_skip_lwsp(c);
        }
    }
    return -1;
}

int rfc822_domain(struct rfc822_ctx *c, struct buf *out)
{
    c->p++;   /* '@' */
    if (rfc822_skip_lwsp(c) <= 0)
        return -1;
    if (*c->p == '[')
        return domain_literal(c, out);
    return rfc822_dot_atom(c, out);
}

int rfc822_content_type(struct rfc822_ctx *c, struct buf *out)
{
    if (rfc822_skip_lwsp(c) <= 0)
        return -1;
    if (rfc822_mime_token(c, out) <= 0)
        return -1;
    if (*c->p != '/')
        return -1;
    c->p++;
    if (rfc822_skip_lwsp(c) <= 0)
        return -1;
    buf_putc(out, '/');
    int r = rfc822_mime_token(c, out);
    /* anything but parameters after the subtype makes the whole value
     * invalid (the reference then reports an empty type and subtype) */
    if (r > 0 && *c->p != ';')
        return -1;
    return r;
}

/* One "; key=value". Returns 0 at the end, -1 malformed, 1 got one. */
static int content_param(struct rfc822_ctx *c, struct buf *key, struct buf *val)
{
    buf_reset(key);
    buf_reset(val);
    if (c->p >= c->end)
        return 0;
    if (*c->p != ';')
        return -1;
    c->p++;
    if (rfc822_skip_lwsp(c) <= 0)
        return -1;
    if (rfc822_mime_token(c, key) <= 0)
        return -1;
    if (*c->p != '=')
        return -1;
    c->p++;
    int r = rfc822_skip_lwsp(c);
    if (r <= 0) {
        /* no value */
    } else if (*c->p == '"') {
        r = rfc822_quoted_string(c, val);
    } else if (*c->p == '=') {
        /* broken senders write name==?utf-8?b?...?= unquoted */
        while (c->p < c->end && *c->p != ';' && *c->p != ' ' && *c->p != '\t' &&
               *c->p != '\r' && *c->p != '\n')
            buf_putc(val, *c->p++);
    } else {
        r = rfc822_mime_token(c, val);
    }
    return r < 0 ? -1 : 1;
}

struct piece {
    size_t key_off, val_off, order;
    const char *key;   /* set once the store stops growing, for sorting */
    unsigned idx;
    bool ext;
};

/* Dovecot sorts the pieces by exact key then index; ties keep input order. */
static int piece_cmp(const void *a, const void *b)
{
    const struct piece *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    if (r)
        return r;
    if (x->idx != y->idx)
        return x->idx < y->idx ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int put_pair(struct buf *out, const char *k, size_t kn, const char *v, size_t vn)
{
    if (buf_append(out, k, kn) || buf_putc(out, 0) || buf_append(out, v, vn) ||
        buf_putc(out, 0))
        return -1;
    return 0;
}

int rfc2231_params(struct rfc822_ctx *c, struct buf *out, size_t *count)
{
    struct buf key, val, store;
    struct piece *pieces = NULL;
    size_t npieces = 0, cap = 0;
    bool broken = false;
    unsigned idx = 0;
    int r;

    buf_init(&key, 0);
    buf_init(&val, 0);
    buf_init(&store, 0);
    *count = 0;
    while ((r = content_param(c, &key, &val)) != 0) {
        if (r < 0) {
            broken = true;
            if (c->p >= c->end)
                break;
            c->p++;
            continue;
        }
        const char *k = (const char *)buf_cstr(&key);
        size_t klen = strlen(k);   /* a NUL ends the name, as in C strings */
        const char *star = strchr(k, '*');
        bool is2231 = false;
        if (star) {
            const char *q = star;
            bool ext = false;
            /* "key*" alone keeps the index of the previous piece: the
             * reference parser does this, and its output shows it */
            if (q[1] != '\0') {
                idx = 0;
                q++;
                while (*q >= '0' && *q <= '9') {
                    idx = idx * 10 + (unsigned)(*q - '0');
                    q++;
                }
            }
            if (*q == '*') {
                ext = true;
                q++;
            }
            if (*q == '\0') {
                is2231 = true;
                if (npieces == cap) {
                    size_t ncap = cap ? cap * 2 : 8;
                    struct piece *np = realloc(pieces, ncap * sizeof *np);
                    if (!np)
                        goto fail;
                    pieces = np;
                    cap = ncap;
                }
                struct piece *pc = &pieces[npieces];
                pc->key_off = store.len;
                buf_append(&store, k, (size_t)(star - k));
                buf_putc(&store, 0);
                pc->val_off = store.len;
                buf_append(&store, val.data, val.len);
                buf_putc(&store, 0);
                pc->idx = idx;
                pc->ext = ext;
                pc->order = npieces++;
            }
        }
        if (!is2231) {
            const char *v = buf_cstr(&val);
            if (put_pair(out, k, klen, v, strlen(v)))
                goto fail;
            (*count)++;
        }
    }
    if (npieces > 0) {
        for (size_t i = 0; i < npieces; i++)
            pieces[i].key = (const char *)store.data + pieces[i].key_off;
        qsort(pieces, npieces, sizeof *pieces, piece_cmp);
        const char *sd = (const char *)store.data;
        for (size_t i = 0, next; i < npieces; i = next) {
            bool ok = true, have_ext = false;
            unsigned want = 0;
            size_t j;
            for (j = i; j < npieces; j++) {
                if (rfc822_casecmp(sd + pieces[i].key_off, sd + pieces[j].key_off) != 0)
                    break;
                if (pieces[j].idx != want)
                    ok = false;
                if (pieces[j].ext)
                    have_ext = true;
                want++;
            }
            next = j;
            if (!ok) {
                for (j = i; j < next; j++) {
                    struct buf kb;
                    buf_init(&kb, 0);
                    buf_printf(&kb, pieces[j].ext ? "%s*%u*" : "%s*%u",
                               sd + pieces[j].key_off, pieces[j].idx);
                    const char *v = sd + pieces[j].val_off;
                    int e = put_pair(out, (const char *)buf_cstr(&kb), kb.len, v, strlen(v));
                    buf_free(&kb);
                    if (e)
                        goto fail;
                    (*count)++;
                }
            } else {
                struct buf vb, kb;
                buf_init(&vb, 0);
                buf_init(&kb, 0);
                if (!pieces[i].ext && have_ext)
                    buf_puts(&vb, "''");
                for (j = i; j < next; j++) {
                    const char *v = sd + pieces[j].val_off;
                    if (!pieces[j].ext && have_ext) {
                        for (; *v; v++) {
                            if (*v == '%')
                                buf_puts(&vb, "%25");
                            else
                                buf_putc(&vb, (unsigned char)*v);
                        }
                    } else {
                        buf_puts(&vb, v);
                    }
                }
                buf_puts(&kb, sd + pieces[i].key_off);
                if (have_ext)
                    buf_putc(&kb, '*');
                int e = put_pair(out, (const char *)buf_cstr(&kb), kb.len,
                                 (const char *)buf_cstr(&vb), vb.len);
                buf_free(&vb);
                buf_free(&kb);
                if (e)
                    goto fail;
                (*count)++;
            }
        }
    }
    free(pieces);
    buf_free(&key);
    buf_free(&val);
    buf_free(&store);
    return broken ? -1 : 0;
fail:
    free(pieces);
    buf_free(&key);
    buf_free(&val);
    buf_free(&store);
    return -1;
}

bool rfc2231_next(const struct buf *list, size_t *pos, const char **key,
                  const char **value)
{
    if (*pos >= list->len)
        return false;
    const char *d = (const char *)list->data;
    *key = d + *pos;
    *pos += strlen(*key) + 1;
    *value = d + *pos;
    *pos += strlen(*value) + 1;
    return true;
}
