/* include/palaver/storage.h: the store API (keyval, map and archive stores
 * in one LMDB environment), the key tuple encoding of CONTRACTS.md §4 and
 * the storage lifecycle used by the core and palaverctl. Modules get their
 * stores through pv_store_open() (module.h) and never see LMDB.
 *
 * Threads: reads are synchronous on the calling thread and see committed
 * data only. Writes are queued, applied by one writer thread in group
 * commits, and their callbacks run on the owner thread from
 * pv_storage_run_completions(), in submission order. A write callback is
 * the moment of durability: acknowledge to the peer from it, not before.
 * A caller that needs to read its own write waits for that callback. */
#ifndef PALAVER_STORAGE_H
#define PALAVER_STORAGE_H

#include <palaver/defs.h>

/* ---- key tuples (CONTRACTS.md §4) ------------------------------------ */

/* Longest encoded key: LMDB's compiled-in maximum key size. */
#define PV_KEY_MAX 511

/* An encoded tuple: strings as u16 big-endian length + bytes, integers
 * big-endian. memcmp order of encodings (shorter first on a tie, as LMDB
 * compares) is tuple order: component by component, strings by length
 * then bytes, integers numerically; the encoding of (host, user) is a
 * byte prefix of every key of that user and of no other key. */
typedef struct pv_key_s {
    size_t len;
    int is_overflow;            /* an add did not fit: key unusable */
    uint8_t data[PV_KEY_MAX];
} pv_key_t;

void pv_key_init(pv_key_t *k);
/* Appends a string of len bytes (any bytes). Sets is_overflow when it
 * does not fit or len > 65535. */
void pv_key_add_str(pv_key_t *k, const char *s, size_t len);
void pv_key_add_u64(pv_key_t *k, uint64_t v);

/* A cursor over an encoded key; borrows the bytes. */
typedef struct pv_key_reader_s {
    const uint8_t *p;
    size_t left;
} pv_key_reader_t;

void pv_key_reader_init(pv_key_reader_t *r, const void *data, size_t len);
/* *s points into the key (not NUL-terminated). PV_ERROR when truncated. */
pv_rc_t pv_key_read_str(pv_key_reader_t *r, const char **s, size_t *len);
pv_rc_t pv_key_read_u64(pv_key_reader_t *r, uint64_t *v);
/* True when every byte has been read. */
int pv_key_reader_is_done(const pv_key_reader_t *r);
/* The order LMDB keeps keys in: memcmp, then the shorter first. */
int pv_key_cmp(const void *a, size_t a_len, const void *b, size_t b_len);

/* ---- environment ----------------------------------------------------- */

typedef struct pv_storage_s pv_storage_t;
typedef struct pv_store_s pv_store_t;

typedef enum {
    PV_STORE_KEYVAL,            /* host, user -> blob */
    PV_STORE_MAP,               /* host, user, key -> blob */
    PV_STORE_ARCHIVE            /* host, user, timestamp_us, id -> blob */
} pv_store_kind_t;

/* Schema version this build writes; newer environments are refused. */
#define PV_STORAGE_SCHEMA_VERSION 1

typedef struct pv_storage_opts_s {
    size_t initial_map_size;    /* 0: 64 MiB; the map doubles when full */
    size_t max_map_size;        /* 0: 1 TiB; growth stops here */
    int is_nosync;              /* MDB_NOSYNC: commits survive a crash of
                                 * the process but not of the machine */
    /* Called on the writer thread after each commit (or failed batch)
     * when completions are waiting; it must only wake the owner thread
     * (uv_async_send), which then calls pv_storage_run_completions().
     * NULL: the owner polls or uses pv_storage_sync(). */
    void (*wake)(void *arg);
    void *wake_arg;
} pv_storage_opts_t;

/* Opens (creating, 0700 directory, 0600 files) the environment in
 * directory path and starts the writer thread. opts may be NULL. Checks
 * the schema version in the "meta" table: newer than
 * PV_STORAGE_SCHEMA_VERSION is an error, older is migrated forward.
 * Returns NULL on error (logged). The calling thread becomes the owner
 * thread: the one that runs completions. */
pv_storage_t *pv_storage_open(const char *path, const pv_storage_opts_t *opts);
/* Commits everything queued, runs the remaining completions on the
 * calling (owner) thread, stops the writer and frees every store. NULL is
 * a no-op. */
void pv_storage_close(pv_storage_t *st);
/* Runs the callbacks of committed (or failed) writes, in submission order,
 * on the calling owner thread. Callbacks may submit new writes and read.
 * Returns the number of callbacks run. */
size_t pv_storage_run_completions(pv_storage_t *st);
/* Blocks until every write queued so far is committed (even when corked),
 * then runs completions. For palaverctl, tests and shutdown; never from a
 * read callback (the writer may need the map lock that read holds). */
void pv_storage_sync(pv_storage_t *st);
/* Group commit per loop turn: while corked (nestable), queued writes wait
 * and go into one transaction at the last uncork. Owner thread only. */
void pv_storage_cork(pv_storage_t *st);
void pv_storage_uncork(pv_storage_t *st);

#define PV_STORAGE_COMMIT_BUCKETS 11

typedef struct pv_storage_stats_s {
    uint64_t commits;           /* write transactions of the writer thread */
    uint64_t requests;          /* write requests completed */
    uint64_t failed_batches;    /* batches retried one request at a time */
    uint64_t map_grows;         /* MDB_MAP_FULL handled by growing */
    uint64_t map_resizes;       /* MDB_MAP_RESIZED adopted from another
                                 * process */
    size_t map_size;
    uint64_t queued;            /* write requests not yet committed */
    /* Commit latency (one group commit, fsync included): counts per
     * bucket of pv_storage_commit_bounds_us (not cumulative; the last
     * bucket is everything slower), and the sum in microseconds. */
    uint64_t commit_hist[PV_STORAGE_COMMIT_BUCKETS + 1];
    uint64_t commit_us_sum;
} pv_storage_stats_t;

/* Upper bounds (microseconds) of the commit latency buckets. */
extern const uint64_t pv_storage_commit_bounds_us[PV_STORAGE_COMMIT_BUCKETS];

void pv_storage_stats(pv_storage_t *st, pv_storage_stats_t *out);

/* Opens (creating it if needed) the store "module.name", one named
 * database; archives get a second one, "module.name#id", mapping
 * host, user, id -> timestamp. The same name returns the same store;
 * opening a name with another kind than it was created with fails. Names
 * must not contain '#' and "meta" is reserved. Returns NULL on error
 * (logged). The store lives until pv_storage_close(). Blocks while the
 * writer commits; call at module/host init, never from a read callback. */
pv_store_t *pv_storage_store(pv_storage_t *st, const char *module,
                             const char *name, pv_store_kind_t kind);
pv_store_kind_t pv_store_kind(const pv_store_t *store);
/* "module.name"; borrowed for the store's lifetime. */
const char *pv_store_name(const pv_store_t *store);

/* ---- reads (synchronous, committed data only) -------------------------
 * host and user are NUL-terminated, already prepared (RFC 7622) strings;
 * user may be "" for host-level data. Any thread may read. Callbacks get
 * pointers into the database, valid only during the call; they may read
 * again but must not call pv_storage_sync() or pv_storage_store(). */

/* KEYVAL: key must be NULL. MAP: key is the map key. On PV_OK *val is a
 * malloc'd copy (a NUL is appended, not counted in *len) the caller
 * frees. PV_NOTFOUND, or PV_ERROR (wrong kind, key too long, LMDB). */
pv_rc_t pv_store_get(pv_store_t *store, const char *host, const char *user,
                     const char *key, void **val, size_t *len);

/* Return nonzero to stop the iteration. key is a NUL-terminated copy. */
typedef int pv_store_map_cb_t(const char *key, size_t key_len,
                              const void *val, size_t val_len, void *arg);
/* Every entry of a MAP store for host, user, in key order. PV_OK (also
 * when stopped early) or PV_ERROR. */
pv_rc_t pv_store_map_each(pv_store_t *store, const char *host,
                          const char *user, pv_store_map_cb_t *cb,
                          void *arg);

/* user is a NUL-terminated copy. Return nonzero to stop. */
typedef int pv_store_user_cb_t(const char *user, size_t user_len, void *arg);
/* Each distinct user having data of host in store (any kind), in key
 * order. PV_OK or PV_ERROR. */
pv_rc_t pv_store_users(pv_store_t *store, const char *host,
                       pv_store_user_cb_t *cb, void *arg);

/* Largest page an archive query returns. */
#define PV_ARCHIVE_MAX_LIMIT 1000

typedef struct pv_archive_query_s {
    uint64_t start_us;          /* inclusive; 0: open */
    uint64_t end_us;            /* inclusive; 0: open */
    const char *after_id;       /* exclusive; NULL: none */
    const char *before_id;      /* exclusive; NULL: none */
    const char *const *ids;     /* only these ids (XEP-0313 <ids/>), at
                                 * most PV_ARCHIVE_MAX_LIMIT; ids not in
                                 * the archive are skipped; NULL: all */
    size_t n_ids;
    size_t limit;               /* page size, capped at
                                 * PV_ARCHIVE_MAX_LIMIT; 0 returns no item
                                 * and tells whether any matches */
    int is_reverse;             /* newest first: the page ends at the
                                 * newest match (RSM <before/>) */
} pv_archive_query_t;

typedef struct pv_archive_result_s {
    size_t count;               /* items delivered */
    int is_complete;            /* nothing more matches past the page in
                                 * the query's direction (XEP-0313
                                 * complete='true') */
    /* First and last delivered item in delivery order (RSM <first/> and
     * <last/> after reordering by the caller); malloc'd ids, NULL when
     * count is 0. Free with pv_archive_result_clear(). */
    uint64_t first_ts, last_ts;
    char *first_id, *last_id;
} pv_archive_result_t;

void pv_archive_result_clear(pv_archive_result_t *res);

/* id is a NUL-terminated copy. Return nonzero to stop (the result then
 * says is_complete = 0). */
typedef int pv_archive_cb_t(uint64_t ts_us, const char *id, const void *val,
                            size_t val_len, void *arg);
/* Range scan of host, user's archive in time order (newest first when
 * q->is_reverse), delivering at most q->limit items. res may be NULL;
 * otherwise it is filled (clear it even on error). Returns PV_OK,
 * PV_NOTFOUND when after_id or before_id is not in the archive (XEP-0059
 * item-not-found), PV_ERROR (wrong kind, LMDB). */
pv_rc_t pv_store_archive_query(pv_store_t *store, const char *host,
                               const char *user,
                               const pv_archive_query_t *q,
                               pv_archive_cb_t *cb, void *arg,
                               pv_archive_result_t *res);

/* ---- writes (asynchronous, group commit) ------------------------------
 * Owner thread only. Every argument is copied: the caller may free it at
 * once. A submission returning PV_OK calls cb(arg, rc) exactly once from
 * pv_storage_run_completions() after the commit, with rc PV_OK or the
 * per-function rc below, or PV_ERROR if the write failed (nothing is
 * dropped silently). A submission returning PV_ERROR (wrong kind, bad
 * argument, key longer than PV_KEY_MAX) queued nothing and will not call
 * cb. cb may be NULL. */
typedef void pv_store_done_t(void *arg, int rc);

/* KEYVAL (key NULL) or MAP (key the map key): insert or replace. */
pv_rc_t pv_store_put(pv_store_t *store, const char *host, const char *user,
                     const char *key, const void *val, size_t len,
                     pv_store_done_t *cb, void *arg);
/* As pv_store_put, but rc PV_AGAIN (nothing written) when present; the
 * check and the insert are one transaction. */
pv_rc_t pv_store_put_if_absent(pv_store_t *store, const char *host,
                               const char *user, const char *key,
                               const void *val, size_t len,
                               pv_store_done_t *cb, void *arg);
/* As pv_store_put, but rc PV_NOTFOUND (nothing written) when absent. */
pv_rc_t pv_store_put_if_present(pv_store_t *store, const char *host,
                                const char *user, const char *key,
                                const void *val, size_t len,
                                pv_store_done_t *cb, void *arg);
/* KEYVAL/MAP entry; rc PV_NOTFOUND when it was absent. */
pv_rc_t pv_store_delete(pv_store_t *store, const char *host,
                        const char *user, const char *key,
                        pv_store_done_t *cb, void *arg);
/* Every row of host, user in this store (with an archive's id index);
 * rc PV_NOTFOUND when there was none. */
pv_rc_t pv_store_delete_user(pv_store_t *store, const char *host,
                             const char *user, pv_store_done_t *cb,
                             void *arg);
/* Every row of host, user in every store of the environment, including
 * stores this process never opened (account deletion). rc PV_NOTFOUND
 * when nothing was deleted. */
pv_rc_t pv_storage_delete_user_everywhere(pv_storage_t *st, const char *host,
                                          const char *user,
                                          pv_store_done_t *cb, void *arg);
/* Writes nothing: cb(arg, PV_OK) runs once every write submitted before
 * it is committed (XEP-0198 acknowledgements wait on this). */
pv_rc_t pv_storage_barrier(pv_storage_t *st, pv_store_done_t *cb,
                           void *arg);
/* ARCHIVE: adds an item; id is unique per user: rc PV_AGAIN (nothing
 * written) when host, user already has id. */
pv_rc_t pv_store_archive_append(pv_store_t *store, const char *host,
                                const char *user, uint64_t ts_us,
                                const char *id, const void *val, size_t len,
                                pv_store_done_t *cb, void *arg);
/* ARCHIVE retention: removes items older than ts_us (ts < ts_us) of
 * host, user, or of every user of host when user is NULL. */
pv_rc_t pv_store_archive_delete_before(pv_store_t *store, const char *host,
                                       const char *user, uint64_t ts_us,
                                       pv_store_done_t *cb, void *arg);
/* ARCHIVE: removes one item; rc PV_NOTFOUND when absent. */
pv_rc_t pv_store_archive_delete_id(pv_store_t *store, const char *host,
                                   const char *user, const char *id,
                                   pv_store_done_t *cb, void *arg);

#endif
