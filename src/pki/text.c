/*
 * text.c: how pki writes certificates' names, dates, fingerprints and SANs for people (see
 * internal.h). One place, so `moat cert show`, `moat verify` and `moat trust list` word them
 * the same way.
 */
#include "pki/internal.h"

#include "pki/names.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

const char *moat_pki__name_str(const X509_NAME *nm, char *buf, size_t n)
{
    buf[0] = '\0';
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return buf;
    }
    unsigned long flags = (XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_DN_REV;
    if (X509_NAME_print_ex(bio, nm, 0, flags) >= 0) {
        char *p = NULL;
        long len = BIO_get_mem_data(bio, &p);
        if (len > 0) {
            snprintf(buf, n, "%.*s", (int)len, p);
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    if (buf[0] == '\0') {
        snprintf(buf, n, "(empty name)");
    }
    return buf;
}

const char *moat_pki__time_str(const ASN1_TIME *t, char *buf, size_t n)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm) == 0) {
        ERR_clear_error();
        snprintf(buf, n, "(unreadable date)");
    }
    return buf;
}

const char *moat_pki__span_str(const ASN1_TIME *t, time_t now, char *buf, size_t n)
{
    int day = 0, sec = 0;
    ASN1_TIME *nt = ASN1_TIME_set(NULL, now);
    if (nt == NULL || t == NULL || ASN1_TIME_diff(&day, &sec, t, nt) != 1) {
        ASN1_TIME_free(nt);
        ERR_clear_error();
        snprintf(buf, n, "at an unknown time");
        return buf;
    }
    ASN1_TIME_free(nt);
    /* day and sec share a sign: positive when t is in the past. */
    long long total = (long long)day * 86400 + sec;
    int past = total >= 0;
    long long abs_s = past ? total : -total;
    long long days = (abs_s + 43200) / 86400;
    if (abs_s < 86400) {
        snprintf(buf, n, "less than a day %s", past ? "ago" : "from now");
    } else {
        snprintf(buf, n, "%s%lld day%s%s", past ? "" : "in ", days, days == 1 ? "" : "s",
                 past ? " ago" : "");
    }
    return buf;
}

const char *moat_pki__fingerprint(X509 *x, const EVP_MD *md, char *buf, size_t n)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    buf[0] = '\0';
    if (n == 0 || X509_digest(x, md, d, &len) != 1) {
        ERR_clear_error();
        return buf;
    }
    size_t used = 0;
    for (unsigned int i = 0; i < len && used + 4 <= n; i++) {
        used += (size_t)snprintf(buf + used, n - used, "%s%02X", i ? ":" : "", d[i]);
    }
    return buf;
}

const char *moat_pki__san_str(X509 *x, char *buf, size_t n)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    ERR_clear_error();
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        char one[300];
        moat_name_general_str(sk_GENERAL_NAME_value(gens, i), one, sizeof(one));
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", one);
        if (w < 0 || (size_t)w >= n - used) {
            break;
        }
        used += (size_t)w;
    }
    GENERAL_NAMES_free(gens);
    if (buf[0] == '\0') {
        snprintf(buf, n, "(none)");
    }
    return buf;
}

const char *moat_pki__short_name(X509 *x, char *buf, size_t n)
{
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)n) > 0) {
        return buf;
    }
    ERR_clear_error();
    return moat_pki__name_str(X509_get_subject_name(x), buf, n);
}
