/* IAM policy documents (src/iam/sl_iampolicy): a table of (documents, action, resource,
 * context) → (effect, deciding policy and statement) covering explicit deny over allow,
 * NotAction/NotResource, action and ARN wildcards, every condition operator and key, IfExists,
 * Null, negated operators on absent keys, policy variables; the parse refusals with their
 * error paths; the limits; an MSK-developer-guide-style least-privilege set; allows_any.
 *
 * Documents are written with ' for " (converted before parsing) to keep the table readable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iam/sl_iampolicy.h"
#include "sl_test.h"

#define T0   1796587200 /* 2026-12-06T20:00:00Z */
#define ACCT "123456789012"
#define UUID "abcd1234-0123-abcd-5678-1234abcd-1"
#define CL   "arn:aws:kafka:us-east-1:" ACCT ":cluster/payments/" UUID
#define TP   "arn:aws:kafka:us-east-1:" ACCT ":topic/payments/" UUID "/"
#define GP   "arn:aws:kafka:us-east-1:" ACCT ":group/payments/" UUID "/"
#define TXP  "arn:aws:kafka:us-east-1:" ACCT ":transactional-id/payments/" UUID "/"

#define V "'Version':'2012-10-17'"
/* One document with these statements. */
#define DOC(s)          "{" V ",'Statement':[" s "]}"
#define DOC2(a, b)      DOC(a "," b)
#define DOC3(a, b, c)   DOC(a "," b "," c)
#define ALLOW(act, res) "{'Effect':'Allow','Action':" act ",'Resource':" res "}"
#define DENY(act, res)  "{'Effect':'Deny','Action':" act ",'Resource':" res "}"
#define ALLOW_IF(act, res, cond)                                                                   \
    "{'Effect':'Allow','Action':" act ",'Resource':" res ",'Condition':{" cond "}}"
#define DENY_IF(act, res, cond)                                                                    \
    "{'Effect':'Deny','Action':" act ",'Resource':" res ",'Condition':{" cond "}}"
#define ALL_ALLOWED ALLOW("'*'", "'*'")
#define RD          "kafka-cluster:ReadData"
#define WR          "kafka-cluster:WriteData"

static const sl_iam_tag k_tags[] = {{"team", "payments"}, {"env", "prod"}};

/* The default context: user alice over TLS from 10.1.2.3 at T0 with tags team and env. */
static const sl_iam_ctx C_DEF = {.source_ip = "10.1.2.3",
                                 .secure_transport = true,
                                 .now_s = T0,
                                 .tags = k_tags,
                                 .ntags = 2,
                                 .username = "alice",
                                 .principal_arn = "arn:aws:iam::" ACCT ":user/alice",
                                 .principal_type = "User"};
static const sl_iam_ctx C_PLAIN = {.source_ip = "192.168.7.9",
                                   .now_s = T0 + 86400 * 30,
                                   .username = "bob",
                                   .principal_arn = "arn:aws:iam::" ACCT ":user/bob",
                                   .principal_type = "User"};
static const sl_iam_ctx C_NOIP = {.secure_transport = true, .now_s = T0, .username = "alice"};
static const sl_iam_ctx C_V6 = {.source_ip = "2001:db8:0:1::5", .now_s = T0};
static const sl_iam_ctx C_V6OUT = {.source_ip = "2001:db9::5", .now_s = T0};
static const sl_iam_ctx C_MAPPED = {.source_ip = "::ffff:10.1.2.3", .now_s = T0};
static const sl_iam_ctx C_ROLE = {.source_ip = "10.9.9.9",
                                  .secure_transport = true,
                                  .now_s = T0,
                                  .tags = k_tags,
                                  .ntags = 1,
                                  .principal_arn = "arn:aws:sts::" ACCT ":assumed-role/etl/s1",
                                  .principal_type = "AssumedRole"};
static const sl_iam_tag k_tags_up[] = {{"TEAM", "fraud"}};
static const sl_iam_ctx C_FRAUD = {
    .now_s = T0, .tags = k_tags_up, .ntags = 1, .username = "ALICE", .principal_type = "User"};

enum { I = SL_IAM_IMPLICIT_DENY, A = SL_IAM_ALLOW, D = SL_IAM_EXPLICIT_DENY };

typedef struct row {
    int line;
    const char *docs[3];
    const char *action, *resource;
    const sl_iam_ctx *ctx; /* NULL: C_DEF */
    int want;
    int pol, st; /* deciding document index and statement (ignored for implicit deny) */
} row;

#define R(...)                                                                                     \
    { __LINE__, __VA_ARGS__ }

/* clang-format off */
static const row k_rows[] = {
    /* basics */
    R({DOC(ALLOW("'" RD "'", "'" TP "orders'"))}, RD, TP "orders", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders'"))}, WR, TP "orders", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders'"))}, RD, TP "orders2", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders'"))}, RD, TP "order", NULL, I, 0, 0),
    /* explicit deny over allow, across two policies, either order */
    R({DOC(ALL_ALLOWED), DOC(DENY("'" WR "'", "'" TP "*'"))}, WR, TP "orders", NULL, D, 1, 0),
    R({DOC(ALL_ALLOWED), DOC(DENY("'" WR "'", "'" TP "*'"))}, RD, TP "orders", NULL, A, 0, 0),
    R({DOC(DENY("'" WR "'", "'" TP "*'")), DOC(ALL_ALLOWED)}, WR, TP "orders", NULL, D, 0, 0),
    R({DOC3(ALLOW("'" RD "'", "'*'"), ALLOW("'kafka-cluster:*'", "'*'"), DENY("'" RD "'", "'" TP "x'"))},
      RD, TP "x", NULL, D, 0, 2),
    /* the first matching Allow decides when nothing denies */
    R({DOC(ALLOW("'" WR "'", "'*'")), DOC2(ALLOW("'" RD "'", "'*'"), ALL_ALLOWED)}, RD, TP "o", NULL, A, 1, 0),
    /* NotAction */
    R({DOC("{'Effect':'Allow','NotAction':'kafka-cluster:DeleteTopic','Resource':'*'}")},
      RD, TP "o", NULL, A, 0, 0),
    R({DOC("{'Effect':'Allow','NotAction':['kafka-cluster:DeleteTopic','kafka-cluster:Alter*'],'Resource':'*'}")},
      "kafka-cluster:AlterGroup", GP "g", NULL, I, 0, 0),
    R({DOC("{'Effect':'Allow','NotAction':'kafka-cluster:DeleteTopic','Resource':'*'}")},
      "kafka-cluster:DeleteTopic", TP "o", NULL, I, 0, 0),
    R({DOC2(ALL_ALLOWED, "{'Effect':'Deny','NotAction':'kafka-cluster:Describe*','Resource':'*'}")},
      "kafka-cluster:DescribeTopic", TP "o", NULL, A, 0, 0),
    R({DOC2(ALL_ALLOWED, "{'Effect':'Deny','NotAction':'kafka-cluster:Describe*','Resource':'*'}")},
      WR, TP "o", NULL, D, 0, 1),
    /* NotResource */
    R({DOC("{'Effect':'Allow','Action':'*','NotResource':'" TP "secret-*'}")}, RD, TP "orders", NULL, A, 0, 0),
    R({DOC("{'Effect':'Allow','Action':'*','NotResource':['" TP "secret-*','" GP "*']}")},
      RD, TP "secret-1", NULL, I, 0, 0),
    R({DOC2(ALL_ALLOWED, "{'Effect':'Deny','Action':'*','NotResource':['" TP "public-*']}")},
      RD, TP "private", NULL, D, 0, 1),
    R({DOC2(ALL_ALLOWED, "{'Effect':'Deny','Action':'*','NotResource':['" TP "public-*']}")},
      RD, TP "public-1", NULL, A, 0, 0),
    /* action wildcards and case */
    R({DOC(ALLOW("'kafka-cluster:*'", "'*'"))}, "kafka-cluster:AlterClusterDynamicConfiguration", CL, NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:Describe*'", "'*'"))}, "kafka-cluster:DescribeTopicDynamicConfiguration", TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:Describe*'", "'*'"))}, "kafka-cluster:AlterTopic", TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:*Topic'", "'*'"))}, "kafka-cluster:DeleteTopic", TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:*Topic'", "'*'"))}, "kafka-cluster:DescribeTopicDynamicConfiguration", TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW("'*'", "'" TP "*'"))}, "kafka-cluster:AlterTopic", TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'KAFKA-CLUSTER:readdata'", "'*'"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:ReadData'", "'*'"))}, "Kafka-Cluster:READDATA", TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:?riteData'", "'*'"))}, WR, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW("'kafka-cluster:?riteData'", "'*'"))}, "kafka-cluster:WriteDataIdempotently", CL, NULL, I, 0, 0),
    R({DOC(ALLOW("'kafka:*'", "'*'"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW("['kafka:Describe*','kafka-cluster:Connect','kafka-cluster:ReadData']", "'*'"))}, RD, TP "o", NULL, A, 0, 0),
    /* ARN wildcards: '*' across '/' and ':', '?' one character, case-sensitive */
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:us-east-1:" ACCT ":topic/payments/*/orders-*'"))}, RD, TP "orders-eu", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:us-east-1:" ACCT ":topic/payments/*/orders-*'"))}, RD, TP "order-eu", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:us-east-1:" ACCT ":topic/payments/*/orders-*'"))}, RD, TP "Orders-eu", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:us-east-1:" ACCT ":topic/payments/*/orders-*'"))},
      RD, "arn:aws:kafka:us-east-1:" ACCT ":topic/billing/" UUID "/orders-eu", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders-v?'"))}, RD, TP "orders-v1", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders-v?'"))}, RD, TP "orders-v12", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "orders-v?'"))}, RD, TP "orders-v", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:*:" ACCT ":topic/*'"))}, RD, "arn:aws:kafka:eu-west-1:" ACCT ":topic/c/u/t", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'arn:aws:kafka:*:" ACCT ":topic/*'"))}, RD, GP "g", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "a*b*c'"))}, RD, TP "aXbYbZc", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "a*b*c'"))}, RD, TP "aXbYbZcd", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "['" TP "x','" TP "y']"))}, RD, TP "y", NULL, A, 0, 0),
    /* one statement object instead of an array */
    R({"{" V ",'Statement':{'Sid':'One','Effect':'Allow','Action':'" RD "','Resource':'*'}}"}, RD, TP "o", NULL, A, 0, 0),
    R({"{" V ",'Statement':{'Effect':'Deny','Action':'" RD "','Resource':'*'}}", DOC(ALL_ALLOWED)}, RD, TP "o", NULL, D, 0, 0),
    /* aws:SourceIp: IPv4 and IPv6 CIDRs, single addresses, mapped addresses, absent */
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.1.2.3'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.1.2.2/31'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.1.2.4/31'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_MAPPED, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':['192.0.2.0/24','2001:db8::/32']}"))}, RD, TP "o", &C_V6, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':['192.0.2.0/24','2001:db8::/32']}"))}, RD, TP "o", &C_V6OUT, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'2001:db8:0:1::/64'}"))}, RD, TP "o", &C_V6, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'0.0.0.0/0'}"))}, RD, TP "o", &C_V6, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_NOIP, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddressIfExists':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_NOIP, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'IpAddressIfExists':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'NotIpAddress':{'aws:SourceIp':['10.0.0.0/8','2001:db8::/32']}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'NotIpAddress':{'aws:SourceIp':['10.0.0.0/8','2001:db8::/32']}"))}, RD, TP "o", &C_PLAIN, D, 0, 1),
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'NotIpAddress':{'aws:SourceIp':['10.0.0.0/8','2001:db8::/32']}"))}, RD, TP "o", &C_V6, A, 0, 0),
    /* a negated operator on an absent key holds */
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'NotIpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_NOIP, D, 0, 1),
    /* aws:SecureTransport: strings, JSON booleans, case */
    R({DOC(ALLOW_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'true'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'true'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':true}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'False'}"))}, RD, TP "o", &C_PLAIN, D, 0, 1),
    R({DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':false}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'BoolIfExists':{'aws:SecureTransport':'true'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    /* aws:CurrentTime: ISO 8601 with Z, offsets, fractions; epoch seconds */
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:CurrentTime':'2026-12-31T00:00:00Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:CurrentTime':'2026-12-31T00:00:00Z'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:CurrentTime':'2026-12-06T20:00:00Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThanEquals':{'aws:CurrentTime':'2026-12-06T20:00:00.000Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThanEquals':{'aws:CurrentTime':'2026-12-06T19:59:59.999Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:CurrentTime':'2026-12-06T20:00:00.001Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:CurrentTime':'2026-12-06T22:00:00.5+02:00'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThan':{'aws:CurrentTime':'2026-12-06T20:30:00+01:00'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThan':{'aws:CurrentTime':'2026-12-06T20:30:00Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThan':{'aws:CurrentTime':'2026-12-06T16:30:00-04:00'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThanEquals':{'aws:CurrentTime':'2026-12-06'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateEquals':{'aws:CurrentTime':'1796587200'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateEquals':{'aws:CurrentTime':1796587201}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateNotEquals':{'aws:CurrentTime':'2026-12-06T20:00:00Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateNotEquals':{'aws:CurrentTime':'2026-12-06T20:00:01Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThan':{'aws:CurrentTime':'2026-01-01T00:00:00Z'},"
                                  "'DateLessThan':{'aws:CurrentTime':'2027-01-01T00:00:00Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateGreaterThan':{'aws:CurrentTime':'2026-01-01T00:00:00Z'},"
                                  "'DateLessThan':{'aws:CurrentTime':'2026-12-01T00:00:00Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:CurrentTime':'2026-12-06T*'}"))}, RD, TP "o", NULL, A, 0, 0),
    /* aws:EpochTime: numeric operators, numbers and numeric strings */
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericLessThan':{'aws:EpochTime':1796587201}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericLessThan':{'aws:EpochTime':'1796587200'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericLessThanEquals':{'aws:EpochTime':'1796587200'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericGreaterThan':{'aws:EpochTime':'1796587199.5'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericGreaterThanEquals':{'aws:EpochTime':1796587201}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericEquals':{'aws:EpochTime':['1','1796587200']}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericNotEquals':{'aws:EpochTime':['1','1796587200']}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericNotEquals':{'aws:EpochTime':'1'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThan':{'aws:EpochTime':'2027-01-01T00:00:00Z'}"))}, RD, TP "o", NULL, A, 0, 0),
    /* aws:PrincipalTag/KEY: key case-insensitive, value case-sensitive, absent tag */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalTag/team':'payments'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalTag/Team':'payments'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalTag/team':'Payments'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalTag/team':'payments'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalTag/team':'fraud'}"))}, RD, TP "o", &C_FRAUD, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEquals':{'aws:PrincipalTag/team':'fraud'}"))}, RD, TP "o", &C_PLAIN, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEquals':{'aws:PrincipalTag/team':'fraud'}"))}, RD, TP "o", &C_FRAUD, I, 0, 0),
    /* aws:username: StringEquals, IgnoreCase, Like, and their negations; role sessions have none */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice'}"))}, RD, TP "o", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'ALICE'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'al*'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEqualsIgnoreCase':{'aws:username':'ALICE'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEqualsIgnoreCase':{'aws:username':'alice'}"))}, RD, TP "o", &C_FRAUD, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEqualsIgnoreCase':{'aws:username':'ALICE'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEqualsIgnoreCase':{'aws:username':'ALICE'}"))}, RD, TP "o", &C_PLAIN, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:username':'al?ce'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:username':'a*'}"))}, RD, TP "o", &C_PLAIN, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotLike':{'aws:username':'a*'}"))}, RD, TP "o", &C_PLAIN, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotLike':{'aws:username':'a*'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotLike':{'aws:username':'a*'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'AWS:USERNAME':'alice'}"))}, RD, TP "o", NULL, A, 0, 0),
    /* aws:PrincipalArn, aws:PrincipalType */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/a*'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/a*'}"))}, RD, TP "o", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalArn':'arn:aws:sts::" ACCT ":assumed-role/etl/s1'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalType':'AssumedRole'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:PrincipalType':'AssumedRole'}"))}, RD, TP "o", NULL, I, 0, 0),
    /* ArnEquals/ArnLike (and negations): per-component wildcards on aws:PrincipalArn */
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/a*'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/a*'}"))}, RD, TP "o", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnEquals':{'aws:PrincipalArn':'arn:aws:sts::" ACCT ":assumed-role/etl/*'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:aws:*:*:*:*'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:aws:*:*:*:*'}"))}, RD, TP "o", &C_NOIP, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:aws:i?m:*:*:user/*'}"))}, RD, TP "o", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnLike':{'aws:PrincipalArn':'arn:*:user/alice:*:*:*'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:PrincipalArn':'arn:*:user/alice'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnNotLike':{'aws:PrincipalArn':'arn:aws:iam::*:user/bob'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnNotEquals':{'aws:PrincipalArn':'arn:aws:iam::*:user/alice'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'ArnNotLikeIfExists':{'aws:PrincipalArn':'arn:aws:iam::*:user/alice'}"))}, RD, TP "o", &C_NOIP, A, 0, 0),
    /* IfExists and Null */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEqualsIfExists':{'aws:username':'bob'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEqualsIfExists':{'aws:username':'bob'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEqualsIfExists':{'aws:username':'bob'}"))}, RD, TP "o", &C_PLAIN, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'DateLessThanIfExists':{'aws:CurrentTime':'2026-01-01T00:00:00Z'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'NumericLessThanIfExists':{'aws:PrincipalTag/level':'5'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'aws:username':'true'}"))}, RD, TP "o", &C_ROLE, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'aws:username':'true'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'aws:username':false}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'aws:SourceIp':'false'}"))}, RD, TP "o", &C_NOIP, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'aws:PrincipalTag/team':'true'}"))}, RD, TP "o", &C_PLAIN, A, 0, 0),
    /* unknown keys are absent */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:RequestedRegion':'us-east-1'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEquals':{'aws:RequestedRegion':'us-east-1'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'Null':{'kafka-cluster:topicName':'true'}"))}, RD, TP "o", NULL, A, 0, 0),
    /* several values: OR; negated: none may match; several keys and operators: AND */
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':['bob','alice']}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':['bob','carol']}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringNotEquals':{'aws:username':['bob','alice']}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice','aws:PrincipalType':'User'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice','aws:PrincipalType':'AssumedRole'}"))}, RD, TP "o", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice'},'Bool':{'aws:SecureTransport':'true'},"
                                  "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'alice'},'Bool':{'aws:SecureTransport':'true'},"
                                  "'IpAddress':{'aws:SourceIp':'10.0.0.0/8'}"))}, RD, TP "o", &C_NOIP, I, 0, 0),
    /* a condition that fails skips its statement: a later one may still decide */
    R({DOC2(ALLOW_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'false'}"), ALLOW("'" RD "'", "'*'"))}, RD, TP "o", NULL, A, 0, 1),
    /* policy variables in Resource (and in condition values) */
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'"))}, RD, TP "alice-orders", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'"))}, RD, TP "bob-orders", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'"))}, RD, TP "-orders", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'"))}, RD, TP "${aws:username}-orders", &C_ROLE, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:PrincipalTag/team}/*'"))}, RD, TP "payments/ledger", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:PrincipalTag/team}/*'"))}, RD, TP "fraud/ledger", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "lit${*}'"))}, RD, TP "lit*", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "lit${*}'"))}, RD, TP "litX", NULL, I, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "q${?}${$}'"))}, RD, TP "q?$", NULL, A, 0, 0),
    R({DOC(ALLOW("'" RD "'", "'" TP "${aws:unknownKey}*'"))}, RD, TP "x", NULL, I, 0, 0),
    R({"{'Version':'2008-10-17','Statement':[" ALLOW("'" RD "'", "'" TP "${aws:username}'") "]}"}, RD, TP "${aws:username}", NULL, A, 0, 0),
    R({"{'Version':'2008-10-17','Statement':[" ALLOW("'" RD "'", "'" TP "${aws:username}'") "]}"}, RD, TP "alice", NULL, I, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringLike':{'aws:PrincipalArn':'*:user/${aws:username}'}"))}, RD, TP "o", NULL, A, 0, 0),
    R({DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'${aws:PrincipalTag/env}'}"))}, RD, TP "o", NULL, I, 0, 0),
};
/* clang-format on */

/* ' → " */
static char *dq(const char *s) {
    char *r = strdup(s);
    for (char *p = r; *p; p++)
        if (*p == '\'') *p = '"';
    return r;
}

static sl_err parse(const char *name, const char *doc_sq, sl_iam_policy **out, char *err,
                    size_t elen) {
    char *d = dq(doc_sq);
    sl_err rc = sl_iam_policy_parse(name, d, strlen(d), out, err, elen);
    free(d);
    return rc;
}

static const char *const k_names[] = {"p0", "p1", "p2"};

SL_TEST(iampolicy_table) {
    for (size_t r = 0; r < sizeof k_rows / sizeof k_rows[0]; r++) {
        const row *w = &k_rows[r];
        sl_iam_policy *pols[3] = {0};
        size_t n = 0;
        int bad = 0;
        for (; n < 3 && w->docs[n]; n++) {
            char err[256];
            if (parse(k_names[n], w->docs[n], &pols[n], err, sizeof err) != SL_OK) {
                fprintf(stderr, "  row at line %d: document %zu refused: %s\n", w->line, n, err);
                bad = 1;
            }
        }
        sl_iam_why why;
        sl_iam_effect e = bad ? (sl_iam_effect)-1
                              : sl_iam_evaluate((const sl_iam_policy *const *)pols, n, w->action,
                                                w->resource, w->ctx ? w->ctx : &C_DEF, &why);
        if (!bad && (int)e != w->want) {
            fprintf(stderr, "  row at line %d: effect %d, want %d\n", w->line, (int)e, w->want);
            bad = 1;
        }
        if (!bad && w->want == I && (why.policy || why.statement != -1)) {
            fprintf(stderr, "  row at line %d: implicit deny names a statement\n", w->line);
            bad = 1;
        }
        if (!bad && w->want != I &&
            (!why.policy || strcmp(why.policy, k_names[w->pol]) || why.statement != w->st)) {
            fprintf(stderr, "  row at line %d: decided by %s[%d], want %s[%d]\n", w->line,
                    why.policy ? why.policy : "(none)", why.statement, k_names[w->pol], w->st);
            bad = 1;
        }
        for (size_t i = 0; i < n; i++) sl_iam_policy_free(pols[i]);
        CHECK(!bad);
    }
}

/* Sids reach `why`; NULL why and NULL context are allowed. */
SL_TEST(iampolicy_why_and_sid) {
    sl_iam_policy *p = NULL;
    char err[256];
    CHECK_EQ(parse("writer",
                   DOC2("{'Sid':'AllowAll','Effect':'Allow','Action':'*','Resource':'*'}",
                        "{'Sid':'NoDeletes','Effect':'Deny','Action':'kafka-cluster:Delete*',"
                        "'Resource':'*'}"),
                   &p, err, sizeof err),
             SL_OK);
    CHECK(!strcmp(sl_iam_policy_name(p), "writer"));
    CHECK_EQ(sl_iam_policy_statements(p), 2);
    const sl_iam_policy *pp[] = {p};
    sl_iam_why why;
    CHECK_EQ(sl_iam_evaluate(pp, 1, "kafka-cluster:DeleteTopic", TP "t", &C_DEF, &why), D);
    CHECK(!strcmp(why.policy, "writer") && why.statement == 1 && !strcmp(why.sid, "NoDeletes"));
    CHECK_EQ(sl_iam_evaluate(pp, 1, RD, TP "t", NULL, &why), A);
    CHECK(why.statement == 0 && !strcmp(why.sid, "AllowAll"));
    CHECK_EQ(sl_iam_evaluate(pp, 1, RD, TP "t", NULL, NULL), A);
    CHECK_EQ(sl_iam_evaluate(pp, 0, RD, TP "t", NULL, &why), I);
    CHECK(why.policy == NULL && why.statement == -1 && !strcmp(why.sid, ""));
    sl_iam_policy_free(p);
    /* No Sid: "" */
    CHECK_EQ(parse("x", DOC(ALL_ALLOWED), &p, err, sizeof err), SL_OK);
    pp[0] = p;
    CHECK_EQ(sl_iam_evaluate(pp, 1, RD, TP "t", NULL, &why), A);
    CHECK(why.sid && !strcmp(why.sid, ""));
    sl_iam_policy_free(p);
}

typedef struct refusal {
    int line;
    const char *doc;
    const char *want; /* substring of the error */
} refusal;

#define S(...)                                                                                     \
    { __LINE__, __VA_ARGS__ }
/* clang-format off */
static const refusal k_refusals[] = {
    S("{'Version':'2012-10-18','Statement':[" ALL_ALLOWED "]}", "Version: must be"),
    S("{'Statement':[" ALL_ALLOWED "]}", "Version: missing"),
    S("{'Version':20121017,'Statement':[" ALL_ALLOWED "]}", "Version: must be"),
    S("{" V "}", "Statement: missing"),
    S("{" V ",'Statement':[]}", "Statement: no statements"),
    S("{" V ",'Statement':'x'}", "Statement: not an array"),
    S("{" V ",'Statement':[" ALL_ALLOWED "],'Extra':1}", "document: unknown element \"Extra\""),
    S("[" ALL_ALLOWED "]", "document: not a JSON object"),
    S(DOC("{'Effect':'Allow','Principal':{'AWS':'*'},'Action':'*','Resource':'*'}"), "Statement[0].Principal: not allowed"),
    S(DOC2(ALL_ALLOWED, "{'Effect':'Allow','NotPrincipal':'*','Action':'*','Resource':'*'}"), "Statement[1].NotPrincipal"),
    S(DOC("{'Effect':'Allow','Action':'*','NotAction':'x:y','Resource':'*'}"), "Statement[0]: both Action and NotAction"),
    S(DOC("{'Effect':'Allow','Resource':'*'}"), "Statement[0]: neither Action nor NotAction"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','NotResource':'*'}"), "both Resource and NotResource"),
    S(DOC("{'Effect':'Allow','Action':'*'}"), "neither Resource nor NotResource"),
    S(DOC("{'Action':'*','Resource':'*'}"), "Statement[0].Effect: missing"),
    S(DOC("{'Effect':'allow','Action':'*','Resource':'*'}"), "Statement[0].Effect: must be"),
    S(DOC("{'Effect':'Allow','Action':[],'Resource':'*'}"), "Statement[0].Action: empty list"),
    S(DOC("{'Effect':'Allow','Action':[1],'Resource':'*'}"), "Statement[0].Action[0]: not a string"),
    S(DOC("{'Effect':'Allow','Action':'ReadData','Resource':'*'}"), "Statement[0].Action[0]: \"ReadData\" is not"),
    S(DOC("{'Effect':'Allow','Action':'kafka-cluster: ReadData','Resource':'*'}"), "Action[0]"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'topic/x'}"), "Statement[0].Resource[0]: \"topic/x\" is not"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':''}"), "Resource[0]: empty string"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'arn:x\\u0000y'}"), "NUL"),
    S(DOC("{'Sid':'no-dash','Effect':'Allow','Action':'*','Resource':'*'}"), "Statement[0].Sid: \"no-dash\" is not alphanumeric"),
    S(DOC2("{'Sid':'A','Effect':'Allow','Action':'*','Resource':'*'}", "{'Sid':'A','Effect':'Allow','Action':'*','Resource':'*'}"), "Statement[1].Sid"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Foo':1}"), "Statement[0]: unknown element \"Foo\""),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEqualz':{'aws:username':'a'}}}"),
      "Statement[0].Condition: unknown condition operator \"StringEqualz\""),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NullIfExists':{'aws:username':'true'}}}"), "unknown condition operator"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'ForAnyValue:StringEquals':{'aws:username':'a'}}}"), "unknown condition operator"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':'10.0.0.0/33'}}}"),
      "Statement[0].Condition.IpAddress.aws:SourceIp: \"10.0.0.0/33\" is not an IPv4"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'IpAddress':{'aws:SourceIp':['10.0.0.0/8','::1/129']}}}"),
      "Condition.IpAddress.aws:SourceIp[1]"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'Bool':{'aws:SecureTransport':'yes'}}}"), "is not \"true\" or \"false\""),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'DateLessThan':{'aws:CurrentTime':'2026-02-30T00:00:00Z'}}}"), "is not an ISO 8601 date"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'DateLessThan':{'aws:CurrentTime':'tomorrow'}}}"), "is not an ISO 8601 date"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'NumericLessThan':{'aws:EpochTime':'1e9'}}}"), "is not a number"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'ArnLike':{'aws:PrincipalArn':'arn:aws:*'}}}"), "Condition.ArnLike.aws:PrincipalArn: \"arn:aws:*\" is not an ARN"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'aws:username':[]}}}"), "empty list"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{}}}"), "no condition keys"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'aws:username':{'a':1}}}}"), "not a string, number or boolean"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':'x'}"), "Statement[0].Condition: not an object"),
    S("{" V ",'Statement':[" ALL_ALLOWED ",]}", "invalid JSON"),
    S("{" V ",'Statement':[" ALL_ALLOWED "]", "invalid JSON"),
    S("{" V ",'Statement':[" ALL_ALLOWED "]} x", "invalid JSON"),
    S("{" V "," V ",'Statement':[" ALL_ALLOWED "]}", "invalid JSON"),
    S("", "invalid JSON"),
    S(DOC("{'Effect':'Allow','Action':'*','Resource':'*','Condition':{'StringEquals':{'aws:username':[[[[[['a']]]]]]}}}"), "nesting too deep"),
};
/* clang-format on */

SL_TEST(iampolicy_refusals) {
    for (size_t r = 0; r < sizeof k_refusals / sizeof k_refusals[0]; r++) {
        const refusal *w = &k_refusals[r];
        sl_iam_policy *p = (sl_iam_policy *)1;
        char err[256] = "";
        sl_err rc = parse("p", w->doc, &p, err, sizeof err);
        if (rc != SL_EINVAL || p != NULL || !strstr(err, w->want)) {
            fprintf(stderr, "  refusal at line %d: rc %d, error \"%s\", want \"%s\"\n", w->line,
                    (int)rc, err, w->want);
            sl_iam_policy_free(rc == SL_OK ? p : NULL);
            CHECK(0);
        }
    }
}

/* Appends to a growing buffer. */
typedef struct sb {
    char *s;
    size_t n, cap;
} sb;
static void put(sb *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static char *statements(int n) {
    sb b = {0};
    put(&b, "{\"Version\":\"2012-10-17\",\"Statement\":[");
    for (int i = 0; i < n; i++) {
        put(&b, i ? "," : "");
        put(&b, "{\"Effect\":\"Allow\",\"Action\":\"kafka-cluster:ReadData\",\"Resource\":\"*\"}");
    }
    put(&b, "]}");
    return b.s;
}

static char *actions(int n) {
    sb b = {0};
    put(&b, "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\","
            "\"Action\":[");
    for (int i = 0; i < n; i++) put(&b, i ? ",\"kafka-cluster:ReadData\"" : "\"x:y\"");
    put(&b, "]}}");
    return b.s;
}

SL_TEST(iampolicy_limits) {
    char err[256];
    sl_iam_policy *p = NULL;
    /* statements: 256 parse, 257 are refused */
    char *d = statements(SL_IAM_POLICY_MAX_STATEMENTS);
    CHECK_EQ(sl_iam_policy_parse("p", d, strlen(d), &p, err, sizeof err), SL_OK);
    CHECK_EQ(sl_iam_policy_statements(p), SL_IAM_POLICY_MAX_STATEMENTS);
    sl_iam_policy_free(p);
    free(d);
    d = statements(SL_IAM_POLICY_MAX_STATEMENTS + 1);
    CHECK_EQ(sl_iam_policy_parse("p", d, strlen(d), &p, err, sizeof err), SL_EINVAL);
    CHECK(strstr(err, "Statement: 257 statements, over the limit of 256"));
    free(d);
    /* values per element */
    d = actions(SL_IAM_POLICY_MAX_VALUES);
    CHECK_EQ(sl_iam_policy_parse("p", d, strlen(d), &p, err, sizeof err), SL_OK);
    sl_iam_policy_free(p);
    free(d);
    d = actions(SL_IAM_POLICY_MAX_VALUES + 1);
    CHECK_EQ(sl_iam_policy_parse("p", d, strlen(d), &p, err, sizeof err), SL_EINVAL);
    CHECK(strstr(err, "Statement.Action: 257 values, over the limit of 256"));
    free(d);
    /* size: 64 KiB exactly parses (padded with whitespace), one byte more is refused */
    const char *base = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                       "\"Action\":\"*\",\"Resource\":\"*\"}}";
    size_t bl = strlen(base);
    char *big = malloc(SL_IAM_POLICY_MAX_BYTES + 2);
    memset(big, ' ', SL_IAM_POLICY_MAX_BYTES + 1);
    memcpy(big, base, bl);
    CHECK_EQ(sl_iam_policy_parse("p", big, SL_IAM_POLICY_MAX_BYTES, &p, err, sizeof err), SL_OK);
    sl_iam_policy_free(p);
    CHECK_EQ(sl_iam_policy_parse("p", big, SL_IAM_POLICY_MAX_BYTES + 1, &p, err, sizeof err),
             SL_EINVAL);
    CHECK(strstr(err, "65537 bytes, over the limit of 65536"));
    CHECK(p == NULL);
    /* deep nesting: refused by the reader's depth limit, not by the stack */
    memset(big, '[', 5000);
    memset(big + 5000, ']', 5000);
    CHECK_EQ(sl_iam_policy_parse("p", big, 10000, &p, err, sizeof err), SL_EINVAL);
    CHECK(strstr(err, "nesting too deep"));
    free(big);
    /* errors never echo more than 64 bytes of the input */
    char longkey[400];
    memset(longkey, 'K', sizeof longkey);
    longkey[sizeof longkey - 1] = 0;
    char doc[800];
    snprintf(doc, sizeof doc, "{\"Version\":\"2012-10-17\",\"%s\":1}", longkey);
    CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, err, sizeof err), SL_EINVAL);
    const char *k = strchr(err, 'K');
    CHECK(k && strspn(k, "K") <= 64);
    /* also where a condition key and its value are both quoted */
    char kv[100];
    memset(kv, 'K', sizeof kv);
    kv[sizeof kv - 1] = 0;
    snprintf(doc, sizeof doc,
             "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\","
             "\"Resource\":\"*\",\"Condition\":{\"IpAddress\":{\"%s\":\"%s\"}}}}",
             kv, kv);
    CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, err, sizeof err), SL_EINVAL);
    size_t ks = 0;
    for (const char *e = err; *e; e++) ks += *e == 'K';
    CHECK(ks > 0 && ks <= 64);
    CHECK(strstr(err, "Statement.Condition.IpAddress.KKKK"));
    /* the small error buffer is respected; NULL err is allowed */
    char tiny[8];
    CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, tiny, sizeof tiny), SL_EINVAL);
    CHECK(strlen(tiny) < sizeof tiny);
    CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, NULL, 0), SL_EINVAL);
    /* not NUL-terminated: only len bytes are read */
    const char *two = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                      "\"Action\":\"*\",\"Resource\":\"*\"}}GARBAGE";
    CHECK_EQ(sl_iam_policy_parse("p", two, strlen(two) - 7, &p, err, sizeof err), SL_OK);
    sl_iam_policy_free(p);
}

SL_TEST(iampolicy_name_valid) {
    CHECK(sl_iam_name_valid("payments-writer"));
    CHECK(sl_iam_name_valid("a+b=c,d.e@f_g-h"));
    CHECK(sl_iam_name_valid("A"));
    char n[SL_IAM_NAME_MAX + 2];
    memset(n, 'x', sizeof n);
    n[SL_IAM_NAME_MAX] = 0;
    CHECK(sl_iam_name_valid(n));
    n[SL_IAM_NAME_MAX] = 'x';
    n[SL_IAM_NAME_MAX + 1] = 0;
    CHECK(!sl_iam_name_valid(n));
    CHECK(!sl_iam_name_valid(""));
    CHECK(!sl_iam_name_valid(NULL));
    CHECK(!sl_iam_name_valid("a b"));
    CHECK(!sl_iam_name_valid("a/b"));
    CHECK(!sl_iam_name_valid("a:b"));
    CHECK(!sl_iam_name_valid("é"));
    CHECK(!sl_iam_name_valid("a\nb"));
}

/* Least privilege in the style of the MSK developer guide: three identity policies, one per
 * application, evaluated for the actions their clients need and some they must not get. */
#define MSK_WRITER                                                                                 \
    "{\n"                                                                                          \
    "  \"Version\": \"2012-10-17\",\n"                                                             \
    "  \"Statement\": [\n"                                                                         \
    "    {\n"                                                                                      \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:Connect\",\n"                                                         \
    "        \"kafka-cluster:DescribeCluster\"\n"                                                  \
    "      ],\n"                                                                                   \
    "      \"Resource\": [\n"                                                                      \
    "        \"arn:aws:kafka:us-east-1:123456789012:cluster/payments/" UUID "\"\n"                 \
    "      ]\n"                                                                                    \
    "    },\n"                                                                                     \
    "    {\n"                                                                                      \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:DescribeTopic\",\n"                                                   \
    "        \"kafka-cluster:WriteData\",\n"                                                       \
    "        \"kafka-cluster:WriteDataIdempotently\"\n"                                            \
    "      ],\n"                                                                                   \
    "      \"Resource\": [\n"                                                                      \
    "        \"arn:aws:kafka:us-east-1:123456789012:topic/payments/" UUID "/payments-*\"\n"        \
    "      ]\n"                                                                                    \
    "    }\n"                                                                                      \
    "  ]\n"                                                                                        \
    "}\n"
#define MSK_FRAUD                                                                                  \
    "{\n"                                                                                          \
    "  \"Version\": \"2012-10-17\",\n"                                                             \
    "  \"Statement\": [\n"                                                                         \
    "    {\n"                                                                                      \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:Connect\",\n"                                                         \
    "        \"kafka-cluster:DescribeCluster\"\n"                                                  \
    "      ],\n"                                                                                   \
    "      \"Resource\": \"arn:aws:kafka:us-east-1:123456789012:cluster/payments/*\"\n"            \
    "    },\n"                                                                                     \
    "    {\n"                                                                                      \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:DescribeTopic\",\n"                                                   \
    "        \"kafka-cluster:ReadData\"\n"                                                         \
    "      ],\n"                                                                                   \
    "      \"Resource\": \"arn:aws:kafka:us-east-1:123456789012:topic/payments/*/payments-*\"\n"   \
    "    },\n"                                                                                     \
    "    {\n"                                                                                      \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:AlterGroup\",\n"                                                      \
    "        \"kafka-cluster:DescribeGroup\"\n"                                                    \
    "      ],\n"                                                                                   \
    "      \"Resource\": "                                                                         \
    "\"arn:aws:kafka:us-east-1:123456789012:group/payments/*/fraud-detector\"\n"                   \
    "    }\n"                                                                                      \
    "  ]\n"                                                                                        \
    "}\n"
#define MSK_AUDITOR                                                                                \
    "{\n"                                                                                          \
    "  \"Version\": \"2012-10-17\",\n"                                                             \
    "  \"Statement\": [\n"                                                                         \
    "    {\n"                                                                                      \
    "      \"Sid\": \"DescribeOnly\",\n"                                                           \
    "      \"Effect\": \"Allow\",\n"                                                               \
    "      \"Action\": [\n"                                                                        \
    "        \"kafka-cluster:Connect\",\n"                                                         \
    "        \"kafka-cluster:Describe*\"\n"                                                        \
    "      ],\n"                                                                                   \
    "      \"Resource\": [\n"                                                                      \
    "        \"arn:aws:kafka:us-east-1:123456789012:cluster/payments/*\",\n"                       \
    "        \"arn:aws:kafka:us-east-1:123456789012:topic/payments/*\",\n"                         \
    "        \"arn:aws:kafka:us-east-1:123456789012:group/payments/*\",\n"                         \
    "        \"arn:aws:kafka:us-east-1:123456789012:transactional-id/payments/*\"\n"               \
    "      ]\n"                                                                                    \
    "    }\n"                                                                                      \
    "  ]\n"                                                                                        \
    "}\n"

SL_TEST(iampolicy_msk_least_privilege) {
    const char *docs[] = {MSK_WRITER, MSK_FRAUD, MSK_AUDITOR};
    const char *names[] = {"payments-writer", "fraud-reader", "auditor"};
    sl_iam_policy *p[3];
    char err[256];
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sl_iam_policy_parse(names[i], docs[i], strlen(docs[i]), &p[i], err, sizeof err),
                 SL_OK);
    static const struct {
        int who;
        const char *action, *resource;
        int want, st;
    } q[] = {
        {0, "kafka-cluster:Connect", CL, A, 0},
        {0, "kafka-cluster:DescribeTopic", TP "payments-eu", A, 1},
        {0, "kafka-cluster:WriteData", TP "payments-eu", A, 1},
        {0, "kafka-cluster:WriteDataIdempotently", TP "payments-eu", A, 1},
        {0, "kafka-cluster:ReadData", TP "payments-eu", I, 0},
        {0, "kafka-cluster:WriteData", TP "refunds", I, 0},
        {0, "kafka-cluster:CreateTopic", TP "payments-new", I, 0},
        {0, "kafka-cluster:AlterGroup", GP "fraud-detector", I, 0},
        {0, "kafka-cluster:Connect", "arn:aws:kafka:us-east-1:" ACCT ":cluster/other/" UUID, I, 0},
        {1, "kafka-cluster:Connect", CL, A, 0},
        {1, "kafka-cluster:ReadData", TP "payments-eu", A, 1},
        {1, "kafka-cluster:DescribeTopic", TP "payments-eu", A, 1},
        {1, "kafka-cluster:AlterGroup", GP "fraud-detector", A, 2},
        {1, "kafka-cluster:DescribeGroup", GP "fraud-detector", A, 2},
        {1, "kafka-cluster:AlterGroup", GP "other-group", I, 0},
        {1, "kafka-cluster:WriteData", TP "payments-eu", I, 0},
        {1, "kafka-cluster:DeleteGroup", GP "fraud-detector", I, 0},
        {2, "kafka-cluster:Connect", CL, A, 0},
        {2, "kafka-cluster:DescribeCluster", CL, A, 0},
        {2, "kafka-cluster:DescribeTopic", TP "payments-eu", A, 0},
        {2, "kafka-cluster:DescribeTopicDynamicConfiguration", TP "x", A, 0},
        {2, "kafka-cluster:DescribeGroup", GP "fraud-detector", A, 0},
        {2, "kafka-cluster:DescribeTransactionalId", TXP "tx-1", A, 0},
        {2, "kafka-cluster:ReadData", TP "payments-eu", I, 0},
        {2, "kafka-cluster:AlterTopic", TP "payments-eu", I, 0},
        {2, "kafka-cluster:AlterClusterDynamicConfiguration", CL, I, 0},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        const sl_iam_policy *one[] = {p[q[i].who]};
        sl_iam_why why;
        sl_iam_effect e = sl_iam_evaluate(one, 1, q[i].action, q[i].resource, &C_DEF, &why);
        if ((int)e != q[i].want || ((int)e == A && why.statement != q[i].st)) {
            fprintf(stderr, "  %s %s %s: effect %d statement %d\n", names[q[i].who], q[i].action,
                    q[i].resource, (int)e, why.statement);
            CHECK(0);
        }
    }
    for (int i = 0; i < 3; i++) sl_iam_policy_free(p[i]);
}

/* allows_any: true whenever some resource under the pattern could be allowed. */
SL_TEST(iampolicy_allows_any) {
    static const struct {
        int line;
        const char *doc, *action, *pattern;
        const sl_iam_ctx *ctx;
        bool want;
    } q[] = {
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-*'")), RD, TP "*", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-*'")), WR, TP "*", NULL, false},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-*'")), RD, GP "*", NULL, false},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-*'")), RD, TP "orders-eu*", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-*'")), RD, TP "refunds*", NULL, false},
        {__LINE__, DOC(ALLOW("'" RD "'", "'arn:aws:kafka:*:topic/*/x'")), RD, TP "*", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders-v?'")), RD, TP "orders-*", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders'")), RD, TP "orders", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "orders'")), RD, TP "order", NULL, false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'" TP "*'")), RD, TP "*", NULL, false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'" TP "*'")), RD, TP "x*", NULL, false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'*'")), RD, TP "*", NULL, false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'arn:aws:kafka:*:topic/*'")), RD, TP "*", NULL,
         false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'" TP "secret-*'")), RD, TP "*", NULL, true},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'" TP "secret-*'")), RD, TP "secret-*", NULL,
         false},
        {__LINE__, DOC2(ALL_ALLOWED, DENY("'*'", "'" TP "?*'")), RD, TP "*", NULL, true},
        {__LINE__,
         DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'false'}")), RD,
         TP "*", NULL, true},
        {__LINE__,
         DOC2(ALL_ALLOWED, DENY_IF("'*'", "'*'", "'Bool':{'aws:SecureTransport':'false'}")), RD,
         TP "*", &C_PLAIN, false},
        {__LINE__, DOC(ALLOW_IF("'*'", "'*'", "'StringEquals':{'aws:username':'bob'}")), RD, TP "*",
         NULL, false},
        {__LINE__, DOC("{'Effect':'Allow','Action':'*','NotResource':'" TP "*'}"), RD, TP "*", NULL,
         false},
        {__LINE__, DOC("{'Effect':'Allow','Action':'*','NotResource':'" TP "a*'}"), RD, TP "*",
         NULL, true},
        {__LINE__, DOC2(ALL_ALLOWED, "{'Effect':'Deny','Action':'*','NotResource':'" TP "pub-*'}"),
         RD, TP "*", NULL, true},
        {__LINE__, DOC2(ALL_ALLOWED, "{'Effect':'Deny','Action':'*','NotResource':'" TP "pub-*'}"),
         RD, TP "priv-*", NULL, false},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'")), RD, TP "*", NULL, true},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'")), RD, TP "bob*", NULL, false},
        {__LINE__, DOC(ALLOW("'" RD "'", "'" TP "${aws:username}-*'")), RD, TP "*", &C_ROLE, false},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        sl_iam_policy *p;
        char err[256];
        CHECK_EQ(parse("p", q[i].doc, &p, err, sizeof err), SL_OK);
        const sl_iam_policy *one[] = {p};
        bool got =
            sl_iam_allows_any(one, 1, q[i].action, q[i].pattern, q[i].ctx ? q[i].ctx : &C_DEF);
        sl_iam_policy_free(p);
        if (got != q[i].want) fprintf(stderr, "  allows_any at line %d: %d\n", q[i].line, got);
        CHECK(got == q[i].want);
    }
}

/* Clock values at the ends of int64_t: no overflow (UBSan would abort), sensible answers. */
SL_TEST(iampolicy_extreme_clock) {
    sl_iam_policy *p;
    char err[256];
    CHECK_EQ(parse("p",
                   DOC(ALLOW_IF("'*'", "'*'",
                                "'DateGreaterThan':{'aws:CurrentTime':'2026-01-01T00:00:00Z'},"
                                "'NumericGreaterThan':{'aws:EpochTime':'0'},"
                                "'StringLike':{'aws:CurrentTime':'*-*-*T*Z'},"
                                "'StringNotLike':{'aws:EpochTime':'-*'}")),
                   &p, err, sizeof err),
             SL_OK);
    const sl_iam_policy *one[] = {p};
    sl_iam_ctx c = C_DEF;
    c.now_s = INT64_MAX;
    CHECK_EQ(sl_iam_evaluate(one, 1, RD, TP "o", &c, NULL), A);
    c.now_s = INT64_MIN;
    CHECK_EQ(sl_iam_evaluate(one, 1, RD, TP "o", &c, NULL), I);
    c.now_s = T0;
    CHECK_EQ(sl_iam_evaluate(one, 1, RD, TP "o", &c, NULL), A);
    sl_iam_policy_free(p);
}

/* Reference glob: P[0..pn) against S[0..sn), by dynamic programming. With `prefix`, true when
 * some prefix of P matches all of S (then S can be extended into a match). */
static bool ref_glob(const char *P, size_t pn, const char *S, size_t sn, bool prefix) {
    bool dp[24][24] = {{0}}; /* dp[i][j]: S[0..i) matched by P[0..j) */
    dp[0][0] = true;
    for (size_t j = 1; j <= pn; j++) dp[0][j] = dp[0][j - 1] && P[j - 1] == '*';
    for (size_t i = 1; i <= sn; i++)
        for (size_t j = 1; j <= pn; j++) {
            char c = P[j - 1];
            if (c == '*')
                dp[i][j] = dp[i][j - 1] || dp[i - 1][j];
            else
                dp[i][j] = dp[i - 1][j - 1] && (c == '?' || c == S[i - 1]);
        }
    if (!prefix) return dp[sn][pn];
    for (size_t j = 0; j <= pn; j++)
        if (dp[sn][j]) return true;
    return false;
}

static uint32_t g_rng = 12345;
static uint32_t rnd(void) {
    g_rng = g_rng * 1103515245u + 12345u;
    return g_rng >> 16;
}

/* The matcher against the reference on random patterns and names: evaluate (full match) and
 * allows_any (some extension matches; a Deny that the engine says covers a prefix really
 * denies every extension tried). */
SL_TEST(iampolicy_glob_differential) {
    static const char pal[] = "ab*?", sal[] = "ab";
    for (int iter = 0; iter < 4000; iter++) {
        char P[12], S[12], doc[256], res[64], pat[64];
        size_t pn = rnd() % 9, sn = rnd() % 9;
        for (size_t i = 0; i < pn; i++) P[i] = pal[rnd() % 4];
        for (size_t i = 0; i < sn; i++) S[i] = sal[rnd() % 2];
        P[pn] = S[sn] = 0;
        snprintf(doc, sizeof doc,
                 "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":"
                 "\"x:y\",\"Resource\":\"arn:%s\"}}",
                 P);
        sl_iam_policy *p;
        char err[256];
        CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, err, sizeof err), SL_OK);
        const sl_iam_policy *one[] = {p};
        snprintf(res, sizeof res, "arn:%s", S);
        snprintf(pat, sizeof pat, "arn:%s*", S);
        bool full = sl_iam_evaluate(one, 1, "X:Y", res, NULL, NULL) == SL_IAM_ALLOW;
        bool any = sl_iam_allows_any(one, 1, "x:y", pat, NULL);
        sl_iam_policy_free(p);
        if (full != ref_glob(P, pn, S, sn, false) || any != ref_glob(P, pn, S, sn, true))
            fprintf(stderr, "  pattern \"%s\" name \"%s\": full %d any %d\n", P, S, full, any);
        CHECK_EQ(full, ref_glob(P, pn, S, sn, false));
        CHECK_EQ(any, ref_glob(P, pn, S, sn, true));
        /* Deny P over Allow *: when allows_any says no, every extension is denied. */
        snprintf(doc, sizeof doc,
                 "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
                 "\"*\",\"Resource\":\"*\"},{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":"
                 "\"arn:%s\"}]}",
                 P);
        CHECK_EQ(sl_iam_policy_parse("p", doc, strlen(doc), &p, err, sizeof err), SL_OK);
        one[0] = p;
        bool allowed_some = sl_iam_allows_any(one, 1, "x:y", pat, NULL);
        for (int ext = 0; ext < 8 && !allowed_some; ext++) {
            char name[64];
            size_t xn = rnd() % 5;
            snprintf(name, sizeof name, "arn:%s", S);
            for (size_t i = 0; i < xn; i++) name[4 + sn + i] = sal[rnd() % 2];
            name[4 + sn + xn] = 0;
            CHECK_EQ(sl_iam_evaluate(one, 1, "x:y", name, NULL, NULL), SL_IAM_EXPLICIT_DENY);
        }
        sl_iam_policy_free(p);
    }
}
