/*
 * h2trace.c: the bounded record of HTTP/2 frames (h2trace.h) and the words for them. The
 * names are RFC 9113's own spellings (§6 frame types, §6.5.2 settings, §7 error codes), so a
 * reader can look each one up; nothing here knows nghttp2 or the connection.
 */
#include "client/h2trace.h"

#include "client/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void moat_h2rec_init(struct moat_h2rec *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t d = 0; d < 2; d++) {
        for (size_t k = 0; k < 2; k++) {
            r->fold[d][k] = SIZE_MAX;
        }
    }
}

static void frame_free(struct moat_h2_frame *f)
{
    free(f->fields);
    free(f->debug);
    f->fields = NULL;
    f->debug = NULL;
}

void moat_h2rec_clear(struct moat_h2rec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        frame_free(&r->frames[i]);
    }
    free(r->frames);
    moat_h2rec_init(r);
}

static int grow(struct moat_h2rec *r)
{
    if (r->n < r->cap) {
        return 1;
    }
    size_t cap = r->cap ? r->cap * 2 : 32;
    if (cap > MOAT_H2_MAX_FRAMES) {
        cap = MOAT_H2_MAX_FRAMES;
    }
    struct moat_h2_frame *p = realloc(r->frames, cap * sizeof(*p));
    if (p == NULL) {
        return 0;
    }
    r->frames = p;
    r->cap = cap;
    return 1;
}

void moat_h2rec_add(struct moat_h2rec *r, struct moat_h2_frame *f)
{
    f->count = 1;
    f->bytes = f->length;
    f->last_ms = f->ms;
    size_t d = f->dir ? 1 : 0;
    int k = f->type == MOAT_H2_DATA ? 0 : f->type == MOAT_H2_WINDOW_UPDATE ? 1 : -1;
    int open_fold = 0;
    if (k >= 0) {
        size_t nth = r->seen[d][k]++;
        /* The frame that ends the body and a frame nghttp2 refused are worth a row each. */
        int apart = (k == 0 && (f->flags & MOAT_H2_FLAG_END_STREAM)) || f->refused;
        if (nth >= MOAT_H2_SHOW_FIRST && !apart) {
            size_t at = r->fold[d][k];
            if (at != SIZE_MAX) {
                struct moat_h2_frame *g = &r->frames[at];
                g->count++;
                g->bytes += f->length;
                g->last_ms = f->ms;
                g->increment += f->increment;
                if (g->stream_id != f->stream_id) {
                    g->stream_id = -1; /* several streams */
                }
                frame_free(f);
                return;
            }
            open_fold = 1;
        }
    }
    if (r->n >= MOAT_H2_MAX_FRAMES || !grow(r)) {
        r->not_recorded++;
        r->not_recorded_bytes += f->length;
        r->not_recorded_last_ms = f->ms;
        frame_free(f);
        return;
    }
    r->frames[r->n] = *f;
    if (open_fold) {
        r->fold[d][k] = r->n;
    }
    r->n++;
    f->fields = NULL;
    f->debug = NULL;
}

const char *moat_h2_type_name(unsigned type, char *buf, size_t buflen)
{
    static const char *const names[MOAT_H2_TYPE_COUNT] = {
        "DATA",         "HEADERS", "PRIORITY", "RST_STREAM",    "SETTINGS",
        "PUSH_PROMISE", "PING",    "GOAWAY",   "WINDOW_UPDATE", "CONTINUATION",
    };
    if (type == MOAT_H2_PREFACE) {
        return "preface";
    }
    if (type < MOAT_H2_TYPE_COUNT) {
        return names[type];
    }
    snprintf(buf, buflen, "type 0x%02x", type & 0xffu);
    return buf;
}

const char *moat_h2_error_name(uint32_t code, char *buf, size_t buflen)
{
    static const char *const names[] = {
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    };
    if (code < sizeof(names) / sizeof(names[0])) {
        return names[code];
    }
    snprintf(buf, buflen, "0x%x", code);
    return buf;
}

const char *moat_h2_error_words(uint32_t code)
{
    switch (code) {
    case 0x0:
        return "a graceful end, not an error";
    case 0x1:
        return "the sender found a protocol violation";
    case 0x2:
        return "the sender hit an internal error";
    case 0x3:
        return "the peer sent more than the flow-control window allowed";
    case 0x4:
        return "SETTINGS were not acknowledged in time";
    case 0x5:
        return "a frame came on a stream that was already closed";
    case 0x6:
        return "a frame had a size that is not allowed";
    case 0x7:
        return "the server did not process the request; it is safe to retry";
    case 0x8:
        return "the stream is no longer wanted";
    case 0x9:
        return "the header compression (HPACK) state broke";
    case 0xa:
        return "the connection a CONNECT request asked for failed";
    case 0xb:
        return "the sender thinks its peer causes excessive load";
    case 0xc:
        return "the TLS connection does not meet HTTP/2's minimum (RFC 9113 9.2)";
    case 0xd:
        return "the server wants this request over HTTP/1.1";
    default:
        return "an error code RFC 9113 does not define";
    }
}

const char *moat_h2_setting_name(uint16_t id, char *buf, size_t buflen)
{
    switch (id) {
    case 0x1:
        return "HEADER_TABLE_SIZE";
    case 0x2:
        return "ENABLE_PUSH";
    case 0x3:
        return "MAX_CONCURRENT_STREAMS";
    case 0x4:
        return "INITIAL_WINDOW_SIZE";
    case 0x5:
        return "MAX_FRAME_SIZE";
    case 0x6:
        return "MAX_HEADER_LIST_SIZE";
    case 0x8:
        return "ENABLE_CONNECT_PROTOCOL";
    case 0x9:
        return "NO_RFC7540_PRIORITIES";
    default:
        snprintf(buf, buflen, "0x%x", id);
        return buf;
    }
}

const char *moat_h2_flags_text(unsigned type, unsigned flags, char *out, size_t outlen)
{
    out[0] = '\0';
    static const struct {
        unsigned bit;
        const char *name;
        unsigned types; /* bit per frame type the flag is defined for */
    } table[] = {
        {MOAT_H2_FLAG_END_STREAM, "END_STREAM", 1u << MOAT_H2_DATA | 1u << MOAT_H2_HEADERS},
        {MOAT_H2_FLAG_ACK, "ACK", 1u << MOAT_H2_SETTINGS | 1u << MOAT_H2_PING},
        {MOAT_H2_FLAG_END_HEADERS, "END_HEADERS",
         1u << MOAT_H2_HEADERS | 1u << MOAT_H2_PUSH_PROMISE | 1u << MOAT_H2_CONTINUATION},
        {MOAT_H2_FLAG_PADDED, "PADDED",
         1u << MOAT_H2_DATA | 1u << MOAT_H2_HEADERS | 1u << MOAT_H2_PUSH_PROMISE},
        {MOAT_H2_FLAG_PRIORITY, "PRIORITY", 1u << MOAT_H2_HEADERS},
    };
    unsigned known = 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (type < MOAT_H2_TYPE_COUNT && (table[i].types & (1u << type)) != 0 &&
            (flags & table[i].bit) != 0) {
            moat_client__append(out, outlen, "%s%s", out[0] ? "|" : "", table[i].name);
            known |= table[i].bit;
        }
    }
    if ((flags & ~known & 0xffu) != 0) {
        moat_client__append(out, outlen, "%s0x%02x", out[0] ? "|" : "", flags & ~known & 0xffu);
    }
    return out;
}

static void size_words(uint64_t n, char *out, size_t outlen)
{
    if (n < 10000) {
        snprintf(out, outlen, "%llu B", (unsigned long long)n);
    } else if (n < 1024u * 1024) {
        snprintf(out, outlen, "%.1f KiB", (double)n / 1024.0);
    } else {
        snprintf(out, outlen, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    }
}

const char *moat_h2_frame_label(const struct moat_h2_frame *f, char *out, size_t outlen)
{
    char tb[16], eb[16], sz[32], times[24] = "", stream[24] = "";
    const char *name = moat_h2_type_name(f->type, tb, sizeof(tb));
    int ack = (f->type == MOAT_H2_SETTINGS || f->type == MOAT_H2_PING) &&
              (f->flags & MOAT_H2_FLAG_ACK) != 0;
    int end = (f->type == MOAT_H2_DATA || f->type == MOAT_H2_HEADERS) &&
              (f->flags & MOAT_H2_FLAG_END_STREAM) != 0;
    size_words(f->count > 1 ? f->bytes : f->length, sz, sizeof(sz));
    if (f->count > 1) {
        snprintf(times, sizeof(times), " x%zu", f->count);
    }
    if (f->stream_id < 0) {
        snprintf(stream, sizeof(stream), " several streams");
    } else if (f->type != MOAT_H2_SETTINGS && f->type != MOAT_H2_PING &&
               f->type != MOAT_H2_GOAWAY && f->type != MOAT_H2_PREFACE) {
        snprintf(stream, sizeof(stream), " stream %d", (int)f->stream_id);
    }
    const char *refused = f->refused ? " (refused)" : "";
    switch (f->type) {
    case MOAT_H2_PREFACE:
        moat_client__fmt(out, outlen, "preface PRI * HTTP/2.0  %s", sz);
        break;
    case MOAT_H2_SETTINGS:
    case MOAT_H2_PING:
        if (ack) {
            moat_client__fmt(out, outlen, "%s ACK%s", name, refused);
        } else {
            moat_client__fmt(out, outlen, "%s  %s%s", name, sz, refused);
        }
        break;
    case MOAT_H2_WINDOW_UPDATE:
        moat_client__fmt(out, outlen, "%s%s%s +%lld%s", name, times, stream,
                         (long long)f->increment, refused);
        break;
    case MOAT_H2_RST_STREAM:
        moat_client__fmt(out, outlen, "%s%s %s%s", name, stream,
                         moat_h2_error_name(f->error_code, eb, sizeof(eb)), refused);
        break;
    case MOAT_H2_GOAWAY:
        moat_client__fmt(out, outlen, "%s %s last stream %d%s", name,
                         moat_h2_error_name(f->error_code, eb, sizeof(eb)), (int)f->last_stream_id,
                         refused);
        break;
    default:
        moat_client__fmt(out, outlen, "%s%s%s%s  %s%s", name, times, stream,
                         end ? " END_STREAM" : "", sz, refused);
        break;
    }
    return out;
}

const char *moat_h2_frame_note(const struct moat_h2_frame *f, char *out, size_t outlen)
{
    char eb[16], nb[16];
    out[0] = '\0';
    switch (f->type) {
    case MOAT_H2_SETTINGS:
        if (f->flags & MOAT_H2_FLAG_ACK) {
            break;
        }
        if (f->nsettings == 0) {
            moat_client__append(out, outlen, "no settings: the defaults hold (RFC 9113 6.5.2)");
            break;
        }
        for (size_t i = 0; i < f->nsettings && i < MOAT_H2_MAX_SETTINGS; i++) {
            moat_client__append(out, outlen, "%s%s=%u", i ? ", " : "",
                                moat_h2_setting_name(f->settings[i].id, nb, sizeof(nb)),
                                (unsigned)f->settings[i].value);
        }
        if (f->nsettings > MOAT_H2_MAX_SETTINGS) {
            moat_client__append(out, outlen, ", and %zu more", f->nsettings - MOAT_H2_MAX_SETTINGS);
        }
        break;
    case MOAT_H2_RST_STREAM:
        moat_client__append(out, outlen, "%s (0x%x): %s",
                            moat_h2_error_name(f->error_code, eb, sizeof(eb)), f->error_code,
                            moat_h2_error_words(f->error_code));
        break;
    case MOAT_H2_GOAWAY:
        moat_client__append(out, outlen, "%s (0x%x): %s",
                            moat_h2_error_name(f->error_code, eb, sizeof(eb)), f->error_code,
                            moat_h2_error_words(f->error_code));
        /* The server's last stream says what of ours it processed; the client's is about
         * pushed streams, which moat turns off. */
        if (f->dir == 1) {
            moat_client__append(out, outlen, "; streams above %d were not processed",
                                (int)f->last_stream_id);
        }
        if (f->debug != NULL && f->debug[0] != '\0') {
            moat_client__append(out, outlen, "; debug data \"%s\"", f->debug);
        }
        break;
    case MOAT_H2_PING:
        moat_client__append(out, outlen, "opaque data ");
        for (size_t i = 0; i < sizeof(f->ping); i++) {
            moat_client__append(out, outlen, "%02x", f->ping[i]);
        }
        break;
    default:
        break;
    }
    if (f->count > 1) {
        moat_client__append(out, outlen, "%s%zu frames from %.2f to %.2f ms", out[0] ? "; " : "",
                            f->count, f->ms, f->last_ms);
    }
    if (f->refused) {
        moat_client__append(out, outlen, "%snghttp2 refused it: %s", out[0] ? "; " : "",
                            f->refused_why[0] ? f->refused_why : "invalid frame");
    }
    return out;
}
