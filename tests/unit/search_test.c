/* search_test.c — SEARCH parser (every key, every error), i;unicode-casemap
 * folding, RFC 2047 decoding, charset conversion, header text. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "tests/unit/unit_main.h"
#include "proto/charset.h"
#include "proto/imapparse.h"
#include "proto/mailtext.h"
#include "proto/search.h"
#include "proto/search_prog.h"
#include "proto/unicase.h"

static struct search_prog *prog;
static int pcode;
static const char *perr;

/* Parse a SEARCH argument line; returns search_parse's result. */
static int parse(const char *line)
{
    struct imap_cmd cmd;
    const char *err = NULL;
    memset(&cmd, 0, sizeof cmd);
    search_free(prog);
    prog = NULL;
    pcode = 0;
    perr = NULL;
    int rc = imap_parse_args(line, strlen(line), NULL, &cmd, &err);
    ck_assert_msg(rc == 0, "imap_parse_args failed on %s: %s", line, err ? err : "?");
    rc = search_parse(cmd.args, cmd.nargs, &prog, &pcode, &perr);
    imap_cmd_free(&cmd);
    return rc;
}

static const char *fold(const char *s)
{
    static struct buf b;
    buf_free(&b);
    buf_init(&b, 0);
    ck_assert_int_eq(unicase_fold((const unsigned char *)s, strlen(s), &b), 0);
    return buf_cstr(&b);
}

START_TEST(test_every_key_parses)
{
    static const char *const ok[] = {
        "ALL", "ANSWERED", "BCC \"x\"", "BEFORE 1-Feb-2020", "BODY hello", "CC \"a b\"",
        "DELETED", "DRAFT", "FLAGGED", "FROM \"joe\"", "HEADER Message-ID \"<a@b>\"",
        "HEADER X-Foo \"\"", "KEYWORD $Forwarded", "LARGER 100", "NEW", "NOT SEEN", "OLD",
        "ON 01-Jan-2000", "OR SEEN FLAGGED", "RECENT", "SEEN", "SENTBEFORE 1-Jan-2000",
        "SENTON 1-Jan-2000", "SENTSINCE 1-Jan-2000", "SINCE \"1-Jan-2020\"", "SMALLER 5",
        "SUBJECT test", "TEXT \"x y\"", "TO python", "UID 1:10,20", "UNANSWERED", "UNDELETED",
        "UNDRAFT", "UNFLAGGED", "UNKEYWORD foo", "UNSEEN", "1:3", "*", "2,4:*", "$", "UID $",
        "(SEEN FLAGGED)", "((SEEN) (NOT (FLAGGED)))", "OR (SEEN FLAGGED) NOT DELETED",
        "CHARSET UTF-8 SUBJECT test", "CHARSET us-ascii TEXT hello",
        "CHARSET ISO-8859-1 BODY x", "CHARSET WINDOWS-1252 BODY x", "CHARSET KOI8-R BODY x",
        "CHARSET KOI8-U BODY x", "CHARSET ISO-8859-15 BODY x", "RETURN (MIN MAX) ALL",
        "RETURN () ALL", "RETURN (COUNT SAVE) CHARSET UTF-8 ALL", "UNDELETED BODY \"x\"",
        "seen larger 1 smaller 9", "LARGER 9223372036854775807",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ck_assert_msg(parse(ok[i]) == 0, "rejected %s: %s", ok[i], perr ? perr : "");
}
END_TEST

START_TEST(test_every_error)
{
    static const char *const bad[] = {
        "", "FOO", "BEFORE", "BEFORE 1-Foo-2020", "BEFORE 32-Jan-2020", "BEFORE 1-Jan-20",
        "BEFORE 0-Jan-2020", "ON x", "LARGER", "LARGER -1", "LARGER 1x",
        "LARGER 99999999999999999999", "SMALLER abc", "FROM", "SUBJECT (a)", "HEADER",
        "HEADER \"\" x", "HEADER X-Foo", "HEADER \"a b\" x", "KEYWORD", "KEYWORD \\Seen",
        "KEYWORD \"x\"", "UNKEYWORD", "NOT", "OR SEEN", "OR", "UID", "UID x", "UID 0",
        "0", "1:0", "()", "(SEEN", "\"ALL\"", "RETURN", "RETURN (FOO) ALL", "RETURN ALL",
        "CHARSET", "CHARSET UTF-8", "BODY", "TEXT", "SEEN FOO",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct imap_cmd cmd;
        const char *err = NULL;
        memset(&cmd, 0, sizeof cmd);
        if (imap_parse_args(bad[i], strlen(bad[i]), NULL, &cmd, &err) != 0) {
            imap_cmd_free(&cmd);
            continue;          /* not even an argument list */
        }
        search_free(prog);
        prog = NULL;
        int rc = search_parse(cmd.args, cmd.nargs, &prog, &pcode, &perr);
        imap_cmd_free(&cmd);
        ck_assert_msg(rc == -1, "accepted %s", bad[i]);
        ck_assert_int_eq(pcode, SEARCH_ERR_BAD);
        ck_assert_ptr_nonnull(perr);
    }
    /* the message says where */
    ck_assert_int_eq(parse("SEEN (FLAGGED FOO)"), -1);
    ck_assert_msg(strstr(perr, "argument 2.2") != NULL, "%s", perr);
    ck_assert_msg(strstr(perr, "FOO") != NULL, "%s", perr);
    ck_assert_int_eq(parse("LARGER 1 BEFORE x"), -1);
    ck_assert_msg(strstr(perr, "argument 4") != NULL, "%s", perr);
}
END_TEST

START_TEST(test_badcharset_is_no)
{
    ck_assert_int_eq(parse("CHARSET X-NO-SUCH-CHARSET TEXT hello"), -1);
    ck_assert_int_eq(pcode, SEARCH_ERR_BADCHARSET);
    ck_assert_int_eq(parse("CHARSET SHIFT_JIS TEXT hello"), -1);   /* message-only */
    ck_assert_int_eq(pcode, SEARCH_ERR_BADCHARSET);
    const char *l = search_charsets_list();
    ck_assert_msg(strstr(l, "UTF-8") && strstr(l, "US-ASCII") && strstr(l, "ISO-8859-1 ") &&
                  strstr(l, "WINDOWS-1252") && strstr(l, "KOI8-U"), "%s", l);
}
END_TEST

START_TEST(test_tree_shape)
{
    ck_assert_int_eq(parse("OR SEEN NOT FLAGGED"), 0);
    ck_assert_int_eq(prog->root->type, SK_OR);
    ck_assert_int_eq(prog->root->kids[0]->type, SK_FLAG);
    ck_assert_uint_eq(prog->root->kids[0]->flags, SEARCH_F_SEEN);
    ck_assert_int_eq(prog->root->kids[1]->type, SK_NOT);
    ck_assert_int_eq(parse("SEEN UNDRAFT"), 0);
    ck_assert_int_eq(prog->root->type, SK_AND);
    ck_assert_uint_eq(prog->root->nkids, 2);
    ck_assert_int_eq(prog->root->kids[1]->type, SK_UNFLAG);
    ck_assert_int_eq(parse("SINCE 2-Jan-1970"), 0);
    ck_assert_int_eq(prog->root->num, 1);
    ck_assert_int_eq(parse("BEFORE 1-Mar-2000"), 0);
    ck_assert_int_eq(prog->root->num, 11017);
    ck_assert_int_eq(parse("LARGER 12345"), 0);
    ck_assert_int_eq(prog->root->num, 12345);
    ck_assert_int_eq(parse("$"), 0);
    ck_assert_int_eq(prog->root->type, SK_SAVED);
    ck_assert_int_eq(parse("UID 5:*"), 0);
    ck_assert_int_eq(prog->root->type, SK_UID);
    ck_assert_int_eq(parse("NEW"), 0);
    ck_assert_int_eq(prog->root->type, SK_NONE);
    ck_assert_int_eq(parse("OLD"), 0);
    ck_assert_int_eq(prog->root->type, SK_ALL);
    ck_assert_int_eq(parse("HEADER Subject \"a\""), 0);
    ck_assert_int_eq(prog->root->field, MT__N);            /* plain header search */
    ck_assert_int_eq(parse("SUBJECT \"a\""), 0);
    ck_assert_int_eq(prog->root->field, MT_SUBJECT);
    ck_assert_int_eq(parse("HEADER message-id \"<X>\""), 0);
    ck_assert_int_eq(prog->root->field, MT_MSGID);
    ck_assert_str_eq((const char *)prog->root->key, "<X>");
    ck_assert_int_eq(parse("HEADER X-Foo \"\""), 0);
    ck_assert(prog->root->exists_only);
}
END_TEST

START_TEST(test_return)
{
    bool es;
    ck_assert_int_eq(parse("ALL"), 0);
    ck_assert_uint_eq(search_return(prog, &es), 0);
    ck_assert(!es);
    ck_assert_int_eq(parse("RETURN () ALL"), 0);
    ck_assert_uint_eq(search_return(prog, &es), SEARCH_RET_ALL);
    ck_assert(es);
    ck_assert_int_eq(parse("RETURN (MIN MAX COUNT SAVE ALL) 1:*"), 0);
    ck_assert_uint_eq(search_return(prog, &es), SEARCH_RET_MIN | SEARCH_RET_MAX |
                      SEARCH_RET_COUNT | SEARCH_RET_SAVE | SEARCH_RET_ALL);
}
END_TEST

START_TEST(test_keys_are_folded_and_converted)
{
    ck_assert_int_eq(parse("SUBJECT \"hello World\""), 0);
    ck_assert_str_eq((const char *)prog->root->key, "HELLO WORLD");
    ck_assert_int_eq(parse("CHARSET ISO-8859-1 BODY {1}\r\n\xe9"), 0);
    ck_assert_str_eq((const char *)prog->root->key, "E\xcc\x81");
    ck_assert_int_eq(parse("CHARSET KOI8-R BODY {1}\r\n\xc1"), 0);   /* а */
    ck_assert_str_eq((const char *)prog->root->key, "\xd0\x90");    /* А */
    ck_assert_int_eq(parse("CHARSET UTF-8 BODY {2}\r\n\xc3\xa9"), 0);
    ck_assert_str_eq((const char *)prog->root->key, "E\xcc\x81");
    /* invalid for the charset: BAD */
    ck_assert_int_eq(parse("CHARSET US-ASCII BODY {1}\r\n\xe9"), -1);
    ck_assert_int_eq(pcode, SEARCH_ERR_BAD);
    ck_assert_int_eq(parse("CHARSET UTF-8 BODY {2}\r\n\xc3("), -1);
}
END_TEST

START_TEST(test_unicase)
{
    /* Dovecot's own test vector: ü ³ -> U+0308 3 */
    ck_assert_str_eq(fold("\xc3\xbc \xc2\xb3"), "U\xcc\x88 3");
    ck_assert_str_eq(fold("abcXYZ09 !~"), "ABCXYZ09 !~");
    ck_assert_str_eq(fold("stra\xc3\x9f" "e"), "STRA\xc3\x9f" "E");     /* ß has no simple titlecase */
    ck_assert_str_eq(fold("\xc7\x86"), "Dz\xcc\x8c");               /* ǆ -> ǅ -> D z U+030C */
    ck_assert_str_eq(fold("\xea\xb0\x80"), "\xe1\x84\x80\xe1\x85\xa1");  /* 가 -> ᄀ ᅡ */
    ck_assert_str_eq(fold("\xef\xac\x81"), "fi");                   /* ﬁ: NFKD */
    ck_assert_str_eq(fold("\xce\xb1\xcf\x82"), "\xce\x91\xce\xa3");   /* ας -> ΑΣ */
    ck_assert_str_eq(fold("\xd0\xb4"), "\xd0\x94");                 /* д -> Д */
    /* invalid UTF-8: one U+FFFD per run */
    ck_assert_str_eq(fold("a\xff\xfe" "b"), "A\xef\xbf\xbd" "B");
    ck_assert_str_eq(fold("\xc0\xaf"), "\xef\xbf\xbd");           /* overlong */
    ck_assert_str_eq(fold("\xed\xa0\x80"), "\xef\xbf\xbd");        /* surrogate */
}
END_TEST

static const char *dec2047(const char *s)
{
    static struct buf b;
    buf_free(&b);
    buf_init(&b, 0);
    ck_assert_int_eq(mailtext_decode_2047((const unsigned char *)s, strlen(s), &b), 0);
    return buf_cstr(&b);
}

START_TEST(test_rfc2047)
{
    ck_assert_str_eq(dec2047("=?ISO-8859-1?Q?Gr=FC=DFe?="), "Gr\xc3\xbc\xc3\x9f" "e");
    ck_assert_str_eq(dec2047("=?utf-8?b?w6k=?="), "\xc3\xa9");
    /* white space between adjacent encoded words disappears */
    ck_assert_str_eq(dec2047("=?UTF-8?Q?a?= \t =?UTF-8?Q?b?="), "ab");
    ck_assert_str_eq(dec2047("x =?UTF-8?Q?a_b?= y"), "x a b y");
    ck_assert_str_eq(dec2047("=?KOI8-R?B?8NLJ18XU?="), "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
    ck_assert_str_eq(dec2047("=?UTF-8*en?Q?hi?="), "hi");            /* RFC 2231 language */
    ck_assert_str_eq(dec2047("=?X-UNKNOWN?Q?zz?= ok"), "zz ok");       /* kept, as Dovecot */
    ck_assert_str_eq(dec2047("=?NONE?B?VEVTVA=?="), "TEST");
    ck_assert_str_eq(dec2047("=?UTF-8?X?bad?="), "=?UTF-8?X?bad?=");  /* not an encoded word */
    ck_assert_str_eq(dec2047("=?UTF-8?Q?unterminated"), "=?UTF-8?Q?unterminated");
    ck_assert_str_eq(dec2047("plain text"), "plain text");
    ck_assert_str_eq(dec2047("=?windows-1252?Q?=80?="), "\xe2\x82\xac");
}
END_TEST

START_TEST(test_charset)
{
    struct buf b;
    buf_init(&b, 0);
    int h = charset_find("latin1", 6);
    ck_assert_int_ge(h, 2);
    ck_assert_int_eq(charset_find("iso_8859-1", 10), h);
    ck_assert_int_eq(charset_find("ISO8859-1", 9), h);
    ck_assert_int_eq(charset_find("x-bogus", 7), CHARSET_UNKNOWN);
    ck_assert(charset_search_ok(charset_find("windows-1251", 12)));
    ck_assert(!charset_search_ok(charset_find("big5", 4)));
    ck_assert_int_eq(charset_to_utf8(h, (const unsigned char *)"\xe9t\xe9", 3, true, &b), 0);
    ck_assert_str_eq(buf_cstr(&b), "\xc3\xa9t\xc3\xa9");
    buf_reset(&b);
    int sj = charset_find("Shift_JIS", 9);
    ck_assert_int_eq(charset_to_utf8(sj, (const unsigned char *)"\x82\xa0", 2, false, &b), 0);
    ck_assert_str_eq(buf_cstr(&b), "\xe3\x81\x82");    /* あ */
    buf_reset(&b);
    /* invalid input: U+FFFD (lenient) or 1 (strict) */
    int u = charset_find("UTF-16LE", 8);
    ck_assert_int_eq(charset_to_utf8(u, (const unsigned char *)"a\0b", 3, false, &b), 0);
    ck_assert_str_eq(buf_cstr(&b), "a\xef\xbf\xbd");
    buf_reset(&b);
    ck_assert_int_eq(charset_to_utf8(CHARSET_ASCII, (const unsigned char *)"\x80", 1, true, &b), 1);
    buf_free(&b);
}
END_TEST

START_TEST(test_header_field_text)
{
    static const char hdr[] =
        "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\n"
        "Subject: Hello\r\n   folded    world\r\n"
        "Subject: second\r\n"
        "X-Empty:\r\n"
        "\r\n";
    struct buf b;
    bool present;
    buf_init(&b, 0);
    ck_assert_int_eq(mailtext_field((const unsigned char *)hdr, sizeof hdr - 1, "from", false,
                                    &b, &present), 0);
    ck_assert(present);
    ck_assert_str_eq(buf_cstr(&b), "JU\xcc\x88RGEN <J@EXAMPLE.ORG>");
    buf_reset(&b);
    ck_assert_int_eq(mailtext_field((const unsigned char *)hdr, sizeof hdr - 1, "Subject", true,
                                    &b, &present), 0);
    ck_assert_str_eq(buf_cstr(&b), "HELLO FOLDED WORLD\xff" "SECOND");
    buf_reset(&b);
    ck_assert_int_eq(mailtext_field((const unsigned char *)hdr, sizeof hdr - 1, "x-empty", false,
                                    &b, &present), 0);
    ck_assert(present);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(mailtext_field((const unsigned char *)hdr, sizeof hdr - 1, "Cc", false,
                                    &b, &present), 0);
    ck_assert(!present);
    /* a match never spans two fields */
    buf_reset(&b);
    mailtext_field((const unsigned char *)hdr, sizeof hdr - 1, "Subject", true, &b, &present);
    ck_assert(mailtext_contains(&b, (const unsigned char *)"WORLD", 5));
    ck_assert(!mailtext_contains(&b, (const unsigned char *)"WORLDSECOND", 11));
    buf_free(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("search");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_every_key_parses);
    tcase_add_test(tc, test_every_error);
    tcase_add_test(tc, test_badcharset_is_no);
    tcase_add_test(tc, test_tree_shape);
    tcase_add_test(tc, test_return);
    tcase_add_test(tc, test_keys_are_folded_and_converted);
    tcase_add_test(tc, test_unicase);
    tcase_add_test(tc, test_rfc2047);
    tcase_add_test(tc, test_charset);
    tcase_add_test(tc, test_header_field_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (search_charsets_init(NULL) != 0)
        return EXIT_FAILURE;
    return unit_run(suite());
}
