/*
 * account.h: moat's accounts at ACME CAs, kept in the store: one ES256 key per CA (made on
 * first use, stored secret), the account URL beside it, found again at the CA when the URL is
 * lost (newAccount with an existing key returns that account, RFC 8555 §7.3.1). And what
 * `moat acme account` does to one: show it, replace its key (§7.3.5), deactivate it (§7.3.6).
 *
 * Store keys: acme/accounts/<ca>/key.pem (secret), acme/accounts/<ca>/account.json (the URL,
 * the contacts, the status as moat last saw it) and, only while a key rollover is under way or
 * after one was interrupted, acme/accounts/<ca>/key.next.pem (secret); <ca> is the directory
 * URL made into one key part.
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
 * the key is made under a store lock. With q->only_existing no key is made: a state folder
 * without one is MOAT_E_NOTFOUND, saying how to make the account.
 *
 * Refused before any exchange (MOAT_E_CONFIG, with the way out): an account the store records
 * as deactivated. A key.next.pem left by an interrupted rollover is settled first, by asking
 * the CA whether it knows that key: yes, it becomes key.pem; no (accountDoesNotExist), it is
 * dropped; no answer, the login fails and both stay for the next attempt.
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

/*
 * Replace the account key of a (logged in, so a->kid is set) with a new ES256 key (RFC 8555
 * §7.3.5): the new key is stored as key.next.pem first, then the CA is told, then it becomes
 * key.pem and key.next.pem goes, so a crash at any point leaves a key the CA knows (see
 * moat_acme_login for how an interrupted rollover is settled). On success a signs with the new
 * key. A CA without keyChange is refused (MOAT_E_PEER) before anything is made; a CA that
 * refuses the change leaves the account on its old key.
 */
MOAT_MUST_USE moat_rc moat_acme_account_rollover(struct moat_store *st, struct moat_acme *a,
                                                 struct moat_err *err);

/*
 * Deactivate the account of a (logged in) for good (RFC 8555 §7.3.6): the CA then refuses
 * every request it signs, and account.json records status "deactivated", so moat_acme_login
 * refuses it without asking the CA. The key stays in the store.
 */
MOAT_MUST_USE moat_rc moat_acme_account_deactivate(struct moat_store *st, struct moat_acme *a,
                                                   struct moat_err *err);

/* An account as `moat acme account` shows it. Strings owned; see _info_clear. */
struct moat_acme_account_info {
    char *url;       /* the account URL */
    char *directory; /* the CA's directory URL */
    char *status;    /* "valid", "deactivated" or "revoked" (RFC 8555 §7.1.2) */
    char **contacts; /* as the CA holds them ("mailto:..."); non-strings skipped */
    size_t ncontacts;
    char *orders;        /* the URL of the account's orders list; NULL when the CA gave none */
    char *created_at;    /* "createdAt" (Boulder sends it; not in RFC 8555); NULL when absent */
    char thumbprint[64]; /* RFC 7638 thumbprint of the account key; "" when unknown */
    char key_type[64];   /* "ECDSA P-256", ...; "" when unknown */
    int from_store;      /* 1: read from the store, the CA not asked (a deactivated account) */
};

/*
 * Fill *out (zeroed first) from an account object as the CA sent it and the account's url
 * (borrowed; both copied). The object is untrusted: not an object, or without a string
 * "status", is MOAT_E_PEER. On failure *out holds nothing to free.
 */
MOAT_MUST_USE moat_rc moat_acme_account_info_parse(const json_t *acct, const char *url,
                                                   struct moat_acme_account_info *out,
                                                   struct moat_err *err);
/* Free what *i holds and zero it; clearing twice is harmless. */
void moat_acme_account_info_clear(struct moat_acme_account_info *i);

/*
 * The account of the store at the CA o->directory, as the CA has it now (a POST-as-GET of the
 * account URL, after moat_acme_login with only_existing: nothing is created). An account the
 * store records as deactivated is shown from the store (from_store), without asking the CA,
 * which would refuse. The thumbprint is the stored key's.
 */
MOAT_MUST_USE moat_rc moat_acme_account_show(struct moat_store *st, const struct moat_acme_opts *o,
                                             struct moat_acme_account_info *out,
                                             struct moat_err *err);

#endif
