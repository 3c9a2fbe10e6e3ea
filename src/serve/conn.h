/*
 * conn.h: one client connection: accept, TLS handshake, the protocol session the ALPN choice
 * calls for (http1/server.h, or http2/server.h for "h2"), drain and close. The session asks the
 * connection to route each request (serve/route.h: Host to site, 421, client_path rules) and to add
 * the site's fields to each answer; the connection knows nothing of the protocol's states.
 *
 *   HANDSHAKE -> SESSION -> CLOSED
 */
#ifndef MOAT_SERVE_CONN_H
#define MOAT_SERVE_CONN_H

#include "core/loop.h"
#include "core/timer.h"
#include "core/transport.h"
#include "http1/server.h"
#include "http2/server.h"
#include "serve/cache.h"
#include "serve/guard.h"
#include "serve/route.h"

#include <sys/socket.h>

struct moat_snapshot;
struct moat_site;
struct moat_hdr_set;
struct moat_alog;
struct moat_up_pool;
struct moat_proxy_spares;
struct moat_conn;
struct moat_metrics;

struct moat_conn_stats {
    unsigned long long accepted, handshake_failures, handshake_timeouts;
    struct moat_session_stats sessions; /* requests, bad requests, timeouts, both protocols */
};

/*
 * What a connection lives on: its worker's loop, buffers and access log, the configuration new
 * connections take, and the list of connections. The worker owns it and its connections; a
 * connection borrows it, so this file knows nothing of threads, listeners or reloads.
 */
struct moat_conn_home {
    struct moat_loop *loop;
    struct moat_pool *pool;
    struct moat_h1s_scratch *scratch;
    struct moat_h2s_scratch *h2scratch;
    struct moat_fcache *files;          /* the static handler's open files; NULL: none kept */
    struct moat_up_pool *upool;         /* the worker's connections to upstream servers */
    struct moat_proxy_spares *pxspares; /* the worker's spent proxied exchanges */
    struct moat_snapshot *snap;         /* one reference: the configuration new connections take */
    struct moat_alog *alog;             /* NULL: no access log */
    struct moat_buf *alog_lines;
    int https_port; /* for redirects from the plain listener */
    unsigned worker_id;
    unsigned long long next_id;
    struct moat_conn *conns; /* all live connections (doubly linked) */
    size_t nconns;
    struct moat_conn *closing; /* closed ones, freed at the end of the loop iteration */
    unsigned long long closed;
    struct moat_conn_stats stats;
    struct moat_metrics *mx;         /* borrowed: the worker's counters (serve/metrics.h) */
    struct moat_cache_bgs cache_bgs; /* background revalidations of the HTTP cache */
    /* A connection closed (the worker may accept again). */
    void (*on_closed)(void *owner);
    void *owner;
};

enum moat_conn_state {
    MOAT_CONN_HANDSHAKE = 0,
    MOAT_CONN_PROXY_HEADER, /* waiting for the PROXY protocol header of a trusted L4 proxy */
    MOAT_CONN_SESSION,      /* the protocol session runs */
    MOAT_CONN_CLOSED,
};

struct moat_conn {
    struct moat_watch w;               /* w.fd is tr.fd */
    struct moat_transport tr;          /* owned: plain or TLS (tls/transport.h) */
    struct moat_conn_home *home;       /* borrowed */
    struct moat_snapshot *snap;        /* one reference */
    struct moat_site *sni_site;        /* borrowed from snap: the site whose handshake this was */
    struct moat_route_memo route_memo; /* the last Host's site (serve/route.h) */
    struct moat_conn *prev, *next;     /* the worker's list of connections */
    struct moat_conn *next_closing;
    unsigned long long id;
    enum moat_conn_state state;
    struct moat_timer timer; /* the handshake's */
    int plain;               /* accepted on the redirect listener */
    int h2;                  /* the session is HTTP/2 */
    struct moat_h1s h1;      /* the HTTP/1 session (from accept: the plain listener has one) */
    /* Owned: the HTTP/2 one, once ALPN chose "h2" (then h1 is never started). Apart, so an
     * HTTP/1 connection does not carry its size: 0.35 KiB of every idle connection. Freed with
     * the connection, after the loop iteration that closed it. */
    struct moat_h2s *h2s;
    struct moat_endpoints ends;      /* ends.peer: the client's address, for logs */
    int proxy_header;                /* a PROXY protocol header is still to be read */
    struct moat_guard_addr client;   /* ends.peer as the limits key it */
    struct moat_guard_ticket ticket; /* what it holds of the limits: given back at close */
};

/* Accept a new connection on fd (ownership passes, also on failure). */
/* `proxy_header`: the listener expects a PROXY protocol header (v1 or v2) first, from a peer
 * in trusted_proxies; its addresses become the connection's ends. */
void moat_conn_accept(struct moat_conn_home *home, int fd, const struct sockaddr_storage *peer,
                      int plain, int h2_ok, int proxy_header);
/* Called by the worker: drain started (close if idle, no keep-alive after this response). */
void moat_conn_drain(struct moat_conn *c);
/* Called by the worker: a new configuration was published. An HTTP/2 connection, which could
 * otherwise live on the old one for hours, says GOAWAY: its streams finish and its client opens
 * a new connection. An HTTP/1 one carries on until its keep-alive ends. */
void moat_conn_retire(struct moat_conn *c);
/* Close now (drain deadline, shutdown). */
void moat_conn_close(struct moat_conn *c);
/* Free the connections closed in this loop iteration (at its end). */
void moat_conn_free_closed(struct moat_conn_home *home);

#endif
