/* libFuzzer target for IAM policy documents (src/iam/sl_iampolicy.h). The input is a document,
 * optionally followed by a NUL byte and a resource ARN (at most 256 bytes) to ask about. For
 * whatever bytes: no read outside the document (an exact-size heap copy), no leak, and either a
 * printable error or a policy within the limits about which a few fixed questions (and the
 * input's own resource) are asked under three contexts, checking that:
 *   - the answer names a statement that exists (allow/deny) or none (implicit deny);
 *   - the same policy twice answers the same;
 *   - allows_any is conservative: wherever evaluate allows a resource, allows_any on every
 *     prefix of it followed by '*' is true; an explicitly denied resource (without '*') asked
 * exactly is not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iam/sl_iampolicy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CL                                                                                         \
    "arn:aws:kafka:us-east-1:123456789012:cluster/payments/abcd1234-0123-abcd-5678-1234abcd-1"
#define TP "arn:aws:kafka:us-east-1:123456789012:topic/payments/abcd1234-0123-abcd-5678-1234abcd-1/"

static const char *const k_actions[] = {"kafka-cluster:Connect", "kafka-cluster:ReadData",
                                        "kafka-cluster:WriteData", "kafka-cluster:DescribeTopic",
                                        "Kafka-Cluster:alterGROUP"};
static const char *const k_resources[] = {CL, TP "payments-eu", TP "alice-orders",
                                          "arn:aws:kafka:us-east-1:123456789012:group/payments/"
                                          "abcd1234-0123-abcd-5678-1234abcd-1/fraud-detector"};

static const sl_iam_tag k_tags[] = {{"team", "payments"}, {"Env", "prod*"}};
static const sl_iam_ctx k_ctx[] = {
    {.source_ip = "10.1.2.3",
     .secure_transport = true,
     .now_s = 1796587200,
     .tags = k_tags,
     .ntags = 2,
     .username = "alice",
     .principal_arn = "arn:aws:iam::123456789012:user/alice",
     .principal_type = "User"},
    {.source_ip = "2001:db8::7",
     .now_s = 0,
     .principal_arn = "arn:aws:sts::123456789012:assumed-role/etl/s?*",
     .principal_type = "AssumedRole"},
    {.now_s = -1},
};

static void check_why(const sl_iam_policy *p, sl_iam_effect e, const sl_iam_why *w) {
    if (e == SL_IAM_IMPLICIT_DENY) {
        if (w->policy || w->statement != -1 || !w->sid) abort();
        return;
    }
    if (e != SL_IAM_ALLOW && e != SL_IAM_EXPLICIT_DENY) abort();
    if (w->policy != sl_iam_policy_name(p) || w->statement < 0 ||
        w->statement >= sl_iam_policy_statements(p) || !w->sid)
        abort();
}

static void ask(const sl_iam_policy *p, const char *action, const char *res) {
    const sl_iam_policy *one[] = {p}, *two[] = {p, p};
    for (size_t c = 0; c < sizeof k_ctx / sizeof k_ctx[0]; c++) {
        sl_iam_why w1, w2;
        sl_iam_effect e = sl_iam_evaluate(one, 1, action, res, &k_ctx[c], &w1);
        check_why(p, e, &w1);
        if (sl_iam_evaluate(two, 2, action, res, &k_ctx[c], &w2) != e) abort();
        if (w1.statement != w2.statement) abort();
        if (e == SL_IAM_EXPLICIT_DENY && !strchr(res, '*') &&
            sl_iam_allows_any(one, 1, action, res, &k_ctx[c]))
            abort();
        if (e != SL_IAM_ALLOW) continue;
        if (!sl_iam_allows_any(one, 1, action, res, &k_ctx[c])) abort();
        size_t n = strlen(res);
        char pat[300];
        for (size_t cut = 0; cut <= n && cut < sizeof pat - 1; cut += 1 + cut / 8) {
            if (memchr(res, '*', cut)) break; /* the pattern is "prefix up to a '*'" */
            memcpy(pat, res, cut);
            pat[cut] = '*';
            pat[cut + 1] = 0;
            if (!sl_iam_allows_any(one, 1, action, pat, &k_ctx[c])) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t dlen = nul ? (size_t)(nul - data) : size;
    char *doc = malloc(dlen ? dlen : 1);
    if (!doc) return 0;
    memcpy(doc, data, dlen);
    char res[257] = "";
    if (nul) {
        size_t rl = size - dlen - 1;
        if (rl > 256) rl = 256;
        memcpy(res, nul + 1, rl);
        res[rl] = 0; /* may be cut short by a NUL inside: fine */
    }
    sl_iam_policy *p = NULL;
    char err[256];
    sl_err rc = sl_iam_policy_parse("fuzz", doc, dlen, &p, err, sizeof err);
    free(doc);
    if (rc != SL_OK) {
        if (p) abort();
        for (const char *e = err; *e; e++)
            if (*e < 0x20 || *e > 0x7e) abort();
        return 0;
    }
    int n = sl_iam_policy_statements(p);
    if (n < 1 || n > SL_IAM_POLICY_MAX_STATEMENTS || strcmp(sl_iam_policy_name(p), "fuzz")) abort();
    for (size_t a = 0; a < sizeof k_actions / sizeof k_actions[0]; a++) {
        for (size_t r = 0; r < sizeof k_resources / sizeof k_resources[0]; r++)
            ask(p, k_actions[a], k_resources[r]);
        if (res[0]) ask(p, k_actions[a], res);
    }
    if (res[0]) ask(p, res, TP "payments-eu");
    sl_iam_policy_free(p);
    return 0;
}
