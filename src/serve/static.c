/*
 * static.c: the static file handler (see static.h).
 *
 * Order of work for one request: method, then the path is decoded and
 * normalised (400 when that fails), hidden names are refused (404), the file is
 * opened beneath the root with openat2 (403/404 when that fails), and only then
 * do validators, conditionals and ranges come into play (RFC 9110 §13.2.2 gives
 * their order). Everything the client can influence that ends up in a header
 * (Location, the listing's links) is re-encoded from the normalised path, never
 * copied from the request.
 */
#include "serve/static.h"

#include "http/exchange.h"
#include "http/status.h"

#include "core/etag.h"
#include "core/fmt.h"

#include "core/httpdate.h"
#include "core/path.h"
#include "http/method.h"
#include "http/range.h"
#include "serve/encode.h"
#include "serve/filecache.h"
#include "serve/mime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Longer decoded paths cannot name a file (PATH_MAX). */
#define PATH_CAP 4096
/* A listing stops here; a directory this large is not something to render as
 * one page. */
#define LISTING_MAX 10000
/* FIFOs must not block the worker at open, ttys must not become our controlling
 * terminal. */
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
/* openat2 retries when a concurrent rename made the kernel unsure about ".."
 * (EAGAIN). */
#define OPENAT2_TRIES 4

#define ALLOW_LINE "Allow: GET, HEAD, OPTIONS\r\n"
#define HTML_TYPE_LINE "Content-Type: text/html; charset=utf-8\r\n"

/* Set once the kernel answered ENOSYS (or by tests); read and written with
 * relaxed atomics because any worker may be the first to find out. */
static atomic_int use_fallback;

void moat_static__force_fallback(int on)
{
    atomic_store_explicit(&use_fallback, on != 0, memory_order_relaxed);
}

/* ---- small writers: no printf on the per-request path ---- */

#define PUT_LIT(b, lit) moat_buf_append((b), (lit), sizeof(lit) - 1)

static moat_rc put_str(struct moat_buf *b, const char *s)
{
    return moat_buf_append(b, s, strlen(s));
}

static moat_rc put_dec(struct moat_buf *b, uint64_t v)
{
    char tmp[20];
    return moat_buf_append(b, tmp, moat_fmt_dec(tmp, v));
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Percent-encode everything but unreserved bytes (RFC 3986 §2.3) and, when
 * keep_slash, "/". A ":" is encoded too, so a file named "javascript:x" cannot
 * become a scheme in an href. */
static moat_rc put_url(struct moat_buf *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            MOAT_TRY(moat_buf_append(b, &s[i], 1));
            continue;
        }
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        MOAT_TRY(moat_buf_append(b, esc, 3));
    }
    return MOAT_RC_OK;
}

/* The query goes back as the client sent it, except that anything that is not a visible
 * ASCII byte is percent-encoded: the parser should have refused those, but a header line is
 * no place to trust that (CR LF here would be response splitting). */
static moat_rc put_query(struct moat_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7F) {
            MOAT_TRY(moat_buf_append(b, &s[i], 1));
            continue;
        }
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        MOAT_TRY(moat_buf_append(b, esc, 3));
    }
    return MOAT_RC_OK;
}

static moat_rc put_html(struct moat_buf *b, const char *s, size_t n)
{
    size_t run = 0; /* bytes since the last escaped one, appended in one go */
    for (size_t i = 0; i < n; i++) {
        const char *ent = NULL;
        switch (s[i]) {
        case '&':
            ent = "&amp;";
            break;
        case '<':
            ent = "&lt;";
            break;
        case '>':
            ent = "&gt;";
            break;
        case '"':
            ent = "&quot;";
            break;
        case '\'':
            ent = "&#39;";
            break;
        default:
            break;
        }
        if (ent == NULL) {
            continue;
        }
        MOAT_TRY(moat_buf_append(b, s + run, i - run));
        MOAT_TRY(put_str(b, ent));
        run = i + 1;
    }
    return moat_buf_append(b, s + run, n - run);
}

/* ---- answers without a file ---- */

/* A small fixed page: status and reason only, never the path (it may be an
 * attacker's string, and the file system layout is nobody's business). */
static moat_rc error_page(struct moat_res *res, struct moat_buf *hdrs, struct moat_buf *body,
                          int status)
{
    return moat_res_error_page(res, status, hdrs, body);
}

/* Close what we opened, then answer with a page. */
static moat_rc close_and_page(int fd, struct moat_res *res, struct moat_buf *hdrs,
                              struct moat_buf *body, int status)
{
    close(fd);
    return error_page(res, hdrs, body, status);
}

static int status_of_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    case EXDEV:  /* RESOLVE_BENEATH: the path (through a symlink) leaves the root
                  */
    case ELOOP:  /* a magic link, too many links, or any link in the fallback walk
                  */
    case EACCES: /* permissions: the operator did not mean it to be served */
    case EPERM:
    case ENXIO:  /* a Unix socket */
    case ENODEV: /* a device without a driver */
        return 403;
    default:
        return 500;
    }
}

/* ---- opening beneath the root ---- */

/*
 * The fallback when openat2 is missing (Linux < 5.6): walk one component at a
 * time from the root with O_NOFOLLOW, so no symbolic link is ever followed,
 * inside the root or not. `rel` is normalised (no "." / ".." / empty segments)
 * and may end with "/". Returns an fd or -errno.
 */
static int open_walk(int root_fd, const char *rel, int flags)
{
    if (strcmp(rel, ".") == 0) {
        int fd = openat(root_fd, ".", flags);
        return fd >= 0 ? fd : -errno;
    }
    char name[PATH_CAP];
    size_t n = strlen(rel);
    if (n >= sizeof(name)) {
        return -ENAMETOOLONG;
    }
    memcpy(name, rel, n + 1);
    int trailing_slash = n > 0 && name[n - 1] == '/';
    if (trailing_slash) {
        name[--n] = '\0';
    }
    int cur = root_fd;
    size_t i = 0;
    for (;;) {
        char *seg = name + i;
        char *slash = strchr(seg, '/');
        if (slash == NULL) {
            /* Last component: O_NOFOLLOW makes a symlink ELOOP. */
            int fl = flags | O_NOFOLLOW | (trailing_slash ? O_DIRECTORY : 0);
            int fd = openat(cur, seg, fl);
            int e = errno;
            struct stat lst;
            /* With O_DIRECTORY a symlink fails as ENOTDIR; name it for what it is. */
            if (fd < 0 && e == ENOTDIR && fstatat(cur, seg, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISLNK(lst.st_mode)) {
                e = ELOOP;
            }
            if (cur != root_fd) {
                close(cur);
            }
            return fd >= 0 ? fd : -e;
        }
        *slash = '\0';
        /* O_PATH|O_NOFOLLOW opens a symlink itself instead of failing; fstat tells.
         */
        int fd = openat(cur, seg, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != root_fd) {
            close(cur);
        }
        if (fd < 0) {
            return -e;
        }
        struct stat st;
        if (fstat(fd, &st) != 0) {
            e = errno;
            close(fd);
            return -e;
        }
        if (!S_ISDIR(st.st_mode)) {
            close(fd);
            return S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
        }
        cur = fd;
        i = (size_t)(slash - name) + 1;
    }
}

/* Open `rel` (normalised, relative, "." for the root) beneath root_fd. Returns
 * fd or -errno. */
static int open_beneath(int root_fd, const char *rel)
{
    if (!atomic_load_explicit(&use_fallback, memory_order_relaxed)) {
        /* RESOLVE_BENEATH refuses ".." and absolute symlinks that leave the root,
         * and symlinks inside the root still work; RESOLVE_NO_MAGICLINKS refuses
         * /proc links. */
        struct open_how how = {
            .flags = OPEN_FLAGS,
            .mode = 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        for (int t = 0; t < OPENAT2_TRIES; t++) {
            long fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof(how));
            if (fd >= 0) {
                return (int)fd;
            }
            if (errno == EAGAIN) {
                continue;
            }
            if (errno != ENOSYS) {
                return -errno;
            }
            atomic_store_explicit(&use_fallback, 1, memory_order_relaxed);
            break;
        }
        if (!atomic_load_explicit(&use_fallback, memory_order_relaxed)) {
            return -EAGAIN;
        }
    }
    return open_walk(root_fd, rel, OPEN_FLAGS);
}

/* Any segment starting with "." is hidden (.git, .env, .htpasswd left in a
 * root), except the first segment ".well-known" (RFC 8615: ACME challenges,
 * security.txt). */
static int is_hidden(const char *p, size_t n)
{
    static const char wk[] = "/.well-known";
    size_t wkn = sizeof(wk) - 1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '/' || p[i + 1] != '.') {
            continue;
        }
        if (i == 0 && n >= wkn && memcmp(p, wk, wkn) == 0 && (n == wkn || p[wkn] == '/')) {
            continue;
        }
        return 1;
    }
    return 0;
}

/* ---- validators, conditionals, ranges ---- */

/* Strong ETag "<inode>-<size>-<mtime ns>" in hex, quoted. Changes when the file
 * is replaced (inode), truncated or appended to (size), or rewritten in place
 * (mtime, nanoseconds). */
/* One bijective 64-bit mix (MurmurHash3's finalizer): every bit of x reaches every bit out. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

/* A strong validator for the file as it is: its inode, size and modification time (ns) mixed
 * into 64 bits, in hex between quotes. Each step is a bijection, so a change of any one of the
 * three (an edit, a touch, a replacement by rename) always changes it; only several at once can
 * meet, with odds of 2^-64. It no longer shows the inode number (the disclosure of Apache's
 * CVE-2003-1418), and at 18 bytes instead of up to 53 it costs less on every answer: HPACK
 * never indexes an ETag, so HTTP/2 Huffman-codes it each time (bench/README.md, finding 22). */
static size_t make_etag(char *out, const struct stat *st)
{
    uint64_t ns =
        (uint64_t)st->st_mtim.tv_sec * UINT64_C(1000000000) + (uint64_t)st->st_mtim.tv_nsec;
    uint64_t h = mix64(mix64(mix64((uint64_t)st->st_ino) ^ (uint64_t)st->st_size) ^ ns);
    size_t n = 0;
    out[n++] = '"';
    n += moat_fmt_hex(out + n, h);
    out[n++] = '"';
    return n;
}

/* ---- the answers with a file ---- */

static moat_rc put_validators(struct moat_buf *hdrs, const char *etag, size_t elen,
                              const char *lmstr)
{
    MOAT_TRY(PUT_LIT(hdrs, "ETag: "));
    MOAT_TRY(moat_buf_append(hdrs, etag, elen));
    MOAT_TRY(PUT_LIT(hdrs, "\r\n"));
    if (lmstr != NULL) {
        MOAT_TRY(PUT_LIT(hdrs, "Last-Modified: "));
        MOAT_TRY(moat_buf_append(hdrs, lmstr, MOAT_HTTPDATE_LEN));
        MOAT_TRY(PUT_LIT(hdrs, "\r\n"));
    }
    return MOAT_RC_OK;
}

/* A file's validators and type: from `st` and `name`, or kept from an earlier answer (an
 * entry of the file cache). */
static void file_meta(struct moat_fcache_meta *m, const struct stat *st, const char *name,
                      size_t nlen, time_t lm, int clamped)
{
    m->etag_len = (unsigned char)make_etag(m->etag, st);
    if (!moat_ok(moat_httpdate_format(lm, m->last_modified, sizeof(m->last_modified)))) {
        m->last_modified[0] = '\0';
    }
    m->type = moat_mime_lookup(name, nlen);
    m->ready = !clamped; /* a clamped date moves with the clock: made again each time */
}

/* Serve the regular file `fd` named `name`; fd is consumed: handed to the answer or let go
 * (closed, or given back to its cache by `release`). `m`: the file's metadata, filled here
 * unless it is ready. */
/* The precompressed sibling of `name` for coding c ("name.br"), if it is a regular file no
 * older than the file itself (else it was not made again when the file changed): its fd and
 * stat, else -1. */
static int open_sibling(const struct moat_static_site *site, const char *name, size_t nlen,
                        enum moat_coding c, const struct stat *of, struct stat *sst)
{
    const char *suffix = moat_coding_suffix(c);
    size_t sl = strlen(suffix);
    char sp[PATH_CAP];
    if (nlen + sl >= sizeof(sp)) {
        return -1;
    }
    memcpy(sp, name, nlen);
    memcpy(sp + nlen, suffix, sl + 1);
    int fd = open_beneath(site->root_fd, sp + 1);
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, sst) != 0 || !S_ISREG(sst->st_mode) || sst->st_mtim.tv_sec < of->st_mtim.tv_sec ||
        (sst->st_mtim.tv_sec == of->st_mtim.tv_sec && sst->st_mtim.tv_nsec < of->st_mtim.tv_nsec)) {
        close(fd);
        return -1;
    }
    return fd;
}

static moat_rc serve_file(const struct moat_static_site *site, const struct moat_encode_want *want,
                          const struct moat_req *req, struct moat_res *res, struct moat_buf *hdrs,
                          struct moat_buf *body, int fd, const struct stat *st, const char *name,
                          size_t nlen, void (*release)(void *h), void *h, const char *bytes,
                          struct moat_fcache_meta *m)
{
    /* RFC 9110 §8.8.2.1: never claim a modification later than the response's Date. */
    time_t lm = st->st_mtim.tv_sec;
    int clamped = req->now > 0 && lm > req->now;
    if (clamped) {
        lm = req->now;
    }
    if (!m->ready) {
        file_meta(m, st, name, nlen, lm, clamped);
    }
    const char *etag = m->etag;
    size_t elen = m->etag_len;
    int lm_ok = m->last_modified[0] != '\0';
    const char *lmstr = lm_ok ? m->last_modified : NULL;

    /* Compression (serve/encode.h): an answer that could be compressed varies with
     * Accept-Encoding whatever this client takes; a range never is (its bytes are the
     * identity's). Each coding is a representation of its own, with its own ETag. */
    moat_slice range = moat_req_field(req, "range");
    int varies = want != NULL && want->site != NULL &&
                 moat_encode_type_ok(want->site, m->type, strlen(m->type)) &&
                 (uint64_t)st->st_size >= moat_encode_min(want->site);
    enum moat_coding coding = varies && range.len == 0 ? want->coding : MOAT_CODING_IDENTITY;
    int sib = -1;
    struct stat sst;
    char cetag[80];
    if (coding != MOAT_CODING_IDENTITY) {
        char setag[64];
        const char *base = etag;
        size_t blen = elen;
        if (moat_encode_precompressed(want->site)) {
            sib = open_sibling(site, name, nlen, coding, st, &sst);
            if (sib >= 0) {
                blen = make_etag(setag, &sst);
                base = setag;
            }
        }
        size_t cl = moat_encode_etag(base, blen, coding, cetag, sizeof(cetag));
        if (cl > 0) {
            etag = cetag;
            elen = cl;
        } else {
            coding = MOAT_CODING_IDENTITY;
            if (sib >= 0) {
                close(sib);
                sib = -1;
            }
        }
    }

    /* RFC 9110 §13.2.2 steps 3 and 4; GET and HEAD only reach here.
     * If-Modified-Since is ignored when If-None-Match is present (§13.1.3) or
     * when it is not a valid date. */
    int not_modified = 0;
    moat_slice inm = moat_req_field(req, "if-none-match");
    moat_slice ims_raw = moat_req_field(req, "if-modified-since");
    if (inm.len > 0) {
        not_modified = moat_etag_list_match(inm, etag, elen, 1);
    } else if (ims_raw.len > 0 && lm_ok) {
        moat_slice ims = moat_slice_trim_ows(ims_raw);
        time_t t;
        if (moat_ok(moat_httpdate_parse(ims.p, ims.len, &t))) {
            not_modified = lm <= t;
        }
    }
    if (not_modified) {
        moat_res_file_done(fd, release, h);
        if (sib >= 0) {
            close(sib);
        }
        res->status = 304;
        res->fd = -1;
        res->offset = res->length = 0;
        MOAT_TRY(put_validators(hdrs, etag, elen, lmstr));
        return varies ? PUT_LIT(hdrs, "Vary: Accept-Encoding\r\n") : MOAT_RC_OK;
    }

    uint64_t size = (uint64_t)st->st_size;
    uint64_t first = 0, last = 0;
    enum moat_range rr = MOAT_RANGE_IGNORE;
    /* §14.2: GET is the only method range handling is defined for. */
    if (req->method_id == MOAT_HTTP_M_GET && range.len > 0 &&
        moat_if_range_holds(moat_req_field(req, "if-range"), etag, elen, lm, lm_ok, req->now)) {
        rr = moat_range_parse(range, size, &first, &last);
    }
    if (rr == MOAT_RANGE_UNSATISFIABLE) {
        if (varies) {
            MOAT_TRY(PUT_LIT(hdrs, "Vary: Accept-Encoding\r\n"));
        }
        MOAT_TRY(PUT_LIT(hdrs, "Accept-Ranges: bytes\r\nContent-Range: bytes */"));
        MOAT_TRY(put_dec(hdrs, size));
        MOAT_TRY(PUT_LIT(hdrs, "\r\n"));
        moat_res_file_done(fd, release, h);
        return error_page(res, hdrs, body, 416);
    }

    /* From here the fd belongs to the answer; on a buffer failure, close it
     * ourselves. */
    moat_rc rc;
    do {
        rc = PUT_LIT(hdrs, "Content-Type: ");
        if (!moat_ok(rc)) {
            break;
        }
        rc = put_str(hdrs, m->type);
        if (!moat_ok(rc)) {
            break;
        }
        rc = PUT_LIT(hdrs, "\r\nAccept-Ranges: bytes\r\n");
        if (!moat_ok(rc)) {
            break;
        }
        rc = put_validators(hdrs, etag, elen, lmstr);
        if (moat_ok(rc) && varies) {
            rc = PUT_LIT(hdrs, "Vary: Accept-Encoding\r\n");
        }
        if (moat_ok(rc) && coding != MOAT_CODING_IDENTITY) {
            rc = moat_buf_printf(hdrs, "Content-Encoding: %s\r\n", moat_coding_name(coding));
        }
        if (!moat_ok(rc) || rr != MOAT_RANGE_PARTIAL) {
            break;
        }
        char line[96];
        size_t n = 0;
        memcpy(line, "Content-Range: bytes ", 21);
        n = 21;
        n += moat_fmt_dec(line + n, first);
        line[n++] = '-';
        n += moat_fmt_dec(line + n, last);
        line[n++] = '/';
        n += moat_fmt_dec(line + n, size);
        line[n++] = '\r';
        line[n++] = '\n';
        rc = moat_buf_append(hdrs, line, n);
    } while (0);
    if (!moat_ok(rc)) {
        moat_res_file_done(fd, release, h);
        if (sib >= 0) {
            close(sib);
        }
        res->fd = -1;
        return rc;
    }
    if (sib >= 0) { /* the sibling is the answer: the file itself is not needed */
        moat_res_file_done(fd, release, h);
        fd = sib;
        release = NULL;
        h = NULL;
        bytes = NULL;
        size = (uint64_t)sst.st_size;
    } else if (coding != MOAT_CODING_IDENTITY) {
        res->status = 200;
        if (bytes != NULL) { /* a small file in memory: compressed whole, its length known */
            res->fd = -1;
            size_t before = moat_buf_len(body);
            rc = moat_encode_bytes(want, bytes, (size_t)size, body);
            res->has_generated_body = 1;
            res->length = moat_buf_len(body) - before;
            moat_res_file_done(fd, release, h);
            return rc;
        }
        rc = moat_encode_file(want, req, res, hdrs, fd, size, release, h);
        if (!moat_ok(rc)) {
            moat_res_file_done(fd, release, h);
        }
        return rc;
    }
    res->has_generated_body = 0;
    if (rr == MOAT_RANGE_PARTIAL) {
        res->status = 206;
        res->offset = first;
        res->length = last - first + 1;
    } else {
        res->status = 200;
        res->offset = 0;
        res->length = size;
    }
    /* HEAD: the caller needs the length, not the file. A small cached file's bytes are in
     * memory: the answer points at them, holding the cache's entry until the session has
     * copied them into its output (one copy, where a generated body takes two or three). */
    if (bytes != NULL && req->method_id != MOAT_HTTP_M_HEAD && release != NULL) {
        res->bytes = bytes + res->offset;
        res->offset = 0;
        res->fd = -1;
        res->fd_release = release;
        res->fd_h = h;
        return MOAT_RC_OK;
    }
    if (req->method_id == MOAT_HTTP_M_HEAD || bytes != NULL) {
        if (req->method_id != MOAT_HTTP_M_HEAD) {
            rc = moat_buf_append(body, bytes + res->offset, (size_t)res->length);
            res->has_generated_body = 1;
        }
        moat_res_file_done(fd, release, h);
        res->fd = -1;
        res->offset = 0;
        return rc;
    }
    res->fd_release = release;
    res->fd_h = h;
    res->fd = fd;
    return MOAT_RC_OK;
}

/* ---- directories ---- */

struct entry {
    char *name; /* owned */
    uint64_t size;
    int is_dir;
    int is_link;
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* A name the path normaliser would refuse can never be fetched: do not list it.
 */
static int name_listable(const char *s)
{
    if (s[0] == '.') {
        return 0;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7F || c == '\\') {
            return 0;
        }
    }
    return 1;
}

static void entries_free(struct entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
    }
    free(v);
}

/* Read, filter and sort the entries of `dfd` (consumed). Returns 0, or -1 with
 * errno set. */
static int read_entries(int dfd, struct entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int e = errno;
        close(dfd);
        errno = e;
        return -1;
    }
    struct entry *v = NULL;
    size_t n = 0, cap = 0;
    int ret = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                ret = -1;
            }
            break;
        }
        if (!name_listable(de->d_name)) {
            continue;
        }
        if (n == LISTING_MAX) {
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct entry *nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL) {
                ret = -1;
                errno = ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        /* AT_SYMLINK_NOFOLLOW: never stat through a link (it may point outside the
         * root, and even its target's size is not ours to show). */
        struct stat st;
        struct entry en = {0};
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            en.is_dir = S_ISDIR(st.st_mode);
            en.is_link = S_ISLNK(st.st_mode);
            en.size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        }
        en.name = strdup(de->d_name);
        if (en.name == NULL) {
            ret = -1;
            errno = ENOMEM;
            break;
        }
        v[n++] = en;
    }
    int e = errno;
    closedir(d);
    if (ret != 0) {
        entries_free(v, n);
        errno = e;
        return -1;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), entry_cmp);
    }
    *out = v;
    *count = n;
    return 0;
}

static moat_rc write_listing(struct moat_buf *b, const char *dir, size_t dlen,
                             const struct entry *v, size_t n)
{
    MOAT_TRY(PUT_LIT(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of "));
    MOAT_TRY(put_html(b, dir, dlen));
    MOAT_TRY(PUT_LIT(b, "</title></head>\n<body><h1>Index of "));
    MOAT_TRY(put_html(b, dir, dlen));
    MOAT_TRY(PUT_LIT(b, "</h1>\n<table>\n"));
    if (dlen > 1) {
        MOAT_TRY(PUT_LIT(b, "<tr><td><a href=\"../\">../</a></td><td></td></tr>\n"));
    }
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(v[i].name);
        /* "./" first: even an encoded name can never be read as a scheme or a host.
         */
        MOAT_TRY(PUT_LIT(b, "<tr><td><a href=\"./"));
        MOAT_TRY(put_url(b, v[i].name, nl, 0));
        if (v[i].is_dir) {
            MOAT_TRY(PUT_LIT(b, "/"));
        }
        MOAT_TRY(PUT_LIT(b, "\">"));
        MOAT_TRY(put_html(b, v[i].name, nl));
        if (v[i].is_dir) {
            MOAT_TRY(PUT_LIT(b, "/"));
        }
        MOAT_TRY(PUT_LIT(b, "</a></td><td>"));
        if (v[i].is_dir || v[i].is_link) {
            MOAT_TRY(PUT_LIT(b, "-"));
        } else {
            MOAT_TRY(put_dec(b, v[i].size));
        }
        MOAT_TRY(PUT_LIT(b, "</td></tr>\n"));
    }
    return PUT_LIT(b, "</table>\n</body></html>\n");
}

static moat_rc serve_listing(struct moat_res *res, struct moat_buf *hdrs, struct moat_buf *body,
                             int dfd, const char *dir, size_t dlen)
{
    struct entry *v;
    size_t n;
    if (read_entries(dfd, &v, &n) != 0) {
        return error_page(res, hdrs, body, 500);
    }
    size_t before = moat_buf_len(body);
    moat_rc rc = write_listing(body, dir, dlen, v, n);
    entries_free(v, n);
    MOAT_TRY(rc);
    MOAT_TRY(PUT_LIT(hdrs, HTML_TYPE_LINE));
    res->status = 200;
    res->fd = -1;
    res->offset = 0;
    res->length = moat_buf_len(body) - before;
    res->has_generated_body = 1;
    return MOAT_RC_OK;
}

/* The path of a directory's index: `norm` (ending in "/") and the site's index name, into
 * out[PATH_CAP]; its length, or 0 when the site has no index or the path would not fit. */
static size_t index_path(const struct moat_static_site *site, const char *norm, size_t nlen,
                         char *out)
{
    if (site->index == NULL || site->index[0] == '\0') {
        return 0;
    }
    size_t il = strlen(site->index);
    if (nlen + il >= PATH_CAP) {
        return 0;
    }
    memcpy(out, norm, nlen);
    memcpy(out + nlen, site->index, il + 1);
    return nlen + il;
}

/* `dfd` is the directory named by norm (consumed). The index it serves goes into the cache
 * (when given) under its own path, where the next request for the directory finds it. */
static moat_rc serve_dir(const struct moat_static_site *site, struct moat_fcache *cache,
                         uint64_t now_ms, const struct moat_encode_want *want,
                         const struct moat_req *req, struct moat_res *res, struct moat_buf *hdrs,
                         struct moat_buf *body, int dfd, const char *norm, size_t nlen)
{
    if (norm[nlen - 1] != '/') {
        /* Relative links inside an index only work below a URL ending in "/".
         * Location is re-encoded from the normalised path, not echoed: it starts
         * with exactly one "/", so "//evil.example/" can never become a
         * protocol-relative redirect. */
        close(dfd);
        MOAT_TRY(PUT_LIT(hdrs, "Location: "));
        MOAT_TRY(put_url(hdrs, norm, nlen, 1));
        MOAT_TRY(PUT_LIT(hdrs, "/"));
        if (req->query.len > 0) {
            MOAT_TRY(PUT_LIT(hdrs, "?"));
            MOAT_TRY(put_query(hdrs, req->query.p, req->query.len));
        }
        MOAT_TRY(PUT_LIT(hdrs, "\r\n"));
        return error_page(res, hdrs, body, 301);
    }
    char ipath[PATH_CAP];
    size_t ilen = index_path(site, norm, nlen, ipath);
    if (ilen > 0) {
        int ifd = open_beneath(site->root_fd, ipath + 1);
        if (ifd >= 0) {
            struct stat st;
            if (fstat(ifd, &st) == 0 && S_ISREG(st.st_mode)) {
                close(dfd);
                struct moat_fcache_entry *e =
                    cache != NULL ? moat_fcache_put(cache, site->cache_key, ipath + 1, ilen - 1,
                                                    ifd, &st, now_ms)
                                  : NULL;
                if (e != NULL) {
                    return serve_file(site, want, req, res, hdrs, body, e->fd, &e->st, ipath, ilen,
                                      moat_fcache_release, e, e->bytes, &e->meta);
                }
                struct moat_fcache_meta m = {0};
                return serve_file(site, want, req, res, hdrs, body, ifd, &st, ipath, ilen, NULL,
                                  NULL, NULL, &m);
            }
            close(ifd);
        } else if (ifd != -ENOENT) {
            /* An index that exists but may not be read (a link out of the root...)
             * is not silently replaced by a listing. */
            return close_and_page(dfd, res, hdrs, body, status_of_errno(-ifd));
        }
    }
    if (!site->listing) {
        return close_and_page(dfd, res, hdrs, body, 403);
    }
    return serve_listing(res, hdrs, body, dfd, norm, nlen);
}

moat_rc moat_static_handle(const struct moat_static_site *site, const struct moat_req *req,
                           struct moat_res *res, struct moat_buf *hdrs, struct moat_buf *body)
{
    return moat_static_handle_cached(site, NULL, 0, NULL, req, res, hdrs, body);
}

moat_rc moat_static_handle_cached(const struct moat_static_site *site, struct moat_fcache *cache,
                                  uint64_t now_ms, const struct moat_encode_want *want,
                                  const struct moat_req *req, struct moat_res *res,
                                  struct moat_buf *hdrs, struct moat_buf *body)
{
    MOAT_ENSURE(site != NULL && req != NULL && res != NULL && hdrs != NULL && body != NULL,
                MOAT_E_INTERNAL);
    *res = (struct moat_res){.status = 500, .fd = -1};

    switch (req->method_id) {
    case MOAT_HTTP_M_GET:
    case MOAT_HTTP_M_HEAD:
        break;
    case MOAT_HTTP_M_OPTIONS:
        res->status = 204;
        return PUT_LIT(hdrs, ALLOW_LINE);
    default:
        /* RFC 9110 §15.5.6: a 405 must list the allowed methods. */
        MOAT_TRY(PUT_LIT(hdrs, ALLOW_LINE));
        return error_page(res, hdrs, body, 405);
    }

    if (req->npath_rc.kind == MOAT_E_LIMIT || req->npath.len >= PATH_CAP) {
        return error_page(res, hdrs, body, 404); /* longer than any name the kernel takes */
    }
    if (req->npath.p == NULL) {
        return error_page(res, hdrs, body, 400);
    }
    const char *norm = req->npath.p; /* NUL-terminated */
    size_t nlen = req->npath.len;
    if (is_hidden(norm, nlen)) {
        return error_page(res, hdrs, body, 404);
    }

    /* A file asked for before: no open, no stat (filecache.h says how it stays fresh). The
     * checks above (method, normalisation, hidden names) ran as for any request. */
    struct moat_fcache_entry *e = NULL;
    if (cache != NULL && norm[nlen - 1] == '/') {
        /* A directory: its index, if the cache has it. Finding "dir/index.html" fresh says
         * as much as opening "dir" and then the index would (the cache re-checks that very
         * path); anything else (no index yet, a listing, a redirect) goes the long way. */
        char ipath[PATH_CAP];
        size_t ilen = index_path(site, norm, nlen, ipath);
        e = ilen > 0 ? moat_fcache_get(cache, site->cache_key, site->root_fd, ipath + 1, ilen - 1,
                                       now_ms)
                     : NULL;
        if (e != NULL) {
            return serve_file(site, want, req, res, hdrs, body, e->fd, &e->st, ipath, ilen,
                              moat_fcache_release, e, e->bytes, &e->meta);
        }
    } else if (cache != NULL) {
        e = moat_fcache_get(cache, site->cache_key, site->root_fd, norm + 1, nlen - 1, now_ms);
        if (e != NULL) {
            return serve_file(site, want, req, res, hdrs, body, e->fd, &e->st, norm, nlen,
                              moat_fcache_release, e, e->bytes, &e->meta);
        }
    }
    int fd = open_beneath(site->root_fd, nlen == 1 ? "." : norm + 1);
    if (fd < 0) {
        return error_page(res, hdrs, body, status_of_errno(-fd));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return close_and_page(fd, res, hdrs, body, 500);
    }
    if (S_ISDIR(st.st_mode)) {
        return serve_dir(site, cache, now_ms, want, req, res, hdrs, body, fd, norm, nlen);
    }
    /* FIFOs, sockets, devices: nothing a web root should hand out. */
    if (!S_ISREG(st.st_mode)) {
        return close_and_page(fd, res, hdrs, body, 403);
    }
    e = cache != NULL ? moat_fcache_put(cache, site->cache_key, norm + 1, nlen - 1, fd, &st, now_ms)
                      : NULL;
    if (e != NULL) {
        return serve_file(site, want, req, res, hdrs, body, e->fd, &e->st, norm, nlen,
                          moat_fcache_release, e, e->bytes, &e->meta);
    }
    struct moat_fcache_meta m = {0};
    return serve_file(site, want, req, res, hdrs, body, fd, &st, norm, nlen, NULL, NULL, NULL, &m);
}
