/* rfc822.h — tokenizer for structured header values (RFC 5322 atoms,
 * quoted strings, comments, domains; MIME tokens and parameters with RFC
 * 2231 continuations). Works on an unfolded or folded value; CR/LF count
 * as white space. Results go into caller-owned buffers, so a whole header
 * section is tokenized without per-token allocation.
 *
 * Return values follow one convention: -1 syntax error, 0 the value is
 * exhausted, 1 more input follows (the position is on the next token). */
#ifndef COFFER_RFC822_H
#define COFFER_RFC822_H
#include <stdbool.h>
#include <stddef.h>
#include "proto/buf.h"

struct rfc822_ctx {
    const unsigned char *p, *end;
    struct buf *last_comment;   /* NULL, or receives the text of the last comment */
};

void rfc822_init(struct rfc822_ctx *c, const unsigned char *s, size_t n,
                 struct buf *last_comment);
int rfc822_skip_comment(struct rfc822_ctx *c);
int rfc822_skip_lwsp(struct rfc822_ctx *c);
int rfc822_atom(struct rfc822_ctx *c, struct buf *out);
int rfc822_dot_atom(struct rfc822_ctx *c, struct buf *out);
int rfc822_mime_token(struct rfc822_ctx *c, struct buf *out);
int rfc822_quoted_string(struct rfc822_ctx *c, struct buf *out);
int rfc822_phrase(struct rfc822_ctx *c, struct buf *out);
int rfc822_domain(struct rfc822_ctx *c, struct buf *out);
/* "type/subtype" into out (both parts, with the '/'). */
int rfc822_content_type(struct rfc822_ctx *c, struct buf *out);

bool rfc822_is_atext(unsigned char ch);
bool rfc822_is_lwsp(unsigned char ch);
int rfc822_casecmp(const char *a, const char *b);
int rfc822_ncasecmp(const char *a, const char *b, size_t n);

/* Parameters after the type (";" key "=" value ...), merged the RFC 2231
 * way: key*0, key*1 … become one key (with a trailing '*' when any piece
 * was extended); a set with a missing index is passed on piece by piece.
 * The result is a flat list of NUL-terminated strings key, value, key,
 * value … in out; *count is the number of pairs. Returns -1 if some
 * parameter was malformed (the others are still returned). */
int rfc2231_params(struct rfc822_ctx *c, struct buf *out, size_t *count);
/* Iterate such a list: *pos starts at 0; returns false at the end. */
bool rfc2231_next(const struct buf *list, size_t *pos, const char **key,
                  const char **value);

#endif
