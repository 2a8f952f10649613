#include "server/config.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Mozilla "intermediate" (TLS 1.2 part restricted to ECDHE key exchange). */
#define DEF_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEF_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define DEF_GROUPS "X25519:P-256:P-384"

static int parse_addrs(const char *v, struct cfg_addr *out, unsigned *n, const char *defport,
                       char *err, size_t errlen);

void cfg_defaults(struct cofferd_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", LOCALSTATEDIR "/lib/coffer");
    char e[64];
    parse_addrs("0.0.0.0:143, [::]:143", cfg->listen, &cfg->n_listen, "143", e, sizeof e);
    parse_addrs("0.0.0.0:993, [::]:993", cfg->listen_tls, &cfg->n_listen_tls, "993", e, sizeof e);
    snprintf(cfg->tls_cert, sizeof cfg->tls_cert, "%s", SYSCONFDIR "/coffer/cert.pem");
    snprintf(cfg->tls_key, sizeof cfg->tls_key, "%s", SYSCONFDIR "/coffer/key.pem");
    cfg->tls_min_version = TLS1_2_VERSION;
    cfg->tls_max_version = TLS1_3_VERSION;
    snprintf(cfg->tls_ciphers, sizeof cfg->tls_ciphers, "%s", DEF_CIPHERS);
    snprintf(cfg->tls_ciphersuites, sizeof cfg->tls_ciphersuites, "%s", DEF_SUITES);
    snprintf(cfg->tls_groups, sizeof cfg->tls_groups, "%s", DEF_GROUPS);
    if (gethostname(cfg->hostname, sizeof cfg->hostname - 1) != 0 || !cfg->hostname[0])
        snprintf(cfg->hostname, sizeof cfg->hostname, "localhost");
    snprintf(cfg->user, sizeof cfg->user, "coffer");
    snprintf(cfg->group, sizeof cfg->group, "coffer");
    cfg->max_connections = 1000;
    cfg->max_connections_per_ip = 20;
    cfg->map_size = (uint64_t)1 << 40;
    snprintf(cfg->default_timezone, sizeof cfg->default_timezone, "UTC");
    cfg->max_line = 65536;
    cfg->max_literal = 64u << 20;
    cfg->max_nesting = 32;
    cfg->command_timeout_ms = 60 * 1000;
    cfg->idle_timeout_ms = 30 * 60 * 1000;
    cfg->preauth_timeout_ms = 60 * 1000;
    cfg->max_auth_failures = 3;
    cfg->output_thread = CFG_OUTPUT_YES;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->auth_concurrency = n > 0 ? (unsigned)n : 1;
    cfg->auth_failure_delay_ms = 2000;
    cfg->auth_penalty_max_ms = 15000;
    cfg->tls_ticket_rotate_s = 12 * 3600;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
        *out = false;
    else
        return -1;
    return 0;
}

/* Unsigned integer with an optional binary suffix (K, M, G, T). */
static int parse_size(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!isdigit((unsigned char)v[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (*end == 'i' || *end == 'B'))
        end++;
    if (shift && *end == 'B')
        end++;
    if (*end)
        return -1;
    if (shift && x > (UINT64_MAX >> shift))
        return -1;
    x <<= shift;
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

/* Duration in seconds, or with a unit: ms, s, m, h. */
static int parse_duration_ms(const char *v, int min_ms, int *out)
{
    if (!isdigit((unsigned char)v[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno)
        return -1;
    unsigned long long mul = 1000;
    if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s") || !*end)
        mul = 1000;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -1;
    if (x > 24ull * 3600 * 1000 / mul)
        return -1;
    if ((int)(x * mul) < min_ms)
        return -1;
    *out = (int)(x * mul);
    return 0;
}

static int parse_addr1(const char *s, size_t len, struct cfg_addr *a, const char *defport)
{
    char tmp[300];
    if (len == 0 || len >= sizeof tmp)
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    const char *host, *port = NULL;
    if (tmp[0] == '[') {
        char *rb = strchr(tmp, ']');
        if (!rb)
            return -1;
        *rb = 0;
        host = tmp + 1;
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1])
            return -1;
    } else {
        char *colon = strrchr(tmp, ':');
        if (colon && strchr(tmp, ':') != colon)
            return -1;   /* bare IPv6 needs brackets */
        if (colon) {
            *colon = 0;
            port = colon + 1;
        }
        host = tmp;
    }
    if (!strcmp(host, "*"))
        host = "";
    if (!port || !*port)
        port = defport;
    for (const char *p = port; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    long pn = strtol(port, NULL, 10);
    if (pn < 1 || pn > 65535 || strlen(host) >= sizeof a->host)
        return -1;
    snprintf(a->host, sizeof a->host, "%s", host);
    snprintf(a->port, sizeof a->port, "%ld", pn);
    return 0;
}

static int parse_addrs(const char *v, struct cfg_addr *out, unsigned *n, const char *defport,
                       char *err, size_t errlen)
{
    *n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if (*n >= CFG_MAX_LISTEN)
            return fail(err, errlen, "too many addresses (max %s)", "16");
        if (parse_addr1(p, (size_t)(e - p), &out[*n], defport) != 0) {
            char bad[300];
            snprintf(bad, sizeof bad, "%.*s", (int)(e - p), p);
            return fail(err, errlen, "bad address '%s' (use host:port or [v6]:port)", bad);
        }
        (*n)++;
        p = e;
    }
    return 0;
}

static int tls_version(const char *s)
{
    if (!strcasecmp(s, "TLSv1.2"))
        return TLS1_2_VERSION;
    if (!strcasecmp(s, "TLSv1.3"))
        return TLS1_3_VERSION;
    return 0;
}

static int parse_protocols(struct cofferd_cfg *cfg, const char *v)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", v);
    int lo = 0, hi = 0;
    for (char *save = NULL, *t = strtok_r(tmp, " ,:", &save); t; t = strtok_r(NULL, " ,:", &save)) {
        int ver = tls_version(t);
        if (!ver)
            return -1;
        if (!lo || ver < lo)
            lo = ver;
        if (ver > hi)
            hi = ver;
    }
    if (!lo)
        return -1;
    cfg->tls_min_version = lo;
    cfg->tls_max_version = hi;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
    if (strlen(v) >= cap)
        return -1;
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int set_sni(struct cofferd_cfg *cfg, const char *v, char *err, size_t errlen)
{
    if (cfg->n_sni >= CFG_MAX_SNI)
        return fail(err, errlen, "too many tls_sni entries (max %s)", "64");
    char host[256], cert[CFG_PATH_MAX], key[CFG_PATH_MAX], extra[8];
    int n = sscanf(v, "%255s %1023s %1023s %7s", host, cert, key, extra);
    if (n != 3)
        return fail(err, errlen, "tls_sni wants 'HOSTNAME CERTFILE KEYFILE', got '%s'", v);
    struct cfg_sni *s = &cfg->sni[cfg->n_sni++];
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    snprintf(s->host, sizeof s->host, "%s", host);
    snprintf(s->cert, sizeof s->cert, "%s", cert);
    snprintf(s->key, sizeof s->key, "%s", key);
    return 0;
}

/* How a plain key's value is parsed and where it goes. Keys with their own
 * syntax (addresses, TLS protocols, SNI triples, log) are handled in cfg_set. */
enum cfg_kind {
    K_TEXT,      /* non-empty string into a char array */
    K_HOST,      /* K_TEXT without blanks, quotes or brackets (greeting, SASL) */
    K_ABSPATH,   /* absolute path into a char array */
    K_BOOL,      /* yes/no into a bool */
    K_U64,       /* size with K/M/G/T suffix into a uint64_t */
    K_UINT,      /* number into an unsigned */
    K_SIZE,      /* size into a size_t */
    K_MS,        /* duration into an int of milliseconds */
    K_SEC,       /* duration into an unsigned of seconds */
};

struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    size_t off, len;          /* the field: offset and size */
    uint64_t min, max;        /* numbers and sizes; durations in ms */
    const char *want;         /* what a good value looks like, for the error */
};

#define FIELD(f) offsetof(struct cofferd_cfg, f), sizeof(((struct cofferd_cfg *)0)->f)
static const struct cfg_key cfg_keys[] = {
    { "data_dir", K_ABSPATH, FIELD(data_dir), 0, 0, "an absolute path is required" },
    { "tls_cert", K_TEXT, FIELD(tls_cert), 0, 0, "a file name is required" },
    { "tls_key", K_TEXT, FIELD(tls_key), 0, 0, "a file name is required" },
    { "tls_ciphers", K_TEXT, FIELD(tls_ciphers), 0, 0, "an OpenSSL cipher list is required" },
    { "tls_ciphersuites", K_TEXT, FIELD(tls_ciphersuites), 0, 0,
      "an OpenSSL TLS 1.3 ciphersuite list is required" },
    { "tls_groups", K_TEXT, FIELD(tls_groups), 0, 0,
      "a group list like X25519:P-256 is required" },
    { "hostname", K_HOST, FIELD(hostname), 0, 0, "a host name is required" },
    { "user", K_TEXT, FIELD(user), 0, 0, "a user name is required" },
    { "group", K_TEXT, FIELD(group), 0, 0, "a group name is required" },
    { "allow_plaintext_auth", K_BOOL, FIELD(allow_plaintext_auth), 0, 0, "use yes or no" },
    { "max_connections", K_UINT, FIELD(max_connections), 1, 1000000,
      "a number from 1 to 1000000 is required" },
    { "max_connections_per_ip", K_UINT, FIELD(max_connections_per_ip), 1, 1000000,
      "a number from 1 to 1000000 is required" },
    { "map_size", K_U64, FIELD(map_size), 1u << 20, (uint64_t)1 << 50,
      "a size like 1T (at least 1M) is required" },
    { "default_timezone", K_TEXT, FIELD(default_timezone), 0, 0, "a time zone name is required" },
    { "max_line", K_SIZE, FIELD(max_line), 1024, 16u << 20, "a size from 1K to 16M is required" },
    { "max_literal", K_U64, FIELD(max_literal), 1024, (uint64_t)1 << 32,
      "a size from 1K to 4G is required" },
    { "max_nesting", K_UINT, FIELD(max_nesting), 1, 1000, "a number from 1 to 1000 is required" },
    { "command_timeout", K_MS, FIELD(command_timeout_ms), 100, 86400000,
      "a duration like 60 or 60s is required" },
    { "idle_timeout", K_MS, FIELD(idle_timeout_ms), 100, 86400000,
      "a duration like 30m is required" },
    { "preauth_timeout", K_MS, FIELD(preauth_timeout_ms), 100, 86400000,
      "a duration like 60s is required" },
    { "max_auth_failures", K_UINT, FIELD(max_auth_failures), 1, 100,
      "a number from 1 to 100 is required" },
    { "auth_concurrency", K_UINT, FIELD(auth_concurrency), 1, 1024,
      "a number from 1 to 1024 is required" },
    { "auth_failure_delay", K_MS, FIELD(auth_failure_delay_ms), 0, 60000,
      "a duration up to 60s is required" },
    { "auth_penalty_max", K_MS, FIELD(auth_penalty_max_ms), 0, 300000,
      "a duration up to 5m is required" },
    { "auth_secret_file", K_ABSPATH, FIELD(auth_secret_file), 0, 0, "an absolute path is required" },
    { "tls_ticket_rotate", K_SEC, FIELD(tls_ticket_rotate_s), 60000, 86400000,
      "a duration from 1m to 24h is required" },
};
#undef FIELD

static int set_plain(struct cofferd_cfg *cfg, const struct cfg_key *key, const char *v)
{
    char *f = (char *)cfg + key->off;
    uint64_t u;
    int ms;
    switch (key->kind) {
    case K_ABSPATH:
        if (v[0] != '/')
            return -1;
        /* fall through */
    case K_HOST:
    case K_TEXT:
        if (!v[0] || (key->kind == K_HOST && strpbrk(v, " \t[]\"\\")))
            return -1;
        return copy_str(f, key->len, v);
    case K_BOOL:
        return parse_bool(v, (bool *)(void *)f);
    case K_U64:
    case K_UINT:
    case K_SIZE:
        if (parse_size(v, key->min, key->max, &u))
            return -1;
        if (key->kind == K_U64)
            *(uint64_t *)(void *)f = u;
        else if (key->kind == K_UINT)
            *(unsigned *)(void *)f = (unsigned)u;
        else
            *(size_t *)(void *)f = (size_t)u;
        return 0;
    case K_MS:
    case K_SEC:
        if (parse_duration_ms(v, (int)key->min, &ms) || (uint64_t)ms > key->max)
            return -1;
        if (key->kind == K_MS)
            *(int *)(void *)f = ms;
        else
            *(unsigned *)(void *)f = (unsigned)(ms / 1000);
        return 0;
    }
    return -1;
}

int cfg_set(struct cofferd_cfg *cfg, const char *k, const char *v, char *err, size_t errlen)
{
    if (!strcmp(k, "listen"))
        return parse_addrs(v, cfg->listen, &cfg->n_listen, "143", err, errlen);
    if (!strcmp(k, "listen_tls"))
        return parse_addrs(v, cfg->listen_tls, &cfg->n_listen_tls, "993", err, errlen);
    if (!strcmp(k, "tls_sni"))
        return set_sni(cfg, v, err, errlen);
    if (!strcmp(k, "tls_protocols")) {
        if (parse_protocols(cfg, v))
            return fail(err, errlen, "bad value for %s: use TLSv1.2 and/or TLSv1.3", k);
        return 0;
    }
    if (!strcmp(k, "output_thread")) {
        bool on;
        if (!strcmp(v, "auto"))
            cfg->output_thread = CFG_OUTPUT_AUTO;
        else if (parse_bool(v, &on) == 0)
            cfg->output_thread = on ? CFG_OUTPUT_YES : CFG_OUTPUT_NO;
        else
            return fail(err, errlen, "bad value for %s: use yes, no or auto", k);
        return 0;
    }
    if (!strcmp(k, "log")) {
        if (strcmp(v, "syslog") && strcmp(v, "stderr"))
            return fail(err, errlen, "bad value for %s: use stderr or syslog", k);
        cfg->log_syslog = !strcmp(v, "syslog");
        return 0;
    }
    for (size_t i = 0; i < sizeof cfg_keys / sizeof cfg_keys[0]; i++)
        if (!strcmp(k, cfg_keys[i].name))
            return set_plain(cfg, &cfg_keys[i], v)
                       ? fail(err, errlen, "bad value for %s: %s", k, cfg_keys[i].want)
                       : 0;
    return fail(err, errlen, "unknown key '%s'", k);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

int cfg_load(const char *path, struct cofferd_cfg *cfg, char *err, size_t errlen)
{
    cfg_defaults(cfg);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char msg[512];
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        /* Values may be quoted to keep leading/trailing blanks out of doubt. */
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = 0;
            v++;
        }
        if (cfg_set(cfg, k, v, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    if (rc == 0 && cfg->n_listen == 0 && cfg->n_listen_tls == 0) {
        snprintf(err, errlen, "%s: neither listen nor listen_tls has an address", path);
        rc = -1;
    }
    return rc;
}
