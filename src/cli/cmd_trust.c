/*
 * cmd_trust.c: `moat trust install|uninstall|list`: argument parsing only; the stores are
 * handled by pki/trust.c.
 */
#include "cli/cmd.h"

#include "cli/pkiargs.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/trust.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/x509.h>

#define MAX_DBS 16

static const char trust_usage[] =
    "usage: moat trust install|uninstall|list [--ca FILE|DIR] [options]\n"
    "\n"
    "Make this machine's programs trust a CA, or stop trusting it: the system store (curl,\n"
    "OpenSSL, Python, Go...: a file in /usr/local/share/ca-certificates, then\n"
    "update-ca-certificates; needs root) and the NSS databases that Chromium\n"
    "(~/.pki/nssdb) and Firefox (each profile) read, with certutil (libnss3-tools).\n"
    "Restart the browser afterwards.\n"
    "\n"
    "  install          trust the CA\n"
    "  uninstall        remove every copy of it from the stores\n"
    "  list             the CAs added to the stores; \"*\" marks the one of --ca\n"
    "  --ca FILE|DIR    the CA's root certificate, or a CA folder (its root.pem); default:\n"
    "                   moat's local CA (created by install when missing)\n"
    "  --no-system      leave the system store alone\n"
    "  --no-nss         leave the browsers' NSS databases alone\n"
    "  --system-dir DIR the system folder (default /usr/local/share/ca-certificates, or\n"
    "                   $MOAT_TRUST_SYSTEM_DIR)\n"
    "  --update-cmd CMD run CMD after changing it (default update-ca-certificates, or\n"
    "                   $MOAT_TRUST_UPDATE_CMD; \"none\" runs nothing)\n"
    "  --home DIR       look for NSS databases under DIR instead of $HOME\n"
    "  --nssdb DIR      use this NSS database folder instead (repeatable)\n"
    "  --certutil PATH  the certutil program (default: certutil from PATH)\n"
    "\n"
    "Examples:\n"
    "  sudo moat trust install                       # moat's local CA, everywhere\n"
    "  moat trust install --ca ~/myca --no-system    # your browsers only, no root needed\n"
    "  moat trust list --ca ~/myca\n"
    "  sudo moat trust uninstall --ca ~/myca\n";

/* The CA certificate named by --ca (a file or a CA folder), or moat's local CA's root. */
static moat_rc load_ca(const char *arg, int create, X509 **out, struct moat_err *err)
{
    *out = NULL;
    char path[PATH_MAX];
    struct stat st;
    if (arg == NULL) {
        if (create) {
            struct moat_ca *ca = NULL;
            MOAT_TRY(moat_cli_open_ca(NULL, &ca, err));
            X509_up_ref(ca->root);
            *out = ca->root;
            moat_ca_free(ca);
            return MOAT_RC_OK;
        }
        char *def = NULL;
        MOAT_TRY(moat_ca_default_dir(&def, err));
        snprintf(path, sizeof(path), "%s/root.pem", def);
        free(def);
    } else if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof(path), "%s/root.pem", arg);
    } else {
        snprintf(path, sizeof(path), "%s", arg);
    }
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(path, &c, err));
    *out = c->leaf;
    c->leaf = NULL;
    moat_chain_free(c);
    return MOAT_RC_OK;
}

int moat_cmd_trust(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(trust_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    int install = strcmp(sub, "install") == 0, uninstall = strcmp(sub, "uninstall") == 0,
        list = strcmp(sub, "list") == 0;
    if (!install && !uninstall && !list) {
        fprintf(stderr,
                "moat trust: unknown subcommand \"%s\" (install, uninstall, list; see moat "
                "trust --help)\n",
                sub);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "trust %s", sub);
    const char *ca_arg = NULL, *nssdb[MAX_DBS];
    size_t ndb = 0, npos = 0;
    int no_system = 0, no_nss = 0;
    struct moat_trust_opts o = {0};
    const struct moat_cli_opt opts[] = {
        {.name = "--ca", .kind = MOAT_CLI_VALUE, .value = &ca_arg},
        {.name = "--no-system", .kind = MOAT_CLI_FLAG, .flag = &no_system},
        {.name = "--no-nss", .kind = MOAT_CLI_FLAG, .flag = &no_nss},
        {.name = "--system-dir", .kind = MOAT_CLI_VALUE, .value = &o.system_dir},
        {.name = "--update-cmd", .kind = MOAT_CLI_VALUE, .value = &o.update_cmd},
        {.name = "--home", .kind = MOAT_CLI_VALUE, .value = &o.home},
        {.name = "--certutil", .kind = MOAT_CLI_VALUE, .value = &o.certutil},
        {.name = "--nssdb", .kind = MOAT_CLI_LIST, .list = nssdb, .n = &ndb, .max = MAX_DBS},
    };
    int r = moat_cli_args_parse(cmd, trust_usage, argc - 1, argv + 1, opts,
                                sizeof(opts) / sizeof(opts[0]), NULL, 0, &npos);
    if (r != 0) {
        return r < 0 ? 0 : r;
    }
    if (no_system && no_nss) {
        fprintf(stderr, "moat %s: --no-system and --no-nss leave nothing to do\n", cmd);
        return 2;
    }
    if (o.system_dir == NULL) {
        o.system_dir = getenv("MOAT_TRUST_SYSTEM_DIR");
    }
    if (o.update_cmd == NULL) {
        o.update_cmd = getenv("MOAT_TRUST_UPDATE_CMD");
    }
    o.system = !no_system;
    o.nss = !no_nss;
    o.nssdb = nssdb;
    o.nnssdb = ndb;
    struct moat_err err = {0};
    X509 *ca = NULL;
    moat_rc rc = load_ca(ca_arg, install, &ca, &err);
    if (list && ca_arg == NULL && rc.kind == MOAT_E_NOTFOUND) {
        rc = MOAT_RC_OK; /* no local CA yet: list what is there */
    }
    if (!moat_ok(rc)) {
        return moat_cli_fail(cmd, rc, &err);
    }
    int found = 0;
    if (install) {
        rc = moat_trust_install(ca, &o, stdout, &err);
    } else if (uninstall) {
        rc = moat_trust_uninstall(ca, &o, stdout, &err);
    } else {
        rc = moat_trust_list(ca, &o, stdout, &found, &err);
    }
    if (moat_ok(rc) && install) {
        printf("done: restart the browser so it reads the new trust\n");
    }
    X509_free(ca);
    return moat_cli_fail(cmd, rc, &err);
}
