/*
 * conn.c: a client connection, from accept to close (see conn.h). The HTTP/1 states are the
 * session's (http1/server.c); here are the handshake, the choice of handler for each request
 * (after serve/route.c picked the site), the site's fields on each answer, and the close. TLS
 * facts (identity, SNI site, ALPN refusal) come from moat_tls_transport_ssl, NULL on the plain
 * port.
 */
#include "serve/conn.h"

#include "acme/challenges.h"
#include "core/cidr.h"
#include "core/log.h"
#include "core/proxyproto.h"
#include "core/sock.h"
#include "http/status.h"
#include "serve/accesslog.h"
#include "serve/builtin.h"
#include "serve/cache.h"
#include "serve/crlpub.h"
#include "serve/encode.h"
#include "serve/guard.h"
#include "serve/headers.h"
#include "serve/metrics.h"
#include "serve/proxy.h"
#include "serve/route.h"
#include "serve/snapshot.h"
#include "serve/static.h"
#include "tls/clientauth.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_event(struct moat_watch *w, uint32_t events);
static void step_proxy_header(struct moat_conn *c);
static void on_timer(struct moat_timer *t);

/* ---- closing ---------------------------------------------------------------------------- */

void moat_conn_close(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSED) {
        return;
    }
    c->state = MOAT_CONN_CLOSED;
    /* A streaming handler (the proxy) lets go of its origin here. */
    if (c->h2) {
        moat_h2s_clear(c->h2s);
    } else {
        moat_h1s_clear(&c->h1);
    }
    struct moat_conn_home *h = c->home;
    moat_timer_disarm(&h->loop->timers, &c->timer);
    moat_loop_del(h->loop, &c->w);
    moat_transport_close(&c->tr);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    h->nconns--;
    h->closed++;
    moat_mx_add(&h->mx->closed, 1);
    if (c->snap->guard != NULL) {
        moat_guard_release(c->snap->guard, &c->ticket);
    }
    /* An event for it may still wait in this epoll batch: freed at the end of the iteration. */
    c->next_closing = h->closing;
    h->closing = c;
    if (h->on_closed != NULL) {
        h->on_closed(h->owner);
    }
}

static void conn_free(struct moat_conn *c)
{
    if (c->snap != NULL) {
        moat_snapshot_unref(c->snap);
    }
    free(c->h2s);
    free(c);
}

void moat_conn_free_closed(struct moat_conn_home *home)
{
    while (home->closing != NULL) {
        struct moat_conn *c = home->closing;
        home->closing = c->next_closing;
        conn_free(c);
    }
}

/* ---- what the session asks of the connection -------------------------------------------- */

/* The request's site; the handshake's until a request named its host. */
static const struct moat_site *site_of(const struct moat_conn *c, const struct moat_route_ref *ref)
{
    return ref != NULL && ref->site != NULL ? ref->site : c->sni_site;
}

/* The `header` rules of the request's path, else the site-wide ones. */
static const struct moat_hdr_set *hdr_set_of(const struct moat_conn *c,
                                             const struct moat_route_ref *ref)
{
    if (ref != NULL && ref->rules != NULL) {
        return ref->rules;
    }
    const struct moat_site *site = site_of(c, ref);
    return site != NULL && site->hdrs.nsets > 0 ? &site->hdrs.sets[0] : NULL;
}

/* The handler's lines, less the fields the `header` rules replace or remove. */
static moat_rc append_kept(struct moat_buf *o, const struct moat_hdr_set *hs,
                           const struct moat_buf *lines)
{
    if (lines == NULL) {
        return MOAT_RC_OK;
    }
    if (hs == NULL || hs->ndrop == 0) {
        return moat_buf_append(o, moat_buf_rdptr(lines), moat_buf_len(lines));
    }
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (name.len == 0 || !moat_hdr_set_drops(hs, name)) {
            MOAT_TRY(moat_buf_append(o, line.p, line.len));
        }
    }
    return MOAT_RC_OK;
}

/* Whether header lines hold a field called `lc_name`. */
static int lines_have(const struct moat_buf *lines, const char *lc_name)
{
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (moat_slice_eq_lit_nocase(name, lc_name)) {
            return 1;
        }
    }
    return 0;
}

/* The site's part of every answer: HSTS over TLS, the `header` rules; for a relayed answer
 * (the proxy's) the origin's own HSTS wins and the rules for relayed answers apply. */
static moat_rc decorate(void *host, const struct moat_route_ref *ref, struct moat_buf *out,
                        const struct moat_buf *lines, unsigned flags)
{
    struct moat_conn *c = host;
    const struct moat_hdr_set *hs = hdr_set_of(c, ref);
    const struct moat_site *site = site_of(c, ref);
    int relayed = (flags & MOAT_RES_RELAYED) != 0;
    MOAT_TRY(append_kept(out, hs, lines));
    if (hs != NULL && !relayed) {
        MOAT_TRY(moat_buf_append(out, hs->own, hs->own_len));
    }
    if (!c->plain && site != NULL && site->hsts_len > 0 &&
        (!relayed || !lines_have(lines, "strict-transport-security"))) {
        MOAT_TRY(moat_buf_append(out, site->hsts, site->hsts_len));
    }
    if (hs != NULL && relayed) {
        MOAT_TRY(moat_buf_append(out, hs->proxied, hs->proxied_len));
    }
    return MOAT_RC_OK;
}

static int server_field(void *host, const struct moat_route_ref *ref)
{
    const struct moat_hdr_set *hs = hdr_set_of(host, ref);
    return hs == NULL || !moat_hdr_set_drops(hs, MOAT_SLICE_LIT("server"));
}

static void answer_done(void *host, const struct moat_route_ref *ref,
                        const struct moat_answer_log *a)
{
    struct moat_conn *c = host;
    struct moat_conn_home *h = c->home;
    const struct moat_site *site = ref != NULL ? ref->site : NULL;
    unsigned proto = a->proto[5] == '2' ? 2 : a->proto[7] == '0' ? 0 : 1; /* "HTTP/1.0" */
    moat_metrics_request(h->mx, site != NULL ? site->mx_slot : 0, proto, a->status, a->method,
                         h->loop->now_ms - a->started_ms, a->bytes);
    if (h->alog != NULL) {
        struct moat_alog_entry e = {.peer = c->ends.peer,
                                    .proto = a->proto,
                                    .status = a->status,
                                    .bytes = a->bytes,
                                    .ms = (double)(h->loop->now_ms - a->started_ms),
                                    .tls = !c->plain,
                                    .ssl = moat_tls_transport_ssl(&c->tr)};
        memcpy(e.parts, a->parts, sizeof(e.parts));
        moat_accesslog_add(h->alog, h->alog_lines, &e);
    }
}

static void session_ended(void *host)
{
    moat_conn_close(host);
}

/* 403 with the reason in words (HTML-escaped); the connection stays usable. */
static moat_rc forbidden_page(struct moat_res *res, const char *why, struct moat_buf *lines,
                              struct moat_buf *body)
{
    size_t before = moat_buf_len(body);
    MOAT_TRY(moat_buf_printf(body, "<!doctype html>\n<title>403 Forbidden</title>\n"
                                   "<h1>403 Forbidden</h1>\n<p>"));
    for (const char *p = why; *p; p++) {
        switch (*p) {
        case '<':
            MOAT_TRY(moat_buf_append(body, "&lt;", 4));
            break;
        case '>':
            MOAT_TRY(moat_buf_append(body, "&gt;", 4));
            break;
        case '&':
            MOAT_TRY(moat_buf_append(body, "&amp;", 5));
            break;
        case '"':
            MOAT_TRY(moat_buf_append(body, "&quot;", 6));
            break;
        default:
            MOAT_TRY(moat_buf_append(body, p, 1));
            break;
        }
    }
    MOAT_TRY(moat_buf_printf(body, "</p>\n"));
    MOAT_TRY(moat_buf_printf(lines, "Content-Type: text/html; charset=utf-8\r\n"));
    res->status = 403;
    res->fd = -1;
    res->has_generated_body = 1;
    res->length = moat_buf_len(body) - before;
    return MOAT_RC_OK;
}

static void session_refused(void *host, const char *why)
{
    struct moat_conn *c = host;
    if (c->snap->guard != NULL) {
        moat_guard_refused(c->snap->guard, MOAT_GUARD_H2, c->id, c->ends.peer, why);
    }
}

/* A site's allow/deny (403) and `limit` rules (429 with Retry-After) for the request; 1 when
 * one of them answered it. */
static int guarded(struct moat_conn *c, const struct moat_site *site, const struct moat_req *req,
                   struct moat_res *res, struct moat_buf *lines, struct moat_buf *body, moat_rc *rc)
{
    const struct moat_conf_site *cs = site->conf;
    struct moat_guard *g = c->snap->guard;
    if (g == NULL || (cs->nacl == 0 && cs->nlimits == 0)) {
        return 0;
    }
    struct moat_guard_addr client;
    moat_guard_client_of(req, c->snap->trusted, c->snap->ntrusted, &client);
    char words[400];
    if (!moat_guard_site_allows(cs, &client)) {
        moat_guard_refused(g, MOAT_GUARD_SITE_DENY, c->id, c->ends.peer,
                           "the client is not allowed on this site (its allow/deny lines)");
        res->close = req->has_body;
        *rc =
            forbidden_page(res, "This site does not take requests from your address.", lines, body);
        return 1;
    }
    uint64_t retry = 0;
    const struct moat_conf_limit *rule = NULL;
    if (moat_guard_limit(g, c->snap->conf, cs, req, &client, c->home->loop->now_ms, &retry,
                         &rule) == MOAT_GUARD_OK) {
        return 0;
    }
    snprintf(words, sizeof(words), "more than %llu requests per %s at %.300s; Retry-After %llu",
             (unsigned long long)rule->rate.n,
             rule->rate.per_ms == 1000    ? "second"
             : rule->rate.per_ms == 60000 ? "minute"
                                          : "hour",
             rule->where, (unsigned long long)retry);
    moat_guard_refused(g, MOAT_GUARD_LIMIT, c->id, c->ends.peer, words);
    moat_mx_add(&c->home->mx->sites[site->mx_slot < MOAT_MX_SITES ? site->mx_slot : 0].limited, 1);
    res->close = req->has_body;
    *rc = moat_res_error_page(res, 429, lines, body);
    if (moat_ok(*rc)) {
        *rc = moat_buf_printf(lines, "Retry-After: %llu\r\n", (unsigned long long)retry);
    }
    return 1;
}

/* The site's proxy rule for the request: the longest prefix it is under (segment boundaries),
 * else the whole-site rule; NULL for files. A path that does not normalise matches the
 * first prefix rule so that the dispatcher refuses it rather than serving a file. */
static const struct moat_proxy_route *proxy_route(const struct moat_site *site,
                                                  const struct moat_req *req)
{
    for (size_t i = 0; i < site->nproxies; i++) {
        const struct moat_proxy_route *r = &site->proxies[i];
        if (r->plen == 0) {
            return r;
        }
        if (req->npath.p == NULL) {
            return r;
        }
        if (req->npath.len >= r->plen && memcmp(req->npath.p, r->prefix, r->plen) == 0 &&
            (req->npath.len == r->plen || req->npath.p[r->plen] == '/')) {
            return r;
        }
    }
    return NULL;
}

/* A proxied request through the filters of its site: the origin's answer -> encode -> the
 * cache's tee (when given) -> the client. */
static moat_rc proxy_chain(struct moat_conn *c, struct moat_site *site,
                           const struct moat_proxy_call *call, const struct moat_req *req,
                           struct moat_cache_tee *tee, struct moat_res *res, struct moat_buf *lines,
                           struct moat_buf *body)
{
    struct moat_encode_want want;
    moat_encode_want_of(site->conf, req, c->home->loop, &want);
    struct moat_req filtered;
    struct moat_encode_filter *f = NULL;
    moat_rc rc = moat_encode_filter_new(&want, req, &filtered, &f)
                     ? moat_proxy_handler(call, &filtered, res, lines, body)
                     : moat_proxy_handler(call, req, res, lines, body);
    moat_encode_filter_adopt(f, res);
    moat_cache_tee_adopt(tee, res, lines, body);
    return rc;
}

/* What the proxy needs of where a request runs. */
static struct moat_proxy_call proxy_call(struct moat_conn *c, const struct moat_site *site,
                                         const struct moat_proxy_route *pr,
                                         const struct moat_req *req)
{
    const struct moat_hdr_set *rq =
        site->req_hdrs.nsets == 0 ? NULL
        : req->npath.p != NULL ? moat_hdr_table_for(&site->req_hdrs, req->npath.p, req->npath.len)
                               : &site->req_hdrs.sets[0];
    return (struct moat_proxy_call){.req_rules = rq,
                                    .route = pr,
                                    .loop = c->home->loop,
                                    .pool = c->home->upool,
                                    .mx = c->home->mx,
                                    .spares = c->home->pxspares,
                                    .trusted = c->snap->trusted,
                                    .ntrusted = c->snap->ntrusted};
}

/* A request that waited on another for its key goes to the origin after all (cache.h). */
static void cache_go(const struct moat_cache_origin *o, const struct moat_req *req,
                     struct moat_cache_tee *t)
{
    struct moat_conn *c = o->conn;
    struct moat_site *site = o->site;
    struct moat_proxy_call call = proxy_call(c, site, o->route, req);
    struct moat_res res = {.status = 500, .fd = -1};
    struct moat_buf lines, body;
    moat_buf_init(&lines, 64 * 1024);
    moat_buf_init(&body, 64 * 1024);
    (void)proxy_chain(c, site, &call, req, t, &res, &lines, &body);
    moat_buf_clear(&lines);
    moat_buf_clear(&body);
}

/* Route the request to its site, then to the one handler that answers it; none of them sees
 * the connection or HTTP/1. */
static moat_rc dispatch(void *host, struct moat_route_ref *ref, const struct moat_req *req,
                        struct moat_res *res, struct moat_buf *lines, struct moat_buf *body)
{
    struct moat_conn *c = host;
    *ref = (struct moat_route_ref){0};
    char ka[512];
    /* An ACME CA checking a challenge: answered for any host and on either listener, before
     * redirects, proxies and path rules (RFC 8555 §8.3: the CA follows redirects, but an
     * origin behind the proxy knows nothing of moat's challenges). */
    if (c->snap->acme != NULL &&
        (req->method_id == MOAT_HTTP_M_GET || req->method_id == MOAT_HTTP_M_HEAD) &&
        moat_acme_challenges_http01(c->snap->acme, req->path.p, req->path.len, ka, sizeof(ka))) {
        return moat_builtin_acme_http01(ka, req, res, lines, body);
    }
    struct moat_route_conn who = {.snap = c->snap,
                                  .sni_site = c->sni_site,
                                  .ssl = moat_tls_transport_ssl(&c->tr),
                                  .id = c->id,
                                  .peer_text = c->ends.peer,
                                  .memo = &c->route_memo};
    struct moat_route rt;
    enum moat_route_verdict verdict = moat_route_pick(&who, req->authority, req->npath, &rt);
    ref->site = rt.site;
    ref->rules = rt.hdrs;
    struct moat_site *site = rt.site;
    if (verdict == MOAT_ROUTE_SERVE && c->h2 && !moat_snapshot_site_http2(c->snap, site)) {
        /* A connection reused for a site that is not served over HTTP/2 (RFC 9113 §9.1.1:
         * the client retries on a connection of its own, which will speak HTTP/1). */
        moat_log(MOAT_LVL_INFO, c->id,
                 "421: Host \"%.*s\" is a site with http2 off, asked over HTTP/2 (peer %s)",
                 (int)(req->authority.len > 200 ? 200 : req->authority.len), req->authority.p,
                 c->ends.peer);
        verdict = MOAT_ROUTE_MISDIRECTED;
    }
    if (verdict != MOAT_ROUTE_SERVE) {
        /* The unread body must not be taken for the next request; the lingering close drops
         * what of it still comes. */
        res->close = req->has_body;
        if (verdict == MOAT_ROUTE_FORBIDDEN) {
            return forbidden_page(res, rt.why, lines, body);
        }
        return moat_res_error_page(res, verdict == MOAT_ROUTE_MISDIRECTED ? 421 : 400, lines, body);
    }
    if (rt.crl != NULL) {
        return moat_crlpub_handle(rt.crl, req, res, lines, body);
    }
    if (c->plain) { /* the plain listener redirects, whatever the site does over TLS */
        return moat_builtin_redirect(&c->home->https_port, req, res, lines, body);
    }
    moat_rc grc;
    if (guarded(c, site, req, res, lines, body, &grc)) {
        return grc;
    }
    if (req->method_id == MOAT_HTTP_M_OPTIONS && req->target.len == 1 && req->target.p[0] == '*') {
        return moat_builtin_options(NULL, req, res, lines, body);
    }
    const struct moat_proxy_route *pr = proxy_route(site, req);
    if (pr != NULL) {
        if ((pr->plen > 0 || pr->rewriting) && req->npath.p == NULL) {
            /* Which rule covers a path that does not normalise cannot be told. */
            res->close = req->has_body;
            return moat_res_error_page(res, req->npath_rc.kind == MOAT_E_LIMIT ? 414 : 400, lines,
                                       body);
        }
        struct moat_proxy_call call = proxy_call(c, site, pr, req);
        /* The chain of a proxied answer: the origin's -> encode -> cache -> the client. The
         * cache is outermost, so it stores what encode made and a hit costs no compression. */
        if (c->snap->cache == NULL || !moat_cache_covers(site->conf, req)) {
            return proxy_chain(c, site, &call, req, NULL, res, lines, body);
        }
        struct moat_cache_tee *tee = NULL;
        struct moat_req cached;
        struct moat_cache_ctx cx = {.cache = c->snap->cache,
                                    .conf = c->snap->conf,
                                    .site = site->conf,
                                    .client = c->ends.peer,
                                    .bgs = &c->home->cache_bgs,
                                    .snap = c->snap};
        cx.loop = c->home->loop;
        cx.origin =
            (struct moat_cache_origin){.go = cache_go, .conn = c, .site = site, .route = pr};
        moat_rc crc;
        if (!moat_cache_serve(&cx, req, res, lines, body, &crc, &cached, &tee)) {
            return proxy_chain(c, site, &call, tee != NULL ? &cached : req, tee, res, lines, body);
        }
        if (tee != NULL) {
            /* A stale answer went to the client; its revalidation answers nobody. */
            struct moat_res bres = {.status = 500, .fd = -1};
            struct moat_buf blines, bbody;
            moat_buf_init(&blines, 64 * 1024);
            moat_buf_init(&bbody, 64 * 1024);
            (void)proxy_chain(c, site, &call, &cached, tee, &bres, &blines, &bbody);
            moat_buf_clear(&blines);
            moat_buf_clear(&bbody);
        }
        return crc;
    }
    struct moat_encode_want want;
    moat_encode_want_of(site->conf, req, c->home->loop, &want);
    return moat_static_handle_cached(&site->st, c->home->files, c->home->loop->now_ms, &want, req,
                                     res, lines, body);
}

static const struct moat_session_host session_host = {
    .dispatch = dispatch,
    .decorate = decorate,
    .server_field = server_field,
    .done = answer_done,
    .ended = session_ended,
    .refused = session_refused,
};

static void start_session(struct moat_conn *c)
{
    moat_timer_disarm(&c->home->loop->timers, &c->timer);
    c->state = MOAT_CONN_SESSION;
    moat_h1s_start(&c->h1);
}

/* ALPN chose "h2": the HTTP/1 session (never started, holding nothing) makes way. */
static void start_h2(struct moat_conn *c)
{
    struct moat_conn_home *h = c->home;
    moat_timer_disarm(&h->loop->timers, &c->timer);
    struct moat_h2s_env env = {.loop = h->loop,
                               .pool = h->pool,
                               .scratch = h->h2scratch,
                               .stats = &h->stats.sessions,
                               .host = &session_host,
                               .host_data = c,
                               .conn_id = c->id,
                               .peer = c->ends.peer,
                               .ends = &c->ends,
                               .tls = moat_tls_transport_ssl(&c->tr),
                               .keep_meta = h->alog != NULL,
                               .requests_unlimited =
                                   !moat_guard_h2_limited(c->snap->conf, &c->client)};
    c->h2s = malloc(sizeof(*c->h2s));
    if (c->h2s == NULL) {
        moat_log(MOAT_LVL_ERROR, c->id, "http2: cannot start a session (out of memory)");
        moat_conn_close(c); /* still an HTTP/1 connection, holding nothing */
        return;
    }
    c->h2 = 1;
    c->state = MOAT_CONN_SESSION;
    if (!moat_ok(moat_h2s_init(c->h2s, &c->tr, &c->snap->h2, &env))) {
        moat_log(MOAT_LVL_ERROR, c->id, "http2: cannot start a session (out of memory)");
        moat_conn_close(c);
        return;
    }
    moat_h2s_start(c->h2s);
}

/* Whether the handshake agreed on HTTP/2. */
static int alpn_is_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* ---- the handshake ---------------------------------------------------------------------- */

/* A completed handshake in the metrics: its version, cipher, key exchange group, resumption. */
static void count_handshake(struct moat_metrics *mx, SSL *ssl)
{
    const char *group = NULL;
    int nid = SSL_get_negotiated_group(ssl);
    if (nid > 0) {
        group = SSL_group_to_name(ssl, nid);
    }
    moat_metrics_handshake(mx, SSL_get_version(ssl),
                           SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), group,
                           SSL_session_reused(ssl));
}

/* HANDSHAKE: returns 1 to go on. */
static int step_handshake(struct moat_conn *c)
{
    struct moat_err e = {0};
    /* The words are made on failure only, and the metrics need them even when the log does
     * not: a missing client certificate is told apart by them. */
    moat_rc rc = moat_transport_handshake(&c->tr, &e);
    if (rc.kind == MOAT_E_AGAIN) {
        return 0;
    }
    if (!moat_ok(rc)) {
        c->home->stats.handshake_failures++;
        char msg[600] = "";
        struct moat_tls_identity id;
        SSL *ssl = moat_tls_transport_ssl(&c->tr);
        moat_tls_identity_of(ssl, &id);
        enum moat_mx_hs_fail why = MOAT_MX_HSF_PROTOCOL;
        if (moat_tls_alpn_refused(ssl, msg, sizeof(msg))) {
            why = MOAT_MX_HSF_ALPN;
        } else if (!id.present && strstr(e.msg, "did not return a certificate") != NULL) {
            why = MOAT_MX_HSF_NO_CLIENT_CERT;
        } else if (moat_tls_client_refusal(ssl, msg, sizeof(msg))) {
            why = MOAT_MX_HSF_CLIENT_REFUSED;
        } else if (id.present && !id.verified) {
            /* The words OpenSSL has ("certificate verify failed") say less than the verify
             * result does: who was refused, and why. */
            why = MOAT_MX_HSF_CLIENT_REFUSED;
            moat_tls_identity_refusal(&id, 1, msg, sizeof(msg));
        }
        moat_mx_add(&c->home->mx->hs_fail[why], 1);
        if (moat_log_level_now >= MOAT_LVL_INFO) {
            switch (why) {
            case MOAT_MX_HSF_ALPN:
                moat_log(MOAT_LVL_INFO, c->id,
                         "tls handshake refused: no common application protocol: the client "
                         "offered %s; moat speaks h2 (where it is on), http/1.1 and http/1.0 "
                         "(peer %s)",
                         msg, c->ends.peer);
                break;
            case MOAT_MX_HSF_NO_CLIENT_CERT:
                moat_log(MOAT_LVL_INFO, c->id,
                         "client refused at handshake: no client certificate was presented "
                         "(peer %s)",
                         c->ends.peer);
                break;
            case MOAT_MX_HSF_CLIENT_REFUSED:
                moat_log(MOAT_LVL_INFO, c->id, "client refused at handshake: %s (peer %s)", msg,
                         c->ends.peer);
                break;
            default:
                moat_log(MOAT_LVL_INFO, c->id, "%s (peer %s)", moat_err_str(&e, msg, sizeof(msg)),
                         c->ends.peer);
                break;
            }
        }
        moat_conn_close(c);
        return 0;
    }
    if (moat_tls_sni_is_acme(moat_tls_transport_ssl(&c->tr))) {
        /* A TLS-ALPN-01 validation: the handshake was the answer (RFC 8737 §3). */
        moat_log(MOAT_LVL_INFO, c->id, "acme: answered a TLS-ALPN-01 validation (peer %s)",
                 c->ends.peer);
        moat_conn_close(c);
        return 0;
    }
    count_handshake(c->home->mx, moat_tls_transport_ssl(&c->tr));
    /* Until a request names its host, answers (errors included) carry the SNI site's
     * headers, HSTS among them. */
    c->sni_site = moat_tls_sni_site_of(moat_tls_transport_ssl(&c->tr));
    if (alpn_is_h2(moat_tls_transport_ssl(&c->tr))) {
        start_h2(c);
    } else {
        start_session(c);
    }
    return 0;
}

static void on_event(struct moat_watch *w, uint32_t events)
{
    struct moat_conn *c = w->data;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        moat_transport_readable(&c->tr);
    }
    if (c->state == MOAT_CONN_SESSION) {
        if (c->h2) {
            moat_h2s_on_event(c->h2s, events);
        } else {
            moat_h1s_on_event(&c->h1, events);
        }
        return;
    }
    if (c->state == MOAT_CONN_PROXY_HEADER) {
        step_proxy_header(c);
        return;
    }
    if (c->state != MOAT_CONN_HANDSHAKE) {
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP)) {
        moat_conn_close(c);
        return;
    }
    step_handshake(c);
}

static void on_timer(struct moat_timer *t)
{
    struct moat_conn *c = t->data;
    c->home->stats.handshake_timeouts++;
    moat_mx_add(&c->home->mx->hs_fail[MOAT_MX_HSF_TIMEOUT], 1);
    moat_log(MOAT_LVL_DEBUG, c->id, "tls handshake timed out (peer %s)", c->ends.peer);
    moat_conn_close(c);
}

void moat_conn_drain(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_HANDSHAKE ||
        (c->state == MOAT_CONN_SESSION &&
         (c->h2 ? moat_h2s_drain(c->h2s) : moat_h1s_drain(&c->h1)))) {
        moat_transport_shutdown(&c->tr);
        moat_conn_close(c);
    }
}

void moat_conn_retire(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_SESSION && c->h2 && c->snap != c->home->snap &&
        moat_h2s_drain(c->h2s)) {
        moat_transport_shutdown(&c->tr);
        moat_conn_close(c);
    }
}

/* The session starts once the connection is what the listener promised: TLS or plain. */
static void after_accept(struct moat_conn *c)
{
    if (c->plain) {
        moat_timer_disarm(&c->home->loop->timers, &c->timer);
        start_session(c);
        return;
    }
    c->state = MOAT_CONN_HANDSHAKE;
    step_handshake(c); /* bytes that came with the PROXY header get no edge of their own */
}

/*
 * PROXY_HEADER: peek at what came, parse it, take exactly the header off the socket (the TLS
 * handshake or the plain session reads the rest), and believe its addresses. Anything that is
 * not a valid header closes the connection: the listener promised one, and a guess could let
 * a client pose as any address (the spec's §2: a receiver must not try to guess).
 */
static void step_proxy_header(struct moat_conn *c)
{
    struct moat_pp_result r;
    const char *why = NULL;
    int got = moat_pp_take(c->tr.fd, &r, &why);
    if (got == 0) {
        return;
    }
    if (got < 0) {
        moat_log(MOAT_LVL_INFO, c->id,
                 "PROXY protocol: expected a header from %s on this listener, got %s: closed",
                 c->ends.peer, why);
        moat_conn_close(c);
        return;
    }
    if (r.command == MOAT_PP_CMD_PROXY &&
        (r.family == MOAT_PP_FAM_INET || r.family == MOAT_PP_FAM_INET6)) {
        moat_sock_endpoint(&r.src, c->ends.peer, sizeof(c->ends.peer), &c->ends.peer_port);
        moat_sock_endpoint(&r.dst, c->ends.local, sizeof(c->ends.local), &c->ends.local_port);
        /* The limits by address count the client the proxy names, not the proxy. */
        moat_guard_addr_of_sa((const struct sockaddr *)&r.src, &c->client);
        if (!moat_guard_after_header(c->snap->guard, c->snap->conf, &r.src, !c->plain,
                                     c->home->loop->now_ms, c->id, &c->ticket)) {
            moat_conn_close(c);
            return;
        }
    }
    c->proxy_header = 0;
    after_accept(c);
}

void moat_conn_accept(struct moat_conn_home *h, int fd, const struct sockaddr_storage *peer,
                      int plain, int h2_ok, int proxy_header)
{
    /* The limits first, before anything is spent on the connection. Behind a PROXY protocol
     * listener the peer is the proxy: its client's address comes with the header. */
    struct moat_guard *g = h->snap->guard;
    struct moat_guard_ticket t;
    if (!moat_guard_at_accept(g, h->snap->conf, peer, !plain, proxy_header, h->loop->now_ms, &t)) {
        close(fd); /* before a byte is read */
        return;
    }
    struct moat_guard_addr who;
    moat_guard_addr_of_sa((const struct sockaddr *)peer, &who);
    struct moat_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (g != NULL) {
            moat_guard_release(g, &t);
        }
        close(fd);
        return;
    }
    c->client = who;
    c->ticket = t;
    c->home = h;
    c->id = ++h->next_id * 64 + h->worker_id; /* unique across workers, ordered within one */
    moat_transport_plain_init(&c->tr, fd);
    c->plain = plain;
    moat_sock_endpoint(peer, c->ends.peer, sizeof(c->ends.peer), &c->ends.peer_port);
    if (h->snap->pp_out) {
        /* Only when an upstream gets PROXY headers: one system call a connection. */
        struct sockaddr_storage local;
        socklen_t ll = sizeof(local);
        if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0) {
            moat_sock_endpoint(&local, c->ends.local, sizeof(c->ends.local), &c->ends.local_port);
        }
    }
    c->proxy_header = proxy_header;
    c->snap = moat_snapshot_ref(h->snap);
    c->route_memo = (struct moat_route_memo){0};
    moat_timer_init(&c->timer, on_timer, c);
    c->w.fd = fd;
    c->w.cb = on_event;
    c->w.data = c;
    if (!plain) {
        /* The default context until SNI picks the site's (tls/sni.c swaps it). */
        if (!moat_ok(moat_tls_transport_server(&c->tr, fd, moat_tls_sni_default_ctx(c->snap->sni),
                                               NULL))) {
            moat_transport_close(&c->tr); /* not yet linked anywhere */
            if (g != NULL) {
                moat_guard_release(g, &c->ticket);
            }
            conn_free(c);
            return;
        }
        if (!h2_ok) {
            moat_tls_alpn_no_h2(moat_tls_transport_ssl(&c->tr));
        }
    }
    c->tr.track_reads = 1; /* on_event clears the hint on every readable edge */
    struct moat_h1s_env env = {.loop = h->loop,
                               .pool = h->pool,
                               .scratch = h->scratch,
                               .stats = &h->stats.sessions,
                               .host = &session_host,
                               .host_data = c,
                               .conn_id = c->id,
                               .peer = c->ends.peer,
                               .ends = &c->ends,
                               .secure = !plain,
                               .tls = moat_tls_transport_ssl(&c->tr),
                               .keep_meta = h->alog != NULL};
    moat_h1s_init(&c->h1, &c->tr, &c->snap->h1, &env);
    /* link */
    c->next = h->conns;
    if (h->conns) {
        h->conns->prev = c;
    }
    h->conns = c;
    h->nconns++;
    h->stats.accepted++;
    moat_mx_add(&h->mx->accepted, 1);
    if (!moat_ok(moat_loop_add(h->loop, &c->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        moat_conn_close(c);
        return;
    }
    if (proxy_header) {
        if (!moat_cidr_match_sa(c->snap->trusted, c->snap->ntrusted,
                                (const struct sockaddr *)peer)) {
            moat_log(MOAT_LVL_WARN, c->id,
                     "PROXY protocol: %s is not in trusted_proxies, and only those may connect "
                     "to this listener: closed",
                     c->ends.peer);
            moat_conn_close(c);
            return;
        }
        c->state = MOAT_CONN_PROXY_HEADER;
    } else if (plain) {
        start_session(c);
        return;
    } else {
        c->state = MOAT_CONN_HANDSHAKE;
    }
    /* The handshake's timer covers the PROXY header too. */
    if (!moat_ok(moat_timer_arm(&h->loop->timers, &c->timer,
                                h->loop->now_ms + c->snap->conf->handshake_timeout_ms))) {
        moat_conn_close(c);
        return;
    }
    /* The listener defers accepting until the client's first bytes came (server.c), so they
     * are read now rather than after another turn of the loop. After the deferral's second,
     * or where the kernel would not defer, this read finds nothing and the edge comes later. */
    if (c->state == MOAT_CONN_PROXY_HEADER) {
        step_proxy_header(c);
    } else {
        step_handshake(c);
    }
}
