/* libFuzzer target for what the aws-kms provider parses from files and the network, and for the
 * SigV4 canonicalization of request parts. The first byte picks the target:
 *   0: shared credentials file (profile "default"), 1: config file (profile "ci"),
 *   2: IMDS role credentials JSON, 3: STS AssumeRoleWithWebIdentity XML, 4: an ISO 8601 time,
 *   5: a request (NUL-separated method, path, query, header name, header value) signed with fixed
 *      keys.
 * Invariants: accepted credentials are non-empty printable ASCII (they become HTTP header text)
 * and temporary ones carry an expiry; a signed request's Authorization value is printable and
 * names exactly the fixed access key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/sl_awscreds.h"
#include "kms/sl_sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void printable(const char *s, bool may_be_empty) {
    if (!may_be_empty && !*s) abort();
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) abort();
}

static void check_creds(const sl_awscreds *c, bool temporary) {
    printable(c->akid, false);
    printable(c->secret, false);
    printable(c->token, !temporary);
    if (temporary && c->expires <= 0) abort();
}

/* Splits d[0..n) at NULs into up to k NUL-terminated parts (copy owned by the caller). */
static char *split(const uint8_t *d, size_t n, const char **parts, int k) {
    char *b = malloc(n + 1);
    if (!b) return NULL;
    memcpy(b, d, n);
    b[n] = 0;
    int i = 0;
    parts[i++] = b;
    for (size_t j = 0; j < n && i < k; j++)
        if (!b[j]) parts[i++] = b + j + 1;
    for (; i < k; i++) parts[i] = "";
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0] % 6;
    const char *t = (const char *)data + 1;
    size_t n = size - 1;
    sl_awscreds c;
    char err[256], v[64];
    switch (sel) {
    case 0:
        if (sl_awscreds_parse_ini(t, n, "default", false, &c) == SL_OK) check_creds(&c, false);
        break;
    case 1:
        if (sl_awscreds_parse_ini(t, n, "ci", true, &c) == SL_OK) check_creds(&c, false);
        if (sl_awscreds_ini_value(t, n, "ci", true, "region", v, sizeof v)) printable(v, true);
        break;
    case 2:
        if (sl_awscreds_parse_imds(t, n, &c) == SL_OK) check_creds(&c, true);
        break;
    case 3:
        if (sl_awscreds_parse_sts(t, n, &c, err, sizeof err) == SL_OK) check_creds(&c, true);
        break;
    case 4:
        (void)sl_awscreds_parse_time(t, n);
        break;
    default: {
        const char *p[5];
        char *b = split(data + 1, n, p, 5);
        if (!b) return 0;
        sl_sigv4_header h[3] = {{"Host", "kms.eu-west-1.amazonaws.com"},
                                {"X-Amz-Date", "20150830T123600Z"},
                                {p[3], p[4]}};
        sl_sigv4_request r = {.method = p[0],
                              .path = p[1],
                              .query = p[2],
                              .headers = h,
                              .nheaders = 3,
                              .body = data,
                              .blen = size};
        sl_sigv4_creds k = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
        char authz[1024];
        if (sl_sigv4_sign(&r, &k, "eu-west-1", "kms", "20150830T123600Z", authz, sizeof authz, NULL,
                          0) == SL_OK) {
            if (strncmp(authz, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/", 49)) abort();
            for (const char *s = authz; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) abort();
        }
        char *creq = sl_sigv4_canonical_request(&r);
        free(creq);
        free(b);
        break;
    }
    }
    sl_awscreds_clear(&c);
    return 0;
}
