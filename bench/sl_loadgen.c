/* Kafka load generator on librdkafka: produce, consume, or both at once (e2e).
 *
 *   sl_loadgen produce|consume|e2e -b HOST:PORT -t TOPIC [options]
 *
 * Latency is measured from the *intended* send time: in fixed-rate mode (-r) message i is due at
 * t0 + i/rate whatever happened to message i-1, and that time is what the payload carries and
 * what delivery reports are measured from. A stalled broker therefore shows up as latency of
 * every message that should have been sent during the stall (no coordinated omission).
 *
 * With --json the messages are JSON documents of exactly -s bytes instead of random bytes: the
 * intended time and sequence number first, then fields a field-protection policy can target
 * (card_number, ssn, name) and a random alphanumeric pad (docs/benchmarks.md, "Field
 * protection"):
 *   {"ts":"<16 hex>","seq":N,"card_number":"4111-1111-1111-NNNN","ssn":"NNN-NN-NNNN",
 *    "name":"Customer N","pad":"..."}
 *
 * With --msk-iam the client authenticates with SASL OAUTHBEARER using MSK IAM tokens made in this
 * process (sl_msk_iam_token, src/auth/sl_msk_iam.h), as aws-msk-iam-sasl-signer does: credentials
 * from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN, the region from
 * --region or AWS_REGION; token lifetime 900 s, principal name the access key id. The security
 * protocol (SASL_SSL) and the CA come from -F/-X as for the other rows.
 *
 * With --txn N the producer is transactional: a transactional.id unique to the run,
 * init_transactions once, then begin_transaction before every N-th message and
 * commit_transaction after it (and after the last one). librdkafka does the protocol
 * (InitProducerId with the id, FindCoordinator, AddPartitionsToTxn, EndTxn). The commit flushes
 * and serves the delivery reports on the sending thread, so no poller thread runs in this mode;
 * an ack's latency then includes the wait for its transaction's commit. The commit latency (the
 * whole commit_transaction call: flush plus EndTxn) has its own histogram. The consumer reads
 * read_committed (librdkafka's default, set explicitly here). An idempotent producer without
 * transactions needs no option: enable.idempotence=true in the client properties.
 *
 * Output: one JSON line (starts with '{') then one human line, both on stdout. */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "auth/sl_msk_iam.h"
#include "sl_bench.h"

#define MAX_PARTS 256

typedef enum { M_PRODUCE, M_CONSUME, M_E2E } run_mode;

static struct {
    run_mode mode;
    const char *brokers, *topic, *label;
    int partitions;
    size_t size;
    long long count; /* messages; 0 = until duration */
    double duration; /* seconds; 0 = until count */
    double rate;     /* msgs/s; 0 = as fast as possible */
    const char *acks, *compression;
    int linger_ms;  /* -1: client default */
    int batch_size; /* -1: client default */
    bool create, from_end;
    bool json;          /* --json: JSON documents instead of random bytes */
    bool msk_iam;       /* --msk-iam: OAUTHBEARER with MSK IAM tokens made in-process */
    const char *region; /* --region (else AWS_REGION) */
    double timeout;     /* hard cap on the whole run, seconds */
    int rr;             /* explicit round-robin partitioning (else the client's partitioner) */
    long long txn;      /* --txn N: messages per transaction; 0 = not transactional */
    /* client properties in order: -F files first, then -X, as given */
    char *props[128][2];
    int nprops;
} g = {.partitions = 1,
       .size = 1024,
       .acks = "all",
       .compression = "none",
       .linger_ms = -1,
       .batch_size = -1,
       .timeout = 300,
       .rr = 1,
       .label = ""};

static atomic_bool g_stop;
static void on_signal(int s) {
    (void)s;
    atomic_store(&g_stop, true);
}

static void die(const char *msg, const char *detail) {
    fprintf(stderr, "sl_loadgen: %s%s\n", msg, detail);
    exit(2);
}

static void add_prop(const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) die("bad property (want key=value): ", kv);
    if (g.nprops >= 128) die("too many properties", "");
    g.props[g.nprops][0] = strndup(kv, (size_t)(eq - kv));
    g.props[g.nprops][1] = strdup(eq + 1);
    g.nprops++;
}

/* Java-style .properties subset: key=value lines, '#' and '!' comments, surrounding blanks. */
static void load_props(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open properties file ", path);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e = line + strlen(line);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#' || *s == '!') continue;
        add_prop(s);
    }
    fclose(f);
}

static void conf_set(rd_kafka_conf_t *c, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "sl_loadgen: %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk, (void)opaque;
    /* Transient transport errors are retried by the client; report, do not abort. */
    fprintf(stderr, "sl_loadgen: client error %s: %s\n", rd_kafka_err2name(err), reason);
}

/* ---- MSK IAM tokens (--msk-iam) ------------------------------------------------------------- */

/* librdkafka calls this on its background thread when a token is needed (at start and at 80 % of
 * the lifetime): a fresh MSK token signed now, valid for SL_MSK_IAM_EXPIRES seconds. */
static void on_oauthbearer_refresh(rd_kafka_t *rk, const char *cfg, void *opaque) {
    (void)cfg, (void)opaque;
    const char *akid = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    sl_sigv4_creds cr = {.akid = akid, .secret = secret, .token = token ? token : ""};
    int64_t now_s = (int64_t)time(NULL);
    char *tok = NULL, err[512];
    if (!akid || !*akid || !secret || !*secret ||
        sl_msk_iam_token(&cr, g.region, now_s, "sl_loadgen", &tok) != SL_OK) {
        rd_kafka_oauthbearer_set_token_failure(rk, "sl_loadgen: cannot make an MSK IAM token");
        return;
    }
    if (rd_kafka_oauthbearer_set_token(rk, tok, (now_s + SL_MSK_IAM_EXPIRES) * 1000, akid, NULL, 0,
                                       err, sizeof err) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "sl_loadgen: oauthbearer token: %s\n", err);
        rd_kafka_oauthbearer_set_token_failure(rk, err);
    }
    free(tok);
}

static rd_kafka_conf_t *base_conf(void) {
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    conf_set(c, "bootstrap.servers", g.brokers);
    rd_kafka_conf_set_error_cb(c, on_error);
    for (int i = 0; i < g.nprops; i++) conf_set(c, g.props[i][0], g.props[i][1]);
    if (g.msk_iam) {
        conf_set(c, "sasl.mechanisms", "OAUTHBEARER");
        rd_kafka_conf_set_oauthbearer_token_refresh_cb(c, on_oauthbearer_refresh);
        rd_kafka_conf_enable_sasl_queue(c, 1); /* served in the background: sasl_background() */
    }
    return c;
}

/* Token refreshes are served on librdkafka's background thread: nothing here polls the main
 * queue before the first request (CreateTopics waits on its own queue), so a refresh callback
 * served by rd_kafka_poll() would only run after that wait timed out. */
static void sasl_background(rd_kafka_t *rk) {
    if (!g.msk_iam) return;
    rd_kafka_error_t *e = rd_kafka_sasl_background_callbacks_enable(rk);
    if (e) {
        fprintf(stderr, "sl_loadgen: sasl background callbacks: %s\n", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        exit(2);
    }
}

/* ---- JSON payloads (--json) ------------------------------------------------------------------ */

#define JSON_TS_PREFIX "{\"ts\":\""
#define JSON_MIN_LEN   160 /* the fixed fields with the widest numbers, an empty pad, "}" */

/* Fills `len` bytes of `buf` with one JSON document for message `seq` intended for `ts_ns`. The
 * pad is fresh random alphanumerics per message (about 6 bits each: what a compressor could
 * still squeeze out is the same for both rows compared). */
static void json_payload_fill(uint8_t *buf, size_t len, sb_rng *r, int64_t ts_ns, uint64_t seq) {
    static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char head[JSON_MIN_LEN];
    int n = snprintf(head, sizeof head,
                     JSON_TS_PREFIX
                     "%016" PRIx64 "\",\"seq\":%" PRIu64
                     ",\"card_number\":\"4111-1111-1111-%04u\",\"ssn\":\"%03u-%02u-%04u\","
                     "\"name\":\"Customer %u\",\"pad\":\"",
                     (uint64_t)ts_ns, seq, (unsigned)(seq % 10000), (unsigned)(seq % 900 + 100),
                     (unsigned)(seq % 90 + 10), (unsigned)(seq % 10000), (unsigned)(seq % 100000));
    if (n < 0 || (size_t)n + 2 > len) die("message size too small for --json", "");
    memcpy(buf, head, (size_t)n);
    size_t i = (size_t)n, end = len - 2;
    while (i < end) {
        uint64_t v = sb_rng_next(r);
        for (int k = 0; k < 10 && i < end; k++, v >>= 6) buf[i++] = (uint8_t)an[(v & 63) % 62];
    }
    buf[len - 2] = '"', buf[len - 1] = '}';
}

/* The intended send time of a --json payload, or -1. */
static int64_t json_payload_ts(const void *data, size_t len) {
    const char *p = data;
    size_t pl = sizeof JSON_TS_PREFIX - 1;
    if (len < pl + 16 || memcmp(p, JSON_TS_PREFIX, pl)) return -1;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 16; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    return (int64_t)v;
}

/* ---- Producer -------------------------------------------------------------------------------- */

/* Delivery reports are served by exactly one thread: the poller thread, or with --txn the
 * sending thread inside commit_transaction's flush. */
static sb_hist g_ack_hist;
static atomic_llong g_delivered, g_failed, g_produced;
static sb_hist g_txn_hist;               /* --txn: commit_transaction latency; sending thread */
static long long g_txns, g_txns_aborted; /* --txn: committed and aborted transactions */
static bool g_idempotence; /* the producer's enable.idempotence, as librdkafka has it */
static atomic_bool g_poll_stop;
static int64_t g_prod_t0, g_prod_t1; /* first intended send, last delivery report */
static atomic_llong g_last_dr_ns;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    int64_t now = sb_now_ns();
    if (m->err) {
        if (atomic_fetch_add(&g_failed, 1) < 5)
            fprintf(stderr, "sl_loadgen: delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        sb_hist_record(&g_ack_hist, now - (int64_t)(intptr_t)m->_private);
    }
    atomic_store(&g_last_dr_ns, now);
    atomic_fetch_add(&g_delivered, 1);
}

/* Delivery reports are served by one dedicated thread so that ack latency is not inflated by
 * the send loop sleeping until the next intended send time. */
static void *poller(void *arg) {
    rd_kafka_t *rk = arg;
    while (!atomic_load(&g_poll_stop)) rd_kafka_poll(rk, 20);
    return NULL;
}

static void create_topic(rd_kafka_t *rk) {
    char err[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(g.topic, g.partitions, 1, err, sizeof err);
    if (!nt) die("NewTopic: ", err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    if (!ev) {
        fprintf(stderr, "sl_loadgen: CreateTopics timed out\n");
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        if (rd_kafka_event_error(ev))
            fprintf(stderr, "sl_loadgen: CreateTopics: %s\n", rd_kafka_event_error_string(ev));
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                fprintf(stderr, "sl_loadgen: CreateTopics %s: %s\n", g.topic, rd_kafka_err2str(e));
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
}

typedef struct prod_result {
    long long sent;
    double secs, send_secs;
} prod_result;

static rd_kafka_t *producer_new(void) {
    rd_kafka_conf_t *c = base_conf();
    conf_set(c, "acks", g.acks);
    conf_set(c, "compression.codec", g.compression);
    char v[32];
    if (g.linger_ms >= 0) snprintf(v, sizeof v, "%d", g.linger_ms), conf_set(c, "linger.ms", v);
    if (g.batch_size > 0) snprintf(v, sizeof v, "%d", g.batch_size), conf_set(c, "batch.size", v);
    if (g.txn) {
        /* Unique per run: a second run must not fence this one or inherit its open transaction. */
        char id[256];
        snprintf(id, sizeof id, "sl_loadgen-%s-%d-%016" PRIx64, *g.label ? g.label : "run",
                 (int)getpid(), (uint64_t)sb_now_ns() * UINT64_C(0x9e3779b97f4a7c15));
        conf_set(c, "transactional.id", id);
        conf_set(c, "transaction.timeout.ms", "60000");
    }
    rd_kafka_conf_set_dr_msg_cb(c, on_dr);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk) die("producer: ", err);
    sasl_background(rk);
    size_t vl = sizeof v;
    g_idempotence =
        rd_kafka_conf_get(rd_kafka_conf(rk), "enable.idempotence", v, &vl) == RD_KAFKA_CONF_OK &&
        !strcmp(v, "true");
    if (g.txn) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 30000);
        if (e) die("init_transactions: ", rd_kafka_error_string(e));
    }
    return rk;
}

/* --txn: commits the open transaction, timing the whole call. A retriable error retries the
 * commit (librdkafka resumes it), one that requires an abort aborts (counted; its messages'
 * delivery reports come back failed, so the run is not ok), anything else is fatal. */
static void txn_commit(rd_kafka_t *rk, int64_t deadline) {
    int64_t t0 = sb_now_ns();
    for (;;) {
        int64_t left_ms = (deadline + (int64_t)30e9 - sb_now_ns()) / 1000000;
        rd_kafka_error_t *e = rd_kafka_commit_transaction(rk, left_ms > 1000 ? (int)left_ms : 1000);
        if (!e) {
            sb_hist_record(&g_txn_hist, sb_now_ns() - t0);
            g_txns++;
            return;
        }
        if (rd_kafka_error_is_retriable(e) && sb_now_ns() < deadline + (int64_t)30e9) {
            rd_kafka_error_destroy(e);
            rd_kafka_poll(rk, 10); /* a short back-off, serving reports meanwhile */
            continue;
        }
        if (rd_kafka_error_txn_requires_abort(e)) {
            fprintf(stderr, "sl_loadgen: commit_transaction: %s; aborting\n",
                    rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rd_kafka_error_t *a = rd_kafka_abort_transaction(rk, 30000);
            if (a) die("abort_transaction: ", rd_kafka_error_string(a));
            g_txns_aborted++;
            return;
        }
        die("commit_transaction: ", rd_kafka_error_string(e));
    }
}

static prod_result run_producer(rd_kafka_t *rk) {
    prod_result r = {0};
    pthread_t th;
    if (!g.txn) pthread_create(&th, NULL, poller, rk);
    bool in_txn = false;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, g.topic, NULL);
    uint8_t *buf = malloc(g.size);
    sb_rng rng = {(uint64_t)sb_now_ns() ^ (uint64_t)getpid() << 32};
    int64_t t0 = sb_now_ns(), deadline = t0 + (int64_t)(g.timeout * 1e9);
    int64_t stop_at = g.duration > 0 ? t0 + (int64_t)(g.duration * 1e9) : INT64_MAX;
    double period = g.rate > 0 ? 1e9 / g.rate : 0;
    g_prod_t0 = t0;
    long long i = 0;
    for (; !atomic_load(&g_stop); i++) {
        if (g.count && i >= g.count) break;
        int64_t due = g.rate > 0 ? t0 + (int64_t)((double)i * period) : sb_now_ns();
        if (due >= stop_at || sb_now_ns() >= deadline) break;
        if (g.rate > 0 && due > sb_now_ns()) sb_sleep_until(due);
        if (g.json)
            json_payload_fill(buf, g.size, &rng, due, (uint64_t)i);
        else
            sb_payload_fill(buf, g.size, &rng, due, (uint64_t)i);
        if (g.txn && !in_txn) {
            rd_kafka_error_t *e = rd_kafka_begin_transaction(rk);
            if (e) die("begin_transaction: ", rd_kafka_error_string(e));
            in_txn = true;
        }
        int32_t part = g.rr ? (int32_t)(i % g.partitions) : RD_KAFKA_PARTITION_UA;
        /* The intended time rides in the per-message opaque: no allocation per message. */
        while (rd_kafka_produce(rkt, part, RD_KAFKA_MSG_F_COPY, buf, g.size, NULL, 0,
                                (void *)(intptr_t)due) == -1) {
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: ", rd_kafka_err2str(e));
            if (atomic_load(&g_stop) || sb_now_ns() >= deadline) goto out;
            if (g.txn)
                rd_kafka_poll(rk, 1); /* no poller thread: serve delivery reports here */
            else
                sb_sleep_ns(50000); /* the poller thread drains delivery reports meanwhile */
        }
        atomic_fetch_add(&g_produced, 1);
        if (g.txn && (i + 1) % g.txn == 0) {
            txn_commit(rk, deadline);
            in_txn = false;
        }
    }
out:
    r.sent = i;
    if (in_txn) txn_commit(rk, deadline); /* the last, partial transaction */
    r.send_secs = (double)(sb_now_ns() - t0) / 1e9;
    if (g.txn) {
        /* The last commit flushed everything; this serves only the reports of messages an abort
         * purged. */
        g_prod_t1 = sb_now_ns();
        rd_kafka_flush(rk, 5000);
    } else {
        /* Waits for delivery reports instead of rd_kafka_flush(), which would serve callbacks
         * on this thread concurrently with the poller. */
        while (atomic_load(&g_delivered) < atomic_load(&g_produced) &&
               sb_now_ns() < deadline + (int64_t)30e9)
            sb_sleep_ns(1000000);
        atomic_store(&g_poll_stop, true);
        pthread_join(th, NULL);
        g_prod_t1 = atomic_load(&g_last_dr_ns);
    }
    r.secs = (double)(g_prod_t1 - t0) / 1e9;
    free(buf);
    rd_kafka_topic_destroy(rkt);
    return r;
}

/* ---- Consumer -------------------------------------------------------------------------------- */

typedef struct cons_state {
    rd_kafka_t *rk;
    atomic_llong want; /* stop after this many messages (0: by time/idle) */
    atomic_llong got;
    long long bytes, bad;
    int64_t first_ns, last_ns;
    sb_hist e2e;
    atomic_bool ready, producer_done;
    int64_t producer_done_ns;
} cons_state;

static cons_state g_cons;

static rd_kafka_t *consumer_new(void) {
    rd_kafka_conf_t *c = base_conf();
    /* Partitions are assigned by hand, so no rebalance sits in the measurement; librdkafka
     * still wants a group.id for rd_kafka_assign(), but nothing is committed to it. */
    char gid[64];
    snprintf(gid, sizeof gid, "sl-bench-%d", (int)getpid());
    conf_set(c, "group.id", gid);
    conf_set(c, "enable.auto.commit", "false");
    conf_set(c, "enable.auto.offset.store", "false");
    conf_set(c, "enable.partition.eof", "false");
    /* librdkafka's default already; explicit so the transactional rows cannot read aborted
     * or still-open transactions whatever a properties file says. */
    if (g.txn) conf_set(c, "isolation.level", "read_committed");
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) die("consumer: ", err);
    sasl_background(rk);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static void *consumer_run(void *arg) {
    cons_state *cs = arg;
    rd_kafka_t *rk = cs->rk;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(g.partitions);
    for (int p = 0; p < g.partitions; p++) {
        int64_t off = RD_KAFKA_OFFSET_BEGINNING;
        if (g.from_end) {
            /* Resolving the end now (not OFFSET_END at fetch time) means nothing the producer
             * sends after `ready` can be skipped. */
            int64_t lo = 0, hi = 0;
            rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
            for (int tries = 0; tries < 20 && e; tries++) {
                e = rd_kafka_query_watermark_offsets(rk, g.topic, p, &lo, &hi, 5000);
                if (e) sb_sleep_ns(250000000);
            }
            if (e) die("watermarks: ", rd_kafka_err2str(e));
            off = hi;
        }
        rd_kafka_topic_partition_list_add(tl, g.topic, p)->offset = off;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, tl);
    if (e) die("assign: ", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(tl);
    atomic_store(&cs->ready, true);

    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *msgs[1024];
    int64_t t0 = sb_now_ns(), deadline = t0 + (int64_t)(g.timeout * 1e9);
    int64_t stop_at =
        g.mode == M_CONSUME && g.duration > 0 ? t0 + (int64_t)(g.duration * 1e9) : INT64_MAX;
    int64_t last_progress = t0;
    while (!atomic_load(&g_stop)) {
        long long got = atomic_load(&cs->got);
        long long want = atomic_load(&cs->want);
        if (want && got >= want) break;
        int64_t now = sb_now_ns();
        if (now >= deadline || now >= stop_at) break;
        /* In e2e mode a message lost by the broker must not hang the run: give the tail 10 s
         * after the producer saw its last delivery report. */
        if (atomic_load(&cs->producer_done) && now - cs->producer_done_ns > (int64_t)10e9) break;
        if (g.mode == M_CONSUME && got && now - last_progress > (int64_t)15e9) break;
        /* Block for one message, then drain what is already queued without waiting: a batch
         * call with a timeout would hold early messages until the batch filled, which is
         * latency the consumer adds, not the broker. */
        rd_kafka_message_t *first = rd_kafka_consumer_poll(rk, 100);
        if (!first) continue;
        msgs[0] = first;
        ssize_t n = rd_kafka_consume_batch_queue(q, 0, msgs + 1, 1023);
        n = n < 0 ? 1 : n + 1;
        now = sb_now_ns();
        for (ssize_t k = 0; k < n; k++) {
            rd_kafka_message_t *m = msgs[k];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    fprintf(stderr, "sl_loadgen: consume: %s\n", rd_kafka_message_errstr(m));
            } else {
                int64_t ts = g.json ? json_payload_ts(m->payload, m->len)
                                    : sb_payload_ts(m->payload, m->len);
                if (ts < 0)
                    cs->bad++;
                else
                    sb_hist_record(&cs->e2e, now - ts);
                if (!cs->first_ns) cs->first_ns = now;
                cs->last_ns = now;
                cs->bytes += (long long)m->len;
                atomic_fetch_add(&cs->got, 1);
                last_progress = now;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

/* ---- Main ------------------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(
        stderr,
        "usage: sl_loadgen produce|consume|e2e -b HOST:PORT -t TOPIC [options]\n"
        "  -p N   partitions (default 1)           -s B   message size (default 1024)\n"
        "  -n N   message count                    -d S   duration, seconds\n"
        "  -r R   fixed rate, msgs/s (0 = max)     -a A   acks (default all)\n"
        "  -z C   compression (default none)       -l MS  linger.ms\n"
        "  -B B   batch.size                       -F F   client properties file\n"
        "  -X k=v client property                  -T S   hard time cap (default 300)\n"
        "  --create        create the topic with -p partitions first\n"
        "  --from-end      consume only what is produced after start (tailing)\n"
        "  --partitioner=client  leave partitioning to librdkafka (default: round robin)\n"
        "  --label L       tag echoed in the JSON line\n"
        "  --json          JSON documents of -s bytes (card_number, ssn, name, pad)\n"
        "  --msk-iam       SASL OAUTHBEARER with MSK IAM tokens signed here (AWS_ACCESS_KEY_ID,\n"
        "                  AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN]); set security.protocol\n"
        "  --region R      the tokens' region (default AWS_REGION)\n"
        "  --txn N         transactional producer: commit every N messages (unique\n"
        "                  transactional.id per run); consumer read_committed\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "produce"))
        g.mode = M_PRODUCE;
    else if (!strcmp(argv[1], "consume"))
        g.mode = M_CONSUME;
    else if (!strcmp(argv[1], "e2e"))
        g.mode = M_E2E;
    else
        usage();
    static const struct option lo[] = {{"create", no_argument, NULL, 1},
                                       {"from-end", no_argument, NULL, 2},
                                       {"partitioner", required_argument, NULL, 3},
                                       {"label", required_argument, NULL, 4},
                                       {"json", no_argument, NULL, 5},
                                       {"msk-iam", no_argument, NULL, 6},
                                       {"region", required_argument, NULL, 7},
                                       {"txn", required_argument, NULL, 8},
                                       {NULL, 0, NULL, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "b:t:p:s:n:d:r:a:z:l:B:F:X:T:", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            g.brokers = optarg;
            break;
        case 't':
            g.topic = optarg;
            break;
        case 'p':
            g.partitions = atoi(optarg);
            break;
        case 's':
            g.size = (size_t)atol(optarg);
            break;
        case 'n':
            g.count = atoll(optarg);
            break;
        case 'd':
            g.duration = atof(optarg);
            break;
        case 'r':
            g.rate = atof(optarg);
            break;
        case 'a':
            g.acks = optarg;
            break;
        case 'z':
            g.compression = optarg;
            break;
        case 'l':
            g.linger_ms = atoi(optarg);
            break;
        case 'B':
            g.batch_size = atoi(optarg);
            break;
        case 'F':
            load_props(optarg);
            break;
        case 'X':
            add_prop(optarg);
            break;
        case 'T':
            g.timeout = atof(optarg);
            break;
        case 1:
            g.create = true;
            break;
        case 2:
            g.from_end = true;
            break;
        case 3:
            g.rr = strcmp(optarg, "client") != 0;
            break;
        case 4:
            g.label = optarg;
            break;
        case 5:
            g.json = true;
            break;
        case 6:
            g.msk_iam = true;
            break;
        case 7:
            g.region = optarg;
            break;
        case 8:
            g.txn = atoll(optarg);
            if (g.txn < 1) die("--txn wants a positive number of messages", "");
            break;
        default:
            usage();
        }
    }
    if (!g.brokers || !g.topic) usage();
    if (g.partitions < 1 || g.partitions > MAX_PARTS) die("partitions out of range", "");
    if (g.size < SB_HDR_LEN) die("message size must be >= 20", "");
    if (g.json && g.size < JSON_MIN_LEN) die("message size must be >= 160 with --json", "");
    if (!g.count && g.duration <= 0) die("give -n or -d", "");
    if (g.timeout <= 0 || g.timeout > 3600) die("-T must be in (0, 3600]", "");
    if (g.msk_iam) {
        if (!g.region || !*g.region) g.region = getenv("AWS_REGION");
        if (!g.region || !*g.region) die("--msk-iam needs --region or AWS_REGION", "");
        if (!getenv("AWS_ACCESS_KEY_ID") || !getenv("AWS_SECRET_ACCESS_KEY"))
            die("--msk-iam needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "");
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* A hard cap no matter what the broker does: every run stops by itself. */
    alarm((unsigned)g.timeout + 60);

    rd_kafka_t *prk = NULL;
    if (g.mode != M_CONSUME) {
        prk = producer_new();
        if (g.create) create_topic(prk);
    }
    pthread_t cth;
    if (g.mode != M_PRODUCE) {
        if (g.create && !prk) {
            rd_kafka_t *tmp = producer_new();
            create_topic(tmp);
            rd_kafka_destroy(tmp);
        }
        g_cons.rk = consumer_new();
        atomic_store(&g_cons.want, g.count);
        if (g.mode == M_E2E) g.from_end = true;
        pthread_create(&cth, NULL, consumer_run, &g_cons);
        while (!atomic_load(&g_cons.ready) && !atomic_load(&g_stop)) sb_sleep_ns(1000000);
        /* Let the first fetches be in flight so the producer's first messages do not also
         * measure connection setup. */
        if (g.mode == M_E2E) sb_sleep_ns(500000000);
    }
    prod_result pr = {0};
    if (prk) {
        pr = run_producer(prk);
        if (g.mode == M_E2E) {
            atomic_store(&g_cons.want, pr.sent > 0 ? pr.sent : -1);
            g_cons.producer_done_ns = sb_now_ns();
            atomic_store(&g_cons.producer_done, true);
        }
    }
    if (g.mode != M_PRODUCE) pthread_join(cth, NULL);

    long long delivered = atomic_load(&g_delivered), failed = atomic_load(&g_failed);
    long long got = atomic_load(&g_cons.got);
    double csecs =
        g_cons.last_ns > g_cons.first_ns ? (double)(g_cons.last_ns - g_cons.first_ns) / 1e9 : 0;
    double pmb = pr.secs > 0 ? (double)(delivered - failed) * (double)g.size / pr.secs / 1e6 : 0;
    double cmb = csecs > 0 ? (double)g_cons.bytes / csecs / 1e6 : 0;
    bool ok = true;
    if (prk && (failed || delivered < pr.sent)) ok = false;
    if (g.mode == M_E2E && got < pr.sent) ok = false;
    if (g.mode == M_CONSUME && g.count && got < g.count) ok = false;
    if (g_txns_aborted) ok = false;

    static const char *names[] = {"produce", "consume", "e2e"};
    printf("{\"tool\":\"sl_loadgen\",\"label\":\"%s\",\"mode\":\"%s\",\"topic\":\"%s\","
           "\"partitions\":%d,\"size\":%zu,\"acks\":\"%s\",\"compression\":\"%s\","
           "\"rate_target\":%.0f,\"payload\":\"%s\",\"ok\":%s",
           g.label, names[g.mode], g.topic, g.partitions, g.size, g.acks, g.compression, g.rate,
           g.json ? "json" : "random", ok ? "true" : "false");
    if (prk) {
        printf(",\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld,\"produce_secs\":%.3f,"
               "\"produce_msgs_per_s\":%.0f,\"produce_mb_per_s\":%.2f,",
               pr.sent, delivered, failed, pr.secs, pr.secs > 0 ? (double)delivered / pr.secs : 0,
               pmb);
        sb_hist_json(stdout, "ack_lat_us", &g_ack_hist);
        printf(",\"idempotence\":%s", g_idempotence ? "true" : "false");
        if (g.txn) {
            printf(",\"txn_size\":%lld,\"txns\":%lld,\"txns_aborted\":%lld,", g.txn, g_txns,
                   g_txns_aborted);
            sb_hist_json(stdout, "txn_commit_us", &g_txn_hist);
        }
    }
    if (g.mode != M_PRODUCE) {
        printf(",\"consumed\":%lld,\"bad\":%lld,\"consume_secs\":%.3f,\"consume_msgs_per_s\":%.0f,"
               "\"consume_mb_per_s\":%.2f,",
               got, g_cons.bad, csecs, csecs > 0 ? (double)got / csecs : 0, cmb);
        sb_hist_json(stdout, "e2e_lat_us", &g_cons.e2e);
    }
    printf("}\n");
    printf("%s %s%s%s: ", names[g.mode], g.topic, *g.label ? " " : "", g.label);
    if (prk)
        printf("produced %lld msgs in %.2f s = %.1f MB/s (failed %lld)", delivered, pr.secs, pmb,
               failed);
    if (prk && g.txn)
        printf(" in %lld transactions (aborted %lld), commit p50 %.2f ms p99 %.2f ms", g_txns,
               g_txns_aborted, sb_hist_quantile(&g_txn_hist, 0.50) / 1e6,
               sb_hist_quantile(&g_txn_hist, 0.99) / 1e6);
    if (prk && g.mode == M_E2E) printf("; ");
    if (g.mode != M_PRODUCE) printf("consumed %lld msgs in %.2f s = %.1f MB/s", got, csecs, cmb);
    printf("%s\n", ok ? "" : "  [INCOMPLETE]");
    sb_hist_human(stdout, "ack", &g_ack_hist);
    sb_hist_human(stdout, "e2e", &g_cons.e2e);
    sb_hist_human(stdout, "commit", &g_txn_hist);
    fflush(stdout);

    if (g.mode != M_PRODUCE) {
        rd_kafka_consumer_close(g_cons.rk);
        rd_kafka_destroy(g_cons.rk);
    }
    if (prk) rd_kafka_destroy(prk);
    for (int i = 0; i < g.nprops; i++) free(g.props[i][0]), free(g.props[i][1]);
    return ok ? 0 : 1;
}
