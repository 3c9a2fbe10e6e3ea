/*
 * test_h2trace.c: the HTTP/2 frame record and its words: RFC 9113's names (and the numbers
 * it does not name), labels and notes for each frame kind, the folding of DATA and
 * WINDOW_UPDATE frames past the first few, the cap on rows, and a synthetic HTTP/2 hop drawn
 * by the renderer and written by the JSON writer.
 */
#include "client/h2trace.h"
#include "client/json.h"
#include "client/render.h"
#include "client/trace.h"

#include "test.h"

#include <stdlib.h>

TEST_CASE(names)
{
    char b[32];
    EXPECT_STR(moat_h2_type_name(0, b, sizeof(b)), "DATA");
    EXPECT_STR(moat_h2_type_name(8, b, sizeof(b)), "WINDOW_UPDATE");
    EXPECT_STR(moat_h2_type_name(MOAT_H2_PREFACE, b, sizeof(b)), "preface");
    EXPECT_STR(moat_h2_type_name(0x0c, b, sizeof(b)), "type 0x0c");
    EXPECT_STR(moat_h2_error_name(0, b, sizeof(b)), "NO_ERROR");
    EXPECT_STR(moat_h2_error_name(7, b, sizeof(b)), "REFUSED_STREAM");
    EXPECT_STR(moat_h2_error_name(0xd, b, sizeof(b)), "HTTP_1_1_REQUIRED");
    EXPECT_STR(moat_h2_error_name(0xdead, b, sizeof(b)), "0xdead");
    EXPECT(strstr(moat_h2_error_words(7), "retry") != NULL);
    EXPECT(strstr(moat_h2_error_words(0x99), "does not define") != NULL);
    EXPECT_STR(moat_h2_setting_name(4, b, sizeof(b)), "INITIAL_WINDOW_SIZE");
    EXPECT_STR(moat_h2_setting_name(0x7777, b, sizeof(b)), "0x7777");
    EXPECT_STR(moat_h2_flags_text(MOAT_H2_HEADERS, 0x05, b, sizeof(b)), "END_STREAM|END_HEADERS");
    EXPECT_STR(moat_h2_flags_text(MOAT_H2_SETTINGS, 0x01, b, sizeof(b)), "ACK");
    EXPECT_STR(moat_h2_flags_text(MOAT_H2_DATA, 0x00, b, sizeof(b)), "");
    /* A flag the type does not define is shown as a number, not under another type's name. */
    EXPECT_STR(moat_h2_flags_text(MOAT_H2_WINDOW_UPDATE, 0x01, b, sizeof(b)), "0x01");
}

static struct moat_h2_frame frame(unsigned type, int dir, unsigned flags, int32_t stream,
                                  size_t length)
{
    struct moat_h2_frame f;
    memset(&f, 0, sizeof(f));
    f.type = type;
    f.dir = dir;
    f.flags = flags;
    f.stream_id = stream;
    f.length = length;
    return f;
}

TEST_CASE(labels_and_notes)
{
    char l[128], n[512];
    struct moat_h2_frame f = frame(MOAT_H2_SETTINGS, MOAT_TRACE_OUT, 0, 0, 18);
    f.nsettings = 2;
    f.settings[0] = (struct moat_h2_setting){2, 0};
    f.settings[1] = (struct moat_h2_setting){4, 1048576};
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "SETTINGS  18 B");
    EXPECT_STR(moat_h2_frame_note(&f, n, sizeof(n)), "ENABLE_PUSH=0, INITIAL_WINDOW_SIZE=1048576");
    f.flags = MOAT_H2_FLAG_ACK;
    f.length = 0;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "SETTINGS ACK");
    EXPECT_STR(moat_h2_frame_note(&f, n, sizeof(n)), "");

    f = frame(MOAT_H2_HEADERS, MOAT_TRACE_IN, 0x05, 1, 31);
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "HEADERS stream 1 END_STREAM  31 B");

    f = frame(MOAT_H2_RST_STREAM, MOAT_TRACE_IN, 0, 1, 4);
    f.error_code = 7;
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "RST_STREAM stream 1 REFUSED_STREAM");
    EXPECT(strncmp(moat_h2_frame_note(&f, n, sizeof(n)), "REFUSED_STREAM (0x7): ", 22) == 0);

    f = frame(MOAT_H2_GOAWAY, MOAT_TRACE_IN, 0, 0, 17);
    f.error_code = 0xb;
    f.last_stream_id = 0;
    f.debug = "too fast";
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "GOAWAY ENHANCE_YOUR_CALM last stream 0");
    moat_h2_frame_note(&f, n, sizeof(n));
    EXPECT(strstr(n, "ENHANCE_YOUR_CALM (0xb)") != NULL);
    EXPECT(strstr(n, "streams above 0 were not processed") != NULL);
    EXPECT(strstr(n, "debug data \"too fast\"") != NULL);
    f.dir = MOAT_TRACE_OUT; /* the client's last stream is about pushes: not worth a word */
    EXPECT(strstr(moat_h2_frame_note(&f, n, sizeof(n)), "processed") == NULL);

    f = frame(MOAT_H2_WINDOW_UPDATE, MOAT_TRACE_OUT, 0, 0, 4);
    f.increment = 983041;
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "WINDOW_UPDATE stream 0 +983041");

    f = frame(MOAT_H2_PING, MOAT_TRACE_IN, 0, 0, 8);
    memcpy(f.ping, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    f.count = 1;
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "PING  8 B");
    EXPECT_STR(moat_h2_frame_note(&f, n, sizeof(n)), "opaque data 0102030405060708");

    f = frame(0x0c, MOAT_TRACE_IN, 0, 3, 5);
    f.count = 1;
    f.refused = 1;
    snprintf(f.refused_why, sizeof(f.refused_why), "Invalid argument");
    EXPECT_STR(moat_h2_frame_label(&f, l, sizeof(l)), "type 0x0c stream 3  5 B (refused)");
    EXPECT_STR(moat_h2_frame_note(&f, n, sizeof(n)), "nghttp2 refused it: Invalid argument");

    /* A short buffer is never overrun. */
    char tiny[6];
    moat_h2_frame_label(&f, tiny, sizeof(tiny));
    EXPECT_INT(strlen(tiny), 5);
}

TEST_CASE(data_folds_after_the_first_few)
{
    struct moat_h2rec r;
    moat_h2rec_init(&r);
    for (int i = 0; i < 1000; i++) {
        struct moat_h2_frame f = frame(MOAT_H2_DATA, MOAT_TRACE_IN, 0, 1, 16384);
        f.ms = i;
        if (i == 999) {
            f.flags = MOAT_H2_FLAG_END_STREAM;
            f.length = 100;
        }
        moat_h2rec_add(&r, &f);
        if (i % 100 == 0) {
            struct moat_h2_frame w = frame(MOAT_H2_WINDOW_UPDATE, MOAT_TRACE_OUT, 0, i % 200, 4);
            w.increment = 524288;
            w.ms = i;
            moat_h2rec_add(&r, &w);
        }
    }
    /* 3 DATA + 1 fold + END_STREAM, and 3 WINDOW_UPDATE + 1 fold. */
    EXPECT_INT(r.n, 9);
    EXPECT_INT(r.not_recorded, 0);
    uint64_t bytes = 0;
    size_t data_frames = 0, rows = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.frames[i].type == MOAT_H2_DATA) {
            bytes += r.frames[i].bytes;
            data_frames += r.frames[i].count;
            rows++;
        }
    }
    EXPECT_INT(rows, 5);
    EXPECT_INT(data_frames, 1000);
    EXPECT_INT(bytes, 999ull * 16384 + 100);
    const struct moat_h2_frame *fold = &r.frames[4]; /* after 3 DATA and 1 WINDOW_UPDATE */
    EXPECT_INT(fold->type, MOAT_H2_DATA);
    EXPECT_INT(fold->count, 996);
    EXPECT(fold->ms == 3 && fold->last_ms == 998);
    char l[128];
    EXPECT_STR(moat_h2_frame_label(fold, l, sizeof(l)), "DATA x996 stream 1  15.6 MiB");
    EXPECT_INT(r.frames[r.n - 1].flags, MOAT_H2_FLAG_END_STREAM);
    const struct moat_h2_frame *wfold = NULL;
    for (size_t i = 0; i < r.n; i++) {
        if (r.frames[i].type == MOAT_H2_WINDOW_UPDATE && r.frames[i].count > 1) {
            wfold = &r.frames[i];
        }
    }
    EXPECT(wfold != NULL);
    if (wfold != NULL) {
        EXPECT_INT(wfold->count, 7);
        EXPECT_INT(wfold->increment, 7 * 524288);
        EXPECT_INT(wfold->stream_id, -1); /* streams 0 and 100 */
        EXPECT(strstr(moat_h2_frame_label(wfold, l, sizeof(l)), "several streams") != NULL);
    }
    moat_h2rec_clear(&r);
    EXPECT_INT(r.n, 0);
}

TEST_CASE(rows_are_capped_and_owned_text_freed)
{
    struct moat_h2rec r;
    moat_h2rec_init(&r);
    for (int i = 0; i < 1000; i++) {
        struct moat_h2_frame f = frame(MOAT_H2_HEADERS, MOAT_TRACE_IN, 0, 1, 10);
        f.ms = i;
        f.fields = strdup("a: b\n"); /* freed by the record, kept or not (LeakSanitizer) */
        f.nfields = 1;
        moat_h2rec_add(&r, &f);
        EXPECT(f.fields == NULL);
    }
    EXPECT_INT(r.n, MOAT_H2_MAX_FRAMES);
    EXPECT_INT(r.not_recorded, 1000 - MOAT_H2_MAX_FRAMES);
    EXPECT_INT(r.not_recorded_bytes, (1000 - MOAT_H2_MAX_FRAMES) * 10);
    EXPECT(r.not_recorded_last_ms == 999);
    moat_h2rec_clear(&r);
    /* A zeroed record (a hop from calloc) clears without harm. */
    struct moat_h2rec z;
    memset(&z, 0, sizeof(z));
    moat_h2rec_clear(&z);
}

static void add(struct moat_client_hop *h, unsigned type, int dir, unsigned flags, size_t length,
                double ms, const char *fields)
{
    struct moat_h2_frame f = frame(type, dir, flags, type == MOAT_H2_SETTINGS ? 0 : 1, length);
    f.ms = ms;
    if (fields != NULL) {
        f.fields = strdup(fields);
        f.nfields = 2;
        f.block = dir == MOAT_TRACE_OUT ? MOAT_H2_BLOCK_REQUEST : MOAT_H2_BLOCK_RESPONSE;
    }
    if (type == MOAT_H2_SETTINGS && !(flags & MOAT_H2_FLAG_ACK)) {
        f.nsettings = 1;
        f.settings[0] = (struct moat_h2_setting){2, 0};
    }
    moat_h2rec_add(&h->h2, &f);
}

TEST_CASE(a_whole_http2_hop_renders)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    struct moat_client_hop *h = &r->hops[0];
    r->nhops = 1;
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse("https://example.test/", &h->url, &err).kind, MOAT_OK);
    snprintf(h->url_text, sizeof(h->url_text), "https://example.test/");
    h->stage = MOAT_STAGE_DONE;
    h->version = 0x0304;
    h->http2 = 1;
    h->status = 200;
    snprintf(h->reason, sizeof(h->reason), "OK");
    snprintf(h->alpn, sizeof(h->alpn), "h2");
    h->body_framing = MOAT_CLIENT_BODY_H2;
    h->body_bytes = 5;
    h->req_head = strdup("GET / HTTP/2\r\n:method: GET\r\n:path: /\r\n\r\n");
    h->resp_head = strdup("HTTP/2 200\r\ncontent-length: 5\r\n\r\n");
    moat_h2rec_init(&h->h2);
    add(h, MOAT_H2_PREFACE, MOAT_TRACE_OUT, 0, 24, 1.0, NULL);
    add(h, MOAT_H2_SETTINGS, MOAT_TRACE_OUT, 0, 6, 1.1, NULL);
    add(h, MOAT_H2_HEADERS, MOAT_TRACE_OUT, 0x05, 20, 1.2, ":method: GET\n:path: /\n");
    add(h, MOAT_H2_SETTINGS, MOAT_TRACE_IN, 0, 6, 1.5, NULL);
    add(h, MOAT_H2_HEADERS, MOAT_TRACE_IN, 0x04, 12, 1.6, ":status: 200\ncontent-length: 5\n");
    add(h, MOAT_H2_DATA, MOAT_TRACE_IN, 0x01, 5, 1.7, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    moat_client_render_text(r, f);
    fclose(f);
    EXPECT(strstr(text, "preface PRI * HTTP/2.0  24 B") != NULL);
    EXPECT(strstr(text, "|    ENABLE_PUSH=0") != NULL);
    EXPECT(strstr(text, "|    :status: 200") != NULL);
    EXPECT(strstr(text, "DATA stream 1 END_STREAM  5 B ==|") != NULL);
    EXPECT(strstr(text, "body: 5 bytes (HTTP/2 DATA frames)") != NULL);
    /* The HTTP/1 rows (request line arrow, "body ... (Content-Length)") are not drawn. */
    EXPECT(strstr(text, "== GET / HTTP/2") == NULL);
    free(text);
    char *doc = moat_client_json_dump(r);
    EXPECT(doc != NULL);
    if (doc != NULL) {
        EXPECT(strstr(doc, "\"protocol\": \"HTTP/2\"") != NULL);
        EXPECT(strstr(doc, "\"framing\": \"http2\"") != NULL);
        EXPECT(strstr(doc, "\"ENABLE_PUSH\": 0") != NULL);
        EXPECT(strstr(doc, "\":method\",") != NULL); /* the pseudo-header field's own name */
    }
    free(doc);
    moat_client_result_clear(r);
    free(r);
}

int main(void)
{
    RUN(names);
    RUN(labels_and_notes);
    RUN(data_folds_after_the_first_few);
    RUN(rows_are_capped_and_owned_text_freed);
    RUN(a_whole_http2_hop_renders);
    TEST_MAIN_END();
}
