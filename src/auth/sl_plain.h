/* SASL PLAIN message (RFC 4616): [authzid] NUL authcid NUL passwd. Views into the message;
 * nothing is copied or allocated. */
#ifndef SL_AUTH_PLAIN_H
#define SL_AUTH_PLAIN_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_err.h"

#define SL_PLAIN_MAX_FIELD 255

typedef struct sl_plain_msg {
    sl_str authzid, authcid, passwd;
} sl_plain_msg;

/* SL_EPROTO unless there are exactly two NULs, authcid and passwd are non-empty, every field is
 * at most SL_PLAIN_MAX_FIELD bytes, and authzid is empty or equal to authcid (Sluice does not
 * let one user act as another). */
sl_err sl_plain_parse(const uint8_t *msg, size_t len, sl_plain_msg *out);

#endif
