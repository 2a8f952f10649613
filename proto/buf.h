/* buf.h — growable byte buffer with a hard size cap.
 *
 * Every buffer that holds untrusted data has a cap: growing past it fails
 * with BUF_ETOOBIG instead of allocating, so hostile input can never size an
 * allocation unchecked. */
#ifndef COFFER_BUF_H
#define COFFER_BUF_H
#include <stddef.h>
#include <stdint.h>

#define BUF_ENOMEM  (-1)
#define BUF_ETOOBIG (-2)

struct buf {
    unsigned char *data;
    size_t len;
    size_t cap;      /* allocated */
    size_t limit;    /* 0 = SIZE_MAX/2 */
};

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                   /* len = 0, keeps memory */
int buf_reserve(struct buf *b, size_t extra);     /* 0 or BUF_E* */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_putc(struct buf *b, unsigned char c);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append as a big-endian / little-endian-free fixed-width integer. */
int buf_put_u32be(struct buf *b, uint32_t v);
int buf_put_u64be(struct buf *b, uint64_t v);
/* NUL-terminate without counting the NUL in len; returns data as char*. */
const char *buf_cstr(struct buf *b);

#endif
