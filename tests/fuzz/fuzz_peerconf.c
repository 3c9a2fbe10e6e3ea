// fuzz-sources: src/check/nginx.c src/check/haproxy.c src/check/offline.c
// fuzz-sources: src/check/certfacts.c src/check/suites.c src/check/facts.c src/pki/verify.c
// fuzz-sources: src/core/err.c src/pki/fsutil.c src/core/fdio.c
/*
 * fuzz_peerconf.c: moat check's readers of nginx and HAProxy files (check/nginx.c,
 * check/haproxy.c) on arbitrary bytes. The first byte picks the reader; the rest is the file,
 * written into a folder that also holds an ECDSA certificate with its key (c.pem, and c.key)
 * so that the inputs can reach the certificate paths ("crt c.pem", "ssl_certificate c.pem").
 * Beyond "no crash, no leak": a refusal says where (the file's name leads its words), and an
 * accepted file gives 1..max checks, each with a name, a port and a source.
 *
 * moat_check_scan_free is defined here: scan.c is the live probe and would bring the whole
 * client in, and an offline check holds nothing else to free.
 */
#include "check/haproxy.h"
#include "check/nginx.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

void moat_check_scan_free(struct moat_check_scan *s)
{
    check(s->get == NULL);
    free(s);
}

static char dir[64];

static void write_fixture(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    check(k != NULL && x != NULL);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz.test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    check(X509_sign(x, k, EVP_sha256()) > 0);
    char p[128];
    snprintf(p, sizeof(p), "%s/c.pem", dir);
    FILE *f = fopen(p, "w");
    check(f != NULL);
    PEM_write_X509(f, x);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    snprintf(p, sizeof(p), "%s/c.key", dir);
    f = fopen(p, "w");
    check(f != NULL);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void remove_dir(void)
{
    static const char *const files[] = {"main.conf", "c.pem", "c.key"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/moat-fuzz-peerconf-XXXXXX");
        check(mkdtemp(dir) != NULL);
        write_fixture();
        atexit(remove_dir);
    }
    if (size < 1) {
        return 0;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    struct moat_check_scan *out[8];
    size_t n = 99;
    struct moat_err err = {0};
    moat_rc rc = data[0] & 1 ? moat_check_haproxy(path, NULL, out, 8, &n, &err)
                             : moat_check_nginx(path, NULL, out, 8, &n, &err);
    if (!moat_ok(rc)) {
        check(n == 0);
        char line[1024];
        moat_err_str(&err, line, sizeof(line));
        check(strchr(line, '/') != NULL || rc.kind == MOAT_E_NOMEM); /* a file named */
        return 0;
    }
    check(n >= 1 && n <= 8);
    for (size_t i = 0; i < n; i++) {
        check(out[i]->host[0] != '\0' && out[i]->source[0] != '\0' && out[i]->port > 0);
        check(out[i]->offline == 1);
        moat_check_scan_free(out[i]);
    }
    return 0;
}
