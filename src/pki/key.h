/*
 * key.h: private keys: make one, save it safely, load one with a clear word for each way a key
 * file can be wrong.
 *
 * Keys are written as unencrypted PKCS#8 PEM, 0600, atomically (see fsutil.h). Loading never
 * prompts for a passphrase: a server starting at boot has nobody to type it, so an encrypted key
 * is refused with the command that decrypts it. Private keys are never logged or printed.
 */
#ifndef MOAT_PKI_KEY_H
#define MOAT_PKI_KEY_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/evp.h>

enum moat_key_type {
    MOAT_KEY_EC_P256 = 0,
    MOAT_KEY_EC_P384,
    MOAT_KEY_RSA2048,
    MOAT_KEY_RSA3072,
    MOAT_KEY_RSA4096,
    MOAT_KEY_ED25519,
    MOAT_KEY_TYPE_COUNT /* keep last */
};

/* The largest key or certificate file moat reads (a PEM chain is a few KiB). */
#define MOAT_KEY_FILE_MAX (1024 * 1024)

/* Generate a new key of type `t`. *out is owned by the caller (EVP_PKEY_free). */
MOAT_MUST_USE moat_rc moat_key_new(enum moat_key_type t, EVP_PKEY **out, struct moat_err *err);

/* The accepted key type names for people (help texts and the error for an unknown name). */
#define MOAT_KEY_TYPE_NAMES                                                                        \
    "p256 (also ecdsa, ec, ecdsa-p256, ec-p256, P-256, prime256v1, secp256r1), "                   \
    "p384 (also ecdsa-p384, ec-p384, P-384, secp384r1), rsa2048 (also rsa, rsa-2048, rsa:2048), "  \
    "rsa3072 (also rsa:3072), rsa4096 (also rsa:4096) or ed25519"

/*
 * Parse a key type name. ASCII case, '-', ':' and '_' do not matter ("RSA-2048", "rsa:2048" and
 * "rsa2048" are one name); the names are those of MOAT_KEY_TYPE_NAMES plus ecdsa256, ecdsa384,
 * nistp256 and nistp384. Anything else, spaces included, is MOAT_E_USAGE with the list of
 * accepted names.
 */
MOAT_MUST_USE moat_rc moat_key_parse_type(const char *s, enum moat_key_type *out,
                                          struct moat_err *err);

/*
 * Write `k` to `path` as unencrypted PKCS#8 PEM, mode 0600, atomically. Refuses (MOAT_E_USAGE)
 * to replace an existing file unless `force`: a private key overwritten by mistake cannot be
 * recovered. The folder must exist. The PEM text is wiped from memory afterwards.
 */
MOAT_MUST_USE moat_rc moat_key_save(const char *path, EVP_PKEY *k, int force, struct moat_err *err);

/* k as unencrypted PKCS#8 PEM text in memory (NUL-terminated; *len excludes the NUL), for a
 * store that writes it itself. The caller frees *out with OPENSSL_clear_free(*out, *len). */
MOAT_MUST_USE moat_rc moat_key_pem(EVP_PKEY *k, char **out, size_t *len, struct moat_err *err);

/*
 * Load a private key from a PEM (PKCS#8 or traditional "RSA/EC PRIVATE KEY") or DER file. A PEM
 * file may also hold certificates (a combined file): the first private key is taken. Each
 * failure names the file in err->where and says what to do: missing (MOAT_E_NOTFOUND),
 * unreadable (MOAT_E_IO), and as MOAT_E_CERT: empty, not PEM/DER, a certificate, CSR or public
 * key instead of a private key, an SSH key, encrypted with a passphrase, damaged, an unsupported
 * type (only ECDSA P-256/P-384/P-521, RSA 2048+ and Ed25519/Ed448 are accepted) or an RSA key
 * smaller than 2048 bits. *out is owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_key_load(const char *path, EVP_PKEY **out, struct moat_err *err);

/* Same as moat_key_load on `len` bytes in memory; `name` stands for the file in messages. */
MOAT_MUST_USE moat_rc moat_key_load_mem(const void *data, size_t len, const char *name,
                                        EVP_PKEY **out, struct moat_err *err);

/*
 * Refuse a key TLS cannot or should not use (MOAT_E_CERT, `name` stands for its file): EC keys
 * on curves other than P-256/P-384/P-521, RSA under 2048 bits, types that cannot sign TLS
 * handshakes. Ed25519/Ed448 pass. Used on loaded keys and on the public keys of CSRs.
 */
MOAT_MUST_USE moat_rc moat_key_check_supported(EVP_PKEY *k, const char *name, struct moat_err *err);

/* 1 when group or others may read or write `path` (worth a warning for a private key), 0 when
 * not or when it cannot be checked. */
int moat_key_file_too_open(const char *path);
/* Refuse a key file every user of the machine may read or write: MOAT_E_CERT naming the mode
 * and the chmod that fixes it. Group access passes (0640 root:ssl-cert is Debian's way). */
MOAT_MUST_USE moat_rc moat_key_file_check_mode(const char *path, struct moat_err *err);

/* "ECDSA P-256", "RSA 2048", "Ed25519", ... written into buf (n bytes); returns buf. A NULL key
 * gives "none". */
const char *moat_key_describe(EVP_PKEY *k, char *buf, size_t n);

#endif
