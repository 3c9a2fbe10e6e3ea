/*
 * admin.h: the admin listener of `moat serve`: a small HTTP/1.1 endpoint on the main thread's
 * loop, for `moat status`, `moat reload`, `moat stop`, `moat certs`, `moat upstreams` and
 * Prometheus.
 *
 * It listens on a unix socket (0600, and only peers of the server's own user or root are
 * answered: SO_PEERCRED) or on a loopback TCP address, where every request must carry the
 * token (Authorization: Bearer TOKEN, or Basic with the token as the password, so a browser
 * can open the status page) and name a loopback host (no DNS rebinding), and where a request
 * a web page sent from elsewhere (an Origin or Sec-Fetch-Site that is not this listener) is
 * refused, so no page in the operator's browser can reload or stop the server.
 *
 * One request per connection (Connection: close), heads up to 8 KiB, no bodies, 5 s to send
 * the request, at most 32 connections at once. What each path answers is the caller's
 * (`handle`); this file is the listener, the parsing and the access checks.
 */
#ifndef MOAT_SERVE_ADMIN_H
#define MOAT_SERVE_ADMIN_H

#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/slice.h"
#include "http/method.h"

struct moat_admin;

struct moat_admin_req {
    enum moat_http_method method;
    moat_slice path;  /* up to '?' */
    moat_slice query; /* after it, without it */
};

/* What the handler fills in: status (default 200), a content type (static string; default
 * JSON) and the body. `then_stop`: once this answer is out, call the opts' `stop`. */
struct moat_admin_answer {
    int status;
    const char *type;
    const char *allow; /* for a 405: the methods the path takes (static) */
    const char *csp;   /* a Content-Security-Policy to send (static), or NULL */
    struct moat_buf *body;
    int then_stop;
};

typedef void (*moat_admin_fn)(void *arg, const struct moat_admin_req *rq,
                              struct moat_admin_answer *an);

struct moat_admin_opts {
    /* "unix:PATH" or "HOST:PORT" (a loopback address); the configuration checked the form */
    const char *spec;
    const char *token; /* TCP: required (the configuration read it); unix: NULL */
    struct moat_loop *loop;
    moat_admin_fn handle;
    void (*stop)(void *arg);
    void *arg;
};

/*
 * Start listening. A unix socket whose path exists is taken over only when nothing answers on
 * it (a stale one left by a crash); one a live process answers on is MOAT_E_CONFIG ("another
 * moat uses it"). The socket is made 0600 before it listens (umask), so no other user can
 * connect in between.
 */
MOAT_MUST_USE moat_rc moat_admin_open(const struct moat_admin_opts *o, struct moat_admin **out,
                                      struct moat_err *err);
/* A new token for a TCP listener (a reload rotated it); copied as its digest. */
void moat_admin_set_token(struct moat_admin *a, const char *token);
/* Where it listens, for logs: "unix:/path" or "127.0.0.1:9090". */
const char *moat_admin_where(const struct moat_admin *a);
/* Close every connection and the listener; a unix socket is removed when it is still the one
 * this listener made (not one a newer server put there). NULL does nothing. */
void moat_admin_free(struct moat_admin *a);

/* The longest unix socket path the kernel takes (sun_path less its terminator). */
#define MOAT_ADMIN_UNIX_MAX 107

#endif
