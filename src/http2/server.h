/*
 * server.h: the server side of HTTP/2 (RFC 9113) on one connection, after the handshake picked
 * "h2" by ALPN. Framing, HPACK (RFC 7541) and flow control are Debian's libnghttp2; this module
 * is the glue between it and the loop, the transport and the handlers, and the defences
 * nghttp2 leaves to its user. Handlers are reached exactly as from http1/server.h, through
 * http/session.h and http/exchange.h, so every handler serves both protocols unchanged.
 *
 * Per stream: HEADERS -> dispatch (route + handler) -> the answer (a generated body, a region of
 * an open file, or a streaming handler's pieces) -> END_STREAM -> closed. Many at once.
 *
 * Data path: nghttp2 asks for DATA in the no-copy mode, so a file's bytes are read straight
 * behind their 9-byte frame headers in the connection's output buffer (one preadv fills the
 * frames of a 64 KiB burst), which goes out as full TLS records; nothing of a body is copied
 * twice or held whole. A file that shrinks under a promised length cuts the connection.
 *
 * nghttp2 enforces RFC 9113's framing, state and flow-control rules (and resets or ends the
 * connection with the right error code); the rules of §8 for a request's fields (names and
 * values, pseudo-fields, the fields HTTP/2 forbids, content-length against the DATA) are
 * checked here, as the fields are classified anyway (RST_STREAM PROTOCOL_ERROR), as is the
 * priority field (RFC 9218, http/priority.h). Defences beyond those: header list size and field
 * count (431), the body limit (413), max concurrent streams (REFUSED_STREAM), rapid reset
 * (CVE-2023-44487) and floods of SETTINGS, PING, PRIORITY, PRIORITY_UPDATE, empty DATA and
 * unknown frames (each a budget per second: GOAWAY ENHANCE_YOUR_CALM), CONTINUATION floods (a
 * header block must finish within timeouts.head and nghttp2's CONTINUATION cap), a window held
 * at zero while an answer waits (GOAWAY ENHANCE_YOUR_CALM after timeouts.write), idle
 * connections (GOAWAY NO_ERROR after timeouts.idle). Every such end says why in the log.
 *
 * The steady state allocates little: nghttp2's stream and frame records, and a stream record
 * of ours from a per-session free list; input goes from the worker's read buffer straight into
 * nghttp2; the output buffer is a pool block that grows for bulk transfers and is given back
 * when the connection goes idle.
 */
#ifndef MOAT_HTTP2_SERVER_H
#define MOAT_HTTP2_SERVER_H

#include "core/buf.h"
#include "core/loop.h"
#include "core/pool.h"
#include "core/slab.h"
#include "core/timer.h"
#include "core/transport.h"
#include "http/exchange.h"
#include "http/field.h"
#include "http/session.h"

#include <stdint.h>

/* What the session enforces; built once per configuration snapshot. */
struct moat_h2s_conf {
    uint32_t max_streams;    /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint32_t hpack_table;    /* SETTINGS_HEADER_TABLE_SIZE: the decoder's dynamic table */
    uint32_t stream_window;  /* SETTINGS_INITIAL_WINDOW_SIZE: what a stream may send us ahead */
    uint32_t conn_window;    /* the connection's receive window */
    uint32_t frames_per_s;   /* control frames a client may send per second (burst as many) */
    uint32_t resets_per_s;   /* streams a client may cancel per second (burst as many) */
    uint64_t max_line_bytes; /* :path and the other pseudo-fields, as HTTP/1's request line */
    uint64_t max_head_bytes; /* header list size (RFC 9113 §6.5.2), as HTTP/1's head */
    uint32_t max_fields;
    uint64_t max_body_bytes; /* 0: none */
    uint64_t max_requests;   /* streams per connection; then GOAWAY */
    /* Request streams per connection (limits.http2_requests): one per req_interval_us with
     * bursts of req_burst; 0: no limit. Over it: GOAWAY ENHANCE_YOUR_CALM. */
    uint64_t req_interval_us, req_burst;
    uint64_t head_timeout_ms, idle_timeout_ms, body_timeout_ms, write_timeout_ms;
};

struct moat_h2_stream;

/* One field of a converted answer head: where its name and value are in the head (offsets
 * from its first byte), and name_kind's static lower-case name, or NULL. */
#define MOAT_H2_MEMO_FIELDS 24
struct moat_h2_memo_field {
    const char *known;
    uint32_t noff, nlen, voff, vlen;
};

/* Per worker, shared by its sessions one call at a time. */
struct moat_h2s_scratch {
    struct moat_buf *lines, *body; /* a handler's header lines and generated body */
    char *npath;                   /* MOAT_REQ_PATH_CAP + 1 bytes: the normalised path */
    struct moat_buf nv;            /* their nghttp2_nv array */
    /* The last answer head submit_answer converted to HTTP/2 fields, and the conversion: a
     * head the same byte for byte (a file served again, on any of the worker's connections)
     * takes the fields from here instead of being parsed again. */
    struct moat_buf memo_head;
    unsigned memo_flags;
    int memo_ok;
    size_t memo_n;
    struct moat_h2_memo_field memo[MOAT_H2_MEMO_FIELDS];
    /* An output buffer that grew past a pool block, kept for the next session's round (only
     * its storage: base and cap). */
    struct moat_buf out_spare;
    struct moat_field *fields; /* a request's fields at dispatch (max_fields + 1) */
    size_t nfields_cap;
    char *rbuf; /* what one read takes from the transport */
    size_t rbuf_len;
    /* nghttp2's memory: it allocates several blocks per stream and frees them when the
     * stream ends; recycling them here saves a malloc and a free each time. */
    struct moat_slab slab;
    /* Stream records freed by any of the worker's sessions, newest first: the next stream
     * takes the one just freed, still in the cache (per-session lists handed every new stream
     * a record untouched since that connection's last request: a cache miss per stream). */
    struct moat_h2_stream *spare;
    unsigned nspare;
};

/* What a session runs on; everything borrowed, living longer than the session. */
struct moat_h2s_env {
    struct moat_loop *loop;
    struct moat_pool *pool;
    struct moat_h2s_scratch *scratch;
    struct moat_session_stats *stats;
    const struct moat_session_host *host;
    void *host_data;
    unsigned long long conn_id;
    const char *peer;
    const struct moat_endpoints *ends; /* both ends with ports, for handlers; may be NULL */
    void *tls;                         /* the SSL * for handlers that ask tls/ about the client */
    int keep_meta;
    int requests_unlimited; /* the client is exempt from req_interval_us (limits.exempt) */
};

/* A DATA frame's place in the output buffer, still to be filled from its file. */
#define MOAT_H2_GAPS 16
struct moat_h2_gap {
    int fd;
    uint64_t off;
    size_t pos; /* from the start of the output buffer's unsent bytes */
    size_t len;
};

/* A rate budget: `level` units spent, draining at the budget's rate per second. */
struct moat_h2_bucket {
    uint64_t level_ms; /* spent, in milliseconds of the rate */
    uint64_t at_ms;
};

struct moat_h2s {
    struct moat_h2s_env env;
    struct moat_transport *tr;
    const struct moat_h2s_conf *conf;
    void *ng; /* nghttp2_session *, owned */
    struct moat_timer timer;
    struct moat_buf out;            /* frames for the transport */
    struct moat_buf hbuf;           /* the header block being received: names and values */
    struct moat_buf hidx;           /* its fields as offsets into hbuf */
    struct moat_h2_stream *streams; /* live ones (doubly linked) */
    size_t nstreams;
    struct moat_h2_stream *hstream; /* whose header block is being received */
    uint64_t hblock_started_ms;
    unsigned continuations;
    struct moat_h2_bucket frames, resets;
    uint64_t req_tat_us; /* the GCRA state of req_interval_us */
    uint64_t requests;
    uint64_t last_write_ms, idle_since_ms;
    uint64_t last_data_ms;     /* a DATA frame went into `out` */
    uint64_t blocked_since_ms; /* the socket stopped taking `out`; 0: it takes it */
    uint64_t stalled_since_ms; /* an answer waits for the client's window; 0: none does */
    uint64_t linger_bytes;
    int lingering; /* our side is shut: dropping what still comes, then closing */
    int running;
    int ended;
    int draining; /* GOAWAY NO_ERROR sent: finish the streams, then close */
    int closing;  /* GOAWAY with an error sent (or to be): flush it, then close */
    uint64_t closing_since_ms;
    int wake; /* streaming handlers to wake after this round */
    int kick; /* a handler's call left work for run(): the timer fires at once */
    struct moat_h2_gap gaps[MOAT_H2_GAPS]; /* file bytes still to be read into `out` */
    size_t ngaps;
    int broken;      /* a file failed behind frames already queued: the connection is cut */
    int write_retry; /* the transport wants the bytes it refused again */
};

/* Ready a session over `tr` (which must outlive it) and queue the server's SETTINGS.
 * MOAT_E_NOMEM when nghttp2 cannot start one. */
MOAT_MUST_USE moat_rc moat_h2s_init(struct moat_h2s *s, struct moat_transport *tr,
                                    const struct moat_h2s_conf *conf,
                                    const struct moat_h2s_env *env);
/* Start: write the SETTINGS, read the client's preface. May end the session at once. */
void moat_h2s_start(struct moat_h2s *s);
/* The socket is readable or writable (edge-triggered): run until it would block. */
void moat_h2s_on_event(struct moat_h2s *s, uint32_t events);
/* The worker drains: GOAWAY with the last stream id; streams in flight finish. 1 when none
 * are, and the connection may close now. */
int moat_h2s_drain(struct moat_h2s *s);
/* Release everything (the connection closes): streaming handlers get their abort. Safe after
 * the session ended and twice. */
void moat_h2s_clear(struct moat_h2s *s);

/* The worker's scratch: allocate its parts (max_fields: the largest a snapshot allows). */
MOAT_MUST_USE moat_rc moat_h2s_scratch_init(struct moat_h2s_scratch *sc, size_t max_fields);
void moat_h2s_scratch_clear(struct moat_h2s_scratch *sc);

#endif
