/* Small durable-file helpers shared by every subsystem that keeps metadata on disk. */
#ifndef SL_FILE_H
#define SL_FILE_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "sl_err.h"

/* Replaces dir/name so that a crash leaves either the old file or the complete new one: writes
 * dir/.name.tmp with `mode`, fsyncs it, renames it over, fsyncs the directory. Takes no
 * ownership of `data`. SL_ENOSPC or SL_EIO on failure (the temp file is removed). */
sl_err sl_file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                            mode_t mode);
/* fsyncs a directory so entries created, renamed or removed in it are durable. */
sl_err sl_fsync_dir(const char *dir);
/* Writes all `n` bytes (retrying short writes and EINTR); false on an error (errno set) or a
 * write that makes no progress. */
bool sl_write_all(int fd, const void *p, size_t n);
/* Reads up to `n` bytes into p (retrying short reads and EINTR); returns how many were read,
 * fewer than n at end of file or on an error (errno set). */
size_t sl_read_full(int fd, void *p, size_t n);
/* Reads the file `path` whole, at most `max` bytes, into a malloc'd buffer with a NUL after the
 * bytes (the caller frees *out). Never allocates more than max + 1 bytes whatever the file
 * claims. SL_ENOTFOUND when it does not exist, SL_ETOOLARGE beyond `max`, SL_EIO (errno set),
 * SL_ENOMEM. */
sl_err sl_file_read(const char *path, size_t max, char **out, size_t *len);
/* Opens a file that holds secrets for reading: `path` must be a regular file (a symlink is
 * refused) that group and others cannot access. Returns the descriptor (the caller closes it)
 * with *st filled; or -1 with *e set (SL_ENOTFOUND when it does not exist, SL_EIO when it
 * cannot be opened, SL_ECONFIG for the wrong type or mode) and err naming `what` and the path,
 * with the fix for a wrong mode. */
int sl_file_open_private(const char *path, const char *what, struct stat *st, sl_err *e, char *err,
                         size_t elen);
/* Creates `path` and its missing parents with `mode` (existing ones are left as they are). */
sl_err sl_mkdir_p(const char *path, mode_t mode);
/* The directory holding the file `path` into out[n] ("." for a bare name, "/" at the root). */
void sl_parent_dir(const char *path, char *out, size_t n);
/* Creates the directory holding the file `path` (sl_mkdir_p), e.g. before its first file. */
sl_err sl_mkdir_parent(const char *path, mode_t mode);

#endif
