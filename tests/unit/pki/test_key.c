/*
 * test_key.c: key generation, type names, descriptions, saving (0600, atomic, no clobber) and
 * every way moat_key_load must refuse a file, each with its own words.
 */
#include "pki/key.h"

#include "pki_helpers.h"
#include "test.h"

#include <openssl/encoder.h>

/* Load `path` expecting failure of `kind` with `needle` in the message; the file name must be
 * in err.where and OpenSSL's error queue must be left empty. */
static void expect_load_fails(const char *path, enum moat_errkind kind, const char *needle)
{
    EVP_PKEY *k = (EVP_PKEY *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_key_load(path, &k, &err).kind, kind);
    EXPECT(k == NULL);
    EXPECT(ph_contains(err.msg, needle));
    EXPECT_STR(err.where, path);
    EXPECT_INT(ERR_peek_error(), 0);
    ERR_clear_error();
}

static EVP_PKEY *load_ok(const char *path)
{
    EVP_PKEY *k = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_key_load(path, &k, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (rc.kind != MOAT_OK) {
        fprintf(stderr, "  %s: %s\n", path, err.msg);
    }
    EXPECT_INT(ERR_peek_error(), 0);
    return k;
}

/* Write k to path with a chosen OpenSSL encoding (for traditional/DER/encrypted cases). */
static void write_key_encoded(const char *path, EVP_PKEY *k, const char *format,
                              const char *structure, const char *cipher)
{
    OSSL_ENCODER_CTX *ectx =
        OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_KEYPAIR, format, structure, NULL);
    EXPECT(ectx != NULL);
    if (cipher != NULL) {
        OSSL_ENCODER_CTX_set_cipher(ectx, cipher, NULL);
        OSSL_ENCODER_CTX_set_passphrase(ectx, (const unsigned char *)"secret", 6);
    }
    unsigned char *data = NULL;
    size_t len = 0;
    EXPECT_INT(OSSL_ENCODER_to_data(ectx, &data, &len), 1);
    OSSL_ENCODER_CTX_free(ectx);
    EXPECT_INT(ph_write(path, data, len, 0600), 0);
    OPENSSL_free(data);
}

TEST_CASE(new_and_describe_every_type)
{
    static const struct {
        enum moat_key_type t;
        const char *desc;
    } cases[] = {
        {MOAT_KEY_EC_P256, "ECDSA P-256"}, {MOAT_KEY_EC_P384, "ECDSA P-384"},
        {MOAT_KEY_RSA2048, "RSA 2048"},    {MOAT_KEY_RSA3072, "RSA 3072"},
        {MOAT_KEY_ED25519, "Ed25519"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = NULL;
        EXPECT_INT(moat_key_new(cases[i].t, &k, NULL).kind, MOAT_OK);
        char buf[64];
        EXPECT_STR(moat_key_describe(k, buf, sizeof(buf)), cases[i].desc);
        EVP_PKEY_free(k);
    }
    char buf[16];
    EXPECT_STR(moat_key_describe(NULL, buf, sizeof(buf)), "none");
    EVP_PKEY *k = (EVP_PKEY *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_key_new((enum moat_key_type)77, &k, &err).kind, MOAT_E_INTERNAL);
    EXPECT(k == NULL);
}

TEST_CASE(new_rsa4096)
{
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_RSA4096, &k, NULL).kind, MOAT_OK);
    EXPECT_INT(EVP_PKEY_get_bits(k), 4096);
    EVP_PKEY_free(k);
}

TEST_CASE(parse_type_names)
{
    /* Every spelling people type (issue 10, item 12), in the cases they type them. */
    static const struct {
        const char *s;
        enum moat_key_type t;
    } ok[] = {
        {"p256", MOAT_KEY_EC_P256},       {"P256", MOAT_KEY_EC_P256},
        {"p-256", MOAT_KEY_EC_P256},      {"P-256", MOAT_KEY_EC_P256},
        {"ECDSA", MOAT_KEY_EC_P256},      {"ecdsa", MOAT_KEY_EC_P256},
        {"ec", MOAT_KEY_EC_P256},         {"EC", MOAT_KEY_EC_P256},
        {"ecdsa-p256", MOAT_KEY_EC_P256}, {"ECDSA-P256", MOAT_KEY_EC_P256},
        {"ecdsa_p256", MOAT_KEY_EC_P256}, {"ec-p256", MOAT_KEY_EC_P256},
        {"EC-P256", MOAT_KEY_EC_P256},    {"ecdsa256", MOAT_KEY_EC_P256},
        {"prime256v1", MOAT_KEY_EC_P256}, {"PRIME256V1", MOAT_KEY_EC_P256},
        {"secp256r1", MOAT_KEY_EC_P256},  {"SECP256R1", MOAT_KEY_EC_P256},
        {"nistp256", MOAT_KEY_EC_P256},   {"p384", MOAT_KEY_EC_P384},
        {"P-384", MOAT_KEY_EC_P384},      {"p-384", MOAT_KEY_EC_P384},
        {"ecdsa-p384", MOAT_KEY_EC_P384}, {"ECDSA-P384", MOAT_KEY_EC_P384},
        {"ec-p384", MOAT_KEY_EC_P384},    {"ecdsa384", MOAT_KEY_EC_P384},
        {"secp384r1", MOAT_KEY_EC_P384},  {"SecP384R1", MOAT_KEY_EC_P384},
        {"nistp384", MOAT_KEY_EC_P384},   {"rsa", MOAT_KEY_RSA2048},
        {"RSA", MOAT_KEY_RSA2048},        {"rsa2048", MOAT_KEY_RSA2048},
        {"RSA2048", MOAT_KEY_RSA2048},    {"rsa-2048", MOAT_KEY_RSA2048},
        {"rsa:2048", MOAT_KEY_RSA2048},   {"RSA:2048", MOAT_KEY_RSA2048},
        {"rsa_2048", MOAT_KEY_RSA2048},   {"RSA3072", MOAT_KEY_RSA3072},
        {"rsa-3072", MOAT_KEY_RSA3072},   {"rsa:3072", MOAT_KEY_RSA3072},
        {"rsa4096", MOAT_KEY_RSA4096},    {"rsa-4096", MOAT_KEY_RSA4096},
        {"rsa:4096", MOAT_KEY_RSA4096},   {"RSA4096", MOAT_KEY_RSA4096},
        {"ed25519", MOAT_KEY_ED25519},    {"Ed25519", MOAT_KEY_ED25519},
        {"ED25519", MOAT_KEY_ED25519},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        enum moat_key_type t = MOAT_KEY_TYPE_COUNT;
        struct moat_err err = {0};
        EXPECT_INT(moat_key_parse_type(ok[i].s, &t, &err).kind, MOAT_OK);
        if (t != ok[i].t) {
            fprintf(stderr, "  spelling \"%s\"\n", ok[i].s);
        }
        EXPECT_INT(t, ok[i].t);
    }
    static const char *bad[] = {"",      "rsa1024",  "rsa:1024",  "p521x",    "dsa",
                                "ed448", " p256",    "p256 ",     "p 256",    "-",
                                "rsa:",  "p256.",    "secp521",   "rsa2049",  "x25519",
                                "ecdh",  "rsa/2048", "rsa--2048", ":rsa2048", "ec:prime256v1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum moat_key_type t = MOAT_KEY_TYPE_COUNT;
        struct moat_err err = {0};
        EXPECT_INT(moat_key_parse_type(bad[i], &t, &err).kind, MOAT_E_USAGE);
        /* The error lists what is accepted, with the other spellings. */
        EXPECT(ph_contains(err.msg, "unknown key type"));
        EXPECT(ph_contains(err.msg, "p256"));
        EXPECT(ph_contains(err.msg, "rsa:2048"));
        EXPECT(ph_contains(err.msg, "secp384r1"));
        EXPECT(ph_contains(err.msg, "ed25519"));
        EXPECT_INT(t, MOAT_KEY_TYPE_COUNT);
    }
    /* A name longer than any key type is refused, not cut to one that matches. */
    enum moat_key_type t = MOAT_KEY_TYPE_COUNT;
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memcpy(longname + sizeof(longname) - 8, "rsa2048", 7);
    EXPECT_INT(moat_key_parse_type(longname, &t, NULL).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_key_parse_type(NULL, &t, NULL).kind, MOAT_E_USAGE);
    EXPECT_INT(t, MOAT_KEY_TYPE_COUNT);
}

TEST_CASE(save_then_load_every_type)
{
    for (int t = 0; t < MOAT_KEY_TYPE_COUNT; t++) {
        if (t == MOAT_KEY_RSA4096 || t == MOAT_KEY_RSA3072) {
            continue; /* slow, and the same code path as RSA 2048 */
        }
        EVP_PKEY *k = NULL;
        EXPECT_INT(moat_key_new((enum moat_key_type)t, &k, NULL).kind, MOAT_OK);
        const char *p = ph_path("saved.key");
        unlink(p);
        mode_t old = umask(0);
        EXPECT_INT(moat_key_save(p, k, 0, NULL).kind, MOAT_OK);
        umask(old);
        EXPECT_INT(ph_mode(p), 0600);
        EXPECT_INT(moat_key_file_too_open(p), 0);
        char *pem = ph_read(p, NULL);
        EXPECT(pem != NULL && strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
        free(pem);
        EVP_PKEY *back = load_ok(p);
        EXPECT_INT(EVP_PKEY_eq(k, back), 1);
        EVP_PKEY_free(back);
        EVP_PKEY_free(k);
        unlink(p);
    }
    EXPECT(!ph_has_tmp(ph_dir));
}

TEST_CASE(save_refuses_to_replace_without_force)
{
    const char *p = ph_path("keep.key");
    EVP_PKEY *a = NULL, *b = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &b, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_save(p, a, 0, NULL).kind, MOAT_OK);
    struct moat_err err = {0};
    EXPECT_INT(moat_key_save(p, b, 0, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "--force"));
    EVP_PKEY *back = load_ok(p);
    EXPECT_INT(EVP_PKEY_eq(a, back), 1);
    EVP_PKEY_free(back);
    EXPECT_INT(moat_key_save(p, b, 1, NULL).kind, MOAT_OK);
    back = load_ok(p);
    EXPECT_INT(EVP_PKEY_eq(b, back), 1);
    EVP_PKEY_free(back);
    EXPECT_INT(ph_mode(p), 0600);
    /* A missing folder is an I/O error, not a crash or a half-written key. */
    EXPECT_INT(moat_key_save(ph_path("nodir/k.key"), a, 0, &err).kind, MOAT_E_IO);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    unlink(p);
    EXPECT(!ph_has_tmp(ph_dir));
}

TEST_CASE(file_too_open)
{
    const char *p = ph_path("open.key");
    EXPECT_INT(ph_write(p, "x", 1, 0600), 0);
    EXPECT_INT(moat_key_file_too_open(p), 0);
    chmod(p, 0640);
    EXPECT_INT(moat_key_file_too_open(p), 1);
    chmod(p, 0604);
    EXPECT_INT(moat_key_file_too_open(p), 1);
    chmod(p, 0400);
    EXPECT_INT(moat_key_file_too_open(p), 0);
    EXPECT_INT(moat_key_file_too_open(ph_path("missing.key")), 0);
    unlink(p);
}

TEST_CASE(load_missing_empty_garbage)
{
    expect_load_fails(ph_path("missing.pem"), MOAT_E_NOTFOUND, "does not exist");
    const char *p = ph_path("bad.pem");
    ph_write_str(p, "");
    expect_load_fails(p, MOAT_E_CERT, "is empty");
    ph_write_str(p, " \n\t\r\n");
    expect_load_fails(p, MOAT_E_CERT, "is empty");
    ph_write_str(p, "hello, this is not a key\n");
    expect_load_fails(p, MOAT_E_CERT, "neither PEM nor DER");
    static const unsigned char bin[] = {0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x00, 0xff, 0x13};
    ph_write(p, bin, sizeof(bin), 0600);
    expect_load_fails(p, MOAT_E_CERT, "neither PEM nor DER");
    ph_write_str(p, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPc user@host\n");
    expect_load_fails(p, MOAT_E_CERT, "SSH public key");
    expect_load_fails(ph_dir, MOAT_E_CONFIG, "folder");
    unlink(p);
}

TEST_CASE(load_damaged_pem)
{
    const char *p = ph_path("damaged.pem");
    ph_write_str(p,
                 "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n");
    expect_load_fails(p, MOAT_E_CERT, "not valid PEM");
    ph_write_str(p, "-----BEGIN PRIVATE KEY-----\n!!!!not base64!!!!\n-----END PRIVATE KEY-----\n");
    expect_load_fails(p, MOAT_E_CERT, "not valid PEM");
    /* Valid base64, but the DER inside is not a key. */
    ph_write_str(p, "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n");
    expect_load_fails(p, MOAT_E_CERT, "damaged");
    ph_write_str(p, "-----BEGIN SOMETHING ELSE-----\nMAMCAQA=\n-----END SOMETHING ELSE-----\n");
    expect_load_fails(p, MOAT_E_CERT, "\"SOMETHING ELSE\"");
    unlink(p);
}

static int load_as_other(void *arg)
{
    EVP_PKEY *k = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_key_load(arg, &k, &err);
    EVP_PKEY_free(k);
    return rc.kind == MOAT_E_IO && strstr(err.msg, "permission") != NULL &&
                   strcmp(err.where, arg) == 0
               ? 0
               : 1;
}

TEST_CASE(load_unreadable)
{
    const char *p = ph_path("root-only.key");
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &k, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_save(p, k, 1, NULL).kind, MOAT_OK);
    if (geteuid() != 0) {
        chmod(p, 0);
    }
    EXPECT_INT(ph_as_nobody(load_as_other, (void *)p), 0);
    EVP_PKEY_free(k);
    unlink(p);
}

TEST_CASE(load_certificate_csr_public_key_instead)
{
    struct ph_pki pki;
    ph_pki_make(&pki, "t");
    const char *p = ph_path("cert.pem");
    ph_write_certs(p, pki.leaf, NULL, NULL, NULL);
    expect_load_fails(p, MOAT_E_CERT, "holds a certificate, not a private key");

    /* DER certificate */
    unsigned char *der = NULL;
    int dlen = i2d_X509(pki.leaf, &der);
    ph_write(p, der, (size_t)dlen, 0600);
    OPENSSL_free(der);
    expect_load_fails(p, MOAT_E_CERT, "holds a certificate");

    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_pubkey(req, pki.leaf_key);
    X509_REQ_sign(req, pki.leaf_key, EVP_sha256());
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(bio, req);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    ph_write(p, data, (size_t)n, 0600);
    BIO_free(bio);
    expect_load_fails(p, MOAT_E_CERT, "certificate signing request");
    der = NULL;
    dlen = i2d_X509_REQ(req, &der);
    ph_write(p, der, (size_t)dlen, 0600);
    OPENSSL_free(der);
    expect_load_fails(p, MOAT_E_CERT, "certificate signing request");
    X509_REQ_free(req);

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pki.leaf_key);
    n = BIO_get_mem_data(bio, &data);
    ph_write(p, data, (size_t)n, 0600);
    BIO_free(bio);
    expect_load_fails(p, MOAT_E_CERT, "only a public key");
    der = NULL;
    dlen = i2d_PUBKEY(pki.leaf_key, &der);
    ph_write(p, der, (size_t)dlen, 0600);
    OPENSSL_free(der);
    expect_load_fails(p, MOAT_E_CERT, "only a public key");
    ph_pki_free(&pki);
    unlink(p);
}

TEST_CASE(load_encrypted_keys_never_prompt)
{
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &k, NULL).kind, MOAT_OK);
    const char *p = ph_path("key.pem");
    /* PKCS#8 "ENCRYPTED PRIVATE KEY" */
    write_key_encoded(p, k, "PEM", "PrivateKeyInfo", "AES-256-CBC");
    expect_load_fails(p, MOAT_E_CERT, "is encrypted with a passphrase");
    {
        struct moat_err err = {0};
        EVP_PKEY *x = NULL;
        EXPECT_INT(moat_key_load(p, &x, &err).kind, MOAT_E_CERT);
        char want[400];
        snprintf(want, sizeof(want), "`openssl pkey -in %s -out %s/key-plain.pem`", p, ph_dir);
        EXPECT(ph_contains(err.msg, want));
        EXPECT(ph_contains(err.msg, "0600"));
    }
    /* Traditional "EC PRIVATE KEY" with Proc-Type: 4,ENCRYPTED */
    write_key_encoded(p, k, "PEM", "type-specific", "AES-256-CBC");
    char *s = ph_read(p, NULL);
    EXPECT(ph_contains(s, "Proc-Type: 4,ENCRYPTED"));
    free(s);
    expect_load_fails(p, MOAT_E_CERT, "is encrypted with a passphrase");
    /* DER EncryptedPrivateKeyInfo */
    write_key_encoded(p, k, "DER", "PrivateKeyInfo", "AES-256-CBC");
    expect_load_fails(p, MOAT_E_CERT, "is encrypted with a passphrase");
    EVP_PKEY_free(k);
    unlink(p);
}

TEST_CASE(load_other_good_encodings)
{
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &k, NULL).kind, MOAT_OK);
    const char *p = ph_path("enc.key");
    static const struct {
        const char *format, *structure;
    } enc[] = {{"PEM", "type-specific"}, {"DER", "PrivateKeyInfo"}, {"DER", "type-specific"}};
    for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        write_key_encoded(p, k, enc[i].format, enc[i].structure, NULL);
        EVP_PKEY *back = load_ok(p);
        EXPECT_INT(EVP_PKEY_eq(k, back), 1);
        EVP_PKEY_free(back);
    }
    /* `openssl ecparam -genkey` style: EC PARAMETERS then EC PRIVATE KEY; and a combined
     * certificate + key file. */
    BIO *bio = BIO_new(BIO_s_mem());
    BIO_puts(bio, "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n");
    PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    ph_write(p, data, (size_t)n, 0600);
    BIO_free(bio);
    EVP_PKEY *back = load_ok(p);
    EXPECT_INT(EVP_PKEY_eq(k, back), 1);
    EVP_PKEY_free(back);

    struct ph_pki pki;
    ph_pki_make(&pki, "combined");
    bio = BIO_new(BIO_s_mem());
    BIO_puts(bio, "subject=CN = localhost\n");
    PEM_write_bio_X509(bio, pki.leaf);
    PEM_write_bio_PrivateKey(bio, pki.leaf_key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(bio, &data);
    ph_write(p, data, (size_t)n, 0600);
    BIO_free(bio);
    back = load_ok(p);
    EXPECT_INT(EVP_PKEY_eq(pki.leaf_key, back), 1);
    EVP_PKEY_free(back);
    ph_pki_free(&pki);
    EVP_PKEY_free(k);
    unlink(p);
}

TEST_CASE(load_unsupported_types)
{
    const char *p = ph_path("odd.key");
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    write_key_encoded(p, k, "PEM", "PrivateKeyInfo", NULL);
    expect_load_fails(p, MOAT_E_CERT, "curve secp256k1");
    EVP_PKEY_free(k);

    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    write_key_encoded(p, k, "PEM", "PrivateKeyInfo", NULL);
    expect_load_fails(p, MOAT_E_CERT, "RSA key of 1024 bits");
    EVP_PKEY_free(k);

    k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    write_key_encoded(p, k, "PEM", "PrivateKeyInfo", NULL);
    expect_load_fails(p, MOAT_E_CERT, "cannot sign TLS handshakes");
    EVP_PKEY_free(k);

    ph_write_str(p, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                    "-----END OPENSSH PRIVATE KEY-----\n");
    expect_load_fails(p, MOAT_E_CERT, "OpenSSH private key");
    unlink(p);
}

TEST_CASE(load_mem_names_the_source)
{
    EVP_PKEY *k = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_key_load_mem("", 0, NULL, &k, &err).kind, MOAT_E_CERT);
    EXPECT_STR(err.where, "<memory>");
    EXPECT_INT(moat_key_load_mem("x", 1, "site.key", &k, &err).kind, MOAT_E_CERT);
    EXPECT_STR(err.where, "site.key");
    EXPECT(ph_contains(err.msg, "site.key is neither"));
}

int main(void)
{
    ph_dir_make();
    RUN(new_and_describe_every_type);
    RUN(new_rsa4096);
    RUN(parse_type_names);
    RUN(save_then_load_every_type);
    RUN(save_refuses_to_replace_without_force);
    RUN(file_too_open);
    RUN(load_missing_empty_garbage);
    RUN(load_damaged_pem);
    RUN(load_unreadable);
    RUN(load_certificate_csr_public_key_instead);
    RUN(load_encrypted_keys_never_prompt);
    RUN(load_other_good_encodings);
    RUN(load_unsupported_types);
    RUN(load_mem_names_the_source);
    ph_dir_remove();
    TEST_MAIN_END();
}
