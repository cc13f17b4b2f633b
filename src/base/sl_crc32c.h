/* CRC-32C (Castagnoli), the checksum of Kafka record batches and of Sluice's on-disk headers. */
#ifndef SL_CRC32C_H
#define SL_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (0 to start) over `n` bytes at `p` and returns the new value; chaining calls over
 * consecutive pieces gives the CRC of the concatenation. Thread-safe; uses SSE4.2 when the CPU
 * has it. Borrows `p` only for the call. */
uint32_t sl_crc32c(uint32_t crc, const void *p, size_t n);
/* The portable table implementation, exposed so tests can compare it with the fast path. */
uint32_t sl_crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
