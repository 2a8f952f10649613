/* cte.c — streaming base64 / quoted-printable decoders; see cte.h.
 *
 * quoted-printable follows RFC 2045 6.7: "=XX" decodes (either hex case),
 * "=" before a line end is a soft break (white space between them too),
 * white space before a hard line end is dropped (rule 3), and an "=" that
 * starts no valid escape is kept as it is. base64 skips every octet outside
 * the alphabet and stops at padding. Other encodings pass through. */
#include "proto/cte.h"
#include "proto/msginfo.h"

enum {
    QP_NORMAL, QP_EQ, QP_EQ1, QP_EQWS, QP_EQCR, QP_CR,
};

/* Pending white space is kept as a count (low byte of state >> 8) plus a
 * bit mask of which were TABs; a run longer than 32 is flushed early. */
#define WS_MAX 32

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void cte_dec_init(struct cte_dec *d, int cte)
{
    d->cte = cte;
    d->state = 0;
    d->bits = 0;
    d->npend = 0;
}

static unsigned ws_count(const struct cte_dec *d) { return (d->state >> 8) & 0xff; }
static unsigned qst(const struct cte_dec *d) { return d->state & 0xff; }
static void set_qst(struct cte_dec *d, unsigned s) { d->state = (d->state & ~0xffu) | s; }

static int flush_ws(struct cte_dec *d, struct buf *out)
{
    unsigned n = ws_count(d);
    for (unsigned i = 0; i < n; i++)
        if (buf_putc(out, (d->bits >> i) & 1 ? '\t' : ' '))
            return -1;
    d->state &= 0xffu;
    d->bits = 0;
    return 0;
}

static void drop_ws(struct cte_dec *d)
{
    d->state &= 0xffu;
    d->bits = 0;
}

static int add_ws(struct cte_dec *d, unsigned char c, struct buf *out)
{
    unsigned n = ws_count(d);
    if (n == WS_MAX) {
        if (flush_ws(d, out))
            return -1;
        n = 0;
    }
    if (c == '\t')
        d->bits |= 1u << n;
    d->state = (d->state & 0xffu) | ((n + 1) << 8);
    return 0;
}

static int qp_feed(struct cte_dec *d, const unsigned char *in, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
    again:
        switch (qst(d)) {
        case QP_NORMAL:
            if (c == ' ' || c == '\t') {
                if (add_ws(d, c, out))
                    return -1;
            } else if (c == '\r') {
                set_qst(d, QP_CR);
            } else if (c == '\n') {
                drop_ws(d);
                if (buf_putc(out, '\n'))
                    return -1;
            } else if (c == '=') {
                if (flush_ws(d, out))
                    return -1;
                set_qst(d, QP_EQ);
            } else {
                if (flush_ws(d, out) || buf_putc(out, c))
                    return -1;
            }
            break;
        case QP_CR:
            set_qst(d, QP_NORMAL);
            if (c == '\n') {
                drop_ws(d);
                if (buf_append(out, "\r\n", 2))
                    return -1;
                break;
            }
            if (flush_ws(d, out) || buf_putc(out, '\r'))
                return -1;
            goto again;
        case QP_EQ:
            if (hexval(c) >= 0) {
                d->pend[0] = c;
                set_qst(d, QP_EQ1);
            } else if (c == '\r') {
                set_qst(d, QP_EQCR);
            } else if (c == '\n') {
                set_qst(d, QP_NORMAL);
            } else if (c == ' ' || c == '\t') {
                set_qst(d, QP_EQWS);
                if (add_ws(d, c, out))
                    return -1;
            } else {
                set_qst(d, QP_NORMAL);
                if (buf_putc(out, '='))
                    return -1;
                goto again;
            }
            break;
        case QP_EQ1:
            set_qst(d, QP_NORMAL);
            if (hexval(c) >= 0) {
                if (buf_putc(out, (unsigned char)(hexval(d->pend[0]) * 16 + hexval(c))))
                    return -1;
                break;
            }
            if (buf_putc(out, '=') || buf_putc(out, d->pend[0]))
                return -1;
            goto again;
        case QP_EQWS:
            if (c == ' ' || c == '\t') {
                if (add_ws(d, c, out))
                    return -1;
            } else if (c == '\r') {
                drop_ws(d);
                set_qst(d, QP_EQCR);
            } else if (c == '\n') {
                drop_ws(d);
                set_qst(d, QP_NORMAL);
            } else {
                set_qst(d, QP_NORMAL);
                if (buf_putc(out, '=') || flush_ws(d, out))
                    return -1;
                goto again;
            }
            break;
        case QP_EQCR:
            set_qst(d, QP_NORMAL);
            if (c == '\n')
                break;   /* soft line break */
            if (buf_append(out, "=\r", 2))
                return -1;
            goto again;
        }
    }
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* state: number of pending bits (0..18), or 255 after padding. */
static int b64_feed(struct cte_dec *d, const unsigned char *in, size_t len, struct buf *out)
{
    unsigned char tmp[256];
    size_t nt = 0;
    for (size_t i = 0; i < len; i++) {
        if (d->state == 255)
            break;
        if (in[i] == '=') {
            d->state = 255;
            break;
        }
        int v = b64val(in[i]);
        if (v < 0)
            continue;
        d->bits = (d->bits << 6) | (uint32_t)v;
        d->state += 6;
        if (d->state >= 8) {
            d->state -= 8;
            tmp[nt++] = (unsigned char)(d->bits >> d->state);
            d->bits &= (1u << d->state) - 1;
            if (nt == sizeof tmp) {
                if (buf_append(out, tmp, nt))
                    return -1;
                nt = 0;
            }
        }
    }
    return nt ? (buf_append(out, tmp, nt) ? -1 : 0) : 0;
}

int cte_dec_feed(struct cte_dec *d, const unsigned char *in, size_t len, struct buf *out)
{
    switch (d->cte) {
    case MSGINFO_CTE_BASE64:
        return b64_feed(d, in, len, out);
    case MSGINFO_CTE_QP:
        return qp_feed(d, in, len, out);
    default:
        return buf_append(out, in, len) ? -1 : 0;
    }
}

int cte_dec_finish(struct cte_dec *d, struct buf *out)
{
    int r = 0;
    if (d->cte == MSGINFO_CTE_QP) {
        switch (qst(d)) {
        case QP_CR:
            r = flush_ws(d, out) || buf_putc(out, '\r');
            break;
        case QP_EQ:
            r = buf_putc(out, '=');
            break;
        case QP_EQ1:
            r = buf_putc(out, '=') || buf_putc(out, d->pend[0]);
            break;
        case QP_EQCR:
            r = buf_append(out, "=\r", 2);
            break;
        default:
            break;   /* white space at the very end is a line's trailing space */
        }
    }
    cte_dec_init(d, d->cte);
    return r ? -1 : 0;
}
