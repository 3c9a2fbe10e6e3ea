/*
 * test_static.c: the static handler against a real temporary root: files,
 * directories, an index, dot-files, a FIFO, a socket, and symbolic links that
 * stay inside or point outside. Every traversal trick must end in 400/403/404
 * and never yield the secret file beside the root; conditional requests,
 * ranges, methods, redirects and the listing are checked too, with and without
 * openat2 (the component-by-component fallback).
 */
#include "serve/static.h"

#include "core/httpdate.h"
#include "http1/parse.h"

#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char tmp_dir[256];  /* holds root/ and the secret beside it */
static char root_dir[300]; /* the site root */
static int root_fd = -1;
static int sock_fd = -1;
static time_t t_now;

#define SECRET "TOP-SECRET-OUTSIDE-ROOT"
#define HELLO "hello world\n"

static void write_file(const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root_dir, rel);
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        TEST__FAIL("cannot create %s", p);
        return;
    }
    fputs(content, f);
    fclose(f);
}

static void mk(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root_dir, rel);
    if (mkdir(p, 0755) != 0) {
        TEST__FAIL("mkdir %s", p);
    }
}

static void ln(const char *target, const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", root_dir, rel);
    if (symlink(target, p) != 0) {
        TEST__FAIL("symlink %s", p);
    }
}

static void set_mtime(const char *rel, time_t t)
{
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    if (utimensat(root_fd, rel, ts, AT_SYMLINK_NOFOLLOW) != 0) {
        TEST__FAIL("utimensat %s", rel);
    }
}

static void setup(void)
{
    t_now = time(NULL);
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/moat_static_XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) {
        TEST__FAIL("mkdtemp: %s", strerror(errno));
        return;
    }
    char p[512];
    snprintf(p, sizeof(p), "%s/outside.txt", tmp_dir);
    FILE *f = fopen(p, "w");
    if (f != NULL) {
        fputs(SECRET, f);
        fclose(f);
    }
    snprintf(root_dir, sizeof(root_dir), "%s/root", tmp_dir);
    mkdir(root_dir, 0755);
    root_fd = open(root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

    write_file("index.html", "<h1>home</h1>\n");
    write_file("hello.txt", HELLO);
    write_file("empty.txt", "");
    write_file("%2e%2e", "literal percent name\n");
    mk("sub");
    write_file("sub/a.css", "body{}\n");
    write_file("sub/<script>alert(1)<\\script>", "x");
    write_file("sub/<img src=x onerror=alert(1)>", "x");
    write_file("sub/javascript:alert(1)", "x");
    write_file("sub/a&b \"q\" 'x'.txt", "x");
    write_file("sub/.hidden", "x");
    write_file("sub/zz.txt", "12345");
    mk("sub/deeper");
    mk("withindex");
    write_file("withindex/index.html", "<p>index</p>\n");
    mk("noindex");
    mk(".git");
    write_file(".git/config", "[core]\n");
    write_file(".env", "PASSWORD=x\n");
    mk(".well-known");
    mk(".well-known/acme-challenge");
    write_file(".well-known/acme-challenge/tok", "token\n");
    write_file(".well-known/.x", "x");

    ln("hello.txt", "link_in");           /* relative, inside */
    ln("sub", "dirlink_in");              /* directory, inside */
    ln("../hello.txt", "sub/link_up_in"); /* climbs, but stays inside */
    ln(p, "link_out_abs");                /* absolute, outside */
    ln("../outside.txt", "link_out_rel"); /* relative, outside */
    ln("..", "dirlink_out");              /* the parent of the root */
    ln("/etc", "etc_link");
    ln("/proc/self/root", "magic"); /* a magic link to "/" */
    char abs_in[512];
    snprintf(abs_in, sizeof(abs_in), "%s/hello.txt", root_dir);
    ln(abs_in, "link_abs_in"); /* absolute, pointing inside: refused by RESOLVE_BENEATH */
    mk("linkindex");
    ln("../../outside.txt", "linkindex/index.html");

    snprintf(p, sizeof(p), "%s/fifo", root_dir);
    if (mkfifo(p, 0644) != 0) {
        TEST__FAIL("mkfifo: %s", strerror(errno));
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t rl = strlen(root_dir);
    if (rl + sizeof("/sock") <= sizeof(sa.sun_path)) {
        memcpy(sa.sun_path, root_dir, rl);
        memcpy(sa.sun_path + rl, "/sock", sizeof("/sock"));
    }
    sock_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (sock_fd < 0 || bind(sock_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        TEST__FAIL("bind unix socket: %s", strerror(errno));
    }
    write_file("noread.txt", "x");
    fchmodat(root_fd, "noread.txt", 0, 0);
    /* A stable, old mtime so date conditionals are exact. */
    set_mtime("hello.txt", 1000000000);
}

static void rm_tree(int dfd)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            rm_tree(sub);
            unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
}

static void teardown(void)
{
    if (sock_fd >= 0) {
        close(sock_fd);
    }
    if (root_fd >= 0) {
        close(root_fd);
    }
    rm_tree(open(tmp_dir, O_RDONLY | O_DIRECTORY));
    rmdir(tmp_dir);
}

/* ---- one request ---- */

struct q {
    int method;
    const char *path;
    const char *inm, *ims, *range, *if_range;
};

struct answer {
    moat_rc rc;
    struct moat_res res;
    char hdrs[4096];
    char body[16384]; /* the generated body, or the file region read back */
};

static struct answer a;

static int listing_on = 1;

static moat_slice sl(const char *s)
{
    return s ? moat_slice_cstr(s) : MOAT_SLICE_NULL;
}

/* The request's fields, as a protocol session hands them over (those the test set). */
static size_t q_fields(const struct q *q, struct moat_field *f)
{
    const char *names[4] = {"If-None-Match", "If-Modified-Since", "Range", "If-Range"};
    const char *values[4] = {q->inm, q->ims, q->range, q->if_range};
    size_t n = 0;
    for (size_t i = 0; i < 4; i++) {
        if (values[i] != NULL) {
            f[n++] = (struct moat_field){moat_slice_cstr(names[i]), moat_slice_cstr(values[i])};
        }
    }
    return n;
}

static struct answer *ask_site(const struct moat_static_site *site, struct q q)
{
    memset(&a, 0, sizeof(a));
    struct moat_field fields[4];
    struct moat_req req = {
        .method_id = q.method ? q.method : MOAT_HTTP_M_GET,
        .path = sl(q.path),
        .fields = fields,
        .nfields = q_fields(&q, fields),
        .now = t_now,
    };
    static char npath[MOAT_REQ_PATH_CAP + 1];
    moat_req_normalize(&req, npath); /* as the session does, once per request */
    struct moat_buf hdrs, body;
    moat_buf_init(&hdrs, 4000);
    moat_buf_init(&body, 16000);
    a.rc = moat_static_handle(site, &req, &a.res, &hdrs, &body);
    memcpy(a.hdrs, moat_buf_rdptr(&hdrs), moat_buf_len(&hdrs));
    if (a.res.has_generated_body) {
        if (a.res.length != moat_buf_len(&body)) {
            TEST__FAIL("%s: length %llu, body %zu", q.path, (unsigned long long)a.res.length,
                       moat_buf_len(&body));
        }
        memcpy(a.body, moat_buf_rdptr(&body), moat_buf_len(&body));
    } else if (moat_buf_len(&body) != 0) {
        TEST__FAIL("%s: body written without has_generated_body", q.path);
    }
    if (a.res.fd >= 0) {
        if (a.res.length >= sizeof(a.body)) {
            TEST__FAIL("%s: file too large for the test", q.path);
        } else {
            ssize_t n = pread(a.res.fd, a.body, a.res.length, (off_t)a.res.offset);
            if (n != (ssize_t)a.res.length) {
                TEST__FAIL("%s: short read", q.path);
            }
        }
        close(a.res.fd);
    }
    /* Whatever happened, the secret never leaves. */
    if (strstr(a.body, SECRET) != NULL) {
        TEST__FAIL("%s: served the file outside the root!", q.path);
    }
    moat_buf_clear(&hdrs);
    moat_buf_clear(&body);
    return &a;
}

static struct answer *ask(struct q q)
{
    struct moat_static_site site = {
        .root_fd = root_fd, .index = "index.html", .listing = listing_on};
    return ask_site(&site, q);
}

static int status_of(const char *path)
{
    return ask((struct q){.path = path})->res.status;
}

static int has_hdr(const char *line)
{
    return strstr(a.hdrs, line) != NULL;
}

/* The ETag line's value of the last answer. */
static const char *etag_of_last(void)
{
    static char e[128];
    const char *p = strstr(a.hdrs, "ETag: ");
    if (p == NULL) {
        return "";
    }
    p += 6;
    size_t n = strcspn(p, "\r");
    snprintf(e, sizeof(e), "%.*s", (int)n, p);
    return e;
}

#define EXPECT_STATUS(path, want)                                                                  \
    do {                                                                                           \
        int st__ = status_of(path);                                                                \
        if (st__ != (want)) {                                                                      \
            TEST__FAIL("%s: status %d, expected %d", (path), st__, (want));                        \
        }                                                                                          \
    } while (0)

/* ---- tests ---- */

TEST_CASE(test_plain_file)
{
    struct answer *r = ask((struct q){.path = "/hello.txt"});
    EXPECT(moat_ok(r->rc));
    EXPECT_INT(r->res.status, 200);
    EXPECT_INT(r->res.offset, 0);
    EXPECT_INT(r->res.length, strlen(HELLO));
    EXPECT_INT(r->res.has_generated_body, 0);
    EXPECT_STR(r->body, HELLO);
    EXPECT(has_hdr("Content-Type: text/plain; charset=utf-8\r\n"));
    EXPECT(has_hdr("Accept-Ranges: bytes\r\n"));
    EXPECT(has_hdr("Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n"));
    const char *e = etag_of_last();
    /* Strong, quoted, 64 bits in hex: at most 18 bytes, and nothing but hex digits inside. */
    size_t el = strlen(e);
    EXPECT(el >= 3 && el <= 18 && e[0] == '"' && e[el - 1] == '"' && e[1] != 'W');
    EXPECT_INT(strspn(e + 1, "0123456789abcdef"), el - 2);
    /* Every header line is complete. */
    size_t hl = strlen(a.hdrs);
    EXPECT(hl > 2 && a.hdrs[hl - 2] == '\r' && a.hdrs[hl - 1] == '\n');

    r = ask((struct q){.method = MOAT_HTTP_M_HEAD, .path = "/hello.txt"});
    EXPECT_INT(r->res.status, 200);
    EXPECT_INT(r->res.length, strlen(HELLO));
    EXPECT_INT(r->res.fd, -1); /* HEAD never holds the file open */
    EXPECT_INT(r->res.has_generated_body, 0);
    EXPECT(has_hdr("ETag: "));
    EXPECT(has_hdr("Content-Type: text/plain; charset=utf-8\r\n"));

    EXPECT_STATUS("/sub/a.css", 200);
    EXPECT(has_hdr("Content-Type: text/css; charset=utf-8\r\n"));
    EXPECT_STATUS("/empty.txt", 200);
    EXPECT_INT(a.res.length, 0);
    EXPECT(a.res.fd >= 0);
    /* Decoded once: "%252e%252e" is the file literally named "%2e%2e". */
    EXPECT_STATUS("/%252e%252e", 200);
    EXPECT_STR(a.body, "literal percent name\n");
    EXPECT_STATUS("/./hello.txt", 200);
    EXPECT_STATUS("/sub/../hello.txt", 200);
    EXPECT_STATUS("/sub/%2e%2e/hello.txt", 200);
    EXPECT_STATUS("//hello.txt", 200);
    EXPECT_STATUS("/%68ello.txt", 200);
}

TEST_CASE(test_not_found)
{
    EXPECT_STATUS("/nope.txt", 404);
    EXPECT_STATUS("/sub/nope/x", 404);
    EXPECT_STATUS("/hello.txt/", 404);
    EXPECT_STATUS("/hello.txt/x", 404);
    EXPECT_STATUS("/outside.txt", 404);
    /* Error bodies name nothing. */
    EXPECT_STATUS("/secret-name-xyz.txt", 404);
    EXPECT(strstr(a.body, "secret-name-xyz") == NULL);
    EXPECT(strstr(a.body, "404 Not Found") != NULL);
    EXPECT(a.res.has_generated_body);
    EXPECT(has_hdr("Content-Type: text/html; charset=utf-8\r\n"));
    /* A path far longer than PATH_MAX. */
    char longp[6000];
    longp[0] = '/';
    memset(longp + 1, 'a', sizeof(longp) - 2);
    longp[sizeof(longp) - 1] = '\0';
    EXPECT_STATUS(longp, 404);
    memset(longp + 1, 'a', 300);
    longp[301] = '\0';
    EXPECT_STATUS(longp, 404); /* a segment over NAME_MAX */
}

TEST_CASE(test_traversal_tricks)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"/../outside.txt", 400},
        {"/..", 400},
        {"/../", 400},
        {"/sub/../../outside.txt", 400},
        {"/%2e%2e/outside.txt", 400},
        {"/%2E%2E/outside.txt", 400},
        {"/%2e./outside.txt", 400},
        {"/.%2e/outside.txt", 400},
        {"/sub/%2e%2e/%2e%2e/outside.txt", 400},
        {"/..%2foutside.txt", 400},
        {"/sub%2f..%2f..%2foutside.txt", 400},
        {"/..%5coutside.txt", 400},
        {"/..\\outside.txt", 400},
        {"/hello.txt%00.html", 400},
        {"/hello.txt%00", 400},
        {"/%0d%0aX:y", 400},
        {"/%", 400},
        {"/%zz", 400},
        {"", 400},
        {"hello.txt", 400},
        {"//../outside.txt", 400},
        {"/./../outside.txt", 400},
        {"/%252e%252e/outside.txt", 404},
        {"//outside.txt", 404},
        {"/...", 404},
        {"/.../outside.txt", 404},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EXPECT_STATUS(cases[i].path, cases[i].status);
        EXPECT(a.res.fd == -1);
    }
}

TEST_CASE(test_symlinks)
{
    EXPECT_STATUS("/link_in", 200);
    EXPECT_STR(a.body, HELLO);
    EXPECT_STATUS("/dirlink_in/zz.txt", 200);
    EXPECT_STR(a.body, "12345");
    EXPECT_STATUS("/sub/link_up_in", 200);
    EXPECT_STR(a.body, HELLO);
    EXPECT_STATUS("/link_out_abs", 403);
    EXPECT_STATUS("/link_out_rel", 403);
    EXPECT_STATUS("/dirlink_out/outside.txt", 403);
    EXPECT_STATUS("/dirlink_out/root/hello.txt", 403);
    EXPECT_STATUS("/etc_link/passwd", 403);
    EXPECT_STATUS("/magic/etc/passwd", 403);
    EXPECT_STATUS("/link_abs_in", 403);
    /* An index that is a link out of the root is refused, not replaced by a
     * listing. */
    EXPECT_STATUS("/linkindex/", 403);
}

TEST_CASE(test_special_files)
{
    time_t t0 = time(NULL);
    EXPECT_STATUS("/fifo", 403);
    EXPECT(time(NULL) - t0 < 2); /* did not block on the FIFO */
    EXPECT_STATUS("/sock", 403);
    if (geteuid() != 0) {
        EXPECT_STATUS("/noread.txt", 403);
    }
}

TEST_CASE(test_hidden)
{
    EXPECT_STATUS("/.env", 404);
    EXPECT_STATUS("/.git/config", 404);
    EXPECT_STATUS("/.git/", 404);
    EXPECT_STATUS("/.git", 404);
    EXPECT_STATUS("/sub/.hidden", 404);
    EXPECT_STATUS("/%2egit/config", 404);
    EXPECT_STATUS("/sub/./.hidden", 404);
    EXPECT_STATUS("/.well-known/acme-challenge/tok", 200);
    EXPECT_STR(a.body, "token\n");
    EXPECT_STATUS("/%2ewell-known/acme-challenge/tok", 200);
    EXPECT_STATUS("/.well-known/.x", 404);
    EXPECT_STATUS("/.well-knownx", 404);
    EXPECT_STATUS("/sub/.well-known", 404);
}

TEST_CASE(test_methods)
{
    static const int refused[] = {MOAT_HTTP_M_POST, MOAT_HTTP_M_PUT, MOAT_HTTP_M_DELETE, 9999, -1};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct answer *r = ask((struct q){.method = refused[i], .path = "/hello.txt"});
        EXPECT(moat_ok(r->rc));
        EXPECT_INT(r->res.status, 405);
        EXPECT(has_hdr("Allow: GET, HEAD, OPTIONS\r\n"));
        EXPECT(r->res.fd == -1);
    }
    struct answer *r = ask((struct q){.method = MOAT_HTTP_M_OPTIONS, .path = "/hello.txt"});
    EXPECT_INT(r->res.status, 204);
    EXPECT(has_hdr("Allow: GET, HEAD, OPTIONS\r\n"));
    EXPECT_INT(r->res.length, 0);
    EXPECT_INT(r->res.has_generated_body, 0);
}

TEST_CASE(test_directories)
{
    /* Without a slash: 301 to the normalised path, re-encoded. */
    EXPECT_STATUS("/sub", 301);
    EXPECT(has_hdr("Location: /sub/\r\n"));
    EXPECT_STATUS("//sub", 301);
    EXPECT(has_hdr("Location: /sub/\r\n"));
    EXPECT_STATUS("/sub/deeper/../../sub", 301);
    EXPECT(has_hdr("Location: /sub/\r\n"));
    EXPECT_STATUS("/sub/deeper", 301);
    EXPECT(has_hdr("Location: /sub/deeper/\r\n"));
    struct moat_req qreq = {.method_id = MOAT_HTTP_M_GET,
                            .path = MOAT_SLICE_LIT("//sub"),
                            .query = MOAT_SLICE_LIT("x=1&y=%41\r\nSet-Cookie: a\x80"),
                            .now = t_now};
    static char qnpath[MOAT_REQ_PATH_CAP + 1];
    moat_req_normalize(&qreq, qnpath);
    struct moat_static_site qsite = {.root_fd = root_fd, .index = "index.html"};
    struct moat_res qres;
    struct moat_buf qh, qb;
    moat_buf_init(&qh, 4000);
    moat_buf_init(&qb, 4000);
    EXPECT(moat_ok(moat_static_handle(&qsite, &qreq, &qres, &qh, &qb)));
    EXPECT_INT(qres.status, 301);
    EXPECT(moat_buf_len(&qh) < 200);
    char qhs[256] = "";
    memcpy(qhs, moat_buf_rdptr(&qh), moat_buf_len(&qh) < 255 ? moat_buf_len(&qh) : 255);
    EXPECT(strstr(qhs, "Location: /sub/?x=1&y=%41%0D%0ASet-Cookie:%20a%80\r\n") != NULL);
    EXPECT(strstr(qhs, "\nSet-Cookie") == NULL);
    moat_buf_clear(&qh);
    moat_buf_clear(&qb);
    /* Odd bytes in a directory name are re-encoded in Location. */
    mk("d i\xc3\xa9r");
    EXPECT_STATUS("/d%20i%c3%a9r", 301);
    EXPECT(has_hdr("Location: /d%20i%C3%A9r/\r\n"));
    EXPECT_STATUS("/.well-known", 301);
    EXPECT(has_hdr("Location: /.well-known/\r\n"));
    /* The root with index. */
    EXPECT_STATUS("/", 200);
    EXPECT_STR(a.body, "<h1>home</h1>\n");
    EXPECT(has_hdr("Content-Type: text/html; charset=utf-8\r\n"));
    EXPECT_STATUS("/withindex/", 200);
    EXPECT_STR(a.body, "<p>index</p>\n");
    EXPECT_STATUS("/withindex/.", 200);
    /* No index, listing off: 403. */
    listing_on = 0;
    EXPECT_STATUS("/sub/", 403);
    EXPECT_STATUS("/noindex/", 403);
    listing_on = 1;
    /* No index at all configured: the root is listed. */
    struct moat_static_site site = {.root_fd = root_fd, .index = NULL, .listing = 1};
    struct answer *r = ask_site(&site, (struct q){.path = "/"});
    EXPECT_INT(r->res.status, 200);
    EXPECT(strstr(r->body, "Index of /") != NULL);
}

TEST_CASE(test_listing)
{
    struct answer *r = ask((struct q){.path = "/sub/"});
    EXPECT(moat_ok(r->rc));
    EXPECT_INT(r->res.status, 200);
    EXPECT(r->res.has_generated_body);
    EXPECT(r->res.fd == -1);
    EXPECT(has_hdr("Content-Type: text/html; charset=utf-8\r\n"));
    const char *b = r->body;
    /* Names are HTML-escaped, hrefs percent-encoded, ":" too. */
    EXPECT(strstr(b, "<script") == NULL);
    EXPECT(strstr(b, "<img") == NULL);
    EXPECT(strstr(b, "&lt;img src=x onerror=alert(1)&gt;") != NULL);
    EXPECT(strstr(b, "href=\"./%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\"") != NULL);
    /* A name with a backslash can never be requested (the normaliser refuses it): unlisted. */
    EXPECT(strstr(b, "&lt;script") == NULL);
    EXPECT(strstr(b, "%3Cscript") == NULL);
    EXPECT(strstr(b, "href=\"./javascript%3Aalert%281%29\"") != NULL);
    EXPECT(strstr(b, "href=\"javascript") == NULL);
    EXPECT(strstr(b, "a&amp;b &quot;q&quot; &#39;x&#39;.txt") != NULL);
    EXPECT(strstr(b, "href=\"./a%26b%20%22q%22%20%27x%27.txt\"") != NULL);
    /* Dot-files are not listed; directories end in "/"; sizes shown; parent link.
     */
    EXPECT(strstr(b, "hidden") == NULL);
    EXPECT(strstr(b, "href=\"./deeper/\">deeper/</a>") != NULL);
    EXPECT(strstr(b, ">zz.txt</a></td><td>5</td>") != NULL);
    EXPECT(strstr(b, "href=\"../\"") != NULL);
    /* Sorted by name (byte order). */
    const char *p1 = strstr(b, ">&lt;img");
    const char *p2 = strstr(b, ">a.css<");
    const char *p3 = strstr(b, ">zz.txt<");
    EXPECT(p1 != NULL && p2 != NULL && p3 != NULL && p1 < p2 && p2 < p3);

    /* HEAD: same status and length. */
    uint64_t len = r->res.length;
    r = ask((struct q){.method = MOAT_HTTP_M_HEAD, .path = "/sub/"});
    EXPECT_INT(r->res.status, 200);
    EXPECT_INT(r->res.length, len);

    /* The root listing has no parent link and escapes the title. */
    struct moat_static_site site = {.root_fd = root_fd, .index = "nope.html", .listing = 1};
    r = ask_site(&site, (struct q){.path = "/"});
    EXPECT(strstr(r->body, "href=\"../\"") == NULL);
    EXPECT(strstr(r->body, ".env") == NULL);
    EXPECT(strstr(r->body, ".git") == NULL);
    EXPECT(strstr(r->body, "well-known") == NULL);
    /* Links are listed (without following them for their size). */
    EXPECT(strstr(r->body, ">link_out_abs</a></td><td>-</td>") != NULL);
}

TEST_CASE(test_conditionals)
{
    ask((struct q){.path = "/hello.txt"});
    char etag[128];
    snprintf(etag, sizeof(etag), "%s", etag_of_last());
    char weak[140], list[300];
    snprintf(weak, sizeof(weak), "W/%s", etag);
    snprintf(list, sizeof(list), "\"abc\", W/\"def\" ,%s", etag);

    struct answer *r = ask((struct q){.path = "/hello.txt", .inm = etag});
    EXPECT_INT(r->res.status, 304);
    EXPECT(r->res.fd == -1);
    EXPECT_INT(r->res.length, 0);
    EXPECT_INT(r->res.has_generated_body, 0);
    EXPECT(strstr(r->hdrs, etag) != NULL);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = weak})->res.status, 304);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = list})->res.status, 304);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = "*"})->res.status, 304);
    EXPECT_INT(
        ask((struct q){.method = MOAT_HTTP_M_HEAD, .path = "/hello.txt", .inm = etag})->res.status,
        304);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = "\"other\""})->res.status, 200);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = "garbage"})->res.status, 200);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .inm = "\"unterminated"})->res.status, 200);
    /* If-None-Match present: If-Modified-Since is ignored, even when it would say
     * 304. */
    EXPECT_INT(ask((struct q){.path = "/hello.txt",
                              .inm = "\"other\"",
                              .ims = "Sun, 09 Sep 2001 01:46:40 GMT"})
                   ->res.status,
               200);
    /* If-Modified-Since alone: second precision, three date forms, invalid
     * ignored. */
    EXPECT_INT(
        ask((struct q){.path = "/hello.txt", .ims = "Sun, 09 Sep 2001 01:46:40 GMT"})->res.status,
        304);
    EXPECT(has_hdr("Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n"));
    EXPECT_INT(
        ask((struct q){.path = "/hello.txt", .ims = " Sun, 09 Sep 2001 01:46:41 GMT "})->res.status,
        304);
    EXPECT_INT(
        ask((struct q){.path = "/hello.txt", .ims = "Sunday, 09-Sep-01 01:46:40 GMT"})->res.status,
        304);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .ims = "Sun Sep  9 01:46:40 2001"})->res.status,
               304);
    EXPECT_INT(
        ask((struct q){.path = "/hello.txt", .ims = "Sun, 09 Sep 2001 01:46:39 GMT"})->res.status,
        200);
    EXPECT_INT(ask((struct q){.path = "/hello.txt", .ims = "yesterday"})->res.status, 200);
    /* Conditionals never turn an error into a 304. */
    EXPECT_INT(ask((struct q){.path = "/nope", .inm = "*"})->res.status, 404);
    EXPECT_INT(ask((struct q){.path = "/.env", .inm = "*"})->res.status, 404);
}

TEST_CASE(test_last_modified_not_in_future)
{
    write_file("future.txt", "f");
    set_mtime("future.txt", t_now + 100000);
    struct answer *r = ask((struct q){.path = "/future.txt"});
    EXPECT_INT(r->res.status, 200);
    char want[64] = "Last-Modified: ";
    EXPECT(moat_ok(moat_httpdate_format(t_now, want + 15, sizeof(want) - 15)));
    EXPECT(has_hdr(want));
}

/* One range request on /hello.txt (12 bytes). */
static struct answer *range(const char *spec)
{
    return ask((struct q){.path = "/hello.txt", .range = spec});
}

#define EXPECT_RANGE(spec, st, off, len)                                                           \
    do {                                                                                           \
        struct answer *r__ = range(spec);                                                          \
        if (r__->res.status != (st) || r__->res.offset != (uint64_t)(off) ||                       \
            r__->res.length != (uint64_t)(len)) {                                                  \
            TEST__FAIL("Range %s: %d %llu+%llu, expected %d %d+%d", (spec), r__->res.status,       \
                       (unsigned long long)r__->res.offset, (unsigned long long)r__->res.length,   \
                       (st), (int)(off), (int)(len));                                              \
        }                                                                                          \
    } while (0)

TEST_CASE(test_ranges)
{
    EXPECT_RANGE("bytes=0-4", 206, 0, 5);
    EXPECT(has_hdr("Content-Range: bytes 0-4/12\r\n"));
    EXPECT_STR(a.body, "hello");
    EXPECT(has_hdr("Content-Type: text/plain; charset=utf-8\r\n"));
    EXPECT(has_hdr("ETag: "));
    EXPECT_RANGE("bytes=6-", 206, 6, 6);
    EXPECT(has_hdr("Content-Range: bytes 6-11/12\r\n"));
    EXPECT_STR(a.body, "world\n");
    EXPECT_RANGE("bytes=-3", 206, 9, 3);
    EXPECT(has_hdr("Content-Range: bytes 9-11/12\r\n"));
    EXPECT_RANGE("bytes=-100", 206, 0, 12);
    EXPECT_RANGE("bytes=0-999", 206, 0, 12);
    EXPECT(has_hdr("Content-Range: bytes 0-11/12\r\n"));
    EXPECT_RANGE("bytes=11-11", 206, 11, 1);
    EXPECT_RANGE("BYTES=0-0", 206, 0, 1);
    EXPECT_RANGE(" bytes=0-0 ", 206, 0, 1);
    EXPECT_RANGE("bytes=0-99999999999999999999999", 206, 0, 12);
    EXPECT_RANGE("bytes=-99999999999999999999999", 206, 0, 12);
    /* Unsatisfiable. */
    EXPECT_RANGE("bytes=12-", 416, 0, a.res.length);
    EXPECT(has_hdr("Content-Range: bytes */12\r\n"));
    EXPECT(a.res.fd == -1 && a.res.has_generated_body);
    EXPECT_RANGE("bytes=-0", 416, 0, a.res.length);
    EXPECT_RANGE("bytes=100-200", 416, 0, a.res.length);
    EXPECT_RANGE("bytes=99999999999999999999999-", 416, 0, a.res.length);
    /* Invalid or several: ignored, whole file. */
    static const char *ignored[] = {
        "bytes=5-2",  "bytes=0-1,3-4", "bytes=0-1, 3-4", "items=0-1", "bytes=abc",  "bytes=",
        "bytes=-",    "bytes=--1",     "bytes=1-2-3",    "bytes 0-1", "bytes=0-1x", "=0-1",
        "bytes=+1-2", "bytes=0x1-2",   "bytes",          "bytes=1",
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        EXPECT_RANGE(ignored[i], 200, 0, 12);
        EXPECT(!has_hdr("Content-Range"));
    }
    /* HEAD ignores Range (RFC 9110 §14.2: defined for GET only). */
    struct answer *r =
        ask((struct q){.method = MOAT_HTTP_M_HEAD, .path = "/hello.txt", .range = "bytes=0-1"});
    EXPECT_INT(r->res.status, 200);
    EXPECT_INT(r->res.length, 12);
    /* An empty file has no satisfiable range. */
    r = ask((struct q){.path = "/empty.txt", .range = "bytes=0-"});
    EXPECT_INT(r->res.status, 416);
    EXPECT(has_hdr("Content-Range: bytes */0\r\n"));
    r = ask((struct q){.path = "/empty.txt", .range = "bytes=-5"});
    EXPECT_INT(r->res.status, 416);
    /* 304 wins over Range. */
    ask((struct q){.path = "/hello.txt"});
    char etag[128];
    snprintf(etag, sizeof(etag), "%s", etag_of_last());
    r = ask((struct q){.path = "/hello.txt", .range = "bytes=0-1", .inm = etag});
    EXPECT_INT(r->res.status, 304);
}

TEST_CASE(test_if_range)
{
    ask((struct q){.path = "/hello.txt"});
    char etag[128], weak[140];
    snprintf(etag, sizeof(etag), "%s", etag_of_last());
    snprintf(weak, sizeof(weak), "W/%s", etag);
    struct q q = {.path = "/hello.txt", .range = "bytes=0-4"};
    q.if_range = etag;
    EXPECT_INT(ask(q)->res.status, 206);
    q.if_range = weak; /* weak tags never match If-Range */
    EXPECT_INT(ask(q)->res.status, 200);
    q.if_range = "\"other\"";
    EXPECT_INT(ask(q)->res.status, 200);
    EXPECT_INT(a.res.length, 12);
    q.if_range = "Sun, 09 Sep 2001 01:46:40 GMT";
    EXPECT_INT(ask(q)->res.status, 206);
    q.if_range = "Sun, 09 Sep 2001 01:46:41 GMT"; /* must be exact */
    EXPECT_INT(ask(q)->res.status, 200);
    q.if_range = "not a date";
    EXPECT_INT(ask(q)->res.status, 200);
    /* A Last-Modified of this very second is weak: no date match. */
    write_file("fresh.txt", "0123456789");
    set_mtime("fresh.txt", t_now);
    char date[MOAT_HTTPDATE_SIZE];
    EXPECT(moat_ok(moat_httpdate_format(t_now, date, sizeof(date))));
    struct q f = {.path = "/fresh.txt", .range = "bytes=0-1", .if_range = date};
    EXPECT_INT(ask(f)->res.status, 200);
}

TEST_CASE(test_small_buffers)
{
    /* When the answer cannot be written the call fails and leaves nothing open.
     */
    struct moat_static_site site = {.root_fd = root_fd, .index = "index.html", .listing = 1};
    const char *paths[] = {"/hello.txt", "/sub/", "/nope", "/sub"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct moat_req req = {
            .method_id = MOAT_HTTP_M_GET, .path = moat_slice_cstr(paths[i]), .now = t_now};
        static char npath[MOAT_REQ_PATH_CAP + 1];
        moat_req_normalize(&req, npath);
        struct moat_buf hdrs, body;
        moat_buf_init(&hdrs, 20);
        moat_buf_init(&body, 16000);
        struct moat_res res;
        moat_rc rc = moat_static_handle(&site, &req, &res, &hdrs, &body);
        EXPECT_INT(rc.kind, MOAT_E_LIMIT);
        EXPECT_INT(res.fd, -1);
        moat_buf_clear(&hdrs);
        moat_buf_clear(&body);
        moat_buf_init(&hdrs, 4000);
        moat_buf_init(&body, 30);
        rc = moat_static_handle(&site, &req, &res, &hdrs, &body);
        if (i == 0) {
            EXPECT(moat_ok(rc)); /* no generated body needed */
            close(res.fd);
        } else {
            EXPECT_INT(rc.kind, MOAT_E_LIMIT);
            EXPECT_INT(res.fd, -1);
        }
        moat_buf_clear(&hdrs);
        moat_buf_clear(&body);
    }
    struct moat_req req = {.method_id = MOAT_HTTP_M_GET, .path = MOAT_SLICE_LIT("/")};
    struct moat_res res;
    struct moat_buf b;
    moat_buf_init(&b, 100);
    EXPECT_INT(moat_static_handle(NULL, &req, &res, &b, &b).kind, MOAT_E_INTERNAL);
    EXPECT_INT(moat_static_handle(&site, NULL, &res, &b, &b).kind, MOAT_E_INTERNAL);
    EXPECT_INT(moat_static_handle(&site, &req, &res, NULL, &b).kind, MOAT_E_INTERNAL);
}

TEST_CASE(test_fallback_walk)
{
    /* Without openat2 every symlink is refused, inside the root or not. */
    moat_static__force_fallback(1);
    EXPECT_STATUS("/hello.txt", 200);
    EXPECT_STR(a.body, HELLO);
    EXPECT_STATUS("/sub/a.css", 200);
    EXPECT_STATUS("/", 200);
    EXPECT_STR(a.body, "<h1>home</h1>\n");
    EXPECT_STATUS("/withindex/", 200);
    EXPECT_STATUS("/sub/", 200);
    EXPECT_STATUS("/sub", 301);
    EXPECT_STATUS("/sub/deeper/", 200);
    EXPECT_STATUS("/nope", 404);
    EXPECT_STATUS("/sub/nope/x", 404);
    EXPECT_STATUS("/hello.txt/", 404);
    EXPECT_STATUS("/hello.txt/x", 404);
    EXPECT_STATUS("/link_in", 403);
    EXPECT_STATUS("/dirlink_in/zz.txt", 403);
    EXPECT_STATUS("/dirlink_in/", 403);
    EXPECT_STATUS("/link_out_abs", 403);
    EXPECT_STATUS("/link_out_rel", 403);
    EXPECT_STATUS("/dirlink_out/outside.txt", 403);
    EXPECT_STATUS("/etc_link/passwd", 403);
    EXPECT_STATUS("/magic/etc/passwd", 403);
    EXPECT_STATUS("/linkindex/", 403);
    EXPECT_STATUS("/fifo", 403);
    EXPECT_STATUS("/../outside.txt", 400);
    EXPECT_STATUS("/.env", 404);
    moat_static__force_fallback(0);
    EXPECT_STATUS("/link_in", 200);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

int main(void)
{
    setup();
    int fds = count_fds();
    RUN(test_plain_file);
    RUN(test_not_found);
    RUN(test_traversal_tricks);
    RUN(test_symlinks);
    RUN(test_special_files);
    RUN(test_hidden);
    RUN(test_methods);
    RUN(test_directories);
    RUN(test_listing);
    RUN(test_conditionals);
    RUN(test_last_modified_not_in_future);
    RUN(test_ranges);
    RUN(test_if_range);
    RUN(test_small_buffers);
    RUN(test_fallback_walk);
    /* No descriptor leaked on any path above. */
    test__name = "fd_leak";
    EXPECT_INT(count_fds(), fds);
    teardown();
    TEST_MAIN_END();
}
