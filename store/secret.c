/* secret.c — password storage: yescrypt (libxcrypt) for LOGIN/PLAIN and
 * an RFC 5803 SCRAM-SHA-256 secret for SCRAM. No clear text is kept. */
#include "store/admin.h"
#include "store/store_int.h"
#include <crypt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#define PW_MAX 1024

int secret_saslprep(const char *in, char *out, size_t outlen, const char **err)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0, n = strlen(in);
    if (n == 0) {
        *err = "empty password";
        return STORE_EINVAL;
    }
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!l || i + l > n) {
            *err = "password is not valid UTF-8";
            return STORE_EINVAL;
        }
        uint32_t cp = l == 1 ? c : c & (0x7F >> l);
        for (size_t j = 1; j < l; j++) {
            if ((s[i + j] & 0xC0) != 0x80) {
                *err = "password is not valid UTF-8";
                return STORE_EINVAL;
            }
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
            *err = "password contains a control character";
            return STORE_EINVAL;
        }
        /* RFC 4013 2.1: non-ASCII spaces map to SPACE; 2.2 "commonly
         * mapped to nothing" (B.1 subset) are dropped. */
        bool space = cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B) ||
                     cp == 0x202F || cp == 0x205F || cp == 0x3000;
        bool nothing = cp == 0xAD || cp == 0x200C || cp == 0x200D || cp == 0x2060 ||
                       cp == 0xFEFF || cp == 0x034F || cp == 0x180B || cp == 0x180C ||
                       cp == 0x180D || (cp >= 0xFE00 && cp <= 0xFE0F);
        if (space && cp != 0x200B) {
            if (o + 1 >= outlen)
                goto toolong;
            out[o++] = ' ';
        } else if (!nothing && cp != 0x200B) {
            if (o + l >= outlen)
                goto toolong;
            memcpy(out + o, s + i, l);
            o += l;
        }
        i += l;
    }
    out[o] = 0;
    if (!o) {
        *err = "empty password after SASLprep";
        return STORE_EINVAL;
    }
    return STORE_OK;
toolong:
    *err = "password too long";
    return STORE_EINVAL;
}

int secret_yescrypt(const char *password, char out[160], const char **err)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    if (strlen(password) > PW_MAX) {
        *err = "password too long";
        return STORE_EINVAL;
    }
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) {
        *err = "crypt_gensalt_rn(yescrypt) failed";
        return STORE_EIO;
    }
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_r(password, salt, &cd);
    if (!h || h[0] == '*' || strlen(h) >= 160) {
        *err = "yescrypt hashing failed";
        return STORE_EIO;
    }
    strcpy(out, h);
    return STORE_OK;
}

bool secret_check_password(const char *hash, const char *password)
{
    struct crypt_data cd;
    if (!hash[0])
        return false;
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_r(password, hash, &cd);
    return h && h[0] != '*' && strlen(h) == strlen(hash) &&
           CRYPTO_memcmp(h, hash, strlen(hash)) == 0;
}

static int b64(const unsigned char *in, int n, char *out, size_t cap)
{
    if ((size_t)(4 * ((n + 2) / 3) + 1) > cap)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, n);
}

int secret_scram(const char *password, unsigned iterations, char out[256], const char **err)
{
    char prepped[PW_MAX * 2];
    int rc = secret_saslprep(password, prepped, sizeof prepped, err);
    if (rc)
        return rc;
    if (iterations < 4096)
        iterations = 4096;
    unsigned char salt[16], salted[32], ckey[32], skey[32], stored[32];
    unsigned int l = 32;
    if (RAND_bytes(salt, sizeof salt) != 1 ||
        PKCS5_PBKDF2_HMAC(prepped, (int)strlen(prepped), salt, sizeof salt, (int)iterations,
                          EVP_sha256(), 32, salted) != 1 ||
        !HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ckey, &l) ||
        !HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, skey, &l)) {
        *err = "SCRAM secret computation failed (OpenSSL)";
        return STORE_EIO;
    }
    SHA256(ckey, 32, stored);
    char s64[32], st64[64], sk64[64];
    b64(salt, sizeof salt, s64, sizeof s64);
    b64(stored, 32, st64, sizeof st64);
    b64(skey, 32, sk64, sizeof sk64);
    snprintf(out, 256, "SCRAM-SHA-256$%u:%s$%s:%s", iterations, s64, st64, sk64);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(prepped, sizeof prepped);
    return STORE_OK;
}
