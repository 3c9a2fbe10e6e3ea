/*
 * field.c: walking header lines (see field.h).
 */
#include "http/field.h"

#include <string.h>

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
