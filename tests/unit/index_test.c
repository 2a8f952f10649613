/* index_test.c — the trigram index on a temporary LMDB env: postings that
 * span many blocks and pages, out-of-order inserts, idempotency, substrings
 * across word boundaries, removal, and verify catching a corrupt block. */
#include <check.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/unit_main.h"
#include "proto/mailtext.h"
#include "proto/msginfo.h"
#include "proto/unicase.h"
#include "store/index.h"
#include "store/index_read.h"
#include "store/index_int.h"
#include "store/store.h"

static MDB_env *env;
static char dir[] = "/tmp/coffer-index-test-XXXXXX";
static struct index_dbs dbs;

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, 1ull << 30), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
    MDB_txn *t;
    const char *err = NULL;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_open(t, true, &dbs, &err), 0);
    ck_assert_int_eq(mdb_txn_commit(t), 0);
}

static void teardown(void)
{
    char p[128];
    mdb_env_close(env);
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
    strcpy(dir, "/tmp/coffer-index-test-XXXXXX");
}

static void add(MDB_txn *t, uint64_t msgnum, const char *msg)
{
    struct buf rec;
    struct msginfo mi;
    const char *err = NULL;
    buf_init(&rec, 0);
    ck_assert_int_eq(msginfo_build((const unsigned char *)msg, strlen(msg), &rec, &err), 0);
    ck_assert_int_eq(msginfo_open(&mi, rec.data, rec.len, &err), 0);
    int rc = index_add_message(t, &dbs, msgnum, (const unsigned char *)msg, strlen(msg), &mi, &err);
    ck_assert_msg(rc == 0, "index_add_message: %s", err ? err : "?");
    buf_free(&rec);
}

/* All msgnums in the postings of the folded key's first trigram in field. */
static size_t postings(MDB_txn *t, int field, const char *text, uint64_t *out, size_t max)
{
    struct buf f;
    struct ix_cursor c;
    buf_init(&f, 0);
    unicase_fold((const unsigned char *)text, strlen(text), &f);
    ck_assert_uint_ge(f.len, 3);
    ck_assert_int_eq(ix_cursor_open(t, &dbs, field, f.data, &c), 0);
    size_t n = 0;
    uint64_t target = 0, v;
    int r;
    while ((r = ix_cursor_seek(&c, target, &v)) == 1) {
        if (n < max)
            out[n] = v;
        n++;
        target = v + 1;
    }
    ck_assert_int_eq(r, 0);
    ix_cursor_close(&c);
    buf_free(&f);
    return n;
}

static bool has(MDB_txn *t, int field, const char *tri, uint64_t msgnum)
{
    struct ix_cursor c;
    struct buf f;
    uint64_t v;
    buf_init(&f, 0);
    unicase_fold((const unsigned char *)tri, strlen(tri), &f);
    ck_assert_int_eq(ix_cursor_open(t, &dbs, field, f.data, &c), 0);
    int r = ix_cursor_seek(&c, msgnum, &v);
    ix_cursor_close(&c);
    buf_free(&f);
    return r == 1 && v == msgnum;
}


/* Posting blocks over every level database. */
static size_t post_entries(MDB_txn *t, size_t *leaf_pages)
{
    size_t e = 0, lp = 0;
    for (unsigned l = 0; l < IX_LEVELS; l++) {
        MDB_stat st;
        ck_assert_int_eq(mdb_stat(t, dbs.dbi[DBI_L0 + l], &st), 0);
        e += st.ms_entries;
        lp += st.ms_leaf_pages;
    }
    if (leaf_pages)
        *leaf_pages = lp;
    return e;
}

/* Segments per level. */
static void seg_levels(MDB_txn *t, size_t count[IX_LEVELS])
{
    struct ix_seg *s;
    size_t n;
    ck_assert_int_eq(ixs_load(t, &dbs, &s, &n), 0);
    memset(count, 0, IX_LEVELS * sizeof *count);
    for (size_t i = 0; i < n; i++)
        count[s[i].level]++;
    free(s);
}

/* The first posting block of (field, trigram) in any segment: its level
 * database and key (copied into key[IX_KEYLEN]). */
static MDB_dbi find_block(MDB_txn *t, int field, const char *tri, unsigned char *key)
{
    for (unsigned l = 0; l < IX_LEVELS; l++) {
        MDB_cursor *c;
        MDB_val k, v;
        ck_assert_int_eq(mdb_cursor_open(t, dbs.dbi[DBI_L0 + l], &c), 0);
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            const unsigned char *kp = k.mv_data;
            if (kp[4] == field && memcmp(kp + 5, tri, 3) == 0) {
                memcpy(key, kp, IX_KEYLEN);
                mdb_cursor_close(c);
                return dbs.dbi[DBI_L0 + l];
            }
        }
        mdb_cursor_close(c);
    }
    ck_abort_msg("no block for %s", tri);
    return 0;
}

static uint64_t get_be64u(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static char msgbuf[512];
static const char *mkmsg(unsigned i, const char *extra)
{
    snprintf(msgbuf, sizeof msgbuf,
             "From: Sender %u <s%u@example.org>\r\nTo: team@example.com\r\n"
             "Subject: report number %u\r\nMessage-ID: <id%u@example.org>\r\n\r\n"
             "common words in every message %s\r\n", i, i % 7, i, i, extra);
    return msgbuf;
}

START_TEST(test_many_blocks)
{
    MDB_txn *t;
    const unsigned N = 3000;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    /* odd msgnums first, then the even ones: exercises in-block inserts */
    for (unsigned pass = 0; pass < 2; pass++)
        for (unsigned i = 1 + pass; i <= N; i += 2)
            add(t, i, mkmsg(i, i % 1000 == 0 ? "zebra" : ""));
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    uint64_t *got = calloc(N + 10, sizeof *got);
    size_t n = postings(t, MT_BODY, "com", got, N + 10);
    ck_assert_uint_eq(n, N);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(got[i], i + 1);
    /* that list spans many blocks and LMDB pages */
    size_t pages;
    post_entries(t, &pages);
    ck_assert_uint_gt(pages, 10);
    ck_assert_uint_eq(postings(t, MT_BODY, "zeb", got, N), 3);
    ck_assert_uint_eq(got[0], 1000);
    ck_assert_uint_eq(got[2], 3000);
    /* header fields have their own postings */
    ck_assert(has(t, MT_SUBJECT, "REP", 17));
    ck_assert(!has(t, MT_BODY, "REP", 17));
    ck_assert(has(t, MT_FROM, "S3@", 3));
    ck_assert(has(t, MT_TO, "TEA", 5));
    ck_assert(has(t, MT_MSGID, "ID5", 5));
    ck_assert(has(t, MT_HDR, "SUB", 5));       /* header text: "SUBJECT: ..." */
    /* seeks skip forward */
    struct ix_cursor c;
    uint64_t v;
    ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"ZEB", &c), 0);
    ck_assert_int_eq(ix_cursor_seek(&c, 1001, &v), 1);
    ck_assert_uint_eq(v, 2000);
    ck_assert_int_eq(ix_cursor_seek(&c, 2001, &v), 1);
    ck_assert_uint_eq(v, 3000);
    ck_assert_int_eq(ix_cursor_seek(&c, 3001, &v), 0);
    ix_cursor_close(&c);
    long bad = index_verify(t, &dbs, NULL, NULL);
    ck_assert_int_eq(bad, 0);
    free(got);
    mdb_txn_abort(t);
}
END_TEST

static void count_report(void *ctx, const char *msg)
{
    (void)msg;
    (*(int *)ctx)++;
}

START_TEST(test_idempotent_and_substring)
{
    MDB_txn *t;
    const char *m = "Subject: x\r\n\r\nhello world, Gr\xc3\xbc\xc3\x9f" "e\r\n";
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    add(t, 5, m);
    size_t a = post_entries(t, NULL);
    add(t, 5, m);             /* re-import: nothing changes */
    ck_assert_uint_eq(post_entries(t, NULL), a);
    /* substrings across word boundaries are indexed: "lo wo" */
    ck_assert(has(t, MT_BODY, "lo ", 5));
    ck_assert(has(t, MT_BODY, "o w", 5));
    ck_assert(has(t, MT_BODY, " wo", 5));
    /* folded text: ü is indexed as U + U+0308 */
    {
        struct ix_cursor c;
        uint64_t v;
        ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"RU\xcc", &c), 0);
        ck_assert_int_eq(ix_cursor_seek(&c, 0, &v), 1);
        ck_assert_uint_eq(v, 5);
        ix_cursor_close(&c);
    }
    /* TEXT sees the header: "SUBJECT: X" */
    ck_assert(has(t, MT_HDR, "T: ", 5));
    ck_assert(!has(t, MT_BODY, "T: ", 5));
    /* the folded text is stored for confirmation */
    {
        struct buf tb;
        struct ix_text fl[MT_MSGID + 1];
        buf_init(&tb, 0);
        ck_assert_int_eq(ix_text_get(t, &dbs, 5, &tb, fl), 0);
        ck_assert(fl[MT_BODY].len >= 12 && memcmp(fl[MT_BODY].p, "HELLO WORLD,", 12) == 0);
        ck_assert_uint_eq(fl[MT_SUBJECT].len, 1);
        ck_assert_int_eq(fl[MT_SUBJECT].p[0], 'X');
        ck_assert_uint_eq(fl[MT_FROM].len, 0);
        ck_assert_int_eq(ix_text_get(t, &dbs, 6, &tb, fl), -1 /* STORE_ENOTFOUND */);
        buf_free(&tb);
    }
    /* removal */
    const char *err;
    ck_assert_int_eq(index_remove_message(t, &dbs, 5, &err), 0);
    ck_assert(!has(t, MT_BODY, "o w", 5));
    ck_assert(!ix_has_doc(t, &dbs, 5));
    {
        struct buf tb;
        struct ix_text fl[MT_MSGID + 1];
        buf_init(&tb, 0);
        ck_assert_int_eq(ix_text_get(t, &dbs, 5, &tb, fl), -1);
        buf_free(&tb);
    }
    add(t, 5, m);
    ck_assert(has(t, MT_BODY, "o w", 5));
    ck_assert_int_eq(index_clear(t, &dbs, &err), 0);
    ck_assert(!has(t, MT_BODY, "o w", 5));
    mdb_txn_abort(t);
}
END_TEST

START_TEST(test_verify_detects_corruption)
{
    MDB_txn *t;
    int reports = 0;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    for (unsigned i = 1; i <= 50; i++)
        add(t, i, mkmsg(i, "zebra"));
    ck_assert_int_eq(index_verify(t, &dbs, count_report, &reports), 0);
    /* flip one bit of the "ZEB" body block */
    unsigned char key[IX_KEYLEN];
    MDB_dbi pd = find_block(t, MT_BODY, "ZEB", key);
    MDB_val k = { IX_KEYLEN, key }, v;
    ck_assert_int_eq(mdb_get(t, pd, &k, &v), 0);
    unsigned char *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x01;
    MDB_val nv = { v.mv_size, copy };
    ck_assert_int_eq(mdb_put(t, pd, &k, &nv, 0), 0);
    ck_assert_int_eq(index_verify(t, &dbs, count_report, &reports), 1);
    ck_assert_int_eq(reports, 1);
    /* readers refuse it too */
    struct ix_cursor c;
    uint64_t got;
    ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"ZEB", &c), 0);
    ck_assert_int_eq(ix_cursor_seek(&c, get_be64u(key + 8), &got), -2 /* STORE_ECORRUPT */);
    ix_cursor_close(&c);
    free(copy);
    /* and a corrupt text record */
    unsigned char tk[8] = { 0, 0, 0, 0, 0, 0, 0, 7 };
    MDB_val k2 = { 8, tk }, v2;
    ck_assert_int_eq(mdb_get(t, dbs.dbi[DBI_TEXT], &k2, &v2), 0);
    copy = malloc(v2.mv_size);
    memcpy(copy, v2.mv_data, v2.mv_size);
    copy[v2.mv_size / 2] ^= 0x40;
    MDB_val nv2 = { v2.mv_size, copy };
    ck_assert_int_eq(mdb_put(t, dbs.dbi[DBI_TEXT], &k2, &nv2, 0), 0);
    reports = 0;
    ck_assert_int_eq(index_verify(t, &dbs, count_report, &reports), 2);
    struct buf tb;
    struct ix_text fl[MT_MSGID + 1];
    buf_init(&tb, 0);
    ck_assert_int_eq(ix_text_get(t, &dbs, 7, &tb, fl), -2 /* STORE_ECORRUPT */);
    buf_free(&tb);
    free(copy);
    mdb_txn_abort(t);
}
END_TEST

START_TEST(test_batch)
{
    MDB_txn *t;
    const char *err = NULL;
    const unsigned N = 2500;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
    /* odd msgnums, then even ones, then a direct add inside the range */
    for (unsigned pass = 0; pass < 2; pass++)
        for (unsigned i = 1 + pass; i <= 2000; i += 2)
            add(t, i, mkmsg(i, i % 500 == 0 ? "zebra" : ""));
    ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    /* a second batch appends to the existing blocks */
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
    for (unsigned i = 2001; i <= N; i++)
        add(t, i, mkmsg(i, i % 500 == 0 ? "zebra" : ""));
    add(t, 7, mkmsg(7, ""));            /* already indexed: no-op */
    ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    uint64_t *got = calloc(N + 10, sizeof *got);
    size_t n = postings(t, MT_BODY, "com", got, N + 10);
    ck_assert_uint_eq(n, N);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(got[i], i + 1);
    ck_assert_uint_eq(postings(t, MT_BODY, "zeb", got, N), 5);
    ck_assert_uint_eq(got[4], 2500);
    ck_assert(has(t, MT_SUBJECT, "REP", 2222));
    ck_assert(ix_has_doc(t, &dbs, 2222));
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    free(got);
    mdb_txn_abort(t);
    /* an aborted batch is discarded: nothing of it reaches the next txn */
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
    add(t, 3000, mkmsg(3000, "aborted"));
    mdb_txn_abort(t);
    index_discard();
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    add(t, 3001, mkmsg(3001, ""));
    ck_assert(!ix_has_doc(t, &dbs, 3000));
    ck_assert(ix_has_doc(t, &dbs, 3001));
    ck_assert(!has(t, MT_BODY, "ABO", 3000));
    mdb_txn_abort(t);
}
END_TEST


/* Many small batches: segments fill level 0, merge into level 1 and then
 * into level 2, and every list stays exact across the merges. */
START_TEST(test_levels_and_merges)
{
    const char *err = NULL;
    const unsigned per = 10, batches = 2 * IX_FANOUT0 * IX_FANOUT1 + 3;
    const unsigned N = per * batches;
    for (unsigned b = 0; b < batches; b++) {
        MDB_txn *t;
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
        ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
        for (unsigned i = b * per + 1; i <= (b + 1) * per; i++)
            add(t, i, mkmsg(i, i % 97 == 0 ? "zebra" : ""));
        ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
        ck_assert_int_eq(mdb_txn_commit(t), 0);
    }
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    size_t lv[IX_LEVELS];
    seg_levels(t, lv);
    ck_assert_uint_eq(lv[2], 2);             /* 64 batches merged twice */
    ck_assert_uint_eq(lv[1], 0);
    ck_assert_uint_eq(lv[0], 3);
    uint64_t *got = calloc(N + 10, sizeof *got);
    ck_assert_uint_eq(postings(t, MT_BODY, "com", got, N + 10), N);
    for (size_t i = 0; i < N; i++)
        ck_assert_uint_eq(got[i], i + 1);
    size_t z = postings(t, MT_BODY, "zeb", got, N);
    ck_assert_uint_eq(z, N / 97);
    for (size_t i = 0; i < z; i++)
        ck_assert_uint_eq(got[i], 97 * (i + 1));
    ck_assert(has(t, MT_SUBJECT, "REP", N));
    ck_assert(has(t, MT_FROM, "S3@", N - (N % 7) + 3 <= N ? N - (N % 7) + 3 : N - (N % 7) - 4));
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    free(got);
    mdb_txn_abort(t);
}
END_TEST

/* Two cursors joined the way the executor does (leapfrog): each seek only
 * moves forward, one decoded block per cursor, across segments. */
START_TEST(test_streamed_intersection)
{
    const char *err = NULL;
    const unsigned N = 1200;
    for (unsigned b = 0; b < N / 100; b++) {
        MDB_txn *t;
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
        ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
        for (unsigned i = b * 100 + 1; i <= (b + 1) * 100; i++)
            add(t, i, mkmsg(i, i % 3 == 0 ? (i % 5 == 0 ? "quail yak" : "quail")
                                          : (i % 5 == 0 ? "yak" : "")));
        ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
        ck_assert_int_eq(mdb_txn_commit(t), 0);
    }
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    struct ix_cursor a, b;
    ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"QUA", &a), 0);
    ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"YAK", &b), 0);
    ck_assert_uint_gt(a.nseg, 1);
    uint64_t target = 0, va, vb;
    size_t hits = 0;
    for (;;) {
        if (ix_cursor_seek(&a, target, &va) != 1)
            break;
        int r = ix_cursor_seek(&b, va, &vb);
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        if (vb == va) {
            ck_assert_uint_eq(va % 15, 0);
            hits++;
            target = va + 1;
        } else {
            target = vb;
        }
    }
    ck_assert_uint_eq(hits, N / 15);
    ix_cursor_close(&a);
    ix_cursor_close(&b);
    mdb_txn_abort(t);
}
END_TEST

/* A version 1 index: readers refuse it (the executor then scans); the
 * writer drops its postings, marks the index incomplete, and a rebuild
 * (index_clear + adds + index_mark_complete) makes it whole again. */
START_TEST(test_migrate_v1)
{
    MDB_txn *t;
    const char *err = NULL;
    struct index_dbs d2;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    add(t, 1, mkmsg(1, "zebra"));
    MDB_dbi old;
    ck_assert_int_eq(mdb_dbi_open(t, "ix_post", MDB_CREATE, &old), 0);
    MDB_val k = { 3, (void *)"abc" }, v = { 3, (void *)"xyz" };
    ck_assert_int_eq(mdb_put(t, old, &k, &v, 0), 0);
    unsigned char one[4] = { 0, 0, 0, 1 };
    MDB_val vk = { 7, (void *)"version" }, vv = { 4, one };
    ck_assert_int_eq(mdb_put(t, dbs.dbi[DBI_META], &vk, &vv, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(t), 0);

    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    ck_assert_int_eq(index_open(t, false, &d2, &err), -8 /* STORE_EVERSION */);
    mdb_txn_abort(t);

    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_open(t, true, &d2, &err), 0);
    ck_assert(!ix_complete(t, &d2));
    ck_assert(!ix_has_doc(t, &d2, 1));           /* old records are gone */
    ck_assert_int_eq(mdb_dbi_open(t, "ix_post", 0, &old), MDB_NOTFOUND);
    ck_assert_int_eq(index_clear(t, &d2, &err), 0);
    add(t, 1, mkmsg(1, "zebra"));
    ck_assert_int_eq(index_mark_complete(t, &d2, &err), 0);
    ck_assert(ix_complete(t, &d2));
    ck_assert(has(t, MT_BODY, "ZEB", 1));
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    ck_assert_int_eq(index_open(t, false, &d2, &err), 0);
    ck_assert(ix_complete(t, &d2));
    mdb_txn_abort(t);
}
END_TEST

/* Each posting carries the positions (mod 8) of its trigram in the field,
 * merged over repeats and kept through level merges. */
START_TEST(test_position_masks)
{
    const char *err = NULL;
    MDB_txn *t;
    for (unsigned i = 1; i <= IX_FANOUT0; i++) {     /* enough batches for a merge */
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
        ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
        add(t, i, "Subject: m\r\n\r\nqwe rty qwe\r\n");
        ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
        ck_assert_int_eq(mdb_txn_commit(t), 0);
    }
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    size_t lv[IX_LEVELS];
    seg_levels(t, lv);
    ck_assert_uint_eq(lv[1], 1);
    static const struct { const char *tri; uint8_t mask; } want[] = {
        { "QWE", 0x01 },         /* offsets 0 and 8 */
        { "WE ", 0x02 },
        { "RTY", 0x10 },
        { "Y Q", 0x40 },
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        struct ix_cursor c;
        uint64_t v;
        ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)want[w].tri, &c), 0);
        ck_assert_int_eq(ix_cursor_seek(&c, 3, &v), 1);
        ck_assert_uint_eq(v, 3);
        ck_assert_uint_eq(ix_cursor_mask(&c), want[w].mask);
        ix_cursor_close(&c);
    }
    mdb_txn_abort(t);
}
END_TEST

/* Seeks at any distance over a list of many blocks in several segments
 * and levels: dense steps (the next block, reached with MDB_NEXT), small
 * and large jumps, and targets between postings, each checked against
 * the list itself. */
START_TEST(test_seek_distances)
{
    const char *err = NULL;
    const unsigned per = 400, batches = IX_FANOUT0 + 3;     /* one merge, 3 level-0 */
    const unsigned N = per * batches;
    for (unsigned b = 0; b < batches; b++) {
        MDB_txn *t;
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
        ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
        for (unsigned i = b * per + 1; i <= (b + 1) * per; i++)
            add(t, i, mkmsg(i, i % 3 ? "" : "zebra"));
        ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
        ck_assert_int_eq(mdb_txn_commit(t), 0);
    }
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    size_t lv[IX_LEVELS];
    seg_levels(t, lv);
    ck_assert_uint_eq(lv[1], 1);
    ck_assert_uint_eq(lv[0], 3);
    {   /* the level-1 segment holds the list in several blocks */
        struct ix_cursor c;
        uint64_t v;
        ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"ZEB", &c), 0);
        ck_assert_int_eq(ix_cursor_seek(&c, 1, &v), 1);
        ck_assert_uint_lt(c.n, per * IX_FANOUT0 / 3);
        ix_cursor_close(&c);
    }
    static const unsigned steps[] = { 1, 2, 3, 7, 50, 200, 481, 1000 };
    for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++) {
        struct ix_cursor c;
        ck_assert_int_eq(ix_cursor_open(t, &dbs, MT_BODY, (const unsigned char *)"ZEB", &c), 0);
        unsigned seen = 0;
        for (uint64_t target = 1; ; target += steps[si]) {
            uint64_t v, want = (target + 2) / 3 * 3;      /* smallest multiple of 3 >= target */
            int r = ix_cursor_seek(&c, target, &v);
            if (want > N) {
                ck_assert_int_eq(r, 0);
                break;
            }
            ck_assert_msg(r == 1 && v == want, "step %u target %llu: r %d v %llu", steps[si],
                          (unsigned long long)target, r, (unsigned long long)v);
            seen++;
        }
        ck_assert_uint_gt(seen, N / steps[si] / 2);
        ix_cursor_close(&c);
    }
    mdb_txn_abort(t);
}
END_TEST

/* The member map: written per (mailbox, UID), read per message number;
 * trusted only while the "members" mark is set (a fresh index has it, a
 * clear drops it, index_mark_complete sets it again). */
START_TEST(test_members)
{
    const char *err = NULL;
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert(ix_members_complete(t, &dbs));
    ck_assert_int_eq(index_add_member(t, &dbs, 7, 1, 10, &err), 0);
    ck_assert_int_eq(index_add_member(t, &dbs, 7, 1, 12, &err), 0);  /* twice in mailbox 1 */
    ck_assert_int_eq(index_add_member(t, &dbs, 7, 2, 3, &err), 0);
    ck_assert_int_eq(index_add_member(t, &dbs, 8, 1, 11, &err), 0);
    ck_assert_int_eq(index_add_member(t, &dbs, 6, 1, 9, &err), 0);
    ck_assert_int_eq(index_add_member(t, &dbs, 7, 1, 10, &err), 0);  /* idempotent */
    MDB_cursor *c;
    uint32_t u[4];
    size_t n;
    ck_assert_int_eq(ix_members_open(t, &dbs, &c), 0);
    ck_assert_int_eq(ix_members_get(c, 7, 1, u, 4, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(u[0], 10);
    ck_assert_uint_eq(u[1], 12);
    ck_assert_int_eq(ix_members_get(c, 7, 1, u, 1, &n), 0);    /* counted past cap */
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ix_members_get(c, 7, 2, u, 4, &n), 0);
    ck_assert(n == 1 && u[0] == 3);
    ck_assert_int_eq(ix_members_get(c, 7, 3, u, 4, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ix_members_get(c, 8, 1, u, 4, &n), 0);
    ck_assert(n == 1 && u[0] == 11);
    ck_assert_int_eq(ix_members_get(c, 9, 1, u, 4, &n), 0);     /* past the end */
    ck_assert_uint_eq(n, 0);
    mdb_cursor_close(c);
    ck_assert_int_eq(index_clear(t, &dbs, &err), 0);
    ck_assert(!ix_members_complete(t, &dbs));
    ck_assert_int_eq(ix_members_open(t, &dbs, &c), 0);
    ck_assert_int_eq(ix_members_get(c, 7, 1, u, 4, &n), 0);
    ck_assert_uint_eq(n, 0);
    mdb_cursor_close(c);
    ck_assert_int_eq(index_mark_complete(t, &dbs, &err), 0);
    ck_assert(ix_members_complete(t, &dbs));
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    /* an index from before the member map: a reader goes without it, a
     * writer creates it empty and does not trust it */
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    MDB_dbi mem;
    ck_assert_int_eq(mdb_dbi_open(t, "ix_mem", 0, &mem), 0);
    ck_assert_int_eq(mdb_drop(t, mem, 1), 0);
    MDB_val k = { 7, (void *)"members" };
    ck_assert_int_eq(mdb_del(t, dbs.dbi[DBI_META], &k, NULL), 0);
    ck_assert_int_eq(mdb_txn_commit(t), 0);
    struct index_dbs rd;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &t), 0);
    ck_assert_int_eq(index_open(t, false, &rd, &err), 0);
    ck_assert(!ix_members_complete(t, &rd));
    ck_assert_int_eq(ix_members_open(t, &rd, &c), STORE_ENOTFOUND);
    ck_assert_int_eq(index_add_member(t, &rd, 1, 1, 1, &err), 0);      /* no map: no-op */
    mdb_txn_abort(t);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert_int_eq(index_open(t, true, &rd, &err), 0);
    ck_assert(!ix_members_complete(t, &rd));
    ck_assert_int_eq(ix_members_open(t, &rd, &c), 0);
    mdb_cursor_close(c);
    mdb_txn_abort(t);
}
END_TEST

/* ---- long grams (index_read.h) ---- */

static uint64_t rng_state = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* Is (hash, pos) among a[0..n) (sorted by pos)? */
static bool gram_at(const struct ix_gram *a, size_t n, uint32_t hash, uint32_t pos)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid].pos < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo].pos == pos && a[lo].hash == hash;
}

/* The winnowing guarantee the executor relies on: for random texts (tiny
 * alphabets force repeated grams and hash ties) and their substrings of at
 * least IX_GRAM_MINKEY octets, every gram the substring selects is
 * selected by the whole text at the same place; separators split. */
START_TEST(test_winnow_selection)
{
    enum { MAXLEN = 700 };
    unsigned char text[MAXLEN];
    static struct ix_gram all[MAXLEN], sub[MAXLEN];
    size_t checked = 0;
    for (int round = 0; round < 120; round++) {
        size_t len = IX_GRAM_MINKEY + rnd(MAXLEN - IX_GRAM_MINKEY);
        unsigned alpha = round % 4 == 0 ? 1 : round % 4 == 1 ? 2 : round % 4 == 2 ? 5 : 40;
        bool seps = round % 5 == 4;
        for (size_t i = 0; i < len; i++)
            text[i] = seps && rnd(60) == 0 ? MAILTEXT_SEP : (unsigned char)('a' + rnd(alpha));
        size_t na = seps ? ix_winnow_text(text, len, all) : ix_winnow(text, len, all);
        for (size_t i = 1; i < na; i++)
            ck_assert_uint_gt(all[i].pos, all[i - 1].pos);
        if (!seps) {
            /* a gram in every window: selected positions are < W apart */
            ck_assert_uint_gt(na, 0);
            ck_assert_uint_lt(all[0].pos, IX_GRAM_W);
            for (size_t i = 1; i < na; i++)
                ck_assert_uint_le(all[i].pos - all[i - 1].pos, IX_GRAM_W);
            ck_assert_uint_ge(all[na - 1].pos + IX_GRAM_W, len - IX_GRAM_K + 1);
        }
        for (int k = 0; k < 300; k++) {
            size_t st = rnd((unsigned)(len - IX_GRAM_MINKEY + 1));
            size_t l = IX_GRAM_MINKEY + rnd((unsigned)(len - st - IX_GRAM_MINKEY + 1));
            if (memchr(text + st, MAILTEXT_SEP, l))
                continue;              /* a key never holds one */
            size_t ns = ix_winnow(text + st, l, sub);
            ck_assert_uint_gt(ns, 0);
            for (size_t j = 0; j < ns; j++)
                ck_assert_msg(gram_at(all, na, sub[j].hash, sub[j].pos + (uint32_t)st),
                              "round %d: gram %zu of [%zu, +%zu) not selected in the text",
                              round, j, st, l);
            checked++;
        }
        /* shorter than a window: no gram, the executor keeps to trigrams */
        ck_assert_uint_eq(ix_winnow(text, IX_GRAM_MINKEY - 1, sub), 0);
    }
    ck_assert_uint_gt(checked, 10000);
}
END_TEST

static const char *const syl[] = { "ba", "ni", "te", "ho", "ka", "re", "sta", "gra", "qui",
                                   "sen", "dar", "lo", "mi", "ku", "zo", "ve" };

static char bigmsg[4096];
/* A message of random words built from common syllables (like gen-corpus:
 * every trigram is common, most 6-grams are not), plus a phrase in every
 * message whose grams' lists span many blocks. */
static const char *mkwords(unsigned i)
{
    int o = snprintf(bigmsg, sizeof bigmsg, "From: a%u@example.org\r\nSubject: s%u\r\n"
                     "Message-ID: <m%u.x@example.org>\r\n\r\nthe shared phrase here ", i % 13, i, i);
    unsigned words = 5 + rnd(25);
    for (unsigned w = 0; w < words; w++) {
        unsigned ns = 2 + rnd(3);
        for (unsigned k = 0; k < ns; k++)
            o += snprintf(bigmsg + o, sizeof bigmsg - (size_t)o, "%s", syl[rnd(16)]);
        o += snprintf(bigmsg + o, sizeof bigmsg - (size_t)o, w % 9 == 8 ? ".\r\n" : " ");
    }
    snprintf(bigmsg + o, sizeof bigmsg - (size_t)o, "\r\n");
    return bigmsg;
}

/* Every posting of one gram in field f, in order (plain msgnums). */
static size_t gram_list(MDB_txn *t, int f, uint32_t hash, uint64_t *out, size_t max)
{
    struct ix_cursor c;
    ck_assert_int_eq(ix_cursor_open_gram(t, &dbs, f, hash, &c), 0);
    size_t n = 0;
    uint64_t target = 0, v;
    int r;
    while ((r = ix_cursor_seek(&c, target, &v)) == 1) {
        ck_assert_uint_eq(ix_cursor_mask(&c), 0xFF);
        if (n < max)
            out[n] = v;
        n++;
        target = v + 1;
    }
    ck_assert_int_eq(r, 0);
    ix_cursor_close(&c);
    return n;
}

static bool has_hash(const struct ix_gram *g, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++)
        if (g[i].hash == h)
            return true;
    return false;
}

/* Gram postings written in many batches (merged across levels) hold
 * exactly the messages whose stored body text selects the gram (a list of
 * every message spans many blocks), and a key's grams are in every
 * message that contains the key; removal takes a message out of every
 * bucket it is in. */
START_TEST(test_gram_postings)
{
    const char *err = NULL;
    const unsigned N = 2600, per = 40;
    for (unsigned b = 0; b * per < N; b++) {
        MDB_txn *t;
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
        ck_assert_int_eq(index_batch_begin(t, &dbs), 0);
        for (unsigned i = b * per + 1; i <= (b + 1) * per && i <= N; i++)
            add(t, i, mkwords(i));
        ck_assert_int_eq(index_flush(t, &dbs, &err), 0);
        ck_assert_int_eq(mdb_txn_commit(t), 0);
    }
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert(ix_grams_complete(t, &dbs));
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    /* every message's stored body and its selected grams */
    struct buf *body = calloc(N + 1, sizeof *body);
    struct ix_gram **g = calloc(N + 1, sizeof *g);
    size_t *ng = calloc(N + 1, sizeof *ng);
    struct buf tb;
    buf_init(&tb, 0);
    for (unsigned i = 1; i <= N; i++) {
        struct ix_text fl[MT_MSGID + 1];
        ck_assert_int_eq(ix_text_get(t, &dbs, i, &tb, fl), 0);
        buf_init(&body[i], 0);
        ck_assert_int_eq(buf_append(&body[i], fl[MT_BODY].p, fl[MT_BODY].len), 0);
        g[i] = malloc((fl[MT_BODY].len + 1) * sizeof **g);
        ng[i] = ix_winnow_text(body[i].data, body[i].len, g[i]);
    }
    uint64_t *got = calloc(N + 10, sizeof *got);
    static struct ix_gram kg[64];
    unsigned char key[64];
    size_t keys = 0;
    for (int k = 0; k < 300; k++) {
        size_t kl;
        if (k % 3 == 2) {              /* most likely absent */
            kl = IX_GRAM_MINKEY + rnd(8);
            for (size_t j = 0; j < kl; j++)
                key[j] = (unsigned char)(k % 2 ? (unsigned char)syl[rnd(16)][0] : 'a' + rnd(26));
        } else {                       /* a piece of some message */
            unsigned m = 1 + rnd(N);
            if (body[m].len < IX_GRAM_MINKEY + 1)
                continue;
            kl = IX_GRAM_MINKEY + rnd(12);
            if (kl > body[m].len)
                kl = body[m].len;
            size_t st = rnd((unsigned)(body[m].len - kl + 1));
            memcpy(key, body[m].data + st, kl);
            if (memchr(key, MAILTEXT_SEP, kl))
                continue;
        }
        size_t nk = ix_winnow(key, kl, kg);
        ck_assert_uint_gt(nk, 0);
        for (size_t j = 0; j < nk; j++) {
            size_t n = gram_list(t, MT_BODY, kg[j].hash, got, N + 10);
            size_t e = 0;
            for (unsigned i = 1; i <= N; i++) {
                if (!has_hash(g[i], ng[i], kg[j].hash))
                    continue;
                ck_assert_uint_lt(e, n);
                ck_assert_uint_eq(got[e], i);
                e++;
            }
            ck_assert_uint_eq(e, n);
            /* the guarantee: a message that contains the key is listed */
            for (unsigned i = 1; i <= N; i++)
                if (body[i].len >= kl && memmem(body[i].data, body[i].len, key, kl))
                    ck_assert(has_hash(g[i], ng[i], kg[j].hash));
        }
        keys++;
    }
    ck_assert_uint_gt(keys, 150);
    /* the shared phrase's grams are in every message: long lists */
    struct buf fk;
    buf_init(&fk, 0);
    unicase_fold((const unsigned char *)"the shared phrase here", 22, &fk);
    static struct ix_gram pg[64];
    size_t np = ix_winnow(fk.data, fk.len, pg);
    buf_reset(&fk);
    ck_assert_uint_gt(np, 0);
    for (size_t j = 0; j < np; j++)
        ck_assert_uint_eq(gram_list(t, MT_BODY, pg[j].hash, got, N + 10), N);
    /* the Message-ID field has grams too; the whole header text has none */
    unicase_fold((const unsigned char *)"<m1234.x@example.org>", 21, &fk);
    size_t nm = ix_winnow(fk.data, fk.len, kg);
    ck_assert_uint_gt(nm, 0);
    for (size_t j = 0; j < nm; j++) {
        size_t n = gram_list(t, MT_MSGID, kg[j].hash, got, N + 10);
        bool found = false;
        for (size_t x = 0; x < n && x < N + 10; x++)
            found |= got[x] == 1234;
        ck_assert(found);
        ck_assert_uint_eq(gram_list(t, MT_HDR, kg[j].hash, got, N + 10), 0);
    }
    buf_free(&fk);
    /* removal */
    ck_assert_int_eq(index_remove_message(t, &dbs, 777, &err), 0);
    for (size_t j = 0; j < ng[777]; j++) {
        size_t n = gram_list(t, MT_BODY, g[777][j].hash, got, N + 10);
        for (size_t x = 0; x < n && x < N + 10; x++)
            ck_assert_uint_ne(got[x], 777);
    }
    for (size_t j = 0; j < np; j++)
        ck_assert_uint_eq(gram_list(t, MT_BODY, pg[j].hash, got, N + 10), N - 1);
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    mdb_txn_abort(t);
    for (unsigned i = 1; i <= N; i++) {
        buf_free(&body[i]);
        free(g[i]);
    }
    buf_free(&tb);
    free(body);
    free(g);
    free(ng);
    free(got);
}
END_TEST

/* The executor trusts the grams only while ix_meta "grams" says they cover
 * every message: a fresh index has it, index_clear drops it,
 * index_mark_complete sets it again; an index from before them has none
 * (the executor then joins trigrams alone, as before). Verify knows the
 * gram fields and rejects a malformed bucket key. */
START_TEST(test_gram_mark)
{
    const char *err = NULL;
    MDB_txn *t;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
    ck_assert(ix_grams_complete(t, &dbs));
    add(t, 1, mkwords(1));
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    ck_assert_int_eq(index_clear(t, &dbs, &err), 0);
    ck_assert(!ix_grams_complete(t, &dbs));
    add(t, 1, mkwords(1));
    ck_assert_int_eq(index_mark_complete(t, &dbs, &err), 0);
    ck_assert(ix_grams_complete(t, &dbs));
    /* an index written before the grams: no mark */
    MDB_val k = { 5, (void *)"grams" };
    ck_assert_int_eq(mdb_del(t, dbs.dbi[DBI_META], &k, NULL), 0);
    ck_assert(!ix_grams_complete(t, &dbs));
    /* a message numbered past the tags' room drops the mark */
    ck_assert_int_eq(index_mark_complete(t, &dbs, &err), 0);
    ck_assert(ix_grams_complete(t, &dbs));
    add(t, IX_GRAM_MSGMASK + 1, mkwords(2));
    ck_assert(!ix_grams_complete(t, &dbs));
    ck_assert_int_eq(index_mark_complete(t, &dbs, &err), 0);
    ck_assert(!ix_grams_complete(t, &dbs));      /* still there */
    ck_assert_int_eq(index_remove_message(t, &dbs, IX_GRAM_MSGMASK + 1, &err), 0);
    ck_assert_int_eq(index_mark_complete(t, &dbs, &err), 0);
    ck_assert(ix_grams_complete(t, &dbs));
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 0);
    /* a gram bucket key must have a zero third octet */
    bool planted = false;
    for (unsigned l = 0; l < IX_LEVELS && !planted; l++) {
        MDB_cursor *c;
        MDB_val bk, bv;
        ck_assert_int_eq(mdb_cursor_open(t, dbs.dbi[DBI_L0 + l], &c), 0);
        for (int rc = mdb_cursor_get(c, &bk, &bv, MDB_FIRST); rc == 0 && !planted;
             rc = mdb_cursor_get(c, &bk, &bv, MDB_NEXT)) {
            const unsigned char *kp = bk.mv_data;
            if (kp[4] != IX_GRAM_FIELD(MT_BODY))
                continue;
            ck_assert_uint_eq(kp[7], 0);
            unsigned char nk[IX_KEYLEN], nv[1024];
            memcpy(nk, kp, IX_KEYLEN);
            ck_assert_uint_le(bv.mv_size, sizeof nv);
            memcpy(nv, bv.mv_data, bv.mv_size);
            nk[7] = 1;
            MDB_val k2 = { IX_KEYLEN, nk }, v2 = { bv.mv_size, nv };
            mdb_cursor_close(c);
            c = NULL;
            ck_assert_int_eq(mdb_put(t, dbs.dbi[DBI_L0 + l], &k2, &v2, 0), 0);
            planted = true;
        }
        if (c)
            mdb_cursor_close(c);
    }
    ck_assert(planted);
    ck_assert_int_eq(index_verify(t, &dbs, NULL, NULL), 1);
    mdb_txn_abort(t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_many_blocks);
    tcase_add_test(tc, test_idempotent_and_substring);
    tcase_add_test(tc, test_verify_detects_corruption);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_levels_and_merges);
    tcase_add_test(tc, test_streamed_intersection);
    tcase_add_test(tc, test_migrate_v1);
    tcase_add_test(tc, test_position_masks);
    tcase_add_test(tc, test_seek_distances);
    tcase_add_test(tc, test_members);
    tcase_add_test(tc, test_winnow_selection);
    tcase_add_test(tc, test_gram_postings);
    tcase_add_test(tc, test_gram_mark);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
