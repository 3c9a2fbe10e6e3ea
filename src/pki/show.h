/*
 * show.h: certificates, chains and CSRs in plain words, for `moat cert show`, `moat csr show`
 * and `moat verify`.
 *
 * For each certificate: subject, names (SANs), issuer, serial, validity with the days left,
 * key type and size, signature algorithm, whether it is a CA (and how deep it may issue), key
 * usage and extended key usage in words, name constraints, and SHA-256/SHA-1 fingerprints. For
 * a chain, each link and whether it was signed by the next one.
 */
#ifndef MOAT_PKI_SHOW_H
#define MOAT_PKI_SHOW_H

#include "pki/chain.h"

#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

/* One certificate, each line starting with `indent` (may be ""), at time `now`. */
void moat_show_cert(FILE *out, X509 *x, time_t now, const char *indent);

/* Every certificate of a file as loaded (leaf first, then the rest in file order), numbered,
 * with how each link connects to the next. */
void moat_show_chain(FILE *out, const struct moat_chain *c, time_t now);

/* A signing request: subject, the names asked for, the key, and that its signature verified
 * (callers show only CSRs loaded with moat_csr_load, which checks it). */
void moat_show_csr(FILE *out, X509_REQ *req);

/* The subject CN (else the whole subject) for short mentions. Returns buf. */
const char *moat_show_short_name(X509 *x, char *buf, size_t n);

/* How far `t` is from `now` for people: "in 89 days", "3 days ago". Returns buf. */
const char *moat_show_span(const ASN1_TIME *t, time_t now, char *buf, size_t n);

#endif
