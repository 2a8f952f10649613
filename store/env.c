/* env.c — LMDB environment plumbing shared by the registry and instances:
 * opening with the multi-process settings, transaction retry rules, the
 * writer lock file, error messages. */
#include "store/admin.h"
#include "store/store_int.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

bool store_wait_for_lock;
void store_set_wait(bool wait) { store_wait_for_lock = wait; }

static _Thread_local char errbuf[1024];

const char *store_seterr(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return errbuf;
}

void store_cfg_default(struct store_cfg *cfg, const char *data_dir)
{
    cfg->data_dir = data_dir ? data_dir : LOCALSTATEDIR "/lib/coffer";
    cfg->map_size = (uint64_t)1 << 40;
    cfg->max_readers = 512;
}

const char *store_strerror(int code)
{
    switch (code) {
    case STORE_OK: return "success";
    case STORE_ENOTFOUND: return "not found";
    case STORE_ECORRUPT: return "store corruption detected (run `coffer verify`)";
    case STORE_EIO: return "I/O or LMDB error";
    case STORE_EINVAL: return "invalid name or argument";
    case STORE_EEXIST: return "already exists";
    case STORE_EBUSY: return "another coffer process is writing (use --wait)";
    case STORE_EFULL: return "store full (LMDB map or disk full)";
    case STORE_EVERSION: return "store schema version mismatch (run `coffer upgrade`)";
    case STORE_EREADERS: return "LMDB reader table full";
    default: return "unknown error";
    }
}

/* The reader table of the env whose read txn last found it full: every
 * process that opens an env adopts the table size of its lock.mdb, and
 * only a process opening it while no other has it open (LMDB then holds
 * the exclusive lock) may grow the file to its own max_readers. */
static _Thread_local char readers_hint[200] = " (reader table full)";

/* Map an LMDB/errno code to a STORE_E* code with a message naming `what`. */
int store_mdb_err(int rc, const char *what, const char **err)
{
    int code;
    const char *hint = "";
    switch (rc) {
    case MDB_NOTFOUND: code = STORE_ENOTFOUND; break;
    case MDB_MAP_FULL: code = STORE_EFULL;
        hint = " (raise map_size in the config)"; break;
    case ENOSPC: code = STORE_EFULL; hint = " (disk full)"; break;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
        code = STORE_ECORRUPT; break;
    case MDB_VERSION_MISMATCH: code = STORE_EVERSION; break;
    case MDB_READERS_FULL: code = STORE_EREADERS;
        hint = readers_hint; break;
    case EACCES: case EPERM: code = STORE_EIO;
        hint = " (files must belong to the coffer user)"; break;
    default: code = STORE_EIO; break;
    }
    const char *m = store_seterr("%s: %s%s", what, mdb_strerror(rc), hint);
    if (err)
        *err = m;
    return code;
}

int store_mkdir_p(const char *path, unsigned mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) && errno != EEXIST)
        return -1;
    return 0;
}

int store_env_open(const char *dir, const struct store_cfg *cfg, bool writable,
                   bool create, MDB_env **out, const char **err)
{
    MDB_env *env;
    int rc;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (!create || errno != ENOENT) {
            *err = store_seterr("%s: %s", dir, strerror(errno));
            return errno == ENOENT ? STORE_ENOTFOUND : STORE_EIO;
        }
        if (store_mkdir_p(dir, 0750)) {
            *err = store_seterr("cannot create %s: %s", dir, strerror(errno));
            return STORE_EIO;
        }
    }
    /* The sparse 1 TiB map does not fit every address space (memcheck,
     * small VMs, RLIMIT_AS): fall back to smaller maps. LMDB never maps
     * less than the data already committed. */
    static const uint64_t fallback[] = {(uint64_t)64 << 30, (uint64_t)8 << 30, (uint64_t)1 << 30};
    uint64_t size = cfg->map_size ? cfg->map_size : (uint64_t)1 << 40;
    for (;;) {
        if ((rc = mdb_env_create(&env)))
            return store_mdb_err(rc, "mdb_env_create", err);
        mdb_env_set_maxdbs(env, STORE_MAX_DBS);
        mdb_env_set_maxreaders(env, cfg->max_readers ? cfg->max_readers : 512);
        mdb_env_set_mapsize(env, size);
        /* NOTLS: read txns are tied to the inst handle, not the thread, so a
         * reset/renew cycle per command works; durable commits (no NOSYNC).
         * NORDAHEAD (MADV_RANDOM): B-tree access is random. */
        unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (writable ? 0 : MDB_RDONLY);
        rc = mdb_env_open(env, dir, flags, 0640);
        if (!rc)
            break;
        mdb_env_close(env);
        size_t i = 0;
        while (i < sizeof fallback / sizeof fallback[0] && fallback[i] >= size)
            i++;
        if ((rc != EINVAL && rc != ENOMEM) || i == sizeof fallback / sizeof fallback[0]) {
            char what[4200];
            snprintf(what, sizeof what, "cannot open LMDB environment %s", dir);
            return store_mdb_err(rc, what, err);
        }
        size = fallback[i];
    }
    *out = env;
    return STORE_OK;
}

/* Begin a transaction with the documented retries: READERS_FULL after
 * clearing stale readers (once), MAP_RESIZED by adopting the new size. */
int store_txn_begin(MDB_env *env, bool rdonly, MDB_txn **out)
{
    int rc, readers_retry = 0;
    for (int tries = 0; tries < 4; tries++) {
        rc = mdb_txn_begin(env, NULL, rdonly ? MDB_RDONLY : 0, out);
        if (rc == MDB_READERS_FULL && !readers_retry) {
            int dead;
            mdb_reader_check(env, &dead);
            readers_retry = 1;
            continue;
        }
        if (rc == MDB_READERS_FULL) {
            MDB_envinfo info;
            if (mdb_env_info(env, &info) == 0)
                snprintf(readers_hint, sizeof readers_hint,
                         " (reader table full: %u slots, %u in use; its size changes only "
                         "when no process has this store open)",
                         info.me_maxreaders, info.me_numreaders);
        }
        if (rc == MDB_MAP_RESIZED) {
            mdb_env_set_mapsize(env, 0);
            continue;
        }
        break;
    }
    return rc;
}

int store_lock(const char *dir, int *fd, const char **err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/write.lock", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (f < 0) {
        *err = store_seterr("cannot open lock file %s: %s", path, strerror(errno));
        return STORE_EIO;
    }
    if (flock(f, LOCK_EX | (store_wait_for_lock ? 0 : LOCK_NB)) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK) {
            *err = store_seterr("another coffer process is writing to %s; "
                                "try again later or pass --wait", dir);
            return STORE_EBUSY;
        }
        *err = store_seterr("flock %s: %s", path, strerror(e));
        return STORE_EIO;
    }
    *fd = f;
    return STORE_OK;
}

void store_unlock(int *fd)
{
    if (*fd >= 0) {
        flock(*fd, LOCK_UN);
        close(*fd);
        *fd = -1;
    }
}

bool store_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > STORE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i == 0 ? !alnum : !(alnum || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool writable_by(const struct stat *st, unsigned uid, unsigned gid)
{
    if (uid == 0)
        return true;
    if (st->st_uid == uid)
        return (st->st_mode & S_IWUSR) != 0;
    if (st->st_gid == gid)
        return (st->st_mode & S_IWGRP) != 0;
    return (st->st_mode & S_IWOTH) != 0;
}

static int check_env_lock(const char *envdir, unsigned uid, unsigned gid,
                          char *bad, size_t badlen)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/lock.mdb", envdir);
    if (stat(p, &st) == 0) {
        if (!writable_by(&st, uid, gid)) {
            snprintf(bad, badlen, "%s", p);
            return STORE_EIO;
        }
        return STORE_OK;
    }
    /* No lock.mdb yet: the first reader creates it, so the directory must
     * be writable. */
    if (stat(envdir, &st) == 0 && !writable_by(&st, uid, gid)) {
        snprintf(bad, badlen, "%s", envdir);
        return STORE_EIO;
    }
    return STORE_OK;
}

int store_check_lockfiles(const char *data_dir, unsigned uid, unsigned gid,
                          char *bad_path, size_t bad_path_len)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/registry", data_dir);
    int rc = check_env_lock(p, uid, gid, bad_path, bad_path_len);
    if (rc)
        return rc;
    snprintf(p, sizeof p, "%s/instances", data_dir);
    DIR *d = opendir(p);
    if (!d)
        return STORE_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!store_id_valid(de->d_name))
            continue;
        char e[4200];
        snprintf(e, sizeof e, "%s/instances/%s", data_dir, de->d_name);
        if ((rc = check_env_lock(e, uid, gid, bad_path, bad_path_len)))
            break;
    }
    closedir(d);
    return rc;
}
