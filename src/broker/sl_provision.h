/* Secure by default: on a machine with no TLS material and no SCRAM users, the first start
 * creates them so that `sluice serve` alone gives a SASL_SSL broker clients can use. */
#ifndef SL_BROKER_PROVISION_H
#define SL_BROKER_PROVISION_H
#include <stddef.h>

#include "base/sl_config.h"
#include "base/sl_err.h"

/* Runs before the broker starts (after the config is complete), unless
 * sluice.provision.enable=false. For TLS listeners with no ssl.keystore.location it creates (or
 * reuses) a CA and broker certificate in log.dirs and points the keystore at them. For SASL
 * listeners offering SCRAM, when the credential store has no user, it creates `admin` with a
 * random password and writes client.properties (librdkafka keys) and client-java.properties
 * (Java keys), 0600, in log.dirs. The generated admin is added to super.users on every start.
 * Edits `cfg` in place. Never logs the password. */
sl_err sl_provision(sl_config *cfg, char *err, size_t err_len);

#endif
