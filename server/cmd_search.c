/* cmd_search.c — SEARCH and UID SEARCH: the program is parsed by
 * proto/search and run by server/search_exec; this file formats SEARCH or
 * ESEARCH (RFC 4731) responses and keeps the SEARCHRES `$` (RFC 5182). */
#include "server/session_int.h"

#include <stdlib.h>
#include <string.h>

#include "proto/search.h"
#include "server/log.h"
#include "server/search_exec.h"

/* The matches come as ascending view positions: the reply and `$` follow
 * them, not the view, so a search of a few hits costs a few hits here. */
static void set_saved(struct session *s, const uint32_t *uids, const size_t *pos, size_t n)
{
    free(s->saved);
    s->saved = NULL;
    s->nsaved = 0;
    if (n == 0 || (s->saved = malloc(n * sizeof(uint32_t))) == NULL)
        return;
    for (size_t k = 0; k < n; k++)
        s->saved[s->nsaved++] = uids[pos[k]];
}

static int write_esearch(struct session *s, const struct imap_cmd *cmd, bool uid,
                         unsigned ret, const uint32_t *uids, const size_t *pos, size_t count)
{
#define VAL(k) (uid ? uids[pos[k]] : (uint32_t)(pos[k] + 1))
    buf_reset(&s->out);
    buf_printf(&s->out, "* ESEARCH (TAG \"%s\")", cmd->tag);
    if (uid)
        buf_puts(&s->out, " UID");
    if ((ret & SEARCH_RET_MIN) && count > 0)
        buf_printf(&s->out, " MIN %u", VAL(0));
    if ((ret & SEARCH_RET_MAX) && count > 0)
        buf_printf(&s->out, " MAX %u", VAL(count - 1));
    if (ret & SEARCH_RET_COUNT)
        buf_printf(&s->out, " COUNT %zu", count);
    sess_write(s, s->out.data, s->out.len);
    if ((ret & SEARCH_RET_ALL) && count > 0) {
        sess_puts(s, " ALL ");
        /* runs of consecutive values, written as they are found */
        size_t k = 0;
        bool firstrun = true;
        while (k < count) {
            size_t j = k;
            while (j + 1 < count && VAL(j + 1) == VAL(j) + 1)
                j++;
            if (j == k)
                sess_printf(s, "%s%u", firstrun ? "" : ",", VAL(k));
            else
                sess_printf(s, "%s%u:%u", firstrun ? "" : ",", VAL(k), VAL(j));
            firstrun = false;
            k = j + 1;
            if (sess_maybe_flush(s) != 0)
                return -1;
        }
    }
#undef VAL
    return sess_puts(s, "\r\n");
}

int cmd_search(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    struct search_prog *prog = NULL;
    int code = 0;
    const char *err = "Invalid search";
    /* RFC 6855 section 3: after ENABLE UTF8=ACCEPT strings are UTF-8, so a
     * CHARSET label conflicts with it: BAD, whichever charset it names */
    if (s->utf8_accept && search_has_charset(args, nargs))
        return sess_tagged(s, cmd->tag, "BAD",
                           "CHARSET is not allowed after ENABLE UTF8=ACCEPT (RFC 6855)");
    if (search_parse(args, nargs, &prog, &code, &err) != 0) {
        if (code == SEARCH_ERR_BADCHARSET)
            return sess_tagged(s, cmd->tag, "NO", "[BADCHARSET (%s)] %s", search_charsets_list(),
                               err);
        return sess_tagged(s, cmd->tag, "BAD", "%s", err);
    }
    bool esearch = false;
    unsigned ret = search_return(prog, &esearch);
    if (s->rev2 && !esearch) {
        esearch = true;
        ret = SEARCH_RET_ALL;
    }
    if (esearch && ret == 0)
        ret = SEARCH_RET_ALL;   /* RETURN () means ALL */
    /* the view keeps UID runs; the executor wants one UID per message: the
     * session's copy (sess_view_array), not ours to free */
    bool oom;
    const uint32_t *uids = sess_view_array(s, &oom);
    if (uids == NULL && (oom || s->nuids > 0)) {
        search_free(prog);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Out of memory");
    }
    struct search_view v = {s->selrec.id, uids, s->nuids, s->saved, s->nsaved};
    const char *xerr = "search failed";
    size_t *pos = NULL, npos = 0;
    int rc = search_exec_list(s->in, &v, prog, &pos, &npos, &xerr);
    search_free(prog);
    if (rc != 0) {
        if (ret & SEARCH_RET_SAVE)
            set_saved(s, uids, NULL, 0);
        log_err("SEARCH failed: %s", xerr);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Search failed");
    }
    int wr = 0;
    if (esearch) {
        if ((ret & ~SEARCH_RET_SAVE) != 0)
            wr = write_esearch(s, cmd, uid, ret, uids, pos, npos);
    } else {
        sess_puts(s, "* SEARCH");
        for (size_t k = 0; k < npos && wr == 0; k++) {
            sess_printf(s, " %u", uid ? uids[pos[k]] : (uint32_t)(pos[k] + 1));
            wr = sess_maybe_flush(s);
        }
        sess_puts(s, "\r\n");
    }
    if (ret & SEARCH_RET_SAVE)
        set_saved(s, uids, pos, npos);
    free(pos);
    if (wr != 0)
        return CMD_END;
    return sess_tagged(s, cmd->tag, "OK", "Search completed");
}
