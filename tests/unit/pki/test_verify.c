/*
 * test_verify.c: the failure-kind table (complete, stable, unique names) and the folding of
 * OpenSSL's verification codes into kinds, including on real X509_verify_cert runs.
 */
#include "pki/verify.h"

#include "pki_helpers.h"
#include "test.h"

TEST_CASE(table_is_complete_and_unique)
{
    for (int k = 0; k < MOAT_V_KIND_COUNT; k++) {
        const char *name = moat_verify_kind_name((enum moat_verify_kind)k);
        EXPECT(name != NULL && name[0] != '\0');
        EXPECT(moat_verify_kind_message((enum moat_verify_kind)k)[0] != '\0');
        EXPECT(moat_verify_kind_fix((enum moat_verify_kind)k)[0] != '\0');
        EXPECT_INT(moat_verify_kind_from_name(name), k);
        for (int j = 0; j < k; j++) {
            EXPECT(strcmp(name, moat_verify_kind_name((enum moat_verify_kind)j)) != 0);
        }
        for (const char *p = name; *p != '\0'; p++) {
            EXPECT((*p >= 'a' && *p <= 'z') || *p == '_');
        }
    }
    EXPECT_STR(moat_verify_kind_name(MOAT_V_OK), "ok");
    EXPECT_STR(moat_verify_kind_name(MOAT_V_EXPIRED), "expired");
    EXPECT_STR(moat_verify_kind_name(MOAT_V_MISSING_INTERMEDIATE), "missing_intermediate");
    EXPECT_STR(moat_verify_kind_name(MOAT_V_KIND_COUNT), "other");
    EXPECT_STR(moat_verify_kind_name((enum moat_verify_kind) - 1), "other");
    EXPECT_STR(moat_verify_kind_fix((enum moat_verify_kind)999),
               moat_verify_kind_fix(MOAT_V_OTHER));
    EXPECT_INT(moat_verify_kind_from_name("nope"), MOAT_V_KIND_COUNT);
    EXPECT_INT(moat_verify_kind_from_name(NULL), MOAT_V_KIND_COUNT);
}

TEST_CASE(codes_fold_into_kinds)
{
    static const struct {
        int code;
        enum moat_verify_kind kind;
    } cases[] = {
        {X509_V_OK, MOAT_V_OK},
        {X509_V_ERR_CERT_HAS_EXPIRED, MOAT_V_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, MOAT_V_NOT_YET_VALID},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, MOAT_V_SELF_SIGNED},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, MOAT_V_UNKNOWN_ISSUER},
        {X509_V_ERR_HOSTNAME_MISMATCH, MOAT_V_NAME_MISMATCH},
        {X509_V_ERR_IP_ADDRESS_MISMATCH, MOAT_V_NAME_MISMATCH},
        {X509_V_ERR_INVALID_PURPOSE, MOAT_V_BAD_KEY_USAGE},
        {X509_V_ERR_KEYUSAGE_NO_CERTSIGN, MOAT_V_BAD_KEY_USAGE},
        {X509_V_ERR_INVALID_CA, MOAT_V_NOT_CA},
        {X509_V_ERR_PATH_LENGTH_EXCEEDED, MOAT_V_PATH_LENGTH},
        {X509_V_ERR_CERT_REVOKED, MOAT_V_REVOKED},
        {X509_V_ERR_EE_KEY_TOO_SMALL, MOAT_V_WEAK_KEY},
        {X509_V_ERR_CA_MD_TOO_WEAK, MOAT_V_WEAK_SIGNATURE},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, MOAT_V_BAD_SIGNATURE},
        {X509_V_ERR_UNABLE_TO_GET_CRL, MOAT_V_OTHER},
        {-12345, MOAT_V_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EXPECT_INT(moat_verify_kind_from_x509(cases[i].code, NULL), cases[i].kind);
    }
    EXPECT_INT(moat_verify_kind_from_x509(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, NULL),
               MOAT_V_UNKNOWN_ISSUER);
}

/* Run OpenSSL's verifier on leaf (+ untrusted) against roots and fold the result. */
static enum moat_verify_kind run(X509 *leaf, X509 *untrusted, X509 *root, const char *host,
                                 time_t at)
{
    X509_STORE *st = X509_STORE_new();
    if (root != NULL) {
        X509_STORE_add_cert(st, root);
    }
    STACK_OF(X509) *chain = sk_X509_new_null();
    if (untrusted != NULL) {
        sk_X509_push(chain, untrusted);
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, chain);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (host != NULL) {
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    }
    if (at != 0) {
        X509_VERIFY_PARAM_set_time(param, at);
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    enum moat_verify_kind k = MOAT_V_OK;
    if (X509_verify_cert(ctx) != 1) {
        k = moat_verify_kind_from_x509(X509_STORE_CTX_get_error(ctx),
                                       X509_STORE_CTX_get_current_cert(ctx));
    }
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    X509_STORE_free(st);
    ERR_clear_error();
    return k;
}

TEST_CASE(real_verifications)
{
    struct ph_pki p;
    ph_pki_make(&p, "v");
    EXPECT_INT(run(p.leaf, p.inter, p.root, "localhost", 0), MOAT_V_OK);
    /* The server forgot the intermediate: the leaf's issuer is missing. */
    EXPECT_INT(run(p.leaf, NULL, p.root, "localhost", 0), MOAT_V_MISSING_INTERMEDIATE);
    /* Everything sent, but the root is not trusted here. */
    EXPECT_INT(run(p.leaf, p.inter, NULL, "localhost", 0), MOAT_V_UNKNOWN_ISSUER);
    EXPECT_INT(run(p.leaf, p.inter, p.root, "example.com", 0), MOAT_V_NAME_MISMATCH);
    EXPECT_INT(run(p.leaf, p.inter, p.root, NULL, time(NULL) + 200 * PH_DAY), MOAT_V_EXPIRED);
    EXPECT_INT(run(p.leaf, p.inter, p.root, NULL, time(NULL) - 2 * PH_DAY), MOAT_V_NOT_YET_VALID);
    X509 *self = ph_cert(&(struct ph_cert_spec){.cn = "self",
                                                .key = p.leaf_key,
                                                .nb_offset = -PH_DAY,
                                                .na_offset = PH_DAY,
                                                .san = "DNS:self"});
    EXPECT_INT(run(self, NULL, NULL, NULL, 0), MOAT_V_SELF_SIGNED);
    X509_free(self);
    X509 *client = ph_cert(&(struct ph_cert_spec){.cn = "client",
                                                  .key = p.leaf_key,
                                                  .issuer = p.inter,
                                                  .issuer_key = p.int_key,
                                                  .nb_offset = -PH_DAY,
                                                  .na_offset = PH_DAY,
                                                  .eku = "clientAuth"});
    EXPECT_INT(run(client, p.inter, p.root, NULL, 0), MOAT_V_BAD_KEY_USAGE);
    X509_free(client);
    /* An intermediate without CA:TRUE. */
    X509 *notca = ph_cert(&(struct ph_cert_spec){.cn = "v intermediate",
                                                 .key = p.int_key,
                                                 .issuer = p.root,
                                                 .issuer_key = p.root_key,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY,
                                                 .bc = "CA:FALSE"});
    EXPECT_INT(run(p.leaf, notca, p.root, NULL, 0), MOAT_V_NOT_CA);
    X509_free(notca);
    ph_pki_free(&p);
}

int main(void)
{
    RUN(table_is_complete_and_unique);
    RUN(codes_fold_into_kinds);
    RUN(real_verifications);
    TEST_MAIN_END();
}
