/*
 * cachedisk.h: the HTTP cache's disk tier as files (docs/cache.md): one file per stored answer
 * in the cache folder, named by the SHA-256 of its key and variant, written whole to a temporary
 * file and renamed into place (a reader or a restart sees the old file or the new one, never a
 * part), checked on load (magic, lengths against the file's size, CRC-32 of the head and of the
 * body). No index and no policy here: serve/cache.c keeps which files there are and which go.
 *
 * The layout, integers in the machine's byte order (the folder is this machine's):
 *   "MOATC\0\0\1", u32 crc of what follows up to the body, u32 crc of the body,
 *   i64 request_time, response_time, age_field, lifetime, i32 status, heuristic,
 *   u32 key, vary, vkey, lines lengths, u64 body length; then key, vary, vkey, lines, body.
 */
#ifndef MOAT_SERVE_CACHEDISK_H
#define MOAT_SERVE_CACHEDISK_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define MOAT_CDISK_NAME 65 /* 64 hex digits and the NUL */

struct moat_cdisk_rec {
    int status, heuristic;
    int64_t request_time, response_time, age_field, lifetime;
    const char *key, *vary, *vkey, *lines; /* vary: NUL-terminated or NULL */
    size_t klen, vklen, llen;
    uint64_t size;
    const char *body; /* the body in memory, or */
    int body_fd;      /* in a file (-1: none), from body_off */
    uint64_t body_off;
};

/* The file name of a key and variant key. */
void moat_cdisk_name(const char *key, size_t klen, const char *vkey, size_t vklen,
                     char out[MOAT_CDISK_NAME]);

/* Write the record as dir/name, atomically, 0600. *bytes: the file's size. */
MOAT_MUST_USE moat_rc moat_cdisk_write(const char *dir, const char *name,
                                       const struct moat_cdisk_rec *r, uint64_t *bytes,
                                       struct moat_err *err);

/* A file read back: the record's fields point into `blob` (owned, free() it); the body is
 * [body_off, body_off + size) of fd (owned: close it; -1 when only the head was read). */
struct moat_cdisk_loaded {
    struct moat_cdisk_rec r;
    char *blob;
    char *vary_own; /* r.vary, NUL-terminated (owned: free it); NULL: none */
    uint64_t file_size;
};

/* Read dir/name: its head (always checked), and with `body` the body's checksum too, keeping
 * the file open in r.body_fd. MOAT_E_NOTFOUND when there is no such file, MOAT_E_PEER when it
 * is not a whole, intact cache file (the caller removes it). */
MOAT_MUST_USE moat_rc moat_cdisk_load(const char *dir, const char *name, int body,
                                      struct moat_cdisk_loaded *out, struct moat_err *err);

#endif
