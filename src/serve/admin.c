/*
 * admin.c: the admin listener (see admin.h).
 *
 * It runs on the main thread's loop, beside reloads and certificate renewals, so a handler may
 * read the snapshot and reload without any lock. A handler runs to completion (a reload blocks
 * the loop for as long as it takes); the answers are small and written as one piece.
 */
#include "serve/admin.h"

#include "core/log.h"
#include "core/sock.h"
#include "http/field.h"
#include "http/status.h"
#include "http1/parse.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define MAX_CONNS 32
#define REQUEST_MS 5000
#define ANSWER_MS 10000
#define ANSWER_MAX (64u << 20) /* metrics of many sites and upstreams stay far below */

struct aconn {
    struct moat_watch w; /* w.fd owned */
    struct moat_timer timer;
    struct moat_admin *a;
    struct aconn *prev, *next;
    struct moat_buf in, out;
    int answered;  /* the answer is in `out` (what is left of it) */
    int then_stop; /* call the server's stop once it is out */
};

struct moat_admin {
    struct moat_admin_opts o;
    char where[MOAT_ADMIN_UNIX_MAX + 8];
    int fd; /* owned listener */
    struct moat_watch w;
    int watched; /* w is in the loop */
    int is_unix;
    char path[MOAT_ADMIN_UNIX_MAX + 1];
    dev_t dev; /* the socket file this listener made, to remove only that one */
    ino_t ino;
    unsigned char token_sha[32];
    int has_token;
    struct aconn *conns;
    size_t nconns;
    struct moat_h1_req req; /* large (the fields): one, parsed into from scratch each time */
};

static void conn_close(struct aconn *c)
{
    struct moat_admin *a = c->a;
    moat_loop_del(a->o.loop, &c->w);
    moat_timer_disarm(&a->o.loop->timers, &c->timer);
    close(c->w.fd);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        a->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    a->nconns--;
    moat_buf_clear(&c->in);
    moat_buf_clear(&c->out);
    int stop = c->then_stop;
    moat_loop_defer_free(a->o.loop, c);
    if (stop && a->o.stop != NULL) {
        a->o.stop(a->o.arg);
    }
}

/* Write what is left of the answer; close when it is all out (or the peer is gone). */
static void flush(struct aconn *c)
{
    while (moat_buf_len(&c->out) > 0) {
        ssize_t n = send(c->w.fd, moat_buf_rdptr(&c->out), moat_buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            moat_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return; /* EPOLLOUT brings us back */
        }
        break;
    }
    shutdown(c->w.fd, SHUT_WR);
    conn_close(c);
}

/* The whole answer, head and body, into c->out. */
static void answer(struct aconn *c, int status, const char *type, const char *extra,
                   const struct moat_buf *body, int head_only)
{
    size_t blen = body != NULL ? moat_buf_len(body) : 0;
    moat_buf_init(&c->out, ANSWER_MAX);
    moat_rc rc = moat_buf_printf(&c->out,
                                 "HTTP/1.1 %d %s\r\n"
                                 "Content-Type: %s\r\n"
                                 "Content-Length: %zu\r\n"
                                 "Cache-Control: no-store\r\n"
                                 "X-Content-Type-Options: nosniff\r\n"
                                 "Connection: close\r\n"
                                 "%s\r\n",
                                 status, moat_http_reason(status), type, blen, extra ? extra : "");
    if (moat_ok(rc) && blen > 0 && !head_only) {
        rc = moat_buf_append(&c->out, moat_buf_rdptr(body), blen);
    }
    if (!moat_ok(rc)) {
        moat_buf_clear(&c->out); /* out of memory: the connection just closes */
    }
    c->answered = 1;
    /* The answer gets its own deadline: a client that stops reading is cut off. */
    if (!moat_ok(moat_loop_mod(c->a->o.loop, &c->w, EPOLLIN | EPOLLOUT)) ||
        !moat_ok(
            moat_timer_arm(&c->a->o.loop->timers, &c->timer, c->a->o.loop->now_ms + ANSWER_MS))) {
        moat_buf_clear(&c->out);
    }
    flush(c);
}

/* A refusal with its reason as a JSON body (what the CLI shows). */
static void refuse(struct aconn *c, int status, const char *extra, const char *why)
{
    struct moat_buf b;
    moat_buf_init(&b, ANSWER_MAX);
    if (!moat_ok(moat_buf_printf(&b, "{\"error\":\"%s\"}\n", why))) {
        moat_buf_clear(&b);
    }
    answer(c, status, "application/json", extra, &b, 0);
    moat_buf_clear(&b);
}

/* The host part of a Host value is a loopback name or address. */
static int host_is_loopback(moat_slice h)
{
    char s[80];
    if (h.len == 0 || h.len >= sizeof(s)) {
        return 0;
    }
    memcpy(s, h.p, h.len);
    s[h.len] = '\0';
    char *host = s;
    if (s[0] == '[') {
        char *end = strchr(s, ']');
        if (end == NULL) {
            return 0;
        }
        *end = '\0';
        host = s + 1;
    } else {
        char *colon = strrchr(s, ':');
        if (colon != NULL) {
            *colon = '\0';
        }
    }
    if (strcasecmp(host, "localhost") == 0) {
        return 1;
    }
    struct sockaddr_storage ss;
    if (!moat_sock_addr_of(host, 0, &ss)) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

/* The token the request carries (Bearer, or Basic's password), compared by digest so neither
 * its bytes nor its length leak through timing. */
static int token_ok(const struct moat_admin *a, const struct moat_h1_req *r)
{
    const struct moat_field *f = moat_field_find(r->fields, r->nfields, "authorization");
    if (f == NULL) {
        return 0;
    }
    moat_slice v = f->value;
    unsigned char plain[HEAD_MAX];
    const unsigned char *tok = NULL;
    size_t toklen = 0;
    if (v.len > 7 && strncasecmp(v.p, "Bearer ", 7) == 0) {
        tok = (const unsigned char *)v.p + 7;
        toklen = v.len - 7;
    } else if (v.len > 6 && strncasecmp(v.p, "Basic ", 6) == 0) {
        size_t n = v.len - 6;
        if (n % 4 != 0 || n / 4 * 3 >= sizeof(plain)) {
            return 0;
        }
        int got = EVP_DecodeBlock(plain, (const unsigned char *)v.p + 6, (int)n);
        if (got < 0) {
            return 0;
        }
        size_t len = (size_t)got;
        /* EVP_DecodeBlock counts the padding's zero bytes: take them off. */
        for (size_t k = n; k > 0 && len > 0 && v.p[6 + k - 1] == '='; k--) {
            len--;
        }
        const unsigned char *colon = memchr(plain, ':', len);
        if (colon == NULL) {
            return 0;
        }
        tok = colon + 1;
        toklen = len - (size_t)(tok - plain);
    } else {
        return 0;
    }
    unsigned char sha[32];
    unsigned int shalen = 0;
    if (!EVP_Digest(tok, toklen, sha, &shalen, EVP_sha256(), NULL) || shalen != sizeof(sha)) {
        return 0;
    }
    int ok = a->has_token && CRYPTO_memcmp(sha, a->token_sha, sizeof(sha)) == 0;
    OPENSSL_cleanse(plain, sizeof(plain));
    return ok;
}

/* A request a web page made the operator's browser send: refused whatever it carries, as the
 * browser would attach a remembered Basic password to it. */
static const char *cross_site(const struct moat_h1_req *r)
{
    const struct moat_field *sf = moat_field_find(r->fields, r->nfields, "sec-fetch-site");
    if (sf != NULL && !moat_slice_eq_lit_nocase(sf->value, "same-origin") &&
        !moat_slice_eq_lit_nocase(sf->value, "none")) {
        return "requests from other sites' pages are refused";
    }
    const struct moat_field *of = moat_field_find(r->fields, r->nfields, "origin");
    if (of != NULL) {
        moat_slice o = of->value;
        if (o.len < 7 || strncasecmp(o.p, "http://", 7) != 0 ||
            !moat_slice_eq_nocase(moat_slice_of(o.p + 7, o.len - 7), r->host)) {
            return "requests from other origins are refused";
        }
    }
    return NULL;
}

static void serve_request(struct aconn *c, struct moat_h1_req *r)
{
    struct moat_admin *a = c->a;
    if (r->body == MOAT_H1_BODY_CHUNKED ||
        (r->body == MOAT_H1_BODY_LENGTH && r->content_length > 0)) {
        refuse(c, 413, NULL, "the admin interface takes no request bodies");
        return;
    }
    if (!a->is_unix) {
        if (!host_is_loopback(r->host)) {
            refuse(c, 421, NULL, "the admin interface answers only to a loopback Host");
            return;
        }
        if (!token_ok(a, r)) {
            refuse(c, 401,
                   "WWW-Authenticate: Basic realm=\"moat admin\", charset=\"UTF-8\"\r\n"
                   "WWW-Authenticate: Bearer realm=\"moat admin\"\r\n",
                   "this admin listener wants its token: Authorization: Bearer TOKEN (moat's "
                   "commands send it with --token-file FILE)");
            return;
        }
    }
    const char *xs = cross_site(r);
    if (xs != NULL) {
        refuse(c, 403, NULL, xs);
        return;
    }
    struct moat_buf body;
    moat_buf_init(&body, ANSWER_MAX);
    struct moat_admin_req rq = {.method = r->method_id, .path = r->path, .query = r->query};
    struct moat_admin_answer an = {.status = 200, .type = "application/json", .body = &body};
    a->o.handle(a->o.arg, &rq, &an);
    char extra[600] = "";
    if (an.status == 405 && an.allow != NULL) {
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", an.allow);
    } else if (an.csp != NULL) {
        snprintf(extra, sizeof(extra),
                 "Content-Security-Policy: %s\r\nX-Frame-Options: DENY\r\n"
                 "Referrer-Policy: no-referrer\r\n",
                 an.csp);
    }
    c->then_stop = an.then_stop;
    answer(c, an.status, an.type != NULL ? an.type : "application/json", extra, &body,
           r->method_id == MOAT_HTTP_M_HEAD);
    moat_buf_clear(&body);
}

static void on_readable(struct aconn *c)
{
    for (;;) {
        if (!moat_ok(moat_buf_reserve(&c->in, 1024))) {
            refuse(c, 431, NULL, "the request head is over 8 KiB");
            return;
        }
        ssize_t n = read(c->w.fd, moat_buf_wrptr(&c->in), moat_buf_room(&c->in));
        if (n > 0) {
            c->in.wr += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        conn_close(c); /* EOF or an error before a whole request: nobody to answer */
        return;
    }
    struct moat_h1_req *r = &c->a->req;
    struct moat_h1_limits lim = {
        .max_line_bytes = 4096, .max_head_bytes = HEAD_MAX, .max_fields = 64};
    moat_h1_req_init(r);
    enum moat_h1_status st =
        moat_h1_parse_request(r, moat_buf_rdptr(&c->in), moat_buf_len(&c->in), &lim);
    if (st == MOAT_H1_AGAIN) {
        return;
    }
    if (st != MOAT_H1_DONE) {
        int code = moat_h1_status_code(st);
        refuse(c, code != 0 ? code : 400, NULL,
               r->err_what != NULL ? r->err_what : moat_h1_status_name(st));
        return;
    }
    serve_request(c, r);
}

static void on_conn_event(struct moat_watch *w, uint32_t events)
{
    struct aconn *c = w->data;
    if (c->answered) {
        flush(c);
        return;
    }
    on_readable(c);
}

static void on_conn_timer(struct moat_timer *t)
{
    struct aconn *c = t->data;
    if (!c->answered) {
        moat_log(MOAT_LVL_DEBUG, 0, "admin: a client sent no whole request in 5 s; closed");
    }
    conn_close(c);
}

/* The peer of a unix connection runs as the server's user or as root. */
static int peer_allowed(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        return 0;
    }
    return cr.uid == 0 || cr.uid == geteuid();
}

static void on_accept(struct moat_watch *w, uint32_t events)
{
    struct moat_admin *a = w->data;
    for (;;) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return; /* EAGAIN, or out of descriptors: the next connection tries again */
        }
        if (a->nconns >= MAX_CONNS || (a->is_unix && !peer_allowed(fd))) {
            close(fd);
            continue;
        }
        struct aconn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->a = a;
        c->w = (struct moat_watch){.fd = fd, .cb = on_conn_event, .data = c};
        moat_buf_init(&c->in, HEAD_MAX);
        moat_buf_init(&c->out, ANSWER_MAX);
        moat_timer_init(&c->timer, on_conn_timer, c);
        if (!moat_ok(moat_loop_add(a->o.loop, &c->w, EPOLLIN)) ||
            !moat_ok(
                moat_timer_arm(&a->o.loop->timers, &c->timer, a->o.loop->now_ms + REQUEST_MS))) {
            moat_loop_del(a->o.loop, &c->w);
            close(fd);
            free(c);
            continue;
        }
        c->next = a->conns;
        if (a->conns != NULL) {
            a->conns->prev = c;
        }
        a->conns = c;
        a->nconns++;
        on_readable(c); /* the request may be there already */
    }
}

static moat_rc listen_unix(struct moat_admin *a, const char *path, struct moat_err *err)
{
    if (strlen(path) > MOAT_ADMIN_UNIX_MAX) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the admin socket path %.80s... is longer than the %d bytes a unix socket "
                  "takes (choose a shorter one with admin unix:PATH)",
                  path, MOAT_ADMIN_UNIX_MAX);
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    snprintf(a->path, sizeof(a->path), "%s", path);
    for (int attempt = 0;; attempt++) {
        a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (a->fd < 0) {
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create the admin socket");
        }
        if (bind(a->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            break;
        }
        int e = errno;
        close(a->fd);
        a->fd = -1;
        if (e != EADDRINUSE || attempt > 0) {
            errno = e;
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot bind the admin socket %s", path);
        }
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "%s is in the way of the admin socket and is not a socket (remove it, or "
                      "choose another path with admin unix:PATH)",
                      path);
        }
        /* A socket file is there: in use by a live server, or left by one that crashed. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
        int refused = !live && (errno == ECONNREFUSED || errno == ENOENT);
        if (probe >= 0) {
            close(probe);
        }
        if (live) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "another moat is serving its admin interface on %s (stop it, or give "
                      "this one its own state folder or admin unix:PATH)",
                      path);
        }
        if (!refused || (unlink(path) != 0 && errno != ENOENT)) {
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot take over the stale admin socket %s", path);
        }
    }
    /* 0600 before listen(): until then a connect() is refused, so nobody slips in between. */
    struct stat st;
    if (chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
        int e = errno;
        unlink(path);
        errno = e;
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot make the admin socket %s private", path);
    }
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    a->is_unix = 1;
    snprintf(a->where, sizeof(a->where), "unix:%s", path);
    return MOAT_RC_OK;
}

static moat_rc listen_tcp(struct moat_admin *a, const char *spec, struct moat_err *err)
{
    struct moat_addr ad[2];
    size_t n = 0;
    MOAT_TRY(moat_addr_resolve(spec, ad, 2, &n, err));
    a->fd = socket(ad[0].ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create the admin socket");
    }
    int one = 1;
    setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* No SO_REUSEPORT: a second server on the same port must fail, not share it. */
    if (bind(a->fd, (struct sockaddr *)&ad[0].ss, ad[0].len) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot bind the admin listener %s", ad[0].text);
    }
    snprintf(a->where, sizeof(a->where), "%s", ad[0].text);
    return MOAT_RC_OK;
}

moat_rc moat_admin_open(const struct moat_admin_opts *o, struct moat_admin **out,
                        struct moat_err *err)
{
    MOAT_ENSURE_REF(o);
    MOAT_ENSURE_REF(o->spec);
    MOAT_ENSURE_REF(o->handle);
    *out = NULL;
    struct moat_admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    a->o = *o;
    a->fd = -1;
    moat_rc rc;
    if (strncmp(o->spec, "unix:", 5) == 0) {
        rc = listen_unix(a, o->spec + 5, err);
    } else if (o->token == NULL || o->token[0] == '\0') {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "a TCP admin listener needs a token (admin %s token FILE)", o->spec);
    } else {
        rc = listen_tcp(a, o->spec, err);
    }
    a->o.token = NULL; /* not kept: the digest is all that is compared */
    if (moat_ok(rc) && o->token != NULL) {
        moat_admin_set_token(a, o->token);
        if (!a->has_token) {
            rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__, "SHA-256 failed");
        }
    }
    if (moat_ok(rc) && listen(a->fd, 16) != 0) {
        rc = moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                          "cannot listen on the admin socket %s", a->where);
    }
    if (moat_ok(rc)) {
        a->w = (struct moat_watch){.fd = a->fd, .cb = on_accept, .data = a};
        rc = moat_loop_add(o->loop, &a->w, EPOLLIN);
        a->watched = moat_ok(rc);
    }
    if (!moat_ok(rc)) {
        moat_admin_free(a);
        return rc;
    }
    *out = a;
    return MOAT_RC_OK;
}

void moat_admin_set_token(struct moat_admin *a, const char *token)
{
    unsigned int len = 0;
    a->has_token = EVP_Digest(token, strlen(token), a->token_sha, &len, EVP_sha256(), NULL) == 1;
}

const char *moat_admin_where(const struct moat_admin *a)
{
    return a != NULL ? a->where : "off";
}

void moat_admin_free(struct moat_admin *a)
{
    if (a == NULL) {
        return;
    }
    while (a->conns != NULL) {
        a->conns->then_stop = 0;
        conn_close(a->conns);
    }
    if (a->watched) {
        moat_loop_del(a->o.loop, &a->w);
    }
    if (a->fd >= 0) {
        close(a->fd);
        struct stat st;
        if (a->is_unix && lstat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino) {
            unlink(a->path);
        }
    }
    OPENSSL_cleanse(a->token_sha, sizeof(a->token_sha));
    free(a);
}
