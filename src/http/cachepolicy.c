/*
 * cachepolicy.c: see cachepolicy.h. Directive names are matched without case, values may be
 * quoted (RFC 9111 §5.2: senders should not, recipients should accept both).
 */
#include "http/cachepolicy.h"

#include "core/httpdate.h"

#include <string.h>
#include <strings.h>

#define DELTA_MAX 2147483648LL /* §1.2.2: "2^31 if an overflow is detected" */

void moat_cc_init(struct moat_cc *cc)
{
    *cc = (struct moat_cc){.max_age = -1,
                           .s_maxage = -1,
                           .stale_while_revalidate = -1,
                           .stale_if_error = -1,
                           .max_stale = -1,
                           .min_fresh = -1};
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int64_t delta_seconds(moat_slice v)
{
    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"') {
        v.p++;
        v.len -= 2;
    }
    if (v.len == 0) {
        return -1;
    }
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') {
            return -1;
        }
        if (n < DELTA_MAX) {
            n = n * 10 + (v.p[i] - '0');
        }
    }
    return n > DELTA_MAX ? DELTA_MAX : n;
}

static int name_is(moat_slice n, const char *lit)
{
    size_t l = strlen(lit);
    return n.len == l && strncasecmp(n.p, lit, l) == 0;
}

void moat_cc_parse(struct moat_cc *cc, moat_slice value)
{
    size_t i = 0;
    const char *p = value.p;
    size_t n = value.len;
    while (i < n) {
        while (i < n && (is_ows(p[i]) || p[i] == ',')) {
            i++;
        }
        size_t ns = i;
        while (i < n && p[i] != '=' && p[i] != ',' && !is_ows(p[i])) {
            i++;
        }
        moat_slice name = {.p = p + ns, .len = i - ns};
        while (i < n && is_ows(p[i])) {
            i++;
        }
        moat_slice arg = MOAT_SLICE_NULL;
        int has_arg = 0;
        if (i < n && p[i] == '=') {
            has_arg = 1;
            i++;
            while (i < n && is_ows(p[i])) {
                i++;
            }
            size_t as = i;
            if (i < n && p[i] == '"') { /* a quoted string, commas and all */
                i++;
                while (i < n && p[i] != '"') {
                    i += p[i] == '\\' && i + 1 < n ? 2 : 1;
                }
                i = i < n ? i + 1 : n;
            } else {
                while (i < n && p[i] != ',' && !is_ows(p[i])) {
                    i++;
                }
            }
            arg = (moat_slice){.p = p + as, .len = i - as};
        }
        while (i < n && p[i] != ',') {
            i++; /* junk after a directive */
        }
        if (name.len == 0) {
            continue;
        }
        int64_t d = has_arg ? delta_seconds(arg) : -1;
        if (name_is(name, "no-store")) {
            cc->flags |= MOAT_CC_NO_STORE;
        } else if (name_is(name, "no-cache")) {
            cc->flags |= MOAT_CC_NO_CACHE;
        } else if (name_is(name, "private")) {
            cc->flags |= MOAT_CC_PRIVATE;
        } else if (name_is(name, "public")) {
            cc->flags |= MOAT_CC_PUBLIC;
        } else if (name_is(name, "must-revalidate")) {
            cc->flags |= MOAT_CC_MUST_REVALIDATE;
        } else if (name_is(name, "proxy-revalidate")) {
            cc->flags |= MOAT_CC_PROXY_REVALIDATE;
        } else if (name_is(name, "no-transform")) {
            cc->flags |= MOAT_CC_NO_TRANSFORM;
        } else if (name_is(name, "only-if-cached")) {
            cc->flags |= MOAT_CC_ONLY_IF_CACHED;
        } else if (name_is(name, "must-understand")) {
            cc->flags |= MOAT_CC_MUST_UNDERSTAND;
        } else if (name_is(name, "immutable")) {
            cc->flags |= MOAT_CC_IMMUTABLE;
        } else if (name_is(name, "max-age")) {
            /* Repeated or invalid: the response is stale (§4.2.1). */
            cc->max_age = cc->max_age >= 0 || d < 0 ? 0 : d;
        } else if (name_is(name, "s-maxage")) {
            cc->s_maxage = cc->s_maxage >= 0 || d < 0 ? 0 : d;
        } else if (name_is(name, "stale-while-revalidate")) {
            cc->stale_while_revalidate = d;
        } else if (name_is(name, "stale-if-error")) {
            cc->stale_if_error = d;
        } else if (name_is(name, "max-stale")) {
            if (has_arg) {
                cc->max_stale = d;
            } else {
                cc->flags |= MOAT_CC_MAX_STALE_ANY;
            }
        } else if (name_is(name, "min-fresh")) {
            cc->min_fresh = d;
        }
    }
}

static int field_named(moat_slice n, const char *lc)
{
    return name_is(n, lc);
}

void moat_cc_of_fields(struct moat_cc *cc, const struct moat_field *f, size_t n)
{
    moat_cc_init(cc);
    int any = 0, pragma = 0;
    for (size_t i = 0; i < n; i++) {
        if (field_named(f[i].name, "cache-control")) {
            moat_cc_parse(cc, f[i].value);
            any = 1;
        } else if (field_named(f[i].name, "pragma")) {
            struct moat_cc p;
            moat_cc_init(&p);
            moat_cc_parse(&p, f[i].value);
            pragma |= (p.flags & MOAT_CC_NO_CACHE) != 0;
        }
    }
    if (!any && pragma) {
        cc->flags |= MOAT_CC_NO_CACHE;
    }
}

/* The value of a header line (after "Name:"), without OWS and the CRLF. */
static moat_slice line_value(moat_slice line, moat_slice name)
{
    moat_slice v = {.p = line.p + name.len + 1, .len = line.len - name.len - 1};
    while (v.len > 0 && is_ows(v.p[0])) {
        v.p++;
        v.len--;
    }
    while (v.len > 0 &&
           (v.p[v.len - 1] == '\r' || v.p[v.len - 1] == '\n' || is_ows(v.p[v.len - 1]))) {
        v.len--;
    }
    return v;
}

void moat_cc_of_lines(struct moat_cc *cc, const struct moat_buf *lines)
{
    moat_cc_init(cc);
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (field_named(name, "cache-control")) {
            moat_cc_parse(cc, line_value(line, name));
        }
    }
}

moat_slice moat_lines_field(const struct moat_buf *lines, const char *lc_name)
{
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (field_named(name, lc_name)) {
            return line_value(line, name);
        }
    }
    return MOAT_SLICE_NULL;
}

int moat_cache_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return 1;
    default:
        return 0;
    }
}

/* Statuses moat's cache knows the rules of (must-understand, §5.2.2.3): it stores whole
 * answers only, so 206 is not among them. */
static int status_understood(int status)
{
    return status != 206 && (moat_cache_status_heuristic(status) || status == 302 ||
                             status == 307 || status == 400 || status == 403 || status == 500 ||
                             status == 502 || status == 503 || status == 504);
}

static int has_vary_star(const struct moat_buf *lines)
{
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (!field_named(name, "vary")) {
            continue;
        }
        moat_slice v = line_value(line, name);
        for (size_t i = 0; i < v.len; i++) {
            if (v.p[i] == '*') {
                return 1;
            }
        }
    }
    return 0;
}

static int has_field(const struct moat_buf *lines, const char *lc)
{
    return moat_lines_field(lines, lc).p != NULL;
}

const char *moat_cache_storable(int status, const struct moat_buf *lines,
                                const struct moat_field *req_fields, size_t nreq)
{
    struct moat_cc q, r;
    moat_cc_of_fields(&q, req_fields, nreq);
    moat_cc_of_lines(&r, lines);
    if (q.flags & MOAT_CC_NO_STORE) {
        return "the request said no-store";
    }
    if (r.flags & MOAT_CC_MUST_UNDERSTAND) {
        /* §5.2.2.3: a cache that understands the status may ignore no-store. */
        if (!status_understood(status)) {
            return "must-understand with a status the cache does not know";
        }
    } else if (r.flags & MOAT_CC_NO_STORE) {
        return "no-store";
    }
    if (!status_understood(status)) {
        return "status";
    }
    if (r.flags & MOAT_CC_PRIVATE) {
        return "private";
    }
    if (has_vary_star(lines)) {
        return "Vary: *";
    }
    int explicit_ok = (r.flags & MOAT_CC_PUBLIC) || r.s_maxage >= 0;
    if (moat_field_find(req_fields, nreq, "authorization") != NULL &&
        !(explicit_ok || (r.flags & MOAT_CC_MUST_REVALIDATE))) {
        return "Authorization";
    }
    if (has_field(lines, "set-cookie") && !explicit_ok) {
        /* Not an RFC rule: one client's cookie must never reach another's browser. */
        return "Set-Cookie";
    }
    if (r.max_age < 0 && r.s_maxage < 0 && !has_field(lines, "expires") &&
        !(r.flags & MOAT_CC_PUBLIC) && !moat_cache_status_heuristic(status)) {
        return "no freshness information for this status";
    }
    return NULL;
}

int64_t moat_cache_lifetime(int status, const struct moat_buf *lines, time_t date,
                            const struct moat_cache_heuristic *h, int *heuristic)
{
    struct moat_cc r;
    moat_cc_of_lines(&r, lines);
    *heuristic = 0;
    if (r.s_maxage >= 0) {
        return r.s_maxage;
    }
    if (r.max_age >= 0) {
        return r.max_age;
    }
    moat_slice ex = moat_lines_field(lines, "expires");
    if (ex.p != NULL) {
        time_t t;
        /* An invalid Expires (often "0") means already expired (§5.3). */
        if (!moat_ok(moat_httpdate_parse(ex.p, ex.len, &t))) {
            return 0;
        }
        return t > date ? (int64_t)(t - date) : 0;
    }
    moat_slice lm = moat_lines_field(lines, "last-modified");
    time_t t;
    if (lm.p != NULL && moat_cache_status_heuristic(status) &&
        moat_ok(moat_httpdate_parse(lm.p, lm.len, &t)) && t < date) {
        int64_t life = (int64_t)(date - t) * (int64_t)h->percent / 100;
        *heuristic = 1;
        return life > h->max_s ? h->max_s : life;
    }
    return 0;
}

int64_t moat_cache_age(time_t now, time_t request_time, time_t response_time, time_t date,
                       int64_t age_field)
{
    int64_t apparent = response_time > date ? (int64_t)(response_time - date) : 0;
    int64_t delay = response_time > request_time ? (int64_t)(response_time - request_time) : 0;
    int64_t corrected = (age_field > 0 ? age_field : 0) + delay;
    int64_t initial = apparent > corrected ? apparent : corrected;
    int64_t resident = now > response_time ? (int64_t)(now - response_time) : 0;
    return initial + resident;
}

int moat_cache_usable(int64_t life, int64_t age, const struct moat_cc *rcc,
                      const struct moat_cc *qcc)
{
    if ((rcc->flags & MOAT_CC_NO_CACHE) || (qcc->flags & MOAT_CC_NO_CACHE)) {
        return 0;
    }
    if (qcc->max_age >= 0 && age > qcc->max_age) {
        return 0;
    }
    int64_t fresh = life - age;
    if (qcc->min_fresh >= 0 && fresh < qcc->min_fresh) {
        return 0;
    }
    if (fresh > 0) {
        return 1;
    }
    /* Stale: only if the request accepts it and the response allows it (§4.2.4). */
    if (rcc->flags & (MOAT_CC_MUST_REVALIDATE | MOAT_CC_PROXY_REVALIDATE)) {
        return 0;
    }
    if (rcc->s_maxage >= 0) {
        return 0; /* §5.2.2.10: s-maxage implies proxy-revalidate */
    }
    if (qcc->flags & MOAT_CC_MAX_STALE_ANY) {
        return 1;
    }
    return qcc->max_stale >= 0 && -fresh <= qcc->max_stale;
}
