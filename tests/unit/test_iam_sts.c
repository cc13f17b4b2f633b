/* The STS endpoint's pure parts (src/iam/sl_iam_sts.h): the form body and role ARNs. The
 * signature is tested in test_msk_iam.c (header form, a botocore-made request); the endpoint
 * end to end, with botocore's STS client, in tests/interop/test_iam_sts.py. */
#include <string.h>

#include "iam/sl_iam_sts.h"
#include "sl_test.h"

static bool parse(const char *body, sl_sts_form *f, const char **why) {
    return sl_sts_form_parse(body, strlen(body), f, why);
}

SL_TEST(iam_sts_form_parse) {
    sl_sts_form f;
    const char *why = NULL;
    CHECK(parse("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012"
                "%3Arole%2Fetl&RoleSessionName=night+load&DurationSeconds=900",
                &f, &why));
    CHECK(!strcmp(f.action, "AssumeRole") && !strcmp(f.version, "2011-06-15"));
    CHECK(!strcmp(f.role_arn, "arn:aws:iam::123456789012:role/etl"));
    CHECK(!strcmp(f.session, "night load") && f.duration_s == 900 && !f.unsupported[0]);
    /* empty pairs are skipped; an unknown parameter is recorded, not refused */
    CHECK(parse("&Action=GetCallerIdentity&&Policy=%7B%7D&Version=2011-06-15&", &f, &why));
    CHECK(!strcmp(f.action, "GetCallerIdentity") && !strcmp(f.unsupported, "Policy"));
    CHECK(parse("", &f, &why) && !f.action[0]);
    /* refusals */
    const char *bad[] = {
        "Action=AssumeRole&Action=GetCallerIdentity", /* repeated */
        "Action=Assume%2",                            /* truncated escape */
        "Action=Assume%zzRole",                       /* not hex */
        "Action=Assume%00Role",                       /* a NUL */
        "DurationSeconds=9x",                         /* not digits */
        "DurationSeconds=-900",
        "DurationSeconds=0",
        "DurationSeconds=12345678901",
        "Version=2011-06-15-and-much-longer-than-fits",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why = NULL;
        CHECK(!parse(bad[i], &f, &why) && why);
    }
    char big[SL_STS_MAX_BODY + 2];
    memset(big, 'a', sizeof big);
    CHECK(!sl_sts_form_parse(big, sizeof big, &f, &why));
}

SL_TEST(iam_sts_role_arn) {
    char n[129];
    CHECK(sl_sts_role_name("arn:aws:iam::123456789012:role/orders-etl", "123456789012", n,
                           sizeof n) &&
          !strcmp(n, "orders-etl"));
    const char *bad[] = {
        "arn:aws:iam::123456789013:role/orders-etl", /* another account */
        "arn:aws:iam::123456789012:role/path/etl",   /* a path */
        "arn:aws:iam::123456789012:user/etl",
        "arn:aws:sts::123456789012:role/etl",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a b",
        "arn:aws:iam::123456789012",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!sl_sts_role_name(bad[i], "123456789012", n, sizeof n));
    CHECK(!sl_sts_role_name("arn:aws:iam::123456789012:role/etl", "123456789012", n, 3));
}
