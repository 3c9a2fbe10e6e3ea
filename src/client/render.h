/*
 * render.h: `moat trace` as text: a sequence diagram with the client on the left and the server
 * on the right, one arrow per message that crossed, with its size and time, short notes where
 * TLS 1.2 and 1.3 differ, then what was negotiated, the certificates, the HTTP heads, the
 * timings and, for a failure, how far it got, the cause and the fix.
 *
 * The rows of the diagram, their labels and notes, and the words for what was negotiated and
 * for certificates are exported too: html.c draws the same model as a page.
 */
#ifndef MOAT_CLIENT_RENDER_H
#define MOAT_CLIENT_RENDER_H

#include "client/get.h"

#include <stdio.h>

#define MOAT_RENDER_LANE 58 /* columns between the client's and the server's bars */

enum moat_render_arrow {
    MOAT_ARROW_OUT = 0, /* client to server, in clear */
    MOAT_ARROW_IN,      /* server to client, in clear */
    MOAT_ARROW_OUT_ENC, /* client to server, encrypted */
    MOAT_ARROW_IN_ENC,  /* server to client, encrypted */
    MOAT_ARROW_BOTH,    /* a two-way exchange (the TCP handshake) */
    MOAT_ARROW_COUNT    /* keep last */
};

/*
 * One arrow of the diagram between the bars, "|-- ClientHello 517 B ---->|" (label at the
 * sender's end), exactly MOAT_RENDER_LANE + 2 columns wide; a label too long is cut with "...".
 * Encrypted arrows are drawn with '=' instead of '-'. Returns out.
 */
const char *moat_client_render_arrow(enum moat_render_arrow kind, const char *label, char *out,
                                     size_t outlen);

/* Write the whole trace of `r` to f. */
void moat_client_render_text(const struct moat_client_result *r, FILE *f);

/*
 * The diagram as a model, shared by the text (here) and the HTML page (html.c), so both draw
 * the same rows with the same words: one row per arrow (or marker) of a hop, in time order.
 */
enum moat_render_row_kind {
    MOAT_ROW_TCP = 0,   /* the TCP connect (or its failure) */
    MOAT_ROW_TLS,       /* a TLS message: m */
    MOAT_ROW_H2,        /* an HTTP/2 frame, or a fold of several: f */
    MOAT_ROW_H2_MORE,   /* the frames past the record's bound (no arrow) */
    MOAT_ROW_RAW,       /* bytes from the server that were not TLS */
    MOAT_ROW_REQ,       /* the HTTP/1 request head */
    MOAT_ROW_RESP,      /* the HTTP/1 response head */
    MOAT_ROW_DONE,      /* the end of the HTTP/1 body */
    MOAT_ROW_FAIL,      /* where the connection stopped (no arrow) */
    MOAT_ROW_KIND_COUNT /* keep last */
};

struct moat_render_row {
    double ms; /* since the hop's start */
    enum moat_render_row_kind kind;
    const struct moat_trace_msg *m; /* MOAT_ROW_TLS: borrowed from the hop */
    const struct moat_h2_frame *f;  /* MOAT_ROW_H2: borrowed from the hop */
};

/* The rows of h in time order (stable: ties keep the order of the kinds above). A new array
 * (free() it) whose rows borrow from h; NULL when out of memory. *n is the count. */
struct moat_render_row *moat_client_render_rows(const struct moat_client_hop *h, size_t *n);
/* The arrow a row is drawn with; MOAT_ARROW_COUNT for the rows that have none. */
enum moat_render_arrow moat_client_render_row_arrow(const struct moat_client_hop *h,
                                                    const struct moat_render_row *r);
/* The row's label ("ClientHello  517 B", "ALERT unknown_ca (fatal)", "200 OK  head 154 B",
 * "stopped here: certificate expired"), cut to outlen. Returns out. */
const char *moat_client_render_row_label(const struct moat_client_hop *h,
                                         const struct moat_render_row *r, char *out, size_t outlen);
/* What to say about a row, or NULL: a TLS message's note (moat_client_render_msg_note), what
 * a kind of HTTP/2 frame is for, the addresses that failed before TCP connected, whether the
 * request went encrypted. Static, borrowed from h, or written into buf. (The text diagram
 * says a TLS or HTTP/2 note once per kind of message; the page says each.) */
const char *moat_client_render_row_note(const struct moat_client_hop *h,
                                        const struct moat_render_row *r, char *buf, size_t buflen);
/* The note of a TLS message of hop h as the diagram shows it: the resumption and no-SNI
 * words where they apply, else moat_client_render_hop_note. Borrowed or static. */
const char *moat_client_render_msg_note(const struct moat_client_hop *h,
                                        const struct moat_trace_msg *m);
/* What a kind of HTTP/2 frame is for, or NULL (static). */
const char *moat_client_render_h2_words(const struct moat_h2_frame *f);
/* "517 B" below 10,000 bytes, else "12.3 KiB". Returns out. */
const char *moat_client_render_size(size_t n, char *out, size_t outlen);
/* "2026-01-02 ... UTC to 2026-04-02 ... UTC (89 days left)", or EXPIRED / NOT YET VALID. */
const char *moat_client_render_validity(const struct moat_client_cert *c, char *out, size_t outlen);
/* Whether the server sent c (same fingerprint) on hop h. */
int moat_client_render_was_sent(const struct moat_client_hop *h, const struct moat_client_cert *c);
/* A failed hop's failure in two words: "certificate expired", "refused". Returns out. */
const char *moat_client_render_failure(const struct moat_client_hop *h, char *out, size_t outlen);

/* How a hop's response body was delimited (h->body_framing), for people: "Content-Length",
 * "chunked", "read until the server closed", "HTTP/2 DATA frames" or "none". */
const char *moat_client_render_framing(int body_framing);

/* One negotiated parameter for people: "cipher" = "TLS_AES_128_GCM_SHA256". */
struct moat_render_kv {
    const char *key; /* static */
    char value[240];
};
#define MOAT_RENDER_NEGOTIATED 7 /* version, cipher, group, signature, ALPN, SNI, session */
/* What hop h negotiated, in that order, into out[MOAT_RENDER_NEGOTIATED]; 0 when nothing was
 * (plain http://, or no ServerHello), else MOAT_RENDER_NEGOTIATED. */
size_t moat_client_render_negotiated(const struct moat_client_hop *h, struct moat_render_kv *out);

/* The note printed under a TLS message (where 1.2 and 1.3 differ, what it does), or NULL. */
const char *moat_client_render_note(const struct moat_trace_msg *m, int version);
/* The same for a message of hop h: the fatal alert that ended the connection gets what it
 * meant here (h->alert_gloss) instead of its generic words. Borrowed from h or static. */
const char *moat_client_render_hop_note(const struct moat_client_hop *h,
                                        const struct moat_trace_msg *m);

#endif
