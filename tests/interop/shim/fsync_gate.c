/* Test shim (LD_PRELOAD): fsync and fdatasync wait while the file named by
 * SLUICE_TEST_FSYNC_GATE does not exist, so a test can hold the broker's fsyncs and watch what
 * is answered meanwhile (tests/interop/test_durability.py). Never part of the broker. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void wait_gate(void) {
    const char *gate = getenv("SLUICE_TEST_FSYNC_GATE");
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (gate && access(gate, F_OK) != 0) nanosleep(&ts, NULL);
}

int fsync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_gate();
    return real(fd);
}

int fdatasync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_gate();
    return real(fd);
}
