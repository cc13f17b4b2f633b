/* Private to the pkcs11 provider and its tests (tests/unit/test_kms_pkcs11.c); the key service
 * only sees sl_kms.h. */
#ifndef SL_KMS_PKCS11_H
#define SL_KMS_PKCS11_H
#include <stdbool.h>

#include "kms/sl_kms.h"

/* Makes `k` (a pkcs11 provider) wrap with RFC 5649 key wrap even when the token offers AES-GCM,
 * so the fallback a GCM-less HSM gets is tested on SoftHSM too. Unwrap always follows the
 * format byte of the wrapped form, whatever this says. */
void sl_kms_pkcs11_force_kwp(sl_kms *k, bool on);

#endif
