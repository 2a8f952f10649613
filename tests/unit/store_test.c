/* store_test.c — the archive store on temporary data dirs: CRC32C, user
 * names, registry, users/secrets/grants, messages (dedup, source keys,
 * counters, UIDVALIDITY), canonical partial reads across frame
 * boundaries, CRC-checked msginfo, import/export round trips (mbox,
 * Maildir++), the writer lock, verify catching corruption, backup and
 * restore, dates. */
#include <check.h>
#include <dirent.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zstd.h>
#include "tests/unit/unit_main.h"
#include "proto/canon.h"
#include "proto/msginfo.h"
#include "store/admin.h"
#include "store/b64chunk.h"
#include "store/date.h"
#include "store/store.h"
#include "store/store_int.h"

static char dir[64];
static struct store_cfg cfg;
static struct registry *reg;
static struct inst *in;

static void rm_rf(const char *p)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
    const char *err = NULL;
    snprintf(dir, sizeof dir, "/tmp/coffer-store-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    store_cfg_default(&cfg, dir);
    cfg.map_size = 1ull << 32;
    ck_assert_int_eq(registry_open(&cfg, true, &reg, &err), 0);
    ck_assert_int_eq(registry_instance_add(reg, "Demo", &err), 0);
    ck_assert_int_eq(inst_open(&cfg, "demo", true, &in, &err), 0);
    ck_assert_int_eq(inst_user_add(in, "alice", "pw1", false, &err), 0);
}

static void teardown(void)
{
    inst_close(in);
    registry_close(reg);
    in = NULL;
    reg = NULL;
    rm_rf(dir);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)l + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)l, f), (size_t)l);
    fclose(f);
    *n = (size_t)l;
    return b;
}

static int add(const char *mbox, const char *raw, size_t len, const char *key, uint32_t *uid,
               bool *added)
{
    const char *err = NULL;
    struct import_msg m = {.raw = (const unsigned char *)raw, .len = len, .flags = STORE_F_SEEN,
                           .internaldate = 1700000000, .tz = 60,
                           .srckey = key, .srckey_len = key ? strlen(key) : 0};
    int rc = inst_wr_begin(in, &err);
    ck_assert_int_eq(rc, 0);
    rc = store_add_message(in, "alice", mbox, &m, added, uid, &err);
    if (rc) {
        inst_wr_abort(in);
        return rc;
    }
    return inst_wr_commit(in, &err);
}

/* ---- pure functions ---- */

START_TEST(test_crc32c)
{
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    /* incremental = one shot */
    uint32_t c = crc32c(0, "12345", 5);
    ck_assert_uint_eq(crc32c(c, "6789", 4), 0xE3069283u);
    ck_assert_uint_eq(crc32c(0, "", 0), 0);
    /* every length and alignment around the hardware path's three-lane
     * rounds (768 octets) against a bitwise reference, whole and split */
    static unsigned char buf[5000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 131 + (i >> 7) * 17);
    for (size_t n = 0; n < 2400; n += n < 800 ? 1 : 13) {
        for (size_t off = 0; off < 3; off++) {
            uint32_t r = 0xFFFFFFFFu;
            for (size_t i = 0; i < n; i++) {
                r ^= buf[off + i];
                for (int k = 0; k < 8; k++)
                    r = r & 1 ? (r >> 1) ^ 0x82F63B78u : r >> 1;
            }
            r = ~r;
            ck_assert_uint_eq(crc32c(0, buf + off, n), r);
            ck_assert_uint_eq(crc32c(crc32c(0, buf + off, n / 3), buf + off + n / 3, n - n / 3), r);
        }
    }
}
END_TEST

START_TEST(test_user_canon)
{
    char out[STORE_USER_MAX + 1];
    const char *err;
    ck_assert_int_eq(store_user_canon("Jon.Doe", out, &err), 0);
    ck_assert_str_eq(out, "jon.doe");
    ck_assert_int_eq(store_user_canon("\xC3\x84RGER", out, &err), 0);   /* ÄRGER */
    ck_assert_str_eq(out, "\xC3\xA4rger");
    ck_assert_int_eq(store_user_canon("\xC5\x81UKASZ", out, &err), 0);  /* Ł -> ł */
    ck_assert_str_eq(out, "\xC5\x82ukasz");
    ck_assert_int_eq(store_user_canon("a b", out, &err), 0);
    static const char *const bad[] = {"", "a/b", "50%", "a*", " a", "a ", "a\tb",
                                      "\xC3", "\xC0\xAF", "e\xCC\x81", "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(store_user_canon(bad[i], out, &err) == STORE_EINVAL, "accepted %s", bad[i]);
    ck_assert_ptr_nonnull(strstr(err, "allowed") ? err : strstr(err, "NFC") ? err : NULL);
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = 0;
    ck_assert_int_eq(store_user_canon(longname, out, &err), STORE_EINVAL);
    longname[255] = 0;
    ck_assert_int_eq(store_user_canon(longname, out, &err), 0);
}
END_TEST

START_TEST(test_dates)
{
    int64_t t;
    int32_t tz;
    const char *d = "Tue, 1 Jan 2019 10:00:00 +0100 (CET)";
    ck_assert_int_eq(date_parse_rfc5322(d, strlen(d), &t, &tz), 0);
    ck_assert_int_eq(t, 1546333200);
    ck_assert_int_eq(tz, 60);
    d = "2 Feb 99 23:59 EST";
    ck_assert_int_eq(date_parse_rfc5322(d, strlen(d), &t, &tz), 0);
    ck_assert_int_eq(t, 918017940);
    ck_assert_int_eq(tz, -300);
    d = "not a date";
    ck_assert_int_eq(date_parse_rfc5322(d, strlen(d), &t, &tz), -1);
    struct tm tm;
    d = "MAILER-DAEMON Fri Feb 22 17:06:23 2008";
    ck_assert_int_eq(date_parse_asctime(d, strlen(d), &tm), 0);
    struct date_zone z;
    ck_assert_int_eq(date_zone_parse("+0200", &z), 0);
    ck_assert_int_eq(date_local_to_utc(&tm, &z, &tz), 1203699983 - 7200);
    ck_assert_int_eq(tz, 120);
    ck_assert_int_eq(date_zone_parse("Europe/Berlin", &z), 0);
    ck_assert_int_eq(date_local_to_utc(&tm, &z, &tz), 1203699983 - 3600);
    ck_assert_int_eq(tz, 60);
}
END_TEST

/* ---- registry ---- */

START_TEST(test_registry)
{
    const char *err;
    char id[STORE_ID_MAX + 1];
    bool dis;
    ck_assert_int_eq(registry_alias_add(reg, "demo", "Example", &err), 0);
    ck_assert_int_eq(registry_resolve(reg, "EXAMPLE", id), 0);
    ck_assert_str_eq(id, "demo");
    ck_assert_int_eq(registry_resolve(reg, "DeMo", id), 0);
    ck_assert_int_eq(registry_resolve(reg, "nope", id), STORE_ENOTFOUND);
    /* collisions: alias = id, alias twice, id = alias */
    ck_assert_int_eq(registry_alias_add(reg, "demo", "demo", &err), STORE_EEXIST);
    ck_assert_int_eq(registry_instance_add(reg, "example", &err), STORE_EEXIST);
    ck_assert_int_eq(registry_instance_add(reg, "-bad", &err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "[a-z0-9._-]"));
    ck_assert_int_eq(registry_instance_add(reg, "a/b", &err), STORE_EINVAL);
    ck_assert_int_eq(registry_alias_add(reg, "nope", "x", &err), STORE_ENOTFOUND);
    ck_assert_int_eq(registry_instance_disable(reg, "demo", true, &err), 0);
    ck_assert_int_eq(registry_resolve(reg, "example", id), STORE_ENOTFOUND);
    ck_assert_int_eq(registry_lookup(reg, "example", id, &dis), 0);
    ck_assert(dis);
    ck_assert_int_eq(registry_instance_disable(reg, "demo", false, &err), 0);
    ck_assert_int_eq(registry_alias_rm(reg, "demo", "example", &err), 0);
    ck_assert_int_eq(registry_resolve(reg, "example", id), STORE_ENOTFOUND);
    /* rm refuses a non-empty instance */
    inst_close(in);
    in = NULL;
    ck_assert_int_eq(registry_instance_rm(reg, "demo", false, &err), STORE_EEXIST);
    ck_assert_int_eq(registry_instance_rm(reg, "demo", true, &err), 0);
    ck_assert_int_eq(registry_resolve(reg, "demo", id), STORE_ENOTFOUND);
    char p[128];
    snprintf(p, sizeof p, "%s/instances/demo", dir);
    ck_assert_int_ne(access(p, F_OK), 0);
}
END_TEST

START_TEST(test_writer_lock)
{
    const char *err;
    struct inst *second;
    ck_assert_int_eq(inst_open(&cfg, "demo", true, &second, &err), STORE_EBUSY);
    ck_assert_ptr_nonnull(strstr(err, "--wait"));
    /* readers are never blocked */
    ck_assert_int_eq(inst_open(&cfg, "demo", false, &second, &err), 0);
    struct user_rec u;
    ck_assert_int_eq(inst_user_get(second, "alice", &u), 0);
    inst_close(second);
    struct registry *r2;
    ck_assert_int_eq(registry_open(&cfg, true, &r2, &err), STORE_EBUSY);
}
END_TEST

/* ---- users ---- */

static int b64d(const char *s, size_t n, unsigned char *out)
{
    return EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
}

START_TEST(test_users_secrets)
{
    const char *err;
    struct user_rec u;
    ck_assert_int_eq(inst_user_get(in, "alice", &u), 0);
    ck_assert(!u.admin && !u.disabled);
    ck_assert(strncmp(u.pw_hash, "$y$", 3) == 0);
    struct mbox_rec inbox;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &inbox), 0);   /* created with the user */
    ck_assert_uint_eq(inbox.messages, 0);
    ck_assert_uint_eq(inbox.uidnext, 1);
    ck_assert(secret_check_password(u.pw_hash, "pw1"));
    ck_assert(!secret_check_password(u.pw_hash, "pw2"));
    /* SCRAM secret: recompute StoredKey/ServerKey from the stored salt */
    unsigned iter;
    char salt64[64], st64[64], sk64[64];
    ck_assert_int_eq(sscanf(u.scram, "SCRAM-SHA-256$%u:%63[^$]$%63[^:]:%63s", &iter, salt64,
                            st64, sk64), 4);
    ck_assert_uint_ge(iter, 4096);
    unsigned char salt[48], sp[32], ck[32], sk[32], stored[32], want[48];
    int sl = b64d(salt64, strlen(salt64), salt);
    ck_assert_int_eq(sl, 18);   /* 16 octets + base64 padding */
    PKCS5_PBKDF2_HMAC("pw1", 3, salt, 16, (int)iter, EVP_sha256(), 32, sp);
    unsigned l = 32;
    HMAC(EVP_sha256(), sp, 32, (const unsigned char *)"Client Key", 10, ck, &l);
    HMAC(EVP_sha256(), sp, 32, (const unsigned char *)"Server Key", 10, sk, &l);
    SHA256(ck, 32, stored);
    b64d(st64, strlen(st64), want);
    ck_assert_mem_eq(want, stored, 32);
    b64d(sk64, strlen(sk64), want);
    ck_assert_mem_eq(want, sk, 32);
    /* duplicates, passwd, flags, rm */
    ck_assert_int_eq(inst_user_add(in, "ALICE", "x", false, &err), STORE_EEXIST);
    ck_assert_int_eq(inst_user_passwd(in, "Alice", "new", &err), 0);
    ck_assert_int_eq(inst_user_get(in, "alice", &u), 0);
    ck_assert(secret_check_password(u.pw_hash, "new"));
    ck_assert_int_eq(inst_user_set_flags(in, "alice", 1, 1, &err), 0);
    ck_assert_int_eq(inst_user_get(in, "alice", &u), 0);
    ck_assert(u.admin && u.disabled);
    ck_assert_int_eq(inst_user_passwd(in, "nobody", "x", &err), STORE_ENOTFOUND);
    ck_assert_int_eq(inst_user_rm(in, "alice", &err), 0);
    ck_assert_int_eq(inst_user_get(in, "alice", &u), STORE_ENOTFOUND);
    /* SASLprep subset */
    char o[64];
    ck_assert_int_eq(secret_saslprep("a\xC2\xA0" "b\xC2\xAD" "c", o, sizeof o, &err), 0);
    ck_assert_str_eq(o, "a bc");
    ck_assert_int_eq(secret_saslprep("a\x01", o, sizeof o, &err), STORE_EINVAL);
}
END_TEST

static int collect_owner(void *ctx, const char *owner)
{
    strcat(ctx, owner);
    strcat(ctx, ",");
    return 0;
}

START_TEST(test_grants)
{
    const char *err;
    ck_assert_int_eq(inst_user_add(in, "bob", "pw", false, &err), 0);
    ck_assert_int_eq(inst_user_add(in, "root", "pw", true, &err), 0);
    ck_assert(inst_may_read(in, "alice", "alice"));
    ck_assert(!inst_may_read(in, "bob", "alice"));
    ck_assert(inst_may_read(in, "root", "alice"));     /* admin */
    ck_assert_int_eq(inst_grant(in, "bob", "alice", true, &err), 0);
    inst_rd_begin(in);
    ck_assert(inst_may_read(in, "bob", "alice"));
    char list[256] = "";
    ck_assert_int_eq(inst_grants_of(in, "bob", collect_owner, list), 0);
    ck_assert_str_eq(list, "alice,");
    list[0] = 0;
    ck_assert_int_eq(inst_grants_of(in, "root", collect_owner, list), 0);
    ck_assert_str_eq(list, "");          /* admin access is implied, not granted */
    inst_rd_end(in);
    ck_assert_int_eq(inst_grant(in, "bob", "nobody", true, &err), STORE_ENOTFOUND);
    ck_assert_int_eq(inst_grant(in, "bob", "bob", true, &err), STORE_EINVAL);
    ck_assert_int_eq(inst_user_set_flags(in, "bob", -1, 1, &err), 0);
    ck_assert(!inst_may_read(in, "bob", "alice"));      /* disabled */
    ck_assert(!inst_may_read(in, "bob", "bob"));
    ck_assert_int_eq(inst_user_set_flags(in, "bob", -1, 0, &err), 0);
    ck_assert_int_eq(inst_grant(in, "bob", "alice", false, &err), 0);
    ck_assert(!inst_may_read(in, "bob", "alice"));
    ck_assert_int_eq(inst_grant(in, "bob", "alice", false, &err), STORE_ENOTFOUND);
}
END_TEST

/* ---- messages ---- */

static int walk_cb(void *ctx, const struct msg_ref *m)
{
    struct msg_ref *v = ctx;
    v[m->uid] = *m;
    return 0;
}

START_TEST(test_messages_dedup)
{
    static const char m1[] = "From: a@b\nSubject: hi\n\nbody\n";
    static const char m2[] = "From: c@d\r\nSubject: other\r\n\r\nbody2\r\n";
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", m1, sizeof m1 - 1, "k1", &uid, &added), 0);
    ck_assert(added);
    ck_assert_uint_eq(uid, 1);
    ck_assert_int_eq(add("inbox", m1, sizeof m1 - 1, "k2", &uid, &added), 0);
    ck_assert_uint_eq(uid, 2);
    ck_assert_int_eq(add("INBOX", m2, sizeof m2 - 1, NULL, &uid, &added), 0);
    ck_assert_uint_eq(uid, 3);
    /* same source key again: nothing added */
    ck_assert_int_eq(add("INBOX", m2, sizeof m2 - 1, "k1", &uid, &added), 0);
    ck_assert(!added);
    ck_assert_uint_eq(uid, 1);
    ck_assert_int_eq(add("Sent", m2, sizeof m2 - 1, "k1", &uid, &added), 0);
    ck_assert(added);   /* source keys are per mailbox */
    ck_assert_int_eq(inst_rd_begin(in), 0);
    struct mbox_rec mb, sent;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_mbox_get(in, "alice", "Sent", &sent), 0);
    ck_assert_int_eq(inst_mbox_get(in, "alice", "Nope", &sent) == STORE_ENOTFOUND, 1);
    ck_assert_int_eq(inst_mbox_get(in, "alice", "Sent", &sent), 0);
    ck_assert_uint_eq(mb.messages, 3);
    ck_assert_uint_eq(mb.uidnext, 4);
    ck_assert_uint_eq(mb.unseen, 0);
    ck_assert_uint_eq(sent.special_use, STORE_SU_SENT);
    ck_assert_uint_eq(mb.special_use, 0);
    ck_assert_uint_gt(sent.uidvalidity, mb.uidvalidity);   /* per-instance counter */
    ck_assert_uint_ne(sent.id, mb.id);
    /* canonical size: m1 has 3 bare LFs... 4 lines */
    ck_assert_uint_eq(mb.size, 2 * (sizeof m1 - 1 + 4) + sizeof m2 - 1);
    struct msg_ref refs[8];
    memset(refs, 0, sizeof refs);
    ck_assert_int_eq(inst_msgs_walk(in, mb.id, 2, walk_cb, refs), 0);
    ck_assert_uint_eq(refs[1].uid, 0);   /* walk started at uid 2 */
    ck_assert_uint_eq(refs[2].uid, 2);
    ck_assert_uint_eq(refs[3].uid, 3);
    struct msg_ref r1;
    ck_assert_int_eq(inst_msg_get(in, mb.id, 1, &r1), 0);
    ck_assert_uint_eq(r1.msgnum, refs[2].msgnum);       /* dedup */
    ck_assert_uint_ne(r1.msgnum, refs[3].msgnum);
    ck_assert_int_eq(r1.internaldate, 1700000000);
    ck_assert_int_eq(r1.internal_tz, 60);
    ck_assert_uint_eq(r1.flags, STORE_F_SEEN);
    ck_assert_uint_eq(r1.size, sizeof m1 - 1 + 4);
    ck_assert_int_eq(inst_msg_get(in, mb.id, 9, &r1), STORE_ENOTFOUND);
    const void *info;
    size_t il;
    ck_assert_int_eq(inst_msg_info(in, refs[3].msgnum, &info, &il), 0);
    struct msginfo mi;
    const char *err;
    ck_assert_int_eq(msginfo_open(&mi, info, il, &err), 0);
    ck_assert_uint_eq(mi.size, sizeof m2 - 1);
    uint64_t snap = inst_snapshot_id(in);
    inst_rd_end(in);
    ck_assert_int_eq(add("INBOX", m2, sizeof m2 - 1, "k9", &uid, &added), 0);
    inst_rd_begin(in);
    ck_assert_uint_gt(inst_snapshot_id(in), snap);
    inst_rd_end(in);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
}
END_TEST

struct collect { struct buf b; int calls; };
static int sink(void *ctx, const void *p, size_t n)
{
    struct collect *c = ctx;
    c->calls++;
    return buf_append(&c->b, p, n);
}

/* Message record of msgnum in the current transaction. */
static void load_msg_rec(uint64_t msgnum, struct msg_rec *m)
{
    unsigned char key[8];
    put_be64(key, msgnum);
    MDB_val k = {8, key}, v;
    ck_assert_int_eq(mdb_get(inst_txn(in), in->dbi[DB_MSG], &k, &v), 0);
    ck_assert_int_eq(msg_rec_decode(v.mv_data, v.mv_size, m), 0);
}

/* Number of chunks of msgnum's table overlapping canonical [a, b). */
static int overlapping_chunks(uint64_t msgnum, uint64_t a, uint64_t b)
{
    struct msg_rec m;
    load_msg_rec(msgnum, &m);
    int n = 0;
    for (uint32_t i = 0; i < m.nchunks; i++) {
        struct msg_chunk ch;
        msg_rec_chunk(&m, i, &ch);
        n += ch.canon_off < b && ch.canon_off + ch.canon_len > a;
    }
    return n;
}

START_TEST(test_partial_read)
{
    /* 700 KiB with bare LFs, a CR at the end of the first frame and its
     * LF at the start of the second, so the per-frame CR state matters. */
    size_t n = 700 * 1024;
    char *raw = malloc(n);
    for (size_t i = 0; i < n; i++)
        raw[i] = (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
    memcpy(raw, "Subject: big\n\n", 14);
    raw[STORE_CHUNK - 1] = '\r';
    raw[STORE_CHUNK] = '\n';
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", raw, n, NULL, &uid, &added), 0);
    struct buf canon;
    buf_init(&canon, 0);
    int pcr = 0;
    canon_append(&canon, (unsigned char *)raw, n, &pcr);
    inst_rd_begin(in);
    struct mbox_rec mb;
    struct msg_ref r;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    ck_assert_uint_eq(r.size, canon.len);
    static const uint64_t offs[][2] = {
        {0, 100}, {STORE_CHUNK - 10, 40}, {STORE_CHUNK + 4000, 5}, {600000, 1 << 20},
        {0, UINT64_MAX}, {1, 0}, {100000000, 10},
    };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        struct collect c;
        buf_init(&c.b, 0);
        c.calls = 0;
        ck_assert_int_eq(inst_msg_read(in, r.msgnum, offs[i][0], offs[i][1], sink, &c), 0);
        uint64_t o = offs[i][0] < canon.len ? offs[i][0] : canon.len;
        uint64_t l = offs[i][1] < canon.len - o ? offs[i][1] : canon.len - o;
        ck_assert_uint_eq(c.b.len, l);
        if (l)
            ck_assert_mem_eq(c.b.data, canon.data + o, l);
        buf_free(&c.b);
    }
    /* the last 64 KiB touch only the frames that overlap them */
    struct collect c;
    buf_init(&c.b, 0);
    c.calls = 0;
    ck_assert_int_eq(inst_msg_read(in, r.msgnum, canon.len - 65536, 65536, sink, &c), 0);
    ck_assert_int_eq(c.calls, overlapping_chunks(r.msgnum, canon.len - 65536, canon.len));
    ck_assert_int_le(c.calls, 65536 / store_cdc.min + 2);
    buf_free(&c.b);
    /* the map is found without /proc too (cofferd children are chrooted):
     * from a page header, the same address /proc/self/maps names */
    void *via_proc = in->map_base;
    size_t len_proc = in->map_len;
    ck_assert_ptr_nonnull(via_proc);
    ck_assert_ptr_ne(via_proc, (void *)-1);
    in->map_base = (void *)-1;
    inst_rd_end(in);
    size_t rn = 200000;
    char *rnd = malloc(rn);
    uint32_t x = 12345;
    for (size_t i = 0; i < rn; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (i % 70 == 69) ? '\n' : (char)(33 + (x >> 16) % 90);   /* poorly compressible */
    }
    memcpy(rnd, "Subject: r\n\n", 12);
    uint32_t ruid;
    ck_assert_int_eq(add("INBOX", rnd, rn, NULL, &ruid, &added), 0);
    free(rnd);
    in->map_base = (void *)-1;     /* as if /proc/self/maps were unreadable */
    inst_rd_begin(in);
    struct msg_ref rr;
    ck_assert_int_eq(inst_msg_get(in, mb.id, ruid, &rr), 0);
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_read(in, rr.msgnum, 1000, 150000, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, 150000);
    buf_free(&c.b);
    ck_assert_ptr_eq(in->map_base, via_proc);
    ck_assert_uint_eq(in->map_len, len_proc);
    /* raw export gives the original octets */
    c.calls = 0;
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r.msgnum, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, n);
    ck_assert_mem_eq(c.b.data, raw, n);
    buf_free(&c.b);
    inst_rd_end(in);
    buf_free(&canon);
    free(raw);
}
END_TEST

/* Key (chunk id) of chunk i of message msgnum (a version 2 record). */
static void chunk_key_of(uint64_t msgnum, uint32_t i, unsigned char out[8])
{
    inst_rd_begin(in);
    struct msg_rec m;
    load_msg_rec(msgnum, &m);
    ck_assert_uint_eq(m.version, 2);
    ck_assert_uint_lt(i, m.nchunks);
    struct msg_chunk ch;
    msg_rec_chunk(&m, i, &ch);
    ck_assert_uint_gt(ch.chunk_id, 0);
    put_be64(out, ch.chunk_id);
    inst_rd_end(in);
}

/* The reference record of chunk id (its key: the chunk's SHA-256), found
 * by a walk: tests only. */
static void cref_of(MDB_txn *txn, uint64_t id, unsigned char key[CHUNK_KEY], struct cref *out)
{
    MDB_cursor *c;
    MDB_val k, v;
    ck_assert_int_eq(mdb_cursor_open(txn, in->dbi[DB_CREF], &c), 0);
    int found = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc && !found;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        ck_assert_int_eq(cref_decode(v.mv_data, v.mv_size, out), 0);
        if (out->id == id) {
            memcpy(key, k.mv_data, CHUNK_KEY);
            found = 1;
        }
    }
    mdb_cursor_close(c);
    ck_assert(found);
}

/* Flip one octet of a record in place: the CRC must catch it. */
static void corrupt(int db, const void *key, size_t klen, size_t at)
{
    const char *err;
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    MDB_val k = {klen, (void *)key}, v;
    ck_assert_int_eq(mdb_get(in->wr, in->dbi[db], &k, &v), 0);
    unsigned char *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at % v.mv_size] ^= 0x20;
    v.mv_data = copy;
    ck_assert_int_eq(mdb_put(in->wr, in->dbi[db], &k, &v, 0), 0);
    free(copy);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
}

START_TEST(test_corruption)
{
    static const char m1[] = "From: a@b\nSubject: hi\n\nbody\n";
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", m1, sizeof m1 - 1, NULL, &uid, &added), 0);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    unsigned char key[8];
    put_be64(key, 1);
    corrupt(DB_INFO, key, 8, 20);
    const void *info;
    size_t il;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_info(in, 1, &info, &il), STORE_ECORRUPT);
    inst_rd_end(in);
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    corrupt(DB_INFO, key, 8, 20);     /* flip back */
    ck_assert_int_eq(store_verify_inst(in, devnull), 0);
    unsigned char ck[8];
    chunk_key_of(1, 0, ck);
    corrupt(DB_CHUNK, ck, 8, CHUNK_VAL_HDR + 7);      /* compressed frame */
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    corrupt(DB_CHUNK, ck, 8, CHUNK_VAL_HDR + 7);
    ck_assert_int_eq(store_verify_inst(in, devnull), 0);
    unsigned char mk[8];
    struct mbox_rec mb;
    inst_rd_begin(in);
    inst_mbox_get(in, "alice", "INBOX", &mb);
    inst_rd_end(in);
    put_be32(mk, mb.id);
    put_be32(mk + 4, 1);
    corrupt(DB_MMSG, mk, 8, 3);
    struct msg_ref r;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_get(in, mb.id, 1, &r), STORE_ECORRUPT);
    inst_rd_end(in);
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    fclose(devnull);
}
END_TEST

/* ---- import / export ---- */

/* ---- content-defined chunks ---- */

static unsigned char *pseudo_random(size_t n, uint32_t seed)
{
    unsigned char *b = malloc(n);
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (unsigned char)(x >> 56);
    }
    return b;
}

/* All cut offsets of p[0..n) (ends of chunks), returned count. */
static size_t cuts_of(const unsigned char *p, size_t n, size_t *out, size_t cap)
{
    size_t k = 0, s = 0;
    while (s < n && k < cap) {
        size_t l = cdc_cut(p + s, n - s, &store_cdc);
        ck_assert_uint_gt(l, 0);
        if (s + l < n) {
            ck_assert_uint_ge(l, store_cdc.min);
        }
        ck_assert_uint_le(l, store_cdc.max);
        s += l;
        out[k++] = s;
    }
    ck_assert_uint_eq(s, n);
    return k;
}

START_TEST(test_cdc)
{
    size_t n = 2u << 20, cap = n / store_cdc.min + 2;
    unsigned char *a = pseudo_random(n, 7);
    size_t *ca = malloc(cap * sizeof *ca), *cb = malloc(cap * sizeof *cb);
    size_t na = cuts_of(a, n, ca, cap), nb = cuts_of(a, n, cb, cap);
    /* deterministic */
    ck_assert_uint_eq(na, nb);
    ck_assert_mem_eq(ca, cb, na * sizeof *ca);
    /* the average is near the target (random data: 2 MiB / 8 KiB = 256) */
    ck_assert_uint_gt(na, n / store_cdc.avg / 2);
    ck_assert_uint_lt(na, n / store_cdc.avg * 2);
    /* 100 octets inserted at 700000: cuts before it are unchanged, and
     * after at most a few chunks the cuts are the old ones + 100 */
    unsigned char *b = malloc(n + 100);
    memcpy(b, a, 700000);
    memset(b + 700000, 'x', 100);
    memcpy(b + 700100, a + 700000, n - 700000);
    nb = cuts_of(b, n + 100, cb, cap);
    size_t i = 0;
    while (i < na && ca[i] < 700000) {
        ck_assert_uint_eq(ca[i], cb[i]);
        i++;
    }
    size_t shared = 0, j = 0;
    for (size_t t = i; t < na; t++) {
        while (j < nb && cb[j] < ca[t] + 100)
            j++;
        shared += j < nb && cb[j] == ca[t] + 100;
    }
    ck_assert_uint_ge(shared, (na - i) - 3);
    /* no cut in a run shorter than min; a run without cut points ends at max */
    unsigned char *z = calloc(1, 300000);
    ck_assert_uint_eq(cdc_cut(z, 1000, &store_cdc), 1000);
    ck_assert_uint_eq(cdc_cut(z, 300000, &store_cdc), store_cdc.max);
    ck_assert_uint_eq(cdc_cut(a, store_cdc.min, &store_cdc), store_cdc.min);
    free(z);
    free(a);
    free(b);
    free(ca);
    free(cb);
}
END_TEST

/* A multipart message: a short text part, then a base64 "attachment"
 * made of lines [first, first + nlines) of a fixed pseudo-random pool. */
static char *attach_msg(const char *subject, int first, int nlines, size_t *len)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct buf m;
    buf_init(&m, 0);
    buf_printf(&m, "From: a@example.org\nSubject: %s\nMIME-Version: 1.0\n"
               "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
               "Content-Type: text/plain\n\nSee the attached file, %s.\n\n--b1\n"
               "Content-Type: application/octet-stream; name=\"x.bin\"\n"
               "Content-Transfer-Encoding: base64\n\n", subject, subject);
    for (int l = first; l < first + nlines; l++) {
        uint64_t x = (uint64_t)l * 0x9E3779B97F4A7C15ull + 1;
        char line[77];
        for (int c = 0; c < 76; c++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line[c] = b64[x & 63];
        }
        line[76] = '\n';
        buf_append(&m, line, 77);
    }
    buf_puts(&m, "\n--b1--\n");
    *len = m.len;
    return (char *)m.data;
}

static int count_entries(int db)
{
    MDB_stat st;
    inst_rd_begin(in);
    ck_assert_int_eq(mdb_stat(inst_txn(in), in->dbi[db], &st), 0);
    inst_rd_end(in);
    return (int)st.ms_entries;
}

/* Stored frame octets of msgnum's chunks; *refs_out the largest chunk
 * refcount, *uniq_raw the raw octets of chunks only it refers to. */
static uint64_t stored_of(uint64_t msgnum, uint64_t *refs_out, uint64_t *uniq_raw)
{
    inst_rd_begin(in);
    struct msg_rec m;
    load_msg_rec(msgnum, &m);
    uint64_t sum = 0, maxref = 0, uniq = 0;
    for (uint32_t i = 0; i < m.nchunks; i++) {
        struct msg_chunk ch;
        msg_rec_chunk(&m, i, &ch);
        sum += ch.stored_len;
        unsigned char hk[CHUNK_KEY];
        struct cref cr;
        cref_of(inst_txn(in), ch.chunk_id, hk, &cr);
        ck_assert_uint_eq(cr.raw_len, ch.raw_len);
        ck_assert_uint_eq(cr.stored_len, ch.stored_len);
        if (cr.refcount > maxref)
            maxref = cr.refcount;
        if (cr.refcount == 1)
            uniq += cr.raw_len;
    }
    inst_rd_end(in);
    *refs_out = maxref;
    *uniq_raw = uniq;
    return sum;
}

/* Literals_Block_Type of every compressed block of the zstd frame f
 * (RFC 8878 3.1.1.2, 3.1.1.3.1): bit t of the result is set if some block
 * has literals of type t (0 raw, 1 RLE, 2 Huffman, 3 treeless). */
static unsigned literal_types(const unsigned char *f, size_t n)
{
    ck_assert_uint_ge(n, 6);
    ck_assert_uint_eq(f[0] | f[1] << 8 | f[2] << 16 | (unsigned)f[3] << 24, 0xFD2FB528u);
    unsigned fhd = f[4], did = fhd & 3, single = (fhd >> 5) & 1, fcs = fhd >> 6;
    size_t p = 5 + (single ? 0 : 1) + (did ? 1u << (did - 1) : 0) +
               (fcs ? 1u << fcs : single);
    unsigned types = 0;
    for (;;) {
        ck_assert_uint_le(p + 3, n);
        uint32_t bh = f[p] | f[p + 1] << 8 | (uint32_t)f[p + 2] << 16;
        unsigned last = bh & 1, type = (bh >> 1) & 3;
        uint32_t size = bh >> 3;
        p += 3;
        if (type == 2) {
            ck_assert_uint_lt(p, n);
            types |= 1u << (f[p] & 3);
        }
        p += type == 1 ? 1 : size;
        if (last)
            break;
    }
    return types;
}

/* inst_msg_read_buf appends what inst_msg_read gives, for every range
 * (chunk starts, middles, ends, across chunks, past the end), on a message
 * with bare LF, CRLF and a stored header; inst_msg_head_raw hands out the
 * stored header whose canonical form is BODY[HEADER]. */
START_TEST(test_read_buf)
{
    size_t al;
    char *am = attach_msg("rb", 7, 900, &al);      /* ~70 KB: several chunks */
    struct buf m;
    buf_init(&m, 0);
    buf_append(&m, am, al);
    buf_puts(&m, "crlf tail\r\nand a bare CR\r then LF\n");
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", (const char *)m.data, m.len, NULL, &uid, &added), 0);
    inst_rd_begin(in);
    struct mbox_rec mb;
    struct msg_ref r;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    struct msg_rec rec;
    load_msg_rec(r.msgnum, &rec);
    ck_assert_uint_ge(rec.nchunks, 3);
    uint64_t total = rec.canon_size;
    struct buf got;
    buf_init(&got, 0);
    for (uint64_t off = 0; off < total + 10; off += off < 200 ? 37 : 4099) {
        for (uint64_t len = 1; len < total + 20; len = len * 3 + 5) {
            struct collect c = {0};
            buf_init(&c.b, 0);
            ck_assert_int_eq(inst_msg_read(in, r.msgnum, off, len, sink, &c), 0);
            buf_reset(&got);
            buf_puts(&got, "prefix");
            ck_assert_int_eq(inst_msg_read_buf(in, r.msgnum, off, len, &got), 0);
            ck_assert_uint_eq(got.len, 6 + c.b.len);
            ck_assert(c.b.len == 0 || memcmp(got.data + 6, c.b.data, c.b.len) == 0);
            buf_free(&c.b);
        }
    }
    /* the header */
    const void *info;
    size_t ilen;
    struct msginfo mi;
    const char *err;
    uint64_t hoff, hlen;
    uint32_t idx;
    bool exists;
    ck_assert_int_eq(inst_msg_info(in, r.msgnum, &info, &ilen), 0);
    ck_assert_int_eq(msginfo_open(&mi, info, ilen, &err), 0);
    ck_assert_int_eq(msginfo_section(&mi, NULL, 0, MSGINFO_S_HEADER, &hoff, &hlen, &idx,
                                     &exists, &err), 0);
    ck_assert_uint_eq(hoff, 0);
    const unsigned char *raw;
    size_t rawlen;
    ck_assert_int_eq(inst_msg_head_raw(in, r.msgnum, hlen, &raw, &rawlen), 0);
    size_t hend = 0;
    while (hend + 1 < m.len && !(m.data[hend] == '\n' && m.data[hend + 1] == '\n'))
        hend++;
    ck_assert_uint_eq(rawlen, hend + 2);
    ck_assert_mem_eq(raw, m.data, rawlen);
    struct buf canon;
    buf_init(&canon, 0);
    int pcr = 0;
    ck_assert_int_eq(canon_append(&canon, raw, rawlen, &pcr), 0);
    ck_assert_uint_eq(canon.len, hlen);
    /* another length is not the header chunk */
    ck_assert_int_eq(inst_msg_head_raw(in, r.msgnum, hlen - 1, &raw, &rawlen), STORE_ENOTFOUND);
    inst_rd_end(in);

    /* a header that does not compress (a signature's base64) is stored as
     * raw blocks and served from the map, without a copy */
    buf_reset(&m);
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint64_t x = 99;
    buf_puts(&m, "From: a@example.org\nSubject: signed\nDKIM-Signature: v=1; b=\n");
    for (int l = 0; l < 30; l++) {
        buf_putc(&m, '\t');
        for (int k = 0; k < 72; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            buf_putc(&m, b64[x >> 58]);
        }
        buf_putc(&m, '\n');
    }
    buf_puts(&m, "\nbody\n");
    size_t sh = m.len - 5;   /* the header with its blank line */
    ck_assert_int_eq(add("INBOX", (const char *)m.data, m.len, NULL, &uid, &added), 0);
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    load_msg_rec(r.msgnum, &rec);
    struct msg_chunk ch;
    msg_rec_chunk(&rec, 0, &ch);
    ck_assert_uint_eq(ch.raw_len, sh);
    ck_assert_uint_eq(ch.stored_len, sh + 12);
    const void *frame;
    size_t flen;
    ck_assert_int_eq(chunk_view(in, inst_txn(in), ch.chunk_id, ch.raw_len, ch.stored_len, &got,
                                &raw, &frame, &flen), 0);
    ck_assert_ptr_eq(raw, (const unsigned char *)frame + CHUNK_VAL_HDR + 12);
    ck_assert_mem_eq(raw, m.data, sh);
    inst_rd_end(in);
    buf_free(&canon);
    buf_free(&got);
    buf_free(&m);
    free(am);
}
END_TEST

/* chunk_stored_frame writes frames any zstd decoder reads, one raw block
 * per 128 KiB (the largest block zstd allows), including the empty one. */
START_TEST(test_stored_frame)
{
    static const size_t sizes[] = {0, 1, 4095, 131071, 131072, 131073, 262144};
    size_t maxn = 262144;
    unsigned char *src = malloc(maxn), *f = malloc(maxn + 64), *dec = malloc(maxn + 1);
    for (size_t i = 0; i < maxn; i++)
        src[i] = (unsigned char)(i * 7 + (i >> 9));
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        size_t fl = chunk_stored_frame(f, src, n);
        size_t blocks = n ? (n + 131071) / 131072 : 1;
        ck_assert_uint_eq(fl, 9 + 3 * blocks + n);
        ck_assert_uint_eq(ZSTD_getFrameContentSize(f, fl), n);
        ck_assert_uint_eq(ZSTD_findFrameCompressedSize(f, fl), fl);
        size_t d = ZSTD_decompress(dec, maxn + 1, f, fl);
        ck_assert_msg(!ZSTD_isError(d), "%zu: %s", n, ZSTD_getErrorName(d));
        ck_assert_uint_eq(d, n);
        if (n)
            ck_assert_mem_eq(dec, src, n);
        ck_assert_uint_eq(literal_types(f, fl), 0);
    }
    free(src);
    free(f);
    free(dec);
}
END_TEST

/* The header chunk and small text chunks are stored uncompressed, in
 * zstd raw blocks (chunk_stored_frame), so a folder open or BODY.PEEK[1]
 * reads them from the map without zstd; attachments keep Huffman literals.
 * They are still ordinary frames: a plain decoder turns the header frame
 * into the exact header octets and the message exports byte-identically. */
START_TEST(test_header_frame)
{
    struct buf m;
    buf_init(&m, 0);
    uint32_t x = 12345;
    for (int i = 0; i < 12; i++) {
        x = x * 1103515245u + 12345u;
        buf_printf(&m, "Received: from relay%u.mx%u.example.net (relay%u.mx%u.example.net "
                   "[10.%u.%u.%u])\n\tby mail.example.org with ESMTPS id %08X;\n"
                   "\tTue, %u Nov 2026 %02u:%02u:%02u +0000\n", x % 97, x % 13, x % 97, x % 13,
                   x % 251, (x >> 8) % 251, (x >> 16) % 251, x, 1 + x % 28, x % 24,
                   (x >> 5) % 60, (x >> 11) % 60);
    }
    buf_puts(&m, "From: Alice Example <alice@example.org>\nTo: bob@example.net\n"
                 "Subject: quarterly figures for the archive migration\n"
                 "Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
                 "Message-ID: <20261124100000.abc@example.org>\nMIME-Version: 1.0\n"
                 "Content-Type: text/plain; charset=utf-8\n\n");
    size_t hlen = m.len;
    ck_assert_uint_gt(hlen, 1200);
    for (int i = 0; i < 40; i++)
        buf_printf(&m, "Line %d of the body, with the figures the header promised.\n", i);
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", (const char *)m.data, m.len, NULL, &uid, &added), 0);
    ck_assert(added);

    /* what the writer did before: the same header at level 3 codes its
     * literals with Huffman (so the check below can tell the two apart) */
    size_t cap = ZSTD_compressBound(hlen);
    unsigned char *plain = malloc(cap);
    size_t pz = ZSTD_compress(plain, cap, m.data, hlen, 3);
    ck_assert(!ZSTD_isError(pz));
    ck_assert_uint_ne(literal_types(plain, pz) & 4, 0);

    inst_rd_begin(in);
    struct msg_ref r;
    struct mbox_rec mb;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    struct msg_rec rec;
    load_msg_rec(r.msgnum, &rec);
    ck_assert_uint_eq(rec.version, 2);
    ck_assert_uint_ge(rec.nchunks, 2);
    struct msg_chunk ch;
    msg_rec_chunk(&rec, 0, &ch);
    ck_assert_uint_eq(ch.raw_len, hlen);       /* the header is its own chunk */
    struct buf out;
    buf_init(&out, 0);
    const void *frame;
    size_t flen;
    ck_assert_int_eq(chunk_load(in, inst_txn(in), ch.chunk_id, ch.raw_len, ch.stored_len, &out,
                                &frame, &flen), 0);
    ck_assert_uint_eq(out.len, hlen);
    ck_assert_mem_eq(out.data, m.data, hlen);
    /* a plain decoder (no context, no parameters) reads the frame too */
    unsigned char *dec = malloc(hlen);
    ck_assert_uint_eq(ZSTD_decompress(dec, hlen, (const unsigned char *)frame + CHUNK_VAL_HDR,
                                      ch.stored_len), hlen);
    ck_assert_mem_eq(dec, m.data, hlen);
    free(dec);
    unsigned t = literal_types((const unsigned char *)frame + CHUNK_VAL_HDR, ch.stored_len);
    /* this header repeats itself: raw literals keep under 70 % of it, so
     * it stays compressed (without Huffman tables); test_read_buf has
     * one that is stored */
    ck_assert_uint_eq(t & 12, 0);
    ck_assert_uint_ne(t, 0);
    ck_assert_uint_le(ch.stored_len, hlen * 7 / 10);
    /* the text body (2.4 KB, one chunk) too */
    msg_rec_chunk(&rec, 1, &ch);
    ck_assert_uint_eq(ch.raw_len, m.len - hlen);
    ck_assert_int_eq(chunk_load(in, inst_txn(in), ch.chunk_id, ch.raw_len, ch.stored_len, &out,
                                &frame, &flen), 0);
    ck_assert_mem_eq(out.data, m.data + hlen, ch.raw_len);
    t = literal_types((const unsigned char *)frame + CHUNK_VAL_HDR, ch.stored_len);
    ck_assert_uint_eq(t & 12, 0);               /* stored, or raw literals */
    ck_assert(t == 0 ? ch.stored_len == ch.raw_len + 12 : ch.stored_len <= ch.raw_len / 2);
    /* the whole message exports byte-identically */
    struct collect c = {0};
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r.msgnum, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, m.len);
    ck_assert_mem_eq(c.b.data, m.data, m.len);
    buf_free(&c.b);
    inst_rd_end(in);

    /* a base64 attachment takes the base64 form (store/b64chunk.h): its
     * decoded octets (random: stored as they are, 3/4 of the text) */
    size_t al;
    char *am = attach_msg("att", 0, 300, &al);
    ck_assert_int_eq(add("INBOX", am, al, NULL, &uid, &added), 0);
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    load_msg_rec(r.msgnum, &rec);
    int nb64 = 0;
    for (uint32_t i = 0; i < rec.nchunks; i++) {
        msg_rec_chunk(&rec, i, &ch);
        ck_assert_int_eq(chunk_load(in, inst_txn(in), ch.chunk_id, ch.raw_len, ch.stored_len,
                                    &out, &frame, &flen), 0);
        const unsigned char *v = (const unsigned char *)frame + CHUNK_VAL_HDR;
        if (b64c_is(v, ch.stored_len)) {
            nb64++;
            ck_assert_uint_eq(v[4], 0);             /* LF line ends, octets stored raw */
            ck_assert_uint_le(ch.stored_len, ch.raw_len * 3 / 4 + 64);
            continue;
        }
        t = literal_types(v, ch.stored_len);
        if (i == 0)
            ck_assert_uint_eq(t & 12, 0);
    }
    ck_assert_int_ge(nb64, 1);
    c = (struct collect){0};
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r.msgnum, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, al);
    ck_assert_mem_eq(c.b.data, am, al);
    buf_free(&c.b);
    inst_rd_end(in);
    free(am);
    buf_free(&out);
    free(plain);
    buf_free(&m);
}
END_TEST

/* A base64 attachment of CR LF lines with '=' padding, from data that
 * compresses (so its decoded octets are kept as a zstd frame): every read
 * path gives back the exact octets, and verify checks the form. */
START_TEST(test_b64_chunks)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct buf m;
    buf_init(&m, 0);
    buf_puts(&m, "From: a@example.org\r\nSubject: b64\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
                 "Content-Type: text/plain\r\n\r\nattached\r\n--b1\r\n"
                 "Content-Type: application/octet-stream; name=\"t.csv\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n");
    size_t body = m.len;
    /* 90,001 octets of a repetitive table: 2 '=' of padding */
    struct buf bin;
    buf_init(&bin, 0);
    for (int i = 0; bin.len < 90001; i++)
        buf_printf(&bin, "%d;row %d;%d.%02d;EUR\n", i, i * 7 % 1000, i % 97, i % 100);
    bin.len = 90001;
    size_t col = 0;
    for (size_t i = 0; i < bin.len; i += 3) {
        uint32_t v = (uint32_t)bin.data[i] << 16;
        size_t k = bin.len - i < 3 ? bin.len - i : 3;
        if (k > 1)
            v |= (uint32_t)bin.data[i + 1] << 8;
        if (k > 2)
            v |= bin.data[i + 2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], k > 1 ? b64[(v >> 6) & 63] : '=',
                     k > 2 ? b64[v & 63] : '='};
        buf_append(&m, q, 4);
        if ((col += 4) == 76) {
            buf_puts(&m, "\r\n");
            col = 0;
        }
    }
    buf_puts(&m, "\r\n--b1--\r\n");
    size_t body_end = m.len - 10;
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", (const char *)m.data, m.len, NULL, &uid, &added), 0);
    inst_rd_begin(in);
    struct mbox_rec mb;
    struct msg_ref r;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_msg_get(in, mb.id, uid, &r), 0);
    struct msg_rec rec;
    load_msg_rec(r.msgnum, &rec);
    struct buf out;
    buf_init(&out, 0);
    size_t off = 0, b64raw = 0, b64stored = 0;
    for (uint32_t i = 0; i < rec.nchunks; i++) {
        struct msg_chunk ch;
        const void *frame;
        size_t flen;
        msg_rec_chunk(&rec, i, &ch);
        ck_assert_int_eq(chunk_load(in, inst_txn(in), ch.chunk_id, ch.raw_len, ch.stored_len,
                                    &out, &frame, &flen), 0);
        ck_assert_mem_eq(out.data, m.data + off, ch.raw_len);
        const unsigned char *v = (const unsigned char *)frame + CHUNK_VAL_HDR;
        if (off >= body && off + ch.raw_len <= body_end) {
            /* every chunk inside the attachment's body takes the form */
            ck_assert_msg(b64c_is(v, ch.stored_len), "chunk %u at %zu len %u body %zu..%zu", i, off, ch.raw_len, body, body_end);
            ck_assert_uint_eq(v[4], B64C_F_CRLF | B64C_F_ZSTD);
            b64raw += ch.raw_len;
            b64stored += ch.stored_len;
        }
        off += ch.raw_len;
    }
    ck_assert_uint_eq(off, m.len);
    ck_assert_uint_gt(b64raw, 100000);
    ck_assert_uint_lt(b64stored, b64raw / 4);   /* the table compresses */
    /* whole message and ranges across chunk edges: the canonical octets */
    struct collect c = {0};
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r.msgnum, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, m.len);
    ck_assert_mem_eq(c.b.data, m.data, m.len);
    buf_free(&c.b);
    for (uint64_t o = 0; o < m.len; o += 7919) {
        c = (struct collect){0};
        buf_init(&c.b, 0);
        ck_assert_int_eq(inst_msg_read(in, r.msgnum, o, 20000, sink, &c), 0);
        size_t l = m.len - o < 20000 ? m.len - o : 20000;
        ck_assert_uint_eq(c.b.len, l);
        ck_assert_mem_eq(c.b.data, m.data + o, l);
        buf_free(&c.b);
    }
    inst_rd_end(in);
    /* inst_msg_read_buf (FETCH BODY[]): whole chunks in the base64 form
     * are written canonical straight into the buffer. The same message
     * with LF line ends too, so that CRs are inserted on the way. */
    struct buf lf;
    buf_init(&lf, 0);
    for (size_t i = 0; i < m.len; i++)
        if (!(m.data[i] == '\r' && i + 1 < m.len && m.data[i + 1] == '\n'))
            buf_putc(&lf, m.data[i]);
    uint32_t uid2;
    ck_assert_int_eq(add("INBOX", (const char *)lf.data, lf.len, NULL, &uid2, &added), 0);
    inst_rd_begin(in);
    for (int v = 0; v < 2; v++) {
        struct msg_ref r2;
        ck_assert_int_eq(inst_msg_get(in, mb.id, v ? uid2 : uid, &r2), 0);
        struct buf rb;
        buf_init(&rb, 0);
        for (uint64_t o = 0; o < m.len; o += v ? 3001 : 13001) {
            uint64_t want = o == 0 ? UINT64_MAX : 40000;
            buf_reset(&rb);
            buf_puts(&rb, "x");             /* appended after what is there */
            ck_assert_int_eq(inst_msg_read_buf(in, r2.msgnum, o, want, &rb), 0);
            size_t l = m.len - o < want ? m.len - o : want;
            ck_assert_uint_eq(rb.len, 1 + l);
            ck_assert_mem_eq(rb.data + 1, m.data + o, l);   /* m is the canonical form */
        }
        buf_free(&rb);
    }
    inst_rd_end(in);
    buf_free(&lf);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    /* a flipped octet in a decoded (zstd) payload or in the literal
     * prefix/suffix of a base64 value: read and verify both notice */
    inst_rd_begin(in);
    uint32_t target = 0;
    for (uint32_t i = 0, o = 0; i < rec.nchunks; i++) {
        struct msg_chunk ch;
        msg_rec_chunk(&rec, i, &ch);
        if (o >= body && o + ch.raw_len <= body_end)
            target = i;
        o += ch.raw_len;
    }
    struct msg_chunk tc;
    msg_rec_chunk(&rec, target, &tc);
    inst_rd_end(in);
    unsigned char ck[8];
    put_be64(ck, tc.chunk_id);
    FILE *devnull = fopen("/dev/null", "w");
    static const size_t at[] = {CHUNK_VAL_HDR + B64C_HDR + 1, CHUNK_VAL_HDR + 7,
                                (size_t)-1 /* last octet */};
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        size_t a = at[k] == (size_t)-1 ? CHUNK_VAL_HDR + tc.stored_len - 1 : at[k];
        corrupt(DB_CHUNK, ck, 8, a);
        inst_rd_begin(in);
        ck_assert_int_eq(chunk_load(in, inst_txn(in), tc.chunk_id, tc.raw_len, tc.stored_len,
                                    &out, NULL, NULL), STORE_ECORRUPT);
        buf_reset(&out);   /* the canonical path checks the raw CRC32C too */
        ck_assert_int_eq(inst_msg_read_buf(in, r.msgnum, 0, UINT64_MAX, &out), STORE_ECORRUPT);
        inst_rd_end(in);
        ck_assert_int_gt(store_verify_inst(in, devnull), 0);
        corrupt(DB_CHUNK, ck, 8, a);
        ck_assert_int_eq(store_verify_inst(in, devnull), 0);
    }
    fclose(devnull);
    buf_free(&out);
    buf_free(&bin);
    buf_free(&m);
}
END_TEST

START_TEST(test_chunk_dedup)
{
    size_t l1, l2, l3;
    char *m1 = attach_msg("first", 1000, 1500, &l1);     /* ~115 KB attachment */
    char *m2 = attach_msg("second", 1000, 1500, &l2);    /* same attachment */
    char *m3 = attach_msg("third", 1300, 1500, &l3);     /* overlapping slice */
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", m1, l1, "m1", &uid, &added), 0);
    int ch1 = count_entries(DB_CHUNK);
    ck_assert_int_eq(count_entries(DB_CREF), ch1);
    ck_assert_int_gt(ch1, 3);
    ck_assert_int_eq(count_entries(DB_BLOB), 0);     /* new messages use chunks only */
    ck_assert_int_eq(add("INBOX", m2, l2, "m2", &uid, &added), 0);
    int ch2 = count_entries(DB_CHUNK);
    /* the attachment is stored once: the second message adds its header
     * and text part (and the closing boundary shared with m1) */
    ck_assert_int_le(ch2 - ch1, 2);
    uint64_t r1, r2, u1, u2;
    uint64_t s1 = stored_of(1, &r1, &u1), s2 = stored_of(2, &r2, &u2);
    ck_assert_uint_eq(r2, 2);
    ck_assert_uint_gt(s1, 80000);   /* base64 of random octets: ~0.75 */
    ck_assert_uint_eq(s1 - s2 < 100 || s2 - s1 < 100, 1);
    ck_assert_uint_lt(u2, 300);     /* header + text part only */
    /* an overlapping slice at another offset shares most of its chunks */
    ck_assert_int_eq(add("INBOX", m3, l3, "m3", &uid, &added), 0);
    int ch3 = count_entries(DB_CHUNK);
    uint64_t r3, u3;
    uint64_t s3 = stored_of(3, &r3, &u3);
    ck_assert_uint_eq(r3, 3);
    /* 1200 of its 1500 lines are in m1 at another offset */
    ck_assert_uint_lt(u3, l3 / 2);
    ck_assert_uint_gt(s3, 80000);
    ck_assert_int_lt(ch3 - ch2, ch1 - 2);
    /* an empty message has no chunks at all */
    ck_assert_int_eq(add("INBOX", "", 0, "empty", &uid, &added), 0);
    ck_assert(added);
    ck_assert_int_eq(count_entries(DB_CHUNK), ch3);
    /* re-import of the same source keys adds nothing */
    ck_assert_int_eq(add("INBOX", m1, l1, "m1", &uid, &added), 0);
    ck_assert(!added);
    ck_assert_int_eq(count_entries(DB_CHUNK), ch3);
    /* the same message again under another key: message refcount only */
    ck_assert_int_eq(add("Other", m1, l1, "m1", &uid, &added), 0);
    ck_assert(added);
    ck_assert_int_eq(count_entries(DB_CHUNK), ch3);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    /* the part cut: the attachment body starts a chunk (canonical offset
     * of part 2's body) and ends one */
    const void *info;
    size_t il;
    struct msginfo mi;
    struct msginfo_part pt;
    const char *err;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_info(in, 1, &info, &il), 0);
    ck_assert_int_eq(msginfo_open(&mi, info, il, &err), 0);
    ck_assert_uint_eq(mi.nparts, 3);
    ck_assert_int_eq(msginfo_part(&mi, 2, &pt), 0);
    uint64_t boff = pt.body_off, bend = pt.body_off + pt.body_len;
    inst_rd_end(in);
    ck_assert_int_eq(overlapping_chunks(1, boff - 1, boff), 1);
    ck_assert_int_eq(overlapping_chunks(1, boff - 1, boff + 1), 2);
    ck_assert_int_eq(overlapping_chunks(1, bend - 1, bend + 1), 2);
    /* reads across every chunk give the canonical octets */
    struct buf canon;
    buf_init(&canon, 0);
    int pcr = 0;
    canon_append(&canon, (unsigned char *)m3, l3, &pcr);
    struct collect c;
    buf_init(&c.b, 0);
    c.calls = 0;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_read(in, 3, 0, UINT64_MAX, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, canon.len);
    ck_assert_mem_eq(c.b.data, canon.data, canon.len);
    buf_reset(&c.b);
    ck_assert_int_eq(inst_msg_read(in, 3, 20000, 33333, sink, &c), 0);
    ck_assert_mem_eq(c.b.data, canon.data + 20000, 33333);
    inst_rd_end(in);
    buf_free(&c.b);
    buf_free(&canon);
    /* a wrong chunk refcount and a flipped frame octet are found */
    FILE *devnull = fopen("/dev/null", "w");
    unsigned char ck[8], hk[CHUNK_KEY];
    chunk_key_of(1, 3, ck);
    {
        const char *e;
        struct cref cr;
        ck_assert_int_eq(inst_wr_begin(in, &e), 0);
        cref_of(in->wr, get_be64(ck), hk, &cr);
        cr.refcount++;
        unsigned char rec[CREF_REC_LEN];
        cref_encode(rec, &cr);
        MDB_val k = {CHUNK_KEY, hk}, v = {sizeof rec, rec};
        ck_assert_int_eq(mdb_put(in->wr, in->dbi[DB_CREF], &k, &v, 0), 0);
        ck_assert_int_eq(inst_wr_commit(in, &e), 0);
    }
    ck_assert_int_eq(store_verify_inst(in, devnull), 1);
    corrupt(DB_CREF, hk, CHUNK_KEY, 10);              /* refcount octet: breaks its CRC */
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    corrupt(DB_CHUNK, ck, 8, CHUNK_VAL_HDR + 100);
    struct collect c2;
    buf_init(&c2.b, 0);
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_raw(in, 1, sink, &c2), STORE_ECORRUPT);
    ck_assert_int_eq(inst_msg_raw(in, 2, sink, &c2), STORE_ECORRUPT);   /* shares it */
    inst_rd_end(in);
    buf_free(&c2.b);
    fclose(devnull);
    free(m1);
    free(m2);
    free(m3);
}
END_TEST

/* Rewrite message msgnum as a version 1 record the way the schema 1
 * writer stored it: frames in blob keyed (msgnum, i), 21-octet entries;
 * its chunks are released. */
static void make_v1(uint64_t msgnum)
{
    const char *e;
    ck_assert_int_eq(inst_wr_begin(in, &e), 0);
    unsigned char key[8];
    put_be64(key, msgnum);
    MDB_val k = {8, key}, v;
    ck_assert_int_eq(mdb_get(in->wr, in->dbi[DB_MSG], &k, &v), 0);
    struct msg_rec m;
    unsigned char *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    ck_assert_int_eq(msg_rec_decode(copy, v.mv_size, &m), 0);
    ck_assert_uint_eq(m.version, 2);
    size_t reclen = MSG_REC_HDR + (size_t)m.nchunks * MSG_CHUNK_ENT + 4;
    unsigned char *r = calloc(1, reclen);
    memcpy(r, copy, MSG_REC_HDR);
    r[0] = 1;
    struct buf raw;
    buf_init(&raw, 0);
    for (uint32_t i = 0; i < m.nchunks; i++) {
        struct msg_chunk ch;
        msg_rec_chunk(&m, i, &ch);
        ck_assert_int_eq(chunk_load(in, in->wr, ch.chunk_id, ch.raw_len, ch.stored_len, &raw,
                                    NULL, NULL), 0);
        size_t cap = ZSTD_compressBound(raw.len);
        unsigned char *fr = malloc(cap);
        size_t z = ZSTD_compress(fr, cap, raw.data, raw.len, 3);
        ck_assert(!ZSTD_isError(z));
        unsigned char bk[12];
        put_be64(bk, msgnum);
        put_be32(bk + 8, i);
        MDB_val bkv = {12, bk}, fv = {z, fr};
        ck_assert_int_eq(mdb_put(in->wr, in->dbi[DB_BLOB], &bkv, &fv, 0), 0);
        free(fr);
        unsigned char *ent = r + MSG_REC_HDR + (size_t)i * MSG_CHUNK_ENT;
        memcpy(ent, m.chunks + (size_t)i * MSG_CHUNK_ENT2, 17);
        put_be32(ent + 17, (uint32_t)z);
        /* release the chunk */
        unsigned char hk[CHUNK_KEY], idk[8];
        struct cref cr;
        cref_of(in->wr, ch.chunk_id, hk, &cr);
        MDB_val ck = {CHUNK_KEY, hk}, ik = {8, idk};
        put_be64(idk, ch.chunk_id);
        if (cr.refcount == 1) {
            ck_assert_int_eq(mdb_del(in->wr, in->dbi[DB_CREF], &ck, NULL), 0);
            ck_assert_int_eq(mdb_del(in->wr, in->dbi[DB_CHUNK], &ik, NULL), 0);
        } else {
            unsigned char rec[CREF_REC_LEN];
            cr.refcount--;
            cref_encode(rec, &cr);
            MDB_val cv = {sizeof rec, rec};
            ck_assert_int_eq(mdb_put(in->wr, in->dbi[DB_CREF], &ck, &cv, 0), 0);
        }
    }
    put_be32(r + reclen - 4, crc32c(0, r, reclen - 4));
    MDB_val nv = {reclen, r};
    ck_assert_int_eq(mdb_put(in->wr, in->dbi[DB_MSG], &k, &nv, 0), 0);
    ck_assert_int_eq(inst_wr_commit(in, &e), 0);
    buf_free(&raw);
    free(r);
    free(copy);
}

static void check_raw(uint64_t msgnum, const char *want, size_t len)
{
    struct collect c;
    buf_init(&c.b, 0);
    c.calls = 0;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_raw(in, msgnum, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, len);
    ck_assert_mem_eq(c.b.data, want, len);
    buf_reset(&c.b);
    struct buf canon;
    buf_init(&canon, 0);
    int pcr = 0;
    canon_append(&canon, (const unsigned char *)want, len, &pcr);
    ck_assert_int_eq(inst_msg_read(in, msgnum, 100, 70000, sink, &c), 0);
    ck_assert_uint_eq(c.b.len, 70000);
    ck_assert_mem_eq(c.b.data, canon.data + 100, 70000);
    inst_rd_end(in);
    buf_free(&canon);
    buf_free(&c.b);
}

START_TEST(test_record_versions)
{
    size_t l1, l2;
    char *m1 = attach_msg("one", 10, 1500, &l1);
    char *m2 = attach_msg("two", 10, 1500, &l2);
    uint32_t uid;
    bool added;
    ck_assert_int_eq(add("INBOX", m1, l1, "m1", &uid, &added), 0);
    ck_assert_int_eq(add("INBOX", m2, l2, "m2", &uid, &added), 0);
    make_v1(1);
    ck_assert_int_gt(count_entries(DB_BLOB), 3);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    check_raw(1, m1, l1);
    check_raw(2, m2, l2);
    /* a damaged version 1 frame is still found by verify (message SHA) */
    FILE *devnull = fopen("/dev/null", "w");
    unsigned char bk[12];
    put_be64(bk, 1);
    put_be32(bk + 8, 2);
    corrupt(DB_BLOB, bk, 12, 30);
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    corrupt(DB_BLOB, bk, 12, 30);
    ck_assert_int_eq(store_verify_inst(in, devnull), 0);
    fclose(devnull);
    /* a schema 1 store: only version 1 records, no chunk databases, schema
     * 1. Readers open it as it is; a writable open makes it schema 2. */
    make_v1(2);
    const char *e;
    ck_assert_int_eq(inst_wr_begin(in, &e), 0);
    ck_assert_int_eq(mdb_drop(in->wr, in->dbi[DB_CHUNK], 1), 0);
    ck_assert_int_eq(mdb_drop(in->wr, in->dbi[DB_CREF], 1), 0);
    ck_assert_int_eq(meta_put_u64(in, in->wr, "schema", 1), 0);
    ck_assert_int_eq(inst_wr_commit(in, &e), 0);
    inst_close(in);
    ck_assert_int_eq(inst_open(&cfg, "demo", false, &in, &e), 0);
    ck_assert(!in->have_chunks);
    check_raw(1, m1, l1);
    check_raw(2, m2, l2);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    /* a writer adds chunks while this reader is open: it finds them */
    struct inst *w;
    ck_assert_int_eq(inst_open(&cfg, "demo", true, &w, &e), 0);
    uint64_t schema = 0;
    inst_rd_begin(w);
    ck_assert_int_eq(meta_get_u64(w, inst_txn(w), "schema", &schema), 0);
    inst_rd_end(w);
    ck_assert_uint_eq(schema, STORE_SCHEMA_VERSION);
    size_t l3;
    char *m3 = attach_msg("three", 10, 1500, &l3);
    struct import_msg im = {.raw = (const unsigned char *)m3, .len = l3, .flags = STORE_F_SEEN,
                            .internaldate = 1700000000};
    ck_assert_int_eq(inst_wr_begin(w, &e), 0);
    ck_assert_int_eq(store_add_message(w, "alice", "INBOX", &im, &added, &uid, &e), 0);
    ck_assert_int_eq(inst_wr_commit(w, &e), 0);
    ck_assert_int_eq(store_verify_inst(w, stderr), 0);
    inst_close(w);
    check_raw(3, m3, l3);
    ck_assert(in->have_chunks);
    inst_close(in);
    ck_assert_int_eq(inst_open(&cfg, "demo", true, &in, &e), 0);
    /* `coffer upgrade` from schema 1 */
    ck_assert_int_eq(inst_wr_begin(in, &e), 0);
    ck_assert_int_eq(meta_put_u64(in, in->wr, "schema", 1), 0);
    ck_assert_int_eq(inst_wr_commit(in, &e), 0);
    inst_close(in);
    in = NULL;
    int from = 0, to = 0;
    ck_assert_int_eq(store_upgrade_inst(&cfg, "demo", &from, &to, &e), 0);
    ck_assert_int_eq(from, 1);
    ck_assert_int_eq(to, STORE_SCHEMA_VERSION);
    ck_assert_int_eq(inst_open(&cfg, "demo", false, &in, &e), 0);
    check_raw(1, m1, l1);
    check_raw(3, m3, l3);
    free(m1);
    free(m2);
    free(m3);
}
END_TEST

static const char mbox_src[] =
    "From alice@example.org Fri Feb 22 17:06:23 2008\n"
    "From: a@example.org\nSubject: one\nStatus: O\nX-Status: AF\n\n"
    "body\n>From quoted\n>>From twice\nFrom inside paragraph\n\n"
    "From bob@example.org Sat Feb 23 10:00:00 2008\n"
    "From: b@example.org\nSubject: two\nStatus: RO\nX-Status: D\n\nsecond\n\n"
    "From bob@example.org Sat Feb 23 10:00:00 2008\n"
    "From: b@example.org\nSubject: two\nStatus: RO\nX-Status: D\n\nsecond\n";

START_TEST(test_import_export_mbox)
{
    char src[128], out[128];
    snprintf(src, sizeof src, "%s/Inbox.mbox", dir);
    snprintf(out, sizeof out, "%s/out.mbox", dir);
    write_file(src, mbox_src, sizeof mbox_src - 1);
    const char *srcs[] = {src};
    struct import_opts o = {.default_tz = "+0100", .warn = stderr};
    struct import_stats st;
    const char *err = NULL;
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 3);
    ck_assert_uint_eq(st.present, 0);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 0);
    ck_assert_uint_eq(st.present, 3);
    inst_rd_begin(in);
    struct mbox_rec mb;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);   /* inbox.mbox -> INBOX */
    ck_assert_uint_eq(mb.messages, 3);
    struct msg_ref r[4];
    memset(r, 0, sizeof r);
    ck_assert_int_eq(inst_msgs_walk(in, mb.id, 1, walk_cb, r), 0);
    ck_assert_uint_eq(r[1].flags, STORE_F_ANSWERED | STORE_F_FLAGGED);   /* no R: unseen */
    ck_assert_uint_eq(r[2].flags, STORE_F_SEEN);                         /* D not kept */
    ck_assert_uint_eq(r[2].msgnum, r[3].msgnum);                         /* identical */
    ck_assert_int_eq(r[1].internaldate, 1203699983 - 3600);              /* From_ line, +0100 */
    ck_assert_int_eq(r[1].internal_tz, 60);
    ck_assert_uint_eq(mb.unseen, 1);
    /* stored message 1: From_ line dropped, ">From" un-quoted once */
    struct collect c;
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r[1].msgnum, sink, &c), 0);
    buf_putc(&c.b, 0);
    ck_assert_str_eq((char *)c.b.data,
                     "From: a@example.org\nSubject: one\nStatus: O\nX-Status: AF\n\n"
                     "body\nFrom quoted\n>From twice\nFrom inside paragraph\n");
    buf_free(&c.b);
    inst_rd_end(in);
    uint64_t n;
    ck_assert_int_eq(store_export(in, "alice", "INBOX", EXPORT_MBOX, out, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    size_t len;
    unsigned char *back = read_file(out, &len);
    ck_assert_uint_eq(len, sizeof mbox_src - 1);
    ck_assert_mem_eq(back, mbox_src, len);
    free(back);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
}
END_TEST

static void mkd(const char *base, const char *sub)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", base, sub);
    ck_assert_int_eq(store_mkdir_p(p, 0755), 0);
}

static int list_cb(void *ctx, const char *name, const struct mbox_rec *m)
{
    char *s = ctx;
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s=%u;", name, m->messages);
    strcat(s, tmp);
    return 0;
}

START_TEST(test_import_maildir)
{
    char md[128], p[512];
    snprintf(md, sizeof md, "%s/Maildir", dir);
    static const char *const subs[] = {"cur", "new", "tmp", ".Entw&APw-rfe/cur",
                                       ".Archives.2023/cur", ".Users/cur", ".Sent/new",
                                       ".Tom &- Jerry/cur"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        mkd(md, subs[i]);
    static const char msg[] = "Subject: x\n\nhello\n";
    snprintf(p, sizeof p, "%s/cur/1000.A.host:2,SRT", md);
    write_file(p, msg, sizeof msg - 1);
    snprintf(p, sizeof p, "%s/new/1001.B.host", md);
    write_file(p, "Subject: y\n\nnew\n", 16);
    struct timeval tv[2] = {{1500000000, 0}, {1500000000, 0}};
    utimes(p, tv);
    snprintf(p, sizeof p, "%s/.Entw&APw-rfe/cur/1.C.host:2,D", md);
    write_file(p, msg, sizeof msg - 1);
    snprintf(p, sizeof p, "%s/.Archives.2023/cur/1.D.host:2,F", md);
    write_file(p, msg, sizeof msg - 1);
    snprintf(p, sizeof p, "%s/.Users/cur/1.E.host:2,", md);
    write_file(p, msg, sizeof msg - 1);
    snprintf(p, sizeof p, "%s/.Tom &- Jerry/cur/1.F.host:2,S", md);
    write_file(p, msg, sizeof msg - 1);
    const char *srcs[] = {md};
    FILE *devnull = fopen("/dev/null", "w");
    struct import_opts o = {.warn = devnull};
    struct import_stats st;
    const char *err = NULL;
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 6);
    ck_assert_uint_eq(st.deduped, 4);   /* 6 files, 2 distinct */
    char names[1024] = "";
    inst_rd_begin(in);
    ck_assert_int_eq(inst_mbox_list(in, "alice", list_cb, names), 0);
    ck_assert_str_eq(names, "Archives/2023=1;Entw\xC3\xBCrfe=1;INBOX=2;Tom & Jerry=1;"
                            "Users-imported=1;");
    struct mbox_rec mb;
    struct msg_ref r[3];
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    ck_assert_int_eq(inst_msgs_walk(in, mb.id, 1, walk_cb, r), 0);
    ck_assert_uint_eq(r[1].flags, STORE_F_SEEN | STORE_F_ANSWERED);   /* T dropped */
    ck_assert_uint_eq(r[2].flags, 0);                                   /* new/ */
    ck_assert_int_eq(r[2].internaldate, 1500000000);                    /* mtime */
    inst_rd_end(in);
    /* flags changed and file moved between runs: still found by its unique name */
    char p2[512];
    snprintf(p2, sizeof p2, "%s/cur/1001.B.host:2,S", md);
    ck_assert_int_eq(rename(p, p2), 0);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 0);
    ck_assert_uint_eq(st.present, 6);
    /* Maildir export -> import -> same set */
    char out[128];
    snprintf(out, sizeof out, "%s/out", dir);
    uint64_t n;
    ck_assert_int_eq(store_export(in, "alice", NULL, EXPORT_MAILDIR, out, &n, &err), 0);
    ck_assert_uint_eq(n, 6);
    snprintf(p, sizeof p, "%s/.Entw&APw-rfe/cur", out);
    DIR *d = opendir(p);
    ck_assert_ptr_nonnull(d);
    closedir(d);
    ck_assert_int_eq(inst_user_add(in, "bob", NULL, false, &err), 0);
    const char *srcs2[] = {out};
    ck_assert_int_eq(store_import(in, "bob", srcs2, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 6);
    names[0] = 0;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_mbox_list(in, "bob", list_cb, names), 0);
    inst_rd_end(in);
    ck_assert_str_eq(names, "Archives/2023=1;Entw\xC3\xBCrfe=1;INBOX=2;Tom & Jerry=1;"
                            "Users-imported=1;");
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    fclose(devnull);
}
END_TEST

START_TEST(test_import_eml_tree)
{
    /* a directory of .eml files: file-name order = UID order, sub-directories
     * become folders, .mbox files inside become folders, Latin-1 names are
     * kept as UTF-8, other files are skipped */
    char t[128], p[512];
    snprintf(t, sizeof t, "%s/tree", dir);
    mkd(t, "sub/deeper");
    mkd(t, "caf\xE9");
    static const char *const files[] = {"b.eml", "a.eml", "sub/z.eml", "sub/deeper/y.eml",
                                        "caf\xE9/x.eml", "notes.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char m[128];
        snprintf(p, sizeof p, "%s/%s", t, files[i]);
        snprintf(m, sizeof m, "Subject: %s\nDate: Tue, 1 Jan 2019 10:00:00 +0100\n\nbody\n",
                 files[i]);
        write_file(p, m, strlen(m));
    }
    snprintf(p, sizeof p, "%s/sub/Sent.mbox", t);
    write_file(p, "From x Fri Feb 22 17:06:23 2008\nSubject: s\n\nb\n", 45);
    const char *srcs[] = {t};
    FILE *devnull = fopen("/dev/null", "w");
    struct import_opts o = {.warn = devnull};
    struct import_stats st;
    const char *err = NULL;
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 6);
    ck_assert_uint_eq(st.skipped, 1);
    char names[512] = "";
    inst_rd_begin(in);
    ck_assert_int_eq(inst_mbox_list(in, "alice", list_cb, names), 0);
    ck_assert_str_eq(names, "INBOX=2;caf\xC3\xA9=1;sub=1;sub/Sent=1;sub/deeper=1;");
    struct mbox_rec mb;
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
    struct msg_ref r[3];
    memset(r, 0, sizeof r);
    ck_assert_int_eq(inst_msgs_walk(in, mb.id, 1, walk_cb, r), 0);
    ck_assert_int_eq(r[1].internaldate, 1546333200);   /* Date: header */
    ck_assert_int_eq(r[1].internal_tz, 60);
    ck_assert_uint_eq(r[1].flags, STORE_F_SEEN);
    struct collect c;
    buf_init(&c.b, 0);
    ck_assert_int_eq(inst_msg_raw(in, r[1].msgnum, sink, &c), 0);
    ck_assert(c.b.len > 12 && !memcmp(c.b.data, "Subject: a.eml", 14));   /* name order */
    buf_free(&c.b);
    inst_rd_end(in);
    fclose(devnull);
}
END_TEST

START_TEST(test_import_bad_inputs)
{
    char p[256];
    const char *err = NULL;
    FILE *devnull = fopen("/dev/null", "w");
    struct import_opts o = {.warn = devnull};
    struct import_stats st;
    const char *srcs[1] = {p};
    snprintf(p, sizeof p, "%s/missing", dir);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), STORE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    snprintf(p, sizeof p, "%s/empty.eml", dir);
    write_file(p, "", 0);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
    snprintf(p, sizeof p, "%s/bin.mbox", dir);
    write_file(p, "\x7f" "ELF\0\0\1\2", 8);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not an mbox"));
    snprintf(p, sizeof p, "%s/emptydir", dir);
    mkd(dir, "emptydir");
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), STORE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "Maildir"));
    /* NUL octets and a truncated mbox: archived as they are */
    snprintf(p, sizeof p, "%s/nul.eml", dir);
    write_file(p, "Subject: n\n\na\0b\n", 16);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 1);
    ck_assert_uint_eq(st.malformed, 1);
    snprintf(p, sizeof p, "%s/trunc.mbox", dir);
    static const char tr[] = "From x Fri Feb 22 17:06:23 2008\nSubject: a\n\nbody\n\n"
                             "From y Fri Feb 22 17:06:23 2008\nSubject: b\n\ncut in the mid";
    write_file(p, tr, sizeof tr - 1);
    ck_assert_int_eq(store_import(in, "alice", srcs, 1, &o, &st, &err), 0);
    ck_assert_uint_eq(st.imported, 2);
    /* unknown user */
    ck_assert_int_eq(store_import(in, "nobody", srcs, 1, &o, &st, &err), STORE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "unknown user"));
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    fclose(devnull);
}
END_TEST

START_TEST(test_map_full)
{
    /* A tiny map: the import fails cleanly and the store stays consistent. */
    const char *err = NULL;
    inst_close(in);
    in = NULL;
    struct store_cfg small = cfg;
    small.map_size = 1u << 20;
    ck_assert_int_eq(registry_instance_add(reg, "tiny", &err), 0);
    struct inst *t;
    ck_assert_int_eq(inst_open(&small, "tiny", true, &t, &err), 0);
    ck_assert_int_eq(inst_user_add(t, "u", NULL, false, &err), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/big.eml", dir);
    size_t n = 4u << 20;
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(rand() & 0x7f);   /* incompressible */
    memcpy(b, "Subject: big\n\n", 14);
    write_file(p, b, n);
    free(b);
    const char *srcs[] = {p};
    struct import_opts o = {.warn = stderr};
    struct import_stats st;
    ck_assert_int_eq(store_import(t, "u", srcs, 1, &o, &st, &err), STORE_EFULL);
    ck_assert_ptr_nonnull(strstr(err, "map_size"));
    ck_assert_int_eq(store_verify_inst(t, stderr), 0);
    inst_close(t);
    ck_assert_int_eq(inst_open(&cfg, "demo", true, &in, &err), 0);
}
END_TEST

START_TEST(test_backup_restore)
{
    static const char m1[] = "From: a@b\nSubject: hi\n\nbody\n";
    uint32_t uid;
    bool added;
    const char *err = NULL;
    ck_assert_int_eq(add("Archive", m1, sizeof m1 - 1, NULL, &uid, &added), 0);
    ck_assert_int_eq(inst_user_add(in, "bob", "pw", false, &err), 0);
    ck_assert_int_eq(inst_grant(in, "bob", "alice", true, &err), 0);
    char bk[128];
    snprintf(bk, sizeof bk, "%s/backup", dir);
    ck_assert_int_eq(store_backup(&cfg, "demo", bk, &err), 0);
    ck_assert_int_eq(store_backup(&cfg, "demo", bk, &err), STORE_EEXIST);
    ck_assert_int_eq(store_restore(reg, bk, "demo", &err), STORE_EEXIST);
    ck_assert_int_eq(store_restore(reg, bk, "copy", &err), 0);
    struct inst *c;
    ck_assert_int_eq(inst_open(&cfg, "copy", false, &c, &err), 0);
    ck_assert(inst_may_read(c, "bob", "alice"));
    struct mbox_rec a, b2;
    ck_assert_int_eq(inst_mbox_get(c, "alice", "Archive", &b2), 0);
    inst_rd_begin(in);
    ck_assert_int_eq(inst_mbox_get(in, "alice", "Archive", &a), 0);
    inst_rd_end(in);
    ck_assert_uint_eq(a.id, b2.id);
    ck_assert_uint_eq(a.uidvalidity, b2.uidvalidity);
    ck_assert_uint_eq(a.uidnext, b2.uidnext);
    ck_assert_uint_eq(a.messages, b2.messages);
    ck_assert_uint_eq(a.size, b2.size);
    ck_assert_uint_eq(b2.special_use, STORE_SU_ARCHIVE);
    ck_assert_int_eq(store_verify_inst(c, stderr), 0);
    inst_close(c);
}
END_TEST

START_TEST(test_reindex)
{
    static const char m1[] = "From: a@b\nSubject: hi\n\nbody\n";
    uint32_t uid;
    bool added;
    const char *err = NULL;
    ck_assert_int_eq(add("INBOX", m1, sizeof m1 - 1, NULL, &uid, &added), 0);
    unsigned char key[8];
    put_be64(key, 1);
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    MDB_val k = {8, key};
    ck_assert_int_eq(mdb_del(in->wr, in->dbi[DB_INFO], &k, NULL), 0);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_int_gt(store_verify_inst(in, devnull), 0);
    fclose(devnull);
    uint64_t n = 0;
    ck_assert_int_eq(store_reindex(in, true, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(store_verify_inst(in, stderr), 0);
    const void *info;
    size_t il;
    inst_rd_begin(in);
    ck_assert_int_eq(inst_msg_info(in, 1, &info, &il), 0);
    ck_assert_uint_eq(msginfo_version(info, il), MSGINFO_VERSION);
    inst_rd_end(in);
}
END_TEST

START_TEST(test_lockfiles)
{
    char bad[256] = "";
    ck_assert_int_eq(store_check_lockfiles(dir, getuid(), getgid(), bad, sizeof bad), 0);
    if (getuid() == 0)
        return;   /* root may write anything */
    char p[256];
    snprintf(p, sizeof p, "%s/instances/demo/lock.mdb", dir);
    ck_assert_int_eq(chmod(p, 0444), 0);
    ck_assert_int_ne(store_check_lockfiles(dir, getuid(), getgid(), bad, sizeof bad), 0);
    ck_assert_str_eq(bad, p);
    chmod(p, 0640);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store");
    TCase *t = tcase_create("pure");
    tcase_add_test(t, test_crc32c);
    tcase_add_test(t, test_user_canon);
    tcase_add_test(t, test_dates);
    tcase_add_test(t, test_cdc);
    suite_add_tcase(s, t);
    t = tcase_create("env");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_registry);
    tcase_add_test(t, test_writer_lock);
    tcase_add_test(t, test_users_secrets);
    tcase_add_test(t, test_grants);
    tcase_add_test(t, test_messages_dedup);
    tcase_add_test(t, test_partial_read);
    tcase_add_test(t, test_corruption);
    tcase_add_test(t, test_chunk_dedup);
    tcase_add_test(t, test_stored_frame);
    tcase_add_test(t, test_read_buf);
    tcase_add_test(t, test_header_frame);
    tcase_add_test(t, test_b64_chunks);
    tcase_add_test(t, test_record_versions);
    tcase_add_test(t, test_import_export_mbox);
    tcase_add_test(t, test_import_maildir);
    tcase_add_test(t, test_import_eml_tree);
    tcase_add_test(t, test_import_bad_inputs);
    tcase_add_test(t, test_map_full);
    tcase_add_test(t, test_backup_restore);
    tcase_add_test(t, test_reindex);
    tcase_add_test(t, test_lockfiles);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
