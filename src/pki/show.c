/*
 * show.c: certificates, chains and CSRs in plain words (see show.h).
 *
 * Field by field, with the meaning next to the OpenSSL name where the name alone says little
 * ("serverAuth (TLS server)"), and with the consequence where there is one ("expired 3 days
 * ago"). Output is for people; scripts should use `openssl x509 -noout -text` or the JSON of
 * `moat get`.
 */
#include "pki/show.h"

#include "pki/crlurl.h"
#include "pki/internal.h"
#include "pki/key.h"
#include "pki/names.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

static void serial_str(X509 *x, char *buf, size_t n)
{
    const ASN1_INTEGER *s = X509_get0_serialNumber(x);
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; p != NULL && i < len && used + 4 <= n; i++) {
        used += (size_t)snprintf(buf + used, n - used, "%s%02X", i ? ":" : "", p[i]);
    }
    if (buf[0] == '\0') {
        snprintf(buf, n, "(none)");
    }
}

static void ku_str(X509 *x, char *buf, size_t n)
{
    static const struct {
        uint32_t bit;
        const char *word;
    } bits[] = {
        {KU_DIGITAL_SIGNATURE, "digitalSignature"},
        {KU_NON_REPUDIATION, "nonRepudiation"},
        {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
        {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
        {KU_KEY_AGREEMENT, "keyAgreement"},
        {KU_KEY_CERT_SIGN, "keyCertSign"},
        {KU_CRL_SIGN, "cRLSign"},
        {KU_ENCIPHER_ONLY, "encipherOnly"},
        {KU_DECIPHER_ONLY, "decipherOnly"},
    };
    if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) == 0) {
        snprintf(buf, n, "(not limited)");
        return;
    }
    uint32_t ku = X509_get_key_usage(x);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if ((ku & bits[i].bit) != 0 && used < n) {
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", bits[i].word);
        }
    }
    if (buf[0] == '\0') {
        snprintf(buf, n, "(none)");
    }
}

static void eku_str(X509 *x, char *buf, size_t n)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    ERR_clear_error();
    if (eku == NULL) {
        snprintf(buf, n, "(not limited)");
        return;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku) && used < n; i++) {
        int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));
        const char *word = nid == NID_server_auth           ? "serverAuth (TLS server)"
                           : nid == NID_client_auth         ? "clientAuth (TLS client)"
                           : nid == NID_email_protect       ? "emailProtection (S/MIME)"
                           : nid == NID_code_sign           ? "codeSigning"
                           : nid == NID_time_stamp          ? "timeStamping"
                           : nid == NID_OCSP_sign           ? "OCSPSigning"
                           : nid == NID_anyExtendedKeyUsage ? "any"
                                                            : NULL;
        char oid[80];
        if (word == NULL) {
            OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1);
            word = oid;
        }
        used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", word);
    }
    EXTENDED_KEY_USAGE_free(eku);
}

static void ca_str(X509 *x, char *buf, size_t n)
{
    uint32_t flags = X509_get_extension_flags(x);
    if ((flags & EXFLAG_CA) == 0) {
        snprintf(buf, n, "no (an end-entity certificate: it cannot issue others)");
        return;
    }
    long pl = X509_get_pathlen(x);
    if (pl < 0) {
        snprintf(buf, n, "yes (may issue certificates and CAs below it, no depth limit)");
    } else if (pl == 0) {
        snprintf(buf, n, "yes (may issue only end-entity certificates: pathlen 0)");
    } else {
        snprintf(buf, n, "yes (up to %ld more CA level%s below it)", pl, pl == 1 ? "" : "s");
    }
}

static void subtrees_str(const STACK_OF(GENERAL_SUBTREE) * st, char *buf, size_t n)
{
    size_t used = strlen(buf);
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(st) && used < n; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_SUBTREE_value(st, i)->base;
        char one[200];
        if (gn->type == GEN_IPADD && ASN1_STRING_length(gn->d.ip) == 8) {
            const unsigned char *p = ASN1_STRING_get0_data(gn->d.ip);
            snprintf(one, sizeof(one), "IP:%u.%u.%u.%u/%u.%u.%u.%u", p[0], p[1], p[2], p[3], p[4],
                     p[5], p[6], p[7]);
        } else if (gn->type == GEN_IPADD) {
            snprintf(one, sizeof(one), "IP:(IPv6 range)");
        } else {
            moat_name_general_str(gn, one, sizeof(one));
        }
        used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", one);
    }
}

static int nc_str(X509 *x, char *permitted, char *excluded, size_t n)
{
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
    ERR_clear_error();
    if (nc == NULL) {
        return 0;
    }
    permitted[0] = excluded[0] = '\0';
    subtrees_str(nc->permittedSubtrees, permitted, n);
    subtrees_str(nc->excludedSubtrees, excluded, n);
    NAME_CONSTRAINTS_free(nc);
    return 1;
}

static void validity_lines(FILE *out, X509 *x, time_t now, const char *in)
{
    char a[64], b[64];
    time_t t = now;
    int after = X509_cmp_time(X509_get0_notAfter(x), &t);
    int before = X509_cmp_time(X509_get0_notBefore(x), &t);
    ERR_clear_error();
    fprintf(out, "%s  Valid from:   %s%s%s%s\n", in,
            moat_pki__time_str(X509_get0_notBefore(x), a, sizeof(a)),
            before > 0 ? " (NOT YET VALID: " : "",
            before > 0 ? moat_pki__span_str(X509_get0_notBefore(x), now, b, sizeof(b)) : "",
            before > 0 ? ")" : "");
    moat_pki__span_str(X509_get0_notAfter(x), now, b, sizeof(b));
    fprintf(out, "%s  Valid until:  %s (%s%s)\n", in,
            moat_pki__time_str(X509_get0_notAfter(x), a, sizeof(a)), after < 0 ? "EXPIRED " : "",
            b);
}

void moat_show_cert(FILE *out, X509 *x, time_t now, const char *in)
{
    char buf[1024], p[1024];
    if (in == NULL) {
        in = "";
    }
    fprintf(out, "%s  Subject:      %s\n", in,
            moat_pki__name_str(X509_get_subject_name(x), buf, sizeof(buf)));
    fprintf(out, "%s  Names (SAN):  %s\n", in, moat_pki__san_str(x, buf, sizeof(buf)));
    fprintf(out, "%s  Issuer:       %s%s\n", in,
            moat_pki__name_str(X509_get_issuer_name(x), buf, sizeof(buf)),
            X509_self_signed(x, 0) == 1 ? " (self-signed)" : "");
    ERR_clear_error();
    serial_str(x, buf, sizeof(buf));
    fprintf(out, "%s  Serial:       %s\n", in, buf);
    validity_lines(out, x, now, in);
    fprintf(out, "%s  Key:          %s\n", in,
            moat_key_describe(X509_get0_pubkey(x), buf, sizeof(buf)));
    ERR_clear_error();
    int sig = X509_get_signature_nid(x);
    fprintf(out, "%s  Signature:    %s\n", in, sig != NID_undef ? OBJ_nid2ln(sig) : "(unknown)");
    ca_str(x, buf, sizeof(buf));
    fprintf(out, "%s  CA:           %s\n", in, buf);
    ku_str(x, buf, sizeof(buf));
    fprintf(out, "%s  Key usage:    %s\n", in, buf);
    eku_str(x, buf, sizeof(buf));
    fprintf(out, "%s  Extended key usage: %s\n", in, buf);
    if (nc_str(x, p, buf, sizeof(buf))) {
        fprintf(out, "%s  Name constraints: permitted %s; excluded %s\n", in, p[0] ? p : "(any)",
                buf[0] ? buf : "(none)");
    }
    if (moat_crlurl_of(x, buf, sizeof(buf))) {
        /* Another CA's certificate may carry any bytes there: never send control characters
         * to the terminal. */
        for (char *c = buf; *c != '\0'; c++) {
            *c = (*c < 0x21 || *c > 0x7e) ? '?' : *c;
        }
        fprintf(out, "%s  CRL:          %s (the revocation list of its issuer)\n", in, buf);
    }
    fprintf(out, "%s  SHA-256:      %s\n", in,
            moat_pki__fingerprint(x, EVP_sha256(), buf, sizeof(buf)));
    fprintf(out, "%s  SHA-1:        %s\n", in,
            moat_pki__fingerprint(x, EVP_sha1(), buf, sizeof(buf)));
}

static int signed_by(X509 *subject, X509 *issuer)
{
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    int ok = X509_NAME_cmp(X509_get_subject_name(issuer), X509_get_issuer_name(subject)) == 0 &&
             pk != NULL && X509_verify(subject, pk) == 1;
    ERR_clear_error();
    return ok;
}

static const char *link_role(X509 *x, int i)
{
    if (X509_self_signed(x, 0) == 1) {
        ERR_clear_error();
        return (X509_get_extension_flags(x) & EXFLAG_CA) ? "root CA" : "self-signed";
    }
    if ((X509_get_extension_flags(x) & EXFLAG_CA) != 0) {
        return "intermediate CA";
    }
    return i == 0 ? "leaf" : "end-entity certificate";
}

void moat_show_chain(FILE *out, const struct moat_chain *c, time_t now)
{
    int n = 1 + (c->extra ? sk_X509_num(c->extra) : 0);
    char nm[256];
    fprintf(out, "%s: %d certificate%s\n", c->path, n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        X509 *x = i == 0 ? c->leaf : sk_X509_value(c->extra, i - 1);
        fprintf(out, "\nCertificate #%d (%s)\n", i + 1, link_role(x, i));
        moat_show_cert(out, x, now, "");
        if (i + 1 < n) {
            X509 *next = sk_X509_value(c->extra, i);
            if (signed_by(x, next)) {
                fprintf(out, "  Link:         signed by certificate #%d\n", i + 2);
            } else {
                fprintf(out,
                        "  Link:         NOT signed by certificate #%d (%s): the file is out of "
                        "order or holds an unrelated certificate\n",
                        i + 2, moat_pki__short_name(next, nm, sizeof(nm)));
            }
        } else if (X509_self_signed(x, 0) == 1) {
            fprintf(out, "  Link:         self-signed: the chain ends here\n");
        } else {
            fprintf(out,
                    "  Link:         issued by %s, which is not in this file (a root the client "
                    "must trust, or a missing intermediate)\n",
                    moat_pki__name_str(X509_get_issuer_name(x), nm, sizeof(nm)));
        }
        ERR_clear_error();
    }
}

void moat_show_csr(FILE *out, X509_REQ *req)
{
    char buf[1024];
    fprintf(out, "Certificate signing request\n");
    fprintf(out, "  Subject:      %s\n",
            moat_pki__name_str(X509_REQ_get_subject_name(req), buf, sizeof(buf)));
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    fprintf(out, "  Names (SAN):  ");
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        fprintf(out, "%s%s", i ? ", " : "",
                moat_name_general_str(sk_GENERAL_NAME_value(gens, i), buf, sizeof(buf)));
    }
    fprintf(out, "%s\n", gens == NULL || sk_GENERAL_NAME_num(gens) == 0 ? "(none)" : "");
    GENERAL_NAMES_free(gens);
    fprintf(out, "  Key:          %s\n",
            moat_key_describe(X509_REQ_get0_pubkey(req), buf, sizeof(buf)));
    int sig = X509_REQ_get_signature_nid(req);
    fprintf(out, "  Signature:    %s (verified: made with the key above)\n",
            sig != NID_undef ? OBJ_nid2ln(sig) : "(unknown)");
    ERR_clear_error();
}

const char *moat_show_short_name(X509 *x, char *buf, size_t n)
{
    return moat_pki__short_name(x, buf, n);
}

const char *moat_show_span(const ASN1_TIME *t, time_t now, char *buf, size_t n)
{
    return moat_pki__span_str(t, now, buf, n);
}
