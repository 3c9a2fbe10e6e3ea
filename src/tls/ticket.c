/*
 * ticket.c: session ticket keys, rotation, and the OpenSSL ticket key callback.
 *
 * One key set serves the whole process: every worker thread's handshakes read it (many, under a
 * read lock held for a few microseconds), the server's timer rotates it (rare, under the write
 * lock). A key is a 16-byte name, an AES-256-CBC key and an HMAC-SHA256 key, the layout OpenSSL's
 * ticket format expects (RFC 5077 §4 recommended construction). New random material is drawn
 * outside the lock, old material is wiped with OPENSSL_cleanse as soon as it is replaced.
 *
 * The callback has no user argument, so the key set hangs on each SSL_CTX's ex_data with its own
 * reference: contexts keep the keys alive, and freeing the last context wipes them.
 */
#include "tls/ticket.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KEY_NAME_LEN 16 /* fixed by OpenSSL's ticket format (TLSEXT_KEYNAME_LENGTH) */

struct ticket_key {
    unsigned char name[KEY_NAME_LEN]; /* public: sent in the clear at the start of the ticket */
    unsigned char aes[32];            /* AES-256-CBC key (secret) */
    unsigned char hmac[32];           /* HMAC-SHA256 key (secret) */
};

_Static_assert(sizeof(struct ticket_key) == MOAT_TLS_TICKET_KEY_BYTES, "the key's wire layout");

#define NOLD 2 /* keys that only decrypt: the previous one, and a shared set's next one */

/* Invariant: `cur` always holds a valid key; old[0, nold) are valid keys that only decrypt
 * (after a local rotation, old[0] is the key `cur` replaced). */
struct moat_tls_tickets {
    pthread_rwlock_t lock; /* guards cur, old, nold */
    struct ticket_key cur;
    struct ticket_key old[NOLD];
    size_t nold;
    _Atomic int shared;         /* keys come from moat_tls_tickets_set: _tick rotates nothing */
    EVP_CIPHER *cipher;         /* AES-256-CBC, fetched once at creation; owned */
    uint64_t rotate_s;          /* rotation period */
    _Atomic long long next_due; /* wall-clock second of the next rotation by _tick */
    atomic_uint refs;           /* caller's reference + one per context installed on */
};

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int tickets_idx = -1;

static void tickets_unref(struct moat_tls_tickets *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1) {
        return;
    }
    OPENSSL_cleanse(&t->cur, sizeof(t->cur));
    OPENSSL_cleanse(t->old, sizeof(t->old));
    pthread_rwlock_destroy(&t->lock);
    EVP_CIPHER_free(t->cipher);
    free(t);
}

static void tickets_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
    tickets_unref(ptr);
}

static void idx_init(void)
{
    tickets_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tickets_ex_free);
}

static int key_make(struct ticket_key *k)
{
    return RAND_priv_bytes(k->name, sizeof(k->name)) > 0 &&
           RAND_priv_bytes(k->aes, sizeof(k->aes)) > 0 &&
           RAND_priv_bytes(k->hmac, sizeof(k->hmac)) > 0;
}

int moat_tls_ticket_key_make(unsigned char out[MOAT_TLS_TICKET_KEY_BYTES])
{
    struct ticket_key k;
    int ok = key_make(&k);
    if (ok) {
        memcpy(out, &k, sizeof(k));
    } else {
        ERR_clear_error();
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return ok;
}

moat_rc moat_tls_tickets_new(uint64_t rotate_s, struct moat_tls_tickets **out, struct moat_err *err)
{
    *out = NULL;
    if (rotate_s == 0 || rotate_s > (uint64_t)365 * 24 * 3600) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "ticket key rotation period must be 1 second to 1 year (got %llu s)",
                  (unsigned long long)rotate_s);
    }
    if (pthread_once(&idx_once, idx_init) != 0 || tickets_idx < 0) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot register ticket key data");
    }
    struct moat_tls_tickets *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for ticket keys");
    }
    /* glibc's default rwlock prefers readers: under steady handshakes the rotation could wait
     * for ever. Prefer the writer; it holds the lock for a few copies. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int e = pthread_rwlock_init(&t->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (e != 0) {
        free(t);
        return moat_err_sys(err, MOAT_E_NOMEM, e, __FILE__, __LINE__,
                            "cannot create the ticket key lock");
    }
    atomic_init(&t->refs, 1);
    t->rotate_s = rotate_s;
    atomic_init(&t->next_due, (long long)time(NULL) + (long long)rotate_s);
    ERR_clear_error();
    t->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (t->cipher == NULL) {
        tickets_unref(t);
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot fetch AES-256-CBC for session tickets");
    }
    if (!key_make(&t->cur)) {
        tickets_unref(t);
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "the random generator failed making a ticket key");
    }
    *out = t;
    return MOAT_RC_OK;
}

void moat_tls_tickets_free(struct moat_tls_tickets *t)
{
    tickets_unref(t);
}

struct moat_tls_tickets *moat_tls_tickets_ref(struct moat_tls_tickets *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

void moat_tls_tickets_unshare(struct moat_tls_tickets *t)
{
    atomic_store(&t->next_due, (long long)time(NULL) + (long long)t->rotate_s);
    atomic_store(&t->shared, 0);
}

/* Swap in a new key if `due_check` is 0 or the rotation is still due at `now` (another thread
 * may have rotated while we drew random bytes). */
static void rotate_at(struct moat_tls_tickets *t, long long now, int due_check)
{
    struct ticket_key fresh;
    if (!key_make(&fresh)) {
        /* Keep serving with the current keys; the next tick tries again. */
        OPENSSL_cleanse(&fresh, sizeof(fresh));
        ERR_clear_error();
        return;
    }
    if (pthread_rwlock_wrlock(&t->lock) != 0) {
        OPENSSL_cleanse(&fresh, sizeof(fresh));
        return;
    }
    if (!due_check || now >= atomic_load(&t->next_due)) {
        OPENSSL_cleanse(t->old, sizeof(t->old));
        t->old[0] = t->cur;
        t->nold = 1;
        t->cur = fresh;
        atomic_store(&t->next_due, now + (long long)t->rotate_s);
    }
    pthread_rwlock_unlock(&t->lock);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
}

void moat_tls_tickets_rotate(struct moat_tls_tickets *t)
{
    rotate_at(t, (long long)time(NULL), 0);
}

void moat_tls_tickets_tick(struct moat_tls_tickets *t, time_t now)
{
    if ((long long)now < atomic_load(&t->next_due) || atomic_load(&t->shared)) {
        return;
    }
    rotate_at(t, (long long)now, 1);
}

void moat_tls_tickets_set(struct moat_tls_tickets *t,
                          const unsigned char cur[MOAT_TLS_TICKET_KEY_BYTES],
                          const unsigned char *const *others, size_t nothers)
{
    atomic_store(&t->shared, 1);
    if (pthread_rwlock_wrlock(&t->lock) != 0) {
        return;
    }
    memcpy(&t->cur, cur, sizeof(t->cur));
    OPENSSL_cleanse(t->old, sizeof(t->old));
    t->nold = 0;
    for (size_t i = 0; i < nothers && t->nold < NOLD; i++) {
        memcpy(&t->old[t->nold++], others[i], sizeof(t->old[0]));
    }
    pthread_rwlock_unlock(&t->lock);
}

/* The MAC context is made by OpenSSL (an HMAC EVP_MAC_CTX); we only key it. The digest name is
 * resolved through OpenSSL's method cache, not a fresh provider fetch. */
static int mac_key(EVP_MAC_CTX *hctx, const unsigned char *key, size_t len)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key, len);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). Encrypting: name the
 * current key, pick a random IV, key the cipher and MAC; 1 = issue, 0 = issue no ticket (the
 * handshake goes on). Decrypting: 1 = current key, 2 = previous key (valid, but OpenSSL is asked
 * to send a ticket under the current key so the client moves forward), 0 = unknown or expired
 * key: a full handshake. We never return < 0 (which would fail the handshake over a ticket).
 */
static int ticket_cb(SSL *ssl, unsigned char key_name[KEY_NAME_LEN],
                     unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx,
                     int enc)
{
    /* The connection's current context: after an SNI switch, the site's own choice applies. */
    struct moat_tls_tickets *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_idx);
    if (t == NULL) {
        return 0;
    }
    int ivlen = EVP_CIPHER_get_iv_length(t->cipher);
    if (ivlen <= 0 || ivlen > EVP_MAX_IV_LENGTH) {
        return 0;
    }
    if (enc && RAND_bytes(iv, ivlen) <= 0) {
        ERR_clear_error();
        return 0;
    }
    if (pthread_rwlock_rdlock(&t->lock) != 0) {
        return 0;
    }
    int rc = 0;
    const struct ticket_key *k = NULL;
    if (enc) {
        k = &t->cur;
        memcpy(key_name, k->name, KEY_NAME_LEN);
        rc = 1;
    } else if (memcmp(key_name, t->cur.name, KEY_NAME_LEN) == 0) {
        k = &t->cur;
        /* TLS 1.3 clients use a ticket once (RFC 8446 §C.4): unless asked to renew, OpenSSL
         * sends no new ticket after a resumption, and the client's next connection would be a
         * full handshake. 2 asks for the fresh ticket. */
        rc = SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
    } else {
        for (size_t i = 0; i < t->nold && k == NULL; i++) {
            if (memcmp(key_name, t->old[i].name, KEY_NAME_LEN) == 0) {
                k = &t->old[i];
                rc = 2;
            }
        }
    }
    if (k != NULL) {
        int ok = enc ? EVP_EncryptInit_ex(cctx, t->cipher, NULL, k->aes, iv)
                     : EVP_DecryptInit_ex(cctx, t->cipher, NULL, k->aes, iv);
        if (!ok || !mac_key(hctx, k->hmac, sizeof(k->hmac))) {
            ERR_clear_error();
            rc = 0;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return rc;
}

moat_rc moat_tls_tickets_install(struct moat_tls_tickets *t, SSL_CTX *ctx, struct moat_err *err)
{
    if (pthread_once(&idx_once, idx_init) != 0 || tickets_idx < 0) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot register ticket key data");
    }
    struct moat_tls_tickets *old = SSL_CTX_get_ex_data(ctx, tickets_idx);
    if (t != NULL) {
        atomic_fetch_add(&t->refs, 1);
    }
    if (!SSL_CTX_set_ex_data(ctx, tickets_idx, t)) {
        tickets_unref(t);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach ticket keys to the TLS context");
    }
    tickets_unref(old);
    /* A restored session still has to pass OpenSSL's session ID context check (TLS 1.2 and
     * 1.3 alike), which ctx.c ties to the certificates: shared keys do not let a ticket from one
     * site resume on another. */
    if (!SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot install the session ticket callback");
    }
    if (t == NULL) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        if (!SSL_CTX_set_num_tickets(ctx, 0)) {
            MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot turn off TLS 1.3 tickets");
        }
        return MOAT_RC_OK;
    }
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    if (!SSL_CTX_set_num_tickets(ctx, 1)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot set the number of TLS 1.3 tickets");
    }
    return MOAT_RC_OK;
}
