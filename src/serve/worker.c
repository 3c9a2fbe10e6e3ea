/*
 * worker.c: a worker thread's life: accept on its own listeners, run its connections, take new
 * snapshots from the main thread, drain on stop. See worker.h.
 */
#include "serve/worker.h"

#include "serve/metrics.h"

#include "core/log.h"
#include "serve/conn.h"
#include "serve/accesslog.h"
#include "serve/cache.h"
#include "serve/conf.h"
#include "serve/snapshot.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define POOL_MAX 1024
#define HOUSEKEEPING_MS 250
#define SWEEP_TICKS 4      /* pool sweep once a second */
#define TRIM_BUSY_TICKS 40 /* under steady churn, trim every 10 s at most */
#define POOL_KEEP 16       /* blocks a sweep leaves in the pool */

/*
 * Housekeeping, four times a second: write the access log, and give memory back to the system.
 * A TLS handshake takes tens of KiB for a moment and a closed connection leaves its SSL object,
 * buffers and pool blocks behind as free but resident heap; without a trim that stays, whatever
 * the traffic does next (measured: 9 MB growing to 23 MB after 1,000 keep-alive connections
 * closed). So once a second unused pool blocks are freed, and malloc_trim runs when at least
 * 64 connections came or went since the last one: at once when the worker was quiet for a tick,
 * else at most every TRIM_BUSY_TICKS, so a busy worker pays for it rarely (a trim costs about a
 * millisecond per hundred MB of heap).
 */
/* glibc's heap only: under AddressSanitizer every allocation is ASan's, glibc's arenas hold
 * nothing of ours to give back, and walking them from a worker while others start and stop
 * (a reload under load) crashed inside glibc's mtrim once in a test run. */
static void trim_heap(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    malloc_trim(0);
#endif
}

static void housekeeping(struct moat_timer *t)
{
    struct moat_worker *wk = t->data;
    if (wk->alog != NULL) {
        moat_accesslog_flush(wk->alog, &wk->alog_lines);
    }
    wk->ticks++;
    size_t freed = wk->ticks % SWEEP_TICKS == 0 ? moat_pool_sweep(&wk->pool, POOL_KEEP) : 0;
    /* Connections that came or went, and idle ones that gave their buffers back. */
    unsigned long long churn =
        wk->home.stats.accepted + wk->home.closed + wk->home.stats.sessions.buffers_released;
    int quiet = churn == wk->churn_at_last_tick;
    int due = churn - wk->churn_at_last_trim >= 64 || freed >= 64;
    if (due && (quiet || wk->ticks - wk->ticks_at_last_trim >= TRIM_BUSY_TICKS)) {
        trim_heap();
        wk->churn_at_last_trim = churn;
        wk->ticks_at_last_trim = wk->ticks;
    }
    wk->churn_at_last_tick = churn;
    if (!moat_ok(moat_timer_arm(&wk->loop.timers, &wk->house_timer,
                                wk->loop.now_ms + HOUSEKEEPING_MS))) {
        if (wk->alog != NULL) {
            moat_accesslog_flush(wk->alog, &wk->alog_lines);
        }
    }
}

static void set_accepting(struct moat_worker *wk, int on)
{
    if (wk->accepting == on) {
        return;
    }
    for (size_t i = 0; i < wk->nlisteners; i++) {
        if (on) {
            if (!moat_ok(moat_loop_add(&wk->loop, &wk->listeners[i].w, EPOLLIN))) {
                moat_log_e("cannot watch a listener");
            }
        } else {
            moat_loop_del(&wk->loop, &wk->listeners[i].w);
        }
    }
    wk->accepting = on;
}

static void on_accept(struct moat_watch *w, uint32_t events)
{
    struct moat_listener *l = w->data;
    struct moat_worker *wk = l->wk;
    uint64_t max = wk->home.snap->conf->max_conns;
    for (;;) {
        if (max > 0 && wk->home.nconns + wk->shome.nconns >= max) {
            /* Leave the rest in the backlog (other workers may take them) until a
             * connection of ours closes. */
            set_accepting(wk, 0);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE) {
                moat_log_w("out of file descriptors: raise the limit (ulimit -n) or lower "
                           "limits.connections");
            }
            return;
        }
        if (l->tls == MOAT_LISTENER_STREAM) {
            moat_stream_accept(&wk->shome, wk->home.snap, l->spec, fd, &ss,
                               moat_snapshot_listener_pp(wk->home.snap, l->spec));
            continue;
        }
        moat_conn_accept(&wk->home, fd, &ss, !l->tls,
                         l->tls && moat_snapshot_listener_http2(wk->home.snap, l->spec),
                         moat_snapshot_listener_pp(wk->home.snap, l->spec));
    }
}

/* A connection closed: room for another one. */
static void conn_closed(void *owner)
{
    struct moat_worker *wk = owner;
    if (!wk->draining && !wk->accepting) {
        set_accepting(wk, 1);
    }
}

static void after_iteration(struct moat_loop *l, void *data)
{
    struct moat_worker *wk = data;
    moat_conn_free_closed(&wk->home);
    if (wk->draining && wk->home.nconns == 0 && wk->shome.nconns == 0) {
        l->stop = 1;
    }
}

static void stop_checks(struct moat_worker *wk);

static void drain_deadline(struct moat_timer *t)
{
    struct moat_worker *wk = t->data;
    if (wk->home.nconns > 0) {
        moat_log_w("drain time over: closing %zu connection(s) still busy", wk->home.nconns);
    }
    while (wk->home.conns != NULL) {
        moat_conn_close(wk->home.conns);
    }
    moat_stream_close_all(&wk->shome);
}

static void start_drain(struct moat_worker *wk)
{
    if (wk->draining) {
        return;
    }
    set_accepting(wk, 0);
    for (size_t i = 0; i < wk->nlisteners; i++) {
        close(wk->listeners[i].w.fd);
        wk->listeners[i].w.fd = -1;
    }
    wk->nlisteners = 0;
    wk->draining = 1;
    stop_checks(wk);
    struct moat_conn *c = wk->home.conns;
    while (c != NULL) {
        struct moat_conn *next = c->next;
        moat_conn_drain(c);
        c = next;
    }
    if (!moat_ok(moat_timer_arm(&wk->loop.timers, &wk->drain_timer,
                                wk->loop.now_ms + wk->home.snap->conf->drain_timeout_ms))) {
        drain_deadline(&wk->drain_timer);
    }
}

/* Active health checks run on the first worker only: one check per server, whatever the
 * number of workers; the state they find is shared (upstream/group.h). */
static void stop_checks(struct moat_worker *wk)
{
    for (size_t i = 0; i < wk->nchecks; i++) {
        moat_up_health_stop(wk->checks[i]);
    }
    free(wk->checks);
    wk->checks = NULL;
    wk->nchecks = 0;
}

static void start_checks(struct moat_worker *wk)
{
    const struct moat_snapshot *s = wk->home.snap;
    if (wk->id != 1 || wk->draining || s->ngroups == 0) {
        return;
    }
    wk->checks = calloc(s->ngroups, sizeof(*wk->checks));
    if (wk->checks == NULL) {
        moat_log_e("out of memory: no active health checks");
        return;
    }
    for (size_t i = 0; i < s->ngroups; i++) {
        if (s->groups[i]->p.check_path == NULL) {
            continue;
        }
        if (!moat_ok(moat_up_health_start(s->groups[i], &wk->loop, &wk->upool,
                                          &wk->checks[wk->nchecks]))) {
            moat_log_e("out of memory: no health checks for upstream %s",
                       moat_up_group_name(s->groups[i]));
            continue;
        }
        wk->nchecks++;
    }
}

/* The cache's size: the configuration's, within the descriptor limit's share. */
static size_t files_max(const struct moat_worker *wk, const struct moat_conf *conf)
{
    return conf->file_cache < wk->files_cap ? (size_t)conf->file_cache : wk->files_cap;
}

static void poke(struct moat_worker *wk)
{
    uint64_t one = 1;
    ssize_t n = write(wk->evfd, &one, sizeof(one));
    (void)n; /* a full counter already means "wake up" */
}

/* The pool's notify: a place upstream came free here and no request of its group waits
 * here, so the workers that have waiters look again. */
static void notify_siblings(void *data)
{
    struct moat_worker *wk = data;
    for (unsigned i = 0; i < wk->nsiblings; i++) {
        struct moat_worker *o = &wk->siblings[i];
        if (o != wk && atomic_load_explicit(&o->upool.nwaiting, memory_order_relaxed) > 0) {
            poke(o);
        }
    }
}

static void on_wakeup(struct moat_watch *w, uint32_t events)
{
    struct moat_worker *wk = w->data;
    uint64_t v;
    while (read(wk->evfd, &v, sizeof(v)) > 0) {
    }
    if (atomic_load_explicit(&wk->upool.nwaiting, memory_order_relaxed) > 0) {
        moat_up_pool_wake(&wk->upool); /* perhaps another worker freed a place upstream */
    }
    struct moat_snapshot *s = atomic_exchange(&wk->pending, NULL);
    if (s != NULL) {
        struct moat_snapshot *old = wk->home.snap;
        wk->home.snap = s;
        stop_checks(wk);          /* before the old snapshot's groups may go */
        moat_snapshot_unref(old); /* connections keep theirs until they close */
        start_checks(wk);
        moat_fcache_flush(&wk->files); /* the old sites' files would only wait for eviction */
        moat_fcache_configure(&wk->files, files_max(wk, s->conf), s->conf->file_cache_valid_ms);
        struct moat_conn *c = wk->home.conns;
        while (c != NULL) {
            struct moat_conn *next = c->next;
            moat_conn_retire(c);
            c = next;
        }
    }
    if (atomic_load(&wk->stop)) {
        start_drain(wk);
    }
}

moat_rc moat_worker_init(struct moat_worker *wk, unsigned id, struct moat_alog *alog,
                         int https_port, size_t files_cap, struct moat_snapshot *snap,
                         struct moat_err *err)
{
    memset(wk, 0, sizeof(*wk));
    wk->files_cap = files_cap;
    wk->id = id;
    wk->alog = alog;
    wk->home = (struct moat_conn_home){.loop = &wk->loop,
                                       .pool = &wk->pool,
                                       .scratch = &wk->h1scratch,
                                       .h2scratch = &wk->h2scratch,
                                       .files = &wk->files,
                                       .upool = &wk->upool,
                                       .pxspares = &wk->pxspares,
                                       .alog = alog,
                                       .alog_lines = &wk->alog_lines,
                                       .https_port = https_port,
                                       .worker_id = id,
                                       .on_closed = conn_closed,
                                       .owner = wk};
    wk->evfd = -1;
    /* Zeroed pages: a site slot costs memory only once the worker counts for it. */
    wk->mx = calloc(1, sizeof(*wk->mx));
    if (wk->mx == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    wk->home.mx = wk->mx;
    MOAT_TRY(moat_loop_init(&wk->loop, err));
    moat_up_pool_init(&wk->upool, &wk->loop);
    wk->upool.notify = notify_siblings;
    wk->upool.notify_data = wk;
    wk->shome = (struct moat_stream_home){.loop = &wk->loop,
                                          .pool = &wk->upool,
                                          .worker_id = id,
                                          .alog = alog,
                                          .alog_lines = &wk->alog_lines};
    wk->loop.after = after_iteration;
    wk->loop.after_data = wk;
    wk->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wk->evfd < 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "eventfd");
    }
    wk->evw = (struct moat_watch){.fd = wk->evfd, .cb = on_wakeup, .data = wk};
    if (!moat_ok(moat_loop_add(&wk->loop, &wk->evw, EPOLLIN))) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "epoll_ctl");
    }
    if (!moat_ok(moat_pool_init(&wk->pool, POOL_MAX))) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_buf_init(&wk->alog_lines, 1 << 20);
    moat_buf_init(&wk->h1scratch.fields, 16384);
    moat_buf_init(&wk->h1scratch.body, 4 * 1024 * 1024 - 64 * 1024); /* fits in out */
    if (!moat_ok(moat_h2s_scratch_init(&wk->h2scratch, MOAT_CONF_MAX_FIELDS))) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    wk->h2scratch.lines = &wk->h1scratch.fields;
    wk->h2scratch.body = &wk->h1scratch.body;
    wk->h2scratch.npath = wk->h1scratch.npath;
    if (!moat_ok(moat_fcache_init(&wk->files, files_max(wk, snap->conf),
                                  snap->conf->file_cache_valid_ms))) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_timer_init(&wk->house_timer, housekeeping, wk);
    moat_timer_init(&wk->drain_timer, drain_deadline, wk);
    atomic_init(&wk->pending, NULL);
    atomic_init(&wk->stop, 0);
    wk->home.snap = moat_snapshot_ref(snap);
    return MOAT_RC_OK;
}

moat_rc moat_worker_add_listener(struct moat_worker *wk, int fd, int tls, const char *spec,
                                 struct moat_err *err)
{
    if (wk->nlisteners == MOAT_WORKER_MAX_LISTENERS) {
        close(fd);
        MOAT_FAIL(err, MOAT_E_CONFIG, "too many listen addresses (at most %d)",
                  MOAT_WORKER_MAX_LISTENERS);
    }
    struct moat_listener *l = &wk->listeners[wk->nlisteners++];
    l->w = (struct moat_watch){.fd = fd, .cb = on_accept, .data = l};
    l->wk = wk;
    l->tls = tls;
    snprintf(l->spec, sizeof(l->spec), "%s", spec);
    return MOAT_RC_OK;
}

static void *worker_main(void *arg)
{
    struct moat_worker *wk = arg;
    moat_log_set_worker(wk->id);
    set_accepting(wk, 1);
    start_checks(wk);
    if (!moat_ok(
            moat_timer_arm(&wk->loop.timers, &wk->house_timer, moat_now_ms() + HOUSEKEEPING_MS))) {
        moat_log_w("housekeeping timer unavailable; access-log lines are written when 32 KiB "
                   "collect");
    }
    moat_loop_run(&wk->loop);
    if (wk->alog != NULL) {
        moat_accesslog_flush(wk->alog, &wk->alog_lines);
    }
    return NULL;
}

moat_rc moat_worker_start(struct moat_worker *wk, struct moat_err *err)
{
    int e = pthread_create(&wk->thread, NULL, worker_main, wk);
    if (e != 0) {
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot start worker %u",
                            wk->id);
    }
    return MOAT_RC_OK;
}

void moat_worker_publish(struct moat_worker *wk, struct moat_snapshot *snap)
{
    struct moat_snapshot *old = atomic_exchange(&wk->pending, snap);
    if (old != NULL) {
        moat_snapshot_unref(old); /* never taken: replaced by a newer one */
    }
    poke(wk);
}

void moat_worker_request_stop(struct moat_worker *wk)
{
    atomic_store(&wk->stop, 1);
    poke(wk);
}

void moat_worker_join(struct moat_worker *wk)
{
    pthread_join(wk->thread, NULL);
}

void moat_worker_clear(struct moat_worker *wk)
{
    while (wk->home.conns != NULL) {
        moat_conn_close(wk->home.conns);
    }
    moat_cache_bg_stop_all(&wk->home.cache_bgs);
    stop_checks(wk);
    moat_stream_close_all(&wk->shome);
    moat_up_pool_clear(&wk->upool);
    after_iteration(&wk->loop, wk);
    for (size_t i = 0; i < wk->nlisteners; i++) {
        if (wk->listeners[i].w.fd >= 0) {
            close(wk->listeners[i].w.fd);
        }
    }
    wk->nlisteners = 0;
    struct moat_snapshot *p = atomic_exchange(&wk->pending, NULL);
    if (p != NULL) {
        moat_snapshot_unref(p);
    }
    if (wk->home.snap != NULL) {
        moat_snapshot_unref(wk->home.snap);
        wk->home.snap = NULL;
    }
    moat_pool_clear(&wk->pool);
    moat_buf_clear(&wk->alog_lines);
    moat_buf_clear(&wk->h1scratch.fields);
    moat_buf_clear(&wk->h1scratch.body);
    moat_h2s_scratch_clear(&wk->h2scratch);
    moat_fcache_clear(&wk->files);
    if (wk->evfd >= 0) {
        close(wk->evfd);
    }
    moat_loop_clear(&wk->loop);
    moat_proxy_spares_clear(&wk->pxspares); /* after the loop: its last spent ones come here */
    free(wk->mx);
    wk->mx = NULL;
}
