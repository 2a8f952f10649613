/* coffer.c — the admin CLI: global options, config, privileges, dispatch.
 * The commands are in coffer_cmd.c and coffer_maint.c; coffer(8) is the
 * manual. */
#include "server/coffer_int.h"
#include "server/config.h"
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/coffer/cofferd.conf"

static const char usage_text[] =
    "usage: coffer [-c FILE] [--data-dir DIR] [--wait] COMMAND [ARGS]\n"
    "\n"
    "  instance add ID [--alias A]...    create an instance\n"
    "  instance list                     list instances and aliases\n"
    "  instance alias add|rm ID ALIAS    add or remove an alias\n"
    "  instance disable|enable ID        stop/allow logins to an instance\n"
    "  instance rm ID [--force]          remove an (empty) instance\n"
    "  user add INST/USER [--admin] [--password-file F]\n"
    "  user passwd INST/USER [--password-file F]\n"
    "  user disable|enable|rm INST/USER\n"
    "  user list INST\n"
    "  grant INST/USER --read INST/OTHER   let USER read OTHER's archive\n"
    "  revoke INST/USER --read INST/OTHER\n"
    "  import INST/USER [--folder NAME] [--wait] SOURCE...\n"
    "                                    SOURCE: mbox, Maildir, dir of .eml, - (stdin)\n"
    "  export INST/USER [--folder F] --format mbox|maildir|eml DEST\n"
    "  verify [INST]                     check hashes, CRCs, refcounts\n"
    "  backup INST DEST                  hot, compacted copy of an instance\n"
    "  restore SRC INST                  restore a backup as instance INST\n"
    "  stats [INST]                      sizes, dedup and compression ratios\n"
    "  reindex [INST]                    recompute derived data and text index\n"
    "  upgrade                           migrate stores to the current schema\n"
    "\n"
    "Options: -c FILE (default " DEFAULT_CONF "), --data-dir DIR (overrides data_dir),\n"
    "--wait (wait for another writer instead of failing). COMMAND --help for details.\n";

void cli_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("coffer: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool want_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    return false;
}

/* The config file is cofferd's (server/config.c parses and validates
 * every key); coffer uses data_dir, user, default_timezone, map_size and
 * max_connections from it. A missing default file is not an error. */
static int load_config(struct cli *c, const char *path, bool explicit_path)
{
    struct cofferd_cfg *cfg = malloc(sizeof *cfg);
    char err[1024];
    if (!cfg) {
        cli_err("out of memory");
        return -1;
    }
    if (!explicit_path && access(path, F_OK) != 0 && errno == ENOENT) {
        free(cfg);
        return 0;
    }
    if (cfg_load(path, cfg, err, sizeof err)) {
        cli_err("%s", err);
        free(cfg);
        return -1;
    }
    snprintf(c->data_dir, sizeof c->data_dir, "%s", cfg->data_dir);
    snprintf(c->user, sizeof c->user, "%s", cfg->user);
    snprintf(c->default_tz, sizeof c->default_tz, "%s", cfg->default_timezone);
    c->map_size = cfg->map_size;
    c->max_connections = cfg->max_connections;
    free(cfg);
    return 0;
}

/* Run as root: become the owner of data_dir (or the configured user,
 * creating data_dir for it) before any env is opened, so no root-owned
 * lock.mdb or data.mdb is ever left behind. */
static int drop_privileges(struct cli *c)
{
    umask(027);
    if (geteuid() != 0)
        return 0;
    struct stat st;
    uid_t uid;
    gid_t gid;
    if (stat(c->data_dir, &st) == 0) {
        uid = st.st_uid;
        gid = st.st_gid;
    } else {
        struct passwd *pw = getpwnam(c->user);
        if (!pw) {
            fprintf(stderr, "coffer: warning: user '%s' does not exist; %s will be owned by "
                    "root and cofferd sessions cannot open it\n", c->user, c->data_dir);
            return 0;
        }
        if (store_mkdir_p(c->data_dir, 0750) || chown(c->data_dir, pw->pw_uid, pw->pw_gid)) {
            cli_err("cannot create %s: %s", c->data_dir, strerror(errno));
            return -1;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (uid == 0) {
        struct passwd *pw = getpwnam(c->user);
        if (pw && pw->pw_uid != 0)
            fprintf(stderr, "coffer: warning: %s is owned by root, not by '%s'; "
                    "cofferd sessions will not be able to open it (chown -R %s %s)\n",
                    c->data_dir, c->user, c->user, c->data_dir);
        return 0;
    }
    if (setgroups(0, NULL) || setgid(gid) || setuid(uid)) {
        cli_err("cannot switch to uid %u gid %u: %s", (unsigned)uid, (unsigned)gid,
                strerror(errno));
        return -1;
    }
    return 0;
}

int cli_resolve(struct cli *c, const char *name, char id[STORE_ID_MAX + 1])
{
    struct registry *r;
    const char *err;
    int rc = registry_open(&c->cfg, false, &r, &err);
    if (rc) {
        cli_err("%s", err);
        return rc;
    }
    bool dis;
    rc = registry_lookup(r, name, id, &dis);
    registry_close(r);
    if (rc)
        cli_err("unknown instance '%s' (see `coffer instance list`)", name);
    return rc;
}

int cli_split(struct cli *c, const char *arg, char id[STORE_ID_MAX + 1],
              char user[STORE_USER_MAX + 1])
{
    const char *sl = strchr(arg, '/');
    if (!sl || sl == arg || !sl[1]) {
        cli_err("expected INSTANCE/USER, got '%s'", arg);
        return STORE_EINVAL;
    }
    char inst[STORE_ID_MAX + 2];
    size_t il = (size_t)(sl - arg);
    if (il > STORE_ID_MAX) {
        cli_err("unknown instance '%.*s'", (int)il, arg);
        return STORE_ENOTFOUND;
    }
    memcpy(inst, arg, il);
    inst[il] = 0;
    const char *err;
    int rc = store_user_canon(sl + 1, user, &err);
    if (rc) {
        cli_err("%s", err);
        return rc;
    }
    return cli_resolve(c, inst, id);
}

int cli_open_inst(struct cli *c, const char *id, bool writable, struct inst **out)
{
    const char *err;
    int rc = inst_open(&c->cfg, id, writable, out, &err);
    if (rc)
        cli_err("%s", err);
    return rc;
}

static int collect_id(void *ctx, const char *id, bool disabled, const char *aliases)
{
    (void)disabled;
    (void)aliases;
    struct { char **v; size_t n; } *l = ctx;
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    l->v = nv;
    if (!(l->v[l->n] = strdup(id)))
        return -1;
    l->n++;
    return 0;
}

int cli_all_instances(struct cli *c, char ***ids, size_t *n)
{
    struct registry *r;
    const char *err;
    int rc = registry_open(&c->cfg, false, &r, &err);
    if (rc) {
        cli_err("%s", err);
        return rc;
    }
    struct { char **v; size_t n; } l = {NULL, 0};
    rc = registry_instance_list(r, collect_id, &l);
    registry_close(r);
    *ids = l.v;
    *n = l.n;
    return rc;
}

int main(int argc, char **argv)
{
    struct cli c;
    memset(&c, 0, sizeof c);
    snprintf(c.data_dir, sizeof c.data_dir, "%s", LOCALSTATEDIR "/lib/coffer");
    snprintf(c.user, sizeof c.user, "coffer");
    const char *conf = DEFAULT_CONF, *data_dir = NULL;
    bool conf_explicit = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            conf = argv[++i];
            conf_explicit = true;
        } else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (!strncmp(argv[i], "--data-dir=", 11)) {
            data_dir = argv[i] + 11;
        } else if (!strcmp(argv[i], "--wait")) {
            c.wait = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            puts(PACKAGE_STRING);
            return 0;
        } else {
            fprintf(stderr, "coffer: unknown option '%s'\n%s", argv[i], usage_text);
            return EX_USAGE;
        }
    }
    if (i >= argc) {
        fputs(usage_text, stderr);
        return EX_USAGE;
    }
    if (load_config(&c, conf, conf_explicit))
        return EX_FAIL;
    if (data_dir)
        snprintf(c.data_dir, sizeof c.data_dir, "%s", data_dir);
    store_cfg_default(&c.cfg, c.data_dir);
    if (c.map_size)
        c.cfg.map_size = c.map_size;
    if (c.max_connections + 8 > c.cfg.max_readers)
        c.cfg.max_readers = c.max_connections + 8;
    const char *cmd = argv[i];
    int sargc = argc - i - 1;
    char **sargv = argv + i + 1;
    if (!strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!want_help(sargc, sargv) && drop_privileges(&c))
        return EX_FAIL;
    for (int j = 0; j < sargc; j++)
        if (!strcmp(sargv[j], "--wait"))
            c.wait = true;
    store_set_wait(c.wait);
    if (!strcmp(cmd, "instance")) return cmd_instance(&c, sargc, sargv);
    if (!strcmp(cmd, "user")) return cmd_user(&c, sargc, sargv);
    if (!strcmp(cmd, "grant")) return cmd_grant(&c, sargc, sargv, true);
    if (!strcmp(cmd, "revoke")) return cmd_grant(&c, sargc, sargv, false);
    if (!strcmp(cmd, "import")) return cmd_import(&c, sargc, sargv);
    if (!strcmp(cmd, "export")) return cmd_export(&c, sargc, sargv);
    if (!strcmp(cmd, "verify")) return cmd_verify(&c, sargc, sargv);
    if (!strcmp(cmd, "backup")) return cmd_backup(&c, sargc, sargv);
    if (!strcmp(cmd, "restore")) return cmd_restore(&c, sargc, sargv);
    if (!strcmp(cmd, "stats")) return cmd_stats(&c, sargc, sargv);
    if (!strcmp(cmd, "reindex")) return cmd_reindex(&c, sargc, sargv);
    if (!strcmp(cmd, "upgrade")) return cmd_upgrade(&c, sargc, sargv);
    fprintf(stderr, "coffer: unknown command '%s'\n%s", cmd, usage_text);
    return EX_USAGE;
}
