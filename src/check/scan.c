/*
 * scan.c: see scan.h. Two phases of jobs on a few threads: the first learns which versions the
 * server takes (and runs the strict client and the real handshakes beside them); the second,
 * knowing the versions, enumerates suites, groups and signature schemes and tries the options
 * (compression, fallback, heartbeat). Each job writes only its own fields of the scan, so the
 * one lock is the connection budget's.
 *
 * Enumeration is by elimination: offer everything, note what the server picks, offer the rest
 * again, until it refuses. One connection per value the server takes, plus one.
 */
#include "check/scan.h"

#include "check/certfacts.h"
#include "check/hello.h"
#include "check/suites.h"
#include "client/dns.h"
#include "client/url.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void moat_check_opts_init(struct moat_check_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 5000;
    o->deadline_ms = 60000;
    o->parallel = 8;
    o->rate = 200;
    o->max_connections = 800;
    o->http_port = 80;
}

/* ---- the connection budget ---- */

struct ctx {
    const struct moat_check_opts *o;
    struct moat_check_scan *s;
    struct sockaddr_storage sa;
    socklen_t salen;
    char ip[64]; /* the address alone, for the strict client's --resolve */
    double t0, deadline;
    pthread_mutex_t mu;
    double next_ms; /* the rate: no connection before this */
    unsigned used;
    int truncated;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One more connection within the bounds, or -1 (the scan is then marked truncated). */
static int dial(struct ctx *c)
{
    pthread_mutex_lock(&c->mu);
    double t = now_ms();
    if (c->used >= c->o->max_connections || t >= c->deadline) {
        c->truncated = 1;
        pthread_mutex_unlock(&c->mu);
        return -1;
    }
    c->used++;
    double at = c->next_ms > t ? c->next_ms : t;
    c->next_ms = at + 1000.0 / (c->o->rate > 0 ? c->o->rate : 1);
    pthread_mutex_unlock(&c->mu);
    if (at > t) {
        double d = at - t;
        struct timespec ts = {(time_t)(d / 1e3),
                              (long)((d - (double)(time_t)(d / 1e3) * 1e3) * 1e6)};
        nanosleep(&ts, NULL);
    }
    int fd = socket(c->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&c->sa, c->salen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int e = 0;
    socklen_t el = sizeof(e);
    if (poll(&p, 1, (int)c->o->timeout_ms) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n, unsigned timeout_ms)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, (int)timeout_ms) != 1) {
                return -1;
            }
            continue;
        }
        return -1;
    }
    return 0;
}

/* Outcomes of a raw probe besides the reader's kinds. */
#define P_CLOSED (-1)  /* the server closed or reset without a word */
#define P_TIMEOUT (-2) /* nothing within the timeout */
#define P_NOCONN (-3)  /* no connection (refused, or the budget is spent) */

#define RAW_MAX (64 * 1024)

/* Send the hello of spec (or, with sslv2, an SSLv2 one) and read the answer into r. With
 * heartbleed, after a whole TLS 1.2-or-older flight, send the empty heartbeat and note in
 * *bled whether it was answered. */
static int probe(struct ctx *c, const struct moat_hello_spec *spec, int sslv2, int heartbleed,
                 struct moat_hello_reply *r, int *bled)
{
    uint8_t hello[MOAT_HELLO_MAX];
    size_t hl = sslv2 ? moat_hello_build_sslv2(hello, sizeof(hello))
                      : moat_hello_build(spec, hello, sizeof(hello));
    memset(r, 0, sizeof(*r));
    if (hl == 0) {
        return P_NOCONN;
    }
    int fd = dial(c);
    if (fd < 0) {
        return P_NOCONN;
    }
    uint8_t *buf = malloc(RAW_MAX);
    if (buf == NULL || send_all(fd, hello, hl, c->o->timeout_ms) != 0) {
        free(buf);
        close(fd);
        return P_CLOSED;
    }
    size_t n = 0;
    int out = P_TIMEOUT;
    double until = now_ms() + c->o->timeout_ms;
    while (1) {
        double left = until - now_ms();
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, (int)left + 1) != 1) {
            break;
        }
        ssize_t got = recv(fd, buf + n, RAW_MAX - n, 0);
        if (got <= 0) {
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            out = P_CLOSED;
            break;
        }
        n += (size_t)got;
        uint16_t offered = sslv2 ? 0x0002 : spec->version;
        enum moat_hello_kind k = moat_hello_read(buf, n, offered, sslv2 ? NULL : spec->suites,
                                                 sslv2 ? 0 : spec->nsuites, r);
        if (k != MOAT_HELLO_MORE) {
            out = (int)k;
            break;
        }
        if (n == RAW_MAX) {
            out = MOAT_HELLO_BAD;
            break;
        }
    }
    if (heartbleed && bled != NULL && out == MOAT_HELLO_SERVER) {
        uint8_t hb[16];
        size_t hbl = moat_hello_build_heartbleed(r->version, hb, sizeof(hb));
        *bled = 0;
        if (send_all(fd, hb, hbl, c->o->timeout_ms) == 0) {
            size_t m = 0;
            double hb_until = now_ms() + (c->o->timeout_ms < 2000 ? c->o->timeout_ms : 2000);
            while (m < RAW_MAX) {
                double left = hb_until - now_ms();
                struct pollfd pf = {fd, POLLIN, 0};
                if (left <= 0 || poll(&pf, 1, (int)left + 1) != 1) {
                    break;
                }
                ssize_t got = recv(fd, buf + m, RAW_MAX - m, 0);
                if (got <= 0) {
                    break;
                }
                m += (size_t)got;
                if (moat_hello_heartbeat_answer(buf, m) > 0) {
                    *bled = 1;
                    break;
                }
            }
        }
    }
    free(buf);
    close(fd);
    return out;
}

/* ---- offers ---- */

struct offer {
    uint16_t suites[160];
    size_t nsuites;
};

enum suite_filter {
    F_ALL = 0,
    F_ECDHE,
    F_DHE,
    F_SIGNED /* ECDHE and DHE: suites with a signed ServerKeyExchange */
};

static void offer_for(enum moat_check_ver v, enum suite_filter f, struct offer *of)
{
    size_t n;
    const struct moat_check_suite *t = moat_check_suites(&n);
    of->nsuites = 0;
    for (size_t i = 0; i < n && of->nsuites < sizeof(of->suites) / sizeof(of->suites[0]); i++) {
        if ((v == MOAT_VER_TLS13) != (t[i].tls13 != 0)) {
            continue;
        }
        int dhe = t[i].kex == MOAT_KEX_DHE, ecdhe = t[i].kex == MOAT_KEX_ECDHE;
        if ((f == F_ECDHE && !ecdhe) || (f == F_DHE && !dhe) || (f == F_SIGNED && !dhe && !ecdhe)) {
            continue;
        }
        of->suites[of->nsuites++] = t[i].code;
    }
}

static uint16_t all_groups[MOAT_CHECK_MAX_GROUPS], all_sigalgs[MOAT_CHECK_MAX_SIGALGS];
static size_t n_all_groups, n_all_sigalgs;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void)
{
    size_t n;
    const struct moat_check_named *g = moat_check_groups(&n);
    for (size_t i = 0; i < n && i < MOAT_CHECK_MAX_GROUPS; i++) {
        all_groups[n_all_groups++] = g[i].code;
    }
    const struct moat_check_named *a = moat_check_sigalgs(&n);
    for (size_t i = 0; i < n && i < MOAT_CHECK_MAX_SIGALGS; i++) {
        all_sigalgs[n_all_sigalgs++] = a[i].code;
    }
}

static struct moat_hello_spec spec_for(struct ctx *c, enum moat_check_ver v, const struct offer *of)
{
    struct moat_hello_spec sp = {0};
    sp.version = moat_check_ver_wire(v);
    sp.suites = of->suites;
    sp.nsuites = of->nsuites;
    sp.groups = all_groups;
    sp.ngroups = n_all_groups;
    sp.sigalgs = all_sigalgs;
    sp.nsigalgs = n_all_sigalgs;
    sp.sni = c->s->host;
    sp.x25519_share = v == MOAT_VER_TLS13;
    sp.heartbeat = v != MOAT_VER_TLS13; /* so an answer can say it has it (RFC 6520 §2) */
    sp.no_extensions = v == MOAT_VER_SSL3;
    return sp;
}

static void remove16(uint16_t *a, size_t *n, uint16_t v)
{
    for (size_t i = 0; i < *n; i++) {
        if (a[i] == v) {
            memmove(a + i, a + i + 1, (*n - i - 1) * sizeof(*a));
            (*n)--;
            return;
        }
    }
}

/* The highest version at or below 1.2 the server takes, or -1. */
static int best_legacy(const struct moat_check_scan *s)
{
    for (int v = MOAT_VER_TLS12; v >= MOAT_VER_SSL3; v--) {
        if (s->versions[v] == MOAT_YES) {
            return v;
        }
    }
    return -1;
}

/* ---- phase 1: versions ---- */

struct job {
    struct ctx *c;
    void (*fn)(struct ctx *c, int arg);
    int arg;
};

static void job_version(struct ctx *c, int v)
{
    struct moat_check_scan *s = c->s;
    if (v < 0 || v >= MOAT_VER_COUNT) {
        return;
    }
    struct moat_hello_reply r;
    int k;
    if (v == MOAT_VER_SSL2) {
        k = probe(c, NULL, 1, 0, &r, NULL);
        s->versions[v] = k == MOAT_HELLO_SSLV2             ? MOAT_YES
                         : k == P_TIMEOUT || k == P_NOCONN ? MOAT_UNKNOWN
                                                           : MOAT_NO;
        return;
    }
    struct offer of;
    offer_for((enum moat_check_ver)v, F_ALL, &of);
    struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)v, &of);
    k = probe(c, &sp, 0, 0, &r, NULL);
    uint16_t want = moat_check_ver_wire((enum moat_check_ver)v);
    if ((k == MOAT_HELLO_SERVER || k == MOAT_HELLO_HRR) && r.version == want) {
        s->versions[v] = MOAT_YES;
        if (v == MOAT_VER_TLS12) {
            s->secure_reneg = r.ext_reneg ? MOAT_YES : MOAT_NO;
            s->ems = r.ext_ems ? MOAT_YES : MOAT_NO;
        }
        if (v < MOAT_VER_TLS13 && r.ext_heartbeat) {
            pthread_mutex_lock(&c->mu); /* the version jobs run side by side */
            s->heartbeat = MOAT_YES;
            pthread_mutex_unlock(&c->mu);
        }
    } else if (k == P_TIMEOUT || k == P_NOCONN) {
        s->versions[v] = MOAT_UNKNOWN;
    } else {
        s->versions[v] = MOAT_NO; /* an alert, a close, or a lower version chosen */
    }
}

/* ---- phase 2: enumerations and options ---- */

static void job_suites(struct ctx *c, int v)
{
    struct moat_check_scan *s = c->s;
    if (v <= MOAT_VER_SSL2 || v >= MOAT_VER_COUNT || s->versions[v] != MOAT_YES) {
        return;
    }
    struct offer of;
    offer_for((enum moat_check_ver)v, F_ALL, &of);
    uint16_t want = moat_check_ver_wire((enum moat_check_ver)v);
    while (of.nsuites > 0 && s->nsuites[v] < MOAT_CHECK_MAX_SUITES) {
        struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)v, &of);
        struct moat_hello_reply r;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        if ((k != MOAT_HELLO_SERVER && k != MOAT_HELLO_HRR) || r.version != want) {
            break;
        }
        s->suites[v][s->nsuites[v]++] = r.suite;
        remove16(of.suites, &of.nsuites, r.suite);
        if (r.dh_bits > 0) {
            pthread_mutex_lock(&c->mu); /* several jobs write it: the smallest wins */
            if (s->dh_bits == 0 || r.dh_bits < s->dh_bits) {
                s->dh_bits = r.dh_bits;
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
    s->server_order[v] = MOAT_UNKNOWN;
    if (s->nsuites[v] >= 2) {
        /* The server's first and a later one, offered the other way round. The later one is
         * not a ChaCha20 suite where there is a choice: a server that lets a client's ChaCha20
         * preference win (for clients without AES hardware) still enforces its order. */
        size_t lo = s->nsuites[v] - 1;
        while (lo > 1 && moat_check_suite_chacha(s->suites[v][lo])) {
            lo--;
        }
        if (moat_check_suite_chacha(s->suites[v][lo])) {
            lo = s->nsuites[v] - 1;
        }
        struct offer two = {{s->suites[v][lo], s->suites[v][0]}, 2};
        struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)v, &two);
        struct moat_hello_reply r;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        if (k == MOAT_HELLO_SERVER || k == MOAT_HELLO_HRR) {
            s->server_order[v] = r.suite == s->suites[v][0] ? MOAT_YES : MOAT_NO;
        }
    }
}

static void job_groups13(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    if (s->versions[MOAT_VER_TLS13] != MOAT_YES) {
        return;
    }
    struct offer of;
    offer_for(MOAT_VER_TLS13, F_ALL, &of);
    uint16_t groups[MOAT_CHECK_MAX_GROUPS];
    size_t ng = n_all_groups;
    memcpy(groups, all_groups, sizeof(groups));
    while (ng > 0 && s->ngroups13 < MOAT_CHECK_MAX_GROUPS) {
        struct moat_hello_spec sp = spec_for(c, MOAT_VER_TLS13, &of);
        sp.groups = groups;
        sp.ngroups = ng;
        sp.x25519_share = 0; /* an empty key_share: the HelloRetryRequest names the group */
        struct moat_hello_reply r;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        if ((k != MOAT_HELLO_SERVER && k != MOAT_HELLO_HRR) || r.group == 0) {
            break;
        }
        s->groups13[s->ngroups13++] = r.group;
        size_t before = ng;
        remove16(groups, &ng, r.group);
        if (ng == before) {
            break; /* a group we did not offer: stop rather than loop */
        }
    }
}

static void job_groups12(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    int v = best_legacy(s);
    if (v < MOAT_VER_TLS10) {
        return;
    }
    struct offer of;
    offer_for((enum moat_check_ver)v, F_ECDHE, &of);
    uint16_t groups[MOAT_CHECK_MAX_GROUPS];
    size_t ng = 0;
    for (size_t i = 0; i < n_all_groups; i++) {
        if (all_groups[i] < 0x0100) { /* curves only: ffdhe is not negotiated this way */
            groups[ng++] = all_groups[i];
        }
    }
    while (ng > 0 && s->ngroups12 < MOAT_CHECK_MAX_GROUPS) {
        struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)v, &of);
        sp.groups = groups;
        sp.ngroups = ng;
        struct moat_hello_reply r;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        if (k != MOAT_HELLO_SERVER || r.group == 0) {
            break;
        }
        s->groups12[s->ngroups12++] = r.group;
        size_t before = ng;
        remove16(groups, &ng, r.group);
        if (ng == before) {
            break;
        }
    }
}

static void job_sigalgs12(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    if (s->versions[MOAT_VER_TLS12] != MOAT_YES) {
        return;
    }
    struct offer of;
    offer_for(MOAT_VER_TLS12, F_SIGNED, &of);
    uint16_t algs[MOAT_CHECK_MAX_SIGALGS];
    size_t na = n_all_sigalgs;
    memcpy(algs, all_sigalgs, sizeof(algs));
    while (na > 0 && s->nsigalgs12 < MOAT_CHECK_MAX_SIGALGS) {
        struct moat_hello_spec sp = spec_for(c, MOAT_VER_TLS12, &of);
        sp.sigalgs = algs;
        sp.nsigalgs = na;
        struct moat_hello_reply r;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        if (k != MOAT_HELLO_SERVER || r.ske_sigalg == 0) {
            break;
        }
        s->sigalgs12[s->nsigalgs12++] = r.ske_sigalg;
        size_t before = na;
        remove16(algs, &na, r.ske_sigalg);
        if (na == before) {
            break;
        }
    }
}

static void job_options(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    int v = best_legacy(s);
    struct moat_hello_reply r;
    if (v >= MOAT_VER_SSL3) {
        struct offer of;
        offer_for((enum moat_check_ver)v, F_ALL, &of);
        struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)v, &of);
        sp.deflate = 1;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        s->compression =
            k == MOAT_HELLO_SERVER ? (r.compression == 1 ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
        if (s->heartbeat == MOAT_YES) {
            int bled = 0;
            sp.deflate = 0;
            sp.heartbeat = 1;
            k = probe(c, &sp, 0, 1, &r, &bled);
            s->heartbleed = k == MOAT_HELLO_SERVER ? (bled ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
        }
    }
    /* TLS_FALLBACK_SCSV: a hello below the server's best version, saying it is a fallback, must
     * be refused with inappropriate_fallback (RFC 7507 §3). */
    int top = -1, below = -1;
    for (int i = MOAT_VER_TLS13; i >= MOAT_VER_TLS10; i--) {
        if (s->versions[i] == MOAT_YES) {
            if (top < 0) {
                top = i;
            } else if (below < 0) {
                below = i;
            }
        }
    }
    if (below >= 0) {
        struct offer of;
        offer_for((enum moat_check_ver)below, F_ALL, &of);
        struct moat_hello_spec sp = spec_for(c, (enum moat_check_ver)below, &of);
        sp.fallback_scsv = 1;
        int k = probe(c, &sp, 0, 0, &r, NULL);
        s->fallback_scsv = k == MOAT_HELLO_ALERT && r.alert_desc == 86 ? MOAT_YES
                           : k == MOAT_HELLO_SERVER                    ? MOAT_NO
                                                                       : MOAT_UNKNOWN;
    }
}

/* ---- real handshakes (OpenSSL) ---- */

static SSL_CTX *client_ctx(int min, int max)
{
    SSL_CTX *x = SSL_CTX_new(TLS_client_method());
    if (x == NULL) {
        return NULL;
    }
    /* Facts, not trust: see weak chains and versions as they are (verification is get's). */
    SSL_CTX_set_security_level(x, 0);
    SSL_CTX_set_min_proto_version(x, min);
    SSL_CTX_set_max_proto_version(x, max);
    SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    return x;
}

/* A handshake on a blocking socket with a timeout; NULL when it failed. */
static SSL *handshake(struct ctx *c, SSL_CTX *x, const char *alpn, SSL_SESSION *sess, int ocsp)
{
    int fd = dial(c);
    if (fd < 0) {
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {(time_t)(c->o->timeout_ms / 1000), (long)(c->o->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL *ssl = SSL_new(x);
    if (ssl == NULL) {
        close(fd);
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    unsigned char ipb[16];
    if (inet_pton(AF_INET, c->s->host, ipb) != 1 && inet_pton(AF_INET6, c->s->host, ipb) != 1) {
        SSL_set_tlsext_host_name(ssl, c->s->host); /* no SNI for an address (RFC 6066 §3) */
    }
    if (alpn != NULL) {
        unsigned char w[64];
        size_t l = strlen(alpn);
        if (l < sizeof(w) - 1) {
            w[0] = (unsigned char)l;
            memcpy(w + 1, alpn, l);
            SSL_set_alpn_protos(ssl, w, (unsigned)l + 1);
        }
    }
    if (sess != NULL) {
        SSL_set_session(ssl, sess);
    }
    if (ocsp) {
        SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
    }
    if (SSL_connect(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void hangup(SSL *ssl)
{
    if (ssl == NULL) {
        return;
    }
    int fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
}

/* Ask for "/" and read the answer (up to 64 KiB, within the timeout), so TLS 1.3 tickets
 * (sent after the handshake) arrive, and so the server ends the connection as after a real
 * visit: a server that closes an idle connection without its close_notify drops the session
 * from its cache (OpenSSL's SSL_free does), and a TLS 1.2 session id would look unresumable.
 * GET, not HEAD: openssl s_server -www answers GET only. Returns the session to resume (the
 * caller's), or NULL. */
static SSL_SESSION *take_session(struct ctx *c, SSL *ssl)
{
    char req[400];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     c->s->host);
    char buf[4096];
    if (SSL_write(ssl, req, n) > 0) {
        double until = now_ms() + c->o->timeout_ms;
        size_t total = 0;
        int got;
        while (total < 64 * 1024 && now_ms() < until &&
               (got = SSL_read(ssl, buf, sizeof(buf))) > 0) {
            total += (size_t)got;
        }
    }
    ERR_clear_error();
    return SSL_get1_session(ssl);
}

static enum moat_check_tri resumes(struct ctx *c, int ver, int ticket, uint32_t *early)
{
    SSL_CTX *x = client_ctx(ver, ver);
    if (x == NULL) {
        return MOAT_UNKNOWN;
    }
    if (!ticket) {
        SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
    }
    enum moat_check_tri out = MOAT_UNKNOWN;
    SSL *a = handshake(c, x, NULL, NULL, 0);
    if (a != NULL) {
        SSL_SESSION *sess = take_session(c, a);
        hangup(a);
        if (sess != NULL && (ver == TLS1_3_VERSION || ticket || SSL_SESSION_get_id(sess, NULL))) {
            unsigned idlen = 0;
            SSL_SESSION_get_id(sess, &idlen);
            int resumable =
                SSL_SESSION_is_resumable(sess) &&
                (ver == TLS1_3_VERSION || ticket ? SSL_SESSION_has_ticket(sess) : idlen > 0);
            if (early != NULL && ver == TLS1_3_VERSION) {
                *early = SSL_SESSION_get_max_early_data(sess);
            }
            if (!resumable) {
                out = MOAT_NO;
            } else {
                SSL *b = handshake(c, x, NULL, sess, 0);
                out = b != NULL && SSL_session_reused(b) ? MOAT_YES : MOAT_NO;
                hangup(b);
            }
        }
        SSL_SESSION_free(sess);
    }
    SSL_CTX_free(x);
    return out;
}

static void cert_facts(struct ctx *c, SSL *ssl)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *sk = SSL_get_peer_cert_chain(ssl);
    if (leaf != NULL && sk != NULL) {
        moat_check_cert_facts(leaf, sk, c->s->host, &c->s->cert);
        c->s->cert_read = MOAT_YES;
    }
}

static void job_handshakes(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    SSL_CTX *x = client_ctx(TLS1_VERSION, 0);
    if (x == NULL) {
        return;
    }
    SSL *ssl = handshake(c, x, "h2", NULL, 1);
    if (ssl != NULL) {
        const unsigned char *p = NULL;
        unsigned l = 0;
        SSL_get0_alpn_selected(ssl, &p, &l);
        s->alpn_h2 = l == 2 && memcmp(p, "h2", 2) == 0 ? MOAT_YES : MOAT_NO;
        const unsigned char *resp = NULL;
        s->ocsp_stapled = SSL_get_tlsext_status_ocsp_resp(ssl, &resp) > 0 ? MOAT_YES : MOAT_NO;
        cert_facts(c, ssl);
        hangup(ssl);
    }
    ssl = handshake(c, x, "http/1.1", NULL, 0);
    if (ssl != NULL) {
        const unsigned char *p = NULL;
        unsigned l = 0;
        SSL_get0_alpn_selected(ssl, &p, &l);
        s->alpn_http11 = l == 8 && memcmp(p, "http/1.1", 8) == 0 ? MOAT_YES : MOAT_NO;
        if (s->cert_read != MOAT_YES) {
            cert_facts(c, ssl);
        }
        hangup(ssl);
        if (s->alpn_h2 == MOAT_UNKNOWN) {
            /* Offered h2 alone, the server ended the handshake (no_application_protocol, RFC
             * 7301 §3.2) while it takes http/1.1: it has no h2. */
            s->alpn_h2 = MOAT_NO;
        }
    }
    SSL_CTX_free(x);
}

/* Client-initiated renegotiation (TLS 1.2): a server that does it hands any client a cheap
 * way to make it redo the expensive half of a handshake. A phase-2 job: it needs to know
 * whether TLS 1.2 is offered, which phase 1 learns. */
static void job_reneg(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    if (s->versions[MOAT_VER_TLS12] != MOAT_YES) {
        return;
    }
    SSL_CTX *x = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    if (x == NULL) {
        return;
    }
    SSL *ssl = handshake(c, x, NULL, NULL, 0);
    if (ssl != NULL) {
        /* On a blocking socket this runs the whole second handshake: it completes only if
         * the server takes part (one that refuses answers no_renegotiation). */
        int ok = SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1;
        ERR_clear_error();
        s->client_reneg = ok ? MOAT_YES : MOAT_NO;
        hangup(ssl);
    }
    SSL_CTX_free(x);
}

/* TLS 1.3 signs its handshake inside the encrypted part, so the schemes are learnt by real
 * handshakes each offering one scheme (the ones TLS 1.3 allows, RFC 8446 §4.2.3). */
static void job_sigalgs13(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    if (s->versions[MOAT_VER_TLS13] != MOAT_YES) {
        return;
    }
    size_t n;
    const struct moat_check_named *t = moat_check_sigalgs(&n);
    for (size_t i = 0; i < n && s->nsigalgs13 < MOAT_CHECK_MAX_SIGALGS; i++) {
        uint16_t code = t[i].code;
        int tls13 = (code >= 0x0403 && (code & 0xff) == 0x03 && code <= 0x0603) ||
                    (code >= 0x0804 && code <= 0x080B);
        if (!tls13) {
            continue;
        }
        SSL_CTX *x = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION);
        if (x == NULL) {
            return;
        }
        if (SSL_CTX_set1_sigalgs_list(x, t[i].name) == 1) {
            SSL *ssl = handshake(c, x, NULL, NULL, 0);
            if (ssl != NULL) {
                s->sigalgs13[s->nsigalgs13++] = code;
            }
            hangup(ssl);
        }
        ERR_clear_error();
        SSL_CTX_free(x);
    }
}

static void job_resumption(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    if (s->versions[MOAT_VER_TLS13] == MOAT_YES) {
        s->resume_ticket13 = resumes(c, TLS1_3_VERSION, 1, &s->early_data);
    }
    if (s->versions[MOAT_VER_TLS12] == MOAT_YES) {
        s->resume_ticket12 = resumes(c, TLS1_2_VERSION, 1, NULL);
        s->resume_id12 = resumes(c, TLS1_2_VERSION, 0, NULL);
    }
}

/* ---- the strict client ---- */

/* The value of field `name` in a response head, or NULL (into buf). */
static const char *field(const char *head, const char *name, char *buf, size_t buflen)
{
    if (head == NULL) {
        return NULL;
    }
    size_t nl = strlen(name);
    for (const char *l = strchr(head, '\n'); l != NULL; l = strchr(l, '\n')) {
        l++;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            size_t vl = strcspn(v, "\r\n");
            if (vl >= buflen) {
                vl = buflen - 1;
            }
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* One strict `moat get` of scheme://host:port/ pinned to the probed address (*out: NULL when
 * out of memory; the caller's otherwise). */
static struct moat_client_result *get_once(struct ctx *c, const char *scheme, unsigned port)
{
    struct moat_check_scan *s = c->s;
    struct moat_client_opts go;
    moat_client_opts_init(&go);
    char url[600];
    int v6 = strchr(s->host, ':') != NULL;
    snprintf(url, sizeof(url), "%s://%s%s%s:%u/", scheme, v6 ? "[" : "", s->host, v6 ? "]" : "",
             port);
    go.url = url;
    go.cafile = c->o->cafile;
    go.state_dir = c->o->state_dir;
    go.discard_body = 1;
    go.timeout_ms = c->o->timeout_ms;
    go.resolve[0].port = port;
    snprintf(go.resolve[0].host, sizeof(go.resolve[0].host), "%s", s->host);
    snprintf(go.resolve[0].addr, sizeof(go.resolve[0].addr), "%s", c->ip);
    go.nresolve = 1;
    /* As a browser asks: BREACH needs the answer a compressing server gives to it. */
    go.headers[go.nheaders++] = "Accept-Encoding: gzip, deflate, br";
    struct moat_client_result *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        pthread_mutex_lock(&c->mu);
        c->used++;
        pthread_mutex_unlock(&c->mu);
        struct moat_err err = {0};
        moat_rc rc = moat_client_get_run(&go, NULL, NULL, r, &err);
        (void)rc; /* the result holds the facts of a failure too */
    }
    moat_client_opts_clear(&go);
    return r;
}

static void job_get(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    struct moat_client_result *r = get_once(c, "https", s->port);
    s->get = r;
    if (r == NULL || r->nhops == 0) {
        return;
    }
    const struct moat_client_hop *h = &r->hops[0];
    s->verified = h->tls_done && h->verify_code == 0;
    s->status = h->status;
    char v[512];
    moat_check_hsts_parse(s, field(h->resp_head, "Strict-Transport-Security", v, sizeof(v)));
    s->hdr_nosniff = field(h->resp_head, "X-Content-Type-Options", v, sizeof(v)) != NULL;
    const char *csp = field(h->resp_head, "Content-Security-Policy", v, sizeof(v));
    s->hdr_csp = csp != NULL;
    s->hdr_frame = field(h->resp_head, "X-Frame-Options", v, sizeof(v)) != NULL ||
                   (csp != NULL && strstr(csp, "frame-ancestors") != NULL);
    s->hdr_referrer = field(h->resp_head, "Referrer-Policy", v, sizeof(v)) != NULL;
    s->http_compressed = field(h->resp_head, "Content-Encoding", v, sizeof(v)) != NULL;
}

static void job_http80(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    s->http_redirects = MOAT_UNKNOWN;
    if (c->o->http_port == 0) {
        return;
    }
    struct moat_client_result *r = get_once(c, "http", c->o->http_port);
    if (r != NULL && r->nhops > 0 && r->hops[0].tcp_ok) {
        const struct moat_client_hop *h = &r->hops[0];
        s->http_status = h->status;
        if (h->location != NULL) {
            snprintf(s->http_location, sizeof(s->http_location), "%s", h->location);
        }
        char want[300];
        snprintf(want, sizeof(want), "https://%s", s->host);
        int to_https = strncasecmp(s->http_location, want, strlen(want)) == 0;
        int redirect = h->status == 301 || h->status == 302 || h->status == 307 || h->status == 308;
        s->http_redirects = redirect && to_https ? MOAT_YES : MOAT_NO;
    }
    if (r != NULL) {
        moat_client_result_clear(r);
        free(r);
    }
}

static void job_caa(struct ctx *c, int unused)
{
    struct moat_check_scan *s = c->s;
    s->caa = MOAT_UNKNOWN;
    if (!s->public_name && c->o->resolver == NULL) {
        return; /* a local name: no public CA issues for it */
    }
    ldns_resolver *r = NULL;
    if (c->o->resolver != NULL) {
        struct moat_err err = {0};
        if (!moat_ok(moat_client_dns_resolver(c->o->resolver, &r, &err))) {
            return;
        }
        ldns_resolver_set_recursive(r, true);
    } else if (ldns_resolver_new_frm_file(&r, NULL) != LDNS_STATUS_OK) {
        return;
    }
    /* A check is meant to take seconds: one short try per name on the way up. */
    ldns_resolver_set_timeout(r, (struct timeval){.tv_sec = 2});
    ldns_resolver_set_retry(r, 1);
    struct moat_caa rr[16];
    size_t n = 0;
    int found = moat_client_caa_lookup(r, s->host, rr, 16, &n, s->caa_owner, sizeof(s->caa_owner));
    ldns_resolver_deep_free(r);
    if (found < 0) {
        return;
    }
    s->caa = found ? MOAT_YES : MOAT_NO;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(s->caa_records + at, sizeof(s->caa_records) - at, "%s%u %s \"%s\"",
                         i ? "; " : "", rr[i].flags, rr[i].tag, rr[i].value);
        if (w < 0 || (size_t)w >= sizeof(s->caa_records) - at) {
            break;
        }
        at += (size_t)w;
    }
}

/* ---- running ---- */

struct pool {
    struct job *jobs;
    size_t n, next;
    pthread_mutex_t mu;
};

static void *worker(void *arg)
{
    struct pool *p = arg;
    while (1) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next < p->n ? p->next++ : p->n;
        pthread_mutex_unlock(&p->mu);
        if (i == p->n) {
            return NULL;
        }
        p->jobs[i].fn(p->jobs[i].c, p->jobs[i].arg);
    }
}

static void run_jobs(struct job *jobs, size_t n, unsigned parallel)
{
    struct pool p = {jobs, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t th[16];
    size_t nt = parallel < 1 ? 1 : parallel > 16 ? 16 : parallel;
    if (nt > n) {
        nt = n;
    }
    size_t started = 0;
    for (size_t i = 0; i < nt; i++) {
        if (pthread_create(&th[i], NULL, worker, &p) != 0) {
            break;
        }
        started++;
    }
    if (started == 0) {
        worker(&p);
    }
    for (size_t i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
}

static moat_rc resolve(struct ctx *c, const char *name, unsigned port, struct moat_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int e = getaddrinfo(name, ps, &hints, &ai);
    if (e != 0 || ai == NULL) {
        return moat_err_set(err, MOAT_E_IO, __FILE__, __LINE__, "cannot resolve %s: %s", name,
                            gai_strerror(e));
    }
    memcpy(&c->sa, ai->ai_addr, ai->ai_addrlen);
    c->salen = ai->ai_addrlen;
    char h[64] = "";
    getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), NULL, 0, NI_NUMERICHOST);
    snprintf(c->ip, sizeof(c->ip), "%s", h);
    if (ai->ai_family == AF_INET6) {
        snprintf(c->s->addr, sizeof(c->s->addr), "[%s]:%u", h, port);
    } else {
        snprintf(c->s->addr, sizeof(c->s->addr), "%s:%u", h, port);
    }
    freeaddrinfo(ai);
    return MOAT_RC_OK;
}

moat_rc moat_check_scan_run(const struct moat_check_opts *o, struct moat_check_scan **out,
                            struct moat_err *err)
{
    *out = NULL;
    struct moat_client_url u;
    moat_rc rc = moat_client_url_parse(o->target, &u, err);
    if (!moat_ok(rc)) {
        return rc;
    }
    if (!u.https) {
        return moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                            "%s is http://: moat check judges HTTPS (write https:// or HOST:PORT)",
                            o->target);
    }
    pthread_once(&tables_once, tables_init);
    struct moat_check_scan *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    snprintf(s->host, sizeof(s->host), "%s", u.host);
    s->port = u.port;
    s->public_name = moat_check_public_name(u.host);
    s->hsts_max_age = -1;
    for (int v = 0; v < MOAT_VER_COUNT; v++) {
        s->versions[v] = MOAT_UNKNOWN;
        s->server_order[v] = MOAT_UNKNOWN;
    }
    s->compression = s->secure_reneg = s->client_reneg = s->fallback_scsv = MOAT_UNKNOWN;
    s->heartbeat = MOAT_UNKNOWN;
    s->heartbleed = s->ems = s->alpn_h2 = s->alpn_http11 = MOAT_UNKNOWN;
    s->resume_ticket13 = s->resume_ticket12 = s->resume_id12 = MOAT_UNKNOWN;
    s->ocsp_stapled = s->cert_read = s->http_redirects = MOAT_UNKNOWN;
    struct ctx c = {.o = o, .s = s};
    pthread_mutex_init(&c.mu, NULL);
    c.t0 = now_ms();
    c.deadline = c.t0 + o->deadline_ms;
    const char *name = u.host;
    unsigned port = u.port;
    char cbuf[128];
    if (o->connect != NULL) {
        snprintf(cbuf, sizeof(cbuf), "%s", o->connect);
        char *close_b = cbuf[0] == '[' ? strchr(cbuf, ']') : NULL;
        char *colon = close_b != NULL ? strchr(close_b, ':') : strchr(cbuf, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            *colon = '\0';
            port = (unsigned)strtoul(colon + 1, NULL, 10);
        }
        name = cbuf;
        if (close_b != NULL) {
            *close_b = '\0';
            name = cbuf + 1;
        }
    }
    s->port = port; /* --connect's port is where everything goes, the strict client too */
    rc = resolve(&c, name, port, err);
    if (!moat_ok(rc)) {
        pthread_mutex_destroy(&c.mu);
        free(s);
        return rc;
    }
    int fd = dial(&c);
    if (fd < 0) {
        rc = moat_err_set(err, MOAT_E_IO, __FILE__, __LINE__,
                          "nothing accepts TCP at %s (%s): is the server running?", s->addr,
                          o->target);
        pthread_mutex_destroy(&c.mu);
        free(s);
        return rc;
    }
    close(fd);

    struct job p1[MOAT_VER_COUNT + 4];
    size_t n1 = 0;
    p1[n1++] = (struct job){&c, job_get, 0};
    p1[n1++] = (struct job){&c, job_handshakes, 0};
    for (int v = 0; v < MOAT_VER_COUNT; v++) {
        p1[n1++] = (struct job){&c, job_version, v};
    }
    p1[n1++] = (struct job){&c, job_http80, 0};
    p1[n1++] = (struct job){&c, job_caa, 0};
    run_jobs(p1, n1, o->parallel);

    /* The version hellos offer heartbeat: one that no answer carried is not there. */
    if (s->heartbeat != MOAT_YES && best_legacy(s) >= MOAT_VER_TLS10) {
        s->heartbeat = MOAT_NO;
    }

    struct job p2[MOAT_VER_COUNT + 8];
    size_t n2 = 0;
    for (int v = MOAT_VER_TLS13; v >= MOAT_VER_SSL3; v--) {
        p2[n2++] = (struct job){&c, job_suites, v};
    }
    p2[n2++] = (struct job){&c, job_groups13, 0};
    p2[n2++] = (struct job){&c, job_groups12, 0};
    p2[n2++] = (struct job){&c, job_sigalgs12, 0};
    p2[n2++] = (struct job){&c, job_options, 0};
    p2[n2++] = (struct job){&c, job_resumption, 0};
    p2[n2++] = (struct job){&c, job_reneg, 0};
    p2[n2++] = (struct job){&c, job_sigalgs13, 0};
    run_jobs(p2, n2, o->parallel);

    s->connections = c.used;
    s->truncated = c.truncated;
    s->ms = now_ms() - c.t0;
    pthread_mutex_destroy(&c.mu);
    *out = s;
    return MOAT_RC_OK;
}

void moat_check_scan_free(struct moat_check_scan *s)
{
    if (s == NULL) {
        return;
    }
    if (s->get != NULL) {
        moat_client_result_clear(s->get);
        free(s->get);
    }
    free(s);
}
