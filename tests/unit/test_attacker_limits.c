/* Defaults of the limits an unauthenticated peer meets (issue 10): key exchange groups,
 * connection and handshake limits, the SCRAM iteration count. */
#include <openssl/ssl.h>
#include <string.h>

#include "base/sl_config.h"
#include "crypto/sl_tls_ctx.h"
#include "net/sl_server.h"
#include "sl_test.h"

SL_TEST(attacker_limit_defaults) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_OK);
    CHECK_EQ(c.max_connections_per_ip, 100);
    CHECK_EQ(c.max_connections, SL_SERVER_CONN_AUTO);
    CHECK_EQ(c.sluice_ssl_handshake_rate_per_ip, 20);
    CHECK_EQ(c.sluice_ssl_max_handshakes_per_ip, 8);
    CHECK(strcmp(c.sluice_ssl_groups, "X25519:P-256:P-384:P-521") == 0);
    CHECK_EQ(c.sluice_sasl_scram_iterations, 4096);
    /* The derived total keeps a quarter of the descriptors (>= 256) and the admin slots. */
    CHECK_EQ(sl_server_fd_reserve(1024), 256);
    /* Half of what the reserve leaves; the other half is the partition files' descriptors. */
    CHECK_EQ(sl_server_auto_max_connections(1024), (1024 - 256) / 2 - SL_SERVER_ADMIN_CONNS);
    CHECK_EQ(sl_server_auto_max_connections(20000), (20000 - 5000) / 2 - SL_SERVER_ADMIN_CONNS);
    CHECK_EQ(sl_server_auto_max_connections(100), 16); /* never below a usable minimum */
    CHECK(sl_config_set(&c, "sluice.sasl.scram.iterations", "1000", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.sasl.scram.iterations") != NULL);
}

SL_TEST(attacker_tls_groups_are_validated_naming_the_key) {
    SSL_CTX *ctx = NULL;
    char err[256] = "";
    sl_tls_opts o = {.groups = "X25519:no-such-group"};
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.ssl.groups") && strstr(err, "no-such-group"));
    o.groups = ":,";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.ssl.groups") != NULL);
    /* Valid groups get past the group check (and stop at the missing keystore). */
    o.groups = "P-521,X25519";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.keystore.location") != NULL);
    o.groups = NULL;
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.keystore.location") != NULL);
    CHECK(ctx == NULL);
}
