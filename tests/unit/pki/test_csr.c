/*
 * test_csr.c: CSRs made by moat (names in the SAN request, CN, signature) and loaded back,
 * CSRs made by the openssl command, and every refusal: altered signature, weak key,
 * certificate or key given instead, damaged PEM, empty file, no usable name.
 */
#include "pki/csr.h"

#include "pki/key.h"
#include "pki/names.h"
#include "pki_helpers.h"
#include "test.h"

static char *csr_pem(X509_REQ *req)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

TEST_CASE(make_and_load)
{
    EVP_PKEY *k = ph_key();
    const char *names[] = {"example.test", "*.example.test", "10.0.0.1", "ada@example.test"};
    X509_REQ *req = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_csr_new(names, 4, k, &req, &err).kind, MOAT_OK);
    EXPECT_INT(X509_REQ_verify(req, k), 1);
    EXPECT_INT(moat_csr_save(ph_path("a.csr"), req, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_csr_save(ph_path("a.csr"), req, 0, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_csr_save(ph_path("a.csr"), req, 1, &err).kind, MOAT_OK);
    X509_REQ *back = NULL;
    EXPECT_INT(moat_csr_load(ph_path("a.csr"), &back, &err).kind, MOAT_OK);
    char **got = NULL;
    size_t n = 0;
    EXPECT_INT(moat_csr_names(back, &got, &n, &err).kind, MOAT_OK);
    EXPECT_INT(n, 4);
    for (size_t i = 0; i < n && i < 4; i++) {
        EXPECT_STR(got[i], names[i]);
    }
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(back), NID_commonName, cn, sizeof(cn));
    EXPECT_STR(cn, "example.test");
    /* The openssl command agrees that the signature is good. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "openssl req -in %s -noout -verify >/dev/null 2>&1",
             ph_path("a.csr"));
    EXPECT_INT(system(cmd), 0);
    moat_names_free(got, n);
    X509_REQ_free(back);
    X509_REQ_free(req);
    const char *bad[] = {"bad name"};
    EXPECT_INT(moat_csr_new(bad, 1, k, &req, &err).kind, MOAT_E_USAGE);
    EVP_PKEY_free(k);
}

TEST_CASE(openssl_made_csr)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -new -newkey rsa:2048 -nodes -keyout %s -subj /CN=cn-only.test -out %s "
             ">/dev/null 2>&1",
             ph_path("o.key"), ph_path("o.csr"));
    EXPECT_INT(system(cmd), 0);
    X509_REQ *req = NULL;
    EXPECT_INT(moat_csr_load(ph_path("o.csr"), &req, NULL).kind, MOAT_OK);
    char **got = NULL;
    size_t n = 0;
    /* No SAN: the CN stands in, as old tools put the host name there. */
    EXPECT_INT(moat_csr_names(req, &got, &n, NULL).kind, MOAT_OK);
    EXPECT_INT(n, 1);
    if (n == 1) {
        EXPECT_STR(got[0], "cn-only.test");
    }
    moat_names_free(got, n);
    X509_REQ_free(req);
    /* A CN that is not a name, no SAN: nothing to sign. */
    snprintf(cmd, sizeof(cmd),
             "openssl req -new -key %s -subj '/CN=Ada Lovelace' -out %s >/dev/null 2>&1",
             ph_path("o.key"), ph_path("p.csr"));
    EXPECT_INT(system(cmd), 0);
    EXPECT_INT(moat_csr_load(ph_path("p.csr"), &req, NULL).kind, MOAT_OK);
    struct moat_err err = {0};
    EXPECT_INT(moat_csr_names(req, &got, &n, &err).kind, MOAT_E_CERT);
    EXPECT(ph_contains(err.msg, "asks for no name"));
    X509_REQ_free(req);
}

static void expect_load_fails(const char *data, size_t len, const char *needle)
{
    X509_REQ *req = (X509_REQ *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_csr_load_mem(data, len, "x.csr", &req, &err).kind, MOAT_E_CERT);
    EXPECT(req == NULL);
    EXPECT_STR(err.where, "x.csr");
    if (!ph_contains(err.msg, needle)) {
        TEST__FAIL("\"%s\" lacks \"%s\"", err.msg, needle);
    }
    EXPECT_INT(ERR_peek_error(), 0);
}

TEST_CASE(refusals)
{
    EVP_PKEY *k = ph_key();
    const char *names[] = {"example.test"};
    X509_REQ *req = NULL;
    EXPECT_INT(moat_csr_new(names, 1, k, &req, NULL).kind, MOAT_OK);
    /* Altered after signing: the subject changes, the signature no longer matches. */
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "O", MBSTRING_UTF8,
                               (const unsigned char *)"evil", -1, -1, 0);
    char *pem = csr_pem(req);
    expect_load_fails(pem, strlen(pem), "does not verify");
    free(pem);
    X509_REQ_free(req);

    /* RSA 1024: weak. */
    EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    req = X509_REQ_new();
    X509_REQ_set_pubkey(req, weak);
    X509_REQ_sign(req, weak, EVP_sha256());
    pem = csr_pem(req);
    expect_load_fails(pem, strlen(pem), "1024 bits");
    free(pem);
    X509_REQ_free(req);
    EVP_PKEY_free(weak);

    /* A certificate, a key, garbage, nothing, a cut PEM. */
    struct ph_pki p;
    ph_pki_make(&p, "csr");
    char *certs = ph_pem(p.leaf, NULL, NULL, NULL);
    expect_load_fails(certs, strlen(certs), "holds a certificate");
    free(certs);
    ph_pki_free(&p);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *kp = NULL;
    long kn = BIO_get_mem_data(b, &kp);
    expect_load_fails(kp, (size_t)kn, "holds a private key");
    BIO_free(b);
    expect_load_fails("", 0, "is empty");
    expect_load_fails("hello", 5, "holds no signing request");
    expect_load_fails("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n", 41, "damaged");
    static const char bad_b64[] = "-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n"
                                  "-----END CERTIFICATE REQUEST-----\n";
    expect_load_fails(bad_b64, sizeof(bad_b64) - 1, "damaged");
    struct moat_err err = {0};
    X509_REQ *none = NULL;
    EXPECT_INT(moat_csr_load(ph_path("missing.csr"), &none, &err).kind, MOAT_E_NOTFOUND);
    EVP_PKEY_free(k);
}

int main(void)
{
    ph_dir_make();
    RUN(make_and_load);
    RUN(openssl_made_csr);
    RUN(refusals);
    ph_dir_remove();
    TEST_MAIN_END();
}
