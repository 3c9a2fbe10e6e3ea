/*
 * test_show.c: `moat cert show` wording: every field of a certificate, each link of a chain
 * (signed by the next, out of order, ends at a root or at a missing issuer), expiry words, and
 * a CSR.
 */
#include "pki/show.h"

#include "pki/csr.h"
#include "pki_helpers.h"
#include "test.h"

static char *shown_chain(X509 *a, X509 *b, X509 *c)
{
    char *pem = ph_pem(a, b, c, NULL);
    struct moat_chain *ch = NULL;
    char *out = NULL;
    size_t len = 0;
    if (moat_ok(moat_chain_load_mem(pem, strlen(pem), "x.pem", &ch, NULL))) {
        FILE *f = open_memstream(&out, &len);
        moat_show_chain(f, ch, time(NULL));
        fclose(f);
    }
    moat_chain_free(ch);
    free(pem);
    return out;
}

TEST_CASE(chain_in_words)
{
    struct ph_pki p;
    ph_pki_make(&p, "show");
    char *s = shown_chain(p.leaf, p.inter, p.root);
    EXPECT(s != NULL);
    if (s != NULL) {
        EXPECT(ph_contains(s, "x.pem: 3 certificates"));
        EXPECT(ph_contains(s, "Certificate #1 (leaf)"));
        EXPECT(ph_contains(s, "Certificate #2 (intermediate CA)"));
        EXPECT(ph_contains(s, "Certificate #3 (root CA)"));
        EXPECT(ph_contains(s, "Names (SAN):  DNS:localhost, IP:127.0.0.1"));
        EXPECT(ph_contains(s, "Issuer:       CN = show intermediate"));
        EXPECT(ph_contains(s, "(in 90 days)"));
        EXPECT(ph_contains(s, "Key:          ECDSA P-256"));
        EXPECT(ph_contains(s, "Extended key usage: serverAuth (TLS server)"));
        EXPECT(ph_contains(s, "Key usage:    digitalSignature"));
        EXPECT(ph_contains(s, "may issue only end-entity certificates"));
        EXPECT(ph_contains(s, "signed by certificate #2"));
        EXPECT(ph_contains(s, "self-signed: the chain ends here"));
        EXPECT(ph_contains(s, "SHA-256:      "));
    }
    free(s);
    /* Wrong order, and a chain that stops before the root. */
    s = shown_chain(p.leaf, p.root, NULL);
    EXPECT(s != NULL && ph_contains(s, "NOT signed by certificate #2"));
    free(s);
    s = shown_chain(p.leaf, NULL, NULL);
    EXPECT(s != NULL && ph_contains(s, "issued by CN = show intermediate, which is not in this"));
    free(s);
    ph_pki_free(&p);
}

TEST_CASE(expired_and_not_yet)
{
    EVP_PKEY *k = ph_key();
    X509 *old = ph_cert(&(struct ph_cert_spec){
        .cn = "old", .key = k, .nb_offset = -10 * PH_DAY, .na_offset = -3 * PH_DAY});
    X509 *future = ph_cert(&(struct ph_cert_spec){
        .cn = "future", .key = k, .nb_offset = 2 * PH_DAY, .na_offset = 9 * PH_DAY});
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    moat_show_cert(f, old, time(NULL), "");
    moat_show_cert(f, future, time(NULL), "> ");
    fclose(f);
    EXPECT(ph_contains(out, "(EXPIRED 3 days ago)"));
    EXPECT(ph_contains(out, "(NOT YET VALID: in 2 days)"));
    EXPECT(ph_contains(out, "> "
                            "  Subject:      CN = future"));
    EXPECT(ph_contains(out, "Names (SAN):  (none)"));
    EXPECT(ph_contains(out, "Extended key usage: (not limited)"));
    free(out);
    X509_free(old);
    X509_free(future);

    const char *names[] = {"csr.test", "ada@csr.test"};
    X509_REQ *req = NULL;
    EXPECT_INT(moat_csr_new(names, 2, k, &req, NULL).kind, MOAT_OK);
    f = open_memstream(&out, &len);
    moat_show_csr(f, req);
    fclose(f);
    EXPECT(ph_contains(out, "Names (SAN):  DNS:csr.test, email:ada@csr.test"));
    EXPECT(ph_contains(out, "verified"));
    free(out);
    X509_REQ_free(req);
    EVP_PKEY_free(k);
}

int main(void)
{
    RUN(chain_in_words);
    RUN(expired_and_not_yet);
    TEST_MAIN_END();
}
