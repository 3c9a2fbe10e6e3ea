/*
 * cmd_verify.c: `moat verify`: argument parsing and printing only; the path is built and
 * checked by pki/validate.c, the failure kinds are pki/verify.h's.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/chain.h"
#include "pki/crl.h"
#include "pki/show.h"
#include "pki/validate.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#define MAX_FILES 16

static const char verify_usage[] =
    "usage: moat verify CERT [--chain FILE] [--cafile FILE]... [--host NAME] [--client]\n"
    "                        [--crl FILE]... [--no-system]\n"
    "\n"
    "Check a certificate the way a TLS client would: build the path from CERT through its\n"
    "intermediates to a trusted root, and say in plain words what is wrong when something is:\n"
    "expired, not yet valid, unknown issuer, missing intermediate, self-signed, name mismatch,\n"
    "wrong key usage, CA flag missing, path length exceeded, revoked, weak key or signature.\n"
    "Exit code 0 only when the certificate is valid; 1 when it is not; 2 for usage errors.\n"
    "\n"
    "  CERT             the certificate (PEM or DER); intermediates after it in the file are\n"
    "                   used to build the path\n"
    "  --chain FILE     more intermediates (e.g. the server's chain file)\n"
    "  --cafile FILE    trust the roots in FILE as well as the system's (repeatable)\n"
    "  --no-system      trust only the --cafile roots, not the system store\n"
    "  --host NAME      the certificate must cover NAME (a DNS name or an IP address)\n"
    "  --client         check it as a TLS client certificate (clientAuth) instead of a server\n"
    "                   certificate (serverAuth)\n"
    "  --crl FILE       check revocation with the CRLs in FILE (repeatable; moat ca crl)\n"
    "\n"
    "Examples:\n"
    "  moat verify example.test.fullchain.pem --host example.test\n"
    "  moat verify server.pem --chain intermediate.pem --cafile ~/myca/root.pem\n"
    "  moat verify ada.cert.pem --client --cafile ~/myca/root.pem --crl ~/myca/crl.pem\n";

/* clang-format off */
static moat_rc add_chain_file(const char *path, STACK_OF(X509) *untrusted, struct moat_err *err)
/* clang-format on */
{
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(path, &c, err));
    int ok = X509_up_ref(c->leaf) == 1 && sk_X509_push(untrusted, c->leaf) > 0;
    for (int i = 0; ok && i < sk_X509_num(c->extra); i++) {
        X509 *x = sk_X509_value(c->extra, i);
        ok = X509_up_ref(x) == 1 && sk_X509_push(untrusted, x) > 0;
    }
    moat_chain_free(c);
    if (!ok) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

static void print_path(const struct moat_validate_result *r)
{
    char nm[200];
    int n = r->path ? sk_X509_num(r->path) : 0;
    printf("  path:        ");
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(r->path, i);
        printf("%s\"%s\"", i ? " <- " : "", moat_show_short_name(x, nm, sizeof(nm)));
    }
    printf("%s\n", n == 0 ? "(none built)" : "");
}

static void print_ok(const char *file, X509 *leaf, const struct moat_validate_result *r,
                     const char *host, int client, int crl, time_t now)
{
    char nm[200], span[64];
    printf("%s: valid as a TLS %s certificate%s%s\n", file, client ? "client" : "server",
           host ? " for " : "", host ? host : "");
    printf("  certificate: \"%s\", expires %s\n", moat_show_short_name(leaf, nm, sizeof(nm)),
           moat_show_span(X509_get0_notAfter(leaf), now, span, sizeof(span)));
    print_path(r);
    printf("  revocation:  %s\n",
           crl ? "checked: not revoked" : "not checked (give --crl FILE to check it)");
    if (host == NULL) {
        printf("  name:        not checked (give --host NAME to check it)\n");
    }
}

static void print_problems(const char *file, const struct moat_validate_result *r)
{
    printf("%s: NOT valid: %s [%s]\n", file, moat_verify_kind_message(r->kind),
           moat_verify_kind_name(r->kind));
    for (size_t i = 0; i < r->nproblems; i++) {
        const struct moat_validate_problem *p = &r->problems[i];
        printf("  - [%s] %s\n", moat_verify_kind_name(p->kind), p->detail);
        printf("    fix: %s\n", moat_verify_kind_fix(p->kind));
    }
    print_path(r);
}

int moat_cmd_verify(int argc, char **argv)
{
    const char *chain = NULL, *host = NULL, *cafiles[MAX_FILES], *crlfiles[MAX_FILES], *pos[1];
    size_t ncafile = 0, ncrl = 0, npos = 0;
    int client = 0, no_system = 0;
    const struct moat_cli_opt opts[] = {
        {.name = "--chain", .kind = MOAT_CLI_VALUE, .value = &chain},
        {.name = "--host", .kind = MOAT_CLI_VALUE, .value = &host},
        {.name = "--client", .kind = MOAT_CLI_FLAG, .flag = &client},
        {.name = "--no-system", .kind = MOAT_CLI_FLAG, .flag = &no_system},
        {.name = "--cafile", .kind = MOAT_CLI_LIST, .list = cafiles, .n = &ncafile, .max = 16},
        {.name = "--ca-file", .kind = MOAT_CLI_LIST, .list = cafiles, .n = &ncafile, .max = 16},
        {.name = "--crl", .kind = MOAT_CLI_LIST, .list = crlfiles, .n = &ncrl, .max = 16},
    };
    int r = moat_cli_args_parse("verify", verify_usage, argc, argv, opts,
                                sizeof(opts) / sizeof(opts[0]), pos, 1, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (npos != 1) {
        fprintf(stderr, "moat verify: give one certificate file (see moat verify --help)\n");
        return 2;
    }
    if (no_system && ncafile == 0) {
        fprintf(stderr, "moat verify: --no-system needs --cafile FILE (otherwise nothing is "
                        "trusted)\n");
        return 2;
    }
    struct moat_err err = {0};
    struct moat_chain *c = NULL;
    X509_STORE *store = NULL;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    moat_rc rc = untrusted && crls ? MOAT_RC_OK
                                   : moat_err_set(&err, MOAT_E_NOMEM, __FILE__, __LINE__, "nomem");
    if (moat_ok(rc)) {
        rc = moat_chain_load(pos[0], &c, &err);
    }
    for (int i = 0; moat_ok(rc) && i < sk_X509_num(c->extra); i++) {
        X509 *x = sk_X509_value(c->extra, i);
        X509_up_ref(x);
        sk_X509_push(untrusted, x);
    }
    if (moat_ok(rc) && chain != NULL) {
        rc = add_chain_file(chain, untrusted, &err);
    }
    if (moat_ok(rc)) {
        rc = moat_trust_store_new(cafiles, ncafile, !no_system, &store, &err);
    }
    for (size_t i = 0; moat_ok(rc) && i < ncrl; i++) {
        STACK_OF(X509_CRL) *one = NULL;
        rc = moat_crl_load(crlfiles[i], &one, &err);
        while (moat_ok(rc) && sk_X509_CRL_num(one) > 0) {
            sk_X509_CRL_push(crls, sk_X509_CRL_shift(one));
        }
        sk_X509_CRL_pop_free(one, X509_CRL_free);
    }
    struct moat_validate_result res = {0};
    time_t now = time(NULL);
    if (moat_ok(rc)) {
        struct moat_validate_opts o = {.trust = store,
                                       .untrusted = untrusted,
                                       .crls = ncrl ? crls : NULL,
                                       .host = host,
                                       .client = client,
                                       .now = now};
        rc = moat_validate(c->leaf, &o, &res, &err);
    }
    int code = moat_cli_fail("verify", rc, &err);
    if (moat_ok(rc) && res.kind == MOAT_V_OK) {
        print_ok(pos[0], c->leaf, &res, host, client, ncrl > 0, now);
    } else if (moat_ok(rc)) {
        print_problems(pos[0], &res);
        code = 1;
    }
    moat_validate_result_clear(&res);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    sk_X509_pop_free(untrusted, X509_free);
    X509_STORE_free(store);
    moat_chain_free(c);
    return code;
}
