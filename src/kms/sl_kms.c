#include "kms/sl_kms.h"

#include <stdio.h>
#include <string.h>

sl_err sl_kms_open(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    static const struct {
        const char *name;
        sl_err (*make)(const sl_config *, sl_kms **, char *, size_t);
    } k_providers[] = {
        {"local", sl_kms_local_new},
        {"pkcs11", sl_kms_pkcs11_new},
        {"kmip", sl_kms_kmip_new},
        {"aws-kms", sl_kms_aws_new},
    };
    for (size_t i = 0; i < sizeof k_providers / sizeof *k_providers; i++)
        if (!strcmp(cfg->sluice_kms_provider, k_providers[i].name))
            return k_providers[i].make(cfg, out, err, errlen);
    snprintf(err, errlen, "sluice.kms.provider: unknown provider \"%s\"", cfg->sluice_kms_provider);
    return SL_ECONFIG;
}
