/*
 * render.c: the text form of a trace. Everything shown comes from the recorded facts of
 * get.h; nothing here talks to the network or to OpenSSL's connection state.
 *
 * Layout (78 columns): a time column, the client's bar, the lane with the arrows, the
 * server's bar. Arrows carry their label at the sender's end, so a reader's eye follows the
 * direction; encrypted messages are drawn with '=' so the point where encryption starts is
 * visible at a glance, which is where TLS 1.2 and 1.3 differ most.
 */
#include "client/render.h"

#include "client/internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#define WIDTH 78
#define TIME_COL 12 /* "   12.34 ms " */

const char *moat_client_render_arrow(enum moat_render_arrow kind, const char *label, char *out,
                                     size_t outlen)
{
    char lane[MOAT_RENDER_LANE + 1];
    int enc = kind == MOAT_ARROW_OUT_ENC || kind == MOAT_ARROW_IN_ENC;
    char fill = enc ? '=' : '-';
    memset(lane, fill, MOAT_RENDER_LANE);
    lane[MOAT_RENDER_LANE] = '\0';
    /* Room for the label: the lane minus the arrow head and two fill characters each side. */
    size_t room = MOAT_RENDER_LANE - 6;
    char lab[MOAT_RENDER_LANE];
    size_t ll = strlen(label);
    if (ll > room) {
        memcpy(lab, label, room - 3);
        memcpy(lab + room - 3, "...", 3);
        ll = room;
    } else {
        memcpy(lab, label, ll);
    }
    lab[ll] = '\0';
    switch (kind) {
    case MOAT_ARROW_OUT:
    case MOAT_ARROW_OUT_ENC:
        lane[2] = ' ';
        memcpy(lane + 3, lab, ll);
        lane[3 + ll] = ' ';
        lane[MOAT_RENDER_LANE - 1] = '>';
        break;
    case MOAT_ARROW_IN:
    case MOAT_ARROW_IN_ENC:
        lane[0] = '<';
        lane[MOAT_RENDER_LANE - 3 - ll - 1] = ' ';
        memcpy(lane + MOAT_RENDER_LANE - 3 - ll, lab, ll);
        lane[MOAT_RENDER_LANE - 3] = ' ';
        break;
    case MOAT_ARROW_BOTH:
    default: {
        lane[0] = '<';
        lane[MOAT_RENDER_LANE - 1] = '>';
        size_t at = (MOAT_RENDER_LANE - ll) / 2;
        lane[at - 1] = ' ';
        memcpy(lane + at, lab, ll);
        lane[at + ll] = ' ';
        break;
    }
    }
    snprintf(out, outlen, "|%s|", lane);
    return out;
}

/* Print `text` wrapped at WIDTH, the first line after `first` (already indented), the rest
 * indented by `indent` spaces. */
static void wrap(FILE *f, const char *first, int indent, const char *text)
{
    int col = (int)strlen(first);
    fputs(first, f);
    const char *p = text;
    int at_line_start = 1;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        size_t wl = strcspn(p, " ");
        if (wl == 0) {
            break;
        }
        if (!at_line_start && col + 1 + (int)wl > WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            at_line_start = 1;
        }
        if (!at_line_start) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, wl, f);
        col += (int)wl;
        at_line_start = 0;
        p += wl;
    }
    fputc('\n', f);
}

static void note_line(FILE *f, const char *text)
{
    char first[TIME_COL + 8];
    snprintf(first, sizeof(first), "%*s|    ", TIME_COL, "");
    /* Continuation lines keep the client's bar, so the diagram reads as one piece. */
    int col = (int)strlen(first);
    fputs(first, f);
    const char *p = text;
    int start = 1;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        size_t wl = strcspn(p, " ");
        if (wl == 0) {
            break;
        }
        if (!start && col + 1 + (int)wl > WIDTH) {
            fprintf(f, "\n%*s|    ", TIME_COL, "");
            col = TIME_COL + 5;
            start = 1;
        }
        if (!start) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, wl, f);
        col += (int)wl;
        start = 0;
        p += wl;
    }
    fputc('\n', f);
}

const char *moat_client_render_note(const struct moat_trace_msg *m, int version)
{
    int v13 = version == TLS1_3_VERSION;
    int out = m->dir == MOAT_TRACE_OUT;
    if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
        if (v13) {
            return "TLS 1.3: a no-op, only for middleboxes (RFC 8446 D.4)";
        }
        return out ? "TLS 1.2: the client encrypts from here on"
                   : "TLS 1.2: the server encrypts from here on";
    }
    if (m->content_type == SSL3_RT_ALERT) {
        return moat_trace_alert_words(m->alert_desc);
    }
    switch (m->hs_type) {
    case SSL3_MT_CLIENT_HELLO:
        return "offers versions, cipher suites, key shares, SNI, ALPN";
    case SSL3_MT_SERVER_HELLO:
        if (m->hrr) {
            return "the server wants a key share for another group: the client sends a second "
                   "ClientHello (one more round trip)";
        }
        if (v13) {
            return "TLS 1.3 and the server's key share: keys are derived, everything after "
                   "this is encrypted";
        }
        return "TLS 1.2 and the cipher suite; the key share comes later, in clear";
    case SSL3_MT_ENCRYPTED_EXTENSIONS:
        return "TLS 1.3 only: the server's extensions, already encrypted";
    case SSL3_MT_CERTIFICATE:
        if (out) {
            return m->len > 8 ? "the client's certificate, as asked"
                              : "empty: the client has no certificate to give";
        }
        return v13 ? "the chain, encrypted (TLS 1.2 sends it in clear)"
                   : "the chain, in clear text (TLS 1.3 encrypts it)";
    case SSL3_MT_CERTIFICATE_REQUEST:
        return "the server asks for a client certificate";
    case SSL3_MT_SERVER_KEY_EXCHANGE:
        return "TLS 1.2 only: the server's ECDHE share, signed with its key (TLS 1.3 sends the "
               "share in ServerHello)";
    case SSL3_MT_SERVER_DONE:
        return "TLS 1.2 only: the server's flight is over";
    case SSL3_MT_CLIENT_KEY_EXCHANGE:
        return "TLS 1.2: the client's ECDHE share; both sides derive the keys";
    case SSL3_MT_CERTIFICATE_VERIFY:
        return out ? "the client proves it holds its certificate's key"
                   : "TLS 1.3: the server signs the handshake with its certificate's key";
    case SSL3_MT_FINISHED:
        return out ? "the client's MAC over the handshake: done"
                   : "the server's MAC over the whole handshake";
    case SSL3_MT_NEWSESSION_TICKET:
        return v13 ? "a ticket to resume later, sent after the handshake"
                   : "a ticket to resume later (RFC 5077)";
    default:
        return NULL;
    }
}

const char *moat_client_render_hop_note(const struct moat_client_hop *h,
                                        const struct moat_trace_msg *m)
{
    /* An alert's generic words list every cause it can have; the one that ended this
     * connection is glossed with what it meant here. */
    if (m->content_type == SSL3_RT_ALERT && m->alert_level == 2 && h->alert_gloss[0] != '\0' &&
        (int)m->dir == h->alert_gloss_dir) {
        return h->alert_gloss;
    }
    return moat_client_render_note(m, h->version);
}

static void time_col(FILE *f, double ms)
{
    fprintf(f, "%8.2f ms ", ms);
}

const char *moat_client_render_size(size_t n, char *out, size_t outlen)
{
    if (n < 10000) {
        snprintf(out, outlen, "%zu B", n);
    } else {
        snprintf(out, outlen, "%.1f KiB", (double)n / 1024.0);
    }
    return out;
}

const char *moat_client_render_msg_note(const struct moat_client_hop *h,
                                        const struct moat_trace_msg *m)
{
    if (m->content_type == SSL3_RT_HANDSHAKE && m->hs_type == SSL3_MT_SERVER_HELLO && !m->hrr &&
        h->resumed) {
        return h->version == TLS1_3_VERSION
                   ? "TLS 1.3 resumption: the server took the offered ticket (a PSK, with a "
                     "fresh key share); no certificate follows, everything after this is "
                     "encrypted"
                   : "TLS 1.2 resumption: the server took the offered session; no certificate, "
                     "no new key exchange: the old keys are reused";
    }
    if (m->content_type == SSL3_RT_HANDSHAKE && m->hs_type == SSL3_MT_CLIENT_HELLO &&
        m->dir == MOAT_TRACE_OUT && h->sni[0] == '\0') {
        return "offers versions, cipher suites, key shares, ALPN; no SNI, since the URL names "
               "an address and SNI carries only host names (RFC 6066 3)";
    }
    return moat_client_render_hop_note(h, m);
}

static void tls_row(FILE *f, const struct moat_client_hop *h, const struct moat_render_row *r,
                    unsigned *noted)
{
    const struct moat_trace_msg *m = r->m;
    char label[128], arrow[MOAT_RENDER_LANE + 8];
    moat_client_render_row_label(h, r, label, sizeof(label));
    time_col(f, m->ms);
    fprintf(
        f, "%s\n",
        moat_client_render_arrow(moat_client_render_row_arrow(h, r), label, arrow, sizeof(arrow)));
    /* A note once per kind of message and direction: the diagram stays readable. */
    unsigned bit = 0;
    if (m->content_type == SSL3_RT_HANDSHAKE && m->hs_type >= 0 && m->hs_type < 32) {
        bit = 1u << m->hs_type;
    }
    unsigned *slot = &noted[m->dir * 3 + (m->content_type == SSL3_RT_HANDSHAKE            ? 0
                                          : m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC ? 1
                                                                                          : 2)];
    if (m->content_type == SSL3_RT_ALERT) {
        bit = 1u << (m->alert_desc % 32);
    } else if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
        bit = 1;
    }
    if (m->hrr) {
        bit = 1u << 31;
    }
    if (bit == 0 || (*slot & bit) != 0) {
        return;
    }
    *slot |= bit;
    const char *note = moat_client_render_msg_note(h, m);
    if (note != NULL) {
        note_line(f, note);
    }
}

const char *moat_client_render_h2_words(const struct moat_h2_frame *fr)
{
    int out = fr->dir == MOAT_TRACE_OUT;
    switch (fr->type) {
    case MOAT_H2_PREFACE:
        return "every HTTP/2 connection starts with these 24 bytes, then the client's "
               "SETTINGS (RFC 9113 3.4)";
    case MOAT_H2_SETTINGS:
        if (fr->flags & MOAT_H2_FLAG_ACK) {
            return out ? "the server's SETTINGS are in force"
                       : "the client's SETTINGS are in force";
        }
        return out ? "the client's settings for this connection"
                   : "the server's settings, which the client must acknowledge";
    case MOAT_H2_HEADERS:
        switch (fr->block) {
        case MOAT_H2_BLOCK_REQUEST:
            return "the request head, HPACK-compressed; pseudo-header fields carry the method, "
                   "scheme, authority and path";
        case MOAT_H2_BLOCK_INTERIM:
            return "an interim (1xx) answer; the final one follows";
        case MOAT_H2_BLOCK_TRAILERS:
            return "trailer fields, after the body";
        default:
            return "the response head, HPACK-compressed; no reason phrase in HTTP/2";
        }
    case MOAT_H2_DATA:
        return out ? "the request body"
                   : "the response body; each byte counts against the "
                     "flow-control windows";
    case MOAT_H2_WINDOW_UPDATE:
        return "flow control: the receiver lets the sender send this many more bytes (stream 0: "
               "the whole connection)";
    case MOAT_H2_PING:
        return "a liveness check; the other side answers with PING ACK";
    case MOAT_H2_GOAWAY:
        return out && fr->error_code == 0 ? "the client is done: it opens no more streams" : NULL;
    default:
        return NULL;
    }
}

#define H2_FIELD_LINES 16 /* field lines shown under a HEADERS arrow */

static void h2_row(FILE *f, const struct moat_client_hop *h, const struct moat_render_row *r,
                   unsigned *seen)
{
    const struct moat_h2_frame *fr = r->f;
    char label[160], arrow[MOAT_RENDER_LANE + 8], note[700];
    moat_client_render_row_label(h, r, label, sizeof(label));
    time_col(f, fr->ms);
    fprintf(
        f, "%s\n",
        moat_client_render_arrow(moat_client_render_row_arrow(h, r), label, arrow, sizeof(arrow)));
    const char *p = fr->fields;
    size_t shown = 0;
    while (p != NULL && *p != '\0' && shown < H2_FIELD_LINES) {
        size_t l = strcspn(p, "\n");
        moat_client__fmt(note, sizeof(note), "%.*s", (int)(l > 100 ? 100 : l), p);
        note_line(f, note);
        shown++;
        p += l + (p[l] == '\n');
    }
    if (fr->nfields > shown) {
        moat_client__fmt(note, sizeof(note), "... %zu more field%s (see HTTP below)",
                         fr->nfields - shown, fr->nfields - shown == 1 ? "" : "s");
        note_line(f, note);
    }
    if (moat_h2_frame_note(fr, note, sizeof(note))[0] != '\0') {
        note_line(f, note);
    }
    unsigned key = fr->type == MOAT_H2_PREFACE ? 10 : fr->type < 10 ? fr->type : 15;
    if (fr->type == MOAT_H2_SETTINGS && (fr->flags & MOAT_H2_FLAG_ACK)) {
        key = 11;
    }
    if (fr->type == MOAT_H2_HEADERS) {
        key = 16 + (unsigned)fr->block;
    }
    const char *words = moat_client_render_h2_words(fr);
    if (words != NULL && (seen[fr->dir ? 1 : 0] & (1u << key)) == 0) {
        seen[fr->dir ? 1 : 0] |= 1u << key;
        note_line(f, words);
    }
}

static int cmp_rows(const struct moat_render_row *a, const struct moat_render_row *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }
    return (int)a->kind - (int)b->kind;
}

struct moat_render_row *moat_client_render_rows(const struct moat_client_hop *h, size_t *count)
{
    *count = 0;
    size_t cap = h->trace.n + h->h2.n + 9;
    struct moat_render_row *rows = calloc(cap, sizeof(*rows));
    if (rows == NULL) {
        return NULL;
    }
    size_t n = 0;
    if (h->stage >= MOAT_STAGE_TCP && h->peer[0] != '\0') {
        rows[n++] = (struct moat_render_row){h->tcp_start_ms, MOAT_ROW_TCP, NULL, NULL};
    }
    for (size_t i = 0; i < h->trace.n; i++) {
        rows[n++] =
            (struct moat_render_row){h->trace.msgs[i].ms, MOAT_ROW_TLS, &h->trace.msgs[i], NULL};
    }
    for (size_t i = 0; i < h->h2.n; i++) {
        rows[n++] =
            (struct moat_render_row){h->h2.frames[i].ms, MOAT_ROW_H2, NULL, &h->h2.frames[i]};
    }
    if (h->h2.not_recorded > 0) {
        rows[n++] =
            (struct moat_render_row){h->h2.not_recorded_last_ms, MOAT_ROW_H2_MORE, NULL, NULL};
    }
    if (h->url.https && h->trace.nfirst_in > 0 &&
        (h->trace.first_in[0] < 20 || h->trace.first_in[0] > 24)) {
        rows[n++] = (struct moat_render_row){h->trace.first_in_ms, MOAT_ROW_RAW, NULL, NULL};
    }
    /* HTTP/2's frames are the request and the response already. */
    if (h->req_head != NULL && !h->http2) {
        rows[n++] = (struct moat_render_row){h->req_ms, MOAT_ROW_REQ, NULL, NULL};
    }
    if (h->resp_head != NULL && !h->http2) {
        rows[n++] = (struct moat_render_row){h->first_byte_ms, MOAT_ROW_RESP, NULL, NULL};
        if (h->done_ms > 0) {
            rows[n++] = (struct moat_render_row){h->done_ms, MOAT_ROW_DONE, NULL, NULL};
        }
    }
    if (h->cause != MOAT_CC_OK && h->cause != MOAT_CC_HTTP_STATUS) {
        rows[n++] = (struct moat_render_row){h->total_ms, MOAT_ROW_FAIL, NULL, NULL};
    }
    /* Insertion sort: the rows are nearly in order already, and stable. */
    for (size_t i = 1; i < n; i++) {
        struct moat_render_row r = rows[i];
        size_t j = i;
        while (j > 0 && cmp_rows(&rows[j - 1], &r) > 0) {
            rows[j] = rows[j - 1];
            j--;
        }
        rows[j] = r;
    }
    *count = n;
    return rows;
}

enum moat_render_arrow moat_client_render_row_arrow(const struct moat_client_hop *h,
                                                    const struct moat_render_row *r)
{
    int enc = h->url.https;
    switch (r->kind) {
    case MOAT_ROW_TCP:
        return MOAT_ARROW_BOTH;
    case MOAT_ROW_TLS:
        enc = r->m->encrypted;
        return r->m->dir == MOAT_TRACE_OUT ? (enc ? MOAT_ARROW_OUT_ENC : MOAT_ARROW_OUT)
                                           : (enc ? MOAT_ARROW_IN_ENC : MOAT_ARROW_IN);
    case MOAT_ROW_H2:
        return r->f->dir == MOAT_TRACE_OUT ? MOAT_ARROW_OUT_ENC : MOAT_ARROW_IN_ENC;
    case MOAT_ROW_RAW:
        return MOAT_ARROW_IN;
    case MOAT_ROW_REQ:
        return enc ? MOAT_ARROW_OUT_ENC : MOAT_ARROW_OUT;
    case MOAT_ROW_RESP:
    case MOAT_ROW_DONE:
        return enc ? MOAT_ARROW_IN_ENC : MOAT_ARROW_IN;
    default:
        return MOAT_ARROW_COUNT;
    }
}

/* The server's first bytes as printable text up to the first line end (24 at most). */
static void raw_text(const struct moat_client_hop *h, char *out)
{
    size_t k = 0;
    for (; k < h->trace.nfirst_in && k < 24; k++) {
        unsigned char c = h->trace.first_in[k];
        if (c == '\r' || c == '\n') {
            break;
        }
        out[k] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
    }
    out[k] = '\0';
}

const char *moat_client_render_row_label(const struct moat_client_hop *h,
                                         const struct moat_render_row *r, char *out, size_t outlen)
{
    char nb[32], sz[32];
    out[0] = '\0';
    switch (r->kind) {
    case MOAT_ROW_TCP:
        if (h->tcp_ok) {
            moat_client__fmt(out, outlen, "TCP connect: SYN, SYN-ACK, ACK  %.2f ms", h->tcp_ms);
        } else {
            moat_client__fmt(out, outlen, "TCP connect to %s failed", h->peer);
        }
        break;
    case MOAT_ROW_TLS: {
        const struct moat_trace_msg *m = r->m;
        moat_client_render_size(m->len, sz, sizeof(sz));
        if (m->content_type == SSL3_RT_ALERT) {
            moat_client__fmt(out, outlen, "ALERT %s%s",
                             moat_trace_alert_name(m->alert_desc, nb, sizeof(nb)),
                             m->alert_level == 2 ? " (fatal)" : "");
        } else if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
            moat_client__fmt(out, outlen, "ChangeCipherSpec  %s", sz);
        } else {
            moat_client__fmt(out, outlen, "%s  %s",
                             moat_trace_hs_name(m->hs_type, m->hrr, nb, sizeof(nb)), sz);
        }
        break;
    }
    case MOAT_ROW_H2:
        moat_h2_frame_label(r->f, out, outlen);
        break;
    case MOAT_ROW_H2_MORE:
        moat_client_render_size((size_t)h->h2.not_recorded_bytes, sz, sizeof(sz));
        moat_client__fmt(out, outlen, "... %zu more frames (%s of payload), not listed",
                         h->h2.not_recorded, sz);
        break;
    case MOAT_ROW_RAW: {
        char first[MOAT_TRACE_FIRST_BYTES + 1];
        raw_text(h, first);
        moat_client__fmt(out, outlen, "\"%s\" (not TLS)", first);
        break;
    }
    case MOAT_ROW_REQ: {
        size_t hl = strcspn(h->req_head, "\r\n");
        moat_client_render_size(strlen(h->req_head), sz, sizeof(sz));
        moat_client__fmt(out, outlen, "%.*s  %s", (int)(hl > 40 ? 40 : hl), h->req_head, sz);
        break;
    }
    case MOAT_ROW_RESP:
        moat_client_render_size(strlen(h->resp_head), sz, sizeof(sz));
        moat_client__fmt(out, outlen, "%d %s  head %s", h->status, h->reason, sz);
        break;
    case MOAT_ROW_DONE: {
        moat_client_render_size((size_t)h->body_bytes, sz, sizeof(sz));
        const char *how = h->body_framing == 1   ? "Content-Length"
                          : h->body_framing == 2 ? "chunked"
                          : h->body_framing == 3 ? "until close"
                                                 : "no body";
        moat_client__fmt(out, outlen, "body %s (%s)", sz, how);
        break;
    }
    case MOAT_ROW_FAIL:
    default: {
        char what[128];
        moat_client__fmt(out, outlen, "stopped here: %s",
                         moat_client_render_failure(h, what, sizeof(what)));
        break;
    }
    }
    return out;
}

const char *moat_client_render_row_note(const struct moat_client_hop *h,
                                        const struct moat_render_row *r, char *buf, size_t buflen)
{
    switch (r->kind) {
    case MOAT_ROW_TLS:
        return moat_client_render_msg_note(h, r->m);
    case MOAT_ROW_H2:
        return moat_client_render_h2_words(r->f);
    case MOAT_ROW_TCP:
        if (h->tcp_ok && h->tcp_failed > 0) {
            moat_client__fmt(buf, buflen, "%zu address%s refused or failed before this one",
                             h->tcp_failed, h->tcp_failed == 1 ? "" : "es");
            return buf;
        }
        return NULL;
    case MOAT_ROW_REQ:
        return h->url.https ? "the HTTP request, as TLS application data"
                            : "in clear text: anyone on the path can read and change it";
    default:
        return NULL;
    }
}

const char *moat_client_render_failure(const struct moat_client_hop *h, char *out, size_t outlen)
{
    if (h->cause == MOAT_CC_CERT) {
        moat_client__fmt(out, outlen, "certificate %s", moat_verify_kind_name(h->vkind));
    } else {
        moat_client__fmt(out, outlen, "%s", moat_client_cause_name(h->cause));
    }
    return out;
}

static void diagram(FILE *f, const struct moat_client_hop *h)
{
    char arrow[MOAT_RENDER_LANE + 8], label[256], auth[300];
    moat_client_url_authority(&h->url, auth, sizeof(auth));
    fprintf(f, "%*sclient%*s%s\n", TIME_COL, "", MOAT_RENDER_LANE - 6 + 2 - (int)strlen("server"),
            "", "server");
    char where[400];
    snprintf(where, sizeof(where), "%s%s%s%s", h->url.host, h->peer[0] ? " (" : "", h->peer,
             h->peer[0] ? ")" : "");
    int pad = TIME_COL + MOAT_RENDER_LANE + 2 - (int)strlen(where);
    fprintf(f, "%*s%s\n", pad > 0 ? pad : 0, "", where);
    /* DNS: not a message between these two, so it is a line of its own above the bars. */
    if (h->dns_from_resolve) {
        fprintf(f, "   DNS     %s -> %s (from --resolve, no lookup)\n", h->url.host, h->addrs[0]);
    } else if (h->url.host_ip) {
        fprintf(f, "   DNS     none needed: %s is an address\n", h->url.host);
    } else if (h->naddrs > 0) {
        char list[600] = "";
        for (size_t i = 0; i < h->naddrs; i++) {
            moat_client__append(list, sizeof(list), "%s%s", i ? ", " : "", h->addrs[i]);
        }
        char first[64];
        snprintf(first, sizeof(first), "   DNS     ");
        char text[800];
        moat_client__fmt(text, sizeof(text), "%s -> %s (%.2f ms)", h->url.host, list, h->dns_ms);
        wrap(f, first, 11, text);
    } else if (h->stage == MOAT_STAGE_DNS) {
        fprintf(f, "   DNS     %s -> no address (%.2f ms)\n", h->url.host, h->dns_ms);
    }
    size_t n = 0;
    struct moat_render_row *rows = moat_client_render_rows(h, &n);
    if (rows == NULL) {
        return;
    }
    unsigned noted[6] = {0};
    unsigned h2_seen[2] = {0};
    for (size_t i = 0; i < n; i++) {
        const struct moat_render_row *r = &rows[i];
        switch (r->kind) {
        case MOAT_ROW_TLS:
            tls_row(f, h, r, noted);
            break;
        case MOAT_ROW_H2:
            h2_row(f, h, r, h2_seen);
            break;
        case MOAT_ROW_H2_MORE:
            time_col(f, r->ms);
            fprintf(f, "|    %s\n", moat_client_render_row_label(h, r, label, sizeof(label)));
            break;
        case MOAT_ROW_FAIL:
            time_col(f, r->ms);
            fprintf(f, "   X  %s\n", moat_client_render_row_label(h, r, label, sizeof(label)));
            break;
        default: {
            char t[128];
            moat_client_render_row_label(h, r, label, sizeof(label));
            time_col(f, r->ms);
            fprintf(f, "%s\n",
                    moat_client_render_arrow(moat_client_render_row_arrow(h, r), label, arrow,
                                             sizeof(arrow)));
            const char *note = moat_client_render_row_note(h, r, t, sizeof(t));
            if (note != NULL) {
                note_line(f, note);
            }
            break;
        }
        }
    }
    free(rows);
}

static void kv(FILE *f, const char *k, const char *v)
{
    char first[64];
    snprintf(first, sizeof(first), "  %-12s", k);
    wrap(f, first, 14, v);
}

size_t moat_client_render_negotiated(const struct moat_client_hop *h, struct moat_render_kv *out)
{
    if (!h->url.https || h->version == 0) {
        return 0;
    }
    size_t tickets = 0;
    for (size_t i = 0; i < h->trace.n; i++) {
        const struct moat_trace_msg *m = &h->trace.msgs[i];
        tickets += m->dir == MOAT_TRACE_IN && m->content_type == SSL3_RT_HANDSHAKE &&
                   m->hs_type == SSL3_MT_NEWSESSION_TICKET;
    }
    char how[120];
    if (h->resumed) {
        snprintf(how, sizeof(how), "resumed from connection %d (abbreviated handshake)",
                 h->resume_offered);
    } else if (h->resume_offered) {
        snprintf(how, sizeof(how), "new: the server did not take connection %d's session",
                 h->resume_offered);
    } else {
        snprintf(how, sizeof(how), "new (full handshake, not resumed)");
    }
    const char *v[MOAT_RENDER_NEGOTIATED] = {
        h->version == TLS1_3_VERSION   ? "TLS 1.3"
        : h->version == TLS1_2_VERSION ? "TLS 1.2"
                                       : h->version_name,
        h->cipher[0] ? h->cipher : "?",
        h->group[0]  ? h->group
        : h->resumed ? "none: TLS 1.2 resumption reuses the old keys"
                     : "(not known: the handshake stopped early)",
        h->sigalg[0] ? h->sigalg
        : h->resumed ? "none: a resumed session proves itself with its keys"
                     : "(none seen)",
        h->alpn[0] ? h->alpn : "none (the server did not pick a protocol)",
        h->sni[0] ? h->sni : "none sent",
        how,
    };
    static const char *const keys[MOAT_RENDER_NEGOTIATED] = {
        "version", "cipher", "key group", "signature", "ALPN", "SNI", "session"};
    for (size_t i = 0; i < MOAT_RENDER_NEGOTIATED; i++) {
        out[i].key = keys[i];
        moat_client__fmt(out[i].value, sizeof(out[i].value), "%s%s", v[i],
                         i + 1 == MOAT_RENDER_NEGOTIATED && tickets
                             ? "; the server gave session tickets for next time"
                             : "");
    }
    return MOAT_RENDER_NEGOTIATED;
}

static void negotiated(FILE *f, const struct moat_client_hop *h)
{
    struct moat_render_kv kvs[MOAT_RENDER_NEGOTIATED];
    size_t n = moat_client_render_negotiated(h, kvs);
    if (n == 0) {
        return;
    }
    fprintf(f, "\nNegotiated\n");
    for (size_t i = 0; i < n; i++) {
        kv(f, kvs[i].key, kvs[i].value);
    }
}

const char *moat_client_render_validity(const struct moat_client_cert *c, char *out, size_t outlen)
{
    if (c->days_left < 0) {
        moat_client__fmt(out, outlen, "%s to %s (EXPIRED %ld days ago)", c->not_before,
                         c->not_after, -c->days_left);
    } else if (c->days_to_start > 0) {
        moat_client__fmt(out, outlen, "%s to %s (NOT YET VALID: starts in %ld days)", c->not_before,
                         c->not_after, c->days_to_start);
    } else {
        moat_client__fmt(out, outlen, "%s to %s (%ld days left)", c->not_before, c->not_after,
                         c->days_left);
    }
    return out;
}

static void cert_block(FILE *f, const struct moat_client_cert *c, size_t i, const char *tag)
{
    char first[32];
    snprintf(first, sizeof(first), "  [%zu] ", i);
    wrap(f, first, 6, c->subject);
    char t[400];
    kv(f, "  issuer", c->issuer);
    kv(f, "  valid", moat_client_render_validity(c, t, sizeof(t)));
    if (!c->is_ca || c->names[0] != '\0') {
        kv(f, "  names", c->names[0] ? c->names : "none (no subjectAltName)");
    }
    snprintf(t, sizeof(t), "%s, signed %s%s%s", c->key, c->sig, c->is_ca ? ", CA" : "",
             c->self_signed ? ", self-signed" : "");
    kv(f, "  key", t);
    if (tag != NULL) {
        kv(f, "", tag);
    }
}

int moat_client_render_was_sent(const struct moat_client_hop *h, const struct moat_client_cert *c)
{
    for (size_t i = 0; i < h->nsent; i++) {
        if (strcmp(h->sent[i].sha256, c->sha256) == 0) {
            return 1;
        }
    }
    return 0;
}

/* What the issuer lookup fetched and concluded (issuer.c): a third party, not the server, so
 * it is a section of its own rather than arrows in the diagram. */
static void issuer_lookup(FILE *f, const struct moat_client_hop *h)
{
    if (h->naia == 0 && h->aia_note[0] == '\0') {
        return;
    }
    fprintf(f, "\nIssuer lookup (the certificate's AIA caIssuers URL, RFC 5280 4.2.2.1)\n");
    for (size_t i = 0; i < h->naia; i++) {
        const struct moat_client_aia_fetch *a = &h->aia[i];
        char t[1400];
        moat_client__fmt(t, sizeof(t), "the issuer of %s was fetched from %s%s%s", a->for_cert,
                         a->url, a->final_url[0] ? ", redirected to " : "", a->final_url);
        kv(f, "fetched", t);
        if (a->ok) {
            moat_client__fmt(t, sizeof(t),
                             "got it: HTTP %d, %zu bytes, %s: %s (issued by %s%s) "
                             "in %.1f ms",
                             a->status, a->bytes, a->form, a->cert.subject, a->cert.issuer,
                             a->cert.self_signed ? ", self-signed" : "", a->ms);
        } else {
            moat_client__fmt(t, sizeof(t), "failed after %.1f ms: %s", a->ms, a->error);
        }
        kv(f, "", t);
    }
    if (h->aia_note[0] != '\0') {
        kv(f, h->naia ? "then" : "nothing", h->aia_note);
    }
    if (h->issuer_summary[0] != '\0') {
        kv(f, "result", h->issuer_summary);
    }
}

static void certificates(FILE *f, const struct moat_client_hop *h, const char *trust)
{
    if (!h->url.https || (h->nsent == 0 && h->npath == 0)) {
        return;
    }
    fprintf(f, "\nCertificates sent by the server (%zu, in the order sent)\n", h->nsent);
    for (size_t i = 0; i < h->nsent; i++) {
        cert_block(f, &h->sent[i], i, NULL);
    }
    if (h->npath == 0) {
        return;
    }
    if (h->path_complete) {
        fprintf(f, "\nVerified path (leaf to trusted root)\n");
    } else {
        fprintf(f, "\nPath built before verification stopped\n");
    }
    for (size_t i = 0; i < h->npath; i++) {
        const struct moat_client_cert *c = &h->path[i];
        char line[400];
        const char *tag = "";
        if (i + 1 == h->npath && h->path_complete) {
            tag = moat_client_render_was_sent(h, c) ? "  [trusted root; the server also sent it]"
                                                    : "  [trusted root, from this machine]";
        } else if (!moat_client_render_was_sent(h, c)) {
            tag = "  [not sent: found locally]";
        }
        snprintf(line, sizeof(line), "%s%s", c->subject, tag);
        char first[32];
        snprintf(first, sizeof(first), "  %s", i == 0 ? "   " : "<- ");
        wrap(f, first, 7, line);
    }
    if (h->path_complete && h->root_source[0] != '\0') {
        char t[400];
        snprintf(t, sizeof(t), "(the root comes from %s)", h->root_source);
        wrap(f, "       ", 7, t);
    }
    if (!h->path_complete) {
        char t[600];
        snprintf(t, sizeof(t), "(trusted here: %s)", trust);
        wrap(f, "       ", 7, t);
    }
}

static void head_lines(FILE *f, const char *head, const char *mark)
{
    const char *p = head;
    while (*p != '\0') {
        size_t l = strcspn(p, "\r\n");
        if (l == 0) {
            break;
        }
        fprintf(f, "  %s %.*s\n", mark, (int)(l > 200 ? 200 : l), p);
        p += l;
        while (*p == '\r' || *p == '\n') {
            p++;
        }
    }
}

const char *moat_client_render_framing(int body_framing)
{
    static const char *const words[] = {
        [0] = "none",
        [1] = "Content-Length",
        [2] = "chunked",
        [3] = "read until the server closed",
        [MOAT_CLIENT_BODY_H2] = "HTTP/2 DATA frames",
    };
    if (body_framing < 0 || (size_t)body_framing >= sizeof(words) / sizeof(words[0]) ||
        words[body_framing] == NULL) {
        return "none";
    }
    return words[body_framing];
}

static void http_part(FILE *f, const struct moat_client_hop *h)
{
    if (h->req_head == NULL) {
        return;
    }
    fprintf(f, "\nHTTP\n");
    head_lines(f, h->req_head, ">");
    if (h->resp_head != NULL) {
        head_lines(f, h->resp_head, "<");
        fprintf(f, "  body: %llu bytes (%s)\n", (unsigned long long)h->body_bytes,
                moat_client_render_framing(h->body_framing));
    }
}

static void timings(FILE *f, const struct moat_client_hop *h)
{
    fprintf(f, "\nTimings (ms since the start)\n");
    char t[400] = "";
    if (!h->url.host_ip) {
        moat_client__append(t, sizeof(t), "DNS %.2f", h->dns_ms);
    }
    if (h->tcp_ok) {
        moat_client__append(t, sizeof(t), "%sTCP connect %.2f", t[0] ? " | " : "", h->tcp_ms);
    }
    if (h->tls_start_ms > 0) {
        moat_client__append(t, sizeof(t), "%sTLS handshake %.2f", t[0] ? " | " : "", h->tls_ms);
    }
    if (h->req_head != NULL) {
        moat_client__append(t, sizeof(t), "%srequest sent at %.2f", t[0] ? " | " : "", h->req_ms);
    }
    if (h->first_byte_ms > 0 && h->resp_head != NULL) {
        moat_client__append(t, sizeof(t), "%sfirst byte at %.2f (waited %.2f)", t[0] ? " | " : "",
                            h->first_byte_ms, h->first_byte_ms - h->req_ms);
    }
    moat_client__append(t, sizeof(t), "%stotal %.2f", t[0] ? " | " : "", h->total_ms);
    wrap(f, "  ", 2, t);
}

static void outcome(FILE *f, const struct moat_client_result *r, const struct moat_client_hop *h)
{
    fprintf(f, "\n");
    if (h->cause == MOAT_CC_OK) {
        fprintf(f, "Result: OK, %d %s in %.1f ms", h->status, h->reason, h->total_ms);
        if (r->nhops > 1) {
            double all = 0;
            for (size_t i = 0; i < r->nhops; i++) {
                all += r->hops[i].total_ms;
            }
            fprintf(f, " (%zu connections, %.1f ms in all)", r->nhops, all);
        }
        fputc('\n', f);
    } else if (h->cause == MOAT_CC_HTTP_STATUS) {
        fprintf(f, "Result: the server answered %d %s (exit code %d)\n", h->status, h->reason,
                moat_client_cause_exit(h->cause));
    } else {
        char what[128];
        moat_client_render_failure(h, what, sizeof(what));
        fprintf(f, "FAILED at %s: %s (exit code %d)\n", moat_client_stage_name(h->stage), what,
                moat_client_cause_exit(h->cause));
        wrap(f, "  cause  ", 9, moat_client_hop_message(h));
        if (h->detail[0] != '\0') {
            wrap(f, "  detail ", 9, h->detail);
        }
        wrap(f, "  fix    ", 9, moat_client_hop_fix(h));
    }
    if (r->insecure && h->verify_code != 0) {
        char t[1400];
        moat_client__fmt(t, sizeof(t),
                         "--insecure: the certificate failed: %s: %s. The connection went "
                         "on anyway: nothing here is protected against an attacker",
                         moat_verify_kind_name(h->vkind), h->detail);
        wrap(f, "  WARNING ", 10, t);
    } else if (r->insecure) {
        wrap(f, "  WARNING ", 10, "--insecure: the certificate was not enforced (it did verify)");
    }
}

void moat_client_render_text(const struct moat_client_result *r, FILE *f)
{
    for (size_t i = 0; i < r->nhops; i++) {
        const struct moat_client_hop *h = &r->hops[i];
        if (i > 0) {
            fprintf(f, "\n%s\n",
                    "------------------------------------------------------------"
                    "------------------");
            if (h->again) {
                fprintf(f,
                        "Connection %zu: the same request again, offering connection %zu's "
                        "session (--resume)\n",
                        i + 1, i);
            } else {
                fprintf(f, "Redirect %zu: following %d to %s\n", i, r->hops[i - 1].status,
                        h->url_text);
            }
        }
        fprintf(f, "moat trace %s\n", h->url_text);
        if (h->url.https) {
            fprintf(f, "  legend: ----> in clear   ====> encrypted   time = ms since the "
                       "start\n\n");
        } else {
            fprintf(f, "  plain HTTP: nothing is encrypted   time = ms since the start\n\n");
        }
        diagram(f, h);
        negotiated(f, h);
        const struct moat_client_hop *prev = i > 0 ? &r->hops[i - 1] : NULL;
        if (h->resumed) {
            char t[160];
            snprintf(t, sizeof(t),
                     "none crossed: the session was resumed (the chain was "
                     "verified on connection %d)",
                     h->resume_offered);
            fputc('\n', f);
            wrap(f, "Certificates: ", 2, t);
        } else if (prev != NULL && prev->nsent > 0 && h->nsent == prev->nsent &&
                   h->path_complete == prev->path_complete &&
                   strcmp(h->sent[0].sha256, prev->sent[0].sha256) == 0) {
            fprintf(f, "\nCertificates: the same chain as above, verified the same way\n");
        } else {
            certificates(f, h, r->trust_desc);
        }
        issuer_lookup(f, h);
        http_part(f, h);
        timings(f, h);
        if (i + 1 == r->nhops) {
            outcome(f, r, h);
        }
    }
    if (r->note[0] != '\0') {
        wrap(f, "Note: ", 6, r->note);
    }
}
