/* fdio.c: see fdio.h. */
#include "core/fdio.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

int moat_write_all(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            if (w == 0) {
                errno = ENOSPC;
            }
            return 0;
        }
        q += w;
        n -= (size_t)w;
    }
    return 1;
}

int moat_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *q = p;
    while (n > 0) {
        ssize_t got = pread(fd, q, n, (off_t)off);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            if (got == 0) {
                errno = 0;
            }
            return 0;
        }
        q += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 1;
}
