/* libFuzzer target for the broker's request pipeline and handlers: two real brokers run in this
 * process (one with a PLAINTEXT listener and no SCRAM users, one with a SASL_PLAINTEXT listener
 * and one user; both on 127.0.0.1, port 0, ACL authorizer on), and every input is a sequence of
 * requests written to one of them over a fresh loopback connection. The
 * harness pumps the broker's loop (sl_loop_run_once) until each answer arrives or the connection
 * closes, with a bound, so every handler runs exactly as it does for a network client.
 *
 * Input: one byte choosing the broker (bit 0: the SASL_PLAINTEXT one, where PLAIN and
 * SCRAM-SHA-256 are enabled and user "fuzz" has password "fuzz-pw"; otherwise the PLAINTEXT
 * one, whose connections are User:ANONYMOUS), then a sequence of records, each
 *   u8  api     < 0x80: the API key as is (unknown keys reach the "unknown api" path);
 *               >= 0x80: the (api & 0x7f) % n-th API the broker serves, so mutation reaches
 *               every handler without having to hit a key by chance
 *   i8  version as is (out-of-range versions reach the version check)
 *   u16 length  of the body (big endian), cut to what is left
 *   ... body    the request body; the harness writes a valid header (v1/v2) in front
 * A few shapes are kept from wasting time or disk, without changing what the broker sees
 * otherwise: a Fetch's max_wait_ms is capped at 5 ms, and CreateTopics/CreatePartitions asking
 * for more than 16 topics or partitions are not sent.
 *
 * The brokers are shared across inputs (one per input would be far too slow); state earlier
 * inputs left (topics, groups, offsets, records) is part of what later inputs run against. A
 * broker is replaced by a fresh one in a new directory when it holds too many topics.
 *
 * Invariants (abort() when violated):
 *   - every answer names a correlation id the connection sent and not yet answered, in order,
 *     and its body decodes with the response codec of that API and version, to the last byte;
 *   - the ACLs deny every user everything on topics and groups prefixed "secret" and allow on
 *     the cluster only DESCRIBE, IDEMPOTENT_WRITE and DESCRIBE_CONFIGS (everything else on
 *     topics and groups is allowed: no ACL names them): no topic named secret* other than the
 * pre-created "secret-t" ever exists, "secret-t" is never deleted and no record is ever appended to
 * it, and the ACL set never changes (CreateAcls/DeleteAcls need ALTER on the cluster);
 *   - the broker's loop never fails and the connection is gone once the client closed it.
 * Memory errors and undefined behaviour abort through ASan/UBSan as usual. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "auth/sl_credstore.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

enum {
    MAX_FRAMES = 16,
    MAX_TOPICS = 200,      /* then the broker is replaced by a fresh one */
    FRAME_WAIT_MS = 200,   /* bound on waiting for one answer */
    CLOSE_WAIT_MS = 2000,  /* bound on the broker noticing the client closed */
    FETCH_MAX_WAIT_MS = 5, /* parked fetches would otherwise stall every input */
    MAX_CREATE = 16,       /* topics or partitions per CreateTopics/CreatePartitions */
    RECV_CAP = 8 << 20,
};

/* Cluster-level CREATE would cover every topic (Kafka's CreateTopics rule), so the cluster gets
 * only the operations that cannot create, delete or change ACLs. */
static const char k_acls[] = "sluice-acls 1\n"
                             "DENY\tALL\tTOPIC\tPREFIXED\tsecret\tUser:*\t*\n"
                             "DENY\tALL\tGROUP\tPREFIXED\tsecret\tUser:*\t*\n"
                             "ALLOW\tDESCRIBE\tCLUSTER\tLITERAL\tkafka-cluster\tUser:*\t*\n"
                             "ALLOW\tIDEMPOTENT_WRITE\tCLUSTER\tLITERAL\tkafka-cluster\tUser:*\t*\n"
                             "ALLOW\tDESCRIBE_CONFIGS\tCLUSTER\tLITERAL\tkafka-cluster\tUser:*\t*\n"
                             "ALLOW\tREAD\tTOPIC\tLITERAL\tother\tUser:other\t*\n";

typedef struct broker {
    sl_broker *b;
    char dir[256];
    int port;
} broker;
static broker g_brokers[2];
static sl_broker *g_b; /* the one the current input talks to */
static size_t g_nacls;
static int g_napis;

/* The versions the broker serves for `key` (its descriptor's protocol range), or NULL when it
 * does not serve the API. */
static const sl_api_info *served(int16_t key) {
    const sl_api_desc *d = sl_api_desc_for(key);
    return d && sl_broker_exec(key) ? sl_api_desc_info(d) : NULL;
}
static bool g_trace; /* FUZZ_HANDLERS_TRACE=1: one line per request, to check the seeds */

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_handlers: cannot remove %s\n", dir);
}

static sl_topic *ensure_topic(const char *name, int32_t npart) {
    sl_topic *t = sl_topics_find(g_b->topics, sl_str_c(name));
    if (!t && sl_topics_create(g_b->topics, sl_str_c(name), npart, NULL, false, &t) != SL_OK)
        abort();
    return t;
}

/* Broker 0: a PLAINTEXT listener and no SCRAM users (the state of most brokers); broker 1: a
 * SASL_PLAINTEXT listener and one stored user. Both have the ACL authorizer on. */
static void broker_start(int i) {
    broker *bk = &g_brokers[i];
    const char *tmp = getenv("TMPDIR");
    snprintf(bk->dir, sizeof bk->dir, "%s/sluice-fuzz-handlers-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(bk->dir)) abort();
    char path[300];
    snprintf(path, sizeof path, "%s/sluice-acls", bk->dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(k_acls, f) < 0 || fclose(f)) abort();
    char err[512];
    if (i == 1) {
        snprintf(path, sizeof path, "%s/sluice-users", bk->dir);
        sl_credstore *st;
        sl_scram_cred cred;
        if (sl_credstore_open(path, true, &st, err, sizeof err) ||
            sl_scram_cred_from_password(SL_SCRAM_SHA_256, "fuzz-pw", 7, SL_SCRAM_MIN_ITER, &cred) ||
            sl_credstore_put(st, "fuzz", 4, &cred) || sl_credstore_save(st))
            abort();
        sl_credstore_free(st);
    }
    sl_config c;
    sl_config_defaults(&c);
    const char *kv[][2] = {
        {"log.dirs", bk->dir},
        {"sluice.secrets.dir", bk->dir},
        {"listeners", i ? "SASL_PLAINTEXT://127.0.0.1:0" : "PLAINTEXT://127.0.0.1:0"},
        {"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"},
        {"sluice.sasl.plain.allow.insecure", "true"},
        {"connection.failed.authentication.delay.ms", "0"},
        {"sluice.authorizer.enable", "true"},
        {"allow.everyone.if.no.acl.found", "true"},
        {"group.initial.rebalance.delay.ms", "0"},
        {"log.segment.bytes", "65536"},
        {"log.retention.bytes", "262144"},
        {"log.retention.check.interval.ms", "1000"},
        /* Every finished request goes through the audit trail's formatting too; metrics on a
         * free port (the default 9404 may be taken by another run). */
        {"sluice.audit.data.interval.ms", "0"},
        {"sluice.audit.failure.policy", "continue"},
        {"sluice.metrics.listener", "http://127.0.0.1:0"},
    };
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        if (sl_config_set(&c, kv[k][0], kv[k][1], err, sizeof err) != SL_OK) {
            fprintf(stderr, "fuzz_handlers: %s\n", err);
            abort();
        }
    if (sl_config_finish(&c, err, sizeof err) != SL_OK ||
        sl_broker_new(&c, SL_BROKER_SERVE, &bk->b, err, sizeof err) != SL_OK) {
        fprintf(stderr, "fuzz_handlers: %s\n", err);
        abort();
    }
    bk->port = bk->b->listeners[0].port;
    g_nacls = sl_acl_set_count(sl_authorizer_set(bk->b->authz));
    if (g_nacls != 6) abort();
    g_b = bk->b;
    ensure_topic("t", 2);
    ensure_topic("secret-t", 1);
}

static void broker_stop(int i) {
    sl_broker_free(g_brokers[i].b);
    g_brokers[i].b = NULL;
    rm_rf(g_brokers[i].dir);
}

static void at_exit(void) {
    for (int i = 0; i < 2; i++)
        if (g_brokers[i].b) broker_stop(i);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    sl_log_set_level(SL_LOG_ERROR);
    while (sl_api_desc_at(g_napis)) g_napis++;
    g_trace = getenv("FUZZ_HANDLERS_TRACE") != NULL;
    broker_start(0);
    broker_start(1);
    atexit(at_exit);
    return 0;
}

/* ---- the client side ---- */

typedef struct sent {
    int32_t corr;
    int16_t key, version;
    bool reply;
} sent;

typedef struct client {
    int fd;
    bool closed; /* by the broker */
    uint8_t *in;
    size_t inlen;
    sent q[MAX_FRAMES];
    int nq, next; /* sent, and the first not yet answered */
} client;

static void check_security(void) {
    sl_topic *s = sl_topics_find(g_b->topics, sl_str_c("secret-t"));
    if (!s) abort();                                       /* deleted despite DENY ALL */
    if (sl_log_end_offset(s->parts[0]->log) != 0) abort(); /* written despite DENY ALL */
    for (sl_topic *t = sl_topics_next(g_b->topics, NULL); t; t = sl_topics_next(g_b->topics, t))
        if (!strncmp(t->name, "secret", 6) && t != s) abort(); /* created despite DENY ALL */
    if (sl_acl_set_count(sl_authorizer_set(g_b->authz)) != g_nacls) abort(); /* ALTER denied */
}

/* Checks and consumes every complete answer in the receive buffer. */
static void take_answers(client *cl) {
    size_t off = 0;
    while (cl->inlen - off >= 4) {
        uint32_t n = sl_get_be32(cl->in + off);
        if (n < 4 || n > RECV_CAP) abort();
        if (cl->inlen - off - 4 < n) break;
        const uint8_t *p = cl->in + off + 4;
        int32_t corr = (int32_t)sl_get_be32(p);
        /* Answers come in request order; requests without one (acks=0) are skipped. */
        while (cl->next < cl->nq && cl->q[cl->next].corr != corr && !cl->q[cl->next].reply)
            cl->next++;
        if (cl->next >= cl->nq || cl->q[cl->next].corr != corr) abort();
        sent *s = &cl->q[cl->next++];
        const sl_api_info *api = served(s->key);
        if (!api) abort(); /* an unknown API must close the connection, not be answered */
        bool in_range = s->version >= api->min_version && s->version <= api->max_version;
        /* ApiVersions outside its range answers with a v0 body (UNSUPPORTED_VERSION). */
        int16_t v = in_range ? s->version : 0;
        if (!in_range && s->key != SL_API_API_VERSIONS) abort();
        sl_rd r = sl_rd_init(p, n);
        int32_t c2;
        if (sl_resp_header_decode(&r, s->key, v, &c2) != SL_OK || c2 != corr) abort();
        const sl_msg_codec *codec = sl_msg_codec_get(s->key, true);
        sl_arena *a = sl_arena_new(4096);
        if (!a) abort();
        void *m = sl_arena_calloc(a, 1, codec->size);
        if (!m) abort();
        sl_err e = codec->decode(&r, a, v, m);
        if (e != SL_OK || sl_rd_left(&r) != 0) {
            fprintf(stderr, "fuzz_handlers: %s v%d answer does not decode (%s, %zu left)\n",
                    codec->name, v, sl_errname(e), sl_rd_left(&r));
            abort();
        }
        sl_arena_free(a);
        off += 4 + n;
    }
    memmove(cl->in, cl->in + off, cl->inlen - off);
    cl->inlen -= off;
}

/* Runs the loop once and reads what arrived. */
static void pump(client *cl, int timeout_ms) {
    if (sl_loop_run_once(g_b->loop, timeout_ms) < 0) abort();
    while (!cl->closed) {
        if (cl->inlen == RECV_CAP) abort(); /* one answer larger than anything we ask for */
        ssize_t got = recv(cl->fd, cl->in + cl->inlen, RECV_CAP - cl->inlen, 0);
        if (got > 0) {
            cl->inlen += (size_t)got;
            continue;
        }
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            cl->closed = true;
        break;
    }
    take_answers(cl);
}

static bool send_all(client *cl, const uint8_t *p, size_t n) {
    int64_t deadline = sl_mono_ms() + FRAME_WAIT_MS;
    while (n && !cl->closed) {
        ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            cl->closed = true;
        } else {
            pump(cl, 1);
            if (sl_mono_ms() > deadline) return false;
        }
    }
    return n == 0;
}

/* Decides whether the frame is sent and whether it expects an answer; may patch the body. */
static bool shape(int16_t key, int16_t v, uint8_t *body, size_t n, bool *reply) {
    *reply = true;
    const sl_api_info *api = served(key);
    if (!api || v < api->min_version || v > api->max_version) return true;
    if (key == SL_API_FETCH) {
        size_t at = v >= 15 ? 0 : 4; /* after replica_id, which v15+ moved into a tag */
        if (n >= at + 4 && (int32_t)sl_get_be32(body + at) > FETCH_MAX_WAIT_MS)
            sl_be32(body + at, FETCH_MAX_WAIT_MS);
        return true;
    }
    if (key != SL_API_PRODUCE && key != SL_API_CREATE_TOPICS && key != SL_API_CREATE_PARTITIONS)
        return true;
    const sl_msg_codec *c = sl_msg_codec_get(key, false);
    sl_arena *a = sl_arena_new(4096);
    if (!a) abort();
    void *m = sl_arena_calloc(a, 1, c->size);
    sl_rd r = sl_rd_init(body, n);
    bool ok = true;
    if (m && c->decode(&r, a, v, m) == SL_OK) {
        if (key == SL_API_PRODUCE) {
            *reply = ((sl_produce_req *)m)->acks != 0;
        } else if (key == SL_API_CREATE_TOPICS) {
            sl_create_topics_req *q = m;
            ok = q->topics_count <= MAX_CREATE;
            for (int32_t i = 0; ok && i < q->topics_count; i++)
                ok = q->topics[i].num_partitions <= MAX_CREATE &&
                     q->topics[i].assignments_count <= MAX_CREATE;
        } else {
            sl_create_partitions_req *q = m;
            ok = q->topics_count <= MAX_CREATE;
            for (int32_t i = 0; ok && i < q->topics_count; i++)
                ok = q->topics[i].count <= MAX_CREATE &&
                     q->topics[i].assignments_count <= MAX_CREATE;
        }
    }
    sl_arena_free(a);
    return ok;
}

static int connect_client(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A loopback connect completes in the kernel's backlog; the broker accepts it in the loop. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) abort();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) abort();
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 256 * 1024) return 0;
    if (size < 1) return 0;
    int bi = data[0] & 1;
    g_b = g_brokers[bi].b;
    if (sl_topics_count(g_b->topics) > MAX_TOPICS) {
        broker_stop(bi);
        broker_start(bi);
    }
    ensure_topic("t", 2); /* an earlier input may have deleted it */
    static uint8_t *inbuf;
    if (!inbuf && !(inbuf = malloc(RECV_CAP))) abort();
    client cl = {.fd = connect_client(g_brokers[bi].port), .in = inbuf};
    sl_arena *a = sl_arena_new(8192);
    if (!a) abort();
    size_t off = 1;
    while (off + 4 <= size && cl.nq < MAX_FRAMES && !cl.closed) {
        uint8_t sel = data[off];
        int16_t v = (int8_t)data[off + 1];
        size_t blen = sl_get_be16(data + off + 2);
        off += 4;
        if (blen > size - off) blen = size - off;
        int16_t key = sel < 0x80 ? sel : sl_api_desc_at((sel & 0x7f) % g_napis)->key;
        uint8_t *body = sl_arena_alloc(a, blen + 1);
        if (!body) abort();
        memcpy(body, data + off, blen);
        off += blen;
        bool reply;
        if (!shape(key, v, body, blen, &reply)) continue;
        sent *s = &cl.q[cl.nq];
        *s = (sent){.corr = 1000 + cl.nq, .key = key, .version = v, .reply = reply};
        sl_req_header h = {key, v, s->corr, sl_str_c("fuzz")};
        sl_wr w;
        sl_wr_init(&w, a, blen + 64);
        sl_wr_u32(&w, 0);
        sl_req_header_encode(&w, &h);
        sl_wr_raw(&w, body, blen);
        if (w.err) abort();
        sl_be32(w.buf, (uint32_t)(w.len - 4));
        cl.nq++;
        if (!send_all(&cl, w.buf, w.len)) break;
        int64_t deadline = sl_mono_ms() + FRAME_WAIT_MS;
        if (!reply) { /* nothing to wait for: let the broker take the frame in */
            pump(&cl, 0);
            pump(&cl, 0);
            continue;
        }
        while (!cl.closed && cl.next < cl.nq && sl_mono_ms() < deadline) pump(&cl, 1);
        if (g_trace)
            fprintf(stderr, "fuzz_handlers: api %d v%d body %zu: %s\n", key, v, blen,
                    cl.next == cl.nq ? "answered"
                    : cl.closed      ? "connection closed"
                                     : "no answer in time");
    }
    close(cl.fd);
    /* The broker must notice the close and drop the connection with all it held. */
    int64_t deadline = sl_mono_ms() + CLOSE_WAIT_MS;
    do {
        if (sl_loop_run_once(g_b->loop, 1) < 0) abort();
    } while (sl_server_conn_count(g_b->srv) > 0 && sl_mono_ms() < deadline);
    if (sl_server_conn_count(g_b->srv) > 0) abort();
    check_security();
    sl_arena_free(a);
    return 0;
}
