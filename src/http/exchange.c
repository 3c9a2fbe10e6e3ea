/*
 * exchange.c: what all handlers share (see exchange.h).
 */
#include "http/exchange.h"

#include "core/fmt.h"
#include "core/path.h"
#include "http/status.h"

#include <string.h>
#include <unistd.h>

#define PUT(b, lit) moat_buf_append((b), (lit), sizeof(lit) - 1)

moat_rc moat_res_error_page(struct moat_res *res, int status, struct moat_buf *fields,
                            struct moat_buf *body)
{
    res->status = status;
    res->fd = -1;
    res->offset = 0;
    MOAT_TRY(PUT(fields, "Content-Type: text/html; charset=utf-8\r\n"));
    size_t before = moat_buf_len(body);
    char code[8];
    size_t cn = moat_fmt_dec(code, (uint64_t)status);
    const char *reason = moat_http_reason(status);
    for (int i = 0; i < 2; i++) {
        MOAT_TRY(i == 0 ? PUT(body, "<!DOCTYPE html>\n<html><head><title>")
                        : PUT(body, "</title></head>\n<body><h1>"));
        MOAT_TRY(moat_buf_append(body, code, cn));
        MOAT_TRY(PUT(body, " "));
        MOAT_TRY(moat_buf_append(body, reason, strlen(reason)));
    }
    MOAT_TRY(PUT(body, "</h1></body></html>\n"));
    res->has_generated_body = 1;
    res->length = moat_buf_len(body) - before;
    return MOAT_RC_OK;
}

void moat_res_file_done(int fd, void (*release)(void *h), void *h)
{
    if (release != NULL) {
        release(h);
    } else if (fd >= 0) {
        close(fd);
    }
}

void moat_req_normalize(struct moat_req *req, char *buf)
{
    size_t n = 0;
    req->npath_rc = moat_path_normalize(req->path.p, req->path.len, buf, MOAT_REQ_PATH_CAP + 1, &n);
    req->npath = moat_ok(req->npath_rc) ? moat_slice_of(buf, n) : MOAT_SLICE_NULL;
}
