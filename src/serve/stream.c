/*
 * stream.c: stream listener connections (see stream.h).
 */
#include "serve/stream.h"

#include "core/cidr.h"
#include "core/log.h"
#include "core/proxyproto.h"
#include "core/sock.h"
#include "serve/accesslog.h"
#include "serve/guard.h"
#include "serve/snapshot.h"
#include "tls/clienthello.h"
#include "tls/clientauth.h"
#include "tls/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PIPE_BUF_BYTES 16384
#define LINE_MAX_BYTES 1000 /* RFC 5321 §4.5.3.1.4: 512 for a command line; room to spare */

enum sc_state {
    SC_PROXY_HEADER = 0,
    SC_OPENING,   /* SMTP's greeting and commands before STARTTLS, PostgreSQL's SSLRequest */
    SC_HANDSHAKE, /* TLS with the client (terminate) */
    SC_PEEK,      /* reading the ClientHello (passthrough) */
    SC_CONNECT,   /* to the target */
    SC_GREETING,  /* swallowing the MTA's greeting (STARTTLS smtp) */
    SC_PIPE,
};

struct moat_sconn {
    struct moat_watch w;      /* the client's socket */
    struct moat_transport tr; /* the client's side: plain, or TLS (terminate) */
    struct moat_timer timer;  /* handshake, connect, idle */
    struct moat_stream_home *home;
    struct moat_snapshot *snap; /* one reference */
    const struct moat_stream_rt *st;
    struct moat_guard_ticket ticket; /* what it holds of the limits: given back at close */
    struct moat_sconn *prev, *next;
    struct moat_up_group *group; /* one reference, once routed */
    size_t server;
    int picked;
    struct moat_up_conn *uc; /* the target's side */
    unsigned tries;
    enum sc_state state;
    struct moat_endpoints ends;
    unsigned long long id;
    uint64_t bytes_in, bytes_out;
    uint64_t started_ms; /* the loop's clock at accept, for the access log */
    int client_eof, server_eof, dead;
    const char *why; /* how it ended, for the log (static) */
    char target[320];
    char sni[256];
    /* client -> target: what was read and not yet written (the ClientHello when passing
     * through, whose size may exceed one pipe buffer) */
    uint8_t up[MOAT_CH_MAX];
    size_t up_len, up_off;
    uint8_t down[PIPE_BUF_BYTES]; /* target -> client */
    size_t down_len, down_off;
};

static void on_client(struct moat_watch *w, uint32_t events);
static void on_server(struct moat_watch *w, uint32_t events);
static void run(struct moat_sconn *c);

static const char *stream_name(const struct moat_sconn *c)
{
    return c->st->conf->name;
}

static void sc_close(struct moat_sconn *c, const char *why)
{
    if (c->dead) {
        return;
    }
    c->dead = 1;
    if (c->state == SC_PIPE || c->bytes_in || c->bytes_out) {
        moat_log(MOAT_LVL_INFO, c->id,
                 "stream %s: %s -> %s: closed after %llu bytes in, %llu out (%s)", stream_name(c),
                 c->ends.peer, c->target[0] ? c->target : "-", (unsigned long long)c->bytes_in,
                 (unsigned long long)c->bytes_out,
                 why      ? why
                 : c->why ? c->why
                          : "done");
    } else if (why != NULL) {
        moat_log(MOAT_LVL_INFO, c->id, "stream %s: %s: %s", stream_name(c), c->ends.peer, why);
    }
    struct moat_stream_home *h = c->home;
    if (c->snap->guard != NULL) {
        moat_guard_release(c->snap->guard, &c->ticket);
    }
    if (h->alog != NULL) {
        static const char *const modes[] = {"terminate", "passthrough", "plain"};
        enum moat_conf_stream_tls t = c->st->conf->tls;
        struct moat_alog_stream e = {
            .peer = c->ends.peer,
            .stream = stream_name(c),
            .mode = (size_t)t < sizeof(modes) / sizeof(modes[0]) ? modes[t] : "-",
            .sni = c->sni,
            .target = c->target,
            .bytes_in = c->bytes_in,
            .bytes_out = c->bytes_out,
            .ms = (double)(h->loop->now_ms - c->started_ms),
            .end = why      ? why
                   : c->why ? c->why
                            : "done",
        };
        moat_accesslog_add_stream(h->alog, h->alog_lines, &e);
    }
    moat_timer_disarm(&h->loop->timers, &c->timer);
    if (c->uc != NULL) {
        moat_up_conn_close(c->uc);
        c->uc = NULL;
    }
    if (c->picked) {
        moat_up_pool_done(c->home->pool, c->group, c->server);
    }
    moat_up_group_unref(c->group);
    c->group = NULL;
    moat_loop_del(h->loop, &c->w);
    moat_transport_close(&c->tr);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    h->nconns--;
    moat_snapshot_unref(c->snap);
    moat_loop_defer_free(h->loop, c);
}

static void arm(struct moat_sconn *c, uint64_t ms)
{
    if (!moat_ok(moat_timer_arm(&c->home->loop->timers, &c->timer, c->home->loop->now_ms + ms))) {
        sc_close(c, "cannot arm a timer");
    }
}

static void on_timer(struct moat_timer *t)
{
    struct moat_sconn *c = t->data;
    const struct moat_conf_stream *cs = c->st->conf;
    switch (c->state) {
    case SC_PIPE:
        sc_close(c, "idle both ways for timeouts.idle");
        return;
    case SC_CONNECT:
    case SC_GREETING:
        if (c->picked) {
            moat_up_report(c->group, c->server, 0, "connect timed out", c->home->loop->now_ms,
                           c->id);
        }
        sc_close(c, "the target did not answer in time (timeouts.connect)");
        return;
    default:
        (void)cs;
        sc_close(c, "no handshake in time (timeouts.handshake)");
        return;
    }
}

/* Plain bytes to the client during the opening (short replies: a socket takes them whole). */
static int say(struct moat_sconn *c, const char *text)
{
    size_t len = strlen(text), n = 0;
    moat_rc rc = moat_transport_write(&c->tr, text, len, &n);
    if (!moat_ok(rc) || n != len) {
        sc_close(c, "the client did not take a reply");
        return 0;
    }
    return 1;
}

/* ---- the openings ----------------------------------------------------------------------- */

/* SMTP: the server speaks first (RFC 5321 §3.1). */
static int greet(struct moat_sconn *c)
{
    char hello[400];
    snprintf(hello, sizeof(hello), "220 %s ESMTP moat\r\n", c->st->conf->id.names[0]);
    return say(c, hello);
}

static void start_handshake(struct moat_sconn *c)
{
    if (!moat_ok(moat_tls_transport_server(&c->tr, c->tr.fd, c->st->ctx, NULL))) {
        sc_close(c, "cannot start TLS");
        return;
    }
    c->state = SC_HANDSHAKE;
}

/* SMTP before STARTTLS (RFC 3207 §4): EHLO is answered with STARTTLS, STARTTLS starts TLS,
 * nothing else is served in the clear. A command pipelined after STARTTLS is refused: it
 * would be taken as sent inside TLS (the STARTTLS command injection of CVE-2011-0411). */
static void smtp_opening(struct moat_sconn *c)
{
    const char *name = c->st->conf->id.names[0];
    for (;;) {
        uint8_t *nl = memchr(c->up, '\n', c->up_len);
        if (nl == NULL) {
            if (c->up_len >= LINE_MAX_BYTES) {
                say(c, "500 5.5.6 Line too long\r\n");
                sc_close(c, "an SMTP line too long before STARTTLS");
                return;
            }
            size_t n = 0;
            moat_rc rc =
                moat_transport_read(&c->tr, c->up + c->up_len, LINE_MAX_BYTES - c->up_len, &n);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                sc_close(c, "the client left before STARTTLS");
                return;
            }
            c->up_len += n;
            continue;
        }
        size_t ll = (size_t)(nl - c->up) + 1;
        char line[LINE_MAX_BYTES + 1];
        memcpy(line, c->up, ll);
        line[ll] = '\0';
        memmove(c->up, c->up + ll, c->up_len - ll);
        c->up_len -= ll;
        char reply[600];
        if (strncasecmp(line, "EHLO", 4) == 0 && (line[4] == ' ' || line[4] == '\r')) {
            snprintf(reply, sizeof(reply), "250-%s\r\n250 STARTTLS\r\n", name);
        } else if (strncasecmp(line, "HELO", 4) == 0) {
            snprintf(reply, sizeof(reply), "250 %s\r\n", name);
        } else if (strncasecmp(line, "STARTTLS", 8) == 0 && (line[8] == '\r' || line[8] == '\n')) {
            if (c->up_len > 0) {
                say(c, "554 5.5.1 Bytes after STARTTLS: no pipelining here\r\n");
                sc_close(c, "SMTP commands pipelined after STARTTLS (refused: injection)");
                return;
            }
            if (say(c, "220 2.0.0 Ready to start TLS\r\n")) {
                start_handshake(c);
            }
            return;
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            say(c, "221 2.0.0 Bye\r\n");
            sc_close(c, NULL);
            return;
        } else if (strncasecmp(line, "NOOP", 4) == 0 || strncasecmp(line, "RSET", 4) == 0) {
            snprintf(reply, sizeof(reply), "250 2.0.0 OK\r\n");
        } else {
            snprintf(reply, sizeof(reply), "530 5.7.0 Must issue a STARTTLS command first\r\n");
        }
        if (!say(c, reply)) {
            return;
        }
    }
}

/* PostgreSQL: the client asks for TLS with an 8-byte SSLRequest; moat says 'S' (a
 * GSSENCRequest gets 'N', and the client asks again). Bytes after the request before the
 * handshake are refused, as the server must (CVE-2021-23214). */
static void pg_opening(struct moat_sconn *c)
{
    for (;;) {
        if (c->up_len < 8) {
            size_t n = 0;
            moat_rc rc = moat_transport_read(&c->tr, c->up + c->up_len, 8 - c->up_len, &n);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                sc_close(c, "the client left before its SSLRequest");
                return;
            }
            c->up_len += n;
            continue;
        }
        uint32_t len = (uint32_t)c->up[0] << 24 | (uint32_t)c->up[1] << 16 |
                       (uint32_t)c->up[2] << 8 | c->up[3];
        uint32_t code = (uint32_t)c->up[4] << 24 | (uint32_t)c->up[5] << 16 |
                        (uint32_t)c->up[6] << 8 | c->up[7];
        c->up_len = 0;
        if (len == 8 && code == 80877104) { /* GSSENCRequest: not here */
            if (!say(c, "N")) {
                return;
            }
            continue;
        }
        if (len != 8 || code != 80877103) {
            sc_close(c, "a PostgreSQL client that does not ask for TLS (sslmode=disable?): "
                        "closed, this port speaks TLS only");
            return;
        }
        char extra;
        size_t n = 0;
        moat_rc rc = moat_transport_read(&c->tr, &extra, 1, &n);
        if (moat_ok(rc) && n > 0) {
            sc_close(c, "bytes after the SSLRequest before TLS (refused: injection)");
            return;
        }
        if (say(c, "S")) {
            start_handshake(c);
        }
        return;
    }
}

/* ---- routing and the target -------------------------------------------------------------- */

static void pick_and_connect(struct moat_sconn *c);

static void routed(struct moat_sconn *c, const char *sni)
{
    snprintf(c->sni, sizeof(c->sni), "%s", sni ? sni : "");
    const struct moat_stream_route_rt *r = moat_snapshot_stream_route(c->st, sni);
    if (r == NULL) {
        char why[400];
        snprintf(why, sizeof(why), "no route for SNI \"%.200s\" and no default (proxy)",
                 sni ? sni : "(none)");
        sc_close(c, why);
        return;
    }
    c->group = moat_up_group_ref(r->group);
    c->state = SC_CONNECT;
    arm(c, c->st->conf->connect_ms);
    if (!c->dead) {
        pick_and_connect(c);
    }
}

static void pick_and_connect(struct moat_sconn *c)
{
    struct moat_up_group *g = c->group;
    for (;;) {
        struct moat_up_key key = {.client_ip = moat_slice_cstr(c->ends.peer)};
        enum moat_up_pick_rc pr = moat_up_pick(g, &key, NULL, c->home->loop->now_ms, &c->server);
        if (pr != MOAT_UP_PICKED) {
            char down[1200], why[1300];
            moat_up_describe_down(g, c->home->loop->now_ms, down, sizeof(down));
            snprintf(why, sizeof(why), "no target server can take it (%s)", down);
            sc_close(c, why);
            return;
        }
        c->picked = 1;
        c->tries++;
        snprintf(c->target, sizeof(c->target), "%s", g->servers[c->server].name);
        uint8_t pre[240];
        size_t np = 0;
        if (g->p.proxy_protocol == 2) {
            struct sockaddr_storage src, dst;
            int known = moat_sock_addr_of(c->ends.peer, c->ends.peer_port, &src) &&
                        moat_sock_addr_of(c->ends.local, c->ends.local_port, &dst);
            np = moat_pp_v2_build(pre, sizeof(pre), known ? (struct sockaddr *)&src : NULL,
                                  known ? (struct sockaddr *)&dst : NULL, moat_slice_cstr(c->sni),
                                  MOAT_SLICE_NULL, 0);
        }
        struct moat_err e = {0};
        moat_rc rc =
            moat_up_conn_open(c->home->pool, g, c->server, NULL, pre, np, on_server, c, &c->uc, &e);
        if (moat_ok(rc)) {
            run(c);
            return;
        }
        char why[300];
        moat_err_str(&e, why, sizeof(why));
        moat_up_report(g, c->server, 0, "cannot connect", c->home->loop->now_ms, c->id);
        moat_up_pool_done(c->home->pool, g, c->server);
        c->picked = 0;
        if (c->tries > g->p.retries + 1 || g->n == 1) {
            sc_close(c, why);
            return;
        }
    }
}

/* ---- the pipe ---------------------------------------------------------------------------- */

/* Move bytes from one side to the other until neither can move; 0 when the stream ended. */
static int pump(struct moat_sconn *c)
{
    struct moat_transport *srv = &c->uc->h1c.tr;
    int moved = 0;
    for (int progress = 1; progress;) {
        progress = 0;
        /* client -> target */
        if (c->up_len == 0 && !c->client_eof) {
            size_t n = 0;
            moat_rc rc = moat_transport_read(&c->tr, c->up, PIPE_BUF_BYTES, &n);
            if (moat_ok(rc) && n > 0) {
                c->up_len = n;
                c->up_off = 0;
                progress = 1;
            } else if (rc.kind == MOAT_E_CLOSED) {
                c->client_eof = 1;
                moat_transport_shutdown(srv); /* the target sees the client's end */
                progress = 1;
            } else if (rc.kind != MOAT_E_AGAIN) {
                sc_close(c, "the client's side ended without a clean close");
                return 0;
            }
        }
        if (c->up_len > 0) {
            size_t n = 0;
            moat_rc rc = moat_transport_write(srv, c->up + c->up_off, c->up_len, &n);
            if (moat_ok(rc) && n > 0) {
                c->up_off += n;
                c->up_len -= n;
                c->bytes_in += n;
                progress = 1;
            } else if (rc.kind != MOAT_E_AGAIN) {
                sc_close(c, "the target stopped taking bytes");
                return 0;
            }
        }
        /* target -> client */
        if (c->down_len == 0 && !c->server_eof) {
            size_t n = 0;
            moat_rc rc = moat_transport_read(srv, c->down, sizeof(c->down), &n);
            if (moat_ok(rc) && n > 0) {
                c->down_len = n;
                c->down_off = 0;
                progress = 1;
            } else if (rc.kind == MOAT_E_CLOSED) {
                c->server_eof = 1;
                progress = 1;
            } else if (rc.kind != MOAT_E_AGAIN) {
                sc_close(c, "the target's side ended without a clean close");
                return 0;
            }
        }
        if (c->down_len > 0) {
            size_t n = 0;
            moat_rc rc = moat_transport_write(&c->tr, c->down + c->down_off, c->down_len, &n);
            if (moat_ok(rc) && n > 0) {
                c->down_off += n;
                c->down_len -= n;
                c->bytes_out += n;
                progress = 1;
            } else if (rc.kind != MOAT_E_AGAIN) {
                sc_close(c, "the client stopped taking bytes");
                return 0;
            }
        }
        moved |= progress;
    }
    if (c->server_eof && c->down_len == 0) {
        moat_transport_shutdown(&c->tr);
        sc_close(c, c->client_eof ? "both sides closed" : "the target closed");
        return 0;
    }
    if (moved) {
        arm(c, c->st->conf->idle_ms);
    }
    return !c->dead;
}

/* The SMTP server's greeting: the client had moat's already; the server's own is swallowed,
 * and a refusal (not 220) closes the stream with a 421 to the client. */
static int swallow_greeting(struct moat_sconn *c)
{
    struct moat_transport *srv = &c->uc->h1c.tr;
    for (;;) {
        uint8_t *end = NULL;
        for (size_t i = 0; i + 1 < c->down_len; i++) {
            /* the last line of a reply: "220 " (not "220-") up to its LF */
            if ((i == 0 || c->down[i - 1] == '\n') && i + 3 < c->down_len &&
                c->down[i + 3] == ' ') {
                end = memchr(c->down + i, '\n', c->down_len - i);
                if (end != NULL) {
                    break;
                }
            }
        }
        if (end != NULL) {
            int ok = c->down_len >= 3 && memcmp(c->down, "220", 3) == 0;
            size_t used = (size_t)(end - c->down) + 1;
            memmove(c->down, c->down + used, c->down_len - used);
            c->down_len -= used;
            if (!ok) {
                if (say(c, "421 4.3.0 Service not available\r\n")) {
                    sc_close(c, "the SMTP server refused in its greeting");
                }
                return 0;
            }
            return 1;
        }
        if (c->down_len >= sizeof(c->down)) {
            sc_close(c, "the SMTP server's greeting is too long");
            return 0;
        }
        size_t n = 0;
        moat_rc rc =
            moat_transport_read(srv, c->down + c->down_len, sizeof(c->down) - c->down_len, &n);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (!moat_ok(rc)) {
            sc_close(c, "the SMTP server closed before its greeting");
            return 0;
        }
        c->down_len += n;
    }
}

static void handshake_failed(struct moat_sconn *c, const struct moat_err *e)
{
    char msg[700], why[760];
    SSL *ssl = moat_tls_transport_ssl(&c->tr);
    struct moat_tls_identity id;
    moat_tls_identity_of(ssl, &id);
    if (!id.present && strstr(e->msg, "did not return a certificate") != NULL) {
        snprintf(why, sizeof(why), "client refused at handshake: no client certificate");
    } else if (id.present && !id.verified) {
        snprintf(why, sizeof(why), "client refused at handshake: %s",
                 moat_tls_identity_refusal(&id, 1, msg, sizeof(msg)));
    } else {
        snprintf(why, sizeof(why), "tls handshake failed: %s", moat_err_str(e, msg, sizeof(msg)));
    }
    sc_close(c, why);
}

static void run(struct moat_sconn *c)
{
    while (!c->dead) {
        switch (c->state) {
        case SC_PROXY_HEADER: {
            struct moat_pp_result r;
            const char *why = NULL;
            int got = moat_pp_take(c->tr.fd, &r, &why);
            if (got == 0) {
                return;
            }
            if (got < 0) {
                char msg[200];
                snprintf(msg, sizeof(msg), "PROXY protocol: expected a header, got %s: closed",
                         why);
                sc_close(c, msg);
                return;
            }
            if (r.command == MOAT_PP_CMD_PROXY &&
                (r.family == MOAT_PP_FAM_INET || r.family == MOAT_PP_FAM_INET6)) {
                moat_sock_endpoint(&r.src, c->ends.peer, sizeof(c->ends.peer), &c->ends.peer_port);
                moat_sock_endpoint(&r.dst, c->ends.local, sizeof(c->ends.local),
                                   &c->ends.local_port);
                if (!moat_guard_after_header(c->snap->guard, c->snap->conf, &r.src,
                                             c->st->conf->tls == MOAT_CONF_STREAM_TERMINATE,
                                             c->home->loop->now_ms, c->id, &c->ticket)) {
                    sc_close(c, NULL);
                    return;
                }
            }
            c->state = SC_OPENING;
            if (c->st->conf->starttls == MOAT_CONF_STARTTLS_SMTP && !greet(c)) {
                return;
            }
            break;
        }
        case SC_OPENING: {
            const struct moat_conf_stream *cs = c->st->conf;
            if (cs->starttls == MOAT_CONF_STARTTLS_SMTP) {
                smtp_opening(c);
                if (c->state == SC_OPENING) {
                    return;
                }
            } else if (cs->starttls == MOAT_CONF_STARTTLS_POSTGRES) {
                pg_opening(c);
                if (c->state == SC_OPENING) {
                    return;
                }
            } else if (cs->tls == MOAT_CONF_STREAM_TERMINATE) {
                start_handshake(c);
            } else if (cs->tls == MOAT_CONF_STREAM_PASSTHROUGH) {
                c->state = SC_PEEK;
            } else {
                routed(c, NULL);
                return;
            }
            break;
        }
        case SC_HANDSHAKE: {
            struct moat_err e = {0};
            moat_rc rc = moat_transport_handshake(&c->tr, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                handshake_failed(c, &e);
                return;
            }
            const char *sni =
                SSL_get_servername(moat_tls_transport_ssl(&c->tr), TLSEXT_NAMETYPE_host_name);
            routed(c, sni);
            return;
        }
        case SC_PEEK: {
            struct moat_ch_info ch;
            enum moat_ch_status st = moat_ch_peek(c->up, c->up_len, &ch);
            if (st == MOAT_CH_NEED_MORE && c->up_len == sizeof(c->up)) {
                sc_close(c, "a ClientHello larger than moat reads (17 KiB): closed");
                return;
            }
            if (st == MOAT_CH_NEED_MORE) {
                size_t n = 0;
                moat_rc rc =
                    moat_transport_read(&c->tr, c->up + c->up_len, sizeof(c->up) - c->up_len, &n);
                if (rc.kind == MOAT_E_AGAIN) {
                    return;
                }
                if (!moat_ok(rc)) {
                    sc_close(c, "the client left inside its ClientHello");
                    return;
                }
                c->up_len += n;
                break;
            }
            if (st != MOAT_CH_OK) {
                char why[300];
                snprintf(why, sizeof(why), "not a TLS ClientHello (%s): closed",
                         ch.reason ? ch.reason : moat_ch_status_name(st));
                sc_close(c, why);
                return;
            }
            c->up_off = 0; /* the hello goes first, untouched */
            routed(c, ch.has_sni ? ch.sni : NULL);
            return;
        }
        case SC_CONNECT: {
            struct moat_err e = {0};
            moat_rc rc = moat_up_conn_ready(c->uc, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                char why[400];
                moat_err_str(&e, why, sizeof(why));
                moat_up_report(c->group, c->server, 0, "cannot connect", c->home->loop->now_ms,
                               c->id);
                if (c->tries <= c->group->p.retries && c->group->n > 1) {
                    moat_up_conn_close(c->uc);
                    c->uc = NULL;
                    moat_up_pool_done(c->home->pool, c->group, c->server);
                    c->picked = 0;
                    pick_and_connect(c);
                    return;
                }
                sc_close(c, why);
                return;
            }
            moat_up_report(c->group, c->server, 1, NULL, c->home->loop->now_ms, c->id);
            c->state = c->st->conf->starttls == MOAT_CONF_STARTTLS_SMTP ? SC_GREETING : SC_PIPE;
            if (c->state == SC_PIPE) {
                arm(c, c->st->conf->idle_ms);
            }
            break;
        }
        case SC_GREETING:
            if (!swallow_greeting(c)) {
                return;
            }
            c->state = SC_PIPE;
            arm(c, c->st->conf->idle_ms);
            break;
        case SC_PIPE:
            (void)pump(c);
            return;
        }
    }
}

static void on_client(struct moat_watch *w, uint32_t events)
{
    struct moat_sconn *c = w->data;
    if (c->dead) {
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        moat_transport_readable(&c->tr);
    }
    run(c);
}

static void on_server(struct moat_watch *w, uint32_t events)
{
    struct moat_sconn *c = w->data;
    if (c->dead) {
        return;
    }
    if (c->uc != NULL && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        moat_transport_readable(&c->uc->h1c.tr);
    }
    run(c);
}

void moat_stream_accept(struct moat_stream_home *h, struct moat_snapshot *snap, const char *spec,
                        int fd, const struct sockaddr_storage *peer, int proxy_header)
{
    const struct moat_stream_rt *st = moat_snapshot_stream_for(snap, spec);
    struct moat_guard_ticket t;
    if (st == NULL || !moat_guard_at_accept(snap->guard, snap->conf, peer,
                                            st->conf->tls == MOAT_CONF_STREAM_TERMINATE,
                                            proxy_header, h->loop->now_ms, &t)) {
        close(fd);
        return;
    }
    struct moat_sconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (snap->guard != NULL) {
            moat_guard_release(snap->guard, &t);
        }
        close(fd);
        return;
    }
    c->ticket = t;
    c->home = h;
    c->st = st;
    c->snap = moat_snapshot_ref(snap);
    c->id = ++h->next_id * 64 + h->worker_id;
    c->started_ms = h->loop->now_ms;
    moat_transport_plain_init(&c->tr, fd);
    moat_sock_endpoint(peer, c->ends.peer, sizeof(c->ends.peer), &c->ends.peer_port);
    struct sockaddr_storage local;
    socklen_t ll = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0) {
        moat_sock_endpoint(&local, c->ends.local, sizeof(c->ends.local), &c->ends.local_port);
    }
    moat_timer_init(&c->timer, on_timer, c);
    c->w = (struct moat_watch){.fd = fd, .cb = on_client, .data = c};
    c->next = h->conns;
    if (h->conns != NULL) {
        h->conns->prev = c;
    }
    h->conns = c;
    h->nconns++;
    if (!moat_ok(moat_loop_add(h->loop, &c->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        sc_close(c, "cannot watch the socket");
        return;
    }
    if (proxy_header &&
        !moat_cidr_match_sa(snap->trusted, snap->ntrusted, (const struct sockaddr *)peer)) {
        sc_close(c, "PROXY protocol: not in trusted_proxies, and only those may connect to this "
                    "listener: closed");
        return;
    }
    c->state = proxy_header ? SC_PROXY_HEADER : SC_OPENING;
    arm(c, st->conf->handshake_ms);
    if (!c->dead && st->conf->starttls == MOAT_CONF_STARTTLS_SMTP && !proxy_header && !greet(c)) {
        return;
    }
    if (!c->dead && c->state == SC_OPENING && st->conf->tls == MOAT_CONF_STREAM_PLAIN) {
        run(c); /* nothing to wait for from the client */
    }
}

void moat_stream_close_all(struct moat_stream_home *h)
{
    while (h->conns != NULL) {
        sc_close(h->conns, "moat is stopping");
    }
}
