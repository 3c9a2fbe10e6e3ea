// fuzz-sources: src/serve/conf.c src/serve/conf_global.c src/serve/conf_limits.c
// fuzz-sources: src/serve/conf_site.c src/serve/conf_headers.c src/serve/conf_proxy.c
// fuzz-sources: src/serve/conf_mtls.c src/serve/conf_crl.c src/serve/conf_acme.c
// fuzz-sources: src/serve/conf_http2.c src/serve/conf_stream.c
// fuzz-sources: src/core/cfg.c src/core/path.c src/core/err.c src/serve/headers.c
// fuzz-sources: src/core/cidr.c src/serve/conf_guard.c src/core/gcra.c src/serve/conf_encode.c
// fuzz-sources: src/http/coding.c src/core/buf.c src/serve/conf_cache.c src/core/sock.c
// fuzz-sources: src/serve/conf_cluster.c src/state/seal.c
/*
 * fuzz_conf.c: the config reader and moat's directives on arbitrary bytes. Beyond "no crash, no
 * leak", it checks what the rest of moat relies on: every word is NUL-terminated with
 * strlen == len and a position inside the text, blocks nest at most MOAT_CFG_MAX_DEPTH deep, a
 * refusal always says where, and an accepted configuration has at least one site with a root,
 * listen addresses that moat_conf_listen_split accepts, and distinct site names.
 */
#include "core/cfg.h"
#include "serve/conf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_node(const struct moat_cfg_node *n, int depth, int lines)
{
    if (depth > MOAT_CFG_MAX_DEPTH + 1) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        if (w->s == NULL || strlen(w->s) != w->len || w->len > MOAT_CFG_MAX_WORD || w->line < 1 ||
            w->line > lines || w->col < 1) {
            __builtin_trap();
        }
    }
    if (depth > 0 && n->nwords == 0) {
        __builtin_trap();
    }
    if (depth > 0 && !n->has_block && n->nchildren > 0) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n->nchildren; i++) {
        check_node(&n->children[i], depth + 1, lines);
    }
}

static void check_conf(const struct moat_conf *c)
{
    if (c->nsites == 0 || c->nlisten == 0) {
        __builtin_trap();
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        char host[256];
        uint16_t port;
        if (!moat_ok(moat_conf_listen_split(c->listen[i], host, sizeof(host), &port)) ||
            port == 0) {
            __builtin_trap();
        }
    }
    if (c->max_line_bytes > c->max_head_bytes || c->max_fields > MOAT_CONF_MAX_FIELDS ||
        c->max_fields == 0) {
        __builtin_trap();
    }
    for (size_t i = 0; i < c->nsites; i++) {
        const struct moat_conf_site *s = &c->sites[i];
        int whole = 0;
        for (size_t j = 0; j < s->nproxies; j++) {
            const struct moat_conf_proxy_rule *r = &s->proxies[j];
            whole |= r->prefix == NULL;
            /* Every rule names an upstream that exists and has servers. */
            if (r->index >= c->nupstreams || c->upstreams[r->index].nservers == 0 ||
                (r->prefix != NULL && (r->prefix[0] != '/' || strlen(r->prefix) < 2))) {
                __builtin_trap();
            }
        }
        /* Every path has an answer: files, or a proxy for every path, not both. */
        if ((s->root == NULL) != whole || s->index == NULL || s->nnames == 0) {
            __builtin_trap();
        }
        (void)moat_conf_site_hsts(s);
        for (size_t j = 0; j < s->nnames; j++) {
            (void)moat_conf_name_is_local(s->names[j]);
            for (size_t k = 0; k < c->nsites; k++) {
                for (size_t m = 0; m < c->sites[k].nnames; m++) {
                    if ((k != i || m != j) && strcmp(s->names[j], c->sites[k].names[m]) == 0) {
                        __builtin_trap();
                    }
                }
            }
        }
        for (size_t j = 0; j < s->ncerts; j++) {
            if (s->certs[j].cert_path == NULL || s->certs[j].key_path == NULL) {
                __builtin_trap();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    int lines = 1;
    for (size_t i = 0; i < size; i++) {
        lines += data[i] == '\n';
    }

    struct moat_err err = {0};
    struct moat_cfg_doc *doc = NULL;
    moat_rc rc = moat_cfg_parse("f.conf", text, size, &doc, &err);
    if (moat_ok(rc)) {
        check_node(&doc->root, 0, lines);
        /* The value helpers see every word, as the directive code would. */
        for (size_t i = 0; i < doc->root.nchildren; i++) {
            const struct moat_cfg_node *n = &doc->root.children[i];
            for (size_t j = 0; j < n->nwords; j++) {
                uint64_t v;
                int b;
                (void)moat_cfg_duration_ms(n->words[j].s, &v);
                (void)moat_cfg_size(n->words[j].s, &v);
                (void)moat_cfg_bool(n->words[j].s, &b);
            }
        }
        moat_cfg_doc_free(doc);
    } else if (err.where[0] == '\0' || err.msg[0] == '\0' || doc != NULL) {
        __builtin_trap();
    }

    struct moat_conf *c = NULL;
    memset(&err, 0, sizeof(err));
    rc = moat_conf_parse("f.conf", text, size, "/base", &c, &err);
    if (moat_ok(rc)) {
        check_conf(c);
        moat_conf_free(c);
    } else if (err.where[0] == '\0' || err.msg[0] == '\0' || c != NULL) {
        __builtin_trap();
    }
    return 0;
}
