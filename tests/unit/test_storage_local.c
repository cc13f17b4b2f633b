/* The local storage backend behind the data-path seam (pipeline/sl_backend.h), driven through
 * the interface alone: append with its durability callback, read, offsets, and the "appended"
 * event as parked fetches use it (a subscriber completing unsubscribes others during the walk). */
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "local_broker.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"

/* A broker with just what the local backend uses: the registry, one topic, the flusher. */
typedef struct fixture {
    char dir[64];
    sl_broker b;
    sl_storage st;
    sl_arena *a;
} fixture;

static bool fixture_open(fixture *f, int32_t npart) {
    memset(f, 0, sizeof *f);
    if (!local_broker_open(f->dir, "sl_stlocal", &f->b, npart)) return false;
    if (sl_flusher_new(&f->b.flusher)) return false;
    f->st = sl_storage_local(&f->b);
    f->a = sl_arena_new(4096);
    return f->a != NULL;
}

static void fixture_close(fixture *f) {
    if (f->b.flusher) sl_flusher_free(f->b.flusher);
    sl_arena_free(f->a);
    local_broker_close(f->dir, &f->b);
}

static sl_spart *part(fixture *f, int32_t i) {
    sl_stopic *t = sl_storage_topic(&f->st, sl_str_c("t"), NULL);
    return t ? sl_storage_partition(&f->st, t, i) : NULL;
}

/* Runs flusher completions until `*done` or a 5 s deadline. */
static void await_flush(fixture *f, const int *done) {
    int64_t deadline = sl_mono_ms() + 5000;
    while (!*done && sl_mono_ms() < deadline) {
        struct pollfd pfd = {.fd = sl_flusher_fd(f->b.flusher), .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) sl_flusher_dispatch(f->b.flusher);
    }
}

typedef struct durable_seen {
    int calls;
    int16_t err;
} durable_seen;

static void on_durable(void *ctx, int16_t err) {
    durable_seen *d = ctx;
    d->calls++;
    d->err = err;
}

SL_TEST(storage_local_append_read_offsets) {
    fixture f;
    CHECK(fixture_open(&f, 2));
    CHECK(part(&f, 1) != NULL);
    CHECK(part(&f, 2) == NULL);
    CHECK(sl_storage_topic(&f.st, sl_str_c("nope"), NULL) == NULL);
    sl_spart *p = part(&f, 0);
    sl_spart_info pi;
    sl_storage_info(&f.st, p, &pi);
    CHECK(!strcmp(pi.topic, "t"));
    CHECK_EQ(pi.index, 0);
    CHECK(pi.max_message_bytes > 0);

    size_t len;
    uint8_t *batch = sl_batch_build(f.a, 1000, 3, "v", 1, &len);
    CHECK(batch);
    sl_append_result r;
    durable_seen d = {0};
    CHECK_EQ(sl_storage_append(&f.st, p, batch, len, f.a, &r, on_durable, &d), 0);
    CHECK_EQ(r.base_offset, 0);
    CHECK_EQ(r.records, 3);
    CHECK(!r.duplicate);
    CHECK_EQ(r.log_start, 0);
    CHECK_EQ(d.calls, 0); /* answered from a later loop callback, not inline */
    await_flush(&f, &d.calls);
    CHECK_EQ(d.calls, 1);
    CHECK_EQ(d.err, 0);

    batch = sl_batch_build(f.a, 2000, 2, "w", 1, &len);
    CHECK(batch);
    CHECK_EQ(sl_storage_append(&f.st, p, batch, len, f.a, &r, NULL, NULL), 0);
    CHECK_EQ(r.base_offset, 3);
    sl_spart_offsets off;
    sl_storage_offsets(&f.st, p, &off);
    CHECK_EQ(off.log_start, 0);
    CHECK_EQ(off.log_end, 5);
    CHECK_EQ(off.high_watermark, 5);

    uint8_t *data;
    size_t n;
    CHECK_EQ(sl_storage_read(&f.st, p, 3, 1 << 20, f.a, &data, &n), 0);
    CHECK_EQ(n, len);
    CHECK_EQ(sl_storage_read(&f.st, p, 6, 1 << 20, f.a, &data, &n), SL_KAFKA_OFFSET_OUT_OF_RANGE);
    int64_t o, ts;
    CHECK_EQ(sl_storage_offset_for_time(&f.st, p, 2000, &o, &ts), 0);
    CHECK_EQ(o, 3);
    CHECK_EQ(sl_storage_max_timestamp(&f.st, p, &o, &ts), 0);
    CHECK_EQ(ts, 2001);

    int64_t low;
    CHECK_EQ(sl_storage_delete_records(&f.st, p, 3, &low), 0);
    CHECK_EQ(low, 3);
    CHECK_EQ(sl_storage_delete_records(&f.st, p, 1, &low), 0); /* never moves back */
    CHECK_EQ(low, 3);
    CHECK_EQ(sl_storage_read(&f.st, p, 0, 1 << 20, f.a, &data, &n), SL_KAFKA_OFFSET_OUT_OF_RANGE);
    fixture_close(&f);
}

/* Subscribers as parked fetches: `group` members complete together (the first to hear
 * unsubscribes all of its group), others only count. */
typedef struct sub {
    sl_waiter w;
    const sl_storage *st;
    struct sub **group; /* NULL-terminated, or NULL */
    int heard;
    int64_t bytes;
} sub;

static void on_appended(sl_waiter *w, int64_t bytes) {
    sub *s = w->ctx;
    s->heard++;
    s->bytes = bytes;
    if (s->group)
        for (sub **g = s->group; *g; g++)
            if ((*g)->w.part) sl_storage_unsubscribe(s->st, &(*g)->w);
    if (bytes < 0 && s->w.part) sl_storage_unsubscribe(s->st, &s->w);
}

static void sub_init(sub *s, const sl_storage *st) {
    memset(s, 0, sizeof *s);
    s->st = st;
    s->w.fn = on_appended;
    s->w.ctx = s;
}

SL_TEST(storage_local_appended_event_each_subscriber_once) {
    fixture f;
    CHECK(fixture_open(&f, 1));
    sl_spart *p = part(&f, 0);
    sub s[4];
    for (int i = 0; i < 4; i++) sub_init(&s[i], &f.st);
    /* s[1] completes like a fetch parked on the partition twice: it takes itself and s[0] (its
     * other subscription, next in the walk and not yet told) out in the middle of the walk. */
    sub *group[] = {&s[1], &s[0], NULL};
    s[1].group = group;
    for (int i = 0; i < 4; i++) sl_storage_subscribe(&f.st, p, &s[i].w);
    size_t len;
    uint8_t *batch = sl_batch_build(f.a, 1, 1, "x", 1, &len);
    CHECK(batch);
    sl_append_result r;
    CHECK_EQ(sl_storage_append(&f.st, p, batch, len, f.a, &r, NULL, NULL), 0);
    /* Newest first: s[3], s[2], s[1] hear it once each (the walk starts over after s[1] changed
     * the list, skipping those already told); s[0] left before its turn. */
    CHECK_EQ(s[3].heard, 1);
    CHECK_EQ(s[2].heard, 1);
    CHECK_EQ(s[1].heard, 1);
    CHECK_EQ(s[0].heard, 0);
    CHECK_EQ(s[3].bytes, (int64_t)len);
    CHECK(s[1].w.part == NULL && s[0].w.part == NULL);
    CHECK(s[2].w.part != NULL && s[3].w.part != NULL);

    /* The topic going away: every remaining subscriber hears it once and leaves. */
    sl_topic *t = sl_topics_find(f.b.topics, sl_str_c("t"));
    CHECK(t);
    int32_t refs = t->refs;
    sl_storage_local_close_topic(&f.b, t);
    CHECK_EQ(s[3].heard, 2);
    CHECK_EQ(s[2].heard, 2);
    CHECK_EQ(s[3].bytes, -1);
    CHECK_EQ(s[2].bytes, -1);
    CHECK(t->parts[0]->waiters == NULL);
    CHECK_EQ(t->refs, refs - 2); /* their holds released */
    fixture_close(&f);
}
