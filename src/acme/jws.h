/*
 * jws.h: the JSON Web Signature pieces that ACME needs (RFC 7515, 7517, 7518, 7638; RFC 8555
 * §6.2): base64url, a public key as a JWK and its thumbprint, and the flattened JWS JSON every
 * ACME POST carries. All cryptography is OpenSSL's; all JSON is jansson's.
 *
 * Account keys: ECDSA P-256 (ES256, moat's default and what every ACME CA takes), P-384
 * (ES384) and RSA of 2048 bits or more (RS256).
 */
#ifndef MOAT_ACME_JWS_H
#define MOAT_ACME_JWS_H

#include "core/err.h"

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* base64url without padding into a new string (free()); NULL when out of memory. */
char *moat_b64url(const void *p, size_t n);
/* Decode base64url (padding optional, no other characters); *out is freed with free(). */
MOAT_MUST_USE moat_rc moat_b64url_decode(const char *s, unsigned char **out, size_t *len,
                                         struct moat_err *err);

/* "ES256", "ES384" or "RS256" for a key moat can sign ACME requests with; NULL otherwise. */
const char *moat_jws_alg(EVP_PKEY *k);
/* MOAT_OK when moat_jws_alg(k) is not NULL, else MOAT_E_CERT saying which keys work. */
MOAT_MUST_USE moat_rc moat_jws_key_check(EVP_PKEY *k, struct moat_err *err);

/* The public JWK of k (members in the RFC 7638 order: what the thumbprint hashes). */
MOAT_MUST_USE moat_rc moat_jwk_new(EVP_PKEY *k, json_t **out, struct moat_err *err);
/* base64url(SHA-256(canonical JWK)) (RFC 7638) into out (at least 44 bytes). */
MOAT_MUST_USE moat_rc moat_jwk_thumbprint(EVP_PKEY *k, char *out, size_t outlen,
                                          struct moat_err *err);

/*
 * A flattened JWS (RFC 7515 §7.2.2) of `payload` (NULL: the empty payload of a POST-as-GET)
 * signed with k. The protected header is {"alg", "jwk" (kid NULL) or "kid", "nonce" (omitted
 * when NULL, as the inner JWS of a key change is), "url"}. *out is a new JSON text (free()).
 */
MOAT_MUST_USE moat_rc moat_jws_sign(EVP_PKEY *k, const char *kid, const char *nonce,
                                    const char *url, const char *payload, char **out,
                                    struct moat_err *err);

/*
 * The inner JWS of an account key change (RFC 8555 §7.3.5): the payload {"account": kid,
 * "oldKey": the public JWK of old_key}, signed by new_key with {"alg", "jwk" (new_key's),
 * "url"} and no nonce. It goes as the payload of a POST to the same url (the CA's keyChange),
 * signed as usual by the old key as account kid. *out is a new JSON text (free()).
 */
MOAT_MUST_USE moat_rc moat_jws_key_change(EVP_PKEY *old_key, EVP_PKEY *new_key, const char *kid,
                                          const char *url, char **out, struct moat_err *err);

/*
 * The externalAccountBinding object of a newAccount request (RFC 8555 §7.3.4): an HS256 JWS
 * of the account's public JWK under the CA's MAC key (base64url, as CAs hand it out), with
 * the CA's key id and the newAccount URL. *out is owned by the caller (json_decref).
 */
MOAT_MUST_USE moat_rc moat_jws_eab(const char *eab_kid, const char *eab_hmac_b64url,
                                   EVP_PKEY *account_key, const char *url, json_t **out,
                                   struct moat_err *err);

/* The key authorization "token.thumbprint" (RFC 8555 §8.1) into a new string (free()). */
MOAT_MUST_USE moat_rc moat_acme_key_authz(EVP_PKEY *account_key, const char *token, char **out,
                                          struct moat_err *err);

#endif
