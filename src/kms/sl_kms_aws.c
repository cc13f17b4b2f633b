#include <stdio.h>

#include "kms/sl_kms.h"

/* Stub until the provider lands. */
sl_err sl_kms_aws_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    snprintf(err, errlen, "sluice.kms.provider: aws is not built yet");
    return SL_ECONFIG;
}
