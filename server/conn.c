/* conn.c — client connection: plain socket or TLS, optional DEFLATE on top,
 * with small fixed buffers so an idle connection costs little memory.
 *
 * Long responses after login go through a writer thread (server/outpipe.c):
 * the session builds the next 64-256 KiB while the previous part is
 * compressed, encrypted and sent, as Dovecot's separate login proxy does for
 * its TLS. Rule for the shared transport (SSL object, z_stream, socket
 * writes): while a pipe exists, only the writer thread writes; every other
 * transport use (reads, waits, STARTTLS, COMPRESS, byte counters, close)
 * first calls out_settle(), which drains the pipe and joins the thread. So
 * SSL is used by one thread at a time without a lock, TLS 1.3
 * post-handshake messages read by SSL_read are answered by the next
 * SSL_write as before, and output order is the order of conn_write calls. */
#include "server/conn.h"
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "server/log.h"
#include "server/outpipe.h"

#define RBUF_SIZE 16384
#define WBUF_SIZE 16384
#define ZOUT_SIZE 16384
/* Each of the writer thread's two buffers. */
#define PIPE_BUF_SIZE (256u << 10)
/* A response gets the writer thread once this much of it was written
 * (smaller ones are sent as before: a thread start costs ~20 us). */
#define PIPE_MIN (64u << 10)

struct conn {
    int rfd, wfd;
    SSL_CTX *ctx;
    SSL *ssl;
    bool implicit;
    bool z;
    bool zpend;              /* inflate may hold output without new input */
    z_stream zi, zo;
    unsigned char *zin;      /* compressed input, allocated with COMPRESS */
    size_t zin_pos, zin_len;
    unsigned char *zout;
    unsigned char rbuf[RBUF_SIZE];   /* decoded input */
    size_t rpos, rlen;
    unsigned char wbuf[WBUF_SIZE];   /* pending output before compression */
    size_t wlen;
    bool discard;            /* dropping the rest of an overlong line */
    int werr;                /* sticky write error */
    volatile int *intr;
    int wtimeout;
    int pipe_mode;           /* CONN_OUTPUT_THREAD_*; set once fully confined */
    bool pipe_skip;          /* AUTO said no for this response */
    bool relbuf;             /* SSL_MODE_RELEASE_BUFFERS to restore after it */
    struct outpipe *pipe;    /* the writer thread, while output is long */
    uint64_t burst;          /* output since the client was last waited for */
    uint64_t in, out;        /* plaintext transport bytes before TLS */
    char ip[64], desc[96], tlsdesc[128], sni[256];
};

static int out_settle(struct conn *c);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Wait for fd readiness until the deadline (-1 = forever). Writes pass
 * intr = false: they ignore the interrupt flag so a final BYE still goes
 * out (and the writer thread never reads c->intr). */
static int wait_fd(struct conn *c, int fd, short ev, int64_t deadline, bool intr)
{
    for (;;) {
        if (intr && c->intr && *c->intr)
            return CONN_EINTR;
        int t = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return CONN_ETIMEOUT;
            t = left > 3600000 ? 3600000 : (int)left;
        }
        struct pollfd p = { .fd = fd, .events = ev };
        int r = poll(&p, 1, t);
        if (r > 0)
            return 0;
        if (r == 0)
            continue;   /* re-check the deadline */
        if (errno != EINTR)
            return CONN_EIO;
    }
}

static int ssl_wait(struct conn *c, int ret, int64_t deadline, bool intr)
{
    int e = SSL_get_error(c->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(c, c->rfd, POLLIN, deadline, intr);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(c, c->wfd, POLLOUT, deadline, intr);
    case SSL_ERROR_ZERO_RETURN:
        return CONN_EOF;
    case SSL_ERROR_SYSCALL:
        if (errno == EINTR && !(intr && c->intr && *c->intr))
            return 0;
        return ERR_peek_error() == 0 ? CONN_EOF : CONN_EIO;
    default:
        return CONN_EIO;
    }
}

static int transport_read(struct conn *c, unsigned char *p, size_t n, int64_t deadline)
{
    for (;;) {
        if (c->intr && *c->intr)
            return CONN_EINTR;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (r > 0)
                return r;
            int w = ssl_wait(c, r, deadline, true);
            if (w < 0)
                return w;
            continue;
        }
        ssize_t r = read(c->rfd, p, n);
        if (r > 0) {
            c->in += (uint64_t)r;
            return (int)r;
        }
        if (r == 0)
            return CONN_EOF;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return CONN_EIO;
        int w = wait_fd(c, c->rfd, POLLIN, deadline, true);
        if (w < 0)
            return w;
    }
}

/* Writes ignore the interrupt flag: a final BYE must still go out. */
static int transport_write(struct conn *c, const unsigned char *p, size_t n, int64_t deadline)
{
    while (n) {
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (r > 0) {
                p += r;
                n -= (size_t)r;
                continue;
            }
            int w = ssl_wait(c, r, deadline, false);
            if (w < 0)
                return w;
            continue;
        }
        ssize_t r = write(c->wfd, p, n);
        if (r > 0) {
            c->out += (uint64_t)r;
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return CONN_EIO;
        int w = wait_fd(c, c->wfd, POLLOUT, deadline, false);
        if (w < 0)
            return w;
    }
    return CONN_OK;
}

/* Refill rbuf with at least one decoded octet. */
static int fill(struct conn *c, int64_t deadline)
{
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == RBUF_SIZE)
        return CONN_OK;
    if (!c->z) {
        int r = transport_read(c, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, deadline);
        if (r < 0)
            return r;
        c->rlen += (size_t)r;
        return CONN_OK;
    }
    for (;;) {
        if (c->zin_pos == c->zin_len && !c->zpend) {
            int r = transport_read(c, c->zin, RBUF_SIZE, deadline);
            if (r < 0)
                return r;
            c->zin_pos = 0;
            c->zin_len = (size_t)r;
        }
        c->zi.next_in = c->zin + c->zin_pos;
        c->zi.avail_in = (uInt)(c->zin_len - c->zin_pos);
        c->zi.next_out = c->rbuf + c->rlen;
        c->zi.avail_out = (uInt)(RBUF_SIZE - c->rlen);
        int zr = inflate(&c->zi, Z_SYNC_FLUSH);
        size_t produced = (RBUF_SIZE - c->rlen) - c->zi.avail_out;
        c->zin_pos = c->zin_len - c->zi.avail_in;
        c->rlen += produced;
        c->zpend = c->zi.avail_out == 0;
        if (zr == Z_STREAM_END)
            return produced ? CONN_OK : CONN_EOF;
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return CONN_EIO;
        if (produced)
            return CONN_OK;
        c->zpend = false;
    }
}

int conn_read_line(struct conn *c, struct buf *out, size_t max, int timeout_ms)
{
    buf_reset(out);
    if (c->pipe && out_settle(c) < 0)
        return c->werr;
    c->burst = 0;
    c->pipe_skip = false;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        if (c->rpos == c->rlen) {
            int rc = fill(c, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        unsigned char *s = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        unsigned char *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) + 1 : avail;
        if (c->discard) {
            c->rpos += take;
            if (nl)
                c->discard = false;
            continue;
        }
        size_t content = nl ? take - 1 : take;
        /* One octet of slack for the CR of a line exactly max long. */
        if (out->len + content > max + 1) {
            c->rpos += take;
            c->discard = nl == NULL;
            return CONN_ETOOLONG;
        }
        if (buf_append(out, s, content) != 0) {
            c->rpos += take;
            c->discard = nl == NULL;
            return CONN_ETOOLONG;
        }
        c->rpos += take;
        if (nl) {
            if (out->len && out->data[out->len - 1] == '\r')
                out->len--;
            if (out->len > max)
                return CONN_ETOOLONG;
            buf_cstr(out);
            return CONN_OK;
        }
    }
}

int conn_read_exact(struct conn *c, struct buf *out, uint64_t n, int timeout_ms)
{
    if (c->pipe && out_settle(c) < 0)
        return c->werr;
    int64_t deadline = deadline_of(timeout_ms);
    while (n) {
        if (c->rpos == c->rlen) {
            int rc = fill(c, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t avail = c->rlen - c->rpos;
        size_t take = n < avail ? (size_t)n : avail;
        if (out && buf_append(out, c->rbuf + c->rpos, take) != 0)
            return CONN_ETOOLONG;
        c->rpos += take;
        n -= take;
    }
    return CONN_OK;
}

int conn_wait_readable(struct conn *c, int timeout_ms)
{
    if (c->pipe && out_settle(c) < 0)
        return c->werr;
    c->burst = 0;
    c->pipe_skip = false;
    if (c->rpos < c->rlen)
        return 1;
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return 1;
    if (c->z && (c->zin_pos < c->zin_len || c->zpend))
        return 1;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        if (c->intr && *c->intr)
            return CONN_EINTR;
        int t = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            t = left <= 0 ? 0 : (left > 3600000 ? 3600000 : (int)left);
        }
        struct pollfd p = { .fd = c->rfd, .events = POLLIN };
        int r = poll(&p, 1, t);
        if (r > 0)
            return 1;
        if (r == 0) {
            if (deadline >= 0 && now_ms() >= deadline)
                return 0;
            continue;
        }
        if (errno != EINTR)
            return CONN_EIO;
    }
}

/* Output below the buffer: compress when active, then send. */
static int out_raw(struct conn *c, const unsigned char *p, size_t n, int flush)
{
    int64_t deadline = deadline_of(c->wtimeout);
    if (!c->z)
        return n ? transport_write(c, p, n, deadline) : CONN_OK;
    c->zo.next_in = (unsigned char *)p;
    c->zo.avail_in = (uInt)n;
    for (;;) {
        c->zo.next_out = c->zout;
        c->zo.avail_out = ZOUT_SIZE;
        int zr = deflate(&c->zo, flush);
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return CONN_EIO;
        size_t have = ZOUT_SIZE - c->zo.avail_out;
        if (have) {
            int rc = transport_write(c, c->zout, have, deadline);
            if (rc < 0)
                return rc;
        }
        if (c->zo.avail_in == 0 && c->zo.avail_out != 0)
            return CONN_OK;
    }
}

/* The writer thread's sink: what out_raw does for the synchronous path. */
static int pipe_sink(void *arg, const unsigned char *p, size_t n, bool flush)
{
    struct conn *c = arg;
    return out_raw(c, p, n, flush && c->z ? Z_SYNC_FLUSH : Z_NO_FLUSH);
}

/* Start the writer thread for a long response; false: stay synchronous
 * (the thread could not be created; not tried again on this connection). */
/* AUTO: is there a CPU for the writer? The 1-minute load average from
 * sysinfo() (there is no /proc in the chroot) against the CPUs this
 * process may run on. */
static bool spare_cpu(void)
{
    struct sysinfo si;
    cpu_set_t set;
    if (sysinfo(&si) != 0 || sched_getaffinity(0, sizeof set, &set) != 0)
        return false;
    double load = (double)si.loads[0] / (double)(1u << SI_LOAD_SHIFT);
    return load < (double)CPU_COUNT(&set);
}

static bool pipe_wanted(struct conn *c)
{
    if (c->pipe_mode == CONN_OUTPUT_THREAD_ON)
        return true;
    if (c->pipe_mode != CONN_OUTPUT_THREAD_AUTO || c->pipe_skip)
        return false;
    c->pipe_skip = !spare_cpu();   /* asked once per response */
    return !c->pipe_skip;
}

static bool pipe_start(struct conn *c)
{
    /* Keep OpenSSL's write buffer while the thread runs: released after
     * every SSL_write, it was allocated and freed in the thread's own
     * malloc arena, which glibc trims with one madvise per 16 KiB record. */
    c->relbuf = c->ssl && (SSL_get_mode(c->ssl) & SSL_MODE_RELEASE_BUFFERS);
    if (c->relbuf)
        SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (outpipe_new(PIPE_BUF_SIZE, pipe_sink, c, &c->pipe) == 0) {
        /* Corked, the kernel sends full segments instead of one per 16 KiB
         * TLS record (accepted sockets have TCP_NODELAY); out_settle()
         * uncorks, which sends the rest at once. The session never waits
         * for the client without settling first, so nothing sits corked
         * while the client waits for it. Not a TCP socket (inetd pipe):
         * harmless failure. */
        int one = 1;
        (void)setsockopt(c->wfd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        return true;
    }
    if (c->relbuf)
        SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    log_err("output thread unavailable, sending synchronously: %s", strerror(errno));
    c->pipe_mode = CONN_OUTPUT_THREAD_OFF;
    c->pipe = NULL;
    return false;
}

/* Before any other use of the transport: wait until the writer thread has
 * sent everything, then end it (an idle session keeps no thread or buffer).
 * Returns the writer's error, if any (then also sticky in werr). */
static int out_settle(struct conn *c)
{
    c->burst = 0;
    c->pipe_skip = false;
    if (!c->pipe)
        return CONN_OK;
    int rc = outpipe_drain(c->pipe);
    outpipe_free(c->pipe);
    c->pipe = NULL;
    int zero = 0;
    (void)setsockopt(c->wfd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    if (c->relbuf) {
        SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
        SSL_free_buffers(c->ssl);   /* the idle session keeps none */
    }
    if (rc < 0 && !c->werr)
        c->werr = rc;
    return rc < 0 ? rc : CONN_OK;
}

static int pipe_result(struct conn *c, int rc)
{
    if (rc < 0)
        c->werr = rc;
    return rc < 0 ? rc : CONN_OK;
}

int conn_write(struct conn *c, const void *p, size_t n)
{
    if (c->werr)
        return c->werr;
    if (c->pipe)
        return pipe_result(c, outpipe_write(c->pipe, p, n));
    if (c->wlen + n <= WBUF_SIZE) {
        memcpy(c->wbuf + c->wlen, p, n);
        c->wlen += n;
        return CONN_OK;
    }
    c->burst += c->wlen;
    if (c->pipe_mode && c->burst + n >= PIPE_MIN && pipe_wanted(c) && pipe_start(c)) {
        int rc = outpipe_write(c->pipe, c->wbuf, c->wlen);
        c->wlen = 0;
        if (rc == 0)
            rc = outpipe_write(c->pipe, p, n);
        return pipe_result(c, rc);
    }
    int rc = out_raw(c, c->wbuf, c->wlen, Z_NO_FLUSH);
    c->wlen = 0;
    if (rc == CONN_OK) {
        if (n >= WBUF_SIZE / 2) {
            c->burst += n;
            rc = out_raw(c, p, n, Z_NO_FLUSH);
        } else {
            memcpy(c->wbuf, p, n);
            c->wlen = n;
        }
    }
    if (rc < 0)
        c->werr = rc;
    return rc;
}

int conn_puts(struct conn *c, const char *s)
{
    return conn_write(c, s, strlen(s));
}

int conn_printf(struct conn *c, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CONN_EIO;
    if ((size_t)n < sizeof tmp)
        return conn_write(c, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return CONN_EIO;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = conn_write(c, big, (size_t)n);
    free(big);
    return rc;
}

int conn_flush(struct conn *c)
{
    if (c->werr)
        return c->werr;
    /* With the writer thread this only hands the data over; a send error
     * comes back from a later write, flush or read. */
    if (c->pipe)
        return pipe_result(c, outpipe_flush(c->pipe));
    c->burst += c->wlen;
    int rc = out_raw(c, c->wbuf, c->wlen, c->z ? Z_SYNC_FLUSH : Z_NO_FLUSH);
    c->wlen = 0;
    if (rc < 0)
        c->werr = rc;
    return rc;
}

bool conn_tls_active(const struct conn *c)
{
    return c->ssl != NULL;
}

bool conn_tls_implicit(const struct conn *c)
{
    return c->implicit;
}

bool conn_tls_available(const struct conn *c)
{
    return c->ctx != NULL && c->ssl == NULL;
}

static int handshake(struct conn *c, int timeout_ms, const char **err)
{
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl) {
        *err = "TLS unavailable";
        return CONN_EIO;
    }
    if (c->rfd == c->wfd)
        SSL_set_fd(c->ssl, c->rfd);
    else {
        SSL_set_rfd(c->ssl, c->rfd);
        SSL_set_wfd(c->ssl, c->wfd);
    }
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        ERR_clear_error();
        int r = SSL_accept(c->ssl);
        if (r == 1)
            break;
        int w = ssl_wait(c, r, deadline, true);
        if (w < 0) {
            static char msg[256];
            unsigned long e = ERR_peek_error();
            if (w == CONN_ETIMEOUT)
                *err = "TLS handshake timed out";
            else if (e) {
                ERR_error_string_n(e, msg, sizeof msg);
                *err = msg;
            } else
                *err = "TLS handshake failed (connection closed)";
            SSL_free(c->ssl);
            c->ssl = NULL;
            return w == CONN_ETIMEOUT ? w : CONN_EIO;
        }
    }
    snprintf(c->tlsdesc, sizeof c->tlsdesc, "%s %s", SSL_get_version(c->ssl),
             SSL_get_cipher_name(c->ssl));
    const char *sn = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(c->sni, sizeof c->sni, "%s", sn ? sn : "");
    return CONN_OK;
}

int conn_tls_accept(struct conn *c, int timeout_ms, const char **err)
{
    *err = NULL;
    if (!c->ctx || c->ssl) {
        *err = "TLS not available";
        return CONN_EIO;
    }
    c->implicit = true;
    return handshake(c, timeout_ms, err);
}

int conn_starttls(struct conn *c, const char **err)
{
    *err = NULL;
    if (!c->ctx || c->ssl) {
        *err = c->ssl ? "TLS already active" : "TLS not available";
        return CONN_EIO;
    }
    if (c->z) {
        *err = "COMPRESS is active";
        return CONN_EIO;
    }
    int rc = conn_flush(c);
    if (rc == CONN_OK)
        rc = out_settle(c);
    if (rc < 0) {
        *err = "write failed";
        return rc;
    }
    /* Whatever plaintext the client sent after STARTTLS must never be read
     * as if it had come through TLS. */
    c->rpos = c->rlen = 0;
    c->discard = false;
    return handshake(c, c->wtimeout, err);
}

const char *conn_tls_desc(const struct conn *c)
{
    return c->ssl ? c->tlsdesc : "";
}

const char *conn_tls_sni(const struct conn *c)
{
    return c->ssl && c->sni[0] ? c->sni : NULL;
}

int conn_compress(struct conn *c, const char **err)
{
    *err = NULL;
    if (c->z) {
        *err = "DEFLATE already active";
        return CONN_EIO;
    }
    int rc = conn_flush(c);
    if (rc == CONN_OK)
        rc = out_settle(c);
    if (rc < 0) {
        *err = "write failed";
        return rc;
    }
    c->zin = malloc(RBUF_SIZE);
    c->zout = malloc(ZOUT_SIZE);
    if (!c->zin || !c->zout) {
        free(c->zin);
        free(c->zout);
        c->zin = c->zout = NULL;
        *err = "out of memory";
        return CONN_EIO;
    }
    memset(&c->zi, 0, sizeof c->zi);
    memset(&c->zo, 0, sizeof c->zo);
    /* Raw DEFLATE (RFC 4978); memLevel 6 keeps an idle connection small. */
    if (inflateInit2(&c->zi, -15) != Z_OK) {
        *err = "zlib init failed";
        return CONN_EIO;
    }
    if (deflateInit2(&c->zo, 5, Z_DEFLATED, -15, 6, Z_DEFAULT_STRATEGY) != Z_OK) {
        inflateEnd(&c->zi);
        *err = "zlib init failed";
        return CONN_EIO;
    }
    /* Octets already read past the COMPRESS command are compressed data. */
    size_t left = c->rlen - c->rpos;
    memcpy(c->zin, c->rbuf + c->rpos, left);
    c->zin_pos = 0;
    c->zin_len = left;
    c->rpos = c->rlen = 0;
    c->z = true;
    return CONN_OK;
}

bool conn_compress_active(const struct conn *c)
{
    return c->z;
}

const char *conn_peer_ip(const struct conn *c)
{
    return c->ip;
}

const char *conn_peer_desc(const struct conn *c)
{
    return c->desc;
}

/* The counters live in the SSL BIOs, which the writer thread may be using:
 * settle first (the object is never const to its owner, so the cast is
 * defined). */
uint64_t conn_bytes_in(const struct conn *c)
{
    out_settle((struct conn *)c);
    return c->in + (c->ssl ? BIO_number_read(SSL_get_rbio(c->ssl)) : 0);
}

uint64_t conn_bytes_out(const struct conn *c)
{
    out_settle((struct conn *)c);
    return c->out + (c->ssl ? BIO_number_written(SSL_get_wbio(c->ssl)) : 0);
}

int conn_new(int rfd, int wfd, struct ssl_ctx_st *tls_ctx, const char *peer_ip,
             const char *peer_desc, struct conn **out)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return CONN_EIO;
    c->rfd = rfd;
    c->wfd = wfd;
    c->ctx = tls_ctx;
    c->wtimeout = 60000;
    snprintf(c->ip, sizeof c->ip, "%s", peer_ip ? peer_ip : "");
    snprintf(c->desc, sizeof c->desc, "%s", peer_desc ? peer_desc : c->ip);
    int fl = fcntl(rfd, F_GETFL);
    if (fl >= 0)
        fcntl(rfd, F_SETFL, fl | O_NONBLOCK);
    if (wfd != rfd && (fl = fcntl(wfd, F_GETFL)) >= 0)
        fcntl(wfd, F_SETFL, fl | O_NONBLOCK);
    *out = c;
    return CONN_OK;
}

/* Closing a socket that still has unread client input makes the kernel
 * send RST, and the client may then lose our last response (the BYE that
 * explains why we close). So: stop sending, then read and drop input for
 * a short, bounded time until the client closes too. */
static void linger_close_input(int wfd, int rfd)
{
    if (shutdown(wfd, SHUT_WR) != 0)
        return;   /* not a socket (inetd pipe) or already gone */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char scratch[4096];
    size_t dropped = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if (ms >= 500 || dropped > (256u << 10))
            return;
        struct pollfd p = {.fd = rfd, .events = POLLIN};
        if (poll(&p, 1, (int)(500 - ms)) <= 0)
            return;
        ssize_t n = read(rfd, scratch, sizeof scratch);
        if (n <= 0)
            return;
        dropped += (size_t)n;
    }
}

void conn_free(struct conn *c)
{
    if (!c)
        return;
    if (!c->werr && c->wlen)
        conn_flush(c);
    out_settle(c);
    if (c->ssl) {
        SSL_shutdown(c->ssl);   /* best effort, non-blocking */
        SSL_free(c->ssl);
    }
    if (c->z) {
        inflateEnd(&c->zi);
        deflateEnd(&c->zo);
    }
    free(c->zin);
    free(c->zout);
    linger_close_input(c->wfd, c->rfd);
    close(c->rfd);
    if (c->wfd != c->rfd)
        close(c->wfd);
    free(c);
}

void conn_set_interrupt(struct conn *c, volatile int *flag)
{
    c->intr = flag;
}

void conn_set_write_timeout(struct conn *c, int timeout_ms)
{
    out_settle(c);   /* the writer thread reads wtimeout */
    c->wtimeout = timeout_ms;
}

void conn_set_output_thread(struct conn *c, int mode)
{
    out_settle(c);
    c->pipe_mode = mode;
}
