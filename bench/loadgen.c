/*
 * bench/loadgen.c: the TLS load generator behind bench/compare.
 *
 * One thread, non-blocking sockets, edge-triggered epoll, OpenSSL 3. It exists so that the
 * benchmark controls exactly what the client does: whether a connection offers a session ticket
 * (and a count of the connections the server really resumed, from SSL_session_reused()), which
 * TLS 1.3 cipher suite and group are offered, and how latency is timed. Tools like h2load or wrk
 * decide some of this for themselves.
 *
 * Modes (--mode):
 *   get   one connection, one request: prints status, body length, protocol, cipher and the
 *         kind of key in the server's certificate (a sanity check before each server is measured)
 *   hs    a new connection per request ("Connection: close"), --conns at a time; without
 *         --resume the client never offers a session (SSL_SESS_CACHE_OFF, no SSL_set_session),
 *         with --resume each slot offers the newest ticket it received on its previous connection,
 *         once (RFC 8446 §C.4), and counts how many handshakes the server really resumed
 *   ka    --conns keep-alive connections, one request in flight on each; latency histogram
 *   dl    one keep-alive connection downloading --path again and again; body bytes per second
 *   idle  open --conns connections, one request each, then hold them open: prints "ready N" and
 *         waits --hold seconds so that the caller can read the server's memory
 *
 * Every mode is bounded in time (--warmup + --duration, plus a grace period) and stops by itself.
 * The result is one line of key=value pairs on stdout; bench/compare parses it. When given
 * --server-pids, the server's CPU time over the measured window is read from /proc, so the result
 * says whether the server (and not this client) was the bottleneck.
 *
 * Certificate chains are not verified (SSL_VERIFY_NONE): chain validation is a client cost that
 * would only slow the load generator down; the TLS 1.3 CertificateVerify signature is still
 * checked by OpenSSL as part of every full handshake (RFC 8446 §4.4.3).
 *
 * Client cost: under OpenSSL 3.0, parsing the server's certificate spends most of its time building
 * a provider decoder chain for the public key (OSSL_DECODER_CTX_new_for_pkey: about 40% of this
 * client's CPU per full handshake, measured with perf). With one core for the client that made
 * the load generator, not the server, the limit. x509_pubkey_decode() takes the old, direct
 * decoder instead when an ENGINE claims the key type, so unless --no-engine is given we register
 * an engine that hands back OpenSSL's own built-in EC and RSA methods: same arithmetic, no
 * decoder search. It changes nothing on the server's side of the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ENGINE is deprecated in OpenSSL 3 but is the only way to reach the fast legacy key decoding. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

enum mode { MODE_GET = 0, MODE_HS, MODE_KA, MODE_DL, MODE_IDLE };

enum cstate {
    C_FREE = 0, /* slot unused */
    C_CONNECTING,
    C_HANDSHAKE,
    C_WRITING,
    C_READING,
    C_DRAINING, /* response complete on a "Connection: close" request: wait for the server's EOF */
    C_HOLD,     /* idle mode: request done, connection kept open */
};

#define HEAD_CAP 8192
#define HIST_US 1000000 /* latency histogram: 1 us buckets up to 1 s, then one overflow bucket */
#define OP_TIMEOUT_NS (10ull * 1000000000ull)

struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    SSL_SESSION *sess;   /* resume mode: newest session received on this slot (owned) */
    uint64_t deadline;   /* ns, monotonic: the current operation fails after this */
    uint64_t t_req;      /* ns: when the current request was written */
    size_t woff;         /* bytes of the request already written */
    char head[HEAD_CAP]; /* response head being assembled */
    size_t hlen;
    bool in_body;
    bool server_close; /* the response said "Connection: close" */
    uint64_t body_left;
    int status;
};

struct opts {
    enum mode mode;
    const char *host;
    int port;
    const char *sni;
    const char *path;
    int conns;
    double warmup_s;
    double duration_s;
    double hold_s;
    bool resume;
    const char *ciphers; /* TLS 1.3 suites offered */
    const char *groups;
    const char *sigalgs;
    bool tls12;     /* allow TLS 1.2 too (default: TLS 1.3 only) */
    bool no_engine; /* parse certificates the OpenSSL 3 provider way (slow; see the top) */
    uint64_t max_requests;
    int server_pids[16];
    int n_pids;
};

struct stats {
    uint64_t done;   /* requests completed (hs: connections completed) */
    uint64_t reused; /* handshakes the server resumed */
    uint64_t fulls;  /* handshakes that were full */
    uint64_t errors;
    uint64_t bad_status;
    uint64_t reconnects; /* ka/dl: the server closed a keep-alive connection */
    uint64_t body_bytes;
};

static struct opts o = {
    .mode = MODE_GET,
    .host = "127.0.0.1",
    .port = 8443,
    .sni = "localhost",
    .path = "/",
    .conns = 1,
    .warmup_s = 0.5,
    .duration_s = 3,
    .hold_s = 5,
    .ciphers = "TLS_AES_128_GCM_SHA256",
    .groups = "X25519",
    .sigalgs = NULL,
    .max_requests = 100000000,
};

static SSL_CTX *ctx;
static int ep = -1;
static struct conn *conns;
static struct sockaddr_in addr;
static char req[512];
static size_t req_len;
static struct stats st;
static uint32_t *hist; /* measured-window latencies, ka mode */
static bool measuring;
static int conn_ex_idx = -1;
static char scratch[1 << 16];
static int errors_shown;
static char peer_key[32] = "none";
static char proto[32] = "none";
static char cipher[64] = "none";
static uint64_t last_body_len;
static uint64_t opened; /* connections opened, warm-up included */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_error(const char *what, struct conn *c)
{
    st.errors++;
    if (errors_shown < 5) {
        errors_shown++;
        unsigned long e = ERR_peek_error();
        char buf[256] = "";
        if (e != 0) {
            ERR_error_string_n(e, buf, sizeof buf);
        }
        fprintf(stderr, "loadgen: %s (fd %d, errno %d %s) %s\n", what, c ? c->fd : -1, errno,
                strerror(errno), buf);
    }
    ERR_clear_error();
}

/* Sum of utime+stime over the given processes, in seconds; -1 when one cannot be read. */
static double server_cpu_s(void)
{
    if (o.n_pids == 0) {
        return -1;
    }
    double total = 0;
    long tck = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < o.n_pids; i++) {
        char path[64], buf[2048];
        snprintf(path, sizeof path, "/proc/%d/stat", o.server_pids[i]);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            return -1;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* Fields after the command name, which is in parentheses and may hold spaces. */
        char *p = strrchr(buf, ')');
        if (p == NULL) {
            return -1;
        }
        p += 2;
        unsigned long long ut = 0, stt = 0;
        /* state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) */
        if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2) {
            return -1;
        }
        total += (double)(ut + stt) / (double)tck;
    }
    return total;
}

/*
 * CPU seconds the whole machine was busy (all CPUs, from the first line of /proc/stat), so that
 * the caller can tell how much of it went to processes other than the server and this client.
 */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return -1;
    }
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5) {
        return -1;
    }
    /* user nice system idle iowait irq softirq steal: busy is all but idle and iowait */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Resume mode: keep the newest session per slot; OpenSSL hands us a reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_ex_data(ssl, conn_ex_idx);
    if (c == NULL || !o.resume) {
        return 0;
    }
    if (c->sess != NULL) {
        SSL_SESSION_free(c->sess);
    }
    c->sess = sess;
    return 1;
}

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        if (c->st == C_DRAINING) {
            /*
             * A clean end: the response is complete. Mark the connection shut down (without
             * sending close_notify, as browsers do) so that SSL_free() does not treat the
             * session as broken and mark it not resumable (ssl_clear_bad_session), which
             * would also spoil the ticket this slot offers next.
             */
            SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    c->st = C_FREE;
}

static bool conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket", c);
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, o.sni)) {
        note_error("SSL_new", c);
        conn_close(c);
        return false;
    }
    SSL_set_connect_state(c->ssl);
    SSL_set_ex_data(c->ssl, conn_ex_idx, c);
    if (o.resume && c->sess != NULL) {
        /* RFC 8446 §C.4: a client SHOULD NOT reuse a ticket, and browsers don't (BoringSSL, NSS):
         * offer it once, then forget it. A server that sends no new ticket on a resumed
         * connection therefore gets a full handshake next time, as it would from a browser. */
        SSL_set_session(c->ssl, c->sess);
        SSL_SESSION_free(c->sess);
        c->sess = NULL;
    }
    c->hlen = 0;
    c->in_body = false;
    c->woff = 0;
    c->deadline = now_ns() + OP_TIMEOUT_NS;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        note_error("epoll_ctl", c);
        conn_close(c);
        return false;
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
        note_error("connect", c);
        conn_close(c);
        return false;
    }
    c->st = C_CONNECTING;
    return true;
}

static void record_peer(struct conn *c)
{
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    EVP_PKEY *pk = x ? X509_get0_pubkey(x) : NULL;
    if (pk != NULL) {
        snprintf(peer_key, sizeof peer_key, "%s-%d", EVP_PKEY_get0_type_name(pk),
                 EVP_PKEY_get_bits(pk));
    }
    snprintf(proto, sizeof proto, "%s", SSL_get_version(c->ssl));
    snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
}

/* Parse the head in c->head[0..end); returns false on a head we cannot use. */
static bool parse_head(struct conn *c, size_t end)
{
    if (end < 12 || memcmp(c->head, "HTTP/1.", 7) != 0) {
        return false;
    }
    c->status = (c->head[9] - '0') * 100 + (c->head[10] - '0') * 10 + (c->head[11] - '0');
    bool have_len = false;
    c->server_close = false;
    c->body_left = 0;
    const char *p = memchr(c->head, '\n', end);
    const char *lim = c->head + end;
    while (p != NULL && p + 1 < lim) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(lim - line));
        if (eol == NULL) {
            break;
        }
        size_t n = (size_t)(eol - line);
        if (n >= 15 && strncasecmp(line, "content-length:", 15) == 0) {
            char *e = NULL;
            const char *v = line + 15;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            unsigned long long len = strtoull(v, &e, 10);
            if (e == v) {
                return false;
            }
            c->body_left = len;
            have_len = true;
        } else if (n >= 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            return false; /* static answers carry Content-Length everywhere we test */
        } else if (n >= 11 && strncasecmp(line, "connection:", 11) == 0) {
            const char *v = line + 11;
            size_t vn = n - 11;
            for (size_t i = 0; i + 5 <= vn; i++) {
                if (strncasecmp(v + i, "close", 5) == 0) {
                    c->server_close = true;
                }
            }
        }
        p = eol;
    }
    if (!have_len) {
        return false;
    }
    last_body_len = c->body_left;
    return true;
}

static void start_request(struct conn *c)
{
    c->st = C_WRITING;
    c->woff = 0;
    c->hlen = 0;
    c->in_body = false;
    c->t_req = now_ns();
    c->deadline = c->t_req + OP_TIMEOUT_NS;
}

/* The response on c is complete: account for it and choose what the slot does next. */
static void response_done(struct conn *c)
{
    uint64_t t = now_ns();
    if (c->status != 200) {
        st.bad_status++;
        if (errors_shown < 5) {
            errors_shown++;
            fprintf(stderr, "loadgen: status %d\n", c->status);
        }
    }
    if (measuring) {
        st.done++;
        if (o.mode == MODE_KA && hist != NULL) {
            uint64_t us = (t - c->t_req) / 1000;
            hist[us < HIST_US ? us : HIST_US]++;
        }
    }
    switch (o.mode) {
    case MODE_HS:
        c->st = C_DRAINING;
        break;
    case MODE_IDLE:
        c->st = C_HOLD;
        c->deadline = UINT64_MAX;
        break;
    case MODE_GET:
        c->st = C_HOLD;
        break;
    case MODE_KA:
    case MODE_DL:
    default:
        if (c->server_close) {
            if (measuring) {
                st.reconnects++;
            }
            c->st = C_DRAINING;
            break;
        }
        start_request(c);
        break;
    }
}

static void handle_read(size_t n)
{
    if (measuring || o.mode == MODE_GET) {
        st.body_bytes += n;
    }
}

/*
 * Run the slot's state machine until the socket would block. Returns false when the slot was
 * closed (failure or end of a connection) so the caller may open a new one.
 */
static bool drive(struct conn *c)
{
    for (;;) {
        switch (c->st) {
        case C_CONNECTING: {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                errno = err;
                note_error("connect", c);
                conn_close(c);
                return false;
            }
            c->st = C_HANDSHAKE;
            break;
        }
        case C_HANDSHAKE: {
            ERR_clear_error();
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return true;
                }
                note_error("handshake", c);
                conn_close(c);
                return false;
            }
            if (measuring) {
                if (SSL_session_reused(c->ssl)) {
                    st.reused++;
                } else {
                    st.fulls++;
                }
            }
            if (strcmp(peer_key, "none") == 0) {
                record_peer(c);
            }
            start_request(c);
            break;
        }
        case C_WRITING: {
            size_t w = 0;
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, req + c->woff, req_len - c->woff, &w);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return true;
                }
                note_error("write", c);
                conn_close(c);
                return false;
            }
            c->woff += w;
            if (c->woff == req_len) {
                c->st = C_READING;
            }
            break;
        }
        case C_READING: {
            char *dst = c->in_body ? scratch : c->head + c->hlen;
            size_t cap = c->in_body ? sizeof scratch : HEAD_CAP - c->hlen;
            if (c->in_body && c->body_left < cap) {
                cap = (size_t)c->body_left; /* never read past the response (no pipelining) */
            }
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, dst, cap, &n);
            if (r != 1) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return true;
                }
                note_error(c->in_body ? "read (body)" : "read (head)", c);
                conn_close(c);
                return false;
            }
            if (c->in_body) {
                c->body_left -= n;
                handle_read(n);
            } else {
                c->hlen += n;
                void *end = memmem(c->head, c->hlen, "\r\n\r\n", 4);
                if (end == NULL) {
                    if (c->hlen == HEAD_CAP) {
                        note_error("response head too large", c);
                        conn_close(c);
                        return false;
                    }
                    break;
                }
                size_t hend = (size_t)((char *)end - c->head) + 4;
                if (!parse_head(c, hend)) {
                    note_error("unusable response head", c);
                    conn_close(c);
                    return false;
                }
                size_t extra = c->hlen - hend;
                if (extra > c->body_left) {
                    note_error("response longer than its Content-Length", c);
                    conn_close(c);
                    return false;
                }
                c->body_left -= extra;
                handle_read(extra);
                c->in_body = true;
            }
            if (c->body_left == 0) {
                response_done(c);
                if (c->st == C_HOLD) {
                    return true;
                }
            }
            break;
        }
        case C_DRAINING: {
            /* Wait for the server to close first, so TIME_WAIT stays on its side. */
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, scratch, sizeof scratch, &n);
            if (r == 1) {
                break; /* ignore anything after the response */
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return true;
            }
            ERR_clear_error(); /* close_notify or a bare EOF: both end the connection */
            conn_close(c);
            return false;
        }
        case C_HOLD: {
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, scratch, sizeof scratch, &n);
            if (r == 1) {
                break;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return true;
            }
            note_error("server closed an idle connection", c);
            conn_close(c);
            return false;
        }
        case C_FREE:
        default:
            return false;
        }
    }
}

/* hs: the next connection on a slot; ka/dl: replace a connection the server closed. */
static bool reopens(void)
{
    return o.mode == MODE_HS || o.mode == MODE_KA || o.mode == MODE_DL;
}

/*
 * Drive a slot and, in the modes that keep every slot busy, open its next connection when one
 * ends. A loop, because on loopback a whole resumed connection can complete inside one drive()
 * call without ever waiting for epoll; bounded, so a server that refuses at once cannot spin us.
 */
static void run_slot(struct conn *c)
{
    for (int i = 0; i < 8; i++) {
        if (drive(c) || !reopens() || !conn_open(c)) {
            return;
        }
        opened++;
    }
}

static int parse_pids(const char *s)
{
    while (*s != '\0' && o.n_pids < 16) {
        char *e = NULL;
        long v = strtol(s, &e, 10);
        if (e == s || v <= 0) {
            return -1;
        }
        o.server_pids[o.n_pids++] = (int)v;
        s = (*e == ',') ? e + 1 : e;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode get|hs|ka|dl|idle [--host IP] [--port N] [--sni NAME]\n"
            "       [--path P] [--conns N] [--warmup S] [--duration S] [--hold S] [--resume]\n"
            "       [--ciphers TLS13SUITES] [--groups G] [--sigalgs LIST] [--tls12]\n"
            "       [--max-requests N] [--server-pids PID,...] [--no-engine]\n");
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        bool takes = true;
        char *e = NULL;
        if (strcmp(a, "--resume") == 0) {
            o.resume = true;
            takes = false;
        } else if (strcmp(a, "--tls12") == 0) {
            o.tls12 = true;
            takes = false;
        } else if (strcmp(a, "--no-engine") == 0) {
            o.no_engine = true;
            takes = false;
        } else if (v == NULL) {
            usage();
            return -1;
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "get") == 0) {
                o.mode = MODE_GET;
            } else if (strcmp(v, "hs") == 0) {
                o.mode = MODE_HS;
            } else if (strcmp(v, "ka") == 0) {
                o.mode = MODE_KA;
            } else if (strcmp(v, "dl") == 0) {
                o.mode = MODE_DL;
            } else if (strcmp(v, "idle") == 0) {
                o.mode = MODE_IDLE;
            } else {
                usage();
                return -1;
            }
        } else if (strcmp(a, "--host") == 0) {
            o.host = v;
        } else if (strcmp(a, "--port") == 0) {
            o.port = (int)strtol(v, &e, 10);
        } else if (strcmp(a, "--sni") == 0) {
            o.sni = v;
        } else if (strcmp(a, "--path") == 0) {
            o.path = v;
        } else if (strcmp(a, "--conns") == 0) {
            o.conns = (int)strtol(v, &e, 10);
        } else if (strcmp(a, "--warmup") == 0) {
            o.warmup_s = strtod(v, &e);
        } else if (strcmp(a, "--duration") == 0) {
            o.duration_s = strtod(v, &e);
        } else if (strcmp(a, "--hold") == 0) {
            o.hold_s = strtod(v, &e);
        } else if (strcmp(a, "--ciphers") == 0) {
            o.ciphers = v;
        } else if (strcmp(a, "--groups") == 0) {
            o.groups = v;
        } else if (strcmp(a, "--sigalgs") == 0) {
            o.sigalgs = v;
        } else if (strcmp(a, "--max-requests") == 0) {
            o.max_requests = strtoull(v, &e, 10);
        } else if (strcmp(a, "--server-pids") == 0) {
            if (parse_pids(v) != 0) {
                usage();
                return -1;
            }
        } else {
            usage();
            return -1;
        }
        if (e != NULL && (*e != '\0' || e == v)) {
            fprintf(stderr, "loadgen: bad number for %s: %s\n", a, v);
            return -1;
        }
        if (takes) {
            i++;
        }
    }
    if (o.conns < 1 || o.conns > 100000 || o.port < 1 || o.port > 65535 || o.duration_s <= 0 ||
        o.duration_s > 600 || o.warmup_s < 0 || o.warmup_s > 60 || o.hold_s < 0 || o.hold_s > 600) {
        fprintf(stderr, "loadgen: a value is out of range\n");
        return -1;
    }
    if (o.mode == MODE_GET || o.mode == MODE_DL) {
        o.conns = 1;
    }
    return 0;
}

static int accept_any_chain(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

/* The engine's only job: claim EC and RSA keys and return OpenSSL's built-in methods for them. */
static int builtin_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
    (void)e;
    static const int list[] = {EVP_PKEY_EC, EVP_PKEY_RSA};
    if (pmeth == NULL) {
        *nids = list;
        return (int)(sizeof list / sizeof list[0]);
    }
    *pmeth = (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(nid);
    return *pmeth != NULL;
}

static int register_engine(void)
{
    ENGINE *e = ENGINE_new();
    if (e == NULL || !ENGINE_set_id(e, "moat-loadgen-builtin") ||
        !ENGINE_set_name(e, "built-in EC/RSA methods, for fast certificate parsing") ||
        !ENGINE_set_pkey_meths(e, builtin_pkey_meths) || !ENGINE_add(e) ||
        !ENGINE_register_pkey_meths(e)) {
        fprintf(stderr, "loadgen: cannot register the key engine (try --no-engine)\n");
        return -1;
    }
    ENGINE_free(e); /* ENGINE_add() keeps it in OpenSSL's list, which the table points into */
    return 0;
}

static int setup(void)
{
    if (!o.no_engine && register_engine() != 0) {
        return -1;
    }
    /* The idle mode holds thousands of sockets: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.conns + 16) {
        fprintf(stderr, "loadgen: open-file limit %llu is below --conns %d (ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, o.conns);
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address: %s\n", o.host);
        return -1;
    }
    /* Connection: close only where each connection carries one request. */
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-loadgen\r\n%s\r\n", o.path,
                     o.sni, o.mode == MODE_HS ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req) {
        fprintf(stderr, "loadgen: --path too long\n");
        return -1;
    }
    req_len = (size_t)n;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, o.tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* One read() per burst of records instead of two per record (header, then body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Even with SSL_VERIFY_NONE OpenSSL builds and checks the chain (and ignores the result);
     * this callback skips that work. The handshake signature is checked regardless. */
    SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, NULL);
    if (SSL_CTX_set_ciphersuites(ctx, o.ciphers) != 1 ||
        SSL_CTX_set1_groups_list(ctx, o.groups) != 1 ||
        (o.sigalgs != NULL && SSL_CTX_set1_sigalgs_list(ctx, o.sigalgs) != 1)) {
        fprintf(stderr, "loadgen: bad --ciphers, --groups or --sigalgs\n");
        return -1;
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    if (o.resume) {
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    conn_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)o.conns, sizeof *conns);
    if (ep < 0 || conns == NULL) {
        return -1;
    }
    for (int i = 0; i < o.conns; i++) {
        conns[i].fd = -1;
    }
    if (o.mode == MODE_KA) {
        hist = calloc(HIST_US + 1, sizeof *hist);
        if (hist == NULL) {
            return -1;
        }
    }
    return 0;
}

static double percentile_us(double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= HIST_US; i++) {
        total += hist[i];
    }
    if (total == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) {
        want = total - 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want) {
            return (double)i + 0.5; /* middle of the 1 us bucket */
        }
    }
    return HIST_US;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0 || setup() != 0) {
        return 2;
    }
    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(o.warmup_s * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(o.duration_s * 1e9);
    /* idle/get: --duration bounds the time to open everything; then hold. */
    if (o.mode == MODE_IDLE || o.mode == MODE_GET) {
        t_measure = t0;
        t_end = t0 + (uint64_t)(o.duration_s * 1e9);
    }
    measuring = (t_measure == t0);
    double cpu_srv0 = measuring ? server_cpu_s() : 0, cpu_self0 = measuring ? self_cpu_s() : 0;
    double cpu_all0 = measuring ? machine_busy_s() : 0;
    uint64_t t_m0 = t0;

    /* idle mode opens connections in waves, so the server never sees a storm of 2,000 SYNs. */
    int max_inflight = (o.mode == MODE_IDLE) ? 128 : o.conns;
    int next_idle = 0;
    if (o.mode == MODE_IDLE) {
        for (; next_idle < o.conns && next_idle < max_inflight; next_idle++) {
            conn_open(&conns[next_idle]);
            opened++;
        }
    } else {
        for (int i = 0; i < o.conns; i++) {
            conn_open(&conns[i]);
            opened++;
        }
    }
    struct epoll_event evs[256];
    bool ready_printed = false;
    uint64_t t_hold_end = 0;
    uint64_t last_sweep = t0;
    int held = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_measure) {
            measuring = true;
            memset(&st, 0, sizeof st);
            cpu_srv0 = server_cpu_s();
            cpu_self0 = self_cpu_s();
            cpu_all0 = machine_busy_s();
            t_m0 = t;
        }
        if (o.mode != MODE_IDLE && (t >= t_end || st.done >= o.max_requests)) {
            break;
        }
        if (o.mode == MODE_GET && conns[0].st == C_HOLD) {
            break;
        }
        if (o.mode == MODE_GET && conns[0].st == C_FREE) {
            break;
        }
        if (o.mode == MODE_IDLE) {
            if (!ready_printed) {
                held = 0;
                int live = 0;
                for (int i = 0; i < next_idle; i++) {
                    held += conns[i].st == C_HOLD;
                    live += conns[i].st != C_FREE;
                }
                /* Keep max_inflight connections opening until all are open or time runs out. */
                while (next_idle < o.conns && live - held < max_inflight) {
                    conn_open(&conns[next_idle++]);
                    opened++;
                    live++;
                }
                bool all_settled = next_idle == o.conns && live == held;
                if (all_settled || t >= t_end) {
                    printf("ready %d\n", held);
                    fflush(stdout);
                    ready_printed = true;
                    t_hold_end = t + (uint64_t)(o.hold_s * 1e9);
                }
            } else if (t >= t_hold_end) {
                break;
            }
        }
        int n = epoll_wait(ep, evs, 256, 50);
        if (n < 0 && errno != EINTR) {
            note_error("epoll_wait", NULL);
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == C_FREE) {
                continue;
            }
            run_slot(c);
        }
        /* Time out stuck operations, at most 10 times a second. */
        t = now_ns();
        if (t - last_sweep > 100000000ull) {
            last_sweep = t;
            for (int i = 0; i < o.conns; i++) {
                struct conn *c = &conns[i];
                if (c->st != C_FREE && c->st != C_HOLD && t > c->deadline) {
                    note_error("timeout", c);
                    conn_close(c);
                }
                if (c->st == C_FREE && reopens()) {
                    /* a slot whose last open failed, or that timed out: try again */
                    if (conn_open(c)) {
                        opened++;
                        run_slot(c);
                    }
                }
            }
        }
    }
    uint64_t t_m1 = now_ns();
    double cpu_srv1 = server_cpu_s(), cpu_self1 = self_cpu_s(), cpu_all1 = machine_busy_s();
    double secs = (double)(t_m1 - t_m0) / 1e9;

    if (o.mode == MODE_GET) {
        struct conn *c = &conns[0];
        bool ok = c->st == C_HOLD && c->status == 200;
        printf("mode=get ok=%d status=%d body=%" PRIu64 " proto=%s cipher=%s peer_key=%s "
               "resumed=%d\n",
               ok, c->status, last_body_len, proto, cipher, peer_key,
               c->ssl ? (int)SSL_session_reused(c->ssl) : 0);
        return ok ? 0 : 1;
    }
    if (o.mode == MODE_IDLE) {
        printf("mode=idle held=%d errors=%" PRIu64 " peer_key=%s\n", held, st.errors, peer_key);
        return 0;
    }
    double srv_cpu =
        (cpu_srv0 >= 0 && cpu_srv1 >= 0 && secs > 0) ? (cpu_srv1 - cpu_srv0) / secs : -1;
    double self_cpu = secs > 0 ? (cpu_self1 - cpu_self0) / secs : -1;
    /* CPUs' worth of work done by everything else during the window (other users, kernel threads).
     */
    double other_cpu = (secs > 0 && srv_cpu >= 0 && cpu_all0 >= 0 && cpu_all1 >= 0)
                           ? (cpu_all1 - cpu_all0) / secs - srv_cpu - self_cpu
                           : -1;
    printf("mode=%s conns=%d secs=%.3f done=%" PRIu64 " rate=%.1f full=%" PRIu64 " reused=%" PRIu64
           " errors=%" PRIu64 " bad_status=%" PRIu64 " reconnects=%" PRIu64 " body_bytes=%" PRIu64
           " mbps=%.1f",
           o.mode == MODE_HS   ? "hs"
           : o.mode == MODE_KA ? "ka"
                               : "dl",
           o.conns, secs, st.done, secs > 0 ? (double)st.done / secs : 0, st.fulls, st.reused,
           st.errors, st.bad_status, st.reconnects, st.body_bytes,
           secs > 0 ? (double)st.body_bytes / secs / 1e6 : 0);
    if (o.mode == MODE_KA) {
        printf(" p50_us=%.1f p99_us=%.1f", percentile_us(0.50), percentile_us(0.99));
    }
    printf(" server_cpu=%.3f client_cpu=%.3f other_cpu=%.3f proto=%s cipher=%s peer_key=%s "
           "opened=%" PRIu64 "\n",
           srv_cpu, self_cpu, other_cpu, proto, cipher, peer_key, opened);
    return 0;
}
