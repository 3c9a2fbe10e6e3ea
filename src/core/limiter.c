/*
 * limiter.c: see limiter.h. Slots are grouped in 64 stripes; a key's stripe and its home
 * slot in the stripe come from different bits of its hash, and a lookup probes PROBE slots
 * from the home one, wrapping in the stripe.
 */
#include "core/limiter.h"

#include "core/gcra.h"
#include "core/siphash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64
#define PROBE 8

struct slot {
    uint64_t key; /* 0: empty */
    uint64_t tat_us;
    uint64_t seen_us;
    uint32_t conns;
};

struct stripe {
    pthread_mutex_t mu;
    struct slot *slots;
    unsigned long long evicted, overflow;
};

struct moat_limiter {
    uint8_t seed[16];
    size_t per_stripe; /* power of two */
    struct stripe stripes[STRIPES];
};

struct moat_limiter *moat_limiter_new(size_t slots, const uint8_t seed[16])
{
    struct moat_limiter *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    memcpy(l->seed, seed, 16);
    size_t per = 1;
    while (per * STRIPES < slots) {
        per <<= 1;
    }
    if (per < PROBE) {
        per = PROBE;
    }
    l->per_stripe = per;
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&l->stripes[i].mu, NULL);
        l->stripes[i].slots = calloc(per, sizeof(struct slot));
        if (l->stripes[i].slots == NULL) {
            moat_limiter_free(l);
            return NULL;
        }
    }
    return l;
}

void moat_limiter_free(struct moat_limiter *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < STRIPES; i++) {
        free(l->stripes[i].slots);
        pthread_mutex_destroy(&l->stripes[i].mu);
    }
    free(l);
}

uint64_t moat_limiter_key(const struct moat_limiter *l, const void *data, size_t len)
{
    uint64_t k = moat_siphash24(l->seed, data, len);
    return k != 0 ? k : 1;
}

/* Whether forgetting the slot changes no decision: no connection, rate state run out. */
static int quiet(const struct slot *s, uint64_t now_us)
{
    return s->conns == 0 && s->tat_us <= now_us;
}

/*
 * The slot of `key` in its (locked) stripe: its own, else a free or quiet one taken for it,
 * else (`may_evict`) the least recently seen one without connections, else NULL.
 */
static struct slot *find(struct moat_limiter *l, struct stripe *st, uint64_t key, uint64_t now_us,
                         int may_evict)
{
    size_t mask = l->per_stripe - 1;
    size_t home = (size_t)(key >> 6) & mask;
    struct slot *spare = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        struct slot *s = &st->slots[(home + i) & mask];
        if (s->key == key) {
            return s;
        }
        if (spare == NULL && (s->key == 0 || quiet(s, now_us))) {
            spare = s;
        }
        if (s->conns == 0 && (oldest == NULL || s->seen_us < oldest->seen_us)) {
            oldest = s;
        }
    }
    if (spare == NULL && may_evict && oldest != NULL) {
        st->evicted++;
        spare = oldest;
    }
    if (spare != NULL) {
        *spare = (struct slot){.key = key, .seen_us = now_us};
    }
    return spare;
}

static struct stripe *stripe_of(struct moat_limiter *l, uint64_t key)
{
    return &l->stripes[key & (STRIPES - 1)];
}

int moat_limiter_take(struct moat_limiter *l, uint64_t key, uint64_t now_us, uint64_t interval_us,
                      uint64_t burst, uint64_t *wait_us)
{
    struct stripe *st = stripe_of(l, key);
    pthread_mutex_lock(&st->mu);
    struct slot *s = find(l, st, key, now_us, 1);
    int ok = 1;
    *wait_us = 0;
    if (s == NULL) {
        st->overflow++;
    } else {
        s->seen_us = now_us;
        ok = moat_gcra_take(&s->tat_us, now_us, interval_us, burst, wait_us);
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}

void moat_limiter_charge(struct moat_limiter *l, uint64_t key, uint64_t now_us,
                         uint64_t interval_us, uint64_t burst, uint64_t n)
{
    struct stripe *st = stripe_of(l, key);
    pthread_mutex_lock(&st->mu);
    struct slot *s = find(l, st, key, now_us, 1);
    if (s != NULL) {
        s->seen_us = now_us;
        moat_gcra_charge(&s->tat_us, now_us, interval_us, burst, n);
    }
    pthread_mutex_unlock(&st->mu);
}

int moat_limiter_conn_take(struct moat_limiter *l, uint64_t key, uint32_t max)
{
    struct stripe *st = stripe_of(l, key);
    pthread_mutex_lock(&st->mu);
    /* A count is never dropped; no clock is needed: a slot with connections is never quiet,
     * and one without takes its rate state's time (seen_us stays as the rates set it). */
    struct slot *s = find(l, st, key, 0, 1);
    int ok = 1;
    if (s == NULL) {
        st->overflow++;
        ok = -1;
    } else if (s->conns >= max) {
        ok = 0;
    } else {
        s->conns++;
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}

uint32_t moat_limiter_conns(struct moat_limiter *l, uint64_t key)
{
    struct stripe *st = stripe_of(l, key);
    pthread_mutex_lock(&st->mu);
    size_t mask = l->per_stripe - 1;
    size_t home = (size_t)(key >> 6) & mask;
    uint32_t n = 0;
    for (size_t i = 0; i < PROBE; i++) {
        const struct slot *s = &st->slots[(home + i) & mask];
        if (s->key == key) {
            n = s->conns;
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

void moat_limiter_conn_put(struct moat_limiter *l, uint64_t key)
{
    struct stripe *st = stripe_of(l, key);
    pthread_mutex_lock(&st->mu);
    size_t mask = l->per_stripe - 1;
    size_t home = (size_t)(key >> 6) & mask;
    for (size_t i = 0; i < PROBE; i++) {
        struct slot *s = &st->slots[(home + i) & mask];
        if (s->key == key) {
            if (s->conns > 0) {
                s->conns--;
            }
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
}

void moat_limiter_stats(struct moat_limiter *l, struct moat_limiter_stats *out)
{
    *out = (struct moat_limiter_stats){0};
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&l->stripes[i].mu);
        out->evicted += l->stripes[i].evicted;
        out->overflow += l->stripes[i].overflow;
        pthread_mutex_unlock(&l->stripes[i].mu);
    }
}
