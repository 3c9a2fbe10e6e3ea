/*
 * main.c: `moat COMMAND ...`: picks the subcommand, nothing else.
 */
#include "cli/cmd.h"

#include <openssl/opensslv.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: moat COMMAND [options]\n"
    "\n"
    "moat is an HTTPS server and certificate toolkit.\n"
    "\n"
    "Commands:\n"
    "  serve     serve static files and proxy to origins over HTTPS (moat serve --help)\n"
    "  proxy     put an app behind HTTPS in one command (moat proxy --help)\n"
    "  get       fetch a URL over HTTPS, strictly verified (moat get --help)\n"
    "  trace     show one HTTPS request step by step (moat trace --help)\n"
    "  check     grade an HTTPS server's setup, with the fixes (moat check --help)\n"
    "  cert      issue, self-sign and show certificates (moat cert --help)\n"
    "  ca        run a certificate authority (moat ca --help)\n"
    "  csr       make and show signing requests (moat csr --help)\n"
    "  key       make and show private keys (moat key --help)\n"
    "  verify    check a certificate, say why it fails (moat verify --help)\n"
    "  trust     trust a CA in the system and browsers (moat trust --help)\n"
    "  acme      certificates from Let's Encrypt or any ACME CA (moat acme --help)\n"
    "\n"
    "A running server (moat status --help):\n"
    "  status    sites, certificates, connections     reload    read the configuration again\n"
    "  certs     each site's certificates             stop      drain and exit\n"
    "  upstreams upstream servers' health             metrics   Prometheus metrics\n"
    "\n"
    "  moat --version   print the version\n"
    "  moat --help      this text\n";

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("moat %s (%s)\n", MOAT_VERSION, OPENSSL_VERSION_TEXT);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) {
        return moat_cmd_serve(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "proxy") == 0) {
        return moat_cmd_proxy(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "get") == 0) {
        return moat_cmd_get(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "trace") == 0) {
        return moat_cmd_trace(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "check") == 0) {
        return moat_cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "key") == 0) {
        return moat_cmd_key(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "csr") == 0) {
        return moat_cmd_csr(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "ca") == 0) {
        return moat_cmd_ca(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "cert") == 0) {
        return moat_cmd_cert(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "verify") == 0) {
        return moat_cmd_verify(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "trust") == 0) {
        return moat_cmd_trust(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "acme") == 0) {
        return moat_cmd_acme(argc - 1, argv + 1);
    }
    static const char *const admin[] = {"status", "reload",    "stop",
                                        "certs",  "upstreams", "metrics"};
    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++) {
        if (strcmp(argv[1], admin[i]) == 0) {
            return moat_cmd_admin(admin[i], argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "moat: unknown command \"%s\" (see moat --help)\n", argv[1]);
    return 2;
}
