/*
 * builtin.c: redirects, OPTIONS * and ACME HTTP-01 answers (see builtin.h).
 */
#include "serve/builtin.h"

#include "core/fmt.h"
#include "serve/route.h"

#include <string.h>

#define PUT(b, lit) moat_buf_append((b), (lit), sizeof(lit) - 1)

moat_rc moat_builtin_redirect(const void *ctx, const struct moat_req *req, struct moat_res *res,
                              struct moat_buf *fields, struct moat_buf *body)
{
    moat_slice host = moat_route_host(req->authority);
    if (host.len == 0) {
        return moat_res_error_page(res, 400, fields, body);
    }
    *res = (struct moat_res){.status = 308, .fd = -1};
    int port = *(const int *)ctx;
    MOAT_TRY(PUT(fields, "Location: https://"));
    MOAT_TRY(moat_buf_append(fields, host.p, host.len));
    if (port != 443) {
        char num[MOAT_FMT_DEC_MAX + 1];
        num[0] = ':';
        MOAT_TRY(moat_buf_append(fields, num, 1 + moat_fmt_dec(num + 1, (uint64_t)port)));
    }
    /* The parser checked path and query to be visible ASCII: nothing here can end the line. */
    MOAT_TRY(moat_buf_append(fields, req->path.p, req->path.len));
    if (req->query.len > 0) {
        MOAT_TRY(PUT(fields, "?"));
        MOAT_TRY(moat_buf_append(fields, req->query.p, req->query.len));
    }
    return PUT(fields, "\r\n");
}

moat_rc moat_builtin_options(const void *ctx, const struct moat_req *req, struct moat_res *res,
                             struct moat_buf *fields, struct moat_buf *body)
{
    *res = (struct moat_res){.status = 204, .fd = -1};
    return PUT(fields, "Allow: GET, HEAD, OPTIONS\r\n");
}

moat_rc moat_builtin_acme_http01(const void *ctx, const struct moat_req *req, struct moat_res *res,
                                 struct moat_buf *fields, struct moat_buf *body)
{
    const char *ka = ctx;
    size_t n = strlen(ka);
    *res = (struct moat_res){.status = 200, .fd = -1, .length = n, .has_generated_body = 1};
    MOAT_TRY(PUT(fields, "Content-Type: text/plain\r\nCache-Control: no-store\r\n"));
    return moat_buf_append(body, ka, n);
}
