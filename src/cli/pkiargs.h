/*
 * pkiargs.h: the small argument parser and helpers shared by the certificate commands (`moat
 * key/csr/ca/cert/verify/trust`), so they all read options and report errors the same way.
 *
 * Options are long ("--days 30" or "--days=30"); anything else is a positional argument, and
 * after "--" everything is. -h and --help print the command's usage.
 */
#ifndef MOAT_CLI_PKIARGS_H
#define MOAT_CLI_PKIARGS_H

#include "core/err.h"
#include "pki/ca.h"

#include <stddef.h>

enum moat_cli_argkind {
    MOAT_CLI_FLAG = 0, /* sets *flag to 1 */
    MOAT_CLI_VALUE,    /* sets *value; given twice is a usage error */
    MOAT_CLI_LIST,     /* appends to list (at most max values) */
};

/* One option. Pointers are where the results go. */
struct moat_cli_opt {
    const char *name; /* "--days" */
    enum moat_cli_argkind kind;
    int *flag;
    const char **value;
    const char **list;
    size_t *n;
    size_t max;
};

/*
 * Parse argv[1..argc-1] (argv[0] is the subcommand's own name). Positional arguments go to
 * pos (at most maxpos; *npos counts them). Returns -1 when --help was printed (exit 0), 2 after
 * printing a usage error naming `cmd` (exit 2), 0 otherwise.
 */
int moat_cli_args_parse(const char *cmd, const char *usage, int argc, char **argv,
                        const struct moat_cli_opt *opts, size_t nopts, const char **pos,
                        size_t maxpos, size_t *npos);

/* Print "moat <cmd>: <error in words>" to stderr; returns the exit code for rc (2 for usage and
 * configuration errors, 1 for the rest, 0 for MOAT_OK). */
int moat_cli_fail(const char *cmd, moat_rc rc, const struct moat_err *err);

/* Parse a day count 1..max ("90"); prints a usage error and returns 0 when bad. */
int moat_cli_days(const char *cmd, const char *flag, const char *s, int max, int *out);

/*
 * Open the CA in `dir`, or when `dir` is NULL moat's local CA (moat_ca_default_dir), which is
 * created when missing (as `moat serve` does), saying so on stderr.
 */
MOAT_MUST_USE moat_rc moat_cli_open_ca(const char *dir, struct moat_ca **out, struct moat_err *err);

/* A file prefix from a certificate name: "*.example.com" -> "_wildcard.example.com", other
 * characters unsafe in file names become '_'. Returns buf. */
const char *moat_cli_prefix_for(const char *name, char *buf, size_t n);

#endif
