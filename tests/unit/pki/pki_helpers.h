/*
 * pki_helpers.h: shared by the pki/ unit tests. A temporary folder per test binary, small file
 * helpers, a certificate builder that can make the broken certificates the checks must refuse
 * (expired, wrong issuer, CA leaf, client-only EKU...), and a way to run a check as an
 * unprivileged user (the tests usually run as root, who can read any file).
 */
#ifndef MOAT_TEST_PKI_HELPERS_H
#define MOAT_TEST_PKI_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char ph_dir[64];

static inline int ph_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static inline void ph_dir_make(void)
{
    snprintf(ph_dir, sizeof(ph_dir), "/tmp/moat-pki-test-XXXXXX");
    if (mkdtemp(ph_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    /* Let the unprivileged child (ph_as_nobody) reach files inside. */
    chmod(ph_dir, 0755);
}

static inline void ph_dir_remove(void)
{
    if (ph_dir[0] != '\0') {
        nftw(ph_dir, ph_rm, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* A path inside the test folder; each call uses one of 8 rotating buffers. */
static inline const char *ph_path(const char *name)
{
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 256, "%s/%s", ph_dir, name);
    return b;
}

static inline int ph_write(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = write(fd, data, len);
    close(fd);
    chmod(path, mode);
    return w == (ssize_t)len ? 0 : -1;
}

static inline int ph_write_str(const char *path, const char *s)
{
    return ph_write(path, s, strlen(s), 0600);
}

/* Read a whole file into a static-free malloc'ed string (NUL-terminated); NULL on failure. */
static inline char *ph_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
    }
    if (len != NULL) {
        *len = n;
    }
    return buf;
}

static inline mode_t ph_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

/* Number of entries in a folder (not counting . and ..), to catch leftover temp files. */
static inline int ph_count_entries(const char *dir)
{
    char cmd[300];
    int n = 0;
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL || fscanf(p, "%d", &n) != 1) {
        n = -1;
    }
    if (p != NULL) {
        pclose(p);
    }
    return n;
}

/* Any "*.tmp" file left in dir? */
static inline int ph_has_tmp(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -q '\\.tmp$'", dir);
    return system(cmd) == 0;
}

/*
 * Run fn(arg) in a child process as user nobody and return its exit status (or -1). When the
 * tests do not run as root, the child just runs fn as the current user.
 */
static inline int ph_as_nobody(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
            _exit(99);
        }
        _exit(fn(arg));
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

/* ---- certificate builder ---- */

struct ph_cert_spec {
    const char *cn;
    EVP_PKEY *key;        /* the subject's key (public part used) */
    X509 *issuer;         /* NULL: self-signed */
    EVP_PKEY *issuer_key; /* NULL: key (self-signed) */
    long nb_offset;       /* notBefore = now + nb_offset seconds */
    long na_offset;       /* notAfter = now + na_offset seconds */
    const char *bc;       /* basicConstraints value, NULL: none */
    const char *ku;       /* keyUsage value, NULL: none */
    const char *eku;      /* extendedKeyUsage value, NULL: none */
    const char *san;      /* subjectAltName value, NULL: none */
    int no_ski;           /* 1: no SKI/AKI */
};

static inline int ph_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    if (e == NULL) {
        fprintf(stderr, "ph_ext: bad %d=%s\n", nid, value);
        return 0;
    }
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

static inline X509 *ph_cert(const struct ph_cert_spec *s)
{
    static long serial = 1000;
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)s->cn, -1, -1, 0);
    X509_set_issuer_name(x,
                         s->issuer ? X509_get_subject_name(s->issuer) : X509_get_subject_name(x));
    time_t now = time(NULL);
    ASN1_TIME_set(X509_getm_notBefore(x), now + s->nb_offset);
    ASN1_TIME_set(X509_getm_notAfter(x), now + s->na_offset);
    X509_set_pubkey(x, s->key);
    int ok = 1;
    if (s->bc) {
        ok &= ph_ext(x, s->issuer, NID_basic_constraints, s->bc);
    }
    if (s->ku) {
        ok &= ph_ext(x, s->issuer, NID_key_usage, s->ku);
    }
    if (s->eku) {
        ok &= ph_ext(x, s->issuer, NID_ext_key_usage, s->eku);
    }
    if (s->san) {
        ok &= ph_ext(x, s->issuer, NID_subject_alt_name, s->san);
    }
    if (!s->no_ski) {
        ok &= ph_ext(x, s->issuer, NID_subject_key_identifier, "hash");
        if (s->issuer) {
            ok &= ph_ext(x, s->issuer, NID_authority_key_identifier, "keyid:always");
        }
    }
    EVP_PKEY *signer = s->issuer_key ? s->issuer_key : s->key;
    if (!ok || X509_sign(x, signer, EVP_sha256()) <= 0) {
        fprintf(stderr, "ph_cert: cannot build %s\n", s->cn);
        ERR_print_errors_fp(stderr);
        X509_free(x);
        return NULL;
    }
    return x;
}

static inline EVP_PKEY *ph_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

#define PH_DAY (24L * 3600L)

/* A small PKI for chain tests: root -> intermediate -> leaf (for "localhost"). */
struct ph_pki {
    EVP_PKEY *root_key, *int_key, *leaf_key;
    X509 *root, *inter, *leaf;
};

static inline void ph_pki_make(struct ph_pki *p, const char *tag)
{
    char cn[64];
    p->root_key = ph_key();
    p->int_key = ph_key();
    p->leaf_key = ph_key();
    snprintf(cn, sizeof(cn), "%s root", tag);
    p->root = ph_cert(&(struct ph_cert_spec){.cn = cn,
                                             .key = p->root_key,
                                             .nb_offset = -PH_DAY,
                                             .na_offset = 3650 * PH_DAY,
                                             .bc = "critical,CA:TRUE",
                                             .ku = "critical,keyCertSign,cRLSign"});
    snprintf(cn, sizeof(cn), "%s intermediate", tag);
    p->inter = ph_cert(&(struct ph_cert_spec){.cn = cn,
                                              .key = p->int_key,
                                              .issuer = p->root,
                                              .issuer_key = p->root_key,
                                              .nb_offset = -PH_DAY,
                                              .na_offset = 1000 * PH_DAY,
                                              .bc = "critical,CA:TRUE,pathlen:0",
                                              .ku = "critical,keyCertSign,cRLSign"});
    p->leaf = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                             .key = p->leaf_key,
                                             .issuer = p->inter,
                                             .issuer_key = p->int_key,
                                             .nb_offset = -PH_DAY,
                                             .na_offset = 90 * PH_DAY,
                                             .bc = "critical,CA:FALSE",
                                             .ku = "critical,digitalSignature",
                                             .eku = "serverAuth",
                                             .san = "DNS:localhost,IP:127.0.0.1"});
}

static inline void ph_pki_free(struct ph_pki *p)
{
    EVP_PKEY_free(p->root_key);
    EVP_PKEY_free(p->int_key);
    EVP_PKEY_free(p->leaf_key);
    X509_free(p->root);
    X509_free(p->inter);
    X509_free(p->leaf);
}

/* PEM of up to 4 certificates (NULLs skipped) into a malloc'ed string. */
static inline char *ph_pem(X509 *a, X509 *b, X509 *c, X509 *d)
{
    X509 *all[4] = {a, b, c, d};
    BIO *bio = BIO_new(BIO_s_mem());
    for (int i = 0; i < 4; i++) {
        if (all[i] != NULL) {
            PEM_write_bio_X509(bio, all[i]);
        }
    }
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    char *out = malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    return out;
}

static inline int ph_write_certs(const char *path, X509 *a, X509 *b, X509 *c, X509 *d)
{
    char *pem = ph_pem(a, b, c, d);
    int rc = ph_write(path, pem, strlen(pem), 0644);
    free(pem);
    return rc;
}

static inline int ph_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", hay ? hay : "(null)", needle);
        return 0;
    }
    return 1;
}

#endif
