/*
 * field.h: one header or trailer field as every protocol session hands it to handlers: name and
 * value as slices into the session's buffer (HTTP/1: the parsed head; HTTP/2: the decoded
 * header block), valid while the request's head is.
 */
#ifndef MOAT_HTTP_FIELD_H
#define MOAT_HTTP_FIELD_H

#include "core/buf.h"
#include "core/slice.h"

#include <stddef.h>
#include <string.h>

struct moat_field {
    moat_slice name;  /* a token, case as sent (HTTP/2: lower case) */
    moat_slice value; /* leading and trailing SP/HTAB trimmed; may be empty */
};

/* The first field named `name_lower` (ASCII lower case, NUL-terminated), compared without case;
 * NULL when there is none. A linear scan: heads have a few dozen fields. Inline because the
 * name is nearly always a literal: its length and its folded words are then constants, and a
 * field of another length costs one compare. */
static inline const struct moat_field *moat_field_find(const struct moat_field *f, size_t n,
                                                       const char *name_lower)
{
    size_t len = strlen(name_lower);
    for (size_t i = 0; i < n; i++) {
        if (f[i].name.len == len && moat_mem_eq_nocase(f[i].name.p, name_lower, len)) {
            return &f[i];
        }
    }
    return NULL;
}

/* Walk header lines ("Name: value\r\n" each, as handlers write them and trailers are kept) in
 * `lines` (NULL: none). Start with *at = 0; each call gives the next whole line, its CRLF
 * included, and its name (the part before ':', empty when there is no ':'); 0 at the end. */
int moat_field_lines_next(const struct moat_buf *lines, size_t *at, moat_slice *line,
                          moat_slice *name);

#endif
