/*
 * cmd_acme.c: `moat acme issue|renew|revoke|status|account`: argument parsing and printing only;
 * the protocol is acme/client.c, acme/order.c and acme/account.c, the store's layout acme/lineage.c
 * and acme/account.c.
 */
#include "cli/cmd.h"

#include "acme/account.h"
#include "acme/challenges.h"
#include "acme/dns.h"
#include "acme/jws.h"
#include "acme/lineage.h"
#include "acme/standalone.h"
#include "cli/pkiargs.h"
#include "pki/fsutil.h"
#include "pki/key.h"
#include "serve/conf.h"
#include "state/store.h"
#include "serve/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#define MAX_NAMES 100
#define MAX_EMAILS 8

static const char acme_usage[] =
    "usage: moat acme issue NAME... [--server URL] [--email ADDR] [--agree-tos]\n"
    "                              [--http [ADDR:]PORT | --webroot DIR] [options]\n"
    "       moat acme renew [NAME...] [--force] [--http [ADDR:]PORT | --webroot DIR | ...]\n"
    "       moat acme revoke CERT [--reason REASON] [--server URL]\n"
    "       moat acme status [--json] [--config FILE]\n"
    "       moat acme account [--show | --rollover | --deactivate --yes] [--server URL]\n"
    "\n"
    "Certificates from an ACME CA (Let's Encrypt or any other, RFC 8555), kept in moat's state\n"
    "folder: the account key and every certificate key are written 0600, atomically.\n"
    "\n"
    "  issue NAME...          order one certificate for these names (the first names it)\n"
    "    --server URL         the CA's directory URL, or `production` (Let's Encrypt, the\n"
    "                         default) or `staging` (Let's Encrypt's test CA)\n"
    "    --ca-bundle FILE     trust only these roots for the CA's own HTTPS (a private CA)\n"
    "    --email ADDR         contact for the account (expiry notices); may be repeated\n"
    "    --agree-tos          you agree to the CA's terms of service (needed once per CA)\n"
    "    --eab-kid ID         External Account Binding key id, for CAs that require one\n"
    "    --eab-hmac KEY       its MAC key (base64url, as the CA shows it)\n"
    "    --http [ADDR:]PORT   answer HTTP-01 with moat's own listener (default :80)\n"
    "    --tls-alpn [ADDR:]PORT  answer TLS-ALPN-01 (RFC 8737) with moat's own TLS listener\n"
    "                         (for :443; with --http too, the CA may use either)\n"
    "    --webroot DIR        answer HTTP-01 with files under DIR/.well-known/acme-challenge/\n"
    "                         (for a site another web server serves from DIR)\n"
    "    --dns-server ADDR    answer DNS-01 (needed for *.names) by RFC 2136 updates to the\n"
    "                         zone's primary at ADDR[:PORT], signed with --tsig-key\n"
    "    --dns-zone ZONE      the zone to update (default: found by asking the server)\n"
    "    --tsig-key NAME:ALG:SECRET  the TSIG key (alg e.g. hmac-sha256, secret base64)\n"
    "    --dns-hook CMD       or answer DNS-01 by running CMD set|clear FQDN VALUE\n"
    "    --dns-check ADDR     check the record at ADDR[:PORT] before telling the CA (default:\n"
    "                         the zone's NS servers); may be repeated\n"
    "    --key-type TYPE      ecdsa (P-256, the default) or rsa (RSA 2048)\n"
    "    --preferred-chain CN among the CA's chains, take the one through this issuer name\n"
    "    --profile NAME       the CA's certificate profile (e.g. shortlived, tlsserver)\n"
    "    --cert-out FILE      also write the chain (leaf first) to FILE\n"
    "    --key-out FILE       also write the key to FILE (0600, atomically)\n"
    "    --timeout SECONDS    give up the order after this long (default 600)\n"
    "    --resolver ADDR      the DNS resolver for the pre-flight checks (default: the\n"
    "                         system's); --no-preflight skips them\n"
    "    --state DIR          moat's state folder (default $MOAT_STATE, else\n"
    "                         ~/.local/share/moat)\n"
    "  renew [NAME...]        order again each certificate of the state folder that is due (a\n"
    "                         third of its life left; all with --force), or only those named,\n"
    "                         at the CA that issued it, with the challenge options of issue\n"
    "  revoke CERT            revoke the certificate in CERT (PEM or DER) with the account key\n"
    "    --reason REASON      unspecified (default), keyCompromise, superseded or\n"
    "                         cessationOfOperation\n"
    "  status                 each certificate in the state folder: names, issuer, expiry,\n"
    "                         next renewal, last error. Exit 1 when a renewal is overdue or\n"
    "                         failing, 3 when a certificate has expired\n"
    "    --json               one JSON document instead of text\n"
    "    --config FILE        the server's configuration: its state folder, or, with a\n"
    "                         cluster { } block, the certificates the cluster keeps in Redis\n"
    "  account                the account at the CA (--server, --ca-bundle, --state as for\n"
    "                         issue); it is found, never created\n"
    "    --show               its URL, status, contacts, key thumbprint, orders (the default)\n"
    "    --rollover           replace the account key with a new one (RFC 8555 7.3.5): same\n"
    "                         account, same URL, same certificates\n"
    "    --deactivate --yes   deactivate the account for good (RFC 8555 7.3.6): the CA refuses\n"
    "                         it from then on. It cannot be undone, so it needs --yes\n"
    "\n"
    "Examples:\n"
    "  moat acme issue example.com www.example.com --email me@example.com --agree-tos\n"
    "  moat acme issue example.com --webroot /var/www/html --server staging --agree-tos\n"
    "  moat acme status\n"
    "  moat acme account --rollover\n";

static void say(void *arg, int level, const char *line)
{
    (void)arg;
    fprintf(stderr, "moat acme: %s%s\n", level ? "warning: " : "", line);
}

static char *state_dir(const char *given)
{
    if (given != NULL) {
        return strdup(given);
    }
    const char *env = getenv("MOAT_STATE");
    if (env != NULL && env[0] != '\0') {
        return strdup(env);
    }
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
        return NULL;
    }
    size_t n = strlen(home) + 32;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/.local/share/moat", home);
    }
    return p;
}

static moat_rc open_store(const char *given, struct moat_store **st, struct moat_err *err)
{
    char *dir = state_dir(given);
    if (dir == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "no state folder: set MOAT_STATE or HOME, or give --state");
    }
    moat_rc rc = moat_store_folder_new(dir, st, err);
    free(dir);
    return rc;
}

/* The options every command that talks to the CA shares. */
struct ca_args {
    const char *server, *ca_bundle, *eab_kid, *eab_hmac, *state;
    const char *emails[MAX_EMAILS];
    size_t nemails;
    int agree_tos;
};

#define CA_OPTS(c)                                                                                 \
    {.name = "--server", .kind = MOAT_CLI_VALUE, .value = &(c).server},                            \
        {.name = "--directory", .kind = MOAT_CLI_VALUE, .value = &(c).server},                     \
        {.name = "--ca-bundle", .kind = MOAT_CLI_VALUE, .value = &(c).ca_bundle},                  \
        {.name = "--email",                                                                        \
         .kind = MOAT_CLI_LIST,                                                                    \
         .list = (c).emails,                                                                       \
         .n = &(c).nemails,                                                                        \
         .max = MAX_EMAILS},                                                                       \
        {.name = "--agree-tos", .kind = MOAT_CLI_FLAG, .flag = &(c).agree_tos},                    \
        {.name = "--eab-kid", .kind = MOAT_CLI_VALUE, .value = &(c).eab_kid},                      \
        {.name = "--eab-hmac", .kind = MOAT_CLI_VALUE, .value = &(c).eab_hmac},                    \
    {                                                                                              \
        .name = "--state", .kind = MOAT_CLI_VALUE, .value = &(c).state                             \
    }

static moat_rc login(const struct ca_args *c, struct moat_store *st, struct moat_acme **a,
                     struct moat_err *err)
{
    struct moat_acme_opts o = {
        .directory = c->server,
        .cafile = c->ca_bundle,
        .say = say,
    };
    struct moat_acme_account_req q = {
        .contacts = c->emails,
        .ncontacts = c->nemails,
        .agree_tos = c->agree_tos,
        .eab_kid = c->eab_kid,
        .eab_hmac = c->eab_hmac,
    };
    if ((c->eab_kid == NULL) != (c->eab_hmac == NULL)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "give --eab-kid and --eab-hmac together");
    }
    MOAT_TRY(moat_acme_login(st, &o, &q, a, err));
    char line[MOAT_ACME_URL_MAX + 64];
    snprintf(line, sizeof(line), "account %s at %s", (*a)->kid, (*a)->directory_url);
    say(NULL, 0, line);
    return MOAT_RC_OK;
}

static moat_rc write_outputs(struct moat_store *st, const char *name, enum moat_acme_kind kind,
                             const char *cert_out, const char *key_out, struct moat_err *err)
{
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_acme_installed(st, name, kind, &chain, &key, err));
    moat_rc rc = MOAT_RC_OK;
    if (cert_out != NULL) {
        BIO *b = BIO_new(BIO_s_mem());
        for (int i = 0; b != NULL && i < sk_X509_num(chain); i++) {
            PEM_write_bio_X509(b, sk_X509_value(chain, i));
        }
        char *p = NULL;
        long n = b ? BIO_get_mem_data(b, &p) : 0;
        rc = n > 0 ? moat_fs_write_atomic(cert_out, p, (size_t)n, 0644, err)
                   : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        BIO_free(b);
        if (moat_ok(rc)) {
            printf("wrote the certificate chain to %s\n", cert_out);
        }
    }
    if (moat_ok(rc) && key_out != NULL) {
        rc = moat_key_save(key_out, key, 1, err);
        if (moat_ok(rc)) {
            printf("wrote the private key to %s (mode 0600)\n", key_out);
        }
    }
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return rc;
}

/* What an order takes besides the names, parsed once for issue and renew. */
struct order_args {
    struct moat_acme_solver *solvers[2]; /* in order of preference */
    size_t nsolvers;
    const char *preferred, *profile;
    unsigned deadline;
    const struct moat_acme_preflight *preflight;
};

/* Log in at `server` (the lineage's own CA on renew) and order names into the store. */
static moat_rc order_names(const struct ca_args *c, const char *server, struct moat_store *st,
                           const struct order_args *o, const char *const *names, size_t n,
                           enum moat_acme_kind kind, struct moat_err *err)
{
    struct ca_args cc = *c;
    cc.server = server;
    struct moat_acme *a = NULL;
    MOAT_TRY(login(&cc, st, &a, err));
    struct moat_acme_cert_req q = {
        .names = names,
        .nnames = n,
        .kind = kind,
        .solvers = o->solvers,
        .nsolvers = o->nsolvers,
        .preferred_chain = o->preferred,
        .profile = o->profile,
        .deadline_s = o->deadline,
        .preflight = o->preflight,
    };
    moat_rc rc = moat_acme_obtain(st, a, &q, err);
    moat_acme_free(a);
    return rc;
}

/* moat acme renew: each lineage of the store that is due (or all, --force), at its own CA. */
static moat_rc renew_all(const struct ca_args *c, struct moat_store *st, const struct order_args *o,
                         const char *const *only, size_t nonly, int force, int *renewed,
                         struct moat_err *err)
{
    json_t *all = NULL;
    MOAT_TRY(moat_acme_statuses(st, &all, err));
    moat_rc first = MOAT_RC_OK;
    time_t now = time(NULL);
    size_t idx;
    json_t *s;
    json_array_foreach(all, idx, s)
    {
        int k = moat_acme_kind_parse(moat_acme_json_str(s, "kind"));
        const json_t *jn = json_object_get(s, "names");
        size_t nn = json_array_size(jn);
        const char *names[MAX_NAMES];
        for (size_t j = 0; j < nn && j < MAX_NAMES; j++) {
            names[j] = json_string_value(json_array_get(jn, j));
        }
        if (k < 0 || nn > MAX_NAMES || names[0] == NULL) {
            continue;
        }
        int wanted = nonly == 0;
        for (size_t j = 0; j < nonly; j++) {
            wanted |= strcmp(names[0], only[j]) == 0;
        }
        if (!wanted) {
            continue;
        }
        time_t ra = (time_t)json_integer_value(json_object_get(s, "renew_at"));
        time_t na = (time_t)json_integer_value(json_object_get(s, "not_after"));
        if (!force && na != 0 && now < ra) {
            char t[40];
            struct tm tm;
            gmtime_r(&ra, &tm);
            strftime(t, sizeof(t), "%Y-%m-%d %H:%M UTC", &tm);
            printf("%s (%s): not due yet (renews %s)\n", names[0], moat_acme_kind_name(k), t);
            continue;
        }
        struct moat_err e = {0};
        const char *dir = moat_acme_json_str(s, "directory");
        moat_rc rc = order_names(c, c->server ? c->server : dir, st, o, names, nn,
                                 (enum moat_acme_kind)k, &e);
        if (moat_ok(rc)) {
            printf("%s (%s): renewed\n", names[0], moat_acme_kind_name(k));
            (*renewed)++;
            continue;
        }
        char msg[MOAT_ERR_MSG_MAX + 300];
        fprintf(stderr, "moat acme renew: %s (%s): %s\n", names[0], moat_acme_kind_name(k),
                moat_err_str(&e, msg, sizeof(msg)));
        if (moat_ok(first)) {
            first = rc;
            if (err != NULL) {
                *err = e;
            }
        }
    }
    json_decref(all);
    return first;
}

static int acme_issue(int argc, char **argv, int renew)
{
    const char *cmd = renew ? "acme renew" : "acme issue";
    int force = 0;
    struct ca_args c = {0};
    const char *http = NULL, *webroot = NULL, *key_type = NULL, *preferred = NULL, *profile = NULL,
               *cert_out = NULL, *key_out = NULL, *timeout = NULL, *resolver = NULL;
    int no_preflight = 0;
    const char *names[MAX_NAMES];
    size_t nnames = 0;
    const char *tls_alpn = NULL;
    const char *dns_server = NULL, *dns_zone = NULL, *tsig = NULL, *dns_hook = NULL;
    const char *dns_check[8];
    size_t ndns_check = 0;
    const struct moat_cli_opt opts[] = {
        CA_OPTS(c),
        {.name = "--dns-server", .kind = MOAT_CLI_VALUE, .value = &dns_server},
        {.name = "--dns-zone", .kind = MOAT_CLI_VALUE, .value = &dns_zone},
        {.name = "--tsig-key", .kind = MOAT_CLI_VALUE, .value = &tsig},
        {.name = "--dns-hook", .kind = MOAT_CLI_VALUE, .value = &dns_hook},
        {.name = "--dns-check",
         .kind = MOAT_CLI_LIST,
         .list = dns_check,
         .n = &ndns_check,
         .max = 8},
        {.name = "--http", .kind = MOAT_CLI_VALUE, .value = &http},
        {.name = "--tls-alpn", .kind = MOAT_CLI_VALUE, .value = &tls_alpn},
        {.name = "--webroot", .kind = MOAT_CLI_VALUE, .value = &webroot},
        {.name = "--key-type", .kind = MOAT_CLI_VALUE, .value = &key_type},
        {.name = "--preferred-chain", .kind = MOAT_CLI_VALUE, .value = &preferred},
        {.name = "--profile", .kind = MOAT_CLI_VALUE, .value = &profile},
        {.name = "--cert-out", .kind = MOAT_CLI_VALUE, .value = &cert_out},
        {.name = "--key-out", .kind = MOAT_CLI_VALUE, .value = &key_out},
        {.name = "--timeout", .kind = MOAT_CLI_VALUE, .value = &timeout},
        {.name = "--resolver", .kind = MOAT_CLI_VALUE, .value = &resolver},
        {.name = "--no-preflight", .kind = MOAT_CLI_FLAG, .flag = &no_preflight},
        {.name = "--force", .kind = MOAT_CLI_FLAG, .flag = &force},
    };
    int r = moat_cli_args_parse(cmd, acme_usage, argc, argv, opts, sizeof(opts) / sizeof(opts[0]),
                                names, MAX_NAMES, &nnames);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (force && !renew) {
        fprintf(stderr, "moat acme issue: --force is for renew (issue always orders)\n");
        return 2;
    }
    if (renew && (cert_out != NULL || key_out != NULL || key_type != NULL)) {
        fprintf(stderr, "moat acme renew: --cert-out, --key-out and --key-type are for issue; "
                        "renew keeps each certificate's kind in the state folder\n");
        return 2;
    }
    if (nnames == 0 && !renew) {
        fprintf(stderr, "moat acme issue: name the certificate's names (moat acme issue "
                        "example.com www.example.com)\n");
        return 2;
    }
    int dns = dns_server != NULL || dns_hook != NULL;
    if ((http != NULL || tls_alpn != NULL) + (webroot != NULL) + dns > 1) {
        fprintf(stderr, "moat acme issue: give one of --http/--tls-alpn, --webroot and "
                        "--dns-server or --dns-hook\n");
        return 2;
    }
    for (size_t i = 0; i < nnames && !dns && !renew; i++) {
        if (names[i][0] == '*') {
            fprintf(stderr,
                    "moat acme issue: %s is a wildcard: it needs DNS-01 (--dns-server "
                    "with --tsig-key, or --dns-hook)\n",
                    names[i]);
            return 2;
        }
    }
    /* "NAME:ALG:SECRET": the secret is base64 and holds no ':'. */
    char tsig_name[256] = "", tsig_alg[64] = "";
    const char *tsig_secret = NULL;
    if (tsig != NULL) {
        const char *c1 = strchr(tsig, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c1 == NULL || c2 == NULL || c1 == tsig || c2 == c1 + 1 || c2[1] == '\0' ||
            (size_t)(c1 - tsig) >= sizeof(tsig_name) || (size_t)(c2 - c1 - 1) >= sizeof(tsig_alg)) {
            fprintf(stderr, "moat acme issue: --tsig-key is NAME:ALGORITHM:SECRET (e.g. "
                            "acme-key:hmac-sha256:BASE64)\n");
            return 2;
        }
        memcpy(tsig_name, tsig, (size_t)(c1 - tsig));
        memcpy(tsig_alg, c1 + 1, (size_t)(c2 - c1 - 1));
        tsig_secret = c2 + 1;
    }
    int kind = key_type ? moat_acme_kind_parse(key_type) : MOAT_ACME_ECDSA;
    if (kind < 0) {
        fprintf(stderr, "moat acme issue: --key-type is ecdsa or rsa, not \"%s\"\n", key_type);
        return 2;
    }
    unsigned deadline = 600;
    if (timeout != NULL) {
        char *end = NULL;
        unsigned long t = strtoul(timeout, &end, 10);
        if (end == timeout || *end != '\0' || t == 0 || t > 86400) {
            fprintf(stderr, "moat acme issue: --timeout is seconds, 1 to 86400\n");
            return 2;
        }
        deadline = (unsigned)t;
    }
    struct moat_err err = {0};
    struct moat_store *st = NULL;
    struct moat_acme_challenges *tab = NULL;
    struct moat_acme_standalone *listener = NULL;
    struct moat_acme_solver *solver = NULL, *alpn_solver = NULL;
    moat_rc rc = open_store(c.state, &st, &err);
    if (moat_ok(rc) && dns) {
        struct moat_acme_dns_opts d = {
            .server = dns_server,
            .zone = dns_zone,
            .tsig_name = tsig ? tsig_name : NULL,
            .tsig_alg = tsig ? tsig_alg : NULL,
            .tsig_secret = tsig_secret,
            .hook = dns_hook,
            .check = dns_check,
            .ncheck = ndns_check,
            .resolver = resolver,
        };
        rc = moat_acme_dns_solver_new(&d, &solver, &err);
    } else if (moat_ok(rc) && webroot != NULL) {
        rc = moat_acme_webroot_solver_new(webroot, &solver, &err);
    } else if (moat_ok(rc)) {
        /* Standalone: HTTP-01 on :80 unless only --tls-alpn was asked for. */
        const char *hspec = http ? http : (tls_alpn ? NULL : ":80");
        rc = moat_acme_challenges_new(&tab, &err);
        if (moat_ok(rc) && hspec != NULL) {
            rc = moat_acme_table_solver_new(tab, "http-01", &solver, &err);
        }
        if (moat_ok(rc) && tls_alpn != NULL) {
            rc = moat_acme_table_solver_new(tab, "tls-alpn-01", &alpn_solver, &err);
        }
        if (moat_ok(rc)) {
            rc = moat_acme_standalone_start(hspec, tls_alpn, tab, &listener, &err);
        }
        if (moat_ok(rc)) {
            char line[200];
            snprintf(line, sizeof(line), "answering %s%s%s%s%s", hspec ? "HTTP-01 on " : "",
                     hspec ? hspec : "", hspec && tls_alpn ? " and " : "",
                     tls_alpn ? "TLS-ALPN-01 on " : "", tls_alpn ? tls_alpn : "");
            say(NULL, 0, line);
        }
    }
    struct moat_acme_preflight pf = {.resolver = resolver};
    struct order_args oa = {
        .solvers = {solver ? solver : alpn_solver, solver ? alpn_solver : NULL},
        .nsolvers = (solver != NULL) + (alpn_solver != NULL),
        .preferred = preferred,
        .profile = profile,
        .deadline = deadline,
        .preflight = no_preflight ? NULL : &pf,
    };
    if (moat_ok(rc) && renew) {
        int renewed = 0;
        rc = renew_all(&c, st, &oa, names, nnames, force, &renewed, &err);
        if (moat_ok(rc) && renewed == 0) {
            printf("nothing to renew\n");
        }
    } else if (moat_ok(rc)) {
        rc = order_names(&c, c.server, st, &oa, names, nnames, (enum moat_acme_kind)kind, &err);
        if (moat_ok(rc)) {
            char prefix[MOAT_STORE_KEY_MAX];
            printf("issued a certificate for %s%s; it is in the state folder (%s)\n", names[0],
                   nnames > 1 ? " and the other names" : "",
                   moat_acme_lineage_prefix(names[0], prefix, sizeof(prefix)));
            rc = write_outputs(st, names[0], (enum moat_acme_kind)kind, cert_out, key_out, &err);
        }
    }
    moat_acme_standalone_stop(listener);
    moat_acme_solver_free(solver);
    moat_acme_solver_free(alpn_solver);
    moat_acme_challenges_free(tab);
    moat_store_free(st);
    return moat_cli_fail(cmd, rc, &err);
}

static int parse_reason(const char *s)
{
    static const struct {
        const char *name;
        int code;
    } reasons[] = {
        {"unspecified", 0}, {"keyCompromise", 1}, {"superseded", 4}, {"cessationOfOperation", 5}};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (strcasecmp(s, reasons[i].name) == 0) {
            return reasons[i].code;
        }
    }
    return -1;
}

static int acme_revoke(int argc, char **argv)
{
    struct ca_args c = {0};
    const char *reason = NULL, *pos[1];
    size_t npos = 0;
    const struct moat_cli_opt opts[] = {
        CA_OPTS(c),
        {.name = "--reason", .kind = MOAT_CLI_VALUE, .value = &reason},
    };
    int r = moat_cli_args_parse("acme revoke", acme_usage, argc, argv, opts,
                                sizeof(opts) / sizeof(opts[0]), pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat acme revoke: name the certificate file (moat acme revoke "
                        "cert.pem)\n");
        return 2;
    }
    int code = reason ? parse_reason(reason) : 0;
    if (code < 0) {
        fprintf(stderr, "moat acme revoke: --reason is unspecified, keyCompromise, superseded "
                        "or cessationOfOperation\n");
        return 2;
    }
    struct moat_err err = {0};
    unsigned char *cert = NULL;
    size_t len = 0;
    struct moat_store *st = NULL;
    struct moat_acme *a = NULL;
    moat_rc rc = moat_fs_read_file(pos[0], 1024 * 1024, &cert, &len, &err);
    if (moat_ok(rc)) {
        rc = open_store(c.state, &st, &err);
    }
    if (moat_ok(rc)) {
        /* Revoking with the account that ordered it: find it, never make one. */
        struct moat_acme_opts o = {.directory = c.server, .cafile = c.ca_bundle, .say = say};
        struct moat_acme_account_req q = {.only_existing = 1};
        rc = moat_acme_login(st, &o, &q, &a, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_acme_revoke(a, cert, len, code, &err);
    }
    if (moat_ok(rc)) {
        printf("revoked %s (reason: %s)\n", pos[0], reason ? reason : "unspecified");
    }
    free(cert);
    moat_acme_free(a);
    moat_store_free(st);
    return moat_cli_fail("acme revoke", rc, &err);
}

static void fmt_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M UTC", &tm);
}

/* The store a server's configuration names: its cluster's Redis, else its state folder (or
 * `state` when given). */
static moat_rc open_store_of_conf(const char *config, const char *state, struct moat_store **st,
                                  struct moat_err *err)
{
    struct moat_conf *conf = NULL;
    MOAT_TRY(moat_conf_load(config, &conf, err));
    moat_rc rc;
    const struct moat_conf_cluster *cc = conf->cluster;
    if (cc != NULL) {
        rc = moat_cluster_store_new(cc, st, err);
    } else {
        rc = open_store(state != NULL ? state : conf->state_dir, st, err);
    }
    moat_conf_free(conf);
    return rc;
}

static int acme_status(int argc, char **argv)
{
    const char *state = NULL, *config = NULL;
    int json = 0;
    const struct moat_cli_opt opts[] = {
        {.name = "--state", .kind = MOAT_CLI_VALUE, .value = &state},
        {.name = "--json", .kind = MOAT_CLI_FLAG, .flag = &json},
        {.name = "--config", .kind = MOAT_CLI_VALUE, .value = &config},
    };
    size_t npos = 0;
    int r = moat_cli_args_parse("acme status", acme_usage, argc, argv, opts, 3, NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    struct moat_err err = {0};
    struct moat_store *st = NULL;
    moat_rc rc = config != NULL ? open_store_of_conf(config, state, &st, &err)
                                : open_store(state, &st, &err);
    json_t *all = NULL;
    if (moat_ok(rc)) {
        rc = moat_acme_statuses(st, &all, &err);
    }
    if (!moat_ok(rc)) {
        moat_store_free(st);
        return moat_cli_fail("acme status", rc, &err);
    }
    int worst = 0;
    time_t now = time(NULL);
    size_t idx;
    json_t *s;
    json_array_foreach(all, idx, s)
    {
        const char *kind = moat_acme_json_str(s, "kind");
        time_t na = (time_t)json_integer_value(json_object_get(s, "not_after"));
        time_t ra = (time_t)json_integer_value(json_object_get(s, "renew_at"));
        json_int_t failures = json_integer_value(json_object_get(s, "failures"));
        const char *state_word = "ok";
        int level = 0;
        if (na == 0) {
            state_word = failures ? "never issued (failing)" : "never issued";
            level = failures ? 1 : 0;
        } else if (na <= now) {
            state_word = "EXPIRED";
            level = 3;
        } else if (failures > 0 || (ra != 0 && now > ra + 3600)) {
            state_word = failures > 0 ? "RENEWAL FAILING" : "renewal overdue";
            level = 1;
        }
        if (level > worst) {
            worst = level;
        }
        json_object_set_new(s, "state", json_string(state_word));
        if (!json) {
            const json_t *names = json_object_get(s, "names");
            printf("%s (%s)\n", json_string_value(json_array_get(names, 0)), kind);
            printf("  names:     ");
            size_t ni;
            json_t *nv;
            json_array_foreach(names, ni, nv)
            {
                printf("%s%s", ni ? ", " : "", json_string_value(nv));
            }
            printf("\n  CA:        %s\n", moat_acme_json_str(s, "directory"));
            if (na != 0) {
                char t1[40], t2[40];
                fmt_time(na, t1, sizeof(t1));
                fmt_time(ra, t2, sizeof(t2));
                printf("  issuer:    %s\n", moat_acme_json_str(s, "issuer"));
                printf("  expires:   %s (%ld days left)\n", t1, (long)((na - now) / 86400));
                time_t ws = (time_t)json_integer_value(json_object_get(s, "ari_window_start"));
                time_t we = (time_t)json_integer_value(json_object_get(s, "ari_window_end"));
                if (we != 0) {
                    char t3[40], t4[40];
                    fmt_time(ws, t3, sizeof(t3));
                    fmt_time(we, t4, sizeof(t4));
                    printf("  renews:    %s (in the CA's ARI window %s .. %s)\n", t2, t3, t4);
                } else {
                    printf("  renews:    %s\n", t2);
                }
            }
            printf("  state:     %s\n", state_word);
            const char *le = moat_acme_json_str(s, "last_error");
            if (le != NULL) {
                printf("  last error (%lld in a row): %s\n", (long long)failures, le);
            }
        }
    }
    if (json) {
        json_t *doc = json_pack("{s:o, s:i}", "certificates", all, "exit", worst);
        char *text = json_dumps(doc, JSON_INDENT(2));
        puts(text ? text : "{}");
        free(text);
        json_decref(doc);
    } else {
        if (json_array_size(all) == 0) {
            printf("no ACME certificates in the state folder yet (moat acme issue NAME)\n");
        }
        json_decref(all);
    }
    moat_store_free(st);
    return worst;
}

static void print_account(const struct moat_acme_account_info *i)
{
    printf("account %s\n", i->url);
    printf("  CA:        %s\n", i->directory);
    printf("  status:    %s%s\n", i->status,
           i->from_store ? " (as recorded in the state folder; the CA is not asked about a "
                           "deactivated account)"
                         : "");
    printf("  contact:   ");
    for (size_t n = 0; n < i->ncontacts; n++) {
        printf("%s%s", n ? ", " : "", i->contacts[n]);
    }
    printf("%s\n", i->ncontacts ? "" : "none");
    if (i->thumbprint[0] != '\0') {
        printf("  key:       %s, thumbprint %s\n", i->key_type, i->thumbprint);
    }
    if (i->created_at != NULL) {
        printf("  created:   %s\n", i->created_at);
    }
    if (i->orders != NULL) {
        printf("  orders:    %s\n", i->orders);
    }
}

static int acme_account(int argc, char **argv)
{
    struct ca_args c = {0};
    int show = 0, rollover = 0, deactivate = 0, yes = 0;
    const struct moat_cli_opt opts[] = {
        CA_OPTS(c),
        {.name = "--show", .kind = MOAT_CLI_FLAG, .flag = &show},
        {.name = "--rollover", .kind = MOAT_CLI_FLAG, .flag = &rollover},
        {.name = "--deactivate", .kind = MOAT_CLI_FLAG, .flag = &deactivate},
        {.name = "--yes", .kind = MOAT_CLI_FLAG, .flag = &yes},
    };
    size_t npos = 0;
    int r = moat_cli_args_parse("acme account", acme_usage, argc, argv, opts,
                                sizeof(opts) / sizeof(opts[0]), NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (show + rollover + deactivate > 1) {
        fprintf(stderr, "moat acme account: give one of --show, --rollover and --deactivate\n");
        return 2;
    }
    if (yes && !deactivate) {
        fprintf(stderr, "moat acme account: --yes confirms --deactivate and goes only with it\n");
        return 2;
    }
    if (deactivate && !yes) {
        fprintf(stderr,
                "moat acme account: --deactivate cannot be undone: the CA refuses the account "
                "from then on, and ordering from this CA again takes a new account. Add --yes "
                "to go ahead\n");
        return 2;
    }
    struct moat_acme_opts o = {.directory = c.server, .cafile = c.ca_bundle, .say = say};
    struct moat_err err = {0};
    struct moat_store *st = NULL;
    struct moat_acme *a = NULL;
    moat_rc rc = open_store(c.state, &st, &err);
    if (moat_ok(rc) && !rollover && !deactivate) {
        struct moat_acme_account_info info;
        rc = moat_acme_account_show(st, &o, &info, &err);
        if (moat_ok(rc)) {
            print_account(&info);
            moat_acme_account_info_clear(&info);
        }
    } else if (moat_ok(rc)) {
        /* The account must exist already: these change it, they never make one. */
        struct moat_acme_account_req q = {.only_existing = 1};
        rc = moat_acme_login(st, &o, &q, &a, &err);
    }
    char before[64] = "", after[64] = "";
    if (moat_ok(rc) && rollover) {
        rc = moat_jwk_thumbprint(a->key, before, sizeof(before), &err);
        if (moat_ok(rc)) {
            rc = moat_acme_account_rollover(st, a, &err);
        }
        if (moat_ok(rc)) {
            rc = moat_jwk_thumbprint(a->key, after, sizeof(after), &err);
        }
        if (moat_ok(rc)) {
            printf("replaced the key of the account %s at %s\n", a->kid, a->directory_url);
            printf("  old key:   thumbprint %s (the CA no longer accepts it)\n", before);
            printf("  new key:   thumbprint %s (in the state folder, mode 0600)\n", after);
        }
    }
    if (moat_ok(rc) && deactivate) {
        rc = moat_acme_account_deactivate(st, a, &err);
        char prefix[MOAT_STORE_KEY_MAX];
        if (moat_ok(rc)) {
            printf("deactivated the account %s at %s: the CA refuses its requests from now on\n",
                   a->kid, a->directory_url);
            const char *p = moat_acme_account_prefix(a->directory_url, prefix, sizeof(prefix));
            printf("to order from this CA again, remove %s/ from the state folder (moat then "
                   "makes a new account) or use a new state folder\n",
                   p ? p : "acme/accounts/<CA>");
        }
    }
    moat_acme_free(a);
    moat_store_free(st);
    return moat_cli_fail("acme account", rc, &err);
}

int moat_cmd_acme(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(acme_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "issue") == 0) {
        return acme_issue(argc - 1, argv + 1, 0);
    }
    if (strcmp(argv[1], "renew") == 0) {
        return acme_issue(argc - 1, argv + 1, 1);
    }
    if (strcmp(argv[1], "revoke") == 0) {
        return acme_revoke(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "status") == 0) {
        return acme_status(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "account") == 0) {
        return acme_account(argc - 1, argv + 1);
    }
    fprintf(stderr, "moat acme: unknown command \"%s\" (issue, renew, revoke, status or account)\n",
            argv[1]);
    return 2;
}
