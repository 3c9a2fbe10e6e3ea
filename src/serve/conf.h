/*
 * conf.h: moat's configuration as plain data.
 *
 * moat_conf_load/parse read a file with core/cfg and check every directive (see
 * docs/config.md), so the server gets values it can use without checking again; a mistake
 * is reported at "file:line:col" with the fix. The CLI builds the same struct from flags with
 * moat_conf_new + moat_conf_set_listen + moat_conf_add_site. Nothing here opens sockets or
 * touches OpenSSL: the server turns this into a snapshot (SSL_CTXs, listeners) afterwards.
 *
 * Every pointer in these structs is owned by the struct moat_conf and freed by moat_conf_free.
 */
#ifndef MOAT_SERVE_CONF_H
#define MOAT_SERVE_CONF_H

#include "core/err.h"

#include "core/cidr.h"
#include "core/gcra.h"

#include <stddef.h>
#include <stdint.h>

enum moat_log_format {
    MOAT_LOG_COMBINED = 0,
    MOAT_LOG_JSON,
};

enum moat_log_level {
    MOAT_LOG_ERROR = 0,
    MOAT_LOG_WARN,
    MOAT_LOG_INFO,
    MOAT_LOG_DEBUG,
};

#define MOAT_CONF_WHERE_MAX 300
#define MOAT_CONF_MAX_FIELDS 256 /* hard ceiling for max_fields (limits { header_fields }) */

struct moat_conf_cert {
    char *cert_path; /* resolved against the config file's folder */
    char *key_path;
    char where[MOAT_CONF_WHERE_MAX]; /* "file:line:col" of the cert directive, for messages */
};

/* `client_path PREFIX [PATTERN...]`: requests under PREFIX (a decoded, normalised path prefix
 * matched at segment boundaries) need a verified client certificate, matching one of the
 * patterns when there are any. */
struct moat_conf_client_path {
    char *prefix;
    char **allow;
    size_t nallow;
};

/* `header [/PREFIX] set|add|remove NAME [VALUE]` (see serve/headers.h for what it does). */
struct moat_conf_header {
    char *prefix; /* normalised path prefix without trailing '/', or NULL for the whole site */
    int op;       /* enum moat_hdr_op */
    char *name;   /* as written */
    char *value;  /* NULL for remove */
    int request;  /* `request_header`: the rule is for requests to upstream servers */
};

/* `crl_publish PATH CA_DIR [intermediate|root]`: a CA's CRL served at PATH, on the HTTPS
 * listeners and the plain redirect_http one (see serve/crlpub.h and docs/config.md). */
struct moat_conf_crl_publish {
    char *path;   /* percent-decoded and normalised URL path: "/crl/intermediate.crl" */
    char *ca_dir; /* resolved against the config's folder; NULL: moat's local CA (`local`) */
    int root;     /* 1: the root's CRL (root-crl.pem); 0: the intermediate's (crl.pem) */
    char where[MOAT_CONF_WHERE_MAX]; /* "file:line:col" of its CA_DIR word, for messages */
};

/* The `acme { }` block: how sites with `tls acme` get their certificates. */
enum moat_conf_acme_key {
    MOAT_CONF_ACME_ECDSA = 1, /* bits: which kinds each ACME site gets */
    MOAT_CONF_ACME_RSA = 2,
};

struct moat_conf_acme {
    char **cas; /* directory URLs ("production", "staging" or https://); the first is used,
                   the others in order when it keeps failing; default {"production"} */
    size_t ncas;
    char *ca_bundle; /* roots for the CAs' own HTTPS; NULL: the system store */
    char **emails;   /* account contacts */
    size_t nemails;
    int agree_tos;            /* the operator agreed to the CA's terms */
    char *eab_kid, *eab_hmac; /* External Account Binding; NULL: none */
    int key_types;            /* enum moat_conf_acme_key bits; default ECDSA */
    char **challenges;        /* in order of preference; none: what can work */
    size_t nchallenges;
    char *dns_server; /* DNS-01 by RFC 2136 updates to this ADDR[:PORT] */
    char *dns_zone;   /* the zone to update; NULL: found */
    char *dns_key_name, *dns_key_alg, *dns_key_secret; /* TSIG; NULL: unsigned */
    char *dns_hook;   /* or DNS-01 by this command (set|clear FQDN VALUE) */
    char **dns_check; /* servers to check before telling the CA; none: NS */
    size_t ndns_check;
    char *resolver;                  /* for the pre-flight checks; NULL: the system's */
    int preflight;                   /* checks before each order; default 1 */
    uint64_t retry_s, retry_max_s;   /* the first pause after a failure and its cap; 0:
                                        the manager's defaults (1m, 6h) */
    char *preferred_chain;           /* issuer name; NULL: the CA's default chain */
    char *profile;                   /* the CA's profile; NULL: none */
    char where[MOAT_CONF_WHERE_MAX]; /* of the block, for messages; "" when there is none */
};

/* `upstream NAME { ... }` (docs/proxy.md#upstreams): servers and how requests are spread over
 * them. A site's inline `proxy http://HOST:PORT` is an upstream without a name. */
enum moat_conf_balance {
    MOAT_CONF_BAL_ROUND_ROBIN = 0,
    MOAT_CONF_BAL_LEAST_CONN,
    MOAT_CONF_BAL_RANDOM_TWO,
    MOAT_CONF_BAL_HASH_IP,
    MOAT_CONF_BAL_HASH_HEADER,
    MOAT_CONF_BAL_HASH_COOKIE,
};

struct moat_conf_upstream_server {
    char *host;      /* name or address; NULL for a unix socket */
    char *unix_path; /* `unix:/path`; NULL for TCP */
    unsigned port;
    int tls; /* https:// */
    unsigned weight;
    char where[MOAT_CONF_WHERE_MAX];
};

struct moat_conf_upstream {
    char *name; /* NULL: a site's inline upstream */
    struct moat_conf_upstream_server *servers;
    size_t nservers;
    enum moat_conf_balance balance;
    char *hash_key;             /* the header or cookie name of hash header|cookie */
    uint64_t keepalive;         /* idle connections kept per worker and server; default 32 */
    uint64_t keepalive_ms;      /* how long one stays idle; default 60s */
    uint64_t max_conns;         /* per server, all workers; 0 = no limit (default) */
    uint64_t queue;             /* requests waiting for a connection, per worker; default 0 */
    uint64_t queue_ms;          /* how long one may wait; default 10s */
    uint64_t max_fails;         /* passive: failures in a row that take a server out; 1 */
    uint64_t fail_timeout_ms;   /* out for this long; default 10s */
    uint64_t slow_start_ms;     /* a server coming back takes a growing share; 0 = off */
    uint64_t retries;           /* further tries of a request that failed before an answer; 2 */
    uint64_t retry_timeout_ms;  /* all tries of one request end by then; 0 = no limit */
    uint64_t connect_ms;        /* default 10s */
    uint64_t first_byte_ms;     /* after the request was sent; default 60s */
    uint64_t read_ms, write_ms; /* between reads / writes; default 60s */
    uint64_t total_ms;          /* whole exchange; 0 = off */
    uint64_t tunnel_ms;         /* a tunnel (WebSocket) idle both ways; default 1h */
    char *check_path;           /* active health checks: GET this path; NULL = none */
    uint64_t check_interval_ms, check_timeout_ms, check_rise, check_fall; /* 5s 2s 2 3 */
    unsigned check_status_lo, check_status_hi; /* accepted statuses; default 200-399 */
    char *check_host;                          /* Host of a check; NULL: the server's */
    char *ca;                                  /* CA file for https servers; NULL: system + local */
    char *cert, *key;                          /* client certificate for https servers */
    char *sni;                                 /* name sent and checked; NULL: the server's host */
    int proxy_protocol;                        /* 2: send a PROXY v2 header first */
    int stream;                                /* a stream's inline target: TLS without ALPN */
    char where[MOAT_CONF_WHERE_MAX];
};

/* `proxy [/PREFIX] UPSTREAM|URL [strip | rewrite /NEW]`: where a site's requests go. */
struct moat_conf_proxy_rule {
    char *prefix;   /* normalised path prefix without trailing '/', NULL: the whole site */
    char *upstream; /* the name of an upstream block; NULL: `inline` */
    size_t index;   /* resolved: c->upstreams[index] */
    int strip;      /* remove the prefix from the path */
    char *rewrite;  /* replace the prefix with this ("/v2"); NULL: keep */
    char where[MOAT_CONF_WHERE_MAX];
};

#define MOAT_CONF_GUARD_CONNS 1u /* address_connections */
#define MOAT_CONF_GUARD_NEW 2u   /* address_new_connections */
#define MOAT_CONF_GUARD_HS 4u    /* address_handshakes */
#define MOAT_CONF_GUARD_H2 8u    /* http2_requests */

/* One `allow` or `deny` line's range (docs/limits.md): the first that matches decides. */
struct moat_conf_acl {
    struct moat_cidr range;
    int allow;
};

enum moat_conf_limit_by {
    MOAT_CONF_LIMIT_BY_IP = 0,
    MOAT_CONF_LIMIT_BY_HEADER,
    MOAT_CONF_LIMIT_BY_COOKIE,
};

/* A site's `limit [/PREFIX] RATE [burst B] [by ip|header NAME|cookie NAME]`. */
struct moat_conf_limit {
    char *prefix; /* normalised, without trailing '/'; NULL: the whole site */
    struct moat_rate rate;
    enum moat_conf_limit_by by;
    char *key_name; /* the header (lower case) or cookie name; NULL for ip */
    char where[MOAT_CONF_WHERE_MAX];
};

#define MOAT_CACHE_KEY_SCHEME 1u
#define MOAT_CACHE_KEY_HOST 2u
#define MOAT_CACHE_KEY_QUERY 4u
#define MOAT_CACHE_KEY_DEFAULT (MOAT_CACHE_KEY_SCHEME | MOAT_CACHE_KEY_HOST | MOAT_CACHE_KEY_QUERY)

struct moat_conf_site {
    /* Lower-cased, distinct across all sites: "example.com", "*.example.com" (wildcard covers
     * exactly one label), "127.0.0.1", "::1" (IPv6 in RFC 5952 form, no brackets), or "*"
     * (the default site: any name, and clients that send no SNI). */
    char **names;
    size_t nnames;
    /* 0 certs: the local CA issues one (allowed for any name; warning about it is the
     * server's job). More than one: e.g. an ECDSA and an RSA certificate for the same names. */
    struct moat_conf_cert *certs;
    size_t ncerts;
    /* `cert_ca`: CA files (paths resolved) the certificates must lead to, checked at start;
     * none: an issuer moat cannot find is only a warning. Needs ncerts > 0. */
    char **cert_ca;
    size_t ncert_ca;
    char *root;              /* folder served, resolved against the config file's folder */
    char *index;             /* file name tried for a folder; default "index.html" */
    int listing;             /* list folders without an index; default 0 */
    int hsts;                /* -1 auto (see moat_conf_site_hsts), 0 off, 1 on */
    uint64_t hsts_max_age_s; /* default 31536000 (1y) */
    int hsts_subdomains, hsts_preload;
    char where[MOAT_CONF_WHERE_MAX]; /* "file:line:col" of the site directive, or "command line" */

    /* Mutual TLS (see docs/config.md). */
    int client_auth;  /* 0 off (default), 1 optional, 2 require */
    char **client_ca; /* CA files for client certificates (paths resolved) */
    size_t nclient_ca;
    char **client_crl; /* CRL files, reloaded with the configuration */
    size_t nclient_crl;
    unsigned client_depth; /* chain depth; 0 = default (4) */
    char **client_allow;   /* site-wide identity patterns; none = any verified client */
    size_t nclient_allow;
    struct moat_conf_client_path *client_paths; /* path prefixes that need a certificate */
    size_t nclient_paths;

    /* Reverse proxy: `proxy` rules; these three apply to the site's inline upstreams. */
    char *proxy_ca;               /* CA file to verify an https origin (default: system + local) */
    char *proxy_cert, *proxy_key; /* client certificate presented to the origin */
    uint64_t proxy_timeout_ms;    /* connect / first byte / between reads; 0: the defaults */
    char *client_header_prefix;   /* identity headers to the origin; default "X-Client-" */
    struct moat_conf_proxy_rule *proxies; /* `proxy` rules in file order */
    size_t nproxies;
    int proxy_host_mode; /* Host sent upstream: 0 the client's (default), 1 the server's,
                            2 proxy_host_value */
    char *proxy_host_value;

    struct moat_conf_header *headers; /* `header` rules in file order */
    size_t nheaders;
    struct moat_conf_crl_publish *crl_publish; /* CRLs this site publishes; distinct paths */
    size_t ncrl_publish;

    int http2;                 /* `http2 on|off`: -1 as the top level says (default), 0 off, 1 on */
    struct moat_conf_acl *acl; /* `allow` / `deny` in file order; none: everyone */
    size_t nacl;
    struct moat_conf_limit *limits; /* `limit` rules in file order */
    size_t nlimits;
    /* Compression (docs/encode.md): `encode` codings (enum moat_coding) best first; none:
     * off. The others -1 (or NULL) when not written. */
    unsigned char encode[3];
    size_t nencode;
    int encode_set;
    char **encode_types;
    size_t nencode_types;
    int64_t encode_min;
    int encode_level[4]; /* by enum moat_coding */
    int encode_precompressed;
    /* The HTTP cache (docs/cache.md): `cache on` (1), off (0, the default), or on under
     * `cache /PREFIX...`; who may PURGE. */
    int cache;
    char **cache_prefixes;
    size_t ncache_prefixes;
    char **cache_purge;
    size_t ncache_purge;
    /* `cache_key`: what names a stored answer besides the path (MOAT_CACHE_KEY_* bits; the
     * default is scheme, host and query), and the request fields and cookies that join it
     * ("h:name" / "c:name", names lower case). */
    unsigned cache_key;
    char **cache_key_extra;
    size_t ncache_key_extra;
    int acme;            /* `tls acme`: certificates from the ACME CA of the acme { } block */
    unsigned acme_kinds; /* with acme: the acme { } block's key_type bits (1 << kind) */
};

/* `stream NAME { ... }` (docs/proxy.md#streams): a TCP listener whose bytes go to a target,
 * with TLS terminated, passed through or off. */
enum moat_conf_stream_tls {
    MOAT_CONF_STREAM_TERMINATE = 0,
    MOAT_CONF_STREAM_PASSTHROUGH,
    MOAT_CONF_STREAM_PLAIN,
};

enum moat_conf_starttls {
    MOAT_CONF_STARTTLS_NONE = 0,
    MOAT_CONF_STARTTLS_SMTP,     /* RFC 3207 */
    MOAT_CONF_STARTTLS_POSTGRES, /* SSLRequest */
};

struct moat_conf_stream_route {
    char *sni;      /* lower case; "*.example.com" for one label; NULL: the default (proxy) */
    char *upstream; /* the name of an upstream block, or NULL for an inline target */
    size_t index;   /* resolved: c->upstreams[index] */
    char where[MOAT_CONF_WHERE_MAX];
};

struct moat_conf_stream {
    char *name;
    char **listen;
    size_t nlisten;
    enum moat_conf_stream_tls tls;
    enum moat_conf_starttls starttls;
    /* The TLS side as a site holds it: names (for the local CA and SNI), certs, client_auth,
     * client_ca, client_crl, client_depth; nothing else of it is used. */
    struct moat_conf_site id;
    struct moat_conf_stream_route *routes;
    size_t nroutes;
    char *ca;                                   /* for tls:// targets; NULL: system + local CA */
    uint64_t handshake_ms, connect_ms, idle_ms; /* 10s 10s 1h */
    char where[MOAT_CONF_WHERE_MAX];
};

/* `cluster { }` (docs/cluster.md): nodes that share ticket keys through one Redis. */
struct moat_conf_cluster {
    char *redis;                     /* "HOST:PORT" or "unix:/PATH" */
    int tls;                         /* rediss:// : TLS, the server's certificate verified */
    char *ca;                        /* the CA file for that; NULL: the system's trust */
    char *server_name;               /* the name on its certificate; NULL: the host of `redis` */
    char *user;                      /* ACL user; NULL: the default one */
    char *password;                  /* from password_file; cleansed when freed; NULL: no AUTH */
    char *prefix;                    /* of every key moat writes; default "moat:" */
    uint64_t timeout_ms;             /* connect, each read and write; default 1s */
    unsigned char secret[32];        /* from secret_file (HKDF): seals what goes to Redis */
    char where[MOAT_CONF_WHERE_MAX]; /* "file:line:col" of the block, for messages */
    int line, col;
};

struct moat_conf {
    char *path;            /* the config file, or NULL when built from flags/text */
    char **listen;         /* "127.0.0.1:8443", "[::1]:8443", "localhost:8443", ":8443" */
    size_t nlisten;        /* >= 1; default {"127.0.0.1:8443"} */
    char *redirect_listen; /* plain HTTP listener answering 308 to https; NULL = none */
    unsigned workers;      /* 0 = one per core */
    char *state_dir;       /* NULL = $MOAT_STATE, else ~/.local/share/moat (server decides) */
    char *user, *group;    /* `user NAME [GROUP]`: who serves when started as root; NULL = none */
    /* The admin listener (docs/config.md, "admin"): NULL = the unix socket admin.sock in the state
     * folder; "off"; "unix:/abs/path"; "HOST:PORT" (loopback, with admin_token). */
    char *admin;
    char *admin_token; /* a TCP listener's token, read from its file; cleansed when freed */
    char *access_log;  /* "stdout", "off" or a path; default "off" */
    enum moat_log_format access_format; /* default combined */
    char *error_log;                    /* "stderr" or a path; default "stderr" */
    enum moat_log_level log_level;      /* default info */
    uint64_t head_timeout_ms, idle_timeout_ms, body_timeout_ms, write_timeout_ms, drain_timeout_ms,
        handshake_timeout_ms; /* 10s 60s 30s 30s 10s 10s */
    uint64_t max_line_bytes;  /* request line; default 8192; <= max_head_bytes */
    uint64_t max_head_bytes;  /* whole request head; default 32768 */
    uint64_t max_fields;      /* header fields per request; default 100, <= 256 */
    uint64_t max_body_bytes;  /* default 1 MiB */
    uint64_t max_conns;       /* per worker; default 10000 */
    uint64_t max_requests;    /* requests on one connection before it closes; default 10000 */
    /* Bytes per second a request body or a response must average, counted from its start after
     * a grace of the body (write) timeout: a trickle cannot hold a connection. 0 = off; 1k. */
    uint64_t min_rate;
    uint64_t file_cache;          /* open files kept per worker; default 1000; 0 = off */
    uint64_t file_cache_valid_ms; /* how long a kept file is trusted unchecked; default 1s */
    /* HTTP/2 (docs/config.md#http2-onoff-address): on for every TLS listener by default. */
    int http2;               /* default 1 */
    char **http2_off_listen; /* listen addresses that offer only HTTP/1 */
    size_t nhttp2_off_listen;
    uint64_t h2_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS; default 100 */
    uint64_t h2_hpack;        /* SETTINGS_HEADER_TABLE_SIZE; default 4096 */
    uint64_t h2_window;       /* a stream's receive window; default 256 KiB */
    uint64_t h2_frames;       /* control frames per second; default 1000 */
    uint64_t h2_resets;       /* stream cancellations per second; default 100 */
    int tickets;              /* TLS session tickets; default 1 */
    int ktls;                 /* kernel TLS where the machine has it (read at start); default 0 */
    uint64_t ticket_rotate_s; /* ticket key lifetime; default 3600 */
    uint64_t session_cache;   /* server-side session cache entries; default 20480; 0 = off */
    char **trust;             /* CA files this machine knows, for every site's start-up chain
                                 check (never for clients); see also a site's cert_ca */
    size_t ntrust;
    struct moat_conf_acme acme;
    struct moat_conf_upstream *upstreams; /* named blocks first come as written; inline ones
                                             are added by the sites that have them */
    size_t nupstreams;
    /* `trusted_proxies CIDR...`: peers whose X-Forwarded-* / Forwarded fields are kept (and
     * appended to), and who may send a PROXY protocol header */
    char **trusted_proxies;
    size_t ntrusted_proxies;
    /* Abuse protection (docs/limits.md): per client address (an IPv6 one by its /ipv6_prefix),
     * counted before the TLS handshake; 0 / n == 0: off. */
    uint64_t addr_conns;             /* open connections per address; default 512 */
    struct moat_rate addr_new;       /* new connections; default 200/s burst 1000 */
    struct moat_rate addr_hs;        /* TLS handshakes; default 100/s burst 1000 */
    int64_t total_conns;             /* all workers; -1 auto (default): from the fd limit; 0 off */
    struct moat_rate h2_requests;    /* streams per HTTP/2 connection; 1000/s burst 2000 */
    uint64_t addr_table;             /* keys the limiter tracks; default 65536 */
    uint64_t ipv6_prefix;            /* bits of an IPv6 address that make one client; 64 */
    uint64_t cache_memory;           /* the cache's bytes; default 64m */
    uint64_t cache_max_object;       /* the largest answer it stores; default 8m */
    uint64_t cache_heuristic;        /* percent of the age of Last-Modified; default 10 */
    uint64_t cache_heuristic_max_ms; /* default 1d */
    uint64_t cache_lock_timeout_ms;  /* how long a miss waits on another for its key; 5s */
    char *cache_disk;                /* the disk tier's folder; NULL: none */
    uint64_t cache_disk_size;        /* its bound in bytes */
    struct moat_conf_acl *acl;       /* top-level `allow` / `deny`: refused at accept */
    size_t nacl;
    /* `exempt CIDR...|none`: addresses no per-address limit applies to. Without the line,
     * loopback is exempt from the limits left at their defaults (a benchmark or health check
     * on the machine itself is no attacker); a limit that is written applies to it too. */
    struct moat_cidr *exempt;
    size_t nexempt;
    int exempt_set;
    unsigned guard_written;       /* MOAT_CONF_GUARD_* bits: the limits the file sets */
    char **proxy_protocol_listen; /* listen addresses that expect a PROXY protocol header */
    size_t nproxy_protocol_listen;
    struct moat_conf_stream *streams;
    size_t nstreams;
    struct moat_conf_cluster *cluster; /* NULL: a node of its own */
    struct moat_conf_site *sites;
    size_t nsites;
};

/* A configuration holding the defaults above and no site; NULL when out of memory. */
struct moat_conf *moat_conf_new(void);
/* Free everything; NULL does nothing. */
void moat_conf_free(struct moat_conf *c);

/*
 * Read and check the config file at `path`; relative paths inside it resolve against the
 * file's folder. On success *out is a new configuration (c->path = path) for the caller to free.
 * On failure *out is NULL and err says where and what: MOAT_E_IO (cannot read), MOAT_E_CONFIG
 * (where = "file:line:col", or the file name for "no site"), MOAT_E_NOMEM.
 */
MOAT_MUST_USE moat_rc moat_conf_load(const char *path, struct moat_conf **out,
                                     struct moat_err *err);

/*
 * Same, from `len` bytes of `text` named `name` in messages. Relative paths resolve against
 * `base_dir` (NULL or "": left as written). c->path stays NULL.
 */
MOAT_MUST_USE moat_rc moat_conf_parse(const char *name, const char *text, size_t len,
                                      const char *base_dir, struct moat_conf **out,
                                      struct moat_err *err);

/*
 * For the CLI: replace the listen addresses (the defaults or earlier ones) with `n` addresses,
 * each checked like the listen directive. MOAT_E_USAGE with words on a bad address, and then c
 * is unchanged.
 */
MOAT_MUST_USE moat_rc moat_conf_set_listen(struct moat_conf *c, const char *const *addrs, size_t n,
                                           struct moat_err *err);

/*
 * For the CLI (`moat serve --root DIR [--cert C --key K]`): add a site answering `name` ("*" for
 * any name) that serves `root`, with one certificate when cert_path and key_path are both given
 * (both NULL: the local CA issues one). Paths are stored as given (relative to the working
 * folder). Other settings take the directive defaults; where = "command line".
 * MOAT_E_USAGE with words on a bad name, a name another site has, a missing root, or a cert
 * without a key (or the reverse); c is then unchanged.
 */
MOAT_MUST_USE moat_rc moat_conf_add_site(struct moat_conf *c, const char *name, const char *root,
                                         const char *cert_path, const char *key_path,
                                         struct moat_err *err);

/*
 * For the CLI (`moat proxy --to HOST:PORT...`): a site answering `name` that forwards every
 * request to an upstream of these servers (HOST:PORT, http://, https://, unix:/PATH; several:
 * round robin with health), with a certificate as moat_conf_add_site. MOAT_E_USAGE with words.
 */
MOAT_MUST_USE moat_rc moat_conf_add_proxy_site(struct moat_conf *c, const char *name,
                                               const char *const *servers, size_t n,
                                               const char *cert_path, const char *key_path,
                                               struct moat_err *err);

/*
 * Split a checked listen address into host and port: "[::1]:8443" gives "::1" and 8443,
 * ":8443" gives "" (all addresses). MOAT_E_CONFIG without words when `addr` is not a valid
 * address or the host does not fit in `hostcap` bytes.
 */
/* Fill what the acme { } block leaves to defaults (CA, key kinds per site, challenges that can
 * work with this listener set): the loader calls it after its checks, and a configuration
 * built in code (moat serve --acme) calls it before use. MOAT_E_NOMEM only. */
MOAT_MUST_USE moat_rc moat_conf_acme_defaults(struct moat_conf *c);

MOAT_MUST_USE moat_rc moat_conf_listen_split(const char *addr, char *host, size_t hostcap,
                                             uint16_t *port);

/* 1 when `name` can only mean this machine: localhost, *.localhost and anything under it
 * (RFC 6761 §6.3), 127.0.0.0/8, ::1 (bare or in brackets); else 0. Case-insensitive. */
int moat_conf_name_is_local(const char *name);

/* Whether the site sends Strict-Transport-Security: hsts 1/0 as configured, and for -1 (auto)
 * on unless every name is local (browsers would pin HSTS on "localhost" for every port). */
int moat_conf_site_hsts(const struct moat_conf_site *s);

#endif
