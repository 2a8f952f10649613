/* msginfo.c — build, open and query the serialised per-message record; see
 * msginfo.h.
 *
 * Record layout (all integers little-endian):
 *   0  "CMI\0"            4  version u32
 *   8  size u64          16  sent_date i64      24 sent_tz i32   28 nparts u32
 *  32  envelope off,len  40  bodystructure off,len  48 body off,len (u32 each)
 *  56  reserved (8)
 *  64  nparts x 64-octet part records:
 *      hdr_off hdr_len body_off body_len lines binary_size (u64 each),
 *      parent first_child next_sibling (u32 each), type u8, cte u8, 2 spare
 *  then the three strings.
 * Fixed-size part records make msginfo_part() O(1) and open() O(1). */
#include "proto/msginfo.h"
#include "proto/bodystructure.h"
#include "proto/canon.h"
#include "proto/cte.h"
#include "proto/envelope.h"
#include "proto/mime.h"
#include "proto/mimehdr.h"
#include <string.h>

#define HDR_SIZE 64
#define PART_SIZE 64
static const unsigned char magic[4] = {'C', 'M', 'I', 0};

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t binary_size(const unsigned char *m, const struct mime_part *p, int cte)
{
    uint64_t body_off = p->hdr_off + p->hdr_size;
    if (cte == MSGINFO_CTE_UNKNOWN)
        return UINT64_MAX;
    if (cte != MSGINFO_CTE_BASE64 && cte != MSGINFO_CTE_QP)
        return p->body_size;
    if (cte == MSGINFO_CTE_BASE64)
        return cte_base64_size(m + body_off, (size_t)p->body_size);
    struct cte_dec d;
    struct buf out;
    uint64_t total = 0;
    buf_init(&out, 0);
    cte_dec_init(&d, cte);
    for (uint64_t pos = 0; pos < p->body_size;) {
        size_t chunk = p->body_size - pos > 65536 ? 65536 : (size_t)(p->body_size - pos);
        buf_reset(&out);
        if (cte_dec_feed(&d, m + body_off + pos, chunk, &out) < 0)
            break;
        total += out.len;
        pos += chunk;
    }
    buf_reset(&out);
    if (cte_dec_finish(&d, &out) == 0)
        total += out.len;
    buf_free(&out);
    return total;
}

int msginfo_build(const unsigned char *canon, size_t len, struct buf *out,
                  const char **err)
{
    struct mime_tree t;
    struct buf env, bs, body;
    int ret = -1;

    mime_tree_init(&t);
    buf_init(&env, 0);
    buf_init(&bs, 0);
    buf_init(&body, 0);
    if (!canon)
        canon = (const unsigned char *)"";
    if (mime_parse(canon, len, &t, err) < 0)
        goto done;
    const struct mime_part *root = &t.parts[0];
    if (envelope_write(canon + root->hdr_off, (size_t)root->hdr_size, &env) < 0 ||
        bodystructure_write(canon, &t, 0, true, &bs) < 0 ||
        bodystructure_write(canon, &t, 0, false, &body) < 0) {
        *err = "out of memory";
        goto done;
    }
    if (env.len > UINT32_MAX / 4 || bs.len > UINT32_MAX / 4 || body.len > UINT32_MAX / 4) {
        *err = "message structure too large";
        goto done;
    }
    int64_t sent;
    int32_t tz;
    envelope_date(canon + root->hdr_off, (size_t)root->hdr_size, &sent, &tz);

    size_t start = out->len;
    size_t need = HDR_SIZE + (size_t)t.n * PART_SIZE + env.len + bs.len + body.len;
    if (buf_reserve(out, need)) {
        *err = "out of memory";
        goto done;
    }
    unsigned char *h = out->data + start;
    memset(h, 0, HDR_SIZE + (size_t)t.n * PART_SIZE);
    memcpy(h, magic, 4);
    put_u32(h + 4, MSGINFO_VERSION);
    put_u64(h + 8, len);
    put_u64(h + 16, (uint64_t)sent);
    put_u32(h + 24, (uint32_t)tz);
    put_u32(h + 28, t.n);
    uint32_t soff = HDR_SIZE + t.n * PART_SIZE;
    put_u32(h + 32, soff);
    put_u32(h + 36, (uint32_t)env.len);
    put_u32(h + 40, soff + (uint32_t)env.len);
    put_u32(h + 44, (uint32_t)bs.len);
    put_u32(h + 48, soff + (uint32_t)env.len + (uint32_t)bs.len);
    put_u32(h + 52, (uint32_t)body.len);
    for (uint32_t i = 0; i < t.n; i++) {
        const struct mime_part *p = &t.parts[i];
        unsigned char *r = h + HDR_SIZE + (size_t)i * PART_SIZE;
        uint8_t type = (p->flags & MIME_F_MULTIPART) ? MSGINFO_T_MULTIPART
                       : (p->flags & MIME_F_RFC822) ? MSGINFO_T_MESSAGE
                       : (p->flags & MIME_F_TEXT) ? MSGINFO_T_TEXT : MSGINFO_T_OTHER;
        int cte = bodystructure_cte(canon, &t, i);
        bool leaf = type == MSGINFO_T_TEXT || type == MSGINFO_T_OTHER;
        put_u64(r, p->hdr_off);
        put_u64(r + 8, p->hdr_size);
        put_u64(r + 16, p->hdr_off + p->hdr_size);
        put_u64(r + 24, p->body_size);
        put_u64(r + 32, p->lines);
        put_u64(r + 40, leaf ? binary_size(canon, p, cte) : p->body_size);
        put_u32(r + 48, p->parent == MIME_NONE ? MSGINFO_NONE : p->parent);
        put_u32(r + 52, p->first_child == MIME_NONE ? MSGINFO_NONE : p->first_child);
        put_u32(r + 56, p->next_sibling == MIME_NONE ? MSGINFO_NONE : p->next_sibling);
        r[60] = type;
        r[61] = (uint8_t)cte;
    }
    out->len = start + HDR_SIZE + (size_t)t.n * PART_SIZE;
    buf_append(out, env.data, env.len);
    buf_append(out, bs.data, bs.len);
    buf_append(out, body.data, body.len);
    ret = 0;
done:
    mime_tree_free(&t);
    buf_free(&env);
    buf_free(&bs);
    buf_free(&body);
    return ret;
}

uint32_t msginfo_version(const void *data, size_t len)
{
    if (len < 8 || memcmp(data, magic, 4) != 0)
        return 0;
    return get_u32((const unsigned char *)data + 4);
}

int msginfo_open(struct msginfo *mi, const void *data, size_t len, const char **err)
{
    const unsigned char *d = data;
    if (len < HDR_SIZE || memcmp(d, magic, 4) != 0) {
        *err = "not a message info record";
        return -1;
    }
    if (get_u32(d + 4) != MSGINFO_VERSION) {
        *err = "message info record has another version (reindex needed)";
        return -1;
    }
    uint32_t n = get_u32(d + 28);
    if (n == 0 || n > MSGINFO_MAX_PARTS + 1 ||
        (uint64_t)HDR_SIZE + (uint64_t)n * PART_SIZE > len) {
        *err = "corrupt message info record";
        return -1;
    }
    size_t offs[3], lens[3];
    for (int i = 0; i < 3; i++) {
        offs[i] = get_u32(d + 32 + 8 * i);
        lens[i] = get_u32(d + 36 + 8 * i);
        if (offs[i] > len || lens[i] > len - offs[i]) {
            *err = "corrupt message info record";
            return -1;
        }
    }
    mi->data = d;
    mi->len = len;
    mi->nparts = n;
    mi->off_parts = HDR_SIZE;
    mi->off_envelope = offs[0];
    mi->len_envelope = lens[0];
    mi->off_bodystructure = offs[1];
    mi->len_bodystructure = lens[1];
    mi->off_body = offs[2];
    mi->len_body = lens[2];
    mi->size = get_u64(d + 8);
    mi->sent_date = (int64_t)get_u64(d + 16);
    mi->sent_tz = (int32_t)get_u32(d + 24);
    return 0;
}

void msginfo_envelope(const struct msginfo *mi, const char **s, size_t *len)
{
    *s = (const char *)mi->data + mi->off_envelope;
    *len = mi->len_envelope;
}

void msginfo_bodystructure(const struct msginfo *mi, const char **s, size_t *len)
{
    *s = (const char *)mi->data + mi->off_bodystructure;
    *len = mi->len_bodystructure;
}

void msginfo_body(const struct msginfo *mi, const char **s, size_t *len)
{
    *s = (const char *)mi->data + mi->off_body;
    *len = mi->len_body;
}

int msginfo_part(const struct msginfo *mi, uint32_t idx, struct msginfo_part *out)
{
    if (idx >= mi->nparts)
        return -1;
    const unsigned char *r = mi->data + mi->off_parts + (size_t)idx * PART_SIZE;
    out->hdr_off = get_u64(r);
    out->hdr_len = get_u64(r + 8);
    out->body_off = get_u64(r + 16);
    out->body_len = get_u64(r + 24);
    out->lines = get_u64(r + 32);
    out->binary_size = get_u64(r + 40);
    out->parent = get_u32(r + 48);
    out->first_child = get_u32(r + 52);
    out->next_sibling = get_u32(r + 56);
    out->type = r[60];
    out->cte = r[61];
    return 0;
}

/* RFC 3501 6.4.5 part numbers, resolved the way Dovecot does: a number on
 * a non-multipart part may only be 1, and a message/rfc822 part is entered
 * when more numbers follow. */
int msginfo_section(const struct msginfo *mi, const uint32_t *path, size_t npath,
                    enum msginfo_sect which, uint64_t *off, uint64_t *len,
                    uint32_t *part_idx, bool *exists, const char **err)
{
    struct msginfo_part p;
    uint32_t idx = 0;

    *off = *len = 0;
    *exists = false;
    *part_idx = MSGINFO_NONE;
    if (npath > MSGINFO_MAX_SECTION_DEPTH) {
        *err = "section path too deep";
        return -1;
    }
    if (npath == 0 && which == MSGINFO_S_MIME) {
        *err = "MIME needs a part number";
        return -1;
    }
    if (msginfo_part(mi, 0, &p) < 0) {
        *err = "corrupt message info record";
        return -1;
    }
    for (size_t i = 0; i < npath; i++) {
        uint32_t num = path[i];
        bool last = i + 1 == npath;
        if (num == 0)
            return 0;
        if (p.type == MSGINFO_T_MULTIPART) {
            uint32_t c = p.first_child;
            for (; num > 1 && c != MSGINFO_NONE; num--) {
                struct msginfo_part q;
                if (msginfo_part(mi, c, &q) < 0)
                    return 0;
                c = q.next_sibling;
            }
            if (c == MSGINFO_NONE || msginfo_part(mi, c, &p) < 0)
                return 0;
            idx = c;
        } else if (num != 1 || (!last && p.type != MSGINFO_T_MESSAGE)) {
            return 0;
        }
        if (!last && p.type == MSGINFO_T_MESSAGE) {
            if (p.first_child == MSGINFO_NONE)
                return 0;
            idx = p.first_child;
            if (msginfo_part(mi, idx, &p) < 0)
                return 0;
        }
    }
    if (npath > 0 && which != MSGINFO_S_ALL && which != MSGINFO_S_MIME) {
        /* HEADER/TEXT of a part: only a message/rfc822 part has them */
        if (p.type != MSGINFO_T_MESSAGE || p.first_child == MSGINFO_NONE)
            return 0;
        idx = p.first_child;
        if (msginfo_part(mi, idx, &p) < 0)
            return 0;
    }
    switch (which) {
    case MSGINFO_S_ALL:
        if (npath == 0) {
            *off = 0;
            *len = mi->size;
        } else {
            *off = p.body_off;
            *len = p.body_len;
        }
        break;
    case MSGINFO_S_MIME:
    case MSGINFO_S_HEADER:
    case MSGINFO_S_HEADER_FIELDS:
    case MSGINFO_S_HEADER_FIELDS_NOT:
        *off = p.hdr_off;
        *len = p.hdr_len;
        break;
    case MSGINFO_S_TEXT:
        *off = p.body_off;
        *len = p.body_len;
        break;
    }
    *part_idx = idx;
    *exists = true;
    return 0;
}

void msginfo_fieldset_init(struct msginfo_fieldset *fs, const char *const *names,
                           const size_t *lens, size_t n)
{
    memset(fs, 0, sizeof *fs);
    fs->names = names;
    fs->lens = lens;
    fs->n = n;
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(names[i]);
        if (l == 0) {
            fs->lenbits |= 1;        /* matches a field with an empty name */
            continue;
        }
        unsigned char c = (unsigned char)names[i][0];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        fs->lenbits |= 1ull << (l < 63 ? l : 63);
        fs->first[c >> 5] |= 1u << (c & 31);
        if (n <= 64)
            fs->bylen[l < 63 ? l : 63] |= 1ull << i;
    }
}

static bool fieldset_has(const struct msginfo_fieldset *fs, const unsigned char *name, size_t nl)
{
    if (!(fs->lenbits >> (nl < 63 ? nl : 63) & 1))
        return false;
    if (nl == 0)
        return true;
    unsigned char c0 = name[0];
    if (c0 >= 'A' && c0 <= 'Z')
        c0 = (unsigned char)(c0 + 32);
    if (!(fs->first[c0 >> 5] >> (c0 & 31) & 1))
        return false;
    uint64_t cand = fs->n <= 64 ? fs->bylen[nl < 63 ? nl : 63] : 0;
    for (size_t i = 0; fs->n <= 64 ? cand != 0 : i < fs->n; i++) {
        if (fs->n <= 64) {
            i = (size_t)__builtin_ctzll(cand);
            cand &= cand - 1;
        }
        size_t l = fs->lens ? fs->lens[i] : strlen(fs->names[i]);
        if (l != nl)
            continue;
        const unsigned char *b = (const unsigned char *)fs->names[i];
        size_t k = 0;
        for (; k < nl; k++) {
            unsigned char x = name[k], y = b[k];
            if (x != y && (x | 32) != (y | 32))
                break;
            if (x != y && !((x | 32) >= 'a' && (x | 32) <= 'z'))
                break;       /* only letters fold: '@' (0x40) is not '`' (0x60) */
        }
        if (k == nl)
            return true;
    }
    return false;
}

/* Append a field (it starts after a LF or at the header's start) in
 * canonical form: a CR before every bare LF, as canon_append with
 * *prev_cr = 0, without its per-call reservation and per-line checks. */
static int put_crlf(struct buf *out, const unsigned char *p, size_t n)
{
    if ((out->cap - out->len <= 2 * n || out->limit - out->len < 2 * n) &&
        buf_reserve(out, 2 * n) != 0) {
        int pcr = 0;                 /* near the limit: exact sizes */
        return canon_append(out, p, n, &pcr);
    }
    unsigned char *o = out->data + out->len;
    const unsigned char *e = p + n;
    while (p < e) {
        const unsigned char *lf = memchr(p, '\n', (size_t)(e - p));
        size_t k = (size_t)((lf ? lf : e) - p);
        memcpy(o, p, k);
        o += k;
        if (!lf)
            break;
        if (k == 0 || p[k - 1] != '\r')
            *o++ = '\r';
        *o++ = '\n';
        p = lf + 1;
    }
    out->len = (size_t)(o - out->data);
    return 0;
}

/* The rules of mimehdr_next (proto/mimehdr.c), inlined: a field is its
 * first line plus continuation lines (starting with SP or HTAB); its name
 * runs to the colon of its first line (trailing SP/HTAB dropped), or is
 * the whole first line without its line end when there is no colon
 * before the field's content end. A blank line (LF or CRLF) ends the
 * header. */
int msginfo_header_filter_set(const unsigned char *hdr, size_t len,
                              const struct msginfo_fieldset *fs, bool not_, bool to_crlf,
                              struct buf *out)
{
    const unsigned char *p = hdr, *end = len ? hdr + len : hdr;
    bool last_crlf = true;
    while (p < end) {
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
            break;
        const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *le = lf ? lf + 1 : end, *fe = le;
        while (fe < end && (*fe == ' ' || *fe == '\t')) {
            lf = memchr(fe, '\n', (size_t)(end - fe));
            fe = lf ? lf + 1 : end;
        }
        /* content end: the field without its final line end */
        const unsigned char *ce = fe;
        if (ce > p && ce[-1] == '\n') {
            ce--;
            if (ce > p && ce[-1] == '\r')
                ce--;
        }
        const unsigned char *ne = p;
        while (ne < le && *ne != ':')
            ne++;
        if (ne >= ce || ne == le) {       /* no colon: the whole first line */
            ne = le;
            if (ne > p && ne[-1] == '\n') {
                ne--;
                if (ne > p && ne[-1] == '\r')
                    ne--;
            }
        } else {
            while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
        }
        const unsigned char *fstart = p;
        p = fe;
        if (fieldset_has(fs, fstart, (size_t)(ne - fstart)) == not_)
            continue;
        size_t fl = (size_t)(fe - fstart);
        if (to_crlf) {
            if (put_crlf(out, fstart, fl))
                return -1;
            last_crlf = fe[-1] == '\n';
        } else {
            if (buf_append(out, fstart, fl))
                return -1;
            last_crlf = fl >= 2 && fe[-1] == '\n' && fe[-2] == '\r';
        }
    }
    /* As the reference: HEADER.FIELDS always ends with a blank line (a bare
     * LF after a last field that had no line end), HEADER.FIELDS.NOT only
     * when the header had one. Fields are copied exactly as they are. */
    if (not_ && p >= end)
        return 0;
    return (last_crlf ? buf_append(out, "\r\n", 2) : buf_putc(out, '\n')) ? -1 : 0;
}

int msginfo_header_filter(const unsigned char *hdr, size_t len,
                          const char *const *names, const size_t *name_lens,
                          size_t nnames, bool not_, struct buf *out)
{
    struct msginfo_fieldset fs;
    msginfo_fieldset_init(&fs, names, name_lens, nnames);
    return msginfo_header_filter_set(hdr, len, &fs, not_, false, out);
}
