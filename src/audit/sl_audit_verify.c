/* Checkpoint signatures, the signing key, and the verifier behind `sluice audit verify`
 * (docs/audit.md, "Verification"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit/sl_audit_int.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_file.h"

/* ---- signatures and keys ---- */

int sl_audit_cp_message(char *buf, size_t n, uint64_t seq, const char *prev_hex, int64_t time_ms,
                        const char *reason) {
    int l = snprintf(buf, n, "sluice-audit-checkpoint-v1\n%llu\n%s\n%lld\n%s",
                     (unsigned long long)seq, prev_hex, (long long)time_ms, reason);
    return l < 0 ? 0 : (size_t)l >= n ? (int)n - 1 : l;
}

static void hex(const unsigned char *p, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = 0;
}

static int unhex1(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool sl_audit_sign(EVP_PKEY *key, const char *msg, size_t n, char out[129]) {
    unsigned char sig[64];
    size_t slen = sizeof sig;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestSignInit(mc, NULL, NULL, NULL, key) == 1 &&
              EVP_DigestSign(mc, sig, &slen, (const unsigned char *)msg, n) == 1 && slen == 64;
    EVP_MD_CTX_free(mc);
    if (ok) hex(sig, 64, out);
    return ok;
}

bool sl_audit_verify_sig(EVP_PKEY *pub, const char *msg, size_t n, const char *sig_hex) {
    unsigned char sig[64];
    if (!pub || !sig_hex || strlen(sig_hex) != 128) return false;
    for (int i = 0; i < 64; i++) {
        int h = unhex1(sig_hex[2 * i]), l = unhex1(sig_hex[2 * i + 1]);
        if (h < 0 || l < 0) return false;
        sig[i] = (unsigned char)(h << 4 | l);
    }
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pub) == 1 &&
              EVP_DigestVerify(mc, sig, 64, (const unsigned char *)msg, n) == 1;
    EVP_MD_CTX_free(mc);
    return ok;
}

bool sl_audit_key_id(EVP_PKEY *key, char out[17]) {
    unsigned char raw[32];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &n) != 1) {
        out[0] = 0;
        return false;
    }
    char h[65];
    sl_audit_sha256_hex(raw, n, h);
    memcpy(out, h, 16);
    out[16] = 0;
    return true;
}

static bool write_pub(const char *path, EVP_PKEY *key) {
    char pub[PATH_MAX + 8];
    snprintf(pub, sizeof pub, "%s.pub", path);
    int fd = open(pub, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return false;
    }
    bool ok = PEM_write_PUBKEY(f, key) == 1;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    return fclose(f) == 0 && ok;
}

sl_err sl_audit_key_load(const char *path, EVP_PKEY **out, char *err, size_t elen) {
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f && errno != ENOENT) {
        snprintf(err, elen, "sluice.audit.signing.key.file: cannot read %s: %s", path,
                 strerror(errno));
        return SL_EIO;
    }
    EVP_PKEY *key = NULL;
    if (f) {
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
            EVP_PKEY_free(key);
            snprintf(err, elen, "sluice.audit.signing.key.file: %s is not an Ed25519 private key",
                     path);
            return SL_ECONFIG;
        }
    } else {
        key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        (void)sl_mkdir_parent(path, 0700); /* the secrets directory, on a first start */
        int fd = key ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        FILE *w = fd >= 0 ? fdopen(fd, "w") : NULL;
        bool ok = w && PEM_write_PrivateKey(w, key, NULL, NULL, 0, NULL, NULL) == 1;
        ok = w && fflush(w) == 0 && fsync(fileno(w)) == 0 && ok;
        if (w)
            ok = fclose(w) == 0 && ok;
        else if (fd >= 0)
            close(fd);
        if (!ok) {
            EVP_PKEY_free(key);
            snprintf(err, elen, "sluice.audit.signing.key.file: cannot create %s: %s", path,
                     strerror(errno));
            return SL_EIO;
        }
    }
    char pub[PATH_MAX + 8];
    snprintf(pub, sizeof pub, "%s.pub", path);
    if (access(pub, F_OK) != 0 && !write_pub(path, key)) {
        EVP_PKEY_free(key);
        snprintf(err, elen, "sluice.audit.signing.key.file: cannot write %s", pub);
        return SL_EIO;
    }
    *out = key;
    return SL_OK;
}

EVP_PKEY *sl_audit_pubkey_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!k) {
        rewind(f);
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    }
    fclose(f);
    if (k && EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

/* ---- the verifier ---- */

/* What one line says about the chain. */
typedef struct vline {
    char *bytes;
    size_t len;
    bool newline; /* the line ended in '\n' */
    const char *file;
    long lineno;
    bool parsed;
    int64_t seq;
    char prev[65], hash[65];
    char code[24], activity[32];
    int class_uid, activity_id;
    bool cp;
    char cp_reason[24], cp_last[65], cp_sig[129], cp_key[17];
    int64_t cp_seq, cp_time;
} vline;

static void vline_clear(vline *l) {
    free(l->bytes);
    memset(l, 0, sizeof *l);
}

static bool jstr(const sl_json *j, char *out, size_t n) {
    if (!j || j->type != SL_JSON_STR || j->slen >= n) return false;
    memcpy(out, j->s, j->slen);
    out[j->slen] = 0;
    return true;
}

/* An integer member within +-2^53 (exact in a double; every sequence, time and id the trail
 * writes): an edited trail may hold any number, and casting one beyond int64 is undefined. */
static bool jint(const sl_json *j, int64_t *v) {
    if (!j || j->type != SL_JSON_NUM || !j->is_int) return false;
    if (!(j->num >= -9007199254740992.0 && j->num <= 9007199254740992.0)) return false;
    *v = (int64_t)j->num;
    return true;
}

static void vline_parse(vline *l) {
    sl_audit_sha256_hex(l->bytes, l->len, l->hash);
    l->seq = -1;
    sl_arena *ar = sl_arena_new(16384);
    char err[64];
    const sl_json *j = ar ? sl_json_parse(ar, l->bytes, l->len, 32, err, sizeof err) : NULL;
    const sl_json *md = sl_json_get(j, "metadata"), *um = sl_json_get(j, "unmapped");
    int64_t cls = 0, act = 0;
    l->parsed =
        j && jint(sl_json_get(md, "sequence"), &l->seq) && l->seq >= 1 &&
        jstr(sl_json_get(um, "prev_hash"), l->prev, sizeof l->prev) && strlen(l->prev) == 64 &&
        jstr(sl_json_get(md, "event_code"), l->code, sizeof l->code) &&
        jint(sl_json_get(j, "class_uid"), &cls) && jint(sl_json_get(j, "activity_id"), &act);
    (void)jstr(sl_json_get(j, "activity_name"), l->activity, sizeof l->activity);
    l->class_uid = (int)cls;
    l->activity_id = (int)act;
    const sl_json *cp = sl_json_get(um, "checkpoint");
    if (l->parsed && !strcmp(l->code, "checkpoint")) {
        l->cp = true;
        /* A checkpoint missing a field is as bad as one with a wrong signature. */
        if (!jstr(sl_json_get(cp, "reason"), l->cp_reason, sizeof l->cp_reason) ||
            !jint(sl_json_get(cp, "sequence"), &l->cp_seq) ||
            !jstr(sl_json_get(cp, "last_hash"), l->cp_last, sizeof l->cp_last) ||
            !jint(sl_json_get(cp, "time"), &l->cp_time) ||
            !jstr(sl_json_get(cp, "signature"), l->cp_sig, sizeof l->cp_sig))
            l->cp_sig[0] = 0;
        (void)jstr(sl_json_get(cp, "key_id"), l->cp_key, sizeof l->cp_key);
    }
    sl_arena_free(ar);
}

typedef struct vreader {
    char *const *paths;
    int n, at;
    FILE *f;
    long lineno;
} vreader;

/* The next line of the trail (across files); false at the end. */
static bool vread(vreader *r, vline *l, sl_audit_verdict *v) {
    for (;;) {
        if (!r->f) {
            if (r->at >= r->n) return false;
            r->f = fopen(r->paths[r->at], "r");
            r->lineno = 0;
            if (!r->f) {
                snprintf(v->what, sizeof v->what, "cannot open: %s", strerror(errno));
                snprintf(v->file, sizeof v->file, "%s", r->paths[r->at]);
                v->ok = false;
                return false;
            }
            v->files++;
        }
        char *buf = NULL;
        size_t cap = 0;
        ssize_t n = getline(&buf, &cap, r->f);
        if (n < 0) {
            free(buf);
            fclose(r->f);
            r->f = NULL;
            r->at++;
            continue;
        }
        memset(l, 0, sizeof *l);
        l->bytes = buf;
        l->newline = n > 0 && buf[n - 1] == '\n';
        l->len = (size_t)n - l->newline;
        l->file = r->paths[r->at];
        l->lineno = ++r->lineno;
        vline_parse(l);
        return true;
    }
}

static void fail_at(sl_audit_verdict *v, const vline *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(sl_audit_verdict *v, const vline *l, const char *fmt, ...) {
    v->ok = false;
    snprintf(v->file, sizeof v->file, "%s", l->file);
    v->line = l->lineno;
    v->seq = l->parsed ? l->seq : -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->what, sizeof v->what, fmt, ap);
    va_end(ap);
}

/* Decides what happened at the first line `cur` that does not follow `prev`, using the line
 * after it (`next`, may be unparsed/empty) to tell the cases apart. */
static void diagnose(sl_audit_verdict *v, const vline *prev, const vline *cur, const vline *next) {
    int64_t want = prev->seq + 1;
    bool next_links_cur = next && next->parsed && !strcmp(next->prev, cur->hash);
    if (cur->seq == want) {
        if (next_links_cur || !next)
            fail_at(v, prev,
                    "edited: this event's bytes no longer match the hash the next event (line "
                    "%ld) recorded for it",
                    cur->lineno);
        else
            fail_at(v, cur, "edited: its prev_hash does not match the event before it (line %ld)",
                    prev->lineno);
    } else if (cur->seq > want) {
        if (next && next->parsed && next->seq == want)
            fail_at(v, cur, "reordered: sequence %lld comes before sequence %lld",
                    (long long)cur->seq, (long long)want);
        else
            fail_at(v, cur,
                    "deleted: %lld event(s) missing before this one (sequence %lld to %lld; the "
                    "event before is line %ld)",
                    (long long)(cur->seq - want), (long long)want, (long long)(cur->seq - 1),
                    prev->lineno);
    } else if (cur->seq == prev->seq) {
        if (!strcmp(cur->hash, prev->hash))
            fail_at(v, cur, "inserted: a copy of the line before (line %ld)", prev->lineno);
        else if (next_links_cur)
            fail_at(v, prev, "inserted: sequence %lld appears twice; this one is not in the chain",
                    (long long)cur->seq);
        else
            fail_at(v, cur, "inserted: sequence %lld appears twice (also line %ld)",
                    (long long)cur->seq, prev->lineno);
    } else {
        fail_at(v, cur,
                "inserted or reordered: sequence %lld where %lld was expected (the event before "
                "is line %ld)",
                (long long)cur->seq, (long long)want, prev->lineno);
    }
}

static bool check_cp(sl_audit_verdict *v, const vline *l, EVP_PKEY *pub, const char *key_id) {
    if (!l->cp_sig[0]) {
        fail_at(v, l, "forged checkpoint: fields missing or malformed");
        return false;
    }
    if (l->cp_seq != l->seq || strcmp(l->cp_last, l->prev)) {
        fail_at(v, l,
                "forged checkpoint: the sequence or hash it signs is not this line's (signed "
                "sequence %lld)",
                (long long)l->cp_seq);
        return false;
    }
    char msg[256];
    int n = sl_audit_cp_message(msg, sizeof msg, (uint64_t)l->cp_seq, l->cp_last, l->cp_time,
                                l->cp_reason);
    if (!sl_audit_verify_sig(pub, msg, (size_t)n, l->cp_sig)) {
        fail_at(v, l,
                "bad checkpoint signature (key %s, verifying with %s): the checkpoint was forged "
                "or the events it seals were rewritten",
                l->cp_key[0] ? l->cp_key : "?", key_id);
        return false;
    }
    return true;
}

void sl_audit_verify_files(char *const *paths, int n, EVP_PKEY *pub, bool allow_open, FILE *notes,
                           sl_audit_verdict *v) {
    memset(v, 0, sizeof *v);
    v->ok = true;
    v->seq = -1;
    char key_id[17] = "?";
    if (pub) (void)sl_audit_key_id(pub, key_id);
    vreader r = {.paths = paths, .n = n};
    vline prev = {0}, cur = {0}, next = {0}, last_cp = {0};
    bool have_prev = false, have_next = vread(&r, &next, v);
    bool last_was_stop = false;
    while (v->ok && have_next) {
        vline_clear(&cur);
        cur = next;
        memset(&next, 0, sizeof next);
        have_next = vread(&r, &next, v);
        if (!v->ok) break;
        if (!cur.newline) {
            fail_at(v, &cur, "truncated: the line is incomplete (no end of line)");
            break;
        }
        if (!cur.parsed) {
            fail_at(v, &cur, "edited or inserted: not a trail event (invalid JSON or fields)");
            break;
        }
        if (!have_prev) {
            if (!strcmp(cur.prev, SL_AUDIT_GENESIS)) {
                if (cur.seq != 1) {
                    fail_at(v, &cur, "edited: the first event of a chain must have sequence 1");
                    break;
                }
            } else if (notes) {
                fprintf(notes,
                        "note: %s starts at sequence %lld; earlier files are not given (removed "
                        "by retention?), so its first link is not checked\n",
                        cur.file, (long long)cur.seq);
            }
        } else if (cur.seq != prev.seq + 1 || strcmp(cur.prev, prev.hash)) {
            diagnose(v, &prev, &cur, have_next ? &next : NULL);
            break;
        }
        /* A broker start right after a line that is not a stop checkpoint: that run ended
         * without one (a crash); its events after its last checkpoint are chained, not signed. */
        if (have_prev && !last_was_stop && cur.class_uid == 6002 &&
            !strcmp(cur.activity, "Trail Opened")) {
            v->warnings++;
            if (notes)
                fprintf(notes,
                        "warning: %s:%ld: the broker started again after sequence %lld without a "
                        "final checkpoint (unclean stop)\n",
                        cur.file, cur.lineno, (long long)prev.seq);
        }
        v->events++;
        last_was_stop = false;
        if (cur.cp) {
            if (!check_cp(v, &cur, pub, key_id)) break;
            v->checkpoints++;
            last_was_stop = !strcmp(cur.cp_reason, "stop");
            vline_clear(&last_cp);
            last_cp = cur;
            last_cp.bytes = NULL;
        }
        vline_clear(&prev);
        prev = cur;
        have_prev = true;
        cur.bytes = NULL;
        memset(&cur, 0, sizeof cur);
    }
    if (v->ok && v->events == 0) {
        snprintf(v->what, sizeof v->what, "no events");
        v->ok = false;
    }
    if (v->ok && !last_was_stop) {
        char where[200];
        if (last_cp.file)
            snprintf(where, sizeof where, "sequence %lld (%s:%ld)", (long long)last_cp.seq,
                     last_cp.file, last_cp.lineno);
        else
            snprintf(where, sizeof where, "none");
        if (allow_open) {
            v->warnings++;
            if (notes)
                fprintf(notes,
                        "warning: %lld event(s) after the last checkpoint (%s) are not sealed "
                        "yet\n",
                        (long long)(prev.seq - (last_cp.file ? last_cp.seq : 0)), where);
        } else {
            fail_at(v, &prev,
                    "cut off: the trail ends without the final checkpoint a clean stop writes; "
                    "events after this one may have been removed (last checkpoint: %s)",
                    where);
        }
    }
    if (r.f) fclose(r.f);
    vline_clear(&prev);
    vline_clear(&cur);
    vline_clear(&next);
    vline_clear(&last_cp);
}

/* ---- the command line ---- */

static int usage(void) {
    fprintf(stderr,
            "usage: sluice audit verify [--pubkey FILE] [-c CONFIG] [--allow-open] PATH...\n"
            "       sluice audit pubkey [-c CONFIG | --key FILE]\n"
            "verify checks the hash chain, sequence and checkpoint signatures of audit trail "
            "files\n(PATH: files in order, or a directory of them); exit 0 intact, 1 not, 2 "
            "usage.\n--allow-open accepts a trail still being written (no final checkpoint).\n");
    return 2;
}

static bool key_file_of(const char *config, char *out, size_t n) {
    static sl_config c; /* large */
    char err[256];
    sl_config_defaults(&c);
    if (sl_config_load(&c, config, err, sizeof err) != SL_OK) {
        fprintf(stderr, "sluice audit: %s\n", err);
        return false;
    }
    if (c.sluice_audit_signing_key_file[0])
        snprintf(out, n, "%s", c.sluice_audit_signing_key_file);
    else
        sl_config_secret_path(&c, "sluice-audit-key.pem", out, n, NULL);
    return true;
}

static int cmd_pubkey(int argc, char **argv) {
    char keyfile[PATH_MAX] = "";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            if (!key_file_of(argv[++i], keyfile, sizeof keyfile)) return 2;
        } else if (!strcmp(argv[i], "--key") && i + 1 < argc) {
            snprintf(keyfile, sizeof keyfile, "%s", argv[++i]);
        } else {
            return usage();
        }
    }
    if (!keyfile[0] && !key_file_of("server.properties", keyfile, sizeof keyfile)) return 2;
    EVP_PKEY *k = sl_audit_pubkey_read(keyfile);
    if (!k) {
        char pub[PATH_MAX + 8];
        snprintf(pub, sizeof pub, "%s.pub", keyfile);
        k = sl_audit_pubkey_read(pub);
    }
    if (!k) {
        fprintf(stderr, "sluice audit: no Ed25519 key in %s (or %s.pub)\n", keyfile, keyfile);
        return 1;
    }
    char id[17];
    (void)sl_audit_key_id(k, id);
    PEM_write_PUBKEY(stdout, k);
    fprintf(stderr, "key_id %s\n", id);
    EVP_PKEY_free(k);
    return 0;
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Appends a path (owned) to the list; false when out of memory. */
static bool push_path(char ***paths, int *n, int *cap, char *p) {
    if (!p) return false;
    if (*n == *cap) {
        char **v = realloc(*paths, (size_t)(*cap * 2 + 16) * sizeof *v);
        if (!v) {
            free(p);
            return false;
        }
        *paths = v;
        *cap = *cap * 2 + 16;
    }
    (*paths)[(*n)++] = p;
    return true;
}

static int cmd_verify(int argc, char **argv) {
    char pubfile[PATH_MAX] = "";
    bool allow_open = false;
    char **paths = NULL;
    int n = 0, cap = 0, rc = 2;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--pubkey") && i + 1 < argc) {
            snprintf(pubfile, sizeof pubfile, "%s", argv[++i]);
        } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            char kf[PATH_MAX];
            if (!key_file_of(argv[++i], kf, sizeof kf)) goto out;
            snprintf(pubfile, sizeof pubfile, "%.*s.pub", PATH_MAX - 8, kf);
        } else if (!strcmp(argv[i], "--allow-open")) {
            allow_open = true;
        } else if (argv[i][0] == '-') {
            rc = usage();
            goto out;
        } else {
            struct stat st;
            int from = n;
            if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
                DIR *d = opendir(argv[i]);
                struct dirent *e;
                while (d && (e = readdir(d))) {
                    size_t l = strlen(e->d_name);
                    if (strncmp(e->d_name, "sluice-audit-", 13) || l < 6 ||
                        strcmp(e->d_name + l - 6, ".jsonl"))
                        continue;
                    char *p = NULL;
                    if (asprintf(&p, "%s/%s", argv[i], e->d_name) < 0) p = NULL;
                    if (!push_path(&paths, &n, &cap, p)) {
                        closedir(d);
                        goto out;
                    }
                }
                if (d) closedir(d);
                qsort(paths + from, (size_t)(n - from), sizeof *paths, cmp_str);
            } else {
                if (!push_path(&paths, &n, &cap, strdup(argv[i]))) goto out;
            }
            if (!pubfile[0]) {
                /* The default trail is log.dirs/audit; the key is in the secrets directory
                 * beside log.dirs (in log.dirs itself when an older version made it). */
                char tmp[PATH_MAX];
                snprintf(tmp, sizeof tmp, "%s", argv[i]);
                char *dir = S_ISDIR(st.st_mode) ? tmp : dirname(tmp);
                static const char *const rel[] = {"../../sluice-secrets", ".."};
                for (int r = 0; r < 2 && !pubfile[0]; r++) {
                    char cand[PATH_MAX + 64];
                    snprintf(cand, sizeof cand, "%s/%s/sluice-audit-key.pem.pub", dir, rel[r]);
                    if (access(cand, R_OK) == 0 && strlen(cand) < sizeof pubfile)
                        memcpy(pubfile, cand, strlen(cand) + 1);
                }
            }
        }
    }
    if (!n) {
        rc = usage();
        goto out;
    }
    if (!pubfile[0]) {
        fprintf(stderr, "sluice audit verify: no public key found; pass --pubkey FILE\n");
        goto out;
    }
    EVP_PKEY *pub = sl_audit_pubkey_read(pubfile);
    if (!pub) {
        fprintf(stderr, "sluice audit verify: %s holds no Ed25519 public key\n", pubfile);
        goto out;
    }
    sl_audit_verdict v;
    sl_audit_verify_files(paths, n, pub, allow_open, stderr, &v);
    EVP_PKEY_free(pub);
    if (v.ok) {
        printf("OK: %ld events, %ld checkpoints, %ld files intact%s\n", v.events, v.checkpoints,
               v.files, v.warnings ? " (with warnings)" : "");
        rc = 0;
    } else {
        if (v.line)
            printf("FAILED: %s:%ld: sequence %lld: %s\n", v.file, v.line, (long long)v.seq, v.what);
        else
            printf("FAILED: %s%s%s\n", v.file, v.file[0] ? ": " : "", v.what);
        rc = 1;
    }
out:
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return rc;
}

int sl_audit_cli(int argc, char **argv) {
    if (argc < 1) return usage();
    if (!strcmp(argv[0], "verify")) return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(argv[0], "pubkey")) return cmd_pubkey(argc - 1, argv + 1);
    return usage();
}
