/*
 * url.c: parsing the client's URLs and joining redirect locations onto them.
 *
 * The parser is deliberately smaller than RFC 3986: a client that talks HTTP/1.1 over TCP needs
 * a scheme, a host, a port and a request-target, and every other form (userinfo, IP-literal
 * futures, spaces) is more likely a typing mistake than a wish, so it is refused with the fix.
 */
#include "client/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_target_byte(unsigned char c)
{
    /* RFC 3986 §2: visible ASCII; '%' escapes are passed through unchanged. UTF-8 bytes are
     * let through as well: servers percent-decode or refuse them, and the user sees which. */
    return (c > 0x20 && c < 0x7f) || c >= 0x80;
}

static int is_host_byte(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static moat_rc parse_port(const char *p, size_t n, unsigned *out, struct moat_err *err)
{
    if (n == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the URL has ':' but no port number after it");
    }
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            MOAT_FAIL(err, MOAT_E_USAGE, "the port \"%.*s\" is not a number", (int)n, p);
        }
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > 65535) {
            MOAT_FAIL(err, MOAT_E_USAGE, "the port %.*s is out of range (1 to 65535)", (int)n, p);
        }
    }
    if (v == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "port 0 cannot be connected to (use 1 to 65535)");
    }
    *out = (unsigned)v;
    return MOAT_RC_OK;
}

static moat_rc parse_host(const char *p, size_t n, struct moat_client_url *u, struct moat_err *err)
{
    if (n == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the URL has no host name");
    }
    if (p[0] == '[') {
        if (n < 3 || p[n - 1] != ']') {
            MOAT_FAIL(err, MOAT_E_USAGE, "an IPv6 address in a URL is written [2001:db8::1]");
        }
        if (n - 2 >= sizeof(u->host)) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "the IPv6 address is too long");
        }
        memcpy(u->host, p + 1, n - 2);
        u->host[n - 2] = '\0';
        unsigned char a6[16];
        if (inet_pton(AF_INET6, u->host, a6) != 1) {
            MOAT_FAIL(err, MOAT_E_USAGE, "\"%s\" is not an IPv6 address", u->host);
        }
        for (char *c = u->host; *c != '\0'; c++) {
            *c = (char)tolower((unsigned char)*c);
        }
        u->host_ip = 6;
        return MOAT_RC_OK;
    }
    /* RFC 1034 §3.1: a trailing dot marks an absolute name; certificates never carry it. */
    if (n > 1 && p[n - 1] == '.') {
        n--;
    }
    if (n >= sizeof(u->host) || n > 253) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "the host name is longer than 253 characters");
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_host_byte((unsigned char)p[i])) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "the host name \"%.*s\" has a character not allowed in "
                      "host names (%s)",
                      (int)n, p,
                      (unsigned char)p[i] <= 0x20 ? "a space or control character"
                                                  : "use letters, digits, '-' and '.'");
        }
        u->host[i] = (char)tolower((unsigned char)p[i]);
    }
    u->host[n] = '\0';
    if (u->host[0] == '.' || strstr(u->host, "..") != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the host name \"%s\" has an empty label", u->host);
    }
    unsigned char a4[4];
    u->host_ip = inet_pton(AF_INET, u->host, a4) == 1 ? 4 : 0;
    return MOAT_RC_OK;
}

static moat_rc set_target(struct moat_client_url *u, const char *p, size_t n, struct moat_err *err)
{
    size_t off = 0;
    if (n == 0 || p[0] != '/') {
        /* "https://host?q" has an empty path: the request-target is "/?q" (RFC 9112 §3.2.1). */
        u->target[off++] = '/';
    }
    if (off + n >= sizeof(u->target)) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "the URL's path is longer than %d bytes",
                  MOAT_CLIENT_TARGET_MAX - 1);
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_target_byte((unsigned char)p[i])) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "the URL's path has a space or control character at byte %zu (write a "
                      "space as %%20)",
                      i);
        }
    }
    memcpy(u->target + off, p, n);
    u->target[off + n] = '\0';
    return MOAT_RC_OK;
}

moat_rc moat_client_url_parse(const char *text, struct moat_client_url *out, struct moat_err *err)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || text[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE, "the URL is empty");
    }
    const char *p = text;
    const char *colon_slash = strstr(p, "://");
    out->https = 1;
    if (colon_slash != NULL && strcspn(p, "/?#") > (size_t)(colon_slash - p)) {
        size_t slen = (size_t)(colon_slash - p);
        if (slen == 5 && strncasecmp(p, "https", 5) == 0) {
            out->https = 1;
        } else if (slen == 4 && strncasecmp(p, "http", 4) == 0) {
            out->https = 0;
        } else {
            MOAT_FAIL(err, MOAT_E_USAGE, "moat speaks https:// and http:// only, not \"%.*s://\"",
                      (int)slen, p);
        }
        p = colon_slash + 3;
    }
    size_t alen = strcspn(p, "/?#");
    const char *auth = p;
    const char *rest = p + alen;
    if (memchr(auth, '@', alen) != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "user names and passwords in URLs are not supported (they "
                  "end up in logs): send them with -H 'Authorization: ...'");
    }
    for (size_t i = 0; i < alen; i++) {
        if ((unsigned char)auth[i] <= 0x20 || auth[i] == 0x7f) {
            MOAT_FAIL(err, MOAT_E_USAGE, "the URL's host has a space or control character");
        }
    }
    /* The port follows the last ':' unless that colon is inside an IPv6 literal. */
    size_t hlen = alen;
    const char *bracket = memchr(auth, ']', alen);
    const char *last_colon = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (auth[i] == ':') {
            last_colon = auth + i;
        }
    }
    if (auth[0] == '[' && bracket == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "an IPv6 address in a URL is written [2001:db8::1]");
    }
    if (auth[0] != '[' && last_colon != NULL && memchr(auth, ':', alen) != last_colon) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "an IPv6 address in a URL goes in brackets: "
                  "https://[2001:db8::1]:8443/");
    }
    if (last_colon != NULL && (bracket == NULL || last_colon > bracket)) {
        hlen = (size_t)(last_colon - auth);
        size_t plen = alen - hlen - 1;
        MOAT_TRY(parse_port(last_colon + 1, plen, &out->port, err));
        out->port_given = 1;
    } else if (bracket != NULL && (size_t)(bracket - auth) + 1 != alen) {
        MOAT_FAIL(err, MOAT_E_USAGE, "unexpected characters after the IPv6 address");
    }
    if (!out->port_given) {
        out->port = out->https ? 443 : 80;
    }
    MOAT_TRY(parse_host(auth, hlen, out, err));
    size_t tlen = strcspn(rest, "#");
    return set_target(out, rest, tlen, err);
}

/* RFC 3986 §5.2.4, on the path part of `t` (in place); the query is kept as it is. */
static void remove_dot_segments(char *t)
{
    char *q = strchr(t, '?');
    size_t plen = q ? (size_t)(q - t) : strlen(t);
    char out[MOAT_CLIENT_TARGET_MAX];
    size_t o = 0;
    size_t i = 0;
    while (i < plen) {
        /* t[i] is always '/' here: the path is absolute. */
        size_t seg_end = i + 1;
        while (seg_end < plen && t[seg_end] != '/') {
            seg_end++;
        }
        size_t slen = seg_end - i - 1;
        const char *seg = t + i + 1;
        int last = seg_end == plen;
        if (slen == 1 && seg[0] == '.') {
            if (last) {
                out[o++] = '/';
            }
        } else if (slen == 2 && seg[0] == '.' && seg[1] == '.') {
            /* Drop the last output segment and the '/' before it. */
            while (o > 0 && out[o - 1] != '/') {
                o--;
            }
            if (o > 0) {
                o--;
            }
            if (last) {
                out[o++] = '/';
            }
        } else {
            memcpy(out + o, t + i, slen + 1);
            o += slen + 1;
        }
        i = seg_end;
    }
    if (o == 0) {
        out[o++] = '/';
    }
    size_t qlen = q ? strlen(q) : 0;
    if (o + qlen < sizeof(out)) {
        memcpy(out + o, q ? q : "", qlen);
        o += qlen;
        memcpy(t, out, o);
        t[o] = '\0';
    }
}

moat_rc moat_client_url_join(const struct moat_client_url *base, const char *location,
                             struct moat_client_url *out, struct moat_err *err)
{
    if (location == NULL || location[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE, "the redirect has an empty Location");
    }
    const char *colon = strstr(location, "://");
    if (colon != NULL && strcspn(location, "/?#") > (size_t)(colon - location)) {
        /* RFC 3986 §5.2.2: dot segments go from absolute references too. */
        MOAT_TRY(moat_client_url_parse(location, out, err));
        remove_dot_segments(out->target);
        return MOAT_RC_OK;
    }
    if (location[0] == '/' && location[1] == '/') {
        char buf[MOAT_CLIENT_TARGET_MAX + 16];
        int n = snprintf(buf, sizeof(buf), "%s:%s", base->https ? "https" : "http", location);
        if (n < 0 || (size_t)n >= sizeof(buf)) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "the redirect's Location is too long");
        }
        MOAT_TRY(moat_client_url_parse(buf, out, err));
        remove_dot_segments(out->target);
        return MOAT_RC_OK;
    }
    *out = *base;
    char joined[MOAT_CLIENT_TARGET_MAX];
    size_t llen = strcspn(location, "#");
    if (location[0] == '/') {
        if (llen >= sizeof(joined)) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "the redirect's Location is too long");
        }
        memcpy(joined, location, llen);
        joined[llen] = '\0';
    } else if (location[0] == '?') {
        size_t plen = strcspn(base->target, "?");
        if (plen + llen >= sizeof(joined)) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "the redirect's Location is too long");
        }
        memcpy(joined, base->target, plen);
        memcpy(joined + plen, location, llen);
        joined[plen + llen] = '\0';
    } else {
        /* A relative path replaces the base's last segment (RFC 3986 §5.2.3). */
        size_t plen = strcspn(base->target, "?");
        while (plen > 0 && base->target[plen - 1] != '/') {
            plen--;
        }
        if (plen + llen >= sizeof(joined)) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "the redirect's Location is too long");
        }
        memcpy(joined, base->target, plen);
        memcpy(joined + plen, location, llen);
        joined[plen + llen] = '\0';
    }
    MOAT_TRY(set_target(out, joined, strlen(joined), err));
    remove_dot_segments(out->target);
    return MOAT_RC_OK;
}

const char *moat_client_url_authority(const struct moat_client_url *u, char *out, size_t outlen)
{
    unsigned dflt = u->https ? 443 : 80;
    const char *lb = u->host_ip == 6 ? "[" : "";
    const char *rb = u->host_ip == 6 ? "]" : "";
    if (u->port == dflt) {
        snprintf(out, outlen, "%s%s%s", lb, u->host, rb);
    } else {
        snprintf(out, outlen, "%s%s%s:%u", lb, u->host, rb, u->port);
    }
    return out;
}

const char *moat_client_url_format(const struct moat_client_url *u, char *out, size_t outlen)
{
    char auth[MOAT_CLIENT_HOST_MAX + 16];
    snprintf(out, outlen, "%s://%s%s", u->https ? "https" : "http",
             moat_client_url_authority(u, auth, sizeof(auth)), u->target);
    return out;
}
