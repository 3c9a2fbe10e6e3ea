/*
 * log.h: the error log. One line per event: time, level, then the worker and connection ids
 * when there are some, then the words: `2026-11-23T06:50:01Z info w1 c42 tls handshake failed:
 * ...`. Peer-caused failures are info or debug, never error: a client must not fill the log. Each
 * line is one write(2), so threads never interleave inside a line.
 */
#ifndef MOAT_CORE_LOG_H
#define MOAT_CORE_LOG_H

#include "core/err.h"

#include <stddef.h>

enum moat_log_lvl {
    MOAT_LVL_ERROR = 0,
    MOAT_LVL_WARN,
    MOAT_LVL_INFO,
    MOAT_LVL_DEBUG,
    MOAT_LVL_COUNT /* keep last */
};

extern int moat_log_level_now; /* lines above this level are skipped before formatting */

/* Log to this fd (owned by the caller unless moat_log_open made it); default stderr. */
void moat_log_set_fd(int fd);
/* Open a log file for appending (0640); "stderr" means stderr. */
MOAT_MUST_USE moat_rc moat_log_open(const char *target, struct moat_err *err);
void moat_log_set_level(enum moat_log_lvl lvl);
/* Open the log file again (SIGUSR1, after logrotate moved it); nothing for stderr. */
MOAT_MUST_USE moat_rc moat_log_reopen(struct moat_err *err);
/* The last warning and error lines (newest first, at most `max`), for the status page. */
#define MOAT_LOG_RECENT 32
#define MOAT_LOG_RECENT_LEN 400
size_t moat_log_recent(char (*out)[MOAT_LOG_RECENT_LEN], size_t max);
/* Worker id (1-based, 0 = main thread) for this thread's lines. */
void moat_log_set_worker(unsigned id);

void moat_log_write(enum moat_log_lvl lvl, unsigned long long conn_id, const char *fmt, ...)
    MOAT_PRINTF(3, 4);

#define moat_log(lvl, conn_id, ...)                                                                \
    do {                                                                                           \
        if ((int)(lvl) <= moat_log_level_now) {                                                    \
            moat_log_write((lvl), (conn_id), __VA_ARGS__);                                         \
        }                                                                                          \
    } while (0)

#define moat_log_e(...) moat_log(MOAT_LVL_ERROR, 0, __VA_ARGS__)
#define moat_log_w(...) moat_log(MOAT_LVL_WARN, 0, __VA_ARGS__)
#define moat_log_i(...) moat_log(MOAT_LVL_INFO, 0, __VA_ARGS__)
#define moat_log_d(...) moat_log(MOAT_LVL_DEBUG, 0, __VA_ARGS__)

#endif
