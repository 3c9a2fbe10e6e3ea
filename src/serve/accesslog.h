/*
 * accesslog.h: one line per answer, combined format or JSON lines, collected in the worker's
 * buffer and written in one write(2) per flush (each second, when the buffer passes 32 KiB,
 * and at exit), so logging costs no syscall per request. It knows lines and a sink, not the
 * connection the line is about.
 */
#ifndef MOAT_SERVE_ACCESSLOG_H
#define MOAT_SERVE_ACCESSLOG_H

#include "core/buf.h"
#include "serve/conf.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>

/* Where the lines go: shared by the workers, one write per flush under the lock. */
struct moat_alog {
    int fd; /* -1: off */
    int owned;
    enum moat_log_format format;
    pthread_mutex_t mu;
};

/* One answer, as the line shows it. */
struct moat_alog_entry {
    const char *peer;     /* the client's address, without the port */
    const char *proto;    /* "HTTP/1.1", "HTTP/2", ... */
    const char *parts[5]; /* method, target, host, referer, user agent ("" when unknown) */
    int status;
    uint64_t bytes; /* body bytes sent */
    double ms;      /* from the request's first byte to the answer's last */
    int tls;
    SSL *ssl; /* for the client certificate's identity; NULL on the plain port */
};

/* One TCP stream (a `stream` block's connection), as its line shows it. */
struct moat_alog_stream {
    const char *peer;             /* the client's address, without the port */
    const char *stream;           /* the stream block's name */
    const char *mode;             /* "terminate", "passthrough", "plain" */
    const char *sni;              /* the client's server name; "" when none */
    const char *target;           /* the server it was relayed to; "" when none was reached */
    uint64_t bytes_in, bytes_out; /* client to target, target to client */
    double ms;                    /* from accept to close */
    const char *end;              /* how it ended */
};

/* Append the line for `e` to `lines` (never half a line); flush when they pass 32 KiB. */
void moat_accesslog_add(struct moat_alog *sink, struct moat_buf *lines,
                        const struct moat_alog_entry *e);
/* The same for a stream. Combined format: `PEER - - [TIME] "STREAM NAME MODE SNI" TARGET IN OUT
 * MS "END"` (a line an HTTP log parser skips rather than misreads); JSON: "type":"stream". */
void moat_accesslog_add_stream(struct moat_alog *sink, struct moat_buf *lines,
                               const struct moat_alog_stream *e);
/* Write `lines` to the sink and empty them (a full disk loses lines, never requests). */
void moat_accesslog_flush(struct moat_alog *sink, struct moat_buf *lines);

#endif
