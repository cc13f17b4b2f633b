/* Per-API descriptors: for every API the pipeline serves, how its body decodes and which
 * resources a request of it names for the authorization stage. Shared by `serve` and
 * `gateway`; what executes a request is the backend's (sl_backend.h).
 *
 * Versions are not restated here: the supported range of an API is the range of its protocol
 * definition (src/proto/defs → the generated sl_api_lookup()), which is also what its codec
 * accepts and what ApiVersions advertises, so the three cannot drift. */
#ifndef SL_PIPELINE_API_H
#define SL_PIPELINE_API_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/sl_req.h"
#include "proto/gen/sl_msgs.h"

/* What naming resources needs to know about the backend's current state: topic ids, the topic
 * and group listings that "every topic" or "every group" stand for. Loop thread only; strings
 * handed to callbacks are valid during the callback. */
typedef struct sl_catalog {
    void *ctx;
    /* The name of the topic with id `id`, copied into `a` (the caller's request arena): a
     * request can outlive the catalog entry - a gateway's Metadata refresh or a deletion
     * replaces it while the request waits for the upstream or a long poll. False when no such
     * topic exists (or out of memory). */
    bool (*topic_name)(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name);
    bool (*topic_exists)(void *ctx, sl_str name);
    /* True when a Metadata request may create a missing topic (auto.create.topics.enable). */
    bool (*auto_create)(void *ctx);
    void (*each_topic)(void *ctx, void (*fn)(void *arg, sl_str name), void *arg);
    void (*each_group)(void *ctx, void (*fn)(void *arg, sl_str group), void *arg);
    /* Each topic `group` has committed offsets for (repeats allowed). */
    void (*each_committed_topic)(void *ctx, sl_str group, void (*fn)(void *arg, sl_str topic),
                                 void *arg);
    /* Every transactional id the transaction coordinator holds; NULL: none (the gateway). */
    void (*each_transactional_id)(void *ctx, void (*fn)(void *arg, sl_str id), void *arg);
} sl_catalog;

enum { SL_API_PREAUTH = 1 }; /* allowed before authentication (ApiVersions, SASL) */

typedef struct sl_api_desc {
    int16_t key;
    uint8_t flags;
    size_t req_size; /* sizeof the generated request struct */
    /* Decodes the body into a zeroed `out` of req_size bytes, in the arena. NULL: the API
     * reads its body itself (ApiVersions must answer versions it cannot decode). */
    sl_err (*decode)(sl_rd *r, sl_arena *a, int16_t version, void *out);
    /* Names every resource the decoded request acts on (sl_req_need), using `cat` for what
     * the request leaves implicit (all topics, a topic by id). NULL: none (SASL, ApiVersions,
     * FindCoordinator without a key...). */
    void (*resources)(sl_req *rq, const sl_catalog *cat);
    /* Copies what the answer (the API's generated response struct) says about each named
     * resource into the lifecycle (sl_req_res_error), before it is encoded. NULL: nothing
     * per resource to copy. */
    void (*outcomes)(sl_req *rq, const void *resp);
} sl_api_desc;

/* The descriptor of `key`, or NULL when the pipeline does not serve it. */
const sl_api_desc *sl_api_desc_for(int16_t key);
/* Iteration: index 0.., NULL past the end. */
const sl_api_desc *sl_api_desc_at(int i);
/* The descriptor's supported versions (its protocol definition's range). */
const sl_api_info *sl_api_desc_info(const sl_api_desc *d);

#endif
