/* libsluice through its public API only (include/sluice.h): records with key, value and
 * headers, the error codes a caller branches on, and field encryption with keys made by a key
 * service in a temporary directory and read back by the library the way a producer's process
 * would (a properties file naming the same directories). */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "base/sl_config.h"
#include "base/sl_time.h"
#include "keys_env.h"
#include "kms/sl_keysvc.h"
#include "protect/sl_fkeys.h"
#include "sl_test.h"
#include "sluice.h"

static void write_text(const char *dir, const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static bool has(const void *p, size_t n, const char *s) {
    return p && memmem(p, n, s, strlen(s)) != NULL;
}

static const char k_mask_policy[] = "version 1\n"
                                    "topic payments\n"
                                    "  value.card_number mask\n"
                                    "  key.id mask keep-first=0 keep-last=2\n"
                                    "  header:trace redact remove\n"
                                    "  value.secret redact\n";

SL_TEST(libsluice_mask_record_without_keys) {
    char *dir = sl_t_tmpdir("sl_libsluice_");
    char pol[512], err[512] = "";
    write_text(dir, "policy", k_mask_policy, pol, sizeof pol);
    sluice_protector *p = NULL;
    CHECK_EQ(sluice_open(NULL, pol, &p, err, sizeof err), SLUICE_OK);
    CHECK(p && !err[0]);
    CHECK(!strcmp(sluice_version(), "0.1.0"));

    static const char key[] = "{\"id\":\"12345\"}";
    static const char val[] =
        "{\"card_number\":\"4111111111111111\",\"amount\":10,\"secret\":\"s\"}";
    sluice_header hs[3] = {{"trace", 5, "abc", 3}, {"keep", 4, NULL, 0}, {"e", 1, "", 0}};
    sluice_record in = {key, strlen(key), val, strlen(val), hs, 3}, out;
    CHECK_EQ(sluice_protect(p, "payments", &in, &out, err, sizeof err), SLUICE_OK);
    CHECK(has(out.value, out.value_len, "\"************1111\""));
    CHECK(!has(out.value, out.value_len, "4111111111111111"));
    CHECK(has(out.value, out.value_len, "\"amount\":10"));
    CHECK(has(out.value, out.value_len, "\"secret\":null"));
    CHECK(has(out.key, out.key_len, "\"***45\""));
    /* The redacted header is gone; the others keep their null and empty values. */
    CHECK_EQ(out.nheaders, 2);
    CHECK(out.headers[0].key_len == 4 && !memcmp(out.headers[0].key, "keep", 4));
    CHECK(out.headers[0].value == NULL);
    CHECK(out.headers[1].key_len == 1 && out.headers[1].value && !out.headers[1].value_len);
    /* Reveal: no encrypt rule, nothing to show; the record comes back as it went in. */
    sluice_record back;
    CHECK_EQ(sluice_reveal(p, "payments", &out, &back, err, sizeof err), SLUICE_OK);
    CHECK(back.value_len == out.value_len && !memcmp(back.value, out.value, out.value_len));
    CHECK_EQ(back.nheaders, 2);
    sluice_record_free(&back);
    sluice_record_free(&out);
    CHECK(out.value == NULL && out.headers == NULL);

    /* A topic without a block: copied unchanged (null key stays null). */
    sluice_record in2 = {NULL, 0, val, strlen(val), NULL, 0};
    CHECK_EQ(sluice_protect(p, "other", &in2, &out, err, sizeof err), SLUICE_OK);
    CHECK(out.key == NULL && out.value_len == strlen(val) && !memcmp(out.value, val, strlen(val)));
    CHECK(out.value != (const void *)val && out.nheaders == 0);
    sluice_record_free(&out);

    /* Value only. */
    void *o = NULL;
    size_t olen = 0;
    static const char v2[] = "{\"card_number\":\"5500000000000004\"}";
    CHECK_EQ(sluice_protect_value(p, "payments", v2, strlen(v2), &o, &olen, err, sizeof err),
             SLUICE_OK);
    CHECK(has(o, olen, "\"************0004\"") && !has(o, olen, "5500"));
    sluice_free(o);

    /* Not JSON on a protected topic: refused, the reason without the data. */
    static const char bad[] = "card 4111111111111111";
    err[0] = 0;
    CHECK_EQ(sluice_protect_value(p, "payments", bad, strlen(bad), &o, &olen, err, sizeof err),
             SLUICE_EUNPROTECTABLE);
    CHECK(err[0] && !strstr(err, "4111") && o == NULL);
    /* Bad arguments. */
    CHECK_EQ(sluice_protect(p, NULL, &in, &out, err, sizeof err), SLUICE_EINVAL);
    CHECK_EQ(sluice_protect(NULL, "payments", &in, &out, err, sizeof err), SLUICE_EINVAL);
    sluice_header nokey = {NULL, 3, "x", 1};
    sluice_record in3 = {NULL, 0, "{}", 2, &nokey, 1};
    CHECK_EQ(sluice_protect(p, "payments", &in3, &out, err, sizeof err), SLUICE_EINVAL);
    sluice_close(p);
    sluice_close(NULL);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(libsluice_open_errors) {
    char *dir = sl_t_tmpdir("sl_libsluice_");
    char pol[512], err[512] = "";
    sluice_protector *p = NULL;
    /* An unknown action: the message names the file and line. */
    write_text(dir, "bad", "version 1\ntopic payments\n  value.pan hash\n", pol, sizeof pol);
    CHECK_EQ(sluice_open(NULL, pol, &p, err, sizeof err), SLUICE_ECONFIG);
    CHECK(p == NULL && strstr(err, pol) && strstr(err, ":3:"));
    /* A keyed rule without properties: no key exists, so the policy does not load. */
    write_text(dir, "keyed", "topic payments\n  value.pan encrypt key=pan\n", pol, sizeof pol);
    CHECK_EQ(sluice_open(NULL, pol, &p, err, sizeof err), SLUICE_ECONFIG);
    CHECK(p == NULL && strstr(err, ":2:"));
    /* A properties file with an invalid value names the key. */
    char props[512];
    write_text(dir, "props", "sluice.kms.cache.ttl.ms=soon\n", props, sizeof props);
    write_text(dir, "ok", k_mask_policy, pol, sizeof pol);
    CHECK_EQ(sluice_open(props, pol, &p, err, sizeof err), SLUICE_ECONFIG);
    CHECK(p == NULL && strstr(err, "sluice.kms.cache.ttl.ms"));
    /* A missing policy file. */
    snprintf(pol, sizeof pol, "%s/missing", dir);
    CHECK(sluice_open(NULL, pol, &p, err, sizeof err) < 0 && p == NULL && err[0]);
    CHECK_EQ(sluice_open(NULL, NULL, &p, err, sizeof err), SLUICE_EINVAL);
    sl_t_rm_rf(dir);
    free(dir);
}

/* ---- with keys ---- */

SL_TEST(libsluice_encrypt_round_trip_with_keys) {
    char *dir = sl_t_tmpdir("sl_libsluice_");
    char props[512], pol[512], err[512] = "", text[1024];
    snprintf(text, sizeof text,
             "log.dirs=%s/data\n"
             "sluice.kms.local.master.key.env=SLUICE_TEST_NO_SUCH_VAR\n",
             dir);
    write_text(dir, "props", text, props, sizeof props);
    snprintf(text, sizeof text, "%s/data", dir);
    mkdir(text, 0700);
    /* The broker's side: its key service creates the field keys in its keyring. */
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    CHECK(sl_config_load(c, props, err, sizeof err) == SL_OK);
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* the key service turned it off for the process */
    CHECK(sl_t_field_key(ks, "pan") == SL_OK);
    CHECK(sl_t_field_key(ks, "cust") == SL_OK);
    CHECK(sl_t_field_key(ks, SL_FKEYS_SUBJECTS) == SL_OK);
    sl_keysvc_close(ks);
    free(c);

    write_text(dir, "policy",
               "version 1\n"
               "topic payments\n"
               "  subject value.customer_id token-key=cust\n"
               "  value.card_number encrypt key=pan view-mask=0,4\n"
               "  value.name encrypt key=pan alg=siv\n"
               "  value.email token key=cust\n",
               pol, sizeof pol);
    sluice_protector *p = NULL;
    CHECK_EQ(sluice_open(props, pol, &p, err, sizeof err), SLUICE_OK);
    static const char val[] = "{\"customer_id\":\"C-1001\",\"card_number\":\"4111111111111111\","
                              "\"name\":\"Ada\",\"email\":\"ada@example.com\",\"n\":1}";
    void *o = NULL, *o2 = NULL, *r = NULL;
    size_t olen = 0, o2len = 0, rlen = 0;
    CHECK_EQ(sluice_protect_value(p, "payments", val, strlen(val), &o, &olen, err, sizeof err),
             SLUICE_OK);
    CHECK(has(o, olen, "\"sl1.") && has(o, olen, "\"tok1.cust."));
    CHECK(!has(o, olen, "4111111111111111") && !has(o, olen, "Ada") && !has(o, olen, "ada@"));
    CHECK(has(o, olen, "\"customer_id\":\"C-1001\"") && has(o, olen, "\"n\":1"));
    /* The subject got a key of its own, in the store the broker uses. */
    struct stat st;
    snprintf(text, sizeof text, "%s/data/sluice-subject-keys", dir);
    CHECK(stat(text, &st) == 0 && st.st_size > 8);
    /* Protecting what is already protected changes nothing (the broker passes it too). */
    CHECK_EQ(sluice_protect_value(p, "payments", o, olen, &o2, &o2len, err, sizeof err), SLUICE_OK);
    CHECK(o2len == olen && !memcmp(o2, o, olen));
    sluice_free(o2);
    /* Reveal: every encrypted field in clear; the token stays a token (one-way). */
    CHECK_EQ(sluice_reveal_value(p, "payments", o, olen, &r, &rlen, err, sizeof err), SLUICE_OK);
    CHECK(has(r, rlen, "\"card_number\":\"4111111111111111\"") && has(r, rlen, "\"name\":\"Ada\""));
    CHECK(has(r, rlen, "\"tok1.cust.") && !has(r, rlen, "ada@"));
    sluice_free(r);
    sluice_close(p);

    /* A second handle (another process, another day) reveals what the first protected. */
    CHECK_EQ(sluice_open(props, pol, &p, err, sizeof err), SLUICE_OK);
    CHECK_EQ(sluice_reveal_value(p, "payments", o, olen, &r, &rlen, err, sizeof err), SLUICE_OK);
    CHECK(has(r, rlen, "4111111111111111"));
    sluice_free(r);
    /* A tampered ciphertext does not decrypt: it stays as stored, no error. */
    char *t = malloc(olen);
    memcpy(t, o, olen);
    char *c1 = memmem(t, olen, "\"sl1.", 5);
    CHECK(c1);
    char *q = strchr(c1 + 1, '"');
    q[-2] = q[-2] == 'A' ? 'B' : 'A';
    CHECK_EQ(sluice_reveal_value(p, "payments", t, olen, &r, &rlen, err, sizeof err), SLUICE_OK);
    CHECK(!has(r, rlen, "4111111111111111") && has(r, rlen, "\"sl1."));
    sluice_free(r);
    free(t);
    sluice_free(o);
    /* A policy naming a key the keyring does not have fails at open, naming the line. */
    write_text(dir, "policy2", "topic payments\n  value.ssn encrypt key=nosuch\n", pol, sizeof pol);
    sluice_close(p);
    p = NULL;
    CHECK_EQ(sluice_open(props, pol, &p, err, sizeof err), SLUICE_ECONFIG);
    CHECK(!p && strstr(err, ":2:"));
    sl_t_rm_rf(dir);
    free(dir);
}
