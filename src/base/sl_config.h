/* Broker configuration in Kafka's server.properties format and key names; Sluice-only keys live
 * under `sluice.`. Every key is described once in a table (sl_config.c) from which parsing,
 * validation, defaults, `--help-config` and DescribeConfigs are derived. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_err.h"

#define SL_CFG_STR_MAX 1024

/* One listener.name.<listener>.<key>=value line. `key` is the rest after the listener name
 * (a table key, or a mechanism-prefixed one such as scram-sha-256.sasl.jaas.config). */
#define SL_CFG_OVERRIDES_MAX 32
typedef struct sl_config_override {
    char listener[64];
    char key[128];
    char value[SL_CFG_STR_MAX];
} sl_config_override;

typedef struct sl_config {
    /* Kafka keys */
    int32_t node_id;
    char listeners[SL_CFG_STR_MAX];
    char advertised_listeners[SL_CFG_STR_MAX];
    char listener_security_protocol_map[SL_CFG_STR_MAX];
    char log_dirs[SL_CFG_STR_MAX];
    int32_t num_partitions;
    int32_t default_replication_factor;
    bool auto_create_topics_enable;
    bool delete_topic_enable;
    int64_t log_segment_bytes;
    int64_t log_roll_ms;
    int64_t log_retention_ms; /* resolved from log.retention.{ms,minutes,hours} */
    int64_t log_retention_bytes;
    int64_t log_retention_check_interval_ms;
    int64_t log_flush_interval_messages;
    int64_t log_flush_interval_ms;
    int64_t log_flush_scheduler_interval_ms;
    int32_t log_index_interval_bytes;
    int32_t log_index_size_max_bytes;
    int32_t message_max_bytes;
    int32_t fetch_max_bytes;
    int32_t socket_request_max_bytes;
    int64_t connections_max_idle_ms;
    int32_t max_connections;
    int32_t group_initial_rebalance_delay_ms;
    int32_t group_min_session_timeout_ms;
    int32_t group_max_session_timeout_ms;
    int64_t offsets_retention_minutes;
    int64_t offsets_retention_check_interval_ms;
    int64_t offsets_topic_segment_bytes;
    int32_t producer_id_expiration_ms;
    int32_t producer_id_expiration_check_interval_ms;
    int32_t transactional_id_expiration_ms;
    int32_t transaction_max_timeout_ms;
    /* Log cleaner (docs/compaction.md). log_cleanup_policy_id: 0 delete, 1 compact,
     * 2 compact,delete (sl_config_cleanup_policy); the ratio is parsed from its text. */
    char log_cleanup_policy[SL_CFG_STR_MAX];
    int32_t log_cleanup_policy_id;
    int64_t log_cleaner_delete_retention_ms;
    char log_cleaner_min_cleanable_ratio_raw[SL_CFG_STR_MAX];
    double log_cleaner_min_cleanable_ratio;
    int64_t log_cleaner_min_compaction_lag_ms;
    int64_t log_cleaner_max_compaction_lag_ms;
    int64_t log_cleaner_dedupe_buffer_size;
    int64_t log_cleaner_backoff_ms;
    bool log_cleaner_enable;
    /* SASL / sessions (src/auth) */
    char sasl_enabled_mechanisms[SL_CFG_STR_MAX];
    int32_t connection_failed_authentication_delay_ms;
    int64_t connections_max_reauth_ms;
    int32_t max_connections_per_ip;
    char super_users[SL_CFG_STR_MAX];
    bool sluice_sasl_plain_allow_insecure;
    char sluice_sasl_credentials_file[SL_CFG_STR_MAX];
    int32_t sluice_sasl_scram_iterations;
    /* Authorization (src/acl) */
    char authorizer_class_name[SL_CFG_STR_MAX];
    bool allow_everyone_if_no_acl_found;
    bool sluice_authorizer_enable;
    char sluice_acl_file[SL_CFG_STR_MAX];
    /* Sluice keys */
    int32_t sluice_preauth_max_bytes;
    int32_t sluice_max_inflight_requests;
    int64_t sluice_fetch_memory_max_bytes;
    int64_t sluice_authentication_timeout_ms;
    int64_t sluice_shutdown_timeout_ms;
    char sluice_log_level[16];
    bool sluice_provision_enable;
    /* OAUTHBEARER (src/auth/sl_jwt.c) */
    char sasl_oauthbearer_jwks_endpoint_url[SL_CFG_STR_MAX];
    int64_t sasl_oauthbearer_jwks_endpoint_refresh_ms;
    char sasl_oauthbearer_expected_issuer[SL_CFG_STR_MAX];
    char sasl_oauthbearer_expected_audience[SL_CFG_STR_MAX];
    int32_t sasl_oauthbearer_clock_skew_seconds;
    char sasl_oauthbearer_sub_claim_name[SL_CFG_STR_MAX];
    char sasl_oauthbearer_scope_claim_name[SL_CFG_STR_MAX];
    char sluice_sasl_oauthbearer_jwks_endpoint_truststore[SL_CFG_STR_MAX];
    /* TLS (src/crypto, src/net/sl_tls.c) */
    char ssl_keystore_type[SL_CFG_STR_MAX];
    char ssl_keystore_location[SL_CFG_STR_MAX];
    char ssl_key_password[SL_CFG_STR_MAX]; /* sensitive: never formatted or logged */
    char ssl_truststore_type[SL_CFG_STR_MAX];
    char ssl_truststore_location[SL_CFG_STR_MAX];
    char ssl_enabled_protocols[SL_CFG_STR_MAX];
    char ssl_cipher_suites[SL_CFG_STR_MAX];
    char ssl_client_auth[SL_CFG_STR_MAX];
    char ssl_principal_mapping_rules[SL_CFG_STR_MAX];
    int64_t sluice_ssl_reload_interval_ms;
    char sluice_ssl_groups[SL_CFG_STR_MAX];
    int32_t sluice_ssl_handshake_rate_per_ip;
    int32_t sluice_ssl_max_handshakes_per_ip;
    /* Audit trail (src/audit) */
    bool sluice_audit_enable;
    char sluice_audit_dir[SL_CFG_STR_MAX];
    char sluice_audit_sinks[SL_CFG_STR_MAX];
    char sluice_audit_enabled_event_types[SL_CFG_STR_MAX];
    char sluice_audit_excluded_principals[SL_CFG_STR_MAX];
    char sluice_audit_excluded_topics[SL_CFG_STR_MAX];
    int64_t sluice_audit_data_interval_ms;
    char sluice_audit_failure_policy[SL_CFG_STR_MAX];
    int64_t sluice_audit_file_max_bytes;
    int64_t sluice_audit_file_max_age_ms;
    int32_t sluice_audit_file_retention_files;
    int64_t sluice_audit_checkpoint_interval_ms;
    char sluice_audit_signing_key_file[SL_CFG_STR_MAX];
    char sluice_audit_syslog_socket[SL_CFG_STR_MAX];
    int32_t sluice_audit_queue_max_events;
    /* Metrics endpoint (src/metrics) */
    char sluice_metrics_listener[SL_CFG_STR_MAX];
    char sluice_metrics_ssl_keystore_location[SL_CFG_STR_MAX];
    char sluice_metrics_bearer_token_file[SL_CFG_STR_MAX];
    /* Detections (src/guard) */
    bool sluice_guard_enable;
    int64_t sluice_guard_window_ms;
    int32_t sluice_guard_auth_failures_per_address;
    int32_t sluice_guard_auth_failures_per_principal;
    int32_t sluice_guard_denials_per_principal;
    bool sluice_guard_new_address_enable;
    bool sluice_guard_new_topic_read_enable;
    int32_t sluice_guard_cert_expiry_days;
    int32_t sluice_guard_disk_free_min_percent;
    int32_t sluice_guard_block_seconds;
    bool sluice_encryption_enable;
    char sluice_encryption_dir_names[SL_CFG_STR_MAX];
    char sluice_kms_provider[SL_CFG_STR_MAX];
    char sluice_kms_keyring_file[SL_CFG_STR_MAX];
    int64_t sluice_kms_cache_ttl_ms;
    int64_t sluice_kms_timeout_ms;
    char sluice_kms_local_master_key_file[SL_CFG_STR_MAX];
    char sluice_kms_local_master_key_env[SL_CFG_STR_MAX];
    char sluice_kms_pkcs11_module[SL_CFG_STR_MAX];
    char sluice_kms_pkcs11_token_label[SL_CFG_STR_MAX];
    char sluice_kms_pkcs11_pin_file[SL_CFG_STR_MAX];
    char sluice_kms_pkcs11_key_label[SL_CFG_STR_MAX];
    char sluice_kms_kmip_endpoint[SL_CFG_STR_MAX];
    char sluice_kms_kmip_ca_file[SL_CFG_STR_MAX];
    char sluice_kms_kmip_cert_file[SL_CFG_STR_MAX];
    char sluice_kms_kmip_key_file[SL_CFG_STR_MAX];
    char sluice_kms_aws_region[SL_CFG_STR_MAX];
    char sluice_kms_aws_key_id[SL_CFG_STR_MAX];
    char sluice_kms_aws_endpoint[SL_CFG_STR_MAX];
    char sluice_kms_aws_ca_file[SL_CFG_STR_MAX];
    char sluice_kms_aws_profile[SL_CFG_STR_MAX];
    char sluice_kms_aws_imds_endpoint[SL_CFG_STR_MAX];
    char sluice_ctl_socket[SL_CFG_STR_MAX];
    char sluice_secrets_dir[SL_CFG_STR_MAX];
    char sluice_iam_file[SL_CFG_STR_MAX];
    char sluice_iam_key_file[SL_CFG_STR_MAX];
    char sluice_iam_region[SL_CFG_STR_MAX];
    char sluice_iam_account_id[SL_CFG_STR_MAX];
    char sluice_iam_cluster_name[SL_CFG_STR_MAX];
    char sluice_iam_cluster_uuid[SL_CFG_STR_MAX];
    char sluice_iam_hosts[SL_CFG_STR_MAX];
    int64_t sluice_iam_clock_skew_ms;
    int64_t sluice_iam_max_session_duration_ms;
    char sluice_iam_sts_listener[SL_CFG_STR_MAX];
    char sluice_iam_sts_ssl_keystore_location[SL_CFG_STR_MAX];
    char sluice_protect_policy_file[SL_CFG_STR_MAX];
    char sluice_protect_grants_file[SL_CFG_STR_MAX];
    char sluice_protect_subject_keys_file[SL_CFG_STR_MAX];
    int64_t sluice_protect_reload_interval_ms;
    /* gateway mode (`sluice gateway`, src/gateway, docs/gateway.md) */
    char sluice_gateway_upstream_bootstrap_servers[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_security_protocol[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_ssl_ca_location[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_ssl_certificate_location[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_ssl_key_location[SL_CFG_STR_MAX];
    bool sluice_gateway_upstream_ssl_verify_hostname;
    char sluice_gateway_upstream_sasl_mechanism[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_sasl_username[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_sasl_password[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_sasl_password_file[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_sasl_oauthbearer_token[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_sasl_oauthbearer_token_command[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_aws_region[SL_CFG_STR_MAX];
    char sluice_gateway_upstream_aws_profile[SL_CFG_STR_MAX];
    int64_t sluice_gateway_upstream_connect_timeout_ms;
    int64_t sluice_gateway_upstream_request_timeout_ms;
    int64_t sluice_gateway_metadata_refresh_ms;
    char sluice_gateway_address_mode[SL_CFG_STR_MAX];
    char sluice_gateway_advertised_host[SL_CFG_STR_MAX];
    int32_t sluice_gateway_node_port_base;
    int32_t sluice_gateway_node_port_count;
    int32_t sluice_gateway_node_id_min;
    char sluice_gateway_sni_pattern[SL_CFG_STR_MAX];
    bool sluice_gateway_encrypt_enable;
    char sluice_gateway_encrypt_topics[SL_CFG_STR_MAX];
    char sluice_gateway_encrypt_keys[SL_CFG_STR_MAX];
    char sluice_gateway_encrypt_headers[SL_CFG_STR_MAX];
    char sluice_gateway_unencrypted_policy[SL_CFG_STR_MAX];
    char sluice_gateway_principal_mapping_file[SL_CFG_STR_MAX];
    char config_file[SL_CFG_STR_MAX]; /* the file sl_config_load read last ("": none) */
    /* listener.name.<listener>.<key> overrides, read through sl_config_listener_str() */
    sl_config_override overrides[SL_CFG_OVERRIDES_MAX];
    int32_t noverrides;
    /* Raw retention keys, resolved into log_retention_ms by sl_config_finish (ms > minutes >
     * hours, as Kafka). -2 means unset. */
    int64_t retention_hours_raw, retention_minutes_raw, retention_ms_raw;
    uint64_t set_mask[4]; /* bit i: key i set explicitly (room for 256 keys) */
} sl_config;

/* Fills `c` with the defaults: a broker that works on a fresh machine (data under ./sluice-data,
 * PLAINTEXT on 127.0.0.1:9092). */
void sl_config_defaults(sl_config *c);
/* Applies one key=value. Unknown keys warn (once) and return SL_OK; an invalid value returns
 * SL_ECONFIG with a message naming the key in `err` (err_len bytes). */
sl_err sl_config_set(sl_config *c, const char *key, const char *value, char *err, size_t err_len);
/* Reads a server.properties file (`#`/`!` comments, `key=value` or `key: value`, trailing `\`
 * continuations) and applies every line. */
sl_err sl_config_load(sl_config *c, const char *path, char *err, size_t err_len);
/* Checks relations between keys after everything is applied (e.g. retention precedence). */
sl_err sl_config_finish(sl_config *c, char *err, size_t err_len);

/* The event types sluice.audit.enabled.event.types may list (NULL-terminated), in the order of
 * sl_audit_type (src/audit/sl_audit.h). */
extern const char *const sl_audit_event_type_names[];

/* SHA-256 (hex, 64 characters and a NUL) of the effective configuration without any secret:
 * the same digest means the same settings (the audit trail records it at each start). */
void sl_config_digest(const sl_config *c, char hex[65]);

/* Iteration over the key table for help output and DescribeConfigs. */
typedef struct sl_config_key_info {
    const char *name;
    const char *type; /* "int", "long", "boolean", "string", "list" */
    const char *doc;
    bool sensitive; /* value never shown (DescribeConfigs answers null) */
} sl_config_key_info;
size_t sl_config_key_count(void);
const sl_config_key_info *sl_config_key_at(size_t i);
/* Index of `name` in the key table, or -1. */
int sl_config_key_index(const char *name);
/* cleanup.policy as Kafka spells it (a list of delete and compact, in any order, at least one):
 * 0 delete, 1 compact, 2 compact,delete; -1 when invalid. */
int sl_config_cleanup_policy(const char *v);
/* A ratio in [0, 1] (min.cleanable.dirty.ratio); false when invalid. */
bool sl_config_parse_ratio(const char *v, double *out);
/* The directory for secrets Sluice creates itself (sluice.secrets.dir; default sluice-secrets
 * beside log.dirs), outside the data directory so that a copy or backup of log.dirs holds no
 * secret. */
void sl_config_secrets_dir(const sl_config *c, char *out, size_t n);
/* `name` in the directory that holds log.dirs (beside the data directory, not in it). */
void sl_config_beside_log_dirs(const sl_config *c, const char *name, char *out, size_t n);
/* The default path of the secret file `name`: in the secrets directory, except that a file of
 * that name already in log.dirs (written there by an older version) and absent from the secrets
 * directory keeps being used (*legacy set, when not NULL), so an upgrade finds its keys. */
void sl_config_secret_path(const sl_config *c, const char *name, char *out, size_t n, bool *legacy);
/* The directory a set of provisioned files lives in: the secrets directory, or log.dirs when
 * `probe` (one file of the set) is there from an older version (see sl_config_secret_path). */
void sl_config_secret_dir_for(const sl_config *c, const char *probe, char *out, size_t n);
/* Formats the current value of key `i` into buf; returns false for keys with no value (null). */
bool sl_config_format(const sl_config *c, size_t i, char *buf, size_t len);
/* True when key `i` was set explicitly (file or override) rather than defaulted. */
bool sl_config_is_set(const sl_config *c, size_t i);

/* The value of string/list key `key` for listener `listener` (matched case-insensitively, as
 * Kafka's lowercase prefix): its listener.name.<listener>.<key> override if one was set, else
 * the global value. NULL when neither has a value. Points into `c`. */
const char *sl_config_listener_str(const sl_config *c, const char *listener, const char *key);

/* One parsed listener from `listeners`: NAME://host:port. */
typedef struct sl_listener_spec {
    char name[64];
    char host[256];
    int port;
} sl_listener_spec;
/* Security protocols of listeners (listener.security.protocol.map). */
typedef enum {
    SL_SEC_PLAINTEXT,
    SL_SEC_SSL,
    SL_SEC_SASL_PLAINTEXT,
    SL_SEC_SASL_SSL
} sl_security_protocol;
/* Looks up listener `name` in the map string; -1 (with err) when absent or invalid. */
int sl_listener_protocol(const char *map, const char *name, char *err, size_t err_len);
const char *sl_security_protocol_name(sl_security_protocol p);

/* Parses a listeners list; returns the count (<= max) or -1 with err filled. */
int sl_listeners_parse(const char *s, sl_listener_spec *out, int max, char *err, size_t err_len);

#endif
