/*
 * json.c: the trace as one JSON document, built with jansson from the same recorded facts as
 * the text (render.c), so the two can never disagree about what happened.
 */
#include "client/json.h"

#include "client/render.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

/* jansson's setters return -1 only on allocation failure; a NULL value makes them fail too,
 * so a document built under memory pressure comes out NULL at the end (checked once). */
static void set(json_t *o, const char *k, json_t *v)
{
    if (o != NULL && v != NULL) {
        json_object_set_new(o, k, v);
    }
}

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *names_array(const char *names)
{
    json_t *a = json_array();
    const char *p = names;
    while (a != NULL && p != NULL && *p != '\0') {
        size_t l = strcspn(p, ",");
        json_array_append_new(a, json_stringn(p, l));
        p += l;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    return a;
}

static json_t *cert_json(const struct moat_client_cert *c)
{
    json_t *o = json_object();
    set(o, "subject", json_string(c->subject));
    set(o, "issuer", json_string(c->issuer));
    set(o, "not_before", json_string(c->not_before));
    set(o, "not_after", json_string(c->not_after));
    set(o, "days_left", json_integer(c->days_left));
    set(o, "names", names_array(c->names));
    set(o, "key", json_string(c->key));
    set(o, "signature_algorithm", json_string(c->sig));
    set(o, "is_ca", json_boolean(c->is_ca));
    set(o, "self_signed", json_boolean(c->self_signed));
    set(o, "sha256_prefix", json_string(c->sha256));
    return o;
}

static json_t *certs_json(const struct moat_client_cert *c, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, cert_json(&c[i]));
    }
    return a;
}

static json_t *msg_json(const struct moat_client_hop *h, const struct moat_trace_msg *m)
{
    char nb[32];
    json_t *o = json_object();
    set(o, "ms", json_real(m->ms));
    set(o, "direction",
        json_string(m->dir == MOAT_TRACE_OUT ? "client->server" : "server->client"));
    const char *record = m->content_type == SSL3_RT_HANDSHAKE            ? "handshake"
                         : m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC ? "change_cipher_spec"
                                                                         : "alert";
    set(o, "record", json_string(record));
    set(o, "content_type", json_integer(m->content_type));
    if (m->content_type == SSL3_RT_HANDSHAKE) {
        set(o, "type", json_string(moat_trace_hs_name(m->hs_type, m->hrr, nb, sizeof(nb))));
        set(o, "handshake_type", json_integer(m->hs_type));
    } else if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
        set(o, "type", json_string("ChangeCipherSpec"));
    } else {
        set(o, "type", json_string("Alert"));
        json_t *a = json_object();
        set(a, "level", json_string(m->alert_level == 2 ? "fatal" : "warning"));
        set(a, "description", json_string(moat_trace_alert_name(m->alert_desc, nb, sizeof(nb))));
        set(a, "code", json_integer(m->alert_desc));
        set(o, "alert", a);
    }
    set(o, "size", json_integer((json_int_t)m->len));
    set(o, "encrypted", json_boolean(m->encrypted));
    set(o, "post_handshake", json_boolean(m->post_handshake));
    /* OpenSSL reports a received ChangeCipherSpec only through its record header. */
    set(o, "from_record_header", json_boolean(m->from_header));
    const char *note = moat_client_render_hop_note(h, m);
    set(o, "note", str_or_null(note));
    return o;
}

static json_t *fields_json(const char *head)
{
    json_t *a = json_array();
    const char *p = head ? head + strcspn(head, "\n") : NULL;
    while (a != NULL && p != NULL && *p != '\0') {
        while (*p == '\r' || *p == '\n') {
            p++;
        }
        size_t l = strcspn(p, "\r\n");
        if (l == 0) {
            break;
        }
        /* HTTP/2's pseudo-header fields (":method: GET") start with a colon of their own. */
        size_t skip = p[0] == ':' ? 1 : 0;
        const char *colon = memchr(p + skip, ':', l - skip);
        if (colon != NULL) {
            const char *v = colon + 1;
            while (v < p + l && (*v == ' ' || *v == '\t')) {
                v++;
            }
            json_t *pair = json_array();
            json_array_append_new(pair, json_stringn(p, (size_t)(colon - p)));
            json_array_append_new(pair, json_stringn(v, (size_t)(p + l - v)));
            json_array_append_new(a, pair);
        }
        p += l;
    }
    return a;
}

static json_t *first_line(const char *head)
{
    return head ? json_stringn(head, strcspn(head, "\r\n")) : json_null();
}

static json_t *issuer_json(const struct moat_client_hop *h)
{
    if (h->issuer_diag == MOAT_ISSUER_NONE) {
        return json_null();
    }
    json_t *o = json_object();
    set(o, "diagnosis", json_string(moat_client_issuer_diag_name(h->issuer_diag)));
    set(o, "summary", str_or_null(h->issuer_summary));
    set(o, "root", str_or_null(h->issuer_root));
    set(o, "root_source", str_or_null(h->issuer_root_from));
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < h->naia; i++) {
        const struct moat_client_aia_fetch *f = &h->aia[i];
        json_t *x = json_object();
        set(x, "url", json_string(f->url));
        set(x, "final_url", str_or_null(f->final_url));
        set(x, "for", json_string(f->for_cert));
        set(x, "ok", json_boolean(f->ok));
        set(x, "status", f->status ? json_integer(f->status) : json_null());
        set(x, "bytes", json_integer((json_int_t)f->bytes));
        set(x, "ms", json_real(f->ms));
        set(x, "form", str_or_null(f->form));
        set(x, "certificate", f->ok ? cert_json(&f->cert) : json_null());
        set(x, "error", str_or_null(f->error));
        json_array_append_new(a, x);
    }
    set(o, "fetches", a);
    set(o, "note", str_or_null(h->aia_note));
    return o;
}

static json_t *tls_json(const struct moat_client_hop *h)
{
    if (!h->url.https || h->tls_start_ms <= 0) {
        return json_null();
    }
    json_t *o = json_object();
    set(o, "sni", str_or_null(h->sni));
    set(o, "handshake_done", json_boolean(h->tls_done));
    set(o, "version", str_or_null(h->version_name));
    set(o, "cipher", str_or_null(h->cipher));
    set(o, "group", str_or_null(h->group));
    set(o, "signature_scheme", str_or_null(h->sigalg));
    set(o, "alpn", str_or_null(h->alpn));
    set(o, "resumed", json_boolean(h->resumed));
    set(o, "resume_offered_from",
        h->resume_offered ? json_integer(h->resume_offered) : json_null());
    json_t *msgs = json_array();
    for (size_t i = 0; msgs != NULL && i < h->trace.n; i++) {
        json_array_append_new(msgs, msg_json(h, &h->trace.msgs[i]));
    }
    set(o, "messages", msgs);
    set(o, "bytes_in", json_integer((json_int_t)h->trace.bytes_in));
    set(o, "bytes_out", json_integer((json_int_t)h->trace.bytes_out));
    set(o, "certificates_sent", certs_json(h->sent, h->nsent));
    set(o, "verified_path", certs_json(h->path, h->npath));
    set(o, "path_complete", json_boolean(h->path_complete));
    set(o, "root_source", str_or_null(h->root_source));
    json_t *v = json_object();
    set(v, "ok", json_boolean(h->verify_code == 0 && h->nsent > 0));
    set(v, "kind", json_string(moat_verify_kind_name(h->vkind)));
    set(v, "openssl_code", json_integer(h->verify_code));
    set(v, "depth", json_integer(h->verify_depth));
    set(o, "verify", v);
    set(o, "issuer_check", issuer_json(h));
    set(o, "certificate_requested", json_boolean(h->cert_requested));
    set(o, "client_certificate_sent", json_boolean(h->client_cert_sent));
    set(o, "openssl_reason", str_or_null(h->ssl_reason));
    return o;
}

static json_t *h2_fields_json(const char *text)
{
    json_t *a = json_array();
    const char *p = text;
    while (a != NULL && p != NULL && *p != '\0') {
        size_t l = strcspn(p, "\n");
        size_t skip = p[0] == ':' ? 1 : 0;
        const char *colon = l > skip ? memchr(p + skip, ':', l - skip) : NULL;
        if (colon != NULL) {
            const char *v = colon + 1 < p + l && colon[1] == ' ' ? colon + 2 : colon + 1;
            json_t *pair = json_array();
            json_array_append_new(pair, json_stringn(p, (size_t)(colon - p)));
            json_array_append_new(pair, json_stringn(v, (size_t)(p + l - v)));
            json_array_append_new(a, pair);
        }
        p += l + (p[l] == '\n');
    }
    return a;
}

static json_t *h2_frame_json(const struct moat_h2_frame *f)
{
    char b[64], note[700];
    json_t *o = json_object();
    set(o, "ms", json_real(f->ms));
    set(o, "direction",
        json_string(f->dir == MOAT_TRACE_OUT ? "client->server" : "server->client"));
    set(o, "type", json_string(moat_h2_type_name(f->type, b, sizeof(b))));
    set(o, "stream", f->stream_id >= 0 ? json_integer(f->stream_id) : json_null());
    set(o, "flags", json_string(moat_h2_flags_text(f->type, f->flags, b, sizeof(b))));
    set(o, "length", json_integer((json_int_t)f->length));
    set(o, "count", json_integer((json_int_t)f->count));
    if (f->count > 1) {
        set(o, "bytes", json_integer((json_int_t)f->bytes));
        set(o, "last_ms", json_real(f->last_ms));
    }
    switch (f->type) {
    case MOAT_H2_SETTINGS: {
        json_t *st = json_object();
        for (size_t i = 0; i < f->nsettings && i < MOAT_H2_MAX_SETTINGS; i++) {
            set(st, moat_h2_setting_name(f->settings[i].id, b, sizeof(b)),
                json_integer(f->settings[i].value));
        }
        set(o, "settings", st);
        break;
    }
    case MOAT_H2_RST_STREAM:
    case MOAT_H2_GOAWAY:
        set(o, "error", json_string(moat_h2_error_name(f->error_code, b, sizeof(b))));
        set(o, "error_code", json_integer(f->error_code));
        if (f->type == MOAT_H2_GOAWAY) {
            set(o, "last_stream", json_integer(f->last_stream_id));
            set(o, "debug", str_or_null(f->debug));
        }
        break;
    case MOAT_H2_WINDOW_UPDATE:
        set(o, "increment", json_integer((json_int_t)f->increment));
        break;
    case MOAT_H2_HEADERS: {
        static const char *const blocks[MOAT_H2_BLOCK_COUNT] = {"none", "request", "response",
                                                                "interim", "trailers"};
        set(o, "block", json_string(blocks[f->block < MOAT_H2_BLOCK_COUNT ? f->block : 0]));
        set(o, "fields", h2_fields_json(f->fields));
        set(o, "field_count", json_integer((json_int_t)f->nfields));
        break;
    }
    default:
        break;
    }
    set(o, "refused", json_boolean(f->refused));
    set(o, "note", str_or_null(moat_h2_frame_note(f, note, sizeof(note))));
    return o;
}

static json_t *h2_json(const struct moat_client_hop *h)
{
    if (!h->http2) {
        return json_null();
    }
    json_t *o = json_object();
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < h->h2.n; i++) {
        json_array_append_new(a, h2_frame_json(&h->h2.frames[i]));
    }
    set(o, "frames", a);
    set(o, "frames_not_listed", json_integer((json_int_t)h->h2.not_recorded));
    return o;
}

static json_t *http_json(const struct moat_client_hop *h)
{
    if (h->req_head == NULL) {
        return json_null();
    }
    json_t *o = json_object();
    set(o, "protocol", json_string(h->http2 ? "HTTP/2" : "HTTP/1.1"));
    set(o, "request_line", first_line(h->req_head));
    set(o, "request_headers", fields_json(h->req_head));
    if (h->resp_head != NULL) {
        set(o, "status", json_integer(h->status));
        set(o, "reason", json_string(h->reason));
        set(o, "status_line", first_line(h->resp_head));
        set(o, "response_headers", fields_json(h->resp_head));
        set(o, "body_bytes", json_integer((json_int_t)h->body_bytes));
        static const char *const framing[] = {"none", "content-length", "chunked", "close",
                                              "http2"};
        set(o, "framing", json_string(framing[h->body_framing <= 4 ? h->body_framing : 0]));
        set(o, "location", str_or_null(h->location));
    }
    set(o, "http2", h2_json(h));
    return o;
}

static json_t *ms_or_null(int known, double ms)
{
    return known ? json_real(ms) : json_null();
}

static json_t *hop_json(const struct moat_client_hop *h)
{
    json_t *o = json_object();
    set(o, "url", json_string(h->url_text));
    set(o, "repeat", json_boolean(h->again));
    set(o, "scheme", json_string(h->url.https ? "https" : "http"));
    set(o, "host", json_string(h->url.host));
    set(o, "port", json_integer(h->url.port));
    json_t *dns = json_object();
    json_t *addrs = json_array();
    for (size_t i = 0; addrs != NULL && i < h->naddrs; i++) {
        json_array_append_new(addrs, json_string(h->addrs[i]));
    }
    set(dns, "addresses", addrs);
    set(dns, "from_resolve", json_boolean(h->dns_from_resolve));
    set(dns, "literal", json_boolean(h->url.host_ip != 0));
    set(dns, "ms", json_real(h->dns_ms));
    set(o, "dns", dns);
    json_t *tcp = json_object();
    set(tcp, "peer", str_or_null(h->peer));
    set(tcp, "connected", json_boolean(h->tcp_ok));
    set(tcp, "start_ms", json_real(h->tcp_start_ms));
    set(tcp, "connect_ms", json_real(h->tcp_ms));
    set(tcp, "failed_addresses", json_integer((json_int_t)h->tcp_failed));
    set(o, "tcp", tcp);
    set(o, "tls", tls_json(h));
    set(o, "http", http_json(h));
    json_t *t = json_object();
    set(t, "dns", json_real(h->dns_ms));
    set(t, "tcp_connect", ms_or_null(h->tcp_ok, h->tcp_ms));
    set(t, "tls_handshake", ms_or_null(h->tls_start_ms > 0, h->tls_ms));
    set(t, "request_sent", ms_or_null(h->req_head != NULL, h->req_ms));
    set(t, "first_byte", ms_or_null(h->first_byte_ms > 0, h->first_byte_ms));
    set(t, "head", ms_or_null(h->resp_head != NULL, h->head_ms));
    set(t, "done", ms_or_null(h->done_ms > 0, h->done_ms));
    set(t, "total", json_real(h->total_ms));
    set(o, "timings_ms", t);
    set(o, "stage", json_string(moat_client_stage_name(h->stage)));
    set(o, "cause", json_string(moat_client_cause_name(h->cause)));
    return o;
}

static json_t *result_json(const struct moat_client_result *r)
{
    json_t *o = json_object();
    const struct moat_client_hop *h = r->nhops ? &r->hops[r->nhops - 1] : NULL;
    set(o, "ok", json_boolean(r->cause == MOAT_CC_OK));
    set(o, "cause", json_string(moat_client_cause_name(r->cause)));
    set(o, "exit_code", json_integer(r->exit_code));
    if (h != NULL) {
        set(o, "stage", json_string(moat_client_stage_name(h->stage)));
        int cert = h->cause == MOAT_CC_CERT;
        set(o, "certificate_kind",
            cert ? json_string(moat_verify_kind_name(h->vkind)) : json_null());
        if (h->cause != MOAT_CC_OK) {
            set(o, "message", json_string(moat_client_hop_message(h)));
            set(o, "detail", str_or_null(h->detail));
            set(o, "fix", json_string(moat_client_hop_fix(h)));
        }
        if (h->resp_head != NULL) {
            set(o, "status", json_integer(h->status));
        }
    }
    return o;
}

char *moat_client_json_dump(const struct moat_client_result *r)
{
    json_t *doc = json_object();
    set(doc, "moat_trace", json_integer(1));
    set(doc, "url", json_string(r->nhops ? r->hops[0].url_text : ""));
    set(doc, "trust", json_string(r->trust_desc));
    set(doc, "insecure", json_boolean(r->insecure));
    set(doc, "result", result_json(r));
    set(doc, "note", str_or_null(r->note));
    json_t *hops = json_array();
    for (size_t i = 0; hops != NULL && i < r->nhops; i++) {
        json_array_append_new(hops, hop_json(&r->hops[i]));
    }
    set(doc, "hops", hops);
    char *s =
        doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(doc);
    return s;
}

int moat_client_json_write(const struct moat_client_result *r, FILE *f)
{
    char *s = moat_client_json_dump(r);
    if (s == NULL) {
        return -1;
    }
    int rc = fputs(s, f) < 0 || fputc('\n', f) == EOF ? -1 : 0;
    free(s);
    return rc;
}
