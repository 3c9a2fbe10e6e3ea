/*
 * report.h: what the admin interface answers, made from the running server's state: the status
 * (JSON), each site's certificates (JSON), the upstreams' health (JSON) and the Prometheus
 * metrics (text format 0.0.4).
 *
 * The main thread calls these, between reloads: the snapshot and its sites' certificate lists
 * are the main thread's, the workers' counters are read without a lock (metrics.h), and the
 * shared tables (limits, cache, ACME) answer through their own locked readers.
 */
#ifndef MOAT_SERVE_REPORT_H
#define MOAT_SERVE_REPORT_H

#include "core/buf.h"
#include "core/err.h"

#include <jansson.h>
#include <stdint.h>
#include <time.h>

struct moat_snapshot;
struct moat_metrics;
struct moat_guard;
struct moat_cache;
struct moat_acme_mgr;

struct moat_cluster;

struct moat_report_src {
    const struct moat_snapshot *snap;
    struct moat_metrics *const *mx; /* each worker's counters */
    size_t nworkers;
    struct moat_guard *guard;     /* NULL: none */
    struct moat_cache *cache;     /* NULL: none */
    struct moat_acme_mgr *acme;   /* NULL: no site has tls acme */
    struct moat_cluster *cluster; /* NULL: no cluster block */
    time_t started;               /* the server's start */
    const char *config;           /* the config file, or NULL (flags) */
    const char *state_dir;
    const char *admin;          /* where the admin interface listens */
    unsigned long long reloads; /* that took */
    unsigned long long refused; /* reloads refused (a bad configuration) */
    const char *last_refusal;   /* the last refused reload's words, or "" */
};

/* The same documents as jansson values (new references; NULL when out of memory), for the
 * status page. */
json_t *moat_report_status_json(const struct moat_report_src *r);
json_t *moat_report_certs_json(const struct moat_report_src *r);
json_t *moat_report_upstreams_json(const struct moat_report_src *r);

/* Answers sent so far, all sites and workers: in all, 4xx, 5xx. */
void moat_report_totals(const struct moat_report_src *r, uint64_t *requests, uint64_t *client_err,
                        uint64_t *server_err);

MOAT_MUST_USE moat_rc moat_report_status(const struct moat_report_src *r, struct moat_buf *out);
MOAT_MUST_USE moat_rc moat_report_certs(const struct moat_report_src *r, struct moat_buf *out);
MOAT_MUST_USE moat_rc moat_report_upstreams(const struct moat_report_src *r, struct moat_buf *out);
MOAT_MUST_USE moat_rc moat_report_metrics(const struct moat_report_src *r, struct moat_buf *out);

#endif
