/*
 * route.h: which site and which rules answer a request, decided from the request and the
 * connection alone (no I/O, no protocol): the host (Host or the absolute-form authority) picks
 * the site, which must be one this connection may speak for (else 421); a site's client_path
 * rules may refuse the request (403, with the reason); the `header` rules and a published CRL
 * for the path are looked up. Used by every protocol session (HTTP/1 today, HTTP/2 next).
 */
#ifndef MOAT_SERVE_ROUTE_H
#define MOAT_SERVE_ROUTE_H

#include "core/slice.h"

#include <openssl/ssl.h>

struct moat_snapshot;
struct moat_site;
struct moat_hdr_set;
struct moat_crlpub;

/* The connection as routing sees it. Everything borrowed. */
/* The last host name a connection's requests named and its site: most connections name one
 * host throughout, and the look-up (lower-casing, the name table) is then done once. Owned by
 * the connection, zeroed when it starts: the site is its snapshot's. */
struct moat_route_memo {
    struct moat_site *site; /* moat_snapshot_route's answer for host (may be NULL) */
    unsigned char len;      /* 0: empty */
    char host[63];          /* exactly as the request had it (longer names are not kept) */
};

struct moat_route_conn {
    const struct moat_snapshot *snap;
    struct moat_site *sni_site; /* the site whose certificate the handshake chose */
    SSL *ssl;                   /* NULL on the plain listener */
    unsigned long long id;      /* for log lines */
    const char *peer_text;
    struct moat_route_memo *memo; /* the connection's, or NULL */
};

enum moat_route_verdict {
    MOAT_ROUTE_SERVE = 0,   /* answer with the route's site */
    MOAT_ROUTE_MISDIRECTED, /* 421: this connection may not speak for that host (logged) */
    MOAT_ROUTE_FORBIDDEN,   /* 403: a client_path rule refuses the request (logged) */
    MOAT_ROUTE_BAD_PATH,    /* 400: the site has client_path rules and the path does not
                               normalise (e.g. "/../admin"), so no rule could be checked */
};

struct moat_route {
    struct moat_site *site;          /* never NULL: for a refusal, the site whose page it is */
    const struct moat_hdr_set *hdrs; /* the `header` rules for the path; NULL = site-wide */
    const struct moat_crlpub *crl;   /* a CRL published at the path, or NULL */
    const char *why;                 /* FORBIDDEN: the reason, until the next call on this
                                        thread */
};

/*
 * Route a request for `authority` (port included, may be empty for HTTP/1.0) and `raw_path`
 * (before '?', not decoded). Over HTTPS the site must be the handshake's site, a site whose
 * name the connection's certificate covers, or the "*" site, and not differ from the
 * handshake's site in client authentication (RFC 9110 §7.4, §15.5.20). The plain listener
 * serves any host (it redirects, and answers published CRLs).
 */
enum moat_route_verdict moat_route_pick(const struct moat_route_conn *rc, moat_slice authority,
                                        moat_slice raw_path, struct moat_route *out);

/* The host of an authority, without the port ("[::1]:8443" -> "[::1]"). */
moat_slice moat_route_host(moat_slice authority);

#endif
