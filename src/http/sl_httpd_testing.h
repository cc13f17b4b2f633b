/* Test-only hooks of the HTTP server (sl_httpd.h), so a unit test can watch a deadline fire
 * without waiting the production 10 s / 30 s. Not for broker code. */
#ifndef SL_HTTPD_TESTING_H
#define SL_HTTPD_TESTING_H
#include <stdint.h>

#include "http/sl_httpd.h"

/* Replaces the request deadline (head and body, or an answer being written) and the keep-alive
 * idle deadline of `h` for connections' next deadlines; a value <= 0 keeps the current one. */
void sl_httpd_set_deadlines(sl_httpd *h, int64_t request_ms, int64_t idle_ms);

#endif
