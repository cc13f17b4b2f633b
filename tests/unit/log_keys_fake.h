/* An in-test key service for partition logs (sl_log_keys_ops), shared by test_log_crypt.c and
 * test_cleaner.c: topic keys per version in memory, DEKs wrapped with sl_kwp_wrap under a context
 * binding topic, partition, segment base and DEK id (as the real service does). Also what their
 * tamper tests do to a segment file image. */
#ifndef SL_TEST_LOG_KEYS_FAKE_H
#define SL_TEST_LOG_KEYS_FAKE_H
#include <stddef.h>
#include <stdint.h>

#include "crypto/sl_aead.h"
#include "storage/sl_log.h"

typedef struct tkeys {
    uint8_t tk[4][SL_AEAD_KEY]; /* topic key per version 1..3 */
    uint32_t tk_version;        /* version dek_new wraps under */
    int n_new, n_open;
    sl_err fail_new;  /* dek_new fails with this when set */
    sl_err fail_open; /* dek_open fails with this when set */
} tkeys;

/* The ops; ctx is a tkeys. */
extern const sl_log_keys_ops k_tops;
/* Random topic keys for versions 1..3; new DEKs under version 1. */
void tkeys_init(tkeys *t);
/* Keys for a log of topic `topic_byte` x 16, partition `part`, plaintext below `plain_below`. */
sl_log_keys mkkeys(tkeys *t, uint8_t topic_byte, int32_t part, int64_t plain_below);

/* Position of frame `k` (0 = first) in a segment file image of n bytes. */
size_t frame_pos(const uint8_t *f, size_t n, int k);
/* What an attacker does after editing the frame at `pos`: recompute its CRCs (they are not
 * MACs). */
void fix_frame_crcs(uint8_t *f, size_t pos);
/* The same for the envelope of an encrypted segment's header. */
void fix_envelope_crc(uint8_t *f);

#endif
