/* Per-partition transaction state (broker/sl_txnpart.h): transactions opened by transactional
 * batches, closed by markers; the LSO; the durable aborted index and its range query; recovery
 * at open (including a transaction whose marker never came, a torn or damaged index, an entry
 * whose marker never became durable); and read_committed Fetch/ListOffsets through a real
 * broker over loopback (stops at the LSO, lists the aborted transaction, a parked fetch wakes
 * on the marker). Transactional batches are appended the way the produce path does (log append,
 * producer state, sl_txnpart_on_append): until the coordinator lands, the idempotent check
 * refuses them from clients. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "local_broker.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"

/* Appends `count` records as the produce path does: a transactional batch of pid (txn), an
 * idempotent one (pid >= 0, !txn) or a plain one (pid -1). Returns the base offset or -1. */
static int64_t append(sl_partition *p, int64_t pid, int16_t epoch, int32_t seq, int32_t count,
                      bool txn) {
    sl_arena *a = sl_arena_new(4096);
    size_t len = 0;
    uint8_t *batch = a ? sl_batch_build(a, 1000, count, "v", 1, &len) : NULL;
    int64_t base = -1;
    sl_batch_info bi;
    if (batch && sl_batch_parse(batch, len, &bi)) {
        bi.producer_id = pid;
        bi.producer_epoch = pid >= 0 ? epoch : -1;
        bi.base_sequence = pid >= 0 ? seq : -1;
        if (txn) bi.attributes |= 0x10;
        sl_batch_reseal_like(batch, len, &bi);
        if (sl_log_append(p->log, batch, len, count, bi.max_timestamp, &base)) base = -1;
        if (base >= 0) {
            (void)sl_pstate_record(p->pstate, &bi, base, sl_wall_ms());
            if (txn) sl_txnpart_on_append(p, pid, epoch, base, base + count - 1);
            sl_storage_local_notify(p, (int64_t)len);
        }
    }
    sl_arena_free(a);
    return base;
}

static sl_partition *part0(sl_broker *b) {
    return sl_topics_partition(b->topics, sl_str_c("t"), 0);
}

static bool reopen(sl_broker *b) {
    char err[256];
    sl_topics_close(b->topics);
    b->topics = NULL;
    return sl_topics_open(&b->cfg, &b->topics, err, sizeof err) == SL_OK;
}

static void path_in(sl_broker *b, const char *name, char *out, size_t cap) {
    sl_topic *t = sl_topics_find(b->topics, sl_str_c("t"));
    char dir[512];
    sl_topics_partition_dir(b->topics, t, 0, dir, sizeof dir);
    snprintf(out, cap, "%s/%s", dir, name);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* One aborted.idx record as the format says (docs/on-disk-format.md). */
static void idx_record(uint8_t *b, int64_t pid, int64_t first, int64_t last) {
    sl_be32(b, 0x534c5441u);
    sl_be64(b + 4, (uint64_t)pid);
    sl_be64(b + 12, (uint64_t)first);
    sl_be64(b + 20, (uint64_t)last);
    sl_be32(b + 28, sl_crc32c(0, b, 28));
}

static bool append_bytes(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0) return false;
    bool ok = write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok;
}

/* The log as the tests below build it:
 *   0-1 plain | 2-3 A (txn) | 4-5 B (txn) | 6 plain | 7-8 A | 9 COMMIT A | 10 ABORT B
 * and, with `open_d`, 11-12 D (txn) left open. */
static bool build_log(sl_partition *p, bool open_d) {
    bool ok = append(p, -1, 0, 0, 2, false) == 0;
    ok = ok && append(p, 100, 3, 0, 2, true) == 2;
    ok = ok && append(p, 200, 1, 0, 2, true) == 4;
    ok = ok && append(p, -1, 0, 0, 1, false) == 6;
    ok = ok && append(p, 100, 3, 2, 2, true) == 7;
    ok = ok && sl_txnpart_write_marker(p, 100, 3, true, 5) == SL_OK;
    ok = ok && sl_txnpart_write_marker(p, 200, 1, false, 5) == SL_OK;
    if (open_d) ok = ok && append(p, 300, 0, 0, 2, true) == 11;
    return ok;
}

SL_TEST(txnpart_lso_markers_aborted_index) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_txnpart", &b, 1));
    sl_partition *p = part0(&b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_lso(p), 0);
    CHECK_EQ(append(p, -1, 0, 0, 2, false), 0);
    CHECK_EQ(sl_txnpart_lso(p), 2); /* nothing open: LSO = high watermark */
    CHECK_EQ(append(p, 100, 3, 0, 2, true), 2);
    CHECK(sl_txnpart_is_open(p, 100));
    CHECK_EQ(sl_txnpart_lso(p), 2);
    CHECK_EQ(append(p, 200, 1, 0, 2, true), 4);
    CHECK_EQ(append(p, -1, 0, 0, 1, false), 6);
    CHECK_EQ(append(p, 100, 3, 2, 2, true), 7); /* A again: its first offset stays 2 */
    CHECK_EQ(sl_txnpart_lso(p), 2);
    CHECK(!sl_txnpart_is_open(p, 300));
    int32_t seq_before;
    int nb_before;
    CHECK(sl_pstate_get(p->pstate, 100, NULL, &seq_before, &nb_before));

    /* COMMIT A: the LSO moves to the oldest still open, B's first offset. */
    CHECK_EQ(sl_txnpart_write_marker(p, 100, 3, true, 5), SL_OK);
    CHECK(!sl_txnpart_is_open(p, 100));
    CHECK_EQ(sl_txnpart_lso(p), 4);
    CHECK_EQ(sl_log_end_offset(p->log), 10);
    CHECK(sl_log_durable_offset(p->log) >= 10); /* synced before returning */
    /* The marker leaves the idempotent sequence history alone. */
    int32_t seq_after;
    int nb_after;
    int16_t ep;
    CHECK(sl_pstate_get(p->pstate, 100, &ep, &seq_after, &nb_after));
    CHECK_EQ(seq_after, seq_before);
    CHECK_EQ(nb_after, nb_before);

    /* The control batch: transactional + control, pid/epoch, no sequence, one record. */
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    uint8_t *data;
    size_t n;
    CHECK_EQ(sl_log_read(p->log, 9, 1 << 20, a, &data, &n), SL_OK);
    sl_batch_info bi;
    CHECK(sl_batch_parse(data, n, &bi));
    CHECK_EQ(bi.base_offset, 9);
    CHECK_EQ(bi.attributes & 0x30, 0x30);
    CHECK_EQ(bi.producer_id, 100);
    CHECK_EQ(bi.producer_epoch, 3);
    CHECK_EQ(bi.base_sequence, -1);
    CHECK_EQ(bi.record_count, 1);
    CHECK(sl_batch_crc_ok(data, bi.size));
    sl_rec_iter it;
    CHECK_EQ(sl_rec_iter_init(&it, data, bi.size, a, 1 << 20), SL_OK);
    sl_record r;
    CHECK(sl_rec_iter_next(&it, &r));
    CHECK_EQ(r.key.len, 4);
    CHECK_EQ(sl_get_be32(r.key.p), 1); /* version 0, type 1 COMMIT */
    CHECK_EQ(r.value.len, 6);
    CHECK_EQ(sl_get_be32(r.value.p + 2), 5); /* coordinator epoch */

    /* ABORT B: nothing open, LSO = HW; B is in the aborted index with its marker's offset. */
    CHECK_EQ(sl_txnpart_write_marker(p, 200, 1, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 11);
    CHECK_EQ(sl_log_end_offset(p->log), 11);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, 11, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);
    CHECK_EQ(ab[0].first_offset, 4);
    CHECK_EQ(sl_txnpart_aborted(p, 10, 11, a, &ab), 1); /* marker at 10: still relevant */
    CHECK_EQ(sl_txnpart_aborted(p, 11, 20, a, &ab), 0); /* after its marker */
    CHECK_EQ(sl_txnpart_aborted(p, 0, 4, a, &ab), 0);   /* before its first offset */
    CHECK_EQ(sl_txnpart_aborted(p, 0, 5, a, &ab), 1);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);

    /* Markers with nothing open are written and harmless: no entry, LSO = HW. */
    CHECK_EQ(sl_txnpart_write_marker(p, 300, 0, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_write_marker(p, 100, 3, true, 5), SL_OK);
    CHECK_EQ(sl_log_end_offset(p->log), 13);
    CHECK_EQ(sl_txnpart_lso(p), 13);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 13, a, &ab), 1);
    CHECK_EQ(file_size(idx), 32);

    /* Two producers interleaved again, the younger one ending first. */
    CHECK_EQ(append(p, 400, 0, 0, 1, true), 13);
    CHECK_EQ(append(p, 500, 0, 0, 1, true), 14);
    CHECK_EQ(sl_txnpart_write_marker(p, 500, 0, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 13); /* 400 still open */
    CHECK_EQ(sl_txnpart_aborted(p, 13, 16, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 500);
    CHECK_EQ(ab[0].first_offset, 14);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 16, a, &ab), 2);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* Close + reopen rebuilds the same state, with or without the checkpoint (the scan from the log
 * start finds the same): the aborted entry, the open transaction without its marker. */
SL_TEST(txnpart_reopen_rebuilds_state) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_txnpart", &b, 1));
    CHECK(build_log(part0(&b), true));
    CHECK_EQ(sl_txnpart_lso(part0(&b)), 11);
    CHECK_EQ(sl_log_sync(part0(&b)->log), SL_OK);
    char ckpt[600];
    path_in(&b, "txn.ckpt", ckpt, sizeof ckpt);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    for (int round = 0; round < 3; round++) {
        CHECK(reopen(&b));
        sl_partition *p = part0(&b);
        CHECK(p && p->txn && !p->unavailable);
        CHECK(sl_txnpart_is_open(p, 300));
        CHECK(!sl_txnpart_is_open(p, 100));
        CHECK(!sl_txnpart_is_open(p, 200));
        CHECK_EQ(sl_txnpart_lso(p), 11);
        sl_txn_aborted *ab;
        CHECK_EQ(sl_txnpart_aborted(p, 0, 13, a, &ab), 1);
        CHECK_EQ(ab[0].producer_id, 200);
        CHECK_EQ(ab[0].first_offset, 4);
        /* The idempotent state rebuilt from the log skips the markers too. */
        int32_t seq;
        CHECK(sl_pstate_get(p->pstate, 100, NULL, &seq, NULL));
        CHECK_EQ(seq, 3);
        /* Round 1 reopens without the checkpoint (a crash before it was ever written): the
         * scan from the log start gives the same. */
        if (round == 0) CHECK_EQ(unlink(ckpt), 0);
        /* Round 2: an older checkpoint (the newer one lost): the scan starts earlier. */
        if (round == 1) {
            uint8_t c[20];
            sl_be32(c, 0x534c5443u);
            sl_be32(c + 4, 1);
            sl_be64(c + 8, 0);
            sl_be32(c + 16, sl_crc32c(0, c, 16));
            FILE *f = fopen(ckpt, "wb");
            CHECK(f && fwrite(c, 1, sizeof c, f) == sizeof c);
            fclose(f);
        }
    }
    /* The open transaction ends after the restart like any other. */
    sl_partition *p = part0(&b);
    CHECK_EQ(sl_txnpart_write_marker(p, 300, 0, false, 6), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 14);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, 14, a, &ab), 2);
    CHECK_EQ(ab[1].producer_id, 300);
    CHECK_EQ(ab[1].first_offset, 11);
    /* DeleteRecords past B's marker: B's entry is no longer answered, and the next open drops
     * it from the file. */
    CHECK_EQ(sl_log_delete_records(p->log, 11), SL_OK);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 14, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 300);
    CHECK_EQ(sl_log_sync(p->log), SL_OK);
    CHECK(reopen(&b));
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 14, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 300);
    CHECK_EQ(sl_txnpart_lso(part0(&b)), 14);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* A torn tail of aborted.idx is cut; an entry whose marker never reached the log (written, then
 * the crash) is dropped; a damaged record followed by good ones keeps the partition closed. */
SL_TEST(txnpart_index_torn_tail_stale_entry_damage) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_txnpart", &b, 1));
    CHECK(build_log(part0(&b), false));
    CHECK_EQ(append(part0(&b), -1, 0, 0, 1, false), 11);
    CHECK_EQ(sl_log_sync(part0(&b)->log), SL_OK);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;

    /* Torn: half a record after the good one. */
    uint8_t rec[32];
    idx_record(rec, 700, 3, 11);
    CHECK(append_bytes(idx, rec, 17));
    CHECK(reopen(&b));
    CHECK(!part0(&b)->unavailable);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 11, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);

    /* Stale: a whole entry whose marker offset is the log end (the append never happened),
     * then one pointing at a batch that is not that producer's marker (the plain batch at 11). */
    idx_record(rec, 700, 3, 12);
    CHECK(append_bytes(idx, rec, sizeof rec));
    CHECK(reopen(&b));
    CHECK(!part0(&b)->unavailable);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 12, a, &ab), 1);
    idx_record(rec, 700, 6, 11);
    CHECK(append_bytes(idx, rec, sizeof rec));
    CHECK(reopen(&b));
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 12, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);

    /* Damage in the middle: a flipped byte in the first record, a good record after it. */
    idx_record(rec, 700, 6, 11);
    CHECK(append_bytes(idx, rec, sizeof rec));
    int fd = open(idx, O_RDWR);
    CHECK(fd >= 0);
    uint8_t x = 0xff;
    CHECK(pwrite(fd, &x, 1, 10) == 1);
    close(fd);
    CHECK(reopen(&b));
    CHECK_EQ(part0(&b)->unavailable, SL_ECORRUPT);
    CHECK(part0(&b)->txn == NULL);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* ---- read_committed through a real broker over loopback ---- */

static sigset_t g_sigmask;
static sl_log_level g_level;

static void state_restore(void) {
    pthread_sigmask(SIG_SETMASK, &g_sigmask, NULL);
    sl_log_set_level(g_level);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static sl_broker *broker_new(char *dir) {
    pthread_sigmask(SIG_SETMASK, NULL, &g_sigmask);
    g_level = sl_log_get_level();
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(dir, 64, "/tmp/sl_txnfetch_XXXXXX");
    if (!mkdtemp(dir)) {
        state_restore();
        return NULL;
    }
    sl_config c;
    sl_config_defaults(&c);
    const char *kv[][2] = {
        {"log.dirs", dir},
        {"sluice.secrets.dir", dir},
        {"listeners", "PLAINTEXT://127.0.0.1:0"},
        {"sluice.metrics.listener", "http://127.0.0.1:0"},
    };
    char err[512];
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        if (sl_config_set(&c, kv[k][0], kv[k][1], err, sizeof err) != SL_OK) {
            state_restore();
            return NULL;
        }
    sl_broker *b = NULL;
    if (sl_config_finish(&c, err, sizeof err) != SL_OK ||
        sl_broker_new(&c, &b, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  broker: %s\n", err);
        state_restore();
        return NULL;
    }
    if (sl_topics_create(b->topics, sl_str_c("t"), 1, NULL, false, NULL) != SL_OK) {
        sl_broker_free(b);
        state_restore();
        return NULL;
    }
    return b;
}

static int client_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_req(sl_broker *b, int fd, int16_t key, int16_t v, int32_t corr, const void *m) {
    sl_arena *a = sl_arena_new(1024);
    if (!a) return false;
    sl_wr w;
    sl_wr_init(&w, a, 256);
    sl_wr_u32(&w, 0);
    sl_req_header_encode(&w, &(sl_req_header){key, v, corr, sl_str_c("test")});
    sl_msg_codec_get(key, false)->encode(&w, v, m);
    bool ok = !w.err;
    if (ok) sl_be32(w.buf, (uint32_t)(w.len - 4));
    size_t off = 0;
    int64_t deadline = sl_mono_ms() + 2000;
    while (ok && off < w.len && sl_mono_ms() < deadline) {
        ssize_t n = send(fd, w.buf + off, w.len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            ok = false;
        else
            sl_loop_run_once(b->loop, 1);
    }
    ok = ok && off == w.len;
    sl_arena_free(a);
    return ok;
}

/* Runs the loop for up to `ms` until one whole response is in `buf`; its size after the length
 * prefix, 0 if none came. */
static size_t recv_resp(sl_broker *b, int fd, uint8_t *buf, size_t cap, int ms) {
    size_t got = 0;
    int64_t deadline = sl_mono_ms() + ms;
    while (sl_mono_ms() < deadline) {
        sl_loop_run_once(b->loop, 1);
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n > 0) got += (size_t)n;
        if (got >= 4) {
            uint32_t len = sl_get_be32(buf);
            if (len <= cap - 4 && got >= 4 + len) return len;
        }
    }
    return 0;
}

#define FETCH_V 11 /* isolation level since v4; not flexible up to v11 */

static bool send_fetch(sl_broker *b, int fd, int32_t corr, int8_t isolation, int64_t offset,
                       int32_t max_wait_ms) {
    sl_fetch_req_partition p;
    sl_fetch_req_partition_init(&p);
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    sl_fetch_req_topic t;
    sl_fetch_req_topic_init(&t);
    t.topic = sl_str_c("t");
    t.partitions = &p;
    t.partitions_count = 1;
    sl_fetch_req r;
    sl_fetch_req_init(&r);
    r.replica_id = -1;
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.isolation_level = isolation;
    r.topics = &t;
    r.topics_count = 1;
    return send_req(b, fd, SL_API_FETCH, FETCH_V, corr, &r);
}

/* Decodes a Fetch response (after the length prefix and the correlation id). */
static const sl_fetch_resp_partition *fetch_part(sl_arena *a, const uint8_t *buf, size_t len) {
    sl_fetch_resp *resp = sl_arena_calloc(a, 1, sizeof *resp);
    sl_rd r = sl_rd_init(buf + 8, len - 4);
    if (!resp || sl_msg_codec_get(SL_API_FETCH, true)->decode(&r, a, FETCH_V, resp) != SL_OK ||
        resp->responses_count != 1 || resp->responses[0].partitions_count != 1)
        return NULL;
    return &resp->responses[0].partitions[0];
}

/* Base offsets of the batches in a record set (up to 16); returns how many. */
static int batch_bases(const sl_fetch_resp_partition *o, int64_t *bases) {
    const uint8_t *d = o->records.p;
    size_t len = o->records.len > 0 ? (size_t)o->records.len : 0;
    int n = 0;
    sl_batch_info bi;
    while (len && n < 16 && sl_batch_parse(d, len, &bi) && bi.size <= len) {
        bases[n++] = bi.base_offset;
        d += bi.size;
        len -= bi.size;
    }
    return n;
}

static int64_t list_latest(sl_broker *b, int fd, int32_t corr, int8_t isolation, sl_arena *a) {
    sl_list_offsets_req_partition p;
    sl_list_offsets_req_partition_init(&p);
    p.partition_index = 0;
    p.timestamp = -1;
    sl_list_offsets_req_topic t;
    sl_list_offsets_req_topic_init(&t);
    t.name = sl_str_c("t");
    t.partitions = &p;
    t.partitions_count = 1;
    sl_list_offsets_req r;
    sl_list_offsets_req_init(&r);
    r.replica_id = -1;
    r.isolation_level = isolation;
    r.topics = &t;
    r.topics_count = 1;
    static uint8_t buf[4096];
    if (!send_req(b, fd, SL_API_LIST_OFFSETS, 5, corr, &r)) return -2;
    size_t len = recv_resp(b, fd, buf, sizeof buf, 2000);
    if (!len) return -2;
    sl_list_offsets_resp *resp = sl_arena_calloc(a, 1, sizeof *resp);
    sl_rd rd = sl_rd_init(buf + 8, len - 4);
    if (!resp || sl_msg_codec_get(SL_API_LIST_OFFSETS, true)->decode(&rd, a, 5, resp) != SL_OK ||
        resp->topics_count != 1 || resp->topics[0].partitions_count != 1 ||
        resp->topics[0].partitions[0].error_code)
        return -2;
    return resp->topics[0].partitions[0].offset;
}

SL_TEST(txnpart_fetch_read_committed) {
    char dir[64];
    sl_broker *b = broker_new(dir);
    CHECK(b);
    sl_partition *p = part0(b);
    static uint8_t buf[1 << 16];
    sl_arena *a = sl_arena_new(1 << 16);
    int fd = client_connect(b->listeners[0].port);
    /* 0-1 plain | 2-3 A | 4-5 B | 6 ABORT A: LSO 4 (B open), HW 7. */
    bool ok = a && fd >= 0 && p && append(p, -1, 0, 0, 2, false) == 0;
    ok = ok && append(p, 100, 0, 0, 2, true) == 2 && append(p, 200, 0, 0, 2, true) == 4;
    ok = ok && sl_txnpart_write_marker(p, 100, 0, false, 1) == SL_OK;
    const sl_fetch_resp_partition *o = NULL;
    int64_t bases[16];
    int nb = -1, nb_unc = -1;
    int64_t lso = -1, hw = -1, lso_unc = -1, latest_rc = -1, latest_ru = -1;
    int32_t naborted = -2, naborted_unc = -2;
    int64_t ab_pid = -1, ab_first = -1;
    size_t len;
    if (ok && send_fetch(b, fd, 1, 1, 0, 0) && (len = recv_resp(b, fd, buf, sizeof buf, 2000)) &&
        (o = fetch_part(a, buf, len)) && !o->error_code) {
        nb = batch_bases(o, bases);
        lso = o->last_stable_offset;
        hw = o->high_watermark;
        naborted = o->aborted_transactions_count;
        if (naborted > 0) {
            ab_pid = o->aborted_transactions[0].producer_id;
            ab_first = o->aborted_transactions[0].first_offset;
        }
    }
    int64_t last_base = nb > 0 ? bases[nb - 1] : -1;
    if (ok && send_fetch(b, fd, 2, 0, 0, 0) && (len = recv_resp(b, fd, buf, sizeof buf, 2000)) &&
        (o = fetch_part(a, buf, len)) && !o->error_code) {
        nb_unc = batch_bases(o, bases);
        lso_unc = o->last_stable_offset;
        naborted_unc = o->aborted_transactions_count;
    }
    if (ok) {
        latest_rc = list_latest(b, fd, 3, 1, a);
        latest_ru = list_latest(b, fd, 4, 0, a);
    }

    /* A read_committed fetch at the LSO parks; B's further data does not wake it (still not
     * stable); B's commit marker does, and it gets B's batches and the marker. */
    bool parked = false, still = false, woke = false;
    int nb_after = -1;
    int64_t lso_after = -1;
    if (ok && send_fetch(b, fd, 5, 1, 4, 10000)) {
        parked = recv_resp(b, fd, buf, sizeof buf, 300) == 0;
        ok = ok && append(p, 200, 0, 2, 1, true) == 7;
        still = parked && recv_resp(b, fd, buf, sizeof buf, 300) == 0;
        int64_t t0 = sl_mono_ms();
        ok = ok && sl_txnpart_write_marker(p, 200, 0, true, 1) == SL_OK;
        len = recv_resp(b, fd, buf, sizeof buf, 5000);
        woke = len > 0 && sl_mono_ms() - t0 < 5000;
        if (woke && (o = fetch_part(a, buf, len)) && !o->error_code) {
            nb_after = batch_bases(o, bases);
            lso_after = o->last_stable_offset;
        }
    }
    if (fd >= 0) close(fd);
    sl_broker_free(b);
    state_restore();
    sl_arena_free(a);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    CHECK(ok);
    CHECK_EQ(lso, 4);
    CHECK_EQ(hw, 7);
    CHECK_EQ(nb, 2); /* batches at 0 and 2: nothing at or past the LSO */
    CHECK_EQ(last_base, 2);
    CHECK_EQ(naborted, 1);
    CHECK_EQ(ab_pid, 100);
    CHECK_EQ(ab_first, 2);
    CHECK_EQ(nb_unc, 4); /* read_uncommitted: everything up to the high watermark */
    CHECK_EQ(lso_unc, 4);
    CHECK_EQ(naborted_unc, -1);
    CHECK_EQ(latest_rc, 4);
    CHECK_EQ(latest_ru, 7);
    CHECK(parked);
    CHECK(still);
    CHECK(woke);
    CHECK_EQ(nb_after, 4); /* 4-5 B, 6 ABORT A, 7 B, 8 COMMIT B */
    CHECK_EQ(lso_after, 9);
}
