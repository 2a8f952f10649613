/* confine.h — how a connection child gives up privileges before it reads a
 * client byte: chroot to data_dir (when started as root), the configured
 * user/group, no_new_privs, resource limits, and Landlock where the kernel
 * has it. */
#ifndef COFFER_CONFINE_H
#define COFFER_CONFINE_H
#include <stdbool.h>
#include <sys/types.h>

/* Landlock ABI version, or 0 when the kernel lacks it. */
int confine_landlock_abi(void);
/* Landlock: from now on only paths beneath dir (read/write files, list,
 * create regular files) and reading urandom (may be NULL) can be opened.
 * Returns 0, 1 when Landlock is unavailable, -1 on error. */
int confine_landlock(const char *dir, const char *urandom);
/* Landlock before login, over the whole store under root: read every file
 * and directory, but write only the LMDB lock files that exist now
 * (registry/lock.mdb, instances/<id>/lock.mdb; readers must write their
 * reader slot) and create nothing. A later confine_landlock() narrows
 * this further; the two layers intersect, so after login too only the
 * instance's lock.mdb is writable. Returns as confine_landlock(). */
int confine_landlock_store(const char *root, const char *urandom);

struct confine_opts {
    const char *data_dir;
    uid_t uid;
    gid_t gid;
    bool chroot;               /* only possible as root */
    unsigned max_files;        /* RLIMIT_NOFILE */
};
/* On success *root is the data_dir as the process now sees it ("/" after
 * chroot). */
int confine_process(const struct confine_opts *o, const char **root, const char **err);

#endif
