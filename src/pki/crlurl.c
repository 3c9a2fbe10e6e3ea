/*
 * crlurl.c: CRL addresses: checking them, keeping them in the CA folder's `settings` file,
 * and writing and reading the crlDistributionPoints extension (see crlurl.h).
 *
 * The URL check is strict on purpose: the address is copied into every certificate the CA
 * issues for years, and a certificate cannot be corrected afterwards, so a typo must be caught
 * before the first one is signed.
 */
#include "pki/crlurl.h"

#include "pki/fsutil.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SETTINGS_MAX (64 * 1024)

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 §3.3 pchar plus '/', without pct-encoded (checked apart). */
static int is_path_char(char c)
{
    return is_alnum(c) || strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

/* A DNS name of LDH labels (RFC 1123 §2.1), or an IPv4 address. NULL when fine, else why. */
static const char *host_problem(const char *h, size_t len)
{
    if (len == 0) {
        return "the URL has no host (write http://HOST/PATH)";
    }
    if (len > 253) {
        return "the host name is longer than 253 characters (RFC 1035 §2.3.4)";
    }
    if (h[0] == '[') {
        char v6[64];
        struct in6_addr a6;
        if (h[len - 1] != ']' || len - 2 >= sizeof(v6)) {
            return "an IPv6 address is written in brackets, e.g. http://[2001:db8::1]/crl";
        }
        memcpy(v6, h + 1, len - 2);
        v6[len - 2] = '\0';
        return inet_pton(AF_INET6, v6, &a6) == 1 ? NULL : "not a valid IPv6 address";
    }
    size_t label = 0;
    int all_digits = 1;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0) {
                return "the host name has an empty label (two dots, or a dot at an end)";
            }
            if (h[i - 1] == '-') {
                return "a label of the host name ends with '-'";
            }
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-') {
            return "the host name may hold only letters, digits, '-' and '.'";
        }
        if (label == 0 && c == '-') {
            return "a label of the host name starts with '-'";
        }
        if (++label > 63) {
            return "a label of the host name is longer than 63 characters";
        }
        all_digits &= (c >= '0' && c <= '9');
    }
    if (all_digits) {
        char v4[16];
        struct in_addr a4;
        if (len >= sizeof(v4)) {
            return "not a valid IPv4 address";
        }
        memcpy(v4, h, len);
        v4[len] = '\0';
        return inet_pton(AF_INET, v4, &a4) == 1 ? NULL : "not a valid IPv4 address";
    }
    return NULL;
}

moat_rc moat_crlurl_check(const char *url, struct moat_err *err)
{
    const char *eg = "e.g. http://ca.example.com/crl/intermediate.crl";
    size_t len = url ? strlen(url) : 0;
    if (len == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "empty CRL URL (write one, %s)", eg);
    }
    if (len > MOAT_CRLURL_MAX) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the CRL URL is longer than %d bytes", MOAT_CRLURL_MAX);
    }
    const char *sep = strstr(url, "://");
    if (strncasecmp(url, "https://", 8) == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "CRL URL \"%.200s\": use http://, not https:// (RFC 5280 §4.2.1.13: clients "
                  "fetch CRLs over plain HTTP; a CRL is signed, so it needs no TLS, and "
                  "checking it over HTTPS would first need the revocation status of that "
                  "server's own certificate)",
                  url);
    }
    if (sep == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "CRL URL \"%.200s\" is not a URL: write a full one, %s", url,
                  eg);
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "CRL URL \"%.200s\": only http:// URLs are supported (what clients fetch "
                  "CRLs with), %s",
                  url, eg);
    }
    const char *auth = url + 7;
    const char *path = strchr(auth, '/');
    size_t alen = path ? (size_t)(path - auth) : strlen(auth);
    if (memchr(auth, '@', alen) != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "CRL URL \"%.200s\" holds a user name or password (user@host): CRLs are "
                  "public, remove it",
                  url);
    }
    /* The port: the last ':' of the authority, unless it is inside an IPv6 bracket. */
    size_t hlen = alen;
    const char *colon = NULL;
    for (size_t i = alen; i > 0; i--) {
        if (auth[i - 1] == ']') {
            break;
        }
        if (auth[i - 1] == ':') {
            colon = auth + i - 1;
            break;
        }
    }
    if (colon != NULL) {
        hlen = (size_t)(colon - auth);
        const char *p = colon + 1;
        size_t plen = alen - hlen - 1;
        unsigned long port = 0;
        int ok = plen >= 1 && plen <= 5;
        for (size_t i = 0; ok && i < plen; i++) {
            ok = p[i] >= '0' && p[i] <= '9';
            port = port * 10 + (unsigned long)(p[i] - '0');
        }
        if (!ok || port < 1 || port > 65535) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "CRL URL \"%.200s\": the port must be a number from 1 to 65535", url);
        }
    }
    const char *why = host_problem(auth, hlen);
    if (why != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "CRL URL \"%.200s\": %s", url, why);
    }
    if (path == NULL || path[1] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "CRL URL \"%.200s\" needs the path of the CRL file, e.g. http://%.*s/crl/ca.crl",
                  url, (int)(alen > 200 ? 200 : alen), auth);
    }
    for (const char *p = path; *p != '\0'; p++) {
        if (*p == '?' || *p == '#') {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "CRL URL \"%.200s\": a CRL URL has no query or fragment ('%c'): write the "
                      "path of the file only",
                      url, *p);
        }
        if (*p == '%') {
            if (!is_hex(p[1]) || !is_hex(p[2])) {
                MOAT_FAIL(err, MOAT_E_USAGE,
                          "CRL URL \"%.200s\": '%%' must start an escape of two hex digits "
                          "(%%20 for a space)",
                          url);
            }
            p += 2;
            continue;
        }
        if (!is_path_char(*p)) {
            unsigned char c = (unsigned char)*p;
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "CRL URL \"%.200s\": character 0x%02X at position %zu is not allowed in a "
                      "URL path (percent-encode it, e.g. a space as %%20)",
                      url, c, (size_t)(p - url) + 1);
        }
    }
    return MOAT_RC_OK;
}

const char *moat_crlurl_path(const char *url)
{
    const char *auth = url + (strncasecmp(url, "http://", 7) == 0 ? 7 : 0);
    const char *path = strchr(auth, '/');
    return path ? path : "/";
}

void moat_crlurl_clear(struct moat_crlurl_settings *s)
{
    free(s->crl_url);
    free(s->root_crl_url);
    s->crl_url = NULL;
    s->root_crl_url = NULL;
}

/* ---- the settings file ---- */

static const char *const keys[2] = {"crl_url", "root_crl_url"};

static char **slot_of(struct moat_crlurl_settings *s, int k)
{
    return k == 0 ? &s->crl_url : &s->root_crl_url;
}

/* Split the line at spaces/tabs into at most 3 words; returns the count (3 means "too many"). */
static int words_of(char *line, char *w[3])
{
    int n = 0;
    char *p = line;
    while (n < 3) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        w[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return n;
}

static moat_rc line_fail(struct moat_err *err, const char *name, int lineno, const char *fmt, ...)
    MOAT_PRINTF(4, 5);

/* MOAT_E_CONFIG at "name:line" with "name line N: " before the words. */
static moat_rc line_fail(struct moat_err *err, const char *name, int lineno, const char *fmt, ...)
{
    char msg[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    moat_err_where(err, "%s:%d", name, lineno);
    MOAT_FAIL(err, MOAT_E_CONFIG, "%s line %d: %s", name, lineno, msg);
}

static moat_rc parse_line(char *line, const char *name, int lineno, struct moat_crlurl_settings *s,
                          struct moat_err *err)
{
    char *hash = strchr(line, '#');
    if (hash != NULL) {
        *hash = '\0';
    }
    char *w[3] = {NULL, NULL, NULL};
    int n = words_of(line, w);
    if (n == 0) {
        return MOAT_RC_OK;
    }
    int k = 0;
    while (k < 2 && strcmp(w[0], keys[k]) != 0) {
        k++;
    }
    if (k == 2) {
        return line_fail(err, name, lineno,
                         "unknown setting \"%.64s\" (known: crl_url, root_crl_url; change them "
                         "with `moat ca set`)",
                         w[0]);
    }
    if (n != 2) {
        return line_fail(err, name, lineno, "write `%s URL` (one URL, no spaces)", keys[k]);
    }
    char **slot = slot_of(s, k);
    if (*slot != NULL) {
        return line_fail(err, name, lineno, "%s is given twice (remove one)", keys[k]);
    }
    struct moat_err uerr = {0};
    if (!moat_ok(moat_crlurl_check(w[1], &uerr))) {
        return line_fail(err, name, lineno, "%s (fix it with `moat ca set --%s URL`)", uerr.msg,
                         k == 0 ? "crl-url" : "root-crl-url");
    }
    *slot = strdup(w[1]);
    if (*slot == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

moat_rc moat_crlurl_parse(const char *text, size_t len, const char *name,
                          struct moat_crlurl_settings *out, struct moat_err *err)
{
    *out = (struct moat_crlurl_settings){0};
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (memchr(copy, '\0', len) != NULL) {
        free(copy);
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s holds a NUL byte: it is not a settings text file", name);
    }
    moat_rc rc = MOAT_RC_OK;
    int lineno = 0;
    for (char *line = copy; line != NULL && moat_ok(rc);) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        size_t ll = strlen(line);
        if (ll > 0 && line[ll - 1] == '\r') {
            line[ll - 1] = '\0';
        }
        rc = parse_line(line, name, ++lineno, out, err);
        line = nl ? nl + 1 : NULL;
    }
    free(copy);
    if (!moat_ok(rc)) {
        moat_crlurl_clear(out);
    }
    return rc;
}

moat_rc moat_crlurl_load(const char *ca_dir, struct moat_crlurl_settings *out, struct moat_err *err)
{
    *out = (struct moat_crlurl_settings){0};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", ca_dir, MOAT_CRLURL_FILE);
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err tmp = {0};
    moat_rc rc = moat_fs_read_file(path, SETTINGS_MAX, &data, &len, &tmp);
    if (rc.kind == MOAT_E_NOTFOUND) {
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        if (err != NULL) {
            *err = tmp;
        }
        return rc;
    }
    rc = moat_crlurl_parse((const char *)data, len, path, out, err);
    free(data);
    return rc;
}

moat_rc moat_crlurl_save(const char *ca_dir, const struct moat_crlurl_settings *s,
                         struct moat_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", ca_dir, MOAT_CRLURL_FILE);
    char buf[3 * MOAT_CRLURL_MAX + 512];
    int n = snprintf(buf, sizeof(buf),
                     "# moat CA settings (docs/pki.md); change them with `moat ca set`.\n"
                     "# crl_url: where the intermediate's CRL (crl.pem) is published; every "
                     "certificate it signs points there.\n"
                     "# root_crl_url: where the root's CRL (root-crl.pem) is published; every "
                     "intermediate the root signs points there.\n");
    for (int k = 0; k < 2 && n > 0 && (size_t)n < sizeof(buf); k++) {
        const char *v = k == 0 ? s->crl_url : s->root_crl_url;
        if (v != NULL) {
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s %s\n", keys[k], v);
        }
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "settings too long");
    }
    return moat_fs_write_atomic(path, buf, (size_t)n, 0644, err);
}

/* ---- the extension ---- */

int moat_crlurl_add_ext(X509 *x, const char *url)
{
    /* Built field by field rather than from OpenSSL's config syntax ("URI:..."), which would
     * split a URL at a comma. */
    CRL_DIST_POINTS *cdp = sk_DIST_POINT_new_null();
    DIST_POINT *dp = DIST_POINT_new();
    DIST_POINT_NAME *dpn = DIST_POINT_NAME_new();
    GENERAL_NAMES *full = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
    int ok = cdp != NULL && dp != NULL && dpn != NULL && full != NULL && gn != NULL &&
             uri != NULL && ASN1_STRING_set(uri, url, (int)strlen(url)) == 1;
    if (ok) {
        GENERAL_NAME_set0_value(gn, GEN_URI, uri);
        uri = NULL;
        ok = sk_GENERAL_NAME_push(full, gn) > 0;
    }
    if (ok) {
        gn = NULL;
        dpn->type = 0; /* fullName */
        dpn->name.fullname = full;
        full = NULL;
        dp->distpoint = dpn;
        dpn = NULL;
        ok = sk_DIST_POINT_push(cdp, dp) > 0;
    }
    if (ok) {
        dp = NULL;
        ok = X509_add1_ext_i2d(x, NID_crl_distribution_points, cdp, 0, X509V3_ADD_DEFAULT) == 1;
    }
    ASN1_IA5STRING_free(uri);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(full);
    DIST_POINT_NAME_free(dpn);
    DIST_POINT_free(dp);
    CRL_DIST_POINTS_free(cdp);
    return ok;
}

int moat_crlurl_of(X509 *x, char *buf, size_t n)
{
    if (n > 0) {
        buf[0] = '\0';
    }
    CRL_DIST_POINTS *cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    int found = 0;
    for (int i = 0; cdp != NULL && !found && i < sk_DIST_POINT_num(cdp); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(cdp, i);
        if (dp->distpoint == NULL || dp->distpoint->type != 0) {
            continue;
        }
        GENERAL_NAMES *full = dp->distpoint->name.fullname;
        for (int j = 0; !found && j < sk_GENERAL_NAME_num(full); j++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(full, j);
            if (gn->type != GEN_URI || n == 0) {
                continue;
            }
            const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
            size_t len = (size_t)ASN1_STRING_length(s);
            if (len >= n) {
                len = n - 1;
            }
            memcpy(buf, ASN1_STRING_get0_data(s), len);
            buf[len] = '\0';
            found = 1;
        }
    }
    CRL_DIST_POINTS_free(cdp);
    ERR_clear_error();
    return found;
}
