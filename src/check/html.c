/*
 * html.c: see html.h. Everything the server or the DNS said is escaped on the way out; the
 * page reads top-down as the text report does, and each finding's fixes fold under <details>
 * so the table stays short for a server with many findings.
 */
#include "check/html.h"

#include "check/report.h"
#include "check/suites.h"
#include "client/html.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Everything a server or the DNS said goes out through the client's escaper. */
static void esc(FILE *f, const char *s)
{
    if (s != NULL) {
        moat_client_html_escape(f, s, strlen(s));
    }
}

static const char CSS[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232a;"
    "background:#f6f7f9;margin:0}main{max-width:1000px;margin:0 auto;padding:24px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
    ".sub{color:#5b6570}.grade{display:inline-block;font-size:44px;font-weight:700;width:96px;"
    "height:96px;line-height:96px;text-align:center;border-radius:12px;color:#fff;"
    "margin-right:18px;vertical-align:middle}.g-Ap,.g-A{background:#1a7f37}.g-B{background:"
    "#9a6700}.g-C{background:#bc4c00}.g-F,.g-T{background:#cf222e}.g-q{background:#57606a}.head{"
    "display:flex;"
    "align-items:center;margin:18px 0}table{border-collapse:collapse;width:100%;background:#fff;"
    "border:1px solid #d8dee4;border-radius:8px}th,td{text-align:left;padding:7px 10px;"
    "border-bottom:1px solid #eaeef2;vertical-align:top}th{background:#f0f3f6;font-weight:600}"
    ".sev{font-weight:700;text-transform:uppercase;font-size:12px;padding:2px 6px;"
    "border-radius:4px;color:#fff}.s-critical{background:#a40e26}.s-high{background:#cf222e}"
    ".s-medium{background:#bc4c00}.s-low{background:#9a6700}.s-info{background:#57606a}"
    "code{font:13px ui-monospace,Menlo,Consolas,monospace;background:#f0f3f6;padding:1px 4px;"
    "border-radius:4px;word-break:break-word}.yes{color:#1a7f37;font-weight:600}.no{color:"
    "#57606a}.bad{color:#cf222e;font-weight:600}details summary{cursor:pointer;color:#0969da}"
    "dl{margin:6px 0 0;display:grid;grid-template-columns:90px 1fr;gap:4px 10px}dt{color:"
    "#57606a}dd{margin:0}td:last-child{white-space:nowrap}";

static void tri_cell(FILE *f, enum moat_check_tri t, int yes_is_bad)
{
    const char *cls = t == MOAT_UNKNOWN ? "no" : (t == MOAT_YES) == yes_is_bad ? "bad" : "yes";
    fprintf(f, "<td class=\"%s\">%s</td>", cls, moat_check_tri_word(t));
}

static void fix_row(FILE *f, const char *who, const char *fix)
{
    if (fix == NULL) {
        return;
    }
    fprintf(f, "<dt>%s</dt><dd><code>", who);
    esc(f, fix);
    fputs("</code></dd>", f);
}

static void findings(FILE *f, const struct moat_check_report *r)
{
    fprintf(f, "<h2>Findings (%zu)</h2>\n", r->n);
    if (r->n == 0) {
        fputs("<p>None.</p>\n", f);
        return;
    }
    fputs("<table><tr><th>severity</th><th>finding</th><th>grade</th></tr>\n", f);
    for (size_t i = 0; i < r->n; i++) {
        const struct moat_check_finding *x = &r->f[i];
        const char *sv = moat_check_sev_name(x->sev);
        fprintf(f, "<tr id=\"%s\"><td><span class=\"sev s-%s\">%s</span></td><td><b>", x->id, sv,
                sv);
        esc(f, x->title);
        fputs("</b> <code>", f);
        esc(f, x->id);
        fputs("</code><br><span class=\"sub\">", f);
        esc(f, x->evidence);
        fputs("</span>", f);
        if (x->cve != NULL) {
            fprintf(f, " <code>%s</code>", x->cve);
        }
        if (x->fix_note[0] || x->fix.moat || x->fix.nginx || x->fix.haproxy || x->fix.caddy) {
            fputs("<details><summary>how to fix</summary><dl>", f);
            fix_row(f, "here", x->fix_note[0] ? x->fix_note : NULL);
            fix_row(f, "moat", x->fix.moat);
            fix_row(f, "nginx", x->fix.nginx);
            fix_row(f, "HAProxy", x->fix.haproxy);
            fix_row(f, "Caddy", x->fix.caddy);
            fputs("</dl></details>", f);
        }
        fprintf(f, "</td><td>%s%c</td></tr>\n", x->cap ? "at most " : "", x->cap ? x->cap : ' ');
    }
    fputs("</table>\n", f);
}

static void names_cell(FILE *f, const uint16_t *v, size_t n,
                       const char *(*name)(uint16_t, char *, size_t))
{
    fputs("<td>", f);
    for (size_t i = 0; i < n; i++) {
        char b[8];
        fputs(i ? ", " : "", f);
        esc(f, name(v[i], b, sizeof(b)));
    }
    fputs(n ? "</td>" : "(none)</td>", f);
}

static void protocols(FILE *f, const struct moat_check_scan *s)
{
    fputs("<h2>Protocols and suites</h2>\n<table><tr><th>version</th><th>offered</th>"
          "<th>suites, in the order the server picked them</th><th>server's order</th></tr>\n",
          f);
    for (int v = MOAT_VER_COUNT - 1; v >= MOAT_VER_SSL2; v--) {
        char b[8];
        fprintf(f, "<tr><td>%s</td>",
                moat_check_version_name(moat_check_ver_wire((enum moat_check_ver)v), b, sizeof(b)));
        tri_cell(f, s->versions[v], v < MOAT_VER_TLS12);
        names_cell(f, s->suites[v], s->nsuites[v], moat_check_suite_name);
        fprintf(f, "<td>%s</td></tr>\n",
                s->nsuites[v] > 1 ? moat_check_tri_word(s->server_order[v]) : "");
    }
    fputs("</table>\n<table style=\"margin-top:10px\"><tr><th>groups (TLS 1.3)</th>", f);
    names_cell(f, s->groups13, s->ngroups13, moat_check_group_name);
    fputs("</tr><tr><th>curves (TLS 1.2)</th>", f);
    names_cell(f, s->groups12, s->ngroups12, moat_check_group_name);
    fputs("</tr><tr><th>signatures (TLS 1.3)</th>", f);
    names_cell(f, s->sigalgs13, s->nsigalgs13, moat_check_sigalg_name);
    fputs("</tr><tr><th>signatures (TLS 1.2)</th>", f);
    names_cell(f, s->sigalgs12, s->nsigalgs12, moat_check_sigalg_name);
    fprintf(f, "</tr><tr><th>DHE group</th><td>%s", s->dh_bits ? "" : "no DHE");
    if (s->dh_bits) {
        fprintf(f, "%d bits", s->dh_bits);
    }
    fputs("</td></tr></table>\n", f);
}

static void facts(FILE *f, const struct moat_check_scan *s)
{
    fputs("<h2>Certificate, options and HTTP</h2>\n<table>\n", f);
    if (s->cert_read == MOAT_YES) {
        const struct moat_check_certfacts *c = &s->cert;
        fputs("<tr><th>certificate</th><td>", f);
        esc(f, c->key);
        fputs(", ", f);
        esc(f, c->sig);
        fprintf(f, ", %ld of %ld days left, %d sent, %s for ", c->days_left, c->days_total,
                c->chain_sent,
                s->verified ? "verifies" : "<span class=\"bad\">does not verify</span>");
        esc(f, s->host);
        fprintf(f, "; SCTs %d, OCSP %s, CRL %s</td></tr>\n", c->scts, c->ocsp_url ? "yes" : "no",
                c->crl_url ? "yes" : "no");
    }
    static const struct {
        const char *name;
        size_t off;
        int yes_is_bad;
    } rows[] = {
        {"OCSP stapled", offsetof(struct moat_check_scan, ocsp_stapled), 0},
        {"TLS 1.3 tickets resume", offsetof(struct moat_check_scan, resume_ticket13), 0},
        {"TLS 1.2 tickets resume", offsetof(struct moat_check_scan, resume_ticket12), 0},
        {"TLS 1.2 session ids resume", offsetof(struct moat_check_scan, resume_id12), 0},
        {"ALPN h2", offsetof(struct moat_check_scan, alpn_h2), 0},
        {"ALPN http/1.1", offsetof(struct moat_check_scan, alpn_http11), 0},
        {"TLS compression", offsetof(struct moat_check_scan, compression), 1},
        {"secure renegotiation", offsetof(struct moat_check_scan, secure_reneg), 0},
        {"client renegotiation", offsetof(struct moat_check_scan, client_reneg), 1},
        {"fallback SCSV honoured", offsetof(struct moat_check_scan, fallback_scsv), 0},
        {"extended master secret", offsetof(struct moat_check_scan, ems), 0},
        {"heartbeat", offsetof(struct moat_check_scan, heartbeat), 1},
        {"Heartbleed", offsetof(struct moat_check_scan, heartbleed), 1},
        {"plain HTTP redirects to HTTPS", offsetof(struct moat_check_scan, http_redirects), 0},
        {"CAA records", offsetof(struct moat_check_scan, caa), 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum moat_check_tri t;
        memcpy(&t, (const char *)s + rows[i].off, sizeof(t));
        fprintf(f, "<tr><th>%s</th>", rows[i].name);
        tri_cell(f, t, rows[i].yes_is_bad);
        fputs("</tr>\n", f);
    }
    fprintf(f, "<tr><th>0-RTT early data</th><td class=\"%s\">%s</td></tr>\n",
            s->early_data ? "bad" : "yes", s->early_data ? "accepted" : "no");
    fputs("<tr><th>HSTS</th><td>", f);
    if (s->hsts_max_age >= 0) {
        fprintf(f, "max-age=%ld%s%s", s->hsts_max_age,
                s->hsts_subdomains ? "; includeSubDomains" : "",
                s->hsts_preload ? "; preload" : "");
    } else {
        fputs("none", f);
    }
    fputs("</td></tr>\n", f);
    if (s->caa == MOAT_YES) {
        fputs("<tr><th>CAA set</th><td><code>", f);
        esc(f, s->caa_records);
        fputs("</code> at ", f);
        esc(f, s->caa_owner);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void page_head(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
          f);
    esc(f, title);
    fprintf(f, "</title><style>%s</style></head><body><main>\n", CSS);
}

static const char *grade_class(const char *grade)
{
    return strcmp(grade, "A+") == 0 ? "Ap" : strcmp(grade, "?") == 0 ? "q" : grade;
}

/* One check: its heading, grade, findings and facts. */
static void section(FILE *f, const struct moat_check_scan *s, const struct moat_check_report *r,
                    size_t index)
{
    fprintf(f, "<section id=\"check-%zu\"><h1>moat check ", index);
    esc(f, s->host);
    fprintf(f, ":%u</h1><div class=\"sub\">", s->port);
    if (s->offline) {
        fputs("judged offline from ", f);
        esc(f, s->source);
        fputs(" (its settings and this machine's OpenSSL; no connection)</div>\n", f);
    } else {
        esc(f, s->addr);
        fprintf(f, ", %u connections in %.1f s%s</div>\n", s->connections, s->ms / 1000.0,
                s->truncated ? " (stopped by its bounds: some facts are unknown)" : "");
    }
    fprintf(f, "<div class=\"head\"><div class=\"grade g-%s\">%s</div><div>", grade_class(r->grade),
            r->grade);
    esc(f, r->grade_rule);
    fputs("</div></div>\n", f);
    findings(f, r);
    protocols(f, s);
    facts(f, s);
    fputs("</section>\n", f);
}

static const char FOOT[] = "<p class=\"sub\">Made by moat check; the finding ids and grading "
                           "rules are in docs/check.md.</p>\n</main></body></html>\n";

int moat_check_report_html(const struct moat_check_scan *s, const struct moat_check_report *r,
                           FILE *f)
{
    char title[300];
    snprintf(title, sizeof(title), "moat check %s:%u", s->host, s->port);
    page_head(f, title);
    section(f, s, r, 0);
    fputs(FOOT, f);
    return ferror(f) ? -1 : 0;
}

struct moat_check_page {
    char title[300];
    FILE *body; /* the sections, kept until the summary above them is known */
    char *buf;
    size_t len;
    struct entry {
        char host[256], source[300], grade[4];
        unsigned port;
        size_t findings;
    } * e;
    size_t n;
};

struct moat_check_page *moat_check_page_new(const char *title)
{
    struct moat_check_page *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    snprintf(p->title, sizeof(p->title), "%s", title);
    p->body = open_memstream(&p->buf, &p->len);
    if (p->body == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

int moat_check_page_add(struct moat_check_page *p, const struct moat_check_scan *s,
                        const struct moat_check_report *r)
{
    struct entry *e = realloc(p->e, (p->n + 1) * sizeof(*e));
    if (e == NULL) {
        return -1;
    }
    p->e = e;
    e = &p->e[p->n];
    snprintf(e->host, sizeof(e->host), "%s", s->host);
    snprintf(e->source, sizeof(e->source), "%s", s->offline ? s->source : s->addr);
    snprintf(e->grade, sizeof(e->grade), "%s", r->grade);
    e->port = s->port;
    e->findings = r->n;
    if (p->n > 0) {
        fputs("<hr>\n", p->body);
    }
    section(p->body, s, r, p->n);
    p->n++;
    return ferror(p->body) ? -1 : 0;
}

int moat_check_page_write(struct moat_check_page *p, FILE *f)
{
    if (fflush(p->body) != 0) {
        return -1;
    }
    page_head(f, p->title);
    if (p->n != 1) {
        fputs("<h1>", f);
        esc(f, p->title);
        fprintf(f,
                "</h1><div class=\"sub\">%zu check%s</div>\n<h2>Summary</h2>\n<table><tr>"
                "<th>grade</th><th>name</th><th>where</th><th>findings</th></tr>\n",
                p->n, p->n == 1 ? "" : "s");
        for (size_t i = 0; i < p->n; i++) {
            const struct entry *e = &p->e[i];
            fprintf(f, "<tr><td><span class=\"sev g-%s\">%s</span></td><td><a href=\"#check-%zu\">",
                    grade_class(e->grade), e->grade, i);
            esc(f, e->host);
            fprintf(f, ":%u</a></td><td>", e->port);
            esc(f, e->source);
            fprintf(f, "</td><td>%zu</td></tr>\n", e->findings);
        }
        fputs("</table>\n<hr>\n", f);
    }
    fwrite(p->buf, 1, p->len, f);
    fputs(FOOT, f);
    return ferror(f) ? -1 : 0;
}

void moat_check_page_free(struct moat_check_page *p)
{
    if (p == NULL) {
        return;
    }
    fclose(p->body);
    free(p->buf);
    free(p->e);
    free(p);
}
