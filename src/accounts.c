/* src/accounts.c: account records (SCRAM credentials, never passwords) and
 * their storage in "accounts.users". Key derivation is scram.c's, password
 * preparation jid.c's, transactions storage.c's. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <palaver/jid.h>
#include <palaver/log.h>

#include "accounts.h"

#define ACCOUNTS_CTX "accounts"

/* Record layout, version 1 (offsets). */
#define REC_ITER 1
#define REC_SALT (REC_ITER + 4)
#define REC_SHA1 (REC_SALT + PV_ACCOUNT_SALT_LEN)
#define REC_SHA256 (REC_SHA1 + 40)

static const struct {
    pv_scram_hash_t hash;
    size_t offset;
    size_t len;
} rec_keys[] = {
    { PV_SCRAM_SHA1, REC_SHA1, 20 },
    { PV_SCRAM_SHA256, REC_SHA256, 32 },
};

pv_rc_t
pv_account_record_build(const char *password, unsigned iterations,
                        pv_account_record_t *out)
{
    uint8_t *p = out->data;
    char *prepared;
    size_t i;
    pv_rc_t rc = PV_OK;

    memset(out, 0, sizeof(*out));
    if (password == NULL || iterations < PV_SCRAM_MIN_ITERATIONS ||
        iterations > PV_SCRAM_MAX_ITERATIONS)
        return PV_ERROR;
    /* RFC 7677 §4 / RFC 8265 §4.2: SCRAM hashes the OpaqueString form, so
     * that a client typing the same password in another normalisation
     * still authenticates. */
    prepared = pv_precis_opaque(password, strlen(password));
    if (prepared == NULL)
        return PV_ERROR;
    p[0] = PV_ACCOUNT_RECORD_VERSION;
    p[REC_ITER] = (uint8_t)(iterations >> 24);
    p[REC_ITER + 1] = (uint8_t)(iterations >> 16);
    p[REC_ITER + 2] = (uint8_t)(iterations >> 8);
    p[REC_ITER + 3] = (uint8_t)iterations;
    if (RAND_bytes(p + REC_SALT, PV_ACCOUNT_SALT_LEN) != 1) {
        pv_log(PV_LOG_ERROR, ACCOUNTS_CTX, "no random bytes for a salt");
        rc = PV_ERROR;
    }
    for (i = 0; rc == PV_OK && i < PV_COUNTOF(rec_keys); i++) {
        if (pv_scram_derive(rec_keys[i].hash, prepared, p + REC_SALT,
                            PV_ACCOUNT_SALT_LEN, iterations,
                            p + rec_keys[i].offset,
                            p + rec_keys[i].offset + rec_keys[i].len)
            != PV_OK)
            rc = PV_ERROR;
    }
    OPENSSL_cleanse(prepared, strlen(prepared));
    free(prepared);
    if (rc != PV_OK) {
        OPENSSL_cleanse(out, sizeof(*out));
        return rc;
    }
    out->len = PV_ACCOUNT_RECORD_LEN;
    return PV_OK;
}

pv_rc_t
pv_account_record_parse(const void *data, size_t len, pv_account_t *out)
{
    const uint8_t *p = data;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (len != PV_ACCOUNT_RECORD_LEN || p[0] != PV_ACCOUNT_RECORD_VERSION)
        return PV_ERROR;
    out->iterations = (unsigned)p[REC_ITER] << 24 |
                      (unsigned)p[REC_ITER + 1] << 16 |
                      (unsigned)p[REC_ITER + 2] << 8 | p[REC_ITER + 3];
    if (out->iterations == 0)
        return PV_ERROR;
    memcpy(out->salt, p + REC_SALT, PV_ACCOUNT_SALT_LEN);
    out->salt_len = PV_ACCOUNT_SALT_LEN;
    for (i = 0; i < PV_COUNTOF(rec_keys); i++) {
        pv_account_keys_t *k = &out->keys[rec_keys[i].hash];

        k->len = rec_keys[i].len;
        memcpy(k->stored_key, p + rec_keys[i].offset, k->len);
        memcpy(k->server_key, p + rec_keys[i].offset + k->len, k->len);
    }
    return PV_OK;
}

pv_store_t *
pv_account_store(pv_storage_t *st)
{
    return pv_storage_store(st, "accounts", "users", PV_STORE_KEYVAL);
}

static int
valid_names(const char *host, const char *user)
{
    return host != NULL && *host != '\0' && user != NULL && *user != '\0';
}

pv_rc_t
pv_account_create_record(pv_storage_t *st, const char *host,
                         const char *user, const pv_account_record_t *rec,
                         pv_store_done_t *cb, void *arg)
{
    pv_store_t *store;

    if (!valid_names(host, user) || rec == NULL ||
        rec->len != PV_ACCOUNT_RECORD_LEN ||
        (store = pv_account_store(st)) == NULL)
        return PV_ERROR;
    return pv_store_put_if_absent(store, host, user, NULL, rec->data,
                                  rec->len, cb, arg);
}

pv_rc_t
pv_account_create(pv_storage_t *st, const char *host, const char *user,
                  const char *password, unsigned iterations,
                  pv_store_done_t *cb, void *arg)
{
    pv_account_record_t rec;
    pv_rc_t rc;

    if (!valid_names(host, user) ||
        pv_account_record_build(password, iterations, &rec) != PV_OK)
        return PV_ERROR;
    rc = pv_account_create_record(st, host, user, &rec, cb, arg);
    OPENSSL_cleanse(&rec, sizeof(rec));
    return rc;
}

pv_rc_t
pv_account_set_record(pv_storage_t *st, const char *host, const char *user,
                      const pv_account_record_t *rec, pv_store_done_t *cb,
                      void *arg)
{
    pv_store_t *store;

    if (!valid_names(host, user) || rec == NULL ||
        rec->len != PV_ACCOUNT_RECORD_LEN ||
        (store = pv_account_store(st)) == NULL)
        return PV_ERROR;
    /* If-present: a password change racing an account deletion must not
     * resurrect the account. */
    return pv_store_put_if_present(store, host, user, NULL, rec->data,
                                   rec->len, cb, arg);
}

pv_rc_t
pv_account_set_password(pv_storage_t *st, const char *host, const char *user,
                        const char *password, unsigned iterations,
                        pv_store_done_t *cb, void *arg)
{
    pv_account_record_t rec;
    pv_rc_t rc;

    if (!valid_names(host, user) ||
        pv_account_record_build(password, iterations, &rec) != PV_OK)
        return PV_ERROR;
    rc = pv_account_set_record(st, host, user, &rec, cb, arg);
    OPENSSL_cleanse(&rec, sizeof(rec));
    return rc;
}

pv_rc_t
pv_account_delete(pv_storage_t *st, const char *host, const char *user,
                  pv_store_done_t *cb, void *arg)
{
    if (!valid_names(host, user))
        return PV_ERROR;
    return pv_storage_delete_user_everywhere(st, host, user, cb, arg);
}

pv_rc_t
pv_account_get(pv_storage_t *st, const char *host, const char *user,
               pv_account_t *out)
{
    pv_store_t *store;
    void *val;
    size_t len;
    pv_rc_t rc;

    memset(out, 0, sizeof(*out));
    if (!valid_names(host, user) || (store = pv_account_store(st)) == NULL)
        return PV_ERROR;
    rc = pv_store_get(store, host, user, NULL, &val, &len);
    if (rc != PV_OK)
        return rc;
    rc = pv_account_record_parse(val, len, out);
    if (rc != PV_OK)
        pv_log(PV_LOG_ERROR, ACCOUNTS_CTX, "corrupt account record for "
               "%s@%s", user, host);
    OPENSSL_cleanse(val, len);
    free(val);
    return rc;
}

pv_rc_t
pv_account_exists(pv_storage_t *st, const char *host, const char *user)
{
    pv_store_t *store;
    void *val;
    size_t len;
    pv_rc_t rc;

    if (!valid_names(host, user) || (store = pv_account_store(st)) == NULL)
        return PV_ERROR;
    /* A record this build cannot parse still means the name is taken. */
    rc = pv_store_get(store, host, user, NULL, &val, &len);
    if (rc == PV_OK) {
        OPENSSL_cleanse(val, len);
        free(val);
    }
    return rc;
}

pv_rc_t
pv_account_each(pv_storage_t *st, const char *host, pv_store_user_cb_t *cb,
                void *arg)
{
    pv_store_t *store;

    if (host == NULL || cb == NULL || (store = pv_account_store(st)) == NULL)
        return PV_ERROR;
    return pv_store_users(store, host, cb, arg);
}
