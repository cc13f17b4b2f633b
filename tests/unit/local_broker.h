/* A broker struct with only what a local backend under test needs to start from: a fresh data
 * directory, the default configuration pointing at it, the topic registry, and a topic "t"
 * with `npart` partitions (none when npart is 0). Each test adds what its backend uses (the
 * flusher, the loop, the coordinator) and frees those before local_broker_close(). */
#ifndef SL_TESTS_LOCAL_BROKER_H
#define SL_TESTS_LOCAL_BROKER_H
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/sl_broker.h"

static int local_broker_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* `dir` (64 bytes) gets the directory's name; `b` must be zeroed. */
static inline bool local_broker_open(char *dir, const char *tag, sl_broker *b, int32_t npart) {
    snprintf(dir, 64, "/tmp/%s_XXXXXX", tag);
    if (!mkdtemp(dir)) return false;
    sl_config_defaults(&b->cfg);
    snprintf(b->cfg.log_dirs, sizeof b->cfg.log_dirs, "%s", dir);
    snprintf(b->cfg.sluice_secrets_dir, sizeof b->cfg.sluice_secrets_dir, "%s", dir);
    char err[256];
    if (sl_topics_open(&b->cfg, &b->topics, err, sizeof err)) return false;
    return npart <= 0 || !sl_topics_create(b->topics, sl_str_c("t"), npart, NULL, false, NULL);
}

/* Closes the registry and removes the directory. */
static inline void local_broker_close(const char *dir, sl_broker *b) {
    if (b->topics) sl_topics_close(b->topics);
    if (dir[0]) nftw(dir, local_broker_rm, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
