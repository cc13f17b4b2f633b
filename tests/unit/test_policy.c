/* The field-protection policy parser (src/protect/sl_policy.h): the interop scenario's policy
 * parses into the rules, options and defaults it says; a topic finds its literal block, else its
 * longest prefix, else none; every malformed line is refused with the file name, its exact line
 * number and no more of the input than one short word; keys the callback does not know are
 * refused; snapshots are refcounted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protect/sl_policy.h"
#include "sl_test.h"

static const char k_scenario[] =
    "version 1\n"
    "topic payments\n"
    "  subject value.customer_id token-key=cust\n"
    "  value.card_number encrypt key=pan view-mask=0,4 view-token=tok\n"
    "  value.ssn encrypt key=pii\n"
    "  value.name encrypt key=pii alg=siv\n"
    "  value.customer_id encrypt key=cid alg=siv view-token=cust\n"
    "  value.email token key=tok\n"
    "topic refunds\n"
    "  subject value.customer_id token-key=cust\n"
    "  value.customer_id encrypt key=cid alg=siv view-token=cust\n"
    "  value.card_number encrypt key=pan view-mask=0,4 view-token=tok\n";

static bool known_keys(void *arg, const char *name) {
    (void)arg;
    static const char *const k[] = {"cust", "pan", "tok", "pii", "cid"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(k[i], name)) return true;
    return false;
}

static sl_policy *parse(const char *text, char *err, size_t errlen) {
    sl_policy *p = NULL;
    if (sl_policy_parse(text, strlen(text), "p.conf", known_keys, NULL, &p, err, errlen) != SL_OK)
        return NULL;
    return p;
}

static const sl_ptopic *topic(const sl_policy *p, const char *name) {
    return sl_policy_topic(p, name, strlen(name));
}

SL_TEST(policy_scenario_parses) {
    char err[256];
    sl_policy *p = parse(k_scenario, err, sizeof err);
    if (!p) fprintf(stderr, "  %s\n", err);
    CHECK(p);
    CHECK_EQ(p->ntopics, 2);
    CHECK_EQ(strlen(p->digest), 64);
    const sl_ptopic *t = topic(p, "payments");
    CHECK(t && !t->prefix && !strcmp(t->pattern, "payments") && t->line == 2);
    CHECK(t->has_subject && t->needs_keys && !t->pass_on_error);
    CHECK(t->subject.part == SL_PP_VALUE && !t->subject.whole);
    CHECK(!strcmp(t->subject.text, "value.customer_id") && !strcmp(t->subject_key, "cust"));
    CHECK_EQ(t->subject.path.nseg, 1);
    CHECK(!strcmp(t->subject.path.seg[0].name, "customer_id"));
    CHECK_EQ(t->nrules, 5);
    const sl_prule *r = &t->rules[0];
    CHECK(r->line == 4 && r->action == SL_PA_ENCRYPT && !strcmp(r->key, "pan"));
    CHECK(r->alg == SL_FC_GCM && r->has_view_mask && r->view_mask.keep_first == 0);
    CHECK(r->view_mask.keep_last == 4 && r->view_mask.ch == '*');
    CHECK(!strcmp(r->view_token, "tok") && !strcmp(r->target.text, "value.card_number"));
    r = &t->rules[1];
    CHECK(r->alg == SL_FC_GCM && !r->has_view_mask && r->view_token[0] == 0);
    CHECK(!strcmp(r->key, "pii"));
    CHECK(t->rules[2].alg == SL_FC_SIV && t->rules[3].alg == SL_FC_SIV);
    CHECK(!strcmp(t->rules[3].view_token, "cust"));
    r = &t->rules[4];
    CHECK(r->action == SL_PA_TOKEN && !strcmp(r->key, "tok") && r->line == 8);
    t = topic(p, "refunds");
    CHECK(t && t->nrules == 2 && t->line == 9 && t->has_subject);
    /* Each key once, whichever rules name it. */
    const char *names[16];
    int n = sl_policy_keys(p, names, 16);
    CHECK_EQ(n, 5);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) CHECK(strcmp(names[i], names[j]));
    for (int i = 0; i < n; i++) CHECK(known_keys(NULL, names[i]));
    CHECK_EQ(sl_policy_keys(p, names, 2), 2);
    sl_policy_unref(p);
}

SL_TEST(policy_defaults_and_options) {
    char err[256];
    sl_policy *p = parse("# a comment\n\n"
                         "topic t1   # trailing comment\n"
                         "\ton-error pass\n"
                         "  value.a mask\n"
                         "  value.b mask keep-first=2 keep-last=0\n"
                         "  value.c mask keep-first=1 char=x\n"
                         "  value.items[*].pan redact\n"
                         "  key redact remove\n"
                         "  header:trace-id.user redact\n"
                         "  header:raw encrypt key=pii\r\n"
                         "  value token key=tok\n",
                         err, sizeof err);
    if (!p) fprintf(stderr, "  %s\n", err);
    CHECK(p);
    const sl_ptopic *t = topic(p, "t1");
    CHECK(t && t->pass_on_error && !t->has_subject && t->needs_keys);
    CHECK_EQ(t->nrules, 8);
    const sl_prule *r = t->rules;
    CHECK(r[0].action == SL_PA_MASK && r[0].mask.keep_first == 0 && r[0].mask.keep_last == 4);
    CHECK(r[0].mask.ch == '*');
    CHECK(r[1].mask.keep_first == 2 && r[1].mask.keep_last == 0);
    CHECK(r[2].mask.keep_first == 1 && r[2].mask.keep_last == 4 && r[2].mask.ch == 'x');
    CHECK(r[3].action == SL_PA_REDACT && !r[3].remove && r[3].target.path.nseg == 3);
    CHECK(!r[3].target.path.seg[0].any_index && r[3].target.path.seg[1].any_index);
    CHECK(r[4].target.part == SL_PP_KEY && r[4].target.whole && r[4].remove);
    CHECK(r[5].target.part == SL_PP_HEADER && !strcmp(r[5].target.header, "trace-id"));
    CHECK(!r[5].target.whole && !strcmp(r[5].target.path.seg[0].name, "user"));
    CHECK(r[6].target.part == SL_PP_HEADER && r[6].target.whole && r[6].alg == SL_FC_GCM);
    CHECK(r[7].target.part == SL_PP_VALUE && r[7].target.whole && r[7].action == SL_PA_TOKEN);
    sl_policy_unref(p);
}

/* Each malformed policy and the exact message it gets: the file name, the line the problem is
 * on, and at most one short word of the input. */
static const struct {
    const char *text, *msg;
} k_bad[] = {
    {"topic t\n  value.a hash\n", "p.conf:2: unknown action 'hash'"},
    {"# c\nprotect t\n", "p.conf:2: unknown directive 'protect'"},
    {"version 1\nvalue.a redact\n", "p.conf:2: rule outside a topic block"},
    {"subject value.a token-key=cust\n", "p.conf:1: subject outside a topic block"},
    {"on-error pass\n", "p.conf:1: on-error outside a topic block"},
    {"topic t\n\n value.a..b redact\n", "p.conf:3: bad target 'value.a..b': empty member name"},
    {"topic t\n value.a%b redact\n", "p.conf:2: bad target 'value.a%b': unsupported character"},
    {"topic t\n valuex redact\n", "p.conf:2: unknown directive 'valuex'"},
    {"topic t\n header: redact\n", "p.conf:2: bad target 'header:': empty header name"},
    {"topic t\n header:a%b redact\n",
     "p.conf:2: bad target 'header:a%b': unsupported character in header name"},
    {"topic t\n value.a\n", "p.conf:2: rule needs an action (mask, redact, token or encrypt)"},
    {"topic t\n value.a mask keep=3\n", "p.conf:2: unknown option 'keep' for mask"},
    {"topic t\n value.a redact key=pan\n", "p.conf:2: unknown option 'key' for redact"},
    {"topic t\n value.a mask keep-last=1 keep-last=2\n", "p.conf:2: duplicate option 'keep-last'"},
    {"topic t\n value.a redact remove=yes\n", "p.conf:2: option 'remove' takes no value"},
    {"topic t\n value.a token key\n", "p.conf:2: option 'key' needs a value"},
    {"topic t\n value.a token\n", "p.conf:2: token needs key=KEY"},
    {"topic t\n value.a encrypt alg=siv\n", "p.conf:2: encrypt needs key=KEY"},
    {"topic t\n subject value.id\n", "p.conf:2: subject needs token-key=KEY"},
    {"topic t\n subject value.id key=cust\n", "p.conf:2: unknown option 'key' for subject"},
    {"topic t\n value.a mask keep-last=65\n", "p.conf:2: bad number '65' for keep-last (0..64)"},
    {"topic t\n value.a mask keep-first=-1\n", "p.conf:2: bad number '-1' for keep-first (0..64)"},
    {"topic t\n value.a mask keep-first=\n", "p.conf:2: bad number '' for keep-first (0..64)"},
    {"topic t\n value.a mask char=ab\n",
     "p.conf:2: bad mask character 'ab' (one printable ASCII character, not \" or \\)"},
    {"topic t\n value.a mask char=#\n",
     "p.conf:2: bad mask character '' (one printable ASCII character, not \" or \\)"},
    {"topic t\n value.a encrypt key=pan alg=cbc\n", "p.conf:2: bad alg 'cbc' (gcm or siv)"},
    {"topic t\n value.a encrypt key=pan view-mask=4\n",
     "p.conf:2: bad view-mask '4' (F,L: two numbers 0..64)"},
    {"topic t\n value.a encrypt key=pan view-mask=1,99\n",
     "p.conf:2: bad view-mask '1,99' (F,L: two numbers 0..64)"},
    {"topic t\n value.a encrypt key=ccn\n", "p.conf:2: unknown key 'ccn'"},
    {"topic t\n value.a encrypt key=pan view-token=nope\n", "p.conf:2: unknown key 'nope'"},
    {"topic t\n subject value.id token-key=nope\n", "p.conf:2: unknown key 'nope'"},
    {"topic t\n value.a token key=a.b\n",
     "p.conf:2: bad key name 'a.b' ([A-Za-z0-9_-], 1..64 characters)"},
    {"topic t\ntopic u\ntopic t\n", "p.conf:3: duplicate topic 't' (first on line 1)"},
    {"topic pay*\ntopic pay\n\ntopic pay*\n",
     "p.conf:4: duplicate topic 'pay' prefix (first on line 1)"},
    {"topic t\n value.a redact\n value.b redact\n value.a mask\n",
     "p.conf:4: duplicate target 'value.a' in this block (first on line 2)"},
    {"topic t\n subject value.a token-key=cust\n subject value.b token-key=cust\n",
     "p.conf:3: two subject lines in one block (first on line 2)"},
    {"topic t\n on-error pass\n on-error reject\n",
     "p.conf:3: two on-error lines in one block (first on line 2)"},
    {"topic t\n on-error ignore\n", "p.conf:2: bad on-error 'ignore' (reject or pass)"},
    {"version 2\n", "p.conf:1: unsupported version '2' (only 1)"},
    {"version\n", "p.conf:1: version needs one number"},
    {"# first\ntopic t\nversion 1\n", "p.conf:3: version must be the first directive"},
    {"version 1\nversion 1\n", "p.conf:2: version must be the first directive"},
    {"topic t u\n", "p.conf:1: unexpected word 'u'"},
    {"topic\n", "p.conf:1: topic needs a name or a PREFIX*"},
    {"topic a/b\n", "p.conf:1: bad topic name 'a/b' (characters A-Z a-z 0-9 . _ -)"},
    {"topic **\n", "p.conf:1: bad topic name '**' (characters A-Z a-z 0-9 . _ -)"},
    {"topic ..\n", "p.conf:1: bad topic name '..'"},
    {"topic t\n value.a redact\x01\n", "p.conf:2: control character (byte 0x01)"},
    {"topic t\n\n\n value.a redact \xc3\x28\n", "p.conf:4: invalid UTF-8"},
    {"topic t\n value.a redact\r\r\n", "p.conf:2: control character (byte 0x0d)"},
    {"topic t\n a b c d e f g h i j k l m n o p q\n",
     "p.conf:2: too many words on one line (at most 16)"},
};

SL_TEST(policy_errors_name_the_line) {
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        char err[256];
        sl_policy *p = (sl_policy *)1;
        sl_err e = sl_policy_parse(k_bad[i].text, strlen(k_bad[i].text), "p.conf", known_keys, NULL,
                                   &p, err, sizeof err);
        if (e == SL_OK || strcmp(err, k_bad[i].msg))
            fprintf(stderr, "  case %zu: got '%s'\n       want '%s'\n", i, e ? err : "(ok)",
                    k_bad[i].msg);
        CHECK(e == SL_ECONFIG);
        CHECK(p == NULL);
        CHECK(!strcmp(err, k_bad[i].msg));
    }
}

SL_TEST(policy_errors_limits) {
    char err[256];
    sl_policy *p;
    /* A line of 4097 bytes (line 2); 4096 is fine. */
    size_t n = 8 + 4097 + 1;
    char *t = malloc(SL_POLICY_MAX_BYTES + 2);
    CHECK(t);
    memcpy(t, "topic t\n", 8);
    memset(t + 8, '#', 4097);
    t[8 + 4097] = '\n';
    sl_err e = sl_policy_parse(t, n, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG && !strcmp(err, "p.conf:2: line too long (at most 4096 bytes)"));
    e = sl_policy_parse(t, n - 2, "p.conf", NULL, NULL, &p, err, sizeof err); /* 4096 */
    CHECK(e == SL_OK);
    sl_policy_unref(p);
    /* The file: 1 MiB of comments parses, one byte more does not. */
    memset(t, '\n', SL_POLICY_MAX_BYTES + 1);
    e = sl_policy_parse(t, SL_POLICY_MAX_BYTES, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_OK && p->ntopics == 0);
    sl_policy_unref(p);
    e = sl_policy_parse(t, SL_POLICY_MAX_BYTES + 1, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG && p == NULL);
    CHECK(!strcmp(err, "p.conf: file too large (at most 1048576 bytes)"));
    /* A target beyond SL_POLICY_TEXT_MAX; a long word is cut in the message. */
    memcpy(t, "topic t\n value.", 15);
    memset(t + 15, 'a', 120);
    memcpy(t + 135, ".", 1);
    memset(t + 136, 'b', 120);
    memcpy(t + 256, ".", 1);
    memset(t + 257, 'c', 60);
    memcpy(t + 317, " redact\n", 8);
    e = sl_policy_parse(t, 325, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG);
    CHECK(!strcmp(err, "p.conf:2: bad target 'value.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': "
                       "target too long (at most 299 bytes)"));
    /* A word that is not ASCII is not repeated at all. */
    const char *u = "topic t\n value.a \xc3\xa9t\xc3\xa9\n";
    e = sl_policy_parse(u, strlen(u), "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG && !strcmp(err, "p.conf:2: unknown action"));
    /* 257 rules in one block; 4097 blocks. */
    size_t off = (size_t)sprintf(t, "topic t\n");
    for (int i = 0; i < 257; i++) off += (size_t)sprintf(t + off, "value.f%d redact\n", i);
    e = sl_policy_parse(t, off, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG);
    CHECK(!strcmp(err, "p.conf:258: too many rules in one block (at most 256)"));
    off = 0;
    for (int i = 0; i < 4097; i++) off += (size_t)sprintf(t + off, "topic t%d\n", i);
    e = sl_policy_parse(t, off, "p.conf", NULL, NULL, &p, err, sizeof err);
    CHECK(e == SL_ECONFIG && !strcmp(err, "p.conf:4097: too many topic blocks (at most 4096)"));
    e = sl_policy_parse(t, off - strlen("topic t4096\n"), "p.conf", NULL, NULL, &p, err,
                        sizeof err);
    CHECK(e == SL_OK && p->ntopics == 4096 && topic(p, "t4095") && !topic(p, "t4096"));
    sl_policy_unref(p);
    /* 8193 rules in all (33 blocks of 256, the last cut short) */
    off = 0;
    int line = 0, rules = 0;
    for (int b = 0; rules <= SL_POLICY_MAX_TOTAL_RULES; b++) {
        off += (size_t)sprintf(t + off, "topic t%d\n", b);
        line++;
        for (int i = 0; i < 256 && rules <= SL_POLICY_MAX_TOTAL_RULES; i++, rules++, line++)
            off += (size_t)sprintf(t + off, "value.f%d redact\n", i);
    }
    e = sl_policy_parse(t, off, "p.conf", NULL, NULL, &p, err, sizeof err);
    char want[96];
    snprintf(want, sizeof want, "p.conf:%d: too many rules (at most 8192 in all)", line);
    CHECK(e == SL_ECONFIG && !strcmp(err, want));
    free(t);
}

SL_TEST(policy_lookup_literal_prefix_none) {
    char err[256];
    sl_policy *p = parse("topic pay*\n value.a redact\n"
                         "topic payments\n value.b redact\n"
                         "topic payments.eu*\n value.c redact\n"
                         "topic p*\n value.d redact\n"
                         "topic logs\n",
                         err, sizeof err);
    CHECK(p);
    const sl_ptopic *t = topic(p, "payments");
    CHECK(t && !t->prefix && !strcmp(t->rules[0].target.text, "value.b"));
    t = topic(p, "payments.eu.cards"); /* the longest prefix, not the literal's neighbours */
    CHECK(t && t->prefix && !strcmp(t->pattern, "payments.eu"));
    t = topic(p, "payments.eu"); /* a prefix matches its own name too */
    CHECK(t && !strcmp(t->pattern, "payments.eu"));
    t = topic(p, "payroll");
    CHECK(t && !strcmp(t->pattern, "pay"));
    t = topic(p, "pa");
    CHECK(t && !strcmp(t->pattern, "p"));
    t = topic(p, "logs");
    CHECK(t && t->nrules == 0 && !t->needs_keys);
    CHECK(topic(p, "orders") == NULL);
    CHECK(topic(p, "") == NULL);
    CHECK(topic(p, "log") == NULL);
    CHECK(sl_policy_topic(NULL, "payments", 8) == NULL);
    /* The name is a length, not a C string. */
    CHECK(sl_policy_topic(p, "paymentsXYZ", 8) == topic(p, "payments"));
    const char *names[4];
    CHECK_EQ(sl_policy_keys(p, names, 4), 0);
    sl_policy_unref(p);
    /* "topic *" catches every topic the others do not. */
    p = parse("topic *\n value redact\ntopic a\n", err, sizeof err);
    CHECK(p);
    t = topic(p, "anything");
    CHECK(t && t->prefix && t->pattern[0] == 0);
    CHECK(topic(p, "a") && !topic(p, "a")->prefix);
    CHECK(topic(p, "") == t);
    sl_policy_unref(p);
}

static int g_asked;
static bool only_k(void *arg, const char *name) {
    g_asked++;
    return name[0] == *(const char *)arg;
}

SL_TEST(policy_key_ok_and_refs) {
    const char *text = "topic t\n value.a token key=kx\n value.b encrypt key=ky view-token=kx\n";
    sl_policy *p = NULL;
    char err[256];
    g_asked = 0;
    CHECK(sl_policy_parse(text, strlen(text), "f", only_k, "k", &p, err, sizeof err) == SL_OK);
    CHECK(g_asked == 3);
    const char *names[4];
    CHECK_EQ(sl_policy_keys(p, names, 4), 2);
    CHECK(!strcmp(names[0], "kx") && !strcmp(names[1], "ky"));
    /* Refcounting: the snapshot outlives the first owner's release. */
    CHECK(p->refs == 1);
    CHECK(sl_policy_ref(p) == p && p->refs == 2);
    sl_policy_unref(p);
    CHECK(p->refs == 1 && topic(p, "t")->nrules == 2);
    sl_policy_unref(p);
    sl_policy_unref(NULL);
    /* A key the callback refuses; without a callback no key is checked. */
    CHECK(sl_policy_parse(text, strlen(text), "f", only_k, "x", &p, err, sizeof err) == SL_ECONFIG);
    CHECK(!strcmp(err, "f:2: unknown key 'kx'") && p == NULL);
    CHECK(sl_policy_parse(text, strlen(text), "f", NULL, NULL, &p, err, sizeof err) == SL_OK);
    /* The digest is the file's SHA-256: the same bytes give the same digest, others differ. */
    sl_policy *q = NULL;
    CHECK(sl_policy_parse(text, strlen(text), "g", NULL, NULL, &q, NULL, 0) == SL_OK);
    CHECK(!strcmp(p->digest, q->digest));
    sl_policy_unref(q);
    CHECK(sl_policy_parse(text, strlen(text) - 1, "g", NULL, NULL, &q, NULL, 0) == SL_OK);
    CHECK(strcmp(p->digest, q->digest));
    sl_policy_unref(q);
    q = NULL;
    CHECK(sl_policy_parse("", 0, "g", NULL, NULL, &q, NULL, 0) == SL_OK);
    CHECK(!strcmp(q->digest, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sl_policy_unref(q);
    sl_policy_unref(p);
}

SL_TEST(policy_load_file) {
    char dir[] = "/tmp/sl_policy_XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/policy.conf", dir);
    char err[512];
    sl_policy *p = NULL;
    CHECK(sl_policy_load(path, NULL, NULL, &p, err, sizeof err) == SL_EIO && p == NULL);
    CHECK(strstr(err, "policy.conf: No such file or directory"));
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(k_scenario, f);
    fputs("topic x\n value.a nope\n", f);
    fclose(f);
    CHECK(sl_policy_load(path, known_keys, NULL, &p, err, sizeof err) == SL_ECONFIG);
    char want[300];
    snprintf(want, sizeof want, "%s:14: unknown action 'nope'", path);
    CHECK(!strcmp(err, want));
    f = fopen(path, "w");
    CHECK(f);
    fputs(k_scenario, f);
    fclose(f);
    CHECK(sl_policy_load(path, known_keys, NULL, &p, err, sizeof err) == SL_OK);
    sl_policy *q = parse(k_scenario, err, sizeof err);
    CHECK(p && q && !strcmp(p->digest, q->digest) && p->ntopics == 2);
    sl_policy_unref(q);
    sl_policy_unref(p);
    /* Larger than the limit: refused without reading it all. */
    f = fopen(path, "w");
    CHECK(f);
    for (int i = 0; i < (int)(SL_POLICY_MAX_BYTES / 64) + 1; i++)
        fputs("#23456789012345678901234567890123456789012345678901234567890123\n", f);
    fclose(f);
    CHECK(sl_policy_load(path, NULL, NULL, &p, err, sizeof err) == SL_ECONFIG && !p);
    CHECK(strstr(err, "file too large"));
    unlink(path);
    rmdir(dir);
}

/* The examples of docs/field-protection.md parse as the guide says. */
SL_TEST(policy_doc_examples) {
    static const char *const k[] = {
        "topic cards.*\n"
        "  value.pan          encrypt key=pan view-mask=6,4 view-token=pan_tok\n"
        "  value.cvv          redact remove                 # never stored (req. 3.3)\n"
        "  value.track2       redact remove\n"
        "  value.cardholder   encrypt key=pii\n",
        "topic ehr.encounters\n"
        "  subject value.patient.mrn token-key=patient\n"
        "  value.patient.mrn        encrypt key=phi alg=siv view-token=patient\n"
        "  value.patient.name       encrypt key=phi\n"
        "  value.patient.dob        encrypt key=phi view-mask=0,4\n"
        "  value.diagnoses[*].code  encrypt key=phi alg=siv\n"
        "  value.notes              encrypt key=phi\n"
        "  header:x-patient-ssn     redact remove\n",
        "topic crm.*\n"
        "  on-error reject\n"
        "  subject value.customer_id token-key=cust\n"
        "  value.customer_id  encrypt key=cid alg=siv view-token=cust\n"
        "  value.email        encrypt key=pii\n"
        "  value.address      encrypt key=pii\n"
        "  value.phone        mask keep-last=2\n",
    };
    char err[256];
    sl_policy *p = NULL;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK(sl_policy_parse(k[i], strlen(k[i]), "doc", NULL, NULL, &p, err, sizeof err) == SL_OK);
        CHECK(p->ntopics == 1);
        sl_policy_unref(p);
    }
    CHECK(sl_policy_parse(k[0], strlen(k[0]), "doc", NULL, NULL, &p, err, sizeof err) == SL_OK);
    const sl_ptopic *t = topic(p, "cards.visa");
    CHECK(t && t->prefix && t->nrules == 4 && t->rules[0].view_mask.keep_first == 6);
    CHECK(t->rules[1].action == SL_PA_REDACT && t->rules[1].remove);
    CHECK(!topic(p, "cards"));
    sl_policy_unref(p);
    CHECK(sl_policy_parse(k[2], strlen(k[2]), "doc", NULL, NULL, &p, err, sizeof err) == SL_OK);
    t = topic(p, "crm.contacts");
    CHECK(t && !t->pass_on_error && t->rules[3].mask.keep_last == 2);
    CHECK(t->rules[3].mask.keep_first == 0 && t->rules[3].mask.ch == '*');
    sl_policy_unref(p);
}
