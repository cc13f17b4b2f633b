/* Internals of the IAM store exposed for the fuzz target and the unit tests: the file format's
 * parser and writer without a file behind them. Not for the broker or the CLI. */
#ifndef SL_IAM_STORE_INT_H
#define SL_IAM_STORE_INT_H
#include <stddef.h>
#include <stdint.h>

#include "iam/sl_iamstore.h"

#define SL_IAM_KEY_LEN 32 /* the IAM key file's size */

/* A store parsed from text[len] (any bytes; not NUL-terminated) under the IAM key `key`, with
 * no file behind it (refresh, lock and save fail). Same checks as sl_iamstore_open's load.
 * Caller owns *out. */
sl_err sl_iamstore_from_text(const uint8_t key[SL_IAM_KEY_LEN], const char *text, size_t len,
                             sl_iamstore **out, char *err, size_t elen);
/* The text sl_iamstore_save would write (malloc'd, NUL-terminated; the caller frees). */
sl_err sl_iamstore_to_text(const sl_iamstore *s, char **out, size_t *len);

#endif
