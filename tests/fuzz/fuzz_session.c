/* fuzz_session.c — whole IMAP sessions: the input is everything a client
 * sends (tagged lines, literals, LITERAL+, pipelined commands, AUTHENTICATE
 * responses, IDLE/DONE, a COMPRESS stream) and goes through session_run()
 * exactly as in a connection child, over in-memory files instead of a
 * socket, against a small store built once per process: instance "fz"
 * (tests/fuzz/harness_server.h) where u has INBOX, Archive/2019 and
 * Entwürfe with the messages below, and boss (admin, granted to u) has an
 * INBOX.
 *
 * Findings: crashes, UB, leaks, and output that breaks IMAP framing: every
 * response line ends in CRLF, no CR, LF or NUL appears outside a literal,
 * literals are as long as announced, and every response starts with "*",
 * "+" or a tag followed by OK, NO or BAD. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "proto/buf.h"
#include "proto/search.h"
#include "server/conn.h"
#include "server/session.h"
#include "store/admin.h"
#include "tests/fuzz/harness_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* see fuzz_sasl.c: libsasl2's LOGIN plugin, bounded per connection */
const char *__lsan_default_suppressions(void)
{
    return "leak:liblogin.so\n";
}

/* ---- the store ---- */

static const char msg_plain[] =
    "Return-Path: <alice@example.org>\r\n"
    "From: Alice Example <alice@example.org>\r\n"
    "To: u@fz.example, \"Bob, Jr.\" <bob@example.net>\r\n"
    "Cc: team@example.org\r\n"
    "Subject: Invoice 2019-04 for the archive\r\n"
    "Date: Tue, 16 Apr 2019 09:12:44 +0200\r\n"
    "Message-ID: <inv-2019-04@example.org>\r\n"
    "In-Reply-To: <req-17@fz.example>\r\n"
    "References: <req-16@fz.example> <req-17@fz.example>\r\n"
    "\r\n"
    "Hello,\r\n\r\nthe invoice for April is attached to the next mail.\r\n-- \r\nAlice\r\n";

static const char msg_alt[] =
    "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>\r\n"
    "To: u@fz.example\r\n"
    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n"
    "Date: Sat, 1 Jun 2019 18:00:00 +0000\r\n"
    "Message-ID: <alt1@example.de>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Sch=F6ne Gr=FC=DFe =\r\naus K=F6ln\r\n"
    "--b1\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "PHA+U2Now7ZuZSBHcsO8w59lPC9wPg==\r\n"
    "--b1--\r\n"
    "epilogue\r\n";

static const char msg_mixed[] =
    "From: Carol <carol@example.com>\r\n"
    "To: u@fz.example\r\n"
    "Subject: Fwd: report with attachment\r\n"
    "Date: Mon, 2 Dec 2019 07:30:00 -0500\r\n"
    "Message-ID: <mixed1@example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "--outer\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "See the report and the forwarded mail.\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: Dave <dave@example.com>\r\n"
    "Subject: original\r\n"
    "Date: Sun, 1 Dec 2019 10:00:00 +0000\r\n"
    "Content-Type: multipart/mixed; boundary=\"inner\"\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "inner text\r\n"
    "--inner\r\n"
    "Content-Type: image/png\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0KGgo=\r\n"
    "--inner--\r\n"
    "--outer--\r\n";

static const char msg_8bit[] =
    "From: \xc3\x89lodie <elodie@example.fr>\r\n"
    "To: u@fz.example\r\n"
    "Subject: r\xc3\xa9sum\xc3\xa9 \xe2\x80\x93 8-bit header\r\n"
    "Date: Wed, 15 Jan 2020 12:00:00 +0100\r\n"
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
    "  bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9""e\r\n";

static const char msg_headeronly[] =
    "From: nobody@example.org\r\n"
    "Subject: no body at all\r\n";

static const char msg_tiny[] = "Subject: x\r\n\r\n";

struct seed_msg {
    const char *owner, *mbox, *raw;
    size_t len;
    uint32_t flags;
    int64_t date;
};

#define M(o, b, m, f, d) {o, b, m, sizeof m - 1, f, d}
static const struct seed_msg seed_msgs[] = {
    M("u", "INBOX", msg_plain, STORE_F_SEEN, 1555398764),
    M("u", "INBOX", msg_alt, 0, 1559412000),
    M("u", "INBOX", msg_mixed, STORE_F_FLAGGED | STORE_F_ANSWERED, 1575289800),
    M("u", "INBOX", msg_8bit, STORE_F_SEEN | STORE_F_DRAFT, 1579086000),
    M("u", "INBOX", msg_headeronly, 0, 1579086001),
    M("u", "INBOX", msg_tiny, STORE_F_SEEN, 1579086002),
    M("u", "Archive/2019", msg_plain, STORE_F_SEEN, 1555398764),
    M("u", "Archive/2019", msg_mixed, 0, 1575289800),
    M("u", "Archive/2019", msg_tiny, 0, 0),
    M("u", "Entw\xc3\xbcrfe", msg_8bit, STORE_F_DRAFT, 1579086000),
    M("boss", "INBOX", msg_alt, 0, 1559412000),
};

static void populate(struct inst *in)
{
    const char *err = NULL;
    for (size_t i = 0; i < sizeof seed_msgs / sizeof seed_msgs[0]; i++) {
        const struct seed_msg *s = &seed_msgs[i];
        struct import_msg m;
        memset(&m, 0, sizeof m);
        m.raw = (const unsigned char *)s->raw;
        m.len = s->len;
        m.flags = s->flags;
        m.internaldate = s->date;
        m.tz = 60;
        bool added = false;
        uint32_t uid = 0;
        if (store_add_message(in, s->owner, s->mbox, &m, &added, &uid, &err) != STORE_OK) {
            fprintf(stderr, "fuzz_session: store_add_message: %s\n", err ? err : "?");
            abort();
        }
    }
}

/* ---- output framing ---- */

static bool is_status(const char *p, const char *end)
{
    size_t n = (size_t)(end - p);
    return (n >= 3 && !memcmp(p, "OK ", 3)) || (n >= 3 && !memcmp(p, "NO ", 3)) ||
           (n >= 4 && !memcmp(p, "BAD ", 4)) || (n == 2 && !memcmp(p, "OK", 2)) ||
           (n == 2 && !memcmp(p, "NO", 2)) || (n == 3 && !memcmp(p, "BAD", 3));
}

/* Literal announced at the end of a line ("{n}", "~{n}"): its size, or -1. */
static long long literal_at_end(const char *line, size_t n)
{
    if (n < 3 || line[n - 1] != '}')
        return -1;
    size_t i = n - 1;
    unsigned long long v = 0, mul = 1;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9' && mul <= 1000000000000ULL) {
        v += (unsigned long long)(line[i - 1] - '0') * mul;
        mul *= 10;
        i--;
    }
    if (mul == 1 || i == 0 || line[i - 1] != '{')
        return -1;
    return (long long)v;
}

/* Returns the offset where COMPRESS=DEFLATE output starts, or len. */
static size_t check_framing(const char *out, size_t len)
{
    size_t pos = 0;
    bool start = true;   /* at the start of a response (not after a literal) */
    while (pos < len) {
        const char *line = out + pos;
        const char *crlf = NULL;
        for (size_t i = pos; i + 1 < len; i++) {
            if (out[i] == '\r' && out[i + 1] == '\n') {
                crlf = out + i;
                break;
            }
        }
        if (!crlf)
            abort();   /* output not ending in CRLF */
        size_t n = (size_t)(crlf - line);
        for (size_t i = 0; i < n; i++)
            if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0')
                abort();   /* a control octet outside a literal */
        if (start) {
            const char *sp = memchr(line, ' ', n);
            if (n == 0 || !sp)
                abort();
            if (!(sp - line == 1 && (line[0] == '*' || line[0] == '+')) &&
                !is_status(sp + 1, line + n))
                abort();   /* a tagged line without OK/NO/BAD */
            static const char z[] = " OK DEFLATE active";
            if ((size_t)(line + n - sp) == sizeof z - 1 && !memcmp(sp, z, sizeof z - 1))
                return pos + n + 2;
        }
        pos += n + 2;
        long long lit = literal_at_end(line, n);
        if (lit >= 0) {
            if ((unsigned long long)lit > len - pos)
                abort();   /* literal shorter than announced */
            pos += (size_t)lit;
            start = false;
        } else {
            start = true;
        }
    }
    return len;
}

/* After COMPRESS DEFLATE: inflate the rest and check that too. */
static void check_output(const char *out, size_t len)
{
    size_t z = check_framing(out, len);
    if (z >= len)
        return;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK)
        abort();
    struct buf plain;
    buf_init(&plain, 64u << 20);
    unsigned char chunk[16384];
    zs.next_in = (unsigned char *)(uintptr_t)(out + z);
    zs.avail_in = (uInt)(len - z);
    int rc;
    do {
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            abort();   /* the server's deflate stream is corrupt */
        buf_append(&plain, chunk, sizeof chunk - zs.avail_out);
    } while (zs.avail_out == 0 || (rc == Z_OK && zs.avail_in > 0));
    inflateEnd(&zs);
    if (plain.len)
        check_framing((const char *)plain.data, plain.len);
    buf_free(&plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool inited;
    if (!inited) {
        const char *err = NULL;
        fz_server_init("fuzz_session", populate);
        if (search_charsets_init(&err) != 0)   /* cofferd does it before fork */
            abort();
        inited = true;
    }
    struct conn *c = fz_conn_new(data, size);
    struct session_env env;
    memset(&env, 0, sizeof env);
    env.store = *fz_store();
    env.lim.max_line = 16384;
    env.lim.max_literal = 1u << 20;
    env.lim.max_command = 2u << 20;
    env.lim.max_nesting = 32;
    env.lim.cmd_timeout_ms = 1000;      /* input never blocks: EOF ends it */
    env.lim.idle_timeout_ms = 1000;
    env.lim.preauth_timeout_ms = 1000;
    env.lim.max_auth_failures = 3;
    env.greeting_host = "fuzz.example";
    session_run(c, &env);
    conn_free(c);
    size_t n;
    const char *out = fz_output(&n);
    if (getenv("FUZZ_DUMP"))
        fwrite(out, 1, n, stderr);
    check_output(out, n);
    return 0;
}
