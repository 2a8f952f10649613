/* search_exec.h — run a parsed SEARCH program over a mailbox snapshot,
 * using the full-text index (store/index.h) to skip messages that cannot
 * match, and the stored bytes only to confirm candidates. */
#ifndef COFFER_SEARCH_EXEC_H
#define COFFER_SEARCH_EXEC_H
#include <stddef.h>
#include <stdint.h>
#include "proto/search.h"
#include "store/store.h"

struct search_view {
    uint32_t mbox_id;
    const uint32_t *uids;     /* the session's view: seq i+1 has uids[i] */
    size_t n;
    const uint32_t *saved;    /* SEARCHRES `$` as sorted UIDs (may be NULL) */
    size_t nsaved;
};

/* Sets match[i] = 1 for every message of the view that matches.
 * Requires an open read transaction (inst_rd_begin). Returns 0, or a
 * STORE_E* code with *err (corruption is reported, never ignored). */
int search_exec(struct inst *in, const struct search_view *v,
                const struct search_prog *p, uint8_t *match, const char **err);

/* As search_exec, but returns the matching view positions (0-based,
 * ascending) in a malloc'd *pos of *npos entries (NULL when none; the
 * caller frees it). When the index starts the search, its cost follows
 * the candidates, not the view's size. */
int search_exec_list(struct inst *in, const struct search_view *v,
                     const struct search_prog *p, size_t **pos, size_t *npos, const char **err);

#endif
