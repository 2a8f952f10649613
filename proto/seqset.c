/* seqset.c — IMAP sequence sets. See seqset.h. */
#include "proto/seqset.h"

#include <stdlib.h>
#include <string.h>

#include "proto/buf.h"

/* nz-number or `*`; advances *pp. */
static int parse_num(const char **pp, const char *end, uint32_t *out)
{
    const char *p = *pp;
    if (p < end && *p == '*') {
        *out = SEQSET_STAR;
        *pp = p + 1;
        return 0;
    }
    if (p >= end || *p < '1' || *p > '9')
        return -1;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
        p++;
    }
    *out = (uint32_t)v;
    *pp = p;
    return 0;
}

int seqset_parse(const char *s, size_t len, size_t max_ranges,
                 struct seqset *out, const char **err)
{
    memset(out, 0, sizeof(*out));
    if (max_ranges == 0 || max_ranges > SEQSET_MAX_RANGES)
        max_ranges = SEQSET_MAX_RANGES;
    if (len == 1 && s[0] == '$') {
        out->dollar = true;
        return 0;
    }
    const char *p = s, *end = s + len;
    size_t cap = 0;
    if (len == 0) {
        *err = "Empty sequence set";
        return -1;
    }
    while (p < end) {
        struct seqset_range r;
        if (parse_num(&p, end, &r.lo) != 0)
            goto bad;
        r.hi = r.lo;
        if (p < end && *p == ':') {
            p++;
            if (parse_num(&p, end, &r.hi) != 0)
                goto bad;
        }
        if (p < end) {
            if (*p != ',' || p + 1 == end)
                goto bad;
            p++;
        }
        if (out->n == max_ranges) {
            *err = "Too many ranges in sequence set";
            goto fail;
        }
        if (out->n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            if (ncap > max_ranges)
                ncap = max_ranges;
            struct seqset_range *nr = realloc(out->r, ncap * sizeof(*nr));
            if (nr == NULL) {
                *err = "Out of memory";
                goto fail;
            }
            out->r = nr;
            cap = ncap;
        }
        out->r[out->n++] = r;
    }
    return 0;
bad:
    *err = "Invalid sequence set";
fail:
    seqset_free(out);
    return -1;
}

void seqset_free(struct seqset *set)
{
    free(set->r);
    set->r = NULL;
    set->n = 0;
}

static int cmp_range(const void *a, const void *b)
{
    const struct seqset_range *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->hi < y->hi ? -1 : x->hi > y->hi;
}

void seqset_resolve(struct seqset *set, uint32_t star)
{
    size_t k = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct seqset_range r = set->r[i];
        if (r.lo == SEQSET_STAR || r.hi == SEQSET_STAR) {
            if (star == 0)
                continue;
            if (r.lo == SEQSET_STAR)
                r.lo = star;
            if (r.hi == SEQSET_STAR)
                r.hi = star;
        }
        if (r.lo > r.hi) {
            uint32_t t = r.lo;
            r.lo = r.hi;
            r.hi = t;
        }
        set->r[k++] = r;
    }
    set->n = k;
    if (k == 0)
        return;
    qsort(set->r, k, sizeof(set->r[0]), cmp_range);
    size_t m = 0;
    for (size_t i = 1; i < k; i++) {
        struct seqset_range *last = &set->r[m];
        /* merge overlapping and adjacent ranges (careful at UINT32_MAX) */
        if (set->r[i].lo <= last->hi || set->r[i].lo - 1 == last->hi) {
            if (set->r[i].hi > last->hi)
                last->hi = set->r[i].hi;
        } else {
            set->r[++m] = set->r[i];
        }
    }
    set->n = m + 1;
}

bool seqset_contains(const struct seqset *set, uint32_t v)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->r[mid].hi < v)
            lo = mid + 1;
        else if (set->r[mid].lo > v)
            hi = mid;
        else
            return true;
    }
    return false;
}

int seqset_from_sorted(const uint32_t *v, size_t n, struct seqset *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    size_t nr = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[i - 1] + 1)
            nr++;
    out->r = malloc(nr * sizeof(*out->r));
    if (out->r == NULL)
        return -1;
    out->r[0].lo = out->r[0].hi = v[0];
    out->n = 1;
    for (size_t i = 1; i < n; i++) {
        if (v[i] == out->r[out->n - 1].hi + 1) {
            out->r[out->n - 1].hi = v[i];
        } else {
            out->r[out->n].lo = out->r[out->n].hi = v[i];
            out->n++;
        }
    }
    return 0;
}

int seqset_format(const uint32_t *v, size_t n, struct buf *out)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        if (i > 0)
            rc = buf_putc(out, ',');
        if (rc == 0)
            rc = j == i ? buf_printf(out, "%u", v[i])
                        : buf_printf(out, "%u:%u", v[i], v[j]);
        i = j + 1;
    }
    return rc;
}
