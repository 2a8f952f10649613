/* import.c — `coffer import`: batching, progress, header dates/flags,
 * single messages (.eml, stdin) and directories of .eml files. The mbox and
 * Maildir readers live in import_mbox.c and import_maildir.c. */
#include "store/import_int.h"
#include "store/store_int.h"
#include "proto/mutf7.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void imp_warn(struct imp *im, const char *fmt, ...)
{
    FILE *f = im->o->warn ? im->o->warn : stderr;
    if (im->o->progress)
        fputs("\r\033[K", f);
    va_list ap;
    va_start(ap, fmt);
    fputs("coffer import: warning: ", f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
}

void imp_progress(struct imp *im, bool final)
{
    if (!im->o->progress)
        return;
    double t = now_s();
    if (!final && t - im->tlast < 0.25)
        return;
    im->tlast = t;
    FILE *f = im->o->warn ? im->o->warn : stderr;
    uint64_t n = im->st->imported + im->pend.imported + im->st->present + im->pend.present;
    double el = t - im->t0 > 1e-6 ? t - im->t0 : 1e-6;
    double mbs = (double)im->done_bytes / el / 1e6;
    char eta[32] = "?";
    if (im->total_bytes && im->done_bytes && im->done_bytes <= im->total_bytes) {
        double rem = el * (double)(im->total_bytes - im->done_bytes) / (double)im->done_bytes;
        snprintf(eta, sizeof eta, "%dm%02ds", (int)rem / 60, (int)rem % 60);
    }
    int pct = im->total_bytes ? (int)(100.0 * (double)im->done_bytes / (double)im->total_bytes) : 0;
    if (pct > 100)
        pct = 100;
    char bar[31];
    memset(bar, ' ', 30);
    memset(bar, '#', (size_t)(pct * 30 / 100));
    bar[30] = 0;
    fprintf(f, "\r[%s] %3d%% %llu msgs %.1f MB/s ETA %s%s", bar, pct, (unsigned long long)n,
            mbs, eta, final ? "\n" : "");
    fflush(f);
}

static void add_stats(struct import_stats *a, const struct import_stats *b)
{
    a->imported += b->imported;
    a->present += b->present;
    a->malformed += b->malformed;
    a->bytes += b->bytes;
    a->deduped += b->deduped;
}

int imp_commit(struct imp *im)
{
    if (!im->in->wr)
        return STORE_OK;
    int rc = inst_wr_commit(im->in, im->err);
    if (rc)
        return rc;
    add_stats(im->st, &im->pend);
    memset(&im->pend, 0, sizeof im->pend);
    im->batch_n = 0;
    im->batch_bytes = 0;
    return STORE_OK;
}

/* Malformed = what a reader would not take for a message: empty, NUL
 * octets, or a first line (after an mbox-style "From " line) that is not a
 * header field. It is archived as it is either way. */
static bool malformed(const unsigned char *raw, size_t len)
{
    if (len == 0 || memchr(raw, 0, len))
        return true;
    size_t i = 0;
    if (len > 5 && !memcmp(raw, "From ", 5)) {
        const unsigned char *nl = memchr(raw, '\n', len);
        if (!nl)
            return true;
        i = (size_t)(nl - raw) + 1;
    }
    size_t j = i;
    while (j < len && raw[j] > 32 && raw[j] < 127 && raw[j] != ':')
        j++;
    return j == i || j >= len || raw[j] != ':';
}

int imp_message(struct imp *im, const char *folder, const unsigned char *raw, size_t len,
                uint32_t flags, int64_t idate, int32_t tz, const void *srckey, size_t sklen,
                const void *fromline, size_t fllen)
{
    int rc;
    if (!im->in->wr && (rc = inst_wr_begin(im->in, im->err)))
        return rc;
    struct import_msg m = {
        .raw = raw, .len = len, .flags = flags, .internaldate = idate, .tz = tz,
        .srckey = srckey, .srckey_len = sklen, .fromline = fromline, .fromline_len = fllen,
    };
    bool added;
    MDB_stat before;
    mdb_stat(im->in->wr, im->in->dbi[DB_MSG], &before);
    rc = store_add_message(im->in, im->owner, folder, &m, &added, NULL, im->err);
    if (rc) {
        inst_wr_abort(im->in);
        memset(&im->pend, 0, sizeof im->pend);
        return rc;
    }
    im->done_bytes += len;
    if (added) {
        MDB_stat after;
        mdb_stat(im->in->wr, im->in->dbi[DB_MSG], &after);
        im->pend.imported++;
        im->pend.bytes += len;
        if (after.ms_entries == before.ms_entries)
            im->pend.deduped++;
        if (malformed(raw, len))
            im->pend.malformed++;
        im->batch_n++;
        im->batch_bytes += len;
        /* The text index reads postings all over the map; page faults map
         * whole page-cache folios, so unmap now and then, not only at
         * commits (safe mid-transaction: the map holds committed pages
         * only, and they fault back in). */
        if (im->batch_n % 32 == 0)
            inst_release_map(im->in);
    } else {
        im->pend.present++;
    }
    unsigned bm = im->o->batch_msgs ? im->o->batch_msgs : IMPORT_BATCH_MSGS;
    uint64_t bb = im->o->batch_bytes ? im->o->batch_bytes : IMPORT_BATCH_BYTES;
    if (im->batch_n >= bm || im->batch_bytes >= bb || (!added && im->pend.present % 5000 == 0))
        rc = imp_commit(im);
    imp_progress(im, false);
    return rc;
}

/* ---- headers ---- */

struct hdr_it { const unsigned char *p, *end; };

/* Next unfolded header field; false at the end of the header. */
static bool hdr_next(struct hdr_it *it, const unsigned char **name, size_t *nlen,
                     const unsigned char **val, size_t *vlen)
{
    const unsigned char *p = it->p, *e = it->end;
    if (p >= e || *p == '\n' || (*p == '\r' && p + 1 < e && p[1] == '\n'))
        return false;
    const unsigned char *line = p;
    /* field spans continuation lines starting with SP/HT */
    for (;;) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl) {
            p = e;
            break;
        }
        p = nl + 1;
        if (p >= e || (*p != ' ' && *p != '\t'))
            break;
    }
    it->p = p;
    const unsigned char *colon = memchr(line, ':', (size_t)(p - line));
    if (!colon) {
        *nlen = 0;
        *vlen = 0;
        *name = *val = line;
        return true;
    }
    *name = line;
    *nlen = (size_t)(colon - line);
    *val = colon + 1;
    *vlen = (size_t)(p - colon - 1);
    return true;
}

static void hdr_init(struct hdr_it *it, const unsigned char *raw, size_t len)
{
    it->p = raw;
    it->end = raw + (len > IMPORT_HDR_SCAN ? IMPORT_HDR_SCAN : len);
    /* A leading "From " line (mbox style in a .eml) is not a header. */
    if (len > 5 && !memcmp(raw, "From ", 5)) {
        const unsigned char *nl = memchr(raw, '\n', (size_t)(it->end - raw));
        it->p = nl ? nl + 1 : it->end;
    }
}

static bool name_is(const unsigned char *n, size_t nl, const char *s)
{
    size_t l = strlen(s);
    while (nl && (n[nl - 1] == ' ' || n[nl - 1] == '\t'))
        nl--;
    return nl == l && !strncasecmp((const char *)n, s, l);
}

bool hdr_status_flags(const unsigned char *raw, size_t len, uint32_t *flags)
{
    struct hdr_it it;
    const unsigned char *n, *v;
    size_t nl, vl;
    bool seen_hdr = false;
    uint32_t f = 0;
    hdr_init(&it, raw, len);
    while (hdr_next(&it, &n, &nl, &v, &vl)) {
        bool st = name_is(n, nl, "Status"), xs = name_is(n, nl, "X-Status");
        if (!st && !xs)
            continue;
        seen_hdr = true;
        for (size_t i = 0; i < vl; i++) {
            switch (v[i]) {
            case 'R': if (st) f |= STORE_F_SEEN; break;
            case 'A': if (xs) f |= STORE_F_ANSWERED; break;
            case 'F': if (xs) f |= STORE_F_FLAGGED; break;
            case 'T': if (xs) f |= STORE_F_DRAFT; break;
            default: break;   /* 'O' old, 'D' deleted: not carried over */
            }
        }
    }
    *flags = f;
    return seen_hdr;
}

bool hdr_best_date(const unsigned char *raw, size_t len, int64_t *utc, int32_t *tz)
{
    struct hdr_it it;
    const unsigned char *n, *v;
    size_t nl, vl;
    bool have_rcv = false, have_date = false;
    int64_t rcv = 0, date = 0, t;
    int32_t rtz = 0, dtz = 0, z;
    hdr_init(&it, raw, len);
    while (hdr_next(&it, &n, &nl, &v, &vl)) {
        if (name_is(n, nl, "Received")) {
            const unsigned char *semi = NULL;
            for (size_t i = vl; i > 0; i--)
                if (v[i - 1] == ';') {
                    semi = v + i;
                    break;
                }
            if (semi && !date_parse_rfc5322((const char *)semi, vl - (size_t)(semi - v), &t, &z) &&
                (!have_rcv || t > rcv)) {
                rcv = t;
                rtz = z;
                have_rcv = true;
            }
        } else if (!have_date && name_is(n, nl, "Date")) {
            if (!date_parse_rfc5322((const char *)v, vl, &t, &z)) {
                date = t;
                dtz = z;
                have_date = true;
            }
        }
    }
    if (have_rcv) {
        *utc = rcv;
        *tz = rtz;
        return true;
    }
    if (have_date) {
        *utc = date;
        *tz = dtz;
        return true;
    }
    return false;
}

/* ---- files ---- */

int imp_read_file(struct imp *im, const char *path, bool *vanished)
{
    *vanished = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *vanished = true;
            return STORE_ENOTFOUND;
        }
        *im->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        *im->err = store_seterr("%s: not a regular file", path);
        return STORE_EINVAL;
    }
    if ((uint64_t)st.st_size > STORE_MSG_MAX) {
        close(fd);
        *im->err = store_seterr("%s: %llu octets exceeds the message size limit (%u)", path,
                                (unsigned long long)st.st_size, STORE_MSG_MAX);
        return STORE_EINVAL;
    }
    buf_reset(&im->file);
    int rc = STORE_OK;
    for (;;) {
        if (buf_reserve(&im->file, 65536)) {
            *im->err = store_seterr("%s: message too large", path);
            rc = STORE_EINVAL;
            break;
        }
        ssize_t n = read(fd, im->file.data + im->file.len, im->file.cap - im->file.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *im->err = store_seterr("%s: %s", path, strerror(errno));
            rc = STORE_EIO;
            break;
        }
        if (n == 0)
            break;
        im->file.len += (size_t)n;
    }
    close(fd);
    return rc;
}

static void msg_date(struct imp *im, const unsigned char *raw, size_t len, int64_t *utc,
                     int32_t *tz)
{
    if (hdr_best_date(raw, len, utc, tz))
        return;
    *utc = (int64_t)time(NULL);
    *tz = date_zone_offset_at(&im->zone, *utc);
}

/* One .eml (or any single-message file): archived whole. */
static int import_eml(struct imp *im, const char *path, const char *rel, const char *folder)
{
    bool vanished;
    int rc = imp_read_file(im, path, &vanished);
    if (vanished) {
        imp_warn(im, "%s vanished during import", path);
        im->st->vanished++;
        return STORE_OK;
    }
    if (rc)
        return rc;
    int64_t utc;
    int32_t tz;
    msg_date(im, im->file.data, im->file.len, &utc, &tz);
    /* Key: "e" + path relative to the source + content hash, so another
     * source with the same file names does not collide. */
    char key[STORE_SRCKEY_MAX + 64];
    size_t rl = strlen(rel);
    unsigned char sha[32];
    SHA256(im->file.data, im->file.len, sha);
    size_t kl = 0;
    key[kl++] = 'e';
    if (rl > STORE_SRCKEY_MAX - 40)
        rl = STORE_SRCKEY_MAX - 40;   /* long paths: prefix + hash still unique enough */
    memcpy(key + kl, rel, rl);
    kl += rl;
    key[kl++] = 0;
    memcpy(key + kl, sha, 32);
    kl += 32;
    return imp_message(im, folder, im->file.data, im->file.len, STORE_F_SEEN, utc, tz, key, kl,
                       NULL, 0);
}

static int import_stdin(struct imp *im, const char *folder)
{
    buf_reset(&im->file);
    for (;;) {
        if (buf_reserve(&im->file, 65536)) {
            *im->err = "standard input: message too large";
            return STORE_EINVAL;
        }
        ssize_t n = read(0, im->file.data + im->file.len, im->file.cap - im->file.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *im->err = store_seterr("standard input: %s", strerror(errno));
            return STORE_EIO;
        }
        if (n == 0)
            break;
        im->file.len += (size_t)n;
    }
    if (!im->file.len) {
        *im->err = "standard input is empty: nothing to import";
        return STORE_EINVAL;
    }
    int64_t utc;
    int32_t tz;
    msg_date(im, im->file.data, im->file.len, &utc, &tz);
    unsigned char key[33];
    key[0] = 's';
    SHA256(im->file.data, im->file.len, key + 1);
    return imp_message(im, folder, im->file.data, im->file.len, STORE_F_SEEN, utc, tz, key,
                       sizeof key, NULL, 0);
}

void imp_join(char *out, size_t cap, const char *base, const char *rel)
{
    if (base && *base && rel && *rel)
        snprintf(out, cap, "%s/%s", base, rel);
    else if (base && *base)
        snprintf(out, cap, "%s", base);
    else
        snprintf(out, cap, "%s", rel && *rel ? rel : "INBOX");
}

/* "Users" is the other-users namespace prefix: a personal folder of that
 * name would be hidden by it, so it is renamed. */
void imp_fix_users(struct imp *im, char *folder, size_t cap)
{
    size_t n = strlen(folder);
    if (!utf8_valid(folder, n)) {
        /* Old Maildirs and file systems hold Latin-1 names: keep every
         * octet, as the character it most likely was. */
        char tmp[STORE_MBOX_MAX * 2 + 1];
        size_t o = 0;
        for (size_t i = 0; i < n && o + 2 < sizeof tmp; i++) {
            unsigned char c = (unsigned char)folder[i];
            if (c < 0x80) {
                tmp[o++] = (char)c;
            } else {
                tmp[o++] = (char)(0xC0 | c >> 6);
                tmp[o++] = (char)(0x80 | (c & 0x3F));
            }
        }
        tmp[o] = 0;
        imp_warn(im, "folder name is not UTF-8, read as Latin-1: '%s'", tmp);
        snprintf(folder, cap, "%s", tmp);
    }
    if (strncasecmp(folder, "Users", 5) || (folder[5] && folder[5] != '/'))
        return;
    char tmp[STORE_MBOX_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "Users-imported%s", folder + 5) >= (int)sizeof tmp)
        return;
    imp_warn(im, "folder '%s' renamed to '%s' (\"Users/\" is the other users' namespace)",
             folder, tmp);
    snprintf(folder, cap, "%s", tmp);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* mbox file name -> folder name: "inbox" (any case) -> INBOX, ".mbox"
 * suffix dropped. */
static void mbox_folder(const char *fname, char *out, size_t cap)
{
    snprintf(out, cap, "%s", fname);
    if (has_suffix(out, ".mbox") && strlen(out) > 5)
        out[strlen(out) - 5] = 0;
    if (!strcasecmp(out, "inbox"))
        snprintf(out, cap, "INBOX");
}

static bool looks_like_mbox(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char b[8];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n >= 3 && !memcmp(b, "\xEF\xBB\xBF", 3))
        return n >= 8 && !memcmp(b + 3, "From ", 5);
    return n >= 5 && !memcmp(b, "From ", 5);
}

/* Directory of .eml files (and .mbox files, and Maildirs), recursively,
 * in file-name order. Files in a sub-directory go to a folder of that
 * name. *found counts what was recognised. */
static int import_dir(struct imp *im, const char *path, const char *rel, const char *base,
                      unsigned depth, uint64_t *found)
{
    if (depth > 32) {
        imp_warn(im, "%s: directory nesting too deep, skipped", path);
        return STORE_OK;
    }
    DIR *d = opendir(path);
    if (!d) {
        *im->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = STORE_OK;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) {
                rc = STORE_EIO;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = STORE_EIO;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc)
        *im->err = "out of memory";
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    char folder[STORE_MBOX_MAX + 64];
    imp_join(folder, sizeof folder, base, rel);
    imp_fix_users(im, folder, sizeof folder);
    for (size_t i = 0; i < n && !rc; i++) {
        char p[4096], r[2048];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (rel && *rel)
            snprintf(r, sizeof r, "%s/%s", rel, names[i]);
        else
            snprintf(r, sizeof r, "%s", names[i]);
        struct stat st;
        if (stat(p, &st)) {
            if (errno == ENOENT) {
                imp_warn(im, "%s vanished during import", p);
                im->st->vanished++;
                continue;
            }
            *im->err = store_seterr("%s: %s", p, strerror(errno));
            rc = STORE_EIO;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            if (is_maildir(p)) {
                char f[STORE_MBOX_MAX + 64];
                imp_join(f, sizeof f, base, r);
                (*found)++;
                rc = import_maildir(im, p, f);
            } else {
                rc = import_dir(im, p, r, base, depth + 1, found);
            }
        } else if (S_ISREG(st.st_mode) && has_suffix(names[i], ".mbox") && st.st_size > 0 &&
                   !looks_like_mbox(p)) {
            /* Inside a tree nothing is dropped: a broken mbox is archived
             * as one (malformed) message. */
            imp_warn(im, "%s does not start with a \"From \" line: archived as one message", p);
            (*found)++;
            rc = import_eml(im, p, r, folder);
        } else if (S_ISREG(st.st_mode) && has_suffix(names[i], ".mbox")) {
            char mf[1024], f[STORE_MBOX_MAX + 64], rr[2048];
            mbox_folder(names[i], mf, sizeof mf);
            if (rel && *rel)
                snprintf(rr, sizeof rr, "%s/%s", rel, mf);
            else
                snprintf(rr, sizeof rr, "%s", mf);
            imp_join(f, sizeof f, base, rr);
            imp_fix_users(im, f, sizeof f);
            (*found)++;
            rc = import_mbox(im, p, f);
        } else if (S_ISREG(st.st_mode) && has_suffix(names[i], ".eml")) {
            (*found)++;
            rc = import_eml(im, p, r, folder);
        } else {
            im->st->skipped++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Octets of the message files under a directory source, for the progress
 * bar: files in cur/ and new/ of a Maildir (and of its .sub folders), every
 * regular file elsewhere (.eml and mbox files). Walked only on a terminal. */
static uint64_t tree_bytes(const char *path, int depth)
{
    if (depth > 32)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    bool md = is_maildir(path);
    const char *leaf = strrchr(path, '/');
    leaf = leaf ? leaf + 1 : path;
    bool msgs = !strcmp(leaf, "cur") || !strcmp(leaf, "new");
    uint64_t sum = 0;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        if (snprintf(p, sizeof p, "%s/%s", path, n) >= (int)sizeof p)
            continue;
        struct stat st;
        if (stat(p, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (!md || !strcmp(n, "cur") || !strcmp(n, "new") || n[0] == '.')
                sum += tree_bytes(p, depth + 1);
        } else if (S_ISREG(st.st_mode) && (msgs || !md)) {
            sum += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return sum;
}

static int import_source(struct imp *im, const char *src)
{
    const char *base = im->o->folder;
    if (!strcmp(src, "-"))
        return import_stdin(im, base ? base : "INBOX");
    struct stat st;
    if (stat(src, &st)) {
        *im->err = store_seterr("%s: %s", src, strerror(errno));
        return errno == ENOENT ? STORE_ENOTFOUND : STORE_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        if (access(src, R_OK | X_OK)) {
            *im->err = store_seterr("%s: %s", src, strerror(errno));
            return STORE_EIO;
        }
        if (im->o->progress)      /* percentage and ETA need the total first */
            im->total_bytes += tree_bytes(src, 0);
        if (is_maildir(src))
            return import_maildir(im, src, base ? base : "INBOX");
        uint64_t found = 0;
        int rc = import_dir(im, src, "", base, 0, &found);
        if (!rc && !found) {
            *im->err = store_seterr("%s is neither a Maildir (no cur/ or new/) nor a directory "
                                    "of .eml or .mbox files", src);
            return STORE_EINVAL;
        }
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        *im->err = store_seterr("%s: not a file or directory", src);
        return STORE_EINVAL;
    }
    if (access(src, R_OK)) {
        *im->err = store_seterr("%s: %s", src, strerror(errno));
        return STORE_EIO;
    }
    if (st.st_size == 0) {
        *im->err = store_seterr("%s: empty file, nothing to import", src);
        return STORE_EINVAL;
    }
    im->total_bytes += (uint64_t)st.st_size;
    const char *slash = strrchr(src, '/');
    const char *fname = slash ? slash + 1 : src;
    if (looks_like_mbox(src)) {
        char f[STORE_MBOX_MAX + 64];
        if (base)
            snprintf(f, sizeof f, "%s", base);
        else
            mbox_folder(fname, f, sizeof f);
        imp_fix_users(im, f, sizeof f);
        return import_mbox(im, src, f);
    }
    if (has_suffix(fname, ".mbox")) {
        *im->err = store_seterr("%s: not an mbox file (it does not start with a \"From \" line)",
                                src);
        return STORE_EINVAL;
    }
    return import_eml(im, src, fname, base ? base : "INBOX");
}

int store_import(struct inst *in, const char *owner, const char *const *sources, size_t n,
                 const struct import_opts *o, struct import_stats *st, const char **err)
{
    const char *e = NULL;
    if (!err)
        err = &e;
    struct imp im;
    memset(&im, 0, sizeof im);
    memset(st, 0, sizeof *st);
    im.in = in;
    im.owner = owner;
    im.o = o;
    im.st = st;
    im.err = err;
    if (date_zone_parse(o->default_tz, &im.zone)) {
        *err = store_seterr("invalid default_timezone '%s'", o->default_tz);
        return STORE_EINVAL;
    }
    struct user_rec u;
    inst_rd_begin(in);
    int rc = inst_user_get(in, owner, &u);
    inst_rd_end(in);
    if (rc) {
        *err = store_seterr("unknown user '%s' in instance '%s' (add it with `coffer user add`)",
                            owner, in->id);
        return STORE_ENOTFOUND;
    }
    if (o->folder) {
        char f[STORE_MBOX_MAX + 64];
        snprintf(f, sizeof f, "%s", o->folder);
        size_t fl = strlen(f);
        if (!fl || fl > STORE_MBOX_MAX || f[0] == '/' || f[fl - 1] == '/' || strstr(f, "//")) {
            *err = store_seterr("invalid folder name '%s'", o->folder);
            return STORE_EINVAL;
        }
        /* Source folders named Users are renamed with a warning
         * (imp_fix_users); a name the admin typed is refused instead, so
         * nothing lands where they did not ask. */
        if (!strncasecmp(f, "Users", 5) && (f[5] == 0 || f[5] == '/')) {
            *err = store_seterr("folder '%s' is inside \"Users/\", the other users' namespace: "
                                "clients would show it as another user's archive; choose "
                                "another name (e.g. 'Users-imported%s')", f, f + 5);
            return STORE_EINVAL;
        }
    }
    buf_init(&im.file, STORE_MSG_MAX + 65536);
    buf_init(&im.tmp, STORE_MSG_MAX + 65536);
    im.t0 = im.tlast = now_s();
    char saved_tz[256];
    bool had_tz;
    date_zone_enter(&im.zone, saved_tz, sizeof saved_tz, &had_tz);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = import_source(&im, sources[i]);
        if (!rc)
            rc = imp_commit(&im);
    }
    date_zone_leave(&im.zone, saved_tz, had_tz);
    if (rc)
        inst_wr_abort(in);
    else
        imp_progress(&im, true);
    buf_free(&im.file);
    buf_free(&im.tmp);
    return rc;
}
