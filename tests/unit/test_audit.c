/* The audit trail (src/audit): JSON escaping, checkpoint signatures, the hash chain and its
 * verifier against each kind of tampering, and data-access summaries built from synthetic
 * finished requests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "audit/sl_audit_int.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "base/sl_time.h"
#include "net/sl_loop.h"
#include "proto/gen/sl_msgs.h"
#include "sl_test.h"

static bool json_ok(const char *s, size_t n) {
    sl_arena *a = sl_arena_new(4096);
    char err[64];
    bool ok = sl_json_parse(a, s, n, 8, err, sizeof err) != NULL;
    sl_arena_free(a);
    return ok;
}

static bool esc_is(const char *in, size_t n, const char *want) {
    sl_text b = {0};
    sl_json_str(&b, in, n);
    bool ok = b.p && !strcmp(b.p, want) && json_ok(b.p, b.len);
    if (!ok) fprintf(stderr, "  escaped: %s (want %s)\n", b.p ? b.p : "(null)", want);
    sl_text_free(&b);
    return ok;
}

SL_TEST(audit_json_escaping) {
    CHECK(esc_is("plain", 5, "\"plain\""));
    CHECK(esc_is("a\"b\\c", 5, "\"a\\\"b\\\\c\""));
    CHECK(esc_is("l1\nl2\r\t", 7, "\"l1\\nl2\\r\\t\""));
    CHECK(esc_is("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""));
    CHECK(esc_is("nul\0x", 5, "\"nul\\u0000x\""));
    CHECK(esc_is("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
    /* Not UTF-8: a lone continuation, a truncated sequence, an overlong '/', a surrogate. */
    CHECK(esc_is("\x80", 1, "\"\\ufffd\""));
    CHECK(esc_is("a\xc3", 2, "\"a\\ufffd\""));
    CHECK(esc_is("\xc0\xaf", 2, "\"\\ufffd\\ufffd\""));
    CHECK(esc_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""));
    CHECK(esc_is("\xff", 1, "\"\\ufffd\""));
    sl_text b = {0};
    sl_json_str(&b, NULL, 0);
    CHECK(b.p && !strcmp(b.p, "null"));
    sl_text_free(&b);
}

SL_TEST(audit_checkpoint_sign_verify) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(k && other);
    char msg[256], sig[129];
    int n = sl_audit_cp_message(msg, sizeof msg, 42, SL_AUDIT_GENESIS, 1700000000000, "stop");
    CHECK(sl_audit_sign(k, msg, (size_t)n, sig));
    CHECK_EQ(strlen(sig), 128);
    CHECK(sl_audit_verify_sig(k, msg, (size_t)n, sig));
    CHECK(!sl_audit_verify_sig(other, msg, (size_t)n, sig));
    msg[30] ^= 1;
    CHECK(!sl_audit_verify_sig(k, msg, (size_t)n, sig));
    msg[30] ^= 1;
    sig[0] = sig[0] == '0' ? '1' : '0';
    CHECK(!sl_audit_verify_sig(k, msg, (size_t)n, sig));
    CHECK(!sl_audit_verify_sig(k, msg, (size_t)n, "zz"));
    char id1[17], id2[17];
    CHECK(sl_audit_key_id(k, id1) && sl_audit_key_id(other, id2));
    CHECK(strcmp(id1, id2) != 0);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

/* ---- a real trail in a temporary directory ---- */

typedef struct trail {
    char dir[64], audit[96], key[96], pub[104];
    sl_loop *loop;
    sl_events hub;
    sl_audit *a;
} trail;

static sl_config g_cfg;

static bool trail_open(trail *t, int64_t interval_ms) {
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/sl_audit_XXXXXX");
    if (!mkdtemp(t->dir)) return false;
    snprintf(t->audit, sizeof t->audit, "%s/audit", t->dir);
    snprintf(t->key, sizeof t->key, "%s/sluice-audit-key.pem", t->dir);
    snprintf(t->pub, sizeof t->pub, "%s.pub", t->key);
    char err[256], iv[32];
    sl_config_defaults(&g_cfg);
    snprintf(iv, sizeof iv, "%lld", (long long)interval_ms);
    if (sl_config_set(&g_cfg, "log.dirs", t->dir, err, sizeof err) ||
        sl_config_set(&g_cfg, "sluice.secrets.dir", t->dir, err, sizeof err) ||
        sl_config_set(&g_cfg, "sluice.audit.data.interval.ms", iv, err, sizeof err) ||
        sl_config_set(&g_cfg, "sluice.audit.enabled.event.types",
                      "authenticate,connection,refusal,management,denial,produce,consume,"
                      "lifecycle,detection",
                      err, sizeof err))
        return false;
    t->loop = sl_loop_new();
    sl_audit_env env = {.loop = t->loop, .hub = &t->hub, .cluster_id = "c1", .node_id = 7};
    return t->loop && sl_audit_new(&g_cfg, &env, &t->a, err, sizeof err) == SL_OK && t->a;
}

static void trail_close(trail *t) {
    sl_audit_free(t->a);
    t->a = NULL;
    sl_loop_free(t->loop);
}

/* SL_TEST_KEEP_AUDIT=1 keeps the trails (docs/audit.md's examples come from them). */
static void rm_rf(const char *dir) {
    if (getenv("SL_TEST_KEEP_AUDIT")) {
        printf("kept %s\n", dir);
        return;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
}

/* The trail's one file, read whole. */
static char *trail_read(const trail *t, char *path, size_t plen) {
    snprintf(path, plen, "%s/sluice-audit-00000000000000000001.jsonl", t->audit);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) buf[0] = 0;
    fclose(f);
    return buf;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void emit_events(trail *t) {
    sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_AUTH,
                                        .peer = "10.0.0.1:5555",
                                        .listener = "SASL_SSL",
                                        .principal = NULL,
                                        .auth = {.activity = SL_AUTH_LOGON,
                                                 .success = false,
                                                 .mechanism = "SCRAM-SHA-512",
                                                 .user = "mal\"lory\n",
                                                 .reason = "invalid credentials",
                                                 .tls_version = "TLSv1.3",
                                                 .tls_cipher = "TLS_AES_256_GCM_SHA384"}});
    sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_NET,
                                        .peer = "[::1]:6000",
                                        .listener = "SASL_SSL",
                                        .net = {.activity = SL_NET_REFUSED, .reason = "blocked"}});
    sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_DETECTION,
                                        .det = {.rule = "auth_bruteforce_address",
                                                .title = "many failed logins",
                                                .severity = 4,
                                                .subject = "10.0.0.1",
                                                .value = 20,
                                                .threshold = 10,
                                                .window_ms = 60000}});
    sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_ADMIN,
                                        .admin = {.action = "certificate reload",
                                                  .resource = "listener SASL_SSL",
                                                  .success = false,
                                                  .detail = "key does not match"}});
    for (int i = 0; i < 20; i++)
        sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_NET,
                                            .conn_id = (uint64_t)i + 1,
                                            .peer = "10.0.0.2:1234",
                                            .listener = "PLAINTEXT",
                                            .net = {.activity = SL_NET_CLOSE, .bytes_in = 10 * i}});
}

static void tamper_write(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "w");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* Verifies `data` as the trail file; returns the verdict. */
static void verify_as(const char *path, const char *data, size_t n, EVP_PKEY *pub,
                      sl_audit_verdict *v) {
    tamper_write(path, data, n);
    char *paths[1] = {(char *)path};
    sl_audit_verify_files(paths, 1, pub, false, NULL, v);
}

/* Start offsets of each line of `buf`. */
static int line_starts(const char *buf, size_t *at, int max) {
    int n = 0;
    for (const char *p = buf; *p && n < max; n++) {
        at[n] = (size_t)(p - buf);
        const char *e = strchr(p, '\n');
        if (!e) break;
        p = e + 1;
    }
    return n;
}

SL_TEST(audit_chain_and_tampering) {
    trail t;
    CHECK(trail_open(&t, 0));
    struct stat st;
    CHECK(stat(t.audit, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(stat(t.key, &st) == 0 && (st.st_mode & 0777) == 0600);
    emit_events(&t);
    trail_close(&t);
    char path[160];
    char *orig = trail_read(&t, path, sizeof path);
    CHECK(orig);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    size_t len = strlen(orig);
    CHECK(count(orig, "\"class_uid\":3002") == 1);
    CHECK(count(orig, "\"class_uid\":4001") == 21);
    CHECK(count(orig, "\"class_uid\":2004") == 1);
    CHECK(count(orig, "\"api\":{\"operation\":\"certificate reload\"") == 1);
    CHECK(count(orig, "\"user\":{\"name\":\"mal\\\"lory\\n\"}") == 1);
    CHECK(count(orig, "\"event_code\":\"checkpoint\"") == 1);
    EVP_PKEY *pub = sl_audit_pubkey_read(t.pub);
    CHECK(pub);
    char copy[160];
    snprintf(copy, sizeof copy, "%s/copy.jsonl", t.dir);
    sl_audit_verdict v;
    verify_as(copy, orig, len, pub, &v);
    CHECK(v.ok);
    size_t at[64];
    int nl = line_starts(orig, at, 64);
    CHECK(nl >= 20);
    char *buf = malloc(len * 2 + 4096);
    CHECK(buf);
    const int k = 5; /* 0-based line to tamper with */
    size_t kl = at[k + 1] - at[k];

    /* One byte edited inside line k: reported at line k. */
    memcpy(buf, orig, len);
    buf[at[k] + 20] ^= 1;
    verify_as(copy, buf, len, pub, &v);
    CHECK(!v.ok && v.line == k + 1 && strstr(v.what, "edit"));

    /* Line k deleted. */
    memcpy(buf, orig, at[k]);
    memcpy(buf + at[k], orig + at[k + 1], len - at[k + 1]);
    verify_as(copy, buf, len - kl, pub, &v);
    CHECK(!v.ok && v.line == k + 1 && strstr(v.what, "deleted"));

    /* Line k repeated (inserted). */
    memcpy(buf, orig, at[k + 1]);
    memcpy(buf + at[k + 1], orig + at[k], kl);
    memcpy(buf + at[k + 1] + kl, orig + at[k + 1], len - at[k + 1]);
    verify_as(copy, buf, len + kl, pub, &v);
    CHECK(!v.ok && strstr(v.what, "inserted"));

    /* Lines k and k+1 swapped. */
    size_t k2 = at[k + 2] - at[k + 1];
    memcpy(buf, orig, at[k]);
    memcpy(buf + at[k], orig + at[k + 1], k2);
    memcpy(buf + at[k] + k2, orig + at[k], kl);
    memcpy(buf + at[k + 2], orig + at[k + 2], len - at[k + 2]);
    verify_as(copy, buf, len, pub, &v);
    CHECK(!v.ok && v.line == k + 1 && strstr(v.what, "reordered"));

    /* The last two lines gone: cut off; accepted as a trail still being written only with
     * allow_open. */
    verify_as(copy, orig, at[nl - 2], pub, &v);
    CHECK(!v.ok && strstr(v.what, "cut off"));
    char *one[1] = {copy};
    sl_audit_verify_files(one, 1, pub, true, NULL, &v);
    CHECK(v.ok && v.warnings == 1);

    /* Torn last line. */
    verify_as(copy, orig, len - 5, pub, &v);
    CHECK(!v.ok && strstr(v.what, "truncated"));

    /* The checkpoint's signature changed. */
    memcpy(buf, orig, len);
    char *sig = strstr(buf + at[nl - 1], "\"signature\":\"");
    CHECK(sig);
    sig += 13;
    *sig = *sig == 'a' ? 'b' : 'a';
    verify_as(copy, buf, len, pub, &v);
    CHECK(!v.ok && v.line == nl && strstr(v.what, "signature"));

    /* Verified with another key. */
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    verify_as(copy, orig, len, other, &v);
    CHECK(!v.ok && strstr(v.what, "signature"));
    EVP_PKEY_free(other);

    free(buf);
    free(orig);
    EVP_PKEY_free(pub);
    rm_rf(t.dir);
}

SL_TEST(audit_chain_continues_after_restart) {
    trail t;
    CHECK(trail_open(&t, 0));
    emit_events(&t);
    trail_close(&t);
    char dir[64];
    snprintf(dir, sizeof dir, "%s", t.dir);
    sl_audit_env env = {.loop = sl_loop_new(), .hub = &t.hub, .cluster_id = "c1", .node_id = 7};
    char err[256];
    sl_audit *a = NULL;
    CHECK(env.loop && sl_audit_new(&g_cfg, &env, &a, err, sizeof err) == SL_OK && a);
    sl_audit_free(a);
    sl_loop_free(env.loop);
    char p1[200], p2[200];
    snprintf(p1, sizeof p1, "%s/audit/sluice-audit-00000000000000000001.jsonl", dir);
    /* The second file starts with the sequence after the first file's last line. */
    char *paths[2] = {p1, p2};
    FILE *f = fopen(p1, "r");
    CHECK(f);
    int lines = 0;
    for (int c; (c = fgetc(f)) != EOF;) lines += c == '\n';
    fclose(f);
    snprintf(p2, sizeof p2, "%s/audit/sluice-audit-%020d.jsonl", dir, lines + 1);
    CHECK(access(p2, F_OK) == 0);
    char pub[128];
    snprintf(pub, sizeof pub, "%s/sluice-audit-key.pem.pub", dir);
    EVP_PKEY *k = sl_audit_pubkey_read(pub);
    sl_audit_verdict v;
    sl_audit_verify_files(paths, 2, k, false, NULL, &v);
    CHECK(v.ok);
    CHECK_EQ(v.checkpoints, 2);
    /* The second file alone cannot be checked against the first's, but is still intact. */
    sl_audit_verify_files(paths + 1, 1, k, false, NULL, &v);
    CHECK(v.ok);
    EVP_PKEY_free(k);
    rm_rf(dir);
}

/* ---- data access summaries ---- */

static void fake_req(sl_req *rq, sl_req_data *d, int nd, const char *principal, const char *client,
                     int16_t api) {
    memset(rq, 0, sizeof *rq);
    rq->api = (const struct sl_api_desc *)1; /* only tested for NULL */
    rq->h.api_key = api;
    rq->h.client_id = sl_str_c(client);
    rq->principal = principal;
    rq->peer = "10.1.1.1:4000";
    rq->listener = "PLAINTEXT";
    rq->data = d;
    rq->ndata = rq->capdata = nd;
    rq->outcome = SL_REQ_OUT_RESPONSE;
}

static void emit_req(trail *t, sl_req *rq) {
    sl_events_emit(&t->hub, &(sl_event){.kind = SL_EV_REQUEST, .rq = rq});
}

static const char *find_line(const char *buf, const char *a, const char *b) {
    for (const char *p = buf; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[8192];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = 0;
            if (strstr(line, a) && (!b || strstr(line, b))) return p;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

SL_TEST(audit_data_aggregated_per_interval) {
    trail t;
    CHECK(trail_open(&t, 3600000));
    sl_req rq;
    sl_req_data d1[2] = {
        {.topic = sl_str_c("orders"),
         .partition = 0,
         .write = true,
         .first_offset = 10,
         .last_offset = 14,
         .records = 5,
         .bytes = 500},
        {.topic = sl_str_c("orders"),
         .partition = 1,
         .write = true,
         .first_offset = 0,
         .last_offset = 0,
         .records = 1,
         .bytes = 100},
    };
    fake_req(&rq, d1, 2, "User:alice", "app-1", SL_API_PRODUCE);
    emit_req(&t, &rq);
    sl_req_data d2 = {.topic = sl_str_c("orders"),
                      .partition = 0,
                      .write = true,
                      .first_offset = 15,
                      .last_offset = 19,
                      .records = 5,
                      .bytes = 510};
    fake_req(&rq, &d2, 1, "User:alice", "app-1", SL_API_PRODUCE);
    emit_req(&t, &rq);
    /* Another client of the same principal is its own summary; so is a read. */
    fake_req(&rq, &d2, 1, "User:alice", "app-2", SL_API_PRODUCE);
    emit_req(&t, &rq);
    sl_req_data d3 = {.topic = sl_str_c("orders"),
                      .partition = 0,
                      .first_offset = 10,
                      .last_offset = 19,
                      .records = 10,
                      .bytes = 1010};
    fake_req(&rq, &d3, 1, "User:bob", "reader", SL_API_FETCH);
    emit_req(&t, &rq);
    sl_audit_flush_data(t.a);
    trail_close(&t);
    char path[160];
    char *buf = trail_read(&t, path, sizeof path);
    CHECK(buf);
    CHECK_EQ(count(buf, "\"event_code\":\"produce\""), 3);
    CHECK_EQ(count(buf, "\"event_code\":\"consume\""), 1);
    const char *l = find_line(buf, "\"app_name\":\"app-1\"", "\"partition\":0,");
    CHECK(l);
    CHECK(find_line(l,
                    "\"records\":10,\"bytes\":1010,\"first_offset\":10,\"last_offset\":19,"
                    "\"requests\":2,\"errors\":0",
                    NULL) == l);
    CHECK(find_line(buf, "\"app_name\":\"app-1\"", "\"partition\":1,\"records\":1,") != NULL);
    CHECK(find_line(buf, "\"app_name\":\"app-2\"", "\"records\":5,") != NULL);
    CHECK(find_line(buf, "\"event_code\":\"consume\"",
                    "\"user\":{\"name\":\"bob\",\"uid\":\"User:bob\"") != NULL);
    free(buf);
    rm_rf(t.dir);
}

SL_TEST(audit_data_one_event_per_request_and_exclusions) {
    trail t;
    CHECK(trail_open(&t, 0));
    sl_audit_free(t.a);
    /* Reopen with excluded principals and topics. */
    char err[256];
    CHECK(sl_config_set(&g_cfg, "sluice.audit.excluded.topics", "secret-topic", err, sizeof err) ==
          SL_OK);
    CHECK(sl_config_set(&g_cfg, "sluice.audit.excluded.principals", "User:svc", err, sizeof err) ==
          SL_OK);
    sl_audit_env env = {.loop = t.loop, .hub = &t.hub, .cluster_id = "c1", .node_id = 7};
    CHECK(sl_audit_new(&g_cfg, &env, &t.a, err, sizeof err) == SL_OK);
    sl_req rq;
    sl_req_data d[3] = {
        {.topic = sl_str_c("a"), .partition = 0, .write = true, .records = 1, .bytes = 10},
        {.topic = sl_str_c("secret-topic"), .partition = 0, .write = true, .records = 1},
        {.topic = sl_str_c("b"), .partition = 2, .write = true, .records = 3, .bytes = 30},
    };
    fake_req(&rq, d, 3, "User:alice", "app", SL_API_PRODUCE);
    emit_req(&t, &rq);
    fake_req(&rq, d, 3, "User:svc", "app", SL_API_PRODUCE);
    emit_req(&t, &rq);
    /* A denial is its own event; a management request lists its resources. */
    sl_req_res res[2] = {
        {.name = sl_str_c("t-new"),
         .rtype = SL_ACL_RES_TOPIC,
         .op = SL_ACL_OP_CREATE,
         .allowed = false,
         .error = 29,
         .alt = -1},
        {.name = sl_str_c("kafka-cluster"),
         .rtype = SL_ACL_RES_CLUSTER,
         .op = SL_ACL_OP_CREATE,
         .allowed = false,
         .error = 31,
         .alt = -1},
    };
    fake_req(&rq, NULL, 0, "User:alice", "admin", SL_API_CREATE_TOPICS);
    rq.res = res;
    rq.nres = rq.capres = 2;
    res[0].alt = 1; /* the topic was asked only as the cluster's alternative */
    emit_req(&t, &rq);
    trail_close(&t);
    char path[160];
    char *buf = trail_read(&t, path, sizeof path);
    CHECK(buf);
    free(buf);
    /* Written after the reopen: the second trail's file. */
    char p2[200];
    int n = 0;
    FILE *f = fopen(path, "r");
    for (int c; f && (c = fgetc(f)) != EOF;) n += c == '\n';
    if (f) fclose(f);
    snprintf(p2, sizeof p2, "%s/sluice-audit-%020d.jsonl", t.audit, n + 1);
    f = fopen(p2, "r");
    CHECK(f);
    static char all[65536];
    size_t got = fread(all, 1, sizeof all - 1, f);
    all[got] = 0;
    fclose(f);
    CHECK_EQ(count(all, "\"event_code\":\"produce\""), 1);
    const char *l = find_line(all, "\"event_code\":\"produce\"", "\"name\":\"a\"");
    CHECK(l && find_line(l, "\"name\":\"b\",\"data\":{\"partition\":2,\"records\":3", NULL) == l);
    CHECK(!strstr(all, "secret-topic"));
    CHECK(!strstr(all, "User:svc"));
    CHECK_EQ(count(all, "\"event_code\":\"denial\""), 2);
    CHECK(find_line(all, "\"event_code\":\"denial\"", "\"name\":\"t-new\"") != NULL);
    CHECK(find_line(all, "\"event_code\":\"management\"",
                    "\"api\":{\"operation\":\"CreateTopics\"") != NULL);
    rm_rf(t.dir);
}

/* ---- the topic sink ---- */

typedef struct topic_fake {
    int calls, values;
    int16_t answer;
    char last[4096];
} topic_fake;

static int16_t topic_append(void *ctx, const char *const *values, const size_t *lens, int n) {
    topic_fake *f = ctx;
    f->calls++;
    if (f->answer) return f->answer;
    f->values += n;
    size_t l = lens[n - 1] < sizeof f->last - 1 ? lens[n - 1] : sizeof f->last - 1;
    memcpy(f->last, values[n - 1], l);
    f->last[l] = 0;
    return 0;
}

SL_TEST(audit_topic_sink_gets_every_line) {
    char dir[] = "/tmp/sl_audit_XXXXXX";
    CHECK(mkdtemp(dir));
    char err[256];
    sl_config_defaults(&g_cfg);
    CHECK(sl_config_set(&g_cfg, "log.dirs", dir, err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&g_cfg, "sluice.secrets.dir", dir, err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&g_cfg, "sluice.audit.sinks", "topic", err, sizeof err) == SL_OK);
    sl_loop *loop = sl_loop_new();
    sl_events hub = {0};
    topic_fake f = {.answer = 6 /* NOT_LEADER_OR_FOLLOWER */};
    sl_audit_env env = {.loop = loop,
                        .hub = &hub,
                        .cluster_id = "c",
                        .node_id = 1,
                        .topic_append = topic_append,
                        .topic_ctx = &f};
    sl_audit *a = NULL;
    CHECK(loop && sl_audit_new(&g_cfg, &env, &a, err, sizeof err) == SL_OK && a);
    sl_events_emit(&hub, &(sl_event){.kind = SL_EV_NET,
                                     .peer = "10.0.0.9:1",
                                     .net = {.activity = SL_NET_REFUSED, .reason = "blocked"}});
    /* The topic refuses appends: with `block` the trail stops accepting. */
    int64_t until = sl_mono_ms() + 5000;
    while (!f.calls && sl_mono_ms() < until) sl_loop_run_once(loop, 50);
    CHECK(f.calls > 0);
    CHECK(!sl_audit_accepting(a));
    f.answer = 0;
    until = sl_mono_ms() + 5000;
    while (!f.values && sl_mono_ms() < until) sl_loop_run_once(loop, 50);
    CHECK(sl_audit_accepting(a));
    CHECK_EQ(f.values, 2); /* start, the refusal (no file: no "Trail Opened"; the broker, not
                            * the trail, reports the configuration) */
    sl_audit_free(a);
    CHECK_EQ(f.values, 4); /* stop, the final checkpoint */
    CHECK(strstr(f.last, "\"event_code\":\"checkpoint\"") != NULL);
    sl_loop_free(loop);
    rm_rf(dir);
}

SL_TEST(audit_describe_is_its_own_type) {
    trail t;
    CHECK(trail_open(&t, 0));
    sl_req rq;
    sl_req_res res = {.name = sl_str_c("orders"),
                      .rtype = SL_ACL_RES_TOPIC,
                      .op = SL_ACL_OP_DESCRIBE,
                      .allowed = true,
                      .alt = -1};
    fake_req(&rq, NULL, 0, "User:alice", "app", SL_API_METADATA);
    rq.res = &res;
    rq.nres = rq.capres = 1;
    emit_req(&t, &rq); /* describe is not enabled (trail_open's types) */
    sl_audit_free(t.a);
    char err[256];
    CHECK(sl_config_set(&g_cfg, "sluice.audit.enabled.event.types", "describe,lifecycle", err,
                        sizeof err) == SL_OK);
    sl_audit_env env = {.loop = t.loop, .hub = &t.hub, .cluster_id = "c1", .node_id = 7};
    CHECK(sl_audit_new(&g_cfg, &env, &t.a, err, sizeof err) == SL_OK);
    emit_req(&t, &rq);
    trail_close(&t);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "cat %s/*.jsonl | grep -c '\"event_code\":\"describe\".*\"operation\":\"Metadata\"' "
             "| grep -qx 1",
             t.audit);
    CHECK(system(cmd) == 0);
    rm_rf(t.dir);
}

/* A connection flood costs its sender nothing: an address's refusals are recorded one by one up
 * to the burst per window, the rest as one summary with their count, so the trail grows with
 * the addresses, not with the connections. */
SL_TEST(audit_refusals_summarized_per_address) {
    trail t;
    CHECK(trail_open(&t, 0));
    for (int i = 0; i < 1000; i++)
        sl_events_emit(&t.hub, &(sl_event){.kind = SL_EV_NET,
                                           .peer = "10.0.0.9:4000",
                                           .listener = "SASL_SSL",
                                           .net = {.activity = SL_NET_REFUSED,
                                                   .reason = "max.connections.per.ip"}});
    sl_events_emit(&t.hub, &(sl_event){.kind = SL_EV_NET,
                                       .peer = "[::1]:4001",
                                       .net = {.activity = SL_NET_REFUSED, .reason = "blocked"}});
    trail_close(&t); /* the stop ends every window */
    char path[256];
    char *s = trail_read(&t, path, sizeof path);
    CHECK(s != NULL);
    CHECK_EQ(count(s, "\"event_code\":\"refusal\""), SL_AUDIT_REFUSALS_BURST + 2);
    CHECK_EQ(count(s, "\"count\":990"), 1);
    CHECK_EQ(count(s, "\"ip\":\"::1\""), 1);
    free(s);
    rm_rf(t.dir);
}

/* A file older than sluice.audit.file.max.age.ms is sealed and the trail goes on in a new one:
 * a checkpoint with reason "age" ends the first file, "Trail Rotated" opens the next, and the
 * chain runs across both. */
SL_TEST(audit_rotates_by_age) {
    char dir[] = "/tmp/sl_audit_XXXXXX";
    CHECK(mkdtemp(dir));
    char err[256];
    sl_config_defaults(&g_cfg);
    CHECK(sl_config_set(&g_cfg, "log.dirs", dir, err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&g_cfg, "sluice.secrets.dir", dir, err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&g_cfg, "sluice.audit.file.max.age.ms", "1000", err, sizeof err) == SL_OK);
    sl_loop *loop = sl_loop_new();
    sl_events hub = {0};
    sl_audit_env env = {.loop = loop, .hub = &hub, .cluster_id = "c", .node_id = 1};
    sl_audit *a = NULL;
    CHECK(loop && sl_audit_new(&g_cfg, &env, &a, err, sizeof err) == SL_OK && a);
    sl_events_emit(&hub, &(sl_event){.kind = SL_EV_NET,
                                     .peer = "10.0.0.7:1",
                                     .net = {.activity = SL_NET_REFUSED, .reason = "blocked"}});
    char second[512];
    snprintf(second, sizeof second, "%s/audit", dir);
    int64_t until = sl_mono_ms() + 5000;
    int files = 0;
    while (files < 2 && sl_mono_ms() < until) {
        sl_loop_run_once(loop, 50);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -ge 2", second);
        files = system(cmd) == 0 ? 2 : 1;
    }
    CHECK_EQ(files, 2);
    sl_audit_free(a);
    sl_loop_free(loop);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s/audit && f=$(ls | head -1) && tail -1 $f | grep -q '\"reason\":\"age\"' && "
             "grep -h -c '\"activity_name\":\"Trail Rotated\"' $(ls | tail -1) | grep -qx 1",
             dir);
    CHECK(system(cmd) == 0);
    rm_rf(dir);
}

/* Field protection: a reveal is recorded whatever the enabled types (who saw protected fields in
 * clear must be in the trail); a grant is management, left out when management is not enabled.
 * Neither carries a value: names, views and counts only. */
SL_TEST(audit_protect_reveal_always_recorded) {
    trail t;
    CHECK(trail_open(&t, 0));
    sl_audit_free(t.a);
    char err[256];
    CHECK(sl_config_set(&g_cfg, "sluice.audit.enabled.event.types", "lifecycle", err, sizeof err) ==
          SL_OK);
    sl_audit_env env = {.loop = t.loop, .hub = &t.hub, .cluster_id = "c1", .node_id = 7};
    CHECK(sl_audit_new(&g_cfg, &env, &t.a, err, sizeof err) == SL_OK);
    sl_events_emit(&t.hub, &(sl_event){.kind = SL_EV_PROTECT,
                                       .principal = "User:fraud",
                                       .peer = "10.0.0.3:4000",
                                       .listener = "SASL_SSL",
                                       .conn_id = 9,
                                       .protect = {.op = "reveal",
                                                   .topic = "payments",
                                                   .partition = 2,
                                                   .field = "value.card_number",
                                                   .view = "mask",
                                                   .count = 5,
                                                   .failed = 1,
                                                   .success = true}});
    sl_events_emit(&t.hub, &(sl_event){.kind = SL_EV_PROTECT,
                                       .principal = "Local:uid=0,pid=1",
                                       .protect = {.op = "grant",
                                                   .topic = "payments",
                                                   .partition = -1,
                                                   .field = "*",
                                                   .view = "reveal",
                                                   .target = "User:payments",
                                                   .success = true}});
    trail_close(&t);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cat %s/*.jsonl | grep '\"operation\":\"protect:reveal\"' | grep '\"class_uid\":6003' "
             "| grep '\"name\":\"value.card_number\",\"data\":{\"view\":\"mask\"}' "
             "| grep '\"name\":\"payments\",\"data\":{\"partition\":2}' "
             "| grep '\"failed\":1' | grep -c '\"uid\":\"User:fraud\"' | grep -qx 1",
             t.audit);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "cat %s/*.jsonl | grep -c 'protect:grant' | grep -qx 0", t.audit);
    CHECK(system(cmd) == 0);
    rm_rf(t.dir);
}
