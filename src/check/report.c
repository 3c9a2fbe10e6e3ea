/*
 * report.c: see report.h. The text puts the grade first and the findings last, worst first,
 * each with its evidence and the fix for each server; the facts in between let a reader check
 * the judgement against what was seen.
 */
#include "check/report.h"

#include "check/suites.h"

#include <jansson.h>
#include <string.h>

const char *moat_check_tri_word(enum moat_check_tri t)
{
    return t == MOAT_YES ? "yes" : t == MOAT_NO ? "no" : "?";
}

static void list16(FILE *f, const uint16_t *v, size_t n,
                   const char *(*name)(uint16_t, char *, size_t))
{
    for (size_t i = 0; i < n; i++) {
        char b[8];
        fprintf(f, "%s%s", i ? ", " : "", name(v[i], b, sizeof(b)));
    }
    fputs(n ? "\n" : "(none)\n", f);
}

void moat_check_report_text(const struct moat_check_scan *s, const struct moat_check_report *r,
                            FILE *f)
{
    int v6 = strchr(s->host, ':') != NULL;
    fprintf(f, "moat check %s%s%s:%u (%s): %u connections in %.1f s%s\n\n", v6 ? "[" : "", s->host,
            v6 ? "]" : "", s->port, s->addr, s->connections, s->ms / 1000.0,
            s->truncated ? " (stopped by its bounds: some facts are unknown)" : "");
    fprintf(f, "Grade %s   %s\n\n", r->grade, r->grade_rule);
    fputs("Protocols     ", f);
    for (int v = MOAT_VER_SSL2; v < MOAT_VER_COUNT; v++) {
        char b[8];
        fprintf(f, "%s%s %s", v ? " | " : "",
                moat_check_version_name(moat_check_ver_wire(v), b, sizeof(b)),
                moat_check_tri_word(s->versions[v]));
    }
    fputc('\n', f);
    for (int v = MOAT_VER_COUNT - 1; v >= MOAT_VER_SSL3; v--) {
        if (s->nsuites[v] == 0) {
            continue;
        }
        char b[8];
        fprintf(f, "%s suites (server's order enforced: %s): ",
                moat_check_version_name(moat_check_ver_wire(v), b, sizeof(b)),
                moat_check_tri_word(s->server_order[v]));
        list16(f, s->suites[v], s->nsuites[v], moat_check_suite_name);
    }
    if (s->ngroups13 > 0) {
        fputs("Groups (TLS 1.3)      ", f);
        list16(f, s->groups13, s->ngroups13, moat_check_group_name);
    }
    if (s->ngroups12 > 0) {
        fputs("Curves (TLS 1.2)      ", f);
        list16(f, s->groups12, s->ngroups12, moat_check_group_name);
    }
    if (s->nsigalgs13 > 0) {
        fputs("Signatures (TLS 1.3)  ", f);
        list16(f, s->sigalgs13, s->nsigalgs13, moat_check_sigalg_name);
    }
    if (s->nsigalgs12 > 0) {
        fputs("Signatures (TLS 1.2)  ", f);
        list16(f, s->sigalgs12, s->nsigalgs12, moat_check_sigalg_name);
    }
    if (s->dh_bits > 0) {
        fprintf(f, "DHE group     %d bits\n", s->dh_bits);
    }
    if (s->cert_read == MOAT_YES) {
        const struct moat_check_certfacts *c = &s->cert;
        fprintf(f,
                "Certificate   %s, %s, %ld days left, %d sent, verifies for %s: %s; SCTs %d, "
                "OCSP %s, CRL %s, stapled %s\n",
                c->key, c->sig, c->days_left, c->chain_sent, s->host, s->verified ? "yes" : "no",
                c->scts, c->ocsp_url ? "yes" : "no", c->crl_url ? "yes" : "no",
                moat_check_tri_word(s->ocsp_stapled));
    }
    fprintf(f, "Resumption    TLS 1.3 tickets %s | TLS 1.2 tickets %s | TLS 1.2 session ids %s\n",
            moat_check_tri_word(s->resume_ticket13), moat_check_tri_word(s->resume_ticket12),
            moat_check_tri_word(s->resume_id12));
    fprintf(f, "ALPN          h2 %s | http/1.1 %s\n", moat_check_tri_word(s->alpn_h2),
            moat_check_tri_word(s->alpn_http11));
    fprintf(f,
            "Options       compression %s | secure renegotiation %s | client renegotiation %s | "
            "fallback SCSV %s | heartbeat %s | 0-RTT %s\n",
            moat_check_tri_word(s->compression), moat_check_tri_word(s->secure_reneg),
            moat_check_tri_word(s->client_reneg), moat_check_tri_word(s->fallback_scsv),
            moat_check_tri_word(s->heartbeat), s->early_data ? "yes" : "no");
    if (s->status > 0) {
        if (s->hsts_max_age >= 0) {
            fprintf(f, "HSTS          max-age=%ld%s%s\n", s->hsts_max_age,
                    s->hsts_subdomains ? "; includeSubDomains" : "",
                    s->hsts_preload ? "; preload" : "");
        } else {
            fputs("HSTS          none\n", f);
        }
    }
    if (s->http_redirects != MOAT_UNKNOWN) {
        fprintf(f, "Plain HTTP    %d%s%s\n", s->http_status, s->http_location[0] ? " -> " : "",
                s->http_location);
    } else {
        fputs("Plain HTTP    no answer\n", f);
    }
    if (s->caa != MOAT_UNKNOWN) {
        fprintf(f, "CAA           %s%s%s\n", s->caa == MOAT_YES ? s->caa_records : "none",
                s->caa == MOAT_YES ? " at " : "", s->caa == MOAT_YES ? s->caa_owner : "");
    }
    fprintf(f, "\nFindings: %zu\n", r->n);
    for (size_t i = 0; i < r->n; i++) {
        const struct moat_check_finding *x = &r->f[i];
        char upper[16];
        const char *sv = moat_check_sev_name(x->sev);
        size_t k = 0;
        for (; sv[k] != '\0' && k < sizeof(upper) - 1; k++) {
            upper[k] = (char)(sv[k] >= 'a' && sv[k] <= 'z' ? sv[k] - 32 : sv[k]);
        }
        upper[k] = '\0';
        fprintf(f, "\n[%s] %s: %s", upper, x->id, x->title);
        if (x->cap) {
            fprintf(f, " (grade at most %c)", x->cap);
        }
        fputc('\n', f);
        fprintf(f, "    seen:    %s\n", x->evidence);
        if (x->cve != NULL) {
            fprintf(f, "    CVE:     %s\n", x->cve);
        }
        if (x->fix_note[0] != '\0') {
            fprintf(f, "    fix:     %s\n", x->fix_note);
        }
        if (x->fix.moat != NULL) {
            fprintf(f, "    moat:    %s\n", x->fix.moat);
        }
        if (x->fix.nginx != NULL) {
            fprintf(f, "    nginx:   %s\n", x->fix.nginx);
        }
        if (x->fix.haproxy != NULL) {
            fprintf(f, "    HAProxy: %s\n", x->fix.haproxy);
        }
        if (x->fix.caddy != NULL) {
            fprintf(f, "    Caddy:   %s\n", x->fix.caddy);
        }
    }
}

static json_t *tri(enum moat_check_tri t)
{
    return t == MOAT_UNKNOWN ? json_null() : json_boolean(t == MOAT_YES);
}

static json_t *names16(const uint16_t *v, size_t n, const char *(*name)(uint16_t, char *, size_t))
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && a != NULL; i++) {
        char b[8];
        json_array_append_new(a, json_string(name(v[i], b, sizeof(b))));
    }
    return a;
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

int moat_check_report_json(const struct moat_check_scan *s, const struct moat_check_report *r,
                           FILE *f)
{
    json_t *versions = json_object(), *suites = json_object(), *order = json_object();
    for (int v = MOAT_VER_SSL2; v < MOAT_VER_COUNT; v++) {
        char b[8];
        const char *vn = moat_check_version_name(moat_check_ver_wire(v), b, sizeof(b));
        json_object_set_new(versions, vn, tri(s->versions[v]));
        if (s->nsuites[v] > 0) {
            json_object_set_new(suites, vn,
                                names16(s->suites[v], s->nsuites[v], moat_check_suite_name));
            json_object_set_new(order, vn, tri(s->server_order[v]));
        }
    }
    json_t *findings = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct moat_check_finding *x = &r->f[i];
        char cap[2] = {x->cap, '\0'};
        json_array_append_new(
            findings,
            json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}}", "id", x->id,
                      "severity", moat_check_sev_name(x->sev), "title", x->title, "evidence",
                      x->evidence, "cve", str_or_null(x->cve), "caps_grade",
                      x->cap ? json_string(cap) : json_null(), "fix_here",
                      x->fix_note[0] ? json_string(x->fix_note) : json_null(), "fix", "moat",
                      str_or_null(x->fix.moat), "nginx", str_or_null(x->fix.nginx), "haproxy",
                      str_or_null(x->fix.haproxy), "caddy", str_or_null(x->fix.caddy)));
    }
    const struct moat_check_certfacts *c = &s->cert;
    json_t *cert =
        s->cert_read == MOAT_YES
            ? json_pack("{s:s, s:i, s:s, s:b, s:I, s:i, s:b, s:b, s:b, s:b, s:b, s:b, "
                        "s:b, s:b, s:b}",
                        "key", c->key, "key_bits", c->key_bits, "signature", c->sig,
                        "signature_weak", c->sig_weak, "days_left", (json_int_t)c->days_left,
                        "sent", c->chain_sent, "names_match", c->names_match, "eku_server_auth",
                        c->eku_server, "leaf_is_ca", c->is_ca, "order_ok", c->chain_order_ok,
                        "root_sent", c->chain_root_sent, "scts", c->scts > 0, "ocsp_url",
                        c->ocsp_url, "crl_url", c->crl_url, "must_staple", c->must_staple)
            : json_null();
    /* Built field by field: one long json_pack format is a mismatch waiting to happen. */
    json_t *doc = json_object();
    json_t *opts = json_object(), *res = json_object(), *alpn = json_object(),
           *https = json_object(), *plain = json_object(), *caa = json_object();
    if (doc == NULL || opts == NULL || res == NULL || alpn == NULL || https == NULL ||
        plain == NULL || caa == NULL) {
        json_decref(doc);
        json_decref(opts);
        json_decref(res);
        json_decref(alpn);
        json_decref(https);
        json_decref(plain);
        json_decref(caa);
        json_decref(versions);
        json_decref(suites);
        json_decref(order);
        json_decref(findings);
        json_decref(cert);
        return -1;
    }
    json_object_set_new(doc, "host", json_string(s->host));
    json_object_set_new(doc, "port", json_integer(s->port));
    json_object_set_new(doc, "address", json_string(s->addr));
    if (s->offline) {
        json_object_set_new(doc, "source", json_string(s->source)); /* judged from this */
    }
    json_object_set_new(doc, "grade", json_string(r->grade));
    json_object_set_new(doc, "grade_rule", json_string(r->grade_rule));
    json_object_set_new(doc, "exit_code", json_integer(r->exit_code));
    json_object_set_new(doc, "seconds", json_real(s->ms / 1000.0));
    json_object_set_new(doc, "connections", json_integer(s->connections));
    json_object_set_new(doc, "truncated", json_boolean(s->truncated));
    json_object_set_new(doc, "versions", versions);
    json_object_set_new(doc, "suites", suites);
    json_object_set_new(doc, "server_order", order);
    json_object_set_new(doc, "groups_tls13",
                        names16(s->groups13, s->ngroups13, moat_check_group_name));
    json_object_set_new(doc, "curves_tls12",
                        names16(s->groups12, s->ngroups12, moat_check_group_name));
    json_object_set_new(doc, "signatures_tls13",
                        names16(s->sigalgs13, s->nsigalgs13, moat_check_sigalg_name));
    json_object_set_new(doc, "signatures_tls12",
                        names16(s->sigalgs12, s->nsigalgs12, moat_check_sigalg_name));
    json_object_set_new(doc, "dh_bits", json_integer(s->dh_bits));
    json_object_set_new(doc, "certificate", cert);
    json_object_set_new(doc, "ocsp_stapled", tri(s->ocsp_stapled));
    json_object_set_new(opts, "compression", tri(s->compression));
    json_object_set_new(opts, "secure_renegotiation", tri(s->secure_reneg));
    json_object_set_new(opts, "client_renegotiation", tri(s->client_reneg));
    json_object_set_new(opts, "fallback_scsv", tri(s->fallback_scsv));
    json_object_set_new(opts, "heartbeat", tri(s->heartbeat));
    json_object_set_new(opts, "heartbleed", tri(s->heartbleed));
    json_object_set_new(opts, "extended_master_secret", tri(s->ems));
    json_object_set_new(opts, "early_data_bytes", json_integer(s->early_data));
    json_object_set_new(doc, "options", opts);
    json_object_set_new(res, "tls13_tickets", tri(s->resume_ticket13));
    json_object_set_new(res, "tls12_tickets", tri(s->resume_ticket12));
    json_object_set_new(res, "tls12_session_ids", tri(s->resume_id12));
    json_object_set_new(doc, "resumption", res);
    json_object_set_new(alpn, "h2", tri(s->alpn_h2));
    json_object_set_new(alpn, "http/1.1", tri(s->alpn_http11));
    json_object_set_new(doc, "alpn", alpn);
    json_object_set_new(https, "verified", json_boolean(s->verified));
    json_object_set_new(https, "status", json_integer(s->status));
    json_object_set_new(https, "hsts_max_age", json_integer(s->hsts_max_age));
    json_object_set_new(https, "hsts_include_subdomains", json_boolean(s->hsts_subdomains));
    json_object_set_new(https, "hsts_preload", json_boolean(s->hsts_preload));
    json_object_set_new(https, "x_content_type_options", json_boolean(s->hdr_nosniff));
    json_object_set_new(https, "frame_protection", json_boolean(s->hdr_frame));
    json_object_set_new(https, "content_security_policy", json_boolean(s->hdr_csp));
    json_object_set_new(https, "referrer_policy", json_boolean(s->hdr_referrer));
    json_object_set_new(doc, "https", https);
    json_object_set_new(plain, "redirects", tri(s->http_redirects));
    json_object_set_new(plain, "status", json_integer(s->http_status));
    json_object_set_new(plain, "location", json_string(s->http_location));
    json_object_set_new(doc, "plain_http", plain);
    json_object_set_new(caa, "present", tri(s->caa));
    json_object_set_new(caa, "owner", json_string(s->caa_owner));
    json_object_set_new(caa, "records", json_string(s->caa_records));
    json_object_set_new(doc, "caa", caa);
    json_object_set_new(doc, "findings", findings);
    if (doc == NULL) {
        return -1;
    }
    int rc = json_dumpf(doc, f, JSON_INDENT(2) | JSON_ENSURE_ASCII) == 0 && fputc('\n', f) != EOF
                 ? 0
                 : -1;
    json_decref(doc);
    return rc;
}
