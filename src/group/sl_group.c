/* The classic group coordinator's state machine; see sl_group.h. The rules follow Kafka's classic
 * GroupCoordinator so that unmodified clients see the answers they expect. Groups, members and
 * offsets live in plain arrays with linear lookups: a single node serves few groups, each with
 * few members, and this keeps every transition easy to read and to test. */
#include "sl_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct gproto {
    char *name;
    uint8_t *meta;
    int32_t len;
} gproto;

typedef struct gmember {
    char *id, *instance, *client_id, *client_host; /* instance NULL: dynamic member */
    int32_t session_ms, rebalance_ms;
    gproto *protos;
    int32_t nprotos;
    uint8_t *assign;
    int32_t assign_len;
    void *join_waiter, *sync_waiter;
    bool synced;       /* sent SyncGroup in the current generation */
    int64_t last_seen; /* last join, sync, heartbeat or commit: the session clock */
} gmember;

typedef struct gpending {
    char *id;
    int64_t deadline;
} gpending;

typedef struct goff {
    char *topic;
    int32_t part;
    int64_t offset;
    int32_t epoch;
    char *meta; /* NULL: null metadata. Bytes, not a C string: NULs are allowed */
    int32_t meta_len;
    int64_t commit_ms;
} goff;

typedef struct group {
    char *id;
    sl_group_state state;
    int32_t gen;
    char *ptype, *pname, *leader; /* NULL when unset */
    gmember **m;
    int32_t nm, capm;
    gpending *pend; /* dynamic members told MEMBER_ID_REQUIRED, not yet back */
    int32_t np, capp;
    goff *off;
    int32_t noff, capoff;
    int64_t join_deadline; /* PreparingRebalance: the join phase ends by then */
    int64_t delay_limit;   /* initial delay: extensions stop here */
    bool initial_delay;    /* the join phase is the initial delayed one */
    bool new_member_added; /* a member joined during the current delay window */
    int64_t sync_deadline; /* members that have not synced by then are removed */
    int64_t state_since;   /* when the current state began */
    struct group *next;
} group;

struct sl_gc {
    sl_gc_env env;
    sl_gc_config cfg;
    group *groups;
    int ngroups;
    int64_t next_expiry;
    uint64_t rnd;
};

/* ---- small helpers ---- */

static char *sdup(sl_str s) {
    if (s.len < 0) return NULL;
    char *p = malloc((size_t)s.len + 1);
    if (!p) return NULL;
    if (s.len) memcpy(p, s.p, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

static bool seq(const char *c, sl_str s) {
    if (!c) return s.len < 0;
    if (s.len < 0) return false;
    return strlen(c) == (size_t)s.len && memcmp(c, s.p, (size_t)s.len) == 0;
}

static sl_str cstr(const char *c) { return c ? sl_str_c(c) : SL_STR_NULL; }

/* Committed metadata round-trips byte for byte (Kafka clients may put any bytes there). */
static sl_str meta_str(const goff *o) {
    return o->meta ? (sl_str){o->meta, o->meta_len} : SL_STR_NULL;
}

static int64_t now(sl_gc *gc) { return gc->env.now(gc->env.ctx); }

const char *sl_group_state_name(sl_group_state s) {
    static const char *const n[] = {"Empty", "PreparingRebalance", "CompletingRebalance", "Stable",
                                    "Dead"};
    return (unsigned)s <= SL_GS_DEAD ? n[s] : "Unknown";
}

int sl_group_state_parse(sl_str s) {
    for (int i = 0; i <= SL_GS_DEAD; i++) {
        const char *n = sl_group_state_name((sl_group_state)i);
        if (s.len >= 0 && strlen(n) == (size_t)s.len && !strncasecmp(n, s.p, (size_t)s.len))
            return i;
    }
    return -1;
}

int16_t sl_gc_check_group_id(sl_str id) {
    if (id.len <= 0) return SL_KAFKA_INVALID_GROUP_ID;
    if (memchr(id.p, 0, (size_t)id.len)) return SL_KAFKA_INVALID_GROUP_ID;
    return SL_KAFKA_NONE;
}

static void free_member(gmember *m) {
    if (!m) return;
    free(m->id);
    free(m->instance);
    free(m->client_id);
    free(m->client_host);
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    free(m->assign);
    free(m);
}

static void free_group(group *g) {
    for (int32_t i = 0; i < g->nm; i++) free_member(g->m[i]);
    free(g->m);
    for (int32_t i = 0; i < g->np; i++) free(g->pend[i].id);
    free(g->pend);
    for (int32_t i = 0; i < g->noff; i++) {
        free(g->off[i].topic);
        free(g->off[i].meta);
    }
    free(g->off);
    free(g->id);
    free(g->ptype);
    free(g->pname);
    free(g->leader);
    free(g);
}

static group *find_group(sl_gc *gc, sl_str id) {
    for (group *g = gc->groups; g; g = g->next)
        if (seq(g->id, id)) return g;
    return NULL;
}

static group *create_group(sl_gc *gc, sl_str id) {
    group *g = calloc(1, sizeof *g);
    if (!g || !(g->id = sdup(id))) {
        free(g);
        return NULL;
    }
    g->state = SL_GS_EMPTY;
    g->state_since = now(gc);
    g->next = gc->groups;
    gc->groups = g;
    gc->ngroups++;
    return g;
}

static void remove_group(sl_gc *gc, group *g) {
    for (group **pp = &gc->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            gc->ngroups--;
            free_group(g);
            return;
        }
}

/* A group nobody uses: no members, no pending ids, no offsets. */
static bool group_is_idle(const group *g) {
    return g->state == SL_GS_EMPTY && g->nm == 0 && g->np == 0 && g->noff == 0;
}

static gmember *find_member(group *g, sl_str id) {
    for (int32_t i = 0; i < g->nm; i++)
        if (seq(g->m[i]->id, id)) return g->m[i];
    return NULL;
}

static gmember *find_static(group *g, sl_str instance) {
    if (instance.len < 0) return NULL;
    for (int32_t i = 0; i < g->nm; i++)
        if (g->m[i]->instance && seq(g->m[i]->instance, instance)) return g->m[i];
    return NULL;
}

/* A static member id that is not the one currently registered for its instance is fenced. */
static bool is_fenced(group *g, sl_str member_id, sl_str instance) {
    gmember *m = find_static(g, instance);
    return m && !seq(m->id, member_id);
}

static int find_pending(group *g, sl_str id) {
    for (int32_t i = 0; i < g->np; i++)
        if (seq(g->pend[i].id, id)) return i;
    return -1;
}

static void remove_pending(group *g, int i) {
    free(g->pend[i].id);
    g->pend[i] = g->pend[--g->np];
}

static int32_t rebalance_timeout(group *g) {
    int32_t t = 0;
    for (int32_t i = 0; i < g->nm; i++)
        if (g->m[i]->rebalance_ms > t) t = g->m[i]->rebalance_ms;
    return t;
}

static const gproto *member_proto(const gmember *m, const char *name) {
    for (int32_t i = 0; name && i < m->nprotos; i++)
        if (!strcmp(m->protos[i].name, name)) return &m->protos[i];
    return NULL;
}

static bool all_support(group *g, sl_str name, const gmember *except) {
    for (int32_t i = 0; i < g->nm; i++) {
        if (g->m[i] == except) continue;
        bool found = false;
        for (int32_t j = 0; j < g->m[i]->nprotos && !found; j++)
            found = seq(g->m[i]->protos[j].name, name);
        if (!found) return false;
    }
    return true;
}

/* Kafka's supportsProtocols: an empty group takes any non-empty offer; otherwise the type must
 * match and one offered protocol must be supported by every other member. */
static bool supports_protocols(group *g, sl_str ptype, const sl_gc_protocol *p, int32_t n,
                               const gmember *self) {
    if (g->nm == 0 || (g->nm == 1 && g->m[0] == self)) return ptype.len > 0 && n > 0;
    if (!seq(g->ptype, ptype)) return false;
    for (int32_t i = 0; i < n; i++)
        if (all_support(g, p[i].name, self)) return true;
    return false;
}

/* Each member votes for its most preferred protocol among those all members support; the most
 * votes win, ties going to the earlier preference of the first member (Kafka leaves ties to hash
 * order). */
static const char *select_protocol(group *g) {
    if (g->nm == 0) return NULL;
    const gmember *first = g->m[0];
    const char *best = NULL;
    int best_votes = -1;
    for (int32_t c = 0; c < first->nprotos; c++) {
        const char *cand = first->protos[c].name;
        if (!all_support(g, sl_str_c(cand), NULL)) continue;
        int votes = 0;
        for (int32_t i = 0; i < g->nm; i++) {
            /* member i's vote: its first protocol that everybody supports */
            for (int32_t j = 0; j < g->m[i]->nprotos; j++) {
                const char *pn = g->m[i]->protos[j].name;
                if (!all_support(g, sl_str_c(pn), NULL)) continue;
                if (!strcmp(pn, cand)) votes++;
                break;
            }
        }
        if (votes > best_votes) {
            best = cand;
            best_votes = votes;
        }
    }
    return best;
}

static bool set_protocols(gmember *m, const sl_gc_protocol *p, int32_t n) {
    gproto *np = calloc((size_t)(n > 0 ? n : 1), sizeof *np);
    if (!np) return false;
    for (int32_t i = 0; i < n; i++) {
        np[i].name = sdup(p[i].name.len < 0 ? sl_str_c("") : p[i].name);
        int32_t len = p[i].metadata.len > 0 ? p[i].metadata.len : 0;
        np[i].meta = malloc((size_t)len + 1);
        if (!np[i].name || !np[i].meta) {
            for (int32_t j = 0; j <= i; j++) {
                free(np[j].name);
                free(np[j].meta);
            }
            free(np);
            return false;
        }
        if (len) memcpy(np[i].meta, p[i].metadata.p, (size_t)len);
        np[i].len = len;
    }
    for (int32_t i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    m->protos = np;
    m->nprotos = n;
    return true;
}

/* Same protocols, in the same order, with the same metadata. */
static bool protocols_match(const gmember *m, const sl_gc_protocol *p, int32_t n) {
    if (m->nprotos != n) return false;
    for (int32_t i = 0; i < n; i++) {
        int32_t len = p[i].metadata.len > 0 ? p[i].metadata.len : 0;
        if (!seq(m->protos[i].name, p[i].name) || m->protos[i].len != len ||
            (len && memcmp(m->protos[i].meta, p[i].metadata.p, (size_t)len)))
            return false;
    }
    return true;
}

static void new_member_id(sl_gc *gc, sl_str client_id, char *out, size_t cap) {
    uint64_t a = 0, b = 0;
    for (int k = 0; k < 2; k++) {
        /* xorshift64*: ids need to be unique, not secret (they are no credential) */
        gc->rnd ^= gc->rnd >> 12;
        gc->rnd ^= gc->rnd << 25;
        gc->rnd ^= gc->rnd >> 27;
        uint64_t r = gc->rnd * 2685821657736338717ULL;
        if (k == 0)
            a = r;
        else
            b = r;
    }
    int cl = client_id.len > 0 ? (client_id.len > 128 ? 128 : client_id.len) : 0;
    snprintf(out, cap, "%.*s-%08x-%04x-%04x-%04x-%012llx", cl, cl ? client_id.p : "",
             (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xffff,
             (unsigned)(b >> 48), (unsigned long long)(b & 0xffffffffffffULL));
}

/* ---- answering waiters ---- */

static void answer_join_error(sl_gc *gc, void *waiter, int16_t err, sl_str member_id) {
    sl_gc_join_result r = {.error = err,
                           .generation = -1,
                           .protocol_type = SL_STR_NULL,
                           .protocol_name = SL_STR_NULL,
                           .leader = sl_str_c(""),
                           .member_id = member_id.len < 0 ? sl_str_c("") : member_id};
    gc->env.join_done(gc->env.ctx, waiter, &r);
}

static void answer_sync(sl_gc *gc, group *g, void *waiter, int16_t err, sl_bytes assign) {
    sl_gc_sync_result r = {.error = err,
                           .protocol_type = err ? SL_STR_NULL : cstr(g ? g->ptype : NULL),
                           .protocol_name = err ? SL_STR_NULL : cstr(g ? g->pname : NULL),
                           .assignment = assign.p ? assign : (sl_bytes){(const uint8_t *)"", 0}};
    gc->env.sync_done(gc->env.ctx, waiter, &r);
}

/* Answers `m`'s pending JoinGroup with the current generation; the leader gets the members. */
static void answer_join_current(sl_gc *gc, group *g, gmember *m, bool skip_assignment) {
    void *w = m->join_waiter;
    m->join_waiter = NULL;
    bool leader = g->leader && !strcmp(g->leader, m->id);
    sl_gc_member_view *mv = NULL;
    int32_t n = 0;
    if (leader) {
        mv = calloc((size_t)(g->nm ? g->nm : 1), sizeof *mv);
        if (mv) {
            for (int32_t i = 0; i < g->nm; i++) {
                const gproto *p = member_proto(g->m[i], g->pname);
                mv[n].member_id = sl_str_c(g->m[i]->id);
                mv[n].instance_id = cstr(g->m[i]->instance);
                mv[n].metadata =
                    p ? (sl_bytes){p->meta, p->len} : (sl_bytes){(const uint8_t *)"", 0};
                n++;
            }
        }
    }
    sl_gc_join_result r = {.error = SL_KAFKA_NONE,
                           .generation = g->gen,
                           .protocol_type = cstr(g->ptype),
                           .protocol_name = cstr(g->pname),
                           .leader = cstr(g->leader ? g->leader : ""),
                           .member_id = sl_str_c(m->id),
                           .skip_assignment = skip_assignment,
                           .members = mv,
                           .nmembers = n};
    gc->env.join_done(gc->env.ctx, w, &r);
    free(mv);
}

/* ---- transitions ---- */

static void set_state(sl_gc *gc, group *g, sl_group_state s) {
    g->state = s;
    g->state_since = now(gc);
}

static void persist_meta(sl_gc *gc, group *g);
static void persist_tombstone(sl_gc *gc, group *g);

static void clear_assignments(group *g) {
    for (int32_t i = 0; i < g->nm; i++) {
        free(g->m[i]->assign);
        g->m[i]->assign = NULL;
        g->m[i]->assign_len = 0;
    }
}

static void try_complete_join(sl_gc *gc, group *g);

static void prepare_rebalance(sl_gc *gc, group *g) {
    if (g->state == SL_GS_COMPLETING) {
        /* Assignments in flight are void: whoever waits for one must rejoin. */
        for (int32_t i = 0; i < g->nm; i++)
            if (g->m[i]->sync_waiter) {
                void *w = g->m[i]->sync_waiter;
                g->m[i]->sync_waiter = NULL;
                answer_sync(gc, g, w, SL_KAFKA_REBALANCE_IN_PROGRESS, (sl_bytes){NULL, 0});
            }
        clear_assignments(g);
    }
    int64_t t = now(gc);
    int32_t rt = rebalance_timeout(g);
    if (g->state == SL_GS_EMPTY && gc->cfg.initial_rebalance_delay_ms > 0) {
        g->initial_delay = true;
        g->new_member_added = false;
        g->join_deadline = t + gc->cfg.initial_rebalance_delay_ms;
        g->delay_limit =
            t + (rt > gc->cfg.initial_rebalance_delay_ms ? rt : gc->cfg.initial_rebalance_delay_ms);
    } else {
        g->initial_delay = false;
        g->join_deadline = t + rt;
    }
    set_state(gc, g, SL_GS_PREPARING);
    /* Nobody left to wait for (the last member left): the join phase ends at once. */
    try_complete_join(gc, g);
}

static void maybe_prepare_rebalance(sl_gc *gc, group *g) {
    if (g->state == SL_GS_STABLE || g->state == SL_GS_COMPLETING || g->state == SL_GS_EMPTY)
        prepare_rebalance(gc, g);
}

static void remove_member_at(sl_gc *gc, group *g, int32_t i) {
    gmember *m = g->m[i];
    if (m->join_waiter)
        answer_join_error(gc, m->join_waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, sl_str_c(m->id));
    if (m->sync_waiter)
        answer_sync(gc, g, m->sync_waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, (sl_bytes){NULL, 0});
    memmove(&g->m[i], &g->m[i + 1], (size_t)(g->nm - i - 1) * sizeof *g->m);
    g->nm--;
    if (g->leader && !strcmp(g->leader, m->id)) {
        free(g->leader);
        g->leader = NULL;
    }
    free_member(m);
}

/* Ends the join phase: members that did not rejoin are dropped (static ones are kept, they may
 * come back with their instance id), a new generation starts and every waiting member hears. */
static void complete_join(sl_gc *gc, group *g) {
    for (int32_t i = 0; i < g->nm;) {
        if (!g->m[i]->join_waiter && !g->m[i]->instance)
            remove_member_at(gc, g, i);
        else
            i++;
    }
    g->initial_delay = false;
    if (g->nm == 0) {
        g->gen++;
        free(g->pname);
        g->pname = NULL;
        free(g->leader);
        g->leader = NULL;
        set_state(gc, g, SL_GS_EMPTY);
        /* Without this record a restart would bring back the last Stable generation's members,
         * who would then have to expire one by one. */
        persist_meta(gc, g);
        return;
    }
    if (!g->leader || !find_member(g, sl_str_c(g->leader))->join_waiter) {
        gmember *nl = NULL;
        for (int32_t i = 0; i < g->nm && !nl; i++)
            if (g->m[i]->join_waiter) nl = g->m[i];
        if (!nl) {
            /* Only absent static members remain: wait for them or their session expiry. */
            g->join_deadline = now(gc) + rebalance_timeout(g);
            return;
        }
        free(g->leader);
        g->leader = strdup(nl->id);
    }
    g->gen++;
    free(g->pname);
    const char *sel = select_protocol(g);
    g->pname = sel ? strdup(sel) : NULL;
    clear_assignments(g);
    set_state(gc, g, SL_GS_COMPLETING);
    int64_t t = now(gc);
    g->sync_deadline = t + rebalance_timeout(g);
    for (int32_t i = 0; i < g->nm; i++) {
        g->m[i]->synced = false;
        if (g->m[i]->join_waiter) {
            g->m[i]->last_seen = t;
            answer_join_current(gc, g, g->m[i], false);
        }
    }
}

static void try_complete_join(sl_gc *gc, group *g) {
    if (g->state != SL_GS_PREPARING || g->initial_delay || g->np) return;
    for (int32_t i = 0; i < g->nm; i++)
        if (!g->m[i]->join_waiter) return;
    complete_join(gc, g);
}

static void remove_member_and_update(sl_gc *gc, group *g, int32_t i) {
    remove_member_at(gc, g, i);
    switch (g->state) {
    case SL_GS_STABLE:
    case SL_GS_COMPLETING:
        prepare_rebalance(gc, g);
        break;
    case SL_GS_PREPARING:
        try_complete_join(gc, g);
        break;
    default:
        break;
    }
}

static gmember *add_member(sl_gc *gc, group *g, const sl_gc_join_req *r, const char *id,
                           void *waiter) {
    if (g->nm == g->capm) {
        int32_t nc = g->capm ? g->capm * 2 : 4;
        gmember **nm = realloc(g->m, (size_t)nc * sizeof *nm);
        if (!nm) return NULL;
        g->m = nm;
        g->capm = nc;
    }
    gmember *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->id = strdup(id);
    m->instance = sdup(r->instance_id);
    m->client_id = sdup(r->client_id.len < 0 ? sl_str_c("") : r->client_id);
    m->client_host = sdup(r->client_host.len < 0 ? sl_str_c("") : r->client_host);
    if (!m->id || (r->instance_id.len >= 0 && !m->instance) || !m->client_id || !m->client_host ||
        !set_protocols(m, r->protocols, r->nprotocols)) {
        free_member(m);
        return NULL;
    }
    if (g->nm == 0) {
        char *pt = sdup(r->protocol_type);
        if (!pt) {
            free_member(m);
            return NULL;
        }
        free(g->ptype);
        g->ptype = pt;
    }
    m->session_ms = r->session_timeout_ms;
    m->rebalance_ms = r->rebalance_timeout_ms;
    m->join_waiter = waiter;
    m->last_seen = now(gc);
    g->m[g->nm++] = m;
    return m;
}

static void add_member_and_rebalance(sl_gc *gc, group *g, const sl_gc_join_req *r, const char *id,
                                     void *waiter) {
    if (!add_member(gc, g, r, id, waiter)) {
        answer_join_error(gc, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE, SL_STR_NULL);
        return;
    }
    if (g->state == SL_GS_PREPARING) g->new_member_added = true;
    maybe_prepare_rebalance(gc, g);
    try_complete_join(gc, g);
}

static void update_member(sl_gc *gc, gmember *m, const sl_gc_join_req *r, void *waiter) {
    set_protocols(m, r->protocols, r->nprotocols); /* on OOM the old protocols stay */
    m->session_ms = r->session_timeout_ms;
    m->rebalance_ms = r->rebalance_timeout_ms;
    if (m->join_waiter && m->join_waiter != waiter)
        answer_join_error(gc, m->join_waiter, SL_KAFKA_REBALANCE_IN_PROGRESS, sl_str_c(m->id));
    m->join_waiter = waiter;
    m->last_seen = now(gc);
}

static void update_member_and_rebalance(sl_gc *gc, group *g, gmember *m, const sl_gc_join_req *r,
                                        void *waiter) {
    update_member(gc, m, r, waiter);
    maybe_prepare_rebalance(gc, g);
    try_complete_join(gc, g);
}

/* A static member came back without its member id: it takes a new id, whatever waited under the
 * old id is fenced, and a Stable group keeps its assignment unless the protocol would change. */
static void static_rejoin(sl_gc *gc, group *g, gmember *m, const sl_gc_join_req *r,
                          const char *new_id, void *waiter) {
    char *nid = strdup(new_id);
    if (!nid) {
        answer_join_error(gc, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE, SL_STR_NULL);
        return;
    }
    if (m->join_waiter) {
        void *w = m->join_waiter;
        m->join_waiter = NULL;
        answer_join_error(gc, w, SL_KAFKA_FENCED_INSTANCE_ID, sl_str_c(m->id));
    }
    if (m->sync_waiter) {
        void *w = m->sync_waiter;
        m->sync_waiter = NULL;
        answer_sync(gc, g, w, SL_KAFKA_FENCED_INSTANCE_ID, (sl_bytes){NULL, 0});
    }
    bool was_leader = g->leader && !strcmp(g->leader, m->id);
    free(m->id);
    m->id = nid;
    if (was_leader) {
        free(g->leader);
        g->leader = strdup(nid);
    }
    update_member(gc, m, r, waiter);
    switch (g->state) {
    case SL_GS_STABLE: {
        const char *sel = select_protocol(g);
        if (sel && g->pname && !strcmp(sel, g->pname)) {
            /* The new id must survive a restart, or the member would be fenced by its own
             * instance id after it. */
            persist_meta(gc, g);
            bool leader = g->leader && !strcmp(g->leader, m->id);
            /* The leader must not reassign (the others keep theirs): v9 says so explicitly. */
            answer_join_current(gc, g, m, leader && r->supports_skip_assignment);
        } else {
            prepare_rebalance(gc, g);
        }
        break;
    }
    case SL_GS_COMPLETING:
        /* The leader may already hold the old id in its assignment: start over. */
        prepare_rebalance(gc, g);
        break;
    default: /* PreparingRebalance: the waiter is answered when the join phase ends */
        try_complete_join(gc, g);
        break;
    }
}

void sl_gc_join(sl_gc *gc, const sl_gc_join_req *r, void *waiter) {
    int16_t e = sl_gc_check_group_id(r->group_id);
    if (e) return answer_join_error(gc, waiter, e, r->member_id);
    if (r->session_timeout_ms < gc->cfg.min_session_timeout_ms ||
        r->session_timeout_ms > gc->cfg.max_session_timeout_ms)
        return answer_join_error(gc, waiter, SL_KAFKA_INVALID_SESSION_TIMEOUT, r->member_id);
    sl_gc_join_req req = *r;
    if (req.rebalance_timeout_ms <= 0) req.rebalance_timeout_ms = req.session_timeout_ms;
    group *g = find_group(gc, r->group_id);
    if (r->member_id.len <= 0) {
        bool created = false;
        if (!g) {
            if (!(g = create_group(gc, r->group_id)))
                return answer_join_error(gc, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE,
                                         SL_STR_NULL);
            created = true;
        }
        gmember *old = find_static(g, r->instance_id);
        if (!supports_protocols(g, r->protocol_type, r->protocols, r->nprotocols, old)) {
            if (created && group_is_idle(g)) remove_group(gc, g);
            return answer_join_error(gc, waiter, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL, SL_STR_NULL);
        }
        char id[256];
        new_member_id(gc, r->client_id, id, sizeof id);
        if (old) return static_rejoin(gc, g, old, &req, id, waiter);
        if (r->instance_id.len < 0 && r->require_known_member_id) {
            if (g->np == g->capp) {
                int32_t nc = g->capp ? g->capp * 2 : 4;
                gpending *np = realloc(g->pend, (size_t)nc * sizeof *np);
                if (!np)
                    return answer_join_error(gc, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE,
                                             SL_STR_NULL);
                g->pend = np;
                g->capp = nc;
            }
            char *pid = strdup(id);
            if (!pid)
                return answer_join_error(gc, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE,
                                         SL_STR_NULL);
            g->pend[g->np].id = pid;
            g->pend[g->np].deadline = now(gc) + req.session_timeout_ms;
            g->np++;
            return answer_join_error(gc, waiter, SL_KAFKA_MEMBER_ID_REQUIRED, sl_str_c(id));
        }
        return add_member_and_rebalance(gc, g, &req, id, waiter);
    }
    if (!g) return answer_join_error(gc, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, r->member_id);
    gmember *m = find_member(g, r->member_id);
    if (!supports_protocols(g, r->protocol_type, r->protocols, r->nprotocols, m))
        return answer_join_error(gc, waiter, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL, r->member_id);
    int pi = find_pending(g, r->member_id);
    if (pi >= 0) {
        char id[256];
        snprintf(id, sizeof id, "%s", g->pend[pi].id);
        remove_pending(g, pi);
        return add_member_and_rebalance(gc, g, &req, id, waiter);
    }
    if (is_fenced(g, r->member_id, r->instance_id))
        return answer_join_error(gc, waiter, SL_KAFKA_FENCED_INSTANCE_ID, r->member_id);
    if (!m || (r->instance_id.len >= 0 && !find_static(g, r->instance_id)))
        return answer_join_error(gc, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, r->member_id);
    switch (g->state) {
    case SL_GS_PREPARING:
        return update_member_and_rebalance(gc, g, m, &req, waiter);
    case SL_GS_COMPLETING:
        if (protocols_match(m, r->protocols, r->nprotocols)) {
            update_member(gc, m, &req, waiter);
            return answer_join_current(gc, g, m, false);
        }
        return update_member_and_rebalance(gc, g, m, &req, waiter);
    case SL_GS_STABLE: {
        bool leader = g->leader && !strcmp(g->leader, m->id);
        if (leader || !protocols_match(m, r->protocols, r->nprotocols))
            return update_member_and_rebalance(gc, g, m, &req, waiter);
        update_member(gc, m, &req, waiter);
        return answer_join_current(gc, g, m, false);
    }
    default:
        return answer_join_error(gc, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, r->member_id);
    }
}

void sl_gc_sync(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                sl_str instance_id, sl_str protocol_type, sl_str protocol_name,
                const sl_gc_assignment *as, int32_t nas, void *waiter) {
    static const sl_bytes none = {NULL, 0};
    if (sl_gc_check_group_id(group_id))
        return answer_sync(gc, NULL, waiter, SL_KAFKA_INVALID_GROUP_ID, none);
    group *g = find_group(gc, group_id);
    if (!g) return answer_sync(gc, NULL, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, none);
    if (is_fenced(g, member_id, instance_id))
        return answer_sync(gc, g, waiter, SL_KAFKA_FENCED_INSTANCE_ID, none);
    gmember *m = find_member(g, member_id);
    if (!m) return answer_sync(gc, g, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, none);
    if (generation != g->gen) return answer_sync(gc, g, waiter, SL_KAFKA_ILLEGAL_GENERATION, none);
    if ((protocol_type.len >= 0 && !seq(g->ptype, protocol_type)) ||
        (protocol_name.len >= 0 && !seq(g->pname, protocol_name)))
        return answer_sync(gc, g, waiter, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL, none);
    switch (g->state) {
    case SL_GS_EMPTY:
        return answer_sync(gc, g, waiter, SL_KAFKA_UNKNOWN_MEMBER_ID, none);
    case SL_GS_PREPARING:
        return answer_sync(gc, g, waiter, SL_KAFKA_REBALANCE_IN_PROGRESS, none);
    case SL_GS_COMPLETING: {
        m->last_seen = now(gc);
        m->synced = true;
        if (m->sync_waiter)
            answer_sync(gc, g, m->sync_waiter, SL_KAFKA_REBALANCE_IN_PROGRESS, none);
        m->sync_waiter = waiter;
        if (!g->leader || strcmp(g->leader, m->id)) return; /* followers wait for the leader */
        for (int32_t i = 0; i < g->nm; i++) {
            gmember *x = g->m[i];
            for (int32_t k = 0; k < nas; k++)
                if (seq(x->id, as[k].member_id)) {
                    int32_t len = as[k].assignment.len > 0 ? as[k].assignment.len : 0;
                    uint8_t *p = malloc((size_t)len + 1);
                    if (p && len) memcpy(p, as[k].assignment.p, (size_t)len);
                    free(x->assign);
                    x->assign = p;
                    x->assign_len = p ? len : 0;
                    break;
                }
        }
        set_state(gc, g, SL_GS_STABLE);
        persist_meta(gc, g); /* before the answers, so that the caller may hold them */
        for (int32_t i = 0; i < g->nm; i++)
            if (g->m[i]->sync_waiter) {
                void *w = g->m[i]->sync_waiter;
                g->m[i]->sync_waiter = NULL;
                answer_sync(gc, g, w, SL_KAFKA_NONE,
                            (sl_bytes){g->m[i]->assign, g->m[i]->assign_len});
            }
        return;
    }
    case SL_GS_STABLE:
        m->last_seen = now(gc);
        m->synced = true;
        return answer_sync(gc, g, waiter, SL_KAFKA_NONE, (sl_bytes){m->assign, m->assign_len});
    default:
        return answer_sync(gc, g, waiter, SL_KAFKA_COORDINATOR_NOT_AVAILABLE, none);
    }
}

int16_t sl_gc_heartbeat(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                        sl_str instance_id) {
    int16_t e = sl_gc_check_group_id(group_id);
    if (e) return e;
    group *g = find_group(gc, group_id);
    if (!g) return SL_KAFKA_UNKNOWN_MEMBER_ID;
    if (is_fenced(g, member_id, instance_id)) return SL_KAFKA_FENCED_INSTANCE_ID;
    gmember *m = find_member(g, member_id);
    if (!m) return SL_KAFKA_UNKNOWN_MEMBER_ID;
    if (generation != g->gen) return SL_KAFKA_ILLEGAL_GENERATION;
    switch (g->state) {
    case SL_GS_EMPTY:
        return SL_KAFKA_UNKNOWN_MEMBER_ID;
    case SL_GS_PREPARING:
        m->last_seen = now(gc);
        return SL_KAFKA_REBALANCE_IN_PROGRESS;
    case SL_GS_COMPLETING:
    case SL_GS_STABLE:
        m->last_seen = now(gc);
        return SL_KAFKA_NONE;
    default:
        return SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
}

int16_t sl_gc_leave(sl_gc *gc, sl_str group_id, sl_str member_id, sl_str instance_id) {
    int16_t e = sl_gc_check_group_id(group_id);
    if (e) return e;
    group *g = find_group(gc, group_id);
    if (!g) return SL_KAFKA_UNKNOWN_MEMBER_ID;
    if (instance_id.len >= 0) {
        gmember *m = find_static(g, instance_id);
        if (!m) return SL_KAFKA_UNKNOWN_MEMBER_ID;
        /* An empty member id (or Kafka's placeholder) is an admin removing the instance. */
        if (member_id.len > 0 && !sl_str_eqc(member_id, "UNKNOWN_MEMBER_ID") &&
            !seq(m->id, member_id))
            return SL_KAFKA_FENCED_INSTANCE_ID;
        for (int32_t i = 0; i < g->nm; i++)
            if (g->m[i] == m) remove_member_and_update(gc, g, i);
        return SL_KAFKA_NONE;
    }
    int pi = find_pending(g, member_id);
    if (pi >= 0) {
        remove_pending(g, pi);
        try_complete_join(gc, g);
        return SL_KAFKA_NONE;
    }
    for (int32_t i = 0; i < g->nm; i++)
        if (seq(g->m[i]->id, member_id)) {
            remove_member_and_update(gc, g, i);
            return SL_KAFKA_NONE;
        }
    return SL_KAFKA_UNKNOWN_MEMBER_ID;
}

/* ---- offsets ---- */

static goff *find_off(group *g, sl_str topic, int32_t part) {
    for (int32_t i = 0; i < g->noff; i++)
        if (g->off[i].part == part && seq(g->off[i].topic, topic)) return &g->off[i];
    return NULL;
}

static sl_err put_off(group *g, sl_str topic, int32_t part, const sl_gc_offset *v) {
    goff *o = find_off(g, topic, part);
    char *meta = NULL;
    if (v->metadata.len >= 0 && !(meta = sdup(v->metadata))) return SL_ENOMEM;
    if (!o) {
        if (g->noff == g->capoff) {
            int32_t nc = g->capoff ? g->capoff * 2 : 8;
            goff *no = realloc(g->off, (size_t)nc * sizeof *no);
            if (!no) {
                free(meta);
                return SL_ENOMEM;
            }
            g->off = no;
            g->capoff = nc;
        }
        o = &g->off[g->noff];
        memset(o, 0, sizeof *o);
        if (!(o->topic = sdup(topic))) {
            free(meta);
            return SL_ENOMEM;
        }
        o->part = part;
        g->noff++;
    }
    free(o->meta);
    o->meta = meta;
    o->meta_len = meta ? v->metadata.len : -1;
    o->offset = v->offset;
    o->epoch = v->leader_epoch;
    o->commit_ms = v->commit_ms;
    return SL_OK;
}

static void del_off_at(sl_gc *gc, group *g, int32_t i, bool persist) {
    goff o = g->off[i];
    g->off[i] = g->off[--g->noff];
    if (persist && gc->env.persist)
        gc->env.persist(gc->env.ctx, sl_str_c(g->id), sl_str_c(o.topic), o.part, NULL);
    free(o.topic);
    free(o.meta);
}

int16_t sl_gc_commit_check(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                           sl_str instance_id) {
    int16_t e = sl_gc_check_group_id(group_id);
    if (e) return e;
    group *g = find_group(gc, group_id);
    if (!g) {
        /* Only a group that does not use the coordinator for membership may appear this way. */
        if (generation >= 0) return SL_KAFKA_ILLEGAL_GENERATION;
        return create_group(gc, group_id) ? SL_KAFKA_NONE : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    if (generation >= 0 || member_id.len > 0 || instance_id.len >= 0) {
        if (is_fenced(g, member_id, instance_id)) return SL_KAFKA_FENCED_INSTANCE_ID;
        gmember *m = find_member(g, member_id);
        if (!m) return SL_KAFKA_UNKNOWN_MEMBER_ID;
        if (generation != g->gen) return SL_KAFKA_ILLEGAL_GENERATION;
        if (g->state == SL_GS_COMPLETING) return SL_KAFKA_REBALANCE_IN_PROGRESS;
        m->last_seen = now(gc);
        return SL_KAFKA_NONE;
    }
    /* Members only, once the group has any. */
    return g->state == SL_GS_EMPTY ? SL_KAFKA_NONE : SL_KAFKA_UNKNOWN_MEMBER_ID;
}

sl_err sl_gc_offset_commit(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                           int64_t offset, int32_t leader_epoch, sl_str metadata) {
    group *g = find_group(gc, group_id);
    if (!g) return SL_ESTATE;
    sl_gc_offset v = {offset, leader_epoch, metadata, now(gc)};
    sl_err e = put_off(g, topic, partition, &v);
    if (e) return e;
    if (gc->env.persist) gc->env.persist(gc->env.ctx, group_id, topic, partition, &v);
    return SL_OK;
}

sl_err sl_gc_offset_load(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                         const sl_gc_offset *val) {
    group *g = find_group(gc, group_id);
    if (!g && !(g = create_group(gc, group_id))) return SL_ENOMEM;
    return put_off(g, topic, partition, val);
}

void sl_gc_offset_unload(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition) {
    group *g = find_group(gc, group_id);
    if (!g) return;
    for (int32_t i = 0; i < g->noff; i++)
        if (g->off[i].part == partition && seq(g->off[i].topic, topic)) {
            del_off_at(gc, g, i, false);
            break;
        }
    /* A group with a generation has a record of its own; its tombstone removes it. */
    if (group_is_idle(g) && g->gen == 0) remove_group(gc, g);
}

bool sl_gc_offset_get(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                      sl_gc_offset *out) {
    group *g = find_group(gc, group_id);
    goff *o = g ? find_off(g, topic, partition) : NULL;
    if (!o) return false;
    *out = (sl_gc_offset){o->offset, o->epoch, meta_str(o), o->commit_ms};
    return true;
}

bool sl_gc_offset_at(sl_gc *gc, sl_str group_id, int32_t i, sl_str *topic, int32_t *partition,
                     sl_gc_offset *out) {
    group *g = find_group(gc, group_id);
    if (!g || i < 0 || i >= g->noff) return false;
    goff *o = &g->off[i];
    *topic = sl_str_c(o->topic);
    *partition = o->part;
    *out = (sl_gc_offset){o->offset, o->epoch, meta_str(o), o->commit_ms};
    return true;
}

int32_t sl_gc_offset_count(sl_gc *gc, sl_str group_id) {
    group *g = find_group(gc, group_id);
    return g ? g->noff : 0;
}

/* Topics the members subscribe to, from the consumer protocol's subscription (version, then an
 * array of topic names; later fields are not needed). Returns false when not known. */
static bool subscribed(group *g, sl_str topic, bool *known) {
    *known = false;
    if (!g->ptype || strcmp(g->ptype, "consumer") || !g->pname) return false;
    bool found = false;
    for (int32_t i = 0; i < g->nm; i++) {
        const gproto *p = member_proto(g->m[i], g->pname);
        if (!p) return false;
        sl_rd r = sl_rd_init(p->meta, (size_t)p->len);
        (void)sl_rd_i16(&r);
        int32_t n = sl_rd_count(&r, 2);
        for (int32_t k = 0; k < n && !r.err; k++) {
            sl_str t = sl_rd_string(&r);
            if (!r.err && sl_str_eq(t, topic)) found = true;
        }
        if (r.err) return false;
    }
    *known = true;
    return found;
}

int16_t sl_gc_offset_delete_check(sl_gc *gc, sl_str group_id) {
    int16_t e = sl_gc_check_group_id(group_id);
    if (e) return e;
    group *g = find_group(gc, group_id);
    if (!g || g->state == SL_GS_DEAD) return SL_KAFKA_GROUP_ID_NOT_FOUND;
    if (g->state == SL_GS_EMPTY) return SL_KAFKA_NONE;
    bool known;
    subscribed(g, sl_str_c(""), &known);
    return known ? SL_KAFKA_NONE : SL_KAFKA_NON_EMPTY_GROUP;
}

int16_t sl_gc_offset_delete(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition) {
    group *g = find_group(gc, group_id);
    if (!g) return SL_KAFKA_GROUP_ID_NOT_FOUND;
    bool known;
    if (g->state != SL_GS_EMPTY && subscribed(g, topic, &known))
        return SL_KAFKA_GROUP_SUBSCRIBED_TO_TOPIC;
    for (int32_t i = 0; i < g->noff; i++)
        if (g->off[i].part == partition && seq(g->off[i].topic, topic)) {
            del_off_at(gc, g, i, true);
            break;
        }
    return SL_KAFKA_NONE;
}

int16_t sl_gc_delete_group(sl_gc *gc, sl_str group_id) {
    int16_t e = sl_gc_check_group_id(group_id);
    if (e) return e;
    group *g = find_group(gc, group_id);
    if (!g || g->state == SL_GS_DEAD) return SL_KAFKA_GROUP_ID_NOT_FOUND;
    if (g->state != SL_GS_EMPTY || g->nm) return SL_KAFKA_NON_EMPTY_GROUP;
    while (g->noff) del_off_at(gc, g, g->noff - 1, true);
    persist_tombstone(gc, g);
    remove_group(gc, g);
    return SL_KAFKA_NONE;
}

static void expire_offsets(sl_gc *gc, int64_t t) {
    int64_t ret = gc->cfg.offsets_retention_ms;
    for (group *g = gc->groups, *next; g; g = next) {
        next = g->next;
        for (int32_t i = 0; i < g->noff;) {
            goff *o = &g->off[i];
            bool expire = false;
            if (g->state == SL_GS_EMPTY) {
                /* Counted from the later of the commit and the group becoming empty, so neither
                 * a recent commit nor a recently active group loses its offsets. */
                int64_t base = o->commit_ms > g->state_since ? o->commit_ms : g->state_since;
                expire = base + ret <= t;
            } else if (g->state == SL_GS_STABLE) {
                bool known;
                bool sub = subscribed(g, sl_str_c(o->topic), &known);
                expire = known && !sub && o->commit_ms + ret <= t;
            }
            if (expire)
                del_off_at(gc, g, i, true);
            else
                i++;
        }
        if (group_is_idle(g)) {
            persist_tombstone(gc, g);
            remove_group(gc, g);
        }
    }
}

/* ---- time ---- */

void sl_gc_tick(sl_gc *gc) {
    int64_t t = now(gc);
    for (group *g = gc->groups, *next; g; g = next) {
        next = g->next;
        for (int32_t i = 0; i < g->np;) {
            if (g->pend[i].deadline <= t) {
                remove_pending(g, i);
                try_complete_join(gc, g);
            } else {
                i++;
            }
        }
        /* Session expiry: members waiting for a join or sync answer are alive by definition;
         * the phase deadlines below bound those waits. */
        for (int32_t i = 0; i < g->nm;) {
            gmember *m = g->m[i];
            if (!m->join_waiter && !m->sync_waiter && m->last_seen + m->session_ms <= t)
                remove_member_and_update(gc, g, i);
            else
                i++;
        }
        if (g->state == SL_GS_PREPARING && g->join_deadline <= t) {
            if (g->initial_delay && g->new_member_added && t < g->delay_limit) {
                g->new_member_added = false;
                int64_t d = t + gc->cfg.initial_rebalance_delay_ms;
                g->join_deadline = d < g->delay_limit ? d : g->delay_limit;
            } else {
                complete_join(gc, g);
            }
        }
        if ((g->state == SL_GS_COMPLETING || g->state == SL_GS_STABLE) && g->sync_deadline <= t) {
            bool removed = false;
            for (int32_t i = 0; i < g->nm;) {
                if (!g->m[i]->synced) {
                    remove_member_at(gc, g, i);
                    removed = true;
                } else {
                    i++;
                }
            }
            g->sync_deadline = INT64_MAX;
            if (removed) prepare_rebalance(gc, g);
        }
    }
    if (t >= gc->next_expiry) {
        expire_offsets(gc, t);
        gc->next_expiry = t + gc->cfg.offsets_retention_check_interval_ms;
    }
}

int64_t sl_gc_next_deadline(sl_gc *gc) {
    int64_t d = gc->next_expiry;
    for (group *g = gc->groups; g; g = g->next) {
        for (int32_t i = 0; i < g->np; i++)
            if (g->pend[i].deadline < d) d = g->pend[i].deadline;
        for (int32_t i = 0; i < g->nm; i++) {
            gmember *m = g->m[i];
            if (!m->join_waiter && !m->sync_waiter && m->last_seen + m->session_ms < d)
                d = m->last_seen + m->session_ms;
        }
        if (g->state == SL_GS_PREPARING && g->join_deadline < d) d = g->join_deadline;
        if (g->state == SL_GS_COMPLETING || g->state == SL_GS_STABLE) {
            bool pending = false;
            for (int32_t i = 0; i < g->nm && !pending; i++) pending = !g->m[i]->synced;
            if (pending && g->sync_deadline < d) d = g->sync_deadline;
        }
    }
    return d;
}

/* ---- lifecycle and views ---- */

sl_gc *sl_gc_new(const sl_gc_env *env, const sl_gc_config *cfg) {
    sl_gc *gc = calloc(1, sizeof *gc);
    if (!gc) return NULL;
    gc->env = *env;
    gc->cfg = *cfg;
    int64_t t = now(gc);
    gc->next_expiry = t + cfg->offsets_retention_check_interval_ms;
    gc->rnd = (uint64_t)t * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)gc ^ 0x5DEECE66DULL;
    if (!gc->rnd) gc->rnd = 1;
    return gc;
}

void sl_gc_free(sl_gc *gc) {
    if (!gc) return;
    while (gc->groups) {
        group *g = gc->groups;
        gc->groups = g->next;
        free_group(g);
    }
    free(gc);
}

void sl_gc_abort_waiters(sl_gc *gc, int16_t error) {
    for (group *g = gc->groups; g; g = g->next)
        for (int32_t i = 0; i < g->nm; i++) {
            gmember *m = g->m[i];
            if (m->join_waiter) {
                void *w = m->join_waiter;
                m->join_waiter = NULL;
                answer_join_error(gc, w, error, sl_str_c(m->id));
            }
            if (m->sync_waiter) {
                void *w = m->sync_waiter;
                m->sync_waiter = NULL;
                answer_sync(gc, g, w, error, (sl_bytes){NULL, 0});
            }
        }
}

typedef enum { V_LIST, V_DESCRIBE, V_RECORD } view_kind;

static void visit(group *g, view_kind kind, void (*fn)(void *, const sl_gc_group_view *),
                  void *ctx) {
    sl_gc_member_view *mv = NULL;
    sl_gc_protocol *pv = NULL;
    int32_t n = 0;
    bool stable = g->state == SL_GS_STABLE;
    if (kind != V_LIST && g->nm) {
        mv = calloc((size_t)g->nm, sizeof *mv);
        if (kind == V_RECORD) {
            int32_t np = 0;
            for (int32_t i = 0; i < g->nm; i++) np += g->m[i]->nprotos;
            pv = calloc((size_t)(np ? np : 1), sizeof *pv);
            if (!pv) {
                free(mv);
                mv = NULL;
            }
        }
        int32_t pi = 0;
        if (mv)
            for (int32_t i = 0; i < g->nm; i++) {
                gmember *m = g->m[i];
                const gproto *p = stable ? member_proto(m, g->pname) : NULL;
                mv[n].member_id = sl_str_c(m->id);
                mv[n].instance_id = cstr(m->instance);
                mv[n].client_id = sl_str_c(m->client_id);
                mv[n].client_host = sl_str_c(m->client_host);
                mv[n].metadata =
                    p ? (sl_bytes){p->meta, p->len} : (sl_bytes){(const uint8_t *)"", 0};
                mv[n].assignment = stable && m->assign ? (sl_bytes){m->assign, m->assign_len}
                                                       : (sl_bytes){(const uint8_t *)"", 0};
                mv[n].session_timeout_ms = m->session_ms;
                mv[n].rebalance_timeout_ms = m->rebalance_ms;
                if (pv) {
                    mv[n].protocols = &pv[pi];
                    mv[n].nprotocols = m->nprotos;
                    for (int32_t k = 0; k < m->nprotos; k++, pi++)
                        pv[pi] = (sl_gc_protocol){sl_str_c(m->protos[k].name),
                                                  {m->protos[k].meta, m->protos[k].len}};
                }
                n++;
            }
    }
    /* Kafka names the protocol only once the group is Stable */
    bool named = stable && g->pname;
    sl_gc_group_view v = {
        .group_id = sl_str_c(g->id),
        .protocol_type = kind == V_RECORD ? cstr(g->ptype) : sl_str_c(g->ptype ? g->ptype : ""),
        .protocol_name = kind == V_RECORD ? (named ? sl_str_c(g->pname) : SL_STR_NULL)
                                          : sl_str_c(named ? g->pname : ""),
        .state = g->state,
        .generation = g->gen,
        .leader = kind == V_RECORD ? cstr(g->leader) : sl_str_c(g->leader ? g->leader : ""),
        .members = mv,
        .nmembers = n,
        .state_ms = g->state_since};
    fn(ctx, &v);
    free(pv);
    free(mv);
}

void sl_gc_list(sl_gc *gc, void (*fn)(void *ctx, const sl_gc_group_view *g), void *ctx) {
    for (group *g = gc->groups; g; g = g->next) visit(g, V_LIST, fn, ctx);
}

bool sl_gc_describe(sl_gc *gc, sl_str group_id, void (*fn)(void *ctx, const sl_gc_group_view *g),
                    void *ctx) {
    group *g = find_group(gc, group_id);
    if (!g) return false;
    visit(g, V_DESCRIBE, fn, ctx);
    return true;
}

int sl_gc_group_count(sl_gc *gc) { return gc->ngroups; }

/* ---- group records ---- */

/* Only completed generations are worth a record: a restart resumes from the last one. */
static bool has_record(const group *g) {
    return g->gen > 0 && (g->state == SL_GS_STABLE || g->state == SL_GS_EMPTY);
}

typedef struct persist_ctx {
    sl_gc *gc;
} persist_ctx;

static void persist_view(void *ctx, const sl_gc_group_view *v) {
    sl_gc *gc = ((persist_ctx *)ctx)->gc;
    gc->env.persist_group(gc->env.ctx, v->group_id, v);
}

static void persist_meta(sl_gc *gc, group *g) {
    if (!gc->env.persist_group || !has_record(g)) return;
    persist_ctx c = {gc};
    visit(g, V_RECORD, persist_view, &c);
}

static void persist_tombstone(sl_gc *gc, group *g) {
    /* Groups that never had a generation never had a record. */
    if (gc->env.persist_group && g->gen > 0)
        gc->env.persist_group(gc->env.ctx, sl_str_c(g->id), NULL);
}

bool sl_gc_group_record(sl_gc *gc, sl_str group_id,
                        void (*fn)(void *ctx, const sl_gc_group_view *g), void *ctx) {
    group *g = find_group(gc, group_id);
    if (!g || !has_record(g)) return false;
    visit(g, V_RECORD, fn, ctx);
    return true;
}

static void clear_membership(group *g) {
    for (int32_t i = 0; i < g->nm; i++) free_member(g->m[i]);
    g->nm = 0;
    free(g->ptype);
    free(g->pname);
    free(g->leader);
    g->ptype = g->pname = g->leader = NULL;
    g->gen = 0;
    g->state = SL_GS_EMPTY;
}

static gmember *load_member(sl_gc *gc, const sl_gc_member_view *v) {
    gmember *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->id = sdup(v->member_id);
    m->instance = sdup(v->instance_id);
    m->client_id = sdup(v->client_id.len < 0 ? sl_str_c("") : v->client_id);
    m->client_host = sdup(v->client_host.len < 0 ? sl_str_c("") : v->client_host);
    int32_t alen = v->assignment.len > 0 ? v->assignment.len : 0;
    m->assign = malloc((size_t)alen + 1);
    if (!m->id || (v->instance_id.len >= 0 && !m->instance) || !m->client_id || !m->client_host ||
        !m->assign || !set_protocols(m, v->protocols, v->nprotocols)) {
        free_member(m);
        return NULL;
    }
    if (alen) memcpy(m->assign, v->assignment.p, (size_t)alen);
    m->assign_len = alen;
    m->session_ms = v->session_timeout_ms;
    m->rebalance_ms = v->rebalance_timeout_ms;
    /* It synced in the generation the record closed; its session restarts with the
     * coordinator, as a failed-over Kafka coordinator does. */
    m->synced = true;
    m->last_seen = now(gc);
    return m;
}

sl_err sl_gc_group_load(sl_gc *gc, const sl_gc_group_view *v) {
    if (v->state != SL_GS_STABLE && v->state != SL_GS_EMPTY) return SL_EINVAL;
    if (sl_gc_check_group_id(v->group_id) || v->nmembers < 0) return SL_EINVAL;
    if (v->state == SL_GS_STABLE &&
        (v->nmembers == 0 || v->protocol_name.len < 0 || v->leader.len < 0))
        return SL_EINVAL;
    gmember **ms = calloc((size_t)(v->nmembers ? v->nmembers : 1), sizeof *ms);
    char *pt = sdup(v->protocol_type), *pn = sdup(v->protocol_name), *ld = sdup(v->leader);
    bool ok = ms && (v->protocol_type.len < 0 || pt) && (v->protocol_name.len < 0 || pn) &&
              (v->leader.len < 0 || ld);
    int32_t n = 0;
    for (; ok && n < v->nmembers; n++)
        if (!(ms[n] = load_member(gc, &v->members[n]))) ok = false;
    group *g = ok ? find_group(gc, v->group_id) : NULL;
    if (ok && !g && !(g = create_group(gc, v->group_id))) ok = false;
    if (!ok) {
        for (int32_t i = 0; i < n; i++) free_member(ms[i]);
        free(ms);
        free(pt);
        free(pn);
        free(ld);
        return SL_ENOMEM;
    }
    clear_membership(g);
    free(g->m);
    g->m = ms;
    g->capm = v->nmembers ? v->nmembers : 1;
    g->nm = v->nmembers;
    g->ptype = pt;
    g->pname = pn;
    g->leader = ld;
    g->gen = v->generation;
    g->state = v->state;
    /* Offsets of an Empty group expire counting from when it became empty, restart or not. */
    g->state_since = v->state_ms;
    g->sync_deadline = INT64_MAX;
    g->initial_delay = g->new_member_added = false;
    return SL_OK;
}

void sl_gc_group_unload(sl_gc *gc, sl_str group_id) {
    group *g = find_group(gc, group_id);
    if (!g) return;
    clear_membership(g);
    if (group_is_idle(g)) remove_group(gc, g);
}
