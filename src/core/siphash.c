/*
 * siphash.c: see siphash.h. OpenSSL's SIPHASH MAC with an 8-byte output (the "size"
 * parameter) is SipHash-2-4 of the paper. The context is per thread: a MAC context must not
 * be shared, and fetching the algorithm and making a context per call would cost an
 * allocation each time; re-keying an existing one costs nothing but the key schedule.
 */
#include "core/siphash.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static EVP_MAC *mac; /* fetched once for the process */

static void free_ctx(void *p)
{
    EVP_MAC_CTX_free(p);
}

static void init_once(void)
{
    mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    if (pthread_key_create(&ctx_key, free_ctx) != 0) {
        EVP_MAC_free(mac);
        mac = NULL;
    }
}

static EVP_MAC_CTX *thread_ctx(void)
{
    pthread_once(&ctx_once, init_once);
    if (mac == NULL) {
        return NULL;
    }
    EVP_MAC_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MAC_CTX_new(mac);
        if (ctx != NULL && pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MAC_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

uint64_t moat_siphash24(const uint8_t key[16], const void *data, size_t len)
{
    EVP_MAC_CTX *ctx = thread_ctx();
    if (ctx == NULL) {
        return 0;
    }
    unsigned int size = 8;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    uint8_t out[8];
    size_t outl = 0;
    if (!EVP_MAC_init(ctx, key, 16, params) || !EVP_MAC_update(ctx, data, len) ||
        !EVP_MAC_final(ctx, out, &outl, sizeof(out)) || outl != sizeof(out)) {
        return 0;
    }
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | out[i];
    }
    return v;
}
