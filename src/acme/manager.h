/*
 * manager.h: the server's ACME side. One thread that keeps every `tls acme` site's certificate
 * obtained and renewed, off the serving path: it orders when a site has none or is due (in the
 * CA's renewal window when the CA has ARI, RFC 9773; else a third of the lifetime left), retries
 * failures with capped exponential backoff and jitter, moves to the next CA after repeated
 * failures, logs each failure and, loudly, a certificate close to expiry that it cannot renew.
 *
 * It answers challenges through a table that the server's listeners read (challenges.h), and
 * it never touches a TLS context: it installs certificates in the store and bumps a
 * generation counter; the main thread, seeing it change, loads the new certificates and swaps
 * them in (no reload, no dropped connection). A certificate another moat installed in a
 * shared state folder bumps it too.
 */
#ifndef MOAT_ACME_MANAGER_H
#define MOAT_ACME_MANAGER_H

#include "acme/challenges.h"
#include "acme/dns.h"
#include "acme/lineage.h"
#include "state/store.h"

#include <stddef.h>
#include <time.h>

/* One certificate lineage to keep: its names, and which key kinds (bits of 1 << kind). */
struct moat_acme_job {
    const char *const *names;
    size_t nnames;
    unsigned kinds;
};

/* What the manager does; everything is copied by start and update. */
struct moat_acme_mgr_conf {
    const char *const *cas; /* directory URLs in order: the first, then fallbacks */
    size_t ncas;
    const char *ca_bundle;
    const char *const *emails;
    size_t nemails;
    int agree_tos;
    const char *eab_kid, *eab_hmac;
    const char *const *challenges; /* "http-01", "tls-alpn-01", in order of preference */
    size_t nchallenges;
    const char *preferred_chain;
    const char *profile;
    struct moat_acme_dns_opts dns; /* for dns-01 (server or hook set) */
    const char *resolver;          /* for the pre-flight checks; NULL: the system's */
    int no_preflight;              /* skip them */
    unsigned http_port;            /* moat's plain listener: the HTTP-01 pre-flight probes the
                                      names there; 0: no probe */
    const struct moat_acme_job *jobs;
    size_t njobs;
    unsigned retry_base_s; /* first pause after a failure; 0: 60 s */
    unsigned retry_max_s;  /* the cap; 0: 6 h */
};

struct moat_acme_mgr;

/* Start the thread. st and tab are borrowed and must outlive the manager. */
MOAT_MUST_USE moat_rc moat_acme_mgr_start(struct moat_store *st, struct moat_acme_challenges *tab,
                                          const struct moat_acme_mgr_conf *c,
                                          struct moat_acme_mgr **out, struct moat_err *err);
/* A new configuration (a reload), taken at the thread's next step; an order in progress
 * finishes first. */
MOAT_MUST_USE moat_rc moat_acme_mgr_update(struct moat_acme_mgr *m,
                                           const struct moat_acme_mgr_conf *c,
                                           struct moat_err *err);
/* Changes each time a certificate of a job was installed or found newer in the store. */
unsigned long moat_acme_mgr_generation(struct moat_acme_mgr *m);
/* What the thread knows of one certificate it keeps (a lineage: a site's names in one key
 * kind), as of its last step. */
#define MOAT_ACME_STATE_ERR 400
struct moat_acme_state {
    char name[256];    /* the lineage's first name */
    const char *kind;  /* static: "ecdsa", "rsa" */
    char ca[256];      /* the directory URL in use */
    time_t not_after;  /* of the installed certificate; 0: none yet */
    time_t renew_at;   /* when it is due (the CA's ARI window, else a third of its life left) */
    time_t next_try;   /* after a failure: not before; 0: no failure */
    unsigned failures; /* in a row */
    int ari;           /* the CA gave a renewal window (RFC 9773) */
    char last_error[MOAT_ACME_STATE_ERR]; /* the last attempt's failure; "" when it worked */
};
/* A copy of every lineage's state (*out malloc'ed, *n entries; none before the thread's first
 * step). Any thread. NULL m: none. */
MOAT_MUST_USE moat_rc moat_acme_mgr_states(struct moat_acme_mgr *m, struct moat_acme_state **out,
                                           size_t *n, struct moat_err *err);
/* Attempts since start that installed a certificate, and that failed. */
void moat_acme_mgr_counts(struct moat_acme_mgr *m, unsigned long *ok, unsigned long *failed);
/* Stop (a wait is cut short; a request in flight finishes within its timeout). NULL: nothing. */
void moat_acme_mgr_stop(struct moat_acme_mgr *m);

#endif
