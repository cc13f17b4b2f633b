#include <string.h>

#include "base/sl_err.h"
#include "base/sl_kerr.h"
#include "sl_test.h"

#define ROW(name, code, retriable, msg) {#name, code, retriable, msg},
static const struct {
    const char *name;
    int code;
    bool retriable;
    const char *msg;
} k_rows[] = {SL_KAFKA_ERRORS(ROW)};
#undef ROW
enum { NROWS = sizeof k_rows / sizeof *k_rows };

SL_TEST(kerr_codes_and_names_unique) {
    CHECK(NROWS > 100);
    for (int i = 0; i < NROWS; i++) {
        CHECK(k_rows[i].msg[0] != '\0');
        for (int j = i + 1; j < NROWS; j++) {
            CHECK(k_rows[i].code != k_rows[j].code);
            CHECK(strcmp(k_rows[i].name, k_rows[j].name) != 0);
        }
        /* The lookups find each row by its code. */
        CHECK(strcmp(sl_kafka_err_name((int16_t)k_rows[i].code), k_rows[i].name) == 0);
        CHECK(strcmp(sl_kafka_err_message((int16_t)k_rows[i].code), k_rows[i].msg) == 0);
        CHECK_EQ(sl_kafka_err_retriable((int16_t)k_rows[i].code), k_rows[i].retriable);
    }
}

/* Wire values clients depend on; a typo in the list would change the protocol. */
SL_TEST(kerr_known_values) {
    CHECK_EQ(SL_KAFKA_UNKNOWN_SERVER_ERROR, -1);
    CHECK_EQ(SL_KAFKA_NONE, 0);
    CHECK_EQ(SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION, 3);
    CHECK_EQ(SL_KAFKA_NOT_COORDINATOR, 16);
    CHECK_EQ(SL_KAFKA_REBALANCE_IN_PROGRESS, 27);
    CHECK_EQ(SL_KAFKA_TOPIC_AUTHORIZATION_FAILED, 29);
    CHECK_EQ(SL_KAFKA_UNSUPPORTED_VERSION, 35);
    CHECK_EQ(SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER, 45);
    CHECK_EQ(SL_KAFKA_INVALID_PRODUCER_EPOCH, 47);
    CHECK_EQ(SL_KAFKA_SECURITY_DISABLED, 54);
    CHECK_EQ(SL_KAFKA_SASL_AUTHENTICATION_FAILED, 58);
    CHECK_EQ(SL_KAFKA_FETCH_SESSION_ID_NOT_FOUND, 70);
    CHECK_EQ(SL_KAFKA_TOPIC_DELETION_DISABLED, 73);
    CHECK_EQ(SL_KAFKA_INVALID_RECORD, 87);
    CHECK_EQ(SL_KAFKA_UNACCEPTABLE_CREDENTIAL, 93);
    CHECK_EQ(SL_KAFKA_UNKNOWN_TOPIC_ID, 100);
    CHECK_EQ(SL_KAFKA_MISMATCHED_ENDPOINT_TYPE, 114);
    CHECK(strcmp(sl_kafka_err_name(29), "TOPIC_AUTHORIZATION_FAILED") == 0);
    CHECK(strcmp(sl_kafka_err_name(58), "SASL_AUTHENTICATION_FAILED") == 0);
    CHECK(strcmp(sl_kafka_err_name(100), "UNKNOWN_TOPIC_ID") == 0);
    CHECK(strcmp(sl_kafka_err_name(-1), "UNKNOWN_SERVER_ERROR") == 0);
    CHECK(sl_kafka_err_name(-2) == NULL);
    CHECK(sl_kafka_err_name(30000) == NULL);
    CHECK(sl_kafka_err_message(30000)[0] != '\0');
}

SL_TEST(kerr_retriable_flags) {
    CHECK(sl_kafka_err_retriable(SL_KAFKA_NOT_COORDINATOR));
    CHECK(sl_kafka_err_retriable(SL_KAFKA_COORDINATOR_NOT_AVAILABLE));
    CHECK(sl_kafka_err_retriable(SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION));
    CHECK(sl_kafka_err_retriable(SL_KAFKA_NOT_LEADER_OR_FOLLOWER));
    CHECK(sl_kafka_err_retriable(SL_KAFKA_REQUEST_TIMED_OUT));
    CHECK(sl_kafka_err_retriable(SL_KAFKA_KAFKA_STORAGE_ERROR));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_NONE));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_UNKNOWN_SERVER_ERROR));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_TOPIC_AUTHORIZATION_FAILED));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_SASL_AUTHENTICATION_FAILED));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_INVALID_PRODUCER_EPOCH));
    CHECK(!sl_kafka_err_retriable(SL_KAFKA_UNKNOWN_PRODUCER_ID));
    CHECK(!sl_kafka_err_retriable(30000));
}

/* Every internal error maps to a code the table knows. */
SL_TEST(kerr_internal_errors_map_to_listed_codes) {
    for (int e = 0; e < SL_ERR__COUNT; e++)
        CHECK(sl_kafka_err_name(sl_err_to_kafka((sl_err)e)) != NULL);
    CHECK_EQ(sl_err_to_kafka(SL_OK), SL_KAFKA_NONE);
    CHECK_EQ(sl_err_to_kafka(SL_EAUTH), SL_KAFKA_SASL_AUTHENTICATION_FAILED);
    CHECK_EQ(sl_err_to_kafka(SL_ENOTFOUND), SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(sl_err_to_kafka((sl_err)SL_ERR__COUNT), SL_KAFKA_UNKNOWN_SERVER_ERROR);
}
