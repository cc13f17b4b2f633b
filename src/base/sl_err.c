#include "sl_err.h"

#define SL_ERR_MSG_ITEM(name, code, msg)  msg,
#define SL_ERR_NAME_ITEM(name, code, msg) #name,
#define SL_ERR_CODE_ITEM(name, code, msg) code,
static const char *const k_msg[] = {SL_ERRORS(SL_ERR_MSG_ITEM)};
static const char *const k_name[] = {SL_ERRORS(SL_ERR_NAME_ITEM)};
static const int16_t k_code[] = {SL_ERRORS(SL_ERR_CODE_ITEM)};

const char *sl_strerror(sl_err e) {
    return (unsigned)e < SL_ERR__COUNT ? k_msg[e] : "unknown error";
}

const char *sl_errname(sl_err e) { return (unsigned)e < SL_ERR__COUNT ? k_name[e] : "SL_E?"; }

int16_t sl_err_to_kafka(sl_err e) {
    return (unsigned)e < SL_ERR__COUNT ? k_code[e] : SL_KAFKA_UNKNOWN_SERVER_ERROR;
}
