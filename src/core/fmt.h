/*
 * fmt.h: integers written as text without printf, for the per-request path (response heads,
 * ETags, Content-Range). Each writes no NUL and returns the number of characters.
 */
#ifndef MOAT_CORE_FMT_H
#define MOAT_CORE_FMT_H

#include <stddef.h>
#include <stdint.h>

#define MOAT_FMT_DEC_MAX 20 /* digits of UINT64_MAX */
#define MOAT_FMT_HEX_MAX 16

/* v in decimal at out (room for MOAT_FMT_DEC_MAX characters). */
size_t moat_fmt_dec(char *out, uint64_t v);
/* v in lower-case hexadecimal at out (room for MOAT_FMT_HEX_MAX characters). */
size_t moat_fmt_hex(char *out, uint64_t v);

#endif
