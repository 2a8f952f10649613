/* penalty.h — the parent's per-address failed-login penalty. Failures are
 * kept per address and, within it, per attempted login name (a keyed hash,
 * never the name), so a success clears only what the same name caused from
 * that address: a user who mistyped starts clean, an attacker's own account
 * cannot wash the failures against other names. */
#ifndef COFFER_PENALTY_H
#define COFFER_PENALTY_H
#include <stddef.h>
#include <time.h>

#define PENALTY_SLOTS 1024       /* addresses; the stalest is dropped */
#define PENALTY_NAMES 8          /* names per address; more go to "other" */
#define PENALTY_BASE_MS 250      /* first step, doubling per failure */
#define PENALTY_EXPIRE_S 900     /* forgotten after the last failure */

/* Once in the parent: a fresh random key for the name hashes. */
int penalty_init(void);
/* In a child right after fork: the key is the parent's business. */
void penalty_forget_key(void);
/* A failure from ip; name/len the canonical attempted login name (len 0:
 * unknown, counted as "other", which no success clears). */
void penalty_fail(const char *ip, const char *name, size_t len, time_t now);
/* A success of name from ip: removes that name's failures only. */
void penalty_success(const char *ip, const char *name, size_t len, time_t now);
/* Penalty for the next connection from ip, capped at max_ms (<= 0: none). */
int penalty_ms(const char *ip, time_t now, int max_ms);
/* Failures still counted for ip (tests). */
unsigned penalty_failures(const char *ip, time_t now);

#endif
