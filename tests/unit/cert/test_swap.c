/*
 * test_swap.c: replacing a site's certificates at run time (moat_tls_sni_swap_ctx), seen from
 * real handshakes over a socketpair: after the swap a new handshake for the site, or without
 * SNI when the site is the default, gets the new certificate; a connection made before keeps
 * its certificate and keeps working; another site is untouched; a refused swap changes nothing.
 */
#include "tls/certset.h"
#include "test.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/tls_helpers.h"

#include <fcntl.h>
#include <sys/socket.h>

static int site_main, site_other;
static SSL_CTX *cli;

/* A set for `cn` made in memory (no file at all), self-signed. */
static struct moat_tls_certset *mem_set(const char *cn)
{
    EVP_PKEY *key = th_key("ec");
    X509 *leaf = th_x509(key, cn, NULL, NULL, 0);
    struct moat_tls_certset *s = NULL;
    EXPECT_INT(moat_tls_certset_new(leaf, NULL, key, cn, NULL, 0, &s, NULL).kind, MOAT_OK);
    return s;
}

static SSL_CTX *ctx_of(struct moat_tls_certset *s)
{
    struct moat_tls_certset *sets[] = {s};
    struct moat_tls_opts o = {.sets = sets, .nsets = 1};
    SSL_CTX *c = NULL;
    struct moat_err err = {0};
    if (!moat_ok(moat_tls_ctx_new(&o, &c, &err))) {
        fprintf(stderr, "ctx_of: %s\n", err.msg);
    }
    return c;
}

/* A client and a server SSL on the two ends of a non-blocking socketpair. */
struct conn {
    int fd[2];
    SSL *c, *s;
};

static void conn_open(struct conn *k, SSL_CTX *sctx, const char *sni)
{
    memset(k, 0, sizeof(*k));
    EXPECT_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, k->fd), 0);
    for (int i = 0; i < 2; i++) {
        fcntl(k->fd[i], F_SETFL, fcntl(k->fd[i], F_GETFL) | O_NONBLOCK);
    }
    k->c = SSL_new(cli);
    k->s = SSL_new(sctx);
    SSL_set_fd(k->c, k->fd[0]);
    SSL_set_fd(k->s, k->fd[1]);
    SSL_set_connect_state(k->c);
    SSL_set_accept_state(k->s);
    if (sni != NULL) {
        SSL_set_tlsext_host_name(k->c, sni);
    }
}

static int conn_handshake(struct conn *k)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!th_step(k->c, &cdone) || !th_step(k->s, &sdone)) {
            ERR_clear_error();
            return 0;
        }
    }
    return cdone && sdone;
}

static void conn_close(struct conn *k)
{
    SSL_free(k->c);
    SSL_free(k->s);
    close(k->fd[0]);
    close(k->fd[1]);
    ERR_clear_error();
}

/* One whole handshake; the CN the client saw ("" when it failed). */
static const char *cn_for(struct moat_tls_sni *t, const char *sni, char *out, int outlen)
{
    struct conn k;
    conn_open(&k, moat_tls_sni_default_ctx(t), sni);
    out[0] = '\0';
    if (conn_handshake(&k)) {
        th_peer_cn(k.c, out, outlen);
    }
    conn_close(&k);
    return out;
}

/* Bytes from client to server over an established connection. */
static int conn_echo(struct conn *k)
{
    char buf[8];
    ERR_clear_error();
    if (SSL_write(k->c, "ping", 4) != 4) {
        return 0;
    }
    for (int i = 0; i < 20; i++) {
        int n = SSL_read(k->s, buf, sizeof(buf));
        if (n == 4) {
            return memcmp(buf, "ping", 4) == 0;
        }
    }
    ERR_clear_error();
    return 0;
}

TEST_CASE(handshake_after_swap_gets_new_certificate)
{
    struct moat_tls_certset *old_set = mem_set("old.example");
    struct moat_tls_certset *new_set = mem_set("new.example");
    struct moat_tls_certset *other_set = mem_set("other.example");
    SSL_CTX *old_ctx = ctx_of(old_set), *other_ctx = ctx_of(other_set);
    /* The contexts hold their own references: the sets may go at once. */
    moat_tls_certset_unref(old_set);
    moat_tls_certset_unref(other_set);

    struct moat_tls_sni *t = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(t, "site.example", old_ctx, &site_main, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(t, "*.site.example", old_ctx, &site_main, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(t, "other.example", other_ctx, &site_other, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(t, NULL).kind, MOAT_OK);
    SSL_CTX_free(old_ctx); /* the table holds it now */
    SSL_CTX_free(other_ctx);

    char cn[64];
    EXPECT_STR(cn_for(t, "site.example", cn, sizeof(cn)), "old.example");
    EXPECT_STR(cn_for(t, NULL, cn, sizeof(cn)), "old.example");

    /* A connection made before the swap, and one created before it but not yet handshaking. */
    struct conn before, pending;
    conn_open(&before, moat_tls_sni_default_ctx(t), "site.example");
    EXPECT_INT(conn_handshake(&before), 1);
    conn_open(&pending, moat_tls_sni_default_ctx(t), "a.site.example");

    SSL_CTX *new_ctx = ctx_of(new_set);
    moat_tls_certset_unref(new_set);
    struct moat_err err = {0};
    EXPECT_INT(moat_tls_sni_swap_ctx(t, &site_main, new_ctx, &err).kind, MOAT_OK);
    SSL_CTX_free(new_ctx);

    EXPECT(moat_tls_sni_default_ctx(t) == new_ctx);
    EXPECT(moat_tls_sni_entry_ctx(moat_tls_sni_lookup(t, "site.example", 12)) == new_ctx);
    EXPECT_STR(cn_for(t, "site.example", cn, sizeof(cn)), "new.example");
    EXPECT_STR(cn_for(t, "b.site.example", cn, sizeof(cn)), "new.example");
    EXPECT_STR(cn_for(t, NULL, cn, sizeof(cn)), "new.example");
    EXPECT_STR(cn_for(t, "unknown.example", cn, sizeof(cn)), "new.example");
    EXPECT_STR(cn_for(t, "other.example", cn, sizeof(cn)), "other.example");

    /* The pending connection reads its ClientHello after the swap: the new certificate. */
    EXPECT_INT(conn_handshake(&pending), 1);
    EXPECT_STR(th_peer_cn(pending.c, cn, sizeof(cn)), "new.example");
    EXPECT(moat_tls_sni_site_of(pending.s) == &site_main);
    conn_close(&pending);

    /* The running connection keeps its certificate and keeps working. */
    EXPECT_STR(th_peer_cn(before.c, cn, sizeof(cn)), "old.example");
    EXPECT_INT(conn_echo(&before), 1);
    conn_close(&before);

    /* Refused swaps change nothing. */
    struct moat_tls_certset *stray_set = mem_set("stray.example");
    SSL_CTX *stray = ctx_of(stray_set);
    moat_tls_certset_unref(stray_set);
    EXPECT_INT(moat_tls_sni_swap_ctx(t, &err, stray, &err).kind, MOAT_E_NOTFOUND);
    EXPECT_INT(moat_tls_sni_swap_ctx(t, &site_main, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_STR(cn_for(t, "site.example", cn, sizeof(cn)), "new.example");
    SSL_CTX_free(stray);
    moat_tls_sni_free(t);
    EXPECT_INT(ERR_peek_error(), 0);
}

int main(void)
{
    cli = th_client_ctx();
    RUN(handshake_after_swap_gets_new_certificate);
    SSL_CTX_free(cli);
    TEST_MAIN_END();
}
