/*
 * fdio.h: whole reads and writes on a descriptor, for files (a short count is retried, EINTR
 * too; sockets have their own paths, which must not block).
 */
#ifndef MOAT_CORE_FDIO_H
#define MOAT_CORE_FDIO_H

#include <stddef.h>
#include <stdint.h>

/* Write all n bytes: 1, or 0 with errno set (a write of 0 counts as ENOSPC). */
int moat_write_all(int fd, const void *p, size_t n);

/* Read exactly n bytes at `off`: 1, or 0 (errno set; 0 when the file ended first). */
int moat_pread_all(int fd, void *p, size_t n, uint64_t off);

#endif
