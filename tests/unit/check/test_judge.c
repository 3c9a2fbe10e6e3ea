/*
 * test_judge.c: moat check's rules on scans written by hand: which findings a set of facts
 * gives, the grade and its rule, the exit code, and that both reports render every fact (the
 * JSON one parses back with the same grade).
 */
#include "check/judge.h"
#include "check/report.h"
#include "check/suites.h"

#include "test.h"

#include <jansson.h>
#include <stdlib.h>

static struct moat_check_scan *good(void)
{
    struct moat_check_scan *s = calloc(1, sizeof(*s));
    snprintf(s->host, sizeof(s->host), "www.example.com");
    s->port = 443;
    snprintf(s->addr, sizeof(s->addr), "192.0.2.1:443");
    s->public_name = 1;
    for (int v = 0; v < MOAT_VER_COUNT; v++) {
        s->versions[v] = v >= MOAT_VER_TLS12 ? MOAT_YES : MOAT_NO;
        s->server_order[v] = MOAT_UNKNOWN;
    }
    s->suites[MOAT_VER_TLS13][0] = 0x1301;
    s->nsuites[MOAT_VER_TLS13] = 1;
    s->suites[MOAT_VER_TLS12][0] = 0xC02B;
    s->suites[MOAT_VER_TLS12][1] = 0xC02C;
    s->nsuites[MOAT_VER_TLS12] = 2;
    s->server_order[MOAT_VER_TLS12] = MOAT_YES;
    s->groups13[0] = 0x001D;
    s->ngroups13 = 1;
    s->compression = s->client_reneg = s->heartbeat = s->heartbleed = MOAT_NO;
    s->secure_reneg = s->fallback_scsv = s->ems = MOAT_YES;
    s->alpn_h2 = s->alpn_http11 = s->resume_ticket13 = s->resume_ticket12 = MOAT_YES;
    s->resume_id12 = MOAT_NO;
    s->ocsp_stapled = MOAT_YES;
    s->cert_read = MOAT_YES;
    struct moat_check_certfacts *c = &s->cert;
    snprintf(c->key, sizeof(c->key), "EC P-256");
    snprintf(c->sig, sizeof(c->sig), "ecdsa-with-SHA256");
    c->key_bits = 256;
    c->eku_server = c->names_match = c->chain_order_ok = 1;
    c->scts = 2;
    c->ocsp_url = 1;
    c->days_left = 60;
    c->days_total = 90;
    c->chain_sent = 2;
    s->verified = 1;
    s->status = 200;
    s->hsts_max_age = 31536000;
    s->hdr_nosniff = s->hdr_frame = s->hdr_csp = s->hdr_referrer = 1;
    s->http_redirects = MOAT_YES;
    s->http_status = 308;
    s->caa = MOAT_YES;
    return s;
}

static const struct moat_check_finding *find(const struct moat_check_report *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->f[i].id, id) == 0) {
            return &r->f[i];
        }
    }
    return NULL;
}

TEST_CASE(a_good_setup_gets_a_plus_and_exit_0)
{
    struct moat_check_scan *s = good();
    struct moat_check_report r;
    moat_check_judge(s, &r);
    EXPECT_STR(r.grade, "A+");
    EXPECT_INT(r.exit_code, 0);
    for (size_t i = 0; i < r.n; i++) {
        EXPECT(r.f[i].sev == MOAT_SEV_INFO);
    }
    /* Without HSTS: A, and the finding says why. */
    s->hsts_max_age = -1;
    moat_check_judge(s, &r);
    EXPECT_STR(r.grade, "A");
    EXPECT(find(&r, "http.no_hsts") != NULL);
    EXPECT_INT(r.exit_code, 4);
    free(s);
}

TEST_CASE(the_lowest_cap_wins)
{
    struct moat_check_scan *s = good();
    s->versions[MOAT_VER_TLS10] = MOAT_YES; /* B */
    s->suites[MOAT_VER_TLS12][2] = 0x0005;  /* RC4: C */
    s->nsuites[MOAT_VER_TLS12] = 3;
    struct moat_check_report r;
    moat_check_judge(s, &r);
    EXPECT_STR(r.grade, "C");
    EXPECT(strstr(r.grade_rule, "suites.rc4") != NULL);
    const struct moat_check_finding *f = find(&r, "suites.rc4");
    EXPECT(f != NULL && f->cve != NULL && f->fix.nginx != NULL);
    EXPECT(find(&r, "protocol.tls10_11") != NULL);
    EXPECT(find(&r, "suites.some_without_forward_secrecy") != NULL);
    EXPECT(find(&r, "suites.cbc") == NULL); /* RC4 is no CBC */
    EXPECT(find(&r, "vuln.beast") == NULL); /* no TLS 1.0 suite listed */
    s->suites[MOAT_VER_TLS10][0] = 0xC013;  /* ECDHE-RSA-AES128-SHA */
    s->nsuites[MOAT_VER_TLS10] = 1;
    moat_check_judge(s, &r);
    EXPECT(find(&r, "vuln.beast") != NULL);
    f = find(&r, "suites.cbc");
    EXPECT(f != NULL && strstr(f->evidence, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA") != NULL);
    s->nsuites[MOAT_VER_TLS10] = 0;
    EXPECT_INT(r.exit_code, 5); /* RC4 is high */
    s->heartbleed = s->heartbeat = MOAT_YES;
    moat_check_judge(s, &r);
    EXPECT_STR(r.grade, "F");
    EXPECT_INT(r.f[0].sev, MOAT_SEV_CRITICAL); /* worst first */
    EXPECT_INT(r.exit_code, 6);
    s->cert.chain_expired = 1;
    moat_check_judge(s, &r);
    EXPECT_STR(r.grade, "T");
    free(s);
}

TEST_CASE(certificate_rules)
{
    struct moat_check_scan *s = good();
    struct moat_check_report r;
    s->cert.days_left = 20; /* of 90: under a third */
    moat_check_judge(s, &r);
    const struct moat_check_finding *f = find(&r, "cert.expires_soon");
    EXPECT(f != NULL && f->sev == MOAT_SEV_MEDIUM);
    s->cert.days_left = 20;
    s->cert.days_total = 30; /* a 30-day certificate at 20 days: not due */
    moat_check_judge(s, &r);
    EXPECT(find(&r, "cert.expires_soon") == NULL);
    s->cert.days_left = 2;
    moat_check_judge(s, &r);
    f = find(&r, "cert.expires_soon");
    EXPECT(f != NULL && f->sev == MOAT_SEV_HIGH);
    s->cert.days_left = 60;
    s->cert.key_rsa = 1;
    s->cert.key_bits = 1024;
    s->cert.scts = 0;
    s->cert.chain_root_sent = 1;
    s->cert.chain_order_ok = 0;
    moat_check_judge(s, &r);
    f = find(&r, "cert.key_small");
    EXPECT(f != NULL && f->cap == 'B');
    EXPECT(find(&r, "cert.no_sct") != NULL);
    EXPECT(find(&r, "cert.root_sent") != NULL);
    EXPECT(find(&r, "cert.chain_order") != NULL);
    /* A local name needs no CT. */
    s->public_name = 0;
    moat_check_judge(s, &r);
    EXPECT(find(&r, "cert.no_sct") == NULL);
    free(s);
}

TEST_CASE(dh_and_options)
{
    struct moat_check_scan *s = good();
    s->dh_bits = 1024;
    s->compression = MOAT_YES;
    s->secure_reneg = MOAT_NO;
    s->fallback_scsv = MOAT_NO;
    s->early_data = 16384;
    s->alpn_h2 = MOAT_NO;
    s->caa = MOAT_NO;
    struct moat_check_report r;
    moat_check_judge(s, &r);
    EXPECT(find(&r, "kex.dh_small") != NULL);
    EXPECT(find(&r, "vuln.crime") != NULL);
    EXPECT(find(&r, "vuln.insecure_renegotiation") != NULL);
    EXPECT(find(&r, "tls.no_fallback_scsv") != NULL);
    EXPECT(find(&r, "tls.early_data") != NULL);
    EXPECT(find(&r, "http.no_h2") != NULL);
    EXPECT(find(&r, "dns.no_caa") != NULL);
    EXPECT_STR(r.grade, "C");
    free(s);
}

TEST_CASE(reports_render_and_json_parses_back)
{
    struct moat_check_scan *s = good();
    s->versions[MOAT_VER_TLS11] = MOAT_YES;
    s->versions[MOAT_VER_SSL2] = MOAT_UNKNOWN;
    struct moat_check_report r;
    moat_check_judge(s, &r);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    EXPECT(moat_check_report_json(s, &r, f) == 0);
    fclose(f);
    json_error_t je;
    json_t *doc = json_loads(buf, 0, &je);
    EXPECT(doc != NULL);
    EXPECT_STR(json_string_value(json_object_get(doc, "grade")), "B");
    EXPECT(json_is_null(json_object_get(json_object_get(doc, "versions"), "SSLv2")));
    EXPECT(json_is_true(json_object_get(json_object_get(doc, "versions"), "TLS 1.1")));
    json_t *fs = json_object_get(doc, "findings");
    EXPECT(json_array_size(fs) == r.n);
    EXPECT_STR(json_string_value(json_object_get(json_array_get(fs, 0), "id")),
               "protocol.tls10_11");
    json_decref(doc);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    moat_check_report_text(s, &r, f);
    fclose(f);
    EXPECT(strstr(buf, "Grade B") != NULL);
    EXPECT(strstr(buf, "[MEDIUM] protocol.tls10_11") != NULL);
    EXPECT(strstr(buf, "nginx:   ssl_protocols TLSv1.2 TLSv1.3;") != NULL);
    free(buf);
    free(s);
}

int main(void)
{
    RUN(a_good_setup_gets_a_plus_and_exit_0);
    RUN(the_lowest_cap_wins);
    RUN(certificate_rules);
    RUN(dh_and_options);
    RUN(reports_render_and_json_parses_back);
    TEST_MAIN_END();
}
