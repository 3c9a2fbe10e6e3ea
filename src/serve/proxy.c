/*
 * proxy.c: the reverse proxy handler (see proxy.h).
 *
 *   PICK -> CONNECT (or a pooled connection) -> SEND (head, then the client's body piece by
 *   piece) -> RECV_HEAD -> RELAY -> the connection back to the pool, or closed
 *
 * with a failure before the answer's first byte going back to PICK when the request may be
 * tried again (proxy.h). Flow control is by construction: the server is read only when the
 * exchange has room for the answer (moat_exch_room), and the client's body only when the
 * server has taken what was read before, so a slow side never makes moat buffer more than a
 * piece of the other. The client side is the exchange (http/exchange.h): the handler never
 * sees the client's connection or its protocol.
 */
#include "serve/proxy.h"
#include "serve/metrics.h"

#include "core/log.h"
#include "core/proxyproto.h"
#include "core/sock.h"
#include "http1/client.h"
#include "http1/write.h"
#include "tls/clientauth.h"
#include "tls/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIECE 16384 /* one TLS record of body at a time, either way */
#define RESP_HEAD_LIMIT (64 * 1024)
/* A queued request is woken when a place comes free; it also looks this often for places
 * that open without one (a server coming back in). */
#define QUEUE_LOOK_MS 100
#define KEY_MAX 256 /* bytes of a hash key kept for retries (longer keys hash their prefix) */

enum px_state {
    PX_CONNECT = 0,
    PX_SEND,
    PX_RECV_HEAD,
    PX_RELAY,
    PX_TUNNEL, /* after a 101: bytes both ways until one side ends */
};

struct px {
    struct moat_timer timer;          /* the server's: connect, each write, first byte, each read */
    struct moat_proxy_spares *spares; /* borrowed: the worker's, where it goes when spent */
    struct px *next_spare;
    struct moat_loop *loop;               /* borrowed: the worker's */
    struct moat_up_pool *pool;            /* borrowed: the worker's */
    struct moat_exch *ex;                 /* the client's side; NULL once let go */
    const struct moat_proxy_route *route; /* borrowed from the snapshot */
    struct moat_up_group *group;          /* one reference: outlives a reload mid-request */
    struct moat_up_conn *uc;              /* the connection of this try; NULL between tries */
    size_t server;                        /* of this try */
    int picked;                           /* server counts this request in flight */
    struct moat_buf head;                 /* owned: the request head for the server, without Host */
    struct moat_buf lines;                /* owned: the answer's fields, for the client */
    char host[300];                       /* the Host to send, when not the server's */
    char key[KEY_MAX];                    /* what a hashing balance hashes */
    size_t keylen;
    char client_ip[64];
    struct moat_endpoints ends; /* for a PROXY header to the server */
    int have_ends;
    char last_why[300]; /* the last try's failure, for the answer when no other try is left */
    int last_status;
    uint64_t tried[MOAT_UP_MAX_SERVERS / 64];
    unsigned tries;
    uint64_t started_ms;
    uint64_t try_ms;            /* when this try's server was picked, for its latency */
    struct moat_metrics *mx;    /* borrowed: the worker's */
    unsigned long long conn_id; /* for log lines */
    enum px_state st;
    enum moat_h1_frame frame;
    uint64_t length;      /* of a Content-Length body */
    uint32_t events;      /* readiness seen on the server socket */
    int body_pending;     /* the client's body is still to be forwarded */
    int body_started;     /* some of it was read from the client: no other try can have it */
    int head_req;         /* the request is HEAD */
    int idempotent;       /* RFC 9110 §9.2.2 */
    int upgrade;          /* a WebSocket handshake goes to the server */
    int h2_connect;       /* ... made by moat from an extended CONNECT (RFC 8441) */
    char ws_accept[32];   /* then the Sec-WebSocket-Accept the server must answer */
    int up_eof, down_eof; /* the tunnel's server / client side ended */
    int kick;             /* the timer is a nudge to start a pooled connection, not a timeout */
    int waiting;          /* the timer is the next look for a free server (queue) */
    struct moat_up_waiter waiter; /* linked while queued for a place below max_conns */
    uint64_t queued_at;
    int dead; /* freed at the end of this loop iteration */
};

void moat_proxy_route_clear(struct moat_proxy_route *r)
{
    moat_up_group_unref(r->group);
    r->group = NULL;
}

/* ---- the request to the server --------------------------------------------------------- */

static int name_is(moat_slice n, const char *lit)
{
    return moat_slice_eq_lit_nocase(n, lit);
}

/* RFC 9110 §7.6.1: fields for this hop only, plus the ones moat sets itself. */
static int dropped_field(moat_slice n, const char *prefix, const moat_slice *conn_tokens,
                         size_t ntokens)
{
    static const char *const drop[] = {"connection",
                                       "keep-alive",
                                       "proxy-connection",
                                       "te",
                                       "trailer",
                                       "transfer-encoding",
                                       "upgrade",
                                       "host",
                                       "content-length",
                                       "expect",
                                       "x-forwarded-for",
                                       "x-forwarded-proto",
                                       "x-forwarded-host",
                                       "forwarded",
                                       "proxy-authorization"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (name_is(n, drop[i])) {
            return 1;
        }
    }
    size_t pl = strlen(prefix);
    if (n.len >= pl && strncasecmp(n.p, prefix, pl) == 0) {
        return 1; /* an identity header from the client is a forgery */
    }
    for (size_t i = 0; i < ntokens; i++) {
        if (moat_slice_eq_nocase(n, conn_tokens[i])) {
            return 1;
        }
    }
    return 0;
}

/* Tokens of the Connection fields (names of more hop-by-hop fields). */
static size_t connection_tokens(const struct moat_field *fields, size_t nfields, moat_slice *out,
                                size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < nfields; i++) {
        if (!name_is(fields[i].name, "connection")) {
            continue;
        }
        const char *p = fields[i].value.p, *e = p + fields[i].value.len;
        while (p < e && n < max) {
            while (p < e && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }
            const char *s = p;
            while (p < e && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }
            if (p > s) {
                out[n++] = moat_slice_of(s, (size_t)(p - s));
            }
        }
    }
    return n;
}

/* A header value made from certificate text: no CR, LF or other control bytes. */
static moat_rc put_value(struct moat_buf *b, const char *name_prefix, const char *name,
                         const char *v)
{
    MOAT_TRY(moat_buf_printf(b, "%s%s: ", name_prefix, name));
    for (const char *p = v; *p; p++) {
        char ch = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
        MOAT_TRY(moat_buf_append(b, &ch, 1));
    }
    return moat_buf_append(b, "\r\n", 2);
}

static int hop_by_hop_response(moat_slice n)
{
    static const char *const drop[] = {
        "connection", "keep-alive",        "proxy-connection", "te",
        "trailer",    "transfer-encoding", "upgrade",          "date",
        "server",     "content-length"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (name_is(n, drop[i])) {
            return 1;
        }
    }
    return 0;
}

static moat_rc identity_fields(void *tls, struct moat_buf *b, const char *prefix)
{
    struct moat_tls_identity id;
    moat_tls_identity_of(tls, &id);
    if (!id.present) {
        return put_value(b, prefix, "Verify", "NONE");
    }
    if (!id.verified) {
        char why[400];
        char v[420];
        snprintf(v, sizeof(v), "FAILED:%s", moat_tls_identity_refusal(&id, 1, why, sizeof(why)));
        return put_value(b, prefix, "Verify", v);
    }
    MOAT_TRY(put_value(b, prefix, "Verify", "SUCCESS"));
    MOAT_TRY(put_value(b, prefix, "Subject", id.subject));
    MOAT_TRY(put_value(b, prefix, "Issuer", id.issuer));
    MOAT_TRY(put_value(b, prefix, "Serial", id.serial));
    MOAT_TRY(put_value(b, prefix, "Fingerprint", id.fingerprint));
    if (id.sans[0] != '\0') {
        MOAT_TRY(put_value(b, prefix, "SAN", id.sans));
    }
    return MOAT_RC_OK;
}

/* A path byte that may go as it is (RFC 3986 pchar and '/'); others are percent-encoded. */
static int path_byte_ok(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~!$&'()*+,;=:@/", ch) != NULL;
}

static moat_rc put_path(struct moat_buf *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch != 0 && path_byte_ok(ch)) {
            MOAT_TRY(moat_buf_append(b, p + i, 1));
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            MOAT_TRY(moat_buf_append(b, e, 3));
        }
    }
    return MOAT_RC_OK;
}

/* The request line: the target as sent, or the rule's rewritten normalised path. */
static moat_rc request_line(struct moat_buf *b, const struct moat_proxy_route *rt,
                            const struct moat_req *r, int h2_connect)
{
    if (h2_connect && !rt->rewriting) {
        /* RFC 8441 §5: the extended CONNECT's :path is the WebSocket's request target. */
        MOAT_TRY(moat_buf_append(b, "GET ", 4));
        MOAT_TRY(moat_buf_append(b, r->path.p, r->path.len));
        if (r->query.len > 0) {
            MOAT_TRY(moat_buf_append(b, "?", 1));
            MOAT_TRY(moat_buf_append(b, r->query.p, r->query.len));
        }
        return moat_buf_append(b, " HTTP/1.1\r\n", 11);
    }
    if (!rt->rewriting) {
        if (r->target.len > 0 && r->target.p[0] == '/') {
            return moat_h1_head_request(b, r->method, r->target, MOAT_SLICE_NULL);
        }
        return moat_h1_head_request(b, r->method, r->path, r->query); /* origin-form */
    }
    /* npath is under the prefix (the router checked): swap the prefix. */
    moat_slice rest = moat_slice_of(r->npath.p + rt->plen, r->npath.len - rt->plen);
    if (h2_connect) {
        MOAT_TRY(moat_buf_append(b, "GET", 3));
    } else {
        MOAT_TRY(moat_buf_append(b, r->method.p, r->method.len));
    }
    MOAT_TRY(moat_buf_append(b, " ", 1));
    size_t before = moat_buf_len(b);
    MOAT_TRY(moat_buf_append(b, rt->rewrite, strlen(rt->rewrite)));
    MOAT_TRY(put_path(b, rest.p, rest.len));
    if (moat_buf_len(b) == before) {
        MOAT_TRY(moat_buf_append(b, "/", 1));
    }
    if (r->query.len > 0) {
        MOAT_TRY(moat_buf_append(b, "?", 1));
        MOAT_TRY(moat_buf_append(b, r->query.p, r->query.len));
    }
    return moat_buf_append(b, " HTTP/1.1\r\n", 11);
}

/* The values of every field called `lc` joined by ", " (RFC 9110 §5.3), into b. */
static moat_rc joined(struct moat_buf *b, const struct moat_req *r, const char *lc, int *any)
{
    *any = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        if (!moat_slice_eq_lit_nocase(r->fields[i].name, lc)) {
            continue;
        }
        if (*any) {
            MOAT_TRY(moat_buf_append(b, ", ", 2));
        }
        MOAT_TRY(moat_buf_append(b, r->fields[i].value.p, r->fields[i].value.len));
        *any = 1;
    }
    return MOAT_RC_OK;
}

/* A Forwarded parameter value: a token as it is, anything else quoted (RFC 7239 §4). */
static moat_rc fwd_value(struct moat_buf *b, const char *p, size_t n, int force_quote)
{
    int token = !force_quote && n > 0;
    for (size_t i = 0; token && i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        token = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                strchr("!#$%&'*+-.^_`|~", ch) != NULL;
    }
    if (token) {
        return moat_buf_append(b, p, n);
    }
    MOAT_TRY(moat_buf_append(b, "\"", 1));
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') {
            MOAT_TRY(moat_buf_append(b, "\\", 1));
        }
        MOAT_TRY(moat_buf_append(b, p + i, 1));
    }
    return moat_buf_append(b, "\"", 1);
}

/* X-Forwarded-For/-Proto/-Host and Forwarded: a trusted client's values are kept (and the
 * hop appended to the lists), everyone else's were dropped with the other fields. */
static moat_rc forwarded_fields(struct moat_buf *b, const struct moat_req *r, int trusted,
                                const char *ip)
{
    int any = 0;
    const char *proto = r->secure ? "https" : "http";
    MOAT_TRY(moat_buf_append(b, "X-Forwarded-For: ", 17));
    if (trusted) {
        MOAT_TRY(joined(b, r, "x-forwarded-for", &any));
    }
    MOAT_TRY(moat_buf_printf(b, "%s%s\r\n", any ? ", " : "", ip));
    moat_slice v = trusted ? moat_req_field(r, "x-forwarded-proto") : MOAT_SLICE_NULL;
    if (v.p == NULL) {
        v = moat_slice_cstr(proto);
    }
    MOAT_TRY(moat_buf_printf(b, "X-Forwarded-Proto: %.*s\r\n", MOAT_SLICE_FMT(v)));
    v = trusted ? moat_req_field(r, "x-forwarded-host") : MOAT_SLICE_NULL;
    MOAT_TRY(
        moat_buf_printf(b, "X-Forwarded-Host: %.*s\r\n", MOAT_SLICE_FMT(v.p ? v : r->authority)));
    MOAT_TRY(moat_buf_append(b, "Forwarded: ", 11));
    if (trusted) {
        MOAT_TRY(joined(b, r, "forwarded", &any));
        if (any) {
            MOAT_TRY(moat_buf_append(b, ", ", 2));
        }
    }
    MOAT_TRY(moat_buf_append(b, "for=", 4));
    if (strchr(ip, ':') != NULL) {
        char v6[80];
        int n = snprintf(v6, sizeof(v6), "[%s]", ip);
        MOAT_TRY(fwd_value(b, v6, (size_t)n, 1));
    } else {
        MOAT_TRY(fwd_value(b, ip, strlen(ip), 0));
    }
    MOAT_TRY(moat_buf_printf(b, ";proto=%s", proto));
    if (r->authority.len > 0) {
        MOAT_TRY(moat_buf_append(b, ";host=", 6));
        MOAT_TRY(fwd_value(b, r->authority.p, r->authority.len, 0));
    }
    return moat_buf_append(b, "\r\n", 2);
}

/*
 * A WebSocket handshake made for an HTTP/2 client (which sends no key: RFC 8441 §5): a fresh
 * Sec-WebSocket-Key, and the Sec-WebSocket-Accept the server must answer with (RFC 6455
 * §4.2.2: base64 of SHA-1 of the key and the protocol's GUID).
 */
static moat_rc ws_key(struct px *px, struct moat_buf *b)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char raw[16], sum[SHA_DIGEST_LENGTH];
    char key[32], both[32 + sizeof(guid)];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return moat_rc_of(MOAT_E_TLS);
    }
    int kl = EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    int bl = snprintf(both, sizeof(both), "%.*s%s", kl, key, guid);
    if (kl <= 0 || bl <= 0 || !EVP_Digest(both, (size_t)bl, sum, NULL, EVP_sha1(), NULL)) {
        return moat_rc_of(MOAT_E_TLS);
    }
    EVP_EncodeBlock((unsigned char *)px->ws_accept, sum, sizeof(sum));
    return moat_buf_printf(b, "Sec-WebSocket-Key: %.*s\r\n", kl, key);
}

/* The request head for every try, without Host (it may name the server picked). */
static moat_rc build_head(struct px *px, const struct moat_proxy_call *call,
                          const struct moat_req *r)
{
    const struct moat_proxy_route *rt = call->route;
    struct moat_buf *b = &px->head;
    MOAT_TRY(request_line(b, rt, r, px->h2_connect));
    moat_slice tokens[16];
    size_t ntokens = connection_tokens(r->fields, r->nfields, tokens, 16);
    for (size_t i = 0; i < r->nfields; i++) {
        const struct moat_field *f = &r->fields[i];
        if (dropped_field(f->name, rt->id_prefix, tokens, ntokens) ||
            (call->req_rules != NULL && moat_hdr_set_drops(call->req_rules, f->name))) {
            continue;
        }
        MOAT_TRY(moat_h1_head_field(b, f->name, f->value));
    }
    if (call->req_rules != NULL && call->req_rules->proxied_len > 0) {
        MOAT_TRY(moat_buf_append(b, call->req_rules->proxied, call->req_rules->proxied_len));
    }
    if (px->upgrade) {
        /* The handshake's own fields; the client's Sec-WebSocket-* went with the others. */
        MOAT_TRY(moat_buf_append(b, "Connection: upgrade\r\nUpgrade: websocket\r\n", 41));
        if (px->h2_connect) {
            MOAT_TRY(ws_key(px, b));
        }
    }
    int trusted = moat_cidr_match_text(call->trusted, call->ntrusted, r->peer);
    MOAT_TRY(forwarded_fields(b, r, trusted, px->client_ip));
    if (r->secure && rt->identity) {
        MOAT_TRY(identity_fields(r->tls, b, rt->id_prefix));
    }
    px->frame = !r->has_body || px->upgrade ? MOAT_H1_FRAME_NONE
                : r->body_length < 0        ? MOAT_H1_FRAME_CHUNKED
                                            : MOAT_H1_FRAME_LENGTH;
    px->length = r->body_length < 0 ? 0 : (uint64_t)r->body_length;
    return MOAT_RC_OK;
}

/* What a hashing balance looks at, copied: a retry picks after the request's slices died. */
static void take_key(struct px *px, const struct moat_req *r)
{
    const struct moat_up_group *g = px->group;
    moat_slice v = MOAT_SLICE_NULL;
    if (g->p.balance == MOAT_UP_HASH_HEADER) {
        for (size_t i = 0; i < r->nfields && v.p == NULL; i++) {
            if (moat_slice_eq_lit_nocase(r->fields[i].name, g->p.hash_key)) {
                v = r->fields[i].value;
            }
        }
    } else if (g->p.balance == MOAT_UP_HASH_COOKIE) {
        size_t kl = strlen(g->p.hash_key);
        for (size_t i = 0; i < r->nfields && v.p == NULL; i++) {
            if (!moat_slice_eq_lit_nocase(r->fields[i].name, "cookie")) {
                continue;
            }
            /* cookie-string: name=value pairs split by "; " (RFC 6265 §4.2.1) */
            const char *p = r->fields[i].value.p, *e = p + r->fields[i].value.len;
            while (p < e && v.p == NULL) {
                while (p < e && (*p == ' ' || *p == ';')) {
                    p++;
                }
                const char *ne = p;
                while (ne < e && *ne != ';') {
                    ne++;
                }
                if ((size_t)(ne - p) > kl && memcmp(p, g->p.hash_key, kl) == 0 && p[kl] == '=') {
                    v = moat_slice_of(p + kl + 1, (size_t)(ne - p) - kl - 1);
                }
                p = ne;
            }
        }
    }
    px->keylen = v.len < KEY_MAX ? v.len : KEY_MAX;
    if (px->keylen > 0) {
        memcpy(px->key, v.p, px->keylen);
    }
}

/*
 * Trailer fields worth forwarding, as lines into `out`: RFC 9110 §6.5.1 lets a proxy pass them
 * on, but not the ones that are this hop's (connection, framing) or that a trailer may not
 * carry (Host, Content-Length, authentication, routing); from the client (`prefix` set) also
 * not the forwarding and identity fields moat sets itself, which would be forgeries.
 */
static moat_rc pass_trailers(const struct moat_buf *in, struct moat_buf *out, const char *prefix)
{
    static const char *const never[] = {"content-encoding", "content-range",   "content-type",
                                        "authorization",    "set-cookie",      "cookie",
                                        "cache-control",    "expires",         "max-forwards",
                                        "location",         "www-authenticate"};
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(in, &at, &line, &name)) {
        int drop = name.len == 0 || hop_by_hop_response(name) ||
                   (prefix != NULL && dropped_field(name, prefix, NULL, 0));
        for (size_t i = 0; !drop && i < sizeof(never) / sizeof(never[0]); i++) {
            drop = name_is(name, never[i]);
        }
        if (!drop) {
            MOAT_TRY(moat_buf_append(out, line.p, line.len));
        }
    }
    return MOAT_RC_OK;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static const struct moat_stream_ops px_ops;
static void on_server(struct moat_watch *w, uint32_t events);

/* The try is over: its connection back to the pool (reusable) or closed, its count given back. */
static void end_try(struct px *px, int reusable)
{
    if (px->uc != NULL) {
        if (reusable && !(px->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
            moat_up_conn_release(px->uc, 1);
        } else {
            moat_up_conn_close(px->uc);
        }
        px->uc = NULL;
    }
    if (px->picked) {
        px->picked = 0;
        moat_up_pool_done(px->pool, px->group, px->server); /* may wake a queued request */
    }
    moat_timer_disarm(&px->loop->timers, &px->timer);
    px->kick = 0;
}

static void leave_queue(struct px *px)
{
    moat_up_unwait(px->pool, &px->waiter);
    px->waiting = 0;
}

#define SPARES_MAX 256            /* per worker; beyond, spent ones are freed */
#define SPARE_BUF_MAX (16 * 1024) /* a buffer grown past this is not kept */

static void keep_buf(struct moat_buf *b)
{
    if (b->cap > SPARE_BUF_MAX) {
        moat_buf_clear(b);
    }
    b->rd = b->wr = 0;
}

static void px_spare(void *p)
{
    struct px *px = p;
    struct moat_proxy_spares *sp = px->spares;
    if (sp == NULL || sp->n >= SPARES_MAX) {
        moat_buf_clear(&px->head);
        moat_buf_clear(&px->lines);
        free(px);
        return;
    }
    keep_buf(&px->head);
    keep_buf(&px->lines);
    px->next_spare = sp->head;
    sp->head = px;
    sp->n++;
}

void moat_proxy_spares_clear(struct moat_proxy_spares *sp)
{
    while (sp->head != NULL) {
        struct px *px = sp->head;
        sp->head = px->next_spare;
        moat_buf_clear(&px->head);
        moat_buf_clear(&px->lines);
        free(px);
    }
    sp->n = 0;
}

/* A zeroed exchange, with a spare's buffers when one is kept. */
static struct px *px_new(struct moat_proxy_spares *sp)
{
    struct px *px = sp != NULL ? sp->head : NULL;
    if (px == NULL) {
        px = calloc(1, sizeof(*px));
        if (px != NULL) {
            moat_buf_init(&px->head, RESP_HEAD_LIMIT);
            moat_buf_init(&px->lines, RESP_HEAD_LIMIT);
        }
    } else {
        sp->head = px->next_spare;
        sp->n--;
        struct moat_buf head = px->head, lines = px->lines;
        memset(px, 0, sizeof(*px));
        px->head = head;
        px->lines = lines;
    }
    if (px != NULL) {
        px->spares = sp;
    }
    return px;
}

static void px_free(struct px *px)
{
    if (px->dead) {
        return;
    }
    px->dead = 1;
    leave_queue(px);
    px->ex = NULL;
    end_try(px, 0);
    moat_up_group_unref(px->group);
    px->group = NULL;
    /* A timer or socket event for it may still wait in this iteration: spare it later. */
    moat_loop_defer(px->loop, px_spare, px);
}

static const char *server_name(const struct px *px)
{
    return px->group->servers[px->server].name;
}

static void log_server(const struct px *px, const char *what)
{
    if (px->group->name[0] == '\0') {
        moat_log(MOAT_LVL_INFO, px->conn_id, "proxy to %s: %s", server_name(px), what);
    } else {
        moat_log(MOAT_LVL_INFO, px->conn_id, "proxy to %s (upstream %s): %s", server_name(px),
                 px->group->name, what);
    }
}

/* The server's counters; a spare block when the caller keeps none (a proxy call without a
 * worker's metrics, e.g. in unit tests), so counting never needs a check. */
static struct moat_mx_up *mx_up(const struct px *px)
{
    static _Thread_local struct moat_mx_up none;
    if (px->mx == NULL) {
        return &none;
    }
    unsigned slot = px->group->servers[px->server].mx_slot;
    return &px->mx->ups[slot < MOAT_MX_UPS ? slot : MOAT_MX_UPS - 1];
}

/* The server failed this try (passive health, and the metrics' failed tries). */
static void blame(struct px *px, const char *why)
{
    moat_up_report(px->group, px->server, 0, why, px->loop->now_ms, px->conn_id);
    moat_mx_add(&mx_up(px)->failed, 1);
}

/* The server's answer head came (an ordinary answer or a switch to WebSocket). */
static void answered(struct px *px, int status)
{
    int bad = status == 502 || status == 503 || status == 504;
    moat_up_report(px->group, px->server, !bad, bad ? "answered 502, 503 or 504" : NULL,
                   px->loop->now_ms, px->conn_id);
    if (px->mx != NULL) {
        moat_metrics_upstream(px->mx, px->group->servers[px->server].mx_slot, status,
                              px->loop->now_ms - px->try_ms);
    }
}

/* An error answer of moat's own, with Retry-After when given: the exchange is still ours
 * (nothing of an answer went to the client), so it is a whole answer, not a cut. */
static void answer_error(struct px *px, int status, unsigned retry_after)
{
    struct moat_exch *ex = px->ex;
    struct moat_res res;
    struct moat_buf body;
    moat_buf_init(&body, 4096);
    px->lines.rd = px->lines.wr = 0;
    int ok = moat_ok(moat_res_error_page(&res, status, &px->lines, &body)) &&
             (retry_after == 0 ||
              moat_ok(moat_buf_printf(&px->lines, "Retry-After: %u\r\n", retry_after)));
    struct moat_buf lines = px->lines;          /* outlives px for the calls below */
    moat_buf_init(&px->lines, RESP_HEAD_LIMIT); /* the spare gets a fresh one */
    px_free(px);
    if (!ok || !moat_ok(moat_exch_start(ex, status, &lines, (int64_t)moat_buf_len(&body), 0)) ||
        !moat_ok(moat_exch_send(ex, body.base + body.rd, moat_buf_len(&body)))) {
        moat_buf_clear(&lines);
        moat_buf_clear(&body);
        return; /* start or send failing ended the exchange */
    }
    moat_exch_finish(ex);
    moat_buf_clear(&lines);
    moat_buf_clear(&body);
}

/* Give up: before the client saw anything of the answer an error page, after it the close. */
static void px_fail(struct px *px, int status, const char *what)
{
    log_server(px, what);
    struct moat_exch *ex = px->ex;
    px_free(px);
    moat_exch_fail(ex, status);
}

static void px_try(struct px *px);

/*
 * This try failed before the answer's first byte. `sent_nothing`: the request never left
 * (connect or TLS failed), so any method may go again. `blame`: the server's fault (counts
 * toward taking it out), not a pooled connection the server had closed.
 */
/* A server that is in and that this request has not failed on yet. */
static int another_server(const struct px *px)
{
    for (size_t i = 0; i < px->group->n; i++) {
        if (!((px->tried[i / 64] >> (i % 64)) & 1) &&
            moat_up_server_in(px->group, i, px->loop->now_ms)) {
            return 1;
        }
    }
    return 0;
}

static void try_failed(struct px *px, int status, const char *why, int sent_nothing, int blame_it)
{
    const struct moat_up_group *g = px->group;
    int reused = px->uc != NULL && px->uc->requests > 0;
    snprintf(px->last_why, sizeof(px->last_why), "%s", why);
    px->last_status = status;
    if (blame_it && !reused) {
        blame(px, why);
        px->tried[px->server / 64] |= 1ULL << (px->server % 64);
    }
    uint64_t elapsed = px->loop->now_ms - px->started_ms;
    int again = (px->idempotent || sent_nothing) && !px->body_started &&
                px->tries <= g->p.retries &&
                (g->p.retry_timeout_ms == 0 || elapsed < g->p.retry_timeout_ms) &&
                (!blame_it || reused || another_server(px));
    if (!again) {
        px_fail(px, status, why);
        return;
    }
    log_server(px, why);
    moat_log(MOAT_LVL_INFO, px->conn_id, "proxy: trying the request again (try %u of %llu)",
             px->tries + 1, (unsigned long long)g->p.retries + 1);
    end_try(px, 0);
    px->st = PX_CONNECT;
    px_try(px);
}

static void arm(struct px *px, uint64_t ms)
{
    uint64_t due = px->loop->now_ms + ms;
    const struct moat_up_group *g = px->group;
    if (g->p.total_ms != 0 && px->started_ms + g->p.total_ms < due) {
        due = px->started_ms + g->p.total_ms;
    }
    if (!moat_ok(moat_timer_arm(&px->loop->timers, &px->timer, due))) {
        px_fail(px, 503, "cannot arm the upstream's timer");
    }
}

/* The answer's head for the client: the origin's fields less its hop's. */
static moat_rc relay_lines(struct px *px, const struct moat_h1_resp *r, int head_req)
{
    struct moat_buf *o = &px->lines;
    o->rd = o->wr = 0;
    moat_slice tokens[16];
    size_t ntokens = connection_tokens(r->fields, r->nfields, tokens, 16);
    for (size_t i = 0; i < r->nfields; i++) {
        const struct moat_field *f = &r->fields[i];
        int named = 0;
        for (size_t k = 0; k < ntokens; k++) {
            named |= moat_slice_eq_nocase(f->name, tokens[k]);
        }
        if (named || hop_by_hop_response(f->name)) {
            continue; /* RFC 9110 §7.6.1: fields the origin's Connection names are its hop's */
        }
        MOAT_TRY(moat_h1_head_field(o, f->name, f->value));
    }
    if (head_req) {
        /* HEAD: the origin's length describes the GET answer; pass it on. */
        const struct moat_field *cl = moat_field_find(r->fields, r->nfields, "content-length");
        if (cl != NULL) {
            MOAT_TRY(moat_h1_head_field(o, MOAT_SLICE_LIT("Content-Length"), cl->value));
        }
    }
    return MOAT_RC_OK;
}

/* Words for a refused TLS handshake with the server. */
static const char *handshake_words(struct px *px, const struct moat_err *e, char *out,
                                   size_t outlen)
{
    SSL *ssl = moat_tls_transport_ssl(&px->uc->h1c.tr);
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        snprintf(out, outlen, "origin certificate refused: %s", X509_verify_cert_error_string(vr));
    } else {
        moat_err_str(e, out, outlen);
    }
    return out;
}

/* The head for this try: Host, then what build_head made, then the framing. */
static moat_rc queue_head(struct px *px)
{
    struct moat_h1c *c = &px->uc->h1c;
    struct moat_buf *b = moat_h1c_begin(c, px->head_req);
    if (b == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    const char *host =
        px->route->host_mode == 1 ? px->group->servers[px->server].authority : px->host;
    size_t line_end = 0;
    const char *h = px->head.base + px->head.rd;
    size_t hn = moat_buf_len(&px->head);
    while (line_end < hn && h[line_end] != '\n') {
        line_end++;
    }
    MOAT_TRY(moat_buf_append(b, h, line_end + 1)); /* the request line */
    MOAT_TRY(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), moat_slice_cstr(host)));
    MOAT_TRY(moat_buf_append(b, h + line_end + 1, hn - line_end - 1));
    return moat_h1c_head_end(c, px->frame, px->length, 1);
}

/* SEND: the head, then the client's body as it comes. 1: go on; 0: wait (or over). */
static int step_send(struct px *px)
{
    struct moat_err e = {0};
    char why[300];
    for (;;) {
        moat_rc rc = moat_h1c_flush(&px->uc->h1c, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            arm(px, px->group->p.write_ms);
            return 0;
        }
        if (!moat_ok(rc)) {
            /* The server went away while taking the request: nothing came back yet. */
            try_failed(px, 502, moat_err_str(&e, why, sizeof(why)), 0, 1);
            return 0;
        }
        if (!px->body_pending) {
            px->st = PX_RECV_HEAD;
            arm(px, px->group->p.first_byte_ms);
            return 1;
        }
        char piece[PIECE];
        size_t n = 0, room = moat_h1c_body_room(&px->uc->h1c);
        rc = moat_exch_read_body(px->ex, piece, room < sizeof(piece) ? room : sizeof(piece), &n);
        if (rc.kind == MOAT_E_AGAIN) {
            /* The server is not to blame while the client is slow: the session times it. */
            moat_timer_disarm(&px->loop->timers, &px->timer);
            return 0;
        }
        if (!moat_ok(rc)) {
            px->ex = NULL; /* the session answered (400, 413) or the client left */
            px_free(px);
            return 0;
        }
        px->body_started = 1;
        if (n > 0) {
            rc = moat_h1c_body(&px->uc->h1c, piece, n);
        } else {
            /* The end: the client's trailers go on, less what may not be forwarded. */
            px->lines.rd = px->lines.wr = 0;
            rc = pass_trailers(moat_exch_trailers(px->ex), &px->lines, px->route->id_prefix);
            if (moat_ok(rc)) {
                rc = moat_h1c_body_end_trailers(&px->uc->h1c, &px->lines);
            }
            px->body_pending = 0;
        }
        if (!moat_ok(rc)) {
            px_fail(px, 500, "out of memory");
            return 0;
        }
    }
}

static void start_tunnel(struct px *px, const struct moat_h1_resp *r);

static int step_recv_head(struct px *px)
{
    struct moat_err e = {0};
    char why[400];
    const struct moat_h1_resp *r = NULL;
    struct moat_h1c *c = &px->uc->h1c;
    moat_rc rc = moat_h1c_read_head(c, &r, &e);
    if (rc.kind == MOAT_E_AGAIN) {
        return 0;
    }
    if (!moat_ok(rc)) {
        const struct moat_h1c_fault *f = moat_h1c_fault(c);
        if (f->why == MOAT_H1C_WHY_NO_ANSWER) {
            /* Closed without a byte: on a pooled connection, the server's idle close racing
             * the request, no fault of the server's. */
            try_failed(px, 502, moat_err_str(&e, why, sizeof(why)), 0, 1);
        } else {
            blame(px, "a malformed answer");
            px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
        }
        return 0;
    }
    if (r->status == 101) {
        start_tunnel(px, r);
        return !px->dead;
    }
    answered(px, r->status);
    int64_t length = r->body == MOAT_H1_BODY_LENGTH ? (int64_t)r->content_length : -1;
    if (!moat_ok(relay_lines(px, r, px->head_req))) {
        px_fail(px, 502, "the origin's answer head is too large");
        return 0;
    }
    /* The body's first piece often came with the head: one write for both (MOAT_RES_MORE). */
    rc = moat_exch_start(px->ex, r->status, &px->lines, length, MOAT_RES_RELAYED | MOAT_RES_MORE);
    if (!moat_ok(rc)) {
        log_server(px, "the origin's answer head is too large for the client");
        px->ex = NULL;
        px_free(px);
        return 0;
    }
    px->st = PX_RELAY;
    arm(px, px->group->p.read_ms);
    return 1;
}

/* The server switched to WebSocket: check it is the switch asked for, answer the client
 * (101, or 200 for HTTP/2), and tunnel. */
static void start_tunnel(struct px *px, const struct moat_h1_resp *r)
{
    if (!px->upgrade) {
        blame(px, "a 101 nobody asked for");
        px_fail(px, 502, "the origin switched protocols unasked (101 to a plain request)");
        return;
    }
    const struct moat_field *up = moat_field_find(r->fields, r->nfields, "upgrade");
    if (up == NULL || !moat_slice_eq_lit_nocase(moat_slice_trim_ows(up->value), "websocket")) {
        px_fail(px, 502, "the origin's 101 does not switch to websocket");
        return;
    }
    if (px->h2_connect) {
        const struct moat_field *acc =
            moat_field_find(r->fields, r->nfields, "sec-websocket-accept");
        if (acc == NULL ||
            !moat_slice_eq(moat_slice_trim_ows(acc->value), moat_slice_cstr(px->ws_accept))) {
            px_fail(px, 502, "the origin's Sec-WebSocket-Accept does not match moat's key");
            return;
        }
    }
    answered(px, 101);
    if (!moat_ok(relay_lines(px, r, 0)) ||
        !moat_ok(
            moat_buf_append(&px->lines, "Connection: upgrade\r\nUpgrade: websocket\r\n", 41))) {
        px_fail(px, 502, "the origin's answer head is too large");
        return;
    }
    if (!moat_ok(
            moat_exch_start(px->ex, 101, &px->lines, -1, MOAT_RES_RELAYED | MOAT_RES_TUNNEL))) {
        log_server(px, "the client's side could not switch to the tunnel");
        px->ex = NULL;
        px_free(px);
        return;
    }
    px->st = PX_TUNNEL;
    arm(px, px->group->p.tunnel_ms);
}

/*
 * TUNNEL: bytes both ways, each direction as fast as the other side takes them. Ends when the
 * server closes (the client's side then finishes: HTTP/1.1 closes after what is queued,
 * HTTP/2 ends the stream); the client closing its side is passed on as a half-close to a
 * plain server, after which the server's close ends it. Idle both ways for `tunnel`: cut.
 */
static int step_tunnel(struct px *px)
{
    struct moat_err e = {0};
    char why[300];
    struct moat_h1c *c = &px->uc->h1c;
    int moved = 0;
    for (int progress = 1; progress && !px->dead;) {
        progress = 0;
        while (!px->up_eof && moat_exch_room(px->ex) > 0) {
            moat_slice piece;
            moat_rc rc = moat_h1c_read_body(c, &piece, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                break;
            }
            if (rc.kind == MOAT_E_CLOSED) {
                px->up_eof = 1;
                break;
            }
            if (!moat_ok(rc)) {
                px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
                return 0;
            }
            if (!moat_ok(moat_exch_send(px->ex, piece.p, piece.len))) {
                px->ex = NULL; /* the client left */
                px_free(px);
                return 0;
            }
            progress = moved = 1;
        }
        if (px->up_eof) {
            struct moat_exch *ex = px->ex;
            px_free(px);
            moat_exch_finish(ex);
            return 0;
        }
        while (!px->down_eof) {
            moat_rc rc = moat_h1c_flush(c, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                break;
            }
            if (!moat_ok(rc)) {
                px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
                return 0;
            }
            size_t room = moat_h1c_body_room(c), n = 0;
            char piece[PIECE];
            if (room == 0) {
                break;
            }
            rc =
                moat_exch_read_body(px->ex, piece, room < sizeof(piece) ? room : sizeof(piece), &n);
            if (rc.kind == MOAT_E_AGAIN) {
                break;
            }
            if (!moat_ok(rc)) {
                px->ex = NULL; /* the client left */
                px_free(px);
                return 0;
            }
            if (n == 0) {
                px->down_eof = 1;
                if (moat_transport_is_plain(&c->tr)) {
                    (void)shutdown(c->tr.fd, SHUT_WR); /* the server sees the client's end */
                }
                break;
            }
            if (!moat_ok(moat_h1c_body(c, piece, n))) {
                px_fail(px, 500, "out of memory");
                return 0;
            }
            progress = moved = 1;
        }
    }
    if (moved) {
        arm(px, px->group->p.tunnel_ms);
    }
    return 0;
}

static int step_relay(struct px *px)
{
    struct moat_err e = {0};
    char why[300];
    struct moat_h1c *c = &px->uc->h1c;
    for (;;) {
        if (moat_exch_room(px->ex) == 0) {
            /* The client is slow: its time, not the server's (the session times it). */
            moat_timer_disarm(&px->loop->timers, &px->timer);
            return 0;
        }
        moat_slice piece;
        moat_rc rc = moat_h1c_read_body(c, &piece, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            if (!moat_ok(moat_exch_send(px->ex, NULL, 0))) { /* what waits goes now */
                px->ex = NULL;
                px_free(px);
                return 0;
            }
            arm(px, px->group->p.read_ms);
            return 0;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            /* The server's trailers outlive the try for the one call that copies them out. */
            struct moat_buf trailers;
            moat_buf_init(&trailers, MOAT_H1_CHUNK_TRAILER_DEFAULT);
            int pass = moat_ok(pass_trailers(moat_h1c_trailers(c), &trailers, NULL));
            struct moat_exch *ex = px->ex;
            end_try(px, moat_h1c_reusable(c));
            px_free(px);
            moat_exch_finish_trailers(ex, pass ? &trailers : NULL);
            moat_buf_clear(&trailers);
            return 0;
        }
        if (!moat_ok(rc)) {
            px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
            return 0;
        }
        if (!moat_ok(moat_exch_send(px->ex, piece.p, piece.len))) {
            px->ex = NULL; /* the client left */
            px_free(px);
            return 0;
        }
    }
}

static void px_run(struct px *px)
{
    int go = 1;
    while (go && !px->dead) {
        switch (px->st) {
        case PX_CONNECT: {
            struct moat_err e = {0};
            moat_rc rc = moat_up_conn_ready(px->uc, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                char why[700];
                try_failed(px, 502,
                           rc.kind != MOAT_E_TLS ? moat_err_str(&e, why, sizeof(why))
                                                 : handshake_words(px, &e, why, sizeof(why)),
                           1, 1);
                return;
            }
            if (!moat_ok(queue_head(px))) {
                px_fail(px, 500, "request head too large for the server");
                return;
            }
            px->st = PX_SEND;
            break;
        }
        case PX_SEND:
            go = step_send(px);
            break;
        case PX_RECV_HEAD:
            go = step_recv_head(px);
            break;
        case PX_RELAY:
            go = step_relay(px);
            break;
        case PX_TUNNEL:
            go = step_tunnel(px);
            break;
        }
    }
}

static void on_server(struct moat_watch *w, uint32_t events)
{
    struct px *px = w->data;
    if (px->dead) {
        return; /* finished earlier in this iteration */
    }
    px->events |= events;
    px_run(px);
}

static void on_timer(struct moat_timer *t)
{
    struct px *px = t->data;
    if (px->dead) {
        return;
    }
    if (px->kick) {
        px->kick = 0;
        px_run(px);
        return;
    }
    if (px->waiting) {
        px->waiting = 0;
        px_try(px);
        return;
    }
    const struct moat_up_group *g = px->group;
    int total = g->p.total_ms != 0 && px->loop->now_ms >= px->started_ms + g->p.total_ms;
    switch (px->st) {
    case PX_CONNECT:
        try_failed(px, 504, total ? "the whole exchange took too long" : "connect timed out", 1, 1);
        return;
    case PX_SEND:
        blame(px, "timed out taking the request");
        px_fail(px, 504, "the server did not take the request in time");
        return;
    case PX_RECV_HEAD:
        blame(px, "no answer in time");
        px_fail(px, 504,
                total ? "the whole exchange took too long" : "the origin did not answer in time");
        return;
    case PX_RELAY:
        px_fail(px, 504,
                total ? "the whole exchange took too long"
                      : "the server stopped sending its answer (read timeout)");
        return;
    case PX_TUNNEL:
        px_fail(px, 504, "the tunnel was idle both ways for its timeout (timeouts.tunnel)");
        return;
    }
}

static void on_place_free(struct moat_up_waiter *w)
{
    struct px *px = (struct px *)((char *)w - offsetof(struct px, waiter));
    if (px->dead || !px->waiting) {
        return;
    }
    /* From inside another request's end: only the timer, whose callback looks again. The
     * timer is armed (the queue's look), so moving it needs no memory; were it to fail, that
     * look comes anyway. */
    moat_rc rc = moat_timer_arm(&px->loop->timers, &px->timer, px->loop->now_ms);
    (void)rc;
}

static void px_ready(void *h)
{
    px_run(h);
}

static void px_abort(void *h)
{
    struct px *px = h;
    px->ex = NULL;
    px_free(px);
}

static const struct moat_stream_ops px_ops = {.ready = px_ready, .abort = px_abort};

/* The PROXY v2 header that opens a connection made for this client: its address and the one
 * it connected to, or LOCAL when they are unknown. */
static size_t pp_header(const struct px *px, uint8_t *out, size_t cap)
{
    struct sockaddr_storage src, dst;
    int known = px->have_ends && moat_sock_addr_of(px->ends.peer, px->ends.peer_port, &src) &&
                moat_sock_addr_of(px->ends.local, px->ends.local_port, &dst);
    return moat_pp_v2_build(out, cap, known ? (struct sockaddr *)&src : NULL,
                            known ? (struct sockaddr *)&dst : NULL, MOAT_SLICE_NULL,
                            MOAT_SLICE_NULL, 0);
}

/*
 * Start a try: pick a server, take a pooled connection (the timer nudges it on the next loop
 * iteration, as its socket will report nothing new) or open one (its events start it).
 * 1: under way; 2: waiting in the queue for a server below max_conns; 0: no try can start
 * (*status, *what, *retry_after say why); -1: the connect failed at once (another server may
 * do).
 */
static int start_try(struct px *px, int *status, unsigned *retry_after, const char **what)
{
    struct moat_up_group *g = px->group;
    struct moat_up_key key = {.client_ip = moat_slice_cstr(px->client_ip),
                              .value = moat_slice_of(px->key, px->keylen)};
    int queued = px->waiter.linked;
    px->waiter.woken = 0; /* this is the look it was woken for */
    enum moat_up_pick_rc pr;
    if (!queued && g->p.queue > 0 && moat_up_pool_has_waiter(px->pool, g)) {
        pr = MOAT_UP_ALL_BUSY; /* first come, first served: behind those waiting here */
    } else {
        pr = moat_up_pick(g, &key, px->tried, px->loop->now_ms, &px->server);
    }
    if (pr == MOAT_UP_ALL_BUSY && !queued && g->p.queue > 0 &&
        atomic_load_explicit(&g->waiting, memory_order_relaxed) < g->p.queue) {
        px->queued_at = px->loop->now_ms;
        moat_up_wait(px->pool, &px->waiter, g);
        queued = 1;
        if (!moat_up_pool_has_waiter_before(px->pool, &px->waiter)) {
            /* A place freed between the pick and the wait woke nobody: look once more. */
            pr = moat_up_pick(g, &key, px->tried, px->loop->now_ms, &px->server);
        }
    }
    if (pr != MOAT_UP_PICKED) {
        char down[1200];
        if (pr == MOAT_UP_NONE_UP) {
            leave_queue(px);
            moat_up_describe_down(g, px->loop->now_ms, down, sizeof(down));
            moat_log(MOAT_LVL_WARN, px->conn_id, "upstream %s: no server is up (%s): 503",
                     moat_up_group_name(g), down);
            *retry_after = moat_up_retry_after(g, px->loop->now_ms);
            *status = 503;
            *what = NULL;
        } else if (pr == MOAT_UP_ALL_BUSY && queued &&
                   px->loop->now_ms < px->queued_at + g->p.queue_ms) {
            /* Woken when a place comes free (here or on another worker); the timer is the
             * queue's timeout, and a look now and then for places that open otherwise (a
             * server coming back in). */
            uint64_t due = px->queued_at + g->p.queue_ms;
            if (due > px->loop->now_ms + QUEUE_LOOK_MS) {
                due = px->loop->now_ms + QUEUE_LOOK_MS;
            }
            px->waiting = 1;
            if (!moat_ok(moat_timer_arm(&px->loop->timers, &px->timer, due))) {
                leave_queue(px);
                *status = 503;
                *what = "cannot arm the upstream's timer";
                return 0;
            }
            return 2;
        } else if (pr == MOAT_UP_ALL_BUSY) {
            moat_log(MOAT_LVL_WARN, px->conn_id,
                     "upstream %s: every server is at max_conns %llu%s: 503", moat_up_group_name(g),
                     (unsigned long long)g->p.max_conns,
                     queued ? " for all of queue's timeout"
                            : (g->p.queue > 0 ? " and its queue is full" : ""));
            leave_queue(px);
            *retry_after = 1;
            *status = 503;
            *what = NULL;
        } else {
            leave_queue(px);
            *status = px->last_status ? px->last_status : 502;
            *what = px->last_why[0] ? px->last_why : "every server that is up failed this request";
        }
        return 0;
    }
    leave_queue(px);
    px->picked = 1;
    px->tries++;
    px->try_ms = px->loop->now_ms;
    struct moat_up_conn *uc = moat_up_pool_take(px->pool, g, px->server, !px->idempotent);
    if (uc != NULL) {
        moat_mx_add(&mx_up(px)->reused, 1);
        moat_up_conn_own(uc, on_server, px);
        px->uc = uc;
        px->events = EPOLLOUT;
        if (!moat_ok(queue_head(px))) {
            *status = 500;
            *what = "request head too large for the server";
            return 0;
        }
        px->st = PX_SEND;
        px->kick = 1;
        if (!moat_ok(moat_timer_arm(&px->loop->timers, &px->timer, px->loop->now_ms))) {
            *status = 503;
            *what = "cannot arm the upstream's timer";
            return 0;
        }
        return 1;
    }
    struct moat_h1c_limits lim = {.max_head_bytes = RESP_HEAD_LIMIT};
    struct moat_err e = {0};
    uint8_t preface[240];
    size_t np = g->p.proxy_protocol == 2 ? pp_header(px, preface, sizeof(preface)) : 0;
    moat_rc rc =
        moat_up_conn_open(px->pool, g, px->server, &lim, preface, np, on_server, px, &px->uc, &e);
    if (!moat_ok(rc)) {
        static _Thread_local char why[300];
        moat_err_str(&e, why, sizeof(why));
        *status = rc.kind == MOAT_E_IO ? 502 : 503;
        *what = why;
        return -1; /* a connect that failed at once: another server may do */
    }
    moat_mx_add(&mx_up(px)->opened, 1);
    px->st = PX_CONNECT;
    px->events = 0;
    arm(px, g->p.connect_ms);
    return px->dead ? 0 : 1;
}

/* After the handler returned: a new try, answering the client itself when none can start. */
static void px_try(struct px *px)
{
    for (;;) {
        int status = 502;
        unsigned retry_after = 0;
        const char *what = NULL;
        int r = start_try(px, &status, &retry_after, &what);
        if (r >= 1 || px->dead) {
            return;
        }
        if (r < 0) {
            try_failed(px, status, what, 1, status == 502);
            return;
        }
        if (retry_after == 0) {
            px_fail(px, status, what != NULL ? what : "no server can take the request");
            return;
        }
        answer_error(px, status, retry_after);
        return;
    }
}

moat_rc moat_proxy_handler(const void *ctx, const struct moat_req *req, struct moat_res *res,
                           struct moat_buf *lines, struct moat_buf *body)
{
    const struct moat_proxy_call *call = ctx;
    const struct moat_proxy_route *rt = call->route;
    *res = (struct moat_res){.status = 500, .fd = -1};
    struct px *px = px_new(call->spares);
    if (px == NULL) {
        return moat_res_error_page(res, 503, lines, body);
    }
    px->loop = call->loop;
    px->pool = call->pool;
    px->mx = call->mx;
    px->route = rt;
    px->group = moat_up_group_ref(rt->group);
    px->ex = req->exch;
    px->conn_id = req->conn_id;
    px->body_pending = req->has_body;
    px->head_req = req->method_id == MOAT_HTTP_M_HEAD;
    enum moat_http_method m = req->method_id;
    px->idempotent = m == MOAT_HTTP_M_GET || m == MOAT_HTTP_M_HEAD || m == MOAT_HTTP_M_OPTIONS ||
                     m == MOAT_HTTP_M_TRACE || m == MOAT_HTTP_M_PUT || m == MOAT_HTTP_M_DELETE;
    px->started_ms = px->loop->now_ms;
    /* Only WebSocket is carried: another protocol named in Upgrade (h2c...) is this hop's. */
    px->upgrade = moat_slice_eq_lit_nocase(req->upgrade, "websocket") &&
                  (!req->has_body || m == MOAT_HTTP_M_CONNECT); /* a handshake has no body */
    px->h2_connect = px->upgrade && m == MOAT_HTTP_M_CONNECT;
    if (px->h2_connect) {
        px->body_pending = 0; /* the stream's DATA is the tunnel's, after the 200 */
        px->idempotent = 1;   /* nothing of it goes before the switch */
    }
    moat_timer_init(&px->timer, on_timer, px);
    px->waiter.wake = on_place_free;
    snprintf(px->client_ip, sizeof(px->client_ip), "%s", req->peer ? req->peer : "-");
    if (req->ends != NULL) {
        px->ends = *req->ends;
        px->have_ends = 1;
    }
    if (rt->host_mode == 2) {
        snprintf(px->host, sizeof(px->host), "%s", rt->host_value);
    } else {
        snprintf(px->host, sizeof(px->host), "%.*s",
                 (int)(req->authority.len < sizeof(px->host) ? req->authority.len
                                                             : sizeof(px->host) - 1),
                 req->authority.p ? req->authority.p : "");
    }
    take_key(px, req);
    if (m == MOAT_HTTP_M_CONNECT && !px->upgrade) {
        /* moat is a reverse proxy: no CONNECT tunnels to wherever a client names. */
        px_free(px);
        MOAT_TRY(moat_res_error_page(res, 405, lines, body));
        return moat_buf_printf(lines, "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n");
    }
    if (!moat_ok(build_head(px, call, req))) {
        log_server(px, "request head too large for the server");
        px_free(px);
        return moat_res_error_page(res, 500, lines, body);
    }
    /* The first try starts here, so that what fails at once is an ordinary answer. */
    for (;;) {
        int status = 502;
        unsigned retry_after = 0;
        const char *what = NULL;
        int r = start_try(px, &status, &retry_after, &what);
        if (r >= 1) {
            break; /* under way, or waiting in the queue */
        }
        if (r < 0) {
            /* connect() refused at once (a local port with nothing on it) */
            blame(px, what);
            px->tried[px->server / 64] |= 1ULL << (px->server % 64);
            snprintf(px->last_why, sizeof(px->last_why), "%s", what);
            px->last_status = status;
            if (px->tries <= px->group->p.retries && another_server(px)) {
                log_server(px, what);
                end_try(px, 0);
                continue;
            }
        }
        if (what != NULL) {
            log_server(px, what);
        }
        px_free(px);
        MOAT_TRY(moat_res_error_page(res, status, lines, body));
        if (retry_after != 0) {
            MOAT_TRY(moat_buf_printf(lines, "Retry-After: %u\r\n", retry_after));
        }
        return MOAT_RC_OK;
    }
    res->stream = &px_ops;
    res->stream_h = px;
    return MOAT_RC_OK;
}
