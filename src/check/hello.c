/*
 * hello.c: see hello.h. The writer fills a fixed buffer through a cursor that remembers
 * overflow, so a spec too big for MOAT_HELLO_MAX yields 0 rather than a truncated hello; the
 * reader checks every length against what contains it before reading.
 */
#include "check/hello.h"

#include "check/suites.h"

#include <arpa/inet.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

/* ---- writing ---- */

struct wr {
    uint8_t *p;
    size_t n, cap;
    int over;
};

static void put(struct wr *w, const void *src, size_t len)
{
    if (w->over || w->cap - w->n < len) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
}

static void put16(struct wr *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

/* Reserve a length field of `bytes` bytes; fill it with fix_len once its content is written. */
static size_t open_len(struct wr *w, int bytes)
{
    size_t at = w->n;
    for (int i = 0; i < bytes; i++) {
        put8(w, 0);
    }
    return at;
}

static void fix_len(struct wr *w, size_t at, int bytes)
{
    if (w->over) {
        return;
    }
    size_t len = w->n - at - (size_t)bytes;
    for (int i = bytes - 1; i >= 0; i--) {
        w->p[at + (size_t)i] = (uint8_t)len;
        len >>= 8;
    }
}

static void put_random(struct wr *w, size_t len)
{
    uint8_t b[32];
    if (len > sizeof(b) || RAND_bytes(b, (int)len) != 1) {
        memset(b, 0x5a, sizeof(b)); /* a hello's randomness protects nothing in a probe */
    }
    put(w, b, len);
}

static int is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void ext_list16(struct wr *w, unsigned type, const uint16_t *v, size_t n, int inner)
{
    put16(w, type);
    size_t el = open_len(w, 2);
    size_t il = inner == 2 ? open_len(w, 2) : open_len(w, 1);
    for (size_t i = 0; i < n; i++) {
        put16(w, v[i]);
    }
    fix_len(w, il, inner);
    fix_len(w, el, 2);
}

static void extensions(struct wr *w, const struct moat_hello_spec *s)
{
    size_t all = open_len(w, 2);
    if (s->sni != NULL && *s->sni != '\0' && !is_ip_literal(s->sni)) {
        size_t sl = strlen(s->sni);
        put16(w, 0); /* server_name (RFC 6066 §3) */
        size_t el = open_len(w, 2);
        size_t ll = open_len(w, 2);
        put8(w, 0); /* host_name */
        put16(w, (unsigned)sl);
        put(w, s->sni, sl);
        fix_len(w, ll, 2);
        fix_len(w, el, 2);
    }
    if (s->groups != NULL && s->ngroups > 0) {
        ext_list16(w, 10, s->groups, s->ngroups, 2);
        put16(w, 11); /* ec_point_formats: uncompressed only */
        put16(w, 2);
        put8(w, 1);
        put8(w, 0);
    }
    if (s->sigalgs != NULL && s->nsigalgs > 0 && s->version >= MOAT_CHECK_TLS12) {
        ext_list16(w, 13, s->sigalgs, s->nsigalgs, 2);
    }
    if (s->status_request) {
        put16(w, 5); /* status_request: ocsp, no responder ids, no extensions */
        put16(w, 5);
        put8(w, 1);
        put16(w, 0);
        put16(w, 0);
    }
    if (s->alpn != NULL && *s->alpn != '\0') {
        put16(w, 16);
        size_t el = open_len(w, 2);
        size_t ll = open_len(w, 2);
        const char *p = s->alpn;
        while (*p != '\0') {
            const char *e = strchr(p, ',');
            size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
            if (len > 0 && len < 256) {
                put8(w, (unsigned)len);
                put(w, p, len);
            }
            p += len + (e != NULL);
        }
        fix_len(w, ll, 2);
        fix_len(w, el, 2);
    }
    if (s->heartbeat) {
        put16(w, 15); /* heartbeat: peer_allowed_to_send */
        put16(w, 1);
        put8(w, 1);
    }
    put16(w, 18); /* signed_certificate_timestamp */
    put16(w, 0);
    put16(w, 23); /* extended_master_secret */
    put16(w, 0);
    put16(w, 35); /* session_ticket */
    put16(w, 0);
    if (s->version == MOAT_CHECK_TLS13) {
        put16(w, 43); /* supported_versions: 1.3 alone */
        put16(w, 3);
        put8(w, 2);
        put16(w, MOAT_CHECK_TLS13);
        put16(w, 45); /* psk_key_exchange_modes: psk_dhe_ke */
        put16(w, 2);
        put8(w, 1);
        put8(w, 1);
        put16(w, 51); /* key_share */
        size_t el = open_len(w, 2);
        size_t ll = open_len(w, 2);
        if (s->x25519_share) {
            put16(w, 0x001D);
            put16(w, 32);
            put_random(w, 32);
        }
        fix_len(w, ll, 2);
        fix_len(w, el, 2);
    }
    put16(w, 0xff01); /* renegotiation_info, empty: this is not a renegotiation */
    put16(w, 1);
    put8(w, 0);
    fix_len(w, all, 2);
}

size_t moat_hello_build(const struct moat_hello_spec *s, uint8_t *out, size_t outlen)
{
    struct wr w = {out, 0, outlen < MOAT_HELLO_MAX ? outlen : MOAT_HELLO_MAX, 0};
    int tls13 = s->version == MOAT_CHECK_TLS13;
    put8(&w, 22);
    /* The record's version: 1.0 for everything from 1.0 up, as browsers send it; SSLv3's own. */
    put16(&w, s->version == MOAT_CHECK_SSL3 ? MOAT_CHECK_SSL3 : MOAT_CHECK_TLS10);
    size_t rec = open_len(&w, 2);
    put8(&w, 1); /* client_hello */
    size_t hs = open_len(&w, 3);
    put16(&w, tls13 ? MOAT_CHECK_TLS12 : s->version);
    put_random(&w, 32);
    put8(&w, 32); /* a session id, as TLS 1.3's middlebox compatibility mode sends */
    put_random(&w, 32);
    size_t sl = open_len(&w, 2);
    for (size_t i = 0; i < s->nsuites; i++) {
        put16(&w, s->suites[i]);
    }
    if (s->fallback_scsv) {
        put16(&w, 0x5600);
    }
    fix_len(&w, sl, 2);
    if (s->deflate) {
        put8(&w, 2);
        put8(&w, 1); /* DEFLATE (RFC 3749) */
        put8(&w, 0);
    } else {
        put8(&w, 1);
        put8(&w, 0);
    }
    if (!s->no_extensions) {
        extensions(&w, s);
    }
    fix_len(&w, hs, 3);
    fix_len(&w, rec, 2);
    return w.over || s->nsuites == 0 ? 0 : w.n;
}

size_t moat_hello_build_sslv2(uint8_t *out, size_t outlen)
{
    /* SSLv2's cipher kinds: RC4_128_WITH_MD5, RC4_128_EXPORT40, RC2_128_CBC, RC2_CBC_EXPORT40,
     * IDEA_128_CBC, DES_64_CBC, DES_192_EDE3_CBC. */
    static const uint8_t kinds[] = {0x01, 0x00, 0x80, 0x02, 0x00, 0x80, 0x03,
                                    0x00, 0x80, 0x04, 0x00, 0x80, 0x05, 0x00,
                                    0x80, 0x06, 0x00, 0x40, 0x07, 0x00, 0xc0};
    struct wr w = {out, 0, outlen, 0};
    size_t body = 1 + 2 + 6 + sizeof(kinds) + 16;
    put8(&w, 0x80 | (unsigned)(body >> 8));
    put8(&w, (unsigned)body & 0xff);
    put8(&w, 1);       /* CLIENT-HELLO */
    put16(&w, 0x0002); /* SSL 2.0 */
    put16(&w, sizeof(kinds));
    put16(&w, 0);  /* no session id */
    put16(&w, 16); /* challenge */
    put(&w, kinds, sizeof(kinds));
    put_random(&w, 16);
    return w.over ? 0 : w.n;
}

size_t moat_hello_build_heartbleed(uint16_t version, uint8_t *out, size_t outlen)
{
    struct wr w = {out, 0, outlen, 0};
    put8(&w, 24); /* heartbeat */
    put16(&w, version);
    put16(&w, 3);
    put8(&w, 1);       /* heartbeat_request */
    put16(&w, 0x4000); /* payload_length, with no payload */
    return w.over ? 0 : w.n;
}

/* ---- reading ---- */

struct rd {
    const uint8_t *p;
    size_t n, at;
};

static int get8(struct rd *r, unsigned *v)
{
    if (r->n - r->at < 1) {
        return 0;
    }
    *v = r->p[r->at++];
    return 1;
}

static int get16(struct rd *r, unsigned *v)
{
    if (r->n - r->at < 2) {
        return 0;
    }
    *v = ((unsigned)r->p[r->at] << 8) | r->p[r->at + 1];
    r->at += 2;
    return 1;
}

static int get24(struct rd *r, size_t *v)
{
    if (r->n - r->at < 3) {
        return 0;
    }
    *v = ((size_t)r->p[r->at] << 16) | ((size_t)r->p[r->at + 1] << 8) | r->p[r->at + 2];
    r->at += 3;
    return 1;
}

/* A sub-reader over the next len bytes (and skip them in r). */
static int sub(struct rd *r, size_t len, struct rd *out)
{
    if (r->n - r->at < len) {
        return 0;
    }
    *out = (struct rd){r->p + r->at, len, 0};
    r->at += len;
    return 1;
}

static enum moat_hello_kind bad(struct moat_hello_reply *r, const char *why)
{
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->kind = MOAT_HELLO_BAD;
    return MOAT_HELLO_BAD;
}

/* SHA-256("HelloRetryRequest"), RFC 8446 §4.1.3: the random of a HelloRetryRequest. */
static const uint8_t HRR_RANDOM[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};

static int offered_suite(uint16_t s, const uint16_t *suites, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (suites[i] == s) {
            return 1;
        }
    }
    return 0;
}

static enum moat_hello_kind server_hello(struct rd *m, uint16_t offered, const uint16_t *suites,
                                         size_t nsuites, struct moat_hello_reply *r, int *hrr)
{
    unsigned v, slen, suite, comp;
    struct rd sid, exts;
    if (!get16(m, &v) || m->n - m->at < 32) {
        return bad(r, "a ServerHello shorter than its fixed fields");
    }
    *hrr = memcmp(m->p + m->at, HRR_RANDOM, 32) == 0;
    m->at += 32;
    if (!get8(m, &slen) || slen > 32 || !sub(m, slen, &sid) || !get16(m, &suite) ||
        !get8(m, &comp)) {
        return bad(r, "a ServerHello shorter than its fixed fields");
    }
    r->version = (uint16_t)v;
    r->suite = (uint16_t)suite;
    r->compression = (uint8_t)comp;
    if (m->at < m->n) {
        unsigned elen;
        if (!get16(m, &elen) || !sub(m, elen, &exts) || m->at != m->n) {
            return bad(r, "a ServerHello whose extensions' length is wrong");
        }
        while (exts.at < exts.n) {
            unsigned type, len;
            struct rd e;
            if (!get16(&exts, &type) || !get16(&exts, &len) || !sub(&exts, len, &e)) {
                return bad(r, "an extension that runs past the ServerHello");
            }
            unsigned x;
            switch (type) {
            case 43: /* supported_versions: the version chosen */
                if (!get16(&e, &x)) {
                    return bad(r, "an empty supported_versions in the ServerHello");
                }
                r->version = (uint16_t)x;
                break;
            case 51: /* key_share: the group (HRR: alone; SH: with the key) */
                if (!get16(&e, &x)) {
                    return bad(r, "an empty key_share in the ServerHello");
                }
                r->group = (uint16_t)x;
                break;
            case 0xff01:
                r->ext_reneg = 1;
                break;
            case 23:
                r->ext_ems = 1;
                break;
            case 35:
                r->ext_ticket = 1;
                break;
            case 15:
                r->ext_heartbeat = 1;
                break;
            case 5:
                r->ext_status = 1;
                break;
            case 16: { /* ALPN: a list of exactly one protocol */
                unsigned ll, pl;
                if (!get16(&e, &ll) || !get8(&e, &pl) || pl == 0 || e.n - e.at < pl) {
                    return bad(r, "an ALPN extension that does not parse");
                }
                size_t c = pl < sizeof(r->alpn) - 1 ? pl : sizeof(r->alpn) - 1;
                for (size_t i = 0; i < c; i++) {
                    unsigned char ch = e.p[e.at + i];
                    r->alpn[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
                }
                r->alpn[c] = '\0';
                break;
            }
            default:
                break;
            }
        }
    }
    uint16_t ver = r->version;
    int v_ok = offered == MOAT_CHECK_TLS13 ? ver == MOAT_CHECK_TLS13
                                           : ver >= MOAT_CHECK_SSL3 && ver <= offered;
    if (!v_ok) {
        char a[8], b[8];
        snprintf(r->why, sizeof(r->why), "the server chose %s, which was not offered (%s was)",
                 moat_check_version_name(ver, a, sizeof(a)),
                 moat_check_version_name(offered, b, sizeof(b)));
        r->kind = MOAT_HELLO_BAD;
        return MOAT_HELLO_BAD;
    }
    if (!offered_suite(r->suite, suites, nsuites)) {
        snprintf(r->why, sizeof(r->why), "the server chose suite 0x%04X, which was not offered",
                 r->suite);
        r->kind = MOAT_HELLO_BAD;
        return MOAT_HELLO_BAD;
    }
    return MOAT_HELLO_SERVER;
}

static enum moat_hello_kind certificate(struct rd *m, struct moat_hello_reply *r)
{
    size_t total;
    struct rd list;
    if (!get24(m, &total) || !sub(m, total, &list) || m->at != m->n) {
        return bad(r, "a Certificate message whose length is wrong");
    }
    while (list.at < list.n) {
        size_t len;
        if (!get24(&list, &len) || list.n - list.at < len) {
            return bad(r, "a certificate that runs past its message");
        }
        r->certs++;
        list.at += len;
    }
    return MOAT_HELLO_MORE;
}

static enum moat_hello_kind key_exchange(struct rd *m, struct moat_hello_reply *r)
{
    const struct moat_check_suite *s = moat_check_suite_find(r->suite);
    if (s == NULL) {
        return MOAT_HELLO_MORE; /* a suite we cannot read the parameters of */
    }
    unsigned x;
    struct rd skip;
    if (s->kex == MOAT_KEX_ECDHE || s->kex == MOAT_KEX_ECDH_ANON) {
        unsigned curve_type, group, plen;
        if (!get8(m, &curve_type) || curve_type != 3 || !get16(m, &group) || !get8(m, &plen) ||
            !sub(m, plen, &skip)) {
            return bad(r, "a ServerKeyExchange without a named curve");
        }
        r->group = (uint16_t)group;
    } else if (s->kex == MOAT_KEX_DHE || s->kex == MOAT_KEX_DH_ANON) {
        unsigned plen;
        struct rd prime;
        if (!get16(m, &plen) || !sub(m, plen, &prime) || !get16(m, &x) || !sub(m, x, &skip) ||
            !get16(m, &x) || !sub(m, x, &skip)) {
            return bad(r, "a ServerKeyExchange whose DH parameters do not parse");
        }
        size_t lead = 0;
        while (lead < prime.n && prime.p[lead] == 0) {
            lead++;
        }
        int bits = (int)(prime.n - lead) * 8;
        if (lead < prime.n) {
            for (unsigned top = prime.p[lead]; (top & 0x80) == 0; top <<= 1) {
                bits--;
            }
        }
        r->dh_bits = bits;
    } else {
        return MOAT_HELLO_MORE;
    }
    if (r->version >= MOAT_CHECK_TLS12 && s->kex != MOAT_KEX_DH_ANON &&
        s->kex != MOAT_KEX_ECDH_ANON && get16(m, &x)) {
        r->ske_sigalg = (uint16_t)x;
    }
    return MOAT_HELLO_MORE;
}

enum moat_hello_kind moat_hello_read(const uint8_t *p, size_t n, uint16_t offered,
                                     const uint16_t *suites, size_t nsuites,
                                     struct moat_hello_reply *r)
{
    memset(r, 0, sizeof(*r));
    if (n == 0) {
        return MOAT_HELLO_MORE;
    }
    if ((p[0] & 0x80) != 0) {
        /* SSLv2 record: 2-byte header with the top bit set, then SERVER-HELLO (4). */
        if (n < 3) {
            return MOAT_HELLO_MORE;
        }
        if (p[2] == 4) {
            r->kind = MOAT_HELLO_SSLV2;
            r->version = 0x0002;
            r->used = n;
            return MOAT_HELLO_SSLV2;
        }
    }
    if (p[0] != 22 && p[0] != 21) {
        r->kind = MOAT_HELLO_NOT_TLS;
        return MOAT_HELLO_NOT_TLS;
    }
    /* Handshake messages may span records: gather the handshake bytes first. Their total is
     * bounded by what the server sent, which the caller bounds. */
    static const size_t MAX_FLIGHT = 64 * 1024;
    uint8_t hsbuf[64 * 1024];
    size_t hsn = 0;
    size_t at = 0;
    int saw_server_hello = 0, hrr = 0;
    size_t hpos = 0; /* the messages before it are read */
    while (1) {
        /* Read the whole messages gathered since the last record. */
        struct rd h = {hsbuf, hsn, hpos};
        while (h.n - h.at >= 4) {
            size_t start = h.at;
            unsigned type = 0;
            size_t len = 0;
            (void)get8(&h, &type);
            (void)get24(&h, &len);
            if (len > MAX_FLIGHT) {
                return bad(r, "a handshake message longer than 64 KiB");
            }
            if (h.n - h.at < len) {
                h.at = start;
                break;
            }
            hpos = h.at + len;
            struct rd m;
            (void)sub(&h, len, &m);
            if (!saw_server_hello) {
                if (type != 2) {
                    return bad(r, "the server's first message is not a ServerHello");
                }
                enum moat_hello_kind k = server_hello(&m, offered, suites, nsuites, r, &hrr);
                if (k != MOAT_HELLO_SERVER) {
                    return k;
                }
                saw_server_hello = 1;
                if (hrr || r->version == MOAT_CHECK_TLS13) {
                    r->kind = hrr ? MOAT_HELLO_HRR : MOAT_HELLO_SERVER;
                    r->used = at;
                    return r->kind;
                }
                continue;
            }
            enum moat_hello_kind k = MOAT_HELLO_MORE;
            switch (type) {
            case 11:
                k = certificate(&m, r);
                break;
            case 12:
                k = key_exchange(&m, r);
                break;
            case 13:
                r->cert_request = 1;
                break;
            case 22:
                r->ocsp_stapled = 1;
                break;
            case 14: /* ServerHelloDone: the flight is whole */
                r->kind = MOAT_HELLO_SERVER;
                r->used = at;
                return MOAT_HELLO_SERVER;
            default:
                break;
            }
            if (k == MOAT_HELLO_BAD) {
                return k;
            }
        }
        /* Consume the next record. */
        if (n - at < 5) {
            return MOAT_HELLO_MORE;
        }
        unsigned ct = p[at];
        unsigned rv = ((unsigned)p[at + 1] << 8) | p[at + 2];
        size_t rl = ((size_t)p[at + 3] << 8) | p[at + 4];
        if (at == 0) {
            r->record_version = (uint16_t)rv;
        }
        if ((rv >> 8) != 3) {
            return bad(r, "a record whose version is not 3.x");
        }
        if (rl > 16384 + 2048) {
            return bad(r, "a record longer than TLS allows");
        }
        if (n - at - 5 < rl) {
            return MOAT_HELLO_MORE;
        }
        const uint8_t *payload = p + at + 5;
        at += 5 + rl;
        if (ct == 21) {
            if (rl < 2) {
                return bad(r, "an alert record shorter than an alert");
            }
            r->alert_level = payload[0];
            r->alert_desc = payload[1];
            r->kind = MOAT_HELLO_ALERT;
            r->used = at;
            return MOAT_HELLO_ALERT;
        }
        if (ct != 22) {
            if (ct == 20 || ct == 23) {
                /* ChangeCipherSpec or data before ServerHelloDone: nothing more to read here. */
                if (saw_server_hello) {
                    r->kind = MOAT_HELLO_SERVER;
                    r->used = at;
                    return MOAT_HELLO_SERVER;
                }
            }
            return bad(r, "a record of an unexpected type before the ServerHello's flight ended");
        }
        if (rl > sizeof(hsbuf) - hsn) {
            return bad(r, "a first flight longer than 64 KiB");
        }
        memcpy(hsbuf + hsn, payload, rl);
        hsn += rl;
    }
}

size_t moat_hello_heartbeat_answer(const uint8_t *p, size_t n)
{
    size_t at = 0;
    while (n - at >= 5) {
        size_t rl = ((size_t)p[at + 3] << 8) | p[at + 4];
        if (p[at] == 24) {
            return rl;
        }
        if (n - at - 5 < rl) {
            break;
        }
        at += 5 + rl;
    }
    return 0;
}
