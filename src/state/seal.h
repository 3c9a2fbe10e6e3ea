/*
 * seal.h: what a node puts in a shared store that others must not read or forge (ticket keys,
 * later private keys): AES-256-GCM under a key every node derives from the same secret, bound
 * to the name it is stored under (as associated data), so a value copied to another key, or
 * changed, does not open.
 */
#ifndef MOAT_STATE_SEAL_H
#define MOAT_STATE_SEAL_H

#include "core/err.h"

#include <stddef.h>

#define MOAT_SEAL_KEY_BYTES 32
#define MOAT_SEAL_OVERHEAD (2 + 12 + 16) /* version, nonce, tag */

/* The sealing key from a shared secret (HKDF-SHA256; `purpose` keeps uses apart). */
MOAT_MUST_USE moat_rc moat_seal_key(const void *secret, size_t len, const char *purpose,
                                    unsigned char out[MOAT_SEAL_KEY_BYTES], struct moat_err *err);

/* Seal `len` bytes for the store name `name` into out (len + MOAT_SEAL_OVERHEAD bytes). */
MOAT_MUST_USE moat_rc moat_seal(const unsigned char key[MOAT_SEAL_KEY_BYTES], const char *name,
                                const void *in, size_t len, unsigned char *out,
                                struct moat_err *err);

/* Open what moat_seal made for `name`: *outlen bytes into out (room for inlen). MOAT_E_PEER
 * when it was not sealed with this key for this name (another secret, tampered, truncated). */
MOAT_MUST_USE moat_rc moat_unseal(const unsigned char key[MOAT_SEAL_KEY_BYTES], const char *name,
                                  const unsigned char *in, size_t inlen, unsigned char *out,
                                  size_t *outlen, struct moat_err *err);

#endif
