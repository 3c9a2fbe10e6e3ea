/*
 * accesslog.c: formatting of access-log lines (see accesslog.h). The request's details are
 * the session's copies (moat_h1s_meta), because the request's own bytes are gone by the time
 * the answer is finished; the client certificate's identity is asked of the TLS session.
 */
#include "serve/accesslog.h"

#include "core/log.h"
#include "tls/clientauth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_AT 32768

/* Escape for the combined format: quotes, backslashes and control bytes as \xHH, so a client
 * cannot forge log lines. */
static void put_escaped(struct moat_buf *b, const char *s, int json)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        moat_rc rc;
        if (ch == '"' || ch == '\\') {
            char two[2] = {'\\', (char)ch};
            rc = moat_buf_append(b, two, 2);
        } else if (ch < 0x20 || ch == 0x7f || (json && ch >= 0x80)) {
            rc = json ? moat_buf_printf(b, "\\u%04x", ch) : moat_buf_printf(b, "\\x%02x", ch);
        } else {
            rc = moat_buf_append(b, s, 1);
        }
        if (!moat_ok(rc)) {
            return;
        }
    }
}

void moat_accesslog_flush(struct moat_alog *sink, struct moat_buf *lines)
{
    size_t len = moat_buf_len(lines);
    if (len == 0) {
        return;
    }
    pthread_mutex_lock(&sink->mu);
    const char *p = moat_buf_rdptr(lines);
    while (len > 0) {
        ssize_t n = write(sink->fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* a full disk loses log lines, never requests */
        }
        p += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&sink->mu);
    lines->rd = lines->wr = 0;
}

/* Keep a whole line or nothing, and flush past the threshold. */
static void line_done(struct moat_alog *sink, struct moat_buf *b, size_t mark, moat_rc rc)
{
    if (!moat_ok(rc) || b->wr == 0 || b->base[b->wr - 1] != '\n') {
        b->wr = mark; /* never half a line */
    }
    if (moat_buf_len(b) >= FLUSH_AT) {
        moat_accesslog_flush(sink, b);
    }
}

/* The time of a line: RFC 3339 for JSON, the combined format's own otherwise. */
static void stamp(char *when, size_t cap, int json)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, cap, json ? "%Y-%m-%dT%H:%M:%SZ" : "%d/%b/%Y:%H:%M:%S +0000", &tm);
}

void moat_accesslog_add_stream(struct moat_alog *sink, struct moat_buf *lines,
                               const struct moat_alog_stream *e)
{
    struct moat_buf *b = lines;
    size_t mark = b->wr;
    char when[40];
    int json = sink->format == MOAT_LOG_JSON;
    stamp(when, sizeof(when), json);
    moat_rc rc;
    if (json) {
        rc = moat_buf_printf(b,
                             "{\"time\":\"%s\",\"remote\":\"%s\",\"type\":\"stream\",\"stream\":\"",
                             when, e->peer);
        put_escaped(b, e->stream, 1);
        rc = moat_buf_printf(b, "\",\"mode\":\"%s\",\"sni\":\"", e->mode);
        put_escaped(b, e->sni, 1);
        rc = moat_buf_printf(b, "\",\"target\":\"");
        put_escaped(b, e->target, 1);
        rc = moat_buf_printf(b,
                             "\",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.0f,"
                             "\"end\":\"",
                             (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out,
                             e->ms);
        put_escaped(b, e->end, 1);
        rc = moat_buf_printf(b, "\"}\n");
    } else {
        rc = moat_buf_printf(b, "%s - - [%s] \"STREAM ", e->peer, when);
        put_escaped(b, e->stream, 0);
        rc = moat_buf_printf(b, " %s ", e->mode);
        put_escaped(b, e->sni[0] ? e->sni : "-", 0);
        rc = moat_buf_append(b, "\" ", 2);
        put_escaped(b, e->target[0] ? e->target : "-", 0);
        rc = moat_buf_printf(b, " %llu %llu %.0f \"", (unsigned long long)e->bytes_in,
                             (unsigned long long)e->bytes_out, e->ms);
        put_escaped(b, e->end, 0);
        rc = moat_buf_append(b, "\"\n", 2);
    }
    line_done(sink, b, mark, rc);
}

void moat_accesslog_add(struct moat_alog *sink, struct moat_buf *lines,
                        const struct moat_alog_entry *e)
{
    const char *const *parts = e->parts;
    struct moat_buf *b = lines;
    size_t mark = b->wr;
    char when[40];
    stamp(when, sizeof(when), sink->format == MOAT_LOG_JSON);
    double ms = e->ms;
    /* The client's certificate identity, when it sent one (mutual TLS sites only). */
    struct moat_tls_identity id = {0};
    SSL *ssl = e->ssl;
    if (ssl != NULL && SSL_get0_peer_certificate(ssl) != NULL) {
        moat_tls_identity_of(ssl, &id);
    }
    moat_rc rc;
    const char *proto = e->proto != NULL ? e->proto : "HTTP/1.1";
    if (sink->format == MOAT_LOG_JSON) {
        rc = moat_buf_printf(b, "{\"time\":\"%s\",\"remote\":\"%s\",\"host\":\"", when, e->peer);
        put_escaped(b, parts[2], 1);
        rc = moat_buf_printf(b, "\",\"method\":\"");
        put_escaped(b, parts[0], 1);
        rc = moat_buf_printf(b, "\",\"path\":\"");
        put_escaped(b, parts[1], 1);
        rc = moat_buf_printf(b, "\",\"proto\":\"%s", proto);
        rc =
            moat_buf_printf(b,
                            "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.0f,\"tls\":%s,"
                            "\"referer\":\"",
                            e->status, (unsigned long long)e->bytes, ms, e->tls ? "true" : "false");
        put_escaped(b, parts[3], 1);
        rc = moat_buf_printf(b, "\",\"user_agent\":\"");
        put_escaped(b, parts[4], 1);
        if (id.present) {
            rc = moat_buf_printf(b, "\",\"client_subject\":\"");
            put_escaped(b, id.subject, 1);
            rc = moat_buf_printf(b, "\",\"client_serial\":\"%s\",\"client_verified\":%s", id.serial,
                                 id.verified ? "true" : "false");
            rc = moat_buf_printf(b, "}\n");
        } else {
            rc = moat_buf_printf(b, "\"}\n");
        }
    } else {
        rc = moat_buf_printf(b, "%s - ", e->peer);
        if (id.present && id.verified && id.cn[0] != '\0') {
            put_escaped(b, id.cn, 0); /* %u: the authenticated user */
        } else {
            rc = moat_buf_append(b, "-", 1);
        }
        rc = moat_buf_printf(b, " [%s] \"", when);
        if (parts[0][0] != '\0') {
            put_escaped(b, parts[0], 0);
            rc = moat_buf_append(b, " ", 1);
            put_escaped(b, parts[1], 0);
            rc = moat_buf_printf(b, " %s", proto);
        } else {
            rc = moat_buf_append(b, "-", 1);
        }
        rc = moat_buf_printf(b, "\" %d %llu \"", e->status, (unsigned long long)e->bytes);
        put_escaped(b, parts[3][0] ? parts[3] : "-", 0);
        rc = moat_buf_append(b, "\" \"", 3);
        put_escaped(b, parts[4][0] ? parts[4] : "-", 0);
        rc = moat_buf_append(b, "\"\n", 2);
    }
    line_done(sink, b, mark, rc);
}
