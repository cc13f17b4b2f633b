/* Metrics (sl_metrics.h). Placeholder until the endpoint lands. */
#include "metrics/sl_metrics.h"

sl_err sl_metrics_new(struct sl_broker *b, sl_metrics **out, char *err, size_t elen) {
    *out = NULL;
    return SL_OK;
}

void sl_metrics_free(sl_metrics *m) {}

int sl_metrics_port(const sl_metrics *m) { return 0; }
