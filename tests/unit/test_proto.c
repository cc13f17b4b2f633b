/* Protocol codec tests: exhaustive round trips over every defined message and version,
 * hand-built wire bytes from the spec, and malformed inputs. */
#include <stdio.h>
#include <string.h>

#include "proto/gen/sl_msgs.h"
#include "sl_test.h"

/* Generated in tests/unit/test_proto_fill.c. */
bool sl_test_proto_fill(int16_t key, bool response, void *m, sl_arena *a, int16_t version,
                        uint64_t *seed);

enum { SEEDS_PER_VERSION = 24 };

/* Encodes a filled message, decodes it, re-encodes it; the encodings must match. Returns
 * a description of the failure or NULL. `out`/`out_len` receive the first encoding. */
static const char *roundtrip(const sl_msg_codec *c, int16_t v, uint64_t seed, sl_arena *a,
                             const uint8_t **out, size_t *out_len) {
    void *m1 = sl_arena_calloc(a, 1, c->size);
    void *m2 = sl_arena_calloc(a, 1, c->size);
    c->init(m1);
    if (!sl_test_proto_fill(c->key, c->response, m1, a, v, &seed)) return "no fill function";
    sl_wr w1, w2;
    sl_wr_init(&w1, a, 64);
    c->encode(&w1, v, m1);
    if (w1.err) return "first encode failed";
    sl_rd r = sl_rd_init(w1.buf, w1.len);
    if (c->decode(&r, a, v, m2) != SL_OK) return "decode failed";
    if (sl_rd_left(&r) != 0) return "decode left bytes";
    sl_wr_init(&w2, a, 64);
    c->encode(&w2, v, m2);
    if (w2.err) return "second encode failed";
    if (w1.len != w2.len || memcmp(w1.buf, w2.buf, w1.len) != 0) return "encodings differ";
    *out = w1.buf;
    *out_len = w1.len;
    return NULL;
}

SL_TEST(proto_roundtrip_every_message_and_version) {
    size_t n;
    const sl_api_info *apis = sl_api_all(&n);
    int pairs = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (int side = 0; side < 2; side++) {
            const sl_msg_codec *c = sl_msg_codec_get(apis[i].key, side);
            CHECK(c != NULL);
            for (int16_t v = apis[i].min_version; v <= apis[i].max_version; v++) {
                for (uint64_t s = 1; s <= SEEDS_PER_VERSION; s++) {
                    sl_arena *a = sl_arena_new(4096);
                    const uint8_t *enc;
                    size_t len;
                    const char *why =
                        roundtrip(c, v, s * 0x9E3779B97F4A7C15ULL + (uint64_t)v, a, &enc, &len);
                    if (why) {
                        fprintf(stderr, "  %s v%d seed %llu: %s\n", c->name, v,
                                (unsigned long long)s, why);
                        bad++;
                    }
                    sl_arena_free(a);
                }
                pairs++;
            }
        }
    }
    fprintf(stderr, "  round-trip: %d (message, version) pairs x %d seeds\n", pairs,
            SEEDS_PER_VERSION);
    CHECK_EQ(bad, 0);
}

/* Every strict prefix of a valid encoding must be rejected, never crash. */
SL_TEST(proto_truncated_everywhere) {
    size_t n;
    const sl_api_info *apis = sl_api_all(&n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (int side = 0; side < 2; side++) {
            const sl_msg_codec *c = sl_msg_codec_get(apis[i].key, side);
            for (int16_t v = apis[i].min_version; v <= apis[i].max_version; v++) {
                sl_arena *a = sl_arena_new(4096);
                const uint8_t *enc;
                size_t len;
                CHECK(roundtrip(c, v, 77 + (uint64_t)v, a, &enc, &len) == NULL);
                void *m = sl_arena_calloc(a, 1, c->size);
                for (size_t cut = 0; cut < len; cut++) {
                    /* A private copy so ASan catches any read past the cut. */
                    uint8_t *p = sl_arena_dup(a, enc, cut ? cut : 1);
                    sl_rd r = sl_rd_init(p, cut);
                    if (c->decode(&r, a, v, m) != SL_EPROTO) bad++;
                }
                sl_arena_free(a);
            }
        }
    }
    CHECK_EQ(bad, 0);
}

static bool bytes_eq(const sl_wr *w, const uint8_t *want, size_t n) {
    return w->len == n && memcmp(w->buf, want, n) == 0;
}

/* An ApiVersions v3 request as librdkafka sends it: header v2, then compact strings. */
SL_TEST(proto_api_versions_v3_request_wire) {
    static const uint8_t frame[] = {
        0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,                /* key 18, v3, corr 1 */
        0x00, 0x07, 'r',  'd',  'k',  'a',  'f',  'k',  'a',           /* client_id "rdkafka" */
        0x00,                                                          /* header tagged fields */
        0x0b, 'l',  'i',  'b',  'r',  'd',  'k',  'a',  'f', 'k', 'a', /* compact "librdkafka" */
        0x06, '2',  '.',  '3',  '.',  '0',                             /* compact "2.3.0" */
        0x00,                                                          /* body tagged fields */
    };
    sl_arena *a = sl_arena_new(1024);
    sl_rd r = sl_rd_init(frame, sizeof frame);
    sl_req_header h;
    sl_api_versions_req req;
    bool ok = sl_req_header_decode(&r, &h) == SL_OK && h.api_key == SL_API_API_VERSIONS &&
              h.api_version == 3 && h.correlation_id == 1 && sl_str_eqc(h.client_id, "rdkafka") &&
              sl_api_versions_req_decode(&r, a, 3, &req) == SL_OK && sl_rd_left(&r) == 0 &&
              sl_str_eqc(req.client_software_name, "librdkafka") &&
              sl_str_eqc(req.client_software_version, "2.3.0");
    sl_wr w;
    sl_wr_init(&w, a, 16);
    sl_req_header_encode(&w, &h);
    sl_api_versions_req_encode(&w, 3, &req);
    ok = ok && bytes_eq(&w, frame, sizeof frame);
    sl_arena_free(a);
    CHECK(ok);
}

SL_TEST(proto_metadata_v0_request_wire) {
    static const uint8_t body[] = {0, 0, 0, 2, 0, 3, 'f', 'o', 'o', 0, 1, 'b'};
    sl_arena *a = sl_arena_new(1024);
    sl_rd r = sl_rd_init(body, sizeof body);
    sl_metadata_req m;
    bool ok = sl_metadata_req_decode(&r, a, 0, &m) == SL_OK && sl_rd_left(&r) == 0 &&
              m.topics_count == 2 && sl_str_eqc(m.topics[0].name, "foo") &&
              sl_str_eqc(m.topics[1].name, "b") && m.allow_auto_topic_creation == true;
    sl_wr w;
    sl_wr_init(&w, a, 16);
    sl_metadata_req_encode(&w, 0, &m);
    ok = ok && bytes_eq(&w, body, sizeof body);
    /* v0 has no null topic list: -1 is malformed there, but "all topics" from v1. */
    static const uint8_t null_topics[] = {0xff, 0xff, 0xff, 0xff};
    r = sl_rd_init(null_topics, sizeof null_topics);
    ok = ok && sl_metadata_req_decode(&r, a, 0, &m) == SL_EPROTO;
    r = sl_rd_init(null_topics, sizeof null_topics);
    ok = ok && sl_metadata_req_decode(&r, a, 1, &m) == SL_OK && m.topics_count == -1;
    sl_arena_free(a);
    CHECK(ok);
}

/* Tagged fields: only non-default ones are written, in tag order, each sized. */
SL_TEST(proto_fetch_response_tagged_wire) {
    sl_arena *a = sl_arena_new(1024);
    sl_fetch_resp m;
    sl_fetch_resp_init(&m);
    sl_fetch_resp_partition p;
    sl_fetch_resp_topic t;
    memset(&t, 0, sizeof t);
    memset(&p, 0, sizeof p);
    p.partition_index = 1;
    p.high_watermark = 5;
    p.last_stable_offset = -1;
    p.log_start_offset = -1;
    p.diverging_epoch.epoch = -1;
    p.diverging_epoch.end_offset = -1;
    p.current_leader.leader_id = 3;
    p.current_leader.leader_epoch = 7;
    p.snapshot_id.end_offset = -1;
    p.snapshot_id.epoch = -1;
    p.preferred_read_replica = -1;
    p.records = SL_BYTES_NULL;
    t.topic_id.b[15] = 9;
    t.partitions = &p;
    t.partitions_count = 1;
    m.responses = &t;
    m.responses_count = 1;
    sl_wr w;
    sl_wr_init(&w, a, 16);
    sl_fetch_resp_encode(&w, 13, &m);
    static const uint8_t want[] = {
        0,    0,    0,    0,                                                    /* throttle */
        0,    0,                                                                /* error */
        0,    0,    0,    0,                                                    /* session */
        2,                                                                      /* 1 topic */
        0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 9, /* topic id */
        2,                                                                      /* 1 partition */
        0,    0,    0,    1,                                                    /* index */
        0,    0,                                                                /* error */
        0,    0,    0,    0,    0,    0,    0,    5,                            /* hwm */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,                         /* lso */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,                         /* log start */
        1,                      /* aborted: empty (0 would be null) */
        0xff, 0xff, 0xff, 0xff, /* preferred read replica */
        0,                      /* records: null */
        1,    1,    9,    0,    0,    0,    3,    0,    0, 0, 7, 0, /* 1 tag: #1 size 9 {3, 7, no
                                                                       tags} */
        0,                                                          /* topic tags */
        0,                                                          /* top-level tags */
    };
    bool ok = bytes_eq(&w, want, sizeof want);
    sl_rd r = sl_rd_init(w.buf, w.len);
    sl_fetch_resp d;
    ok = ok && sl_fetch_resp_decode(&r, a, 13, &d) == SL_OK && sl_rd_left(&r) == 0 &&
         d.responses[0].partitions[0].current_leader.leader_epoch == 7 &&
         d.responses[0].partitions[0].diverging_epoch.epoch == -1;
    sl_arena_free(a);
    CHECK(ok);
}

SL_TEST(proto_response_header_versions) {
    sl_arena *a = sl_arena_new(256);
    sl_wr w;
    sl_wr_init(&w, a, 16);
    sl_resp_header_encode(&w, SL_API_API_VERSIONS, 3, 42); /* always v0 */
    bool ok = w.len == 4;
    sl_resp_header_encode(&w, SL_API_METADATA, 9, 42); /* flexible: v1 */
    ok = ok && w.len == 9 && w.buf[8] == 0;
    sl_resp_header_encode(&w, SL_API_METADATA, 8, 42);
    ok = ok && w.len == 13;
    sl_arena_free(a);
    CHECK(ok);
    CHECK(sl_api_lookup(SL_API_PRODUCE) && sl_api_lookup(SL_API_PRODUCE)->flexible_from == 9);
    CHECK(sl_api_lookup(-1) == NULL && sl_api_lookup(9999) == NULL);
    CHECK(!sl_api_flexible(SL_API_FETCH, 11) && sl_api_flexible(SL_API_FETCH, 12));
}

/* Unknown API keys get header v1: no tagged section is consumed. */
SL_TEST(proto_request_header_unknown_key) {
    static const uint8_t frame[] = {0x7f, 0x00, 0, 50, 0, 0, 0, 9, 0xff, 0xff, 0x01};
    sl_rd r = sl_rd_init(frame, sizeof frame);
    sl_req_header h;
    CHECK_EQ(sl_req_header_decode(&r, &h), SL_OK);
    CHECK_EQ(h.client_id.len, -1);
    CHECK_EQ(sl_rd_left(&r), 1);
}

SL_TEST(proto_malformed_counts_and_lengths) {
    sl_arena *a = sl_arena_new(1024);
    sl_metadata_req m;
    sl_produce_req p;
    /* A count far beyond what the bytes could hold is refused before allocating. */
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 1, 'x'};
    sl_rd r = sl_rd_init(huge, sizeof huge);
    bool ok = sl_metadata_req_decode(&r, a, 1, &m) == SL_EPROTO;
    size_t used = sl_arena_used(a);
    ok = ok && used < 1024;
    /* Negative counts other than -1. */
    static const uint8_t neg[] = {0xff, 0xff, 0xff, 0xfe};
    r = sl_rd_init(neg, sizeof neg);
    ok = ok && sl_metadata_req_decode(&r, a, 1, &m) == SL_EPROTO;
    /* Compact count whose uvarint overflows 32 bits, and one that is 2^32-1 (len 2^32-2). */
    static const uint8_t ovf[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0};
    r = sl_rd_init(ovf, sizeof ovf);
    ok = ok && sl_metadata_req_decode(&r, a, 9, &m) == SL_EPROTO;
    static const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0};
    r = sl_rd_init(big, sizeof big);
    ok = ok && sl_metadata_req_decode(&r, a, 9, &m) == SL_EPROTO;
    /* Produce v9: compact transactional id with a length past the end. */
    static const uint8_t longstr[] = {0x10, 'a', 'b'};
    r = sl_rd_init(longstr, sizeof longstr);
    ok = ok && sl_produce_req_decode(&r, a, 9, &p) == SL_EPROTO;
    /* A null topic name in a non-nullable position (Produce v3). */
    static const uint8_t nullname[] = {0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff};
    r = sl_rd_init(nullname, sizeof nullname);
    ok = ok && sl_produce_req_decode(&r, a, 3, &p) == SL_EPROTO;
    /* A known tagged field whose declared size does not match its contents. */
    static const uint8_t badtag[] = {
        0, 0, 0, 0,                                                       /* replica id */
        0, 0, 0, 0, 0,   0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* waits..epoch */
        1, 1, 0, 0,          /* topics, forgotten, rack id */
        1, 0, 3, 2, 'a', 'b' /* 1 tag: cluster_id size 3 holding a 4-byte string */
    };
    r = sl_rd_init(badtag, sizeof badtag);
    sl_fetch_req f;
    ok = ok && sl_fetch_req_decode(&r, a, 12, &f) == SL_EPROTO;
    /* Versions outside the defined range. */
    r = sl_rd_init(huge, sizeof huge);
    ok = ok && sl_metadata_req_decode(&r, a, 13, &m) == SL_EVERSION;
    sl_arena_free(a);
    CHECK(ok);
}

/* Unknown tagged fields are skipped. */
SL_TEST(proto_unknown_tags_skipped) {
    /* ApiVersions v3 request: two empty compact strings, then 2 tags: #9 (empty), #3 ("z"). */
    static const uint8_t frame[] = {0x01, 0x01, 0x02, 9, 0, 3, 1, 'z'};
    sl_arena *a = sl_arena_new(256);
    sl_rd r = sl_rd_init(frame, sizeof frame);
    sl_api_versions_req m;
    bool ok = sl_api_versions_req_decode(&r, a, 3, &m) == SL_OK && sl_rd_left(&r) == 0 &&
              m.client_software_name.len == 0;
    sl_arena_free(a);
    CHECK(ok);
}

/* A tagged field whose bytes include a referenced range: its size counts the range and the
 * output equals the copied encoding. */
SL_TEST(proto_tagged_field_around_referenced_bytes) {
    sl_arena *a = sl_arena_new(1024);
    static uint8_t big[3000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
    sl_wr plain, ref;
    sl_wr_init(&plain, a, 16);
    sl_wr_init(&ref, a, 16);
    sl_wr_enable_refs(&ref, 1000);
    sl_wr *ws[2] = {&plain, &ref};
    for (int k = 0; k < 2; k++) {
        sl_wr *w = ws[k];
        sl_pw_records(w, true, true, (sl_bytes){big, 1500}); /* before the field: not moved */
        size_t mark = sl_pw_tag_begin(w, 3);
        sl_wr_i16(w, 7);
        sl_pw_records(w, true, true, (sl_bytes){big, (int32_t)sizeof big});
        sl_wr_i8(w, 1);
        sl_pw_tag_end(w, mark);
        sl_wr_i8(w, 9);
    }
    CHECK_EQ(ref.nrefs, 2);
    struct iovec *iov;
    int n = sl_wr_iov(&ref, &iov);
    CHECK(n > 0);
    static uint8_t joined[8192];
    size_t jl = 0;
    for (int i = 0; i < n && jl + iov[i].iov_len <= sizeof joined; i++) {
        memcpy(joined + jl, iov[i].iov_base, iov[i].iov_len);
        jl += iov[i].iov_len;
    }
    CHECK_EQ(jl, plain.len);
    CHECK(memcmp(joined, plain.buf, plain.len) == 0);
    sl_arena_free(a);
}
