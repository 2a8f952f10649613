/* Unit tests for the session's pure helpers: LIST pattern matching,
 * AUTHENTICATE base64, INTERNALDATE and flag formatting. The command
 * handlers themselves are exercised over a real cofferd by
 * tests/integration/test_session.py. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit_main.h"
#include "server/session_int.h"

START_TEST(t_match)
{
    ck_assert(sess_mbox_match("*", "INBOX"));
    ck_assert(sess_mbox_match("*", "a/b/c"));
    ck_assert(sess_mbox_match("%", "INBOX"));
    ck_assert(!sess_mbox_match("%", "a/b"));
    ck_assert(sess_mbox_match("a/%", "a/b"));
    ck_assert(!sess_mbox_match("a/%", "a/b/c"));
    ck_assert(sess_mbox_match("a/*", "a/b/c"));
    ck_assert(!sess_mbox_match("a/*", "a"));
    ck_assert(sess_mbox_match("inbox", "INBOX"));          /* INBOX is case-insensitive */
    ck_assert(sess_mbox_match("Inbox/%", "INBOX/x"));
    ck_assert(!sess_mbox_match("Archive", "archive"));     /* other names are not */
    ck_assert(sess_mbox_match("Users/%/INBOX", "Users/bob/INBOX"));
    ck_assert(!sess_mbox_match("Users/%/INBOX", "Users/bob/x/INBOX"));
    ck_assert(sess_mbox_match("%b%", "abc"));
    ck_assert(sess_mbox_match("", ""));
    ck_assert(!sess_mbox_match("", "a"));
    ck_assert(sess_mbox_match("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaab"));
    ck_assert(!sess_mbox_match("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa"));
}
END_TEST

START_TEST(t_match_long)
{
    /* no exponential blow-up: many wildcards against a long name */
    char pat[200], name[1000];
    for (int i = 0; i < 99; i++) {
        pat[2 * i] = '*';
        pat[2 * i + 1] = 'a';
    }
    pat[198] = 'b';
    pat[199] = '\0';
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    ck_assert(!sess_mbox_match(pat, name));
}
END_TEST

START_TEST(t_b64)
{
    struct buf b;
    buf_init(&b, 1024);
    ck_assert_int_eq(sess_b64_decode("AGpvbgBwdw==", 12, &b), 0);
    ck_assert_uint_eq(b.len, 7);
    ck_assert_int_eq(memcmp(b.data, "\0jon\0pw", 7), 0);
    buf_reset(&b);
    ck_assert_int_eq(sess_b64_encode((const unsigned char *)"\0jon\0pw", 7, &b), 0);
    ck_assert_str_eq(buf_cstr(&b), "AGpvbgBwdw==");
    buf_reset(&b);
    ck_assert_int_eq(sess_b64_decode("", 0, &b), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sess_b64_decode("AGp", 3, &b), -1);      /* not a multiple of 4 */
    ck_assert_int_eq(sess_b64_decode("A=pv", 4, &b), -1);     /* '=' in the middle */
    ck_assert_int_eq(sess_b64_decode("AG*v", 4, &b), -1);
    buf_free(&b);
}
END_TEST

START_TEST(t_date_flags)
{
    char d[96];
    sess_fmt_date(d, 0, 0);
    ck_assert_str_eq(d, "01-Jan-1970 00:00:00 +0000");
    sess_fmt_date(d, 1426081003, -7 * 60);   /* 2015-03-11 13:36:43 UTC */
    ck_assert_str_eq(d, "11-Mar-2015 06:36:43 -0700");
    sess_fmt_date(d, 1426081003, 5 * 60 + 30);
    ck_assert_str_eq(d, "11-Mar-2015 19:06:43 +0530");
    struct buf b;
    buf_init(&b, 256);
    sess_append_flags(&b, 0);
    ck_assert_str_eq(buf_cstr(&b), "()");
    buf_reset(&b);
    sess_append_flags(&b, STORE_F_SEEN | STORE_F_ANSWERED | STORE_F_FLAGGED | STORE_F_DRAFT);
    ck_assert_str_eq(buf_cstr(&b), "(\\Answered \\Flagged \\Seen \\Draft)");
    buf_free(&b);
}
END_TEST

/* The view keeps UID runs (server/cmd_select.c): lookups by index and by
 * UID, the array SEARCH gets, and message sets over a view with gaps. */
START_TEST(t_view_runs)
{
    static const uint32_t want[] = {1, 2, 3, 10, 20, 21, 22, 23, 24};
    struct uid_run runs[4] = {{0, 1, 3}, {3, 10, 1}, {4, 20, 5}, {0, 0, 0}};
    struct session s;
    memset(&s, 0, sizeof(s));
    ck_assert_uint_eq(sess_view_last_uid(&s), 0);
    ck_assert_uint_eq(sess_view_lower_bound(&s, 1), 0);
    s.runs = runs;
    s.nruns = s.capruns = 3;
    s.nuids = 9;
    for (size_t i = 0; i < 9; i++)      /* ascending: the cached run */
        ck_assert_uint_eq(sess_view_uid(&s, i), want[i]);
    static const size_t order[] = {8, 0, 4, 3, 7, 1, 5, 2, 6};
    for (size_t k = 0; k < 9; k++)      /* any order: the binary search */
        ck_assert_uint_eq(sess_view_uid(&s, order[k]), want[order[k]]);
    ck_assert_uint_eq(sess_view_last_uid(&s), 24);
    static const uint32_t probe[] = {0, 1, 3, 4, 9, 10, 11, 19, 20, 24, 25};
    static const size_t lb[] = {0, 0, 2, 3, 3, 3, 4, 4, 4, 8, 9};
    for (size_t k = 0; k < sizeof(probe) / sizeof(probe[0]); k++)
        ck_assert_uint_eq(sess_view_lower_bound(&s, probe[k]), lb[k]);
    bool oom = true;
    const uint32_t *arr = sess_view_array(&s, &oom);
    ck_assert(!oom && arr != NULL);
    ck_assert_mem_eq(arr, want, 9 * sizeof(want[0]));
    ck_assert_ptr_eq(sess_view_array(&s, &oom), s.vcache);   /* kept between SEARCHes */
    ck_assert_uint_eq(s.nvcache, 9);
    /* new mail extends the last run and adds one: only the tail is filled */
    runs[2].n = 6;
    runs[3] = (struct uid_run){10, 40, 2};
    s.nruns = 4;
    s.nuids = 12;
    s.vcache[0] = 999;               /* an entry the extension must not touch */
    arr = sess_view_array(&s, &oom);
    ck_assert(!oom && arr != NULL);
    ck_assert_uint_eq(arr[0], 999);
    static const uint32_t more[] = {25, 40, 41};
    ck_assert_mem_eq(arr + 9, more, sizeof(more));
    s.vcache[0] = 1;
    s.nruns = 3;                     /* back to the first view for the checks below */
    runs[2].n = 5;
    s.nuids = 9;
    arr = sess_view_array(&s, &oom); /* a copy longer than the view is rebuilt */
    ck_assert_mem_eq(arr, want, 9 * sizeof(want[0]));
    free(s.vcache);
    s.vcache = NULL;
    s.nvcache = 0;
    /* UID 2:21 -> view indexes 1..5; sequence 8:* -> 7, 8 */
    struct imap_arg a = {.type = IMAP_ARG_ATOM, .s = "2:21", .len = 4};
    struct view_iter it;
    const char *err = NULL;
    ck_assert_int_eq(view_iter_init(&s, &a, true, &it, &err), 0);
    size_t idx, n = 0, got[16];
    while (view_iter_next(&s, &it, &idx) && n < 16)
        got[n++] = idx;
    view_iter_free(&it);
    ck_assert_uint_eq(n, 5);
    for (size_t k = 0; k < n; k++)
        ck_assert_uint_eq(got[k], k + 1);
    a.s = "8:*";
    a.len = 3;
    ck_assert_int_eq(view_iter_init(&s, &a, false, &it, &err), 0);
    n = 0;
    while (view_iter_next(&s, &it, &idx) && n < 16)
        got[n++] = idx;
    view_iter_free(&it);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(got[0], 7);
    ck_assert_uint_eq(got[1], 8);
    a.s = "10";
    a.len = 2;   /* sequence number past the view */
    ck_assert_int_eq(view_iter_init(&s, &a, false, &it, &err), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, t_match);
    tcase_add_test(tc, t_match_long);
    tcase_add_test(tc, t_b64);
    tcase_add_test(tc, t_date_flags);
    tcase_add_test(tc, t_view_runs);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
