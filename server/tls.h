/* tls.h — the daemon's TLS contexts: one per configured certificate (the
 * default and every tls_sni name), built in the parent before any fork, and
 * the stateless session-ticket keys the parent rotates. */
#ifndef COFFER_TLS_H
#define COFFER_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>
#include "server/config.h"

struct tls_set;

/* Load certificates and keys and build every SSL_CTX. */
int tls_build(const struct cofferd_cfg *cfg, struct tls_set **out, char *err, size_t errlen);
SSL_CTX *tls_default_ctx(struct tls_set *t);
void tls_free(struct tls_set *t);

/* Ticket keys: the current one encrypts, the previous one still decrypts.
 * tls_tickets_rotate() generates a new current key. */
int tls_tickets_rotate(void);
/* Wipe both keys (a child: after its handshake, or once logged in without
 * TLS, when no STARTTLS can follow). Done by itself at the end of every
 * handshake of these contexts. */
void tls_tickets_forget(void);

#endif
