/*
 * method.c: request methods by name (see method.h).
 */
#include "http/method.h"

#include <string.h>

enum moat_http_method moat_http_method_of(moat_slice m)
{
#define M(lit, id)                                                                                 \
    if (m.len == sizeof(lit) - 1 && memcmp(m.p, lit, sizeof(lit) - 1) == 0) {                      \
        return id;                                                                                 \
    }
    switch (m.len) {
    case 3:
        M("GET", MOAT_HTTP_M_GET);
        M("PUT", MOAT_HTTP_M_PUT);
        break;
    case 4:
        M("HEAD", MOAT_HTTP_M_HEAD);
        M("POST", MOAT_HTTP_M_POST);
        break;
    case 5:
        M("TRACE", MOAT_HTTP_M_TRACE);
        M("PATCH", MOAT_HTTP_M_PATCH);
        break;
    case 6:
        M("DELETE", MOAT_HTTP_M_DELETE);
        break;
    case 7:
        M("OPTIONS", MOAT_HTTP_M_OPTIONS);
        M("CONNECT", MOAT_HTTP_M_CONNECT);
        break;
    default:
        break;
    }
#undef M
    return MOAT_HTTP_M_OTHER;
}
