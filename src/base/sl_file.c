#include "sl_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sl_err errno_err(int e) { return e == ENOSPC || e == EDQUOT ? SL_ENOSPC : SL_EIO; }

sl_err sl_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return SL_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc ? SL_EIO : SL_OK;
}

sl_err sl_file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                            mode_t mode) {
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp)
        return SL_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return errno_err(errno);
    size_t off = 0;
    sl_err e = SL_OK;
    while (off < len) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            e = errno_err(n < 0 ? errno : ENOSPC);
            break;
        }
        off += (size_t)n;
    }
    if (!e && fsync(fd)) e = errno_err(errno);
    close(fd);
    if (!e && rename(tmp, path)) e = SL_EIO;
    if (e) {
        unlink(tmp);
        return e;
    }
    return sl_fsync_dir(dir);
}

sl_err sl_mkdir_p(const char *path, mode_t mode) {
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return SL_EINVAL;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST) return errno_err(errno);
            tmp[i] = c;
        }
    }
    return SL_OK;
}

void sl_parent_dir(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else
        *(slash == out ? slash + 1 : slash) = 0;
}

sl_err sl_mkdir_parent(const char *path, mode_t mode) {
    char dir[PATH_MAX];
    sl_parent_dir(path, dir, sizeof dir);
    return sl_mkdir_p(dir, mode);
}

size_t sl_read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

sl_err sl_file_read(const char *path, size_t max, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    /* Grown as read (not from fstat: the file may change, or be a pipe), one byte past `max`
     * at most: enough to know it is too large. */
    size_t cap = max < 4096 ? max + 1 : 4096, n = 0;
    char *b = malloc(cap + 1);
    sl_err e = b ? SL_OK : SL_ENOMEM;
    while (!e) {
        if (n == cap) {
            if (cap > max) {
                e = SL_ETOOLARGE;
                break;
            }
            size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *nb = realloc(b, ncap + 1);
            if (!nb) {
                e = SL_ENOMEM;
                break;
            }
            b = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) e = SL_EIO;
        if (r <= 0) break;
        n += (size_t)r;
    }
    int saved = errno;
    close(fd);
    if (e) {
        free(b);
        errno = saved;
        return e;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return SL_OK;
}

bool sl_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

int sl_file_open_private(const char *path, const char *what, struct stat *st, sl_err *e, char *err,
                         size_t elen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int en = errno;
        snprintf(err, elen, "cannot open %s %s: %s", what, path, strerror(en));
        *e = en == ENOENT ? SL_ENOTFOUND : SL_EIO;
        return -1;
    }
    if (fstat(fd, st) || !S_ISREG(st->st_mode)) {
        snprintf(err, elen, "%s %s is not a regular file", what, path);
    } else if (st->st_mode & 077) {
        snprintf(err, elen,
                 "%s %s is accessible by group or others (mode %03o); it must be 0600 (chmod 600 "
                 "%s)",
                 what, path, (unsigned)(st->st_mode & 0777), path);
    } else {
        *e = SL_OK;
        return fd;
    }
    close(fd);
    *e = SL_ECONFIG;
    return -1;
}
