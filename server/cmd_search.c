/* cmd_search.c — SEARCH and UID SEARCH: the program is parsed by
 * proto/search and run by server/search_exec; this file formats SEARCH or
 * ESEARCH (RFC 4731) responses and keeps the SEARCHRES `$` (RFC 5182). */
#include "server/session_int.h"

#include <stdlib.h>
#include <string.h>

#include "proto/search.h"
#include "server/log.h"
#include "server/search_exec.h"

static void set_saved(struct session *s, const uint32_t *uids, const uint8_t *match)
{
    free(s->saved);
    s->saved = NULL;
    s->nsaved = 0;
    if (match == NULL)
        return;
    size_t n = 0;
    for (size_t i = 0; i < s->nuids; i++)
        n += match[i] != 0;
    if (n == 0 || (s->saved = malloc(n * sizeof(uint32_t))) == NULL)
        return;
    for (size_t i = 0; i < s->nuids; i++)
        if (match[i])
            s->saved[s->nsaved++] = uids[i];
}

static int write_esearch(struct session *s, const struct imap_cmd *cmd, bool uid,
                         unsigned ret, const uint32_t *uids, const uint8_t *match)
{
    size_t count = 0, first = SIZE_MAX, last = 0;
    for (size_t i = 0; i < s->nuids; i++) {
        if (!match[i])
            continue;
        count++;
        if (first == SIZE_MAX)
            first = i;
        last = i;
    }
#define VAL(i) (uid ? uids[i] : (uint32_t)((i) + 1))
    buf_reset(&s->out);
    buf_printf(&s->out, "* ESEARCH (TAG \"%s\")", cmd->tag);
    if (uid)
        buf_puts(&s->out, " UID");
    if ((ret & SEARCH_RET_MIN) && count > 0)
        buf_printf(&s->out, " MIN %u", VAL(first));
    if ((ret & SEARCH_RET_MAX) && count > 0)
        buf_printf(&s->out, " MAX %u", VAL(last));
    if (ret & SEARCH_RET_COUNT)
        buf_printf(&s->out, " COUNT %zu", count);
    sess_write(s, s->out.data, s->out.len);
    if ((ret & SEARCH_RET_ALL) && count > 0) {
        sess_puts(s, " ALL ");
        /* runs of consecutive values, written as they are found */
        size_t i = first;
        bool firstrun = true;
        while (i <= last) {
            if (!match[i]) {
                i++;
                continue;
            }
            size_t j = i;
            while (j + 1 <= last && match[j + 1] && VAL(j + 1) == VAL(j) + 1)
                j++;
            if (j == i)
                sess_printf(s, "%s%u", firstrun ? "" : ",", VAL(i));
            else
                sess_printf(s, "%s%u:%u", firstrun ? "" : ",", VAL(i), VAL(j));
            firstrun = false;
            i = j + 1;
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
    /* the view keeps UID runs; the executor wants one UID per message, so
     * the array lives for this command only */
    bool oom;
    uint32_t *uids = sess_view_array(s, &oom);
    uint8_t *match = oom ? NULL : calloc(s->nuids ? s->nuids : 1, 1);
    if (match == NULL) {
        free(uids);
        search_free(prog);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Out of memory");
    }
    struct search_view v = {s->selrec.id, uids, s->nuids, s->saved, s->nsaved};
    const char *xerr = "search failed";
    int rc = search_exec(s->in, &v, prog, match, &xerr);
    search_free(prog);
    if (rc != 0) {
        if (ret & SEARCH_RET_SAVE)
            set_saved(s, uids, NULL);
        free(match);
        free(uids);
        log_err("SEARCH failed: %s", xerr);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Search failed");
    }
    int wr = 0;
    if (esearch) {
        if ((ret & ~SEARCH_RET_SAVE) != 0)
            wr = write_esearch(s, cmd, uid, ret, uids, match);
    } else {
        sess_puts(s, "* SEARCH");
        for (size_t i = 0; i < s->nuids && wr == 0; i++) {
            if (!match[i])
                continue;
            sess_printf(s, " %u", uid ? uids[i] : (uint32_t)(i + 1));
            wr = sess_maybe_flush(s);
        }
        sess_puts(s, "\r\n");
    }
    if (ret & SEARCH_RET_SAVE)
        set_saved(s, uids, match);
    free(match);
    free(uids);
    if (wr != 0)
        return CMD_END;
    return sess_tagged(s, cmd->tag, "OK", "Search completed");
}
