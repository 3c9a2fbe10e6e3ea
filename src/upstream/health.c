/*
 * health.c: active health checks (see health.h).
 *
 * Each server has one check at a time: idle until its timer, then a connection, a request and
 * the answer's head, all bounded by the check timeout; the connection is closed after the
 * head (a check answer's body is of no interest and must not hold a connection).
 */
#include "upstream/health.h"

#include "core/log.h"
#include "core/proxyproto.h"
#include "http1/write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

struct check {
    struct moat_up_health *h;
    size_t server;
    struct moat_timer timer;
    struct moat_up_conn *uc;   /* while a check is out */
    unsigned passes, failures; /* in a row */
    int queued;                /* the request is written into the session */
    int dead;
};

struct moat_up_health {
    struct moat_up_group *g; /* one reference */
    struct moat_loop *loop;
    struct moat_up_pool *pool;
    struct check *checks; /* one per server */
};

static void check_event(struct moat_watch *w, uint32_t events);

static void end_check(struct check *k)
{
    if (k->uc != NULL) {
        moat_up_conn_close(k->uc);
        k->uc = NULL;
    }
    k->queued = 0;
    struct moat_up_health *h = k->h;
    moat_timer_disarm(&h->loop->timers, &k->timer);
    if (!moat_ok(moat_timer_arm(&h->loop->timers, &k->timer,
                                h->loop->now_ms + h->g->p.check_interval_ms))) {
        moat_log_e("upstream %s: cannot arm a health check timer", moat_up_group_name(h->g));
    }
}

static void result(struct check *k, int pass, const char *why, const char *detail)
{
    struct moat_up_health *h = k->h;
    struct moat_up_group *g = h->g;
    struct moat_up_server *s = &g->servers[k->server];
    int down = atomic_load_explicit(&s->check_down, memory_order_relaxed);
    if (pass) {
        k->failures = 0;
        k->passes++;
        if (down && k->passes >= g->p.check_rise) {
            atomic_store_explicit(&s->down_until, 0, memory_order_relaxed);
            atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
            atomic_store_explicit(&s->back_at, h->loop->now_ms, memory_order_relaxed);
            atomic_store_explicit(&s->check_down, 0, memory_order_release);
            moat_log(MOAT_LVL_WARN, 0,
                     "upstream %s: server %s is back: its health check passed %u time%s in a "
                     "row (%s)",
                     moat_up_group_name(g), s->name, k->passes, k->passes == 1 ? "" : "s", detail);
        }
    } else {
        k->passes = 0;
        k->failures++;
        atomic_store_explicit(&s->why, why, memory_order_relaxed);
        if (!down && k->failures >= g->p.check_fall) {
            atomic_store_explicit(&s->check_down, 1, memory_order_release);
            moat_log(MOAT_LVL_WARN, 0,
                     "upstream %s: server %s taken out: its health check failed %u time%s in a "
                     "row (%s)",
                     moat_up_group_name(g), s->name, k->failures, k->failures == 1 ? "" : "s",
                     detail);
        }
    }
    end_check(k);
}

static void fail(struct check *k, const char *why, const struct moat_err *e)
{
    char detail[400];
    if (e != NULL && e->msg[0] != '\0') {
        moat_err_str(e, detail, sizeof(detail));
    } else {
        snprintf(detail, sizeof(detail), "%s", why);
    }
    result(k, 0, why, detail);
}

static moat_rc queue_request(struct check *k)
{
    struct moat_up_group *g = k->h->g;
    struct moat_h1c *c = &k->uc->h1c;
    struct moat_buf *b = moat_h1c_begin(c, 0);
    if (b == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    const char *host = g->p.check_host != NULL ? g->p.check_host : g->servers[k->server].authority;
    MOAT_TRY(moat_h1_head_request(b, MOAT_SLICE_LIT("GET"), moat_slice_cstr(g->p.check_path),
                                  MOAT_SLICE_NULL));
    MOAT_TRY(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), moat_slice_cstr(host)));
    MOAT_TRY(moat_h1_head_field(b, MOAT_SLICE_LIT("User-Agent"), MOAT_SLICE_LIT("moat-health")));
    return moat_h1c_head_end(c, MOAT_H1_FRAME_NONE, 0, 0);
}

static void run(struct check *k)
{
    struct moat_err e = {0};
    struct moat_up_conn *uc = k->uc;
    if (uc->state != MOAT_UP_READY) {
        moat_rc rc = moat_up_conn_ready(uc, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            return;
        }
        if (!moat_ok(rc)) {
            fail(k, rc.kind == MOAT_E_TLS ? "TLS failed" : "cannot connect", &e);
            return;
        }
    }
    if (!k->queued) {
        if (!moat_ok(queue_request(k))) {
            fail(k, "cannot write the check", NULL);
            return;
        }
        k->queued = 1;
    }
    moat_rc rc = moat_h1c_flush(&uc->h1c, &e);
    if (rc.kind == MOAT_E_AGAIN) {
        return;
    }
    if (!moat_ok(rc)) {
        fail(k, "closed while taking the check", &e);
        return;
    }
    const struct moat_h1_resp *r = NULL;
    rc = moat_h1c_read_head(&uc->h1c, &r, &e);
    if (rc.kind == MOAT_E_AGAIN) {
        return;
    }
    if (!moat_ok(rc)) {
        fail(k, "no valid answer", &e);
        return;
    }
    const struct moat_up_group *g = k->h->g;
    char detail[64];
    snprintf(detail, sizeof(detail), "GET %.30s: %d", g->p.check_path, r->status);
    if (r->status >= (int)g->p.check_status_lo && r->status <= (int)g->p.check_status_hi) {
        result(k, 1, NULL, detail);
    } else {
        result(k, 0, "unexpected status", detail);
    }
}

static void check_event(struct moat_watch *w, uint32_t events)
{
    struct check *k = w->data;
    if (k->dead || k->uc == NULL) {
        return;
    }
    run(k);
}

static void check_timer(struct moat_timer *t)
{
    struct check *k = t->data;
    struct moat_up_health *h = k->h;
    if (k->uc != NULL) {
        fail(k, "timed out", NULL);
        return;
    }
    /* Time for a check. */
    static const struct moat_h1c_limits lim = {.max_head_bytes = 16384};
    struct moat_err e = {0};
    uint8_t preface[240];
    size_t np = 0;
    if (h->g->p.proxy_protocol == 2) {
        /* A check is moat's own connection: LOCAL, no client to speak of. */
        np = moat_pp_v2_build(preface, sizeof(preface), NULL, NULL, MOAT_SLICE_NULL,
                              MOAT_SLICE_NULL, 0);
    }
    moat_rc rc =
        moat_up_conn_open(h->pool, h->g, k->server, &lim, preface, np, check_event, k, &k->uc, &e);
    if (!moat_ok(rc)) {
        k->uc = NULL;
        fail(k, "cannot connect", &e);
        return;
    }
    if (!moat_ok(moat_timer_arm(&h->loop->timers, &k->timer,
                                h->loop->now_ms + h->g->p.check_timeout_ms))) {
        fail(k, "cannot arm the check's timer", NULL);
    }
}

moat_rc moat_up_health_start(struct moat_up_group *g, struct moat_loop *loop,
                             struct moat_up_pool *pool, struct moat_up_health **out)
{
    *out = NULL;
    struct moat_up_health *h = calloc(1, sizeof(*h));
    struct check *checks = calloc(g->n, sizeof(*checks));
    if (h == NULL || checks == NULL) {
        free(h);
        free(checks);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    h->g = moat_up_group_ref(g);
    h->loop = loop;
    h->pool = pool;
    h->checks = checks;
    for (size_t i = 0; i < g->n; i++) {
        struct check *k = &checks[i];
        k->h = h;
        k->server = i;
        moat_timer_init(&k->timer, check_timer, k);
        /* Spread the first checks over a few milliseconds rather than all at once. */
        if (!moat_ok(moat_timer_arm(&loop->timers, &k->timer, loop->now_ms + 1 + i))) {
            moat_up_health_stop(h);
            return moat_rc_of(MOAT_E_NOMEM);
        }
    }
    *out = h;
    return MOAT_RC_OK;
}

void moat_up_health_stop(struct moat_up_health *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < h->g->n; i++) {
        struct check *k = &h->checks[i];
        k->dead = 1;
        moat_timer_disarm(&h->loop->timers, &k->timer);
        if (k->uc != NULL) {
            moat_up_conn_close(k->uc);
            k->uc = NULL;
        }
    }
    moat_up_group_unref(h->g);
    /* A socket event of a check may still wait in this epoll batch: free at its end. */
    moat_loop_defer_free(h->loop, h->checks);
    moat_loop_defer_free(h->loop, h);
}
