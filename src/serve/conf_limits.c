/*
 * conf_limits.c: the settings inside timeouts { }, limits { } and tls { }. Each is one value
 * row that the loader (conf.c) reads and range-checks into its moat_conf field, so a new
 * setting is one row here, its default in moat_conf_new (conf.c) and its line in the table of
 * docs/config.md. The rows that open the blocks are in conf_global.c.
 */
#include "serve/conf_internal.h"

/*
 * `timeouts { NAME DURATION; ... }`: each a duration from 1ms to 1d, once in total even
 * across several timeouts blocks. See docs/config.md#timeouts---.
 *   head 10s       receiving a whole request head, however steadily it trickles
 *   idle 60s       a keep-alive connection waiting for its next request
 *   body 30s       a pause while receiving a request body (and the min_rate grace)
 *   write 30s      a pause while the client is not reading the answer (and min_rate grace)
 *   drain 10s      finishing in-flight requests on reload or stop
 *   handshake 10s  completing the TLS handshake
 */
#define TIMEOUT(nm, field)                                                                         \
    MOAT_CONF__VALUE(nm, MOAT_CONF__TIMEOUTS, MOAT_CONF__V_DURATION_MS, field, 1,                  \
                     MOAT_CONF__DAY_MS, "between 1ms and 1d", nm " DURATION")

/*
 * `limits { NAME VALUE; ... }`: see docs/config.md#limits---.
 *   request_line 8k          longest request line (else 414); at most header_bytes
 *   header_bytes 32k         largest request head, request line included (else 431)
 *   header_fields 100        most header fields per request (else 431)
 *   body 1m                  largest request body (else 413); 0 refuses any body
 *   connections 10000        open connections per worker
 *   keepalive_requests 10000 requests one connection may carry
 *   min_rate 1k              bytes per second a body or an answer must average; 0 is off
 *   file_cache 1000          open files each worker keeps for the static handler; 0 is off
 *   file_cache_valid 1s      how long a kept file is trusted before it is checked again
 *
 * `tls { NAME VALUE; ... }`: see docs/config.md#tls---.
 *   tickets on               TLS session tickets
 *   ticket_rotate 1h         how often the ticket key changes (whole seconds, 1m to 7d)
 *   session_cache 20480      entries in the server-side session cache; 0 is off
 */
const struct moat_conf__spec moat_conf__limits_specs[] = {
    TIMEOUT("head", head_timeout_ms),
    TIMEOUT("idle", idle_timeout_ms),
    TIMEOUT("body", body_timeout_ms),
    TIMEOUT("write", write_timeout_ms),
    TIMEOUT("drain", drain_timeout_ms),
    TIMEOUT("handshake", handshake_timeout_ms),

    MOAT_CONF__VALUE("request_line", MOAT_CONF__LIMITS, MOAT_CONF__V_SIZE, max_line_bytes, 256,
                     MOAT_CONF__MIB, "between 256 and 1m", "request_line SIZE"),
    MOAT_CONF__VALUE("header_bytes", MOAT_CONF__LIMITS, MOAT_CONF__V_SIZE, max_head_bytes, 1024,
                     MOAT_CONF__MIB, "between 1k and 1m", "header_bytes SIZE"),
    MOAT_CONF__VALUE("header_fields", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, max_fields, 1,
                     MOAT_CONF_MAX_FIELDS, "between 1 and 256", "header_fields N"),
    MOAT_CONF__VALUE("body", MOAT_CONF__LIMITS, MOAT_CONF__V_SIZE, max_body_bytes, 0,
                     1024 * 1024 * MOAT_CONF__MIB, "between 0 and 1024g", "body SIZE"),
    MOAT_CONF__VALUE("connections", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, max_conns, 1, 1000000,
                     "between 1 and 1000000", "connections N"),
    MOAT_CONF__VALUE("keepalive_requests", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, max_requests, 1,
                     1000000000, "between 1 and 1000000000", "keepalive_requests N"),
    MOAT_CONF__VALUE("min_rate", MOAT_CONF__LIMITS, MOAT_CONF__V_SIZE, min_rate, 0,
                     1024 * MOAT_CONF__MIB, "between 0 (off) and 1g", "min_rate SIZE"),
    MOAT_CONF__VALUE("file_cache", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, file_cache, 0, 100000,
                     "between 0 (off) and 100000", "file_cache N"),
    MOAT_CONF__VALUE("file_cache_valid", MOAT_CONF__LIMITS, MOAT_CONF__V_DURATION_MS,
                     file_cache_valid_ms, 0, 60000, "between 0 (check every time) and 1m",
                     "file_cache_valid DURATION"),

    MOAT_CONF__VALUE("tickets", MOAT_CONF__TLS, MOAT_CONF__V_BOOL, tickets, 0, 1, "on or off",
                     "tickets on|off"),
    MOAT_CONF__VALUE("ktls", MOAT_CONF__TLS, MOAT_CONF__V_BOOL, ktls, 0, 1, "on or off",
                     "ktls on|off"),
    MOAT_CONF__VALUE("ticket_rotate", MOAT_CONF__TLS, MOAT_CONF__V_DURATION_S, ticket_rotate_s, 60,
                     7 * 86400, "between 1m and 7d", "ticket_rotate DURATION"),
    MOAT_CONF__VALUE("session_cache", MOAT_CONF__TLS, MOAT_CONF__V_COUNT, session_cache, 0,
                     10000000, "between 0 and 10000000", "session_cache N"),
};

const size_t moat_conf__limits_nspecs =
    sizeof(moat_conf__limits_specs) / sizeof(moat_conf__limits_specs[0]);

/* The request line is part of the head, so a line limit above the head limit could never be
 * reached. Reported at request_line, or at header_bytes when only that one was written. */
moat_rc moat_conf__limits_check_conf(struct moat_conf__loader *L)
{
    const struct moat_conf *c = L->c;
    if (c->max_line_bytes <= c->max_head_bytes) {
        return MOAT_RC_OK;
    }
    size_t k = 0;
    if (moat_conf__spec_find(MOAT_CONF__LIMITS, "request_line", &k) == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    struct moat_conf__pos p = L->seen[k];
    if (p.line == 0) {
        if (moat_conf__spec_find(MOAT_CONF__LIMITS, "header_bytes", &k) == NULL) {
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        p = L->seen[k];
    }
    return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                         "request_line (%llu) is larger than header_bytes (%llu); the "
                         "request line is part of the head (raise header_bytes)",
                         (unsigned long long)c->max_line_bytes,
                         (unsigned long long)c->max_head_bytes);
}
