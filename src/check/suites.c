/*
 * suites.c: the tables behind suites.h, from the IANA TLS registries (cipher suites, supported
 * groups, signature schemes). The list is what servers in the field still answer to, weak ones
 * included on purpose: a scanner that cannot name RC4 or an export suite cannot report it.
 */
#include "check/suites.h"

#include <stdio.h>
#include <string.h>

#define S13(code, name, ossl, enc, bits)                                                           \
    {                                                                                              \
        code, name, ossl, MOAT_KEX_TLS13, enc, bits, 1, ""                                         \
    }
#define S(code, name, ossl, kex, enc, bits, auth)                                                  \
    {                                                                                              \
        code, name, ossl, kex, enc, bits, 0, auth                                                  \
    }

static const struct moat_check_suite SUITES[] = {
    S13(0x1301, "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", MOAT_ENC_AEAD, 128),
    S13(0x1302, "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", MOAT_ENC_AEAD, 256),
    S13(0x1303, "TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", MOAT_ENC_AEAD, 256),
    S13(0x1304, "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_SHA256", MOAT_ENC_AEAD, 128),
    S13(0x1305, "TLS_AES_128_CCM_8_SHA256", "TLS_AES_128_CCM_8_SHA256", MOAT_ENC_AEAD, 128),
    /* ECDHE */
    S(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 128, "ECDSA"),
    S(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 256, "ECDSA"),
    S(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 128, "RSA"),
    S(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 256, "RSA"),
    S(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 256, "ECDSA"),
    S(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 256, "RSA"),
    S(0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 128, "ECDSA"),
    S(0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ECDHE-ECDSA-AES256-CCM", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 256, "ECDSA"),
    S(0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ECDHE-ECDSA-AES128-CCM8", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 128, "ECDSA"),
    S(0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", "ECDHE-ECDSA-AES256-CCM8", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 256, "ECDSA"),
    S(0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256", "ECDHE-ECDSA-ARIA128-GCM-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 128, "ECDSA"),
    S(0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384", "ECDHE-ECDSA-ARIA256-GCM-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_AEAD, 256, "ECDSA"),
    S(0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256", "ECDHE-ARIA128-GCM-SHA256", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 128, "RSA"),
    S(0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384", "ECDHE-ARIA256-GCM-SHA384", MOAT_KEX_ECDHE,
      MOAT_ENC_AEAD, 256, "RSA"),
    S(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 128, "ECDSA"),
    S(0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 256, "ECDSA"),
    S(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 128, "RSA"),
    S(0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 256, "RSA"),
    S(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 128, "ECDSA"),
    S(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 256, "ECDSA"),
    S(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 128, "RSA"),
    S(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_CBC, 256, "RSA"),
    S(0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256", "ECDHE-ECDSA-CAMELLIA128-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 128, "ECDSA"),
    S(0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384", "ECDHE-ECDSA-CAMELLIA256-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 256, "ECDSA"),
    S(0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", "ECDHE-RSA-CAMELLIA128-SHA256",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 128, "RSA"),
    S(0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384", "ECDHE-RSA-CAMELLIA256-SHA384",
      MOAT_KEX_ECDHE, MOAT_ENC_CBC, 256, "RSA"),
    S(0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-ECDSA-DES-CBC3-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_BLOCK64, 112, "ECDSA"),
    S(0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_BLOCK64, 112, "RSA"),
    S(0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_RC4, 128, "ECDSA"),
    S(0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA", MOAT_KEX_ECDHE, MOAT_ENC_RC4,
      128, "RSA"),
    S(0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", "ECDHE-ECDSA-NULL-SHA", MOAT_KEX_ECDHE,
      MOAT_ENC_NULL, 0, "ECDSA"),
    S(0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA", "ECDHE-RSA-NULL-SHA", MOAT_KEX_ECDHE, MOAT_ENC_NULL, 0,
      "RSA"),
    /* DHE */
    S(0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256", MOAT_KEX_DHE,
      MOAT_ENC_AEAD, 128, "RSA"),
    S(0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384", MOAT_KEX_DHE,
      MOAT_ENC_AEAD, 256, "RSA"),
    S(0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305",
      MOAT_KEX_DHE, MOAT_ENC_AEAD, 256, "RSA"),
    S(0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM", "DHE-RSA-AES128-CCM", MOAT_KEX_DHE, MOAT_ENC_AEAD,
      128, "RSA"),
    S(0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM", "DHE-RSA-AES256-CCM", MOAT_KEX_DHE, MOAT_ENC_AEAD,
      256, "RSA"),
    S(0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256", MOAT_KEX_DHE,
      MOAT_ENC_AEAD, 128, "DSS"),
    S(0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384", MOAT_KEX_DHE,
      MOAT_ENC_AEAD, 256, "DSS"),
    S(0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256", MOAT_KEX_DHE,
      MOAT_ENC_CBC, 128, "RSA"),
    S(0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256", MOAT_KEX_DHE,
      MOAT_ENC_CBC, 256, "RSA"),
    S(0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA", MOAT_KEX_DHE, MOAT_ENC_CBC,
      128, "RSA"),
    S(0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA", MOAT_KEX_DHE, MOAT_ENC_CBC,
      256, "RSA"),
    S(0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA", MOAT_KEX_DHE, MOAT_ENC_CBC,
      128, "DSS"),
    S(0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA", MOAT_KEX_DHE, MOAT_ENC_CBC,
      256, "DSS"),
    S(0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA", MOAT_KEX_DHE,
      MOAT_ENC_CBC, 128, "RSA"),
    S(0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA", MOAT_KEX_DHE,
      MOAT_ENC_CBC, 256, "RSA"),
    S(0x009A, "TLS_DHE_RSA_WITH_SEED_CBC_SHA", "DHE-RSA-SEED-SHA", MOAT_KEX_DHE, MOAT_ENC_CBC, 128,
      "RSA"),
    S(0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "DHE-RSA-DES-CBC3-SHA", MOAT_KEX_DHE,
      MOAT_ENC_BLOCK64, 112, "RSA"),
    S(0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA", "DHE-DSS-DES-CBC3-SHA", MOAT_KEX_DHE,
      MOAT_ENC_BLOCK64, 112, "DSS"),
    S(0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA", "EDH-RSA-DES-CBC-SHA", MOAT_KEX_DHE, MOAT_ENC_DES, 56,
      "RSA"),
    S(0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", "EXP-EDH-RSA-DES-CBC-SHA", MOAT_KEX_DHE,
      MOAT_ENC_EXPORT, 40, "RSA"),
    /* RSA key transport */
    S(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", MOAT_KEX_RSA, MOAT_ENC_AEAD,
      128, "RSA"),
    S(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", MOAT_KEX_RSA, MOAT_ENC_AEAD,
      256, "RSA"),
    S(0xC09C, "TLS_RSA_WITH_AES_128_CCM", "AES128-CCM", MOAT_KEX_RSA, MOAT_ENC_AEAD, 128, "RSA"),
    S(0xC09D, "TLS_RSA_WITH_AES_256_CCM", "AES256-CCM", MOAT_KEX_RSA, MOAT_ENC_AEAD, 256, "RSA"),
    S(0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256", "ARIA128-GCM-SHA256", MOAT_KEX_RSA, MOAT_ENC_AEAD,
      128, "RSA"),
    S(0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384", "ARIA256-GCM-SHA384", MOAT_KEX_RSA, MOAT_ENC_AEAD,
      256, "RSA"),
    S(0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256", MOAT_KEX_RSA, MOAT_ENC_CBC, 128,
      "RSA"),
    S(0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256", MOAT_KEX_RSA, MOAT_ENC_CBC, 256,
      "RSA"),
    S(0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", MOAT_KEX_RSA, MOAT_ENC_CBC, 128, "RSA"),
    S(0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", MOAT_KEX_RSA, MOAT_ENC_CBC, 256, "RSA"),
    S(0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA", MOAT_KEX_RSA, MOAT_ENC_CBC,
      128, "RSA"),
    S(0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA", MOAT_KEX_RSA, MOAT_ENC_CBC,
      256, "RSA"),
    S(0x0096, "TLS_RSA_WITH_SEED_CBC_SHA", "SEED-SHA", MOAT_KEX_RSA, MOAT_ENC_CBC, 128, "RSA"),
    S(0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA", "IDEA-CBC-SHA", MOAT_KEX_RSA, MOAT_ENC_BLOCK64, 128,
      "RSA"),
    S(0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA", MOAT_KEX_RSA, MOAT_ENC_BLOCK64, 112,
      "RSA"),
    S(0x0005, "TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA", MOAT_KEX_RSA, MOAT_ENC_RC4, 128, "RSA"),
    S(0x0004, "TLS_RSA_WITH_RC4_128_MD5", "RC4-MD5", MOAT_KEX_RSA, MOAT_ENC_RC4, 128, "RSA"),
    S(0x0009, "TLS_RSA_WITH_DES_CBC_SHA", "DES-CBC-SHA", MOAT_KEX_RSA, MOAT_ENC_DES, 56, "RSA"),
    S(0x0062, "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA", "EXP1024-DES-CBC-SHA", MOAT_KEX_RSA,
      MOAT_ENC_EXPORT, 56, "RSA"),
    S(0x0064, "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA", "EXP1024-RC4-SHA", MOAT_KEX_RSA,
      MOAT_ENC_EXPORT, 56, "RSA"),
    S(0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", "EXP-DES-CBC-SHA", MOAT_KEX_RSA, MOAT_ENC_EXPORT,
      40, "RSA"),
    S(0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", "EXP-RC2-CBC-MD5", MOAT_KEX_RSA,
      MOAT_ENC_EXPORT, 40, "RSA"),
    S(0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "EXP-RC4-MD5", MOAT_KEX_RSA, MOAT_ENC_EXPORT, 40,
      "RSA"),
    S(0x003B, "TLS_RSA_WITH_NULL_SHA256", "NULL-SHA256", MOAT_KEX_RSA, MOAT_ENC_NULL, 0, "RSA"),
    S(0x0002, "TLS_RSA_WITH_NULL_SHA", "NULL-SHA", MOAT_KEX_RSA, MOAT_ENC_NULL, 0, "RSA"),
    S(0x0001, "TLS_RSA_WITH_NULL_MD5", "NULL-MD5", MOAT_KEX_RSA, MOAT_ENC_NULL, 0, "RSA"),
    /* anonymous: nobody is authenticated */
    S(0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256", "ADH-AES128-GCM-SHA256", MOAT_KEX_DH_ANON,
      MOAT_ENC_AEAD, 128, "anon"),
    S(0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384", "ADH-AES256-GCM-SHA384", MOAT_KEX_DH_ANON,
      MOAT_ENC_AEAD, 256, "anon"),
    S(0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256", "ADH-AES128-SHA256", MOAT_KEX_DH_ANON,
      MOAT_ENC_CBC, 128, "anon"),
    S(0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256", "ADH-AES256-SHA256", MOAT_KEX_DH_ANON,
      MOAT_ENC_CBC, 256, "anon"),
    S(0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA", "ADH-AES128-SHA", MOAT_KEX_DH_ANON, MOAT_ENC_CBC,
      128, "anon"),
    S(0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA", "ADH-AES256-SHA", MOAT_KEX_DH_ANON, MOAT_ENC_CBC,
      256, "anon"),
    S(0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA", "ADH-DES-CBC3-SHA", MOAT_KEX_DH_ANON,
      MOAT_ENC_BLOCK64, 112, "anon"),
    S(0x0018, "TLS_DH_anon_WITH_RC4_128_MD5", "ADH-RC4-MD5", MOAT_KEX_DH_ANON, MOAT_ENC_RC4, 128,
      "anon"),
    S(0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5", "EXP-ADH-RC4-MD5", MOAT_KEX_DH_ANON,
      MOAT_ENC_EXPORT, 40, "anon"),
    S(0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "AECDH-AES128-SHA", MOAT_KEX_ECDH_ANON,
      MOAT_ENC_CBC, 128, "anon"),
    S(0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA", "AECDH-AES256-SHA", MOAT_KEX_ECDH_ANON,
      MOAT_ENC_CBC, 256, "anon"),
    S(0xC017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA", "AECDH-DES-CBC3-SHA", MOAT_KEX_ECDH_ANON,
      MOAT_ENC_BLOCK64, 112, "anon"),
    S(0xC016, "TLS_ECDH_anon_WITH_RC4_128_SHA", "AECDH-RC4-SHA", MOAT_KEX_ECDH_ANON, MOAT_ENC_RC4,
      128, "anon"),
    S(0xC015, "TLS_ECDH_anon_WITH_NULL_SHA", "AECDH-NULL-SHA", MOAT_KEX_ECDH_ANON, MOAT_ENC_NULL, 0,
      "anon"),
    /* pre-shared keys (no certificate: not for a public web server) */
    S(0x00A8, "TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256", MOAT_KEX_PSK,
      MOAT_ENC_AEAD, 128, "PSK"),
    S(0x008C, "TLS_PSK_WITH_AES_128_CBC_SHA", "PSK-AES128-CBC-SHA", MOAT_KEX_PSK, MOAT_ENC_CBC, 128,
      "PSK"),
};

static const struct moat_check_named GROUPS[] = {
    {0x001D, "x25519", 0},
    {0x0017, "secp256r1", 0},
    {0x0018, "secp384r1", 0},
    {0x0019, "secp521r1", 0},
    {0x001E, "x448", 0},
    {0x0100, "ffdhe2048", 0},
    {0x0101, "ffdhe3072", 0},
    {0x0102, "ffdhe4096", 0},
    {0x0103, "ffdhe6144", 0},
    {0x0104, "ffdhe8192", 0},
    {0x001A, "brainpoolP256r1", 0},
    {0x001B, "brainpoolP384r1", 0},
    {0x001C, "brainpoolP512r1", 0},
    {0x0016, "secp256k1", 0},
    {0x0015, "secp224r1", 1},
    {0x0014, "secp224k1", 1},
    {0x0013, "secp192r1", 1},
    {0x0012, "secp192k1", 1},
    {0x0011, "secp160r2", 1},
    {0x0010, "secp160r1", 1},
    {0x000F, "secp160k1", 1},
};

static const struct moat_check_named SIGALGS[] = {
    {0x0403, "ecdsa_secp256r1_sha256", 0},
    {0x0503, "ecdsa_secp384r1_sha384", 0},
    {0x0603, "ecdsa_secp521r1_sha512", 0},
    {0x0807, "ed25519", 0},
    {0x0808, "ed448", 0},
    {0x0804, "rsa_pss_rsae_sha256", 0},
    {0x0805, "rsa_pss_rsae_sha384", 0},
    {0x0806, "rsa_pss_rsae_sha512", 0},
    {0x0809, "rsa_pss_pss_sha256", 0},
    {0x080A, "rsa_pss_pss_sha384", 0},
    {0x080B, "rsa_pss_pss_sha512", 0},
    {0x0401, "rsa_pkcs1_sha256", 0},
    {0x0501, "rsa_pkcs1_sha384", 0},
    {0x0601, "rsa_pkcs1_sha512", 0},
    {0x0301, "rsa_pkcs1_sha224", 0},
    {0x0303, "ecdsa_sha224", 0},
    {0x0201, "rsa_pkcs1_sha1", 1},
    {0x0203, "ecdsa_sha1", 1},
    {0x0202, "dsa_sha1", 1},
    {0x0402, "dsa_sha256", 1},
    {0x0101, "rsa_pkcs1_md5", 1},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const struct moat_check_suite *moat_check_suites(size_t *n)
{
    *n = COUNT(SUITES);
    return SUITES;
}

const struct moat_check_suite *moat_check_suite_find(uint16_t code)
{
    for (size_t i = 0; i < COUNT(SUITES); i++) {
        if (SUITES[i].code == code) {
            return &SUITES[i];
        }
    }
    return NULL;
}

static const char *hex_name(uint16_t code, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "0x%04X", code);
    return buf;
}

int moat_check_suite_chacha(uint16_t code)
{
    const struct moat_check_suite *x = moat_check_suite_find(code);
    return x != NULL && strstr(x->name, "CHACHA20") != NULL;
}

const char *moat_check_suite_name(uint16_t code, char *buf, size_t buflen)
{
    const struct moat_check_suite *s = moat_check_suite_find(code);
    return s != NULL ? s->name : hex_name(code, buf, buflen);
}

const struct moat_check_named *moat_check_groups(size_t *n)
{
    *n = COUNT(GROUPS);
    return GROUPS;
}

const struct moat_check_named *moat_check_sigalgs(size_t *n)
{
    *n = COUNT(SIGALGS);
    return SIGALGS;
}

static const char *named(const struct moat_check_named *t, size_t n, uint16_t code, char *buf,
                         size_t buflen)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].code == code) {
            return t[i].name;
        }
    }
    return hex_name(code, buf, buflen);
}

const char *moat_check_group_name(uint16_t code, char *buf, size_t buflen)
{
    return named(GROUPS, COUNT(GROUPS), code, buf, buflen);
}

const char *moat_check_sigalg_name(uint16_t code, char *buf, size_t buflen)
{
    return named(SIGALGS, COUNT(SIGALGS), code, buf, buflen);
}

const char *moat_check_version_name(uint16_t v, char *buf, size_t buflen)
{
    switch (v) {
    case 0x0002:
        return "SSLv2";
    case MOAT_CHECK_SSL3:
        return "SSLv3";
    case MOAT_CHECK_TLS10:
        return "TLS 1.0";
    case MOAT_CHECK_TLS11:
        return "TLS 1.1";
    case MOAT_CHECK_TLS12:
        return "TLS 1.2";
    case MOAT_CHECK_TLS13:
        return "TLS 1.3";
    default:
        return hex_name(v, buf, buflen);
    }
}

const char *moat_check_kex_name(enum moat_check_kex k)
{
    static const char *const names[MOAT_KEX_COUNT] = {
        "RSA key transport", "DHE", "ECDHE", "anonymous DH", "anonymous ECDH", "PSK", "(EC)DHE",
    };
    return (unsigned)k < MOAT_KEX_COUNT ? names[k] : "?";
}

const char *moat_check_enc_name(enum moat_check_enc e)
{
    static const char *const names[MOAT_ENC_COUNT] = {
        "no encryption", "export-grade", "DES", "RC4", "64-bit block", "CBC", "AEAD",
    };
    return (unsigned)e < MOAT_ENC_COUNT ? names[e] : "?";
}
