/*
 * account.h: moat's accounts at ACME CAs, kept in the store: one ES256 key per CA (made on
 * first use, stored secret), the account URL beside it, found again at the CA when the URL is
 * lost (newAccount with an existing key returns that account, RFC 8555 §7.3.1).
 *
 * Store keys: acme/accounts/<ca>/key.pem (secret) and acme/accounts/<ca>/account.json, with
 * <ca> the directory URL made into one key part.
 */
#ifndef MOAT_ACME_ACCOUNT_H
#define MOAT_ACME_ACCOUNT_H

#include "acme/client.h"
#include "pki/key.h"
#include "state/store.h"

/* The store folder of the CA at `directory` ("acme/accounts/<ca>") into out; NULL if too long. */
char *moat_acme_account_prefix(const char *directory, char *out, size_t outlen);

/*
 * Connect to the CA (its directory), load or make the account key and find or create the
 * account, so *out is ready to order. Two moat processes doing this at once make one account:
 * the key is made under a store lock.
 */
MOAT_MUST_USE moat_rc moat_acme_login(struct moat_store *st, const struct moat_acme_opts *o,
                                      const struct moat_acme_account_req *q, struct moat_acme **out,
                                      struct moat_err *err);

/*
 * The private key stored (secret) under store key k, or a new one of `type` stored there
 * first. A stored key that does not load is an error, or with replace_damaged is replaced (for
 * keys nothing depends on yet, like the key of an order in flight).
 */
MOAT_MUST_USE moat_rc moat_acme_key_get(struct moat_store *st, const char *k,
                                        enum moat_key_type type, int replace_damaged,
                                        EVP_PKEY **key, struct moat_err *err);

#endif
