/* cmd_auth.c — CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE, LOGIN,
 * ID (RFC 2971), ENABLE (RFC 5161), COMPRESS (RFC 4978). */
#include "server/session_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server/conn.h"
#include "server/log.h"

#define SASL_LINE_MAX 16384   /* one AUTHENTICATE response line */

int cmd_capability(struct session *s, const struct imap_cmd *cmd,
                   const struct imap_arg *args, size_t nargs, bool uid)
{
    if (nargs != 0)
        return sess_tagged(s, cmd->tag, "BAD", "CAPABILITY takes no arguments");
    buf_reset(&s->out);
    buf_puts(&s->out, "* CAPABILITY ");
    sess_capability(s, &s->out);
    buf_puts(&s->out, "\r\n");
    sess_write(s, s->out.data, s->out.len);
    return sess_tagged(s, cmd->tag, "OK", "Capability completed");
}

int cmd_noop(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
             size_t nargs, bool uid)
{
    return sess_tagged(s, cmd->tag, "OK", "%s completed", cmd->name);
}

int cmd_logout(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    sess_puts(s, "* BYE Logging out\r\n");
    sess_printf(s, "%s OK Logout completed\r\n", cmd->tag);
    sess_flush(s);
    return CMD_END;
}

int cmd_starttls(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
                 size_t nargs, bool uid)
{
    if (conn_tls_active(s->c))
        return sess_tagged(s, cmd->tag, "BAD", "TLS is already active");
    if (!conn_tls_available(s->c))
        return sess_tagged(s, cmd->tag, "NO", "TLS is not configured");
    sess_printf(s, "%s OK Begin TLS negotiation now\r\n", cmd->tag);
    if (sess_flush(s) != 0)
        return CMD_END;
    const char *err = "unknown error";
    if (conn_starttls(s->c, &err) != CONN_OK) {
        log_info("STARTTLS failed: %s", err);
        return CMD_END;
    }
    /* Everything learnt before TLS is forgotten (RFC 3501 6.2.1); the
     * conn already dropped pipelined plaintext. Authentication gets a
     * context that knows the channel is now protected. */
    struct auth_ctx *a = NULL;
    if (auth_ctx_new(s->c, true, &a) != 0) {
        log_err("cannot set up authentication after STARTTLS");
        sess_puts(s, "* BYE Internal error\r\n");
        return CMD_END;
    }
    if (s->auth_own != NULL)
        auth_ctx_free(s->auth_own);
    s->auth_own = a;
    s->auth = a;
    s->rev2 = s->utf8 = false;
    return CMD_OK;
}

/* An auth failure: same answer for every cause, BYE after too many. */
static int auth_failure(struct session *s, const char *tag)
{
    bool must_bye = auth_failed(s->auth);
    sess_printf(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed\r\n", tag);
    if (must_bye) {
        sess_puts(s, "* BYE Too many authentication failures\r\n");
        sess_flush(s);
        return CMD_END;
    }
    return CMD_OK;
}

static int auth_result(struct session *s, const char *tag, enum auth_status st,
                       const struct auth_result *res)
{
    switch (st) {
    case AUTH_OK:
        return sess_login_done(s, tag, res);
    case AUTH_FAIL:
        return auth_failure(s, tag);
    case AUTH_BADMECH:
        return sess_tagged(s, tag, "NO", "Unsupported authentication mechanism");
    case AUTH_BADPROTO:
        return sess_tagged(s, tag, "BAD", "Invalid authentication data");
    default:
        return sess_tagged(s, tag, "NO", "[UNAVAILABLE] Authentication is unavailable");
    }
}

static bool plaintext_refused(struct session *s)
{
    return !conn_tls_active(s->c) && !auth_plaintext_allowed(s->auth);
}

int cmd_login(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
              size_t nargs, bool uid)
{
    if (nargs != 2 || !imap_arg_is_astring(&args[0]) || !imap_arg_is_astring(&args[1]))
        return sess_tagged(s, cmd->tag, "BAD", "LOGIN needs a user name and a password");
    if (plaintext_refused(s))
        return sess_tagged(s, cmd->tag, "NO",
                           "[PRIVACYREQUIRED] Use STARTTLS or port 993 first");
    struct auth_result res;
    memset(&res, 0, sizeof(res));
    enum auth_status st = auth_login(s->auth, args[0].s, args[0].len, args[1].s, args[1].len,
                                     &res);
    if (st == AUTH_CONTINUE)
        st = AUTH_ERROR;
    return auth_result(s, cmd->tag, st, &res);
}

int cmd_authenticate(struct session *s, const struct imap_cmd *cmd,
                     const struct imap_arg *args, size_t nargs, bool uid)
{
    if (nargs < 1 || nargs > 2 || args[0].type != IMAP_ARG_ATOM || args[0].len >= 32 ||
        (nargs == 2 && args[1].type != IMAP_ARG_ATOM))
        return sess_tagged(s, cmd->tag, "BAD", "AUTHENTICATE needs a mechanism");
    if (plaintext_refused(s))
        return sess_tagged(s, cmd->tag, "NO",
                           "[PRIVACYREQUIRED] Use STARTTLS or port 993 first");
    char mech[32];
    for (size_t i = 0; i <= args[0].len; i++)
        mech[i] = (char)(args[0].s[i] >= 'a' && args[0].s[i] <= 'z' ? args[0].s[i] - 32
                                                                     : args[0].s[i]);
    struct buf data, line;
    buf_init(&data, SASL_LINE_MAX);
    buf_init(&line, SASL_LINE_MAX);
    int rc = CMD_OK;
    bool has_ir = nargs == 2;
    if (has_ir && !(args[1].len == 1 && args[1].s[0] == '=') &&
        sess_b64_decode(args[1].s, args[1].len, &data) != 0) {
        rc = sess_tagged(s, cmd->tag, "BAD", "Invalid base64 in initial response");
        goto out;
    }
    struct auth_result res;
    memset(&res, 0, sizeof(res));
    const unsigned char *chal = NULL;
    size_t chal_len = 0;
    enum auth_status st = auth_start(s->auth, mech, data.data, data.len, has_ir, &chal,
                                     &chal_len, &res);
    while (st == AUTH_CONTINUE) {
        buf_reset(&s->out);
        buf_puts(&s->out, "+ ");
        sess_b64_encode(chal, chal_len, &s->out);
        buf_puts(&s->out, "\r\n");
        sess_write(s, s->out.data, s->out.len);
        if (sess_flush(s) != 0) {
            rc = CMD_END;
            goto out;
        }
        int r = conn_read_line(s->c, &line, SASL_LINE_MAX, s->env->lim.cmd_timeout_ms);
        if (r == CONN_ETOOLONG) {
            rc = sess_tagged(s, cmd->tag, "BAD", "Authentication response too long");
            goto out;
        }
        if (r != CONN_OK) {
            rc = CMD_END;
            goto out;
        }
        if (line.len == 1 && line.data[0] == '*') {
            rc = sess_tagged(s, cmd->tag, "BAD", "Authentication cancelled");
            goto out;
        }
        buf_reset(&data);
        if (sess_b64_decode((const char *)line.data, line.len, &data) != 0) {
            rc = sess_tagged(s, cmd->tag, "BAD", "Invalid base64 in response");
            goto out;
        }
        st = auth_step(s->auth, data.data, data.len, &chal, &chal_len, &res);
    }
    rc = auth_result(s, cmd->tag, st, &res);
out:
    buf_free(&data);
    buf_free(&line);
    return rc;
}

int sess_login_done(struct session *s, const char *tag, const struct auth_result *res)
{
    s->who = *res;
    const struct session_env *env = s->env;
    if (env->confine_instance != NULL &&
        env->confine_instance(env->confine_ctx, res->instance) != 0) {
        log_err("cannot confine session to instance %s", res->instance);
        sess_printf(s, "%s NO [UNAVAILABLE] Internal error\r\n* BYE Internal error\r\n", tag);
        return CMD_END;
    }
    const char *err = "unknown error";
    if (inst_open(&env->store, res->instance, false, &s->in, &err) != STORE_OK) {
        log_err("cannot open instance %s: %s", res->instance, err);
        sess_printf(s, "%s NO [UNAVAILABLE] Archive unavailable\r\n* BYE Try later\r\n", tag);
        s->in = NULL;
        return CMD_END;
    }
    if (env->test_open_after_login != NULL) {
        /* "w:PATH" tries opening PATH for writing */
        const char *path = env->test_open_after_login;
        bool wr = strncmp(path, "w:", 2) == 0;
        int fd = open(wr ? path + 2 : path, wr ? O_WRONLY : O_RDONLY);
        log_info("test hook: open(%s) after login: %s", env->test_open_after_login,
                 fd >= 0 ? "SUCCEEDED" : strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    s->state = S_AUTH;
    s->logged_in_once = true;
    clock_gettime(CLOCK_MONOTONIC, &s->t_login);
    if (env->stat_user != NULL && env->stat_user_len > 0)
        snprintf(env->stat_user, env->stat_user_len, "%s/%s", res->instance, res->authn);
    /* the login line itself (mechanism, TLS) is logged by server/auth.c */
    if (strcmp(res->user, res->authn) != 0)
        log_info("audit: %s/%s acts as %s (authzid)", res->instance, res->authn, res->user);
    /* sess_rd_begin(), keeping the store's reason for the log */
    int brc = s->txn ? STORE_OK : inst_rd_begin(s->in);
    if (brc != STORE_OK) {
        log_err("cannot read instance %s: %s", res->instance, store_strerror(brc));
        sess_printf(s, "%s NO [UNAVAILABLE] Archive unavailable\r\n* BYE Try later\r\n", tag);
        return CMD_END;
    }
    s->txn = true;
    buf_reset(&s->out);
    buf_printf(&s->out, "%s OK [CAPABILITY ", tag);
    sess_capability(s, &s->out);
    buf_puts(&s->out, "] Logged in\r\n");
    sess_write(s, s->out.data, s->out.len);
    return CMD_OK;
}

/* ID: log what the client says about itself, answer with who we are. */
int cmd_id(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
           size_t nargs, bool uid)
{
    if (nargs != 1)
        return sess_tagged(s, cmd->tag, "BAD", "ID needs one argument");
    const struct imap_arg *a = &args[0];
    if (a->type == IMAP_ARG_LIST) {
        if (a->nlist % 2 != 0 || a->nlist > 60)
            return sess_tagged(s, cmd->tag, "BAD", "Invalid ID parameter list");
        char info[512];
        size_t used = 0;
        info[0] = '\0';
        for (size_t i = 0; i < a->nlist; i += 2) {
            const struct imap_arg *k = &a->list[i], *v = &a->list[i + 1];
            if (!imap_arg_is_string(k) || k->len > 30 || v->type == IMAP_ARG_LIST ||
                v->len > 1024)
                return sess_tagged(s, cmd->tag, "BAD", "Invalid ID parameter");
            if (v->type == IMAP_ARG_ATOM && !imap_arg_eq(v, "NIL"))
                return sess_tagged(s, cmd->tag, "BAD", "Invalid ID value");
            if (used < sizeof(info) - 1) {
                int n = snprintf(info + used, sizeof(info) - used, "%s%.*s=%.*s",
                                 used ? " " : "", (int)k->len, k->s,
                                 (int)(v->len > 64 ? 64 : v->len), v->s);
                if (n > 0)
                    used += (size_t)n;
                if (used >= sizeof(info))
                    used = sizeof(info) - 1;
            }
        }
        for (size_t i = 0; i < used; i++)   /* keep the log line one clean line */
            if ((unsigned char)info[i] < 0x20 || info[i] == 0x7f)
                info[i] = '?';
        if (used > 0)
            log_info("client id: %s", info);
    } else if (!imap_arg_eq(a, "NIL")) {
        return sess_tagged(s, cmd->tag, "BAD", "ID needs a list or NIL");
    }
    sess_puts(s, "* ID (\"name\" \"Coffer\" \"version\" \"" PACKAGE_VERSION "\")\r\n");
    return sess_tagged(s, cmd->tag, "OK", "ID completed");
}

int cmd_enable(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
               size_t nargs, bool uid)
{
    if (nargs == 0)
        return sess_tagged(s, cmd->tag, "BAD", "ENABLE needs capabilities");
    bool rev2 = false, utf8 = false;
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].type != IMAP_ARG_ATOM)
            return sess_tagged(s, cmd->tag, "BAD", "Invalid capability");
        if (imap_arg_eq(&args[i], "IMAP4rev2"))
            rev2 = true;
        else if (imap_arg_eq(&args[i], "UTF8=ACCEPT"))
            utf8 = true;
    }
    /* ENABLED lists only what this command turned on (RFC 5161) */
    sess_puts(s, "* ENABLED");
    if (rev2 && !s->rev2) {
        s->rev2 = s->utf8 = true;
        sess_puts(s, " IMAP4rev2");
    }
    /* RFC 6855: mailbox names in UTF-8 from now on; message headers are
     * served as stored anyway (8-bit included), nothing to downgrade */
    if (utf8 && !s->utf8_accept) {
        s->utf8_accept = s->utf8 = true;
        sess_puts(s, " UTF8=ACCEPT");
    }
    sess_puts(s, "\r\n");
    return sess_tagged(s, cmd->tag, "OK", "Enabled");
}

int cmd_compress(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
                 size_t nargs, bool uid)
{
    if (nargs != 1 || !imap_arg_eq(&args[0], "DEFLATE"))
        return sess_tagged(s, cmd->tag, "BAD", "Only COMPRESS DEFLATE is supported");
    if (conn_compress_active(s->c))
        return sess_tagged(s, cmd->tag, "NO", "[COMPRESSIONACTIVE] Already compressing");
    if (sess_tagged(s, cmd->tag, "OK", "DEFLATE active") == CMD_END)
        return CMD_END;
    sess_rd_end(s);
    if (sess_flush(s) != 0)
        return CMD_END;
    const char *err = "unknown error";
    if (conn_compress(s->c, &err) != CONN_OK) {
        log_err("COMPRESS failed: %s", err);
        return CMD_END;
    }
    return CMD_OK;
}
