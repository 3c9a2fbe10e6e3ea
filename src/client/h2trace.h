/*
 * h2trace.h: the record of the HTTP/2 frames that crossed during one `moat get --http2` or
 * `moat trace --http2` connection, and their names and words for the diagram and the JSON.
 *
 * h2.c adds each frame nghttp2 reports sent or received (its on_frame_send and
 * on_frame_recv callbacks, and the frames it refused), plus the client's connection preface,
 * which is no frame. The record is bounded whatever the server sends: the first
 * MOAT_H2_SHOW_FIRST DATA and WINDOW_UPDATE frames of each direction are kept one by one, the
 * ones after are folded into one row per type and direction (count, bytes, first and last
 * time; a DATA frame with END_STREAM is kept apart, it ends the body), and past
 * MOAT_H2_MAX_FRAMES rows frames are only counted.
 *
 * No nghttp2 here: frame types, flags, settings and error codes are RFC 9113's wire numbers,
 * so the renderers and the unit tests need no session.
 */
#ifndef MOAT_CLIENT_H2TRACE_H
#define MOAT_CLIENT_H2TRACE_H

#include <stddef.h>
#include <stdint.h>

#define MOAT_H2_PREFACE 0x100   /* pseudo frame type: the client preface (RFC 9113 §3.4) */
#define MOAT_H2_MAX_FRAMES 256  /* rows kept per connection */
#define MOAT_H2_SHOW_FIRST 3    /* DATA / WINDOW_UPDATE frames shown one by one per direction */
#define MOAT_H2_MAX_SETTINGS 8  /* settings kept per SETTINGS frame */
#define MOAT_H2_FIELDS_MAX 2048 /* bytes of one HEADERS frame's field text kept */
#define MOAT_H2_DEBUG_MAX 128   /* bytes of a GOAWAY's debug data kept */

/* RFC 9113 §6 frame types and flags, §7 error codes, §6.5.2 settings. */
enum moat_h2_type {
    MOAT_H2_DATA = 0,
    MOAT_H2_HEADERS = 1,
    MOAT_H2_PRIORITY = 2,
    MOAT_H2_RST_STREAM = 3,
    MOAT_H2_SETTINGS = 4,
    MOAT_H2_PUSH_PROMISE = 5,
    MOAT_H2_PING = 6,
    MOAT_H2_GOAWAY = 7,
    MOAT_H2_WINDOW_UPDATE = 8,
    MOAT_H2_CONTINUATION = 9,
    MOAT_H2_TYPE_COUNT /* keep last */
};

#define MOAT_H2_FLAG_END_STREAM 0x01 /* DATA, HEADERS */
#define MOAT_H2_FLAG_ACK 0x01        /* SETTINGS, PING */
#define MOAT_H2_FLAG_END_HEADERS 0x04
#define MOAT_H2_FLAG_PADDED 0x08
#define MOAT_H2_FLAG_PRIORITY 0x20

/* Which header block a HEADERS frame carried. */
enum moat_h2_block {
    MOAT_H2_BLOCK_NONE = 0,
    MOAT_H2_BLOCK_REQUEST,  /* the client's request head */
    MOAT_H2_BLOCK_RESPONSE, /* the final response head */
    MOAT_H2_BLOCK_INTERIM,  /* a 1xx response head */
    MOAT_H2_BLOCK_TRAILERS, /* fields after the body */
    MOAT_H2_BLOCK_COUNT     /* keep last */
};

struct moat_h2_setting {
    uint16_t id;
    uint32_t value;
};

/* One row: a frame, the preface, or a fold of several DATA or WINDOW_UPDATE frames. */
struct moat_h2_frame {
    double ms;      /* since the connection's start (before DNS); a fold: its first frame's */
    double last_ms; /* a fold: its last frame's; else ms */
    int dir;        /* enum moat_trace_dir */
    unsigned type;  /* enum moat_h2_type, another type number, or MOAT_H2_PREFACE */
    unsigned flags;
    int32_t stream_id;
    size_t length;          /* payload bytes (the 9-byte frame header not counted) */
    size_t count;           /* frames this row stands for: 1, more for a fold */
    uint64_t bytes;         /* payload bytes of all of them */
    uint32_t error_code;    /* RST_STREAM, GOAWAY */
    int32_t last_stream_id; /* GOAWAY */
    int64_t increment;      /* WINDOW_UPDATE; a fold: the sum */
    size_t nsettings;       /* SETTINGS: entries in the frame (the first ones are kept) */
    struct moat_h2_setting settings[MOAT_H2_MAX_SETTINGS];
    unsigned char ping[8];    /* PING's opaque data */
    enum moat_h2_block block; /* HEADERS */
    size_t nfields;           /* HEADERS: field lines in the block */
    char *fields;             /* owned: HEADERS' "name: value\n" lines, cut; NULL when none */
    char *debug;              /* owned: GOAWAY's debug data, printable, cut; NULL when none */
    int refused;              /* received, but nghttp2 refused it as invalid */
    char refused_why[96];     /* nghttp2's words for that */
};

/* Invariant: frames[0, n) in the order recorded; fold[d][k] indexes the open fold of DATA
 * (k 0) or WINDOW_UPDATE (k 1) in direction d, or is SIZE_MAX. */
struct moat_h2rec {
    struct moat_h2_frame *frames; /* owned */
    size_t n, cap;
    size_t not_recorded; /* frames past MOAT_H2_MAX_FRAMES (or memory), counted only */
    uint64_t not_recorded_bytes;
    double not_recorded_last_ms;
    size_t seen[2][2]; /* DATA / WINDOW_UPDATE frames per direction */
    size_t fold[2][2];
};

/* An empty record (no allocation). A zeroed struct is one too, except for fold, so init. */
void moat_h2rec_init(struct moat_h2rec *r);
/* Free the rows and what they own; the record can be initialised again. */
void moat_h2rec_clear(struct moat_h2rec *r);

/*
 * Add frame f (count and bytes are set here). Takes f->fields and f->debug over in every
 * case (freed when folded or not kept). Never fails: a frame that cannot be kept is counted in
 * not_recorded.
 */
void moat_h2rec_add(struct moat_h2rec *r, struct moat_h2_frame *f);

/* "DATA", "SETTINGS", ..., "preface"; "type 0x0c" for another (written into buf, 16 bytes). */
const char *moat_h2_type_name(unsigned type, char *buf, size_t buflen);
/* "NO_ERROR", "REFUSED_STREAM" (RFC 9113 §7); "0x1f" for codes it does not name (in buf). */
const char *moat_h2_error_name(uint32_t code, char *buf, size_t buflen);
/* What an error code from the server means, for people; never NULL. */
const char *moat_h2_error_words(uint32_t code);
/* "INITIAL_WINDOW_SIZE" (RFC 9113 §6.5.2, RFC 8441's ENABLE_CONNECT_PROTOCOL); "0x%x" else. */
const char *moat_h2_setting_name(uint16_t id, char *buf, size_t buflen);

/* The arrow's label: "SETTINGS  18 B", "HEADERS stream 1 END_STREAM  31 B",
 * "DATA x250 stream 1  3.9 MiB", "GOAWAY NO_ERROR last stream 1". Returns out. */
const char *moat_h2_frame_label(const struct moat_h2_frame *f, char *out, size_t outlen);
/* What goes under the arrow (without the fields of HEADERS, which are lines of their own):
 * the settings and their values, an error code's words, GOAWAY's last stream and debug data,
 * a fold's time span, why nghttp2 refused it; "" when there is nothing to add. Returns out. */
const char *moat_h2_frame_note(const struct moat_h2_frame *f, char *out, size_t outlen);
/* The flags set on f, by name for its type ("END_STREAM|END_HEADERS"), "" when none. */
const char *moat_h2_flags_text(unsigned type, unsigned flags, char *out, size_t outlen);

#endif
