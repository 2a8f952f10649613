/* cmd_select.c — SELECT/EXAMINE (always read-only), CHECK, CLOSE,
 * UNSELECT, and the session's view of the selected mailbox: its UID runs,
 * message sets over it, and the formatting shared with FETCH/STORE. */
#include "server/session_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/log.h"

struct extend_ctx {
    struct session *s;
    int err;
    long added;
};

static int view_append(struct session *s, uint32_t uid)
{
    if (s->nruns > 0) {
        struct uid_run *r = &s->runs[s->nruns - 1];
        if (uid <= r->uid + r->n - 1)
            return 0;   /* never out of order in the view */
        if (uid == r->uid + r->n && r->n < UINT32_MAX) {
            r->n++;
            s->nuids++;
            return 0;
        }
    }
    if (s->nuids >= UINT32_MAX)
        return -1;
    if (s->nruns == s->capruns) {
        size_t ncap = s->capruns ? s->capruns * 2 : 4;
        struct uid_run *nv = realloc(s->runs, ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        s->runs = nv;
        s->capruns = ncap;
    }
    s->runs[s->nruns++] = (struct uid_run){(uint32_t)s->nuids, uid, 1};
    s->nuids++;
    return 0;
}

static int extend_cb(void *ctx, const struct msg_ref *m)
{
    struct extend_ctx *x = ctx;
    size_t before = x->s->nuids;
    if (view_append(x->s, m->uid) != 0) {
        x->err = -1;
        return 1;
    }
    x->added += (long)(x->s->nuids - before);
    return 0;
}

uint32_t sess_view_last_uid(const struct session *s)
{
    if (s->nruns == 0)
        return 0;
    const struct uid_run *r = &s->runs[s->nruns - 1];
    return r->uid + r->n - 1;
}

uint32_t sess_view_uid(struct session *s, size_t idx)
{
    size_t h = s->run_hint;
    for (size_t k = 0; k < 2 && h < s->nruns; k++, h++) {
        const struct uid_run *r = &s->runs[h];
        if (idx >= r->idx && idx - r->idx < r->n) {
            s->run_hint = h;
            return r->uid + (uint32_t)(idx - r->idx);
        }
    }
    size_t lo = 0, hi = s->nruns;   /* last run with r->idx <= idx */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->runs[mid].idx <= idx)
            lo = mid;
        else
            hi = mid;
    }
    if (lo >= s->nruns)
        return 0;
    s->run_hint = lo;
    return s->runs[lo].uid + (uint32_t)(idx - s->runs[lo].idx);
}

size_t sess_view_lower_bound(const struct session *s, uint32_t uid)
{
    size_t lo = 0, hi = s->nruns;   /* first run whose last UID >= uid */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct uid_run *r = &s->runs[mid];
        if (r->uid + (r->n - 1) < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->nruns)
        return s->nuids;
    const struct uid_run *r = &s->runs[lo];
    return uid <= r->uid ? r->idx : r->idx + (uid - r->uid);
}

const uint32_t *sess_view_array(struct session *s, bool *oom)
{
    *oom = false;
    if (s->nuids == 0)
        return NULL;
    if (s->nvcache > s->nuids)   /* views only grow; never trust a stale copy */
        s->nvcache = 0;
    if (s->nvcache == s->nuids)
        return s->vcache;
    uint32_t *v = realloc(s->vcache, s->nuids * sizeof(*v));
    if (v == NULL) {
        *oom = true;
        return NULL;
    }
    s->vcache = v;
    size_t have = s->nvcache;    /* only the messages added since are filled */
    for (size_t i = 0; i < s->nruns; i++) {
        const struct uid_run *r = &s->runs[i];
        if (r->idx + r->n <= have)
            continue;
        for (uint32_t k = have > r->idx ? (uint32_t)(have - r->idx) : 0; k < r->n; k++)
            v[r->idx + k] = r->uid + k;
    }
    s->nvcache = s->nuids;
    return v;
}

long sess_view_extend(struct session *s, uint32_t from)
{
    struct extend_ctx x = {s, 0, 0};
    int rc = inst_msgs_walk(s->in, s->selrec.id, from, extend_cb, &x);
    if (rc != STORE_OK && rc != STORE_ENOTFOUND)
        /* the view keeps what was read before the damage: not silent */
        log_err("instance %s folder %s: message list unreadable after %ld of its "
                "messages from UID %u: %s", s->who.instance, s->sel.ext, x.added, from,
                store_strerror(rc));
    if ((rc != STORE_OK && rc != STORE_ENOTFOUND) || x.err != 0)
        return x.added > 0 ? x.added : -1;
    return x.added;
}

static int first_unseen_cb(void *ctx, const struct msg_ref *m)
{
    uint32_t *uid = ctx;
    if (!(m->flags & STORE_F_SEEN)) {
        *uid = m->uid;
        return 1;
    }
    return 0;
}

int cmd_select(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    char ext[sizeof(((struct mbox_loc *)0)->ext)];
    if (nargs < 1 || nargs > 2 || sess_mbox_arg(s, &args[0], ext, sizeof(ext)) != 0 ||
        (nargs == 2 && args[1].type != IMAP_ARG_LIST))
        return sess_tagged(s, cmd->tag, "BAD", "Invalid %s arguments", cmd->name);
    bool had = s->selected;
    sess_deselect(s);
    if (had)
        sess_puts(s, "* OK [CLOSED] Previous mailbox closed\r\n");
    struct mbox_loc loc;
    struct mbox_rec rec;
    if (sess_mbox_resolve(s, ext, &loc, &rec) != 0)
        return sess_tagged(s, cmd->tag, "NO", "[NONEXISTENT] Mailbox does not exist");
    s->sel = loc;
    s->selrec = rec;
    s->snap = inst_snapshot_id(s->in);
    if (sess_view_extend(s, 1) < 0) {
        sess_deselect(s);
        return sess_tagged(s, cmd->tag, "NO", "[SERVERBUG] Cannot read mailbox");
    }
    s->selected = true;
    s->state = S_SELECTED;
    if (loc.other)
        log_info("audit: %s/%s opened %s's archive: %s", s->who.instance, s->who.user,
                 loc.owner, loc.name);
    uint32_t next = sess_view_last_uid(s) + 1;
    if (next < rec.uidnext)
        next = rec.uidnext;
    sess_puts(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    sess_puts(s, "* OK [PERMANENTFLAGS ()] Read-only archive\r\n");
    sess_printf(s, "* %zu EXISTS\r\n", s->nuids);
    if (!s->rev2) {
        sess_puts(s, "* 0 RECENT\r\n");
        uint32_t unseen_uid = 0;
        if (rec.unseen > 0)
            inst_msgs_walk(s->in, rec.id, 1, first_unseen_cb, &unseen_uid);
        if (unseen_uid != 0) {
            size_t i = sess_view_lower_bound(s, unseen_uid);
            if (i < s->nuids && sess_view_uid(s, i) == unseen_uid)
                sess_printf(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
        }
    }
    sess_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", rec.uidvalidity);
    sess_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", next);
    if (s->rev2) {
        buf_reset(&s->out);
        buf_puts(&s->out, "* LIST () \"/\" ");
        sess_append_mbox(s, &s->out, ext);
        buf_puts(&s->out, "\r\n");
        sess_write(s, s->out.data, s->out.len);
    }
    return sess_tagged(s, cmd->tag, "OK", "[READ-ONLY] %s completed", cmd->name);
}

int cmd_check(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
              size_t nargs, bool uid)
{
    return sess_tagged(s, cmd->tag, "OK", "Check completed");
}

/* CLOSE and UNSELECT: nothing to expunge in a read-only mailbox. */
int cmd_close(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
              size_t nargs, bool uid)
{
    if (nargs != 0)
        return sess_tagged(s, cmd->tag, "BAD", "%s takes no arguments", cmd->name);
    sess_deselect(s);
    return sess_tagged(s, cmd->tag, "OK", "%s completed", cmd->name);
}

/* ---- message sets ---- */

int view_iter_init(struct session *s, const struct imap_arg *a, bool uid,
                   struct view_iter *it, const char **err)
{
    memset(it, 0, sizeof(*it));
    it->uid = uid;
    if (a->type != IMAP_ARG_ATOM) {
        *err = "Invalid sequence set";
        return -1;
    }
    if (seqset_parse(a->s, a->len, 0, &it->set, err) != 0)
        return -1;
    if (it->set.dollar) {
        /* `$` is the saved result: UIDs, whatever the command */
        it->uid = true;
        if (seqset_from_sorted(s->saved, s->nsaved, &it->set) != 0) {
            *err = "Out of memory";
            return -1;
        }
        return 0;
    }
    if (!uid) {
        /* a number past the end is an error; a range with `*` never is
         * (1:* on an empty mailbox is simply empty) */
        for (size_t i = 0; i < it->set.n; i++) {
            const struct seqset_range *r = &it->set.r[i];
            if (r->lo == SEQSET_STAR || r->hi == SEQSET_STAR)
                continue;
            if (r->lo > s->nuids || r->hi > s->nuids) {
                seqset_free(&it->set);
                *err = "Invalid message sequence number";
                return -1;
            }
        }
        seqset_resolve(&it->set, (uint32_t)s->nuids);
    } else {
        seqset_resolve(&it->set, sess_view_last_uid(s));
    }
    return 0;
}

bool view_iter_next(struct session *s, struct view_iter *it, size_t *idx)
{
    while (it->ri < it->set.n) {
        const struct seqset_range *r = &it->set.r[it->ri];
        if (!it->started) {
            it->idx = it->uid ? sess_view_lower_bound(s, r->lo) : (size_t)r->lo - 1;
            it->started = true;
        }
        if (it->idx < s->nuids) {
            uint32_t v = it->uid ? sess_view_uid(s, it->idx) : (uint32_t)(it->idx + 1);
            if (v <= r->hi) {
                *idx = it->idx++;
                return true;
            }
        }
        it->ri++;
        it->started = false;
    }
    return false;
}

void view_iter_free(struct view_iter *it)
{
    seqset_free(&it->set);
}

/* ---- shared formatting ---- */

void sess_fmt_date(char out[96], int64_t t, int32_t tz_min)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (tz_min > 14 * 60 || tz_min < -14 * 60)
        tz_min = 0;
    time_t lt = (time_t)(t + (int64_t)tz_min * 60);
    struct tm tm;
    if (gmtime_r(&lt, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    int a = tz_min < 0 ? -tz_min : tz_min;
    snprintf(out, 96, "%02d-%s-%04d %02d:%02d:%02d %c%02d%02d", tm.tm_mday,
             mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
             tz_min < 0 ? '-' : '+', a / 60, a % 60);
}

int sess_append_flags(struct buf *out, uint32_t flags)
{
    const char *sep = "";
    buf_putc(out, '(');
    if (flags & STORE_F_ANSWERED) {
        buf_puts(out, "\\Answered");
        sep = " ";
    }
    if (flags & STORE_F_FLAGGED) {
        buf_printf(out, "%s\\Flagged", sep);
        sep = " ";
    }
    if (flags & STORE_F_SEEN) {
        buf_printf(out, "%s\\Seen", sep);
        sep = " ";
    }
    if (flags & STORE_F_DRAFT)
        buf_printf(out, "%s\\Draft", sep);
    return buf_putc(out, ')');
}
