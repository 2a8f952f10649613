/* users.c — user names, user records and grants of an instance.
 *
 * Canonical user names (store_user_canon), documented in coffer(8):
 *  - valid UTF-8 (no overlong forms, no surrogates), 1..255 octets;
 *  - no control characters (C0, DEL, C1), no '/', '%' or '*' (they would
 *    become LIST wildcards or hierarchy under "Users/"), no space at
 *    either end;
 *  - case folding: ASCII, Latin-1, Latin Extended-A, basic Greek and
 *    Cyrillic capitals are lowered; other scripts are kept as given;
 *  - NFC, pragmatically: we carry no Unicode tables, so a name with a
 *    combining diacritical mark (U+0300..U+036F) after a Latin letter is
 *    refused (its precomposed NFC form must be used); everything else is
 *    taken to be NFC already. */
#include "store/admin.h"
#include "store/store_int.h"
#include <stdio.h>
#include <string.h>

/* Decode one UTF-8 sequence; returns its length or 0 if invalid. */
static size_t utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xE0) == 0xC0) { len = 2; c = s[0] & 0x1F; min = 0x80; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; c = s[0] & 0x0F; min = 0x800; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; c = s[0] & 0x07; min = 0x10000; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_enc(uint32_t c, char *o)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static uint32_t fold(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 0x20;
    if (c >= 0x100 && c <= 0x137) return c | 1;
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c | 1;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;
    if (c >= 0x410 && c <= 0x42F) return c + 0x20;
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;
    return c;
}

static bool latin_letter(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= 0xC0 && c <= 0x17F && c != 0xD7 && c != 0xF7);
}

int store_user_canon(const char *in, char out[STORE_USER_MAX + 1], const char **err)
{
    const char *e;
    if (!err)
        err = &e;
    static const char rules[] = "user names are 1-255 octets of UTF-8 (NFC) without "
                                "'/', '%', '*', control characters or spaces at either end";
    size_t n = strlen(in), o = 0;
    if (n == 0 || n > STORE_USER_MAX) {
        *err = store_seterr("invalid user name (%s long): %s", n ? "too" : "0 octets", rules);
        return STORE_EINVAL;
    }
    const unsigned char *s = (const unsigned char *)in;
    uint32_t prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t l = utf8_dec(s + i, n - i, &c);
        if (!l) {
            *err = store_seterr("invalid user name: not valid UTF-8; %s", rules);
            return STORE_EINVAL;
        }
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || c == '/' || c == '%' ||
            c == '*') {
            *err = store_seterr("invalid user name: character U+%04X not allowed; %s",
                                (unsigned)c, rules);
            return STORE_EINVAL;
        }
        if ((c == ' ' || c == 0xA0) && (i == 0 || i + l == n)) {
            *err = store_seterr("invalid user name: space at the start or end; %s", rules);
            return STORE_EINVAL;
        }
        if (c >= 0x300 && c <= 0x36F && latin_letter(prev)) {
            *err = store_seterr("invalid user name: combining accent (U+%04X) after a letter; "
                                "use the precomposed (NFC) character", (unsigned)c);
            return STORE_EINVAL;
        }
        char enc[4];
        size_t el = utf8_enc(fold(c), enc);
        if (o + el > STORE_USER_MAX) {
            *err = store_seterr("invalid user name: too long; %s", rules);
            return STORE_EINVAL;
        }
        memcpy(out + o, enc, el);
        o += el;
        prev = c;
        i += l;
    }
    out[o] = 0;
    return STORE_OK;
}

/* user record: u8 flags | pw_hash \0 | scram \0 | crc32c */
#define UF_ADMIN 1u
#define UF_DISABLED 2u

static int user_decode(const MDB_val *k, const MDB_val *v, struct user_rec *u)
{
    const unsigned char *b = v->mv_data;
    size_t n = v->mv_size;
    if (n < 7 || k->mv_size > STORE_USER_MAX || get_be32(b + n - 4) != crc32c(0, b, n - 4))
        return STORE_ECORRUPT;
    const char *p = (const char *)b + 1, *end = (const char *)b + n - 4;
    const char *z1 = memchr(p, 0, (size_t)(end - p));
    if (!z1)
        return STORE_ECORRUPT;
    const char *z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1));
    if (!z2 || (size_t)(z1 - p) >= sizeof u->pw_hash || (size_t)(z2 - z1 - 1) >= sizeof u->scram)
        return STORE_ECORRUPT;
    memcpy(u->name, k->mv_data, k->mv_size);
    u->name[k->mv_size] = 0;
    memcpy(u->pw_hash, p, (size_t)(z1 - p) + 1);
    memcpy(u->scram, z1 + 1, (size_t)(z2 - z1));
    u->admin = b[0] & UF_ADMIN;
    u->disabled = b[0] & UF_DISABLED;
    return STORE_OK;
}

static int user_put(struct inst *in, const struct user_rec *u, unsigned flags)
{
    unsigned char b[1 + sizeof u->pw_hash + sizeof u->scram + 4];
    size_t hl = strlen(u->pw_hash), sl = strlen(u->scram), n = 0;
    b[n++] = (unsigned char)((u->admin ? UF_ADMIN : 0) | (u->disabled ? UF_DISABLED : 0));
    memcpy(b + n, u->pw_hash, hl + 1);
    n += hl + 1;
    memcpy(b + n, u->scram, sl + 1);
    n += sl + 1;
    put_be32(b + n, crc32c(0, b, n));
    n += 4;
    MDB_val k = {strlen(u->name), (void *)u->name}, v = {n, b};
    return mdb_put(in->wr, in->dbi[DB_USERS], &k, &v, flags);
}

int inst_user_get(struct inst *in, const char *canon_name, struct user_rec *out)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    size_t n = strlen(canon_name);
    if (!n || n > STORE_USER_MAX)
        return STORE_ENOTFOUND;
    MDB_val k = {n, (void *)canon_name}, v;
    int rc = mdb_get(txn, in->dbi[DB_USERS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "users", NULL);
    return user_decode(&k, &v, out);
}

int inst_user_list(struct inst *in, int (*cb)(void *ctx, const struct user_rec *u), void *ctx)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, in->dbi[DB_USERS], &c);
    if (rc)
        return store_mdb_err(rc, "users", NULL);
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct user_rec u;
        if (user_decode(&k, &v, &u)) {
            ret = STORE_ECORRUPT;
            break;
        }
        if ((ret = cb(ctx, &u)))
            break;
    }
    mdb_cursor_close(c);
    return ret;
}

static int grant_key(const char *reader, const char *owner, char k[2 * STORE_USER_MAX + 2],
                     size_t *kl)
{
    size_t a = strlen(reader), b = owner ? strlen(owner) : 0;
    if (a > STORE_USER_MAX || b > STORE_USER_MAX)
        return STORE_EINVAL;
    memcpy(k, reader, a);
    k[a] = 0;
    if (b)
        memcpy(k + a + 1, owner, b);
    *kl = a + 1 + b;
    return STORE_OK;
}

bool inst_may_read(struct inst *in, const char *reader, const char *owner)
{
    struct user_rec r, o;
    if (inst_user_get(in, reader, &r) || r.disabled)
        return false;
    if (!strcmp(reader, owner))
        return true;
    if (inst_user_get(in, owner, &o))
        return false;
    if (r.admin)
        return true;
    char key[2 * STORE_USER_MAX + 2];
    size_t kl;
    if (grant_key(reader, owner, key, &kl))
        return false;
    MDB_val k = {kl, key}, v;
    return mdb_get(inst_cur_txn(in), in->dbi[DB_GRANTS], &k, &v) == 0;
}

int inst_grants_of(struct inst *in, const char *reader,
                   int (*cb)(void *ctx, const char *owner), void *ctx)
{
    MDB_txn *txn = inst_cur_txn(in);
    if (!txn)
        return STORE_EIO;
    char key[2 * STORE_USER_MAX + 2];
    size_t kl;
    if (grant_key(reader, NULL, key, &kl))
        return STORE_EINVAL;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, in->dbi[DB_GRANTS], &c);
    if (rc)
        return store_mdb_err(rc, "grants", NULL);
    MDB_val k = {kl, key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= kl || memcmp(k.mv_data, key, kl) ||
            k.mv_size - kl > STORE_USER_MAX)
            break;
        char owner[STORE_USER_MAX + 1];
        memcpy(owner, (char *)k.mv_data + kl, k.mv_size - kl);
        owner[k.mv_size - kl] = 0;
        if ((ret = cb(ctx, owner)))
            break;
    }
    mdb_cursor_close(c);
    return ret;
}

/* ---- writers ---- */

static int finish(struct inst *in, int rc, const char **err)
{
    if (rc) {
        inst_wr_abort(in);
        if (rc > 0)
            return store_mdb_err(rc, "users", err);
        return rc;
    }
    return inst_wr_commit(in, err);
}

static int set_password(struct user_rec *u, const char *password, const char **err)
{
    if (!password) {
        u->pw_hash[0] = u->scram[0] = 0;
        return STORE_OK;
    }
    int rc = secret_yescrypt(password, u->pw_hash, err);
    if (!rc)
        rc = secret_scram(password, 4096, u->scram, err);
    return rc;
}

int inst_user_add(struct inst *in, const char *name, const char *password, bool admin,
                  const char **err)
{
    struct user_rec u;
    memset(&u, 0, sizeof u);
    int rc = store_user_canon(name, u.name, err);
    if (rc)
        return rc;
    if ((rc = set_password(&u, password, err)))
        return rc;
    u.admin = admin;
    if ((rc = inst_wr_begin(in, err)))
        return rc;
    rc = user_put(in, &u, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        inst_wr_abort(in);
        *err = store_seterr("user '%s' already exists in instance '%s'", u.name, in->id);
        return STORE_EEXIST;
    }
    if (!rc) {
        /* Every account has an INBOX (IMAP clients expect one), even
         * before anything is imported. */
        struct mbox_rec mb;
        int mrc = store_mbox_ensure(in, u.name, "INBOX", &mb, err);
        if (mrc) {
            inst_wr_abort(in);
            return mrc;
        }
    }
    return finish(in, rc, err);
}

static int load_for_update(struct inst *in, const char *name, struct user_rec *u,
                           const char **err)
{
    char c[STORE_USER_MAX + 1];
    int rc = store_user_canon(name, c, err);
    if (rc)
        return rc;
    if ((rc = inst_wr_begin(in, err)))
        return rc;
    rc = inst_user_get(in, c, u);
    if (rc) {
        inst_wr_abort(in);
        *err = rc == STORE_ENOTFOUND
                   ? store_seterr("unknown user '%s' in instance '%s'", c, in->id)
                   : store_strerror(rc);
    }
    return rc;
}

int inst_user_passwd(struct inst *in, const char *name, const char *password, const char **err)
{
    struct user_rec u;
    int rc = load_for_update(in, name, &u, err);
    if (rc)
        return rc;
    if ((rc = set_password(&u, password, err))) {
        inst_wr_abort(in);
        return rc;
    }
    return finish(in, user_put(in, &u, 0), err);
}

int inst_user_set_flags(struct inst *in, const char *name, int admin, int disabled,
                        const char **err)
{
    struct user_rec u;
    int rc = load_for_update(in, name, &u, err);
    if (rc)
        return rc;
    if (admin >= 0)
        u.admin = admin;
    if (disabled >= 0)
        u.disabled = disabled;
    return finish(in, user_put(in, &u, 0), err);
}

/* Removing a user removes the account and its grants (both ways); the
 * archived mail stays (an archive never drops mail): adding the user again
 * gives access back. */
int inst_user_rm(struct inst *in, const char *name, const char **err)
{
    struct user_rec u;
    int rc = load_for_update(in, name, &u, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(u.name), u.name}, v;
    rc = mdb_del(in->wr, in->dbi[DB_USERS], &k, NULL);
    MDB_cursor *c;
    if (!rc)
        rc = mdb_cursor_open(in->wr, in->dbi[DB_GRANTS], &c);
    if (!rc) {
        size_t nl = strlen(u.name);
        int r2;
        for (r2 = mdb_cursor_get(c, &k, &v, MDB_FIRST); !r2 && !rc;
             r2 = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            const char *kp = k.mv_data;
            const char *z = memchr(kp, 0, k.mv_size);
            if (!z)
                continue;
            size_t rl = (size_t)(z - kp), ol = k.mv_size - rl - 1;
            if ((rl == nl && !memcmp(kp, u.name, nl)) || (ol == nl && !memcmp(z + 1, u.name, nl)))
                rc = mdb_cursor_del(c, 0);
        }
        mdb_cursor_close(c);
    }
    return finish(in, rc, err);
}

int inst_grant(struct inst *in, const char *reader, const char *owner, bool grant,
               const char **err)
{
    char r[STORE_USER_MAX + 1], o[STORE_USER_MAX + 1];
    int rc = store_user_canon(reader, r, err);
    if (!rc)
        rc = store_user_canon(owner, o, err);
    if (rc)
        return rc;
    if (!strcmp(r, o)) {
        *err = "a user can always read their own archive";
        return STORE_EINVAL;
    }
    if ((rc = inst_wr_begin(in, err)))
        return rc;
    struct user_rec u;
    const char *miss = inst_user_get(in, r, &u) ? r : inst_user_get(in, o, &u) ? o : NULL;
    if (miss && grant) {
        inst_wr_abort(in);
        *err = store_seterr("unknown user '%s' in instance '%s'", miss, in->id);
        return STORE_ENOTFOUND;
    }
    char key[2 * STORE_USER_MAX + 2];
    size_t kl;
    grant_key(r, o, key, &kl);
    MDB_val k = {kl, key}, v = {0, ""};
    if (grant) {
        rc = mdb_put(in->wr, in->dbi[DB_GRANTS], &k, &v, 0);
    } else {
        rc = mdb_del(in->wr, in->dbi[DB_GRANTS], &k, NULL);
        if (rc == MDB_NOTFOUND) {
            inst_wr_abort(in);
            *err = store_seterr("'%s' has no grant to read '%s'", r, o);
            return STORE_ENOTFOUND;
        }
    }
    return finish(in, rc, err);
}
