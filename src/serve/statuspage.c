/*
 * statuspage.c: the status page (see statuspage.h). It is drawn from the same JSON documents
 * /status, /certs and /upstreams answer with, so the page and the commands never disagree.
 */
#include "serve/statuspage.h"

#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char moat_page_csp[] = "default-src 'none'; style-src 'unsafe-inline'; "
                             "script-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
                             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void moat_page_sample(struct moat_page_history *h, const struct moat_report_src *r, time_t now)
{
    if (h->n > 0 && now - h->last < MOAT_PAGE_STEP_S) {
        return;
    }
    h->last = now;
    moat_report_totals(r, &h->req[h->next], &h->err4[h->next], &h->err5[h->next]);
    h->next = (h->next + 1) % MOAT_PAGE_SAMPLES;
    h->n += h->n < MOAT_PAGE_SAMPLES;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* The page is written with these; the first failure (out of memory) sticks. */
struct page {
    struct moat_buf *out;
    moat_rc rc;
};

static void raw(struct page *p, const char *s)
{
    if (moat_ok(p->rc)) {
        p->rc = moat_buf_append(p->out, s, strlen(s));
    }
}

/* Text as HTML: & < > " ' escaped. */
static void text(struct page *p, const char *s)
{
    for (const char *c = s != NULL ? s : ""; *c && moat_ok(p->rc); c++) {
        const char *e = *c == '&'    ? "&amp;"
                        : *c == '<'  ? "&lt;"
                        : *c == '>'  ? "&gt;"
                        : *c == '"'  ? "&quot;"
                        : *c == '\'' ? "&#39;"
                                     : NULL;
        p->rc = e != NULL ? moat_buf_append(p->out, e, strlen(e)) : moat_buf_append(p->out, c, 1);
    }
}

static void number(struct page *p, long long v)
{
    if (moat_ok(p->rc)) {
        p->rc = moat_buf_printf(p->out, "%lld", v);
    }
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static long long num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* "2027-01-03T06:32:21Z" as "2027-01-03 06:32". */
static void when(struct page *p, json_t *o, const char *k)
{
    const char *s = str(o, k);
    char b[20];
    if (strlen(s) < 16) {
        raw(p, "never");
        return;
    }
    snprintf(b, sizeof(b), "%.10s %.5s", s, s + 11);
    text(p, b);
}

/* The class that colours days left: ok, soon (under 14 days), bad (under 3, or expired). */
static const char *days_class(long long days)
{
    return days < 3 ? "bad" : days < 14 ? "soon" : "ok";
}

/* ---- the charts ------------------------------------------------------------------------- */

/* A sparkline of the per-second rate between samples of `v` (a ring of h). */
static void chart(struct page *p, const struct moat_page_history *h, const uint64_t *v,
                  const char *label, const char *cls)
{
    double rate[MOAT_PAGE_SAMPLES];
    size_t n = h->n > 1 ? h->n - 1 : 0;
    double max = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        size_t a = (h->next + MOAT_PAGE_SAMPLES - h->n + i) % MOAT_PAGE_SAMPLES;
        size_t b = (a + 1) % MOAT_PAGE_SAMPLES;
        rate[i] = v[b] >= v[a] ? (double)(v[b] - v[a]) / MOAT_PAGE_STEP_S : 0;
        max = rate[i] > max ? rate[i] : max;
        last = rate[i];
    }
    raw(p, "<figure><figcaption>");
    text(p, label);
    if (moat_ok(p->rc)) {
        p->rc =
            moat_buf_printf(p->out, ": <b>%.1f/s</b> now, %.1f/s at most</figcaption>", last, max);
    }
    raw(p, "<svg viewBox=\"0 0 240 48\" role=\"img\" aria-label=\"");
    text(p, label);
    raw(p, " over ten minutes\"><polyline class=\"");
    raw(p, cls);
    raw(p, "\" points=\"");
    for (size_t i = 0; i < n && moat_ok(p->rc); i++) {
        double x = n > 1 ? 240.0 * (double)i / (double)(n - 1) : 0;
        double y = 46 - (max > 0 ? 44.0 * rate[i] / max : 0);
        p->rc = moat_buf_printf(p->out, "%.1f,%.1f ", x, y);
    }
    raw(p, "\"/></svg>");
    if (n == 0) {
        raw(p, "<small>(the first rates come after 10 s)</small>");
    }
    raw(p, "</figure>");
}

/* ---- sections --------------------------------------------------------------------------- */

static void head(struct page *p, json_t *st)
{
    raw(p, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           "<title>moat status</title><style>"
           "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;"
           "padding:0 1em;color:#1b1f23;background:#fff}"
           "h1{font-size:1.5em;margin:0}h2{font-size:1.15em;margin:1.6em 0 .5em;"
           "border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%}"
           "td,th{text-align:left;padding:.25em .6em .25em 0;vertical-align:top}"
           "th{font-weight:600;color:#555}code,pre{font:12px/1.4 ui-monospace,monospace}"
           "pre{background:#f6f8fa;padding:.6em;overflow:auto;white-space:pre-wrap}"
           ".ok{color:#116329}.soon{color:#9a6700}.bad{color:#cf222e;font-weight:600}"
           "figure{display:inline-block;margin:0 2em 0 0}svg{width:240px;height:48px;"
           "background:#f6f8fa}polyline{fill:none;stroke-width:1.5}.req{stroke:#0969da}"
           ".err{stroke:#cf222e}ol.chain{list-style:none;margin:.2em 0 .6em;padding:0}"
           "ol.chain li{display:inline-block;border:1px solid #bbb;border-radius:4px;"
           "padding:.2em .5em;margin:.15em 0}ol.chain li+li::before{content:'\\2192';"
           "margin:0 .5em 0 -.2em;color:#888}small{color:#666}"
           "</style><script>"
           /* Live refresh: fetch the page again and put its body in place. A failed fetch
              (the server stopped) leaves the last page, marked stale. */
           "setInterval(async function(){try{var r=await fetch(location.origin+location.pathname,"
           "{cache:'no-store'});if(!r.ok)throw 'status '+r.status;var d=new DOMParser()"
           ".parseFromString(await r.text(),'text/html');document.body.replaceWith(d.body);}"
           "catch(e){var l=document.getElementById('live');if(l)l.textContent='not updating:"
           " the server does not answer ('+e+')';}},5000);"
           "</script></head><body>\n<header><h1>moat ");
    text(p, str(st, "version"));
    raw(p, "</h1><p>pid ");
    number(p, num(st, "pid"));
    raw(p, ", up since ");
    when(p, st, "started");
    raw(p, " UTC, configuration generation ");
    number(p, num(st, "generation"));
    if (str(st, "config")[0]) {
        raw(p, " from <code>");
        text(p, str(st, "config"));
        raw(p, "</code>");
    }
    json_t *c = json_object_get(st, "connections");
    raw(p, "; ");
    number(p, num(st, "workers"));
    raw(p, " worker(s), ");
    number(p, num(c, "open"));
    raw(p, " open connections, ");
    number(p, num(st, "requests"));
    raw(p, " requests answered.</p>");
    if (str(st, "last_reload_error")[0]) {
        raw(p, "<p class=\"bad\">The last reload was refused: ");
        text(p, str(st, "last_reload_error"));
        raw(p, "</p>");
    }
    raw(p, "</header>\n");
}

static void sites(struct page *p, json_t *certs)
{
    raw(p, "<section id=\"sites\"><h2>Sites and certificates</h2>");
    json_t *list = json_object_get(certs, "sites");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        raw(p, "<h3>");
        text(p, str(s, "site"));
        raw(p, " <small>");
        text(p, str(s, "source"));
        raw(p, "</small></h3>");
        json_t *cl = json_object_get(s, "certificates");
        if (json_array_size(cl) == 0) {
            raw(p, "<p><small>no certificate loaded</small></p>");
        }
        for (size_t k = 0; k < json_array_size(cl); k++) {
            json_t *c = json_array_get(cl, k);
            long long days = num(c, "days_left");
            raw(p, "<p>");
            text(p, str(c, "key"));
            raw(p, ": expires ");
            when(p, c, "not_after");
            raw(p, " UTC, <span class=\"");
            raw(p, days_class(days));
            raw(p, "\">");
            number(p, days);
            raw(p, days < 0 ? " days ago (expired)" : " days left");
            raw(p, "</span>; next renewal ");
            when(p, c, "next_renewal");
            raw(p, "<br><small>names:");
            json_t *names = json_object_get(c, "names");
            for (size_t n = 0; n < json_array_size(names); n++) {
                raw(p, " ");
                text(p, json_string_value(json_array_get(names, n)));
            }
            raw(p, "</small></p><ol class=\"chain\" aria-label=\"certificate chain\"><li>");
            text(p, str(c, "subject"));
            raw(p, "</li>");
            json_t *chain = json_object_get(c, "chain");
            const char *top = str(c, "issuer");
            for (size_t n = 0; n < json_array_size(chain); n++) {
                json_t *x = json_array_get(chain, n);
                raw(p, "<li>");
                text(p, str(x, "subject"));
                raw(p, " <small>until ");
                when(p, x, "not_after");
                raw(p, "</small></li>");
                top = str(x, "issuer");
            }
            /* The anchor the last certificate names, unless it is self-issued (in the chain). */
            size_t nc = json_array_size(chain);
            if (nc == 0 || strcmp(top, str(json_array_get(chain, nc - 1), "subject")) != 0) {
                raw(p, "<li><small>trusted root:</small> ");
                text(p, top);
                raw(p, "</li>");
            }
            raw(p, "</ol>");
        }
    }
    raw(p, "</section>\n");
}

static void acme(struct page *p, json_t *certs)
{
    json_t *list = json_object_get(certs, "sites");
    int any = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        json_t *al = json_object_get(s, "acme");
        for (size_t k = 0; k < json_array_size(al); k++) {
            json_t *a = json_array_get(al, k);
            if (!any) {
                raw(p, "<section id=\"acme\"><h2>ACME</h2><table><tr><th>site</th><th>key</th>"
                       "<th>CA</th><th>renews</th><th>failures</th><th>last error</th></tr>");
                any = 1;
            }
            raw(p, "<tr><td>");
            text(p, str(s, "site"));
            raw(p, "</td><td>");
            text(p, str(a, "kind"));
            raw(p, "</td><td><code>");
            text(p, str(a, "ca"));
            raw(p, "</code></td><td>");
            when(p, a, "renew_at");
            raw(p, json_is_true(json_object_get(a, "ari")) ? " (ARI)" : "");
            raw(p, num(a, "failures") > 0 ? "</td><td class=\"bad\">" : "</td><td>");
            number(p, num(a, "failures"));
            raw(p, "</td><td>");
            text(p, str(a, "last_error"));
            raw(p, "</td></tr>");
        }
    }
    raw(p, any ? "</table></section>\n"
               : "<section id=\"acme\"><h2>ACME</h2><p><small>no site has tls acme</small></p>"
                 "</section>\n");
}

static void upstreams(struct page *p, json_t *ups)
{
    raw(p, "<section id=\"upstreams\"><h2>Upstreams</h2>");
    json_t *list = json_object_get(ups, "upstreams");
    if (json_array_size(list) == 0) {
        raw(p, "<p><small>no site proxies</small></p>");
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *u = json_array_get(list, i);
        json_t *sv = json_object_get(u, "servers");
        raw(p, "<h3>");
        text(p, str(u, "name"));
        raw(p, " <small>");
        number(p, num(u, "up"));
        raw(p, " of ");
        number(p, (long long)json_array_size(sv));
        raw(p, " up, ");
        text(p, str(u, "balance"));
        raw(p, "</small></h3><table><tr><th>server</th><th>state</th><th>in flight</th>"
               "<th>connections</th><th>last failure</th></tr>");
        for (size_t k = 0; k < json_array_size(sv); k++) {
            json_t *s = json_array_get(sv, k);
            int up = strcmp(str(s, "state"), "up") == 0;
            raw(p, "<tr><td><code>");
            text(p, str(s, "server"));
            raw(p, up ? "</code></td><td class=\"ok\">" : "</code></td><td class=\"bad\">");
            text(p, str(s, "state"));
            raw(p, "</td><td>");
            number(p, num(s, "active"));
            raw(p, "</td><td>");
            number(p, num(s, "connections"));
            raw(p, "</td><td>");
            text(p, up ? "" : str(s, "last_failure"));
            raw(p, "</td></tr>");
        }
        raw(p, "</table>");
    }
    raw(p, "</section>\n");
}

static void recent(struct page *p)
{
    static char lines[MOAT_LOG_RECENT][MOAT_LOG_RECENT_LEN];
    size_t n = moat_log_recent(lines, MOAT_LOG_RECENT);
    raw(p, "<section id=\"errors\"><h2>Recent warnings and errors</h2>");
    if (n == 0) {
        raw(p, "<p><small>none since the start</small></p>");
    } else {
        raw(p, "<pre>");
        for (size_t i = 0; i < n; i++) {
            text(p, lines[i]);
            raw(p, "\n");
        }
        raw(p, "</pre>");
    }
    raw(p, "</section>\n");
}

moat_rc moat_page_render(const struct moat_report_src *r, const struct moat_page_history *h,
                         struct moat_buf *out)
{
    json_t *st = moat_report_status_json(r);
    json_t *certs = moat_report_certs_json(r);
    json_t *ups = moat_report_upstreams_json(r);
    struct page p = {.out = out, .rc = MOAT_RC_OK};
    if (st == NULL || certs == NULL || ups == NULL) {
        p.rc = moat_rc_of(MOAT_E_NOMEM);
    }
    head(&p, st);
    raw(&p, "<section id=\"rates\"><h2>Requests</h2>");
    chart(&p, h, h->req, "requests", "req");
    chart(&p, h, h->err5, "5xx answers", "err");
    chart(&p, h, h->err4, "4xx answers", "err");
    raw(&p, "</section>\n");
    sites(&p, certs);
    acme(&p, certs);
    upstreams(&p, ups);
    recent(&p);
    raw(&p, "<footer><p><small id=\"live\">Refreshes every 5 s (with JavaScript). The same facts: "
            "<code>moat status</code>, <code>moat certs</code>, <code>moat upstreams</code>, "
            "<code>/metrics</code>.</small></p></footer>\n</body></html>\n");
    json_decref(st);
    json_decref(certs);
    json_decref(ups);
    return p.rc;
}
