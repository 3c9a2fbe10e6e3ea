/* filter.c: see filter.h. */
#include "http/filter.h"

static struct moat_exch_filter *filter_of(struct moat_exch *ex)
{
    return (struct moat_exch_filter *)ex; /* ex is the first member */
}

moat_rc moat_filter_read_body(struct moat_exch *ex, void *buf, size_t len, size_t *n)
{
    struct moat_exch_filter *f = filter_of(ex);
    moat_rc rc = moat_exch_read_body(f->inner, buf, len, n);
    if (!moat_ok(rc) && rc.kind != MOAT_E_AGAIN) {
        f->destroy(f); /* the session ended the exchange; the handler lets go of it too */
    }
    return rc;
}

size_t moat_filter_room(struct moat_exch *ex)
{
    return moat_exch_room(filter_of(ex)->inner);
}

const struct moat_buf *moat_filter_trailers(struct moat_exch *ex)
{
    return moat_exch_trailers(filter_of(ex)->inner);
}

void moat_filter_fail(struct moat_exch *ex, int status)
{
    struct moat_exch_filter *f = filter_of(ex);
    struct moat_exch *inner = f->inner;
    f->destroy(f);
    moat_exch_fail(inner, status);
}

static void f_ready(void *h)
{
    struct moat_exch_filter *f = h;
    f->hops->ready(f->hh); /* f may be gone after this */
}

static void f_abort(void *h)
{
    struct moat_exch_filter *f = h;
    f->hops->abort(f->hh);
    f->destroy(f);
}

static const struct moat_stream_ops filter_stream_ops = {.ready = f_ready, .abort = f_abort};

void moat_filter_adopt(struct moat_exch_filter *f, struct moat_res *res)
{
    if (f == NULL) {
        return;
    }
    if (res->stream == NULL) {
        f->destroy(f);
        return;
    }
    f->hops = res->stream;
    f->hh = res->stream_h;
    res->stream = &filter_stream_ops;
    res->stream_h = f;
}
