/*
 * timer.c: the heap behind struct moat_timers (see timer.h for the lazy re-arm).
 */
#include "core/timer.h"

#include <stdlib.h>
#include <time.h>

uint64_t moat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void moat_timers_init(struct moat_timers *ts)
{
    ts->heap = NULL;
    ts->n = ts->cap = 0;
}

void moat_timers_clear(struct moat_timers *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        ts->heap[i]->_idx = 0;
        ts->heap[i]->due_ms = 0;
    }
    free(ts->heap);
    moat_timers_init(ts);
}

static void place(struct moat_timers *ts, size_t i, struct moat_timer *t)
{
    ts->heap[i] = t;
    t->_idx = i + 1;
}

static void sift_up(struct moat_timers *ts, size_t i)
{
    struct moat_timer *t = ts->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (ts->heap[parent]->_key_ms <= t->_key_ms) {
            break;
        }
        place(ts, i, ts->heap[parent]);
        i = parent;
    }
    place(ts, i, t);
}

static void sift_down(struct moat_timers *ts, size_t i)
{
    struct moat_timer *t = ts->heap[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= ts->n) {
            break;
        }
        size_t c = l;
        if (l + 1 < ts->n && ts->heap[l + 1]->_key_ms < ts->heap[l]->_key_ms) {
            c = l + 1;
        }
        if (ts->heap[c]->_key_ms >= t->_key_ms) {
            break;
        }
        place(ts, i, ts->heap[c]);
        i = c;
    }
    place(ts, i, t);
}

static void heap_remove(struct moat_timers *ts, struct moat_timer *t)
{
    size_t i = t->_idx - 1;
    t->_idx = 0;
    ts->n--;
    if (i == ts->n) {
        return;
    }
    place(ts, i, ts->heap[ts->n]);
    sift_down(ts, i);
    sift_up(ts, ts->heap[i]->_idx - 1);
}

moat_rc moat_timer_arm(struct moat_timers *ts, struct moat_timer *t, uint64_t due_ms)
{
    MOAT_ASSERT(due_ms > 0);
    if (t->_idx != 0 && t->_key_ms <= due_ms) {
        t->due_ms = due_ms; /* later than the heap key: fixed up lazily when the key fires */
        return MOAT_RC_OK;
    }
    if (t->_idx != 0) {
        heap_remove(ts, t);
    }
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        struct moat_timer **h = realloc(ts->heap, cap * sizeof(*h));
        if (h == NULL) {
            return moat_rc_of(MOAT_E_NOMEM);
        }
        ts->heap = h;
        ts->cap = cap;
    }
    t->due_ms = due_ms;
    t->_key_ms = due_ms;
    place(ts, ts->n++, t);
    sift_up(ts, ts->n - 1);
    return MOAT_RC_OK;
}

void moat_timer_disarm(struct moat_timers *ts, struct moat_timer *t)
{
    if (t->_idx != 0) {
        heap_remove(ts, t);
    }
    t->due_ms = 0;
}

int moat_timers_wait_ms(const struct moat_timers *ts, uint64_t now_ms)
{
    if (ts->n == 0) {
        return -1;
    }
    uint64_t key = ts->heap[0]->_key_ms;
    if (key <= now_ms) {
        return 0;
    }
    uint64_t d = key - now_ms;
    return d > 3600000u ? 3600000 : (int)d;
}

void moat_timers_run(struct moat_timers *ts, uint64_t now_ms)
{
    while (ts->n > 0 && ts->heap[0]->_key_ms <= now_ms) {
        struct moat_timer *t = ts->heap[0];
        heap_remove(ts, t);
        if (t->due_ms > now_ms) {
            /* Re-armed later since it was keyed: put it back under its real deadline. The
             * heap has room (we just removed it), so this cannot fail. */
            t->_key_ms = t->due_ms;
            place(ts, ts->n++, t);
            sift_up(ts, ts->n - 1);
            continue;
        }
        t->due_ms = 0;
        t->cb(t);
    }
}
