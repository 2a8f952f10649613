/* search.c — SEARCH program parser (RFC 3501 6.4.4, RFC 9051 6.4.4,
 * RFC 4731 RETURN, RFC 5182 `$`). Keys are converted to UTF-8 from the
 * CHARSET and folded here, once, so the executor only compares octets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "proto/search.h"
#include "proto/search_prog.h"
#include "proto/charset.h"
#include "proto/mailtext.h"
#include "proto/unicase.h"

#define KEY_MAX (64u * 1024u)

struct pctx {
    const struct imap_arg *args;
    size_t n, i;
    int charset;
    size_t nkeys;
    int path[SEARCH_MAX_DEPTH + 2];
    int depth;
    char errbuf[256];
    int code;
};

static _Thread_local char err_out[320];

static struct search_node *fail(struct pctx *c, const char *msg)
{
    if (c->code)
        return NULL;             /* keep the first (innermost) error */
    c->code = SEARCH_ERR_BAD;
    char where[128];
    size_t w = 0;
    where[0] = 0;
    for (int d = 0; d <= c->depth && w < sizeof where - 12; d++)
        w += (size_t)snprintf(where + w, sizeof where - w, d ? ".%d" : "%d", c->path[d]);
    snprintf(c->errbuf, sizeof c->errbuf, "Error in SEARCH at argument %s: %s", where, msg);
    return NULL;
}

static void node_free(struct search_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    seqset_free(&n->set);
    free(n->hname);
    free(n->key);
    free(n);
}

static struct search_node *node_new(struct pctx *c, enum search_key t)
{
    if (++c->nkeys > SEARCH_MAX_KEYS)
        return fail(c, "too many search keys");
    struct search_node *n = calloc(1, sizeof *n);
    if (!n)
        return fail(c, "out of memory");
    n->type = t;
    n->field = MT__N;
    return n;
}

static bool add_kid(struct search_node *p, struct search_node *k)
{
    struct search_node **nk = realloc(p->kids, (p->nkids + 1) * sizeof *nk);
    if (!nk)
        return false;
    p->kids = nk;
    p->kids[p->nkids++] = k;
    return true;
}

static bool atom_is(const struct imap_arg *a, const char *s)
{
    return a->type == IMAP_ARG_ATOM && a->len == strlen(s) && strncasecmp(a->s, s, a->len) == 0;
}

static const struct imap_arg *next_arg(struct pctx *c)
{
    if (c->i >= c->n)
        return NULL;
    c->path[c->depth] = (int)c->i + 1;
    return &c->args[c->i++];
}

/* astring argument of a key, converted and folded into n->key */
static bool take_string(struct pctx *c, struct search_node *n, const char *what)
{
    const struct imap_arg *a = next_arg(c);
    char msg[96];
    if (!a || !imap_arg_is_astring(a)) {
        snprintf(msg, sizeof msg, "%s needs a string argument", what);
        fail(c, msg);
        return false;
    }
    if (a->len > KEY_MAX) {
        fail(c, "search string too long");
        return false;
    }
    struct buf u, f;
    buf_init(&u, KEY_MAX * 4);
    buf_init(&f, KEY_MAX * 16);
    int rc = charset_to_utf8(c->charset, (const unsigned char *)a->s, a->len, true, &u);
    if (rc == 1) {
        buf_free(&u);
        buf_free(&f);
        fail(c, "invalid characters in search string for the given CHARSET");
        return false;
    }
    if (rc == 0)
        rc = unicase_fold(u.data, u.len, &f);
    buf_free(&u);
    if (rc == 0)
        rc = buf_putc(&f, 0);
    if (rc) {
        buf_free(&f);
        fail(c, "out of memory");
        return false;
    }
    n->key = f.data;
    n->klen = f.len - 1;
    n->exists_only = a->len == 0;
    return true;
}

static bool parse_number(const struct imap_arg *a, int64_t *out)
{
    if (!a || a->type != IMAP_ARG_ATOM || a->len == 0 || a->len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (a->s[i] < '0' || a->s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(a->s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* date = date-text / DQUOTE date-text DQUOTE; date-text = day "-" month "-" year */
static bool parse_date(const struct imap_arg *a, int64_t *days)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    if (!a || a->type == IMAP_ARG_LIST || a->len < 10 || a->len > 11)
        return false;
    const char *s = a->s;
    size_t i = 0;
    unsigned day = 0;
    while (i < 2 && s[i] >= '0' && s[i] <= '9')
        day = day * 10 + (unsigned)(s[i++] - '0');
    if (i == 0 || s[i] != '-' || a->len != i + 9 || day < 1 || day > 31)
        return false;
    i++;
    unsigned mon = 0;
    for (unsigned m = 0; m < 12; m++)
        if (strncasecmp(s + i, months + m * 3, 3) == 0)
            mon = m + 1;
    if (!mon || s[i + 3] != '-')
        return false;
    i += 4;
    int64_t year = 0;
    for (int k = 0; k < 4; k++) {
        if (s[i + k] < '0' || s[i + k] > '9')
            return false;
        year = year * 10 + (s[i + k] - '0');
    }
    *days = days_from_civil(year, mon, 1) + day - 1;
    return true;
}

static struct search_node *parse_key(struct pctx *c);

/* keys up to the end of the current argument vector, ANDed */
static struct search_node *parse_seq(struct pctx *c)
{
    struct search_node *and = node_new(c, SK_AND);
    if (!and)
        return NULL;
    while (c->i < c->n) {
        struct search_node *k = parse_key(c);
        if (!k || !add_kid(and, k)) {
            node_free(k);
            node_free(and);
            return c->code ? NULL : fail(c, "out of memory");
        }
    }
    if (and->nkids == 0) {
        node_free(and);
        return fail(c, "missing search key");
    }
    if (and->nkids == 1) {
        struct search_node *only = and->kids[0];
        and->nkids = 0;
        node_free(and);
        return only;
    }
    return and;
}

static const struct { const char *name; enum search_key t; uint32_t f; } simple[] = {
    { "ALL", SK_ALL, 0 }, { "ANSWERED", SK_FLAG, SEARCH_F_ANSWERED },
    { "DELETED", SK_NONE, 0 }, { "DRAFT", SK_FLAG, SEARCH_F_DRAFT },
    { "FLAGGED", SK_FLAG, SEARCH_F_FLAGGED }, { "NEW", SK_NONE, 0 },
    { "OLD", SK_ALL, 0 }, { "RECENT", SK_NONE, 0 }, { "SEEN", SK_FLAG, SEARCH_F_SEEN },
    { "UNANSWERED", SK_UNFLAG, SEARCH_F_ANSWERED }, { "UNDELETED", SK_ALL, 0 },
    { "UNDRAFT", SK_UNFLAG, SEARCH_F_DRAFT }, { "UNFLAGGED", SK_UNFLAG, SEARCH_F_FLAGGED },
    { "UNSEEN", SK_UNFLAG, SEARCH_F_SEEN },
};
static const struct { const char *name; enum search_key t; } datekeys[] = {
    { "BEFORE", SK_BEFORE }, { "ON", SK_ON }, { "SINCE", SK_SINCE },
    { "SENTBEFORE", SK_SENTBEFORE }, { "SENTON", SK_SENTON }, { "SENTSINCE", SK_SENTSINCE },
};
static const struct { const char *name; int field; } hdrkeys[] = {
    { "FROM", MT_FROM }, { "TO", MT_TO }, { "CC", MT_CC }, { "BCC", MT_BCC },
    { "SUBJECT", MT_SUBJECT },
};

static bool is_atom_char_kw(char ch)
{
    /* flag-keyword = atom: no specials, no '\' */
    unsigned char u = (unsigned char)ch;
    return u > 0x20 && u < 0x7f && !strchr("(){%*\"\\]", ch);
}

static struct search_node *parse_key(struct pctx *c)
{
    if (c->depth >= SEARCH_MAX_DEPTH)
        return fail(c, "search program nested too deeply");
    const struct imap_arg *a = next_arg(c);
    struct search_node *n;
    if (!a)
        return fail(c, "missing search key");
    if (a->type == IMAP_ARG_LIST) {
        if (a->nlist == 0)
            return fail(c, "empty parenthesised list");
        struct pctx sub = *c;
        sub.args = a->list;
        sub.n = a->nlist;
        sub.i = 0;
        sub.depth = c->depth + 1;
        n = parse_seq(&sub);
        c->nkeys = sub.nkeys;
        if (!n) {
            c->code = sub.code;
            memcpy(c->errbuf, sub.errbuf, sizeof c->errbuf);
        }
        return n;
    }
    if (a->type != IMAP_ARG_ATOM)
        return fail(c, "expected a search key, got a string");
    char ch = a->s[0];
    if ((ch >= '0' && ch <= '9') || ch == '*' || ch == '$') {
        if (!(n = node_new(c, SK_SEQ)))
            return NULL;
        const char *e = "bad sequence set";
        if (seqset_parse(a->s, a->len, SEQSET_MAX_RANGES, &n->set, &e) != 0) {
            node_free(n);
            return fail(c, e);
        }
        if (n->set.dollar)
            n->type = SK_SAVED;
        return n;
    }
    for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
        if (atom_is(a, simple[k].name)) {
            if ((n = node_new(c, simple[k].t)))
                n->flags = simple[k].f;
            return n;
        }
    }
    for (size_t k = 0; k < sizeof datekeys / sizeof datekeys[0]; k++) {
        if (atom_is(a, datekeys[k].name)) {
            if (!(n = node_new(c, datekeys[k].t)))
                return NULL;
            if (!parse_date(next_arg(c), &n->num)) {
                node_free(n);
                return fail(c, "expected a date (d-Mon-yyyy)");
            }
            return n;
        }
    }
    for (size_t k = 0; k < sizeof hdrkeys / sizeof hdrkeys[0]; k++) {
        if (atom_is(a, hdrkeys[k].name)) {
            if (!(n = node_new(c, SK_HEADER)))
                return NULL;
            n->field = hdrkeys[k].field;
            if (!take_string(c, n, hdrkeys[k].name)) {
                node_free(n);
                return NULL;
            }
            return n;
        }
    }
    if (atom_is(a, "BODY") || atom_is(a, "TEXT")) {
        bool body = atom_is(a, "BODY");
        if (!(n = node_new(c, body ? SK_BODY : SK_TEXT)))
            return NULL;
        if (!take_string(c, n, body ? "BODY" : "TEXT")) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (atom_is(a, "HEADER")) {
        const struct imap_arg *h = next_arg(c);
        if (!h || !imap_arg_is_astring(h) || h->len == 0 || h->len > 255 ||
            memchr(h->s, 0, h->len))
            return fail(c, "HEADER needs a field name");
        for (size_t i = 0; i < h->len; i++)
            if ((unsigned char)h->s[i] <= 0x20 || (unsigned char)h->s[i] >= 0x7f || h->s[i] == ':')
                return fail(c, "invalid header field name");
        if (!(n = node_new(c, SK_HEADER)))
            return NULL;
        /* HEADER From/To/Cc/Bcc/Subject search the raw decoded field (not
         * the normalised addresses, nor compressed white space): only
         * Message-ID has postings of its own that fit */
        static const struct { const char *name; int field; } named[] = {
            { "Message-ID", MT_MSGID },
        };
        n->hname = strndup(h->s, h->len);
        if (!n->hname) {
            node_free(n);
            return fail(c, "out of memory");
        }
        for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
            if (strcasecmp(n->hname, named[k].name) == 0)
                n->field = named[k].field;
        if (!take_string(c, n, "HEADER")) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (atom_is(a, "KEYWORD") || atom_is(a, "UNKEYWORD")) {
        bool un = atom_is(a, "UNKEYWORD");
        const struct imap_arg *k = next_arg(c);
        if (!k || k->type != IMAP_ARG_ATOM || k->len == 0)
            return fail(c, "KEYWORD needs a flag keyword");
        for (size_t i = 0; i < k->len; i++)
            if (!is_atom_char_kw(k->s[i]))
                return fail(c, "invalid flag keyword");
        /* the archive stores no keywords: nothing has one */
        return node_new(c, un ? SK_ALL : SK_NONE);
    }
    if (atom_is(a, "LARGER") || atom_is(a, "SMALLER")) {
        bool larger = atom_is(a, "LARGER");
        if (!(n = node_new(c, larger ? SK_LARGER : SK_SMALLER)))
            return NULL;
        if (!parse_number(next_arg(c), &n->num)) {
            node_free(n);
            return fail(c, "expected a number");
        }
        return n;
    }
    if (atom_is(a, "NOT")) {
        if (!(n = node_new(c, SK_NOT)))
            return NULL;
        struct search_node *k = parse_key(c);
        if (!k || !add_kid(n, k)) {
            node_free(k);
            node_free(n);
            return c->code ? NULL : fail(c, "out of memory");
        }
        return n;
    }
    if (atom_is(a, "OR")) {
        if (!(n = node_new(c, SK_OR)))
            return NULL;
        for (int j = 0; j < 2; j++) {
            struct search_node *k = parse_key(c);
            if (!k || !add_kid(n, k)) {
                node_free(k);
                node_free(n);
                return c->code ? NULL : fail(c, "out of memory");
            }
        }
        return n;
    }
    if (atom_is(a, "UID")) {
        if (!(n = node_new(c, SK_UID)))
            return NULL;
        const struct imap_arg *s = next_arg(c);
        const char *e = "UID needs a sequence set";
        if (!s || s->type != IMAP_ARG_ATOM ||
            seqset_parse(s->s, s->len, SEQSET_MAX_RANGES, &n->set, &e) != 0) {
            node_free(n);
            return fail(c, e);
        }
        if (n->set.dollar)
            n->type = SK_SAVED;
        return n;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "unknown search key %.40s", a->s);
    return fail(c, msg);
}

int search_charsets_init(const char **err)
{
    return charset_init(err);
}

const char *search_charsets_list(void)
{
    return charset_search_list();
}

static int parse_return(struct pctx *c, struct search_prog *p)
{
    const struct imap_arg *l = next_arg(c);
    if (!l || l->type != IMAP_ARG_LIST) {
        fail(c, "RETURN needs a list of options");
        return -1;
    }
    p->esearch = true;
    for (size_t i = 0; i < l->nlist; i++) {
        const struct imap_arg *o = &l->list[i];
        static const struct { const char *n; unsigned bit; } opts[] = {
            { "MIN", SEARCH_RET_MIN }, { "MAX", SEARCH_RET_MAX }, { "ALL", SEARCH_RET_ALL },
            { "COUNT", SEARCH_RET_COUNT }, { "SAVE", SEARCH_RET_SAVE },
        };
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
            if (atom_is(o, opts[k].n))
                bit = opts[k].bit;
        if (!bit) {
            fail(c, "unknown RETURN option");
            return -1;
        }
        p->ret |= bit;
    }
    if (p->ret == 0)
        p->ret = SEARCH_RET_ALL;   /* RFC 4731: RETURN () means RETURN (ALL) */
    return 0;
}

bool search_has_charset(const struct imap_arg *args, size_t nargs)
{
    size_t i = 0;
    if (i < nargs && atom_is(&args[i], "RETURN"))
        i += 2;                 /* RETURN and its option list */
    return i < nargs && atom_is(&args[i], "CHARSET");
}

int search_parse(const struct imap_arg *args, size_t nargs,
                 struct search_prog **out, int *code, const char **err)
{
    struct pctx c;
    memset(&c, 0, sizeof c);
    c.args = args;
    c.n = nargs;
    c.charset = CHARSET_UTF8;      /* Dovecot's default; a superset of US-ASCII */
    *out = NULL;
    struct search_prog *p = calloc(1, sizeof *p);
    if (!p) {
        *code = SEARCH_ERR_BAD;
        *err = "out of memory";
        return -1;
    }
    if (c.i < c.n && atom_is(&c.args[c.i], "RETURN")) {
        next_arg(&c);
        if (parse_return(&c, p) < 0)
            goto bad;
    }
    if (c.i < c.n && atom_is(&c.args[c.i], "CHARSET")) {
        next_arg(&c);
        const struct imap_arg *cs = next_arg(&c);
        if (!cs || !imap_arg_is_astring(cs)) {
            fail(&c, "CHARSET needs a charset name");
            goto bad;
        }
        int h = charset_find(cs->s, cs->len);
        if (!charset_search_ok(h)) {
            /* the caller adds the response code from search_charsets_list() */
            *code = SEARCH_ERR_BADCHARSET;
            *err = "Unsupported search charset";
            free(p);
            return -1;
        }
        c.charset = h;
    }
    p->root = parse_seq(&c);
    if (!p->root)
        goto bad;
    p->nkeys = c.nkeys;
    *out = p;
    return 0;
bad:
    *code = SEARCH_ERR_BAD;
    snprintf(err_out, sizeof err_out, "%s", c.errbuf[0] ? c.errbuf : "Error in SEARCH");
    *err = err_out;
    search_free(p);
    return -1;
}

void search_free(struct search_prog *p)
{
    if (!p)
        return;
    node_free(p->root);
    free(p);
}

unsigned search_return(const struct search_prog *p, bool *esearch)
{
    *esearch = p->esearch;
    return p->ret;
}
