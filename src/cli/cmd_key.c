/*
 * cmd_key.c: `moat key new` and `moat key show`: argument parsing only; keys are made, saved
 * and loaded by pki/key.c.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/key.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static const char key_usage[] =
    "usage: moat key new FILE [--type TYPE] [--force]\n"
    "       moat key show FILE\n"
    "\n"
    "Private keys. A key is written unencrypted (PKCS#8 PEM) with mode 0600, atomically, and an\n"
    "existing file is never replaced unless you say --force: a lost key cannot be recovered.\n"
    "\n"
    "  new FILE       make a new private key in FILE\n"
    "    --type TYPE  p256 (ECDSA P-256, the default: small, fast, accepted everywhere), p384,\n"
    "                 rsa2048, rsa3072, rsa4096, or ed25519 (not accepted by browsers for TLS);\n"
    "                 other spellings work too: rsa:2048, RSA-3072, ecdsa-p256, P-256,\n"
    "                 prime256v1, secp384r1... (case, '-' and ':' do not matter)\n"
    "    --force      replace FILE if it exists\n"
    "  show FILE      say what key FILE holds (type, size, public key fingerprint)\n"
    "\n"
    "Examples:\n"
    "  moat key new server.key\n"
    "  moat key new server.key --type rsa3072\n"
    "  moat key new server.key --type rsa:2048\n"
    "  moat csr new example.com --key server.key --out example.csr\n";

static int key_new(int argc, char **argv)
{
    const char *type = NULL, *out = NULL, *pos[1];
    int force = 0;
    size_t npos = 0;
    const struct moat_cli_opt opts[] = {
        {.name = "--type", .kind = MOAT_CLI_VALUE, .value = &type},
        {.name = "--key-type", .kind = MOAT_CLI_VALUE, .value = &type},
        {.name = "--force", .kind = MOAT_CLI_FLAG, .flag = &force},
        {.name = "--out", .kind = MOAT_CLI_VALUE, .value = &out},
    };
    int r = moat_cli_args_parse("key new", key_usage, argc, argv, opts, 4, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if ((npos == 1) == (out != NULL)) {
        fprintf(stderr, "moat key new: give the key file once (moat key new FILE)\n");
        return 2;
    }
    const char *path = out ? out : pos[0];
    struct moat_err err = {0};
    enum moat_key_type kt = MOAT_KEY_EC_P256;
    moat_rc rc = type ? moat_key_parse_type(type, &kt, &err) : MOAT_RC_OK;
    EVP_PKEY *k = NULL;
    if (moat_ok(rc)) {
        rc = moat_key_new(kt, &k, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_key_save(path, k, force, &err);
    }
    char desc[64];
    if (moat_ok(rc)) {
        printf("wrote a new %s private key to %s (mode 0600); keep it secret\n",
               moat_key_describe(k, desc, sizeof(desc)), path);
    }
    EVP_PKEY_free(k);
    return moat_cli_fail("key new", rc, &err);
}

/* SHA-256 of the DER SubjectPublicKeyInfo: what `openssl pkey -pubout | sha256sum` shows, and
 * the same for a certificate of this key (pinning uses it too). */
static void spki_fingerprint(EVP_PKEY *k, char *buf, size_t n)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k, &der);
    unsigned char md[32];
    unsigned int mdlen = 0;
    buf[0] = '\0';
    if (len > 0 && EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1) {
        size_t used = 0;
        for (unsigned int i = 0; i < mdlen && used + 4 <= n; i++) {
            used += (size_t)snprintf(buf + used, n - used, "%s%02X", i ? ":" : "", md[i]);
        }
    }
    OPENSSL_free(der);
    ERR_clear_error();
}

static int key_show(int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    int r = moat_cli_args_parse("key show", key_usage, argc, argv, NULL, 0, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat key show: give one key file (moat key show FILE)\n");
        return 2;
    }
    struct moat_err err = {0};
    EVP_PKEY *k = NULL;
    moat_rc rc = moat_key_load(pos[0], &k, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("key show", rc, &err);
    }
    char desc[64], fp[128];
    spki_fingerprint(k, fp, sizeof(fp));
    printf("%s: %s private key\n", pos[0], moat_key_describe(k, desc, sizeof(desc)));
    printf("  Public key SHA-256: %s\n", fp);
    if (moat_key_file_too_open(pos[0])) {
        printf("  WARNING: others may read this file: chmod 600 %s\n", pos[0]);
    }
    EVP_PKEY_free(k);
    return 0;
}

int moat_cmd_key(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(key_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "new") == 0) {
        return key_new(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "show") == 0) {
        return key_show(argc - 1, argv + 1);
    }
    fprintf(stderr, "moat key: unknown subcommand \"%s\" (new or show; see moat key --help)\n",
            argv[1]);
    return 2;
}
