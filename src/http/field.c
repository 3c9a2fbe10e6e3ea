/*
 * field.c: field lookup (see field.h). A linear scan: heads have a few dozen fields, and the
 * names asked for are known to the caller, so a table would cost more than it saves.
 */
#include "http/field.h"

#include <string.h>

const struct moat_field *moat_field_find(const struct moat_field *f, size_t n,
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

int moat_field_lines_next(const struct moat_buf *lines, size_t *at, moat_slice *line,
                          moat_slice *name)
{
    if (lines == NULL || *at >= moat_buf_len(lines)) {
        return 0;
    }
    const char *p = moat_buf_rdptr(lines) + *at;
    size_t left = moat_buf_len(lines) - *at;
    const char *eol = memchr(p, '\n', left);
    size_t n = eol != NULL ? (size_t)(eol - p) + 1 : left;
    const char *colon = memchr(p, ':', n);
    *line = moat_slice_of(p, n);
    *name = moat_slice_of(p, colon != NULL ? (size_t)(colon - p) : 0);
    *at += n;
    return 1;
}
