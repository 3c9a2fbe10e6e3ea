/*
 * write.c: HTTP/1.1 heads and chunks (see write.h).
 */
#include "http1/write.h"

#include "core/fmt.h"
#include "core/httpdate.h"
#include "http/status.h"

#include <string.h>

#define PUT(b, lit) moat_buf_append((b), (lit), sizeof(lit) - 1)

moat_rc moat_h1_head_begin(struct moat_buf *b, int status, time_t now, int server)
{
    char line[24];
    int code = status < 100 || status > 999 ? 500 : status;
    memcpy(line, "HTTP/1.1 ", 9);
    size_t n = 9 + moat_fmt_dec(line + 9, (uint64_t)code);
    line[n++] = ' ';
    MOAT_TRY(moat_buf_append(b, line, n));
    const char *reason = moat_http_reason(code);
    MOAT_TRY(moat_buf_append(b, reason, strlen(reason)));
    MOAT_TRY(PUT(b, "\r\nDate: "));
    MOAT_TRY(moat_buf_append(b, moat_httpdate_now(now), MOAT_HTTPDATE_LEN));
    if (server) {
        return PUT(b, "\r\nServer: moat\r\n");
    }
    return PUT(b, "\r\n");
}

moat_rc moat_h1_head_request(struct moat_buf *b, moat_slice method, moat_slice target,
                             moat_slice query)
{
    MOAT_TRY(moat_buf_append(b, method.p, method.len));
    MOAT_TRY(PUT(b, " "));
    MOAT_TRY(moat_buf_append(b, target.p, target.len));
    if (query.len > 0) {
        MOAT_TRY(PUT(b, "?"));
        MOAT_TRY(moat_buf_append(b, query.p, query.len));
    }
    return PUT(b, " HTTP/1.1\r\n");
}

moat_rc moat_h1_head_field(struct moat_buf *b, moat_slice name, moat_slice value)
{
    MOAT_TRY(moat_buf_append(b, name.p, name.len));
    MOAT_TRY(PUT(b, ": "));
    MOAT_TRY(moat_buf_append(b, value.p, value.len));
    return PUT(b, "\r\n");
}

moat_rc moat_h1_head_end(struct moat_buf *b, enum moat_h1_frame frame, uint64_t length,
                         enum moat_h1_conn conn)
{
    switch (frame) {
    case MOAT_H1_FRAME_LENGTH: {
        char line[40];
        memcpy(line, "Content-Length: ", 16);
        size_t n = 16 + moat_fmt_dec(line + 16, length);
        line[n++] = '\r';
        line[n++] = '\n';
        MOAT_TRY(moat_buf_append(b, line, n));
        break;
    }
    case MOAT_H1_FRAME_CHUNKED:
        MOAT_TRY(PUT(b, "Transfer-Encoding: chunked\r\n"));
        break;
    case MOAT_H1_FRAME_NONE:
    default:
        break;
    }
    switch (conn) {
    case MOAT_H1_CONN_CLOSE:
        MOAT_TRY(PUT(b, "Connection: close\r\n"));
        break;
    case MOAT_H1_CONN_KEEP_ALIVE:
        MOAT_TRY(PUT(b, "Connection: keep-alive\r\n"));
        break;
    case MOAT_H1_CONN_DEFAULT:
    default:
        break;
    }
    return PUT(b, "\r\n");
}

moat_rc moat_h1_chunk(struct moat_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return MOAT_RC_OK;
    }
    char line[24];
    size_t k = moat_fmt_hex(line, (uint64_t)n);
    line[k++] = '\r';
    line[k++] = '\n';
    MOAT_TRY(moat_buf_append(b, line, k));
    MOAT_TRY(moat_buf_append(b, p, n));
    return PUT(b, "\r\n");
}

moat_rc moat_h1_chunk_last(struct moat_buf *b)
{
    return PUT(b, "0\r\n\r\n");
}

moat_rc moat_h1_chunk_last_trailers(struct moat_buf *b, const struct moat_buf *lines)
{
    if (lines == NULL || moat_buf_len(lines) == 0) {
        return moat_h1_chunk_last(b);
    }
    MOAT_TRY(PUT(b, "0\r\n"));
    MOAT_TRY(moat_buf_append(b, moat_buf_rdptr(lines), moat_buf_len(lines)));
    return PUT(b, "\r\n");
}
