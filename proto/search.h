/* search.h — SEARCH programs (RFC 3501 6.4.4, RFC 9051 6.4.4, ESEARCH
 * RFC 4731, SEARCHRES RFC 5182): parsing into a program the executor runs.
 * Pure: no store access. String arguments are converted from the CHARSET
 * to UTF-8 and folded with i;unicode-casemap (RFC 5051) at parse time. */
#ifndef COFFER_SEARCH_H
#define COFFER_SEARCH_H
#include <stdbool.h>
#include <stddef.h>
#include "proto/imaparg.h"

/* RETURN options (RFC 4731/5182) */
#define SEARCH_RET_MIN   0x01u
#define SEARCH_RET_MAX   0x02u
#define SEARCH_RET_ALL   0x04u
#define SEARCH_RET_COUNT 0x08u
#define SEARCH_RET_SAVE  0x10u

#define SEARCH_MAX_DEPTH 64
#define SEARCH_MAX_KEYS  1024

enum search_err {
    SEARCH_ERR_BAD = 1,         /* tagged BAD, *err says where */
    SEARCH_ERR_BADCHARSET = 2,  /* tagged NO [BADCHARSET (...)] */
};

struct search_prog;

/* Open every iconv descriptor the parser may need. Call before the
 * session is confined (glibc loads gconv modules lazily). */
int search_charsets_init(const char **err);
/* The charset list for NO [BADCHARSET (...)], e.g. "UTF-8 US-ASCII ISO-8859-1 ...". */
const char *search_charsets_list(void);

/* args: everything after the SEARCH keyword (RETURN (...), CHARSET x, keys).
 * On failure returns -1, *code = SEARCH_ERR_*, *err a message. */
int search_parse(const struct imap_arg *args, size_t nargs,
                 struct search_prog **out, int *code, const char **err);
void search_free(struct search_prog *p);
/* Does the program name a CHARSET (after an optional RETURN (...))? After
 * ENABLE UTF8=ACCEPT such a SEARCH is a BAD (RFC 6855 section 3). */
bool search_has_charset(const struct imap_arg *args, size_t nargs);
/* RETURN options given (0 if no RETURN clause); *esearch true when the
 * response must be ESEARCH (a RETURN clause was present). */
unsigned search_return(const struct search_prog *p, bool *esearch);

#endif
