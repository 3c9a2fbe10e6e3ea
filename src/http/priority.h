/*
 * priority.h: the Priority field of RFC 9218 (§4, §5).
 *
 * The field is a Structured Field Dictionary (RFC 8941 §3.2). Its member u (urgency, an
 * Integer 0-7) and its member i (incremental, a Boolean) set a request's priority. The whole
 * field is parsed as RFC 8941 §4.2 says, with the members of other keys and all parameters;
 * a member this code does not know is skipped (RFC 9218 §4). A field that does not parse,
 * or whose u or i has the wrong type or range, counts as absent: the request keeps its
 * priority. nghttp2's own parse makes the same choice, and HTTP/2 used to rely on it.
 */
#ifndef MOAT_HTTP_PRIORITY_H
#define MOAT_HTTP_PRIORITY_H

#include <stddef.h>

#define MOAT_PRIORITY_URGENCY_DEFAULT 3

struct moat_priority {
    int urgency;     /* 0 (most urgent) to 7 */
    int incremental; /* 0 or 1 */
};

/* Parse `len` bytes of a Priority field value. Returns 1 and sets the members the field has
 * (*pri holds the defaults, or an earlier value, on entry); returns 0 when the field is
 * invalid (*pri is unchanged). */
int moat_priority_parse(const char *p, size_t len, struct moat_priority *pri);

#endif
