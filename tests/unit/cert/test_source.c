/*
 * test_source.c: the certificate sources. `files`: a good pair becomes a set holding exactly
 * what was parsed, and each refusal of reading the files (missing, swapped, damaged, encrypted,
 * half a pair) and of the start-up checks comes through with its kind and file. `local CA`:
 * describe writes nothing on an empty state folder and loads nothing, load makes the CA and the
 * leaf and stamps renew_at at two thirds of its life, and afterwards describe reads the same leaf
 * back without writing.
 */
#include "cert/source.h"
#include "test.h"
#include "tls/tls_helpers.h"

#include <dirent.h>
#include <sys/stat.h>

static struct moat_cert_source *files_src(const char *cert, const char *key)
{
    struct moat_cert_files_opts o = {.cert_path = cert, .key_path = key, .quiet = 1};
    struct moat_cert_source *src = NULL;
    EXPECT_INT(moat_cert_source_files_new(&o, &src, NULL).kind, MOAT_OK);
    return src;
}

TEST_CASE(files_source_loads_what_it_checked)
{
    struct th_pair_files f = th_files("ec");
    struct moat_cert_source *src = files_src(f.cert_path, f.key_path);
    struct moat_tls_certset *s = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_cert_source_load(src, &s, &err).kind, MOAT_OK);
    if (s != NULL) {
        EXPECT_STR(s->label, f.cert_path);
        EXPECT_STR(s->key_label, f.key_path);
        EXPECT_INT(s->key_type, EVP_PKEY_EC);
        EXPECT_INT(sk_X509_num(s->chain), 1); /* the test CA follows the leaf in the file */
        EXPECT_INT(moat_tls_certset_has_name(s, "ec.example"), 1);
        EXPECT_INT(s->renew_at, 0);
        EXPECT_INT(X509_check_private_key(s->leaf, s->key), 1);
    }
    moat_tls_certset_unref(s);
    /* describe is load for files: it writes nothing anyway. */
    EXPECT_INT(moat_cert_source_describe(src, &s, &err).kind, MOAT_OK);
    EXPECT(s != NULL);
    moat_tls_certset_unref(s);
    EXPECT_INT(moat_cert_source_renew_at(src, 100, 400), 0);
    moat_cert_source_free(src);
    moat_cert_source_free(NULL);
}

/* Load through a files source; the set must be NULL whenever the load fails. */
static moat_rc refused(const char *cert, const char *key, struct moat_err *err)
{
    struct moat_tls_certset *s = (struct moat_tls_certset *)1;
    moat_rc rc = th_set_load(cert, key, &s, err);
    if (moat_ok(rc)) {
        moat_tls_certset_unref(s);
    } else {
        EXPECT(s == NULL);
    }
    return rc;
}

/* What the start-up checks refuse: a key that is not the certificate's. */
TEST_CASE(files_source_refuses_a_mismatching_key)
{
    struct moat_err err = {0};
    struct th_pair_files ec = th_files("ec");

    /* A key of another type: the start-up check's KEY_MISMATCH, naming both files. */
    EXPECT_INT(refused(ec.cert_path, th_files("rsa").key_path, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "does not match") != NULL);
    EXPECT(strstr(err.msg, ec.cert_path) != NULL);
    EXPECT(strstr(err.ctx[0], "rsa.key") != NULL);

    /* A key of the same type but another certificate's. */
    const char *other = th_files("ec384").key_path;
    EXPECT_INT(refused(ec.cert_path, other, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "does not match") != NULL);
    EXPECT(strstr(err.ctx[0], other) != NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

/* What reading the files refuses, each with its kind and the file named. */
TEST_CASE(files_source_refuses_unreadable_files)
{
    struct moat_err err = {0};
    struct th_pair_files ec = th_files("ec");

    /* A missing certificate file, and a missing key file. */
    EXPECT_INT(refused(th_path("nope.pem"), ec.key_path, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(strstr(err.where, "nope.pem") != NULL);
    EXPECT(strstr(err.msg, "nope.pem does not exist") != NULL);
    EXPECT_INT(refused(ec.cert_path, th_path("nope.key"), &err).kind, MOAT_E_NOTFOUND);
    EXPECT(strstr(err.where, "nope.key") != NULL);
    EXPECT(strstr(err.msg, "nope.key does not exist") != NULL);

    /* The key file where the certificate should be: no certificate in it. */
    EXPECT_INT(refused(ec.key_path, ec.key_path, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.where, ec.key_path) != NULL);
    EXPECT(strstr(err.msg, "holds a private key but no certificate") != NULL);
    EXPECT(strstr(err.msg, ec.key_path) != NULL);

    /* The certificate file where the key should be: no key in it. */
    EXPECT_INT(refused(ec.cert_path, ec.cert_path, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.where, ec.cert_path) != NULL);
    EXPECT(strstr(err.msg, "holds a certificate, not a private key") != NULL);
    EXPECT(strstr(err.msg, ec.cert_path) != NULL);

    /* A broken certificate after the leaf: refused, not served half-way. */
    FILE *fp = fopen(th_path("broken.crt"), "w");
    FILE *in = fopen(ec.cert_path, "r");
    char line[128];
    int begins = 0, corrupt_next = 0;
    while (fgets(line, sizeof(line), in)) {
        /* Corrupt the first base64 line of the second (CA) block. */
        fputs(corrupt_next ? "MIIB!!!!not*base64\n" : line, fp);
        corrupt_next = strncmp(line, "-----BEGIN", 10) == 0 && ++begins == 2;
    }
    fclose(in);
    fclose(fp);
    char broken[128];
    snprintf(broken, sizeof(broken), "%s", th_path("broken.crt"));
    EXPECT_INT(refused(broken, ec.key_path, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.where, "broken.crt") != NULL);
    EXPECT(strstr(err.msg, "not valid PEM after certificate #1") != NULL);
    EXPECT(strstr(err.msg, broken) != NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

/* A key encrypted with a passphrase is refused without prompting, with the way out. */
TEST_CASE(files_source_refuses_an_encrypted_key)
{
    EVP_PKEY *k = th_key("ec");
    char enc[128];
    snprintf(enc, sizeof(enc), "%s", th_path("enc.key"));
    FILE *fp = fopen(enc, "w");
    PEM_write_PrivateKey(fp, k, EVP_aes_256_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
    fclose(fp);
    EVP_PKEY_free(k);
    struct moat_err err = {0};
    EXPECT_INT(refused(th_files("ec").cert_path, enc, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.where, "enc.key") != NULL);
    EXPECT(strstr(err.msg, "unencrypted") != NULL);
    EXPECT(strstr(err.msg, enc) != NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

/* A pair needs both files. */
TEST_CASE(files_source_refuses_half_a_pair)
{
    struct moat_err err = {0};
    struct moat_cert_source *src = (struct moat_cert_source *)1;
    struct moat_cert_files_opts cert_only = {.cert_path = th_files("ec").cert_path};
    EXPECT_INT(moat_cert_source_files_new(&cert_only, &src, &err).kind, MOAT_E_CONFIG);
    EXPECT(src == NULL);
    EXPECT(strstr(err.msg, "both a certificate and a key file") != NULL);
    src = (struct moat_cert_source *)1;
    struct moat_cert_files_opts key_only = {.key_path = th_files("ec").key_path};
    EXPECT_INT(moat_cert_source_files_new(&key_only, &src, &err).kind, MOAT_E_CONFIG);
    EXPECT(src == NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

TEST_CASE(local_source_describe_writes_nothing_then_load_issues)
{
    char state[160];
    snprintf(state, sizeof(state), "%s", th_path("state"));
    EXPECT_INT(mkdir(state, 0700), 0);
    const char *names[] = {"*", "local.example", "127.0.0.1"};

    /* --check on an empty state folder: nothing to load, nothing written. */
    struct moat_cert_local_ca *lca = moat_cert_local_ca_new(state, 1);
    struct moat_cert_source *src = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_cert_source_local_new(lca, names, 3, &src, &err).kind, MOAT_OK);
    struct moat_tls_certset *s = (struct moat_tls_certset *)1;
    EXPECT_INT(moat_cert_source_describe(src, &s, &err).kind, MOAT_OK);
    EXPECT(s == NULL);
    EXPECT_INT(dir_entries(state), 0);
    moat_cert_source_free(src);
    moat_cert_local_ca_free(lca);

    /* serve: the CA and the leaf are made, and the set is the leaf on disk. */
    lca = moat_cert_local_ca_new(state, 1);
    EXPECT_INT(moat_cert_source_local_new(lca, names, 3, &src, &err).kind, MOAT_OK);
    struct moat_tls_certset *loaded = NULL;
    moat_rc rc = moat_cert_source_load(src, &loaded, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "local load: %s\n", err.msg);
    }
    EXPECT_INT(rc.kind, MOAT_OK);
    if (loaded != NULL) {
        EXPECT(strstr(loaded->label, "certs/local.example.pem") != NULL);
        EXPECT_INT(moat_tls_certset_has_name(loaded, "local.example"), 1);
        EXPECT_INT(moat_tls_certset_has_name(loaded, "127.0.0.1"), 1);
        EXPECT_INT(moat_tls_certset_has_name(loaded, "*"), 0);
        EXPECT_INT(sk_X509_num(loaded->chain), 1); /* the intermediate follows the leaf */
        EXPECT_INT(loaded->renew_at,
                   loaded->not_before + (loaded->not_after - loaded->not_before) * 2 / 3);
        EXPECT(loaded->renew_at > time(NULL));
        EXPECT_INT(X509_check_private_key(loaded->leaf, loaded->key), 1);
    }
    moat_cert_source_free(src);
    moat_cert_local_ca_free(lca);

    /* --check again: the leaf is reusable, so describe reads it back, and writes nothing. */
    char certs[200];
    snprintf(certs, sizeof(certs), "%s/certs", state);
    int before = dir_entries(certs);
    lca = moat_cert_local_ca_new(state, 1);
    EXPECT_INT(moat_cert_source_local_new(lca, names, 3, &src, &err).kind, MOAT_OK);
    EXPECT_INT(moat_cert_source_describe(src, &s, &err).kind, MOAT_OK);
    EXPECT(s != NULL);
    if (s != NULL && loaded != NULL) {
        EXPECT_INT(X509_cmp(s->leaf, loaded->leaf), 0);
    }
    EXPECT_INT(dir_entries(certs), before);
    moat_tls_certset_unref(s);
    moat_tls_certset_unref(loaded);
    moat_cert_source_free(src);
    moat_cert_local_ca_free(lca);
}

TEST_CASE(local_source_defaults_to_localhost)
{
    char state[160];
    snprintf(state, sizeof(state), "%s", th_path("state2"));
    EXPECT_INT(mkdir(state, 0700), 0);
    const char *names[] = {"*"};
    struct moat_cert_local_ca *lca = moat_cert_local_ca_new(state, 1);
    struct moat_cert_source *src = NULL;
    EXPECT_INT(moat_cert_source_local_new(lca, names, 1, &src, NULL).kind, MOAT_OK);
    struct moat_tls_certset *s = NULL;
    EXPECT_INT(moat_cert_source_load(src, &s, NULL).kind, MOAT_OK);
    if (s != NULL) {
        EXPECT_INT(moat_tls_certset_has_name(s, "localhost"), 1);
        EXPECT_INT(moat_tls_certset_has_name(s, "::1"), 1);
        EXPECT(strstr(s->label, "certs/localhost.pem") != NULL);
    }
    moat_tls_certset_unref(s);
    moat_cert_source_free(src);
    moat_cert_local_ca_free(lca);
}

int main(void)
{
    th_dir_make();
    int ok = th_cert_files("ec", "ec", "ec.example") &&
             th_cert_files("rsa", "rsa", "rsa.example") &&
             th_cert_files("ec384", "p384", "ec384.example");
    EXPECT(ok);
    RUN(files_source_loads_what_it_checked);
    RUN(files_source_refuses_a_mismatching_key);
    RUN(files_source_refuses_unreadable_files);
    RUN(files_source_refuses_an_encrypted_key);
    RUN(files_source_refuses_half_a_pair);
    RUN(local_source_describe_writes_nothing_then_load_issues);
    RUN(local_source_defaults_to_localhost);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
