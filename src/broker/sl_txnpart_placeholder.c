/* Stand-in for sl_txnpart.c (per-partition transaction state, another branch) so the
 * coordinator's branch links: weak definitions of sl_txnpart.h that the real file replaces.
 * Markers are not written, the LSO is the log end, nothing is ever open or aborted.
 * TO BE DELETED when sl_txnpart.c is merged. */
#include "broker/sl_txnpart.h"

#include "broker/sl_topics.h"
#include "storage/sl_log.h"

__attribute__((weak)) sl_err sl_txnpart_open(struct sl_partition *p) {
    (void)p;
    return SL_OK;
}

__attribute__((weak)) void sl_txnpart_free(sl_txnpart *t) { (void)t; }

__attribute__((weak)) void sl_txnpart_on_append(struct sl_partition *p, int64_t pid, int16_t epoch,
                                                int64_t base_offset, int64_t last_offset) {
    (void)p, (void)pid, (void)epoch, (void)base_offset, (void)last_offset;
}

__attribute__((weak)) bool sl_txnpart_is_open(const struct sl_partition *p, int64_t pid) {
    (void)p, (void)pid;
    return false;
}

__attribute__((weak)) sl_err sl_txnpart_write_marker(struct sl_partition *p, int64_t pid,
                                                     int16_t epoch, bool commit,
                                                     int32_t coordinator_epoch) {
    (void)p, (void)pid, (void)epoch, (void)commit, (void)coordinator_epoch;
    return SL_OK;
}

__attribute__((weak)) int64_t sl_txnpart_lso(const struct sl_partition *p) {
    return p && p->log ? sl_log_end_offset(p->log) : 0;
}

__attribute__((weak)) int sl_txnpart_aborted(const struct sl_partition *p, int64_t from, int64_t to,
                                             sl_arena *a, sl_txn_aborted **out) {
    (void)p, (void)from, (void)to, (void)a;
    *out = NULL;
    return 0;
}
