/*
 * test_jws.c: base64url against RFC 4648's vectors, the JWK and its thumbprint against RFC
 * 7638's example, and JWS signatures checked the way a CA checks them: the protected header
 * decoded and read, the signature verified with OpenSSL over "protected.payload" (ES256,
 * ES384, RS256) and the EAB's HMAC recomputed here; the inner JWS of a key change.
 */
#include "acme/jws.h"

#include "pki/key.h"
#include "test.h"

#include <stdlib.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

/* The test's own base64url, from OpenSSL's standard base64, to check moat's against. */
static char *ref_b64url(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int w = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    while (w > 0 && out[w - 1] == '=') {
        w--;
    }
    for (int i = 0; i < w; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[w] = '\0';
    return out;
}

/* Decode with moat, expecting success; the bytes are NUL-terminated for convenience. */
static unsigned char *dec(const char *s, size_t *len)
{
    unsigned char *out = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_b64url_decode(s, &out, len, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  decoding \"%s\": %s\n", s, err.msg);
        return NULL;
    }
    unsigned char *z = malloc(*len + 1);
    memcpy(z, out, *len);
    z[*len] = '\0';
    free(out);
    return z;
}

static json_t *dec_json(const char *s)
{
    size_t len = 0;
    unsigned char *text = dec(s, &len);
    json_t *j = text ? json_loadb((const char *)text, len, 0, NULL) : NULL;
    free(text);
    return j;
}

static EVP_PKEY *key_new(enum moat_key_type t)
{
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(t, &k, NULL).kind, MOAT_OK);
    return k;
}

TEST_CASE(b64url_rfc4648_vectors)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *s = moat_b64url(v[i].in, strlen(v[i].in));
        EXPECT_STR(s, v[i].out);
        free(s);
        size_t len = 99;
        unsigned char *back = dec(v[i].out, &len);
        EXPECT_INT(len, strlen(v[i].in));
        EXPECT(back != NULL && memcmp(back, v[i].in, strlen(v[i].in)) == 0);
        free(back);
    }
    /* The URL alphabet: '-' and '_' where standard base64 has '+' and '/'. */
    static const unsigned char url[] = {0xfb, 0xff};
    char *s = moat_b64url(url, sizeof(url));
    EXPECT_STR(s, "-_8");
    free(s);
    size_t len = 0;
    unsigned char *back = dec("-_8", &len);
    EXPECT_INT(len, 2);
    EXPECT(back != NULL && back[0] == 0xfb && back[1] == 0xff);
    free(back);
}

TEST_CASE(b64url_decode_padding_and_refusals)
{
    static const struct {
        const char *in, *out;
    } padded[] = {{"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9vYg==", "foob"}, {"Zm9vYmE=", "fooba"}};
    for (size_t i = 0; i < sizeof(padded) / sizeof(padded[0]); i++) {
        size_t len = 99;
        unsigned char *back = dec(padded[i].in, &len);
        EXPECT_INT(len, strlen(padded[i].out));
        EXPECT(back != NULL && memcmp(back, padded[i].out, len) == 0);
        free(back);
    }
    static const char *bad[] = {"Zm+v", "Zm/v",      "Zm 9v", "Zm9v\n", "Zm9vY",
                                "Z",    "Zm9vYmFyZ", "Z=g",   "Zg.",    "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *out = (unsigned char *)1;
        size_t len = 99;
        struct moat_err err = {0};
        EXPECT_INT(moat_b64url_decode(bad[i], &out, &len, &err).kind, MOAT_E_USAGE);
        EXPECT(out == NULL);
        EXPECT_INT(len, 0);
        EXPECT(strstr(err.msg, "base64url") != NULL);
    }
}

TEST_CASE(b64url_round_trips_every_length)
{
    unsigned char bin[70];
    for (size_t i = 0; i < sizeof(bin); i++) {
        bin[i] = (unsigned char)(i * 37 + 0xf0);
    }
    for (size_t n = 0; n <= sizeof(bin); n++) {
        char *s = moat_b64url(bin, n);
        char *ref = ref_b64url(bin, n);
        EXPECT_STR(s, ref);
        EXPECT_INT(strlen(s), (4 * n + 2) / 3);
        size_t len = 0;
        unsigned char *back = dec(s, &len);
        EXPECT_INT(len, n);
        EXPECT(back != NULL && memcmp(back, bin, n) == 0);
        free(back);
        free(s);
        free(ref);
    }
}

/* RFC 7638 §3.1: the RSA key of RFC 7517's example and its thumbprint. */
static const char RFC7638_N[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPe"
    "bWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM"
    "4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

TEST_CASE(thumbprint_rfc7638_example)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = dec(RFC7638_N, &nlen), *e = dec("AQAB", &elen);
    EXPECT_INT(nlen, 256);
    EXPECT_INT(elen, 3);
    BIGNUM *bn_n = BN_bin2bn(n, (int)nlen, NULL), *bn_e = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EXPECT_INT(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n), 1);
    EXPECT_INT(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e), 1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    EXPECT_INT(EVP_PKEY_fromdata_init(pctx), 1);
    EXPECT_INT(EVP_PKEY_fromdata(pctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    EXPECT_INT(EVP_PKEY_get_bits(k), 2048);

    char tp[64];
    struct moat_err err = {0};
    EXPECT_INT(moat_jwk_thumbprint(k, tp, sizeof(tp), &err).kind, MOAT_OK);
    EXPECT_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    /* The JWK itself carries exactly the required members, the same n and e. */
    json_t *jwk = NULL;
    EXPECT_INT(moat_jwk_new(k, &jwk, &err).kind, MOAT_OK);
    EXPECT_INT(json_object_size(jwk), 3);
    EXPECT_STR(json_string_value(json_object_get(jwk, "kty")), "RSA");
    EXPECT_STR(json_string_value(json_object_get(jwk, "n")), RFC7638_N);
    EXPECT_STR(json_string_value(json_object_get(jwk, "e")), "AQAB");
    EXPECT_STR(moat_jws_alg(k), "RS256");
    /* 43 characters and the NUL: a smaller buffer is refused, not overrun. */
    EXPECT_INT(moat_jwk_thumbprint(k, tp, 43, &err).kind, MOAT_E_INTERNAL);
    EXPECT_INT(moat_jwk_thumbprint(k, tp, 44, &err).kind, MOAT_OK);
    EXPECT_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");

    json_decref(jwk);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
}

/* The coordinate `param` of an EC key as the fixed-size big-endian bytes a JWK holds. */
static void ec_coord(EVP_PKEY *k, const char *param, unsigned char *out, size_t sz)
{
    BIGNUM *bn = NULL;
    EXPECT_INT(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    EXPECT_INT(BN_bn2binpad(bn, out, (int)sz), (int)sz);
    BN_free(bn);
}

static void check_ec_jwk(enum moat_key_type t, const char *crv, size_t sz, const char *alg)
{
    EVP_PKEY *k = key_new(t);
    EXPECT_STR(moat_jws_alg(k), alg);
    EXPECT_INT(moat_jws_key_check(k, NULL).kind, MOAT_OK);
    json_t *jwk = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_jwk_new(k, &jwk, &err).kind, MOAT_OK);
    EXPECT_INT(json_object_size(jwk), 4);
    EXPECT_STR(json_string_value(json_object_get(jwk, "crv")), crv);
    EXPECT_STR(json_string_value(json_object_get(jwk, "kty")), "EC");
    unsigned char want[48];
    static const char *coords[] = {"x", "y"};
    static const char *params[] = {OSSL_PKEY_PARAM_EC_PUB_X, OSSL_PKEY_PARAM_EC_PUB_Y};
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        const char *s = json_string_value(json_object_get(jwk, coords[i]));
        unsigned char *got = s ? dec(s, &len) : NULL;
        EXPECT_INT(len, sz);
        ec_coord(k, params[i], want, sz);
        EXPECT(got != NULL && memcmp(got, want, sz) == 0);
        free(got);
    }
    /* The thumbprint hashes exactly {"crv","kty","x","y"}, sorted, without whitespace. */
    char canon[400];
    snprintf(canon, sizeof(canon), "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", crv,
             json_string_value(json_object_get(jwk, "x")),
             json_string_value(json_object_get(jwk, "y")));
    unsigned char md[32];
    EXPECT_INT(EVP_Digest(canon, strlen(canon), md, NULL, EVP_sha256(), NULL), 1);
    char *want_tp = ref_b64url(md, sizeof(md));
    char tp[64];
    EXPECT_INT(moat_jwk_thumbprint(k, tp, sizeof(tp), &err).kind, MOAT_OK);
    EXPECT_STR(tp, want_tp);
    free(want_tp);
    json_decref(jwk);
    EVP_PKEY_free(k);
}

TEST_CASE(jwk_ec_keys)
{
    check_ec_jwk(MOAT_KEY_EC_P256, "P-256", 32, "ES256");
    check_ec_jwk(MOAT_KEY_EC_P384, "P-384", 48, "ES384");
}

TEST_CASE(jwk_rsa_key)
{
    EVP_PKEY *k = key_new(MOAT_KEY_RSA2048);
    EXPECT_STR(moat_jws_alg(k), "RS256");
    json_t *jwk = NULL;
    EXPECT_INT(moat_jwk_new(k, &jwk, NULL).kind, MOAT_OK);
    EXPECT_INT(json_object_size(jwk), 3);
    EXPECT_STR(json_string_value(json_object_get(jwk, "kty")), "RSA");
    EXPECT_STR(json_string_value(json_object_get(jwk, "e")), "AQAB");
    size_t len = 0;
    unsigned char *n = dec(json_string_value(json_object_get(jwk, "n")), &len);
    EXPECT_INT(len, 256);
    EXPECT(n != NULL && (n[0] & 0x80) != 0); /* no leading zero byte */
    free(n);
    json_decref(jwk);
    EVP_PKEY_free(k);
}

static void expect_refused(EVP_PKEY *k)
{
    EXPECT(moat_jws_alg(k) == NULL);
    struct moat_err err = {0};
    EXPECT_INT(moat_jws_key_check(k, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "P-256") != NULL);
    json_t *jwk = (json_t *)1;
    EXPECT_INT(moat_jwk_new(k, &jwk, NULL).kind, MOAT_E_CERT);
    EXPECT(jwk == NULL);
    char *out = (char *)1;
    EXPECT_INT(moat_jws_sign(k, NULL, "n", "https://ca/x", "{}", &out, NULL).kind, MOAT_E_CERT);
    EXPECT(out == NULL);
    char tp[64];
    EXPECT_INT(moat_jwk_thumbprint(k, tp, sizeof(tp), NULL).kind, MOAT_E_CERT);
}

TEST_CASE(unusable_keys_refused)
{
    EVP_PKEY *k = key_new(MOAT_KEY_ED25519);
    expect_refused(k);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EXPECT(k != NULL);
    expect_refused(k);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    EXPECT(k != NULL);
    expect_refused(k);
    EVP_PKEY_free(k);
}

/* A parsed flattened JWS: the three members and the decoded protected header. */
struct jws {
    json_t *root, *prot;
    const char *p64, *pl64, *s64;
};

static int jws_parse(const char *text, struct jws *j)
{
    memset(j, 0, sizeof(*j));
    j->root = json_loads(text, 0, NULL);
    EXPECT(json_is_object(j->root));
    EXPECT_INT(json_object_size(j->root), 3);
    j->p64 = json_string_value(json_object_get(j->root, "protected"));
    j->pl64 = json_string_value(json_object_get(j->root, "payload"));
    j->s64 = json_string_value(json_object_get(j->root, "signature"));
    EXPECT(j->p64 != NULL && j->pl64 != NULL && j->s64 != NULL);
    if (j->p64 == NULL || j->pl64 == NULL || j->s64 == NULL) {
        return 0;
    }
    j->prot = dec_json(j->p64);
    EXPECT(json_is_object(j->prot));
    return j->prot != NULL;
}

static void jws_clear(struct jws *j)
{
    json_decref(j->root);
    json_decref(j->prot);
}

/* "protected.payload": what the signature covers. */
static char *signing_input(const struct jws *j)
{
    size_t n = strlen(j->p64) + strlen(j->pl64) + 2;
    char *s = malloc(n);
    snprintf(s, n, "%s.%s", j->p64, j->pl64);
    return s;
}

/* Verify a JWS signature as a CA does: r || s turned back into DER for ECDSA. */
static int verify(EVP_PKEY *k, const struct jws *j, size_t ec_sz, const EVP_MD *md,
                  const char *tamper)
{
    size_t slen = 0;
    unsigned char *sig = dec(j->s64, &slen);
    if (sig == NULL) {
        return 0;
    }
    unsigned char *der = NULL;
    int derlen = 0;
    if (ec_sz != 0) {
        EXPECT_INT(slen, 2 * ec_sz);
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)ec_sz, NULL),
                       BN_bin2bn(sig + ec_sz, (int)ec_sz, NULL));
        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
    } else {
        EXPECT_INT(slen, (size_t)EVP_PKEY_get_size(k));
        der = OPENSSL_memdup(sig, slen);
        derlen = (int)slen;
    }
    char *input = tamper ? strdup(tamper) : signing_input(j);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k) == 1;
    if (ok && ec_sz == 0) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    }
    ok = ok && EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)input,
                                strlen(input)) == 1;
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free(input);
    OPENSSL_free(der);
    free(sig);
    return ok;
}

static void check_sign(enum moat_key_type t, const char *alg, size_t ec_sz, const EVP_MD *md)
{
    EVP_PKEY *k = key_new(t);
    json_t *jwk = NULL;
    EXPECT_INT(moat_jwk_new(k, &jwk, NULL).kind, MOAT_OK);
    static const char payload[] = "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.example\"}]}";

    /* No account yet: the JWK, a nonce, the URL. */
    char *out = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_jws_sign(k, NULL, "nonce-1", "https://ca/new-order", payload, &out, &err).kind,
               MOAT_OK);
    struct jws j;
    if (jws_parse(out, &j)) {
        EXPECT_INT(json_object_size(j.prot), 4);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "alg")), alg);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "url")), "https://ca/new-order");
        EXPECT_STR(json_string_value(json_object_get(j.prot, "nonce")), "nonce-1");
        EXPECT(json_object_get(j.prot, "kid") == NULL);
        EXPECT(json_equal(json_object_get(j.prot, "jwk"), jwk));
        size_t len = 0;
        unsigned char *pl = dec(j.pl64, &len);
        EXPECT(pl != NULL && strcmp((char *)pl, payload) == 0);
        free(pl);
        EXPECT(verify(k, &j, ec_sz, md, NULL));
        /* The check can fail: another input does not verify. */
        EXPECT(!verify(k, &j, ec_sz, md, "eyJhbGciOiJub25lIn0.e30"));
    }
    jws_clear(&j);
    free(out);

    /* With an account: the kid, no JWK; no nonce member when there is none. */
    EXPECT_INT(
        moat_jws_sign(k, "https://ca/acct/7", NULL, "https://ca/order/1", NULL, &out, &err).kind,
        MOAT_OK);
    if (jws_parse(out, &j)) {
        EXPECT_INT(json_object_size(j.prot), 3);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "alg")), alg);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "kid")), "https://ca/acct/7");
        EXPECT_STR(json_string_value(json_object_get(j.prot, "url")), "https://ca/order/1");
        EXPECT(json_object_get(j.prot, "jwk") == NULL);
        EXPECT(json_object_get(j.prot, "nonce") == NULL);
        EXPECT_STR(j.pl64, ""); /* POST-as-GET */
        EXPECT(verify(k, &j, ec_sz, md, NULL));
    }
    jws_clear(&j);
    free(out);
    json_decref(jwk);
    EVP_PKEY_free(k);
}

TEST_CASE(sign_es256)
{
    check_sign(MOAT_KEY_EC_P256, "ES256", 32, EVP_sha256());
}

TEST_CASE(sign_es384)
{
    check_sign(MOAT_KEY_EC_P384, "ES384", 48, EVP_sha384());
}

TEST_CASE(sign_rs256)
{
    check_sign(MOAT_KEY_RSA2048, "RS256", 0, EVP_sha256());
}

/* HMAC-SHA256 of j's signing input under key, base64url: what the CA computes. */
static char *eab_mac(const unsigned char *key, size_t keylen, const struct jws *j)
{
    char *input = signing_input(j);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    EXPECT(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, (unsigned char *)input,
                     strlen(input), mac, sizeof(mac), &maclen) != NULL);
    EXPECT_INT(maclen, 32);
    free(input);
    return ref_b64url(mac, maclen);
}

static void check_eab(EVP_PKEY *acct, const char *hmac_b64, const unsigned char *key, size_t keylen)
{
    json_t *jwk = NULL;
    EXPECT_INT(moat_jwk_new(acct, &jwk, NULL).kind, MOAT_OK);
    json_t *eab = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_jws_eab("kid-1", hmac_b64, acct, "https://ca/new-acct", &eab, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  EAB: %s\n", err.msg);
        json_decref(jwk);
        return;
    }
    char *text = json_dumps(eab, JSON_COMPACT);
    struct jws j;
    if (jws_parse(text, &j)) {
        EXPECT_INT(json_object_size(j.prot), 3);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "alg")), "HS256");
        EXPECT_STR(json_string_value(json_object_get(j.prot, "kid")), "kid-1");
        EXPECT_STR(json_string_value(json_object_get(j.prot, "url")), "https://ca/new-acct");
        json_t *payload = dec_json(j.pl64);
        EXPECT(json_equal(payload, jwk));
        json_decref(payload);
        char *want = eab_mac(key, keylen, &j);
        EXPECT_STR(j.s64, want);
        free(want);
    }
    jws_clear(&j);
    free(text);
    json_decref(eab);
    json_decref(jwk);
}

TEST_CASE(eab_hs256)
{
    static const char hmac_b64[] =
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    /* Decoded here with OpenSSL's standard base64: 64 characters, no padding needed. */
    char std[sizeof(hmac_b64)];
    for (size_t i = 0; i < sizeof(hmac_b64); i++) {
        std[i] = hmac_b64[i] == '-' ? '+' : hmac_b64[i] == '_' ? '/' : hmac_b64[i];
    }
    unsigned char key[48];
    EXPECT_INT(EVP_DecodeBlock(key, (unsigned char *)std, 64), 48);
    EVP_PKEY *acct = key_new(MOAT_KEY_EC_P256);
    check_eab(acct, hmac_b64, key, sizeof(key));

    /* A 32-byte key is 43 characters: its last group is short, and must decode to 32 bytes,
     * not 33, or the CA computes another HMAC. */
    unsigned char key32[32];
    EXPECT_INT(RAND_bytes(key32, sizeof(key32)), 1);
    char *b64 = ref_b64url(key32, sizeof(key32));
    EXPECT_INT(strlen(b64), 43);
    check_eab(acct, b64, key32, sizeof(key32));
    free(b64);
    EVP_PKEY_free(acct);
}

TEST_CASE(eab_bad_hmac_keys)
{
    EVP_PKEY *acct = key_new(MOAT_KEY_EC_P256);
    static const char *bad[] = {"zWNDZM6eQGHWpSRT+al5eIUYFTu7EajV", "zWNDZM6eQGHW pSRTPal5eIUY",
                                "zWNDZM6eQGHWpSRTP", "AAAAAAAAAAAAAAAAAAAA", /* 15 bytes */
                                ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *eab = (json_t *)1;
        struct moat_err err = {0};
        EXPECT_INT(moat_jws_eab("kid-1", bad[i], acct, "https://ca/new-acct", &eab, &err).kind,
                   MOAT_E_USAGE);
        EXPECT(eab == NULL);
        json_decref(eab);
    }
    /* 16 bytes is enough. */
    json_t *eab = NULL;
    EXPECT_INT(
        moat_jws_eab("kid-1", "AAAAAAAAAAAAAAAAAAAAAA", acct, "https://ca/a", &eab, NULL).kind,
        MOAT_OK);
    EXPECT(eab != NULL);
    json_decref(eab);
    /* An account key moat cannot sign with is refused as in a JWS. */
    EVP_PKEY *ed = key_new(MOAT_KEY_ED25519);
    eab = (json_t *)1;
    EXPECT_INT(moat_jws_eab("kid-1", "AAAAAAAAAAAAAAAAAAAAAA", ed, "https://ca/a", &eab, NULL).kind,
               MOAT_E_CERT);
    EXPECT(eab == NULL);
    json_decref(eab);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(acct);
}

TEST_CASE(key_authz)
{
    EVP_PKEY *k = key_new(MOAT_KEY_EC_P256);
    char tp[64];
    EXPECT_INT(moat_jwk_thumbprint(k, tp, sizeof(tp), NULL).kind, MOAT_OK);
    EXPECT_INT(strlen(tp), 43);
    char *ka = NULL;
    EXPECT_INT(
        moat_acme_key_authz(k, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &ka, NULL).kind,
        MOAT_OK);
    char want[128];
    snprintf(want, sizeof(want), "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.%s", tp);
    EXPECT_STR(ka, want);
    free(ka);
    EVP_PKEY *ed = key_new(MOAT_KEY_ED25519);
    ka = (char *)1;
    EXPECT_INT(moat_acme_key_authz(ed, "tok", &ka, NULL).kind, MOAT_E_CERT);
    EXPECT(ka == NULL);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(k);
}

/* The inner JWS of a key change as a CA reads it (RFC 8555 §7.3.5): signed by the new key,
 * which it carries as "jwk", with the keyChange URL and no nonce; the payload names the account
 * and the old key. */
TEST_CASE(key_change_inner_jws)
{
    EVP_PKEY *old_key = key_new(MOAT_KEY_EC_P256), *new_key = key_new(MOAT_KEY_EC_P256);
    json_t *old_jwk = NULL, *new_jwk = NULL;
    EXPECT_INT(moat_jwk_new(old_key, &old_jwk, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_jwk_new(new_key, &new_jwk, NULL).kind, MOAT_OK);
    char *out = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_jws_key_change(old_key, new_key, "https://ca/acct/7", "https://ca/key-change",
                                   &out, &err)
                   .kind,
               MOAT_OK);
    struct jws j = {0};
    if (out != NULL && jws_parse(out, &j)) {
        EXPECT_INT(json_object_size(j.prot), 3);
        EXPECT_STR(json_string_value(json_object_get(j.prot, "alg")), "ES256");
        EXPECT_STR(json_string_value(json_object_get(j.prot, "url")), "https://ca/key-change");
        EXPECT(json_equal(json_object_get(j.prot, "jwk"), new_jwk));
        EXPECT(json_object_get(j.prot, "nonce") == NULL);
        EXPECT(json_object_get(j.prot, "kid") == NULL);
        json_t *pl = dec_json(j.pl64);
        EXPECT(json_is_object(pl));
        EXPECT_INT(json_object_size(pl), 2);
        EXPECT_STR(json_string_value(json_object_get(pl, "account")), "https://ca/acct/7");
        EXPECT(json_equal(json_object_get(pl, "oldKey"), old_jwk));
        EXPECT(!json_equal(json_object_get(pl, "oldKey"), new_jwk));
        json_decref(pl);
        /* Signed by the new key, and not by the old one. */
        EXPECT(verify(new_key, &j, 32, EVP_sha256(), NULL));
        EXPECT(!verify(old_key, &j, 32, EVP_sha256(), NULL));
    }
    jws_clear(&j);
    free(out);

    /* Refusals: no account URL, no keyChange URL, an old key that cannot be a JWK. */
    out = (char *)1;
    EXPECT_INT(moat_jws_key_change(old_key, new_key, NULL, "https://ca/kc", &out, NULL).kind,
               MOAT_E_INTERNAL);
    EXPECT(out == NULL);
    EXPECT_INT(moat_jws_key_change(old_key, new_key, "https://ca/acct/7", NULL, &out, NULL).kind,
               MOAT_E_INTERNAL);
    EVP_PKEY *ed = key_new(MOAT_KEY_ED25519);
    EXPECT_INT(
        moat_jws_key_change(ed, new_key, "https://ca/acct/7", "https://ca/kc", &out, NULL).kind,
        MOAT_E_CERT);
    EXPECT_INT(
        moat_jws_key_change(old_key, ed, "https://ca/acct/7", "https://ca/kc", &out, NULL).kind,
        MOAT_E_CERT);
    EXPECT(out == NULL);
    EVP_PKEY_free(ed);
    json_decref(old_jwk);
    json_decref(new_jwk);
    EVP_PKEY_free(old_key);
    EVP_PKEY_free(new_key);
}

int main(void)
{
    RUN(b64url_rfc4648_vectors);
    RUN(b64url_decode_padding_and_refusals);
    RUN(b64url_round_trips_every_length);
    RUN(thumbprint_rfc7638_example);
    RUN(jwk_ec_keys);
    RUN(jwk_rsa_key);
    RUN(unusable_keys_refused);
    RUN(sign_es256);
    RUN(sign_es384);
    RUN(sign_rs256);
    RUN(eab_hs256);
    RUN(eab_bad_hmac_keys);
    RUN(key_authz);
    RUN(key_change_inner_jws);
    TEST_MAIN_END();
}
