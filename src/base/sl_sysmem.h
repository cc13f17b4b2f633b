/* How much memory this process may use: the machine's, or less when a control group (a
 * container's limit, a systemd MemoryMax=) caps it. Memory budgets derived from "a share of the
 * machine" must start from this, or a broker in a 2 GiB container on a 64 GiB host would plan
 * for 16 GiB and be killed long before its own bound. */
#ifndef SL_BASE_SYSMEM_H
#define SL_BASE_SYSMEM_H
#include <stdint.h>

/* Physical memory, lowered to the tightest memory limit of the control groups this process is
 * in (cgroup v2 memory.max, v1 memory.limit_in_bytes, at its own group and every ancestor
 * visible). 0 if not even physical memory is known. */
uint64_t sl_sysmem_limit(void);

/* The same, from given places (tests): `proc_cgroup` in /proc/self/cgroup's format, `root`
 * where cgroupfs is mounted (v2 at root, v1 controllers at root/memory), `phys` the machine's. */
uint64_t sl_sysmem_limit_at(const char *proc_cgroup, const char *root, uint64_t phys);

#endif
