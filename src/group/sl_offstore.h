/* Durable committed offsets and group metadata: an internal partition log
 * `<log.dirs>/__sluice_groups-0` (not a topic: it never appears in Metadata) holding one record
 * per offset change, key = (group, topic, partition), value = offset data or null for a
 * deletion, and one record per completed generation / emptied group, key = group, value = the
 * group's members and generation or null for a deleted group. Replayed into the coordinator at
 * start (last record per key wins). Its segments roll at offsets.topic.segment.bytes and the log
 * cleaner (src/storage/sl_cleaner.h, driven by src/broker/sl_compactor.c as an internal log)
 * compacts the closed ones like a compacted topic's: every record it keeps is the last of its key,
 * a tombstone goes only after delete retention, so a replay after a clean restores the same state.
 *
 * Records are buffered with sl_offstore_add and appended as one record batch by
 * sl_offstore_flush; they are durable once a sync of sl_offstore_log() (sl_flusher_request or
 * sl_log_sync) completes. Loop thread only. */
#ifndef SL_GROUP_OFFSTORE_H
#define SL_GROUP_OFFSTORE_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "group/sl_group.h"
#include "storage/sl_log.h"

typedef struct sl_offstore sl_offstore;

#define SL_OFFSTORE_DIR "__sluice_groups-0"

/* Kafka's offsets.topic.segment.bytes default. */
#define SL_OFFSTORE_SEGMENT_BYTES 104857600

/* Opens (creating) the store under `log_dirs`, recovering an interrupted compaction of the
 * brokers before the cleaner (`.old` / `.compact` directories next to it), and loads every live
 * offset into `gc` with sl_gc_offset_load. Caller owns *out. */
sl_err sl_offstore_open(const char *log_dirs, sl_gc *gc, sl_offstore **out, char *err,
                        size_t err_len);
/* The same with encryption at rest when `ks` is not NULL (borrowed; must outlive the store):
 * the log (and what the cleaner rewrites of it) is sealed under the system key (topic id all
 * zero, partition 0), older plaintext records below the migration mark stay readable. Segments
 * roll at `segment_bytes` (<= 0: SL_OFFSTORE_SEGMENT_BYTES). */
struct sl_keysvc;
sl_err sl_offstore_open_keys(const char *log_dirs, struct sl_keysvc *ks, int64_t segment_bytes,
                             sl_gc *gc, sl_offstore **out, char *err, size_t err_len);
/* Syncs and closes. */
void sl_offstore_close(sl_offstore *s);
/* Buffers one change (val NULL: deletion). Strings are copied. */
sl_err sl_offstore_add(sl_offstore *s, sl_str group, sl_str topic, int32_t partition,
                       const sl_gc_offset *val);
/* Appends what is buffered as one batch (nothing to do: SL_OK). The buffer is emptied either
 * way; on failure those changes are not stored. */
sl_err sl_offstore_flush(sl_offstore *s);
/* Buffers one group record (g NULL: tombstone), as sl_offstore_add. */
sl_err sl_offstore_add_group(sl_offstore *s, sl_str group, const sl_gc_group_view *g);
/* The log (owned by the store; the cleaner borrows it until the store closes). */
sl_log *sl_offstore_log(sl_offstore *s);
/* Its directory (the cleaner's checkpoint lives there). */
const char *sl_offstore_dir(const sl_offstore *s);
/* Records replayed at open and records live afterwards (offsets and group records; logs and
 * tests). */
void sl_offstore_stats(const sl_offstore *s, int64_t *replayed, int64_t *live);

#endif
