/*
 * main.c: `moat COMMAND ...`: picks the subcommand, nothing else.
 */
#include "cli/cmd.h"

#include <openssl/opensslv.h>
#include <stdio.h>
#include <string.h>

static const char usage[] = "usage: moat COMMAND [options]\n"
                            "\n"
                            "moat is an HTTPS server and certificate toolkit.\n"
                            "\n"
                            "Commands:\n"
                            "  serve     serve static files over HTTPS (moat serve --help)\n"
                            "  get       fetch a URL over HTTPS, strictly verified (moat get --help)\n"
                            "  trace     show one HTTPS request step by step (moat trace --help)\n"
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
    if (strcmp(argv[1], "get") == 0) {
        return moat_cmd_get(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "trace") == 0) {
        return moat_cmd_trace(argc - 1, argv + 1);
    }
    fprintf(stderr, "moat: unknown command \"%s\" (see moat --help)\n", argv[1]);
    return 2;
}
