/*
 * trace.h: the recorder of what crossed the wire during one client connection.
 *
 * OpenSSL's message callback (SSL_set_msg_callback) reports every handshake message, alert and
 * ChangeCipherSpec in order, in both directions, as OpenSSL parses or writes them; a callback on
 * the socket BIO counts the raw bytes and keeps the first bytes the server sent (which tell a
 * plain-HTTP answer from a TLS one). The recorder stores these facts with their time; deciding
 * what they mean (which were encrypted, why a handshake failed) is done afterwards, on the whole
 * list, by moat_trace_finish and the classifier in get.c.
 */
#ifndef MOAT_CLIENT_TRACE_H
#define MOAT_CLIENT_TRACE_H

#include "core/err.h"
#include "core/transport.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

enum moat_trace_dir {
    MOAT_TRACE_OUT = 0, /* client to server */
    MOAT_TRACE_IN = 1   /* server to client */
};

/* One TLS message as OpenSSL reported it. */
struct moat_trace_msg {
    double ms; /* since the connection's start (before DNS) */
    enum moat_trace_dir dir;
    int content_type;   /* 20 ChangeCipherSpec, 21 alert, 22 handshake (RFC 8446 §5.1) */
    int hs_type;        /* handshake type (RFC 8446 §4), -1 for CCS and alerts */
    int alert_level;    /* 1 warning, 2 fatal; alerts only */
    int alert_desc;     /* alert description (RFC 8446 §6), alerts only */
    size_t len;         /* message bytes, handshake header included */
    int hrr;            /* a ServerHello that is really a HelloRetryRequest (RFC 8446 §4.1.4) */
    int encrypted;      /* filled by moat_trace_finish: sent under record protection */
    int post_handshake; /* filled by moat_trace_finish: after both Finished messages */
    int from_header;    /* seen as a record header only (a received ChangeCipherSpec) */
};

#define MOAT_TRACE_FIRST_BYTES 64

struct moat_trace {
    struct moat_trace_msg *msgs; /* owned; [0, n) valid */
    size_t n, cap;
    double t0_ms;                 /* CLOCK_MONOTONIC of the connection's start, in ms */
    uint64_t bytes_in, bytes_out; /* raw TCP payload bytes */
    unsigned char first_in[MOAT_TRACE_FIRST_BYTES]; /* the first bytes the server sent */
    size_t nfirst_in;
    double first_in_ms; /* when they arrived; 0 when nothing came */
    int nomem;          /* a message could not be stored (the list is incomplete) */
};

/* Milliseconds on CLOCK_MONOTONIC. */
double moat_trace_now_ms(void);

/* Start recording: t0 is now. */
void moat_trace_init(struct moat_trace *t);
/* Free the messages; the struct can be initialised again. */
void moat_trace_clear(struct moat_trace *t);
/* Milliseconds since t0. */
double moat_trace_elapsed(const struct moat_trace *t);

/* Attach the recorder to `ssl`: the message callback and a callback on its read and write BIOs
 * (set the BIOs first). `t` must outlive the SSL's use. */
void moat_trace_attach(struct moat_trace *t, SSL *ssl);
/* Attach the recorder to a plain transport (http://): its reads and writes are noted as they
 * pass (a TLS transport is left alone: attach its SSL instead). `t` must outlive io's use. */
void moat_trace_attach_plain(struct moat_trace *t, struct moat_transport *io);
/* Count and keep the first bytes of data received without TLS (plain http://). */
void moat_trace_note_plain_in(struct moat_trace *t, const void *p, size_t n);
void moat_trace_note_plain_out(struct moat_trace *t, size_t n);

/*
 * Mark which messages travelled encrypted, now that the version is known (`version`:
 * TLS1_2_VERSION, TLS1_3_VERSION or 0 when no ServerHello arrived). TLS 1.3 protects everything
 * after the (non-HRR) ServerHello except ChangeCipherSpec (RFC 8446 §2, §5); TLS 1.2 protects a
 * direction after that side's ChangeCipherSpec (RFC 5246 §7.1). Also marks the messages after
 * both Finished as post-handshake (NewSessionTicket, KeyUpdate, late alerts).
 */
void moat_trace_finish(struct moat_trace *t, int version);

/* Queries used by the classifier. Each returns the first matching message or NULL. */
const struct moat_trace_msg *moat_trace_find_hs(const struct moat_trace *t, enum moat_trace_dir d,
                                                int hs_type);
/* The first alert in direction d (usually the fatal one that ended the connection). */
const struct moat_trace_msg *moat_trace_find_alert(const struct moat_trace *t,
                                                   enum moat_trace_dir d);

/* "ClientHello", "HelloRetryRequest", "Finished"...; "handshake type N" for unknown types
 * (written into buf, which then must hold 24 bytes). */
const char *moat_trace_hs_name(int hs_type, int hrr, char *buf, size_t buflen);
/* RFC 8446 §6 alert names ("handshake_failure"); "alert N" for unknown ones. */
const char *moat_trace_alert_name(int desc, char *buf, size_t buflen);
/* Plain words for an alert the server sent, e.g. "the server does not know the CA that
 * issued the client certificate"; NULL when there is nothing to add to its name. */
const char *moat_trace_alert_words(int desc);

#endif
