/*
 * admin.c: one request to moat's admin interface (see admin.h). Blocking, with a deadline:
 * it is a command-line tool's call, one at a time.
 */
#include "client/admin.h"

#include "core/sock.h"
#include "core/timer.h"
#include "http1/parse.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ANSWER_MAX (64u << 20)

/* Wait until fd is ready for `events` or the deadline passes; 0 ready, -1 timed out. */
static int wait_for(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = moat_now_ms();
        if (now >= deadline_ms) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(deadline_ms - now));
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static moat_rc connect_to(const char *spec, uint64_t deadline_ms, int *out, struct moat_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
        const char *path = spec + 5;
        if (strlen(path) >= sizeof(sun->sun_path)) {
            MOAT_FAIL(err, MOAT_E_USAGE, "the admin socket path %s is too long", path);
        }
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, strlen(path) + 1);
        len = sizeof(*sun);
    } else {
        struct moat_addr a[2]; /* "localhost": both families; the first is taken */
        size_t n = 0;
        MOAT_TRY(moat_addr_resolve(spec, a, 2, &n, err));
        ss = a[0].ss;
        len = a[0].len;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create a socket");
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        if (e == EINPROGRESS && wait_for(fd, POLLOUT, deadline_ms) == 0) {
            socklen_t elen = sizeof(e);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen);
        } else if (e == EINPROGRESS) {
            e = ETIMEDOUT;
        }
        if (e != 0 && e != EINPROGRESS) {
            close(fd);
            return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__,
                                "cannot reach moat's admin interface at %s (is moat serve "
                                "running, with this state folder or configuration? --admin, "
                                "--config or MOAT_STATE name another)",
                                spec);
        }
    }
    *out = fd;
    return MOAT_RC_OK;
}

moat_rc moat_admin_call(const char *spec, const char *token, const char *method, const char *path,
                        int timeout_ms, int *status, struct moat_buf *body, struct moat_err *err)
{
    uint64_t deadline = moat_now_ms() + (uint64_t)timeout_ms;
    int fd = -1;
    MOAT_TRY(connect_to(spec, deadline, &fd, err));
    char req[1024];
    int n =
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat/%s\r\n%s%s%s"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n",
                 method, path, strncmp(spec, "unix:", 5) == 0 ? "localhost" : spec, MOAT_VERSION,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    moat_rc rc = MOAT_RC_OK;
    if (n < 0 || (size_t)n >= sizeof(req)) {
        rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__, "the admin request is too long");
    }
    for (size_t at = 0; moat_ok(rc) && at < (size_t)n;) {
        ssize_t w = send(fd, req + at, (size_t)n - at, MSG_NOSIGNAL);
        if (w > 0) {
            at += (size_t)w;
        } else if (w < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, deadline) == 0) {
            continue;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            rc = moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                              "cannot send to the admin interface at %s", spec);
        }
    }
    /* The answer runs until the server closes (Connection: close). */
    struct moat_buf in;
    moat_buf_init(&in, ANSWER_MAX);
    while (moat_ok(rc)) {
        if (!moat_ok(moat_buf_reserve(&in, 16384))) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the admin interface's answer is over 64 MiB");
            break;
        }
        ssize_t r = read(fd, moat_buf_wrptr(&in), moat_buf_room(&in));
        if (r > 0) {
            in.wr += (size_t)r;
        } else if (r == 0) {
            break;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            if (wait_for(fd, POLLIN, deadline) != 0) {
                rc = moat_err_set(err, MOAT_E_IO, __FILE__, __LINE__,
                                  "the admin interface at %s did not answer within %d s", spec,
                                  timeout_ms / 1000);
            }
        } else {
            rc = moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                              "reading the admin interface's answer failed");
        }
    }
    close(fd);
    if (moat_ok(rc)) {
        struct moat_h1_resp *resp = calloc(1, sizeof(*resp));
        if (resp == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        } else {
            moat_h1_resp_init(resp);
            enum moat_h1_status st = moat_h1_parse_response(
                resp, moat_buf_rdptr(&in), moat_buf_len(&in), NULL, strcmp(method, "HEAD") == 0);
            if (st != MOAT_H1_DONE) {
                rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                  "%s answered with something that is not an HTTP answer (%s)",
                                  spec, resp->err_what ? resp->err_what : "cut short");
            } else {
                *status = resp->status;
                size_t blen = moat_buf_len(&in) - resp->head_len;
                if (resp->body == MOAT_H1_BODY_LENGTH && resp->content_length < blen) {
                    blen = (size_t)resp->content_length;
                }
                rc = moat_buf_append(body, moat_buf_rdptr(&in) + resp->head_len, blen);
            }
            free(resp);
        }
    }
    moat_buf_clear(&in);
    return rc;
}
