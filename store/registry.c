/* registry.c — the registry env: instance ids and aliases. */
#include "store/admin.h"
#include "store/store_int.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

int inst_open_create(const struct store_cfg *cfg, const char *id, struct inst **out,
                     const char **err);

static void lower_id(const char *in, char out[STORE_ID_MAX + 1])
{
    size_t i = 0;
    for (; in[i] && i < STORE_ID_MAX; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = 0;
    if (in[i])      /* too long: make it invalid */
        out[0] = 0;
}

int registry_open(const struct store_cfg *cfg, bool writable, struct registry **out,
                  const char **err)
{
    struct registry *r = calloc(1, sizeof *r);
    const char *e = NULL;
    if (!err)
        err = &e;
    if (!r) {
        *err = "out of memory";
        return STORE_EIO;
    }
    r->lockfd = -1;
    r->writable = writable;
    snprintf(r->data_dir, sizeof r->data_dir, "%s", cfg->data_dir);
    r->cfg = *cfg;
    r->cfg.data_dir = r->data_dir;
    snprintf(r->dir, sizeof r->dir, "%s/registry", cfg->data_dir);
    int rc;
    if (writable) {
        if (store_mkdir_p(r->dir, 0750)) {
            *err = store_seterr("cannot create %s: %s", r->dir, strerror(errno));
            free(r);
            return STORE_EIO;
        }
        if ((rc = store_lock(r->dir, &r->lockfd, err))) {
            free(r);
            return rc;
        }
    }
    rc = store_env_open(r->dir, cfg, writable, writable, &r->env, err);
    if (rc) {
        if (rc == STORE_ENOTFOUND)
            *err = store_seterr("no Coffer store at %s (create one with `coffer instance add`)",
                                cfg->data_dir);
        store_unlock(&r->lockfd);
        free(r);
        return rc;
    }
    MDB_txn *txn;
    rc = store_txn_begin(r->env, !writable, &txn);
    if (!rc) {
        unsigned f = writable ? MDB_CREATE : 0;
        rc = mdb_dbi_open(txn, "inst", f, &r->inst);
        if (!rc)
            rc = mdb_dbi_open(txn, "alias", f, &r->alias);
        if (!rc)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc) {
        rc = store_mdb_err(rc, "registry", err);
        registry_close(r);
        return rc;
    }
    *out = r;
    return STORE_OK;
}

void registry_close(struct registry *r)
{
    if (!r)
        return;
    if (r->env)
        mdb_env_close(r->env);
    store_unlock(&r->lockfd);
    free(r);
}

/* Instance record: u8 disabled, u64 created (unix seconds). */
static int inst_rec(MDB_txn *txn, struct registry *r, const char *id, bool *disabled)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, r->inst, &k, &v);
    if (rc)
        return rc;
    *disabled = v.mv_size >= 1 && ((unsigned char *)v.mv_data)[0] != 0;
    return 0;
}

int registry_lookup(struct registry *r, const char *name, char id[STORE_ID_MAX + 1],
                    bool *disabled)
{
    char n[STORE_ID_MAX + 1];
    lower_id(name, n);
    if (!store_id_valid(n))
        return STORE_ENOTFOUND;
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, true, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", NULL);
    bool dis = false;
    rc = inst_rec(txn, r, n, &dis);
    if (rc == MDB_NOTFOUND) {
        MDB_val k = {strlen(n), n}, v;
        rc = mdb_get(txn, r->alias, &k, &v);
        if (!rc && v.mv_size <= STORE_ID_MAX) {
            memcpy(n, v.mv_data, v.mv_size);
            n[v.mv_size] = 0;
            rc = inst_rec(txn, r, n, &dis);
        }
    }
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc)
        return store_mdb_err(rc, "registry", NULL);
    strcpy(id, n);
    *disabled = dis;
    return STORE_OK;
}

int registry_resolve(struct registry *r, const char *name, char id[STORE_ID_MAX + 1])
{
    bool dis;
    int rc = registry_lookup(r, name, id, &dis);
    if (rc == STORE_OK && dis)
        return STORE_ENOTFOUND;
    return rc;
}

static int bad_id(const char *what, const char *s, const char **err)
{
    *err = store_seterr("invalid %s '%s': use 1-63 characters [a-z0-9._-], "
                        "starting with a letter or digit", what, s);
    return STORE_EINVAL;
}

static int reg_commit(MDB_txn *txn, int rc, const char **err)
{
    if (rc) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc, "registry", err);
    }
    rc = mdb_txn_commit(txn);
    return rc ? store_mdb_err(rc, "registry commit", err) : STORE_OK;
}

int registry_instance_add(struct registry *r, const char *name, const char **err)
{
    char id[STORE_ID_MAX + 1], tmp[STORE_ID_MAX + 1];
    bool dis;
    lower_id(name, id);
    if (!store_id_valid(id))
        return bad_id("instance id", name, err);
    if (registry_lookup(r, id, tmp, &dis) == STORE_OK) {
        *err = store_seterr("instance or alias '%s' already exists", id);
        return STORE_EEXIST;
    }
    struct inst *in;
    int rc = inst_open_create(&r->cfg, id, &in, err);
    if (rc)
        return rc;
    inst_close(in);
    MDB_txn *txn;
    if ((rc = store_txn_begin(r->env, false, &txn)))
        return store_mdb_err(rc, "registry", err);
    unsigned char rec[9] = {0};
    put_be64(rec + 1, (uint64_t)time(NULL));
    MDB_val k = {strlen(id), id}, v = {sizeof rec, rec};
    return reg_commit(txn, mdb_put(txn, r->inst, &k, &v, MDB_NOOVERWRITE), err);
}

/* Register an existing env (restore). */
int registry_instance_register(struct registry *r, const char *id, const char **err);
int registry_instance_register(struct registry *r, const char *id, const char **err)
{
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, false, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", err);
    unsigned char rec[9] = {0};
    put_be64(rec + 1, (uint64_t)time(NULL));
    MDB_val k = {strlen(id), (void *)id}, v = {sizeof rec, rec};
    return reg_commit(txn, mdb_put(txn, r->inst, &k, &v, MDB_NOOVERWRITE), err);
}

int registry_instance_list(struct registry *r,
                           int (*cb)(void *ctx, const char *id, bool disabled,
                                     const char *aliases), void *ctx)
{
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, true, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", NULL);
    MDB_cursor *c, *ca;
    mdb_cursor_open(txn, r->inst, &c);
    mdb_cursor_open(txn, r->alias, &ca);
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc && !ret;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        char id[STORE_ID_MAX + 1], aliases[2048] = "";
        size_t al = 0;
        if (k.mv_size > STORE_ID_MAX)
            continue;
        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = 0;
        MDB_val ak, av;
        for (int r2 = mdb_cursor_get(ca, &ak, &av, MDB_FIRST); !r2;
             r2 = mdb_cursor_get(ca, &ak, &av, MDB_NEXT)) {
            if (av.mv_size == k.mv_size && !memcmp(av.mv_data, k.mv_data, k.mv_size) &&
                al + ak.mv_size + 2 < sizeof aliases) {
                if (al)
                    aliases[al++] = ',';
                memcpy(aliases + al, ak.mv_data, ak.mv_size);
                al += ak.mv_size;
                aliases[al] = 0;
            }
        }
        bool dis = v.mv_size >= 1 && ((unsigned char *)v.mv_data)[0];
        ret = cb(ctx, id, dis, aliases);
    }
    mdb_cursor_close(c);
    mdb_cursor_close(ca);
    mdb_txn_abort(txn);
    return ret;
}

int registry_alias_add(struct registry *r, const char *idname, const char *aname,
                       const char **err)
{
    char id[STORE_ID_MAX + 1], alias[STORE_ID_MAX + 1], tmp[STORE_ID_MAX + 1];
    bool dis;
    lower_id(aname, alias);
    if (!store_id_valid(alias))
        return bad_id("alias", aname, err);
    if (registry_lookup(r, idname, id, &dis)) {
        *err = store_seterr("unknown instance '%s'", idname);
        return STORE_ENOTFOUND;
    }
    if (registry_lookup(r, alias, tmp, &dis) == STORE_OK) {
        *err = store_seterr("'%s' is already an instance id or alias (of '%s')", alias, tmp);
        return STORE_EEXIST;
    }
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, false, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", err);
    MDB_val k = {strlen(alias), alias}, v = {strlen(id), id};
    return reg_commit(txn, mdb_put(txn, r->alias, &k, &v, MDB_NOOVERWRITE), err);
}

int registry_alias_rm(struct registry *r, const char *idname, const char *aname,
                      const char **err)
{
    char id[STORE_ID_MAX + 1], alias[STORE_ID_MAX + 1];
    bool dis;
    lower_id(aname, alias);
    if (registry_lookup(r, idname, id, &dis)) {
        *err = store_seterr("unknown instance '%s'", idname);
        return STORE_ENOTFOUND;
    }
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, false, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", err);
    MDB_val k = {strlen(alias), alias}, v;
    rc = mdb_get(txn, r->alias, &k, &v);
    if (rc || v.mv_size != strlen(id) || memcmp(v.mv_data, id, v.mv_size)) {
        mdb_txn_abort(txn);
        *err = store_seterr("'%s' is not an alias of instance '%s'", alias, id);
        return STORE_ENOTFOUND;
    }
    return reg_commit(txn, mdb_del(txn, r->alias, &k, NULL), err);
}

int registry_instance_disable(struct registry *r, const char *name, bool disabled,
                              const char **err)
{
    char id[STORE_ID_MAX + 1];
    bool dis;
    if (registry_lookup(r, name, id, &dis)) {
        *err = store_seterr("unknown instance '%s'", name);
        return STORE_ENOTFOUND;
    }
    MDB_txn *txn;
    int rc = store_txn_begin(r->env, false, &txn);
    if (rc)
        return store_mdb_err(rc, "registry", err);
    MDB_val k = {strlen(id), id}, v;
    unsigned char rec[9] = {0};
    rc = mdb_get(txn, r->inst, &k, &v);
    if (!rc) {
        memcpy(rec, v.mv_data, v.mv_size < sizeof rec ? v.mv_size : sizeof rec);
        rec[0] = disabled;
        v.mv_data = rec;
        v.mv_size = sizeof rec;
        rc = mdb_put(txn, r->inst, &k, &v, 0);
    }
    return reg_commit(txn, rc, err);
}

static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rc |= rm_tree(p);
        else if (unlink(p))
            rc = -1;
    }
    closedir(d);
    if (rmdir(path))
        rc = -1;
    return rc;
}

static int count_cb(void *ctx, const struct user_rec *u)
{
    (void)u;
    ++*(unsigned long *)ctx;
    return 0;
}

int registry_instance_rm(struct registry *r, const char *name, bool force, const char **err)
{
    char id[STORE_ID_MAX + 1];
    bool dis;
    if (registry_lookup(r, name, id, &dis)) {
        *err = store_seterr("unknown instance '%s'", name);
        return STORE_ENOTFOUND;
    }
    struct inst *in = NULL;
    int rc = inst_open(&r->cfg, id, true, &in, err);
    if (rc && rc != STORE_ENOTFOUND && !force)
        return rc;
    if (in && !force) {
        unsigned long n = 0;
        inst_rd_begin(in);
        inst_user_list(in, count_cb, &n);
        MDB_stat ms;
        if (mdb_stat(inst_cur_txn(in), in->dbi[DB_MSG], &ms) == 0)
            n += ms.ms_entries;
        inst_rd_end(in);
        if (n) {
            inst_close(in);
            *err = store_seterr("instance '%s' has users or messages; "
                                "use --force to remove it and all its mail", id);
            return STORE_EEXIST;
        }
    }
    MDB_txn *txn;
    if ((rc = store_txn_begin(r->env, false, &txn))) {
        inst_close(in);
        return store_mdb_err(rc, "registry", err);
    }
    MDB_val k = {strlen(id), id}, v;
    rc = mdb_del(txn, r->inst, &k, NULL);
    MDB_cursor *c;
    mdb_cursor_open(txn, r->alias, &c);
    for (int r2 = mdb_cursor_get(c, &k, &v, MDB_FIRST); !r2 && !rc;
         r2 = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (v.mv_size == strlen(id) && !memcmp(v.mv_data, id, v.mv_size))
            rc = mdb_cursor_del(c, 0);
    mdb_cursor_close(c);
    rc = reg_commit(txn, rc, err);
    if (rc) {
        inst_close(in);
        return rc;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/instances/%s", r->data_dir, id);
    inst_close(in);   /* drops the write lock; the registry no longer names it */
    if (rm_tree(dir)) {
        *err = store_seterr("instance removed from the registry, but %s could not be "
                            "deleted completely: %s", dir, strerror(errno));
        return STORE_EIO;
    }
    return STORE_OK;
}
