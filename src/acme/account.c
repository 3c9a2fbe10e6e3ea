/*
 * account.c: load or create the ACME account of a CA (see account.h).
 */
#include "acme/account.h"

#include "pki/key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#define LOCK_WAIT_S 60

char *moat_acme_account_prefix(const char *directory, char *out, size_t outlen)
{
    const char *d = moat_acme_directory_url(directory);
    const char *s = strstr(d, "://");
    char part[MOAT_STORE_KEY_MAX];
    if (moat_store_key_part(s ? s + 3 : d, part, sizeof(part)) == NULL) {
        return NULL;
    }
    int n = snprintf(out, outlen, "acme/accounts/%s", part);
    return n > 0 && (size_t)n < outlen ? out : NULL;
}

/* Take a store lock, waiting up to LOCK_WAIT_S for another holder. */
static moat_rc lock_wait(struct moat_store *st, const char *name, struct moat_store_lock **l,
                         struct moat_err *err)
{
    for (int i = 0;; i++) {
        moat_rc rc = moat_store_lock(st, name, LOCK_WAIT_S * 2, l, err);
        if (rc.kind != MOAT_E_AGAIN || i >= LOCK_WAIT_S * 10) {
            return rc;
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

moat_rc moat_acme_key_get(struct moat_store *st, const char *k, enum moat_key_type type,
                          int replace_damaged, EVP_PKEY **key, struct moat_err *err)
{
    *key = NULL;
    unsigned char *pem = NULL;
    size_t len = 0;
    moat_rc rc = moat_store_get(st, k, 64 * 1024, &pem, &len, err);
    if (moat_ok(rc)) {
        rc = moat_key_load_mem(pem, len, k, key, err);
        OPENSSL_clear_free(pem, len);
        if (moat_ok(rc) || !replace_damaged) {
            return rc;
        }
    } else if (rc.kind != MOAT_E_NOTFOUND) {
        return rc;
    }
    if (err != NULL) {
        moat_err_clear(err); /* "not found" was the expected answer, not this call's error */
    }
    MOAT_TRY(moat_key_new(type, key, err));
    char *text = NULL;
    rc = moat_key_pem(*key, &text, &len, err);
    if (moat_ok(rc)) {
        rc = moat_store_put(st, k, text, len, 1, err);
        OPENSSL_clear_free(text, len);
    }
    if (!moat_ok(rc)) {
        EVP_PKEY_free(*key);
        *key = NULL;
    }
    return rc;
}

moat_rc moat_acme_login(struct moat_store *st, const struct moat_acme_opts *o,
                        const struct moat_acme_account_req *q, struct moat_acme **out,
                        struct moat_err *err)
{
    *out = NULL;
    char prefix[MOAT_STORE_KEY_MAX - 32];
    if (moat_acme_account_prefix(o->directory, prefix, sizeof(prefix)) == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the ACME directory URL is too long");
    }
    struct moat_acme *a = NULL;
    MOAT_TRY(moat_acme_new(o, &a, err));
    char lockname[MOAT_STORE_KEY_MAX];
    snprintf(lockname, sizeof(lockname), "%s/lock", prefix);
    struct moat_store_lock *lock = NULL;
    EVP_PKEY *key = NULL;
    json_t *acct = NULL;
    moat_rc rc = lock_wait(st, lockname, &lock, err);
    if (moat_ok(rc)) {
        /* A damaged account key is refused, never replaced: replacing it loses the account. */
        char k[MOAT_STORE_KEY_MAX];
        snprintf(k, sizeof(k), "%s/key.pem", prefix);
        rc = moat_acme_key_get(st, k, MOAT_KEY_EC_P256, 0, &key, err);
    }
    if (moat_ok(rc)) {
        moat_acme_use_key(a, key, NULL);
        /* An account this store made before: found again without asking for what creating
         * it took (terms of service, EAB); a CA that lost it gets a new one. */
        char k[MOAT_STORE_KEY_MAX];
        snprintf(k, sizeof(k), "%s/account.json", prefix);
        unsigned char *known = NULL;
        size_t klen = 0;
        int have = moat_ok(moat_store_get(st, k, 64 * 1024, &known, &klen, NULL));
        free(known);
        if (have) {
            struct moat_acme_account_req find = {.only_existing = 1};
            struct moat_err e2 = {0};
            rc = moat_acme_account(a, &find, &acct, &e2);
            if (!moat_ok(rc) && strcmp(a->problem, "accountDoesNotExist") == 0) {
                rc = moat_acme_account(a, q, &acct, err);
            } else if (!moat_ok(rc) && err != NULL) {
                *err = e2;
            }
        } else {
            rc = moat_acme_account(a, q, &acct, err);
        }
    }
    if (moat_ok(rc)) {
        char k[MOAT_STORE_KEY_MAX];
        snprintf(k, sizeof(k), "%s/account.json", prefix);
        json_t *rec = json_pack("{s:s, s:s, s:O?}", "url", a->kid, "directory", a->directory_url,
                                "contact", json_object_get(acct, "contact"));
        char *text = rec ? json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(rec);
        rc = text ? moat_store_put(st, k, text, strlen(text), 0, err)
                  : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        free(text);
    }
    json_decref(acct);
    EVP_PKEY_free(key);
    moat_store_unlock(lock);
    if (!moat_ok(rc)) {
        moat_acme_free(a);
        return rc;
    }
    *out = a;
    return MOAT_RC_OK;
}
