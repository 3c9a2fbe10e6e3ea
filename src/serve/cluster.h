/*
 * cluster.h: a node's part in a cluster (docs/cluster.md): a thread of its own that keeps two
 * Redis connections (commands, and one subscribed to the nodes' events) and, once a second,
 * makes the TLS session ticket keys the nodes share.
 *
 * Why a thread and not the workers' loop: everything here is slow, rare and may block on a Redis
 * that has gone away (each call bounded by the block's timeout); the request path never waits
 * on it. What it learns reaches the hot path as data the path already reads (the ticket key set,
 * swapped under its own lock).
 *
 * Ticket keys: for each rotation period (ticket_rotate) there is one key, stored as
 * PREFIX "tickets:" <period number>, sealed (state/seal.h) with the cluster secret. The first node
 * to need a period's key makes it (SET NX with an expiry of three periods), and every node reads
 * the same one: the current period's key encrypts, the previous and the next (a node whose clock
 * runs ahead may have made it) decrypt. A ticket from any node therefore resumes on every node.
 * Redis away: the node keeps the keys it has, so its own tickets still resume; a Redis that comes
 * back empty gets the keys in use again (SET NX of what the nodes hold). After one whole
 * period without Redis it rotates locally, period by period, until Redis is back, so no key
 * lives on unbounded.
 */
#ifndef MOAT_SERVE_CLUSTER_H
#define MOAT_SERVE_CLUSTER_H

#include "core/err.h"
#include "serve/conf.h"
#include "tls/ticket.h"

#include <stdint.h>
#include <time.h>

struct moat_cluster;
struct moat_cache;
struct moat_acme_challenges;
struct moat_guard;

/*
 * Events for the other nodes (a PURGE this node took, a reload asked for everywhere): posted by
 * any thread without waiting, sent by the cluster thread with PUBLISH on PREFIX "events", and
 * acted on by every other node's cluster thread. The bus is the server's and outlives a
 * cluster restarted by a reload; an event waits at most a minute for Redis, then is dropped.
 */
struct moat_cluster_bus;
MOAT_MUST_USE moat_rc moat_cluster_bus_new(struct moat_cluster_bus **out, struct moat_err *err);
void moat_cluster_bus_free(struct moat_cluster_bus *b);
/* "KIND ARG" for the other nodes: kind "purge" (arg: the cache key) or "reload" (arg: ""). */
void moat_cluster_bus_post(struct moat_cluster_bus *b, const char *kind, const char *arg,
                           size_t alen);

struct moat_cluster_stats {
    int up;                   /* the last exchange with Redis worked */
    time_t since;             /* when `up` last changed (0: never up) */
    char last_error[300];     /* the last failure, "" when none yet */
    unsigned long long syncs; /* ticket key syncs that worked */
    unsigned long long failures;
    int shared_keys; /* the ticket keys in use are the cluster's */
};

/* Start the thread for `cc` (copied): it shares `tickets` (a reference is taken) rotated every
 * rotate_s, sends what is posted on `bus`, purges other nodes' PURGEs from `cache`, gives
 * other nodes' ACME answers from `challenges` and counts `guard`'s limit rules across the
 * nodes (each NULL: none); all borrowed, outliving it. *out
 * is the caller's; moat_cluster_stop ends it. */
MOAT_MUST_USE moat_rc moat_cluster_start(const struct moat_conf_cluster *cc,
                                         struct moat_tls_tickets *tickets, uint64_t rotate_s,
                                         struct moat_cluster_bus *bus, struct moat_cache *cache,
                                         struct moat_acme_challenges *challenges,
                                         struct moat_guard *guard, struct moat_cluster **out,
                                         struct moat_err *err);

/* The store (state/store.h) the cluster's nodes share in Redis, for ACME: *out is the caller's
 * (moat_store_free). */
struct moat_store;
MOAT_MUST_USE moat_rc moat_cluster_store_new(const struct moat_conf_cluster *cc,
                                             struct moat_store **out, struct moat_err *err);

/* 1 once when another node asked every node to reload (the main thread's tick asks). */
int moat_cluster_take_reload(struct moat_cluster *c);

/* Stop the thread and free it (waits at most the block's timeout for a call in flight). The
 * ticket keys stay as they are, rotating locally from then on. NULL does nothing. */
void moat_cluster_stop(struct moat_cluster *c);

/* Whether `c` was started for the same settings as `cc` (a reload keeps it running then). */
int moat_cluster_same(const struct moat_cluster *c, const struct moat_conf_cluster *cc,
                      uint64_t rotate_s);

void moat_cluster_stats(struct moat_cluster *c, struct moat_cluster_stats *out);

/* The Redis address, for the status page and messages. */
const char *moat_cluster_redis(const struct moat_cluster *c);

#endif
