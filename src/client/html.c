/*
 * html.c: see html.h. The page is written top-down in one pass per connection: the rows come
 * from moat_client_render_rows (the text diagram's model), are laid out once to know the
 * SVG's height, then drawn; the same rows are listed again as <details> under the diagram.
 *
 * Nothing the server, the DNS or the command line said reaches the page unescaped: every
 * string goes through moat_client_html_escape with the size of the field that holds it, so a
 * string without its NUL cannot run past its field, and bytes that are not UTF-8 become
 * U+FFFD rather than something a browser might guess at. The page has no script; what folds
 * does so with <details>, and the diagram's arrows link to their message's entry.
 */
#include "client/html.h"

#include "client/internal.h"
#include "client/render.h"
#include "pki/fsutil.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD in UTF-8 */
#define HEAD_MAX (64u * 1024)      /* bytes of an HTTP head or field block shown */
#define LABEL_MAX 96               /* bytes of an arrow's label drawn in the SVG */

/* The SVG's geometry, in its own units (it scales to the page's width). */
#define SVG_W 960
#define X_TIME 84    /* right edge of the time column */
#define X_CLIENT 150 /* the client's lifeline */
#define X_SERVER 860 /* the server's lifeline */
#define X_MID ((X_CLIENT + X_SERVER) / 2)
#define HEAD_H 74 /* the two boxes on top, and the server's address */
#define ROW_H 36  /* one arrow */
#define MARK_H 22 /* the line where a side starts encrypting */
#define FAIL_H 44 /* the failure marker */

/* How many bytes of a valid UTF-8 sequence start at p (RFC 3629 §4), 0 if none does. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    static const struct {
        unsigned char lo, hi;   /* lead byte range */
        unsigned char lo2, hi2; /* second byte range */
        unsigned char len;      /* bytes in the sequence */
    } seq[] = {
        {0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3}, {0xE1, 0xEC, 0x80, 0xBF, 3},
        {0xED, 0xED, 0x80, 0x9F, 3}, {0xEE, 0xEF, 0x80, 0xBF, 3}, {0xF0, 0xF0, 0x90, 0xBF, 4},
        {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4},
    };
    for (size_t k = 0; k < sizeof(seq) / sizeof(seq[0]); k++) {
        if (p[0] < seq[k].lo || p[0] > seq[k].hi) {
            continue;
        }
        size_t len = seq[k].len;
        if (n < len || p[1] < seq[k].lo2 || p[1] > seq[k].hi2) {
            return 0;
        }
        for (size_t i = 2; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                return 0;
            }
        }
        return len;
    }
    return 0;
}

/* What an ASCII byte becomes when it is not itself: markup and quotes as entities, DEL as
 * U+FFFD (the other control characters are caught by their range). */
static const char *const ascii_entity[128] = {
    ['&'] = "&amp;",  ['<'] = "&lt;",   ['>'] = "&gt;",
    ['"'] = "&quot;", ['\''] = "&#39;", [0x7f] = REPLACEMENT,
};

static const char *ascii_out(unsigned char c)
{
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
        return REPLACEMENT;
    }
    return ascii_entity[c];
}

void moat_client_html_escape(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (p != NULL && i < n && p[i] != '\0') {
        /* The longest run that goes out as it is, in one write. */
        size_t run = i;
        while (run < n && p[run] != '\0' &&
               (p[run] < 0x80 ? ascii_out(p[run]) == NULL : utf8_len(p + run, n - run) > 0)) {
            run += p[run] < 0x80 ? 1 : utf8_len(p + run, n - run);
        }
        fwrite(p + i, 1, run - i, f);
        i = run;
        if (i < n && p[i] != '\0') {
            const char *rep = p[i] < 0x80 ? ascii_out(p[i]) : REPLACEMENT;
            fputs(rep, f);
            i++;
        }
    }
}

/* A fixed-size field of a struct: escaped up to its own size whether or not it ends. A pointer
 * would give the pointer's size, so it is refused at compile time. */
#define ESC(f, field)                                                                              \
    do {                                                                                           \
        _Static_assert(!__builtin_types_compatible_p(__typeof__(field), __typeof__(&(field)[0])),  \
                       "ESC takes an array");                                                      \
        moat_client_html_escape((f), (field), sizeof(field));                                      \
    } while (0)

/* A NUL-terminated string (static words, or heap text moat made), at most `max` bytes. */
static void esc_str(FILE *f, const char *s, size_t max)
{
    if (s != NULL) {
        moat_client_html_escape(f, s, strnlen(s, max));
    }
}

/* An arrow's label: the text diagram's double spaces become a middle dot, which SVG keeps. */
static void esc_label(FILE *f, const char *s)
{
    size_t n = strnlen(s, LABEL_MAX);
    const char *end = s + n;
    while (s < end) {
        const char *gap = strstr(s, "  ");
        size_t l = gap != NULL && gap < end ? (size_t)(gap - s) : (size_t)(end - s);
        moat_client_html_escape(f, s, l);
        s += l;
        if (s < end) {
            fputs(" \xC2\xB7 ", f);
            while (s < end && *s == ' ') {
                s++;
            }
        }
    }
    if (n == LABEL_MAX && s[0] != '\0') {
        fputs("\xE2\x80\xA6", f); /* an ellipsis: the label was cut */
    }
}

/* An HTTP head without the empty line that ends it. */
static void head_text(FILE *f, const char *head)
{
    size_t n = strnlen(head, HEAD_MAX);
    while (n > 0 && (head[n - 1] == '\r' || head[n - 1] == '\n')) {
        n--;
    }
    moat_client_html_escape(f, head, n);
}

static const char CSS[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,"
    "sans-serif;color:#1f2328;background:#f6f8fa;margin:0}"
    "main{max-width:1000px;margin:0 auto;padding:24px}"
    "h1{font-size:22px;margin:0 0 4px;word-break:break-all}h2{font-size:18px;margin:32px 0 6px;"
    "word-break:break-all}h3{font-size:15px;margin:22px 0 8px}"
    "section.hop{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:4px 20px "
    "18px;margin-top:22px}"
    ".sub{color:#59636e}code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"
    "monospace}pre{background:#f6f8fa;border:1px solid #eaeef2;border-radius:6px;padding:8px;"
    "overflow-x:auto;white-space:pre-wrap;word-break:break-all;margin:6px 0}"
    ".banner{border-radius:8px;padding:10px 14px;margin:14px 0;border:1px solid}"
    ".ok{background:#dafbe1;border-color:#4ac26b}.warn{background:#fff8c5;border-color:#d4a72c}"
    ".fail{background:#ffebe9;border-color:#ff8182}.fail b.what{color:#a40e26}"
    ".banner dl{margin:6px 0 0}"
    "dl{display:grid;grid-template-columns:150px 1fr;gap:3px 12px;margin:6px 0}"
    "dt{color:#59636e}dd{margin:0;word-break:break-word}"
    "svg.seq{width:100%;height:auto;display:block;background:#fff}"
    "svg text{font:13px system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
    "fill:#1f2328}svg .time{fill:#59636e;font-size:12px;text-anchor:end}"
    "svg .lbl{text-anchor:middle}svg .lbl.l{text-anchor:start}svg .cap{fill:#59636e;"
    "font-size:12px}svg .actor{fill:#f6f8fa;stroke:#1f2328;stroke-width:1.5}"
    "svg .actor-t{font-weight:600;text-anchor:middle}svg .life{stroke:#8c959f;stroke-width:2;"
    "stroke-dasharray:2 3}svg .ln{stroke-width:1.8;fill:none}svg .enc .ln{stroke-dasharray:7 4}"
    "svg .k-tcp{--c:#57606a}svg .k-tls{--c:#0550ae}svg .k-http{--c:#116329}"
    "svg .k-h2{--c:#8250df}svg .k-raw{--c:#bc4c00}svg .k-dns{--c:#57606a}"
    "svg .row .ln{stroke:var(--c)}svg .row .hd{fill:var(--c)}svg .row .lbl{fill:var(--c)}"
    "svg .bad{--c:#cf222e}svg .bad .ln{stroke-width:3}svg .bad .lbl{font-weight:700}"
    "svg .lock rect{fill:#1a7f37}svg .lock path{stroke:#1a7f37;stroke-width:1.6;fill:none}"
    "svg .mark line{stroke:#1a7f37;stroke-width:1;stroke-dasharray:2 2}svg .mark text{"
    "fill:#1a7f37;font-size:11.5px}svg .failbox{fill:#ffebe9;stroke:#cf222e;stroke-width:1.5}"
    "svg .failx{stroke:#cf222e;stroke-width:3}svg .failt{fill:#a40e26;font-weight:700}"
    "svg .more{fill:#59636e;font-style:italic;text-anchor:middle}"
    "svg a:hover .lbl{text-decoration:underline}"
    ".legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px;color:#59636e;"
    "margin:8px 0}.legend i{display:inline-block;width:30px;height:0;border-top:2px solid "
    "#1f2328;vertical-align:middle;margin-right:6px}.legend i.e{border-top-style:dashed}"
    ".legend .sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;"
    "vertical-align:-1px}"
    "details.msg{border:1px solid #d0d7de;border-radius:6px;margin:4px 0;background:#fff}"
    "details.msg>summary{cursor:pointer;padding:5px 10px;list-style-position:inside}"
    "details.msg>div{padding:2px 14px 10px;border-top:1px solid #eaeef2}"
    "details.msg.bad{border-color:#ff8182;background:#fff5f5}"
    "summary .t{display:inline-block;width:78px;color:#59636e;font-variant-numeric:"
    "tabular-nums}summary .d{display:inline-block;width:130px;color:#59636e}"
    ".tag{font-size:11.5px;border-radius:10px;padding:1px 7px;margin-left:6px;"
    "border:1px solid #d0d7de;color:#59636e}.tag.e{color:#1a7f37;border-color:#4ac26b}"
    ".tag.x{color:#cf222e;border-color:#ff8182}.note{margin:8px 0 4px;font-style:italic}"
    "table.kv{border-collapse:collapse;width:100%}table.kv th,table.kv td{text-align:left;"
    "padding:5px 10px;border-bottom:1px solid #eaeef2;vertical-align:top}table.kv th{"
    "width:150px;color:#59636e;font-weight:500}"
    "ol.chain{list-style:none;padding:0;margin:0}ol.chain li.card{border:1px solid #d0d7de;"
    "border-left:5px solid #0969da;border-radius:8px;padding:8px 14px;background:#fff}"
    "ol.chain li.card.store{border-left-color:#1a7f37}ol.chain li.card.bad{border-color:#ff8182;"
    "border-left-color:#cf222e;background:#fff5f5}ol.chain li.card.extra{border-left-color:"
    "#8c959f}ol.chain h4{margin:2px 0 4px;font-size:14.5px;word-break:break-all}"
    "ol.chain li.link{color:#59636e;font-size:12.5px;padding:2px 0 2px 26px;border-left:2px "
    "solid #8c959f;margin-left:24px}ol.chain li.end{color:#a40e26;font-weight:600;padding:8px "
    "14px;border:1px dashed #ff8182;border-radius:8px}"
    ".src{font-size:12px;font-weight:600;border-radius:10px;padding:1px 8px;margin-right:6px;"
    "color:#fff;background:#0969da}.store .src{background:#1a7f37}.extra .src{background:"
    "#6e7781}.role{font-size:12px;color:#59636e;text-transform:uppercase;letter-spacing:.04em}"
    ".days{font-weight:600;color:#1a7f37}.days.low{color:#9a6700}.days.bad{color:#cf222e}"
    ".wf{display:grid;grid-template-columns:190px 1fr 80px;gap:4px 10px;align-items:center;"
    "font-size:13px}.wf .bar{position:relative;height:12px;background:#f0f3f6;"
    "border-radius:3px}.wf .bar span{position:absolute;top:0;bottom:0;border-radius:3px;"
    "background:#0969da;min-width:2px}.wf .n{text-align:right;font-variant-numeric:"
    "tabular-nums;color:#59636e}"
    "footer{color:#59636e;font-size:13px;margin-top:26px}";

/* ---------------------------------------------------------------------------------------- */
/* The diagram                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Where each row goes: its top, and whether a side starts encrypting just above it. */
struct slot {
    int y;
    int mark; /* 0, or 1 + the direction that starts encrypting */
};

static int arrow_enc(enum moat_render_arrow a)
{
    return a == MOAT_ARROW_OUT_ENC || a == MOAT_ARROW_IN_ENC;
}

static int arrow_out(enum moat_render_arrow a)
{
    return a == MOAT_ARROW_OUT || a == MOAT_ARROW_OUT_ENC;
}

/* Lay the rows out under the header and the DNS row; returns the SVG's height. */
static int layout(const struct moat_client_hop *h, const struct moat_render_row *rows, size_t n,
                  struct slot *slots)
{
    int y = HEAD_H + ROW_H; /* the DNS row */
    int started[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        enum moat_render_arrow a = moat_client_render_row_arrow(h, &rows[i]);
        slots[i].mark = 0;
        if (a != MOAT_ARROW_COUNT && h->url.https && arrow_enc(a)) {
            int d = arrow_out(a) ? 0 : 1;
            if (!started[d]) {
                started[d] = 1;
                slots[i].mark = 1 + d;
                y += MARK_H;
            }
        }
        slots[i].y = y;
        y += rows[i].kind == MOAT_ROW_FAIL ? FAIL_H : ROW_H;
    }
    return y + 16;
}

/* What a row is about, for its colour: TCP, TLS, HTTP/1, HTTP/2, bytes that are not TLS. */
static const char *row_class(const struct moat_render_row *r)
{
    switch (r->kind) {
    case MOAT_ROW_TCP:
        return "k-tcp";
    case MOAT_ROW_TLS:
        return "k-tls";
    case MOAT_ROW_H2:
    case MOAT_ROW_H2_MORE:
        return "k-h2";
    case MOAT_ROW_RAW:
        return "k-raw";
    default:
        return "k-http";
    }
}

/* A row drawn in red: the fatal alert, the TCP connect that failed, bytes that were not TLS. */
static int row_bad(const struct moat_client_hop *h, const struct moat_render_row *r)
{
    switch (r->kind) {
    case MOAT_ROW_TLS:
        return r->m->content_type == SSL3_RT_ALERT && r->m->alert_level == 2;
    case MOAT_ROW_TCP:
        return !h->tcp_ok;
    case MOAT_ROW_RAW:
        return h->cause != MOAT_CC_OK;
    default:
        return 0;
    }
}

static void lock_glyph(FILE *f, int x, int y)
{
    fprintf(f,
            "<g class=\"lock\" transform=\"translate(%d %d)\"><path d=\"M2 5V3a2.5 2.5 0 0 1 5 "
            "0v2\"/><rect x=\"0\" y=\"5\" width=\"9\" height=\"7\" rx=\"1.5\"/></g>",
            x, y);
}

static void head_at(FILE *f, int x, int y, int dir)
{
    fprintf(f, "<polygon class=\"hd\" points=\"%d,%d %d,%d %d,%d\"/>", x, y, x - 10 * dir, y - 5,
            x - 10 * dir, y + 5);
}

/* The line, its head(s) and the lock of one arrow whose line sits at y. */
static void arrow_shape(FILE *f, enum moat_render_arrow a, int y)
{
    int both = a == MOAT_ARROW_BOTH;
    int out = arrow_out(a);
    int x1 = X_CLIENT + (both || !out ? 10 : 0), x2 = X_SERVER - (both || out ? 10 : 0);
    fprintf(f, "<line class=\"ln\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", x1, y, x2, y);
    if (both || out) {
        head_at(f, X_SERVER, y, 1);
    }
    if (both || !out) {
        head_at(f, X_CLIENT, y, -1);
    }
    if (arrow_enc(a)) {
        lock_glyph(f, out ? X_CLIENT + 12 : X_SERVER - 21, y - 17);
    }
}

static void svg_mark(FILE *f, int y, int dir)
{
    int out = dir == 0;
    fprintf(f,
            "<g class=\"mark\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\">%s encrypted from here on</text></g>\n",
            X_CLIENT, y + 14, X_SERVER, y + 14, out ? X_CLIENT + 8 : X_SERVER - 8, y + 10,
            out ? "start" : "end",
            out ? "client \xE2\x86\x92 server:" : "server \xE2\x86\x92 client:");
}

static void svg_fail(FILE *f, const struct moat_client_hop *h, int y, const char *id)
{
    char what[128];
    int cy = y + 20;
    fprintf(f,
            "<a href=\"#%s\"><g class=\"fail\"><title>%s: see the cause and the fix below"
            "</title><rect class=\"failbox\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"30\" "
            "rx=\"6\"/><line class=\"failx\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
            "<line class=\"failx\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>"
            "<text class=\"failt\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
            id, moat_client_stage_name(h->stage), X_CLIENT - 14, cy - 15, X_SERVER - X_CLIENT + 28,
            X_CLIENT - 6, cy - 7, X_CLIENT + 8, cy + 7, X_CLIENT - 6, cy + 7, X_CLIENT + 8, cy - 7,
            X_MID, cy + 5);
    fprintf(f, "stopped here, at %s: ", moat_client_stage_name(h->stage));
    esc_str(f, moat_client_render_failure(h, what, sizeof(what)), sizeof(what));
    fputs("</text></g></a>\n", f);
}

/* The DNS step: a message of the client to itself, above the connection's rows. */
static void svg_dns(FILE *f, const struct moat_client_hop *h)
{
    int y = HEAD_H + 22;
    int bad = h->stage == MOAT_STAGE_DNS && h->naddrs == 0 && !h->url.host_ip;
    fprintf(f,
            "<g class=\"row k-dns%s\"><text class=\"time\" x=\"%d\" y=\"%d\">0.00 ms</text>"
            "<path class=\"ln\" d=\"M%d %d h34 v14 h-26\"/>",
            bad ? " bad" : "", X_TIME, y + 4, X_CLIENT, y - 7);
    head_at(f, X_CLIENT, y + 7, -1);
    fprintf(f, "<text class=\"lbl l\" x=\"%d\" y=\"%d\">DNS ", X_CLIENT + 44, y + 4);
    moat_client_html_escape(f, h->url.host, strnlen(h->url.host, 60));
    if (h->url.host_ip) {
        fputs(": an address, no lookup", f);
    } else if (h->naddrs == 0) {
        fprintf(f, " \xE2\x86\x92 no address (%.2f ms)", h->dns_ms);
    } else {
        fputs(" \xE2\x86\x92 ", f);
        ESC(f, h->addrs[0]);
        if (h->naddrs > 1) {
            fprintf(f, " (+%zu more)", h->naddrs - 1);
        }
        if (h->dns_from_resolve) {
            fputs(" from --resolve", f);
        } else {
            fprintf(f, " (%.2f ms)", h->dns_ms);
        }
    }
    fputs("</text></g>\n", f);
}

static void svg_head(FILE *f, const struct moat_client_hop *h, size_t hop, int height)
{
    fprintf(f,
            "<svg class=\"seq\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"sequence diagram "
            "of connection %zu\">\n",
            SVG_W, height, hop + 1);
    fprintf(f,
            "<line class=\"life\" x1=\"%d\" y1=\"40\" x2=\"%d\" y2=\"%d\"/>"
            "<line class=\"life\" x1=\"%d\" y1=\"40\" x2=\"%d\" y2=\"%d\"/>\n",
            X_CLIENT, X_CLIENT, height - 8, X_SERVER, X_SERVER, height - 8);
    fprintf(f,
            "<rect class=\"actor\" x=\"%d\" y=\"8\" width=\"120\" height=\"30\" rx=\"6\"/>"
            "<text class=\"actor-t\" x=\"%d\" y=\"28\">client</text>"
            "<rect class=\"actor\" x=\"%d\" y=\"8\" width=\"120\" height=\"30\" rx=\"6\"/>"
            "<text class=\"actor-t\" x=\"%d\" y=\"28\">server</text>"
            "<text x=\"%d\" y=\"56\" text-anchor=\"middle\" class=\"cap\">moat trace</text>"
            "<text x=\"%d\" y=\"56\" text-anchor=\"end\" class=\"cap\">",
            X_CLIENT - 60, X_CLIENT, X_SERVER - 60, X_SERVER, X_CLIENT, SVG_W - 8);
    moat_client_html_escape(f, h->url.host, strnlen(h->url.host, 60));
    if (h->peer[0] != '\0') {
        fputs(" (", f);
        ESC(f, h->peer);
        fputs(")", f);
    }
    fputs("</text>\n", f);
}

static void svg_row(FILE *f, const struct moat_client_hop *h, const struct moat_render_row *r,
                    const struct slot *s, const char *id)
{
    char label[256], buf[160];
    if (s->mark) {
        svg_mark(f, s->y - MARK_H, s->mark - 1);
    }
    if (r->kind == MOAT_ROW_FAIL) {
        svg_fail(f, h, s->y, id);
        return;
    }
    moat_client_render_row_label(h, r, label, sizeof(label));
    int y = s->y + 24;
    enum moat_render_arrow a = moat_client_render_row_arrow(h, r);
    fprintf(f, "<a href=\"#%s\"><g class=\"row %s%s%s\">", id, row_class(r),
            a != MOAT_ARROW_COUNT && arrow_enc(a) ? " enc" : "", row_bad(h, r) ? " bad" : "");
    const char *note = moat_client_render_row_note(h, r, buf, sizeof(buf));
    fputs("<title>", f);
    esc_label(f, label);
    if (note != NULL) {
        fputs(": ", f);
        esc_str(f, note, 1024);
    }
    fprintf(f, "</title><text class=\"time\" x=\"%d\" y=\"%d\">%.2f ms</text>", X_TIME, y + 4,
            r->ms);
    if (a == MOAT_ARROW_COUNT) {
        fprintf(f, "<text class=\"more\" x=\"%d\" y=\"%d\">", X_MID, y);
    } else {
        arrow_shape(f, a, y);
        fprintf(f, "<text class=\"lbl\" x=\"%d\" y=\"%d\">", X_MID, y - 7);
    }
    esc_label(f, label);
    fputs("</text></g></a>\n", f);
}

static void legend(FILE *f, const struct moat_client_hop *h)
{
    fputs("<div class=\"legend\">", f);
    if (h->url.https) {
        fputs("<span><i></i>in clear</span><span><i class=\"e\"></i><svg width=\"11\" "
              "height=\"13\" viewBox=\"0 0 10 13\" style=\"vertical-align:-2px;margin-right:4px\">"
              "<path d=\"M2 5V3a2.5 2.5 0 0 1 5 0v2\" stroke=\"#1a7f37\" stroke-width=\"1.6\" "
              "fill=\"none\"/><rect x=\"0\" y=\"5\" width=\"9\" height=\"7\" rx=\"1.5\" "
              "fill=\"#1a7f37\"/></svg>encrypted (TLS record protection)</span>",
              f);
    } else {
        fputs("<span><i></i>plain HTTP: nothing is encrypted</span>", f);
    }
    fputs("<span><span class=\"sw\" style=\"background:#57606a\"></span>TCP</span>"
          "<span><span class=\"sw\" style=\"background:#0550ae\"></span>TLS</span>"
          "<span><span class=\"sw\" style=\"background:#116329\"></span>HTTP</span>",
          f);
    if (h->http2) {
        fputs("<span><span class=\"sw\" style=\"background:#8250df\"></span>HTTP/2 "
              "frames</span>",
              f);
    }
    fputs("<span><span class=\"sw\" style=\"background:#cf222e\"></span>alert or failure</span>"
          "<span>time: ms since the start; click an arrow for its details</span></div>\n",
          f);
}

/* ---------------------------------------------------------------------------------------- */
/* The messages, one <details> each                                                          */
/* ---------------------------------------------------------------------------------------- */

static void dt(FILE *f, const char *name)
{
    fprintf(f, "<dt>%s</dt><dd>", name);
}

static void dt_text(FILE *f, const char *name, const char *value, size_t max)
{
    dt(f, name);
    esc_str(f, value, max);
    fputs("</dd>", f);
}

/* The same, left out when the field is empty. */
static void dt_opt(FILE *f, const char *name, const char *value, size_t max)
{
    if (value[0] != '\0') {
        dt_text(f, name, value, max);
    }
}

/* Why a hop failed and what to do, as the result says it. */
static void cause_rows(FILE *f, const struct moat_client_hop *h)
{
    dt_text(f, "cause", moat_client_hop_message(h), 1024);
    dt_opt(f, "detail", h->detail, sizeof(h->detail));
    dt_opt(f, "OpenSSL says", h->ssl_reason, sizeof(h->ssl_reason));
    dt_text(f, "fix", moat_client_hop_fix(h), 1024);
}

static const char *dir_words(int dir)
{
    return dir == MOAT_TRACE_OUT ? "client \xE2\x86\x92 server" : "server \xE2\x86\x92 client";
}

static void tls_fields(FILE *f, const struct moat_trace_msg *m)
{
    char nb[32];
    if (m->content_type == SSL3_RT_HANDSHAKE) {
        dt(f, "record");
        fprintf(f, "handshake (content type 22), message type %d (", m->hs_type);
        esc_str(f, moat_trace_hs_name(m->hs_type, m->hrr, nb, sizeof(nb)), sizeof(nb));
        fputs(")</dd>", f);
    } else if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
        dt_text(f, "record", "change_cipher_spec (content type 20)", 64);
    } else {
        dt(f, "record");
        fprintf(f, "alert (content type 21): %s, ", m->alert_level == 2 ? "fatal" : "warning");
        esc_str(f, moat_trace_alert_name(m->alert_desc, nb, sizeof(nb)), sizeof(nb));
        fprintf(f, " (description %d)</dd>", m->alert_desc);
    }
    dt(f, "size");
    fprintf(f, "%zu bytes%s</dd>", m->len,
            m->content_type == SSL3_RT_HANDSHAKE ? " (the 4-byte handshake header included)" : "");
    dt(f, "protection");
    fputs(m->encrypted ? "<span class=\"tag e\">encrypted</span> under the traffic keys"
                       : "<span class=\"tag\">in clear</span> anyone on the path can read it",
          f);
    fputs("</dd>", f);
    if (m->post_handshake) {
        dt_text(f, "when", "after the handshake (both Finished)", 64);
    }
    if (m->from_header) {
        dt_text(f, "seen as",
                "a record header only (OpenSSL reports a received ChangeCipherSpec so)", 128);
    }
}

static void h2_fields(FILE *f, const struct moat_h2_frame *fr)
{
    char b[64], note[700];
    dt(f, "frame");
    esc_str(f, moat_h2_type_name(fr->type, b, sizeof(b)), sizeof(b));
    if (fr->stream_id >= 0) {
        fprintf(f, " on stream %d", (int)fr->stream_id);
    }
    if (moat_h2_flags_text(fr->type, fr->flags, b, sizeof(b))[0] != '\0') {
        fputs(", flags ", f);
        esc_str(f, b, sizeof(b));
    }
    fputs("</dd>", f);
    dt(f, "payload");
    if (fr->count > 1) {
        fprintf(f, "%zu frames, %llu bytes, from %.2f to %.2f ms</dd>", fr->count,
                (unsigned long long)fr->bytes, fr->ms, fr->last_ms);
    } else {
        fprintf(f, "%zu bytes (plus the 9-byte frame header)</dd>", fr->length);
    }
    if (fr->type == MOAT_H2_SETTINGS && fr->nsettings > 0) {
        dt(f, "settings");
        for (size_t i = 0; i < fr->nsettings && i < MOAT_H2_MAX_SETTINGS; i++) {
            fputs(i ? ", " : "", f);
            esc_str(f, moat_h2_setting_name(fr->settings[i].id, b, sizeof(b)), sizeof(b));
            fprintf(f, "=%u", (unsigned)fr->settings[i].value);
        }
        fputs("</dd>", f);
    }
    if (fr->fields != NULL) {
        dt(f, "fields");
        fputs("<pre>", f);
        esc_str(f, fr->fields, MOAT_H2_FIELDS_MAX + 1);
        fputs("</pre></dd>", f);
    }
    if (fr->debug != NULL) {
        dt_text(f, "debug data", fr->debug, MOAT_H2_DEBUG_MAX + 1);
    }
    if (fr->refused) {
        dt(f, "refused");
        fputs("<span class=\"tag x\">invalid</span> ", f);
        ESC(f, fr->refused_why);
        fputs("</dd>", f);
    }
    if (moat_h2_frame_note(fr, note, sizeof(note))[0] != '\0') {
        dt_text(f, "says", note, sizeof(note));
    }
}

/* The first bytes the server sent, in hex and as text: what told them apart from TLS. */
static void raw_fields(FILE *f, const struct moat_client_hop *h)
{
    size_t n =
        h->trace.nfirst_in < MOAT_TRACE_FIRST_BYTES ? h->trace.nfirst_in : MOAT_TRACE_FIRST_BYTES;
    dt(f, "first bytes");
    fputs("<code>", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s%02x", i ? " " : "", h->trace.first_in[i]);
    }
    fputs("</code></dd>", f);
    dt(f, "as text");
    fputs("<pre>", f);
    moat_client_html_escape(f, (const char *)h->trace.first_in, n);
    fputs("</pre></dd>", f);
    dt_text(f, "why it matters",
            "a TLS record starts with a content type of 20 to 24; these bytes do not", 128);
}

static void fail_fields(FILE *f, const struct moat_client_hop *h)
{
    char what[128];
    dt_text(f, "stage", moat_client_stage_name(h->stage), 16);
    dt_text(f, "failure", moat_client_render_failure(h, what, sizeof(what)), sizeof(what));
    cause_rows(f, h);
}

static void row_fields(FILE *f, const struct moat_client_hop *h, const struct moat_render_row *r)
{
    switch (r->kind) {
    case MOAT_ROW_TCP:
        dt_text(f, "peer", h->peer, sizeof(h->peer));
        dt(f, "connect");
        if (h->tcp_ok) {
            fprintf(f, "%.3f ms (SYN, SYN-ACK, ACK: one round trip)</dd>", h->tcp_ms);
        } else {
            fputs("failed</dd>", f);
        }
        if (h->tcp_failed > 0) {
            dt(f, "tried before");
            fprintf(f, "%zu address%s that refused or failed</dd>", h->tcp_failed,
                    h->tcp_failed == 1 ? "" : "es");
        }
        break;
    case MOAT_ROW_TLS:
        tls_fields(f, r->m);
        break;
    case MOAT_ROW_H2:
        h2_fields(f, r->f);
        break;
    case MOAT_ROW_H2_MORE:
        dt(f, "not listed");
        fprintf(f,
                "%zu frames, %llu payload bytes, the last at %.2f ms (the record keeps %d rows)"
                "</dd>",
                h->h2.not_recorded, (unsigned long long)h->h2.not_recorded_bytes,
                h->h2.not_recorded_last_ms, MOAT_H2_MAX_FRAMES);
        break;
    case MOAT_ROW_RAW:
        raw_fields(f, h);
        break;
    case MOAT_ROW_REQ:
    case MOAT_ROW_RESP: {
        const char *head = r->kind == MOAT_ROW_REQ ? h->req_head : h->resp_head;
        dt(f, r->kind == MOAT_ROW_REQ ? "request head" : "response head");
        fprintf(f, "%zu bytes<pre>", strnlen(head, HEAD_MAX));
        head_text(f, head);
        fputs("</pre></dd>", f);
        break;
    }
    case MOAT_ROW_DONE:
        dt(f, "body");
        fprintf(f, "%llu bytes, ", (unsigned long long)h->body_bytes);
        esc_str(f, moat_client_render_framing(h->body_framing), 64);
        fputs("</dd>", f);
        break;
    case MOAT_ROW_FAIL:
    default:
        fail_fields(f, h);
        break;
    }
}

static void message_list(FILE *f, const struct moat_client_hop *h,
                         const struct moat_render_row *rows, size_t n, size_t hop)
{
    fprintf(f, "<h3>Messages (%zu)</h3>\n", n);
    for (size_t i = 0; i < n; i++) {
        const struct moat_render_row *r = &rows[i];
        char label[256], buf[160];
        enum moat_render_arrow a = moat_client_render_row_arrow(h, r);
        int bad = row_bad(h, r) || r->kind == MOAT_ROW_FAIL;
        fprintf(f,
                "<details class=\"msg %s%s\" id=\"c%zu-r%zu\"%s><summary><span class=\"t\">"
                "%.2f ms</span><span class=\"d\">%s</span><b>",
                row_class(r), bad ? " bad" : "", hop, i, bad ? " open" : "", r->ms,
                a == MOAT_ARROW_COUNT  ? ""
                : a == MOAT_ARROW_BOTH ? "both ways"
                                       : dir_words(arrow_out(a) ? MOAT_TRACE_OUT : MOAT_TRACE_IN));
        esc_label(f, moat_client_render_row_label(h, r, label, sizeof(label)));
        fputs("</b>", f);
        if (a != MOAT_ARROW_COUNT && h->url.https && r->kind != MOAT_ROW_TCP &&
            r->kind != MOAT_ROW_RAW) {
            fputs(arrow_enc(a) ? "<span class=\"tag e\">encrypted</span>"
                               : "<span class=\"tag\">in clear</span>",
                  f);
        }
        if (bad) {
            fputs("<span class=\"tag x\">failure</span>", f);
        }
        fputs("</summary><div>", f);
        const char *note = moat_client_render_row_note(h, r, buf, sizeof(buf));
        if (note != NULL) {
            fputs("<p class=\"note\">", f);
            esc_str(f, note, 1024);
            fputs("</p>", f);
        }
        fprintf(f, "<dl><dt>time</dt><dd>%.3f ms since the start</dd>", r->ms);
        row_fields(f, h, r);
        fputs("</dl></div></details>\n", f);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Negotiated, certificates, HTTP, timings, outcome                                          */
/* ---------------------------------------------------------------------------------------- */

static void negotiated(FILE *f, const struct moat_client_hop *h)
{
    struct moat_render_kv kv[MOAT_RENDER_NEGOTIATED];
    size_t n = moat_client_render_negotiated(h, kv);
    if (n == 0) {
        return;
    }
    fputs("<h3>Negotiated</h3>\n<table class=\"kv\">", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "<tr><th>%s</th><td>", kv[i].key);
        ESC(f, kv[i].value);
        fputs("</td></tr>", f);
    }
    fputs("</table>\n", f);
}

static void days_left(FILE *f, const struct moat_client_cert *c)
{
    if (c->days_left < 0) {
        fprintf(f, " <span class=\"days bad\">expired %ld days ago</span>", -c->days_left);
    } else if (c->days_to_start > 0) {
        fprintf(f, " <span class=\"days bad\">not valid for %ld more days</span>",
                c->days_to_start);
    } else {
        fprintf(f, " <span class=\"days%s\">%ld days left</span>", c->days_left < 14 ? " low" : "",
                c->days_left);
    }
}

/* One certificate card. `where` says where it came from; `bad` marks the one that failed. */
static void cert_card(FILE *f, const struct moat_client_cert *c, const char *role, const char *cls,
                      const char *where, const char *bad)
{
    fprintf(f,
            "<li class=\"card %s%s\"><span class=\"src\">%s</span><span class=\"role\">%s"
            "</span><h4>",
            cls, bad != NULL ? " bad" : "", where, role);
    ESC(f, c->subject);
    fputs("</h4><dl>", f);
    if (bad != NULL) {
        dt_text(f, "verification", bad, 256);
    }
    dt_text(f, "issuer", c->issuer, sizeof(c->issuer));
    dt(f, "valid");
    ESC(f, c->not_before);
    fputs(" to ", f);
    ESC(f, c->not_after);
    days_left(f, c);
    fputs("</dd>", f);
    dt(f, "names");
    if (c->names[0] != '\0') {
        ESC(f, c->names);
    } else {
        fputs(c->is_ca ? "none (a CA certificate)" : "none (no subjectAltName)", f);
    }
    fputs("</dd>", f);
    dt(f, "key");
    ESC(f, c->key);
    fprintf(f, "%s%s</dd>", c->is_ca ? ", CA" : "", c->self_signed ? ", self-signed" : "");
    dt_text(f, "signature", c->sig, sizeof(c->sig));
    dt(f, "SHA-256");
    fputs("<code>", f);
    ESC(f, c->sha256);
    fputs("</code></dd></dl></li>\n", f);
}

static const char *cert_role(const struct moat_client_cert *c, size_t i, size_t n)
{
    if (i == 0 && !c->is_ca) {
        return "leaf";
    }
    if (c->self_signed || (i + 1 == n && c->is_ca)) {
        return "root";
    }
    return c->is_ca ? "intermediate" : "certificate";
}

static void chain_link(FILE *f, int last)
{
    if (!last) {
        fputs("<li class=\"link\">\xE2\x86\x93 issued by</li>\n", f);
    }
}

static void certificates(FILE *f, const struct moat_client_result *res,
                         const struct moat_client_hop *h)
{
    if (!h->url.https) {
        return;
    }
    if (h->resumed) {
        fprintf(f,
                "<h3>Certificates</h3><p>None crossed: the session was resumed (the chain was "
                "verified on connection %d).</p>\n",
                h->resume_offered);
        return;
    }
    if (h->nsent == 0 && h->npath == 0) {
        return;
    }
    char why[400];
    const char *bad_words = NULL;
    if (h->verify_code != 0) {
        moat_client__fmt(why, sizeof(why), "failed here: %s", moat_verify_kind_name(h->vkind));
        bad_words = why;
    }
    size_t npath = h->npath < MOAT_CLIENT_MAX_CHAIN ? h->npath : MOAT_CLIENT_MAX_CHAIN;
    size_t nsent = h->nsent < MOAT_CLIENT_MAX_CHAIN ? h->nsent : MOAT_CLIENT_MAX_CHAIN;
    int depth = h->verify_depth;
    if (npath > 0) {
        fprintf(f, "<h3>Certificate chain, leaf to root (%s)</h3>\n<ol class=\"chain\">\n",
                h->path_complete ? "the path verification built" : "as far as verification got");
        for (size_t i = 0; i < npath; i++) {
            const struct moat_client_cert *c = &h->path[i];
            int sent = moat_client_render_was_sent(h, c);
            int root = i + 1 == npath && (h->path_complete || c->self_signed);
            const char *where = sent && root ? "sent by the server, trusted here"
                                : sent       ? "sent by the server"
                                : root       ? "from the trust store"
                                             : "found locally, not sent";
            cert_card(f, c, cert_role(c, i, npath), sent ? "server" : "store", where,
                      (int)i == depth ? bad_words : NULL);
            chain_link(f, i + 1 == npath && h->path_complete);
        }
    } else {
        fprintf(f,
                "<h3>Certificates sent by the server (%zu, in the order sent)</h3>\n"
                "<ol class=\"chain\">\n",
                nsent);
        for (size_t i = 0; i < nsent; i++) {
            cert_card(f, &h->sent[i], cert_role(&h->sent[i], i, nsent), "server",
                      "sent by the server", (int)i == depth ? bad_words : NULL);
            chain_link(f, i + 1 == nsent && h->path_complete);
        }
    }
    int issuer_kind = h->vkind == MOAT_V_UNKNOWN_ISSUER ||
                      h->vkind == MOAT_V_MISSING_INTERMEDIATE || h->vkind == MOAT_V_SELF_SIGNED;
    if (!h->path_complete && issuer_kind) {
        fputs("<li class=\"end\">no trusted root: the chain ends here. Trusted here: ", f);
        ESC(f, res->trust_desc);
        fputs("</li>\n", f);
    } else if (!h->path_complete) {
        fprintf(f, "<li class=\"end\">verification stopped: %s</li>\n",
                moat_verify_kind_name(h->vkind));
    }
    fputs("</ol>\n", f);
    if (h->path_complete && h->root_source[0] != '\0') {
        fputs("<p class=\"sub\">The root comes from ", f);
        ESC(f, h->root_source);
        fputs(".</p>\n", f);
    }
    /* Certificates the server sent that the path did not use (extra or out of order). */
    int extra = 0;
    for (size_t i = 0; npath > 0 && i < nsent; i++) {
        int used = 0;
        for (size_t k = 0; k < npath; k++) {
            used |= strcmp(h->sent[i].sha256, h->path[k].sha256) == 0;
        }
        if (used) {
            continue;
        }
        if (!extra++) {
            fputs("<h3>Sent by the server, not in the path</h3>\n<ol class=\"chain\">\n", f);
        }
        cert_card(f, &h->sent[i], "not used", "extra", "sent by the server", NULL);
    }
    if (extra) {
        fputs("</ol>\n", f);
    }
}

static void issuer_lookup(FILE *f, const struct moat_client_hop *h)
{
    if (h->naia == 0 && h->aia_note[0] == '\0') {
        return;
    }
    fputs("<h3>Issuer lookup (the certificate's AIA caIssuers URL, RFC 5280 4.2.2.1)</h3>\n<dl>",
          f);
    size_t naia = h->naia < MOAT_CLIENT_MAX_AIA ? h->naia : MOAT_CLIENT_MAX_AIA;
    for (size_t i = 0; i < naia; i++) {
        const struct moat_client_aia_fetch *a = &h->aia[i];
        dt(f, "fetched");
        fputs("the issuer of ", f);
        ESC(f, a->for_cert);
        fputs(" from <code>", f);
        ESC(f, a->url);
        fputs("</code>", f);
        if (a->final_url[0] != '\0') {
            fputs(", redirected to <code>", f);
            ESC(f, a->final_url);
            fputs("</code>", f);
        }
        if (a->ok) {
            fprintf(f, ": got it (HTTP %d, %zu bytes, ", a->status, a->bytes);
            esc_str(f, a->form, 32);
            fputs("): ", f);
            ESC(f, a->cert.subject);
        } else {
            fputs(": failed: ", f);
            ESC(f, a->error);
        }
        fprintf(f, " in %.1f ms</dd>", a->ms);
    }
    dt_opt(f, h->naia ? "then" : "nothing", h->aia_note, sizeof(h->aia_note));
    dt_opt(f, "result", h->issuer_summary, sizeof(h->issuer_summary));
    fputs("</dl>\n", f);
}

static void http_part(FILE *f, const struct moat_client_hop *h)
{
    if (h->req_head == NULL) {
        return;
    }
    fprintf(f, "<h3>HTTP (%s)</h3>\n<details open><summary>request head</summary><pre>",
            h->http2 ? "HTTP/2" : "HTTP/1.1");
    head_text(f, h->req_head);
    fputs("</pre></details>\n", f);
    if (h->resp_head != NULL) {
        fputs("<details open><summary>response head</summary><pre>", f);
        head_text(f, h->resp_head);
        fprintf(f, "</pre></details>\n<p>Body: %llu bytes (", (unsigned long long)h->body_bytes);
        esc_str(f, moat_client_render_framing(h->body_framing), 64);
        fputs(").</p>\n", f);
    }
}

static void wf_row(FILE *f, const char *name, double from, double to, double total,
                   const char *colour)
{
    if (to < from) {
        to = from;
    }
    double left = from / total * 100.0, width = (to - from) / total * 100.0;
    left = left < 0 ? 0 : left > 100 ? 100 : left;
    width = width > 100 - left ? 100 - left : width;
    fprintf(f,
            "<div>%s</div><div class=\"bar\"><span style=\"left:%.2f%%;width:%.2f%%;"
            "background:%s\"></span></div><div class=\"n\">%.2f ms</div>\n",
            name, left, width, colour, to - from);
}

static void timings(FILE *f, const struct moat_client_hop *h)
{
    double total = h->total_ms > 0.001 ? h->total_ms : 0.001;
    fputs("<h3>Timings</h3>\n<div class=\"wf\">\n", f);
    if (!h->url.host_ip && !h->dns_from_resolve) {
        wf_row(f, "DNS", 0, h->dns_ms, total, "#57606a");
    }
    if (h->peer[0] != '\0') {
        wf_row(f, h->tcp_ok ? "TCP connect" : "TCP connect (failed)", h->tcp_start_ms,
               h->tcp_ok ? h->tcp_start_ms + h->tcp_ms : h->total_ms, total, "#8c959f");
    }
    if (h->tls_start_ms > 0) {
        wf_row(f, h->tls_done ? "TLS handshake" : "TLS handshake (stopped)", h->tls_start_ms,
               h->tls_done ? h->tls_start_ms + h->tls_ms : h->total_ms, total, "#0550ae");
    }
    if (h->req_head != NULL && h->first_byte_ms > 0 && h->resp_head != NULL) {
        wf_row(f, "waiting for the answer", h->req_ms, h->first_byte_ms, total, "#d4a72c");
        if (h->done_ms > 0) {
            wf_row(f, "response body", h->first_byte_ms, h->done_ms, total, "#116329");
        }
    }
    wf_row(f, "<b>total</b>", 0, h->total_ms, total, "#1f2328");
    fputs("</div>\n", f);
}

static void outcome(FILE *f, const struct moat_client_result *r, const struct moat_client_hop *h,
                    size_t hop)
{
    if (h->cause == MOAT_CC_OK) {
        fprintf(f, "<div class=\"banner ok\"><b>Result: OK</b>, %d ", h->status);
        ESC(f, h->reason);
        fprintf(f, " in %.1f ms</div>\n", h->total_ms);
    } else if (h->cause == MOAT_CC_HTTP_STATUS) {
        fprintf(f, "<div class=\"banner warn\">The server answered <b>%d ", h->status);
        ESC(f, h->reason);
        fprintf(f, "</b> (exit code %d).</div>\n", moat_client_cause_exit(h->cause));
    } else {
        char what[128];
        fprintf(f,
                "<div class=\"banner fail\" id=\"c%zu-fail\"><b class=\"what\">FAILED at %s: ", hop,
                moat_client_stage_name(h->stage));
        esc_str(f, moat_client_render_failure(h, what, sizeof(what)), sizeof(what));
        fprintf(f, "</b> (exit code %d)<dl>", moat_client_cause_exit(h->cause));
        cause_rows(f, h);
        fputs("</dl></div>\n", f);
    }
    if (r->insecure) {
        fputs("<div class=\"banner fail\"><b>--insecure</b>: ", f);
        if (h->verify_code != 0) {
            fprintf(f,
                    "the certificate failed (%s); the connection went on anyway: nothing "
                    "here is protected against an attacker.",
                    moat_verify_kind_name(h->vkind));
        } else {
            fputs("the certificate was not enforced (it did verify).", f);
        }
        fputs("</div>\n", f);
    }
}

static void hop_title(FILE *f, const struct moat_client_result *r, size_t i)
{
    const struct moat_client_hop *h = &r->hops[i];
    fprintf(f, "<section class=\"hop\" id=\"c%zu\"><h2>Connection %zu: ", i, i + 1);
    ESC(f, h->url_text);
    fputs("</h2>\n", f);
    if (i > 0 && h->again) {
        fprintf(f,
                "<p class=\"sub\">The same request again, offering connection %zu's TLS "
                "session (--resume).</p>\n",
                i);
    } else if (i > 0) {
        fprintf(f, "<p class=\"sub\">Redirect %zu: following the %d of connection %zu.</p>\n", i,
                r->hops[i - 1].status, i);
    }
}

static int hop_html(FILE *f, const struct moat_client_result *res, size_t hop)
{
    const struct moat_client_hop *h = &res->hops[hop];
    size_t n = 0;
    struct moat_render_row *rows = moat_client_render_rows(h, &n);
    struct slot *slots = calloc(n + 1, sizeof(*slots));
    if (rows == NULL || slots == NULL) {
        free(rows);
        free(slots);
        return -1;
    }
    hop_title(f, res, hop);
    legend(f, h);
    int height = layout(h, rows, n, slots);
    svg_head(f, h, hop, height);
    svg_dns(f, h);
    for (size_t i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof(id), "c%zu-r%zu", hop, i);
        svg_row(f, h, &rows[i], &slots[i], id);
    }
    fputs("</svg>\n", f);
    if (hop + 1 == res->nhops) {
        outcome(f, res, h, hop);
    }
    message_list(f, h, rows, n, hop);
    negotiated(f, h);
    certificates(f, res, h);
    issuer_lookup(f, h);
    http_part(f, h);
    timings(f, h);
    fputs("</section>\n", f);
    free(rows);
    free(slots);
    return 0;
}

int moat_client_render_html(const struct moat_client_result *r, FILE *f)
{
    const char *url = r->nhops > 0 ? r->hops[0].url_text : "";
    size_t url_max = sizeof(r->hops[0].url_text);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
          "<title>moat trace ",
          f);
    esc_str(f, url, url_max);
    fprintf(f, "</title><style>%s</style></head><body><main>\n<h1>moat trace ", CSS);
    esc_str(f, url, url_max);
    fputs("</h1>\n<div class=\"sub\">Trusted: ", f);
    ESC(f, r->trust_desc);
    char what[128];
    const struct moat_client_hop *last = r->nhops > 0 ? &r->hops[r->nhops - 1] : NULL;
    fprintf(f, ". %zu connection%s; result: ", r->nhops, r->nhops == 1 ? "" : "s");
    if (last == NULL || last->cause == MOAT_CC_OK || last->cause == MOAT_CC_HTTP_STATUS) {
        fprintf(f, "%s (exit code %d)", moat_client_cause_name(r->cause), r->exit_code);
    } else {
        fprintf(f, "<a href=\"#c%zu-fail\">failed at %s: ", r->nhops - 1,
                moat_client_stage_name(last->stage));
        esc_str(f, moat_client_render_failure(last, what, sizeof(what)), sizeof(what));
        fprintf(f, "</a> (exit code %d)", r->exit_code);
    }
    fputs(".</div>\n", f);
    for (size_t i = 0; i < r->nhops && i < MOAT_CLIENT_MAX_HOPS; i++) {
        if (hop_html(f, r, i) != 0) {
            return -1;
        }
    }
    if (r->note[0] != '\0') {
        fputs("<p><b>Note:</b> ", f);
        ESC(f, r->note);
        fputs("</p>\n", f);
    }
    fputs("<footer>Made by moat trace: the same facts as its text diagram and --json. "
          "The page has no script and loads nothing.</footer>\n</main></body></html>\n",
          f);
    return ferror(f) ? -1 : 0;
}

moat_rc moat_client_html_write_file(const struct moat_client_result *r, const char *path,
                                    struct moat_err *err)
{
    if (r->nhops == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "no connection was made: there is nothing to show");
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the page");
    }
    int bad = moat_client_render_html(r, m) != 0;
    bad |= fclose(m) != 0;
    if (bad) {
        free(buf);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the page");
    }
    moat_rc rc = moat_fs_write_atomic(path, buf, len, 0644, err);
    free(buf);
    return rc;
}
