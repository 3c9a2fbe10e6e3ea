/*
 * route.c: request routing (see route.h).
 */
#include "serve/route.h"

#include "core/log.h"
#include "serve/crlpub.h"
#include "serve/headers.h"
#include "serve/snapshot.h"
#include "tls/clientauth.h"
#include "tls/sni.h"

#include <stdio.h>
#include <string.h>

moat_slice moat_route_host(moat_slice host)
{
    if (host.len > 0 && host.p[0] == '[') {
        const char *close = memchr(host.p, ']', host.len);
        if (close != NULL) {
            return moat_slice_of(host.p, (size_t)(close - host.p) + 1);
        }
        return host;
    }
    const char *colon = memchr(host.p, ':', host.len);
    return colon ? moat_slice_of(host.p, (size_t)(colon - host.p)) : host;
}

/* moat_snapshot_route, through the connection's memo: the same bytes give the same site for
 * as long as the connection's snapshot, which is all of its life. */
static struct moat_site *site_lookup(const struct moat_route_conn *rc, moat_slice host)
{
    struct moat_route_memo *m = rc->memo;
    if (m != NULL && m->len == host.len && memcmp(m->host, host.p, host.len) == 0) {
        return m->site;
    }
    struct moat_site *site = moat_snapshot_route(rc->snap, host.p, host.len);
    if (m != NULL && host.len <= sizeof(m->host)) {
        memcpy(m->host, host.p, host.len);
        m->len = (unsigned char)host.len;
        m->site = site;
    }
    return site;
}

/* The site for `host`, or NULL with the reason for a 421 in *why. */
static struct moat_site *site_for(const struct moat_route_conn *rc, moat_slice host,
                                  const char **why)
{
    struct moat_site *site = host.len ? site_lookup(rc, host) : NULL;
    *why = NULL;
    if (rc->ssl == NULL) {
        return site != NULL ? site : &rc->snap->sites[0]; /* the plain listener redirects */
    }
    if (host.len == 0) {
        return rc->sni_site; /* HTTP/1.0 without Host: the handshake's site */
    }
    if (site == NULL) {
        *why = "is not a name of any site (add it to a site, or add a `site *` to answer any "
               "name)";
    } else if (site != rc->sni_site &&
               (site->conf->client_auth != 0 || rc->sni_site->conf->client_auth != 0)) {
        /* A client must not reach a stricter site's content through a laxer site's handshake
         * (nor the reverse with a borrowed identity). */
        *why = "is not the site of the TLS handshake, and the two differ in client "
               "authentication";
    } else if (site != rc->sni_site && site != rc->snap->catch_all &&
               !moat_tls_sni_covers(rc->ssl, host.p, host.len)) {
        *why = "is not covered by the certificate of this connection, which was chosen for "
               "another site (the client must connect again with that name as SNI)";
    }
    return *why == NULL ? site : NULL;
}

/* Whether `path` (normalised) falls under `prefix` at a segment boundary. */
static int under_prefix(const char *path, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (pl == 1 && prefix[0] == '/') {
        return 1;
    }
    return len >= pl && memcmp(path, prefix, pl) == 0 && (len == pl || path[pl] == '/');
}

/* NULL when the request may go on; else the reason for a 403 (thread-local). */
static const char *client_path_refusal(const struct moat_route_conn *rc,
                                       const struct moat_site *site, const char *norm, size_t nlen)
{
    static _Thread_local char why[600];
    const struct moat_conf_site *cs = site->conf;
    for (size_t i = 0; i < cs->nclient_paths; i++) {
        const struct moat_conf_client_path *cp = &cs->client_paths[i];
        if (!under_prefix(norm, nlen, cp->prefix)) {
            continue;
        }
        struct moat_tls_identity id;
        moat_tls_identity_of(rc->ssl, &id);
        int allowed =
            id.verified &&
            moat_tls_identity_allowed(rc->ssl, (const char *const *)cs->client_allow,
                                      cs->nclient_allow) &&
            moat_tls_identity_allowed(rc->ssl, (const char *const *)cp->allow, cp->nallow);
        if (allowed) {
            return NULL;
        }
        char reason[500];
        moat_tls_identity_refusal(&id, allowed, reason, sizeof(reason));
        snprintf(why, sizeof(why), "%s needs a client certificate: %s", cp->prefix, reason);
        moat_log(MOAT_LVL_INFO, rc->id, "client refused: %s (peer %s)", why, rc->peer_text);
        return why;
    }
    return NULL;
}

enum moat_route_verdict moat_route_pick(const struct moat_route_conn *rc, moat_slice authority,
                                        moat_slice npath, struct moat_route *out)
{
    *out = (struct moat_route){0};
    moat_slice host = moat_route_host(authority);
    const char *why;
    struct moat_site *site = site_for(rc, host, &why);
    if (site == NULL) {
        moat_log(MOAT_LVL_INFO, rc->id, "421: Host \"%.*s\" %s (peer %s)",
                 (int)(host.len > 200 ? 200 : host.len), host.p, why, rc->peer_text);
        out->site = rc->sni_site;
        return MOAT_ROUTE_MISDIRECTED;
    }
    out->site = site;
    /* The normalised path for the rules that match on it (a path that does not normalise
     * matches none; the static handler answers it with 400). */
    int have_norm = npath.p != NULL;
    const char *norm = npath.p;
    size_t nlen = npath.len;
    if (have_norm && moat_hdr_table_has_prefixes(&site->hdrs)) {
        out->hdrs = moat_hdr_table_for(&site->hdrs, norm, nlen);
    }
    /* A CRL is public and signed, and clients fetch it over plain HTTP: it is answered before
     * client_path (and the proxy), on the plain listener too. */
    out->crl = moat_crlpub_find(rc->snap->crlpub, site->conf, npath, rc->ssl == NULL);
    if (out->crl == NULL && rc->ssl != NULL && site->conf->nclient_paths > 0) {
        if (!have_norm) {
            /* Never let a path that escapes normalisation pass a rule unchecked: an origin
             * behind the proxy might resolve it to a protected prefix. */
            moat_log(MOAT_LVL_INFO, rc->id,
                     "400: a path that does not normalise on a site with client_path rules "
                     "(peer %s)",
                     rc->peer_text);
            return MOAT_ROUTE_BAD_PATH;
        }
        out->why = client_path_refusal(rc, site, norm, nlen);
        if (out->why != NULL) {
            return MOAT_ROUTE_FORBIDDEN;
        }
    }
    return MOAT_ROUTE_SERVE;
}
