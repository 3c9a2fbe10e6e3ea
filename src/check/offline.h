/*
 * offline.h: the facts a live check would find on a server, made without a connection from
 * what its configuration asks for: which versions, which cipher strings, which certificate
 * files, which HTTP header fields. The configuration readers (nginx.c, haproxy.c) say what the
 * file asks in these shared terms; this module lets this machine's OpenSSL 3 expand the
 * strings and apply its own limits (its minimum version, the security level, the suites a key
 * can use), reads the certificates and verifies them, so every reader gets the same library
 * behaviour and the same judgement.
 */
#ifndef MOAT_CHECK_OFFLINE_H
#define MOAT_CHECK_OFFLINE_H

#include "check/scan.h"
#include "core/err.h"

#include <stddef.h>

#define MOAT_CHECK_INTENT_CERTS 8

/* What one TLS listener of a configuration asks for. Strings are the caller's; NULL means the
 * library's default. */
struct moat_check_intent {
    char source[300]; /* "file:line" of the block or line */
    char host[256];   /* the name a client would ask for */
    unsigned port;
    unsigned versions;     /* 1u << enum moat_check_ver for each version the file enables */
    const char *ciphers;   /* OpenSSL's cipher string for TLS 1.2 and below */
    const char *suites13;  /* TLS 1.3 suites, "TLS_AES_128_GCM_SHA256:..." */
    const char *groups;    /* "X25519:P-256", OpenSSL's names */
    int server_order;      /* the server's suite order is enforced */
    int prioritize_chacha; /* except for a client that puts ChaCha20 first */
    /* certificate (chain) files, resolved; certs[0] is the one checked, all of them decide
     * which suites have a key to sign with */
    const char *certs[MOAT_CHECK_INTENT_CERTS];
    size_t ncerts;
    const char *no_cert;  /* why there is none, when ncerts is 0 */
    const char *dh_file;  /* DHE parameters in this file (PEM) */
    int dh_bits;          /* or a built-in group of this size; neither: no DHE suite */
    int tickets;          /* stateless tickets */
    int cache;            /* a session cache (ids, and TLS 1.3 stateful tickets) */
    unsigned early_bytes; /* 0-RTT accepted, this much of it; 0: none */
    int stapling;         /* an OCSP answer is stapled */
    int alpn_h2, alpn_http11;
    int http; /* an HTTP layer of the server answers (0: bytes go through to an origin, whose
               * answer cannot be told offline) */
    const char *hsts; /* the Strict-Transport-Security value */
    int nosniff, frame, csp, referrer;
    int compressed;               /* answers are compressed (BREACH) */
    enum moat_check_tri redirect; /* plain HTTP redirects to https:// */
};

/* Zeroes *in and sets what every server shares: TLS 1.2 and 1.3 off until the reader says
 * (versions 0), redirect unknown. */
void moat_check_intent_init(struct moat_check_intent *in);

/* The scan the intent gives (the caller's, moat_check_scan_free); cafile is extra trust for
 * the verification. NULL only when out of memory. */
struct moat_check_scan *moat_check_offline_scan(const struct moat_check_intent *in,
                                                const char *cafile);

/* A configuration file, whole (at most 4 MiB, a regular file, text: no NUL byte), into a new
 * NUL-terminated *text (the caller's to free). Errors name the file (and the line of a NUL). */
MOAT_MUST_USE moat_rc moat_check_offline_read(const char *path, char **text, size_t *len,
                                              struct moat_err *err);

/* A file name of a configuration as its server takes it: absolute as is, else under base. */
void moat_check_offline_path(const char *base, const char *name, char *out, size_t cap);

/* The key of a PEM file's first certificate. */
struct moat_check_leaf {
    char name[256]; /* its first DNS name (or CN); a wildcard's with "check" in place of "*" */
    int rsa_bits;   /* an RSA key's size; 0 for other kinds */
    int ec;         /* an EC key */
};

/* 0, or -1 when no certificate reads from path. */
int moat_check_offline_leaf(const char *path, struct moat_check_leaf *out);

/* The size of the first DH parameters in a PEM file; 0 when it holds none. */
int moat_check_offline_dh_bits(const char *path);

#endif
