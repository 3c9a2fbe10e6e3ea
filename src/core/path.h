/*
 * path.h: turn the path of a request target into the one path the file system will see.
 *
 * The static handler never opens what the client wrote: it opens what this function returns.
 * Decoding happens exactly once and before dot-segments are resolved, so "%2e%2e" is ".." and
 * cannot slip past the check; encoded separators are refused outright because a file name can
 * never contain "/" and a backslash is a separator to too many tools.
 */
#ifndef MOAT_CORE_PATH_H
#define MOAT_CORE_PATH_H

#include "core/err.h"

#include <stddef.h>

/*
 * Percent-decode and normalise the raw origin-form path `in[0..len)` (no query, not decoded).
 *
 * Accepts a path starting with "/". Refuses with MOAT_E_PEER: an empty path or one not starting
 * with "/", a malformed escape ("%", "%4", "%zz"), and, after decoding, NUL, any byte below 0x20,
 * 0x7F, a backslash, an encoded "/" (%2F) or encoded backslash (%5C), and a ".." that would climb
 * above "/" (refused, never clamped). Resolves "." and ".." (RFC 3986 §5.2.4) and collapses
 * runs of "/". Bytes >= 0x80 pass through unchanged (UTF-8 names).
 *
 * The output starts with exactly one "/", contains no "." or ".." segment and no "//", and ends
 * with "/" iff the input did or its last segment was "." or ".." ("/a/b/.." gives "/a/").
 * It is NUL-terminated; *outlen excludes the NUL. The output is never longer than the input, so
 * outcap >= len + 1 always suffices; a smaller buffer that is too small gives MOAT_E_LIMIT.
 * Pure: no allocation, no globals. On failure out holds garbage and *outlen is 0.
 */
MOAT_MUST_USE moat_rc moat_path_normalize(const char *in, size_t len, char *out, size_t outcap,
                                          size_t *outlen);

#endif
