/*
 * source.c: the certificate source interface (see source.h): calls through the ops, so a
 * caller holds a `struct moat_cert_source *` and never knows which implementation it has.
 */
#include "cert/source.h"

moat_rc moat_cert_source_load(struct moat_cert_source *src, struct moat_tls_certset **out,
                              struct moat_err *err)
{
    *out = NULL;
    MOAT_ENSURE_REF(src);
    return src->ops->load(src, out, err);
}

moat_rc moat_cert_source_describe(struct moat_cert_source *src, struct moat_tls_certset **out,
                                  struct moat_err *err)
{
    *out = NULL;
    MOAT_ENSURE_REF(src);
    return src->ops->describe(src, out, err);
}

time_t moat_cert_source_renew_at(const struct moat_cert_source *src, time_t not_before,
                                 time_t not_after)
{
    return src != NULL ? src->ops->renew_at(src, not_before, not_after) : 0;
}

void moat_cert_source_free(struct moat_cert_source *src)
{
    if (src != NULL) {
        src->ops->free(src);
    }
}
