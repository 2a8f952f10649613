/* auth.h — authentication of `instance/user` through libsasl2 (PLAIN,
 * LOGIN, SCRAM-SHA-256) and the LOGIN command, against the instance's user
 * table. One auth_ctx per connection (sasl_server_new per connection;
 * sasl_server_init once in the parent before fork). Failures are uniform:
 * unknown instance, unknown/disabled user and wrong password look the
 * same, take the same time and produce the same responses. */
#ifndef COFFER_AUTH_H
#define COFFER_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include "store/store.h"

struct conn;
struct auth_ctx;

enum auth_status {
    AUTH_OK = 0,
    AUTH_CONTINUE = 1,       /* send challenge as "+ base64" and call auth_step */
    AUTH_FAIL = -1,          /* NO [AUTHENTICATIONFAILED] */
    AUTH_BADMECH = -2,       /* NO: unsupported mechanism */
    AUTH_BADPROTO = -3,      /* BAD: malformed client data (bad base64…) */
    AUTH_ERROR = -4,         /* NO [UNAVAILABLE]: internal/temporary error */
};

struct auth_result {
    char instance[STORE_ID_MAX + 1];   /* canonical instance id */
    char user[STORE_USER_MAX + 1];     /* canonical user whose archive is opened (authzid) */
    char authn[STORE_USER_MAX + 1];    /* canonical authenticating user */
    bool admin;                         /* of the authorisation user */
    char mech[32];
};

/* tls: the connection is protected (SSF external set, plaintext allowed). */
int auth_ctx_new(struct conn *c, bool tls, struct auth_ctx **out);
void auth_ctx_free(struct auth_ctx *a);
/* Space-separated mechanisms to advertise as AUTH=… (empty before TLS
 * unless allow_plaintext_auth). */
const char *auth_mechs(struct auth_ctx *a);
bool auth_plaintext_allowed(struct auth_ctx *a);

/* LOGIN command. */
enum auth_status auth_login(struct auth_ctx *a, const char *user, size_t ulen,
                            const char *pass, size_t plen, struct auth_result *res);
/* AUTHENTICATE: ir/irlen is the decoded initial response (has_ir false
 * when none was sent; an empty one is "="). Challenges are raw bytes; the
 * caller base64-encodes them. */
enum auth_status auth_start(struct auth_ctx *a, const char *mech,
                            const unsigned char *ir, size_t irlen, bool has_ir,
                            const unsigned char **chal, size_t *chal_len,
                            struct auth_result *res);
enum auth_status auth_step(struct auth_ctx *a, const unsigned char *resp, size_t len,
                           const unsigned char **chal, size_t *chal_len,
                           struct auth_result *res);
/* Call after every AUTH_FAIL: sleeps the per-failure delay, reports the
 * failure to the parent; returns true when the session must BYE (too many
 * failures). */
bool auth_failed(struct auth_ctx *a);

/* ---- daemon side (server/cofferd.c) ---- */
struct auth_config {
    const char *hostname;          /* SASL server FQDN */
    bool allow_plaintext;          /* allow_plaintext_auth */
    unsigned max_failures;         /* then auth_failed() says BYE */
    int failure_delay_ms;          /* sleep per failed attempt */
    unsigned concurrency;          /* password checks at once, all children */
    const unsigned char *secret;   /* per-install secret for fake SCRAM salts */
    size_t secret_len;
};
/* Once, in the parent before any fork: sasl_server_init() with our
 * callbacks and auxprop plugin, the dummy hash, the concurrency limiter. */
int auth_global_init(const struct auth_config *cfg, const char **err);
/* In the child, before auth_ctx_new(): the store as the child sees it
 * (after chroot), where to report failures (-1: nowhere) and the per-IP
 * penalty the parent assigned (slept before the first password check). */
void auth_child_init(const struct store_cfg *store, int report_fd, int penalty_ms);
/* In the child once logged in (no AUTHENTICATE can follow): wipe the key
 * derived from the install secret, which only the fake SCRAM secrets of
 * unknown users need. */
void auth_forget_secret(void);

/* What a child reports on report_fd (a datagram socket whose receiver
 * learns the sender's pid from the kernel: the report carries no address,
 * the parent takes the one it recorded for that child at fork). One
 * datagram per attempt outcome; name is the canonical authenticating name
 * tried ("id/user", NUL-terminated; empty when the attempt never got that
 * far). */
struct auth_report {
    char kind;                     /* 'F' failure, 'S' success */
    char name[STORE_ID_MAX + 1 + STORE_USER_MAX + 1];
};

#endif
