/*
 * conf_http2.c: the HTTP/2 directives: `http2` at the top level (all listeners, or some) and in
 * a site, and its settings inside limits { }. HTTP/2 shares HTTP/1's limits (header_bytes,
 * header_fields, body, keepalive_requests) and timeouts; what is its own is here.
 * See docs/config.md#http2-onoff-address.
 */
#include "serve/conf_internal.h"

#include <stdlib.h>
#include <string.h>

/*
 * `http2 on|off [ADDRESS...]`: ALPN offers h2 (preferred), http/1.1 and http/1.0 on every TLS
 * listener; off offers only HTTP/1. With addresses, off applies to those listen addresses only
 * (each must be a `listen` address, checked at the end of the file). Default on.
 */
static moat_rc h_http2(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    int on;
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_ok(moat_cfg_bool(w->s, &on))) {
        return moat_conf__fail_at_word(L, w, "bad value \"%.64s\" for \"http2\" (use on or off)",
                                       w->s);
    }
    if (n->nwords == 2) {
        L->c->http2 = on;
        return MOAT_RC_OK;
    }
    if (on) {
        return moat_conf__fail_at_word(L, &n->words[2],
                                       "\"http2 on\" takes no addresses: HTTP/2 is on for every "
                                       "listener unless turned off (write \"http2 off "
                                       "ADDRESS...\" for the listeners that offer only HTTP/1)");
    }
    for (size_t i = 2; i < n->nwords; i++) {
        char *s = strdup(n->words[i].s);
        if (s == NULL ||
            !moat_conf__push_pos(&L->http2_pos, L->c->nhttp2_off_listen,
                                 (struct moat_conf__pos){n->words[i].line, n->words[i].col}) ||
            !moat_conf__push_str(&L->c->http2_off_listen, &L->c->nhttp2_off_listen, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* `http2 on|off` in a site: whether the site's certificate offers h2 in ALPN (and whether a
 * request for it is served over an HTTP/2 connection at all: else 421). Default: the top
 * level's. */
static moat_rc h_site_http2(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                            const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_ok(moat_cfg_bool(w->s, &L->site->http2))) {
        return moat_conf__fail_at_word(L, w, "bad value \"%.64s\" for \"http2\" (use on or off)",
                                       w->s);
    }
    return MOAT_RC_OK;
}

#define LIMIT(nm, kind, field, lo, hi, range, use)                                                 \
    MOAT_CONF__VALUE(nm, MOAT_CONF__LIMITS, kind, field, lo, hi, range, use)

/*
 * In limits { } (see docs/config.md#limits---):
 *   h2_streams 100   streams one HTTP/2 connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS)
 *   h2_hpack 4k      the HPACK table the client may make us keep (SETTINGS_HEADER_TABLE_SIZE)
 *   h2_window 256k   what a stream may send ahead of the handler (SETTINGS_INITIAL_WINDOW_SIZE)
 *   h2_frames 1000   SETTINGS, PING, PRIORITY, empty DATA... a client may send per second
 *   h2_resets 100    streams a client may cancel per second (rapid reset, CVE-2023-44487)
 */
const struct moat_conf__spec moat_conf__http2_specs[] = {
    MOAT_CONF__CUSTOM("http2", MOAT_CONF__TOP, 1, -1, 1, h_http2, "http2 on|off [ADDRESS...]"),
    MOAT_CONF__CUSTOM("http2", MOAT_CONF__SITE, 1, 1, 0, h_site_http2, "http2 on|off"),
    LIMIT("h2_streams", MOAT_CONF__V_COUNT, h2_streams, 1, 10000, "between 1 and 10000",
          "h2_streams N"),
    LIMIT("h2_hpack", MOAT_CONF__V_SIZE, h2_hpack, 0, 65536, "between 0 and 64k", "h2_hpack SIZE"),
    LIMIT("h2_window", MOAT_CONF__V_SIZE, h2_window, 16384, 1024 * MOAT_CONF__MIB,
          "between 16k and 1g", "h2_window SIZE"),
    LIMIT("h2_frames", MOAT_CONF__V_COUNT, h2_frames, 10, 1000000, "between 10 and 1000000",
          "h2_frames N"),
    LIMIT("h2_resets", MOAT_CONF__V_COUNT, h2_resets, 1, 1000000, "between 1 and 1000000",
          "h2_resets N"),
};

const size_t moat_conf__http2_nspecs =
    sizeof(moat_conf__http2_specs) / sizeof(moat_conf__http2_specs[0]);

/* `http2 off ADDRESS` must name a listener: a typo would silently leave h2 on. */
moat_rc moat_conf__http2_check_conf(struct moat_conf__loader *L)
{
    const struct moat_conf *c = L->c;
    for (size_t i = 0; i < c->nhttp2_off_listen; i++) {
        size_t j = 0;
        while (j < c->nlisten && strcmp(c->listen[j], c->http2_off_listen[i]) != 0) {
            j++;
        }
        if (j == c->nlisten) {
            return moat_cfg_fail(L->err, L->doc, L->http2_pos[i].line, L->http2_pos[i].col,
                                 "\"http2 off %s\" names no listener (write it as one of the "
                                 "listen addresses, exactly as given there)",
                                 c->http2_off_listen[i]);
        }
    }
    return MOAT_RC_OK;
}
