/* Control socket: request line rules, the peer rule, and the server on a real loop (file mode,
 * stale socket replacement, answers, the request deadline, a refused uid). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl/sl_ctl.h"
#include "net/sl_loop.h"
#include "sl_test.h"

SL_TEST(ctl_parse_accepts_words) {
    sl_ctl_req r;
    CHECK_EQ(sl_ctl_parse_line("status", 6, &r, NULL), SL_OK);
    CHECK_EQ(r.argc, 1);
    CHECK(!strcmp(r.argv[0], "status"));
    const char *l = "shred payments.eu-1 payments.eu-1";
    CHECK_EQ(sl_ctl_parse_line(l, strlen(l), &r, NULL), SL_OK);
    CHECK_EQ(r.argc, 3);
    CHECK(!strcmp(r.argv[1], "payments.eu-1") && !strcmp(r.argv[2], "payments.eu-1"));
    /* exactly the word limit */
    l = "a b c d e f g h";
    CHECK_EQ(sl_ctl_parse_line(l, strlen(l), &r, NULL), SL_OK);
    CHECK_EQ(r.argc, SL_CTL_MAX_WORDS);
    /* exactly the length limit */
    char *big = malloc(SL_CTL_LINE_MAX + 1);
    CHECK(big);
    memset(big, 'x', SL_CTL_LINE_MAX + 1);
    sl_err e = sl_ctl_parse_line(big, SL_CTL_LINE_MAX, &r, NULL);
    sl_err e2 = sl_ctl_parse_line(big, SL_CTL_LINE_MAX + 1, &r, NULL);
    free(big);
    CHECK_EQ(e, SL_OK);
    CHECK_EQ(e2, SL_EPROTO);
}

SL_TEST(ctl_parse_refuses_malformed) {
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"", 0},           {" status", 7},
        {"status ", 7},    {"shred  t t", 10},
        {"sta\ttus", 7},   {"status\r", 7},
        {"sta\0tus", 7},   {"st\x7f", 3},
        {"st\xc3\xa9", 4}, {"a b c d e f g h i", 17},
        {" ", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_ctl_req r;
        const char *why = NULL;
        if (sl_ctl_parse_line(bad[i].s, bad[i].n, &r, &why) != SL_EPROTO || !why) {
            fprintf(stderr, "  accepted bad line #%zu\n", i);
            CHECK(0);
        }
    }
}

SL_TEST(ctl_uid_rule) {
    CHECK(sl_ctl_uid_allowed(1000, 1000));
    CHECK(sl_ctl_uid_allowed(0, 1000));
    CHECK(sl_ctl_uid_allowed(0, 0));
    CHECK(!sl_ctl_uid_allowed(1001, 1000));
    CHECK(!sl_ctl_uid_allowed(1000, 0));
    CHECK(!sl_ctl_uid_allowed((uid_t)-1, 1000));
}

SL_TEST(ctl_peer_cred_of_socketpair) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    uid_t uid = 12345;
    pid_t pid = 0;
    bool ok = sl_ctl_peer_cred(sv[0], &uid, &pid);
    close(sv[0]);
    close(sv[1]);
    CHECK(ok);
    CHECK_EQ(uid, geteuid());
    CHECK_EQ(pid, getpid());
    /* not a socket: no credentials */
    int nul = open("/dev/null", O_RDONLY);
    ok = sl_ctl_peer_cred(nul, &uid, &pid);
    close(nul);
    CHECK(!ok);
}

SL_TEST(ctl_socket_path_default_and_override) {
    sl_config c;
    sl_config_defaults(&c);
    snprintf(c.log_dirs, sizeof c.log_dirs, "/var/lib/sluice");
    char p[SL_CFG_STR_MAX + 32];
    sl_ctl_socket_path(&c, p, sizeof p);
    CHECK(!strcmp(p, "/var/lib/sluice/sluice-ctl.sock"));
    snprintf(c.sluice_ctl_socket, sizeof c.sluice_ctl_socket, "/run/sluice/ctl");
    sl_ctl_socket_path(&c, p, sizeof p);
    CHECK(!strcmp(p, "/run/sluice/ctl"));
}

/* ---- a server on a loop ---- */

typedef struct fixture {
    sl_loop *loop;
    sl_ctl *ctl;
    int requests, gone, refused;
    uid_t refused_uid;
    char last[64];
    sl_ctl_conn *held; /* a request left unanswered */
} fixture;

static void fx_request(void *ctx, sl_ctl_conn *c, const sl_ctl_req *req) {
    fixture *f = ctx;
    f->requests++;
    snprintf(f->last, sizeof f->last, "%s", req->argv[0]);
    if (!strcmp(req->argv[0], "hold")) {
        f->held = c;
        return;
    }
    if (!strcmp(req->argv[0], "flood")) { /* answers the peer must read, never dropped */
        static char big[64 * 1024];
        memset(big, 'j', sizeof big - 1);
        for (int i = 0; i < 128; i++) sl_ctl_send(c, "json", big);
        sl_ctl_finish(c, true, "flooded");
        return;
    }
    if (!strcmp(req->argv[0], "progress-flood")) { /* progress a lagging peer may miss */
        for (int i = 0; i < 100000; i++) sl_ctl_sendf(c, "progress", "%d 100000 segments", i);
        sl_ctl_finish(c, true, "done");
        return;
    }
    sl_ctl_send(c, "progress", "1 2 segments");
    sl_ctl_send(c, "info", "two\nlines"); /* a newline must not forge a final line */
    sl_ctl_finish(c, true, "done");
}

static void fx_gone(void *ctx, sl_ctl_conn *c) {
    fixture *f = ctx;
    f->gone++;
    if (f->held == c) f->held = NULL;
}

static void fx_refused(void *ctx, uid_t uid, pid_t pid) {
    fixture *f = ctx;
    f->refused++;
    f->refused_uid = uid;
}

static char *tmpdir_long(bool longpath) {
    static char t[512];
    snprintf(t, sizeof t, "/tmp/sl-ctl-XXXXXX");
    if (!mkdtemp(t)) return NULL;
    if (longpath) {
        /* deeper than a sockaddr_un holds */
        size_t n = strlen(t);
        snprintf(t + n, sizeof t - n, "/%s",
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        if (mkdir(t, 0700) != 0) return NULL;
        n = strlen(t);
        snprintf(t + n, sizeof t - n, "/%s",
                 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        if (mkdir(t, 0700) != 0) return NULL;
    }
    return t;
}

static bool fx_open_w(fixture *f, const char *path, int timeout_ms, int write_ms) {
    memset(f, 0, sizeof *f);
    f->loop = sl_loop_new();
    sl_ctl_handlers h = {.ctx = f,
                         .on_request = fx_request,
                         .on_gone = fx_gone,
                         .on_refused = fx_refused,
                         .request_timeout_ms = timeout_ms,
                         .write_timeout_ms = write_ms};
    char err[256] = "";
    sl_err e = sl_ctl_new(f->loop, path, &h, &f->ctl, err, sizeof err);
    if (e) fprintf(stderr, "  sl_ctl_new: %s\n", err);
    return e == SL_OK;
}

static bool fx_open(fixture *f, const char *path, int timeout_ms) {
    return fx_open_w(f, path, timeout_ms, 0);
}

static void fx_close(fixture *f) {
    sl_ctl_free(f->ctl);
    sl_loop_free(f->loop);
}

/* Runs the loop until `fd` has a complete answer (a final line, then EOF) or 5 s pass. */
static size_t pump_answer(fixture *f, int fd, char *buf, size_t cap) {
    size_t n = 0;
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 500; i++) {
        sl_loop_run_once(f->loop, 10);
        for (;;) {
            ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
            if (r > 0) {
                n += (size_t)r;
                continue;
            }
            if (r == 0) {
                buf[n] = 0;
                return n;
            }
            break;
        }
    }
    buf[n] = 0;
    return n;
}

static void run_exchange(int *sl_failed_, bool longpath) {
    char *dir = tmpdir_long(longpath);
    CHECK(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/sluice-ctl.sock", dir);
    CHECK(strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path) || !longpath);
    fixture f;
    CHECK(fx_open(&f, path, 0));
    struct stat st;
    CHECK(lstat(path, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ(st.st_mode & 0777, 0600);
    int fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "status\n", 7) == 7);
    char buf[1024];
    pump_answer(&f, fd, buf, sizeof buf);
    close(fd);
    CHECK_EQ(f.requests, 1);
    CHECK(!strcmp(buf, "progress 1 2 segments\ninfo two lines\nok done\n"));
    fx_close(&f);
    CHECK(lstat(path, &st) != 0); /* removed at free */
    for (int up = longpath ? 3 : 1; up > 0; up--) {
        rmdir(dir);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
    }
}

SL_TEST(ctl_server_answers_with_mode_0600) { run_exchange(sl_failed_, false); }

SL_TEST(ctl_server_long_path) { run_exchange(sl_failed_, true); }

SL_TEST(ctl_server_refuses_bad_lines_and_silence) {
    char *dir = tmpdir_long(false);
    CHECK(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    fixture f;
    CHECK(fx_open(&f, path, 100));
    char buf[1024];
    /* a control byte */
    int fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "sta\x01tus\n", 8) == 8);
    pump_answer(&f, fd, buf, sizeof buf);
    close(fd);
    CHECK(!strncmp(buf, "error ", 6));
    /* longer than the bound, with no newline at all */
    fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    char big[SL_CTL_LINE_MAX + 100];
    memset(big, 'a', sizeof big);
    CHECK(write(fd, big, sizeof big) == (ssize_t)sizeof big);
    pump_answer(&f, fd, buf, sizeof buf);
    close(fd);
    CHECK(!strcmp(buf, "error request line too long\n"));
    /* silence: closed after the (shortened) request deadline */
    fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    pump_answer(&f, fd, buf, sizeof buf);
    close(fd);
    CHECK(!strcmp(buf, "error no request line within the time limit\n"));
    CHECK_EQ(f.requests, 0);
    /* a peer leaving before the answer: on_gone, once */
    fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "hold\n", 5) == 5);
    for (int i = 0; i < 100 && !f.held; i++) sl_loop_run_once(f.loop, 10);
    CHECK(f.held);
    close(fd);
    for (int i = 0; i < 100 && !f.gone; i++) sl_loop_run_once(f.loop, 10);
    CHECK_EQ(f.gone, 1);
    CHECK(!f.held);
    fx_close(&f);
    rmdir(dir);
}

SL_TEST(ctl_server_replaces_stale_socket_only) {
    char *dir = tmpdir_long(false);
    CHECK(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    /* a stale socket file: bound, then its process "died" */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(s);
    fixture f;
    CHECK(fx_open(&f, path, 0));
    /* a second server on the same live socket is refused */
    fixture g;
    CHECK(!fx_open(&g, path, 0));
    sl_loop_free(g.loop);
    fx_close(&f);
    /* a regular file is never deleted */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK(!fx_open(&g, path, 0));
    sl_loop_free(g.loop);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    unlink(path);
    rmdir(dir);
}

/* The peer rule on a real connection: a process of another uid, reaching a socket whose mode a
 * careless operator widened, is refused by SO_PEERCRED. Needs root to switch uid (CI runs as
 * root); otherwise the pure rule above is what is tested. */
SL_TEST(ctl_server_refuses_other_uid) {
    if (geteuid() != 0) return;
    char *dir = tmpdir_long(false);
    CHECK(dir);
    CHECK(chmod(dir, 0755) == 0);
    char path[600];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    fixture f;
    CHECK(fx_open(&f, path, 0));
    CHECK(chmod(path, 0666) == 0);
    pid_t child = fork();
    if (child == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        int fd = sl_ctl_connect(path);
        if (fd < 0) _exit(4);
        /* closed already (EPIPE, no signal): refused */
        if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) _exit(0);
        char b[64];
        ssize_t r = read(fd, b, sizeof b);
        _exit(r > 0 ? 5 : 0); /* any answer means it was served */
    }
    CHECK(child > 0);
    int status = -1;
    for (int i = 0; i < 500; i++) {
        sl_loop_run_once(f.loop, 10);
        if (waitpid(child, &status, WNOHANG) == child) break;
    }
    fx_close(&f);
    rmdir(dir);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_EQ(f.refused, 1);
    CHECK_EQ(f.refused_uid, 65534);
    CHECK_EQ(f.requests, 0);
}

/* A peer that does not read: progress is dropped beyond the soft bound (the final line never
 * is), and a peer that reads nothing at all is disconnected after the write deadline. */
SL_TEST(ctl_server_bounds_a_lagging_peer) {
    char *dir = tmpdir_long(false);
    CHECK(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    fixture f;
    CHECK(fx_open_w(&f, path, 0, 300));
    int fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "progress-flood\n", 15) == 15);
    for (int i = 0; i < 10 && f.requests == 0; i++) sl_loop_run_once(f.loop, 10);
    CHECK_EQ(f.requests, 1);
    /* now read it all */
    size_t cap = 8 << 20;
    char *buf = malloc(cap);
    CHECK(buf);
    size_t n = pump_answer(&f, fd, buf, cap);
    close(fd);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    bool final_ok = n >= 8 && !strcmp(buf + n - 8, "ok done\n");
    free(buf);
    CHECK(final_ok);
    CHECK(lines > 100);
    CHECK(lines < 100000); /* some were dropped: the queue stayed bounded */

    /* never reading: closed after the write deadline, answers discarded */
    fd = sl_ctl_connect(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "flood\n", 6) == 6);
    for (int i = 0; i < 300 && (f.requests < 2 || sl_ctl_conns(f.ctl) > 0); i++)
        sl_loop_run_once(f.loop, 10);
    CHECK_EQ(f.requests, 2);
    CHECK_EQ(sl_ctl_conns(f.ctl), 0);
    CHECK_EQ(f.gone, 0); /* it was finished: nobody to tell */
    close(fd);
    fx_close(&f);
    rmdir(dir);
}
