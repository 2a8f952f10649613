/* cmd_idle.c — IDLE (RFC 2177): no read transaction is held while
 * waiting; the snapshot id is polled and new mail in the selected mailbox
 * announced as `* n EXISTS`. */
#include "server/session_int.h"

#include "server/conn.h"

#define IDLE_POLL_MS 2000
#define DONE_LINE_MAX 64

int cmd_idle(struct session *s, const struct imap_cmd *cmd, const struct imap_arg *args,
             size_t nargs, bool uid)
{
    if (nargs != 0)
        return sess_tagged(s, cmd->tag, "BAD", "IDLE takes no arguments");
    sess_rd_end(s);
    sess_puts(s, "+ idling\r\n");
    if (sess_flush(s) != 0)
        return CMD_END;
    int waited = 0;
    struct buf line;
    buf_init(&line, DONE_LINE_MAX + 1);
    int rc = CMD_OK;
    /* an IDLE session is the idle session: SELECT's pages need not stay */
    sess_release_idle(s, true);
    for (;;) {
        if (sess_shutdown(s)) {
            sess_puts(s, "* BYE Server shutting down\r\n");
            rc = CMD_END;
            break;
        }
        if (waited >= s->env->lim.idle_timeout_ms) {
            sess_puts(s, "* BYE Autologout; idle for too long\r\n");
            rc = CMD_END;
            break;
        }
        int r = conn_wait_readable(s->c, IDLE_POLL_MS);
        if (r < 0) {
            if (r == CONN_EINTR || sess_shutdown(s))
                sess_puts(s, "* BYE Server shutting down\r\n");
            rc = CMD_END;
            break;
        }
        if (r > 0) {
            int lr = conn_read_line(s->c, &line, DONE_LINE_MAX, s->env->lim.cmd_timeout_ms);
            if (lr != CONN_OK) {
                /* say why, as outside IDLE (session.c read_command) */
                if (lr == CONN_ETOOLONG)
                    sess_puts(s, "* BYE Line too long\r\n");
                else if (lr == CONN_ETIMEOUT)
                    sess_puts(s, "* BYE Timeout reading command\r\n");
                rc = CMD_END;
                break;
            }
            struct imap_arg a = {.type = IMAP_ARG_ATOM, .s = (const char *)line.data,
                                 .len = line.len};
            if (imap_arg_eq(&a, "DONE"))
                rc = sess_tagged(s, cmd->tag, "OK", "Idle completed");
            else
                rc = sess_tagged(s, cmd->tag, "BAD", "Expected DONE");
            break;
        }
        waited += IDLE_POLL_MS;
        if (sess_updates(s) == CMD_END) {
            rc = CMD_END;
            break;
        }
        sess_release_idle(s, false);
        if (sess_flush(s) != 0) {
            rc = CMD_END;
            break;
        }
    }
    buf_free(&line);
    sess_flush(s);
    return rc;
}
