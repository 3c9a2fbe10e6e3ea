/*
 * url.h: the URLs `moat get` and `moat trace` accept, parsed into what a connection needs (the
 * host for DNS, SNI and the certificate check, the port, the request-target) and the joining of
 * a redirect's Location onto the URL it came from.
 *
 * Pure: no I/O, no allocation. Strict where a lenient parser would send bytes the user did not
 * mean (spaces, control characters, credentials in the authority): refusals say what to type
 * instead.
 */
#ifndef MOAT_CLIENT_URL_H
#define MOAT_CLIENT_URL_H

#include "core/err.h"

#include <stddef.h>

#define MOAT_CLIENT_HOST_MAX 256    /* RFC 1035 §2.3.4: 253 characters plus room */
#define MOAT_CLIENT_TARGET_MAX 4096 /* request-target bytes, NUL excluded */

struct moat_client_url {
    int https;                           /* 1 for https://, 0 for http:// */
    char host[MOAT_CLIENT_HOST_MAX];     /* lower case; an IPv6 literal without its brackets */
    int host_ip;                         /* 0 (a name), 4 or 6 (an address literal) */
    unsigned port;                       /* 1..65535; the scheme's default when none was given */
    int port_given;                      /* the URL named a port */
    char target[MOAT_CLIENT_TARGET_MAX]; /* path and query, starts with '/'; no fragment */
};

/*
 * Parse `text`: "https://host[:port][/path][?query][#fragment]", "http://..." or, with no
 * scheme, an https URL ("example.com/x"). The host is a DNS name (letters, digits, '-', '_',
 * '.'), an IPv4 address or "[IPv6]"; it is lower-cased and a trailing dot dropped. The fragment
 * is dropped (it never goes on the wire, RFC 9110 §4.2.4). Refuses (MOAT_E_USAGE, with the
 * reason in err): other schemes, user:password@, an empty or malformed host, a port outside
 * 1..65535, spaces and control characters (the message says to write %20), a host or target
 * that does not fit (MOAT_E_LIMIT).
 */
MOAT_MUST_USE moat_rc moat_client_url_parse(const char *text, struct moat_client_url *out,
                                            struct moat_err *err);

/*
 * Resolve a redirect's Location (RFC 9110 §10.2.2, a URI reference per RFC 3986 §5) against
 * `base`: an absolute URL, a network-path ("//host/x"), an absolute path or a relative path
 * (dot segments removed). Refuses what moat_client_url_parse refuses.
 */
MOAT_MUST_USE moat_rc moat_client_url_join(const struct moat_client_url *base, const char *location,
                                           struct moat_client_url *out, struct moat_err *err);

/* "host", "host:port" or "[v6]:port": the Host field and what messages show; the port only when
 * it is not the scheme's default. Truncates to outlen; returns out. */
const char *moat_client_url_authority(const struct moat_client_url *u, char *out, size_t outlen);

/* The whole URL again, "https://host[:port]/target"; returns out. */
const char *moat_client_url_format(const struct moat_client_url *u, char *out, size_t outlen);

#endif
