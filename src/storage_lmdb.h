/* src/storage_lmdb.h: the boundary between the store API (storage.c: key
 * encoding, argument checks, request building) and the LMDB driver
 * (storage_lmdb.c: environment, transactions, writer thread). Internal to
 * those two files and their unit tests. */
#ifndef PALAVER_STORAGE_LMDB_H
#define PALAVER_STORAGE_LMDB_H

#include <lmdb.h>

#include <palaver/storage.h>

struct pv_store_s {
    pv_storage_t *storage;
    char *name;                 /* "module.name" */
    pv_store_kind_t kind;
    MDB_dbi dbi;
    MDB_dbi id_dbi;             /* archives: host, user, id -> u64 ts */
};

typedef enum {
    PV_WOP_PUT,
    PV_WOP_PUT_IF_ABSENT,
    PV_WOP_PUT_IF_PRESENT,
    PV_WOP_DEL,
    PV_WOP_DEL_PREFIX,          /* key: prefix, in store (and its index) */
    PV_WOP_DEL_PREFIX_ALL,      /* key: prefix, in every named database */
    PV_WOP_ARCHIVE_APPEND,      /* key: item key, key2: id index key,
                                 * ts: the item's timestamp */
    PV_WOP_ARCHIVE_DEL_BEFORE,  /* key: prefix (host or host, user) */
    PV_WOP_ARCHIVE_DEL_ID,      /* key: prefix host, user; key2: index key */
    PV_WOP_BARRIER              /* nothing: completes after earlier writes */
} pv_wop_t;

/* One queued write. Everything is owned by the request (copied at
 * submission) and freed after its callback ran. */
typedef struct pv_wreq_s {
    struct pv_wreq_s *next;
    pv_wop_t op;
    pv_store_t *store;          /* NULL for PV_WOP_DEL_PREFIX_ALL */
    uint8_t *key;
    size_t key_len;
    uint8_t *key2;
    size_t key2_len;
    void *val;
    size_t val_len;
    uint64_t ts;
    pv_store_done_t *cb;
    void *arg;
    int rc;
} pv_wreq_t;

/* Queues req (taking ownership) for the writer thread. */
void pv_lmdb_submit(pv_storage_t *st, pv_wreq_t *req);

/* Reads. Return PV_OK, PV_NOTFOUND or PV_ERROR. */
pv_rc_t pv_lmdb_get(pv_store_t *store, const pv_key_t *key, void **val,
                    size_t *len);
/* Calls cb for every entry whose key starts with prefix, in key order,
 * until cb returns nonzero. */
typedef int pv_lmdb_scan_cb_t(const uint8_t *key, size_t key_len,
                              const void *val, size_t val_len, void *arg);
pv_rc_t pv_lmdb_scan(pv_store_t *store, const pv_key_t *prefix,
                     pv_lmdb_scan_cb_t *cb, void *arg);
/* Distinct values of the component after prefix (host): users. */
pv_rc_t pv_lmdb_users(pv_store_t *store, const pv_key_t *prefix,
                      pv_store_user_cb_t *cb, void *arg);
pv_rc_t pv_lmdb_archive_query(pv_store_t *store, const pv_key_t *prefix,
                              const pv_archive_query_t *q,
                              pv_archive_cb_t *cb, void *arg,
                              pv_archive_result_t *res);

#endif
