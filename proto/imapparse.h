/* imapparse.h — IMAP command tokenizer (RFC 3501 / RFC 9051 syntax,
 * literals {n}, non-synchronising {n+} (RFC 7888 LITERAL+), literal8 ~{n}
 * (RFC 3516)), and the quoting of strings for responses.
 *
 * Two steps, so that no byte is ever read from the client that the
 * session did not decide to accept:
 *  1. the session reads one line at a time and asks imap_line_literal()
 *     whether the line ends with a literal announcement; it checks the size
 *     against its limits, sends "+" for a synchronising one, reads the
 *     octets and appends "\r\n" + octets + the next line to one buffer;
 *  2. imap_parse_command() tokenizes the whole assembled buffer (where each
 *     literal marker is followed by CRLF and its octets) into imap_args.
 * The parser is pure (no I/O), bounded (nesting depth, argument count) and
 * linear in the input; it is the fuzz target tests/fuzz/fuzz_imapparse.c. */
#ifndef COFFER_IMAPPARSE_H
#define COFFER_IMAPPARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/imaparg.h"

struct buf;

#define IMAP_TAG_MAX 64          /* longer tags are refused (BAD) */
#define IMAP_CMDNAME_MAX 32

struct imap_lit {
    uint64_t size;
    bool nonsync;                /* {n+} */
    bool literal8;               /* ~{n} */
    size_t marker_off;           /* where "{" or "~{" starts in the line */
};

/* 1 when line[0..len) ends with a literal announcement (filled in *out),
 * 0 when it does not. Sizes over 2^63 count as "ends with a literal" with
 * size UINT64_MAX, so the caller's limit check refuses them. */
int imap_line_literal(const char *line, size_t len, struct imap_lit *out);

/* The tag at the start of a line, for answering a line that cannot be
 * parsed: 1 with the tag and its length when the line starts with a valid tag
 * followed by SP, else 0. */
int imap_line_tag(const char *line, size_t len, const char **tag, size_t *tag_len);

struct imap_parse_limits {
    unsigned max_nesting;        /* parenthesis depth (0 = 32) */
    size_t max_args;             /* total arguments incl. list members (0 = 100000) */
};

struct imap_arena;

struct imap_cmd {
    char tag[IMAP_TAG_MAX + 1];
    bool have_tag;               /* tag valid even when parsing failed later */
    char name[IMAP_CMDNAME_MAX + 1];   /* upper-cased command name */
    const struct imap_arg *args; /* top-level arguments after the name */
    size_t nargs;
    struct imap_arena *arena;    /* private */
};

/* Parse "tag SP name [SP args]" from buf[0..len). On failure returns -1
 * with *err (a message for a tagged BAD; cmd->have_tag tells whether the
 * tag could be read). Always call imap_cmd_free() afterwards. */
int imap_parse_command(const char *buf, size_t len, const struct imap_parse_limits *lim,
                       struct imap_cmd *cmd, const char **err);
void imap_cmd_free(struct imap_cmd *cmd);

/* Parse a standalone argument list (e.g. a SASL response line or a test
 * vector) with the same rules; same ownership as above. */
int imap_parse_args(const char *buf, size_t len, const struct imap_parse_limits *lim,
                    struct imap_cmd *cmd, const char **err);

/* Case-insensitive compare of an atom/astring argument with a keyword. */
bool imap_arg_eq(const struct imap_arg *a, const char *kw);

/* ---- output ---- */
/* Append s as a quoted string when that is possible (no CR, LF, NUL, and
 * no 8-bit octet unless allow8 — UTF-8 mode), else as a literal {n}. */
int imap_append_string(struct buf *out, const char *s, size_t len, bool allow8);
/* As above but NULL -> NIL. */
int imap_append_nstring(struct buf *out, const char *s, size_t len, bool allow8);
/* An astring: bare atom when every octet is an ATOM-CHAR (and it is not
 * "NIL"), else as imap_append_string. */
int imap_append_astring(struct buf *out, const char *s, size_t len, bool allow8);

#endif
