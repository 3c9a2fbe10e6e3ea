/*
 * loop.c: the epoll loop. Edge-triggered: each callback must read or write until EAGAIN, which
 * the connection state machine does anyway; in return no epoll_ctl is needed when a connection
 * switches between reading and writing.
 */
#include "core/loop.h"

#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256

moat_rc moat_loop_init(struct moat_loop *l, struct moat_err *err)
{
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "epoll_create1 failed");
    }
    moat_timers_init(&l->timers);
    l->now_ms = moat_now_ms();
    l->stop = 0;
    l->after = NULL;
    l->after_data = NULL;
    l->graveyard = NULL;
    l->ngraveyard = l->capgraveyard = 0;
    return MOAT_RC_OK;
}

static void bury(struct moat_loop *l)
{
    for (size_t i = 0; i < l->ngraveyard; i++) {
        l->graveyard[i].release(l->graveyard[i].p);
    }
    l->ngraveyard = 0;
}

void moat_loop_defer_free(struct moat_loop *l, void *p)
{
    moat_loop_defer(l, free, p);
}

void moat_loop_defer(struct moat_loop *l, void (*release)(void *p), void *p)
{
    if (l->ngraveyard == l->capgraveyard) {
        size_t cap = l->capgraveyard ? l->capgraveyard * 2 : 16;
        struct moat_grave *g = realloc(l->graveyard, cap * sizeof(*g));
        if (g == NULL) {
            /* Leaking one object beats freeing it under a pending event. */
            moat_log_w("out of memory: an object is leaked rather than freed too early");
            return;
        }
        l->graveyard = g;
        l->capgraveyard = cap;
    }
    l->graveyard[l->ngraveyard++] = (struct moat_grave){.release = release, .p = p};
}

void moat_loop_clear(struct moat_loop *l)
{
    if (l->epfd >= 0) {
        close(l->epfd);
        l->epfd = -1;
    }
    moat_timers_clear(&l->timers);
    bury(l);
    free(l->graveyard);
    l->graveyard = NULL;
    l->capgraveyard = 0;
}

static moat_rc ctl(struct moat_loop *l, int op, struct moat_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = w};
    if (epoll_ctl(l->epfd, op, w->fd, &ev) < 0) {
        return moat_rc_of(errno == ENOMEM ? MOAT_E_NOMEM : MOAT_E_IO);
    }
    return MOAT_RC_OK;
}

moat_rc moat_loop_add(struct moat_loop *l, struct moat_watch *w, uint32_t events)
{
    return ctl(l, EPOLL_CTL_ADD, w, events);
}

moat_rc moat_loop_mod(struct moat_loop *l, struct moat_watch *w, uint32_t events)
{
    return ctl(l, EPOLL_CTL_MOD, w, events);
}

void moat_loop_del(struct moat_loop *l, struct moat_watch *w)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

void moat_loop_run(struct moat_loop *l)
{
    struct epoll_event evs[MAX_EVENTS];
    while (!l->stop) {
        l->now_ms = moat_now_ms();
        int wait = moat_timers_wait_ms(&l->timers, l->now_ms);
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, wait);
        l->now_ms = moat_now_ms();
        for (int i = 0; i < n; i++) {
            struct moat_watch *w = evs[i].data.ptr;
            w->cb(w, evs[i].events);
        }
        moat_timers_run(&l->timers, l->now_ms);
        bury(l);
        if (l->after != NULL) {
            l->after(l, l->after_data);
        }
    }
}
