/* envelope.c — ENVELOPE writer and address-list parser; see envelope.h. */
#include "proto/envelope.h"
#include "proto/mimehdr.h"
#include "proto/mimequote.h"
#include "proto/rfc822.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NOSTR SIZE_MAX

struct addr {
    size_t name, route, mailbox, domain;   /* offsets into strs, or NOSTR */
};

struct aparse {
    struct rfc822_ctx c;
    struct buf comment, tmp, strs;
    struct addr *list;
    size_t n, cap;
    struct addr cur;
    bool invalid;
};

static size_t save(struct aparse *a, const void *s, size_t n)
{
    size_t off = a->strs.len;
    if (buf_append(&a->strs, s, n) || buf_putc(&a->strs, 0))
        return NOSTR;
    return off;
}

static size_t save_str(struct aparse *a, const char *s) { return save(a, s, strlen(s)); }

static void reset_cur(struct aparse *a)
{
    a->cur.name = a->cur.route = a->cur.mailbox = a->cur.domain = NOSTR;
    a->invalid = false;
}

static void add_address(struct aparse *a)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 8;
        struct addr *nl = realloc(a->list, ncap * sizeof *nl);
        if (!nl) {
            reset_cur(a);
            return;
        }
        a->list = nl;
        a->cap = ncap;
    }
    a->list[a->n++] = a->cur;
    reset_cur(a);
}

static const char *S(const struct aparse *a, size_t off)
{
    return off == NOSTR ? NULL : (const char *)a->strs.data + off;
}

/* Local parts accept misplaced dots ("..x", "a..b", "x."), which real
 * mail has and the reference keeps. */
static int nonstrict_dot_atom(struct rfc822_ctx *c, struct buf *out)
{
    int r = -1;
    do {
        while (*c->p == '.') {
            buf_putc(out, '.');
            c->p++;
            if (c->p >= c->end)
                return 0;
            r = 1;
        }
        if (*c->p == '@')
            break;
        r = rfc822_atom(c, out);
    } while (r > 0 && *c->p == '.');
    return r;
}

static int local_part(struct aparse *a)
{
    int r;
    buf_reset(&a->tmp);
    if (*a->c.p == '"')
        r = rfc822_quoted_string(&a->c, &a->tmp);
    else
        r = nonstrict_dot_atom(&a->c, &a->tmp);
    if (r < 0)
        return -1;
    a->cur.mailbox = save(a, a->tmp.data, a->tmp.len);
    return r;
}

static int domain(struct aparse *a)
{
    buf_reset(&a->tmp);
    int r = rfc822_domain(&a->c, &a->tmp);
    if (r < 0)
        return -1;
    a->cur.domain = save(a, a->tmp.data, a->tmp.len);
    return r;
}

static int domain_list(struct aparse *a)
{
    buf_reset(&a->tmp);
    for (;;) {
        if (a->c.p >= a->c.end)
            return 0;
        if (*a->c.p != '@')
            break;
        if (a->tmp.len > 0)
            buf_putc(&a->tmp, ',');
        buf_putc(&a->tmp, '@');
        int r = rfc822_domain(&a->c, &a->tmp);
        if (r <= 0)
            return r;
        while (rfc822_skip_lwsp(&a->c) > 0 && *a->c.p == ',')
            a->c.p++;
    }
    a->cur.route = save(a, a->tmp.data, a->tmp.len);
    return 1;
}

static int angle_addr(struct aparse *a)
{
    a->c.p++;
    if (rfc822_skip_lwsp(&a->c) <= 0)
        return -1;
    if (*a->c.p == '@') {
        if (domain_list(a) > 0 && *a->c.p == ':') {
            a->c.p++;
        } else {
            a->cur.route = save_str(a, "INVALID_ROUTE");
            if (a->c.p >= a->c.end)
                return -1;
        }
        if (rfc822_skip_lwsp(&a->c) <= 0)
            return -1;
    }
    if (*a->c.p != '>') {
        if (local_part(a) <= 0)
            return -1;
        if (*a->c.p == '@' && domain(a) <= 0)
            return -1;
    }
    if (*a->c.p != '>')
        return -1;
    a->c.p++;
    return rfc822_skip_lwsp(&a->c);
}

static int name_addr(struct aparse *a)
{
    buf_reset(&a->tmp);
    if (rfc822_phrase(&a->c, &a->tmp) <= 0 || *a->c.p != '<')
        return -1;
    a->cur.name = a->tmp.len ? save(a, a->tmp.data, a->tmp.len) : NOSTR;
    if (angle_addr(a) < 0) {
        a->cur.domain = save_str(a, "SYNTAX_ERROR");
        a->invalid = true;
    }
    return a->c.p < a->c.end ? 1 : 0;
}

static int addr_spec(struct aparse *a)
{
    int r, r2 = -2;
    buf_reset(&a->comment);
    bool quoted = *a->c.p == '"';
    r = local_part(a);
    if (r <= 0)
        a->invalid = true;
    if (r != 0 && a->c.p < a->c.end && *a->c.p == '@') {
        r2 = domain(a);
        if (r2 <= 0)
            r = r2;
    }
    if (a->comment.len > 0) {
        a->cur.name = save(a, a->comment.data, a->comment.len);
    } else if (r2 == -2) {
        /* "user" alone is a mailbox; "user more words" is a display name */
        buf_putc(&a->tmp, ' ');
        size_t before = a->tmp.len;
        (void)rfc822_phrase(&a->c, &a->tmp);
        if (a->tmp.len != before) {
            a->cur.mailbox = NOSTR;
            a->cur.name = save(a, a->tmp.data, a->tmp.len);
        } else if (!quoted) {
            a->cur.domain = save_str(a, "");
        }
        a->invalid = true;
        r = -1;
    }
    return r;
}

static void add_fixed(struct aparse *a)
{
    if (a->cur.mailbox == NOSTR)
        a->cur.mailbox = save_str(a, "MISSING_MAILBOX");
    const char *d = S(a, a->cur.domain);
    if (!d || !*d)
        a->cur.domain = save_str(a, "MISSING_DOMAIN");
    add_address(a);
}

static int mailbox(struct aparse *a)
{
    const unsigned char *start = a->c.p;
    int r = name_addr(a);
    if (r < 0) {
        a->c.p = start;
        reset_cur(a);
        r = addr_spec(a);
        if (a->invalid && a->cur.name == NOSTR && a->cur.mailbox != NOSTR &&
            a->cur.domain == NOSTR) {
            a->cur.name = a->cur.mailbox;
            a->cur.mailbox = NOSTR;
        }
    }
    add_fixed(a);
    return r;
}

static int group(struct aparse *a)
{
    int r;
    buf_reset(&a->tmp);
    if (rfc822_phrase(&a->c, &a->tmp) <= 0 || *a->c.p != ':')
        return -1;
    a->c.p++;
    r = rfc822_skip_lwsp(&a->c);
    a->cur.mailbox = save(a, a->tmp.data, a->tmp.len);
    add_address(a);
    if (r > 0 && *a->c.p != ';') {
        for (;;) {
            (void)mailbox(a);
            if (a->c.p >= a->c.end || *a->c.p != ',')
                break;
            a->c.p++;
            if (rfc822_skip_lwsp(&a->c) <= 0) {
                r = -1;
                break;
            }
        }
    }
    if (r >= 0) {
        if (a->c.p >= a->c.end || *a->c.p != ';')
            r = -1;
        else {
            a->c.p++;
            r = rfc822_skip_lwsp(&a->c);
        }
    }
    add_address(a);
    return r == 0 ? 0 : 1;
}

static int address(struct aparse *a)
{
    const unsigned char *start = a->c.p;
    size_t n0 = a->n;
    int r = group(a);
    if (r < 0) {
        a->c.p = start;
        a->n = n0;
        reset_cur(a);
        r = mailbox(a);
    }
    return r;
}

static void address_list(struct aparse *a)
{
    for (;;) {
        if (address(a) == 0)
            break;
        if (a->c.p >= a->c.end || *a->c.p != ',')
            break;
        a->c.p++;
        int r = rfc822_skip_lwsp(&a->c);
        if (r <= 0) {
            if (r < 0)
                add_fixed(a);
            break;
        }
    }
}

/* All fields of one kind (From:, To: …) form one list, as in the
 * reference server. */
/* Only folding white space: a field "present but empty". */
static bool blank(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != ' ' && v[i] != '\t' && v[i] != '\r' && v[i] != '\n')
            return false;
    return true;
}

static int write_addresses(struct buf *out, const unsigned char *hdr, size_t len,
                           const char *name)
{
    struct aparse a;
    struct mimehdr_iter it;
    struct mimehdr_field f;
    memset(&a, 0, sizeof a);
    buf_init(&a.comment, 0);
    buf_init(&a.tmp, 0);
    buf_init(&a.strs, 0);
    reset_cur(&a);
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) > 0) {
        if (!f.has_colon || !mimehdr_name_is(&f, name))
            continue;
        rfc822_init(&a.c, f.value, f.value_len, &a.comment);
        reset_cur(&a);
        if (rfc822_skip_lwsp(&a.c) > 0)
            address_list(&a);
    }
    int r = 0;
    if (a.n == 0) {
        r = buf_puts(out, "NIL");
    } else {
        r |= buf_putc(out, '(');
        for (size_t i = 0; i < a.n; i++) {
            const char *nm = S(&a, a.list[i].name);
            const char *rt = S(&a, a.list[i].route);
            const char *mb = S(&a, a.list[i].mailbox);
            const char *dm = S(&a, a.list[i].domain);
            r |= buf_putc(out, '(');
            if (nm)
                r |= mq_humans(out, (const unsigned char *)nm, strlen(nm));
            else
                r |= buf_puts(out, "NIL");
            r |= buf_putc(out, ' ');
            r |= mq_nstring(out, (const unsigned char *)rt, rt ? strlen(rt) : 0);
            r |= buf_putc(out, ' ');
            r |= mq_nstring(out, (const unsigned char *)mb, mb ? strlen(mb) : 0);
            r |= buf_putc(out, ' ');
            r |= mq_nstring(out, (const unsigned char *)dm, dm ? strlen(dm) : 0);
            r |= buf_putc(out, ')');
        }
        r |= buf_putc(out, ')');
    }
    free(a.list);
    buf_free(&a.comment);
    buf_free(&a.tmp);
    buf_free(&a.strs);
    return r ? -1 : 0;
}

enum { E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC,
       E_IN_REPLY_TO, E_MESSAGE_ID, E_N };
static const char *const env_names[E_N] = {
    "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
    "In-Reply-To", "Message-ID",
};

int envelope_write(const unsigned char *hdr, size_t len, struct buf *out)
{
    const unsigned char *val[E_N];
    size_t vlen[E_N];
    struct mimehdr_iter it;
    struct mimehdr_field f;
    int r = 0;

    for (int i = 0; i < E_N; i++)
        val[i] = NULL, vlen[i] = 0;
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) > 0) {
        if (!f.has_colon)
            continue;
        /* the last field of a kind wins (address fields are merged below) */
        for (int i = 0; i < E_N; i++)
            if (mimehdr_name_is(&f, env_names[i])) {
                val[i] = f.value;
                vlen[i] = f.value_len;
            }
    }
    for (int i = 0; i < E_N; i++) {
        if (i > 0)
            r |= buf_putc(out, ' ');
        int src = i;
        /* RFC 3501 7.4.2: Sender and Reply-To default to From when
         * "absent ... or present but empty" */
        if ((i == E_SENDER || i == E_REPLY_TO) && (!val[i] || blank(val[i], vlen[i])))
            src = E_FROM;
        if (!val[src]) {
            r |= buf_puts(out, "NIL");
            continue;
        }
        switch (i) {
        case E_SUBJECT:
            r |= mq_humans(out, val[src], vlen[src]);
            break;
        case E_DATE:
        case E_IN_REPLY_TO:
        case E_MESSAGE_ID:
            r |= mq_nstring_nolf(out, val[src], vlen[src]);
            break;
        default:
            r |= write_addresses(out, hdr, len, env_names[src]);
            break;
        }
    }
    return r ? -1 : 0;
}

void envelope_date(const unsigned char *hdr, size_t len, int64_t *t, int32_t *tz)
{
    struct mimehdr_iter it;
    struct mimehdr_field f;
    *t = INT64_MIN;
    *tz = 0;
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) > 0) {
        if (f.has_colon && mimehdr_name_is(&f, "Date")) {
            if (rfc822_date_parse(f.value, f.value_len, t, tz) < 0)
                *t = INT64_MIN;
            return;
        }
    }
}

/* ---- RFC 5322 3.3 date-time (with the obsolete forms) ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void skip_cfws(const unsigned char **p, const unsigned char *e)
{
    struct rfc822_ctx c;
    rfc822_init(&c, *p, (size_t)(e - *p), NULL);
    (void)rfc822_skip_lwsp(&c);
    *p = c.p;
}

static bool read_num(const unsigned char **p, const unsigned char *e, unsigned maxd,
                     long *v, unsigned *nd)
{
    long x = 0;
    unsigned k = 0;
    while (*p < e && **p >= '0' && **p <= '9' && k < maxd) {
        x = x * 10 + (**p - '0');
        (*p)++;
        k++;
    }
    *v = x;
    *nd = k;
    return k > 0;
}

int rfc822_date_parse(const unsigned char *s, size_t n, int64_t *t, int32_t *tz)
{
    static const char *const months[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec"};
    const unsigned char *p = s, *e = s + n;
    long day, year, hh, mm, ss = 0;
    unsigned nd;
    int mon = -1;

    skip_cfws(&p, e);
    /* optional day-of-week */
    if (p < e && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
        while (p < e && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
            p++;
        skip_cfws(&p, e);
        if (p < e && *p == ',')
            p++;
        skip_cfws(&p, e);
    }
    if (!read_num(&p, e, 2, &day, &nd))
        return -1;
    skip_cfws(&p, e);
    if (e - p < 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (rfc822_ncasecmp((const char *)p, months[i], 3) == 0)
            mon = i;
    if (mon < 0)
        return -1;
    p += 3;
    skip_cfws(&p, e);
    if (!read_num(&p, e, 4, &year, &nd))
        return -1;
    if (nd == 2)
        year += year < 50 ? 2000 : 1900;
    else if (nd == 3)
        year += 1900;
    skip_cfws(&p, e);
    if (!read_num(&p, e, 2, &hh, &nd))
        return -1;
    skip_cfws(&p, e);
    if (p >= e || *p != ':')
        return -1;
    p++;
    skip_cfws(&p, e);
    if (!read_num(&p, e, 2, &mm, &nd))
        return -1;
    skip_cfws(&p, e);
    if (p < e && *p == ':') {
        p++;
        skip_cfws(&p, e);
        if (!read_num(&p, e, 2, &ss, &nd))
            return -1;
        skip_cfws(&p, e);
    }
    if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    int zone = 0;
    if (p < e && (*p == '+' || *p == '-')) {
        int sign = *p == '-' ? -1 : 1;
        long z;
        p++;
        if (!read_num(&p, e, 4, &z, &nd) || nd != 4)
            return -1;
        zone = sign * (int)((z / 100) * 60 + z % 100);
    } else if (p < e) {
        static const struct { const char *n; int off; } zones[] = {
            {"UT", 0}, {"GMT", 0}, {"Z", 0}, {"EST", -300}, {"EDT", -240},
            {"CST", -360}, {"CDT", -300}, {"MST", -420}, {"MDT", -360},
            {"PST", -480}, {"PDT", -420},
        };
        const unsigned char *z0 = p;
        while (p < e && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
            p++;
        size_t zl = (size_t)(p - z0);
        for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++)
            if (strlen(zones[i].n) == zl && rfc822_ncasecmp((const char *)z0, zones[i].n, zl) == 0)
                zone = zones[i].off;
    }
    int64_t days = days_from_civil(year, (unsigned)mon + 1, (unsigned)day);
    *t = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)zone * 60;
    *tz = zone;
    return 0;
}
