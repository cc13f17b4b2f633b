/* Memory limit of this process (sl_sysmem.h). */
#include "base/sl_sysmem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The number in `path` ("max", absent or unreadable: no limit, UINT64_MAX). */
static uint64_t read_limit(const char *path) {
    FILE *f = fopen(path, "re");
    if (!f) return UINT64_MAX;
    char buf[64] = "";
    char *ok = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!ok) return UINT64_MAX;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || (*end && *end != '\n')) return UINT64_MAX; /* "max" */
    return (uint64_t)v;
}

/* The lowest `file` limit at `base` + `group` and each ancestor of `group` up to `base`. */
static uint64_t lowest_up(const char *base, const char *group, const char *file) {
    char path[4096], g[2048];
    snprintf(g, sizeof g, "%s", group);
    uint64_t low = UINT64_MAX;
    for (;;) {
        size_t n = strlen(g);
        while (n > 0 && g[n - 1] == '/') g[--n] = '\0';
        if (snprintf(path, sizeof path, "%s%s/%s", base, g, file) < (int)sizeof path) {
            uint64_t v = read_limit(path);
            if (v < low) low = v;
        }
        char *slash = strrchr(g, '/');
        if (!slash) break;
        *slash = '\0';
    }
    return low;
}

uint64_t sl_sysmem_limit_at(const char *proc_cgroup, const char *root, uint64_t phys) {
    uint64_t low = phys ? phys : UINT64_MAX;
    FILE *f = fopen(proc_cgroup, "re");
    if (f) {
        char line[2300];
        char base[2048];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            /* "ID:CONTROLLERS:PATH": v2 is "0::PATH"; v1's memory line names "memory". */
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) continue;
            *c2 = '\0';
            char *ctl = c1 + 1;
            const char *group = c2 + 1;
            uint64_t v = UINT64_MAX;
            if (!*ctl) {
                v = lowest_up(root, group, "memory.max");
            } else {
                bool mem = false;
                for (char *s = ctl, *tok; (tok = strtok_r(s, ",", &s)) != NULL;)
                    if (!strcmp(tok, "memory")) mem = true;
                if (!mem) continue;
                snprintf(base, sizeof base, "%s/memory", root);
                v = lowest_up(base, group, "memory.limit_in_bytes");
            }
            if (v < low) low = v;
        }
        fclose(f);
    }
    return low == UINT64_MAX ? 0 : low;
}

uint64_t sl_sysmem_limit(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    uint64_t phys = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    return sl_sysmem_limit_at("/proc/self/cgroup", "/sys/fs/cgroup", phys);
}
