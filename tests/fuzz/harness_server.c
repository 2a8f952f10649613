/* harness_server.c — see harness_server.h. */
#include "tests/fuzz/harness_server.h"

#include <crypt.h>
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/auth.h"
#include "server/conn.h"
#include "server/log.h"
#include "store/admin.h"

static char root[96], store_dir[128];
static struct store_cfg cfg;
static int in_fd = -1, out_fd = -1;
static char *out_map;
static size_t out_cap;

static struct fz_user users[] = {
    {"u", "pencil", false, {0}, {0}},
    {"boss", "secret", true, {0}, {0}},
    {"off", "pencil", false, {0}, {0}},
    {"nopw", NULL, false, {0}, {0}},
};
#define NUSERS (sizeof users / sizeof users[0])

/* ---- replacements linked in place of libraries' symbols ---- */

/* server/log.c: the targets log every failed login and every session;
 * writing that to stderr would drown libFuzzer's output (and the gate's
 * log). Formatting still runs, so format bugs stay visible to ASan. */
void log_open(const char *ident, bool use_syslog)
{
    (void)ident;
    (void)use_syslog;
}

void log_set_prefix(const char *prefix)
{
    (void)prefix;
}

void log_msg(int prio, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    (void)prio;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (getenv("FUZZ_LOG"))
        fprintf(stderr, "log: %s\n", line);
}

/* libcrypt: yescrypt at its default cost takes ~50 ms per check, so a
 * target doing one login per input would run at 20 inputs/s. Every hash
 * the store or auth.c sets up (user hashes, auth.c's dummy hash) goes
 * through crypt_gensalt_rn, so asking for MD5-crypt there makes checks
 * ~0.3 ms while crypt_r, the comparison and every path around them stay
 * the real ones. */
char *crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes,
                       int nrbytes, char *output, int output_size)
{
    typedef char *(*fn_t)(const char *, unsigned long, const char *, int, char *, int);
    static fn_t real;
    (void)prefix;
    (void)count;
    if (!real)
        real = (fn_t)(uintptr_t)dlsym(RTLD_NEXT, "crypt_gensalt_rn");
    if (real && real("$1$", 0, rbytes, nrbytes, output, output_size))
        return output;
    if (output_size < 16)
        return NULL;
    snprintf(output, (size_t)output_size, "$1$fuzzsalt$");
    return output;
}

/* ---- scratch store ---- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void cleanup(void)
{
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, err ? err : "?");
    abort();
}

/* SCRAM keys from the stored "SCRAM-SHA-256$iter:salt$..." secret. */
static void scram_keys(struct fz_user *u, const char *scram)
{
    unsigned iter = 0;
    char salt64[64];
    if (sscanf(scram, "SCRAM-SHA-256$%u:%60[^$]$", &iter, salt64) != 2)
        die("stored SCRAM secret", scram);
    unsigned char salt[64], salted[32];
    int sl = EVP_DecodeBlock(salt, (const unsigned char *)salt64, (int)strlen(salt64));
    if (sl < 0)
        die("SCRAM salt", salt64);
    size_t pad = strlen(salt64);
    sl -= (pad > 0 && salt64[pad - 1] == '=') + (pad > 1 && salt64[pad - 2] == '=');
    if (PKCS5_PBKDF2_HMAC(u->password, (int)strlen(u->password), salt, sl, (int)iter,
                          EVP_sha256(), 32, salted) != 1)
        die("PBKDF2", "failed");
    unsigned int l = 32;
    HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, u->client_key, &l);
    SHA256(u->client_key, 32, u->stored_key);
}

static void add_users(struct inst *in, bool all)
{
    const char *err = NULL;
    for (size_t i = 0; i < (all ? NUSERS : 1); i++)
        if (inst_user_add(in, users[i].name, users[i].password, users[i].admin, &err))
            die("inst_user_add", err);
    if (!all)
        return;
    if (inst_user_set_flags(in, "off", -1, 1, &err) || inst_grant(in, "u", "boss", true, &err))
        die("user flags/grant", err);
    for (size_t i = 0; i < NUSERS; i++) {
        struct user_rec rec;
        if (!users[i].password)
            continue;
        if (inst_rd_begin(in) || inst_user_get(in, users[i].name, &rec))
            die("inst_user_get", users[i].name);
        inst_rd_end(in);
        scram_keys(&users[i], rec.scram);
    }
}

void fz_server_init(const char *name, void (*populate)(struct inst *in))
{
    /* libFuzzer ends a timed run with _Exit(), so atexit() cleanup may not
     * run: scripts/check passes a scratch dir it removes itself. */
    const char *base = getenv("FUZZ_SCRATCH");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/%s.XXXXXX", base, name);
    if (!mkdtemp(root))
        die("mkdtemp", strerror(errno));
    atexit(cleanup);
    snprintf(store_dir, sizeof store_dir, "%s/store", root);
    if (mkdir(store_dir, 0700))
        die("mkdir", strerror(errno));
    store_cfg_default(&cfg, store_dir);
    cfg.map_size = 64u << 20;

    const char *err = NULL;
    struct registry *r;
    if (registry_open(&cfg, true, &r, &err) || registry_instance_add(r, "fz", &err) ||
        registry_alias_add(r, "fz", "fz-alias", &err) || registry_instance_add(r, "other", &err))
        die("registry", err);
    registry_close(r);
    struct inst *in;
    if (inst_open(&cfg, "other", true, &in, &err))
        die("inst_open other", err);
    add_users(in, false);
    inst_close(in);
    if (inst_open(&cfg, "fz", true, &in, &err))
        die("inst_open fz", err);
    add_users(in, true);
    if (populate) {
        if (inst_wr_begin(in, &err))
            die("inst_wr_begin", err);
        populate(in);
        if (inst_wr_commit(in, &err))
            die("inst_wr_commit", err);
    }
    inst_close(in);

    static unsigned char secret[32] = "fuzz-install-secret";
    struct auth_config ac = {
        .hostname = "fuzz.example",
        .allow_plaintext = true,     /* the conn has no TLS */
        .max_failures = 3,
        .failure_delay_ms = 0,
        .concurrency = 1,
        .secret = secret,
        .secret_len = sizeof secret,
    };
    if (auth_global_init(&ac, &err) != 0)
        die("auth_global_init", err);
    auth_child_init(&cfg, -1, 0);

    in_fd = memfd_create("fuzz-in", 0);
    out_fd = memfd_create("fuzz-out", 0);
    if (in_fd < 0 || out_fd < 0)
        die("memfd_create", strerror(errno));
}

const struct store_cfg *fz_store(void)
{
    return &cfg;
}

const struct fz_user *fz_user(const char *name, size_t len)
{
    for (size_t i = 0; i < NUSERS; i++)
        if (strlen(users[i].name) == len && memcmp(users[i].name, name, len) == 0)
            return &users[i];
    return NULL;
}

/* ---- in-memory connection ---- */

/* n octets at offset 0 of fd, written (wr) or read. */
static void io_all(int fd, void *p, size_t n, bool wr)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = wr ? pwrite(fd, (char *)p + off, n - off, (off_t)off)
                       : pread(fd, (char *)p + off, n - off, (off_t)off);
        if (r <= 0)
            die(wr ? "pwrite" : "pread", strerror(errno));
        off += (size_t)r;
    }
}

struct conn *fz_conn_new(const uint8_t *data, size_t size)
{
    if (ftruncate(in_fd, 0) || ftruncate(out_fd, 0))
        die("ftruncate", strerror(errno));
    io_all(in_fd, (void *)(uintptr_t)data, size, true);
    lseek(in_fd, 0, SEEK_SET);
    lseek(out_fd, 0, SEEK_SET);
    /* conn_free() closes its fds: hand it duplicates (same offsets). */
    int rfd = dup(in_fd), wfd = dup(out_fd);
    struct conn *c = NULL;
    if (rfd < 0 || wfd < 0 ||
        conn_new(rfd, wfd, NULL, "192.0.2.1", "192.0.2.1:143", &c) != CONN_OK)
        die("conn_new", strerror(errno));
    return c;
}

const char *fz_output(size_t *len)
{
    struct stat st;
    if (fstat(out_fd, &st))
        die("fstat", strerror(errno));
    size_t n = (size_t)st.st_size;
    if (n + 1 > out_cap) {
        free(out_map);
        out_cap = n + 1 + (n >> 1);
        out_map = malloc(out_cap);
        if (!out_map)
            die("malloc", "output copy");
    }
    io_all(out_fd, out_map, n, false);
    out_map[n] = 0;
    *len = n;
    return out_map;
}

/* ---- SCRAM client side ---- */

void fz_scram_proof(const struct fz_user *u, const char *am, size_t amlen, char out[64])
{
    unsigned char sig[32], proof[32];
    unsigned int l = 32;
    HMAC(EVP_sha256(), u->stored_key, 32, (const unsigned char *)am, amlen, sig, &l);
    for (int i = 0; i < 32; i++)
        proof[i] = u->client_key[i] ^ sig[i];
    EVP_EncodeBlock((unsigned char *)out, proof, 32);
}
