/*
 * trust.h: put a CA certificate into the trust stores people's programs read, and take it out
 * again: the system store (curl, OpenSSL, Python, Go... on Debian) and the NSS databases of
 * Chromium and Firefox.
 *
 * System store: the certificate is copied as `moat-<name>-<fingerprint>.crt` into a folder
 * (Debian: /usr/local/share/ca-certificates) and `update-ca-certificates` rebuilds the bundle.
 * NSS: `certutil` (libnss3-tools) adds it as a trusted CA for TLS ("C,,") to
 * $HOME/.pki/nssdb (Chromium; created when missing) and to each Firefox profile's cert9.db
 * under $HOME/.mozilla/firefox (and the snap's ~/snap/firefox/common/.mozilla/firefox).
 * Every location can be given instead, so tests use a temporary HOME and a temporary folder.
 */
#ifndef MOAT_PKI_TRUST_H
#define MOAT_PKI_TRUST_H

#include "core/err.h"

#include <stddef.h>
#include <stdio.h>

#include <openssl/x509.h>

#define MOAT_TRUST_SYSTEM_DIR "/usr/local/share/ca-certificates"
#define MOAT_TRUST_UPDATE_CMD "update-ca-certificates"

/* Where to act. Zeroed, with system and nss set, means the defaults. Strings borrowed. */
struct moat_trust_opts {
    int system;               /* act on the system store */
    int nss;                  /* act on NSS databases */
    const char *system_dir;   /* NULL: MOAT_TRUST_SYSTEM_DIR */
    const char *update_cmd;   /* NULL: MOAT_TRUST_UPDATE_CMD; "" or "none": run nothing. Split
                               * on spaces, run without a shell */
    const char *home;         /* NULL: $HOME */
    const char *const *nssdb; /* NSS database folders to use instead of searching home */
    size_t nnssdb;
    const char *certutil; /* NULL: "certutil" from PATH */
};

/*
 * Install `ca` (must be a CA certificate: CA:TRUE) into the chosen stores; what was done, store
 * by store, is written to `log` (may be NULL). Installing what is already there changes nothing
 * and says so. A store that fails (no certutil, a folder not writable: "run as root") fails the
 * call after the other stores were tried, naming each.
 */
MOAT_MUST_USE moat_rc moat_trust_install(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                                         struct moat_err *err);

/* Remove every copy of `ca` from the chosen stores (files holding exactly this certificate,
 * NSS entries of it under any nickname), then rebuild the system bundle. Absent is not an
 * error: it says so in `log`. */
MOAT_MUST_USE moat_rc moat_trust_uninstall(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                                           struct moat_err *err);

/*
 * Write to `out` the CAs of the chosen stores: the certificate files of the system folder and
 * the trusted CAs of each NSS database, each marked "*" when it is `ca` (may be NULL). *found
 * (may be NULL) counts the stores where `ca` is.
 */
MOAT_MUST_USE moat_rc moat_trust_list(X509 *ca, const struct moat_trust_opts *o, FILE *out,
                                      int *found, struct moat_err *err);

/* The NSS nickname moat gives `ca`: "<CN> (moat <first 8 hex of SHA-256>)". Returns buf. */
const char *moat_trust_nickname(X509 *ca, char *buf, size_t n);

#endif
