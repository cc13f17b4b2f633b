/* Certificate generation (see sl_certgen.h). */
#include "crypto/sl_certgen.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_logging.h"

EVP_PKEY *sl_cert_keygen(void) { return EVP_EC_gen("P-256"); }

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    bool ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

X509 *sl_cert_issue(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int days,
                    bool is_ca, const char *san) {
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    unsigned char rnd[16];
    bool ok = x && bn && RAND_bytes(rnd, sizeof rnd) == 1;
    if (ok) {
        rnd[0] &= 0x7f; /* serials are positive */
        ok = BN_bin2bn(rnd, sizeof rnd, bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    }
    X509_NAME *nm = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && X509_set_version(x, 2) == 1 &&
         X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"Sluice", -1, -1,
                                    0) == 1 &&
         X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) == 1 &&
         X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
         X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) && X509_set_pubkey(x, key) == 1;
    X509 *iss = issuer ? issuer : x;
    if (ok && is_ca)
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, iss, NID_subject_key_identifier, "hash");
    else if (ok)
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, iss, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, iss, NID_subject_key_identifier, "hash") &&
             (!san || add_ext(x, iss, NID_subject_alt_name, san));
    if (ok && issuer) ok = add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
    ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    BN_free(bn);
    if (!ok) {
        ERR_clear_error();
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Writes `certs` then `key` (either may be absent) as PEM to `path`, atomically, with `mode`. */
static sl_err write_pem(const char *path, mode_t mode, X509 *const *certs, int ncerts,
                        EVP_PKEY *key, char *err, size_t elen) {
    BIO *b = BIO_new(BIO_s_mem());
    bool ok = b != NULL;
    for (int i = 0; ok && i < ncerts; i++) ok = PEM_write_bio_X509(b, certs[i]) == 1;
    if (ok && key) ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1;
    char *data = NULL;
    long len = ok ? BIO_get_mem_data(b, &data) : 0;
    char tmp[4096];
    int fd = -1;
    if (ok && (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) < sizeof tmp) {
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    }
    int e = 0;
    if (fd >= 0) {
        ok = fchmod(fd, mode) == 0 && write(fd, data, (size_t)len) == len && fsync(fd) == 0;
        if (!ok) e = errno;
        ok = close(fd) == 0 && ok && rename(tmp, path) == 0;
        if (!ok && !e) e = errno;
        if (!ok) unlink(tmp);
    } else {
        if (ok) e = errno;
        ok = false;
    }
    if (data && len > 0) OPENSSL_cleanse(data, (size_t)len);
    BIO_free(b);
    if (!ok) {
        snprintf(err, elen, "cannot write %s: %s", path, e ? strerror(e) : "encoding failed");
        ERR_clear_error();
        return SL_EIO;
    }
    return SL_OK;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static sl_err load_ca(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key,
                      char *err, size_t elen) {
    FILE *f = fopen(cert_path, "r");
    *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    f = fopen(key_path, "r");
    *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    if (!*cert || !*key || X509_check_private_key(*cert, *key) != 1) {
        ERR_clear_error();
        snprintf(err, elen, "cannot use the existing CA in %s and %s", cert_path, key_path);
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
        return SL_ECONFIG;
    }
    return SL_OK;
}

sl_err sl_tls_bootstrap(const char *dir, char *err, size_t elen) {
    char ca[4096], cakey[4096], broker[4096];
    if ((size_t)snprintf(ca, sizeof ca, "%s/ca.pem", dir) >= sizeof ca ||
        (size_t)snprintf(cakey, sizeof cakey, "%s/ca-key.pem", dir) >= sizeof cakey ||
        (size_t)snprintf(broker, sizeof broker, "%s/broker.pem", dir) >= sizeof broker) {
        snprintf(err, elen, "directory name too long");
        return SL_EINVAL;
    }
    if (exists(broker)) return SL_OK;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, elen, "cannot create %s: %s", dir, strerror(errno));
        return SL_EIO;
    }
    X509 *cacert = NULL, *leaf = NULL;
    EVP_PKEY *cak = NULL, *bk = NULL;
    sl_err e = SL_OK;
    if (exists(ca) && exists(cakey)) {
        e = load_ca(ca, cakey, &cacert, &cak, err, elen);
    } else {
        cak = sl_cert_keygen();
        cacert = cak ? sl_cert_issue(cak, "Sluice CA", NULL, NULL, 3650, true, NULL) : NULL;
        if (!cacert) {
            snprintf(err, elen, "cannot generate the CA certificate");
            e = SL_ENOMEM;
        }
        /* Key first: a CA certificate without its key would be unusable next time. */
        if (!e) e = write_pem(cakey, 0600, NULL, 0, cak, err, elen);
        if (!e) e = write_pem(ca, 0644, &cacert, 1, NULL, err, elen);
        if (!e) SL_INFO("tls", "created a certificate authority", "file=%s", ca);
    }
    if (!e) {
        bk = sl_cert_keygen();
        leaf = bk ? sl_cert_issue(bk, "localhost", cacert, cak, 365, false,
                                  "DNS:localhost,IP:127.0.0.1")
                  : NULL;
        if (!leaf) {
            snprintf(err, elen, "cannot generate the broker certificate");
            e = SL_ENOMEM;
        }
    }
    if (!e) {
        X509 *chain[2] = {leaf, cacert};
        e = write_pem(broker, 0600, chain, 2, bk, err, elen);
        if (!e) SL_INFO("tls", "created the broker certificate", "file=%s", broker);
    }
    X509_free(leaf);
    X509_free(cacert);
    EVP_PKEY_free(bk);
    EVP_PKEY_free(cak);
    return e;
}
