#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_sysmem.h"
#include "sl_test.h"

/* A fake cgroupfs under a temporary directory. */
static void put(const char *dir, const char *rel, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        mkdir(p, 0700);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

#define GIB ((uint64_t)1 << 30)

/* cgroup v2 in a container (its own group is the root it sees), v2 under systemd (a service's
 * MemoryMax= and a slice's, the tighter wins), v1 (the memory controller's line; "max"-like
 * huge values and absent files mean no limit), and nothing at all (the machine's memory). */
SL_TEST(sysmem_limit_is_the_tightest_control_group_above_the_process) {
    char dir[] = "/tmp/sl_sysmem_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pc[600], root[600];
    snprintf(pc, sizeof pc, "%s/proc_cgroup", dir);
    snprintf(root, sizeof root, "%s/fs", dir);

    put(dir, "proc_cgroup", "0::/\n");
    put(dir, "fs/memory.max", "2147483648\n");
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 64 * GIB), 2 * GIB);

    put(dir, "proc_cgroup", "0::/system.slice/sluice.service\n");
    put(dir, "fs/memory.max", "max\n");
    put(dir, "fs/system.slice/memory.max", "8589934592\n");
    put(dir, "fs/system.slice/sluice.service/memory.max", "max\n");
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 64 * GIB), 8 * GIB);
    put(dir, "fs/system.slice/sluice.service/memory.max", "4294967296\n");
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 64 * GIB), 4 * GIB);
    /* Physical memory below every limit. */
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 3 * GIB), 3 * GIB);

    put(dir, "proc_cgroup", "12:pids:/\n4:memory:/docker/abc\n0::/\n");
    put(dir, "fs/memory.max", "max\n");
    put(dir, "fs/memory/memory.limit_in_bytes", "9223372036854771712\n");
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 64 * GIB), 64 * GIB);
    put(dir, "fs/memory/docker/abc/memory.limit_in_bytes", "1073741824\n");
    CHECK_EQ(sl_sysmem_limit_at(pc, root, 64 * GIB), 1 * GIB);

    char missing[700];
    snprintf(missing, sizeof missing, "%s/none", dir);
    CHECK_EQ(sl_sysmem_limit_at(missing, root, 64 * GIB), 64 * GIB);
    CHECK_EQ(sl_sysmem_limit_at(missing, root, 0), 0);
    CHECK(sl_sysmem_limit() > 0);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
