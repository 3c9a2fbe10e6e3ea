/*
 * test_metrics.c: a worker's counters (serve/metrics.c) and how the reports read them
 * (serve/report.c): site slots that stay put, status classes, methods and protocols in their
 * cells, latency buckets at their edges, handshake kinds told apart and the table's overflow,
 * the Prometheus text of two workers summed, and label values escaped.
 */
#include "serve/metrics.h"
#include "serve/report.h"
#include "serve/snapshot.h"

#include "core/log.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST_CASE(a_site_keeps_its_slot)
{
    unsigned a = moat_mx_slot("a.example");
    unsigned b = moat_mx_slot("b.example");
    EXPECT(a != 0 && b != 0 && a != b);
    EXPECT_INT(moat_mx_slot("a.example"), a);
    EXPECT_STR(moat_mx_slot_name(a), "a.example");
    EXPECT_STR(moat_mx_slot_name(0), "");
    EXPECT_STR(moat_mx_slot_name(MOAT_MX_SITES - 1), "(other)");
    EXPECT(moat_mx_slot_name(MOAT_MX_SITES - 2) == NULL); /* not given out yet */
    /* Past the table, names share the last slot. */
    char name[32];
    unsigned last = 0;
    for (int i = 0; i < MOAT_MX_SITES + 5; i++) {
        snprintf(name, sizeof(name), "many%d.example", i);
        last = moat_mx_slot(name);
    }
    EXPECT_INT(last, MOAT_MX_SITES - 1);
    EXPECT_INT(moat_mx_slot("a.example"), a); /* the early ones keep theirs */
}

TEST_CASE(an_upstream_server_keeps_its_slot_and_names)
{
    unsigned a = moat_mx_up_slot("app", "127.0.0.1:8001");
    unsigned b = moat_mx_up_slot("app", "127.0.0.1:8002");
    unsigned c = moat_mx_up_slot("api", "127.0.0.1:8001"); /* same server, other upstream */
    EXPECT(a != 0 && b != 0 && c != 0 && a != b && a != c && b != c);
    EXPECT_INT(moat_mx_up_slot("app", "127.0.0.1:8001"), a);
    const char *up = NULL, *srv = NULL;
    EXPECT(moat_mx_up_slot_names(b, &up, &srv));
    EXPECT_STR(up, "app");
    EXPECT_STR(srv, "127.0.0.1:8002");
    EXPECT(!moat_mx_up_slot_names(0, &up, &srv));
    EXPECT(!moat_mx_up_slot_names(MOAT_MX_UPS - 2, &up, &srv)); /* not given out yet */
    char name[32];
    unsigned last = 0;
    for (int i = 0; i < MOAT_MX_UPS + 3; i++) {
        snprintf(name, sizeof(name), "10.0.0.%d:80", i);
        last = moat_mx_up_slot("many", name);
    }
    EXPECT_INT(last, MOAT_MX_UPS - 1);
    EXPECT(moat_mx_up_slot_names(last, &up, &srv));
    EXPECT_STR(up, "(other)");
    EXPECT_STR(srv, "(other)");
    /* The site table is apart: its slots did not move. */
    EXPECT_STR(moat_mx_slot_name(0), "");

    struct moat_metrics *m = calloc(1, sizeof(*m));
    moat_metrics_upstream(m, a, 200, 0);
    moat_metrics_upstream(m, a, 101, 3);
    moat_metrics_upstream(m, a, 503, 20000);
    moat_metrics_upstream(m, 9999, 200, 1); /* out of range: "(other)" */
    EXPECT_INT(moat_mx_get(&m->ups[a].answers[1]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].answers[0]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].answers[4]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].lat[0]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].lat[2]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].lat[MOAT_MX_NBUCKET - 1]), 1);
    EXPECT_INT(moat_mx_get(&m->ups[a].lat_sum_ms), 20003);
    EXPECT_INT(moat_mx_get(&m->ups[MOAT_MX_UPS - 1].answers[1]), 1);
    free(m);
}

TEST_CASE(requests_land_in_their_cells)
{
    struct moat_metrics *m = calloc(1, sizeof(*m));
    moat_metrics_request(m, 3, 1, 200, MOAT_HTTP_M_GET, 0, 100);
    moat_metrics_request(m, 3, 1, 204, MOAT_HTTP_M_GET, 1, 0);
    moat_metrics_request(m, 3, 2, 404, MOAT_HTTP_M_HEAD, 2, 0);
    moat_metrics_request(m, 3, 0, 503, MOAT_HTTP_M_PATCH, 10001, 7);
    moat_metrics_request(m, 3, 1, 999, MOAT_HTTP_M_COUNT, 5, 0); /* junk: 5xx, other */
    struct moat_mx_site *s = &m->sites[3];
    EXPECT_INT(moat_mx_get(&s->req[1][1][MOAT_HTTP_M_GET]), 2);
    EXPECT_INT(moat_mx_get(&s->req[2][3][MOAT_HTTP_M_HEAD]), 1);
    EXPECT_INT(moat_mx_get(&s->req[0][4][MOAT_HTTP_M_PATCH]), 1);
    EXPECT_INT(moat_mx_get(&s->req[1][4][MOAT_HTTP_M_OTHER]), 1);
    /* Buckets: le 1 ms takes 0 and 1, le 2 takes 2, le 5 takes 5, +Inf takes 10001. */
    EXPECT_INT(moat_mx_get(&s->lat[0]), 2);
    EXPECT_INT(moat_mx_get(&s->lat[1]), 1);
    EXPECT_INT(moat_mx_get(&s->lat[2]), 1);
    EXPECT_INT(moat_mx_get(&s->lat[MOAT_MX_NBUCKET - 1]), 1);
    EXPECT_INT(moat_mx_get(&s->lat_sum_ms), 0 + 1 + 2 + 10001 + 5);
    EXPECT_INT(moat_mx_get(&s->bytes), 107);
    /* A slot out of range counts under "(other)", never past the array. */
    moat_metrics_request(m, 5000, 1, 200, MOAT_HTTP_M_GET, 0, 0);
    EXPECT_INT(moat_mx_get(&m->sites[MOAT_MX_SITES - 1].req[1][1][MOAT_HTTP_M_GET]), 1);
    free(m);
}

TEST_CASE(handshake_kinds_are_told_apart_and_bounded)
{
    struct moat_metrics *m = calloc(1, sizeof(*m));
    moat_metrics_handshake(m, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519", 0);
    moat_metrics_handshake(m, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519", 0);
    moat_metrics_handshake(m, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519", 1);
    moat_metrics_handshake(m, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", NULL, 0);
    EXPECT_INT(m->nhs, 3);
    EXPECT_INT(moat_mx_get(&m->hs[0].n), 2);
    EXPECT_INT(moat_mx_get(&m->hs[1].n), 1);
    EXPECT_STR(m->hs[2].group, "");
    char cipher[32];
    for (int i = 0; i < MOAT_MX_HS + 3; i++) {
        snprintf(cipher, sizeof(cipher), "C%d", i);
        moat_metrics_handshake(m, "TLSv1.3", cipher, "x25519", 0);
    }
    EXPECT_INT(m->nhs, MOAT_MX_HS);
    EXPECT_INT(moat_mx_get(&m->hs_lost), 6); /* 3 kinds were in: 29 new ones fit, 6 did not */
    free(m);
}

/* The Prometheus text of two workers, with an empty snapshot (no sites, no upstreams). */
TEST_CASE(prometheus_text_sums_the_workers_and_escapes_labels)
{
    struct moat_metrics *w[2] = {calloc(1, sizeof(**w)), calloc(1, sizeof(**w))};
    unsigned q = moat_mx_slot("q\"uote\\d.example");
    moat_metrics_request(w[0], q, 1, 200, MOAT_HTTP_M_GET, 3, 10);
    moat_metrics_request(w[1], q, 1, 201, MOAT_HTTP_M_GET, 30, 10);
    moat_mx_add(&w[0]->accepted, 4);
    moat_mx_add(&w[1]->accepted, 6);
    moat_mx_add(&w[1]->closed, 7);
    moat_mx_add(&w[0]->hs_fail[MOAT_MX_HSF_ALPN], 2);
    moat_metrics_handshake(w[0], "TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519", 0);
    moat_metrics_handshake(w[1], "TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519", 0);
    unsigned u = moat_mx_up_slot("app", "127.0.0.1:9");
    moat_metrics_upstream(w[0], u, 200, 3);
    moat_metrics_upstream(w[1], u, 204, 30);
    moat_mx_add(&w[0]->ups[u].opened, 1);
    moat_mx_add(&w[1]->ups[u].reused, 2);
    moat_mx_add(&w[1]->ups[u].failed, 5);
    struct moat_conf conf = {0};
    char *listen[] = {"127.0.0.1:1"};
    conf.listen = listen;
    conf.nlisten = 1;
    struct moat_snapshot snap = {.conf = &conf, .generation = 7};
    struct moat_report_src r = {.snap = &snap, .mx = w, .nworkers = 2, .admin = "unix:/x"};
    struct moat_buf out;
    moat_buf_init(&out, 1 << 20);
    EXPECT(moat_ok(moat_report_metrics(&r, &out)));
    EXPECT(moat_ok(moat_buf_append(&out, "", 1)));
    const char *t = moat_buf_rdptr(&out);
    EXPECT(strstr(t, "moat_requests_total{site=\"q\\\"uote\\\\d.example\",protocol=\"HTTP/1.1\","
                     "code=\"2xx\",method=\"GET\"} 2\n") != NULL);
    EXPECT(strstr(t, "moat_request_duration_seconds_bucket{site=\"q\\\"uote\\\\d.example\","
                     "le=\"0.005\"} 1\n") != NULL);
    EXPECT(strstr(t, "moat_request_duration_seconds_bucket{site=\"q\\\"uote\\\\d.example\","
                     "le=\"0.05\"} 2\n") != NULL);
    EXPECT(
        strstr(t, "moat_request_duration_seconds_sum{site=\"q\\\"uote\\\\d.example\"} 0.033\n") !=
        NULL);
    EXPECT(strstr(t, "moat_connections_accepted_total 10\n") != NULL);
    EXPECT(strstr(t, "moat_connections_open 3\n") != NULL);
    EXPECT(strstr(t, "moat_config_generation 7\n") != NULL);
    EXPECT(strstr(t, "moat_tls_handshakes_total{version=\"TLSv1.3\",cipher=\"TLS_AES_256_GCM_"
                     "SHA384\",group=\"x25519\",resumed=\"false\"} 2\n") != NULL);
    EXPECT(strstr(t, "moat_tls_handshake_failures_total{reason=\"no_common_protocol\"} 2\n") !=
           NULL);
    EXPECT(strstr(t, "moat_upstream_responses_total{upstream=\"app\",server=\"127.0.0.1:9\","
                     "code=\"2xx\"} 2\n") != NULL);
    EXPECT(strstr(t, "moat_upstream_response_duration_seconds_bucket{upstream=\"app\",server=\""
                     "127.0.0.1:9\",le=\"0.005\"} 1\n") != NULL);
    EXPECT(strstr(t, "moat_upstream_response_duration_seconds_count{upstream=\"app\",server=\""
                     "127.0.0.1:9\"} 2\n") != NULL);
    EXPECT(strstr(t, "moat_upstream_connections_opened_total{upstream=\"app\",server=\""
                     "127.0.0.1:9\"} 1\n") != NULL);
    EXPECT(strstr(t, "moat_upstream_connection_reuses_total{upstream=\"app\",server=\""
                     "127.0.0.1:9\"} 2\n") != NULL);
    EXPECT(strstr(t, "moat_upstream_failed_tries_total{upstream=\"app\",server=\""
                     "127.0.0.1:9\"} 5\n") != NULL);
    /* Every HELP has its TYPE. */
    size_t helps = 0, types = 0;
    for (const char *p = t; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        helps += strncmp(p, "# HELP ", 7) == 0;
        types += strncmp(p, "# TYPE ", 7) == 0;
    }
    EXPECT(helps > 10);
    EXPECT_INT(helps, types);
    uint64_t all, e4, e5;
    moat_report_totals(&r, &all, &e4, &e5);
    EXPECT_INT(all, 2);
    EXPECT_INT(e4 + e5, 0);
    moat_buf_clear(&out);
    free(w[0]);
    free(w[1]);
}

int main(void)
{
    moat_log_set_level(MOAT_LVL_ERROR);
    /* The slot test fills the table: the others take their slots first. */
    RUN(prometheus_text_sums_the_workers_and_escapes_labels);
    RUN(requests_land_in_their_cells);
    RUN(handshake_kinds_are_told_apart_and_bounded);
    RUN(a_site_keeps_its_slot);
    RUN(an_upstream_server_keeps_its_slot_and_names);
    TEST_MAIN_END();
}
