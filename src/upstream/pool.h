/*
 * pool.h: a worker's connections to upstream servers: open ones on demand, keep the ones that
 * may carry another request (keep-alive) for the next request to the same server, and close
 * what the server closed or what stayed idle too long.
 *
 * One pool per worker, on its loop, so nothing here takes a lock. A connection is either busy
 * (its owner, a proxied exchange or a health check, has it and gets its socket's events) or
 * idle in the pool, which watches it: any byte or close from the server while idle ends it,
 * since HTTP/1.1 gives an idle server nothing to say (RFC 9112 §9.3). The socket stays in the
 * epoll set the whole time; only the callback changes hands. Each connection holds a
 * reference to its group, so a pooled connection outlives a configuration reload safely; it
 * is reused only by requests of the same group (a reload makes new groups, whose TLS and
 * limits may differ), and the old ones age out.
 */
#ifndef MOAT_UPSTREAM_POOL_H
#define MOAT_UPSTREAM_POOL_H

#include "core/err.h"
#include "core/loop.h"
#include "http1/client.h"
#include "upstream/group.h"

#include <stddef.h>
#include <stdint.h>

struct moat_up_pool;

enum moat_up_conn_state {
    MOAT_UP_CONNECTING = 0, /* the TCP connect is under way */
    MOAT_UP_HANDSHAKE,      /* TLS (the PROXY header, if any, went before it) */
    MOAT_UP_READY,          /* requests may go */
};

struct moat_up_conn {
    struct moat_watch w;              /* w.fd == h1c.tr.fd; cb/data: the owner's while busy */
    struct moat_h1c h1c;              /* the HTTP/1.1 session; its transport owns the socket */
    struct moat_timer idle;           /* while pooled: keepalive_timeout */
    struct moat_up_group *group;      /* one reference */
    size_t server;                    /* index in group */
    struct moat_up_pool *pool;        /* borrowed: the worker's */
    struct moat_up_conn *prev, *next; /* the pool's idle list, most recent first */
    enum moat_up_conn_state state;
    unsigned requests; /* answered on it so far: > 0 means it is a reused connection */
    int pooled;
    uint8_t preface[240]; /* a PROXY v2 header still to send before anything else */
    size_t npreface;
};

/*
 * A request waiting for a place below max_conns. Places come free when a request ends, on
 * this worker or on another, so a wait is a FIFO per pool woken by moat_up_pool_done: the
 * oldest waiter of the group here, or else the workers that have waiters, through `notify`.
 */
struct moat_up_waiter {
    struct moat_up_waiter *prev, *next; /* the pool's wait list, oldest first */
    struct moat_up_group *group;        /* borrowed: the waiting request holds a reference */
    /* A place may have come free: look again, from a loop callback of its own (it is called
     * from inside another request's end, so it must only arm something). */
    void (*wake)(struct moat_up_waiter *w);
    int linked;
    /* Set before wake; the owner clears it when it looks. Still set when it leaves the queue,
     * the place it was woken for goes to the next waiter of its group. */
    int woken;
};

struct moat_up_pool {
    struct moat_loop *loop; /* borrowed: the worker's */
    struct moat_up_conn *idle_head;
    size_t nidle;
    unsigned long long opened, reused; /* counters, for tests and the status page */
    struct moat_up_waiter *wait_head, *wait_tail;
    atomic_size_t nwaiting; /* the wait list's length; other workers read it */
    /* Tell the other workers with waiters that a place came free (the worker's poke); NULL in
     * a process with one loop. */
    void (*notify)(void *data);
    void *notify_data;
};

void moat_up_pool_init(struct moat_up_pool *p, struct moat_loop *loop);

/* Queue w for a place in g (w->wake set by the caller). The caller then picks once more: a
 * place freed between its failed pick and this call woke nobody. */
void moat_up_wait(struct moat_up_pool *p, struct moat_up_waiter *w, struct moat_up_group *g);
/* Leave the queue (a place was found, the wait timed out, the request ended). Idempotent. */
void moat_up_unwait(struct moat_up_pool *p, struct moat_up_waiter *w);
/* Whether a request of g would be queued behind others here (first come, first served). */
int moat_up_pool_has_waiter(const struct moat_up_pool *p, const struct moat_up_group *g);
/* Whether another waiter of w's group is ahead of w here. */
int moat_up_pool_has_waiter_before(const struct moat_up_pool *p, const struct moat_up_waiter *w);
/* A request picked on server i of g ended: its place goes to the oldest waiter of g here, or
 * else `notify` tells the other workers. Replaces moat_up_done for pool owners. */
void moat_up_pool_done(struct moat_up_pool *p, struct moat_up_group *g, size_t i);
/* Another worker said a place came free: wake the oldest waiter of each group waiting here. */
void moat_up_pool_wake(struct moat_up_pool *p);
/* Close every idle connection (worker shutdown). Busy ones belong to their owners. */
void moat_up_pool_clear(struct moat_up_pool *p);

/*
 * A pooled connection to server `server` of `g`, ready for a request, or NULL. `must_be_fresh`
 * (a request that could not be retried if the server had closed the connection just now):
 * the socket is asked first (a non-blocking peek, one system call) whether the server closed
 * or spoke, and such a connection is closed and the next one tried.
 */
struct moat_up_conn *moat_up_pool_take(struct moat_up_pool *p, struct moat_up_group *g,
                                       size_t server, int must_be_fresh);

/*
 * Open a new connection to server `server` of `g`: a non-blocking connect; *out is busy, with
 * w.cb / w.data the caller's and the socket watched for EPOLLIN | EPOLLOUT | EPOLLRDHUP. With
 * `preface` (n bytes, e.g. a PROXY v2 header, at most sizeof preface) those bytes go first.
 * Then call moat_up_conn_ready on its events until MOAT_OK. Fails as moat_h1c_connect does
 * (MOAT_E_LIMIT no socket, MOAT_E_IO cannot connect).
 */
MOAT_MUST_USE moat_rc moat_up_conn_open(struct moat_up_pool *p, struct moat_up_group *g,
                                        size_t server, const struct moat_h1c_limits *lim,
                                        const void *preface, size_t n, moat_watch_cb cb, void *data,
                                        struct moat_up_conn **out, struct moat_err *err);

/* Drive the connect, the preface and the TLS handshake: MOAT_OK ready, MOAT_E_AGAIN wait for
 * the socket, else what failed (moat_h1c_ready's kinds and words). */
MOAT_MUST_USE moat_rc moat_up_conn_ready(struct moat_up_conn *c, struct moat_err *err);

/* Take a busy connection's events: the new owner's callback. */
static inline void moat_up_conn_own(struct moat_up_conn *c, moat_watch_cb cb, void *data)
{
    c->w.cb = cb;
    c->w.data = data;
}

/*
 * The owner is done with c. `reusable`: the exchange ended cleanly and moat_h1c_reusable said
 * so; then c goes back to the pool (when the pool keeps connections for its group and server
 * has room: keepalive), else it is closed. c must not be used after this call.
 */
void moat_up_conn_release(struct moat_up_conn *c, int reusable);

/* Close c now (a failure). c must not be used after this call. */
void moat_up_conn_close(struct moat_up_conn *c);

#endif
