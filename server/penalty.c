/* penalty.c — see penalty.h. Only the parent keeps this table; children
 * learn their address's penalty at fork and report outcomes (cofferd.c). */
#include "server/penalty.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct name_fails {
    uint64_t h;          /* keyed hash of the canonical name */
    unsigned n;          /* 0: pair unused */
};

struct penalty {
    char ip[64];
    struct name_fails names[PENALTY_NAMES];
    unsigned other;      /* failures without a name or past PENALTY_NAMES */
    time_t last;         /* last failure */
};

static struct penalty pen[PENALTY_SLOTS];
static unsigned char key[32];

int penalty_init(void)
{
    return RAND_bytes(key, sizeof key) == 1 ? 0 : -1;
}

void penalty_forget_key(void)
{
    OPENSSL_cleanse(key, sizeof key);
}

static uint64_t name_hash(const char *name, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int l = 0;
    HMAC(EVP_sha256(), key, sizeof key, (const unsigned char *)name, len, md, &l);
    uint64_t h;
    memcpy(&h, md, sizeof h);
    return h;
}

static unsigned total(const struct penalty *p)
{
    unsigned t = p->other;
    for (unsigned i = 0; i < PENALTY_NAMES; i++)
        t += p->names[i].n;
    return t;
}

static struct penalty *find(const char *ip, bool create)
{
    struct penalty *victim = NULL;   /* a free slot, else the stalest */
    for (unsigned i = 0; i < PENALTY_SLOTS; i++) {
        if (pen[i].ip[0] && !strcmp(pen[i].ip, ip))
            return &pen[i];
        if (!pen[i].ip[0]) {
            if (!victim || victim->ip[0])
                victim = &pen[i];
        } else if (!victim || (victim->ip[0] && pen[i].last < victim->last)) {
            victim = &pen[i];
        }
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof *victim);
    snprintf(victim->ip, sizeof victim->ip, "%s", ip);
    return victim;
}

/* The live entry of ip, or NULL; an expired one is dropped on the way. */
static struct penalty *live(const char *ip, time_t now)
{
    struct penalty *p = find(ip, false);
    if (p && now - p->last > PENALTY_EXPIRE_S) {
        memset(p, 0, sizeof *p);
        return NULL;
    }
    return p;
}

void penalty_fail(const char *ip, const char *name, size_t len, time_t now)
{
    struct penalty *p = live(ip, now);
    if (!p)
        p = find(ip, true);
    p->last = now;
    if (len == 0) {
        p->other++;
        return;
    }
    uint64_t h = name_hash(name, len);
    struct name_fails *freep = NULL;
    for (unsigned i = 0; i < PENALTY_NAMES; i++) {
        if (p->names[i].n && p->names[i].h == h) {
            p->names[i].n++;
            return;
        }
        if (!p->names[i].n && !freep)
            freep = &p->names[i];
    }
    if (freep) {
        freep->h = h;
        freep->n = 1;
    } else {
        p->other++;   /* never evict a name: that would wash its failures */
    }
}

void penalty_success(const char *ip, const char *name, size_t len, time_t now)
{
    struct penalty *p = live(ip, now);
    if (!p || len == 0)
        return;
    uint64_t h = name_hash(name, len);
    for (unsigned i = 0; i < PENALTY_NAMES; i++)
        if (p->names[i].n && p->names[i].h == h)
            p->names[i] = (struct name_fails){ 0, 0 };
    if (!total(p))
        memset(p, 0, sizeof *p);
}

unsigned penalty_failures(const char *ip, time_t now)
{
    struct penalty *p = live(ip, now);
    return p ? total(p) : 0;
}

int penalty_ms(const char *ip, time_t now, int max_ms)
{
    if (max_ms <= 0)
        return 0;
    unsigned fails = penalty_failures(ip, now);
    if (!fails)
        return 0;
    unsigned sh = fails - 1 > 16 ? 16 : fails - 1;
    long ms = (long)PENALTY_BASE_MS << sh;
    return ms > max_ms ? max_ms : (int)ms;
}
