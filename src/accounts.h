/* src/accounts.h: user accounts in the store "accounts.users" (KEYVAL,
 * host, user -> record). A record holds the SCRAM credentials (RFC 5802
 * §3: salt, iteration count, StoredKey and ServerKey for SHA-1 and
 * SHA-256), never the password. Host and user are prepared by the caller
 * (RFC 7622); the password is prepared here with OpaqueString. */
#ifndef PALAVER_ACCOUNTS_H
#define PALAVER_ACCOUNTS_H

#include <palaver/defs.h>
#include <palaver/storage.h>

#include "scram.h"

#define PV_ACCOUNT_RECORD_VERSION 1
#define PV_ACCOUNT_SALT_LEN PV_SCRAM_SALT_LEN
#define PV_ACCOUNT_KEY_MAX 32   /* SHA-256 digest */
/* version(1) iterations(u32 BE) salt(16) SHA-1 StoredKey ServerKey (20+20)
 * SHA-256 StoredKey ServerKey (32+32) */
#define PV_ACCOUNT_RECORD_LEN (1 + 4 + PV_ACCOUNT_SALT_LEN + 40 + 64)

/* The serialised record, as stored. */
typedef struct pv_account_record_s {
    uint8_t data[PV_ACCOUNT_RECORD_LEN];
    size_t len;
} pv_account_record_t;

typedef struct pv_account_keys_s {
    uint8_t stored_key[PV_ACCOUNT_KEY_MAX];
    uint8_t server_key[PV_ACCOUNT_KEY_MAX];
    size_t len;                 /* pv_scram_digest_len() of the hash */
} pv_account_keys_t;

typedef struct pv_account_s {
    unsigned iterations;
    uint8_t salt[PV_ACCOUNT_SALT_LEN];
    size_t salt_len;
    pv_account_keys_t keys[2];  /* indexed by pv_scram_hash_t */
} pv_account_t;

/* Builds a record for password (NUL-terminated UTF-8, prepared here with
 * PRECIS OpaqueString, RFC 8265 §4.2) with a fresh random salt. Pure and
 * thread-safe, and slow (two PBKDF2 runs): the server calls it on a worker
 * thread, palaverctl may run several in parallel. PV_ERROR when the
 * password is empty or invalid, iterations is outside
 * PV_SCRAM_MIN_ITERATIONS..PV_SCRAM_MAX_ITERATIONS, or the RNG or the
 * derivation fails. */
pv_rc_t pv_account_record_build(const char *password, unsigned iterations,
                                pv_account_record_t *out);
/* Decodes a stored record. PV_ERROR for an unknown version or length. */
pv_rc_t pv_account_record_parse(const void *data, size_t len,
                                pv_account_t *out);

/* The accounts store of st (opened on first use), or NULL (logged). Same
 * rules as pv_storage_store(). */
pv_store_t *pv_account_store(pv_storage_t *st);

/* Writes follow storage.h: owner thread; PV_OK means cb(arg, rc) will be
 * called after the commit, PV_ERROR means nothing was queued and cb will
 * not be called. */

/* Creates the account from a record built by pv_account_record_build().
 * The existence check and the insert are one transaction: rc PV_AGAIN
 * when the account exists (nothing written). */
pv_rc_t pv_account_create_record(pv_storage_t *st, const char *host,
                                 const char *user,
                                 const pv_account_record_t *rec,
                                 pv_store_done_t *cb, void *arg);
/* pv_account_record_build() then pv_account_create_record(), on the
 * calling thread: for palaverctl and tests, not for the server's loop. */
pv_rc_t pv_account_create(pv_storage_t *st, const char *host,
                          const char *user, const char *password,
                          unsigned iterations, pv_store_done_t *cb,
                          void *arg);
/* Replaces the credentials of an existing account; rc PV_NOTFOUND (nothing
 * written) when there is none. */
pv_rc_t pv_account_set_record(pv_storage_t *st, const char *host,
                              const char *user,
                              const pv_account_record_t *rec,
                              pv_store_done_t *cb, void *arg);
/* pv_account_record_build() then pv_account_set_record(); slow. */
pv_rc_t pv_account_set_password(pv_storage_t *st, const char *host,
                                const char *user, const char *password,
                                unsigned iterations, pv_store_done_t *cb,
                                void *arg);
/* Deletes the account and every row of the user in every store of the
 * environment (roster, offline, archive...). rc PV_NOTFOUND when nothing
 * existed. Firing the user-deleted event is the caller's job. */
pv_rc_t pv_account_delete(pv_storage_t *st, const char *host,
                          const char *user, pv_store_done_t *cb, void *arg);

/* Reads (committed data only). PV_OK and *out filled, PV_NOTFOUND, or
 * PV_ERROR (storage error, corrupt record). */
pv_rc_t pv_account_get(pv_storage_t *st, const char *host, const char *user,
                       pv_account_t *out);
/* PV_OK when the account exists, PV_NOTFOUND, or PV_ERROR. */
pv_rc_t pv_account_exists(pv_storage_t *st, const char *host,
                          const char *user);
/* Each user with an account on host, in key order; cb returns nonzero to
 * stop. PV_OK or PV_ERROR. */
pv_rc_t pv_account_each(pv_storage_t *st, const char *host,
                        pv_store_user_cb_t *cb, void *arg);

#endif
