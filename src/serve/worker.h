/*
 * worker.h: one worker thread: its loop, its SO_REUSEPORT listeners, its connections, its
 * buffer pool and access-log buffer. Nothing here is shared with other workers; the main
 * thread talks to a worker only through `pending` (a new snapshot) and `stop`, then pokes its
 * eventfd.
 */
#ifndef MOAT_SERVE_WORKER_H
#define MOAT_SERVE_WORKER_H

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "serve/conn.h"
#include "serve/stream.h"
#include "upstream/health.h"
#include "upstream/pool.h"
#include "serve/filecache.h"
#include "serve/proxy.h"
#include "serve/snapshot.h"

#include <pthread.h>
#include <stdatomic.h>

#define MOAT_WORKER_MAX_LISTENERS 32

struct moat_alog;

#define MOAT_LISTENER_STREAM 2

struct moat_listener {
    struct moat_watch w; /* w.fd owned */
    struct moat_worker *wk;
    int tls;       /* 0: the plain listener that redirects to HTTPS; 1: HTTPS;
                      MOAT_LISTENER_STREAM: a `stream` block's (serve/stream.h) */
    char spec[80]; /* its listen address as configured, for `http2 off ADDRESS` */
};

struct moat_worker {
    unsigned id; /* 1-based */
    pthread_t thread;
    struct moat_loop loop;
    struct moat_alog *alog; /* borrowed: the server's; NULL when off */
    struct moat_listener listeners[MOAT_WORKER_MAX_LISTENERS];
    size_t nlisteners;
    int accepting; /* listeners are in the epoll set */

    _Atomic(struct moat_snapshot *) pending; /* a reference handed over by the main thread */
    atomic_int stop;                         /* drain requested */
    int evfd;                                /* owned eventfd the main thread writes */
    struct moat_watch evw;

    int draining;
    uint64_t drain_deadline_ms;
    struct moat_timer drain_timer;

    struct moat_conn_home home; /* its connections, and what they live on (home.snap: the
                                   configuration new connections take, one reference) */

    struct moat_pool pool; /* connection buffers */

    struct moat_buf alog_lines;    /* access-log lines waiting to be written */
    struct moat_timer house_timer; /* housekeeping: access log, memory trim */
    /* Memory trim: connections opened + closed (churn) at the last tick and at the last trim,
     * and the tick count then. */
    unsigned long long churn_at_last_tick, churn_at_last_trim;
    unsigned long long ticks, ticks_at_last_trim;

    struct moat_h1s_scratch h1scratch; /* the request being dispatched, a handler's output */
    struct moat_h2s_scratch h2scratch; /* HTTP/2's (it shares h1scratch's output buffers) */
    struct moat_fcache files;          /* open files of the static handler */
    struct moat_up_pool upool;         /* connections to upstream servers */
    struct moat_proxy_spares pxspares; /* spent proxied exchanges, for reuse */
    struct moat_worker *siblings;      /* borrowed: the server's workers, this one among them */
    unsigned nsiblings;
    struct moat_stream_home shome;  /* its stream connections */
    struct moat_up_health **checks; /* the first worker's: health checkers of home.snap */
    size_t nchecks;
    size_t files_cap;        /* their ceiling, from the descriptor limit */
    struct moat_metrics *mx; /* owned: its counters; the main thread reads them (metrics.h) */
};

/* `alog` (NULL: off) and `https_port` are the server's, for the connections. */
/* `files_cap`: the most files its cache may keep open, whatever the configuration says. */
MOAT_MUST_USE moat_rc moat_worker_init(struct moat_worker *wk, unsigned id, struct moat_alog *alog,
                                       int https_port, size_t files_cap, struct moat_snapshot *snap,
                                       struct moat_err *err);
/* Take ownership of a listening socket. */
MOAT_MUST_USE moat_rc moat_worker_add_listener(struct moat_worker *wk, int fd, int tls,
                                               const char *spec, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_worker_start(struct moat_worker *wk, struct moat_err *err);
/* From the main thread: hand over a new snapshot (the reference passes to the worker). */
void moat_worker_publish(struct moat_worker *wk, struct moat_snapshot *snap);
/* From the main thread: stop accepting, drain, exit the thread. */
void moat_worker_request_stop(struct moat_worker *wk);
void moat_worker_join(struct moat_worker *wk);
void moat_worker_clear(struct moat_worker *wk);

#endif
