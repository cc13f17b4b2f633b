/* libFuzzer target for the control socket's request line (sl_ctl_parse_line, src/ctl), the only
 * bytes a local client sends the broker there. Invariants on acceptance: 1..SL_CTL_MAX_WORDS
 * words, each non-empty printable ASCII without spaces, pointing into the copy, and together no
 * longer than the input; on refusal a reason is given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/sl_ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *line = malloc(size ? size : 1); /* exact size: a read past the end is caught */
    if (!line) return 0;
    if (size) memcpy(line, data, size);
    static sl_ctl_req req;
    const char *why = NULL;
    sl_err e = sl_ctl_parse_line(line, size, &req, &why);
    if (e != SL_OK) {
        if (!why || !*why) abort();
        free(line);
        return 0;
    }
    if (req.argc < 1 || req.argc > SL_CTL_MAX_WORDS) abort();
    size_t total = 0;
    for (int i = 0; i < req.argc; i++) {
        const char *w = req.argv[i];
        if (w < req.buf || w >= req.buf + sizeof req.buf) abort();
        size_t l = strlen(w);
        if (!l) abort();
        for (size_t k = 0; k < l; k++)
            if (w[k] <= ' ' || w[k] > '~') abort();
        total += l;
    }
    if (total > size) abort();
    free(line);
    return 0;
}
