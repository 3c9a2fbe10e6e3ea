/*
 * status.h: HTTP status codes and their reason phrases (RFC 9110 §15), the one table every
 * protocol and handler of moat uses: HTTP/1 status lines, error pages, logs.
 */
#ifndef MOAT_HTTP_STATUS_H
#define MOAT_HTTP_STATUS_H

/* "OK", "Not Found", ...: the RFC 9110 phrase for `status`; for a code it does not name, the
 * phrase of its class ("Client Error" for an unnamed 4xx), or "Unknown" outside 100..599. */
const char *moat_http_reason(int status);

/* 1 for answers that never carry content: 1xx, 204, 304 (RFC 9110 §6.4.1). */
static inline int moat_http_status_bodyless(int status)
{
    return status == 204 || status == 304 || (status >= 100 && status < 200);
}

#endif
