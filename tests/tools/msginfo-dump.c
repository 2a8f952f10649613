#define _POSIX_C_SOURCE 200809L
/* msginfo-dump — print what FETCH would answer for each message, computed
 * by msginfo only, so the MIME code can be compared with a reference IMAP
 * server before the server exists (tests/integration/mime_vs_dovecot.py).
 *
 * usage: msginfo-dump FILE|DIR...   (a DIR means its *.eml, sorted)
 *
 * For message number N (in argument order) it prints
 *   # N PATH TAB part:kind ...          kind: M multipart, R message/rfc822,
 *                                        L<cte> leaf (cte = enum msginfo_cte)
 *   * N FETCH (RFC822.SIZE ... ENVELOPE ... BODYSTRUCTURE ... BODY ...
 *      BODY[] BODY[HEADER] BODY[TEXT] BODY[HEADER.FIELDS (...)]
 *      BODY[HEADER.FIELDS.NOT (Received)] BODY[p] BODY[p.MIME]
 *      BODY[p.HEADER] BODY[p.TEXT] BINARY.SIZE[p])
 * in IMAP response syntax (literals for section data, NUL sent as 0x80).
 * Input files are canonicalised LF -> CRLF first, as on import. */
#include "proto/buf.h"
#include "proto/canon.h"
#include "proto/msginfo.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (256u << 20)

static int read_file(const char *path, struct buf *raw)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char tmp[65536];
    size_t n;
    int r = 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(raw, tmp, n)) {
            r = -1;
            break;
        }
    if (ferror(f))
        r = -1;
    fclose(f);
    return r;
}

static void put_literal(const unsigned char *s, uint64_t n)
{
    printf("{%llu}\r\n", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        putchar(s[i] ? s[i] : 0x80);
}

static void put_path(const uint32_t *path, size_t np)
{
    for (size_t i = 0; i < np; i++)
        printf(i ? ".%u" : "%u", path[i]);
}

struct plist {
    uint32_t path[MSGINFO_MAX_SECTION_DEPTH][MSGINFO_MAX_SECTION_DEPTH];
    size_t len[MSGINFO_MAX_SECTION_DEPTH];
};

struct ent {
    uint32_t path[MSGINFO_MAX_SECTION_DEPTH];
    size_t np;
    uint32_t idx;
};

struct ents {
    struct ent *v;
    size_t n, cap;
};

static void add_ent(struct ents *e, const uint32_t *path, size_t np, uint32_t idx)
{
    if (np > MSGINFO_MAX_SECTION_DEPTH)
        return;
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->v = realloc(e->v, e->cap * sizeof *e->v);
        if (!e->v)
            exit(2);
    }
    memcpy(e->v[e->n].path, path, np * sizeof *path);
    e->v[e->n].np = np;
    e->v[e->n].idx = idx;
    e->n++;
}

/* Section paths inside the part `idx`, which is addressed by path[0..np).
 * Depth is bounded by MSGINFO_MAX_SECTION_DEPTH. */
static void walk(const struct msginfo *mi, uint32_t idx, uint32_t *path, size_t np,
                 struct ents *e)
{
    struct msginfo_part p, c;
    if (np >= MSGINFO_MAX_SECTION_DEPTH || msginfo_part(mi, idx, &p) < 0)
        return;
    uint32_t first = MSGINFO_NONE;
    if (p.type == MSGINFO_T_MULTIPART) {
        first = p.first_child;
    } else if (p.type == MSGINFO_T_MESSAGE && p.first_child != MSGINFO_NONE) {
        struct msginfo_part m;
        if (msginfo_part(mi, p.first_child, &m) < 0)
            return;
        if (m.type == MSGINFO_T_MULTIPART) {
            first = m.first_child;
        } else {
            path[np] = 1;
            add_ent(e, path, np + 1, p.first_child);
            walk(mi, p.first_child, path, np + 1, e);
            return;
        }
    }
    uint32_t k = 1;
    for (uint32_t ch = first; ch != MSGINFO_NONE; ch = c.next_sibling, k++) {
        if (msginfo_part(mi, ch, &c) < 0)
            return;
        path[np] = k;
        add_ent(e, path, np + 1, ch);
        walk(mi, ch, path, np + 1, e);
    }
}

static void section(const struct msginfo *mi, const unsigned char *m, const char *label,
                    const uint32_t *path, size_t np, enum msginfo_sect which)
{
    uint64_t off, len;
    uint32_t pi;
    bool exists;
    const char *err;
    if (msginfo_section(mi, path, np, which, &off, &len, &pi, &exists, &err) < 0)
        return;
    printf(" BODY[");
    put_path(path, np);
    printf("%s%s] ", np && *label ? "." : "", label);
    put_literal(m + off, exists ? len : 0);
}

static const char *const hf_names[] = {"From", "Subject", "Date", "To", "Cc", "Message-ID",
                                       "References"};
static const char *const hfn_names[] = {"Received"};

static int dump(const char *path, unsigned n)
{
    struct buf raw, canon, rec;
    const char *err = NULL;
    int prev_cr = 0, ret = 0;
    buf_init(&raw, MAX_FILE);
    buf_init(&canon, 2 * (size_t)MAX_FILE);
    buf_init(&rec, 0);
    if (read_file(path, &raw) < 0 ||
        canon_append(&canon, raw.data ? raw.data : (const unsigned char *)"", raw.len,
                     &prev_cr) < 0) {
        fprintf(stderr, "msginfo-dump: cannot read %s\n", path);
        ret = -1;
        goto out;
    }
    const unsigned char *m = canon.data ? canon.data : (const unsigned char *)"";
    struct msginfo mi;
    if (msginfo_build(m, canon.len, &rec, &err) < 0 ||
        msginfo_open(&mi, rec.data, rec.len, &err) < 0) {
        fprintf(stderr, "msginfo-dump: %s: %s\n", path, err);
        ret = -1;
        goto out;
    }
    struct ents e = {0};
    uint32_t pbuf[MSGINFO_MAX_SECTION_DEPTH];
    struct msginfo_part root;
    msginfo_part(&mi, 0, &root);
    if (root.type == MSGINFO_T_MULTIPART) {
        walk(&mi, 0, pbuf, 0, &e);
    } else {
        pbuf[0] = 1;
        add_ent(&e, pbuf, 1, 0);
        walk(&mi, 0, pbuf, 1, &e);
    }
    printf("# %u %s\t", n, path);
    for (size_t i = 0; i < e.n; i++) {
        struct msginfo_part p;
        msginfo_part(&mi, e.v[i].idx, &p);
        put_path(e.v[i].path, e.v[i].np);
        if (p.type == MSGINFO_T_MULTIPART)
            printf(":M ");
        else if (p.type == MSGINFO_T_MESSAGE)
            printf(":R ");
        else
            printf(":L%u ", p.cte);
    }
    printf("\r\n");

    const char *s;
    size_t sl;
    printf("* %u FETCH (RFC822.SIZE %llu ENVELOPE (", n, (unsigned long long)mi.size);
    msginfo_envelope(&mi, &s, &sl);
    fwrite(s, 1, sl, stdout);
    printf(") BODYSTRUCTURE (");
    msginfo_bodystructure(&mi, &s, &sl);
    fwrite(s, 1, sl, stdout);
    printf(") BODY (");
    msginfo_body(&mi, &s, &sl);
    fwrite(s, 1, sl, stdout);
    printf(")");
    section(&mi, m, "", NULL, 0, MSGINFO_S_ALL);
    section(&mi, m, "HEADER", NULL, 0, MSGINFO_S_HEADER);
    section(&mi, m, "TEXT", NULL, 0, MSGINFO_S_TEXT);
    for (int not_ = 0; not_ < 2; not_++) {
        uint64_t off, len;
        uint32_t pi;
        bool exists;
        struct buf f;
        buf_init(&f, 0);
        msginfo_section(&mi, NULL, 0, not_ ? MSGINFO_S_HEADER_FIELDS_NOT : MSGINFO_S_HEADER_FIELDS,
                        &off, &len, &pi, &exists, &err);
        if (not_)
            msginfo_header_filter(m + off, len, hfn_names, NULL, 1, true, &f);
        else
            msginfo_header_filter(m + off, len, hf_names, NULL, 7, false, &f);
        printf(not_ ? " BODY[HEADER.FIELDS.NOT (Received)] "
                    : " BODY[HEADER.FIELDS (From Subject Date To Cc Message-ID References)] ");
        put_literal(f.data ? f.data : (const unsigned char *)"", f.len);
        buf_free(&f);
    }
    for (size_t i = 0; i < e.n; i++) {
        struct msginfo_part p;
        msginfo_part(&mi, e.v[i].idx, &p);
        section(&mi, m, "", e.v[i].path, e.v[i].np, MSGINFO_S_ALL);
        section(&mi, m, "MIME", e.v[i].path, e.v[i].np, MSGINFO_S_MIME);
        if (p.type == MSGINFO_T_MESSAGE) {
            section(&mi, m, "HEADER", e.v[i].path, e.v[i].np, MSGINFO_S_HEADER);
            section(&mi, m, "TEXT", e.v[i].path, e.v[i].np, MSGINFO_S_TEXT);
        } else if (p.type != MSGINFO_T_MULTIPART && p.binary_size != UINT64_MAX) {
            printf(" BINARY.SIZE[");
            put_path(e.v[i].path, e.v[i].np);
            printf("] %llu", (unsigned long long)p.binary_size);
        }
    }
    printf(")\r\n");
    free(e.v);
out:
    buf_free(&raw);
    buf_free(&canon);
    buf_free(&rec);
    return ret;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    unsigned n = 0;
    int rc = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: msginfo-dump FILE|DIR...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            if (dump(argv[i], ++n) < 0)
                rc = 1;
            continue;
        }
        char **names = NULL;
        size_t nn = 0, cap = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            if (l < 4 || strcmp(de->d_name + l - 4, ".eml") != 0)
                continue;
            if (nn == cap) {
                cap = cap ? cap * 2 : 64;
                names = realloc(names, cap * sizeof *names);
                if (!names)
                    return 2;
            }
            size_t pl = strlen(argv[i]) + l + 2;
            names[nn] = malloc(pl);
            if (!names[nn])
                return 2;
            snprintf(names[nn++], pl, "%s/%s", argv[i], de->d_name);
        }
        closedir(d);
        qsort(names, nn, sizeof *names, cmpstr);
        for (size_t k = 0; k < nn; k++) {
            if (dump(names[k], ++n) < 0)
                rc = 1;
            free(names[k]);
        }
        free(names);
    }
    return rc;
}
