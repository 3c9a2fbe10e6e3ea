/*
 * fake_transport.h: an in-memory transport (core/transport.h) for the unit tests of the
 * protocol sessions and handlers, so their states can be driven byte by byte without sockets:
 *
 *   - what the peer "sends" is queued with fake_feed(); a read takes at most `read_max` bytes
 *     of it (1 = a byte at a time) and answers MOAT_E_AGAIN when the queue is empty, or
 *     MOAT_E_CLOSED once fake_eof() was called and the queue ran dry;
 *   - what the session writes lands in `sent`; `write_room` bytes may be written before a
 *     write answers MOAT_E_AGAIN (SIZE_MAX: never blocks), so back-pressure is one assignment;
 *   - shutdown, finish and close are recorded for the test to check.
 *
 * A session that holds a pointer to its transport takes &f.t; one that embeds its transport
 * takes a copy (`c.tr = f.t`, or fake_attach): the ops find the fake through t->impl, so
 * either way reads and writes reach f (and eof, fd are set on the session's own copy).
 *
 * Header-only (static inline functions: unused ones cost no warning) because each unit test is one
 * translation unit.
 */
#ifndef MOAT_TEST_FAKE_TRANSPORT_H
#define MOAT_TEST_FAKE_TRANSPORT_H

#include "core/transport.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fake_transport {
    struct moat_transport t; /* the session holds a pointer to it, or a copy; t.impl == f */
    char *in;                /* the peer's bytes still to be read */
    size_t in_len, in_off;
    int in_eof;      /* after in: the peer closed */
    size_t read_max; /* bytes per read; 0 = as many as asked */
    char *sent;      /* everything written */
    size_t sent_len;
    size_t write_room; /* bytes writable before MOAT_E_AGAIN */
    int shut, finished, closed;
    int fail_writes; /* writes answer MOAT_E_CLOSED (a peer that reset) */
};

static inline struct fake_transport *fake_of(struct moat_transport *t)
{
    return (struct fake_transport *)t->impl;
}

static inline moat_rc fake_handshake(struct moat_transport *t, struct moat_err *err)
{
    (void)t;
    (void)err;
    return MOAT_RC_OK;
}

static inline moat_rc fake_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    struct fake_transport *f = fake_of(t);
    *n = 0;
    size_t avail = f->in_len - f->in_off;
    if (avail == 0) {
        if (f->in_eof) {
            t->eof = 1;
            return moat_rc_of(MOAT_E_CLOSED);
        }
        return moat_rc_of(MOAT_E_AGAIN);
    }
    size_t take = avail < len ? avail : len;
    if (f->read_max > 0 && take > f->read_max) {
        take = f->read_max;
    }
    memcpy(buf, f->in + f->in_off, take);
    f->in_off += take;
    *n = take;
    return MOAT_RC_OK;
}

static inline moat_rc fake_write(struct moat_transport *t, const void *buf, size_t len, size_t *n)
{
    struct fake_transport *f = fake_of(t);
    *n = 0;
    if (f->fail_writes) {
        return moat_rc_of(MOAT_E_CLOSED);
    }
    if (f->write_room == 0) {
        return moat_rc_of(MOAT_E_AGAIN);
    }
    size_t take = len < f->write_room ? len : f->write_room;
    char *grown = realloc(f->sent, f->sent_len + take + 1);
    if (grown == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    f->sent = grown;
    memcpy(f->sent + f->sent_len, buf, take);
    f->sent_len += take;
    f->sent[f->sent_len] = '\0';
    if (f->write_room != SIZE_MAX) {
        f->write_room -= take;
    }
    *n = take;
    return MOAT_RC_OK;
}

static inline void fake_idle(struct moat_transport *t)
{
    (void)t;
}

static inline void fake_shutdown(struct moat_transport *t)
{
    fake_of(t)->shut = 1;
}

static inline int fake_finish(struct moat_transport *t)
{
    struct fake_transport *f = fake_of(t);
    f->finished = 1;
    return f->in_off < f->in_len;
}

static inline void fake_close(struct moat_transport *t)
{
    fake_of(t)->closed++;
    t->fd = -1;
}

static inline int fake_pending(const struct moat_transport *t)
{
    (void)t;
    return 0;
}

static const struct moat_transport_ops fake_ops = {
    .handshake = fake_handshake,
    .read = fake_read,
    .write = fake_write,
    .idle = fake_idle,
    .shutdown = fake_shutdown,
    .finish = fake_finish,
    .close = fake_close,
    .pending = fake_pending,
};

static inline void fake_init(struct fake_transport *f)
{
    memset(f, 0, sizeof(*f));
    f->t.ops = &fake_ops;
    f->t.fd = -1;
    f->t.impl = f; /* the ops' way back to f, from f->t or from a copy of it */
    f->write_room = SIZE_MAX;
}

/* Make *t (a transport embedded in a session) a copy of f's: its reads and writes go to f. */
static inline void fake_attach(struct fake_transport *f, struct moat_transport *t)
{
    *t = f->t;
}

/* Queue bytes for the session to read. */
static inline void fake_feed(struct fake_transport *f, const void *p, size_t n)
{
    char *grown = realloc(f->in, f->in_len + n);
    if (grown == NULL) {
        abort();
    }
    f->in = grown;
    memcpy(f->in + f->in_len, p, n);
    f->in_len += n;
}

static inline void fake_feed_str(struct fake_transport *f, const char *s)
{
    fake_feed(f, s, strlen(s));
}

static inline void fake_eof(struct fake_transport *f)
{
    f->in_eof = 1;
}

/* Forget what was written so far (the next answer starts at sent[0]). */
static inline void fake_sent_reset(struct fake_transport *f)
{
    f->sent_len = 0;
    if (f->sent != NULL) {
        f->sent[0] = '\0';
    }
}

static inline void fake_free(struct fake_transport *f)
{
    free(f->in);
    free(f->sent);
    f->in = f->sent = NULL;
}

#endif
