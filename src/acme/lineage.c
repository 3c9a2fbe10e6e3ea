/*
 * lineage.c: a certificate's orders, installation and status in the store (see lineage.h).
 *
 * Crash safety, step by step: the key is stored (<kind>.next.key) before the order exists;
 * the order URL is stored as soon as the CA made it; the chain and key are installed by one
 * atomic write of <kind>.pem; only then are next.key and order.json removed. A crash between
 * any two steps leaves either the old certificate serving and an order to resume, or the new
 * one installed and leftovers that the next order overwrites.
 */
#include "acme/lineage.h"

#include "acme/account.h"
#include "acme/ari.h"

#include "pki/ca.h"
#include "pki/key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#define FILE_MAX (256 * 1024)

const char *moat_acme_kind_name(enum moat_acme_kind k)
{
    return k == MOAT_ACME_RSA ? "rsa" : "ecdsa";
}

int moat_acme_kind_parse(const char *s)
{
    if (s == NULL) {
        return -1;
    }
    if (strcmp(s, "ecdsa") == 0 || strcmp(s, "p256") == 0 || strcmp(s, "ec") == 0 ||
        strcmp(s, "ecdsa-p256") == 0) {
        return MOAT_ACME_ECDSA;
    }
    if (strcmp(s, "rsa") == 0 || strcmp(s, "rsa2048") == 0) {
        return MOAT_ACME_RSA;
    }
    return -1;
}

char *moat_acme_lineage_prefix(const char *name, char *out, size_t outlen)
{
    char part[MOAT_STORE_KEY_MAX];
    if (moat_store_key_part(name, part, sizeof(part)) == NULL) {
        return NULL;
    }
    int n = snprintf(out, outlen, "acme/certs/%s", part);
    return n > 0 && (size_t)n < outlen ? out : NULL;
}

static moat_rc key_of(const char *name, enum moat_acme_kind kind, const char *suffix, char *out,
                      size_t outlen, struct moat_err *err)
{
    char prefix[MOAT_STORE_KEY_MAX];
    if (moat_acme_lineage_prefix(name, prefix, sizeof(prefix)) == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the name %.100s is too long for the store", name);
    }
    int n = snprintf(out, outlen, "%s/%s%s", prefix, moat_acme_kind_name(kind), suffix);
    if (n < 0 || (size_t)n >= outlen) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the name %.100s is too long for the store", name);
    }
    return MOAT_RC_OK;
}

time_t moat_acme_renew_at(time_t nb, time_t na)
{
    if (na <= nb) {
        return nb;
    }
    time_t life = na - nb;
    time_t at = na - life / 3;
    if (life >= 3 * 3600) {
        at -= at % 3600; /* on the hour: a renewal check runs hourly at most that often */
        if (at <= nb) {
            at = nb + life / 2;
        }
    }
    return at;
}

/* The JSON object stored under k, or NULL when there is none or it is not an object. */
static json_t *store_json(struct moat_store *st, const char *k)
{
    unsigned char *text = NULL;
    size_t len = 0;
    if (!moat_ok(moat_store_get(st, k, FILE_MAX, &text, &len, NULL))) {
        return NULL;
    }
    json_t *j = json_loadb((const char *)text, len, 0, NULL);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *moat_acme_status_get(struct moat_store *st, const char *name, enum moat_acme_kind kind)
{
    char k[MOAT_STORE_KEY_MAX];
    if (!moat_ok(key_of(name, kind, ".status.json", k, sizeof(k), NULL))) {
        return NULL;
    }
    return store_json(st, k);
}

moat_rc moat_acme_statuses(struct moat_store *st, json_t **out, struct moat_err *err)
{
    *out = NULL;
    char **dirs = NULL;
    size_t ndirs = 0;
    MOAT_TRY(moat_store_list(st, "acme/certs/", &dirs, &ndirs, err));
    json_t *all = json_array();
    for (size_t i = 0; all != NULL && i < ndirs; i++) {
        for (int k = 0; k < MOAT_ACME_KIND_COUNT; k++) {
            /* Read through the folder: it is the first name made safe, not the name. */
            char key[MOAT_STORE_KEY_MAX];
            snprintf(key, sizeof(key), "acme/certs/%.*s/%s.status.json", (int)strlen(dirs[i]) - 1,
                     dirs[i], moat_acme_kind_name((enum moat_acme_kind)k));
            json_t *s = store_json(st, key);
            if (s != NULL && json_is_array(json_object_get(s, "names")) &&
                json_array_size(json_object_get(s, "names")) > 0) {
                json_object_set_new(s, "kind", json_string(moat_acme_kind_name(k)));
                json_array_append(all, s);
            }
            json_decref(s);
        }
    }
    moat_store_list_free(dirs, ndirs);
    if (all == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = all;
    return MOAT_RC_OK;
}

static void status_put(struct moat_store *st, const struct moat_acme_cert_req *q,
                       const char *directory, X509 *leaf, const char *error)
{
    json_t *old = moat_acme_status_get(st, q->names[0], q->kind);
    json_t *s = json_object();
    json_t *names = json_array();
    for (size_t i = 0; i < q->nnames; i++) {
        json_array_append_new(names, json_string(q->names[i]));
    }
    json_object_set_new(s, "names", names);
    json_object_set_new(s, "kind", json_string(moat_acme_kind_name(q->kind)));
    json_object_set_new(s, "directory", json_string(directory));
    time_t now = time(NULL);
    if (leaf != NULL) {
        time_t nb = moat_ca_asn1_time(X509_get0_notBefore(leaf));
        time_t na = moat_ca_asn1_time(X509_get0_notAfter(leaf));
        char issuer[256] = "";
        X509_NAME_oneline(X509_get_issuer_name(leaf), issuer, sizeof(issuer));
        json_object_set_new(s, "not_before", json_integer(nb));
        json_object_set_new(s, "not_after", json_integer(na));
        json_object_set_new(s, "renew_at", json_integer(moat_acme_renew_at(nb, na)));
        json_object_set_new(s, "issuer", json_string(issuer));
        json_object_set_new(s, "issued_at", json_integer(now));
        json_object_set_new(s, "failures", json_integer(0));
    } else {
        /* Keep what is known of the certificate that still serves. */
        const char *keep[] = {"not_before", "not_after",        "renew_at",      "issuer",
                              "issued_at",  "ari_window_start", "ari_window_end"};
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            json_t *v = json_object_get(old, keep[i]);
            if (v != NULL) {
                json_object_set(s, keep[i], v);
            }
        }
        json_int_t f = json_integer_value(json_object_get(old, "failures"));
        json_object_set_new(s, "failures", json_integer(f + 1));
        json_object_set_new(s, "last_error", json_string(error ? error : "unknown"));
        json_object_set_new(s, "last_error_at", json_integer(now));
    }
    json_object_set_new(s, "last_attempt", json_integer(now));
    char k[MOAT_STORE_KEY_MAX];
    char *text = json_dumps(s, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text != NULL && moat_ok(key_of(q->names[0], q->kind, ".status.json", k, sizeof(k), NULL))) {
        (void)moat_ok(moat_store_put(st, k, text, strlen(text), 0, NULL));
    }
    free(text);
    json_decref(s);
    json_decref(old);
}

void moat_acme_status_ari(struct moat_store *st, const char *name, enum moat_acme_kind kind,
                          time_t not_after, time_t start, time_t end, time_t renew_at)
{
    json_t *s = moat_acme_status_get(st, name, kind);
    char k[MOAT_STORE_KEY_MAX];
    if (s == NULL || json_integer_value(json_object_get(s, "not_after")) != (json_int_t)not_after ||
        !moat_ok(key_of(name, kind, ".status.json", k, sizeof(k), NULL))) {
        json_decref(s); /* the status is of another certificate (or none): leave it */
        return;
    }
    json_object_set_new(s, "ari_window_start", json_integer(start));
    json_object_set_new(s, "ari_window_end", json_integer(end));
    json_object_set_new(s, "renew_at", json_integer(renew_at));
    char *text = json_dumps(s, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text != NULL) {
        (void)moat_ok(moat_store_put(st, k, text, strlen(text), 0, NULL));
    }
    free(text);
    json_decref(s);
}

struct order_ctx {
    struct moat_store *st;
    const struct moat_acme_cert_req *q;
    const char *directory;
};

static void order_made(void *arg, const char *url)
{
    struct order_ctx *c = arg;
    char k[MOAT_STORE_KEY_MAX];
    json_t *names = json_array();
    for (size_t i = 0; i < c->q->nnames; i++) {
        json_array_append_new(names, json_string(c->q->names[i]));
    }
    json_t *o = json_pack("{s:s, s:s, s:o}", "url", url, "directory", c->directory, "names", names);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text != NULL &&
        moat_ok(key_of(c->q->names[0], c->q->kind, ".order.json", k, sizeof(k), NULL))) {
        (void)moat_ok(moat_store_put(c->st, k, text, strlen(text), 0, NULL));
    }
    free(text);
}

/* The stored order in flight, when it is for this CA and these names. */
static char *resume_url(struct moat_store *st, const struct moat_acme_cert_req *q,
                        const char *directory)
{
    char k[MOAT_STORE_KEY_MAX];
    if (!moat_ok(key_of(q->names[0], q->kind, ".order.json", k, sizeof(k), NULL))) {
        return NULL;
    }
    json_t *o = store_json(st, k);
    const char *url = moat_acme_json_str(o, "url");
    const char *dir = moat_acme_json_str(o, "directory");
    const json_t *names = json_object_get(o, "names");
    int same = url != NULL && dir != NULL && strcmp(dir, directory) == 0 &&
               json_array_size(names) == q->nnames;
    for (size_t i = 0; same && i < q->nnames; i++) {
        const char *n = json_string_value(json_array_get(names, i));
        same = n != NULL && strcmp(n, q->names[i]) == 0;
    }
    char *r = same ? strdup(url) : NULL;
    json_decref(o);
    return r;
}

void moat_acme_status_failed(struct moat_store *st, const struct moat_acme_cert_req *q,
                             const char *directory, const char *error)
{
    status_put(st, q, moat_acme_directory_url(directory), NULL, error);
}

/* The ARI identifier of the lineage's installed certificate into out, for the order that
 * replaces it (RFC 9773 §5); 0 when the CA has no ARI or there is nothing it could name. */
static int replaces_id(struct moat_store *st, struct moat_acme *a,
                       const struct moat_acme_cert_req *q, char *out, size_t outlen)
{
    if (a->dir.renewal_info == NULL) {
        return 0;
    }
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    if (!moat_ok(moat_acme_installed(st, q->names[0], q->kind, &chain, &key, NULL))) {
        return 0; /* a first order, or a damaged one that is replaced anyway */
    }
    struct moat_err e = {0};
    int ok = moat_ok(moat_acme_ari_cert_id(sk_X509_value(chain, 0), out, outlen, &e));
    if (!ok) {
        moat_acme_say(a, 1, "the order does not name the certificate it replaces: %s", e.msg);
    }
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return ok;
}

moat_rc moat_acme_obtain(struct moat_store *st, struct moat_acme *a,
                         const struct moat_acme_cert_req *q, struct moat_err *err)
{
    if (q->nnames == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "no names to order a certificate for");
    }
    char lockname[MOAT_STORE_KEY_MAX];
    MOAT_TRY(key_of(q->names[0], q->kind, ".lock", lockname, sizeof(lockname), err));
    struct moat_store_lock *lock = NULL;
    moat_rc rc =
        moat_store_lock(st, lockname, q->deadline_s ? q->deadline_s * 2 : 1200, &lock, err);
    if (rc.kind == MOAT_E_AGAIN) {
        MOAT_FAIL(err, MOAT_E_AGAIN,
                  "another moat is ordering the certificate for %s right now; it will be "
                  "picked up from the store when it is done",
                  q->names[0]);
    }
    MOAT_TRY(rc);
    if (q->seen_not_after != NULL) {
        STACK_OF(X509) *have = NULL;
        EVP_PKEY *have_key = NULL;
        time_t na = 0;
        if (moat_ok(moat_acme_installed(st, q->names[0], q->kind, &have, &have_key, NULL))) {
            na = moat_ca_asn1_time(X509_get0_notAfter(sk_X509_value(have, 0)));
            sk_X509_pop_free(have, X509_free);
            EVP_PKEY_free(have_key);
        }
        if (na != *q->seen_not_after) {
            moat_store_unlock(lock);
            MOAT_FAIL(err, MOAT_E_AGAIN,
                      "another moat installed a certificate for %s since this one looked; it "
                      "is picked up from the store",
                      q->names[0]);
        }
    }
    EVP_PKEY *key = NULL;
    char *chain = NULL;
    char *resume = NULL;
    char kk[MOAT_STORE_KEY_MAX];
    rc = key_of(q->names[0], q->kind, ".next.key", kk, sizeof(kk), err);
    if (moat_ok(rc)) {
        /* a damaged pending key is replaced: it never signed anything that serves */
        rc = moat_acme_key_get(
            st, kk, q->kind == MOAT_ACME_RSA ? MOAT_KEY_RSA2048 : MOAT_KEY_EC_P256, 1, &key, err);
    }
    if (moat_ok(rc)) {
        resume = resume_url(st, q, a->directory_url);
        char replaces[MOAT_ACME_ARI_ID_MAX];
        int has_replaces = replaces_id(st, a, q, replaces, sizeof(replaces));
        struct order_ctx oc = {.st = st, .q = q, .directory = a->directory_url};
        struct moat_acme_order_req oq = {
            .names = q->names,
            .nnames = q->nnames,
            .cert_key = key,
            .solvers = q->solvers,
            .nsolvers = q->nsolvers,
            .preferred_chain = q->preferred_chain,
            .profile = q->profile,
            .replaces = has_replaces ? replaces : NULL,
            .resume_url = resume,
            .order_made = order_made,
            .order_made_arg = &oc,
            .deadline_s = q->deadline_s,
            .cancel = q->cancel,
            .preflight = q->preflight,
        };
        rc = moat_acme_order(a, &oq, &chain, err);
        if (!moat_ok(rc) && resume != NULL && rc.kind == MOAT_E_PEER) {
            /* The resumed order may hold a certificate for a key that is not the stored one
             * (a crash between a new key and the order): one fresh order settles it. */
            char k[MOAT_STORE_KEY_MAX];
            if (moat_ok(key_of(q->names[0], q->kind, ".order.json", k, sizeof(k), NULL))) {
                (void)moat_ok(
                    moat_store_del(st, k, NULL)); /* best effort: a leftover is overwritten later */
            }
        }
    }
    char *keypem = NULL;
    size_t keylen = 0;
    if (moat_ok(rc)) {
        rc = moat_key_pem(key, &keypem, &keylen, err);
    }
    X509 *leaf = NULL;
    if (moat_ok(rc)) {
        size_t cl = strlen(chain);
        size_t total = cl + 1 + keylen;
        char *both = OPENSSL_malloc(total + 1);
        if (both == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        } else {
            memcpy(both, chain, cl);
            both[cl] = '\n';
            memcpy(both + cl + 1, keypem, keylen);
            both[total] = '\0';
            char k[MOAT_STORE_KEY_MAX];
            rc = key_of(q->names[0], q->kind, ".pem", k, sizeof(k), err);
            if (moat_ok(rc)) {
                rc = moat_store_put(st, k, both, total, 1, err);
            }
            OPENSSL_clear_free(both, total);
        }
        BIO *b = BIO_new_mem_buf(chain, -1);
        leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    if (moat_ok(rc)) {
        char k[MOAT_STORE_KEY_MAX];
        if (moat_ok(key_of(q->names[0], q->kind, ".next.key", k, sizeof(k), NULL))) {
            (void)moat_ok(
                moat_store_del(st, k, NULL)); /* best effort: a leftover is overwritten later */
        }
        if (moat_ok(key_of(q->names[0], q->kind, ".order.json", k, sizeof(k), NULL))) {
            (void)moat_ok(
                moat_store_del(st, k, NULL)); /* best effort: a leftover is overwritten later */
        }
        status_put(st, q, a->directory_url, leaf, NULL);
    } else if (rc.kind != MOAT_E_CLOSED) {
        char msg[MOAT_ERR_MSG_MAX + 200];
        status_put(st, q, a->directory_url, NULL, moat_err_str(err, msg, sizeof(msg)));
    }
    X509_free(leaf);
    if (keypem != NULL) {
        OPENSSL_clear_free(keypem, keylen);
    }
    free(chain);
    free(resume);
    EVP_PKEY_free(key);
    moat_store_unlock(lock);
    return rc;
}

moat_rc moat_acme_installed(struct moat_store *st, const char *name, enum moat_acme_kind kind,
                            STACK_OF(X509) * *chain, EVP_PKEY **key, struct moat_err *err)
{
    *chain = NULL;
    *key = NULL;
    char k[MOAT_STORE_KEY_MAX];
    MOAT_TRY(key_of(name, kind, ".pem", k, sizeof(k), err));
    unsigned char *text = NULL;
    size_t len = 0;
    MOAT_TRY(moat_store_get(st, k, FILE_MAX, &text, &len, err));
    moat_rc rc = moat_key_load_mem(text, len, k, key, err);
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = BIO_new_mem_buf(text, (int)len);
    X509 *x;
    while (moat_ok(rc) && sk != NULL && b != NULL &&
           (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        sk_X509_push(sk, x);
    }
    ERR_clear_error();
    BIO_free(b);
    OPENSSL_clear_free(text, len);
    if (moat_ok(rc) && (sk == NULL || sk_X509_num(sk) == 0)) {
        moat_err_where(err, "%s", k);
        rc = moat_err_set(err, MOAT_E_CERT, __FILE__, __LINE__,
                          "the stored ACME certificate holds no certificate");
    }
    if (moat_ok(rc) && X509_check_private_key(sk_X509_value(sk, 0), *key) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", k);
        rc = moat_err_set(err, MOAT_E_CERT, __FILE__, __LINE__,
                          "the stored ACME certificate and its key do not match");
    }
    if (!moat_ok(rc)) {
        sk_X509_pop_free(sk, X509_free);
        EVP_PKEY_free(*key);
        *key = NULL;
        return rc;
    }
    *chain = sk;
    return MOAT_RC_OK;
}
