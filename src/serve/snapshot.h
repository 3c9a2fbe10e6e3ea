/*
 * snapshot.h: one immutable, reference-counted picture of the running configuration: the
 * parsed config, each site's TLS context and root folder, the SNI table, the HTTP limits.
 *
 * Reload builds a new snapshot off to the side and validates all of it (certificates, keys,
 * roots) before anything changes; a bad configuration never replaces a good one. A connection
 * holds a reference to the snapshot it was accepted under until it closes, so in-flight
 * requests never see half of an old and half of a new configuration.
 */
#ifndef MOAT_SERVE_SNAPSHOT_H
#define MOAT_SERVE_SNAPSHOT_H

#include "core/err.h"
#include "http1/parse.h"
#include "serve/conf.h"
#include "serve/static.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <time.h>

struct moat_tls_tickets;
struct moat_tls_sni;
struct moat_tls_client_auth;
struct moat_proxy_target;

struct moat_site {
    const struct moat_conf_site *conf;        /* borrowed from the snapshot's conf */
    struct moat_static_site st;               /* st.root_fd owned; -1 for a proxy site */
    struct moat_proxy_target *proxy;          /* owned; NULL for a static site */
    SSL_CTX *ctx;                             /* owned (one reference) */
    struct moat_tls_client_auth *client_auth; /* owned; NULL when client_auth is off; freed
                                                 after ctx, which borrows it */
    char hsts[160];                           /* whole header line with CRLF, or "" */
    size_t hsts_len;
    int local_cert; /* certificate issued by moat's local CA */
};

struct moat_snapshot {
    atomic_int refs;
    unsigned long long generation;
    struct moat_conf *conf;  /* owned */
    struct moat_site *sites; /* owned array of nsites */
    size_t nsites;
    struct moat_tls_sni *sni; /* owned */
    struct moat_h1_limits limits;
    time_t renew_at; /* when a locally issued certificate should be renewed; 0 = never */
};

struct moat_snapshot_env {
    struct moat_tls_tickets *tickets; /* borrowed, process-wide; NULL = no tickets */
    const char *state_dir;            /* for the local CA */
    int quiet;                        /* no notes about the local CA (reloads) */
    int dry_run; /* `serve --check`: write nothing; say what the local CA would create */
};

/* Build and validate a snapshot from conf (ownership of conf passes to the snapshot, also on
 * failure). Every refusal names the file (and config position) and says how to fix it. */
MOAT_MUST_USE moat_rc moat_snapshot_build(struct moat_conf *conf,
                                          const struct moat_snapshot_env *env,
                                          struct moat_snapshot **out, struct moat_err *err);
static inline struct moat_snapshot *moat_snapshot_ref(struct moat_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}
void moat_snapshot_unref(struct moat_snapshot *s);

/* The site for a Host header value or SNI name (port stripped by the caller): exact, then
 * wildcard, then the default site. Never NULL. */
struct moat_site *moat_snapshot_site_for(const struct moat_snapshot *s, const char *name,
                                         size_t len);

#endif
