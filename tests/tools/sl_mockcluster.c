/* A librdkafka mock cluster (rdkafka_mock.h) driven line by line over stdin: the "upstream Kafka
 * cluster" of the gateway tests, whose leaders, broker outages and latencies a test changes
 * while clients run.
 *
 *   sl_mockcluster [--brokers N] [--topic NAME:PARTITIONS]...
 *
 * Once every broker answers Metadata it prints one line
 *   READY bootstrap=H:P,H:P,... brokers=1@H:P,2@H:P,...
 * then answers each stdin line with exactly one line, "ok ..." or "error ...":
 *   leader TOPIC PARTITION BROKER   (BROKER -1 = leaderless)
 *   create TOPIC PARTITIONS         down BROKER      up BROKER      rtt BROKER MS
 *   coord group|txn KEY BROKER      metadata         quit
 * It exits on stdin EOF, so a test that dies leaves no cluster behind, and on SIGTERM/SIGINT.
 *
 * Limits of the 2.0.2 mock (docs/TESTING.md): old protocol versions only, PLAINTEXT only,
 * topics auto-created on any Metadata naming them, controller id 0 (no such broker). */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BROKERS    16
#define MAX_TOPICS     256
#define MAX_PARTITIONS 1024
#define MAX_RTT_MS     60000
#define LINE_MAX_LEN   512
#define MD_TIMEOUT_MS  5000

typedef struct {
    char name[250]; /* Kafka's limit is 249 characters */
    int partitions;
} topic;

typedef struct {
    rd_kafka_t *host; /* only hosts the mock's thread; never connects anywhere */
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *client; /* reads back Metadata for READY and `metadata` */
    int nbrokers;
    topic topics[MAX_TOPICS];
    int ntopics;
} cluster;

static volatile sig_atomic_t g_stop;
static void on_signal(int s) {
    (void)s;
    g_stop = 1;
}

/* The whole string must be a decimal number in [min, max]: a typo in a test must be an error,
 * not broker 0 or partition 0. */
static bool parse_int(const char *s, long min, long max, int *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = (int)v;
    return true;
}

/* Only Kafka's legal topic characters: anything else would be a test bug, and the mock
 * accepts any string. */
static bool valid_topic(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 249) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static topic *find_topic(cluster *c, const char *name) {
    for (int i = 0; i < c->ntopics; i++)
        if (!strcmp(c->topics[i].name, name)) return &c->topics[i];
    return NULL;
}

/* Creates the topic and sets its leaders round-robin, partition p on broker p % N + 1: the mock
 * picks leaders at random, and tests need partitions on different brokers for certain. */
static const char *create_topic(cluster *c, const char *name, int partitions) {
    if (c->ntopics == MAX_TOPICS) return "too many topics";
    if (find_topic(c, name)) return "topic exists";
    int rf = c->nbrokers < 3 ? c->nbrokers : 3;
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(c->mc, name, partitions, rf);
    if (e) return rd_kafka_err2name(e);
    for (int p = 0; p < partitions; p++) {
        e = rd_kafka_mock_partition_set_leader(c->mc, name, p, p % c->nbrokers + 1);
        if (e) return rd_kafka_err2name(e);
    }
    topic *t = &c->topics[c->ntopics++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->partitions = partitions;
    return NULL;
}

/* "NAME:PARTITIONS" from the command line. */
static bool topic_arg(cluster *c, const char *arg) {
    const char *colon = strrchr(arg, ':');
    char name[250];
    int parts;
    if (!colon || (size_t)(colon - arg) >= sizeof name ||
        !parse_int(colon + 1, 1, MAX_PARTITIONS, &parts)) {
        fprintf(stderr, "sl_mockcluster: --topic wants NAME:PARTITIONS (1..%d), got '%s'\n",
                MAX_PARTITIONS, arg);
        return false;
    }
    memcpy(name, arg, (size_t)(colon - arg));
    name[colon - arg] = 0;
    if (!valid_topic(name)) {
        fprintf(stderr, "sl_mockcluster: invalid topic name '%s'\n", name);
        return false;
    }
    const char *err = create_topic(c, name, parts);
    if (err) {
        fprintf(stderr, "sl_mockcluster: topic %s: %s\n", name, err);
        return false;
    }
    return true;
}

/* All-topics Metadata as a client sees it (so never an auto-create); the caller destroys it. */
static const struct rd_kafka_metadata *fetch_metadata(cluster *c) {
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(c->client, 1, NULL, &md, MD_TIMEOUT_MS)) return NULL;
    return md;
}

static int cmp_broker(const void *a, const void *b) {
    return ((const struct rd_kafka_metadata_broker *)a)->id -
           ((const struct rd_kafka_metadata_broker *)b)->id;
}

/* READY line: broker ids and ports as the cluster itself reports them, not assumed from the
 * order of the bootstrap list. */
static bool print_ready(cluster *c) {
    const struct rd_kafka_metadata *md = fetch_metadata(c);
    if (!md) return false;
    if (md->broker_cnt != c->nbrokers) {
        rd_kafka_metadata_destroy(md);
        return false;
    }
    struct rd_kafka_metadata_broker bs[MAX_BROKERS];
    memcpy(bs, md->brokers, sizeof bs[0] * (size_t)md->broker_cnt);
    qsort(bs, (size_t)md->broker_cnt, sizeof bs[0], cmp_broker);
    printf("READY bootstrap=%s brokers=", rd_kafka_mock_cluster_bootstraps(c->mc));
    for (int i = 0; i < md->broker_cnt; i++)
        printf("%s%d@%s:%d", i ? "," : "", bs[i].id, bs[i].host, bs[i].port);
    printf("\n");
    rd_kafka_metadata_destroy(md);
    return true;
}

/* "ok TOPIC:L0,L1,... ..." with every topic the cluster has (auto-created ones too), partitions
 * in order; -1 is a leaderless partition. */
static void cmd_metadata(cluster *c) {
    const struct rd_kafka_metadata *md = fetch_metadata(c);
    if (!md) {
        printf("error metadata timed out\n");
        return;
    }
    printf("ok");
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        printf(" %s:", t->topic);
        for (int p = 0; p < t->partition_cnt; p++) {
            /* partitions normally come in id order, but nothing promises it */
            int leader = -1;
            for (int j = 0; j < t->partition_cnt; j++)
                if (t->partitions[j].id == p) leader = t->partitions[j].leader;
            printf("%s%d", p ? "," : "", leader);
        }
    }
    printf("\n");
    rd_kafka_metadata_destroy(md);
}

/* One command line, answered with exactly one line. Returns false on `quit`. */
static bool run_command(cluster *c, char *line) {
    char *argv[5];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        if (argc == 5) {
            printf("error too many arguments\n");
            return true;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        printf("error empty command\n");
        return true;
    }
    const char *cmd = argv[0];
    int b, n, p;
    rd_kafka_resp_err_t e;
    if (!strcmp(cmd, "quit") && argc == 1) {
        printf("ok bye\n");
        return false;
    } else if (!strcmp(cmd, "metadata") && argc == 1) {
        cmd_metadata(c);
        return true;
    } else if (!strcmp(cmd, "leader") && argc == 4) {
        topic *t = find_topic(c, argv[1]);
        /* Only topics this tool made: set_leader on an unknown name would create it. */
        if (!t) {
            printf("error unknown topic %s\n", argv[1]);
            return true;
        }
        if (!parse_int(argv[2], 0, t->partitions - 1, &p) ||
            !parse_int(argv[3], -1, c->nbrokers, &b) || b == 0) {
            printf("error usage: leader TOPIC PARTITION(0..%d) BROKER(1..%d or -1)\n",
                   t->partitions - 1, c->nbrokers);
            return true;
        }
        e = rd_kafka_mock_partition_set_leader(c->mc, t->name, p, b);
    } else if (!strcmp(cmd, "create") && argc == 3) {
        if (!valid_topic(argv[1]) || !parse_int(argv[2], 1, MAX_PARTITIONS, &n)) {
            printf("error usage: create TOPIC PARTITIONS(1..%d)\n", MAX_PARTITIONS);
            return true;
        }
        const char *err = create_topic(c, argv[1], n);
        if (err)
            printf("error %s\n", err);
        else
            printf("ok created %s %d\n", argv[1], n);
        return true;
    } else if ((!strcmp(cmd, "down") || !strcmp(cmd, "up")) && argc == 2) {
        if (!parse_int(argv[1], 1, c->nbrokers, &b)) {
            printf("error usage: %s BROKER(1..%d)\n", cmd, c->nbrokers);
            return true;
        }
        e = cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(c->mc, b)
                          : rd_kafka_mock_broker_set_up(c->mc, b);
    } else if (!strcmp(cmd, "rtt") && argc == 3) {
        if (!parse_int(argv[1], 1, c->nbrokers, &b) || !parse_int(argv[2], 0, MAX_RTT_MS, &n)) {
            printf("error usage: rtt BROKER(1..%d) MS(0..%d)\n", c->nbrokers, MAX_RTT_MS);
            return true;
        }
        e = rd_kafka_mock_broker_set_rtt(c->mc, b, n);
    } else if (!strcmp(cmd, "coord") && argc == 4) {
        const char *type = !strcmp(argv[1], "group") ? "group"
                           : !strcmp(argv[1], "txn") ? "transaction"
                                                     : NULL;
        if (!type || !parse_int(argv[3], 1, c->nbrokers, &b)) {
            printf("error usage: coord group|txn KEY BROKER(1..%d)\n", c->nbrokers);
            return true;
        }
        e = rd_kafka_mock_coordinator_set(c->mc, type, argv[2], b);
    } else {
        printf("error unknown command or wrong argument count: %s\n", cmd);
        return true;
    }
    if (e)
        printf("error %s\n", rd_kafka_err2name(e));
    else
        printf("ok %s\n", cmd);
    return true;
}

/* Reads one line of at most LINE_MAX_LEN - 2 characters; a longer one is swallowed to its end
 * and reported, so no input can grow memory or split into two commands. Returns 0 on EOF or
 * signal, 1 for a line, -1 for an overlong line. */
static int read_line(char *buf, size_t size) {
    if (!fgets(buf, (int)size, stdin)) return 0;
    if (strchr(buf, '\n') || feof(stdin)) return 1;
    int ch;
    while ((ch = getchar()) != EOF && ch != '\n') {
    }
    return ch == EOF && (ferror(stdin) || g_stop) ? 0 : -1;
}

int main(int argc, char **argv) {
    static cluster c = {.nbrokers = 3};
    char err[512];
    /* stdout is a pipe to the test: line-buffered, or its readline would wait forever */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* No SA_RESTART: a signal must interrupt the blocking read of stdin. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A test that closed our stdout is gone: exit on the write error, not on SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    int first_topic = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
            if (!parse_int(argv[++i], 1, MAX_BROKERS, &c.nbrokers)) {
                fprintf(stderr, "sl_mockcluster: --brokers wants 1..%d\n", MAX_BROKERS);
                return 2;
            }
        } else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
            if (first_topic == argc) first_topic = i;
            i++;
        } else {
            fprintf(stderr, "usage: sl_mockcluster [--brokers N] [--topic NAME:PARTITIONS]...\n");
            return 2;
        }
    }

    c.host = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    if (!c.host) {
        fprintf(stderr, "sl_mockcluster: %s\n", err);
        return 1;
    }
    c.mc = rd_kafka_mock_cluster_new(c.host, c.nbrokers);
    if (!c.mc) {
        fprintf(stderr, "sl_mockcluster: rd_kafka_mock_cluster_new failed\n");
        return 1;
    }
    /* Topics after --brokers is known, whatever the argument order. */
    for (int i = first_topic; i < argc; i++)
        if (!strcmp(argv[i], "--topic") && !topic_arg(&c, argv[++i])) return 2;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(c.mc), err,
                          sizeof err) != RD_KAFKA_CONF_OK ||
        !(c.client = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err))) {
        fprintf(stderr, "sl_mockcluster: client: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (!print_ready(&c)) {
        fprintf(stderr, "sl_mockcluster: cluster did not answer Metadata with %d brokers\n",
                c.nbrokers);
        rc = 1;
    }
    char line[LINE_MAX_LEN];
    while (rc == 0 && !g_stop) {
        int r = read_line(line, sizeof line);
        if (r == 0) break;
        if (r < 0)
            printf("error line longer than %d characters\n", LINE_MAX_LEN - 2);
        else if (!run_command(&c, line))
            break;
        if (ferror(stdout)) break;
    }
    rd_kafka_destroy(c.client);
    /* The mock lives in the host handle's thread: destroy it first. */
    rd_kafka_mock_cluster_destroy(c.mc);
    rd_kafka_destroy(c.host);
    return rc;
}
