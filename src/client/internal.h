/*
 * internal.h: helpers shared by the files of src/client only.
 */
#ifndef MOAT_CLIENT_INTERNAL_H
#define MOAT_CLIENT_INTERNAL_H

#include "core/err.h"

#include <stddef.h>

/* snprintf for words shown to people, where cutting a long name short is the right outcome
 * (the compiler's truncation warning is about the direct snprintf calls it can see). */
void moat_client__fmt(char *out, size_t outlen, const char *fmt, ...) MOAT_PRINTF(3, 4);
/* `n` bytes of `p` as a new NUL-terminated string (malloc); NULL when out of memory. */
char *moat_client__dup(const char *p, size_t n);
/* Append to a NUL-terminated string, cutting at outlen. */
void moat_client__append(char *out, size_t outlen, const char *fmt, ...) MOAT_PRINTF(3, 4);

#endif
