/* The audit trail (sl_audit.h). Placeholder until the trail lands: no sinks. */
#include "audit/sl_audit.h"

#include <stdio.h>
#include <string.h>

sl_err sl_audit_new(const sl_config *cfg, const sl_audit_env *env, sl_audit **out, char *err,
                    size_t elen) {
    *out = NULL;
    return SL_OK;
}

void sl_audit_free(sl_audit *a) {}

bool sl_audit_accepting(const sl_audit *a) { return true; }

void sl_audit_stats_get(const sl_audit *a, sl_audit_stats *out) { memset(out, 0, sizeof *out); }

int sl_audit_cli(int argc, char **argv) {
    fprintf(stderr, "sluice audit: not available\n");
    return 2;
}
