/* config.h — cofferd.conf: `key = value` lines, `#` comments. Every key is
 * documented in cofferd.conf(5). Unknown keys and bad values are errors
 * that name the file and line. */
#ifndef COFFER_CONFIG_H
#define COFFER_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_LISTEN 16
#define CFG_MAX_SNI    64
#define CFG_PATH_MAX   1024

struct cfg_addr {
    char host[256];        /* numeric address or name; "" = any */
    char port[16];
};

struct cfg_sni {
    char host[256];        /* lower case; "*.example.org" matches one label */
    char cert[CFG_PATH_MAX];
    char key[CFG_PATH_MAX];
};

struct cofferd_cfg {
    char data_dir[CFG_PATH_MAX];
    struct cfg_addr listen[CFG_MAX_LISTEN];
    unsigned n_listen;
    struct cfg_addr listen_tls[CFG_MAX_LISTEN];
    unsigned n_listen_tls;
    char tls_cert[CFG_PATH_MAX];
    char tls_key[CFG_PATH_MAX];
    int tls_min_version, tls_max_version;   /* TLS1_2_VERSION … */
    char tls_ciphers[1024];                 /* TLS 1.2 cipher list */
    char tls_ciphersuites[512];             /* TLS 1.3 suites */
    char tls_groups[256];
    struct cfg_sni sni[CFG_MAX_SNI];
    unsigned n_sni;
    char hostname[256];                     /* greeting and SASL server FQDN */
    char user[64], group[64];
    bool allow_plaintext_auth;
    unsigned max_connections, max_connections_per_ip;
    bool log_syslog;
    uint64_t map_size;
    char default_timezone[64];
    size_t max_line;
    uint64_t max_literal;
    unsigned max_nesting;
    int command_timeout_ms, idle_timeout_ms, preauth_timeout_ms;
    unsigned max_auth_failures;
    unsigned auth_concurrency;
    int auth_failure_delay_ms;              /* per failed attempt, in the child */
    int auth_penalty_max_ms;                /* cap of the per-IP penalty; 0 = off */
    char auth_secret_file[CFG_PATH_MAX];    /* "" = <data_dir>/auth.secret */
    unsigned tls_ticket_rotate_s;           /* ticket key lifetime */
    int output_thread;                      /* CFG_OUTPUT_*: long responses' writer thread */
};

enum { CFG_OUTPUT_NO, CFG_OUTPUT_YES, CFG_OUTPUT_AUTO };   /* output_thread */

void cfg_defaults(struct cofferd_cfg *cfg);
/* Parse path into cfg (defaults applied first). On error returns -1 and
 * writes "path:line: message" into err. */
int cfg_load(const char *path, struct cofferd_cfg *cfg, char *err, size_t errlen);
/* Parse one `key = value` setting (used by cfg_load and tests). */
int cfg_set(struct cofferd_cfg *cfg, const char *key, const char *value,
            char *err, size_t errlen);

#endif
