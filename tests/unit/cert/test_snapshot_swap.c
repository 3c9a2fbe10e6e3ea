/*
 * test_snapshot_swap.c: moat_snapshot_swap_certs on a snapshot built from a configuration: the
 * site's `cert` files come through the files source, a refused swap (two certificates of one
 * key type) leaves the site serving what it served, and a good swap makes the next handshake
 * present the new certificate.
 */
#include "tls/certset.h"
#include "serve/conf.h"
#include "serve/snapshot.h"
#include "test.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/tls_helpers.h"

#include <sys/stat.h>

static struct moat_tls_certset *mem_set(const char *cn)
{
    EVP_PKEY *key = th_key("ec");
    X509 *leaf = th_x509(key, cn, NULL, NULL, 0);
    struct moat_tls_certset *s = NULL;
    EXPECT_INT(moat_tls_certset_new(leaf, NULL, key, cn, NULL, 0, &s, NULL).kind, MOAT_OK);
    return s;
}

static const char *cn_of(struct moat_snapshot *snap, SSL_CTX *cli, char *out, int n)
{
    struct th_pair p;
    th_pair_init(&p, cli, moat_tls_sni_default_ctx(snap->sni));
    SSL_set_tlsext_host_name(p.c, "s.test");
    out[0] = '\0';
    if (th_handshake(&p)) {
        th_peer_cn(p.c, out, n);
    }
    th_pair_clear(&p);
    return out;
}

TEST_CASE(snapshot_site_swap)
{
    char text[1024];
    snprintf(text, sizeof(text), "site s.test {\n    cert %s %s\n    root %s\n}\n",
             th_files("s").cert_path, th_files("s").key_path, th_dir);
    struct moat_conf *conf = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_conf_parse("m.conf", text, strlen(text), th_dir, &conf, &err).kind, MOAT_OK);
    char state[160];
    snprintf(state, sizeof(state), "%s", th_path("state"));
    mkdir(state, 0700);
    struct moat_snapshot_env env = {.state_dir = state, .quiet = 1};
    struct moat_snapshot *snap = NULL;
    moat_rc rc = moat_snapshot_build(conf, &env, &snap, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "snapshot: %s\n", err.msg);
        return;
    }
    SSL_CTX *cli = th_client_ctx();
    char cn[64];
    EXPECT_STR(cn_of(snap, cli, cn, sizeof(cn)), "s.test");

    struct moat_tls_certset *a = mem_set("a.s.test"), *b = mem_set("b.s.test");
    struct moat_tls_certset *two[] = {a, b};
    EXPECT_INT(moat_snapshot_swap_certs(snap, &snap->sites[0], two, 2, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "both have ECDSA keys") != NULL);
    EXPECT_STR(cn_of(snap, cli, cn, sizeof(cn)), "s.test");

    EXPECT_INT(moat_snapshot_swap_certs(snap, &snap->sites[0], &b, 1, &err).kind, MOAT_OK);
    EXPECT_STR(cn_of(snap, cli, cn, sizeof(cn)), "b.s.test");
    moat_tls_certset_unref(a);
    moat_tls_certset_unref(b);
    SSL_CTX_free(cli);
    moat_snapshot_unref(snap);
}

int main(void)
{
    th_dir_make();
    EXPECT(th_cert_files("s", "ec", "s.test"));
    RUN(snapshot_site_swap);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
