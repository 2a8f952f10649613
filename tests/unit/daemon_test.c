/* Unit tests for the daemon modules: server/config (parsing and errors
 * naming the line) and server/conn (line/literal reads, limits, deadlines,
 * buffered writes, COMPRESS=DEFLATE) over a socketpair. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "tests/unit/unit_main.h"
#include "proto/buf.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/penalty.h"

/* ---------- config ---------- */

static int load_text(const char *text, struct cofferd_cfg *cfg, char *err, size_t errlen,
                     char *path, size_t pathlen)
{
    snprintf(path, pathlen, "/tmp/coffer-cfgtest-%ld.conf", (long)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    int rc = cfg_load(path, cfg, err, errlen);
    unlink(path);
    return rc;
}

START_TEST(t_cfg_good)
{
    struct cofferd_cfg c;
    char err[512], path[128];
    const char *text =
        "# comment\n"
        "\n"
        "data_dir = /srv/coffer\n"
        "listen = 127.0.0.1:1143, [::1]:1143\n"
        "listen_tls = *:1993\n"
        "tls_protocols = TLSv1.3\n"
        "tls_sni = Mail.Example.ORG /a/cert.pem /a/key.pem\n"
        "tls_sni = *.hosted.example /b/cert.pem /b/key.pem\n"
        "allow_plaintext_auth = yes\n"
        "max_connections = 50\n"
        "max_line = 8K\n"
        "max_literal = 2M\n"
        "idle_timeout = 10m\n"
        "preauth_timeout = 1500ms\n"
        "log = syslog\n"
        "map_size = 2G\n"
        "user = \"nobody\"\n";
    ck_assert_msg(load_text(text, &c, err, sizeof err, path, sizeof path) == 0, "%s", err);
    ck_assert_str_eq(c.data_dir, "/srv/coffer");
    ck_assert_uint_eq(c.n_listen, 2);
    ck_assert_str_eq(c.listen[0].host, "127.0.0.1");
    ck_assert_str_eq(c.listen[0].port, "1143");
    ck_assert_str_eq(c.listen[1].host, "::1");
    ck_assert_uint_eq(c.n_listen_tls, 1);
    ck_assert_str_eq(c.listen_tls[0].host, "");
    ck_assert_str_eq(c.listen_tls[0].port, "1993");
    ck_assert_int_eq(c.tls_min_version, TLS1_3_VERSION);
    ck_assert_int_eq(c.tls_max_version, TLS1_3_VERSION);
    ck_assert_uint_eq(c.n_sni, 2);
    ck_assert_str_eq(c.sni[0].host, "mail.example.org");
    ck_assert_str_eq(c.sni[1].key, "/b/key.pem");
    ck_assert(c.allow_plaintext_auth);
    ck_assert_uint_eq(c.max_connections, 50);
    ck_assert_uint_eq(c.max_line, 8192);
    ck_assert_uint_eq(c.max_literal, 2u << 20);
    ck_assert_int_eq(c.idle_timeout_ms, 600000);
    ck_assert_int_eq(c.preauth_timeout_ms, 1500);
    ck_assert(c.log_syslog);
    ck_assert_uint_eq(c.map_size, (uint64_t)2 << 30);
    ck_assert_str_eq(c.user, "nobody");
    /* untouched keys keep their defaults */
    ck_assert_uint_eq(c.max_connections_per_ip, 20);
    ck_assert_uint_eq(c.max_auth_failures, 3);
}
END_TEST

START_TEST(t_cfg_errors_name_the_line)
{
    static const struct { const char *text; const char *want; } cases[] = {
        { "data_dir = /x\nbogus = 1\n", ":2: unknown key 'bogus'" },
        { "\n\nmax_connections = 0\n", ":3: bad value for max_connections" },
        { "max_connections = 12abc\n", ":1: bad value for max_connections" },
        { "listen = 127.0.0.1:70000\n", ":1: bad address" },
        { "listen = ::1:143\n", ":1: bad address" },
        { "allow_plaintext_auth = perhaps\n", ":1: bad value for allow_plaintext_auth" },
        { "log = file\n", ":1: bad value for log" },
        { "data_dir = relative/path\n", ":1: bad value for data_dir" },
        { "tls_protocols = TLSv1.1\n", ":1: bad value for tls_protocols" },
        { "tls_sni = onlyhost\n", ":1: tls_sni wants" },
        { "idle_timeout = 5 days\n", ":1: bad value for idle_timeout" },
        { "max_line = 10\n", ":1: bad value for max_line" },
        { "no equals sign here\n", ":1: expected 'key = value'" },
        { "listen =\nlisten_tls =\n", "neither listen nor listen_tls" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cofferd_cfg c;
        char err[512], path[128];
        ck_assert_int_eq(load_text(cases[i].text, &c, err, sizeof err, path, sizeof path), -1);
        ck_assert_msg(strstr(err, cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].want);
        ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "case %zu: '%s' lacks the path", i, err);
    }
}
END_TEST

/* Every key takes a good value and refuses a bad one with an error that
 * names it; numbers land in the right field with the right unit. */
START_TEST(t_cfg_every_key)
{
    static const struct { const char *key, *good, *bad; } keys[] = {
        { "data_dir", "/srv/c", "srv/c" },
        { "listen", "127.0.0.1:143", "1.2.3.4:0" },
        { "listen_tls", "[::1]:993", "[::1" },
        { "tls_cert", "/c.pem", "" },
        { "tls_key", "/k.pem", "" },
        { "tls_protocols", "TLSv1.2 TLSv1.3", "SSLv3" },
        { "tls_ciphers", "HIGH", "" },
        { "tls_ciphersuites", "TLS_AES_128_GCM_SHA256", "" },
        { "tls_groups", "X25519", "" },
        { "tls_sni", "a.example /c /k", "a.example /c" },
        { "hostname", "mail.example.org", "mail example" },
        { "user", "coffer", "" },
        { "group", "coffer", "" },
        { "allow_plaintext_auth", "off", "sometimes" },
        { "max_connections", "1000000", "1000001" },
        { "max_connections_per_ip", "1", "0" },
        { "log", "stderr", "journal" },
        { "map_size", "1M", "1023K" },
        { "default_timezone", "Europe/Paris", "" },
        { "max_line", "16M", "17M" },
        { "max_literal", "4G", "5G" },
        { "max_nesting", "1000", "1001" },
        { "command_timeout", "100ms", "99ms" },
        { "idle_timeout", "24h", "25h" },
        { "preauth_timeout", "1m", "soon" },
        { "max_auth_failures", "100", "101" },
        { "auth_concurrency", "1024", "1025" },
        { "auth_failure_delay", "0", "61s" },
        { "auth_penalty_max", "5m", "301s" },
        { "auth_secret_file", "/s", "s" },
        { "tls_ticket_rotate", "1m", "59s" },
        { "output_thread", "no", "maybe" },
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct cofferd_cfg c;
        char err[512] = "", want[128];
        cfg_defaults(&c);
        ck_assert_msg(cfg_set(&c, keys[i].key, keys[i].good, err, sizeof err) == 0,
                      "%s = %s: %s", keys[i].key, keys[i].good, err);
        ck_assert_msg(cfg_set(&c, keys[i].key, keys[i].bad, err, sizeof err) == -1,
                      "%s = %s accepted", keys[i].key, keys[i].bad);
        snprintf(want, sizeof want, "for %s", keys[i].key);
        ck_assert_msg(strstr(err, want) || strstr(err, "address") || strstr(err, keys[i].key),
                      "%s: error '%s' does not name the key", keys[i].key, err);
    }
    struct cofferd_cfg c;
    char err[256];
    cfg_defaults(&c);
    ck_assert_int_eq(cfg_set(&c, "tls_ticket_rotate", "2h", err, sizeof err), 0);
    ck_assert_uint_eq(c.tls_ticket_rotate_s, 7200);
    ck_assert_int_eq(cfg_set(&c, "auth_penalty_max", "90s", err, sizeof err), 0);
    ck_assert_int_eq(c.auth_penalty_max_ms, 90000);
    ck_assert_int_eq(cfg_set(&c, "max_literal", "3K", err, sizeof err), 0);
    ck_assert_uint_eq(c.max_literal, 3072);
    ck_assert_int_eq(cfg_set(&c, "max_nesting", "7", err, sizeof err), 0);
    ck_assert_uint_eq(c.max_nesting, 7);
    ck_assert_int_eq(cfg_set(&c, "allow_plaintext_auth", "on", err, sizeof err), 0);
    ck_assert(c.allow_plaintext_auth);
    ck_assert_int_eq(c.output_thread, CFG_OUTPUT_YES);   /* the default */
    ck_assert_int_eq(cfg_set(&c, "output_thread", "no", err, sizeof err), 0);
    ck_assert_int_eq(c.output_thread, CFG_OUTPUT_NO);
    ck_assert_int_eq(cfg_set(&c, "output_thread", "yes", err, sizeof err), 0);
    ck_assert_int_eq(c.output_thread, CFG_OUTPUT_YES);
    ck_assert_int_eq(cfg_set(&c, "output_thread", "auto", err, sizeof err), 0);
    ck_assert_int_eq(c.output_thread, CFG_OUTPUT_AUTO);
    ck_assert_int_eq(cfg_set(&c, "hostname", "mx.example", err, sizeof err), 0);
    ck_assert_int_eq(cfg_set(&c, "hostname", "a\"b", err, sizeof err), -1);
    ck_assert_str_eq(c.hostname, "mx.example");
}
END_TEST

START_TEST(t_cfg_missing_file)
{
    struct cofferd_cfg c;
    char err[512];
    ck_assert_int_eq(cfg_load("/nonexistent/cofferd.conf", &c, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/cofferd.conf"));
}
END_TEST

/* ---------- conn ---------- */

static struct conn *pair(int *peer)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct conn *c = NULL;
    ck_assert_int_eq(conn_new(sv[0], sv[0], NULL, "192.0.2.1", "192.0.2.1:1", &c), CONN_OK);
    *peer = sv[1];
    return c;
}

static void put(int fd, const char *s)
{
    ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

START_TEST(t_conn_lines)
{
    int peer;
    struct conn *c = pair(&peer);
    struct buf b;
    buf_init(&b, 1 << 20);
    put(peer, "a1 NOOP\r\nbare lf\nsplit ");
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "a1 NOOP");
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "bare lf");
    put(peer, "line\r\n{3}\r\nabcrest\r\n");
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "split line");
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "{3}");
    buf_reset(&b);
    ck_assert_int_eq(conn_read_exact(c, &b, 3, 1000), CONN_OK);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_int_eq(memcmp(b.data, "abc", 3), 0);
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "rest");
    ck_assert_uint_eq(conn_bytes_in(c), strlen("a1 NOOP\r\nbare lf\nsplit line\r\n{3}\r\nabcrest\r\n"));
    close(peer);
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_EOF);
    buf_free(&b);
    conn_free(c);
}
END_TEST

START_TEST(t_conn_too_long_then_next_line)
{
    int peer;
    struct conn *c = pair(&peer);
    struct buf b;
    buf_init(&b, 1 << 20);
    char big[5000];
    memset(big, 'x', sizeof big);
    ck_assert_int_eq(write(peer, big, sizeof big), (ssize_t)sizeof big);
    ck_assert_int_eq(conn_read_line(c, &b, 1000, 1000), CONN_ETOOLONG);
    ck_assert_uint_le(b.len, 1001);
    put(peer, "tail of the long line\r\nnext\r\n");
    ck_assert_int_eq(conn_read_line(c, &b, 1000, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "next");
    /* exactly max octets plus CRLF is fine */
    memset(big, 'y', 1000);
    ck_assert_int_eq(write(peer, big, 1000), 1000);
    put(peer, "\r\n");
    ck_assert_int_eq(conn_read_line(c, &b, 1000, 1000), CONN_OK);
    ck_assert_uint_eq(b.len, 1000);
    buf_free(&b);
    close(peer);
    conn_free(c);
}
END_TEST

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(t_conn_whole_line_deadline)
{
    int peer;
    struct conn *c = pair(&peer);
    struct buf b;
    buf_init(&b, 1 << 20);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* drip one octet every 100 ms, never a line end */
        for (int i = 0; i < 30; i++) {
            if (write(peer, "x", 1) != 1)
                _exit(0);
            usleep(100000);
        }
        _exit(0);
    }
    int64_t t0 = mono_ms();
    ck_assert_int_eq(conn_read_line(c, &b, 1000, 500), CONN_ETIMEOUT);
    int64_t dt = mono_ms() - t0;
    ck_assert_msg(dt >= 450 && dt < 1500, "deadline took %lld ms", (long long)dt);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    buf_free(&b);
    close(peer);
    conn_free(c);
}
END_TEST

static volatile int intr_flag;

START_TEST(t_conn_interrupt)
{
    int peer;
    struct conn *c = pair(&peer);
    struct buf b;
    buf_init(&b, 1 << 20);
    conn_set_interrupt(c, &intr_flag);
    intr_flag = 1;
    ck_assert_int_eq(conn_read_line(c, &b, 100, 5000), CONN_EINTR);
    ck_assert_int_eq(conn_wait_readable(c, 5000), CONN_EINTR);
    /* writes still go out (the final BYE) */
    ck_assert_int_eq(conn_puts(c, "* BYE\r\n"), CONN_OK);
    ck_assert_int_eq(conn_flush(c), CONN_OK);
    char got[16] = "";
    ck_assert_int_eq(read(peer, got, sizeof got - 1), 7);
    ck_assert_str_eq(got, "* BYE\r\n");
    intr_flag = 0;
    buf_free(&b);
    close(peer);
    conn_free(c);
}
END_TEST

static size_t drain(int fd, unsigned char *out, size_t cap, int ms)
{
    size_t n = 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (n < cap && poll(&p, 1, ms) > 0) {
        ssize_t r = read(fd, out + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

START_TEST(t_conn_big_write_streams)
{
    int peer;
    struct conn *c = pair(&peer);
    fcntl(peer, F_SETFL, O_NONBLOCK);
    /* 1 MiB through 16 KiB buffers, read concurrently by a child */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        static unsigned char in[1 << 21];
        size_t n = drain(peer, in, sizeof in, 2000);
        for (size_t i = 0; i < n; i++)
            if (in[i] != (unsigned char)(i % 251))
                _exit(2);
        _exit(n == (1u << 20) ? 0 : 1);
    }
    static unsigned char data[1 << 20];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i % 251);
    for (size_t off = 0; off < sizeof data; off += 777) {
        size_t n = sizeof data - off < 777 ? sizeof data - off : 777;
        ck_assert_int_eq(conn_write(c, data + off, n), CONN_OK);
    }
    ck_assert_int_eq(conn_flush(c), CONN_OK);
    int st;
    waitpid(pid, &st, 0);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_uint_eq(conn_bytes_out(c), sizeof data);
    close(peer);
    conn_free(c);
}
END_TEST

START_TEST(t_conn_compress)
{
    int peer;
    struct conn *c = pair(&peer);
    struct buf b;
    buf_init(&b, 1 << 20);
    const char *err = NULL;
    z_stream zo, zi;
    memset(&zo, 0, sizeof zo);
    memset(&zi, 0, sizeof zi);
    ck_assert_int_eq(deflateInit2(&zo, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ck_assert_int_eq(inflateInit2(&zi, -15), Z_OK);
    /* the client starts compressing right after the command line */
    unsigned char zbuf[4096];
    const char *cmd = "b NOOP\r\nc LOGOUT\r\n";
    zo.next_in = (unsigned char *)cmd;
    zo.avail_in = (uInt)strlen(cmd);
    zo.next_out = zbuf;
    zo.avail_out = sizeof zbuf;
    ck_assert_int_eq(deflate(&zo, Z_SYNC_FLUSH), Z_OK);
    size_t zlen = sizeof zbuf - zo.avail_out;
    put(peer, "a COMPRESS DEFLATE\r\n");
    ck_assert_int_eq(write(peer, zbuf, zlen), (ssize_t)zlen);
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "a COMPRESS DEFLATE");
    ck_assert_int_eq(conn_puts(c, "a OK DEFLATE active\r\n"), CONN_OK);
    ck_assert_int_eq(conn_compress(c, &err), CONN_OK);
    ck_assert(conn_compress_active(c));
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "b NOOP");
    ck_assert_int_eq(conn_read_line(c, &b, 100, 1000), CONN_OK);
    ck_assert_str_eq((char *)b.data, "c LOGOUT");
    ck_assert_int_eq(conn_puts(c, "b OK done\r\n"), CONN_OK);
    ck_assert_int_eq(conn_flush(c), CONN_OK);
    unsigned char raw[8192];
    size_t n = drain(peer, raw, sizeof raw, 300);
    const char *plain_ok = "a OK DEFLATE active\r\n";
    ck_assert_uint_gt(n, strlen(plain_ok));
    ck_assert_int_eq(memcmp(raw, plain_ok, strlen(plain_ok)), 0);
    char out[256];
    zi.next_in = raw + strlen(plain_ok);
    zi.avail_in = (uInt)(n - strlen(plain_ok));
    zi.next_out = (unsigned char *)out;
    zi.avail_out = sizeof out - 1;
    int zr = inflate(&zi, Z_SYNC_FLUSH);
    ck_assert(zr == Z_OK || zr == Z_BUF_ERROR);
    out[sizeof out - 1 - zi.avail_out] = 0;
    ck_assert_str_eq(out, "b OK done\r\n");
    ck_assert_int_ne(conn_compress(c, &err), CONN_OK);   /* only once */
    deflateEnd(&zo);
    inflateEnd(&zi);
    buf_free(&b);
    close(peer);
    conn_free(c);
}
END_TEST

START_TEST(t_conn_no_tls_ctx)
{
    int peer;
    struct conn *c = pair(&peer);
    const char *err = NULL;
    ck_assert(!conn_tls_available(c));
    ck_assert(!conn_tls_active(c));
    ck_assert_int_ne(conn_starttls(c, &err), CONN_OK);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(conn_tls_desc(c), "");
    ck_assert_str_eq(conn_peer_ip(c), "192.0.2.1");
    close(peer);
    conn_free(c);
}
END_TEST

/* ---------- the parent's penalty table ---------- */

#define PNAME(x) (x), strlen(x)

START_TEST(t_pen_success_clears_only_its_name)
{
    ck_assert_int_eq(penalty_init(), 0);
    const char *ip = "192.0.2.1";
    time_t t = 100000;
    for (int i = 0; i < 3; i++)
        penalty_fail(ip, PNAME("victim/boss"), t);
    penalty_fail(ip, PNAME("mine/me"), t);
    ck_assert_uint_eq(penalty_failures(ip, t), 4);
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 2000);
    /* the attacker's own account: only its own failure goes */
    penalty_success(ip, PNAME("mine/me"), t);
    ck_assert_uint_eq(penalty_failures(ip, t), 3);
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 1000);
    /* a name that never failed here clears nothing, nor does another address */
    penalty_success(ip, PNAME("other/one"), t);
    penalty_success("192.0.2.2", PNAME("victim/boss"), t);
    ck_assert_uint_eq(penalty_failures(ip, t), 3);
    /* the victim's own success: the address starts clean */
    penalty_success(ip, PNAME("victim/boss"), t);
    ck_assert_uint_eq(penalty_failures(ip, t), 0);
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 0);
}
END_TEST

START_TEST(t_pen_overflow_and_unnamed_are_never_cleared)
{
    ck_assert_int_eq(penalty_init(), 0);
    const char *ip = "2001:db8::1";
    time_t t = 100000;
    char name[32];
    for (int i = 0; i < PENALTY_NAMES + 2; i++) {
        snprintf(name, sizeof name, "inst/user%d", i);
        penalty_fail(ip, PNAME(name), t);
    }
    penalty_fail(ip, "", 0, t);   /* the attempt never named anyone */
    ck_assert_uint_eq(penalty_failures(ip, t), PENALTY_NAMES + 3);
    /* names past the table's width are in "other": their success does not
     * evict or clear anything */
    snprintf(name, sizeof name, "inst/user%d", PENALTY_NAMES);
    penalty_success(ip, PNAME(name), t);
    penalty_success(ip, "", 0, t);
    ck_assert_uint_eq(penalty_failures(ip, t), PENALTY_NAMES + 3);
    for (int i = 0; i < PENALTY_NAMES; i++) {
        snprintf(name, sizeof name, "inst/user%d", i);
        penalty_success(ip, PNAME(name), t);
    }
    ck_assert_uint_eq(penalty_failures(ip, t), 3);
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 1000);
}
END_TEST

START_TEST(t_pen_growth_cap_expiry)
{
    ck_assert_int_eq(penalty_init(), 0);
    const char *ip = "198.51.100.7";
    time_t t = 100000;
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 0);
    int want[] = { 250, 500, 1000, 2000, 3000 };
    for (int i = 0; i < 5; i++) {
        penalty_fail(ip, PNAME("a/b"), t);
        ck_assert_int_eq(penalty_ms(ip, t, 3000), want[i]);
    }
    for (int i = 0; i < 40; i++)
        penalty_fail(ip, PNAME("a/b"), t);   /* the shift stays bounded */
    ck_assert_int_eq(penalty_ms(ip, t, 15000), 15000);
    ck_assert_int_eq(penalty_ms(ip, t, 0), 0);
    /* 15 minutes after the last failure, forgotten */
    ck_assert_int_eq(penalty_ms(ip, t + PENALTY_EXPIRE_S, 3000), 3000);
    ck_assert_int_eq(penalty_ms(ip, t + PENALTY_EXPIRE_S + 1, 3000), 0);
    penalty_fail(ip, PNAME("a/b"), t + 2000);
    ck_assert_uint_eq(penalty_failures(ip, t + 2000), 1);
}
END_TEST

START_TEST(t_pen_table_bound_drops_stalest)
{
    ck_assert_int_eq(penalty_init(), 0);
    char ip[64];
    time_t t = 200000;
    for (int i = 0; i <= PENALTY_SLOTS; i++) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
        penalty_fail(ip, PNAME("x/y"), i == 0 ? t : i < PENALTY_SLOTS ? t + 100 : t + 200);
    }
    /* the first (stalest) address made room for the last one */
    ck_assert_uint_eq(penalty_failures("10.0.0.0", t + 200), 0);
    ck_assert_uint_eq(penalty_failures("10.0.0.1", t + 200), 1);
    snprintf(ip, sizeof ip, "10.0.%d.%d", PENALTY_SLOTS / 256, PENALTY_SLOTS % 256);
    ck_assert_uint_eq(penalty_failures(ip, t + 200), 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("daemon");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, t_cfg_good);
    tcase_add_test(tc, t_cfg_errors_name_the_line);
    tcase_add_test(tc, t_cfg_missing_file);
    tcase_add_test(tc, t_cfg_every_key);
    suite_add_tcase(s, tc);
    tc = tcase_create("conn");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, t_conn_lines);
    tcase_add_test(tc, t_conn_too_long_then_next_line);
    tcase_add_test(tc, t_conn_whole_line_deadline);
    tcase_add_test(tc, t_conn_interrupt);
    tcase_add_test(tc, t_conn_big_write_streams);
    tcase_add_test(tc, t_conn_compress);
    tcase_add_test(tc, t_conn_no_tls_ctx);
    suite_add_tcase(s, tc);
    tc = tcase_create("penalty");
    tcase_add_test(tc, t_pen_success_clears_only_its_name);
    tcase_add_test(tc, t_pen_overflow_and_unnamed_are_never_cleared);
    tcase_add_test(tc, t_pen_growth_cap_expiry);
    tcase_add_test(tc, t_pen_table_bound_drops_stalest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return unit_run(suite());
}
