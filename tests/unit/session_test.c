/* Unit tests for the session's pure helpers: LIST pattern matching,
 * AUTHENTICATE base64, INTERNALDATE and flag formatting. The command
 * handlers themselves are exercised over a real cofferd by
 * tests/integration/test_session.py. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, t_match);
    tcase_add_test(tc, t_match_long);
    tcase_add_test(tc, t_b64);
    tcase_add_test(tc, t_date_flags);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
