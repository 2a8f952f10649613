/* harness_server.h — shared set-up of the fuzz targets that drive the
 * server code in-process (fuzz_sasl, fuzz_session): a scratch store built
 * once per process, libsasl2 initialised as cofferd's parent does it, a
 * connection over in-memory files, and the SCRAM client keys of the test
 * users so a harness can complete a real exchange.
 *
 * The store: instance "fz" (alias "Fz-Alias") with users
 *   u / pencil        ordinary user
 *   boss / secret     admin (may act as u through a PLAIN authzid)
 *   off / pencil      disabled
 *   nopw              no password
 * and instance "other" with u / pencil (same name, other tenant).
 * Password hashing is made cheap (see harness_server.c): the targets fuzz
 * the protocol paths, not yescrypt. */
#ifndef COFFER_FUZZ_HARNESS_SERVER_H
#define COFFER_FUZZ_HARNESS_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct conn;
struct inst;

struct fz_user {
    const char *name, *password;
    bool admin;
    unsigned char client_key[32], stored_key[32];   /* SCRAM, from the stored salt */
};

/* Build the store under $FUZZ_SCRATCH (else /dev/shm or /tmp) and init
 * libsasl2. populate(in) may add mailboxes and messages to instance "fz"
 * (opened writable, inside a write batch). Aborts on any failure: that is
 * a harness or store bug, not a finding. */
void fz_server_init(const char *name, void (*populate)(struct inst *in));
const struct store_cfg *fz_store(void);
/* The user record of instance "fz" named exactly name, or NULL. */
const struct fz_user *fz_user(const char *name, size_t len);

/* A connection whose input is data/size (a memfd) and whose output goes
 * to a memfd the caller can read back with fz_output(). */
struct conn *fz_conn_new(const uint8_t *data, size_t size);
/* Everything written since fz_conn_new (after conn_free). *len set. */
const char *fz_output(size_t *len);

/* SCRAM ClientProof (base64, NUL-terminated, 44 octets + NUL) for
 * AuthMessage am/amlen with the given user's keys. */
void fz_scram_proof(const struct fz_user *u, const char *am, size_t amlen, char out[64]);

#endif
