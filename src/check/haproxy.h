/*
 * haproxy.h: moat check's reading of an HAProxy configuration's TLS listeners, offline: what
 * each certificate of each `bind ... ssl` line would be offered with, built from the bind
 * line, the global ssl-default-bind-* settings, crt-list lines and HAProxy 2.6's defaults, with
 * this machine's OpenSSL expanding the cipher strings (offline.h).
 */
#ifndef MOAT_CHECK_HAPROXY_H
#define MOAT_CHECK_HAPROXY_H

#include "check/scan.h"
#include "core/err.h"

/* Looks like an HAProxy file: a section line (global, defaults, frontend, listen, backend) and
 * a bind line. */
int moat_check_haproxy_looks(const char *text);

/*
 * Read `path` and make one offline scan per certificate of each TLS bind line into
 * out[0..*n) (at most max), each the caller's (moat_check_scan_free). cafile: extra trust for
 * the verification. MOAT_E_IO / MOAT_E_CONFIG with "file:line: ..." for a file that does not
 * read or parse, or has no TLS listener.
 */
MOAT_MUST_USE moat_rc moat_check_haproxy(const char *path, const char *cafile,
                                         struct moat_check_scan **out, size_t max, size_t *n,
                                         struct moat_err *err);

#endif
