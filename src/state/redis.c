/*
 * redis.c: a blocking Redis connection (see redis.h): socket and TLS here, RESP through hiredis.
 */
#include "state/redis.h"

#include "tls/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_MAX (1024 * 1024) /* the biggest reply taken: ticket keys and counters are tiny */

struct moat_redis {
    int fd;
    SSL_CTX *ctx; /* NULL: plain */
    SSL *ssl;
    redisReader *reader;
    int broken;
    char name[300]; /* addr, for messages */
};

/* "HOST:PORT", "[V6]:PORT" into host and port. */
static moat_rc split_addr(const char *addr, char *host, size_t cap, char *port, size_t pcap,
                          struct moat_err *err)
{
    const char *colon = NULL, *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':') {
            MOAT_FAIL(err, MOAT_E_CONFIG, "bad Redis address \"%.200s\" (write [::1]:6379)", addr);
        }
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "bad Redis address \"%.200s\" (write HOST:PORT or unix:/PATH)", addr);
        }
        hl = (size_t)(colon - addr);
    }
    if (hl == 0 || hl >= cap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "bad Redis address \"%.200s\" (write HOST:PORT)", addr);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return MOAT_RC_OK;
}

static void set_timeouts(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* connect() bounded by `ms`: the socket is non-blocking for it, blocking after. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, unsigned ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        return -1;
    }
    int rc = connect(fd, sa, len);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        rc = poll(&p, 1, (int)ms);
        if (rc == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
            return -1;
        }
        if (soerr != 0) {
            errno = soerr;
            return -1;
        }
        rc = 0;
    }
    if (rc != 0 || fcntl(fd, F_SETFL, fl) != 0) {
        return -1;
    }
    return 0;
}

static moat_rc open_socket(struct moat_redis *r, const struct moat_redis_opts *o, char *host,
                           size_t hcap, struct moat_err *err)
{
    if (strncmp(o->addr, "unix:", 5) == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(o->addr + 5) >= sizeof(un.sun_path)) {
            MOAT_FAIL(err, MOAT_E_CONFIG, "the Redis socket path %.200s is too long", o->addr + 5);
        }
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", o->addr + 5);
        host[0] = '\0';
        r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (r->fd < 0 ||
            connect_within(r->fd, (struct sockaddr *)&un, sizeof(un), o->timeout_ms) != 0) {
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot connect to Redis at %s", o->addr);
        }
        set_timeouts(r->fd, o->timeout_ms);
        return MOAT_RC_OK;
    }
    char port[8];
    MOAT_TRY(split_addr(o->addr, host, hcap, port, sizeof(port), err));
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        MOAT_FAIL(err, MOAT_E_IO, "cannot resolve the Redis host %s: %s", host, gai_strerror(g));
    }
    int last = ECONNREFUSED;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        r->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (r->fd >= 0 && connect_within(r->fd, a->ai_addr, a->ai_addrlen, o->timeout_ms) == 0) {
            break;
        }
        last = errno;
        if (r->fd >= 0) {
            close(r->fd);
        }
        r->fd = -1;
    }
    freeaddrinfo(res);
    if (r->fd < 0) {
        errno = last;
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot connect to Redis at %s", o->addr);
    }
    int one = 1;
    (void)setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_timeouts(r->fd, o->timeout_ms);
    return MOAT_RC_OK;
}

static moat_rc start_tls(struct moat_redis *r, const struct moat_redis_opts *o, const char *host,
                         struct moat_err *err)
{
    const char *name = o->server_name != NULL ? o->server_name : host;
    if (name == NULL || name[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "TLS to Redis over a unix socket needs the name its certificate carries "
                  "(server_name NAME)");
    }
    struct moat_tls_client_opts co = {
        .system_trust = o->ca_file == NULL,
        .ca_file = o->ca_file,
        .allow_unexpected_eof = 1, /* RESP frames itself */
    };
    MOAT_TRY(moat_tls_client_ctx_new(&co, &r->ctx, err));
    MOAT_TRY(moat_tls_client_ssl_new(r->ctx, name, &r->ssl, err));
    if (!SSL_set_fd(r->ssl, r->fd)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot start TLS to Redis at %s", o->addr);
    }
    ERR_clear_error();
    if (SSL_connect(r->ssl) != 1) {
        long v = SSL_get_verify_result(r->ssl);
        if (v != X509_V_OK) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "Redis at %s: its certificate was refused: %s (name checked: %s; give the "
                      "CA that issued it with `ca FILE`)",
                      o->addr, X509_verify_cert_error_string(v), name);
        }
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "the TLS handshake with Redis at %s failed", o->addr);
    }
    return MOAT_RC_OK;
}

moat_rc moat_redis_connect(const struct moat_redis_opts *o, struct moat_redis **out,
                           struct moat_err *err)
{
    *out = NULL;
    MOAT_ENSURE(o != NULL && o->addr != NULL && o->timeout_ms > 0, MOAT_E_INTERNAL);
    struct moat_redis *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for a Redis connection");
    }
    r->fd = -1;
    snprintf(r->name, sizeof(r->name), "%s", o->addr);
    char host[256];
    moat_rc rc = open_socket(r, o, host, sizeof(host), err);
    if (moat_ok(rc) && o->tls) {
        rc = start_tls(r, o, host, err);
    }
    if (moat_ok(rc) && (r->reader = redisReaderCreate()) == NULL) {
        rc =
            moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory for a Redis reader");
    }
    if (moat_ok(rc) && o->password != NULL) {
        const char *argv[3] = {"AUTH", o->user != NULL ? o->user : o->password, o->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(argv[2])};
        redisReply *rep = NULL;
        struct moat_err e2 = {0};
        rc = moat_redis_command(r, o->user != NULL ? 3 : 2, argv, lens, &rep, &e2);
        freeReplyObject(rep);
        if (!moat_ok(rc)) {
            char why[300];
            rc = moat_err_set(err, rc.kind == MOAT_E_PEER ? MOAT_E_PEER : rc.kind, __FILE__,
                              __LINE__, "Redis at %s refused AUTH%s%s: %s", o->addr,
                              o->user != NULL ? " as " : "", o->user != NULL ? o->user : "",
                              moat_err_str(&e2, why, sizeof(why)));
        }
    }
    if (!moat_ok(rc)) {
        moat_redis_close(r);
        return rc;
    }
    *out = r;
    return MOAT_RC_OK;
}

static moat_rc fail(struct moat_redis *r, struct moat_err *err, const char *what)
{
    r->broken = 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        errno = ETIMEDOUT;
    }
    return moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__, "Redis at %s: %s", r->name,
                        what);
}

static moat_rc write_all(struct moat_redis *r, const char *p, size_t n, struct moat_err *err)
{
    while (n > 0) {
        ssize_t w;
        if (r->ssl != NULL) {
            ERR_clear_error();
            int k = SSL_write(r->ssl, p, n > (1u << 30) ? 1 << 30 : (int)n);
            w = k > 0 ? k : -1;
            if (k <= 0 && errno == 0) {
                errno = EPIPE;
            }
        } else {
            w = send(r->fd, p, n, MSG_NOSIGNAL);
        }
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(r, err, "cannot send a command");
        }
        p += w;
        n -= (size_t)w;
    }
    return MOAT_RC_OK;
}

moat_rc moat_redis_send(struct moat_redis *r, int argc, const char **argv, const size_t *lens,
                        struct moat_err *err)
{
    if (r->broken) {
        MOAT_FAIL(err, MOAT_E_IO, "Redis at %s: the connection failed before", r->name);
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory formatting a Redis command");
    }
    moat_rc rc = write_all(r, cmd, (size_t)len, err);
    free(cmd);
    return rc;
}

moat_rc moat_redis_read_reply(struct moat_redis *r, redisReply **out, struct moat_err *err)
{
    *out = NULL;
    if (r->broken) {
        MOAT_FAIL(err, MOAT_E_IO, "Redis at %s: the connection failed before", r->name);
    }
    size_t taken = 0;
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            r->broken = 1;
            MOAT_FAIL(err, MOAT_E_PEER, "Redis at %s sent a reply that does not parse: %s", r->name,
                      r->reader->errstr);
        }
        if (rep != NULL) {
            redisReply *reply = rep;
            if (reply->type == REDIS_REPLY_ERROR) {
                moat_rc rc =
                    moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__, "Redis at %s: %.*s", r->name,
                                 (int)(reply->len < 300 ? reply->len : 300), reply->str);
                freeReplyObject(reply);
                return rc;
            }
            *out = reply;
            return MOAT_RC_OK;
        }
        char buf[16384];
        ssize_t n;
        errno = 0;
        if (r->ssl != NULL) {
            ERR_clear_error();
            int k = SSL_read(r->ssl, buf, sizeof(buf));
            n = k > 0 ? k : -1;
            if (k <= 0 && SSL_get_error(r->ssl, k) == SSL_ERROR_ZERO_RETURN) {
                n = 0;
            }
        } else {
            n = recv(r->fd, buf, sizeof(buf), 0);
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                r->broken = 1;
                MOAT_FAIL(err, MOAT_E_IO, "Redis at %s closed the connection", r->name);
            }
            return fail(r, err, "no reply");
        }
        taken += (size_t)n;
        if (taken > REPLY_MAX || redisReaderFeed(r->reader, buf, (size_t)n) != REDIS_OK) {
            r->broken = 1;
            MOAT_FAIL(err, MOAT_E_PEER, "Redis at %s sent a reply larger than %d bytes", r->name,
                      REPLY_MAX);
        }
    }
}

moat_rc moat_redis_command(struct moat_redis *r, int argc, const char **argv, const size_t *lens,
                           redisReply **out, struct moat_err *err)
{
    *out = NULL;
    MOAT_TRY(moat_redis_send(r, argc, argv, lens, err));
    return moat_redis_read_reply(r, out, err);
}

int moat_redis_fd(const struct moat_redis *r)
{
    return r->fd;
}

int moat_redis_pending(struct moat_redis *r)
{
    if (r->ssl != NULL && SSL_pending(r->ssl) > 0) {
        return 1;
    }
    /* A whole reply already read and buffered in hiredis's reader. */
    return r->reader != NULL && r->reader->pos < r->reader->len;
}

int moat_redis_broken(const struct moat_redis *r)
{
    return r->broken;
}

void moat_redis_close(struct moat_redis *r)
{
    if (r == NULL) {
        return;
    }
    if (r->ssl != NULL) {
        SSL_free(r->ssl);
    }
    SSL_CTX_free(r->ctx);
    if (r->fd >= 0) {
        close(r->fd);
    }
    if (r->reader != NULL) {
        redisReaderFree(r->reader);
    }
    free(r);
}

static char *dup_or_null(const char *s, int *ok)
{
    char *d = s != NULL ? strdup(s) : NULL;
    *ok &= s == NULL || d != NULL;
    return d;
}

moat_rc moat_redis_opts_copy(const struct moat_redis_opts *in, struct moat_redis_opts *out,
                             struct moat_err *err)
{
    int ok = 1;
    *out = *in;
    out->addr = dup_or_null(in->addr, &ok);
    out->ca_file = dup_or_null(in->ca_file, &ok);
    out->server_name = dup_or_null(in->server_name, &ok);
    out->user = dup_or_null(in->user, &ok);
    out->password = dup_or_null(in->password, &ok);
    if (!ok) {
        moat_redis_opts_clear(out);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the Redis settings");
    }
    return MOAT_RC_OK;
}

void moat_redis_opts_clear(struct moat_redis_opts *o)
{
    free((char *)o->addr);
    free((char *)o->ca_file);
    free((char *)o->server_name);
    free((char *)o->user);
    if (o->password != NULL) {
        OPENSSL_cleanse((char *)o->password, strlen(o->password));
        free((char *)o->password);
    }
    *o = (struct moat_redis_opts){0};
}
