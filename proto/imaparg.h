/* imaparg.h — the parsed form of an IMAP command's arguments, shared by the
 * command parser (proto/imapparse.c) and every command that reads them
 * (FETCH attributes, SEARCH programs, LIST patterns…).
 *
 * Strings are already unquoted/unescaped and NUL-terminated for
 * convenience, but `len` is authoritative (a literal may hold NUL). An atom
 * that contains '[' extends to the matching ']' and may contain SP and
 * parentheses inside the brackets, so `BODY.PEEK[HEADER.FIELDS (From To)]<0.10>`
 * is one atom, as RFC 3501's fetch-att grammar needs. NIL is an atom. */
#ifndef COFFER_IMAPARG_H
#define COFFER_IMAPARG_H
#include <stdbool.h>
#include <stddef.h>

enum imap_arg_type {
    IMAP_ARG_ATOM,
    IMAP_ARG_QUOTED,
    IMAP_ARG_LITERAL,     /* {n}, {n+}, or ~{n} (literal8 set) */
    IMAP_ARG_LIST,        /* ( ... ) */
};

struct imap_arg {
    enum imap_arg_type type;
    bool literal8;
    const char *s;              /* atom/string text; NULL for lists */
    size_t len;
    const struct imap_arg *list;  /* LIST members */
    size_t nlist;
};

static inline bool imap_arg_is_string(const struct imap_arg *a)
{
    return a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}
/* astring: atom or string */
static inline bool imap_arg_is_astring(const struct imap_arg *a)
{
    return a->type != IMAP_ARG_LIST;
}

#endif
