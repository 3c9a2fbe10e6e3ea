/*
 * ktls.h: whether this machine offers kernel TLS (kTLS), asked once at run time. kTLS needs
 * both an OpenSSL built with it and a kernel with the `tls` module; when both are there, a
 * server connection's records can be made by the kernel and a file sent with SSL_sendfile,
 * with no copy through user space. Many kernels (containers, microVMs) have no such module, so
 * nothing may depend on it: the answer decides, and the reason is kept for the log.
 */
#ifndef MOAT_TLS_KTLS_H
#define MOAT_TLS_KTLS_H

#include <stddef.h>

/* 1 when kTLS can be used here, 0 when not; `why` (may be NULL) says which and why, e.g.
 * "the kernel has no tls module (TCP_ULP \"tls\": No such file or directory)". The first call
 * probes (one loopback TCP connection and a setsockopt); later calls return its answer. */
int moat_ktls_available(char *why, size_t whylen);

#endif
