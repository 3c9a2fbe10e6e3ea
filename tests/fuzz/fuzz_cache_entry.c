// fuzz-sources: src/serve/cachedisk.c src/http/*.c src/core/*.c
/*
 * fuzz_cache_entry.c: the disk cache's stored entries as they are read back (serve/cachedisk.c,
 * moat_cdisk_load, then what serve/cache.c's disk_load and the startup scan do with one: the
 * name check, the stored header lines walked, their Cache-Control, ETag and Last-Modified read).
 * A file in the cache folder may be cut short, damaged or written by someone else: it must be
 * refused with MOAT_E_PEER, never read out of bounds.
 *
 * The first input byte: bit 0 writes correct checksums over the rest first (else a fuzzer would
 * rarely get past them), bit 1 reads the body too (its checksum, the file kept open). The rest
 * is the file. Checks: a loaded record's sections lie inside the file and add up to its size.
 */
#include "core/buf.h"
#include "http/cachepolicy.h"
#include "core/httpdate.h"
#include "http/field.h"
#include "serve/cachedisk.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define HEAD_OFF 16 /* magic, two checksums */
#define HEAD_LEN 64 /* the fixed head after them */

static char dir[64];

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Checksums as moat_cdisk_write makes them, over what the file has. */
static void fix_crcs(uint8_t *f, size_t n)
{
    if (n < HEAD_OFF + HEAD_LEN) {
        return;
    }
    const uint8_t *h = f + HEAD_OFF;
    uint64_t sections = (uint64_t)get32(h + 40) + get32(h + 44) + get32(h + 48) + get32(h + 52);
    size_t rest = n - HEAD_OFF - HEAD_LEN;
    size_t sl = sections < rest ? (size_t)sections : rest;
    uint32_t hc = (uint32_t)crc32(0, h, HEAD_LEN);
    hc = (uint32_t)crc32(hc, h + HEAD_LEN, (uInt)sl);
    uint32_t bc = (uint32_t)crc32(0, h + HEAD_LEN + sl, (uInt)(rest - sl));
    memcpy(f + 8, &hc, 4);
    memcpy(f + 12, &bc, 4);
}

static void use_record(const struct moat_cdisk_loaded *L, size_t file_size, int body)
{
    const struct moat_cdisk_rec *r = &L->r;
    CHECK(L->file_size == file_size);
    CHECK(r->klen > 0 && r->status >= 100 && r->status <= 999);
    /* key, vkey and lines point into the blob, in order, and with the body make the file */
    size_t vl = r->vary != NULL ? strlen(r->vary) : 0;
    CHECK(r->key == L->blob);
    CHECK(r->vkey >= r->key + r->klen && r->lines == r->vkey + r->vklen);
    CHECK((uint64_t)HEAD_OFF + HEAD_LEN + r->klen + r->vklen + r->llen + r->size <= file_size);
    CHECK(r->body_off + r->size == file_size);
    CHECK(body ? r->body_fd >= 0 : r->body_fd == -1);
    (void)vl;
    char name[MOAT_CDISK_NAME];
    moat_cdisk_name(r->key, r->klen, r->vkey, r->vklen, name);
    CHECK(strlen(name) == 64);
    /* what the cache reads of the stored head */
    struct moat_buf view = {.base = (char *)r->lines, .cap = r->llen, .rd = 0, .wr = r->llen};
    size_t at = 0, total = 0;
    moat_slice line, fname;
    while (moat_field_lines_next(&view, &at, &line, &fname)) {
        CHECK(line.len > 0 && line.p >= r->lines && line.p + line.len <= r->lines + r->llen);
        CHECK(fname.len <= line.len);
        total += line.len;
    }
    CHECK(total <= r->llen);
    struct moat_cc cc;
    moat_cc_of_lines(&cc, &view);
    moat_slice et = moat_lines_field(&view, "etag");
    CHECK(et.p == NULL || (et.p >= r->lines && et.p + et.len <= r->lines + r->llen));
    moat_slice lm = moat_lines_field(&view, "last-modified");
    time_t t;
    if (lm.p != NULL) {
        (void)moat_ok(moat_httpdate_parse(lm.p, lm.len, &t));
    }
    if (body && r->size > 0 && r->size <= 4096) {
        char b[4096];
        CHECK(pread(r->body_fd, b, (size_t)r->size, (off_t)r->body_off) == (ssize_t)r->size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/moat-fuzz-cache-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            abort();
        }
    }
    uint8_t *f = malloc(size);
    if (f == NULL) {
        return 0;
    }
    size_t n = size - 1;
    memcpy(f, data + 1, n);
    if (data[0] & 1) {
        fix_crcs(f, n);
    }
    static const char name[] = "0000000000000000000000000000000000000000000000000000000000000000";
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (n > 0 && write(fd, f, n) != (ssize_t)n)) {
        abort();
    }
    close(fd);
    free(f);
    int body = (data[0] >> 1) & 1;
    struct moat_cdisk_loaded L;
    struct moat_err err = {0};
    moat_rc rc = moat_cdisk_load(dir, name, body, &L, &err);
    if (moat_ok(rc)) {
        use_record(&L, n, body);
        free(L.blob);
        free(L.vary_own);
        if (L.r.body_fd >= 0) {
            close(L.r.body_fd);
        }
    } else {
        CHECK(rc.kind == MOAT_E_PEER && err.msg[0] != '\0');
        CHECK(L.blob == NULL);
    }
    return 0;
}
