/* Storage engine tests: each runs in its own mkdtemp directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_log.h"
#include "storage/sl_storage_hooks.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *tmpdir(void) {
    static char buf[8][64];
    static int n;
    char *t = buf[n++ % 8];
    strcpy(t, "/tmp/sl_storage_XXXXXX");
    return mkdtemp(t);
}

static void small_cfg(sl_log_config *c) {
    sl_log_config_default(c);
    c->segment_bytes = 4096;
    c->index_interval_bytes = 256;
    c->retention_ms = -1;
}

/* What the tests appended, to compare reads against. */
#define MAXB 4096
typedef struct model {
    sl_arena *a;
    int n;
    int64_t base[MAXB];
    int32_t count[MAXB];
    int64_t max_ts[MAXB];
    uint8_t *bytes[MAXB];
    size_t len[MAXB];
} model;

static model *model_new(void) {
    model *m = calloc(1, sizeof *m);
    m->a = sl_arena_new(1 << 20);
    return m;
}
static void model_free(model *m) {
    sl_arena_free(m->a);
    free(m);
}

/* Appends a batch of `count` records (values of `vlen` bytes of a per-batch pattern) with
 * timestamps ts..ts+count-1 and records it in `m`. */
static sl_err append_one(sl_log *log, model *m, int32_t count, size_t vlen, int64_t ts) {
    uint8_t val[2048];
    memset(val, 'a' + m->n % 26, sizeof val);
    size_t len;
    uint8_t *b = sl_batch_build(m->a, ts, count, val, vlen, &len);
    if (!b) return SL_ENOMEM;
    int64_t base = -1;
    sl_err e = sl_log_append(log, b, len, count, ts + count - 1, &base);
    if (e) return e;
    m->base[m->n] = base;
    m->count[m->n] = count;
    m->max_ts[m->n] = ts + count - 1;
    m->bytes[m->n] = b; /* base offset was patched in place */
    m->len[m->n] = len;
    m->n++;
    return SL_OK;
}

static int find_batch(const model *m, int64_t off) {
    for (int i = 0; i < m->n; i++)
        if (off >= m->base[i] && off < m->base[i] + m->count[i]) return i;
    return -1;
}

/* Reads at `off` and checks the result is a run of whole batches starting with the one that
 * holds `off`, byte-identical to what was appended. Returns the number of batches, -1 on
 * mismatch. */
static int check_read(sl_log *log, const model *m, int64_t off, int32_t max_bytes) {
    sl_arena *a = sl_arena_new(4096);
    uint8_t *out;
    size_t len;
    int nb = -1;
    if (sl_log_read(log, off, max_bytes, a, &out, &len) != SL_OK) goto done;
    int i = find_batch(m, off);
    if (i < 0) goto done;
    size_t p = 0;
    nb = 0;
    while (p < len) {
        if (i >= m->n || len - p < m->len[i] || memcmp(out + p, m->bytes[i], m->len[i]) != 0 ||
            !sl_batch_crc_ok(out + p, m->len[i])) {
            nb = -1;
            goto done;
        }
        p += m->len[i++];
        nb++;
    }
    if (nb > 1 && (int64_t)len > max_bytes) nb = -1;
done:
    sl_arena_free(a);
    return nb;
}

static void seg_file(char *out, size_t cap, const char *dir, int64_t base, const char *ext) {
    snprintf(out, cap, "%s/%020lld%s", dir, (long long)base, ext);
}
static int64_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}
/* Base offset of the newest segment file. */
static int64_t last_seg_base(const model *m, const char *dir) {
    for (int i = m->n - 1; i >= 0; i--) {
        char p[256];
        seg_file(p, sizeof p, dir, m->base[i], ".log");
        if (file_size(p) >= 0) return m->base[i];
    }
    return 0;
}

/* ---- crc and batches --------------------------------------------------------------------- */

SL_TEST(storage_crc32c_known_values_and_paths_agree) {
    CHECK_EQ(sl_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(sl_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(sl_crc32c(0, "", 0), 0);
    uint8_t buf[1031];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++) {
        for (size_t n = 0; n + off <= sizeof buf; n += 37) {
            uint32_t hw = sl_crc32c(0, buf + off, n), sw = sl_crc32c_sw(0, buf + off, n);
            CHECK_EQ(hw, sw);
            /* Chaining equals one pass. */
            uint32_t c = sl_crc32c(sl_crc32c(0, buf + off, n / 2), buf + off + n / 2, n - n / 2);
            CHECK_EQ(c, hw);
        }
    }
}

SL_TEST(storage_batch_build_is_valid) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = sl_batch_build(a, 1000, 5, "hello", 5, &len);
    CHECK(b);
    sl_batch_info h;
    CHECK_EQ(sl_batch_parse_exact(b, len, &h), SL_OK);
    CHECK_EQ(h.record_count, 5);
    CHECK_EQ(h.last_offset_delta, 4);
    CHECK_EQ(h.max_timestamp, 1004);
    CHECK(sl_batch_crc_ok(b, len));
    b[len - 1] ^= 1;
    CHECK(!sl_batch_crc_ok(b, len));
    CHECK_EQ(sl_batch_parse_exact(b, len - 1, &h), SL_ECORRUPT);
    sl_arena_free(a);
}

/* ---- append / read / reopen -------------------------------------------------------------- */

static void fill(sl_log *log, model *m, int n, int64_t ts0, int *failed) {
    for (int i = 0; i < n; i++) {
        if (append_one(log, m, 1 + i % 5, (size_t)(10 + (i * 37) % 300), ts0 + i * 10) != SL_OK) {
            *failed = 1;
            return;
        }
    }
}

SL_TEST(storage_append_read_roundtrip_across_rolls) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), 0);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 400, 1000000, &bad);
    CHECK(!bad);
    CHECK(sl_log_segment_count(log) > 10);
    int64_t end = sl_log_end_offset(log);
    CHECK_EQ(end, m->base[m->n - 1] + m->count[m->n - 1]);
    for (int64_t off = 0; off < end; off++) {
        int nb = check_read(log, m, off, 1);
        if (nb != 1) fprintf(stderr, "  off=%lld nb=%d\n", (long long)off, nb);
        CHECK_EQ(nb, 1);
        CHECK(check_read(log, m, off, 2000) >= 1);
    }
    /* A large max_bytes returns several whole batches, never more than asked. */
    CHECK(check_read(log, m, 0, 3000) > 3);
    /* End of log: empty; past it or before the start: out of range. */
    sl_arena *a = sl_arena_new(1024);
    uint8_t *out;
    size_t len;
    CHECK_EQ(sl_log_read(log, end, 1000, a, &out, &len), SL_OK);
    CHECK_EQ(len, 0);
    CHECK_EQ(sl_log_read(log, end + 1, 1000, a, &out, &len), SL_ERANGE);
    CHECK_EQ(sl_log_read(log, -1, 1000, a, &out, &len), SL_ERANGE);
    sl_arena_free(a);
    sl_log_close(log);

    /* Reopen keeps everything. */
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(sl_log_durable_offset(log), end);
    for (int64_t off = 0; off < end; off += 7) CHECK_EQ(check_read(log, m, off, 1), 1);
    CHECK_EQ(append_one(log, m, 3, 50, 99999999), SL_OK);
    CHECK_EQ(m->base[m->n - 1], end);
    CHECK_EQ(check_read(log, m, end + 2, 100), 1);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_read_mid_batch_and_small_max_bytes) {
    char *dir = tmpdir();
    sl_log_config c;
    sl_log_config_default(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    CHECK_EQ(append_one(log, m, 10, 100, 5000), SL_OK);
    CHECK_EQ(append_one(log, m, 10, 100, 6000), SL_OK);
    CHECK_EQ(append_one(log, m, 10, 100, 7000), SL_OK);
    /* Offset 15 sits in the second batch, which comes back whole, even with max_bytes 1. */
    sl_arena *a = sl_arena_new(1024);
    uint8_t *out;
    size_t len;
    CHECK_EQ(sl_log_read(log, 15, 1, a, &out, &len), SL_OK);
    CHECK_EQ(len, m->len[1]);
    CHECK_EQ((int64_t)sl_get_be64(out), 10);
    CHECK_EQ(sl_log_read(log, 15, 0, a, &out, &len), SL_OK);
    CHECK_EQ(len, m->len[1]);
    /* Exactly two batches fit. */
    CHECK_EQ(sl_log_read(log, 0, (int32_t)(m->len[0] + m->len[1]), a, &out, &len), SL_OK);
    CHECK_EQ(len, m->len[0] + m->len[1]);
    sl_arena_free(a);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_offset_for_time_and_max_timestamp) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    int64_t off, ts;
    CHECK_EQ(sl_log_max_timestamp(log, &off, &ts), SL_OK);
    CHECK_EQ(off, -1);
    CHECK_EQ(ts, -1);
    CHECK_EQ(sl_log_offset_for_time(log, 0, &off, &ts), SL_OK);
    CHECK_EQ(off, -1);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 200, 1000, &bad); /* batch i: timestamps 1000 + 10i .. + count-1 */
    CHECK(!bad);
    /* One out-of-order batch with the largest timestamp in the middle of the log. */
    CHECK_EQ(append_one(log, m, 2, 10, 900000), SL_OK);
    int64_t big = m->base[m->n - 1] + 1;
    fill(log, m, 50, 5000, &bad);
    CHECK(!bad);
    CHECK_EQ(sl_log_max_timestamp(log, &off, &ts), SL_OK);
    CHECK_EQ(ts, 900001);
    CHECK_EQ(off, big);
    for (int i = 0; i < 200; i += 3) {
        int64_t want_ts = 1000 + i * 10;
        CHECK_EQ(sl_log_offset_for_time(log, want_ts, &off, &ts), SL_OK);
        CHECK_EQ(off, m->base[i]);
        /* Kafka answers the first record at or after the timestamp, with that record's
         * timestamp, not the batch's (issue 10: the batch's base and max were answered). */
        CHECK_EQ(ts, want_ts);
        for (int k = 1; k < m->count[i]; k++) {
            CHECK_EQ(sl_log_offset_for_time(log, want_ts + k, &off, &ts), SL_OK);
            CHECK_EQ(off, m->base[i] + k);
            CHECK_EQ(ts, want_ts + k);
        }
        /* A timestamp between batches finds the next one. */
        CHECK_EQ(sl_log_offset_for_time(log, want_ts + 6, &off, &ts), SL_OK);
        CHECK_EQ(off, m->base[i + 1]);
    }
    CHECK_EQ(sl_log_offset_for_time(log, 900001, &off, &ts), SL_OK);
    CHECK_EQ(off, big); /* the batch's second record */
    CHECK_EQ(sl_log_offset_for_time(log, 900000, &off, &ts), SL_OK);
    CHECK_EQ(off, big - 1);
    CHECK_EQ(sl_log_offset_for_time(log, 900002, &off, &ts), SL_OK);
    CHECK_EQ(off, -1);
    /* Same answers after reopen, when sealed segments come from their index files. */
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_max_timestamp(log, &off, &ts), SL_OK);
    CHECK_EQ(ts, 900001);
    CHECK_EQ(sl_log_offset_for_time(log, 1000 + 77 * 10, &off, &ts), SL_OK);
    CHECK_EQ(off, m->base[77]);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* ---- recovery ---------------------------------------------------------------------------- */

SL_TEST(storage_torn_tail_truncated_on_reopen) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 60, 1000, &bad);
    CHECK(!bad);
    sl_log_close(log);
    int64_t lb = last_seg_base(m, dir);
    char path[256];
    seg_file(path, sizeof path, dir, lb, ".log");
    int64_t sz = file_size(path);
    /* Cut the last frame in half. */
    CHECK_EQ(truncate(path, sz - (int64_t)m->len[m->n - 1] / 2), 0);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    int64_t want_end = m->base[m->n - 1];
    CHECK_EQ(sl_log_end_offset(log), want_end);
    m->n--;
    CHECK_EQ(append_one(log, m, 4, 20, 77), SL_OK);
    CHECK_EQ(m->base[m->n - 1], want_end);
    sl_log_close(log);
    /* Garbage after the last frame. */
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    uint8_t junk[100];
    memset(junk, 0xA5, sizeof junk);
    CHECK_EQ(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), want_end + 4);
    CHECK_EQ(check_read(log, m, want_end, 1000), 1);
    CHECK_EQ(check_read(log, m, 0, 1), 1);
    CHECK_EQ(append_one(log, m, 1, 20, 78), SL_OK);
    CHECK_EQ(m->base[m->n - 1], want_end + 4);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_corrupt_crc_in_tail_truncates_there) {
    char *dir = tmpdir();
    sl_log_config c;
    sl_log_config_default(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    for (int i = 0; i < 10; i++) CHECK_EQ(append_one(log, m, 2, 40, 100 + i), SL_OK);
    sl_log_close(log);
    char path[256];
    seg_file(path, sizeof path, dir, 0, ".log");
    /* Flip one record byte of batch 6; the frame header stays valid, only the batch CRC fails. */
    int64_t pos = 64;
    for (int i = 0; i < 6; i++) pos += 52 + (int64_t)m->len[i];
    pos += 52 + (int64_t)m->len[6] - 3;
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    CHECK_EQ(pread(fd, &b, 1, pos), 1);
    b ^= 0x40;
    CHECK_EQ(pwrite(fd, &b, 1, pos), 1);
    close(fd);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), m->base[6]);
    CHECK_EQ(check_read(log, m, m->base[5], 1), 1);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_missing_and_garbage_indexes_rebuilt) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 150, 1000, &bad);
    CHECK(!bad);
    int nseg = sl_log_segment_count(log);
    CHECK(nseg > 4);
    int64_t end = sl_log_end_offset(log);
    sl_log_close(log);
    /* Find a few sealed segment bases from the model. */
    int64_t bases[3] = {-1, -1, -1};
    int nbases = 0;
    for (int i = 1; i < m->n && nbases < 3; i++) {
        char p[256];
        seg_file(p, sizeof p, dir, m->base[i], ".log");
        if (file_size(p) >= 0) bases[nbases++] = m->base[i];
    }
    CHECK_EQ(nbases, 3);
    char p[256];
    seg_file(p, sizeof p, dir, bases[0], ".index");
    CHECK(file_size(p) > 0);
    int64_t good_size = file_size(p);
    CHECK_EQ(unlink(p), 0);
    seg_file(p, sizeof p, dir, bases[1], ".index");
    int fd = open(p, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "garbage!garbage!", 16), 16); /* right size, nonsense entries */
    close(fd);
    seg_file(p, sizeof p, dir, bases[2], ".timeindex");
    fd = open(p, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "bad", 3), 3);
    close(fd);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(sl_log_segment_count(log), nseg);
    for (int64_t off = 0; off < end; off += 3) CHECK_EQ(check_read(log, m, off, 1), 1);
    seg_file(p, sizeof p, dir, bases[0], ".index");
    CHECK_EQ(file_size(p), good_size);
    seg_file(p, sizeof p, dir, bases[2], ".timeindex");
    CHECK(file_size(p) % 12 == 0);
    int64_t off, ts;
    CHECK_EQ(sl_log_offset_for_time(log, 1000 + 40 * 10, &off, &ts), SL_OK);
    CHECK_EQ(off, m->base[40]);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_corrupt_sealed_segment_header_fails_open) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 50, 1000, &bad);
    CHECK(!bad);
    CHECK(sl_log_segment_count(log) > 2);
    sl_log_close(log);
    char p[256];
    seg_file(p, sizeof p, dir, 0, ".log");
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, "X", 1, 10), 1);
    close(fd);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_ECORRUPT);
    model_free(m);
    rm_rf(dir);
}

/* ---- retention and start offset ---------------------------------------------------------- */

SL_TEST(storage_retention_by_bytes_and_time) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 200, 1000, &bad);
    CHECK(!bad);
    int nseg = sl_log_segment_count(log);
    int deleted = -1;
    CHECK_EQ(sl_log_enforce_retention(log, 1 << 30, &deleted), SL_OK);
    CHECK_EQ(deleted, 0);

    /* By bytes: keep about 3 segments' worth. */
    c.retention_bytes = 3 * 4096;
    sl_log_set_config(log, &c);
    CHECK_EQ(sl_log_enforce_retention(log, 0, &deleted), SL_OK);
    CHECK(deleted > 0);
    CHECK_EQ(sl_log_segment_count(log), nseg - deleted);
    CHECK(sl_log_size_bytes(log) <= 4 * 4096);
    int64_t start = sl_log_start_offset(log);
    CHECK(start > 0);
    CHECK(find_batch(m, start) >= 0 && m->base[find_batch(m, start)] == start);
    sl_arena *a = sl_arena_new(1024);
    uint8_t *out;
    size_t len;
    CHECK_EQ(sl_log_read(log, start - 1, 100, a, &out, &len), SL_ERANGE);
    CHECK_EQ(check_read(log, m, start, 1), 1);

    /* By time: everything but the active segment is older than its max timestamp + 1. */
    c.retention_bytes = -1;
    c.retention_ms = 1;
    sl_log_set_config(log, &c);
    CHECK_EQ(sl_log_enforce_retention(log, 1000 + 200 * 10 + 100, &deleted), SL_OK);
    CHECK(deleted > 0);
    CHECK_EQ(sl_log_segment_count(log), 1);
    CHECK_EQ(sl_log_end_offset(log), m->base[m->n - 1] + m->count[m->n - 1]);
    start = sl_log_start_offset(log);
    CHECK_EQ(check_read(log, m, start, 1), 1);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_start_offset(log), start);
    sl_log_close(log);
    sl_arena_free(a);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_delete_records_persisted) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 100, 1000, &bad);
    CHECK(!bad);
    int nseg = sl_log_segment_count(log);
    int64_t end = sl_log_end_offset(log);
    int64_t cut = m->base[60] + 1; /* inside a batch */
    CHECK_EQ(sl_log_delete_records(log, end + 1), SL_ERANGE);
    CHECK_EQ(sl_log_delete_records(log, cut), SL_OK);
    CHECK_EQ(sl_log_start_offset(log), cut);
    CHECK(sl_log_segment_count(log) < nseg);
    sl_arena *a = sl_arena_new(1024);
    uint8_t *out;
    size_t len;
    CHECK_EQ(sl_log_read(log, cut - 1, 100, a, &out, &len), SL_ERANGE);
    CHECK_EQ(check_read(log, m, cut, 1), 1);        /* the containing batch, as Kafka does */
    CHECK_EQ(sl_log_delete_records(log, 5), SL_OK); /* moving backwards is a no-op */
    CHECK_EQ(sl_log_start_offset(log), cut);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_start_offset(log), cut);
    CHECK_EQ(sl_log_read(log, cut - 1, 100, a, &out, &len), SL_ERANGE);
    CHECK_EQ(sl_log_end_offset(log), end);
    /* Delete everything: the active segment stays but nothing is readable. */
    CHECK_EQ(sl_log_delete_records(log, end), SL_OK);
    CHECK_EQ(sl_log_read(log, end - 1, 100, a, &out, &len), SL_ERANGE);
    CHECK_EQ(sl_log_read(log, end, 100, a, &out, &len), SL_OK);
    CHECK_EQ(len, 0);
    sl_log_close(log);
    /* A corrupt checkpoint fails the open rather than resurrecting deleted records. */
    char p[256];
    snprintf(p, sizeof p, "%s/log-start-offset", dir);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, "\xff", 1, 12), 1);
    close(fd);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_ECORRUPT);
    sl_arena_free(a);
    model_free(m);
    rm_rf(dir);
}

/* ---- write failures ---------------------------------------------------------------------- */

static atomic_int g_fail_after; /* calls that succeed before failures start; -1: never fail */
static int g_fail_errno;
static ssize_t failing_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    int left = atomic_fetch_sub(&g_fail_after, 1);
    if (left > 0) return pwritev(fd, iov, n, off);
    if (left == 0 && iov[0].iov_len > 10) {
        /* First failing call: a short write, as a filling disk gives. */
        struct iovec half = {iov[0].iov_base, iov[0].iov_len / 2};
        return pwritev(fd, &half, 1, off);
    }
    errno = g_fail_errno;
    return -1;
}

SL_TEST(storage_injected_enospc_leaves_log_usable) {
    char *dir = tmpdir();
    sl_log_config c;
    sl_log_config_default(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(log, m, 3, 100, 10 + i), SL_OK);
    int64_t end = sl_log_end_offset(log), size = sl_log_size_bytes(log);
    char p[256];
    seg_file(p, sizeof p, dir, 0, ".log");
    int errs[2] = {ENOSPC, EIO};
    sl_err want[2] = {SL_ENOSPC, SL_EIO};
    for (int k = 0; k < 2; k++) {
        g_fail_errno = errs[k];
        atomic_store(&g_fail_after, 0);
        sl_storage_pwritev = failing_pwritev;
        sl_err e = append_one(log, m, 3, 100, 99);
        sl_storage_pwritev = pwritev;
        CHECK_EQ(e, want[k]);
        CHECK_EQ(sl_log_end_offset(log), end);
        CHECK_EQ(sl_log_size_bytes(log), size);
        CHECK_EQ(file_size(p), size);
    }
    CHECK_EQ(append_one(log, m, 3, 100, 20), SL_OK);
    CHECK_EQ(m->base[m->n - 1], end);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), end + 3);
    for (int64_t off = 0; off < end + 3; off++) CHECK_EQ(check_read(log, m, off, 1), 1);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

SL_TEST(storage_flush_due_policy) {
    char *dir = tmpdir();
    sl_log_config c;
    sl_log_config_default(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    CHECK_EQ(append_one(log, m, 3, 10, 1), SL_OK);
    CHECK(!sl_log_flush_due(log, INT64_MAX / 2)); /* defaults: never */
    c.flush_interval_messages = 5;
    sl_log_set_config(log, &c);
    CHECK(!sl_log_flush_due(log, 0));
    CHECK_EQ(append_one(log, m, 3, 10, 1), SL_OK);
    CHECK(sl_log_flush_due(log, 0));
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK_EQ(sl_log_durable_offset(log), 6);
    CHECK(!sl_log_flush_due(log, 0));
    c.flush_interval_messages = INT64_MAX;
    c.flush_interval_ms = 1000;
    sl_log_set_config(log, &c);
    CHECK_EQ(append_one(log, m, 1, 10, 1), SL_OK);
    CHECK(!sl_log_flush_due(log, 0));
    CHECK(sl_log_flush_due(log, INT64_MAX / 2));
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* ---- group commit ------------------------------------------------------------------------ */

static atomic_int g_fsyncs;
static atomic_int g_fsync_delay_ms;
static int counting_fsync(int fd) {
    atomic_fetch_add(&g_fsyncs, 1);
    int d = atomic_load(&g_fsync_delay_ms);
    if (d) usleep((useconds_t)d * 1000);
    return fsync(fd);
}

typedef struct cb_state {
    int calls;
    sl_err err;
} cb_state;
static void on_flushed(void *ctx, sl_err e) {
    cb_state *s = ctx;
    s->calls++;
    s->err = e;
}

static void pump(sl_flusher *f, cb_state *st, int n) {
    for (int spins = 0; spins < 2000; spins++) {
        int done = 0;
        for (int i = 0; i < n; i++) done += st[i].calls > 0;
        if (done == n) return;
        struct pollfd pfd = {sl_flusher_fd(f), POLLIN, 0};
        if (poll(&pfd, 1, 10) > 0) sl_flusher_dispatch(f);
    }
}

SL_TEST(storage_flusher_coalesces_and_completes_once) {
    char *dirs[3];
    sl_log *logs[3];
    model *m = model_new();
    sl_log_config c;
    small_cfg(&c);
    for (int i = 0; i < 3; i++) {
        dirs[i] = tmpdir();
        CHECK_EQ(sl_log_open(dirs[i], &c, &logs[i]), SL_OK);
    }
    sl_storage_fsync = counting_fsync;
    atomic_store(&g_fsyncs, 0);
    atomic_store(&g_fsync_delay_ms, 30);
    sl_flusher *f;
    CHECK_EQ(sl_flusher_new(&f), SL_OK);
    enum { N = 60 };
    static cb_state st[N];
    memset(st, 0, sizeof st);
    for (int i = 0; i < N; i++) {
        sl_log *log = logs[i % 3];
        CHECK_EQ(append_one(log, m, 2, 30, i), SL_OK);
        sl_flusher_request(f, log, on_flushed, &st[i]);
    }
    pump(f, st, N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(st[i].calls, 1);
        CHECK_EQ(st[i].err, SL_OK);
    }
    int fs = atomic_load(&g_fsyncs);
    /* Without coalescing this would be at least N. */
    CHECK(fs > 0);
    CHECK(fs < N / 2);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sl_log_durable_offset(logs[i]), sl_log_end_offset(logs[i]));
    /* Already durable: completes through dispatch without an fsync. */
    atomic_store(&g_fsyncs, 0);
    cb_state one = {0};
    sl_flusher_request(f, logs[0], on_flushed, &one);
    CHECK_EQ(one.calls, 0);
    pump(f, &one, 1);
    CHECK_EQ(one.calls, 1);
    CHECK_EQ(atomic_load(&g_fsyncs), 0);
    /* A log closed (and destroyed) while its sync is in flight is freed only after it. */
    CHECK_EQ(append_one(logs[1], m, 2, 30, 1), SL_OK);
    cb_state late = {0};
    sl_flusher_request(f, logs[1], on_flushed, &late);
    CHECK_EQ(sl_log_destroy(logs[1]), SL_OK);
    pump(f, &late, 1);
    CHECK_EQ(late.calls, 1);
    /* Requests queued at free still complete exactly once. */
    CHECK_EQ(append_one(logs[2], m, 2, 30, 1), SL_OK);
    cb_state last = {0};
    sl_flusher_request(f, logs[2], on_flushed, &last);
    sl_flusher_free(f);
    CHECK_EQ(last.calls, 1);
    atomic_store(&g_fsync_delay_ms, 0);
    sl_storage_fsync = fsync;
    sl_log_close(logs[0]);
    sl_log_close(logs[2]);
    for (int i = 0; i < 3; i++) rm_rf(dirs[i]);
    model_free(m);
}

static atomic_int g_fsync_fail;
static int failing_fsync(int fd) {
    if (atomic_load(&g_fsync_fail)) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

SL_TEST(storage_fsync_failure_is_sticky) {
    char *dir = tmpdir();
    sl_log_config c;
    sl_log_config_default(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    CHECK_EQ(append_one(log, m, 2, 30, 1), SL_OK);
    sl_storage_fsync = failing_fsync;
    atomic_store(&g_fsync_fail, 1);
    sl_flusher *f;
    CHECK_EQ(sl_flusher_new(&f), SL_OK);
    cb_state st = {0};
    sl_flusher_request(f, log, on_flushed, &st);
    pump(f, &st, 1);
    sl_flusher_free(f);
    atomic_store(&g_fsync_fail, 0);
    sl_storage_fsync = fsync;
    CHECK_EQ(st.calls, 1);
    CHECK_EQ(st.err, SL_EIO);
    CHECK_EQ(sl_log_durable_offset(log), 0);
    CHECK_EQ(sl_log_sync(log), SL_EIO);
    CHECK_EQ(append_one(log, m, 2, 30, 1), SL_EIO);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Rolls and retention deletions while the flusher thread holds segments: run under TSan too. */
SL_TEST(storage_flusher_races_with_roll_and_retention) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    c.retention_bytes = 3 * 4096;
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    sl_flusher *f;
    CHECK_EQ(sl_flusher_new(&f), SL_OK);
    enum { N = 400 };
    static cb_state st[N];
    memset(st, 0, sizeof st);
    for (int i = 0; i < N; i++) {
        if (m->n == MAXB) m->n = 0; /* the model is only used for appending here */
        CHECK_EQ(append_one(log, m, 2, 200, i), SL_OK);
        sl_flusher_request(f, log, on_flushed, &st[i]);
        int deleted;
        CHECK_EQ(sl_log_enforce_retention(log, 0, &deleted), SL_OK);
        if (i % 16 == 0) sl_flusher_dispatch(f);
    }
    pump(f, st, N);
    for (int i = 0; i < N; i++) CHECK_EQ(st[i].calls, 1);
    CHECK_EQ(sl_log_durable_offset(log), sl_log_end_offset(log));
    sl_flusher_free(f);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Random damage anywhere (data, index, time index; flips and truncation): open either fails with
 * SL_ECORRUPT or yields a log whose every read returns OK or SL_ECORRUPT. Never a crash (ASan). */
#include <dirent.h>
typedef struct saved_file {
    char name[256];
    uint8_t *data;
    size_t len;
} saved_file;

SL_TEST(storage_random_damage_never_crashes) {
    sl_log_set_level(SL_LOG_ERROR);
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 80, 1000, &bad);
    CHECK(!bad);
    sl_log_close(log);
    saved_file files[64];
    int nf = 0;
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *de;
    while ((de = readdir(d)) && nf < 64) {
        if (de->d_name[0] == '.') continue;
        if (strlen(de->d_name) >= 64) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%.63s", dir, de->d_name);
        saved_file *sf = &files[nf++];
        snprintf(sf->name, sizeof sf->name, "%.63s", de->d_name);
        sf->len = (size_t)file_size(p);
        sf->data = malloc(sf->len + 1);
        FILE *fp = fopen(p, "rb");
        CHECK(fp && fread(sf->data, 1, sf->len, fp) == sf->len);
        fclose(fp);
    }
    closedir(d);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
#define RND() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
    int opened = 0, refused = 0;
    sl_arena *a = sl_arena_new(1 << 16);
    for (int iter = 0; iter < 300; iter++) {
        for (int i = 0; i < nf; i++) {
            char p[512];
            snprintf(p, sizeof p, "%s/%.63s", dir, files[i].name);
            FILE *fp = fopen(p, "wb");
            CHECK(fp);
            CHECK_EQ(fwrite(files[i].data, 1, files[i].len, fp), files[i].len);
            fclose(fp);
        }
        saved_file *victim = &files[RND() % (uint64_t)nf];
        char p[512];
        snprintf(p, sizeof p, "%s/%.63s", dir, victim->name);
        if (victim->len) {
            int fd = open(p, O_RDWR);
            CHECK(fd >= 0);
            int flips = 1 + (int)(RND() % 4);
            for (int k = 0; k < flips; k++) {
                uint8_t b = (uint8_t)RND();
                CHECK_EQ(pwrite(fd, &b, 1, (off_t)(RND() % victim->len)), 1);
            }
            if (RND() % 4 == 0) CHECK_EQ(ftruncate(fd, (off_t)(RND() % victim->len)), 0);
            close(fd);
        }
        sl_err e = sl_log_open(dir, &c, &log);
        if (e) {
            CHECK_EQ(e, SL_ECORRUPT);
            refused++;
            continue;
        }
        opened++;
        int64_t end = sl_log_end_offset(log);
        for (int64_t off = sl_log_start_offset(log); off < end; off++) {
            uint8_t *out;
            size_t len;
            sl_err r = sl_log_read(log, off, (int32_t)(RND() % 3000), a, &out, &len);
            CHECK(r == SL_OK || r == SL_ECORRUPT);
            if (r == SL_OK) CHECK(len > 0);
        }
        int64_t o, ts;
        sl_err r = sl_log_offset_for_time(log, 1000 + (int64_t)(RND() % 1000), &o, &ts);
        CHECK(r == SL_OK || r == SL_ECORRUPT);
        sl_log_close(log);
        sl_arena_free(a);
        a = sl_arena_new(1 << 16);
    }
#undef RND
    sl_arena_free(a);
    fprintf(stderr, "  random damage: %d opened, %d refused\n", opened, refused);
    CHECK(opened > 0);
    for (int i = 0; i < nf; i++) free(files[i].data);
    sl_log_set_level(SL_LOG_INFO);
    model_free(m);
    rm_rf(dir);
}

/* ---- descriptor cache -------------------------------------------------------------------- */

static int open_fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += de->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the one opendir holds */
}

/* Many logs with many segments each behind a cache of 8 descriptors: appends interleaved across
 * logs, reads of every offset, time lookups, group commit (with slow fsyncs on the flusher
 * thread while the loop keeps evicting), retention and a reopen all stay correct, and the
 * process never holds more than the cache's descriptors for them. */
SL_TEST(storage_fd_cache_tiny_over_many_logs) {
    enum { NL = 24, CAP = 8 };
    int old_cap = sl_log_fd_cache_capacity();
    sl_log_fd_cache_set_capacity(CAP);
    CHECK_EQ(sl_log_fd_cache_capacity(), CAP);
    int fds0 = open_fd_count();
    static char dirs[NL][64];
    sl_log *logs[NL];
    model *ms[NL];
    sl_log_config c;
    small_cfg(&c);
    for (int i = 0; i < NL; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s", tmpdir());
        CHECK_EQ(sl_log_open(dirs[i], &c, &logs[i]), SL_OK);
        ms[i] = model_new();
    }
    CHECK(open_fd_count() <= fds0 + CAP);
    sl_flusher *f;
    CHECK_EQ(sl_flusher_new(&f), SL_OK);
    sl_storage_fsync = counting_fsync;
    atomic_store(&g_fsync_delay_ms, 2);
    enum { ROUNDS = 60 };
    static cb_state st[ROUNDS * NL];
    memset(st, 0, sizeof st);
    int nreq = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NL; i++) {
            CHECK_EQ(append_one(logs[i], ms[i], 1 + (r + i) % 4, (size_t)(20 + (r * 31 + i) % 400),
                                1000000 + r * 10),
                     SL_OK);
            /* Flushes in flight while the loop thread keeps opening (and evicting) files. */
            if ((r + i) % 5 == 0) sl_flusher_request(f, logs[i], on_flushed, &st[nreq++]);
        }
        CHECK(sl_log_fd_cache_open_count() <= CAP);
        /* The flusher's eventfd, and a directory it may be syncing right now. */
        CHECK(open_fd_count() <= fds0 + CAP + 2);
        struct pollfd pfd = {sl_flusher_fd(f), POLLIN, 0};
        if (poll(&pfd, 1, 0) > 0) sl_flusher_dispatch(f);
    }
    pump(f, st, nreq);
    for (int k = 0; k < nreq; k++) {
        CHECK_EQ(st[k].calls, 1);
        CHECK_EQ(st[k].err, SL_OK);
    }
    atomic_store(&g_fsync_delay_ms, 0);
    sl_storage_fsync = fsync;
    for (int i = 0; i < NL; i++) {
        CHECK(sl_log_segment_count(logs[i]) > 3);
        int64_t end = sl_log_end_offset(logs[i]);
        for (int64_t off = 0; off < end; off += 3) CHECK(check_read(logs[i], ms[i], off, 600) > 0);
        int64_t o, ts;
        CHECK_EQ(sl_log_offset_for_time(logs[i], 1000000 + 300, &o, &ts), SL_OK);
        CHECK_EQ(o, ms[i]->base[30]);
        /* Everything durable through the flusher (files reopened as needed). */
        cb_state one = {0};
        sl_flusher_request(f, logs[i], on_flushed, &one);
        pump(f, &one, 1);
        CHECK_EQ(one.err, SL_OK);
        CHECK_EQ(sl_log_durable_offset(logs[i]), end);
    }
    /* Retention on every other log: whole old segments go, the rest still reads. */
    for (int i = 0; i < NL; i += 2) {
        sl_log_config rc = c;
        rc.retention_bytes = 8192;
        sl_log_set_config(logs[i], &rc);
        int deleted = 0;
        CHECK_EQ(sl_log_enforce_retention(logs[i], sl_wall_ms(), &deleted), SL_OK);
        CHECK(deleted > 0);
        char p[256];
        seg_file(p, sizeof p, dirs[i], 0, ".log");
        CHECK_EQ(file_size(p), -1);
        int64_t start = sl_log_start_offset(logs[i]);
        CHECK(start > 0);
        for (int64_t off = start; off < sl_log_end_offset(logs[i]); off++)
            CHECK(check_read(logs[i], ms[i], off, 100) > 0);
    }
    /* Appends after retention, then a reopen of all behind the same tiny cache. */
    for (int i = 0; i < NL; i++) {
        CHECK_EQ(append_one(logs[i], ms[i], 2, 50, 2000000), SL_OK);
        CHECK_EQ(sl_log_sync(logs[i]), SL_OK);
    }
    int64_t starts[NL], ends[NL];
    for (int i = 0; i < NL; i++) {
        starts[i] = sl_log_start_offset(logs[i]);
        ends[i] = sl_log_end_offset(logs[i]);
        sl_log_close(logs[i]);
    }
    sl_flusher_free(f);
    CHECK_EQ(sl_log_fd_cache_open_count(), 0);
    CHECK_EQ(open_fd_count(), fds0);
    for (int i = 0; i < NL; i++) {
        CHECK_EQ(sl_log_open(dirs[i], &c, &logs[i]), SL_OK);
        CHECK(sl_log_fd_cache_open_count() <= CAP);
    }
    for (int i = 0; i < NL; i++) {
        CHECK_EQ(sl_log_start_offset(logs[i]), starts[i]);
        CHECK_EQ(sl_log_end_offset(logs[i]), ends[i]);
        for (int64_t off = starts[i]; off < ends[i]; off += 2)
            CHECK(check_read(logs[i], ms[i], off, 300) > 0);
    }
    CHECK(open_fd_count() <= fds0 + CAP);
    /* Destroying a log closes its descriptors and removes everything. */
    for (int i = 0; i < NL; i++) {
        CHECK_EQ(sl_log_destroy(logs[i]), SL_OK);
        CHECK_EQ(file_size(dirs[i]), -1);
        model_free(ms[i]);
    }
    CHECK_EQ(sl_log_fd_cache_open_count(), 0);
    CHECK_EQ(open_fd_count(), fds0);
    sl_log_fd_cache_set_capacity(old_cap);
}

/* A log created just now costs no fsync (creating thousands of partitions stays cheap), its
 * first records make everything durable, a sync with nothing new costs none, and its files
 * lost or torn before any record (a crash right after creation) reopen as an empty log. */
SL_TEST(storage_fresh_log_defers_fsync_to_first_records) {
    char *dir = tmpdir(), *dir2 = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_storage_fsync = counting_fsync;
    atomic_store(&g_fsyncs, 0);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(atomic_load(&g_fsyncs), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK_EQ(atomic_load(&g_fsyncs), 0);
    model *m = model_new();
    CHECK_EQ(append_one(log, m, 3, 40, 1000), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK(atomic_load(&g_fsyncs) >= 2); /* the segment and the directory at least */
    CHECK_EQ(sl_log_durable_offset(log), 3);
    atomic_store(&g_fsyncs, 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK_EQ(atomic_load(&g_fsyncs), 0);
    sl_log_close(log);
    sl_storage_fsync = fsync;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), 3);
    CHECK(check_read(log, m, 0, 1000) == 1);
    sl_log_close(log);
    /* Created, then files torn and lost as a crash could leave them: reopens empty. */
    CHECK_EQ(sl_log_open(dir2, &c, &log), SL_OK);
    sl_log_close(log);
    char p[256];
    seg_file(p, sizeof p, dir2, 0, ".log");
    CHECK_EQ(truncate(p, 10), 0);
    seg_file(p, sizeof p, dir2, 0, ".index");
    CHECK_EQ(unlink(p), 0);
    CHECK_EQ(sl_log_open(dir2, &c, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), 0);
    model *m2 = model_new();
    CHECK_EQ(append_one(log, m2, 2, 40, 1000), SL_OK);
    CHECK(check_read(log, m2, 0, 1000) == 1);
    sl_log_close(log);
    model_free(m);
    model_free(m2);
    rm_rf(dir);
    rm_rf(dir2);
}

/* Out of descriptors: syncing gives back cached descriptors to open what it must, and a sync
 * that still cannot open a file fails without making the log read-only (nothing was lost from
 * the page cache); once descriptors are free again, appends and syncs succeed. */
SL_TEST(storage_out_of_descriptors_is_not_sticky) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    CHECK_EQ(append_one(log, m, 2, 40, 1000), SL_OK);
    struct rlimit old;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)open_fd_count() + 16;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    int held[64], nh = 0;
    while (nh < 64 && (held[nh] = dup(0)) >= 0) nh++;
    CHECK(nh < 64); /* the table is full */
    /* Every open below (a directory to sync, three files per roll) finds the table full and
     * must give back a cached descriptor. */
    sl_err e = sl_log_sync(log);
    int failed_appends = 0;
    for (int k = 0; k < 40 && e == SL_OK; k++) {
        if (append_one(log, m, 1, 900, 2000 + k) != SL_OK) failed_appends++;
        e = sl_log_sync(log);
    }
    int64_t segs = sl_log_segment_count(log);
    for (int k = 0; k < nh; k++) close(held[k]);
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    CHECK_EQ(e, SL_OK);
    CHECK_EQ(failed_appends, 0);
    CHECK(segs > 5);
    CHECK_EQ(append_one(log, m, 2, 40, 3000), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK_EQ(sl_log_durable_offset(log), sl_log_end_offset(log));
    for (int64_t off = 0; off < sl_log_end_offset(log); off++)
        CHECK(check_read(log, m, off, 100) > 0);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Reopening after a clean stop (sl_log_open_synced) costs no fsync, unless recovery had to
 * change data: a torn tail is still cut and made durable. */
SL_TEST(storage_open_synced_skips_recovery_fsync_only_when_nothing_changed) {
    char *dir = tmpdir();
    sl_log_config c;
    small_cfg(&c);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &c, &log), SL_OK);
    model *m = model_new();
    int bad = 0;
    fill(log, m, 60, 1000, &bad);
    CHECK(!bad);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int64_t end = sl_log_end_offset(log);
    sl_log_close(log);
    sl_storage_fsync = counting_fsync;
    atomic_store(&g_fsyncs, 0);
    CHECK_EQ(sl_log_open_synced(dir, &c, &log), SL_OK);
    CHECK_EQ(atomic_load(&g_fsyncs), 0);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(sl_log_durable_offset(log), end);
    for (int64_t off = 0; off < end; off += 5) CHECK(check_read(log, m, off, 500) > 0);
    int64_t last = last_seg_base(m, dir);
    sl_log_close(log);
    /* A torn tail: cut, and the cut made durable even so. */
    char p[256];
    seg_file(p, sizeof p, dir, last, ".log");
    CHECK_EQ(truncate(p, file_size(p) - 3), 0);
    atomic_store(&g_fsyncs, 0);
    CHECK_EQ(sl_log_open_synced(dir, &c, &log), SL_OK);
    CHECK(atomic_load(&g_fsyncs) > 0);
    CHECK(sl_log_end_offset(log) < end);
    sl_storage_fsync = fsync;
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}
