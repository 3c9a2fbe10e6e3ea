/*
 * conn.c: DNS and TCP for the client, each step timed for the trace.
 *
 * The socket is non-blocking from the start so that every wait (the SYN's answer, the TLS
 * handshake, the response) is a poll bounded by the run's deadline: a server that never answers
 * ends as a timeout that names the step, never as a hang.
 */
#include "client/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct target {
    struct sockaddr_storage ss;
    socklen_t len;
};

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
    }
    snprintf(out, outlen, "%s", ip);
}

static void peer_text(const struct sockaddr_storage *ss, unsigned port, char *out, size_t outlen)
{
    char ip[64];
    addr_text(ss, ip, sizeof(ip));
    if (ss->ss_family == AF_INET6) {
        snprintf(out, outlen, "[%s]:%u", ip, port);
    } else {
        snprintf(out, outlen, "%s:%u", ip, port);
    }
}

static moat_rc fail(struct moat_client_hop *h, enum moat_client_cause c, struct moat_err *err,
                    const char *detail)
{
    h->cause = c;
    snprintf(h->detail, sizeof(h->detail), "%s", detail);
    return moat_err_set(err, c == MOAT_CC_TIMEOUT ? MOAT_E_LIMIT : MOAT_E_IO, __FILE__, __LINE__,
                        "%s", detail);
}

static int numeric(const char *host, unsigned port, struct target *t)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, ports, &hints, &ai) != 0 || ai == NULL) {
        return 0;
    }
    memcpy(&t->ss, ai->ai_addr, ai->ai_addrlen);
    t->len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 1;
}

static moat_rc resolve(struct moat_client_hop *h, const struct moat_client_opts *o,
                       struct target *ts, size_t *nt, struct moat_err *err)
{
    *nt = 0;
    double t0 = moat_trace_elapsed(&h->trace);
    const struct moat_client_url *u = &h->url;
    for (size_t i = 0; i < o->nresolve; i++) {
        const struct moat_client_resolve *r = &o->resolve[i];
        if (strcmp(r->host, u->host) == 0 && r->port == u->port) {
            if (!numeric(r->addr, u->port, &ts[0])) {
                char msg[400];
                snprintf(msg, sizeof(msg), "--resolve gives \"%s\", which is not an address",
                         r->addr);
                return fail(h, MOAT_CC_USAGE, err, msg);
            }
            *nt = 1;
            h->dns_from_resolve = 1;
            break;
        }
    }
    if (*nt == 0) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = u->host_ip ? AI_NUMERICHOST : 0;
        char ports[8];
        snprintf(ports, sizeof(ports), "%u", u->port);
        struct addrinfo *ai = NULL;
        int rc = getaddrinfo(u->host, ports, &hints, &ai);
        h->dns_ms = moat_trace_elapsed(&h->trace) - t0;
        if (rc != 0 || ai == NULL) {
            char msg[600];
            snprintf(msg, sizeof(msg), "\"%s\" could not be resolved: %s", u->host,
                     rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
            return fail(h, MOAT_CC_DNS, err, msg);
        }
        for (struct addrinfo *a = ai; a != NULL && *nt < MOAT_CLIENT_MAX_ADDRS; a = a->ai_next) {
            if (a->ai_addrlen > sizeof(ts[0].ss)) {
                continue;
            }
            memcpy(&ts[*nt].ss, a->ai_addr, a->ai_addrlen);
            ts[*nt].len = a->ai_addrlen;
            (*nt)++;
        }
        freeaddrinfo(ai);
    } else {
        h->dns_ms = moat_trace_elapsed(&h->trace) - t0;
    }
    for (size_t i = 0; i < *nt; i++) {
        addr_text(&ts[i].ss, h->addrs[i], sizeof(h->addrs[i]));
    }
    h->naddrs = *nt;
    if (*nt == 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "\"%s\" has no address", u->host);
        return fail(h, MOAT_CC_DNS, err, msg);
    }
    return MOAT_RC_OK;
}

moat_rc moat_client_conn_wait(int fd, int want_write, double deadline_ms)
{
    for (;;) {
        double left = deadline_ms - moat_trace_now_ms();
        if (left <= 0) {
            return moat_rc_of(MOAT_E_LIMIT);
        }
        struct pollfd p = {.fd = fd, .events = want_write ? POLLOUT : POLLIN};
        int r = poll(&p, 1, (int)(left + 1));
        if (r > 0) {
            return MOAT_RC_OK;
        }
        if (r < 0 && errno != EINTR) {
            return moat_rc_of(MOAT_E_IO);
        }
    }
}

/* One attempt. Returns 0 connected, else the errno (ETIMEDOUT for our deadline). */
static int try_connect(const struct target *t, double deadline_ms, int *fd_out)
{
    int fd = socket(t->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    int one = 1;
    /* The request goes out in one write; Nagle would only delay small TLS records. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int e = 0;
    if (connect(fd, (const struct sockaddr *)&t->ss, t->len) != 0) {
        e = errno;
        if (e == EINPROGRESS || e == EINTR) {
            moat_rc rc = moat_client_conn_wait(fd, 1, deadline_ms);
            if (rc.kind == MOAT_E_LIMIT) {
                e = ETIMEDOUT;
            } else {
                socklen_t l = sizeof(e);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0) {
                    e = errno;
                }
            }
        }
    }
    if (e != 0) {
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

moat_rc moat_client_conn_open(struct moat_client_hop *h, const struct moat_client_opts *o,
                              double deadline_ms, int *fd, struct moat_err *err)
{
    *fd = -1;
    struct target ts[MOAT_CLIENT_MAX_ADDRS];
    size_t nt = 0;
    h->stage = MOAT_STAGE_DNS;
    MOAT_TRY(resolve(h, o, ts, &nt, err));
    h->stage = MOAT_STAGE_TCP;
    int last = 0;
    char tried[600] = "";
    size_t tlen = 0;
    for (size_t i = 0; i < nt; i++) {
        peer_text(&ts[i].ss, h->url.port, h->peer, sizeof(h->peer));
        h->tcp_start_ms = moat_trace_elapsed(&h->trace);
        last = try_connect(&ts[i], deadline_ms, fd);
        h->tcp_ms = moat_trace_elapsed(&h->trace) - h->tcp_start_ms;
        if (last == 0) {
            h->tcp_ok = 1;
            return MOAT_RC_OK;
        }
        int n = snprintf(tried + tlen, sizeof(tried) - tlen, "%s%s (%s)", tlen ? ", " : "", h->peer,
                         last == ETIMEDOUT ? "no answer" : strerror(last));
        if (n > 0 && (size_t)n < sizeof(tried) - tlen) {
            tlen += (size_t)n;
        }
        if (last == ETIMEDOUT) {
            break; /* the deadline is for the whole run: no time left for the next address */
        }
        h->tcp_failed++;
    }
    char msg[900];
    if (last == ETIMEDOUT) {
        snprintf(msg, sizeof(msg),
                 "no answer to the TCP connection request (SYN) from %s within the timeout: "
                 "a firewall may be dropping packets, or the host is down",
                 h->peer);
        return fail(h, MOAT_CC_TIMEOUT, err, msg);
    }
    if (last == ECONNREFUSED) {
        snprintf(msg, sizeof(msg), "connection refused by %s: nothing listens on port %u%s%s",
                 nt > 1 ? "every address" : h->peer, h->url.port, nt > 1 ? ": " : "",
                 nt > 1 ? tried : "");
        return fail(h, MOAT_CC_REFUSED, err, msg);
    }
    snprintf(msg, sizeof(msg), "could not connect: %s", tried);
    return fail(h, MOAT_CC_UNREACHABLE, err, msg);
}
