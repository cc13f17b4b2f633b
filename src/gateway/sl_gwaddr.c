/* Address mapping and response address rewrites (sl_gwaddr.h). */
#include "gateway/sl_gwaddr.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define K_MODE    "sluice.gateway.address.mode"
#define K_HOST    "sluice.gateway.advertised.host"
#define K_BASE    "sluice.gateway.node.port.base"
#define K_COUNT   "sluice.gateway.node.port.count"
#define K_IDMIN   "sluice.gateway.node.id.min"
#define K_PATTERN "sluice.gateway.sni.pattern"
#define NODE_VAR  "$(nodeId)"

enum {
    DNS_NAME_MAX = 253, /* a server name, without a trailing dot */
    DNS_LABEL_MAX = 63,
    ID_DIGITS_MAX = 10, /* INT32_MAX */
};

static bool dns_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* An unspecified address, or none: nothing a client could connect to. */
static bool host_unusable(const char *h) {
    return !h || !*h || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0;
}

/* The pattern is a host name whose labels are letters, digits and '-', with NODE_VAR exactly
 * once, inside one label (so one wildcard certificate label covers every broker name), and
 * every name it yields (up to ten digits) is a valid DNS name. */
static sl_err parse_pattern(sl_gwaddr *a, const char *pat, char *err, size_t elen) {
    const char *var = strstr(pat, NODE_VAR);
    if (!var) {
        snprintf(err, elen, "%s: \"%s\" must contain %s", K_PATTERN, pat, NODE_VAR);
        return SL_ECONFIG;
    }
    if (strstr(var + 1, NODE_VAR)) {
        snprintf(err, elen, "%s: \"%s\" must contain %s exactly once", K_PATTERN, pat, NODE_VAR);
        return SL_ECONFIG;
    }
    size_t plen = (size_t)(var - pat), slen = strlen(var + strlen(NODE_VAR));
    const char *suf = var + strlen(NODE_VAR);
    if (plen >= sizeof a->sni_prefix || slen >= sizeof a->sni_suffix ||
        plen + ID_DIGITS_MAX + slen > DNS_NAME_MAX) {
        snprintf(err, elen, "%s: \"%s\" is too long for a DNS name", K_PATTERN, pat);
        return SL_ECONFIG;
    }
    /* Walk the labels with NODE_VAR standing for ten digits. */
    size_t label = 0;
    for (const char *p = pat;; p++) {
        if (p == var) {
            label += ID_DIGITS_MAX;
            p += strlen(NODE_VAR) - 1;
            continue;
        }
        if (*p == '.' || !*p) {
            if (label == 0) {
                snprintf(err, elen, "%s: \"%s\" has an empty DNS label", K_PATTERN, pat);
                return SL_ECONFIG;
            }
            if (label > DNS_LABEL_MAX) {
                snprintf(err, elen, "%s: \"%s\" has a DNS label longer than %d characters",
                         K_PATTERN, pat, DNS_LABEL_MAX);
                return SL_ECONFIG;
            }
            if (!*p) break;
            label = 0;
            continue;
        }
        if (!dns_char(*p)) {
            snprintf(err, elen,
                     "%s: \"%s\": only letters, digits, '-' and '.' may surround %s (one DNS "
                     "label holds %s)",
                     K_PATTERN, pat, NODE_VAR, NODE_VAR);
            return SL_ECONFIG;
        }
        label++;
    }
    memcpy(a->sni_prefix, pat, plen);
    a->sni_prefix[plen] = 0;
    memcpy(a->sni_suffix, suf, slen + 1);
    return SL_OK;
}

sl_err sl_gwaddr_init(sl_gwaddr *a, const sl_config *cfg, const char *listener_host,
                      int32_t listener_port, char *err, size_t elen) {
    memset(a, 0, sizeof *a);
    if (elen) err[0] = 0;
    const char *mode = cfg->sluice_gateway_address_mode;
    if (!*mode || strcmp(mode, "port") == 0) {
        a->mode = SL_GWADDR_PORT;
    } else if (strcmp(mode, "sni") == 0) {
        a->mode = SL_GWADDR_SNI;
    } else {
        snprintf(err, elen, "%s: invalid value \"%s\" (expected port or sni)", K_MODE, mode);
        return SL_ECONFIG;
    }
    if (listener_port <= 0 || listener_port > 65535) {
        snprintf(err, elen, "%s: the first listener has no usable port (%d)", K_BASE,
                 (int)listener_port);
        return SL_ECONFIG;
    }
    a->port = listener_port;

    const char *host = cfg->sluice_gateway_advertised_host[0] ? cfg->sluice_gateway_advertised_host
                                                              : listener_host;
    if (a->mode == SL_GWADDR_PORT) {
        if (host_unusable(host)) {
            snprintf(err, elen,
                     "%s: must be set: the listener host \"%s\" is not an address clients can "
                     "connect to",
                     K_HOST, listener_host ? listener_host : "");
            return SL_ECONFIG;
        }
        size_t hl = strlen(host);
        if (hl > DNS_NAME_MAX || hl >= sizeof a->host) {
            snprintf(err, elen, "%s: host name too long", K_HOST);
            return SL_ECONFIG;
        }
        memcpy(a->host, host, hl + 1);

        int64_t base = cfg->sluice_gateway_node_port_base ? cfg->sluice_gateway_node_port_base
                                                          : (int64_t)listener_port + 1;
        int64_t count = cfg->sluice_gateway_node_port_count;
        if (count < 1) {
            snprintf(err, elen, "%s: must be at least 1", K_COUNT);
            return SL_ECONFIG;
        }
        if (base < 1 || base + count - 1 > 65535) {
            snprintf(err, elen,
                     "%s: node ports %lld..%lld (%s %lld) reach past 65535; lower the base or "
                     "the count",
                     K_BASE, (long long)base, (long long)(base + count - 1), K_COUNT,
                     (long long)count);
            return SL_ECONFIG;
        }
        if (listener_port >= base && listener_port < base + count) {
            snprintf(err, elen, "%s: node ports %lld..%lld include the bootstrap port %d", K_BASE,
                     (long long)base, (long long)(base + count - 1), (int)listener_port);
            return SL_ECONFIG;
        }
        int64_t idmin = cfg->sluice_gateway_node_id_min;
        if (idmin < 0 || idmin + count - 1 > INT32_MAX) {
            snprintf(err, elen, "%s: ids %lld..%lld are not all valid node ids", K_IDMIN,
                     (long long)idmin, (long long)(idmin + count - 1));
            return SL_ECONFIG;
        }
        a->base = (int32_t)base;
        a->count = (int32_t)count;
        a->id_min = (int32_t)idmin;
        return SL_OK;
    }

    /* sni mode: the host is per node, from the pattern. */
    if (!host_unusable(host) && strlen(host) < sizeof a->host)
        memcpy(a->host, host, strlen(host) + 1);
    if (!cfg->sluice_gateway_sni_pattern[0]) {
        snprintf(err, elen, "%s: required when %s is sni (e.g. broker-%s.kafka.example.com)",
                 K_PATTERN, K_MODE, NODE_VAR);
        return SL_ECONFIG;
    }
    return parse_pattern(a, cfg->sluice_gateway_sni_pattern, err, elen);
}

bool sl_gwaddr_for(const sl_gwaddr *a, int32_t node, char *host, size_t hcap, int32_t *port) {
    if (node < 0 || !host || hcap == 0) return false;
    int n;
    if (a->mode == SL_GWADDR_PORT) {
        if (node < a->id_min || (int64_t)node - a->id_min >= a->count) return false;
        n = snprintf(host, hcap, "%s", a->host);
        if (port) *port = a->base + (node - a->id_min);
    } else {
        n = snprintf(host, hcap, "%s%d%s", a->sni_prefix, (int)node, a->sni_suffix);
        if (port) *port = a->port;
    }
    if (n < 0 || (size_t)n >= hcap) {
        host[0] = 0;
        return false;
    }
    return true;
}

int32_t sl_gwaddr_node_for_port(const sl_gwaddr *a, int32_t port) {
    if (a->mode != SL_GWADDR_PORT || port < a->base || (int64_t)port - a->base >= a->count)
        return -1;
    return a->id_min + (port - a->base);
}

int32_t sl_gwaddr_node_for_sni(const sl_gwaddr *a, const char *name) {
    if (a->mode != SL_GWADDR_SNI || !name) return -1;
    size_t n = strnlen(name, DNS_NAME_MAX + 1);
    if (n > DNS_NAME_MAX) return -1;
    size_t pl = strlen(a->sni_prefix), sl = strlen(a->sni_suffix);
    if (n < pl + 1 + sl) return -1;
    if (strncasecmp(name, a->sni_prefix, pl) != 0) return -1;
    if (strncasecmp(name + n - sl, a->sni_suffix, sl) != 0) return -1;
    const char *d = name + pl;
    size_t dl = n - pl - sl;
    /* The canonical decimal only (what sl_gwaddr_for gives out): no sign, no leading zero. */
    if (dl > ID_DIGITS_MAX || (dl > 1 && d[0] == '0')) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < dl; i++) {
        if (d[i] < '0' || d[i] > '9') return -1;
        v = v * 10 + (d[i] - '0');
    }
    return v > INT32_MAX ? -1 : (int32_t)v;
}

/* The gateway address of `node` with its host copied into the arena. */
static bool addr_in(const sl_gwaddr *a, sl_arena *ar, int32_t node, sl_str *host, int32_t *port) {
    char buf[DNS_NAME_MAX + 1];
    int32_t p;
    if (!sl_gwaddr_for(a, node, buf, sizeof buf, &p)) return false;
    size_t n = strlen(buf);
    char *s = sl_arena_dup(ar, buf, n + 1);
    if (!s) return false;
    *host = (sl_str){s, (int32_t)n};
    *port = p;
    return true;
}

/* A controller id that names no listed broker becomes the lowest broker id. */
#define FIX_CONTROLLER(ctl, arr, cnt, idf)                                                         \
    do {                                                                                           \
        int32_t lo_ = INT32_MAX;                                                                   \
        bool found_ = false;                                                                       \
        for (int32_t i_ = 0; i_ < (cnt); i_++) {                                                   \
            if ((arr)[i_].idf == (ctl)) found_ = true;                                             \
            if ((arr)[i_].idf < lo_) lo_ = (arr)[i_].idf;                                          \
        }                                                                                          \
        if (!found_ && (cnt) > 0) (ctl) = lo_;                                                     \
    } while (0)

bool sl_gwaddr_rewrite_metadata(const sl_gwaddr *a, sl_arena *ar, sl_metadata_resp *m) {
    for (int32_t i = 0; i < m->brokers_count; i++) {
        sl_metadata_resp_broker *b = &m->brokers[i];
        if (!addr_in(a, ar, b->node_id, &b->host, &b->port)) return false;
    }
    FIX_CONTROLLER(m->controller_id, m->brokers, m->brokers_count, node_id);
    return true;
}

bool sl_gwaddr_rewrite_find_coordinator(const sl_gwaddr *a, sl_arena *ar, int16_t version,
                                        sl_find_coordinator_resp *m) {
    if (version < 4) {
        /* An error answer carries node -1 and an empty host: nothing to rewrite. */
        if (m->error_code != 0 || m->node_id < 0) return true;
        return addr_in(a, ar, m->node_id, &m->host, &m->port);
    }
    for (int32_t i = 0; i < m->coordinators_count; i++) {
        sl_find_coordinator_resp_coordinator *c = &m->coordinators[i];
        if (c->node_id < 0) continue; /* not available yet */
        if (!addr_in(a, ar, c->node_id, &c->host, &c->port)) return false;
    }
    return true;
}

bool sl_gwaddr_rewrite_describe_cluster(const sl_gwaddr *a, sl_arena *ar,
                                        sl_describe_cluster_resp *m) {
    /* Controller endpoints (v1 endpoint type 2) are never proxied: they have no gateway
     * address, so such an answer fails rather than name one. */
    if (m->endpoint_type == 2 && m->brokers_count > 0) return false;
    for (int32_t i = 0; i < m->brokers_count; i++) {
        sl_describe_cluster_resp_broker *b = &m->brokers[i];
        if (!addr_in(a, ar, b->broker_id, &b->host, &b->port)) return false;
    }
    FIX_CONTROLLER(m->controller_id, m->brokers, m->brokers_count, broker_id);
    return true;
}

/* KIP-951 hints: rewrite each for its own node id; drop those without an address. */
#define REWRITE_ENDPOINTS(arr, cnt)                                                                \
    do {                                                                                           \
        int32_t keep_ = 0;                                                                         \
        for (int32_t i_ = 0; i_ < (cnt); i_++) {                                                   \
            if (!addr_in(a, ar, (arr)[i_].node_id, &(arr)[i_].host, &(arr)[i_].port)) continue;    \
            if (keep_ != i_) (arr)[keep_] = (arr)[i_];                                             \
            keep_++;                                                                               \
        }                                                                                          \
        if ((cnt) > 0) (cnt) = keep_;                                                              \
    } while (0)

void sl_gwaddr_rewrite_produce(const sl_gwaddr *a, sl_arena *ar, sl_produce_resp *m) {
    REWRITE_ENDPOINTS(m->node_endpoints, m->node_endpoints_count);
}

void sl_gwaddr_rewrite_fetch(const sl_gwaddr *a, sl_arena *ar, sl_fetch_resp *m) {
    REWRITE_ENDPOINTS(m->node_endpoints, m->node_endpoints_count);
}
