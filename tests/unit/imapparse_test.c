/* Unit tests for proto/imapparse (command tokenizer, quoting), proto/seqset
 * and proto/mutf7. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit_main.h"
#include "proto/buf.h"
#include "proto/imapparse.h"
#include "proto/mutf7.h"
#include "proto/seqset.h"

static int parse(const char *s, struct imap_cmd *cmd, const char **err)
{
    *err = NULL;
    return imap_parse_command(s, strlen(s), NULL, cmd, err);
}

START_TEST(t_simple)
{
    struct imap_cmd c;
    const char *err;
    ck_assert_int_eq(parse("a1 login jon \"pa ss\\\"w\\\\\"", &c, &err), 0);
    ck_assert_str_eq(c.tag, "a1");
    ck_assert_str_eq(c.name, "LOGIN");
    ck_assert_uint_eq(c.nargs, 2);
    ck_assert_int_eq(c.args[0].type, IMAP_ARG_ATOM);
    ck_assert_str_eq(c.args[0].s, "jon");
    ck_assert_int_eq(c.args[1].type, IMAP_ARG_QUOTED);
    ck_assert_str_eq(c.args[1].s, "pa ss\"w\\");
    ck_assert_uint_eq(c.args[1].len, 8);
    imap_cmd_free(&c);

    ck_assert_int_eq(parse("x CAPABILITY", &c, &err), 0);
    ck_assert_str_eq(c.name, "CAPABILITY");
    ck_assert_uint_eq(c.nargs, 0);
    imap_cmd_free(&c);
}
END_TEST

START_TEST(t_bracket_atom)
{
    struct imap_cmd c;
    const char *err;
    const char *cmd = "7 UID fetch 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
                      "(From To \"Cc\")]<0.100> BODY[1.2])";
    ck_assert_int_eq(parse(cmd, &c, &err), 0);
    ck_assert_str_eq(c.name, "UID");
    ck_assert_uint_eq(c.nargs, 3);
    ck_assert_str_eq(c.args[0].s, "fetch");
    ck_assert_str_eq(c.args[1].s, "1:*");
    ck_assert_int_eq(c.args[2].type, IMAP_ARG_LIST);
    ck_assert_uint_eq(c.args[2].nlist, 5);
    ck_assert_str_eq(c.args[2].list[3].s,
                     "BODY.PEEK[HEADER.FIELDS (From To \"Cc\")]<0.100>");
    ck_assert_str_eq(c.args[2].list[4].s, "BODY[1.2]");
    imap_cmd_free(&c);

    ck_assert_int_eq(parse("a FETCH 1 BODY[HEADER", &c, &err), -1);
    ck_assert(c.have_tag);
    ck_assert_str_eq(c.tag, "a");
    imap_cmd_free(&c);
}
END_TEST

START_TEST(t_literals)
{
    struct imap_cmd c;
    const char *err;
    static const char in[] = "b LOGIN {3}\r\nj\0n {4+}\r\nx y) ~{2}\r\n\0\0";
    ck_assert_int_eq(imap_parse_command(in, sizeof(in) - 1, NULL, &c, &err), 0);
    ck_assert_uint_eq(c.nargs, 3);
    ck_assert_int_eq(c.args[0].type, IMAP_ARG_LITERAL);
    ck_assert_uint_eq(c.args[0].len, 3);
    ck_assert_int_eq(memcmp(c.args[0].s, "j\0n", 3), 0);
    ck_assert_str_eq(c.args[1].s, "x y)");
    ck_assert(!c.args[1].literal8);
    ck_assert(c.args[2].literal8);
    ck_assert_uint_eq(c.args[2].len, 2);
    imap_cmd_free(&c);

    /* truncated literal */
    static const char t[] = "b LOGIN {10}\r\nabc";
    ck_assert_int_eq(imap_parse_command(t, sizeof(t) - 1, NULL, &c, &err), -1);
    imap_cmd_free(&c);
}
END_TEST

START_TEST(t_line_literal)
{
    struct imap_lit l;
    const char *s = "a LOGIN {12}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 1);
    ck_assert_uint_eq(l.size, 12);
    ck_assert(!l.nonsync);
    ck_assert_uint_eq(l.marker_off, 8);
    s = "a APPEND x ~{7+}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 1);
    ck_assert(l.nonsync);
    ck_assert(l.literal8);
    ck_assert_uint_eq(l.size, 7);
    s = "a LOGIN {99999999999999999999999}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 1);
    ck_assert_uint_eq(l.size, UINT64_MAX);
    s = "a LOGIN {}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 0);
    s = "a LOGIN x}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 0);
    s = "}";
    ck_assert_int_eq(imap_line_literal(s, strlen(s), &l), 0);
}
END_TEST

START_TEST(t_errors)
{
    struct imap_cmd c;
    const char *err;
    const char *bad[] = {
        "", "a", " a NOOP", "a+b NOOP", "a (NOOP", "a NOOP )", "a LOGIN \"x",
        "a LOGIN \"x\\n\"", "a LOGIN (a b", "a LOGIN x\"y\"", "a LOGIN {x}\r\n",
        "a LOGIN \"a\rb\"", "a LOGIN a\tb",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &c, &err);
        ck_assert_msg(rc == -1, "accepted: %s", bad[i]);
        ck_assert_ptr_nonnull(err);
        imap_cmd_free(&c);
    }
}
END_TEST

START_TEST(t_nesting)
{
    struct imap_parse_limits lim = {.max_nesting = 3, .max_args = 10};
    struct imap_cmd c;
    const char *err;
    const char *ok = "a X (((a)))";
    ck_assert_int_eq(imap_parse_command(ok, strlen(ok), &lim, &c, &err), 0);
    ck_assert_str_eq(c.args[0].list[0].list[0].list[0].s, "a");
    imap_cmd_free(&c);
    const char *deep = "a X ((((a))))";
    ck_assert_int_eq(imap_parse_command(deep, strlen(deep), &lim, &c, &err), -1);
    imap_cmd_free(&c);
    const char *many = "a X 1 2 3 4 5 6 7 8 9 10 11";
    ck_assert_int_eq(imap_parse_command(many, strlen(many), &lim, &c, &err), -1);
    imap_cmd_free(&c);

    /* default depth limit holds against a long run of '(' */
    size_t n = 100000;
    char *s = malloc(n + 8);
    memcpy(s, "a X ", 4);
    memset(s + 4, '(', n);
    ck_assert_int_eq(imap_parse_command(s, n + 4, NULL, &c, &err), -1);
    imap_cmd_free(&c);
    free(s);
}
END_TEST

START_TEST(t_quote_out)
{
    struct buf b;
    buf_init(&b, 0);
    imap_append_string(&b, "a\"b\\c", 5, false);
    ck_assert_str_eq(buf_cstr(&b), "\"a\\\"b\\\\c\"");
    buf_reset(&b);
    imap_append_string(&b, "a\r\nb", 4, false);
    ck_assert_str_eq(buf_cstr(&b), "{4}\r\na\r\nb");
    buf_reset(&b);
    imap_append_string(&b, "\xc3\xa9", 2, false);
    ck_assert_str_eq(buf_cstr(&b), "{2}\r\n\xc3\xa9");
    buf_reset(&b);
    imap_append_string(&b, "\xc3\xa9", 2, true);
    ck_assert_str_eq(buf_cstr(&b), "\"\xc3\xa9\"");
    buf_reset(&b);
    imap_append_astring(&b, "INBOX", 5, false);
    ck_assert_str_eq(buf_cstr(&b), "INBOX");
    buf_reset(&b);
    imap_append_astring(&b, "nil", 3, false);
    ck_assert_str_eq(buf_cstr(&b), "\"nil\"");
    buf_reset(&b);
    imap_append_astring(&b, "", 0, false);
    ck_assert_str_eq(buf_cstr(&b), "\"\"");
    buf_reset(&b);
    imap_append_nstring(&b, NULL, 0, false);
    ck_assert_str_eq(buf_cstr(&b), "NIL");
    buf_free(&b);
}
END_TEST

/* ---- seqset ---- */

START_TEST(t_seqset)
{
    struct seqset s;
    const char *err;
    ck_assert_int_eq(seqset_parse("5,1:3,*,2,10:8", 14, 0, &s, &err), 0);
    ck_assert_uint_eq(s.n, 5);
    ck_assert_uint_eq(s.r[2].lo, SEQSET_STAR);
    seqset_resolve(&s, 20);
    /* 1:3 2 5 8:10 20 -> 1:3,5,8:10,20 */
    ck_assert_uint_eq(s.n, 4);
    ck_assert(seqset_contains(&s, 1));
    ck_assert(seqset_contains(&s, 3));
    ck_assert(!seqset_contains(&s, 4));
    ck_assert(seqset_contains(&s, 9));
    ck_assert(seqset_contains(&s, 20));
    ck_assert(!seqset_contains(&s, 19));
    seqset_free(&s);

    /* n:* with n beyond the end still matches the last one (RFC 3501) */
    ck_assert_int_eq(seqset_parse("500:*", 5, 0, &s, &err), 0);
    seqset_resolve(&s, 100);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(s.r[0].lo, 100);
    ck_assert_uint_eq(s.r[0].hi, 500);
    seqset_free(&s);

    /* empty mailbox: * matches nothing */
    ck_assert_int_eq(seqset_parse("1:*", 3, 0, &s, &err), 0);
    seqset_resolve(&s, 0);
    ck_assert_uint_eq(s.n, 0);
    seqset_free(&s);

    ck_assert_int_eq(seqset_parse("4294967295", 10, 0, &s, &err), 0);
    seqset_resolve(&s, 3);
    ck_assert(seqset_contains(&s, 4294967295u));
    seqset_free(&s);

    ck_assert_int_eq(seqset_parse("$", 1, 0, &s, &err), 0);
    ck_assert(s.dollar);
    seqset_free(&s);

    const char *bad[] = {"", "0", "1,", ",1", "1:", "a", "1:0", "4294967296", "1::2",
                         "$,1", "1 2", "01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = seqset_parse(bad[i], strlen(bad[i]), 0, &s, &err);
        ck_assert_msg(rc == -1, "accepted: %s", bad[i]);
    }
    /* range limit */
    ck_assert_int_eq(seqset_parse("1,2,3", 5, 2, &s, &err), -1);
}
END_TEST

START_TEST(t_seqset_merge_max)
{
    struct seqset s;
    const char *err;
    ck_assert_int_eq(seqset_parse("4294967295,4294967294,1:4294967295", 34, 0, &s, &err), 0);
    seqset_resolve(&s, 7);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(s.r[0].hi, 4294967295u);
    seqset_free(&s);
}
END_TEST

START_TEST(t_seqset_format)
{
    uint32_t v[] = {1, 2, 3, 7, 9, 10, 11, 4294967295u};
    struct buf b;
    buf_init(&b, 0);
    ck_assert_int_eq(seqset_format(v, 8, &b), 0);
    ck_assert_str_eq(buf_cstr(&b), "1:3,7,9:11,4294967295");
    struct seqset s;
    ck_assert_int_eq(seqset_from_sorted(v, 8, &s), 0);
    ck_assert_uint_eq(s.n, 4);
    ck_assert(seqset_contains(&s, 10));
    ck_assert(!seqset_contains(&s, 8));
    seqset_free(&s);
    buf_free(&b);
}
END_TEST

/* ---- mUTF-7 ---- */

static const char *enc(const char *u8)
{
    static struct buf b;
    buf_free(&b);
    buf_init(&b, 0);
    if (mutf7_encode(u8, strlen(u8), &b) != 0)
        return NULL;
    return buf_cstr(&b);
}

static const char *dec(const char *m)
{
    static struct buf b;
    buf_free(&b);
    buf_init(&b, 0);
    if (mutf7_decode(m, strlen(m), &b) != 0)
        return NULL;
    return buf_cstr(&b);
}

START_TEST(t_mutf7)
{
    /* RFC 3501 5.1.3 example */
    ck_assert_str_eq(enc("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"),
                     "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    ck_assert_str_eq(dec("~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
                     "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
    ck_assert_str_eq(enc("A&B"), "A&-B");
    ck_assert_str_eq(dec("A&-B"), "A&B");
    ck_assert_str_eq(enc("Entw\xc3\xbc" "rfe"), "Entw&APw-rfe");
    ck_assert_str_eq(dec("Entw&APw-rfe"), "Entw\xc3\xbc" "rfe");
    /* astral plane: surrogate pair (U+1F600) */
    ck_assert_str_eq(dec(enc("\xf0\x9f\x98\x80")), "\xf0\x9f\x98\x80");
    ck_assert_str_eq(enc("\xf0\x9f\x98\x80"), "&2D3eAA-");
    ck_assert_ptr_null(enc("\xff"));
    ck_assert_ptr_null(enc("\xc0\xaf"));          /* overlong */
    ck_assert_ptr_null(enc("\xed\xa0\x80"));      /* surrogate */

    const char *bad[] = {
        "&", "&APw", "&APw-x&", "\xc3\xa9", "&AEE-",  /* encoded 'A' */
        "&2D0-", "&3gA-",                              /* lone surrogates */
        "&APx-",                                       /* non-zero pad bits */
        "&A-", "&*-", "&AOk-&AOk-",                 /* runs must be merged */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(dec(bad[i]) == NULL, "accepted: %s", bad[i]);
    ck_assert(utf8_valid("abc\xc3\xa9", 5));
    ck_assert(!utf8_valid("\xe2\x82", 2));
}
END_TEST

START_TEST(t_mutf7_roundtrip)
{
    /* every BMP code point outside surrogates survives a round trip */
    char u8[8];
    for (uint32_t cp = 1; cp < 0x10000; cp += 7) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        size_t n;
        if (cp < 0x80) {
            u8[0] = (char)cp;
            n = 1;
        } else if (cp < 0x800) {
            u8[0] = (char)(0xc0 | (cp >> 6));
            u8[1] = (char)(0x80 | (cp & 0x3f));
            n = 2;
        } else {
            u8[0] = (char)(0xe0 | (cp >> 12));
            u8[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            u8[2] = (char)(0x80 | (cp & 0x3f));
            n = 3;
        }
        u8[n] = '\0';
        const char *m = enc(u8);
        ck_assert_ptr_nonnull(m);
        char copy[32];
        strcpy(copy, m);
        const char *back = dec(copy);
        ck_assert_msg(back != NULL && strcmp(back, u8) == 0, "cp %u", cp);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("imapparse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, t_simple);
    tcase_add_test(tc, t_bracket_atom);
    tcase_add_test(tc, t_literals);
    tcase_add_test(tc, t_line_literal);
    tcase_add_test(tc, t_errors);
    tcase_add_test(tc, t_nesting);
    tcase_add_test(tc, t_quote_out);
    tcase_add_test(tc, t_seqset);
    tcase_add_test(tc, t_seqset_merge_max);
    tcase_add_test(tc, t_seqset_format);
    tcase_add_test(tc, t_mutf7);
    tcase_add_test(tc, t_mutf7_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
