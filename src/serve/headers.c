/*
 * headers.c: compile `header` rules per prefix (see headers.h).
 */
#include "serve/headers.h"

#include "serve/conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_VALUE 4096

/* Fields a rule may not touch, and why: moat frames the message and manages the connection
 * itself (RFC 9112 §6, RFC 9110 §7.6.1), must send Date (§6.6.1), and has a directive for HSTS
 * that also knows when not to send it. */
static const struct {
    const char *name;
    const char *why;
} reserved[] = {
    {"content-length", "moat frames every answer itself"},
    {"transfer-encoding", "moat frames every answer itself"},
    {"content-range", "moat computes it for range requests"},
    {"connection", "moat manages the connection itself"},
    {"keep-alive", "moat manages the connection itself"},
    {"proxy-connection", "moat manages the connection itself"},
    {"upgrade", "moat manages the connection itself"},
    {"te", "moat manages the connection itself"},
    {"trailer", "moat frames every answer itself"},
    {"date", "an origin server with a clock must send it (RFC 9110 §6.6.1)"},
    {"strict-transport-security", "use the hsts directive, which also knows when not to send it"},
};

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int moat_hdr_name_ok(const char *name, char *why, size_t whycap)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl > 128) {
        snprintf(why, whycap, "a header name is 1 to 128 characters");
        return 0;
    }
    for (size_t i = 0; i < nl; i++) {
        if (!is_tchar((unsigned char)name[i])) {
            snprintf(why, whycap,
                     "\"%.64s\" is not a header name (letters, digits and !#$%%&'*+-.^_`|~ only; "
                     "no colon, no spaces)",
                     name);
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcasecmp(name, reserved[i].name) == 0) {
            snprintf(why, whycap, "%s cannot be set by a header rule: %s", name, reserved[i].why);
            return 0;
        }
    }
    return 1;
}

int moat_hdr_value_ok(enum moat_hdr_op op, const char *name, const char *value, char *why,
                      size_t whycap)
{
    if (op == MOAT_HDR_REMOVE) {
        if (value != NULL) {
            snprintf(why, whycap, "remove takes only the name: header remove %s", name);
            return 0;
        }
        return 1;
    }
    if (value == NULL || value[0] == '\0') {
        snprintf(why, whycap, "%s needs a value: header %s %s VALUE", name,
                 op == MOAT_HDR_SET ? "set" : "add", name);
        return 0;
    }
    size_t vl = strlen(value);
    if (vl > MAX_VALUE) {
        snprintf(why, whycap, "the value of %s is longer than 4 KiB", name);
        return 0;
    }
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)value[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            snprintf(why, whycap,
                     "the value of %s holds a control character (only visible characters, "
                     "spaces and tabs may appear in a header value)",
                     name);
            return 0;
        }
    }
    if (value[0] == ' ' || value[0] == '\t' || value[vl - 1] == ' ' || value[vl - 1] == '\t') {
        snprintf(why, whycap, "the value of %s starts or ends with a space", name);
        return 0;
    }
    return 1;
}

/* Whether `path` (normalised, without trailing '/') lies under `prefix` at a segment boundary. */
static int under(const char *path, size_t len, const char *prefix, size_t plen)
{
    if (plen == 1 && prefix[0] == '/') {
        return 1;
    }
    return len >= plen && memcmp(path, prefix, plen) == 0 && (len == plen || path[plen] == '/');
}

/* A list of header lines being compiled: one entry per field, in order. */
struct line {
    const char *name;
    const char *value;
};

struct work {
    struct line *lines;
    size_t n;
};

static void drop_named(struct work *w, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (strcasecmp(w->lines[i].name, name) != 0) {
            w->lines[k++] = w->lines[i];
        }
    }
    w->n = k;
}

static void apply(struct work *w, enum moat_hdr_op op, const char *name, const char *value)
{
    if (op != MOAT_HDR_ADD) {
        drop_named(w, name);
    }
    if (op != MOAT_HDR_REMOVE) {
        w->lines[w->n++] = (struct line){name, value};
    }
}

static char *render(const struct work *w, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) {
        total += strlen(w->lines[i].name) + 2 + strlen(w->lines[i].value) + 2;
    }
    char *out = malloc(total + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < w->n; i++) {
        int n =
            snprintf(out + at, total + 1 - at, "%s: %s\r\n", w->lines[i].name, w->lines[i].value);
        at += n > 0 ? (size_t)n : 0;
    }
    out[at] = '\0';
    *len = at;
    return out;
}

static int has_name(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Compile the rules that apply under `prefix` (NULL: the site-wide ones only) into *s. */
static moat_rc compile(const struct moat_conf_site *cs, const char *prefix, int request,
                       struct moat_hdr_set *s, struct moat_err *err)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    struct work own = {calloc(cs->nheaders + 1, sizeof(struct line)), 0};
    struct work px = {calloc(cs->nheaders + 1, sizeof(struct line)), 0};
    s->drop = calloc(cs->nheaders + 1, sizeof(char *));
    moat_rc rc = MOAT_RC_OK;
    if (own.lines == NULL || px.lines == NULL || s->drop == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory for header rules");
        goto out;
    }
    if (!request) {
        apply(&own, MOAT_HDR_SET, "X-Content-Type-Options", "nosniff");
    }
    for (size_t i = 0; i < cs->nheaders; i++) {
        const struct moat_conf_header *h = &cs->headers[i];
        if (h->request != request) {
            continue;
        }
        if (h->prefix != NULL &&
            (prefix == NULL || !under(prefix, plen, h->prefix, strlen(h->prefix)))) {
            continue;
        }
        enum moat_hdr_op op = (enum moat_hdr_op)h->op;
        apply(&own, op, h->name, h->value);
        apply(&px, op, h->name, h->value);
        if (op != MOAT_HDR_ADD && !has_name(s->drop, s->ndrop, h->name)) {
            char *lc = strdup(h->name);
            if (lc == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                goto out;
            }
            for (char *p = lc; *p; p++) {
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
            }
            s->drop[s->ndrop++] = lc;
        }
    }
    s->own = render(&own, &s->own_len);
    s->proxied = render(&px, &s->proxied_len);
    if (prefix != NULL) {
        s->prefix = strdup(prefix);
        s->prefix_len = plen;
    }
    if (s->own == NULL || s->proxied == NULL || (prefix != NULL && s->prefix == NULL)) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
out:
    free(own.lines);
    free(px.lines);
    return rc;
}

static int by_length_desc(const void *a, const void *b)
{
    const struct moat_hdr_set *x = a, *y = b;
    return x->prefix_len < y->prefix_len ? 1 : x->prefix_len > y->prefix_len ? -1 : 0;
}

moat_rc moat_hdr_table_build(const struct moat_conf_site *cs, int request, struct moat_hdr_table *t,
                             struct moat_err *err)
{
    size_t nprefixes = 0;
    for (size_t i = 0; i < cs->nheaders; i++) {
        nprefixes += cs->headers[i].prefix != NULL && cs->headers[i].request == request;
    }
    t->sets = calloc(1 + nprefixes, sizeof(*t->sets));
    if (t->sets == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for header rules");
    }
    t->nsets = 1;
    MOAT_TRY(compile(cs, NULL, request, &t->sets[0], err));
    for (size_t i = 0; i < cs->nheaders; i++) {
        const char *p = cs->headers[i].request == request ? cs->headers[i].prefix : NULL;
        int seen = 0;
        for (size_t k = 1; k < t->nsets && p != NULL; k++) {
            seen |= strcmp(t->sets[k].prefix, p) == 0;
        }
        if (p == NULL || seen) {
            continue;
        }
        MOAT_TRY(compile(cs, p, request, &t->sets[t->nsets++], err));
    }
    qsort(t->sets + 1, t->nsets - 1, sizeof(*t->sets), by_length_desc);
    return MOAT_RC_OK;
}

void moat_hdr_table_clear(struct moat_hdr_table *t)
{
    for (size_t i = 0; t->sets != NULL && i < t->nsets; i++) {
        struct moat_hdr_set *s = &t->sets[i];
        free(s->prefix);
        free(s->own);
        free(s->proxied);
        for (size_t k = 0; k < s->ndrop; k++) {
            free(s->drop[k]);
        }
        free(s->drop);
    }
    free(t->sets);
    t->sets = NULL;
    t->nsets = 0;
}

const struct moat_hdr_set *moat_hdr_table_for(const struct moat_hdr_table *t, const char *path,
                                              size_t len)
{
    if (t->nsets == 0) {
        return NULL;
    }
    for (size_t i = 1; i < t->nsets; i++) {
        if (under(path, len, t->sets[i].prefix, t->sets[i].prefix_len)) {
            return &t->sets[i];
        }
    }
    return &t->sets[0];
}

int moat_hdr_set_drops(const struct moat_hdr_set *s, moat_slice name)
{
    for (size_t i = 0; s != NULL && i < s->ndrop; i++) {
        if (moat_slice_eq_lit_nocase(name, s->drop[i])) {
            return 1;
        }
    }
    return 0;
}
