#include "sl_config.h"

#include <openssl/evp.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sl_file.h"
#include "sl_logging.h"

/* TLS 1.2 suites offered by default: ECDHE only (forward secrecy) and AEAD only (no CBC, whose
 * MAC-then-encrypt gave Lucky13/POODLE). TLS 1.3 suites are all AEAD and keep OpenSSL's list. */
#define SL_DEFAULT_TLS12_SUITES                                                                    \
    "ECDHE-ECDSA-AES256-GCM-SHA384,ECDHE-RSA-AES256-GCM-SHA384,ECDHE-ECDSA-CHACHA20-POLY1305,"     \
    "ECDHE-RSA-CHACHA20-POLY1305,ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256"

typedef enum { T_INT, T_LONG, T_BOOL, T_STR, T_LIST } key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t off;
    int64_t min, max;
    const char *def; /* default as text; NULL: no value */
    const char *doc;
} key_def;

#define OFF(f) offsetof(sl_config, f)
#define I64MAX INT64_MAX
static const key_def k_keys[] = {
    {"node.id", T_INT, OFF(node_id), 0, INT32_MAX, "1", "This broker's id in Metadata answers."},
    {"broker.id", T_INT, OFF(node_id), 0, INT32_MAX, NULL, "Alias of node.id."},
    {"listeners", T_LIST, OFF(listeners), 0, 0, "SASL_SSL://127.0.0.1:9092",
     "Comma-separated NAME://host:port listeners the broker binds."},
    {"advertised.listeners", T_LIST, OFF(advertised_listeners), 0, 0, NULL,
     "Addresses given to clients in Metadata; defaults to listeners."},
    {"listener.security.protocol.map", T_LIST, OFF(listener_security_protocol_map), 0, 0,
     "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
     "NAME:PROTOCOL pairs giving each listener's security protocol."},
    {"log.dirs", T_STR, OFF(log_dirs), 0, 0, "./sluice-data",
     "Directory holding partition logs and broker metadata (one directory)."},
    {"log.dir", T_STR, OFF(log_dirs), 0, 0, NULL, "Alias of log.dirs."},
    {"num.partitions", T_INT, OFF(num_partitions), 1, 100000, "1",
     "Partitions of auto-created topics and of CreateTopics with -1."},
    {"default.replication.factor", T_INT, OFF(default_replication_factor), 1, 1, "1",
     "Single node: only 1 is valid."},
    {"auto.create.topics.enable", T_BOOL, OFF(auto_create_topics_enable), 0, 0, "true",
     "Create a topic when Metadata names an unknown one and allows auto-creation."},
    {"delete.topic.enable", T_BOOL, OFF(delete_topic_enable), 0, 0, "true", "Allow DeleteTopics."},
    {"log.segment.bytes", T_LONG, OFF(log_segment_bytes), 1024, INT32_MAX, "1073741824",
     "Size at which a partition's active segment is rolled."},
    {"log.roll.ms", T_LONG, OFF(log_roll_ms), -1, I64MAX, "604800000",
     "Age at which the active segment is rolled."},
    {"log.retention.hours", T_LONG, OFF(retention_hours_raw), -1, I64MAX, "168",
     "Retention by time, hours (lowest precedence)."},
    {"log.retention.minutes", T_LONG, OFF(retention_minutes_raw), -1, I64MAX, NULL,
     "Retention by time, minutes."},
    {"log.retention.ms", T_LONG, OFF(retention_ms_raw), -1, I64MAX, NULL,
     "Retention by time, milliseconds (highest precedence); -1 keeps forever."},
    {"log.retention.bytes", T_LONG, OFF(log_retention_bytes), -1, I64MAX, "-1",
     "Retention by size per partition; -1 unlimited."},
    {"log.retention.check.interval.ms", T_LONG, OFF(log_retention_check_interval_ms), 1, I64MAX,
     "300000", "How often retention is applied."},
    {"log.flush.interval.messages", T_LONG, OFF(log_flush_interval_messages), 1, I64MAX,
     "9223372036854775807", "Records appended to a partition before it is fsynced."},
    {"log.flush.interval.ms", T_LONG, OFF(log_flush_interval_ms), 0, I64MAX, "9223372036854775807",
     "Maximum age of unsynced data in a partition."},
    {"log.flush.scheduler.interval.ms", T_LONG, OFF(log_flush_scheduler_interval_ms), 1, I64MAX,
     "1000", "How often the flush policy is checked."},
    {"log.index.interval.bytes", T_INT, OFF(log_index_interval_bytes), 0, INT32_MAX, "4096",
     "Bytes between sparse offset-index entries."},
    {"log.index.size.max.bytes", T_INT, OFF(log_index_size_max_bytes), 64, INT32_MAX, "10485760",
     "Index size that forces a segment roll."},
    {"message.max.bytes", T_INT, OFF(message_max_bytes), 0, INT32_MAX, "1048588",
     "Largest record batch accepted."},
    {"fetch.max.bytes", T_INT, OFF(fetch_max_bytes), 1024, INT32_MAX, "57671680",
     "Most record bytes one fetch answer carries, whatever the request asks (plus the first "
     "batch, so a consumer always progresses); a connection's unsent answers count against it."},
    {"socket.request.max.bytes", T_INT, OFF(socket_request_max_bytes), 1024, INT32_MAX, "104857600",
     "Largest request frame accepted after authentication."},
    {"connections.max.idle.ms", T_LONG, OFF(connections_max_idle_ms), 1000, I64MAX, "600000",
     "Idle connections are closed after this; a client that reads none of its answers for this "
     "long counts as idle."},
    {"max.connections", T_INT, OFF(max_connections), -1, INT32_MAX, "-1",
     "Connections accepted at once; excess ones are closed at accept. -1: derived from the open "
     "file limit (RLIMIT_NOFILE): a quarter of it (at least 256) is kept for the broker's own "
     "files, connections get half of the rest (the other half holds partition files open), "
     "plus 4 more connections that only loopback clients may use (an operator's way in); the "
     "value in force is logged at start."},
    {"group.initial.rebalance.delay.ms", T_INT, OFF(group_initial_rebalance_delay_ms), 0, INT32_MAX,
     "3000", "Delay before the first rebalance of an empty group."},
    {"group.min.session.timeout.ms", T_INT, OFF(group_min_session_timeout_ms), 0, INT32_MAX, "6000",
     "Shortest session timeout a group member may ask for."},
    {"group.max.session.timeout.ms", T_INT, OFF(group_max_session_timeout_ms), 0, INT32_MAX,
     "1800000", "Longest session timeout a group member may ask for."},
    {"offsets.retention.minutes", T_LONG, OFF(offsets_retention_minutes), 1, 153722867280912L,
     "10080", "Committed offsets of an empty group are deleted after this."},
    {"offsets.retention.check.interval.ms", T_LONG, OFF(offsets_retention_check_interval_ms), 1,
     I64MAX, "600000", "How often expired committed offsets are looked for."},
    {"offsets.topic.segment.bytes", T_LONG, OFF(offsets_topic_segment_bytes), 1024, INT32_MAX,
     "104857600",
     "Size at which the group-offsets log's active segment is rolled (the cleaner compacts only "
     "closed segments)."},
    {"producer.id.expiration.ms", T_INT, OFF(producer_id_expiration_ms), 1, INT32_MAX, "86400000",
     "Idempotent producer state is dropped this long after the producer's last append."},
    {"producer.id.expiration.check.interval.ms", T_INT,
     OFF(producer_id_expiration_check_interval_ms), 1, INT32_MAX, "600000",
     "How often expired producer ids are removed (and producer state snapshots taken)."},
    {"transactional.id.expiration.ms", T_INT, OFF(transactional_id_expiration_ms), 1, INT32_MAX,
     "604800000",
     "A transactional id idle (no transaction open) this long is forgotten by the transaction "
     "coordinator (docs/transactions.md)."},
    {"transaction.max.timeout.ms", T_INT, OFF(transaction_max_timeout_ms), 1, INT32_MAX, "900000",
     "Largest transaction.timeout.ms a transactional producer may ask for; a longer one is "
     "refused (INVALID_TRANSACTION_TIMEOUT)."},
    {"log.cleanup.policy", T_LIST, OFF(log_cleanup_policy), 0, 0, "delete",
     "Default cleanup.policy of topics: delete, compact or compact,delete (docs/compaction.md)."},
    {"log.cleaner.enable", T_BOOL, OFF(log_cleaner_enable), 0, 0, "true",
     "Run the log cleaner for compacted topics (false: compacted topics are never cleaned)."},
    {"log.cleaner.delete.retention.ms", T_LONG, OFF(log_cleaner_delete_retention_ms), 0, I64MAX,
     "86400000", "Default delete.retention.ms: how long tombstones stay after a clean."},
    {"log.cleaner.min.cleanable.ratio", T_STR, OFF(log_cleaner_min_cleanable_ratio_raw), 0, 0,
     "0.5", "Default min.cleanable.dirty.ratio, in [0, 1]."},
    {"log.cleaner.min.compaction.lag.ms", T_LONG, OFF(log_cleaner_min_compaction_lag_ms), 0, I64MAX,
     "0", "Default min.compaction.lag.ms: records younger than this are not compacted."},
    {"log.cleaner.max.compaction.lag.ms", T_LONG, OFF(log_cleaner_max_compaction_lag_ms), 1, I64MAX,
     "9223372036854775807",
     "Default max.compaction.lag.ms: dirty data older than this is cleaned whatever the ratio."},
    {"log.cleaner.dedupe.buffer.size", T_LONG, OFF(log_cleaner_dedupe_buffer_size), 65536, I64MAX,
     "134217728", "Memory of the cleaner's offset map (one cleaner thread)."},
    {"log.cleaner.backoff.ms", T_LONG, OFF(log_cleaner_backoff_ms), 0, I64MAX, "15000",
     "How often the cleaner looks for a partition due for cleaning when idle."},
    {"sasl.enabled.mechanisms", T_LIST, OFF(sasl_enabled_mechanisms), 0, 0,
     "SCRAM-SHA-512,SCRAM-SHA-256",
     "SASL mechanisms offered on SASL listeners: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, "
     "OAUTHBEARER (JWTs, docs/oauthbearer.md; and MSK IAM tokens, docs/iam.md), AWS_MSK_IAM "
     "(docs/iam.md). GSSAPI is not supported; Kafka's default differs."},
    {"connection.failed.authentication.delay.ms", T_INT,
     OFF(connection_failed_authentication_delay_ms), 0, INT32_MAX, "100",
     "Delay before a failed authentication is answered and the connection closed."},
    {"connections.max.reauth.ms", T_LONG, OFF(connections_max_reauth_ms), 0, I64MAX, "0",
     "SASL session lifetime; past it a client must re-authenticate (KIP-368). 0: no limit."},
    {"max.connections.per.ip", T_INT, OFF(max_connections_per_ip), 0, INT32_MAX, "100",
     "Connections accepted at once from one client address; excess ones are closed at accept, "
     "before any TLS work (0: unlimited; Kafka's default is unlimited)."},
    {"super.users", T_STR, OFF(super_users), 0, 0, NULL,
     "Semicolon-separated principals (User:name) allowed every operation."},
    {"sluice.sasl.plain.allow.insecure", T_BOOL, OFF(sluice_sasl_plain_allow_insecure), 0, 0,
     "false",
     "Allow SASL PLAIN on listeners without TLS (passwords then cross the network in "
     "clear)."},
    {"sluice.sasl.credentials.file", T_STR, OFF(sluice_sasl_credentials_file), 0, 0, NULL,
     "SCRAM credential store; default <sluice.secrets.dir>/sluice-users."},
    {"sluice.sasl.scram.iterations", T_INT, OFF(sluice_sasl_scram_iterations), 4096, 16384, "4096",
     "SCRAM iteration count of the provisioned admin, of users added by `sluice user` without "
     "--iterations, and of the mock exchange for unknown names (so a name's existence does not "
     "show before login; keep users created through AlterUserScramCredentials at this count)."},
    {"authorizer.class.name", T_STR, OFF(authorizer_class_name), 0, 0, NULL,
     "ACLs: org.apache.kafka.metadata.authorizer.StandardAuthorizer (or "
     "kafka.security.authorizer.AclAuthorizer) turns authorization on; empty allows everything."},
    {"allow.everyone.if.no.acl.found", T_BOOL, OFF(allow_everyone_if_no_acl_found), 0, 0, "false",
     "ACLs: allow an operation on a resource no ACL matches (false: deny by default)."},
    {"sluice.authorizer.enable", T_BOOL, OFF(sluice_authorizer_enable), 0, 0, "false",
     "ACLs: turn authorization on (same as setting authorizer.class.name)."},
    {"sluice.acl.file", T_STR, OFF(sluice_acl_file), 0, 0, NULL,
     "ACLs: file holding the ACLs; default <log.dirs>/sluice-acls."},
    {"sluice.preauth.max.bytes", T_INT, OFF(sluice_preauth_max_bytes), 64, INT32_MAX, "65536",
     "Largest frame accepted before a connection is authenticated."},
    {"sluice.authentication.timeout.ms", T_LONG, OFF(sluice_authentication_timeout_ms), 0, I64MAX,
     "30000",
     "Time a connection has from accept to finishing its TLS handshake and SASL "
     "authentication before it is closed (0: only connections.max.idle.ms applies)."},
    {"sluice.fetch.memory.max.bytes", T_LONG, OFF(sluice_fetch_memory_max_bytes), -1, I64MAX, "-1",
     "Answer bytes held unsent over all connections past which fetch answers carry no records "
     "until clients read (an answer's first batch may pass it); in the gateway, past which "
     "upstream answers of 64 KiB or more wait in the kernel. -1: a quarter of the memory the "
     "process may use (the machine's, or a lower control-group limit: a container's)."},
    {"sluice.max.inflight.requests", T_INT, OFF(sluice_max_inflight_requests), 1, 100000, "64",
     "Requests queued per connection before reading pauses."},
    {"sluice.shutdown.timeout.ms", T_LONG, OFF(sluice_shutdown_timeout_ms), 0, I64MAX, "10000",
     "Time SIGTERM waits for in-flight requests before closing connections."},
    {"sluice.provision.enable", T_BOOL, OFF(sluice_provision_enable), 0, 0, "true",
     "On start, create what a secure listener lacks: a CA and broker certificate when no "
     "ssl.keystore.location is set, and an admin SCRAM user (a super user) with client "
     "configuration files when the credential store is empty."},
    {"sluice.log.level", T_STR, OFF(sluice_log_level), 0, 0, "info",
     "Broker log level: debug, info, warn or error."},
    {"ssl.keystore.type", T_STR, OFF(ssl_keystore_type), 0, 0, "PEM",
     "Format of ssl.keystore.location; only PEM is supported."},
    {"ssl.keystore.location", T_STR, OFF(ssl_keystore_location), 0, 0, NULL,
     "PEM file with the broker's certificate chain (leaf first) and private key."},
    {"ssl.key.password", T_STR, OFF(ssl_key_password), 0, 0, NULL,
     "Password of an encrypted private key in ssl.keystore.location."},
    {"ssl.truststore.type", T_STR, OFF(ssl_truststore_type), 0, 0, "PEM",
     "Format of ssl.truststore.location; only PEM is supported."},
    {"ssl.truststore.location", T_STR, OFF(ssl_truststore_location), 0, 0, NULL,
     "PEM bundle of the CAs whose client certificates are accepted."},
    {"ssl.enabled.protocols", T_LIST, OFF(ssl_enabled_protocols), 0, 0, "TLSv1.3,TLSv1.2",
     "TLS versions accepted (TLSv1.3, TLSv1.2; TLSv1.1 and TLSv1 only if listed)."},
    {"ssl.cipher.suites", T_LIST, OFF(ssl_cipher_suites), 0, 0, SL_DEFAULT_TLS12_SUITES,
     "TLS 1.2 cipher suites (OpenSSL or IANA names); TLS_AES_*/TLS_CHACHA20_* names restrict "
     "TLS 1.3."},
    {"ssl.client.auth", T_STR, OFF(ssl_client_auth), 0, 0, "none",
     "Client certificates: none, requested or required."},
    {"ssl.principal.mapping.rules", T_STR, OFF(ssl_principal_mapping_rules), 0, 0, "DEFAULT",
     "RULE:pattern/replacement/[LU],...,DEFAULT: client certificate subject to principal."},
    {"sluice.ssl.reload.interval.ms", T_LONG, OFF(sluice_ssl_reload_interval_ms), 0, I64MAX, "5000",
     "How often keystore and truststore files are checked for changes (0: only on SIGHUP)."},
    {"sluice.ssl.groups", T_STR, OFF(sluice_ssl_groups), 0, 0, "X25519:P-256:P-384:P-521",
     "TLS key-exchange groups (TLS 1.2 and 1.3), colon-separated OpenSSL names. The default "
     "leaves out the finite-field groups (ffdhe2048..8192), whose handshakes cost the broker "
     "up to 250 times the CPU of X25519."},
    {"sluice.ssl.handshake.rate.per.ip", T_INT, OFF(sluice_ssl_handshake_rate_per_ip), 0, 1000000,
     "20",
     "TLS handshakes one client address may start per second (twice that saved up as a burst); "
     "excess connections are closed at accept (0: unlimited)."},
    {"sluice.ssl.max.handshakes.per.ip", T_INT, OFF(sluice_ssl_max_handshakes_per_ip), 0, INT32_MAX,
     "8",
     "TLS handshakes in progress at once from one client address; more connections are closed "
     "at accept (0: unlimited)."},
    {"sluice.audit.enable", T_BOOL, OFF(sluice_audit_enable), 0, 0, "true",
     "Audit trail: record security-relevant events as OCSF JSON (docs/audit.md)."},
    {"sluice.audit.dir", T_STR, OFF(sluice_audit_dir), 0, 0, NULL,
     "Audit trail: directory of the file sink (created 0700, files 0600); default "
     "<log.dirs>/audit."},
    {"sluice.audit.sinks", T_LIST, OFF(sluice_audit_sinks), 0, 0, "file",
     "Audit trail: where events go, any of file, syslog (RFC 5424 on the local socket) and "
     "topic (the internal topic __sluice_audit; not with `sluice gateway`, which stores no "
     "topics)."},
    {"sluice.audit.enabled.event.types", T_LIST, OFF(sluice_audit_enabled_event_types), 0, 0,
     "authenticate,refusal,management,denial,produce,consume,lifecycle,detection",
     "Audit trail: event types recorded, any of authenticate, connection (every connection "
     "opened and closed), refusal, management, denial, produce, consume, describe, lifecycle, "
     "detection."},
    {"sluice.audit.excluded.principals", T_LIST, OFF(sluice_audit_excluded_principals), 0, 0, NULL,
     "Audit trail: principals (User:name) whose requests are not recorded."},
    {"sluice.audit.excluded.topics", T_LIST, OFF(sluice_audit_excluded_topics), 0, 0, NULL,
     "Audit trail: topics whose data access is not recorded."},
    {"sluice.audit.data.interval.ms", T_LONG, OFF(sluice_audit_data_interval_ms), 0, I64MAX,
     "60000",
     "Audit trail: data access is summarized per principal, client, topic-partition and "
     "interval of this length (0: one event per request)."},
    {"sluice.audit.failure.policy", T_STR, OFF(sluice_audit_failure_policy), 0, 0, "block",
     "Audit trail: when events cannot be recorded, block (requests fail with a retriable error "
     "until they can) or continue (drops are counted and logged)."},
    {"sluice.audit.file.max.bytes", T_LONG, OFF(sluice_audit_file_max_bytes), 4096, I64MAX,
     "104857600", "Audit trail: the file sink rotates past this size."},
    {"sluice.audit.file.max.age.ms", T_LONG, OFF(sluice_audit_file_max_age_ms), 1000, I64MAX,
     "86400000", "Audit trail: the file sink rotates a file this old."},
    {"sluice.audit.file.retention.files", T_INT, OFF(sluice_audit_file_retention_files), 0,
     INT32_MAX, "0",
     "Audit trail: rotated files kept (0: all; remove them by your retention "
     "policy)."},
    {"sluice.audit.checkpoint.interval.ms", T_LONG, OFF(sluice_audit_checkpoint_interval_ms), 1000,
     I64MAX, "60000", "Audit trail: how often a signed checkpoint is written (also at rotation)."},
    {"sluice.audit.signing.key.file", T_STR, OFF(sluice_audit_signing_key_file), 0, 0, NULL,
     "Audit trail: Ed25519 private key (PEM) signing checkpoints, created 0600 if missing; its "
     "public key is written beside it (.pub). Default <sluice.secrets.dir>/sluice-audit-key.pem."},
    {"sluice.audit.syslog.socket", T_STR, OFF(sluice_audit_syslog_socket), 0, 0, "/dev/log",
     "Audit trail: local syslog socket of the syslog sink."},
    {"sluice.audit.queue.max.events", T_INT, OFF(sluice_audit_queue_max_events), 16, INT32_MAX,
     "65536", "Audit trail: events waiting for the writer before the failure policy applies."},
    {"sluice.metrics.listener", T_STR, OFF(sluice_metrics_listener), 0, 0, "http://127.0.0.1:9404",
     "Metrics, health and status page: http://host:port or https://host:port (empty: off)."},
    {"sluice.metrics.ssl.keystore.location", T_STR, OFF(sluice_metrics_ssl_keystore_location), 0, 0,
     NULL, "Metrics over https: PEM certificate chain and key; default ssl.keystore.location."},
    {"sluice.metrics.bearer.token.file", T_STR, OFF(sluice_metrics_bearer_token_file), 0, 0, NULL,
     "Metrics: file holding the bearer token scrapers must send (empty: no token; /healthz "
     "and /readyz never need one)."},
    {"sluice.guard.enable", T_BOOL, OFF(sluice_guard_enable), 0, 0, "true",
     "Detections: evaluate the built-in rules (docs/detections.md)."},
    {"sluice.guard.window.ms", T_LONG, OFF(sluice_guard_window_ms), 1000, I64MAX, "60000",
     "Detections: length of the sliding window the thresholds count over."},
    {"sluice.guard.auth.failures.per.address", T_INT, OFF(sluice_guard_auth_failures_per_address),
     1, INT32_MAX, "10",
     "Detections: failed authentications from one address per window that "
     "raise a brute-force finding."},
    {"sluice.guard.auth.failures.per.principal", T_INT,
     OFF(sluice_guard_auth_failures_per_principal), 1, INT32_MAX, "10",
     "Detections: failed authentications for one principal per window that raise a finding."},
    {"sluice.guard.denials.per.principal", T_INT, OFF(sluice_guard_denials_per_principal), 1,
     INT32_MAX, "50",
     "Detections: authorization denials of one principal per window that raise a finding."},
    {"sluice.guard.new.address.enable", T_BOOL, OFF(sluice_guard_new_address_enable), 0, 0, "true",
     "Detections: a finding when a principal authenticates from an address not seen before."},
    {"sluice.guard.new.topic.read.enable", T_BOOL, OFF(sluice_guard_new_topic_read_enable), 0, 0,
     "true", "Detections: a finding when a principal reads a topic it never read before."},
    {"sluice.guard.cert.expiry.days", T_INT, OFF(sluice_guard_cert_expiry_days), 0, 3650, "30",
     "Detections: a finding when a listener certificate expires within this many days."},
    {"sluice.guard.disk.free.min.percent", T_INT, OFF(sluice_guard_disk_free_min_percent), 0, 100,
     "10", "Detections: a finding when the data directory's disk has less free space."},
    {"sluice.guard.block.seconds", T_INT, OFF(sluice_guard_block_seconds), 0, 86400, "0",
     "Detections: refuse connections from an address raising a brute-force finding for this "
     "long (0: detect only)."},
    {"sluice.encryption.enable", T_BOOL, OFF(sluice_encryption_enable), 0, 0, "true",
     "Encryption at rest: seal every stored batch, the groups log, producer snapshots and the "
     "topic registry under keys from sluice.kms.provider (docs/encryption-at-rest.md)."},
    {"sluice.encryption.dir.names", T_STR, OFF(sluice_encryption_dir_names), 0, 0, "name",
     "Encryption at rest: partition directories named <topic>-<partition> (name) or "
     "<topic id>-<partition> (id, so directory names do not reveal topic names)."},
    {"sluice.kms.provider", T_STR, OFF(sluice_kms_provider), 0, 0, "local",
     "Encryption at rest: where key-encryption keys live: local, pkcs11, kmip or aws-kms."},
    {"sluice.kms.keyring.file", T_STR, OFF(sluice_kms_keyring_file), 0, 0, NULL,
     "Encryption at rest: the keyring (topic keys wrapped by the KMS, 0600); default "
     "<log.dirs>/sluice-keyring."},
    {"sluice.kms.cache.ttl.ms", T_LONG, OFF(sluice_kms_cache_ttl_ms), 1000, I64MAX, "3600000",
     "Encryption at rest: unwrapped keys unused this long are dropped from locked memory."},
    {"sluice.kms.timeout.ms", T_LONG, OFF(sluice_kms_timeout_ms), 100, I64MAX, "10000",
     "Encryption at rest: a KMS call that takes longer fails (retriable)."},
    {"sluice.kms.local.master.key.file", T_STR, OFF(sluice_kms_local_master_key_file), 0, 0, NULL,
     "local KMS: file holding the 32-byte master key (created 0600 on first start); default "
     "<sluice.secrets.dir>/sluice-master.key, outside the data directory. A systemd credential "
     "sluice-master-key ($CREDENTIALS_DIRECTORY) takes precedence."},
    {"sluice.kms.local.master.key.env", T_STR, OFF(sluice_kms_local_master_key_env), 0, 0,
     "SLUICE_MASTER_KEY",
     "local KMS: environment variable that, when set, holds the master key (64 hex digits); "
     "it takes precedence over the file."},
    {"sluice.kms.pkcs11.module", T_STR, OFF(sluice_kms_pkcs11_module), 0, 0,
     "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
     "pkcs11 KMS: the PKCS#11 module (p11-kit's proxy by default, or a vendor module)."},
    {"sluice.kms.pkcs11.token.label", T_STR, OFF(sluice_kms_pkcs11_token_label), 0, 0, NULL,
     "pkcs11 KMS: label of the token holding the key-encryption keys."},
    {"sluice.kms.pkcs11.pin.file", T_STR, OFF(sluice_kms_pkcs11_pin_file), 0, 0, NULL,
     "pkcs11 KMS: file holding the user PIN."},
    {"sluice.kms.pkcs11.key.label", T_STR, OFF(sluice_kms_pkcs11_key_label), 0, 0, "sluice-kek",
     "pkcs11 KMS: label prefix of the key-encryption keys (<label>-v<version>)."},
    {"sluice.kms.kmip.endpoint", T_STR, OFF(sluice_kms_kmip_endpoint), 0, 0, NULL,
     "kmip KMS: host:port of the KMIP server (mutual TLS)."},
    {"sluice.kms.kmip.ca.file", T_STR, OFF(sluice_kms_kmip_ca_file), 0, 0, NULL,
     "kmip KMS: CA certificates (PEM) that sign the KMIP server's certificate."},
    {"sluice.kms.kmip.cert.file", T_STR, OFF(sluice_kms_kmip_cert_file), 0, 0, NULL,
     "kmip KMS: Sluice's client certificate (PEM)."},
    {"sluice.kms.kmip.key.file", T_STR, OFF(sluice_kms_kmip_key_file), 0, 0, NULL,
     "kmip KMS: the client certificate's private key (PEM)."},
    {"sluice.kms.aws.region", T_STR, OFF(sluice_kms_aws_region), 0, 0, NULL,
     "aws-kms: region (default: AWS_REGION, then the profile's region)."},
    {"sluice.kms.aws.key.id", T_STR, OFF(sluice_kms_aws_key_id), 0, 0, NULL,
     "aws-kms: the KMS key (id, ARN or alias) that wraps topic keys."},
    {"sluice.kms.aws.endpoint", T_STR, OFF(sluice_kms_aws_endpoint), 0, 0, NULL,
     "aws-kms: endpoint URL (default https://kms.<region>.amazonaws.com)."},
    {"sluice.kms.aws.ca.file", T_STR, OFF(sluice_kms_aws_ca_file), 0, 0, NULL,
     "aws-kms: CA certificates for the endpoint (default: the system's)."},
    {"sluice.kms.aws.profile", T_STR, OFF(sluice_kms_aws_profile), 0, 0, NULL,
     "aws-kms: shared-credentials profile (default: AWS_PROFILE, then default)."},
    {"sluice.kms.aws.imds.endpoint", T_STR, OFF(sluice_kms_aws_imds_endpoint), 0, 0,
     "http://169.254.169.254", "aws-kms: EC2 instance metadata endpoint (IMDSv2)."},
    {"sluice.secrets.dir", T_STR, OFF(sluice_secrets_dir), 0, 0, NULL,
     "Directory (0700) for the secrets Sluice creates itself: the provisioned CA and broker keys, "
     "the generated admin's client properties, the SCRAM credential store, the audit signing "
     "key and the local KMS master key. Kept outside log.dirs so a copy of the data directory "
     "holds no secret; default sluice-secrets beside log.dirs."},
    {"sluice.ctl.socket", T_STR, OFF(sluice_ctl_socket), 0, 0, NULL,
     "Control socket `sluice keys` talks to (unix, 0600, owner only); default "
     "<log.dirs>/sluice-ctl.sock."},
    /* IAM-compatible authentication and policies (docs/iam.md) */
    {"sluice.iam.file", T_STR, OFF(sluice_iam_file), 0, 0, NULL,
     "IAM: users, access keys (secrets encrypted), roles, policy documents and attachments "
     "(managed with `sluice iam`); default <log.dirs>/sluice-iam."},
    {"sluice.iam.key.file", T_STR, OFF(sluice_iam_key_file), 0, 0, NULL,
     "IAM: the key (0600) that encrypts secret access keys and seals session tokens; created "
     "on first use; default <sluice.secrets.dir>/sluice-iam.key."},
    {"sluice.iam.region", T_STR, OFF(sluice_iam_region), 0, 0, "us-east-1",
     "IAM: the region clients sign for (the x-amz-credential scope) and resource ARNs name."},
    {"sluice.iam.account.id", T_STR, OFF(sluice_iam_account_id), 0, 0, "000000000000",
     "IAM: the 12-digit account id in resource and principal ARNs (an MSK policy's account)."},
    {"sluice.iam.cluster.name", T_STR, OFF(sluice_iam_cluster_name), 0, 0, "sluice",
     "IAM: the cluster name in resource ARNs (arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID)."},
    {"sluice.iam.cluster.uuid", T_STR, OFF(sluice_iam_cluster_uuid), 0, 0, NULL,
     "IAM: the cluster UUID in resource ARNs; unset: the broker's cluster id. Set both name and "
     "UUID to an MSK cluster's to apply its policies unchanged."},
    {"sluice.iam.hosts", T_STR, OFF(sluice_iam_hosts), 0, 0, NULL,
     "IAM: host names (comma-separated) an AWS_MSK_IAM payload may be signed for, besides the "
     "advertised listeners' hosts."},
    {"sluice.iam.clock.skew.ms", T_LONG, OFF(sluice_iam_clock_skew_ms), 0, 3600000, "300000",
     "IAM: how far ahead of the broker's clock a signature's x-amz-date may be."},
    {"sluice.iam.max.session.duration.ms", T_LONG, OFF(sluice_iam_max_session_duration_ms), 900000,
     43200000, "43200000",
     "IAM: the longest session a role may grant (each role has its own maximum, at most this)."},
    {"sluice.iam.sts.listener", T_STR, OFF(sluice_iam_sts_listener), 0, 0, NULL,
     "IAM: the STS-compatible endpoint (AssumeRole, GetCallerIdentity; docs/iam.md), "
     "https://host:port only (empty: off)."},
    {"sluice.iam.sts.ssl.keystore.location", T_STR, OFF(sluice_iam_sts_ssl_keystore_location), 0, 0,
     NULL, "IAM STS endpoint: PEM certificate chain and key; default ssl.keystore.location."},
    {"sluice.protect.policy.file", T_STR, OFF(sluice_protect_policy_file), 0, 0, NULL,
     "Field protection policy (docs/field-protection.md): which fields of which topics are "
     "masked, redacted, tokenized or encrypted on produce. Reloaded when it changes and on "
     "SIGHUP; an invalid file keeps the previous policy. Unset: no field protection."},
    {"sluice.protect.grants.file", T_STR, OFF(sluice_protect_grants_file), 0, 0, NULL,
     "Field protection: who sees which encrypted field in clear (managed with `sluice protect "
     "grant|revoke`); default <log.dirs>/sluice-protect-grants."},
    {"sluice.protect.subject.keys.file", T_STR, OFF(sluice_protect_subject_keys_file), 0, 0, NULL,
     "Field protection: the data-subject key store (`sluice keys forget --subject`); default "
     "<log.dirs>/sluice-subject-keys."},
    {"sluice.protect.reload.interval.ms", T_LONG, OFF(sluice_protect_reload_interval_ms), 0, I64MAX,
     "1000", "How often the policy file is checked for changes (0: only on SIGHUP)."},
    /* gateway mode: read by `sluice gateway` only (docs/gateway.md) */
    {"sluice.gateway.upstream.bootstrap.servers", T_STR,
     OFF(sluice_gateway_upstream_bootstrap_servers), 0, 0, NULL,
     "Gateway: host:port[,host:port...] of the upstream Kafka cluster (required by `sluice "
     "gateway`)."},
    {"sluice.gateway.upstream.security.protocol", T_STR,
     OFF(sluice_gateway_upstream_security_protocol), 0, 0, "SSL",
     "Gateway: how the gateway connects upstream: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."},
    {"sluice.gateway.upstream.ssl.ca.location", T_STR, OFF(sluice_gateway_upstream_ssl_ca_location),
     0, 0, NULL,
     "Gateway: PEM CA bundle the upstream brokers' certificates are checked against (unset: the "
     "system store)."},
    {"sluice.gateway.upstream.ssl.certificate.location", T_STR,
     OFF(sluice_gateway_upstream_ssl_certificate_location), 0, 0, NULL,
     "Gateway: PEM client certificate (chain) for mutual TLS upstream."},
    {"sluice.gateway.upstream.ssl.key.location", T_STR,
     OFF(sluice_gateway_upstream_ssl_key_location), 0, 0, NULL,
     "Gateway: PEM private key of the client certificate."},
    {"sluice.gateway.upstream.ssl.endpoint.identification", T_BOOL,
     OFF(sluice_gateway_upstream_ssl_verify_hostname), 0, 0, "true",
     "Gateway: check that the upstream certificate names the broker host dialled (from "
     "upstream Metadata)."},
    {"sluice.gateway.upstream.sasl.mechanism", T_STR, OFF(sluice_gateway_upstream_sasl_mechanism),
     0, 0, "SCRAM-SHA-512",
     "Gateway: upstream SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, "
     "OAUTHBEARER or AWS_MSK_IAM."},
    {"sluice.gateway.upstream.sasl.username", T_STR, OFF(sluice_gateway_upstream_sasl_username), 0,
     0, NULL, "Gateway: the gateway's own upstream user (PLAIN, SCRAM)."},
    {"sluice.gateway.upstream.sasl.password", T_STR, OFF(sluice_gateway_upstream_sasl_password), 0,
     0, NULL, "Gateway: its password (prefer sluice.gateway.upstream.sasl.password.file)."},
    {"sluice.gateway.upstream.sasl.password.file", T_STR,
     OFF(sluice_gateway_upstream_sasl_password_file), 0, 0, NULL,
     "Gateway: file holding the upstream password (first line)."},
    {"sluice.gateway.upstream.sasl.oauthbearer.token", T_STR,
     OFF(sluice_gateway_upstream_sasl_oauthbearer_token), 0, 0, NULL,
     "Gateway: OAUTHBEARER: a static token for the upstream."},
    {"sluice.gateway.upstream.sasl.oauthbearer.token.command", T_STR,
     OFF(sluice_gateway_upstream_sasl_oauthbearer_token_command), 0, 0, NULL,
     "Gateway: OAUTHBEARER: a command printing a fresh token on stdout (run off the event loop "
     "for each new upstream connection)."},
    {"sluice.gateway.upstream.aws.region", T_STR, OFF(sluice_gateway_upstream_aws_region), 0, 0,
     NULL, "Gateway: AWS_MSK_IAM: the cluster's region (unset: AWS_REGION, then the profile)."},
    {"sluice.gateway.upstream.aws.profile", T_STR, OFF(sluice_gateway_upstream_aws_profile), 0, 0,
     NULL,
     "Gateway: AWS_MSK_IAM: credentials profile (unset: the environment, then the default "
     "profile, web identity, IMDSv2)."},
    {"sluice.gateway.upstream.connect.timeout.ms", T_LONG,
     OFF(sluice_gateway_upstream_connect_timeout_ms), 100, 600000, "10000",
     "Gateway: bound on connecting, TLS and SASL to one upstream broker."},
    {"sluice.gateway.upstream.request.timeout.ms", T_LONG,
     OFF(sluice_gateway_upstream_request_timeout_ms), 1000, I64MAX, "330000",
     "Gateway: an upstream connection with a request outstanding this long is closed (longer "
     "than any JoinGroup rebalance a client may ask for)."},
    {"sluice.gateway.metadata.refresh.ms", T_LONG, OFF(sluice_gateway_metadata_refresh_ms), 100,
     I64MAX, "30000",
     "Gateway: how often the upstream topology (brokers, leaders, ISR) is reread; every Metadata "
     "answer passing through refreshes it too."},
    {"sluice.gateway.address.mode", T_STR, OFF(sluice_gateway_address_mode), 0, 0, "port",
     "Gateway: how clients reach one upstream broker through the gateway: port (one port per "
     "node id) or sni (one TLS port, broker chosen by server name)."},
    {"sluice.gateway.advertised.host", T_STR, OFF(sluice_gateway_advertised_host), 0, 0, NULL,
     "Gateway: host name clients are given for every broker (a load balancer's or DNS name; "
     "unset: the first listener's host)."},
    {"sluice.gateway.node.port.base", T_INT, OFF(sluice_gateway_node_port_base), 0, 65535, "0",
     "Gateway, port mode: port of node id sluice.gateway.node.id.min; node n gets base + (n - "
     "min) (0: the first listener's port + 1)."},
    {"sluice.gateway.node.port.count", T_INT, OFF(sluice_gateway_node_port_count), 1, 1024, "16",
     "Gateway, port mode: how many node ports are reserved; a node id outside the range is an "
     "error in the log and Metadata answers fail until it is widened."},
    {"sluice.gateway.node.id.min", T_INT, OFF(sluice_gateway_node_id_min), 0, INT32_MAX, "0",
     "Gateway, port mode: the lowest upstream node id."},
    {"sluice.gateway.sni.pattern", T_STR, OFF(sluice_gateway_sni_pattern), 0, 0, NULL,
     "Gateway, sni mode: server name of each broker, with $(nodeId) in one label, e.g. "
     "broker-$(nodeId).kafka.example.com; any other name is the bootstrap."},
    {"sluice.gateway.encrypt.enable", T_BOOL, OFF(sluice_gateway_encrypt_enable), 0, 0, "false",
     "Gateway: encrypt record values (and headers) per record before they reach the upstream, "
     "under the key service's topic keys (docs/gateway.md)."},
    {"sluice.gateway.encrypt.topics", T_LIST, OFF(sluice_gateway_encrypt_topics), 0, 0, "*",
     "Gateway: topics (names, or prefixes ending in *) whose records are encrypted."},
    {"sluice.gateway.encrypt.keys", T_STR, OFF(sluice_gateway_encrypt_keys), 0, 0, "clear",
     "Gateway: record keys: clear, or deterministic (AES-SIV, so partitioning and compaction "
     "still see equal keys)."},
    {"sluice.gateway.encrypt.headers", T_STR, OFF(sluice_gateway_encrypt_headers), 0, 0, "encrypt",
     "Gateway: record headers: encrypt (inside the envelope) or clear."},
    {"sluice.gateway.unencrypted.policy", T_STR, OFF(sluice_gateway_unencrypted_policy), 0, 0,
     "report",
     "Gateway: a fetched record without the envelope on an encrypted topic: report (metric and "
     "audit event, record passed) or reject (the partition answers an error)."},
    {"sluice.gateway.principal.mapping", T_STR, OFF(sluice_gateway_principal_mapping_file), 0, 0,
     NULL,
     "Gateway: file mapping client principals to their own upstream credentials (unset: every "
     "client goes upstream as the gateway)."},
    {"sasl.oauthbearer.jwks.endpoint.url", T_STR, OFF(sasl_oauthbearer_jwks_endpoint_url), 0, 0,
     NULL, "OAUTHBEARER: JWKS with the token signing keys: file:///path or https://URL."},
    {"sasl.oauthbearer.jwks.endpoint.refresh.ms", T_LONG,
     OFF(sasl_oauthbearer_jwks_endpoint_refresh_ms), 1000, I64MAX, "3600000",
     "OAUTHBEARER: how often the JWKS is refetched (also on an unknown kid, at most every 10 s)."},
    {"sasl.oauthbearer.expected.issuer", T_STR, OFF(sasl_oauthbearer_expected_issuer), 0, 0, NULL,
     "OAUTHBEARER: required iss claim (required when a JWKS is configured)."},
    {"sasl.oauthbearer.expected.audience", T_LIST, OFF(sasl_oauthbearer_expected_audience), 0, 0,
     NULL, "OAUTHBEARER: accepted aud values, comma-separated (required with a JWKS)."},
    {"sasl.oauthbearer.clock.skew.seconds", T_INT, OFF(sasl_oauthbearer_clock_skew_seconds), 0,
     3600, "30", "OAUTHBEARER: clock skew allowed when checking exp, nbf and iat."},
    {"sasl.oauthbearer.sub.claim.name", T_STR, OFF(sasl_oauthbearer_sub_claim_name), 0, 0, "sub",
     "OAUTHBEARER: claim holding the principal name."},
    {"sasl.oauthbearer.scope.claim.name", T_STR, OFF(sasl_oauthbearer_scope_claim_name), 0, 0,
     "scope", "OAUTHBEARER: claim holding the scopes (type-checked, not enforced)."},
    {"sluice.sasl.oauthbearer.jwks.endpoint.truststore", T_STR,
     OFF(sluice_sasl_oauthbearer_jwks_endpoint_truststore), 0, 0, NULL,
     "OAUTHBEARER: PEM CA bundle that verifies an https JWKS endpoint; default the system CAs."},
};
#define NKEYS (sizeof k_keys / sizeof k_keys[0])

_Static_assert(NKEYS <= 256, "sl_config.set_mask has room for 256 keys");

size_t sl_config_key_count(void) { return NKEYS; }

/* Secrets are never formatted: DescribeConfigs and --help-config show them as null. */
static bool is_sensitive(const key_def *k) {
    return k->off == OFF(ssl_key_password) ||
           k->off == OFF(sluice_gateway_upstream_sasl_password) ||
           k->off == OFF(sluice_gateway_upstream_sasl_oauthbearer_token);
}

const sl_config_key_info *sl_config_key_at(size_t i) {
    static sl_config_key_info info;
    static const char *const tn[] = {"int", "long", "boolean", "string", "list"};
    if (i >= NKEYS) return NULL;
    info.name = k_keys[i].name;
    info.type = tn[k_keys[i].type];
    info.doc = k_keys[i].doc;
    info.sensitive = is_sensitive(&k_keys[i]);
    return &info;
}

static const key_def *find_key(const char *name, size_t *idx) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(k_keys[i].name, name) == 0) {
            if (idx) *idx = i;
            return &k_keys[i];
        }
    return NULL;
}

void sl_config_beside_log_dirs(const sl_config *c, const char *name, char *out, size_t n) {
    char d[sizeof c->log_dirs], parent[sizeof c->log_dirs];
    snprintf(d, sizeof d, "%s", c->log_dirs);
    size_t l = strlen(d);
    while (l > 1 && d[l - 1] == '/') d[--l] = 0;
    sl_parent_dir(d, parent, sizeof parent);
    snprintf(out, n, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", name);
}

void sl_config_secrets_dir(const sl_config *c, char *out, size_t n) {
    if (c->sluice_secrets_dir[0])
        snprintf(out, n, "%s", c->sluice_secrets_dir);
    else
        sl_config_beside_log_dirs(c, "sluice-secrets", out, n);
}

void sl_config_secret_path(const sl_config *c, const char *name, char *out, size_t n,
                           bool *legacy) {
    char dir[SL_CFG_STR_MAX], old[SL_CFG_STR_MAX + 256];
    sl_config_secrets_dir(c, dir, sizeof dir);
    snprintf(out, n, "%s/%s", dir, name);
    snprintf(old, sizeof old, "%s/%s", c->log_dirs, name);
    bool use_old = access(out, F_OK) != 0 && access(old, F_OK) == 0;
    if (use_old) snprintf(out, n, "%s", old);
    if (legacy) *legacy = use_old;
}

void sl_config_secret_dir_for(const sl_config *c, const char *probe, char *out, size_t n) {
    char path[SL_CFG_STR_MAX + 256];
    bool legacy = false;
    sl_config_secret_path(c, probe, path, sizeof path, &legacy);
    if (legacy)
        snprintf(out, n, "%s", c->log_dirs);
    else
        sl_config_secrets_dir(c, out, n);
}

int sl_config_key_index(const char *name) {
    size_t i;
    return find_key(name, &i) ? (int)i : -1;
}

static sl_err apply(sl_config *c, const key_def *k, const char *v, char *err, size_t elen) {
    char *base = (char *)c;
    switch (k->type) {
    case T_INT:
    case T_LONG: {
        errno = 0;
        char *end = NULL;
        long long n = strtoll(v, &end, 10);
        while (end && isspace((unsigned char)*end)) end++;
        if (errno || end == v || (end && *end) || n < k->min || n > k->max) {
            snprintf(err, elen, "%s: invalid value \"%s\" (expected an integer in [%lld, %lld])",
                     k->name, v, (long long)k->min, (long long)k->max);
            return SL_ECONFIG;
        }
        if (k->type == T_INT)
            *(int32_t *)(base + k->off) = (int32_t)n;
        else
            *(int64_t *)(base + k->off) = n;
        return SL_OK;
    }
    case T_BOOL:
        if (strcmp(v, "true") == 0)
            *(bool *)(base + k->off) = true;
        else if (strcmp(v, "false") == 0)
            *(bool *)(base + k->off) = false;
        else {
            snprintf(err, elen, "%s: invalid value \"%s\" (expected true or false)", k->name, v);
            return SL_ECONFIG;
        }
        return SL_OK;
    case T_STR:
    case T_LIST: {
        size_t n = strlen(v);
        if (n >= SL_CFG_STR_MAX || (k->off == OFF(sluice_log_level) && n >= 16)) {
            snprintf(err, elen, "%s: value too long", k->name);
            return SL_ECONFIG;
        }
        memcpy(base + k->off, v, n + 1);
        return SL_OK;
    }
    }
    return SL_ECONFIG;
}

void sl_config_defaults(sl_config *c) {
    memset(c, 0, sizeof *c);
    c->retention_hours_raw = c->retention_minutes_raw = c->retention_ms_raw = -2;
    char err[256];
    for (size_t i = 0; i < NKEYS; i++)
        if (k_keys[i].def) (void)apply(c, &k_keys[i], k_keys[i].def, err, sizeof err);
    memset(c->set_mask, 0, sizeof c->set_mask);
    c->log_cleaner_min_cleanable_ratio = 0.5; /* as sl_config_finish would resolve it */
}

static void trim(char **s) {
    while (isspace((unsigned char)**s)) (*s)++;
    char *e = *s + strlen(*s);
    while (e > *s && isspace((unsigned char)e[-1])) *--e = 0;
}

/* Values with a closed set of choices, checked where they are set so the error names the key. */
static sl_err check_value(const key_def *k, const char *v, char *err, size_t elen) {
    if ((k->off == OFF(ssl_keystore_type) || k->off == OFF(ssl_truststore_type)) &&
        strcasecmp(v, "PEM") != 0) {
        snprintf(err, elen, "%s: unsupported type \"%s\" (only PEM is supported)", k->name, v);
        return SL_ECONFIG;
    }
    if (k->off == OFF(ssl_client_auth) && strcmp(v, "none") && strcmp(v, "requested") &&
        strcmp(v, "required")) {
        snprintf(err, elen, "%s: invalid value \"%s\" (expected none, requested or required)",
                 k->name, v);
        return SL_ECONFIG;
    }
    return SL_OK;
}

/* listener.name.<listener>.<key>: validated against the key's type, stored for
 * sl_config_listener_str(). The key may carry one more prefix (a SASL mechanism). */
static sl_err set_override(sl_config *c, const char *key, const char *v, char *err, size_t elen) {
    const char *ln = key + strlen("listener.name.");
    const char *dot = strchr(ln, '.');
    if (!dot || dot == ln || (size_t)(dot - ln) >= sizeof c->overrides[0].listener ||
        strlen(dot + 1) >= sizeof c->overrides[0].key) {
        snprintf(err, elen, "%s: expected listener.name.<listener>.<key>", key);
        return SL_ECONFIG;
    }
    const char *rest = dot + 1, *mech = strchr(rest, '.');
    const key_def *k = find_key(rest, NULL);
    if (!k && mech) k = find_key(mech + 1, NULL);
    if (!k) {
        SL_WARN("config", "unknown configuration key ignored", "key=%s", key);
        return SL_OK;
    }
    sl_config *scratch = malloc(sizeof *scratch);
    if (!scratch) return SL_ENOMEM;
    sl_err e = check_value(k, v, err, elen);
    if (!e) e = apply(scratch, k, v, err, elen);
    free(scratch);
    if (e) {
        /* Name the key as written, not the global one. */
        snprintf(err, elen, "%s: invalid value \"%s\"", key, v);
        return e;
    }
    size_t lnl = (size_t)(dot - ln);
    int i = 0;
    for (; i < c->noverrides; i++)
        if (strlen(c->overrides[i].listener) == lnl &&
            !strncasecmp(c->overrides[i].listener, ln, lnl) && !strcmp(c->overrides[i].key, rest))
            break;
    if (i == SL_CFG_OVERRIDES_MAX) {
        snprintf(err, elen, "%s: more than %d listener.name overrides", key, SL_CFG_OVERRIDES_MAX);
        return SL_ECONFIG;
    }
    sl_config_override *o = &c->overrides[i];
    memcpy(o->listener, ln, lnl);
    o->listener[lnl] = 0;
    snprintf(o->key, sizeof o->key, "%s", rest);
    snprintf(o->value, sizeof o->value, "%s", v);
    if (i == c->noverrides) c->noverrides++;
    return SL_OK;
}

const char *sl_config_listener_str(const sl_config *c, const char *listener, const char *key) {
    for (int i = 0; listener && i < c->noverrides; i++)
        if (!strcasecmp(c->overrides[i].listener, listener) && !strcmp(c->overrides[i].key, key))
            return c->overrides[i].value[0] ? c->overrides[i].value : NULL;
    const key_def *k = find_key(key, NULL);
    if (!k || (k->type != T_STR && k->type != T_LIST)) return NULL;
    const char *v = (const char *)c + k->off;
    return v[0] ? v : NULL;
}

sl_err sl_config_set(sl_config *c, const char *key, const char *value, char *err, size_t elen) {
    size_t idx;
    const key_def *k = find_key(key, &idx);
    if (!k && !strncmp(key, "listener.name.", 14)) {
        char vb[SL_CFG_STR_MAX + 64];
        snprintf(vb, sizeof vb, "%s", value);
        char *v = vb;
        trim(&v);
        if (strlen(v) >= SL_CFG_STR_MAX) {
            snprintf(err, elen, "%s: value too long", key);
            return SL_ECONFIG;
        }
        return set_override(c, key, v, err, elen);
    }
    if (!k) {
        SL_WARN("config", "unknown configuration key ignored", "key=%s", key);
        return SL_OK;
    }
    char buf[SL_CFG_STR_MAX + 64];
    snprintf(buf, sizeof buf, "%s", value);
    char *v = buf;
    trim(&v);
    sl_err e = check_value(k, v, err, elen);
    if (e == SL_OK) e = apply(c, k, v, err, elen);
    if (e == SL_OK && idx < 256) c->set_mask[idx / 64] |= 1ull << (idx % 64);
    return e;
}

sl_err sl_config_load(sl_config *c, const char *path, char *err, size_t elen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, elen, "cannot open config file %s: %s", path, strerror(errno));
        return SL_ECONFIG;
    }
    snprintf(c->config_file, sizeof c->config_file, "%s", path);
    char line[4096], logical[8192];
    size_t ll = 0;
    sl_err rc = SL_OK;
    int lineno = 0;
    while (rc == SL_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        char *s = line;
        if (ll == 0) {
            trim(&s);
            if (!*s || *s == '#' || *s == '!') continue;
        } else {
            while (isspace((unsigned char)*s)) s++;
        }
        size_t sl = strlen(s);
        bool cont = sl > 0 && s[sl - 1] == '\\';
        if (cont) s[--sl] = 0;
        if (ll + sl >= sizeof logical) {
            snprintf(err, elen, "%s:%d: line too long", path, lineno);
            rc = SL_ECONFIG;
            break;
        }
        memcpy(logical + ll, s, sl + 1);
        ll += sl;
        if (cont) continue;
        ll = 0;
        char *sep = logical + strcspn(logical, "=:");
        if (!*sep) {
            snprintf(err, elen, "%s:%d: expected key=value", path, lineno);
            rc = SL_ECONFIG;
            break;
        }
        *sep = 0;
        char *key = logical, *val = sep + 1;
        trim(&key);
        trim(&val);
        rc = sl_config_set(c, key, val, err, elen);
    }
    fclose(f);
    return rc;
}

/* Every comma-separated item of `value` is one of `allowed` (NULL-terminated). */
static bool list_within(const char *key, const char *value, const char *const *allowed, char *err,
                        size_t elen) {
    for (const char *p = value; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if (!n) break;
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strlen(allowed[i]) == n && !strncmp(allowed[i], p, n);
        if (!ok) {
            snprintf(err, elen, "%s: unknown item \"%.*s\"", key, (int)n, p);
            return false;
        }
        p += n;
    }
    return true;
}

const char *const sl_audit_event_type_names[] = {
    "authenticate", "connection", "refusal",   "management", "denial", "produce",
    "consume",      "describe",   "lifecycle", "detection",  NULL};

/* True when `v` is one of the space-separated words of `allowed`. */
static bool sl_config_word_in(const char *v, const char *allowed) {
    size_t n = strlen(v);
    for (const char *p = allowed; *p;) {
        size_t w = strcspn(p, " ");
        if (w == n && n && !memcmp(p, v, n)) return true;
        p += w;
        while (*p == ' ') p++;
    }
    return false;
}

int sl_config_cleanup_policy(const char *v) {
    bool del = false, comp = false, any = false;
    for (const char *p = v; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if (!n) break;
        if (n == 6 && !strncmp(p, "delete", 6))
            del = true;
        else if (n == 7 && !strncmp(p, "compact", 7))
            comp = true;
        else
            return -1;
        any = true;
        p += n;
    }
    if (!any) return -1;
    return comp ? (del ? 2 : 1) : 0;
}

bool sl_config_parse_ratio(const char *v, double *out) {
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    while (end && isspace((unsigned char)*end)) end++;
    if (errno || end == v || (end && *end) || !(d >= 0.0 && d <= 1.0)) return false;
    *out = d;
    return true;
}

sl_err sl_config_finish(sl_config *c, char *err, size_t elen) {
    if (c->retention_ms_raw != -2)
        c->log_retention_ms = c->retention_ms_raw;
    else if (c->retention_minutes_raw != -2)
        c->log_retention_ms = c->retention_minutes_raw < 0 ? -1 : c->retention_minutes_raw * 60000;
    else
        c->log_retention_ms =
            c->retention_hours_raw < 0 ? -1 : c->retention_hours_raw * 3600 * 1000;
    c->log_cleanup_policy_id = sl_config_cleanup_policy(c->log_cleanup_policy);
    if (c->log_cleanup_policy_id < 0) {
        snprintf(err, elen, "log.cleanup.policy: invalid value \"%s\" (delete, compact or both)",
                 c->log_cleanup_policy);
        return SL_ECONFIG;
    }
    if (!sl_config_parse_ratio(c->log_cleaner_min_cleanable_ratio_raw,
                               &c->log_cleaner_min_cleanable_ratio)) {
        snprintf(err, elen,
                 "log.cleaner.min.cleanable.ratio: invalid value \"%s\" (a number in "
                 "[0, 1])",
                 c->log_cleaner_min_cleanable_ratio_raw);
        return SL_ECONFIG;
    }
    sl_listener_spec ls[16];
    if (sl_listeners_parse(c->listeners, ls, 16, err, elen) <= 0) return SL_ECONFIG;
    if (c->advertised_listeners[0] &&
        sl_listeners_parse(c->advertised_listeners, ls, 16, err, elen) <= 0)
        return SL_ECONFIG;
    for (int i = 0, n = sl_listeners_parse(c->listeners, ls, 16, err, elen); i < n; i++)
        if (sl_listener_protocol(c->listener_security_protocol_map, ls[i].name, err, elen) < 0)
            return SL_ECONFIG;
    static const struct {
        size_t off;
        const char *key, *allowed;
    } k_enums[] = {
        {OFF(sluice_gateway_upstream_security_protocol),
         "sluice.gateway.upstream.security.protocol", "PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL"},
        {OFF(sluice_gateway_upstream_sasl_mechanism), "sluice.gateway.upstream.sasl.mechanism",
         "PLAIN SCRAM-SHA-256 SCRAM-SHA-512 OAUTHBEARER AWS_MSK_IAM"},
        {OFF(sluice_gateway_address_mode), "sluice.gateway.address.mode", "port sni"},
        {OFF(sluice_gateway_encrypt_keys), "sluice.gateway.encrypt.keys", "clear deterministic"},
        {OFF(sluice_gateway_encrypt_headers), "sluice.gateway.encrypt.headers", "encrypt clear"},
        {OFF(sluice_gateway_unencrypted_policy), "sluice.gateway.unencrypted.policy",
         "report reject"},
    };
    for (size_t i = 0; i < sizeof k_enums / sizeof k_enums[0]; i++) {
        const char *v = (const char *)c + k_enums[i].off;
        if (!sl_config_word_in(v, k_enums[i].allowed)) {
            snprintf(err, elen, "%s: invalid value \"%s\" (one of: %s)", k_enums[i].key, v,
                     k_enums[i].allowed);
            return SL_ECONFIG;
        }
    }
    if (strcmp(c->sluice_log_level, "debug") && strcmp(c->sluice_log_level, "info") &&
        strcmp(c->sluice_log_level, "warn") && strcmp(c->sluice_log_level, "error")) {
        snprintf(err, elen, "sluice.log.level: invalid value \"%s\"", c->sluice_log_level);
        return SL_ECONFIG;
    }
    if (strcmp(c->sluice_audit_failure_policy, "block") &&
        strcmp(c->sluice_audit_failure_policy, "continue")) {
        snprintf(err, elen, "sluice.audit.failure.policy: invalid value \"%s\" (block or continue)",
                 c->sluice_audit_failure_policy);
        return SL_ECONFIG;
    }
    if (strcmp(c->sluice_encryption_dir_names, "name") &&
        strcmp(c->sluice_encryption_dir_names, "id")) {
        snprintf(err, elen, "sluice.encryption.dir.names: invalid value \"%s\" (name or id)",
                 c->sluice_encryption_dir_names);
        return SL_ECONFIG;
    }
    if (strcmp(c->sluice_kms_provider, "local") && strcmp(c->sluice_kms_provider, "pkcs11") &&
        strcmp(c->sluice_kms_provider, "kmip") && strcmp(c->sluice_kms_provider, "aws-kms")) {
        snprintf(err, elen,
                 "sluice.kms.provider: invalid value \"%s\" (local, pkcs11, kmip or aws-kms)",
                 c->sluice_kms_provider);
        return SL_ECONFIG;
    }
    static const char *const sinks[] = {"file", "syslog", "topic", NULL};
    if (!list_within("sluice.audit.sinks", c->sluice_audit_sinks, sinks, err, elen))
        return SL_ECONFIG;
    if (!list_within("sluice.audit.enabled.event.types", c->sluice_audit_enabled_event_types,
                     sl_audit_event_type_names, err, elen))
        return SL_ECONFIG;
    if (c->sluice_metrics_listener[0] && strncmp(c->sluice_metrics_listener, "http://", 7) &&
        strncmp(c->sluice_metrics_listener, "https://", 8)) {
        snprintf(err, elen,
                 "sluice.metrics.listener: \"%s\" is not http://host:port or "
                 "https://host:port",
                 c->sluice_metrics_listener);
        return SL_ECONFIG;
    }
    if (c->sluice_iam_sts_listener[0] && strncmp(c->sluice_iam_sts_listener, "https://", 8)) {
        snprintf(err, elen,
                 "sluice.iam.sts.listener: \"%s\" is not https://host:port (the answers carry "
                 "secrets: TLS only)",
                 c->sluice_iam_sts_listener);
        return SL_ECONFIG;
    }
    if (!c->log_dirs[0] || strchr(c->log_dirs, ',')) {
        snprintf(err, elen, "log.dirs: exactly one directory is supported");
        return SL_ECONFIG;
    }
    /* Without a pinned issuer and audience any token from the IdP (for any application)
     * would be accepted. */
    if (c->sasl_oauthbearer_jwks_endpoint_url[0] && !c->sasl_oauthbearer_expected_issuer[0]) {
        snprintf(err, elen,
                 "sasl.oauthbearer.expected.issuer: required when "
                 "sasl.oauthbearer.jwks.endpoint.url is set");
        return SL_ECONFIG;
    }
    if (c->sasl_oauthbearer_jwks_endpoint_url[0] &&
        !c->sasl_oauthbearer_expected_audience[strspn(c->sasl_oauthbearer_expected_audience,
                                                      " ,")]) {
        snprintf(err, elen,
                 "sasl.oauthbearer.expected.audience: required when "
                 "sasl.oauthbearer.jwks.endpoint.url is set");
        return SL_ECONFIG;
    }
    return SL_OK;
}

bool sl_config_format(const sl_config *c, size_t i, char *buf, size_t len) {
    if (i >= NKEYS) return false;
    const key_def *k = &k_keys[i];
    if (is_sensitive(k)) return false;
    const char *base = (const char *)c;
    switch (k->type) {
    case T_INT:
        snprintf(buf, len, "%d", *(const int32_t *)(base + k->off));
        return true;
    case T_LONG: {
        int64_t v = *(const int64_t *)(base + k->off);
        if (v == -2) return false;
        snprintf(buf, len, "%lld", (long long)v);
        return true;
    }
    case T_BOOL:
        snprintf(buf, len, "%s", *(const bool *)(base + k->off) ? "true" : "false");
        return true;
    case T_STR:
    case T_LIST:
        snprintf(buf, len, "%s", base + k->off);
        return base[k->off] != 0;
    }
    return false;
}

bool sl_config_is_set(const sl_config *c, size_t i) {
    return i < 256 && (c->set_mask[i / 64] >> (i % 64)) & 1;
}

int sl_listeners_parse(const char *s, sl_listener_spec *out, int max, char *err, size_t elen) {
    int n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *e = p + strcspn(p, ",");
        char item[512];
        size_t il = (size_t)(e - p);
        if (il >= sizeof item || n >= max) {
            snprintf(err, elen, "listeners: too many or too long entries");
            return -1;
        }
        memcpy(item, p, il);
        item[il] = 0;
        char *sch = strstr(item, "://");
        char *colon = sch ? strrchr(sch + 3, ':') : NULL;
        if (!sch || !colon || sch == item || (size_t)(sch - item) >= sizeof out[n].name) {
            snprintf(err, elen, "listeners: invalid entry \"%s\" (expected NAME://host:port)",
                     item);
            return -1;
        }
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 0 || port > 65535 || end == colon + 1) {
            snprintf(err, elen, "listeners: invalid port in \"%s\"", item);
            return -1;
        }
        memcpy(out[n].name, item, (size_t)(sch - item));
        out[n].name[sch - item] = 0;
        char *h = sch + 3;
        size_t hl = (size_t)(colon - h);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (hl >= sizeof out[n].host) {
            snprintf(err, elen, "listeners: host too long in \"%s\"", item);
            return -1;
        }
        memcpy(out[n].host, h, hl);
        out[n].host[hl] = 0;
        out[n].port = (int)port;
        n++;
        p = e;
    }
    if (n == 0) snprintf(err, elen, "listeners: no listener configured");
    return n;
}

static const char *const k_sec_names[] = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"};

const char *sl_security_protocol_name(sl_security_protocol p) {
    return (unsigned)p < 4 ? k_sec_names[p] : "?";
}

int sl_listener_protocol(const char *map, const char *name, char *err, size_t elen) {
    size_t nl = strlen(name);
    for (const char *p = map; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p + strcspn(p, ",");
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon && (size_t)(colon - p) == nl && !strncmp(p, name, nl)) {
            const char *v = colon + 1;
            size_t vl = (size_t)(e - v);
            while (vl && v[vl - 1] == ' ') vl--;
            for (int i = 0; i < 4; i++)
                if (strlen(k_sec_names[i]) == vl && !strncmp(v, k_sec_names[i], vl)) return i;
            snprintf(err, elen, "listener.security.protocol.map: unknown protocol for %s", name);
            return -1;
        }
        p = e;
    }
    snprintf(err, elen, "listener.security.protocol.map: no entry for listener %s", name);
    return -1;
}

/* SHA-256 (hex) of the effective configuration: each key's name and value in table order, and
 * each listener override's name, except the values of sensitive keys (sl_config_format refuses
 * them) and of overrides that are not plain non-sensitive table keys (a jaas.config holds
 * passwords). Two brokers with the same digest run the same settings; no secret is hashed, so
 * the digest cannot serve to test guesses of one. */
void sl_config_digest(const sl_config *c, char hex[65]) {
    hex[0] = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return;
    }
    static char buf[SL_CFG_STR_MAX + 64];
    for (size_t i = 0; i < sl_config_key_count(); i++) {
        const sl_config_key_info *k = sl_config_key_at(i);
        if (!k || k->sensitive) continue;
        bool has = sl_config_format(c, i, buf, sizeof buf);
        (void)EVP_DigestUpdate(md, k->name, strlen(k->name) + 1);
        (void)EVP_DigestUpdate(md, has ? buf : "", has ? strlen(buf) + 1 : 1);
    }
    for (int32_t i = 0; i < c->noverrides && i < SL_CFG_OVERRIDES_MAX; i++) {
        const sl_config_override *o = &c->overrides[i];
        int ki = sl_config_key_index(o->key);
        const sl_config_key_info *k = ki >= 0 ? sl_config_key_at((size_t)ki) : NULL;
        snprintf(buf, sizeof buf, "listener.name.%s.%s", o->listener, o->key);
        (void)EVP_DigestUpdate(md, buf, strlen(buf) + 1);
        if (k && !k->sensitive) (void)EVP_DigestUpdate(md, o->value, strlen(o->value) + 1);
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (EVP_DigestFinal_ex(md, d, &dl) == 1 && dl == 32)
        for (unsigned i = 0; i < dl; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(md);
}
