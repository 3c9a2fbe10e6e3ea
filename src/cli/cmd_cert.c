/*
 * cmd_cert.c: `moat cert issue|self-signed|show`: argument parsing only; certificates are made
 * by pki/ca.c and shown by pki/show.c.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/crl.h"
#include "pki/key.h"
#include "pki/names.h"
#include "pki/show.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char cert_usage[] =
    "usage: moat cert issue NAME... [--ca DIR] [--days N] [--client] [--key-type TYPE]\n"
    "                               [--out PREFIX] [--force]\n"
    "       moat cert self-signed NAME... [--days N] [--client] [--key-type TYPE]\n"
    "                               [--out PREFIX] [--force]\n"
    "       moat cert show FILE\n"
    "\n"
    "  issue NAME...      a new key and a certificate for NAME... signed by a CA (default\n"
    "                     moat's local CA, made on first use; trust it: moat trust install).\n"
    "                     Names: DNS names (example.test, *.example.test), IP addresses, and\n"
    "                     for --client also e-mail addresses and URIs (spiffe://...)\n"
    "    --ca DIR         the CA folder (moat ca init --dir DIR)\n"
    "    --days N         validity: default 90 (server) or 365 (client); at most 825 for a\n"
    "                     server; never past the CA's intermediate\n"
    "    --client         a client certificate (clientAuth, for mutual TLS) instead of a server\n"
    "                     certificate (serverAuth)\n"
    "    --key-type TYPE  p256 (default), p384, rsa2048, rsa3072, rsa4096, ed25519 (also\n"
    "                     rsa:2048, ecdsa-p384, P-256, ...: see moat key --help)\n"
    "    --out PREFIX     write PREFIX.key (the private key, 0600), PREFIX.cert.pem (the\n"
    "                     certificate) and PREFIX.fullchain.pem (certificate + intermediate:\n"
    "                     what a server sends); default PREFIX: the first name\n"
    "    --force          replace existing files (a key is never replaced without it)\n"
    "  self-signed NAME... a key and a certificate signed by itself (see the note it prints)\n"
    "  show FILE          a certificate or a chain in plain words: names, issuer, dates, key,\n"
    "                     usage, fingerprints, and how each link connects\n"
    "\n"
    "Examples:\n"
    "  moat cert issue example.test www.example.test 127.0.0.1\n"
    "  moat serve --root site --cert example.test.fullchain.pem --key example.test.key\n"
    "  moat cert issue ada@example.test --client --out ada\n"
    "  curl --cert ada.fullchain.pem --key ada.key https://example.test:8443/\n"
    "  moat cert show example.test.fullchain.pem\n";

static const char self_signed_note[] =
    "\n"
    "About self-signed certificates: this certificate vouches for itself, so no browser,\n"
    "curl or other client trusts it until it is installed on that client by hand (curl\n"
    "--cacert FILE, or moat trust install --ca FILE for a CA). It is good for a quick test, a\n"
    "single internal service whose clients you configure yourself, or pinning. It is NOT good\n"
    "for anything people open in a browser (they would learn to click through warnings), it\n"
    "cannot be revoked, and replacing it means touching every client again. For more than one\n"
    "service, use a CA: `moat cert issue` (moat's local CA) or `moat ca init`, and trust its\n"
    "root once.\n";

struct cert_flags {
    const char *ca, *days, *type, *out;
    int client, force;
};

static int parse(const char *cmd, int argc, char **argv, struct cert_flags *f, const char **pos,
                 size_t maxpos, size_t *npos)
{
    const struct moat_cli_opt opts[] = {
        {.name = "--ca", .kind = MOAT_CLI_VALUE, .value = &f->ca},
        {.name = "--days", .kind = MOAT_CLI_VALUE, .value = &f->days},
        {.name = "--key-type", .kind = MOAT_CLI_VALUE, .value = &f->type},
        {.name = "--out", .kind = MOAT_CLI_VALUE, .value = &f->out},
        {.name = "--client", .kind = MOAT_CLI_FLAG, .flag = &f->client},
        {.name = "--force", .kind = MOAT_CLI_FLAG, .flag = &f->force},
    };
    return moat_cli_args_parse(cmd, cert_usage, argc, argv, opts, sizeof(opts) / sizeof(opts[0]),
                               pos, maxpos, npos);
}

struct out_paths {
    char key[PATH_MAX], cert[PATH_MAX], chain[PATH_MAX];
};

/* The output files; refuses (exit 2) when one exists and --force was not given. */
static int out_paths_make(const char *cmd, const struct cert_flags *f, const char *first, int chain,
                          struct out_paths *p)
{
    char prefix[PATH_MAX - 32];
    if (f->out != NULL) {
        snprintf(prefix, sizeof(prefix), "%s", f->out);
    } else {
        moat_cli_prefix_for(first, prefix, sizeof(prefix));
    }
    if (f->out != NULL && strlen(f->out) >= sizeof(prefix)) {
        fprintf(stderr, "moat %s: --out is too long\n", cmd);
        return 2;
    }
    snprintf(p->key, sizeof(p->key), "%s.key", prefix);
    snprintf(p->cert, sizeof(p->cert), "%s.cert.pem", prefix);
    snprintf(p->chain, sizeof(p->chain), "%s.fullchain.pem", prefix);
    const char *files[3] = {p->key, p->cert, chain ? p->chain : NULL};
    struct stat st;
    for (int i = 0; i < 3 && !f->force; i++) {
        if (files[i] != NULL && lstat(files[i], &st) == 0) {
            fprintf(stderr,
                    "moat %s: %s already exists; moat does not replace it (nor the key next to "
                    "it) unless asked to: use --force, or --out another prefix\n",
                    cmd, files[i]);
            return 2;
        }
    }
    return 0;
}

static int days_for(const char *cmd, const struct cert_flags *f, int *days)
{
    *days = f->client ? MOAT_CA_DEFAULT_CLIENT_DAYS : MOAT_CA_DEFAULT_SERVER_DAYS;
    if (f->days == NULL) {
        return 1;
    }
    return moat_cli_days(cmd, "--days", f->days,
                         f->client ? MOAT_CA_MAX_CLIENT_DAYS : MOAT_CA_MAX_LEAF_DAYS, days);
}

static void print_until(X509 *x)
{
    char buf[64];
    time_t t = moat_ca_asn1_time(X509_get0_notAfter(x));
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
    printf("  valid until:  %s\n", buf);
}

static int cert_issue(int argc, char **argv)
{
    struct cert_flags f = {0};
    const char *names[MOAT_NAMES_MAX];
    size_t n = 0;
    int r = parse("cert issue", argc, argv, &f, names, MOAT_NAMES_MAX, &n);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (n == 0) {
        fprintf(stderr, "moat cert issue: give the names, e.g. moat cert issue example.test\n");
        return 2;
    }
    int days = 0;
    struct out_paths p;
    if (!days_for("cert issue", &f, &days)) {
        return 2;
    }
    struct moat_err err = {0};
    moat_rc rc = moat_names_check(names, n, f.client, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("cert issue", rc, &err);
    }
    if (out_paths_make("cert issue", &f, names[0], 1, &p) != 0) {
        return 2;
    }
    enum moat_key_type kt = MOAT_KEY_EC_P256;
    rc = f.type ? moat_key_parse_type(f.type, &kt, &err) : MOAT_RC_OK;
    struct moat_ca *ca = NULL;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    if (moat_ok(rc)) {
        rc = moat_cli_open_ca(f.ca, &ca, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_key_new(kt, &k, &err);
    }
    if (moat_ok(rc)) {
        struct moat_ca_leaf l = {
            .names = names, .n = n, .days = days, .client = f.client, .pub = k};
        rc = moat_ca_sign(ca, &l, 0, &x, &err);
    }
    /* Key first: a certificate without its key is useless, a key without a certificate is
     * harmless and gets replaced with --force. */
    if (moat_ok(rc)) {
        rc = moat_key_save(p.key, k, f.force, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_ca_write_certs(p.cert, &x, 1, f.force, &err);
    }
    if (moat_ok(rc)) {
        X509 *both[2] = {x, ca->cert};
        rc = moat_ca_write_certs(p.chain, both, 2, f.force, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_crl_record(ca, x, &err);
    }
    if (moat_ok(rc)) {
        char desc[64];
        printf("issued a %s certificate for %s%s by the CA in %s\n", f.client ? "client" : "server",
               names[0], n > 1 ? " (and more names)" : "", ca->dir);
        printf("  key:          %s (%s, mode 0600: keep it secret)\n", p.key,
               moat_key_describe(k, desc, sizeof(desc)));
        printf("  certificate:  %s\n  full chain:   %s (certificate + intermediate)\n", p.cert,
               p.chain);
        print_until(x);
        if (f.client) {
            printf("use it:  curl --cert %s --key %s https://...\n", p.chain, p.key);
        } else {
            printf("use it:  moat serve --root DIR --cert %s --key %s\n", p.chain, p.key);
        }
        printf("clients must trust the CA's root: moat trust install --ca %s/root.pem\n", ca->dir);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    moat_ca_free(ca);
    return moat_cli_fail("cert issue", rc, &err);
}

static int cert_self_signed(int argc, char **argv)
{
    struct cert_flags f = {0};
    const char *names[MOAT_NAMES_MAX];
    size_t n = 0;
    int r = parse("cert self-signed", argc, argv, &f, names, MOAT_NAMES_MAX, &n);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (n == 0) {
        fprintf(stderr, "moat cert self-signed: give the names, e.g. moat cert self-signed "
                        "example.test\n");
        return 2;
    }
    if (f.ca != NULL) {
        fprintf(stderr, "moat cert self-signed: --ca does not apply (a self-signed certificate "
                        "has no CA; use moat cert issue --ca DIR)\n");
        return 2;
    }
    int days = 0;
    struct out_paths p;
    if (!days_for("cert self-signed", &f, &days)) {
        return 2;
    }
    struct moat_err err = {0};
    moat_rc rc = moat_names_check(names, n, f.client, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("cert self-signed", rc, &err);
    }
    if (out_paths_make("cert self-signed", &f, names[0], 0, &p) != 0) {
        return 2;
    }
    enum moat_key_type kt = MOAT_KEY_EC_P256;
    rc = f.type ? moat_key_parse_type(f.type, &kt, &err) : MOAT_RC_OK;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    if (moat_ok(rc)) {
        rc = moat_key_new(kt, &k, &err);
    }
    if (moat_ok(rc)) {
        struct moat_ca_leaf l = {.names = names, .n = n, .days = days, .client = f.client};
        rc = moat_ca_self_signed(&l, k, 0, &x, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_key_save(p.key, k, f.force, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_ca_write_certs(p.cert, &x, 1, f.force, &err);
    }
    if (moat_ok(rc)) {
        printf("made a self-signed %s certificate for %s\n", f.client ? "client" : "server",
               names[0]);
        printf("  key:          %s (mode 0600: keep it secret)\n  certificate:  %s\n", p.key,
               p.cert);
        print_until(x);
        fputs(self_signed_note, stdout);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return moat_cli_fail("cert self-signed", rc, &err);
}

static int cert_show(int argc, char **argv)
{
    struct cert_flags f = {0};
    const char *pos[1];
    size_t npos = 0;
    int r = parse("cert show", argc, argv, &f, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat cert show: give one certificate file\n");
        return 2;
    }
    struct moat_err err = {0};
    struct moat_chain *c = NULL;
    moat_rc rc = moat_chain_load(pos[0], &c, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("cert show", rc, &err);
    }
    moat_show_chain(stdout, c, time(NULL));
    moat_chain_free(c);
    return 0;
}

int moat_cmd_cert(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(cert_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "issue") == 0) {
        return cert_issue(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "self-signed") == 0) {
        return cert_self_signed(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "show") == 0) {
        return cert_show(argc - 1, argv + 1);
    }
    fprintf(stderr,
            "moat cert: unknown subcommand \"%s\" (issue, self-signed, show; see moat cert "
            "--help)\n",
            argv[1]);
    return 2;
}
