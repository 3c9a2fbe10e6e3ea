/*
 * account.c: load or create the ACME account of a CA, and what `moat acme account` does to
 * it: show, key rollover, deactivation (see account.h).
 *
 * The account's key is the account: lose it and the account is gone, store a key the CA does
 * not know and every request fails. So a rollover never has only one copy of a key the CA may
 * hold: the new key is in the store (key.next.pem) before the CA hears of it, and the old one
 * (key.pem) is replaced only after the CA said yes. Whoever logs in next and finds key.next.pem
 * asks the CA which of the two it knows.
 */
#include "acme/account.h"

#include "acme/jws.h"
#include "pki/key.h"

#include <stdarg.h>
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

/* Append what to do now to err's message ("...; fix"): context lines are too short for it.
 * A long message is cut to keep the fix whole. */
static void add_fix(struct moat_err *err, const char *fmt, ...) MOAT_PRINTF(2, 3);
static void add_fix(struct moat_err *err, const char *fmt, ...)
{
    if (err == NULL) {
        return;
    }
    char fix[MOAT_ERR_MSG_MAX / 2], msg[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fix, sizeof(fix), fmt, ap);
    va_end(ap);
    memcpy(msg, err->msg, sizeof(msg));
    int room = (int)(sizeof(err->msg) - strlen(fix) - 3);
    snprintf(err->msg, sizeof(err->msg), "%.*s; %s", room, msg, fix);
}

/* The store key `name` of the account folder `prefix` into out. */
static const char *account_key(char *out, size_t n, const char *prefix, const char *name)
{
    snprintf(out, n, "%s/%s", prefix, name);
    return out;
}

/* The private key stored under k: MOAT_E_NOTFOUND (err filled) when there is none. */
static moat_rc load_key(struct moat_store *st, const char *k, EVP_PKEY **key, struct moat_err *err)
{
    *key = NULL;
    unsigned char *pem = NULL;
    size_t len = 0;
    MOAT_TRY(moat_store_get(st, k, 64 * 1024, &pem, &len, err));
    moat_rc rc = moat_key_load_mem(pem, len, k, key, err);
    OPENSSL_clear_free(pem, len);
    return rc;
}

/* Store key (a private key) under k, secret: 0600, atomic; the PEM text is wiped after. */
static moat_rc put_key(struct moat_store *st, const char *k, EVP_PKEY *key, struct moat_err *err)
{
    char *text = NULL;
    size_t len = 0;
    MOAT_TRY(moat_key_pem(key, &text, &len, err));
    moat_rc rc = moat_store_put(st, k, text, len, 1, err);
    OPENSSL_clear_free(text, len);
    return rc;
}

/* account.json of prefix into *rec (json_decref), NULL when there is none or it is not a JSON
 * object (login writes it again); only the store failing is an error. */
static moat_rc read_record(struct moat_store *st, const char *prefix, json_t **rec,
                           struct moat_err *err)
{
    *rec = NULL;
    char k[MOAT_STORE_KEY_MAX];
    unsigned char *text = NULL;
    size_t len = 0;
    moat_rc rc = moat_store_get(st, account_key(k, sizeof(k), prefix, "account.json"), 256 * 1024,
                                &text, &len, err);
    if (rc.kind == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return MOAT_RC_OK;
    }
    MOAT_TRY(rc);
    json_t *j = json_loadb((const char *)text, len, 0, NULL);
    free(text);
    if (json_is_object(j)) {
        *rec = j;
    } else {
        json_decref(j);
    }
    return MOAT_RC_OK;
}

static moat_rc write_record(struct moat_store *st, const char *prefix, const char *url,
                            const char *directory, json_t *contact, const char *status,
                            struct moat_err *err)
{
    char k[MOAT_STORE_KEY_MAX];
    json_t *rec = json_pack("{s:s, s:s, s:O?, s:s}", "url", url, "directory", directory, "contact",
                            contact, "status", status);
    char *text = rec ? json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(rec);
    if (text == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = moat_store_put(st, account_key(k, sizeof(k), prefix, "account.json"), text,
                                strlen(text), 0, err);
    free(text);
    return rc;
}

static int is_deactivated(const json_t *rec)
{
    const char *status = moat_acme_json_str(rec, "status");
    return status != NULL && strcmp(status, "deactivated") == 0;
}

/* RFC 8555 §7.3.6: a deactivated account stays so; say how to get a new one instead of
 * sending the CA requests it must refuse. */
static moat_rc refuse_deactivated(struct moat_store *st, const char *prefix, const char *directory,
                                  struct moat_err *err)
{
    json_t *rec = NULL;
    MOAT_TRY(read_record(st, prefix, &rec, err));
    moat_rc rc = MOAT_RC_OK;
    if (is_deactivated(rec)) {
        const char *url = moat_acme_json_str(rec, "url");
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "the ACME account %.300s at %.300s is deactivated, and a CA never "
                          "reactivates an account: to use this CA again, remove %.200s/ from the "
                          "state folder (moat then makes a new account) or use a new state folder",
                          url ? url : "(unknown URL)", directory, prefix);
    }
    json_decref(rec);
    return rc;
}

/*
 * Settle a rollover that stopped half-way (see moat_acme_account_rollover): key.next.pem is
 * there, and only the CA knows whether it took that key. Ask it (newAccount, onlyReturnExisting,
 * signed by the next key): it knows the key, the change happened, the key becomes key.pem; it
 * does not (accountDoesNotExist), it never happened, the next key goes. Any other outcome (the
 * CA unreachable) keeps both for the next attempt: guessing wrong either way loses the account.
 * Called under the account lock; leaves a without a key.
 */
static moat_rc settle_rollover(struct moat_store *st, struct moat_acme *a, const char *prefix,
                               struct moat_err *err)
{
    char kn[MOAT_STORE_KEY_MAX], kp[MOAT_STORE_KEY_MAX];
    account_key(kn, sizeof(kn), prefix, "key.next.pem");
    account_key(kp, sizeof(kp), prefix, "key.pem");
    EVP_PKEY *next = NULL, *cur = NULL;
    moat_rc rc = load_key(st, kn, &next, err);
    if (rc.kind == MOAT_E_NOTFOUND) {
        moat_err_clear(err); /* the usual case: no rollover was interrupted */
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "reading the key of an interrupted account key rollover");
        return rc;
    }
    rc = load_key(st, kp, &cur, err);
    if (rc.kind == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        rc = MOAT_RC_OK;
    }
    /* Equal: the crash came after key.pem was replaced; only the leftover is to go. */
    if (moat_ok(rc) && (cur == NULL || EVP_PKEY_eq(cur, next) != 1)) {
        moat_acme_use_key(a, next, NULL);
        struct moat_acme_account_req q = {.only_existing = 1};
        rc = moat_acme_account(a, &q, NULL, err);
        if (!moat_ok(rc) && strcmp(a->problem, "accountDoesNotExist") == 0) {
            moat_err_clear(err);
            moat_acme_say(a, 1,
                          "an interrupted account key rollover never reached the CA: the "
                          "account keeps its key (%s), the unused new key is dropped",
                          kp);
            rc = MOAT_RC_OK;
        } else if (!moat_ok(rc)) {
            moat_err_ctx(err, "settling an interrupted account key rollover");
            add_fix(err, "%s stays until the CA answers whether it took that key", kn);
        } else {
            moat_acme_say(a, 1,
                          "an interrupted account key rollover had reached the CA: the account "
                          "%s uses the new key from now on",
                          a->kid);
            rc = put_key(st, kp, next, err);
        }
    }
    if (moat_ok(rc)) {
        rc = moat_store_del(st, kn, err);
    }
    a->problem[0] = '\0'; /* the lookup's answer was this function's, not the login's */
    moat_acme_use_key(a, NULL, NULL);
    EVP_PKEY_free(cur);
    EVP_PKEY_free(next);
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
    MOAT_TRY(refuse_deactivated(st, prefix, moat_acme_directory_url(o->directory), err));
    struct moat_acme *a = NULL;
    MOAT_TRY(moat_acme_new(o, &a, err));
    char lockname[MOAT_STORE_KEY_MAX];
    struct moat_store_lock *lock = NULL;
    EVP_PKEY *key = NULL;
    json_t *acct = NULL;
    moat_rc rc = lock_wait(st, account_key(lockname, sizeof(lockname), prefix, "lock"), &lock, err);
    if (moat_ok(rc)) {
        rc = settle_rollover(st, a, prefix, err);
    }
    char k[MOAT_STORE_KEY_MAX];
    account_key(k, sizeof(k), prefix, "key.pem");
    if (moat_ok(rc) && q->only_existing) {
        rc = load_key(st, k, &key, err);
        if (rc.kind == MOAT_E_NOTFOUND) {
            moat_err_clear(err); /* the store's words name a file; these say what it means */
            rc = moat_err_set(err, MOAT_E_NOTFOUND, __FILE__, __LINE__,
                              "the state folder has no ACME account at %.300s yet (no %.200s): "
                              "`moat acme issue NAME --server %.300s` makes one",
                              a->directory_url, k, a->directory_url);
        }
    } else if (moat_ok(rc)) {
        /* A damaged account key is refused, never replaced: replacing it loses the account. */
        rc = moat_acme_key_get(st, k, MOAT_KEY_EC_P256, 0, &key, err);
    }
    if (moat_ok(rc)) {
        moat_acme_use_key(a, key, NULL);
        /* An account this store made before: found again without asking for what creating
         * it took (terms of service, EAB); a CA that lost it gets a new one. */
        char rec[MOAT_STORE_KEY_MAX];
        account_key(rec, sizeof(rec), prefix, "account.json");
        unsigned char *known = NULL;
        size_t klen = 0;
        int have =
            !q->only_existing && moat_ok(moat_store_get(st, rec, 64 * 1024, &known, &klen, NULL));
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
        /* What a CA says to the key of an account deactivated elsewhere (RFC 8555 §7.3.6). */
        if (!moat_ok(rc) && strcmp(a->problem, "unauthorized") == 0) {
            add_fix(err,
                    "if the CA deactivated this account, it needs a new one: remove %.200s/ "
                    "from the state folder or use a new state folder",
                    prefix);
        }
    }
    if (moat_ok(rc)) {
        const char *status = moat_acme_json_str(acct, "status");
        rc = write_record(st, prefix, a->kid, a->directory_url, json_object_get(acct, "contact"),
                          status ? status : "valid", err);
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

/* The account folder of the CA a talks to, into prefix (MOAT_STORE_KEY_MAX - 32 bytes). */
static moat_rc prefix_of(const struct moat_acme *a, char *prefix, size_t n, struct moat_err *err)
{
    if (a->key == NULL || a->kid == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "ACME account operation before the login");
    }
    if (moat_acme_account_prefix(a->directory_url, prefix, n) == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the ACME directory URL is too long");
    }
    return MOAT_RC_OK;
}

/* Delete key.next.pem where it is known to be of no more use. A failure is only a warning: the
 * next login settles a leftover (see settle_rollover). */
static void drop_next(struct moat_store *st, struct moat_acme *a, const char *kn)
{
    struct moat_err e = {0};
    if (!moat_ok(moat_store_del(st, kn, &e))) {
        moat_acme_say(a, 1, "%s stays behind (the next login settles it): %s", kn, e.msg);
    }
}

moat_rc moat_acme_account_rollover(struct moat_store *st, struct moat_acme *a, struct moat_err *err)
{
    char prefix[MOAT_STORE_KEY_MAX - 32];
    MOAT_TRY(prefix_of(a, prefix, sizeof(prefix), err));
    if (a->dir.key_change == NULL) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA at %.300s offers no key change (its directory has no "
                  "\"keyChange\", RFC 8555 §7.3.5), so the account key cannot be replaced there: "
                  "to move to a new key, deactivate this account (moat acme account --deactivate "
                  "--yes) and let moat make a new one",
                  a->directory_url);
    }
    char kn[MOAT_STORE_KEY_MAX], kp[MOAT_STORE_KEY_MAX], lockname[MOAT_STORE_KEY_MAX];
    account_key(kn, sizeof(kn), prefix, "key.next.pem");
    account_key(kp, sizeof(kp), prefix, "key.pem");
    struct moat_store_lock *lock = NULL;
    MOAT_TRY(lock_wait(st, account_key(lockname, sizeof(lockname), prefix, "lock"), &lock, err));
    EVP_PKEY *cur = NULL, *next = NULL;
    char *inner = NULL, *kid = NULL;
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    /* Under the lock, the store must still hold the key this login signs with, and no other
     * rollover may be half done: another moat may have rolled the key over meanwhile. */
    moat_rc rc = load_key(st, kp, &cur, err);
    if (moat_ok(rc) && EVP_PKEY_eq(cur, a->key) != 1) {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "the account key in the state folder (%s) changed while this command "
                          "ran (another moat replaced it): run the command again",
                          kp);
    }
    if (moat_ok(rc)) {
        EVP_PKEY *t = NULL;
        moat_rc nrc = load_key(st, kn, &t, NULL);
        EVP_PKEY_free(t);
        if (nrc.kind != MOAT_E_NOTFOUND) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "%s, the key of another account key rollover, is in the state "
                              "folder: run the command again (moat first asks the CA whether "
                              "that rollover happened and settles it)",
                              kn);
        }
    }
    /* 1. The new key, stored before the CA hears of it. */
    if (moat_ok(rc)) {
        rc = moat_key_new(MOAT_KEY_EC_P256, &next, err);
    }
    if (moat_ok(rc)) {
        rc = put_key(st, kn, next, err);
    }
    /* 2. The CA is told: the old key signs the request, the new key the inner JWS. */
    if (moat_ok(rc)) {
        rc = moat_jws_key_change(a->key, next, a->kid, a->dir.key_change, &inner, err);
        if (!moat_ok(rc)) {
            drop_next(st, a, kn);
        }
    }
    if (moat_ok(rc)) {
        rc = moat_acme_post(a, a->dir.key_change, inner, NULL, &r, err);
        if (!moat_ok(rc) && r.status != 0 && (r.status < 200 || r.status > 299)) {
            /* The CA answered no: it kept the old key, the new one is of no use. */
            drop_next(st, a, kn);
            moat_err_ctx(err, "changing the account key");
            add_fix(err, "the account keeps its old key");
        } else if (!moat_ok(rc)) {
            moat_err_ctx(err, "changing the account key");
            add_fix(err,
                    "whether the CA took the new key is not known: the next moat acme command "
                    "asks it (the new key stays in %s until then)",
                    kn);
        }
    }
    /* 3. The CA has the new key: it becomes key.pem, and this login signs with it. */
    if (moat_ok(rc)) {
        kid = strdup(a->kid);
        if (kid == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        } else {
            moat_acme_use_key(a, next, kid);
        }
    }
    if (moat_ok(rc)) {
        rc = put_key(st, kp, next, err);
        if (!moat_ok(rc)) {
            moat_err_ctx(err, "storing the new account key");
            add_fix(err,
                    "the CA already took it: it stays in %s, and the next moat acme command "
                    "puts it in place",
                    kn);
        }
    }
    /* 4. The leftover goes; if it stays, the next login finds it equal to key.pem. */
    if (moat_ok(rc)) {
        drop_next(st, a, kn);
    }
    moat_acme_resp_clear(&r);
    free(inner);
    free(kid);
    EVP_PKEY_free(next);
    EVP_PKEY_free(cur);
    moat_store_unlock(lock);
    return rc;
}

moat_rc moat_acme_account_deactivate(struct moat_store *st, struct moat_acme *a,
                                     struct moat_err *err)
{
    char prefix[MOAT_STORE_KEY_MAX - 32], lockname[MOAT_STORE_KEY_MAX];
    MOAT_TRY(prefix_of(a, prefix, sizeof(prefix), err));
    struct moat_store_lock *lock = NULL;
    MOAT_TRY(lock_wait(st, account_key(lockname, sizeof(lockname), prefix, "lock"), &lock, err));
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    moat_rc rc = moat_acme_post(a, a->kid, "{\"status\":\"deactivated\"}", NULL, &r, err);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "deactivating the ACME account %.100s", a->kid);
    }
    const char *status = moat_ok(rc) ? moat_acme_json_str(r.json, "status") : NULL;
    if (status != NULL && strcmp(status, "deactivated") != 0) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA answered the deactivation of %.300s with the status "
                          "\"%.40s\", not \"deactivated\": the account may still be active "
                          "(moat acme account --show asks the CA)",
                          a->kid, status);
    }
    if (moat_ok(rc)) {
        rc = write_record(st, prefix, a->kid, a->directory_url, json_object_get(r.json, "contact"),
                          "deactivated", err);
        if (!moat_ok(rc)) {
            moat_err_ctx(err, "recording the deactivation in the state folder");
            add_fix(err, "the CA did deactivate the account %.200s", a->kid);
        }
    }
    moat_acme_resp_clear(&r);
    moat_store_unlock(lock);
    return rc;
}

void moat_acme_account_info_clear(struct moat_acme_account_info *i)
{
    free(i->url);
    free(i->directory);
    free(i->status);
    for (size_t n = 0; n < i->ncontacts; n++) {
        free(i->contacts[n]);
    }
    free(i->contacts);
    free(i->orders);
    free(i->created_at);
    memset(i, 0, sizeof(*i));
}

static moat_rc dup_opt(const json_t *o, const char *key, char **out, struct moat_err *err)
{
    const char *v = moat_acme_json_str(o, key);
    *out = v ? strdup(v) : NULL;
    if (v != NULL && *out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

moat_rc moat_acme_account_info_parse(const json_t *acct, const char *url,
                                     struct moat_acme_account_info *out, struct moat_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(acct) || moat_acme_json_str(acct, "status") == NULL) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA's account %.300s is not an account object (%s): the CA broke "
                  "RFC 8555 §7.1.2; report it to the CA",
                  url ? url : "",
                  json_is_object(acct) ? "it has no \"status\"" : "not a JSON object");
    }
    out->url = strdup(url ? url : "");
    moat_rc rc = out->url ? MOAT_RC_OK
                          : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    if (moat_ok(rc)) {
        rc = dup_opt(acct, "status", &out->status, err);
    }
    if (moat_ok(rc)) {
        rc = dup_opt(acct, "orders", &out->orders, err);
    }
    if (moat_ok(rc)) {
        rc = dup_opt(acct, "createdAt", &out->created_at, err);
    }
    const json_t *contacts = json_object_get(acct, "contact");
    if (moat_ok(rc) && json_is_array(contacts) && json_array_size(contacts) > 0) {
        out->contacts = calloc(json_array_size(contacts), sizeof(char *));
        if (out->contacts == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
        size_t i;
        const json_t *v;
        json_array_foreach(contacts, i, v)
        {
            if (!moat_ok(rc) || !json_is_string(v)) {
                continue;
            }
            out->contacts[out->ncontacts] = strdup(json_string_value(v));
            if (out->contacts[out->ncontacts] == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            } else {
                out->ncontacts++;
            }
        }
    }
    if (!moat_ok(rc)) {
        moat_acme_account_info_clear(out);
    }
    return rc;
}

/* The thumbprint and type of key into out (left "" when they cannot be had). */
static void describe_key(EVP_PKEY *key, struct moat_acme_account_info *out)
{
    if (key == NULL) {
        return;
    }
    if (!moat_ok(moat_jwk_thumbprint(key, out->thumbprint, sizeof(out->thumbprint), NULL))) {
        out->thumbprint[0] = '\0';
    }
    moat_key_describe(key, out->key_type, sizeof(out->key_type));
}

moat_rc moat_acme_account_show(struct moat_store *st, const struct moat_acme_opts *o,
                               struct moat_acme_account_info *out, struct moat_err *err)
{
    memset(out, 0, sizeof(*out));
    char prefix[MOAT_STORE_KEY_MAX - 32];
    if (moat_acme_account_prefix(o->directory, prefix, sizeof(prefix)) == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the ACME directory URL is too long");
    }
    json_t *rec = NULL;
    MOAT_TRY(read_record(st, prefix, &rec, err));
    if (is_deactivated(rec)) {
        /* The CA refuses every request of a deactivated account: what moat knows is here. */
        moat_rc rc = moat_acme_account_info_parse(rec, moat_acme_json_str(rec, "url"), out, err);
        const char *dir = moat_acme_json_str(rec, "directory");
        if (moat_ok(rc)) {
            out->from_store = 1;
            out->directory = strdup(dir ? dir : moat_acme_directory_url(o->directory));
        }
        json_decref(rec); /* dir pointed into it */
        MOAT_TRY(rc);
        if (out->directory == NULL) {
            moat_acme_account_info_clear(out);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        char k[MOAT_STORE_KEY_MAX];
        EVP_PKEY *key = NULL;
        if (moat_ok(load_key(st, account_key(k, sizeof(k), prefix, "key.pem"), &key, NULL))) {
            describe_key(key, out);
        }
        EVP_PKEY_free(key);
        return MOAT_RC_OK;
    }
    json_decref(rec);
    struct moat_acme *a = NULL;
    struct moat_acme_account_req q = {.only_existing = 1};
    MOAT_TRY(moat_acme_login(st, o, &q, &a, err));
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    moat_rc rc = moat_acme_post(a, a->kid, NULL, NULL, &r, err);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "reading the ACME account %.100s", a->kid);
    }
    if (moat_ok(rc)) {
        rc = moat_acme_account_info_parse(r.json, a->kid, out, err);
    }
    if (moat_ok(rc)) {
        out->directory = strdup(a->directory_url);
        if (out->directory == NULL) {
            moat_acme_account_info_clear(out);
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
    }
    if (moat_ok(rc)) {
        describe_key(a->key, out);
    }
    moat_acme_resp_clear(&r);
    moat_acme_free(a);
    return rc;
}
