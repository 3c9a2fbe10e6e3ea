/*
 * gcra.h: the generic cell rate algorithm, the rate limiter behind every `N/s burst B` of
 * moat. One number per key (the theoretical arrival time) instead of a token bucket's two,
 * so a shared table (and later a Redis key) holds it in one word, and the decision is exact
 * whatever the clock's granularity: no refill timer, no drift.
 */
#ifndef MOAT_CORE_GCRA_H
#define MOAT_CORE_GCRA_H

#include <stdint.h>

/* A rate: `n` events per `per_ms`, `burst` of them at once. n == 0: no limit. */
struct moat_rate {
    uint64_t n;
    uint64_t per_ms;
    uint64_t burst;
};

/* The rate's emission interval in microseconds (at least 1). */
uint64_t moat_rate_interval_us(const struct moat_rate *r);

/*
 * One event at `now_us` against the state *tat_us (0 for a key never seen): 1 when the rate
 * allows it (then *tat_us moves on), else 0 with *wait_us the time until one would be
 * allowed (*tat_us unchanged, so refused events cost the client nothing it could bank).
 */
int moat_gcra_take(uint64_t *tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
                   uint64_t *wait_us);

/*
 * `n` events that happened elsewhere (another node of a cluster let them through): *tat_us
 * moves on as if they had happened here, at most to a full burst ahead of now, so the events
 * seen here afterwards are judged against everyone's.
 */
void moat_gcra_charge(uint64_t *tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
                      uint64_t n);

#endif
