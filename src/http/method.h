/*
 * method.h: the request methods moat tells apart (RFC 9110 §9), shared by the protocol parsers
 * (HTTP/1 today, HTTP/2 next) and the handlers, so a handler never needs a protocol's headers.
 */
#ifndef MOAT_HTTP_METHOD_H
#define MOAT_HTTP_METHOD_H

#include "core/slice.h"

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is a valid token method, but not GET. */
enum moat_http_method {
    MOAT_HTTP_M_OTHER = 0, /* any other valid token: parsed fine, the router decides (405/501) */
    MOAT_HTTP_M_GET,
    MOAT_HTTP_M_HEAD,
    MOAT_HTTP_M_POST,
    MOAT_HTTP_M_PUT,
    MOAT_HTTP_M_DELETE,
    MOAT_HTTP_M_OPTIONS,
    MOAT_HTTP_M_CONNECT,
    MOAT_HTTP_M_TRACE,
    MOAT_HTTP_M_PATCH,
    MOAT_HTTP_M_COUNT /* keep last */
};

/* The method named by the token `m` (exact, case-sensitive), MOAT_HTTP_M_OTHER for the rest. */
enum moat_http_method moat_http_method_of(moat_slice m);

#endif
