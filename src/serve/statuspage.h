/*
 * statuspage.h: the admin interface's HTML page (GET /): sites and their certificates with
 * days left and the chain drawn, the ACME thread's state, the upstreams, request and error
 * rates as small charts, the recent warnings and errors.
 *
 * One self-contained document: no external assets (CSS and SVG inline), readable without
 * JavaScript (everything is rendered here); a short inline script refreshes it every 5 s by
 * fetching the page again. Every text from the configuration, certificates or logs is
 * HTML-escaped, and the page is sent with a Content-Security-Policy that allows nothing but
 * its own inline style and script and same-origin fetches.
 */
#ifndef MOAT_SERVE_STATUSPAGE_H
#define MOAT_SERVE_STATUSPAGE_H

#include "core/buf.h"
#include "core/err.h"
#include "serve/report.h"

#include <stdint.h>
#include <time.h>

#define MOAT_PAGE_SAMPLES 120 /* ten minutes, one sample each 5 s */
#define MOAT_PAGE_STEP_S 5

/* The totals at each sample, oldest first in a ring; the main thread's. */
struct moat_page_history {
    uint64_t req[MOAT_PAGE_SAMPLES], err4[MOAT_PAGE_SAMPLES], err5[MOAT_PAGE_SAMPLES];
    size_t n, next;
    time_t last; /* when the last sample was taken */
};

/* Take a sample when MOAT_PAGE_STEP_S passed since the last (called on every tick). */
void moat_page_sample(struct moat_page_history *h, const struct moat_report_src *r, time_t now);

/* The Content-Security-Policy the page is sent with. */
extern const char moat_page_csp[];

MOAT_MUST_USE moat_rc moat_page_render(const struct moat_report_src *r,
                                       const struct moat_page_history *h, struct moat_buf *out);

#endif
