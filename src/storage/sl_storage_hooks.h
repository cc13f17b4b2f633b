/* Test-only injection points for the storage engine's writes and fsyncs. Production code never
 * changes them; tests swap them before opening logs or starting a flusher (the flusher thread
 * reads them, so set them only while no flusher is running) and restore the defaults after. */
#ifndef SL_STORAGE_HOOKS_H
#define SL_STORAGE_HOOKS_H
#include <sys/types.h>
#include <sys/uio.h>

/* Every data, index and header write of the storage engine goes through this (default:
 * pwritev). Return -1 with errno set, or a short count, to simulate ENOSPC/EIO/short writes. */
extern ssize_t (*sl_storage_pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
/* Every fsync of the storage engine goes through this (default: fsync). */
extern int (*sl_storage_fsync)(int fd);

#endif
