/*
 * log.c: the error log writer. Formatting happens only for lines that pass the level check
 * (the macro in log.h tests it before any argument is evaluated).
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int moat_log_level_now = MOAT_LVL_INFO;
static int log_fd = 2;
static _Thread_local unsigned log_worker;

static const char *const level_names[MOAT_LVL_COUNT] = {"error", "warn", "info", "debug"};
static char log_path[PATH_MAX]; /* the file moat_log_open opened, for a reopen; "" = stderr */

/* The last warnings and errors, for the status page. Such lines are rare (a client's doing is
 * info at most), so a lock is no cost; the ring is copied out whole. */
static pthread_mutex_t recent_mu = PTHREAD_MUTEX_INITIALIZER;
static char recent[MOAT_LOG_RECENT][MOAT_LOG_RECENT_LEN];
static size_t recent_next, recent_n;

void moat_log_set_fd(int fd)
{
    log_fd = fd;
}

void moat_log_set_level(enum moat_log_lvl lvl)
{
    moat_log_level_now = (int)lvl;
}

void moat_log_set_worker(unsigned id)
{
    log_worker = id;
}

moat_rc moat_log_open(const char *target, struct moat_err *err)
{
    if (target == NULL || strcmp(target, "stderr") == 0) {
        log_fd = 2;
        return MOAT_RC_OK;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        moat_err_where(err, "%s", target);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot open the error log");
    }
    if (log_fd > 2) {
        close(log_fd);
    }
    log_fd = fd;
    snprintf(log_path, sizeof(log_path), "%s", target);
    return MOAT_RC_OK;
}

moat_rc moat_log_reopen(struct moat_err *err)
{
    if (log_path[0] == '\0') {
        return MOAT_RC_OK;
    }
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        moat_err_where(err, "%s", log_path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot reopen the error log (still writing the old file)");
    }
    /* dup2 swaps the file under the same number: a thread writing now writes to one or the
     * other, never to a closed descriptor. */
    if (dup2(fd, log_fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot reopen the error log");
    }
    close(fd);
    return MOAT_RC_OK;
}

size_t moat_log_recent(char (*out)[MOAT_LOG_RECENT_LEN], size_t max)
{
    pthread_mutex_lock(&recent_mu);
    size_t n = recent_n < max ? recent_n : max;
    for (size_t i = 0; i < n; i++) {
        size_t at = (recent_next + MOAT_LOG_RECENT - 1 - i) % MOAT_LOG_RECENT;
        memcpy(out[i], recent[at], MOAT_LOG_RECENT_LEN);
    }
    pthread_mutex_unlock(&recent_mu);
    return n;
}

void moat_log_write(enum moat_log_lvl lvl, unsigned long long conn_id, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    int k =
        snprintf(line + n, sizeof(line) - n, "%s ", level_names[lvl < MOAT_LVL_COUNT ? lvl : 0]);
    n += (size_t)k;
    if (log_worker != 0) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "w%u ", log_worker);
    }
    if (conn_id != 0) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "c%llu ", conn_id);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    n += (size_t)m;
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    if (lvl <= MOAT_LVL_WARN) {
        pthread_mutex_lock(&recent_mu);
        size_t keep = n < MOAT_LOG_RECENT_LEN - 1 ? n : MOAT_LOG_RECENT_LEN - 1;
        memcpy(recent[recent_next], line, keep);
        recent[recent_next][keep] = '\0';
        recent_next = (recent_next + 1) % MOAT_LOG_RECENT;
        recent_n += recent_n < MOAT_LOG_RECENT;
        pthread_mutex_unlock(&recent_mu);
    }
    line[n++] = '\n';
    /* One write per line; a short write to a full pipe is dropped rather than blocking a worker. */
    ssize_t w = write(log_fd, line, n);
    (void)w;
}
