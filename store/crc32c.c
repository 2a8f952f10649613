/* crc32c.c — CRC-32C (Castagnoli), table driven. LMDB has no page
 * checksums, so every derived record carries one of these. */
#include "store/admin.h"
#include "store/store_int.h"

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_ready = 1;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#include <string.h>
#define CRC_HW 1
/* SSE4.2's CRC32 instruction is CRC-32C. Every FETCH of a section checks
 * its msginfo record, and the profile of a folder open (tests/bench/run.sh)
 * showed the table code at ~7% of cofferd's CPU. */
/* Three lanes: the CRC32 instruction has a latency of three cycles and a
 * throughput of one per cycle, so one dependency chain runs at a third of
 * its speed. A buffer is cut into rounds of three LANE-octet lanes whose
 * CRCs run interleaved, then joined: for the register without its
 * inversions, crc(s, A || B) = shift(crc(s, A), |B|) ^ crc(0, B), and
 * shift by LANE octets is linear, so four 256-entry tables apply it.
 * (Profiled: the check of a stored header or text chunk was 15 % of a
 * BODY.PEEK[1]'s CPU time.) */
#define LANE 256
static uint32_t lane_shift[4][256];

__attribute__((target("sse4.2"))) static void lane_init(void)
{
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) {
        uint64_t c = 1u << i;
        for (int k = 0; k < LANE / 8; k++)
            c = _mm_crc32_u64(c, 0);     /* LANE zero octets */
        basis[i] = (uint32_t)c;
    }
    for (int t = 0; t < 4; t++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b >> j & 1)
                    v ^= basis[8 * t + j];
            lane_shift[t][b] = v;
        }
}

static inline uint32_t shift_lane(uint32_t c)
{
    return lane_shift[0][c & 0xff] ^ lane_shift[1][(c >> 8) & 0xff] ^
           lane_shift[2][(c >> 16) & 0xff] ^ lane_shift[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
                                                         size_t n)
{
    uint64_t c = crc;
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < LANE; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + LANE + i, 8);
            memcpy(&d, p + 2 * LANE + i, 8);
            c = _mm_crc32_u64(c, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, d);
        }
        c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * LANE;
        n -= 3 * LANE;
    }
    /* four words per iteration: the loop overhead was half the
     * instructions of a 2 KiB header chunk's check */
    while (n >= 32) {
        uint64_t v[4];
        memcpy(v, p, 32);
        c = _mm_crc32_u64(c, v[0]);
        c = _mm_crc32_u64(c, v[1]);
        c = _mm_crc32_u64(c, v[2]);
        c = _mm_crc32_u64(c, v[3]);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

/* Slicing-by-8: verify walks every record, so speed matters a little. */
uint32_t crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (!crc_ready) {
        crc_init();
#ifdef CRC_HW
        crc_ready = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        if (crc_ready == 2)
            lane_init();
#endif
    }
    crc = ~crc;
#ifdef CRC_HW
    if (crc_ready == 2)
        return ~crc_hw(crc, p, n);
#endif
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}
