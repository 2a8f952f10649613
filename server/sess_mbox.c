/* sess_mbox.c — the mailbox names a user sees: personal folders under "",
 * other archives under Users/<owner>/ (granted: subscribed; an admin's view
 * of everyone else: listed, not subscribed), the resolution of a
 * client-visible name to (owner, store name), and LIST pattern matching. */
#include "server/session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/mutf7.h"

#define USERS_PREFIX "Users/"
#define USERS_PREFIX_LEN 6

/* "inbox" -> "INBOX", "inbox/x" -> "INBOX/x" (INBOX is case-insensitive). */
static void normalise_inbox(char *name)
{
    if (strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/'))
        memcpy(name, "INBOX", 5);
}

int sess_mbox_arg(struct session *s, const struct imap_arg *a, char *ext, size_t extsz)
{
    if (!imap_arg_is_astring(a) || memchr(a->s, '\0', a->len) != NULL)
        return -1;
    struct buf b;
    buf_init(&b, extsz);
    int rc;
    if (s->utf8)
        rc = utf8_valid(a->s, a->len) ? buf_append(&b, a->s, a->len) : -1;
    else
        rc = mutf7_decode(a->s, a->len, &b);
    if (rc == 0 && b.len + 1 > extsz)
        rc = -1;
    if (rc == 0) {
        if (b.len > 0)   /* "" leaves b.data NULL: memcpy(NULL, 0) is UB */
            memcpy(ext, b.data, b.len);
        ext[b.len] = '\0';
        normalise_inbox(ext);
    }
    buf_free(&b);
    return rc == 0 ? 0 : -1;
}

int sess_mbox_resolve(struct session *s, const char *ext, struct mbox_loc *loc,
                      struct mbox_rec *rec)
{
    memset(loc, 0, sizeof(*loc));
    if (strlen(ext) >= sizeof(loc->ext))
        return STORE_ENOTFOUND;
    strcpy(loc->ext, ext);
    if (strncmp(ext, USERS_PREFIX, USERS_PREFIX_LEN) == 0) {
        const char *o = ext + USERS_PREFIX_LEN;
        const char *slash = strchr(o, '/');
        if (slash == NULL || slash == o || slash[1] == '\0')
            return STORE_ENOTFOUND;
        char raw[STORE_USER_MAX + 1];
        size_t olen = (size_t)(slash - o);
        if (olen > STORE_USER_MAX)
            return STORE_ENOTFOUND;
        memcpy(raw, o, olen);
        raw[olen] = '\0';
        const char *err;
        if (store_user_canon(raw, loc->owner, &err) != STORE_OK)
            return STORE_ENOTFOUND;
        if (!inst_may_read(s->in, s->who.user, loc->owner))
            return STORE_ENOTFOUND;
        if (strlen(slash + 1) >= sizeof(loc->name))
            return STORE_ENOTFOUND;
        strcpy(loc->name, slash + 1);
        normalise_inbox(loc->name);
        loc->other = strcmp(loc->owner, s->who.user) != 0;
    } else {
        strcpy(loc->owner, s->who.user);
        if (strlen(ext) >= sizeof(loc->name))
            return STORE_ENOTFOUND;
        strcpy(loc->name, ext);
    }
    int rc = inst_mbox_get(s->in, loc->owner, loc->name, rec);
    return rc == STORE_OK ? 0 : STORE_ENOTFOUND;
}

/* ---- enumeration ---- */

void list_set_free(struct list_set *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->v[i].ext);
    free(ls->v);
    memset(ls, 0, sizeof(*ls));
}

static int ls_add(struct list_set *ls, const char *prefix, const char *name, unsigned attrs,
                  const struct mbox_rec *rec)
{
    if (ls->n == ls->cap) {
        size_t ncap = ls->cap ? ls->cap * 2 : 32;
        struct list_ent *nv = realloc(ls->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        ls->v = nv;
        ls->cap = ncap;
    }
    struct list_ent *e = &ls->v[ls->n];
    memset(e, 0, sizeof(*e));
    size_t pl = strlen(prefix), nl = strlen(name);
    e->ext = malloc(pl + nl + 1);
    if (e->ext == NULL)
        return -1;
    memcpy(e->ext, prefix, pl);
    memcpy(e->ext + pl, name, nl + 1);
    e->attrs = attrs;
    if (rec != NULL) {
        e->rec = *rec;
        e->special_use = rec->special_use;
    }
    ls->n++;
    return 0;
}

struct walk_ctx {
    struct list_set *ls;
    char prefix[STORE_USER_MAX + 16];
    unsigned attrs;
    int err;
};

static int mbox_cb(void *ctx, const char *name, const struct mbox_rec *m)
{
    struct walk_ctx *w = ctx;
    if (ls_add(w->ls, w->prefix, name, w->attrs, m) != 0) {
        w->err = -1;
        return 1;
    }
    return 0;
}

struct owners {
    char **v;
    size_t n, cap;
};

static int owners_add(struct owners *o, const char *name)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->v[i], name) == 0)
            return 0;
    if (o->n == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 8;
        char **nv = realloc(o->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        o->v = nv;
        o->cap = ncap;
    }
    if ((o->v[o->n] = strdup(name)) == NULL)
        return -1;
    o->n++;
    return 0;
}

static void owners_free(struct owners *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->v[i]);
    free(o->v);
}

struct grant_ctx {
    struct owners *o;
    const char *self;
    int err;
};

static int grant_cb(void *ctx, const char *owner)
{
    struct grant_ctx *g = ctx;
    if (strcmp(owner, g->self) != 0 && owners_add(g->o, owner) != 0) {
        g->err = -1;
        return 1;
    }
    return 0;
}

static int user_cb(void *ctx, const struct user_rec *u)
{
    struct grant_ctx *g = ctx;
    if (strcmp(u->name, g->self) != 0 && owners_add(g->o, u->name) != 0) {
        g->err = -1;
        return 1;
    }
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    const struct list_ent *x = a, *y = b;
    return strcmp(x->ext, y->ext);
}

static struct list_ent *ls_find_n(struct list_set *ls, size_t n, const char *name)
{
    struct list_ent key = {.ext = (char *)name};
    return bsearch(&key, ls->v, n, sizeof(ls->v[0]), cmp_ent);
}

static struct list_ent *ls_find(struct list_set *ls, const char *name)
{
    return ls_find_n(ls, ls->n, name);
}

/* Add \Noselect parents for every missing level, mark \HasChildren, and
 * let a parent be subscribed when something below it is (so clients that
 * show only subscribed folders still build the tree). */
static int complete_tree(struct list_set *ls)
{
    /* parent names are copied out: truncating an entry in place would
     * let the search find the entry itself */
    char parent[sizeof(((struct mbox_loc *)0)->ext)];
    if (ls->n == 0)
        return 0;
    qsort(ls->v, ls->n, sizeof(ls->v[0]), cmp_ent);
    for (;;) {
        size_t before = ls->n;
        for (size_t i = 0; i < before; i++) {
            const char *slash = strrchr(ls->v[i].ext, '/');
            size_t pl = slash ? (size_t)(slash - ls->v[i].ext) : 0;
            if (slash == NULL || pl >= sizeof(parent))
                continue;
            memcpy(parent, ls->v[i].ext, pl);
            parent[pl] = '\0';
            bool missing = ls_find_n(ls, before, parent) == NULL;
            for (size_t j = before; missing && j < ls->n; j++)
                if (strcmp(ls->v[j].ext, parent) == 0)
                    missing = false;
            if (missing && ls_add(ls, "", parent, LE_NOSELECT, NULL) != 0)
                return -1;
        }
        qsort(ls->v, ls->n, sizeof(ls->v[0]), cmp_ent);
        if (ls->n == before)
            break;
    }
    /* \HasChildren on the parent; a \Noselect ancestor is subscribed when
     * something below it is */
    for (size_t i = 0; i < ls->n; i++) {
        bool sub = (ls->v[i].attrs & LE_SUBSCRIBED) != 0;
        size_t len = strlen(ls->v[i].ext);
        if (len >= sizeof(parent))
            continue;
        memcpy(parent, ls->v[i].ext, len + 1);
        bool first = true;
        char *slash;
        while ((slash = strrchr(parent, '/')) != NULL) {
            *slash = '\0';
            struct list_ent *p = ls_find(ls, parent);
            if (p == NULL)
                break;
            if (first)
                p->attrs |= LE_CHILDREN;
            first = false;
            if (sub && (p->attrs & LE_NOSELECT) && !(p->attrs & LE_SUBSCRIBED))
                p->attrs |= LE_SUBSCRIBED | LE_SUB_IMPLIED;
        }
    }
    return 0;
}

int sess_mbox_enumerate(struct session *s, struct list_set *out)
{
    memset(out, 0, sizeof(*out));
    struct walk_ctx w = {.ls = out, .prefix = "", .attrs = LE_SUBSCRIBED, .err = 0};
    int rc = inst_mbox_list(s->in, s->who.user, mbox_cb, &w);
    if (rc != STORE_OK && rc != STORE_ENOTFOUND)
        goto fail;
    if (w.err != 0)
        goto fail;
    /* A personal folder literally named "Users" would shadow the other
     * archives; hide it rather than mix the two trees. */
    for (size_t i = 0; i < out->n; i++) {
        if (strcmp(out->v[i].ext, "Users") == 0 ||
            strncmp(out->v[i].ext, USERS_PREFIX, USERS_PREFIX_LEN) == 0) {
            free(out->v[i].ext);
            out->v[i--] = out->v[--out->n];
        }
    }
    struct owners granted = {0}, all = {0};
    struct grant_ctx g = {.o = &granted, .self = s->who.user, .err = 0};
    inst_grants_of(s->in, s->who.user, grant_cb, &g);
    if (s->who.admin) {
        struct grant_ctx ga = {.o = &all, .self = s->who.user, .err = 0};
        inst_user_list(s->in, user_cb, &ga);
        g.err |= ga.err;
    }
    for (size_t pass = 0; pass < 2 && g.err == 0; pass++) {
        struct owners *o = pass == 0 ? &granted : &all;
        for (size_t i = 0; i < o->n && w.err == 0; i++) {
            bool dup = false;
            for (size_t k = 0; pass == 1 && k < granted.n; k++)
                dup |= strcmp(granted.v[k], o->v[i]) == 0;
            if (dup)
                continue;
            snprintf(w.prefix, sizeof(w.prefix), USERS_PREFIX "%s/", o->v[i]);
            w.attrs = pass == 0 ? LE_SUBSCRIBED : 0;
            inst_mbox_list(s->in, o->v[i], mbox_cb, &w);
        }
    }
    owners_free(&granted);
    owners_free(&all);
    if (g.err != 0 || w.err != 0)
        goto fail;
    if (complete_tree(out) != 0)
        goto fail;
    return 0;
fail:
    list_set_free(out);
    return -1;
}

/* ---- pattern matching ---- */

/* Dynamic programming over pattern x name, O(|p|*|n|) time and O(|n|)
 * memory: no backtracking blow-up on patterns like "*a*a*a*b". */
bool sess_mbox_match(const char *pattern, const char *name)
{
    size_t pl = strlen(pattern), nl = strlen(name);
    if (pl > 4 * STORE_MBOX_MAX || nl > 4 * STORE_MBOX_MAX)
        return false;
    char pat[4 * STORE_MBOX_MAX + 1];
    memcpy(pat, pattern, pl + 1);
    normalise_inbox(pat);
    bool *row = calloc(nl + 1, sizeof(bool)), *nxt = calloc(nl + 1, sizeof(bool));
    if (row == NULL || nxt == NULL) {
        free(row);
        free(nxt);
        return false;
    }
    row[0] = true;   /* empty pattern prefix matches empty name prefix */
    for (size_t i = 0; i < pl; i++) {
        char pc = pat[i];
        memset(nxt, 0, nl + 1);
        if (pc == '*' || pc == '%') {
            bool carry = false;
            for (size_t j = 0; j <= nl; j++) {
                /* wildcard may absorb name[j-1] if allowed */
                if (j > 0 && carry && (pc == '*' || name[j - 1] != '/'))
                    carry = true;
                else
                    carry = false;
                carry = carry || row[j];
                nxt[j] = carry;
            }
        } else {
            for (size_t j = 1; j <= nl; j++)
                nxt[j] = row[j - 1] && name[j - 1] == pc;
        }
        bool *t = row;
        row = nxt;
        nxt = t;
    }
    bool m = row[nl];
    free(row);
    free(nxt);
    return m;
}
