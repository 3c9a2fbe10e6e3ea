/*
 * timer.h: one-shot timers of a worker, in a binary min-heap.
 *
 * Connections re-arm their timer on nearly every read, so re-arming later than the current
 * deadline is O(1): only `due_ms` changes and the heap keeps the old, earlier key; when that key
 * fires, the timer is pushed back with the new deadline instead of running (the lazy re-arm that
 * nginx's and h2o's timers use in their own ways). Arming earlier sifts the heap, O(log n).
 * Not thread-safe: one set per worker.
 */
#ifndef MOAT_CORE_TIMER_H
#define MOAT_CORE_TIMER_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct moat_timer;
typedef void (*moat_timer_cb)(struct moat_timer *t);

struct moat_timer {
    uint64_t due_ms;  /* when it should fire (monotonic ms); 0 = not armed */
    uint64_t _key_ms; /* the key it sits under in the heap (<= due_ms) */
    size_t _idx;      /* position in the heap + 1; 0 = not in the heap */
    moat_timer_cb cb;
    void *data; /* borrowed: the owner's context */
};

struct moat_timers {
    struct moat_timer **heap; /* owned array of borrowed timers */
    size_t n, cap;
};

void moat_timers_init(struct moat_timers *ts);
void moat_timers_clear(struct moat_timers *ts);

static inline void moat_timer_init(struct moat_timer *t, moat_timer_cb cb, void *data)
{
    t->due_ms = 0;
    t->_key_ms = 0;
    t->_idx = 0;
    t->cb = cb;
    t->data = data;
}
static inline int moat_timer_armed(const struct moat_timer *t)
{
    return t->due_ms != 0;
}

/* Arm (or re-arm) to fire at due_ms (must be > 0). Fails only on ENOMEM growing the heap. */
MOAT_MUST_USE moat_rc moat_timer_arm(struct moat_timers *ts, struct moat_timer *t, uint64_t due_ms);
void moat_timer_disarm(struct moat_timers *ts, struct moat_timer *t);
/* Milliseconds until the earliest key (0 if already due), or -1 when no timer is armed. */
int moat_timers_wait_ms(const struct moat_timers *ts, uint64_t now_ms);
/* Run the callbacks of every timer due at now_ms; a callback may arm or disarm any timer. */
void moat_timers_run(struct moat_timers *ts, uint64_t now_ms);

uint64_t moat_now_ms(void); /* CLOCK_MONOTONIC in milliseconds */

#endif
