/* fuzz_mbox.c — the import readers (store/import_mbox.c,
 * store/import_maildir.c, the .eml directory reader) end to end: the input
 * becomes a source on a scratch file system and goes through store_import()
 * into a real instance env, as `coffer import` would do it.
 *
 * Input: byte 0 picks the source kind and options, the rest is the source.
 *   bit 0..1: 0/3 = mbox file, 1 = Maildir(++) tree, 2 = directory of .eml
 *   bit 2:    pass --folder (a name with a sub-folder and modified UTF-7)
 * For the two directory kinds the rest is a list of records
 *   [f][n][n name octets][len hi][len lo][len content octets]
 * where f % 3 selects cur/, new/ or a Maildir++ sub-folder named `name`.
 * The store lives under /dev/shm when it exists (commits are durable, and
 * fsync on tmpfs is cheap) and is re-created every RESET_EVERY inputs so
 * disk use stays bounded. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/admin.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY 200
#define MAP_SIZE (256u << 20)

static char root[64];          /* scratch: <root>/store and <root>/src */
static char store_dir[96], src_dir[96];
static struct store_cfg cfg;
static struct inst *in;
static FILE *devnull;
static unsigned runs;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

static void rm_tree(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    if (in)
        inst_close(in);
    in = NULL;
    if (root[0])
        rm_tree(root);
}

/* Fresh store with instance "fz" and user "u". Any failure here is a bug
 * in the harness or the store, not a finding about the input: abort. */
static void store_setup(void)
{
    const char *err = "";
    struct registry *r;
    if (in)
        inst_close(in);
    in = NULL;
    rm_tree(store_dir);
    if (mkdir(store_dir, 0700) && errno != EEXIST)
        abort();
    store_cfg_default(&cfg, store_dir);
    cfg.map_size = MAP_SIZE;
    if (registry_open(&cfg, true, &r, &err) ||
        registry_instance_add(r, "fz", &err)) {
        fprintf(stderr, "fuzz_mbox: store setup: %s\n", err);
        abort();
    }
    registry_close(r);
    if (inst_open(&cfg, "fz", true, &in, &err) ||
        inst_user_add(in, "u", NULL, false, &err)) {
        fprintf(stderr, "fuzz_mbox: instance setup: %s\n", err);
        abort();
    }
}

static void init(void)
{
    /* libFuzzer ends a timed run with _Exit(), so atexit() cleanup may not
     * run: scripts/check passes a scratch dir it removes itself. */
    const char *base = getenv("FUZZ_SCRATCH");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/fuzz_mbox.XXXXXX", base);
    if (!mkdtemp(root))
        abort();
    snprintf(store_dir, sizeof store_dir, "%s/store", root);
    snprintf(src_dir, sizeof src_dir, "%s/src", root);
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    atexit(cleanup);
    store_setup();
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return close(fd);
}

/* A file or directory name from fuzz bytes: no '/', no NUL, never "." or "..". */
static void name_from(char *out, size_t cap, const uint8_t *p, size_t n, const char *dflt)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        out[k++] = (p[i] == '/' || p[i] == 0) ? '_' : (char)p[i];
    out[k] = 0;
    if (!k || !strcmp(out, ".") || !strcmp(out, ".."))
        snprintf(out, cap, "%s", dflt);
}

static void mkdirs3(const char *dir)
{
    char p[512];
    mkdir(dir, 0700);
    snprintf(p, sizeof p, "%s/cur", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/new", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/tmp", dir);
    mkdir(p, 0700);
}

/* Build a Maildir (maildir = true) or .eml directory from records. */
static void build_dir(const uint8_t *p, size_t n, bool maildir)
{
    char path[512], name[80], dflt[16];
    if (maildir)
        mkdirs3(src_dir);
    else
        mkdir(src_dir, 0700);
    for (unsigned i = 0; n >= 2 && i < 64; i++) {
        uint8_t f = p[0];
        size_t nl = p[1] % 64;
        p += 2; n -= 2;
        if (nl > n)
            nl = n;
        snprintf(dflt, sizeof dflt, "m%u", i);
        name_from(name, sizeof name, p, nl, dflt);
        p += nl; n -= nl;
        size_t cl = 0;
        if (n >= 2) {
            cl = ((size_t)p[0] << 8) | p[1];
            p += 2; n -= 2;
        }
        if (cl > n)
            cl = n;
        if (!maildir)
            snprintf(path, sizeof path, "%s/%s.eml", src_dir, name);
        else if (f % 3 == 2) {
            /* Maildir++ sub-folder: ".name" beside cur/new/tmp */
            char sub[200];
            snprintf(sub, sizeof sub, "%s/.%s", src_dir, name[0] == '.' ? name + 1 : name);
            mkdirs3(sub);
            snprintf(path, sizeof path, "%s/cur/%s:2,S", sub, dflt);
        } else {
            snprintf(path, sizeof path, "%s/%s/%s", src_dir, f % 3 ? "new" : "cur", name);
        }
        write_file(path, p, cl);
        p += cl; n -= cl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        init();
    if (size < 1)
        return 0;
    if (++runs % RESET_EVERY == 0)
        store_setup();
    rm_tree(src_dir);

    unsigned kind = data[0] & 3;
    char mbox_path[128];
    const char *source = src_dir;
    if (kind == 1 || kind == 2) {
        build_dir(data + 1, size - 1, kind == 1);
    } else {
        mkdir(src_dir, 0700);
        snprintf(mbox_path, sizeof mbox_path, "%s/in.mbox", src_dir);
        if (write_file(mbox_path, data + 1, size - 1))
            abort();
        source = mbox_path;
    }

    struct import_opts o;
    memset(&o, 0, sizeof o);
    o.folder = (data[0] & 4) ? "Fuzz/Entw&APw-rfe" : NULL;
    o.default_tz = "+0100";
    o.warn = devnull;
    struct import_stats st;
    const char *err = NULL;
    const char *const srcs[1] = { source };
    int rc = store_import(in, "u", srcs, 1, &o, &st, &err);
    if (rc == STORE_EFULL)
        store_setup();
    else if (rc != STORE_OK && !err)
        abort();   /* every failure must say why */
    return 0;
}
