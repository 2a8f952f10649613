/* session.c — the IMAP session of one connection: reads commands (lines
 * and literals under the limits), dispatches them to the cmd_*.c files,
 * sends untagged updates, and logs the session. */
#include "server/session_int.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mutf7.h"
#include "server/conn.h"
#include "server/log.h"

#define WAIT_SLICE_MS 5000   /* re-check the shutdown flag this often */
#define IDLE_RELEASE_MS 100  /* no command for this long: the session is idle */
#define PREAUTH_LITERAL_MAX 16384

/* ---- output ---- */

int sess_write(struct session *s, const void *p, size_t n)
{
    if (s->capture)
        return buf_append(s->capture, p, n) == 0 ? 0 : -1;
    s->pending += n;
    return conn_write(s->c, p, n) == CONN_OK ? 0 : -1;
}

int sess_puts(struct session *s, const char *str)
{
    return sess_write(s, str, strlen(str));
}

int sess_printf(struct session *s, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(tmp))
        n = (int)sizeof(tmp) - 1;
    return sess_write(s, tmp, (size_t)n);
}

int sess_flush(struct session *s)
{
    s->pending = 0;
    return conn_flush(s->c) == CONN_OK ? 0 : -1;
}

int sess_maybe_flush(struct session *s)
{
    if (s->pending < SESS_FLUSH_AT)
        return 0;
    bool had = s->txn;
    sess_rd_end(s);
    int rc = sess_flush(s);
    if (had && sess_rd_begin(s) != 0)
        return -1;
    return rc;
}

int sess_rd_begin(struct session *s)
{
    if (s->in == NULL || s->txn)
        return 0;
    if (inst_rd_begin(s->in) != STORE_OK)
        return -1;
    s->txn = true;
    return 0;
}

void sess_rd_end(struct session *s)
{
    if (s->in != NULL && s->txn) {
        inst_rd_end(s->in);
        s->txn = false;
    }
}

bool sess_shutdown(const struct session *s)
{
    return s->env->shutdown_flag != NULL && *s->env->shutdown_flag;
}

static int bye(struct session *s, const char *text)
{
    sess_printf(s, "* BYE %s\r\n", text);
    sess_flush(s);
    return CMD_END;
}

int sess_updates(struct session *s)
{
    if (s->in == NULL)
        return CMD_OK;
    bool opened = !s->txn;
    if (sess_rd_begin(s) != 0)
        return CMD_OK;   /* transient store trouble: try again next time */
    int rc = CMD_OK;
    struct user_rec u;
    int r1 = inst_user_get(s->in, s->who.authn, &u);
    bool gone = r1 == STORE_ENOTFOUND || (r1 == STORE_OK && u.disabled);
    if (!gone && strcmp(s->who.user, s->who.authn) != 0) {
        int r2 = inst_user_get(s->in, s->who.user, &u);
        gone = r2 == STORE_ENOTFOUND || (r2 == STORE_OK && u.disabled);
    }
    if (gone) {
        log_info("user %s/%s disabled or removed: ending session", s->who.instance,
                 s->who.authn);
        rc = bye(s, "Account disabled");
        goto out;
    }
    if (s->selected) {
        uint64_t snap = inst_snapshot_id(s->in);
        if (snap != s->snap) {
            s->snap = snap;
            uint32_t from = s->nuids ? sess_view_last_uid(s) + 1 : 1;
            long added = from != 0 ? sess_view_extend(s, from) : 0;
            if (added > 0)
                sess_printf(s, "* %zu EXISTS\r\n", s->nuids);
        }
    }
out:
    if (opened)
        sess_rd_end(s);
    return rc;
}

int sess_tagged(struct session *s, const char *tag, const char *status, const char *fmt, ...)
{
    if (s->state != S_NOTAUTH && s->state != S_LOGOUT && sess_updates(s) == CMD_END)
        return CMD_END;
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sess_printf(s, "%s %s %s\r\n", tag, status, tmp);
    return CMD_OK;
}

int sess_append_mbox(struct session *s, struct buf *out, const char *ext)
{
    if (s->utf8)
        return imap_append_string(out, ext, strlen(ext), true);
    struct buf enc;
    buf_init(&enc, 4 * STORE_MBOX_MAX + 1024);
    int rc = mutf7_encode(ext, strlen(ext), &enc);
    if (rc == 0)
        rc = imap_append_string(out, (const char *)enc.data, enc.len, false);
    else   /* not UTF-8 in the store: send the octets rather than nothing */
        rc = imap_append_string(out, ext, strlen(ext), false);
    buf_free(&enc);
    return rc;
}

void sess_deselect(struct session *s)
{
    s->selected = false;
    s->nuids = 0;
    free(s->runs);   /* a folder with many runs should not keep them */
    s->runs = NULL;
    s->nruns = s->capruns = s->run_hint = 0;
    free(s->vcache);
    s->vcache = NULL;
    s->nvcache = 0;
    free(s->saved);
    s->saved = NULL;
    s->nsaved = 0;
    if (s->state == S_SELECTED)
        s->state = S_AUTH;
}

void sess_capability(struct session *s, struct buf *out)
{
    buf_puts(out, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT "
                  "CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH SEARCHRES BINARY "
                  "STATUS=SIZE UTF8=ACCEPT");
    if (s->state == S_NOTAUTH) {
        if (conn_tls_available(s->c))
            buf_puts(out, " STARTTLS");
        if (!auth_plaintext_allowed(s->auth) && !conn_tls_active(s->c)) {
            buf_puts(out, " LOGINDISABLED");
        } else {
            const char *m = auth_mechs(s->auth);
            while (m != NULL && *m != '\0') {
                while (*m == ' ')
                    m++;
                size_t n = strcspn(m, " ");
                if (n > 0)
                    buf_printf(out, " AUTH=%.*s", (int)n, m);
                m += n;
            }
        }
    } else if (!conn_compress_active(s->c)) {
        buf_puts(out, " COMPRESS=DEFLATE");
    }
}

/* ---- base64 (AUTHENTICATE) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sess_b64_encode(const unsigned char *in, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        char q[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                     i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
        if (buf_append(out, q, 4) != 0)
            return -1;
    }
    return 0;
}

int sess_b64_decode(const char *in, size_t n, struct buf *out)
{
    uint32_t v = 0;
    unsigned bits = 0, pad = 0;
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *p = in[i] != '\0' ? strchr(b64, in[i]) : NULL;
        if (in[i] == '=') {
            if (i + 2 < n)   /* '=' only in the last two positions */
                return -1;
            pad++;
            continue;
        }
        if (p == NULL || pad > 0)
            return -1;
        v = (v << 6) | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (buf_putc(out, (unsigned char)(v >> bits)) != 0)
                return -1;
            v &= (1u << bits) - 1;
        }
    }
    return 0;
}

/* ---- command table ---- */

struct cmd_def {
    const char *name;
    unsigned states;
    cmd_fn fn;
    bool uid_ok;      /* may follow UID */
};

#define ANY (S_NOTAUTH | S_AUTH | S_SELECTED)
#define AUTHED (S_AUTH | S_SELECTED)

static const struct cmd_def cmds[] = {
    {"CAPABILITY", ANY, cmd_capability, false},
    {"NOOP", ANY, cmd_noop, false},
    {"LOGOUT", ANY, cmd_logout, false},
    {"ID", ANY, cmd_id, false},
    {"STARTTLS", S_NOTAUTH, cmd_starttls, false},
    {"AUTHENTICATE", S_NOTAUTH, cmd_authenticate, false},
    {"LOGIN", S_NOTAUTH, cmd_login, false},
    {"ENABLE", AUTHED, cmd_enable, false},
    {"COMPRESS", AUTHED, cmd_compress, false},
    {"NAMESPACE", AUTHED, cmd_namespace, false},
    {"LIST", AUTHED, cmd_list, false},
    {"LSUB", AUTHED, cmd_lsub, false},
    {"STATUS", AUTHED, cmd_status, false},
    {"SUBSCRIBE", AUTHED, cmd_subscribe, false},
    {"UNSUBSCRIBE", AUTHED, cmd_subscribe, false},
    {"CREATE", AUTHED, cmd_cannot, false},
    {"DELETE", AUTHED, cmd_cannot, false},
    {"RENAME", AUTHED, cmd_cannot, false},
    {"APPEND", AUTHED, cmd_cannot, false},
    {"SELECT", AUTHED, cmd_select, false},
    {"EXAMINE", AUTHED, cmd_select, false},
    {"IDLE", AUTHED, cmd_idle, false},
    {"CHECK", S_SELECTED, cmd_check, false},
    {"CLOSE", S_SELECTED, cmd_close, false},
    {"UNSELECT", S_SELECTED, cmd_close, false},
    {"EXPUNGE", S_SELECTED, cmd_cannot, true},
    {"COPY", S_SELECTED, cmd_cannot, true},
    {"MOVE", S_SELECTED, cmd_cannot, true},
    {"FETCH", S_SELECTED, cmd_fetch, true},
    {"STORE", S_SELECTED, cmd_store, true},
    {"SEARCH", S_SELECTED, cmd_search, true},
};

static const struct cmd_def *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcasecmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static int dispatch(struct session *s, const struct imap_cmd *cmd)
{
    const struct imap_arg *args = cmd->args;
    size_t nargs = cmd->nargs;
    bool uid = false;
    const struct cmd_def *d;
    if (strcmp(cmd->name, "UID") == 0) {
        if (nargs == 0 || args[0].type != IMAP_ARG_ATOM || args[0].len > IMAP_CMDNAME_MAX) {
            sess_tagged(s, cmd->tag, "BAD", "Missing UID command");
            return CMD_OK;
        }
        d = find_cmd(args[0].s);
        if (d == NULL || !d->uid_ok) {
            sess_tagged(s, cmd->tag, "BAD", "Unknown UID command");
            return CMD_OK;
        }
        uid = true;
        args++;
        nargs--;
    } else {
        d = find_cmd(cmd->name);
    }
    if (d == NULL) {
        sess_tagged(s, cmd->tag, "BAD", "Unknown command");
        return CMD_OK;
    }
    if ((d->states & s->state) == 0) {
        const char *why = s->state == S_NOTAUTH ? "Not authenticated"
                        : s->state == S_AUTH && (d->states & S_SELECTED) ? "No mailbox selected"
                        : "Not allowed now";
        sess_tagged(s, cmd->tag, "BAD", "%s", why);
        return CMD_OK;
    }
    return d->fn(s, cmd, args, nargs, uid);
}

/* ---- reading a command ---- */

enum rd_result { RD_CMD, RD_DONE, RD_END };

static bool line_is_append(const char *line, size_t len)
{
    const char *tag;
    size_t tl;
    if (!imap_line_tag(line, len, &tag, &tl))
        return false;
    return len - tl - 1 >= 7 && strncasecmp(line + tl + 1, "APPEND ", 7) == 0;
}

static void tagged_from_line(struct session *s, const char *line, size_t len,
                             const char *status, const char *text)
{
    const char *tag;
    size_t tl;
    if (imap_line_tag(line, len, &tag, &tl))
        sess_printf(s, "%.*s %s %s\r\n", (int)tl, tag, status, text);
    else
        sess_printf(s, "* %s %s\r\n", status, text);
}

/* The client went quiet (read_command: 100 ms without a command; IDLE:
 * every poll): give back what the last commands left mapped (store pages
 * of a SELECT or FETCH, freed heap), so that an idle session costs little
 * whatever the folder size. A busy session never pays for it. */
void sess_release_idle(struct session *s, bool trim_heap)
{
    bool had = s->txn;
    if (s->in != NULL && sess_rd_begin(s) == 0) {
        inst_release_pages(s->in);
        if (!had)
            sess_rd_end(s);
    }
    if (trim_heap)
        malloc_trim(0);
}

/* Read one whole command (lines and literals) into cmdbuf. RD_DONE: the
 * command was answered already (refused literal, APPEND); RD_END: the
 * session is over. */
static enum rd_result read_command(struct session *s, struct buf *line, struct buf *cmdbuf)
{
    const struct session_limits *lim = &s->env->lim;
    int idle_ms = s->state == S_NOTAUTH ? lim->preauth_timeout_ms : lim->idle_timeout_ms;
    int waited = 0;
    bool released = false;
    for (;;) {
        if (sess_shutdown(s)) {
            bye(s, "Server shutting down");
            return RD_END;
        }
        int slice = idle_ms - waited < WAIT_SLICE_MS ? idle_ms - waited : WAIT_SLICE_MS;
        if (slice <= 0) {
            bye(s, "Autologout; idle for too long");
            return RD_END;
        }
        if (!released && slice > IDLE_RELEASE_MS)
            slice = IDLE_RELEASE_MS;
        int r = conn_wait_readable(s->c, slice);
        if (r > 0)
            break;
        if (r == CONN_EINTR || sess_shutdown(s)) {
            bye(s, "Server shutting down");
            return RD_END;
        }
        if (r < 0)
            return RD_END;
        waited += slice;
        if (!released) {
            sess_release_idle(s, true);
            released = true;
        }
    }
    buf_reset(cmdbuf);
    bool first = true, discard = false;
    for (;;) {
        int rc = conn_read_line(s->c, line, lim->max_line, lim->cmd_timeout_ms);
        if (rc == CONN_ETOOLONG) {
            bye(s, "Line too long");
            return RD_END;
        }
        if (rc == CONN_ETIMEOUT) {
            bye(s, "Timeout reading command");
            return RD_END;
        }
        if (rc == CONN_EINTR) {
            bye(s, "Server shutting down");
            return RD_END;
        }
        if (rc != CONN_OK)
            return RD_END;
        const char *l = (const char *)line->data;
        if (first && line_is_append(l, line->len))
            discard = true;
        if (!discard) {
            if (cmdbuf->len + line->len + 2 > lim->max_command + 64) {
                /* many small literals: the client may still be sending
                 * non-synchronising ones, so there is no safe way back */
                bye(s, "[TOOBIG] Command too long");
                return RD_END;
            }
            buf_append(cmdbuf, line->data, line->len);
        }
        struct imap_lit lit;
        if (!imap_line_literal(l, line->len, &lit)) {
            if (discard) {
                const char *src = first ? l : (const char *)cmdbuf->data;
                size_t srclen = first ? line->len : cmdbuf->len;
                tagged_from_line(s, src, srclen, "NO", "[CANNOT] The archive is read-only");
                return RD_DONE;
            }
            return RD_CMD;
        }
        if (first && discard)
            buf_append(cmdbuf, line->data, line->len < 256 ? line->len : 256);   /* for the tag */
        first = false;
        /* before authentication only small literals (a user name or a
         * password) have any use */
        uint64_t max_lit = s->state == S_NOTAUTH && lim->max_literal > PREAUTH_LITERAL_MAX
                               ? PREAUTH_LITERAL_MAX
                               : lim->max_literal;
        bool too_big = lit.size > max_lit ||
                       (!discard && cmdbuf->len + lit.size > lim->max_command);
        if (too_big || discard) {
            if (!lit.nonsync) {
                /* the client waits for "+": refusing costs nothing */
                tagged_from_line(s, (const char *)cmdbuf->data, cmdbuf->len,
                                 discard && !too_big ? "NO" : "BAD",
                                 discard && !too_big ? "[CANNOT] The archive is read-only"
                                                     : "[TOOBIG] Literal too large");
                return RD_DONE;
            }
            uint64_t n = lit.size < max_lit ? lit.size : max_lit;
            int drc = conn_read_exact(s->c, NULL, n, lim->cmd_timeout_ms);
            /* a client that announced a huge literal and stalls still
             * learns why it is dropped */
            if (too_big || drc == CONN_ETIMEOUT) {
                bye(s, too_big ? "[TOOBIG] Literal too large" : "Timeout reading literal");
                return RD_END;
            }
            if (drc != CONN_OK)
                return RD_END;
            continue;   /* APPEND: literal dropped, read the rest of the command */
        }
        if (!lit.nonsync) {
            sess_puts(s, "+ OK\r\n");
            if (sess_flush(s) != 0)
                return RD_END;
        }
        buf_append(cmdbuf, "\r\n", 2);
        rc = conn_read_exact(s->c, cmdbuf, lit.size, lim->cmd_timeout_ms);
        if (rc == CONN_ETIMEOUT) {
            bye(s, "Timeout reading literal");
            return RD_END;
        }
        if (rc != CONN_OK)
            return RD_END;
    }
}

/* ---- the session ---- */

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void apply_default_limits(struct session_limits *l)
{
    if (l->max_line == 0)
        l->max_line = 65536;
    if (l->max_literal == 0)
        l->max_literal = 64u << 20;
    if (l->max_command == 0)
        l->max_command = 64u << 20;
    if (l->max_nesting == 0)
        l->max_nesting = 32;
    if (l->cmd_timeout_ms <= 0)
        l->cmd_timeout_ms = 60000;
    if (l->idle_timeout_ms <= 0)
        l->idle_timeout_ms = 30 * 60 * 1000;
    if (l->preauth_timeout_ms <= 0)
        l->preauth_timeout_ms = 60000;
}

void session_run(struct conn *c, const struct session_env *env_in)
{
    struct session_env env = *env_in;
    apply_default_limits(&env.lim);
    struct session s;
    memset(&s, 0, sizeof(s));
    s.c = c;
    s.env = &env;
    s.state = S_NOTAUTH;
    s.auth = env.auth;
    if (s.auth == NULL) {
        if (auth_ctx_new(c, conn_tls_active(c), &s.auth_own) != 0) {
            log_err("cannot set up authentication");
            conn_puts(c, "* BYE Internal error\r\n");
            conn_flush(c);
            return;
        }
        s.auth = s.auth_own;
    }
    buf_init(&s.out, env.lim.max_line + 4096);
    struct buf line, cmdbuf;
    buf_init(&line, env.lim.max_line + 1);
    buf_init(&cmdbuf, env.lim.max_command + env.lim.max_line + 4096);

    buf_puts(&s.out, "* OK [CAPABILITY ");
    sess_capability(&s, &s.out);
    buf_printf(&s.out, "] %s Coffer archive ready\r\n",
               env.greeting_host ? env.greeting_host : "");
    sess_write(&s, s.out.data, s.out.len);
    sess_flush(&s);

    struct imap_parse_limits plim = {.max_nesting = env.lim.max_nesting, .max_args = 0};
    while (s.state != S_LOGOUT) {
        enum rd_result rr = read_command(&s, &line, &cmdbuf);
        if (rr == RD_END)
            break;
        s.ncmds++;
        if (env.stat_commands != NULL)
            (*env.stat_commands)++;
        if (rr == RD_CMD) {
            struct imap_cmd cmd;
            const char *err = NULL;
            int rc = imap_parse_command((const char *)cmdbuf.data, cmdbuf.len, &plim, &cmd, &err);
            if (rc != 0) {
                if (cmd.have_tag)
                    sess_tagged(&s, cmd.tag, "BAD", "Error in IMAP command: %s", err);
                else
                    sess_printf(&s, "* BAD %s\r\n", err ? err : "Invalid command");
            } else {
                if (s.in != NULL && sess_rd_begin(&s) != 0) {
                    sess_tagged(&s, cmd.tag, "NO", "[UNAVAILABLE] Store unavailable");
                    rc = CMD_OK;
                } else {
                    rc = dispatch(&s, &cmd);
                }
                sess_rd_end(&s);
                if (rc == CMD_END)
                    s.state = S_LOGOUT;
            }
            imap_cmd_free(&cmd);
        }
        /* commands can be big; do not keep their memory while idle */
        if (cmdbuf.cap > 65536) {
            buf_free(&cmdbuf);
            buf_init(&cmdbuf, env.lim.max_command + env.lim.max_line + 4096);
        }
        if (sess_flush(&s) != 0)
            break;
    }
    sess_rd_end(&s);
    /* without a daemon to write the connection's end line, write it here */
    if (s.logged_in_once && env.stat_user == NULL)
        log_info("logout %s/%s in=%llu out=%llu commands=%llu duration=%.1fs",
                 s.who.instance, s.who.authn, (unsigned long long)conn_bytes_in(c),
                 (unsigned long long)conn_bytes_out(c), (unsigned long long)s.ncmds,
                 elapsed_s(&s.t_login));
    sess_deselect(&s);
    if (s.in != NULL)
        inst_close(s.in);
    if (s.auth_own != NULL)
        auth_ctx_free(s.auth_own);
    buf_free(&s.out);
    buf_free(&line);
    buf_free(&cmdbuf);
}
