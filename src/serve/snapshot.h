/*
 * snapshot.h: one immutable, reference-counted picture of the running configuration: the
 * parsed config, each site's TLS context and root folder, the SNI table, the HTTP limits.
 *
 * Reload builds a new snapshot off to the side and validates all of it (certificates, keys,
 * roots) before anything changes; a bad configuration never replaces a good one. A connection
 * holds a reference to the snapshot it was accepted under until it closes, so in-flight
 * requests never see half of an old and half of a new configuration.
 *
 * The one exception to "immutable": a site's certificates can be replaced without a reload
 * (moat_snapshot_swap_certs). A site's TLS context lives in the SNI table (there is no other
 * copy to go stale), which hands the new one to handshakes that start afterwards.
 */
#ifndef MOAT_SERVE_SNAPSHOT_H
#define MOAT_SERVE_SNAPSHOT_H

#include "core/err.h"
#include "http1/server.h"
#include "http2/server.h"
#include "serve/conf.h"
#include "serve/headers.h"
#include "serve/static.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <time.h>

struct moat_tls_tickets;
struct moat_tls_sni;
struct moat_tls_client_auth;
struct moat_proxy_route;
struct moat_up_group;
struct moat_cidr;
struct moat_crlpub_set;
struct moat_tls_certset;
struct moat_store;
struct moat_acme_challenges;
struct moat_guard;
struct moat_cache;

struct moat_site {
    const struct moat_conf_site *conf; /* borrowed from the snapshot's conf */
    struct moat_static_site st;        /* st.root_fd owned; -1 for a proxy site */
    struct moat_proxy_route *proxies;  /* owned: `proxy` rules, longest prefix first */
    size_t nproxies;
    struct moat_tls_client_auth *client_auth; /* owned; NULL when client_auth is off; freed
                                                 after ctx, which borrows it */
    struct moat_hdr_table hdrs;               /* owned: `header` rules compiled */
    struct moat_hdr_table req_hdrs;           /* owned: `request_header` rules compiled */
    char hsts[160];                           /* whole header line with CRLF, or "" */
    size_t hsts_len;
    int local_cert;       /* certificate issued by moat's local CA */
    int acme_waiting;     /* `tls acme` with no ACME certificate yet: the local CA's serves */
    time_t cert_renew_at; /* when its certificate source wants a new one; 0 = never. The main
                             thread's (moat_snapshot_renew_certs); workers never read it */
    unsigned mx_slot;     /* its counters' slot (serve/metrics.h) */
    /* What it serves, for the admin interface: one reference each (keys included, the same
     * objects its TLS context holds). The main thread's: set at build and by each swap. */
    struct moat_tls_certset *certs[8];
    size_t ncerts;
};

/* A site name that is an IP address (routing by Host only; SNI never carries one). */
struct moat_site_ip {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    struct moat_site *site; /* borrowed from the snapshot */
};

#define MOAT_SNAPSHOT_MAX_IPS 64

/* A `stream` block as the workers use it. */
struct moat_stream_route_rt {
    char sni[256];               /* lower case, "*.x" for one label; "" for the default */
    struct moat_up_group *group; /* one reference */
};

struct moat_stream_rt {
    const struct moat_conf_stream *conf; /* borrowed from the snapshot's conf */
    SSL_CTX *ctx;                        /* owned: tls terminate; NULL otherwise */
    struct moat_tls_sni *sni; /* owned: the certificates by name (ctx is its default's) */
    struct moat_tls_client_auth *client_auth; /* owned; freed after ctx, which borrows it */
    struct moat_stream_route_rt *routes;      /* owned */
    size_t nroutes;
    time_t cert_renew_at; /* a certificate from the local CA: when it wants a new one; 0 never */
};

struct moat_snapshot {
    atomic_int refs;
    unsigned long long generation;
    struct moat_conf *conf;  /* owned */
    struct moat_site *sites; /* owned array of nsites */
    size_t nsites;
    struct moat_tls_sni *sni; /* owned */
    struct moat_site_ip ips[MOAT_SNAPSHOT_MAX_IPS];
    size_t nips;
    struct moat_site *catch_all; /* the "*" site, or NULL */
    struct moat_h1s_conf h1;     /* what the HTTP/1 sessions enforce (conf's limits, timeouts) */
    struct moat_h2s_conf h2;     /* and the HTTP/2 ones */
    time_t crl_refresh_at;       /* when a CRL the local CA publishes must be made again (a reload
                                    does it); 0 = never */
    struct moat_crlpub_set *crlpub; /* owned; NULL when no site has crl_publish */
    struct moat_up_group **groups;  /* owned references: conf->upstreams' groups */
    size_t ngroups;
    struct moat_cidr *trusted; /* owned: trusted_proxies */
    size_t ntrusted;
    int pp_out; /* an upstream wants PROXY headers: connections keep both ends */
    struct moat_stream_rt *streams; /* owned: conf->streams */
    size_t nstreams;
    struct moat_tls_tickets *tickets;  /* borrowed from the env (process-wide), for swaps */
    struct moat_store *store;          /* borrowed from the env: ACME certificates */
    struct moat_acme_challenges *acme; /* borrowed from the env: challenge answers; NULL when
                                          no site has tls acme */
    struct moat_guard *guard;          /* borrowed from the env: abuse protection; NULL in a
                                          check (nothing is served) */
    struct moat_cache *cache;          /* borrowed from the env: the HTTP cache; NULL in a
                                          check */
};

struct moat_snapshot_env {
    struct moat_tls_tickets *tickets; /* borrowed, process-wide; NULL = no tickets */
    const char *state_dir;            /* for the local CA */
    int quiet;                        /* no notes about the local CA (reloads) */
    int dry_run; /* `serve --check`: write nothing; say what the local CA would create */
    struct moat_store *store;          /* process-wide, borrowed: where ACME certificates are */
    struct moat_acme_challenges *acme; /* process-wide, borrowed: HTTP-01 and TLS-ALPN-01
                                          answers; NULL when no site has tls acme */
    struct moat_guard *guard;          /* process-wide, borrowed: the limits' table */
    struct moat_cache *cache;          /* process-wide, borrowed: the HTTP cache */
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

/* Carry over what `old` (the snapshot being replaced) learnt at run time into `s`, before `s`
 * is published: the health of upstream servers, matched by upstream name. */
void moat_snapshot_inherit(struct moat_snapshot *s, const struct moat_snapshot *old);

/*
 * Replace the certificates of `site` (one of s->sites) with `sets` (borrowed; at most one per
 * key type): a new TLS context is built with the site's policy (ALPN, tickets, session cache,
 * client certificates) and published through the SNI table, so new handshakes get the new
 * certificates, running connections keep theirs, and sessions of the old certificates do not
 * resume under the new ones. The main thread only, one swap at a time. Refuses what
 * moat_tls_ctx_new refuses; on failure the site keeps serving what it served.
 */
MOAT_MUST_USE moat_rc moat_snapshot_swap_certs(struct moat_snapshot *s, struct moat_site *site,
                                               struct moat_tls_certset *const *sets, size_t nsets,
                                               struct moat_err *err);

/*
 * Load every `tls acme` site's certificates from the store again and swap them in (the ACME
 * manager installed new ones): no reload, running connections keep theirs. A site still
 * without one keeps its local-CA certificate. The main thread only.
 */
MOAT_MUST_USE moat_rc moat_snapshot_acme_refresh(struct moat_snapshot *s, struct moat_err *err);

/* The soonest cert_renew_at of the sites; 0 when none wants renewing. */
time_t moat_snapshot_next_renewal(const struct moat_snapshot *s);
/* The same for the streams, whose certificates are renewed by a reload (a stream's SNI table is
 * its own, and a reload keeps its running connections). */
time_t moat_snapshot_next_stream_renewal(const struct moat_snapshot *s);

/*
 * Renew the certificates that are due at `now` through their sources (the local CA issues and
 * writes new ones) and swap them in with moat_snapshot_swap_certs: no reload, running
 * connections untouched. `state_dir` is the local CA's. The main thread only. A site that
 * fails keeps its certificate and is tried again at the next call; the first failure is
 * returned after all sites were tried, with the site in err.
 */
MOAT_MUST_USE moat_rc moat_snapshot_renew_certs(struct moat_snapshot *s, const char *state_dir,
                                                time_t now, struct moat_err *err);

/*
 * The site a request's authority names (port stripped by the caller, "[v6]" in brackets or
 * not): an exact name, a one-label wildcard, an address a site lists, else the "*" site.
 * NULL when no site serves that host: over HTTPS the caller answers 421 (RFC 9110 §15.5.20).
 */
struct moat_site *moat_snapshot_route(const struct moat_snapshot *s, const char *host, size_t len);
/* Whether `site` is served over HTTP/2 (its `http2`, else the top level's). */
int moat_snapshot_site_http2(const struct moat_snapshot *s, const struct moat_site *site);
/* Whether connections accepted on the listen address `spec` may speak HTTP/2. */
int moat_snapshot_listener_http2(const struct moat_snapshot *s, const char *spec);
/* The stream listening on `spec`, or NULL (a reload dropped it). */
const struct moat_stream_rt *moat_snapshot_stream_for(const struct moat_snapshot *s,
                                                      const char *spec);
/* The route of `st` for a client that asked for `sni` (NULL: none): an exact name, else a
 * one-label wildcard, else the default; NULL when there is none. */
const struct moat_stream_route_rt *moat_snapshot_stream_route(const struct moat_stream_rt *st,
                                                              const char *sni);
/* Whether connections to the listener `spec` start with a PROXY protocol header. */
int moat_snapshot_listener_pp(const struct moat_snapshot *s, const char *spec);

#endif
