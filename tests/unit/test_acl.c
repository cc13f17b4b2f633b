/* ACL model, evaluator, filters and stored format (src/acl). The evaluator is tested from a
 * table: each row is one decision against one rule set, named after the rule it shows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "base/sl_config.h"
#include "sl_test.h"

#define A(perm, op, rt, pat, name, pr, host)                                                       \
    { SL_ACL_RES_##rt, SL_ACL_PAT_##pat, SL_ACL_OP_##op, SL_ACL_PERM_##perm, name, pr, host }

/* The rule set the table runs against. */
static const sl_acl k_rules[] = {
    /* least privilege (the scenario) */
    A(ALLOW, WRITE, TOPIC, LITERAL, "payments", "User:payments-writer", "*"),
    A(ALLOW, READ, TOPIC, LITERAL, "payments", "User:fraud", "*"),
    A(ALLOW, READ, GROUP, PREFIXED, "fraud-", "User:fraud", "*"),
    /* DENY over ALLOW */
    A(ALLOW, ALL, TOPIC, LITERAL, "ledger", "User:bob", "*"),
    A(DENY, WRITE, TOPIC, LITERAL, "ledger", "User:bob", "*"),
    /* wildcard principal ALLOW with a specific DENY */
    A(ALLOW, READ, TOPIC, LITERAL, "public", "User:*", "*"),
    A(DENY, READ, TOPIC, LITERAL, "public", "User:mallory", "*"),
    /* PREFIXED vs LITERAL */
    A(ALLOW, READ, TOPIC, PREFIXED, "logs-", "User:ops", "*"),
    A(ALLOW, WRITE, TOPIC, LITERAL, "logs-", "User:lit", "*"),
    A(DENY, READ, TOPIC, PREFIXED, "logs-secret", "User:ops", "*"),
    /* host restriction */
    A(ALLOW, READ, TOPIC, LITERAL, "metrics", "User:carol", "10.0.0.5"),
    /* LITERAL "*" resource */
    A(ALLOW, DESCRIBE, TOPIC, LITERAL, "*", "User:viewer", "*"),
    /* implied operations */
    A(ALLOW, ALTER_CONFIGS, TOPIC, LITERAL, "cfg", "User:cfg", "*"),
    A(ALLOW, DELETE, TOPIC, LITERAL, "del", "User:del", "*"),
    A(ALLOW, ALTER, TOPIC, LITERAL, "alt", "User:alt", "*"),
    A(DENY, READ, TOPIC, LITERAL, "deny-read", "User:dr", "*"),
    A(ALLOW, ALL, TOPIC, LITERAL, "deny-read", "User:dr", "*"),
    A(DENY, ALL, TOPIC, LITERAL, "deny-all", "User:da", "*"),
    A(ALLOW, READ, TOPIC, LITERAL, "deny-all", "User:da", "*"),
    /* cluster and transactional ids */
    A(ALLOW, IDEMPOTENT_WRITE, CLUSTER, LITERAL, "kafka-cluster", "User:idem", "*"),
    A(ALLOW, WRITE, TRANSACTIONAL_ID, PREFIXED, "tx-", "User:tx", "*"),
};

typedef struct row {
    const char *why;
    const char *principal, *host;
    int op, rtype;
    const char *name;
    bool allow_if_no_acl;
    bool want;
} row;

#define R(why, pr, host, op, rt, name, noacl, want)                                                \
    { why, pr, host, SL_ACL_OP_##op, SL_ACL_RES_##rt, name, noacl, want }

static const row k_rows[] = {
    R("writer writes payments", "User:payments-writer", "1.2.3.4", WRITE, TOPIC, "payments", 0, 1),
    R("writer may not write elsewhere", "User:payments-writer", "1.2.3.4", WRITE, TOPIC, "ledger",
      0, 0),
    R("writer may not read", "User:payments-writer", "1.2.3.4", READ, TOPIC, "payments", 0, 0),
    R("WRITE implies DESCRIBE", "User:payments-writer", "1.2.3.4", DESCRIBE, TOPIC, "payments", 0,
      1),
    R("fraud reads payments", "User:fraud", "h", READ, TOPIC, "payments", 0, 1),
    R("fraud group in prefix", "User:fraud", "h", READ, GROUP, "fraud-detector", 0, 1),
    R("fraud group == prefix", "User:fraud", "h", READ, GROUP, "fraud-", 0, 1),
    R("fraud group outside prefix", "User:fraud", "h", READ, GROUP, "fraud", 0, 0),
    R("fraud group other", "User:fraud", "h", READ, GROUP, "billing-fraud-x", 0, 0),
    R("auditor has nothing", "User:auditor", "h", DESCRIBE, TOPIC, "payments", 0, 0),
    R("auditor cannot create", "User:auditor", "h", CREATE, CLUSTER, "kafka-cluster", 0, 0),
    R("DENY wins over ALLOW ALL", "User:bob", "h", WRITE, TOPIC, "ledger", 0, 0),
    R("ALLOW ALL still gives READ", "User:bob", "h", READ, TOPIC, "ledger", 0, 1),
    R("wildcard principal allows", "User:alice", "h", READ, TOPIC, "public", 0, 1),
    R("specific DENY beats wildcard", "User:mallory", "h", READ, TOPIC, "public", 0, 0),
    R("wildcard READ implies DESCRIBE", "User:mallory", "h", DESCRIBE, TOPIC, "public", 0, 1),
    R("PREFIXED matches longer name", "User:ops", "h", READ, TOPIC, "logs-app", 0, 1),
    R("PREFIXED matches equal name", "User:ops", "h", READ, TOPIC, "logs-", 0, 1),
    R("PREFIXED does not match shorter", "User:ops", "h", READ, TOPIC, "logs", 0, 0),
    R("longer PREFIXED DENY wins", "User:ops", "h", READ, TOPIC, "logs-secret-1", 0, 0),
    R("LITERAL matches only the name", "User:lit", "h", WRITE, TOPIC, "logs-", 0, 1),
    R("LITERAL is not a prefix", "User:lit", "h", WRITE, TOPIC, "logs-app", 0, 0),
    R("host matches", "User:carol", "10.0.0.5", READ, TOPIC, "metrics", 0, 1),
    R("other host refused", "User:carol", "10.0.0.6", READ, TOPIC, "metrics", 0, 0),
    R("LITERAL * covers every topic", "User:viewer", "h", DESCRIBE, TOPIC, "anything", 0, 1),
    R("LITERAL * is not READ", "User:viewer", "h", READ, TOPIC, "anything", 0, 0),
    R("ALTER_CONFIGS implies DESCRIBE_CONFIGS", "User:cfg", "h", DESCRIBE_CONFIGS, TOPIC, "cfg", 0,
      1),
    R("ALTER_CONFIGS does not imply ALTER", "User:cfg", "h", ALTER, TOPIC, "cfg", 0, 0),
    R("ALTER_CONFIGS does not imply DESCRIBE", "User:cfg", "h", DESCRIBE, TOPIC, "cfg", 0, 0),
    R("DELETE implies DESCRIBE", "User:del", "h", DESCRIBE, TOPIC, "del", 0, 1),
    R("ALTER implies DESCRIBE", "User:alt", "h", DESCRIBE, TOPIC, "alt", 0, 1),
    R("DESCRIBE does not imply READ", "User:alt", "h", READ, TOPIC, "alt", 0, 0),
    R("DENY READ does not deny DESCRIBE", "User:dr", "h", DESCRIBE, TOPIC, "deny-read", 0, 1),
    R("DENY READ denies READ", "User:dr", "h", READ, TOPIC, "deny-read", 0, 0),
    R("DENY ALL denies READ", "User:da", "h", READ, TOPIC, "deny-all", 0, 0),
    R("DENY ALL denies DESCRIBE", "User:da", "h", DESCRIBE, TOPIC, "deny-all", 0, 0),
    R("super user allowed anything", "User:admin", "h", ALTER, CLUSTER, "kafka-cluster", 0, 1),
    R("super user beats DENY", "User:admin2", "h", READ, TOPIC, "public", 0, 1),
    R("no ACL on resource: denied", "User:alice", "h", WRITE, TRANSACTIONAL_ID, "unruled", 0, 0),
    R("no ACL + allow.everyone", "User:alice", "h", WRITE, TRANSACTIONAL_ID, "unruled", 1, 1),
    R("LITERAL * counts as an ACL", "User:alice", "h", READ, TOPIC, "unruled", 1, 0),
    R("ACLs exist: allow.everyone ignored", "User:alice", "h", WRITE, TOPIC, "payments", 1, 0),
    R("no ACL group + allow.everyone", "User:x", "h", READ, GROUP, "g", 1, 1),
    R("cluster IDEMPOTENT_WRITE", "User:idem", "h", IDEMPOTENT_WRITE, CLUSTER, "kafka-cluster", 0,
      1),
    R("transactional id prefix", "User:tx", "h", WRITE, TRANSACTIONAL_ID, "tx-1", 0, 1),
    R("transactional id outside prefix", "User:tx", "h", WRITE, TRANSACTIONAL_ID, "t-1", 0, 0),
    R("resource type matters", "User:fraud", "h", READ, TRANSACTIONAL_ID, "payments", 0, 0),
    R("unauthenticated denied", NULL, "h", READ, TOPIC, "public", 1, 0),
};

/* A scratch directory removed by the test. */
static void tmpdir(char *out, size_t n) {
    snprintf(out, n, "/tmp/sl_acl_XXXXXX");
    if (!mkdtemp(out)) out[0] = 0;
}

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
}

/* Writes `rules` to dir/acls and opens an authorizer over them. */
static sl_authorizer *open_with(const char *dir, const sl_acl *rules, size_t n, bool noacl) {
    char path[512];
    snprintf(path, sizeof path, "%s/acls", dir);
    sl_authorizer *az = NULL;
    char err[256];
    if (sl_authorizer_new(path, " User:admin ; User:admin2", noacl, &az, err, sizeof err))
        return NULL;
    sl_acl_set *s = NULL;
    if (sl_acl_set_build(rules, n, &s) || sl_authorizer_replace(az, s)) {
        sl_authorizer_free(az);
        return NULL;
    }
    return az;
}

SL_TEST(acl_evaluator_table) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    CHECK(dir[0]);
    size_t nr = sizeof k_rules / sizeof k_rules[0];
    sl_authorizer *strict = open_with(dir, k_rules, nr, false);
    sl_authorizer *loose = open_with(dir, k_rules, nr, true);
    CHECK(strict && loose);
    int bad = 0;
    for (size_t i = 0; i < sizeof k_rows / sizeof k_rows[0]; i++) {
        const row *r = &k_rows[i];
        sl_authorizer *az = r->allow_if_no_acl ? loose : strict;
        bool got = sl_authorizer_allows(az, r->principal, r->host, r->op, r->rtype, r->name,
                                        strlen(r->name));
        if (got != r->want) {
            fprintf(stderr, "  row \"%s\": got %s\n", r->why, got ? "allow" : "deny");
            bad++;
        }
    }
    sl_authorizer_free(strict);
    sl_authorizer_free(loose);
    rm_rf(dir);
    CHECK_EQ(bad, 0);
}

/* The audit trail names what decided each denial: the DENY binding, or that nothing allowed. */
SL_TEST(acl_explain_names_what_decided) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    sl_authorizer *az = open_with(dir, k_rules, sizeof k_rules / sizeof k_rules[0], false);
    CHECK(az);
    char why[256] = "";
    CHECK(!sl_authorizer_explain(az, "User:da", "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "deny-all",
                                 8, why, sizeof why));
    CHECK(strncmp(why, "DENY User:da", 12) == 0 && strstr(why, "deny-all"));
    CHECK(!sl_authorizer_explain(az, "User:alice", "h", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC,
                                 "payments", 8, why, sizeof why));
    CHECK(strcmp(why, "no ALLOW binding matches (deny by default)") == 0);
    CHECK(!sl_authorizer_explain(az, NULL, "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "public", 6, why,
                                 sizeof why));
    CHECK(strcmp(why, "unauthenticated") == 0);
    strcpy(why, "untouched");
    CHECK(sl_authorizer_explain(az, "User:admin", "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "x", 1,
                                why, sizeof why));
    CHECK(strcmp(why, "untouched") == 0);
    sl_authorizer_free(az);
    rm_rf(dir);
}

SL_TEST(acl_authorized_operations_and_by_type) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    sl_authorizer *az = open_with(dir, k_rules, sizeof k_rules / sizeof k_rules[0], false);
    CHECK(az);
    int32_t ops =
        sl_authorizer_ops(az, "User:payments-writer", "h", SL_ACL_RES_TOPIC, "payments", 8);
    CHECK_EQ(ops, 1 << SL_ACL_OP_WRITE | 1 << SL_ACL_OP_DESCRIBE);
    ops = sl_authorizer_ops(az, "User:fraud", "h", SL_ACL_RES_GROUP, "fraud-x", 7);
    CHECK_EQ(ops, 1 << SL_ACL_OP_READ | 1 << SL_ACL_OP_DESCRIBE);
    CHECK_EQ(sl_authorizer_ops(az, "User:auditor", "h", SL_ACL_RES_CLUSTER, "kafka-cluster", 13),
             0);
    /* InitProducerId's rule: WRITE on some topic. */
    CHECK(sl_authorizer_allows_any(az, "User:payments-writer", "h", SL_ACL_OP_WRITE,
                                   SL_ACL_RES_TOPIC));
    CHECK(!sl_authorizer_allows_any(az, "User:fraud", "h", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC));
    /* bob's only WRITE (via ALL on ledger) is shadowed by the DENY WRITE on ledger */
    CHECK(!sl_authorizer_allows_any(az, "User:bob", "h", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC));
    CHECK(sl_authorizer_allows_any(az, "User:admin", "h", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC));
    sl_authorizer_free(az);
    rm_rf(dir);
}

SL_TEST(acl_invalid_bindings) {
    sl_acl ok = A(ALLOW, READ, TOPIC, LITERAL, "t", "User:a", "*");
    CHECK(!sl_acl_invalid(&ok));
    sl_acl b = ok;
    b.rtype = SL_ACL_RES_ANY;
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.pattern = SL_ACL_PAT_MATCH;
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.op = SL_ACL_OP_ANY;
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.perm = SL_ACL_PERM_ANY;
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.name = "";
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.principal = "alice";
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.principal = "User:";
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.host = "";
    CHECK(sl_acl_invalid(&b));
    b = ok;
    b.rtype = SL_ACL_RES_CLUSTER;
    CHECK(sl_acl_invalid(&b)); /* the cluster is only kafka-cluster */
    b.name = "kafka-cluster";
    CHECK(!sl_acl_invalid(&b));
    b.rtype = 9;
    CHECK(sl_acl_invalid(&b));
}

SL_TEST(acl_filters_any_and_match) {
    sl_acl lit = A(ALLOW, READ, TOPIC, LITERAL, "payments", "User:a", "*");
    sl_acl star = A(ALLOW, READ, TOPIC, LITERAL, "*", "User:a", "*");
    sl_acl pre = A(DENY, WRITE, TOPIC, PREFIXED, "pay", "User:b", "10.0.0.1");
    sl_acl grp = A(ALLOW, READ, GROUP, LITERAL, "payments", "User:a", "*");
    sl_acl_filter all = {SL_ACL_RES_ANY, SL_ACL_PAT_ANY, SL_ACL_OP_ANY, SL_ACL_PERM_ANY,
                         NULL,           NULL,           NULL};
    CHECK(!sl_acl_filter_invalid(&all));
    CHECK(sl_acl_filter_matches(&all, &lit) && sl_acl_filter_matches(&all, &pre));
    sl_acl_filter f = all;
    f.name = "payments"; /* ANY: exact name, any pattern type */
    CHECK(sl_acl_filter_matches(&f, &lit));
    CHECK(!sl_acl_filter_matches(&f, &star));
    CHECK(!sl_acl_filter_matches(&f, &pre));
    CHECK(sl_acl_filter_matches(&f, &grp));
    f.pattern = SL_ACL_PAT_MATCH; /* MATCH: everything that applies to "payments" */
    CHECK(sl_acl_filter_matches(&f, &lit));
    CHECK(sl_acl_filter_matches(&f, &star));
    CHECK(sl_acl_filter_matches(&f, &pre));
    f.name = "pa";
    CHECK(!sl_acl_filter_matches(&f, &pre));
    CHECK(sl_acl_filter_matches(&f, &star));
    f = all;
    f.pattern = SL_ACL_PAT_PREFIXED;
    CHECK(sl_acl_filter_matches(&f, &pre) && !sl_acl_filter_matches(&f, &lit));
    f.name = "pay";
    CHECK(sl_acl_filter_matches(&f, &pre));
    f.name = "payments"; /* PREFIXED filter: exact pattern name */
    CHECK(!sl_acl_filter_matches(&f, &pre));
    f = all;
    f.rtype = SL_ACL_RES_GROUP;
    CHECK(sl_acl_filter_matches(&f, &grp) && !sl_acl_filter_matches(&f, &lit));
    f = all;
    f.principal = "User:b";
    f.host = "10.0.0.1";
    f.op = SL_ACL_OP_WRITE;
    f.perm = SL_ACL_PERM_DENY;
    CHECK(sl_acl_filter_matches(&f, &pre) && !sl_acl_filter_matches(&f, &lit));
    f.host = "10.0.0.2";
    CHECK(!sl_acl_filter_matches(&f, &pre));
    /* UNKNOWN elements make a filter invalid (INVALID_REQUEST) */
    f = all;
    f.rtype = SL_ACL_RES_UNKNOWN;
    CHECK(sl_acl_filter_invalid(&f));
    f = all;
    f.pattern = 7;
    CHECK(sl_acl_filter_invalid(&f));
    f = all;
    f.op = SL_ACL_OP_UNKNOWN;
    CHECK(sl_acl_filter_invalid(&f));
    f = all;
    f.perm = 9;
    CHECK(sl_acl_filter_invalid(&f));
}

SL_TEST(acl_store_round_trip_and_dedup) {
    sl_acl v[] = {
        A(ALLOW, READ, TOPIC, LITERAL, "t with space\t%", "User:weird name", "*"),
        A(ALLOW, READ, TOPIC, LITERAL, "t with space\t%", "User:weird name", "*"),
        A(DENY, ALL, GROUP, PREFIXED, "g\xc3\xa9-", "User:*", "::1"),
        A(ALLOW, CLUSTER_ACTION, CLUSTER, LITERAL, "kafka-cluster", "User:b", "*"),
    };
    sl_acl_set *s = NULL;
    CHECK_EQ(sl_acl_set_build(v, 4, &s), SL_OK);
    CHECK_EQ(sl_acl_set_count(s), 3); /* the duplicate is kept once */
    char *txt = NULL;
    size_t len = 0;
    CHECK_EQ(sl_acl_set_serialize(s, &txt, &len), SL_OK);
    CHECK(!memchr(txt + 14, ' ', len - 14)); /* spaces are escaped: one token per field */
    sl_acl_set *back = NULL;
    char err[128];
    CHECK_EQ(sl_acl_set_parse(txt, len, &back, err, sizeof err), SL_OK);
    CHECK_EQ(sl_acl_set_count(back), 3);
    for (size_t i = 0; i < 3; i++) CHECK(sl_acl_equal(sl_acl_set_at(s, i), sl_acl_set_at(back, i)));
    /* a torn copy (no final newline) is refused */
    sl_acl_set *torn = NULL;
    CHECK_EQ(sl_acl_set_parse(txt, len - 1, &torn, err, sizeof err), SL_ECORRUPT);
    CHECK(torn == NULL);
    free(txt);
    sl_acl_set_free(s);
    sl_acl_set_free(back);
}

SL_TEST(acl_store_parser_rejects) {
    static const char *const bad[] = {
        "",
        "sluice-acls 2\n",
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt\tUser:a\n",       /* 6 fields */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt\tUser:a\t*\tx\n", /* 8 fields */
        "sluice-acls 1\nallow\tREAD\tTOPIC\tLITERAL\tt\tUser:a\t*\n",    /* not canonical */
        "sluice-acls 1\nALLOW\tANY\tTOPIC\tLITERAL\tt\tUser:a\t*\n",     /* ANY op */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tMATCH\tt\tUser:a\t*\n",      /* MATCH pattern */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt%0\tUser:a\t*\n",  /* short escape */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt%00\tUser:a\t*\n", /* NUL */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt x\tUser:a\t*\n",  /* raw space */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\t\tUser:a\t*\n",     /* empty name */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt\tnoprefix\t*\n",  /* principal */
        "sluice-acls 1\nALLOW\tREAD\tCLUSTER\tLITERAL\tc\tUser:a\t*\n",  /* cluster name */
        "sluice-acls 1\nALLOW\tREAD\tTOPIC\tLITERAL\tt\tUser:a\t*",      /* torn */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_acl_set *s = NULL;
        char err[128] = "";
        sl_err e = sl_acl_set_parse(bad[i], strlen(bad[i]), &s, err, sizeof err);
        if (e != SL_ECORRUPT) fprintf(stderr, "  case %zu accepted\n", i);
        CHECK_EQ(e, SL_ECORRUPT);
        CHECK(err[0]);
        CHECK(s == NULL);
    }
    sl_acl_set *s = NULL;
    char err[64];
    CHECK_EQ(sl_acl_set_parse("sluice-acls 1\n", 14, &s, err, sizeof err), SL_OK);
    CHECK_EQ(sl_acl_set_count(s), 0);
    sl_acl_set_free(s);
}

SL_TEST(acl_names_parse) {
    CHECK_EQ(sl_acl_op_parse("IdempotentWrite"), SL_ACL_OP_IDEMPOTENT_WRITE);
    CHECK_EQ(sl_acl_op_parse("describe-configs"), SL_ACL_OP_DESCRIBE_CONFIGS);
    CHECK_EQ(sl_acl_op_parse("Read"), SL_ACL_OP_READ);
    CHECK_EQ(sl_acl_op_parse("Reed"), -1);
    CHECK_EQ(sl_acl_res_parse("TransactionalId"), SL_ACL_RES_TRANSACTIONAL_ID);
    CHECK_EQ(sl_acl_pat_parse("prefixed"), SL_ACL_PAT_PREFIXED);
    CHECK_EQ(sl_acl_perm_parse("Deny"), SL_ACL_PERM_DENY);
    CHECK(!strcmp(sl_acl_op_name(SL_ACL_OP_ALTER_CONFIGS), "ALTER_CONFIGS"));
    CHECK(!strcmp(sl_acl_op_name(99), "UNKNOWN"));
}

SL_TEST(acl_file_persistence_and_reload) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    char path[128];
    snprintf(path, sizeof path, "%s/sub/acls", dir);
    sl_authorizer *a1 = NULL, *a2 = NULL;
    char err[256];
    CHECK_EQ(sl_authorizer_new(path, "", false, &a1, err, sizeof err), SL_OK);
    CHECK_EQ(sl_acl_set_count(sl_authorizer_set(a1)), 0); /* missing file: empty */
    CHECK_EQ(sl_authorizer_new(path, "", false, &a2, err, sizeof err), SL_OK);
    sl_acl one = A(ALLOW, READ, TOPIC, LITERAL, "t", "User:a", "*");
    CHECK_EQ(sl_authorizer_lock(a1), SL_OK);
    sl_acl_set *s = NULL;
    CHECK_EQ(sl_acl_set_build(&one, 1, &s), SL_OK);
    CHECK_EQ(sl_authorizer_replace(a1, s), SL_OK);
    sl_authorizer_unlock(a1);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    /* The other writer sees it after a (forced) refresh. */
    CHECK(!sl_authorizer_allows(a2, "User:a", "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "t", 1));
    CHECK_EQ(sl_authorizer_refresh(a2, true), SL_OK);
    CHECK(sl_authorizer_allows(a2, "User:a", "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "t", 1));
    /* A corrupt file is not loaded: the previous set stays in force... */
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("sluice-acls 1\ngarbage\n", f);
    fclose(f);
    CHECK_EQ(sl_authorizer_refresh(a2, true), SL_ECORRUPT);
    CHECK(sl_authorizer_allows(a2, "User:a", "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "t", 1));
    /* ...and a broker refuses to start on it. */
    sl_authorizer *a3 = NULL;
    CHECK_EQ(sl_authorizer_new(path, "", false, &a3, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "line 2"));
    sl_authorizer_free(a1);
    sl_authorizer_free(a2);
    rm_rf(dir);
}

SL_TEST(acl_config_enable) {
    sl_config c;
    sl_config_defaults(&c);
    bool bad;
    char err[256];
    CHECK(!sl_authz_enabled(&c, &bad, err, sizeof err) && !bad);
    CHECK(!c.allow_everyone_if_no_acl_found);
    CHECK_EQ(sl_config_set(&c, "authorizer.class.name",
                           "org.apache.kafka.metadata.authorizer.StandardAuthorizer", err,
                           sizeof err),
             SL_OK);
    CHECK(sl_authz_enabled(&c, &bad, err, sizeof err));
    CHECK_EQ(sl_config_set(&c, "authorizer.class.name", "kafka.security.authorizer.AclAuthorizer",
                           err, sizeof err),
             SL_OK);
    CHECK(sl_authz_enabled(&c, &bad, err, sizeof err));
    CHECK_EQ(sl_config_set(&c, "authorizer.class.name", "com.example.Custom", err, sizeof err),
             SL_OK);
    CHECK(!sl_authz_enabled(&c, &bad, err, sizeof err) && bad);
    sl_config_defaults(&c);
    CHECK_EQ(sl_config_set(&c, "sluice.authorizer.enable", "true", err, sizeof err), SL_OK);
    CHECK(sl_authz_enabled(&c, &bad, err, sizeof err));
    char path[SL_CFG_STR_MAX + 32];
    sl_authz_path(&c, path, sizeof path);
    CHECK(strstr(path, "/sluice-acls"));
    CHECK_EQ(sl_config_set(&c, "sluice.acl.file", "/x/y", err, sizeof err), SL_OK);
    sl_authz_path(&c, path, sizeof path);
    CHECK(!strcmp(path, "/x/y"));
}

/* The index: a decision costs the same whatever else the set holds. Checked by result (every
 * decision is right among 10 000 bindings), not by timing (bench/bench_acl.c measures that). */
SL_TEST(acl_index_many) {
    enum { N = 10000 };
    sl_acl *v = calloc(N, sizeof *v);
    char(*names)[32] = calloc(N, 32);
    char(*prs)[32] = calloc(N, 32);
    CHECK(v && names && prs);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 32, i % 2 ? "topic-%d" : "pre-%d-", i);
        snprintf(prs[i], 32, "User:u%d", i);
        v[i] = (sl_acl){SL_ACL_RES_TOPIC,
                        i % 2 ? SL_ACL_PAT_LITERAL : SL_ACL_PAT_PREFIXED,
                        SL_ACL_OP_READ,
                        SL_ACL_PERM_ALLOW,
                        names[i],
                        prs[i],
                        "*"};
    }
    sl_acl_set *s = NULL;
    CHECK_EQ(sl_acl_set_build(v, N, &s), SL_OK);
    CHECK_EQ(sl_acl_set_count(s), N);
    char dir[64];
    tmpdir(dir, sizeof dir);
    char path[128];
    snprintf(path, sizeof path, "%s/acls", dir);
    sl_authorizer *az = NULL;
    char err[128];
    CHECK_EQ(sl_authorizer_new(path, "", false, &az, err, sizeof err), SL_OK);
    CHECK_EQ(sl_authorizer_replace(az, s), SL_OK);
    int wrong = 0;
    for (int i = 0; i < N; i += 7) {
        char name[48];
        snprintf(name, sizeof name, i % 2 ? "topic-%d" : "pre-%d-suffix", i);
        if (!sl_authorizer_allows(az, prs[i], "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, name,
                                  strlen(name)))
            wrong++;
        if (sl_authorizer_allows(az, prs[(i + 1) % N], "h", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, name,
                                 strlen(name)))
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    sl_authorizer_free(az);
    free(v);
    free(names);
    free(prs);
    rm_rf(dir);
}
