/*
 * cmd_ca.c: `moat ca init|intermediate|set|sign|revoke|crl|show`: argument parsing only; the
 * CA lives in pki/ca.c, its policy in pki/policy.c, revocation in pki/crl.c, its CRL
 * addresses in pki/crlurl.c.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/crl.h"
#include "pki/crlurl.h"
#include "pki/csr.h"
#include "pki/names.h"
#include "pki/show.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>

#define MAX_CONSTRAINTS 32

static const char ca_usage[] =
    "usage: moat ca init [--dir DIR] [--name NAME] [--key-type TYPE] [--permit NAME]...\n"
    "                    [--exclude NAME]... [--crl-url URL] [--root-crl-url URL]\n"
    "       moat ca intermediate [--ca DIR] [--out DIR] [--name NAME] [--key-type TYPE]\n"
    "                    [--crl-url URL] [--root-crl-url URL]\n"
    "       moat ca set [--ca DIR] [--crl-url URL|none] [--root-crl-url URL|none]\n"
    "       moat ca sign CSR [--ca DIR] [--days N] [--client] [--out FILE]\n"
    "       moat ca revoke CERT [--ca DIR] [--reason REASON]\n"
    "       moat ca crl [--ca DIR] [--out FILE] [--root-out FILE] [--days N]\n"
    "       moat ca show [--ca DIR]\n"
    "\n"
    "Your own certificate authority (CA): a root, kept safe, that signs an intermediate, which\n"
    "signs certificates. Clients that trust the root (moat trust install) accept them.\n"
    "Without --dir/--ca the CA is moat's local CA ($MOAT_STATE/ca, else\n"
    "~/.local/share/moat/ca), the one `moat serve` uses.\n"
    "\n"
    "  init               create a CA in an empty folder\n"
    "    --name NAME      the root's name (default \"moat local CA user@host\")\n"
    "    --key-type TYPE  p256 (default), p384, rsa2048, rsa3072, rsa4096, ed25519 (also\n"
    "                     rsa:2048, ecdsa-p384, P-256, ...: see moat key --help)\n"
    "    --permit NAME    only ever sign names within NAME: a domain (example.com covers it\n"
    "                     and all below), an address range (10.0.0.0/8), a mail domain\n"
    "                     (@example.com); repeatable. Clients enforce it (name constraints)\n"
    "    --exclude NAME   never sign names within NAME; repeatable\n"
    "    --crl-url URL    where the intermediate's CRL will be published (http://HOST/PATH):\n"
    "                     every certificate it signs points there (crlDistributionPoints)\n"
    "    --root-crl-url URL  where the root's CRL will be published: the intermediates the\n"
    "                     root signs point there\n"
    "  intermediate       make a new intermediate with the root key (root.key must be there):\n"
    "                     replaces the CA's own (the old one is kept, dated), or with --out DIR\n"
    "                     makes a separate issuing CA in DIR without the root key, so the root\n"
    "                     key can go offline. Takes --name, --key-type, --permit, --exclude;\n"
    "                     --crl-url is the new intermediate's own CRL address (kept in DIR),\n"
    "                     --root-crl-url changes the root's (kept in the root's folder)\n"
    "  set                change the CRL addresses kept in the CA folder (file `settings`);\n"
    "                     `none` removes one. Certificates issued before keep what they carry\n"
    "  sign CSR           check a CSR's signature and the CA's policy, then sign it\n"
    "    --days N         validity (default 90 for servers, 365 for clients; at most 825 for\n"
    "                     servers), never past the intermediate's own end\n"
    "    --client         a client certificate (clientAuth) instead of a server one\n"
    "    --out FILE       write the certificate and the intermediate there (default: stdout)\n"
    "  revoke CERT        mark CERT revoked in the CA's index (index.txt)\n"
    "    --reason R       unspecified (default), key-compromise, ca-compromise,\n"
    "                     affiliation-changed, superseded, cessation-of-operation\n"
    "  crl                write the revocation lists (CRLs) that clients and `moat serve` load\n"
    "                     (moat serve publishes them with crl_publish, see docs/config.md)\n"
    "    --out FILE       the intermediate's (the certificates it issued); default DIR/crl.pem\n"
    "    --root-out FILE  the root's (revoked intermediates), made when root.key is there;\n"
    "                     default DIR/root-crl.pem\n"
    "    --days N         until the next update (default 7): publish a new one before then\n"
    "  show               the CA's certificates, policy and counts\n"
    "\n"
    "Signing policy: a file named `policy` in the CA folder limits what `ca sign` and `cert\n"
    "issue` will sign, one rule per line:\n"
    "    allow *.example.com      allow example.com      allow 10.0.0.0/8\n"
    "    deny admin.example.com   max_days 30            client no\n"
    "With allow lines, every name must match one; deny always wins (docs/pki.md).\n"
    "\n"
    "Examples:\n"
    "  moat ca init --dir ~/myca --name \"Acme dev CA\" --permit acme.test\n"
    "  moat ca set --ca ~/myca --crl-url http://ca.acme.test/crl/intermediate.crl\n"
    "  moat ca sign server.csr --ca ~/myca --out server.pem\n"
    "  moat ca revoke server.pem --ca ~/myca --reason key-compromise && moat ca crl --ca ~/myca\n";

struct ca_flags {
    const char *dir, *ca, *out, *root_out, *name, *type, *days, *reason, *crl_url, *root_crl_url;
    const char *permit[MAX_CONSTRAINTS], *exclude[MAX_CONSTRAINTS];
    size_t npermit, nexclude;
    int client;
};

static int parse(const char *cmd, int argc, char **argv, struct ca_flags *f, const char **pos,
                 size_t maxpos, size_t *npos)
{
    const struct moat_cli_opt opts[] = {
        {.name = "--dir", .kind = MOAT_CLI_VALUE, .value = &f->dir},
        {.name = "--ca", .kind = MOAT_CLI_VALUE, .value = &f->ca},
        {.name = "--out", .kind = MOAT_CLI_VALUE, .value = &f->out},
        {.name = "--root-out", .kind = MOAT_CLI_VALUE, .value = &f->root_out},
        {.name = "--name", .kind = MOAT_CLI_VALUE, .value = &f->name},
        {.name = "--key-type", .kind = MOAT_CLI_VALUE, .value = &f->type},
        {.name = "--days", .kind = MOAT_CLI_VALUE, .value = &f->days},
        {.name = "--reason", .kind = MOAT_CLI_VALUE, .value = &f->reason},
        {.name = "--crl-url", .kind = MOAT_CLI_VALUE, .value = &f->crl_url},
        {.name = "--root-crl-url", .kind = MOAT_CLI_VALUE, .value = &f->root_crl_url},
        {.name = "--client", .kind = MOAT_CLI_FLAG, .flag = &f->client},
        {.name = "--permit",
         .kind = MOAT_CLI_LIST,
         .list = f->permit,
         .n = &f->npermit,
         .max = MAX_CONSTRAINTS},
        {.name = "--exclude",
         .kind = MOAT_CLI_LIST,
         .list = f->exclude,
         .n = &f->nexclude,
         .max = MAX_CONSTRAINTS},
    };
    return moat_cli_args_parse(cmd, ca_usage, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), pos,
                               maxpos, npos);
}

/* Flags that the subcommand does not take are refused, so a typo never passes silently. */
static int refuse(const char *cmd, const char *flag, int given)
{
    if (given) {
        fprintf(stderr, "moat %s: %s does not apply here (see moat ca --help)\n", cmd, flag);
        return 1;
    }
    return 0;
}

/* Subcommands that take no CRL address refuse both flags. */
static int refuse_urls(const char *cmd, const struct ca_flags *f)
{
    return refuse(cmd, "--crl-url", f->crl_url != NULL) ||
           refuse(cmd, "--root-crl-url", f->root_crl_url != NULL);
}

/* --dir and --ca both name the CA folder; either is accepted. */
static const char *ca_dir(const struct ca_flags *f)
{
    return f->ca ? f->ca : f->dir;
}

/* The CRL addresses of the CA and where `moat serve` would publish them. */
static void print_urls(const struct moat_ca *ca)
{
    if (ca->crl_url != NULL) {
        printf("  CRL URL:      %s (in every certificate the intermediate signs; publish "
               "crl.pem there:\n                crl_publish %s %s in a moat serve site)\n",
               ca->crl_url, moat_crlurl_path(ca->crl_url), ca->dir);
    }
    if (ca->root_crl_url != NULL) {
        printf("  root CRL URL: %s (in the intermediates the root signs; crl_publish %s %s "
               "root)\n",
               ca->root_crl_url, moat_crlurl_path(ca->root_crl_url), ca->dir);
    }
}

static void print_fingerprint(const char *label, X509 *x)
{
    unsigned char md[32];
    unsigned int len = 0;
    printf("%s", label);
    if (X509_digest(x, EVP_sha256(), md, &len) == 1) {
        for (unsigned int i = 0; i < len; i++) {
            printf("%s%02X", i ? ":" : "", md[i]);
        }
    }
    printf("\n");
}

/* The CA options and folder that `ca init` and `ca intermediate` share: key type, name
 * constraints, and --dir/--ca or moat's local CA. *def (freed by the caller) holds the
 * default folder when none was given. */
static moat_rc ca_opts_and_dir(const struct ca_flags *f, struct moat_ca_opts *o, char **def,
                               const char **dir, struct moat_err *err)
{
    *o = (struct moat_ca_opts){.name = f->name,
                               .key_type = MOAT_KEY_EC_P256,
                               .permit = f->permit,
                               .npermit = f->npermit,
                               .exclude = f->exclude,
                               .nexclude = f->nexclude,
                               .crl_url = f->crl_url,
                               .root_crl_url = f->root_crl_url};
    moat_rc rc = f->type ? moat_key_parse_type(f->type, &o->key_type, err) : MOAT_RC_OK;
    if (moat_ok(rc) && ca_dir(f) == NULL) {
        rc = moat_ca_default_dir(def, err);
    }
    *dir = *def ? *def : ca_dir(f);
    return rc;
}

static int ca_init(int argc, char **argv)
{
    struct ca_flags f = {0};
    size_t npos = 0;
    int r = parse("ca init", argc, argv, &f, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (refuse("ca init", "--out", f.out != NULL) || refuse("ca init", "--days", f.days != NULL) ||
        refuse("ca init", "--client", f.client) ||
        refuse("ca init", "--reason", f.reason != NULL) ||
        refuse("ca init", "--root-out", f.root_out != NULL)) {
        return 2;
    }
    struct moat_err err = {0};
    struct moat_ca_opts o;
    char *def = NULL;
    const char *dir = NULL;
    moat_rc rc = ca_opts_and_dir(&f, &o, &def, &dir, &err);
    struct moat_ca *ca = NULL;
    if (moat_ok(rc)) {
        rc = moat_ca_init(dir, &o, &ca, &err);
    }
    if (moat_ok(rc)) {
        char cn[128] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca->root), NID_commonName, cn, sizeof(cn));
        printf("created the CA \"%s\" in %s\n", cn, dir);
        printf("  root:         %s/root.pem (give this to clients; root.key signs intermediates "
               "only: keep it offline if you can)\n",
               dir);
        printf("  intermediate: %s/intermediate.pem (signs certificates)\n", dir);
        print_fingerprint("  root SHA-256: ", ca->root);
        print_urls(ca);
        printf("next:\n  moat trust install --ca %s/root.pem      # trust it on this machine\n"
               "  moat cert issue example.test --ca %s     # issue a server certificate\n",
               dir, dir);
    }
    moat_ca_free(ca);
    free(def);
    return moat_cli_fail("ca init", rc, &err);
}

static int ca_intermediate(int argc, char **argv)
{
    struct ca_flags f = {0};
    size_t npos = 0;
    int r = parse("ca intermediate", argc, argv, &f, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (refuse("ca intermediate", "--days", f.days != NULL) ||
        refuse("ca intermediate", "--client", f.client) ||
        refuse("ca intermediate", "--reason", f.reason != NULL) ||
        refuse("ca intermediate", "--root-out", f.root_out != NULL)) {
        return 2;
    }
    struct moat_err err = {0};
    struct moat_ca_opts o;
    char *def = NULL;
    const char *dir = NULL;
    moat_rc rc = ca_opts_and_dir(&f, &o, &def, &dir, &err);
    struct moat_ca *ca = NULL;
    if (moat_ok(rc)) {
        rc = moat_ca_intermediate(dir, f.out, &o, &ca, &err);
    }
    if (moat_ok(rc)) {
        char until[64];
        struct tm tm;
        time_t t = moat_ca_asn1_time(X509_get0_notAfter(ca->cert));
        gmtime_r(&t, &tm);
        strftime(until, sizeof(until), "%Y-%m-%d", &tm);
        char url[MOAT_CRLURL_MAX + 1];
        if (moat_crlurl_of(ca->cert, url, sizeof(url))) {
            printf("the intermediate points at the root's CRL: %s\n", url);
        }
        if (f.out != NULL && strcmp(f.out, dir) != 0) {
            printf("made an issuing CA in %s (root.pem, intermediate.pem, intermediate.key; no "
                   "root key), valid until %s\n",
                   f.out, until);
            if (ca->crl_url == NULL) {
                printf("its certificates carry no CRL URL: give it one (the address where %s's "
                       "own crl.pem will be published) with moat ca set --ca %s --crl-url URL\n",
                       f.out, f.out);
            }
        } else {
            printf("made a new intermediate in %s/intermediate.pem, valid until %s (the old one "
                   "is kept as intermediate-<date>.pem/.key)\n",
                   dir, until);
        }
    }
    moat_ca_free(ca);
    free(def);
    return moat_cli_fail("ca intermediate", rc, &err);
}

static int ca_sign(int argc, char **argv)
{
    struct ca_flags f = {0};
    const char *pos[1];
    size_t npos = 0;
    int r = parse("ca sign", argc, argv, &f, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat ca sign: give one CSR file (moat ca sign CSR)\n");
        return 2;
    }
    if (refuse("ca sign", "--name", f.name != NULL) ||
        refuse("ca sign", "--key-type", f.type != NULL) ||
        refuse("ca sign", "--permit", f.npermit > 0) ||
        refuse("ca sign", "--exclude", f.nexclude > 0) ||
        refuse("ca sign", "--reason", f.reason != NULL) || refuse_urls("ca sign", &f)) {
        return 2;
    }
    int days = f.client ? MOAT_CA_DEFAULT_CLIENT_DAYS : MOAT_CA_DEFAULT_SERVER_DAYS;
    if (f.days != NULL &&
        !moat_cli_days("ca sign", "--days", f.days,
                       f.client ? MOAT_CA_MAX_CLIENT_DAYS : MOAT_CA_MAX_LEAF_DAYS, &days)) {
        return 2;
    }
    struct moat_err err = {0};
    X509_REQ *req = NULL;
    char **names = NULL;
    size_t n = 0;
    struct moat_ca *ca = NULL;
    X509 *x = NULL;
    moat_rc rc = moat_csr_load(pos[0], &req, &err);
    if (moat_ok(rc)) {
        rc = moat_csr_names(req, &names, &n, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_cli_open_ca(ca_dir(&f), &ca, &err);
    }
    if (moat_ok(rc)) {
        struct moat_ca_leaf l = {.names = (const char *const *)names,
                                 .n = n,
                                 .days = days,
                                 .client = f.client,
                                 .pub = X509_REQ_get0_pubkey(req)};
        rc = moat_ca_sign(ca, &l, 0, &x, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_crl_record(ca, x, &err);
    }
    if (moat_ok(rc) && f.out != NULL) {
        X509 *both[2] = {x, ca->cert};
        rc = moat_ca_write_certs(f.out, both, 2, 1, &err);
        if (moat_ok(rc)) {
            fprintf(stderr,
                    "wrote the %s certificate for %s (and the intermediate after it) to "
                    "%s\n",
                    f.client ? "client" : "server", names[0], f.out);
        }
    } else if (moat_ok(rc)) {
        PEM_write_X509(stdout, x);
        PEM_write_X509(stdout, ca->cert);
    }
    X509_free(x);
    moat_ca_free(ca);
    moat_names_free(names, n);
    X509_REQ_free(req);
    return moat_cli_fail("ca sign", rc, &err);
}

static int ca_revoke(int argc, char **argv)
{
    struct ca_flags f = {0};
    const char *pos[1];
    size_t npos = 0;
    int r = parse("ca revoke", argc, argv, &f, pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat ca revoke: give one certificate file (moat ca revoke CERT)\n");
        return 2;
    }
    if (refuse_urls("ca revoke", &f)) {
        return 2;
    }
    struct moat_err err = {0};
    enum moat_crl_reason reason = MOAT_CRL_UNSPECIFIED;
    moat_rc rc = f.reason ? moat_crl_reason_parse(f.reason, &reason, &err) : MOAT_RC_OK;
    struct moat_chain *c = NULL;
    struct moat_ca *ca = NULL;
    int by_root = 0;
    if (moat_ok(rc)) {
        rc = moat_chain_load(pos[0], &c, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_cli_open_ca(ca_dir(&f), &ca, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_crl_revoke(ca, c->leaf, reason, 0, &by_root, &err);
    }
    if (moat_ok(rc)) {
        printf("revoked %s (%s); publish the new list: moat ca crl%s%s%s\n", pos[0],
               moat_crl_reason_name(reason), ca_dir(&f) ? " --ca " : "",
               ca_dir(&f) ? ca_dir(&f) : "", by_root ? " (the root's CRL needs root.key)" : "");
    }
    moat_ca_free(ca);
    moat_chain_free(c);
    return moat_cli_fail("ca revoke", rc, &err);
}

/* Where the CRLs must go, so that what the certificates point at is really there. */
static void publish_hint(const struct moat_ca *ca, const char *out, const char *root_out)
{
    if (ca->crl_url != NULL) {
        printf("certificates point at %s: publish %s there (moat serve: `crl_publish %s %s` "
               "in a site, then reload it with SIGHUP)\n",
               ca->crl_url, out, moat_crlurl_path(ca->crl_url), ca->dir);
    } else {
        printf("certificates carry no CRL URL, so clients find this list only when given it "
               "(moat ca set --crl-url URL adds one to certificates issued from then on)\n");
    }
    if (root_out != NULL && ca->root_crl_url != NULL) {
        printf("intermediates point at %s: publish %s there (`crl_publish %s %s root`)\n",
               ca->root_crl_url, root_out, moat_crlurl_path(ca->root_crl_url), ca->dir);
    }
    printf("publish them again before they run out\n");
}

static int ca_crl(int argc, char **argv)
{
    struct ca_flags f = {0};
    size_t npos = 0;
    int r = parse("ca crl", argc, argv, &f, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    int days = MOAT_CRL_DEFAULT_DAYS;
    if (f.days != NULL && !moat_cli_days("ca crl", "--days", f.days, 365, &days)) {
        return 2;
    }
    if (refuse_urls("ca crl", &f)) {
        return 2;
    }
    struct moat_err err = {0};
    struct moat_ca *ca = NULL;
    X509_CRL *crl = NULL, *root_crl = NULL;
    moat_rc rc = moat_cli_open_ca(ca_dir(&f), &ca, &err);
    char out[PATH_MAX], root_out[PATH_MAX], rk[PATH_MAX];
    if (moat_ok(rc)) {
        snprintf(out, sizeof(out), "%s", f.out ? f.out : "");
        snprintf(root_out, sizeof(root_out), "%s", f.root_out ? f.root_out : "");
        if (f.out == NULL) {
            snprintf(out, sizeof(out), "%s/crl.pem", ca->dir);
        }
        if (f.root_out == NULL) {
            snprintf(root_out, sizeof(root_out), "%s/root-crl.pem", ca->dir);
        }
        snprintf(rk, sizeof(rk), "%s/root.key", ca->dir);
        rc = moat_crl_make(ca, 0, days, 0, &crl, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_crl_write(out, &crl, 1, &err);
    }
    /* One CRL per file: each issuer's list on its own, as `client_crl` and other tools read
     * them. The root's needs root.key, which may be offline. */
    struct stat st;
    int have_root_key = moat_ok(rc) && stat(rk, &st) == 0;
    if (have_root_key) {
        rc = moat_crl_make(ca, 1, days, 0, &root_crl, &err);
        if (moat_ok(rc)) {
            rc = moat_crl_write(root_out, &root_crl, 1, &err);
        }
    }
    if (moat_ok(rc)) {
        int revoked = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
        printf("wrote %s: the intermediate's CRL (%d revoked), valid %d day%s\n", out,
               revoked < 0 ? 0 : revoked, days, days == 1 ? "" : "s");
        if (have_root_key) {
            revoked = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(root_crl));
            printf("wrote %s: the root's CRL (%d revoked intermediate%s)\n", root_out,
                   revoked < 0 ? 0 : revoked, revoked == 1 ? "" : "s");
        } else {
            printf("no root CRL: root.key is not in %s\n", ca->dir);
        }
        publish_hint(ca, out, have_root_key ? root_out : NULL);
    }
    X509_CRL_free(crl);
    X509_CRL_free(root_crl);
    moat_ca_free(ca);
    return moat_cli_fail("ca crl", rc, &err);
}

/* "none" removes a setting (""), anything else is the new URL. */
static const char *url_arg(const char *v)
{
    return v != NULL && strcmp(v, "none") == 0 ? "" : v;
}

static int ca_set(int argc, char **argv)
{
    struct ca_flags f = {0};
    size_t npos = 0;
    int r = parse("ca set", argc, argv, &f, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (f.crl_url == NULL && f.root_crl_url == NULL) {
        fprintf(stderr, "moat ca set: give --crl-url URL and/or --root-crl-url URL (`none` "
                        "removes one; see moat ca --help)\n");
        return 2;
    }
    if (refuse("ca set", "--out", f.out != NULL) ||
        refuse("ca set", "--root-out", f.root_out != NULL) ||
        refuse("ca set", "--name", f.name != NULL) ||
        refuse("ca set", "--key-type", f.type != NULL) ||
        refuse("ca set", "--days", f.days != NULL) || refuse("ca set", "--client", f.client) ||
        refuse("ca set", "--reason", f.reason != NULL) ||
        refuse("ca set", "--permit", f.npermit > 0) ||
        refuse("ca set", "--exclude", f.nexclude > 0)) {
        return 2;
    }
    struct moat_err err = {0};
    struct moat_ca *ca = NULL;
    moat_rc rc = moat_cli_open_ca(ca_dir(&f), &ca, &err);
    if (moat_ok(rc)) {
        rc = moat_ca_set_crl_urls(ca, url_arg(f.crl_url), url_arg(f.root_crl_url), &err);
    }
    if (moat_ok(rc)) {
        printf("saved %s/settings\n", ca->dir);
        if (f.crl_url != NULL) {
            printf("  CRL URL:      %s\n", ca->crl_url ? ca->crl_url : "(none)");
            printf("certificates issued from now on carry it; those issued before keep what "
                   "they carry (reissue them if they must point at the new address)\n");
        }
        if (f.root_crl_url != NULL) {
            printf("  root CRL URL: %s\n", ca->root_crl_url ? ca->root_crl_url : "(none)");
            printf("the current intermediate keeps what it carries; the next one (moat ca "
                   "intermediate%s%s) points at the new address\n",
                   ca_dir(&f) ? " --ca " : "", ca_dir(&f) ? ca_dir(&f) : "");
        }
        print_urls(ca);
    }
    moat_ca_free(ca);
    return moat_cli_fail("ca set", rc, &err);
}

static int ca_show(int argc, char **argv)
{
    struct ca_flags f = {0};
    size_t npos = 0;
    int r = parse("ca show", argc, argv, &f, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (refuse_urls("ca show", &f)) {
        return 2;
    }
    struct moat_err err = {0};
    struct moat_ca *ca = NULL;
    moat_rc rc = moat_cli_open_ca(ca_dir(&f), &ca, &err);
    if (!moat_ok(rc)) {
        return moat_cli_fail("ca show", rc, &err);
    }
    time_t now = time(NULL);
    printf("CA in %s\n\nRoot (root.pem)\n", ca->dir);
    moat_show_cert(stdout, ca->root, now, "");
    printf("\nIntermediate (intermediate.pem)\n");
    moat_show_cert(stdout, ca->cert, now, "");
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    rc = moat_crl_index_read(ca->dir, &v, &n, &err);
    if (moat_ok(rc)) {
        size_t revoked = 0;
        for (size_t i = 0; i < n; i++) {
            revoked += v[i].revoked;
        }
        printf("\nIndex (index.txt): %zu certificate%s recorded, %zu revoked\n", n,
               n == 1 ? "" : "s", revoked);
    }
    free(v);
    printf("Policy (%s/policy): %zu rule%s%s\n", ca->dir, ca->policy ? ca->policy->nrules : 0,
           ca->policy && ca->policy->nrules == 1 ? "" : "s",
           ca->policy && ca->policy->max_days ? ", with max_days" : "");
    printf("CRL URL (settings, in the certificates the intermediate signs): %s\n",
           ca->crl_url ? ca->crl_url : "(none: moat ca set --crl-url URL)");
    printf("Root CRL URL (settings, in the intermediates the root signs): %s\n",
           ca->root_crl_url ? ca->root_crl_url : "(none)");
    moat_ca_free(ca);
    return moat_cli_fail("ca show", rc, &err);
}

int moat_cmd_ca(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(ca_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } subs[] = {{"init", ca_init},     {"intermediate", ca_intermediate},
                {"set", ca_set},       {"sign", ca_sign},
                {"revoke", ca_revoke}, {"crl", ca_crl},
                {"show", ca_show}};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (strcmp(argv[1], subs[i].name) == 0) {
            return subs[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr,
            "moat ca: unknown subcommand \"%s\" (init, intermediate, set, sign, revoke, crl, "
            "show; see moat ca --help)\n",
            argv[1]);
    return 2;
}
