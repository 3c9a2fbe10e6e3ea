/*
 * test_html.c: the trace as an HTML page: the escaper (markup, quotes, control characters,
 * bytes that are not UTF-8, lengths it must not read past); a whole page from a result built by
 * hand, success and failure: one SVG arrow and one <details> per row, the encryption marks,
 * the chain as cards from leaf to root with where each came from, the failure marked with its
 * cause and fix; strings from the network (a subject, a header, a reason phrase, HTTP/2
 * fields, the server's first bytes) come out escaped and never raw; the page is written whole
 * (mode 0644) or not at all; a write error is reported.
 */
#include "client/html.h"

#include "client/render.h"

#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

static char *escaped(const char *s, size_t n)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    moat_client_html_escape(f, s, n);
    fclose(f);
    return out;
}

#define FFFD "\xEF\xBF\xBD"

TEST_CASE(escape_markup_quotes_and_bytes)
{
    const char *in = "<script>alert('x')</script> & \"q\"";
    char *o = escaped(in, strlen(in));
    EXPECT_STR(o, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    free(o);
    /* Control characters other than tab and line ends, and DEL, are replaced. */
    o = escaped("a\x01"
                "b\tc\nd\x7f",
                8);
    EXPECT_STR(o, "a" FFFD "b\tc\nd" FFFD);
    free(o);
    /* Valid UTF-8 passes; overlong forms, surrogates, stray continuations, a cut sequence and
     * bytes no sequence starts with become U+FFFD, one per byte, and never eat the '<' after. */
    o = escaped("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9);
    EXPECT_STR(o, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    free(o);
    o = escaped("\xC0\xAF<\xED\xA0\x80\x80\xF8\xE2\x82", 11);
    EXPECT_STR(o, FFFD FFFD "&lt;" FFFD FFFD FFFD FFFD FFFD FFFD FFFD);
    free(o);
    /* The length bounds it: a field without its NUL is not read past; a NUL ends it early. */
    char field[4] = {'<', 'a', 'b', 'c'};
    o = escaped(field, sizeof(field));
    EXPECT_STR(o, "&lt;abc");
    free(o);
    o = escaped("ab\0<script>", 11);
    EXPECT_STR(o, "ab");
    free(o);
    o = escaped(NULL, 5);
    EXPECT_STR(o, "");
    free(o);
}

/* A string into a fixed-size field of the result, cut to fit as get.c's are. */
#define SET(field, text) snprintf((field), sizeof(field), "%s", (text))

/* One TLS message of a trace built by hand. */
struct wire {
    double ms;
    enum moat_trace_dir dir;
    int content_type, hs_type; /* hs_type: the alert description for alerts */
    size_t len;
};

/* The messages of `w` as h's trace, marked encrypted or not as `version` says. */
static void wire_trace(struct moat_client_hop *h, const struct wire *w, size_t n, int version)
{
    h->trace.msgs = calloc(n, sizeof(*h->trace.msgs));
    h->trace.n = h->trace.cap = n;
    for (size_t i = 0; i < n; i++) {
        struct moat_trace_msg *m = &h->trace.msgs[i];
        int alert = w[i].content_type == SSL3_RT_ALERT;
        *m = (struct moat_trace_msg){.ms = w[i].ms,
                                     .dir = w[i].dir,
                                     .content_type = w[i].content_type,
                                     .hs_type = alert ? -1 : w[i].hs_type,
                                     .alert_level = alert ? (w[i].hs_type == 0 ? 1 : 2) : 0,
                                     .alert_desc = alert ? w[i].hs_type : 0,
                                     .len = w[i].len};
    }
    h->version = version;
    moat_trace_finish(&h->trace, version);
}

/* The start of a hop: its URL (parsed), one address and the peer it connected to. */
static void hop_start(struct moat_client_result *r, const char *url, const char *peer)
{
    struct moat_client_hop *h = &r->hops[r->nhops++];
    struct moat_err err = {0};
    EXPECT_INT(moat_client_url_parse(url, &h->url, &err).kind, MOAT_OK);
    SET(h->url_text, url);
    SET(h->peer, peer);
    SET(h->addrs[0], "127.0.0.1");
    h->naddrs = 1;
    h->tcp_ok = 1;
}

static struct moat_client_cert a_cert(const char *subject, const char *issuer, const char *fp)
{
    struct moat_client_cert c = {.days_left = 42};
    SET(c.subject, subject);
    SET(c.issuer, issuer);
    SET(c.not_before, "2026-01-01 00:00:00 UTC");
    SET(c.not_after, "2026-04-01 00:00:00 UTC");
    SET(c.key, "EC P-256");
    SET(c.sig, "ecdsa-with-SHA256");
    SET(c.sha256, fp);
    c.self_signed = strcmp(subject, issuer) == 0;
    c.is_ca = strncmp(subject, "CN=Inter", 8) == 0 || c.self_signed;
    if (!c.is_ca) {
        SET(c.names, "DNS:example.test");
    }
    return c;
}

#define EVIL "<script>alert(1)</script>"

static const struct wire TLS13[] = {
    {1.0, MOAT_TRACE_OUT, SSL3_RT_HANDSHAKE, SSL3_MT_CLIENT_HELLO, 267},
    {2.0, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_SERVER_HELLO, 122},
    {2.1, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_ENCRYPTED_EXTENSIONS, 21},
    {2.15, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_CERTIFICATE, 1520},
    {2.2, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_FINISHED, 36},
    {2.3, MOAT_TRACE_OUT, SSL3_RT_HANDSHAKE, SSL3_MT_FINISHED, 36},
    {4.3, MOAT_TRACE_IN, SSL3_RT_ALERT, 0, 2}, /* close_notify, a warning */
};

/* When each step of a hop started or how long it took, in ms. */
struct times {
    double tcp_start, tcp, tls_start, tls, req, first_byte, done, total;
};

static void set_times(struct moat_client_hop *h, const struct times *t)
{
    h->tcp_start_ms = t->tcp_start;
    h->tcp_ms = t->tcp;
    h->tls_start_ms = t->tls_start;
    h->tls_ms = t->tls;
    h->req_ms = t->req;
    h->first_byte_ms = t->first_byte;
    h->done_ms = t->done;
    h->total_ms = t->total;
}

/* A TLS 1.3 exchange to example.test with a leaf from the server, its intermediate, and the
 * root from the trust store; network strings carry markup. */
static struct moat_client_result *good_result(void)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    hop_start(r, "https://example.test:8443/", "127.0.0.1:8443");
    struct moat_client_hop *h = &r->hops[0];
    SET(r->trust_desc, "the system store");
    h->stage = MOAT_STAGE_DONE;
    h->tls_done = 1;
    set_times(h, &(struct times){.tcp_start = 0.5,
                                 .tcp = 0.1,
                                 .tls_start = 0.7,
                                 .tls = 1.7,
                                 .req = 3.0,
                                 .first_byte = 4.0,
                                 .done = 4.1,
                                 .total = 4.4});
    SET(h->version_name, "TLSv1.3");
    SET(h->cipher, "TLS_AES_128_GCM_SHA256");
    SET(h->group, "X25519");
    SET(h->sigalg, "ecdsa_secp256r1_sha256");
    SET(h->alpn, "http/1.1");
    SET(h->sni, "example.test");
    wire_trace(h, TLS13, sizeof(TLS13) / sizeof(TLS13[0]), TLS1_3_VERSION);
    h->path[0] = h->sent[0] = a_cert("CN=example.test,O=" EVIL, "CN=Inter", "AA:01");
    h->path[1] = h->sent[1] = a_cert("CN=Inter", "CN=Root", "AA:02");
    h->path[2] = a_cert("CN=Root", "CN=Root", "AA:03");
    h->npath = 3;
    h->nsent = 2;
    h->path_complete = 1;
    SET(h->root_source, "/etc/ssl/certs");
    h->req_head = strdup("GET / HTTP/1.1\r\nHost: example.test:8443\r\n\r\n");
    h->resp_head = strdup("HTTP/1.1 200 <b>OK</b>\r\nX-Evil: " EVIL "\r\n\r\n");
    h->status = 200;
    SET(h->reason, "<b>OK</b>");
    h->body_bytes = 5;
    h->body_framing = 1;
    return r;
}

/* Free a result and the page made of it. */
static void done(struct moat_client_result *r, char *html)
{
    free(html);
    moat_client_result_clear(r);
    free(r);
}

static char *page(const struct moat_client_result *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    EXPECT_INT(moat_client_render_html(r, f), 0);
    fclose(f);
    return text;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Every string of the NULL-terminated list is in text. */
static void expect_in(const char *text, const char *const *want)
{
    for (; *want != NULL; want++) {
        if (strstr(text, *want) == NULL) {
            TEST__FAIL("no \"%s\" in the page", *want);
        }
    }
}
#define EXPECT_IN(text, ...) expect_in((text), (const char *const[]){__VA_ARGS__, NULL})

/* Nothing raw that a browser would run or fetch. */
static void expect_inert(const char *html)
{
    static const char *const never[] = {"<script",     "<SCRIPT",  "<b>OK",
                                        "<img",        " src=\"",  "href=\"http",
                                        " onerror=\"", "url(http", "@import"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        if (strstr(html, never[i]) != NULL) {
            TEST__FAIL("\"%s\" in the page", never[i]);
        }
    }
}

TEST_CASE(whole_page_success)
{
    struct moat_client_result *r = good_result();
    const struct moat_client_hop *h = &r->hops[0];
    char *html = page(r);
    EXPECT(strncmp(html, "<!DOCTYPE html>\n", 16) == 0);
    EXPECT(strstr(html, "<title>moat trace https://example.test:8443/</title>") != NULL);
    EXPECT(count(html, "<html") == 1 && count(html, "</html>") == 1);
    EXPECT(count(html, "<svg class=\"seq\"") == 1);
    expect_inert(html);
    EXPECT(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL);
    EXPECT(strstr(html, "&lt;b&gt;OK&lt;/b&gt;") != NULL);
    /* One arrow and one <details> per row: TCP, 7 TLS messages, request, response, body. */
    size_t n = 0;
    struct moat_render_row *rows = moat_client_render_rows(h, &n);
    EXPECT_INT(n, 11);
    const char *svg = strstr(html, "<svg class=\"seq\"");
    const char *svg_end = svg ? strstr(svg, "</svg>") : NULL;
    EXPECT(svg != NULL && svg_end != NULL);
    char *svg_text = svg && svg_end ? strndup(svg, (size_t)(svg_end - svg)) : strdup("");
    EXPECT_INT(count(svg_text, "<g class=\"row k-"), n + 1); /* + the DNS step */
    EXPECT_INT(count(svg_text, "<line class=\"ln\""), n);
    EXPECT_INT(count(html, "<details class=\"msg"), n);
    for (size_t i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof(id), "<a href=\"#c0-r%zu\">", i);
        EXPECT(strstr(svg_text, id) != NULL);
        snprintf(id, sizeof(id), "id=\"c0-r%zu\"", i);
        EXPECT(strstr(html, id) != NULL);
    }
    for (const char *l = "ClientHello \xC2\xB7 267 B\0ServerHello \xC2\xB7 122 B\0"
                         "EncryptedExtensions \xC2\xB7 21 B\0Certificate \xC2\xB7 1520 B\0"
                         "Finished \xC2\xB7 36 B\0ALERT close_notify\0"
                         "GET / HTTP/1.1 \xC2\xB7 43 B\0TCP connect: SYN, SYN-ACK, ACK\0";
         *l != '\0'; l += strlen(l) + 1) {
        if (strstr(svg_text, l) == NULL) {
            TEST__FAIL("no arrow labelled \"%s\"", l);
        }
    }
    EXPECT(strstr(svg_text, ">1.00 ms</text>") != NULL);
    /* Encrypted arrows are drawn apart, with a lock, and where each side starts is marked. */
    EXPECT(count(svg_text, "class=\"lock\"") >= 5);
    EXPECT(strstr(svg_text, "server \xE2\x86\x92 client: encrypted from here on") != NULL);
    EXPECT(strstr(svg_text, "client \xE2\x86\x92 server: encrypted from here on") != NULL);
    EXPECT(strstr(svg_text, "server \xE2\x86\x92 client: encrypted") <
           strstr(svg_text, "EncryptedExtensions"));
    EXPECT(strstr(svg_text, "<g class=\"row k-tls\"><title>ClientHello") != NULL);
    EXPECT(strstr(svg_text, "<g class=\"row k-tls enc\"><title>EncryptedExtensions") != NULL);
    EXPECT(strstr(svg_text, "class=\"fail\"") == NULL);
    free(svg_text);
    /* The notes of render.c, negotiated parameters. */
    EXPECT_IN(html, "TLS 1.3 only: the server&#39;s extensions, already encrypted",
              "the chain, encrypted (TLS 1.2 sends it in clear)",
              "<th>cipher</th><td>TLS_AES_128_GCM_SHA256</td>", "<th>SNI</th><td>example.test</td>",
              "<th>ALPN</th><td>http/1.1</td>", "<th>session</th><td>new (full handshake");
    /* The chain: three cards, leaf to root, two from the server and the root from the store. */
    EXPECT_INT(count(html, "<li class=\"card "), 3);
    EXPECT_INT(count(html, "<li class=\"link\">"), 2);
    const char *leaf = strstr(html, "<span class=\"role\">leaf</span>");
    const char *inter = strstr(html, "<span class=\"role\">intermediate</span>");
    const char *root = strstr(html, "<span class=\"role\">root</span>");
    EXPECT(leaf != NULL && inter != NULL && root != NULL && leaf < inter && inter < root);
    EXPECT_INT(count(html, ">sent by the server</span>"), 2);
    EXPECT_INT(count(html, ">from the trust store</span>"), 1);
    EXPECT_IN(html, "42 days left", "<code>AA:03</code>", "The root comes from /etc/ssl/certs.",
              "<div class=\"banner ok\"><b>Result: OK</b>, 200 &lt;b&gt;OK&lt;/b&gt;",
              "X-Evil: &lt;script&gt;");
    free(rows);
    done(r, html);
}

static const struct wire TLS12_REFUSED[] = {
    {1.0, MOAT_TRACE_OUT, SSL3_RT_HANDSHAKE, SSL3_MT_CLIENT_HELLO, 200},
    {2.0, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_SERVER_HELLO, 80},
    {2.1, MOAT_TRACE_IN, SSL3_RT_HANDSHAKE, SSL3_MT_CERTIFICATE, 900},
    {2.2, MOAT_TRACE_OUT, SSL3_RT_ALERT, 45, 2}, /* certificate_expired, fatal */
};

TEST_CASE(whole_page_failure)
{
    struct moat_client_result *r = calloc(1, sizeof(*r));
    hop_start(r, "https://old.test/", "192.0.2.1:443");
    struct moat_client_hop *h = &r->hops[0];
    h->stage = MOAT_STAGE_TLS;
    wire_trace(h, TLS12_REFUSED, sizeof(TLS12_REFUSED) / sizeof(TLS12_REFUSED[0]), TLS1_2_VERSION);
    h->path[0] = h->sent[0] = a_cert("CN=old.test", "CN=" EVIL, "BB:01");
    h->path[0].days_left = h->sent[0].days_left = -3;
    h->nsent = h->npath = 1;
    h->cause = MOAT_CC_CERT;
    h->vkind = MOAT_V_EXPIRED;
    h->verify_code = 10;
    SET(h->detail, "the server's certificate CN=old.test expired");
    h->total_ms = 2.3;
    r->cause = h->cause;
    r->exit_code = 5;
    char *html = page(r);
    expect_inert(html);
    EXPECT(strstr(html, "CN=&lt;script&gt;") != NULL);
    /* The alert is drawn red and its entry is open; the failure is marked where it happened. */
    EXPECT(strstr(html, "<g class=\"row k-tls bad\"><title>ALERT certificate_expired (fatal)") !=
           NULL);
    EXPECT(strstr(html, "<details class=\"msg k-tls bad\" id=\"c0-r4\" open>") != NULL);
    const char *mark = strstr(html, "<g class=\"fail\">");
    const char *svg = strstr(html, "<svg class=\"seq\"");
    EXPECT(svg != NULL && mark != NULL && mark > svg && mark < strstr(svg, "</svg>"));
    EXPECT(mark != NULL && mark > strstr(html, "ALERT certificate_expired"));
    EXPECT(strstr(html, "stopped here, at TLS: certificate expired</text>") != NULL);
    EXPECT(strstr(html, "FAILED at TLS: certificate expired</b> (exit code 5)") != NULL);
    EXPECT(strstr(html, moat_client_hop_message(h)) != NULL);
    char fix[700];
    snprintf(fix, sizeof(fix), "<dt>fix</dt><dd>%s</dd>", moat_client_hop_fix(h));
    EXPECT(strstr(html, fix) != NULL);
    EXPECT(strstr(html, "the server&#39;s certificate CN=old.test expired") != NULL);
    EXPECT(strstr(html, "href=\"#c0-fail\">failed at TLS: certificate expired</a>") != NULL);
    /* The card that failed, and the chain's end. */
    EXPECT_IN(html, "<li class=\"card server bad\">", "expired 3 days ago",
              "<li class=\"end\">verification stopped: expired</li>");
    /* TLS 1.2: the Certificate went in clear. */
    EXPECT(strstr(html, "<g class=\"row k-tls\"><title>Certificate") != NULL);
    done(r, html);
}

/* Hostile facts: fields that fill their arrays without a NUL, a length larger than the bytes
 * kept, markup in the server's first bytes and in HTTP/2 fields and debug data. */
TEST_CASE(hostile_facts_stay_inside_their_fields)
{
    struct moat_client_result *r = good_result();
    struct moat_client_hop *h = &r->hops[0];
    memset(h->reason, 'A', sizeof(h->reason));
    memset(h->path[0].subject, '<', sizeof(h->path[0].subject));
    memcpy(h->trace.first_in, "<script>x</script>", 18);
    h->trace.nfirst_in = 100000; /* more than the array holds */
    h->trace.first_in_ms = 1.5;
    h->http2 = 1;
    moat_h2rec_init(&h->h2);
    struct moat_h2_frame frames[] = {
        {.ms = 3.5,
         .last_ms = 3.5,
         .dir = MOAT_TRACE_IN,
         .type = MOAT_H2_HEADERS,
         .flags = MOAT_H2_FLAG_END_HEADERS,
         .stream_id = 1,
         .length = 40,
         .block = MOAT_H2_BLOCK_RESPONSE,
         .nfields = 2,
         .fields = strdup(":status: 200\nx-evil: " EVIL "\n")},
        {.ms = 3.6,
         .last_ms = 3.6,
         .dir = MOAT_TRACE_IN,
         .type = MOAT_H2_GOAWAY,
         .length = 30,
         .error_code = 2,
         .debug = strdup("<img src=x onerror=alert(1)>")},
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        moat_h2rec_add(&h->h2, &frames[i]);
    }
    char *html = page(r);
    expect_inert(html);
    char run[sizeof(h->reason) + 2];
    memset(run, 'A', sizeof(run) - 1);
    run[sizeof(run) - 1] = '\0';
    EXPECT(strstr(html, run) == NULL); /* 65 A's: read past the field */
    run[sizeof(run) - 2] = '\0';
    EXPECT(strstr(html, run) != NULL); /* 64 A's: the whole field */
    EXPECT_IN(html, "&lt;&lt;&lt;&lt;", "&lt;script&gt;x&lt;/script&gt;",
              "x-evil: &lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;",
              "HTTP/2 frames");
    done(r, html);
}

TEST_CASE(written_whole_or_not_at_all)
{
    struct moat_client_result *r = good_result();
    char dir[] = "/tmp/moat-test-html-XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/trace.html", dir);
    mode_t old = umask(077);
    struct moat_err err = {0};
    EXPECT_INT(moat_client_html_write_file(r, path, &err).kind, MOAT_OK);
    umask(old);
    struct stat st;
    EXPECT_INT(stat(path, &st), 0);
    EXPECT_INT(st.st_mode & 0777, 0644);
    EXPECT(st.st_size > 2000);
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/no/such/trace.html", dir);
    moat_err_clear(&err);
    EXPECT_INT(moat_client_html_write_file(r, bad, &err).kind, MOAT_E_IO);
    EXPECT(strstr(err.msg, "No such file") != NULL);
    /* A write error shows as -1. */
    FILE *full = fopen("/dev/full", "w");
    if (full != NULL) {
        EXPECT_INT(moat_client_render_html(r, full), -1);
        fclose(full);
    }
    /* No connection, nothing to show. */
    struct moat_client_result *none = calloc(1, sizeof(*none));
    moat_err_clear(&err);
    EXPECT_INT(moat_client_html_write_file(none, path, &err).kind, MOAT_E_USAGE);
    free(none);
    unlink(path);
    rmdir(dir);
    moat_client_result_clear(r);
    free(r);
}

int main(void)
{
    RUN(escape_markup_quotes_and_bytes);
    RUN(whole_page_success);
    RUN(whole_page_failure);
    RUN(hostile_facts_stay_inside_their_fields);
    RUN(written_whole_or_not_at_all);
    TEST_MAIN_END();
}
