#include "ctl/sl_ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/sl_logging.h"

/* ---- request lines and peers (pure) ---- */

sl_err sl_ctl_parse_line(const char *line, size_t n, sl_ctl_req *out, const char **why) {
    static const char *ignored;
    if (!why) why = &ignored;
    memset(out, 0, sizeof *out);
    if (n == 0) return *why = "empty request", SL_EPROTO;
    if (n > SL_CTL_LINE_MAX) return *why = "request line too long", SL_EPROTO;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch != ' ' && (ch < 0x21 || ch > 0x7e))
            return *why = "request holds a byte that is not printable ASCII", SL_EPROTO;
    }
    memcpy(out->buf, line, n);
    out->buf[n] = 0;
    /* One space between words, none at the ends: a word is never empty, so "shred  t" cannot
     * mean something other than what the client printed. */
    char *p = out->buf;
    for (;;) {
        if (*p == ' ' || *p == 0) return *why = "empty word in request", SL_EPROTO;
        if (out->argc == SL_CTL_MAX_WORDS) return *why = "too many words in request", SL_EPROTO;
        out->argv[out->argc++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    return SL_OK;
}

bool sl_ctl_uid_allowed(uid_t peer, uid_t self) { return peer == self || peer == 0; }

bool sl_ctl_peer_cred(int fd, uid_t *uid, pid_t *pid) {
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof cr) return false;
    *uid = cr.uid;
    *pid = cr.pid;
    return true;
}

void sl_ctl_socket_path(const sl_config *cfg, char *out, size_t n) {
    if (cfg->sluice_ctl_socket[0])
        snprintf(out, n, "%s", cfg->sluice_ctl_socket);
    else
        snprintf(out, n, "%s/sluice-ctl.sock", cfg->log_dirs);
}

/* Fills `sa` for `path`. A path too long for sun_path (deep test or container directories) is
 * reached through its directory: /proc/self/fd/<dirfd>/<name>, with *dirfd kept open by the
 * caller until bind/connect returned. */
static int sockaddr_for(const char *path, struct sockaddr_un *sa, int *dirfd) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    *dirfd = -1;
    size_t n = strlen(path);
    if (n == 0) return errno = EINVAL, -1;
    if (n < sizeof sa->sun_path) {
        memcpy(sa->sun_path, path, n);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash || (size_t)(slash - path) >= sizeof dir) return errno = ENAMETOOLONG, -1;
    size_t dl = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, dl);
    dir[dl] = 0;
    *dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0) return -1;
    int w = snprintf(sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/%s", *dirfd, slash + 1);
    if (w < 0 || (size_t)w >= sizeof sa->sun_path) {
        close(*dirfd);
        *dirfd = -1;
        return errno = ENAMETOOLONG, -1;
    }
    return 0;
}

int sl_ctl_connect(const char *path) {
    struct sockaddr_un sa;
    int dirfd = -1;
    if (sockaddr_for(path, &sa, &dirfd) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int saved = errno;
    if (dirfd >= 0) close(dirfd);
    if (r != 0 && fd >= 0) close(fd);
    errno = saved;
    return r == 0 ? fd : -1;
}

/* ---- server ---- */

struct sl_ctl_conn {
    sl_ctl *s;
    int fd;
    uid_t uid;
    pid_t pid;
    char in[SL_CTL_LINE_MAX + 1];
    size_t inlen;
    bool requested; /* the handler owns the exchange until finish */
    bool finished;  /* the final line is queued */
    bool dead;      /* the peer is gone or timed out: closing */
    bool want_write;
    char *out;
    size_t olen, opos, ocap;
    sl_timer *timer; /* request deadline, then the write stall deadline */
    sl_post closer;
    sl_ctl_conn *prev, *next;
};

struct sl_ctl {
    sl_loop *loop;
    int lfd;
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    sl_ctl_handlers h;
    sl_ctl_conn *conns;
    int nconns;
};

/* Hard cap on what may wait for a peer: a status of a huge registry fits, a peer that never
 * reads does not keep the broker's memory. */
#define OUT_HARD_MAX (64u << 20)

static void conn_free(sl_ctl_conn *c, bool notify) {
    sl_ctl *s = c->s;
    if (c->timer) sl_timer_cancel(s->loop, c->timer);
    sl_loop_unpost(s->loop, &c->closer);
    sl_loop_unwatch(s->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    bool gone = notify && c->requested && !c->finished;
    if (gone) s->h.on_gone(s->h.ctx, c);
    free(c->out);
    free(c);
}

static void closer_run(void *ctx) {
    sl_ctl_conn *c = ctx;
    conn_free(c, true);
}

/* Closing is posted, never done inside a caller's sl_ctl_send/finish: the handler may still be
 * on its stack with `c` in hand. */
static void conn_close_later(sl_ctl_conn *c) {
    c->dead = true;
    sl_loop_post(c->s->loop, &c->closer);
}

static void write_stalled(void *ctx) {
    sl_ctl_conn *c = ctx;
    c->timer = NULL;
    SL_WARN("ctl", "control peer does not read its answer; closing", "uid=%u pid=%d",
            (unsigned)c->uid, (int)c->pid);
    conn_close_later(c);
}

static void flush(sl_ctl_conn *c) {
    if (c->dead) return;
    bool progressed = false;
    while (c->opos < c->olen) {
        ssize_t w = send(c->fd, c->out + c->opos, c->olen - c->opos, MSG_NOSIGNAL);
        if (w > 0) {
            c->opos += (size_t)w;
            progressed = true;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close_later(c); /* EPIPE, ECONNRESET: the peer left */
        return;
    }
    if (c->opos == c->olen) {
        c->opos = c->olen = 0;
        if (c->timer && c->requested) sl_timer_cancel(c->s->loop, c->timer), c->timer = NULL;
        if (c->want_write) {
            c->want_write = false;
            (void)sl_loop_modify(c->s->loop, c->fd, SL_EV_READ);
        }
        if (c->finished) conn_close_later(c);
        return;
    }
    if (!c->want_write) {
        c->want_write = true;
        (void)sl_loop_modify(c->s->loop, c->fd, SL_EV_READ | SL_EV_WRITE);
    }
    if (progressed && c->timer) sl_timer_cancel(c->s->loop, c->timer), c->timer = NULL;
    if (!c->timer)
        c->timer = sl_timer_start(c->s->loop,
                                  c->s->h.write_timeout_ms > 0 ? c->s->h.write_timeout_ms
                                                               : SL_CTL_WRITE_TIMEOUT_MS,
                                  write_stalled, c);
}

static void queue_line(sl_ctl_conn *c, const char *kind, const char *text) {
    if (c->dead) return;
    size_t kl = strlen(kind), tl = strlen(text);
    /* A line is one line: a "\n" inside text would let a topic name or a KMS message forge a
     * final line, so it becomes a space. */
    size_t need = kl + 1 + tl + 1;
    if (c->olen + need > OUT_HARD_MAX) {
        conn_close_later(c);
        return;
    }
    if (c->olen + need > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 1024;
        while (cap < c->olen + need) cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            conn_close_later(c);
            return;
        }
        c->out = p;
        c->ocap = cap;
    }
    char *o = c->out + c->olen;
    memcpy(o, kind, kl);
    o[kl] = ' ';
    for (size_t i = 0; i < tl; i++)
        o[kl + 1 + i] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    o[kl + 1 + tl] = '\n';
    c->olen += need;
}

void sl_ctl_send(sl_ctl_conn *c, const char *kind, const char *text) {
    if (c->dead || c->finished) return;
    if (!strcmp(kind, "progress") && c->olen - c->opos > SL_CTL_OUT_SOFT_MAX) return;
    queue_line(c, kind, text);
    flush(c);
}

void sl_ctl_sendf(sl_ctl_conn *c, const char *kind, const char *fmt, ...) {
    char line[SL_CTL_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sl_ctl_send(c, kind, line);
}

void sl_ctl_finish(sl_ctl_conn *c, bool ok, const char *text) {
    if (c->finished) return;
    queue_line(c, ok ? "ok" : "error", text && text[0] ? text : ok ? "done" : "failed");
    c->finished = true;
    flush(c);
}

int sl_ctl_conns(const sl_ctl *s) { return s->nconns; }

void sl_ctl_conn_peer(const sl_ctl_conn *c, uid_t *uid, pid_t *pid) {
    *uid = c->uid;
    *pid = c->pid;
}

static void request_timeout(void *ctx) {
    sl_ctl_conn *c = ctx;
    c->timer = NULL;
    queue_line(c, "error", "no request line within the time limit");
    c->finished = true;
    flush(c);
    conn_close_later(c); /* a silent peer gets one try at the answer, no wait */
}

static void conn_io(void *ctx, uint32_t ev) {
    sl_ctl_conn *c = ctx;
    if (c->dead) return;
    if (ev & SL_EV_WRITE) flush(c);
    if (c->dead || !(ev & (SL_EV_READ | SL_EV_ERROR))) return;
    for (;;) {
        char junk[512];
        bool head = !c->requested && !c->finished;
        char *dst = head ? c->in + c->inlen : junk;
        size_t room = head ? sizeof c->in - c->inlen : sizeof junk;
        ssize_t r = recv(c->fd, dst, room, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            /* The peer left (or half-closed: the protocol has it keep its side open until the
             * final line, so either way no one will read what comes next). */
            conn_close_later(c);
            return;
        }
        if (!head) continue; /* bytes after the request line mean nothing */
        size_t from = c->inlen;
        c->inlen += (size_t)r;
        char *nl = memchr(c->in + from, '\n', c->inlen - from);
        if (!nl) {
            if (c->inlen > SL_CTL_LINE_MAX) {
                sl_ctl_finish(c, false, "request line too long");
                return;
            }
            continue;
        }
        if (c->timer) sl_timer_cancel(c->s->loop, c->timer), c->timer = NULL;
        sl_ctl_req req;
        const char *why = NULL;
        if (sl_ctl_parse_line(c->in, (size_t)(nl - c->in), &req, &why) != SL_OK) {
            sl_ctl_finish(c, false, why);
            return;
        }
        c->requested = true;
        sl_ctl *s = c->s;
        s->h.on_request(s->h.ctx, c, &req);
        return; /* `c` may be finished (closing) now; later bytes are read next time */
    }
}

static void accept_ready(void *ctx, uint32_t ev) {
    sl_ctl *s = ctx;
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                SL_WARN("ctl", "accept failed", "err=\"%s\"", strerror(errno));
            return;
        }
        uid_t uid = (uid_t)-1;
        pid_t pid = 0;
        if (!sl_ctl_peer_cred(fd, &uid, &pid) || !sl_ctl_uid_allowed(uid, geteuid())) {
            SL_WARN("ctl", "control connection refused: not the broker's user nor root",
                    "uid=%d pid=%d", (int)uid, (int)pid);
            if (s->h.on_refused) s->h.on_refused(s->h.ctx, uid, pid);
            close(fd);
            continue;
        }
        if (s->nconns >= SL_CTL_MAX_CONNS) {
            static const char busy[] = "error too many control connections\n";
            (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        sl_ctl_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->uid = uid;
        c->pid = pid;
        c->closer = (sl_post){.cb = closer_run, .ctx = c};
        if (sl_loop_watch(s->loop, fd, SL_EV_READ, conn_io, c) != SL_OK) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        c->timer = sl_timer_start(s->loop,
                                  s->h.request_timeout_ms > 0 ? s->h.request_timeout_ms
                                                              : SL_CTL_REQUEST_TIMEOUT_MS,
                                  request_timeout, c);
    }
}

sl_err sl_ctl_new(sl_loop *loop, const char *path, const sl_ctl_handlers *h, sl_ctl **out,
                  char *err, size_t errlen) {
    *out = NULL;
    if (strlen(path) >= PATH_MAX) {
        snprintf(err, errlen, "sluice.ctl.socket: path too long");
        return SL_ECONFIG;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "sluice.ctl.socket: %s exists and is not a socket", path);
            return SL_ECONFIG;
        }
        /* A socket someone still answers on is a live broker's: never take it over. */
        int probe = sl_ctl_connect(path);
        if (probe >= 0) {
            close(probe);
            snprintf(err, errlen,
                     "sluice.ctl.socket: %s is in use by another process (another broker on "
                     "this data directory?)",
                     path);
            return SL_ECONFIG;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "sluice.ctl.socket: cannot remove the stale %s: %s", path,
                     strerror(errno));
            return SL_EIO;
        }
    }
    sl_ctl *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    s->loop = loop;
    s->h = *h;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    int dirfd = -1;
    int r = s->lfd < 0 ? -1 : sockaddr_for(path, &sa, &dirfd);
    if (r == 0) {
        /* Created 0600 from the first instant: a chmod after bind would leave a window in
         * which anyone could connect (and the peer check is the second line, not the first). */
        mode_t old = umask(0177);
        r = bind(s->lfd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
    }
    int saved = errno;
    if (dirfd >= 0) close(dirfd);
    errno = saved;
    if (r == 0) r = listen(s->lfd, SL_CTL_MAX_CONNS);
    if (r == 0 && lstat(path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    if (r != 0) {
        snprintf(err, errlen, "sluice.ctl.socket: cannot listen on %s: %s", path, strerror(errno));
        if (s->lfd >= 0) close(s->lfd);
        free(s);
        return SL_EIO;
    }
    if (sl_loop_watch(loop, s->lfd, SL_EV_READ, accept_ready, s) != SL_OK) {
        snprintf(err, errlen, "sluice.ctl.socket: cannot watch the socket");
        close(s->lfd);
        (void)unlink(path);
        free(s);
        return SL_EIO;
    }
    SL_INFO("ctl", "control socket listening", "path=%s", path);
    *out = s;
    return SL_OK;
}

void sl_ctl_free(sl_ctl *s) {
    if (!s) return;
    while (s->conns) conn_free(s->conns, true);
    sl_loop_unwatch(s->loop, s->lfd);
    close(s->lfd);
    /* Only our own socket file: another process may have replaced it meanwhile. */
    struct stat st;
    if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
        st.st_ino == s->ino)
        (void)unlink(s->path);
    free(s);
}
