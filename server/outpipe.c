/* outpipe.c — double-buffered writer thread (see outpipe.h).
 *
 * Hand-off protocol: the producer fills buf[fill] without a lock. A full
 * buffer is queued (one slot) even while the writer is still sending the
 * other one, so the writer goes straight on to it without waiting for the
 * producer to be scheduled; the producer then waits only for a buffer to
 * fill, i.e. while both are full. It never touches a queued or written
 * buffer, and the mutex orders every transport access of the writer before
 * the producer's next one (drain). */
#include "server/outpipe.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The writer runs deflate and OpenSSL's record layer: a few KiB of stack. */
#define WRITER_STACK (256u << 10)

struct outpipe {
    outpipe_sink_fn sink;
    void *arg;
    size_t cap;
    unsigned char *buf[2];
    size_t len[2];
    bool flush_of[2];        /* the writer flushes after this buffer */
    int fill;                /* producer: the buffer being filled */
    bool want_flush;         /* producer: a flush was asked for buf[fill] */
    bool unflushed;          /* producer: handed over data not flushed yet */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    atomic_int queued;       /* buffer handed over, not taken yet, or -1 */
    atomic_int writing;      /* buffer the writer is sending, or -1 */
    int err;                 /* sticky sink error (under mu) */
    bool quit;               /* under mu */
};

static void *writer_main(void *arg)
{
    struct outpipe *op = arg;
    /* Visible in ps -L and /proc/PID/task/TID/comm (tests look for it). */
    pthread_setname_np(pthread_self(), OUTPIPE_THREAD_NAME);
    pthread_mutex_lock(&op->mu);
    for (;;) {
        while (atomic_load(&op->queued) < 0 && !op->quit)
            pthread_cond_wait(&op->cv_work, &op->mu);
        int i = atomic_load(&op->queued);
        if (i < 0)
            break;   /* quit with nothing left */
        atomic_store(&op->queued, -1);
        atomic_store(&op->writing, i);
        pthread_cond_signal(&op->cv_done);   /* the queue slot is free */
        int err = op->err;
        pthread_mutex_unlock(&op->mu);
        /* After a failure the rest is dropped: the producer learns of the
         * error at its next call and ends the session. */
        int rc = err ? err : op->sink(op->arg, op->buf[i], op->len[i], op->flush_of[i]);
        pthread_mutex_lock(&op->mu);
        if (rc < 0 && op->err == 0)
            op->err = rc;
        atomic_store(&op->writing, -1);
        pthread_cond_signal(&op->cv_done);
    }
    pthread_mutex_unlock(&op->mu);
    return NULL;
}

int outpipe_new(size_t bufsize, outpipe_sink_fn sink, void *arg, struct outpipe **out)
{
    *out = NULL;
    struct outpipe *op = calloc(1, sizeof *op);
    if (!op)
        return -1;
    op->sink = sink;
    op->arg = arg;
    op->cap = bufsize;
    atomic_init(&op->queued, -1);
    atomic_init(&op->writing, -1);
    /* mmap, not malloc: the buffers go back to the kernel at outpipe_free
     * whatever malloc's trim and mmap thresholds are, so an idle session
     * keeps none of it. */
    for (int i = 0; i < 2; i++) {
        op->buf[i] = mmap(NULL, bufsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        if (op->buf[i] == MAP_FAILED) {
            op->buf[i] = NULL;
            goto fail;
        }
    }
    if (pthread_mutex_init(&op->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&op->cv_work, NULL) != 0) {
        pthread_mutex_destroy(&op->mu);
        goto fail;
    }
    if (pthread_cond_init(&op->cv_done, NULL) != 0) {
        pthread_cond_destroy(&op->cv_work);
        pthread_mutex_destroy(&op->mu);
        goto fail;
    }
    pthread_attr_t at;
    int e = pthread_attr_init(&at);
    if (e == 0) {
        pthread_attr_setstacksize(&at, WRITER_STACK);
        /* SIGTERM must reach the producer, which polls the client and
         * checks the shutdown flag; the writer never waits on a signal. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        e = pthread_create(&op->th, &at, writer_main, op);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&at);
    }
    if (e != 0) {
        pthread_cond_destroy(&op->cv_done);
        pthread_cond_destroy(&op->cv_work);
        pthread_mutex_destroy(&op->mu);
        errno = e;
        goto fail;
    }
    *out = op;
    return 0;
fail:
    e = errno;
    for (int i = 0; i < 2; i++)
        if (op->buf[i])
            munmap(op->buf[i], bufsize);
    free(op);
    errno = e;
    return -1;
}

/* The writer has nothing queued and nothing in hand. */
static bool writer_idle(struct outpipe *op)
{
    return atomic_load_explicit(&op->queued, memory_order_relaxed) < 0 &&
           atomic_load_explicit(&op->writing, memory_order_relaxed) < 0;
}

/* Queue buf[fill] for the writer and continue in the other buffer once the
 * writer is done with it. */
static int hand_over(struct outpipe *op, bool flush)
{
    int f = op->fill;
    pthread_mutex_lock(&op->mu);
    /* With two buffers the slot is busy only with the other one, so this
     * wait and the next are the same condition: both buffers full. */
    while (atomic_load(&op->queued) >= 0 && op->err == 0)
        pthread_cond_wait(&op->cv_done, &op->mu);
    int err = op->err;
    if (err == 0) {
        op->flush_of[f] = flush;
        atomic_store(&op->queued, f);
        pthread_cond_signal(&op->cv_work);
        while (atomic_load(&op->writing) == (f ^ 1) && op->err == 0)
            pthread_cond_wait(&op->cv_done, &op->mu);
        err = op->err;
    }
    pthread_mutex_unlock(&op->mu);
    if (err)
        return err;
    op->unflushed = !flush;
    op->want_flush = false;
    op->fill ^= 1;
    op->len[op->fill] = 0;
    return 0;
}

int outpipe_write(struct outpipe *op, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n) {
        size_t room = op->cap - op->len[op->fill];
        if (room == 0) {
            int rc = hand_over(op, op->want_flush);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t take = n < room ? n : room;
        memcpy(op->buf[op->fill] + op->len[op->fill], s, take);
        op->len[op->fill] += take;
        s += take;
        n -= take;
    }
    /* A deferred flush goes out once the writer is idle and the piece is
     * worth a hand-over, so the writer does not wait for a full buffer. */
    if (op->want_flush && op->len[op->fill] >= op->cap / 2 && writer_idle(op))
        return hand_over(op, true);
    return 0;
}

int outpipe_flush(struct outpipe *op)
{
    pthread_mutex_lock(&op->mu);
    int err = op->err;
    pthread_mutex_unlock(&op->mu);
    if (err || (op->len[op->fill] == 0 && !op->unflushed))
        return err;
    op->want_flush = true;
    /* Small pieces wait: every hand-over costs two futex wake-ups, a
     * cross-CPU interrupt in a VM, and the producer never waits for the
     * client without outpipe_drain(), which sends everything. */
    if (op->len[op->fill] >= op->cap / 2 && writer_idle(op))
        return hand_over(op, true);
    return 0;
}

int outpipe_drain(struct outpipe *op)
{
    if (op->len[op->fill] > 0 || op->unflushed) {
        int rc = hand_over(op, true);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&op->mu);
    while ((atomic_load(&op->queued) >= 0 || atomic_load(&op->writing) >= 0) &&
           op->err == 0)
        pthread_cond_wait(&op->cv_done, &op->mu);
    int err = op->err;
    pthread_mutex_unlock(&op->mu);
    return err;
}

void outpipe_free(struct outpipe *op)
{
    if (!op)
        return;
    pthread_mutex_lock(&op->mu);
    op->quit = true;
    pthread_cond_signal(&op->cv_work);
    pthread_mutex_unlock(&op->mu);
    pthread_join(op->th, NULL);
    pthread_cond_destroy(&op->cv_done);
    pthread_cond_destroy(&op->cv_work);
    pthread_mutex_destroy(&op->mu);
    for (int i = 0; i < 2; i++)
        munmap(op->buf[i], op->cap);
    free(op);
}
