/*
 * csr.h: certificate signing requests (PKCS#10, RFC 2986): make one for names with a key, and
 * load one and check it before a CA signs it.
 *
 * A CSR carries a public key, a subject and requested extensions, signed with the private key:
 * the signature proves that whoever sent it holds the key. moat puts the names in a
 * subjectAltName extension request (RFC 2985 §5.4.2 extensionRequest), the only place clients
 * look for them, and copies the first name into the CN for people reading it.
 */
#ifndef MOAT_PKI_CSR_H
#define MOAT_PKI_CSR_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/*
 * A CSR for `names` (checked with moat_names_check; e-mail and URI names are allowed since the
 * CA decides what kind of certificate it signs), signed with `key`. *out is owned by the
 * caller (X509_REQ_free).
 */
MOAT_MUST_USE moat_rc moat_csr_new(const char *const *names, size_t n, EVP_PKEY *key,
                                   X509_REQ **out, struct moat_err *err);

/*
 * Load a CSR from a PEM ("CERTIFICATE REQUEST" or the older "NEW CERTIFICATE REQUEST") or DER
 * file and check it: its self-signature verifies with its own key, and the key is one moat
 * signs (RSA 2048+, ECDSA P-256/P-384/P-521, Ed25519/Ed448). Failures name the file in
 * err->where: missing (MOAT_E_NOTFOUND), unreadable (MOAT_E_IO), and as MOAT_E_CERT: empty, a
 * certificate or private key given instead, damaged, a signature that does not verify (the
 * CSR was altered, or signed with another key), a weak or unsupported key.
 * *out is owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_csr_load(const char *path, X509_REQ **out, struct moat_err *err);

/* Same on `len` bytes in memory; `name` stands for the file in messages. */
MOAT_MUST_USE moat_rc moat_csr_load_mem(const void *data, size_t len, const char *name,
                                        X509_REQ **out, struct moat_err *err);

/*
 * The names a CSR asks for: its subjectAltName request (DNS, IP, e-mail, URI, in order), or when
 * it has none, its subject CN if that is a valid name (old tools put the host name only there).
 * MOAT_E_CERT when it asks for no usable name. *names is freed with moat_names_free.
 */
MOAT_MUST_USE moat_rc moat_csr_names(X509_REQ *req, char ***names, size_t *n, struct moat_err *err);

/* Write a CSR as PEM to `path` (0644, atomically); an existing file is replaced only when
 * `force` (MOAT_E_USAGE otherwise). */
MOAT_MUST_USE moat_rc moat_csr_save(const char *path, X509_REQ *req, int force,
                                    struct moat_err *err);

#endif
