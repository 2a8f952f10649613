/* search_exec.c — evaluate a SEARCH program over a mailbox view.
 *
 * Every node is evaluated on the set of messages still in question (a
 * flag per entry: the whole view, or only the index's candidates when
 * the index starts the search), and AND evaluates its cheap children first: flag,
 * date, size and set keys come from the msg_ref records; SENT* needs the
 * msginfo record; text keys go last, so they only ever look at survivors.
 * A text key asks the trigram index for candidates among those survivors
 * (streaming each posting list, leapfrogging between it and the sorted
 * candidates) and confirms each candidate against its decoded text. Flag
 * keys therefore narrow an index query, never replace it by a scan
 * (UNDELETED BODY x, Thunderbird's default, costs what BODY x costs). */
#include <stdlib.h>
#include <string.h>
#include <lmdb.h>
#include "server/search_exec.h"
#include "proto/mailtext.h"
#include "proto/msginfo.h"
#include "proto/search_prog.h"
#include "store/index_read.h"

#define DAY 86400

struct cand {
    uint64_t msgnum;
    size_t idx;
};

struct ex {
    struct inst *in;
    const struct search_view *v;
    /* The program runs over n entries: the whole view (dense, pos NULL,
     * entry i is view position i), or only the index's candidates
     * (sparse, entry i is view position pos[i], ascending), so that an
     * index-started search costs what its candidates cost, not the view. */
    size_t n;
    const size_t *pos;
    /* sparse: the key whose index lists chose the entries, so they need
     * not be joined against those same lists again */
    const struct search_node *anchor;
    struct msg_ref *refs;
    uint8_t *have;               /* refs[i] valid */
    int64_t *sentday;
    uint8_t *sent_done;
    struct mailtext mt;
    struct buf hdr, win, txt;
    const char **err;
    MDB_txn *txn;
    const struct index_dbs *dbs;
    size_t walk_pos;
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int walk_cb(void *ctx, const struct msg_ref *m)
{
    struct ex *x = ctx;
    const struct search_view *v = x->v;
    while (x->walk_pos < v->n && v->uids[x->walk_pos] < m->uid)
        x->walk_pos++;
    if (x->walk_pos >= v->n)
        return 1;
    if (v->uids[x->walk_pos] == m->uid) {
        x->refs[x->walk_pos] = *m;
        x->have[x->walk_pos] = 1;
        x->walk_pos++;
    }
    return x->walk_pos >= v->n;
}

static int get_info(struct ex *x, uint64_t msgnum, struct msginfo *mi)
{
    const void *d;
    size_t len;
    const char *e;
    int rc = inst_msg_info(x->in, msgnum, &d, &len);
    if (rc) {
        *x->err = "cannot read a message's MIME record";
        return rc;
    }
    if (msginfo_open(mi, d, len, &e) != 0) {
        *x->err = "a message's MIME record is outdated or corrupt: run `coffer reindex`";
        return STORE_ECORRUPT;
    }
    return STORE_OK;
}

static int sent_day(struct ex *x, size_t i, int64_t *day)
{
    if (!x->sent_done[i]) {
        struct msginfo mi;
        int rc = get_info(x, x->refs[i].msgnum, &mi);
        if (rc)
            return rc;
        /* no (valid) Date: counts as 1970-01-01, as Dovecot (see COMPATIBILITY) */
        x->sentday[i] = mi.sent_date == INT64_MIN ? 0
                      : floor_div(mi.sent_date + (int64_t)mi.sent_tz * 60, DAY);
        x->sent_done[i] = 1;
    }
    *day = x->sentday[i];
    return STORE_OK;
}

struct rd_sink {
    struct buf *out;
    int rc;
};

static int sink_cb(void *ctx, const void *p, size_t n)
{
    struct rd_sink *s = ctx;
    if (buf_append(s->out, p, n)) {
        s->rc = STORE_EIO;
        return 1;
    }
    return 0;
}

/* mailtext reads a message part by part (each part's header, each text
 * body); every inst_msg_read decompresses whole frames, so the reads go
 * through a window of at least one frame's worth of octets. */
#define RD_WINDOW (64u * 1024u)

struct rd_ctx {
    struct inst *in;
    uint64_t msgnum;
    struct buf *win;            /* canonical octets [win_off, win_off + win->len) */
    uint64_t win_off;
    bool valid;
};

static int read_cb(void *ctx, uint64_t off, uint64_t len, struct buf *out)
{
    struct rd_ctx *r = ctx;
    if (len == 0)
        return 0;
    if (!r->valid || off < r->win_off || off + len > r->win_off + r->win->len) {
        struct rd_sink s = { r->win, 0 };
        buf_reset(r->win);
        r->valid = false;
        int rc = inst_msg_read(r->in, r->msgnum, off, len > RD_WINDOW ? len : RD_WINDOW,
                               sink_cb, &s);
        if (rc || s.rc)
            return rc ? rc : s.rc;
        r->win_off = off;
        r->valid = true;
        if (off + len > r->win_off + r->win->len)     /* clipped at the end */
            len = r->win_off + r->win->len - off;
    }
    return buf_append(out, r->win->data + (off - r->win_off), (size_t)len) ? STORE_EIO : 0;
}

static int cost(const struct search_node *n)
{
    int c = 0;
    switch (n->type) {
    case SK_SENTBEFORE: case SK_SENTON: case SK_SENTSINCE:
        return 1;
    case SK_BODY: case SK_TEXT: case SK_HEADER:
        return 2;
    case SK_AND: case SK_OR: case SK_NOT:
        for (size_t i = 0; i < n->nkids; i++)
            if (cost(n->kids[i]) > c)
                c = cost(n->kids[i]);
        return c;
    default:
        return 0;
    }
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->msgnum != y->msgnum)
        return x->msgnum < y->msgnum ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* One trigram of the key: its postings in field f1, or in f1 or f2 (TEXT
 * sees header and body text, indexed separately). */
struct tri_src {
    struct ix_cursor c1, c2;
    const unsigned char *tri;     /* NULL for a long gram */
    uint32_t gram;                /* the long gram's hash (index_read.h) */
    uint8_t offs;                 /* bit k % 8 for each offset k of tri in the key */
    bool two, open1, open2;
    uint64_t v1, v2;              /* last seek's answer per field */
};

/* Smallest posting >= t of the source: 1 (with *v), 0 none left, or <0. */
static int src_seek(struct tri_src *s, uint64_t t, uint64_t *v)
{
    uint64_t v1 = UINT64_MAX, v2 = UINT64_MAX;
    s->v1 = s->v2 = UINT64_MAX;
    int r = ix_cursor_seek(&s->c1, t, &v1);
    if (r < 0)
        return r;
    if (r == 0)
        v1 = UINT64_MAX;
    if (s->two) {
        r = ix_cursor_seek(&s->c2, t, &v2);
        if (r < 0)
            return r;
        if (r == 0)
            v2 = UINT64_MAX;
    }
    s->v1 = v1;
    s->v2 = v2;
    *v = v1 < v2 ? v1 : v2;
    return *v != UINT64_MAX;
}

static uint8_t rotr8(uint8_t m, unsigned k)
{
    return (uint8_t)(m >> k | m << ((8 - k) & 7));
}

/* Every source has msgnum t: can the key occur there at all? A match at
 * position p puts the trigram of key offset k at p + k, so bit p % 8 must
 * survive in rotr(mask, k) of every source, within one field. */
static bool masks_agree(const struct tri_src *src, size_t ns, uint64_t t)
{
    uint8_t a1 = 0xFF, a2 = src[0].two ? 0xFF : 0;
    for (size_t i = 0; i < ns && (a1 || a2); i++) {
        const struct tri_src *s = &src[i];
        uint8_t m1 = s->v1 == t ? ix_cursor_mask(&s->c1) : 0;
        uint8_t m2 = s->two && s->v2 == t ? ix_cursor_mask(&s->c2) : 0;
        for (unsigned k = 0; k < 8; k++)
            if (s->offs & (1u << k)) {
                a1 &= rotr8(m1, k);
                a2 &= rotr8(m2, k);
            }
    }
    return a1 || a2;
}

/* Keep the candidates (sorted by msgnum) that are in every source: a
 * leapfrog join. Each miss jumps every cursor and the candidate list to
 * the next msgnum that source can still match, so the rarest trigram
 * drives the walk and common ones are only ever probed, never read whole. */
static int leapfrog(struct tri_src *src, size_t ns, struct cand *c, size_t *m)
{
    size_t i = 0, o = 0, n = *m, first = 0;
    int rc = STORE_OK;
    while (i < n) {
        uint64_t t = c[i].msgnum, v = 0;
        bool all = true;
        for (size_t k = 0; k < ns; k++) {
            size_t j = (first + k) % ns;     /* start with the last one that missed */
            int r = src_seek(&src[j], t, &v);
            if (r < 0) {
                rc = r;
                goto out;
            }
            if (r == 0)
                goto out;                     /* a source is exhausted: done */
            if (v != t) {
                first = j;
                all = false;
                break;
            }
        }
        if (all) {
            bool keep = masks_agree(src, ns, t);
            while (i < n && c[i].msgnum == t) {
                if (keep)
                    c[o++] = c[i];
                i++;
            }
            continue;
        }
        size_t lo = i, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c[mid].msgnum < v)
                lo = mid + 1;
            else
                hi = mid;
        }
        i = lo;
    }
out:
    *m = o;
    return rc;
}

static void close_sources(struct tri_src *src, size_t ns)
{
    for (size_t k = 0; k < ns; k++) {
        if (src[k].open1)
            ix_cursor_close(&src[k].c1);
        if (src[k].open2)
            ix_cursor_close(&src[k].c2);
    }
    free(src);
}

static int open_cursor(struct ex *x, const struct tri_src *s, int f, const unsigned char *id,
                       struct ix_cursor *c)
{
    return s->tri ? ix_cursor_open(x->txn, x->dbs, f, id, c)
                  : ix_cursor_open_gram(x->txn, x->dbs, f, s->gram, c);
}

static int open_one(struct ex *x, struct tri_src *s, int f1, int f2, const unsigned char *id)
{
    int rc = open_cursor(x, s, f1, id, &s->c1);
    if (rc == STORE_OK) {
        s->open1 = true;
        if (f2 >= 0 && (rc = open_cursor(x, s, f2, id, &s->c2)) == STORE_OK)
            s->open2 = s->two = true;
    }
    return rc;
}

#define GRAM_SOURCES_MAX 8

/* Can the key use the long grams of field f? Only if the index has them
 * for every message and for that field, and the key holds whole windows;
 * a separator octet is never inside an indexed gram (nor in folded
 * UTF-8): such a key keeps to its trigrams. */
static bool grams_usable(struct ex *x, const struct search_node *n, int f)
{
    return f >= 0 && (IX_GRAM_FIELDS & (1u << f)) && n->klen >= IX_GRAM_MINKEY &&
           !memchr(n->key, MAILTEXT_SEP, n->klen) && ix_grams_complete(x->txn, x->dbs);
}

/* A TEXT key is looked up in the header text (no grams) or the body (with
 * them): joined as one, the header's trigram lists would keep the body's
 * grams from driving, so the two fields are joined apart and their
 * candidates merged. */
static bool split_fields(struct ex *x, const struct search_node *n, int f1, int f2)
{
    return f2 >= 0 && !(IX_GRAM_FIELDS & (1u << f1)) && grams_usable(x, n, f2);
}

/* One source per distinct trigram of the key (its offsets as a bit set),
 * and, when the index has them and the key is long enough, one per
 * distinct long gram the key selects, first: they are the rare lists that
 * should drive the join (index_read.h, "Long grams"). */
static int open_sources(struct ex *x, const struct search_node *n, int f1, int f2,
                        struct tri_src **out, size_t *nout)
{
    size_t ntri = n->klen - 2, ns = 0, ng = 0;
    struct ix_gram *g = NULL;
    /* only if every field the key is looked up in has grams */
    if (grams_usable(x, n, f1) && (f2 < 0 || grams_usable(x, n, f2))) {
        g = malloc(n->klen * sizeof *g);
        if (g)
            ng = ix_winnow(n->key, n->klen, g);
        /* without it the trigrams alone still answer exactly */
        if (ng > GRAM_SOURCES_MAX) {
            /* every gram is required, so any of them will do: a few
             * spread over the key find the same few candidates, and each
             * list costs a seek per segment it has nothing in */
            for (size_t k = 0; k < GRAM_SOURCES_MAX; k++)
                g[k] = g[k * ng / GRAM_SOURCES_MAX];
            ng = GRAM_SOURCES_MAX;
        }
    }
    struct tri_src *src = calloc(ntri + ng, sizeof *src);
    int rc = STORE_OK;
    *out = NULL;
    *nout = 0;
    if (!src) {
        free(g);
        *x->err = "out of memory";
        return STORE_EIO;
    }
    for (size_t k = 0; k < ng && rc == STORE_OK; k++) {
        size_t j = 0;
        while (j < ns && src[j].gram != g[k].hash)
            j++;
        if (j < ns) {               /* the same gram again, at another offset */
            src[j].offs |= (uint8_t)(1u << (g[k].pos & 7));
            continue;
        }
        struct tri_src *s = &src[ns++];
        s->gram = g[k].hash;
        s->offs = (uint8_t)(1u << (g[k].pos & 7));
        rc = open_one(x, s, f1, f2, NULL);
    }
    free(g);
    size_t ngs = ns;
    for (size_t k = 0; k < ntri && rc == STORE_OK; k++) {
        size_t j = ngs;
        while (j < ns && memcmp(src[j].tri, n->key + k, 3) != 0)
            j++;
        if (j < ns) {               /* the same trigram again, at offset k */
            src[j].offs |= (uint8_t)(1u << (k & 7));
            continue;
        }
        struct tri_src *s = &src[ns++];
        s->tri = n->key + k;
        s->offs = (uint8_t)(1u << (k & 7));
        rc = open_one(x, s, f1, f2, n->key + k);
    }
    if (rc) {
        close_sources(src, ns);
        *x->err = rc == STORE_ECORRUPT ? "text index is corrupt: run `coffer verify` and `coffer reindex`"
                                       : "cannot read the text index";
        return rc;
    }
    *out = src;
    *nout = ns;
    return STORE_OK;
}

static int filter_fields(struct ex *x, const struct search_node *n, int f1, int f2,
                         struct cand *c, size_t *m)
{
    struct tri_src *src;
    size_t ns;
    int rc = open_sources(x, n, f1, f2, &src, &ns);
    if (rc)
        return rc;
    rc = leapfrog(src, ns, c, m);
    close_sources(src, ns);
    if (rc == STORE_ECORRUPT)
        *x->err = "text index is corrupt: run `coffer verify` and `coffer reindex`";
    else if (rc)
        *x->err = "cannot read the text index";
    return rc;
}

/* Keep the candidates c[0..*m) (sorted by cand_cmp) that the index finds
 * in field f1 or f2 (f2 < 0: f1 alone). */
static int index_filter(struct ex *x, const struct search_node *n, int f1, int f2,
                        struct cand *c, size_t *m)
{
    if (!split_fields(x, n, f1, f2))
        return filter_fields(x, n, f1, f2, c, m);
    size_t m1 = *m, m2 = *m;
    struct cand *b = malloc((*m ? *m : 1) * sizeof *b), *u = malloc((*m ? *m : 1) * sizeof *u);
    if (!b || !u) {
        free(b);
        free(u);
        *x->err = "out of memory";
        return STORE_EIO;
    }
    memcpy(b, c, *m * sizeof *c);
    int rc = filter_fields(x, n, f1, -1, c, &m1);
    if (rc == STORE_OK)
        rc = filter_fields(x, n, f2, -1, b, &m2);
    if (rc == STORE_OK) {
        /* both are sorted subsets of the candidates: merge, once each */
        size_t i = 0, j = 0, k = 0;
        while (i < m1 || j < m2) {
            int d = i == m1 ? 1 : j == m2 ? -1 : cand_cmp(&c[i], &b[j]);
            u[k++] = d <= 0 ? c[i] : b[j];
            i += d <= 0;
            j += d >= 0;
        }
        memcpy(c, u, k * sizeof *u);
        *m = k;
    }
    free(b);
    free(u);
    return rc;
}

/* The index fields a text key's trigrams are looked up in. */
static void text_fields(const struct search_node *n, int *f1, int *f2)
{
    *f2 = -1;
    if (n->type == SK_BODY)
        *f1 = MT_BODY;
    else if (n->type == SK_TEXT)
        *f1 = MT_HDR, *f2 = MT_BODY;
    else if (n->field == MT__N)
        *f1 = MT_HDR;
    else
        *f1 = n->field;
}

static bool slice_contains(const struct ix_text *t, const unsigned char *key, size_t klen)
{
    return klen == 0 || (t->len >= klen && memmem(t->p, t->len, key, klen) != NULL);
}

static int confirm(struct ex *x, const struct search_node *n, size_t i, bool *match)
{
    /* Fast path: the folded text stored at index time (same producer, so
     * the same answer), one record read instead of decoding the message. */
    if (x->dbs && !(n->type == SK_HEADER && (n->field == MT__N || n->exists_only))) {
        struct ix_text fl[MT_MSGID + 1];
        int r = ix_text_get(x->txn, x->dbs, x->refs[i].msgnum, &x->txt, fl);
        if (r == STORE_OK) {
            if (n->type == SK_BODY)
                *match = slice_contains(&fl[MT_BODY], n->key, n->klen);
            else if (n->type == SK_TEXT)   /* no match spans header and body */
                *match = slice_contains(&fl[MT_HDR], n->key, n->klen) ||
                         slice_contains(&fl[MT_BODY], n->key, n->klen);
            else
                *match = slice_contains(&fl[n->field], n->key, n->klen);
            return STORE_OK;
        }
        if (r == STORE_ECORRUPT) {
            *x->err = "text index record is corrupt: run `coffer verify` and `coffer reindex`";
            return r;
        }
    }
    struct msginfo mi;
    struct rd_ctx rc_ = { x->in, x->refs[i].msgnum, &x->win, 0, false };
    int rc = get_info(x, x->refs[i].msgnum, &mi);
    if (rc)
        return rc;
    *match = false;
    if (n->type == SK_HEADER && (n->field == MT__N || n->exists_only)) {
        struct msginfo_part p;
        if (msginfo_part(&mi, 0, &p) != 0) {
            *x->err = "corrupt MIME record";
            return STORE_ECORRUPT;
        }
        buf_reset(&x->hdr);
        if ((rc = read_cb(&rc_, p.hdr_off, p.hdr_len, &x->hdr))) {
            *x->err = "cannot read message";
            return rc;
        }
        struct buf vals;
        bool present;
        buf_init(&vals, 256u * 1024u * 1024u);
        const char *name = n->hname;
        static const char *const names[] = { [MT_FROM] = "From", [MT_TO] = "To",
            [MT_CC] = "Cc", [MT_BCC] = "Bcc", [MT_SUBJECT] = "Subject", [MT_MSGID] = "Message-ID" };
        if (!name)
            name = names[n->field];
        rc = mailtext_field(x->hdr.data, x->hdr.len, name,
                            n->hname == NULL && n->field == MT_SUBJECT, &vals, &present);
        if (rc == 0)
            *match = present && (n->exists_only || mailtext_contains(&vals, n->key, n->klen));
        buf_free(&vals);
        if (rc)
            *x->err = "out of memory";
        return rc ? STORE_EIO : STORE_OK;
    }
    int f = n->type == SK_BODY ? MT_BODY : n->type == SK_TEXT ? MT_TEXT : n->field;
    int read_rc = 0;
    if (mailtext_build(&mi, read_cb, &rc_, MT_BIT(f), &x->mt, &read_rc, x->err) != 0)
        return read_rc ? read_rc : STORE_EIO;
    *match = mailtext_contains(&x->mt.f[f], n->key, n->klen);
    return STORE_OK;
}

static int eval_text(struct ex *x, const struct search_node *n, const uint8_t *S, uint8_t *R)
{
    size_t nv = x->n;
    memset(R, 0, nv);
    if ((n->type == SK_BODY || n->type == SK_TEXT) && n->exists_only) {
        for (size_t i = 0; i < nv; i++)
            R[i] = S[i] && x->have[i];
        return STORE_OK;
    }
    if (n->klen == 0 && !n->exists_only)
        return STORE_OK;          /* folded to nothing: matches nothing */
    struct cand *c = malloc((nv ? nv : 1) * sizeof *c);
    if (!c) {
        *x->err = "out of memory";
        return STORE_EIO;
    }
    size_t m = 0;
    for (size_t i = 0; i < nv; i++)
        if (S[i] && x->have[i])
            c[m++] = (struct cand){ x->refs[i].msgnum, i };
    int rc = STORE_OK;
    if (m > 0 && n->klen >= 3 && !n->exists_only && x->dbs) {
        int f1, f2;
        text_fields(n, &f1, &f2);
        /* UID order is nearly always msgnum order (one import): sort only
         * when it is not */
        bool sorted = true;
        for (size_t j = 1; j < m && sorted; j++)
            sorted = cand_cmp(&c[j - 1], &c[j]) <= 0;
        if (!sorted)
            qsort(c, m, sizeof *c, cand_cmp);
        if (n != x->anchor)
            rc = index_filter(x, n, f1, f2, c, &m);
        /* A 3-octet key is one trigram, and a posting says exactly that the
         * trigram occurs in that field's text (never across a segment
         * separator): nothing left to confirm. Not for the generic HEADER
         * path, whose postings cover every field. */
        if (rc == STORE_OK && n->klen == 3 && !(n->type == SK_HEADER && n->field == MT__N)) {
            for (size_t j = 0; j < m; j++)
                R[c[j].idx] = 1;
            m = 0;
        }
    }
    for (size_t j = 0; j < m && rc == STORE_OK; j++) {
        bool match;
        if (j > 0 && c[j].msgnum == c[j - 1].msgnum) {
            R[c[j].idx] = R[c[j - 1].idx];
            continue;
        }
        rc = confirm(x, n, c[j].idx, &match);
        if (rc == STORE_OK)
            R[c[j].idx] = match;
    }
    free(c);
    return rc;
}

static int eval(struct ex *x, const struct search_node *n, const uint8_t *S, uint8_t *R);

static int eval_and(struct ex *x, const struct search_node *n, const uint8_t *S, uint8_t *R)
{
    size_t nv = x->n;
    uint8_t *tmp = malloc(nv ? nv : 1);
    if (!tmp) {
        *x->err = "out of memory";
        return STORE_EIO;
    }
    memcpy(R, S, nv);
    int rc = STORE_OK;
    for (int cls = 0; cls <= 2 && rc == STORE_OK; cls++) {
        for (size_t k = 0; k < n->nkids && rc == STORE_OK; k++) {
            if (cost(n->kids[k]) != cls)
                continue;
            rc = eval(x, n->kids[k], R, tmp);
            memcpy(R, tmp, nv);
        }
    }
    free(tmp);
    return rc;
}

static int eval(struct ex *x, const struct search_node *n, const uint8_t *S, uint8_t *R)
{
    size_t nv = x->n, vn = x->v->n;
    int rc = STORE_OK;
    switch (n->type) {
    case SK_AND:
        return eval_and(x, n, S, R);
    case SK_OR: {
        uint8_t *rest = malloc(nv ? nv : 1), *b = malloc(nv ? nv : 1);
        if (!rest || !b) {
            free(rest);
            free(b);
            *x->err = "out of memory";
            return STORE_EIO;
        }
        /* cheaper side first; the other only sees what is left */
        const struct search_node *k0 = n->kids[0], *k1 = n->kids[1];
        if (cost(k1) < cost(k0)) {
            k0 = n->kids[1];
            k1 = n->kids[0];
        }
        rc = eval(x, k0, S, R);
        if (rc == STORE_OK) {
            for (size_t i = 0; i < nv; i++)
                rest[i] = S[i] && !R[i];
            rc = eval(x, k1, rest, b);
            for (size_t i = 0; i < nv; i++)
                R[i] = R[i] || b[i];
        }
        free(rest);
        free(b);
        return rc;
    }
    case SK_NOT:
        rc = eval(x, n->kids[0], S, R);
        for (size_t i = 0; i < nv; i++)
            R[i] = S[i] && x->have[i] && !R[i];
        return rc;
    case SK_BODY: case SK_TEXT: case SK_HEADER:
        return eval_text(x, n, S, R);
    default:
        break;
    }
    struct seqset set = { 0 };
    if (n->type == SK_SEQ || n->type == SK_UID) {
        set.n = n->set.n;
        set.r = malloc((set.n ? set.n : 1) * sizeof *set.r);
        if (!set.r) {
            *x->err = "out of memory";
            return STORE_EIO;
        }
        memcpy(set.r, n->set.r, set.n * sizeof *set.r);
        /* `*` is the view's last message, whichever entries are evaluated */
        uint32_t star = n->type == SK_SEQ ? (uint32_t)vn : vn ? x->v->uids[vn - 1] : 0;
        seqset_resolve(&set, star);
    }
    for (size_t i = 0; i < nv && rc == STORE_OK; i++) {
        R[i] = 0;
        if (!S[i] || !x->have[i])
            continue;
        const struct msg_ref *m = &x->refs[i];
        int64_t day = floor_div(m->internaldate, DAY), sd = 0;
        bool r = false;
        switch (n->type) {
        case SK_ALL: r = true; break;
        case SK_NONE: r = false; break;
        case SK_FLAG: r = (m->flags & n->flags) == n->flags; break;
        case SK_UNFLAG: r = (m->flags & n->flags) == 0; break;
        case SK_SEQ:
            r = seqset_contains(&set, (uint32_t)((x->pos ? x->pos[i] : i) + 1));
            break;
        case SK_UID: r = seqset_contains(&set, m->uid); break;
        case SK_SAVED:
            if (x->v->saved) {
                size_t lo = 0, hi = x->v->nsaved;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (x->v->saved[mid] < m->uid) lo = mid + 1; else hi = mid;
                }
                r = lo < x->v->nsaved && x->v->saved[lo] == m->uid;
            }
            break;
        /* INTERNALDATE's day in UTC, as Dovecot on a UTC host (COMPATIBILITY) */
        case SK_BEFORE: r = day < n->num; break;
        case SK_ON: r = day == n->num; break;
        case SK_SINCE: r = day >= n->num; break;
        case SK_SENTBEFORE: case SK_SENTON: case SK_SENTSINCE:
            rc = sent_day(x, i, &sd);
            r = n->type == SK_SENTBEFORE ? sd < n->num : n->type == SK_SENTON ? sd == n->num
                                                                           : sd >= n->num;
            break;
        case SK_LARGER: r = m->size > (uint64_t)n->num; break;
        case SK_SMALLER: r = m->size < (uint64_t)n->num; break;
        default: break;
        }
        R[i] = r;
    }
    free(set.r);
    return rc;
}

/* ---- starting from the index ----
 *
 * Mapping the view to message numbers means walking the mailbox's whole
 * message table (4.3 ms at 100,000 messages, linear). When the program is
 * an AND (or a single key) with an indexed text key, every match is among
 * that key's index candidates, so the executor intersects the key's
 * trigram lists over the whole instance first, maps those few message
 * numbers to UIDs through the index's member map, reads only their
 * msg_ref records, and runs the program on them alone: the cost follows
 * the candidates, not the mailbox. Results stay exact: the program still
 * confirms every key on every candidate. Too many candidates (a common
 * word), and the walk is cheaper: the executor falls back to it. */

static bool is_anchor(const struct search_node *n)
{
    return (n->type == SK_BODY || n->type == SK_TEXT || n->type == SK_HEADER) &&
           !n->exists_only && n->klen >= 3;
}

static const struct search_node *find_anchor(const struct search_node *root)
{
    if (is_anchor(root))
        return root;
    const struct search_node *best = NULL;
    if (root->type == SK_AND)
        for (size_t k = 0; k < root->nkids; k++)
            if (is_anchor(root->kids[k]) && (!best || root->kids[k]->klen > best->klen))
                best = root->kids[k];     /* more trigrams: fewer candidates, as a rule */
    return best;
}

/* Message numbers holding every trigram of the key at agreeing positions:
 * up to cap of them in out (*over when there are more). */
static int index_all(struct tri_src *src, size_t ns, uint64_t *out, size_t cap, size_t *m,
                     bool *over)
{
    uint64_t t = 0, v = 0;
    size_t first = 0;
    *m = 0;
    *over = false;
    for (;;) {
        bool all = true;
        for (size_t k = 0; k < ns; k++) {
            size_t j = (first + k) % ns;     /* the last one that missed first */
            int r = src_seek(&src[j], t, &v);
            if (r <= 0)
                return r;                     /* error, or a source is exhausted */
            if (v != t) {
                first = j;
                t = v;
                all = false;
                break;
            }
        }
        if (!all)
            continue;
        if (masks_agree(src, ns, t)) {
            if (*m == cap) {
                *over = true;
                return STORE_OK;
            }
            out[(*m)++] = t;
        }
        if (t == UINT64_MAX)
            return STORE_OK;
        t++;
    }
}

/* index_all over the key's lists in f1 or f2; a TEXT key's header and
 * body are joined apart (split_fields) and merged. */
static int all_candidates(struct ex *x, const struct search_node *a, int f1, int f2,
                          uint64_t *out, size_t cap, size_t *m, bool *over)
{
    bool split = split_fields(x, a, f1, f2);
    uint64_t *b = NULL, *u = NULL;
    size_t mb = 0;
    int rc = STORE_OK;
    *m = 0;
    *over = false;
    if (split && (!(b = malloc(cap * sizeof *b)) || !(u = malloc(cap * sizeof *u)))) {
        free(b);
        *x->err = "out of memory";
        return STORE_EIO;
    }
    for (int pass = 0; pass < (split ? 2 : 1) && rc == STORE_OK && !*over; pass++) {
        struct tri_src *src;
        size_t ns;
        rc = split ? open_sources(x, a, pass ? f2 : f1, -1, &src, &ns)
                   : open_sources(x, a, f1, f2, &src, &ns);
        if (rc)
            break;
        rc = pass ? index_all(src, ns, b, cap, &mb, over) : index_all(src, ns, out, cap, m, over);
        close_sources(src, ns);
        if (rc)
            *x->err = rc == STORE_ECORRUPT
                ? "text index is corrupt: run `coffer verify` and `coffer reindex`"
                : "cannot read the text index";
    }
    if (split && rc == STORE_OK && !*over) {
        size_t i = 0, j = 0, k = 0;
        while ((i < *m || j < mb) && !*over) {
            uint64_t p = i < *m ? out[i] : UINT64_MAX, q = j < mb ? b[j] : UINT64_MAX;
            if (k == cap)
                *over = true;
            else
                u[k++] = p <= q ? p : q;
            i += p <= q;
            j += q <= p;
        }
        memcpy(out, u, k * sizeof *u);
        *m = k;
    }
    free(b);
    free(u);
    return rc;
}

static size_t view_find(const struct search_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->n && v->uids[lo] == uid ? lo : SIZE_MAX;
}

struct hit {
    size_t pos;
    struct msg_ref r;
};

static int hit_cmp(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int add_hit(struct ex *x, struct hit **h, size_t *nh, size_t *caph, size_t pos,
                   const struct msg_ref *r)
{
    if (*nh == *caph) {
        size_t nc = *caph ? 2 * *caph : 64;
        struct hit *t = realloc(*h, nc * sizeof *t);
        if (!t) {
            *x->err = "out of memory";
            return STORE_EIO;
        }
        *h = t;
        *caph = nc;
    }
    (*h)[(*nh)++] = (struct hit){ pos, *r };
    return STORE_OK;
}

/* 1: the anchor's candidates as view positions (ascending, each once) in
 * *posp with their msg_ref records in *refsp, *np of them (the arrays are
 * allocated for at least one entry); 0: not applicable or too many
 * candidates (walk instead); <0: error. */
static int start_from_index(struct ex *x, const struct search_prog *p, size_t **posp,
                            struct msg_ref **refsp, size_t *np)
{
    const struct search_node *a = find_anchor(p->root);
    if (!a || !x->dbs || !ix_members_complete(x->txn, x->dbs))
        return 0;
    const struct search_view *v = x->v;
    size_t cap = v->n / 64 + 256, m = 0;
    int f1, f2;
    text_fields(a, &f1, &f2);
    uint64_t *nums = malloc(cap * sizeof *nums);
    bool over = false;
    if (!nums) {
        *x->err = "out of memory";
        return STORE_EIO;
    }
    int rc = all_candidates(x, a, f1, f2, nums, cap, &m, &over);
    if (rc || over) {
        free(nums);
        return rc ? rc : 0;     /* *x->err is set */
    }
    MDB_cursor *mc;
    if ((rc = ix_members_open(x->txn, x->dbs, &mc)) != STORE_OK) {
        free(nums);
        return rc == STORE_ENOTFOUND ? 0 : rc;
    }
    struct hit *h = NULL;
    size_t nh = 0, caph = 0;
    int res = 1;
    for (size_t j = 0; j < m && res == 1; j++) {
        uint32_t uids[16];
        size_t nu;
        rc = ix_members_get(mc, nums[j], v->mbox_id, uids, 16, &nu);
        if (rc) {
            *x->err = "text index member map is corrupt: run `coffer reindex`";
            res = rc;
            break;
        }
        if (nu > 16) {
            res = 0;                  /* one message 17 times in a mailbox: walk */
            break;
        }
        for (size_t u = 0; u < nu && res == 1; u++) {
            size_t i = view_find(v, uids[u]);
            if (i == SIZE_MAX)
                continue;
            struct msg_ref r;
            rc = inst_msg_get(x->in, v->mbox_id, uids[u], &r);
            if (rc == STORE_ENOTFOUND)
                continue;
            if (rc) {
                *x->err = "cannot read the mailbox";
                res = rc;
                break;
            }
            if (r.msgnum != nums[j])
                continue;             /* stale member: the program never sees it */
            if ((rc = add_hit(x, &h, &nh, &caph, i, &r)) != STORE_OK)
                res = rc;
        }
    }
    if (res == 1)
        x->anchor = a;
    mdb_cursor_close(mc);
    free(nums);
    size_t *pos = NULL;
    struct msg_ref *refs = NULL;
    if (res == 1) {
        /* the member map lists messages in msgnum order; the program and
         * the reply want view order, each position once */
        if (nh > 1)                   /* h is NULL when nothing was hit */
            qsort(h, nh, sizeof *h, hit_cmp);
        pos = malloc((nh ? nh : 1) * sizeof *pos);
        refs = malloc((nh ? nh : 1) * sizeof *refs);
        if (!pos || !refs) {
            free(pos);
            free(refs);
            *x->err = "out of memory";
            res = STORE_EIO;
        } else {
            size_t k = 0;
            for (size_t j = 0; j < nh; j++) {
                if (k > 0 && pos[k - 1] == h[j].pos)
                    continue;
                pos[k] = h[j].pos;
                refs[k++] = h[j].r;
            }
            *posp = pos;
            *refsp = refs;
            *np = k;
        }
    }
    free(h);
    return res;
}

static void ex_free(struct ex *x)
{
    mailtext_free(&x->mt);
    buf_free(&x->hdr);
    buf_free(&x->win);
    buf_free(&x->txt);
    free(x->refs);
    free(x->have);
    free(x->sentday);
    free(x->sent_done);
}

/* Runs the program; the matching view positions, ascending, go to *out
 * (NULL when none) or, when dense is given, as flags to dense[0..v->n). */
static int exec_run(struct inst *in, const struct search_view *v, const struct search_prog *p,
                    size_t **out, size_t *nout, uint8_t *dense, const char **err)
{
    struct ex x = { .in = in, .v = v, .err = err };
    size_t nv = v->n;
    static const char *dummy;
    if (!err)
        x.err = &dummy;
    if (out) {
        *out = NULL;
        *nout = 0;
    }
    if (dense)
        memset(dense, 0, nv);
    if (nv == 0)
        return STORE_OK;
    x.txn = inst_txn(in);
    x.dbs = inst_index_dbs(in);
    /* an index being rebuilt (or migrated) does not cover every message */
    if (x.dbs && x.txn && !ix_complete(x.txn, x.dbs))
        x.dbs = NULL;
    mailtext_init(&x.mt);
    buf_init(&x.hdr, 64u * 1024u * 1024u);
    buf_init(&x.win, 2u * MAILTEXT_PART_MAX + 2u * RD_WINDOW);
    buf_init(&x.txt, 0);
    uint8_t *S = NULL, *R = NULL;
    size_t *pos = NULL;
    int rc;
    if (!x.txn) {
        *x.err = "no read transaction";
        rc = STORE_EIO;
        goto out;
    }
    rc = start_from_index(&x, p, &pos, &x.refs, &x.n);
    if (rc < 0)
        goto out;
    if (rc == 0)
        x.n = nv;
    x.pos = pos;
    size_t n1 = x.n ? x.n : 1;
    if (!x.refs)
        x.refs = calloc(n1, sizeof *x.refs);
    x.have = calloc(n1, 1);
    x.sentday = calloc(n1, sizeof *x.sentday);
    x.sent_done = calloc(n1, 1);
    S = malloc(n1);
    R = dense && !pos ? dense : malloc(n1);
    if (!x.refs || !x.have || !x.sentday || !x.sent_done || !S || !R) {
        *x.err = "out of memory";
        rc = STORE_EIO;
        goto out;
    }
    if (pos) {
        memset(x.have, 1, x.n);
    } else {
        rc = inst_msgs_walk(in, v->mbox_id, v->uids[0], walk_cb, &x);
        if (rc < 0) {
            *x.err = "cannot read the mailbox";
            goto out;
        }
    }
    memcpy(S, x.have, x.n);
    rc = eval(&x, p->root, S, R);
    if (rc != STORE_OK)
        goto out;
    if (dense) {
        if (pos)
            for (size_t i = 0; i < x.n; i++)
                dense[pos[i]] = R[i];
    } else {
        size_t k = 0;
        for (size_t i = 0; i < x.n; i++)
            k += R[i] != 0;
        if (k > 0) {
            size_t *o = malloc(k * sizeof *o);
            if (!o) {
                *x.err = "out of memory";
                rc = STORE_EIO;
                goto out;
            }
            k = 0;
            for (size_t i = 0; i < x.n; i++)
                if (R[i])
                    o[k++] = pos ? pos[i] : i;
            *out = o;
            *nout = k;
        }
    }
out:
    if (rc != STORE_OK && dense)
        memset(dense, 0, nv);
    ex_free(&x);
    free(pos);
    free(S);
    if (R != dense)
        free(R);
    return rc;
}

int search_exec(struct inst *in, const struct search_view *v,
                const struct search_prog *p, uint8_t *match, const char **err)
{
    return exec_run(in, v, p, NULL, NULL, match, err);
}

int search_exec_list(struct inst *in, const struct search_view *v,
                     const struct search_prog *p, size_t **pos, size_t *npos, const char **err)
{
    return exec_run(in, v, p, pos, npos, NULL, err);
}
