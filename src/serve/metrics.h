/*
 * metrics.h: what a worker counts for the admin interface's /metrics: requests by site, protocol,
 * status class and method, their latency, TLS handshakes by version, cipher, group and
 * resumption, handshake failures by cause, connections, the requests a site's `limit` rules
 * refused, and per upstream server its answers' latency and status class, failed tries and
 * how often a pooled connection was reused rather than a new one opened.
 *
 * Each worker owns one struct moat_metrics and is its only writer: a count goes up with a
 * relaxed load and store (a plain add on x86, no locked instruction, no lock), and the main
 * thread sums the workers' blocks when /metrics is read. A read may miss an add in flight;
 * counters never go down, which is all Prometheus asks.
 *
 * Sites are counted by slot: a process-wide table gives each site name a slot the first time a
 * snapshot names it, and keeps it across reloads (a counter must not reset, or move to another
 * site, because the file changed). Slot 0 is for requests no site took (421, a bad request);
 * names past the table share its last slot, "(other)". Upstream servers get slots the same way,
 * from a table of their own keyed by upstream and server name.
 */
#ifndef MOAT_SERVE_METRICS_H
#define MOAT_SERVE_METRICS_H

#include "http/method.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MOAT_MX_SITES 64
#define MOAT_MX_UPS 64   /* upstream servers told apart; past it they share "(other)" */
#define MOAT_MX_NPROTO 3 /* HTTP/1.0, HTTP/1.1, HTTP/2 */
#define MOAT_MX_NCLASS 5 /* 1xx .. 5xx */
#define MOAT_MX_NBUCKET 14
#define MOAT_MX_HS 32 /* distinct (version, cipher, group, resumed) a worker tells apart */

/* The latency buckets' upper bounds in milliseconds; the last one is +Inf. */
extern const uint64_t moat_mx_bucket_ms[MOAT_MX_NBUCKET - 1];

enum moat_mx_hs_fail {
    MOAT_MX_HSF_ALPN = 0,       /* no common application protocol */
    MOAT_MX_HSF_NO_CLIENT_CERT, /* client_auth require, and none was sent */
    MOAT_MX_HSF_CLIENT_REFUSED, /* a client certificate that failed verification or allow */
    MOAT_MX_HSF_TIMEOUT,        /* handshake_timeout passed */
    MOAT_MX_HSF_PROTOCOL,       /* anything else: versions, ciphers, a broken ClientHello */
    MOAT_MX_HSF_COUNT           /* keep last */
};
extern const char *const moat_mx_hs_fail_name[MOAT_MX_HSF_COUNT];

struct moat_mx_site {
    _Atomic uint64_t req[MOAT_MX_NPROTO][MOAT_MX_NCLASS][MOAT_HTTP_M_COUNT];
    _Atomic uint64_t lat[MOAT_MX_NBUCKET]; /* per bucket (not cumulative: the reader adds up) */
    _Atomic uint64_t lat_sum_ms;
    _Atomic uint64_t bytes;   /* body bytes sent */
    _Atomic uint64_t limited; /* requests refused with 429 by one of the site's `limit` rules */
};

/* One upstream server as a worker's proxied requests saw it. */
struct moat_mx_up {
    _Atomic uint64_t answers[MOAT_MX_NCLASS]; /* answer heads received, by status class */
    _Atomic uint64_t lat[MOAT_MX_NBUCKET];    /* try start (connect or pooled) to answer head */
    _Atomic uint64_t lat_sum_ms;
    _Atomic uint64_t failed; /* tries that ended without an answer (connect, timeout, reset) */
    _Atomic uint64_t opened; /* connections opened for a request */
    _Atomic uint64_t reused; /* requests sent on a pooled connection */
};

struct moat_mx_hs {
    /* Written once, before the entry is published through nhs; copies (a group's name comes
     * from a context a reload frees). */
    char version[16], cipher[64], group[32];
    int resumed;
    _Atomic uint64_t n;
};

struct moat_metrics {
    _Atomic uint64_t accepted, closed;
    _Atomic uint64_t hs_fail[MOAT_MX_HSF_COUNT];
    struct moat_mx_hs hs[MOAT_MX_HS];
    atomic_size_t nhs;        /* entries [0, nhs) are published */
    _Atomic uint64_t hs_lost; /* handshakes of combinations past the table */
    struct moat_mx_site sites[MOAT_MX_SITES];
    struct moat_mx_up ups[MOAT_MX_UPS];
};

static inline void moat_mx_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t moat_mx_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* One answer went out. proto: 0 HTTP/1.0, 1 HTTP/1.1, 2 HTTP/2. */
void moat_metrics_request(struct moat_metrics *m, unsigned slot, unsigned proto, int status,
                          enum moat_http_method method, uint64_t ms, uint64_t bytes);
/* One handshake completed. `group` may be NULL or "" (TLS 1.2 with RSA key exchange). */
void moat_metrics_handshake(struct moat_metrics *m, const char *version, const char *cipher,
                            const char *group, int resumed);

/* An upstream server's answer head came `ms` after its try started. */
void moat_metrics_upstream(struct moat_metrics *m, unsigned slot, int status, uint64_t ms);

/* The slot in a latency histogram for `ms`. */
unsigned moat_mx_bucket(uint64_t ms);

/* The slot of a site (its first name): the same one for as long as the process runs. */
unsigned moat_mx_slot(const char *site);
/* The name of a slot in use ("" for slot 0), NULL past the slots given out so far. */
const char *moat_mx_slot_name(unsigned slot);

/* The same for an upstream server, by its upstream's name and its own (slot 0 is unused). */
unsigned moat_mx_up_slot(const char *upstream, const char *server);
/* Its names, 1 when the slot is in use ("(other)" for both in the last one), else 0. */
int moat_mx_up_slot_names(unsigned slot, const char **upstream, const char **server);

#endif
