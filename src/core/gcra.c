/*
 * gcra.c: see gcra.h. With T the interval and B the burst, an event at `now` is allowed when
 * the arrival time it would leave, max(tat, now) + T, is no further than B * T ahead of now:
 * B events at once from a quiet key, then one every T.
 */
#include "core/gcra.h"

uint64_t moat_rate_interval_us(const struct moat_rate *r)
{
    if (r->n == 0) {
        return 1;
    }
    uint64_t us = r->per_ms * 1000 / r->n;
    return us > 0 ? us : 1;
}

int moat_gcra_take(uint64_t *tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
                   uint64_t *wait_us)
{
    if (burst == 0) {
        burst = 1;
    }
    uint64_t base = *tat_us > now_us ? *tat_us : now_us;
    uint64_t next = base + interval_us;
    uint64_t allowance = interval_us * burst;
    if (next - now_us <= allowance) {
        *tat_us = next;
        *wait_us = 0;
        return 1;
    }
    *wait_us = next - now_us - allowance;
    return 0;
}

void moat_gcra_charge(uint64_t *tat_us, uint64_t now_us, uint64_t interval_us, uint64_t burst,
                      uint64_t n)
{
    if (burst == 0) {
        burst = 1;
    }
    uint64_t base = *tat_us > now_us ? *tat_us : now_us;
    uint64_t cap = now_us + interval_us * burst;
    uint64_t room = base < cap ? (cap - base) / interval_us : 0;
    *tat_us = base + (n < room ? n : room) * interval_us;
}
