/* bodystructure.c — BODY/BODYSTRUCTURE writer; see bodystructure.h.
 *
 * Each part's Content-* fields are read from its header (first occurrence
 * wins, except that a Content-Disposition without parameters may be
 * replaced by a later one, as in the reference). Parts that are not MIME
 * (no MIME-Version, no Content-Type) ignore their Content-* fields. The
 * recursion follows the part tree, whose depth mime.c caps. */
#include "proto/bodystructure.h"
#include "proto/envelope.h"
#include "proto/mimehdr.h"
#include "proto/mimequote.h"
#include "proto/rfc822.h"
#include <string.h>

struct pdata {
    bool ct_seen, has_ct, ct_ok;   /* has_ct: a valid Content-Type */
    struct buf type, subtype, params;   /* params: key\0value\0 pairs */
    bool has_cte;
    struct buf cte;
    const unsigned char *id, *desc, *md5, *loc;
    size_t id_len, desc_len, md5_len, loc_len;
    bool has_disp;
    struct buf disp, disp_params;
    size_t disp_n;
    bool has_lang;
    struct buf lang;    /* atoms, NUL separated */
};

static void pdata_init(struct pdata *d)
{
    memset(d, 0, sizeof *d);
    buf_init(&d->type, 0);
    buf_init(&d->subtype, 0);
    buf_init(&d->params, 0);
    buf_init(&d->cte, 0);
    buf_init(&d->disp, 0);
    buf_init(&d->disp_params, 0);
    buf_init(&d->lang, 0);
}

static void pdata_free(struct pdata *d)
{
    buf_free(&d->type);
    buf_free(&d->subtype);
    buf_free(&d->params);
    buf_free(&d->cte);
    buf_free(&d->disp);
    buf_free(&d->disp_params);
    buf_free(&d->lang);
}

static void parse_ct(struct pdata *d, const struct mimehdr_field *f)
{
    struct rfc822_ctx c;
    struct buf ct;
    size_t n;
    buf_init(&ct, 0);
    rfc822_init(&c, f->value, f->value_len, NULL);
    rfc822_skip_lwsp(&c);
    int r = rfc822_content_type(&c, &ct);
    d->ct_seen = true;
    /* RFC 2045 5.2: an invalid Content-Type is treated as absent, i.e.
     * text/plain; charset=us-ascii (Dovecot writes "" "" instead) */
    d->has_ct = r >= 0;
    if (r >= 0) {
        const unsigned char *sl = ct.len ? memchr(ct.data, '/', ct.len) : NULL;
        size_t tl = sl ? (size_t)(sl - ct.data) : ct.len;
        buf_append(&d->type, ct.data, tl);
        if (sl)
            buf_append(&d->subtype, sl + 1, ct.len - tl - 1);
        d->ct_ok = true;
        (void)rfc2231_params(&c, &d->params, &n);
    }
    buf_free(&ct);
}

static void parse_cte(struct pdata *d, const struct mimehdr_field *f)
{
    struct rfc822_ctx c;
    rfc822_init(&c, f->value, f->value_len, NULL);
    rfc822_skip_lwsp(&c);
    buf_reset(&d->cte);
    if (rfc822_mime_token(&c, &d->cte) >= 0 && rfc822_skip_lwsp(&c) == 0 && d->cte.len > 0)
        d->has_cte = true;
}

static void parse_disp(struct pdata *d, const struct mimehdr_field *f)
{
    struct rfc822_ctx c;
    rfc822_init(&c, f->value, f->value_len, NULL);
    rfc822_skip_lwsp(&c);
    struct buf tok;
    buf_init(&tok, 0);
    if (rfc822_mime_token(&c, &tok) < 0) {
        buf_free(&tok);
        return;
    }
    buf_reset(&d->disp);
    buf_append(&d->disp, tok.data, tok.len);
    buf_free(&tok);
    d->has_disp = true;
    buf_reset(&d->disp_params);
    (void)rfc2231_params(&c, &d->disp_params, &d->disp_n);
}

static void parse_lang(struct pdata *d, const struct mimehdr_field *f)
{
    struct rfc822_ctx c;
    struct buf a;
    buf_init(&a, 0);
    rfc822_init(&c, f->value, f->value_len, NULL);
    rfc822_skip_lwsp(&c);
    while (rfc822_atom(&c, &a) >= 0) {
        buf_append(&d->lang, a.data, a.len);
        buf_putc(&d->lang, 0);
        d->has_lang = true;
        buf_reset(&a);
        if (c.p >= c.end || *c.p != ',')
            break;
        c.p++;
        rfc822_skip_lwsp(&c);
    }
    buf_free(&a);
}

static void pdata_parse(struct pdata *d, const unsigned char *hdr, size_t len)
{
    struct mimehdr_iter it;
    struct mimehdr_field f;
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) > 0) {
        if (!f.has_colon || f.name_len < 8 ||
            rfc822_ncasecmp((const char *)f.name, "Content-", 8) != 0)
            continue;
        if (mimehdr_name_is(&f, "Content-Type")) {
            if (!d->ct_seen)
                parse_ct(d, &f);
        } else if (mimehdr_name_is(&f, "Content-Transfer-Encoding")) {
            if (!d->has_cte)
                parse_cte(d, &f);
        } else if (mimehdr_name_is(&f, "Content-ID")) {
            if (!d->id)
                d->id = f.value, d->id_len = f.value_len;
        } else if (mimehdr_name_is(&f, "Content-Description")) {
            if (!d->desc)
                d->desc = f.value, d->desc_len = f.value_len;
        } else if (mimehdr_name_is(&f, "Content-MD5")) {
            if (!d->md5)
                d->md5 = f.value, d->md5_len = f.value_len;
        } else if (mimehdr_name_is(&f, "Content-Location")) {
            if (!d->loc)
                d->loc = f.value, d->loc_len = f.value_len;
        } else if (mimehdr_name_is(&f, "Content-Language")) {
            if (!d->has_lang)
                parse_lang(d, &f);
        } else if (mimehdr_name_is(&f, "Content-Disposition")) {
            if (d->disp_n == 0)
                parse_disp(d, &f);
        }
    }
}

static int write_params(struct buf *out, const struct buf *params, bool default_charset)
{
    size_t pos = 0, i = 0;
    const char *k, *v;
    bool seen = false;
    int r = 0;
    if (!default_charset && params->len == 0)
        return buf_puts(out, "NIL");
    r |= buf_putc(out, '(');
    while (rfc2231_next(params, &pos, &k, &v)) {
        if (i++ > 0)
            r |= buf_putc(out, ' ');
        if (default_charset && rfc822_casecmp(k, "charset") == 0)
            seen = true;
        r |= mq_string(out, (const unsigned char *)k, strlen(k));
        r |= buf_putc(out, ' ');
        r |= mq_string(out, (const unsigned char *)v, strlen(v));
    }
    if (default_charset && !seen) {
        if (i > 0)
            r |= buf_putc(out, ' ');
        r |= buf_puts(out, "\"charset\" \"us-ascii\"");
    }
    r |= buf_putc(out, ')');
    return r ? -1 : 0;
}

static int write_common(struct buf *out, const struct pdata *d)
{
    int r = buf_putc(out, ' ');
    if (!d->has_disp) {
        r |= buf_puts(out, "NIL");
    } else {
        r |= buf_putc(out, '(');
        r |= mq_string(out, d->disp.data ? d->disp.data : (const unsigned char *)"", d->disp.len);
        r |= buf_putc(out, ' ');
        r |= write_params(out, &d->disp_params, false);
        r |= buf_putc(out, ')');
    }
    r |= buf_putc(out, ' ');
    if (!d->has_lang) {
        r |= buf_puts(out, "NIL");
    } else {
        r |= buf_putc(out, '(');
        for (size_t pos = 0, i = 0; pos < d->lang.len; i++) {
            const char *l = (const char *)d->lang.data + pos;
            size_t n = strlen(l);
            if (i > 0)
                r |= buf_putc(out, ' ');
            r |= mq_string(out, (const unsigned char *)l, n);
            pos += n + 1;
        }
        r |= buf_putc(out, ')');
    }
    r |= buf_putc(out, ' ');
    r |= mq_nstring_nolf(out, d->loc, d->loc_len);
    return r ? -1 : 0;
}

static const unsigned char *bdata(const struct buf *b)
{
    return b->data ? b->data : (const unsigned char *)"";
}

static bool plain_7bit(const struct mime_part *p, const struct pdata *d)
{
    if (!(p->flags & MIME_F_TEXT) || p->first_child != MIME_NONE)
        return false;
    if (d->has_ct && !(d->ct_ok && d->subtype.len == 5 &&
                       rfc822_ncasecmp((const char *)d->subtype.data, "plain", 5) == 0))
        return false;
    size_t pos = 0, n = 0;
    const char *k, *v;
    while (rfc2231_next(&d->params, &pos, &k, &v)) {
        if (n++ > 0 || rfc822_casecmp(k, "charset") != 0 || rfc822_casecmp(v, "us-ascii") != 0)
            return false;
    }
    if (d->id || d->desc || d->md5 || d->loc || d->has_disp || d->has_lang)
        return false;
    if (d->has_cte && !(d->cte.len == 4 && rfc822_ncasecmp((const char *)d->cte.data, "7bit", 4) == 0))
        return false;
    return true;
}

static int write_part(const unsigned char *m, const struct mime_tree *t, uint32_t idx,
                      bool ext, struct buf *out)
{
    const struct mime_part *p = &t->parts[idx];
    struct pdata d;
    int r = 0;
    pdata_init(&d);
    if (p->flags & MIME_F_IS_MIME)
        pdata_parse(&d, m + p->hdr_off, (size_t)p->hdr_size);

    if (p->flags & MIME_F_MULTIPART) {
        if (p->first_child == MIME_NONE) {
            r |= buf_puts(out, ext ? "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                     "\"7bit\" 0 0 NIL NIL NIL NIL)"
                                   : "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                     "\"7bit\" 0 0)");
        }
        for (uint32_t ch = p->first_child; ch != MIME_NONE; ch = t->parts[ch].next_sibling) {
            r |= buf_putc(out, '(');
            r |= write_part(m, t, ch, ext, out);
            r |= buf_putc(out, ')');
        }
        r |= buf_putc(out, ' ');
        r |= mq_string(out, bdata(&d.subtype), d.subtype.len);
        if (ext) {
            r |= buf_putc(out, ' ');
            r |= write_params(out, &d.params, false);
            r |= write_common(out, &d);
        }
        pdata_free(&d);
        return r ? -1 : 0;
    }

    if (idx == 0 && plain_7bit(p, &d)) {
        /* the reference answers a plain 7-bit text message with its fixed
         * default, whatever case the header used */
        r |= buf_printf(out, "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
                             "%llu %llu%s", (unsigned long long)p->body_size,
                        (unsigned long long)p->lines, ext ? " NIL NIL NIL NIL" : "");
        pdata_free(&d);
        return r ? -1 : 0;
    }
    bool text;
    if (p->flags & MIME_F_RFC822) {
        r |= buf_puts(out, "\"message\" \"rfc822\"");
        text = false;
    } else if (!d.has_ct) {
        r |= buf_puts(out, "\"text\" \"plain\"");
        text = true;
    } else {
        text = d.ct_ok && d.type.len == 4 &&
               rfc822_ncasecmp((const char *)d.type.data, "text", 4) == 0;
        r |= mq_string(out, bdata(&d.type), d.type.len);
        r |= buf_putc(out, ' ');
        r |= mq_string(out, bdata(&d.subtype), d.subtype.len);
    }
    r |= buf_putc(out, ' ');
    r |= write_params(out, &d.params, text);
    r |= buf_putc(out, ' ');
    r |= mq_nstring_nolf(out, d.id, d.id_len);
    r |= buf_putc(out, ' ');
    r |= mq_nstring_nolf(out, d.desc, d.desc_len);
    r |= buf_putc(out, ' ');
    if (d.has_cte)
        r |= mq_string(out, bdata(&d.cte), d.cte.len);
    else
        r |= buf_puts(out, "\"7bit\"");
    r |= buf_printf(out, " %llu", (unsigned long long)p->body_size);
    if (text) {
        r |= buf_printf(out, " %llu", (unsigned long long)p->lines);
    } else if ((p->flags & MIME_F_RFC822) && p->first_child != MIME_NONE) {
        const struct mime_part *c = &t->parts[p->first_child];
        r |= buf_puts(out, " (");
        r |= envelope_write(m + c->hdr_off, (size_t)c->hdr_size, out);
        r |= buf_puts(out, ") (");
        r |= write_part(m, t, p->first_child, ext, out);
        r |= buf_printf(out, ") %llu", (unsigned long long)p->lines);
    }
    if (ext) {
        r |= buf_putc(out, ' ');
        r |= mq_nstring_nolf(out, d.md5, d.md5_len);
        r |= write_common(out, &d);
    }
    pdata_free(&d);
    return r ? -1 : 0;
}

int bodystructure_write(const unsigned char *m, const struct mime_tree *t, uint32_t idx,
                        bool extended, struct buf *out)
{
    return write_part(m, t, idx, extended, out);
}

int bodystructure_cte(const unsigned char *m, const struct mime_tree *t, uint32_t idx)
{
    const struct mime_part *p = &t->parts[idx];
    struct pdata d;
    int cte = MSGINFO_CTE_7BIT;
    if (!(p->flags & MIME_F_IS_MIME))
        return cte;
    pdata_init(&d);
    pdata_parse(&d, m + p->hdr_off, (size_t)p->hdr_size);
    if (d.has_cte) {
        const char *s = buf_cstr(&d.cte);
        if (rfc822_casecmp(s, "7bit") == 0)
            cte = MSGINFO_CTE_7BIT;
        else if (rfc822_casecmp(s, "8bit") == 0)
            cte = MSGINFO_CTE_8BIT;
        else if (rfc822_casecmp(s, "binary") == 0)
            cte = MSGINFO_CTE_BINARY;
        else if (rfc822_casecmp(s, "base64") == 0)
            cte = MSGINFO_CTE_BASE64;
        else if (rfc822_casecmp(s, "quoted-printable") == 0)
            cte = MSGINFO_CTE_QP;
        else
            cte = MSGINFO_CTE_UNKNOWN;
    }
    pdata_free(&d);
    return cte;
}
