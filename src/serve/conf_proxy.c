/*
 * conf_proxy.c: the reverse-proxy directives of a site block: proxy (the origin), proxy_ca,
 * proxy_cert, proxy_timeout and client_header_prefix. Forwarding itself is serve/proxy.c;
 * the origin's name is resolved and its TLS context built by the snapshot, not here.
 * Users' reference: docs/proxy.md, "Directives".
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * `proxy http://HOST[:PORT]` or `proxy https://HOST[:PORT]`: forward the site's requests to this
 * origin instead of serving files (a site has root or proxy, not both). PORT defaults to 80 or
 * 443; a path or a user is refused because moat forwards the client's path unchanged.
 * See docs/proxy.md#proxy-httphostport-or-proxy-httpshostport.
 */
static moat_rc h_proxy(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *w = &n->words[1];
    const char *rest = NULL;
    if (strncasecmp(w->s, "http://", 7) == 0) {
        rest = w->s + 7;
    } else if (strncasecmp(w->s, "https://", 8) == 0) {
        rest = w->s + 8;
        s->proxy_tls = 1;
    } else {
        return moat_conf__fail_at_word(L, w, "proxy takes http://HOST:PORT or https://HOST:PORT");
    }
    size_t len = strlen(rest);
    while (len > 0 && rest[len - 1] == '/') {
        len--; /* "http://h:1/" is fine; a path prefix is not supported */
    }
    char hostport[300];
    if (len == 0 || len >= sizeof(hostport) || memchr(rest, '/', len) != NULL ||
        memchr(rest, '@', len) != NULL) {
        return moat_conf__fail_at_word(
            L, w,
            "proxy \"%.100s\": write only scheme, host and port (no path, no "
            "user), e.g. http://127.0.0.1:9000",
            w->s);
    }
    memcpy(hostport, rest, len);
    hostport[len] = '\0';
    char host[256];
    uint16_t port = 0;
    const char *bad = moat_conf__listen_parse(hostport, host, sizeof(host), &port);
    if (bad != NULL && strchr(hostport, ':') == NULL) {
        /* No port: the scheme's default. */
        snprintf(host, sizeof(host), "%.255s", hostport);
        port = s->proxy_tls ? 443 : 80;
        bad = host[0] == '\0' ? "no host" : NULL;
    }
    if (bad != NULL || host[0] == '\0') {
        return moat_conf__fail_at_word(L, w, "proxy \"%.100s\": %s", w->s, bad ? bad : "no host");
    }
    s->proxy_host = strdup(host);
    s->proxy_port = port;
    return s->proxy_host ? MOAT_RC_OK : moat_conf__nomem(L);
}

/*
 * The options of an origin, each needing proxy (moat_conf__proxy_check_site):
 * `proxy_ca CA.pem`: the CAs that may have issued an https origin's certificate; default the
 *   system store plus moat's local CA. See docs/proxy.md#proxy_ca-capem.
 * `proxy_cert CERT.pem KEY.pem`: the client certificate shown to an origin that asks for one.
 *   See docs/proxy.md#proxy_cert-certpem-keypem.
 * `proxy_timeout DURATION`: connect, first byte and between reads, 1ms to 1d; default 60s.
 *   See docs/proxy.md#proxy_timeout-duration.
 * `client_header_prefix PREFIX`: the prefix of the client identity fields, a token of 1 to 48
 *   characters; default X-Client- (applied by the proxy). See
 *   docs/proxy.md#client_header_prefix-prefix.
 */
static moat_rc h_proxy_opt(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    if (strcmp(sp->name, "proxy_ca") == 0) {
        return moat_conf__take_path(L, &n->words[1], "CA", &s->proxy_ca);
    }
    if (strcmp(sp->name, "proxy_cert") == 0) {
        MOAT_TRY(moat_conf__take_path(L, &n->words[1], "certificate", &s->proxy_cert));
        return moat_conf__take_path(L, &n->words[2], "key", &s->proxy_key);
    }
    if (strcmp(sp->name, "proxy_timeout") == 0) {
        uint64_t ms;
        if (!moat_ok(moat_cfg_duration_ms(n->words[1].s, &ms)) || ms == 0 ||
            ms > MOAT_CONF__DAY_MS) {
            return moat_conf__fail_at_word(
                L, &n->words[1], "proxy_timeout is a duration between 1ms and 1d, e.g. 60s");
        }
        s->proxy_timeout_ms = ms;
        return MOAT_RC_OK;
    }
    /* client_header_prefix: a token, so the header names it makes are valid */
    const char *v = n->words[1].s;
    if (n->words[1].len == 0 || n->words[1].len > 48) {
        return moat_conf__fail_at_word(
            L, &n->words[1], "client_header_prefix must be 1 to 48 characters, e.g. X-Client-");
    }
    for (const char *p = v; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_')) {
            return moat_conf__fail_at_word(
                L, &n->words[1], "client_header_prefix may hold letters, digits, '-' and '_' only");
        }
    }
    free(s->client_header_prefix);
    s->client_header_prefix = strdup(v);
    return s->client_header_prefix ? MOAT_RC_OK : moat_conf__nomem(L);
}

const struct moat_conf__spec moat_conf__proxy_specs[] = {
    MOAT_CONF__CUSTOM("proxy", MOAT_CONF__SITE, 1, 1, 0, h_proxy,
                      "proxy http://HOST:PORT | https://HOST:PORT"),
    MOAT_CONF__CUSTOM("proxy_ca", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt, "proxy_ca CA.pem"),
    MOAT_CONF__CUSTOM("proxy_cert", MOAT_CONF__SITE, 2, 2, 0, h_proxy_opt,
                      "proxy_cert CERT.pem KEY.pem"),
    MOAT_CONF__CUSTOM("proxy_timeout", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt,
                      "proxy_timeout DURATION"),
    MOAT_CONF__CUSTOM("client_header_prefix", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt,
                      "client_header_prefix X-Client-"),
};

const size_t moat_conf__proxy_nspecs =
    sizeof(moat_conf__proxy_specs) / sizeof(moat_conf__proxy_specs[0]);

/* Origin options without an origin would silently do nothing; then the timeout's default,
 * which is set here rather than in the site defaults so that "set" can be told from "unset"
 * by the check above. */
moat_rc moat_conf__proxy_check_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                    struct moat_conf_site *s)
{
    if (s->proxy_host == NULL &&
        (s->proxy_ca || s->proxy_cert || s->proxy_timeout_ms || s->client_header_prefix)) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has proxy_* or client_header_prefix settings "
                                       "but no proxy (add \"proxy http://HOST:PORT\")",
                                       s->names[0]);
    }
    if (s->proxy_timeout_ms == 0) {
        s->proxy_timeout_ms = 60000;
    }
    return MOAT_RC_OK;
}
