/*
 * test_account.c: the parts of acme/account.c that need no CA: the account object as the CA
 * sends it read into what `moat acme account` shows (an untrusted object: every member
 * checked), and a deactivated account, which the store records and moat then refuses to log
 * in with, or shows from the store, without asking the CA (the directory here is a port
 * nobody listens on, so asking it would fail differently).
 */
#include "acme/account.h"

#include "acme/jws.h"
#include "pki/pki_helpers.h"
#include "test.h"

#include <stdlib.h>

/* Nothing listens on port 1: a login that got as far as the directory fails with PEER. */
#define NOWHERE "https://127.0.0.1:1/dir"

TEST_CASE(info_parse_reads_the_account_object)
{
    json_t *acct = json_loads("{\"status\": \"valid\", \"contact\": [\"mailto:a@example.com\", "
                              "7, \"mailto:b@example.com\"], \"orders\": \"https://ca/orders/1\", "
                              "\"createdAt\": \"2025-01-02T03:04:05Z\", \"key\": {}}",
                              0, NULL);
    struct moat_acme_account_info i;
    EXPECT_INT(moat_acme_account_info_parse(acct, "https://ca/acct/1", &i, NULL).kind, MOAT_OK);
    EXPECT_STR(i.url, "https://ca/acct/1");
    EXPECT_STR(i.status, "valid");
    EXPECT_INT(i.ncontacts, 2); /* the number is not a contact */
    if (i.ncontacts == 2) {
        EXPECT_STR(i.contacts[0], "mailto:a@example.com");
        EXPECT_STR(i.contacts[1], "mailto:b@example.com");
    }
    EXPECT_STR(i.orders, "https://ca/orders/1");
    EXPECT_STR(i.created_at, "2025-01-02T03:04:05Z");
    EXPECT(i.directory == NULL && i.thumbprint[0] == '\0' && !i.from_store);
    moat_acme_account_info_clear(&i);
    EXPECT(i.url == NULL && i.contacts == NULL && i.ncontacts == 0);
    moat_acme_account_info_clear(&i); /* twice is harmless */
    json_decref(acct);

    /* The optional members may be missing, or of the wrong type: they are then absent. */
    acct = json_loads("{\"status\": \"deactivated\", \"contact\": \"mailto:a@example.com\", "
                      "\"orders\": 5}",
                      0, NULL);
    EXPECT_INT(moat_acme_account_info_parse(acct, "https://ca/acct/2", &i, NULL).kind, MOAT_OK);
    EXPECT_STR(i.status, "deactivated");
    EXPECT(i.ncontacts == 0 && i.contacts == NULL && i.orders == NULL && i.created_at == NULL);
    moat_acme_account_info_clear(&i);
    json_decref(acct);
}

TEST_CASE(info_parse_refuses_what_is_not_an_account)
{
    static const char *bad[] = {"[]", "\"valid\"", "{}", "{\"status\": 1}",
                                "{\"contact\": [\"mailto:a@example.com\"]}"};
    for (size_t n = 0; n < sizeof(bad) / sizeof(bad[0]); n++) {
        json_t *j = json_loads(bad[n], JSON_DECODE_ANY, NULL);
        EXPECT(j != NULL);
        struct moat_acme_account_info i;
        struct moat_err err = {0};
        EXPECT_INT(moat_acme_account_info_parse(j, "https://ca/acct/3", &i, &err).kind,
                   MOAT_E_PEER);
        EXPECT(strstr(err.msg, "https://ca/acct/3") != NULL);
        EXPECT(i.url == NULL && i.status == NULL); /* nothing to free */
        json_decref(j);
    }
    struct moat_acme_account_info i;
    EXPECT_INT(moat_acme_account_info_parse(NULL, "https://ca/acct/3", &i, NULL).kind, MOAT_E_PEER);
}

/* A store whose account at NOWHERE is recorded as `status`, with a stored key (*key). */
static struct moat_store *store_with_account(const char *status, EVP_PKEY **key)
{
    struct moat_store *st = NULL;
    EXPECT_INT(moat_store_folder_new(ph_path("state"), &st, NULL).kind, MOAT_OK);
    char prefix[MOAT_STORE_KEY_MAX - 32], k[MOAT_STORE_KEY_MAX];
    EXPECT(moat_acme_account_prefix(NOWHERE, prefix, sizeof(prefix)) != NULL);
    snprintf(k, sizeof(k), "%s/key.pem", prefix);
    *key = NULL;
    EXPECT_INT(moat_acme_key_get(st, k, MOAT_KEY_EC_P256, 0, key, NULL).kind, MOAT_OK);
    char rec[512];
    snprintf(rec, sizeof(rec),
             "{\"url\": \"https://127.0.0.1:1/acct/9\", \"directory\": \"%s\", \"status\": "
             "\"%s\", \"contact\": [\"mailto:ops@example.com\"]}",
             NOWHERE, status);
    snprintf(k, sizeof(k), "%s/account.json", prefix);
    EXPECT_INT(moat_store_put(st, k, rec, strlen(rec), 0, NULL).kind, MOAT_OK);
    return st;
}

TEST_CASE(login_refuses_a_deactivated_account_without_asking_the_ca)
{
    EVP_PKEY *key = NULL;
    struct moat_store *st = store_with_account("deactivated", &key);
    struct moat_acme_opts o = {.directory = NOWHERE, .timeout_ms = 2000};
    struct moat_acme_account_req q = {.agree_tos = 1};
    struct moat_acme *a = (struct moat_acme *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_acme_login(st, &o, &q, &a, &err).kind, MOAT_E_CONFIG);
    EXPECT(a == NULL);
    EXPECT(strstr(err.msg, "https://127.0.0.1:1/acct/9 at " NOWHERE " is deactivated") != NULL);
    EXPECT(strstr(err.msg, "remove acme/accounts/127.0.0.1=3a1=2fdir/ from the state folder") !=
           NULL);
    EXPECT(strstr(err.msg, "new state folder") != NULL);
    if (strstr(err.msg, "deactivated") == NULL) {
        fprintf(stderr, "  got: %s\n", err.msg);
    }
    moat_store_free(st);
    EVP_PKEY_free(key);

    /* The check can fail: a valid account gets as far as the CA (which is not there). */
    st = store_with_account("valid", &key);
    moat_err_clear(&err);
    EXPECT_INT(moat_acme_login(st, &o, &q, &a, &err).kind, MOAT_E_PEER);
    EXPECT(strstr(err.msg, "cannot reach the ACME CA") != NULL);
    moat_store_free(st);
    EVP_PKEY_free(key);
}

TEST_CASE(show_of_a_deactivated_account_comes_from_the_store)
{
    EVP_PKEY *key = NULL;
    struct moat_store *st = store_with_account("deactivated", &key);
    struct moat_acme_opts o = {.directory = NOWHERE, .timeout_ms = 2000};
    struct moat_acme_account_info i;
    struct moat_err err = {0};
    EXPECT_INT(moat_acme_account_show(st, &o, &i, &err).kind, MOAT_OK);
    EXPECT(i.from_store);
    EXPECT_STR(i.url, "https://127.0.0.1:1/acct/9");
    EXPECT_STR(i.directory, NOWHERE);
    EXPECT_STR(i.status, "deactivated");
    EXPECT_INT(i.ncontacts, 1);
    char tp[64];
    EXPECT_INT(moat_jwk_thumbprint(key, tp, sizeof(tp), NULL).kind, MOAT_OK);
    EXPECT_STR(i.thumbprint, tp);
    EXPECT_STR(i.key_type, "ECDSA P-256");
    moat_acme_account_info_clear(&i);
    moat_store_free(st);
    EVP_PKEY_free(key);

    /* A valid one is asked of the CA. */
    st = store_with_account("valid", &key);
    EXPECT_INT(moat_acme_account_show(st, &o, &i, &err).kind, MOAT_E_PEER);
    EXPECT(i.url == NULL);
    moat_store_free(st);
    EVP_PKEY_free(key);
}

int main(void)
{
    ph_dir_make();
    RUN(info_parse_reads_the_account_object);
    RUN(info_parse_refuses_what_is_not_an_account);
    RUN(login_refuses_a_deactivated_account_without_asking_the_ca);
    RUN(show_of_a_deactivated_account_comes_from_the_store);
    ph_dir_remove();
    TEST_MAIN_END();
}
