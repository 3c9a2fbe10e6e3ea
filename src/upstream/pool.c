/*
 * pool.c: a worker's upstream connections (see pool.h).
 *
 * The idle list is most-recently-used first: the connection just released is the one the
 * next request takes, so its TCP and TLS state are warm and the server's idle timer is
 * furthest away, while the ones at the tail age out. A connection keeps its buffers while it
 * is pooled: a reused connection costs no allocation.
 */
#include "upstream/pool.h"

#include "core/log.h"
#include "tls/transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

void moat_up_pool_init(struct moat_up_pool *p, struct moat_loop *loop)
{
    *p = (struct moat_up_pool){.loop = loop};
}

static void unlink_idle(struct moat_up_conn *c)
{
    struct moat_up_pool *p = c->pool;
    if (!c->pooled) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        p->idle_head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    c->pooled = 0;
    p->nidle--;
    atomic_fetch_sub_explicit(&c->group->servers[c->server].idle, 1, memory_order_relaxed);
    moat_timer_disarm(&p->loop->timers, &c->idle);
}

void moat_up_conn_close(struct moat_up_conn *c)
{
    struct moat_up_pool *p = c->pool;
    unlink_idle(c);
    moat_timer_disarm(&p->loop->timers, &c->idle);
    if (c->h1c.tr.fd >= 0) {
        moat_loop_del(p->loop, &c->w);
    }
    moat_h1c_close(&c->h1c);
    atomic_fetch_sub_explicit(&c->group->servers[c->server].conns, 1, memory_order_relaxed);
    moat_up_group_unref(c->group);
    c->group = NULL;
    /* An event for the socket may still wait in this epoll batch: free at its end. */
    moat_loop_defer_free(p->loop, c);
}

void moat_up_wait(struct moat_up_pool *p, struct moat_up_waiter *w, struct moat_up_group *g)
{
    if (w->linked) {
        return;
    }
    w->group = g;
    w->next = NULL;
    w->prev = p->wait_tail;
    if (p->wait_tail != NULL) {
        p->wait_tail->next = w;
    } else {
        p->wait_head = w;
    }
    p->wait_tail = w;
    w->linked = 1;
    /* Counted here first, then in the group: a worker that sees the group's count also sees
     * this pool's. The fence pairs with moat_up_pool_done's: either the freeing worker sees
     * this wait, or the caller's next pick sees the freed place. */
    atomic_fetch_add(&p->nwaiting, 1);
    atomic_fetch_add(&g->waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
}

static void wake(struct moat_up_waiter *w)
{
    w->woken = 1;
    w->wake(w);
}

/* The first waiter of g from w on; 1 when there was one. */
static int wake_first(struct moat_up_waiter *w, const struct moat_up_group *g)
{
    for (; w != NULL; w = w->next) {
        if (w->group == g) {
            wake(w);
            return 1;
        }
    }
    return 0;
}

void moat_up_unwait(struct moat_up_pool *p, struct moat_up_waiter *w)
{
    if (!w->linked) {
        return;
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        p->wait_head = w->next;
    }
    struct moat_up_waiter *after = w->next;
    if (w->next != NULL) {
        w->next->prev = w->prev;
    } else {
        p->wait_tail = w->prev;
    }
    w->prev = w->next = NULL;
    w->linked = 0;
    atomic_fetch_sub(&w->group->waiting, 1);
    atomic_fetch_sub(&p->nwaiting, 1);
    if (w->woken) {
        w->woken = 0;
        if (!wake_first(after, w->group) && p->notify != NULL &&
            atomic_load(&w->group->waiting) > 0) {
            p->notify(p->notify_data);
        }
    }
}

int moat_up_pool_has_waiter(const struct moat_up_pool *p, const struct moat_up_group *g)
{
    if (atomic_load_explicit(&g->waiting, memory_order_relaxed) == 0) {
        return 0;
    }
    for (const struct moat_up_waiter *w = p->wait_head; w != NULL; w = w->next) {
        if (w->group == g) {
            return 1;
        }
    }
    return 0;
}

int moat_up_pool_has_waiter_before(const struct moat_up_pool *p, const struct moat_up_waiter *w)
{
    (void)p;
    for (const struct moat_up_waiter *o = w->prev; o != NULL; o = o->prev) {
        if (o->group == w->group) {
            return 1;
        }
    }
    return 0;
}

void moat_up_pool_done(struct moat_up_pool *p, struct moat_up_group *g, size_t i)
{
    moat_up_done(g, i);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&g->waiting, memory_order_relaxed) == 0) {
        return; /* the common case: nobody queues */
    }
    if (!wake_first(p->wait_head, g) && p->notify != NULL) {
        p->notify(p->notify_data);
    }
}

void moat_up_pool_wake(struct moat_up_pool *p)
{
    /* The oldest of each group: a waiter that finds no place stays queued where it was. Past
     * a few groups every waiter is woken, which costs looks, never a lost place. */
    const struct moat_up_group *seen[8];
    size_t nseen = 0;
    for (struct moat_up_waiter *w = p->wait_head; w != NULL; w = w->next) {
        size_t k = 0;
        while (k < nseen && seen[k] != w->group) {
            k++;
        }
        if (k < nseen) {
            continue;
        }
        if (nseen < sizeof(seen) / sizeof(seen[0])) {
            seen[nseen++] = w->group;
        }
        wake(w);
    }
}

void moat_up_pool_clear(struct moat_up_pool *p)
{
    while (p->idle_head != NULL) {
        moat_up_conn_close(p->idle_head);
    }
}

/* While idle the server has nothing to say: a byte, a close or an error ends the connection. */
static void on_idle_event(struct moat_watch *w, uint32_t events)
{
    struct moat_up_conn *c = w->data;
    if (c->group == NULL || !c->pooled) {
        return; /* closed earlier in this batch */
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        moat_up_conn_close(c);
    }
}

static void on_idle_timer(struct moat_timer *t)
{
    struct moat_up_conn *c = t->data;
    moat_up_conn_close(c);
}

/* A peek at an idle socket: 1 when the server closed or sent something since. */
static int spoke_or_closed(struct moat_up_conn *c)
{
    char b;
    ssize_t n = recv(c->h1c.tr.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

struct moat_up_conn *moat_up_pool_take(struct moat_up_pool *p, struct moat_up_group *g,
                                       size_t server, int must_be_fresh)
{
    struct moat_up_conn *c = p->idle_head;
    while (c != NULL) {
        struct moat_up_conn *next = c->next;
        if (c->group == g && c->server == server) {
            if (must_be_fresh && spoke_or_closed(c)) {
                moat_up_conn_close(c);
            } else {
                unlink_idle(c);
                p->reused++;
                return c;
            }
        }
        c = next;
    }
    return NULL;
}

moat_rc moat_up_conn_open(struct moat_up_pool *p, struct moat_up_group *g, size_t server,
                          const struct moat_h1c_limits *lim, const void *preface, size_t n,
                          moat_watch_cb cb, void *data, struct moat_up_conn **out,
                          struct moat_err *err)
{
    *out = NULL;
    struct moat_up_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (n > sizeof(c->preface)) {
        free(c);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "connection preface too long");
    }
    if (n > 0) {
        memcpy(c->preface, preface, n);
    }
    c->npreface = n;
    moat_h1c_init(&c->h1c, lim);
    const struct moat_up_server *s = &g->servers[server];
    moat_rc rc = moat_h1c_connect(&c->h1c, (const struct sockaddr *)&s->addr, s->addrlen, err);
    if (!moat_ok(rc)) {
        free(c);
        return rc;
    }
    c->pool = p;
    c->server = server;
    c->w = (struct moat_watch){.fd = c->h1c.tr.fd, .cb = cb, .data = data};
    moat_timer_init(&c->idle, on_idle_timer, c);
    if (!moat_ok(moat_loop_add(p->loop, &c->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        moat_h1c_close(&c->h1c);
        free(c);
        MOAT_FAIL(err, MOAT_E_LIMIT, "cannot watch the upstream socket");
    }
    c->group = moat_up_group_ref(g);
    atomic_fetch_add_explicit(&g->servers[server].conns, 1, memory_order_relaxed);
    p->opened++;
    *out = c;
    return MOAT_RC_OK;
}

moat_rc moat_up_conn_ready(struct moat_up_conn *c, struct moat_err *err)
{
    if (c->state == MOAT_UP_CONNECTING) {
        /* The connect first (plain: no handshake), so the preface goes before any TLS byte. */
        moat_rc rc = moat_h1c_ready(&c->h1c, err);
        if (!moat_ok(rc)) {
            return rc;
        }
        if (c->npreface > 0) {
            /* A fresh socket's send buffer takes a PROXY header whole. */
            ssize_t w = send(c->h1c.tr.fd, c->preface, c->npreface, MSG_NOSIGNAL);
            if (w != (ssize_t)c->npreface) {
                return moat_err_sys(err, MOAT_E_IO, w < 0 ? errno : EIO, __FILE__, __LINE__,
                                    "cannot send the PROXY protocol header");
            }
            c->npreface = 0;
        }
        const struct moat_up_server *s = &c->group->servers[c->server];
        if (s->tls) {
            const char *name = c->group->p.sni != NULL ? c->group->p.sni : s->host;
            MOAT_TRY(moat_tls_transport_client(&c->h1c.tr, c->h1c.tr.fd, c->group->ctx, name, err));
        }
        c->state = MOAT_UP_HANDSHAKE;
    }
    if (c->state == MOAT_UP_HANDSHAKE) {
        MOAT_TRY(moat_h1c_ready(&c->h1c, err));
        c->state = MOAT_UP_READY;
    }
    return MOAT_RC_OK;
}

/* Idle connections kept for one server of one group. */
static size_t idle_for(const struct moat_up_pool *p, const struct moat_up_group *g, size_t server)
{
    size_t n = 0;
    for (const struct moat_up_conn *c = p->idle_head; c != NULL; c = c->next) {
        n += c->group == g && c->server == server;
    }
    return n;
}

void moat_up_conn_release(struct moat_up_conn *c, int reusable)
{
    struct moat_up_pool *p = c->pool;
    c->requests++;
    const struct moat_up_group *g = c->group;
    if (!reusable || g->p.keepalive == 0 || c->state != MOAT_UP_READY ||
        idle_for(p, g, c->server) >= g->p.keepalive ||
        !moat_ok(moat_timer_arm(&p->loop->timers, &c->idle, p->loop->now_ms + g->p.keepalive_ms))) {
        moat_up_conn_close(c);
        return;
    }
    moat_h1c_reset(&c->h1c);
    c->w.cb = on_idle_event;
    c->w.data = c;
    c->pooled = 1;
    c->prev = NULL;
    c->next = p->idle_head;
    if (p->idle_head != NULL) {
        p->idle_head->prev = c;
    }
    p->idle_head = c;
    p->nidle++;
    atomic_fetch_add_explicit(&c->group->servers[c->server].idle, 1, memory_order_relaxed);
}
