/* auth.c — libsasl2 wiring. Names are `instance/user`; the canonical form
 * is `<instance id>/<canonical user>`. Whatever the outcome (unknown
 * instance, unknown or disabled user, wrong password) the mechanisms run
 * the same steps: PLAIN/LOGIN always pay one yescrypt, SCRAM always gets a
 * secret (a fake one derived from the install secret when there is no real
 * one) and fails only at the proof. */
#include "server/auth.h"
#include "server/conn.h"
#include "server/log.h"
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sasl/sasl.h>
#include <sasl/saslplug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SERVICE "imap"
#define MECHS "PLAIN LOGIN SCRAM-SHA-256"
#define AUXPROP_NAME "coffer"
#define SCRAM_ITER 4096
#define NAME_MAX_LEN (STORE_ID_MAX + 1 + STORE_USER_MAX)

static struct {
    bool inited;
    char hostname[256];
    bool allow_plaintext;
    unsigned max_failures;
    int delay_ms;
    unsigned concurrency;
    int sem_fd;                 /* memfd; byte i locked = check slot i busy */
    unsigned char secret[32];
    char dummy_hash[160];
    char data_dir[1024];
    struct store_cfg store;
    int report_fd;
    int penalty_ms;
} G = { .sem_fd = -1, .report_fd = -1 };

struct auth_ctx {
    struct conn *conn;
    sasl_conn_t *sc;
    unsigned failures;
    bool penalty_done;
    struct registry *reg;
    struct inst *inst;
    char inst_id[STORE_ID_MAX + 1];
    char mech[32];
    char mechs[64];
    bool login_cmd;          /* the exchange came from the LOGIN command */
    bool busy;               /* the check could not run: no free password-check
                              * slot, or the store could not be read (e.g. its
                              * LMDB reader table full) */
};

/* One connection per process: the SASL callbacks find their context here. */
static struct auth_ctx *CUR;

/* ---------- helpers ---------- */

static void sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static struct registry *get_registry(struct auth_ctx *a)
{
    if (!a->reg) {
        const char *err = NULL;
        if (registry_open(&G.store, false, &a->reg, &err) != STORE_OK) {
            log_err("auth: cannot open registry: %s", err ? err : "?");
            a->reg = NULL;
            a->busy = true;
        }
    }
    return a->reg;
}

static void close_stores(struct auth_ctx *a)
{
    if (a->inst) {
        inst_rd_end(a->inst);
        inst_close(a->inst);
        a->inst = NULL;
        a->inst_id[0] = 0;
    }
    if (a->reg) {
        registry_close(a->reg);
        a->reg = NULL;
    }
}

/* Split a canonical "id/user" (not necessarily NUL-terminated). */
static int split_name(const char *s, size_t len, char id[STORE_ID_MAX + 1],
                      char user[STORE_USER_MAX + 1])
{
    const char *slash = memchr(s, '/', len);
    if (!slash || slash == s || (size_t)(slash - s) > STORE_ID_MAX)
        return -1;
    size_t ul = len - (size_t)(slash - s) - 1;
    if (ul == 0 || ul > STORE_USER_MAX)
        return -1;
    memcpy(id, s, (size_t)(slash - s));
    id[slash - s] = 0;
    memcpy(user, slash + 1, ul);
    user[ul] = 0;
    return 0;
}

/* The live, enabled user record of a canonical name, or -1. */
static int user_lookup(struct auth_ctx *a, const char *canon, size_t len, struct user_rec *rec)
{
    char id[STORE_ID_MAX + 1], user[STORE_USER_MAX + 1], rid[STORE_ID_MAX + 1];
    if (split_name(canon, len, id, user) != 0)
        return -1;
    struct registry *r = get_registry(a);
    /* Re-resolving catches instances disabled since canonicalisation. A
     * store that cannot be read is no unknown user: the login is answered
     * NO [UNAVAILABLE], not counted as a failure (see map()). */
    if (!r)
        return -1;
    int rr = registry_resolve(r, id, rid);
    if (rr != STORE_OK && rr != STORE_ENOTFOUND) {
        log_warn("auth: registry unreadable: %s", store_strerror(rr));
        a->busy = true;
    }
    if (rr != STORE_OK || strcmp(rid, id) != 0)
        return -1;
    if (!a->inst || strcmp(a->inst_id, id) != 0) {
        if (a->inst) {
            inst_rd_end(a->inst);
            inst_close(a->inst);
            a->inst = NULL;
        }
        const char *err = NULL;
        int orc = inst_open(&G.store, id, false, &a->inst, &err);
        if (orc != STORE_OK) {
            log_err("auth: cannot open instance %s: %s", id, err ? err : "?");
            a->inst = NULL;
            if (orc != STORE_ENOTFOUND)
                a->busy = true;
            return -1;
        }
        snprintf(a->inst_id, sizeof a->inst_id, "%s", id);
    }
    int brc = inst_rd_begin(a->inst);
    if (brc != STORE_OK) {
        log_err("auth: cannot read instance %s: %s", id, store_strerror(brc));
        a->busy = true;
        return -1;
    }
    int rc = inst_user_get(a->inst, user, rec);
    inst_rd_end(a->inst);
    if (rc != STORE_OK || rec->disabled)
        return -1;
    return 0;
}

/* ---------- concurrency limit for password hashing ---------- */

/* A POSIX record lock per slot on a shared memfd: a child that dies while
 * holding a slot releases it automatically. */
static int slot_acquire(void)
{
    if (G.sem_fd < 0)
        return -1;
    for (int waited = 0; waited < 30000;) {
        for (unsigned i = 0; i < G.concurrency; i++) {
            struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                                .l_start = (off_t)i, .l_len = 1 };
            if (fcntl(G.sem_fd, F_SETLK, &fl) == 0)
                return (int)i;
        }
        int d = 5 + (int)(random() % 10);
        sleep_ms(d);
        waited += d;
    }
    return -2;
}

static void slot_release(int slot)
{
    if (slot < 0)
        return;
    struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = slot, .l_len = 1 };
    fcntl(G.sem_fd, F_SETLK, &fl);
}

/* ---------- SASL callbacks ---------- */

static int cb_getopt(void *context, const char *plugin_name, const char *option,
                     const char **result, unsigned *len)
{
    (void)context;
    (void)plugin_name;
    const char *v = NULL;
    if (!strcmp(option, "mech_list"))
        v = MECHS;
    else if (!strcmp(option, "pwcheck_method"))
        v = "auxprop";
    else if (!strcmp(option, "auxprop_plugin"))
        v = AUXPROP_NAME;
    else if (!strcmp(option, "canon_user_plugin"))
        v = "INTERNAL";
    else if (!strcmp(option, "allowanonymouslogin"))
        v = "no";
    else if (!strcmp(option, "auto_transition"))
        v = "no";
    if (!v)
        return SASL_FAIL;
    *result = v;
    if (len)
        *len = (unsigned)strlen(v);
    return SASL_OK;
}

static int cb_log(void *context, int level, const char *message)
{
    (void)context;
    if (level <= SASL_LOG_ERR)
        log_err("sasl: %s", message);
    else if (level == SASL_LOG_WARN)
        log_warn("sasl: %s", message);
    return SASL_OK;
}

/* "instance/user" (instance id or alias, any case) → "id/user" canonical.
 * Only the syntax is judged here: an unknown instance keeps its lowered
 * name, so it fails later exactly like a wrong password. */
static int cb_canon(sasl_conn_t *conn, void *context, const char *in, unsigned inlen,
                    unsigned flags, const char *user_realm, char *out, unsigned out_max,
                    unsigned *out_len)
{
    (void)conn;
    (void)context;
    (void)flags;
    (void)user_realm;
    struct auth_ctx *a = CUR;
    char buf[NAME_MAX_LEN + 1];
    if (!a || inlen == 0 || inlen > NAME_MAX_LEN || memchr(in, 0, inlen))
        return SASL_BADPROT;
    memcpy(buf, in, inlen);
    buf[inlen] = 0;
    char *slash = strchr(buf, '/');
    if (!slash || slash == buf || (size_t)(slash - buf) > STORE_ID_MAX)
        return SASL_BADPROT;
    *slash = 0;
    char id[STORE_ID_MAX + 1];
    for (char *p = buf; *p; p++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)*p);
        if (!(isalnum(ch) || ((ch == '.' || ch == '_' || ch == '-') && p != buf)) || ch >= 0x80)
            return SASL_BADPROT;
        *p = (char)ch;
    }
    struct registry *r = get_registry(a);
    if (!r)
        return SASL_FAIL;
    if (registry_resolve(r, buf, id) != STORE_OK)
        snprintf(id, sizeof id, "%.63s", buf);
    char user[STORE_USER_MAX + 1];
    if (store_user_canon(slash + 1, user, NULL) != STORE_OK)
        return SASL_BADPROT;
    int n = snprintf(out, out_max, "%s/%s", id, user);
    if (n < 0 || (unsigned)n >= out_max)
        return SASL_BUFOVER;
    *out_len = (unsigned)n;
    return SASL_OK;
}

static int cb_checkpass(sasl_conn_t *conn, void *context, const char *user, const char *pass,
                        unsigned passlen, struct propctx *propctx)
{
    (void)conn;
    (void)context;
    (void)propctx;
    struct auth_ctx *a = CUR;
    struct user_rec rec;
    char pw[1024];
    if (!a || passlen >= sizeof pw)
        return SASL_BADAUTH;
    memcpy(pw, pass, passlen);
    pw[passlen] = 0;
    bool known = user_lookup(a, user, strlen(user), &rec) == 0 && rec.pw_hash[0];
    const char *hash = known ? rec.pw_hash : G.dummy_hash;
    int slot = slot_acquire();
    if (slot == -2) {
        a->busy = true;   /* libsasl2 reports this as a failed login */
        OPENSSL_cleanse(pw, sizeof pw);
        log_warn("auth: password check slots busy for 30 s");
        return SASL_TRYAGAIN;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    const char *h = cd && strlen(pw) == passlen ? crypt_r(pw, hash, cd) : NULL;
    bool ok = h && h[0] != '*' && strlen(h) == strlen(hash)
              && CRYPTO_memcmp(h, hash, strlen(hash)) == 0;
    slot_release(slot);
    OPENSSL_cleanse(pw, sizeof pw);
    if (cd) {
        OPENSSL_cleanse(cd, sizeof *cd);
        free(cd);
    }
    return ok && known ? SASL_OK : SASL_BADAUTH;
}

static int cb_proxy(sasl_conn_t *conn, void *context, const char *requested_user,
                    unsigned rlen, const char *auth_identity, unsigned alen,
                    const char *def_realm, unsigned urlen, struct propctx *propctx)
{
    (void)conn;
    (void)context;
    (void)def_realm;
    (void)urlen;
    (void)propctx;
    struct auth_ctx *a = CUR;
    if (!a)
        return SASL_NOAUTHZ;
    if (rlen == alen && !memcmp(requested_user, auth_identity, rlen))
        return SASL_OK;
    char ai[STORE_ID_MAX + 1], au[STORE_USER_MAX + 1], ri[STORE_ID_MAX + 1], ru[STORE_USER_MAX + 1];
    if (split_name(auth_identity, alen, ai, au) || split_name(requested_user, rlen, ri, ru)
        || strcmp(ai, ri) != 0)
        return SASL_NOAUTHZ;
    struct user_rec rec;
    if (user_lookup(a, auth_identity, alen, &rec) != 0 || !rec.admin)
        return SASL_NOAUTHZ;
    if (user_lookup(a, requested_user, rlen, &rec) != 0)
        return SASL_NOAUTHZ;
    return SASL_OK;
}

/* ---------- auxprop plugin: authPassword (RFC 5803) only ---------- */

static void fake_scram(const char *name, size_t len, char *out, size_t cap)
{
    unsigned char salt[32], stored[32], server[32];
    unsigned int l;
    char tag[NAME_MAX_LEN + 16];
    int n = snprintf(tag, sizeof tag, "salt:%.*s", (int)len, name);
    HMAC(EVP_sha256(), G.secret, sizeof G.secret, (unsigned char *)tag, (size_t)n, salt, &l);
    n = snprintf(tag, sizeof tag, "stored:%.*s", (int)len, name);
    HMAC(EVP_sha256(), G.secret, sizeof G.secret, (unsigned char *)tag, (size_t)n, stored, &l);
    n = snprintf(tag, sizeof tag, "server:%.*s", (int)len, name);
    HMAC(EVP_sha256(), G.secret, sizeof G.secret, (unsigned char *)tag, (size_t)n, server, &l);
    char s64[32], st64[64], sk64[64];
    EVP_EncodeBlock((unsigned char *)s64, salt, 16);   /* real salts are 16 octets */
    EVP_EncodeBlock((unsigned char *)st64, stored, 32);
    EVP_EncodeBlock((unsigned char *)sk64, server, 32);
    snprintf(out, cap, "SCRAM-SHA-256$%u:%s$%s:%s", SCRAM_ITER, s64, st64, sk64);
}

static int auxprop_lookup(void *glob, sasl_server_params_t *sparams, unsigned flags,
                          const char *user, unsigned ulen)
{
    (void)glob;
    if (flags & SASL_AUXPROP_AUTHZID)
        return SASL_OK;   /* nothing is published about authorisation ids */
    const struct propval *to_fetch = sparams->utils->prop_get(sparams->propctx);
    if (!to_fetch)
        return SASL_OK;
    for (const struct propval *cur = to_fetch; cur->name; cur++) {
        if (cur->name[0] != '*' || strcmp(cur->name + 1, "authPassword") != 0)
            continue;
        if (cur->values && !(flags & SASL_AUXPROP_OVERRIDE))
            continue;
        if (cur->values)
            sparams->utils->prop_erase(sparams->propctx, cur->name);
        struct user_rec rec;
        char secret[256];
        if (CUR && user_lookup(CUR, user, ulen, &rec) == 0
            && !strncmp(rec.scram, "SCRAM-SHA-256$", 14))
            snprintf(secret, sizeof secret, "%s", rec.scram);
        else
            fake_scram(user, ulen, secret, sizeof secret);
        sparams->utils->prop_set(sparams->propctx, cur->name, secret, (int)strlen(secret));
        OPENSSL_cleanse(secret, sizeof secret);
        OPENSSL_cleanse(&rec, sizeof rec);
    }
    return SASL_OK;
}

static sasl_auxprop_plug_t auxprop_plug = {
    0, 0, NULL, NULL, auxprop_lookup, (char *)AUXPROP_NAME, NULL,
};

static int auxprop_init(const sasl_utils_t *utils, int max_version, int *out_version,
                        sasl_auxprop_plug_t **plug, const char *plugname)
{
    (void)utils;
    (void)plugname;
    if (max_version < SASL_AUXPROP_PLUG_VERSION)
        return SASL_BADVERS;
    *out_version = SASL_AUXPROP_PLUG_VERSION;
    *plug = &auxprop_plug;
    return SASL_OK;
}

typedef int (*cbfn)(void);
static sasl_callback_t global_cbs[] = {
    { SASL_CB_GETOPT, (cbfn)(void (*)(void))cb_getopt, NULL },
    { SASL_CB_LOG, (cbfn)(void (*)(void))cb_log, NULL },
    { SASL_CB_LIST_END, NULL, NULL },
};
static sasl_callback_t conn_cbs[] = {
    { SASL_CB_GETOPT, (cbfn)(void (*)(void))cb_getopt, NULL },
    { SASL_CB_LOG, (cbfn)(void (*)(void))cb_log, NULL },
    { SASL_CB_CANON_USER, (cbfn)(void (*)(void))cb_canon, NULL },
    { SASL_CB_SERVER_USERDB_CHECKPASS, (cbfn)(void (*)(void))cb_checkpass, NULL },
    { SASL_CB_PROXY_POLICY, (cbfn)(void (*)(void))cb_proxy, NULL },
    { SASL_CB_LIST_END, NULL, NULL },
};

/* ---------- public API ---------- */

int auth_global_init(const struct auth_config *cfg, const char **err)
{
    if (G.inited) {
        /* SIGHUP: only the tunables change; SASL stays initialised. */
        G.allow_plaintext = cfg->allow_plaintext;
        G.max_failures = cfg->max_failures;
        G.delay_ms = cfg->failure_delay_ms;
        /* Locks beyond the memfd's end are fine, so the slot count may
         * change for children forked from now on. */
        if (cfg->concurrency)
            G.concurrency = cfg->concurrency;
        snprintf(G.hostname, sizeof G.hostname, "%s", cfg->hostname);
        return 0;
    }
    snprintf(G.hostname, sizeof G.hostname, "%s", cfg->hostname);
    G.allow_plaintext = cfg->allow_plaintext;
    G.max_failures = cfg->max_failures ? cfg->max_failures : 3;
    G.delay_ms = cfg->failure_delay_ms;
    G.concurrency = cfg->concurrency ? cfg->concurrency : 1;
    if (!cfg->secret || cfg->secret_len == 0) {
        *err = "no per-install secret";
        return -1;
    }
    /* Condense any secret length to the HMAC key we use. */
    unsigned int l = 0;
    HMAC(EVP_sha256(), cfg->secret, (int)cfg->secret_len, (const unsigned char *)"coffer-auth", 11,
         G.secret, &l);
    /* The dummy hash: same algorithm and default cost as real ones. */
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    unsigned char rnd[16];
    char pw[40];
    if (RAND_bytes(rnd, sizeof rnd) != 1
        || !crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) {
        *err = "cannot generate the dummy yescrypt salt";
        return -1;
    }
    for (int i = 0; i < 16; i++)
        snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
    struct crypt_data *cd = calloc(1, sizeof *cd);
    const char *h = cd ? crypt_r(pw, salt, cd) : NULL;
    if (!h || h[0] == '*' || strlen(h) >= sizeof G.dummy_hash) {
        free(cd);
        *err = "yescrypt is not available in libcrypt";
        return -1;
    }
    snprintf(G.dummy_hash, sizeof G.dummy_hash, "%s", h);
    free(cd);
    G.sem_fd = memfd_create("coffer-auth-slots", MFD_CLOEXEC);
    if (G.sem_fd < 0 || ftruncate(G.sem_fd, (off_t)G.concurrency) != 0) {
        *err = "memfd_create for the auth concurrency limit failed";
        return -1;
    }
    int rc = sasl_auxprop_add_plugin(AUXPROP_NAME, auxprop_init);
    if (rc != SASL_OK) {
        *err = "sasl_auxprop_add_plugin failed";
        return -1;
    }
    rc = sasl_server_init(global_cbs, "coffer");
    if (rc != SASL_OK) {
        *err = sasl_errstring(rc, NULL, NULL);
        return -1;
    }
    /* Fail now, not at the first login, when a mechanism plugin is missing
     * (libsasl2-modules must be installed). */
    const char *const *list = sasl_global_listmech();
    bool have[3] = { false, false, false };
    for (size_t i = 0; list && list[i]; i++) {
        if (!strcasecmp(list[i], "PLAIN"))
            have[0] = true;
        else if (!strcasecmp(list[i], "LOGIN"))
            have[1] = true;
        else if (!strcasecmp(list[i], "SCRAM-SHA-256"))
            have[2] = true;
    }
    if (!have[0] || !have[1] || !have[2]) {
        *err = "libsasl2 lacks PLAIN, LOGIN or SCRAM-SHA-256 (install libsasl2-modules)";
        return -1;
    }
    G.inited = true;
    return 0;
}

void auth_child_init(const struct store_cfg *store, int report_fd, int penalty_ms)
{
    snprintf(G.data_dir, sizeof G.data_dir, "%s", store->data_dir);
    G.store = *store;
    G.store.data_dir = G.data_dir;
    G.report_fd = report_fd;
    G.penalty_ms = penalty_ms;
    srandom((unsigned)getpid());
}

void auth_forget_secret(void)
{
    OPENSSL_cleanse(G.secret, sizeof G.secret);
}

bool auth_plaintext_allowed(struct auth_ctx *a)
{
    return G.allow_plaintext || conn_tls_active(a->conn);
}

const char *auth_mechs(struct auth_ctx *a)
{
    snprintf(a->mechs, sizeof a->mechs, "%s", auth_plaintext_allowed(a) ? MECHS : "");
    return a->mechs;
}

static int new_sasl(struct auth_ctx *a)
{
    if (a->sc) {
        sasl_dispose(&a->sc);
        a->sc = NULL;
    }
    int rc = sasl_server_new(SERVICE, G.hostname, NULL, NULL, NULL, conn_cbs, 0, &a->sc);
    if (rc != SASL_OK) {
        log_err("sasl_server_new: %s", sasl_errstring(rc, NULL, NULL));
        a->sc = NULL;
        return -1;
    }
    sasl_security_properties_t sp;
    memset(&sp, 0, sizeof sp);
    sp.max_ssf = 0;   /* no SASL security layer: TLS protects the session */
    sp.maxbufsize = 0;
    sp.security_flags = SASL_SEC_NOANONYMOUS;
    if (!conn_tls_active(a->conn) && !G.allow_plaintext)
        sp.security_flags |= SASL_SEC_NOPLAINTEXT;
    sasl_setprop(a->sc, SASL_SEC_PROPS, &sp);
    if (conn_tls_active(a->conn)) {
        sasl_ssf_t ext = 128;
        sasl_setprop(a->sc, SASL_SSF_EXTERNAL, &ext);
    }
    return 0;
}

int auth_ctx_new(struct conn *c, bool tls, struct auth_ctx **out)
{
    (void)tls;   /* read live from the conn: STARTTLS changes it later */
    if (!G.inited)
        return -1;
    struct auth_ctx *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->conn = c;
    CUR = a;
    *out = a;
    return 0;
}

void auth_ctx_free(struct auth_ctx *a)
{
    if (!a)
        return;
    if (a->sc)
        sasl_dispose(&a->sc);
    close_stores(a);
    if (CUR == a)
        CUR = NULL;
    free(a);
}

static void report(char kind, const char *name)
{
    if (G.report_fd < 0)
        return;
    struct auth_report r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    if (name)
        snprintf(r.name, sizeof r.name, "%s", name);
    size_t len = offsetof(struct auth_report, name) + strlen(r.name) + 1;
    ssize_t n;
    do
        n = send(G.report_fd, &r, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
}

static enum auth_status finish_ok(struct auth_ctx *a, struct auth_result *res)
{
    const void *authz = NULL, *authn = NULL;
    if (sasl_getprop(a->sc, SASL_USERNAME, &authz) != SASL_OK || !authz
        || sasl_getprop(a->sc, SASL_AUTHUSER, &authn) != SASL_OK || !authn)
        return AUTH_ERROR;
    char zi[STORE_ID_MAX + 1], zu[STORE_USER_MAX + 1], ni[STORE_ID_MAX + 1], nu[STORE_USER_MAX + 1];
    if (split_name(authz, strlen(authz), zi, zu) || split_name(authn, strlen(authn), ni, nu)
        || strcmp(zi, ni) != 0)
        return AUTH_ERROR;
    struct user_rec rec;
    if (user_lookup(a, authz, strlen(authz), &rec) != 0)
        return AUTH_FAIL;
    memset(res, 0, sizeof *res);
    snprintf(res->instance, sizeof res->instance, "%s", zi);
    snprintf(res->user, sizeof res->user, "%s", zu);
    snprintf(res->authn, sizeof res->authn, "%s", nu);
    res->admin = rec.admin;
    snprintf(res->mech, sizeof res->mech, "%s", a->login_cmd ? "LOGIN-command" : a->mech);
    /* The session opens the instance env itself (LMDB: never twice per
     * process) and must not keep the registry. */
    close_stores(a);
    sasl_dispose(&a->sc);
    a->sc = NULL;
    const char *tls = conn_tls_desc(a->conn);
    log_info("login %s/%s mech=%s tls=%s", zi, zu, res->mech, tls[0] ? tls : "none");
    if (strcmp(zu, nu) != 0)
        log_info("audit: %s/%s (admin) authorised as %s/%s", ni, nu, zi, zu);
    /* The name that authenticated (authn points into the disposed SASL
     * conn: rebuilt from its copy) clears the failures it caused. */
    char who[STORE_ID_MAX + 1 + STORE_USER_MAX + 1];
    snprintf(who, sizeof who, "%s/%s", ni, nu);
    report('S', who);
    return AUTH_OK;
}

static enum auth_status map(struct auth_ctx *a, int rc, const char *out, unsigned outlen,
                            const unsigned char **chal, size_t *chal_len,
                            struct auth_result *res)
{
    /* A check that never ran is no failed login: NO [UNAVAILABLE], no
     * failure count, no penalty for the address. */
    if (a->busy && rc != SASL_OK && rc != SASL_CONTINUE)
        return AUTH_ERROR;
    switch (rc) {
    case SASL_OK:
        return finish_ok(a, res);
    case SASL_CONTINUE:
        *chal = (const unsigned char *)(out ? out : "");
        *chal_len = out ? outlen : 0;
        return AUTH_CONTINUE;
    case SASL_NOMECH:
    case SASL_TOOWEAK:
    case SASL_ENCRYPT:
        return AUTH_BADMECH;
    case SASL_BADPROT:
        return AUTH_BADPROTO;
    case SASL_NOMEM:
    case SASL_TRYAGAIN:
    case SASL_UNAVAIL:
        return AUTH_ERROR;
    default:
        return AUTH_FAIL;
    }
}

static void log_fail(struct auth_ctx *a, enum auth_status st)
{
    if (st == AUTH_FAIL || st == AUTH_BADPROTO) {
        const void *who = NULL;
        if (a->sc)
            sasl_getprop(a->sc, SASL_AUTHUSER, &who);
        /* penalty= is the per-IP wait this connection served before its
         * first exchange: a sysadmin sees an attacker's penalty grow, and
         * tests check it where timings are too noisy (memcheck). */
        log_info("auth failure from %s mech=%s user=%s penalty=%dms", conn_peer_ip(a->conn),
                 a->mech, who ? (const char *)who : "?", a->penalty_done ? G.penalty_ms : 0);
    }
}

static void apply_penalty(struct auth_ctx *a)
{
    if (!a->penalty_done) {
        a->penalty_done = true;
        sleep_ms(G.penalty_ms);
    }
}

enum auth_status auth_start(struct auth_ctx *a, const char *mech,
                            const unsigned char *ir, size_t irlen, bool has_ir,
                            const unsigned char **chal, size_t *chal_len,
                            struct auth_result *res)
{
    *chal = NULL;
    *chal_len = 0;
    if (!auth_plaintext_allowed(a))
        return AUTH_BADMECH;
    if (strlen(mech) >= sizeof a->mech || irlen > 65536)
        return AUTH_BADPROTO;
    size_t i;
    for (i = 0; mech[i]; i++)
        a->mech[i] = (char)toupper((unsigned char)mech[i]);
    a->mech[i] = 0;
    if (strcmp(a->mech, "PLAIN") && strcmp(a->mech, "LOGIN") && strcmp(a->mech, "SCRAM-SHA-256"))
        return AUTH_BADMECH;
    if (new_sasl(a) != 0)
        return AUTH_ERROR;
    a->busy = false;
    apply_penalty(a);
    const char *out = NULL;
    unsigned outlen = 0;
    int rc = sasl_server_start(a->sc, a->mech, has_ir ? (const char *)(ir ? ir : (const unsigned char *)"") : NULL,
                               has_ir ? (unsigned)irlen : 0, &out, &outlen);
    enum auth_status st = map(a, rc, out, outlen, chal, chal_len, res);
    log_fail(a, st);
    return st;
}

enum auth_status auth_step(struct auth_ctx *a, const unsigned char *resp, size_t len,
                           const unsigned char **chal, size_t *chal_len,
                           struct auth_result *res)
{
    *chal = NULL;
    *chal_len = 0;
    if (!a->sc)
        return AUTH_BADPROTO;
    if (len > 65536)
        return AUTH_BADPROTO;
    const char *out = NULL;
    unsigned outlen = 0;
    int rc = sasl_server_step(a->sc, (const char *)resp, (unsigned)len, &out, &outlen);
    enum auth_status st = map(a, rc, out, outlen, chal, chal_len, res);
    log_fail(a, st);
    return st;
}

enum auth_status auth_login(struct auth_ctx *a, const char *user, size_t ulen,
                            const char *pass, size_t plen, struct auth_result *res)
{
    /* The LOGIN command runs as AUTHENTICATE PLAIN, so it takes exactly the
     * same path (and time) through libsasl2. */
    if (ulen > NAME_MAX_LEN || plen > 1023 || memchr(user, 0, ulen) || memchr(pass, 0, plen)) {
        /* Still pay for one hash so the timing does not tell. */
        apply_penalty(a);
        int slot = slot_acquire();
        struct crypt_data *cd = calloc(1, sizeof *cd);
        if (cd)
            crypt_r("x", G.dummy_hash, cd);
        free(cd);
        slot_release(slot);
        snprintf(a->mech, sizeof a->mech, "LOGIN");
        log_fail(a, AUTH_FAIL);
        return AUTH_FAIL;
    }
    unsigned char msg[1 + NAME_MAX_LEN + 1 + 1024];
    size_t n = 0;
    msg[n++] = 0;
    memcpy(msg + n, user, ulen);
    n += ulen;
    msg[n++] = 0;
    memcpy(msg + n, pass, plen);
    n += plen;
    const unsigned char *chal;
    size_t chal_len;
    a->login_cmd = true;
    enum auth_status st = auth_start(a, "PLAIN", msg, n, true, &chal, &chal_len, res);
    a->login_cmd = false;
    OPENSSL_cleanse(msg, sizeof msg);
    if (st == AUTH_CONTINUE)
        st = AUTH_FAIL;
    return st;
}

bool auth_failed(struct auth_ctx *a)
{
    a->failures++;
    const void *who = NULL;
    if (a->sc && sasl_getprop(a->sc, SASL_AUTHUSER, &who) != SASL_OK)
        who = NULL;
    report('F', who);
    if (a->sc) {
        sasl_dispose(&a->sc);
        a->sc = NULL;
    }
    sleep_ms(G.delay_ms);
    return a->failures >= G.max_failures;
}
