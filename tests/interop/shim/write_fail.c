/* Test shim (LD_PRELOAD): while the file named by SLUICE_TEST_WRITE_FAIL_GATE exists, write(2),
 * writev(2), pwrite(2), fsync(2) and fdatasync(2) on files whose path starts with
 * SLUICE_TEST_WRITE_FAIL_DIR fail with ENOSPC: a disk that fills up under the audit trail and
 * frees again (tests/interop/test_audit_trail.py). CI runs as root, so permissions cannot make
 * a write fail. Never part of the broker. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int failing(int fd) {
    const char *gate = getenv("SLUICE_TEST_WRITE_FAIL_GATE");
    const char *dir = getenv("SLUICE_TEST_WRITE_FAIL_DIR");
    if (!gate || !dir || fd < 3 || access(gate, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    if (strncmp(path, dir, strlen(dir)) != 0) return 0;
    errno = ENOSPC;
    return 1;
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (failing(fd)) return -1;
    return real(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    if (failing(fd)) return -1;
    return real(fd, iov, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (failing(fd)) return -1;
    return real(fd, buf, n, off);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (failing(fd)) return -1;
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (failing(fd)) return -1;
    return real(fd);
}
