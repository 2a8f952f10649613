/* index_gram.c — winnowed long grams (index_read.h, "Long grams").
 *
 * Trigrams of gen-corpus words, and of most natural-language words, are
 * common syllables: a rare word's rarest trigram still occurs in thousands
 * of messages, so a trigram join's work follows the archive. A 6-octet
 * gram is nearly as rare as the word it comes from, but posting every one
 * would multiply the postings. Winnowing posts a subset that a substring
 * search can still rely on: in every window of W consecutive grams the one
 * with the smallest hash (rightmost on ties) is selected. The choice
 * depends only on the window's octets, so any key of at least K + W - 1
 * octets contains whole windows, and the gram each of them selects is
 * selected at the same place in every text that contains the key. */
#include <string.h>
#include "store/index_read.h"
#include "proto/mailtext.h"

/* Keyed on the octets only (no position, no seed per text): the index and
 * the executor must agree. splitmix64's finaliser mixes every input bit
 * into the top bits that are posted. */
static uint64_t gram_hash(const unsigned char *p)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < IX_GRAM_K; i++)
        x = x << 8 | p[i];
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

size_t ix_winnow(const unsigned char *p, size_t len, struct ix_gram *out)
{
    if (len < IX_GRAM_K + IX_GRAM_W - 1)
        return 0;
    size_t ng = len - IX_GRAM_K + 1, n = 0;
    uint64_t h[IX_GRAM_W];                 /* ring: hash of gram i at i % W */
    for (size_t i = 0; i < IX_GRAM_W - 1; i++)
        h[i % IX_GRAM_W] = gram_hash(p + i);
    size_t last = SIZE_MAX;
    for (size_t end = IX_GRAM_W - 1; end < ng; end++) {
        h[end % IX_GRAM_W] = gram_hash(p + end);
        size_t best = end + 1 - IX_GRAM_W;
        for (size_t i = best + 1; i <= end; i++)
            if (h[i % IX_GRAM_W] <= h[best % IX_GRAM_W])
                best = i;                  /* rightmost minimum */
        if (best != last) {
            out[n++] = (struct ix_gram){ (uint32_t)(h[best % IX_GRAM_W] >> (64 - IX_GRAM_BITS)),
                                         (uint32_t)best };
            last = best;
        }
    }
    return n;
}

size_t ix_winnow_text(const unsigned char *p, size_t len, struct ix_gram *out)
{
    /* a key never holds a separator: each segment is winnowed on its own,
     * so no window (and no gram) spans two of them */
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != MAILTEXT_SEP)
            continue;
        size_t m = ix_winnow(p + start, i - start, out + n);
        for (size_t j = 0; j < m; j++)
            out[n + j].pos += (uint32_t)start;
        n += m;
        start = i + 1;
    }
    return n;
}
