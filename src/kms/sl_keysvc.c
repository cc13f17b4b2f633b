#include "kms/sl_keysvc.h"

#include <stdlib.h>

/* Stub until the key service lands: encryption stays off. */
sl_err sl_keysvc_open(const sl_config *cfg, sl_events *hub, sl_keysvc **out, char *err,
                      size_t errlen) {
    *out = NULL;
    return SL_OK;
}
void sl_keysvc_close(sl_keysvc *ks) {}
int sl_keysvc_fd(const sl_keysvc *ks) { return -1; }
void sl_keysvc_dispatch(sl_keysvc *ks) {}
void sl_keysvc_tick(sl_keysvc *ks, int64_t now_ms) {}
sl_err sl_keysvc_topic_ensure_sync(sl_keysvc *ks, const uint8_t topic_id[16], const char *name,
                                   char *err, size_t errlen) {
    return SL_OK;
}
sl_err sl_keysvc_log_keys(sl_keysvc *ks, const uint8_t topic_id[16], int32_t partition,
                          int64_t log_end, sl_log_keys *out) {
    return SL_ESTATE;
}
uint32_t sl_keysvc_topic_version(sl_keysvc *ks, const uint8_t topic_id[16]) { return 0; }
sl_err sl_keysvc_seal_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen) {
    return SL_ESTATE;
}
sl_err sl_keysvc_open_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen) {
    return SL_ESTATE;
}
bool sl_keysvc_is_sealed_blob(const uint8_t *p, size_t n) { return false; }
void sl_keysvc_op(sl_keysvc *ks, sl_keyop op, const uint8_t topic_id[16], uint32_t version,
                  const char *reason, sl_keysvc_cb cb, void *ctx) {
    cb(ctx, SL_ESTATE, "encryption at rest is not built yet");
}
void sl_keysvc_status_json(sl_keysvc *ks, sl_text *out) {}
void sl_keysvc_on_shred(sl_keysvc *ks, void (*fn)(void *ctx, const uint8_t topic_id[16]),
                        void *ctx) {}
