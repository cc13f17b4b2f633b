#include "sl_kerr.h"

#include <stddef.h>

/* A switch rather than a table indexed by code: codes start at -1 and may gain gaps. The compiler
 * rejects a duplicate code as a duplicate case label. */
#define SL_KAFKA_NAME_CASE(name, code, retriable, msg)                                             \
    case code:                                                                                     \
        return #name;
#define SL_KAFKA_MSG_CASE(name, code, retriable, msg)                                              \
    case code:                                                                                     \
        return msg;
#define SL_KAFKA_RETRIABLE_CASE(name, code, retriable, msg)                                        \
    case code:                                                                                     \
        return retriable;

const char *sl_kafka_err_name(int16_t code) {
    switch (code) { SL_KAFKA_ERRORS(SL_KAFKA_NAME_CASE) }
    return NULL;
}

const char *sl_kafka_err_message(int16_t code) {
    switch (code) { SL_KAFKA_ERRORS(SL_KAFKA_MSG_CASE) }
    return "Unknown Kafka error code.";
}

bool sl_kafka_err_retriable(int16_t code) {
    switch (code) { SL_KAFKA_ERRORS(SL_KAFKA_RETRIABLE_CASE) }
    return false;
}
