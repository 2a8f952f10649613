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

/* 0..63 for the base64 alphabet, 64 for '=', 255 for anything else. */
static const unsigned char b64tab[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 62, 255, 255, 255, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 255, 255, 255, 64, 255, 255,
    255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 255, 255, 255, 255, 255,
    255, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

uint64_t cte_base64_size(const unsigned char *in, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char v = b64tab[in[i]];
        if (v == 64)
            break;
        n += v < 64;
    }
    return n * 6 / 8;
}

/* state: number of pending bits (0..6), or 255 after padding. */
static int b64_feed(struct cte_dec *d, const unsigned char *in, size_t len, struct buf *out)
{
    /* at most 3 octets per 4 input characters, plus one pending */
    if (d->state == 255 || buf_reserve(out, len / 4 * 3 + 3))
        return d->state == 255 ? 0 : -1;
    unsigned char *o = out->data + out->len;
    uint32_t bits = d->bits, nb = d->state;
    for (size_t i = 0; i < len; i++) {
        unsigned char v = b64tab[in[i]];
        if (v >= 64) {
            if (v == 64) {
                nb = 255;
                break;
            }
            continue;
        }
        bits = (bits << 6) | v;
        nb += 6;
        if (nb >= 8) {
            nb -= 8;
            *o++ = (unsigned char)(bits >> nb);
            bits &= (1u << nb) - 1;
        }
    }
    out->len = (size_t)(o - out->data);
    d->bits = nb == 255 ? 0 : bits;
    d->state = nb;
    return 0;
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
