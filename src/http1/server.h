/*
 * server.h: the server side of HTTP/1.1 on one connection, after the handshake: reading heads
 * and bodies, pipelining, keep-alive, 100-continue, the limits and the timeouts, and writing
 * every answer head in one place. Handlers are reached only through http/exchange.h: the
 * connection that owns the session (serve/conn.c) routes each request in `dispatch` and adds
 * its site's fields in `decorate`; the session never knows a site, a certificate or a file
 * system.
 *
 *   IDLE -> HEAD -> [BODY] -> WRITE -> (keep-alive) IDLE or HEAD (pipelined) ...
 *                \-> STREAM (a streaming handler answers over time) -> WRITE
 *                                      (close) -> LINGER -> ended
 *
 * Each state has one timer: head (from the request's first byte, never extended by a
 * trickle), body and write (inactivity, and limits.min_rate after one timeout of grace), idle
 * (keep-alive), linger. In STREAM the timer runs only while the session waits for the client
 * (its body, or its taking the answer); waiting for the handler is the handler's to time.
 *
 * The steady state allocates nothing: buffers are pool blocks taken for a request and given
 * back when the connection goes idle, the parsed head and the handler's output go to the
 * worker's scratch, and a small answer leaves in one write with its head.
 */
#ifndef MOAT_HTTP1_SERVER_H
#define MOAT_HTTP1_SERVER_H

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/timer.h"
#include "core/transport.h"
#include "http/exchange.h"
#include "http/session.h"
#include "http1/chunked.h"
#include "http1/parse.h"

#include <stdint.h>

/* What the session enforces; built once per configuration snapshot. */
struct moat_h1s_conf {
    struct moat_h1_limits head;
    uint64_t max_body_bytes; /* 0: none */
    uint64_t max_requests;   /* per connection */
    uint64_t min_rate;       /* bytes/s a body or an answer must keep up after one timeout; 0 off */
    uint64_t head_timeout_ms, idle_timeout_ms, body_timeout_ms, write_timeout_ms;
};

/* Per worker, shared by its sessions one request at a time. */
struct moat_h1s_scratch {
    struct moat_h1_req req;            /* the head being dispatched */
    struct moat_buf fields;            /* a handler's header lines */
    struct moat_buf body;              /* a handler's generated body */
    char npath[MOAT_REQ_PATH_CAP + 1]; /* the request's normalised path */
};

/* What a session runs on; everything borrowed, living longer than the session. */
struct moat_h1s_env {
    struct moat_loop *loop;
    struct moat_pool *pool;
    struct moat_h1s_scratch *scratch;
    struct moat_session_stats *stats;
    const struct moat_session_host *host;
    void *host_data;
    unsigned long long conn_id; /* for log lines */
    const char *peer; /* the client's address ("192.0.2.1", "::1"), for logs and handlers */
    const struct moat_endpoints *ends; /* both ends with ports, for handlers; may be NULL */
    int secure;                        /* the connection is TLS */
    void *tls;                         /* its SSL * for handlers that ask tls/ about the client */
    int keep_meta;                     /* copy what the access log needs of each request */
};

enum moat_h1s_state {
    MOAT_H1S_IDLE = 0, /* keep-alive, no request bytes yet; no read buffer held */
    MOAT_H1S_HEAD,
    MOAT_H1S_BODY, /* reading the request body to discard it */
    MOAT_H1S_WRITE,
    MOAT_H1S_STREAM, /* a streaming handler has the exchange */
    MOAT_H1S_LINGER, /* answer sent, write side shut, draining input before close */
    MOAT_H1S_ENDED,
};

struct moat_h1s {
    struct moat_exch ex; /* what a streaming handler holds (req->exch) */
    struct moat_h1s_env env;
    struct moat_transport *tr;        /* borrowed from the connection */
    const struct moat_h1s_conf *conf; /* borrowed from the connection's snapshot */
    enum moat_h1s_state state;
    struct moat_timer timer;
    int running; /* inside run(): exchange calls set state, run() moves on */
    /* Waiting for the next request: when the wait ends (timeouts.idle or .head), and whether
     * the transport keeps its buffers until the wait is IDLE_KEEP_MS old (step_idle). */
    uint64_t wait_until_ms;
    int bufs_kept;
    uint64_t head_started_ms;
    struct moat_h1_progress head_progress; /* where the head scan stopped */

    struct moat_buf in;  /* request bytes; a pool block while reading */
    struct moat_buf out; /* answer head, generated body, file pieces, streamed body */
    int file_fd;         /* owned (or its owner's, see file_release); -1: no file is being sent */
    void (*file_release)(void *h);
    void *file_h;
    uint64_t file_off, file_left;

    /* The phase a trickle could stretch (request body, answer): when it began and the bytes it
     * moved so far, for the limits.min_rate deadline. */
    uint64_t phase_started_ms, phase_bytes;

    uint64_t body_left; /* Content-Length body still to come */
    int body_chunked;
    int body_done;
    struct moat_h1_chunked chunked;
    int send_continue; /* "100 Continue" still to be written */

    int minor;                    /* of the request being answered */
    int head_only;                /* it is HEAD */
    enum moat_http_method method; /* of the request being answered */
    int keep_alive;               /* after this answer */
    int draining;                 /* no keep-alive any more */
    int error_close;              /* closing after an error: the client may still be sending */
    unsigned requests;

    /* A streaming handler's exchange. */
    const struct moat_stream_ops *sops; /* NULL when none */
    void *sh;
    int st_started;           /* its head is queued */
    int upgrade_asked;        /* the request asked to switch protocols (Upgrade) */
    int tunnel;               /* a 101 went out: raw bytes both ways until the end */
    int st_chunked;           /* its body goes out chunk-encoded */
    int st_waiting;           /* it waits for the client: body bytes (1) or room for answer (2) */
    int st_finished;          /* it called finish: flush, then done */
    struct moat_buf trailers; /* the request's trailer fields, kept for a streaming handler */

    struct moat_route_ref ref; /* the current request's route */

    /* For the access log. */
    int status;
    uint64_t bytes_sent; /* body bytes */
    uint64_t req_started_ms;
    struct moat_buf meta; /* NUL-separated copies: method, target, host, referer, user agent */
};

/* Ready a session over `tr` (which must outlive it); nothing is read yet. */
void moat_h1s_init(struct moat_h1s *s, struct moat_transport *tr, const struct moat_h1s_conf *conf,
                   const struct moat_h1s_env *env);
/* Start reading the first request (with the head timeout: a client that completes a handshake
 * and then says nothing is not a keep-alive client). May end the session at once. */
void moat_h1s_start(struct moat_h1s *s);
/* The socket is readable or writable (edge-triggered): run until it would block. */
void moat_h1s_on_event(struct moat_h1s *s, uint32_t events);
/* The worker drains: 1 when the session is between requests and the connection may close now;
 * otherwise the current answer is the last one. */
int moat_h1s_drain(struct moat_h1s *s);
/* Release everything (the connection closes): a streaming handler gets its abort. Safe after
 * the session ended and twice. */
void moat_h1s_clear(struct moat_h1s *s);

#endif
