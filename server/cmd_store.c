/* cmd_store.c — STORE and UID STORE in a read-only archive: answer OK and
 * change nothing (clients alert on a NO here: Thunderbird sends
 * `uid store N +Flags (\Seen)` after reading). Unless .SILENT, the FETCH
 * responses show the flags as they are stored, which is the truth. */
#include "server/session_int.h"
#include "server/log.h"

#include <string.h>

static bool valid_flag(const struct imap_arg *a)
{
    return a->type == IMAP_ARG_ATOM && a->len > 0;
}

int cmd_store(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
              size_t nargs, bool uid)
{
    if (nargs != 3 || args[1].type != IMAP_ARG_ATOM)
        return sess_tagged(s, cmd->tag, "BAD", "STORE needs a set, an item and flags");
    const struct imap_arg *item = &args[1];
    const char *p = item->s;
    size_t n = item->len;
    if (n > 0 && (p[0] == '+' || p[0] == '-')) {
        p++;
        n--;
    }
    bool silent = false;
    if (n == 12 && strncasecmp(p, "FLAGS.SILENT", 12) == 0)
        silent = true;
    else if (!(n == 5 && strncasecmp(p, "FLAGS", 5) == 0))
        return sess_tagged(s, cmd->tag, "BAD", "Unknown STORE item");
    const struct imap_arg *fl = &args[2];
    if (fl->type == IMAP_ARG_LIST) {
        for (size_t i = 0; i < fl->nlist; i++)
            if (!valid_flag(&fl->list[i]))
                return sess_tagged(s, cmd->tag, "BAD", "Invalid flag");
    } else if (!valid_flag(fl)) {
        return sess_tagged(s, cmd->tag, "BAD", "Invalid flag");
    }
    struct view_iter it;
    const char *err;
    if (view_iter_init(s, &args[0], uid, &it, &err) != 0)
        return sess_tagged(s, cmd->tag, "BAD", "%s", err);
    size_t idx;
    unsigned failed = 0;
    while (!silent && view_iter_next(s, &it, &idx)) {
        struct msg_ref m;
        uint32_t u = sess_view_uid(s, idx);
        int rc = inst_msg_get(s->in, s->selrec.id, u, &m);
        if (rc == STORE_ENOTFOUND)
            continue;     /* gone from the store: nothing to say about it */
        if (rc != STORE_OK) {
            /* a damaged record, not a vanished message: say so, and go on
             * on a fresh read txn (LMDB leaves one that met a damaged page
             * unusable; the view is the session's and does not change) */
            log_err("instance %s folder %s UID %u: cannot read its record: %s",
                    s->who.instance, s->sel.ext, u, store_strerror(rc));
            failed++;
            sess_rd_end(s);
            if (sess_rd_begin(s) != 0)
                break;
            continue;
        }
        buf_reset(&s->out);
        buf_printf(&s->out, "* %zu FETCH (", idx + 1);
        if (uid)
            buf_printf(&s->out, "UID %u ", m.uid);
        buf_puts(&s->out, "FLAGS ");
        sess_append_flags(&s->out, m.flags);
        buf_puts(&s->out, ")\r\n");
        sess_write(s, s->out.data, s->out.len);
        if (sess_maybe_flush(s) != 0)
            break;
    }
    view_iter_free(&it);
    if (failed)
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Some messages could not be read");
    return sess_tagged(s, cmd->tag, "OK", "Store completed (the archive is read-only)");
}
