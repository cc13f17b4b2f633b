/* librdkafka's in-memory mock cluster served on a loopback port, as the reference floor for
 * protocol overhead: plaintext, no persistence, no fsync.
 *
 *   sl_mockbroker [-T max_seconds] [TOPIC:PARTITIONS ...]
 *
 * Prints "bootstrap=HOST:PORT" on stdout once listening, then serves until SIGTERM/SIGINT or
 * max_seconds (default 1800). A separate process rather than a mock inside the load generator,
 * so that it can be pinned to the broker's core and its CPU and RSS read from /proc exactly like
 * the real broker's. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
static void on_signal(int s) {
    (void)s;
    g_stop = 1;
}

int main(int argc, char **argv) {
    double max_s = 1800;
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "-T")) {
        max_s = atof(argv[2]);
        first = 3;
    }
    if (max_s <= 0 || max_s > 7200) {
        fprintf(stderr, "sl_mockbroker: -T must be in (0, 7200]\n");
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    /* The handle only hosts the mock cluster's thread: no bootstrap servers, it never connects
     * anywhere itself. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "sl_mockbroker: %s\n", err);
        return 2;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "sl_mockbroker: mock cluster failed\n");
        return 1;
    }
    for (int i = first; i < argc; i++) {
        char topic[256];
        int parts = 1;
        const char *colon = strrchr(argv[i], ':');
        size_t tl = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
        if (tl == 0 || tl >= sizeof topic) continue;
        memcpy(topic, argv[i], tl);
        topic[tl] = 0;
        if (colon) parts = atoi(colon + 1);
        if (parts < 1) parts = 1;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topic, parts, 1);
        if (e) fprintf(stderr, "sl_mockbroker: topic %s: %s\n", topic, rd_kafka_err2str(e));
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(100000);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (!g_stop && (double)(now.tv_sec - t0.tv_sec) < max_s);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
