/*
 * mime.h: the Content-Type of a static file, from its file name extension.
 *
 * A fixed table, kept sorted in the source so a lookup is a binary search with no set-up and
 * no allocation; the unit test checks the order. Text types carry "; charset=utf-8" so a
 * browser never has to sniff (sniffing is how an uploaded .txt becomes a script).
 */
#ifndef MOAT_SERVE_MIME_H
#define MOAT_SERVE_MIME_H

#include <stddef.h>

#define MOAT_MIME_DEFAULT "application/octet-stream"

/*
 * The media type for the file named by path[0..len) (a full path or a bare name; NUL not
 * needed). The extension is what follows the last "." of the last segment, compared without
 * regard to ASCII case. A name without an extension, a name whose only dot is its first byte
 * (".env"), or an unknown extension gives MOAT_MIME_DEFAULT. Never NULL; the string is static.
 */
const char *moat_mime_lookup(const char *path, size_t len);

/* Number of entries in the table and the extension at index i (for tests). */
size_t moat_mime__count(void);
const char *moat_mime__ext(size_t i);

#endif
