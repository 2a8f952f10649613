/* coffer_int.h — shared by the coffer CLI sources (server/coffer*.c). */
#ifndef COFFER_CLI_INT_H
#define COFFER_CLI_INT_H
#include <stdbool.h>
#include <stdint.h>
#include "store/admin.h"
#include "store/store.h"

struct cli {
    struct store_cfg cfg;
    char data_dir[1024];
    char user[64];
    char default_tz[64];
    uint64_t map_size;
    unsigned max_connections;
    bool wait;
};

/* Exit codes: 0 ok, 1 failure, 2 usage error, 3 corruption found. */
#define EX_FAIL 1
#define EX_USAGE 2
#define EX_CORRUPT 3

int cmd_instance(struct cli *c, int argc, char **argv);
int cmd_user(struct cli *c, int argc, char **argv);
int cmd_grant(struct cli *c, int argc, char **argv, bool grant);
int cmd_import(struct cli *c, int argc, char **argv);
int cmd_export(struct cli *c, int argc, char **argv);
int cmd_verify(struct cli *c, int argc, char **argv);
int cmd_backup(struct cli *c, int argc, char **argv);
int cmd_restore(struct cli *c, int argc, char **argv);
int cmd_stats(struct cli *c, int argc, char **argv);
int cmd_reindex(struct cli *c, int argc, char **argv);
int cmd_upgrade(struct cli *c, int argc, char **argv);

/* helpers (coffer.c) */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool want_help(int argc, char **argv);
/* "INST/USER" -> canonical instance id and user name; opens nothing else. */
int cli_split(struct cli *c, const char *arg, char id[STORE_ID_MAX + 1],
              char user[STORE_USER_MAX + 1]);
/* Resolve an instance name (id or alias) to its id. */
int cli_resolve(struct cli *c, const char *name, char id[STORE_ID_MAX + 1]);
int cli_open_inst(struct cli *c, const char *id, bool writable, struct inst **out);
/* Every instance id, for commands without an INSTANCE argument. */
int cli_all_instances(struct cli *c, char ***ids, size_t *n);

#endif
