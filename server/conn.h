/* conn.h — one client connection: socket, optional TLS (implicit or via
 * STARTTLS), optional COMPRESS=DEFLATE, with buffered line/literal reads
 * under deadlines and buffered writes. Owned by the connection child. */
#ifndef COFFER_CONN_H
#define COFFER_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "proto/buf.h"

struct conn;

#define CONN_OK        0
#define CONN_EOF      (-1)   /* peer closed */
#define CONN_ETIMEOUT (-2)   /* deadline passed */
#define CONN_ETOOLONG (-3)   /* line longer than max */
#define CONN_EIO      (-4)   /* socket/TLS/zlib error */
#define CONN_EINTR    (-5)   /* the interrupt flag (conn_set_interrupt) was set */

/* Read one line (without its CRLF or bare LF) into out (reset first).
 * Fails with CONN_ETOOLONG once max octets were read without a line end
 * (the rest of that line is then discarded by the next call). The deadline
 * is for the whole line, so a client dripping bytes cannot hold it. */
int conn_read_line(struct conn *c, struct buf *out, size_t max, int timeout_ms);
/* Read exactly n octets (a literal) and append them to out (or drop them
 * when out is NULL). */
int conn_read_exact(struct conn *c, struct buf *out, uint64_t n, int timeout_ms);
/* Wait until input is available: 1 readable, 0 timeout, <0 error/EOF. */
int conn_wait_readable(struct conn *c, int timeout_ms);

/* Buffered output; conn_flush() sends it (with a send deadline). */
int conn_write(struct conn *c, const void *p, size_t n);
int conn_puts(struct conn *c, const char *s);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conn_flush(struct conn *c);

bool conn_tls_active(const struct conn *c);
bool conn_tls_implicit(const struct conn *c);   /* port 993 */
/* STARTTLS: handshake now; any plaintext already buffered from the client
 * is discarded first (CVE-2011-0411). */
int conn_starttls(struct conn *c, const char **err);
/* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" without TLS. */
const char *conn_tls_desc(const struct conn *c);
int conn_compress(struct conn *c, const char **err);
bool conn_compress_active(const struct conn *c);

const char *conn_peer_ip(const struct conn *c);
const char *conn_peer_desc(const struct conn *c);   /* "ip:port" or "ip" */
uint64_t conn_bytes_in(const struct conn *c);
uint64_t conn_bytes_out(const struct conn *c);

/* ---- daemon side (server/cofferd.c, tests) ---- */
struct ssl_ctx_st;
/* Wrap a connected socket (rfd == wfd) or an inetd pair. tls_ctx may be
 * NULL: then STARTTLS is not available. peer may be NULL. The fds are
 * switched to non-blocking and closed by conn_free(). */
int conn_new(int rfd, int wfd, struct ssl_ctx_st *tls_ctx, const char *peer_ip,
             const char *peer_desc, struct conn **out);
void conn_free(struct conn *c);
/* Implicit TLS (port 993): handshake before anything else is read. */
int conn_tls_accept(struct conn *c, int timeout_ms, const char **err);
/* Whether STARTTLS can be offered (a TLS context exists, TLS not active). */
bool conn_tls_available(const struct conn *c);
/* Blocking reads/waits return CONN_EINTR once *flag is non-zero (SIGTERM). */
void conn_set_interrupt(struct conn *c, volatile int *flag);
/* Deadline for a whole conn_flush(); default 60 s. */
void conn_set_write_timeout(struct conn *c, int timeout_ms);
/* Hand the TLS server name (SNI) the client asked for, or NULL. */
const char *conn_tls_sni(const struct conn *c);
/* A writer thread for long responses: output beyond 64 KiB of one
 * response is then compressed, encrypted and sent by a second thread
 * while the caller builds the rest (bounded: 2 x 256 KiB; the thread and
 * buffers exist only until the caller next reads or waits). ON: for every
 * long response; AUTO: only while the 1-minute load average is below the
 * number of CPUs (on a saturated machine a second thread only adds CPU). Enable it
 * only once the process is fully confined (after setuid, chroot and the
 * last Landlock step): a thread keeps the confinement it was created
 * with. If the thread cannot be created, output stays synchronous.
 * Default OFF. With a thread, conn_flush() hands the data over and
 * returns; a send error is returned by a later conn_write/conn_flush or
 * by the next read or wait. */
#define CONN_OUTPUT_THREAD_OFF  0
#define CONN_OUTPUT_THREAD_ON   1
#define CONN_OUTPUT_THREAD_AUTO 2
void conn_set_output_thread(struct conn *c, int mode);

#endif
