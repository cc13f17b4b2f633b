/* Reveal grants (src/protect/sl_grants.h): put replaces a grant with the same principal, topic
 * and field; the most specific grant decides a view (literal topic over prefix, longer prefix
 * over shorter, named field over "*"); the file round-trips and a malformed line is refused
 * naming its line; words are checked like the CLI gives them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protect/sl_grants.h"
#include "sl_test.h"

static sl_grant mk(const char *p, const char *t, const char *f, sl_view v) {
    sl_grant g;
    memset(&g, 0, sizeof g);
    snprintf(g.principal, sizeof g.principal, "%s", p);
    snprintf(g.topic, sizeof g.topic, "%s", t);
    snprintf(g.field, sizeof g.field, "%s", f);
    g.view = v;
    return g;
}

static sl_err put(sl_grants *g, const char *p, const char *t, const char *f, sl_view v) {
    sl_grant x = mk(p, t, f, v);
    return sl_grants_put(g, &x);
}

static sl_view view(const sl_grants *g, const char *p, const char *t, const char *f) {
    return sl_grants_view(g, p, t, strlen(t), f);
}

SL_TEST(grants_views_and_names) {
    sl_view v;
    CHECK(sl_view_parse("reveal", &v) && v == SL_VIEW_REVEAL);
    CHECK(sl_view_parse("mask", &v) && v == SL_VIEW_MASK);
    CHECK(sl_view_parse("token", &v) && v == SL_VIEW_TOKEN);
    CHECK(!sl_view_parse("stored", &v) && !sl_view_parse("Reveal", &v) && !sl_view_parse("", &v));
    CHECK(!strcmp(sl_view_name(SL_VIEW_MASK), "mask"));
    CHECK(!strcmp(sl_view_name(SL_VIEW_STORED), "stored"));
}

SL_TEST(grants_check_words) {
    static const struct {
        const char *p, *t, *f;
        sl_view v;
        const char *why; /* NULL: valid */
    } k[] = {
        {"User:alice", "payments", "*", SL_VIEW_REVEAL, NULL},
        {"User:alice", "pay*", "value.card_number", SL_VIEW_MASK, NULL},
        {"User:alice", "*", "value.items[*].pan", SL_VIEW_TOKEN, NULL},
        {"User:alice", "payments", "header:meta", SL_VIEW_REVEAL, NULL},
        {"User:alice", "payments", "key", SL_VIEW_REVEAL, NULL},
        {"alice", "payments", "*", SL_VIEW_REVEAL, "principal must be TYPE:NAME (User:alice)"},
        {"User:", "payments", "*", SL_VIEW_REVEAL, "principal must be TYPE:NAME (User:alice)"},
        {"User:al ice", "payments", "*", SL_VIEW_REVEAL,
         "principal must be printable ASCII without spaces"},
        {"User:\xc3\xa9", "payments", "*", SL_VIEW_REVEAL,
         "principal must be printable ASCII without spaces"},
        {"User:a", "", "*", SL_VIEW_REVEAL, "empty topic"},
        {"User:a", "pay/x", "*", SL_VIEW_REVEAL,
         "topic must be a topic name or a prefix ending in '*'"},
        {"User:a", "p*y", "*", SL_VIEW_REVEAL,
         "topic must be a topic name or a prefix ending in '*'"},
        {"User:a", "..", "*", SL_VIEW_REVEAL, "bad topic name"},
        {"User:a", "t", "value.", SL_VIEW_REVEAL, ""}, /* sl_jpath_parse's reason */
        {"User:a", "t", "values", SL_VIEW_REVEAL,
         "must be value, key or header:NAME, then an optional path"},
        {"User:a", "t", "**", SL_VIEW_REVEAL,
         "must be value, key or header:NAME, then an optional path"},
        {"User:a", "t", "*", SL_VIEW_STORED, "view must be reveal, mask or token"},
        {"User:a", "t", "*", (sl_view)9, "view must be reveal, mask or token"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        sl_grant g = mk(k[i].p, k[i].t, k[i].f, k[i].v);
        const char *why = NULL;
        sl_err e = sl_grant_check(&g, &why);
        if (k[i].why ? (e != SL_EINVAL || !why || (k[i].why[0] && strcmp(why, k[i].why)))
                     : e != SL_OK)
            fprintf(stderr, "  case %zu: %s\n", i, why ? why : "(ok)");
        CHECK(k[i].why ? e == SL_EINVAL : e == SL_OK);
        if (k[i].why && k[i].why[0]) CHECK(!strcmp(why, k[i].why));
    }
    /* 250 topic characters are one too many; an unterminated field is refused, not read past. */
    sl_grant g = mk("User:a", "", "*", SL_VIEW_REVEAL);
    memset(g.topic, 'a', 250);
    const char *why;
    CHECK(sl_grant_check(&g, &why) == SL_EINVAL);
    g.topic[249] = '*';
    CHECK(sl_grant_check(&g, &why) == SL_OK);
    memset(g.field, 'v', sizeof g.field);
    CHECK(sl_grant_check(&g, &why) == SL_EINVAL && !strcmp(why, "field too long"));
}

SL_TEST(grants_put_replace_remove_any) {
    sl_grants g = {0};
    CHECK(!sl_grants_any(&g, "User:fraud"));
    CHECK(view(&g, "User:fraud", "payments", "value.card_number") == SL_VIEW_STORED);
    CHECK(put(&g, "User:fraud", "payments", "value.card_number", SL_VIEW_MASK) == SL_OK);
    CHECK(put(&g, "User:fraud", "payments", "value.customer_id", SL_VIEW_TOKEN) == SL_OK);
    CHECK(g.n == 2 && sl_grants_any(&g, "User:fraud") && !sl_grants_any(&g, "User:fraudx"));
    CHECK(!sl_grants_any(&g, "User:frau"));
    /* Same principal, topic and field: replaced, not added. */
    CHECK(put(&g, "User:fraud", "payments", "value.card_number", SL_VIEW_REVEAL) == SL_OK);
    CHECK(g.n == 2 && view(&g, "User:fraud", "payments", "value.card_number") == SL_VIEW_REVEAL);
    CHECK(put(&g, "nobody", "payments", "*", SL_VIEW_REVEAL) == SL_EINVAL && g.n == 2);
    CHECK(!sl_grants_remove(&g, "User:fraud", "payments", "value.ssn"));
    CHECK(!sl_grants_remove(&g, "User:fraud", "payments*", "value.card_number"));
    CHECK(sl_grants_remove(&g, "User:fraud", "payments", "value.card_number"));
    CHECK(g.n == 1 && view(&g, "User:fraud", "payments", "value.card_number") == SL_VIEW_STORED);
    CHECK(view(&g, "User:fraud", "payments", "value.customer_id") == SL_VIEW_TOKEN);
    CHECK(sl_grants_remove(&g, "User:fraud", "payments", "value.customer_id"));
    CHECK(g.n == 0 && !sl_grants_any(&g, "User:fraud"));
    sl_grants_free(&g);
    /* The limit. */
    for (int i = 0; i < SL_GRANTS_MAX; i++) {
        char p[32];
        snprintf(p, sizeof p, "User:u%d", i);
        if (put(&g, p, "t", "*", SL_VIEW_REVEAL) != SL_OK) break;
    }
    CHECK(g.n == SL_GRANTS_MAX);
    CHECK(put(&g, "User:one-more", "t", "*", SL_VIEW_REVEAL) == SL_ETOOLARGE);
    CHECK(put(&g, "User:u7", "t", "*", SL_VIEW_MASK) == SL_OK); /* a replacement still fits */
    CHECK(view(&g, "User:u7", "t", "value") == SL_VIEW_MASK);
    sl_grants_free(&g);
    CHECK(g.v == NULL && g.n == 0);
}

SL_TEST(grants_find_exact_key) {
    sl_grants g = {0};
    CHECK(!sl_grants_find(&g, "User:a", "payments", "*"));
    CHECK(put(&g, "User:a", "payments", "*", SL_VIEW_REVEAL) == SL_OK);
    CHECK(put(&g, "User:a", "pay*", "value.ssn", SL_VIEW_MASK) == SL_OK);
    CHECK(put(&g, "User:b", "payments", "value.ssn", SL_VIEW_TOKEN) == SL_OK);
    const sl_grant *x = sl_grants_find(&g, "User:a", "pay*", "value.ssn");
    CHECK(x == &g.v[1] && x->view == SL_VIEW_MASK);
    /* The key as written: no prefix, "*" or principal-prefix matching. */
    CHECK(!sl_grants_find(&g, "User:a", "payments", "value.ssn"));
    CHECK(!sl_grants_find(&g, "User:a", "pay", "value.ssn"));
    CHECK(!sl_grants_find(&g, "User:", "payments", "*"));
    CHECK(!sl_grants_find(&g, "User:b", "payments", "*"));
    /* A removal keeps the others' order and every one of them found. */
    CHECK(sl_grants_remove(&g, "User:a", "payments", "*"));
    CHECK(!sl_grants_find(&g, "User:a", "payments", "*"));
    CHECK(g.n == 2 && !strcmp(g.v[0].topic, "pay*") && !strcmp(g.v[1].principal, "User:b"));
    CHECK(sl_grants_find(&g, "User:a", "pay*", "value.ssn") == &g.v[0]);
    CHECK(sl_grants_find(&g, "User:b", "payments", "value.ssn") == &g.v[1]);
    sl_grants_free(&g);
    CHECK(g.slot == NULL && g.nslot == 0 && !sl_grants_find(&g, "User:b", "payments", "value.ssn"));
}

/* The words of model key k: 17 principals, literal and prefix topics, named and "*" fields. */
static const char *key_words(int k, char p[32], char t[32]) {
    snprintf(p, 32, "User:u%d", k % 17);
    snprintf(t, 32, k % 3 ? "t%d" : "t%d*", k);
    return k % 2 ? "*" : "value.x";
}

/* Puts and removes drawn over 300 keys against a model of the array (order, views): the index
 * grows, is rebuilt after every removal, and find, put and remove agree with the model. */
SL_TEST(grants_index_matches_model) {
    enum { KEYS = 300, OPS = 6000 };
    int order[KEYS], nm = 0; /* the model: key ids in array order */
    sl_view mv[KEYS] = {0};
    sl_grants g = {0};
    uint32_t r = 12345;
    char p[32], t[32];
    for (int op = 0; op < OPS; op++) {
        r = r * 1103515245u + 12345u;
        int k = (int)((r >> 8) % KEYS);
        const char *fld = key_words(k, p, t);
        int at = -1;
        for (int i = 0; i < nm; i++)
            if (order[i] == k) at = i;
        if ((r >> 20) % 3) { /* put, two times in three, so the set fills */
            sl_view v = (sl_view)(SL_VIEW_REVEAL + (int)((r >> 24) % 3));
            CHECK(put(&g, p, t, fld, v) == SL_OK);
            if (at < 0) order[nm++] = k;
            mv[k] = v;
        } else {
            CHECK(sl_grants_remove(&g, p, t, fld) == (at >= 0));
            if (at >= 0) memmove(&order[at], &order[at + 1], (size_t)(--nm - at) * sizeof *order);
        }
        CHECK(g.n == nm);
        if (op % 97 && op != OPS - 1) continue;
        for (int i = 0; i < nm; i++) {
            int kk = order[i];
            fld = key_words(kk, p, t);
            CHECK(!strcmp(g.v[i].principal, p) && !strcmp(g.v[i].topic, t) &&
                  !strcmp(g.v[i].field, fld) && g.v[i].view == mv[kk]);
            CHECK(sl_grants_find(&g, p, t, fld) == &g.v[i]);
        }
        for (int kk = 0; kk < KEYS; kk++) {
            bool in = false;
            for (int i = 0; i < nm; i++) in |= order[i] == kk;
            fld = key_words(kk, p, t);
            CHECK(!sl_grants_find(&g, p, t, fld) == !in);
        }
    }
    CHECK(nm > 100); /* it did fill */
    sl_grants_free(&g);
}

SL_TEST(grants_most_specific_wins) {
    sl_grants g = {0};
    CHECK(put(&g, "User:a", "*", "*", SL_VIEW_TOKEN) == SL_OK);
    CHECK(put(&g, "User:a", "pay*", "*", SL_VIEW_MASK) == SL_OK);
    CHECK(put(&g, "User:a", "payments*", "value.card", SL_VIEW_TOKEN) == SL_OK);
    CHECK(put(&g, "User:a", "payments", "*", SL_VIEW_REVEAL) == SL_OK);
    CHECK(put(&g, "User:a", "payments", "value.ssn", SL_VIEW_MASK) == SL_OK);
    CHECK(put(&g, "User:b", "payments", "value.ssn", SL_VIEW_REVEAL) == SL_OK);
    /* Named field over "*" on the same topic. */
    CHECK(view(&g, "User:a", "payments", "value.ssn") == SL_VIEW_MASK);
    CHECK(view(&g, "User:a", "payments", "value.name") == SL_VIEW_REVEAL);
    /* A literal topic over a longer prefix with a named field. */
    CHECK(view(&g, "User:a", "payments", "value.card") == SL_VIEW_REVEAL);
    /* A longer prefix over a shorter. */
    CHECK(view(&g, "User:a", "payments.eu", "value.card") == SL_VIEW_TOKEN);
    CHECK(view(&g, "User:a", "payments.eu", "value.name") == SL_VIEW_MASK);
    CHECK(view(&g, "User:a", "payroll", "value.card") == SL_VIEW_MASK);
    CHECK(view(&g, "User:a", "orders", "value.card") == SL_VIEW_TOKEN);
    CHECK(view(&g, "User:a", "pa", "value.card") == SL_VIEW_TOKEN);
    /* Other principals see only theirs; the topic is a length, not a C string. */
    CHECK(view(&g, "User:b", "payments", "value.name") == SL_VIEW_STORED);
    CHECK(view(&g, "User:b", "payments", "value.ssn") == SL_VIEW_REVEAL);
    CHECK(sl_grants_view(&g, "User:b", "paymentsXX", 8, "value.ssn") == SL_VIEW_REVEAL);
    CHECK(sl_grants_view(&g, "User:b", "payments", 7, "value.ssn") == SL_VIEW_STORED);
    CHECK(view(&g, "User:c", "payments", "value.ssn") == SL_VIEW_STORED);
    sl_grants_free(&g);
}

static int write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(s, f);
    return fclose(f) == 0;
}

SL_TEST(grants_file_round_trip) {
    char dir[] = "/tmp/sl_grants_XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/grants", dir);
    sl_grants g = {0}, h = {0};
    CHECK(sl_grants_load(path, &g, err, sizeof err) == SL_OK && g.n == 0); /* missing: empty */
    CHECK(put(&g, "User:payments", "payments", "*", SL_VIEW_REVEAL) == SL_OK);
    CHECK(put(&g, "User:fraud", "payments", "value.card_number", SL_VIEW_MASK) == SL_OK);
    CHECK(put(&g, "User:fraud", "payments", "value.customer_id", SL_VIEW_TOKEN) == SL_OK);
    CHECK(put(&g, "User:analytics", "payments*", "value.customer_id", SL_VIEW_TOKEN) == SL_OK);
    CHECK(put(&g, "User:o\"d\\d", "*", "header:x-id.a[*]", SL_VIEW_REVEAL) == SL_OK);
    CHECK(sl_grants_save(path, &g) == SL_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(sl_grants_load(path, &h, err, sizeof err) == SL_OK);
    CHECK(h.n == g.n);
    for (int i = 0; i < g.n; i++) CHECK(!memcmp(&g.v[i], &h.v[i], sizeof g.v[i]));
    /* No temporary file is left beside it. */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/.grants.tmp", dir);
    CHECK(access(tmp, F_OK) != 0);
    /* The listing. */
    sl_text t = {0};
    sl_grants_json(&h, &t);
    CHECK(!t.oom);
    CHECK(!strncmp(t.p,
                   "[{\"principal\":\"User:payments\",\"topic\":\"payments\",\"field\":\"*\","
                   "\"view\":\"reveal\"},{\"principal\":\"User:fraud\"",
                   strlen("[{\"principal\":\"User:payments\",\"topic\":\"payments\",\"field\":"
                          "\"*\",\"view\":\"reveal\"},{\"principal\":\"User:fraud\"")));
    CHECK(strstr(t.p, "{\"principal\":\"User:o\\\"d\\\\d\",\"topic\":\"*\",\"field\":"
                      "\"header:x-id.a[*]\",\"view\":\"reveal\"}]"));
    sl_text_free(&t);
    sl_grants empty = {0};
    sl_text t2 = {0};
    sl_grants_json(&empty, &t2);
    CHECK(t2.p && !strcmp(t2.p, "[]"));
    sl_text_free(&t2);
    sl_grants_free(&h);
    /* An empty set saves as the header alone and loads back empty. */
    CHECK(sl_grants_save(path, &empty) == SL_OK);
    CHECK(sl_grants_load(path, &h, err, sizeof err) == SL_OK && h.n == 0);
    sl_grants_free(&g);
    unlink(path);
    rmdir(dir);
}

SL_TEST(grants_file_malformed_lines) {
    char dir[] = "/tmp/sl_grants_XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256], err[512], want[600];
    snprintf(path, sizeof path, "%s/grants", dir);
    static const struct {
        const char *text;
        int line;
        const char *why;
    } k[] = {
        {"User:a t * reveal\n", 1, "not a grants file (want '# sluice grants v1' first)"},
        {"# sluice grants v2\n", 1, "not a grants file (want '# sluice grants v1' first)"},
        {"# sluice grants v1\nUser:a t * reveal\nUser:b t * see\n", 3,
         "view must be reveal, mask or token"},
        {"# sluice grants v1\n\nUser:a t *\n", 3,
         "fewer than four words (PRINCIPAL TOPIC FIELD VIEW)"},
        {"# sluice grants v1\nUser:a t * reveal x\n", 2, "more than four words"},
        {"# sluice grants v1\nUser:a  t * reveal\n", 2, "words must be separated by one space"},
        {"# sluice grants v1\nUser:a t * reveal \n", 2, "more than four words"},
        {"# sluice grants v1\nUser:a\tt * reveal\n", 2,
         "fewer than four words (PRINCIPAL TOPIC FIELD VIEW)"},
        {"# sluice grants v1\nalice t * reveal\n", 2, "principal must be TYPE:NAME (User:alice)"},
        {"# sluice grants v1\nUser:a t/x * reveal\n", 2,
         "topic must be a topic name or a prefix ending in '*'"},
        {"# sluice grants v1\nUser:a t values reveal\n", 2,
         "must be value, key or header:NAME, then an optional path"},
        {"# sluice grants v1\nUser:a t * reveal\r\n", 2, "view must be reveal, mask or token"},
        {"# sluice grants v1\nUser:a t * reveal\nUser:b t * mask\n# c\nUser:a t * mask\n", 5,
         "duplicate grant (first on line 2)"},
        /* A malformed line after a duplicate is still the one reported. */
        {"# sluice grants v1\nUser:a t * reveal\nUser:a t * mask\nUser:b t * see\n", 4,
         "view must be reveal, mask or token"},
        {"# sluice grants v1\nUser:b t * reveal\nUser:a t * reveal\nUser:a t * mask\n"
         "User:b t * mask\n",
         4, "duplicate grant (first on line 3)"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        CHECK(write_file(path, k[i].text));
        sl_grants g = {0};
        sl_err e = sl_grants_load(path, &g, err, sizeof err);
        snprintf(want, sizeof want, "%s:%d: %s", path, k[i].line, k[i].why);
        if (e != SL_ECORRUPT || strcmp(err, want))
            fprintf(stderr, "  case %zu: got '%s'\n", i, e ? err : "(ok)");
        CHECK(e == SL_ECORRUPT && !strcmp(err, want));
        CHECK(g.n == 0 && g.v == NULL);
    }
    /* A principal longer than the field holds. */
    char *big = malloc(600);
    CHECK(big);
    strcpy(big, "# sluice grants v1\nUser:");
    memset(big + strlen(big), 'x', 300);
    strcpy(big + 24 + 300, " t * reveal\n");
    CHECK(write_file(path, big));
    free(big);
    sl_grants g = {0};
    CHECK(sl_grants_load(path, &g, err, sizeof err) == SL_ECORRUPT);
    snprintf(want, sizeof want, "%s:2: principal too long", path);
    CHECK(!strcmp(err, want));
    /* An unreadable path (a directory) is an I/O error, not an empty set. */
    CHECK(sl_grants_load(dir, &g, err, sizeof err) != SL_OK);
    /* Saving where the directory does not exist fails. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/grants", dir);
    CHECK(sl_grants_save(bad, &g) != SL_OK);
    unlink(path);
    rmdir(dir);
}
