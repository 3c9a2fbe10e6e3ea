/*
 * loop.h: a worker's event loop: epoll (edge-triggered) + the worker's timers + a list of
 * objects to free at the end of the iteration (so nothing is freed while a callback further up
 * the stack still holds it).
 */
#ifndef MOAT_CORE_LOOP_H
#define MOAT_CORE_LOOP_H

#include "core/err.h"
#include "core/timer.h"

#include <stdint.h>

struct moat_loop;
struct moat_watch;
/* events: EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP/EPOLLRDHUP bits as epoll reported them. */
typedef void (*moat_watch_cb)(struct moat_watch *w, uint32_t events);

struct moat_watch {
    int fd; /* borrowed: the owner closes it after moat_loop_del */
    moat_watch_cb cb;
    void *data; /* borrowed: the owner's context */
};

struct moat_grave {
    void (*release)(void *p);
    void *p;
};

struct moat_loop {
    int epfd; /* owned */
    struct moat_timers timers;
    uint64_t now_ms; /* cached at each wake-up */
    int stop;        /* set to leave moat_loop_run after this iteration */
    void (*after)(struct moat_loop *l, void *data); /* run at the end of each iteration */
    void *after_data;
    struct moat_grave *graveyard; /* owned: objects to free at the end of this iteration */
    size_t ngraveyard, capgraveyard;
};

MOAT_MUST_USE moat_rc moat_loop_init(struct moat_loop *l, struct moat_err *err);
void moat_loop_clear(struct moat_loop *l);
/* Watch w->fd for `events` (EPOLLIN/EPOLLOUT; EPOLLET is added). */
MOAT_MUST_USE moat_rc moat_loop_add(struct moat_loop *l, struct moat_watch *w, uint32_t events);
MOAT_MUST_USE moat_rc moat_loop_mod(struct moat_loop *l, struct moat_watch *w, uint32_t events);
void moat_loop_del(struct moat_loop *l, struct moat_watch *w);
/* Free `p` at the end of this loop iteration, when no event of the batch being run can name it
 * any more (an object with a watch, closed by another object's callback). */
void moat_loop_defer_free(struct moat_loop *l, void *p);
/* The same with the owner's own release (an object kept for reuse rather than freed). */
void moat_loop_defer(struct moat_loop *l, void (*release)(void *p), void *p);

/* Run until l->stop is set. */
void moat_loop_run(struct moat_loop *l);

#endif
