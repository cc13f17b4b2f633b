/* The control socket: a unix stream socket through which `sluice keys ...` asks the running
 * broker for key operations (docs/keys-cli.md). It lives on the broker's loop like any other fd
 * and never blocks it.
 *
 * Who may talk: the socket file is created 0600 (under the 0700 data directory) and every
 * accepted peer is checked with SO_PEERCRED: its uid must be the broker's or root's, else the
 * connection is closed before a byte is read. The file system check alone would do, but a
 * socket path configured into a shared directory must not widen who can shred a topic.
 *
 * Protocol (one exchange per connection, text, "\n"-terminated lines):
 *   client -> broker: ONE request line of at most SL_CTL_LINE_MAX bytes: words separated by
 *       single spaces, each word printable ASCII (0x21..0x7e), at most SL_CTL_MAX_WORDS words;
 *       the first is the command. Anything else (control bytes, a longer line, no line within
 *       SL_CTL_REQUEST_TIMEOUT_MS) closes the connection with an "error" line when possible.
 *   broker -> client: any number of
 *       "progress <done> <total> <unit>"   (a long operation's advance)
 *       "json <one line of JSON>"          (a structured answer, e.g. status)
 *       "info <text>"                      (a remark for people)
 *   then exactly one final line, "ok <text>" or "error <text>", and the broker closes.
 * A client that reads nothing while answers wait is disconnected after SL_CTL_WRITE_TIMEOUT_MS;
 * progress lines are dropped (never the final line) while more than SL_CTL_OUT_SOFT_MAX bytes
 * wait to be read. */
#ifndef SL_CTL_H
#define SL_CTL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "net/sl_loop.h"

#define SL_CTL_LINE_MAX           4096
#define SL_CTL_MAX_WORDS          8
#define SL_CTL_REQUEST_TIMEOUT_MS 5000
#define SL_CTL_WRITE_TIMEOUT_MS   30000
#define SL_CTL_OUT_SOFT_MAX       (64 * 1024)
#define SL_CTL_MAX_CONNS          16

/* A parsed request line. `argv` points into `buf`. */
typedef struct sl_ctl_req {
    int argc;
    char *argv[SL_CTL_MAX_WORDS];
    char buf[SL_CTL_LINE_MAX + 1];
} sl_ctl_req;

/* Parses one request line (`n` bytes, without the "\n") into `out` (copied). SL_EPROTO with a
 * short reason in `why` (static text) when it breaks the rules above. Pure. */
sl_err sl_ctl_parse_line(const char *line, size_t n, sl_ctl_req *out, const char **why);

/* The peer rule: the broker's own uid or root. Pure. */
bool sl_ctl_uid_allowed(uid_t peer, uid_t self);
/* Reads SO_PEERCRED of the connected unix socket `fd`; false when it cannot be read. */
bool sl_ctl_peer_cred(int fd, uid_t *uid, pid_t *pid);

/* The socket path for `cfg`: sluice.ctl.socket, else <log.dirs>/sluice-ctl.sock. The broker
 * and the CLI both use this, so `sluice keys -c FILE` finds what `sluice serve -c FILE` made. */
void sl_ctl_socket_path(const sl_config *cfg, char *out, size_t n);
/* Connects to the control socket at `path` (blocking, close-on-exec); a path longer than a
 * sockaddr_un holds goes through its directory's descriptor. The caller owns the fd. -1 with
 * errno on failure. */
int sl_ctl_connect(const char *path);

/* ---- Server ---------------------------------------------------------------------------- */
typedef struct sl_ctl sl_ctl;
typedef struct sl_ctl_conn sl_ctl_conn;

/* Runs on the loop once a peer's request line has been parsed. The handler answers with
 * sl_ctl_send (any number) and exactly one sl_ctl_finish, now or later. `req` is valid during
 * the call only. */
typedef void (*sl_ctl_request_fn)(void *ctx, sl_ctl_conn *c, const sl_ctl_req *req);
/* Runs on the loop when the peer of a request not yet finished goes away (or the server is
 * freed): the handler must not use `c` afterwards, and should stop work no one waits for. */
typedef void (*sl_ctl_gone_fn)(void *ctx, sl_ctl_conn *c);
/* Runs on the loop for a peer refused by the uid rule (for the audit trail). */
typedef void (*sl_ctl_refused_fn)(void *ctx, uid_t uid, pid_t pid);

typedef struct sl_ctl_handlers {
    void *ctx;
    sl_ctl_request_fn on_request;
    sl_ctl_gone_fn on_gone;
    sl_ctl_refused_fn on_refused; /* may be NULL */
    int request_timeout_ms;       /* 0: SL_CTL_REQUEST_TIMEOUT_MS (tests shorten it) */
    int write_timeout_ms;         /* 0: SL_CTL_WRITE_TIMEOUT_MS (tests shorten it) */
} sl_ctl_handlers;

/* Binds `path` (a stale socket file there is replaced; any other kind of file is refused) with
 * mode 0600 and listens on `loop` (borrowed; must outlive the server). Caller owns *out. */
sl_err sl_ctl_new(sl_loop *loop, const char *path, const sl_ctl_handlers *h, sl_ctl **out,
                  char *err, size_t errlen);
/* Closes every connection (on_gone for requests not finished), stops listening, removes the
 * socket file. NULL-safe. Loop thread. */
void sl_ctl_free(sl_ctl *s);
/* Queues one answer line (`kind` "progress", "json" or "info"; `text` must hold no "\n").
 * Progress lines are dropped while the peer lags (see above). Loop thread. */
void sl_ctl_send(sl_ctl_conn *c, const char *kind, const char *text);
__attribute__((format(printf, 3, 4))) void sl_ctl_sendf(sl_ctl_conn *c, const char *kind,
                                                        const char *fmt, ...);
/* Queues the final line ("ok <text>" or "error <text>") and closes once it is written. `c` is
 * invalid afterwards. Loop thread. */
void sl_ctl_finish(sl_ctl_conn *c, bool ok, const char *text);
/* Connections open now (tests). */
int sl_ctl_conns(const sl_ctl *s);
/* The peer's credentials (as checked at accept). */
void sl_ctl_conn_peer(const sl_ctl_conn *c, uid_t *uid, pid_t *pid);

#endif
