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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
