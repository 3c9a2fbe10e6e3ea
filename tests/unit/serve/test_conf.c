/*
 * test_conf.c: moat's configuration (serve/conf.c): the full example from docs/config.md read
 * into every field, defaults, path resolution, a table of bad configurations with the exact
 * "file:line:col" and message, and the CLI helpers (set_listen, add_site, listen_split,
 * name_is_local, site_hsts).
 */
#include "serve/conf.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct moat_conf *parse_ok(const char *text)
{
    struct moat_conf *c = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), "/etc/moat", &c, &err);
    if (!moat_ok(rc)) {
        TEST__FAIL("parse failed: %s: %s", err.where, err.msg);
        return NULL;
    }
    return c;
}

static const char example[] =
    "# global\n"
    "listen 127.0.0.1:8443 [::1]:8443\n"
    "redirect_http 127.0.0.1:8080\n"
    "workers 2\n"
    "state ./state\n"
    "access_log stdout json          # or: access_log /var/log/moat/access.log combined\n"
    "error_log stderr info\n"
    "timeouts { head 10s; idle 60s; body 30s; write 30s; drain 10s; handshake 10s }\n"
    "limits { request_line 8k; header_bytes 32k; header_fields 100; body 1m; connections "
    "10000 }\n"
    "tls { tickets on; ticket_rotate 1h; session_cache 20480 }\n"
    "trust extra-ca.pem\n"
    "\n"
    "site example.com www.example.com {\n"
    "    cert example.pem example.key\n"
    "    cert example-rsa.pem example-rsa.key\n"
    "    root ./www\n"
    "    index index.html\n"
    "    listing off\n"
    "    hsts 1y include_subdomains preload     # or: hsts off\n"
    "}\n"
    "site localhost {\n"
    "    root ./www\n"
    "}\n";

TEST_CASE(full_example)
{
    struct moat_conf *c = parse_ok(example);
    if (c == NULL) {
        return;
    }
    EXPECT(c->path == NULL);
    EXPECT_INT(c->nlisten, 2);
    EXPECT_STR(c->listen[0], "127.0.0.1:8443");
    EXPECT_STR(c->listen[1], "[::1]:8443");
    EXPECT_STR(c->redirect_listen, "127.0.0.1:8080");
    EXPECT_INT(c->workers, 2);
    EXPECT_STR(c->state_dir, "/etc/moat/./state");
    EXPECT_STR(c->access_log, "stdout");
    EXPECT_INT(c->access_format, MOAT_LOG_JSON);
    EXPECT_STR(c->error_log, "stderr");
    EXPECT_INT(c->log_level, MOAT_LOG_INFO);
    EXPECT_INT(c->head_timeout_ms, 10000);
    EXPECT_INT(c->idle_timeout_ms, 60000);
    EXPECT_INT(c->body_timeout_ms, 30000);
    EXPECT_INT(c->write_timeout_ms, 30000);
    EXPECT_INT(c->drain_timeout_ms, 10000);
    EXPECT_INT(c->handshake_timeout_ms, 10000);
    EXPECT_INT(c->max_line_bytes, 8192);
    EXPECT_INT(c->max_head_bytes, 32768);
    EXPECT_INT(c->max_fields, 100);
    EXPECT_INT(c->max_body_bytes, 1048576);
    EXPECT_INT(c->max_conns, 10000);
    EXPECT_INT(c->tickets, 1);
    EXPECT_INT(c->ticket_rotate_s, 3600);
    EXPECT_INT(c->session_cache, 20480);
    EXPECT_INT(c->ntrust, 1);
    EXPECT_STR(c->trust[0], "/etc/moat/extra-ca.pem");
    EXPECT_INT(c->nsites, 2);
    const struct moat_conf_site *s = &c->sites[0];
    EXPECT_INT(s->nnames, 2);
    EXPECT_STR(s->names[0], "example.com");
    EXPECT_STR(s->names[1], "www.example.com");
    EXPECT_INT(s->ncerts, 2);
    EXPECT_STR(s->certs[0].cert_path, "/etc/moat/example.pem");
    EXPECT_STR(s->certs[0].key_path, "/etc/moat/example.key");
    EXPECT_STR(s->certs[0].where, "m.conf:14:5");
    EXPECT_STR(s->certs[1].cert_path, "/etc/moat/example-rsa.pem");
    EXPECT_STR(s->certs[1].key_path, "/etc/moat/example-rsa.key");
    EXPECT_STR(s->root, "/etc/moat/./www");
    EXPECT_STR(s->index, "index.html");
    EXPECT_INT(s->listing, 0);
    EXPECT_INT(s->hsts, 1);
    EXPECT_INT(s->hsts_max_age_s, 31536000);
    EXPECT_INT(s->hsts_subdomains, 1);
    EXPECT_INT(s->hsts_preload, 1);
    EXPECT_STR(s->where, "m.conf:13:1");
    s = &c->sites[1];
    EXPECT_INT(s->nnames, 1);
    EXPECT_STR(s->names[0], "localhost");
    EXPECT_INT(s->ncerts, 0);
    EXPECT_INT(s->hsts, -1);
    EXPECT_INT(moat_conf_site_hsts(s), 0);
    EXPECT_INT(moat_conf_site_hsts(&c->sites[0]), 1);
    EXPECT_STR(s->where, "m.conf:21:1");
    moat_conf_free(c);
}

TEST_CASE(defaults)
{
    struct moat_conf *c = moat_conf_new();
    EXPECT(c != NULL);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nlisten, 1);
    EXPECT_STR(c->listen[0], "127.0.0.1:8443");
    EXPECT(c->redirect_listen == NULL);
    EXPECT_INT(c->workers, 0);
    EXPECT(c->state_dir == NULL);
    EXPECT_STR(c->access_log, "off");
    EXPECT_INT(c->access_format, MOAT_LOG_COMBINED);
    EXPECT_STR(c->error_log, "stderr");
    EXPECT_INT(c->log_level, MOAT_LOG_INFO);
    EXPECT_INT(c->head_timeout_ms, 10000);
    EXPECT_INT(c->idle_timeout_ms, 60000);
    EXPECT_INT(c->body_timeout_ms, 30000);
    EXPECT_INT(c->write_timeout_ms, 30000);
    EXPECT_INT(c->drain_timeout_ms, 10000);
    EXPECT_INT(c->handshake_timeout_ms, 10000);
    EXPECT_INT(c->max_line_bytes, 8192);
    EXPECT_INT(c->max_head_bytes, 32768);
    EXPECT_INT(c->max_fields, 100);
    EXPECT_INT(c->max_body_bytes, 1048576);
    EXPECT_INT(c->max_conns, 10000);
    EXPECT_INT(c->tickets, 1);
    EXPECT_INT(c->ticket_rotate_s, 3600);
    EXPECT_INT(c->session_cache, 20480);
    EXPECT_INT(c->ntrust, 0);
    EXPECT_INT(c->nsites, 0);
    moat_conf_free(c);
    moat_conf_free(NULL);
}

TEST_CASE(minimal_site_and_site_defaults)
{
    /* "A site with a cert and a root is three lines." */
    struct moat_conf *c = parse_ok("site Example.COM {\n"
                                   "    cert /abs/site.pem site.key\n"
                                   "    root www\n"
                                   "}\n");
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nlisten, 1);
    EXPECT_STR(c->listen[0], "127.0.0.1:8443");
    EXPECT_INT(c->nsites, 1);
    EXPECT_STR(c->sites[0].names[0], "example.com");
    EXPECT_STR(c->sites[0].certs[0].cert_path, "/abs/site.pem");
    EXPECT_STR(c->sites[0].certs[0].key_path, "/etc/moat/site.key");
    EXPECT_STR(c->sites[0].root, "/etc/moat/www");
    EXPECT_STR(c->sites[0].index, "index.html");
    EXPECT_INT(c->sites[0].listing, 0);
    EXPECT_INT(c->sites[0].hsts, -1);
    EXPECT_INT(c->sites[0].hsts_max_age_s, 31536000);
    EXPECT_INT(c->sites[0].hsts_subdomains, 0);
    EXPECT_INT(c->sites[0].hsts_preload, 0);
    moat_conf_free(c);
}

TEST_CASE(other_good_forms)
{
    struct moat_conf *c = parse_ok("listen :8443\n"
                                   "listen localhost:9443 \"[::]:443\"\n"
                                   "redirect_http :80\n"
                                   "workers auto\n"
                                   "access_log logs/access.log combined\n"
                                   "error_log /var/log/moat.err debug\n"
                                   "timeouts { head 500ms }\n"
                                   "timeouts { idle 2m }\n"
                                   "limits { request_line 1k; header_bytes 1k; body 0 }\n"
                                   "tls { tickets no; ticket_rotate 1d; session_cache 0 }\n"
                                   "trust a.pem /b.pem\n"
                                   "trust c.pem\n"
                                   "site * { root /srv; listing on; index home.htm; hsts off }\n"
                                   "site *.example.org 10.0.0.1 [::1] 0:0::2 {\n"
                                   "  root /srv2; hsts on include_subdomains\n"
                                   "}\n"
                                   "site a.localhost { root r; hsts 1h }\n");
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nlisten, 3);
    EXPECT_STR(c->listen[0], ":8443");
    EXPECT_STR(c->listen[1], "localhost:9443");
    EXPECT_STR(c->listen[2], "[::]:443");
    EXPECT_STR(c->redirect_listen, ":80");
    EXPECT_INT(c->workers, 0);
    EXPECT_STR(c->access_log, "/etc/moat/logs/access.log");
    EXPECT_INT(c->access_format, MOAT_LOG_COMBINED);
    EXPECT_STR(c->error_log, "/var/log/moat.err");
    EXPECT_INT(c->log_level, MOAT_LOG_DEBUG);
    EXPECT_INT(c->head_timeout_ms, 500);
    EXPECT_INT(c->idle_timeout_ms, 120000);
    EXPECT_INT(c->max_line_bytes, 1024);
    EXPECT_INT(c->max_head_bytes, 1024);
    EXPECT_INT(c->max_body_bytes, 0);
    EXPECT_INT(c->tickets, 0);
    EXPECT_INT(c->ticket_rotate_s, 86400);
    EXPECT_INT(c->session_cache, 0);
    EXPECT_INT(c->ntrust, 3);
    EXPECT_STR(c->trust[0], "/etc/moat/a.pem");
    EXPECT_STR(c->trust[1], "/b.pem");
    EXPECT_STR(c->trust[2], "/etc/moat/c.pem");
    EXPECT_INT(c->nsites, 3);
    EXPECT_STR(c->sites[0].names[0], "*");
    EXPECT_INT(c->sites[0].listing, 1);
    EXPECT_STR(c->sites[0].index, "home.htm");
    EXPECT_INT(c->sites[0].hsts, 0);
    EXPECT_INT(c->sites[1].nnames, 4);
    EXPECT_STR(c->sites[1].names[0], "*.example.org");
    EXPECT_STR(c->sites[1].names[1], "10.0.0.1");
    EXPECT_STR(c->sites[1].names[2], "::1");
    EXPECT_STR(c->sites[1].names[3], "::2");
    EXPECT_INT(c->sites[1].hsts, 1);
    EXPECT_INT(c->sites[1].hsts_subdomains, 1);
    EXPECT_INT(c->sites[2].hsts, 1);
    EXPECT_INT(c->sites[2].hsts_max_age_s, 3600);
    moat_conf_free(c);
}

TEST_CASE(no_base_dir_keeps_paths)
{
    struct moat_conf *c = NULL;
    const char *text = "site x { root ./www; cert a.pem b.key }";
    EXPECT(moat_ok(moat_conf_parse("m.conf", text, strlen(text), NULL, &c, NULL)));
    if (c != NULL) {
        EXPECT_STR(c->sites[0].root, "./www");
        EXPECT_STR(c->sites[0].certs[0].cert_path, "a.pem");
    }
    moat_conf_free(c);
    EXPECT(moat_ok(moat_conf_parse("m.conf", text, strlen(text), "/etc/", &c, NULL)));
    if (c != NULL) {
        EXPECT_STR(c->sites[0].root, "/etc/./www");
    }
    moat_conf_free(c);
}

struct bad_case {
    const char *text;
    const char *where;
    const char *msg;
};

/* One row per rule; the message is part of the interface (people read it), so it is exact. */
static const struct bad_case bad[] = {
    /* reader errors come through unchanged */
    {"site x {\n root a\n", "m.conf:1:8",
     "block opened here is never closed (add the matching \"}\")"},
    /* no site */
    {"", "m.conf", "no site is defined (add one, e.g. site localhost { root ./www })"},
    {"listen :8443\n", "m.conf",
     "no site is defined (add one, e.g. site localhost { root ./www })"},
    /* unknown directive, with and without a suggestion */
    {"site x {\n  rot ./www\n}", "m.conf:2:3",
     "unknown directive \"rot\" (did you mean \"root\"?)"},
    {"site x {\n  Root ./www\n}", "m.conf:2:3",
     "unknown directive \"Root\" (did you mean \"root\"?)"},
    {"lisen :8443\nsite x { root r }", "m.conf:1:1",
     "unknown directive \"lisen\" (did you mean \"listen\"?)"},
    {"timeouts { heads 1s }\nsite x { root r }", "m.conf:1:12",
     "unknown directive \"heads\" (did you mean \"head\"?)"},
    {"frobnicate 1\nsite x { root r }", "m.conf:1:1",
     "unknown directive \"frobnicate\" (known at the top level: listen, redirect_http, workers, "
     "state, user, access_log, error_log, timeouts, limits, tls, trust, admin, site, upstream, "
     "trusted_proxies, "
     "proxy_protocol, acme, http2, stream, allow, deny, cache_memory, cache_max_object, "
     "cache_heuristic, cache_heuristic_max, cache_lock_timeout, cache_disk, cluster)"},
    /* directive in the wrong place */
    {"root ./www\nsite x { root r }", "m.conf:1:1",
     "\"root\" is not allowed at the top level (it belongs inside a site NAME { } block)"},
    {"site x {\n root r\n cache_key host path url\n}", "m.conf:3:22",
     "cache_key takes scheme, host, path, query, header:NAME and cookie:NAME (the path is always "
     "part of the key), not \"url\""},
    {"site x {\n root r\n cache_key header:\n}", "m.conf:3:12",
     "cache_key takes scheme, host, path, query, header:NAME and cookie:NAME (the path is always "
     "part of the key), not \"header:\""},
    {"site x {\n root r\n listen :1\n}", "m.conf:3:2",
     "\"listen\" is not allowed inside a site block (it belongs at the top level, outside any "
     "block or inside a stream NAME { } block)"},
    {"site x { root r; site y { root r } }", "m.conf:1:18",
     "\"site\" is not allowed inside a site block (it belongs at the top level, outside any "
     "block)"},
    {"head 10s\nsite x { root r }", "m.conf:1:1",
     "\"head\" is not allowed at the top level (it belongs inside a timeouts { } block)"},
    {"body 10s\nsite x { root r }", "m.conf:1:1",
     "\"body\" is not allowed at the top level (it belongs inside a timeouts { } block or inside "
     "a limits { } block)"},
    {"tls { head 1s }\nsite x { root r }", "m.conf:1:7",
     "\"head\" is not allowed inside tls { } (it belongs inside a timeouts { } block)"},
    /* argument counts */
    {"site x { root }", "m.conf:1:10", "\"root\" takes 1 argument, got 0 (usage: root FOLDER)"},
    {"site x { root a b }", "m.conf:1:17", "\"root\" takes 1 argument, got 2 (usage: root FOLDER)"},
    {"listen\nsite x { root r }", "m.conf:1:1",
     "\"listen\" takes at least 1 argument, got 0 (usage: listen ADDRESS...)"},
    {"access_log a combined x\nsite x { root r }", "m.conf:1:23",
     "\"access_log\" takes 1 to 2 arguments, got 3 (usage: access_log stdout|off|PATH "
     "[combined|json])"},
    {"timeouts x { head 1s }\nsite x { root r }", "m.conf:1:10",
     "\"timeouts\" takes no arguments, got 1 (usage: timeouts { head 10s; idle 60s; ... })"},
    {"site { root r }", "m.conf:1:1",
     "\"site\" takes at least 1 argument, got 0 (usage: site NAME... { root FOLDER })"},
    /* cert without key */
    {"site x {\n root r\n cert x.pem\n}", "m.conf:3:7",
     "certificate \"x.pem\" has no key (usage: cert CERT.pem KEY.pem, the key after the "
     "certificate)"},
    {"site x { root r; cert a b c }", "m.conf:1:27",
     "\"cert\" takes 2 arguments, got 3 (usage: cert CERT.pem KEY.pem)"},
    /* blocks where none belong and missing blocks */
    {"site x\n", "m.conf:1:1",
     "\"site\" needs a { } block opened on the same line (usage: site NAME... { root FOLDER })"},
    {"timeouts\nsite x { root r }", "m.conf:1:1",
     "\"timeouts\" needs a { } block opened on the same line (usage: timeouts { head 10s; idle "
     "60s; ... })"},
    {"site x { root r { } }", "m.conf:1:10",
     "\"root\" does not take a { } block (usage: root FOLDER)"},
    /* duplicates of single-valued directives name the first line */
    {"site x {\n root a\n root b\n}", "m.conf:3:2",
     "\"root\" is already set at line 2 (keep only one)"},
    {"workers 1\nworkers 2\nsite x { root r }", "m.conf:2:1",
     "\"workers\" is already set at line 1 (keep only one)"},
    {"timeouts { head 1s }\ntimeouts {\n  head 2s\n}\nsite x { root r }", "m.conf:3:3",
     "\"head\" is already set at line 1 (keep only one)"},
    {"site x { hsts off; root r; hsts on }", "m.conf:1:28",
     "\"hsts\" is already set at line 1 (keep only one)"},
    {"listen :1 :2\nlisten :1\nsite x { root r }", "m.conf:2:8",
     "listen address \":1\" is already given at line 1 (remove one)"},
    /* durations, sizes, counts, booleans */
    {"timeouts { head 10x }\nsite x { root r }", "m.conf:1:17",
     "bad duration \"10x\" for \"head\" (use a number with ms, s, m, h, d or y, e.g. 10s)"},
    {"timeouts { idle 0 }\nsite x { root r }", "m.conf:1:17",
     "\"idle\" must be between 1ms and 1d, got \"0\""},
    {"timeouts { drain 2d }\nsite x { root r }", "m.conf:1:18",
     "\"drain\" must be between 1ms and 1d, got \"2d\""},
    {"limits { header_bytes 32q }\nsite x { root r }", "m.conf:1:23",
     "bad size \"32q\" for \"header_bytes\" (use a number of bytes with an optional k, m or g, "
     "e.g. 8k)"},
    {"limits { header_fields 257 }\nsite x { root r }", "m.conf:1:24",
     "\"header_fields\" must be between 1 and 256, got \"257\""},
    {"limits { header_fields 1k }\nsite x { root r }", "m.conf:1:24",
     "bad number \"1k\" for \"header_fields\" (use digits only, e.g. 100)"},
    {"limits { request_line 100 }\nsite x { root r }", "m.conf:1:23",
     "\"request_line\" must be between 256 and 1m, got \"100\""},
    {"limits { header_bytes 2k }\nsite x { root r }", "m.conf:1:10",
     "request_line (8192) is larger than header_bytes (2048); the request line is part of the "
     "head (raise header_bytes)"},
    {"limits {\n header_bytes 4k\n request_line 5k\n}\nsite x { root r }", "m.conf:3:2",
     "request_line (5120) is larger than header_bytes (4096); the request line is part of the "
     "head (raise header_bytes)"},
    {"tls { tickets maybe }\nsite x { root r }", "m.conf:1:15",
     "bad value \"maybe\" for \"tickets\" (use on or off)"},
    {"tls { ticket_rotate 1500ms }\nsite x { root r }", "m.conf:1:21",
     "\"ticket_rotate\" must be whole seconds, got \"1500ms\""},
    {"tls { ticket_rotate 30s }\nsite x { root r }", "m.conf:1:21",
     "\"ticket_rotate\" must be between 1m and 7d, got \"30s\""},
    {"site x { root r; listing sometimes }", "m.conf:1:26",
     "bad value \"sometimes\" for \"listing\" (use on or off)"},
    {"workers many\nsite x { root r }", "m.conf:1:9",
     "bad worker count \"many\" (use auto, or a number from 1 to 1024)"},
    {"workers 1025\nsite x { root r }", "m.conf:1:9",
     "bad worker count \"1025\" (use auto, or a number from 1 to 1024)"},
    /* logs */
    {"access_log off json\nsite x { root r }", "m.conf:1:16",
     "\"access_log off\" takes no format (remove \"json\")"},
    {"access_log stdout xml\nsite x { root r }", "m.conf:1:19",
     "bad access log format \"xml\" (use combined or json)"},
    {"error_log stderr loud\nsite x { root r }", "m.conf:1:18",
     "bad log level \"loud\" (use error, warn, info or debug)"},
    {"state \"\"\nsite x { root r }", "m.conf:1:7", "empty state path (write a path, e.g. ./www)"},
    /* listen addresses */
    {"listen 8443\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"8443\": missing port (write host:port, e.g. 127.0.0.1:8443, or :8443 "
     "for all addresses)"},
    {"listen 127.0.0.1:0\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"127.0.0.1:0\": the port must be a number from 1 to 65535"},
    {"listen 127.0.0.1:65536\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"127.0.0.1:65536\": the port must be a number from 1 to 65535"},
    {"listen 127.0.0.1:\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"127.0.0.1:\": the port must be a number from 1 to 65535"},
    {"listen 127.0.0.1:+80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"127.0.0.1:+80\": the port must be a number from 1 to 65535"},
    {"listen 300.0.0.1:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"300.0.0.1:80\": not a valid IPv4 address (write four numbers 0-255, "
     "e.g. 127.0.0.1)"},
    {"listen ::1:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"::1:80\": put an IPv6 address in brackets (e.g. [::1]:8443)"},
    {"listen [::1:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"[::1:80\": missing \"]\" after the IPv6 address (write e.g. "
     "[::1]:8443)"},
    {"listen [::g]:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"[::g]:80\": not a valid IPv6 address"},
    {"listen [::1]\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"[::1]\": missing port after the IPv6 address (write e.g. [::1]:8443)"},
    {"listen *:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"*:80\": write :PORT (without \"*\") to listen on all addresses"},
    {"listen bad_host:80\nsite x { root r }", "m.conf:1:8",
     "bad listen address \"bad_host:80\": not a valid host name or address"},
    {"redirect_http nope\nsite x { root r }", "m.conf:1:15",
     "bad listen address \"nope\": missing port (write host:port, e.g. 127.0.0.1:8443, or :8443 "
     "for all addresses)"},
    {"redirect_http :8443\nsite x { root r }", "m.conf:1:15",
     "redirect_http uses the port of listen \"127.0.0.1:8443\" (the default) (give it another "
     "port, e.g. :8080)"},
    {"listen [::1]:9000\nredirect_http [::1]:9000\nsite x { root r }", "m.conf:2:15",
     "redirect_http uses the port of listen \"[::1]:9000\" at line 1 (give it another port, e.g. "
     ":8080)"},
    /* site names */
    {"site a.com { root r }\nsite b.com A.COM { root r }", "m.conf:2:12",
     "site name \"a.com\" is already used by the site at line 1 (each name belongs to one site)"},
    {"site * { root r }\nsite * { root r }", "m.conf:2:6",
     "site name \"*\" is already used by the site at line 1 (each name belongs to one site)"},
    {"site ::1 { root r }\nsite [0::1] { root r }", "m.conf:2:6",
     "site name \"::1\" is already used by the site at line 1 (each name belongs to one site)"},
    {"site a.com a.com { root r }", "m.conf:1:12",
     "site name \"a.com\" is listed twice (remove one)"},
    {"site exa_mple.com { root r }", "m.conf:1:6",
     "bad site name \"exa_mple.com\": \"_\" is not allowed in a host name (use letters, digits, "
     "\"-\" and \".\")"},
    {"site www.*.example.com { root r }", "m.conf:1:6",
     "bad site name \"www.*.example.com\": a wildcard must be the whole first label (write "
     "\"*.example.com\")"},
    {"site *example.com { root r }", "m.conf:1:6",
     "bad site name \"*example.com\": a wildcard must be the whole first label (write "
     "\"*.example.com\")"},
    {"site *.*.example.com { root r }", "m.conf:1:6",
     "bad site name \"*.*.example.com\": a wildcard must be the whole first label (write "
     "\"*.example.com\")"},
    {"site example.com:8443 { root r }", "m.conf:1:6",
     "bad site name \"example.com:8443\": site names have no port (ports go in listen)"},
    {"site https://example.com { root r }", "m.conf:1:6",
     "bad site name \"https://example.com\": write the host name only, without scheme or path "
     "(e.g. example.com)"},
    {"site example.com. { root r }", "m.conf:1:6",
     "bad site name \"example.com.\": remove the trailing dot"},
    {"site a..b { root r }", "m.conf:1:6",
     "bad site name \"a..b\": empty label (two dots in a row, or a leading dot)"},
    {"site -a.com { root r }", "m.conf:1:6",
     "bad site name \"-a.com\": a label starts or ends with \"-\""},
    {"site \"\" { root r }", "m.conf:1:6", "bad site name \"\": empty name"},
    {"site b\xC3\xBC"
     "cher.de { root r }",
     "m.conf:1:6",
     "bad site name \"b\xC3\xBC"
     "cher.de\": write internationalized names in their xn-- "
     "(punycode) form"},
    {"site 1.2.3 { root r }", "m.conf:1:6",
     "bad site name \"1.2.3\": not a valid IPv4 address (write four numbers 0-255, e.g. "
     "127.0.0.1)"},
    {"site [::1]:8443 { root r }", "m.conf:1:6",
     "bad site name \"[::1]:8443\": site names have no port (ports go in listen)"},
    {"site [abc] { root r }", "m.conf:1:6", "bad site name \"[abc]\": not a valid IPv6 address"},
    {"site [::x] { root r }", "m.conf:1:6", "bad site name \"[::x]\": not a valid IPv6 address"},
    {"site aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com { root r }",
     "m.conf:1:6",
     "bad site name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com\": a "
     "label is longer than 63 characters (RFC 1035 §2.3.4)"},
    /* site contents */
    {"site example.com {\n  index x.html\n}", "m.conf:1:1",
     "site \"example.com\" has nothing to serve (add \"root FOLDER\" or \"proxy http://HOST:PORT\" "
     "inside its block)"},
    {"site x { root r; index a/b.html }", "m.conf:1:24",
     "bad index \"a/b.html\" (write a file name without \"/\", e.g. index.html)"},
    {"site x { root \"\" }", "m.conf:1:15", "empty root path (write a path, e.g. ./www)"},
    {"site x { root r; hsts sometimes }", "m.conf:1:23",
     "bad value \"sometimes\" for \"hsts\" (use off, on, auto or a max-age such as 1y)"},
    {"site x { root r; hsts off preload }", "m.conf:1:27",
     "\"hsts off\" takes nothing after off (remove \"preload\")"},
    {"site x { root r; hsts 1y subdomains }", "m.conf:1:26",
     "unknown hsts option \"subdomains\" (use include_subdomains and/or preload)"},
    {"site x { root r; hsts 1y preload }", "m.conf:1:26",
     "\"preload\" needs include_subdomains and a max-age of at least 1y (what hstspreload.org "
     "accepts)"},
    {"site x { root r; hsts 30d include_subdomains preload }", "m.conf:1:46",
     "\"preload\" needs include_subdomains and a max-age of at least 1y (what hstspreload.org "
     "accepts)"},
    {"site x { root r; hsts 1y preload preload }", "m.conf:1:34",
     "hsts option \"preload\" is given twice (remove one)"},
    {"site x { root r; hsts 1500ms }", "m.conf:1:23",
     "hsts max-age must be whole seconds, got \"1500ms\""},
    {"site x { root r; hsts 11y }", "m.conf:1:23", "hsts max-age must be at most 10y, got \"11y\""},
};

TEST_CASE(bad_configs)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_conf *c = (struct moat_conf *)1;
        struct moat_err err = {0};
        moat_rc rc =
            moat_conf_parse("m.conf", bad[i].text, strlen(bad[i].text), "/etc/moat", &c, &err);
        if (moat_ok(rc)) {
            TEST__FAIL("case %zu (%s): accepted, want %s", i, bad[i].text, bad[i].msg);
            moat_conf_free(c);
            continue;
        }
        EXPECT(c == NULL);
        if (rc.kind != MOAT_E_CONFIG || err.kind != MOAT_E_CONFIG) {
            TEST__FAIL("case %zu: kind %d/%d", i, rc.kind, err.kind);
        }
        if (strcmp(err.where, bad[i].where) != 0 || strcmp(err.msg, bad[i].msg) != 0) {
            TEST__FAIL("case %zu:\n  got  %s: %s\n  want %s: %s", i, err.where, err.msg,
                       bad[i].where, bad[i].msg);
        }
    }
}

TEST_CASE(load_resolves_against_file_folder)
{
    char dir[] = "/tmp/moat-test-conf-XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/moat.conf", dir);
    FILE *f = fopen(path, "w");
    EXPECT(f != NULL);
    if (f == NULL) {
        return;
    }
    fputs("site localhost {\n  root www\n  cert c.pem k.pem\n}\n", f);
    fclose(f);
    struct moat_conf *c = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_conf_load(path, &c, &err)));
    if (c != NULL) {
        char want[160];
        EXPECT_STR(c->path, path);
        snprintf(want, sizeof(want), "%s/www", dir);
        EXPECT_STR(c->sites[0].root, want);
        snprintf(want, sizeof(want), "%s/k.pem", dir);
        EXPECT_STR(c->sites[0].certs[0].key_path, want);
        snprintf(want, sizeof(want), "%s:3:3", path);
        EXPECT_STR(c->sites[0].certs[0].where, want);
    }
    moat_conf_free(c);

    /* Errors carry the path as given. */
    f = fopen(path, "w");
    fputs("site localhost {\n  rooot www\n}\n", f);
    fclose(f);
    EXPECT_INT(moat_conf_load(path, &c, &err).kind, MOAT_E_CONFIG);
    char want[160];
    snprintf(want, sizeof(want), "%s:2:3", path);
    EXPECT_STR(err.where, want);
    EXPECT_STR(err.msg, "unknown directive \"rooot\" (did you mean \"root\"?)");
    EXPECT(c == NULL);
    unlink(path);
    EXPECT_INT(moat_conf_load(path, &c, &err).kind, MOAT_E_IO);
    EXPECT_STR(err.where, path);
    rmdir(dir);
}

TEST_CASE(cli_helpers)
{
    struct moat_conf *c = moat_conf_new();
    struct moat_err err = {0};
    if (c == NULL) {
        TEST__FAIL("%s", "moat_conf_new");
        return;
    }
    const char *addrs[] = {"[::1]:9443", ":9443"};
    EXPECT(moat_ok(moat_conf_set_listen(c, addrs, 2, &err)));
    EXPECT_INT(c->nlisten, 2);
    EXPECT_STR(c->listen[1], ":9443");
    const char *badaddr[] = {":9443", "nope"};
    EXPECT_INT(moat_conf_set_listen(c, badaddr, 2, &err).kind, MOAT_E_USAGE);
    EXPECT_STR(err.where, "command line");
    EXPECT_STR(err.msg, "bad listen address \"nope\": missing port (write host:port, e.g. "
                        "127.0.0.1:8443, or :8443 for all addresses)");
    EXPECT_INT(c->nlisten, 2); /* unchanged */
    const char *twice[] = {":1", ":1"};
    EXPECT_INT(moat_conf_set_listen(c, twice, 2, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_conf_set_listen(c, addrs, 0, &err).kind, MOAT_E_USAGE);

    EXPECT(moat_ok(moat_conf_add_site(c, "*", "./www", NULL, NULL, &err)));
    EXPECT_INT(c->nsites, 1);
    EXPECT_STR(c->sites[0].names[0], "*");
    EXPECT_STR(c->sites[0].root, "./www");
    EXPECT_INT(c->sites[0].ncerts, 0);
    EXPECT_STR(c->sites[0].index, "index.html");
    EXPECT_INT(c->sites[0].hsts, -1);
    EXPECT_STR(c->sites[0].where, "command line");

    EXPECT(moat_ok(moat_conf_add_site(c, "Example.com", "/srv", "c.pem", "k.pem", &err)));
    EXPECT_STR(c->sites[1].names[0], "example.com");
    EXPECT_STR(c->sites[1].certs[0].cert_path, "c.pem");
    EXPECT_STR(c->sites[1].certs[0].key_path, "k.pem");

    EXPECT_INT(moat_conf_add_site(c, "*", "./www", NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_STR(err.msg, "site name \"*\" is already used by another site");
    EXPECT_INT(moat_conf_add_site(c, "x.org", "./www", "c.pem", NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_STR(err.msg, "give both --cert and --key (the key the certificate was made from), or "
                        "neither for a certificate from the local CA");
    EXPECT_INT(moat_conf_add_site(c, "x.org", NULL, NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_conf_add_site(c, "x.org", "", NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_conf_add_site(c, "x_y.org", "r", NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_conf_add_site(c, NULL, "r", NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_STR(err.where, "command line");
    EXPECT_INT(c->nsites, 2);
    moat_conf_free(c);
}

TEST_CASE(listen_split)
{
    char host[64];
    uint16_t port = 0;
    EXPECT(moat_ok(moat_conf_listen_split("127.0.0.1:8443", host, sizeof(host), &port)));
    EXPECT_STR(host, "127.0.0.1");
    EXPECT_INT(port, 8443);
    EXPECT(moat_ok(moat_conf_listen_split("[::1]:1", host, sizeof(host), &port)));
    EXPECT_STR(host, "::1");
    EXPECT_INT(port, 1);
    EXPECT(moat_ok(moat_conf_listen_split(":65535", host, sizeof(host), &port)));
    EXPECT_STR(host, "");
    EXPECT_INT(port, 65535);
    EXPECT(moat_ok(moat_conf_listen_split("localhost:80", host, sizeof(host), &port)));
    EXPECT_STR(host, "localhost");
    EXPECT(!moat_ok(moat_conf_listen_split("localhost:80", host, 9, &port)));
    EXPECT(!moat_ok(moat_conf_listen_split("localhost", host, sizeof(host), &port)));
    EXPECT(!moat_ok(moat_conf_listen_split("[::1]:99999", host, sizeof(host), &port)));
    EXPECT(!moat_ok(moat_conf_listen_split("", host, sizeof(host), &port)));
    EXPECT(!moat_ok(moat_conf_listen_split(NULL, host, sizeof(host), &port)));
}

TEST_CASE(name_is_local)
{
    static const char *const local[] = {"localhost",   "LOCALHOST",       "localhost.",
                                        "*.localhost", "app.localhost",   "a.b.Localhost",
                                        "127.0.0.1",   "127.255.255.254", "::1",
                                        "[::1]",       "0:0::1",          "::ffff:127.0.0.1"};
    static const char *const remote[] = {
        "",           "example.com", "localhost.com",   "mylocalhost",
        "localhostx", "128.0.0.1",   "10.0.0.1",        "::2",
        "*",          "[::1",        "::ffff:10.0.0.1", "0.0.0.0"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        if (!moat_conf_name_is_local(local[i])) {
            TEST__FAIL("\"%s\" should be local", local[i]);
        }
    }
    for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
        if (moat_conf_name_is_local(remote[i])) {
            TEST__FAIL("\"%s\" should not be local", remote[i]);
        }
    }
    EXPECT_INT(moat_conf_name_is_local(NULL), 0);
}

TEST_CASE(site_hsts_auto)
{
    struct moat_conf *c = parse_ok("site localhost 127.0.0.1 ::1 { root r }\n"
                                   "site a.localhost example.com { root r }\n"
                                   "site * { root r }\n"
                                   "site b.localhost { root r; hsts on }\n");
    if (c == NULL) {
        return;
    }
    EXPECT_INT(moat_conf_site_hsts(&c->sites[0]), 0);
    EXPECT_INT(moat_conf_site_hsts(&c->sites[1]), 1);
    EXPECT_INT(moat_conf_site_hsts(&c->sites[2]), 1); /* "*" answers public names too */
    EXPECT_INT(moat_conf_site_hsts(&c->sites[3]), 1);
    moat_conf_free(c);
}

int main(void)
{
    RUN(full_example);
    RUN(defaults);
    RUN(minimal_site_and_site_defaults);
    RUN(other_good_forms);
    RUN(no_base_dir_keeps_paths);
    RUN(bad_configs);
    RUN(load_resolves_against_file_folder);
    RUN(cli_helpers);
    RUN(listen_split);
    RUN(name_is_local);
    RUN(site_hsts_auto);
    TEST_MAIN_END();
}
