/*
 * mime.c: the extension table and its lookup (see mime.h).
 *
 * Keep `types` sorted by extension in byte order (lower case): the binary search depends on it
 * and tests/unit/serve/test_mime.c fails the build when it is not.
 */
#include "serve/mime.h"

#include <string.h>

struct mime_type {
    const char *ext; /* lower case, no dot */
    const char *type;
};

#define TEXT_UTF8 "; charset=utf-8"

static const struct mime_type types[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"br", "application/x-brotli"},
    {"bz2", "application/x-bzip2"},
    {"css", "text/css" TEXT_UTF8},
    {"csv", "text/csv" TEXT_UTF8},
    {"eot", "application/vnd.ms-fontobject"},
    {"epub", "application/epub+zip"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"heic", "image/heic"},
    {"htm", "text/html" TEXT_UTF8},
    {"html", "text/html" TEXT_UTF8},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar" TEXT_UTF8},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript" TEXT_UTF8},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"jxl", "image/jxl"},
    {"m4a", "audio/mp4"},
    {"m4v", "video/mp4"},
    {"map", "application/json"},
    {"md", "text/markdown" TEXT_UTF8},
    {"mjs", "text/javascript" TEXT_UTF8},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"opus", "audio/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"pem", "application/x-pem-file"},
    {"png", "image/png"},
    {"rss", "application/rss+xml"},
    {"rtf", "application/rtf"},
    {"svg", "image/svg+xml"},
    {"svgz", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain" TEXT_UTF8},
    {"vtt", "text/vtt" TEXT_UTF8},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"weba", "audio/webm"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xml", "application/xml"},
    {"xz", "application/x-xz"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
};

#define NTYPES (sizeof(types) / sizeof(types[0]))
/* Longer than any extension in the table ("webmanifest" is 11): no need to look further. */
#define EXT_MAX 15

size_t moat_mime__count(void)
{
    return NTYPES;
}

const char *moat_mime__ext(size_t i)
{
    return i < NTYPES ? types[i].ext : NULL;
}

const char *moat_mime_lookup(const char *path, size_t len)
{
    if (path == NULL) {
        return MOAT_MIME_DEFAULT;
    }
    /* Find the last "." of the last segment. */
    size_t dot = len;
    size_t start = 0;
    for (size_t i = len; i > 0; i--) {
        if (path[i - 1] == '/') {
            start = i;
            break;
        }
        if (path[i - 1] == '.' && dot == len) {
            dot = i - 1;
        }
    }
    /* ".env" is a hidden file called env, not a file with extension "env". */
    if (dot == len || dot == start) {
        return MOAT_MIME_DEFAULT;
    }
    size_t n = len - dot - 1;
    if (n == 0 || n > EXT_MAX) {
        return MOAT_MIME_DEFAULT;
    }
    char ext[EXT_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        char c = path[dot + 1 + i];
        if (c == '\0') {
            return MOAT_MIME_DEFAULT; /* strcmp below would stop there */
        }
        ext[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    ext[n] = '\0';

    size_t lo = 0, hi = NTYPES;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(ext, types[mid].ext);
        if (cmp == 0) {
            return types[mid].type;
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return MOAT_MIME_DEFAULT;
}
