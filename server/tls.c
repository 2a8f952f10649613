#include "server/tls.h"
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct tls_set {
    SSL_CTX *def;
    unsigned n;
    char host[CFG_MAX_SNI][256];
    SSL_CTX *ctx[CFG_MAX_SNI];
};

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    int valid;
};
/* Inherited by every child at fork, so any child can resume a session a
 * sibling issued while the key was current or previous. A child needs them
 * only during its one handshake (ClientHello decrypts, NewSessionTicket
 * encrypts; OpenSSL sends TLS 1.3 tickets before SSL_accept returns), so
 * it wipes them once SSL_accept has succeeded: a compromised child cannot
 * decrypt tickets recorded from other connections. */
static struct ticket_key tkeys[2];

int tls_tickets_rotate(void)
{
    struct ticket_key k;
    if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1
        || RAND_bytes(k.hmac, sizeof k.hmac) != 1)
        return -1;
    k.valid = 1;
    tkeys[1] = tkeys[0];
    tkeys[0] = k;
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

void tls_tickets_forget(void)
{
    OPENSSL_cleanse(tkeys, sizeof tkeys);
}

static void info_cb(const SSL *s, int where, int ret)
{
    /* The handshake is over, TLS 1.3 tickets sent (SSL_CB_HANDSHAKE_DONE
     * comes before them in TLS 1.3: too early). Only children handshake:
     * the parent never calls SSL_accept. */
    if ((where & SSL_CB_EXIT) && ret == 1 && SSL_is_init_finished(s))
        tls_tickets_forget();
}

static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    const struct ticket_key *k = NULL;
    int ret = 1;
    if (enc) {
        if (!tkeys[0].valid)
            return -1;
        k = &tkeys[0];
        memcpy(key_name, k->name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
            return -1;
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
    } else {
        for (int i = 0; i < 2; i++)
            if (tkeys[i].valid && !memcmp(key_name, tkeys[i].name, 16)) {
                k = &tkeys[i];
                ret = i == 0 ? 1 : 2;   /* 2: accept but issue a fresh ticket */
                break;
            }
        if (!k)
            return 0;
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
    }
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return ret;
}

static void ssl_errstr(char *err, size_t errlen, const char *what, const char *file)
{
    char e[256] = "";
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, e, sizeof e);
    snprintf(err, errlen, "%s %s: %s", what, file, e[0] ? e : "failed");
    ERR_clear_error();
}

static SSL_CTX *make_ctx(const struct cofferd_cfg *cfg, const char *cert, const char *key,
                         char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_errstr(err, errlen, "SSL_CTX_new", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version);
    SSL_CTX_set_max_proto_version(ctx, cfg->tls_max_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                             | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by stateless tickets only: no per-process cache that a
     * forked child could never share anyway. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_info_callback(ctx, info_cb);
    if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers) != 1) {
        ssl_errstr(err, errlen, "tls_ciphers", cfg->tls_ciphers);
        goto fail;
    }
    if (SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites) != 1) {
        ssl_errstr(err, errlen, "tls_ciphersuites", cfg->tls_ciphersuites);
        goto fail;
    }
    if (SSL_CTX_set1_groups_list(ctx, cfg->tls_groups) != 1) {
        ssl_errstr(err, errlen, "tls_groups", cfg->tls_groups);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_errstr(err, errlen, "cannot load certificate chain", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_errstr(err, errlen, "cannot load private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_errstr(err, errlen, "private key does not match certificate", cert);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static bool sni_match(const char *pattern, const char *name)
{
    if (!strcasecmp(pattern, name))
        return true;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && !strcasecmp(pattern + 1, dot);
    }
    return false;
}

static int sni_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    struct tls_set *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    for (unsigned pass = 0; pass < 2; pass++)   /* exact names before wildcards */
        for (unsigned i = 0; i < t->n; i++) {
            bool wild = t->host[i][0] == '*';
            if ((pass == 0) == wild)
                continue;
            if (sni_match(t->host[i], name)) {
                SSL_set_SSL_CTX(ssl, t->ctx[i]);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    return SSL_TLSEXT_ERR_OK;   /* default certificate */
}

int tls_build(const struct cofferd_cfg *cfg, struct tls_set **out, char *err, size_t errlen)
{
    struct tls_set *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!tkeys[0].valid && tls_tickets_rotate() != 0) {
        snprintf(err, errlen, "cannot generate TLS ticket keys");
        free(t);
        return -1;
    }
    t->def = make_ctx(cfg, cfg->tls_cert, cfg->tls_key, err, errlen);
    if (!t->def) {
        free(t);
        return -1;
    }
    for (unsigned i = 0; i < cfg->n_sni; i++) {
        t->ctx[i] = make_ctx(cfg, cfg->sni[i].cert, cfg->sni[i].key, err, errlen);
        if (!t->ctx[i]) {
            tls_free(t);
            return -1;
        }
        snprintf(t->host[i], sizeof t->host[i], "%s", cfg->sni[i].host);
        t->n = i + 1;
    }
    SSL_CTX_set_tlsext_servername_callback(t->def, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(t->def, t);
    *out = t;
    return 0;
}

SSL_CTX *tls_default_ctx(struct tls_set *t)
{
    return t->def;
}

void tls_free(struct tls_set *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->def);
    for (unsigned i = 0; i < t->n; i++)
        SSL_CTX_free(t->ctx[i]);
    free(t);
}
