/* outpipe.h — a writer thread behind two fixed output buffers, so the
 * connection child can build the next part of a long response while the
 * previous part is compressed, encrypted and sent (server/conn.c).
 *
 * One producer (the thread that calls everything below) and one writer
 * thread that calls the sink. The sink owns the transport (SSL object,
 * z_stream, socket) from the moment a buffer is handed over until
 * outpipe_drain() returns; the producer must not touch that transport in
 * between. Memory is bounded: two buffers of bufsize octets; the producer
 * blocks when both are in use. */
#ifndef COFFER_OUTPIPE_H
#define COFFER_OUTPIPE_H
#include <stdbool.h>
#include <stddef.h>

struct outpipe;

#define OUTPIPE_THREAD_NAME "coffer-writer"   /* the writer thread's comm */

/* Send n octets (n may be 0); flush: this ends a response piece the peer
 * should get now (e.g. a DEFLATE sync flush). Returns 0 or a negative
 * error, which becomes sticky and is returned by every later call. */
typedef int (*outpipe_sink_fn)(void *arg, const unsigned char *p, size_t n, bool flush);

/* Start the writer thread (with every signal blocked, so they keep going to
 * the producer). Returns 0, or -1 with errno set (then nothing exists). */
int outpipe_new(size_t bufsize, outpipe_sink_fn sink, void *arg, struct outpipe **out);
/* Append; hands a full buffer to the writer, waiting for the other one to
 * be free. Returns 0 or the writer's sticky error. */
int outpipe_write(struct outpipe *op, const void *p, size_t n);
/* Ask for everything so far to be sent soon: handed over now if the writer
 * is idle and the buffer is at least half full, else as soon as both hold
 * (checked at the next write), at the latest when the buffer fills or at
 * outpipe_drain(). Never waits. */
int outpipe_flush(struct outpipe *op);
/* Hand over what is left and wait until the writer has sent everything (or
 * failed). After it returns the producer owns the transport again. */
int outpipe_drain(struct outpipe *op);
/* Stop and join the writer (data not yet drained is dropped), free all. */
void outpipe_free(struct outpipe *op);

#endif
