/* The control-socket exchange of the CLI (sl_cli_ctl.h), factored out of `sluice keys` so that
 * `sluice protect` speaks to the broker the same way. */
#include "cli/sl_cli_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "ctl/sl_ctl.h"

int sl_cli_ctl_socket(const char *prog, const char *cfg_path, const char *sock, char *out,
                      size_t n) {
    if (sock) {
        snprintf(out, n, "%s", sock);
        return 0;
    }
    /* sl_config holds a hundred path-sized strings: kept off the stack. */
    sl_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    sl_config_defaults(cfg);
    char err[512];
    if (cfg_path && sl_config_load(cfg, cfg_path, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        free(cfg);
        return 2;
    }
    sl_ctl_socket_path(cfg, out, n);
    free(cfg);
    return 0;
}

static void show_progress(sl_cli_ctl_view *v, const char *text) {
    long long done = 0, total = 0;
    char unit[32] = "segments";
    if (sscanf(text, "%lld %lld %31s", &done, &total, unit) < 2) return;
    if (v->tty) {
        int width = 30, fill = total > 0 ? (int)(done * width / total) : width;
        if (fill > width) fill = width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] %lld/%lld %s", bar, done, total, unit);
        fflush(stderr);
        v->bar_shown = true;
    } else {
        printf("progress %lld/%lld %s\n", done, total, unit);
        fflush(stdout);
    }
}

int sl_cli_ctl_exchange(const char *sock, const char *request, sl_cli_ctl_view *v) {
    char line[SL_CTL_LINE_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", request);
    if (n < 0 || (size_t)n > SL_CTL_LINE_MAX) {
        fprintf(stderr, "%s: request too long (see %s --help)\n", v->prog, v->prog);
        return 2;
    }
    int fd = sl_ctl_connect(sock);
    if (fd < 0) {
        fprintf(stderr,
                "%s: cannot connect to the control socket %s: %s (is the broker running with "
                "this configuration?)\n",
                v->prog, sock, strerror(errno));
        return 1;
    }
    for (int off = 0; off < n;) {
        ssize_t w = send(fd, line + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "%s: cannot send the request: %s\n", v->prog, strerror(errno));
            close(fd);
            return 1;
        }
        off += (int)w;
    }
    FILE *in = fdopen(fd, "r");
    if (!in) {
        close(fd);
        fprintf(stderr, "%s: out of memory\n", v->prog);
        return 1;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = -1;
    while (rc < 0 && (len = getline(&buf, &cap, in)) > 0) {
        if (buf[len - 1] == '\n') buf[--len] = 0;
        char *sp = strchr(buf, ' ');
        const char *text = sp ? sp + 1 : "";
        if (sp) *sp = 0;
        if (v->bar_shown && strcmp(buf, "progress")) {
            fputc('\n', stderr);
            v->bar_shown = false;
        }
        if (!strcmp(buf, "progress")) {
            show_progress(v, text);
        } else if (!strcmp(buf, "json")) {
            if (v->json || !v->on_json)
                printf("%s\n", text);
            else if (v->on_json(v->arg, text, strlen(text)) != 0)
                rc = 1;
        } else if (!strcmp(buf, "info")) {
            printf("%s\n", text);
        } else if (!strcmp(buf, "ok")) {
            if (!v->json && !v->ok_silent && !(v->ok_quiet && !strcmp(text, v->ok_quiet)))
                printf("%s\n", text);
            rc = 0;
        } else if (!strcmp(buf, "error")) {
            fprintf(stderr, "%s: %s\n", v->prog, text);
            rc = 1;
        }
        /* other kinds: from a newer broker; ignored */
    }
    if (v->bar_shown) fputc('\n', stderr);
    if (rc < 0) {
        fprintf(stderr,
                "%s: the broker closed the connection without an answer (stopped, or the "
                "command was refused)\n",
                v->prog);
        rc = 1;
    }
    free(buf);
    fclose(in);
    return rc;
}
