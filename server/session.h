/* session.h — the IMAP session state machine of one connection child:
 * reads commands from the conn, runs them, writes responses. Everything it
 * needs from the daemon comes in through struct session_env. */
#ifndef COFFER_SESSION_H
#define COFFER_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

struct conn;
struct auth_ctx;

struct session_limits {
    size_t max_line;           /* octets per command line, default 65536 */
    uint64_t max_literal;      /* octets per literal, default 64 MiB */
    uint64_t max_command;      /* octets per command incl. literals, default 64 MiB */
    unsigned max_nesting;      /* parenthesis depth, default 32 */
    int cmd_timeout_ms;        /* deadline for one line or literal, default 60 s */
    int idle_timeout_ms;       /* autologout when authenticated, default 30 min */
    int preauth_timeout_ms;    /* before authentication, default 60 s */
    unsigned max_auth_failures;/* then BYE, default 3 */
};

struct session_env {
    struct store_cfg store;
    struct session_limits lim;
    struct auth_ctx *auth;
    const char *greeting_host;   /* for the greeting, may be NULL */
    /* Called once after successful authentication, before the instance env
     * is opened: further confine the process to that instance (Landlock).
     * May be NULL. Returns 0 or -1 (then the session answers NO and BYE). */
    int (*confine_instance)(void *ctx, const char *instance_id);
    void *confine_ctx;
    /* Test hook (COFFER_TEST_HOOKS builds only): path to try opening after
     * login; the result is logged. May be NULL. */
    const char *test_open_after_login;
    volatile int *shutdown_flag; /* set by SIGTERM: BYE at the next chance */
    /* Counter for the logout log line (commands run); may be NULL. The
     * session adds one per command it reads. */
    uint64_t *stat_commands;
    /* Filled with "instance/user" at login, for the one log line cofferd
     * writes when the connection ends (the session logs no logout line);
     * may be NULL. */
    char *stat_user;
    size_t stat_user_len;
};

/* Run the session to completion; returns when the client logged out, the
 * connection broke, or shutdown was requested. */
void session_run(struct conn *c, const struct session_env *env);

#endif
