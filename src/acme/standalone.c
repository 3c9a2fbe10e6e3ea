/*
 * standalone.c: the HTTP-01 listener for `moat acme issue` (see standalone.h).
 *
 * The request head goes through moat's own strict parser (http1/parse.h), so this small
 * listener refuses exactly what the server refuses; the answer is written in one write.
 */
#include "acme/standalone.h"

#include "core/sock.h"
#include "http1/parse.h"
#include "tls/sni.h"
#include "tls/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 4
#define CONN_TIMEOUT_MS 5000
#define HEAD_MAX 8192

struct moat_acme_standalone {
    struct moat_acme_challenges *t;
    int fds[MAX_LISTENERS];
    int tls[MAX_LISTENERS]; /* fds[i] takes TLS-ALPN-01 handshakes */
    size_t nfds;
    SSL_CTX *ctx;             /* the stand-in context the SNI table starts handshakes on */
    struct moat_tls_sni *sni; /* one "*" entry and the TLS-ALPN-01 hook */
    int stop_fd;
    pthread_t thread;
    int started;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait for fd to be readable or writable until deadline; 0 when it is, -1 on timeout. */
static int wait_fd(int fd, short ev, long deadline)
{
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)left);
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static void reply(int fd, long deadline, int status, const char *reason, const char *body,
                  int head_only)
{
    char out[1024];
    size_t bl = strlen(body);
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason, bl, head_only ? "" : body);
    if (n < 0 || (size_t)n >= sizeof(out)) {
        return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(fd, out + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) {
                return;
            }
        } else {
            return;
        }
    }
}

static void serve_one(struct moat_acme_standalone *s, int fd)
{
    long deadline = now_ms() + CONN_TIMEOUT_MS;
    char buf[HEAD_MAX];
    size_t len = 0;
    struct moat_h1_req req;
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    lim.max_head_bytes = HEAD_MAX;
    moat_h1_req_init(&req);
    for (;;) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (r == 0) {
            return;
        }
        if (r < 0) {
            if ((errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, deadline) == 0) {
                continue;
            }
            return;
        }
        len += (size_t)r;
        enum moat_h1_status st = moat_h1_parse_request(&req, buf, len, &lim);
        if (st == MOAT_H1_AGAIN) {
            if (len == sizeof(buf)) {
                reply(fd, deadline, 431, "Request Header Fields Too Large", "too large\n", 0);
                return;
            }
            continue;
        }
        if (st != MOAT_H1_DONE) {
            reply(fd, deadline, 400, "Bad Request", "bad request\n", 0);
            return;
        }
        break;
    }
    int head = req.method_id == MOAT_HTTP_M_HEAD;
    if (!head && req.method_id != MOAT_HTTP_M_GET) {
        reply(fd, deadline, 405, "Method Not Allowed", "only GET\n", 0);
        return;
    }
    char ka[512];
    if (moat_acme_challenges_http01(s->t, req.path.p, req.path.len, ka, sizeof(ka))) {
        reply(fd, deadline, 200, "OK", ka, head);
    } else {
        reply(fd, deadline, 404, "Not Found", "no such challenge\n", head);
    }
}

static int alpn_answer(void *arg, const char *name, X509 **cert, EVP_PKEY **key)
{
    return moat_acme_challenges_alpn(arg, name, cert, key);
}

/* A TLS-ALPN-01 validation: the handshake is the whole answer (RFC 8737 §3). */
static void serve_tls(struct moat_acme_standalone *s, int fd)
{
    struct moat_transport tr;
    if (!moat_ok(moat_tls_transport_server(&tr, fd, s->ctx, NULL))) {
        close(fd);
        return;
    }
    long deadline = now_ms() + CONN_TIMEOUT_MS;
    for (;;) {
        moat_rc rc = moat_transport_handshake(&tr, NULL);
        if (rc.kind != MOAT_E_AGAIN) {
            if (moat_ok(rc)) {
                moat_transport_shutdown(&tr);
            }
            break;
        }
        /* The server's flight fits the socket buffer: waiting to read is all it needs. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = deadline - now_ms();
        if (left <= 0 || poll(&p, 1, left > 100 ? 100 : (int)left) < 0) {
            break;
        }
    }
    moat_transport_close(&tr);
}

/* The context and SNI table TLS-ALPN-01 handshakes are answered with. */
static moat_rc tls_setup(struct moat_acme_standalone *s, struct moat_err *err)
{
    moat_rc rc = moat_acme_alpn_ctx_new(&s->ctx, err);
    if (moat_ok(rc) && (s->sni = moat_tls_sni_new()) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    if (moat_ok(rc)) {
        rc = moat_tls_sni_add(s->sni, "*", s->ctx, s, err);
    }
    if (moat_ok(rc)) {
        rc = moat_tls_sni_set_acme(s->sni, s->ctx, alpn_answer, s->t, err);
    }
    if (moat_ok(rc)) {
        rc = moat_tls_sni_finish(s->sni, err);
    }
    return rc;
}

static void *run(void *arg)
{
    struct moat_acme_standalone *s = arg;
    struct pollfd p[MAX_LISTENERS + 1];
    for (;;) {
        for (size_t i = 0; i < s->nfds; i++) {
            p[i] = (struct pollfd){.fd = s->fds[i], .events = POLLIN};
        }
        p[s->nfds] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
        int r = poll(p, s->nfds + 1, -1);
        if (r < 0 && errno != EINTR) {
            return NULL;
        }
        if (p[s->nfds].revents) {
            return NULL;
        }
        for (size_t i = 0; i < s->nfds; i++) {
            if (!p[i].revents) {
                continue;
            }
            int c = accept4(s->fds[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c >= 0 && s->tls[i]) {
                serve_tls(s, c); /* the transport owns and closes c */
            } else if (c >= 0) {
                serve_one(s, c);
                close(c);
            }
        }
    }
}

/* Listen on spec ("80" meaning ":80"), marking the listeners tls or not. */
static moat_rc listen_on(struct moat_acme_standalone *s, const char *spec, int tls,
                         struct moat_err *err)
{
    char full[80];
    if (strchr(spec, ':') == NULL) {
        snprintf(full, sizeof(full), ":%.70s", spec);
        spec = full;
    }
    struct moat_addr addrs[MAX_LISTENERS];
    size_t n = 0;
    MOAT_TRY(moat_addr_resolve(spec, addrs, MAX_LISTENERS, &n, err));
    for (size_t i = 0; i < n; i++) {
        if (s->nfds == MAX_LISTENERS) {
            MOAT_FAIL(err, MOAT_E_LIMIT, "too many challenge listeners");
        }
        moat_rc rc = moat_sock_listen(&addrs[i], 64, &s->fds[s->nfds], err);
        if (!moat_ok(rc)) {
            moat_err_ctx(err, "opening the %s listener on %s (is another server on that port? %s)",
                         tls ? "TLS-ALPN-01" : "HTTP-01", addrs[i].text,
                         tls ? "use --http or DNS-01 instead" : "use --webroot with it instead");
            return rc;
        }
        s->tls[s->nfds++] = tls;
    }
    return MOAT_RC_OK;
}

moat_rc moat_acme_standalone_start(const char *http_spec, const char *tls_spec,
                                   struct moat_acme_challenges *t,
                                   struct moat_acme_standalone **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_acme_standalone *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    s->t = t;
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    moat_rc rc = s->stop_fd >= 0
                     ? MOAT_RC_OK
                     : moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__, "eventfd failed");
    if (moat_ok(rc) && http_spec != NULL) {
        rc = listen_on(s, http_spec, 0, err);
    }
    if (moat_ok(rc) && tls_spec != NULL) {
        rc = tls_setup(s, err);
        if (moat_ok(rc)) {
            rc = listen_on(s, tls_spec, 1, err);
        }
    }
    if (moat_ok(rc)) {
        int e = pthread_create(&s->thread, NULL, run, s);
        if (e != 0) {
            rc = moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__,
                              "cannot start the challenge listener thread");
        } else {
            s->started = 1;
        }
    }
    if (!moat_ok(rc)) {
        moat_acme_standalone_stop(s);
        return rc;
    }
    *out = s;
    return MOAT_RC_OK;
}

void moat_acme_standalone_stop(struct moat_acme_standalone *s)
{
    if (s == NULL) {
        return;
    }
    if (s->started) {
        uint64_t one = 1;
        if (write(s->stop_fd, &one, sizeof(one)) < 0) {
            /* an eventfd write only fails on overflow, which one write cannot cause */
        }
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->nfds; i++) {
        close(s->fds[i]);
    }
    if (s->stop_fd >= 0) {
        close(s->stop_fd);
    }
    moat_tls_sni_free(s->sni);
    SSL_CTX_free(s->ctx);
    free(s);
}
