/* imapparse.c — IMAP command tokenizer and string quoting. See imapparse.h. */
#include "proto/imapparse.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "proto/buf.h"

#define DEFAULT_NESTING 32
#define DEFAULT_MAX_ARGS 100000
#define ARENA_CHUNK 4096
#define QUOTED_MAX 4096   /* longer output strings go out as literals */

/* ---- arena: every node and string of one command, freed at once ---- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    alignas(max_align_t) unsigned char data[];
};

struct imap_arena {
    struct arena_chunk *head;
};

static void *arena_alloc(struct imap_arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    struct arena_chunk *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        size_t sz = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof(*c) + sz);
        if (c == NULL)
            return NULL;
        c->size = sz;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(struct imap_arena *a)
{
    if (a == NULL)
        return;
    struct arena_chunk *c = a->head;
    while (c != NULL) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

/* ---- character classes (RFC 3501 formal syntax) ---- */

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* Octets that end an atom in our lenient reading: RFC atom-specials minus
 * list-wildcards ('%', '*'), resp-specials (']') and '\' (flags), which
 * LIST patterns, sequence sets and flag names need. 8-bit octets are
 * accepted (clients send raw UTF-8 names). */
static bool ends_atom(unsigned char c)
{
    return c == ' ' || c == '(' || c == ')' || c == '{' || c == '"' || is_ctl(c);
}

/* RFC 3501 ATOM-CHAR, for deciding how to write an astring. */
static bool is_atom_char(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f)
        return false;
    return strchr("(){%*\"\\]", c) == NULL;
}

static bool is_tag_char(unsigned char c)
{
    /* ASTRING-CHAR except '+' */
    return c == ']' || (c != '+' && is_atom_char(c));
}

/* ---- line helpers ---- */

int imap_line_literal(const char *line, size_t len, struct imap_lit *out)
{
    if (len < 3 || line[len - 1] != '}')
        return 0;
    size_t i = len - 1;
    bool nonsync = false;
    if (line[i - 1] == '+') {
        nonsync = true;
        i--;
    }
    size_t end = i;   /* one past the last digit */
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || line[i - 1] != '{')
        return 0;
    uint64_t v = 0;
    for (size_t k = i; k < end; k++) {
        unsigned d = (unsigned)(line[k] - '0');
        if (v > (UINT64_MAX / 2 - d) / 10) {
            v = UINT64_MAX;
            break;
        }
        v = v * 10 + d;
    }
    out->size = v;
    out->nonsync = nonsync;
    out->marker_off = i - 1;
    out->literal8 = false;
    if (i >= 2 && line[i - 2] == '~') {
        out->literal8 = true;
        out->marker_off = i - 2;
    }
    return 1;
}

int imap_line_tag(const char *line, size_t len, const char **tag, size_t *tag_len)
{
    size_t i = 0;
    while (i < len && i <= IMAP_TAG_MAX && is_tag_char((unsigned char)line[i]))
        i++;
    if (i == 0 || i > IMAP_TAG_MAX || i >= len || line[i] != ' ')
        return 0;
    *tag = line;
    *tag_len = i;
    return 1;
}

/* ---- the tokenizer ---- */

struct parser {
    const unsigned char *p, *end;
    struct imap_arena *arena;
    unsigned max_nesting;
    size_t max_args, nargs;
    const char *err;
};

struct argvec {
    struct imap_arg *v;
    size_t n, cap;
};

static int argvec_push(struct parser *ps, struct argvec *av, const struct imap_arg *a)
{
    if (++ps->nargs > ps->max_args) {
        ps->err = "Too many arguments";
        return -1;
    }
    if (av->n == av->cap) {
        size_t ncap = av->cap ? av->cap * 2 : 8;
        struct imap_arg *nv = realloc(av->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            ps->err = "Out of memory";
            return -1;
        }
        av->v = nv;
        av->cap = ncap;
    }
    av->v[av->n++] = *a;
    return 0;
}

/* Copy the collected members into the arena as one array. */
static int argvec_seal(struct parser *ps, struct argvec *av,
                       const struct imap_arg **out, size_t *nout)
{
    *nout = av->n;
    *out = NULL;
    if (av->n > 0) {
        struct imap_arg *dst = arena_alloc(ps->arena, av->n * sizeof(*dst));
        if (dst == NULL) {
            ps->err = "Out of memory";
            return -1;
        }
        memcpy(dst, av->v, av->n * sizeof(*dst));
        *out = dst;
    }
    return 0;
}

static char *arena_strdup(struct parser *ps, const unsigned char *s, size_t n)
{
    char *d = arena_alloc(ps->arena, n + 1);
    if (d == NULL) {
        ps->err = "Out of memory";
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int parse_quoted(struct parser *ps, struct imap_arg *a)
{
    const unsigned char *p = ps->p + 1;
    /* The unescaped form is never longer than the raw one. */
    const unsigned char *q = p;
    size_t n = 0;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') {
            if (q + 1 >= ps->end || (q[1] != '\\' && q[1] != '"')) {
                ps->err = "Invalid escape in quoted string";
                return -1;
            }
            q++;
        } else if (*q == '\r' || *q == '\n' || *q == '\0') {
            ps->err = "Invalid character in quoted string";
            return -1;
        }
        q++;
        n++;
    }
    if (q >= ps->end) {
        ps->err = "Missing '\"'";
        return -1;
    }
    char *d = arena_alloc(ps->arena, n + 1);
    if (d == NULL) {
        ps->err = "Out of memory";
        return -1;
    }
    size_t k = 0;
    for (; p < q; p++) {
        if (*p == '\\')
            p++;
        d[k++] = (char)*p;
    }
    d[k] = '\0';
    a->type = IMAP_ARG_QUOTED;
    a->s = d;
    a->len = n;
    ps->p = q + 1;
    return 0;
}

static int parse_literal(struct parser *ps, struct imap_arg *a, bool lit8)
{
    const unsigned char *p = ps->p + (lit8 ? 2 : 1);
    uint64_t v = 0;
    const unsigned char *digits = p;
    while (p < ps->end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX / 2 - d) / 10) {
            ps->err = "Literal size too large";
            return -1;
        }
        v = v * 10 + d;
        p++;
    }
    if (p == digits) {
        ps->err = "Invalid literal size";
        return -1;
    }
    if (p < ps->end && *p == '+')
        p++;
    if (p >= ps->end || *p != '}') {
        ps->err = "Missing '}'";
        return -1;
    }
    p++;
    if (ps->end - p < 2 || p[0] != '\r' || p[1] != '\n') {
        ps->err = "Missing CRLF after literal";
        return -1;
    }
    p += 2;
    if ((uint64_t)(ps->end - p) < v) {
        ps->err = "Truncated literal";
        return -1;
    }
    char *d = arena_strdup(ps, p, (size_t)v);
    if (d == NULL)
        return -1;
    a->type = IMAP_ARG_LITERAL;
    a->literal8 = lit8;
    a->s = d;
    a->len = (size_t)v;
    ps->p = p + v;
    return 0;
}

static int parse_atom(struct parser *ps, struct imap_arg *a)
{
    const unsigned char *p = ps->p;
    while (p < ps->end && !ends_atom(*p)) {
        if (*p == '[') {
            /* fetch-att: "[...]" may hold SP, parentheses and quotes */
            unsigned depth = 0;
            while (p < ps->end) {
                unsigned char c = *p;
                if (c == '\r' || c == '\n' || c == '\0') {
                    ps->err = "Invalid character in atom";
                    return -1;
                }
                if (c == '[') {
                    depth++;
                } else if (c == ']') {
                    if (--depth == 0)
                        break;
                }
                p++;
            }
            if (p >= ps->end) {
                ps->err = "Missing ']'";
                return -1;
            }
        }
        p++;
    }
    if (p == ps->p) {
        ps->err = "Unexpected character";
        return -1;
    }
    char *d = arena_strdup(ps, ps->p, (size_t)(p - ps->p));
    if (d == NULL)
        return -1;
    a->type = IMAP_ARG_ATOM;
    a->s = d;
    a->len = (size_t)(p - ps->p);
    ps->p = p;
    return 0;
}

static int parse_list_items(struct parser *ps, unsigned depth, bool top,
                            const struct imap_arg **out, size_t *nout);

static int parse_one(struct parser *ps, unsigned depth, struct imap_arg *a)
{
    memset(a, 0, sizeof(*a));
    unsigned char c = *ps->p;
    if (c == '(') {
        if (depth + 1 > ps->max_nesting) {
            ps->err = "Too deep nesting";
            return -1;
        }
        ps->p++;
        a->type = IMAP_ARG_LIST;
        if (parse_list_items(ps, depth + 1, false, &a->list, &a->nlist) != 0)
            return -1;
        return 0;
    }
    if (c == '"')
        return parse_quoted(ps, a);
    if (c == '{')
        return parse_literal(ps, a, false);
    if (c == '~' && ps->end - ps->p > 1 && ps->p[1] == '{')
        return parse_literal(ps, a, true);
    return parse_atom(ps, a);
}

/* Members up to ')' (not top) or the end of input (top). Arguments are
 * separated by spaces; runs of spaces and a trailing space are tolerated
 * because some clients send them. */
static int parse_list_items(struct parser *ps, unsigned depth, bool top,
                            const struct imap_arg **out, size_t *nout)
{
    struct argvec av = {0};
    int rc = -1;
    bool need_sep = false;
    for (;;) {
        while (ps->p < ps->end && *ps->p == ' ') {
            ps->p++;
            need_sep = false;
        }
        if (ps->p >= ps->end) {
            if (!top) {
                ps->err = "Missing ')'";
                goto out;
            }
            break;
        }
        if (*ps->p == ')') {
            if (top) {
                ps->err = "Unexpected ')'";
                goto out;
            }
            ps->p++;
            break;
        }
        if (need_sep) {
            ps->err = "Missing space between arguments";
            goto out;
        }
        struct imap_arg a;
        if (parse_one(ps, depth, &a) != 0 || argvec_push(ps, &av, &a) != 0)
            goto out;
        need_sep = true;
    }
    rc = argvec_seal(ps, &av, out, nout);
out:
    free(av.v);
    return rc;
}

static void parser_init(struct parser *ps, const char *buf, size_t len,
                        const struct imap_parse_limits *lim, struct imap_arena *arena)
{
    ps->p = (const unsigned char *)buf;
    ps->end = ps->p + len;
    ps->arena = arena;
    ps->max_nesting = lim && lim->max_nesting ? lim->max_nesting : DEFAULT_NESTING;
    ps->max_args = lim && lim->max_args ? lim->max_args : DEFAULT_MAX_ARGS;
    ps->nargs = 0;
    ps->err = NULL;
}

int imap_parse_args(const char *buf, size_t len, const struct imap_parse_limits *lim,
                    struct imap_cmd *cmd, const char **err)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->arena = calloc(1, sizeof(*cmd->arena));
    if (cmd->arena == NULL) {
        *err = "Out of memory";
        return -1;
    }
    struct parser ps;
    parser_init(&ps, buf, len, lim, cmd->arena);
    if (parse_list_items(&ps, 0, true, &cmd->args, &cmd->nargs) != 0) {
        *err = ps.err;
        return -1;
    }
    return 0;
}

int imap_parse_command(const char *buf, size_t len, const struct imap_parse_limits *lim,
                       struct imap_cmd *cmd, const char **err)
{
    memset(cmd, 0, sizeof(*cmd));
    const char *tag;
    size_t tag_len;
    if (!imap_line_tag(buf, len, &tag, &tag_len)) {
        *err = "Invalid tag";
        return -1;
    }
    memcpy(cmd->tag, tag, tag_len);
    cmd->tag[tag_len] = '\0';
    cmd->have_tag = true;
    size_t i = tag_len + 1, n = 0;
    while (i + n < len && buf[i + n] != ' ') {
        unsigned char c = (unsigned char)buf[i + n];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum || n >= IMAP_CMDNAME_MAX) {
            *err = "Invalid command name";
            return -1;
        }
        cmd->name[n] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        n++;
    }
    cmd->name[n] = '\0';
    if (n == 0) {
        *err = "Missing command";
        return -1;
    }
    i += n;
    cmd->arena = calloc(1, sizeof(*cmd->arena));
    if (cmd->arena == NULL) {
        *err = "Out of memory";
        return -1;
    }
    if (i == len)
        return 0;
    struct parser ps;
    parser_init(&ps, buf + i + 1, len - i - 1, lim, cmd->arena);
    if (parse_list_items(&ps, 0, true, &cmd->args, &cmd->nargs) != 0) {
        *err = ps.err;
        return -1;
    }
    return 0;
}

void imap_cmd_free(struct imap_cmd *cmd)
{
    arena_free(cmd->arena);
    cmd->arena = NULL;
    cmd->args = NULL;
    cmd->nargs = 0;
}

bool imap_arg_eq(const struct imap_arg *a, const char *kw)
{
    if (a->type == IMAP_ARG_LIST)
        return false;
    size_t n = strlen(kw);
    if (a->len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a->s[i], y = (unsigned char)kw[i];
        if (x >= 'a' && x <= 'z')
            x -= 32;
        if (y >= 'a' && y <= 'z')
            y -= 32;
        if (x != y)
            return false;
    }
    return true;
}

/* ---- output ---- */

int imap_append_string(struct buf *out, const char *s, size_t len, bool allow8)
{
    bool quotable = len <= QUOTED_MAX;
    for (size_t i = 0; quotable && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\0' || (c >= 0x80 && !allow8))
            quotable = false;
    }
    if (!quotable) {
        int rc = buf_printf(out, "{%zu}\r\n", len);
        return rc != 0 ? rc : buf_append(out, s, len);
    }
    int rc = buf_putc(out, '"');
    for (size_t i = 0; rc == 0 && i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc = buf_putc(out, '\\');
        if (rc == 0)
            rc = buf_putc(out, (unsigned char)s[i]);
    }
    return rc != 0 ? rc : buf_putc(out, '"');
}

int imap_append_nstring(struct buf *out, const char *s, size_t len, bool allow8)
{
    if (s == NULL)
        return buf_puts(out, "NIL");
    return imap_append_string(out, s, len, allow8);
}

int imap_append_astring(struct buf *out, const char *s, size_t len, bool allow8)
{
    bool atom = len > 0 && len <= QUOTED_MAX;
    for (size_t i = 0; atom && i < len; i++)
        atom = is_atom_char((unsigned char)s[i]);
    if (atom && len == 3) {
        struct imap_arg a = {.type = IMAP_ARG_ATOM, .s = s, .len = len};
        atom = !imap_arg_eq(&a, "NIL");
    }
    if (atom)
        return buf_append(out, s, len);
    return imap_append_string(out, s, len, allow8);
}
