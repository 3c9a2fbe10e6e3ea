/*
 * suites.h: what moat check knows about the values a ClientHello can offer: cipher suites,
 * groups, signature schemes and protocol versions, each with its IANA name and the properties
 * the judgement needs (forward secrecy, AEAD, strength). A table of our own, not OpenSSL's:
 * the probe must name suites OpenSSL no longer builds (export, RC4, DES, anonymous).
 */
#ifndef MOAT_CHECK_SUITES_H
#define MOAT_CHECK_SUITES_H

#include <stddef.h>
#include <stdint.h>

/* Protocol versions on the wire (RFC 8446 §4.1.2 legacy_version and supported_versions). */
#define MOAT_CHECK_SSL3 0x0300
#define MOAT_CHECK_TLS10 0x0301
#define MOAT_CHECK_TLS11 0x0302
#define MOAT_CHECK_TLS12 0x0303
#define MOAT_CHECK_TLS13 0x0304

enum moat_check_kex {
    MOAT_KEX_RSA = 0, /* static RSA key transport: no forward secrecy */
    MOAT_KEX_DHE,
    MOAT_KEX_ECDHE,
    MOAT_KEX_DH_ANON,   /* no authentication at all */
    MOAT_KEX_ECDH_ANON, /* no authentication at all */
    MOAT_KEX_PSK,       /* TLS 1.2 PSK suites */
    MOAT_KEX_TLS13,     /* TLS 1.3: the key exchange is not in the suite (always (EC)DHE) */
    MOAT_KEX_COUNT      /* keep last */
};

/* Cipher weakness classes, worst first where it matters for the grade. */
enum moat_check_enc {
    MOAT_ENC_NULL = 0, /* no encryption */
    MOAT_ENC_EXPORT,   /* 40/56-bit export ciphers (FREAK, CVE-2015-0204) */
    MOAT_ENC_DES,      /* single DES */
    MOAT_ENC_RC4,      /* RC4 (RFC 7465 forbids it) */
    MOAT_ENC_BLOCK64,  /* 64-bit blocks (3DES, IDEA, RC2): SWEET32 (CVE-2016-2183) */
    MOAT_ENC_CBC,      /* 128-bit block in CBC mode with HMAC (Lucky13-class, BEAST in TLS 1.0) */
    MOAT_ENC_AEAD,     /* AES-GCM, AES-CCM, ChaCha20-Poly1305 */
    MOAT_ENC_COUNT     /* keep last */
};

struct moat_check_suite {
    uint16_t code;
    const char *name; /* IANA: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" */
    const char *ossl; /* OpenSSL's name, "ECDHE-RSA-AES128-GCM-SHA256"; for fixes */
    enum moat_check_kex kex;
    enum moat_check_enc enc;
    int bits;         /* symmetric key strength */
    int tls13;        /* a TLS 1.3 suite (offered only in 1.3 hellos) */
    const char *auth; /* "RSA", "ECDSA", "anon", "PSK", "" for TLS 1.3 */
};

struct moat_check_named {
    uint16_t code;
    const char *name;
    int weak; /* a value the judgement flags */
};

/* Every suite in the table (TLS 1.3 first, then the TLS 1.2-and-older ones). */
const struct moat_check_suite *moat_check_suites(size_t *n);
/* The entry for code, or NULL for one moat does not know. */
const struct moat_check_suite *moat_check_suite_find(uint16_t code);
/* The suite's name, or "0xC02F" for an unknown one (written into buf, which holds 8 bytes). */
const char *moat_check_suite_name(uint16_t code, char *buf, size_t buflen);
/* A ChaCha20-Poly1305 suite: servers that enforce their order often still let a client that
 * puts one first have it (OpenSSL's SSL_OP_PRIORITIZE_CHACHA, HAProxy's default). */
int moat_check_suite_chacha(uint16_t code);

/* Groups (RFC 8446 §4.2.7, RFC 7919 ffdhe, RFC 8422): weak marks curves under 256 bits. */
const struct moat_check_named *moat_check_groups(size_t *n);
/* Signature schemes (RFC 8446 §4.2.3, and TLS 1.2's hash/signature pairs): weak marks SHA-1 and
 * MD5 ones. */
const struct moat_check_named *moat_check_sigalgs(size_t *n);
/* Name of a group or scheme; "0x001D" for unknown ones (into buf, which holds 8 bytes). */
const char *moat_check_group_name(uint16_t code, char *buf, size_t buflen);
const char *moat_check_sigalg_name(uint16_t code, char *buf, size_t buflen);

/* "SSLv3", "TLS 1.0" ... "TLS 1.3"; "0x0305" for others (into buf, 8 bytes). */
const char *moat_check_version_name(uint16_t v, char *buf, size_t buflen);

/* Words for the kex and cipher classes ("ECDHE", "RSA key transport"; "AEAD", "CBC"). */
const char *moat_check_kex_name(enum moat_check_kex k);
const char *moat_check_enc_name(enum moat_check_enc e);

#endif
