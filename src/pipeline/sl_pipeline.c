/* The request pipeline, one stage after another (docs/ARCHITECTURE.md):
 *
 *   frame (src/net) → start → header + version → authenticate → decode → name resources →
 *   authorize → protect → execute (backend) → finish (sl_req.c: observers, then the bytes)
 *
 * Each stage either passes the request on or finishes it (answer, error, close) through the
 * one finish path. The stages know nothing of local storage: execution is the backend's
 * (sl_broker_exec: the local broker; the gateway will bring another). */
#include "pipeline/sl_pipeline.h"

#include "acl/sl_authz.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"

/* Header and version: a malformed header or an API or version we do not serve closes the
 * connection (Kafka does not answer what it cannot parse). ApiVersions is the exception: any
 * version is answered, in v0 when unknown, so a client can learn the range. */
static bool stage_header(sl_req *rq, const uint8_t *frame, size_t len) {
    const sl_api_desc *av = sl_api_desc_for(SL_API_API_VERSIONS);
    const sl_api_info *avi = sl_api_desc_info(av);
    /* An ApiVersions request above our range is answered from its first 8 bytes alone: its
     * header layout is whatever the newer version says, which we cannot know. */
    if (len >= 8 && sl_get_be16(frame) == SL_API_API_VERSIONS &&
        ((int16_t)sl_get_be16(frame + 2) > avi->max_version ||
         (int16_t)sl_get_be16(frame + 2) < 0)) {
        rq->api = av;
        rq->h.api_key = SL_API_API_VERSIONS;
        rq->h.api_version = (int16_t)sl_get_be16(frame + 2);
        rq->h.correlation_id = (int32_t)sl_get_be32(frame + 4);
        rq->h.client_id = SL_STR_NULL;
        return true;
    }
    if (sl_req_header_decode(&rq->body, &rq->h) != SL_OK) {
        rq->h.api_key = -1;
        sl_req_fail(rq, "malformed request header");
        return false;
    }
    const sl_api_desc *d = sl_api_desc_for(rq->h.api_key);
    if (!d || !sl_broker_exec(d->key)) {
        sl_req_fail(rq, "unknown api key");
        return false;
    }
    const sl_api_info *in = sl_api_desc_info(d);
    rq->api = d;
    if ((rq->h.api_version < in->min_version || rq->h.api_version > in->max_version) &&
        d->key != SL_API_API_VERSIONS) {
        sl_req_fail(rq, "unsupported api version");
        return false;
    }
    return true;
}

/* Authenticate: the connection's session decides (sl_h_sasl.c); on success the principal is
 * fixed for this request, copied so it outlives the connection if the request does. */
static bool stage_authenticate(sl_req *rq) {
    if (!sl_sasl_authenticate_stage(rq)) return false;
    const char *pr = sl_session_principal(rq->conn);
    if (pr && !(rq->principal = sl_arena_dup(rq->a, pr, strlen(pr) + 1))) {
        sl_req_fail(rq, "out of memory");
        return false;
    }
    return true;
}

/* Decode: the generated codec, bounded and allocation-checked; malformed bodies close. */
static bool stage_decode(sl_req *rq) {
    const sl_api_desc *d = rq->api;
    if (!d->decode) return true;
    rq->req = sl_arena_calloc(rq->a, 1, d->req_size);
    if (!rq->req) {
        sl_req_fail(rq, "out of memory");
        return false;
    }
    if (d->decode(&rq->body, rq->a, rq->h.api_version, rq->req) != SL_OK) {
        sl_req_fail(rq, "malformed request");
        return false;
    }
    return true;
}

/* Authorize: the descriptor names the request's resources, the stage decides each once. The
 * authorizer first picks up changes another writer (`sluice acl`) made to the ACL file, so
 * they apply from the next request on existing connections too. */
static void stage_authorize(sl_req *rq) {
    sl_broker *b = rq->b;
    if (rq->api->resources) rq->api->resources(rq, &b->catalog);
    if (b->authz) (void)sl_authorizer_refresh(b->authz, false);
    sl_authorize_stage(rq, b->authz);
}

void sl_pipeline_on_request(void *app, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *frame,
                            size_t len) {
    sl_broker *b = app;
    sl_req *rq = sl_req_start(b, c, p, a, frame, len);
    if (!rq) {
        sl_conn_close(c, false, "out of memory");
        sl_pending_noreply(p);
        return;
    }
    /* After SaslHandshake v0 the next frames are bare SASL tokens without a Kafka header. */
    if (sl_sasl_raw_frame(rq, frame, len)) return;
    if (!stage_header(rq, frame, len)) return;
    if (!stage_authenticate(rq)) return;
    if (!stage_decode(rq)) return;
    stage_authorize(rq);
    /* Protect: record transforms run per partition inside produce and fetch execution
     * (proto/sl_xform), where record sets are at hand. */
    sl_broker_exec(rq->h.api_key)(rq);
}
