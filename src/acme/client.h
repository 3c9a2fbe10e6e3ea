/*
 * client.h: one ACME CA as moat talks to it (RFC 8555): its directory, the nonces, signed
 * requests (POST and POST-as-GET) with badNonce retried, problem documents turned into plain
 * words, and the account.
 *
 * Every exchange is an HTTPS request through moat's strict client (client/get.h: full
 * verification, every failure explained), synchronous and bounded in time: ACME runs on its
 * own thread or in the `moat acme` command, never on a serving loop. Not thread-safe: one
 * struct moat_acme per thread.
 */
#ifndef MOAT_ACME_CLIENT_H
#define MOAT_ACME_CLIENT_H

#include "core/err.h"

#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#define MOAT_ACME_LE_PRODUCTION "https://acme-v02.api.letsencrypt.org/directory"
#define MOAT_ACME_LE_STAGING "https://acme-staging-v02.api.letsencrypt.org/directory"
#define MOAT_ACME_URL_MAX 2048
#define MOAT_ACME_BODY_MAX (1024 * 1024) /* bytes of one answer moat reads at most */

/* A progress line for people (CLI: stderr; server: the log). level: 0 info, 1 warning. */
typedef void (*moat_acme_say_fn)(void *arg, int level, const char *line);

struct moat_acme_opts {
    const char *directory; /* URL; "staging"/"production" name Let's Encrypt's */
    const char *cafile;    /* trust only this bundle for the CA's HTTPS; NULL: the system store */
    unsigned timeout_ms;   /* for each exchange; 0: 30 s */
    moat_acme_say_fn say;  /* may be NULL */
    void *say_arg;
};

/* The directory (RFC 8555 §7.1.1), strings owned. */
struct moat_acme_directory {
    char *new_nonce, *new_account, *new_order, *revoke_cert, *key_change;
    char *renewal_info;     /* RFC 9773 ARI; NULL when the CA has none */
    char *terms_of_service; /* meta; NULL when none */
    char *website;
    int external_account_required;
    char **caa_identities;
    size_t ncaa_identities;
    char **profiles; /* meta.profiles' names (draft-ietf-acme-profiles); none: NULL */
    size_t nprofiles;
};

/* One answer. */
struct moat_acme_resp {
    int status;
    char *head;          /* the response head as received */
    unsigned char *body; /* NUL-terminated; len excludes it */
    size_t len;
    json_t *json; /* the body parsed when it is JSON; NULL otherwise */
    char location[MOAT_ACME_URL_MAX];
    long retry_after_s; /* -1 when the answer had no usable Retry-After */
};
void moat_acme_resp_clear(struct moat_acme_resp *r);
/* The idx-th value of the header field `name` (any case) into out; 0 when there is none. */
int moat_acme_resp_field(const struct moat_acme_resp *r, const char *name, size_t idx, char *out,
                         size_t outlen);
/* The idx-th Link target with rel=`rel` (RFC 8288) into out; 0 when there is none. */
int moat_acme_resp_link(const struct moat_acme_resp *r, const char *rel, size_t idx, char *out,
                        size_t outlen);

struct moat_acme {
    char *directory_url;
    char *cafile;
    unsigned timeout_ms;
    moat_acme_say_fn say;
    void *say_arg;
    struct moat_acme_directory dir;
    EVP_PKEY *key; /* the account key (a reference); NULL before moat_acme_use_key */
    char *kid;     /* the account URL; NULL: requests carry the JWK (newAccount) */
    char nonce[256];
    /* Why the last request failed, machine-readable: the problem type's last part
     * ("badNonce", "rateLimited", ...), "" when it was not a problem document. */
    char problem[64];
    /* The challenge type the CA last refused (a validation that failed), "" when none: the
     * next attempt tries the other types first. */
    char failed_challenge[16];
    long retry_after_s; /* of the last failed request; -1 none */
};

/*
 * Fetch the directory at o->directory and check it has what moat needs (newNonce, newAccount,
 * newOrder; https URLs). MOAT_E_PEER for an answer that is not a directory, with what came.
 */
MOAT_MUST_USE moat_rc moat_acme_new(const struct moat_acme_opts *o, struct moat_acme **out,
                                    struct moat_err *err);
void moat_acme_free(struct moat_acme *a);

/* The directory URL a name stands for: "production"/"letsencrypt", "staging", or itself. */
const char *moat_acme_directory_url(const char *name_or_url);

/* Sign with `key` (a reference is taken), as account `kid` (NULL: not known yet). */
void moat_acme_use_key(struct moat_acme *a, EVP_PKEY *key, const char *kid);

/*
 * A signed POST of `payload` (a JSON text; NULL: POST-as-GET) to url, with Accept `accept`
 * (NULL: application/json). A nonce the CA rejects (badNonce) is retried with the fresh one it
 * sent, up to 8 times. Any answer that is not 2xx fails: a problem document's type, detail and
 * subproblems in plain words in err (MOAT_E_LIMIT for rateLimited, MOAT_E_PEER otherwise) and
 * in a->problem / a->retry_after_s. *r holds the answer on success and on a CA's refusal.
 */
MOAT_MUST_USE moat_rc moat_acme_post(struct moat_acme *a, const char *url, const char *payload,
                                     const char *accept, struct moat_acme_resp *r,
                                     struct moat_err *err);

/*
 * An unauthenticated GET of url (RFC 9773 §4.2: the renewalInfo resource is read with a plain
 * GET, not POST-as-GET), with Accept `accept` (NULL: application/json). Only a failure to get
 * an answer fails (MOAT_E_PEER, in words); *r holds the answer whatever its status, for the
 * caller to judge (its JSON parsed, its Retry-After read).
 */
MOAT_MUST_USE moat_rc moat_acme_get(struct moat_acme *a, const char *url, const char *accept,
                                    struct moat_acme_resp *r, struct moat_err *err);

/* What an account should be. */
struct moat_acme_account_req {
    const char *const *contacts; /* e-mail addresses (without "mailto:") */
    size_t ncontacts;
    int agree_tos;        /* the operator agreed to the CA's terms of service */
    const char *eab_kid;  /* External Account Binding, when the CA requires it */
    const char *eab_hmac; /* its MAC key, base64url */
    int only_existing;    /* find the account of this key; never create one */
};

/*
 * Find the account of the key given to moat_acme_use_key, or create it (RFC 8555 §7.3), and
 * remember its URL as the kid. A CA that wants terms agreed to, or an EAB, and did not get
 * them is refused here with the fix (MOAT_E_CONFIG). *account (may be NULL) receives the
 * account object (json_decref).
 */
MOAT_MUST_USE moat_rc moat_acme_account(struct moat_acme *a, const struct moat_acme_account_req *q,
                                        json_t **account, struct moat_err *err);

/* A progress line through a->say (nothing when it is NULL). */
void moat_acme_say(struct moat_acme *a, int level, const char *fmt, ...) MOAT_PRINTF(3, 4);

/* Problem type names in plain words ("the CA saw a CAA record that forbids it"); never NULL. */
const char *moat_acme_problem_words(const char *type);

/*
 * A JSON object's string member, or NULL when it is missing or not a string (the CA's replies
 * are untrusted input: every member is checked before use).
 */
const char *moat_acme_json_str(const json_t *o, const char *key);

#endif
