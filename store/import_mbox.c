/* import_mbox.c — mbox reader (mboxo and mboxrd).
 *
 * Splitting follows what mail readers and ../shared/tools/imap-append do:
 * a message starts after a "From " line that opens the file (a UTF-8 BOM
 * before it is tolerated) or follows an empty line; that empty line
 * separates messages and is not part of either. Lines ">From ", ">>From "
 * … lose one '>' (mboxrd un-quoting). For a byte-exact export the From_
 * line, the separator and whether un-quoting happened are kept per
 * message (fromln database). The file is mmap'ed and pages already
 * imported are dropped after every batch, so memory stays flat. */
#include "store/import_int.h"
#include "store/store_int.h"
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Does the newline at p (within [lo, ...)) end an empty line? Returns the
 * empty line's length (1 for "\n", 2 for "\r\n") or 0. */
static size_t blank_line_before(const unsigned char *lo, const unsigned char *p)
{
    if (p == lo || p[-1] == '\n')
        return 1;
    if (p[-1] == '\r' && (p - 1 == lo || p[-2] == '\n'))
        return 2;
    return 0;
}

static bool quoted_from(const unsigned char *l, const unsigned char *end)
{
    const unsigned char *q = l;
    while (q < end && *q == '>')
        q++;
    return q > l && end - q >= 5 && !memcmp(q, "From ", 5);
}

/* mboxrd un-quoting into out; returns whether anything changed. The
 * offsets (in out) of lines that became a bare "From " line are appended
 * to froms as u64 BE: only those are ambiguous on export (a "From " line
 * inside a paragraph may also have been there unquoted). */
static bool unquote(const unsigned char *s, size_t n, struct buf *out, struct buf *froms,
                    uint32_t *nfroms, int *rc)
{
    const unsigned char *end = s + n, *l = s;
    bool any = false;
    buf_reset(out);
    *rc = 0;
    while (l < end) {
        const unsigned char *nl = memchr(l, '\n', (size_t)(end - l));
        const unsigned char *le = nl ? nl + 1 : end;
        if (*l == '>' && quoted_from(l, le)) {
            if (!any && buf_append(out, s, (size_t)(l - s)))
                goto oom;
            any = true;
            if (l[1] == 'F') {
                if (buf_put_u64be(froms, out->len))
                    goto oom;
                ++*nfroms;
            }
            if (buf_append(out, l + 1, (size_t)(le - l - 1)))
                goto oom;
        } else if (any && buf_append(out, l, (size_t)(le - l))) {
            goto oom;
        }
        l = le;
    }
    return any;
oom:
    *rc = -1;
    return false;
}

int import_mbox(struct imp *im, const char *path, const char *folder)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *im->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size == 0) {
        close(fd);
        if (st.st_size == 0) {
            imp_warn(im, "%s: empty mbox, nothing to import", path);
            return STORE_OK;
        }
        *im->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        *im->err = store_seterr("%s: mmap: %s", path, strerror(errno));
        return STORE_EIO;
    }
    madvise(base, size, MADV_SEQUENTIAL);
    const unsigned char *end = base + size, *p = base;
    size_t bom = size >= 3 && !memcmp(base, "\xEF\xBB\xBF", 3) ? 3 : 0;
    int rc = STORE_OK;
    if (size < bom + 5 || memcmp(base + bom, "From ", 5)) {
        *im->err = store_seterr("%s: not an mbox file (it does not start with a \"From \" line)",
                                path);
        rc = STORE_EINVAL;
        goto out;
    }
    uint64_t ordinal = 0;
    const char *bname = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t dropped = 0;   /* pages before this offset were released */
    struct buf fl;
    buf_init(&fl, 0);
    while (p < end && !rc) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *fl_end = nl ? nl + 1 : end;
        const unsigned char *ms = fl_end, *me = end, *next = end;
        size_t trailer = 0;
        for (const unsigned char *s = ms; s < end;) {
            const unsigned char *hit = memmem(s, (size_t)(end - s), "\nFrom ", 6);
            if (!hit)
                break;
            size_t bl = hit >= ms ? blank_line_before(ms, hit) : 0;
            if (bl) {
                me = hit + 1 - bl;
                trailer = bl;
                next = hit + 1;
                break;
            }
            s = hit + 1;
        }
        if (next == end && me == end && end > ms && end[-1] == '\n') {
            size_t bl = blank_line_before(ms, end - 1);
            if (bl) {
                me = end - bl;
                trailer = bl;
            }
        }
        ordinal++;
        const unsigned char *raw = ms;
        size_t len = (size_t)(me - ms);
        int urc;
        uint32_t nfroms = 0;
        buf_reset(&fl);
        unsigned char hdr[6] = {0};
        if (buf_append(&fl, hdr, sizeof hdr)) {
            *im->err = "out of memory";
            rc = STORE_EIO;
            break;
        }
        bool uq = unquote(raw, len, &im->tmp, &fl, &nfroms, &urc);
        if (urc) {
            *im->err = "out of memory";
            rc = STORE_EIO;
            break;
        }
        if (uq) {
            raw = im->tmp.data;
            len = im->tmp.len;
        }
        /* From_ line record: flags (1 = re-quote on export), separator
         * length, count and offsets of un-quoted bare "From " lines, then
         * the line as it was (BOM included). */
        fl.data[0] = uq ? 1 : 0;
        fl.data[1] = (unsigned char)trailer;
        put_be32(fl.data + 2, nfroms);
        if (buf_append(&fl, p, (size_t)(fl_end - p))) {
            *im->err = "out of memory";
            rc = STORE_EIO;
            break;
        }
        int64_t utc;
        int32_t tz;
        struct tm tm;
        size_t skip = p == base ? bom : 0;
        if (!date_parse_asctime((const char *)p + skip + 5, (size_t)(fl_end - p - skip - 5), &tm))
            utc = date_local_to_utc(&tm, &im->zone, &tz);
        else if (!hdr_best_date(raw, len, &utc, &tz)) {
            utc = (int64_t)time(NULL);
            tz = date_zone_offset_at(&im->zone, utc);
        }
        uint32_t flags;
        if (!hdr_status_flags(raw, len, &flags))
            flags = STORE_F_SEEN;
        /* ordinal + offset + hash, and the file name: two mbox files merged
         * into one folder must not shadow each other's messages */
        unsigned char key[1 + 16 + 32 + 200];
        key[0] = 'm';
        put_be64(key + 1, ordinal);
        put_be64(key + 9, (uint64_t)(ms - base));
        SHA256(ms, (size_t)(me - ms), key + 17);
        size_t kl = 49, bl = strlen(bname);
        if (bl > 200)
            bl = 200;
        memcpy(key + kl, bname, bl);
        kl += bl;
        unsigned before = im->batch_n;
        rc = imp_message(im, folder, raw, len, flags, utc, tz, key, kl, fl.data, fl.len);
        im->done_bytes += (size_t)(ms - p) + trailer;
        if (!rc && im->batch_n < before) {
            size_t upto = ((size_t)(next - base)) & ~(size_t)4095;
            if (upto > dropped) {
                madvise(base + dropped, upto - dropped, MADV_DONTNEED);
                dropped = upto;
            }
        }
        p = next;
    }
    buf_free(&fl);
out:
    munmap(base, size);
    return rc;
}
