/* The field-protection policy (`sluice.protect.policy.file`, docs/field-protection.md): which
 * fields of which topics are protected, and how. Parsed into an immutable, refcounted snapshot;
 * the broker swaps snapshots on reload (file change, SIGHUP) and a request uses the one it
 * started with. libsluice and `sluice protect` read the same file with the same parser.
 *
 * Format: UTF-8 text, one directive per line; "#" starts a comment (to the end of the line);
 * blank lines are ignored; words are separated by spaces or tabs; indentation means nothing.
 *
 *   version 1                     optional, first directive; any other version is an error
 *   topic NAME                    starts a block for the topic NAME (Kafka topic characters)
 *   topic PREFIX*                 ... or for every topic starting with PREFIX (may be empty: "*")
 *   # inside a block:
 *   on-error reject|pass          a record a rule cannot apply to (not JSON, wrong type):
 *                                 reject the batch with INVALID_RECORD (default) or skip that rule
 *                                 for that record (the field passes as it came)
 *   subject TARGET token-key=KEY  the data subject: each subject's encrypted fields use a key of
 *                                 that subject's own (sl_fkeys), found by the subject id = the
 *                                 16-byte token MAC of TARGET's value under KEY
 *   TARGET ACTION [OPTION=VALUE]...   a rule
 *
 *   TARGET   value | key | header:NAME, optionally followed by a JSON path (sl_jrewrite.h):
 *            "value.card.number", "value.items[*].pan", "key.id", "header:meta.ssn". Without a
 *            path the rule applies to the whole value / key / header value (any bytes).
 *            NAME: 1..128 bytes of [A-Za-z0-9_-] (header names with other characters cannot be
 *            targeted in this version).
 *   ACTION   mask     keep-first=N keep-last=N (0..64, default 0 and 4) char=C (default *)
 *            redact   [remove]   (default: the field becomes null; remove: the member is
 *                                 dropped; whole key/value: null; header: dropped)
 *            token    key=KEY
 *            encrypt  key=KEY [alg=gcm|siv] (default gcm)
 *                     [view-mask=F,L]  (what a principal granted the "mask" view sees:
 *                                       the clear value masked keeping F first and L last)
 *                     [view-token=KEY] (what a principal granted the "token" view sees: the
 *                                       token of the clear value under KEY)
 *   KEY      a field key name (sl_fc_keyname_ok) that must exist (the key_ok callback) unless
 *            no callback is given.
 *
 * A topic matches the literal block of its name, else the block with the longest matching
 * prefix; two blocks with the same pattern, or two rules with the same target in one block, are
 * errors. At most SL_POLICY_MAX_TOPICS blocks, SL_POLICY_MAX_RULES rules per block and
 * SL_POLICY_MAX_TOTAL_RULES in all; a line is at most 4096 bytes; the file at most 1 MiB.
 *
 * Errors name the line: "FILE:LINE: unknown action 'hash'". */
#ifndef SL_PROTECT_POLICY_H
#define SL_PROTECT_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "protect/sl_fcrypt.h"
#include "protect/sl_jrewrite.h"

#define SL_POLICY_MAX_TOPICS      4096
#define SL_POLICY_MAX_RULES       256
#define SL_POLICY_MAX_TOTAL_RULES 8192
#define SL_POLICY_MAX_BYTES       (1u << 20)
#define SL_POLICY_TEXT_MAX        300 /* a target as written ("value.card.number"), NUL included */

typedef enum { SL_PA_MASK, SL_PA_REDACT, SL_PA_TOKEN, SL_PA_ENCRYPT } sl_paction;
typedef enum { SL_PP_VALUE, SL_PP_KEY, SL_PP_HEADER } sl_ppart;

/* Where a rule applies. */
typedef struct sl_ptarget {
    sl_ppart part;
    char header[SL_JPATH_NAME_MAX + 1]; /* SL_PP_HEADER: the header's name */
    bool whole;                         /* no JSON path: the whole key / value / header value */
    sl_jpath path;                      /* !whole */
    char text[SL_POLICY_TEXT_MAX];      /* as written: events, grants, errors */
} sl_ptarget;

typedef struct sl_prule {
    int line;
    sl_ptarget target;
    sl_paction action;
    sl_fc_mask mask;                 /* SL_PA_MASK */
    bool remove;                     /* SL_PA_REDACT */
    char key[SL_FC_KEYNAME_MAX + 1]; /* SL_PA_TOKEN, SL_PA_ENCRYPT */
    sl_fc_alg alg;                   /* SL_PA_ENCRYPT */
    bool has_view_mask;              /* SL_PA_ENCRYPT: the "mask" view */
    sl_fc_mask view_mask;
    char view_token[SL_FC_KEYNAME_MAX + 1]; /* SL_PA_ENCRYPT: the "token" view's key; "": none */
} sl_prule;

typedef struct sl_ptopic {
    int line;
    char pattern[256]; /* the name, or the prefix without its "*" */
    bool prefix;
    bool pass_on_error;
    bool has_subject;
    sl_ptarget subject;
    char subject_key[SL_FC_KEYNAME_MAX + 1];
    sl_prule *rules;
    int nrules;
    bool needs_keys; /* any token/encrypt rule or a subject */
} sl_ptopic;

typedef struct sl_policy {
    int refs;
    sl_ptopic *topics;
    int ntopics;
    char digest[65]; /* SHA-256 of the file's bytes, hex (events: which policy was loaded) */
    /* (private lookup state follows in the implementation's allocation) */
} sl_policy;

/* Parses one target as written ("value", "value.card.number", "header:meta.ssn") into *out
 * (out->text gets a NUL-terminated copy). SL_EINVAL with a short static reason in *why. The
 * policy and the grants (their FIELD word) share it. */
sl_err sl_ptarget_parse(const char *s, size_t n, sl_ptarget *out, const char **why);

/* Whether field key `name` exists (the broker asks its key service; libsluice its keyring). */
typedef bool (*sl_policy_key_ok_fn)(void *arg, const char *name);

/* Parses policy text[0..n) (`fname` only for messages). On error: NULL *out, and err gets
 * "FNAME:LINE: what is wrong" (never more than the offending word of the input). `key_ok` may be
 * NULL (keys are not checked). Caller owns *out (one reference). SL_ECONFIG for a malformed
 * policy (a text over SL_POLICY_MAX_BYTES: "FNAME: file too large ...", no line), SL_ENOMEM. */
sl_err sl_policy_parse(const char *text, size_t n, const char *fname, sl_policy_key_ok_fn key_ok,
                       void *arg, sl_policy **out, char *err, size_t errlen);
/* Reads `path` (at most SL_POLICY_MAX_BYTES) and parses it; SL_EIO ("PATH: strerror") when it
 * cannot be read (a missing file too). */
sl_err sl_policy_load(const char *path, sl_policy_key_ok_fn key_ok, void *arg, sl_policy **out,
                      char *err, size_t errlen);
sl_policy *sl_policy_ref(sl_policy *p);
void sl_policy_unref(sl_policy *p); /* NULL-safe; frees at zero */

/* The block that applies to topic name[0..n) (literal, else longest prefix), or NULL: the topic
 * is not protected. O(1) for literals, O(name length) for prefixes. */
const sl_ptopic *sl_policy_topic(const sl_policy *p, const char *name, size_t n);

/* Names of the keys a policy uses (token, encrypt, view-token, subject), each once, for
 * preloading; returns how many were written (at most cap). */
int sl_policy_keys(const sl_policy *p, const char **names, int cap);

#endif
