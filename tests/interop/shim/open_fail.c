/* Test shim (LD_PRELOAD): open() of a path containing SLUICE_TEST_OPEN_FAIL_MATCH with O_CREAT
 * fails with errno SLUICE_TEST_OPEN_FAIL_ERRNO, so a test can make a file creation fail the way
 * a full disk or an exhausted file table does (tests/interop/test_partitions_scale.py). Never
 * part of the broker. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int should_fail(const char *path, int flags) {
    const char *m = getenv("SLUICE_TEST_OPEN_FAIL_MATCH");
    const char *e = getenv("SLUICE_TEST_OPEN_FAIL_ERRNO");
    if (!m || !*m || !e || !(flags & O_CREAT) || !strstr(path, m)) return 0;
    errno = atoi(e);
    return 1;
}

#define WRAP(name)                                                                                 \
    int name(const char *path, int flags, ...) {                                                   \
        int (*real)(const char *, int, ...) =                                                      \
            (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name);                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;                    \
        va_end(ap);                                                                                \
        if (should_fail(path, flags)) return -1;                                                   \
        return real(path, flags, mode);                                                            \
    }

WRAP(open)
WRAP(open64)
