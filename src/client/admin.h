/*
 * admin.h: the client side of moat's admin interface (serve/admin.h): one request to a running
 * server's admin listener, over its unix socket or loopback TCP, and its answer.
 */
#ifndef MOAT_CLIENT_ADMIN_H
#define MOAT_CLIENT_ADMIN_H

#include "core/buf.h"
#include "core/err.h"

/*
 * Send `method path` to the listener `spec` ("unix:PATH" or "HOST:PORT"; `token`, when not
 * NULL, goes as a Bearer token) and read the whole answer within timeout_ms. *status is its
 * status code and `body` gets its body. MOAT_E_IO when the listener cannot be reached (the
 * words say where, and what usually causes it), MOAT_E_PEER when the answer is not HTTP.
 */
MOAT_MUST_USE moat_rc moat_admin_call(const char *spec, const char *token, const char *method,
                                      const char *path, int timeout_ms, int *status,
                                      struct moat_buf *body, struct moat_err *err);

#endif
