/*
 * h2.h: the client's HTTP/2 exchange (`moat get --http2`, `moat trace --http2`), for a TLS
 * connection whose handshake picked ALPN "h2": one request on stream 1 and its response,
 * framed by Debian's libnghttp2 (its client session does the framing, HPACK, flow control and
 * the checks of RFC 9113 §8 on what the server sends), over the connection's transport.
 *
 * The hop gets the same facts as from the HTTP/1.1 exchange (http.h), so everything after it
 * (redirects, classification, output) does not care which protocol ran: the request and the
 * response heads as text (a first line "GET /x HTTP/2" / "HTTP/2 200", then the fields as
 * they crossed; the request's pseudo-header fields included), the status with the phrase from
 * http/status.h (HTTP/2 carries none), the body, the timings; plus every frame in h->h2.
 */
#ifndef MOAT_CLIENT_H2_H
#define MOAT_CLIENT_H2_H

#include "client/get.h"
#include "client/http.h"
#include "core/err.h"
#include "core/transport.h"

#define MOAT_CLIENT_H2_WINDOW (1u << 20) /* receive window, stream and connection, in bytes */

/*
 * On t (a TLS transport right after a handshake that chose "h2"): send the preface, SETTINGS
 * and the request of rq (its fields checked by moat_client_http_build before; fields that are
 * about the connection in HTTP/1 are not sent, RFC 9113 §8.2.2), read the response, pass its
 * body to cb (may be NULL), then end the connection with GOAWAY. Every wait is bounded by
 * deadline_ms. Fills h as moat_client_http_exchange does, and h->http2 and h->h2. On failure
 * h->cause and h->detail say why: TIMEOUT; CLOSED (nothing came); HTTP_PROTOCOL for the
 * server's RST_STREAM or GOAWAY (with its error code's name), frames nghttp2 refused (with
 * its words), a cut body, a head over MOAT_CLIENT_HEAD_MAX; LOCAL when cb refused; TLS_OTHER
 * for a TLS error (the caller refines it from the alerts). err holds the same words.
 */
MOAT_MUST_USE moat_rc moat_client_h2_exchange(struct moat_transport *t, double deadline_ms,
                                              const struct moat_client_req *rq,
                                              moat_client_body_cb cb, void *cb_arg,
                                              struct moat_client_hop *h, struct moat_err *err);

#endif
