/*
 * source.h: where a site's certificates come from. A source loads a certificate set (parsed
 * once, checked once), says when it wants the set replaced, and for `moat serve --check` says
 * what loading would do without writing anything.
 *
 * Two sources today: `files` (a certificate file and its key, named in the configuration, run
 * through pki/'s start-up checks) and the local CA (zero-config HTTPS: moat's own CA issues the
 * certificate into the state folder and it is loaded from there). ACME plugs in as a third
 * implementation of the same ops. Sources are made and used on the main thread.
 */
#ifndef MOAT_CERT_SOURCE_H
#define MOAT_CERT_SOURCE_H

#include "tls/certset.h"
#include "core/err.h"

#include <stddef.h>
#include <time.h>

#include <openssl/x509_vfy.h>

struct moat_cert_source;

struct moat_cert_source_ops {
    const char *name; /* "files", "local CA": for messages */
    /* A new set (one reference for the caller), with its renew_at filled in. May write (the
     * local CA issues a certificate that is due). On failure *out is NULL and err says why. */
    moat_rc (*load)(struct moat_cert_source *src, struct moat_tls_certset **out,
                    struct moat_err *err);
    /* When a set this source made from a leaf valid [not_before, not_after] should be replaced;
     * 0 = never (the operator replaces the files). */
    time_t (*renew_at)(const struct moat_cert_source *src, time_t not_before, time_t not_after);
    /* For --check: the refusals load would give, and an info line for what load would create,
     * writing nothing at all. *out is the set load would serve when that is known without
     * writing (the files as they are), else NULL. */
    moat_rc (*describe)(struct moat_cert_source *src, struct moat_tls_certset **out,
                        struct moat_err *err);
    void (*free)(struct moat_cert_source *src);
};

/* The base every implementation embeds first. */
struct moat_cert_source {
    const struct moat_cert_source_ops *ops;
};

/* The ops, through the base (so callers never reach into ops). */
MOAT_MUST_USE moat_rc moat_cert_source_load(struct moat_cert_source *src,
                                            struct moat_tls_certset **out, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_cert_source_describe(struct moat_cert_source *src,
                                                struct moat_tls_certset **out,
                                                struct moat_err *err);
time_t moat_cert_source_renew_at(const struct moat_cert_source *src, time_t not_before,
                                 time_t not_after);
/* NULL does nothing. */
void moat_cert_source_free(struct moat_cert_source *src);

/* --- files: a certificate file (leaf, then its chain) and its private key --- */

/* Everything is borrowed and must outlive the source (the config snapshot's strings and the
 * stores of one snapshot build). */
struct moat_cert_files_opts {
    const char *cert_path;
    const char *key_path;
    const char *where;             /* config position of the `cert` directive, for messages */
    const char *site_where;        /* config position of the site, for the name warning */
    const char *const *site_names; /* the names the certificate should cover ("*" skipped) */
    size_t nsite_names;
    X509_STORE *trust;       /* the machine's roots for the "missing intermediate" check; may
                                be NULL */
    X509_STORE *anchor;      /* the site's cert_ca; may be NULL */
    const char *anchor_name; /* cert_ca file names for messages */
    int quiet;               /* no warnings (reloads) */
};

/*
 * A source that parses the two files once (pki/chain.h, pki/key.h) and runs the start-up checks
 * on the parsed objects: refused (MOAT_E_CERT, with the file and the fix) what clients will
 * certainly reject; warned (unless quiet) what depends on them, a key file others can read and
 * site names the certificate does not cover. renew_at is always 0; describe is load (it writes
 * nothing anyway). *out is freed with moat_cert_source_free.
 */
MOAT_MUST_USE moat_rc moat_cert_source_files_new(const struct moat_cert_files_opts *o,
                                                 struct moat_cert_source **out,
                                                 struct moat_err *err);

/* --- local CA: moat's own CA in <state>/ca issues <state>/certs/<name>.pem --- */

/* The local CA as the sources of one snapshot build share it: opened (or created) by the first
 * load, read without writing by the first describe, and its notes said once. */
struct moat_cert_local_ca;

/* state_dir is copied. quiet: no notes (reloads). NULL when out of memory. */
struct moat_cert_local_ca *moat_cert_local_ca_new(const char *state_dir, int quiet);
/* NULL does nothing. Sources made from it must be freed first. */
void moat_cert_local_ca_free(struct moat_cert_local_ca *lca);

/*
 * A source for the site names `names` (those other than "*"; localhost and its addresses when
 * none is left). load opens or creates the CA, issues the leaf when it is missing or due (a
 * third of its validity left) and loads it, stamping renew_at at two thirds of its validity.
 * describe writes nothing: it reads the CA folder as serve would use it, refuses what serve
 * would refuse and says what serve would create. `lca` is borrowed; names are copied.
 */
MOAT_MUST_USE moat_rc moat_cert_source_local_new(struct moat_cert_local_ca *lca,
                                                 const char *const *names, size_t n,
                                                 struct moat_cert_source **out,
                                                 struct moat_err *err);

#endif
