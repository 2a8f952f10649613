/* import_maildir.c — Maildir and Maildir++ reader.
 *
 * The root's messages go to the target folder (INBOX by default). Maildir++
 * sub-folders (".Sent", ".Archives.2023", ".Entw&APw-rfe") have their
 * modified UTF-7 components decoded and '.' mapped to '/'; nested
 * sub-directories that are Maildirs themselves (the "fs" layout) keep their
 * relative path. Messages of cur/ and new/ are taken in file-name order
 * (delivery order for standard unique names); flags come from the ":2,"
 * info (S R F D; T = trashed is dropped), INTERNALDATE from the file mtime
 * (the delivery time). The source key is the unique name before ':' so a
 * message whose flags changed between runs is still found. */
#include "store/import_int.h"
#include "store/store_int.h"
#include "proto/mutf7.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

bool is_maildir(const char *path)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/cur", path);
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return true;
    snprintf(p, sizeof p, "%s/new", path);
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

struct mdent {
    char *name;
    bool in_new;
};

static int cmp_ent(const void *a, const void *b)
{
    const struct mdent *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int list_dir(const char *dir, bool in_new, struct mdent **v, size_t *n, size_t *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            struct mdent *nv = realloc(*v, *cap * sizeof **v);
            if (!nv) {
                closedir(d);
                return -1;
            }
            *v = nv;
        }
        if (!((*v)[*n].name = strdup(de->d_name))) {
            closedir(d);
            return -1;
        }
        (*v)[*n].in_new = in_new;
        (*n)++;
    }
    closedir(d);
    return 0;
}

static uint32_t info_flags(const char *name)
{
    const char *i = strstr(name, ":2,");
    uint32_t f = 0;
    if (!i)
        return 0;
    for (i += 3; *i; i++) {
        switch (*i) {
        case 'S': f |= STORE_F_SEEN; break;
        case 'R': f |= STORE_F_ANSWERED; break;
        case 'F': f |= STORE_F_FLAGGED; break;
        case 'D': f |= STORE_F_DRAFT; break;
        default: break;    /* T (trashed) and others: not archived */
        }
    }
    return f;
}

/* A file renamed under us (flags changed, new/ -> cur/): find it by its
 * unique name. */
static bool find_renamed(const char *mdir, const char *uniq, size_t ul, char *out, size_t cap)
{
    static const char *const sub[] = {"cur", "new"};
    for (int s = 0; s < 2; s++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", mdir, sub[s]);
        DIR *dh = opendir(d);
        if (!dh)
            continue;
        struct dirent *de;
        while ((de = readdir(dh))) {
            if (!strncmp(de->d_name, uniq, ul) && (de->d_name[ul] == 0 || de->d_name[ul] == ':')) {
                bool ok = snprintf(out, cap, "%s/%s", d, de->d_name) < (int)cap;
                closedir(dh);
                return ok;
            }
        }
        closedir(dh);
    }
    return false;
}

static int import_one(struct imp *im, const char *mdir, const char *folder)
{
    struct mdent *v = NULL;
    size_t n = 0, cap = 0;
    char d[4200];
    int rc = STORE_OK;
    snprintf(d, sizeof d, "%s/cur", mdir);
    if (list_dir(d, false, &v, &n, &cap) == 0) {
        snprintf(d, sizeof d, "%s/new", mdir);
        if (list_dir(d, true, &v, &n, &cap))
            rc = STORE_EIO;
    } else {
        rc = STORE_EIO;
    }
    if (rc)
        *im->err = store_seterr("%s: %s", d, strerror(errno));
    if (n)
        qsort(v, n, sizeof *v, cmp_ent);
    for (size_t i = 0; i < n && !rc; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s/%s", mdir, v[i].in_new ? "new" : "cur", v[i].name);
        const char *colon = strchr(v[i].name, ':');
        size_t ul = colon ? (size_t)(colon - v[i].name) : strlen(v[i].name);
        struct stat st;
        const char *flagsrc = v[i].name;
        char moved[4200];
        bool vanished = stat(p, &st) != 0;
        if (vanished && find_renamed(mdir, v[i].name, ul, moved, sizeof moved) &&
            stat(moved, &st) == 0) {
            snprintf(p, sizeof p, "%s", moved);
            flagsrc = strrchr(p, '/') + 1;
            vanished = false;
        }
        if (!vanished && (rc = imp_read_file(im, p, &vanished)) && !vanished)
            break;
        rc = STORE_OK;
        if (vanished) {
            imp_warn(im, "%s vanished during import", p);
            im->st->vanished++;
            continue;
        }
        uint32_t flags = info_flags(flagsrc);
        int64_t utc = (int64_t)st.st_mtime;
        int32_t tz = date_zone_offset_at(&im->zone, utc);
        char key[1 + 512];
        if (ul > 500)
            ul = 500;
        key[0] = 'd';
        memcpy(key + 1, v[i].name, ul);
        rc = imp_message(im, folder, im->file.data, im->file.len, flags, utc, tz, key, 1 + ul,
                         NULL, 0);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
    return rc;
}

/* ".Entw&APw-rfe.Sub" -> "Entwürfe/Sub" */
static void decode_plusplus(const char *name, char *out, size_t cap)
{
    struct buf b;
    buf_init(&b, 0);
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l) {
            if (b.len)
                buf_putc(&b, '/');
            size_t mark = b.len;
            if (mutf7_decode(s, l, &b)) {
                b.len = mark;      /* not valid mUTF-7: keep the octets */
                buf_append(&b, s, l);
            }
        }
        s += l;
        if (*s)
            s++;
    }
    snprintf(out, cap, "%s", b.len ? buf_cstr(&b) : "");
    buf_free(&b);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int maildir_tree(struct imp *im, const char *path, const char *prefix, unsigned depth)
{
    DIR *d = opendir(path);
    if (!d) {
        *im->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "cur") || !strcmp(nm, "new") ||
            !strcmp(nm, "tmp"))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        if ((names[n] = strdup(nm)))
            n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    int rc = STORE_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[4200], f[STORE_MBOX_MAX + 64], dec[STORE_MBOX_MAX + 1];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        struct stat st;
        if (stat(p, &st) || !S_ISDIR(st.st_mode))
            continue;
        bool plus = names[i][0] == '.';
        if (plus)
            decode_plusplus(names[i] + 1, dec, sizeof dec);
        else if (depth < 16)
            snprintf(dec, sizeof dec, "%s", names[i]);
        else
            continue;
        if (!dec[0])
            continue;
        imp_join(f, sizeof f, prefix, dec);
        imp_fix_users(im, f, sizeof f);
        if (is_maildir(p))
            rc = import_one(im, p, f);
        if (!rc && !plus)
            rc = maildir_tree(im, p, f, depth + 1);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int import_maildir(struct imp *im, const char *path, const char *folder)
{
    int rc = import_one(im, path, folder);
    if (rc)
        return rc;
    /* Maildir++: the root is INBOX and its sub-folders are siblings of it;
     * under an explicit folder they nest below it. */
    const char *prefix = strcmp(folder, "INBOX") ? folder : NULL;
    return maildir_tree(im, path, prefix, 0);
}
