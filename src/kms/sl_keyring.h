/* The keyring file (docs/encryption-at-rest.md, "Keyring format"): which KEK versions exist and
 * which is current, and per topic id its topic-key versions (each wrapped by one KEK version),
 * its shredded flag and per partition the offset below which plaintext is accepted. Pure data
 * and bytes: the key service locks it and does the I/O. Topic names never appear here. */
#ifndef SL_KMS_KEYRING_H
#define SL_KMS_KEYRING_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "kms/sl_kms.h"

#define SL_KEYRING_MAGIC   "SLKEYRNG"
#define SL_KEYRING_VERSION 1
#define SL_KEYRING_MAX     (64u << 20) /* a larger file is not a keyring */

typedef struct sl_kr_kek {
    sl_kms_keyref ref;
    char describe[256]; /* the provider's last describe line (memory only) */
} sl_kr_kek;

typedef struct sl_kr_tk {
    uint32_t version;
    uint32_t kek_version; /* the KEK version wrapping it */
    uint16_t wlen;
    uint8_t wrapped[SL_KMS_WRAPPED_MAX];
} sl_kr_tk;

typedef struct sl_kr_part {
    int32_t partition;
    int64_t plain_below;
} sl_kr_part;

typedef struct sl_kr_topic {
    uint8_t id[16];
    bool shredded;
    bool shred_pending; /* memory only: a shred was asked for and is being written */
    sl_kr_tk *tks;      /* ascending versions */
    int ntks;
    sl_kr_part *parts;
    int nparts;
} sl_kr_topic;

typedef struct sl_keyring {
    uint32_t current; /* current KEK version (0: none yet) */
    sl_kr_kek *keks;
    int nkeks;
    sl_kr_topic *topics;
    int ntopics;
} sl_keyring;

/* The keyring path: sluice.kms.keyring.file or <log.dirs>/sluice-keyring. */
void sl_keyring_path(const sl_config *cfg, char *out, size_t n);

/* The context a topic key (or field key) version is wrapped under by the KMS: "sluice/tk/v1" |
 * id | version (big-endian). It binds the wrapped bytes to the id and the version, so an entry
 * moved or relabelled does not unwrap. One definition for the key service and sl_keyreader.
 * Returns the length written into out[SL_KEYRING_TKCTX_MAX]. */
#define SL_KEYRING_TKCTX_MAX 48
size_t sl_keyring_tk_context(uint8_t out[SL_KEYRING_TKCTX_MAX], const uint8_t id[16],
                             uint32_t version);

/* Replaces dir/name with n bytes at p (0600; write, fsync, rename, fsync the directory) and then
 * overwrites the blocks of the file it replaced with zeros: a destroyed key must not linger in
 * freed blocks of the old file (best effort: copy-on-write filesystems and SSD wear levelling
 * may keep old copies; docs/encryption-at-rest.md). */
sl_err sl_keyring_replace_file(const char *dir, const char *name, const void *p, size_t n);

void sl_keyring_free(sl_keyring *kr); /* frees the contents; the struct is reusable */
/* Encodes into a malloc'd buffer (caller frees). */
sl_err sl_keyring_encode(const sl_keyring *kr, uint8_t **out, size_t *outlen);
/* Decodes n bytes (borrowed) into *kr (empty before; caller frees with sl_keyring_free).
 * SL_ECORRUPT with a reason in `why` for anything malformed: bad magic or version, a count or
 * length beyond the bytes left, a CRC mismatch, duplicates, a TK wrapped by an unknown KEK. */
sl_err sl_keyring_decode(const uint8_t *p, size_t n, sl_keyring *kr, char *why, size_t whylen);

sl_kr_topic *sl_keyring_topic(sl_keyring *kr, const uint8_t id[16]);
/* Finds or adds a topic (NULL when out of memory). */
sl_kr_topic *sl_keyring_topic_add(sl_keyring *kr, const uint8_t id[16]);
sl_kr_tk *sl_keyring_tk(sl_kr_topic *t, uint32_t version);
sl_kr_tk *sl_keyring_tk_add(sl_kr_topic *t); /* version = last + 1, zeroed otherwise */
sl_kr_kek *sl_keyring_kek(sl_keyring *kr, uint32_t version);
sl_kr_kek *sl_keyring_kek_add(sl_keyring *kr, const sl_kms_keyref *ref);
void sl_keyring_kek_remove(sl_keyring *kr, uint32_t version);
sl_kr_part *sl_keyring_part(sl_kr_topic *t, int32_t partition, bool add);

/* Several processes sharing one keyring file (docs/gateway.md, "Several gateways"): `file` is
 * what is on disk now, `base` what this process last read or wrote there, `mem` its keyring in
 * memory. *out (empty before; caller frees) is the file plus what this process changed since
 * base: KEK and topic-key versions it added or removed, a current KEK it moved, topics it
 * shredded; every other difference is the file's (another process rotated, rewrapped, retired or
 * shredded). A version both added with different bytes keeps the file's and counts in
 * *conflicts (the key service prevents it by creating under the file lock). Memory-only fields
 * (describe, shred_pending) come from mem. */
sl_err sl_keyring_merge(const sl_keyring *mem, const sl_keyring *base, const sl_keyring *file,
                        sl_keyring *out, int *conflicts);

#endif
