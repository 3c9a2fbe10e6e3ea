/*
 * limiter.h: the table behind moat's abuse protection: per key (a client address, or a site's
 * `limit` key) a GCRA state and a count of open connections, shared by all workers of the
 * process. It is bounded: a fixed number of slots, found by a keyed hash (core/siphash.h)
 * and a short probe, so a flood of new addresses costs no memory and no lookup longer than
 * the probe. A slot is free again once its key holds no connection and its rate state has
 * run back to "quiet": forgetting such a key changes no decision. Only when a probe finds no
 * such slot is a key's rate state dropped early (the least recently seen one, counted in
 * `evicted`); a key that holds connections is never dropped, and when all of a probe do, the
 * event is let through (`overflow`): a full table must not lock everyone out.
 *
 * Locks: one mutex per stripe of slots, held for one lookup; never across anything else.
 */
#ifndef MOAT_CORE_LIMITER_H
#define MOAT_CORE_LIMITER_H

#include <stddef.h>
#include <stdint.h>

struct moat_limiter;

struct moat_limiter_stats {
    unsigned long long evicted;  /* rate states dropped before they ran out */
    unsigned long long overflow; /* events let through because the table was full */
};

/* A table of about `slots` keys (rounded up to a power of two, at least 64); `seed` (16
 * bytes, random per process) keys the hash. NULL when out of memory. */
struct moat_limiter *moat_limiter_new(size_t slots, const uint8_t seed[16]);
void moat_limiter_free(struct moat_limiter *l);

/* The table's key for these bytes (an address, a kind and a header value, ...). */
uint64_t moat_limiter_key(const struct moat_limiter *l, const void *data, size_t len);

/* One event of `key` at `now_us` at one per `interval_us` with `burst`: 1 allowed, else 0
 * with *wait_us until one would be. */
int moat_limiter_take(struct moat_limiter *l, uint64_t key, uint64_t now_us, uint64_t interval_us,
                      uint64_t burst, uint64_t *wait_us);

/* `n` events of `key` that happened elsewhere (moat_gcra_charge). */
void moat_limiter_charge(struct moat_limiter *l, uint64_t key, uint64_t now_us,
                         uint64_t interval_us, uint64_t burst, uint64_t n);

/* One more connection of `key` if it holds fewer than `max`: 1 (counted: it needs its
 * moat_limiter_conn_put), 0 (refused), or -1 (let through uncounted: the table is full). */
int moat_limiter_conn_take(struct moat_limiter *l, uint64_t key, uint32_t max);
void moat_limiter_conn_put(struct moat_limiter *l, uint64_t key);
/* How many connections `key` holds now. */
uint32_t moat_limiter_conns(struct moat_limiter *l, uint64_t key);

void moat_limiter_stats(struct moat_limiter *l, struct moat_limiter_stats *out);

#endif
