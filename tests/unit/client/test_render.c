/*
 * test_render.c: the text diagram: arrows keep their width and put the label at the sender's
 * end, long labels are cut, encrypted arrows use '='; notes say where TLS 1.2 and 1.3 differ;
 * a whole synthetic trace (success and failure) renders the facts it holds.
 */
#include "client/render.h"

#include "test.h"

#include <stdlib.h>

#include <openssl/ssl.h>

TEST_CASE(arrows)
{
    char b[MOAT_RENDER_LANE + 16];
    const char *a = moat_client_render_arrow(MOAT_ARROW_OUT, "ClientHello  517 B", b, sizeof(b));
    EXPECT_INT(strlen(a), MOAT_RENDER_LANE + 2);
    EXPECT(strncmp(a, "|-- ClientHello  517 B ---", 26) == 0);
    EXPECT(strcmp(a + strlen(a) - 3, "->|") == 0);

    a = moat_client_render_arrow(MOAT_ARROW_IN_ENC, "Finished  36 B", b, sizeof(b));
    EXPECT_INT(strlen(a), MOAT_RENDER_LANE + 2);
    EXPECT(strncmp(a, "|<===", 5) == 0);
    EXPECT(strcmp(a + strlen(a) - 18, " Finished  36 B ==|") == 0 ||
           strstr(a, " Finished  36 B ==|") != NULL);
    EXPECT(strchr(a, '-') == NULL);

    a = moat_client_render_arrow(MOAT_ARROW_OUT_ENC, "GET /", b, sizeof(b));
    EXPECT(strncmp(a, "|== GET / ===", 13) == 0);
    EXPECT(strcmp(a + strlen(a) - 3, "=>|") == 0);

    a = moat_client_render_arrow(MOAT_ARROW_BOTH, "TCP", b, sizeof(b));
    EXPECT_INT(strlen(a), MOAT_RENDER_LANE + 2);
    EXPECT(strncmp(a, "|<-", 3) == 0 && strstr(a, " TCP ") != NULL);

    char longl[200];
    memset(longl, 'L', sizeof(longl) - 1);
    longl[sizeof(longl) - 1] = '\0';
    for (int k = 0; k < MOAT_ARROW_COUNT; k++) {
        a = moat_client_render_arrow((enum moat_render_arrow)k, longl, b, sizeof(b));
        EXPECT_INT(strlen(a), MOAT_RENDER_LANE + 2);
        EXPECT(strstr(a, "...") != NULL);
        a = moat_client_render_arrow((enum moat_render_arrow)k, "", b, sizeof(b));
        EXPECT_INT(strlen(a), MOAT_RENDER_LANE + 2);
    }
    /* A short buffer is never overrun. */
    char tiny[8];
    a = moat_client_render_arrow(MOAT_ARROW_OUT, "x", tiny, sizeof(tiny));
    EXPECT_INT(strlen(a), 7);
}

TEST_CASE(notes_mark_the_differences)
{
    struct moat_trace_msg m = {0};
    m.content_type = SSL3_RT_HANDSHAKE;
    m.dir = MOAT_TRACE_IN;
    m.hs_type = SSL3_MT_SERVER_KEY_EXCHANGE;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_2_VERSION), "TLS 1.2 only") != NULL);
    m.hs_type = SSL3_MT_ENCRYPTED_EXTENSIONS;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "TLS 1.3 only") != NULL);
    m.hs_type = SSL3_MT_CERTIFICATE;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "encrypted") != NULL);
    EXPECT(strstr(moat_client_render_note(&m, TLS1_2_VERSION), "clear") != NULL);
    m.hs_type = SSL3_MT_SERVER_HELLO;
    m.hrr = 1;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "round trip") != NULL);
    m.content_type = SSL3_RT_CHANGE_CIPHER_SPEC;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "middleboxes") != NULL);
    EXPECT(strstr(moat_client_render_note(&m, TLS1_2_VERSION), "server encrypts") != NULL);
    m.dir = MOAT_TRACE_OUT;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_2_VERSION), "client encrypts") != NULL);
    m.content_type = SSL3_RT_HANDSHAKE;
    m.hs_type = SSL3_MT_CERTIFICATE;
    m.len = 8;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "empty") != NULL);
    m.hs_type = 77;
    EXPECT(moat_client_render_note(&m, TLS1_3_VERSION) == NULL);
    m.content_type = SSL3_RT_ALERT;
    m.alert_desc = 116;
    EXPECT(strstr(moat_client_render_note(&m, TLS1_3_VERSION), "client certificate") != NULL);
}

static char *render(const struct moat_client_result *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    moat_client_render_text(r, f);
    fclose(f);
    return text;
}

static void add(struct moat_client_hop *h, double ms, enum moat_trace_dir d, int ct, int hs,
                size_t len)
{
    struct moat_trace *t = &h->trace;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->msgs = realloc(t->msgs, t->cap * sizeof(*t->msgs));
    }
    struct moat_trace_msg *m = &t->msgs[t->n++];
    memset(m, 0, sizeof(*m));
    m->ms = ms;
    m->dir = d;
    m->content_type = ct;
    m->hs_type = hs;
    m->len = len;
    if (ct == SSL3_RT_ALERT) {
        m->alert_level = 2;
        m->alert_desc = 45;
    }
}

TEST_CASE(whole_trace_success)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://example.test:8443/", &h->url, &err).kind, MOAT_OK);
    snprintf(h->url_text, sizeof(h->url_text), "https://example.test:8443/");
    h->naddrs = 1;
    snprintf(h->addrs[0], sizeof(h->addrs[0]), "127.0.0.1");
    snprintf(h->peer, sizeof(h->peer), "127.0.0.1:8443");
    h->stage = MOAT_STAGE_DONE;
    h->tcp_ok = 1;
    h->tcp_start_ms = 0.5;
    h->tcp_ms = 0.1;
    h->tls_start_ms = 0.7;
    h->version = TLS1_3_VERSION;
    snprintf(h->cipher, sizeof(h->cipher), "TLS_AES_128_GCM_SHA256");
    snprintf(h->group, sizeof(h->group), "X25519");
    snprintf(h->sni, sizeof(h->sni), "example.test");
    add(h, 1.0, MOAT_TRACE_OUT, 22, 1, 267);
    add(h, 2.0, MOAT_TRACE_IN, 22, 2, 122);
    add(h, 2.1, MOAT_TRACE_IN, 22, 8, 21);
    add(h, 2.2, MOAT_TRACE_IN, 22, 20, 36);
    add(h, 2.3, MOAT_TRACE_OUT, 22, 20, 36);
    moat_trace_finish(&h->trace, TLS1_3_VERSION);
    h->nsent = 1;
    snprintf(h->sent[0].subject, sizeof(h->sent[0].subject), "CN=example.test");
    snprintf(h->sent[0].names, sizeof(h->sent[0].names), "DNS:example.test");
    h->sent[0].days_left = 20;
    h->req_head = strdup("GET / HTTP/1.1\r\nHost: example.test:8443\r\n\r\n");
    h->req_ms = 3.0;
    h->resp_head = strdup("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    h->status = 200;
    snprintf(h->reason, sizeof(h->reason), "OK");
    h->first_byte_ms = 4.0;
    h->done_ms = 4.1;
    h->body_bytes = 5;
    h->body_framing = 1;
    h->total_ms = 4.2;
    char *text = render(r);
    EXPECT(strstr(text, "moat trace https://example.test:8443/") != NULL);
    EXPECT(strstr(text, "DNS     example.test -> 127.0.0.1") != NULL);
    EXPECT(strstr(text, "|-- ClientHello  267 B --") != NULL);
    EXPECT(strstr(text, " ServerHello  122 B --|") != NULL);
    EXPECT(strstr(text, "= EncryptedExtensions  21 B ==|") != NULL);
    EXPECT(strstr(text, "|== GET / HTTP/1.1") != NULL);
    EXPECT(strstr(text, "200 OK  head") != NULL);
    EXPECT(strstr(text, "body 5 B (Content-Length)") != NULL);
    EXPECT(strstr(text, "  version     TLS 1.3") != NULL);
    EXPECT(strstr(text, "  key group   X25519") != NULL);
    EXPECT(strstr(text, "[0] CN=example.test") != NULL);
    EXPECT(strstr(text, "  < HTTP/1.1 200 OK") != NULL);
    EXPECT(strstr(text, "Result: OK, 200 OK") != NULL);
    /* Time order: the request arrow comes after the client's Finished. */
    EXPECT(strstr(text, "|== Finished") < strstr(text, "|== GET /"));
    /* No line is wider than the page. */
    for (const char *p = text; *p != '\0';) {
        size_t l = strcspn(p, "\n");
        EXPECT(l <= 80);
        p += l + (p[l] == '\n');
    }
    free(text);
    moat_client_result_clear(r);
    free(r);
}

TEST_CASE(whole_trace_failure)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://old.test/", &h->url, &err).kind, MOAT_OK);
    snprintf(h->peer, sizeof(h->peer), "192.0.2.1:443");
    h->tcp_ok = 1;
    h->stage = MOAT_STAGE_TLS;
    h->version = TLS1_2_VERSION;
    add(h, 1.0, MOAT_TRACE_OUT, 22, 1, 200);
    add(h, 2.0, MOAT_TRACE_IN, 22, 2, 80);
    add(h, 2.1, MOAT_TRACE_IN, 22, 11, 900);
    add(h, 2.2, MOAT_TRACE_OUT, 21, -1, 2);
    moat_trace_finish(&h->trace, TLS1_2_VERSION);
    h->cause = MOAT_CC_CERT;
    h->vkind = MOAT_V_EXPIRED;
    h->verify_code = 10;
    snprintf(h->detail, sizeof(h->detail), "the server's certificate CN=old.test expired");
    h->total_ms = 2.3;
    char *text = render(r);
    EXPECT(strstr(text, "|-- ALERT certificate_expired (fatal)") != NULL);
    EXPECT(strstr(text, "X  stopped here: certificate expired") != NULL);
    EXPECT(strstr(text, "FAILED at TLS: certificate expired (exit code 5)") != NULL);
    EXPECT(strstr(text, "  cause  the certificate has expired\n") != NULL);
    EXPECT(strstr(text, "  detail the server's certificate CN=old.test expired\n") != NULL);
    EXPECT(strstr(text, "  fix    renew the certificate") != NULL);
    EXPECT(strstr(text, "HTTP\n") == NULL);
    free(text);
    moat_client_result_clear(r);
    free(r);
}

/* The fatal alert that ended a connection is glossed with what it meant there; other alerts,
 * the other direction and warnings keep their generic words. */
TEST_CASE(alert_gloss_says_what_it_meant_here)
{
    struct moat_client_hop *h = calloc(1, sizeof(*h));
    h->version = TLS1_3_VERSION;
    struct moat_trace_msg m = {0};
    m.content_type = SSL3_RT_ALERT;
    m.dir = MOAT_TRACE_OUT;
    m.alert_level = 2;
    m.alert_desc = 48; /* unknown_ca: generic words name an untrusted CA */
    const char *generic = moat_client_render_note(&m, h->version);
    EXPECT(generic != NULL && strstr(generic, "not trusted") != NULL);
    EXPECT_STR(moat_client_render_hop_note(h, &m), generic);
    snprintf(h->alert_gloss, sizeof(h->alert_gloss),
             "the client refuses the certificate: the "
             "server did not send the intermediate X");
    h->alert_gloss_dir = MOAT_TRACE_OUT;
    EXPECT_STR(moat_client_render_hop_note(h, &m), h->alert_gloss);
    m.dir = MOAT_TRACE_IN;
    EXPECT_STR(moat_client_render_hop_note(h, &m), generic);
    m.dir = MOAT_TRACE_OUT;
    m.alert_level = 1;
    EXPECT_STR(moat_client_render_hop_note(h, &m), generic);
    m.content_type = SSL3_RT_HANDSHAKE;
    m.alert_level = 0;
    m.hs_type = SSL3_MT_CLIENT_HELLO;
    EXPECT(strstr(moat_client_render_hop_note(h, &m), "offers versions") != NULL);
    free(h);
}

/* A trace whose issuer was looked up shows the fetch, the conclusion, the gloss under the
 * client's alert instead of the generic words, and the lookup's message and fix. */
TEST_CASE(whole_trace_issuer_lookup)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://leaf.test/", &h->url, &err).kind, MOAT_OK);
    snprintf(h->peer, sizeof(h->peer), "192.0.2.1:443");
    h->tcp_ok = 1;
    h->stage = MOAT_STAGE_TLS;
    h->version = TLS1_3_VERSION;
    add(h, 1.0, MOAT_TRACE_OUT, 22, 1, 200);
    add(h, 2.0, MOAT_TRACE_IN, 22, 2, 80);
    add(h, 2.2, MOAT_TRACE_OUT, 21, -1, 2);
    h->trace.msgs[2].alert_desc = 48;
    moat_trace_finish(&h->trace, TLS1_3_VERSION);
    h->cause = MOAT_CC_CERT;
    h->vkind = MOAT_V_UNKNOWN_ISSUER;
    h->verify_code = 20;
    h->issuer_diag = MOAT_ISSUER_UNDETERMINED;
    h->naia = 1;
    snprintf(h->aia[0].url, sizeof(h->aia[0].url), "http://ca.test/i.der");
    snprintf(h->aia[0].for_cert, sizeof(h->aia[0].for_cert), "CN=leaf.test");
    snprintf(h->aia[0].error, sizeof(h->aia[0].error), "the server answered 404 Not Found");
    h->aia[0].form = "";
    h->aia[0].ms = 3.25;
    snprintf(h->issuer_summary, sizeof(h->issuer_summary), "undetermined: SUMMARY");
    snprintf(h->cert_message, sizeof(h->cert_message), "MESSAGE OVERRIDE");
    snprintf(h->cert_fix, sizeof(h->cert_fix), "FIX OVERRIDE");
    snprintf(h->detail, sizeof(h->detail), "DETAIL");
    snprintf(h->alert_gloss, sizeof(h->alert_gloss), "GLOSS FOR THIS CASE");
    h->alert_gloss_dir = MOAT_TRACE_OUT;
    h->total_ms = 2.3;
    char *text = render(r);
    EXPECT(strstr(text, "|== ALERT unknown_ca (fatal)") != NULL);
    EXPECT(strstr(text, "|    GLOSS FOR THIS CASE\n") != NULL);
    EXPECT(strstr(text, moat_trace_alert_words(48)) == NULL);
    EXPECT(strstr(text, "Issuer lookup (the certificate's AIA caIssuers URL") != NULL);
    EXPECT(strstr(text, "fetched from http://ca.test/i.der") != NULL);
    EXPECT(strstr(text, "failed after 3.2 ms: the server answered 404 Not Found") != NULL ||
           strstr(text, "failed after 3.3 ms: the server answered 404 Not Found") != NULL);
    EXPECT(strstr(text, "  result      undetermined: SUMMARY\n") != NULL);
    EXPECT(strstr(text, "  cause  MESSAGE OVERRIDE\n") != NULL);
    EXPECT(strstr(text, "  fix    FIX OVERRIDE\n") != NULL);
    char line[256];
    EXPECT_STR(moat_client_hop_cause_line(h, line, sizeof(line)),
               "certificate unknown_issuer: DETAIL");
    EXPECT_STR(moat_client_hop_fix(h), "FIX OVERRIDE");
    free(text);
    moat_client_result_clear(r);
    free(r);
}

int main(void)
{
    RUN(arrows);
    RUN(notes_mark_the_differences);
    RUN(whole_trace_success);
    RUN(whole_trace_failure);
    RUN(alert_gloss_says_what_it_meant_here);
    RUN(whole_trace_issuer_lookup);
    TEST_MAIN_END();
}
