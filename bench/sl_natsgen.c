/* NATS JetStream load generator, the counterpart of sl_loadgen for the reference row: same
 * payloads (sl_bench.h), same fixed-rate schedule by intended send time, same JSON line.
 *
 *   sl_natsgen produce|consume|e2e -b tls://HOST:PORT -t NAME [options]
 *
 * "Partitions" map to streams: partition i is stream "<NAME>_<i>" on subject "<NAME>.<i>", each
 * with file storage, published round robin. Publishing is asynchronous (js_PublishAsync) with a
 * bounded window of unacknowledged messages, the analogue of a Kafka producer's in-flight
 * batches; a publish counts when JetStream's PubAck arrives (the stream has stored it).
 * Consumers are ordered push consumers (no acks, flow control), one per stream. */
#include <getopt.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "sl_bench.h"

#define MAX_PARTS 64

typedef enum { M_PRODUCE, M_CONSUME, M_E2E } run_mode;

static struct {
    run_mode mode;
    const char *url, *topic, *label, *ca;
    int partitions;
    size_t size;
    long long count;
    double duration, rate, timeout;
    bool create, from_end;
    int window;
} g = {.partitions = 1, .size = 1024, .timeout = 300, .label = "", .window = 4096};

static atomic_bool g_stop;
static void on_signal(int s) {
    (void)s;
    atomic_store(&g_stop, true);
}

static void die(const char *msg, natsStatus s) {
    fprintf(stderr, "sl_natsgen: %s: %s\n", msg, natsStatus_GetText(s));
    nats_PrintLastErrorStack(stderr);
    exit(2);
}

/* ---- Publisher --------------------------------------------------------------------------------
 */

static sb_hist g_ack_hist; /* written only by the library's PubAck thread */
static atomic_llong g_acked, g_failed, g_last_ack_ns;

static void on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js, (void)pa, (void)closure;
    int64_t now = sb_now_ns();
    if (pae) {
        if (atomic_fetch_add(&g_failed, 1) < 5)
            fprintf(stderr, "sl_natsgen: publish failed: %s\n", pae->ErrText ? pae->ErrText : "?");
    } else {
        /* The published message comes back with the ack, so the intended send time is read
         * from its payload: no per-message bookkeeping on our side. */
        int64_t ts = sb_payload_ts(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
        if (ts >= 0) sb_hist_record(&g_ack_hist, now - ts);
    }
    atomic_store(&g_last_ack_ns, now);
    atomic_fetch_add(&g_acked, 1);
    natsMsg_Destroy(msg);
}

/* ---- Consumer ---------------------------------------------------------------------------------
 */

static struct {
    pthread_mutex_t mu; /* one callback thread per subscription share these */
    long long got, bytes, bad;
    int64_t first_ns, last_ns;
    sb_hist e2e;
} g_cons = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc, (void)sub, (void)closure;
    int64_t now = sb_now_ns();
    int len = natsMsg_GetDataLength(msg);
    int64_t ts = sb_payload_ts(natsMsg_GetData(msg), (size_t)len);
    pthread_mutex_lock(&g_cons.mu);
    if (ts < 0)
        g_cons.bad++;
    else
        sb_hist_record(&g_cons.e2e, now - ts);
    if (!g_cons.first_ns) g_cons.first_ns = now;
    g_cons.last_ns = now;
    g_cons.got++;
    g_cons.bytes += len;
    pthread_mutex_unlock(&g_cons.mu);
    natsMsg_Destroy(msg);
}

static long long cons_got(void) {
    pthread_mutex_lock(&g_cons.mu);
    long long n = g_cons.got;
    pthread_mutex_unlock(&g_cons.mu);
    return n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: sl_natsgen produce|consume|e2e -b URL -t NAME [-p N] [-s B] [-n N] [-d S]\n"
            "       [-r RATE] [-T S] [-w WINDOW] [--ca FILE] [--create] [--label L]\n"
            "  options as sl_loadgen; -w: unacknowledged publishes in flight (4096)\n"
            "  -F and -X are accepted for symmetry with sl_loadgen and ignored\n");
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
                                       {"label", required_argument, NULL, 4},
                                       {"ca", required_argument, NULL, 5},
                                       {NULL, 0, NULL, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "b:t:p:s:n:d:r:T:w:F:X:", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            g.url = optarg;
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
        case 'T':
            g.timeout = atof(optarg);
            break;
        case 'w':
            g.window = atoi(optarg);
            break;
        case 'F':
        case 'X':
            break;
        case 1:
            g.create = true;
            break;
        case 2:
            g.from_end = true;
            break;
        case 4:
            g.label = optarg;
            break;
        case 5:
            g.ca = optarg;
            break;
        default:
            usage();
        }
    }
    if (!g.url || !g.topic || g.partitions < 1 || g.partitions > MAX_PARTS || g.size < SB_HDR_LEN ||
        (!g.count && g.duration <= 0) || g.timeout <= 0 || g.timeout > 3600 || g.window < 1)
        usage();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    alarm((unsigned)g.timeout + 60);

    natsStatus s;
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if ((s = natsOptions_Create(&opts))) die("options", s);
    natsOptions_SetURL(opts, g.url);
    if (!strncmp(g.url, "tls://", 6)) {
        natsOptions_SetSecure(opts, true);
        if (g.ca && (s = natsOptions_LoadCATrustedCertificates(opts, g.ca))) die("CA file", s);
    }
    /* Large socket buffers and no reconnect: a failure should end the run, not hide in it. */
    natsOptions_SetMaxReconnect(opts, 0);
    natsOptions_SetIOBufSize(opts, 1 << 20);
    if ((s = natsConnection_Connect(&nc, opts))) die("connect", s);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = g.window;
    jo.PublishAsync.AckHandler = on_puback;
    if ((s = natsConnection_JetStream(&js, nc, &jo))) die("jetstream", s);

    char subj[MAX_PARTS][256], stream[MAX_PARTS][256];
    for (int p = 0; p < g.partitions; p++) {
        snprintf(subj[p], sizeof subj[p], "%s.%d", g.topic, p);
        snprintf(stream[p], sizeof stream[p], "%s_%d", g.topic, p);
        if (!g.create) continue;
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        const char *subjects[1] = {subj[p]};
        sc.Name = stream[p];
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        jsStreamInfo *si = NULL;
        jsErrCode je = 0;
        s = js_AddStream(&si, js, &sc, NULL, &je);
        if (s && je != JSStreamNameExistErr) die("add stream", s);
        if (si) jsStreamInfo_Destroy(si);
    }

    natsSubscription *subs[MAX_PARTS] = {0};
    if (g.mode != M_PRODUCE) {
        if (g.mode == M_E2E) g.from_end = true;
        for (int p = 0; p < g.partitions; p++) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = stream[p];
            so.Ordered = true;
            so.Config.DeliverPolicy = g.from_end ? js_DeliverNew : js_DeliverAll;
            jsErrCode je = 0;
            if ((s = js_Subscribe(&subs[p], js, subj[p], on_msg, NULL, NULL, &so, &je)))
                die("subscribe", s);
            /* Unlimited client-side pending: a slow-consumer drop would look like message loss. */
            natsSubscription_SetPendingLimits(subs[p], -1, -1);
        }
        if (g.mode == M_E2E) sb_sleep_ns(500000000);
    }

    long long sent = 0;
    int64_t t0 = sb_now_ns(), deadline = t0 + (int64_t)(g.timeout * 1e9);
    double psecs = 0;
    if (g.mode != M_CONSUME) {
        uint8_t *buf = malloc(g.size);
        sb_rng rng = {(uint64_t)sb_now_ns() ^ (uint64_t)getpid() << 32};
        int64_t stop_at = g.duration > 0 ? t0 + (int64_t)(g.duration * 1e9) : INT64_MAX;
        double period = g.rate > 0 ? 1e9 / g.rate : 0;
        for (long long i = 0; !atomic_load(&g_stop); i++) {
            if (g.count && i >= g.count) break;
            int64_t due = g.rate > 0 ? t0 + (int64_t)((double)i * period) : sb_now_ns();
            if (due >= stop_at || sb_now_ns() >= deadline) break;
            if (g.rate > 0 && due > sb_now_ns()) sb_sleep_until(due);
            sb_payload_fill(buf, g.size, &rng, due, (uint64_t)i);
            /* Blocks (StallWait) while the window is full: that is backpressure, and the
             * intended time in the payload keeps it visible in the latency. */
            for (;;) {
                s = js_PublishAsync(js, subj[i % g.partitions], buf, (int)g.size, NULL);
                if (s != NATS_TIMEOUT) break;
                if (atomic_load(&g_stop) || sb_now_ns() >= deadline) break;
            }
            if (s) die("publish", s);
            sent++;
        }
        free(buf);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 30000;
        js_PublishAsyncComplete(js, &po);
        int64_t last = atomic_load(&g_last_ack_ns);
        psecs = last > t0 ? (double)(last - t0) / 1e9 : 0;
    }
    if (g.mode != M_PRODUCE) {
        long long want = g.mode == M_E2E ? sent : g.count;
        int64_t cstart = sb_now_ns(), last_progress = cstart;
        int64_t stop_at =
            g.mode == M_CONSUME && g.duration > 0 ? t0 + (int64_t)(g.duration * 1e9) : INT64_MAX;
        long long prev = -1;
        while (!atomic_load(&g_stop)) {
            long long got = cons_got();
            int64_t now = sb_now_ns();
            if (want && got >= want) break;
            if (now >= deadline || now >= stop_at) break;
            if (got != prev) prev = got, last_progress = now;
            if (now - last_progress > (int64_t)(g.mode == M_E2E ? 10e9 : 15e9)) break;
            sb_sleep_ns(2000000);
        }
        for (int p = 0; p < g.partitions; p++) natsSubscription_Unsubscribe(subs[p]);
    }

    long long acked = atomic_load(&g_acked), failed = atomic_load(&g_failed);
    pthread_mutex_lock(&g_cons.mu);
    long long got = g_cons.got;
    double csecs =
        g_cons.last_ns > g_cons.first_ns ? (double)(g_cons.last_ns - g_cons.first_ns) / 1e9 : 0;
    double cmb = csecs > 0 ? (double)g_cons.bytes / csecs / 1e6 : 0;
    pthread_mutex_unlock(&g_cons.mu);
    double pmb = psecs > 0 ? (double)(acked - failed) * (double)g.size / psecs / 1e6 : 0;
    bool ok = true;
    if (g.mode != M_CONSUME && (failed || acked < sent)) ok = false;
    if (g.mode == M_E2E && got < sent) ok = false;
    if (g.mode == M_CONSUME && g.count && got < g.count) ok = false;

    static const char *names[] = {"produce", "consume", "e2e"};
    printf("{\"tool\":\"sl_natsgen\",\"label\":\"%s\",\"mode\":\"%s\",\"topic\":\"%s\","
           "\"partitions\":%d,\"size\":%zu,\"acks\":\"jetstream\",\"compression\":\"none\","
           "\"rate_target\":%.0f,\"ok\":%s",
           g.label, names[g.mode], g.topic, g.partitions, g.size, g.rate, ok ? "true" : "false");
    if (g.mode != M_CONSUME) {
        printf(",\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld,\"produce_secs\":%.3f,"
               "\"produce_msgs_per_s\":%.0f,\"produce_mb_per_s\":%.2f,",
               sent, acked, failed, psecs, psecs > 0 ? (double)acked / psecs : 0, pmb);
        sb_hist_json(stdout, "ack_lat_us", &g_ack_hist);
    }
    if (g.mode != M_PRODUCE) {
        printf(",\"consumed\":%lld,\"bad\":%lld,\"consume_secs\":%.3f,\"consume_msgs_per_s\":%.0f,"
               "\"consume_mb_per_s\":%.2f,",
               got, g_cons.bad, csecs, csecs > 0 ? (double)got / csecs : 0, cmb);
        sb_hist_json(stdout, "e2e_lat_us", &g_cons.e2e);
    }
    printf("}\n");
    printf("%s %s%s%s: ", names[g.mode], g.topic, *g.label ? " " : "", g.label);
    if (g.mode != M_CONSUME)
        printf("published %lld msgs in %.2f s = %.1f MB/s (failed %lld)%s", acked, psecs, pmb,
               failed, g.mode == M_E2E ? "; " : "");
    if (g.mode != M_PRODUCE) printf("consumed %lld msgs in %.2f s = %.1f MB/s", got, csecs, cmb);
    printf("%s\n", ok ? "" : "  [INCOMPLETE]");
    sb_hist_human(stdout, "ack", &g_ack_hist);
    sb_hist_human(stdout, "e2e", &g_cons.e2e);
    fflush(stdout);

    for (int p = 0; p < g.partitions; p++)
        if (subs[p]) natsSubscription_Destroy(subs[p]);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return ok ? 0 : 1;
}
