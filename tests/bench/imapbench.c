/* imapbench.c — a small bulk IMAP client for tests/bench/run.sh.
 *
 * It exists so that benchmark numbers measure the server, not the client:
 * responses are read through one large buffer, literals are skipped by
 * their announced count without being parsed, and nothing is decoded
 * beyond what is needed to find the tagged reply.  The same binary drives
 * cofferd and Dovecot, so any client cost is the same on both sides.
 *
 * Modes (one per run; every result is one "RESULT key=value ..." line):
 *   -e CMD ...        log in, SELECT the mailbox, run each CMD in order and
 *                     report its wall time, octets and FETCH responses
 *   -n N              N x (connect, TLS, LOGIN, LOGOUT); reports logins/s
 *   -b SECONDS        browse loop for SECONDS (SELECT, header window, three
 *                     bodies, NOOP), reports ops/s and errors
 *   -H N              hold N logged-in connections (COMPRESS, SELECT) idle
 *                     for -w seconds, printing "HELD" once they are all up
 * -k K runs K clients in parallel (forked) for -n and -b.
 * -S ADDR binds every connection to source address ADDR (e.g. 127.0.0.7),
 * so a load test can spread clients over addresses with per-IP caps on.
 * -T EPOCH (with -b): log in now, start browsing at wall-clock time EPOCH
 * (seconds since 1970) and browse -b seconds from then, so a load test can
 * keep its login storm apart from the load.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_CMDS 32
#define BUF_START (256 * 1024)
#define BUF_MAX (64 * 1024 * 1024)   /* a single response line never needs more */

struct opts {
    const char *host, *port, *user, *pass, *mailbox;
    bool tls, compress;
    const char *cmds[MAX_CMDS];
    int ncmds;
    long logins;      /* -n */
    double browse;    /* -b */
    long hold;        /* -H */
    double hold_wait; /* -w */
    int clients;      /* -k */
    unsigned seed;
    const char *source; /* -S */
    double start_at;    /* -T, CLOCK_REALTIME seconds */
};

struct conn {
    int fd;
    SSL *ssl;
    bool z;
    z_stream zin, zout;
    unsigned char *buf;        /* protocol octets (decompressed) */
    size_t pos, len, cap;
    unsigned char raw[65536];  /* compressed input not yet inflated */
    uint64_t in_octets;
    unsigned tagno;
};

struct result {
    char status[8];       /* OK, NO, BAD, EOF */
    uint64_t octets;
    long fetches;
    long exists;
    long hits;            /* numbers in * SEARCH replies */
};

static SSL_CTX *g_ctx;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    double t = 0;
    getrusage(RUSAGE_SELF, &ru);
    t += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    t += (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    getrusage(RUSAGE_CHILDREN, &ru);
    t += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    t += (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return t;
}

static ssize_t raw_read(struct conn *c, void *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        return r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    for (;;) {
        ssize_t r = read(c->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

static int raw_write(struct conn *c, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t r;
        if (c->ssl) {
            int w = SSL_write(c->ssl, b, (int)n);
            r = w > 0 ? w : -1;
        } else {
            r = write(c->fd, b, n);
            if (r < 0 && errno == EINTR)
                continue;
        }
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int conn_write(struct conn *c, const char *s, size_t n)
{
    if (!c->z)
        return raw_write(c, s, n);
    unsigned char out[16384];
    c->zout.next_in = (unsigned char *)s;
    c->zout.avail_in = (uInt)n;
    do {
        c->zout.next_out = out;
        c->zout.avail_out = sizeof out;
        if (deflate(&c->zout, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return -1;
        if (raw_write(c, out, sizeof out - c->zout.avail_out) < 0)
            return -1;
    } while (c->zout.avail_out == 0);
    return 0;
}

/* Append at least one octet to the buffer; 0 on EOF, -1 on error. */
static int conn_fill(struct conn *c)
{
    if (c->pos > 0 && c->pos == c->len) {
        c->pos = c->len = 0;
    } else if (c->pos > c->cap / 2) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->len == c->cap) {
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        } else {
            if (c->cap >= BUF_MAX)
                return -1;
            unsigned char *nb = realloc(c->buf, c->cap * 2);
            if (!nb)
                return -1;
            c->buf = nb;
            c->cap *= 2;
        }
    }
    if (!c->z) {
        ssize_t r = raw_read(c, c->buf + c->len, c->cap - c->len);
        if (r <= 0)
            return (int)r;
        c->len += (size_t)r;
        c->in_octets += (uint64_t)r;
        return 1;
    }
    for (;;) {
        if (c->zin.avail_in == 0) {
            ssize_t r = raw_read(c, c->raw, sizeof c->raw);
            if (r <= 0)
                return (int)r;
            c->zin.next_in = c->raw;
            c->zin.avail_in = (uInt)r;
        }
        c->zin.next_out = c->buf + c->len;
        c->zin.avail_out = (uInt)(c->cap - c->len);
        int zr = inflate(&c->zin, Z_SYNC_FLUSH);
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -1;
        size_t got = (c->cap - c->len) - c->zin.avail_out;
        if (got > 0) {
            c->len += got;
            c->in_octets += got;
            return 1;
        }
    }
}

/* Next line including CRLF, returned in place (valid until the next call). */
static int conn_line(struct conn *c, const unsigned char **line, size_t *n)
{
    size_t scanned = 0;
    for (;;) {
        unsigned char *p = memchr(c->buf + c->pos + scanned, '\n', c->len - c->pos - scanned);
        if (p) {
            *line = c->buf + c->pos;
            *n = (size_t)(p - (c->buf + c->pos)) + 1;
            c->pos += *n;
            return 1;
        }
        scanned = c->len - c->pos;
        int r = conn_fill(c);
        if (r <= 0)
            return r;
    }
}

static int conn_skip(struct conn *c, uint64_t n)
{
    while (n > 0) {
        size_t avail = c->len - c->pos;
        if (avail >= n) {
            c->pos += n;
            return 1;
        }
        n -= avail;
        c->pos = c->len = 0;
        int r = conn_fill(c);
        if (r <= 0)
            return r;
    }
    return 1;
}

/* The literal size announced at the end of a line, or -1. */
static long long literal_at_end(const unsigned char *l, size_t n)
{
    if (n < 4 || l[n - 1] != '\n' || l[n - 2] != '\r' || l[n - 3] != '}')
        return -1;
    size_t i = n - 3;
    long long v = 0, mul = 1;
    while (i > 0 && l[i - 1] >= '0' && l[i - 1] <= '9') {
        v += (l[i - 1] - '0') * mul;
        mul *= 10;
        i--;
    }
    if (i == n - 3 || i == 0 || (l[i - 1] != '{' && l[i - 1] != '+'))
        return -1;
    return v;
}

/* Read responses until the tagged one for tag. */
static int read_until_tag(struct conn *c, const char *tag, struct result *res)
{
    size_t tl = strlen(tag);
    bool start = true;
    uint64_t before = c->in_octets - (c->len - c->pos);
    res->fetches = 0;
    res->hits = 0;
    for (;;) {
        const unsigned char *l;
        size_t n;
        int r = conn_line(c, &l, &n);
        if (r <= 0) {
            strcpy(res->status, "EOF");
            return -1;
        }
        if (start) {
            if (n > tl + 1 && memcmp(l, tag, tl) == 0 && l[tl] == ' ') {
                const unsigned char *s = l + tl + 1;
                snprintf(res->status, sizeof res->status, "%.*s", s[0] == 'O' ? 2 : (s[0] == 'N' ? 2 : 3), s);
                res->octets = c->in_octets - (c->len - c->pos) - before;
                return strcmp(res->status, "OK") == 0 ? 0 : 1;
            }
            if (n > 8 && l[0] == '*' && l[1] == ' ') {
                const unsigned char *sp = memchr(l + 2, ' ', n - 2);
                if (sp && (size_t)(l + n - sp) > 6 && memcmp(sp + 1, "FETCH", 5) == 0)
                    res->fetches++;
                else if (sp && (size_t)(l + n - sp) > 6 && memcmp(sp + 1, "EXISTS", 6) == 0)
                    res->exists = atol((const char *)l + 2);
                else if (memcmp(l + 2, "SEARCH", 6) == 0)
                    for (size_t i = 8; i < n; i++)
                        res->hits += l[i] == ' ';
            }
        }
        long long lit = literal_at_end(l, n);
        if (lit >= 0) {
            if (conn_skip(c, (uint64_t)lit) <= 0) {
                strcpy(res->status, "EOF");
                return -1;
            }
            start = false;
        } else {
            start = true;
        }
    }
}

static int command(struct conn *c, const char *cmd, struct result *res)
{
    char tag[16];
    snprintf(tag, sizeof tag, "b%u", ++c->tagno);
    size_t n = strlen(tag) + strlen(cmd) + 3;
    char *line = malloc(n + 1);
    if (!line)
        return -1;
    snprintf(line, n + 1, "%s %s\r\n", tag, cmd);
    int r = conn_write(c, line, n);
    free(line);
    if (r < 0) {
        strcpy(res->status, "EOF");
        return -1;
    }
    return read_until_tag(c, tag, res);
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->z) {
        inflateEnd(&c->zin);
        deflateEnd(&c->zout);
    }
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static int conn_open(struct conn *c, const struct opts *o)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(o->host, o->port, &hints, &ai) != 0)
        return -1;
    c->fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (c->fd >= 0 && o->source) {
        struct addrinfo *sa;
        struct addrinfo sh = {.ai_family = ai->ai_family, .ai_socktype = SOCK_STREAM};
        if (getaddrinfo(o->source, NULL, &sh, &sa) != 0) {
            freeaddrinfo(ai);
            return -1;
        }
        int b = bind(c->fd, sa->ai_addr, sa->ai_addrlen);
        freeaddrinfo(sa);
        if (b < 0) {
            freeaddrinfo(ai);
            return -1;
        }
    }
    if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->tls) {
        c->ssl = SSL_new(g_ctx);
        if (!c->ssl)
            return -1;
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        if (SSL_connect(c->ssl) != 1)
            return -1;
    }
    c->cap = BUF_START;
    c->buf = malloc(c->cap);
    if (!c->buf)
        return -1;
    struct result res = {{0}, 0, 0, 0, 0};
    if (read_until_tag(c, "*", &res) < 0 && strcmp(res.status, "EOF") == 0) {
        /* the greeting is untagged: "* OK ..." reads as tag "*" */
        return -1;
    }
    return 0;
}

static int start_compress(struct conn *c)
{
    struct result res = {{0}, 0, 0, 0, 0};
    if (command(c, "COMPRESS DEFLATE", &res) != 0)
        return -1;
    if (inflateInit2(&c->zin, -15) != Z_OK)
        return -1;
    if (deflateInit2(&c->zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    /* octets already buffered after the OK are compressed */
    size_t left = c->len - c->pos;
    if (left > sizeof c->raw)
        return -1;
    memcpy(c->raw, c->buf + c->pos, left);
    c->zin.next_in = c->raw;
    c->zin.avail_in = (uInt)left;
    c->pos = c->len = 0;
    c->z = true;
    return 0;
}

static int login(struct conn *c, const struct opts *o, struct result *res)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "LOGIN \"%s\" \"%s\"", o->user, o->pass);
    return command(c, cmd, res);
}

static int open_session(struct conn *c, const struct opts *o, struct result *sel)
{
    struct result res = {{0}, 0, 0, 0, 0};
    if (conn_open(c, o) < 0 || login(c, o, &res) != 0) {
        fprintf(stderr, "imapbench: connect/login failed (%s)\n", res.status);
        return -1;
    }
    if (o->compress && start_compress(c) < 0) {
        fprintf(stderr, "imapbench: COMPRESS failed\n");
        return -1;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "SELECT \"%s\"", o->mailbox);
    memset(sel, 0, sizeof *sel);
    if (command(c, cmd, sel) != 0) {
        fprintf(stderr, "imapbench: SELECT failed (%s)\n", sel->status);
        return -1;
    }
    return 0;
}

static int run_cmds(const struct opts *o)
{
    struct conn c;
    struct result sel;
    if (open_session(&c, o, &sel) < 0)
        return 1;
    printf("RESULT mode=select exists=%ld\n", sel.exists);
    int rc = 0;
    for (int i = 0; i < o->ncmds; i++) {
        struct result res = {{0}, 0, 0, 0, 0};
        double c0 = cpu_self(), t0 = now();
        int r = command(&c, o->cmds[i], &res);
        double t = now() - t0, cpu = cpu_self() - c0;
        printf("RESULT mode=cmd index=%d status=%s wall=%.6f client_cpu=%.3f octets=%llu fetches=%ld hits=%ld\n",
               i, res.status, t, cpu, (unsigned long long)res.octets, res.fetches, res.hits);
        fflush(stdout);
        if (r < 0) {
            rc = 1;
            break;
        }
        if (r > 0)
            rc = 1;
    }
    struct result res;
    command(&c, "LOGOUT", &res);
    conn_close(&c);
    return rc;
}

/* Runs fn in k forked children; each writes "ok err" to a pipe. */
typedef void (*worker_fn)(const struct opts *o, int idx, long *ok, long *err);

static int fan_out(const struct opts *o, worker_fn fn, long *ok, long *err)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    for (int i = 0; i < o->clients; i++) {
        pid_t p = fork();
        if (p < 0)
            return -1;
        if (p == 0) {
            close(fds[0]);
            long a = 0, b = 0;
            fn(o, i, &a, &b);
            char line[64];
            int n = snprintf(line, sizeof line, "%ld %ld\n", a, b);
            if (write(fds[1], line, (size_t)n) != n)
                _exit(1);
            _exit(0);
        }
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    long a, b;
    *ok = *err = 0;
    while (f && fscanf(f, "%ld %ld", &a, &b) == 2) {
        *ok += a;
        *err += b;
    }
    if (f)
        fclose(f);
    while (wait(NULL) > 0)
        ;
    return 0;
}

static void login_worker(const struct opts *o, int idx, long *ok, long *err)
{
    long n = o->logins / o->clients + (idx < o->logins % o->clients ? 1 : 0);
    for (long i = 0; i < n; i++) {
        struct conn c;
        struct result res = {{0}, 0, 0, 0, 0};
        if (conn_open(&c, o) == 0 && login(&c, o, &res) == 0 && command(&c, "LOGOUT", &res) == 0)
            (*ok)++;
        else
            (*err)++;
        conn_close(&c);
    }
}

/* One browsing client: what a mail client does when a user clicks around. */
static void browse_worker(const struct opts *o, int idx, long *ok, long *err)
{
    unsigned seed = o->seed + (unsigned)idx * 7919u;
    double end = now() + o->browse;
    struct conn c;
    struct result sel;
    if (open_session(&c, o, &sel) < 0) {
        (*err)++;
        return;
    }
    if (o->start_at > 0) {
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        double wait = o->start_at - ((double)rt.tv_sec + (double)rt.tv_nsec / 1e9);
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
        end = now() + o->browse;
    }
    char cmd[1024];
    while (now() < end) {
        struct result res = {{0}, 0, 0, 0, 0};
        snprintf(cmd, sizeof cmd, "SELECT \"%s\"", o->mailbox);
        if (command(&c, cmd, &res) < 0)
            goto broken;
        res.status[0] == 'O' ? (*ok)++ : (*err)++;
        long exists = res.exists > 0 ? res.exists : 1;
        long lo = (long)(rand_r(&seed) % (unsigned)exists) + 1;
        long hi = lo + 99 > exists ? exists : lo + 99;
        snprintf(cmd, sizeof cmd,
                 "FETCH %ld:%ld (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
                 "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
                 "Content-Type Reply-To Received)])",
                 lo, hi);
        if (command(&c, cmd, &res) < 0)
            goto broken;
        res.status[0] == 'O' ? (*ok)++ : (*err)++;
        for (int j = 0; j < 3; j++) {
            long m = (long)(rand_r(&seed) % (unsigned)exists) + 1;
            snprintf(cmd, sizeof cmd, "FETCH %ld (UID RFC822.SIZE BODY.PEEK[])", m);
            if (command(&c, cmd, &res) < 0)
                goto broken;
            res.status[0] == 'O' ? (*ok)++ : (*err)++;
        }
        if (command(&c, "NOOP", &res) < 0)
            goto broken;
        res.status[0] == 'O' ? (*ok)++ : (*err)++;
    }
    struct result res;
    command(&c, "LOGOUT", &res);
    conn_close(&c);
    return;
broken:
    (*err)++;
    conn_close(&c);
}

static int run_fan(const struct opts *o, worker_fn fn, const char *mode)
{
    long ok, err;
    double c0 = cpu_self(), t0 = now();
    if (fan_out(o, fn, &ok, &err) < 0)
        return 1;
    double t = now() - t0;
    printf("RESULT mode=%s clients=%d wall=%.6f client_cpu=%.3f ok=%ld errors=%ld rate=%.2f\n", mode,
           o->clients, t, cpu_self() - c0, ok, err, (double)ok / t);
    return err ? 1 : 0;
}

static int run_hold(const struct opts *o)
{
    struct conn *cs = calloc((size_t)o->hold, sizeof *cs);
    if (!cs)
        return 1;
    long up = 0;
    for (long i = 0; i < o->hold; i++) {
        struct result sel;
        if (open_session(&cs[i], o, &sel) < 0)
            break;
        /* keep only the session state; drop our own buffer */
        up++;
    }
    printf("HELD %ld\n", up);
    fflush(stdout);
    struct timespec ts = {(time_t)o->hold_wait, 0};
    nanosleep(&ts, NULL);
    for (long i = 0; i < up; i++) {
        struct result res;
        command(&cs[i], "LOGOUT", &res);
        conn_close(&cs[i]);
    }
    free(cs);
    printf("RESULT mode=hold held=%ld wanted=%ld\n", up, o->hold);
    return up == o->hold ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: imapbench [-t] [-z] -h HOST -p PORT -u USER -P PASS [-m MAILBOX]\n"
            "                 (-e CMD ... | -n N | -b SECONDS | -H N [-w SECONDS]) [-k CLIENTS]\n"
            "                 [-S SOURCE-ADDRESS] [-T START-EPOCH]\n"
            "  -t TLS (implicit)  -z COMPRESS=DEFLATE after login\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.host = "127.0.0.1", .port = "143", .user = "test", .pass = "test",
                     .mailbox = "INBOX", .clients = 1, .hold_wait = 5, .seed = 1};
    int ch;
    while ((ch = getopt(argc, argv, "tzh:p:u:P:m:e:n:b:H:w:k:s:S:T:")) != -1) {
        switch (ch) {
        case 't': o.tls = true; break;
        case 'z': o.compress = true; break;
        case 'h': o.host = optarg; break;
        case 'p': o.port = optarg; break;
        case 'u': o.user = optarg; break;
        case 'P': o.pass = optarg; break;
        case 'm': o.mailbox = optarg; break;
        case 'e':
            if (o.ncmds == MAX_CMDS) {
                usage();
                return 2;
            }
            o.cmds[o.ncmds++] = optarg;
            break;
        case 'n': o.logins = atol(optarg); break;
        case 'b': o.browse = atof(optarg); break;
        case 'H': o.hold = atol(optarg); break;
        case 'w': o.hold_wait = atof(optarg); break;
        case 'k': o.clients = atoi(optarg); break;
        case 's': o.seed = (unsigned)atoi(optarg); break;
        case 'S': o.source = optarg; break;
        case 'T': o.start_at = atof(optarg); break;
        default: usage(); return 2;
        }
    }
    if (o.clients < 1 || o.clients > 1000) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o.tls) {
        g_ctx = SSL_CTX_new(TLS_client_method());
        if (!g_ctx)
            return 2;
        /* every login is a full handshake: no client-side session reuse */
        SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
    }
    if (o.ncmds > 0)
        return run_cmds(&o);
    if (o.logins > 0)
        return run_fan(&o, login_worker, "login");
    if (o.browse > 0)
        return run_fan(&o, browse_worker, "browse");
    if (o.hold > 0)
        return run_hold(&o);
    usage();
    return 2;
}
