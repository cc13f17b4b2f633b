#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "sl_test.h"

SL_TEST(config_defaults_work_on_a_fresh_machine) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_OK);
    CHECK(strcmp(c.listeners, "SASL_SSL://127.0.0.1:9092") == 0); /* secure by default */
    CHECK_EQ(c.log_retention_ms, 168LL * 3600 * 1000);
    CHECK_EQ(c.socket_request_max_bytes, 104857600);
}

SL_TEST(config_file_parsing_and_precedence) {
    char path[] = "/tmp/sl_cfg_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *body = "# comment\n! also comment\n  num.partitions = 3\n"
                       "log.retention.hours=1\nlog.retention.minutes: 5\n"
                       "listeners=PLAINTEXT://127.0.0.1:0,\\\n  OTHER://[::1]:9093\n"
                       "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,OTHER:SSL\n"
                       "no.such.key=1\n";
    CHECK(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
    close(fd);
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    sl_err e = sl_config_load(&c, path, err, sizeof err);
    unlink(path);
    CHECK(e == SL_OK);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_OK);
    CHECK_EQ(c.num_partitions, 3);
    CHECK_EQ(c.log_retention_ms, 5 * 60000); /* minutes beat hours */
    sl_listener_spec ls[4];
    CHECK_EQ(sl_listeners_parse(c.listeners, ls, 4, err, sizeof err), 2);
    CHECK(strcmp(ls[1].host, "::1") == 0);
    CHECK_EQ(ls[1].port, 9093);
}

SL_TEST(config_invalid_value_names_the_key) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "num.partitions", "zero", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "num.partitions") != NULL);
    CHECK(sl_config_set(&c, "auto.create.topics.enable", "yes", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "auto.create.topics.enable") != NULL);
    CHECK(sl_config_set(&c, "default.replication.factor", "3", err, sizeof err) == SL_ECONFIG);
    CHECK(sl_config_set(&c, "listeners", "nonsense", err, sizeof err) == SL_OK);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "listeners") != NULL);
}
