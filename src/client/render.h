/*
 * render.h: `moat trace` as text: a sequence diagram with the client on the left and the server
 * on the right, one arrow per message that crossed, with its size and time, short notes where
 * TLS 1.2 and 1.3 differ, then what was negotiated, the certificates, the HTTP heads, the
 * timings and, for a failure, how far it got, the cause and the fix.
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

/* The note printed under a TLS message (where 1.2 and 1.3 differ, what it does), or NULL. */
const char *moat_client_render_note(const struct moat_trace_msg *m, int version);
/* The same for a message of hop h: the fatal alert that ended the connection gets what it
 * meant here (h->alert_gloss) instead of its generic words. Borrowed from h or static. */
const char *moat_client_render_hop_note(const struct moat_client_hop *h,
                                        const struct moat_trace_msg *m);

#endif
