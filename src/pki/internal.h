/*
 * internal.h: helpers shared by pki's files (show.c, validate.c, trust.c) and nobody else:
 * how certificates' names, times and fingerprints are written for people.
 */
#ifndef MOAT_PKI_INTERNAL_H
#define MOAT_PKI_INTERNAL_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* "CN = R3, O = Let's Encrypt, C = US" (RFC 2253 order reversed for reading, UTF-8 kept);
 * "(empty name)" when empty. Returns buf. */
const char *moat_pki__name_str(const X509_NAME *nm, char *buf, size_t n);

/* "2025-03-01 12:00 UTC", or "(unreadable date)". Returns buf. */
const char *moat_pki__time_str(const ASN1_TIME *t, char *buf, size_t n);

/* How far `t` is from `now`: "in 89 days", "3 days ago", "less than a day from now"; rounded
 * to the nearest day. Returns buf. */
const char *moat_pki__span_str(const ASN1_TIME *t, time_t now, char *buf, size_t n);

/* The digest `md` of the DER certificate as "AB:CD:...", or "" on failure. Returns buf. */
const char *moat_pki__fingerprint(X509 *x, const EVP_MD *md, char *buf, size_t n);

/* The subjectAltName entries as "DNS:a, IP:b", or "(none)". Returns buf. */
const char *moat_pki__san_str(X509 *x, char *buf, size_t n);

/* The subject CN, else the whole subject, for short mentions. Returns buf. */
const char *moat_pki__short_name(X509 *x, char *buf, size_t n);

#endif
