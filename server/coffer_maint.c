/* coffer_maint.c — verify, backup, restore, stats, reindex, upgrade. */
#include "server/coffer_int.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int one_or_all(struct cli *c, int argc, char **argv, const char *u, char ***ids,
                      size_t *n)
{
    if (argc > 1) {
        fprintf(stderr, "usage: coffer %s\n", u);
        return EX_USAGE;
    }
    if (argc == 1) {
        char id[STORE_ID_MAX + 1];
        if (cli_resolve(c, argv[0], id))
            return EX_FAIL;
        *ids = malloc(sizeof **ids);
        if (!*ids || !((*ids)[0] = strdup(id)))
            return EX_FAIL;
        *n = 1;
        return 0;
    }
    return cli_all_instances(c, ids, n) ? EX_FAIL : 0;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* Each instance is walked in a child: a crash on a corrupt page is then
 * reported as corruption of that instance instead of killing the tool. */
int cmd_verify(struct cli *c, int argc, char **argv)
{
    static const char u[] = "verify [INST]";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\nRecompute every hash and CRC, check refcounts and cross "
               "references.\nExit status 0 = clean, 3 = faults found, 1 = error.\n", u);
        return 0;
    }
    char **ids;
    size_t n;
    int rc = one_or_all(c, argc, argv, u, &ids, &n);
    if (rc)
        return rc;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            cli_err("fork: %s", strerror(errno));
            worst = EX_FAIL;
            break;
        }
        if (pid == 0) {
            struct inst *in;
            if (cli_open_inst(c, ids[i], false, &in))
                _exit(EX_FAIL);
            long f = store_verify_inst(in, stdout);
            inst_close(in);
            fflush(stdout);
            _exit(f < 0 ? EX_FAIL : f > 0 ? EX_CORRUPT : 0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        int code;
        if (WIFSIGNALED(st)) {
            printf("instance %s: verify crashed with signal %d: the store is corrupt\n",
                   ids[i], WTERMSIG(st));
            code = EX_CORRUPT;
        } else {
            code = WEXITSTATUS(st);
            printf("instance %s: %s\n", ids[i],
                   code == 0 ? "OK" : code == EX_CORRUPT ? "FAULTS FOUND" : "could not be checked");
        }
        if (code == EX_CORRUPT || (code && !worst))
            worst = code;
    }
    free_ids(ids, n);
    return worst;
}

int cmd_backup(struct cli *c, int argc, char **argv)
{
    if (want_help(argc, argv) || argc != 2) {
        fprintf(argc != 2 && !want_help(argc, argv) ? stderr : stdout,
                "usage: coffer backup INST DEST\nHot, consistent, compacted copy "
                "(users, grants, flags, UIDs included) into directory DEST.\n");
        return want_help(argc, argv) ? 0 : EX_USAGE;
    }
    char id[STORE_ID_MAX + 1];
    if (cli_resolve(c, argv[0], id))
        return EX_FAIL;
    const char *err = NULL;
    if (store_backup(&c->cfg, id, argv[1], &err)) {
        cli_err("%s", err);
        return EX_FAIL;
    }
    printf("backup of %s written to %s\n", id, argv[1]);
    return 0;
}

int cmd_restore(struct cli *c, int argc, char **argv)
{
    if (want_help(argc, argv) || argc != 2) {
        fprintf(argc != 2 && !want_help(argc, argv) ? stderr : stdout,
                "usage: coffer restore SRC INST\nRestore the backup in directory SRC as "
                "the new instance INST.\n");
        return want_help(argc, argv) ? 0 : EX_USAGE;
    }
    struct registry *r;
    const char *err = NULL;
    if (registry_open(&c->cfg, true, &r, &err)) {
        cli_err("%s", err);
        return EX_FAIL;
    }
    int rc = store_restore(r, argv[0], argv[1], &err);
    registry_close(r);
    if (rc) {
        cli_err("%s", err);
        return EX_FAIL;
    }
    printf("restored %s as instance %s\n", argv[0], argv[1]);
    return 0;
}

int cmd_stats(struct cli *c, int argc, char **argv)
{
    static const char u[] = "stats [INST]";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\n", u);
        return 0;
    }
    char **ids;
    size_t n;
    int rc = one_or_all(c, argc, argv, u, &ids, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        struct inst *in;
        if (cli_open_inst(c, ids[i], false, &in)) {
            rc = EX_FAIL;
            break;
        }
        if (store_stats(in, stdout))
            rc = EX_FAIL;
        inst_close(in);
    }
    free_ids(ids, n);
    return rc;
}

int cmd_reindex(struct cli *c, int argc, char **argv)
{
    static const char u[] = "reindex [INST]";
    if (want_help(argc, argv)) {
        printf("usage: coffer %s\nRecompute derived data (part tables, ENVELOPE, "
               "BODYSTRUCTURE) and the text index from the stored octets.\n", u);
        return 0;
    }
    char **ids;
    size_t n;
    int rc = one_or_all(c, argc, argv, u, &ids, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        struct inst *in;
        if (cli_open_inst(c, ids[i], true, &in)) {
            rc = EX_FAIL;
            break;
        }
        uint64_t cnt = 0;
        const char *err = NULL;
        if (store_reindex(in, true, &cnt, &err)) {
            cli_err("%s: %s", ids[i], err);
            rc = EX_FAIL;
        } else {
            printf("instance %s: reindexed %llu messages\n", ids[i], (unsigned long long)cnt);
        }
        inst_close(in);
    }
    free_ids(ids, n);
    return rc;
}

int cmd_upgrade(struct cli *c, int argc, char **argv)
{
    if (want_help(argc, argv) || argc) {
        fprintf(argc && !want_help(argc, argv) ? stderr : stdout,
                "usage: coffer upgrade\nMigrate every instance to the current schema.\n");
        return want_help(argc, argv) ? 0 : EX_USAGE;
    }
    char **ids;
    size_t n;
    if (cli_all_instances(c, &ids, &n))
        return EX_FAIL;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int from, to;
        const char *err = NULL;
        if (store_upgrade_inst(&c->cfg, ids[i], &from, &to, &err)) {
            cli_err("%s: %s", ids[i], err);
            rc = EX_FAIL;
        } else if (from != to) {
            printf("instance %s: schema %d -> %d\n", ids[i], from, to);
        } else {
            printf("instance %s: schema %d, up to date\n", ids[i], to);
        }
    }
    free_ids(ids, n);
    return rc;
}
