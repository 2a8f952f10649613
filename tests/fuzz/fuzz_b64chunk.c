/* fuzz_b64chunk.c — the base64 chunk form (store/b64chunk.c). Its writer
 * sees untrusted message octets at import: every input is offered to
 * b64c_pack as a chunk, and whenever it packs, the stored value (decoded
 * octets kept raw, and again as a zstd frame of them) must re-encode to
 * the input exactly, with the SSSE3 and the scalar encoder alike, and so
 * must the canonical form a FETCH gets (CR LF line ends, written straight
 * out, with the raw octets' CRC-32C computed on the way); any difference
 * aborts. Byte 0 bits 1 and 2: whether the octet before the chunk was a CR. Input byte 0 bit 0 set: the rest is also read as a
 * stored value (the reader must refuse or fill exactly raw_len octets).
 * Seeds: tests/fuzz/corpus/b64chunk/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "store/b64chunk.h"
#include "store/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)        \
    do {                \
        if (!(c))       \
            abort();    \
    } while (0)

#define MAXN (256u * 1024u)

static unsigned char out[MAXN + B64C_HDR], tmp[MAXN], back[MAXN + 1], z[MAXN + 1024];
static ZSTD_DCtx *dctx;

static unsigned char canon[2 * MAXN + 1], want[2 * MAXN], bin[MAXN];

/* raw made canonical by the rule the store uses: a CR before every LF
 * that has none (pcr: the octet before raw was a CR) */
static size_t canonical(const unsigned char *raw, size_t n, int pcr)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == '\n' && !(i ? raw[i - 1] == '\r' : pcr))
            want[o++] = '\r';
        want[o++] = raw[i];
    }
    return o;
}

/* the raw octets, and the canonical ones with the raw octets' CRC, from
 * both encoders */
static void unpack_both(const unsigned char *v, size_t vl, const unsigned char *raw, size_t n,
                        int simd, int pcr)
{
    size_t cl = canonical(raw, n, pcr);
    for (int s = simd; s >= 0; s--) {
        b64c_use_simd = s;
        back[n] = 0x5A;
        CHECK(b64c_unpack(v, vl, back, n, dctx) == 0);
        CHECK(!memcmp(back, raw, n));
        CHECK(back[n] == 0x5A);
        uint32_t crc;
        canon[cl] = 0x5A;
        CHECK(b64c_unpack_canon(v, vl, n, pcr, canon, cl, bin, dctx, &crc) == 0);
        CHECK(!memcmp(canon, want, cl));
        CHECK(canon[cl] == 0x5A);
        CHECK(crc == crc32c(0, raw, n));
    }
    b64c_use_simd = simd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dctx && !(dctx = ZSTD_createDCtx()))
        abort();
    if (size < 1 || size - 1 > MAXN)
        return 0;
    int simd = b64c_use_simd;
    const unsigned char *raw = data + 1;
    size_t n = size - 1, ml, bl;
    if (n && b64c_pack(raw, n, out, tmp, &ml, &bl) == 0) {
        CHECK(b64c_is(out, ml + bl) && bl % 3 == 0 && ml + bl <= n + B64C_HDR);
        unpack_both(out, ml + bl, raw, n, simd, data[0] >> 1 & 1);
        memcpy(z, out, ml);
        size_t zl = ZSTD_compress(z + ml, sizeof z - ml, out + ml, bl, 1);
        CHECK(!ZSTD_isError(zl));
        b64c_set_zstd(z);
        unpack_both(z, ml + zl, raw, n, simd, data[0] >> 2 & 1);
    }
    if ((data[0] & 1) && n >= 2) {
        /* an arbitrary stored value; raw_len from its first two octets */
        size_t rl = (size_t)raw[0] << 8 | raw[1];
        back[rl] = 0x5A;
        int rc = b64c_unpack(raw + 2, n - 2, back, rl, dctx);
        CHECK(rc == 0 || rc == -1);
        CHECK(back[rl] == 0x5A);
    }
    return 0;
}
