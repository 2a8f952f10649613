/* coffer_cmd.c — instance, user, grant, import and export commands. */
#include "server/coffer_int.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static int usage(const char *u)
{
    fprintf(stderr, "usage: coffer %s\n", u);
    return EX_USAGE;
}

static int open_reg(struct cli *c, bool writable, struct registry **r)
{
    const char *err;
    int rc = registry_open(&c->cfg, writable, r, &err);
    if (rc)
        cli_err("%s", err);
    return rc;
}

static int print_inst(void *ctx, const char *id, bool disabled, const char *aliases)
{
    (void)ctx;
    printf("%s%s%s%s\n", id, disabled ? " (disabled)" : "", *aliases ? " aliases: " : "", aliases);
    return 0;
}

int cmd_instance(struct cli *c, int argc, char **argv)
{
    static const char u[] = "instance add ID [--alias A]... | list | alias add|rm ID ALIAS | "
                            "disable|enable ID | rm ID [--force]";
    if (argc < 1 || want_help(argc, argv)) {
        fprintf(argc < 1 ? stderr : stdout, "usage: coffer %s\n", u);
        return argc < 1 ? EX_USAGE : 0;
    }
    struct registry *r;
    const char *err = NULL;
    int rc;
    const char *sub = argv[0];
    if (!strcmp(sub, "list")) {
        if ((rc = open_reg(c, false, &r)))
            return EX_FAIL;
        registry_instance_list(r, print_inst, NULL);
        registry_close(r);
        return 0;
    }
    if (!strcmp(sub, "add")) {
        if (argc < 2)
            return usage(u);
        const char *aliases[64];
        size_t na = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--alias") && i + 1 < argc && na < 64)
                aliases[na++] = argv[++i];
            else if (strcmp(argv[i], "--wait"))
                return usage(u);
        }
        if ((rc = open_reg(c, true, &r)))
            return EX_FAIL;
        rc = registry_instance_add(r, argv[1], &err);
        bool created = rc == 0;
        for (size_t i = 0; i < na && !rc; i++)
            rc = registry_alias_add(r, argv[1], aliases[i], &err);
        char why[512];
        snprintf(why, sizeof why, "%s", rc && err ? err : "");
        if (rc && created) {
            /* all or nothing: a refused alias must not leave the new
             * (empty) instance behind as if the command had worked */
            const char *err2 = NULL;
            if (registry_instance_rm(r, argv[1], false, &err2) != 0)
                cli_err("%s", err2 ? err2 : "cannot remove the new instance");
        }
        registry_close(r);
        if (rc) {
            cli_err("%s", why);
            return EX_FAIL;
        }
        return 0;
    }
    if (!strcmp(sub, "alias")) {
        if (argc != 4 || (strcmp(argv[1], "add") && strcmp(argv[1], "rm")))
            return usage(u);
        if ((rc = open_reg(c, true, &r)))
            return EX_FAIL;
        rc = !strcmp(argv[1], "add") ? registry_alias_add(r, argv[2], argv[3], &err)
                                     : registry_alias_rm(r, argv[2], argv[3], &err);
        registry_close(r);
        if (rc) {
            cli_err("%s", err);
            return EX_FAIL;
        }
        return 0;
    }
    if (!strcmp(sub, "disable") || !strcmp(sub, "enable")) {
        if (argc != 2)
            return usage(u);
        if ((rc = open_reg(c, true, &r)))
            return EX_FAIL;
        rc = registry_instance_disable(r, argv[1], !strcmp(sub, "disable"), &err);
        registry_close(r);
        if (rc) {
            cli_err("%s", err);
            return EX_FAIL;
        }
        return 0;
    }
    if (!strcmp(sub, "rm")) {
        bool force = false;
        const char *id = NULL;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--force"))
                force = true;
            else if (!id && argv[i][0] != '-')
                id = argv[i];
            else if (strcmp(argv[i], "--wait"))
                return usage(u);
        }
        if (!id)
            return usage(u);
        if ((rc = open_reg(c, true, &r)))
            return EX_FAIL;
        rc = registry_instance_rm(r, id, force, &err);
        registry_close(r);
        if (rc) {
            cli_err("%s", err);
            return EX_FAIL;
        }
        return 0;
    }
    return usage(u);
}

/* Password from a file (content without a trailing newline), from the
 * terminal without echo (asked twice), or one line of a non-tty stdin. */
static int read_password(const char *file, char *out, size_t cap)
{
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            cli_err("%s: %s", file, strerror(errno));
            return -1;
        }
        size_t n = fread(out, 1, cap - 1, f);
        bool more = fgetc(f) != EOF;
        fclose(f);
        if (more) {
            cli_err("%s: password too long", file);
            return -1;
        }
        out[n] = 0;
        if (n && out[n - 1] == '\n')
            out[--n] = 0;
        if (n && out[n - 1] == '\r')
            out[--n] = 0;
        return 0;
    }
    bool tty = isatty(0);
    char again[1024];
    for (int round = 0; round < (tty ? 2 : 1); round++) {
        char *dst = round ? again : out;
        size_t dcap = round ? sizeof again : cap;
        struct termios old, noecho;
        if (tty) {
            fputs(round ? "Again: " : "Password: ", stderr);
            fflush(stderr);
            tcgetattr(0, &old);
            noecho = old;
            noecho.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(0, TCSAFLUSH, &noecho);
        }
        char *got = fgets(dst, (int)dcap, stdin);
        if (tty) {
            tcsetattr(0, TCSAFLUSH, &old);
            fputc('\n', stderr);
        }
        if (!got) {
            cli_err("no password given");
            return -1;
        }
        dst[strcspn(dst, "\r\n")] = 0;
    }
    if (tty && strcmp(out, again)) {
        cli_err("the passwords do not match");
        return -1;
    }
    return 0;
}

static int print_user(void *ctx, const struct user_rec *u)
{
    (void)ctx;
    printf("%s%s%s%s\n", u->name, u->admin ? " admin" : "", u->disabled ? " disabled" : "",
           u->pw_hash[0] ? "" : " (no password)");
    return 0;
}

int cmd_user(struct cli *c, int argc, char **argv)
{
    static const char u[] = "user add INST/USER [--admin] [--password-file F] | "
                            "passwd INST/USER [--password-file F] | disable|enable|rm INST/USER"
                            " | list INST";
    if (argc < 2 || want_help(argc, argv)) {
        fprintf(argc < 2 ? stderr : stdout, "usage: coffer %s\n", u);
        return argc < 2 ? EX_USAGE : 0;
    }
    const char *sub = argv[0], *err = NULL;
    char id[STORE_ID_MAX + 1], user[STORE_USER_MAX + 1];
    struct inst *in;
    int rc;
    if (!strcmp(sub, "list")) {
        if (argc != 2 || cli_resolve(c, argv[1], id) || cli_open_inst(c, id, false, &in))
            return argc != 2 ? usage(u) : EX_FAIL;
        inst_rd_begin(in);
        rc = inst_user_list(in, print_user, NULL);
        inst_rd_end(in);
        inst_close(in);
        return rc ? EX_FAIL : 0;
    }
    bool admin = false;
    const char *pwfile = NULL, *target = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--admin") && !strcmp(sub, "add"))
            admin = true;
        else if (!strcmp(argv[i], "--password-file") && i + 1 < argc)
            pwfile = argv[++i];
        else if (!strcmp(argv[i], "--wait"))
            continue;
        else if (!target && argv[i][0] != '-')
            target = argv[i];
        else
            return usage(u);
    }
    if (!target)
        return usage(u);
    if (cli_split(c, target, id, user))
        return EX_FAIL;
    char pw[1024];
    bool need_pw = !strcmp(sub, "add") || !strcmp(sub, "passwd");
    if (need_pw && read_password(pwfile, pw, sizeof pw))
        return EX_FAIL;
    if (cli_open_inst(c, id, true, &in))
        return EX_FAIL;
    if (!strcmp(sub, "add"))
        rc = inst_user_add(in, user, pw, admin, &err);
    else if (!strcmp(sub, "passwd"))
        rc = inst_user_passwd(in, user, pw, &err);
    else if (!strcmp(sub, "disable") || !strcmp(sub, "enable"))
        rc = inst_user_set_flags(in, user, -1, !strcmp(sub, "disable"), &err);
    else if (!strcmp(sub, "rm"))
        rc = inst_user_rm(in, user, &err);
    else {
        inst_close(in);
        return usage(u);
    }
    memset(pw, 0, sizeof pw);
    inst_close(in);
    if (rc) {
        cli_err("%s", err ? err : store_strerror(rc));
        return EX_FAIL;
    }
    return 0;
}

int cmd_grant(struct cli *c, int argc, char **argv, bool grant)
{
    const char *u = grant ? "grant INST/USER --read INST/OTHER" : "revoke INST/USER --read INST/OTHER";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\n", u);
        return 0;
    }
    const char *reader = NULL, *owner = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--read") && i + 1 < argc)
            owner = argv[++i];
        else if (!strcmp(argv[i], "--wait"))
            continue;
        else if (!reader)
            reader = argv[i];
        else
            return usage(u);
    }
    if (!reader || !owner)
        return usage(u);
    char id1[STORE_ID_MAX + 1], id2[STORE_ID_MAX + 1];
    char u1[STORE_USER_MAX + 1], u2[STORE_USER_MAX + 1];
    if (cli_split(c, reader, id1, u1) || cli_split(c, owner, id2, u2))
        return EX_FAIL;
    if (strcmp(id1, id2)) {
        cli_err("grants work within one instance only ('%s' and '%s' differ)", id1, id2);
        return EX_FAIL;
    }
    struct inst *in;
    const char *err = NULL;
    if (cli_open_inst(c, id1, true, &in))
        return EX_FAIL;
    int rc = inst_grant(in, u1, u2, grant, &err);
    inst_close(in);
    if (rc) {
        cli_err("%s", err);
        return EX_FAIL;
    }
    return 0;
}

int cmd_import(struct cli *c, int argc, char **argv)
{
    static const char u[] = "import INST/USER [--folder NAME] [--wait] SOURCE...";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\n"
               "SOURCE: an mbox file (mboxo/mboxrd), a Maildir or Maildir++ tree, a directory\n"
               "of .eml files (file-name order; sub-directories become folders) or - (one\n"
               "message on stdin). Re-running an import adds nothing twice.\n", u);
        return 0;
    }
    const char *target = NULL, *folder = NULL;
    const char **src = calloc((size_t)argc + 1, sizeof *src);
    size_t ns = 0;
    if (!src)
        return EX_FAIL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--folder") && i + 1 < argc)
            folder = argv[++i];
        else if (!strcmp(argv[i], "--wait"))
            continue;
        else if (argv[i][0] == '-' && argv[i][1])
            return free(src), usage(u);
        else if (!target)
            target = argv[i];
        else
            src[ns++] = argv[i];
    }
    if (!target || !ns) {
        free(src);
        return usage(u);
    }
    char id[STORE_ID_MAX + 1], user[STORE_USER_MAX + 1];
    struct inst *in;
    if (cli_split(c, target, id, user) || cli_open_inst(c, id, true, &in)) {
        free(src);
        return EX_FAIL;
    }
    struct import_opts o = {
        .folder = folder, .default_tz = c->default_tz[0] ? c->default_tz : NULL,
        .progress = isatty(2), .warn = stderr,
    };
    const char *bm = getenv("COFFER_IMPORT_BATCH");   /* tests: tiny batches */
    if (bm)
        o.batch_msgs = (unsigned)strtoul(bm, NULL, 10);
    struct import_stats st;
    const char *err = NULL;
    int rc = store_import(in, user, src, ns, &o, &st, &err);
    inst_close(in);
    free(src);
    printf("imported %llu, already present %llu, malformed (archived as is) %llu, "
           "%llu bytes%s\n",
           (unsigned long long)st.imported, (unsigned long long)st.present,
           (unsigned long long)st.malformed, (unsigned long long)st.bytes,
           rc ? " (stopped by the error below)" : "");
    if (st.vanished)
        printf("%llu source files vanished during the import\n", (unsigned long long)st.vanished);
    fflush(stdout);
    if (rc) {
        cli_err("%s", err ? err : store_strerror(rc));
        return EX_FAIL;
    }
    return 0;
}

int cmd_export(struct cli *c, int argc, char **argv)
{
    static const char u[] = "export INST/USER [--folder F] --format mbox|maildir|eml DEST";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\n", u);
        return 0;
    }
    const char *target = NULL, *folder = NULL, *fmt = NULL, *dest = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--folder") && i + 1 < argc)
            folder = argv[++i];
        else if (!strcmp(argv[i], "--format") && i + 1 < argc)
            fmt = argv[++i];
        else if (!strcmp(argv[i], "--wait"))
            continue;
        else if (!target)
            target = argv[i];
        else if (!dest)
            dest = argv[i];
        else
            return usage(u);
    }
    if (!target || !fmt || !dest)
        return usage(u);
    enum export_fmt f;
    if (!strcmp(fmt, "mbox")) f = EXPORT_MBOX;
    else if (!strcmp(fmt, "maildir")) f = EXPORT_MAILDIR;
    else if (!strcmp(fmt, "eml")) f = EXPORT_EML;
    else return usage(u);
    char id[STORE_ID_MAX + 1], user[STORE_USER_MAX + 1];
    struct inst *in;
    if (cli_split(c, target, id, user) || cli_open_inst(c, id, false, &in))
        return EX_FAIL;
    uint64_t n = 0;
    const char *err = NULL;
    int rc = store_export(in, user, folder, f, dest, &n, &err);
    inst_close(in);
    if (rc) {
        cli_err("%s", err ? err : store_strerror(rc));
        return EX_FAIL;
    }
    printf("exported %llu messages\n", (unsigned long long)n);
    return 0;
}
