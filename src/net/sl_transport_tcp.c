#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/sl_transport.h"

static ssize_t tcp_read(sl_transport *t, void *buf, size_t len) {
    ssize_t n;
    do n = recv(t->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t tcp_writev(sl_transport *t, const struct iovec *iov, int iovcnt) {
    /* sendmsg rather than writev: MSG_NOSIGNAL turns a dead peer into EPIPE, not SIGPIPE. */
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n;
    do n = sendmsg(t->fd, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

static void tcp_close(sl_transport *t) {
    close(t->fd);
    free(t);
}

static uint32_t tcp_wants(const sl_transport *t) { return 0; }

static const sl_transport_vt tcp_vt = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .close = tcp_close,
    .wants = tcp_wants,
};

sl_transport *sl_transport_tcp_new(int fd) {
    sl_transport *t = malloc(sizeof *t);
    if (!t) {
        close(fd);
        return NULL;
    }
    t->vt = &tcp_vt;
    t->fd = fd;
    return t;
}
