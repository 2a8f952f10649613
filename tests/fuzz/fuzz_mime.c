/* fuzz_mime.c — libFuzzer target for the MIME parser and the msginfo record:
 * msginfo_build on arbitrary octets, msginfo_open of the result, and every
 * section of every part resolved and range-checked; plus header filtering
 * and the CTE decoders on each leaf. Seeds: tests/fuzz/corpus/mime/. */
#include "proto/buf.h"
#include "proto/cte.h"
#include "proto/mimehdr.h"
#include "proto/msginfo.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)        \
    do {                \
        if (!(c))       \
            abort();    \
    } while (0)

/* Section path of every part: walk the tree and record the path that
 * addresses each part, then resolve all six section kinds through it. */
static void sections(const struct msginfo *mi, const uint8_t *m, size_t size, uint32_t idx,
                     uint32_t *path, size_t np, unsigned budget[1])
{
    struct msginfo_part p, c;
    if (np >= MSGINFO_MAX_SECTION_DEPTH || budget[0] == 0 || msginfo_part(mi, idx, &p) < 0)
        return;
    budget[0]--;
    for (int w = MSGINFO_S_ALL; w <= MSGINFO_S_MIME; w++) {
        uint64_t off, len;
        uint32_t pi;
        bool exists;
        const char *err;
        if (msginfo_section(mi, path, np, (enum msginfo_sect)w, &off, &len, &pi, &exists,
                            &err) < 0)
            continue;
        CHECK(!exists || (off <= size && len <= size - off));
        if (exists && (w == MSGINFO_S_HEADER_FIELDS || w == MSGINFO_S_HEADER_FIELDS_NOT)) {
            static const char *const names[] = {"from", "Subject", "content-type"};
            struct buf out;
            buf_init(&out, 0);
            CHECK(msginfo_header_filter(m + off, (size_t)len, names, NULL, 3,
                                        w == MSGINFO_S_HEADER_FIELDS_NOT, &out) == 0);
            CHECK(out.len <= len + 2);
            buf_free(&out);
        }
    }
    CHECK(p.hdr_off + p.hdr_len == p.body_off && p.body_off + p.body_len <= size);
    if (p.type == MSGINFO_T_TEXT || p.type == MSGINFO_T_OTHER) {
        struct cte_dec d;
        struct buf out;
        buf_init(&out, 0);
        cte_dec_init(&d, p.cte);
        CHECK(cte_dec_feed(&d, m + p.body_off, (size_t)p.body_len, &out) == 0);
        CHECK(cte_dec_finish(&d, &out) == 0);
        CHECK(p.binary_size == UINT64_MAX || p.binary_size == out.len);
        buf_free(&out);
        char cs[64];
        (void)mimehdr_part_charset(m, size, &p, cs, sizeof cs);
    }
    uint32_t k = 1;
    for (uint32_t ch = p.first_child; ch != MSGINFO_NONE; ch = c.next_sibling, k++) {
        if (msginfo_part(mi, ch, &c) < 0)
            return;
        CHECK(c.parent == idx && c.hdr_off >= p.body_off);
        path[np] = p.type == MSGINFO_T_MESSAGE ? 1 : k;
        sections(mi, m, size, ch, path, np + 1, budget);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf rec;
    struct msginfo mi;
    const char *err = NULL;
    buf_init(&rec, 0);
    CHECK(msginfo_build(data, size, &rec, &err) == 0);
    CHECK(msginfo_open(&mi, rec.data, rec.len, &err) == 0);
    CHECK(mi.size == size && mi.nparts >= 1 && mi.nparts <= MSGINFO_MAX_PARTS);
    const char *s;
    size_t n;
    msginfo_envelope(&mi, &s, &n);
    msginfo_bodystructure(&mi, &s, &n);
    CHECK(n > 0);
    msginfo_body(&mi, &s, &n);
    uint32_t path[MSGINFO_MAX_SECTION_DEPTH];
    unsigned budget[1] = {2000};
    sections(&mi, data, size, 0, path, 0, budget);
    /* a truncated record must be refused, never read past its end */
    if (rec.len > 1)
        (void)msginfo_open(&mi, rec.data, rec.len / 2, &err);
    buf_free(&rec);
    return 0;
}
