/*
 * test_mime.c: the MIME table is sorted (the binary search needs it), lookups ignore case, and
 * everything odd falls back to application/octet-stream.
 */
#include "serve/mime.h"

#include "test.h"

static const char *look(const char *s)
{
    return moat_mime_lookup(s, strlen(s));
}

TEST_CASE(test_table_sorted_and_lower)
{
    size_t n = moat_mime__count();
    EXPECT(n > 40);
    for (size_t i = 0; i < n; i++) {
        const char *e = moat_mime__ext(i);
        for (const char *p = e; *p; p++) {
            EXPECT(!(*p >= 'A' && *p <= 'Z'));
        }
        if (i > 0 && strcmp(moat_mime__ext(i - 1), e) >= 0) {
            TEST__FAIL("table out of order at %s", e);
        }
        /* Every entry is reachable through the lookup. */
        char name[32];
        snprintf(name, sizeof(name), "f.%s", e);
        EXPECT(strcmp(look(name), MOAT_MIME_DEFAULT) != 0 || strcmp(e, "bin") == 0);
    }
    EXPECT(moat_mime__ext(n) == NULL);
}

TEST_CASE(test_common_types)
{
    EXPECT_STR(look("/index.html"), "text/html; charset=utf-8");
    EXPECT_STR(look("/a.htm"), "text/html; charset=utf-8");
    EXPECT_STR(look("/s.css"), "text/css; charset=utf-8");
    EXPECT_STR(look("/app.js"), "text/javascript; charset=utf-8");
    EXPECT_STR(look("/m.mjs"), "text/javascript; charset=utf-8");
    EXPECT_STR(look("/d.json"), "application/json");
    EXPECT_STR(look("/app.js.map"), "application/json");
    EXPECT_STR(look("/r.txt"), "text/plain; charset=utf-8");
    EXPECT_STR(look("/i.svg"), "image/svg+xml");
    EXPECT_STR(look("/i.png"), "image/png");
    EXPECT_STR(look("/i.jpg"), "image/jpeg");
    EXPECT_STR(look("/i.jpeg"), "image/jpeg");
    EXPECT_STR(look("/i.webp"), "image/webp");
    EXPECT_STR(look("/i.avif"), "image/avif");
    EXPECT_STR(look("/f.woff2"), "font/woff2");
    EXPECT_STR(look("/w.wasm"), "application/wasm");
    EXPECT_STR(look("/v.mp4"), "video/mp4");
    EXPECT_STR(look("/README.md"), "text/markdown; charset=utf-8");
    EXPECT_STR(look("/x.tar.gz"), "application/gzip");
    EXPECT_STR(look("/site.webmanifest"), "application/manifest+json");
    EXPECT_STR(look("zip.zip"), "application/zip");
}

TEST_CASE(test_case_insensitive)
{
    EXPECT_STR(look("/INDEX.HTML"), "text/html; charset=utf-8");
    EXPECT_STR(look("/Photo.JpG"), "image/jpeg");
    EXPECT_STR(look("/F.WOFF2"), "font/woff2");
}

TEST_CASE(test_defaults)
{
    EXPECT_STR(look(""), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/Makefile"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/file."), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/.html"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/dir/.env"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/x.unknown"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/x.htmlx"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/x.htm_"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/x.webmanifestwebmanifest"), MOAT_MIME_DEFAULT);
    /* The extension belongs to the last segment only. */
    EXPECT_STR(look("/dir.html/readme"), MOAT_MIME_DEFAULT);
    EXPECT_STR(look("/dir.html/"), MOAT_MIME_DEFAULT);
    EXPECT(moat_mime_lookup(NULL, 3) != NULL);
    /* Only len bytes count, and a NUL in them is not an end. */
    EXPECT_STR(moat_mime_lookup("/a.html", 5), MOAT_MIME_DEFAULT);
    EXPECT_STR(moat_mime_lookup("/a.htmlXYZ", 7), "text/html; charset=utf-8");
    EXPECT_STR(moat_mime_lookup("/a.html\0zz", 10), MOAT_MIME_DEFAULT);
}

int main(void)
{
    RUN(test_table_sorted_and_lower);
    RUN(test_common_types);
    RUN(test_case_insensitive);
    RUN(test_defaults);
    TEST_MAIN_END();
}
