/* Detections (sl_guard.h, docs/detections.md).
 *
 * Every rule keeps its state in a bounded table of string keys (an address, a principal, a
 * principal-address or principal-topic pair) with least-recently-used eviction, so what a client
 * can make the guard remember is capped whatever it sends. Thresholds count over a sliding window
 * made of SL_GUARD_BUCKETS buckets: an event counts for at least (BUCKETS-1)/BUCKETS of the window
 * and never for longer than the window, with a fixed amount of memory per key however high the
 * threshold is set. Events are judged at their own time_ms, so tests drive the clock through the
 * events they emit. */
#include "guard/sl_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "pipeline/sl_authorize.h"

#define SL_GUARD_BUCKETS 16
#define KEY_MAX          512 /* longer keys are cut (a 249-byte topic after a long principal) */
#define NEVER            INT64_MIN
#define DAY_MS           (86400LL * 1000)

/* Rule ids, in the order of sl_ev_detection.rule's list. */
enum {
    R_AUTH_ADDRESS,
    R_AUTH_PRINCIPAL,
    R_DENIAL_SPIKE,
    R_NEW_ADDRESS,
    R_NEW_TOPIC_READ,
    R_CERT_EXPIRY,
    R_DISK_FULL,
    R_ADDRESS_BLOCKED,
    R__COUNT
};
static const char *const k_rule[R__COUNT] = {"auth_bruteforce_address",
                                             "auth_bruteforce_principal",
                                             "denial_spike",
                                             "new_address",
                                             "new_topic_read",
                                             "cert_expiry",
                                             "disk_full",
                                             "address_blocked"};

/* ---- bounded tables ---- */

typedef struct gent {
    struct gent *hnext;         /* hash chain */
    struct gent *older, *newer; /* use order: the table evicts `oldest` */
    uint32_t hash;
    int64_t raised_ms; /* the last finding about this key (NEVER: none) */
    int64_t v;         /* windows: the newest bucket index; blocks: blocked until (ms) */
    uint32_t *counts;  /* SL_GUARD_BUCKETS counters after the key in windowed tables, or NULL */
    char key[];
} gent;

typedef struct gtab {
    int cap;
    bool windowed;
    gent **heads; /* allocated on first insert: a rule never triggered costs nothing */
    uint32_t mask, seed;
    gent *oldest, *newest;
    int n;
    uint64_t evicted;
} gtab;

/* Claimed user names arrive before authentication, so the hash is seeded per table: a client
 * cannot precompute names that share one chain. (A chain is bounded by the table's cap anyway.) */
static uint32_t key_hash(uint32_t seed, const char *k) {
    uint32_t h = 2166136261u ^ seed;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) h = (h ^ *p) * 16777619u;
    h ^= h >> 16; /* murmur3's finalizer: the seed reaches every bit */
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

static void tab_init(gtab *t, int cap, bool windowed) {
    memset(t, 0, sizeof *t);
    t->cap = cap;
    t->windowed = windowed;
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed)
        t->seed = (uint32_t)sl_mono_ms() ^ (uint32_t)(uintptr_t)t;
}

static void lru_unlink(gtab *t, gent *e) {
    if (e->older)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    e->older = e->newer = NULL;
}

static void lru_push(gtab *t, gent *e) {
    e->older = t->newest;
    e->newer = NULL;
    if (t->newest)
        t->newest->newer = e;
    else
        t->oldest = e;
    t->newest = e;
}

static gent *tab_find(const gtab *t, const char *key) {
    if (!t->heads) return NULL;
    uint32_t h = key_hash(t->seed, key);
    for (gent *e = t->heads[h & t->mask]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, key) == 0) return e;
    return NULL;
}

static void tab_del(gtab *t, gent *e) {
    gent **pp = &t->heads[e->hash & t->mask];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(t, e);
    t->n--;
    free(e);
}

/* The entry for `key`, made (evicting the least recently used one when the table is full) if
 * there is none, and marked as the most recently used. `*made` says which. NULL when out of
 * memory: the event then goes uncounted, which only ever misses a finding. */
static gent *tab_get(gtab *t, const char *key, bool *made) {
    *made = false;
    gent *e = tab_find(t, key);
    if (e) {
        lru_unlink(t, e);
        lru_push(t, e);
        return e;
    }
    if (!t->heads) {
        uint32_t size = 1;
        while (size < (uint32_t)t->cap) size <<= 1;
        if (!(t->heads = calloc(size, sizeof *t->heads))) return NULL;
        t->mask = size - 1;
    }
    if (t->n >= t->cap) {
        tab_del(t, t->oldest);
        t->evicted++;
    }
    size_t klen = strlen(key);
    size_t nc = t->windowed ? SL_GUARD_BUCKETS : 0;
    /* One allocation: header, key, then the counters (4-aligned after the key). */
    size_t at = (sizeof *e + klen + 1 + 3) & ~(size_t)3;
    e = malloc(at + nc * sizeof(uint32_t));
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, klen + 1);
    e->counts = nc ? (uint32_t *)((char *)e + at) : NULL;
    if (nc) memset(e->counts, 0, nc * sizeof(uint32_t));
    e->hash = key_hash(t->seed, key);
    e->raised_ms = NEVER;
    e->v = NEVER;
    e->hnext = t->heads[e->hash & t->mask];
    t->heads[e->hash & t->mask] = e;
    lru_push(t, e);
    t->n++;
    *made = true;
    return e;
}

static void tab_free(gtab *t) {
    while (t->oldest) tab_del(t, t->oldest);
    free(t->heads);
    t->heads = NULL;
}

/* ---- sliding windows ---- */

/* Adds `n` events at `now` to the entry's window and returns what the window holds. Buckets are
 * window/BUCKETS ms wide; the window is the current bucket and the BUCKETS-1 before it. An event
 * older than that (out of order) is not counted. */
static uint64_t win_add(gent *e, int64_t width, int64_t now, uint32_t n) {
    int64_t b = now / width;
    if (e->v == NEVER) e->v = b;
    if (b > e->v) {
        if (b - e->v >= SL_GUARD_BUCKETS)
            memset(e->counts, 0, SL_GUARD_BUCKETS * sizeof(uint32_t));
        else
            for (int64_t i = e->v + 1; i <= b; i++) e->counts[(uint64_t)i % SL_GUARD_BUCKETS] = 0;
        e->v = b;
    } else if (e->v - b >= SL_GUARD_BUCKETS) {
        n = 0;
    }
    uint32_t *c = &e->counts[(uint64_t)b % SL_GUARD_BUCKETS];
    *c = *c > UINT32_MAX - n ? UINT32_MAX : *c + n;
    uint64_t sum = 0;
    for (int i = 0; i < SL_GUARD_BUCKETS; i++) sum += e->counts[i];
    return sum;
}

static void win_clear(gent *e) { memset(e->counts, 0, SL_GUARD_BUCKETS * sizeof(uint32_t)); }

/* ---- the guard ---- */

struct sl_guard {
    sl_loop *loop;
    sl_events *hub;
    sl_timer *timer;
    char data_dir[SL_CFG_STR_MAX];
    void (*each_cert)(void *ctx, void (*fn)(void *arg, const char *listener, int64_t not_after),
                      void *arg);
    void *cert_ctx;
    bool (*disk_space)(void *ctx, const char *path, uint64_t *free_bytes, uint64_t *total_bytes);
    void *disk_ctx;

    int64_t window_ms, width_ms, block_ms;
    int32_t auth_per_address, auth_per_principal, denials_per_principal, cert_days, disk_min_pct;
    bool new_address, new_topic_read;
    int64_t clock_ms; /* tests: fixed clock, 0: wall clock */

    gtab fail_addr;   /* address -> failed authentications */
    gtab fail_user;   /* claimed user -> failed authentications */
    gtab denials;     /* principal -> authorization denials */
    gtab principals;  /* principals that authenticated (their first address raises nothing) */
    gtab addr_pairs;  /* principal \x1f address */
    gtab topic_pairs; /* principal \x1f topic */
    gtab blocked;     /* address -> blocked until */
    gtab certs;       /* listener \x1f not_after -> last finding */
    bool disk_low;    /* below the threshold at the last check: raise again only after recovery */

    sl_guard_finding recent[SL_GUARD_RECENT];
    int nrecent, recent_next;
    uint64_t findings, by_rule[R__COUNT], refusals;
};

static int64_t guard_now(const sl_guard *g) { return g->clock_ms ? g->clock_ms : sl_wall_ms(); }

/* The subject as it goes into a log line: printable ASCII without quotes or backslashes (a
 * claimed user name is whatever the client sent). */
static const char *log_safe(const char *s, char *out, size_t n) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c > 0x7e || c == '"' || c == '\\' ? '?' : (char)c;
    }
    out[i] = 0;
    return out;
}

/* A number for the log line: counts as integers, days and percentages with two decimals (a disk
 * at 9.5 % must not read as the 10 % threshold). */
static const char *num(double v, char *out, size_t n) {
    if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v)
        snprintf(out, n, "%lld", (long long)v);
    else
        snprintf(out, n, "%.2f", v);
    return out;
}

/* Records, logs and emits one finding. `cause` (may be NULL) is the event that crossed the
 * threshold: its connection, principal, peer and listener go with the finding. */
static void raise_finding(sl_guard *g, const sl_event *cause, int rule, int severity,
                          const char *subject, double value, double threshold, int64_t window_ms,
                          int64_t block_ms, int64_t now, const char *title) {
    g->findings++;
    g->by_rule[rule]++;
    sl_guard_finding *f = &g->recent[g->recent_next];
    g->recent_next = (g->recent_next + 1) % SL_GUARD_RECENT;
    if (g->nrecent < SL_GUARD_RECENT) g->nrecent++;
    memset(f, 0, sizeof *f);
    f->time_ms = now;
    snprintf(f->rule, sizeof f->rule, "%s", k_rule[rule]);
    snprintf(f->subject, sizeof f->subject, "%s", subject);
    snprintf(f->title, sizeof f->title, "%s", title);
    f->severity = severity;

    /* Rate-limited per rule: a flood of findings writes a bounded number of lines (the trail
     * and the metric still get every one). */
    char subj[128], ttl[256], v[32], th[32];
    sl_log_limited(SL_LOG_WARN, "guard", "detection", k_rule[rule],
                   "rule=%s severity=%d subject=\"%s\" value=%s threshold=%s window_ms=%lld "
                   "block_ms=%lld title=\"%s\"",
                   k_rule[rule], severity, log_safe(subject, subj, sizeof subj),
                   num(value, v, sizeof v), num(threshold, th, sizeof th), (long long)window_ms,
                   (long long)block_ms, log_safe(title, ttl, sizeof ttl));

    sl_event ev = {.kind = SL_EV_DETECTION,
                   .time_ms = now,
                   .det = {.rule = k_rule[rule],
                           .title = title,
                           .severity = severity,
                           .subject = subject,
                           .value = value,
                           .threshold = threshold,
                           .window_ms = window_ms,
                           .block_ms = block_ms}};
    if (cause) {
        ev.conn_id = cause->conn_id;
        ev.principal = cause->principal;
        ev.peer = cause->peer;
        ev.listener = cause->listener;
    }
    sl_events_emit(g->hub, &ev);
}

/* A finding about the same rule and subject at most once per window. */
static bool due(const sl_guard *g, const gent *e, int64_t now) {
    return e->raised_ms == NEVER || now - e->raised_ms >= g->window_ms;
}

static void block_address(sl_guard *g, const sl_event *cause, const char *addr, uint64_t failures,
                          int64_t now) {
    bool made;
    gent *b = tab_find(&g->blocked, addr);
    if (b && b->v > now) return; /* already blocked (a connection open before the block) */
    if (!b && !(b = tab_get(&g->blocked, addr, &made))) return;
    b->v = now + g->block_ms;
    char title[256];
    snprintf(title, sizeof title, "address %s refused for %lld s after a brute-force finding", addr,
             (long long)(g->block_ms / 1000));
    raise_finding(g, cause, R_ADDRESS_BLOCKED, 3, addr, (double)failures,
                  (double)g->auth_per_address, g->window_ms, g->block_ms, now, title);
}

static void auth_failed_address(sl_guard *g, const sl_event *ev, const char *addr, int64_t now) {
    bool made;
    gent *e = tab_get(&g->fail_addr, addr, &made);
    if (!e) return;
    uint64_t n = win_add(e, g->width_ms, now, 1);
    if (n < (uint64_t)g->auth_per_address) return;
    if (due(g, e, now)) {
        e->raised_ms = now;
        char title[256];
        snprintf(title, sizeof title, "%llu failed authentications from %s within %lld s",
                 (unsigned long long)n, addr, (long long)(g->window_ms / 1000));
        raise_finding(g, ev, R_AUTH_ADDRESS, 4, addr, (double)n, (double)g->auth_per_address,
                      g->window_ms, 0, now, title);
    }
    if (g->block_ms > 0) {
        /* The next block needs a full threshold of new failures, whatever the dedup says. */
        win_clear(e);
        block_address(g, ev, addr, n, now);
    }
}

static void auth_failed_user(sl_guard *g, const sl_event *ev, const char *user, int64_t now) {
    char key[256];
    snprintf(key, sizeof key, "%s", user);
    bool made;
    gent *e = tab_get(&g->fail_user, key, &made);
    if (!e) return;
    uint64_t n = win_add(e, g->width_ms, now, 1);
    if (n < (uint64_t)g->auth_per_principal || !due(g, e, now)) return;
    e->raised_ms = now;
    char title[256];
    snprintf(title, sizeof title, "%llu failed authentications as %.64s within %lld s",
             (unsigned long long)n, key, (long long)(g->window_ms / 1000));
    raise_finding(g, ev, R_AUTH_PRINCIPAL, 4, key, (double)n, (double)g->auth_per_principal,
                  g->window_ms, 0, now, title);
}

/* At most one new_address finding per principal per window: an address arriving while the
 * principal's last finding is younger than the window is not learned, so it raises once the
 * window has passed if it is still in use (a principal showing up from many addresses at once
 * yields one finding per window, none lost). */
static void auth_succeeded(sl_guard *g, const sl_event *ev, const char *principal, const char *addr,
                           int64_t now) {
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%.255s", principal);
    bool first, made;
    gent *p = tab_get(&g->principals, key, &first);
    if (!p) return;
    size_t at = strlen(key);
    snprintf(key + at, sizeof key - at, "\x1f%s", addr);
    if (tab_find(&g->addr_pairs, key)) {
        tab_get(&g->addr_pairs, key, &made); /* known: mark it used */
        return;
    }
    if (!first && !due(g, p, now)) return;
    if (!tab_get(&g->addr_pairs, key, &made) || first) return; /* the first address is known */
    p->raised_ms = now;
    key[at] = 0;
    char title[256];
    snprintf(title, sizeof title, "%.80s authenticated from a new address %s", key, addr);
    raise_finding(g, ev, R_NEW_ADDRESS, 2, key, 1, 0, g->window_ms, 0, now, title);
}

static void on_auth(sl_guard *g, const sl_event *ev) {
    if (ev->auth.activity == SL_AUTH_EXPIRED) return;
    char abuf[64];
    const char *addr = ev->peer ? sl_log_peer_addr(ev->peer, abuf, sizeof abuf) : NULL;
    if (addr && !*addr) addr = NULL;
    int64_t now = ev->time_ms;
    if (!ev->auth.success) {
        if (addr) auth_failed_address(g, ev, addr, now);
        if (ev->auth.user && *ev->auth.user) auth_failed_user(g, ev, ev->auth.user, now);
        return;
    }
    const char *principal = ev->principal ? ev->principal : ev->auth.user;
    if (g->new_address && addr && principal && *principal)
        auth_succeeded(g, ev, principal, addr, now);
}

static void topic_read(sl_guard *g, const sl_event *ev, const char *principal, sl_str topic,
                       int64_t now) {
    if (topic.len <= 0 || !topic.p) return;
    char key[KEY_MAX];
    int at = snprintf(key, sizeof key, "%.255s\x1f", principal);
    snprintf(key + at, sizeof key - (size_t)at, "%.*s", topic.len > 249 ? 249 : (int)topic.len,
             topic.p);
    bool made;
    if (!tab_get(&g->topic_pairs, key, &made) || !made) return;
    const char *name = key + at;
    char title[256];
    snprintf(title, sizeof title, "%.80s read topic %.60s for the first time", principal, name);
    raise_finding(g, ev, R_NEW_TOPIC_READ, 2, name, 1, 0, 0, 0, now, title);
}

static void on_request(sl_guard *g, const sl_event *ev) {
    const sl_req *rq = ev->rq;
    if (!rq) return;
    const char *principal = ev->principal ? ev->principal : rq->principal;
    if (!principal || !*principal) return;
    int64_t now = ev->time_ms;
    /* Listings leave out what the caller may not see (QUIET) and authorized-operations answers
     * are not requests to act: neither is a denial of something the client asked to do. */
    uint32_t denied = 0;
    for (int32_t i = 0; i < rq->nres; i++) {
        const sl_req_res *r = &rq->res[i];
        if (!r->allowed && !(r->flags & (SL_AZ_QUIET | SL_AZ_OPS))) denied++;
    }
    if (denied) {
        char key[256];
        snprintf(key, sizeof key, "%s", principal);
        bool made;
        gent *e = tab_get(&g->denials, key, &made);
        uint64_t n = e ? win_add(e, g->width_ms, now, denied) : 0;
        if (e && n >= (uint64_t)g->denials_per_principal && due(g, e, now)) {
            e->raised_ms = now;
            char title[256];
            snprintf(title, sizeof title, "%llu authorization denials for %.80s within %lld s",
                     (unsigned long long)n, key, (long long)(g->window_ms / 1000));
            raise_finding(g, ev, R_DENIAL_SPIKE, 3, key, (double)n,
                          (double)g->denials_per_principal, g->window_ms, 0, now, title);
        }
    }
    if (!g->new_topic_read) return;
    for (int32_t i = 0; i < rq->nres; i++) {
        const sl_req_res *r = &rq->res[i];
        if (r->rtype == SL_ACL_RES_TOPIC && r->op == SL_ACL_OP_READ && r->allowed && !r->error &&
            !(r->flags & (SL_AZ_OPS | SL_AZ_ANY)))
            topic_read(g, ev, principal, r->name, now);
    }
    for (int32_t i = 0; i < rq->ndata; i++) {
        const sl_req_data *d = &rq->data[i];
        if (d->write || d->error) continue;
        /* Partitions of one topic come together: look the topic up once. */
        if (i > 0 && !rq->data[i - 1].write && sl_str_eq(rq->data[i - 1].topic, d->topic)) continue;
        topic_read(g, ev, principal, d->topic, now);
    }
}

static void on_event(void *ctx, const sl_event *ev) {
    sl_guard *g = ctx;
    if (ev->kind == SL_EV_AUTH)
        on_auth(g, ev);
    else if (ev->kind == SL_EV_REQUEST)
        on_request(g, ev);
}

/* ---- periodic checks ---- */

typedef struct cert_walk {
    sl_guard *g;
    int64_t now;
} cert_walk;

static void cert_seen(void *arg, const char *listener, int64_t not_after) {
    cert_walk *w = arg;
    sl_guard *g = w->g;
    if (not_after <= 0 || !listener) return;
    int64_t left_s = not_after - w->now / 1000;
    if (left_s > (int64_t)g->cert_days * 86400) return;
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%.255s\x1f%lld", listener, (long long)not_after);
    bool made;
    gent *e = tab_get(&g->certs, key, &made);
    if (!e || (e->raised_ms != NEVER && w->now - e->raised_ms < DAY_MS)) return;
    e->raised_ms = w->now;
    double days = (double)left_s / 86400;
    char title[256];
    if (left_s > 0)
        snprintf(title, sizeof title, "the certificate of listener %.64s expires in %.1f days",
                 listener, days);
    else
        snprintf(title, sizeof title, "the certificate of listener %.64s has expired", listener);
    sl_event cause = {.listener = listener};
    raise_finding(g, &cause, R_CERT_EXPIRY, left_s > 0 ? 3 : 5, listener, days,
                  (double)g->cert_days, DAY_MS, 0, w->now, title);
}

static bool statvfs_space(void *ctx, const char *path, uint64_t *free_bytes,
                          uint64_t *total_bytes) {
    struct statvfs st;
    if (statvfs(path, &st) != 0) return false;
    *free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
    *total_bytes = (uint64_t)st.f_blocks * st.f_frsize;
    return true;
}

static void check_disk(sl_guard *g, int64_t now) {
    uint64_t fr = 0, total = 0;
    if (!g->data_dir[0] || g->disk_min_pct <= 0 ||
        !g->disk_space(g->disk_ctx, g->data_dir, &fr, &total) || total == 0)
        return;
    double pct = 100.0 * (double)fr / (double)total;
    if (pct >= g->disk_min_pct) {
        g->disk_low = false; /* recovered: the next crossing raises again */
        return;
    }
    if (g->disk_low) return;
    g->disk_low = true;
    char title[256];
    snprintf(title, sizeof title, "the data disk at %.80s has %.1f%% free", g->data_dir, pct);
    raise_finding(g, NULL, R_DISK_FULL, 4, g->data_dir, pct, (double)g->disk_min_pct,
                  SL_GUARD_CHECK_MS, 0, now, title);
}

void sl_guard_check(sl_guard *g) {
    if (!g) return;
    int64_t now = guard_now(g);
    if (g->each_cert) {
        cert_walk w = {g, now};
        g->each_cert(g->cert_ctx, cert_seen, &w);
    }
    check_disk(g, now);
    for (gent *e = g->blocked.oldest, *next; e; e = next) {
        next = e->newer;
        if (e->v <= now) tab_del(&g->blocked, e);
    }
}

static void tick(void *ctx) {
    sl_guard *g = ctx;
    g->timer = NULL; /* one-shot: the handle is gone once the callback runs */
    sl_guard_check(g);
    g->timer = sl_timer_start(g->loop, SL_GUARD_CHECK_MS, tick, g);
}

/* ---- API ---- */

sl_guard *sl_guard_new(const sl_config *cfg, const sl_guard_env *env) {
    if (!cfg->sluice_guard_enable) return NULL;
    sl_guard *g = calloc(1, sizeof *g);
    if (!g) {
        SL_ERROR("guard", "out of memory: detections are off", "%s", "");
        return NULL;
    }
    g->loop = env->loop;
    g->hub = env->hub;
    snprintf(g->data_dir, sizeof g->data_dir, "%s", env->data_dir ? env->data_dir : "");
    g->each_cert = env->each_cert;
    g->cert_ctx = env->cert_ctx;
    g->disk_space = env->disk_space ? env->disk_space : statvfs_space;
    g->disk_ctx = env->disk_ctx;
    g->window_ms = cfg->sluice_guard_window_ms > 0 ? cfg->sluice_guard_window_ms : 60000;
    g->width_ms = g->window_ms / SL_GUARD_BUCKETS > 0 ? g->window_ms / SL_GUARD_BUCKETS : 1;
    g->block_ms = (int64_t)cfg->sluice_guard_block_seconds * 1000;
    g->auth_per_address = cfg->sluice_guard_auth_failures_per_address;
    g->auth_per_principal = cfg->sluice_guard_auth_failures_per_principal;
    g->denials_per_principal = cfg->sluice_guard_denials_per_principal;
    g->cert_days = cfg->sluice_guard_cert_expiry_days;
    g->disk_min_pct = cfg->sluice_guard_disk_free_min_percent;
    g->new_address = cfg->sluice_guard_new_address_enable;
    g->new_topic_read = cfg->sluice_guard_new_topic_read_enable;
    tab_init(&g->fail_addr, SL_GUARD_MAX_ADDRESSES, true);
    tab_init(&g->fail_user, SL_GUARD_MAX_PRINCIPALS, true);
    tab_init(&g->denials, SL_GUARD_MAX_PRINCIPALS, true);
    tab_init(&g->principals, SL_GUARD_MAX_PRINCIPALS, false);
    tab_init(&g->addr_pairs, SL_GUARD_MAX_PAIRS, false);
    tab_init(&g->topic_pairs, SL_GUARD_MAX_PAIRS, false);
    tab_init(&g->blocked, SL_GUARD_MAX_BLOCKED, false);
    tab_init(&g->certs, SL_GUARD_MAX_CERTS, false);
    if (g->hub && !sl_events_subscribe(g->hub, on_event, g)) {
        SL_ERROR("guard", "the event hub is full: detections are off", "%s", "");
        free(g);
        return NULL;
    }
    /* The first check soon after start (a certificate already close to expiry is reported
     * then), once every consumer of the hub has subscribed. */
    if (g->loop) g->timer = sl_timer_start(g->loop, 1000, tick, g);
    return g;
}

void sl_guard_free(sl_guard *g) {
    if (!g) return;
    if (g->hub) sl_events_unsubscribe(g->hub, g);
    if (g->timer) sl_timer_cancel(g->loop, g->timer);
    gtab *tabs[] = {&g->fail_addr,  &g->fail_user,   &g->denials, &g->principals,
                    &g->addr_pairs, &g->topic_pairs, &g->blocked, &g->certs};
    for (size_t i = 0; i < sizeof tabs / sizeof *tabs; i++) tab_free(tabs[i]);
    free(g);
}

const char *sl_guard_refuse(sl_guard *g, const char *ip) {
    if (!g || !ip || !g->blocked.n) return NULL;
    gent *e = tab_find(&g->blocked, ip);
    if (!e) return NULL;
    if (e->v <= guard_now(g)) {
        tab_del(&g->blocked, e); /* expired: admitted again */
        return NULL;
    }
    g->refusals++;
    return "blocked";
}

int sl_guard_recent(const sl_guard *g, sl_guard_finding *out, int max) {
    if (!g || max <= 0) return 0;
    int n = g->nrecent < max ? g->nrecent : max;
    for (int i = 0; i < n; i++)
        out[i] = g->recent[(g->recent_next - 1 - i + 2 * SL_GUARD_RECENT) % SL_GUARD_RECENT];
    return n;
}

void sl_guard_stats_get(const sl_guard *g, sl_guard_stats *out) {
    memset(out, 0, sizeof *out);
    if (!g) return;
    out->findings = g->findings;
    out->blocked_refusals = g->refusals;
    int64_t now = guard_now(g);
    for (const gent *e = g->blocked.oldest; e; e = e->newer)
        if (e->v > now) out->blocked_addresses++;
    const gtab *tabs[] = {&g->fail_addr,  &g->fail_user,   &g->denials, &g->principals,
                          &g->addr_pairs, &g->topic_pairs, &g->blocked, &g->certs};
    for (size_t i = 0; i < sizeof tabs / sizeof *tabs; i++) {
        out->tracked += tabs[i]->n;
        out->evicted += tabs[i]->evicted;
    }
}

uint64_t sl_guard_findings_by_rule(const sl_guard *g, const char *rule) {
    if (!g || !rule) return 0;
    for (int i = 0; i < R__COUNT; i++)
        if (strcmp(k_rule[i], rule) == 0) return g->by_rule[i];
    return 0;
}

void sl_guard_set_clock(sl_guard *g, int64_t now_ms) {
    if (g) g->clock_ms = now_ms;
}
