/* search_prog.h — the parsed form of a SEARCH program, shared by the parser
 * (proto/search.c) and the executor (server/search_exec.c) only. */
#ifndef COFFER_SEARCH_PROG_H
#define COFFER_SEARCH_PROG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/search.h"
#include "proto/seqset.h"

/* flag bits, same values as store.h STORE_F_* (proto/ does not include store/) */
#define SEARCH_F_SEEN     0x01u
#define SEARCH_F_ANSWERED 0x02u
#define SEARCH_F_FLAGGED  0x04u
#define SEARCH_F_DRAFT    0x08u

enum search_key {
    SK_ALL, SK_NONE,            /* constant (NONE: RECENT, NEW, DELETED, KEYWORD) */
    SK_AND, SK_OR, SK_NOT,
    SK_FLAG, SK_UNFLAG,         /* flag bits all set / not set */
    SK_SEQ, SK_UID,             /* set (resolved by the executor) */
    SK_SAVED,                   /* `$` (as sequence set or UID set) */
    SK_BEFORE, SK_ON, SK_SINCE, /* INTERNALDATE day */
    SK_SENTBEFORE, SK_SENTON, SK_SENTSINCE,
    SK_LARGER, SK_SMALLER,
    SK_BODY, SK_TEXT,
    SK_HEADER,                  /* field: MT_FROM.. (mailtext.h) or MT__N with hname */
};

struct search_node {
    enum search_key type;
    uint32_t flags;             /* SK_FLAG / SK_UNFLAG */
    int64_t num;                /* days since 1970-01-01 (dates) or octets (sizes) */
    struct seqset set;          /* SK_SEQ / SK_UID */
    int field;                  /* SK_HEADER: enum mailtext_field, or MT__N */
    char *hname;                /* SK_HEADER with MT__N: field name */
    unsigned char *key;         /* folded UTF-8 (NUL-terminated for convenience) */
    size_t klen;
    bool exists_only;           /* HEADER x "": any field x matches */
    struct search_node **kids;  /* AND (n), OR (2), NOT (1) */
    size_t nkids;
};

struct search_prog {
    struct search_node *root;
    unsigned ret;               /* SEARCH_RET_* (ALL when RETURN () is empty) */
    bool esearch;
    size_t nkeys;
};

#endif
