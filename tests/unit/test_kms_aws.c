/* The aws-kms provider against tests/interop/kmsd.py: a loopback KMS (HTTPS, test CA) that checks
 * every request's SigV4 signature with botocore's signer, plus STS web-identity and IMDSv2
 * stubs. Covers each operation, EncryptionContext binding, the error mapping (denied, tamper,
 * unavailable: injected errors, a hung server, a stopped one) and each credential source. Needs
 * Debian's /usr/bin/python3 with python3-botocore and python3-cryptography (scripts/setup.sh). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "base/sl_time.h"
#include "kms/sl_kms.h"
#include "sl_test.h"

#define KEY_ARN "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

static const char *const k_env[] = {"AWS_ACCESS_KEY_ID",
                                    "AWS_SECRET_ACCESS_KEY",
                                    "AWS_SESSION_TOKEN",
                                    "AWS_ROLE_ARN",
                                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                                    "AWS_ROLE_SESSION_NAME",
                                    "AWS_ENDPOINT_URL_STS",
                                    "AWS_SHARED_CREDENTIALS_FILE",
                                    "AWS_CONFIG_FILE",
                                    "AWS_PROFILE",
                                    "AWS_REGION",
                                    "AWS_DEFAULT_REGION",
                                    "AWS_EC2_METADATA_DISABLED",
                                    "HOME"};
#define NENV (sizeof k_env / sizeof *k_env)

typedef struct fixture {
    char dir[128];
    char script[PATH_MAX];
    pid_t pid;
    int kms_port, imds_port;
    char *saved[NENV];
} fixture;

static bool find_script(char *out, size_t cap) {
    if (access("tests/interop/kmsd.py", R_OK) == 0) {
        snprintf(out, cap, "tests/interop/kmsd.py");
        return true;
    }
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    char *s = strrchr(exe, '/');
    if (!s) return false;
    *s = 0;
    snprintf(out, cap, "%s/../../tests/interop/kmsd.py", exe);
    return access(out, R_OK) == 0;
}

/* Starts kmsd (same --dir: same keys, certificate and ports as before). */
static bool kmsd_start(fixture *f) {
    int p[2];
    if (pipe(p)) return false;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        /* An in-process broker started by an earlier test blocked SIGTERM in this thread
         * (sl_broker_new), and exec keeps the mask: kmsd would never see kmsd_stop's signal. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        char log[200];
        snprintf(log, sizeof log, "%s/kmsd.log", f->dir);
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (lfd >= 0) dup2(lfd, 2);
        execl("/usr/bin/python3", "python3", f->script, "--dir", f->dir, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    f->pid = pid;
    char line[128];
    size_t n = 0;
    int64_t deadline = sl_mono_ms() + 30000;
    while (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n')) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int ms = (int)(deadline - sl_mono_ms());
        if (ms <= 0 || poll(&pf, 1, ms) <= 0) break;
        ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(p[0]);
    line[n] = 0;
    if (sscanf(line, "READY %d %d", &f->kms_port, &f->imds_port) != 2) {
        fprintf(stderr, "  kmsd did not start (see %s/kmsd.log): %s\n", f->dir, line);
        return false;
    }
    return true;
}

static void kmsd_stop(fixture *f) {
    if (f->pid <= 0) return;
    kill(f->pid, SIGTERM);
    int st;
    while (waitpid(f->pid, &st, 0) < 0 && errno == EINTR) {
    }
    f->pid = 0;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[256], tmp[260];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.t", p);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
    rename(tmp, p);
}

static void fixture_env_clear(fixture *f) {
    for (size_t i = 0; i < NENV; i++) unsetenv(k_env[i]);
    setenv("HOME", f->dir, 1); /* no ~/.aws of the machine running the tests */
}

/* The AWS variables of the process are the test's while it runs; restored after. */
static void env_save(fixture *f) {
    for (size_t i = 0; i < NENV; i++) {
        const char *v = getenv(k_env[i]);
        f->saved[i] = v ? strdup(v) : NULL;
    }
}

static void env_restore(fixture *f) {
    for (size_t i = 0; i < NENV; i++) {
        if (f->saved[i])
            setenv(k_env[i], f->saved[i], 1);
        else
            unsetenv(k_env[i]);
        free(f->saved[i]);
        f->saved[i] = NULL;
    }
}

static bool fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    env_save(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sl-kmsd-XXXXXX");
    if (!mkdtemp(f->dir) || !find_script(f->script, sizeof f->script)) return false;
    fixture_env_clear(f);
    return kmsd_start(f);
}

static void fixture_close(fixture *f) {
    kmsd_stop(f);
    env_restore(f);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd)) {
    }
}

static sl_kms *open_provider(fixture *f, const char *key_id, const char *imds, int64_t timeout) {
    sl_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    sl_config_defaults(c);
    char err[256], v[256], to[32];
    snprintf(to, sizeof to, "%lld", (long long)timeout);
    bool ok = sl_config_set(c, "sluice.kms.provider", "aws-kms", err, sizeof err) == SL_OK &&
              sl_config_set(c, "sluice.kms.aws.region", "eu-west-1", err, sizeof err) == SL_OK &&
              sl_config_set(c, "sluice.kms.aws.key.id", key_id, err, sizeof err) == SL_OK &&
              sl_config_set(c, "sluice.kms.timeout.ms", to, err, sizeof err) == SL_OK &&
              sl_config_set(c, "sluice.kms.aws.imds.endpoint", imds, err, sizeof err) == SL_OK;
    snprintf(v, sizeof v, "https://127.0.0.1:%d/", f->kms_port);
    ok = ok && sl_config_set(c, "sluice.kms.aws.endpoint", v, err, sizeof err) == SL_OK;
    snprintf(v, sizeof v, "%s/ca.pem", f->dir);
    ok = ok && sl_config_set(c, "sluice.kms.aws.ca.file", v, err, sizeof err) == SL_OK;
    sl_kms *k = NULL;
    if (ok && sl_kms_open(c, &k, err, sizeof err) != SL_OK) k = NULL;
    if (!k) fprintf(stderr, "  open: %s\n", err);
    free(c);
    return k;
}

static void use_static_keys(void) {
    setenv("AWS_ACCESS_KEY_ID", "AKIAKMSDTESTEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "kmsd/secret+EXAMPLEKEY", 1);
}

static const uint8_t k_tk[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t k_ctx[] = "topic 0123456789abcdef v1";
static const uint8_t k_ctx2[] = "topic fedcba9876543210 v1";

/* wrap then unwrap; true if the topic key came back. */
static bool round_trip(sl_kms *k, const sl_kms_keyref *kek) {
    uint8_t w[SL_KMS_WRAPPED_MAX], p[64];
    size_t wl = 0, pl = 0;
    char err[256];
    sl_err e =
        k->ops->wrap(k, kek, k_ctx, sizeof k_ctx, k_tk, 32, w, sizeof w, &wl, err, sizeof err);
    if (e != SL_OK) {
        fprintf(stderr, "  wrap: %s\n", err);
        return false;
    }
    e = k->ops->unwrap(k, kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    if (e != SL_OK) fprintf(stderr, "  unwrap: %s\n", err);
    return e == SL_OK && pl == 32 && !memcmp(p, k_tk, 32);
}

SL_TEST(kms_aws_operations_against_botocore_verifier) {
    static fixture f;
    CHECK(fixture_open(&f));
    use_static_keys();
    sl_kms *k = open_provider(&f, "alias/sluice", "", 5000);
    if (!k) fixture_close(&f);
    CHECK(k);
    char err[256], desc[512];
    sl_kms_keyref kek;
    sl_err e = k->ops->generate(k, 1, &kek, err, sizeof err);
    if (e != SL_OK) fprintf(stderr, "  generate: %s\n", err);
    bool ok = e == SL_OK && kek.version == 1 && !strcmp(kek.id, KEY_ARN);
    ok = ok && round_trip(k, &kek);
    ok = ok && k->ops->describe(k, &kek, desc, sizeof desc, err, sizeof err) == SL_OK &&
         strstr(desc, "state=Enabled") && strstr(desc, "manager=CUSTOMER") &&
         strstr(desc, "spec=SYMMETRIC_DEFAULT");
    /* the wrapped key is bound to its context and its bytes */
    uint8_t w[SL_KMS_WRAPPED_MAX] = {0}, p[64];
    size_t wl = 1, pl = 0;
    ok = ok && k->ops->wrap(k, &kek, k_ctx, sizeof k_ctx, k_tk, 32, w, sizeof w, &wl, err,
                            sizeof err) == SL_OK;
    sl_err other_ctx =
        k->ops->unwrap(k, &kek, k_ctx2, sizeof k_ctx2, w, wl, p, sizeof p, &pl, err, sizeof err);
    w[wl - 1] ^= 1;
    sl_err flipped =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    w[wl - 1] ^= 1;
    sl_err destroy = k->ops->destroy(k, &kek, err, sizeof err);
    bool destroy_says = strstr(err, "retire " KEY_ARN " in AWS") != NULL && strlen(err) < 200;
    k->ops->free(k);
    /* a key that is disabled, one that does not exist */
    sl_kms *kd = open_provider(&f, "alias/disabled", "", 5000);
    sl_err disabled = kd ? kd->ops->generate(kd, 1, &kek, err, sizeof err) : SL_EIO;
    bool disabled_says = strstr(err, "Disabled") != NULL;
    if (kd) kd->ops->free(kd);
    sl_kms *kn = open_provider(&f, "alias/none", "", 5000);
    sl_err unknown = kn ? kn->ops->generate(kn, 1, &kek, err, sizeof err) : SL_EIO;
    bool unknown_says = strstr(err, "NotFoundException") != NULL;
    if (kn) kn->ops->free(kn);
    fixture_close(&f);
    CHECK(ok);
    CHECK_EQ(other_ctx, SL_ETAMPER);
    CHECK_EQ(flipped, SL_ETAMPER);
    CHECK_EQ(destroy, SL_EPOLICY);
    CHECK(destroy_says);
    CHECK_EQ(disabled, SL_EKMS_DENIED);
    CHECK(disabled_says);
    CHECK_EQ(unknown, SL_EKMS_DENIED);
    CHECK(unknown_says);
}

/* A request signed with the wrong secret fails botocore's check: the provider's requests pass
 * because they are signed right, not because the verifier accepts anything. */
SL_TEST(kms_aws_wrong_secret_is_refused) {
    static fixture f;
    CHECK(fixture_open(&f));
    setenv("AWS_ACCESS_KEY_ID", "AKIAKMSDTESTEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "kmsd/secret+EXAMPLEKEz", 1);
    sl_kms *k = open_provider(&f, "alias/sluice", "", 5000);
    char err[256] = "";
    sl_kms_keyref kek;
    sl_err e = k ? k->ops->generate(k, 1, &kek, err, sizeof err) : SL_EIO;
    bool says = strstr(err, "InvalidSignatureException") != NULL;
    if (k) k->ops->free(k);
    setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN", 1);
    k = open_provider(&f, "alias/sluice", "", 5000);
    sl_err e2 = k ? k->ops->generate(k, 1, &kek, err, sizeof err) : SL_EIO;
    if (k) k->ops->free(k);
    fixture_close(&f);
    CHECK_EQ(e, SL_EKMS_DENIED);
    CHECK(says);
    CHECK_EQ(e2, SL_EKMS_DENIED);
}

SL_TEST(kms_aws_outages_are_retriable) {
    static fixture f;
    CHECK(fixture_open(&f));
    use_static_keys();
    /* short enough for the hung-server case, long enough for a loaded CI machine */
    sl_kms *k = open_provider(&f, "alias/sluice", "", 1500);
    if (!k) fixture_close(&f);
    CHECK(k);
    char err[256];
    sl_kms_keyref kek;
    bool ok = k->ops->generate(k, 1, &kek, err, sizeof err) == SL_OK;
    uint8_t w[SL_KMS_WRAPPED_MAX], p[64];
    size_t wl = 0, pl = 0;
    ok = ok && k->ops->wrap(k, &kek, k_ctx, sizeof k_ctx, k_tk, 32, w, sizeof w, &wl, err,
                            sizeof err) == SL_OK;
    if (!ok) fprintf(stderr, "  before the outage: %s\n", err);
    write_file(f.dir, "control.json", "{\"fail\": \"ThrottlingException\"}");
    sl_err throttled =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    write_file(f.dir, "control.json", "{\"fail\": \"KMSInternalException\"}");
    sl_err internal =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    write_file(f.dir, "control.json", "{\"fail\": \"AccessDeniedException\"}");
    sl_err denied =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    write_file(f.dir, "control.json", "{\"hang\": true}");
    int64_t t0 = sl_mono_ms();
    sl_err hung =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    int64_t hung_ms = sl_mono_ms() - t0;
    write_file(f.dir, "control.json", "{}");
    kmsd_stop(&f);
    sl_err down =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    /* back on the same port with the same keys: the same blob unwraps, no reopen needed */
    bool restarted = kmsd_start(&f);
    sl_err back =
        k->ops->unwrap(k, &kek, k_ctx, sizeof k_ctx, w, wl, p, sizeof p, &pl, err, sizeof err);
    k->ops->free(k);
    fixture_close(&f);
    CHECK(ok);
    CHECK_EQ(throttled, SL_EKMS_UNAVAILABLE);
    CHECK_EQ(internal, SL_EKMS_UNAVAILABLE);
    CHECK_EQ(denied, SL_EKMS_DENIED);
    CHECK_EQ(hung, SL_EKMS_UNAVAILABLE);
    CHECK(hung_ms < 6000);
    CHECK_EQ(down, SL_EKMS_UNAVAILABLE);
    CHECK(restarted);
    CHECK_EQ(back, SL_OK);
    CHECK(pl == 32 && !memcmp(p, k_tk, 32));
}

SL_TEST(kms_aws_credentials_web_identity_files_imds) {
    static fixture f;
    CHECK(fixture_open(&f));
    char v[256], imds[64];
    /* web identity: STS stub on the fixture's HTTPS port; the session token is signed */
    snprintf(v, sizeof v, "%s/web-identity-token", f.dir);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", v, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/sluice", 1);
    snprintf(v, sizeof v, "https://127.0.0.1:%d/sts/", f.kms_port);
    setenv("AWS_ENDPOINT_URL_STS", v, 1);
    sl_kms *k = open_provider(&f, "alias/sluice", "", 5000);
    sl_kms_keyref kek = {KEY_ARN, 1};
    bool web = k && round_trip(k, &kek);
    if (k) k->ops->free(k);
    /* a token STS does not accept */
    write_file(f.dir, "bad-token", "not-the-token\n");
    snprintf(v, sizeof v, "%s/bad-token", f.dir);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", v, 1);
    k = open_provider(&f, "alias/sluice", "", 5000);
    char err[256] = "";
    sl_err bad_web = k ? k->ops->generate(k, 1, &kek, err, sizeof err) : SL_EIO;
    bool bad_web_says = strstr(err, "InvalidIdentityToken") != NULL;
    if (k) k->ops->free(k);
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_ROLE_ARN");
    /* shared credentials file, named profile */
    write_file(f.dir, "credentials",
               "[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = x\n"
               "[kmsd]\naws_access_key_id = AKIAKMSDTESTEXAMPLE\n"
               "aws_secret_access_key = kmsd/secret+EXAMPLEKEY\n");
    snprintf(v, sizeof v, "%s/credentials", f.dir);
    setenv("AWS_SHARED_CREDENTIALS_FILE", v, 1);
    setenv("AWS_PROFILE", "kmsd", 1);
    k = open_provider(&f, "alias/sluice", "", 5000);
    bool files = k && round_trip(k, &kek);
    if (k) k->ops->free(k);
    /* a secret rotated in the file is picked up when KMS refuses the cached one */
    write_file(f.dir, "credentials",
               "[kmsd]\naws_access_key_id = AKIAKMSDTESTEXAMPLE\naws_secret_access_key = old\n");
    k = open_provider(&f, "alias/sluice", "", 5000);
    sl_err stale = k ? k->ops->generate(k, 1, &kek, err, sizeof err) : SL_EIO;
    write_file(f.dir, "credentials",
               "[kmsd]\naws_access_key_id = AKIAKMSDTESTEXAMPLE\n"
               "aws_secret_access_key = kmsd/secret+EXAMPLEKEY\n");
    bool rotated = k && round_trip(k, &kek);
    if (k) k->ops->free(k);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    /* instance metadata (IMDSv2 stub over plain HTTP on loopback) */
    snprintf(imds, sizeof imds, "http://127.0.0.1:%d", f.imds_port);
    k = open_provider(&f, "alias/sluice", imds, 5000);
    bool md = k && round_trip(k, &kek);
    if (k) k->ops->free(k);
    /* nothing at all */
    k = open_provider(&f, "alias/sluice", "", 5000);
    sl_err none = k ? k->ops->generate(k, 1, &kek, err, sizeof err) : SL_EIO;
    bool none_says = strstr(err, "no AWS credentials") != NULL;
    if (k) k->ops->free(k);
    fixture_close(&f);
    CHECK(web);
    CHECK_EQ(bad_web, SL_EKMS_DENIED);
    CHECK(bad_web_says);
    CHECK(files);
    CHECK_EQ(stale, SL_EKMS_DENIED);
    CHECK(rotated);
    CHECK(md);
    CHECK_EQ(none, SL_EKMS_DENIED);
    CHECK(none_says);
}

SL_TEST(kms_aws_config_errors) {
    sl_config *c = calloc(1, sizeof *c);
    CHECK(c);
    sl_config_defaults(c);
    char err[256];
    sl_kms *k = NULL;
    static fixture f; /* only for the environment */
    env_save(&f);
    snprintf(f.dir, sizeof f.dir, "/nonexistent-sluice-home");
    fixture_env_clear(&f);
    sl_config_set(c, "sluice.kms.provider", "aws-kms", err, sizeof err);
    sl_err no_key = sl_kms_open(c, &k, err, sizeof err);
    bool no_key_says = strstr(err, "sluice.kms.aws.key.id") != NULL;
    sl_config_set(c, "sluice.kms.aws.key.id", "alias/sluice", err, sizeof err);
    sl_err no_region = sl_kms_open(c, &k, err, sizeof err);
    bool no_region_says = strstr(err, "sluice.kms.aws.region") != NULL;
    setenv("AWS_REGION", "eu-central-1", 1);
    sl_config_set(c, "sluice.kms.aws.endpoint", "http://kms.example.com/", err, sizeof err);
    sl_err plain = sl_kms_open(c, &k, err, sizeof err);
    sl_config_set(c, "sluice.kms.aws.endpoint", "", err, sizeof err);
    sl_err fine = sl_kms_open(c, &k, err, sizeof err);
    if (fine == SL_OK) k->ops->free(k);
    env_restore(&f);
    free(c);
    CHECK_EQ(no_key, SL_ECONFIG);
    CHECK(no_key_says);
    CHECK_EQ(no_region, SL_ECONFIG);
    CHECK(no_region_says);
    CHECK_EQ(plain, SL_ECONFIG);
    CHECK_EQ(fine, SL_OK);
}
