/* mimehdr.c — header field iteration; see mimehdr.h. The field rules are
 * the ones the MIME parser (mime.c) uses, so both see the same fields. */
#include "proto/mimehdr.h"
#include "proto/rfc822.h"
#include <string.h>

void mimehdr_init(struct mimehdr_iter *it, const unsigned char *hdr, size_t len)
{
    it->p = hdr;
    it->end = len ? hdr + len : hdr;   /* hdr may be NULL for an empty header */
}

static const unsigned char *line_end(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
    return lf ? lf + 1 : end;
}

int mimehdr_next(struct mimehdr_iter *it, struct mimehdr_field *f)
{
    const unsigned char *p = it->p, *end = it->end;
    if (p >= end)
        return 0;
    if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
        return 0;   /* the blank line */
    const unsigned char *le = line_end(p, end);
    const unsigned char *fe = le;
    while (fe < end && (*fe == ' ' || *fe == '\t'))
        fe = line_end(fe, end);
    /* content end: strip the final line end */
    const unsigned char *ce = fe;
    if (ce > p && ce[-1] == '\n') {
        ce--;
        if (ce > p && ce[-1] == '\r')
            ce--;
    }
    const unsigned char *colon = memchr(p, ':', (size_t)(le - p));
    f->raw = p;
    f->raw_len = (size_t)(fe - p);
    if (!colon || colon >= ce) {
        const unsigned char *ne = le;
        if (ne > p && ne[-1] == '\n') {
            ne--;
            if (ne > p && ne[-1] == '\r')
                ne--;
        }
        f->name = p;
        f->name_len = (size_t)(ne - p);
        f->value = ce;
        f->value_len = 0;
        f->has_colon = false;
    } else {
        const unsigned char *ne = colon;
        while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        f->name = p;
        f->name_len = (size_t)(ne - p);
        const unsigned char *v = colon + 1, *v0 = v, *l1 = le;
        if (l1 > v0 && l1[-1] == '\n') {
            l1--;
            if (l1 > v0 && l1[-1] == '\r')
                l1--;
        }
        while (v < l1 && (*v == ' ' || *v == '\t'))
            v++;
        /* a first line that is only white space loses just one of it */
        if (v == l1 && v0 < l1)
            v = v0 + 1;
        f->value = v;
        f->value_len = (size_t)(ce - v);
        f->has_colon = true;
    }
    it->p = fe;
    return 1;
}

int mimehdr_unfold(const struct mimehdr_field *f, struct buf *out)
{
    const unsigned char *p = f->value, *end = f->value + f->value_len;
    while (p < end) {
        const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *seg_end = lf ? lf : end;
        if (lf && seg_end > p && seg_end[-1] == '\r')
            seg_end--;
        if (buf_append(out, p, (size_t)(seg_end - p)))
            return -1;
        p = lf ? lf + 1 : end;
    }
    return 0;
}

bool mimehdr_name_is(const struct mimehdr_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && rfc822_ncasecmp((const char *)f->name, name, n) == 0;
}

int mimehdr_content_type(const unsigned char *hdr, size_t len, struct buf *type,
                         struct buf *subtype, struct buf *params)
{
    struct mimehdr_iter it;
    struct mimehdr_field f;
    mimehdr_init(&it, hdr, len);
    buf_reset(type);
    buf_reset(subtype);
    buf_reset(params);
    while (mimehdr_next(&it, &f) > 0) {
        if (!f.has_colon || !mimehdr_name_is(&f, "Content-Type"))
            continue;
        struct rfc822_ctx c;
        struct buf ct;
        size_t n;
        buf_init(&ct, 0);
        rfc822_init(&c, f.value, f.value_len, NULL);
        rfc822_skip_lwsp(&c);
        int r = rfc822_content_type(&c, &ct);
        if (r >= 0) {
            const unsigned char *slash = memchr(ct.data, '/', ct.len);
            size_t tl = slash ? (size_t)(slash - ct.data) : ct.len;
            for (size_t i = 0; i < ct.len; i++) {
                unsigned char ch = ct.data[i];
                if (ch >= 'A' && ch <= 'Z')
                    ch = (unsigned char)(ch + 32);
                if (i < tl)
                    buf_putc(type, ch);
                else if (i > tl)
                    buf_putc(subtype, ch);
            }
            (void)rfc2231_params(&c, params, &n);
        }
        buf_free(&ct);
        return 1;
    }
    return 0;
}

const char *mimehdr_param(const struct buf *params, const char *name)
{
    size_t pos = 0;
    const char *k, *v;
    while (rfc2231_next(params, &pos, &k, &v))
        if (rfc822_casecmp(k, name) == 0)
            return v;
    return NULL;
}

int mimehdr_part_charset(const unsigned char *canon, size_t canon_len,
                         const struct msginfo_part *p, char *out, size_t outsz)
{
    const char *cs = "us-ascii";
    struct buf t, s, prm;
    int ret = 0;
    if (p->hdr_off > canon_len || p->hdr_len > canon_len - p->hdr_off)
        return -1;
    buf_init(&t, 0);
    buf_init(&s, 0);
    buf_init(&prm, 0);
    if (mimehdr_content_type(canon + p->hdr_off, (size_t)p->hdr_len, &t, &s, &prm) > 0) {
        const char *v = mimehdr_param(&prm, "charset");
        const char *ext = v ? NULL : mimehdr_param(&prm, "charset*");
        if (v && *v) {
            cs = v;
        } else if (ext) {
            /* charset'language'value: only the charset part names the charset */
            const char *q = strchr(ext, '\'');
            size_t n = q ? (size_t)(q - ext) : 0;
            if (n > 0 && n < outsz) {
                memcpy(out, ext, n);
                out[n] = '\0';
                goto done;
            }
        }
    }
    if (strlen(cs) >= outsz)
        ret = -1;
    else
        strcpy(out, cs);
done:
    buf_free(&t);
    buf_free(&s);
    buf_free(&prm);
    return ret;
}
