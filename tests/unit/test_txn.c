/* The transaction coordinator (src/txn/sl_txn.h) and its log (src/txn/sl_txnlog.h), no broker:
 * every transition and refusal of the state machine, fencing, epoch exhaustion, timeouts with an
 * injected clock, replay equal to the live state after random operations, torn tails cut at
 * every byte, corruption in the middle refused, rewrites, and the decoder's limits. Directories
 * live in /dev/shm when it exists (fsync is free there: the suite stays fast); durability
 * itself is the file system's, shown by the kill -9 interop tests once wired. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "keys_env.h"
#include "sl_test.h"
#include "txn/sl_txn.h"
#include "txn/sl_txnlog.h"

#define S(x) sl_str_c(x)

typedef struct pidgen {
    int64_t next;
    int calls;
} pidgen;

static sl_err gen_pid(void *ctx, int64_t *out) {
    pidgen *g = ctx;
    g->calls++;
    *out = g->next++;
    return SL_OK;
}

static char *tdir(void) {
    struct stat st;
    char *t = malloc(96);
    if (!t) return NULL;
    snprintf(t, 96, "%s/sl_txn_XXXXXX", stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

static sl_txn *open_c(const char *dir, pidgen *g, int64_t rewrite_min) {
    sl_txn_config cfg = {.max_timeout_ms = 60000,
                         .id_expiration_ms = 1000000,
                         .rewrite_min_records = rewrite_min,
                         .alloc_pid = gen_pid,
                         .alloc_ctx = g};
    sl_txn *c = NULL;
    char err[512];
    if (sl_txn_open(dir, &cfg, &c, err, sizeof err)) {
        fprintf(stderr, "  open: %s\n", err);
        return NULL;
    }
    return c;
}

static sl_err open_err(const char *dir, char *err, size_t elen) {
    pidgen g = {.next = 1};
    sl_txn_config cfg = {.alloc_pid = gen_pid, .alloc_ctx = &g};
    sl_txn *c = NULL;
    sl_err e = sl_txn_open(dir, &cfg, &c, err, elen);
    sl_txn_close(c);
    return e;
}

/* The live state as text, one canonical record per id, sorted: equal dumps = equal states. */
typedef struct dump {
    char **v;
    size_t n;
} dump;

static void dump_one(void *ctx, const sl_txn_rec *r) {
    dump *d = ctx;
    uint8_t *b;
    size_t len;
    if (sl_txnlog_encode(r, &b, &len)) abort();
    char *s = malloc(2 * len + r->tid_len + 2);
    if (!s) abort();
    size_t k = (size_t)sprintf(s, "%s=", r->tid);
    for (size_t i = 0; i < len; i++) k += (size_t)sprintf(s + k, "%02x", b[i]);
    free(b);
    char **nv = realloc(d->v, (d->n + 1) * sizeof *nv);
    if (!nv) abort();
    d->v = nv;
    d->v[d->n++] = s;
}

static int cmp_s(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *state_text(sl_txn *c) {
    dump d = {0};
    sl_txn_foreach(c, dump_one, &d);
    if (d.n) qsort(d.v, d.n, sizeof *d.v, cmp_s);
    size_t total = 1;
    for (size_t i = 0; i < d.n; i++) total += strlen(d.v[i]) + 1;
    char *out = malloc(total), *p = out;
    if (!out) abort();
    for (size_t i = 0; i < d.n; i++) {
        p += sprintf(p, "%s\n", d.v[i]);
        free(d.v[i]);
    }
    *p = 0;
    free(d.v);
    return out;
}

static uint8_t *read_all(const char *path, size_t *n) {
    char *p = NULL;
    size_t len = 0;
    if (sl_file_read(path, 64u << 20, &p, &len)) return NULL;
    *n = len;
    return (uint8_t *)p;
}

static bool write_file(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return false;
    bool ok = sl_write_all(fd, p, n);
    close(fd);
    return ok;
}

static const sl_txn_rec *desc(sl_txn *c, const char *tid) {
    const sl_txn_rec *r = NULL;
    return sl_txn_describe(c, S(tid), &r) ? NULL : r;
}

/* ---- the state machine ---- */

SL_TEST(txn_state_machine_table) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1000};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    int64_t pid;
    int16_t ep;
    sl_txn_jobs j;
    sl_str t = S("app-1");
    /* Refusals before any state: bad id, timeout, half an expected pair. */
    CHECK_EQ(sl_txn_init_producer_id(c, S(""), 1000, -1, -1, 0, &pid, &ep, &j),
             SL_KAFKA_INVALID_REQUEST);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 0, -1, -1, 0, &pid, &ep, &j),
             SL_KAFKA_INVALID_TRANSACTION_TIMEOUT);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 60001, -1, -1, 0, &pid, &ep, &j),
             SL_KAFKA_INVALID_TRANSACTION_TIMEOUT);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 1000, 5, -1, 0, &pid, &ep, &j),
             SL_KAFKA_INVALID_REQUEST);
    CHECK_EQ(sl_txn_count(c), 0);
    sl_txn_tp tp[2] = {{S("orders"), 0}, {S("orders"), 3}};
    CHECK_EQ(sl_txn_add_partitions(c, t, 1000, 0, tp, 2, 10), SL_KAFKA_INVALID_PRODUCER_ID_MAPPING);
    CHECK_EQ(sl_txn_end(c, t, 1000, 0, true, 10, &j), SL_KAFKA_INVALID_PRODUCER_ID_MAPPING);
    const sl_txn_rec *r = NULL;
    CHECK_EQ(sl_txn_describe(c, t, &r), SL_KAFKA_TRANSACTIONAL_ID_NOT_FOUND);

    /* (none) -> Empty */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 100, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 1000);
    CHECK_EQ(ep, 0);
    CHECK_EQ(j.n, 0);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_EMPTY && r->timeout_ms == 5000);
    CHECK_EQ(r->start_ms, -1);
    /* Empty: nothing to end */
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 110, &j), SL_KAFKA_INVALID_TXN_STATE);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 110, &j), SL_KAFKA_INVALID_TXN_STATE);
    CHECK_EQ(sl_txn_check_offsets(c, t, pid, ep, S("g")), SL_KAFKA_INVALID_TXN_STATE);
    /* Wrong producer, wrong epoch (older and newer) */
    CHECK_EQ(sl_txn_add_partitions(c, t, 999, ep, tp, 2, 120),
             SL_KAFKA_INVALID_PRODUCER_ID_MAPPING);
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, 1, tp, 2, 120), SL_KAFKA_PRODUCER_FENCED);
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, -1, S("g"), 120), SL_KAFKA_PRODUCER_FENCED);
    /* Bad partitions and groups */
    char longname[251];
    memset(longname, 'x', 250);
    longname[250] = 0;
    sl_txn_tp bad = {S(longname), 0};
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, &bad, 1, 120), SL_KAFKA_INVALID_TOPIC_EXCEPTION);
    bad = (sl_txn_tp){S("orders"), -1};
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, &bad, 1, 120),
             SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, ep, S(""), 120), SL_KAFKA_INVALID_GROUP_ID);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_EMPTY);

    /* Empty -> Ongoing; the start time is the first add's */
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, tp, 2, 200), 0);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_ONGOING && r->start_ms == 200);
    CHECK_EQ(r->nparts_total, 2);
    /* Already there: no write */
    int64_t recs = sl_txnlog_records(sl_txn_log(c));
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, &tp[1], 1, 210), 0);
    CHECK_EQ(sl_txnlog_records(sl_txn_log(c)), recs);
    CHECK_EQ(sl_txn_verify_partitions(c, t, pid, ep, tp, 2), 0);
    sl_txn_tp other = {S("ledger"), 1};
    CHECK_EQ(sl_txn_verify_partitions(c, t, pid, ep, &other, 1), SL_KAFKA_INVALID_TXN_STATE);
    /* Ongoing -> Ongoing: the set grows, sorted, the start time stays */
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, &other, 1, 220), 0);
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, ep, S("grp"), 230), 0);
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, ep, S("grp"), 231), 0);
    CHECK_EQ(sl_txn_check_offsets(c, t, pid, ep, S("grp")), 0);
    CHECK_EQ(sl_txn_check_offsets(c, t, pid, ep, S("other")), SL_KAFKA_INVALID_TXN_STATE);
    CHECK_EQ(sl_txn_check_offsets(c, t, pid, 7, S("grp")), SL_KAFKA_PRODUCER_FENCED);
    CHECK((r = desc(c, "app-1")) && r->start_ms == 200 && r->ntopics == 2 && r->ngroups == 1);
    CHECK(!strcmp(r->topics[0].name, "ledger") && !strcmp(r->topics[1].name, "orders"));
    CHECK_EQ(r->topics[1].parts[1], 3);

    /* Ongoing -> PrepareCommit: one job, the markers */
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 300, &j), 0);
    CHECK_EQ(j.n, 1);
    CHECK_EQ(j.v[0].state, SL_TXN_PREPARE_COMMIT);
    CHECK_EQ(j.v[0].pid, pid);
    CHECK_EQ(j.v[0].epoch, ep);
    CHECK_EQ(j.v[0].nparts_total, 3);
    CHECK(j.v[0].ngroups == 1 && !strcmp(j.v[0].groups[0], "grp"));
    sl_txn_jobs_free(&j);
    /* PrepareCommit refuses everything but a retry of the same end (concurrent) */
    CHECK_EQ(sl_txn_add_partitions(c, t, pid, ep, tp, 1, 310), SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, ep, S("g2"), 310), SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 310, &j), SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 310, &j), SL_KAFKA_INVALID_TXN_STATE);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 310, &pid, &ep, &j),
             SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(j.n, 0);
    pid = 1000;
    ep = 0;
    CHECK_EQ(sl_txn_complete(c, t, pid, 1, 320), SL_KAFKA_INVALID_TXN_STATE);
    /* PrepareCommit -> CompleteCommit; completing again is harmless */
    CHECK_EQ(sl_txn_complete(c, t, pid, ep, 330), 0);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_COMPLETE_COMMIT && r->ntopics == 0);
    CHECK_EQ(r->ngroups, 0);
    CHECK_EQ(sl_txn_complete(c, t, pid, ep, 331), 0);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 340, &j), 0); /* a retry of a finished commit */
    CHECK_EQ(j.n, 0);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 340, &j), SL_KAFKA_INVALID_TXN_STATE);

    /* CompleteCommit -> Ongoing -> PrepareAbort -> CompleteAbort */
    CHECK_EQ(sl_txn_add_offsets(c, t, pid, ep, S("grp"), 400), 0);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_ONGOING && r->start_ms == 400);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 410, &j), 0);
    CHECK(j.n == 1 && j.v[0].state == SL_TXN_PREPARE_ABORT && j.v[0].ngroups == 1);
    sl_txn_jobs_free(&j);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 411, &j), SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 411, &j), SL_KAFKA_INVALID_TXN_STATE);
    CHECK_EQ(sl_txn_complete(c, t, pid, ep, 420), 0);
    CHECK((r = desc(c, "app-1")) && r->state == SL_TXN_COMPLETE_ABORT);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, false, 430, &j), 0);
    CHECK_EQ(sl_txn_end(c, t, pid, ep, true, 430, &j), SL_KAFKA_INVALID_TXN_STATE);
    /* CompleteAbort -> Empty (epoch bump); CompleteAbort -> Ongoing is covered above for
     * CompleteCommit and below by the random sequence. */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 500, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 1000);
    CHECK_EQ(ep, 1);
    /* Empty -> Empty */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 6000, -1, -1, 510, &pid, &ep, &j), 0);
    CHECK_EQ(ep, 2);
    CHECK((r = desc(c, "app-1")) && r->timeout_ms == 6000);
    CHECK_EQ(g.calls, 1);
    CHECK(!strcmp(sl_txn_state_name(SL_TXN_PREPARE_COMMIT), "PrepareCommit"));
    CHECK_EQ(sl_txn_state_parse(S("CompleteAbort")), SL_TXN_COMPLETE_ABORT);
    CHECK_EQ(sl_txn_state_parse(S("Nope")), -1);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(txn_fencing_and_kip360) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 7};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    sl_str t = S("zombie");
    int64_t pa, pb;
    int16_t ea, eb;
    sl_txn_jobs j;
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 0, &pa, &ea, &j), 0);
    sl_txn_tp tp[] = {{S("a"), 0}, {S("b"), 1}};
    CHECK_EQ(sl_txn_add_partitions(c, t, pa, ea, tp, 2, 10), 0);
    /* A second instance: the ongoing transaction is fenced and aborted first */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 20, &pb, &eb, &j),
             SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(j.n, 1);
    CHECK_EQ(j.v[0].state, SL_TXN_PREPARE_ABORT);
    CHECK_EQ(j.v[0].epoch, ea + 1); /* the markers carry the fencing epoch */
    CHECK_EQ(j.v[0].nparts_total, 2);
    /* The zombie is refused everywhere */
    CHECK_EQ(sl_txn_add_partitions(c, t, pa, ea, tp, 1, 30), SL_KAFKA_PRODUCER_FENCED);
    sl_txn_jobs j2;
    CHECK_EQ(sl_txn_end(c, t, pa, ea, true, 30, &j2), SL_KAFKA_PRODUCER_FENCED);
    /* The retry waits until the markers are written */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 40, &pb, &eb, &j2),
             SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK_EQ(j2.n, 0);
    CHECK_EQ(sl_txn_complete(c, t, j.v[0].pid, j.v[0].epoch, 50), 0);
    sl_txn_jobs_free(&j);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 60, &pb, &eb, &j), 0);
    CHECK_EQ(pb, pa);
    CHECK_EQ(eb, ea + 2);
    CHECK_EQ(sl_txn_end(c, t, pa, ea, false, 70, &j), SL_KAFKA_PRODUCER_FENCED);
    /* KIP-360: the current producer resumes with its pair: bump, last epoch remembered */
    int64_t p2;
    int16_t e2;
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, pb, eb, 80, &p2, &e2, &j), 0);
    CHECK_EQ(p2, pb);
    CHECK_EQ(e2, eb + 1);
    CHECK_EQ(desc(c, "zombie")->last_epoch, eb);
    /* ... a retry of that call (answer lost) gets the same pair, no bump */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, pb, eb, 90, &p2, &e2, &j), 0);
    CHECK_EQ(e2, eb + 1);
    /* ... an older epoch, or another producer id, is a zombie */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, pb, ea, 95, &p2, &e2, &j),
             SL_KAFKA_PRODUCER_FENCED);
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, 12345, 0, 95, &p2, &e2, &j),
             SL_KAFKA_PRODUCER_FENCED);
    /* A producer that gives a pair for an id the coordinator does not know gets a fresh one */
    CHECK_EQ(sl_txn_init_producer_id(c, S("new"), 5000, 555, 3, 99, &p2, &e2, &j), 0);
    CHECK_EQ(e2, 0);
    CHECK(p2 != pb && p2 != 555);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* Writes a log holding one record for `tid` at `epoch` in `state`. */
static bool seed_log(const char *dir, const char *tid, int64_t pid, int16_t epoch, int state) {
    sl_txnlog *l = NULL;
    char err[256];
    if (sl_txnlog_open(dir, NULL, NULL, &l, err, sizeof err)) return false;
    sl_txn_rec r = {.tid = (char *)tid,
                    .tid_len = (uint16_t)strlen(tid),
                    .state = (uint8_t)state,
                    .epoch = epoch,
                    .last_epoch = -1,
                    .pid = pid,
                    .last_pid = pid,
                    .timeout_ms = 5000,
                    .start_ms = -1,
                    .update_ms = 1};
    sl_err e = sl_txnlog_append(l, &r);
    sl_txnlog_close(l);
    return e == SL_OK;
}

SL_TEST(txn_epoch_exhaustion) {
    char *dir = tdir();
    CHECK(dir);
    CHECK(seed_log(dir, "old", 40, 32765, SL_TXN_COMPLETE_COMMIT));
    pidgen g = {.next = 100};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    sl_str t = S("old");
    int64_t pid;
    int16_t ep;
    sl_txn_jobs j;
    /* 32766 is still handed out (it is the last one that leaves a spare for a fence) */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 10, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 40);
    CHECK_EQ(ep, 32766);
    CHECK_EQ(g.calls, 0);
    /* then a new producer id at epoch 0, the old one remembered */
    CHECK_EQ(sl_txn_init_producer_id(c, t, 5000, -1, -1, 20, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 100);
    CHECK_EQ(ep, 0);
    CHECK_EQ(desc(c, "old")->last_pid, 40);
    CHECK_EQ(g.calls, 1);
    sl_txn_close(c);

    /* The fence at 32766 takes the spare epoch; the retry rotates. */
    char *dir2 = tdir();
    CHECK(dir2);
    CHECK(seed_log(dir2, "f", 50, 32766, SL_TXN_EMPTY));
    c = open_c(dir2, &g, 0);
    CHECK(c);
    sl_txn_tp tp = {S("x"), 0};
    CHECK_EQ(sl_txn_add_partitions(c, S("f"), 50, 32766, &tp, 1, 10), 0);
    CHECK_EQ(sl_txn_init_producer_id(c, S("f"), 5000, -1, -1, 20, &pid, &ep, &j),
             SL_KAFKA_CONCURRENT_TRANSACTIONS);
    CHECK(j.n == 1 && j.v[0].epoch == 32767 && j.v[0].pid == 50);
    CHECK_EQ(sl_txn_complete(c, S("f"), 50, 32767, 30), 0);
    sl_txn_jobs_free(&j);
    CHECK_EQ(sl_txn_init_producer_id(c, S("f"), 5000, -1, -1, 40, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 101);
    CHECK_EQ(ep, 0);
    sl_txn_close(c);

    /* KIP-360 across a rotation: the producer at (60, 32766) asks; it gets a new id, and its
     * retry with the old pair gets the same answer (no second rotation). */
    char *dir3 = tdir();
    CHECK(dir3);
    CHECK(seed_log(dir3, "k", 60, 32766, SL_TXN_COMPLETE_ABORT));
    c = open_c(dir3, &g, 0);
    CHECK(c);
    CHECK_EQ(sl_txn_init_producer_id(c, S("k"), 5000, 60, 32766, 10, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 102);
    CHECK_EQ(ep, 0);
    CHECK_EQ(desc(c, "k")->last_epoch, 32766);
    CHECK_EQ(sl_txn_init_producer_id(c, S("k"), 5000, 60, 32766, 20, &pid, &ep, &j), 0);
    CHECK_EQ(pid, 102);
    CHECK_EQ(ep, 0);
    CHECK_EQ(g.calls, 3);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    sl_t_rm_rf(dir2);
    sl_t_rm_rf(dir3);
    free(dir);
    free(dir2);
    free(dir3);
}

SL_TEST(txn_timeout_and_id_expiry) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    int64_t pid;
    int16_t ep;
    sl_txn_jobs j;
    CHECK_EQ(sl_txn_init_producer_id(c, S("slow"), 5000, -1, -1, 0, &pid, &ep, &j), 0);
    CHECK_EQ(sl_txn_init_producer_id(c, S("idle"), 5000, -1, -1, 0, &pid, &ep, &j), 0);
    sl_txn_tp tp = {S("t"), 2};
    CHECK_EQ(sl_txn_add_partitions(c, S("slow"), 1, 0, &tp, 1, 1000), 0);
    /* Due when start + timeout < now, not before */
    CHECK_EQ(sl_txn_expire(c, 6000, &j), SL_OK);
    CHECK_EQ(j.n, 0);
    CHECK_EQ(desc(c, "slow")->state, SL_TXN_ONGOING);
    CHECK_EQ(sl_txn_expire(c, 6001, &j), SL_OK);
    CHECK_EQ(j.n, 1);
    CHECK(!strcmp(j.v[0].tid, "slow") && j.v[0].state == SL_TXN_PREPARE_ABORT);
    CHECK_EQ(j.v[0].epoch, 1); /* fenced: the late producer cannot commit it */
    sl_txn_jobs j2;
    CHECK_EQ(sl_txn_end(c, S("slow"), 1, 0, true, 6002, &j2), SL_KAFKA_PRODUCER_FENCED);
    CHECK_EQ(sl_txn_complete(c, S("slow"), 1, 1, 6003), 0);
    sl_txn_jobs_free(&j);
    CHECK_EQ(desc(c, "slow")->state, SL_TXN_COMPLETE_ABORT);
    /* Ids idle for transactional.id.expiration.ms are written Dead and forgotten */
    CHECK_EQ(sl_txn_expire(c, 999999, &j), SL_OK);
    CHECK_EQ(sl_txn_count(c), 2);
    CHECK_EQ(sl_txn_expire(c, 1000000, &j), SL_OK);
    CHECK_EQ(j.n, 0);
    CHECK(!desc(c, "idle"));
    CHECK(desc(c, "slow"));
    CHECK_EQ(sl_txn_expire(c, 1006003, &j), SL_OK);
    CHECK_EQ(sl_txn_count(c), 0);
    sl_txn_close(c);
    /* ... and stay forgotten after a restart */
    c = open_c(dir, &g, 0);
    CHECK(c);
    CHECK_EQ(sl_txn_count(c), 0);
    const sl_txn_rec *r;
    CHECK_EQ(sl_txn_describe(c, S("idle"), &r), SL_KAFKA_TRANSACTIONAL_ID_NOT_FOUND);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(txn_recovery_pending_and_ongoing) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    int64_t p1, p2;
    int16_t e1, e2;
    sl_txn_jobs j;
    sl_txn_tp tp[] = {{S("pay"), 0}, {S("pay"), 1}};
    CHECK_EQ(sl_txn_init_producer_id(c, S("c"), 5000, -1, -1, 0, &p1, &e1, &j), 0);
    CHECK_EQ(sl_txn_init_producer_id(c, S("o"), 5000, -1, -1, 0, &p2, &e2, &j), 0);
    CHECK_EQ(sl_txn_add_partitions(c, S("c"), p1, e1, tp, 2, 100), 0);
    CHECK_EQ(sl_txn_add_partitions(c, S("o"), p2, e2, tp, 1, 200), 0);
    CHECK_EQ(sl_txn_end(c, S("c"), p1, e1, true, 300, &j), 0);
    sl_txn_jobs_free(&j);
    sl_txn_close(c); /* a crash before the markers were written */
    c = open_c(dir, &g, 0);
    CHECK(c);
    CHECK_EQ(sl_txn_pending(c, &j), SL_OK);
    CHECK_EQ(j.n, 1);
    CHECK(!strcmp(j.v[0].tid, "c") && j.v[0].state == SL_TXN_PREPARE_COMMIT);
    CHECK_EQ(j.v[0].nparts_total, 2);
    CHECK_EQ(j.v[0].pid, p1);
    CHECK_EQ(sl_txn_complete(c, S("c"), j.v[0].pid, j.v[0].epoch, 400), 0);
    sl_txn_jobs_free(&j);
    CHECK_EQ(sl_txn_pending(c, &j), SL_OK);
    CHECK_EQ(j.n, 0);
    /* The ongoing one kept its start and timeout: it expires on the old schedule */
    const sl_txn_rec *r = desc(c, "o");
    CHECK(r && r->state == SL_TXN_ONGOING && r->start_ms == 200 && r->timeout_ms == 5000);
    CHECK_EQ(sl_txn_expire(c, 5200, &j), SL_OK);
    CHECK_EQ(j.n, 0);
    CHECK_EQ(sl_txn_expire(c, 5201, &j), SL_OK);
    CHECK_EQ(j.n, 1);
    sl_txn_jobs_free(&j);
    CHECK(sl_txn_max_pid(c) >= p2);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* Real fault injection (root is not exempt from RLIMIT_FSIZE): the append is cut short after a
 * few bytes. The answer is retriable, the state unchanged, the partial record cut, and the log
 * refuses further changes until reopened, which replays only what was acknowledged. */
SL_TEST(txn_append_failure_changes_nothing) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    int64_t p;
    int16_t e;
    sl_txn_jobs j;
    sl_txn_tp tp = {S("t"), 0};
    CHECK_EQ(sl_txn_init_producer_id(c, S("f"), 5000, -1, -1, 0, &p, &e, &j), 0);
    CHECK_EQ(sl_txn_add_partitions(c, S("f"), p, e, &tp, 1, 10), 0);
    char *before = state_text(c);
    int64_t size = sl_txnlog_bytes(sl_txn_log(c));
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim.rlim_cur = (rlim_t)size + 10;
    lim.rlim_max = old.rlim_max;
    int set = setrlimit(RLIMIT_FSIZE, &lim);
    int16_t k1 = sl_txn_end(c, S("f"), p, e, true, 20, &j);
    int16_t k2 = sl_txn_add_offsets(c, S("f"), p, e, S("grp"), 30);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK_EQ(set, 0);
    CHECK_EQ(k1, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    CHECK_EQ(j.n, 0);
    CHECK_EQ(k2, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    CHECK(sl_txnlog_failed(sl_txn_log(c)));
    /* even with the disk back, this instance refuses: its file may hold what fsync lost */
    CHECK_EQ(sl_txn_end(c, S("f"), p, e, true, 40, &j), SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    char *now = state_text(c);
    CHECK(!strcmp(before, now));
    free(now);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, SL_TXNLOG_FILE);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == size);
    sl_txn_close(c);
    c = open_c(dir, &g, 0);
    CHECK(c);
    now = state_text(c);
    CHECK(!strcmp(before, now));
    free(now);
    CHECK_EQ(sl_txn_end(c, S("f"), p, e, true, 50, &j), 0);
    CHECK_EQ(j.n, 1);
    sl_txn_jobs_free(&j);
    free(before);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* ---- replay ---- */

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct actor {
    char tid[16];
    int64_t pid;
    int16_t ep;
} actor;

/* One random operation; results are not checked (any answer is fine), only that the state it
 * leaves is what replay rebuilds. */
static void random_op(sl_txn *c, actor *a, int na, uint64_t *s, int64_t *now) {
    actor *x = &a[rnd(s) % (uint64_t)na];
    sl_str t = S(x->tid);
    sl_txn_jobs j;
    *now += (int64_t)(rnd(s) % 700);
    static const char *topics[] = {"alpha", "beta", "gamma"};
    switch (rnd(s) % 8) {
    case 0: {
        int64_t p;
        int16_t e;
        if (!sl_txn_init_producer_id(c, t, 1000 + (int32_t)(rnd(s) % 3000), -1, -1, *now, &p, &e,
                                     &j)) {
            x->pid = p;
            x->ep = e;
        }
        for (size_t i = 0; i < j.n; i++)
            (void)sl_txn_complete(c, S(j.v[i].tid), j.v[i].pid, j.v[i].epoch, *now);
        sl_txn_jobs_free(&j);
        break;
    }
    case 1:
    case 2: {
        sl_txn_tp tp[3];
        size_t n = 1 + rnd(s) % 3;
        for (size_t i = 0; i < n; i++)
            tp[i] = (sl_txn_tp){S(topics[rnd(s) % 3]), (int32_t)(rnd(s) % 5)};
        (void)sl_txn_add_partitions(c, t, x->pid, x->ep, tp, n, *now);
        break;
    }
    case 3:
        (void)sl_txn_add_offsets(c, t, x->pid, x->ep, S(rnd(s) % 2 ? "g1" : "g2"), *now);
        break;
    case 4:
    case 5:
        (void)sl_txn_end(c, t, x->pid, x->ep, rnd(s) % 2, *now, &j);
        /* sometimes the markers "crash" before completion */
        for (size_t i = 0; i < j.n; i++)
            if (rnd(s) % 3) (void)sl_txn_complete(c, t, j.v[i].pid, j.v[i].epoch, *now);
        sl_txn_jobs_free(&j);
        break;
    case 6:
        (void)sl_txn_expire(c, *now, &j);
        sl_txn_jobs_free(&j);
        break;
    default:
        if (sl_txn_pending(c, &j) == SL_OK)
            for (size_t i = 0; i < j.n; i++)
                (void)sl_txn_complete(c, S(j.v[i].tid), j.v[i].pid, j.v[i].epoch, *now);
        sl_txn_jobs_free(&j);
        break;
    }
}

SL_TEST(txn_replay_equals_live_random) {
    for (uint64_t seed = 1; seed <= 4; seed++) {
        char *dir = tdir();
        CHECK(dir);
        pidgen g = {.next = 1};
        /* seeds 3 and 4 rewrite often, so replay also starts from rewritten files */
        sl_txn *c = open_c(dir, &g, seed >= 3 ? 12 : 100000);
        CHECK(c);
        actor a[5];
        for (int i = 0; i < 5; i++) {
            snprintf(a[i].tid, sizeof a[i].tid, "tx-%d", i);
            a[i].pid = -1;
            a[i].ep = -1;
        }
        uint64_t s = seed * 0x9E3779B97F4A7C15ull;
        int64_t now = 1;
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 120; i++) random_op(c, a, 5, &s, &now);
            char *live = state_text(c);
            int64_t recs = sl_txnlog_records(sl_txn_log(c));
            sl_txn_close(c);
            c = open_c(dir, &g, seed >= 3 ? 12 : 100000);
            CHECK(c);
            char *replayed = state_text(c);
            int same = !strcmp(live, replayed);
            if (!same)
                fprintf(stderr, "  seed %d round %d:\n%s---\n%s", (int)seed, round, live, replayed);
            free(live);
            free(replayed);
            CHECK(same);
            CHECK_EQ(sl_txnlog_records(sl_txn_log(c)), recs);
            if (seed >= 3) CHECK(recs < 12 + 2 * 5 + 8);
        }
        sl_txn_close(c);
        sl_t_rm_rf(dir);
        free(dir);
    }
}

/* A log with a few transactions; returns the state text before and after the last append and
 * the file size before it. */
static bool build_log(const char *dir, char **before, char **after, size_t *size_before) {
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 0);
    if (!c) return false;
    int64_t p;
    int16_t e;
    sl_txn_jobs j;
    sl_txn_tp tp[] = {{S("ledger"), 0}, {S("debits"), 4}};
    bool ok = !sl_txn_init_producer_id(c, S("a"), 5000, -1, -1, 10, &p, &e, &j) &&
              !sl_txn_add_partitions(c, S("a"), p, e, tp, 2, 20) &&
              !sl_txn_init_producer_id(c, S("b"), 5000, -1, -1, 30, &p, &e, &j) &&
              !sl_txn_add_offsets(c, S("a"), 1, 0, S("grp"), 40);
    *before = state_text(c);
    *size_before = (size_t)sl_txnlog_bytes(sl_txn_log(c));
    ok = ok && !sl_txn_end(c, S("a"), 1, 0, true, 50, &j);
    sl_txn_jobs_free(&j);
    *after = state_text(c);
    sl_txn_close(c);
    return ok;
}

SL_TEST(txn_torn_tail_every_byte) {
    char *dir = tdir(), *dir2 = tdir();
    CHECK(dir && dir2);
    char *before, *after;
    size_t cut0;
    CHECK(build_log(dir, &before, &after, &cut0));
    char path[300], path2[300];
    snprintf(path, sizeof path, "%s/%s", dir, SL_TXNLOG_FILE);
    snprintf(path2, sizeof path2, "%s/%s", dir2, SL_TXNLOG_FILE);
    size_t n;
    uint8_t *file = read_all(path, &n);
    CHECK(file && n > cut0 + SL_TXNLOG_FRAME);
    pidgen g = {.next = 1};
    sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_ERROR); /* one "cutting a torn tail" line per cut otherwise */
    for (size_t cut = cut0; cut <= n; cut++) {
        CHECK(write_file(path2, file, cut));
        sl_txn *c = open_c(dir2, &g, 0);
        CHECK(c);
        char *st = state_text(c);
        int ok = !strcmp(st, cut == n ? after : before);
        free(st);
        /* the torn bytes are gone from the file, so the next append follows good records */
        CHECK_EQ(sl_txnlog_bytes(sl_txn_log(c)), cut == n ? n : cut0);
        sl_txn_close(c);
        if (!ok) fprintf(stderr, "  cut at %zu of %zu\n", cut, n);
        CHECK(ok);
        struct stat sb;
        CHECK(stat(path2, &sb) == 0 && (size_t)sb.st_size == (cut == n ? n : cut0));
    }
    /* A complete last record whose bytes never reached the disk (zeros, or a damaged CRC) is
     * torn too; so is a tail of zeros (the file grew, the data did not land). */
    uint8_t *z = malloc(n + 4096);
    CHECK(z);
    memcpy(z, file, n);
    memset(z + cut0 + SL_TXNLOG_FRAME, 0, n - cut0 - SL_TXNLOG_FRAME);
    CHECK(write_file(path2, z, n));
    sl_txn *c = open_c(dir2, &g, 0);
    CHECK(c);
    char *st = state_text(c);
    int ok = !strcmp(st, before);
    free(st);
    sl_txn_close(c);
    CHECK(ok);
    memcpy(z, file, n);
    memset(z + n, 0, 4096);
    CHECK(write_file(path2, z, n + 4096));
    c = open_c(dir2, &g, 0);
    CHECK(c);
    st = state_text(c);
    ok = !strcmp(st, after);
    free(st);
    sl_txn_close(c);
    CHECK(ok);
    sl_log_set_level(lvl);
    free(z);
    free(file);
    free(before);
    free(after);
    sl_t_rm_rf(dir);
    sl_t_rm_rf(dir2);
    free(dir);
    free(dir2);
}

SL_TEST(txn_corrupt_middle_refused) {
    char *dir = tdir();
    CHECK(dir);
    char *before, *after;
    size_t cut0;
    CHECK(build_log(dir, &before, &after, &cut0));
    free(before);
    free(after);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, SL_TXNLOG_FILE);
    size_t n;
    uint8_t *file = read_all(path, &n);
    CHECK(file);
    uint8_t *m = malloc(n);
    CHECK(m);
    size_t first_len = SL_TXNLOG_FRAME + sl_get_be32(file + SL_TXNLOG_HDR);
    size_t second = SL_TXNLOG_HDR + first_len;
    char err[600], want[400];
    /* a flipped bit in the second record's body */
    memcpy(m, file, n);
    m[second + SL_TXNLOG_FRAME + 20] ^= 0x10;
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    snprintf(want, sizeof want, "%s/%s", dir, SL_TXNLOG_FILE);
    CHECK(strstr(err, want));
    snprintf(want, sizeof want, "offset %zu", second);
    CHECK(strstr(err, want));
    /* the file is left as it was for the operator: nothing cut */
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (size_t)sb.st_size == n);
    /* a damaged length in the middle */
    memcpy(m, file, n);
    m[second] = 0xff;
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    CHECK(strstr(err, want));
    /* a length damaged to run past the end: not a torn tail, since good records follow */
    memcpy(m, file, n);
    sl_be32(m + second, (uint32_t)(n - second));
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    CHECK(strstr(err, want));
    /* a good CRC over a body that does not decode (a bug or an edit), then an unknown version */
    memcpy(m, file, n);
    m[second + SL_TXNLOG_FRAME + 1] = 9; /* state 9 */
    sl_be32(m + second + 4, sl_crc32c(sl_crc32c(0, m + second, 4), m + second + SL_TXNLOG_FRAME,
                                      sl_get_be32(m + second)));
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    m[second + SL_TXNLOG_FRAME + 1] = 0;
    m[second + SL_TXNLOG_FRAME] = 2; /* body version 2 */
    sl_be32(m + second + 4, sl_crc32c(sl_crc32c(0, m + second, 4), m + second + SL_TXNLOG_FRAME,
                                      sl_get_be32(m + second)));
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_EVERSION);
    CHECK(strstr(err, want));
    /* a damaged file header */
    memcpy(m, file, n);
    m[1] ^= 1;
    CHECK(write_file(path, m, n));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    CHECK(write_file(path, file, 5));
    CHECK_EQ(open_err(dir, err, sizeof err), SL_ECORRUPT);
    free(m);
    free(file);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(txn_rewrite_and_replay) {
    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 1000000); /* by hand first */
    CHECK(c);
    int64_t p;
    int16_t e;
    sl_txn_jobs j;
    CHECK_EQ(sl_txn_init_producer_id(c, S("w"), 5000, -1, -1, 0, &p, &e, &j), 0);
    CHECK_EQ(sl_txn_init_producer_id(c, S("gone"), 5000, -1, -1, 0, &p, &e, &j), 0);
    for (int i = 0; i < 40; i++) {
        sl_txn_tp tp = {S("t"), i};
        CHECK_EQ(sl_txn_add_partitions(c, S("w"), 1, 0, &tp, 1, 10 + i), 0);
        CHECK_EQ(sl_txn_end(c, S("w"), 1, 0, i % 2, 10 + i, &j), 0);
        CHECK_EQ(sl_txn_complete(c, S("w"), 1, 0, 10 + i), 0);
        sl_txn_jobs_free(&j);
    }
    CHECK_EQ(sl_txn_expire(c, 1000000 + 5, &j), SL_OK); /* "gone" dies (Dead record) */
    CHECK_EQ(j.n, 0);
    CHECK_EQ(
        sl_txn_add_partitions(c, S("w"), 1, 0, (sl_txn_tp[]){{S("t"), 1}, {S("u"), 2}}, 2, 1000010),
        0);
    CHECK_EQ(sl_txn_count(c), 1);
    int64_t bytes = sl_txnlog_bytes(sl_txn_log(c));
    CHECK_EQ(sl_txnlog_records(sl_txn_log(c)), 2 + 120 + 1 + 1);
    char *live = state_text(c);
    CHECK_EQ(sl_txn_rewrite(c), SL_OK);
    CHECK_EQ(sl_txnlog_records(sl_txn_log(c)), 1);
    CHECK(sl_txnlog_bytes(sl_txn_log(c)) < bytes / 20);
    /* appends continue into the new file */
    CHECK_EQ(sl_txn_end(c, S("w"), 1, 0, true, 1000020, &j), 0);
    sl_txn_jobs_free(&j);
    char *live2 = state_text(c);
    sl_txn_close(c);
    char path[300];
    snprintf(path, sizeof path, "%s/.%s.tmp", dir, SL_TXNLOG_FILE);
    CHECK(write_file(path, (const uint8_t *)"half a rewrite", 14)); /* a crash mid-rewrite */
    c = open_c(dir, &g, 1000000);
    CHECK(c);
    char *replayed = state_text(c);
    CHECK(!strcmp(live2, replayed));
    CHECK(strcmp(live, live2));
    CHECK_EQ(sl_txnlog_records(sl_txn_log(c)), 2);
    CHECK(access(path, F_OK) != 0); /* the leftover is removed */
    sl_txn_close(c);
    free(live);
    free(live2);
    free(replayed);
    /* automatic: with a low threshold the file never holds much more than the live ids */
    c = open_c(dir, &g, 10);
    CHECK(c);
    for (int i = 0; i < 30; i++) {
        int64_t pp;
        int16_t ee;
        CHECK_EQ(sl_txn_init_producer_id(c, S("w2"), 5000, -1, -1, 1000030 + i, &pp, &ee, &j), 0);
        CHECK(sl_txnlog_records(sl_txn_log(c)) <= 10);
    }
    live = state_text(c);
    sl_txn_close(c);
    c = open_c(dir, &g, 10);
    CHECK(c);
    replayed = state_text(c);
    CHECK(!strcmp(live, replayed));
    free(live);
    free(replayed);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* ---- limits ---- */

/* A body with the fixed fields of a valid record, id "t", and the rest from `tail`. */
static size_t body_with(uint8_t *b, const uint8_t *tail, size_t tn) {
    memset(b, 0, 44);
    b[0] = 1;              /* version */
    b[1] = SL_TXN_ONGOING; /* state */
    sl_be64(b + 4, 5);     /* pid */
    sl_be64(b + 12, 5);    /* last pid */
    sl_be32(b + 24, 1000); /* timeout */
    sl_be64(b + 28, 1);    /* start */
    sl_be64(b + 36, 1);    /* update */
    b[44] = 0;
    b[45] = 1;
    b[46] = 't';
    memcpy(b + 47, tail, tn);
    return 47 + tn;
}

SL_TEST(txn_limits_refused_before_allocating) {
    /* Huge counts in small bodies: refused from the bytes left, never allocated (an allocation
     * of that size would abort under ASan). */
    uint8_t b[256];
    sl_txn_rec r;
    static const uint8_t huge_topics[] = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    CHECK_EQ(sl_txnlog_decode(b, body_with(b, huge_topics, 8), &r), SL_ECORRUPT);
    static const uint8_t huge_parts[] = {0,    0, 0, 1, 0, 1, 'x', 0x7f, 0xff, 0xff,
                                         0xff, 0, 0, 0, 0, 0, 0,   0,    0};
    CHECK_EQ(sl_txnlog_decode(b, body_with(b, huge_parts, sizeof huge_parts), &r), SL_ECORRUPT);
    static const uint8_t huge_groups[] = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    CHECK_EQ(sl_txnlog_decode(b, body_with(b, huge_groups, 8), &r), SL_ECORRUPT);
    static const uint8_t ok_tail[] = {0, 0, 0, 1, 0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0};
    size_t n = body_with(b, ok_tail, sizeof ok_tail);
    CHECK_EQ(sl_txnlog_decode(b, n, &r), SL_OK);
    CHECK(r.ntopics == 1 && r.topics[0].parts[0] == 3 && !strcmp(r.tid, "t"));
    sl_txn_rec_free(&r);
    CHECK_EQ(sl_txnlog_decode(b, n - 1, &r), SL_ECORRUPT);
    b[n] = 0;
    CHECK_EQ(sl_txnlog_decode(b, n + 1, &r), SL_ECORRUPT); /* trailing byte */
    /* 101 groups: over SL_TXN_GROUPS_MAX even when the bytes are there */
    uint8_t big[1024];
    uint8_t tail[4 + 4 + 101 * 4];
    memset(tail, 0, 4);
    sl_be32(tail + 4, 101);
    for (int i = 0; i < 101; i++) {
        tail[8 + 4 * i] = 0;
        tail[9 + 4 * i] = 2;
        tail[10 + 4 * i] = (uint8_t)('a' + i / 26);
        tail[11 + 4 * i] = (uint8_t)('a' + i % 26);
    }
    CHECK_EQ(sl_txnlog_decode(big, body_with(big, tail, sizeof tail), &r), SL_ECORRUPT);
    sl_be32(tail + 4, 100);
    CHECK_EQ(sl_txnlog_decode(big, body_with(big, tail, sizeof tail - 4), &r), SL_OK);
    sl_txn_rec_free(&r);
    /* A 250-byte topic name, an empty id, a NUL inside a name, partitions out of order */
    uint8_t tn[4 + 2 + 250 + 8 + 4];
    sl_be32(tn, 1);
    sl_be16(tn + 4, 250);
    memset(tn + 6, 'n', 250);
    sl_be32(tn + 256, 1);
    sl_be32(tn + 260, 0);
    sl_be32(tn + 264, 0);
    CHECK_EQ(sl_txnlog_decode(big, body_with(big, tn, sizeof tn), &r), SL_ECORRUPT);
    sl_be16(tn + 4, 249);
    memmove(tn + 255, tn + 256, 12); /* the same record with a 249-byte name: accepted */
    CHECK_EQ(sl_txnlog_decode(big, body_with(big, tn, sizeof tn - 1), &r), SL_OK);
    sl_txn_rec_free(&r);
    n = body_with(b, ok_tail, sizeof ok_tail);
    b[46] = 0;
    CHECK_EQ(sl_txnlog_decode(b, n, &r), SL_ECORRUPT);
    static const uint8_t unordered[] = {0, 0, 0, 1, 0, 1, 'x', 0, 0, 0, 2, 0,
                                        0, 0, 3, 0, 0, 0, 3,   0, 0, 0, 0};
    CHECK_EQ(sl_txnlog_decode(b, body_with(b, unordered, sizeof unordered), &r), SL_ECORRUPT);
    /* 100001 partitions in one transaction: the decoder and the coordinator refuse it */
    size_t np = SL_TXN_PARTITIONS_MAX + 1;
    size_t bl = 47 + 4 + 2 + 1 + 4 + 4 * np + 4;
    uint8_t *pb = malloc(bl);
    CHECK(pb);
    uint8_t *t = malloc(bl);
    CHECK(t);
    sl_be32(t, 1);
    sl_be16(t + 4, 1);
    t[6] = 'p';
    sl_be32(t + 7, (uint32_t)np);
    for (size_t i = 0; i < np; i++) sl_be32(t + 11 + 4 * i, (uint32_t)i);
    sl_be32(t + 11 + 4 * np, 0);
    CHECK_EQ(sl_txnlog_decode(pb, body_with(pb, t, bl - 47), &r), SL_ECORRUPT);
    sl_be32(t + 7, (uint32_t)(np - 1));
    memmove(t + 11 + 4 * (np - 1), t + 11 + 4 * np, 4);
    CHECK_EQ(sl_txnlog_decode(pb, body_with(pb, t, bl - 47 - 4), &r), SL_OK);
    CHECK_EQ(r.nparts_total, SL_TXN_PARTITIONS_MAX);
    sl_txn_rec_free(&r);
    free(t);
    free(pb);

    char *dir = tdir();
    CHECK(dir);
    pidgen g = {.next = 1};
    sl_txn *c = open_c(dir, &g, 0);
    CHECK(c);
    int64_t p;
    int16_t e;
    sl_txn_jobs j;
    CHECK_EQ(sl_txn_init_producer_id(c, S("lim"), 5000, -1, -1, 0, &p, &e, &j), 0);
    sl_txn_tp *tps = malloc(np * sizeof *tps);
    CHECK(tps);
    for (size_t i = 0; i < np; i++) tps[i] = (sl_txn_tp){S("p"), (int32_t)i};
    CHECK_EQ(sl_txn_add_partitions(c, S("lim"), p, e, tps, np, 1), SL_KAFKA_INVALID_REQUEST);
    CHECK_EQ(sl_txn_add_partitions(c, S("lim"), p, e, tps, np - 1, 1), 0);
    CHECK_EQ(sl_txn_add_partitions(c, S("lim"), p, e, tps + 1, np - 1, 1),
             SL_KAFKA_INVALID_REQUEST); /* the union would be one over */
    CHECK_EQ(desc(c, "lim")->nparts_total, SL_TXN_PARTITIONS_MAX);
    free(tps);
    /* groups on an id of their own: each add rewrites the whole record */
    CHECK_EQ(sl_txn_init_producer_id(c, S("limg"), 5000, -1, -1, 0, &p, &e, &j), 0);
    for (int i = 0; i < SL_TXN_GROUPS_MAX; i++) {
        char gname[16];
        snprintf(gname, sizeof gname, "g%03d", i);
        CHECK_EQ(sl_txn_add_offsets(c, S("limg"), p, e, S(gname), 2), 0);
    }
    CHECK_EQ(sl_txn_add_offsets(c, S("limg"), p, e, S("one-more"), 2), SL_KAFKA_INVALID_REQUEST);
    CHECK_EQ(sl_txn_add_offsets(c, S("limg"), p, e, S("g042"), 2), 0); /* already in */
    char *longid = malloc(SL_TXN_ID_MAX + 2);
    CHECK(longid);
    memset(longid, 'i', SL_TXN_ID_MAX + 1);
    longid[SL_TXN_ID_MAX + 1] = 0;
    CHECK_EQ(sl_txn_init_producer_id(c, S(longid), 5000, -1, -1, 0, &p, &e, &j),
             SL_KAFKA_INVALID_REQUEST);
    longid[SL_TXN_ID_MAX] = 0;
    CHECK_EQ(sl_txn_init_producer_id(c, S(longid), 5000, -1, -1, 0, &p, &e, &j), 0);
    free(longid);
    char *live = state_text(c);
    sl_txn_close(c);
    c = open_c(dir, &g, 0);
    CHECK(c);
    char *replayed = state_text(c);
    CHECK(!strcmp(live, replayed)); /* the largest records round-trip through the file */
    free(live);
    free(replayed);
    sl_txn_close(c);
    sl_t_rm_rf(dir);
    free(dir);
}
