/* The IAM store: users, their access keys, roles, policy documents and what they are attached
 * to. One file (sluice.iam.file, default <log.dirs>/sluice-iam), mode 0600, written atomically
 * (temporary file, fsync, rename, fsync of the directory); writers (the broker, `sluice iam`)
 * serialise on an flock of "<path>.lock" and the broker rereads the file when it changed (as the
 * SCRAM store, src/auth/sl_credstore.h), so CLI changes apply to the next login and the next
 * authorization decision without a restart.
 *
 * Secrets: a secret access key is stored encrypted (AES-256-GCM, the access key id as AAD)
 * under the IAM key (sluice.iam.key.file, 32 random bytes, 0600, created on first use, default
 * <sluice.secrets.dir>/sluice-iam.key); the file alone does not reveal any secret. Session
 * tokens (assume-role) are self-contained: the temporary key id, its secret, the role, the
 * session name and the expiry, sealed (AES-256-GCM) under a key derived from the IAM key, so
 * verifying one needs no state and a forged or altered token does not open. Secrets and
 * plaintext tokens are cleansed after use and never logged.
 *
 * Access key ids: "AKIA" + 16 of [A-Z2-7] for users' long-term keys, "ASIA" + 16 for
 * temporary ones (the AWS forms, so SDKs and scripts accept them); secrets 40 characters of
 * [A-Za-z0-9+/]. At most two keys per user (rotation without downtime: create the second,
 * move clients, disable then remove the first). Each key records its creation time and its
 * last use (sl_iamstore_note_use, written at most once a minute per key).
 *
 * Principals: IAM identities are named by their ARN, so they never collide with a SCRAM or
 * mTLS principal: "User:arn:aws:iam::ACCOUNT:user/NAME" and, for a role session,
 * "User:arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION".
 *
 * Not thread-safe: one loop thread (or one CLI process) uses a store at a time. */
#ifndef SL_IAM_STORE_H
#define SL_IAM_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "iam/sl_iampolicy.h"

#define SL_IAM_AKID_LEN     20
#define SL_IAM_SECRET_LEN   40
#define SL_IAM_TOKEN_MAX    1024 /* a session token, base64 */
#define SL_IAM_MAX_KEYS     2    /* per user */
#define SL_IAM_MAX_TAGS     50   /* per user or role, as IAM */
#define SL_IAM_MAX_ATTACHED 20   /* policies per user or role */

typedef struct sl_iamstore sl_iamstore;

/* Paths from a configuration: sluice.iam.file or <log.dirs>/sluice-iam; sluice.iam.key.file or
 * <secrets dir>/sluice-iam.key (the CLI and the broker agree on both). */
void sl_iamstore_paths(const sl_config *cfg, char *file, size_t flen, char *keyfile, size_t klen);

/* Opens the store at `path` with the key at `keyfile` (both copied). Missing file: with
 * `create`, an empty store (and a new key if the key file is missing too); without,
 * SL_ENOTFOUND. A file or key file that group or others can access, or that does not parse,
 * is refused (SL_ECONFIG, explained in err). Caller owns *out. */
sl_err sl_iamstore_open(const char *path, const char *keyfile, bool create, sl_iamstore **out,
                        char *err, size_t elen);
void sl_iamstore_free(sl_iamstore *s);
const char *sl_iamstore_path(const sl_iamstore *s);

/* Reloads when the file's inode, size or mtime changed; on an error the loaded contents stay
 * (and the error is returned). Invalidates pointers the store handed out. */
sl_err sl_iamstore_refresh(sl_iamstore *s);
/* Writers: lock (which also reloads), change, save, unlock. */
sl_err sl_iamstore_lock(sl_iamstore *s);
void sl_iamstore_unlock(sl_iamstore *s);
sl_err sl_iamstore_save(sl_iamstore *s);

/* ---- users, keys, roles (in-memory changes; save writes them) ----
 * Errors: SL_EINVAL (bad name or value), SL_EEXISTS, SL_ENOTFOUND, SL_ETOOLARGE (a third key,
 * too many tags or attachments). */

typedef struct sl_iam_key_info {
    char akid[SL_IAM_AKID_LEN + 1];
    bool active;
    int64_t created_s;
    int64_t last_used_s; /* 0: never */
} sl_iam_key_info;

sl_err sl_iamstore_user_add(sl_iamstore *s, const char *name, const sl_iam_tag *tags, size_t ntags,
                            int64_t now_s);
/* Removes the user with its keys and attachments. */
sl_err sl_iamstore_user_rm(sl_iamstore *s, const char *name);
int sl_iamstore_user_count(const sl_iamstore *s);
/* The i-th user's name (NUL-terminated), or NULL past the end. Valid until the next change. */
const char *sl_iamstore_user_at(const sl_iamstore *s, int i);
/* The user's keys into out[0..max); returns how many it has (SL_ENOTFOUND as -1). */
int sl_iamstore_user_keys(const sl_iamstore *s, const char *user, sl_iam_key_info *out, int max);

/* Creates an access key for `user`: the id into akid[SL_IAM_AKID_LEN + 1] and the secret into
 * secret[SL_IAM_SECRET_LEN + 1], shown once (the caller prints and cleanses it). */
sl_err sl_iamstore_key_create(sl_iamstore *s, const char *user, int64_t now_s, char *akid,
                              char *secret);
sl_err sl_iamstore_key_set_active(sl_iamstore *s, const char *akid, bool active);
sl_err sl_iamstore_key_rm(sl_iamstore *s, const char *akid);
/* The user owning `akid` (NUL-terminated, valid until the next change), or NULL. */
const char *sl_iamstore_key_user(const sl_iamstore *s, const char *akid);

/* A role: who may assume it is whoever runs `sluice iam assume-role` on this machine (or the
 * control socket's owner); max_session_s caps --duration (900 s .. the configured maximum). */
sl_err sl_iamstore_role_add(sl_iamstore *s, const char *name, int64_t max_session_s,
                            const sl_iam_tag *tags, size_t ntags);
sl_err sl_iamstore_role_rm(sl_iamstore *s, const char *name);
int sl_iamstore_role_count(const sl_iamstore *s);
const char *sl_iamstore_role_at(const sl_iamstore *s, int i, int64_t *max_session_s);

/* Issues temporary credentials for `role` valid for duration_s (900 s .. the role's maximum,
 * else SL_EINVAL) from now_s: akid ("ASIA..."), secret and a session token
 * (token[SL_IAM_TOKEN_MAX], NUL-terminated); *expiry_s gets the end. Needs no save. */
sl_err sl_iamstore_assume_role(sl_iamstore *s, const char *role, const char *session_name,
                               int64_t duration_s, int64_t now_s, char *akid, char *secret,
                               char *token, int64_t *expiry_s);

/* ---- policies ---- */

/* Stores (replaces) policy `name` after parsing it (sl_iam_policy_parse; its error in err). */
sl_err sl_iamstore_policy_put(sl_iamstore *s, const char *name, const char *json, size_t len,
                              char *err, size_t elen);
/* The document as stored (valid until the next change), or NULL. */
const char *sl_iamstore_policy_get(const sl_iamstore *s, const char *name, size_t *len);
/* SL_ESTATE while attached anywhere (detach first, as IAM). */
sl_err sl_iamstore_policy_rm(sl_iamstore *s, const char *name);
int sl_iamstore_policy_count(const sl_iamstore *s);
const char *sl_iamstore_policy_at(const sl_iamstore *s, int i);
/* Attaches/detaches policy `name` to a user (role=false) or a role. */
sl_err sl_iamstore_attach(sl_iamstore *s, const char *policy, bool role, const char *target);
sl_err sl_iamstore_detach(sl_iamstore *s, const char *policy, bool role, const char *target);

/* ---- verification and authorization (the broker) ---- */

/* Who a verified request is. Filled by sl_iamstore_identity; plain data, copyable. */
typedef struct sl_iam_identity {
    bool role;                         /* a role session; else a user */
    char name[SL_IAM_NAME_MAX + 1];    /* the user's or the role's name */
    char session[SL_IAM_NAME_MAX + 1]; /* role session name ("" for users) */
    char akid[SL_IAM_AKID_LEN + 1];
    char arn[320];    /* arn:aws:iam::ACCT:user/NAME or
                         arn:aws:sts::ACCT:assumed-role/ROLE/SESSION */
    int64_t expiry_s; /* temporary credentials' end; 0 for a long-term key */
} sl_iam_identity;

/* sl_msk_iam_secret_fn over a store (ud = the store): the secret of an active key of an
 * existing user, or of a temporary key whose `session_token` opens, names that key id, has
 * not expired and whose role still exists. False otherwise (the verifier then signs with a
 * dummy secret: unknown, disabled, expired and wrong all look alike). */
bool sl_iamstore_secret_lookup(void *store, const char *akid, const char *session_token,
                               char *secret, size_t cap);

/* After a successful verification: the identity of `akid` (and `session_token` for temporary
 * credentials), with `account` in its ARN. SL_ENOTFOUND when it no longer resolves. */
sl_err sl_iamstore_identity(sl_iamstore *s, const char *akid, const char *session_token,
                            const char *account, sl_iam_identity *out);

/* The IAM ARN of a user or a role (arn:aws:iam::ACCOUNT:user/NAME, ...:role/NAME) into
 * out[cap]; false when it does not fit. aws:PrincipalArn of a role session is its role's ARN,
 * as in IAM: the broker and `sluice iam policy simulate` both use this. */
bool sl_iam_principal_arn(const char *account, bool role, const char *name, char *out, size_t cap);

/* Records a successful use of `akid` at now_s (long-term keys; saved at most once a minute per
 * key, under the writers' lock; failures only logged). */
void sl_iamstore_note_use(sl_iamstore *s, const char *akid, int64_t now_s);

/* The parsed policies attached to the identity's user or role into out[0..max) (borrowed:
 * valid until the next refresh or change) and its tags into tags[0..tmax) (same lifetime);
 * returns the number of policies and sets *ntags. 0 policies: everything is implicitly
 * denied. */
size_t sl_iamstore_policies_for(const sl_iamstore *s, const sl_iam_identity *id,
                                const sl_iam_policy **out, size_t max, sl_iam_tag *tags,
                                size_t tmax, size_t *ntags);

#endif
