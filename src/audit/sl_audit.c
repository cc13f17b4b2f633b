/* The audit trail (sl_audit.h, docs/audit.md).
 *
 * Two threads. The loop thread filters and formats events, summarizes data access, assigns
 * each line its sequence number and the hash of the line before (the chain), signs checkpoints,
 * decides rotation, feeds the topic sink and appends the finished lines to a bounded queue.
 * Everything that makes the chain is on this one thread, so the chain is one total order.
 *
 * The writer thread only does I/O: it appends lines to the current file and to syslog, fsyncs,
 * and opens the next file where the loop put a rotation marker. A line leaves the queue once
 * every sink has it (the file's copy fsynced). After any failure the file is cut back to its
 * last synced size and the unsynced lines are written again later, so a file never holds a torn
 * or duplicated line and the chain on disk never has a hole: events that cannot be queued are
 * dropped *before* they get a sequence number, counted, and noted in the trail once it
 * accepts again. */
#include "audit/sl_audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "audit/sl_audit_int.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "base/sl_file.h"
#include "base/sl_kerr.h"
#include "base/sl_limit.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"

enum { SINK_FILE = 1, SINK_SYSLOG = 2 };
enum { NODE_LINE, NODE_ROTATE };

/* A queued line (data = the line and its newline) or rotation marker (data = the new path). */
typedef struct node {
    struct node *next;
    uint8_t kind;
    uint8_t done; /* sinks that have it (the file: fsynced) */
    uint8_t severity;
    char code[16];
    int64_t time_ms, enq_ms;
    size_t len;
    char data[];
} node;

/* Data access summed per principal x client x topic-partition x direction. */
typedef struct agg {
    struct agg *next;
    uint32_t hash;
    sl_audit_data d;
    char strs[]; /* principal, client, topic, peer, listener: NUL-separated */
} agg;
#define AGG_BUCKETS 1024
#define AGG_MAX     100000 /* entries summed at once before an early flush bounds the memory */

#define TICK_MS       100
#define RETRY_MS      200
#define STOP_DRAIN_MS 5000
#define MAX_PER_EVENT 100 /* data entries in one event (interval 0) */
#define FILE_PREFIX   "sluice-audit-"
#define FILE_SUFFIX   ".jsonl"

struct sl_audit {
    sl_loop *loop;
    sl_events *hub;
    char cluster_id[128];
    sl_ocsf_src src;
    bool types[SL_AUDIT_NTYPES];
    char excl_principals[SL_CFG_STR_MAX], excl_topics[SL_CFG_STR_MAX];
    bool block;
    int64_t data_interval_ms, max_bytes, max_age_ms, cp_interval_ms;
    int32_t retention_files, qmax;
    uint8_t sinks; /* SINK_* the writer serves */
    bool sink_topic;
    sl_audit_topic_append_fn topic_append;
    void *topic_ctx;
    char dir[PATH_MAX];
    char syslog_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char hostname[64];
    EVP_PKEY *key;
    char key_id[17];

    /* loop thread: the chain */
    uint64_t seq;  /* the last line's sequence */
    char prev[65]; /* its hash */
    uint64_t cp_seq;
    int64_t file_bytes, file_opened_ms, next_cp_ms, next_agg_ms;
    bool rotating, sealing, started, stopped, noting;
    uint64_t drops_unnoted;
    sl_timer *tick;
    sl_text line;

    /* loop thread: data access summaries */
    agg *buckets[AGG_BUCKETS];
    int32_t nagg;
    int64_t agg_start_ms;

    /* loop thread: refused connections recorded per address (the rest summarized) */
    sl_limiter refusals;

    /* loop thread: the topic sink's batch */
    char **tvals;
    size_t *tlens;
    int tn, tcap;
    bool topic_failing;

    /* shared */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    node *head, *tail;
    bool stop;
    pthread_t thr;
    bool thr_started;
    atomic_uint_fast64_t queued, written, dropped, refused, checkpoints, sink_errors;
    atomic_int_fast64_t oldest_ms;
    atomic_bool failing;

    /* writer thread */
    int fd;
    char cur_path[PATH_MAX];
    off_t synced_off;
    bool dirty; /* bytes past synced_off may be on disk */
    node *pend, *pend_tail;
    int sfd;
    int64_t last_fail_log_ms;
};

/* ---- configuration ---- */

static bool list_has(const char *list, const char *item, size_t ilen) {
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && p[m - 1] == ' ') m--;
        if (m && m == ilen && !memcmp(p, item, ilen)) return true;
        p += n;
    }
    return false;
}

static bool excluded_principal(const sl_audit *a, const char *principal) {
    return principal && a->excl_principals[0] &&
           list_has(a->excl_principals, principal, strlen(principal));
}

/* ---- the writer thread ---- */

static void node_free_all(node *n) {
    while (n) {
        node *next = n->next;
        free(n);
        n = next;
    }
}

static int64_t file_size(int fd) {
    struct stat st;
    return fstat(fd, &st) ? 0 : (int64_t)st.st_size;
}

static int name_cmp(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The trail's files in `dir`, sorted (their names carry the first sequence, zero-padded, so
 * this is chain order). Caller frees each name and the array. */
static char **list_files(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, FILE_PREFIX, strlen(FILE_PREFIX)) || l < strlen(FILE_SUFFIX) ||
            strcmp(e->d_name + l - strlen(FILE_SUFFIX), FILE_SUFFIX))
            continue;
        if (*n == cap) {
            char **nv = realloc(v, (size_t)(cap = cap ? cap * 2 : 16) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        if (!(v[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, (size_t)*n, sizeof *v, name_cmp);
    return v;
}

/* sluice.audit.file.retention.files: the oldest rotated files beyond the count go. */
static void apply_retention(sl_audit *a) {
    if (a->retention_files <= 0) return;
    int n;
    char **v = list_files(a->dir, &n);
    for (int i = 0; i < n; i++) {
        if (i < n - 1 - a->retention_files) {
            char p[PATH_MAX * 2];
            snprintf(p, sizeof p, "%s/%s", a->dir, v[i]);
            if (unlink(p) == 0) SL_INFO("audit", "trail file removed by retention", "file=%s", p);
        }
        free(v[i]);
    }
    free(v);
}

static bool open_file(sl_audit *a, const char *path) {
    if (a->fd >= 0) {
        if (a->dirty && fsync(a->fd)) return false;
        close(a->fd);
        a->fd = -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    (void)fchmod(fd, 0600); /* an existing file keeps its mode otherwise */
    a->fd = fd;
    snprintf(a->cur_path, sizeof a->cur_path, "%s", path);
    a->synced_off = file_size(fd);
    a->dirty = false;
    (void)sl_fsync_dir(a->dir);
    apply_retention(a);
    return true;
}

static const char *rfc3339(int64_t ms, char *buf, size_t n) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t l = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + l, n - l, ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* RFC 5424 over the local datagram socket: facility 13 (log audit), severity from OCSF. Never
 * blocking: a syslog daemon that stops reading makes the sink fail (and the policy apply, with
 * retries) instead of stalling the writer, and the broker's stop, for good. */
static bool syslog_send(sl_audit *a, const node *n) {
    if (a->sfd < 0 && (a->sfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return false;
    static const int sev[] = {6, 6, 5, 4, 3, 2, 2};
    char ts[40];
    char hdr[256];
    int h = snprintf(hdr, sizeof hdr, "<%d>1 %s %s sluice %d %s - ",
                     13 * 8 + sev[n->severity <= 6 ? n->severity : 6],
                     rfc3339(n->time_ms, ts, sizeof ts), a->hostname, (int)getpid(), n->code);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, a->syslog_path, sizeof sa.sun_path);
    struct iovec iov[2] = {{hdr, (size_t)h}, {(void *)n->data, n->len - 1}};
    struct msghdr m = {.msg_name = &sa, .msg_namelen = sizeof sa, .msg_iov = iov, .msg_iovlen = 2};
    return sendmsg(a->sfd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)(h + n->len - 1);
}

static void set_failing(sl_audit *a, bool on, const char *what) {
    bool was = atomic_exchange(&a->failing, on);
    int64_t now = sl_mono_ms();
    if (on) {
        atomic_fetch_add(&a->sink_errors, 1);
        if (!was || now - a->last_fail_log_ms >= 10000) {
            a->last_fail_log_ms = now;
            SL_ERROR("audit", "cannot record audit events; retrying",
                     "sink=%s errno=%d file=%s policy=%s", what, errno, a->cur_path,
                     a->block ? "block" : "continue");
        }
    } else if (was) {
        SL_INFO("audit", "recording audit events again", "file=%s", a->cur_path);
    }
}

/* Writes the pending nodes up to the next rotation marker; true when all of them are done. */
static bool write_batch(sl_audit *a) {
    if (a->dirty && a->fd >= 0) {
        /* Lines written after the last successful fsync may or may not be on disk: cut them
         * and write them again, so the file never holds a torn or repeated line. */
        if (ftruncate(a->fd, a->synced_off)) {
            set_failing(a, true, "file");
            return false;
        }
        a->dirty = false;
    }
    while (a->pend && a->pend->kind == NODE_ROTATE) {
        node *n = a->pend;
        if (!open_file(a, n->data)) {
            set_failing(a, true, "file");
            return false;
        }
        a->pend = n->next;
        if (!a->pend) a->pend_tail = NULL;
        free(n);
    }
    if (!a->pend) return true;
    int64_t written = 0;
    off_t off = a->synced_off;
    node *n;
    for (n = a->pend; n && n->kind == NODE_LINE; n = n->next) {
        if ((a->sinks & SINK_FILE) && !(n->done & SINK_FILE)) {
            if (a->fd < 0) {
                errno = EBADF;
                set_failing(a, true, "file");
                return false;
            }
            a->dirty = true;
            if (!sl_write_all(a->fd, n->data, n->len)) {
                set_failing(a, true, "file");
                return false;
            }
            off += (off_t)n->len;
        }
        if ((a->sinks & SINK_SYSLOG) && !(n->done & SINK_SYSLOG)) {
            if (!syslog_send(a, n)) {
                if (a->sfd >= 0) close(a->sfd);
                a->sfd = -1;
                set_failing(a, true, "syslog");
                return false;
            }
            n->done |= SINK_SYSLOG;
        }
        written++;
    }
    if ((a->sinks & SINK_FILE) && a->dirty) {
        if (fsync(a->fd)) {
            set_failing(a, true, "file");
            return false;
        }
        a->synced_off = off;
        a->dirty = false;
    }
    set_failing(a, false, NULL);
    /* Everything before `n` is done. */
    while (a->pend != n) {
        node *d = a->pend;
        a->pend = d->next;
        free(d);
    }
    if (!a->pend) a->pend_tail = NULL;
    atomic_fetch_sub(&a->queued, (uint_fast64_t)written);
    atomic_fetch_add(&a->written, (uint_fast64_t)written);
    atomic_store(&a->oldest_ms, a->pend ? a->pend->enq_ms : 0);
    return true;
}

static void *writer_main(void *arg) {
    sl_audit *a = arg;
    int64_t stop_deadline = 0;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->head && !a->pend && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        if (a->head) {
            if (a->pend_tail)
                a->pend_tail->next = a->head;
            else
                a->pend = a->head;
            a->pend_tail = a->tail;
            a->head = a->tail = NULL;
        }
        bool stopping = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (stopping && !stop_deadline) stop_deadline = sl_mono_ms() + STOP_DRAIN_MS;
        bool ok = true;
        while (ok && a->pend) ok = write_batch(a);
        if (ok) {
            if (stopping) {
                pthread_mutex_lock(&a->mu);
                bool empty = !a->head;
                pthread_mutex_unlock(&a->mu);
                if (empty) break;
            }
            continue;
        }
        if (stopping && sl_mono_ms() >= stop_deadline) {
            int lost = 0;
            for (node *n = a->pend; n; n = n->next) lost += n->kind == NODE_LINE;
            atomic_fetch_add(&a->dropped, (uint_fast64_t)lost);
            SL_ERROR("audit", "audit events lost at stop: the sinks kept failing", "events=%d",
                     lost);
            node_free_all(a->pend);
            a->pend = a->pend_tail = NULL;
            break;
        }
        /* Retry after a pause (sooner when stopping or when woken). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += RETRY_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&a->mu);
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        pthread_mutex_unlock(&a->mu);
    }
    if (a->fd >= 0) {
        if (a->dirty) (void)fsync(a->fd);
        close(a->fd);
        a->fd = -1;
    }
    return NULL;
}

/* ---- the loop side: queue, chain, sinks ---- */

static bool queue_full(const sl_audit *a) {
    return atomic_load(&a->queued) >= (uint_fast64_t)a->qmax;
}

static void enqueue(sl_audit *a, node *n) {
    n->enq_ms = sl_mono_ms();
    pthread_mutex_lock(&a->mu);
    if (a->tail)
        a->tail->next = n;
    else
        a->head = n;
    a->tail = n;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void topic_flush(sl_audit *a) {
    if (!a->tn || !a->topic_append) return;
    int16_t err = a->topic_append(a->topic_ctx, (const char *const *)a->tvals, a->tlens, a->tn);
    if (err) {
        if (!a->topic_failing) {
            atomic_fetch_add(&a->sink_errors, 1);
            SL_ERROR("audit", "cannot append audit events to the topic; retrying", "error=%s",
                     sl_kafka_err_name(err));
        }
        a->topic_failing = true;
        return;
    }
    if (a->topic_failing) SL_INFO("audit", "appending audit events to the topic again", "%s", "");
    a->topic_failing = false;
    for (int i = 0; i < a->tn; i++) free(a->tvals[i]);
    a->tn = 0;
}

static void topic_add(sl_audit *a, const char *line, size_t len) {
    if (a->tn >= a->qmax) {
        /* The topic has refused appends for a whole queue's worth: the oldest go. */
        free(a->tvals[0]);
        memmove(a->tvals, a->tvals + 1, (size_t)(a->tn - 1) * sizeof *a->tvals);
        memmove(a->tlens, a->tlens + 1, (size_t)(a->tn - 1) * sizeof *a->tlens);
        a->tn--;
        atomic_fetch_add(&a->dropped, 1);
    }
    if (a->tn == a->tcap) {
        int cap = a->tcap ? a->tcap * 2 : 64;
        char **v = realloc(a->tvals, (size_t)cap * sizeof *v);
        if (v) a->tvals = v;
        size_t *l = realloc(a->tlens, (size_t)cap * sizeof *l);
        if (l) a->tlens = l;
        if (!v || !l) return;
        a->tcap = cap;
    }
    char *c = malloc(len ? len : 1);
    if (!c) return;
    memcpy(c, line, len);
    a->tvals[a->tn] = c;
    a->tlens[a->tn++] = len;
}

static void record(sl_audit *a, const sl_ocsf_ev *ev, const sl_text *body, const sl_text *extra);

/* Formats with `call` (into body_ and extra_) and records. The buffers are per call: recording
 * may rotate, and rotation reports the new file through the hub, which formats and records
 * that event before this one is chained. */
#define EMIT(a, call)                                                                              \
    do {                                                                                           \
        sl_ocsf_ev ev_;                                                                            \
        sl_text body_ = {0}, extra_ = {0};                                                         \
        call;                                                                                      \
        record((a), &ev_, &body_, &extra_);                                                        \
        sl_text_free(&body_);                                                                      \
        sl_text_free(&extra_);                                                                     \
    } while (0)

static void drop(sl_audit *a, const char *code) {
    uint64_t total = atomic_fetch_add(&a->dropped, 1) + 1;
    a->drops_unnoted++;
    sl_log_limited(SL_LOG_WARN, "audit", "audit event dropped", "-",
                   "type=%s dropped_total=%llu policy=%s", code, (unsigned long long)total,
                   a->block ? "block" : "continue");
}

/* Once the trail accepts again after drops, one line says how many were lost. */
static void note_drops(sl_audit *a) {
    if (!a->drops_unnoted || a->noting || queue_full(a)) return;
    char msg[96];
    snprintf(msg, sizeof msg, "%llu audit events were dropped (queue full or sink failing)",
             (unsigned long long)a->drops_unnoted);
    sl_text nb = {0};
    sl_ocsf_ev nev;
    sl_ocsf_trail(&nb, 99, "Events Dropped", "lifecycle", msg, sl_wall_ms(), &nev);
    a->noting = true;
    a->drops_unnoted = 0;
    record(a, &nev, &nb, NULL);
    a->noting = false;
    sl_text_free(&nb);
}

static void checkpoint(sl_audit *a, const char *reason) {
    note_drops(a);
    int64_t now = sl_wall_ms();
    sl_text body = {0}, extra = {0};
    sl_ocsf_ev ev;
    char msg[256], sig[129];
    sl_ocsf_trail(&body, 99, "Checkpoint", "checkpoint", NULL, now, &ev);
    /* The checkpoint signs its own sequence and the hash of the line before it, which commits
     * to every earlier line of the trail. */
    int mlen = sl_audit_cp_message(msg, sizeof msg, a->seq + 1, a->prev, now, reason);
    if (!sl_audit_sign(a->key, msg, (size_t)mlen, sig)) {
        SL_ERROR("audit", "cannot sign a checkpoint", "reason=%s", reason);
        sl_text_free(&body);
        return;
    }
    sl_text_printf(&extra,
                   ",\"checkpoint\":{\"reason\":\"%s\",\"sequence\":%llu,\"last_hash\":\"%s\","
                   "\"time\":%lld,\"key_id\":\"%s\",\"signature\":\"%s\"}",
                   reason, (unsigned long long)(a->seq + 1), a->prev, (long long)now, a->key_id,
                   sig);
    /* What it signed must be exactly the line it becomes: no rotation and no note may come in
     * between. */
    uint64_t before = a->seq;
    a->sealing = true;
    record(a, &ev, &body, &extra);
    a->sealing = false;
    if (a->seq != before) {
        a->cp_seq = a->seq;
        atomic_fetch_add(&a->checkpoints, 1);
    }
    sl_text_free(&body);
    sl_text_free(&extra);
}

static void path_for(const sl_audit *a, uint64_t first_seq, char *out, size_t n) {
    snprintf(out, n, "%s/" FILE_PREFIX "%020llu" FILE_SUFFIX, a->dir,
             (unsigned long long)first_seq);
}

static void open_next(sl_audit *a, bool rotation) {
    char path[PATH_MAX + 64];
    path_for(a, a->seq + 1, path, sizeof path);
    if (!(a->sinks & SINK_FILE)) return;
    size_t l = strlen(path) + 1;
    node *n = calloc(1, sizeof *n + l);
    if (!n) return; /* the writer keeps appending to the current file */
    n->kind = NODE_ROTATE;
    memcpy(n->data, path, l);
    enqueue(a, n);
    a->file_bytes = 0;
    a->file_opened_ms = sl_mono_ms();
    /* The file's first line (whatever the event types), recorded directly: at stop the trail is
     * no longer subscribed. Then through the hub for the other consumers. */
    sl_event ev = {
        .kind = SL_EV_APP,
        .time_ms = sl_wall_ms(),
        .app = {.activity = rotation ? SL_APP_TRAIL_ROTATE : SL_APP_TRAIL_OPEN, .detail = path}};
    EMIT(a, sl_ocsf_app(&body_, &extra_, &ev, &ev_));
    sl_events_emit(a->hub, &ev);
}

static void rotate(sl_audit *a, const char *reason) {
    a->rotating = true;
    checkpoint(a, reason);
    open_next(a, true);
    a->rotating = false;
}

/* Chains one event and queues it for every sink. */
static void record(sl_audit *a, const sl_ocsf_ev *ev, const sl_text *body, const sl_text *extra) {
    if (!a->rotating && !a->sealing && (a->sinks & SINK_FILE) && a->file_bytes >= a->max_bytes)
        rotate(a, "size");
    if (queue_full(a) || (a->sink_topic && a->topic_failing && a->block && a->tn >= a->qmax)) {
        drop(a, ev->code);
        return;
    }
    if (!a->sealing) note_drops(a);
    if (!sl_ocsf_line(&a->line, &a->src, a->seq + 1, ev, body, extra, a->prev)) {
        drop(a, ev->code);
        return;
    }
    node *n = malloc(sizeof *n + a->line.len + 1);
    if (!n) {
        drop(a, ev->code);
        return;
    }
    *n = (node){.kind = NODE_LINE,
                .severity = (uint8_t)ev->severity_id,
                .time_ms = ev->time_ms,
                .len = a->line.len + 1};
    snprintf(n->code, sizeof n->code, "%s", ev->code);
    memcpy(n->data, a->line.p, a->line.len);
    n->data[a->line.len] = '\n';
    a->seq++;
    sl_audit_sha256_hex(a->line.p, a->line.len, a->prev);
    a->file_bytes += (int64_t)n->len;
    if (atomic_fetch_add(&a->queued, 1) == 0) atomic_store(&a->oldest_ms, sl_mono_ms());
    if (a->sink_topic && a->topic_append) topic_add(a, a->line.p, a->line.len);
    if (a->sinks)
        enqueue(a, n);
    else {
        atomic_fetch_sub(&a->queued, 1);
        atomic_fetch_add(&a->written, 1);
        free(n);
    }
}

/* ---- data access ---- */

static uint32_t fnv(uint32_t h, const char *s) {
    for (; s && *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return (h ^ 0xff) * 16777619u;
}

static void agg_emit(sl_audit *a, const sl_audit_data *d, int n) {
    for (int i = 0; i < n; i += MAX_PER_EVENT) {
        int k = n - i < MAX_PER_EVENT ? n - i : MAX_PER_EVENT;
        EMIT(a, sl_ocsf_data(&body_, &extra_, d + i, k, sl_wall_ms(), &ev_));
    }
}

void sl_audit_flush_data(sl_audit *a) {
    if (!a) return;
    for (int b = 0; b < AGG_BUCKETS; b++) {
        agg *e = a->buckets[b];
        a->buckets[b] = NULL;
        while (e) {
            agg *next = e->next;
            agg_emit(a, &e->d, 1);
            free(e);
            e = next;
        }
    }
    a->nagg = 0;
}

static void agg_add(sl_audit *a, const sl_audit_data *d) {
    uint32_t h = fnv(fnv(fnv(2166136261u, d->principal), d->client_id), d->topic);
    h = (h ^ (uint32_t)d->partition) * 16777619u ^ (uint32_t)d->write;
    for (agg *e = a->buckets[h % AGG_BUCKETS]; e; e = e->next) {
        sl_audit_data *s = &e->d;
        if (e->hash != h || s->partition != d->partition || s->write != d->write ||
            strcmp(s->topic, d->topic) ||
            strcmp(s->principal ? s->principal : "", d->principal ? d->principal : "") ||
            strcmp(s->client_id ? s->client_id : "", d->client_id ? d->client_id : ""))
            continue;
        s->records += d->records;
        s->bytes += d->bytes;
        if (d->first_offset >= 0 && (s->first_offset < 0 || d->first_offset < s->first_offset))
            s->first_offset = d->first_offset;
        if (d->last_offset > s->last_offset) s->last_offset = d->last_offset;
        s->requests += d->requests;
        s->errors += d->errors;
        if (d->last_error) s->last_error = d->last_error;
        if (d->end_ms > s->end_ms) s->end_ms = d->end_ms;
        return;
    }
    if (a->nagg >= AGG_MAX) sl_audit_flush_data(a);
    const char *strs[5] = {d->principal, d->client_id, d->topic, d->peer, d->listener};
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += (strs[i] ? strlen(strs[i]) : 0) + 1;
    agg *e = malloc(sizeof *e + total);
    if (!e) {
        drop(a, d->write ? "produce" : "consume");
        return;
    }
    e->hash = h;
    e->d = *d;
    char *p = e->strs;
    const char **dst[5] = {&e->d.principal, &e->d.client_id, &e->d.topic, &e->d.peer,
                           &e->d.listener};
    for (int i = 0; i < 5; i++) {
        if (!strs[i]) {
            *dst[i] = NULL;
            *p++ = 0;
            continue;
        }
        size_t l = strlen(strs[i]) + 1;
        memcpy(p, strs[i], l);
        *dst[i] = p;
        p += l;
    }
    e->next = a->buckets[h % AGG_BUCKETS];
    a->buckets[h % AGG_BUCKETS] = e;
    a->nagg++;
}

static void on_data(sl_audit *a, const sl_event *e) {
    const sl_req *rq = e->rq;
    bool write = rq->h.api_key == SL_API_PRODUCE;
    char client[256];
    const char *cid = NULL;
    if (rq->h.client_id.len >= 0) {
        int l = rq->h.client_id.len < 255 ? rq->h.client_id.len : 255;
        memcpy(client, rq->h.client_id.p, (size_t)l);
        client[l] = 0;
        cid = client;
    }
    int64_t now = e->time_ms;
    sl_audit_data one[MAX_PER_EVENT];
    int n = 0;
    char topics[MAX_PER_EVENT][256];
    /* What the request read or wrote, per partition, as the descriptor recorded it from the
     * answer (sl_req_data); a fetch that returned nothing names no partition and is no access. */
    for (int32_t i = 0; i < rq->ndata; i++) {
        sl_audit_data d = {.principal = rq->principal,
                           .client_id = cid,
                           .peer = rq->peer,
                           .listener = rq->listener,
                           .write = write,
                           .requests = 1,
                           .start_ms = now,
                           .end_ms = now};
        const sl_req_data *x = &rq->data[i];
        sl_str topic = x->topic;
        d.partition = x->partition;
        d.records = x->records;
        d.bytes = x->bytes;
        d.first_offset = x->first_offset;
        d.last_offset = x->last_offset;
        d.last_error = x->error ? x->error : rq->error;
        d.errors = d.last_error != 0;
        int tl = topic.len < 0 ? 0 : topic.len < 255 ? topic.len : 255;
        if (a->excl_topics[0] && list_has(a->excl_topics, topic.p ? topic.p : "", (size_t)tl))
            continue;
        memcpy(topics[n], topic.p ? topic.p : "", (size_t)tl);
        topics[n][tl] = 0;
        d.topic = topics[n];
        if (a->data_interval_ms > 0) {
            agg_add(a, &d);
            continue;
        }
        one[n++] = d;
        if (n == MAX_PER_EVENT) {
            agg_emit(a, one, n);
            n = 0;
        }
    }
    if (n) agg_emit(a, one, n);
}

/* ---- the subscriber ---- */

static void on_request(sl_audit *a, const sl_event *e) {
    const sl_req *rq = e->rq;
    if (!rq || !rq->api || rq->raw) return;
    if (excluded_principal(a, rq->principal)) return;
    if (a->types[SL_AUDIT_DENIAL])
        for (int32_t i = 0; i < rq->nres; i++) {
            const sl_req_res *r = &rq->res[i];
            if (r->allowed || (r->flags & (SL_AZ_QUIET | SL_AZ_OPS)) || sl_audit_alt_allowed(rq, i))
                continue;
            EMIT(a, sl_ocsf_denial(&body_, &extra_, e, i, &ev_));
        }
    int16_t k = rq->h.api_key;
    if (sl_audit_api_management(k)) {
        if (a->types[SL_AUDIT_MANAGEMENT])
            EMIT(a, sl_ocsf_request(&body_, &extra_, e, SL_AUDIT_MANAGEMENT, &ev_));
    } else if ((k == SL_API_PRODUCE && a->types[SL_AUDIT_PRODUCE]) ||
               (k == SL_API_FETCH && a->types[SL_AUDIT_CONSUME])) {
        on_data(a, e);
    } else if (sl_audit_api_describe(k) && a->types[SL_AUDIT_DESCRIBE]) {
        EMIT(a, sl_ocsf_request(&body_, &extra_, e, SL_AUDIT_DESCRIBE, &ev_));
    }
}

/* The refusals an address's window held back, as one event carrying their count. */
static void refusals_summary(void *ctx, const sl_limit_slot *s) {
    sl_audit *a = ctx;
    char peer[80];
    snprintf(peer, sizeof peer, strchr(s->addr, ':') ? "[%s]:0" : "%s:0", s->addr);
    sl_event e = {
        .kind = SL_EV_NET,
        .time_ms = sl_wall_ms(),
        .peer = strcmp(s->addr, "*") ? peer : NULL,
        .net = {.activity = SL_NET_REFUSED, .reason = s->k2, .count = (int64_t)s->suppressed}};
    EMIT(a, sl_ocsf_net(&body_, &extra_, &e, &ev_));
}

static void refusals_summary_all(void *ctx, uint64_t over) {
    sl_audit *a = ctx;
    sl_event e = {.kind = SL_EV_NET,
                  .time_ms = sl_wall_ms(),
                  .net = {.activity = SL_NET_REFUSED,
                          .reason = "refusals from all addresses beyond the trail's rate limit",
                          .count = (int64_t)over}};
    EMIT(a, sl_ocsf_net(&body_, &extra_, &e, &ev_));
}

static void on_event(void *ctx, const sl_event *e) {
    sl_audit *a = ctx;
    switch (e->kind) {
    case SL_EV_REQUEST:
        on_request(a, e);
        break;
    case SL_EV_AUTH:
        if (!a->types[SL_AUDIT_AUTHENTICATE] || excluded_principal(a, e->principal)) break;
        EMIT(a, sl_ocsf_auth(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_NET:
        if (excluded_principal(a, e->principal)) break;
        if (!a->types[e->net.activity == SL_NET_REFUSED ? SL_AUDIT_REFUSAL : SL_AUDIT_CONNECTION])
            break;
        /* A refusal costs its sender nothing (no TLS, no login): per address, the first few in
         * a window are recorded one by one, the rest as one summary with their count (below),
         * so a connection flood can neither fill the disk nor, under `block`, stall the
         * broker by filling the queue. */
        if (e->net.activity == SL_NET_REFUSED && e->net.count <= 1) {
            char ip[64];
            sl_log_peer_addr(e->peer, ip, sizeof ip);
            if (!sl_limiter_admit(&a->refusals, &a->refusals, e->net.reason, ip, 0, sl_mono_ms()))
                break;
        }
        EMIT(a, sl_ocsf_net(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_APP:
        /* The trail records its own start and files (sl_audit_new, open_next) and, unless the
         * broker reported its stop (with how it went), the stop at sl_audit_free: nothing
         * twice. The configuration digest is the broker's (sl_config_digest). */
        if ((e->app.activity == SL_APP_START && a->started) ||
            (e->app.activity == SL_APP_STOP && a->stopped) ||
            e->app.activity == SL_APP_TRAIL_OPEN || e->app.activity == SL_APP_TRAIL_ROTATE ||
            !a->types[SL_AUDIT_LIFECYCLE])
            break;
        if (e->app.activity == SL_APP_STOP) sl_audit_flush_data(a); /* summaries come first */
        EMIT(a, sl_ocsf_app(&body_, &extra_, e, &ev_));
        if (e->app.activity == SL_APP_STOP) a->stopped = true;
        break;
    case SL_EV_ADMIN:
        if (a->types[SL_AUDIT_MANAGEMENT]) EMIT(a, sl_ocsf_admin(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_DETECTION:
        if (a->types[SL_AUDIT_DETECTION]) EMIT(a, sl_ocsf_detection(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_KEY: /* key use is management of the data's keys (no type of its own) */
        if (a->types[SL_AUDIT_MANAGEMENT]) EMIT(a, sl_ocsf_key(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_PROTECT:
        /* Who was shown protected fields in clear is always in the trail, whatever the types
         * and exclusions; the rest (grants, forgets, policy loads, refusals) is management. */
        if ((e->protect.op && !strcmp(e->protect.op, "reveal")) || a->types[SL_AUDIT_MANAGEMENT])
            EMIT(a, sl_ocsf_protect(&body_, &extra_, e, &ev_));
        break;
    case SL_EV_UPSTREAM: /* the gateway's own connections: always recorded, like refusals */
        EMIT(a, sl_ocsf_upstream(&body_, &extra_, e, &ev_));
        break;
    }
}

static void on_tick(void *ctx) {
    sl_audit *a = ctx;
    a->tick = NULL;
    int64_t now = sl_mono_ms();
    if (a->data_interval_ms > 0 && now >= a->next_agg_ms) {
        sl_audit_flush_data(a);
        a->next_agg_ms = now + a->data_interval_ms;
    }
    if ((a->sinks & SINK_FILE) && a->file_bytes > 0 && now - a->file_opened_ms >= a->max_age_ms)
        rotate(a, "age");
    if (now >= a->next_cp_ms) {
        if (a->seq != a->cp_seq) checkpoint(a, "interval");
        a->next_cp_ms = now + a->cp_interval_ms;
    }
    sl_limiter_flush(&a->refusals, now);
    topic_flush(a);
    a->tick = sl_timer_start(a->loop, TICK_MS, on_tick, a);
}

/* ---- startup: continuing the chain of an existing trail ---- */

/* The last complete line of `path` (its hash and sequence); a torn last line (a crash in the
 * middle of a write) is cut off, it was never a complete event. */
static bool last_line(const char *path, char hash[65], uint64_t *seq) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    int64_t size = file_size(fd);
    size_t want = size > (1 << 22) ? (1 << 22) : (size_t)size;
    char *buf = malloc(want + 1);
    bool ok = false;
    if (buf && pread(fd, buf, want, size - (off_t)want) == (ssize_t)want) {
        size_t end = want;
        if (end && buf[end - 1] != '\n') {
            while (end && buf[end - 1] != '\n') end--;
            SL_WARN("audit", "cutting a torn last line of the trail", "file=%s bytes=%zu", path,
                    want - end);
            if (ftruncate(fd, size - (off_t)(want - end))) end = 0;
        }
        if (end) {
            size_t start = end - 1;
            while (start && buf[start - 1] != '\n') start--;
            sl_audit_sha256_hex(buf + start, end - 1 - start, hash);
            sl_arena *ar = sl_arena_new(8192);
            char err[64];
            const sl_json *j =
                ar ? sl_json_parse(ar, buf + start, end - 1 - start, 16, err, sizeof err) : NULL;
            const sl_json *s = sl_json_get(sl_json_get(j, "metadata"), "sequence");
            if (s && s->type == SL_JSON_NUM && s->is_int && s->num >= 1) {
                *seq = (uint64_t)s->num;
                ok = true;
            }
            sl_arena_free(ar);
        }
    }
    free(buf);
    close(fd);
    return ok;
}

static void resume_chain(sl_audit *a) {
    snprintf(a->prev, sizeof a->prev, "%s", SL_AUDIT_GENESIS);
    a->seq = 0;
    int n;
    char **v = list_files(a->dir, &n);
    for (int i = n - 1; i >= 0; i--) {
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", a->dir, v[i]);
        struct stat st;
        if (stat(p, &st) || st.st_size == 0) continue;
        if (!last_line(p, a->prev, &a->seq)) {
            SL_WARN("audit", "the last trail file does not end in an event; a new chain starts",
                    "file=%s", p);
            snprintf(a->prev, sizeof a->prev, "%s", SL_AUDIT_GENESIS);
            a->seq = 0;
        }
        break;
    }
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    a->cp_seq = a->seq;
}

sl_err sl_audit_new(const sl_config *cfg, const sl_audit_env *env, sl_audit **out, char *err,
                    size_t elen) {
    *out = NULL;
    if (!cfg->sluice_audit_enable) return SL_OK;
    sl_audit *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, elen, "sluice.audit.enable: out of memory");
        return SL_ENOMEM;
    }
    a->fd = a->sfd = -1;
    a->loop = env->loop;
    a->hub = env->hub;
    snprintf(a->cluster_id, sizeof a->cluster_id, "%s", env->cluster_id ? env->cluster_id : "");
    a->src = (sl_ocsf_src){.cluster_id = a->cluster_id, .node_id = env->node_id};
    for (int i = 0; i < SL_AUDIT_NTYPES; i++)
        a->types[i] = list_has(cfg->sluice_audit_enabled_event_types, sl_audit_event_type_names[i],
                               strlen(sl_audit_event_type_names[i]));
    snprintf(a->excl_principals, sizeof a->excl_principals, "%s",
             cfg->sluice_audit_excluded_principals);
    snprintf(a->excl_topics, sizeof a->excl_topics, "%s", cfg->sluice_audit_excluded_topics);
    a->block = !strcmp(cfg->sluice_audit_failure_policy, "block");
    a->data_interval_ms = cfg->sluice_audit_data_interval_ms;
    a->max_bytes = cfg->sluice_audit_file_max_bytes;
    a->max_age_ms = cfg->sluice_audit_file_max_age_ms;
    a->cp_interval_ms = cfg->sluice_audit_checkpoint_interval_ms;
    a->retention_files = cfg->sluice_audit_file_retention_files;
    a->qmax = cfg->sluice_audit_queue_max_events;
    const char *sinks = cfg->sluice_audit_sinks;
    if (list_has(sinks, "file", 4)) a->sinks |= SINK_FILE;
    if (list_has(sinks, "syslog", 6)) a->sinks |= SINK_SYSLOG;
    a->sink_topic = list_has(sinks, "topic", 5);
    a->topic_append = env->topic_append;
    a->topic_ctx = env->topic_ctx;
    if (a->sink_topic && !a->topic_append)
        SL_WARN("audit", "the topic sink is not available in this broker; other sinks only", "%s",
                "");
    if (cfg->sluice_audit_dir[0])
        snprintf(a->dir, sizeof a->dir, "%s", cfg->sluice_audit_dir);
    else
        snprintf(a->dir, sizeof a->dir, "%s/audit", cfg->log_dirs);
    if (strlen(cfg->sluice_audit_syslog_socket) >= sizeof a->syslog_path) {
        snprintf(err, elen, "sluice.audit.syslog.socket: path too long");
        free(a);
        return SL_ECONFIG;
    }
    memcpy(a->syslog_path, cfg->sluice_audit_syslog_socket,
           strlen(cfg->sluice_audit_syslog_socket) + 1);
    if (gethostname(a->hostname, sizeof a->hostname - 1) || !a->hostname[0])
        snprintf(a->hostname, sizeof a->hostname, "-");
    for (char *h = a->hostname; *h; h++)
        if (*h <= ' ' || *h > '~') *h = '-';
    if (sl_mkdir_p(a->dir, 0700) != SL_OK || chmod(a->dir, 0700)) {
        snprintf(err, elen, "sluice.audit.dir: cannot create %s: %s", a->dir, strerror(errno));
        free(a);
        return SL_EIO;
    }
    char keyfile[PATH_MAX];
    if (cfg->sluice_audit_signing_key_file[0])
        snprintf(keyfile, sizeof keyfile, "%s", cfg->sluice_audit_signing_key_file);
    else
        sl_config_secret_path(cfg, "sluice-audit-key.pem", keyfile, sizeof keyfile, NULL);
    sl_err e = sl_audit_key_load(keyfile, &a->key, err, elen);
    if (e != SL_OK) {
        free(a);
        return e;
    }
    (void)sl_audit_key_id(a->key, a->key_id);
    resume_chain(a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (a->sinks) {
        if (pthread_create(&a->thr, NULL, writer_main, a)) {
            snprintf(err, elen, "sluice.audit.enable: cannot start the writer thread");
            sl_audit_free(a);
            return SL_EIO;
        }
        a->thr_started = true;
    }
    if (!sl_events_subscribe(a->hub, on_event, a)) {
        snprintf(err, elen, "sluice.audit.enable: too many event subscribers");
        sl_audit_free(a);
        return SL_EIO;
    }
    sl_limiter_init(&a->refusals, SL_AUDIT_REFUSALS_BURST, SL_AUDIT_REFUSALS_GLOBAL,
                    SL_AUDIT_REFUSALS_WINDOW_MS, refusals_summary, refusals_summary_all, a);
    int64_t now = sl_mono_ms();
    a->next_cp_ms = now + a->cp_interval_ms;
    a->next_agg_ms = now + a->data_interval_ms;
    a->file_opened_ms = now;
    open_next(a, false);
    if (a->types[SL_AUDIT_LIFECYCLE]) {
        sl_event st = {
            .kind = SL_EV_APP, .time_ms = sl_wall_ms(), .app = {.activity = SL_APP_START}};
        EMIT(a, sl_ocsf_app(&body_, &extra_, &st, &ev_));
    }
    a->started = true;
    a->tick = sl_timer_start(a->loop, TICK_MS, on_tick, a);
    SL_INFO("audit", "audit trail open", "dir=%s sinks=%s policy=%s key_id=%s sequence=%llu",
            a->dir, cfg->sluice_audit_sinks, cfg->sluice_audit_failure_policy, a->key_id,
            (unsigned long long)a->seq);
    *out = a;
    return SL_OK;
}

void sl_audit_free(sl_audit *a) {
    if (!a) return;
    if (a->hub) sl_events_unsubscribe(a->hub, a);
    if (a->tick) sl_timer_cancel(a->loop, a->tick);
    if (a->started) {
        sl_audit_flush_data(a);
        sl_limiter_flush(&a->refusals, INT64_MAX / 2); /* every window ends at the stop */
        /* The stop and its checkpoint are the trail's seal: at shutdown the loop may wait
         * (bounded) for the writer to make room for them rather than drop them. */
        for (int64_t until = sl_mono_ms() + STOP_DRAIN_MS;
             atomic_load(&a->queued) + 4 > (uint_fast64_t)a->qmax && sl_mono_ms() < until;)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        if (a->types[SL_AUDIT_LIFECYCLE] && !a->stopped) {
            sl_event st = {
                .kind = SL_EV_APP, .time_ms = sl_wall_ms(), .app = {.activity = SL_APP_STOP}};
            EMIT(a, sl_ocsf_app(&body_, &extra_, &st, &ev_));
        }
        a->stopped = true;
        checkpoint(a, "stop");
        topic_flush(a);
    }
    if (a->thr_started) {
        pthread_mutex_lock(&a->mu);
        a->stop = true;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thr, NULL);
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
    }
    if (a->tn)
        SL_ERROR("audit", "audit events not appended to the topic at stop", "events=%d", a->tn);
    sl_audit_stats st;
    sl_audit_stats_get(a, &st);
    SL_INFO("audit", "audit trail closed",
            "sequence=%llu written=%llu dropped=%llu refused=%llu checkpoints=%llu "
            "sink_errors=%llu",
            (unsigned long long)a->seq, (unsigned long long)st.events_written,
            (unsigned long long)st.events_dropped, (unsigned long long)st.events_refused,
            (unsigned long long)st.checkpoints, (unsigned long long)st.sink_errors);
    for (int i = 0; i < a->tn; i++) free(a->tvals[i]);
    free(a->tvals);
    free(a->tlens);
    node_free_all(a->head);
    node_free_all(a->pend);
    if (a->sfd >= 0) close(a->sfd);
    if (a->fd >= 0) close(a->fd);
    for (int b = 0; b < AGG_BUCKETS; b++)
        for (agg *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    sl_text_free(&a->line);
    EVP_PKEY_free(a->key);
    free(a);
}

bool sl_audit_accepting(const sl_audit *a) {
    if (!a || !a->block) return true;
    return !atomic_load(&a->failing) && !queue_full(a) && !(a->sink_topic && a->topic_failing);
}

void sl_audit_count_refused(sl_audit *a) {
    if (a) atomic_fetch_add(&a->refused, 1);
}

void sl_audit_stats_get(const sl_audit *a, sl_audit_stats *out) {
    memset(out, 0, sizeof *out);
    if (!a) return;
    sl_audit *m = (sl_audit *)a; /* atomics only */
    out->events_written = atomic_load(&m->written);
    out->events_dropped = atomic_load(&m->dropped);
    out->events_refused = atomic_load(&m->refused);
    out->checkpoints = atomic_load(&m->checkpoints);
    out->queued = atomic_load(&m->queued);
    int64_t oldest = atomic_load(&m->oldest_ms);
    out->lag_ms = out->queued && oldest ? sl_mono_ms() - oldest : 0;
    out->sink_errors = atomic_load(&m->sink_errors);
    out->failing = atomic_load(&m->failing);
}
