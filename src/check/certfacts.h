/*
 * certfacts.h: what moat check reads off a certificate chain as the server sends it (the leaf
 * first): key, signature, EKU, CT, revocation pointers, lifetime, the chain's order, a root or
 * an expired link in it. Facts only: trust is decided elsewhere (the strict client, or an
 * offline verification).
 */
#ifndef MOAT_CHECK_CERTFACTS_H
#define MOAT_CHECK_CERTFACTS_H

#include <openssl/x509.h>

/* The certificate facts the judgement needs, from the leaf and the chain sent. */
struct moat_check_certfacts {
    char key[48];        /* "RSA 2048", "EC P-256", "Ed25519" */
    int key_bits;        /* RSA/DSA modulus bits; EC curve bits */
    int key_rsa;         /* an RSA key */
    char sig[48];        /* the leaf's signature algorithm, "sha256WithRSAEncryption" */
    int sig_weak;        /* signed with SHA-1 or MD5 */
    int eku_server;      /* EKU allows serverAuth (or no EKU) */
    int is_ca;           /* the leaf says CA:TRUE */
    int scts;            /* SCTs embedded in the leaf */
    int ocsp_url;        /* an OCSP responder in AIA */
    int crl_url;         /* a CRL distribution point */
    int must_staple;     /* TLS feature status_request (RFC 7633) */
    long days_left;      /* of the leaf */
    long days_total;     /* the leaf's whole validity */
    int names_match;     /* the leaf covers the host */
    int chain_sent;      /* certificates the server sent */
    int chain_order_ok;  /* each sent certificate is issued by the next one */
    int chain_root_sent; /* a self-signed root was sent */
    int chain_expired;   /* a sent certificate (any) is out of its validity: index + 1, else 0 */
    int chain_weak_sig;  /* a sent intermediate is signed with SHA-1/MD5: index + 1, else 0 */
};

/* Fill *f from leaf and the chain sent (sk holds the leaf first), for the name host. */
void moat_check_cert_facts(X509 *leaf, STACK_OF(X509) * sk, const char *host,
                           struct moat_check_certfacts *f);

#endif
