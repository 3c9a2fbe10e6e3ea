/*
 * server.c: the HTTP/2 server session (see server.h).
 *
 * nghttp2 does the protocol; this file moves bytes between it and the transport, turns its
 * callbacks into requests for the connection's dispatch, feeds answers back as frames, and
 * keeps the budgets and timers that make a hostile client cheap to refuse.
 *
 * Re-entrance: nghttp2 calls us back only from inside nghttp2_session_mem_recv and
 * nghttp2_session_send, which only run() and push() call. Inside those callbacks nothing ends
 * the session or frees what nghttp2 still holds: they set flags, and run() acts on them after
 * nghttp2 returned. A streaming handler's ready() is called only from run(), after nghttp2
 * returned; its moat_exch_* calls change stream state, and when they come from the handler's own
 * events they push the frames out themselves (push), never waking another handler.
 */
#include "http2/server.h"

#include "core/fmt.h"
#include "core/gcra.h"
#include "core/httpdate.h"
#include "core/log.h"
#include "core/sock.h"
#include "http/priority.h"
#include "http/status.h"

#include <nghttp2/nghttp2.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define OUT_HIGH (64 * 1024)         /* stop taking frames from nghttp2 beyond this much unsent */
#define OUT_LIMIT (1024 * 1024)      /* never more than this: a header block plus OUT_HIGH */
#define GEN_LIMIT (4 * 1024 * 1024)  /* a generated body (a listing of 10,000 entries fits) */
#define HEAD_LIMIT (4 * 1024 * 1024) /* an answer's decorated head, as the scratch's was */
#define NO_COPY (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)
#define STREAM_PIECE 65536         /* a streaming handler may queue this much before it waits */
#define CLOSE_LINGER_MS 1000       /* a GOAWAY with an error gets this long to leave */
#define SPARE_MAX 64               /* stream records a worker keeps for reuse */
#define CONTINUATIONS_MAX 16       /* a header block of 32 KiB needs 2 or 3 */
#define TLS_RECORD 16384           /* the most plaintext one TLS record carries */
#define MEMO_HEAD_MAX 2048         /* a longer answer head is not remembered (head_fields) */
#define OUT_SPARE_MAX (128 * 1024) /* the largest output buffer a worker keeps (out_release) */
#define WAIT_BODY 1
#define WAIT_ROOM 2

/* One stream: a request and its answer. */
struct moat_h2_stream {
    struct moat_exch ex; /* what a streaming handler holds (req->exch) */
    struct moat_h2s *s;
    struct moat_h2_stream *prev, *next;
    int32_t id;
    struct moat_route_ref ref;
    uint64_t started_ms, rx_ms;

    /* The request. */
    int head_only;
    enum moat_http_method method;
    int expect_continue, continue_sent;
    int body_done;        /* END_STREAM came (or there was no body) */
    int discard;          /* its body is of no use: consume and drop what comes */
    int connect_protocol; /* an extended CONNECT (RFC 8441): may become a tunnel */
    int tunnel;           /* it did: DATA both ways, no body limit or timeout */
    int too_big;          /* 414 or 431: the head broke a limit */
    uint64_t hsize;       /* the header list's size as RFC 9113 §6.5.2 counts it */
    uint32_t nfields;
    /* RFC 9113 §8's rules, checked here as the fields come (nghttp2 runs without its HTTP
     * messaging: see moat_h2s_init). */
    const char *malformed; /* the rule a field broke: RST_STREAM PROTOCOL_ERROR at the end */
    int malformed_reset;   /* that RST_STREAM was submitted */
    int regular_seen;      /* a regular field came: no pseudo-field may follow (§8.3) */
    int host_seen;
    unsigned cookies; /* cookie fields, to be joined into one (§8.2.3) */
    int expect_seen;
    int64_t req_clen; /* the request's content-length; -1: none */
    int prio_set;     /* a valid priority field came (RFC 9218 §5) */
    struct moat_priority prio;
    uint64_t body_bytes;
    struct moat_buf rbody;       /* body bytes a streaming handler has yet to read */
    struct moat_buf trailers_in; /* its trailer fields, "name: value\r\n" */

    /* The answer. */
    int answered;    /* HEADERS submitted */
    int answer_sent; /* its END_STREAM went */
    int no_body;     /* a streaming answer without content (HEAD, 204, 304, length 0) */
    int status;
    /* What its HEADERS points at, nghttp2 copying none of it (NO_COPY_NAME and _VALUE: it must
     * stay unchanged until the frame is sent or the stream closes, and one answer is made per
     * stream): the decorated lines, names lower-cased in place; the status, date and length. */
    struct moat_buf head;
    char code[4], date[MOAT_HTTPDATE_SIZE], clen[MOAT_FMT_DEC_MAX];
    uint64_t bytes_sent;
    int fd;            /* owned (or its owner's: fd_release); -1 when no file */
    const char *bytes; /* or a small cached file's bytes (fd_release's), sent from file_off */
    void (*fd_release)(void *h);
    void *fd_h;
    uint64_t file_off, file_left;
    struct moat_buf data; /* a generated body, or a streaming handler's pieces */
    int eof;              /* nothing comes after what `data` or the file hold */
    int deferred;         /* nghttp2 waits for resume_data */
    struct moat_buf trailers_out;

    /* A streaming handler's exchange. */
    const struct moat_stream_ops *sops; /* NULL when none */
    void *sh;
    int st_started;
    int st_waiting;
    int wake;

    struct moat_buf meta; /* NUL-separated: method, target, host, referer, user agent */
};

struct fidx {
    uint32_t noff, nlen, voff, vlen;
};

enum { PS_METHOD, PS_SCHEME, PS_AUTHORITY, PS_PATH, PS_PROTOCOL, PS_COUNT };

static void run(struct moat_h2s *s);
static int fill_gaps(struct moat_h2s *s);
static moat_rc push(struct moat_h2s *s, struct moat_h2_stream *caller);
static void arm_timer(struct moat_h2s *s);
static void on_timer(struct moat_timer *t);
static const struct moat_exch_ops exch_ops;
static void wake_for_body(struct moat_h2s *s, struct moat_h2_stream *st);

static struct moat_h2_stream *of_exch(struct moat_exch *ex)
{
    return (struct moat_h2_stream *)((char *)ex - offsetof(struct moat_h2_stream, ex));
}

static nghttp2_session *ng_of(const struct moat_h2s *s)
{
    return s->ng;
}

static uint64_t now_ms(const struct moat_h2s *s)
{
    return s->env.loop->now_ms;
}

/* ---- the budgets ------------------------------------------------------------------------ */

/* Spend one unit of a budget of `rate` per second with bursts of `rate`: 1 when it is gone. */
static int spend(struct moat_h2s *s, struct moat_h2_bucket *b, uint32_t rate)
{
    if (rate == 0) {
        return 0;
    }
    uint64_t now = now_ms(s), drained = (now - b->at_ms) * rate;
    b->at_ms = now;
    b->level_ms = b->level_ms > drained ? b->level_ms - drained : 0;
    b->level_ms += 1000;
    return b->level_ms > (uint64_t)rate * 1000;
}

/* End the connection for cause: GOAWAY `code`, flush it, close. */
static void terminate(struct moat_h2s *s, uint32_t code)
{
    if (s->closing) {
        return;
    }
    s->closing = 1;
    s->closing_since_ms = now_ms(s);
    nghttp2_session_terminate_session(ng_of(s), code);
}

/* ---- streams ---------------------------------------------------------------------------- */

static struct moat_h2_stream *stream_new(struct moat_h2s *s, int32_t id)
{
    struct moat_h2s_scratch *sc = s->env.scratch;
    struct moat_h2_stream *st = sc->spare;
    if (st != NULL) {
        sc->spare = st->next;
        sc->nspare--;
        struct moat_buf keep = st->data, keep_head = st->head;
        memset(st, 0, sizeof(*st));
        st->data = keep; /* their storage, emptied */
        st->data.rd = st->data.wr = 0;
        st->head = keep_head;
        st->head.rd = st->head.wr = 0;
    } else {
        st = calloc(1, sizeof(*st));
        if (st == NULL) {
            return NULL;
        }
        moat_buf_init(&st->data, GEN_LIMIT);
        moat_buf_init(&st->head, HEAD_LIMIT);
    }
    st->ex.ops = &exch_ops;
    st->s = s;
    st->id = id;
    st->fd = -1;
    st->req_clen = -1;
    st->prio = (struct moat_priority){MOAT_PRIORITY_URGENCY_DEFAULT, 0};
    st->started_ms = st->rx_ms = now_ms(s);
    moat_buf_init(&st->rbody, s->conf->stream_window + 16384);
    moat_buf_init(&st->trailers_in, s->conf->max_head_bytes);
    moat_buf_init(&st->trailers_out, s->conf->max_head_bytes);
    moat_buf_init(&st->meta, 8192);
    st->next = s->streams;
    if (s->streams != NULL) {
        s->streams->prev = st;
    }
    s->streams = st;
    s->nstreams++;
    return st;
}

/* A streaming handler lets go (its own call) or is let go (abort). */
static void detach(struct moat_h2_stream *st, int abort_it)
{
    const struct moat_stream_ops *ops = st->sops;
    void *h = st->sh;
    st->sops = NULL;
    st->sh = NULL;
    st->st_waiting = 0;
    if (abort_it && ops != NULL) {
        ops->abort(h);
    }
}

static void meta_parts(const struct moat_h2_stream *st, const char *out[5])
{
    const char *p = st->meta.base ? moat_buf_rdptr(&st->meta) : NULL;
    const char *end_ = p ? p + moat_buf_len(&st->meta) : NULL;
    for (int i = 0; i < 5; i++) {
        if (p != NULL && p < end_) {
            out[i] = p;
            p += strlen(p) + 1;
        } else {
            out[i] = "";
        }
    }
}

static void stream_free(struct moat_h2s *s, struct moat_h2_stream *st, int log_it)
{
    detach(st, 1);
    if (log_it && st->answered && s->env.host != NULL) {
        struct moat_answer_log a = {.status = st->status,
                                    .bytes = st->bytes_sent,
                                    .started_ms = st->started_ms,
                                    .proto = "HTTP/2",
                                    .method = st->method};
        meta_parts(st, a.parts);
        s->env.host->done(s->env.host_data, &st->ref, &a);
    }
    if (st->fd >= 0) {
        /* Its last frames may still wait for their bytes (the stream closes as its END_STREAM
         * is queued, before `out` is written). */
        if (s->ngaps > 0 && !s->ended && fill_gaps(s) != 0) {
            s->broken = 1;
        }
        moat_res_file_done(st->fd, st->fd_release, st->fd_h);
        st->fd = -1;
    }
    if (st->bytes != NULL) {
        moat_res_file_done(-1, st->fd_release, st->fd_h);
        st->bytes = NULL;
    }
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        s->streams = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    s->nstreams--;
    if (s->hstream == st) {
        s->hstream = NULL;
    }
    moat_buf_clear(&st->rbody);
    moat_buf_clear(&st->trailers_in);
    moat_buf_clear(&st->trailers_out);
    moat_buf_clear(&st->meta);
    if (st->data.cap > 16384) {
        moat_buf_clear(&st->data); /* a big body does not stay pinned */
    }
    if (st->head.cap > 4096) {
        moat_buf_clear(&st->head);
    }
    struct moat_h2s_scratch *sc = s->env.scratch;
    if (sc->nspare < SPARE_MAX) {
        st->next = sc->spare;
        sc->spare = st;
        sc->nspare++;
    } else {
        moat_buf_clear(&st->data);
        moat_buf_clear(&st->head);
        free(st);
    }
}

/* ---- output ----------------------------------------------------------------------------- */

/* Read the file bytes of the DATA frames queued since the last fill into their places in `out`,
 * one preadv for each run of frames that continue each other in one file. A file that shrank or
 * failed cannot be told apart from its frames any more: -1, and the connection is cut (as
 * HTTP/1 cuts it when a promised length cannot be kept). */
static int fill_gaps(struct moat_h2s *s)
{
    size_t i = 0;
    while (i < s->ngaps) {
        struct iovec iov[MOAT_H2_GAPS];
        size_t k = 0, total = 0;
        const struct moat_h2_gap *g = &s->gaps[i];
        do {
            iov[k].iov_base = moat_buf_rdptr(&s->out) + s->gaps[i + k].pos;
            iov[k].iov_len = s->gaps[i + k].len;
            total += s->gaps[i + k].len;
            k++;
        } while (i + k < s->ngaps && s->gaps[i + k].fd == g->fd &&
                 s->gaps[i + k].off == g->off + total);
        size_t got = 0;
        while (got < total) {
            /* Past a short read, the iovecs still to fill start inside one of them. */
            struct iovec rest[MOAT_H2_GAPS];
            size_t nrest = 0, skip = got;
            for (size_t j = 0; j < k; j++) {
                if (skip >= iov[j].iov_len) {
                    skip -= iov[j].iov_len;
                    continue;
                }
                rest[nrest].iov_base = (char *)iov[j].iov_base + skip;
                rest[nrest].iov_len = iov[j].iov_len - skip;
                nrest++;
                skip = 0;
            }
            ssize_t n = preadv(g->fd, rest, (int)nrest, (off_t)(g->off + got));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                moat_log(MOAT_LVL_WARN, s->env.conn_id,
                         "http2: a file shrank or failed while it was sent; closing (peer %s)",
                         s->env.peer);
                s->ngaps = 0;
                s->broken = 1;
                return -1;
            }
            got += (size_t)n;
        }
        i += k;
    }
    s->ngaps = 0;
    return 0;
}

/* Write what `out` holds: 0 when it is empty (or only a tail waits, see below), 1 when the
 * client is not taking more, -1 when the connection failed. With `more` (nghttp2 has more
 * frames), a tail shorter than a TLS record waits for them, so records go out full: 4 writes
 * per 64 KiB instead of 5. */
static int write_out(struct moat_h2s *s, int more)
{
    if (s->ngaps > 0 && fill_gaps(s) != 0) {
        return -1;
    }
    while (moat_buf_len(&s->out) > 0) {
        if (more && moat_buf_len(&s->out) < TLS_RECORD && !s->write_retry) {
            return 0;
        }
        size_t n;
        moat_rc rc =
            moat_transport_write(s->tr, moat_buf_rdptr(&s->out), moat_buf_len(&s->out), &n);
        if (rc.kind == MOAT_E_AGAIN) {
            if (s->blocked_since_ms == 0) {
                s->blocked_since_ms = now_ms(s);
            }
            s->write_retry = 1; /* OpenSSL wants the same bytes again, whatever their size */
            return 1;
        }
        if (!moat_ok(rc)) {
            return -1;
        }
        s->write_retry = 0;
        moat_buf_consume(&s->out, n);
        s->last_write_ms = now_ms(s);
    }
    s->blocked_since_ms = 0;
    return 0;
}

/* The output buffer's storage: the worker's spare grown one if it has one, else a pool block.
 * A busy connection's answers of a round fill more than a pool block; growing the block every
 * round was a realloc (a copy) and a free each time. */
static int out_ready(struct moat_h2s *s)
{
    struct moat_buf *sp = &s->env.scratch->out_spare;
    if (s->out.base == NULL && sp->base != NULL) {
        s->out.base = sp->base;
        s->out.cap = sp->cap;
        s->out.rd = s->out.wr = 0;
        sp->base = NULL;
        sp->cap = 0;
        return 1;
    }
    return moat_ok(moat_pool_buf_acquire(s->env.pool, &s->out));
}

/* The output went empty and the connection idle: its grown buffer becomes the worker's spare
 * (unless it has one, or this one grew for a bulk transfer), a pool block goes back. */
static void out_release(struct moat_h2s *s)
{
    struct moat_buf *sp = &s->env.scratch->out_spare;
    if (s->out.base != NULL && moat_buf_len(&s->out) == 0 && s->out.cap > MOAT_POOL_BLOCK &&
        s->out.cap <= OUT_SPARE_MAX && sp->base == NULL) {
        sp->base = s->out.base;
        sp->cap = s->out.cap;
        s->out.base = NULL;
        s->out.cap = s->out.rd = s->out.wr = 0;
        return;
    }
    moat_pool_buf_release(s->env.pool, &s->out);
}

static ssize_t cb_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *u)
{
    struct moat_h2s *s = u;
    if (moat_buf_len(&s->out) >= OUT_HIGH) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (!out_ready(s) || !moat_ok(moat_buf_append(&s->out, data, len))) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)len;
}

/* The answer's END_STREAM went. A request body still coming is taken and dropped rather than
 * cut with RST_STREAM NO_ERROR (RFC 9113 §8.1 allows that, but Debian's curl 7.88 then loses
 * the answer); timeouts.body and limits.body bound what a client can make us drop. */
static void answer_complete(struct moat_h2s *s, struct moat_h2_stream *st)
{
    st->answer_sent = 1;
    st->rx_ms = now_ms(s);
}

/* DATA without a copy through nghttp2: the frame header, then the bytes straight from the file
 * (pread into the output buffer) or from the stream's body buffer, then any padding. */
static int cb_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *u)
{
    struct moat_h2s *s = u;
    struct moat_h2_stream *st = source->ptr;
    size_t padlen = frame->data.padlen;
    size_t need = 9 + length + padlen;
    if (moat_buf_len(&s->out) >= OUT_HIGH) {
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (!out_ready(s) || !moat_ok(moat_buf_reserve(&s->out, need))) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    char *p = moat_buf_wrptr(&s->out);
    size_t at = 9;
    if (padlen > 0) {
        p[at++] = (char)(padlen - 1);
    }
    if (st->fd >= 0 && length > 0) {
        /* The frame's bytes are left as a gap, filled by one preadv for several frames just
         * before `out` is written (fill_gaps): a pread per 16 KiB frame would be four system
         * calls where HTTP/1 makes one. */
        if (s->ngaps == MOAT_H2_GAPS && fill_gaps(s) != 0) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        s->gaps[s->ngaps++] = (struct moat_h2_gap){
            .fd = st->fd, .off = st->file_off, .pos = moat_buf_len(&s->out) + at, .len = length};
        st->file_off += length;
        st->file_left -= length;
    } else if (st->bytes != NULL) {
        memcpy(p + at, st->bytes + st->file_off, length); /* the one copy of a cached file */
        st->file_off += length;
        st->file_left -= length;
    } else if (st->fd < 0) {
        if (length > 0) { /* an empty last frame has no buffer to copy from */
            memcpy(p + at, moat_buf_rdptr(&st->data), length);
            moat_buf_consume(&st->data, length);
        }
        if ((st->st_waiting & WAIT_ROOM) && moat_buf_len(&st->data) < STREAM_PIECE) {
            st->wake = 1;
            s->wake = 1;
        }
    }
    memcpy(p, framehd, 9);
    if (padlen > 1) {
        memset(p + at + length, 0, padlen - 1);
    }
    s->out.wr += need;
    st->bytes_sent += length;
    s->last_data_ms = now_ms(s);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        answer_complete(s, st); /* here, where the stream is at hand: see cb_frame_send */
    }
    return 0;
}

/* What an answer's field name is to HTTP/2. One of HTTP/1.1's connection and framing fields,
 * which HTTP/2 leaves out (RFC 9113 §8.2.2; content-length is made from the answer's length):
 * NAME_DROP. A name most answers carry: that name in lower case and static, so nghttp2 may keep
 * a pointer to it instead of copying and lower-casing it per answer
 * (NGHTTP2_NV_FLAG_NO_COPY_NAME). Any other: NULL. One switch on the length instead of a scan
 * of every name: this runs for every field of every answer. */
static const char NAME_DROP[] = "";

static const char *name_kind(moat_slice name)
{
#define IS(lit) (name.len == sizeof(lit) - 1 && moat_mem_eq_nocase(name.p, lit, sizeof(lit) - 1))
#define KEEP(lit)                                                                                  \
    if (IS(lit)) {                                                                                 \
        return lit;                                                                                \
    }
#define DROP(lit)                                                                                  \
    if (IS(lit)) {                                                                                 \
        return NAME_DROP;                                                                          \
    }
    switch (name.len) {
    case 4:
        KEEP("etag");
        KEEP("vary");
        break;
    case 7:
        DROP("upgrade");
        KEEP("expires");
        KEEP("alt-svc");
        break;
    case 8:
        KEEP("location");
        break;
    case 10:
        DROP("connection");
        DROP("keep-alive");
        KEEP("set-cookie");
        break;
    case 12:
        KEEP("content-type");
        break;
    case 13:
        KEEP("last-modified");
        KEEP("accept-ranges");
        KEEP("cache-control");
        KEEP("content-range");
        break;
    case 14:
        DROP("content-length");
        break;
    case 16:
        DROP("proxy-connection");
        KEEP("content-encoding");
        break;
    case 17:
        DROP("transfer-encoding");
        break;
    case 22:
        KEEP("x-content-type-options");
        break;
    case 25:
        KEEP("strict-transport-security");
        break;
    default:
        break;
    }
    return NULL;
#undef DROP
#undef KEEP
#undef IS
}

/* A header line ("Name: value\r\n", in a buffer of ours) as HTTP/2 carries it: the name lower
 * cased (RFC 9113 §8.2.1), the value without its surrounding whitespace. `known`: name_kind's
 * static name, or NULL. */
static nghttp2_nv nv_of_line(moat_slice line, moat_slice name, const char *known)
{
    moat_slice v = moat_slice_of(name.p + name.len + 1, line.len - name.len - 1);
    while (v.len > 0 && (v.p[v.len - 1] == '\n' || v.p[v.len - 1] == '\r')) {
        v.len--;
    }
    v = moat_slice_trim_ows(v);
    if (known != NULL) {
        return (nghttp2_nv){(uint8_t *)known, (uint8_t *)v.p, name.len, v.len,
                            NGHTTP2_NV_FLAG_NO_COPY_NAME};
    }
    char *nm = (char *)name.p;
    for (size_t i = 0; i < name.len; i++) {
        nm[i] = (char)moat_ascii_lower((unsigned char)nm[i]);
    }
    return (nghttp2_nv){(uint8_t *)nm, (uint8_t *)v.p, name.len, v.len, NGHTTP2_NV_FLAG_NONE};
}

static ssize_t cb_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *u)
{
    struct moat_h2_stream *st = source->ptr;
    uint64_t avail;
    int more;
    if (st->fd >= 0 || st->bytes != NULL) {
        avail = st->file_left;
        more = 0;
    } else {
        avail = moat_buf_len(&st->data);
        more = !st->eof;
    }
    if (avail == 0 && more) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? (size_t)avail : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && !more) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (moat_buf_len(&st->trailers_out) > 0) {
            /* The trailers end the stream instead (RFC 9113 §8.1). */
            struct moat_h2s *s = u;
            nghttp2_nv nv[64];
            size_t nnv = 0, at = 0;
            moat_slice line, name;
            while (nnv < 64 && moat_field_lines_next(&st->trailers_out, &at, &line, &name)) {
                if (name.len == 0) {
                    continue;
                }
                const char *known = name_kind(name);
                nv[nnv++] = nv_of_line(line, name, known == NAME_DROP ? NULL : known);
            }
            if (nnv > 0 && nghttp2_submit_trailer(ng_of(s), id, nv, nnv) == 0) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            }
        }
    }
    return (ssize_t)n;
}

/* The decorated head `h` as HTTP/2 fields, from nv[*n] on (at most up to maxnv - 1): names
 * lower-cased in place, without the fields HTTP/2 forbids (RFC 9113 §8.2.2). What comes out is
 * a function of the head's bytes and `flags` alone, and most answers of a worker are the same
 * few files': the worker keeps its last conversion (sc->memo, as offsets into the head) and a
 * head equal to that one byte for byte takes it instead of being parsed line by line again. */
static void head_fields(struct moat_h2s_scratch *sc, struct moat_buf *h, unsigned flags,
                        nghttp2_nv *nv, size_t *n, size_t maxnv)
{
    char *base = (char *)moat_buf_rdptr(h);
    size_t hl = moat_buf_len(h);
    if (sc->memo_ok && sc->memo_flags == flags && moat_buf_len(&sc->memo_head) == hl &&
        *n + sc->memo_n < maxnv && memcmp(moat_buf_rdptr(&sc->memo_head), base, hl) == 0) {
        for (size_t i = 0; i < sc->memo_n; i++) {
            const struct moat_h2_memo_field *f = &sc->memo[i];
            char *nm = base + f->noff;
            if (f->known == NULL) {
                for (size_t j = 0; j < f->nlen; j++) {
                    nm[j] = (char)moat_ascii_lower((unsigned char)nm[j]);
                }
            }
            nv[(*n)++] = (nghttp2_nv){(uint8_t *)(f->known != NULL ? f->known : nm),
                                      (uint8_t *)base + f->voff, f->nlen, f->vlen, NO_COPY};
        }
        return;
    }
    /* The key is the head before the conversion lower-cases its names. */
    sc->memo_ok = 0;
    sc->memo_head.rd = sc->memo_head.wr = 0;
    int keep = hl <= MEMO_HEAD_MAX && moat_ok(moat_buf_append(&sc->memo_head, base, hl));
    size_t first = *n, at = 0;
    moat_slice line, name;
    while (*n + 1 < maxnv && moat_field_lines_next(h, &at, &line, &name)) {
        if (name.len == 0) {
            continue;
        }
        const char *known = name_kind(name);
        if (known == NAME_DROP ||
            ((flags & MOAT_RES_TUNNEL) && moat_slice_eq_lit_nocase(name, "sec-websocket-accept"))) {
            continue; /* HTTP/2 frames the body itself; content-length is ours below; a
                         tunnel's 200 has none of HTTP/1.1's handshake (RFC 8441 §5) */
        }
        nghttp2_nv f = nv_of_line(line, name, known);
        f.flags = NO_COPY;
        size_t k = *n - first;
        if (k < MOAT_H2_MEMO_FIELDS) {
            sc->memo[k] = (struct moat_h2_memo_field){
                known, (uint32_t)(name.p - base), (uint32_t)f.namelen,
                (uint32_t)((char *)f.value - base), (uint32_t)f.valuelen};
        } else {
            keep = 0;
        }
        nv[(*n)++] = f;
    }
    if (keep) {
        sc->memo_ok = 1;
        sc->memo_flags = flags;
        sc->memo_n = *n - first;
    }
}

/* The answer's HEADERS: :status, date, server, the connection's decoration of `lines` in lower
 * case without the fields HTTP/2 forbids (RFC 9113 §8.2.2), content-length. */
static int submit_answer(struct moat_h2s *s, struct moat_h2_stream *st, int status,
                         const struct moat_buf *lines, int64_t length, unsigned flags,
                         int with_body)
{
    if (st->answered) {
        return -1; /* one answer per stream: nghttp2 may still point into st->head */
    }
    struct moat_h2s_scratch *sc = s->env.scratch;
    struct moat_buf *h = &st->head;
    h->rd = h->wr = 0;
    void *hd = s->env.host_data;
    int st_code = status < 100 || status > 999 ? 500 : status;
    st->code[0] = (char)('0' + st_code / 100);
    st->code[1] = (char)('0' + st_code / 10 % 10);
    st->code[2] = (char)('0' + st_code % 10);
    memcpy(st->date, moat_httpdate_now(time(NULL)), MOAT_HTTPDATE_LEN);
    int server = s->env.host->server_field(hd, &st->ref);
    if (!moat_ok(s->env.host->decorate(hd, &st->ref, h, lines, flags))) {
        return -1;
    }
    /* A bound, not a count: every line takes at least four bytes ("a:\r\n"). */
    size_t maxnv = 4 + (h->wr - h->rd) / 4;
    struct moat_buf *nvb = &sc->nv;
    nvb->rd = nvb->wr = 0;
    if (!moat_ok(moat_buf_reserve(nvb, maxnv * sizeof(nghttp2_nv)))) {
        return -1;
    }
    nghttp2_nv *nv = (nghttp2_nv *)(void *)nvb->base;
    size_t n = 0;
#define NV(nm, v, vl)                                                                              \
    (nv[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(v), sizeof(nm) - 1, (vl), NO_COPY})
    NV(":status", st->code, 3);
    NV("date", st->date, MOAT_HTTPDATE_LEN);
    if (server) {
        NV("server", "moat", 4);
    }
    head_fields(sc, h, flags, nv, &n, maxnv);
    if (length >= 0 && status >= 200 && status != 204 && status != 304) {
        size_t cl = moat_fmt_dec(st->clen, (uint64_t)length);
        NV("content-length", st->clen, cl);
    }
#undef NV
    st->status = st_code;
    st->answered = 1;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cb_data_read};
    int rv = nghttp2_submit_response(ng_of(s), st->id, nv, n, with_body ? &prd : NULL);
    return rv == 0 ? 0 : -1;
}

static void reset_stream(struct moat_h2s *s, struct moat_h2_stream *st, uint32_t code)
{
    nghttp2_submit_rst_stream(ng_of(s), NGHTTP2_FLAG_NONE, st->id, code);
}

/* An answer the session makes itself (400, 408, 413, 414, 431, 500): the small error page. */
static void respond_error(struct moat_h2s *s, struct moat_h2_stream *st, int status)
{
    struct moat_h2s_scratch *sc = s->env.scratch;
    struct moat_buf *lines = sc->lines, *body = sc->body;
    lines->rd = lines->wr = body->rd = body->wr = 0;
    if (st->fd >= 0) {
        moat_res_file_done(st->fd, st->fd_release, st->fd_h);
        st->fd = -1;
    }
    if (st->bytes != NULL) {
        moat_res_file_done(-1, st->fd_release, st->fd_h);
        st->bytes = NULL;
    }
    st->data.rd = st->data.wr = 0;
    st->discard = 1;
    struct moat_res res;
    if (!moat_ok(moat_res_error_page(&res, status, lines, body)) ||
        (!st->head_only &&
         !moat_ok(moat_buf_append(&st->data, moat_buf_rdptr(body), moat_buf_len(body))))) {
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->eof = 1;
    if (submit_answer(s, st, status, lines, (int64_t)res.length, 0, !st->head_only) != 0) {
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
    }
}

/* ---- requests --------------------------------------------------------------------------- */

static moat_slice hslice(const struct moat_h2s *s, uint32_t off, uint32_t len)
{
    return moat_slice_of(s->hbuf.base + off, len);
}

/* Where the block's pseudo-fields are in hbuf (offset + 1; 0: absent). */
struct pseudo {
    uint32_t off[PS_COUNT], len[PS_COUNT];
};

static struct pseudo *pseudo_of(struct moat_h2s *s)
{
    return (struct pseudo *)(void *)s->hidx.base;
}

static void meta_capture(struct moat_h2s *s, struct moat_h2_stream *st, const struct moat_req *r)
{
    struct moat_buf *m = &st->meta;
    moat_slice ref = moat_req_field(r, "referer"), ua = moat_req_field(r, "user-agent");
    moat_slice parts[5] = {r->method, r->target, r->authority, ref, ua};
    for (size_t i = 0; i < 5; i++) {
        size_t len = parts[i].len > 1500 ? 1500 : parts[i].len;
        if (!moat_ok(moat_buf_append(m, parts[i].p ? parts[i].p : "", len)) ||
            !moat_ok(moat_buf_append(m, "", 1))) {
            m->rd = m->wr = 0;
            return;
        }
    }
}

/* The request's head is complete: route it and let a handler answer. */
static void stream_dispatch(struct moat_h2s *s, struct moat_h2_stream *st, int end_stream)
{
    const struct moat_h2s_conf *conf = s->conf;
    struct moat_h2s_scratch *sc = s->env.scratch;
    s->requests++;
    s->env.stats->requests++;
    st->body_done = end_stream;
    if (s->requests >= conf->max_requests && !s->draining) {
        /* keepalive_requests: this stream is the last one the connection takes. */
        s->draining = 1;
        nghttp2_submit_goaway(ng_of(s), NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR, NULL, 0);
    }
    if (s->hidx.base == NULL) {
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    struct pseudo *ps = pseudo_of(s);
    moat_slice pv[PS_COUNT];
    for (int i = 0; i < PS_COUNT; i++) {
        pv[i] = ps->off[i] ? hslice(s, ps->off[i] - 1, ps->len[i]) : MOAT_SLICE_NULL;
    }
    st->head_only = moat_slice_eq(pv[PS_METHOD], MOAT_SLICE_LIT("HEAD"));
    if (st->too_big) {
        s->env.stats->bad_requests++;
        moat_log(MOAT_LVL_DEBUG, s->env.conn_id,
                 "http2: stream %d: the request head is over limits.%s (peer %s)", (int)st->id,
                 st->too_big == 414 ? "request_line" : "header_bytes or header_fields",
                 s->env.peer);
        respond_error(s, st, st->too_big);
        return;
    }
    /* The fields, with the cookie crumbs joined into one field as HTTP/1 would carry them
     * (RFC 9113 §8.2.3): handlers and origins see one Cookie. The joined value is appended to
     * hbuf first (by offset: appending may move hbuf), then every slice is taken once. */
    const struct fidx *fx =
        (const struct fidx *)(const void *)(s->hidx.base + sizeof(struct pseudo));
    size_t nf = (moat_buf_len(&s->hidx) - sizeof(struct pseudo)) / sizeof(struct fidx);
    size_t cookies = st->cookies, joined_at = 0, joined_len = 0;
    if (cookies > 1) {
        joined_at = s->hbuf.wr;
        for (size_t i = 0; i < nf; i++) {
            if (!(fx[i].nlen == 6 && memcmp(s->hbuf.base + fx[i].noff, "cookie", 6) == 0)) {
                continue;
            }
            if ((joined_len > 0 && !moat_ok(moat_buf_append(&s->hbuf, "; ", 2))) ||
                !moat_ok(moat_buf_reserve(&s->hbuf, fx[i].vlen))) {
                respond_error(s, st, 431);
                return;
            }
            joined_len += joined_len > 0 ? 2 : 0;
            memcpy(moat_buf_wrptr(&s->hbuf), s->hbuf.base + fx[i].voff, fx[i].vlen);
            s->hbuf.wr += fx[i].vlen;
            joined_len += fx[i].vlen;
        }
    }
    for (int i = 0; i < PS_COUNT; i++) {
        pv[i] = ps->off[i] ? hslice(s, ps->off[i] - 1, ps->len[i]) : MOAT_SLICE_NULL;
    }
    size_t n = 0;
    int cookie_seen = 0;
    moat_slice host = MOAT_SLICE_NULL;
    for (size_t i = 0; i < nf && n < sc->nfields_cap; i++) {
        moat_slice nm = hslice(s, fx[i].noff, fx[i].nlen), v = hslice(s, fx[i].voff, fx[i].vlen);
        if (cookies > 1 && moat_slice_eq(nm, MOAT_SLICE_LIT("cookie"))) {
            if (cookie_seen++ > 0) {
                continue;
            }
            v = moat_slice_of(s->hbuf.base + joined_at, joined_len);
        }
        if (st->host_seen && moat_slice_eq(nm, MOAT_SLICE_LIT("host"))) {
            host = v;
        }
        sc->fields[n++] = (struct moat_field){nm, v};
    }
    moat_slice authority = pv[PS_AUTHORITY].p != NULL ? pv[PS_AUTHORITY] : host;
    if (pv[PS_AUTHORITY].p != NULL && host.p != NULL &&
        !(host.len == pv[PS_AUTHORITY].len &&
          strncasecmp(host.p, pv[PS_AUTHORITY].p, host.len) == 0)) {
        /* RFC 9113 §8.3.1: a Host naming another entity than :authority is malformed. */
        s->env.stats->bad_requests++;
        moat_log(MOAT_LVL_DEBUG, s->env.conn_id,
                 "http2: stream %d: host and :authority differ; reset (peer %s)", (int)st->id,
                 s->env.peer);
        reset_stream(s, st, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    int64_t clen = st->req_clen; /* cb_header checked its digits */
    int has_body = !end_stream && clen != 0;
    st->connect_protocol = pv[PS_PROTOCOL].p != NULL; /* request_rule: it goes with CONNECT */
    if (has_body && conf->max_body_bytes > 0 && clen > 0 && (uint64_t)clen > conf->max_body_bytes) {
        respond_error(s, st, 413);
        return;
    }
    moat_slice target = pv[PS_PATH], path = pv[PS_PATH], query = MOAT_SLICE_NULL;
    if (path.p == NULL) { /* CONNECT: authority-form (RFC 9113 §8.5) */
        target = authority;
        path = moat_slice_of("", 0);
    } else {
        const char *q = memchr(path.p, '?', path.len);
        if (q != NULL) {
            query = moat_slice_of(q + 1, path.len - (size_t)(q - path.p) - 1);
            path = moat_slice_of(path.p, (size_t)(q - path.p));
        }
    }
    if (query.p == NULL) {
        query = moat_slice_of("", 0);
    }
    struct moat_buf *lines = sc->lines, *body = sc->body;
    lines->rd = lines->wr = body->rd = body->wr = 0;
    const struct moat_field *ef = st->expect_seen ? moat_field_find(sc->fields, n, "expect") : NULL;
    moat_slice expect = ef != NULL ? ef->value : MOAT_SLICE_NULL;
    st->expect_continue = has_body && moat_slice_eq_lit_nocase(expect, "100-continue");
    struct moat_req req = {.method_id = moat_http_method_of(pv[PS_METHOD]),
                           .method = pv[PS_METHOD],
                           .target = target,
                           .path = path,
                           .query = query,
                           .authority = authority.p != NULL ? authority : moat_slice_of("", 0),
                           .fields = sc->fields,
                           .nfields = n,
                           .upgrade = st->connect_protocol ? pv[PS_PROTOCOL] : MOAT_SLICE_NULL,
                           .has_body = has_body,
                           .body_length = has_body ? clen : 0,
                           .now = time(NULL),
                           .conn_id = s->env.conn_id,
                           .peer = s->env.peer,
                           .ends = s->env.ends,
                           .secure = 1,
                           .tls = s->env.tls,
                           .exch = &st->ex};
    moat_req_normalize(&req, sc->npath);
    st->method = req.method_id;
    if (s->env.keep_meta) {
        meta_capture(s, st, &req);
    }
    struct moat_res res = {.status = 500, .fd = -1};
    moat_rc rc = s->env.host->dispatch(s->env.host_data, &st->ref, &req, &res, lines, body);
    /* The head's slices die here. */
    s->hbuf.rd = s->hbuf.wr = 0;
    s->hidx.rd = s->hidx.wr = 0;
    if (moat_ok(rc) && res.stream != NULL) {
        st->sops = res.stream;
        st->sh = res.stream_h;
        st->discard = 0;
        st->rx_ms = now_ms(s);
        return;
    }
    if (!moat_ok(rc)) {
        if (res.fd >= 0 || res.bytes != NULL) {
            moat_res_file_done(res.fd, res.fd_release, res.fd_h);
        }
        respond_error(s, st, 500);
        return;
    }
    st->discard = 1; /* the answer does not wait for a body: what comes is dropped */
    int status = res.status;
    uint64_t length = res.length;
    if (status == 308 || status == 204) {
        length = 0;
    }
    int bodyless = st->head_only || moat_http_status_bodyless(status);
    if (res.fd >= 0) {
        if (bodyless || length == 0) {
            moat_res_file_done(res.fd, res.fd_release, res.fd_h);
        } else {
            st->fd = res.fd;
            st->fd_release = res.fd_release;
            st->fd_h = res.fd_h;
            st->file_off = res.offset;
            st->file_left = length;
        }
    } else if (res.bytes != NULL) {
        if (bodyless || length == 0) {
            moat_res_file_done(-1, res.fd_release, res.fd_h);
        } else {
            st->bytes = res.bytes;
            st->fd_release = res.fd_release;
            st->fd_h = res.fd_h;
            st->file_off = 0;
            st->file_left = length;
        }
    } else if (!bodyless && res.has_generated_body && length > 0) {
        if (!moat_ok(moat_buf_append(&st->data, moat_buf_rdptr(body), moat_buf_len(body)))) {
            respond_error(s, st, 500);
            return;
        }
    }
    if (body->cap > 16384) {
        moat_buf_clear(body); /* a big listing does not stay pinned in the worker */
    }
    st->eof = 1;
    int with_body = !bodyless && length > 0;
    if (submit_answer(s, st, status, lines, (int64_t)length, res.flags, with_body) != 0) {
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
    }
}

/* ---- nghttp2's callbacks ---------------------------------------------------------------- */

static int cb_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *u)
{
    struct moat_h2s *s = u;
    if (s->closing) {
        return 0;
    }
    const char *what = NULL;
    switch (hd->type) {
    case NGHTTP2_DATA:
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) &&
            spend(s, &s->frames, s->conf->frames_per_s)) {
            what = "a flood of empty DATA frames";
        }
        break;
    case NGHTTP2_HEADERS:
        s->continuations = 0;
        s->hblock_started_ms = now_ms(s);
        break;
    case NGHTTP2_CONTINUATION:
        if (++s->continuations > CONTINUATIONS_MAX) {
            what = "a flood of CONTINUATION frames";
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (spend(s, &s->resets, s->conf->resets_per_s)) {
            what = "rapid reset (streams opened and cancelled faster than limits.h2_resets)";
        }
        break;
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_GOAWAY:
    case NGHTTP2_PUSH_PROMISE: /* nghttp2 answers it with PROTOCOL_ERROR */
        break;
    default: /* SETTINGS, PING, PRIORITY, PRIORITY_UPDATE and frames of unknown types */
        if (spend(s, &s->frames, s->conf->frames_per_s)) {
            what = hd->type == NGHTTP2_SETTINGS   ? "a SETTINGS flood"
                   : hd->type == NGHTTP2_PING     ? "a PING flood"
                   : hd->type == NGHTTP2_PRIORITY ? "a PRIORITY flood"
                                                  : "a flood of control frames";
        }
        break;
    }
    if (what != NULL) {
        moat_log(MOAT_LVL_INFO, s->env.conn_id,
                 "http2: %s; GOAWAY ENHANCE_YOUR_CALM, closing (peer %s)", what, s->env.peer);
        terminate(s, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    return 0;
}

static int cb_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *u)
{
    struct moat_h2s *s = u;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        struct moat_h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st != NULL) { /* trailers: limits of their own */
            st->hsize = 0;
            st->nfields = 0;
        }
        s->hstream = st;
        return 0;
    }
    if (s->closing) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    uint64_t wait;
    if (s->conf->req_interval_us > 0 && !s->env.requests_unlimited &&
        !moat_gcra_take(&s->req_tat_us, now_ms(s) * 1000, s->conf->req_interval_us,
                        s->conf->req_burst, &wait)) {
        /* Many requests on one connection: the whole connection goes, as for the other
         * floods (a client that means well opens another and slows down). */
        if (s->env.host->refused != NULL) {
            s->env.host->refused(s->env.host_data,
                                 "requests on one HTTP/2 connection faster than "
                                 "limits.http2_requests; GOAWAY ENHANCE_YOUR_CALM");
        }
        terminate(s, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    struct moat_h2_stream *st = stream_new(s, frame->hd.stream_id);
    if (st == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    }
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    s->hstream = st;
    s->hbuf.rd = s->hbuf.wr = 0;
    s->hidx.rd = s->hidx.wr = 0;
    if (!moat_ok(moat_pool_buf_acquire(s->env.pool, &s->hbuf)) ||
        !moat_ok(moat_pool_buf_acquire(s->env.pool, &s->hidx))) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    struct pseudo zero = {0};
    if (!moat_ok(moat_buf_append(&s->hidx, &zero, sizeof(zero)))) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int put_bytes(struct moat_h2s *s, const uint8_t *p, size_t n, uint32_t *off)
{
    *off = (uint32_t)s->hbuf.wr;
    return moat_ok(moat_buf_append(&s->hbuf, p, n));
}

/* RFC 9113 §8.2.1: a field name is a token in lower case. */
static int name_ok(const uint8_t *n, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        int c = n[i];
        if ((c >= 'a' && c <= 'z') || c == '-' || (c >= '0' && c <= '9')) {
            continue;
        }
        if (c == 0 || c >= 0x80 || strchr("!#$%&'*+.^_`|~", c) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
static int scheme_ok(const uint8_t *v, size_t len)
{
    if (len == 0 || !((v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z')) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        int c = v[i];
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

static int is_name(const uint8_t *name, size_t nl, const char *lit, size_t ll)
{
    return nl == ll && memcmp(name, lit, ll) == 0;
}
#define NAME_IS(lit) is_name(name, nl, lit, sizeof(lit) - 1)

/* The RFC 9113 §8 rule a regular field (of the request's head, or of its trailers) breaks,
 * or NULL; notes what the request's later checks need (content-length, host, priority). */
static const char *field_rule(struct moat_h2_stream *st, const uint8_t *name, size_t nl,
                              const uint8_t *value, size_t vl, int trailer)
{
    if (nl > 0 && name[0] == ':') {
        return trailer ? "a pseudo-field in trailers (§8.1)" : NULL;
    }
    if (!name_ok(name, nl)) {
        return "a field name that is no token in lower case (§8.2.1)";
    }
    int is_host = nl == 4 && NAME_IS("host");
    if (!is_host && !nghttp2_check_header_value_rfc9113(value, vl)) {
        return "a field value with NUL, CR or LF, or whitespace around it (§8.2.1)";
    }
    switch (nl) {
    case 2:
        if (NAME_IS("te") && !(vl == 8 && strncasecmp((const char *)value, "trailers", 8) == 0)) {
            return "te other than \"trailers\" (§8.2.2)";
        }
        break;
    case 4:
        if (is_host && !trailer) {
            if (st->host_seen++ > 0) {
                return "host twice";
            }
            if (vl == 0 || !nghttp2_check_authority(value, vl)) {
                return "an invalid host";
            }
        } else if (is_host && !nghttp2_check_authority(value, vl)) {
            return "an invalid host";
        }
        break;
    case 6:
        if (NAME_IS("cookie")) {
            st->cookies++;
        } else if (NAME_IS("expect")) {
            st->expect_seen = 1;
        }
        break;
    case 7:
        if (NAME_IS("upgrade")) {
            return "a connection-specific field (§8.2.2)";
        }
        break;
    case 8:
        if (NAME_IS("priority") && !trailer &&
            moat_priority_parse((const char *)value, vl, &st->prio)) {
            st->prio_set = 1; /* an invalid one is ignored (RFC 9218 §4) */
        }
        break;
    case 10:
        if (NAME_IS("connection") || NAME_IS("keep-alive")) {
            return "a connection-specific field (§8.2.2)";
        }
        break;
    case 14:
        if (NAME_IS("content-length")) {
            if (trailer) {
                return "content-length in trailers";
            }
            if (st->req_clen != -1) {
                return "content-length twice";
            }
            int64_t n = 0;
            for (size_t i = 0; i < vl; i++) {
                if (value[i] < '0' || value[i] > '9' || n > (INT64_MAX - 9) / 10) {
                    return "an invalid content-length";
                }
                n = n * 10 + (value[i] - '0');
            }
            if (vl == 0) {
                return "an invalid content-length";
            }
            st->req_clen = n;
        }
        break;
    case 16:
        if (NAME_IS("proxy-connection")) {
            return "a connection-specific field (§8.2.2)";
        }
        break;
    case 17:
        if (NAME_IS("transfer-encoding")) {
            return "a connection-specific field (§8.2.2)";
        }
        break;
    default:
        break;
    }
    return NULL;
}

/* The RFC 9113 §8.3 rule a pseudo-field breaks (i: its PS_ index, -1: not one we know), or
 * NULL. */
static const char *pseudo_rule(struct moat_h2s *s, struct moat_h2_stream *st, int i,
                               const uint8_t *value, size_t vl)
{
    if (i < 0) {
        return "an unknown pseudo-field (§8.3)";
    }
    if (st->regular_seen) {
        return "a pseudo-field after a regular field (§8.3)";
    }
    if (pseudo_of(s)->off[i] != 0) {
        return "a pseudo-field twice (§8.3.1)";
    }
    if (vl == 0) {
        return "an empty pseudo-field (§8.3.1)";
    }
    int ok;
    switch (i) {
    case PS_METHOD:
        ok = nghttp2_check_method(value, vl);
        break;
    case PS_PATH:
        ok = nghttp2_check_path(value, vl);
        break;
    case PS_AUTHORITY:
        ok = nghttp2_check_authority(value, vl);
        break;
    case PS_SCHEME:
        ok = scheme_ok(value, vl);
        break;
    default:
        ok = nghttp2_check_header_value_rfc9113(value, vl);
        break;
    }
    return ok ? NULL : "an invalid pseudo-field value (§8.3.1)";
}

static int cb_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *u)
{
    struct moat_h2s *s = u;
    /* The block in progress is hstream's (RFC 9113 §6.10: nothing comes between a block's
     * frames), which saves a lookup in nghttp2's stream map for every field. */
    struct moat_h2_stream *st = s->hstream;
    if (st == NULL || st->id != frame->hd.stream_id) {
        st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    }
    if (st == NULL || frame->hd.type != NGHTTP2_HEADERS || st->malformed != NULL) {
        return 0;
    }
    const struct moat_h2s_conf *conf = s->conf;
    st->hsize += nl + vl + 32;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* Trailers: kept as lines for a streaming handler, within the head's limits. */
        if ((st->malformed = field_rule(st, name, nl, value, vl, 1)) != NULL) {
            return 0;
        }
        struct moat_buf *t = &st->trailers_in;
        if (st->hsize > conf->max_head_bytes || ++st->nfields > conf->max_fields ||
            !moat_ok(moat_buf_append(t, name, nl)) || !moat_ok(moat_buf_append(t, ": ", 2)) ||
            !moat_ok(moat_buf_append(t, value, vl)) || !moat_ok(moat_buf_append(t, "\r\n", 2))) {
            moat_buf_clear(t);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
        }
        return 0;
    }
    if (nl > 0 && name[0] == ':') {
        /* The five a request may have (RFC 9113 §8.3.1, RFC 8441 §4): the length and the
         * second byte tell them apart, the compare makes sure. */
        static const char *const names[PS_COUNT] = {":method", ":scheme", ":authority", ":path",
                                                    ":protocol"};
        int i = nl == 7 && name[1] == 'm' ? PS_METHOD
                : nl == 7                 ? PS_SCHEME
                : nl == 10                ? PS_AUTHORITY
                : nl == 5                 ? PS_PATH
                : nl == 9                 ? PS_PROTOCOL
                                          : -1;
        if (i >= 0 && memcmp(names[i], name, nl) != 0) {
            i = -1;
        }
        if ((st->malformed = pseudo_rule(s, st, i, value, vl)) != NULL || st->too_big) {
            return 0;
        }
        if (st->hsize > conf->max_head_bytes) {
            st->too_big = 431;
            return 0;
        }
        if (vl > conf->max_line_bytes) {
            st->too_big = 414;
            return 0;
        }
        uint32_t off;
        if (!put_bytes(s, value, vl, &off)) {
            st->too_big = 431;
            return 0;
        }
        struct pseudo *ps = pseudo_of(s);
        ps->off[i] = off + 1;
        ps->len[i] = (uint32_t)vl;
        return 0;
    }
    st->regular_seen = 1;
    if ((st->malformed = field_rule(st, name, nl, value, vl, 0)) != NULL || st->too_big) {
        return 0;
    }
    if (st->hsize > conf->max_head_bytes || ++st->nfields > conf->max_fields) {
        st->too_big = 431;
        return 0;
    }
    struct fidx fx = {.nlen = (uint32_t)nl, .vlen = (uint32_t)vl};
    if (!put_bytes(s, name, nl, &fx.noff) || !put_bytes(s, value, vl, &fx.voff) ||
        !moat_ok(moat_buf_append(&s->hidx, &fx, sizeof(fx)))) {
        st->too_big = 431;
    }
    return 0;
}

/* The RFC 9113 §8.3.1 rule (RFC 8441 §4 for an extended CONNECT) the request's head as a
 * whole breaks, or NULL. */
static const char *request_rule(struct moat_h2s *s, struct moat_h2_stream *st, int end_stream)
{
    const struct pseudo *ps = pseudo_of(s);
    int has_scheme = ps->off[PS_SCHEME] != 0, has_path = ps->off[PS_PATH] != 0;
    int has_auth = ps->off[PS_AUTHORITY] != 0, has_proto = ps->off[PS_PROTOCOL] != 0;
    moat_slice method = ps->off[PS_METHOD] ? hslice(s, ps->off[PS_METHOD] - 1, ps->len[PS_METHOD])
                                           : MOAT_SLICE_NULL;
    int connect = moat_slice_eq(method, MOAT_SLICE_LIT("CONNECT"));
    if (method.p == NULL) {
        return "no :method (§8.3.1)";
    }
    if (connect && !has_proto) {
        if (has_scheme || has_path) {
            return "CONNECT with :scheme or :path (§8.5)";
        }
        if (!has_auth) {
            return "CONNECT without :authority (§8.5)";
        }
        st->req_clen = -1; /* a tunnel's bytes have no length */
    } else {
        if (!has_scheme || !has_path) {
            return "no :scheme or :path (§8.3.1)";
        }
        if (!has_auth && !st->host_seen) {
            return "neither :authority nor host (§8.3.1)";
        }
        if (has_proto && (!connect || !has_auth)) {
            return ":protocol without CONNECT and :authority (RFC 8441 §4)";
        }
        moat_slice scheme = hslice(s, ps->off[PS_SCHEME] - 1, ps->len[PS_SCHEME]);
        moat_slice path = hslice(s, ps->off[PS_PATH] - 1, ps->len[PS_PATH]);
        if ((moat_slice_eq_lit_nocase(scheme, "https") ||
             moat_slice_eq_lit_nocase(scheme, "http")) &&
            path.p[0] != '/' &&
            !(path.len == 1 && path.p[0] == '*' &&
              moat_slice_eq(method, MOAT_SLICE_LIT("OPTIONS")))) {
            return "a :path that is neither absolute nor * for OPTIONS (§8.3.1)";
        }
    }
    if (end_stream && st->req_clen > 0) {
        return "content-length without the content (§8.1.1)";
    }
    return NULL;
}

/* The stream's request is malformed (RFC 9113 §8.1.1): reset it, drop what it still sends. */
static void malformed(struct moat_h2s *s, struct moat_h2_stream *st, const char *why)
{
    if (st->malformed_reset) {
        return; /* trailers after a malformed head, before the reset went */
    }
    st->malformed_reset = 1;
    s->env.stats->bad_requests++;
    moat_log(MOAT_LVL_DEBUG, s->env.conn_id,
             "http2: stream %d: a malformed request: %s; RST_STREAM PROTOCOL_ERROR (peer %s)",
             (int)st->id, why, s->env.peer);
    st->malformed = why;
    st->discard = 1;
    detach(st, 1);
    moat_buf_clear(&st->rbody);
    reset_stream(s, st, NGHTTP2_PROTOCOL_ERROR);
}

/* The request's body ended (END_STREAM on DATA or on its trailers): its length must be what
 * content-length said (§8.1.1). */
static void body_end(struct moat_h2s *s, struct moat_h2_stream *st)
{
    if (st->malformed != NULL) {
        return;
    }
    if (st->req_clen >= 0 && st->body_bytes != (uint64_t)st->req_clen) {
        malformed(s, st, "less content than content-length (§8.1.1)");
        return;
    }
    st->body_done = 1;
    wake_for_body(s, st);
}

static void wake_for_body(struct moat_h2s *s, struct moat_h2_stream *st)
{
    if (st->st_waiting & WAIT_BODY) {
        st->wake = 1;
        s->wake = 1;
    }
}

static int cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *u)
{
    struct moat_h2s *s = u;
    struct moat_h2_stream *st = NULL;
    if (frame->hd.type == NGHTTP2_HEADERS && s->hstream != NULL &&
        s->hstream->id == frame->hd.stream_id) {
        st = s->hstream; /* the block just ended is its: no look-up in the stream map */
    } else if (frame->hd.stream_id != 0) {
        st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    }
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (st == NULL) {
            break;
        }
        s->hstream = NULL;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            const char *why = st->malformed;
            if (why == NULL && !st->too_big && s->hidx.base != NULL) {
                why = request_rule(s, st, end_stream);
            }
            if (why != NULL) {
                malformed(s, st, why);
                break;
            }
            if (st->prio_set) {
                nghttp2_extpri pri = {(uint32_t)st->prio.urgency, st->prio.incremental};
                nghttp2_session_change_extpri_stream_priority(ng, st->id, &pri, 0);
            }
            stream_dispatch(s, st, end_stream);
        } else if (st->malformed != NULL || !end_stream) {
            malformed(s, st, st->malformed ? st->malformed : "trailers without END_STREAM (§8.1)");
        } else {
            body_end(s, st);
        }
        break;
    case NGHTTP2_DATA:
        if (st != NULL && end_stream) {
            body_end(s, st);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int cb_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *u)
{
    struct moat_h2s *s = u;
    struct moat_h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL) {
        nghttp2_session_consume_connection(ng, len);
        return 0;
    }
    st->body_bytes += len;
    st->rx_ms = now_ms(s);
    if (st->malformed == NULL && st->req_clen >= 0 && st->body_bytes > (uint64_t)st->req_clen) {
        malformed(s, st, "more content than content-length (§8.1.1)");
    }
    if (st->malformed != NULL) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    uint64_t max = st->connect_protocol ? 0 : s->conf->max_body_bytes; /* a tunnel has no end */
    if (max > 0 && st->body_bytes > max && st->discard && st->answer_sent && !st->body_done) {
        nghttp2_session_consume(ng, id, len);
        st->body_done = 1;
        reset_stream(s, st, NGHTTP2_NO_ERROR); /* enough dropped: stop sending it */
        return 0;
    }
    if (max > 0 && st->body_bytes > max && !st->discard) {
        moat_log(MOAT_LVL_INFO, s->env.conn_id,
                 "http2: stream %d: the client's body is over limits.body (peer %s)", (int)id,
                 s->env.peer);
        s->env.stats->bad_requests++;
        int started = st->st_started || st->answered;
        detach(st, 1);
        moat_buf_clear(&st->rbody);
        if (started) {
            reset_stream(s, st, NGHTTP2_CANCEL);
        } else {
            respond_error(s, st, 413);
        }
    }
    if (st->discard || st->sops == NULL) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (!moat_ok(moat_pool_buf_acquire(s->env.pool, &st->rbody)) ||
        !moat_ok(moat_buf_append(&st->rbody, data, len))) {
        /* More than the window we gave: nghttp2 would have refused it; out of memory. */
        nghttp2_session_consume(ng, id, len);
        detach(st, 1);
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    wake_for_body(s, st);
    return 0;
}

static int cb_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *u)
{
    struct moat_h2s *s = u;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        !s->closing) {
        /* nghttp2 found a protocol error of the client's (RFC 9113 §5.4.1). */
        s->closing = 1;
        s->closing_since_ms = now_ms(s);
        s->env.stats->bad_requests++;
        moat_log(MOAT_LVL_INFO, s->env.conn_id, "http2: GOAWAY %s: %.*s; closing (peer %s)",
                 nghttp2_http2_strerror(frame->goaway.error_code),
                 (int)(frame->goaway.opaque_data_len > 200 ? 200 : frame->goaway.opaque_data_len),
                 frame->goaway.opaque_data ? (const char *)frame->goaway.opaque_data : "",
                 s->env.peer);
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        moat_log(MOAT_LVL_DEBUG, s->env.conn_id, "http2: stream %d reset: %s (peer %s)",
                 (int)frame->hd.stream_id, nghttp2_http2_strerror(frame->rst_stream.error_code),
                 s->env.peer);
    }
    /* DATA frames all go through cb_send_data (cb_data_read always asks for NO_COPY), which
     * marks the end itself without a look-up in nghttp2's stream map. */
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct moat_h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st != NULL) {
            answer_complete(s, st);
        }
    }
    return 0;
}

static int cb_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *u)
{
    struct moat_h2s *s = u;
    struct moat_h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL) {
        return 0;
    }
    /* No set_stream_user_data(NULL) first: with no_closed_streams nghttp2 destroys the stream
     * as soon as this returns, and nothing between reads its user data (one look-up in its
     * stream map per request less). */
    stream_free(s, st, 1);
    if (s->nstreams == 0) {
        s->idle_since_ms = now_ms(s);
    }
    return 0;
}

static int cb_error(nghttp2_session *ng, int lib_error_code, const char *msg, size_t len, void *u)
{
    struct moat_h2s *s = u;
    moat_log(MOAT_LVL_DEBUG, s->env.conn_id, "http2: %.*s (peer %s)", (int)(len > 300 ? 300 : len),
             msg, s->env.peer);
    return 0;
}

/* ---- the session's life ----------------------------------------------------------------- */

static void release_all(struct moat_h2s *s)
{
    s->ended = 1; /* no more output: the last frames' file bytes are not read */
    s->ngaps = 0; /* nothing more is written */
    while (s->streams != NULL) {
        struct moat_h2_stream *st = s->streams;
        if (s->ng != NULL) {
            nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
        }
        stream_free(s, st, 1);
    }
    if (s->ng != NULL) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
    }
    moat_timer_disarm(&s->env.loop->timers, &s->timer);
    out_release(s);
    moat_pool_buf_release(s->env.pool, &s->hbuf);
    moat_pool_buf_release(s->env.pool, &s->hidx);
}

void moat_h2s_clear(struct moat_h2s *s)
{
    release_all(s);
    s->env.host = NULL;
}

/* The session is over: the connection closes (the host frees it later). */
static void end(struct moat_h2s *s)
{
    const struct moat_session_host *host = s->env.host;
    if (host == NULL) {
        return;
    }
    release_all(s);
    s->env.host = NULL; /* ended once */
    host->ended(s->env.host_data);
}

/* Wake the streaming handlers whose wait is over (after nghttp2 returned). */
static void wake_handlers(struct moat_h2s *s)
{
    while (s->wake && s->env.host != NULL) {
        s->wake = 0;
        for (struct moat_h2_stream *st = s->streams; st != NULL; st = st->next) {
            if (!st->wake || st->sops == NULL) {
                st->wake = 0;
                continue;
            }
            st->wake = 0;
            st->st_waiting = 0;
            /* The handler may finish, fail or be reset inside: the list may change under
             * us, so start over after each call. */
            st->sops->ready(st->sh);
            s->wake = 1;
            break;
        }
    }
}

static int send_tail(struct moat_h2s *s)
{
    int w = write_out(s, 0);
    return w < 0 ? -1 : 0;
}

/* Frames from nghttp2 into `out`, and `out` to the transport. 0: all went or waits for the
 * socket; -1: the connection failed. */
static int send_all(struct moat_h2s *s)
{
    for (;;) {
        if (s->broken) {
            return -1; /* a file failed behind frames queued while reading */
        }
        size_t before = moat_buf_len(&s->out);
        if (before < OUT_HIGH && s->ng != NULL && nghttp2_session_want_write(s->ng)) {
            int rv = nghttp2_session_send(s->ng);
            if (rv != 0 || s->broken) {
                if (!s->broken) {
                    moat_log(MOAT_LVL_INFO, s->env.conn_id, "http2: cannot send: %s (peer %s)",
                             nghttp2_strerror(rv), s->env.peer);
                }
                return -1;
            }
        }
        /* More frames to come (and nghttp2 made progress): a short tail may wait for them. */
        int more =
            s->ng != NULL && nghttp2_session_want_write(s->ng) && moat_buf_len(&s->out) != before;
        int w = write_out(s, more);
        if (w != 0) {
            return w < 0 ? -1 : 0;
        }
        if (!more) {
            return moat_buf_len(&s->out) > 0 ? send_tail(s) : 0;
        }
    }
}

/* Read what the transport has and hand it to nghttp2: 0 when it would block, 2 when reading
 * stopped because the client is not taking our answers, -1 when the client left or broke the
 * protocol beyond a GOAWAY. */
static int read_in(struct moat_h2s *s)
{
    struct moat_h2s_scratch *sc = s->env.scratch;
    while (!s->closing && s->ng != NULL && nghttp2_session_want_read(s->ng)) {
        if (moat_buf_len(&s->out) >= OUT_HIGH) {
            return 2; /* take no more requests until the answers move */
        }
        size_t n;
        moat_rc rc = moat_transport_read(s->tr, sc->rbuf, sc->rbuf_len, &n);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (!moat_ok(rc)) {
            return -1;
        }
        ssize_t rv = nghttp2_session_mem_recv(s->ng, (const uint8_t *)sc->rbuf, n);
        if (rv < 0) {
            s->env.stats->bad_requests++;
            moat_log(MOAT_LVL_INFO, s->env.conn_id, "http2: %s; closing (peer %s)",
                     rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? "the client's connection preface is "
                                                          "not HTTP/2's"
                                                        : nghttp2_strerror((int)rv),
                     s->env.peer);
            return -1;
        }
    }
    return 0;
}

/* After the last frame went: our side is shut; drop what the client still sends for a moment,
 * so the close does not reset the connection before it read the GOAWAY. 1: done. */
static int linger_read(struct moat_h2s *s)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = s->tr->fd >= 0 ? recv(s->tr->fd, scratch, sizeof(scratch), 0) : 0;
        if (n > 0) {
            s->linger_bytes += (uint64_t)n;
            if (s->linger_bytes > 1024 * 1024) {
                return 1;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

static void start_linger(struct moat_h2s *s)
{
    moat_transport_shutdown(s->tr); /* close_notify */
    if (s->tr->fd >= 0) {
        shutdown(s->tr->fd, SHUT_WR);
    }
    s->lingering = 1;
    s->closing = 1;
    s->closing_since_ms = now_ms(s);
    if (linger_read(s)) {
        end(s);
        return;
    }
    arm_timer(s);
}

static void run(struct moat_h2s *s)
{
    if (s->running || s->env.host == NULL) {
        return;
    }
    if (s->lingering) {
        if (linger_read(s)) {
            end(s);
        }
        return;
    }
    s->running = 1;
    s->kick = 0;
    int can_read = 1;
    for (int round = 0; round < 256; round++) {
        if (can_read) {
            int r = read_in(s);
            if (r < 0) {
                s->running = 0;
                end(s);
                return;
            }
            can_read = r == 2;
        }
        if (send_all(s) < 0) {
            s->running = 0;
            end(s);
            return;
        }
        if (s->wake) {
            wake_handlers(s);
            if (s->env.host == NULL) {
                return;
            }
            continue;
        }
        if (can_read && moat_buf_len(&s->out) < OUT_HIGH) {
            continue; /* the answers moved: take requests again */
        }
        break;
    }
    s->running = 0;
    nghttp2_session *ng = s->ng;
    if (moat_buf_len(&s->out) == 0 &&
        (s->closing || (s->draining && s->nstreams == 0) ||
         (!nghttp2_session_want_read(ng) && !nghttp2_session_want_write(ng)))) {
        start_linger(s); /* a GOAWAY went (ours or the client's), and no stream is left */
        return;
    }
    if (moat_buf_len(&s->out) == 0 && s->nstreams == 0) {
        out_release(s);
        moat_pool_buf_release(s->env.pool, &s->hbuf);
        moat_pool_buf_release(s->env.pool, &s->hidx);
        /* Not kept for the next round as HTTP/1.1 keeps them (finding 33): 160 instructions a
         * request, for ~3.5 KiB more heap per idle connection after a burst of them. */
        moat_transport_idle(s->tr);
    }
    arm_timer(s);
}

/* From a handler's own event: send what its call queued. Never reads, wakes a handler or ends
 * the connection for anything but a failed write: the caller is inside its call, so whatever
 * else must happen (waking others, closing after a last answer) is left to run() from a timer
 * that fires at once. MOAT_E_CLOSED when the connection failed (the caller was let go). */
static moat_rc push(struct moat_h2s *s, struct moat_h2_stream *caller)
{
    if (s->env.host == NULL) {
        return moat_rc_of(MOAT_E_CLOSED);
    }
    if (s->running) {
        return MOAT_RC_OK; /* run() goes on after the handler returns */
    }
    s->running = 1;
    int rv = send_all(s);
    s->running = 0;
    if (rv < 0) {
        if (caller != NULL) {
            detach(caller, 0); /* it is inside its call: no abort for it */
        }
        end(s);
        return moat_rc_of(MOAT_E_CLOSED);
    }
    s->kick = 1;
    arm_timer(s);
    return MOAT_RC_OK;
}

/* ---- timers ----------------------------------------------------------------------------- */

/* Whether an answer waits for the client's flow-control window. */
static int window_stalled(const struct moat_h2s *s)
{
    nghttp2_session *ng = s->ng;
    int conn_closed = nghttp2_session_get_remote_window_size(ng) <= 0;
    for (const struct moat_h2_stream *st = s->streams; st != NULL; st = st->next) {
        int has_data = st->answered &&
                       ((st->fd >= 0 && st->file_left > 0) ||
                        (st->bytes != NULL && st->file_left > 0) || moat_buf_len(&st->data) > 0);
        if (has_data &&
            (conn_closed || nghttp2_session_get_stream_remote_window_size(ng, st->id) <= 0)) {
            return 1;
        }
    }
    return 0;
}

static uint64_t next_deadline(struct moat_h2s *s, const char **why)
{
    const struct moat_h2s_conf *c = s->conf;
    uint64_t d = UINT64_MAX;
    *why = NULL;
#define TAKE(t, w)                                                                                 \
    do {                                                                                           \
        uint64_t t_ = (t);                                                                         \
        if (t_ < d) {                                                                              \
            d = t_;                                                                                \
            *why = (w);                                                                            \
        }                                                                                          \
    } while (0)
    if (s->closing) {
        TAKE(s->closing_since_ms + CLOSE_LINGER_MS, "closing");
        return d;
    }
    if (moat_buf_len(&s->out) > 0 && s->blocked_since_ms > 0) {
        uint64_t from =
            s->blocked_since_ms > s->last_write_ms ? s->blocked_since_ms : s->last_write_ms;
        TAKE(from + c->write_timeout_ms, "socket");
    } else if (window_stalled(s)) {
        if (s->stalled_since_ms == 0) {
            s->stalled_since_ms = now_ms(s);
        }
        uint64_t from =
            s->stalled_since_ms > s->last_data_ms ? s->stalled_since_ms : s->last_data_ms;
        TAKE(from + c->write_timeout_ms, "window");
    } else {
        s->stalled_since_ms = 0;
    }
    for (const struct moat_h2_stream *st = s->streams; st != NULL; st = st->next) {
        if (!st->body_done && !st->tunnel &&
            ((st->st_waiting & WAIT_BODY) || (st->discard && st->answer_sent))) {
            TAKE(st->rx_ms + c->body_timeout_ms, "body");
        }
    }
    if (s->hstream != NULL) {
        TAKE(s->hblock_started_ms + c->head_timeout_ms, "head");
    }
    if (s->nstreams == 0) {
        TAKE(s->idle_since_ms + (s->requests == 0 ? c->head_timeout_ms : c->idle_timeout_ms),
             "idle");
    }
#undef TAKE
    return d;
}

static void arm_timer(struct moat_h2s *s)
{
    if (s->env.host == NULL) {
        return;
    }
    const char *why;
    uint64_t d = s->kick ? s->env.loop->now_ms : next_deadline(s, &why);
    struct moat_loop *l = s->env.loop;
    if (d == UINT64_MAX) {
        moat_timer_disarm(&l->timers, &s->timer);
        return;
    }
    if (d <= l->now_ms) {
        d = l->now_ms + 1;
    }
    if (!moat_ok(moat_timer_arm(&l->timers, &s->timer, d))) {
        moat_log(MOAT_LVL_ERROR, s->env.conn_id, "cannot arm the connection's timer; closing");
        terminate(s, NGHTTP2_INTERNAL_ERROR);
    }
}

static void on_timer(struct moat_timer *t)
{
    struct moat_h2s *s = t->data;
    const struct moat_h2s_conf *c = s->conf;
    uint64_t now = now_ms(s);
    const char *why;
    if (s->kick) {
        s->kick = 0; /* what a handler's call left to do */
        run(s);
        return;
    }
    uint64_t d = next_deadline(s, &why);
    if (d > now || why == NULL) {
        arm_timer(s); /* a deadline that moved */
        return;
    }
    s->env.stats->timeouts++;
    if (strcmp(why, "closing") == 0) {
        end(s);
        return;
    }
    if (strcmp(why, "socket") == 0) {
        moat_log(MOAT_LVL_INFO, s->env.conn_id,
                 "http2: the client took no answer bytes for %llu ms (timeouts.write); closing "
                 "(peer %s)",
                 (unsigned long long)c->write_timeout_ms, s->env.peer);
        if (s->tr->fd >= 0) {
            moat_sock_reset_on_close(s->tr->fd);
        }
        end(s);
        return;
    }
    if (strcmp(why, "window") == 0) {
        moat_log(MOAT_LVL_INFO, s->env.conn_id,
                 "http2: the client held its flow-control window at zero for %llu ms "
                 "(timeouts.write) while an answer waited; GOAWAY ENHANCE_YOUR_CALM, closing "
                 "(peer %s)",
                 (unsigned long long)c->write_timeout_ms, s->env.peer);
        terminate(s, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (strcmp(why, "head") == 0) {
        moat_log(MOAT_LVL_INFO, s->env.conn_id,
                 "http2: a header block not complete within %llu ms (timeouts.head); GOAWAY "
                 "ENHANCE_YOUR_CALM, closing (peer %s)",
                 (unsigned long long)c->head_timeout_ms, s->env.peer);
        terminate(s, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (strcmp(why, "idle") == 0) {
        moat_log(MOAT_LVL_DEBUG, s->env.conn_id,
                 "http2: %s within %llu ms; GOAWAY NO_ERROR, closing (peer %s)",
                 s->requests == 0 ? "no request (timeouts.head)" : "no new stream (timeouts.idle)",
                 (unsigned long long)(s->requests == 0 ? c->head_timeout_ms : c->idle_timeout_ms),
                 s->env.peer);
        terminate(s, NGHTTP2_NO_ERROR);
    } else { /* body */
        for (struct moat_h2_stream *st = s->streams; st != NULL; st = st->next) {
            if (st->body_done || st->tunnel || st->rx_ms + c->body_timeout_ms > now) {
                continue;
            }
            if (st->discard && st->answer_sent) {
                st->body_done = 1; /* a body nobody reads stopped coming: close the stream */
                reset_stream(s, st, NGHTTP2_NO_ERROR);
                continue;
            }
            if (!(st->st_waiting & WAIT_BODY)) {
                continue;
            }
            moat_log(MOAT_LVL_INFO, s->env.conn_id,
                     "http2: stream %d: the client's body stalled (timeouts.body) after %llu "
                     "bytes (peer %s)",
                     (int)st->id, (unsigned long long)st->body_bytes, s->env.peer);
            int started = st->answered || st->st_started;
            detach(st, 1);
            st->body_done = 1; /* no more waiting for it */
            if (started) {
                reset_stream(s, st, NGHTTP2_CANCEL);
            } else {
                respond_error(s, st, 408);
            }
        }
    }
    run(s);
}

/* ---- start and stop --------------------------------------------------------------------- */

/* nghttp2's allocator: the worker's slab (nghttp2 copies this table into the session). */
static void *ng_malloc(size_t size, void *u)
{
    return moat_slab_alloc(u, size);
}

static void ng_free(void *p, void *u)
{
    moat_slab_free(u, p);
}

static void *ng_calloc(size_t n, size_t size, void *u)
{
    return moat_slab_calloc(u, n, size);
}

static void *ng_realloc(void *p, size_t size, void *u)
{
    return moat_slab_realloc(u, p, size);
}

moat_rc moat_h2s_init(struct moat_h2s *s, struct moat_transport *tr,
                      const struct moat_h2s_conf *conf, const struct moat_h2s_env *env)
{
    memset(s, 0, sizeof(*s));
    s->env = *env;
    s->tr = tr;
    s->conf = conf;
    moat_buf_init(&s->out, OUT_LIMIT);
    moat_buf_init(&s->hbuf, conf->max_head_bytes + 2 * MOAT_POOL_BLOCK);
    moat_buf_init(&s->hidx, sizeof(struct pseudo) + (conf->max_fields + 1) * sizeof(struct fidx));
    moat_timer_init(&s->timer, on_timer, s);
    s->last_write_ms = s->idle_since_ms = now_ms(s);
    s->frames.at_ms = s->resets.at_ms = now_ms(s);

    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    nghttp2_session_callbacks_set_send_callback(cbs, cb_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, cb_send_data);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, cb_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, cb_error);
    /* Windows open as handlers take the body, so a slow origin slows its client down instead
     * of filling memory. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* RFC 9113 §8's rules for requests (field names and values, pseudo-fields, the fields
     * HTTP/2 forbids, content-length against the DATA) are checked in cb_header and at the
     * end of each block and body, where the fields are classified anyway: nghttp2's own
     * checks went over every field a second time (~1,300 instructions a request). */
    nghttp2_option_set_no_http_messaging(opt, 1);
    /* Our own budgets speak first and log why; nghttp2's are the backstop. */
    nghttp2_option_set_max_continuations(opt, CONTINUATIONS_MAX * 2);
    nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)conf->resets_per_s * 2 + 16,
                                               (uint64_t)conf->resets_per_s * 2 + 16);
    nghttp2_option_set_max_settings(opt, 32);
    /* RFC 9218 §7.1: PRIORITY_UPDATE re-prioritises a stream (nghttp2 ignores it unless asked),
     * and taking it also puts it under the control-frame budget. */
    nghttp2_option_set_builtin_recv_extension_type(opt, NGHTTP2_PRIORITY_UPDATE);
    /* RFC 9218 scheduling keeps no tree of closed streams, so nghttp2 need not keep them. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_mem mem = {.mem_user_data = &s->env.scratch->slab,
                       .malloc = ng_malloc,
                       .free = ng_free,
                       .calloc = ng_calloc,
                       .realloc = ng_realloc};
    int rv = nghttp2_session_server_new3((nghttp2_session **)&s->ng, cbs, s, opt, &mem);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        s->ng = NULL;
        return moat_rc_of(MOAT_E_NOMEM);
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, conf->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, conf->stream_window},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, conf->hpack_table},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)conf->max_head_bytes},
        /* RFC 9218: urgency and incremental from the priority field and PRIORITY_UPDATE
         * decide the order of DATA; RFC 7540's tree is gone. */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
        /* RFC 8441: WebSockets (and other protocols) over a stream, by extended CONNECT. */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    rv = nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0 && conf->conn_window > 65535) {
        rv = nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
                                                   (int32_t)conf->conn_window);
    }
    if (rv != 0) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
        return moat_rc_of(MOAT_E_NOMEM);
    }
    return MOAT_RC_OK;
}

void moat_h2s_start(struct moat_h2s *s)
{
    run(s);
}

void moat_h2s_on_event(struct moat_h2s *s, uint32_t events)
{
    if ((events & EPOLLERR) != 0) {
        end(s);
        return;
    }
    run(s);
}

int moat_h2s_drain(struct moat_h2s *s)
{
    if (s->env.host == NULL) {
        return 1;
    }
    if (!s->draining && !s->closing) {
        s->draining = 1;
        /* The last stream we took: the client may retry anything above on a new connection
         * (RFC 9113 §6.8). */
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
    }
    s->running = 1;
    int rv = send_all(s);
    s->running = 0;
    if (rv < 0) {
        return 1;
    }
    if (s->nstreams == 0 && moat_buf_len(&s->out) == 0) {
        return 1;
    }
    arm_timer(s);
    return 0;
}

/* ---- the exchange, for streaming handlers (http/exchange.h) ----------------------------- */

static moat_rc ex_read_body(struct moat_exch *ex, void *buf, size_t len, size_t *n)
{
    struct moat_h2_stream *st = of_exch(ex);
    struct moat_h2s *s = st->s;
    *n = 0;
    if (st->sops == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (len == 0 && !(st->body_done && moat_buf_len(&st->rbody) == 0)) {
        moat_log(MOAT_LVL_ERROR, s->env.conn_id, "a handler read the body into no room");
        detach(st, 0);
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        (void)push(s, NULL);
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (st->expect_continue && !st->continue_sent && !st->answered) {
        st->continue_sent = 1;
        nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
        nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
    }
    size_t avail = moat_buf_len(&st->rbody);
    if (avail > 0) {
        size_t k = avail < len ? avail : len;
        memcpy(buf, moat_buf_rdptr(&st->rbody), k);
        moat_buf_consume(&st->rbody, k);
        if (moat_buf_len(&st->rbody) == 0) {
            moat_pool_buf_release(s->env.pool, &st->rbody);
        }
        nghttp2_session_consume(s->ng, st->id, k); /* the window opens as the handler reads */
        *n = k;
        st->rx_ms = now_ms(s);
        moat_rc rc = push(s, st);
        if (!moat_ok(rc)) {
            *n = 0;
        }
        return rc;
    }
    if (st->body_done) {
        return MOAT_RC_OK;
    }
    st->st_waiting |= WAIT_BODY;
    st->rx_ms = now_ms(s);
    moat_rc rc = push(s, st);
    return moat_ok(rc) ? moat_rc_of(MOAT_E_AGAIN) : rc;
}

static moat_rc ex_start(struct moat_exch *ex, int status, const struct moat_buf *lines,
                        int64_t length, unsigned flags)
{
    struct moat_h2_stream *st = of_exch(ex);
    struct moat_h2s *s = st->s;
    if (st->sops == NULL || st->st_started) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (status == 101 && (flags & MOAT_RES_TUNNEL)) {
        if (!st->connect_protocol) {
            detach(st, 0);
            respond_error(s, st, 502); /* a switch nobody asked for */
            (void)push(s, NULL);
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        status = 200; /* RFC 8441 §5: the stream is the tunnel */
        length = -1;
        st->tunnel = 1;
    }
    st->st_started = 1;
    st->eof = 0;
    /* Even without a body the stream ends only at finish (an empty DATA frame with END_STREAM):
     * ending it here would close it, and abort the handler, inside this very call. */
    st->no_body = st->head_only || moat_http_status_bodyless(status) || length == 0;
    if (submit_answer(s, st, status, lines, length, flags, 1) != 0) {
        detach(st, 0);
        if (st->answered) {
            reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        } else {
            respond_error(s, st, 502);
        }
        (void)push(s, NULL);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    return push(s, st);
}

static moat_rc ex_send(struct moat_exch *ex, const void *p, size_t n)
{
    struct moat_h2_stream *st = of_exch(ex);
    struct moat_h2s *s = st->s;
    if (st->sops == NULL || !st->st_started) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (n == 0 || st->eof || st->no_body) {
        return MOAT_RC_OK; /* HEAD, a bodyless status, or a length of 0 */
    }
    moat_rc rc = moat_buf_append(&st->data, p, n);
    if (!moat_ok(rc)) {
        detach(st, 0);
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR);
        (void)push(s, NULL);
        return rc;
    }
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    return push(s, st);
}

static size_t ex_room(struct moat_exch *ex)
{
    struct moat_h2_stream *st = of_exch(ex);
    size_t len = moat_buf_len(&st->data);
    if (len < STREAM_PIECE) {
        return STREAM_PIECE - len;
    }
    st->st_waiting |= WAIT_ROOM;
    return 0;
}

static const struct moat_buf *ex_trailers(struct moat_exch *ex)
{
    struct moat_h2_stream *st = of_exch(ex);
    return st->body_done && moat_buf_len(&st->trailers_in) > 0 ? &st->trailers_in : NULL;
}

static void ex_finish(struct moat_exch *ex, const struct moat_buf *trailers)
{
    struct moat_h2_stream *st = of_exch(ex);
    struct moat_h2s *s = st->s;
    if (st->sops == NULL) {
        return;
    }
    detach(st, 0);
    if (!st->st_started) {
        respond_error(s, st, 500); /* a handler that finished without an answer: a bug */
        (void)push(s, NULL);
        return;
    }
    if (trailers != NULL && moat_buf_len(trailers) > 0 && !st->eof && !st->no_body &&
        !moat_ok(
            moat_buf_append(&st->trailers_out, moat_buf_rdptr(trailers), moat_buf_len(trailers)))) {
        st->trailers_out.rd = st->trailers_out.wr = 0; /* dropped, as RFC 9110 §6.5.1 allows */
    }
    st->eof = 1;
    if (!st->body_done) {
        /* The answer came before all of the body: drop the rest (RST_STREAM NO_ERROR follows
         * the answer's END_STREAM). */
        st->discard = 1;
        size_t left = moat_buf_len(&st->rbody);
        if (left > 0) {
            nghttp2_session_consume(s->ng, st->id, left);
        }
        moat_buf_clear(&st->rbody);
    }
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    (void)push(s, NULL);
}

static void ex_fail(struct moat_exch *ex, int status)
{
    struct moat_h2_stream *st = of_exch(ex);
    struct moat_h2s *s = st->s;
    if (st->sops == NULL) {
        return;
    }
    detach(st, 0);
    if (st->st_started) {
        reset_stream(s, st, NGHTTP2_INTERNAL_ERROR); /* a promised answer cannot be kept */
    } else {
        respond_error(s, st, status);
    }
    (void)push(s, NULL);
}

static const struct moat_exch_ops exch_ops = {
    .read_body = ex_read_body,
    .start = ex_start,
    .send = ex_send,
    .room = ex_room,
    .trailers = ex_trailers,
    .finish = ex_finish,
    .fail = ex_fail,
};

/* ---- the worker's scratch --------------------------------------------------------------- */

moat_rc moat_h2s_scratch_init(struct moat_h2s_scratch *sc, size_t max_fields)
{
    moat_buf_init(&sc->nv, 4 * 1024 * 1024);
    moat_buf_init(&sc->memo_head, MEMO_HEAD_MAX);
    sc->out_spare = (struct moat_buf){0};
    sc->memo_ok = 0;
    moat_slab_init(&sc->slab, 1024);
    sc->spare = NULL;
    sc->nspare = 0;
    sc->nfields_cap = max_fields + 1;
    sc->fields = calloc(sc->nfields_cap, sizeof(*sc->fields));
    sc->rbuf_len = 32 * 1024;
    sc->rbuf = malloc(sc->rbuf_len);
    if (sc->fields == NULL || sc->rbuf == NULL) {
        moat_h2s_scratch_clear(sc);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    return MOAT_RC_OK;
}

void moat_h2s_scratch_clear(struct moat_h2s_scratch *sc)
{
    moat_buf_clear(&sc->nv);
    moat_buf_clear(&sc->memo_head);
    sc->memo_ok = 0;
    free(sc->out_spare.base);
    sc->out_spare.base = NULL;
    sc->out_spare.cap = 0;
    free(sc->fields);
    free(sc->rbuf);
    moat_slab_clear(&sc->slab);
    while (sc->spare != NULL) {
        struct moat_h2_stream *st = sc->spare;
        sc->spare = st->next;
        moat_buf_clear(&st->data);
        moat_buf_clear(&st->head);
        free(st);
    }
    sc->nspare = 0;
    sc->fields = NULL;
    sc->rbuf = NULL;
    sc->nfields_cap = 0;
}
