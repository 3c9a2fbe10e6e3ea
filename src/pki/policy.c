/*
 * policy.c: the CA's signing policy file and name constraints (see policy.h for the format).
 *
 * Rules compare sets of names, not strings: an allow rule must contain every host a requested
 * name covers, and a deny rule refuses a name that covers any host it lists. So "deny
 * admin.example.com" refuses "*.example.com" too, since that wildcard would be accepted by
 * browsers for admin.example.com (RFC 6125 §6.4.3: "*" stands for exactly one label).
 */
#include "pki/policy.h"

#include "pki/fsutil.h"
#include "pki/names.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#define POLICY_FILE_MAX (64 * 1024)
#define POLICY_DAYS_MAX 36500

enum rule_kind {
    R_DNS_EXACT = 0,
    R_DNS_BELOW,    /* "*.example.com": text holds ".example.com" */
    R_IP,           /* ip/prefix */
    R_EMAIL_EXACT,  /* text holds the address */
    R_EMAIL_DOMAIN, /* "*@example.com": text holds "@example.com" */
    R_URI_EXACT,
    R_URI_PREFIX, /* text holds the part before the '*' */
};

struct moat_policy_rule {
    int allow; /* 1 allow, 0 deny */
    enum rule_kind kind;
    char *text;           /* owned; lower-cased for DNS rules */
    unsigned char ip[16]; /* R_IP: the network, iplen bytes */
    int iplen;            /* 4 or 16 */
    int prefix;           /* R_IP: prefix length in bits */
    int line;             /* in the policy file, for messages */
    char shown[128];      /* the rule as written, for messages */
};

void moat_policy_free(struct moat_policy *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].text);
    }
    free(p->rules);
    free(p);
}

/* Parse "addr", "[v6]" or "addr/len" into bytes and a prefix length; 0 when not an address. */
static int parse_cidr(const char *s, unsigned char ip[16], int *iplen, int *prefix)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    if (len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, s, len + 1);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash != NULL) {
        char *end = NULL;
        *slash = '\0';
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || errno != 0 || bits < 0) {
            return 0;
        }
    }
    char *a = buf;
    size_t alen = strlen(a);
    if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
        a[alen - 1] = '\0';
        a++;
    }
    if (inet_pton(AF_INET, a, ip) == 1) {
        *iplen = 4;
    } else if (inet_pton(AF_INET6, a, ip) == 1) {
        *iplen = 16;
    } else {
        return 0;
    }
    if (bits > *iplen * 8) {
        return 0;
    }
    *prefix = bits < 0 ? *iplen * 8 : (int)bits;
    return 1;
}

static int ip_in(const unsigned char *net, int netlen, int prefix, const unsigned char *ip,
                 int iplen)
{
    if (netlen != iplen) {
        return 0;
    }
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(net, ip, (size_t)full) != 0) {
        return 0;
    }
    if (rest == 0) {
        return 1;
    }
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (net[full] & mask) == (ip[full] & mask);
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p != NULL && *p != '\0'; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    return d;
}

/* Turn one pattern into a rule; 0 when the pattern is not understood. */
static int rule_from_pattern(struct moat_policy_rule *r, const char *pat)
{
    size_t len = strlen(pat);
    if (parse_cidr(pat, r->ip, &r->iplen, &r->prefix)) {
        r->kind = R_IP;
        return 1;
    }
    if (len > 2 && pat[0] == '*' && pat[1] == '.' && moat_name_kind_of(pat) == MOAT_NAME_DNS) {
        r->kind = R_DNS_BELOW;
        r->text = lower_dup(pat + 1);
        return r->text != NULL;
    }
    if (strchr(pat, '*') == NULL && moat_name_kind_of(pat) == MOAT_NAME_DNS) {
        r->kind = R_DNS_EXACT;
        r->text = lower_dup(pat);
        return r->text != NULL;
    }
    if (len > 2 && pat[0] == '*' && pat[1] == '@') {
        char probe[300];
        snprintf(probe, sizeof(probe), "x%s", pat + 1);
        if (len > 250 || moat_name_kind_of(probe) != MOAT_NAME_EMAIL) {
            return 0;
        }
        r->kind = R_EMAIL_DOMAIN;
        r->text = lower_dup(pat + 1);
        return r->text != NULL;
    }
    if (moat_name_kind_of(pat) == MOAT_NAME_EMAIL) {
        r->kind = R_EMAIL_EXACT;
        r->text = strdup(pat);
        return r->text != NULL;
    }
    if (len > 1 && pat[len - 1] == '*' && strchr(pat, '*') == pat + len - 1) {
        char *prefix = strndup(pat, len - 1);
        int ok = prefix != NULL && moat_name_kind_of(pat) == MOAT_NAME_URI;
        if (!ok) {
            free(prefix);
            return 0;
        }
        r->kind = R_URI_PREFIX;
        r->text = prefix;
        return 1;
    }
    if (moat_name_kind_of(pat) == MOAT_NAME_URI) {
        r->kind = R_URI_EXACT;
        r->text = strdup(pat);
        return r->text != NULL;
    }
    return 0;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcasecmp(s + a - b, suffix) == 0;
}

/* The domain of an e-mail address, with its '@'. */
static const char *mail_domain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at : "";
}

/*
 * Does rule r touch `name`? For an allow rule: is every host `name` covers inside r? For a deny
 * rule: does `name` cover any host r lists? The two differ only for a wildcard name against an
 * exact DNS rule.
 */
static int rule_matches(const struct moat_policy_rule *r, const char *name, enum moat_name_kind k)
{
    switch (r->kind) {
    case R_DNS_EXACT:
        if (k != MOAT_NAME_DNS) {
            return 0;
        }
        if (strcasecmp(name, r->text) == 0) {
            return 1;
        }
        /* deny a.example.com vs name *.example.com: the wildcard covers a.example.com. */
        if (!r->allow && name[0] == '*') {
            const char *dot = strchr(r->text, '.');
            return dot != NULL && strcasecmp(dot, name + 1) == 0;
        }
        return 0;
    case R_DNS_BELOW:
        /* "*.c" covers L.c, which is below b exactly when c is b or below b: either way the
         * name's text ends with ".b", the same test as for a plain name. */
        return k == MOAT_NAME_DNS && ends_with_ci(name, r->text);
    case R_IP: {
        unsigned char ip[16];
        int iplen = 0, prefix = 0;
        return k == MOAT_NAME_IP && parse_cidr(name, ip, &iplen, &prefix) &&
               ip_in(r->ip, r->iplen, r->prefix, ip, iplen);
    }
    case R_EMAIL_EXACT: {
        /* RFC 5321 §2.4: the local part is case-sensitive, the domain is not. */
        const char *a = mail_domain(name), *b = mail_domain(r->text);
        return k == MOAT_NAME_EMAIL && a - name == b - r->text &&
               strncmp(name, r->text, (size_t)(a - name)) == 0 && strcasecmp(a, b) == 0;
    }
    case R_EMAIL_DOMAIN:
        return k == MOAT_NAME_EMAIL && strcasecmp(mail_domain(name), r->text) == 0;
    case R_URI_EXACT:
        return k == MOAT_NAME_URI && strcmp(name, r->text) == 0;
    case R_URI_PREFIX:
        return k == MOAT_NAME_URI && strncmp(name, r->text, strlen(r->text)) == 0;
    default:
        return 0;
    }
}

static int parse_yes_no(const char *s, int *out)
{
    if (strcmp(s, "yes") == 0 || strcmp(s, "on") == 0) {
        *out = 1;
        return 1;
    }
    if (strcmp(s, "no") == 0 || strcmp(s, "off") == 0) {
        *out = 0;
        return 1;
    }
    return 0;
}

/* Split a line into at most 3 words in place; returns the count (3 means "too many"). */
static int split_words(char *line, char *words[3])
{
    int n = 0;
    char *p = line;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0' || (*p == '#')) {
            break;
        }
        if (n == 3) {
            return 3;
        }
        words[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return n;
}

static moat_rc add_rule(struct moat_policy *p, int allow, const char *pat, int line,
                        const char *name, struct moat_err *err)
{
    struct moat_policy_rule r = {.allow = allow, .line = line};
    if (!rule_from_pattern(&r, pat)) {
        free(r.text);
        moat_err_where(err, "%s:%d", name, line);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "\"%.100s\" is not a pattern moat understands: use example.com, *.example.com, "
                  "10.0.0.0/8, *@example.com, a@example.com or scheme://prefix*",
                  pat);
    }
    snprintf(r.shown, sizeof(r.shown), "%s %.100s", allow ? "allow" : "deny", pat);
    struct moat_policy_rule *grown = realloc(p->rules, (p->nrules + 1) * sizeof(*grown));
    if (grown == NULL) {
        free(r.text);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    p->rules = grown;
    p->rules[p->nrules++] = r;
    return MOAT_RC_OK;
}

static moat_rc parse_line(struct moat_policy *p, char *line, int lineno, const char *name,
                          struct moat_err *err)
{
    char *w[3] = {NULL, NULL, NULL};
    int n = split_words(line, w);
    if (n == 0) {
        return MOAT_RC_OK;
    }
    if (n != 2) {
        moat_err_where(err, "%s:%d", name, lineno);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "each line is a keyword and one value (allow PATTERN, deny PATTERN, max_days N, "
                  "server yes|no, client yes|no), not %d words",
                  n);
    }
    if (strcmp(w[0], "allow") == 0 || strcmp(w[0], "deny") == 0) {
        return add_rule(p, w[0][0] == 'a', w[1], lineno, name, err);
    }
    if (strcmp(w[0], "max_days") == 0) {
        char *end = NULL;
        errno = 0;
        long d = strtol(w[1], &end, 10);
        if (*end != '\0' || errno != 0 || d < 1 || d > POLICY_DAYS_MAX) {
            moat_err_where(err, "%s:%d", name, lineno);
            MOAT_FAIL(err, MOAT_E_CONFIG, "max_days takes a number of days from 1 to %d",
                      POLICY_DAYS_MAX);
        }
        p->max_days = (int)d;
        return MOAT_RC_OK;
    }
    int *flag = strcmp(w[0], "server") == 0   ? &p->allow_server
                : strcmp(w[0], "client") == 0 ? &p->allow_client
                                              : NULL;
    if (flag != NULL && parse_yes_no(w[1], flag)) {
        return MOAT_RC_OK;
    }
    moat_err_where(err, "%s:%d", name, lineno);
    if (flag != NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s takes yes or no", w[0]);
    }
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "unknown keyword \"%.40s\": use allow, deny, max_days, server or client", w[0]);
}

moat_rc moat_policy_parse(const char *text, size_t len, const char *name, struct moat_policy **out,
                          struct moat_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = MOAT_POLICY_FILE;
    }
    struct moat_policy *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    p->allow_server = 1;
    p->allow_client = 1;
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char line[512];
        if (llen >= sizeof(line) || memchr(text + pos, '\0', llen) != NULL) {
            moat_policy_free(p);
            moat_err_where(err, "%s:%d", name, lineno);
            MOAT_FAIL(err, MOAT_E_CONFIG, "line too long or not text");
        }
        memcpy(line, text + pos, llen);
        line[llen] = '\0';
        if (llen > 0 && line[llen - 1] == '\r') {
            line[llen - 1] = '\0';
        }
        moat_rc rc = parse_line(p, line, lineno, name, err);
        if (!moat_ok(rc)) {
            moat_policy_free(p);
            return rc;
        }
        pos += llen + 1;
    }
    *out = p;
    return MOAT_RC_OK;
}

moat_rc moat_policy_load(const char *ca_dir, struct moat_policy **out, struct moat_err *err)
{
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof(path), "%s/%s", ca_dir, MOAT_POLICY_FILE);
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err tmp = {0};
    moat_rc rc = moat_fs_read_file(path, POLICY_FILE_MAX, &data, &len, &tmp);
    if (rc.kind == MOAT_E_NOTFOUND) {
        return moat_policy_parse("", 0, path, out, err);
    }
    if (!moat_ok(rc)) {
        if (err != NULL) {
            *err = tmp;
        }
        return rc;
    }
    rc = moat_policy_parse((const char *)data, len, path, out, err);
    free(data);
    return rc;
}

moat_rc moat_policy_check(const struct moat_policy *p, const char *policy_name,
                          const char *const *names, size_t n, int days, int client,
                          struct moat_err *err)
{
    if (p == NULL) {
        return MOAT_RC_OK;
    }
    const char *where = policy_name ? policy_name : MOAT_POLICY_FILE;
    if (client && !p->allow_client) {
        moat_err_where(err, "%s", where);
        MOAT_FAIL(err, MOAT_E_USAGE, "this CA's policy does not allow client certificates");
    }
    if (!client && !p->allow_server) {
        moat_err_where(err, "%s", where);
        MOAT_FAIL(err, MOAT_E_USAGE, "this CA's policy does not allow server certificates");
    }
    if (p->max_days > 0 && days > p->max_days) {
        moat_err_where(err, "%s", where);
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "this CA's policy allows at most %d days of validity, not %d (ask for --days "
                  "%d or less)",
                  p->max_days, days, p->max_days);
    }
    int have_allow = 0;
    for (size_t i = 0; i < p->nrules; i++) {
        have_allow |= p->rules[i].allow;
    }
    for (size_t j = 0; j < n; j++) {
        enum moat_name_kind k = moat_name_kind_of(names[j]);
        const struct moat_policy_rule *allowed = NULL;
        for (size_t i = 0; i < p->nrules; i++) {
            const struct moat_policy_rule *r = &p->rules[i];
            if (!rule_matches(r, names[j], k)) {
                continue;
            }
            if (!r->allow) {
                moat_err_where(err, "%s:%d", where, r->line);
                MOAT_FAIL(err, MOAT_E_USAGE, "this CA's policy refuses \"%.100s\" (rule \"%s\")",
                          names[j], r->shown);
            }
            if (allowed == NULL) {
                allowed = r;
            }
        }
        if (have_allow && allowed == NULL) {
            moat_err_where(err, "%s", where);
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "this CA's policy does not allow \"%.100s\": no allow rule covers it (add "
                      "one to %s, or ask a CA that may sign it)",
                      names[j], where);
        }
    }
    return MOAT_RC_OK;
}

/* ---- name constraints ---- */

static GENERAL_NAME *constraint_name(const char *s)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (gn == NULL) {
        return NULL;
    }
    unsigned char ip[16];
    int iplen = 0, prefix = 0;
    if (parse_cidr(s, ip, &iplen, &prefix)) {
        /* RFC 5280 §4.2.1.10: an iPAddress constraint is the address followed by its mask. */
        unsigned char buf[32] = {0};
        for (int i = 0; i < iplen; i++) {
            int bits = prefix - i * 8;
            unsigned char m = bits >= 8   ? 0xFF
                              : bits <= 0 ? 0
                                          : (unsigned char)(0xFF << (8 - bits));
            buf[i] = ip[i] & m;
            buf[iplen + i] = m;
        }
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        if (os == NULL || ASN1_OCTET_STRING_set(os, buf, iplen * 2) != 1) {
            ASN1_OCTET_STRING_free(os);
            GENERAL_NAME_free(gn);
            return NULL;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
        return gn;
    }
    int type = GEN_DNS;
    const char *v = s;
    if (v[0] == '*' && v[1] == '@') {
        v += 2;
        type = GEN_EMAIL;
    } else if (v[0] == '@') {
        v += 1;
        type = GEN_EMAIL;
    } else if (v[0] == '*' && v[1] == '.') {
        v += 2;
    } else if (v[0] == '.') {
        v += 1;
    }
    /* The DNS form "example.com" covers the domain and every name below it, which is what
     * people mean; the leading-dot form would leave the domain itself out. */
    if (moat_name_kind_of(v) != MOAT_NAME_DNS || strchr(v, '*') != NULL) {
        GENERAL_NAME_free(gn);
        return NULL;
    }
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (ia5 == NULL || ASN1_STRING_set(ia5, v, -1) != 1) {
        ASN1_IA5STRING_free(ia5);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, type, ia5);
    return gn;
}

static int add_subtrees(STACK_OF(GENERAL_SUBTREE) * *list, const char *const *v, size_t n,
                        const char **bad)
{
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *gn = constraint_name(v[i]);
        if (gn == NULL) {
            *bad = v[i];
            return 0;
        }
        GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
        if (*list == NULL) {
            *list = sk_GENERAL_SUBTREE_new_null();
        }
        if (st == NULL || *list == NULL) {
            GENERAL_NAME_free(gn);
            GENERAL_SUBTREE_free(st);
            return 0;
        }
        GENERAL_NAME_free(st->base);
        st->base = gn;
        if (sk_GENERAL_SUBTREE_push(*list, st) <= 0) {
            GENERAL_SUBTREE_free(st);
            return 0;
        }
    }
    return 1;
}

NAME_CONSTRAINTS *moat_policy_constraints_new(const char *const *permit, size_t npermit,
                                              const char *const *exclude, size_t nexclude,
                                              moat_rc *rc, struct moat_err *err)
{
    *rc = MOAT_RC_OK;
    if (npermit == 0 && nexclude == 0) {
        return NULL;
    }
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    const char *bad = NULL;
    if (nc == NULL || !add_subtrees(&nc->permittedSubtrees, permit, npermit, &bad) ||
        !add_subtrees(&nc->excludedSubtrees, exclude, nexclude, &bad)) {
        NAME_CONSTRAINTS_free(nc);
        ERR_clear_error();
        if (bad != NULL) {
            *rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                               "\"%.100s\" is not a name constraint moat understands: use a DNS "
                               "domain (example.com covers it and every name below), an address "
                               "range (10.0.0.0/8) or a mail domain (@example.com)",
                               bad);
        } else {
            *rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
        return NULL;
    }
    return nc;
}

static const char *cn_of(X509 *x, char *buf, size_t n)
{
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)n) < 0) {
        snprintf(buf, n, "(no name)");
    }
    return buf;
}

moat_rc moat_policy_check_constraints(X509 *const *cas, size_t ncas, const char *const *names,
                                      size_t n, struct moat_err *err)
{
    for (size_t c = 0; c < ncas; c++) {
        NAME_CONSTRAINTS *nc = X509_get_ext_d2i(cas[c], NID_name_constraints, NULL, NULL);
        ERR_clear_error();
        if (nc == NULL) {
            continue;
        }
        moat_rc rc = MOAT_RC_OK;
        for (size_t i = 0; moat_ok(rc) && i < n; i++) {
            /* A throw-away certificate holding just this name, so the failure names it. */
            X509 *probe = X509_new();
            GENERAL_NAMES *gens = moat_names_to_general(&names[i], 1);
            int ok =
                probe != NULL && gens != NULL &&
                X509_add1_ext_i2d(probe, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
            /* NAME_CONSTRAINTS_check reads the SANs OpenSSL caches when it first looks at
             * a certificate's extensions: make it look now, after the SAN was added. */
            if (ok) {
                X509_get_extension_flags(probe);
            }
            int v = ok ? NAME_CONSTRAINTS_check(probe, nc) : -1;
            GENERAL_NAMES_free(gens);
            X509_free(probe);
            ERR_clear_error();
            char cn[128];
            if (v == X509_V_OK) {
                continue;
            }
            if (v < 0) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            } else if (v == X509_V_ERR_EXCLUDED_VIOLATION) {
                rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                                  "\"%.100s\" is excluded by the name constraints of CA \"%s\": "
                                  "clients would refuse the certificate",
                                  names[i], cn_of(cas[c], cn, sizeof(cn)));
            } else {
                rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                                  "\"%.100s\" is outside the names CA \"%s\" may sign (its name "
                                  "constraints): clients would refuse the certificate",
                                  names[i], cn_of(cas[c], cn, sizeof(cn)));
            }
        }
        NAME_CONSTRAINTS_free(nc);
        MOAT_TRY(rc);
    }
    return MOAT_RC_OK;
}
