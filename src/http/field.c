/*
 * field.c: field lookup (see field.h). A linear scan: heads have a few dozen fields, and the
 * names asked for are known to the caller, so a table would cost more than it saves.
 */
#include "http/field.h"

#include <string.h>
#include <strings.h>

const struct moat_field *moat_field_find(const struct moat_field *f, size_t n,
                                         const char *name_lower)
{
    size_t len = strlen(name_lower);
    for (size_t i = 0; i < n; i++) {
        if (f[i].name.len == len && strncasecmp(f[i].name.p, name_lower, len) == 0) {
            return &f[i];
        }
    }
    return NULL;
}
