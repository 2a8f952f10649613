/* seqset.h — IMAP sequence sets (RFC 3501 sequence-set, RFC 5182 `$`).
 *
 * A parsed set keeps `*` symbolic (as SEQSET_STAR) because its value
 * depends on the mailbox view; seqset_resolve() substitutes it and returns
 * sorted, merged, non-overlapping ranges, which is what every user wants
 * (FETCH over a view, SEARCH's sequence-set key, UID ranges). */
#ifndef COFFER_SEQSET_H
#define COFFER_SEQSET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEQSET_STAR 0u            /* `*` (0 is never a valid nz-number) */
#define SEQSET_MAX_RANGES 100000  /* more is refused: bounds memory per command */

struct seqset_range {
    uint32_t lo, hi;              /* inclusive; either may be SEQSET_STAR before resolve */
};

struct seqset {
    struct seqset_range *r;       /* malloc'd; seqset_free() */
    size_t n;
    bool dollar;                  /* the set was `$` (SEARCHRES); r is empty */
};

/* Parse s[0..len). Returns 0, or -1 with *err (syntax, a zero, a number
 * over 2^32-1, more than max_ranges ranges, or allocation failure). */
int seqset_parse(const char *s, size_t len, size_t max_ranges,
                 struct seqset *out, const char **err);
void seqset_free(struct seqset *set);

/* Replace `*` by star (the largest number in use: message count, or the
 * largest UID; 0 for an empty mailbox, then ranges that contain `*` are
 * dropped), order each range, sort and merge. In place. */
void seqset_resolve(struct seqset *set, uint32_t star);

/* On a resolved set. */
bool seqset_contains(const struct seqset *set, uint32_t v);
/* Build a resolved set from sorted unique values (e.g. SEARCHRES UIDs). */
int seqset_from_sorted(const uint32_t *v, size_t n, struct seqset *out);

/* Append the compact IMAP form ("1:3,7,9:12") of sorted unique values to
 * out (a buf from proto/buf.h). Returns 0 or a BUF_E* code. */
struct buf;
int seqset_format(const uint32_t *v, size_t n, struct buf *out);

#endif
