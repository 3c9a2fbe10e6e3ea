/*
 * test_ticket.c: session tickets through real handshakes: resumption with the current key, with
 * the previous key (and renewal), not after two rotations, the tick schedule, contexts without
 * tickets, no resumption across sites after an SNI switch, and rotation under concurrent
 * handshakes.
 */
#include <pthread.h>

#include "test.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/ticket.h"
#include "tls/tls_helpers.h"

static SSL_CTX *cli12, *cli13;

static SSL_CTX *server(const char *name, struct moat_tls_tickets *t, unsigned long cache)
{
    struct moat_tls_opts o = {.tickets = t, .session_cache_size = cache};
    SSL_CTX *c = NULL;
    struct moat_err err = {0};
    if (!moat_ok(th_ctx_new(&o, &name, 1, &c, &err))) {
        fprintf(stderr, "server %s: %s\n", name, err.msg);
    }
    return c;
}

/* Connect resuming `*sess` (NULL: full handshake); replaces *sess with the new session and
 * returns whether the server resumed (-1 when the handshake failed). */
static int conn(SSL_CTX *cctx, SSL_CTX *sctx, const char *sni, SSL_SESSION **sess)
{
    SSL_SESSION *got = NULL;
    int resumed = 0;
    if (!th_connect(cctx, sctx, sni, *sess, &got, &resumed)) {
        return -1;
    }
    SSL_SESSION_free(*sess);
    *sess = got;
    return resumed;
}

TEST_CASE(new_refuses_bad_period)
{
    struct moat_tls_tickets *t = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_tls_tickets_new(0, &t, &err).kind, MOAT_E_CONFIG);
    EXPECT(t == NULL);
    EXPECT(strstr(err.msg, "rotation") != NULL);
    EXPECT_INT(moat_tls_tickets_new((uint64_t)1 << 40, &t, NULL).kind, MOAT_E_CONFIG);
    moat_tls_tickets_free(NULL);
}

static void rotation_for(SSL_CTX *cli)
{
    struct moat_tls_tickets *t = NULL;
    EXPECT_INT(moat_tls_tickets_new(3600, &t, NULL).kind, MOAT_OK);
    SSL_CTX *s = server("ec", t, 0);
    /* The context holds its own reference: dropping ours early is fine. */
    moat_tls_tickets_free(t);
    EXPECT_INT(SSL_CTX_get_num_tickets(s), 1);
    EXPECT(!(SSL_CTX_get_options(s) & SSL_OP_NO_TICKET));

    SSL_SESSION *sess = NULL;
    EXPECT_INT(conn(cli, s, NULL, &sess), 0);
    EXPECT(sess && SSL_SESSION_is_resumable(sess));
    SSL_SESSION *old = sess;
    SSL_SESSION_up_ref(old);
    EXPECT_INT(conn(cli, s, NULL, &sess), 1);

    /* One rotation: the previous key still decrypts, and the server renews the ticket. */
    moat_tls_tickets_rotate(t);
    SSL_SESSION *o2 = old;
    SSL_SESSION_up_ref(o2);
    EXPECT_INT(conn(cli, s, NULL, &o2), 1);
    SSL_SESSION *renewed = o2; /* a ticket under the current key */

    /* Two rotations: the first ticket is dead, the renewed one lives on. */
    moat_tls_tickets_rotate(t);
    SSL_SESSION *o3 = old;
    SSL_SESSION_up_ref(o3);
    EXPECT_INT(conn(cli, s, NULL, &o3), 0);
    EXPECT_INT(conn(cli, s, NULL, &renewed), 1);

    SSL_SESSION_free(old);
    SSL_SESSION_free(o3);
    SSL_SESSION_free(renewed);
    SSL_SESSION_free(sess);
    SSL_CTX_free(s); /* last reference: the keys are wiped and freed here */
}

TEST_CASE(resume_and_rotate_tls13)
{
    rotation_for(cli13);
}

TEST_CASE(resume_and_rotate_tls12)
{
    rotation_for(cli12);
}

TEST_CASE(tick_rotates_when_due)
{
    struct moat_tls_tickets *t = NULL;
    EXPECT_INT(moat_tls_tickets_new(100, &t, NULL).kind, MOAT_OK);
    SSL_CTX *s = server("ec", t, 0);
    time_t now = time(NULL);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cli = v ? cli12 : cli13;
        SSL_SESSION *sess = NULL;
        EXPECT_INT(conn(cli, s, NULL, &sess), 0);
        SSL_SESSION *keep = sess;
        SSL_SESSION_up_ref(keep);
        /* Not due yet: nothing changes, however often it is called. */
        moat_tls_tickets_tick(t, now + 50);
        moat_tls_tickets_tick(t, now + 60);
        /* Due: one rotation, and a second tick at the same time does not rotate again. */
        moat_tls_tickets_tick(t, now + 101);
        moat_tls_tickets_tick(t, now + 101);
        moat_tls_tickets_tick(t, now + 150);
        SSL_SESSION *k1 = keep;
        SSL_SESSION_up_ref(k1);
        EXPECT_INT(conn(cli, s, NULL, &k1), 1);
        SSL_SESSION_free(k1);
        /* The period restarted at now + 101: due again at now + 201. */
        moat_tls_tickets_tick(t, now + 201);
        SSL_SESSION *k2 = keep;
        SSL_SESSION_up_ref(k2);
        EXPECT_INT(conn(cli, s, NULL, &k2), 0);
        SSL_SESSION_free(k2);
        SSL_SESSION_free(keep);
        SSL_SESSION_free(sess);
        now += 1000;
        moat_tls_tickets_tick(t, now);
    }
    SSL_CTX_free(s);
    moat_tls_tickets_free(t);
}

TEST_CASE(no_tickets_no_resumption)
{
    SSL_CTX *s = server("ec", NULL, 0);
    EXPECT(SSL_CTX_get_options(s) & SSL_OP_NO_TICKET);
    EXPECT_INT(SSL_CTX_get_num_tickets(s), 0);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cli = v ? cli12 : cli13;
        SSL_SESSION *sess = NULL;
        EXPECT_INT(conn(cli, s, NULL, &sess), 0);
        EXPECT(sess == NULL || !SSL_SESSION_has_ticket(sess));
        EXPECT_INT(conn(cli, s, NULL, &sess), 0);
        SSL_SESSION_free(sess);
    }
    SSL_CTX_free(s);

    /* A session cache without tickets: session IDs (TLS 1.2) and stateful tickets (TLS 1.3). */
    s = server("ec", NULL, 100);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cli = v ? cli12 : cli13;
        SSL_SESSION *sess = NULL;
        EXPECT_INT(conn(cli, s, NULL, &sess), 0);
        EXPECT_INT(conn(cli, s, NULL, &sess), 1);
        SSL_SESSION_free(sess);
    }
    SSL_CTX_free(s);
}

TEST_CASE(installing_again_replaces_keys)
{
    struct moat_tls_tickets *t1 = NULL, *t2 = NULL;
    EXPECT_INT(moat_tls_tickets_new(3600, &t1, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_tickets_new(3600, &t2, NULL).kind, MOAT_OK);
    SSL_CTX *s = server("ec", t1, 0);
    SSL_SESSION *sess = NULL;
    EXPECT_INT(conn(cli13, s, NULL, &sess), 0);
    EXPECT_INT(moat_tls_tickets_install(t2, s, NULL).kind, MOAT_OK);
    /* t1's ticket means nothing to t2. */
    EXPECT_INT(conn(cli13, s, NULL, &sess), 0);
    EXPECT_INT(conn(cli13, s, NULL, &sess), 1);
    /* Installing NULL turns tickets off. */
    EXPECT_INT(moat_tls_tickets_install(NULL, s, NULL).kind, MOAT_OK);
    EXPECT(SSL_CTX_get_options(s) & SSL_OP_NO_TICKET);
    EXPECT_INT(conn(cli13, s, NULL, &sess), 0);
    SSL_SESSION_free(sess);
    SSL_CTX_free(s);
    moat_tls_tickets_free(t1);
    moat_tls_tickets_free(t2);
}

static int site_a, site_b, site_nt;

TEST_CASE(no_resumption_across_sites)
{
    struct moat_tls_tickets *t = NULL;
    EXPECT_INT(moat_tls_tickets_new(3600, &t, NULL).kind, MOAT_OK);
    SSL_CTX *a = server("a", t, 100);
    SSL_CTX *b = server("b", t, 100);
    SSL_CTX *nt = server("nt", NULL, 0);
    struct moat_tls_sni *s = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s, "a.example", a, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "b.example", b, &site_b, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "nt.example", nt, &site_nt, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    SSL_CTX *dflt = moat_tls_sni_default_ctx(s);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cli = v ? cli12 : cli13;
        /* Site B (reached by switching from A's context) resumes its own sessions. */
        SSL_SESSION *sb = NULL;
        EXPECT_INT(conn(cli, dflt, "b.example", &sb), 0);
        EXPECT_INT(conn(cli, dflt, "b.example", &sb), 1);
        /* A's session offered to B: a full handshake, RFC 6066 §3. The session's name is
         * rewritten so the client really offers it (OpenSSL's client would not). */
        SSL_SESSION *sa = NULL;
        EXPECT_INT(conn(cli, dflt, "a.example", &sa), 0);
        SSL_SESSION *sa2 = sa;
        SSL_SESSION_up_ref(sa2);
        SSL_SESSION_set1_hostname(sa, "b.example");
        EXPECT_INT(conn(cli, dflt, "b.example", &sa), 0);
        /* ...while A itself still resumes it. */
        EXPECT_INT(conn(cli, dflt, "a.example", &sa2), 1);
        SSL_SESSION_free(sa2);
        /* A site without tickets issues none, even reached from a context with tickets. */
        SSL_SESSION *sn = NULL;
        EXPECT_INT(conn(cli, dflt, "nt.example", &sn), 0);
        EXPECT(sn == NULL || !SSL_SESSION_has_ticket(sn));
        EXPECT_INT(conn(cli, dflt, "nt.example", &sn), 0);
        SSL_SESSION_free(sa);
        SSL_SESSION_free(sb);
        SSL_SESSION_free(sn);
    }
    moat_tls_sni_free(s);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    SSL_CTX_free(nt);
    moat_tls_tickets_free(t);
}

TEST_CASE(sessions_follow_certificates)
{
    /* Contexts built from the same files (a configuration reload) share sessions; contexts with
     * other certificates do not, even with the same ticket keys. */
    struct moat_tls_tickets *t = NULL;
    EXPECT_INT(moat_tls_tickets_new(3600, &t, NULL).kind, MOAT_OK);
    SSL_CTX *a1 = server("a", t, 0), *a2 = server("a", t, 0), *b = server("b", t, 0);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cli = v ? cli12 : cli13;
        SSL_SESSION *s1 = NULL;
        EXPECT_INT(conn(cli, a1, NULL, &s1), 0);
        SSL_SESSION *s2 = s1;
        SSL_SESSION_up_ref(s2);
        EXPECT_INT(conn(cli, a2, NULL, &s1), 1);
        EXPECT_INT(conn(cli, b, NULL, &s2), 0);
        SSL_SESSION_free(s1);
        SSL_SESSION_free(s2);
    }
    SSL_CTX_free(a1);
    SSL_CTX_free(a2);
    SSL_CTX_free(b);
    moat_tls_tickets_free(t);
}

struct worker_arg {
    SSL_CTX *srv;
    SSL_CTX *cli;
    int full, resumed, failed;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;
    SSL_SESSION *sess = NULL;
    for (int i = 0; i < 40; i++) {
        int r = conn(w->cli, w->srv, NULL, &sess);
        if (r < 0) {
            w->failed++;
        } else if (r) {
            w->resumed++;
        } else {
            w->full++;
        }
    }
    SSL_SESSION_free(sess);
    return NULL;
}

TEST_CASE(rotation_under_concurrent_handshakes)
{
    struct moat_tls_tickets *t = NULL;
    EXPECT_INT(moat_tls_tickets_new(3600, &t, NULL).kind, MOAT_OK);
    SSL_CTX *s = server("ec", t, 0);
    struct worker_arg w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker_arg){.srv = s, .cli = i % 2 ? cli12 : cli13};
        EXPECT_INT(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        moat_tls_tickets_rotate(t);
        usleep(500);
    }
    int resumed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        EXPECT_INT(w[i].failed, 0);
        resumed += w[i].resumed;
    }
    /* Each resumption renews the ticket, so most connections resume despite the rotations. */
    EXPECT(resumed > 0);
    SSL_CTX_free(s);
    moat_tls_tickets_free(t);
}

int main(void)
{
    th_dir_make();
    int ok = th_cert_files("ec", "ec", "ec.example") && th_cert_files("a", "ec", "a.example") &&
             th_cert_files("b", "ec", "b.example") && th_cert_files("nt", "ec", "nt.example");
    EXPECT(ok);
    cli13 = th_client_ctx();
    cli12 = th_client_ctx();
    SSL_CTX_set_max_proto_version(cli12, TLS1_2_VERSION);
    RUN(new_refuses_bad_period);
    if (ok) {
        RUN(resume_and_rotate_tls13);
        RUN(resume_and_rotate_tls12);
        RUN(tick_rotates_when_due);
        RUN(no_tickets_no_resumption);
        RUN(installing_again_replaces_keys);
        RUN(no_resumption_across_sites);
        RUN(sessions_follow_certificates);
        RUN(rotation_under_concurrent_handshakes);
    }
    SSL_CTX_free(cli12);
    SSL_CTX_free(cli13);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
