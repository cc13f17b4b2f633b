/* The broker's side of `sluice keys ...`: the control socket (ctl/sl_ctl.h) and the commands it
 * serves (docs/keys-cli.md):
 *   status                 key service state joined with every partition's segments
 *   rotate | rewrap        new KEK version | every topic key re-wrapped under the current one
 *   retire <version>       destroy an old KEK version (the key service refuses one in use)
 *   shred <topic> <topic>  destroy the topic's keys (the name twice: a typo cannot shred)
 *   reencrypt [<topic>] [+new-topic-key]
 *                          rewrite every segment that is plaintext or under an older topic-key
 *                          version, online, one segment at a time; with +new-topic-key each
 *                          topic first gets a new topic-key version (so every segment is
 *                          rewritten)
 * One lifecycle command runs at a time (status always answers). Each command is audited as an
 * SL_EV_ADMIN event naming the peer's uid and pid; the key service adds its SL_EV_KEY events.
 *
 * Re-encryption: prepare and finish run on the loop, the file work (sl_log_reenc_run) on a
 * thread of this module, one segment at a time, so the loop serves clients between segments.
 * It is resumable by construction: every segment is replaced whole (temp file + rename), and a
 * rerun picks the segments still pending. A peer that goes away stops it after the segment in
 * hand. */
#ifndef SL_BROKER_KEYOPS_H
#define SL_BROKER_KEYOPS_H
#include <stddef.h>

#include "base/sl_err.h"

struct sl_broker;
struct sl_keysvc;
typedef struct sl_keyops sl_keyops;

/* Creates the control socket (sl_ctl_socket_path of the broker's config) on the broker's loop.
 * `b` and `ks` are borrowed and must outlive the result; `ks` may be NULL (encryption at rest
 * off: status reports plaintext segments, key commands answer an error). Caller owns *out. */
sl_err sl_keyops_new(struct sl_broker *b, struct sl_keysvc *ks, sl_keyops **out, char *err,
                     size_t errlen);
/* Closes the socket, lets a segment being re-encrypted complete (and applies it), releases
 * every topic held. Call before the topics and the key service close. NULL-safe. */
void sl_keyops_free(sl_keyops *k);
/* Routes the commands of field protection (sl_fprot_ctl; `f` borrowed, may be NULL: they answer
 * that it is off). Set once, after sl_keyops_new. */
struct sl_fprot;
void sl_keyops_set_fprot(sl_keyops *k, struct sl_fprot *f);

#endif
