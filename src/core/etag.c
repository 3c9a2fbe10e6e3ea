/*
 * etag.c: entity-tag lists of conditional requests (see etag.h).
 */
#include "core/etag.h"

#include <string.h>

/*
 * Does the If-None-Match list hold our ETag? RFC 9110 §13.1.2: weak comparison,
 * so "W/" is ignored; "*" matches any current representation. A malformed list
 * matches nothing (the condition then just fails to short-cut, which is always
 * safe: the full answer goes out).
 */
int moat_etag_list_match(moat_slice v, const char *etag, size_t elen, int weak)
{
    size_t i = 0;
    for (;;) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) {
            i++;
        }
        if (i >= v.len) {
            return 0;
        }
        if (v.p[i] == '*') {
            return 1;
        }
        int is_weak = 0;
        if (v.len - i >= 2 && v.p[i] == 'W' && v.p[i + 1] == '/') {
            is_weak = 1;
            i += 2;
        }
        if (i >= v.len || v.p[i] != '"') {
            return 0;
        }
        const char *close_q = memchr(v.p + i + 1, '"', v.len - i - 1);
        if (close_q == NULL) {
            return 0;
        }
        size_t tl = (size_t)(close_q - (v.p + i)) + 1;
        if ((weak || !is_weak) && tl == elen && memcmp(v.p + i, etag, elen) == 0) {
            return 1;
        }
        i += tl;
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t')) {
            i++;
        }
        if (i < v.len && v.p[i] != ',') {
            return 0;
        }
    }
}
