/*
 * http.h: one HTTP/1.1 request and its response, for the client.
 *
 * The request head is built here (Host, User-Agent, Accept, Content-Length, Connection: close,
 * and the user's -H fields, which replace a default of the same name or, empty, remove it); the
 * exchange runs on the HTTP/1.1 client session (http1/client.h), the one place that frames
 * answers (interim 1xx skipped, RFC 9112 §6.3 body framing, chunked decoding) for the proxy
 * and the client alike, so the client refuses exactly what the server refuses. Each step is
 * timed into the hop.
 */
#ifndef MOAT_CLIENT_HTTP_H
#define MOAT_CLIENT_HTTP_H

#include "client/get.h"
#include "core/buf.h"
#include "core/err.h"
#include "http1/client.h"

#define MOAT_CLIENT_HEAD_MAX (64 * 1024) /* response head bytes moat reads at most */

struct moat_client_req {
    const char *method; /* "GET", "HEAD", "POST"... */
    const struct moat_client_url *url;
    const char *const *headers; /* the user's "Name: value" lines */
    size_t nheaders;
    const char *body; /* may be NULL */
    size_t body_len;
    int body_is_form; /* default Content-Type for -d */
    int follow;       /* -L: a redirect's own body is counted, not delivered */
};

/*
 * Write the request head into `out` (which the caller initialised with a limit). Refuses
 * (MOAT_E_USAGE, naming the field) a method that is not a token, a -H line without a colon or
 * with a name that is not a token, and a value holding CR, LF or NUL (header injection).
 */
MOAT_MUST_USE moat_rc moat_client_http_build(const struct moat_client_req *rq, struct moat_buf *out,
                                             struct moat_err *err);

/* The user's -H line for `name` (any case), or NULL; *value is its value without surrounding
 * blanks, a slice into that line. The first line for a name is the one that counts; an empty
 * value removes moat's default field of that name. */
const char *moat_client_http_user_field(const struct moat_client_req *rq, const char *name,
                                        moat_slice *value);

/*
 * Make c the session of a connected socket, with the client's limits: plain, owning fd (layer
 * TLS over c->tr now for https://); moat_h1c_close closes it. Cannot fail.
 */
void moat_client_http_open(struct moat_h1c *c, int fd);

/*
 * On c (fresh from moat_client_http_open): send `head` and the body, then read the response
 * (skipping 1xx interim answers) and pass its body to `cb` (may be NULL), every wait bounded by
 * deadline_ms. A plain transport is traced into h->trace. Fills h's HTTP facts (req_head,
 * resp_head, status, reason, body_bytes, location, timings). On failure h->cause and h->detail
 * say why (TIMEOUT, CLOSED, HTTP_PROTOCOL, LOCAL when cb refused, TLS_OTHER for a TLS error:
 * the caller refines it from the trace's alerts) and the same words are in err.
 */
MOAT_MUST_USE moat_rc moat_client_http_exchange(struct moat_h1c *c, double deadline_ms,
                                                const struct moat_buf *head,
                                                const struct moat_client_req *rq,
                                                moat_client_body_cb cb, void *cb_arg,
                                                struct moat_client_hop *h, struct moat_err *err);

#endif
