/* The log cleaner's crash-at-every-step harness, shared by test_cleaner.c and test_cleaner_txn.c,
 * with what it needs and those tests use too: scratch directories, opening a log with or without
 * keys. A test says how its log is opened and built, how it cleans and what the log must look
 * like after a crash; the harness crashes the clean after its first durable step, then its
 * second, and so on until a clean finishes uncrashed. */
#ifndef SL_TESTS_CLEANER_CRASH_H
#define SL_TESTS_CLEANER_CRASH_H
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sl_test.h"
#include "storage/sl_cleaner.h"
#include "storage/sl_log.h"

static int cleaner_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static inline void cleaner_rm_rf(const char *p) {
    nftw(p, cleaner_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory named after `tag` in `buf` (64 bytes): under /dev/shm when there is one. */
static inline char *cleaner_tmpdir(char *buf, const char *tag) {
    struct stat st;
    snprintf(buf, 64, "%s/%s_XXXXXX", stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp", tag);
    return mkdtemp(buf);
}

/* How many entries of `dir` end in `suffix`. */
static inline int cleaner_count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (l >= s && !strcmp(de->d_name + l - s, suffix)) n++;
    }
    if (d) closedir(d);
    return n;
}

/* Opens the log in `dir`, with `k` for its encrypted segments (NULL: none); the log keeps a copy
 * of `k`, not the pointer. */
static inline sl_err cleaner_open_log(const char *dir, const sl_log_config *lc,
                                      const sl_log_keys *k, sl_log **log) {
    sl_err e = sl_log_open(dir, lc, log);
    if (!e && k) sl_log_set_keys(*log, k);
    return e;
}

/* A log in a fresh directory named after `tag` (into `dir`, 64 bytes); NULL when either fails. */
static inline sl_log *cleaner_new_log(char *dir, const char *tag, const sl_log_config *lc,
                                      const sl_log_keys *k) {
    sl_log *log;
    return cleaner_tmpdir(dir, tag) && !cleaner_open_log(dir, lc, k, &log) ? log : NULL;
}

/* What differs between the crash tests. Every callback gets `ctx`; those taking sl_failed_ use
 * CHECK and fail the test. */
typedef struct cleaner_crash {
    const char *tag; /* names the scratch directories */
    /* How the log is opened, for the build and again after the crash, as a restart would. */
    sl_log_config lc;
    const sl_log_keys *keys; /* NULL: plaintext */
    void *ctx;
    /* Appends the records of one round to the fresh log and notes what check needs. */
    void (*build)(int *sl_failed_, void *ctx, const char *dir, sl_log *log);
    /* One clean as the test runs it; frees what its result holds. */
    sl_err (*clean)(void *ctx, sl_log *log);
    /* The reopened log after the crash: the old log or the new one, as the test defines them;
     * `finished` when this clean was not crashed. */
    void (*check)(int *sl_failed_, void *ctx, const char *dir, sl_log *log, bool finished);
    /* The log after a clean to the end: the fully cleaned one. */
    void (*check_cleaned)(int *sl_failed_, void *ctx, sl_log *log);
} cleaner_crash;

/* One round: the clean stops after durable step `stop` (a kill -9 there) unless it has fewer. */
static inline void cleaner_crash_round(int *sl_failed_, const cleaner_crash *c, int stop,
                                       bool *finished) {
    char dir[64];
    sl_log *log = cleaner_new_log(dir, c->tag, &c->lc, c->keys);
    CHECK(log);
    c->build(sl_failed_, c->ctx, dir, log);
    if (*sl_failed_) return;
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int64_t end = sl_log_end_offset(log);
    sl_cleaner__crash_after = stop;
    sl_err e = c->clean(c->ctx, log);
    sl_cleaner__crash_after = 0;
    if (e == SL_OK)
        *finished = true;
    else
        CHECK_EQ(e, SL_ESTATE);
    sl_log_close(log); /* what a kill -9 leaves: the files */
    CHECK_EQ(cleaner_open_log(dir, &c->lc, c->keys, &log), SL_OK);
    /* Open finished or undid the swap: nothing of it is left over, no offset moved. */
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
    CHECK_EQ(sl_log_end_offset(log), end);
    c->check(sl_failed_, c->ctx, dir, log, *finished);
    if (*sl_failed_) return;
    CHECK_EQ(c->clean(c->ctx, log), SL_OK);
    c->check_cleaned(sl_failed_, c->ctx, log);
    if (*sl_failed_) return;
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* Crashes the clean after each of its durable steps in turn, a fresh log each time, until a clean
 * runs to the end. A failure names its round. */
static inline void cleaner_crash_every_step(int *sl_failed_, const cleaner_crash *c) {
    int stop;
    bool finished = false;
    for (stop = 1; stop < 200 && !finished; stop++) {
        cleaner_crash_round(sl_failed_, c, stop, &finished);
        if (*sl_failed_) {
            fprintf(stderr, "  (in the round that crashed the clean after step %d)\n", stop);
            return;
        }
    }
    CHECK(finished && stop > 8); /* run's 4 steps and commit's renames were all crashed in */
}

#endif
