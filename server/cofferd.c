/* cofferd — the Coffer IMAP server. The parent binds, loads keys, accepts
 * and forks; it never reads a client byte and never opens a store. Each
 * child confines itself (chroot/Landlock, the coffer user) before the
 * first client byte and runs one IMAP session. */
#include "proto/search.h"
#include "server/auth.h"
#include "server/confine.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/log.h"
#include "server/penalty.h"
#include "server/session.h"
#include "server/tls.h"
#include "store/store.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 64

struct listener {
    int fd;
    bool tls;
};

struct child {
    pid_t pid;
    bool dead;          /* reaped; its queued reports are still read */
    char ip[64];
};

static struct cofferd_cfg cfg;
static const char *cfg_path = SYSCONFDIR "/coffer/cofferd.conf";
static struct tls_set *tls;
static struct listener lst[MAX_LISTENERS];
static unsigned nlst;
static struct child *kids;
static unsigned nkids, kids_cap;
static uid_t run_uid;
static gid_t run_gid;
/* Children's login reports: a datagram socketpair whose parent end has
 * SO_PASSCRED, so each report comes with the sender's pid from the kernel
 * (an unprivileged child cannot claim another). */
static int report_sock[2] = { -1, -1 };
static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_hup, got_term, got_chld, got_usr1;
static volatile int child_shutdown;
static unsigned char install_secret[32];
static bool foreground;

/* ---------- systemd ---------- */

static void sd_notify_msg(const char *msg)
{
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || (p[0] != '/' && p[0] != '@'))
        return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(p);
    if (len >= sizeof sa.sun_path)
        return;
    memcpy(sa.sun_path, p, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

/* Socket activation: LISTEN_FDS named imap / imaps (LISTEN_FDNAMES). */
static int take_systemd_sockets(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || (pid_t)strtol(pid, NULL, 10) != getpid())
        return 0;
    long n = strtol(fds, NULL, 10);
    if (n <= 0 || n > MAX_LISTENERS)
        return 0;
    char names[1024] = "";
    const char *nm = getenv("LISTEN_FDNAMES");
    if (nm)
        snprintf(names, sizeof names, "%s", nm);
    char *save = NULL, *tok = strtok_r(names, ":", &save);
    for (long i = 0; i < n; i++) {
        int fd = 3 + (int)i;
        bool is_tls = tok && !strcmp(tok, "imaps");
        if (tok && strcmp(tok, "imap") && strcmp(tok, "imaps"))
            log_warn("socket activation: fd %d has unknown name '%s', treated as imap", fd, tok);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        lst[nlst].fd = fd;
        lst[nlst].tls = is_tls;
        nlst++;
        tok = strtok_r(NULL, ":", &save);
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)n;
}

/* ---------- listeners ---------- */

static int bind_addr(const struct cfg_addr *a, bool is_tls, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int g = getaddrinfo(a->host[0] ? a->host : NULL, a->port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", a->host, gai_strerror(g));
        return -1;
    }
    int bound = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (nlst >= MAX_LISTENERS)
            break;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 511) != 0) {
            snprintf(err, errlen, "cannot listen on [%s]:%s: %s", a->host[0] ? a->host : "*",
                     a->port, strerror(errno));
            close(fd);
            if (a->host[0]) {
                freeaddrinfo(res);
                return -1;
            }
            continue;   /* wildcard: the other family may still work */
        }
        lst[nlst].fd = fd;
        lst[nlst].tls = is_tls;
        nlst++;
        bound++;
    }
    freeaddrinfo(res);
    if (!bound) {
        if (!err[0])
            snprintf(err, errlen, "cannot listen on %s:%s", a->host, a->port);
        return -1;
    }
    return 0;
}

static int open_listeners(char *err, size_t errlen)
{
    if (take_systemd_sockets() > 0)
        return 0;
    err[0] = 0;
    for (unsigned i = 0; i < cfg.n_listen; i++)
        if (bind_addr(&cfg.listen[i], false, err, errlen) != 0)
            return -1;
    for (unsigned i = 0; i < cfg.n_listen_tls; i++)
        if (bind_addr(&cfg.listen_tls[i], true, err, errlen) != 0)
            return -1;
    return 0;
}

/* ---------- preparation (parent, before any fork) ---------- */

static int resolve_ids(char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(cfg.user);
    if (!pw) {
        snprintf(err, errlen, "user '%s' does not exist", cfg.user);
        return -1;
    }
    struct group *gr = getgrnam(cfg.group);
    if (!gr) {
        snprintf(err, errlen, "group '%s' does not exist", cfg.group);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "user '%s' is root: sessions must not run as root", cfg.user);
        return -1;
    }
    run_uid = pw->pw_uid;
    run_gid = gr->gr_gid;
    return 0;
}

static int load_secret(char *err, size_t errlen)
{
    char path[CFG_PATH_MAX + 32];
    if (cfg.auth_secret_file[0])
        snprintf(path, sizeof path, "%s", cfg.auth_secret_file);
    else
        snprintf(path, sizeof path, "%s/auth.secret", cfg.data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        unsigned char s[32];
        if (RAND_bytes(s, sizeof s) != 1) {
            snprintf(err, errlen, "cannot generate %s", path);
            return -1;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || write(fd, s, sizeof s) != (ssize_t)sizeof s || fsync(fd) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, install_secret, sizeof install_secret);
    close(fd);
    if (n < 16) {
        snprintf(err, errlen, "%s holds fewer than 16 octets", path);
        return -1;
    }
    return 0;
}

/* libsasl2 seeds SCRAM nonces from /dev/urandom, opened lazily: inside the
 * chroot it must exist as <data_dir>/dev/urandom. */
static int prepare_urandom(char *err, size_t errlen)
{
    char dir[CFG_PATH_MAX + 8], path[CFG_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/dev", cfg.data_dir);
    snprintf(path, sizeof path, "%s/dev/urandom", cfg.data_dir);
    if (geteuid() == 0) {
        struct stat st;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
        if (lstat(path, &st) != 0) {
            if (mknod(path, S_IFCHR | 0666, makedev(1, 9)) != 0) {
                snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
                return -1;
            }
        } else if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 9)) {
            snprintf(err, errlen, "%s exists but is not the urandom device", path);
            return -1;
        }
    } else {
        snprintf(path, sizeof path, "/dev/urandom");
    }
    unsigned char b[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b) {
        snprintf(err, errlen, "%s is not usable (nodev mount?): %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int prepare(bool check_only, char *err, size_t errlen)
{
    struct stat st;
    if (stat(cfg.data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data_dir %s is not a directory", cfg.data_dir);
        return -1;
    }
    if (geteuid() == 0 && resolve_ids(err, errlen) != 0)
        return -1;
    struct tls_set *t = NULL;
    if (tls_build(&cfg, &t, err, errlen) != 0)
        return -1;
    if (check_only) {
        tls_free(t);
        return 0;
    }
    tls = t;
    if (geteuid() == 0) {
        char bad[CFG_PATH_MAX];
        bad[0] = 0;
        if (store_check_lockfiles(cfg.data_dir, run_uid, run_gid, bad, sizeof bad) != STORE_OK) {
            snprintf(err, errlen, "the session user cannot write %s (chown it to %s)",
                     bad[0] ? bad : "a lock file", cfg.user);
            return -1;
        }
    }
    if (prepare_urandom(err, errlen) != 0 || load_secret(err, errlen) != 0)
        return -1;
    const char *e = NULL;
    if (search_charsets_init(&e) != 0) {
        snprintf(err, errlen, "charset conversion setup failed: %s", e ? e : "?");
        return -1;
    }
    setenv("TZ", cfg.default_timezone, 1);
    tzset();
    struct auth_config ac = {
        .hostname = cfg.hostname,
        .allow_plaintext = cfg.allow_plaintext_auth,
        .max_failures = cfg.max_auth_failures,
        .failure_delay_ms = cfg.auth_failure_delay_ms,
        .concurrency = cfg.auth_concurrency,
        .secret = install_secret,
        .secret_len = sizeof install_secret,
    };
    if (auth_global_init(&ac, &e) != 0) {
        snprintf(err, errlen, "authentication setup failed: %s", e);
        return -1;
    }
    /* auth keeps its own derived key and ignores the secret on reload:
     * the raw secret need not reach any child. */
    OPENSSL_cleanse(install_secret, sizeof install_secret);
    return 0;
}

/* ---------- the connection child ---------- */

static void child_sig(int sig)
{
    (void)sig;
    child_shutdown = 1;
}

struct confine_ctx {
    char root[CFG_PATH_MAX];
    char urandom[CFG_PATH_MAX + 16];
    bool landlock;          /* enforced (else chroot and the user only) */
    struct conn *conn;
};

static int confine_instance(void *ctx, const char *instance_id)
{
    struct confine_ctx *cc = ctx;
    char dir[CFG_PATH_MAX + STORE_ID_MAX + 16];
    if (strchr(instance_id, '/') || instance_id[0] == '.')
        return -1;
    snprintf(dir, sizeof dir, "%s/instances/%s", strcmp(cc->root, "/") ? cc->root : "",
             instance_id);
    if (cc->landlock && confine_landlock(dir, cc->urandom) < 0) {
        log_err("Landlock for instance %s failed: %s", instance_id, strerror(errno));
        return -1;
    }
    /* Logged in: no STARTTLS and no AUTHENTICATE can follow, so neither the
     * ticket keys (already wiped after a handshake) nor the fake-SCRAM key
     * has any use left in this process. */
    tls_tickets_forget();
    auth_forget_secret();
    /* That was the last confinement step: a thread created from now on has
     * all of it (Landlock binds the calling thread and later ones). */
    if (cfg.output_thread != CFG_OUTPUT_NO)
        conn_set_output_thread(cc->conn, cfg.output_thread == CFG_OUTPUT_YES
                                             ? CONN_OUTPUT_THREAD_ON : CONN_OUTPUT_THREAD_AUTO);
    return 0;
}

#ifdef COFFER_TEST_HOOKS
/* Test hook: what a compromised pre-auth child could do, tried with the
 * confinement of before the first client byte in place (the after-login
 * hook in server/cmd_auth.c sees the per-instance layer as well).
 * COFFER_TEST_OPEN_BEFORE_LOGIN is a comma-separated list: PATH (open for
 * reading), w:PATH (for writing), c:PATH (create, O_EXCL), "fork",
 * "setuid0"; each result is logged. */
static void test_before_login(const char *list)
{
    while (list != NULL && *list != '\0') {
        const char *end = strchr(list, ',');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        char item[CFG_PATH_MAX];
        if (n > 0 && n < sizeof item) {
            memcpy(item, list, n);
            item[n] = '\0';
            int rc, e;
            if (strcmp(item, "fork") == 0) {
                pid_t p = fork();
                e = errno;
                if (p == 0)
                    _exit(0);
                if (p > 0)
                    waitpid(p, NULL, 0);
                rc = p < 0 ? -1 : 0;
            } else if (strcmp(item, "setuid0") == 0) {
                rc = setuid(0);
                e = errno;
            } else {
                bool wr = strncmp(item, "w:", 2) == 0, cr = strncmp(item, "c:", 2) == 0;
                int fd = open(wr || cr ? item + 2 : item,
                              cr ? O_WRONLY | O_CREAT | O_EXCL : wr ? O_WRONLY : O_RDONLY, 0600);
                e = errno;
                rc = fd;
                if (fd >= 0)
                    close(fd);
            }
            log_info("test hook: %s before login: %s", item, rc >= 0 ? "SUCCEEDED" : strerror(e));
        }
        list = end ? end + 1 : NULL;
    }
}
#endif

#ifdef COFFER_TEST_HOOKS
/* Test hook: a failure report that claims to come from another process
 * (the parent). Returns 0 when the kernel let it through, else errno. */
static int forge_report(int fd)
{
    struct auth_report r;
    memset(&r, 0, sizeof r);
    r.kind = 'F';
    snprintf(r.name, sizeof r.name, "forged/report");
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct ucred))];
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = { .iov_base = &r, .iov_len = sizeof r };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred uc = { .pid = getppid(), .uid = geteuid(), .gid = getegid() };
    memcpy(CMSG_DATA(c), &uc, sizeof uc);
    return sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 ? errno : 0;
}
#endif

static void run_connection(int rfd, int wfd, bool is_tls, const char *ip, const char *desc,
                           int report_fd, int penalty_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_sig;   /* no SA_RESTART: blocked reads must notice */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    char prefix[128];
    snprintf(prefix, sizeof prefix, "conn %s", desc);
    log_set_prefix(prefix);
    log_info("connect%s", is_tls ? " tls" : "");

    struct confine_opts co = {
        .data_dir = cfg.data_dir,
        .uid = run_uid,
        .gid = run_gid,
        .chroot = geteuid() == 0,
        .max_files = 256,
    };
    const char *root = NULL, *err = NULL;
#ifdef COFFER_TEST_HOOKS
    /* Before confinement (root may claim any pid: the parent must drop it)
     * and after (the kernel must refuse the claim). */
    bool forge = report_fd >= 0 && getenv("COFFER_TEST_FORGE_REPORT");
    int forged_root = forge ? forge_report(report_fd) : 0;
#endif
    if (confine_process(&co, &root, &err) != 0) {
        log_err("confinement failed: %s (%s)", err, strerror(errno));
        _exit(1);
    }
#ifdef COFFER_TEST_HOOKS
    if (forge) {
        int e = forge_report(report_fd);
        log_info("test hook: forged report as root: %s; confined: %s",
                 forged_root ? strerror(forged_root) : "sent", e ? strerror(e) : "sent");
    }
#endif
    static struct confine_ctx cc;
    snprintf(cc.root, sizeof cc.root, "%s", root);
    /* In the chroot this is <data_dir>/dev/urandom (made by prepare_urandom). */
    snprintf(cc.urandom, sizeof cc.urandom, "/dev/urandom");
    /* Before the first client byte: the whole store readable (any
     * instance may be named at login), only LMDB lock files writable. */
    int ll = confine_landlock_store(root, cc.urandom);
    if (ll < 0) {
        log_err("Landlock failed: %s", strerror(errno));
        _exit(1);
    }

    struct conn *c = NULL;
    if (conn_new(rfd, wfd, tls_default_ctx(tls), ip, desc, &c) != CONN_OK)
        _exit(1);
    conn_set_interrupt(c, &child_shutdown);
    conn_set_write_timeout(c, cfg.command_timeout_ms);
    if (is_tls && conn_tls_accept(c, cfg.preauth_timeout_ms, &err) != CONN_OK) {
        log_info("TLS handshake failed: %s", err ? err : "?");
        conn_free(c);
        _exit(0);
    }
    struct session_env env;
    memset(&env, 0, sizeof env);
    store_cfg_default(&env.store, root);
    env.store.map_size = cfg.map_size;
    env.store.max_readers = cfg.max_connections + 8;
    auth_child_init(&env.store, report_fd, penalty_ms);
    env.lim.max_line = cfg.max_line;
    env.lim.max_literal = cfg.max_literal;
    env.lim.max_command = cfg.max_literal > (64u << 20) ? cfg.max_literal : (64u << 20);
    env.lim.max_nesting = cfg.max_nesting;
    env.lim.cmd_timeout_ms = cfg.command_timeout_ms;
    env.lim.idle_timeout_ms = cfg.idle_timeout_ms;
    env.lim.preauth_timeout_ms = cfg.preauth_timeout_ms;
    env.lim.max_auth_failures = cfg.max_auth_failures;
    env.greeting_host = cfg.hostname;
    cc.landlock = ll == 0;
    cc.conn = c;
    env.confine_instance = confine_instance;
    env.confine_ctx = &cc;
    env.shutdown_flag = &child_shutdown;
    uint64_t ncmd = 0;
    env.stat_commands = &ncmd;
    char who[STORE_ID_MAX + STORE_USER_MAX + 2] = "";
    env.stat_user = who;
    env.stat_user_len = sizeof who;
#ifdef COFFER_TEST_HOOKS
    env.test_open_after_login = getenv("COFFER_TEST_OPEN_AFTER_LOGIN");
    test_before_login(getenv("COFFER_TEST_OPEN_BEFORE_LOGIN"));
#endif
    if (auth_ctx_new(c, is_tls, &env.auth) != 0) {
        log_err("authentication context setup failed");
        conn_puts(c, "* BYE Internal error\r\n");
        conn_free(c);
        _exit(1);
    }
    session_run(c, &env);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* the one line for the end of a connection, logged in or not */
    log_info("disconnect in=%llu out=%llu commands=%llu duration=%.3fs%s%s%s",
             (unsigned long long)conn_bytes_in(c), (unsigned long long)conn_bytes_out(c),
             (unsigned long long)ncmd, secs, who[0] ? " user=" : "", who,
             child_shutdown ? " (shutdown)" : "");
    auth_ctx_free(env.auth);
    conn_free(c);
    _exit(0);
}

/* ---------- parent: signals, children, penalties ---------- */

static void parent_sig(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        got_hup = 1;
    else if (sig == SIGCHLD)
        got_chld = 1;
    else if (sig == SIGUSR1)
        got_usr1 = 1;
    else
        got_term = 1;
    char b = 0;
    (void)!write(sig_pipe[1], &b, 1);
    errno = saved;
}

/* One report datagram: the sender's pid from SCM_CREDENTIALS, never from
 * the message; the address is the one recorded for that child at fork. A
 * sender that is no child of ours (or sent no credentials) is ignored.
 * Returns false when the queue is empty. */
static bool read_one_report(void)
{
    struct auth_report r;
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct ucred))];
    } cbuf;
    struct iovec iov = { .iov_base = &r, .iov_len = sizeof r };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
    memset(&r, 0, sizeof r);
    ssize_t n = recvmsg(report_sock[0], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EINTR;
    const struct ucred *uc = NULL;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS
            && c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
            uc = (const struct ucred *)(void *)CMSG_DATA(c);
        else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            /* nobody should pass fds here; do not keep them */
            for (int *fd = (int *)(void *)CMSG_DATA(c);
                 (char *)(fd + 1) <= (char *)c + c->cmsg_len; fd++)
                close(*fd);
    }
    const struct child *k = NULL;
    for (unsigned i = 0; uc && i < nkids; i++)
        if (kids[i].pid == uc->pid) {
            k = &kids[i];
            break;
        }
    if (!k) {
        log_warn("ignored a login report from pid %ld: not a connection child",
                 uc ? (long)uc->pid : -1L);
    } else if (n >= (ssize_t)offsetof(struct auth_report, name) + 1) {
        size_t len = (size_t)n - offsetof(struct auth_report, name);
        len = strnlen(r.name, len < sizeof r.name ? len : sizeof r.name);
        if (r.kind == 'F')
            penalty_fail(k->ip, r.name, len, time(NULL));
        else if (r.kind == 'S')
            penalty_success(k->ip, r.name, len, time(NULL));
    }
    OPENSSL_cleanse(&r, sizeof r);   /* the parent keeps no name in clear */
    return true;
}

static void read_reports(void)
{
    while (read_one_report())
        ;
}

static void reap(void)
{
    int status;
    pid_t pid;
    bool any = false;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < nkids; i++)
            if (kids[i].pid == pid) {
                kids[i].dead = true;
                any = true;
                break;
            }
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM && WTERMSIG(status) != SIGKILL)
            log_warn("child %ld died of signal %d", (long)pid, WTERMSIG(status));
        /* A child's every exit path but a failed setup (which it logged
         * itself) is status 0; anything else is news, e.g. a sanitizer's
         * halt_on_error exit. */
        else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            log_warn("child %ld exited with status %d", (long)pid, WEXITSTATUS(status));
    }
    if (!any)
        return;
    /* Everything a reaped child sent is queued by now: read it while its
     * pid still maps to its address, before the pid can be reused. */
    read_reports();
    for (unsigned i = 0; i < nkids;)
        if (kids[i].dead)
            kids[i] = kids[--nkids];
        else
            i++;
}

static int penalty_for(const char *ip)
{
    return penalty_ms(ip, time(NULL), cfg.auth_penalty_max_ms);
}

static void refuse(int fd, bool is_tls, const char *why)
{
    /* Only the plain port can carry a readable reason; the parent writes
     * one line and never reads. */
    if (!is_tls) {
        char msg[128];
        int n = snprintf(msg, sizeof msg, "* BYE %s\r\n", why);
        (void)!send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    close(fd);
}

static void addr_strings(const struct sockaddr_storage *ss, socklen_t sl, char *ip, size_t iplen,
                         char *desc, size_t desclen)
{
    char host[NI_MAXHOST] = "local", serv[NI_MAXSERV] = "0";
    if ((ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
        || getnameinfo((const struct sockaddr *)ss, sl, host, sizeof host, serv, sizeof serv,
                       NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(host, sizeof host, "local");
        snprintf(serv, sizeof serv, "0");
    }
    const char *h = host;
    if (!strncmp(h, "::ffff:", 7) && strchr(h, '.'))
        h += 7;
    snprintf(ip, iplen, "%.63s", h);
    if (strchr(h, ':'))
        snprintf(desc, desclen, "[%.63s]:%.15s", h, serv);
    else
        snprintf(desc, desclen, "%.63s:%.15s", h, serv);
}

/* The connection layer buffers a whole response and flushes it once, so
 * Nagle only adds delay: a response leaving in two writes waited for the
 * client's delayed ACK (~40 ms per command). Fails harmlessly on non-TCP
 * sockets (inetd mode on a pipe or a Unix socket). */
static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_one(const struct listener *l)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            log_warn("accept: %s", strerror(errno));
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            usleep(100000);   /* the listener stays readable: do not spin */
        return;
    }
    set_nodelay(fd);
    char ip[64], desc[96];
    addr_strings(&ss, sl, ip, sizeof ip, desc, sizeof desc);
    if (nkids >= cfg.max_connections) {
        log_warn("refused %s: max_connections (%u) reached", desc, cfg.max_connections);
        refuse(fd, l->tls, "Too many connections, try again later");
        return;
    }
    unsigned same = 0;
    for (unsigned i = 0; i < nkids; i++)
        same += !strcmp(kids[i].ip, ip);
    if (same >= cfg.max_connections_per_ip) {
        log_warn("refused %s: max_connections_per_ip (%u) reached", desc,
                 cfg.max_connections_per_ip);
        refuse(fd, l->tls, "Too many connections from your address");
        return;
    }
    if (nkids >= kids_cap) {
        unsigned ncap = kids_cap ? kids_cap * 2 : 64;
        struct child *nk = realloc(kids, ncap * sizeof *nk);
        if (!nk) {
            refuse(fd, l->tls, "Server busy");
            return;
        }
        kids = nk;
        kids_cap = ncap;
    }
    int penalty = penalty_for(ip);
    pid_t pid = fork();
    if (pid < 0) {
        log_err("fork: %s", strerror(errno));
        refuse(fd, l->tls, "Server busy");
        return;
    }
    if (pid == 0) {
        for (unsigned i = 0; i < nlst; i++)
            close(lst[i].fd);
        close(report_sock[0]);
        close(sig_pipe[0]);
        close(sig_pipe[1]);
        penalty_forget_key();
        run_connection(fd, fd, l->tls, ip, desc, report_sock[1], penalty);
        _exit(0);
    }
    close(fd);
    kids[nkids].pid = pid;
    kids[nkids].dead = false;
    snprintf(kids[nkids].ip, sizeof kids[nkids].ip, "%s", ip);
    nkids++;
}

static void reload(void)
{
    sd_notify_msg("RELOADING=1");
    struct cofferd_cfg ncfg;
    char err[600];
    if (cfg_load(cfg_path, &ncfg, err, sizeof err) != 0) {
        log_err("reload: %s; keeping the old configuration", err);
        sd_notify_msg("READY=1");
        return;
    }
    struct tls_set *nt = NULL;
    if (tls_build(&ncfg, &nt, err, sizeof err) != 0) {
        log_err("reload: %s; keeping the old configuration", err);
        sd_notify_msg("READY=1");
        return;
    }
    if (strcmp(ncfg.data_dir, cfg.data_dir) || strcmp(ncfg.user, cfg.user)
        || strcmp(ncfg.group, cfg.group))
        log_warn("reload: data_dir, user and group changes need a restart");
    snprintf(ncfg.data_dir, sizeof ncfg.data_dir, "%s", cfg.data_dir);
    snprintf(ncfg.user, sizeof ncfg.user, "%s", cfg.user);
    snprintf(ncfg.group, sizeof ncfg.group, "%s", cfg.group);
    tls_free(tls);
    tls = nt;
    bool relog = ncfg.log_syslog != cfg.log_syslog;
    cfg = ncfg;
    if (relog)
        log_open("cofferd", cfg.log_syslog);
    struct auth_config ac = {
        .hostname = cfg.hostname,
        .allow_plaintext = cfg.allow_plaintext_auth,
        .max_failures = cfg.max_auth_failures,
        .failure_delay_ms = cfg.auth_failure_delay_ms,
        .concurrency = cfg.auth_concurrency,
        .secret = install_secret,
        .secret_len = sizeof install_secret,
    };
    const char *e = NULL;
    auth_global_init(&ac, &e);
    log_info("reloaded configuration and certificates (listeners unchanged)");
    sd_notify_msg("READY=1");
}

static void shutdown_children(void)
{
    for (unsigned i = 0; i < nkids; i++)
        kill(kids[i].pid, SIGTERM);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (nkids) {
        reap();
        if (!nkids)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 10) {
            for (unsigned i = 0; i < nkids; i++)
                kill(kids[i].pid, SIGKILL);
            usleep(100000);
            reap();
            break;
        }
        struct pollfd p = { .fd = sig_pipe[0], .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            char b[64];
            (void)!read(sig_pipe[0], b, sizeof b);
        }
    }
}

static int serve(void)
{
    int one = 1;
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, report_sock) != 0
        || setsockopt(report_sock[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0
        || shutdown(report_sock[1], SHUT_RD) != 0 || shutdown(report_sock[0], SHUT_WR) != 0
        || pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_err("report socket / pipe: %s", strerror(errno));
        return 1;
    }
    fcntl(report_sock[0], F_SETFL, O_NONBLOCK);
    if (penalty_init() != 0) {
        log_err("cannot generate the penalty table's key (random source)");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = parent_sig;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
#ifdef COFFER_TEST_HOOKS
    sigaction(SIGUSR1, &sa, NULL);   /* test hook: rotate the ticket keys now */
#endif
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    time_t rotated = time(NULL);
    log_info("ready: %u listener(s), Landlock %s", nlst,
             confine_landlock_abi() ? "available" : "not available (chroot only)");
    sd_notify_msg("READY=1");
    struct pollfd pfd[MAX_LISTENERS + 2];
    while (!got_term) {
        unsigned n = 0;
        for (unsigned i = 0; i < nlst; i++)
            pfd[n++] = (struct pollfd){ .fd = lst[i].fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = report_sock[0], .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = sig_pipe[0], .events = POLLIN };
        /* wake up in time for the next ticket key rotation */
        time_t due = rotated + (time_t)cfg.tls_ticket_rotate_s - time(NULL);
        int wait_ms = due <= 0 ? 0 : due < 60 ? (int)due * 1000 : 60000;
        int r = poll(pfd, n, wait_ms);
        if (r < 0 && errno != EINTR) {
            log_err("poll: %s", strerror(errno));
            break;
        }
        if (pfd[n - 1].revents) {
            char b[64];
            while (read(sig_pipe[0], b, sizeof b) > 0)
                ;
        }
        if (pfd[n - 2].revents)
            read_reports();
        if (got_chld) {
            got_chld = 0;
            reap();
        }
        if (got_hup) {
            got_hup = 0;
            reload();
        }
        if (got_term)
            break;
        time_t now = time(NULL);
        if ((unsigned)(now - rotated) >= cfg.tls_ticket_rotate_s || got_usr1) {
            if (tls_tickets_rotate() == 0) {
                rotated = now;
            } else {
                /* keep the current keys and retry in a minute, not at once */
                log_err("cannot rotate the TLS ticket keys (random source)");
                rotated = now - (time_t)cfg.tls_ticket_rotate_s + 60;
            }
            if (got_usr1)
                log_info("test hook: TLS ticket keys rotated");
            got_usr1 = 0;
        }
        if (r > 0)
            for (unsigned i = 0; i < nlst; i++)
                if (pfd[i].revents & POLLIN)
                    accept_one(&lst[i]);
    }
    sd_notify_msg("STOPPING=1");
    log_info("shutting down: closing listeners, %u session(s) to end", nkids);
    for (unsigned i = 0; i < nlst; i++)
        close(lst[i].fd);
    nlst = 0;
    shutdown_children();
    log_info("stopped");
    return 0;
}

/* ---------- inetd mode ---------- */

static int run_inetd(bool is_tls)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[64] = "inetd", desc[96] = "inetd";
    if (getpeername(0, (struct sockaddr *)&ss, &sl) == 0)
        addr_strings(&ss, sl, ip, sizeof ip, desc, sizeof desc);
    set_nodelay(1);
    int in = dup(0), out = dup(1);
    int devnull = open("/dev/null", O_RDWR);
    if (in < 0 || out < 0 || devnull < 0)
        return 1;
    /* Keep fds 0 and 1 away from anything that might print. */
    dup2(devnull, 0);
    dup2(devnull, 1);
    close(devnull);
    run_connection(in, out, is_tls, ip, desc, -1, 0);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: cofferd [-c FILE] [-F] [--check-config] [--inetd [--tls]]\n");
}

/* glibc raises its mmap threshold to the size of every mmapped block freed
 * (up to 32 MiB), so after the first big FETCH response (up to 4 MiB) the
 * next ones come from the brk heap, and what they leave free there is
 * kept: a browsing child's heap crept from 3.0 to 5.5 MB in two minutes
 * and malloc_trim() gave the difference back (docs/RELIABILITY.md, Load).
 * Fixed thresholds switch that adjustment off: blocks of 128 KiB and more
 * are mapped and unmapped, and a free heap top over 256 KiB is returned.
 * Set before anything allocates; forked children inherit it. */
static void memory_policy(void)
{
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

int main(int argc, char **argv)
{
    memory_policy();
    bool check = false, inetd = false, inetd_tls = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            cfg_path = argv[++i];
        else if (!strcmp(argv[i], "-F"))
            foreground = true;
        else if (!strcmp(argv[i], "--check-config") || !strcmp(argv[i], "-t"))
            check = true;
        else if (!strcmp(argv[i], "--inetd"))
            inetd = true;
        else if (!strcmp(argv[i], "--tls"))
            inetd_tls = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (inetd_tls && !inetd) {
        usage();
        return 2;
    }
    char err[1200];
    if (cfg_load(cfg_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "cofferd: %s\n", err);
        return 1;
    }
    if (check) {
        if (prepare(true, err, sizeof err) != 0) {
            fprintf(stderr, "cofferd: %s: %s\n", cfg_path, err);
            return 1;
        }
        printf("cofferd: %s: configuration OK\n", cfg_path);
        return 0;
    }
    log_open("cofferd", cfg.log_syslog);
    if (prepare(false, err, sizeof err) != 0) {
        log_err("%s", err);
        if (cfg.log_syslog)
            fprintf(stderr, "cofferd: %s\n", err);
        return 1;
    }
    if (inetd)
        return run_inetd(inetd_tls);
    if (open_listeners(err, sizeof err) != 0) {
        log_err("%s", err);
        if (cfg.log_syslog)
            fprintf(stderr, "cofferd: %s\n", err);
        return 1;
    }
    if (!foreground && !getenv("NOTIFY_SOCKET")) {
        if (!cfg.log_syslog)
            fprintf(stderr, "cofferd: log = stderr without -F: logging goes nowhere\n");
        if (daemon(0, 0) != 0) {
            log_err("daemon: %s", strerror(errno));
            return 1;
        }
    }
    return serve();
}
