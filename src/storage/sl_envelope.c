#include "storage/sl_envelope.h"

/* Stub until the storage work lands. */
size_t sl_envelope_encode(const sl_envelope *e, uint8_t *out, size_t cap) { return 0; }
sl_frame_status sl_envelope_decode(const uint8_t *p, size_t n, sl_envelope *e) {
    return SL_FRAME_CORRUPT;
}
