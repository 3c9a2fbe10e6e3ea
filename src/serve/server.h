/*
 * server.h: the main thread of `moat serve`: builds the first snapshot, binds the listeners,
 * starts the workers, then runs its own loop: SIGHUP reloads (new snapshot, validated before
 * it is published), SIGTERM/SIGINT drain and exit, a once-a-second tick rotates ticket keys,
 * renews locally issued certificates in place (moat_snapshot_renew_certs: no reload) and
 * reloads when a CRL the local CA publishes is due, and the admin listener (serve/admin.h)
 * answers `moat status`, `moat reload`, `moat stop` and the metrics.
 */
#ifndef MOAT_SERVE_SERVER_H
#define MOAT_SERVE_SERVER_H

#include "core/err.h"
#include "core/loop.h"
#include "serve/accesslog.h"
#include "serve/conf.h"
#include "serve/statuspage.h"

#include <pthread.h>

struct moat_worker;
struct moat_snapshot;
struct moat_tls_tickets;

/* Where the configuration comes from, so a reload can read it again. */
struct moat_conf_source {
    const char *path; /* config file, or NULL */
    /* Build the configuration from flags when there is no file (the quick cases). */
    moat_rc (*from_flags)(void *arg, struct moat_conf **out, struct moat_err *err);
    void *arg;
};

struct moat_store;
struct moat_acme_challenges;
struct moat_guard;
struct moat_cache;
struct moat_acme_mgr;
struct moat_cluster;
struct moat_cluster_bus;
struct moat_admin;
struct moat_metrics;

struct moat_server {
    struct moat_conf_source src;
    char *state_dir;                  /* owned, resolved */
    struct moat_alog alog;            /* the access log (alog.fd -1: off) */
    char *alog_path;                  /* owned: its file, for SIGUSR1's reopen; NULL: none */
    int https_port;                   /* for redirects from the plain listener */
    struct moat_tls_tickets *tickets; /* owned, process-wide (survives reloads) */
    struct moat_snapshot *snap;       /* the main thread's reference to the current snapshot */
    struct moat_worker *workers;      /* owned array */
    unsigned nworkers;
    struct moat_store *store;          /* owned: the state folder as a store (ACME) */
    struct moat_acme_challenges *acme; /* owned: challenge answers the listeners give */
    struct moat_guard *guard;          /* owned: the limits' table (serve/guard.h) */
    struct moat_cache *cache;          /* owned: the HTTP cache (serve/cache.h) */
    struct moat_acme_mgr *acme_mgr;    /* owned: the ACME thread; NULL until a site needs it */
    unsigned long acme_gen;            /* the manager's generation last swapped in */
    struct moat_cluster *cluster;      /* owned: the cluster thread; NULL without cluster { } */
    struct moat_cluster_bus *bus;      /* owned: events for the other nodes (kept across
                                          reloads; dropped while no cluster runs) */
    /* The main thread's loop: signals (signalfd), the once-a-second tick, the admin listener. */
    struct moat_loop loop;
    int sigfd; /* owned */
    struct moat_watch sigw;
    struct moat_timer tick;
    time_t renew_check, crl_check; /* a failed renewal or CRL refresh is tried again then */
    struct moat_admin *admin;      /* owned; NULL when off */
    char *admin_spec;         /* owned: conf->admin at start ("" for the default), which a reload
                                 cannot change */
    struct moat_metrics **mx; /* owned array of the workers' counters (borrowed) */
    time_t started;
    unsigned long long reloads, reloads_refused;
    char last_refusal[1024];       /* the last refused reload's words */
    struct moat_page_history hist; /* request rates for the status page */
};

/* Load the configuration (from the source) and build a snapshot, without serving and without
 * writing anything (the `--check` path): what serve would create (the state folder, the local
 * CA, its certificates) is only said, at info level. */
MOAT_MUST_USE moat_rc moat_server_check(const struct moat_conf_source *src, struct moat_err *err);
/* moat_server_run's flags. */
#define MOAT_SERVE_DEMO 1u       /* the demo page: the banner says so */
#define MOAT_SERVE_ALLOW_ROOT 2u /* --allow-root: serve as root without `user` */
/* Serve until SIGTERM/SIGINT; returns after every worker has drained. */
MOAT_MUST_USE moat_rc moat_server_run(const struct moat_conf_source *src, unsigned flags,
                                      struct moat_err *err);
/* The state folder: $MOAT_STATE, else ~/.local/share/moat, unless the config names one; created
 * (0700, with parents) when missing. *out is malloc'ed. */
MOAT_MUST_USE moat_rc moat_server_state_dir(const struct moat_conf *conf, char **out,
                                            struct moat_err *err);
/* Same without creating anything (for --check). */
MOAT_MUST_USE moat_rc moat_server_state_dir_path(const struct moat_conf *conf, char **out,
                                                 struct moat_err *err);

#endif
