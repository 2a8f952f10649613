/* export.c — `coffer export`: the archived octets back out, message for
 * message (duplicates included), as mbox, Maildir or .eml files.
 *
 * Without --folder DEST is a directory holding every folder (mbox:
 * <folder>.mbox files; maildir: a Maildir++ tree, INBOX at the root; eml:
 * one directory per folder). With --folder DEST is that folder's mbox file,
 * Maildir or directory. mbox messages imported from an mbox get their
 * original From_ line, separator and mboxrd quoting back, so import ->
 * export reproduces the mbox byte for byte. File names of eml/Maildir
 * exports start with the zero-padded UID, so file-name order is UID order. */
#include "store/admin.h"
#include "store/store_int.h"
#include "proto/mutf7.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct mb { char *name; struct mbox_rec rec; };
struct mblist { struct mb *v; size_t n, cap; const char *only; };

static int collect(void *ctx, const char *name, const struct mbox_rec *m)
{
    struct mblist *l = ctx;
    if (l->only && strcmp(l->only, name))
        return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        struct mb *nv = realloc(l->v, l->cap * sizeof *nv);
        if (!nv)
            return STORE_EIO;
        l->v = nv;
    }
    if (!(l->v[l->n].name = strdup(name)))
        return STORE_EIO;
    l->v[l->n++].rec = *m;
    return 0;
}

static int sink_buf(void *ctx, const void *p, size_t n)
{
    return buf_append(ctx, p, n) ? STORE_EIO : 0;
}

struct ex {
    struct inst *in;
    struct buf msg;
    struct buf tmp;
    const char **err;
    uint64_t n;
};

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Safe relative path of a folder: components "." / ".." are escaped. */
static void folder_path(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    const char *s = name;
    while (*s && o + 4 < cap) {
        const char *sl = strchr(s, '/');
        size_t l = sl ? (size_t)(sl - s) : strlen(s);
        if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.')) {
            out[o++] = '_';
        }
        for (size_t i = 0; i < l && o + 2 < cap; i++)
            out[o++] = s[i];
        s += l;
        if (*s && o + 2 < cap) {
            out[o++] = '/';
            s++;
        }
    }
    out[o] = 0;
}

static int mkparents(const char *path)
{
    char d[4200];
    snprintf(d, sizeof d, "%s", path);
    char *sl = strrchr(d, '/');
    if (!sl || sl == d)
        return 0;
    *sl = 0;
    return store_mkdir_p(d, 0750);
}

static int load_raw(struct ex *x, uint64_t msgnum)
{
    buf_reset(&x->msg);
    int rc = inst_msg_raw(x->in, msgnum, sink_buf, &x->msg);
    if (rc)
        *x->err = store_seterr("message %llu: %s", (unsigned long long)msgnum,
                               store_strerror(rc));
    return rc;
}

/* ---- mbox ---- */

struct mbox_walk { struct ex *x; int fd; uint32_t mbox_id; uint32_t last_uid; int rc; };

/* mboxrd quoting. froms == NULL: every "From " / ">From " … line gets one
 * more '>' (messages that did not come from an mbox). Otherwise lines with
 * '>'s get one more and bare "From " lines only at the recorded offsets,
 * which restores the source mbox exactly. */
static int mboxrd_quote(const unsigned char *s, size_t n, const unsigned char *froms,
                        uint32_t nfroms, struct buf *out)
{
    const unsigned char *end = s + n, *l = s;
    uint32_t fi = 0;
    buf_reset(out);
    while (l < end) {
        const unsigned char *nl = memchr(l, '\n', (size_t)(end - l));
        const unsigned char *le = nl ? nl + 1 : end;
        const unsigned char *q = l;
        while (q < le && *q == '>')
            q++;
        if (le - q >= 5 && !memcmp(q, "From ", 5)) {
            bool quote = true;
            if (froms && q == l) {
                uint64_t off = (uint64_t)(l - s);
                while (fi < nfroms && get_be64(froms + 8 * (size_t)fi) < off)
                    fi++;
                quote = fi < nfroms && get_be64(froms + 8 * (size_t)fi) == off;
            }
            if (quote && buf_putc(out, '>'))
                return -1;
        }
        if (buf_append(out, l, (size_t)(le - l)))
            return -1;
        l = le;
    }
    return 0;
}

static int mbox_one(void *ctx, const struct msg_ref *m)
{
    struct mbox_walk *w = ctx;
    struct ex *x = w->x;
    if ((w->rc = load_raw(x, m->msgnum)))
        return 1;
    unsigned char key[8];
    put_be32(key, w->mbox_id);
    put_be32(key + 4, m->uid);
    MDB_val k = {8, key}, v;
    bool requote = true;
    size_t trailer = 1;
    const void *fl = NULL;
    size_t fll = 0;
    const unsigned char *froms = NULL;
    uint32_t nfroms = 0;
    char synth[128];
    if (mdb_get(inst_cur_txn(x->in), x->in->dbi[DB_FROMLN], &k, &v) == 0 && v.mv_size >= 6 &&
        (uint64_t)get_be32((unsigned char *)v.mv_data + 2) * 8 + 6 <= v.mv_size) {
        const unsigned char *r = v.mv_data;
        requote = r[0] & 1;
        trailer = r[1];
        nfroms = get_be32(r + 2);
        froms = r + 6;
        fl = froms + 8 * (size_t)nfroms;
        fll = v.mv_size - 6 - 8 * (size_t)nfroms;
    } else {
        struct tm tm;
        time_t t = (time_t)(m->internaldate + (int64_t)m->internal_tz * 60);
        gmtime_r(&t, &tm);
        char d[64];
        strftime(d, sizeof d, "%a %b %e %H:%M:%S %Y", &tm);
        fll = (size_t)snprintf(synth, sizeof synth, "From MAILER-DAEMON %s\n", d);
        fl = synth;
    }
    const unsigned char *body = x->msg.data;
    size_t blen = x->msg.len;
    if (requote) {
        if (mboxrd_quote(body, blen, froms, nfroms, &x->tmp)) {
            w->rc = STORE_EIO;
            return 1;
        }
        body = x->tmp.data;
        blen = x->tmp.len;
    }
    /* Not the last message: the next From_ line must follow an empty line,
     * whatever the source had. */
    bool last = m->uid == w->last_uid;
    const char *sep = trailer == 2 ? "\r\n" : trailer == 1 ? "\n" : "";
    if (!last && trailer == 0)
        sep = blen && body[blen - 1] == '\n' ? "\n" : "\n\n";
    if (write_all(w->fd, fl, fll) || write_all(w->fd, body, blen) ||
        write_all(w->fd, sep, strlen(sep))) {
        *x->err = store_seterr("write: %s", strerror(errno));
        w->rc = STORE_EIO;
        return 1;
    }
    if (++x->n % 1000 == 0)
        inst_release_map(x->in);
    return 0;
}

static int last_uid_cb(void *ctx, const struct msg_ref *m)
{
    *(uint32_t *)ctx = m->uid;
    return 0;
}

static int export_mbox_file(struct ex *x, const struct mb *mb, const char *path)
{
    if (mkparents(path)) {
        *x->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        *x->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    struct mbox_walk w = {x, fd, mb->rec.id, 0, 0};
    /* UIDs are dense from the walk's view only at the end: find the last. */
    inst_msgs_walk(x->in, mb->rec.id, mb->rec.uidnext > 1 ? mb->rec.uidnext - 1 : 1,
                   last_uid_cb, &w.last_uid);
    int rc = inst_msgs_walk(x->in, mb->rec.id, 1, mbox_one, &w);
    if (close(fd) && !w.rc) {
        *x->err = store_seterr("%s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    if (w.rc)
        return w.rc;
    return rc < 0 ? rc : STORE_OK;
}

/* ---- eml / maildir ---- */

struct file_walk { struct ex *x; const char *dir; bool maildir; uint32_t mbox_id; int rc; };

static int file_one(void *ctx, const struct msg_ref *m)
{
    struct file_walk *w = ctx;
    struct ex *x = w->x;
    if ((w->rc = load_raw(x, m->msgnum)))
        return 1;
    char p[4300];
    if (w->maildir) {
        char fl[8];
        size_t n = 0;
        if (m->flags & STORE_F_DRAFT) fl[n++] = 'D';
        if (m->flags & STORE_F_FLAGGED) fl[n++] = 'F';
        if (m->flags & STORE_F_ANSWERED) fl[n++] = 'R';
        if (m->flags & STORE_F_SEEN) fl[n++] = 'S';
        fl[n] = 0;
        snprintf(p, sizeof p, "%s/cur/%010u.M%lld.coffer:2,%s", w->dir, m->uid,
                 (long long)m->internaldate, fl);
    } else {
        snprintf(p, sizeof p, "%s/%010u.eml", w->dir, m->uid);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || write_all(fd, x->msg.data, x->msg.len) || close(fd)) {
        *x->err = store_seterr("%s: %s", p, strerror(errno));
        if (fd >= 0)
            close(fd);
        w->rc = STORE_EIO;
        return 1;
    }
    struct timeval tv[2] = {{(time_t)m->internaldate, 0}, {(time_t)m->internaldate, 0}};
    utimes(p, tv);
    if (++x->n % 1000 == 0)
        inst_release_map(x->in);
    return 0;
}

static int export_files(struct ex *x, const struct mb *mb, const char *dir, bool maildir)
{
    char d[4200];
    int bad = store_mkdir_p(dir, 0750);
    if (maildir) {
        static const char *const sub[] = {"cur", "new", "tmp"};
        for (int i = 0; i < 3 && !bad; i++) {
            snprintf(d, sizeof d, "%s/%s", dir, sub[i]);
            bad = store_mkdir_p(d, 0750);
        }
    }
    if (bad) {
        *x->err = store_seterr("%s: %s", dir, strerror(errno));
        return STORE_EIO;
    }
    struct file_walk w = {x, dir, maildir, mb->rec.id, 0};
    int rc = inst_msgs_walk(x->in, mb->rec.id, 1, file_one, &w);
    if (w.rc)
        return w.rc;
    return rc < 0 ? rc : STORE_OK;
}

/* Maildir++ directory name of a folder: ".A.B" with mUTF-7 components. */
static int plusplus_name(const char *folder, char *out, size_t cap)
{
    struct buf b;
    buf_init(&b, 0);
    const char *s = folder;
    int rc = 0;
    while (*s && !rc) {
        const char *sl = strchr(s, '/');
        size_t l = sl ? (size_t)(sl - s) : strlen(s);
        rc = buf_putc(&b, '.') || mutf7_encode(s, l, &b);
        s += l;
        if (*s)
            s++;
    }
    if (!rc && b.len < cap)
        memcpy(out, buf_cstr(&b), b.len + 1);
    else
        rc = -1;
    buf_free(&b);
    return rc;
}

int store_export(struct inst *in, const char *owner, const char *folder, enum export_fmt fmt,
                 const char *dest, uint64_t *nmsgs, const char **err)
{
    const char *e = NULL;
    if (!err)
        err = &e;
    struct mblist l = {0};
    l.only = folder;
    struct ex x;
    memset(&x, 0, sizeof x);
    x.in = in;
    x.err = err;
    buf_init(&x.msg, STORE_MSG_MAX + 1);
    buf_init(&x.tmp, 2 * (size_t)STORE_MSG_MAX);
    int rc = inst_rd_begin(in);
    struct user_rec u;
    if (!rc && inst_user_get(in, owner, &u)) {
        *err = store_seterr("unknown user '%s' in instance '%s'", owner, in->id);
        rc = STORE_ENOTFOUND;
    }
    if (!rc && (rc = inst_mbox_list(in, owner, collect, &l)))
        *err = store_seterr("listing mailboxes: %s", store_strerror(rc));
    if (!rc && folder && l.n == 0) {
        *err = store_seterr("user '%s' has no folder '%s'", owner, folder);
        rc = STORE_ENOTFOUND;
    }
    if (!rc && fmt == EXPORT_MAILDIR && !folder) {
        /* The root is a Maildir (INBOX) even when INBOX is empty. */
        static const char *const sub[] = {"cur", "new", "tmp"};
        for (int i = 0; i < 3 && !rc; i++) {
            char d[4200];
            snprintf(d, sizeof d, "%s/%s", dest, sub[i]);
            if (store_mkdir_p(d, 0750)) {
                *err = store_seterr("%s: %s", d, strerror(errno));
                rc = STORE_EIO;
            }
        }
    }
    for (size_t i = 0; i < l.n && !rc; i++) {
        char rel[STORE_MBOX_MAX + 64], p[4200];
        folder_path(l.v[i].name, rel, sizeof rel);
        switch (fmt) {
        case EXPORT_MBOX:
            if (folder)
                snprintf(p, sizeof p, "%s", dest);
            else if (snprintf(p, sizeof p, "%s/%s.mbox", dest, rel) >= (int)sizeof p)
                rc = STORE_EINVAL;
            if (!rc)
                rc = export_mbox_file(&x, &l.v[i], p);
            break;
        case EXPORT_EML:
            if (folder)
                snprintf(p, sizeof p, "%s", dest);
            else if (snprintf(p, sizeof p, "%s/%s", dest, rel) >= (int)sizeof p)
                rc = STORE_EINVAL;
            if (!rc)
                rc = export_files(&x, &l.v[i], p, false);
            break;
        case EXPORT_MAILDIR: {
            char pp[STORE_MBOX_MAX * 3];
            if (folder || !strcmp(l.v[i].name, "INBOX"))
                snprintf(p, sizeof p, "%s", dest);
            else if (plusplus_name(l.v[i].name, pp, sizeof pp) ||
                     snprintf(p, sizeof p, "%s/%s", dest, pp) >= (int)sizeof p)
                rc = STORE_EINVAL;
            if (!rc)
                rc = export_files(&x, &l.v[i], p, true);
            break;
        }
        }
        if (rc == STORE_EINVAL && !*err)
            *err = store_seterr("folder name too long for a path: %s", l.v[i].name);
    }
    inst_rd_end(in);
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].name);
    free(l.v);
    buf_free(&x.msg);
    buf_free(&x.tmp);
    if (nmsgs)
        *nmsgs = x.n;
    return rc;
}
