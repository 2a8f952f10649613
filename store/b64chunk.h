/* b64chunk.h — the base64 chunk form (store/b64chunk.c).
 *
 * A chunk that is (mostly) lines of base64 text is stored as the octets the
 * text decodes to, plus what re-encodes the exact original text:
 *
 *   off  len  field
 *   0    4    magic "CB64" (a zstd frame starts 28 B5 2F FD: never equal)
 *   4    1    flags: bit 0 line ends are CR LF (else LF), bit 1 the
 *             decoded octets are a zstd frame (else stored as they are);
 *             other bits zero
 *   5    1    zero
 *   6    2    line: base64 characters per full line (big-endian, >= 1)
 *   8    2    col: column of the first encoded character (< line)
 *   10   2    plen: literal prefix length
 *   12   2    slen: literal suffix length
 *   14   4    nq: encoded quads (4 characters <-> 3 octets)
 *   18        prefix (plen), suffix (slen), decoded octets (3 * nq, or the
 *             zstd frame holding them: the rest of the value)
 *
 * The chunk's octets are: prefix, then the 4 * nq characters of the
 * standard base64 alphabet that encode the decoded octets, with a line end
 * before character j (j > 0) whenever (col + j) % line == 0, then suffix.
 * '=' padding, partial quads, short last lines, anything irregular before
 * or after the run are in the literal prefix/suffix. Full quads map 1:1 to
 * three octets, so the form needs no canonical-padding rules: the writer
 * re-encodes and compares before it keeps the form (b64c_pack). */
#ifndef COFFER_B64CHUNK_H
#define COFFER_B64CHUNK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define B64C_HDR 18
#define B64C_F_CRLF 1u
#define B64C_F_ZSTD 2u
/* literal prefix / suffix limits the writer uses (the reader takes any
 * lengths that fit the value) */
#define B64C_PFX_MAX 1024u
#define B64C_SFX_MAX 1024u

/* Is the stored value v[0..n) (after the chunk value's length + CRC) the
 * base64 form? */
static inline bool b64c_is(const unsigned char *v, size_t n)
{
    return n >= 4 && !memcmp(v, "CB64", 4);
}

/* Try the base64 form for raw[0..n). 0 on success: out holds the header,
 * prefix and suffix (*meta_len octets), then the decoded octets (*bin_len),
 * and re-encoding them gave back raw exactly (checked in tmp, n octets).
 * out needs n + B64C_HDR octets. -1: too little of raw is regular base64
 * lines for the form to pay, or it would not be exact. */
int b64c_pack(const unsigned char *raw, size_t n, unsigned char *out, unsigned char *tmp,
              size_t *meta_len, size_t *bin_len);

/* Re-encode with SSSE3 + SSE 4.2 (set at start-up where the CPU has them, unless
 * COFFER_BENCH_B64_SCALAR is set); tests clear it to check the scalar
 * path. */
extern int b64c_use_simd;

/* Flag a packed header whose decoded octets the caller replaced with a
 * zstd frame of them. */
void b64c_set_zstd(unsigned char *meta);

/* Rebuild the raw_len original octets of the stored form v[0..vlen) into
 * out. A zstd payload is decompressed with dctx (a ZSTD_DCtx *, or NULL)
 * into the tail of out and re-encoded in place, so out needs only raw_len
 * octets. 0, or -1 when the value is malformed or does not describe
 * exactly raw_len octets. */
int b64c_unpack(const unsigned char *v, size_t vlen, unsigned char *out, size_t raw_len,
                void *dctx);

/* The canonical form (CR LF line ends, as a FETCH sends it) of the same
 * octets, written straight to out, which must hold exactly canon_len
 * octets; prev_cr: the octet before the chunk was a CR. A zstd payload is
 * decompressed into tmp (room for the decoded octets, < raw_len). *crc
 * gets the CRC-32C of the raw octets, computed on the way: the caller
 * compares it with the stored one. 0, or -1 when the value is malformed
 * or does not fill out exactly. */
int b64c_unpack_canon(const unsigned char *v, size_t vlen, size_t raw_len, int prev_cr,
                      unsigned char *out, size_t canon_len, unsigned char *tmp, void *dctx,
                      uint32_t *crc);

#endif
