/*
 * json.h: `moat trace --json`: the same facts as the text diagram, as one JSON document
 * (jansson), for scripts and tests. Field names are stable; docs/client.md describes them.
 */
#ifndef MOAT_CLIENT_JSON_H
#define MOAT_CLIENT_JSON_H

#include "client/get.h"

#include <stdio.h>

/* Write the document for `r` to f, pretty-printed, ending with a newline. Returns 0, or -1 when
 * it could not be built or written. */
int moat_client_json_write(const struct moat_client_result *r, FILE *f);

/* The document as a malloc'ed string (free it), or NULL. */
char *moat_client_json_dump(const struct moat_client_result *r);

#endif
