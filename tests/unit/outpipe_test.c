/* outpipe_test.c — the writer thread behind two buffers: order and content
 * kept over many hand-overs, flush semantics, bounded memory (the producer
 * blocks while both buffers are in use), sticky errors from the writer. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/confine.h"
#include "server/outpipe.h"
#include "unit_main.h"

#define CAP 4096

struct sink {
    unsigned char *got;
    size_t len, size;
    atomic_size_t seen;        /* octets the sink has taken */
    unsigned calls, flushes;
    bool last_flush;
    size_t fail_after;         /* return an error once this much was taken */
    int gate[2];               /* when open: each call first reads one byte */
    bool gated;
};

static int sink_fn(void *arg, const unsigned char *p, size_t n, bool flush)
{
    struct sink *s = arg;
    if (s->gated) {
        char b;
        if (read(s->gate[0], &b, 1) != 1)
            return -4;
    }
    if (s->fail_after && s->len + n > s->fail_after)
        return -4;
    if (s->len + n > s->size) {
        s->size = (s->len + n) * 2;
        s->got = realloc(s->got, s->size);
    }
    memcpy(s->got + s->len, p, n);
    s->len += n;
    s->calls++;
    s->flushes += flush;
    s->last_flush = flush;
    atomic_store(&s->seen, s->len);
    return 0;
}

static void sink_init(struct sink *s)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->seen, 0);
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 2654435761u >> 13);
}

START_TEST(t_order_and_content)
{
    struct sink s;
    sink_init(&s);
    struct outpipe *op;
    ck_assert_int_eq(outpipe_new(CAP, sink_fn, &s, &op), 0);
    unsigned char piece[3 * CAP];
    size_t total = 0;
    unsigned seed = 7;
    while (total < 600000) {
        size_t n = (size_t)(rand_r(&seed) % (3 * CAP)) + (rand_r(&seed) % 8 == 0 ? 0 : 1);
        for (size_t i = 0; i < n; i++)
            piece[i] = pattern(total + i);
        ck_assert_int_eq(outpipe_write(op, piece, n), 0);
        total += n;
        if (rand_r(&seed) % 5 == 0)
            ck_assert_int_eq(outpipe_flush(op), 0);
    }
    ck_assert_int_eq(outpipe_drain(op), 0);
    ck_assert_uint_eq(s.len, total);
    for (size_t i = 0; i < total; i++)
        if (s.got[i] != pattern(i))
            ck_abort_msg("octet %zu differs", i);
    ck_assert(s.last_flush);           /* drain ends with a flush */
    ck_assert_uint_gt(s.calls, total / CAP - 1);
    /* after a drain the pipe is reusable */
    ck_assert_int_eq(outpipe_write(op, "tail", 4), 0);
    ck_assert_int_eq(outpipe_drain(op), 0);
    ck_assert_uint_eq(s.len, total + 4);
    ck_assert(memcmp(s.got + total, "tail", 4) == 0);
    outpipe_free(op);
    free(s.got);
}
END_TEST

/* An idle writer takes a flushed piece of half a buffer or more at once,
 * without a drain; a smaller one waits for more output or the drain. */
START_TEST(t_flush_hands_over_when_idle)
{
    struct sink s;
    sink_init(&s);
    struct outpipe *op;
    ck_assert_int_eq(outpipe_new(CAP, sink_fn, &s, &op), 0);
    ck_assert_int_eq(outpipe_write(op, "* OK hello\r\n", 12), 0);
    ck_assert_int_eq(outpipe_flush(op), 0);
    usleep(100000);
    ck_assert_uint_eq(atomic_load(&s.seen), 0);
    unsigned char half[CAP / 2];
    memset(half, 'h', sizeof half);
    ck_assert_int_eq(outpipe_write(op, half, sizeof half - 12), 0);
    /* the deferred flush goes out with this write: half full, writer idle */
    for (int i = 0; i < 2000 && atomic_load(&s.seen) < CAP / 2; i++)
        usleep(1000);
    ck_assert_uint_eq(atomic_load(&s.seen), CAP / 2);
    ck_assert_int_eq(outpipe_write(op, half, 100), 0);
    ck_assert_int_eq(outpipe_flush(op), 0);
    ck_assert_int_eq(outpipe_drain(op), 0);
    ck_assert_uint_eq(s.len, CAP / 2 + 100);
    ck_assert_uint_eq(s.flushes, 2);
    ck_assert(s.last_flush);
    /* nothing new: a flush and a drain send nothing more */
    ck_assert_int_eq(outpipe_flush(op), 0);
    ck_assert_int_eq(outpipe_drain(op), 0);
    ck_assert_uint_eq(s.calls, 2);
    outpipe_free(op);
    free(s.got);
}
END_TEST

struct producer {
    struct outpipe *op;
    size_t n;
    atomic_int done;
    int rc;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    unsigned char *b = malloc(p->n);
    for (size_t i = 0; i < p->n; i++)
        b[i] = pattern(i);
    p->rc = outpipe_write(p->op, b, p->n);
    atomic_store(&p->done, 1);
    free(b);
    return NULL;
}

/* With the writer stuck, the producer can fill both buffers and no more:
 * memory stays at two buffers; it continues once the writer does. */
START_TEST(t_bounded_producer_blocks)
{
    struct sink s;
    sink_init(&s);
    ck_assert_int_eq(pipe(s.gate), 0);
    s.gated = true;
    struct outpipe *op;
    ck_assert_int_eq(outpipe_new(CAP, sink_fn, &s, &op), 0);
    struct producer p = { .op = op, .n = 3 * CAP + 100 };
    atomic_init(&p.done, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, produce, &p), 0);
    usleep(200000);
    ck_assert_int_eq(atomic_load(&p.done), 0);   /* blocked: both buffers in use */
    ck_assert_uint_eq(atomic_load(&s.seen), 0);
    char go[8] = "gggggggg";
    ck_assert_int_eq(write(s.gate[1], go, sizeof go), (ssize_t)sizeof go);
    pthread_join(th, NULL);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_int_eq(outpipe_drain(op), 0);
    ck_assert_uint_eq(s.len, p.n);
    for (size_t i = 0; i < p.n; i++)
        if (s.got[i] != pattern(i))
            ck_abort_msg("octet %zu differs", i);
    outpipe_free(op);
    close(s.gate[0]);
    close(s.gate[1]);
    free(s.got);
}
END_TEST

/* A send error in the writer comes back from the producer's next calls. */
START_TEST(t_error_is_sticky)
{
    struct sink s;
    sink_init(&s);
    s.fail_after = 2 * CAP;
    struct outpipe *op;
    ck_assert_int_eq(outpipe_new(CAP, sink_fn, &s, &op), 0);
    unsigned char b[CAP];
    memset(b, 'x', sizeof b);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = outpipe_write(op, b, sizeof b);
    ck_assert_int_eq(rc, -4);
    ck_assert_int_eq(outpipe_write(op, b, 1), -4);
    ck_assert_int_eq(outpipe_flush(op), -4);
    ck_assert_int_eq(outpipe_drain(op), -4);
    ck_assert_uint_le(s.len, 2 * CAP);
    outpipe_free(op);
    free(s.got);
}
END_TEST

/* Freeing without a drain neither hangs nor leaks (valgrind/ASan). */
START_TEST(t_free_without_drain)
{
    struct sink s;
    sink_init(&s);
    struct outpipe *op;
    ck_assert_int_eq(outpipe_new(CAP, sink_fn, &s, &op), 0);
    unsigned char b[CAP + 10];
    memset(b, 'y', sizeof b);
    ck_assert_int_eq(outpipe_write(op, b, sizeof b), 0);
    outpipe_free(op);
    ck_assert_uint_le(s.len, sizeof b);
    free(s.got);
}
END_TEST

static void *nothing(void *arg)
{
    return arg;
}

/* The connection child's confinement still forbids new processes but
 * allows the writer thread (confine.c's seccomp filter; RLIMIT_NPROC 0
 * would forbid both). Checked in a child, which keeps the filter. */
START_TEST(t_confined_threads_not_processes)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct confine_opts co = { .data_dir = "/", .uid = getuid(), .gid = getgid(),
                                   .chroot = false, .max_files = 64 };
        const char *root, *err;
        if (confine_process(&co, &root, &err) != 0)
            _exit(10);
        pthread_t th;
        if (pthread_create(&th, NULL, nothing, NULL) != 0)
            _exit(11);
        pthread_join(th, NULL);
        struct sink s;
        sink_init(&s);
        struct outpipe *op;
        if (outpipe_new(CAP, sink_fn, &s, &op) != 0)
            _exit(12);
        if (outpipe_write(op, "abc", 3) != 0 || outpipe_drain(op) != 0 || s.len != 3)
            _exit(13);
        outpipe_free(op);
        pid_t k = fork();
        if (k == 0)
            _exit(0);
        if (k > 0 || errno != EPERM)
            _exit(14);
#ifdef SYS_vfork
        errno = 0;
        if (syscall(SYS_vfork) >= 0 || errno != EPERM)
            _exit(15);
#endif
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}
END_TEST

static Suite *outpipe_suite(void)
{
    Suite *s = suite_create("outpipe");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_order_and_content);
    tcase_add_test(tc, t_flush_hands_over_when_idle);
    tcase_add_test(tc, t_bounded_producer_blocks);
    tcase_add_test(tc, t_error_is_sticky);
    tcase_add_test(tc, t_free_without_drain);
    tcase_add_test(tc, t_confined_threads_not_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(outpipe_suite());
}
