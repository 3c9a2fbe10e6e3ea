/*
 * jws.c: JWS for ACME (see jws.h).
 *
 * ECDSA signatures leave OpenSSL as DER (SEQUENCE of r and s); JWS wants r || s, each padded
 * to the curve's size (RFC 7518 §3.4), so they are re-encoded here with ECDSA_SIG. The
 * thumbprint's canonical JSON (RFC 7638 §3: required members only, sorted, no whitespace) is
 * jansson's compact, key-sorted output of exactly those members.
 */
#include "acme/jws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

char *moat_b64url(const void *p, size_t n)
{
    if (n > (size_t)1 << 30) {
        return NULL;
    }
    size_t cap = 4 * ((n + 2) / 3) + 1;
    unsigned char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    int w = n ? EVP_EncodeBlock(out, p, (int)n) : 0;
    if (w < 0) {
        free(out);
        return NULL;
    }
    while (w > 0 && out[w - 1] == '=') {
        w--;
    }
    for (int i = 0; i < w; i++) {
        if (out[i] == '+') {
            out[i] = '-';
        } else if (out[i] == '/') {
            out[i] = '_';
        }
    }
    out[w] = '\0';
    return (char *)out;
}

moat_rc moat_b64url_decode(const char *s, unsigned char **out, size_t *len, struct moat_err *err)
{
    *out = NULL;
    *len = 0;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    if (n % 4 == 1 || n > (size_t)1 << 28) {
        MOAT_FAIL(err, MOAT_E_USAGE, "\"%.40s\" is not base64url: its length is wrong", s);
    }
    size_t padded = (n + 3) / 4 * 4;
    unsigned char *in = malloc(padded + 1), *bin = malloc(padded / 4 * 3 + 1);
    if (in == NULL || bin == NULL) {
        free(in);
        free(bin);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-') {
            c = '+';
        } else if (c == '_') {
            c = '/';
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            free(in);
            free(bin);
            MOAT_FAIL(err, MOAT_E_USAGE, "\"%.40s\" is not base64url: it holds '%c'", s,
                      c >= 0x20 && c < 0x7f ? c : '?');
        }
        in[i] = (unsigned char)c;
    }
    for (size_t i = n; i < padded; i++) {
        in[i] = '=';
    }
    int w = padded ? EVP_DecodeBlock(bin, in, (int)padded) : 0;
    free(in);
    if (w < 0) {
        free(bin);
        MOAT_FAIL(err, MOAT_E_USAGE, "\"%.40s\" is not base64url", s);
    }
    /* EVP_DecodeBlock counts the padding as zero bytes: one per '=' added. */
    *len = (size_t)w - (padded - n);
    *out = bin;
    return MOAT_RC_OK;
}

/* The curve size in bytes for an EC key, 0 for other keys. */
static size_t ec_size(EVP_PKEY *k, const char **alg)
{
    if (!EVP_PKEY_is_a(k, "EC")) {
        return 0;
    }
    char curve[64];
    size_t cl = 0;
    if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), &cl)) {
        return 0;
    }
    if (strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0) {
        *alg = "ES256";
        return 32;
    }
    if (strcmp(curve, "secp384r1") == 0 || strcmp(curve, "P-384") == 0) {
        *alg = "ES384";
        return 48;
    }
    return 0;
}

const char *moat_jws_alg(EVP_PKEY *k)
{
    const char *alg = NULL;
    if (ec_size(k, &alg) != 0) {
        return alg;
    }
    if (EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) >= 2048) {
        return "RS256";
    }
    return NULL;
}

moat_rc moat_jws_key_check(EVP_PKEY *k, struct moat_err *err)
{
    if (moat_jws_alg(k) == NULL) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "an ACME account key must be ECDSA P-256 or P-384, or RSA of 2048 bits or "
                  "more (make one: moat key new --type p256)");
    }
    return MOAT_RC_OK;
}

/* base64url of a big number param, left-padded to `pad` bytes (0: its own length). */
static char *bn_b64url(EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(k, param, &bn)) {
        return NULL;
    }
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *bin = malloc(n ? n : 1);
    char *s = NULL;
    if (bin != NULL && BN_bn2binpad(bn, bin, (int)n) == (int)n) {
        s = moat_b64url(bin, n);
    }
    free(bin);
    BN_free(bn);
    return s;
}

static moat_rc set_str(json_t *o, const char *key, char *val, struct moat_err *err)
{
    if (val == NULL || json_object_set_new(o, key, json_string(val)) != 0) {
        free(val);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (JWK)");
    }
    free(val);
    return MOAT_RC_OK;
}

moat_rc moat_jwk_new(EVP_PKEY *k, json_t **out, struct moat_err *err)
{
    *out = NULL;
    MOAT_TRY(moat_jws_key_check(k, err));
    json_t *o = json_object();
    if (o == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (JWK)");
    }
    const char *alg = NULL;
    size_t sz = ec_size(k, &alg);
    moat_rc rc;
    if (sz != 0) {
        rc = set_str(o, "crv", strdup(sz == 32 ? "P-256" : "P-384"), err);
        if (moat_ok(rc)) {
            rc = set_str(o, "kty", strdup("EC"), err);
        }
        if (moat_ok(rc)) {
            rc = set_str(o, "x", bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_X, sz), err);
        }
        if (moat_ok(rc)) {
            rc = set_str(o, "y", bn_b64url(k, OSSL_PKEY_PARAM_EC_PUB_Y, sz), err);
        }
    } else {
        rc = set_str(o, "e", bn_b64url(k, OSSL_PKEY_PARAM_RSA_E, 0), err);
        if (moat_ok(rc)) {
            rc = set_str(o, "kty", strdup("RSA"), err);
        }
        if (moat_ok(rc)) {
            rc = set_str(o, "n", bn_b64url(k, OSSL_PKEY_PARAM_RSA_N, 0), err);
        }
    }
    if (!moat_ok(rc)) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return MOAT_RC_OK;
}

moat_rc moat_jwk_thumbprint(EVP_PKEY *k, char *out, size_t outlen, struct moat_err *err)
{
    json_t *jwk;
    MOAT_TRY(moat_jwk_new(k, &jwk, err));
    char *canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(jwk);
    if (canon == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (JWK thumbprint)");
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL);
    free(canon);
    if (!ok) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "SHA-256 failed");
    }
    char *b = moat_b64url(md, mdlen);
    if (b == NULL || strlen(b) >= outlen) {
        free(b);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "thumbprint buffer too small");
    }
    memcpy(out, b, strlen(b) + 1);
    free(b);
    return MOAT_RC_OK;
}

/* Sign `in` with k as JWS alg wants; *sig (free()) is the JWS form of the signature. */
static moat_rc sign_raw(EVP_PKEY *k, const char *in, size_t inlen, unsigned char **sig,
                        size_t *siglen, struct moat_err *err)
{
    *sig = NULL;
    const char *alg = NULL;
    size_t sz = ec_size(k, &alg);
    const EVP_MD *md = sz == 48 ? EVP_sha384() : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = 0;
    unsigned char *der = NULL;
    moat_rc rc = MOAT_RC_OK;
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, md, NULL, k) != 1 ||
        EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)in, inlen) != 1 ||
        (der = malloc(n)) == NULL ||
        EVP_DigestSign(ctx, der, &n, (const unsigned char *)in, inlen) != 1) {
        rc = moat_err_ssl(err, MOAT_E_TLS, __FILE__, __LINE__, "signing the ACME request failed");
        goto done;
    }
    if (sz == 0) { /* RS256: PKCS#1 v1.5 is what the signature already is */
        *sig = der;
        *siglen = n;
        der = NULL;
        goto done;
    }
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    unsigned char *rs = malloc(2 * sz);
    if (es == NULL || rs == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, (int)sz) != (int)sz ||
        BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + sz, (int)sz) != (int)sz) {
        free(rs);
        rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                          "re-encoding the ECDSA signature failed");
    } else {
        *sig = rs;
        *siglen = 2 * sz;
    }
    ECDSA_SIG_free(es);
done:
    free(der);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* The flattened JWS of protected header `prot` and payload (base64url of it), signed by
 * `sign` (k, or the HMAC of an EAB). */
static moat_rc flatten(json_t *prot, const char *payload, EVP_PKEY *k, const unsigned char *mac,
                       size_t maclen, json_t **out, struct moat_err *err)
{
    *out = NULL;
    char *ph = json_dumps(prot, JSON_COMPACT);
    char *p64 = ph ? moat_b64url(ph, strlen(ph)) : NULL;
    char *pl64 = moat_b64url(payload ? payload : "", payload ? strlen(payload) : 0);
    char *input = NULL, *s64 = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    moat_rc rc = MOAT_RC_OK;
    if (p64 == NULL || pl64 == NULL || (input = malloc(strlen(p64) + strlen(pl64) + 2)) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
        goto done;
    }
    size_t l1 = strlen(p64), l2 = strlen(pl64);
    memcpy(input, p64, l1);
    input[l1] = '.';
    memcpy(input + l1 + 1, pl64, l2 + 1);
    if (k != NULL) {
        rc = sign_raw(k, input, strlen(input), &sig, &siglen, err);
    } else {
        sig = malloc(EVP_MAX_MD_SIZE);
        if (sig == NULL ||
            EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, mac, maclen, (const unsigned char *)input,
                      strlen(input), sig, EVP_MAX_MD_SIZE, &siglen) == NULL) {
            rc = moat_err_ssl(err, MOAT_E_TLS, __FILE__, __LINE__,
                              "the external account binding's HMAC failed");
        }
    }
    if (moat_ok(rc) && (s64 = moat_b64url(sig, siglen)) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
    }
    if (moat_ok(rc)) {
        *out = json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64, "signature", s64);
        if (*out == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
        }
    }
done:
    free(ph);
    free(p64);
    free(pl64);
    free(input);
    free(sig);
    free(s64);
    return rc;
}

moat_rc moat_jws_sign(EVP_PKEY *k, const char *kid, const char *nonce, const char *url,
                      const char *payload, char **out, struct moat_err *err)
{
    *out = NULL;
    MOAT_TRY(moat_jws_key_check(k, err));
    json_t *prot = json_pack("{s:s, s:s}", "alg", moat_jws_alg(k), "url", url);
    if (prot == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (JWS)");
    }
    moat_rc rc = MOAT_RC_OK;
    if (nonce != NULL && json_object_set_new(prot, "nonce", json_string(nonce)) != 0) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
    }
    if (moat_ok(rc)) {
        if (kid != NULL) {
            if (json_object_set_new(prot, "kid", json_string(kid)) != 0) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
            }
        } else {
            json_t *jwk = NULL;
            rc = moat_jwk_new(k, &jwk, err);
            if (moat_ok(rc) && json_object_set_new(prot, "jwk", jwk) != 0) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (JWS)");
            }
        }
    }
    json_t *jws = NULL;
    if (moat_ok(rc)) {
        rc = flatten(prot, payload, k, NULL, 0, &jws, err);
    }
    json_decref(prot);
    if (moat_ok(rc)) {
        *out = json_dumps(jws, JSON_COMPACT);
        json_decref(jws);
        if (*out == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (JWS)");
        }
    }
    return rc;
}

moat_rc moat_jws_key_change(EVP_PKEY *old_key, EVP_PKEY *new_key, const char *kid, const char *url,
                            char **out, struct moat_err *err)
{
    *out = NULL;
    if (kid == NULL || url == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "key change without the account URL or keyChange URL");
    }
    json_t *old_jwk = NULL;
    MOAT_TRY(moat_jwk_new(old_key, &old_jwk, err));
    json_t *body = json_pack("{s:s, s:o}", "account", kid, "oldKey", old_jwk);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (payload == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory (key change)");
    }
    /* kid NULL: the new key's JWK; nonce NULL: the inner JWS has none (§7.3.5). */
    moat_rc rc = moat_jws_sign(new_key, NULL, NULL, url, payload, out, err);
    free(payload);
    return rc;
}

moat_rc moat_jws_eab(const char *eab_kid, const char *eab_hmac_b64url, EVP_PKEY *account_key,
                     const char *url, json_t **out, struct moat_err *err)
{
    *out = NULL;
    unsigned char *mac = NULL;
    size_t maclen = 0;
    moat_rc rc = moat_b64url_decode(eab_hmac_b64url, &mac, &maclen, err);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "reading the external account binding's HMAC key");
        return rc;
    }
    if (maclen < 16) {
        OPENSSL_clear_free(mac, maclen);
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "the external account binding's HMAC key is %zu bytes; a CA's key is at least "
                  "16 (copy it exactly as the CA shows it)",
                  maclen);
    }
    json_t *jwk = NULL, *prot = NULL;
    char *payload = NULL;
    rc = moat_jwk_new(account_key, &jwk, err);
    if (moat_ok(rc)) {
        payload = json_dumps(jwk, JSON_COMPACT);
        prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
        if (payload == NULL || prot == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory (EAB)");
        }
    }
    if (moat_ok(rc)) {
        rc = flatten(prot, payload, NULL, mac, maclen, out, err);
    }
    OPENSSL_clear_free(mac, maclen);
    json_decref(jwk);
    json_decref(prot);
    free(payload);
    return rc;
}

moat_rc moat_acme_key_authz(EVP_PKEY *account_key, const char *token, char **out,
                            struct moat_err *err)
{
    *out = NULL;
    char tp[64];
    MOAT_TRY(moat_jwk_thumbprint(account_key, tp, sizeof(tp), err));
    size_t n = strlen(token) + 1 + strlen(tp) + 1;
    *out = malloc(n);
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(*out, n, "%s.%s", token, tp);
    return MOAT_RC_OK;
}
