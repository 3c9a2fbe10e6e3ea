/*
 * key.c: generate, save and load private keys.
 *
 * Loading is where people get stuck, so it looks at what the file holds before decoding: PEM
 * blocks are listed by label (RFC 7468) and a key is decoded only from a private-key block; when
 * there is none, the labels found say what the file is instead (a certificate, a CSR, an
 * encrypted key...). DER is tried only when the file has no PEM at all. The decoder is given a
 * password callback that refuses, so nothing ever waits on a terminal.
 */
#include "pki/key.h"

#include "pki/fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

moat_rc moat_key_new(enum moat_key_type t, EVP_PKEY **out, struct moat_err *err)
{
    EVP_PKEY *k = NULL;
    *out = NULL;
    switch (t) {
    case MOAT_KEY_EC_P256:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case MOAT_KEY_EC_P384:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    case MOAT_KEY_RSA2048:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        break;
    case MOAT_KEY_RSA3072:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
        break;
    case MOAT_KEY_RSA4096:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
        break;
    case MOAT_KEY_ED25519:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    case MOAT_KEY_TYPE_COUNT:
    default:
        MOAT_FAIL(err, MOAT_E_INTERNAL, "unknown key type %d", (int)t);
    }
    if (k == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot generate a key");
    }
    *out = k;
    return MOAT_RC_OK;
}

/* Spellings people type: moat's own, OpenSSL's (`req -newkey rsa:2048`, curve names
 * prime256v1/secp384r1 of `-pkeyopt ec_paramgen_curve:`), the NIST and SECG curve names and
 * "ecdsa-p256" styles of other tools. Compared after normalize_type_name (lower case, no '-', ':'
 * or '_'), so "RSA-2048", "rsa:2048" and "rsa_2048" are all "rsa2048" and "P-256" is "p256". */
static const struct {
    const char *name; /* normalized */
    enum moat_key_type type;
} type_names[] = {
    {"p256", MOAT_KEY_EC_P256},       {"ecdsa", MOAT_KEY_EC_P256},
    {"ec", MOAT_KEY_EC_P256},         {"ecdsap256", MOAT_KEY_EC_P256},
    {"ecp256", MOAT_KEY_EC_P256},     {"ecdsa256", MOAT_KEY_EC_P256},
    {"prime256v1", MOAT_KEY_EC_P256}, {"secp256r1", MOAT_KEY_EC_P256},
    {"nistp256", MOAT_KEY_EC_P256},   {"p384", MOAT_KEY_EC_P384},
    {"ecdsap384", MOAT_KEY_EC_P384},  {"ecp384", MOAT_KEY_EC_P384},
    {"ecdsa384", MOAT_KEY_EC_P384},   {"secp384r1", MOAT_KEY_EC_P384},
    {"nistp384", MOAT_KEY_EC_P384},   {"rsa", MOAT_KEY_RSA2048},
    {"rsa2048", MOAT_KEY_RSA2048},    {"rsa3072", MOAT_KEY_RSA3072},
    {"rsa4096", MOAT_KEY_RSA4096},    {"ed25519", MOAT_KEY_ED25519},
};

/* Lower case without '-', ':' and '_' into out (n bytes); 0 when it does not fit or holds
 * something no key type name has (spaces, other punctuation, a separator that is not between
 * two letters or digits, as in "rsa:"), which then fails the lookup. */
static int normalize_type_name(const char *s, char *out, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '-' || ch == ':' || ch == '_') {
            if (i == 0 || !isalnum((unsigned char)s[i - 1]) || !isalnum((unsigned char)s[i + 1])) {
                return 0;
            }
            continue;
        }
        if (!isalnum(ch) || j + 1 >= n) {
            return 0;
        }
        out[j++] = (char)tolower(ch);
    }
    out[j] = '\0';
    return j > 0;
}

moat_rc moat_key_parse_type(const char *s, enum moat_key_type *out, struct moat_err *err)
{
    char norm[32];
    if (s != NULL && normalize_type_name(s, norm, sizeof(norm))) {
        for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
            if (strcmp(norm, type_names[i].name) == 0) {
                *out = type_names[i].type;
                return MOAT_RC_OK;
            }
        }
    }
    MOAT_FAIL(err, MOAT_E_USAGE,
              "unknown key type \"%.64s\": use " MOAT_KEY_TYPE_NAMES
              " (case does not matter, nor '-' or ':' in them)",
              s ? s : "");
}

moat_rc moat_key_save(const char *path, EVP_PKEY *k, int force, struct moat_err *err)
{
    struct stat st;
    if (!force && lstat(path, &st) == 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "%s already exists; moat does not replace a private key unless asked to "
                  "(--force), because an overwritten key cannot be recovered",
                  path);
    }
    char *pem = NULL;
    size_t n = 0;
    moat_rc rc = moat_key_pem(k, &pem, &n, err);
    if (!moat_ok(rc)) {
        moat_err_where(err, "%s", path);
        return rc;
    }
    rc = force ? moat_fs_write_atomic(path, pem, n, 0600, err)
               : moat_fs_write_new(path, pem, n, 0600, err);
    OPENSSL_clear_free(pem, n);
    return rc;
}

moat_rc moat_key_pem(EVP_PKEY *k, char **out, size_t *len, struct moat_err *err)
{
    *out = NULL;
    *len = 0;
    /* secmem: the PEM text lives in the secure heap when the program set one up. */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot allocate a buffer for the key");
    }
    if (PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_CERT, "cannot encode the private key");
    }
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    *out = OPENSSL_malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, pem, (size_t)n);
        (*out)[n] = '\0';
        *len = (size_t)n;
    }
    OPENSSL_cleanse(pem, (size_t)n);
    BIO_free(bio);
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

/* ---- loading ---- */

/* What the PEM blocks of a file turned out to be, when none was a usable private key. */
struct pem_seen {
    int blocks;
    int encrypted;
    int cert;
    int csr;
    int pubkey;
    int ssh;
    int params;
    char other[64]; /* the first label we do not know */
};

struct pw_state {
    int asked;
};

/* Never prompt: a server at boot has nobody at the terminal. Remember that a passphrase was
 * wanted so the message can say "encrypted" instead of "damaged". */
static int refuse_passphrase(char *buf, int size, int rwflag, void *u)
{
    struct pw_state *st = u;
    st->asked = 1;
    return -1;
}

/* Decode one DER private key (PKCS#8 or traditional); NULL on failure with *asked set when the
 * DER was an encrypted key. */
static EVP_PKEY *decode_private_der(const unsigned char *der, size_t len, int *asked)
{
    EVP_PKEY *pk = NULL;
    struct pw_state st = {0};
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(&pk, "DER", NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
    if (dctx == NULL) {
        return NULL;
    }
    (void)OSSL_DECODER_CTX_set_pem_password_cb(dctx, refuse_passphrase, &st);
    const unsigned char *p = der;
    size_t left = len;
    int ok = OSSL_DECODER_from_data(dctx, &p, &left);
    OSSL_DECODER_CTX_free(dctx);
    *asked = st.asked;
    if (!ok) {
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "key.pem" -> "key-plain.pem": the file name the decrypt command should write. */
static void plain_name(const char *name, char *out, size_t n)
{
    size_t len = strlen(name);
    if (ends_with(name, ".pem") || ends_with(name, ".key")) {
        snprintf(out, n, "%.*s-plain%s", (int)(len - 4), name, name + len - 4);
        return;
    }
    snprintf(out, n, "%s-plain.pem", name);
}

static moat_rc fail_encrypted(const char *name, struct moat_err *err)
{
    char plain[256];
    plain_name(name, plain, sizeof(plain));
    ERR_clear_error();
    moat_err_where(err, "%s", name);
    MOAT_FAIL(err, MOAT_E_CERT,
              "%s is encrypted with a passphrase: moat needs an unencrypted key; decrypt it with "
              "`openssl pkey -in %s -out %s` and keep that file 0600",
              name, name, plain);
}

/* Refuse what a TLS server cannot or should not use; RFC 8446 §4.2.3 lists the signature
 * schemes, and keys below 2048-bit RSA are refused by OpenSSL's default security level. */
moat_rc moat_key_check_supported(EVP_PKEY *k, const char *name, struct moat_err *err)
{
    char desc[64];
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) != 1) {
            group[0] = '\0';
        }
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0 ||
            strcmp(group, "secp521r1") == 0) {
            return MOAT_RC_OK;
        }
        ERR_clear_error();
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is an EC key on curve %s, which TLS clients do not accept: make a new key "
                  "on P-256 (moat key new --type p256)",
                  name, group[0] ? group : "(unnamed)");
    }
    if (EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS")) {
        int bits = EVP_PKEY_get_bits(k);
        if (bits >= 2048) {
            return MOAT_RC_OK;
        }
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is an RSA key of %d bits, too small to be safe: make a new key (RSA 2048 or "
                  "more, or ECDSA P-256) and get a new certificate for it",
                  name, bits);
    }
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448")) {
        return MOAT_RC_OK;
    }
    moat_key_describe(k, desc, sizeof(desc));
    moat_err_where(err, "%s", name);
    MOAT_FAIL(err, MOAT_E_CERT,
              "%s holds a %s key, which cannot sign TLS handshakes: use an ECDSA P-256, RSA "
              "2048+ or Ed25519 key",
              name, desc);
}

static int is_private_key_label(const char *label)
{
    /* "PRIVATE KEY" (PKCS#8), "RSA/EC/DSA PRIVATE KEY" (traditional); the encrypted and OpenSSH
     * forms are handled apart. */
    return ends_with(label, "PRIVATE KEY") && strcmp(label, "ENCRYPTED PRIVATE KEY") != 0 &&
           strcmp(label, "OPENSSH PRIVATE KEY") != 0;
}

static void note_label(struct pem_seen *seen, const char *label)
{
    seen->blocks++;
    if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0) {
        seen->encrypted = 1;
    } else if (strcmp(label, "OPENSSH PRIVATE KEY") == 0) {
        seen->ssh = 1;
    } else if (strcmp(label, "CERTIFICATE") == 0 || strcmp(label, "X509 CERTIFICATE") == 0 ||
               strcmp(label, "TRUSTED CERTIFICATE") == 0) {
        seen->cert = 1;
    } else if (strcmp(label, "CERTIFICATE REQUEST") == 0 ||
               strcmp(label, "NEW CERTIFICATE REQUEST") == 0) {
        seen->csr = 1;
    } else if (strcmp(label, "PUBLIC KEY") == 0 || strcmp(label, "RSA PUBLIC KEY") == 0) {
        seen->pubkey = 1;
    } else if (ends_with(label, "PARAMETERS")) {
        seen->params = 1; /* `openssl ecparam -genkey` writes EC PARAMETERS before the key */
    } else if (seen->other[0] == '\0') {
        snprintf(seen->other, sizeof(seen->other), "%s", label);
    }
}

/* The file had no usable private key: say what it had instead. */
static moat_rc fail_no_key(const struct pem_seen *seen, const char *name, int damaged,
                           struct moat_err *err)
{
    ERR_clear_error();
    moat_err_where(err, "%s", name);
    if (seen->encrypted) {
        return fail_encrypted(name, err);
    }
    if (seen->ssh) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is an OpenSSH private key; TLS needs a PEM key: convert a copy with "
                  "`ssh-keygen -p -m PKCS8 -f <copy>` or better, make a new key for TLS",
                  name);
    }
    if (seen->cert) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds a certificate, not a private key: give the key file here (the one "
                  "the CSR was made from); were the certificate and key swapped?",
                  name);
    }
    if (seen->csr) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds a certificate signing request (CSR), not a private key: give the key "
                  "file the CSR was made from",
                  name);
    }
    if (seen->pubkey) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds only a public key: the server needs the private key it belongs to",
                  name);
    }
    if (damaged) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is not valid PEM (a block is cut short or its base64 is damaged): copy the "
                  "key file again in full",
                  name);
    }
    if (seen->other[0] != '\0') {
        MOAT_FAIL(err, MOAT_E_CERT, "%s holds a \"%s\" PEM block, not a private key", name,
                  seen->other);
    }
    MOAT_FAIL(err, MOAT_E_CERT, "%s has no private key in it", name);
}

static int memmem_found(const void *data, size_t len, const char *needle)
{
    return memmem(data, len, needle, strlen(needle)) != NULL;
}

static int only_space(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isspace(p[i])) {
            return 0;
        }
    }
    return 1;
}

/* Decode a private-key PEM block's DER into *out. */
static moat_rc key_from_block(const char *label, const char *header, const unsigned char *der,
                              long dlen, const char *name, EVP_PKEY **out, struct moat_err *err)
{
    /* RFC 1421 §4.6.1.1: traditional keys encrypted by OpenSSL carry "Proc-Type: 4,ENCRYPTED". */
    if (header != NULL && strstr(header, "ENCRYPTED") != NULL) {
        return fail_encrypted(name, err);
    }
    int asked = 0;
    EVP_PKEY *k = decode_private_der(der, (size_t)dlen, &asked);
    if (k == NULL && asked) {
        return fail_encrypted(name, err);
    }
    if (k == NULL) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL_SSL(err, MOAT_E_CERT,
                      "the %s block in %s is damaged and cannot be decoded: copy the key file "
                      "again in full",
                      label, name);
    }
    *out = k;
    return MOAT_RC_OK;
}

static moat_rc load_pem(const unsigned char *data, size_t len, const char *name, EVP_PKEY **out,
                        struct moat_err *err)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot allocate a buffer for %s", name);
    }
    struct pem_seen seen = {0};
    int damaged = 0;
    moat_rc rc = MOAT_RC_OK;
    EVP_PKEY *k = NULL;
    while (k == NULL && rc.kind == MOAT_OK) {
        char *label = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &label, &header, &der, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            damaged = !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
            ERR_clear_error();
            break;
        }
        if (is_private_key_label(label)) {
            rc = key_from_block(label, header, der, dlen, name, &k, err);
        } else {
            note_label(&seen, label);
        }
        OPENSSL_free(label);
        OPENSSL_free(header);
        OPENSSL_clear_free(der, dlen > 0 ? (size_t)dlen : 0);
    }
    BIO_free(bio);
    MOAT_TRY(rc);
    if (k == NULL) {
        return fail_no_key(&seen, name, damaged, err);
    }
    *out = k;
    return MOAT_RC_OK;
}

/* Does d2i parse the whole buffer as this type? Used only to name what a DER file is. */
static int der_is_sig(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    X509_SIG *x = d2i_X509_SIG(NULL, &p, (long)len);
    int ok = x != NULL && p == data + len;
    X509_SIG_free(x);
    return ok;
}

static int der_is_cert(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    int ok = x != NULL && p == data + len;
    X509_free(x);
    return ok;
}

static int der_is_csr(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    X509_REQ *x = d2i_X509_REQ(NULL, &p, (long)len);
    int ok = x != NULL && p == data + len;
    X509_REQ_free(x);
    return ok;
}

static int der_is_pubkey(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    int ok = k != NULL && p == data + len;
    EVP_PKEY_free(k);
    return ok;
}

static int starts_with(const unsigned char *data, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(data, prefix, n) == 0;
}

static moat_rc load_der(const unsigned char *data, size_t len, const char *name, EVP_PKEY **out,
                        struct moat_err *err)
{
    struct pem_seen seen = {0};
    /* RFC 5958 §3: EncryptedPrivateKeyInfo; recognised before any decode could want a
     * passphrase. */
    if (der_is_sig(data, len)) {
        return fail_encrypted(name, err);
    }
    if (der_is_cert(data, len)) {
        seen.cert = 1;
    } else if (der_is_csr(data, len)) {
        seen.csr = 1;
    } else if (der_is_pubkey(data, len)) {
        seen.pubkey = 1;
    } else {
        int asked = 0;
        EVP_PKEY *k = decode_private_der(data, len, &asked);
        if (k != NULL) {
            *out = k;
            return MOAT_RC_OK;
        }
        if (asked) {
            return fail_encrypted(name, err);
        }
        ERR_clear_error();
        moat_err_where(err, "%s", name);
        if (starts_with(data, len, "ssh-") || starts_with(data, len, "ecdsa-sha2-")) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "%s is an SSH public key, not a TLS private key: give the PEM private key "
                      "file",
                      name);
        }
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is neither PEM nor DER: a private key file starts with \"-----BEGIN "
                  "PRIVATE KEY-----\"",
                  name);
    }
    ERR_clear_error();
    return fail_no_key(&seen, name, 0, err);
}

moat_rc moat_key_load_mem(const void *data, size_t len, const char *name, EVP_PKEY **out,
                          struct moat_err *err)
{
    const unsigned char *p = data;
    *out = NULL;
    if (name == NULL) {
        name = "<memory>";
    }
    if (len == 0 || only_space(p, len)) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s is empty: it should hold a PEM private key (-----BEGIN PRIVATE KEY-----)",
                  name);
    }
    if (len > INT_MAX) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s is too big to be a key file", name);
    }
    EVP_PKEY *k = NULL;
    if (memmem_found(p, len, "-----BEGIN ")) {
        MOAT_TRY(load_pem(p, len, name, &k, err));
    } else {
        MOAT_TRY(load_der(p, len, name, &k, err));
    }
    moat_rc rc = moat_key_check_supported(k, name, err);
    if (rc.kind != MOAT_OK) {
        EVP_PKEY_free(k);
        return rc;
    }
    ERR_clear_error();
    *out = k;
    return MOAT_RC_OK;
}

moat_rc moat_key_load(const char *path, EVP_PKEY **out, struct moat_err *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    *out = NULL;
    MOAT_TRY(moat_fs_read_file(path, MOAT_KEY_FILE_MAX, &data, &len, err));
    moat_rc rc = moat_key_load_mem(data, len, path, out, err);
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

int moat_key_file_too_open(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return 0;
    }
    return (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0;
}

moat_rc moat_key_file_check_mode(const char *path, struct moat_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "the private key %s may be read by every user of this machine (mode %04o): "
                  "chmod 600 %s (or 640 with a group only the server is in)",
                  path, (unsigned)(st.st_mode & 07777), path);
    }
    return MOAT_RC_OK;
}

const char *moat_key_describe(EVP_PKEY *k, char *buf, size_t n)
{
    if (n == 0) {
        return buf;
    }
    if (k == NULL) {
        snprintf(buf, n, "none");
        return buf;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) != 1) {
            ERR_clear_error();
            snprintf(group, sizeof(group), "unknown curve");
        }
        const char *nice = strcmp(group, "prime256v1") == 0  ? "P-256"
                           : strcmp(group, "secp384r1") == 0 ? "P-384"
                           : strcmp(group, "secp521r1") == 0 ? "P-521"
                                                             : group;
        snprintf(buf, n, "ECDSA %s", nice);
        return buf;
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        snprintf(buf, n, "RSA %d", EVP_PKEY_get_bits(k));
        return buf;
    }
    if (EVP_PKEY_is_a(k, "RSA-PSS")) {
        snprintf(buf, n, "RSA-PSS %d", EVP_PKEY_get_bits(k));
        return buf;
    }
    if (EVP_PKEY_is_a(k, "ED25519")) {
        snprintf(buf, n, "Ed25519");
        return buf;
    }
    if (EVP_PKEY_is_a(k, "ED448")) {
        snprintf(buf, n, "Ed448");
        return buf;
    }
    const char *t = EVP_PKEY_get0_type_name(k);
    snprintf(buf, n, "%s", t ? t : "unknown");
    return buf;
}
