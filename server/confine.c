#include "server/confine.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <dirent.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ABI 1 rights: enough to forbid everything we never do. */
#define LL_ALL (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | \
    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | \
    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK | \
    LANDLOCK_ACCESS_FS_MAKE_SYM)
/* LMDB readers open data.mdb and lock.mdb (read-write) and may create
 * lock.mdb. */
#define LL_DIR (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | \
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_MAKE_REG)

int confine_landlock_abi(void)
{
#ifdef SYS_landlock_create_ruleset
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v > 0 ? (int)v : 0;
#else
    return 0;
#endif
}

static int add_path(int rfd, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct landlock_path_beneath_attr pb = { .allowed_access = access, .parent_fd = fd };
    long r = syscall(SYS_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    close(fd);
    return r == 0 ? 0 : -1;
}

/* A ruleset fd, or -1. */
static int ruleset_new(void)
{
    struct landlock_ruleset_attr ra = { .handled_access_fs = LL_ALL };
    return (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof ra, 0);
}

/* Add urandom, enforce the ruleset (ok: its rules are complete) and close
 * it; 0 or -1. */
static int ruleset_apply(int rfd, bool ok, const char *urandom)
{
    int rc = -1;
    if (ok && (!urandom || add_path(rfd, urandom, LANDLOCK_ACCESS_FS_READ_FILE) == 0) &&
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
        syscall(SYS_landlock_restrict_self, rfd, 0) == 0)
        rc = 0;
    close(rfd);
    return rc;
}

int confine_landlock(const char *dir, const char *urandom)
{
    if (confine_landlock_abi() < 1)
        return 1;
    int rfd = ruleset_new();
    if (rfd < 0)
        return -1;
    return ruleset_apply(rfd, add_path(rfd, dir, LL_DIR) == 0, urandom);
}

/* A lock file that does not exist is skipped: that env cannot be opened by
 * a reader anyway (cofferd checks the lock files when it starts). */
static int add_lockfile(int rfd, const char *dir)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s/lock.mdb", dir) >= sizeof p)
        return 0;
    if (add_path(rfd, p, LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE) != 0)
        return errno == ENOENT ? 0 : -1;
    return 0;
}

int confine_landlock_store(const char *root, const char *urandom)
{
    if (confine_landlock_abi() < 1)
        return 1;
    int rfd = ruleset_new();
    if (rfd < 0)
        return -1;
    char dir[4096];
    const char *base = strcmp(root, "/") ? root : "";
    bool ok = add_path(rfd, root, LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR) == 0;
    snprintf(dir, sizeof dir, "%s/registry", base);
    ok = ok && add_lockfile(rfd, dir) == 0;
    snprintf(dir, sizeof dir, "%s/instances", base);
    DIR *d = ok ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && ok && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(dir, sizeof dir, "%s/instances/%s", base, e->d_name) < sizeof dir)
            ok = add_lockfile(rfd, dir) == 0;
    }
    if (d)
        closedir(d);
    return ruleset_apply(rfd, ok, urandom);
}

/* A session never starts a process, but it may start threads (the output
 * writer, server/outpipe.c). RLIMIT_NPROC cannot say that: it counts
 * threads too, per user over every session. A seccomp filter can: fork,
 * vfork and clone without CLONE_THREAD fail with EPERM; clone3 (whose flags
 * a filter cannot read) fails with ENOSYS so that glibc falls back to
 * clone; syscalls of another ABI (i386, x32) fail. 0, or -1 where there is
 * no filter for this architecture or the kernel refuses it. */
static int deny_new_processes(void)
{
#if defined(__x86_64__)
#define CF_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define CF_ARCH AUDIT_ARCH_AARCH64
#endif
#if defined(CF_ARCH) && defined(__NR_clone)
#define CF_RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define CF_ERR(e) CF_RET(SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CF_ARCH, 1, 0),
        CF_ERR(EPERM),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u /* x32 */, 0, 1),
        CF_ERR(EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 0, 1),
        CF_ERR(EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vfork, 0, 1),
        CF_ERR(EPERM),
#endif
#ifdef __NR_clone3
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        CF_ERR(ENOSYS),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3),
        /* the flags: low word of args[0] (both architectures are little-endian) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0),
        CF_ERR(EPERM),
        CF_RET(SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f };
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

int confine_process(const struct confine_opts *o, const char **root, const char **err)
{
    *err = NULL;
    *root = o->data_dir;
    if (o->chroot) {
        if (chroot(o->data_dir) != 0 || chdir("/") != 0) {
            *err = "chroot to data_dir failed";
            return -1;
        }
        *root = "/";
    } else if (chdir(o->data_dir) != 0) {
        *err = "cannot enter data_dir";
        return -1;
    }
    if (geteuid() == 0) {
        if (setgroups(1, &o->gid) != 0 || setresgid(o->gid, o->gid, o->gid) != 0
            || setresuid(o->uid, o->uid, o->uid) != 0) {
            *err = "cannot switch to the configured user/group";
            return -1;
        }
        if (o->uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
            *err = "privileges could be regained";
            return -1;
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        *err = "PR_SET_NO_NEW_PRIVS failed";
        return -1;
    }
    struct rlimit zero = { 0, 0 };
    setrlimit(RLIMIT_CORE, &zero);    /* no core file with a password in it */
    if (deny_new_processes() != 0)
        setrlimit(RLIMIT_NPROC, &zero);   /* no threads then, but no fork either */
    if (o->max_files) {
        struct rlimit nf = { o->max_files, o->max_files };
        setrlimit(RLIMIT_NOFILE, &nf);
    }
    return 0;
}
