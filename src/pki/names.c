/*
 * names.c: classify, check and convert the names a certificate is for.
 *
 * The checks are strict on purpose: a name that a browser or curl would never match is refused
 * when the certificate is made, with the reason, instead of producing a certificate that fails
 * later with a vague "name mismatch".
 */
#include "pki/names.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#define NAME_MAX_BYTES 1024

/* An IP literal, with the brackets of "[v6]" removed into buf; 1 when it is one. */
static int ip_literal(const char *name, char *buf, size_t n)
{
    size_t len = strlen(name);
    if (len >= n) {
        return 0;
    }
    if (len >= 2 && name[0] == '[' && name[len - 1] == ']') {
        memcpy(buf, name + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, name, len + 1);
    }
    unsigned char ip[16];
    return inet_pton(AF_INET, buf, ip) == 1 || inet_pton(AF_INET6, buf, ip) == 1;
}

/* RFC 1035 §2.3.1 host name of `len` bytes, with an optional "*." leftmost label when
 * `wildcard_ok`. The last label may not be all digits (RFC 3696 §2), so "1.2.3.4.5" is not
 * taken for a host name. */
static int valid_dns(const char *name, size_t len, int wildcard_ok)
{
    if (len == 0 || len > 253) {
        return 0;
    }
    const char *p = name, *end = name + len;
    if (wildcard_ok && len >= 2 && p[0] == '*' && p[1] == '.') {
        p += 2;
        if (memchr(p, '.', (size_t)(end - p)) == NULL) {
            return 0; /* "*.com" would cover a whole top-level domain */
        }
    }
    size_t label = 0;
    int digits_only = 1;
    for (; p < end; p++) {
        char ch = *p;
        if (ch == '.') {
            if (label == 0 || p[-1] == '-') {
                return 0;
            }
            label = 0;
            digits_only = 1;
            continue;
        }
        int digit = ch >= '0' && ch <= '9';
        int ok = digit || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch == '-' && label > 0);
        if (!ok || ++label > 63) {
            return 0;
        }
        digits_only = digits_only && digit;
    }
    return label > 0 && p[-1] != '-' && !digits_only;
}

static int printable_no_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            return 0;
        }
    }
    return len > 0;
}

/* RFC 5321 §4.1.2 mailbox, ASCII only: a local part (no '@', at most 64 bytes) and a domain. */
static int valid_email(const char *name, size_t len)
{
    const char *at = memchr(name, '@', len);
    if (at == NULL) {
        return 0;
    }
    size_t local = (size_t)(at - name);
    const char *dom = at + 1;
    size_t dlen = len - local - 1;
    return local > 0 && local <= 64 && printable_no_space(name, local) &&
           memchr(dom, '@', dlen) == NULL && valid_dns(dom, dlen, 0);
}

/* RFC 3986 §3.1 scheme, then "://" or (for "urn:") anything printable. */
static int valid_uri(const char *name, size_t len)
{
    size_t i = 0;
    if (len == 0 || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'))) {
        return 0;
    }
    while (i < len && name[i] != ':') {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '+' || ch == '-' || ch == '.';
        if (!ok) {
            return 0;
        }
        i++;
    }
    if (i == len || !printable_no_space(name, len)) {
        return 0;
    }
    /* "host:8443" must not pass for a URI: ask for an authority ("//") or a URN. */
    int urn = i == 3 && strncmp(name, "urn", 3) == 0;
    int authority = len > i + 3 && name[i + 1] == '/' && name[i + 2] == '/';
    return urn ? len > 4 : authority;
}

enum moat_name_kind moat_name_kind_of(const char *name)
{
    if (name == NULL) {
        return MOAT_NAME_INVALID;
    }
    size_t len = strnlen(name, NAME_MAX_BYTES + 1);
    if (len == 0 || len > NAME_MAX_BYTES) {
        return MOAT_NAME_INVALID;
    }
    char buf[INET6_ADDRSTRLEN + 2];
    if (ip_literal(name, buf, sizeof(buf))) {
        return MOAT_NAME_IP;
    }
    if (valid_dns(name, len, 1)) {
        return MOAT_NAME_DNS;
    }
    if (valid_email(name, len)) {
        return MOAT_NAME_EMAIL;
    }
    if (valid_uri(name, len)) {
        return MOAT_NAME_URI;
    }
    return MOAT_NAME_INVALID;
}

const char *moat_name_kind_word(enum moat_name_kind k)
{
    switch (k) {
    case MOAT_NAME_DNS:
        return "DNS name";
    case MOAT_NAME_IP:
        return "IP address";
    case MOAT_NAME_EMAIL:
        return "e-mail address";
    case MOAT_NAME_URI:
        return "URI";
    case MOAT_NAME_INVALID:
    case MOAT_NAME_KIND_COUNT:
    default:
        return "invalid name";
    }
}

moat_rc moat_names_check(const char *const *names, size_t n, int client, struct moat_err *err)
{
    if (n == 0 || n > MOAT_NAMES_MAX) {
        MOAT_FAIL(err, MOAT_E_USAGE, "a certificate needs 1 to %d names, not %zu", MOAT_NAMES_MAX,
                  n);
    }
    for (size_t i = 0; i < n; i++) {
        enum moat_name_kind k = moat_name_kind_of(names[i]);
        if (names[i] == NULL) {
            MOAT_FAIL(err, MOAT_E_USAGE, "name #%zu is missing", i + 1);
        }
        if (k == MOAT_NAME_INVALID) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "\"%.100s\" is not a valid name: use a DNS name (letters, digits and "
                      "hyphens, dot-separated, optionally starting with \"*.\"), an IP address%s",
                      names[i], client ? ", an e-mail address or a URI (scheme://...)" : "");
        }
        if (!client && (k == MOAT_NAME_EMAIL || k == MOAT_NAME_URI)) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "\"%.100s\" is an %s: a server certificate holds only DNS names and IP "
                      "addresses (use --client for a client certificate)",
                      names[i], moat_name_kind_word(k));
        }
    }
    return MOAT_RC_OK;
}

static GENERAL_NAME *general_for(const char *name)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (gn == NULL) {
        return NULL;
    }
    enum moat_name_kind k = moat_name_kind_of(name);
    if (k == MOAT_NAME_IP) {
        char buf[INET6_ADDRSTRLEN + 2];
        ASN1_OCTET_STRING *ip = ip_literal(name, buf, sizeof(buf)) ? a2i_IPADDRESS(buf) : NULL;
        if (ip == NULL) {
            GENERAL_NAME_free(gn);
            return NULL;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
        return gn;
    }
    int type = k == MOAT_NAME_EMAIL ? GEN_EMAIL : k == MOAT_NAME_URI ? GEN_URI : GEN_DNS;
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (k == MOAT_NAME_INVALID || s == NULL || ASN1_STRING_set(s, name, -1) != 1) {
        ASN1_IA5STRING_free(s);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    return gn;
}

GENERAL_NAMES *moat_names_to_general(const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    for (size_t i = 0; gens != NULL && i < n; i++) {
        GENERAL_NAME *gn = general_for(names[i]);
        if (gn == NULL || sk_GENERAL_NAME_push(gens, gn) <= 0) {
            GENERAL_NAME_free(gn);
            GENERAL_NAMES_free(gens);
            ERR_clear_error();
            return NULL;
        }
    }
    return gens;
}

void moat_names_free(char **names, size_t n)
{
    if (names == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* The IA5 text of a string-typed name, or NULL when it holds a NUL (an old attack on name
 * checks: "good.com\0.evil.com"). */
static char *ia5_dup(const ASN1_IA5STRING *s)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (p == NULL || len < 0 || memchr(p, '\0', (size_t)len) != NULL) {
        return NULL;
    }
    return strndup((const char *)p, (size_t)len);
}

static char *ip_dup(const ASN1_OCTET_STRING *s)
{
    char buf[INET6_ADDRSTRLEN];
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;
    if (af < 0 || inet_ntop(af, p, buf, sizeof(buf)) == NULL) {
        return NULL;
    }
    return strdup(buf);
}

moat_rc moat_names_from_general(const GENERAL_NAMES *gens, char ***out, size_t *n, size_t *skipped,
                                struct moat_err *err)
{
    *out = NULL;
    *n = 0;
    size_t skip = 0;
    int count = gens ? sk_GENERAL_NAME_num(gens) : 0;
    char **v = calloc(count > 0 ? (size_t)count : 1, sizeof(*v));
    if (v == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        char *s = NULL;
        switch (gn->type) {
        case GEN_DNS:
        case GEN_EMAIL:
        case GEN_URI:
            s = ia5_dup(gn->d.ia5);
            break;
        case GEN_IPADD:
            s = ip_dup(gn->d.ip);
            break;
        default:
            break;
        }
        if (s == NULL) {
            skip++;
            continue;
        }
        v[used++] = s;
    }
    if (skipped != NULL) {
        *skipped = skip;
    }
    *out = v;
    *n = used;
    return MOAT_RC_OK;
}

const char *moat_name_general_str(const GENERAL_NAME *gn, char *buf, size_t n)
{
    char *s = NULL;
    switch (gn->type) {
    case GEN_DNS:
        s = ia5_dup(gn->d.ia5);
        snprintf(buf, n, "DNS:%s", s ? s : "(contains a NUL byte)");
        break;
    case GEN_EMAIL:
        s = ia5_dup(gn->d.ia5);
        snprintf(buf, n, "email:%s", s ? s : "(contains a NUL byte)");
        break;
    case GEN_URI:
        s = ia5_dup(gn->d.ia5);
        snprintf(buf, n, "URI:%s", s ? s : "(contains a NUL byte)");
        break;
    case GEN_IPADD:
        s = ip_dup(gn->d.ip);
        snprintf(buf, n, "IP:%s", s ? s : "(malformed address)");
        break;
    case GEN_DIRNAME: {
        char dn[200] = "";
        X509_NAME_oneline(gn->d.dirn, dn, sizeof(dn));
        snprintf(buf, n, "dirName:%s", dn);
        break;
    }
    case GEN_OTHERNAME:
        snprintf(buf, n, "otherName");
        break;
    case GEN_RID:
        snprintf(buf, n, "registeredID");
        break;
    default:
        snprintf(buf, n, "(name of type %d)", gn->type);
        break;
    }
    free(s);
    return buf;
}
