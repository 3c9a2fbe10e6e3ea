/*
 * sock.c: address parsing and listeners.
 */
#include "core/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_port(const char *s, int *port)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > 65535 || s[0] == '+' ||
        s[0] == '-') {
        return 0;
    }
    *port = (int)v;
    return 1;
}

static void fill4(struct moat_addr *a, const char *ip, int port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    memset(a, 0, sizeof(*a));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    a->len = sizeof(*sin);
    a->port = port;
    snprintf(a->text, sizeof(a->text), "%s:%d", ip, port);
}

static void fill6(struct moat_addr *a, const char *ip, int port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    memset(a, 0, sizeof(*a));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    a->len = sizeof(*sin6);
    a->port = port;
    snprintf(a->text, sizeof(a->text), "[%s]:%d", ip, port);
}

moat_rc moat_addr_resolve(const char *spec, struct moat_addr *out, size_t max, size_t *n,
                          struct moat_err *err)
{
    char host[64];
    const char *colon;
    *n = 0;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host)) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "listen address \"%s\" is not valid: write an IPv6 address as [::1]:8443",
                      spec);
        }
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host)) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "listen address \"%s\" has no port: write host:port, e.g. 127.0.0.1:8443",
                      spec);
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        if (strchr(host, ':') != NULL) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "listen address \"%s\" is ambiguous: put IPv6 addresses in brackets, "
                      "e.g. [::1]:8443",
                      spec);
        }
    }
    int port;
    if (!parse_port(colon + 1, &port)) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "listen address \"%s\": port must be a number from 1 to 65535", spec);
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (max < 2) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "address list too small");
    }
    if (host[0] == '\0') {
        fill6(&out[(*n)++], "::", port); /* dual-stack where the system allows */
    } else if (strcmp(host, "localhost") == 0) {
        fill4(&out[(*n)++], "127.0.0.1", port);
        fill6(&out[(*n)++], "::1", port);
    } else if (inet_pton(AF_INET, host, &a4) == 1) {
        fill4(&out[(*n)++], host, port);
    } else if (inet_pton(AF_INET6, host, &a6) == 1) {
        fill6(&out[(*n)++], host, port);
    } else {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "listen address \"%s\": \"%s\" is not an IP address (use an address this "
                  "machine owns, \"localhost\", or \":%d\" for all)",
                  spec, host, port);
    }
    return MOAT_RC_OK;
}

void moat_sock_defer_accept(int fd, int seconds)
{
    (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof(seconds));
}

moat_rc moat_sock_listen(const struct moat_addr *a, int backlog, int *fd_out, struct moat_err *err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create a socket for %s", a->text);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int e = errno;
        close(fd);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "SO_REUSEPORT on %s", a->text);
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        int v6only = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ? 0 : 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    /* Responses go out as whole records we coalesce ourselves: Nagle only adds latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        int e = errno;
        close(fd);
        const char *hint = e == EADDRINUSE      ? " (another process listens there: stop it or "
                                                  "choose another port)"
                           : e == EACCES        ? " (ports below 1024 need root or "
                                                  "CAP_NET_BIND_SERVICE)"
                           : e == EADDRNOTAVAIL ? " (this machine does not have that address)"
                                                : "";
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot listen on %s%s", a->text,
                            hint);
    }
    if (listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "listen on %s", a->text);
    }
    *fd_out = fd;
    return MOAT_RC_OK;
}

void moat_sock_peer_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)outlen);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)outlen);
    } else {
        snprintf(out, outlen, "-");
    }
}

void moat_sock_endpoint(const struct sockaddr_storage *ss, char *text, size_t cap, uint16_t *port)
{
    moat_sock_peer_text(ss, text, cap);
    *port = ss->ss_family == AF_INET    ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
            : ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                        : 0;
}

int moat_sock_addr_of(const char *text, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        return 1;
    }
    if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        return 1;
    }
    return 0;
}

void moat_sock_reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}
