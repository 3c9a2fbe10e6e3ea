/*
 * crl.c: the CA's index of issued and revoked certificates, and CRLs made from it.
 *
 * The index is small text that people can read and grep; it is always rewritten whole through
 * moat_fs_write_atomic while the CA folder's lock is held (see crl.h for the format). The
 * serial number is the key: RFC 5280 §5.3 identifies a revoked certificate by issuer + serial,
 * and moat's serials are 128 random bits, so they do not collide.
 */
#include "pki/crl.h"

#include "pki/fsutil.h"
#include "pki/key.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define INDEX_MAX (64 * 1024 * 1024)
#define CRL_FILE_MAX (64 * 1024 * 1024)
#define CRL_DAYS_MAX 365

static const struct {
    const char *name;
    const char *alias;
} reasons[MOAT_CRL_REASON_COUNT] = {
    [MOAT_CRL_UNSPECIFIED] = {"unspecified", "unspecified"},
    [MOAT_CRL_KEY_COMPROMISE] = {"key-compromise", "keyCompromise"},
    [MOAT_CRL_CA_COMPROMISE] = {"ca-compromise", "cACompromise"},
    [MOAT_CRL_AFFILIATION_CHANGED] = {"affiliation-changed", "affiliationChanged"},
    [MOAT_CRL_SUPERSEDED] = {"superseded", "superseded"},
    [MOAT_CRL_CESSATION] = {"cessation-of-operation", "cessationOfOperation"},
};

moat_rc moat_crl_reason_parse(const char *s, enum moat_crl_reason *out, struct moat_err *err)
{
    for (int i = 0; s != NULL && i < MOAT_CRL_REASON_COUNT; i++) {
        if (strcasecmp(s, reasons[i].name) == 0 || strcasecmp(s, reasons[i].alias) == 0) {
            *out = (enum moat_crl_reason)i;
            return MOAT_RC_OK;
        }
    }
    MOAT_FAIL(err, MOAT_E_USAGE,
              "unknown revocation reason \"%.64s\": use unspecified, key-compromise, "
              "ca-compromise, affiliation-changed, superseded or cessation-of-operation",
              s ? s : "");
}

const char *moat_crl_reason_name(enum moat_crl_reason r)
{
    if ((unsigned)r >= MOAT_CRL_REASON_COUNT) {
        return "unspecified";
    }
    return reasons[r].name;
}

/* ---- index text ---- */

static void time_field(time_t t, char *buf, size_t n)
{
    struct tm tm;
    if (t == 0 || gmtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y%m%d%H%M%SZ", &tm) == 0) {
        snprintf(buf, n, "-");
    }
}

static int parse_time_field(const char *s, time_t *out)
{
    if (strcmp(s, "-") == 0) {
        *out = 0;
        return 1;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y%m%d%H%M%SZ", &tm);
    if (end == NULL || *end != '\0') {
        return 0;
    }
    *out = timegm(&tm);
    return 1;
}

static int hex_field_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n >= max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* Split `line` at tabs into exactly 7 fields; 0 when the count differs. */
static int split7(char *line, char *f[7])
{
    int n = 0;
    char *p = line;
    while (n < 7) {
        f[n++] = p;
        char *tab = strchr(p, '\t');
        if (tab == NULL) {
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    return n == 7 && strchr(f[6], '\t') == NULL;
}

static moat_rc parse_entry(char *line, const char *path, int lineno, struct moat_crl_entry *e,
                           struct moat_err *err)
{
    char *f[7];
    memset(e, 0, sizeof(*e));
    enum moat_crl_reason reason = MOAT_CRL_UNSPECIFIED;
    int ok = split7(line, f) && (strcmp(f[0], "V") == 0 || strcmp(f[0], "R") == 0) &&
             hex_field_ok(f[1], sizeof(e->serial)) && parse_time_field(f[2], &e->not_after) &&
             parse_time_field(f[3], &e->revoked_at) &&
             (strcmp(f[4], "-") == 0 || moat_ok(moat_crl_reason_parse(f[4], &reason, NULL))) &&
             hex_field_ok(f[5], sizeof(e->issuer_kid));
    ok = ok && (f[0][0] == 'R') == (e->revoked_at != 0);
    if (!ok) {
        moat_err_where(err, "%s:%d", path, lineno);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s line %d is not a valid index entry (7 tab-separated fields: V or R, serial, "
                  "not-after, revoked-at, reason, issuer key id, subject): fix or remove the line",
                  path, lineno);
    }
    e->revoked = f[0][0] == 'R';
    e->reason = reason;
    snprintf(e->serial, sizeof(e->serial), "%s", f[1]);
    snprintf(e->issuer_kid, sizeof(e->issuer_kid), "%s", f[5]);
    snprintf(e->subject, sizeof(e->subject), "%s", f[6]);
    return MOAT_RC_OK;
}

moat_rc moat_crl_index_read(const char *ca_dir, struct moat_crl_entry **out, size_t *n,
                            struct moat_err *err)
{
    char path[PATH_MAX];
    *out = NULL;
    *n = 0;
    snprintf(path, sizeof(path), "%s/%s", ca_dir, MOAT_CRL_INDEX_FILE);
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err tmp = {0};
    moat_rc rc = moat_fs_read_file(path, INDEX_MAX, &data, &len, &tmp);
    if (rc.kind == MOAT_E_NOTFOUND) {
        *out = calloc(1, sizeof(**out));
        if (*out == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        if (err != NULL) {
            *err = tmp;
        }
        return rc;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) {
        lines += data[i] == '\n';
    }
    struct moat_crl_entry *v = calloc(lines, sizeof(*v));
    if (v == NULL) {
        free(data);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t used = 0, pos = 0;
    int lineno = 0;
    rc = MOAT_RC_OK;
    while (pos < len && moat_ok(rc)) {
        char *line = (char *)data + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        line[ll] = '\0'; /* the NUL after the data, or the newline */
        pos += ll + 1;
        lineno++;
        if (ll > 0 && line[ll - 1] == '\r') {
            line[ll - 1] = '\0';
        }
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        rc = parse_entry(line, path, lineno, &v[used], err);
        used += moat_ok(rc);
    }
    free(data);
    if (!moat_ok(rc)) {
        free(v);
        return rc;
    }
    *out = v;
    *n = used;
    return MOAT_RC_OK;
}

static moat_rc index_write(const char *ca_dir, const struct moat_crl_entry *v, size_t n,
                           struct moat_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", ca_dir, MOAT_CRL_INDEX_FILE);
    static const char head[] =
        "# moat CA index: every certificate this CA issued or revoked, one per line.\n"
        "# status (V valid, R revoked)\tserial\tnot-after\trevoked-at\treason\tissuer key "
        "id\tsubject\n";
    size_t cap = sizeof(head) + n * 512;
    char *buf = malloc(cap);
    if (buf == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t used = (size_t)snprintf(buf, cap, "%s", head);
    for (size_t i = 0; i < n; i++) {
        char na[32], ra[32];
        time_field(v[i].not_after, na, sizeof(na));
        time_field(v[i].revoked_at, ra, sizeof(ra));
        int w = snprintf(buf + used, cap - used, "%c\t%s\t%s\t%s\t%s\t%s\t%s\n",
                         v[i].revoked ? 'R' : 'V', v[i].serial, na, ra,
                         v[i].revoked ? moat_crl_reason_name(v[i].reason) : "-", v[i].issuer_kid,
                         v[i].subject);
        if (w < 0 || (size_t)w >= cap - used) {
            free(buf);
            MOAT_FAIL(err, MOAT_E_INTERNAL, "index line too long");
        }
        used += (size_t)w;
    }
    moat_rc rc = moat_fs_write_atomic(path, buf, used, 0644, err);
    free(buf);
    return rc;
}

/* ---- entries from certificates ---- */

static void hex_of(const unsigned char *p, size_t len, char *out, size_t n)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        out[j++] = digits[p[i] >> 4];
        out[j++] = digits[p[i] & 15];
    }
    out[j] = '\0';
}

static int serial_hex(X509 *x, char *out, size_t n)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    int ok = h != NULL && strlen(h) < n && h[0] != '-';
    if (ok) {
        snprintf(out, n, "%s", h);
    }
    OPENSSL_free(h);
    BN_free(bn);
    return ok;
}

/* The CA's key identifier (its SKI, or a SHA-1 of its key when it has none). */
static void key_id_hex(X509 *ca_cert, char *out, size_t n)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca_cert);
    if (ski != NULL) {
        hex_of(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski), out, n);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_pubkey_digest(ca_cert, EVP_sha1(), md, &len) != 1) {
        ERR_clear_error();
        snprintf(out, n, "00");
        return;
    }
    hex_of(md, len, out, n);
}

static void subject_text(X509 *x, char *out, size_t n)
{
    X509_NAME_oneline(X509_get_subject_name(x), out, (int)n);
    for (char *p = out; *p != '\0'; p++) {
        if (*p == '\t' || *p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
}

static moat_rc entry_of(X509 *x, X509 *issuer, struct moat_crl_entry *e, struct moat_err *err)
{
    memset(e, 0, sizeof(*e));
    if (!serial_hex(x, e->serial, sizeof(e->serial))) {
        ERR_clear_error();
        MOAT_FAIL(err, MOAT_E_CERT, "the certificate's serial number is not usable");
    }
    e->not_after = moat_ca_asn1_time(X509_get0_notAfter(x));
    key_id_hex(issuer, e->issuer_kid, sizeof(e->issuer_kid));
    subject_text(x, e->subject, sizeof(e->subject));
    if (e->subject[0] == '\0') {
        snprintf(e->subject, sizeof(e->subject), "(empty subject)");
    }
    return MOAT_RC_OK;
}

/* Index of the entry for this issuer + serial, or n. */
static size_t find(const struct moat_crl_entry *v, size_t n, const struct moat_crl_entry *e)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].serial, e->serial) == 0 && strcmp(v[i].issuer_kid, e->issuer_kid) == 0) {
            return i;
        }
    }
    return n;
}

/* Read, change with `fn`, write back: all under the folder's lock. */
static moat_rc index_update(const char *dir, const struct moat_crl_entry *e,
                            moat_rc (*fn)(struct moat_crl_entry **v, size_t *n,
                                          const struct moat_crl_entry *e, struct moat_err *err),
                            struct moat_err *err)
{
    int lock = -1;
    MOAT_TRY(moat_fs_lock(dir, &lock, err));
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    moat_rc rc = moat_crl_index_read(dir, &v, &n, err);
    if (moat_ok(rc)) {
        rc = fn(&v, &n, e, err);
    }
    if (moat_ok(rc)) {
        rc = index_write(dir, v, n, err);
    }
    free(v);
    moat_fs_unlock(lock);
    return rc;
}

static moat_rc append(struct moat_crl_entry **v, size_t *n, const struct moat_crl_entry *e,
                      struct moat_err *err)
{
    struct moat_crl_entry *grown = realloc(*v, (*n + 1) * sizeof(*grown));
    if (grown == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    *v = grown;
    grown[(*n)++] = *e;
    return MOAT_RC_OK;
}

static moat_rc add_valid(struct moat_crl_entry **v, size_t *n, const struct moat_crl_entry *e,
                         struct moat_err *err)
{
    if (find(*v, *n, e) < *n) {
        return MOAT_RC_OK; /* recorded already */
    }
    return append(v, n, e, err);
}

static moat_rc mark_revoked(struct moat_crl_entry **v, size_t *n, const struct moat_crl_entry *e,
                            struct moat_err *err)
{
    size_t i = find(*v, *n, e);
    if (i == *n) {
        return append(v, n, e, err);
    }
    if ((*v)[i].revoked) {
        char when[32];
        time_field((*v)[i].revoked_at, when, sizeof(when));
        MOAT_FAIL(err, MOAT_E_USAGE, "certificate %s (%s) was revoked already, at %s (%s)",
                  e->serial, e->subject, when, moat_crl_reason_name((*v)[i].reason));
    }
    (*v)[i].revoked = 1;
    (*v)[i].revoked_at = e->revoked_at;
    (*v)[i].reason = e->reason;
    return MOAT_RC_OK;
}

moat_rc moat_crl_record(const struct moat_ca *ca, X509 *cert, struct moat_err *err)
{
    struct moat_crl_entry e;
    MOAT_TRY(entry_of(cert, ca->cert, &e, err));
    MOAT_TRY_CTX(index_update(ca->dir, &e, add_valid, err), err,
                 "while recording the certificate in %s/%s", ca->dir, MOAT_CRL_INDEX_FILE);
    return MOAT_RC_OK;
}

static int issued_by(X509 *subject, X509 *issuer)
{
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    int ok = X509_check_issued(issuer, subject) == X509_V_OK && pk != NULL &&
             X509_verify(subject, pk) == 1;
    ERR_clear_error();
    return ok;
}

moat_rc moat_crl_revoke(const struct moat_ca *ca, X509 *cert, enum moat_crl_reason reason,
                        time_t now, int *issuer_is_root, struct moat_err *err)
{
    if (now == 0) {
        now = time(NULL);
    }
    X509 *issuer = NULL;
    if (issued_by(cert, ca->cert)) {
        issuer = ca->cert;
    } else if (X509_cmp(cert, ca->root) != 0 && issued_by(cert, ca->root)) {
        issuer = ca->root;
    }
    if (issuer == NULL) {
        char subj[256];
        subject_text(cert, subj, sizeof(subj));
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "%s was not issued by the CA in %s (neither its intermediate nor its root "
                  "signed it): revoke it with the CA that issued it",
                  subj, ca->dir);
    }
    if (issuer_is_root != NULL) {
        *issuer_is_root = issuer == ca->root;
    }
    struct moat_crl_entry e;
    MOAT_TRY(entry_of(cert, issuer, &e, err));
    e.revoked = 1;
    e.revoked_at = now;
    e.reason = reason;
    MOAT_TRY_CTX(index_update(ca->dir, &e, mark_revoked, err), err, "while revoking in %s/%s",
                 ca->dir, MOAT_CRL_INDEX_FILE);
    return MOAT_RC_OK;
}

/* ---- CRLs ---- */

/* The next CRL number, kept in `crlnumber` (decimal). Called with the folder locked. */
static moat_rc next_crl_number(const char *dir, long long *out, struct moat_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, MOAT_CRL_NUMBER_FILE);
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err tmp = {0};
    long long last = 0;
    moat_rc rc = moat_fs_read_file(path, 64, &data, &len, &tmp);
    if (moat_ok(rc)) {
        char *end = NULL;
        errno = 0;
        last = strtoll((const char *)data, &end, 10);
        int ok = end != (char *)data && errno == 0 && last >= 0 && (*end == '\n' || *end == '\0');
        free(data);
        if (!ok) {
            moat_err_where(err, "%s", path);
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "%s should hold the last CRL number (a decimal number): fix it", path);
        }
    } else if (rc.kind != MOAT_E_NOTFOUND) {
        if (err != NULL) {
            *err = tmp;
        }
        return rc;
    }
    char buf[32];
    int w = snprintf(buf, sizeof(buf), "%lld\n", last + 1);
    MOAT_TRY(moat_fs_write_atomic(path, buf, (size_t)w, 0644, err));
    *out = last + 1;
    return MOAT_RC_OK;
}

static const EVP_MD *digest_for(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448")) {
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) > 256) {
        return EVP_PKEY_get_bits(k) > 384 ? EVP_sha512() : EVP_sha384();
    }
    return EVP_sha256();
}

static int add_revoked(X509_CRL *crl, const struct moat_crl_entry *e)
{
    X509_REVOKED *r = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = ASN1_TIME_set(NULL, e->revoked_at);
    int ok = r != NULL && when != NULL && BN_hex2bn(&bn, e->serial) > 0 &&
             (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
             X509_REVOKED_set_serialNumber(r, serial) == 1 &&
             X509_REVOKED_set_revocationDate(r, when) == 1;
    /* RFC 5280 §5.3.1: "the reason code extension SHOULD be absent instead of using the
     * unspecified (0) reasonCode value". */
    if (ok && e->reason != MOAT_CRL_UNSPECIFIED) {
        ASN1_ENUMERATED *code = ASN1_ENUMERATED_new();
        ok = code != NULL && ASN1_ENUMERATED_set(code, (long)e->reason) == 1 &&
             X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, code, 0, 0) == 1;
        ASN1_ENUMERATED_free(code);
    }
    ok = ok && X509_CRL_add0_revoked(crl, r) == 1;
    if (!ok) {
        X509_REVOKED_free(r);
    }
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    BN_free(bn);
    return ok;
}

static int add_crl_ext(X509_CRL *crl, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, NULL, NULL, crl, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    int ok = ext != NULL && X509_CRL_add_ext(crl, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static X509_CRL *build_crl(X509 *issuer, EVP_PKEY *key, const struct moat_crl_entry *v, size_t n,
                           long long number, time_t now, int days)
{
    char kid[80];
    key_id_hex(issuer, kid, sizeof(kid));
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *this_up = ASN1_TIME_set(NULL, now);
    ASN1_TIME *next_up = ASN1_TIME_set(NULL, now + (time_t)days * 86400);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    int ok = crl != NULL && this_up != NULL && next_up != NULL && num != NULL &&
             X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
             X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) == 1 &&
             X509_CRL_set1_lastUpdate(crl, this_up) == 1 &&
             X509_CRL_set1_nextUpdate(crl, next_up) == 1 && ASN1_INTEGER_set_int64(num, number);
    for (size_t i = 0; ok && i < n; i++) {
        if (v[i].revoked && strcmp(v[i].issuer_kid, kid) == 0) {
            ok = add_revoked(crl, &v[i]);
        }
    }
    /* RFC 5280 §5.2.1 and §5.2.3: authorityKeyIdentifier and cRLNumber MUST be present. */
    ok = ok && add_crl_ext(crl, issuer, NID_authority_key_identifier, "keyid:always") &&
         X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1 && X509_CRL_sort(crl) == 1 &&
         X509_CRL_sign(crl, key, digest_for(key)) > 0;
    ASN1_TIME_free(this_up);
    ASN1_TIME_free(next_up);
    ASN1_INTEGER_free(num);
    if (!ok) {
        X509_CRL_free(crl);
        return NULL;
    }
    return crl;
}

moat_rc moat_crl_make(const struct moat_ca *ca, int root, int days, time_t now, X509_CRL **out,
                      struct moat_err *err)
{
    *out = NULL;
    if (now == 0) {
        now = time(NULL);
    }
    if (days < 1 || days > CRL_DAYS_MAX) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "a CRL may be valid 1 to %d days, not %d (clients refuse an out-of-date CRL, "
                  "so publish a new one before it runs out)",
                  CRL_DAYS_MAX, days);
    }
    EVP_PKEY *key = ca->key;
    EVP_PKEY *root_key = NULL;
    if (root) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/root.key", ca->dir);
        MOAT_TRY_CTX(moat_key_load(path, &root_key, err), err,
                     "while loading the root key to sign the root's CRL");
        if (EVP_PKEY_eq(root_key, X509_get0_pubkey(ca->root)) != 1) {
            EVP_PKEY_free(root_key);
            ERR_clear_error();
            moat_err_where(err, "%s", path);
            MOAT_FAIL(err, MOAT_E_CONFIG, "%s does not match %s/root.pem", path, ca->dir);
        }
        key = root_key;
    }
    int lock = -1;
    moat_rc rc = moat_fs_lock(ca->dir, &lock, err);
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    long long number = 0;
    if (moat_ok(rc)) {
        rc = moat_crl_index_read(ca->dir, &v, &n, err);
    }
    if (moat_ok(rc)) {
        rc = next_crl_number(ca->dir, &number, err);
    }
    moat_fs_unlock(lock);
    if (moat_ok(rc)) {
        *out = build_crl(root ? ca->root : ca->cert, key, v, n, number, now, days);
        if (*out == NULL) {
            rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__, "cannot build the CRL");
        }
    }
    free(v);
    EVP_PKEY_free(root_key);
    return rc;
}

moat_rc moat_crl_unpublished(const char *ca_dir, X509 *issuer, X509_CRL *crl, size_t *missing,
                             struct moat_err *err)
{
    *missing = 0;
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    MOAT_TRY(moat_crl_index_read(ca_dir, &v, &n, err));
    char kid[80];
    key_id_hex(issuer, kid, sizeof(kid));
    for (size_t i = 0; i < n; i++) {
        if (!v[i].revoked || strcmp(v[i].issuer_kid, kid) != 0) {
            continue;
        }
        BIGNUM *bn = NULL;
        ASN1_INTEGER *serial = NULL;
        X509_REVOKED *r = NULL;
        int listed = BN_hex2bn(&bn, v[i].serial) > 0 &&
                     (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
                     X509_CRL_get0_by_serial(crl, &r, serial) == 1;
        *missing += !listed;
        ASN1_INTEGER_free(serial);
        BN_free(bn);
    }
    ERR_clear_error();
    free(v);
    return MOAT_RC_OK;
}

moat_rc moat_crl_write(const char *path, X509_CRL *const *crls, size_t n, struct moat_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ok = PEM_write_bio_X509_CRL(bio, crls[i]) == 1;
    }
    if (!ok) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot encode the CRL");
    }
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    moat_rc rc = moat_fs_write_atomic(path, pem, (size_t)len, 0644, err);
    BIO_free(bio);
    return rc;
}

moat_rc moat_crl_load(const char *path, STACK_OF(X509_CRL) * *out, struct moat_err *err)
{
    *out = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
    MOAT_TRY(moat_fs_read_file(path, CRL_FILE_MAX, &data, &len, err));
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    int damaged = 0, certs = 0;
    if (crls != NULL && memmem(data, len, "-----BEGIN ", 11) != NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        while (bio != NULL) {
            char *label = NULL, *header = NULL;
            unsigned char *der = NULL;
            long dlen = 0;
            if (PEM_read_bio(bio, &label, &header, &der, &dlen) != 1) {
                unsigned long e = ERR_peek_last_error();
                damaged = ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE;
                break;
            }
            if (strcmp(label, "X509 CRL") == 0) {
                const unsigned char *p = der;
                X509_CRL *c = d2i_X509_CRL(NULL, &p, dlen);
                if (c == NULL || sk_X509_CRL_push(crls, c) <= 0) {
                    X509_CRL_free(c);
                    damaged = 1;
                }
            } else if (strcmp(label, "CERTIFICATE") == 0) {
                certs++;
            }
            OPENSSL_free(label);
            OPENSSL_free(header);
            OPENSSL_free(der);
            if (damaged) {
                break;
            }
        }
        BIO_free(bio);
    } else if (crls != NULL && len > 0) {
        const unsigned char *p = data;
        X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)len);
        if (c != NULL && sk_X509_CRL_push(crls, c) <= 0) {
            X509_CRL_free(c);
        }
    }
    ERR_clear_error();
    free(data);
    if (crls == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (damaged || sk_X509_CRL_num(crls) == 0) {
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
        moat_err_where(err, "%s", path);
        if (damaged) {
            MOAT_FAIL(err, MOAT_E_CERT, "%s holds a damaged CRL: copy it again in full", path);
        }
        if (certs > 0) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "%s holds certificates, not a CRL (-----BEGIN X509 CRL-----): make one "
                      "with `moat ca crl`",
                      path);
        }
        MOAT_FAIL(err, MOAT_E_CERT, "%s holds no CRL (PEM -----BEGIN X509 CRL----- or DER)", path);
    }
    *out = crls;
    return MOAT_RC_OK;
}
