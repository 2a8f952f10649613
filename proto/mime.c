/* mime.c — MIME structure parser; see mime.h.
 *
 * The parser is a small state machine over the whole buffer. Sizes are
 * accounted the way Dovecot accounts them (a child's size is added to its
 * parent's body when the child ends; a part starts where its parent's
 * accounted octets end), which keeps every odd recovery case — a header cut
 * by a boundary, a boundary at the very start of a body — consistent with
 * the reference server's part offsets. */
#include "proto/mime.h"
#include "proto/msginfo.h"
#include "proto/rfc822.h"
#include "proto/mimehdr.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* RFC 2046 allows 70 characters; Dovecot keeps up to 80 and looks at most
 * this far into a boundary line. */
#define BOUNDARY_MAX 80

struct bnd {
    char s[BOUNDARY_MAX + 1];
    size_t len;
    uint32_t part;
    bool epilogue;
};

enum st {
    ST_HDR_INIT, ST_HDR, ST_EOH, ST_BODY_BOUNDARY, ST_BODY_EOF, ST_SKIP_BLINE,
    ST_MIME_HDR_INIT, ST_RFC822_INIT, ST_EOF,
};

struct pctx {
    const unsigned char *m;
    size_t len, pos;
    struct mime_tree *t;
    uint32_t cur;
    struct bnd *bs;
    size_t nb, bcap;
    /* header state of the current part */
    bool seen_ct, ct_valid, multipart, have_pending;
    char pending[BOUNDARY_MAX + 1];
    size_t pending_len;
    unsigned prev_nl;
};

void mime_tree_init(struct mime_tree *t)
{
    t->parts = NULL;
    t->n = t->cap = 0;
}

void mime_tree_free(struct mime_tree *t)
{
    free(t->parts);
    mime_tree_init(t);
}

static int add_part(struct pctx *c, uint32_t parent, uint32_t flags)
{
    struct mime_tree *t = c->t;
    if (t->n == t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 8;
        struct mime_part *np = realloc(t->parts, (size_t)ncap * sizeof *np);
        if (!np)
            return -1;
        t->parts = np;
        t->cap = ncap;
    }
    struct mime_part *p = &t->parts[t->n];
    memset(p, 0, sizeof *p);
    p->parent = parent;
    p->first_child = p->last_child = p->next_sibling = MIME_NONE;
    p->flags = flags;
    if (parent != MIME_NONE) {
        struct mime_part *pp = &t->parts[parent];
        p->hdr_off = pp->hdr_off + pp->hdr_size + pp->body_size;
        p->depth = pp->depth + 1;
        if (pp->last_child == MIME_NONE)
            pp->first_child = t->n;
        else
            t->parts[pp->last_child].next_sibling = t->n;
        pp->last_child = t->n;
    }
    c->cur = t->n++;
    return 0;
}

/* The current part ends: its octets become part of its parent's body. */
static void finish_part(struct pctx *c)
{
    struct mime_part *p = &c->t->parts[c->cur];
    struct mime_part *pp = &c->t->parts[p->parent];
    pp->body_size += p->hdr_size + p->body_size;
    c->cur = p->parent;
}

/* Is there a "--boundary" line at s? Returns the stack index or -1. */
static long bline_find(struct pctx *c, size_t s)
{
    const unsigned char *m = c->m;
    if (c->nb == 0 || s + 2 > c->len || m[s] != '-' || m[s + 1] != '-')
        return -1;
    const unsigned char *d = m + s + 2;
    size_t size = c->len - s - 2;
    /* Dovecot 2.3 compares each boundary as a prefix of the rest of the
     * line (RFC 2046 5.1.1 allows trailing text); the longest one wins. */
    long best = -1;
    for (size_t i = c->nb; i-- > 0;) {
        struct bnd *b = &c->bs[i];
        if (b->len <= size && memcmp(b->s, d, b->len) == 0 &&
            (best < 0 || c->bs[best].len < b->len))
            best = (long)i;
    }
    if (best >= 0) {
        struct bnd *b = &c->bs[best];
        b->epilogue = size >= b->len + 2 && d[b->len] == '-' && d[b->len + 1] == '-';
    }
    return best;
}

static int push_boundary(struct pctx *c)
{
    if (c->nb == c->bcap) {
        size_t ncap = c->bcap ? c->bcap * 2 : 4;
        struct bnd *nb = realloc(c->bs, ncap * sizeof *nb);
        if (!nb)
            return -1;
        c->bs = nb;
        c->bcap = ncap;
    }
    struct bnd *b = &c->bs[c->nb++];
    memcpy(b->s, c->pending, c->pending_len);
    b->s[c->pending_len] = '\0';
    b->len = c->pending_len;
    b->part = c->cur;
    b->epilogue = false;
    c->have_pending = false;
    return 0;
}

static int hexdig(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* First Content-Type of the part: sets the type flags, and remembers the
 * boundary of a multipart. */
static void content_type(struct pctx *c, const struct mimehdr_field *f)
{
    struct mime_part *p = &c->t->parts[c->cur];
    struct rfc822_ctx rc;
    struct buf ct, params;
    size_t n;

    buf_init(&ct, 0);
    rfc822_init(&rc, f->value, f->value_len, NULL);
    rfc822_skip_lwsp(&rc);
    int r = rfc822_content_type(&rc, &ct);
    const char *s = buf_cstr(&ct);
    c->ct_valid = r >= 0;
    if (!s || r < 0)
        s = "";   /* an invalid Content-Type gives no type: the default applies */
    if (rfc822_casecmp(s, "message/rfc822") == 0)
        p->flags |= MIME_F_RFC822;
    else if (rfc822_ncasecmp(s, "text", 4) == 0 && (s[4] == '\0' || s[4] == '/'))
        p->flags |= MIME_F_TEXT;
    else if (rfc822_ncasecmp(s, "multipart/", 10) == 0) {
        p->flags |= MIME_F_MULTIPART;
        if (rfc822_casecmp(s + 10, "digest") == 0)
            p->flags |= MIME_F_DIGEST;
    }
    buf_free(&ct);
    if (r < 0 || !(p->flags & MIME_F_MULTIPART) || c->have_pending)
        return;
    buf_init(&params, 0);
    (void)rfc2231_params(&rc, &params, &n);
    size_t pos = 0;
    const char *k, *v;
    const char *ext = NULL;
    while (rfc2231_next(&params, &pos, &k, &v)) {
        if (rfc822_casecmp(k, "boundary") == 0) {
            size_t bl = strlen(v);
            if (bl > BOUNDARY_MAX)
                bl = BOUNDARY_MAX;
            memcpy(c->pending, v, bl);
            c->pending_len = bl;
            c->have_pending = true;
            break;
        }
        if (!ext && rfc822_casecmp(k, "boundary*") == 0)
            ext = v;
    }
    if (!c->have_pending && ext) {
        /* RFC 2231 4 applies to every parameter, boundary included:
         * charset'language'%XX-encoded value (Dovecot ignores this form;
         * docs/COMPATIBILITY.md) */
        const char *q = strchr(ext, '\'');
        q = q ? strchr(q + 1, '\'') : NULL;
        const char *src = q ? q + 1 : ext;
        size_t bl = 0;
        for (; *src && bl < BOUNDARY_MAX; src++) {
            int hi, lo;
            if (*src == '%' && (hi = hexdig(src[1])) >= 0 && (lo = hexdig(src[2])) >= 0) {
                c->pending[bl++] = (char)(hi * 16 + lo);
                src += 2;
            } else {
                c->pending[bl++] = *src;
            }
        }
        c->pending_len = bl;
        c->have_pending = true;
    }
    buf_free(&params);
}

static bool at_eoh(const struct pctx *c)
{
    const unsigned char *m = c->m;
    size_t p = c->pos;
    return p < c->len && (m[p] == '\n' || (m[p] == '\r' && p + 1 < c->len && m[p + 1] == '\n'));
}

static bool container_allowed(const struct pctx *c)
{
    const struct mime_part *p = &c->t->parts[c->cur];
    return p->depth + 1 < MSGINFO_MAX_DEPTH && c->t->n < MSGINFO_MAX_PARTS;
}

static uint64_t count_lf(const unsigned char *s, uint64_t n)
{
    uint64_t k = 0;
    const unsigned char *e = s + n;
    while (s < e && (s = memchr(s, '\n', (size_t)(e - s))) != NULL) {
        k++;
        s++;
    }
    return k;
}

/* Line counts, bottom-up: each octet is scanned once, at the innermost part
 * that holds it. */
static void count_lines(const unsigned char *m, struct mime_tree *t)
{
    for (uint32_t i = t->n; i-- > 0;) {
        struct mime_part *p = &t->parts[i];
        p->hdr_lines = count_lf(m + p->hdr_off, p->hdr_size);
        uint64_t pos = p->hdr_off + p->hdr_size, end = pos + p->body_size, lines = 0;
        for (uint32_t ch = p->first_child; ch != MIME_NONE; ch = t->parts[ch].next_sibling) {
            struct mime_part *q = &t->parts[ch];
            lines += count_lf(m + pos, q->hdr_off - pos);
            lines += q->hdr_lines + q->lines;
            pos = q->hdr_off + q->hdr_size + q->body_size;
        }
        lines += count_lf(m + pos, end - pos);
        p->lines = lines;
    }
}

int mime_parse(const unsigned char *m, size_t len, struct mime_tree *t, const char **err)
{
    struct pctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.len = len;
    c.t = t;
    t->n = 0;
    if (add_part(&c, MIME_NONE, 0) < 0)
        goto nomem;
    enum st st = ST_HDR_INIT;
    while (st != ST_EOF) {
        struct mime_part *p = &t->parts[c.cur];
        switch (st) {
        case ST_HDR_INIT:
            c.seen_ct = false;
            c.ct_valid = false;
            c.have_pending = false;
            c.multipart = false;
            c.prev_nl = 0;
            st = ST_HDR;
            break;
        case ST_HDR: {
            if (c.pos >= len) {
                st = ST_EOH;
                break;
            }
            bool eoh = at_eoh(&c);
            if (eoh && c.have_pending && (p->flags & MIME_F_IS_MIME)) {
                if (container_allowed(&c)) {
                    if (push_boundary(&c) < 0)
                        goto nomem;
                    c.multipart = true;
                } else {
                    c.have_pending = false;
                    p->flags &= ~(uint32_t)MIME_F_MULTIPART;
                }
            }
            long b = bline_find(&c, c.pos);
            if (b >= 0 && c.bs[b].part != c.cur) {
                /* a boundary ends the header; its line end is the parent's */
                if (c.prev_nl > 0 && p->parent != MIME_NONE) {
                    p->hdr_size -= c.prev_nl;
                    t->parts[p->parent].body_size += c.prev_nl;
                }
                st = ST_EOH;
                break;
            }
            if (eoh) {
                /* the blank line counts as a header line: if a boundary
                 * follows it, its line end belongs to that boundary too */
                size_t nl = m[c.pos] == '\r' ? 2 : 1;
                p->hdr_size += nl;
                c.pos += nl;
                c.prev_nl = (unsigned)nl;
                b = bline_find(&c, c.pos);
                if (b >= 0 && c.bs[b].part != c.cur && p->parent != MIME_NONE) {
                    p->hdr_size -= c.prev_nl;
                    t->parts[p->parent].body_size += c.prev_nl;
                }
                st = ST_EOH;
                break;
            }
            struct mimehdr_iter it;
            struct mimehdr_field f;
            mimehdr_init(&it, m + c.pos, len - c.pos);
            if (mimehdr_next(&it, &f) <= 0) {   /* cannot happen: not at eoh */
                st = ST_EOH;
                break;
            }
            if (f.has_colon) {
                if (mimehdr_name_is(&f, "Mime-Version")) {
                    p->flags |= MIME_F_IS_MIME;
                } else if (mimehdr_name_is(&f, "Content-Type")) {
                    p->flags |= MIME_F_IS_MIME;
                    if (!c.seen_ct) {
                        c.seen_ct = true;
                        content_type(&c, &f);
                    }
                }
            }
            p->hdr_size += f.raw_len;
            c.pos += f.raw_len;
            const unsigned char *fe = f.raw + f.raw_len;
            c.prev_nl = f.raw_len > 0 && fe[-1] == '\n'
                            ? (f.raw_len > 1 && fe[-2] == '\r' ? 2 : 1) : 0;
            break;
        }
        case ST_EOH:
            if (!(p->flags & MIME_F_IS_MIME))
                p->flags = 0;
            c.have_pending = false;
            /* RFC 2045 5.2: no Content-Type, or an invalid one, means the
             * default (RFC 2046 5.1.5: message/rfc822 inside a digest) */
            if (!c.seen_ct || !c.ct_valid || !(p->flags & MIME_F_IS_MIME)) {
                if (p->parent != MIME_NONE && (t->parts[p->parent].flags & MIME_F_DIGEST))
                    p->flags |= MIME_F_RFC822;
                else
                    p->flags |= MIME_F_TEXT;
            }
            if (c.multipart) {
                c.multipart = false;
                st = ST_BODY_BOUNDARY;
            } else if ((p->flags & MIME_F_RFC822) && container_allowed(&c)) {
                st = ST_RFC822_INIT;
            } else {
                p->flags &= ~(uint32_t)MIME_F_RFC822;
                st = c.nb > 0 ? ST_BODY_BOUNDARY : ST_BODY_EOF;
            }
            break;
        case ST_RFC822_INIT:
            if (add_part(&c, c.cur, 0) < 0)
                goto nomem;
            st = ST_HDR_INIT;
            break;
        case ST_MIME_HDR_INIT:
            if (add_part(&c, c.cur, MIME_F_IS_MIME) < 0)
                goto nomem;
            st = ST_HDR_INIT;
            break;
        case ST_BODY_EOF:
            p->body_size += len - c.pos;
            c.pos = len;
            st = ST_EOF;
            break;
        case ST_BODY_BOUNDARY: {
            long b = bline_find(&c, c.pos);
            size_t at = c.pos;
            bool first = true;
            if (b < 0) {
                first = false;
                size_t q = c.pos;
                const unsigned char *lf;
                while (q < len && (lf = memchr(m + q, '\n', len - q)) != NULL) {
                    size_t s = (size_t)(lf - m) + 1;
                    if (s + 1 < len && m[s] == '-' && m[s + 1] == '-' &&
                        (b = bline_find(&c, s)) >= 0) {
                        at = (size_t)(lf - m);
                        if (at > c.pos && m[at - 1] == '\r')
                            at--;
                        break;
                    }
                    q = s;
                }
                if (b < 0) {
                    p->body_size += len - c.pos;
                    c.pos = len;
                    st = ST_EOF;
                    break;
                }
                p->body_size += at - c.pos;
                c.pos = at;
            }
            /* the boundary ends every part inside the multipart that owns it */
            struct bnd bd = c.bs[b];
            while (c.cur != bd.part)
                finish_part(&c);
            c.nb = bd.epilogue ? (size_t)b : (size_t)b + 1;
            size_t line = first ? 0 : (m[at] == '\r' ? 2 : 1);
            line += 2 + bd.len + (bd.epilogue ? 2 : 0);
            if (line > len - at)
                line = len - at;
            t->parts[c.cur].body_size += line;
            c.pos = at + line;
            st = ST_SKIP_BLINE;
            break;
        }
        case ST_SKIP_BLINE: {
            const unsigned char *lf = c.pos < len ? memchr(m + c.pos, '\n', len - c.pos) : NULL;
            if (!lf) {
                p->body_size += len - c.pos;
                c.pos = len;
                st = ST_EOF;
                break;
            }
            size_t e = (size_t)(lf - m) + 1;
            p->body_size += e - c.pos;
            c.pos = e;
            if (c.nb == 0 || c.bs[c.nb - 1].part != c.cur)
                st = c.nb > 0 ? ST_BODY_BOUNDARY : ST_BODY_EOF;
            else if (t->n >= MSGINFO_MAX_PARTS)
                st = ST_BODY_BOUNDARY;   /* no room for more parts: keep it as body */
            else
                st = ST_MIME_HDR_INIT;
            break;
        }
        case ST_EOF:
            break;
        }
        if (st != ST_EOF && c.pos >= len && (st == ST_BODY_BOUNDARY || st == ST_BODY_EOF ||
                                               st == ST_SKIP_BLINE))
            st = ST_EOF;
    }
    while (t->parts[c.cur].parent != MIME_NONE)
        finish_part(&c);
    free(c.bs);
    count_lines(m, t);
    return 0;
nomem:
    free(c.bs);
    *err = "out of memory";
    return -1;
}
