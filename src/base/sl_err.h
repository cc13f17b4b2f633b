/* Sluice internal errors: one list yields the enum, the message and the Kafka wire code. */
#ifndef SL_ERR_H
#define SL_ERR_H
#include <stdint.h>

#include "sl_kerr.h"

/* X(name, Kafka wire code (sl_kerr.h), message) */
#define SL_ERRORS(X)                                                                               \
    X(SL_OK, SL_KAFKA_NONE, "ok")                                                                  \
    X(SL_EPROTO, SL_KAFKA_CORRUPT_MESSAGE, "malformed request")                                    \
    X(SL_ENOMEM, SL_KAFKA_UNKNOWN_SERVER_ERROR, "out of memory")                                   \
    X(SL_ECORRUPT, SL_KAFKA_CORRUPT_MESSAGE, "data failed its checksum or framing")                \
    X(SL_EIO, SL_KAFKA_KAFKA_STORAGE_ERROR, "storage I/O error")                                   \
    X(SL_ENOSPC, SL_KAFKA_KAFKA_STORAGE_ERROR, "no space left on the storage device")              \
    X(SL_EINVAL, SL_KAFKA_INVALID_REQUEST, "invalid request")                                      \
    X(SL_ECONFIG, SL_KAFKA_INVALID_CONFIG, "invalid configuration value")                          \
    X(SL_ENOTFOUND, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION, "unknown topic or partition")             \
    X(SL_EEXISTS, SL_KAFKA_TOPIC_ALREADY_EXISTS, "topic already exists")                           \
    X(SL_ERANGE, SL_KAFKA_OFFSET_OUT_OF_RANGE, "offset out of range")                              \
    X(SL_ETOOLARGE, SL_KAFKA_MESSAGE_TOO_LARGE, "message too large")                               \
    X(SL_ECOMPRESSION, SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE, "unsupported compression type")      \
    X(SL_EVERSION, SL_KAFKA_UNSUPPORTED_VERSION, "unsupported version")                            \
    X(SL_ETIMEOUT, SL_KAFKA_REQUEST_TIMED_OUT, "request timed out")                                \
    X(SL_ECLOSED, SL_KAFKA_UNKNOWN_SERVER_ERROR, "connection closed")                              \
    X(SL_EAUTH, SL_KAFKA_SASL_AUTHENTICATION_FAILED, "authentication failed")                      \
    X(SL_ESTATE, SL_KAFKA_UNKNOWN_SERVER_ERROR, "operation not valid in this state")               \
    X(SL_EPOLICY, SL_KAFKA_POLICY_VIOLATION, "rejected by policy")                                 \
    X(SL_ETAMPER, SL_KAFKA_KAFKA_STORAGE_ERROR, "stored data failed authentication")               \
    X(SL_EKEY_UNAVAILABLE, SL_KAFKA_KAFKA_STORAGE_ERROR, "encryption key not available now")       \
    X(SL_EKEY_DESTROYED, SL_KAFKA_KAFKA_STORAGE_ERROR, "encryption key destroyed (shredded)")      \
    X(SL_EKMS_UNAVAILABLE, SL_KAFKA_KAFKA_STORAGE_ERROR, "key management service unreachable")     \
    X(SL_EKMS_DENIED, SL_KAFKA_KAFKA_STORAGE_ERROR, "key management service refused")              \
    X(SL_EUNPROTECTABLE, SL_KAFKA_INVALID_RECORD,                                                  \
      "record cannot be protected by its topic's policy")

#define SL_ERR_ENUM_ITEM(name, code, msg) name,
typedef enum { SL_ERRORS(SL_ERR_ENUM_ITEM) SL_ERR__COUNT } sl_err;
#undef SL_ERR_ENUM_ITEM

/* Static string; never NULL. */
const char *sl_strerror(sl_err e);
/* Symbolic name, e.g. "SL_EPROTO". Static string. */
const char *sl_errname(sl_err e);
/* The one place internal errors meet Kafka wire codes (SL_KAFKA_*). */
int16_t sl_err_to_kafka(sl_err e);

#endif
