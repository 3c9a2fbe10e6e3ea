/*
 * sni.c: the SNI table and the ClientHello callback that switches a connection to its site.
 *
 * Built at configuration load: sites are added by name, then moat_tls_sni_finish sorts them into
 * two runs (exact names, wildcard suffixes) searched with bsearch, so a lookup is two binary
 * searches over lowercase keys normalised into a stack buffer: no allocation, no lock, safe from
 * every worker thread at once.
 *
 * The switch happens in a ClientHello callback rather than the servername callback: OpenSSL runs
 * it before it chooses the protocol version, cipher and certificate, so everything is decided by
 * the site's context (the servername callback runs after some of that is already fixed).
 *
 * The one thing that changes after finish is which context an entry hands out: a certificate
 * swap stores a new context into the site's entries with one atomic store each, and handshakes
 * load it atomically. A worker may have loaded the old pointer and not yet taken its own
 * reference (SSL_new, SSL_set_SSL_CTX), so the table keeps the old context's reference until
 * it is freed itself (after the last connection of the snapshot): retired contexts cost their
 * memory until the next reload, which is one per site per renewal, and nothing is ever freed
 * under a handshake.
 */
#include "tls/sni.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX 253 /* RFC 1035 §2.3.4: 255 octets on the wire = 253 characters of text */
#define LABEL_MAX 63

enum item_kind {
    KIND_EXACT = 0,
    KIND_WILD, /* "*.suffix": key is the suffix */
    KIND_STAR, /* "*": key is empty */
};

struct sni_item {
    struct moat_tls_sni_entry e; /* first member: lookups hand out &item->e */
    const char *key;             /* exact: e.name; wildcard: e.name + 2; star: "" */
    size_t key_len;
    enum item_kind kind;
    size_t order; /* insertion order, to find the first site after sorting */
};

/* Invariant after finish: items[0, nexact) are the exact names sorted by key, items[nexact,
 * nexact + nwild) the wildcard suffixes sorted by key, then at most one "*" item; `dflt` and
 * `fallback` are set; nothing changes any more. */
struct moat_tls_sni {
    struct sni_item *items; /* owned; each e.name owned, each e.ctx referenced */
    size_t n, cap;
    size_t nexact, nwild;
    const struct moat_tls_sni_entry *star; /* the "*" entry, or NULL */
    const struct moat_tls_sni_entry *dflt; /* star, else the first site added */
    struct moat_tls_sni_entry fallback;    /* the first site added, matched = 0; its ctx is
                                              the first item's (no reference of its own) */
    int finished;
    SSL_CTX **retired; /* owned: one reference each, contexts swapped out (see the top) */
    size_t nretired, retired_cap;
    /* TLS-ALPN-01 (moat_tls_sni_set_acme): NULL fn when off */
    moat_tls_acme_fn acme_fn;
    void *acme_arg;
    SSL_CTX *acme_ctx; /* one reference */
};

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int entry_idx = -1; /* SSL ex_data: the const struct moat_tls_sni_entry * chosen */
static int owner_idx = -1; /* SSL_CTX ex_data: the table whose callback the context carries */
static int acme_idx = -1;  /* SSL ex_data: non-NULL on a TLS-ALPN-01 validation handshake */

static void idx_init(void)
{
    entry_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    owner_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    acme_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int idx_ready(void)
{
    return pthread_once(&idx_once, idx_init) == 0 && entry_idx >= 0 && owner_idx >= 0 &&
           acme_idx >= 0;
}

/*
 * Check a host name and write it to `out` lowercase, without its one optional trailing dot (the
 * absolute form names the same host). Returns the length, or 0 when the name is malformed: a
 * byte other than letters, digits, '-', '_' and '.', an empty label, a label over 63 bytes, or
 * over 253 bytes in all. `out` must hold HOST_MAX + 1 bytes; it is NUL-terminated.
 */
static size_t host_normalize(const char *p, size_t len, char *out)
{
    if (p == NULL) {
        return 0;
    }
    if (len > 0 && p[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > HOST_MAX) {
        return 0;
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (label == 0) {
                return 0;
            }
            label = 0;
            out[i] = '.';
            continue;
        }
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return 0;
        }
        if (++label > LABEL_MAX) {
            return 0;
        }
        out[i] = (char)c;
    }
    if (label == 0) {
        return 0;
    }
    out[len] = '\0';
    return len;
}

/* Any total order works as long as sort and search agree: length first, then bytes. */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) {
        return alen < blen ? -1 : 1;
    }
    return memcmp(a, b, alen);
}

static int item_cmp(const void *va, const void *vb)
{
    const struct sni_item *a = va, *b = vb;
    if (a->kind != b->kind) {
        return a->kind < b->kind ? -1 : 1;
    }
    return key_cmp(a->key, a->key_len, b->key, b->key_len);
}

struct search_key {
    const char *p;
    size_t len;
};

static int search_cmp(const void *vk, const void *vi)
{
    const struct search_key *k = vk;
    const struct sni_item *it = vi;
    return key_cmp(k->p, k->len, it->key, it->key_len);
}

struct moat_tls_sni *moat_tls_sni_new(void)
{
    return calloc(1, sizeof(struct moat_tls_sni));
}

moat_rc moat_tls_sni_add(struct moat_tls_sni *s, const char *name, SSL_CTX *ctx, void *site,
                         struct moat_err *err)
{
    if (s == NULL || ctx == NULL || name == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "an SNI site needs a table, a name and a TLS context");
    }
    if (s->finished) {
        MOAT_FAIL(err, MOAT_E_USAGE, "SNI table is finished; site \"%s\" comes too late", name);
    }
    char host[HOST_MAX + 1];
    struct in6_addr a6;
    enum item_kind kind = KIND_EXACT;
    size_t host_len = 0;
    if (strcmp(name, "*") == 0) {
        kind = KIND_STAR;
    } else if (name[0] == '*' && name[1] == '.') {
        kind = KIND_WILD;
        host_len = host_normalize(name + 2, strlen(name + 2), host);
    } else if (strchr(name, ':') != NULL && strlen(name) <= HOST_MAX &&
               inet_pton(AF_INET6, name, &a6) == 1) {
        /* An IPv6 site name: no client sends one as SNI (RFC 6066 §3), but the site still needs
         * its entry, e.g. to be the default for clients without SNI. */
        host_len = strlen(name);
        for (size_t i = 0; i <= host_len; i++) {
            host[i] = (char)tolower((unsigned char)name[i]);
        }
    } else {
        host_len = host_normalize(name, strlen(name), host);
    }
    if (kind != KIND_STAR && host_len == 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "site name \"%s\" is not a host name, \"*.\" followed by one, or \"*\" "
                  "(letters, digits, '-' and '_' in dot-separated labels)",
                  name);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct sni_item *items = realloc(s->items, cap * sizeof(*items));
        if (items == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory adding site \"%s\"", name);
        }
        s->items = items;
        s->cap = cap;
    }
    size_t prefix = kind == KIND_WILD ? 2 : 0;
    size_t stored_len = kind == KIND_STAR ? 1 : prefix + host_len;
    char *stored = malloc(stored_len + 1);
    if (stored == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory adding site \"%s\"", name);
    }
    if (kind == KIND_STAR) {
        memcpy(stored, "*", 2);
    } else {
        memcpy(stored, "*.", prefix);
        memcpy(stored + prefix, host, host_len + 1);
    }
    if (SSL_CTX_up_ref(ctx) != 1) {
        free(stored);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "cannot take a reference on the TLS context");
    }
    struct sni_item *it = &s->items[s->n];
    *it = (struct sni_item){
        .e = {.name = stored, .ctx = ctx, .site = site, .matched = 1},
        .key = kind == KIND_STAR ? stored + 1 : stored + prefix,
        .key_len = kind == KIND_STAR ? 0 : host_len,
        .kind = kind,
        .order = s->n,
    };
    s->n++;
    return MOAT_RC_OK;
}

/*
 * Read the server_name before OpenSSL chooses anything, move the connection to the site's
 * context, and remember the entry for the connection. A name that matches nothing is not a
 * handshake failure: the connection gets the default site and the HTTP layer decides (RFC 6066
 * §3 leaves the choice to the server; failing with unrecognized_name would only tell scanners
 * which names exist).
 */
/* Does the ClientHello offer exactly one protocol, acme-tls/1 (RFC 8737 §3: the CA offers only
 * it)? A list with more is an ordinary client, answered as ever. */
static int offers_only_acme(SSL *ssl)
{
    static const unsigned char want[] = "\x0a"
                                        "acme-tls/1";
    const unsigned char *ext = NULL;
    size_t len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                  &len) != 1 ||
        len < 2) {
        return 0;
    }
    size_t list = ((size_t)ext[0] << 8) | ext[1];
    return list == len - 2 && list == sizeof(want) - 1 && memcmp(ext + 2, want, list) == 0;
}

/* Answer a TLS-ALPN-01 validation for `name` with its challenge certificate: 1 when done. */
static int acme_answer(const struct moat_tls_sni *s, SSL *ssl, const unsigned char *name,
                       size_t len, const struct moat_tls_sni_entry *e)
{
    char host[HOST_MAX + 1];
    if (name == NULL || len == 0 || len > HOST_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        host[i] = (char)tolower(name[i]);
    }
    host[len] = '\0';
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (!s->acme_fn(s->acme_arg, host, &cert, &key)) {
        return 0;
    }
    int ok = SSL_set_SSL_CTX(ssl, s->acme_ctx) == s->acme_ctx;
    if (ok) {
        /* What SSL_new copied from the first context: a validation asks for no client
         * certificate and gets no ticket. */
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        SSL_set_options(ssl, SSL_OP_NO_TICKET);
        SSL_set_num_tickets(ssl, 0);
    }
    ok = ok && SSL_use_cert_and_key(ssl, cert, key, NULL, 1) == 1 &&
         SSL_set_ex_data(ssl, entry_idx, (void *)e) && SSL_set_ex_data(ssl, acme_idx, ssl);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const struct moat_tls_sni *s = arg;
    const unsigned char *ext = NULL, *name = NULL;
    size_t ext_len = 0, len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) != 1 ||
        !moat_tls__sni_parse_ext(ext, ext_len, &name, &len)) {
        name = NULL;
        len = 0;
    }
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(s, (const char *)name, len);
    if (e == NULL) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (s->acme_fn != NULL && offers_only_acme(ssl)) {
        if (acme_answer(s, ssl, name, len, e)) {
            return SSL_CLIENT_HELLO_SUCCESS;
        }
        /* No challenge for that name: the ordinary context, whose ALPN refuses acme-tls/1. */
        ERR_clear_error();
    }
    /* acquire: pairs with the release of a swap, so the new context is seen whole. */
    SSL_CTX *ctx = atomic_load_explicit(&e->ctx, memory_order_acquire);
    if (SSL_get_SSL_CTX(ssl) != ctx) {
        if (SSL_set_SSL_CTX(ssl, ctx) != ctx) {
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        /* SSL_set_SSL_CTX swaps certificates and the session ID context but not what SSL_new
         * copied from the first context: options (SSL_OP_NO_TICKET differs between sites with
         * and without tickets), the TLS 1.3 ticket count and client verification. */
        uint64_t opts = SSL_CTX_get_options(ctx);
        SSL_clear_options(ssl, SSL_get_options(ssl) & ~opts);
        SSL_set_options(ssl, opts);
        SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(ctx));
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
        SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    }
    if (!SSL_set_ex_data(ssl, entry_idx, (void *)e)) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

moat_rc moat_tls_sni_finish(struct moat_tls_sni *s, struct moat_err *err)
{
    if (s == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "no SNI table");
    }
    if (s->finished) {
        MOAT_FAIL(err, MOAT_E_USAGE, "SNI table is already finished");
    }
    if (s->n == 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "no TLS site configured");
    }
    if (!idx_ready()) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "cannot register SNI connection data");
    }
    qsort(s->items, s->n, sizeof(s->items[0]), item_cmp);
    s->nexact = s->nwild = 0;
    s->star = NULL;
    const struct sni_item *first = NULL;
    for (size_t i = 0; i < s->n; i++) {
        const struct sni_item *it = &s->items[i];
        if (i > 0 && item_cmp(&s->items[i - 1], it) == 0) {
            MOAT_FAIL(err, MOAT_E_CONFIG, "site name \"%s\" is given twice", it->e.name);
        }
        if (it->order == 0) {
            first = it;
        }
        switch (it->kind) {
        case KIND_EXACT:
            s->nexact++;
            break;
        case KIND_WILD:
            s->nwild++;
            break;
        case KIND_STAR:
            s->star = &it->e;
            break;
        default:
            MOAT_FAIL(err, MOAT_E_INTERNAL, "bad SNI entry kind");
        }
    }
    MOAT_ENSURE_REF(first);
    s->fallback = first->e;
    s->fallback.matched = 0;
    s->dflt = s->star ? s->star : &first->e;
    for (size_t i = 0; i < s->n; i++) {
        SSL_CTX *ctx = s->items[i].e.ctx;
        const void *owner = SSL_CTX_get_ex_data(ctx, owner_idx);
        if (owner != NULL && owner != s) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "the TLS context of site \"%s\" already serves another SNI table (build "
                      "contexts per configuration)",
                      s->items[i].e.name);
        }
        if (owner == NULL && !SSL_CTX_set_ex_data(ctx, owner_idx, s)) {
            MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach the SNI table to a TLS context");
        }
        SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, s);
    }
    s->finished = 1;
    return MOAT_RC_OK;
}

/* Drop the table's reference on a context, taking our callback off first: the context may
 * outlive the table (someone else holds a reference) and the callback's argument would dangle. */
static void ctx_release(const struct moat_tls_sni *s, SSL_CTX *ctx)
{
    if (owner_idx >= 0 && SSL_CTX_get_ex_data(ctx, owner_idx) == s) {
        SSL_CTX_set_client_hello_cb(ctx, NULL, NULL);
        SSL_CTX_set_ex_data(ctx, owner_idx, NULL);
    }
    SSL_CTX_free(ctx);
}

void moat_tls_sni_free(struct moat_tls_sni *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        ctx_release(s, atomic_load_explicit(&s->items[i].e.ctx, memory_order_acquire));
        free((char *)s->items[i].e.name);
    }
    for (size_t i = 0; i < s->nretired; i++) {
        ctx_release(s, s->retired[i]);
    }
    SSL_CTX_free(s->acme_ctx);
    free(s->retired);
    free(s->items);
    free(s);
}

moat_rc moat_tls_sni_swap_ctx(struct moat_tls_sni *s, const void *site, SSL_CTX *ctx,
                              struct moat_err *err)
{
    if (s == NULL || !s->finished || ctx == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "swap needs a finished SNI table and a TLS context");
    }
    if (!idx_ready()) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "cannot register SNI connection data");
    }
    const void *owner = SSL_CTX_get_ex_data(ctx, owner_idx);
    if (owner != NULL && owner != s) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the new TLS context already serves another SNI table (build one per swap)");
    }
    size_t count = 0;
    for (size_t i = 0; i < s->n; i++) {
        count += s->items[i].e.site == site;
    }
    if (count == 0) {
        MOAT_FAIL(err, MOAT_E_NOTFOUND, "no site of the SNI table matches the swap");
    }
    /* Everything that can fail comes before the first store: a failed swap changes nothing. */
    if (s->nretired + count > s->retired_cap) {
        size_t cap = (s->nretired + count) * 2;
        SSL_CTX **r = realloc(s->retired, cap * sizeof(*r));
        if (r == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory swapping a TLS context");
        }
        s->retired = r;
        s->retired_cap = cap;
    }
    if (owner == NULL && !SSL_CTX_set_ex_data(ctx, owner_idx, s)) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach the SNI table to a TLS context");
    }
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, s);
    for (size_t i = 0; i < s->n; i++) {
        struct moat_tls_sni_entry *e = &s->items[i].e;
        if (e->site != site) {
            continue;
        }
        /* One reference per entry, as moat_tls_sni_add takes; cannot fail for a live ctx. */
        SSL_CTX_up_ref(ctx);
        /* release: a handshake that loads the new pointer sees the context fully built. */
        s->retired[s->nretired++] = atomic_exchange_explicit(&e->ctx, ctx, memory_order_acq_rel);
    }
    if (s->fallback.site == site) {
        atomic_store_explicit(&s->fallback.ctx, ctx, memory_order_release);
    }
    return MOAT_RC_OK;
}

SSL_CTX *moat_tls_sni_entry_ctx(const struct moat_tls_sni_entry *e)
{
    return e != NULL ? atomic_load_explicit(&e->ctx, memory_order_acquire) : NULL;
}

const struct moat_tls_sni_entry *moat_tls_sni_lookup(const struct moat_tls_sni *s, const char *name,
                                                     size_t len)
{
    if (s == NULL || !s->finished) {
        return NULL;
    }
    char host[HOST_MAX + 1];
    size_t n = host_normalize(name, len, host);
    if (n > 0) {
        struct search_key k = {host, n};
        const struct sni_item *it =
            bsearch(&k, s->items, s->nexact, sizeof(s->items[0]), search_cmp);
        if (it != NULL) {
            return &it->e;
        }
        /* One label deep only (RFC 6125 §6.4.3): strip the first label, look up the rest. */
        const char *dot = memchr(host, '.', n);
        if (dot != NULL && s->nwild > 0) {
            k.p = dot + 1;
            k.len = n - (size_t)(dot + 1 - host);
            it = bsearch(&k, s->items + s->nexact, s->nwild, sizeof(s->items[0]), search_cmp);
            if (it != NULL) {
                return &it->e;
            }
        }
    }
    return s->star ? s->star : &s->fallback;
}

SSL_CTX *moat_tls_sni_default_ctx(const struct moat_tls_sni *s)
{
    return s && s->finished ? atomic_load_explicit(&s->dflt->ctx, memory_order_acquire) : NULL;
}

void *moat_tls_sni_site_of(SSL *ssl)
{
    if (!idx_ready()) {
        return NULL;
    }
    const struct moat_tls_sni_entry *e = SSL_get_ex_data(ssl, entry_idx);
    return e ? e->site : NULL;
}

int moat_tls_sni_matched(SSL *ssl)
{
    if (!idx_ready()) {
        return 0;
    }
    const struct moat_tls_sni_entry *e = SSL_get_ex_data(ssl, entry_idx);
    return e ? e->matched : 0;
}

static int get_u16(const unsigned char *p, size_t len, size_t at, size_t *v)
{
    if (at + 2 > len) {
        return 0;
    }
    *v = ((size_t)p[at] << 8) | p[at + 1];
    return 1;
}

int moat_tls__sni_parse_ext(const unsigned char *ext, size_t ext_len, const unsigned char **name,
                            size_t *len)
{
    /* struct { ServerName server_name_list<1..2^16-1> }; ServerName = NameType (1 byte,
     * host_name(0)) + HostName<1..2^16-1>. Other name types never happened in practice; like
     * OpenSSL, accept exactly one host_name and nothing after it. */
    size_t list_len, host_len;
    if (ext == NULL || !get_u16(ext, ext_len, 0, &list_len) || list_len != ext_len - 2 ||
        list_len < 3 || ext[2] != 0 || !get_u16(ext, ext_len, 3, &host_len) || host_len == 0 ||
        host_len != ext_len - 5) {
        return 0;
    }
    *name = ext + 5;
    *len = host_len;
    return 1;
}

int moat_tls_sni_covers(SSL *ssl, const char *host, size_t len)
{
    X509 *cert = ssl ? SSL_get_certificate(ssl) : NULL;
    char text[HOST_MAX + 1];
    if (cert == NULL || len == 0) {
        return 0;
    }
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len >= sizeof(text)) {
        return 0;
    }
    memcpy(text, host, len);
    text[len] = '\0';
    if (len > 1 && text[len - 1] == '.') {
        text[--len] = '\0';
    }
    struct in6_addr a;
    int ok = inet_pton(AF_INET, text, &a) == 1 || inet_pton(AF_INET6, text, &a) == 1
                 ? X509_check_ip_asc(cert, text, 0) == 1
                 : X509_check_host(cert, text, len,
                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                                   NULL) == 1;
    ERR_clear_error();
    return ok;
}

moat_rc moat_tls_sni_set_acme(struct moat_tls_sni *s, SSL_CTX *ctx, moat_tls_acme_fn fn, void *arg,
                              struct moat_err *err)
{
    if (s == NULL || s->finished || ctx == NULL || fn == NULL || s->acme_ctx != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "TLS-ALPN-01 hook set after finish, twice or empty");
    }
    if (!SSL_CTX_up_ref(ctx)) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "SSL_CTX_up_ref failed");
    }
    s->acme_ctx = ctx;
    s->acme_fn = fn;
    s->acme_arg = arg;
    return MOAT_RC_OK;
}

int moat_tls_sni_is_acme(SSL *ssl)
{
    return ssl != NULL && idx_ready() && SSL_get_ex_data(ssl, acme_idx) != NULL;
}
