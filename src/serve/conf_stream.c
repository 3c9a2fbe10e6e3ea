/*
 * conf_stream.c: `stream NAME { ... }` blocks: TCP listeners whose bytes go to a target, with
 * TLS terminated (certificates as a site has them), passed through untouched (routed by the
 * ClientHello's SNI), or off; STARTTLS openings for SMTP and PostgreSQL. The connections
 * themselves are serve/stream.c. Users' reference: docs/proxy.md, "Streams".
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void moat_conf__stream_clear(struct moat_conf_stream *s)
{
    free(s->name);
    moat_conf__free_strs(s->listen, s->nlisten);
    moat_conf__site_clear(&s->id);
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].sni);
        free(s->routes[i].upstream);
    }
    free(s->routes);
    free(s->ca);
    *s = (struct moat_conf_stream){0};
}

static struct moat_conf_stream *cur(struct moat_conf__loader *L)
{
    return &L->c->streams[L->stream - 1];
}

static moat_rc h_stream(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_conf__block_name_ok(w->s)) {
        return moat_conf__fail_at_word(L, w,
                                       "a stream's name is 1 to 63 letters, digits, '-', '_' or "
                                       "'.', e.g. stream redis { listen :6380; proxy "
                                       "127.0.0.1:6379 }");
    }
    if (!n->has_block) {
        return moat_conf__fail_at_word(L, w,
                                       "stream %s needs a block: stream %s { listen ADDRESS; "
                                       "proxy HOST:PORT }",
                                       w->s, w->s);
    }
    for (size_t i = 0; i < L->c->nstreams; i++) {
        if (strcmp(L->c->streams[i].name, w->s) == 0) {
            return moat_conf__fail_at_word(L, w, "stream \"%s\" is defined twice (at %s too)", w->s,
                                           L->c->streams[i].where);
        }
    }
    struct moat_conf_stream *a = realloc(L->c->streams, (L->c->nstreams + 1) * sizeof(*a));
    if (a == NULL) {
        return moat_conf__nomem(L);
    }
    L->c->streams = a;
    struct moat_conf_stream *s = &a[L->c->nstreams++];
    *s = (struct moat_conf_stream){.handshake_ms = 10000, .connect_ms = 10000, .idle_ms = 3600000};
    s->id.index = strdup("index.html"); /* unused, but a site always has one */
    if ((s->name = strdup(w->s)) == NULL || s->id.index == NULL) {
        return moat_conf__nomem(L);
    }
    moat_conf__where_of(L, n, s->where);
    snprintf(s->id.where, sizeof(s->id.where), "%s", s->where);
    size_t idx = L->c->nstreams;
    size_t nspecs = moat_conf__spec_count();
    for (size_t k = 0; k < nspecs; k++) {
        L->site_seen[k] = (struct moat_conf__pos){0, 0};
    }
    L->stream = idx;
    L->site = &L->c->streams[idx - 1].id; /* cert, client_* are read as a site's */
    moat_rc rc = moat_conf__walk_block(L, n, MOAT_CONF__STREAM);
    L->stream = 0;
    L->site = NULL;
    MOAT_TRY(rc);
    s = &L->c->streams[idx - 1];
    if (s->nlisten == 0) {
        return moat_conf__fail_at_word(L, w,
                                       "stream \"%s\" has no listen address (add listen "
                                       "ADDRESS inside its block)",
                                       s->name);
    }
    int dflt = 0;
    for (size_t i = 0; i < s->nroutes; i++) {
        dflt |= s->routes[i].sni == NULL;
    }
    if (!dflt && s->nroutes == 0) {
        return moat_conf__fail_at_word(L, w,
                                       "stream \"%s\" has nowhere to send its bytes (add "
                                       "proxy HOST:PORT, or route NAME HOST:PORT)",
                                       s->name);
    }
    if (s->tls != MOAT_CONF_STREAM_TERMINATE &&
        (s->id.ncerts > 0 || s->starttls != MOAT_CONF_STARTTLS_NONE || s->id.client_auth != 0)) {
        return moat_conf__fail_at_word(L, w,
                                       "stream \"%s\": cert, starttls and client_auth need tls "
                                       "terminate (moat holds no TLS of a passthrough or plain "
                                       "stream)",
                                       s->name);
    }
    if (s->tls == MOAT_CONF_STREAM_PLAIN && s->nroutes > 0) {
        for (size_t i = 0; i < s->nroutes; i++) {
            if (s->routes[i].sni != NULL) {
                return moat_conf__fail_at_word(L, w,
                                               "stream \"%s\": route by SNI needs TLS from "
                                               "the client (tls terminate or passthrough)",
                                               s->name);
            }
        }
    }
    if (s->id.client_auth != 0 && s->id.nclient_ca == 0) {
        return moat_conf__fail_at_word(L, w,
                                       "stream \"%s\" asks for client certificates but "
                                       "names no CA for them (add client_ca CA.pem)",
                                       s->name);
    }
    for (size_t i = 0; i < s->nroutes; i++) {
        struct moat_conf_upstream *u =
            s->routes[i].upstream == NULL ? &L->c->upstreams[s->routes[i].index] : NULL;
        if (u != NULL && s->ca != NULL && (u->ca = strdup(s->ca)) == NULL) {
            return moat_conf__nomem(L);
        }
    }
    if (s->id.nnames == 0) {
        /* Without names, the local CA's certificate is for this machine. */
        char *lh = strdup("localhost");
        if (lh == NULL || !moat_conf__push_str(&s->id.names, &s->id.nnames, lh)) {
            free(lh);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_listen(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_stream *s = cur(L);
    return moat_conf__take_listen_words(L, n, "listen", &s->listen, &s->nlisten);
}

static moat_rc h_tls(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    const char *v = n->words[1].s;
    struct moat_conf_stream *s = cur(L);
    if (strcmp(v, "terminate") == 0) {
        s->tls = MOAT_CONF_STREAM_TERMINATE;
    } else if (strcmp(v, "passthrough") == 0) {
        s->tls = MOAT_CONF_STREAM_PASSTHROUGH;
    } else if (strcmp(v, "off") == 0) {
        s->tls = MOAT_CONF_STREAM_PLAIN;
    } else {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "tls takes terminate, passthrough or off, not \"%.40s\"", v);
    }
    return MOAT_RC_OK;
}

static moat_rc h_starttls(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    const char *v = n->words[1].s;
    struct moat_conf_stream *s = cur(L);
    if (strcmp(v, "smtp") == 0) {
        s->starttls = MOAT_CONF_STARTTLS_SMTP;
    } else if (strcmp(v, "postgres") == 0) {
        s->starttls = MOAT_CONF_STARTTLS_POSTGRES;
    } else {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "starttls takes smtp or postgres, not \"%.40s\"", v);
    }
    return MOAT_RC_OK;
}

/* `name NAME...`: the stream's names: its local CA certificate's, and what routes match. */
static moat_rc h_name(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_conf_site *id = &cur(L)->id;
    for (size_t i = 1; i < n->nwords; i++) {
        char norm[256], why[128];
        const char *bad =
            moat_conf__site_name_norm(n->words[i].s, norm, sizeof(norm), why, sizeof(why));
        if (bad != NULL || strcmp(norm, "*") == 0) {
            return moat_conf__fail_at_word(L, &n->words[i], "bad stream name \"%.100s\": %s",
                                           n->words[i].s, bad ? bad : "give the names, not *");
        }
        char *d = strdup(norm);
        if (d == NULL || !moat_conf__push_str(&id->names, &id->nnames, d)) {
            free(d);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* A target: `HOST:PORT`, `tls://HOST:PORT` or the name of an upstream block. */
static moat_rc add_route(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const char *sni, const struct moat_cfg_word *tw)
{
    struct moat_conf_stream *s = cur(L);
    for (size_t i = 0; i < s->nroutes; i++) {
        const char *o = s->routes[i].sni;
        if ((o == NULL && sni == NULL) || (o != NULL && sni != NULL && strcmp(o, sni) == 0)) {
            return moat_conf__fail_at_word(L, &n->words[0], "this stream already sends %s at %s",
                                           sni ? sni : "its default", s->routes[i].where);
        }
    }
    struct moat_conf_stream_route r = {0};
    moat_conf__where_of(L, n, r.where);
    const char *t = tw->s;
    if (strncasecmp(t, "tls://", 6) == 0 || strchr(t, ':') != NULL) {
        int tls = strncasecmp(t, "tls://", 6) == 0;
        const char *bad = moat_conf__proxy_inline_target(L->c, tls ? t + 6 : t, tls, &r.index);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, tw,
                                           "target \"%.100s\": %s (write HOST:PORT, "
                                           "tls://HOST:PORT or an upstream's name)",
                                           t, bad);
        }
        s = cur(L); /* c->upstreams moved, not c->streams: s stays valid, but be plain */
        snprintf(L->c->upstreams[r.index].where, MOAT_CONF_WHERE_MAX, "%s", r.where);
        snprintf(L->c->upstreams[r.index].servers[0].where, MOAT_CONF_WHERE_MAX, "%s", r.where);
    } else if (moat_conf__block_name_ok(t)) {
        if ((r.upstream = strdup(t)) == NULL) {
            return moat_conf__nomem(L);
        }
    } else {
        return moat_conf__fail_at_word(L, tw,
                                       "target \"%.100s\": write HOST:PORT, "
                                       "tls://HOST:PORT or the name of an upstream block",
                                       t);
    }
    if (sni != NULL && (r.sni = strdup(sni)) == NULL) {
        free(r.upstream);
        return moat_conf__nomem(L);
    }
    struct moat_conf_stream_route *a = realloc(s->routes, (s->nroutes + 1) * sizeof(*a));
    if (a == NULL) {
        free(r.upstream);
        free(r.sni);
        return moat_conf__nomem(L);
    }
    s->routes = a;
    a[s->nroutes++] = r;
    return MOAT_RC_OK;
}

static moat_rc h_proxy(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    return add_route(L, n, NULL, &n->words[1]);
}

/* `route SNI TARGET`: clients that asked for SNI (a name, or *.suffix for one label). */
static moat_rc h_route(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    char norm[256], why[128];
    const char *bad =
        moat_conf__site_name_norm(n->words[1].s, norm, sizeof(norm), why, sizeof(why));
    if (bad != NULL || strcmp(norm, "*") == 0) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "route \"%.100s\": %s (write the name a "
                                       "client asks for, e.g. route db.example.com "
                                       "10.0.0.5:5432; the default is proxy TARGET)",
                                       n->words[1].s, bad ? bad : "* is the default");
    }
    return add_route(L, n, norm, &n->words[2]);
}

static moat_rc h_ca(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                    const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "CA", &cur(L)->ca);
}

/* cert, client_auth, client_ca, client_crl, client_depth: as in a site block (L->site is the
 * stream's identity while its block is read). */
static moat_rc h_as_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    const struct moat_conf__spec *site = moat_conf__spec_find(MOAT_CONF__SITE, sp->name, NULL);
    if (site == NULL || site->fn == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    return site->fn(L, n, site);
}

static moat_rc h_timeouts(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    return moat_conf__walk_block(L, n, MOAT_CONF__STREAM_TIMEOUTS);
}

static moat_rc h_timeout(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    uint64_t ms = 0;
    if (!moat_ok(moat_cfg_duration_ms(n->words[1].s, &ms)) || ms == 0 || ms > MOAT_CONF__DAY_MS) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "\"%s\" is a duration between 1ms and 1d, "
                                       "e.g. 10s",
                                       sp->name);
    }
    struct moat_conf_stream *s = cur(L);
    *(sp->name[0] == 'h'   ? &s->handshake_ms
      : sp->name[0] == 'c' ? &s->connect_ms
                           : &s->idle_ms) = ms;
    return MOAT_RC_OK;
}

#define ST(nm, mn, mx, many, f, use) MOAT_CONF__CUSTOM(nm, MOAT_CONF__STREAM, mn, mx, many, f, use)
#define STT(nm) MOAT_CONF__CUSTOM(nm, MOAT_CONF__STREAM_TIMEOUTS, 1, 1, 0, h_timeout, nm " D")

const struct moat_conf__spec moat_conf__stream_specs[] = {
    {.name = "stream",
     .ctx = MOAT_CONF__TOP,
     .min = 1,
     .max = 1,
     .multi = 1,
     .kind = MOAT_CONF__V_BLOCK,
     .inner = MOAT_CONF__STREAM,
     .fn = h_stream,
     .usage = "stream NAME { listen ADDRESS; proxy HOST:PORT }"},
    ST("listen", 1, -1, 1, h_listen, "listen ADDRESS..."),
    ST("tls", 1, 1, 0, h_tls, "tls terminate|passthrough|off"),
    ST("starttls", 1, 1, 0, h_starttls, "starttls smtp|postgres"),
    ST("name", 1, -1, 1, h_name, "name NAME..."),
    ST("proxy", 1, 1, 0, h_proxy, "proxy HOST:PORT|tls://HOST:PORT|UPSTREAM"),
    ST("route", 2, 2, 1, h_route, "route SNI_NAME HOST:PORT|tls://HOST:PORT|UPSTREAM"),
    ST("ca", 1, 1, 0, h_ca, "ca CA.pem"),
    ST("cert", 2, 2, 1, h_as_site, "cert CERT.pem KEY.pem"),
    ST("client_auth", 1, 1, 0, h_as_site, "client_auth off|optional|require"),
    ST("client_ca", 1, -1, 1, h_as_site, "client_ca CA.pem..."),
    {.name = "timeouts",
     .ctx = MOAT_CONF__STREAM,
     .min = 0,
     .max = 0,
     .multi = 0,
     .kind = MOAT_CONF__V_BLOCK,
     .inner = MOAT_CONF__STREAM_TIMEOUTS,
     .fn = h_timeouts,
     .usage = "timeouts { handshake 10s; connect 10s; idle 1h }"},
    STT("handshake"),
    STT("connect"),
    STT("idle"),
};

const size_t moat_conf__stream_nspecs =
    sizeof(moat_conf__stream_specs) / sizeof(moat_conf__stream_specs[0]);

/* After the file: named targets exist; a stream's listen address is its own. */
moat_rc moat_conf__stream_check_conf(struct moat_conf__loader *L)
{
    struct moat_conf *c = L->c;
    for (size_t i = 0; i < c->nstreams; i++) {
        struct moat_conf_stream *s = &c->streams[i];
        for (size_t r = 0; r < s->nroutes; r++) {
            struct moat_conf_stream_route *rt = &s->routes[r];
            if (rt->upstream == NULL) {
                continue;
            }
            size_t k = 0;
            while (k < c->nupstreams && (c->upstreams[k].name == NULL ||
                                         strcmp(c->upstreams[k].name, rt->upstream) != 0)) {
                k++;
            }
            if (k == c->nupstreams) {
                moat_err_where(L->err, "%s", rt->where);
                MOAT_FAIL(L->err, MOAT_E_CONFIG,
                          "stream %s: no upstream is called \"%s\" (define it: upstream %s { "
                          "server HOST:PORT; })",
                          s->name, rt->upstream, rt->upstream);
            }
            rt->index = k;
        }
        for (size_t a = 0; a < s->nlisten; a++) {
            const char *x = s->listen[a];
            int clash = c->redirect_listen != NULL && strcmp(c->redirect_listen, x) == 0;
            for (size_t k = 0; k < c->nlisten && !clash; k++) {
                clash = strcmp(c->listen[k], x) == 0;
            }
            for (size_t j = 0; j < c->nstreams && !clash; j++) {
                for (size_t b = 0; b < c->streams[j].nlisten && !clash; b++) {
                    clash = (j != i || b != a) && strcmp(c->streams[j].listen[b], x) == 0;
                }
            }
            if (clash) {
                moat_err_where(L->err, "%s", s->where);
                MOAT_FAIL(L->err, MOAT_E_CONFIG,
                          "stream %s: listen %s is already another listener's (a stream needs "
                          "an address of its own)",
                          s->name, x);
            }
        }
    }
    return MOAT_RC_OK;
}
