/*
 * guard.h: abuse protection (docs/limits.md). One guard per process, shared by its workers:
 * the rate and connection table (core/limiter.h) keyed by client address, the count of all
 * open connections, and a counter and a rate-limited log line for every kind of refusal.
 * What is allowed comes from the configuration of the moment (struct moat_conf), so a reload
 * changes the limits and keeps what the table learnt.
 *
 * At accept (before a byte is read, so before any TLS cryptography): the total cap, the
 * top-level allow/deny lists, new connections and handshakes per second and open
 * connections per address. Per request: a site's allow/deny and `limit` rules. A listener
 * that expects a PROXY protocol header takes the per-address checks after the header, on the
 * address it names.
 */
#ifndef MOAT_SERVE_GUARD_H
#define MOAT_SERVE_GUARD_H

#include "core/cidr.h"
#include "core/err.h"
#include "http/exchange.h"
#include "serve/conf.h"

#include <stdint.h>
#include <sys/socket.h>

enum moat_guard_kind {
    MOAT_GUARD_OK = 0,
    MOAT_GUARD_DENIED,     /* top-level allow/deny */
    MOAT_GUARD_TOTAL,      /* total_connections */
    MOAT_GUARD_CONNS,      /* address_connections */
    MOAT_GUARD_NEW,        /* address_new_connections */
    MOAT_GUARD_HANDSHAKES, /* address_handshakes */
    MOAT_GUARD_H2,         /* http2_requests */
    MOAT_GUARD_SITE_DENY,  /* a site's allow/deny: 403 */
    MOAT_GUARD_LIMIT,      /* a site's limit rule: 429 */
    MOAT_GUARD_NKINDS,
};

struct moat_guard;

struct moat_guard_stats {
    unsigned long long refused[MOAT_GUARD_NKINDS];
    unsigned long long open;     /* connections counted against total_connections now */
    unsigned long long evicted;  /* rate states the full table dropped early */
    unsigned long long overflow; /* events let through because the table was full */
};

/* A client address as the guard keys it: IPv4 (an IPv4-mapped IPv6 one too) or IPv6. */
struct moat_guard_addr {
    int family; /* AF_INET, AF_INET6; 0: none (a unix socket, an unparsable text) */
    uint8_t addr[16];
};

/* What a connection holds of the guard, given back by moat_guard_release. */
struct moat_guard_ticket {
    uint64_t conn_key; /* its address's connection count; 0: not counted */
    int total;         /* counted against total_connections */
};

/* `slots`: limits.address_table. The seed of the table's hash is random. */
MOAT_MUST_USE moat_rc moat_guard_new(size_t slots, struct moat_guard **out, struct moat_err *err);
void moat_guard_free(struct moat_guard *g);

/* The process's descriptor limit, for total_connections auto (90% of it). */
void moat_guard_set_fd_limit(struct moat_guard *g, uint64_t nofile);

/* Whether the table was made for `slots` (address_table takes effect at a restart). */
int moat_guard_slots_are(const struct moat_guard *g, size_t slots);

void moat_guard_addr_of_sa(const struct sockaddr *sa, struct moat_guard_addr *out);
void moat_guard_addr_of_text(const char *text, size_t len, struct moat_guard_addr *out);

/* At accept, before anything else: one more connection under total_connections. MOAT_GUARD_OK
 * (t->total set: it must be released) or MOAT_GUARD_TOTAL. */
enum moat_guard_kind moat_guard_total_take(struct moat_guard *g, const struct moat_conf *c,
                                           struct moat_guard_ticket *t);

/* The per-address checks of a new connection from `a` at now_ms (monotonic): allow/deny,
 * new connections and (tls) handshakes per second, open connections. MOAT_GUARD_OK with
 * t->conn_key set when counted, else the kind that refused (nothing taken). */
enum moat_guard_kind moat_guard_admit(struct moat_guard *g, const struct moat_conf *c,
                                      const struct moat_guard_addr *a, int tls, uint64_t now_ms,
                                      struct moat_guard_ticket *t);

/*
 * The checks of a connection at accept, refusals counted and logged: 1 to go on (*t holds
 * what it must give back), 0 refused (nothing held: close it). `addr_later`: the address
 * comes in a PROXY header; then only the total cap is checked now, and the rest by
 * moat_guard_after_header with the address the header names (1 go on, 0 refused). g NULL:
 * nothing is checked.
 */
int moat_guard_at_accept(struct moat_guard *g, const struct moat_conf *c,
                         const struct sockaddr_storage *peer, int tls, int addr_later,
                         uint64_t now_ms, struct moat_guard_ticket *t);
int moat_guard_after_header(struct moat_guard *g, const struct moat_conf *c,
                            const struct sockaddr_storage *src, int tls, uint64_t now_ms,
                            unsigned long long id, struct moat_guard_ticket *t);

/* Give back what a connection held (also a zero ticket); the ticket is zeroed. */
void moat_guard_release(struct moat_guard *g, struct moat_guard_ticket *t);

/* Whether http2_requests applies to a connection from `a` (loopback and `exempt` may skip it). */
int moat_guard_h2_limited(const struct moat_conf *c, const struct moat_guard_addr *a);

/*
 * A request's client address: the peer, or, when the peer is a trusted proxy, the nearest
 * address in X-Forwarded-For that is not one (walking from the right: every hop a trusted
 * proxy appended is believed, the first it got from elsewhere is the client).
 */
void moat_guard_client_of(const struct moat_req *req, const struct moat_cidr *trusted,
                          size_t ntrusted, struct moat_guard_addr *out);

/* A site's allow/deny lists for the client: 1 allowed. */
int moat_guard_site_allows(const struct moat_conf_site *site, const struct moat_guard_addr *a);

/*
 * The site's `limit` rules that cover the request: MOAT_GUARD_OK, or MOAT_GUARD_LIMIT with
 * *retry_after_s (at least 1) and *rule the one that refused. `site_key` tells the site
 * apart in the table (its name).
 */
enum moat_guard_kind moat_guard_limit(struct moat_guard *g, const struct moat_conf *c,
                                      const struct moat_conf_site *site, const struct moat_req *req,
                                      const struct moat_guard_addr *client, uint64_t now_ms,
                                      uint64_t *retry_after_s, const struct moat_conf_limit **rule);

/*
 * Count a refusal and log it: at most one line per kind and second, which says how many
 * more of that kind were refused since the last line. `detail` names the limit.
 */
void moat_guard_refused(struct moat_guard *g, enum moat_guard_kind kind, unsigned long long id,
                        const char *peer, const char *detail);

void moat_guard_stats(struct moat_guard *g, struct moat_guard_stats *out);

/*
 * Cluster-wide limits (docs/cluster.md): the sites' `limit` rules, and per address the new
 * connections, handshakes and open connections. Once on (a cluster's key: every node the
 * same), what a rate lets through is noted under a key every node computes alike, and so is
 * each address that holds connections. The cluster thread, every 100 ms: collects the keys
 * (each rate's events since the last time; each address's open connections now), exchanges
 * them with the cluster's totals in Redis, and applies the totals: what other nodes let through
 * is charged to the local limiter, and the other nodes' open connections count against
 * address_connections here. A request never waits on Redis; with Redis away the local limits
 * hold alone (an item's total -1 keeps a rate's count for the next exchange).
 */
struct moat_guard_share_item {
    size_t slot; /* for apply */
    uint64_t ckey;
    int conns;          /* 0: a rate (add: events); 1: an address's open connections (add: now) */
    uint64_t add;       /* let through here since the last exchange, or open here now */
    uint64_t window_ms; /* the rule's period: the Redis counter lives at least this long */
    int64_t total;      /* set by the caller: the cluster's total after adding, -1 unknown */
};
MOAT_MUST_USE moat_rc moat_guard_share_on(struct moat_guard *g, const uint8_t key[16],
                                          struct moat_err *err);
size_t moat_guard_share_collect(struct moat_guard *g, struct moat_guard_share_item *out, size_t cap,
                                uint64_t now_ms);
void moat_guard_share_apply(struct moat_guard *g, const struct moat_guard_share_item *items,
                            size_t n, uint64_t now_ms);

/* What a connection refused at accept by `kind` was over, in words, from the configuration. */
void moat_guard_words(const struct moat_conf *c, enum moat_guard_kind kind, char *out, size_t cap);

/* The configuration's words for a kind: "address_handshakes", ... */
const char *moat_guard_kind_name(enum moat_guard_kind kind);

#endif
