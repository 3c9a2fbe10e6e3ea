/*
 * cmd_csr.c: `moat csr new` and `moat csr show`: argument parsing only; CSRs are made and
 * checked by pki/csr.c.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/csr.h"
#include "pki/key.h"
#include "pki/names.h"
#include "pki/show.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/x509.h>

static const char csr_usage[] =
    "usage: moat csr new NAME... --key FILE --out FILE [--key-type TYPE] [--force]\n"
    "       moat csr show FILE\n"
    "\n"
    "Certificate signing requests (CSRs). A CSR holds your public key and the names you want a\n"
    "certificate for, signed with your private key; you send it to a CA (yours: `moat ca\n"
    "sign`, or any other) and get back a certificate. The private key never leaves you.\n"
    "\n"
    "  new NAME...        make a CSR for these names: DNS names (example.com, *.example.com),\n"
    "                     IP addresses, e-mail addresses or URIs (for client certificates)\n"
    "    --key FILE       the private key; when FILE does not exist a new key is made there\n"
    "                     (mode 0600)\n"
    "    --key-type TYPE  type of that new key: p256 (default), p384, rsa2048, rsa3072, rsa4096,\n"
    "                     ed25519 (also rsa:2048, ecdsa-p384, P-256, ...: see moat key --help)\n"
    "    --out FILE       where to write the CSR (PEM)\n"
    "    --force          replace an existing --out file (never the key)\n"
    "  show FILE          check a CSR's signature and show what it asks for\n"
    "\n"
    "Examples:\n"
    "  moat csr new example.com www.example.com --key example.key --out example.csr\n"
    "  moat ca sign example.csr --out example.pem\n";

static int csr_new(int argc, char **argv)
{
    const char *key = NULL, *out = NULL, *type = NULL;
    const char *names[MOAT_NAMES_MAX];
    size_t n = 0;
    int force = 0;
    const struct moat_cli_opt opts[] = {
        {.name = "--key", .kind = MOAT_CLI_VALUE, .value = &key},
        {.name = "--out", .kind = MOAT_CLI_VALUE, .value = &out},
        {.name = "--key-type", .kind = MOAT_CLI_VALUE, .value = &type},
        {.name = "--force", .kind = MOAT_CLI_FLAG, .flag = &force},
    };
    int r =
        moat_cli_args_parse("csr new", csr_usage, argc, argv, opts, 4, names, MOAT_NAMES_MAX, &n);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (n == 0 || key == NULL || out == NULL) {
        fprintf(stderr, "moat csr new: give the names, --key FILE and --out FILE (e.g. moat csr "
                        "new example.com --key example.key --out example.csr)\n");
        return 2;
    }
    struct moat_err err = {0};
    moat_rc rc = moat_names_check(names, n, 1, &err);
    EVP_PKEY *k = NULL;
    struct stat st;
    int made = 0;
    if (moat_ok(rc) && stat(key, &st) != 0 && errno == ENOENT) {
        enum moat_key_type kt = MOAT_KEY_EC_P256;
        rc = type ? moat_key_parse_type(type, &kt, &err) : MOAT_RC_OK;
        if (moat_ok(rc)) {
            rc = moat_key_new(kt, &k, &err);
        }
        if (moat_ok(rc)) {
            rc = moat_key_save(key, k, 0, &err);
            made = moat_ok(rc);
        }
    } else if (moat_ok(rc)) {
        if (type != NULL) {
            fprintf(stderr, "moat csr new: --key-type is for a new key, and %s exists already\n",
                    key);
            return 2;
        }
        rc = moat_key_load(key, &k, &err);
    }
    X509_REQ *req = NULL;
    if (moat_ok(rc)) {
        rc = moat_csr_new(names, n, k, &req, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_csr_save(out, req, force, &err);
    }
    char desc[64];
    if (moat_ok(rc)) {
        if (made) {
            printf("wrote a new %s private key to %s (mode 0600); keep it secret\n",
                   moat_key_describe(k, desc, sizeof(desc)), key);
        }
        printf("wrote the signing request for %s%s to %s: send it to your CA (moat ca sign %s)\n",
               names[0], n > 1 ? " and more" : "", out, out);
    }
    X509_REQ_free(req);
    EVP_PKEY_free(k);
    return moat_cli_fail("csr new", rc, &err);
}

static int csr_show(int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    int r = moat_cli_args_parse("csr show", csr_usage, argc, argv, NULL, 0, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat csr show: give one CSR file\n");
        return 2;
    }
    struct moat_err err = {0};
    X509_REQ *req = NULL;
    moat_rc rc = moat_csr_load(pos[0], &req, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("csr show", rc, &err);
    }
    printf("%s: ", pos[0]);
    moat_show_csr(stdout, req);
    X509_REQ_free(req);
    return 0;
}

int moat_cmd_csr(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(csr_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "new") == 0) {
        return csr_new(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "show") == 0) {
        return csr_show(argc - 1, argv + 1);
    }
    fprintf(stderr, "moat csr: unknown subcommand \"%s\" (new or show; see moat csr --help)\n",
            argv[1]);
    return 2;
}
