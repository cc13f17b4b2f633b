/* The field-protection engine (docs/field-protection.md): applies one topic's policy block to
 * records on the way in (protect) and, per principal, shows encrypted fields on the way out
 * (reveal). Record-level functions serve libsluice and the `sluice protect`/`reveal` filters;
 * set-level functions serve the broker's protect stage (the sl_xform slots): they take a
 * partition's record set, rebuild only the batches whose records changed and leave every other
 * byte alone.
 *
 * Protect, per record, in this order:
 *   1. subject: when the block names one, its value (clear, before any rule) gives the subject
 *      id = sl_fc_token_mac under the subject key's current version; a record without a subject
 *      value gets no subject key (its encrypted fields use the field key alone)
 *   2. every rule, in file order, on the record's value, key and headers; a JSON target whose
 *      part is not JSON, or a value of a type the action cannot take (mask/token of an object
 *      or array), is "cannot apply": the record is refused (SL_EUNPROTECTABLE) unless the block
 *      says on-error pass (then that rule is skipped for that record)
 *   3. a value already protected is left as it is: an encrypt target holding a ciphertext string
 *      that decrypts under the key and subject it names (so libsluice-protected records pass the
 *      broker unchanged), a token target holding a token string of the rule's key
 *
 *   mask / redact / token   one-way, as the rule says
 *   encrypt                 sl_fc_encrypt of the value's type byte + contents under the field
 *                           key's current version (and the subject's key)
 *
 * Reveal, per record, for the views a principal has (sl_grants_view per encrypt rule):
 *   SL_VIEW_REVEAL  the clear value, its JSON type restored
 *   SL_VIEW_MASK    the clear value masked with the rule's view-mask (strings; other types: the
 *                   stored form)
 *   SL_VIEW_TOKEN   the token of the clear value under the rule's view-token key
 *   SL_VIEW_STORED  untouched
 * A value that does not decrypt (forgotten subject, shredded key, tampered) stays as stored and
 * is counted as failed; a key not loaded yet makes the whole set fail with SL_EKEY_UNAVAILABLE
 * (the consumer retries) rather than hand out ciphertext it would commit past. */
#ifndef SL_PROTECT_PROTECT_H
#define SL_PROTECT_PROTECT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_err.h"
#include "protect/sl_fkeys.h"
#include "protect/sl_grants.h"
#include "protect/sl_policy.h"
#include "proto/sl_records.h"

/* One record's protectable parts. Inputs are borrowed; outputs point into the arena or at the
 * inputs (unchanged parts). A removed header is dropped from the array (nheaders shrinks); a
 * redacted whole key or value becomes null (len -1). */
typedef struct sl_prec {
    sl_bytes key, value;    /* len -1: null */
    sl_rec_header *headers; /* writable array (the caller's; entries replaced in place) */
    int32_t nheaders;
} sl_prec;

/* What protect and reveal did, for events and metrics. */
typedef struct sl_pcount {
    int64_t records;  /* records looked at */
    int64_t changed;  /* records rewritten */
    int64_t fields;   /* values protected (protect) or shown in a view (reveal) */
    int64_t failed;   /* reveal: values left stored because they did not decrypt */
    int64_t subjects; /* protect: subject keys created */
} sl_pcount;

/* Per encrypt rule of a block, what reveal did (the broker's audit events are one per rule
 * with a non-zero count): index = rule index in the block. */
typedef struct sl_prule_count {
    int64_t shown;  /* values shown in their view */
    int64_t failed; /* values that did not decrypt */
} sl_prule_count;

/* Protects one record in place under block `t` (keys from `k`; may be NULL when the block has no
 * keyed rule). `why` gets a one-line reason on SL_EUNPROTECTABLE ("value is not JSON",
 * "value.card_number is an object": target text and type only, never data). Errors:
 * SL_EUNPROTECTABLE, sl_fkeys_get's, SL_ENOMEM. */
sl_err sl_protect_record(const sl_ptopic *t, sl_fkeys *k, sl_arena *a, sl_prec *rec, sl_pcount *cnt,
                         char *why, size_t whylen);

/* Reveals one record in place: views[i] is the view for rule i of `t` (SL_VIEW_STORED for
 * every rule that is not encrypt). rc[i] (may be NULL) accumulates per rule. Errors:
 * SL_EKEY_UNAVAILABLE (retry), SL_ENOMEM; a value that fails to decrypt is not an error. */
sl_err sl_reveal_record(const sl_ptopic *t, const sl_view *views, sl_fkeys *k, sl_arena *a,
                        sl_prec *rec, sl_pcount *cnt, sl_prule_count *rc);

/* Protects a produce record set (whole, validated magic-2 batches) under block `t`: batches
 * whose records change are decompressed (at most `max_inflate` bytes), rewritten and rebuilt
 * with the same codec, attributes, base offset, partition leader epoch, last offset delta,
 * timestamps, producer id, epoch and base sequence, then resealed (CRC). Control batches are
 * left alone. *data and *len are replaced (in `a`) and *rewritten set when anything changed.
 * Subject keys created are made durable (sl_fkeys_sync) before returning. Errors as
 * sl_protect_record's (the first record that fails fails the set); SL_ETOOLARGE (decompressed
 * size). */
sl_err sl_protect_set(const sl_ptopic *t, sl_fkeys *k, sl_arena *a, size_t max_inflate,
                      uint8_t **data, size_t *len, bool *rewritten, sl_pcount *cnt, char *why,
                      size_t whylen);

/* Reveals a fetched record set (stored batches, the last possibly cut short: left as is) for
 * the views given, rebuilding only batches with a value shown. Control and aborted-looking
 * batches are left alone. Errors as sl_reveal_record's; SL_ECORRUPT for a stored batch that
 * does not parse (it is left as is and the error reported). */
sl_err sl_reveal_set(const sl_ptopic *t, const sl_view *views, sl_fkeys *k, sl_arena *a,
                     size_t max_inflate, uint8_t **data, size_t *len, bool *rewritten,
                     sl_pcount *cnt, sl_prule_count *rc);

/* The subject id of `subject` (a clear id as an operator types it, e.g. "C-1001" or "42") under
 * the token key `key` at `version`: what forget destroys. */
sl_err sl_protect_subject_id(sl_fkeys *k, const char *key, uint32_t version, const uint8_t *subject,
                             size_t n, uint8_t id[16]);

#endif
