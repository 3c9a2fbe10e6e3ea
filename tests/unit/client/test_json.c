/*
 * test_json.c: the --json document of a synthetic trace parses back (jansson) with the facts
 * in their documented places, including the null parts of a run that failed early.
 */
#include "client/json.h"

#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include <openssl/ssl.h>

static json_t *dump(const struct moat_client_result *r)
{
    char *s = moat_client_json_dump(r);
    EXPECT(s != NULL);
    json_error_t e;
    json_t *doc = s ? json_loads(s, 0, &e) : NULL;
    EXPECT(doc != NULL);
    free(s);
    return doc;
}

static const char *str_at(json_t *doc, const char *path)
{
    json_t *v = json_object_get(doc, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

TEST_CASE(success_document)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://example.test/", &h->url, &err).kind, MOAT_OK);
    snprintf(h->url_text, sizeof(h->url_text), "https://example.test/");
    snprintf(r->trust_desc, sizeof(r->trust_desc), "the system store");
    h->tls_start_ms = 1;
    h->tls_done = 1;
    h->version = TLS1_3_VERSION;
    snprintf(h->version_name, sizeof(h->version_name), "TLSv1.3");
    snprintf(h->alpn, sizeof(h->alpn), "http/1.1");
    h->trace.msgs = calloc(2, sizeof(*h->trace.msgs));
    h->trace.n = h->trace.cap = 2;
    h->trace.msgs[0] = (struct moat_trace_msg){
        .ms = 1.5, .dir = MOAT_TRACE_OUT, .content_type = 22, .hs_type = 1, .len = 300};
    h->trace.msgs[1] = (struct moat_trace_msg){.ms = 2.5,
                                               .dir = MOAT_TRACE_IN,
                                               .content_type = 21,
                                               .hs_type = -1,
                                               .len = 2,
                                               .alert_level = 1,
                                               .alert_desc = 0};
    h->nsent = 1;
    snprintf(h->sent[0].subject, sizeof(h->sent[0].subject), "CN=example.test");
    snprintf(h->sent[0].names, sizeof(h->sent[0].names), "DNS:example.test, IP:127.0.0.1");
    h->req_head = strdup("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
    h->resp_head = strdup("HTTP/1.1 200 OK\r\nServer: x:y\r\n\r\n");
    h->status = 200;
    snprintf(h->reason, sizeof(h->reason), "OK");
    h->body_framing = 2;
    h->stage = MOAT_STAGE_DONE;
    json_t *doc = dump(r);
    EXPECT_INT(json_integer_value(json_object_get(doc, "moat_trace")), 1);
    EXPECT_STR(str_at(doc, "url"), "https://example.test/");
    json_t *res = json_object_get(doc, "result");
    EXPECT(json_is_true(json_object_get(res, "ok")));
    EXPECT_STR(str_at(res, "cause"), "ok");
    EXPECT(json_is_null(json_object_get(res, "certificate_kind")));
    json_t *hop = json_array_get(json_object_get(doc, "hops"), 0);
    json_t *tls = json_object_get(hop, "tls");
    EXPECT_STR(str_at(tls, "version"), "TLSv1.3");
    EXPECT_STR(str_at(tls, "alpn"), "http/1.1");
    EXPECT(json_is_null(json_object_get(tls, "cipher")));
    json_t *msgs = json_object_get(tls, "messages");
    EXPECT_INT(json_array_size(msgs), 2);
    EXPECT_STR(str_at(json_array_get(msgs, 0), "type"), "ClientHello");
    EXPECT_STR(str_at(json_array_get(msgs, 0), "direction"), "client->server");
    EXPECT_INT(json_integer_value(json_object_get(json_array_get(msgs, 0), "size")), 300);
    json_t *alert = json_object_get(json_array_get(msgs, 1), "alert");
    EXPECT_STR(str_at(alert, "description"), "close_notify");
    EXPECT_STR(str_at(alert, "level"), "warning");
    json_t *names =
        json_object_get(json_array_get(json_object_get(tls, "certificates_sent"), 0), "names");
    EXPECT_INT(json_array_size(names), 2);
    EXPECT_STR(json_string_value(json_array_get(names, 1)), "IP:127.0.0.1");
    EXPECT(json_is_null(json_object_get(tls, "issuer_check")));
    json_t *http = json_object_get(hop, "http");
    EXPECT_STR(str_at(http, "status_line"), "HTTP/1.1 200 OK");
    EXPECT_STR(str_at(http, "framing"), "chunked");
    json_t *f = json_array_get(json_object_get(http, "response_headers"), 0);
    EXPECT_STR(json_string_value(json_array_get(f, 0)), "Server");
    EXPECT_STR(json_string_value(json_array_get(f, 1)), "x:y");
    json_decref(doc);
    moat_client_result_clear(r);
    free(r);
}

TEST_CASE(early_failure_document)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://gone.invalid/", &h->url, &err).kind, MOAT_OK);
    h->stage = MOAT_STAGE_DNS;
    h->cause = MOAT_CC_DNS;
    r->cause = MOAT_CC_DNS;
    r->exit_code = 3;
    snprintf(h->detail, sizeof(h->detail), "\"gone.invalid\" could not be resolved");
    json_t *doc = dump(r);
    json_t *res = json_object_get(doc, "result");
    EXPECT(json_is_false(json_object_get(res, "ok")));
    EXPECT_STR(str_at(res, "cause"), "dns");
    EXPECT_STR(str_at(res, "stage"), "DNS");
    EXPECT_INT(json_integer_value(json_object_get(res, "exit_code")), 3);
    EXPECT(str_at(res, "fix") != NULL);
    json_t *hop = json_array_get(json_object_get(doc, "hops"), 0);
    EXPECT(json_is_null(json_object_get(hop, "tls")));
    EXPECT(json_is_null(json_object_get(hop, "http")));
    EXPECT(json_is_null(json_object_get(json_object_get(hop, "tcp"), "peer")));
    json_decref(doc);
    moat_client_result_clear(r);
    free(r);
}

/* The issuer lookup's facts, the lookup's own message and fix, and the gloss of the alert. */
TEST_CASE(issuer_check_document)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://leaf.test/", &h->url, &err).kind, MOAT_OK);
    h->tls_start_ms = 1;
    h->version = TLS1_3_VERSION;
    h->stage = MOAT_STAGE_TLS;
    h->cause = MOAT_CC_CERT;
    r->cause = MOAT_CC_CERT;
    h->vkind = MOAT_V_MISSING_INTERMEDIATE;
    h->trace.msgs = calloc(1, sizeof(*h->trace.msgs));
    h->trace.n = h->trace.cap = 1;
    h->trace.msgs[0] = (struct moat_trace_msg){.ms = 2,
                                               .dir = MOAT_TRACE_OUT,
                                               .content_type = 21,
                                               .hs_type = -1,
                                               .len = 2,
                                               .alert_level = 2,
                                               .alert_desc = 48};
    snprintf(h->alert_gloss, sizeof(h->alert_gloss), "GLOSS");
    h->alert_gloss_dir = MOAT_TRACE_OUT;
    snprintf(h->cert_fix, sizeof(h->cert_fix), "FIX");
    h->issuer_diag = MOAT_ISSUER_MISSING_INTERMEDIATE;
    snprintf(h->issuer_root, sizeof(h->issuer_root), "CN=root");
    snprintf(h->issuer_root_from, sizeof(h->issuer_root_from), "--cafile r.pem");
    h->naia = 2;
    snprintf(h->aia[0].url, sizeof(h->aia[0].url), "http://ca.test/i.der");
    h->aia[0].ok = 1;
    h->aia[0].status = 200;
    h->aia[0].bytes = 464;
    h->aia[0].form = "DER";
    snprintf(h->aia[0].cert.subject, sizeof(h->aia[0].cert.subject), "CN=inter");
    snprintf(h->aia[1].url, sizeof(h->aia[1].url), "http://ca.test/hang");
    snprintf(h->aia[1].error, sizeof(h->aia[1].error), "no complete answer");
    h->aia[1].form = "";
    json_t *doc = dump(r);
    json_t *res = json_object_get(doc, "result");
    EXPECT_STR(str_at(res, "certificate_kind"), "missing_intermediate");
    EXPECT_STR(str_at(res, "fix"), "FIX");
    json_t *tls = json_object_get(json_array_get(json_object_get(doc, "hops"), 0), "tls");
    EXPECT_STR(str_at(json_array_get(json_object_get(tls, "messages"), 0), "note"), "GLOSS");
    json_t *ic = json_object_get(tls, "issuer_check");
    EXPECT_STR(str_at(ic, "diagnosis"), "missing_intermediate");
    EXPECT_STR(str_at(ic, "root"), "CN=root");
    EXPECT_STR(str_at(ic, "root_source"), "--cafile r.pem");
    EXPECT(json_is_null(json_object_get(ic, "note")));
    json_t *fs = json_object_get(ic, "fetches");
    EXPECT_INT(json_array_size(fs), 2);
    json_t *f0 = json_array_get(fs, 0);
    EXPECT(json_is_true(json_object_get(f0, "ok")));
    EXPECT_INT(json_integer_value(json_object_get(f0, "status")), 200);
    EXPECT_STR(str_at(f0, "form"), "DER");
    EXPECT_STR(str_at(json_object_get(f0, "certificate"), "subject"), "CN=inter");
    EXPECT(json_is_null(json_object_get(f0, "error")));
    json_t *f1 = json_array_get(fs, 1);
    EXPECT(json_is_false(json_object_get(f1, "ok")));
    EXPECT(json_is_null(json_object_get(f1, "status")));
    EXPECT(json_is_null(json_object_get(f1, "certificate")));
    EXPECT(json_is_null(json_object_get(f1, "form")));
    EXPECT_STR(str_at(f1, "error"), "no complete answer");
    json_decref(doc);
    moat_client_result_clear(r);
    free(r);
}

int main(void)
{
    RUN(success_document);
    RUN(early_failure_document);
    RUN(issuer_check_document);
    TEST_MAIN_END();
}
