/* Sluice internal errors: one list yields the enum, the message and the Kafka wire code. */
#ifndef SL_ERR_H
#define SL_ERR_H
#include <stdint.h>

/* X(name, kafka_wire_code, message) */
#define SL_ERRORS(X)                                                                               \
    X(SL_OK, 0, "ok")                                                                              \
    X(SL_EPROTO, 2, "malformed request")                                                           \
    X(SL_ENOMEM, -1, "out of memory")                                                              \
    X(SL_ECORRUPT, 2, "data failed its checksum or framing")                                       \
    X(SL_EIO, 56, "storage I/O error")                                                             \
    X(SL_ENOSPC, 56, "no space left on the storage device")                                        \
    X(SL_EINVAL, 42, "invalid request")                                                            \
    X(SL_ECONFIG, 40, "invalid configuration value")                                               \
    X(SL_ENOTFOUND, 3, "unknown topic or partition")                                               \
    X(SL_EEXISTS, 36, "topic already exists")                                                      \
    X(SL_ERANGE, 1, "offset out of range")                                                         \
    X(SL_ETOOLARGE, 10, "message too large")                                                       \
    X(SL_ECOMPRESSION, 76, "unsupported compression type")                                         \
    X(SL_EVERSION, 35, "unsupported version")                                                      \
    X(SL_ETIMEOUT, 7, "request timed out")                                                         \
    X(SL_ECLOSED, -1, "connection closed")                                                         \
    X(SL_EAUTH, 58, "authentication failed")                                                       \
    X(SL_ESTATE, -1, "operation not valid in this state")                                          \
    X(SL_EPOLICY, 44, "rejected by policy")

#define SL_ERR_ENUM_ITEM(name, code, msg) name,
typedef enum { SL_ERRORS(SL_ERR_ENUM_ITEM) SL_ERR__COUNT } sl_err;
#undef SL_ERR_ENUM_ITEM

/* Static string; never NULL. */
const char *sl_strerror(sl_err e);
/* Symbolic name, e.g. "SL_EPROTO". Static string. */
const char *sl_errname(sl_err e);
/* The one place internal errors meet Kafka wire codes. -1 is UNKNOWN_SERVER_ERROR. */
int16_t sl_err_to_kafka(sl_err e);

/* Kafka wire error codes the broker answers with directly. */
enum {
    SL_KAFKA_NONE = 0,
    SL_KAFKA_UNKNOWN_SERVER_ERROR = -1,
    SL_KAFKA_OFFSET_OUT_OF_RANGE = 1,
    SL_KAFKA_CORRUPT_MESSAGE = 2,
    SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION = 3,
    SL_KAFKA_INVALID_FETCH_SIZE = 4,
    SL_KAFKA_NOT_LEADER_OR_FOLLOWER = 6,
    SL_KAFKA_REQUEST_TIMED_OUT = 7,
    SL_KAFKA_MESSAGE_TOO_LARGE = 10,
    SL_KAFKA_COORDINATOR_NOT_AVAILABLE = 15,
    SL_KAFKA_NOT_COORDINATOR = 16,
    SL_KAFKA_INVALID_TOPIC_EXCEPTION = 17,
    SL_KAFKA_RECORD_LIST_TOO_LARGE = 18,
    SL_KAFKA_INVALID_REQUIRED_ACKS = 21,
    SL_KAFKA_INVALID_TIMESTAMP = 32,
    SL_KAFKA_UNSUPPORTED_SASL_MECHANISM = 33,
    SL_KAFKA_ILLEGAL_SASL_STATE = 34,
    SL_KAFKA_UNSUPPORTED_VERSION = 35,
    SL_KAFKA_TOPIC_ALREADY_EXISTS = 36,
    SL_KAFKA_INVALID_PARTITIONS = 37,
    SL_KAFKA_INVALID_REPLICATION_FACTOR = 38,
    SL_KAFKA_INVALID_REPLICA_ASSIGNMENT = 39,
    SL_KAFKA_INVALID_CONFIG = 40,
    SL_KAFKA_INVALID_REQUEST = 42,
    SL_KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    SL_KAFKA_POLICY_VIOLATION = 44,
    SL_KAFKA_UNKNOWN_PRODUCER_ID = 59,
    SL_KAFKA_KAFKA_STORAGE_ERROR = 56,
    SL_KAFKA_SASL_AUTHENTICATION_FAILED = 58,
    SL_KAFKA_INVALID_RECORD = 87,
    SL_KAFKA_FENCED_LEADER_EPOCH = 74,
    SL_KAFKA_UNKNOWN_LEADER_EPOCH = 75,
    SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE = 76,
    SL_KAFKA_OFFSET_NOT_AVAILABLE = 78,
    SL_KAFKA_THROTTLING_QUOTA_EXCEEDED = 89,
    SL_KAFKA_UNKNOWN_TOPIC_ID = 100,
    SL_KAFKA_INCONSISTENT_TOPIC_ID = 103,
};

#endif
