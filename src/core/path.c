/*
 * path.c: percent-decoding and dot-segment removal for request paths (see path.h).
 *
 * One pass over the input: each segment is decoded straight into the output, then judged.
 * "." is dropped, ".." removes the previous output segment, an empty segment ("//") is dropped,
 * anything else stays. Judging the decoded segment is the point: a check on the raw bytes would
 * miss "%2e%2e", ".%2e" and "%2e." (the classic traversal bypasses).
 */
#include "core/path.h"

#include <stdint.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Bytes no file name served over HTTP may hold: control characters and DEL could smuggle
 * terminal escapes or line breaks into logs; a backslash is a separator on Windows shares and
 * in many tools, so "a\..\b" would be a traversal one layer further down. */
static int byte_refused(unsigned char c)
{
    return c < 0x20 || c == 0x7F || c == '\\';
}

moat_rc moat_path_normalize(const char *in, size_t len, char *out, size_t outcap, size_t *outlen)
{
    *outlen = 0;
    MOAT_ENSURE(in != NULL && out != NULL, MOAT_E_INTERNAL);
    /* RFC 9112 §3.2.1: origin-form is absolute-path, which starts with "/". */
    MOAT_ENSURE(len > 0 && in[0] == '/', MOAT_E_PEER);
    MOAT_ENSURE(outcap >= 2, MOAT_E_LIMIT);

    /* Invariant at the top of each segment: out[0..w) starts and ends with "/". */
    size_t w = 0;
    out[w++] = '/';
    size_t i = 1;
    for (;;) {
        size_t seg = w;
        while (i < len && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];
            if (c == '%') {
                MOAT_ENSURE(len - i >= 3, MOAT_E_PEER);
                int hi = hex_value((unsigned char)in[i + 1]);
                int lo = hex_value((unsigned char)in[i + 2]);
                MOAT_ENSURE(hi >= 0 && lo >= 0, MOAT_E_PEER);
                c = (unsigned char)(hi * 16 + lo);
                /* An encoded "/" would be a separator the check above never saw. */
                MOAT_ENSURE(c != '/', MOAT_E_PEER);
                i += 3;
            } else {
                i++;
            }
            MOAT_ENSURE(!byte_refused(c), MOAT_E_PEER);
            /* Keep one byte for the NUL. */
            MOAT_ENSURE(w + 1 < outcap, MOAT_E_LIMIT);
            out[w++] = (char)c;
        }
        size_t seglen = w - seg;
        int last = i >= len;
        if (seglen == 1 && out[seg] == '.') {
            w = seg;
        } else if (seglen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            /* Refuse rather than clamp: "/../etc/passwd" is an attack, not a typo. */
            MOAT_ENSURE(seg > 1, MOAT_E_PEER);
            w = seg - 1; /* drop the "/" that ends the previous segment */
            while (out[w - 1] != '/') {
                w--;
            }
        } else if (seglen > 0 && !last) {
            MOAT_ENSURE(w + 1 < outcap, MOAT_E_LIMIT);
            out[w++] = '/';
        }
        if (last) {
            break;
        }
        i++; /* the "/" */
    }
    out[w] = '\0';
    *outlen = w;
    return MOAT_RC_OK;
}
