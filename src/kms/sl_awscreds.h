/* AWS credentials for the aws-kms provider, found the way botocore's default chain finds them
 * (the sources Sluice supports, in botocore's order):
 *   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (optional AWS_ROLE_SESSION_NAME)
 *      -> STS AssumeRoleWithWebIdentity (unsigned). Endpoint: AWS_ENDPOINT_URL_STS when set
 *      (the variable botocore >= 1.31 also honours; tests point it at a loopback stub), else
 *      https://sts.<region>.amazonaws.com. The token file is re-read at every refresh.
 *   3. shared files: AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials), then
 *      AWS_CONFIG_FILE (default ~/.aws/config, "[profile name]" sections), profile from
 *      sluice.kms.aws.profile, else AWS_PROFILE, else "default"
 *   4. EC2 instance metadata (IMDSv2): PUT /latest/api/token, then the instance role's
 *      credentials, from sluice.kms.aws.imds.endpoint (empty, or AWS_EC2_METADATA_DISABLED=true:
 *      skipped)
 * Not supported (documented): assume-role profiles, SSO, credential_process, ECS container
 * credentials.
 *
 * Temporary credentials are refreshed 15 minutes before they expire (botocore's advisory
 * window); if a refresh fails they are used until 10 minutes before expiry (its mandatory one).
 * Everything here runs on the key service's worker thread. Secrets are never logged, and every
 * buffer that held one (files, HTTP answers, this struct) is cleansed. */
#ifndef SL_AWSCREDS_H
#define SL_AWSCREDS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

typedef struct sl_awscreds {
    char akid[129];
    char secret[129];
    char token[4097];   /* empty for long-term keys */
    int64_t expires;    /* unix seconds; 0 = does not expire */
    const char *source; /* "environment", "web identity", "shared file", "instance metadata" */
} sl_awscreds;

typedef struct sl_awscreds_cfg {
    const char *profile;       /* NULL/empty: AWS_PROFILE, then "default" */
    const char *imds_endpoint; /* "http://169.254.169.254"; NULL/empty: IMDS skipped */
    const char *region;        /* for the STS endpoint */
    const char *ca_file;       /* for STS over HTTPS; NULL: the system store */
    int64_t timeout_ms;
} sl_awscreds_cfg;

/* Walks the chain. SL_OK with *out filled; SL_EKMS_UNAVAILABLE when a source that applies could
 * not be reached (STS down), SL_EKMS_DENIED when none applies or one refused (bad token, role
 * not assumable, partial keys). err names the source, never a secret. `now` is unix seconds. */
sl_err sl_awscreds_resolve(const sl_awscreds_cfg *cfg, int64_t now, sl_awscreds *out, char *err,
                           size_t errlen);
/* True when `c` should be fetched again at `now` (within 15 minutes of expiry). */
bool sl_awscreds_stale(const sl_awscreds *c, int64_t now);
/* True while `c` may still be used (more than 10 minutes before expiry). */
bool sl_awscreds_usable(const sl_awscreds *c, int64_t now);
void sl_awscreds_clear(sl_awscreds *c);

/* Region from AWS_REGION, AWS_DEFAULT_REGION, then the profile's `region` in the config file.
 * out[cap] gets it; false if none. */
bool sl_awscreds_region(const char *profile, char *out, size_t cap);

/* ---- Parsers, exposed for tests (inputs are untrusted; bounded; no allocation kept) ---- */
/* INI text of a shared credentials (config_style false: "[name]") or config file
 * (config_style true: "[profile name]", and "[default]"). SL_ENOTFOUND if the profile or its
 * keys are absent, SL_EKMS_DENIED if only one of the two keys is there. */
sl_err sl_awscreds_parse_ini(const char *text, size_t n, const char *profile, bool config_style,
                             sl_awscreds *out);
/* The value of `key` in `profile`'s section (e.g. "region"); false if absent. */
bool sl_awscreds_ini_value(const char *text, size_t n, const char *profile, bool config_style,
                           const char *key, char *out, size_t cap);
/* IMDS security-credentials JSON ({"Code":"Success","AccessKeyId",...,"Expiration"}). */
sl_err sl_awscreds_parse_imds(const char *json, size_t n, sl_awscreds *out);
/* STS AssumeRoleWithWebIdentityResponse XML. On an ErrorResponse, SL_EKMS_DENIED with its Code
 * in err. */
sl_err sl_awscreds_parse_sts(const char *xml, size_t n, sl_awscreds *out, char *err, size_t errlen);
/* "YYYY-MM-DDTHH:MM:SS[.fff]Z" -> unix seconds, or -1. */
int64_t sl_awscreds_parse_time(const char *s, size_t n);

#endif
