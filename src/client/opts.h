/*
 * opts.h: the command line shared by `moat get` and `moat trace`, parsed into
 * struct moat_client_opts. Kept in the client module (not in cli/) so both commands parse the
 * same way and the parsing is unit-tested.
 */
#ifndef MOAT_CLIENT_OPTS_H
#define MOAT_CLIENT_OPTS_H

#include "client/get.h"
#include "core/err.h"

/*
 * Parse argv[1..argc) (argv[0] is the subcommand's name). `trace` accepts --json, --resume
 * and --html FILE; `moat get` refuses them as unknown options. Sets *help
 * when --help was asked (nothing else is checked then). Refuses (MOAT_E_USAGE with the words in
 * err) unknown options, missing values, a missing or second URL, bad --resolve, --tls-min or
 * --tls-max values (1.2 or 1.3), a bad --timeout, -d with --data-binary twice, --key without
 * --cert; a --data-binary @FILE that cannot be read fails with the file's error. Strings are
 * borrowed from argv; the body is owned by o (moat_client_opts_clear).
 */
MOAT_MUST_USE moat_rc moat_client_opts_parse(struct moat_client_opts *o, int argc, char **argv,
                                             int trace, int *help, struct moat_err *err);

/* The --help text of `moat get` (trace 0) or `moat trace` (trace 1). */
const char *moat_client_usage(int trace);

#endif
