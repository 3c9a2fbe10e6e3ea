/*
 * ktls.c: the probe behind ktls.h. The kernel is asked the way OpenSSL will ask it: TCP_ULP
 * "tls" on an established TCP connection (the kernel refuses it on any other socket), which
 * also loads the module where modules may be loaded. Loopback only; nothing is sent.
 */
#include "tls/ktls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/opensslconf.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int answer;
static char reason[160];

static void probe(void)
{
#ifdef OPENSSL_NO_KTLS
    snprintf(reason, sizeof(reason), "this OpenSSL was built without kTLS");
#else
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int a = -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&sin, &sl) != 0 ||
        connect(c, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        (a = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        snprintf(reason, sizeof(reason), "cannot probe for it (a loopback connection: %s)",
                 strerror(errno));
    } else if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) != 0) {
        int e = errno;
        snprintf(reason, sizeof(reason), "%s (TCP_ULP \"tls\": %s)",
                 e == ENOENT ? "the kernel has no tls module" : "the kernel refuses it",
                 strerror(e));
    } else {
        answer = 1;
        snprintf(reason, sizeof(reason), "the kernel's tls module and OpenSSL's kTLS are there");
    }
    if (a >= 0) {
        close(a);
    }
    if (c >= 0) {
        close(c);
    }
    if (l >= 0) {
        close(l);
    }
#endif
}

int moat_ktls_available(char *why, size_t whylen)
{
    pthread_once(&once, probe);
    if (why != NULL && whylen > 0) {
        snprintf(why, whylen, "%s", reason);
    }
    return answer;
}
