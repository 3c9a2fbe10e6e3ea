/*
 * group.h: an upstream: the servers a proxy rule forwards to, how a request picks one of them
 * (round robin, least connections, the better of two random ones, consistent hashing on the
 * client's address, a header or a cookie; weights) and what the proxy has learnt of their
 * health (passive: failures in a row take a server out for fail_timeout; active: health.h sets
 * check_down; slow start eases a server back in).
 *
 * A group is built once per configuration snapshot and shared by every worker: its servers'
 * state is atomics (counts, deadlines), so a pick or a report takes no lock. It is reference
 * counted because connections pooled on a worker (pool.h) may outlive the snapshot that made
 * them; each holds a reference.
 */
#ifndef MOAT_UPSTREAM_GROUP_H
#define MOAT_UPSTREAM_GROUP_H

#include "core/err.h"
#include "core/slice.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MOAT_UP_MAX_SERVERS 256

enum moat_up_balance {
    MOAT_UP_ROUND_ROBIN = 0,
    MOAT_UP_LEAST_CONN,
    MOAT_UP_RANDOM_TWO,
    MOAT_UP_HASH_IP,
    MOAT_UP_HASH_HEADER,
    MOAT_UP_HASH_COOKIE,
};

/* One server as configured. */
struct moat_up_server_spec {
    const char *host;      /* name or address; NULL for a unix socket */
    const char *unix_path; /* NULL for TCP */
    unsigned port;
    int tls;
    unsigned weight; /* 1..1000 */
};

/* What a group is built from (serve/ fills it from its configuration). Strings are copied. */
struct moat_up_params {
    const char *name; /* NULL or "": an inline upstream, named by its server in logs */
    const struct moat_up_server_spec *servers;
    size_t nservers;
    enum moat_up_balance balance;
    const char *hash_key; /* header or cookie name */
    uint64_t keepalive, keepalive_ms, max_conns, queue, queue_ms;
    uint64_t max_fails, fail_timeout_ms, slow_start_ms, retries, retry_timeout_ms;
    uint64_t connect_ms, first_byte_ms, read_ms, write_ms, total_ms, tunnel_ms;
    const char *check_path; /* NULL: no active checks */
    uint64_t check_interval_ms, check_timeout_ms, check_rise, check_fall;
    unsigned check_status_lo, check_status_hi;
    const char *check_host;
    /* TLS to https servers */
    const char *ca_file;     /* NULL: the system store plus extra_ca */
    const char *extra_ca;    /* moat's local CA root, used when readable */
    const char *cert, *key;  /* client certificate; NULL: none */
    const char *sni;         /* NULL: each server's host */
    const char *const *alpn; /* offered to https servers */
    size_t nalpn;
    int proxy_protocol; /* 2: a PROXY v2 header opens each connection */
    const char *where;  /* "file:line:col" for messages */
};

struct moat_up_server {
    /* fixed */
    char name[320];      /* for logs: "127.0.0.1:8001", "unix:/run/app.sock", "https://h:443" */
    char host[256];      /* name checked on its certificate, SNI; "" for a unix socket */
    char authority[300]; /* host[:port] for `proxy_host upstream` and health checks */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int tls;
    unsigned weight;
    unsigned mx_slot; /* its counters' slot in the metrics (serve/metrics.h): set by the
                         group's maker before it is shared; 0 when nobody counts */
    /* shared by the workers */
    atomic_uint active;          /* requests in flight (least_conn) */
    atomic_uint conns;           /* open connections, busy or pooled (tests, status) */
    atomic_uint idle;            /* of them, pooled for the next request */
    atomic_uint fails;           /* failures in a row (passive) */
    _Atomic uint64_t down_until; /* passive: out until then (monotonic ms); 0: in */
    atomic_int check_down;       /* active: failing its health check */
    _Atomic uint64_t back_at;    /* when it last came back (slow start) */
    _Atomic(const char *) why;   /* words for the last failure (static), for the all-down log */
};

struct moat_up_group {
    atomic_int refs;
    uint64_t id; /* unique in the process: a pooled connection knows its group by it */
    char name[64];
    struct moat_up_params p;        /* copied; hash_key, check_path, check_host and sni are the
                                       group's own copies (the file paths are not kept) */
    struct moat_up_server *servers; /* owned, p.nservers */
    size_t n;
    SSL_CTX *ctx;       /* owned: the client context for https servers; NULL when none */
    uint16_t *schedule; /* owned: smooth weighted round robin order of server indexes */
    size_t nschedule;
    atomic_uint rr;
    struct moat_up_point *ring; /* owned: the consistent-hash ring, sorted */
    size_t nring;
    atomic_uint waiting; /* requests queued for a place below max_conns, on every worker */
};

/* Build a group: resolve every server (getaddrinfo, once, here), build the TLS context when a
 * server is https. MOAT_E_CONFIG with p->where when a name does not resolve or TLS files are
 * bad. */
MOAT_MUST_USE moat_rc moat_up_group_new(const struct moat_up_params *p, struct moat_up_group **out,
                                        struct moat_err *err);
static inline struct moat_up_group *moat_up_group_ref(struct moat_up_group *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}
void moat_up_group_unref(struct moat_up_group *g);

/*
 * A reload builds new groups; what the old ones learnt of their servers' health must not be
 * forgotten, or a reload would send traffic to a server known to be down until it fails
 * max_fails times again (or its checks fall again). For each server of `g` with the name and
 * address of one in `old` (the same upstream in the previous snapshot): its failures, its
 * passive and active verdicts and its slow start go over. The active verdict only when both
 * groups check actively (a group that no longer checks trusts passive health alone). Call
 * before `g` is published to the workers.
 */
void moat_up_group_inherit(struct moat_up_group *g, const struct moat_up_group *old);

/* What a hashing balance hashes, taken from the request by the caller. */
struct moat_up_key {
    moat_slice client_ip; /* the client's address, without the port */
    moat_slice value;     /* the header's or cookie's value; empty: none sent */
};

enum moat_up_pick_rc {
    MOAT_UP_PICKED = 0,
    MOAT_UP_NONE_UP,   /* every untried server is out (passive or active) */
    MOAT_UP_ALL_BUSY,  /* some are up but at max_conns */
    MOAT_UP_ALL_TRIED, /* the request has tried every server that is up */
};

/*
 * Choose a server for a request: `tried` (bit i: server i failed this request already, n bits)
 * is skipped. now_ms is the worker's monotonic clock. *out is the server's index, whose
 * in-flight count now includes the request: call moat_up_done when it is over.
 */
enum moat_up_pick_rc moat_up_pick(struct moat_up_group *g, const struct moat_up_key *key,
                                  const uint64_t *tried, uint64_t now_ms, size_t *out);
void moat_up_done(struct moat_up_group *g, size_t i);

/* A server is in (neither passive nor active check has it out) at now_ms. */
int moat_up_server_in(const struct moat_up_group *g, size_t i, uint64_t now_ms);

/*
 * What one exchange with server i taught: ok (an answer that is not 502/503/504) resets its
 * failures; a failure (`why`: static words) counts, and max_fails in a row take it out for
 * fail_timeout (logged once, with the reason, at WARN). conn_id for the log line.
 */
void moat_up_report(struct moat_up_group *g, size_t i, int ok, const char *why, uint64_t now_ms,
                    unsigned long long conn_id);

/* For a 503 when no server is in: seconds until the first one may be back (>= 1), and a
 * line listing each server and why it is out, for the log. */
unsigned moat_up_retry_after(const struct moat_up_group *g, uint64_t now_ms);
void moat_up_describe_down(const struct moat_up_group *g, uint64_t now_ms, char *out, size_t cap);

/* The name for log lines: the upstream's, or its server's for an inline one. */
static inline const char *moat_up_group_name(const struct moat_up_group *g)
{
    return g->name[0] != '\0' ? g->name : g->servers[0].name;
}

#endif
