/*
 * nginx.h: moat check's reading of an nginx configuration's TLS servers, offline: what each
 * `server` block with an ssl listener would offer, built from its directives (and the http
 * block's, which it inherits) and nginx 1.22's defaults, with this machine's OpenSSL expanding
 * the cipher strings. Only the TLS-relevant directives are read; includes are followed
 * (relative to the main file's folder, globs too).
 */
#ifndef MOAT_CHECK_NGINX_H
#define MOAT_CHECK_NGINX_H

#include "check/scan.h"
#include "core/err.h"

/* Looks like an nginx file (an http, server or events block with ssl_ or listen lines). */
int moat_check_nginx_looks(const char *text);

/*
 * Read `path` and make one offline scan per TLS server block into out[0..*n) (at most max), each
 * the caller's (moat_check_scan_free). cafile: extra trust for the certificate verification.
 * MOAT_E_IO / MOAT_E_CONFIG with "file:line: ..." for a file that does not read or parse.
 */
MOAT_MUST_USE moat_rc moat_check_nginx(const char *path, const char *cafile,
                                       struct moat_check_scan **out, size_t max, size_t *n,
                                       struct moat_err *err);

#endif
