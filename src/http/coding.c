/*
 * coding.c: see coding.h. Each encoder is driven the same way: input in, output appended in
 * pieces of at least CHUNK bytes of room, until the codec has taken all the input and (for a
 * flush or the end) given out everything it holds.
 */
#include "http/coding.h"

#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#define CHUNK 16384
#define WINDOW_LOG 18 /* 256 KiB of history: a fraction of the codecs' defaults per answer */

static const char *const names[MOAT_CODING_COUNT] = {"identity", "gzip", "br", "zstd"};
static const char *const suffixes[MOAT_CODING_COUNT] = {"", ".gz", ".br", ".zst"};

const char *moat_coding_name(enum moat_coding c)
{
    return c < MOAT_CODING_COUNT ? names[c] : "identity";
}

const char *moat_coding_suffix(enum moat_coding c)
{
    return c < MOAT_CODING_COUNT ? suffixes[c] : "";
}

enum moat_coding moat_coding_by_name(const char *s)
{
    for (int c = MOAT_CODING_GZIP; c < MOAT_CODING_COUNT; c++) {
        if (strcasecmp(s, names[c]) == 0) {
            return (enum moat_coding)c;
        }
    }
    return MOAT_CODING_IDENTITY;
}

/* ---- Accept-Encoding --------------------------------------------------------------------- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 §12.4.2 qvalue, in thousandths: "0" ["." 0*3DIGIT] / "1" ["." 0*3"0"]. */
static int parse_q(const char *p, size_t n, int *q)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1')) {
        return 0;
    }
    int v = (p[0] - '0') * 1000;
    if (n == 1) {
        *q = v;
        return 1;
    }
    if (p[1] != '.' || n > 5) {
        return 0;
    }
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9' || (v == 1000 && p[i] != '0')) {
            return 0;
        }
        v += (p[i] - '0') * scale;
    }
    *q = v;
    return 1;
}

/* The q of one list element's parameters (after the coding): 1000 when none is given, -1 when
 * the element is malformed (then it is ignored). */
static int element_q(const char *p, size_t n)
{
    int q = 1000;
    size_t i = 0;
    while (i < n) {
        while (i < n && (is_ows(p[i]) || p[i] == ';')) {
            i++;
        }
        size_t start = i;
        while (i < n && p[i] != ';') {
            i++;
        }
        size_t end = i;
        while (end > start && is_ows(p[end - 1])) {
            end--;
        }
        if (end == start) {
            continue;
        }
        const char *eq = memchr(p + start, '=', end - start);
        if (eq == NULL) {
            return -1;
        }
        size_t kl = (size_t)(eq - (p + start));
        while (kl > 0 && is_ows(p[start + kl - 1])) {
            kl--;
        }
        const char *v = eq + 1;
        while (v < p + end && is_ows(*v)) {
            v++;
        }
        if (kl == 1 && (p[start] == 'q' || p[start] == 'Q')) {
            if (!parse_q(v, (size_t)(p + end - v), &q)) {
                return -1;
            }
        }
    }
    return q;
}

/* The q of each coding named in the Accept-Encoding fields (-1: not named) and of "*";
 * returns whether there was such a field. */
static int qvalues(const struct moat_field *fields, size_t nfields, int q[MOAT_CODING_COUNT],
                   int *star_out)
{
    int star = -1, any_field = 0;
    for (int c = 0; c < MOAT_CODING_COUNT; c++) {
        q[c] = -1; /* not named */
    }
    for (size_t f = 0; f < nfields; f++) {
        if (fields[f].name.len != 15 || strncasecmp(fields[f].name.p, "accept-encoding", 15) != 0) {
            continue;
        }
        any_field = 1;
        const char *p = fields[f].value.p;
        size_t n = fields[f].value.len, i = 0;
        while (i < n) {
            while (i < n && (is_ows(p[i]) || p[i] == ',')) {
                i++;
            }
            size_t start = i;
            while (i < n && p[i] != ',') {
                i++;
            }
            size_t tl = 0;
            while (start + tl < i && p[start + tl] != ';' && !is_ows(p[start + tl])) {
                tl++;
            }
            if (tl == 0) {
                continue;
            }
            int eq = element_q(p + start + tl, i - start - tl);
            if (eq < 0) {
                continue;
            }
            const char *t = p + start;
            int c = -1;
            if (tl == 1 && t[0] == '*') {
                star = eq;
                continue;
            }
            if (tl == 6 && strncasecmp(t, "x-gzip", 6) == 0) {
                c = MOAT_CODING_GZIP;
            } else if (tl == 8 && strncasecmp(t, "identity", 8) == 0) {
                c = MOAT_CODING_IDENTITY;
            } else {
                for (int k = MOAT_CODING_GZIP; k < MOAT_CODING_COUNT; k++) {
                    if (strlen(names[k]) == tl && strncasecmp(t, names[k], tl) == 0) {
                        c = k;
                    }
                }
            }
            if (c >= 0 && eq > q[c]) { /* a coding named twice: its best q */
                q[c] = eq;
            }
        }
    }
    *star_out = star;
    return any_field;
}

enum moat_coding moat_coding_choose(const struct moat_field *fields, size_t nfields,
                                    const enum moat_coding *pref, size_t npref)
{
    int q[MOAT_CODING_COUNT], star;
    if (!qvalues(fields, nfields, q, &star)) {
        return MOAT_CODING_IDENTITY;
    }
    enum moat_coding best = MOAT_CODING_IDENTITY;
    int best_q = 0;
    for (size_t i = 0; i < npref; i++) {
        enum moat_coding c = pref[i];
        if (c <= MOAT_CODING_IDENTITY || c >= MOAT_CODING_COUNT) {
            continue;
        }
        int cq = q[c] >= 0 ? q[c] : star >= 0 ? star : 0;
        if (cq > best_q) {
            best = c;
            best_q = cq;
        }
    }
    /* identity is acceptable unless excluded (RFC 9110 §12.5.3); it wins only when the client
     * gives it a higher q than every coding, by name or by "*". */
    int iq = q[MOAT_CODING_IDENTITY] >= 0 ? q[MOAT_CODING_IDENTITY] : star >= 0 ? star : 0;
    if (best != MOAT_CODING_IDENTITY && iq > best_q) {
        return MOAT_CODING_IDENTITY;
    }
    return best;
}

unsigned moat_coding_accepted(const struct moat_field *fields, size_t nfields)
{
    int q[MOAT_CODING_COUNT], star;
    if (!qvalues(fields, nfields, q, &star)) {
        return 0;
    }
    unsigned bits = 0;
    for (int c = MOAT_CODING_GZIP; c < MOAT_CODING_COUNT; c++) {
        if ((q[c] >= 0 ? q[c] : star >= 0 ? star : 0) > 0) {
            bits |= MOAT_CODING_BIT(c);
        }
    }
    int iq = q[MOAT_CODING_IDENTITY] >= 0 ? q[MOAT_CODING_IDENTITY] : star >= 0 ? star : 0;
    if (iq > 0) {
        bits |= MOAT_CODING_BIT(MOAT_CODING_IDENTITY); /* prefers or names identity */
    }
    return bits;
}

/* ---- encoders ---------------------------------------------------------------------------- */

struct moat_encoder {
    enum moat_coding coding;
    int broken;
    union {
        z_stream z;
        BrotliEncoderState *br;
        ZSTD_CCtx *zs;
    } u;
};

moat_rc moat_encoder_new(enum moat_coding c, int level, struct moat_encoder **out,
                         struct moat_err *err)
{
    *out = NULL;
    struct moat_encoder *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for a %s encoder", moat_coding_name(c));
    }
    e->coding = c;
    int ok = 0;
    switch (c) {
    case MOAT_CODING_GZIP:
        /* 15 + 16: a gzip wrapper; memLevel 8 is zlib's default. */
        ok = deflateInit2(&e->u.z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
        break;
    case MOAT_CODING_BR:
        e->u.br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        ok = e->u.br != NULL &&
             BrotliEncoderSetParameter(e->u.br, BROTLI_PARAM_QUALITY, (uint32_t)level) &&
             BrotliEncoderSetParameter(e->u.br, BROTLI_PARAM_LGWIN, WINDOW_LOG);
        break;
    case MOAT_CODING_ZSTD:
        e->u.zs = ZSTD_createCCtx();
        ok = e->u.zs != NULL &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(e->u.zs, ZSTD_c_compressionLevel, level)) &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(e->u.zs, ZSTD_c_windowLog, WINDOW_LOG));
        break;
    default:
        break;
    }
    if (!ok) {
        moat_encoder_free(e);
        MOAT_FAIL(err, MOAT_E_NOMEM, "cannot start a %s encoder at level %d (out of memory?)",
                  moat_coding_name(c), level);
    }
    *out = e;
    return MOAT_RC_OK;
}

void moat_encoder_free(struct moat_encoder *e)
{
    if (e == NULL) {
        return;
    }
    switch (e->coding) {
    case MOAT_CODING_GZIP:
        deflateEnd(&e->u.z);
        break;
    case MOAT_CODING_BR:
        BrotliEncoderDestroyInstance(e->u.br);
        break;
    case MOAT_CODING_ZSTD:
        ZSTD_freeCCtx(e->u.zs);
        break;
    default:
        break;
    }
    free(e);
}

static moat_rc put_gzip(struct moat_encoder *e, const void *in, size_t n, enum moat_encoder_op op,
                        struct moat_buf *out)
{
    z_stream *z = &e->u.z;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    int flush = op == MOAT_ENCODER_END     ? Z_FINISH
                : op == MOAT_ENCODER_FLUSH ? Z_SYNC_FLUSH
                                           : Z_NO_FLUSH;
    for (;;) {
        MOAT_TRY(moat_buf_reserve(out, CHUNK));
        z->next_out = (Bytef *)moat_buf_wrptr(out);
        z->avail_out = (uInt)moat_buf_room(out);
        uInt room = z->avail_out;
        int rc = deflate(z, flush);
        out->wr += room - z->avail_out;
        if (rc == Z_STREAM_END) {
            return MOAT_RC_OK;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        if (z->avail_in == 0 && z->avail_out > 0 && flush != Z_FINISH) {
            return MOAT_RC_OK;
        }
    }
}

static moat_rc put_br(struct moat_encoder *e, const void *in, size_t n, enum moat_encoder_op op,
                      struct moat_buf *out)
{
    const uint8_t *next_in = in;
    size_t avail_in = n;
    BrotliEncoderOperation bop = op == MOAT_ENCODER_END     ? BROTLI_OPERATION_FINISH
                                 : op == MOAT_ENCODER_FLUSH ? BROTLI_OPERATION_FLUSH
                                                            : BROTLI_OPERATION_PROCESS;
    for (;;) {
        MOAT_TRY(moat_buf_reserve(out, CHUNK));
        uint8_t *next_out = (uint8_t *)moat_buf_wrptr(out);
        size_t avail_out = moat_buf_room(out), room = avail_out;
        if (!BrotliEncoderCompressStream(e->u.br, bop, &avail_in, &next_in, &avail_out, &next_out,
                                         NULL)) {
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        out->wr += room - avail_out;
        if (avail_in == 0 && !BrotliEncoderHasMoreOutput(e->u.br) &&
            (bop != BROTLI_OPERATION_FINISH || BrotliEncoderIsFinished(e->u.br))) {
            return MOAT_RC_OK;
        }
    }
}

static moat_rc put_zstd(struct moat_encoder *e, const void *in, size_t n, enum moat_encoder_op op,
                        struct moat_buf *out)
{
    ZSTD_inBuffer ib = {.src = in, .size = n, .pos = 0};
    ZSTD_EndDirective mode = op == MOAT_ENCODER_END     ? ZSTD_e_end
                             : op == MOAT_ENCODER_FLUSH ? ZSTD_e_flush
                                                        : ZSTD_e_continue;
    for (;;) {
        MOAT_TRY(moat_buf_reserve(out, CHUNK));
        ZSTD_outBuffer ob = {.dst = moat_buf_wrptr(out), .size = moat_buf_room(out), .pos = 0};
        size_t left = ZSTD_compressStream2(e->u.zs, &ob, &ib, mode);
        if (ZSTD_isError(left)) {
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        out->wr += ob.pos;
        if (mode == ZSTD_e_continue ? ib.pos == ib.size : left == 0) {
            return MOAT_RC_OK;
        }
    }
}

moat_rc moat_encoder_put(struct moat_encoder *e, const void *in, size_t n, enum moat_encoder_op op,
                         struct moat_buf *out)
{
    if (e->broken) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    moat_rc rc = e->coding == MOAT_CODING_GZIP ? put_gzip(e, in, n, op, out)
                 : e->coding == MOAT_CODING_BR ? put_br(e, in, n, op, out)
                                               : put_zstd(e, in, n, op, out);
    e->broken = !moat_ok(rc);
    return rc;
}
