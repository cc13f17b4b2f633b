/* Placeholder until src/http/sl_httpd.c lands (removed then): weak definitions so main links. */
#include "http/sl_httpd.h"

__attribute__((weak)) sl_err sl_httpd_listen(const sl_httpd_opts *o, const char *host, int port,
                                             sl_httpd **out, int *eno) {
    *eno = 0;
    return SL_EINVAL;
}
__attribute__((weak)) void sl_httpd_free(sl_httpd *h) {}
__attribute__((weak)) int sl_httpd_port(const sl_httpd *h) { return 0; }
__attribute__((weak)) bool sl_httpd_parse_url(const char *url, bool *https, char *host, size_t hl,
                                              int *port) {
    return false;
}
__attribute__((weak)) sl_err sl_httpd_tls(const struct sl_config *cfg, const char *name,
                                          const char *key, const char *keystore,
                                          struct sl_tls_endpoint **out, char *err, size_t elen) {
    return SL_EINVAL;
}
__attribute__((weak)) const char *sl_http_header(const sl_http_req *r, const char *name,
                                                 size_t *vlen) {
    return NULL;
}
