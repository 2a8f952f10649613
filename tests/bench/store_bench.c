/* store_bench.c — read-side timings for docs/BENCHMARKS.md: a partial
 * fetch (canonical range) of the largest message of a mailbox, the way
 * FETCH BODY[]<off.len> reads it.
 *   store_bench DATA_DIR INSTANCE USER FOLDER [LEN] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "store/store.h"

struct big { uint64_t msgnum, size; };

static int pick(void *ctx, const struct msg_ref *m)
{
    struct big *b = ctx;
    if (m->size > b->size) {
        b->size = m->size;
        b->msgnum = m->msgnum;
    }
    return 0;
}

static int sink(void *ctx, const void *p, size_t n)
{
    (void)p;
    *(uint64_t *)ctx += n;
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: store_bench DATA_DIR INSTANCE USER FOLDER [LEN]\n");
        return 2;
    }
    uint64_t len = argc > 5 ? strtoull(argv[5], NULL, 10) : 65536;
    struct store_cfg cfg;
    struct inst *in;
    const char *err;
    store_cfg_default(&cfg, argv[1]);
    if (inst_open(&cfg, argv[2], false, &in, &err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct mbox_rec mb;
    struct big b = {0, 0};
    inst_rd_begin(in);
    if (inst_mbox_get(in, argv[3], argv[4], &mb) || inst_msgs_walk(in, mb.id, 1, pick, &b) ||
        !b.size) {
        fprintf(stderr, "no such folder or no messages\n");
        return 1;
    }
    inst_rd_end(in);
    double best = 1e9, total = 0;
    int runs = 20;
    for (int i = 0; i < runs; i++) {
        uint64_t got = 0;
        double t0 = now();
        inst_rd_begin(in);   /* one read txn per command, as cofferd does */
        int rc = inst_msg_read(in, b.msgnum, b.size > len ? b.size - len : 0, len, sink, &got);
        inst_rd_end(in);
        double dt = now() - t0;
        if (rc || got != (b.size > len ? len : b.size)) {
            fprintf(stderr, "read failed\n");
            return 1;
        }
        total += dt;
        if (dt < best)
            best = dt;
    }
    printf("partial fetch of the last %llu octets of a %llu-octet message: "
           "best %.3f ms, mean %.3f ms over %d runs\n", (unsigned long long)len,
           (unsigned long long)b.size, best * 1e3, total / runs * 1e3, runs);
    inst_close(in);
    return 0;
}
