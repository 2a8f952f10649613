/* cmd_fetch.c — FETCH and UID FETCH. Every item comes ready-made from the
 * store (msginfo strings, byte ranges of the canonical message), and each
 * message's response is written out as it is produced, so memory does not
 * grow with the range (Thunderbird asks for 1:* at once). */
#include "server/session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/cte.h"
#include "proto/msginfo.h"
#include "server/conn.h"
#include "server/log.h"

#define MAX_ITEMS 64
#define MAX_FIELDS 256
#define HEADER_MAX (16u << 20)   /* cap on a header read for HEADER.FIELDS */

enum fkind {
    F_FLAGS, F_UID, F_INTERNALDATE, F_SIZE, F_ENVELOPE, F_BODY, F_BODYSTRUCTURE,
    F_SECTION, F_BINARY, F_BINARY_SIZE,
};

struct fitem {
    enum fkind kind;
    char label[512];           /* e.g. "BODY[HEADER.FIELDS (From To)]<0>" */
    uint32_t path[MSGINFO_MAX_SECTION_DEPTH];
    size_t npath;
    enum msginfo_sect which;
    const char **fields;       /* HEADER.FIELDS names (malloc'd arrays) */
    size_t *field_lens;
    size_t nfields;
    struct msginfo_fieldset fset;   /* fields prepared once per command */
    struct imap_cmd fieldcmd;  /* owns the parsed field list */
    bool partial;
    uint64_t p_off, p_len;
};

struct fetch {
    struct fitem *items;
    size_t n;
    bool any_msginfo;
    bool any_section;          /* an item reads message octets (may fail) */
    bool uid_listed;           /* UID among the items (UID FETCH adds it otherwise) */
    /* Owned by the command and reused for every message, so the per-message
     * path allocates nothing once they have grown to the largest size seen. */
    struct buf cap;            /* one message's response, before it is sent */
    struct buf hdr, filt;      /* HEADER.FIELDS: header octets, selected fields */
};

static void fetch_free(struct fetch *f)
{
    for (size_t i = 0; i < f->n; i++) {
        imap_cmd_free(&f->items[i].fieldcmd);
        free(f->items[i].fields);
        free(f->items[i].field_lens);
    }
    free(f->items);
    buf_free(&f->cap);
    buf_free(&f->hdr);
    buf_free(&f->filt);
}

static struct fitem *add_item(struct fetch *f, enum fkind k, const char *label)
{
    if (f->n >= MAX_ITEMS)
        return NULL;
    struct fitem *it = &f->items[f->n++];
    memset(it, 0, sizeof(*it));
    it->kind = k;
    snprintf(it->label, sizeof(it->label), "%s", label);
    return it;
}

static bool has_prefix_ci(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && strncasecmp(s, p, n) == 0;
}

/* "1.2.3" (then optionally ".WORD"): parse the numeric path. */
static const char *parse_path(const char *p, const char *end, struct fitem *it)
{
    while (p < end && *p >= '1' && *p <= '9') {
        uint64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > UINT32_MAX)
                return NULL;
            p++;
        }
        if (it->npath >= MSGINFO_MAX_SECTION_DEPTH)
            return NULL;
        it->path[it->npath++] = (uint32_t)v;
        if (p < end && *p == '.')
            p++;
        else
            break;
    }
    return p;
}

/* Section text between [ and ], e.g. "1.2.HEADER.FIELDS (From To)". */
static int parse_section(const char *p, const char *end, struct fitem *it, bool binary)
{
    const char *start = p;
    p = parse_path(p, end, it);
    if (p == NULL)
        return -1;
    if (binary)
        return p == end && (p == start || p[-1] != '.') ? 0 : -1;
    if (p == end) {
        if (p > start && p[-1] == '.')
            return -1;
        it->which = MSGINFO_S_ALL;
        return 0;
    }
    if (it->npath > 0 && p[-1] != '.')
        return -1;
    size_t rest = (size_t)(end - p);
    if (has_prefix_ci(p, rest, "HEADER.FIELDS.NOT ") || has_prefix_ci(p, rest, "HEADER.FIELDS ")) {
        bool not_ = has_prefix_ci(p, rest, "HEADER.FIELDS.NOT ");
        it->which = not_ ? MSGINFO_S_HEADER_FIELDS_NOT : MSGINFO_S_HEADER_FIELDS;
        p += not_ ? 18 : 14;
        const char *err;
        struct imap_parse_limits lim = {.max_nesting = 1, .max_args = MAX_FIELDS + 1};
        if (imap_parse_args(p, (size_t)(end - p), &lim, &it->fieldcmd, &err) != 0)
            return -1;
        if (it->fieldcmd.nargs != 1 || it->fieldcmd.args[0].type != IMAP_ARG_LIST)
            return -1;
        const struct imap_arg *l = &it->fieldcmd.args[0];
        if (l->nlist == 0 || l->nlist > MAX_FIELDS)
            return -1;
        it->fields = malloc(l->nlist * sizeof(*it->fields));
        it->field_lens = malloc(l->nlist * sizeof(*it->field_lens));
        if (it->fields == NULL || it->field_lens == NULL)
            return -1;
        for (size_t i = 0; i < l->nlist; i++) {
            if (!imap_arg_is_astring(&l->list[i]) || l->list[i].len == 0)
                return -1;
            it->fields[i] = l->list[i].s;
            it->field_lens[i] = l->list[i].len;
        }
        it->nfields = l->nlist;
        msginfo_fieldset_init(&it->fset, it->fields, it->field_lens, it->nfields);
        return 0;
    }
    if (rest == 6 && has_prefix_ci(p, rest, "HEADER"))
        it->which = MSGINFO_S_HEADER;
    else if (rest == 4 && has_prefix_ci(p, rest, "TEXT"))
        it->which = MSGINFO_S_TEXT;
    else if (rest == 4 && has_prefix_ci(p, rest, "MIME") && it->npath > 0)
        it->which = MSGINFO_S_MIME;
    else
        return -1;
    return 0;
}

/* "<o.n>" after the section. */
static int parse_partial(const char *p, const char *end, struct fitem *it)
{
    if (p == end)
        return 0;
    if (*p != '<' || end[-1] != '>')
        return -1;
    p++;
    end--;
    uint64_t a = 0, b = 0;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9' && a < (1ull << 62))
        a = a * 10 + (uint64_t)(*p++ - '0');
    if (p == d || p >= end || *p != '.')
        return -1;
    d = ++p;
    while (p < end && *p >= '0' && *p <= '9' && b < (1ull << 62))
        b = b * 10 + (uint64_t)(*p++ - '0');
    if (p == d || p != end || b == 0)
        return -1;
    it->partial = true;
    it->p_off = a;
    it->p_len = b;
    return 0;
}

/* Label keywords upper-cased, the HEADER.FIELDS list exactly as sent. */
static void make_label(struct fitem *it, const char *prefix, const char *sec, size_t seclen)
{
    char tmp[sizeof(it->label) - 32];
    size_t n = (size_t)snprintf(tmp, sizeof(tmp), "%s[", prefix);
    for (size_t i = 0; i < seclen && n + 2 < sizeof(tmp); i++) {
        char c = sec[i];
        if (c == '(') {
            size_t rest = seclen - i;
            if (n + rest + 2 >= sizeof(tmp))
                rest = sizeof(tmp) - n - 2;
            memcpy(tmp + n, sec + i, rest);
            n += rest;
            break;
        }
        tmp[n++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    tmp[n++] = ']';
    tmp[n] = '\0';
    if (it->partial)
        snprintf(it->label, sizeof(it->label), "%s<%llu>", tmp, (unsigned long long)it->p_off);
    else
        snprintf(it->label, sizeof(it->label), "%s", tmp);
}

static int parse_body_item(struct fetch *f, const struct imap_arg *a)
{
    const char *s = a->s, *end = a->s + a->len;
    const char *br = memchr(s, '[', a->len);
    if (br == NULL)
        return -1;
    size_t kwlen = (size_t)(br - s);
    enum fkind kind;
    const char *prefix;
    bool binary = false;
    if (kwlen == 4 && strncasecmp(s, "BODY", 4) == 0) {
        kind = F_SECTION, prefix = "BODY";
    } else if (kwlen == 9 && strncasecmp(s, "BODY.PEEK", 9) == 0) {
        kind = F_SECTION, prefix = "BODY";
    } else if (kwlen == 6 && strncasecmp(s, "BINARY", 6) == 0) {
        kind = F_BINARY, prefix = "BINARY", binary = true;
    } else if (kwlen == 11 && strncasecmp(s, "BINARY.PEEK", 11) == 0) {
        kind = F_BINARY, prefix = "BINARY", binary = true;
    } else if (kwlen == 11 && strncasecmp(s, "BINARY.SIZE", 11) == 0) {
        kind = F_BINARY_SIZE, prefix = "BINARY.SIZE", binary = true;
    } else {
        return -1;
    }
    /* the matching ']' is the last one before the optional <partial> */
    const char *close = end;
    while (close > br && close[-1] != ']')
        close--;
    if (close == br)
        return -1;
    close--;
    struct fitem *it = add_item(f, kind, "");
    if (it == NULL)
        return -1;
    if (parse_section(br + 1, close, it, binary) != 0 || parse_partial(close + 1, end, it) != 0)
        return -1;
    if (kind == F_BINARY_SIZE && it->partial)
        return -1;
    make_label(it, prefix, br + 1, (size_t)(close - br - 1));
    f->any_msginfo = true;
    return 0;
}

static int parse_item(struct fetch *f, const struct imap_arg *a, bool top)
{
    if (a->type != IMAP_ARG_ATOM)
        return -1;
    if (top) {
        /* macros (RFC 3501 6.4.5): ALL, FAST, FULL */
        bool all = imap_arg_eq(a, "ALL"), fast = imap_arg_eq(a, "FAST"),
             full = imap_arg_eq(a, "FULL");
        if (all || fast || full) {
            if (!add_item(f, F_FLAGS, "FLAGS") || !add_item(f, F_INTERNALDATE, "INTERNALDATE") ||
                !add_item(f, F_SIZE, "RFC822.SIZE"))
                return -1;
            if ((all || full) && !add_item(f, F_ENVELOPE, "ENVELOPE"))
                return -1;
            if (full && !add_item(f, F_BODY, "BODY"))
                return -1;
            f->any_msginfo = all || full;
            return 0;
        }
    }
    struct fitem *it = NULL;
    if (imap_arg_eq(a, "FLAGS"))
        it = add_item(f, F_FLAGS, "FLAGS");
    else if (imap_arg_eq(a, "UID"))
        it = add_item(f, F_UID, "UID");
    else if (imap_arg_eq(a, "INTERNALDATE"))
        it = add_item(f, F_INTERNALDATE, "INTERNALDATE");
    else if (imap_arg_eq(a, "RFC822.SIZE"))
        it = add_item(f, F_SIZE, "RFC822.SIZE");
    else if (imap_arg_eq(a, "ENVELOPE"))
        it = add_item(f, F_ENVELOPE, "ENVELOPE");
    else if (imap_arg_eq(a, "BODY"))
        it = add_item(f, F_BODY, "BODY");
    else if (imap_arg_eq(a, "BODYSTRUCTURE"))
        it = add_item(f, F_BODYSTRUCTURE, "BODYSTRUCTURE");
    else if (imap_arg_eq(a, "RFC822") || imap_arg_eq(a, "RFC822.PEEK"))
        it = add_item(f, F_SECTION, "RFC822");
    else if (imap_arg_eq(a, "RFC822.HEADER")) {
        it = add_item(f, F_SECTION, "RFC822.HEADER");
        if (it)
            it->which = MSGINFO_S_HEADER;
    } else if (imap_arg_eq(a, "RFC822.TEXT")) {
        it = add_item(f, F_SECTION, "RFC822.TEXT");
        if (it)
            it->which = MSGINFO_S_TEXT;
    } else
        return parse_body_item(f, a);
    if (it == NULL)
        return -1;
    if (it->kind >= F_ENVELOPE)
        f->any_msginfo = true;
    return 0;
}

/* ---- output of one message ---- */

struct out_ctx {
    struct session *s;
    bool nul_to_80;     /* BODY/RFC822: NUL -> 0x80, sizes unchanged */
    uint64_t written;
    int err;
};

static int out_sink(void *ctx, const void *p, size_t n)
{
    struct out_ctx *o = ctx;
    const unsigned char *b = p;
    o->written += n;
    if (!o->nul_to_80 || memchr(b, 0, n) == NULL) {
        if (sess_write(o->s, b, n) != 0)
            return o->err = -1;
    } else {
        unsigned char tmp[4096];
        while (n > 0) {
            size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
            for (size_t i = 0; i < k; i++)
                tmp[i] = b[i] == 0 ? 0x80 : b[i];
            if (sess_write(o->s, tmp, k) != 0)
                return o->err = -1;
            b += k;
            n -= k;
        }
    }
    return 0;
}

static void clip(const struct fitem *it, uint64_t *off, uint64_t *len)
{
    if (!it->partial)
        return;
    if (it->p_off >= *len) {
        *off += *len;
        *len = 0;
        return;
    }
    *off += it->p_off;
    *len -= it->p_off;
    if (*len > it->p_len)
        *len = it->p_len;
}

/* Decimal without printf: these run once or more per message. */
static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static int put_literal_len(struct session *s, uint64_t len)
{
    char b[32];
    size_t n = 0;
    b[n++] = '{';
    n += fmt_u64(b + n, len);
    memcpy(b + n, "}\r\n", 3);
    return sess_write(s, b, n + 3);
}

static void buf_put_dec(struct buf *o, uint64_t v)
{
    char b[24];
    buf_append(o, b, fmt_u64(b, v));
}

struct collect_ctx {
    struct buf *b;
};

static int collect_sink(void *ctx, const void *p, size_t n)
{
    struct collect_ctx *c = ctx;
    return buf_append(c->b, p, n) != 0;
}

/* Stream a byte range of the canonical message as a literal. Returns 0,
 * or -1 when the store failed mid-literal (the session must end). */
static int stream_range(struct session *s, uint64_t msgnum, uint64_t off, uint64_t len)
{
    put_literal_len(s, len);
    if (len == 0)
        return 0;
    if (s->capture) {
        /* built in memory (fetch_one): the store appends the canonical
         * octets to the response itself, one copy instead of three */
        struct buf *b = s->capture;
        size_t base = b->len;
        int rc = inst_msg_read_buf(s->in, msgnum, off, len, b);
        if (rc != STORE_OK || b->len - base != len) {
            b->len = base;
            return -1;          /* a NO for this message, nothing sent yet */
        }
        unsigned char *p = b->data + base, *e = p + len;
        while ((p = memchr(p, 0, (size_t)(e - p))) != NULL)
            *p++ = 0x80;        /* NUL -> 0x80, sizes unchanged */
        return 0;
    }
    struct out_ctx o = {s, true, 0, 0};
    uint64_t done = 0;
    while (done < len && o.err == 0) {
        uint64_t piece = len - done < (1u << 20) ? len - done : (1u << 20);
        o.written = 0;
        int rc = inst_msg_read(s->in, msgnum, off + done, piece, out_sink, &o);
        if (rc != STORE_OK || o.written != piece) {
            log_err("message %llu: read failed (%s) mid-literal",
                    (unsigned long long)msgnum, store_strerror(rc));
            return -1;
        }
        done += piece;
        /* no sess_maybe_flush() here: renewing the read txn would leave
         * this message's msginfo pointers dangling (conn_write sends
         * when its own buffer is full, so memory stays bounded) */
    }
    return o.err;
}

/* BINARY: decode the part (two passes: the first finds the size and
 * whether a NUL needs literal8, the second writes the window). */
struct bin_ctx {
    struct session *s;
    struct cte_dec dec;
    struct buf *tmp;           /* decoded piece (the command's buffer) */
    uint64_t pos, win_off, win_len;
    bool nul;
    bool emit;
    int err;
};

static int bin_consume(struct bin_ctx *b, const unsigned char *p, size_t n)
{
    if (n == 0)   /* an empty part: p may be NULL, and memchr(NULL, ..., 0) is UB */
        return b->err;
    if (!b->emit) {
        if (memchr(p, 0, n) != NULL)
            b->nul = true;
        b->pos += n;
        return 0;
    }
    uint64_t s0 = b->pos, e0 = b->pos + n;
    uint64_t ws = b->win_off, we = b->win_off + b->win_len;
    if (e0 > ws && s0 < we) {
        uint64_t a = s0 > ws ? s0 : ws, z = e0 < we ? e0 : we;
        if (sess_write(b->s, p + (a - s0), (size_t)(z - a)) != 0)
            b->err = -1;
    }
    b->pos += n;
    return b->err;
}

static int bin_sink(void *ctx, const void *p, size_t n)
{
    struct bin_ctx *b = ctx;
    buf_reset(b->tmp);
    if (cte_dec_feed(&b->dec, p, n, b->tmp) != 0)
        return b->err = -1;
    return bin_consume(b, b->tmp->data, b->tmp->len);
}

static int bin_pass(struct bin_ctx *b, struct inst *in, uint64_t msgnum, uint64_t off,
                    uint64_t len, int cte)
{
    cte_dec_init(&b->dec, cte);
    b->pos = 0;
    int rc = inst_msg_read(in, msgnum, off, len, bin_sink, b);
    if (rc != STORE_OK || b->err != 0)
        return -1;
    buf_reset(b->tmp);
    if (cte_dec_finish(&b->dec, b->tmp) != 0)
        return -1;
    return bin_consume(b, b->tmp->data, b->tmp->len);
}

static int write_binary(struct session *s, const struct fitem *it, struct buf *tmp,
                        uint64_t msgnum, uint64_t off, uint64_t len, int cte)
{
    struct bin_ctx b;
    memset(&b, 0, sizeof(b));
    b.s = s;
    b.tmp = tmp;
    int rc = bin_pass(&b, s->in, msgnum, off, len, cte);
    if (rc == 0) {
        uint64_t total = b.pos, woff = 0, wlen = total;
        clip(it, &woff, &wlen);
        sess_printf(s, "%s{%llu}\r\n", b.nul ? "~" : "", (unsigned long long)wlen);
        b.emit = true;
        b.win_off = woff;
        b.win_len = wlen;
        if (wlen > 0)
            rc = bin_pass(&b, s->in, msgnum, off, len, cte);
        if (rc == 0 && b.pos != total)
            rc = -1;
    }
    return rc;
}

struct msgctx {
    struct msg_ref ref;
    struct msginfo mi;
    bool have_mi;
    struct buf *hdr, *filt;    /* the command's HEADER.FIELDS buffers */
};

/* Range and part of a BODY/BINARY section. -1: cannot be served. */
static int resolve_section(const struct msgctx *m, const struct fitem *it, uint64_t *off,
                           uint64_t *len, struct msginfo_part *part, bool *exists)
{
    uint32_t idx = 0;
    const char *err;
    enum msginfo_sect which = it->kind == F_SECTION ? it->which : MSGINFO_S_ALL;
    if (msginfo_section(&m->mi, it->path, it->npath, which, off, len, &idx, exists, &err) != 0)
        return -1;
    memset(part, 0, sizeof(*part));
    if (*exists && msginfo_part(&m->mi, idx, part) != 0)
        return -1;
    return 0;
}

static bool is_leaf(const struct msginfo_part *p)
{
    return p->type == MSGINFO_T_TEXT || p->type == MSGINFO_T_OTHER;
}

/* Does any BINARY item hit a transfer encoding we cannot decode? */
static bool unknown_cte(const struct msgctx *m, const struct fetch *f)
{
    for (size_t i = 0; i < f->n; i++) {
        const struct fitem *it = &f->items[i];
        if (it->kind != F_BINARY && it->kind != F_BINARY_SIZE)
            continue;
        if (it->npath == 0)
            continue;
        uint64_t off, len;
        struct msginfo_part part;
        bool exists;
        if (resolve_section(m, it, &off, &len, &part, &exists) == 0 && exists &&
            is_leaf(&part) && part.cte == MSGINFO_CTE_UNKNOWN)
            return true;
    }
    return false;
}

/* One item of one message; its label first. */
static int write_item(struct session *s, const struct fitem *it, struct msgctx *m)
{
    const char *str;
    size_t slen;
    char date[96];
    struct buf *o = &s->out;
    buf_reset(o);
    buf_puts(o, it->label);
    buf_putc(o, ' ');
    switch (it->kind) {
    case F_FLAGS:
        sess_append_flags(o, m->ref.flags);
        break;
    case F_UID:
        buf_put_dec(o, m->ref.uid);
        break;
    case F_INTERNALDATE:
        sess_fmt_date(date, m->ref.internaldate, m->ref.internal_tz);
        buf_printf(o, "\"%s\"", date);
        break;
    case F_SIZE:
        buf_put_dec(o, m->ref.size);
        break;
    case F_ENVELOPE:
    case F_BODY:
    case F_BODYSTRUCTURE:
        if (it->kind == F_ENVELOPE)
            msginfo_envelope(&m->mi, &str, &slen);
        else if (it->kind == F_BODY)
            msginfo_body(&m->mi, &str, &slen);
        else
            msginfo_bodystructure(&m->mi, &str, &slen);
        /* msginfo stores the three strings without their outer
         * parentheses (proto/msginfo.h) */
        buf_putc(o, '(');
        sess_write(s, o->data, o->len);
        sess_write(s, str, slen);
        return sess_write(s, ")", 1);
    default:
        break;
    }
    if (it->kind < F_ENVELOPE)
        return sess_write(s, o->data, o->len);

    uint64_t off, len;
    struct msginfo_part part;
    bool exists;
    if (resolve_section(m, it, &off, &len, &part, &exists) != 0) {
        /* syntactically valid but meaningless here: answer empty */
        exists = false;
    }
    sess_write(s, o->data, o->len);
    if (!exists)
        return sess_puts(s, it->kind == F_BINARY_SIZE ? "0" : "\"\"");
    if (it->kind == F_BINARY_SIZE) {
        uint64_t sz = it->npath == 0 || !is_leaf(&part) ? len : part.binary_size;
        return sess_printf(s, "%llu", (unsigned long long)sz);
    }
    if (it->kind == F_BINARY) {
        int cte = it->npath > 0 && is_leaf(&part) ? part.cte : MSGINFO_CTE_BINARY;
        if (cte != MSGINFO_CTE_BASE64 && cte != MSGINFO_CTE_QP)
            cte = MSGINFO_CTE_BINARY;   /* identity */
        return write_binary(s, it, m->filt, m->ref.msgnum, off, len, cte);
    }
    if (it->which == MSGINFO_S_HEADER_FIELDS || it->which == MSGINFO_S_HEADER_FIELDS_NOT) {
        struct buf *hdr = m->hdr, *filt = m->filt;
        bool not_ = it->which == MSGINFO_S_HEADER_FIELDS_NOT;
        buf_reset(filt);
        /* The message's own header is its first chunk, stored as it came:
         * filter it in place and make only the selected fields canonical. */
        const unsigned char *raw;
        size_t rawlen;
        int rc = off == 0 ? inst_msg_head_raw(s->in, m->ref.msgnum, len, &raw, &rawlen)
                          : STORE_ENOTFOUND;
        if (rc == STORE_OK) {
            rc = msginfo_header_filter_set(raw, rawlen, &it->fset, not_, true, filt);
        } else if (rc == STORE_ENOTFOUND) {
            buf_reset(hdr);
            struct collect_ctx cc = {hdr};
            rc = inst_msg_read(s->in, m->ref.msgnum, off, len, collect_sink, &cc);
            if (rc == STORE_OK)
                rc = msginfo_header_filter_set(hdr->data, hdr->len, &it->fset, not_, false, filt);
        }
        if (rc != 0)
            return -1;
        uint64_t foff = 0, flen = filt->len;
        clip(it, &foff, &flen);
        unsigned char *fp = flen ? filt->data + foff : NULL;
        for (unsigned char *z = flen ? memchr(fp, 0, (size_t)flen) : NULL; z != NULL;
             z = memchr(z, 0, (size_t)(fp + flen - z)))
            *z = 0x80;
        put_literal_len(s, flen);
        return sess_write(s, fp, (size_t)flen);
    }
    clip(it, &off, &len);
    return stream_range(s, m->ref.msgnum, off, len);
}

/* Largest response built in memory before it is sent (the command's one
 * reusable buffer, freed when the command ends). Above it every frame the
 * response needs is decompressed and checked first, then decompressed
 * again as it streams: one extra decompression of those octets. At 1 MiB
 * that was +11.7 % of the CPU instructions of a full download of the
 * gen-corpus bench mailbox (11.5 % of its octets are in messages over
 * 1 MiB; none is over 4 MiB); 4 MiB keeps ordinary mail on the one-pass
 * path at a bounded 4 MiB per FETCHing connection. */
#define FETCH_CAPTURE_MAX (4u << 20)

static int fetch_write(struct session *s, const struct fetch *f, size_t idx, bool uid,
                       struct msgctx *mp);

/* The canonical range an item reads from the store, whole (a partial
 * HEADER.FIELDS or BINARY still reads all of its section). false: the
 * item reads nothing. */
static bool item_range(const struct msgctx *m, const struct fitem *it, uint64_t *off,
                       uint64_t *len)
{
    if (it->kind != F_SECTION && it->kind != F_BINARY)
        return false;
    struct msginfo_part part;
    bool exists;
    if (resolve_section(m, it, off, len, &part, &exists) != 0 || !exists)
        return false;
    if (it->kind == F_SECTION && it->which != MSGINFO_S_HEADER_FIELDS &&
        it->which != MSGINFO_S_HEADER_FIELDS_NOT)
        clip(it, off, len);
    return *len > 0;
}

static int fetch_one(struct session *s, struct fetch *f, size_t idx, bool uid,
                     bool *unknown)
{
    struct msgctx m;
    m.have_mi = false;
    m.hdr = &f->hdr;
    m.filt = &f->filt;
    uint32_t uid_ = sess_view_uid(s, idx);
    int grc = inst_msg_get(s->in, s->selrec.id, uid_, &m.ref);
    if (grc == STORE_ENOTFOUND) {
        /* gone from the store: nothing to say about it (RFC 3501). An
         * archive never removes a message, so the log hears of it. */
        log_warn("instance %s folder %s UID %u: no longer in the store", s->who.instance,
                 s->sel.ext, uid_);
        return 0;
    }
    if (grc != STORE_OK) {
        /* a damaged record or page is not a vanished message: the client
         * must learn that something it asked for was not sent */
        log_err("instance %s folder %s UID %u: cannot read its record: %s", s->who.instance,
                s->sel.ext, uid_, store_strerror(grc));
        return 1;
    }
    if (f->any_msginfo) {
        const void *data;
        size_t len;
        const char *err = NULL;
        int irc = inst_msg_info(s->in, m.ref.msgnum, &data, &len);
        if (irc != STORE_OK || msginfo_open(&m.mi, data, len, &err) != 0) {
            log_err("instance %s folder %s UID %u message %llu: unusable msginfo record: %s "
                    "(coffer verify/reindex)", s->who.instance, s->sel.ext, uid_,
                    (unsigned long long)m.ref.msgnum,
                    irc != STORE_OK ? store_strerror(irc) : err ? err : "malformed");
            return 1;
        }
        m.have_mi = true;
        if (unknown_cte(&m, f)) {
            *unknown = true;
            return 0;
        }
    }
    /* Only items that read message octets can fail once the response has
     * begun; without them it goes straight out. */
    if (!f->any_section)
        return fetch_write(s, f, idx, uid, &m);
    /* A damaged frame must turn into a NO for that message, never a
     * connection cut mid-literal. A response that is small is built in
     * memory first (the command's reusable buffer); a larger one has every
     * frame it needs decompressed and checked first (bounded memory: one
     * frame at a time), then streams. */
    uint64_t base = 4096 + (m.have_mi ? m.mi.len : 0), bound = base;
    for (size_t i = 0; i < f->n; i++)   /* label, literal header; octets */
        if (f->items[i].kind >= F_SECTION)
            bound += 640 + m.ref.size;
    if (bound > FETCH_CAPTURE_MAX) {    /* the message is large: size each item */
        bound = base;
        for (size_t i = 0; i < f->n; i++) {
            uint64_t off, len;
            if (f->items[i].kind >= F_SECTION)
                bound += 640 + (item_range(&m, &f->items[i], &off, &len) ? len : 0);
        }
    }
    bool capturing = bound <= FETCH_CAPTURE_MAX;
    bool bad = false;
    if (!capturing) {
        for (size_t i = 0; i < f->n && !bad; i++) {
            uint64_t off, len;
            bad = item_range(&m, &f->items[i], &off, &len) &&
                  inst_msg_check(s->in, m.ref.msgnum, off, len) != STORE_OK;
        }
    } else {
        buf_reset(&f->cap);
        s->capture = &f->cap;
        bad = fetch_write(s, f, idx, uid, &m) != 0;
        s->capture = NULL;
    }
    if (bad) {
        log_err("instance %s folder %s UID %u message %llu: read failed, answered NO for it",
                s->who.instance, s->sel.ext, uid_, (unsigned long long)m.ref.msgnum);
        return 1;
    }
    if (capturing)
        return sess_write(s, f->cap.data, f->cap.len);
    /* checked above: a failure now would be the store changing under a
     * read txn, and still ends the session (stream_range) */
    return fetch_write(s, f, idx, uid, &m);
}

static int fetch_write(struct session *s, const struct fetch *f, size_t idx, bool uid,
                       struct msgctx *mp)
{
    char line[64];
    size_t n = 0;
    memcpy(line, "* ", 2);
    n = 2 + fmt_u64(line + 2, (uint64_t)idx + 1);
    memcpy(line + n, " FETCH (", 8);
    n += 8;
    bool first = true;
    if (uid && !f->uid_listed) {
        memcpy(line + n, "UID ", 4);
        n += 4 + fmt_u64(line + n + 4, mp->ref.uid);
        first = false;
    }
    sess_write(s, line, n);
    for (size_t i = 0; i < f->n; i++) {
        if (!first)
            sess_puts(s, " ");
        first = false;
        if (write_item(s, &f->items[i], mp) != 0)
            return -1;
    }
    sess_puts(s, ")\r\n");
    return 0;
}

/* A fresh read txn after a failed message. Holds no pointer from the
 * old one: fetch_one copies what it keeps between messages. */
static int renew_txn(struct session *s)
{
    if (!s->txn) {
        inst_rd_end(s->in);      /* a lazily begun txn: the next call begins anew */
        return 0;
    }
    sess_rd_end(s);
    return sess_rd_begin(s);
}

int cmd_fetch(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
              size_t nargs, bool uid)
{
    if (nargs != 2)
        return sess_tagged(s, cmd->tag, "BAD", "FETCH needs a set and items");
    struct fetch f = {0};
    f.items = calloc(MAX_ITEMS, sizeof(*f.items));
    if (f.items == NULL)
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Out of memory");
    int rc = 0;
    if (args[1].type == IMAP_ARG_LIST) {
        if (args[1].nlist == 0)
            rc = -1;
        for (size_t i = 0; i < args[1].nlist && rc == 0; i++)
            rc = parse_item(&f, &args[1].list[i], false);
    } else {
        rc = parse_item(&f, &args[1], true);
    }
    buf_init(&f.cap, FETCH_CAPTURE_MAX);
    buf_init(&f.hdr, HEADER_MAX);
    buf_init(&f.filt, HEADER_MAX);
    if (rc != 0) {
        fetch_free(&f);
        return sess_tagged(s, cmd->tag, "BAD", "Invalid FETCH items");
    }
    for (size_t i = 0; i < f.n; i++) {
        f.any_section |= f.items[i].kind == F_SECTION || f.items[i].kind == F_BINARY;
        f.uid_listed |= f.items[i].kind == F_UID;
    }
    struct view_iter it;
    const char *err;
    if (view_iter_init(s, &args[0], uid, &it, &err) != 0) {
        fetch_free(&f);
        return sess_tagged(s, cmd->tag, "BAD", "%s", err);
    }
    size_t idx;
    bool unknown = false;
    unsigned failed = 0;
    int end = 0;
    while (view_iter_next(s, &it, &idx)) {
        int r = fetch_one(s, &f, idx, uid, &unknown);
        if (r < 0) {
            end = 1;
            break;
        }
        failed += (unsigned)r;
        /* LMDB leaves a read txn that met a damaged page (MDB_CORRUPTED,
         * MDB_PAGE_NOTFOUND) unusable: every later lookup would fail too.
         * Renew it, as sess_maybe_flush does between pieces of a long
         * response: the view (the UIDs this command covers) is the
         * session's and does not change. */
        if (r > 0 && renew_txn(s) != 0) {
            log_err("instance %s: cannot renew the read transaction: the rest of the "
                    "FETCH is answered NO", s->who.instance);
            failed++;
            break;
        }
        if (sess_maybe_flush(s) != 0) {
            end = 1;
            break;
        }
    }
    view_iter_free(&it);
    fetch_free(&f);
    if (end) {
        sess_puts(s, "* BYE Internal error while sending a message\r\n");
        sess_flush(s);
        return CMD_END;
    }
    if (unknown)
        return sess_tagged(s, cmd->tag, "NO", "[UNKNOWN-CTE] Cannot decode a part");
    if (failed)
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Some messages could not be read");
    return sess_tagged(s, cmd->tag, "OK", "Fetch completed");
}
