/*
 * conn.h: one client connection and its state machine.
 *
 *   HANDSHAKE -> READ_HEAD -> [READ_BODY] -> WRITE -> (keep-alive) IDLE -> READ_HEAD ...
 *                                                 \-> (close) LINGER -> closed
 *
 * Each state has one timer: handshake, head (from the request's first byte, never extended by
 * a trickle), body and write (inactivity), idle (keep-alive), linger. One function,
 * conn_run(), moves between states until the socket would block.
 */
#ifndef MOAT_SERVE_CONN_H
#define MOAT_SERVE_CONN_H

#include "core/buf.h"
#include "core/loop.h"
#include "core/timer.h"
#include "http1/chunked.h"
#include "http1/parse.h"
#include "core/transport.h"

#include <sys/socket.h>

struct moat_worker;
struct moat_snapshot;
struct moat_site;
struct moat_proxy;
struct moat_hdr_set;

enum moat_conn_state {
    MOAT_CONN_HANDSHAKE = 0,
    MOAT_CONN_IDLE, /* keep-alive, no request bytes yet; no read buffer held */
    MOAT_CONN_READ_HEAD,
    MOAT_CONN_READ_BODY, /* reading the request body to discard it */
    MOAT_CONN_WRITE,
    MOAT_CONN_LINGER, /* response sent, write side shut, draining input before close */
    MOAT_CONN_PROXY,  /* forwarding to an origin (serve/proxy.c drives) */
    MOAT_CONN_CLOSED,
    MOAT_CONN_STATE_COUNT /* keep last */
};

struct moat_conn {
    struct moat_watch w;             /* w.fd is tr.fd */
    struct moat_transport tr;        /* owned: plain or TLS (tls/transport.h) */
    struct moat_worker *wk;          /* borrowed */
    struct moat_snapshot *snap;      /* one reference */
    struct moat_site *site;          /* borrowed from snap: site of the current request */
    struct moat_site *sni_site;      /* borrowed from snap: the site whose handshake this was */
    const struct moat_hdr_set *hdrs; /* borrowed from site: `header` rules of this request;
                                        NULL = the site-wide ones */
    struct moat_conn *prev, *next;   /* the worker's list of connections */
    struct moat_conn *next_closing;
    unsigned long long id;
    enum moat_conn_state state;
    struct moat_timer timer;
    uint64_t head_started_ms;
    struct moat_h1_progress head_progress; /* where the head scan stopped */

    struct moat_buf in;  /* request bytes; a pool block while reading */
    struct moat_buf out; /* response head, generated body, then file chunks */
    int file_fd;         /* owned; -1 when no file is being sent */
    uint64_t file_off, file_left;

    /* The phase a trickle could stretch (request body, answer): when it began and the bytes it
     * moved so far, for the limits.min_rate deadline. */
    uint64_t phase_started_ms, phase_bytes;

    uint64_t body_left; /* Content-Length body still to discard */
    int body_chunked;
    struct moat_h1_chunked chunked;
    int send_continue; /* "100 Continue" still to be written */

    int keep_alive;  /* after this response */
    int plain;       /* accepted on the redirect listener */
    int error_close; /* closing after an error: the client may still be sending */
    unsigned requests;

    /* access log of the current request */
    int status;
    uint64_t bytes_sent; /* body bytes */
    uint64_t req_started_ms;
    struct moat_buf meta; /* copies of method, target, host, referer, user agent */

    struct moat_proxy *px; /* owned; the origin side while proxying, else NULL */

    char peer_text[48];
};

/* Accept a new connection on fd (ownership passes, also on failure). */
void moat_conn_accept(struct moat_worker *wk, int fd, const struct sockaddr_storage *peer,
                      int plain);
/* Called by the worker: drain started (close if idle, no keep-alive after this response). */
void moat_conn_drain(struct moat_conn *c);
/* Close now (drain deadline, shutdown). */
void moat_conn_close(struct moat_conn *c);
/* Free a closed connection (end of loop iteration). */
void moat_conn_free(struct moat_conn *c);

#endif
