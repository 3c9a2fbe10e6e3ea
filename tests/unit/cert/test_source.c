/*
 * test_source.c: the certificate sources. `files`: a good pair becomes a set holding exactly
 * what was parsed, and each refusal of the start-up checks comes through with its kind and
 * file. `local CA`: describe writes nothing on an empty state folder and loads nothing, load
 * makes the CA and the leaf and stamps renew_at at two thirds of its life, and afterwards
 * describe reads the same leaf back without writing.
 */
#include "cert/source.h"
#include "test.h"
#include "tls/ctx.h"
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
    struct moat_tls_cert_files f = th_files("ec");
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

TEST_CASE(files_source_refusals)
{
    struct moat_err err = {0};
    struct moat_tls_certset *s = (struct moat_tls_certset *)1;

    /* A key of another certificate: the start-up check's KEY_MISMATCH, naming the key file. */
    struct moat_cert_source *src = files_src(th_files("ec").cert_path, th_files("rsa").key_path);
    EXPECT_INT(moat_cert_source_load(src, &s, &err).kind, MOAT_E_CERT);
    EXPECT(s == NULL);
    EXPECT(strstr(err.ctx[0], "rsa.key") != NULL);
    moat_cert_source_free(src);

    /* A missing certificate file. */
    src = files_src(th_path("nope.pem"), th_files("ec").key_path);
    EXPECT_INT(moat_cert_source_load(src, &s, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(strstr(err.where, "nope.pem") != NULL);
    moat_cert_source_free(src);

    /* The key file where the certificate should be. */
    src = files_src(th_files("ec").key_path, th_files("ec").key_path);
    EXPECT_INT(moat_cert_source_load(src, &s, &err).kind, MOAT_E_CERT);
    moat_cert_source_free(src);

    /* A pair needs both files. */
    struct moat_cert_files_opts half = {.cert_path = th_files("ec").cert_path};
    EXPECT_INT(moat_cert_source_files_new(&half, &src, &err).kind, MOAT_E_CONFIG);
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
    int ok = th_cert_files("ec", "ec", "ec.example") && th_cert_files("rsa", "rsa", "rsa.example");
    EXPECT(ok);
    RUN(files_source_loads_what_it_checked);
    RUN(files_source_refusals);
    RUN(local_source_describe_writes_nothing_then_load_issues);
    RUN(local_source_defaults_to_localhost);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
