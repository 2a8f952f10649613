/* cmd_list.c — NAMESPACE, LIST (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE,
 * CHILDREN), LSUB, STATUS, SUBSCRIBE/UNSUBSCRIBE, and the write commands
 * that a read-only archive refuses with NO [CANNOT]. */
#include "server/session_int.h"

#include <stdlib.h>
#include <string.h>

#include "proto/mutf7.h"
#include "server/log.h"

#define ST_MESSAGES 0x01u
#define ST_UIDNEXT 0x02u
#define ST_UIDVALIDITY 0x04u
#define ST_UNSEEN 0x08u
#define ST_RECENT 0x10u
#define ST_SIZE 0x20u
#define ST_DELETED 0x40u

#define MAX_PATTERNS 32

int cmd_namespace(struct session *s, const struct imap_cmd *cmd,
                  const struct imap_arg *args, size_t nargs, bool uid)
{
    if (nargs != 0)
        return sess_tagged(s, cmd->tag, "BAD", "NAMESPACE takes no arguments");
    sess_puts(s, "* NAMESPACE ((\"\" \"/\")) ((\"Users/\" \"/\")) NIL\r\n");
    return sess_tagged(s, cmd->tag, "OK", "Namespace completed");
}

static int parse_status_items(const struct imap_arg *a, unsigned *items)
{
    *items = 0;
    if (a->type != IMAP_ARG_LIST || a->nlist == 0)
        return -1;
    for (size_t i = 0; i < a->nlist; i++) {
        const struct imap_arg *x = &a->list[i];
        if (imap_arg_eq(x, "MESSAGES"))
            *items |= ST_MESSAGES;
        else if (imap_arg_eq(x, "UIDNEXT"))
            *items |= ST_UIDNEXT;
        else if (imap_arg_eq(x, "UIDVALIDITY"))
            *items |= ST_UIDVALIDITY;
        else if (imap_arg_eq(x, "UNSEEN"))
            *items |= ST_UNSEEN;
        else if (imap_arg_eq(x, "RECENT"))
            *items |= ST_RECENT;
        else if (imap_arg_eq(x, "SIZE"))
            *items |= ST_SIZE;
        else if (imap_arg_eq(x, "DELETED"))
            *items |= ST_DELETED;
        else
            return -1;
    }
    return 0;
}

static void write_status(struct session *s, const char *ext, const struct mbox_rec *m,
                         unsigned items)
{
    buf_reset(&s->out);
    buf_puts(&s->out, "* STATUS ");
    sess_append_mbox(s, &s->out, ext);
    buf_puts(&s->out, " (");
    const char *sep = "";
    if (items & ST_MESSAGES) {
        buf_printf(&s->out, "%sMESSAGES %u", sep, m->messages);
        sep = " ";
    }
    if (items & ST_RECENT) {
        buf_printf(&s->out, "%sRECENT 0", sep);
        sep = " ";
    }
    if (items & ST_UIDNEXT) {
        buf_printf(&s->out, "%sUIDNEXT %u", sep, m->uidnext);
        sep = " ";
    }
    if (items & ST_UIDVALIDITY) {
        buf_printf(&s->out, "%sUIDVALIDITY %u", sep, m->uidvalidity);
        sep = " ";
    }
    if (items & ST_UNSEEN) {
        buf_printf(&s->out, "%sUNSEEN %u", sep, m->unseen);
        sep = " ";
    }
    if (items & ST_DELETED) {
        buf_printf(&s->out, "%sDELETED 0", sep);
        sep = " ";
    }
    if (items & ST_SIZE)
        buf_printf(&s->out, "%sSIZE %llu", sep, (unsigned long long)m->size);
    buf_puts(&s->out, ")\r\n");
    sess_write(s, s->out.data, s->out.len);
}

int cmd_status(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    char ext[sizeof(((struct mbox_loc *)0)->ext)];
    unsigned items;
    if (nargs != 2 || sess_mbox_arg(s, &args[0], ext, sizeof(ext)) != 0 ||
        parse_status_items(&args[1], &items) != 0)
        return sess_tagged(s, cmd->tag, "BAD", "Invalid STATUS arguments");
    struct mbox_loc loc;
    struct mbox_rec rec;
    if (sess_mbox_resolve(s, ext, &loc, &rec) != 0)
        return sess_tagged(s, cmd->tag, "NO", "[NONEXISTENT] Mailbox does not exist");
    write_status(s, ext, &rec, items);
    return sess_tagged(s, cmd->tag, "OK", "Status completed");
}

/* ---- LIST / LSUB ---- */

struct list_opts {
    bool sel_subscribed, sel_special, recursive;
    bool ret_subscribed, ret_children, ret_special;
    unsigned status;
    bool extended;
};

static void write_attrs(struct buf *b, const struct list_ent *e, const struct list_opts *o,
                        bool lsub)
{
    const char *sep = "";
#define ATTR(x)                   \
    do {                          \
        buf_printf(b, "%s" x, sep); \
        sep = " ";                \
    } while (0)
    if (e->attrs & LE_NOSELECT)
        ATTR("\\Noselect");
    if (!lsub) {
        if (e->attrs & LE_CHILDREN)
            ATTR("\\HasChildren");
        else
            ATTR("\\HasNoChildren");
        /* with RECURSIVEMATCH a parent subscribed only through its
         * children says so with CHILDINFO instead */
        if ((o->ret_subscribed || o->sel_subscribed) && (e->attrs & LE_SUBSCRIBED) &&
            !(o->recursive && (e->attrs & LE_SUB_IMPLIED)))
            ATTR("\\Subscribed");
        uint32_t su = e->special_use;
        if (su & STORE_SU_ALL)
            ATTR("\\All");
        if (su & STORE_SU_ARCHIVE)
            ATTR("\\Archive");
        if (su & STORE_SU_DRAFTS)
            ATTR("\\Drafts");
        if (su & STORE_SU_FLAGGED)
            ATTR("\\Flagged");
        if (su & STORE_SU_JUNK)
            ATTR("\\Junk");
        if (su & STORE_SU_SENT)
            ATTR("\\Sent");
        if (su & STORE_SU_TRASH)
            ATTR("\\Trash");
    }
#undef ATTR
}

static int parse_list_opts(const struct imap_arg **args, size_t *nargs, struct list_opts *o,
                           const char **err)
{
    memset(o, 0, sizeof(*o));
    if (*nargs > 0 && (*args)[0].type == IMAP_ARG_LIST) {
        o->extended = true;
        const struct imap_arg *l = &(*args)[0];
        for (size_t i = 0; i < l->nlist; i++) {
            if (imap_arg_eq(&l->list[i], "SUBSCRIBED"))
                o->sel_subscribed = true;
            else if (imap_arg_eq(&l->list[i], "SPECIAL-USE"))
                o->sel_special = true;
            else if (imap_arg_eq(&l->list[i], "RECURSIVEMATCH"))
                o->recursive = true;
            else if (imap_arg_eq(&l->list[i], "REMOTE"))
                ;
            else {
                *err = "Unknown LIST selection option";
                return -1;
            }
        }
        if (o->recursive && !o->sel_subscribed) {
            *err = "RECURSIVEMATCH needs another selection option";
            return -1;
        }
        (*args)++;
        (*nargs)--;
    }
    if (*nargs == 4 && imap_arg_eq(&(*args)[2], "RETURN") && (*args)[3].type == IMAP_ARG_LIST) {
        o->extended = true;
        const struct imap_arg *l = &(*args)[3];
        for (size_t i = 0; i < l->nlist; i++) {
            const struct imap_arg *x = &l->list[i];
            if (imap_arg_eq(x, "SUBSCRIBED")) {
                o->ret_subscribed = true;
            } else if (imap_arg_eq(x, "CHILDREN")) {
                o->ret_children = true;
            } else if (imap_arg_eq(x, "SPECIAL-USE")) {
                o->ret_special = true;
            } else if (imap_arg_eq(x, "STATUS") && i + 1 < l->nlist &&
                       parse_status_items(&l->list[i + 1], &o->status) == 0) {
                i++;
            } else {
                *err = "Unknown LIST return option";
                return -1;
            }
        }
        *nargs = 2;
    }
    if (*nargs != 2) {
        *err = "LIST needs a reference and a pattern";
        return -1;
    }
    return 0;
}

#define LE_CHILDINFO 0x100u   /* do_list only: send ("CHILDINFO" ("SUBSCRIBED")) */

static int cmp_ext(const void *key, const void *ent)
{
    return strcmp((const char *)key, ((const struct list_ent *)ent)->ext);
}

static bool match_any(char *const *patterns, size_t np, const char *name)
{
    for (size_t k = 0; k < np; k++)
        if (sess_mbox_match(patterns[k], name))
            return true;
    return false;
}

/* RFC 5258 RECURSIVEMATCH: every ancestor of a subscribed mailbox that
 * the patterns do not match gets CHILDINFO, so a client listing one level
 * learns which branches hold subscribed folders. ls is sorted by name. */
static void mark_childinfo(struct list_set *ls, char *const *patterns, size_t np)
{
    char name[sizeof(((struct mbox_loc *)0)->ext)];
    for (size_t i = 0; i < ls->n; i++) {
        const struct list_ent *e = &ls->v[i];
        if (!(e->attrs & LE_SUBSCRIBED) || (e->attrs & LE_SUB_IMPLIED) ||
            strlen(e->ext) >= sizeof(name) || match_any(patterns, np, e->ext))
            continue;
        strcpy(name, e->ext);
        char *slash;
        while ((slash = strrchr(name, '/')) != NULL) {
            *slash = '\0';
            struct list_ent *p = bsearch(name, ls->v, ls->n, sizeof(ls->v[0]), cmp_ext);
            if (p == NULL || (p->attrs & LE_CHILDINFO))
                break;   /* its ancestors were marked already */
            p->attrs |= LE_CHILDINFO;
        }
    }
}

/* Pattern text from the wire: mUTF-7-decoded unless in UTF-8 mode; a
 * pattern that does not decode is used as it is (it matches nothing odd). */
static char *pattern_text(struct session *s, const struct imap_arg *ref,
                          const struct imap_arg *pat)
{
    struct buf b;
    buf_init(&b, 8 * STORE_MBOX_MAX);
    const struct imap_arg *parts[2] = {ref, pat};
    for (int i = 0; i < 2; i++) {
        const struct imap_arg *a = parts[i];
        size_t before = b.len;
        if (s->utf8 || mutf7_decode(a->s, a->len, &b) != 0) {
            b.len = before;
            if (buf_append(&b, a->s, a->len) != 0) {
                buf_free(&b);
                return NULL;
            }
        }
    }
    buf_putc(&b, '\0');
    char *r = strdup((const char *)b.data);
    buf_free(&b);
    return r;
}

static int do_list(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
                   size_t nargs, bool lsub)
{
    struct list_opts o;
    const char *err = NULL;
    if (parse_list_opts(&args, &nargs, &o, &err) != 0 || (lsub && o.extended))
        return sess_tagged(s, cmd->tag, "BAD", "%s", err ? err : "Invalid LSUB arguments");
    if (lsub)
        o.sel_subscribed = true;
    const struct imap_arg *ref = &args[0], *pats = &args[1];
    if (!imap_arg_is_astring(ref))
        return sess_tagged(s, cmd->tag, "BAD", "Invalid reference");
    const struct imap_arg *plist = pats;
    size_t npat = 1;
    if (pats->type == IMAP_ARG_LIST) {
        if (!o.extended && pats->nlist > 0)
            o.extended = true;
        plist = pats->list;
        npat = pats->nlist;
    }
    if (npat == 0 || npat > MAX_PATTERNS)
        return sess_tagged(s, cmd->tag, "BAD", "Invalid mailbox patterns");
    for (size_t i = 0; i < npat; i++)
        if (!imap_arg_is_astring(&plist[i]))
            return sess_tagged(s, cmd->tag, "BAD", "Invalid mailbox pattern");

    const char *verb = lsub ? "LSUB" : "LIST";
    /* LIST "" "": the hierarchy delimiter */
    if (npat == 1 && plist[0].len == 0 && !o.sel_subscribed && !o.sel_special) {
        sess_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n", verb);
        return sess_tagged(s, cmd->tag, "OK", "%s completed", verb);
    }
    char *patterns[MAX_PATTERNS];
    size_t np = 0;
    for (size_t i = 0; i < npat; i++) {
        patterns[np] = pattern_text(s, ref, &plist[i]);
        if (patterns[np] != NULL)
            np++;
    }
    struct list_set ls;
    if (sess_mbox_enumerate(s, &ls) != 0) {
        for (size_t i = 0; i < np; i++)
            free(patterns[i]);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Cannot list mailboxes");
    }
    if (o.recursive)
        mark_childinfo(&ls, patterns, np);
    /* INBOX first, the rest in name order (the set is sorted) */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < ls.n; i++) {
            const struct list_ent *e = &ls.v[i];
            bool inbox = strcmp(e->ext, "INBOX") == 0;
            if (inbox != (pass == 0))
                continue;
            if (!match_any(patterns, np, e->ext))
                continue;
            bool childinfo = (e->attrs & LE_CHILDINFO) != 0;
            bool own_sub = (e->attrs & LE_SUBSCRIBED) &&
                           !(o.recursive && (e->attrs & LE_SUB_IMPLIED));
            if (o.sel_subscribed && !own_sub && !childinfo)
                continue;
            if (o.sel_special && e->special_use == 0)
                continue;
            buf_reset(&s->out);
            buf_printf(&s->out, "* %s (", verb);
            write_attrs(&s->out, e, &o, lsub);
            buf_puts(&s->out, ") \"/\" ");
            sess_append_mbox(s, &s->out, e->ext);
            if (childinfo)
                buf_puts(&s->out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            buf_puts(&s->out, "\r\n");
            sess_write(s, s->out.data, s->out.len);
            if (o.status && !(e->attrs & LE_NOSELECT))
                write_status(s, e->ext, &e->rec, o.status);
            if (sess_maybe_flush(s) != 0)
                break;
        }
    }
    list_set_free(&ls);
    for (size_t i = 0; i < np; i++)
        free(patterns[i]);
    return sess_tagged(s, cmd->tag, "OK", "%s completed", verb);
}

int cmd_list(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
             size_t nargs, bool uid)
{
    return do_list(s, cmd, args, nargs, false);
}

int cmd_lsub(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
             size_t nargs, bool uid)
{
    return do_list(s, cmd, args, nargs, true);
}

/* Subscriptions are implied (own and granted folders always subscribed),
 * so (UN)SUBSCRIBE changes nothing but must not alarm the client. */
int cmd_subscribe(struct session *s, const struct imap_cmd *cmd,
                  const struct imap_arg *args, size_t nargs, bool uid)
{
    if (nargs != 1 || !imap_arg_is_astring(&args[0]))
        return sess_tagged(s, cmd->tag, "BAD", "%s needs a mailbox name", cmd->name);
    return sess_tagged(s, cmd->tag, "OK", "%s completed", cmd->name);
}

/* CREATE DELETE RENAME APPEND COPY MOVE EXPUNGE (and UID forms): the
 * archive is read-only. Never BAD for a well-formed command, so clients
 * do not treat it as a protocol error. */
int cmd_cannot(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    return sess_tagged(s, cmd->tag, "NO", "[CANNOT] The archive is read-only");
}
