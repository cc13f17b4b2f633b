/* Detections (sl_guard.h). Placeholder until the rules land. */
#include "guard/sl_guard.h"

#include <string.h>

sl_guard *sl_guard_new(const sl_config *cfg, const sl_guard_env *env) { return NULL; }

void sl_guard_free(sl_guard *g) {}

const char *sl_guard_refuse(sl_guard *g, const char *ip) { return NULL; }

int sl_guard_recent(const sl_guard *g, sl_guard_finding *out, int max) { return 0; }

void sl_guard_stats_get(const sl_guard *g, sl_guard_stats *out) { memset(out, 0, sizeof *out); }

uint64_t sl_guard_findings_by_rule(const sl_guard *g, const char *rule) { return 0; }
