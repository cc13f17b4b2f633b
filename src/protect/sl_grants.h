/* Reveal grants (docs/field-protection.md, "Who sees what"): which principal sees which
 * encrypted field of which topics in which view. Managed with `sluice protect grant|revoke|list`
 * over the control socket and kept in `sluice.protect.grants.file`; a principal without a
 * grant sees what was stored (the ciphertext string). Masked, redacted and tokenized fields are
 * one-way: no grant applies to them.
 *
 * File format: "# sluice grants v1" then one grant per line, four words separated by one space:
 *     PRINCIPAL TOPIC FIELD VIEW
 * PRINCIPAL "User:name" (printable ASCII, no spaces); TOPIC a name or a prefix ending in "*";
 * FIELD a rule target as written in the policy ("value.card_number") or "*" (every encrypted
 * field of the topic); VIEW reveal | mask | token. */
#ifndef SL_PROTECT_GRANTS_H
#define SL_PROTECT_GRANTS_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_err.h"
#include "base/sl_text.h"

#define SL_GRANTS_MAX 65536

typedef enum {
    SL_VIEW_STORED = 0, /* what was stored (no grant) */
    SL_VIEW_REVEAL,     /* the clear value */
    SL_VIEW_MASK,       /* the clear value masked with the rule's view-mask */
    SL_VIEW_TOKEN,      /* the token of the clear value under the rule's view-token key */
} sl_view;

typedef struct sl_grant {
    char principal[256];
    char topic[256]; /* as written, with the trailing "*" for a prefix */
    char field[300]; /* rule target text or "*" */
    sl_view view;
} sl_grant;

/* Zero-initialised ({0}) is the empty set. v[0..n) is in the order the grants were added (the
 * file's and the listing's order) and is read-only to callers: put, remove and load keep `slot`,
 * the index by (principal, topic, field), in step with it. */
typedef struct sl_grants {
    sl_grant *v;
    int n, cap;
    int *slot; /* open addressing, nslot a power of two (0: none yet): an index into v, or -1 */
    int nslot;
} sl_grants;

/* "reveal" | "mask" | "token" -> view; false for anything else. */
bool sl_view_parse(const char *s, sl_view *out);
const char *sl_view_name(sl_view v);

/* Checks one grant's words (as the CLI and the file give them): SL_EINVAL with a reason. */
sl_err sl_grant_check(const sl_grant *g, const char **why);

/* Reads `path` into *g (empty before; a missing file is an empty set). SL_ECORRUPT with
 * "PATH:LINE: reason" in err for a malformed line. Caller frees with sl_grants_free. */
sl_err sl_grants_load(const char *path, sl_grants *g, char *err, size_t errlen);
/* Writes *g to `path` (0600, temp file, fsync, rename, fsync of the directory). */
sl_err sl_grants_save(const char *path, const sl_grants *g);
void sl_grants_free(sl_grants *g);

/* Adds x, replacing a grant with the same principal, topic and field. SL_ENOMEM, SL_ETOOLARGE
 * beyond SL_GRANTS_MAX, SL_EINVAL (sl_grant_check). */
sl_err sl_grants_put(sl_grants *g, const sl_grant *x);
/* Removes the grant with this principal, topic and field; false when there was none. The
 * others keep their order. */
bool sl_grants_remove(sl_grants *g, const char *principal, const char *topic, const char *field);
/* The grant whose principal, topic and field are exactly these (the key put and remove use: a
 * topic prefix or a "*" field is matched as written, not expanded), or NULL. The grant belongs
 * to g: the pointer is valid until the next put, remove, load or free of g, so a caller that
 * keeps it across one copies it. */
const sl_grant *sl_grants_find(const sl_grants *g, const char *principal, const char *topic,
                               const char *field);

/* The view `principal` has on rule target `field` of topic name[0..n): the most specific grant
 * decides (a literal topic over a prefix, a longer prefix over a shorter, a named field over
 * "*"); SL_VIEW_STORED when none applies. */
sl_view sl_grants_view(const sl_grants *g, const char *principal, const char *topic, size_t n,
                       const char *field);
/* True when `principal` has any grant (the fetch path's early exit). */
bool sl_grants_any(const sl_grants *g, const char *principal);
/* Appends a JSON array of the grants ([{"principal":..,"topic":..,"field":..,"view":..}]). */
void sl_grants_json(const sl_grants *g, sl_text *out);

#endif
