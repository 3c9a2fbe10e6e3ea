/*
 * trust.c: install, uninstall and list a CA in the system trust store and in NSS databases
 * (see trust.h).
 *
 * The tools are run directly (fork + execvp, never a shell), with their output captured so a
 * failure can be shown with its own words, and with a time limit so a stuck tool cannot hang
 * moat. Each store is handled on its own: a failure in one does not stop the others, and the
 * log says what happened in each.
 */
#include "pki/trust.h"

#include "pki/chain.h"
#include "pki/fsutil.h"
#include "pki/internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define CMD_TIMEOUT_MS 60000
#define CMD_OUT_MAX (256 * 1024)
#define MAX_ARGS 16
#define MAX_DBS 32

/* ---- running tools ---- */

struct cmd_out {
    char *text; /* malloc'ed, NUL-terminated; stdout and stderr together */
    size_t len;
    int status; /* exit code; -1 when killed or not run */
};

static void cmd_out_clear(struct cmd_out *c)
{
    free(c->text);
    memset(c, 0, sizeof(*c));
}

static int append_out(struct cmd_out *c, const char *p, size_t n)
{
    if (c->len + n > CMD_OUT_MAX) {
        n = CMD_OUT_MAX - c->len;
    }
    char *grown = realloc(c->text, c->len + n + 1);
    if (grown == NULL) {
        return 0;
    }
    memcpy(grown + c->len, p, n);
    c->len += n;
    grown[c->len] = '\0';
    c->text = grown;
    return 1;
}

/* Run argv with `in` on stdin; MOAT_E_NOTFOUND when the program is not there. */
static moat_rc run(char *const argv[], const void *in, size_t inlen, struct cmd_out *out,
                   struct moat_err *err)
{
    memset(out, 0, sizeof(*out));
    out->status = -1;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, pexec[2] = {-1, -1};
    if (pipe2(pin, O_CLOEXEC) != 0 || pipe2(pout, O_CLOEXEC) != 0 || pipe2(pexec, O_CLOEXEC) != 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (pin[i] >= 0) {
                close(pin[i]);
            }
            if (pout[i] >= 0) {
                close(pout[i]);
            }
            if (pexec[i] >= 0) {
                close(pexec[i]);
            }
        }
        errno = e;
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot run %s", argv[0]);
    }
    /* Writing to a child that closed its stdin raises SIGPIPE, which would end moat: block it
     * for this thread while the child runs, and drop the one it may have raised. */
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        sigprocmask(SIG_SETMASK, &old_set, NULL);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t w = write(pexec[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(pexec[1]);
    if (pid < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);
        close(pin[1]);
        close(pout[0]);
        close(pexec[0]);
        errno = e;
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot run %s", argv[0]);
    }
    int exec_errno = 0;
    ssize_t got = read(pexec[0], &exec_errno, sizeof(exec_errno));
    close(pexec[0]);
    /* A full stdin pipe would block a child that never reads: send it without blocking. */
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
    size_t sent = 0;
    int in_fd = got > 0 ? -1 : pin[1];
    if (in_fd >= 0 && inlen == 0) {
        close(in_fd);
        in_fd = -1;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int out_open = 1, timed_out = 0;
    while (out_open && got <= 0) {
        struct pollfd pf[2] = {{.fd = pout[0], .events = POLLIN}, {.fd = in_fd, .events = POLLOUT}};
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= CMD_TIMEOUT_MS) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        if (poll(pf, in_fd >= 0 ? 2 : 1, (int)(CMD_TIMEOUT_MS - spent)) < 0 && errno != EINTR) {
            break;
        }
        if (in_fd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in_fd, (const char *)in + sent, inlen - sent);
            if (w > 0) {
                sent += (size_t)w;
            }
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                sent = inlen; /* the child closed its stdin: stop feeding it */
            }
            if (sent == inlen) {
                close(in_fd);
                in_fd = -1;
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[4096];
            ssize_t r = read(pout[0], buf, sizeof(buf));
            if (r > 0) {
                append_out(out, buf, (size_t)r);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                out_open = 0;
            }
        }
    }
    if (in_fd >= 0) {
        close(in_fd);
    }
    close(pout[0]);
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    sigset_t pending;
    if (!sigismember(&old_set, SIGPIPE) && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (got > 0) {
        errno = exec_errno;
        if (exec_errno == ENOENT) {
            MOAT_FAIL(err, MOAT_E_NOTFOUND, "%s is not installed (not found in PATH)", argv[0]);
        }
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot run %s", argv[0]);
    }
    if (timed_out) {
        MOAT_FAIL(err, MOAT_E_IO, "%s did not finish within %d seconds and was stopped", argv[0],
                  CMD_TIMEOUT_MS / 1000);
    }
    out->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    if (out->text == NULL) {
        append_out(out, "", 0);
    }
    return MOAT_RC_OK;
}

/* The last line of a tool's output, for a message. */
static const char *last_line(const struct cmd_out *c, char *buf, size_t n)
{
    buf[0] = '\0';
    if (c->text == NULL) {
        return buf;
    }
    size_t end = c->len;
    while (end > 0 && (c->text[end - 1] == '\n' || c->text[end - 1] == ' ')) {
        end--;
    }
    size_t start = end;
    while (start > 0 && c->text[start - 1] != '\n') {
        start--;
    }
    snprintf(buf, n, "%.*s", (int)(end - start), c->text + start);
    return buf;
}

/* ---- helpers ---- */

static moat_rc pem_of(X509 *x, char **out, size_t *len, struct moat_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot encode the certificate");
    }
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    *out = strndup(p, (size_t)n);
    *len = (size_t)n;
    BIO_free(bio);
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

const char *moat_trust_nickname(X509 *ca, char *buf, size_t n)
{
    char cn[128], fp[128];
    moat_pki__short_name(ca, cn, sizeof(cn));
    moat_pki__fingerprint(ca, EVP_sha256(), fp, sizeof(fp));
    /* "AB:CD:EF:01" -> "abcdef01" */
    char short_fp[9];
    size_t j = 0;
    for (size_t i = 0; fp[i] != '\0' && j < 8; i++) {
        if (fp[i] != ':') {
            short_fp[j++] = (char)tolower((unsigned char)fp[i]);
        }
    }
    short_fp[j] = '\0';
    snprintf(buf, n, "%s (moat %s)", cn, short_fp);
    return buf;
}

/* "moat-acme-dev-ca-1a2b3c4d.crt": readable and unique per certificate. update-ca-certificates
 * takes only files ending in .crt. */
static void system_file_name(X509 *ca, char *buf, size_t n)
{
    char nick[256], slug[48];
    moat_trust_nickname(ca, nick, sizeof(nick));
    const char *fp = strrchr(nick, ' ');
    char cn[128];
    moat_pki__short_name(ca, cn, sizeof(cn));
    size_t j = 0;
    int dash = 0;
    for (size_t i = 0; cn[i] != '\0' && j + 1 < sizeof(slug) - 1; i++) {
        unsigned char ch = (unsigned char)cn[i];
        if (isalnum(ch)) {
            slug[j++] = (char)tolower(ch);
            dash = 0;
        } else if (!dash && j > 0) {
            slug[j++] = '-';
            dash = 1;
        }
    }
    while (j > 0 && slug[j - 1] == '-') {
        j--;
    }
    slug[j] = '\0';
    /* "moat local CA ..." would give "moat-moat-local-ca-...". */
    const char *s = strncmp(slug, "moat-", 5) == 0 ? slug + 5 : slug;
    snprintf(buf, n, "moat-%s%s%.8s.crt", s, s[0] ? "-" : "", fp ? fp + 1 : "ca");
}

static int holds_cert(const unsigned char *data, size_t len, X509 *ca)
{
    struct moat_chain *c = NULL;
    if (!moat_ok(moat_chain_load_mem(data, len, "x", &c, NULL))) {
        ERR_clear_error();
        return 0;
    }
    int found = X509_cmp(c->leaf, ca) == 0;
    for (int i = 0; !found && i < sk_X509_num(c->extra); i++) {
        found = X509_cmp(sk_X509_value(c->extra, i), ca) == 0;
    }
    moat_chain_free(c);
    ERR_clear_error();
    return found;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- system store ---- */

struct sys_files {
    char names[64][NAME_MAX + 1];
    int n;
};

/* Files of `dir` (.crt/.pem, not in subfolders) holding `ca`, or every CA file when ca NULL. */
static moat_rc sys_scan(const char *dir, X509 *ca, struct sys_files *found, struct moat_err *err)
{
    found->n = 0;
    DIR *d = opendir(dir);
    if (d == NULL && errno == ENOENT) {
        return MOAT_RC_OK;
    }
    if (d == NULL) {
        moat_err_where(err, "%s", dir);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot read the folder %s", dir);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && found->n < 64) {
        if (de->d_name[0] == '.' ||
            !(has_suffix(de->d_name, ".crt") || has_suffix(de->d_name, ".pem"))) {
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unsigned char *data = NULL;
        size_t len = 0;
        if (!moat_ok(moat_fs_read_file(path, 1024 * 1024, &data, &len, NULL))) {
            continue;
        }
        if (ca == NULL || holds_cert(data, len, ca)) {
            snprintf(found->names[found->n++], NAME_MAX + 1, "%s", de->d_name);
        }
        free(data);
    }
    closedir(d);
    return MOAT_RC_OK;
}

static moat_rc run_update(const struct moat_trust_opts *o, FILE *log, struct moat_err *err)
{
    const char *cmd = o->update_cmd ? o->update_cmd : MOAT_TRUST_UPDATE_CMD;
    if (cmd[0] == '\0' || strcmp(cmd, "none") == 0) {
        if (log != NULL) {
            fprintf(log, "system: no update command run (--update-cmd none)\n");
        }
        return MOAT_RC_OK;
    }
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", cmd);
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *p = copy; *p != '\0' && argc < MAX_ARGS;) {
        while (*p == ' ') {
            *p++ = '\0';
        }
        if (*p == '\0') {
            break;
        }
        argv[argc++] = p;
        while (*p != '\0' && *p != ' ') {
            p++;
        }
    }
    argv[argc] = NULL;
    if (argc == 0) {
        return MOAT_RC_OK;
    }
    struct cmd_out out;
    moat_rc rc = run(argv, NULL, 0, &out, err);
    if (!moat_ok(rc)) {
        cmd_out_clear(&out);
        return rc;
    }
    char line[300];
    if (out.status != 0) {
        last_line(&out, line, sizeof(line));
        cmd_out_clear(&out);
        MOAT_FAIL(err, MOAT_E_IO, "%s failed (exit %d): %s%s", cmd, out.status, line,
                  geteuid() != 0 ? " (the system store needs root: run with sudo)" : "");
    }
    if (log != NULL) {
        fprintf(log, "system: ran %s\n", cmd);
    }
    cmd_out_clear(&out);
    return MOAT_RC_OK;
}

static const char *sys_dir(const struct moat_trust_opts *o)
{
    return o->system_dir ? o->system_dir : MOAT_TRUST_SYSTEM_DIR;
}

static moat_rc sys_install(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                           struct moat_err *err)
{
    const char *dir = sys_dir(o);
    struct sys_files *have = calloc(1, sizeof(*have));
    if (have == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = sys_scan(dir, ca, have, err);
    if (moat_ok(rc) && have->n > 0) {
        if (log != NULL) {
            fprintf(log, "system: already in %s/%s\n", dir, have->names[0]);
        }
        free(have);
        return MOAT_RC_OK;
    }
    free(have);
    MOAT_TRY(rc);
    char name[128], path[PATH_MAX];
    system_file_name(ca, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *pem = NULL;
    size_t len = 0;
    MOAT_TRY(pem_of(ca, &pem, &len, err));
    rc = moat_fs_mkdir_p(dir, 0755, err);
    if (moat_ok(rc)) {
        rc = moat_fs_write_atomic(path, pem, len, 0644, err);
    }
    free(pem);
    if (!moat_ok(rc)) {
        if (err != NULL && err->sys_errno == EACCES) {
            moat_err_ctx(err, "the system store needs root: run with sudo, or use --no-system");
        }
        return rc;
    }
    if (log != NULL) {
        fprintf(log, "system: installed %s\n", path);
    }
    return run_update(o, log, err);
}

static moat_rc sys_uninstall(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                             struct moat_err *err)
{
    const char *dir = sys_dir(o);
    struct sys_files *have = calloc(1, sizeof(*have));
    if (have == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = sys_scan(dir, ca, have, err);
    int removed = 0;
    for (int i = 0; moat_ok(rc) && i < have->n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, have->names[i]);
        if (unlink(path) != 0) {
            moat_err_where(err, "%s", path);
            rc = moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__, "cannot remove %s%s", path,
                              errno == EACCES ? " (the system store needs root)" : "");
            break;
        }
        removed++;
        if (log != NULL) {
            fprintf(log, "system: removed %s\n", path);
        }
    }
    free(have);
    MOAT_TRY(rc);
    if (removed == 0) {
        if (log != NULL) {
            fprintf(log, "system: not in %s\n", dir);
        }
        return MOAT_RC_OK;
    }
    return run_update(o, log, err);
}

/* ---- NSS databases ---- */

struct dbs {
    char path[MAX_DBS][PATH_MAX];
    int n;
};

static void dbs_add(struct dbs *d, const char *path)
{
    for (int i = 0; i < d->n; i++) {
        if (strcmp(d->path[i], path) == 0) {
            return;
        }
    }
    if (d->n < MAX_DBS) {
        snprintf(d->path[d->n++], PATH_MAX, "%s", path);
    }
}

static void dbs_glob(struct dbs *d, const char *pattern)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *slash = strrchr(g.gl_pathv[i], '/');
        if (slash != NULL) {
            *slash = '\0'; /* the profile folder holding cert9.db */
            dbs_add(d, g.gl_pathv[i]);
        }
    }
    globfree(&g);
}

/* The databases to act on. `create_chromium`: include ~/.pki/nssdb even when missing. */
static moat_rc find_dbs(const struct moat_trust_opts *o, int create_chromium, struct dbs *d,
                        struct moat_err *err)
{
    d->n = 0;
    if (o->nnssdb > 0) {
        for (size_t i = 0; i < o->nnssdb; i++) {
            dbs_add(d, o->nssdb[i]);
        }
        return MOAT_RC_OK;
    }
    const char *home = o->home ? o->home : getenv("HOME");
    if (home == NULL || home[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_CONFIG, "HOME is not set: give --home DIR or --nssdb DIR");
    }
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/.pki/nssdb", home);
    struct stat st;
    if (create_chromium || stat(p, &st) == 0) {
        dbs_add(d, p);
    }
    snprintf(p, sizeof(p), "%s/.mozilla/firefox/*/cert9.db", home);
    dbs_glob(d, p);
    snprintf(p, sizeof(p), "%s/snap/firefox/common/.mozilla/firefox/*/cert9.db", home);
    dbs_glob(d, p);
    return MOAT_RC_OK;
}

static const char *certutil_bin(const struct moat_trust_opts *o)
{
    return o->certutil ? o->certutil : "certutil";
}

static moat_rc certutil(const struct moat_trust_opts *o, char *const *args, const void *in,
                        size_t inlen, struct cmd_out *out, struct moat_err *err)
{
    char *argv[MAX_ARGS + 2];
    argv[0] = (char *)certutil_bin(o);
    int i = 0;
    for (; args[i] != NULL && i < MAX_ARGS; i++) {
        argv[i + 1] = args[i];
    }
    argv[i + 1] = NULL;
    moat_rc rc = run(argv, in, inlen, out, err);
    if (rc.kind == MOAT_E_NOTFOUND) {
        moat_err_ctx(err, "install it: apt-get install libnss3-tools (or use --no-nss)");
    }
    return rc;
}

/* Nicknames in a database with their trust flags, from `certutil -L`. */
struct nss_entry {
    char nick[256];
    char trust[32];
};

static moat_rc nss_entries(const struct moat_trust_opts *o, const char *db, struct nss_entry **out,
                           int *n, struct moat_err *err)
{
    char dbarg[PATH_MAX + 8];
    snprintf(dbarg, sizeof(dbarg), "sql:%s", db);
    char *args[] = {"-L", "-d", dbarg, NULL};
    struct cmd_out c;
    *out = NULL;
    *n = 0;
    MOAT_TRY(certutil(o, args, NULL, 0, &c, err));
    if (c.status != 0) {
        char line[300];
        last_line(&c, line, sizeof(line));
        cmd_out_clear(&c);
        moat_err_where(err, "%s", db);
        MOAT_FAIL(err, MOAT_E_IO, "certutil cannot read the NSS database %s: %s", db, line);
    }
    struct nss_entry *v = calloc(64, sizeof(*v));
    if (v == NULL) {
        cmd_out_clear(&c);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    int count = 0, header = 1;
    for (char *line = c.text; line != NULL && *line != '\0' && count < 64;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\r')) {
            line[--len] = '\0';
        }
        if (header) {
            header = strstr(line, "SSL,S/MIME") == NULL;
        } else if (len > 0) {
            /* "<nickname><spaces><trust>": the trust flags are the last word. */
            char *sp = strrchr(line, ' ');
            if (sp != NULL) {
                snprintf(v[count].trust, sizeof(v[count].trust), "%s", sp + 1);
                while (sp > line && *sp == ' ') {
                    *sp-- = '\0';
                }
                snprintf(v[count].nick, sizeof(v[count].nick), "%s", line);
                count++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    cmd_out_clear(&c);
    *out = v;
    *n = count;
    return MOAT_RC_OK;
}

/* Does the entry `nick` of `db` hold `ca`? */
static int nss_holds(const struct moat_trust_opts *o, const char *db, const char *nick, X509 *ca)
{
    char dbarg[PATH_MAX + 8];
    snprintf(dbarg, sizeof(dbarg), "sql:%s", db);
    char *args[] = {"-L", "-d", dbarg, "-n", (char *)nick, "-a", NULL};
    struct cmd_out c;
    if (!moat_ok(certutil(o, args, NULL, 0, &c, NULL)) || c.status != 0) {
        cmd_out_clear(&c);
        return 0;
    }
    int found = holds_cert((const unsigned char *)c.text, c.len, ca);
    cmd_out_clear(&c);
    return found;
}

static moat_rc nss_create(const struct moat_trust_opts *o, const char *db, FILE *log,
                          struct moat_err *err)
{
    struct stat st;
    char f[PATH_MAX + 16];
    snprintf(f, sizeof(f), "%s/cert9.db", db);
    if (stat(f, &st) == 0) {
        return MOAT_RC_OK;
    }
    MOAT_TRY(moat_fs_mkdir_p(db, 0700, err));
    char dbarg[PATH_MAX + 8];
    snprintf(dbarg, sizeof(dbarg), "sql:%s", db);
    char *args[] = {"-N", "-d", dbarg, "--empty-password", NULL};
    struct cmd_out c;
    MOAT_TRY(certutil(o, args, NULL, 0, &c, err));
    if (c.status != 0) {
        char line[300];
        last_line(&c, line, sizeof(line));
        cmd_out_clear(&c);
        moat_err_where(err, "%s", db);
        MOAT_FAIL(err, MOAT_E_IO, "certutil cannot create the NSS database %s: %s", db, line);
    }
    cmd_out_clear(&c);
    if (log != NULL) {
        fprintf(log, "nss: created the database %s\n", db);
    }
    return MOAT_RC_OK;
}

static moat_rc nss_install_one(X509 *ca, const struct moat_trust_opts *o, const char *db, FILE *log,
                               struct moat_err *err)
{
    MOAT_TRY(nss_create(o, db, log, err));
    struct nss_entry *v = NULL;
    int n = 0;
    MOAT_TRY(nss_entries(o, db, &v, &n, err));
    for (int i = 0; i < n; i++) {
        if (strchr(v[i].trust, 'C') != NULL && nss_holds(o, db, v[i].nick, ca)) {
            if (log != NULL) {
                fprintf(log, "nss: already trusted in %s as \"%s\"\n", db, v[i].nick);
            }
            free(v);
            return MOAT_RC_OK;
        }
    }
    free(v);
    char nick[256], dbarg[PATH_MAX + 8];
    moat_trust_nickname(ca, nick, sizeof(nick));
    snprintf(dbarg, sizeof(dbarg), "sql:%s", db);
    char *pem = NULL;
    size_t len = 0;
    MOAT_TRY(pem_of(ca, &pem, &len, err));
    /* "C,,": a trusted CA for TLS (SSL), not for e-mail or code signing. */
    char *args[] = {"-A", "-d", dbarg, "-t", "C,,", "-n", nick, "-a", NULL};
    struct cmd_out c;
    moat_rc rc = certutil(o, args, pem, len, &c, err);
    free(pem);
    MOAT_TRY(rc);
    if (c.status != 0) {
        char line[300];
        last_line(&c, line, sizeof(line));
        cmd_out_clear(&c);
        moat_err_where(err, "%s", db);
        MOAT_FAIL(err, MOAT_E_IO, "certutil could not add the CA to %s: %s", db, line);
    }
    cmd_out_clear(&c);
    if (log != NULL) {
        fprintf(log, "nss: trusted in %s as \"%s\"\n", db, nick);
    }
    return MOAT_RC_OK;
}

static moat_rc nss_uninstall_one(X509 *ca, const struct moat_trust_opts *o, const char *db,
                                 FILE *log, struct moat_err *err)
{
    struct nss_entry *v = NULL;
    int n = 0, removed = 0;
    MOAT_TRY(nss_entries(o, db, &v, &n, err));
    char dbarg[PATH_MAX + 8];
    snprintf(dbarg, sizeof(dbarg), "sql:%s", db);
    moat_rc rc = MOAT_RC_OK;
    for (int i = 0; i < n && moat_ok(rc); i++) {
        if (!nss_holds(o, db, v[i].nick, ca)) {
            continue;
        }
        char *args[] = {"-D", "-d", dbarg, "-n", v[i].nick, NULL};
        struct cmd_out c;
        rc = certutil(o, args, NULL, 0, &c, err);
        if (moat_ok(rc) && c.status != 0) {
            char line[300];
            last_line(&c, line, sizeof(line));
            moat_err_where(err, "%s", db);
            rc = moat_err_set(err, MOAT_E_IO, __FILE__, __LINE__,
                              "certutil could not remove \"%s\" from %s: %s", v[i].nick, db, line);
        }
        cmd_out_clear(&c);
        if (moat_ok(rc)) {
            removed++;
            if (log != NULL) {
                fprintf(log, "nss: removed \"%s\" from %s\n", v[i].nick, db);
            }
        }
    }
    free(v);
    MOAT_TRY(rc);
    if (removed == 0 && log != NULL) {
        fprintf(log, "nss: not in %s\n", db);
    }
    return MOAT_RC_OK;
}

/* ---- the three operations ---- */

static moat_rc check_is_ca(X509 *ca, struct moat_err *err)
{
    if ((X509_get_extension_flags(ca) & EXFLAG_CA) != 0) {
        return MOAT_RC_OK;
    }
    ERR_clear_error();
    char nm[256];
    MOAT_FAIL(err, MOAT_E_USAGE,
              "\"%s\" is not a CA certificate (no basicConstraints CA:TRUE): trust stores hold "
              "the root that issued a certificate, not the certificate itself (for moat's "
              "local CA that is ca/root.pem)",
              moat_pki__short_name(ca, nm, sizeof(nm)));
}

/* Keep the first failure in err, go on with the next store. */
static void keep_first(moat_rc rc, moat_rc *first, struct moat_err *err, struct moat_err *saved)
{
    if (moat_ok(rc)) {
        return;
    }
    if (moat_ok(*first)) {
        *first = rc;
        if (err != NULL) {
            *saved = *err;
        }
    }
}

typedef moat_rc (*nss_fn)(X509 *, const struct moat_trust_opts *, const char *, FILE *,
                          struct moat_err *);

static moat_rc each_store(X509 *ca, const struct moat_trust_opts *o, FILE *log, int install,
                          struct moat_err *err)
{
    MOAT_TRY(check_is_ca(ca, err));
    moat_rc first = MOAT_RC_OK;
    struct moat_err saved = {0};
    if (o->system) {
        moat_rc rc = install ? sys_install(ca, o, log, err) : sys_uninstall(ca, o, log, err);
        keep_first(rc, &first, err, &saved);
    }
    if (o->nss) {
        struct dbs *d = calloc(1, sizeof(*d));
        if (d == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        moat_rc rc = find_dbs(o, install, d, err);
        keep_first(rc, &first, err, &saved);
        if (moat_ok(rc) && d->n == 0 && log != NULL) {
            fprintf(log, "nss: no NSS database found (Chromium's ~/.pki/nssdb, Firefox "
                         "profiles)\n");
        }
        nss_fn fn = install ? nss_install_one : nss_uninstall_one;
        for (int i = 0; moat_ok(rc) && i < d->n; i++) {
            keep_first(fn(ca, o, d->path[i], log, err), &first, err, &saved);
        }
        free(d);
    }
    if (!moat_ok(first) && err != NULL) {
        *err = saved;
    }
    return first;
}

moat_rc moat_trust_install(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                           struct moat_err *err)
{
    return each_store(ca, o, log, 1, err);
}

moat_rc moat_trust_uninstall(X509 *ca, const struct moat_trust_opts *o, FILE *log,
                             struct moat_err *err)
{
    return each_store(ca, o, log, 0, err);
}

static void list_system(X509 *ca, const struct moat_trust_opts *o, FILE *out, int *found,
                        moat_rc *first, struct moat_err *err, struct moat_err *saved)
{
    const char *dir = sys_dir(o);
    struct sys_files *all = calloc(1, sizeof(*all));
    if (all == NULL) {
        keep_first(moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory"), first, err,
                   saved);
        return;
    }
    moat_rc rc = sys_scan(dir, NULL, all, err);
    keep_first(rc, first, err, saved);
    fprintf(out, "system store (%s):%s\n", dir, moat_ok(rc) && all->n == 0 ? " (none)" : "");
    int here = 0;
    for (int i = 0; moat_ok(rc) && i < all->n; i++) {
        char path[PATH_MAX], nm[256] = "(unreadable)";
        snprintf(path, sizeof(path), "%s/%s", dir, all->names[i]);
        unsigned char *data = NULL;
        size_t len = 0;
        int mine = 0;
        struct moat_chain *c = NULL;
        if (moat_ok(moat_fs_read_file(path, 1024 * 1024, &data, &len, NULL)) &&
            moat_ok(moat_chain_load_mem(data, len, path, &c, NULL))) {
            moat_pki__short_name(c->leaf, nm, sizeof(nm));
            mine = ca != NULL && holds_cert(data, len, ca);
        }
        moat_chain_free(c);
        free(data);
        ERR_clear_error();
        here |= mine;
        fprintf(out, "  %s %s  %s\n", mine ? "*" : " ", all->names[i], nm);
    }
    free(all);
    *found += here;
}

static void list_nss(X509 *ca, const struct moat_trust_opts *o, FILE *out, int *found,
                     moat_rc *first, struct moat_err *err, struct moat_err *saved)
{
    struct dbs *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        keep_first(moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory"), first, err,
                   saved);
        return;
    }
    moat_rc rc = find_dbs(o, 0, d, err);
    keep_first(rc, first, err, saved);
    if (moat_ok(rc) && d->n == 0) {
        fprintf(out, "NSS: no database found (Chromium's ~/.pki/nssdb, Firefox profiles)\n");
    }
    for (int i = 0; moat_ok(rc) && i < d->n; i++) {
        struct nss_entry *v = NULL;
        int n = 0;
        moat_rc one = nss_entries(o, d->path[i], &v, &n, err);
        keep_first(one, first, err, saved);
        if (!moat_ok(one)) {
            fprintf(out, "NSS %s: cannot be read\n", d->path[i]);
            continue;
        }
        int shown = 0, here = 0;
        fprintf(out, "NSS %s:\n", d->path[i]);
        for (int j = 0; j < n; j++) {
            if (strchr(v[j].trust, 'C') == NULL) {
                continue; /* user certificates and untrusted entries: not CAs it trusts */
            }
            int mine = ca != NULL && nss_holds(o, d->path[i], v[j].nick, ca);
            here |= mine;
            fprintf(out, "  %s %s  (trust %s)\n", mine ? "*" : " ", v[j].nick, v[j].trust);
            shown++;
        }
        if (shown == 0) {
            fprintf(out, "  (no trusted CA added)\n");
        }
        *found += here;
        free(v);
    }
    free(d);
}

moat_rc moat_trust_list(X509 *ca, const struct moat_trust_opts *o, FILE *out, int *found,
                        struct moat_err *err)
{
    int count = 0;
    moat_rc first = MOAT_RC_OK;
    struct moat_err saved = {0};
    if (o->system) {
        list_system(ca, o, out, &count, &first, err, &saved);
    }
    if (o->nss) {
        list_nss(ca, o, out, &count, &first, err, &saved);
    }
    if (found != NULL) {
        *found = count;
    }
    if (!moat_ok(first) && err != NULL) {
        *err = saved;
    }
    return first;
}
