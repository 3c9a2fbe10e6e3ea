/* cachedisk.c: see cachedisk.h. */
#include "serve/cachedisk.h"

#include "core/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC[8] = {'M', 'O', 'A', 'T', 'C', 0, 0, 1};

/* The fixed head after the magic and the two checksums. */
struct head {
    int64_t request_time, response_time, age_field, lifetime;
    int32_t status, heuristic;
    uint32_t klen, varylen, vklen, llen;
    uint64_t size;
};

#define HEAD_OFF (sizeof(MAGIC) + 8)
#define MAX_SECTIONS (1u << 20) /* key, vary, vkey and lines together: far above any head */
#define PIECE 65536

void moat_cdisk_name(const char *key, size_t klen, const char *vkey, size_t vklen,
                     char out[MOAT_CDISK_NAME])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, key, klen) == 1 && EVP_DigestUpdate(ctx, "\0", 1) == 1 &&
             (vklen == 0 || EVP_DigestUpdate(ctx, vkey, vklen) == 1) &&
             EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        memset(md, 0, sizeof(md)); /* a name all the same: such an answer is simply shared */
        n = 32;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static uint32_t crc_of(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) {
        uInt piece = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, piece);
        b += piece;
        n -= piece;
    }
    return crc;
}

/* The body's bytes, a piece at a time, into fd and the checksum. */
static int copy_body(int fd, const struct moat_cdisk_rec *r, uint32_t *crc, char *piece)
{
    if (r->body != NULL) {
        *crc = crc_of(*crc, r->body, (size_t)r->size);
        return moat_write_all(fd, r->body, (size_t)r->size);
    }
    for (uint64_t at = 0; at < r->size;) {
        size_t want = r->size - at < PIECE ? (size_t)(r->size - at) : PIECE;
        ssize_t got = pread(r->body_fd, piece, want, (off_t)(r->body_off + at));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return 0;
        }
        *crc = crc_of(*crc, piece, (size_t)got);
        if (!moat_write_all(fd, piece, (size_t)got)) {
            return 0;
        }
        at += (uint64_t)got;
    }
    return 1;
}

moat_rc moat_cdisk_write(const char *dir, const char *name, const struct moat_cdisk_rec *r,
                         uint64_t *bytes, struct moat_err *err)
{
    size_t vl = r->vary != NULL ? strlen(r->vary) : 0;
    if (r->klen + vl + r->vklen + r->llen > MAX_SECTIONS) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "cache: a stored head too large for the disk tier");
    }
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "cache: no random bytes for a temporary file name");
    }
    char tmp[4096], final[4096];
    int tl = snprintf(tmp, sizeof(tmp), "%s/.tmp-%.16s-%02x%02x%02x%02x%02x%02x", dir, name, rnd[0],
                      rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    int fl = snprintf(final, sizeof(final), "%s/%s", dir, name);
    if (tl < 0 || fl < 0 || (size_t)tl >= sizeof(tmp) || (size_t)fl >= sizeof(final)) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "cache: the cache_disk folder's path is too long");
    }
    char *piece = malloc(PIECE);
    if (piece == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory writing to the cache folder");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        free(piece);
        MOAT_FAIL(err, MOAT_E_IO, "cache: cannot create %s: %s", tmp, strerror(e));
    }
    struct head h = {.request_time = r->request_time,
                     .response_time = r->response_time,
                     .age_field = r->age_field,
                     .lifetime = r->lifetime,
                     .status = r->status,
                     .heuristic = r->heuristic,
                     .klen = (uint32_t)r->klen,
                     .varylen = (uint32_t)vl,
                     .vklen = (uint32_t)r->vklen,
                     .llen = (uint32_t)r->llen,
                     .size = r->size};
    uint32_t hcrc = crc_of(0, &h, sizeof(h));
    hcrc = crc_of(hcrc, r->key, r->klen);
    hcrc = crc_of(hcrc, r->vary != NULL ? r->vary : "", vl);
    hcrc = crc_of(hcrc, r->vkey != NULL ? r->vkey : "", r->vklen);
    hcrc = crc_of(hcrc, r->lines, r->llen);
    uint32_t bcrc = 0;
    uint32_t zero = 0;
    /* The body's checksum is known only after it: a placeholder, written over at the end. */
    int ok = moat_write_all(fd, MAGIC, sizeof(MAGIC)) && moat_write_all(fd, &hcrc, 4) &&
             moat_write_all(fd, &zero, 4) && moat_write_all(fd, &h, sizeof(h)) &&
             moat_write_all(fd, r->key, r->klen) && (vl == 0 || moat_write_all(fd, r->vary, vl)) &&
             (r->vklen == 0 || moat_write_all(fd, r->vkey, r->vklen)) &&
             moat_write_all(fd, r->lines, r->llen) && copy_body(fd, r, &bcrc, piece) &&
             pwrite(fd, &bcrc, 4, sizeof(MAGIC) + 4) == 4 && fdatasync(fd) == 0;
    int e = errno;
    free(piece);
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok || rename(tmp, final) != 0) {
        e = ok ? errno : e;
        unlink(tmp);
        MOAT_FAIL(err, MOAT_E_IO, "cache: cannot write %s: %s", final, strerror(e));
    }
    *bytes = HEAD_OFF + sizeof(h) + r->klen + vl + r->vklen + r->llen + r->size;
    return MOAT_RC_OK;
}

moat_rc moat_cdisk_load(const char *dir, const char *name, int body, struct moat_cdisk_loaded *out,
                        struct moat_err *err)
{
    *out = (struct moat_cdisk_loaded){.r.body_fd = -1};
    char path[4096];
    int pl = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (pl < 0 || (size_t)pl >= sizeof(path)) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "cache: the cache_disk folder's path is too long");
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        MOAT_FAIL(err, e == ENOENT ? MOAT_E_NOTFOUND : MOAT_E_IO, "cache: cannot open %s: %s", path,
                  strerror(e));
    }
    struct stat st;
    char magic[8];
    uint32_t crcs[2];
    struct head h;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        bad = "not a regular file";
    } else if (!moat_pread_all(fd, magic, sizeof(magic), 0) ||
               !moat_pread_all(fd, crcs, 8, sizeof(magic)) ||
               !moat_pread_all(fd, &h, sizeof(h), HEAD_OFF)) {
        bad = "shorter than a head";
    } else if (memcmp(magic, MAGIC, sizeof(MAGIC)) != 0) {
        bad = "not a moat cache file of this version";
    }
    uint64_t sections = 0;
    if (bad == NULL) {
        sections = (uint64_t)h.klen + h.varylen + h.vklen + h.llen;
        if (sections > MAX_SECTIONS || h.klen == 0 || h.status < 100 || h.status > 999 ||
            HEAD_OFF + sizeof(h) + sections + h.size != (uint64_t)st.st_size) {
            bad = "its lengths do not add up to its size (cut short?)";
        }
    }
    if (bad == NULL) {
        out->blob = malloc((size_t)sections + 1);
        if (out->blob == NULL) {
            close(fd);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory reading the cache folder");
        }
        if (!moat_pread_all(fd, out->blob, (size_t)sections, HEAD_OFF + sizeof(h))) {
            bad = "unreadable";
        } else {
            uint32_t c = crc_of(0, &h, sizeof(h));
            c = crc_of(c, out->blob, (size_t)sections);
            bad = c == crcs[0] ? NULL : "its head's checksum does not match";
        }
    }
    uint64_t body_off = HEAD_OFF + sizeof(h) + sections;
    if (bad == NULL && body) {
        char *piece = malloc(PIECE);
        uint32_t c = 0;
        for (uint64_t at = 0; piece != NULL && bad == NULL && at < h.size;) {
            size_t want = h.size - at < PIECE ? (size_t)(h.size - at) : PIECE;
            if (!moat_pread_all(fd, piece, want, body_off + at)) {
                bad = "unreadable";
            }
            c = crc_of(c, piece, want);
            at += want;
        }
        if (piece == NULL) {
            free(out->blob);
            close(fd);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory reading the cache folder");
        }
        free(piece);
        if (bad == NULL && c != crcs[1]) {
            bad = "its body's checksum does not match";
        }
    }
    if (bad != NULL) {
        free(out->blob);
        out->blob = NULL;
        close(fd);
        MOAT_FAIL(err, MOAT_E_PEER, "cache: %s is not a whole cache file: %s", path, bad);
    }
    char *p = out->blob;
    out->r = (struct moat_cdisk_rec){.status = h.status,
                                     .heuristic = h.heuristic,
                                     .request_time = h.request_time,
                                     .response_time = h.response_time,
                                     .age_field = h.age_field,
                                     .lifetime = h.lifetime,
                                     .key = p,
                                     .klen = h.klen,
                                     .vklen = h.vklen,
                                     .llen = h.llen,
                                     .size = h.size,
                                     .body_fd = -1,
                                     .body_off = body_off};
    p += h.klen;
    /* The Vary names go last in the blob, NUL-terminated, so the others stay in place. */
    char *vary = p;
    p += h.varylen;
    out->r.vkey = p;
    p += h.vklen;
    out->r.lines = p;
    if (h.varylen > 0) {
        out->vary_own = malloc(h.varylen + 1);
        if (out->vary_own == NULL) {
            free(out->blob);
            out->blob = NULL;
            close(fd);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory reading the cache folder");
        }
        memcpy(out->vary_own, vary, h.varylen);
        out->vary_own[h.varylen] = '\0';
        out->r.vary = out->vary_own;
    }
    out->file_size = (uint64_t)st.st_size;
    if (body) {
        out->r.body_fd = fd;
    } else {
        close(fd);
    }
    return MOAT_RC_OK;
}
