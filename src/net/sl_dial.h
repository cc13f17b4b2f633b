/* Blocking client connections with a deadline, for the few places Sluice dials out from a
 * worker thread (JWKS and AWS over https, KMIP): connect, wait for a descriptor, drive one
 * OpenSSL call. Never used on the event loop. */
#ifndef SL_NET_DIAL_H
#define SL_NET_DIAL_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Waits until `fd` is ready for `ev` (POLLIN/POLLOUT) or `deadline` (sl_mono_ms) passes. */
bool sl_dial_wait(int fd, short ev, int64_t deadline);
/* A non-blocking, close-on-exec TCP connection to host:port (every address tried in turn)
 * before `deadline`; -1 with the reason in err ("cannot resolve ...", "cannot connect to
 * host:port: ..."). Caller owns the descriptor. */
int sl_dial_tcp(const char *host, const char *port, int64_t deadline, char *err, size_t elen);

/* The OpenSSL calls sl_dial_ssl_io drives. */
int sl_dial_op_connect(SSL *s, void *b, int n);
int sl_dial_op_read(SSL *s, void *b, int n);
int sl_dial_op_write(SSL *s, void *b, int n);
/* Drives one SSL call on the non-blocking `fd` until it completes or the deadline: >0 done,
 * 0 clean EOF (close_notify), -1 error (see ERR_get_error), -2 timed out. */
int sl_dial_ssl_io(SSL *ssl, int fd, int64_t deadline, int (*op)(SSL *, void *, int), void *buf,
                   int n);

#endif
