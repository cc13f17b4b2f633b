#include "net/sl_dial.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_time.h"

bool sl_dial_wait(int fd, short ev, int64_t deadline) {
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int64_t left = deadline - sl_mono_ms();
        if (left <= 0) return false;
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

int sl_dial_tcp(const char *host, const char *port, int64_t deadline, char *err, size_t elen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        snprintf(err, elen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, why = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        why = errno;
        if (errno == EINPROGRESS) {
            why = ETIMEDOUT;
            if (sl_dial_wait(fd, POLLOUT, deadline)) {
                int e = 0;
                socklen_t el = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) break;
                why = e;
            }
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, elen, "cannot connect to %s:%s: %s", host, port,
                 strerror(why ? why : ECONNREFUSED));
    return fd;
}

int sl_dial_op_connect(SSL *s, void *b, int n) { return SSL_connect(s); }
int sl_dial_op_read(SSL *s, void *b, int n) { return SSL_read(s, b, n); }
int sl_dial_op_write(SSL *s, void *b, int n) { return SSL_write(s, b, n); }

int sl_dial_ssl_io(SSL *ssl, int fd, int64_t deadline, int (*op)(SSL *, void *, int), void *buf,
                   int n) {
    for (;;) {
        ERR_clear_error();
        int r = op(ssl, buf, n);
        if (r > 0) return r;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!sl_dial_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -2;
            continue;
        }
        return -1;
    }
}
