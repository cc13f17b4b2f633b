/* Metrics, health and the status page (docs/metrics.md): an HTTP listener of its own
 * (sluice.metrics.listener, loopback by default, optional TLS and bearer token) on the broker's
 * loop, serving
 *   /metrics  Prometheus text exposition, in the JMX-exporter/Strimzi names Kafka dashboards
 *             query, plus the security metrics (authentication failures, denials, TLS, audit);
 *   /healthz  200 while the loop runs;  /readyz  200 once listeners are bound and the audit
 *             trail accepts events;
 *   /         a self-contained status page drawn from the same counters.
 * Counters are fed by the event hub (src/events) and, for gauges, read from the broker when
 * scraped. Loop thread only. */
#ifndef SL_METRICS_H
#define SL_METRICS_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_err.h"

struct sl_broker;
typedef struct sl_metrics sl_metrics;

/* Subscribes to b->events and binds the listener of b->cfg.sluice_metrics_listener (empty:
 * *out is NULL and SL_OK). `b` is borrowed and must outlive the metrics. A listener that cannot
 * be bound, or an unreadable keystore or token file, fails naming the key. Caller owns *out. */
sl_err sl_metrics_new(struct sl_broker *b, sl_metrics **out, char *err, size_t elen);
/* Closes the listener and its connections and frees; NULL is a no-op. */
void sl_metrics_free(sl_metrics *m);
/* The bound port (for sluice.metrics.listener with port 0), 0 when off. */
int sl_metrics_port(const sl_metrics *m);
/* The https endpoint (NULL for http or off), owned by the metrics: the broker reloads it with its
 * Kafka listeners' certificates (SIGHUP, file change) and watches its expiry. Named
 * SL_METRICS_TLS_NAME in logs, events and the certificate metric's `listener` label. */
#define SL_METRICS_TLS_NAME "metrics"
struct sl_tls_endpoint;
struct sl_tls_endpoint *sl_metrics_tls(const sl_metrics *m);

#endif
