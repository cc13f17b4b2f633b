/* The request pipeline's entry: the server's on_request handler (sl_server_handlers). */
#ifndef SL_PIPELINE_PIPELINE_H
#define SL_PIPELINE_PIPELINE_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "net/sl_server.h"

/* Runs a frame through the stages (sl_pipeline.c). `app` is the sl_broker. Takes over `p` (and
 * its arena `a`, which holds `frame`): the request ends through the finish path (sl_req.h). */
void sl_pipeline_on_request(void *app, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *frame,
                            size_t len);

#endif
