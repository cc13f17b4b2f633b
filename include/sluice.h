/* libsluice: Sluice's field protection for producers and consumers that protect or reveal
 * records themselves (docs/field-protection.md, "Library"). Same policy file, same keys, same
 * ciphertext and token formats as the broker: a record protected here is revealed by the broker
 * for granted principals, and a broker-protected record is revealed here.
 *
 * Build: `make` produces build/release/libsluice.so (and this header). Link with -lsluice.
 * Stable API: functions and structs below keep their meaning across 0.x releases; new ones are
 * added, none is changed. SLUICE_API_VERSION is bumped when something is added.
 *
 * Keys: the library reads the broker's keyring and calls the same KMS provider (the properties
 * file given to sluice_open: sluice.kms.*, log.dirs, sluice.secrets.dir, as in the broker's
 * configuration), so it needs read access to them; it never changes the keyring. Subject keys
 * it creates are appended to the subject store the broker uses (same host or shared directory).
 *
 * Threads: a handle is used by one thread at a time; open one per thread. Memory: every buffer
 * the library returns is malloc'd and freed with sluice_free. Errors: functions return 0 on
 * success or a negative SLUICE_E* code, with a one-line message in err (when not NULL) that
 * never contains record data or key material. */
#ifndef SLUICE_H
#define SLUICE_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_API_VERSION 1

#define SLUICE_OK             0
#define SLUICE_EINVAL         (-1) /* bad argument, unknown topic block is NOT an error */
#define SLUICE_ECONFIG        (-2) /* properties or policy file invalid (err names the line) */
#define SLUICE_EUNPROTECTABLE (-3) /* a rule cannot apply (not JSON, wrong type) */
#define SLUICE_EKEY           (-4) /* a key is missing, destroyed or the KMS refused */
#define SLUICE_ENOMEM         (-5)
#define SLUICE_EIO            (-6)

typedef struct sluice_protector sluice_protector;

/* A record header. */
typedef struct sluice_header {
    const char *key;
    size_t key_len;
    const void *value; /* NULL: null value */
    size_t value_len;
} sluice_header;

/* A record: key/value NULL means null. On output every pointer is the library's (malloc'd,
 * released by sluice_record_free). */
typedef struct sluice_record {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    sluice_header *headers;
    size_t nheaders;
} sluice_record;

/* Opens a protector: `properties` (a broker-style properties file for the keys; NULL when the
 * policy uses no key: mask and redact only) and `policy` (the policy file). Caller owns *out. */
int sluice_open(const char *properties, const char *policy, sluice_protector **out, char *err,
                size_t errlen);
void sluice_close(sluice_protector *p); /* NULL-safe; cleanses cached keys */

/* Protects record `in` for `topic` as the broker would on produce. *out gets a new record (the
 * unchanged parts copied) even when the topic has no block. */
int sluice_protect(sluice_protector *p, const char *topic, const sluice_record *in,
                   sluice_record *out, char *err, size_t errlen);
/* Reveals every encrypted field of record `in` for `topic` (the library's holder has the keys:
 * it sees everything in clear). Values that do not decrypt stay as they are. */
int sluice_reveal(sluice_protector *p, const char *topic, const sluice_record *in,
                  sluice_record *out, char *err, size_t errlen);

/* Convenience: value only (no key, no headers). *out is malloc'd, *out_len its length. */
int sluice_protect_value(sluice_protector *p, const char *topic, const void *value, size_t len,
                         void **out, size_t *out_len, char *err, size_t errlen);
int sluice_reveal_value(sluice_protector *p, const char *topic, const void *value, size_t len,
                        void **out, size_t *out_len, char *err, size_t errlen);

void sluice_record_free(sluice_record *r); /* frees what sluice_protect/reveal put in r */
void sluice_free(void *p);
/* "0.1.0" */
const char *sluice_version(void);

#ifdef __cplusplus
}
#endif
#endif
