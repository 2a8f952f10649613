/* libFuzzer target: the IMAP command tokenizer (imap_line_literal,
 * imap_line_tag, imap_parse_command), sequence sets and modified UTF-7.
 * The first input byte picks the limits so small nesting/argument caps get
 * exercised too; the rest is the command as the session would assemble it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/buf.h"
#include "proto/imapparse.h"
#include "proto/mutf7.h"
#include "proto/seqset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct imap_arg *a, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].type == IMAP_ARG_LIST) {
            walk(a[i].list, a[i].nlist, out);
            continue;
        }
        if (a[i].s[a[i].len] != '\0')
            abort();   /* contract: NUL-terminated */
        struct seqset set;
        const char *err;
        if (seqset_parse(a[i].s, a[i].len, 1000, &set, &err) == 0) {
            seqset_resolve(&set, 1000);
            for (size_t k = 1; k < set.n; k++)
                if (set.r[k].lo <= set.r[k - 1].hi || set.r[k].lo > set.r[k].hi)
                    abort();   /* resolved sets are sorted and disjoint */
            seqset_free(&set);
        }
        buf_reset(out);
        if (mutf7_decode(a[i].s, a[i].len, out) == 0) {
            /* decode then encode gives the input back (canonical form) */
            struct buf again;
            buf_init(&again, 0);
            if (mutf7_encode((const char *)out->data, out->len, &again) != 0 ||
                again.len != a[i].len ||
                (a[i].len > 0 && memcmp(again.data, a[i].s, a[i].len) != 0))
                abort();
            buf_free(&again);
        }
        buf_reset(out);
        imap_append_astring(out, a[i].s, a[i].len, false);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct imap_parse_limits lim = {.max_nesting = 1u + (data[0] & 7u),
                                    .max_args = 1u + (size_t)(data[0] >> 3) * 8u};
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    struct imap_lit lit;
    if (imap_line_literal(s, n, &lit) == 1 && lit.marker_off >= n)
        abort();
    const char *tag;
    size_t tl;
    if (imap_line_tag(s, n, &tag, &tl) == 1 && (tl == 0 || tl > IMAP_TAG_MAX))
        abort();
    struct imap_cmd cmd;
    const char *err = NULL;
    struct buf out;
    buf_init(&out, 1u << 20);
    if (imap_parse_command(s, n, &lim, &cmd, &err) == 0)
        walk(cmd.args, cmd.nargs, &out);
    else if (err == NULL)
        abort();
    imap_cmd_free(&cmd);
    buf_free(&out);
    return 0;
}
