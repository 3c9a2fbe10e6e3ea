/*
 * html.h: `moat trace --html FILE`: a trace as one self-contained HTML page that works offline
 * (inline CSS and SVG, no script, no external asset). Per connection: the sequence diagram as
 * SVG (one arrow per message, encrypted ones dashed with a lock, the point where each side
 * starts encrypting, a failure marked where it happened), each message again as a <details>
 * with its fields and plain-words note, the negotiated parameters, the certificate chain as
 * linked cards from leaf to root, the HTTP heads, the timings and the outcome with its fix.
 *
 * The page is drawn from the same row model and words as the text diagram (render.h), so the
 * two never disagree. Everything that came from the network or the command line is escaped.
 */
#ifndef MOAT_CLIENT_HTML_H
#define MOAT_CLIENT_HTML_H

#include "client/get.h"
#include "core/err.h"

#include <stdio.h>

/* Write the page of `r` to f. Returns 0, or -1 on a write error (or when out of memory). */
int moat_client_render_html(const struct moat_client_result *r, FILE *f);

/*
 * Write the page of `r` to `path` whole or not at all: built in memory, then written to a
 * temporary file beside it (mode 0644) and renamed over it (pki/fsutil.h). Refuses a result
 * without a connection. On failure `path` is left as it was and err says why (MOAT_E_IO with
 * errno, MOAT_E_NOMEM).
 */
MOAT_MUST_USE moat_rc moat_client_html_write_file(const struct moat_client_result *r,
                                                  const char *path, struct moat_err *err);

/* Write `n` bytes of s HTML-escaped (&<>"' as entities; control characters other than tab and
 * line ends, and bytes that are not UTF-8, as U+FFFD); stops early at a NUL. */
void moat_client_html_escape(FILE *f, const char *s, size_t n);

#endif
