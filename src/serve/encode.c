/*
 * encode.c: see encode.h. Two producers of compressed bodies: a file read piece by piece on the
 * worker's loop (the static handler's), and a filter in front of the session's exchange that
 * rewrites the head of a relayed answer and compresses each piece the proxy sends through it.
 */
#include "serve/encode.h"

#include "core/log.h"
#include "core/timer.h"
#include "http/filter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FILE_PIECE 32768       /* read from a file at a time */
#define FILE_TURN (256 * 1024) /* read per turn of the loop, so one big file shares the worker */
#define OUT_LIMIT (16u << 20)  /* what one piece of compressed output may grow to */

static const int default_level[MOAT_CODING_COUNT] = {0, 5, 4, 3};

/* Compressible unless encode_types says otherwise; "+json" and "+xml" types too. */
static const char *const default_types[] = {
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "text/markdown",
    "text/csv",
    "text/calendar",
    "text/vtt",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/xml",
    "application/wasm",
    "application/x-yaml",
    "application/yaml",
    "application/graphql-response+json",
    "application/vnd.ms-fontobject",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
};

void moat_encode_want_of(const struct moat_conf_site *site, const struct moat_req *req,
                         struct moat_loop *loop, struct moat_encode_want *out)
{
    *out = (struct moat_encode_want){.loop = loop};
    if (site == NULL || site->nencode == 0) {
        return;
    }
    enum moat_coding pref[MOAT_CODING_COUNT];
    for (size_t i = 0; i < site->nencode; i++) {
        pref[i] = (enum moat_coding)site->encode[i];
    }
    out->site = site;
    out->coding = moat_coding_choose(req->fields, req->nfields, pref, site->nencode);
}

int moat_encode_type_ok(const struct moat_conf_site *site, const char *type, size_t len)
{
    size_t n = 0;
    while (n < len && type[n] != ';' && type[n] != ' ' && type[n] != '\t') {
        n++;
    }
    const char *slash = memchr(type, '/', n);
    if (slash == NULL) {
        return 0;
    }
    size_t major = (size_t)(slash - type);
    if (site->nencode_types > 0) {
        for (size_t i = 0; i < site->nencode_types; i++) {
            const char *t = site->encode_types[i];
            size_t tl = strlen(t);
            if (tl == major + 2 && t[tl - 1] == '*' && strncasecmp(t, type, major + 1) == 0) {
                return 1;
            }
            if (tl == n && strncasecmp(t, type, n) == 0) {
                return 1;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(default_types) / sizeof(default_types[0]); i++) {
        if (strlen(default_types[i]) == n && strncasecmp(default_types[i], type, n) == 0) {
            return 1;
        }
    }
    return (n > 5 && strncasecmp(type + n - 5, "+json", 5) == 0) ||
           (n > 4 && strncasecmp(type + n - 4, "+xml", 4) == 0);
}

uint64_t moat_encode_min(const struct moat_conf_site *site)
{
    return site->encode_min < 0 ? 256 : (uint64_t)site->encode_min;
}

int moat_encode_precompressed(const struct moat_conf_site *site)
{
    return site->encode_precompressed != 0;
}

static int level_of(const struct moat_conf_site *site, enum moat_coding c)
{
    return site->encode_level[c] >= 0 ? site->encode_level[c] : default_level[c];
}

size_t moat_encode_etag(const char *etag, size_t elen, enum moat_coding c, char *out, size_t cap)
{
    const char *name = moat_coding_name(c);
    size_t nl = strlen(name);
    if (elen < 2 || etag[elen - 1] != '"' || elen + nl + 1 > cap) {
        return 0;
    }
    memcpy(out, etag, elen - 1);
    out[elen - 1] = '-';
    memcpy(out + elen, name, nl);
    out[elen + nl] = '"';
    return elen + nl + 1;
}

moat_rc moat_encode_bytes(const struct moat_encode_want *want, const void *p, size_t n,
                          struct moat_buf *out)
{
    struct moat_encoder *e;
    struct moat_err err = {0};
    MOAT_TRY(moat_encoder_new(want->coding, level_of(want->site, want->coding), &e, &err));
    moat_rc rc = moat_encoder_put(e, p, n, MOAT_ENCODER_END, out);
    moat_encoder_free(e);
    return rc;
}

/* ---- a file, compressed as it goes ----------------------------------------------------- */

struct file_enc {
    struct moat_exch *ex;
    struct moat_loop *loop;
    struct moat_timer kick; /* the first turn, and each turn after one that used its share */
    int fd;
    void (*release)(void *h);
    void *h;
    uint64_t off, size;
    int head;
    int started;
    unsigned long long conn_id;
    struct moat_encoder *enc;
    struct moat_buf lines; /* the head's fields, owned */
    struct moat_buf out;   /* compressed bytes not yet handed to the session */
    char piece[FILE_PIECE];
};

static void file_free(struct file_enc *fe)
{
    moat_timer_disarm(&fe->loop->timers, &fe->kick);
    moat_res_file_done(fe->fd, fe->release, fe->h);
    moat_encoder_free(fe->enc);
    moat_buf_clear(&fe->lines);
    moat_buf_clear(&fe->out);
    free(fe);
}

/* Hand what came out to the session: 0 when that ended the exchange (fe is gone). */
static int file_flush(struct file_enc *fe)
{
    if (moat_buf_len(&fe->out) == 0) {
        return 1;
    }
    moat_rc rc = moat_exch_send(fe->ex, moat_buf_rdptr(&fe->out), moat_buf_len(&fe->out));
    fe->out.rd = fe->out.wr = 0;
    if (!moat_ok(rc)) {
        file_free(fe);
        return 0;
    }
    return 1;
}

static void file_fail(struct file_enc *fe, const char *why)
{
    moat_log(MOAT_LVL_WARN, fe->conn_id, "encode: %s: the answer is cut", why);
    struct moat_exch *ex = fe->ex;
    file_free(fe);
    moat_exch_fail(ex, 500);
}

static void file_pump(struct file_enc *fe)
{
    if (!fe->started) {
        fe->started = 1;
        if (!moat_ok(moat_exch_start(fe->ex, 200, &fe->lines, -1, 0))) {
            file_free(fe);
            return;
        }
        if (fe->head) {
            struct moat_exch *ex = fe->ex;
            file_free(fe);
            moat_exch_finish(ex);
            return;
        }
    }
    size_t turn = 0;
    while (fe->off < fe->size) {
        if (moat_exch_room(fe->ex) == 0) {
            return; /* ready() comes when there is room */
        }
        if (turn >= FILE_TURN) {
            if (!moat_ok(moat_timer_arm(&fe->loop->timers, &fe->kick, fe->loop->now_ms))) {
                file_fail(fe, "cannot schedule the next piece");
            }
            return;
        }
        size_t want = fe->size - fe->off < FILE_PIECE ? (size_t)(fe->size - fe->off) : FILE_PIECE;
        ssize_t got = pread(fe->fd, fe->piece, want, (off_t)fe->off);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            file_fail(fe, got < 0 ? "reading the file failed" : "the file got shorter");
            return;
        }
        fe->off += (uint64_t)got;
        turn += (size_t)got;
        if (!moat_ok(
                moat_encoder_put(fe->enc, fe->piece, (size_t)got, MOAT_ENCODER_MORE, &fe->out))) {
            file_fail(fe, "the encoder failed");
            return;
        }
        if (!file_flush(fe)) {
            return;
        }
    }
    if (!moat_ok(moat_encoder_put(fe->enc, NULL, 0, MOAT_ENCODER_END, &fe->out))) {
        file_fail(fe, "the encoder failed");
        return;
    }
    if (!file_flush(fe)) {
        return;
    }
    struct moat_exch *ex = fe->ex;
    file_free(fe);
    moat_exch_finish(ex);
}

static void file_kick(struct moat_timer *t)
{
    file_pump(t->data);
}

static void file_ready(void *h)
{
    file_pump(h);
}

static void file_abort(void *h)
{
    file_free(h);
}

static const struct moat_stream_ops file_ops = {.ready = file_ready, .abort = file_abort};

moat_rc moat_encode_file(const struct moat_encode_want *want, const struct moat_req *req,
                         struct moat_res *res, struct moat_buf *lines, int fd, uint64_t size,
                         void (*release)(void *h), void *h)
{
    struct file_enc *fe = calloc(1, sizeof(*fe));
    if (fe == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    fe->ex = req->exch;
    fe->loop = want->loop;
    fe->fd = fd;
    fe->release = release;
    fe->h = h;
    fe->size = size;
    fe->head = req->method_id == MOAT_HTTP_M_HEAD;
    fe->conn_id = req->conn_id;
    moat_buf_init(&fe->lines, 64 * 1024);
    moat_buf_init(&fe->out, OUT_LIMIT);
    moat_timer_init(&fe->kick, file_kick, fe);
    struct moat_err err = {0};
    moat_rc rc = moat_buf_append(&fe->lines, moat_buf_rdptr(lines), moat_buf_len(lines));
    if (moat_ok(rc) && !fe->head) {
        rc = moat_encoder_new(want->coding, level_of(want->site, want->coding), &fe->enc, &err);
    }
    if (moat_ok(rc)) {
        /* The session calls nothing of ours before we start: a turn of the loop does. */
        rc = moat_timer_arm(&want->loop->timers, &fe->kick, want->loop->now_ms);
    }
    if (!moat_ok(rc)) {
        moat_encoder_free(fe->enc);
        moat_buf_clear(&fe->lines);
        free(fe);
        return rc;
    }
    lines->rd = lines->wr = 0;
    res->status = 200;
    res->fd = -1;
    res->stream = &file_ops;
    res->stream_h = fe;
    return MOAT_RC_OK;
}

/* ---- the proxy's answers ----------------------------------------------------------------- */

struct moat_encode_filter {
    struct moat_exch_filter base; /* first: base.ex is what the handler holds */
    struct moat_encode_want want;
    int head;
    struct moat_encoder *enc; /* NULL: the body passes as it is */
    struct moat_buf lines;
    struct moat_buf out;
    unsigned long long conn_id;
};

static struct moat_encode_filter *filt_of(struct moat_exch *ex)
{
    return (struct moat_encode_filter *)ex; /* base.ex is the first member */
}

static void filt_free(struct moat_encode_filter *f)
{
    moat_encoder_free(f->enc);
    moat_buf_clear(&f->lines);
    moat_buf_clear(&f->out);
    free(f);
}

static void filt_destroy(struct moat_exch_filter *base)
{
    filt_free((struct moat_encode_filter *)base);
}

static int ieq(moat_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

static int has_token(moat_slice v, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= v.len; i++) {
        if (strncasecmp(v.p + i, tok, tl) == 0 &&
            (i == 0 || v.p[i - 1] == ',' || v.p[i - 1] == ' ' || v.p[i - 1] == '\t') &&
            (i + tl == v.len || v.p[i + tl] == ',' || v.p[i + tl] == ' ' || v.p[i + tl] == '\t' ||
             v.p[i + tl] == ';' || v.p[i + tl] == '=')) {
            return 1;
        }
    }
    return 0;
}

static moat_slice value_of(moat_slice line, moat_slice name)
{
    moat_slice v = {.p = line.p + name.len + 1, .len = line.len - name.len - 1};
    while (v.len > 0 && (v.p[0] == ' ' || v.p[0] == '\t')) {
        v.p++;
        v.len--;
    }
    while (v.len > 0 && (v.p[v.len - 1] == '\r' || v.p[v.len - 1] == '\n' ||
                         v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t')) {
        v.len--;
    }
    return v;
}

/* What a relayed head says, for the decision. */
struct head_facts {
    moat_slice type;
    int encoded;      /* Content-Encoding other than identity */
    int no_transform; /* Cache-Control: no-transform */
    int ranged;       /* Content-Range */
    int vary_star, vary_ae;
};

static void read_head(const struct moat_buf *lines, struct head_facts *h)
{
    *h = (struct head_facts){0};
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (name.len == 0) {
            continue;
        }
        moat_slice v = value_of(line, name);
        if (ieq(name, "content-type")) {
            h->type = v;
        } else if (ieq(name, "content-encoding")) {
            h->encoded |= !(v.len == 0 || ieq(v, "identity"));
        } else if (ieq(name, "cache-control")) {
            h->no_transform |= has_token(v, "no-transform");
        } else if (ieq(name, "content-range")) {
            h->ranged = 1;
        } else if (ieq(name, "vary")) {
            h->vary_star |= has_token(v, "*");
            h->vary_ae |= has_token(v, "accept-encoding");
        }
    }
}

/* The head as it goes out encoded: the origin's fields with a strong ETag made weak (the
 * bytes change; RFC 9110 §8.8.1), then Content-Encoding and Vary. */
static moat_rc rewrite_head(struct moat_encode_filter *f, const struct moat_buf *lines, int weaken,
                            int encoding, int add_vary)
{
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &at, &line, &name)) {
        if (weaken && ieq(name, "etag")) {
            moat_slice v = value_of(line, name);
            if (v.len > 0 && v.p[0] == '"') {
                MOAT_TRY(moat_buf_printf(&f->lines, "ETag: W/%.*s\r\n", (int)v.len, v.p));
                continue;
            }
        }
        MOAT_TRY(moat_buf_append(&f->lines, line.p, line.len));
    }
    if (encoding) {
        MOAT_TRY(moat_buf_printf(&f->lines, "Content-Encoding: %s\r\n",
                                 moat_coding_name(f->want.coding)));
    }
    if (add_vary) {
        MOAT_TRY(moat_buf_printf(&f->lines, "Vary: Accept-Encoding\r\n"));
    }
    return MOAT_RC_OK;
}

static int status_encodable(int status)
{
    return status == 200 || status == 201 || status == 202 || status == 203 ||
           (status >= 400 && status <= 599 && status != 416);
}

static moat_rc f_start(struct moat_exch *ex, int status, const struct moat_buf *lines,
                       int64_t length, unsigned flags)
{
    struct moat_encode_filter *f = filt_of(ex);
    struct head_facts h;
    read_head(lines, &h);
    int candidate = !(flags & MOAT_RES_TUNNEL) && (status_encodable(status) || status == 304) &&
                    !h.encoded && !h.no_transform && !h.ranged &&
                    (status == 304 || moat_encode_type_ok(f->want.site, h.type.p, h.type.len)) &&
                    (length < 0 || (uint64_t)length >= moat_encode_min(f->want.site));
    int encoding = candidate && status != 304 && f->want.coding != MOAT_CODING_IDENTITY;
    int weaken304 = candidate && status == 304 && f->want.coding != MOAT_CODING_IDENTITY;
    moat_rc rc = MOAT_RC_OK;
    const struct moat_buf *out_lines = lines;
    if (candidate) {
        /* A 304 to a client that takes this coding validates the weak ETag it was given. */
        rc = rewrite_head(f, lines, encoding || weaken304, encoding, !h.vary_star && !h.vary_ae);
        out_lines = &f->lines;
    }
    if (moat_ok(rc) && encoding && !f->head) {
        struct moat_err err = {0};
        rc =
            moat_encoder_new(f->want.coding, level_of(f->want.site, f->want.coding), &f->enc, &err);
    }
    if (!moat_ok(rc)) {
        moat_log(MOAT_LVL_WARN, f->conn_id, "encode: cannot compress an answer (out of memory)");
        struct moat_exch *inner = f->base.inner;
        filt_free(f);
        moat_exch_fail(inner, 500);
        return rc;
    }
    rc = moat_exch_start(f->base.inner, status, out_lines, encoding ? -1 : length, flags);
    if (!moat_ok(rc)) {
        filt_free(f);
    }
    return rc;
}

/* Compressed bytes to the session; a failure ended the exchange (f is gone). */
static moat_rc f_pass(struct moat_encode_filter *f)
{
    moat_rc rc = moat_exch_send(f->base.inner, moat_buf_rdptr(&f->out), moat_buf_len(&f->out));
    f->out.rd = f->out.wr = 0;
    if (!moat_ok(rc)) {
        filt_free(f);
    }
    return rc;
}

static moat_rc f_send(struct moat_exch *ex, const void *p, size_t n)
{
    struct moat_encode_filter *f = filt_of(ex);
    if (f->enc == NULL) {
        moat_rc rc = moat_exch_send(f->base.inner, p, n);
        if (!moat_ok(rc)) {
            filt_free(f);
        }
        return rc;
    }
    /* Each piece is flushed through: what the origin sent is never held back from the
     * client (a stream of events, a slow origin), for a few bytes of ratio. */
    if (!moat_ok(moat_encoder_put(f->enc, p, n, MOAT_ENCODER_FLUSH, &f->out))) {
        moat_log(MOAT_LVL_WARN, f->conn_id, "encode: the encoder failed: the answer is cut");
        struct moat_exch *inner = f->base.inner;
        filt_free(f);
        moat_exch_fail(inner, 502);
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    return f_pass(f);
}

static void f_finish(struct moat_exch *ex, const struct moat_buf *trailers)
{
    struct moat_encode_filter *f = filt_of(ex);
    struct moat_exch *inner = f->base.inner;
    if (f->enc != NULL) {
        if (!moat_ok(moat_encoder_put(f->enc, NULL, 0, MOAT_ENCODER_END, &f->out))) {
            filt_free(f);
            moat_exch_fail(inner, 502);
            return;
        }
        if (!moat_ok(f_pass(f))) {
            return;
        }
    }
    filt_free(f);
    if (trailers != NULL) {
        moat_exch_finish_trailers(inner, trailers);
    } else {
        moat_exch_finish(inner);
    }
}

static const struct moat_exch_ops filter_ops = {
    .read_body = moat_filter_read_body,
    .start = f_start,
    .send = f_send,
    .room = moat_filter_room,
    .trailers = moat_filter_trailers,
    .finish = f_finish,
    .fail = moat_filter_fail,
};

int moat_encode_filter_new(const struct moat_encode_want *want, const struct moat_req *req,
                           struct moat_req *copy, struct moat_encode_filter **out)
{
    *out = NULL;
    if (want->site == NULL || req->exch == NULL || req->upgrade.len > 0) {
        return 0;
    }
    struct moat_encode_filter *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return 0; /* answered unencoded: compression is never worth failing a request */
    }
    f->base.ex.ops = &filter_ops;
    f->base.inner = req->exch;
    f->base.destroy = filt_destroy;
    f->want = *want;
    f->head = req->method_id == MOAT_HTTP_M_HEAD;
    f->conn_id = req->conn_id;
    moat_buf_init(&f->lines, 256 * 1024);
    moat_buf_init(&f->out, OUT_LIMIT);
    *copy = *req;
    copy->exch = &f->base.ex;
    *out = f;
    return 1;
}

void moat_encode_filter_adopt(struct moat_encode_filter *f, struct moat_res *res)
{
    moat_filter_adopt(f != NULL ? &f->base : NULL, res);
}
