/*
 * priority.c: the Priority field (see priority.h). The parse follows RFC 8941 §4.2 step by
 * step, one function per grammar rule. Every function takes the cursor and returns 0 when the
 * input does not match, which makes the whole field invalid.
 */
#include "http/priority.h"

#include <stdint.h>

struct cur {
    const char *p, *end;
};

enum { V_OTHER, V_INTEGER, V_BOOLEAN };

struct value {
    int type;
    int64_t i; /* V_INTEGER: the number; V_BOOLEAN: 0 or 1 */
};

static int at(const struct cur *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_lcalpha(int ch)
{
    return ch >= 'a' && ch <= 'z';
}

static int is_alpha(int ch)
{
    return is_lcalpha(ch) || (ch >= 'A' && ch <= 'Z');
}

/* RFC 9110 §5.6.2. */
static int is_tchar(int ch)
{
    switch (ch) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return is_alpha(ch) || is_digit(ch);
    }
}

static void skip_sp(struct cur *c)
{
    while (at(c, ' ')) {
        c->p++;
    }
}

static void skip_ows(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) {
        c->p++;
    }
}

/* §4.2.3.3: a key; *k and *klen say where it is. */
static int parse_key(struct cur *c, const char **k, size_t *klen)
{
    if (c->p >= c->end || !(is_lcalpha((unsigned char)*c->p) || *c->p == '*')) {
        return 0;
    }
    const char *start = c->p++;
    while (c->p < c->end) {
        int ch = (unsigned char)*c->p;
        if (!(is_lcalpha(ch) || is_digit(ch) || ch == '_' || ch == '-' || ch == '.' || ch == '*')) {
            break;
        }
        c->p++;
    }
    *k = start;
    *klen = (size_t)(c->p - start);
    return 1;
}

/* §4.2.4: an Integer or a Decimal. */
static int parse_number(struct cur *c, struct value *v)
{
    int neg = 0;
    if (at(c, '-')) {
        neg = 1;
        c->p++;
    }
    if (c->p >= c->end || !is_digit((unsigned char)*c->p)) {
        return 0;
    }
    int64_t n = 0;
    size_t digits = 0;
    while (c->p < c->end && is_digit((unsigned char)*c->p)) {
        if (++digits > 15) {
            return 0;
        }
        n = n * 10 + (*c->p++ - '0');
    }
    if (!at(c, '.')) {
        *v = (struct value){V_INTEGER, neg ? -n : n};
        return 1;
    }
    if (digits > 12) {
        return 0;
    }
    c->p++;
    size_t frac = 0;
    while (c->p < c->end && is_digit((unsigned char)*c->p)) {
        frac++;
        c->p++;
    }
    if (frac < 1 || frac > 3) {
        return 0;
    }
    v->type = V_OTHER;
    return 1;
}

/* §4.2.5: a String. */
static int parse_string(struct cur *c)
{
    c->p++; /* the DQUOTE */
    while (c->p < c->end) {
        int ch = (unsigned char)*c->p++;
        if (ch == '\\') {
            if (c->p >= c->end || (*c->p != '"' && *c->p != '\\')) {
                return 0;
            }
            c->p++;
        } else if (ch == '"') {
            return 1;
        } else if (ch < 0x20 || ch > 0x7e) {
            return 0;
        }
    }
    return 0;
}

/* §4.2.6: a Token (the first character, ALPHA or "*", is checked by the caller). */
static void parse_token(struct cur *c)
{
    c->p++;
    while (c->p < c->end && (is_tchar((unsigned char)*c->p) || *c->p == ':' || *c->p == '/')) {
        c->p++;
    }
}

/* §4.2.7: a Byte Sequence. */
static int parse_bytes(struct cur *c)
{
    c->p++;
    while (c->p < c->end) {
        int ch = (unsigned char)*c->p++;
        if (ch == ':') {
            return 1;
        }
        if (!(is_alpha(ch) || is_digit(ch) || ch == '+' || ch == '/' || ch == '=')) {
            return 0;
        }
    }
    return 0;
}

/* §4.2.3.1: a Bare Item. */
static int parse_bare_item(struct cur *c, struct value *v)
{
    if (c->p >= c->end) {
        return 0;
    }
    int ch = (unsigned char)*c->p;
    v->type = V_OTHER;
    if (ch == '-' || is_digit(ch)) {
        return parse_number(c, v);
    }
    if (ch == '"') {
        return parse_string(c);
    }
    if (is_alpha(ch) || ch == '*') {
        parse_token(c);
        return 1;
    }
    if (ch == ':') {
        return parse_bytes(c);
    }
    if (ch == '?') {
        c->p++;
        if (!at(c, '0') && !at(c, '1')) {
            return 0;
        }
        *v = (struct value){V_BOOLEAN, *c->p++ == '1'};
        return 1;
    }
    return 0;
}

/* §4.2.3.2: Parameters (their values do not matter here). */
static int parse_params(struct cur *c)
{
    while (at(c, ';')) {
        c->p++;
        skip_sp(c);
        const char *k;
        size_t klen;
        if (!parse_key(c, &k, &klen)) {
            return 0;
        }
        struct value v;
        if (at(c, '=')) {
            c->p++;
            if (!parse_bare_item(c, &v)) {
                return 0;
            }
        }
    }
    return 1;
}

/* §4.2.1.1 and §4.2.3: an Item, or an Inner List (whose value is no Integer or Boolean). */
static int parse_item_or_list(struct cur *c, struct value *v)
{
    if (!at(c, '(')) {
        return parse_bare_item(c, v) && parse_params(c);
    }
    c->p++;
    v->type = V_OTHER;
    for (;;) {
        skip_sp(c);
        if (at(c, ')')) {
            c->p++;
            return parse_params(c);
        }
        struct value item;
        if (!parse_bare_item(c, &item) || !parse_params(c)) {
            return 0;
        }
        if (!at(c, ' ') && !at(c, ')')) {
            return 0;
        }
    }
}

int moat_priority_parse(const char *p, size_t len, struct moat_priority *pri)
{
    struct cur c = {p, p + len};
    struct moat_priority out = *pri;
    skip_sp(&c);
    while (c.p < c.end) {
        const char *k;
        size_t klen;
        if (!parse_key(&c, &k, &klen)) {
            return 0;
        }
        struct value v = {V_BOOLEAN, 1}; /* a key alone is true (§4.2.2) */
        if (at(&c, '=')) {
            c.p++;
            if (!parse_item_or_list(&c, &v)) {
                return 0;
            }
        } else if (!parse_params(&c)) {
            return 0;
        }
        if (klen == 1 && k[0] == 'u') {
            if (v.type != V_INTEGER || v.i < 0 || v.i > 7) {
                return 0;
            }
            out.urgency = (int)v.i;
        } else if (klen == 1 && k[0] == 'i') {
            if (v.type != V_BOOLEAN) {
                return 0;
            }
            out.incremental = (int)v.i;
        }
        skip_ows(&c);
        if (c.p == c.end) {
            break;
        }
        if (*c.p != ',') {
            return 0;
        }
        c.p++;
        skip_ows(&c);
        if (c.p == c.end) {
            return 0; /* a trailing comma */
        }
    }
    *pri = out;
    return 1;
}
