/* session_int.h — private to the session and its command files
 * (server/session.c, server/cmd_*.c, server/sess_mbox.c). */
#ifndef COFFER_SESSION_INT_H
#define COFFER_SESSION_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/buf.h"
#include "proto/imapparse.h"
#include "proto/seqset.h"
#include "server/auth.h"
#include "server/session.h"
#include "store/store.h"

enum sess_state { S_NOTAUTH = 1, S_AUTH = 2, S_SELECTED = 4, S_LOGOUT = 8 };

/* Return values of command handlers. */
#define CMD_OK 0        /* go on with the next command */
#define CMD_END (-1)    /* the session is over (LOGOUT, BYE, I/O error) */

#define SESS_FLUSH_AT 65536   /* flush long responses in pieces of this size */

/* A mailbox as the session names it: who owns it and the store name. */
struct mbox_loc {
    char owner[STORE_USER_MAX + 1];
    char name[STORE_MBOX_MAX + 1];     /* store name, UTF-8 */
    char ext[STORE_MBOX_MAX + STORE_USER_MAX + 16];   /* client-visible, UTF-8 */
    bool other;                        /* under Users/ */
};

/* Consecutive UIDs uid, uid+1, ... uid+n-1 at view indexes idx...idx+n-1. */
struct uid_run {
    uint32_t idx, uid, n;
};

struct session {
    struct conn *c;
    const struct session_env *env;
    struct auth_ctx *auth;       /* env->auth, or our own after STARTTLS */
    struct auth_ctx *auth_own;   /* freed by us */
    enum sess_state state;
    struct auth_result who;
    struct inst *in;
    bool txn;                    /* read transaction open */
    bool rev2;                   /* ENABLE IMAP4rev2: ESEARCH, UTF-8 names, LIST in SELECT */
    bool utf8;                   /* mailbox names in UTF-8 on the wire */
    bool utf8_accept;            /* ENABLE UTF8=ACCEPT (RFC 6855) was sent */
    struct buf out;              /* scratch for one response line */
    struct buf *capture;         /* when set, output goes here (FETCH of one message) */
    size_t pending;              /* octets written since the last flush */
    /* selected mailbox: the session's own view */
    bool selected;
    struct mbox_loc sel;
    struct mbox_rec selrec;
    /* The view: seq i+1 has UID sess_view_uid(s, i). Archive folders never
     * expunge, so UIDs are a few ascending runs: memory does not grow with
     * the folder (one 12-octet run for a folder imported in one go). */
    struct uid_run *runs;
    size_t nruns, capruns;
    size_t run_hint;             /* last run used: sequential access is O(1) */
    size_t nuids;                /* messages in the view */
    /* SEARCH's one-UID-per-message copy of the view (sess_view_array),
     * kept between commands and extended as the view grows: rebuilt per
     * SEARCH it was a fresh 4-octet-per-message mapping, whose page faults
     * were most of an index-started SEARCH on a 1M folder (1.4-1.8 ms).
     * Dropped by sess_deselect. */
    uint32_t *vcache;
    size_t nvcache;
    uint64_t snap;               /* snapshot id when the view was last refreshed */
    /* SEARCHRES `$` (sorted UIDs) */
    uint32_t *saved;
    size_t nsaved;
    /* accounting */
    uint64_t ncmds;
    struct timespec t_login;
    bool logged_in_once;
};

/* ---- output (server/session.c) ---- */
int sess_write(struct session *s, const void *p, size_t n);
int sess_puts(struct session *s, const char *str);
int sess_printf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Flush when enough output is pending; drops and renews the read txn
 * around the (possibly blocking) write so it is never held by a slow
 * client. Returns 0 or -1 (connection broken). */
int sess_maybe_flush(struct session *s);
int sess_flush(struct session *s);
/* Tagged completion; untagged updates (EXISTS, BYE for a disabled user)
 * are sent first. status is "OK", "NO" or "BAD". */
int sess_tagged(struct session *s, const char *tag, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Announce new mail and check the user is still enabled. Returns CMD_END
 * when the session must end (BYE already written). */
int sess_updates(struct session *s);
int sess_rd_begin(struct session *s);
void sess_rd_end(struct session *s);
void sess_capability(struct session *s, struct buf *out);
bool sess_shutdown(const struct session *s);
/* The client went quiet (session.c after 100 ms, IDLE after every poll):
 * drop the store pages this process mapped (they stay in the page cache)
 * and, with trim_heap, return freed heap to the system. */
void sess_release_idle(struct session *s, bool trim_heap);
/* Mailbox name for the wire (quoted string or literal). */
int sess_append_mbox(struct session *s, struct buf *out, const char *ext);
void sess_deselect(struct session *s);
/* Base64 helpers for AUTHENTICATE. */
int sess_b64_encode(const unsigned char *in, size_t n, struct buf *out);
int sess_b64_decode(const char *in, size_t n, struct buf *out);

/* ---- mailbox names (server/sess_mbox.c) ---- */
/* Decode a mailbox argument from the wire (mUTF-7 or UTF-8) and normalise
 * INBOX; -1 when it is not a valid name. */
int sess_mbox_arg(struct session *s, const struct imap_arg *a, char *ext, size_t extsz);
/* Map a client-visible name to owner + store name, checking access.
 * 0 ok, STORE_ENOTFOUND when there is no such selectable mailbox for this
 * user (no distinction between forbidden and absent). */
int sess_mbox_resolve(struct session *s, const char *ext, struct mbox_loc *loc,
                      struct mbox_rec *rec);

/* One entry of the user's visible hierarchy (LIST/LSUB). */
#define LE_NOSELECT 0x1u
#define LE_CHILDREN 0x2u
#define LE_SUBSCRIBED 0x4u
#define LE_SUB_IMPLIED 0x8u  /* \Noselect parent, "subscribed" only through a child */
struct list_ent {
    char *ext;               /* client-visible UTF-8 name */
    unsigned attrs;          /* LE_* */
    uint32_t special_use;
    struct mbox_rec rec;     /* valid when !(attrs & LE_NOSELECT) */
};
struct list_set {
    struct list_ent *v;
    size_t n, cap;
};
int sess_mbox_enumerate(struct session *s, struct list_set *out);
void list_set_free(struct list_set *ls);
/* IMAP LIST pattern match (% and *), '/' delimiter. */
bool sess_mbox_match(const char *pattern, const char *name);

/* ---- command handlers ---- */
typedef int (*cmd_fn)(struct session *s, const struct imap_cmd *cmd,
                      const struct imap_arg *args, size_t nargs, bool uid);
int cmd_capability(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_noop(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_logout(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_starttls(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_authenticate(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_login(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_id(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_enable(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_compress(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_namespace(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_list(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_lsub(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_status(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_subscribe(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_cannot(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_select(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_check(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_close(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_fetch(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_store(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_search(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int cmd_idle(struct session *, const struct imap_cmd *, const struct imap_arg *, size_t, bool);
int sess_login_done(struct session *s, const char *tag, const struct auth_result *res);

/* ---- message sets over the view (server/cmd_select.c) ---- */
struct view_iter {
    struct seqset set;
    bool uid;
    size_t ri;        /* current range */
    size_t idx;       /* next view index to consider within the range */
    bool started;
};
/* Parse a sequence-set argument against the current view (`$` included).
 * -1 with *err for a syntax error or a sequence number beyond the view. */
int view_iter_init(struct session *s, const struct imap_arg *a, bool uid,
                   struct view_iter *it, const char **err);
bool view_iter_next(struct session *s, struct view_iter *it, size_t *idx);
void view_iter_free(struct view_iter *it);
/* Load UIDs >= from into the view; returns messages added or -1. */
long sess_view_extend(struct session *s, uint32_t from);
/* UID of view index idx (< s->nuids); O(1) when called in ascending order. */
uint32_t sess_view_uid(struct session *s, size_t idx);
/* Highest UID in the view, 0 when empty. */
uint32_t sess_view_last_uid(const struct session *s);
/* First view index whose UID is >= uid (s->nuids when none). */
size_t sess_view_lower_bound(const struct session *s, uint32_t uid);
/* The view as a malloc'ed UID array (for SEARCH, freed after the command);
 * NULL when empty or out of memory (*oom tells which). */
const uint32_t *sess_view_array(struct session *s, bool *oom);

/* INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz" */
void sess_fmt_date(char out[96], int64_t t, int32_t tz_min);
int sess_append_flags(struct buf *out, uint32_t flags);

#endif
