/* libFuzzer target for the field-protection policy parser (src/protect/sl_policy.h), which reads
 * an operator's file in the broker, libsluice and the CLI filters. Whatever the bytes: no read
 * outside the input (an exact-size heap copy), no leak, and either an error message that names
 * the file and is printable, or a policy within its limits whose every block is found again by
 * its own pattern (a literal by its name; a prefix block, or a longer prefix, by the prefix),
 * whose keys pass the callback, and whose lookups of a few names agree with a linear scan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protect/sl_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool key_ok(void *arg, const char *name) {
    (void)arg;
    return name[0] == 'k';
}

/* What sl_policy_topic must return, by brute force. */
static const sl_ptopic *linear(const sl_policy *p, const char *name, size_t n) {
    const sl_ptopic *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < p->ntopics; i++) {
        const sl_ptopic *t = &p->topics[i];
        size_t l = strlen(t->pattern);
        if (!t->prefix && l == n && !memcmp(t->pattern, name, n)) return t;
        if (t->prefix && l <= n && !memcmp(t->pattern, name, l) && (!best || l > best_len)) {
            best = t;
            best_len = l;
        }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    char err[200];
    sl_policy *p = NULL;
    sl_err e = sl_policy_parse(buf, size, "fz", key_ok, NULL, &p, err, sizeof err);
    if (e) {
        if (p || strncmp(err, "fz:", 3) || strlen(err) >= sizeof err) abort();
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) abort();
    } else {
        if (!p || p->refs != 1 || p->ntopics > SL_POLICY_MAX_TOPICS || strlen(p->digest) != 64)
            abort();
        for (int i = 0; i < p->ntopics; i++) {
            const sl_ptopic *t = &p->topics[i];
            size_t l = strlen(t->pattern);
            if (t->nrules > SL_POLICY_MAX_RULES || l > 249) abort();
            const sl_ptopic *f = sl_policy_topic(p, t->pattern, l);
            if (!f || (!t->prefix && f != t) || f != linear(p, t->pattern, l)) abort();
            for (int r = 0; r < t->nrules; r++) {
                const sl_prule *ru = &t->rules[r];
                if ((ru->action == SL_PA_TOKEN || ru->action == SL_PA_ENCRYPT) &&
                    !key_ok(NULL, ru->key))
                    abort();
                if (!ru->target.whole &&
                    (ru->target.path.nseg < 1 || ru->target.path.nseg > SL_JPATH_MAX_SEGS))
                    abort();
            }
        }
        static const char *const names[] = {"payments", "refunds", "pay",
                                            "",         "a.b-c_d", "payments.eu.cards"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (sl_policy_topic(p, names[i], strlen(names[i])) !=
                linear(p, names[i], strlen(names[i])))
                abort();
        const char *keys[8];
        int n = sl_policy_keys(p, keys, 8);
        for (int i = 0; i < n; i++)
            if (!key_ok(NULL, keys[i])) abort();
        sl_policy_ref(p);
        sl_policy_unref(p);
        sl_policy_unref(p);
    }
    /* The target parser on its own, as the grants use it. */
    if (size < SL_POLICY_TEXT_MAX + 8) {
        sl_ptarget t;
        const char *why = NULL;
        if (sl_ptarget_parse(buf, size, &t, &why) == SL_OK) {
            if (strlen(t.text) != size || memcmp(t.text, buf, size)) abort();
        } else if (!why) {
            abort();
        }
    }
    free(buf);
    return 0;
}
