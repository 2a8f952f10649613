#define _POSIX_C_SOURCE 200809L
/* mime_test.c — Check suite for the MIME parser, ENVELOPE/BODYSTRUCTURE/BODY
 * writers, section resolution, header filtering, CTE decoders and mimehdr.
 *
 * The expected ENVELOPE/BODYSTRUCTURE/BODY strings were checked against
 * Dovecot 2.3.19 (tests/integration/mime_vs_dovecot.py on the same messages,
 * which are also the fuzz seeds in tests/fuzz/corpus/mime/). */
#include "tests/unit/unit_main.h"
#include "proto/buf.h"
#include "proto/canon.h"
#include "proto/cte.h"
#include "proto/mimehdr.h"
#include "proto/msginfo.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>

struct built {
    struct buf canon, rec;
    struct msginfo mi;
};

static void build(struct built *b, const char *msg, size_t len)
{
    const char *err = NULL;
    int prev_cr = 0;
    buf_init(&b->canon, 0);
    buf_init(&b->rec, 0);
    ck_assert_int_eq(canon_append(&b->canon, (const unsigned char *)msg, len, &prev_cr), 0);
    ck_assert_int_eq(msginfo_build(b->canon.data ? b->canon.data : (const unsigned char *)"",
                                   b->canon.len, &b->rec, &err), 0);
    ck_assert_int_eq(msginfo_open(&b->mi, b->rec.data, b->rec.len, &err), 0);
    ck_assert_uint_eq(b->mi.size, b->canon.len);
}

static void unbuild(struct built *b)
{
    buf_free(&b->canon);
    buf_free(&b->rec);
}

static void check_str(void (*get)(const struct msginfo *, const char **, size_t *),
                      const struct msginfo *mi, const char *want)
{
    const char *s;
    size_t n;
    get(mi, &s, &n);
    ck_assert_msg(n == strlen(want) && memcmp(s, want, n) == 0, "got  %.*s\nwant %s", (int)n,
                  s, want);
}

struct sample {
    const char *name, *msg, *env, *bs, *body;
    size_t msglen;   /* 0 = strlen */
};

static const struct sample samples[] = {
    {"8bit-header",
     "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\nSubject: Gr\xc3\xbc\xc3\x9f" "e aus "
     "K\xc3\xb6ln\nTo: \"M\xc3\xbcller, Hans\" <h@example.org>\nDate: Mon, 1 Jan 2024 "
     "10:00:00 +0100\n\nbody\n",
     "\"Mon, 1 Jan 2024 10:00:00 +0100\" {17}\r\nGr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln "
     "((\"=?utf-8?q?J=C3=BCrgen?=\" NIL \"j\" \"example.org\")) ((\"=?utf-8?q?J=C3=BCrgen?=\" "
     "NIL \"j\" \"example.org\")) ((\"=?utf-8?q?J=C3=BCrgen?=\" NIL \"j\" \"example.org\")) "
     "(({13}\r\nM\xc3\xbcller, Hans NIL \"h\" \"example.org\")) NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1", 0},
    {"bad-type",
     "From: a@b.c\nSubject: bad type\nMIME-Version: 1.0\nContent-Type: text; "
     "charset=us-ascii\nContent-Transfer-Encoding: x-uuencode\n\nbody\n",
     "NIL \"bad type\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL",
     /* RFC 2045 5.2: an invalid Content-Type means text/plain; us-ascii
      * (Dovecot writes "" "" NIL ...; see docs/COMPATIBILITY.md) */
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"x-uuencode\" 6 1 NIL NIL NIL "
     "NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"x-uuencode\" 6 1", 0},
    {"body-only", "\n\nbody only\n", "NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 2 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 2", 0},
    {"empty-parts",
     "From: a@b.c\nSubject: empty parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; "
     "boundary=x\n\n--x\n--x\n\n--x\nContent-Type: text/html\n\n--x--\n",
     "NIL \"empty parts\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
     "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) "
     "\"mixed\" (\"boundary\" \"x\") NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)(\"text\" \"html\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\"", 0},
    {"empty", "", "NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0", 0},
    {"groups",
     "From: Group One: a@b.c, \"B\" <b@c.d>;, Empty:;\nTo: undisclosed-recipients:;\nCc:\n"
     "Bcc: (comment only)\nReply-To: nsb (Nathaniel Borenstein)\nSender: <>\nSubject:   "
     "spaced \t subject  \nMessage-ID: <x@y>\nIn-Reply-To: <a@b>\n <c@d>\n\nbody\n",
     "NIL {14}\r\nspaced subject ((NIL NIL \"Group One\" NIL)(NIL NIL \"a\" \"b.c\")(\"B\" NIL "
     "\"b\" \"c.d\")(NIL NIL NIL NIL)(NIL NIL \"Empty\" NIL)(NIL NIL NIL NIL)) ((NIL NIL "
     "\"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) ((\"Nathaniel Borenstein\" NIL \"nsb\" "
     "\"MISSING_DOMAIN\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL "
     "NIL \"<a@b> <c@d>\" \"<x@y>\"",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1", 0},
    {"header-only",
     "From: a@b.c\nSubject: header only\nDate: Tue, 2 Jan 2024 00:00:00 +0000\n",
     "\"Tue, 2 Jan 2024 00:00:00 +0000\" \"header only\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL "
     "\"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0", 0},
    {"missing-end",
     "From: a@b.c\nSubject: missing end\nMIME-Version: 1.0\nContent-Type: multipart/mixed; "
     "boundary=m\n\n--m\nContent-Type: text/plain\n\nfirst\n--m\nContent-Type: "
     "text/plain\n\nsecond, never closed\n",
     "NIL \"missing end\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)"
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 22 1 NIL NIL NIL NIL) "
     "\"mixed\" (\"boundary\" \"m\") NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 22 1) \"mixed\"", 0},
    {"mixed-eol",
     "From: a@b.c\r\nSubject: mixed line ends\nMIME-Version: 1.0\r\nContent-Type: "
     "multipart/alternative; boundary=\"mx\"\n\r\n--mx\r\nContent-Type: text/plain\n\nlf "
     "part\n--mx\r\nContent-Type: text/html\r\n\r\n<p>crlf part</p>\r\n--mx--\r\n",
     "NIL \"mixed line ends\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL "
     "\"a\" \"b.c\")) NIL NIL NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 0 NIL NIL NIL NIL)"
     "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 16 0 NIL NIL NIL NIL) "
     "\"alternative\" (\"boundary\" \"mx\") NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 0)(\"text\" \"html\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 16 0) \"alternative\"", 0},
    {"no-blank-line",
     "From: a@b.c\nSubject: no blank line\nthis line has no colon so it is a header too\nand "
     "this one\n",
     "NIL \"no blank line\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL "
     "\"a\" \"b.c\")) NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0", 0},
    {"no-boundary",
     "From: a@b.c\nSubject: no boundary param\nMIME-Version: 1.0\nContent-Type: "
     "multipart/mixed\n\n--x\nContent-Type: text/plain\n\nbody\n--x--\n",
     "NIL \"no boundary param\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL "
     "\"a\" \"b.c\")) NIL NIL NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) "
     "\"mixed\" NIL NIL NIL NIL",
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\"", 0},
    {"nul",
     "Subject: nul\nContent-Type: text/plain\nMIME-Version: 1.0\nContent-Transfer-Encoding: "
     "8bit\n\na\0b\n",
     "NIL \"nul\" NIL NIL NIL NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 5 1 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 5 1", 93},
    {"prefix-boundary",
     "From: a@b.c\nSubject: prefix boundaries\nMIME-Version: 1.0\nContent-Type: "
     "multipart/mixed; boundary=\"ab\"\n\npreamble\n--ab\nContent-Type: "
     "multipart/alternative; boundary=\"abc\"\n\n--abc\nContent-Type: text/plain\n\ninner "
     "one\n--abc\n\ninner two\n--abc--\n--ab\n\n--ab--\nepilogue\n",
     "NIL \"prefix boundaries\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL "
     "\"a\" \"b.c\")) NIL NIL NIL NIL NIL",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0 NIL NIL NIL NIL)"
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0 NIL NIL NIL NIL) "
     "\"alternative\" (\"boundary\" \"abc\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
     "\"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"ab\") NIL "
     "NIL NIL",
     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0)(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0) \"alternative\")(\"text\" \"plain\" "
     "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\"", 0},
    {"rfc2231",
     "From: a@b.c\nMIME-Version: 1.0\nContent-Type: application/octet-stream;\n "
     "name*0*=utf-8''%E2%82%AC%20rates;\n name*1=\".txt\";\n "
     "title*=us-ascii'en'This%20is%20%2A%2A%2Afun%2A%2A%2A\nContent-Disposition: attachment; "
     "filename*0=\"long\"; filename*1=\"name.txt\"\nContent-Language: en, de-CH\n"
     "Content-Location: http://example.org/x\nContent-Transfer-Encoding: "
     "base64\n\naGVsbG8gd29ybGQ=\n",
     "NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) NIL "
     "NIL NIL NIL NIL",
     /* "title*1*": the reference keeps the previous piece's index for a bare
      * "key*" (see docs/COMPATIBILITY.md) */
     "\"application\" \"octet-stream\" (\"name*\" \"utf-8''%E2%82%AC%20rates.txt\" "
     "\"title*1*\" \"us-ascii'en'This%20is%20%2A%2A%2Afun%2A%2A%2A\") NIL NIL \"base64\" 18 "
     "NIL (\"attachment\" (\"filename\" \"longname.txt\")) (\"en\" \"de-CH\") "
     "\"http://example.org/x\"",
     "\"application\" \"octet-stream\" (\"name*\" \"utf-8''%E2%82%AC%20rates.txt\" "
     "\"title*1*\" \"us-ascii'en'This%20is%20%2A%2A%2Afun%2A%2A%2A\") NIL NIL \"base64\" 18", 0},
    /* RFC 3501 7.4.2: a Sender or Reply-To "present but empty" is From */
    {"empty-sender", "From: a@b.c\nSender: \nReply-To:\n\nx\n",
     "NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" "
     "\"b.c\")) NIL NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL",
     "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1", 0},
};

static const char RFC822_DIGEST[] =
    "From: a@b.c\nSubject: rfc822 and digest\nMIME-Version: 1.0\nContent-Type: "
    "multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\nFrom: inner@x.y\n"
    "Subject: inner\nContent-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9 =\nsoft break=20\nend  \n--o\n"
    "Content-Type: multipart/digest; boundary=d\n\n--d\n\nFrom: d1@x.y\nSubject: digest "
    "one\n\nd1 body\n--d\nContent-Type: text/plain\n\nnot a message\n--d--\n--o--\n";

START_TEST(test_structures)
{
    const struct sample *s = &samples[_i];
    struct built b;
    build(&b, s->msg, s->msglen ? s->msglen : strlen(s->msg));
    check_str(msginfo_envelope, &b.mi, s->env);
    check_str(msginfo_bodystructure, &b.mi, s->bs);
    check_str(msginfo_body, &b.mi, s->body);
    unbuild(&b);
}
END_TEST

START_TEST(test_rfc822_digest)
{
    struct built b;
    build(&b, RFC822_DIGEST, strlen(RFC822_DIGEST));
    check_str(msginfo_bodystructure, &b.mi,
              "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 156 (NIL \"inner\" ((NIL NIL "
              "\"inner\" \"x.y\")) ((NIL NIL \"inner\" \"x.y\")) ((NIL NIL \"inner\" \"x.y\")) "
              "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL "
              "\"quoted-printable\" 30 2 NIL NIL NIL NIL) 7 NIL NIL NIL NIL)((\"message\" "
              "\"rfc822\" NIL NIL NIL \"7bit\" 44 (NIL \"digest one\" ((NIL NIL \"d1\" "
              "\"x.y\")) ((NIL NIL \"d1\" \"x.y\")) ((NIL NIL \"d1\" \"x.y\")) NIL NIL NIL NIL "
              "NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 0 NIL NIL "
              "NIL NIL) 3 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
              "NIL \"7bit\" 13 0 NIL NIL NIL NIL) \"digest\" (\"boundary\" \"d\") NIL NIL NIL) "
              "\"mixed\" (\"boundary\" \"o\") NIL NIL NIL");
    unbuild(&b);
}
END_TEST

/* BODY[path.which] as a string; "<none>" when the part does not exist. */
static char *sect(const struct built *b, const char *path, enum msginfo_sect which)
{
    uint32_t p[MSGINFO_MAX_SECTION_DEPTH];
    size_t np = 0;
    for (const char *s = path; *s; s++) {
        p[np] = (uint32_t)strtoul(s, (char **)&s, 10);
        np++;
        if (!*s)
            break;
    }
    uint64_t off, len;
    uint32_t idx;
    bool exists;
    const char *err;
    if (msginfo_section(&b->mi, p, np, which, &off, &len, &idx, &exists, &err) < 0)
        return strdup("<error>");
    if (!exists)
        return strdup("<none>");
    ck_assert_uint_le(off + len, b->canon.len);
    char *r = malloc(len + 1);
    memcpy(r, b->canon.data + off, len);
    r[len] = 0;
    return r;
}

#define CK_SECT(b, path, which, want)                                                    \
    do {                                                                                 \
        char *got_ = sect(b, path, which);                                               \
        ck_assert_str_eq(got_, want);                                                    \
        free(got_);                                                                      \
    } while (0)

START_TEST(test_sections)
{
    struct built b;
    build(&b, RFC822_DIGEST, strlen(RFC822_DIGEST));
    CK_SECT(&b, "1", MSGINFO_S_MIME, "Content-Type: message/rfc822\r\n\r\n");
    CK_SECT(&b, "1", MSGINFO_S_HEADER,
            "From: inner@x.y\r\nSubject: inner\r\nContent-Type: text/plain; "
            "charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    CK_SECT(&b, "1", MSGINFO_S_TEXT, "caf=E9 =\r\nsoft break=20\r\nend  ");
    CK_SECT(&b, "1.1", MSGINFO_S_ALL, "caf=E9 =\r\nsoft break=20\r\nend  ");
    CK_SECT(&b, "1.2", MSGINFO_S_ALL, "<none>");
    CK_SECT(&b, "2.1.1", MSGINFO_S_ALL, "d1 body");
    CK_SECT(&b, "2.1", MSGINFO_S_HEADER, "From: d1@x.y\r\nSubject: digest one\r\n\r\n");
    CK_SECT(&b, "2.2", MSGINFO_S_MIME, "Content-Type: text/plain\r\n\r\n");
    CK_SECT(&b, "2.2", MSGINFO_S_ALL, "not a message");
    CK_SECT(&b, "2.2", MSGINFO_S_HEADER, "<none>");   /* not a message/rfc822 part */
    /* "1" of a non-multipart part is the part itself (Dovecot) */
    CK_SECT(&b, "2.2.1", MSGINFO_S_ALL, "not a message");
    CK_SECT(&b, "2.2.1", MSGINFO_S_MIME, "Content-Type: text/plain\r\n\r\n");
    CK_SECT(&b, "1.1.1", MSGINFO_S_ALL, "<none>");
    CK_SECT(&b, "1.1", MSGINFO_S_HEADER, "<none>");
    CK_SECT(&b, "1.1", MSGINFO_S_MIME,
            "From: inner@x.y\r\nSubject: inner\r\nContent-Type: text/plain; "
            "charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
    CK_SECT(&b, "3", MSGINFO_S_ALL, "<none>");
    CK_SECT(&b, "0", MSGINFO_S_ALL, "<none>");
    CK_SECT(&b, "", MSGINFO_S_MIME, "<error>");
    char *text = sect(&b, "", MSGINFO_S_TEXT);
    ck_assert(strncmp(text, "--o\r\nContent-Type: message/rfc822\r\n", 35) == 0);
    free(text);
    /* a single-part message: part 1 is the message body, 1.MIME its header */
    struct built s;
    build(&s, samples[6].msg, strlen(samples[6].msg));   /* header-only */
    CK_SECT(&s, "1", MSGINFO_S_ALL, "");
    CK_SECT(&s, "1", MSGINFO_S_MIME,
            "From: a@b.c\r\nSubject: header only\r\nDate: Tue, 2 Jan 2024 00:00:00 +0000\r\n");
    CK_SECT(&s, "2", MSGINFO_S_ALL, "<none>");
    unbuild(&s);

    struct msginfo_part p;
    ck_assert_int_eq(msginfo_part(&b.mi, 0, &p), 0);
    ck_assert_int_eq(p.type, MSGINFO_T_MULTIPART);
    ck_assert_int_eq(msginfo_part(&b.mi, b.mi.nparts, &p), -1);
    unbuild(&b);
}
END_TEST

START_TEST(test_rfc2231_boundary)
{
    /* RFC 2231 4 encoding applies to boundary too (Dovecot ignores it) */
    static const char m[] = "Content-Type: multipart/mixed; boundary*=us-ascii'en'a%2Db\n\n"
                            "--a-b\n\none\n--a-b\n\ntwo\n--a-b--\n";
    struct built b;
    build(&b, m, strlen(m));
    ck_assert_uint_eq(b.mi.nparts, 3);
    CK_SECT(&b, "2", MSGINFO_S_ALL, "two");
    unbuild(&b);
}
END_TEST

START_TEST(test_boundary_cut_header)
{
    /* the blank line before a foreign boundary belongs to the boundary:
     * BODY[1.MIME] has no blank line (as Dovecot answers) */
    static const char m[] = "Content-Type: multipart/mixed; boundary=foo\n\n--foo\n"
                            "Content-Type: text/plain\nbar\n\n--foo\nContent-Type: text/html\n"
                            "\n<p>x</p>\n--foo--\n";
    struct built b;
    build(&b, m, strlen(m));
    CK_SECT(&b, "1", MSGINFO_S_MIME, "Content-Type: text/plain\r\nbar\r\n");
    CK_SECT(&b, "1", MSGINFO_S_ALL, "");
    CK_SECT(&b, "2", MSGINFO_S_ALL, "<p>x</p>");
    unbuild(&b);
}
END_TEST

static char *filter(const char *hdr, const char *const *names, size_t n, bool not_)
{
    struct buf out;
    buf_init(&out, 0);
    ck_assert_int_eq(msginfo_header_filter((const unsigned char *)hdr, strlen(hdr), names,
                                           NULL, n, not_, &out), 0);
    char *r = strdup(buf_cstr(&out) ? buf_cstr(&out) : "");
    buf_free(&out);
    return r;
}

START_TEST(test_header_filter)
{
    const char *h = "Received: x\r\nSubject: a\r\n b\r\nX-A: 1\r\ncc: c\r\nReceived: y\r\n\r\n";
    const char *n1[] = {"CC", "subject"};
    char *r = filter(h, n1, 2, false);
    ck_assert_str_eq(r, "Subject: a\r\n b\r\ncc: c\r\n\r\n");
    free(r);
    const char *n2[] = {"received"};
    r = filter(h, n2, 1, true);
    ck_assert_str_eq(r, "Subject: a\r\n b\r\nX-A: 1\r\ncc: c\r\n\r\n");
    free(r);
    const char *n3[] = {"nothing"};
    r = filter(h, n3, 1, false);
    ck_assert_str_eq(r, "\r\n");
    free(r);
    /* no blank line in the header: .NOT adds none (Dovecot) */
    r = filter("From: a\r\nno colon\r\n", n2, 1, true);
    ck_assert_str_eq(r, "From: a\r\nno colon\r\n");
    free(r);
    const char *n4[] = {"from"};
    r = filter("From: a\r\nno colon\r\n", n4, 1, false);
    ck_assert_str_eq(r, "From: a\r\n\r\n");
    free(r);
    /* a last field without line end is copied as is (CR-only mail) */
    r = filter("From: a\rTo: b\r", n4, 1, false);
    ck_assert_str_eq(r, "From: a\rTo: b\r\n");
    free(r);
    r = filter("From: a\rTo: b\r", n2, 1, true);
    ck_assert_str_eq(r, "From: a\rTo: b\r");
    free(r);
}
END_TEST

/* The filter as it was (mimehdr_next, a name loop per field): the
 * prepared-set filter must give the same octets, on the canonical header
 * and, with to_crlf, on the stored one. */
static int filter_ref(const unsigned char *hdr, size_t len, const char *const *names,
                      size_t nnames, bool not_, struct buf *out)
{
    struct mimehdr_iter it;
    struct mimehdr_field f;
    bool last_crlf = true;
    mimehdr_init(&it, hdr, len);
    while (mimehdr_next(&it, &f) > 0) {
        bool match = false;
        for (size_t i = 0; i < nnames && !match; i++) {
            size_t nl = strlen(names[i]);
            if (f.name_len != nl)
                continue;
            match = true;
            for (size_t k = 0; k < nl && match; k++) {
                unsigned char a = f.name[k], b = (unsigned char)names[i][k];
                a = (unsigned char)(a >= 'A' && a <= 'Z' ? a + 32 : a);
                b = (unsigned char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
                match = a == b;
            }
        }
        if (match == not_)
            continue;
        buf_append(out, f.raw, f.raw_len);
        last_crlf = f.raw_len >= 2 && f.raw[f.raw_len - 1] == '\n' && f.raw[f.raw_len - 2] == '\r';
    }
    if (not_ && it.p >= it.end)
        return 0;
    return last_crlf ? buf_append(out, "\r\n", 2) : buf_putc(out, '\n');
}

START_TEST(test_header_filter_set)
{
    static const char *const pieces[] = {"From", "to", "X-A", "x-a", ":", " ", "\t", "\r", "\n",
                                         "\n", "\r\n", "a", "@", "`", "Received", "TO:"};
    static const char *const pool[] = {"from", "TO", "x-a", "", "@", "`", "a", "received",
                                       "X-A"};
    unsigned seed = 777;
    for (int round = 0; round < 3000; round++) {
        unsigned char raw[400];
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        int np = (int)((seed >> 8) % 60);
        for (int i = 0; i < np; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *pc = pieces[(seed >> 12) % (sizeof pieces / sizeof *pieces)];
            size_t l = strlen(pc);
            if (n + l > sizeof raw)
                break;
            memcpy(raw + n, pc, l);
            n += l;
        }
        const char *names[5];
        seed = seed * 1103515245u + 12345u;
        size_t nn = 1 + (seed >> 10) % 5;
        for (size_t i = 0; i < nn; i++) {
            seed = seed * 1103515245u + 12345u;
            names[i] = pool[(seed >> 9) % (sizeof pool / sizeof *pool)];
        }
        bool not_ = round & 1;
        struct msginfo_fieldset fs;
        msginfo_fieldset_init(&fs, names, NULL, nn);
        struct buf want, got, canon;
        buf_init(&want, 0);
        buf_init(&got, 0);
        buf_init(&canon, 0);
        /* as stored, filtered as it is */
        ck_assert_int_eq(filter_ref(raw, n, names, nn, not_, &want), 0);
        ck_assert_int_eq(msginfo_header_filter_set(raw, n, &fs, not_, false, &got), 0);
        ck_assert_uint_eq(got.len, want.len);
        ck_assert(want.len == 0 || memcmp(got.data, want.data, want.len) == 0);
        /* canonical: the reference on the canonical form, ours on the raw */
        int pcr = 0;
        ck_assert_int_eq(canon_append(&canon, raw, n, &pcr), 0);
        buf_reset(&want);
        buf_reset(&got);
        ck_assert_int_eq(filter_ref(canon.data, canon.len, names, nn, not_, &want), 0);
        ck_assert_int_eq(msginfo_header_filter_set(raw, n, &fs, not_, true, &got), 0);
        ck_assert_msg(got.len == want.len && (want.len == 0 ||
                                              memcmp(got.data, want.data, want.len) == 0),
                      "round %d: %zu vs %zu octets", round, got.len, want.len);
        buf_free(&want);
        buf_free(&got);
        buf_free(&canon);
    }
}
END_TEST

static char *decode(int cte, const char *in, size_t chunk, size_t *outlen)
{
    struct cte_dec d;
    struct buf out;
    size_t n = strlen(in);
    buf_init(&out, 0);
    cte_dec_init(&d, cte);
    for (size_t i = 0; i < n; i += chunk)
        ck_assert_int_eq(cte_dec_feed(&d, (const unsigned char *)in + i,
                                      n - i < chunk ? n - i : chunk, &out), 0);
    ck_assert_int_eq(cte_dec_finish(&d, &out), 0);
    *outlen = out.len;
    char *r = malloc(out.len + 1);
    memcpy(r, out.data ? out.data : (unsigned char *)"", out.len);
    r[out.len] = 0;
    buf_free(&out);
    return r;
}

START_TEST(test_cte)
{
    size_t n;
    for (size_t chunk = 1; chunk <= 7; chunk++) {
        char *r = decode(MSGINFO_CTE_BASE64, "aGVs\r\nbG8g!d29y*bGQ=\r\n", chunk, &n);
        ck_assert_str_eq(r, "hello world");
        free(r);
        r = decode(MSGINFO_CTE_QP, "caf=E9 =\r\nsoft break=20\r\nend  ", chunk, &n);
        ck_assert_str_eq(r, "caf\xe9 soft break \r\nend");
        free(r);
        r = decode(MSGINFO_CTE_QP, "a=zz b=4 c=\r\nd \t\r\ne=3d=3D", chunk, &n);
        ck_assert_str_eq(r, "a=zz b=4 cd\r\ne==");
        free(r);
        r = decode(MSGINFO_CTE_QP, "x= \t\r\ny=", chunk, &n);
        ck_assert_str_eq(r, "xy=");
        free(r);
    }
    char *r = decode(MSGINFO_CTE_7BIT, "as is=20\r\n", 3, &n);
    ck_assert_str_eq(r, "as is=20\r\n");
    free(r);
    static const char *const b64[] = {"aGVs\r\nbG8g!d29y*bGQ=\r\n", "YQ", "YWI=x", "YWJj", "", "=YWJj",
                                      "Y\nW\nJ\nj\nZA==", "%%%"};
    for (size_t i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
        r = decode(MSGINFO_CTE_BASE64, b64[i], 3, &n);
        ck_assert_uint_eq(cte_base64_size((const unsigned char *)b64[i], strlen(b64[i])), n);
        free(r);
    }
    r = decode(MSGINFO_CTE_BASE64, "AAEC", 2, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert(r[0] == 0 && r[1] == 1 && r[2] == 2);
    free(r);
}
END_TEST

START_TEST(test_binary_size)
{
    struct built b;
    struct msginfo_part p;
    build(&b, samples[13].msg, strlen(samples[13].msg));   /* rfc2231: base64 */
    ck_assert_int_eq(msginfo_part(&b.mi, 0, &p), 0);
    ck_assert_int_eq(p.cte, MSGINFO_CTE_BASE64);
    ck_assert_uint_eq(p.binary_size, 11);
    unbuild(&b);
    build(&b, RFC822_DIGEST, strlen(RFC822_DIGEST));
    ck_assert_int_eq(msginfo_part(&b.mi, 2, &p), 0);   /* the encapsulated text */
    ck_assert_int_eq(p.cte, MSGINFO_CTE_QP);
    ck_assert_uint_eq(p.binary_size, 21);
    ck_assert_uint_eq(p.lines, 2);
    unbuild(&b);
    build(&b, samples[1].msg, strlen(samples[1].msg));   /* x-uuencode */
    ck_assert_int_eq(msginfo_part(&b.mi, 0, &p), 0);
    ck_assert_int_eq(p.cte, MSGINFO_CTE_UNKNOWN);
    ck_assert_uint_eq(p.binary_size, UINT64_MAX);
    unbuild(&b);
}
END_TEST

START_TEST(test_dates)
{
    struct built b;
    build(&b, samples[6].msg, strlen(samples[6].msg));
    ck_assert_int_eq(b.mi.sent_date, 1704153600);
    ck_assert_int_eq(b.mi.sent_tz, 0);
    unbuild(&b);
    build(&b, samples[0].msg, strlen(samples[0].msg));
    ck_assert_int_eq(b.mi.sent_date, 1704099600);
    ck_assert_int_eq(b.mi.sent_tz, 60);
    unbuild(&b);
    build(&b, samples[1].msg, strlen(samples[1].msg));
    ck_assert(b.mi.sent_date == INT64_MIN);
    unbuild(&b);
}
END_TEST

START_TEST(test_mimehdr)
{
    struct built b;
    build(&b, samples[5].msg, strlen(samples[5].msg));   /* groups */
    struct msginfo_part p;
    msginfo_part(&b.mi, 0, &p);
    struct mimehdr_iter it;
    struct mimehdr_field f;
    int n = 0, found = 0;
    mimehdr_init(&it, b.canon.data + p.hdr_off, (size_t)p.hdr_len);
    while (mimehdr_next(&it, &f) > 0) {
        n++;
        if (mimehdr_name_is(&f, "in-reply-to")) {
            struct buf u;
            buf_init(&u, 0);
            ck_assert_int_eq(mimehdr_unfold(&f, &u), 0);
            ck_assert_str_eq(buf_cstr(&u), "<a@b> <c@d>");
            ck_assert_uint_eq(f.raw_len, strlen("In-Reply-To: <a@b>\r\n <c@d>\r\n"));
            buf_free(&u);
            found++;
        }
        if (mimehdr_name_is(&f, "Cc")) {
            ck_assert_uint_eq(f.value_len, 0);
            found++;
        }
    }
    ck_assert_int_eq(n, 9);
    ck_assert_int_eq(found, 2);
    char cs[32];
    ck_assert_int_eq(mimehdr_part_charset(b.canon.data, b.canon.len, &p, cs, sizeof cs), 0);
    ck_assert_str_eq(cs, "us-ascii");
    unbuild(&b);

    build(&b, RFC822_DIGEST, strlen(RFC822_DIGEST));
    msginfo_part(&b.mi, 2, &p);
    ck_assert_int_eq(mimehdr_part_charset(b.canon.data, b.canon.len, &p, cs, sizeof cs), 0);
    ck_assert_str_eq(cs, "iso-8859-1");
    ck_assert_int_eq(mimehdr_part_charset(b.canon.data, b.canon.len, &p, cs, 4), -1);
    unbuild(&b);

    static const char ext[] = "Content-Type: text/plain; charset*=utf-8''x\n\nb\n";
    build(&b, ext, strlen(ext));
    msginfo_part(&b.mi, 0, &p);
    ck_assert_int_eq(mimehdr_part_charset(b.canon.data, b.canon.len, &p, cs, sizeof cs), 0);
    ck_assert_str_eq(cs, "utf-8");
    struct buf t, s, prm;
    buf_init(&t, 0);
    buf_init(&s, 0);
    buf_init(&prm, 0);
    ck_assert_int_eq(mimehdr_content_type(b.canon.data, (size_t)p.hdr_len, &t, &s, &prm), 1);
    ck_assert_str_eq(buf_cstr(&t), "text");
    ck_assert_str_eq(buf_cstr(&s), "plain");
    ck_assert_ptr_null(mimehdr_param(&prm, "charset"));
    ck_assert_str_eq(mimehdr_param(&prm, "CHARSET*"), "utf-8''x");
    buf_free(&t);
    buf_free(&s);
    buf_free(&prm);
    unbuild(&b);
}
END_TEST

START_TEST(test_open_rejects)
{
    struct msginfo mi;
    const char *err = NULL;
    unsigned char junk[100] = "not a record";
    ck_assert_int_eq(msginfo_open(&mi, junk, sizeof junk, &err), -1);
    ck_assert_ptr_nonnull(err);
    struct built b;
    build(&b, samples[2].msg, strlen(samples[2].msg));
    ck_assert_uint_eq(msginfo_version(b.rec.data, b.rec.len), MSGINFO_VERSION);
    b.rec.data[4] ^= 0x55;   /* another version */
    ck_assert_int_eq(msginfo_open(&mi, b.rec.data, b.rec.len, &err), -1);
    b.rec.data[4] ^= 0x55;
    ck_assert_int_eq(msginfo_open(&mi, b.rec.data, 63, &err), -1);   /* truncated */
    ck_assert_int_eq(msginfo_open(&mi, b.rec.data, b.rec.len, &err), 0);
    unbuild(&b);
}
END_TEST

START_TEST(test_limits)
{
    /* 300 nested multiparts: depth is capped, nothing recurses unbounded */
    struct buf m;
    buf_init(&m, 0);
    for (int i = 0; i < 300; i++)
        buf_printf(&m, "Content-Type: multipart/mixed; boundary=q%03d\n\n--q%03d\n", i, i);
    buf_puts(&m, "\nleaf\n");
    struct built b;
    build(&b, (const char *)m.data, m.len);
    ck_assert_uint_le(b.mi.nparts, MSGINFO_MAX_DEPTH + 1);
    unbuild(&b);
    buf_free(&m);
    /* 12000 parts: the table stops at MSGINFO_MAX_PARTS */
    buf_init(&m, 0);
    buf_puts(&m, "Content-Type: multipart/mixed; boundary=z\n\n");
    for (int i = 0; i < 12000; i++)
        buf_puts(&m, "--z\n\nx\n");
    buf_puts(&m, "--z--\n");
    build(&b, (const char *)m.data, m.len);
    ck_assert_uint_le(b.mi.nparts, MSGINFO_MAX_PARTS);
    ck_assert_uint_ge(b.mi.nparts, MSGINFO_MAX_PARTS - 1);
    unbuild(&b);
    buf_free(&m);
}
END_TEST

/* canon_append/canon_len against a byte-at-a-time reference, over random
 * octet strings (CR, LF and CRLF dense) cut into random chunks: the state
 * carried across chunks (a CR ending one, an LF starting the next) must
 * give the same octets as one call over the whole. */
static size_t canon_ref(const unsigned char *p, size_t n, unsigned char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            out[k++] = '\r';
        out[k++] = p[i];
    }
    return k;
}

START_TEST(test_canon)
{
    static const unsigned char alpha[] = "ab\r\n\r\nxyz\n\n\0";
    unsigned seed = 12345;
    for (int round = 0; round < 400; round++) {
        unsigned char raw[3000], want[6000];
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % sizeof raw;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            raw[i] = alpha[(seed >> 16) % (sizeof alpha - 1)];
        }
        size_t wl = canon_ref(raw, n, want);
        struct buf out;
        buf_init(&out, 0);
        int pcr = 0, pcr2 = 0;
        uint64_t clen = 0;
        size_t off = 0;
        while (off < n) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 12) % 97;
            if (k > n - off)
                k = n - off;
            clen += canon_len(raw + off, k, &pcr2);
            ck_assert_int_eq(canon_append(&out, raw + off, k, &pcr), 0);
            ck_assert_int_eq(pcr, pcr2);
            off += k;
        }
        ck_assert_uint_eq(out.len, wl);
        ck_assert_uint_eq(clen, wl);
        ck_assert(wl == 0 || memcmp(out.data, want, wl) == 0);
        buf_free(&out);
    }
    /* a capped buffer: fails cleanly, never writes past its limit */
    struct buf small;
    buf_init(&small, 10);
    int pcr = 0;
    ck_assert_int_eq(canon_append(&small, (const unsigned char *)"a\nb\nc\n", 6, &pcr), 0);
    ck_assert_uint_eq(small.len, 9);
    ck_assert_int_ne(canon_append(&small, (const unsigned char *)"\n", 1, &pcr), 0);
    ck_assert_uint_le(small.len, 10);
    buf_free(&small);
}
END_TEST

static Suite *mime_suite(void)
{
    Suite *s = suite_create("mime");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_structures, 0, (int)(sizeof samples / sizeof samples[0]));
    tcase_add_test(tc, test_rfc822_digest);
    tcase_add_test(tc, test_sections);
    tcase_add_test(tc, test_boundary_cut_header);
    tcase_add_test(tc, test_rfc2231_boundary);
    tcase_add_test(tc, test_header_filter);
    tcase_add_test(tc, test_header_filter_set);
    tcase_add_test(tc, test_cte);
    tcase_add_test(tc, test_binary_size);
    tcase_add_test(tc, test_dates);
    tcase_add_test(tc, test_mimehdr);
    tcase_add_test(tc, test_open_rejects);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_canon);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(mime_suite());
}
