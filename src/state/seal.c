/*
 * seal.c: AES-256-GCM sealing for shared stores (see seal.h). Layout: "m1", a 12-byte random
 * nonce, the ciphertext, the 16-byte tag.
 */
#include "state/seal.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <string.h>

moat_rc moat_seal_key(const void *secret, size_t len, const char *purpose,
                      unsigned char out[MOAT_SEAL_KEY_BYTES], struct moat_err *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (kc == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot fetch HKDF");
    }
    OSSL_PARAM p[5];
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, len);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)"moat seal v1", 12);
    p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)purpose, strlen(purpose));
    p[4] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kc, out, MOAT_SEAL_KEY_BYTES, p) > 0;
    EVP_KDF_CTX_free(kc);
    if (!ok) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot derive the sealing key");
    }
    return MOAT_RC_OK;
}

/* One GCM pass: enc 1 seals, 0 opens (then `tag` is checked). */
static int gcm(const unsigned char *key, const unsigned char *iv, const char *name,
               const unsigned char *in, size_t len, unsigned char *out, unsigned char *tag, int enc)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) &&
                    EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)name, (int)strlen(name)) &&
                    (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len)) &&
                    (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag)) &&
                    EVP_CipherFinal_ex(c, out + (len == 0 ? 0 : n), &n) &&
                    (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag));
    EVP_CIPHER_CTX_free(c);
    return ok;
}

moat_rc moat_seal(const unsigned char key[MOAT_SEAL_KEY_BYTES], const char *name, const void *in,
                  size_t len, unsigned char *out, struct moat_err *err)
{
    MOAT_ENSURE(len < (1u << 30), MOAT_E_INTERNAL);
    out[0] = 'm';
    out[1] = '1';
    if (RAND_bytes(out + 2, 12) <= 0 ||
        !gcm(key, out + 2, name, in, len, out + 14, out + 14 + len, 1)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot seal a value for %.200s", name);
    }
    return MOAT_RC_OK;
}

moat_rc moat_unseal(const unsigned char key[MOAT_SEAL_KEY_BYTES], const char *name,
                    const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen,
                    struct moat_err *err)
{
    *outlen = 0;
    if (inlen < MOAT_SEAL_OVERHEAD || in[0] != 'm' || in[1] != '1' || inlen >= (1u << 30)) {
        MOAT_FAIL(err, MOAT_E_PEER, "the value of %.200s is not sealed by moat", name);
    }
    size_t len = inlen - MOAT_SEAL_OVERHEAD;
    unsigned char tag[16];
    memcpy(tag, in + 14 + len, 16);
    if (!gcm(key, in + 2, name, in + 14, len, out, tag, 0)) {
        ERR_clear_error();
        OPENSSL_cleanse(out, len);
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the value of %.200s does not open with this node's secret (another "
                  "secret_file, or changed in the store)",
                  name);
    }
    *outlen = len;
    return MOAT_RC_OK;
}
