/*
 * stream.h: connections of `stream` listeners: TCP whose bytes go to a target (an upstream
 * group), with TLS terminated, passed through untouched (routed by the SNI of the raw
 * ClientHello, tls/clienthello.h), or off; moat speaks the in-band opening of SMTP (STARTTLS,
 * RFC 3207) and PostgreSQL (SSLRequest) itself before the TLS handshake. This is what stunnel
 * and hitch do, and HAProxy's `mode tcp` with `req.ssl_sni`.
 *
 *   [PROXY header] -> [opening] -> TLS handshake | ClientHello peek | nothing -> connect
 *   -> [the server's SMTP greeting, swallowed] -> PIPE
 *
 * The pipe holds one buffer each way and reads a side only when the other has taken what was
 * read before, so a slow side is felt by the fast one (back-pressure), and memory per
 * connection is bounded. The end: the server closing (after what is queued for the client),
 * the client closing its side (passed on as a half-close), idleness both ways, or the drain.
 */
#ifndef MOAT_SERVE_STREAM_H
#define MOAT_SERVE_STREAM_H

#include "core/buf.h"
#include "core/loop.h"
#include "http/exchange.h"
#include "upstream/pool.h"

#include <sys/socket.h>

struct moat_alog;

struct moat_snapshot;
struct moat_sconn;

/* A worker's stream connections. */
struct moat_stream_home {
    struct moat_loop *loop;
    struct moat_up_pool *pool; /* for the connections to targets */
    unsigned worker_id;
    unsigned long long next_id;
    struct moat_sconn *conns; /* live ones (doubly linked) */
    size_t nconns;
    struct moat_alog *alog;      /* the server's access log; NULL: off */
    struct moat_buf *alog_lines; /* the worker's lines waiting to be written */
};

/* Accept fd (ownership passes, also on failure) on the stream listener `spec` of `snap`;
 * `proxy_header`: a PROXY protocol header comes first (from trusted_proxies only). */
void moat_stream_accept(struct moat_stream_home *h, struct moat_snapshot *snap, const char *spec,
                        int fd, const struct sockaddr_storage *peer, int proxy_header);

/* Close every stream connection now (the drain's deadline, shutdown). */
void moat_stream_close_all(struct moat_stream_home *h);

#endif
