/* Byte transport under a connection. Plain TCP now; TLS becomes another implementation of the
 * same vtable (embed sl_transport as the first member), so the framing code never changes. */
#ifndef SL_NET_TRANSPORT_H
#define SL_NET_TRANSPORT_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sl_transport sl_transport;

typedef struct sl_transport_vt {
    const char *name;
    /* > 0: bytes read; 0: orderly end of stream; -1: errno set (EAGAIN: retry when the fd is
     * ready for the events wants() reports plus the connection's own). */
    ssize_t (*read)(sl_transport *t, void *buf, size_t len);
    /* >= 0: bytes written (may be short); -1: errno set. Never raises SIGPIPE. After a short
     * count or EAGAIN the next call must start with the bytes not yet reported written (a TLS
     * transport may have encrypted and half-sent them already). iovcnt 0 only flushes what the
     * transport holds of its own (see wants). */
    ssize_t (*writev)(sl_transport *t, const struct iovec *iov, int iovcnt);
    /* Closes the fd and frees `t`. */
    void (*close)(sl_transport *t);
    /* SL_EV_READ/SL_EV_WRITE the transport itself needs to make progress (a TLS handshake, a
     * write that must first read, bytes of its own to send: an alert TLS wrote while reading);
     * 0 for TCP. */
    uint32_t (*wants)(const sl_transport *t);
    /* Optional (NULL for TCP): true when input is buffered above the fd (decrypted TLS bytes),
     * so the server reads again without waiting for the fd to become readable. */
    bool (*pending)(const sl_transport *t);
    /* Optional (NULL: never): true when the transport holds the start of a unit it cannot
     * deliver until more bytes arrive (a TLS record cut short), so the server quick-ACKs. */
    bool (*partial)(const sl_transport *t);
    /* Optional (NULL: always): true once the transport's own handshake is complete. */
    bool (*established)(const sl_transport *t);
} sl_transport_vt;

struct sl_transport {
    const sl_transport_vt *vt;
    int fd;
};

/* Wraps a connected non-blocking socket. Takes ownership of `fd` (also on failure, when it is
 * closed and NULL returned); vt->close releases both. */
sl_transport *sl_transport_tcp_new(int fd);

#endif
