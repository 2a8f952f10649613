/* mailtext.c — decoded, folded message text for SEARCH and the index. */
#include <string.h>
#include <strings.h>
#include "proto/mailtext.h"
#include "proto/charset.h"
#include "proto/cte.h"
#include "proto/mimehdr.h"
#include "proto/unicase.h"

#define FIELD_LIMIT (256u * 1024u * 1024u)
#define EW_CHARSET_MAX 64

void mailtext_init(struct mailtext *t)
{
    for (int i = 0; i < MT__N; i++)
        buf_init(&t->f[i], FIELD_LIMIT);
}

void mailtext_free(struct mailtext *t)
{
    for (int i = 0; i < MT__N; i++)
        buf_free(&t->f[i]);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decode the text of one encoded word (B or Q) into out. */
static int ew_decode(char enc, const unsigned char *s, size_t n, struct buf *out)
{
    int rc;
    if (enc == 'B') {
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
            int v = b64val(s[i]);
            if (v < 0)
                continue;      /* padding and junk: lenient */
            acc = acc << 6 | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                if ((rc = buf_putc(out, (unsigned char)(acc >> bits))))
                    return rc;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (unsigned char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        }
        if ((rc = buf_putc(out, c)))
            return rc;
    }
    return 0;
}

/* Try to parse "=?charset?X?text?=" at v[i..len). Returns its length or 0. */
static size_t ew_parse(const unsigned char *v, size_t len, size_t i, size_t *cs_len,
                       char *enc, size_t *t_off, size_t *t_len)
{
    size_t p = i + 2, cs = p;
    while (p < len && v[p] != '?' && v[p] > ' ' && v[p] < 0x7f)
        p++;
    if (p >= len || v[p] != '?' || p == cs || p - cs > EW_CHARSET_MAX)
        return 0;
    *cs_len = p - cs;
    if (p + 2 >= len || v[p + 2] != '?')
        return 0;
    char e = (char)(v[p + 1] & ~0x20);
    if (e != 'B' && e != 'Q')
        return 0;
    *enc = e;
    size_t t = p + 3, q = t;
    while (q + 1 < len && !(v[q] == '?' && v[q + 1] == '='))
        q++;
    if (q + 1 >= len)
        return 0;
    *t_off = t;
    *t_len = q - t;
    return q + 2 - i;
}

int mailtext_decode_2047(const unsigned char *v, size_t len, struct buf *out)
{
    struct buf raw;
    int rc = 0;
    size_t i = 0, ws_start = 0;
    bool after_ew = false, in_ws = false;
    buf_init(&raw, FIELD_LIMIT);
    while (i < len) {
        unsigned char c = v[i];
        size_t cs_len, t_off, t_len, n;
        char enc;
        if (c == '=' && i + 1 < len && v[i + 1] == '?' &&
            (n = ew_parse(v, len, i, &cs_len, &enc, &t_off, &t_len)) > 0) {
            /* white space between two encoded words is dropped (RFC 2047 6.2) */
            if (in_ws && !after_ew && (rc = buf_append(out, v + ws_start, i - ws_start)))
                break;
            in_ws = false;
            char csname[EW_CHARSET_MAX + 1];
            memcpy(csname, v + i + 2, cs_len);
            csname[cs_len] = 0;
            char *star = strchr(csname, '*');     /* RFC 2231 language suffix */
            if (star)
                *star = 0;
            int h = charset_find(csname, strlen(csname));
            buf_reset(&raw);
            if ((rc = ew_decode(enc, v + t_off, t_len, &raw)))
                break;
            /* an unknown charset keeps the decoded octets (as Dovecot: the
             * folder turns what is not UTF-8 into U+FFFD) */
            if ((rc = charset_to_utf8(h == CHARSET_UNKNOWN ? CHARSET_UTF8 : h, raw.data,
                                      raw.len, false, out)) < 0)
                break;
            after_ew = true;
            i += n;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (!in_ws) {
                in_ws = true;
                ws_start = i;
            }
            i++;
            continue;
        }
        if (in_ws) {
            if ((rc = buf_append(out, v + ws_start, i - ws_start)))
                break;
            in_ws = false;
        }
        after_ew = false;
        if ((rc = buf_putc(out, c)))
            break;
        i++;
    }
    if (rc == 0 && in_ws)
        rc = buf_append(out, v + ws_start, len - ws_start);
    buf_free(&raw);
    return rc < 0 ? rc : 0;
}

static void compress_lwsp(struct buf *b)
{
    size_t o = 0;
    bool prev = true;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = b->data[i];
        if (c == ' ' || c == '\t') {
            if (!prev)
                b->data[o++] = ' ';
            prev = true;
        } else {
            b->data[o++] = c;
            prev = false;
        }
    }
    b->len = o;
}

/* unfold + (compress) + decode + fold of one field's value, appended to out */
static int field_text(const struct mimehdr_field *f, bool compress, struct buf *tmp,
                      struct buf *tmp2, struct buf *out)
{
    int rc;
    buf_reset(tmp);
    buf_reset(tmp2);
    if ((rc = mimehdr_unfold(f, tmp)))
        return rc;
    if (compress)
        compress_lwsp(tmp);
    if ((rc = mailtext_decode_2047(tmp->data, tmp->len, tmp2)))
        return rc;
    return unicase_fold(tmp2->data, tmp2->len, out);
}

int mailtext_field(const unsigned char *hdr, size_t len, const char *name,
                   bool compress_lwsp, struct buf *out, bool *present)
{
    struct mimehdr_iter it;
    struct mimehdr_field f;
    struct buf a, b;
    int rc = 0;
    *present = false;
    buf_init(&a, FIELD_LIMIT);
    buf_init(&b, FIELD_LIMIT);
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) == 1) {
        if (!f.has_colon || !mimehdr_name_is(&f, name))
            continue;
        if (*present && (rc = buf_putc(out, MAILTEXT_SEP)))
            break;
        *present = true;
        if ((rc = field_text(&f, compress_lwsp, &a, &b, out)))
            break;
    }
    buf_free(&a);
    buf_free(&b);
    return rc;
}

bool mailtext_contains(const struct buf *text, const unsigned char *key, size_t klen)
{
    if (klen == 0)
        return true;
    if (text->len < klen)
        return false;
    return memmem(text->data, text->len, key, klen) != NULL;
}

/* ---- address fields: the ENVELOPE's parse, written back ----
 *
 * FROM/TO/CC/BCC match against the addresses as Dovecot writes them after
 * parsing (display names quoted when they hold anything but atext,
 * `<local@domain>`, groups as `name: <a@b>, <c@d>;`, MISSING_MAILBOX /
 * MISSING_DOMAIN filled in), not the raw field: `FROM "user@domain"` must
 * find `user (comment)@ domain`. The msginfo ENVELOPE holds exactly that
 * parse, so it is read back instead of parsing the field a second time. */

struct sx {
    const unsigned char *p, *e;
};

static void sx_ws(struct sx *x)
{
    while (x->p < x->e && *x->p == ' ')
        x->p++;
}

/* NIL, "quoted" or {n}CRLF literal; *nil for NIL. 0 ok, -1 malformed. */
static int sx_string(struct sx *x, struct buf *out, bool *nil)
{
    sx_ws(x);
    *nil = false;
    if (x->e - x->p >= 3 && memcmp(x->p, "NIL", 3) == 0) {
        x->p += 3;
        *nil = true;
        return 0;
    }
    if (x->p < x->e && *x->p == '"') {
        x->p++;
        while (x->p < x->e && *x->p != '"') {
            if (*x->p == '\\' && x->p + 1 < x->e)
                x->p++;
            if (out && buf_putc(out, *x->p))
                return -1;
            x->p++;
        }
        if (x->p >= x->e)
            return -1;
        x->p++;
        return 0;
    }
    if (x->p < x->e && *x->p == '{') {
        size_t n = 0;
        x->p++;
        while (x->p < x->e && *x->p >= '0' && *x->p <= '9' && n < SIZE_MAX / 10)
            n = n * 10 + (size_t)(*x->p++ - '0');
        if (x->p < x->e && *x->p == '+')
            x->p++;
        if (x->e - x->p < 3 || memcmp(x->p, "}\r\n", 3) != 0)
            return -1;
        x->p += 3;
        if ((size_t)(x->e - x->p) < n || (out && buf_append(out, x->p, n)))
            return -1;
        x->p += n;
        return 0;
    }
    return -1;
}

static int sx_skip(struct sx *x)
{
    sx_ws(x);
    if (x->p < x->e && *x->p == '(') {
        x->p++;
        for (;;) {
            sx_ws(x);
            if (x->p < x->e && *x->p == ')') {
                x->p++;
                return 0;
            }
            if (x->p >= x->e || sx_skip(x))
                return -1;
        }
    }
    bool nil;
    return sx_string(x, NULL, &nil);
}

static bool is_atext(unsigned char c)
{
    return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int put_name(struct buf *out, const struct buf *name)
{
    bool quote = false;
    int rc;
    for (size_t i = 0; i < name->len; i++)
        if (!is_atext(name->data[i]))
            quote = true;
    if (!quote)
        return buf_append(out, name->data, name->len);
    if ((rc = buf_putc(out, '"')))
        return rc;
    for (size_t i = 0; i < name->len; i++) {
        unsigned char c = name->data[i];
        if ((c == '"' || c == '\\') && (rc = buf_putc(out, '\\')))
            return rc;
        if ((rc = buf_putc(out, c)))
            return rc;
    }
    return buf_putc(out, '"');
}

/* ENVELOPE element `which` (2 from, 5 to, 6 cc, 7 bcc) written as above
 * into out. *present: the element was not NIL. -1 on a malformed ENVELOPE. */
static int envelope_addrs(const struct msginfo *mi, int which, struct buf *out, bool *present)
{
    const char *es;
    size_t el;
    struct buf name, mbox, host;
    int rc = 0;
    msginfo_envelope(mi, &es, &el);
    struct sx x = { (const unsigned char *)es, (const unsigned char *)es + el };
    *present = false;
    sx_ws(&x);
    if (x.p < x.e && *x.p == '(' && x.e - x.p > 4 && memcmp(x.p, "((", 2) != 0) {
        /* "(date subject ...)": step inside unless it is the from list */
        const unsigned char *save = x.p;
        x.p++;
        struct sx probe = x;
        bool nil;
        if (sx_string(&probe, NULL, &nil) != 0)
            x.p = save;
    }
    for (int i = 0; i < which; i++)
        if (sx_skip(&x))
            return -1;
    sx_ws(&x);
    if (x.e - x.p >= 3 && memcmp(x.p, "NIL", 3) == 0)
        return 0;
    if (x.p >= x.e || *x.p != '(')
        return -1;
    x.p++;
    *present = true;
    buf_init(&name, 64 * 1024);
    buf_init(&mbox, 64 * 1024);
    buf_init(&host, 64 * 1024);
    bool first = true, group_first = false;
    for (;;) {
        sx_ws(&x);
        if (x.p < x.e && *x.p == ')')
            break;
        if (x.p >= x.e || *x.p != '(') {
            rc = -1;
            break;
        }
        x.p++;
        bool nn, an, mn, hn;
        buf_reset(&name);
        buf_reset(&mbox);
        buf_reset(&host);
        if (sx_string(&x, &name, &nn) || sx_string(&x, NULL, &an) ||
            sx_string(&x, &mbox, &mn) || sx_string(&x, &host, &hn)) {
            rc = -1;
            break;
        }
        sx_ws(&x);
        if (x.p >= x.e || *x.p != ')') {
            rc = -1;
            break;
        }
        x.p++;
        if (hn && mn) {                       /* end of group */
            rc = buf_putc(out, ';');
            first = false;
        } else if (hn) {                      /* start of group */
            if (!first)
                rc = buf_append(out, ", ", 2);
            if (!rc && !(rc = buf_append(out, mbox.data, mbox.len)))
                rc = buf_putc(out, ':');
            group_first = true;
            first = false;
        } else {
            if (group_first)
                rc = buf_putc(out, ' ');
            else if (!first)
                rc = buf_append(out, ", ", 2);
            group_first = false;
            first = false;
            if (!rc && !nn && name.len > 0) {
                if (!(rc = put_name(out, &name)))
                    rc = buf_putc(out, ' ');
            }
            if (!rc && !(rc = buf_putc(out, '<')) && !(rc = buf_append(out, mbox.data, mbox.len)) &&
                !(rc = buf_putc(out, '@')) && !(rc = buf_append(out, host.data, host.len)))
                rc = buf_putc(out, '>');
        }
        if (rc)
            break;
    }
    buf_free(&name);
    buf_free(&mbox);
    buf_free(&host);
    return rc ? -1 : 0;
}

/* ---- whole-message producer ---- */

struct mt_ctx {
    const struct msginfo *mi;
    mailtext_read_fn rd;
    void *rdctx;
    unsigned mask;
    struct mailtext *t;
    struct buf hdr, body, dec, conv, htext, btext, tmp, tmp2, ctype, csub, params;
    int read_rc;
};

static const struct { const char *name; int field; bool compress; int env; } top_fields[] = {
    { "From", MT_FROM, false, 2 }, { "To", MT_TO, false, 5 }, { "Cc", MT_CC, false, 6 },
    { "Bcc", MT_BCC, false, 7 }, { "Subject", MT_SUBJECT, true, -1 },
    { "Message-ID", MT_MSGID, false, -1 },
};

/* Dovecot searches no body whose Content-Transfer-Encoding it does not
 * know ("7-bit", "8bits", ...): the octets could be anything. */
static bool cte_known(const struct mimehdr_field *f)
{
    static const char *const known[] = { "7bit", "8bit", "binary", "base64", "quoted-printable" };
    const unsigned char *v = f->value, *e = f->value + f->value_len;
    while (v < e && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
        v++;
    const unsigned char *t = v;
    while (t < e && *t > ' ' && *t < 0x7f && !strchr("()<>@,;:\\\"/[]?=", *t))
        t++;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if ((size_t)(t - v) == strlen(known[i]) && strncasecmp((const char *)v, known[i], (size_t)(t - v)) == 0)
            return true;
    return false;
}

static int do_header(struct mt_ctx *c, uint32_t idx, bool want_htext, bool *text_body,
                     int *cs)
{
    bool cte_ok = true;
    struct mimehdr_iter it;
    struct mimehdr_field f;
    int rc;
    *text_body = true;
    *cs = CHARSET_UTF8;
    mimehdr_init(&it, c->hdr.data, c->hdr.len);
    bool seen[6] = { 0 };
    while (mimehdr_next(&it, &f) == 1) {
        if (want_htext) {
            /* Dovecot matches within one field: name, ':' + white space,
             * value; a line without ':' counts as a name alone */
            if (c->htext.len && (rc = buf_putc(&c->htext, MAILTEXT_SEP)))
                return rc;
            if ((rc = unicase_fold(f.name, f.name_len, &c->htext)))
                return rc;
        }
        if (!f.has_colon)
            continue;
        if (mimehdr_name_is(&f, "Content-Transfer-Encoding"))
            cte_ok = cte_known(&f);
        if (want_htext) {
            if ((rc = buf_putc(&c->htext, ':')))
                return rc;
            const unsigned char *q = f.name + f.name_len;
            while (q < f.value && *q != ':')
                q++;
            if (q < f.value && (rc = buf_append(&c->htext, q + 1, (size_t)(f.value - q - 1))))
                return rc;
            if ((rc = field_text(&f, false, &c->tmp, &c->tmp2, &c->htext)))
                return rc;
        }
        if (idx == 0) {
            for (int k = 0; k < 6; k++) {
                int fld = top_fields[k].field;
                if (!(c->mask & MT_BIT(fld)) || top_fields[k].env >= 0 ||
                    !mimehdr_name_is(&f, top_fields[k].name))
                    continue;
                struct buf *o = &c->t->f[fld];
                if (seen[k] && (rc = buf_putc(o, MAILTEXT_SEP)))
                    return rc;
                seen[k] = true;
                if ((rc = field_text(&f, top_fields[k].compress, &c->tmp, &c->tmp2, o)))
                    return rc;
            }
        }
    }
    if (idx == 0) {
        for (int k = 0; k < 4; k++) {
            int fld = top_fields[k].field;
            bool present;
            if (!(c->mask & MT_BIT(fld)))
                continue;
            buf_reset(&c->tmp);
            buf_reset(&c->tmp2);
            if (envelope_addrs(c->mi, top_fields[k].env, &c->tmp, &present) != 0)
                continue;        /* unreadable ENVELOPE: the field stays empty */
            if ((rc = mailtext_decode_2047(c->tmp.data, c->tmp.len, &c->tmp2)) ||
                (rc = unicase_fold(c->tmp2.data, c->tmp2.len, &c->t->f[fld])))
                return rc;
        }
    }
    buf_reset(&c->ctype);
    buf_reset(&c->csub);
    buf_reset(&c->params);
    if (mimehdr_content_type(c->hdr.data, c->hdr.len, &c->ctype, &c->csub, &c->params) == 1) {
        /* present: text only if it says text/ or message/ (an empty or
         * broken value is not text), as Dovecot */
        const char *ty = buf_cstr(&c->ctype);
        *text_body = c->csub.len > 0 && (strcmp(ty, "text") == 0 || strcmp(ty, "message") == 0);
        const char *chs = mimehdr_param(&c->params, "charset");
        if (chs) {
            int h = charset_find(chs, strlen(chs));
            *cs = h == CHARSET_UNKNOWN ? CHARSET_UTF8 : h;   /* as Dovecot: UTF-8 */
        }
    }
    if (!cte_ok)
        *text_body = false;
    return 0;
}

static int do_body(struct mt_ctx *c, const struct msginfo_part *p, int cs)
{
    int rc;
    uint64_t blen = p->body_len;
    if (blen > MAILTEXT_PART_MAX * 2ull)
        blen = MAILTEXT_PART_MAX * 2ull;      /* encoded text beyond this is not searched */
    buf_reset(&c->body);
    if ((rc = c->rd(c->rdctx, p->body_off, blen, &c->body))) {
        c->read_rc = rc;
        return -1;
    }
    const struct buf *src = &c->body;
    if (p->cte == MSGINFO_CTE_BASE64 || p->cte == MSGINFO_CTE_QP) {
        struct cte_dec d;
        buf_reset(&c->dec);
        cte_dec_init(&d, p->cte);
        if ((rc = cte_dec_feed(&d, c->body.data, c->body.len, &c->dec)) ||
            (rc = cte_dec_finish(&d, &c->dec)))
            return rc;
        src = &c->dec;
    }
    size_t n = src->len > MAILTEXT_PART_MAX ? MAILTEXT_PART_MAX : src->len;
    buf_reset(&c->conv);
    if ((rc = charset_to_utf8(cs, src->data, n, false, &c->conv)) < 0)
        return rc;
    return unicase_fold(c->conv.data, c->conv.len, &c->btext);
}

int mailtext_build(const struct msginfo *mi, mailtext_read_fn rd, void *rdctx,
                   unsigned mask, struct mailtext *t, int *read_rc, const char **err)
{
    struct mt_ctx c = { .mi = mi, .rd = rd, .rdctx = rdctx, .mask = mask, .t = t };
    struct buf *bufs[] = { &c.hdr, &c.body, &c.dec, &c.conv, &c.htext, &c.btext, &c.tmp,
                           &c.tmp2, &c.ctype, &c.csub, &c.params };
    int rc = 0;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_init(bufs[i], FIELD_LIMIT);
    for (int i = 0; i < MT__N; i++)
        buf_reset(&t->f[i]);
    bool want_h = mask & (MT_BIT(MT_HDR) | MT_BIT(MT_TEXT));
    bool want_b = mask & (MT_BIT(MT_BODY) | MT_BIT(MT_HDR) | MT_BIT(MT_TEXT));
    bool want_top = mask & (MT_BIT(MT_FROM) | MT_BIT(MT_TO) | MT_BIT(MT_CC) | MT_BIT(MT_BCC) |
                            MT_BIT(MT_SUBJECT) | MT_BIT(MT_MSGID));
    bool first_seg = true;
    for (uint32_t idx = 0; idx < mi->nparts; idx++) {
        struct msginfo_part p;
        if (msginfo_part(mi, idx, &p) != 0) {
            rc = -1;
            *err = "corrupt part table";
            break;
        }
        if (!want_h && !want_b && !(want_top && idx == 0))
            break;
        bool leaf = p.first_child == MSGINFO_NONE && p.type != MSGINFO_T_MULTIPART &&
                    p.type != MSGINFO_T_MESSAGE;
        buf_reset(&c.htext);
        buf_reset(&c.btext);
        bool text_body = false;
        int cs = CHARSET_UTF8;
        if (want_h || want_b || idx == 0) {
            buf_reset(&c.hdr);
            if ((rc = rd(rdctx, p.hdr_off, p.hdr_len, &c.hdr))) {
                c.read_rc = rc;
                rc = -1;
                *err = "cannot read message";
                break;
            }
            if ((rc = do_header(&c, idx, want_h, &text_body, &cs))) {
                *err = "out of memory decoding a header";
                break;
            }
        }
        if (want_b && leaf && text_body && p.body_len > 0) {
            if ((rc = do_body(&c, &p, cs))) {
                *err = c.read_rc ? "cannot read message" : "out of memory decoding a body";
                break;
            }
        }
        if (!first_seg) {
            for (int f = MT_BODY; f <= MT_TEXT; f++)
                if (f == MT_BODY || f == MT_HDR || f == MT_TEXT)
                    if ((mask & MT_BIT(f)) && (rc = buf_putc(&t->f[f], MAILTEXT_SEP)))
                        break;
            if (rc)
                break;
        }
        first_seg = false;
        /* TEXT: header fields and the body are separate segments (a
         * match spans neither two fields nor header and body) */
        if (((mask & MT_BIT(MT_BODY)) && (rc = buf_append(&t->f[MT_BODY], c.btext.data, c.btext.len))) ||
            ((mask & MT_BIT(MT_HDR)) && (rc = buf_append(&t->f[MT_HDR], c.htext.data, c.htext.len))) ||
            ((mask & MT_BIT(MT_TEXT)) && ((rc = buf_append(&t->f[MT_TEXT], c.htext.data, c.htext.len)) ||
                                          (rc = buf_putc(&t->f[MT_TEXT], MAILTEXT_SEP)) ||
                                          (rc = buf_append(&t->f[MT_TEXT], c.btext.data, c.btext.len))))) {
            *err = "out of memory";
            break;
        }
    }
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_free(bufs[i]);
    if (read_rc)
        *read_rc = c.read_rc;
    return rc ? -1 : 0;
}
