/*
 * certfacts.c: see certfacts.h.
 */
#include "check/certfacts.h"

#include <openssl/ct.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static int asn1_time_days(const ASN1_TIME *t)
{
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, t) != 1) {
        return 0;
    }
    return days;
}

static int sig_is_weak(int nid)
{
    int md = NID_undef, pk = NID_undef;
    if (!OBJ_find_sigid_algs(nid, &md, &pk)) {
        return 0;
    }
    return md == NID_sha1 || md == NID_md5 || md == NID_md2 || md == NID_md4;
}

void moat_check_cert_facts(X509 *leaf, STACK_OF(X509) * sk, const char *host,
                           struct moat_check_certfacts *f)
{
    memset(f, 0, sizeof(*f));
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    if (pk != NULL) {
        f->key_bits = EVP_PKEY_get_bits(pk);
        f->key_rsa = EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS");
        char gname[40] = "";
        size_t gl = 0;
        if (EVP_PKEY_is_a(pk, "EC") &&
            EVP_PKEY_get_utf8_string_param(pk, "group", gname, sizeof(gname), &gl) == 1) {
            snprintf(f->key, sizeof(f->key), "EC %s", gname);
        } else {
            snprintf(f->key, sizeof(f->key), "%s %d", EVP_PKEY_get0_type_name(pk), f->key_bits);
        }
    }
    int snid = X509_get_signature_nid(leaf);
    snprintf(f->sig, sizeof(f->sig), "%s", OBJ_nid2ln(snid));
    f->sig_weak = sig_is_weak(snid);
    uint32_t xku = X509_get_extended_key_usage(leaf);
    f->eku_server =
        (X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) == 0 || (xku & XKU_SSL_SERVER);
    f->is_ca = X509_check_ca(leaf) > 0 && (X509_get_extension_flags(leaf) & EXFLAG_CA);
    STACK_OF(SCT) *scts = X509_get_ext_d2i(leaf, NID_ct_precert_scts, NULL, NULL);
    f->scts = scts != NULL ? sk_SCT_num(scts) : 0;
    SCT_LIST_free(scts);
    STACK_OF(OPENSSL_STRING) *ocsp = X509_get1_ocsp(leaf);
    f->ocsp_url = ocsp != NULL && sk_OPENSSL_STRING_num(ocsp) > 0;
    X509_email_free(ocsp);
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(leaf, NID_crl_distribution_points, NULL, NULL);
    f->crl_url = dps != NULL && sk_DIST_POINT_num(dps) > 0;
    CRL_DIST_POINTS_free(dps);
    /* Only status_request is defined for the TLS feature extension in practice. */
    f->must_staple = X509_get_ext_by_NID(leaf, NID_tlsfeature, -1) >= 0;
    f->days_left = asn1_time_days(X509_get0_notAfter(leaf));
    int d = 0, sec = 0;
    if (ASN1_TIME_diff(&d, &sec, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)) == 1) {
        f->days_total = d;
    }
    if (strchr(host, ':') != NULL ||
        (host[0] >= '0' && host[0] <= '9' && X509_check_ip_asc(leaf, host, 0) == 1)) {
        f->names_match = X509_check_ip_asc(leaf, host, 0) == 1;
    } else {
        f->names_match = X509_check_host(leaf, host, 0, 0, NULL) == 1;
    }
    int n = sk_X509_num(sk);
    f->chain_sent = n;
    f->chain_order_ok = 1;
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(sk, i);
        if (i + 1 < n && X509_check_issued(sk_X509_value(sk, i + 1), x) != X509_V_OK) {
            f->chain_order_ok = 0;
        }
        if (X509_check_issued(x, x) == X509_V_OK && i > 0) {
            f->chain_root_sent = 1;
        }
        if (!f->chain_expired && (X509_cmp_current_time(X509_get0_notAfter(x)) < 0 ||
                                  X509_cmp_current_time(X509_get0_notBefore(x)) > 0)) {
            f->chain_expired = i + 1;
        }
        if (i > 0 && X509_check_issued(x, x) != X509_V_OK && !f->chain_weak_sig &&
            sig_is_weak(X509_get_signature_nid(x))) {
            f->chain_weak_sig = i + 1;
        }
    }
}
