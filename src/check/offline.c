/*
 * offline.c: see offline.h. OpenSSL's own objects do the expanding: a server context is made
 * with this machine's defaults (the system configuration, as the server's would be), given the
 * cipher strings, and asked what it would offer. The TLS library's part that no server setting
 * changes (no compression, RFC 5746, RFC 7507, RFC 7627, no heartbeat) is OpenSSL 3's.
 */
#include "check/offline.h"

#include "check/certfacts.h"
#include "check/suites.h"
#include "pki/fsutil.h"
#include "pki/verify.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

moat_rc moat_check_offline_read(const char *path, char **text, size_t *len, struct moat_err *err)
{
    unsigned char *t = NULL;
    MOAT_TRY(moat_fs_read_file(path, 4 * 1024 * 1024, &t, len, err));
    const unsigned char *nul = memchr(t, '\0', *len);
    if (nul != NULL) {
        int line = 1;
        for (const unsigned char *q = t; q < nul; q++) {
            line += *q == '\n';
        }
        free(t);
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s:%d: a NUL byte (this is not a text file)", path, line);
    }
    *text = (char *)t;
    return MOAT_RC_OK;
}

void moat_check_offline_path(const char *base, const char *name, char *out, size_t cap)
{
    if (name[0] == '/') {
        snprintf(out, cap, "%s", name);
    } else {
        snprintf(out, cap, "%.4000s/%.4000s", base, name);
    }
}

void moat_check_intent_init(struct moat_check_intent *in)
{
    memset(in, 0, sizeof(*in));
    in->redirect = MOAT_UNKNOWN;
    in->http = 1;
}

#define KEY_RSA 1
#define KEY_EC 2
#define KEY_DSA 4
#define KEY_RSA_PSS 8
#define KEY_ED25519 16
#define KEY_ED448 32

/* The keys of a listener's certificates: their kinds, and for EC keys the TLS 1.3 scheme
 * their curve ties them to. */
struct keys {
    unsigned kinds;
    uint16_t ec13[MOAT_CHECK_INTENT_CERTS];
    size_t nec13;
};

/* Whether a suite can be used at all with these keys: its authentication needs a certificate
 * of that kind, DHE needs parameters, PSK and SRP need callbacks that web servers never set. */
static int usable(const SSL_CIPHER *c, unsigned keys, int dh)
{
    int auth = SSL_CIPHER_get_auth_nid(c), kx = SSL_CIPHER_get_kx_nid(c);
    if (kx == NID_kx_psk || kx == NID_kx_ecdhe_psk || kx == NID_kx_dhe_psk ||
        kx == NID_kx_rsa_psk || kx == NID_kx_srp || auth == NID_auth_psk || auth == NID_auth_srp) {
        return 0;
    }
    if (kx == NID_kx_dhe && !dh) {
        return 0;
    }
    return auth == NID_auth_any || auth == NID_auth_null ||
           (auth == NID_auth_rsa && (keys & KEY_RSA)) ||
           (auth == NID_auth_ecdsa && (keys & (KEY_EC | KEY_ED25519 | KEY_ED448))) ||
           (auth == NID_auth_dss && (keys & KEY_DSA));
}

/* Versions and suites, as this OpenSSL makes them of the intent. 1 when a DHE suite is among
 * them. */
static int library_facts(const struct moat_check_intent *in, unsigned keys,
                         struct moat_check_scan *s, int *level_out)
{
    SSL_CTX *x = SSL_CTX_new(TLS_server_method());
    if (x == NULL) {
        return 0;
    }
    int lib_min = (int)SSL_CTX_get_min_proto_version(x);
    int ciphers_ok = in->ciphers == NULL || SSL_CTX_set_cipher_list(x, in->ciphers) == 1;
    if (in->suites13 != NULL) {
        (void)SSL_CTX_set_ciphersuites(x, in->suites13);
    }
    /* The security level the cipher string asks for also bounds the versions (at level 1 and
     * up, OpenSSL 3 refuses TLS 1.0 and 1.1, whose handshake signs with SHA-1). */
    int level = SSL_CTX_get_security_level(x);
    *level_out = level;
    for (int v = MOAT_VER_SSL2; v < MOAT_VER_COUNT; v++) {
        int proto = (int)moat_check_ver_wire((enum moat_check_ver)v);
        int lib = v >= MOAT_VER_TLS10 && (lib_min == 0 || proto >= lib_min) &&
                  (v >= MOAT_VER_TLS12 || level == 0); /* Debian's OpenSSL has no SSLv3 */
        s->versions[v] = (in->versions & (1u << v)) && lib ? MOAT_YES : MOAT_NO;
    }
    int dh = in->dh_file != NULL || in->dh_bits > 0, dhe = 0;
    STACK_OF(SSL_CIPHER) *sk = ciphers_ok ? SSL_CTX_get_ciphers(x) : NULL;
    for (int i = 0; sk != NULL && i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
        if (!usable(c, keys, dh)) {
            continue;
        }
        /* The first version the suite can be used with, as OpenSSL's table says. */
        const char *cv = SSL_CIPHER_get_version(c);
        int min = strcmp(cv, "TLSv1.3") == 0   ? TLS1_3_VERSION
                  : strcmp(cv, "TLSv1.2") == 0 ? TLS1_2_VERSION
                                               : TLS1_VERSION;
        for (int v = MOAT_VER_TLS10; v < MOAT_VER_COUNT; v++) {
            int proto = (int)moat_check_ver_wire((enum moat_check_ver)v);
            if (s->versions[v] != MOAT_YES || (v == MOAT_VER_TLS13) != (min == TLS1_3_VERSION) ||
                proto < min || s->nsuites[v] >= MOAT_CHECK_MAX_SUITES) {
                continue;
            }
            s->suites[v][s->nsuites[v]++] = SSL_CIPHER_get_protocol_id(c);
            dhe |= SSL_CIPHER_get_kx_nid(c) == NID_kx_dhe;
        }
    }
    for (int v = MOAT_VER_TLS10; v < MOAT_VER_COUNT; v++) {
        /* As the live probe tells it: the server's first suite against a later one that is not
         * ChaCha20 where there is one (see job_suites in scan.c). */
        int chacha_after = s->nsuites[v] > 1 && !moat_check_suite_chacha(s->suites[v][0]);
        for (size_t i = 1; i < s->nsuites[v] && chacha_after; i++) {
            chacha_after = moat_check_suite_chacha(s->suites[v][i]);
        }
        s->server_order[v] = s->nsuites[v] < 2 ? MOAT_UNKNOWN
                             : in->server_order && !(in->prioritize_chacha && chacha_after)
                                 ? MOAT_YES
                                 : MOAT_NO;
    }
    SSL_CTX_free(x);
    ERR_clear_error();
    return dhe;
}

/* The groups, in the server's order: TLS 1.3 takes every group, TLS 1.2's ECDHE only the
 * elliptic curves (OpenSSL 3 does not negotiate RFC 7919 groups for DHE). */
static void groups(const struct moat_check_intent *in, struct moat_check_scan *s)
{
    static const char dflt[] =
        "x25519:secp256r1:x448:secp521r1:secp384r1:ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:"
        "ffdhe8192"; /* OpenSSL 3.0's */
    static const struct {
        const char *ossl, *iana;
    } alias[] = {{"prime256v1", "secp256r1"},
                 {"P-256", "secp256r1"},
                 {"P-384", "secp384r1"},
                 {"P-521", "secp521r1"}};
    char list[512];
    snprintf(list, sizeof(list), "%s", in->groups != NULL ? in->groups : dflt);
    size_t ng;
    const struct moat_check_named *g = moat_check_groups(&ng);
    char *save = NULL;
    for (char *w = strtok_r(list, ":", &save); w != NULL; w = strtok_r(NULL, ":", &save)) {
        const char *name = w;
        for (size_t k = 0; k < sizeof(alias) / sizeof(alias[0]); k++) {
            if (strcasecmp(w, alias[k].ossl) == 0) {
                name = alias[k].iana;
            }
        }
        for (size_t i = 0; i < ng; i++) {
            if (strcasecmp(g[i].name, name) != 0) {
                continue;
            }
            if (s->versions[MOAT_VER_TLS13] == MOAT_YES && s->ngroups13 < MOAT_CHECK_MAX_GROUPS) {
                s->groups13[s->ngroups13++] = g[i].code;
            }
            if (g[i].code < 0x0100 && s->versions[MOAT_VER_TLS12] == MOAT_YES &&
                s->ngroups12 < MOAT_CHECK_MAX_GROUPS) {
                s->groups12[s->ngroups12++] = g[i].code;
            }
            break;
        }
    }
}

static STACK_OF(X509) * read_chain(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *x = NULL;
    /* PEM_read_bio_X509 passes over the other blocks (a key, DH parameters) in the file. */
    while (b != NULL && chain != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            break;
        }
    }
    BIO_free(b);
    ERR_clear_error();
    if (chain != NULL && sk_X509_num(chain) == 0) {
        sk_X509_free(chain);
        chain = NULL;
    }
    return chain;
}

static void cert_of_file(const char *path, const char *cafile, struct moat_check_scan *s)
{
    STACK_OF(X509) *chain = read_chain(path);
    if (chain == NULL) {
        s->offline_vkind = MOAT_V_OTHER;
        snprintf(s->offline_detail, sizeof(s->offline_detail),
                 "%.300s: no PEM certificate could be read", path);
        return;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    moat_check_cert_facts(leaf, chain, s->host, &s->cert);
    s->cert_read = MOAT_YES;
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (st != NULL && vc != NULL && X509_STORE_set_default_paths(st) == 1 &&
        (cafile == NULL || X509_STORE_load_file(st, cafile) == 1) &&
        X509_STORE_CTX_init(vc, st, leaf, chain) == 1) {
        X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(vc);
        X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
        X509_VERIFY_PARAM_set1_host(vp, s->host, 0);
        if (X509_verify_cert(vc) == 1) {
            s->verified = 1;
            s->offline_vkind = MOAT_V_OK;
        } else {
            int e = X509_STORE_CTX_get_error(vc);
            s->offline_vkind = moat_verify_kind_from_x509(e, X509_STORE_CTX_get_current_cert(vc));
            snprintf(s->offline_detail, sizeof(s->offline_detail),
                     "%.200s: %s (OpenSSL verify error %d)", path, X509_verify_cert_error_string(e),
                     e);
        }
    }
    X509_STORE_CTX_free(vc);
    X509_STORE_free(st);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
}

/* The keys the certificates' leaves hold. */
static void key_kinds(const struct moat_check_intent *in, struct keys *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < in->ncerts; i++) {
        BIO *b = BIO_new_file(in->certs[i], "r");
        X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        EVP_PKEY *k = x != NULL ? X509_get0_pubkey(x) : NULL;
        if (k == NULL) {
        } else if (EVP_PKEY_is_a(k, "RSA")) {
            out->kinds |= KEY_RSA;
        } else if (EVP_PKEY_is_a(k, "RSA-PSS")) {
            out->kinds |= KEY_RSA | KEY_RSA_PSS;
        } else if (EVP_PKEY_is_a(k, "EC")) {
            out->kinds |= KEY_EC;
            char curve[64] = "";
            size_t cl = 0;
            (void)EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof(curve), &cl);
            uint16_t code = strcmp(curve, "prime256v1") == 0  ? 0x0403
                            : strcmp(curve, "secp384r1") == 0 ? 0x0503
                            : strcmp(curve, "secp521r1") == 0 ? 0x0603
                                                              : 0;
            if (code != 0 && out->nec13 < MOAT_CHECK_INTENT_CERTS) {
                out->ec13[out->nec13++] = code;
            }
        } else if (EVP_PKEY_is_a(k, "ED25519")) {
            out->kinds |= KEY_ED25519;
        } else if (EVP_PKEY_is_a(k, "ED448")) {
            out->kinds |= KEY_ED448;
        } else if (EVP_PKEY_is_a(k, "DSA")) {
            out->kinds |= KEY_DSA;
        }
        X509_free(x);
        BIO_free(b);
    }
    ERR_clear_error();
}

/*
 * The signature schemes a server signs its key exchange with, in OpenSSL 3.0's order of
 * preference (ssl/t1_lib.c's default list), for the keys it holds and as its security level
 * allows their hash: SHA-1 counts 64 bits (level 0 only), SHA-224 112 (up to level 2). In TLS
 * 1.3 an ECDSA scheme names the curve, so only the certificate's curve's counts.
 */
static void sigalgs(const struct keys *k, int level, struct moat_check_scan *s)
{
    static const struct {
        uint16_t code;
        unsigned key;
        int bits; /* the hash's security */
    } order[] = {{0x0403, KEY_EC, 128},      {0x0503, KEY_EC, 192},      {0x0603, KEY_EC, 256},
                 {0x0807, KEY_ED25519, 128}, {0x0808, KEY_ED448, 192},   {0x0809, KEY_RSA_PSS, 128},
                 {0x080A, KEY_RSA_PSS, 192}, {0x080B, KEY_RSA_PSS, 256}, {0x0804, KEY_RSA, 128},
                 {0x0805, KEY_RSA, 192},     {0x0806, KEY_RSA, 256},     {0x0401, KEY_RSA, 128},
                 {0x0501, KEY_RSA, 192},     {0x0601, KEY_RSA, 256},     {0x0303, KEY_EC, 112},
                 {0x0203, KEY_EC, 64},       {0x0301, KEY_RSA, 112},     {0x0201, KEY_RSA, 64},
                 {0x0302, KEY_DSA, 112},     {0x0202, KEY_DSA, 64},      {0x0402, KEY_DSA, 128},
                 {0x0502, KEY_DSA, 192},     {0x0602, KEY_DSA, 256}};
    static const int level_bits[] = {0, 80, 112, 128, 192, 256};
    int need = level_bits[level < 0 ? 0 : level > 5 ? 5 : level];
    int signed12 = 0;
    for (size_t i = 0; i < s->nsuites[MOAT_VER_TLS12]; i++) {
        const struct moat_check_suite *x = moat_check_suite_find(s->suites[MOAT_VER_TLS12][i]);
        signed12 |= x != NULL && (x->kex == MOAT_KEX_ECDHE || x->kex == MOAT_KEX_DHE);
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        /* An RSA-PSS key signs only with rsa_pss_pss; an RSA key with the others. */
        unsigned kinds = k->kinds & KEY_RSA_PSS ? (k->kinds & ~KEY_RSA) : k->kinds;
        if (!(kinds & order[i].key) || order[i].bits < need) {
            continue;
        }
        if (signed12 && s->nsigalgs12 < MOAT_CHECK_MAX_SIGALGS) {
            s->sigalgs12[s->nsigalgs12++] = order[i].code;
        }
        int in13 = s->versions[MOAT_VER_TLS13] == MOAT_YES && order[i].bits >= 128 &&
                   (order[i].code >> 8) >= 0x04 && (order[i].code & 0xFF) != 0x01 &&
                   order[i].key != KEY_DSA;
        if (order[i].key == KEY_EC) {
            int curve = 0;
            for (size_t c = 0; c < k->nec13; c++) {
                curve |= k->ec13[c] == order[i].code;
            }
            in13 &= curve;
        }
        if (in13 && s->nsigalgs13 < MOAT_CHECK_MAX_SIGALGS) {
            s->sigalgs13[s->nsigalgs13++] = order[i].code;
        }
    }
}

int moat_check_offline_dh_bits(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    /* The first parameters block of any kind ("EC PARAMETERS" too, which a key file may hold). */
    EVP_PKEY *p = b != NULL ? PEM_read_bio_Parameters(b, NULL) : NULL;
    int bits =
        p != NULL && (EVP_PKEY_is_a(p, "DH") || EVP_PKEY_is_a(p, "DHX")) ? EVP_PKEY_get_bits(p) : 0;
    EVP_PKEY_free(p);
    BIO_free(b);
    ERR_clear_error();
    return bits;
}

int moat_check_offline_leaf(const char *path, struct moat_check_leaf *out)
{
    memset(out, 0, sizeof(*out));
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (x == NULL) {
        ERR_clear_error();
        return -1;
    }
    EVP_PKEY *k = X509_get0_pubkey(x);
    if (k != NULL && EVP_PKEY_is_a(k, "RSA")) {
        out->rsa_bits = EVP_PKEY_get_bits(k);
    }
    out->ec = k != NULL && EVP_PKEY_is_a(k, "EC");
    char name[256] = "";
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && name[0] == '\0'; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int l = ASN1_STRING_length(g->d.dNSName);
            if (l > 0 && (size_t)l < sizeof(name) && memchr(d, '\0', (size_t)l) == NULL) {
                memcpy(name, d, (size_t)l);
                name[l] = '\0';
            }
        }
    }
    GENERAL_NAMES_free(sans);
    if (name[0] == '\0') {
        int l =
            X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, name, sizeof(name));
        if (l <= 0) {
            name[0] = '\0';
        }
    }
    X509_free(x);
    ERR_clear_error();
    if (strncmp(name, "*.", 2) == 0) {
        snprintf(out->name, sizeof(out->name), "check%.240s", name + 1);
    } else {
        snprintf(out->name, sizeof(out->name), "%s", name[0] ? name : "localhost");
    }
    return 0;
}

struct moat_check_scan *moat_check_offline_scan(const struct moat_check_intent *in,
                                                const char *cafile)
{
    struct moat_check_scan *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->offline = 1;
    snprintf(s->source, sizeof(s->source), "%s", in->source);
    snprintf(s->host, sizeof(s->host), "%s", in->host);
    s->port = in->port ? in->port : 443;
    s->public_name = moat_check_public_name(s->host);
    snprintf(s->addr, sizeof(s->addr), "offline");
    for (int v = 0; v < MOAT_VER_COUNT; v++) {
        s->server_order[v] = MOAT_UNKNOWN;
    }
    struct keys keys;
    key_kinds(in, &keys);
    int level = 0;
    int dhe = library_facts(in, keys.kinds, s, &level);
    groups(in, s);
    sigalgs(&keys, level, s);
    /* What the live probe asks in TLS 1.2 and below has no answer from a TLS 1.3-only
     * server; heartbleed is not asked of a server without heartbeat. */
    int below13 = 0;
    for (int v = MOAT_VER_SSL2; v < MOAT_VER_TLS13; v++) {
        below13 |= s->versions[v] == MOAT_YES;
    }
    enum moat_check_tri no = below13 ? MOAT_NO : MOAT_UNKNOWN;
    enum moat_check_tri yes = below13 ? MOAT_YES : MOAT_UNKNOWN;
    s->compression = s->client_reneg = s->heartbeat = no;
    s->heartbleed = MOAT_UNKNOWN;
    s->secure_reneg = s->fallback_scsv = s->ems = yes;
    s->alpn_h2 = in->alpn_h2 ? MOAT_YES : MOAT_NO;
    s->alpn_http11 = in->alpn_http11 ? MOAT_YES : MOAT_NO;
    int v13 = s->versions[MOAT_VER_TLS13] == MOAT_YES,
        v12 = s->versions[MOAT_VER_TLS12] == MOAT_YES;
    s->resume_ticket13 = v13 ? (in->tickets || in->cache ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    s->resume_ticket12 = v12 ? (in->tickets ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    s->resume_id12 = v12 ? (in->cache ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    s->early_data = v13 ? in->early_bytes : 0;
    s->ocsp_stapled = in->stapling ? MOAT_YES : MOAT_NO;
    if (dhe) {
        s->dh_bits = in->dh_file != NULL ? moat_check_offline_dh_bits(in->dh_file) : in->dh_bits;
    }
    s->cert_read = MOAT_UNKNOWN;
    if (in->ncerts == 0) {
        s->offline_vkind = MOAT_V_OTHER;
        snprintf(s->offline_detail, sizeof(s->offline_detail), "%s: %s", in->source,
                 in->no_cert != NULL ? in->no_cert : "a TLS listener without a certificate");
    } else {
        cert_of_file(in->certs[0], cafile, s);
    }
    s->hsts_max_age = -1;
    if (in->http) {
        s->status = 200;
        if (in->hsts != NULL) {
            moat_check_hsts_parse(s, in->hsts);
        }
        s->hdr_nosniff = in->nosniff;
        s->hdr_frame = in->frame;
        s->hdr_csp = in->csp;
        s->hdr_referrer = in->referrer;
        s->http_compressed = in->compressed;
    }
    s->http_redirects = in->redirect;
    s->http_status = in->redirect == MOAT_YES ? 301 : 0;
    s->caa = MOAT_UNKNOWN;
    return s;
}
