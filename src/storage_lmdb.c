/* src/storage_lmdb.c: the LMDB driver behind storage.h: one environment,
 * the "meta" table and schema check, named databases per store, the
 * writer thread with group commit, map growth (MDB_MAP_FULL) and adoption
 * of a map grown by another process (MDB_MAP_RESIZED, CONTRACTS.md §1),
 * and the read paths. Key encoding and argument checks are storage.c's.
 *
 * Locking, outermost first:
 *   dbi_lock  serialises mdb_dbi_open (LMDB allows it in one transaction
 *             at a time); held across every write transaction of this
 *             process.
 *   map_lock  rwlock: every transaction holds it shared; changing the map
 *             size (allowed only with no transaction active in the
 *             process) takes it exclusive. glibc's default rwlock prefers
 *             readers, so a read callback may read again without
 *             deadlocking against a waiting resize.
 *   q_lock    the request queues and counters; never held across LMDB.
 *   tab_lock  the store table, so that finding an open store never waits
 *             for a commit. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <palaver/log.h>
#include <palaver/mem.h>

#include "storage_lmdb.h"

#define STORAGE_CTX "storage"
#define DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define DEFAULT_MAX_MAP_SIZE ((size_t)1 << 40)
#define MAX_DBS 256
/* How long a reader waits to adopt a map grown by another process before
 * giving up (it can only fail when the same thread holds an outer read). */
#define ADOPT_TIMEOUT_S 10
#define RESIZED_RETRIES 5

/* Our own transaction-function results, outside LMDB's (-30799..-30780)
 * and errno's (positive) ranges. */
#define RC_SCHEMA_TOO_NEW (-1)
#define RC_KIND_MISMATCH (-2)

struct pv_storage_s {
    MDB_env *env;
    char *path;
    MDB_dbi meta_dbi;
    size_t max_map_size;
    void (*wake)(void *arg);
    void *wake_arg;

    pthread_mutex_t dbi_lock;
    pthread_rwlock_t map_lock;
    pthread_mutex_t tab_lock;
    pv_store_t **stores;
    size_t n_stores;

    pthread_mutex_t q_lock;
    pthread_cond_t q_work;      /* the writer waits for requests */
    pthread_cond_t q_done;      /* pv_storage_sync waits for commits */
    pv_wreq_t *pending;
    pv_wreq_t **pending_tail;
    pv_wreq_t *done;
    pv_wreq_t **done_tail;
    uint64_t submitted;
    uint64_t completed;
    unsigned corked;
    unsigned sync_waiters;
    int is_stopping;
    pthread_t writer;

    atomic_uint_fast64_t n_commits;
    atomic_uint_fast64_t n_requests;
    atomic_uint_fast64_t n_failed_batches;
    atomic_uint_fast64_t n_map_grows;
    atomic_uint_fast64_t n_map_resizes;
    atomic_uint_fast64_t commit_hist[PV_STORAGE_COMMIT_BUCKETS + 1];
    atomic_uint_fast64_t commit_us_sum;
};

const uint64_t pv_storage_commit_bounds_us[PV_STORAGE_COMMIT_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    1000000
};

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* For /metrics: operators see fsync cost and storms in one histogram. */
static void
record_commit(pv_storage_t *st, uint64_t us)
{
    size_t i = 0;

    while (i < PV_STORAGE_COMMIT_BUCKETS && us > pv_storage_commit_bounds_us[i])
        i++;
    atomic_fetch_add(&st->commit_hist[i], 1);
    atomic_fetch_add(&st->commit_us_sum, us);
}

typedef int txn_fn_t(pv_storage_t *st, MDB_txn *txn, void *arg);

static const char *
lmdb_strerror(int rc)
{
    if (rc == RC_SCHEMA_TOO_NEW)
        return "schema version newer than this build";
    if (rc == RC_KIND_MISMATCH)
        return "store exists with another kind";
    return mdb_strerror(rc);
}

/* ---- map size ---------------------------------------------------------- */

/* MDB_MAP_RESIZED: another process (palaverctl) grew the map beyond ours;
 * adopt the size recorded in the environment. mdb_env_set_mapsize needs
 * every transaction of this process closed, hence the exclusive lock. A
 * reader only waits a bounded time: if the same thread holds an outer read
 * transaction it would wait forever. */
static int
adopt_mapsize(pv_storage_t *st, int is_bounded)
{
    struct timespec until;
    int rc;

    if (is_bounded) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ADOPT_TIMEOUT_S;
        if (pthread_rwlock_timedwrlock(&st->map_lock, &until) != 0) {
            pv_log(PV_LOG_ERROR, STORAGE_CTX, "cannot adopt the map grown "
                   "by another process while a read is open");
            return MDB_MAP_RESIZED;
        }
    } else {
        pthread_rwlock_wrlock(&st->map_lock);
    }
    rc = mdb_env_set_mapsize(st->env, 0);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc == 0)
        atomic_fetch_add(&st->n_map_resizes, 1);
    else
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "adopting the map size: %s",
               mdb_strerror(rc));
    return rc;
}

/* MDB_MAP_FULL: double the map so that the batch can be retried and no
 * write is lost. Called with dbi_lock held and no transaction open. */
static int
grow_map(pv_storage_t *st)
{
    MDB_envinfo info;
    size_t size;
    int rc;

    pthread_rwlock_wrlock(&st->map_lock);
    mdb_env_info(st->env, &info);
    if (info.me_mapsize >= st->max_map_size) {
        pthread_rwlock_unlock(&st->map_lock);
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "database full at the maximum "
               "map size of %zu bytes", info.me_mapsize);
        return MDB_MAP_FULL;
    }
    size = info.me_mapsize > st->max_map_size / 2 ? st->max_map_size
                                                  : info.me_mapsize * 2;
    rc = mdb_env_set_mapsize(st->env, size);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "growing the map to %zu bytes: %s",
               size, mdb_strerror(rc));
        return rc;
    }
    atomic_fetch_add(&st->n_map_grows, 1);
    pv_log(PV_LOG_INFO, STORAGE_CTX, "map grown to %zu bytes", size);
    return 0;
}

/* Runs fn in a write transaction and commits, growing the map and
 * retrying on MDB_MAP_FULL and adopting it on MDB_MAP_RESIZED. fn may run
 * several times and must start from scratch each time. Caller holds
 * dbi_lock. Returns 0 or the error. */
static int
write_txn(pv_storage_t *st, txn_fn_t *fn, void *arg)
{
    MDB_txn *txn;
    int rc, resized = 0;

    for (;;) {
        pthread_rwlock_rdlock(&st->map_lock);
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) {
            pthread_rwlock_unlock(&st->map_lock);
            if (++resized > RESIZED_RETRIES || adopt_mapsize(st, 0) != 0)
                return rc;
            continue;
        }
        if (rc != 0) {
            pthread_rwlock_unlock(&st->map_lock);
            return rc;
        }
        rc = fn(st, txn, arg);
        if (rc == 0)
            rc = mdb_txn_commit(txn);   /* frees txn even on failure */
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&st->map_lock);
        if (rc == MDB_MAP_FULL) {
            if (grow_map(st) != 0)
                return rc;
            continue;
        }
        return rc;
    }
}

static int
read_begin(pv_storage_t *st, MDB_txn **txn)
{
    int rc, resized = 0;

    for (;;) {
        pthread_rwlock_rdlock(&st->map_lock);
        rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&st->map_lock);
        if (rc != MDB_MAP_RESIZED || ++resized > RESIZED_RETRIES ||
            adopt_mapsize(st, 1) != 0) {
            pv_log(PV_LOG_ERROR, STORAGE_CTX, "read transaction: %s",
                   mdb_strerror(rc));
            return rc;
        }
    }
}

static void
read_end(pv_storage_t *st, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->map_lock);
}

/* ---- key helpers ------------------------------------------------------- */

static int
has_prefix(const MDB_val *k, const uint8_t *p, size_t n)
{
    return k->mv_size >= n && memcmp(k->mv_data, p, n) == 0;
}

/* The smallest key greater than every key starting with in[0..n): in with
 * its last non-0xff byte incremented and the rest cut. 0 when none. */
static int
key_successor(const uint8_t *in, size_t n, pv_key_t *out)
{
    memcpy(out->data, in, n);
    out->is_overflow = 0;
    out->len = 0;
    while (n > 0) {
        if (out->data[n - 1] != 0xff) {
            out->data[n - 1]++;
            out->len = n;
            return 1;
        }
        n--;
    }
    return 0;
}

static MDB_val
mval(const void *p, size_t n)
{
    MDB_val v;

    v.mv_data = (void *)p;
    v.mv_size = n;
    return v;
}

/* ---- write operations (writer thread, inside the batch transaction) ---- */

/* Deletes every key starting with prefix; adds the count to *n. Seeks
 * again after each delete rather than relying on cursor position after
 * mdb_cursor_del. */
static int
del_prefix(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen,
           size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    for (;;) {
        k = mval(prefix, plen);
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && !has_prefix(&k, prefix, plen))) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
        (*n)++;
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Every named database of the environment, including those no module of
 * this process opened (a user's data in stores of modules not loaded). */
static int
del_prefix_all(MDB_txn *txn, const uint8_t *prefix,
               size_t plen, size_t *n)
{
    MDB_dbi main_dbi, dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    char **names = NULL;
    size_t n_names = 0, i;
    int rc;

    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, main_dbi, &cur);
    if (rc != 0)
        return rc;
    /* Collect first: opening databases while walking the main database
     * would interleave with its cursor. */
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size == 4 && memcmp(k.mv_data, "meta", 4) == 0)
            continue;
        names = pv_xrealloc(names, (n_names + 1) * sizeof(*names));
        names[n_names++] = pv_xstrndup(k.mv_data, k.mv_size);
    }
    mdb_cursor_close(cur);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    for (i = 0; rc == 0 && i < n_names; i++) {
        rc = mdb_dbi_open(txn, names[i], 0, &dbi);
        if (rc == MDB_INCOMPATIBLE || rc == MDB_NOTFOUND) {
            rc = 0;             /* not a database of ours */
            continue;
        }
        if (rc == 0)
            rc = del_prefix(txn, dbi, prefix, plen, n);
    }
    for (i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Retention: items of prefix (host, or host and user) older than before.
 * Items of a user are in time order, so each user stops at its first young
 * item and the scan jumps to the next user. */
static int
archive_del_before(pv_store_t *store, MDB_txn *txn, const pv_wreq_t *req,
                   size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v, ik;
    pv_key_t seek, idk;
    pv_key_reader_t r;
    const char *host, *user, *id;
    size_t host_len, user_len, id_len, user_prefix_len;
    uint64_t ts;
    int rc;

    rc = mdb_cursor_open(txn, store->dbi, &cur);
    if (rc != 0)
        return rc;
    memcpy(seek.data, req->key, req->key_len);
    seek.len = req->key_len;
    for (;;) {
        k = mval(seek.data, seek.len);
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND ||
            (rc == 0 && !has_prefix(&k, req->key, req->key_len))) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        pv_key_reader_init(&r, k.mv_data, k.mv_size);
        if (pv_key_read_str(&r, &host, &host_len) != PV_OK ||
            pv_key_read_str(&r, &user, &user_len) != PV_OK) {
            /* Not an archive key: step over it. */
            if (!key_successor(k.mv_data, k.mv_size, &seek))
                break;
            continue;
        }
        user_prefix_len = k.mv_size - r.left;
        if (pv_key_read_u64(&r, &ts) != PV_OK ||
            pv_key_read_str(&r, &id, &id_len) != PV_OK || ts >= req->ts) {
            if (!key_successor(k.mv_data, user_prefix_len, &seek))
                break;
            continue;
        }
        pv_key_init(&idk);
        pv_key_add_str(&idk, host, host_len);
        pv_key_add_str(&idk, user, user_len);
        pv_key_add_str(&idk, id, id_len);
        /* The deleted key's bytes vanish with it; the next item of the
         * same user is the smallest key >= its prefix. */
        memcpy(seek.data, k.mv_data, user_prefix_len);
        seek.len = user_prefix_len;
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
        ik = mval(idk.data, idk.len);
        rc = mdb_del(txn, store->id_dbi, &ik, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            break;
        rc = 0;
        (*n)++;
    }
    mdb_cursor_close(cur);
    return rc;
}

static int
archive_del_id(pv_store_t *store, MDB_txn *txn, pv_wreq_t *req)
{
    MDB_val ik, iv, k;
    pv_key_t item;
    const uint8_t *p;
    uint64_t ts = 0;
    size_t i;
    int rc;

    ik = mval(req->key2, req->key2_len);
    rc = mdb_get(txn, store->id_dbi, &ik, &iv);
    if (rc == MDB_NOTFOUND || (rc == 0 && iv.mv_size != 8)) {
        req->rc = PV_NOTFOUND;
        return 0;
    }
    if (rc != 0)
        return rc;
    p = iv.mv_data;
    for (i = 0; i < 8; i++)
        ts = (ts << 8) | p[i];
    /* item key = host, user, ts, id; key2 = host, user, id */
    memcpy(item.data, req->key, req->key_len);
    item.len = req->key_len;
    item.is_overflow = 0;
    pv_key_add_u64(&item, ts);
    if (item.len + req->key2_len - req->key_len > PV_KEY_MAX)
        return MDB_BAD_VALSIZE;
    memcpy(item.data + item.len, req->key2 + req->key_len,
           req->key2_len - req->key_len);
    item.len += req->key2_len - req->key_len;
    rc = mdb_del(txn, store->id_dbi, &ik, NULL);
    if (rc != 0)
        return rc;
    k = mval(item.data, item.len);
    rc = mdb_del(txn, store->dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Applies one request. Per-request outcomes (exists, absent) go to
 * req->rc; the return value is an LMDB error that fails the batch. */
static int
apply_one(MDB_txn *txn, pv_wreq_t *req)
{
    pv_store_t *store = req->store;
    MDB_val k = mval(req->key, req->key_len);
    MDB_val v = mval(req->val, req->val_len);
    MDB_val old, ik, iv;
    uint8_t tsbuf[8];
    size_t n = 0;
    int rc, i;

    switch (req->op) {
    case PV_WOP_PUT:
        return mdb_put(txn, store->dbi, &k, &v, 0);
    case PV_WOP_PUT_IF_ABSENT:
        rc = mdb_put(txn, store->dbi, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            req->rc = PV_AGAIN;
            return 0;
        }
        return rc;
    case PV_WOP_PUT_IF_PRESENT:
        rc = mdb_get(txn, store->dbi, &k, &old);
        if (rc == MDB_NOTFOUND) {
            req->rc = PV_NOTFOUND;
            return 0;
        }
        return rc != 0 ? rc : mdb_put(txn, store->dbi, &k, &v, 0);
    case PV_WOP_DEL:
        rc = mdb_del(txn, store->dbi, &k, NULL);
        if (rc == MDB_NOTFOUND) {
            req->rc = PV_NOTFOUND;
            return 0;
        }
        return rc;
    case PV_WOP_DEL_PREFIX:
        rc = del_prefix(txn, store->dbi, req->key, req->key_len, &n);
        if (rc == 0 && store->kind == PV_STORE_ARCHIVE)
            rc = del_prefix(txn, store->id_dbi, req->key, req->key_len, &n);
        if (rc == 0 && n == 0)
            req->rc = PV_NOTFOUND;
        return rc;
    case PV_WOP_DEL_PREFIX_ALL:
        rc = del_prefix_all(txn, req->key, req->key_len, &n);
        if (rc == 0 && n == 0)
            req->rc = PV_NOTFOUND;
        return rc;
    case PV_WOP_ARCHIVE_APPEND:
        for (i = 0; i < 8; i++)
            tsbuf[i] = (uint8_t)(req->ts >> ((7 - i) * 8));
        ik = mval(req->key2, req->key2_len);
        iv = mval(tsbuf, sizeof(tsbuf));
        rc = mdb_put(txn, store->id_dbi, &ik, &iv, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            req->rc = PV_AGAIN;
            return 0;
        }
        return rc != 0 ? rc : mdb_put(txn, store->dbi, &k, &v, 0);
    case PV_WOP_ARCHIVE_DEL_BEFORE:
        return archive_del_before(store, txn, req, &n);
    case PV_WOP_ARCHIVE_DEL_ID:
        return archive_del_id(store, txn, req);
    case PV_WOP_BARRIER:
        return 0;
    }
    return EINVAL;
}

typedef struct {
    pv_wreq_t *first;
    size_t n;
} batch_t;

static int
batch_apply(pv_storage_t *st, MDB_txn *txn, void *arg)
{
    batch_t *b = arg;
    pv_wreq_t *req = b->first;
    size_t i;
    int rc;

    (void)st;
    for (i = 0; i < b->n; i++, req = req->next) {
        req->rc = PV_OK;        /* a retry starts from scratch */
        rc = apply_one(txn, req);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* One group commit: everything queued goes into one transaction. If it
 * fails for a reason other than a full map (handled in write_txn), each
 * request is retried alone so that one bad request cannot fail its
 * neighbours; whatever still fails reports PV_ERROR to its callback. */
static void
writer_commit(pv_storage_t *st, pv_wreq_t *first, size_t n)
{
    batch_t b = { first, n }, one;
    pv_wreq_t *req;
    int rc;
    uint64_t t0 = mono_us();

    pthread_mutex_lock(&st->dbi_lock);
    rc = write_txn(st, batch_apply, &b);
    if (rc == 0) {
        atomic_fetch_add(&st->n_commits, 1);
        record_commit(st, mono_us() - t0);
    } else {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "commit of %zu writes failed: %s",
               n, lmdb_strerror(rc));
        atomic_fetch_add(&st->n_failed_batches, 1);
        for (req = first; req != NULL; req = req->next) {
            one.first = req;
            one.n = 1;
            rc = n > 1 ? write_txn(st, batch_apply, &one) : rc;
            if (rc == 0) {
                atomic_fetch_add(&st->n_commits, 1);
            } else {
                if (n > 1)
                    pv_log(PV_LOG_ERROR, STORAGE_CTX, "write to %s failed: "
                           "%s", req->store ? req->store->name : "*",
                           lmdb_strerror(rc));
                req->rc = PV_ERROR;
            }
        }
    }
    pthread_mutex_unlock(&st->dbi_lock);
    atomic_fetch_add(&st->n_requests, n);
}

static void *
writer_main(void *arg)
{
    pv_storage_t *st = arg;
    pv_wreq_t *first, *last;
    size_t n;

    pthread_mutex_lock(&st->q_lock);
    for (;;) {
        while (st->pending == NULL ||
               (st->corked > 0 && st->sync_waiters == 0 &&
                !st->is_stopping)) {
            if (st->pending == NULL && st->is_stopping) {
                pthread_mutex_unlock(&st->q_lock);
                return NULL;
            }
            pthread_cond_wait(&st->q_work, &st->q_lock);
        }
        first = st->pending;
        st->pending = NULL;
        st->pending_tail = &st->pending;
        pthread_mutex_unlock(&st->q_lock);

        n = 1;
        for (last = first; last->next != NULL; last = last->next)
            n++;
        writer_commit(st, first, n);

        pthread_mutex_lock(&st->q_lock);
        *st->done_tail = first;
        st->done_tail = &last->next;
        st->completed += n;
        pthread_cond_broadcast(&st->q_done);
        pthread_mutex_unlock(&st->q_lock);
        if (st->wake != NULL)
            st->wake(st->wake_arg);
        pthread_mutex_lock(&st->q_lock);
    }
}

void
pv_lmdb_submit(pv_storage_t *st, pv_wreq_t *req)
{
    req->next = NULL;
    pthread_mutex_lock(&st->q_lock);
    *st->pending_tail = req;
    st->pending_tail = &req->next;
    st->submitted++;
    if (st->corked == 0)
        pthread_cond_signal(&st->q_work);
    pthread_mutex_unlock(&st->q_lock);
}

static void
wreq_free(pv_wreq_t *req)
{
    free(req->key);
    free(req->key2);
    free(req->val);
    free(req);
}

size_t
pv_storage_run_completions(pv_storage_t *st)
{
    pv_wreq_t *req;
    size_t n = 0;

    /* One at a time, so that a callback that ends up here again (through
     * pv_storage_sync) still sees the rest in submission order. */
    for (;;) {
        pthread_mutex_lock(&st->q_lock);
        req = st->done;
        if (req != NULL) {
            st->done = req->next;
            if (st->done == NULL)
                st->done_tail = &st->done;
        }
        pthread_mutex_unlock(&st->q_lock);
        if (req == NULL)
            return n;
        if (req->cb != NULL)
            req->cb(req->arg, req->rc);
        wreq_free(req);
        n++;
    }
}

void
pv_storage_sync(pv_storage_t *st)
{
    uint64_t target;

    pthread_mutex_lock(&st->q_lock);
    target = st->submitted;
    st->sync_waiters++;
    pthread_cond_signal(&st->q_work);
    while (st->completed < target)
        pthread_cond_wait(&st->q_done, &st->q_lock);
    st->sync_waiters--;
    pthread_mutex_unlock(&st->q_lock);
    pv_storage_run_completions(st);
}

void
pv_storage_cork(pv_storage_t *st)
{
    pthread_mutex_lock(&st->q_lock);
    st->corked++;
    pthread_mutex_unlock(&st->q_lock);
}

void
pv_storage_uncork(pv_storage_t *st)
{
    pthread_mutex_lock(&st->q_lock);
    if (st->corked > 0 && --st->corked == 0)
        pthread_cond_signal(&st->q_work);
    pthread_mutex_unlock(&st->q_lock);
}

void
pv_storage_stats(pv_storage_t *st, pv_storage_stats_t *out)
{
    MDB_envinfo info;

    out->commits = atomic_load(&st->n_commits);
    out->requests = atomic_load(&st->n_requests);
    out->failed_batches = atomic_load(&st->n_failed_batches);
    out->map_grows = atomic_load(&st->n_map_grows);
    out->map_resizes = atomic_load(&st->n_map_resizes);
    for (size_t i = 0; i <= PV_STORAGE_COMMIT_BUCKETS; i++)
        out->commit_hist[i] = atomic_load(&st->commit_hist[i]);
    out->commit_us_sum = atomic_load(&st->commit_us_sum);
    pthread_mutex_lock(&st->q_lock);
    out->queued = st->submitted - st->completed;
    pthread_mutex_unlock(&st->q_lock);
    pthread_rwlock_rdlock(&st->map_lock);
    mdb_env_info(st->env, &info);
    pthread_rwlock_unlock(&st->map_lock);
    out->map_size = info.me_mapsize;
}

/* ---- environment ------------------------------------------------------- */

static void
put_u64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> ((7 - i) * 8));
}

static uint64_t
get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Schema migrations: migrate_step(txn, v) turns version v into v + 1.
 * Version 1 is the first; add a case per format change, never drop data. */
static int
migrate_step(pv_storage_t *st, MDB_txn *txn, uint64_t from)
{
    (void)st;
    (void)txn;
    pv_log(PV_LOG_ERROR, STORAGE_CTX, "no migration from schema version %llu",
           (unsigned long long)from);
    return MDB_INCOMPATIBLE;
}

static int
meta_init(pv_storage_t *st, MDB_txn *txn, void *arg)
{
    static const char key_name[] = "schema_version";
    MDB_val k = mval(key_name, sizeof(key_name) - 1), v;
    uint64_t version = PV_STORAGE_SCHEMA_VERSION;
    uint8_t buf[8];
    int rc;

    (void)arg;
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta_dbi);
    if (rc != 0)
        return rc;
    rc = mdb_get(txn, st->meta_dbi, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8)
            return MDB_CORRUPTED;
        version = get_u64(v.mv_data);
        if (version > PV_STORAGE_SCHEMA_VERSION)
            return RC_SCHEMA_TOO_NEW;
        for (; version < PV_STORAGE_SCHEMA_VERSION; version++) {
            rc = migrate_step(st, txn, version);
            if (rc != 0)
                return rc;
        }
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    put_u64(buf, version);
    v = mval(buf, sizeof(buf));
    return mdb_put(txn, st->meta_dbi, &k, &v, 0);
}

pv_storage_t *
pv_storage_open(const char *path, const pv_storage_opts_t *opts)
{
    pv_storage_opts_t defaults;
    pv_storage_t *st;
    MDB_envinfo info;
    char *data_file;
    int rc, is_new;

    if (opts == NULL) {
        memset(&defaults, 0, sizeof(defaults));
        opts = &defaults;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        pv_log_errno(STORAGE_CTX, "cannot create %s", path);
        return NULL;
    }
    st = pv_xcalloc(1, sizeof(*st));
    st->path = pv_xstrdup(path);
    st->max_map_size = opts->max_map_size ? opts->max_map_size
                                          : DEFAULT_MAX_MAP_SIZE;
    st->wake = opts->wake;
    st->wake_arg = opts->wake_arg;
    st->pending_tail = &st->pending;
    st->done_tail = &st->done;

    rc = mdb_env_create(&st->env);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "mdb_env_create: %s",
               mdb_strerror(rc));
        free(st->path);
        free(st);
        return NULL;
    }
    mdb_env_set_maxdbs(st->env, MAX_DBS);
    /* An existing environment keeps the size it has grown to (recorded in
     * its meta page); only a new one starts at initial_map_size. */
    data_file = pv_xasprintf("%s/data.mdb", path);
    is_new = access(data_file, F_OK) != 0;
    free(data_file);
    if (is_new)
        mdb_env_set_mapsize(st->env, opts->initial_map_size
                                         ? opts->initial_map_size
                                         : DEFAULT_MAP_SIZE);
    /* MDB_NOTLS: read transactions are not tied to a thread, so a read
     * callback may open another read. */
    rc = mdb_env_open(st->env, path,
                      MDB_NOTLS | (opts->is_nosync ? MDB_NOSYNC : 0), 0600);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "cannot open %s: %s", path,
               mdb_strerror(rc));
        goto fail_env;
    }
    if (mdb_env_get_maxkeysize(st->env) < PV_KEY_MAX) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "liblmdb keys are limited to %d "
               "bytes, %d needed", mdb_env_get_maxkeysize(st->env),
               PV_KEY_MAX);
        goto fail_env;
    }
    mdb_env_info(st->env, &info);
    if (!is_new && opts->initial_map_size > info.me_mapsize)
        mdb_env_set_mapsize(st->env, opts->initial_map_size);

    pthread_mutex_init(&st->dbi_lock, NULL);
    pthread_rwlock_init(&st->map_lock, NULL);
    pthread_mutex_init(&st->tab_lock, NULL);
    pthread_mutex_init(&st->q_lock, NULL);
    pthread_cond_init(&st->q_work, NULL);
    pthread_cond_init(&st->q_done, NULL);

    pthread_mutex_lock(&st->dbi_lock);
    rc = write_txn(st, meta_init, NULL);
    pthread_mutex_unlock(&st->dbi_lock);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "%s: %s", path, lmdb_strerror(rc));
        goto fail_sync;
    }
    rc = pthread_create(&st->writer, NULL, writer_main, st);
    if (rc != 0) {
        errno = rc;
        pv_log_errno(STORAGE_CTX, "cannot start the writer thread");
        goto fail_sync;
    }
    return st;

fail_sync:
    pthread_cond_destroy(&st->q_done);
    pthread_cond_destroy(&st->q_work);
    pthread_mutex_destroy(&st->q_lock);
    pthread_mutex_destroy(&st->tab_lock);
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->dbi_lock);
fail_env:
    mdb_env_close(st->env);
    free(st->path);
    free(st);
    return NULL;
}

void
pv_storage_close(pv_storage_t *st)
{
    size_t i;

    if (st == NULL)
        return;
    pthread_mutex_lock(&st->q_lock);
    st->is_stopping = 1;
    pthread_cond_signal(&st->q_work);
    pthread_mutex_unlock(&st->q_lock);
    pthread_join(st->writer, NULL);
    pv_storage_run_completions(st);

    for (i = 0; i < st->n_stores; i++) {
        free(st->stores[i]->name);
        free(st->stores[i]);
    }
    free(st->stores);
    mdb_env_close(st->env);
    pthread_cond_destroy(&st->q_done);
    pthread_cond_destroy(&st->q_work);
    pthread_mutex_destroy(&st->q_lock);
    pthread_mutex_destroy(&st->tab_lock);
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->dbi_lock);
    free(st->path);
    free(st);
}

/* ---- stores ------------------------------------------------------------ */

typedef struct {
    const char *name;
    pv_store_kind_t kind;
    MDB_dbi dbi;
    MDB_dbi id_dbi;
} store_open_t;

static int
store_open_txn(pv_storage_t *st, MDB_txn *txn, void *arg)
{
    store_open_t *so = arg;
    char meta_key[300], *id_name;
    uint8_t kind = (uint8_t)so->kind;
    MDB_val k, v;
    int rc;

    rc = mdb_dbi_open(txn, so->name, MDB_CREATE, &so->dbi);
    if (rc != 0)
        return rc;
    so->id_dbi = 0;
    if (so->kind == PV_STORE_ARCHIVE) {
        id_name = pv_xasprintf("%s#id", so->name);
        rc = mdb_dbi_open(txn, id_name, MDB_CREATE, &so->id_dbi);
        free(id_name);
        if (rc != 0)
            return rc;
    }
    /* Remember the kind so that a module reopening its store with another
     * kind gets an error instead of misreading the keys. */
    snprintf(meta_key, sizeof(meta_key), "store:%s", so->name);
    k = mval(meta_key, strlen(meta_key));
    v = mval(&kind, 1);
    rc = mdb_put(txn, st->meta_dbi, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return v.mv_size == 1 && *(uint8_t *)v.mv_data == kind
                   ? 0 : RC_KIND_MISMATCH;
    return rc;
}

/* 1: found (*out set), -1: open with another kind (*out NULL, logged),
 * 0: not open yet. */
static int
store_find(pv_storage_t *st, const char *full, pv_store_kind_t kind,
           pv_store_t **out)
{
    size_t i;
    int found = 0;

    *out = NULL;
    pthread_mutex_lock(&st->tab_lock);
    for (i = 0; i < st->n_stores; i++) {
        if (strcmp(st->stores[i]->name, full) != 0)
            continue;
        if (st->stores[i]->kind == kind) {
            *out = st->stores[i];
            found = 1;
        } else {
            found = -1;
        }
        break;
    }
    pthread_mutex_unlock(&st->tab_lock);
    if (found < 0)
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "store %s opened with another "
               "kind", full);
    return found;
}

pv_store_t *
pv_storage_store(pv_storage_t *st, const char *module, const char *name,
                 pv_store_kind_t kind)
{
    pv_store_t *store = NULL;
    store_open_t so;
    char *full;
    int rc;

    if (st == NULL || module == NULL || name == NULL || *module == '\0' ||
        *name == '\0' || strlen(module) + strlen(name) > 200 ||
        strchr(module, '#') != NULL || strchr(name, '#') != NULL ||
        (kind != PV_STORE_KEYVAL && kind != PV_STORE_MAP &&
         kind != PV_STORE_ARCHIVE)) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "invalid store name %s.%s",
               module ? module : "(null)", name ? name : "(null)");
        return NULL;
    }
    full = pv_xasprintf("%s.%s", module, name);
    if (store_find(st, full, kind, &store) != 0)
        goto done;
    pthread_mutex_lock(&st->dbi_lock);
    /* Another thread may have created it while we waited. */
    if (store_find(st, full, kind, &store) != 0)
        goto out;
    so.name = full;
    so.kind = kind;
    rc = write_txn(st, store_open_txn, &so);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "cannot open store %s: %s", full,
               lmdb_strerror(rc));
        goto out;
    }
    store = pv_xcalloc(1, sizeof(*store));
    store->storage = st;
    store->name = full;
    full = NULL;
    store->kind = kind;
    store->dbi = so.dbi;
    store->id_dbi = so.id_dbi;
    pthread_mutex_lock(&st->tab_lock);
    st->stores = pv_xrealloc(st->stores,
                             (st->n_stores + 1) * sizeof(*st->stores));
    st->stores[st->n_stores++] = store;
    pthread_mutex_unlock(&st->tab_lock);
out:
    pthread_mutex_unlock(&st->dbi_lock);
done:
    free(full);
    return store;
}

pv_store_kind_t
pv_store_kind(const pv_store_t *store)
{
    return store->kind;
}

const char *
pv_store_name(const pv_store_t *store)
{
    return store->name;
}

/* ---- reads ------------------------------------------------------------- */

pv_rc_t
pv_lmdb_get(pv_store_t *store, const pv_key_t *key, void **val, size_t *len)
{
    pv_storage_t *st = store->storage;
    MDB_txn *txn;
    MDB_val k = mval(key->data, key->len), v;
    char *copy;
    int rc;

    if (read_begin(st, &txn) != 0)
        return PV_ERROR;
    rc = mdb_get(txn, store->dbi, &k, &v);
    if (rc == 0) {
        copy = pv_xmalloc(v.mv_size + 1);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[v.mv_size] = '\0';
        *val = copy;
        *len = v.mv_size;
    }
    read_end(st, txn);
    if (rc == MDB_NOTFOUND)
        return PV_NOTFOUND;
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "read %s: %s", store->name,
               mdb_strerror(rc));
        return PV_ERROR;
    }
    return PV_OK;
}

pv_rc_t
pv_lmdb_scan(pv_store_t *store, const pv_key_t *prefix,
             pv_lmdb_scan_cb_t *cb, void *arg)
{
    pv_storage_t *st = store->storage;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = mval(prefix->data, prefix->len), v;
    int rc;

    if (read_begin(st, &txn) != 0)
        return PV_ERROR;
    rc = mdb_cursor_open(txn, store->dbi, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && has_prefix(&k, prefix->data, prefix->len)) {
            if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0)
                break;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    read_end(st, txn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "scan %s: %s", store->name,
               mdb_strerror(rc));
        return PV_ERROR;
    }
    return PV_OK;
}

pv_rc_t
pv_lmdb_users(pv_store_t *store, const pv_key_t *prefix,
              pv_store_user_cb_t *cb, void *arg)
{
    pv_storage_t *st = store->storage;
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = mval(prefix->data, prefix->len), v;
    pv_key_reader_t r;
    pv_key_t seek;
    const char *user;
    size_t user_len;
    char buf[PV_KEY_MAX + 1];
    int rc;

    if (read_begin(st, &txn) != 0)
        return PV_ERROR;
    rc = mdb_cursor_open(txn, store->dbi, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        while (rc == 0 && has_prefix(&k, prefix->data, prefix->len)) {
            pv_key_reader_init(&r, (uint8_t *)k.mv_data + prefix->len,
                               k.mv_size - prefix->len);
            if (pv_key_read_str(&r, &user, &user_len) != PV_OK) {
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
                continue;
            }
            memcpy(buf, user, user_len);
            buf[user_len] = '\0';
            /* Jump over the rest of this user's rows (an archive user
             * may have millions). */
            if (!key_successor(k.mv_data, k.mv_size - r.left, &seek)) {
                cb(buf, user_len, arg);
                break;
            }
            if (cb(buf, user_len, arg) != 0)
                break;
            k = mval(seek.data, seek.len);
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
        mdb_cursor_close(cur);
    }
    read_end(st, txn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "users of %s: %s", store->name,
               mdb_strerror(rc));
        return PV_ERROR;
    }
    return PV_OK;
}

/* ---- archive queries --------------------------------------------------- */

typedef struct {
    const pv_key_t *prefix;
    const pv_archive_query_t *q;
    pv_archive_cb_t *cb;
    void *arg;
    pv_archive_result_t *res;
    size_t limit;
    int has_after, has_before;
    pv_key_t after, before;
    char last_id[PV_KEY_MAX + 1];
} aq_t;

/* host, user, id -> the item key host, user, ts, id. */
static int
aq_item_key(MDB_txn *txn, pv_store_t *store, const pv_key_t *prefix,
            const char *id, pv_key_t *out)
{
    pv_key_t idk;
    MDB_val k, v;
    int rc;

    idk = *prefix;
    pv_key_add_str(&idk, id, strlen(id));
    if (idk.is_overflow)
        return MDB_NOTFOUND;
    k = mval(idk.data, idk.len);
    rc = mdb_get(txn, store->id_dbi, &k, &v);
    if (rc != 0)
        return rc;
    if (v.mv_size != 8)
        return MDB_NOTFOUND;
    *out = *prefix;
    pv_key_add_u64(out, get_u64(v.mv_data));
    pv_key_add_str(out, id, strlen(id));
    return out->is_overflow ? MDB_NOTFOUND : 0;
}

/* Decodes ts and id after the prefix; 0 when the key is not an item. */
static int
aq_decode(const aq_t *aq, const MDB_val *k, uint64_t *ts, const char **id,
          size_t *id_len)
{
    pv_key_reader_t r;

    pv_key_reader_init(&r, (uint8_t *)k->mv_data + aq->prefix->len,
                       k->mv_size - aq->prefix->len);
    return pv_key_read_u64(&r, ts) == PV_OK &&
           pv_key_read_str(&r, id, id_len) == PV_OK &&
           pv_key_reader_is_done(&r);
}

/* Checks the time and id bounds; the scan order makes a failed upper
 * (forward) or lower (reverse) bound the end of the page. */
static int
aq_in_bounds(const aq_t *aq, const MDB_val *k, uint64_t ts)
{
    const pv_archive_query_t *q = aq->q;

    if (q->start_us != 0 && ts < q->start_us)
        return 0;
    if (q->end_us != 0 && ts > q->end_us)
        return 0;
    if (aq->has_after &&
        pv_key_cmp(k->mv_data, k->mv_size, aq->after.data,
                   aq->after.len) <= 0)
        return 0;
    if (aq->has_before &&
        pv_key_cmp(k->mv_data, k->mv_size, aq->before.data,
                   aq->before.len) >= 0)
        return 0;
    return 1;
}

/* Hands one item to the caller; nonzero when the caller stopped. */
static int
aq_deliver(aq_t *aq, uint64_t ts, const char *id, size_t id_len,
           const MDB_val *v)
{
    pv_archive_result_t *res = aq->res;

    memcpy(aq->last_id, id, id_len);
    aq->last_id[id_len] = '\0';
    if (res->count == 0) {
        res->first_ts = ts;
        res->first_id = pv_xstrdup(aq->last_id);
    }
    res->last_ts = ts;
    res->count++;
    return aq->cb(ts, aq->last_id, v->mv_data, v->mv_size, aq->arg);
}

static int
aq_scan(aq_t *aq, MDB_cursor *cur)
{
    const pv_archive_query_t *q = aq->q;
    const pv_key_t *prefix = aq->prefix;
    pv_key_t bound, cand;
    MDB_val k, v;
    MDB_cursor_op step;
    const char *id;
    size_t id_len;
    uint64_t ts;
    int rc, is_bounded;

    if (!q->is_reverse) {
        /* Start at the larger of the two lower bounds. */
        bound = *prefix;
        if (q->start_us != 0)
            pv_key_add_u64(&bound, q->start_us);
        if (aq->has_after &&
            pv_key_cmp(aq->after.data, aq->after.len, bound.data,
                       bound.len) > 0)
            bound = aq->after;
        k = mval(bound.data, bound.len);
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        step = MDB_NEXT;
    } else {
        /* Start just below the smallest exclusive upper bound. */
        is_bounded = key_successor(prefix->data, prefix->len, &bound);
        if (q->end_us != 0 && q->end_us != UINT64_MAX) {
            cand = *prefix;
            pv_key_add_u64(&cand, q->end_us + 1);
            if (!is_bounded ||
                pv_key_cmp(cand.data, cand.len, bound.data, bound.len) < 0)
                bound = cand;
            is_bounded = 1;
        }
        if (aq->has_before &&
            (!is_bounded || pv_key_cmp(aq->before.data, aq->before.len,
                                       bound.data, bound.len) < 0)) {
            bound = aq->before;
            is_bounded = 1;
        }
        k = mval(bound.data, bound.len);
        rc = is_bounded ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                        : MDB_NOTFOUND;
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        step = MDB_PREV;
    }
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, step)) {
        if (!has_prefix(&k, prefix->data, prefix->len))
            break;
        if (!aq_decode(aq, &k, &ts, &id, &id_len))
            continue;
        if (!aq_in_bounds(aq, &k, ts)) {
            /* Before the start (forward, after_id equal to the seek key)
             * skip; past the far end stop. */
            if (!q->is_reverse && aq->has_after &&
                pv_key_cmp(k.mv_data, k.mv_size, aq->after.data,
                           aq->after.len) <= 0)
                continue;
            if (q->is_reverse && aq->has_before &&
                pv_key_cmp(k.mv_data, k.mv_size, aq->before.data,
                           aq->before.len) >= 0)
                continue;
            rc = MDB_NOTFOUND;
            break;
        }
        if (aq->res->count >= aq->limit)
            return 0;           /* more matches: page not complete */
        if (aq_deliver(aq, ts, id, id_len, &v) != 0)
            return 0;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    aq->res->is_complete = 1;
    return 0;
}

typedef struct {
    pv_key_t key;
} aq_item_t;

static int
aq_item_cmp(const void *a, const void *b)
{
    const aq_item_t *x = a, *y = b;

    return pv_key_cmp(x->key.data, x->key.len, y->key.data, y->key.len);
}

/* XEP-0313 <ids/>: look each id up, keep those within the bounds, order
 * them like a scan would. Ids not in the archive are skipped. */
static int
aq_ids(aq_t *aq, MDB_txn *txn, pv_store_t *store)
{
    const pv_archive_query_t *q = aq->q;
    aq_item_t *items = pv_xcalloc(q->n_ids, sizeof(*items));
    size_t n = 0, i, id_len;
    const char *id;
    uint64_t ts;
    MDB_val k, v;
    int rc = 0;

    for (i = 0; i < q->n_ids; i++) {
        if (q->ids[i] == NULL)
            continue;
        rc = aq_item_key(txn, store, aq->prefix, q->ids[i], &items[n].key);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            goto out;
        k = mval(items[n].key.data, items[n].key.len);
        if (aq_decode(aq, &k, &ts, &id, &id_len) && aq_in_bounds(aq, &k, ts))
            n++;
    }
    qsort(items, n, sizeof(*items), aq_item_cmp);
    rc = 0;
    for (i = 0; i < n; i++) {
        aq_item_t *it = &items[q->is_reverse ? n - 1 - i : i];

        if (i > 0 && aq_item_cmp(it, &items[q->is_reverse ? n - i : i - 1])
                         == 0)
            continue;           /* the same id asked twice */
        k = mval(it->key.data, it->key.len);
        rc = mdb_get(txn, store->dbi, &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            goto out;
        if (aq->res->count >= aq->limit)
            goto out;
        aq_decode(aq, &k, &ts, &id, &id_len);
        if (aq_deliver(aq, ts, id, id_len, &v) != 0)
            goto out;
    }
    aq->res->is_complete = 1;
out:
    free(items);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

pv_rc_t
pv_lmdb_archive_query(pv_store_t *store, const pv_key_t *prefix,
                      const pv_archive_query_t *q, pv_archive_cb_t *cb,
                      void *arg, pv_archive_result_t *res)
{
    pv_storage_t *st = store->storage;
    MDB_txn *txn;
    MDB_cursor *cur;
    aq_t aq;
    pv_rc_t prc = PV_OK;
    int rc;

    memset(&aq, 0, sizeof(aq));
    aq.prefix = prefix;
    aq.q = q;
    aq.cb = cb;
    aq.arg = arg;
    aq.res = res;
    aq.limit = q->limit < PV_ARCHIVE_MAX_LIMIT ? q->limit
                                               : PV_ARCHIVE_MAX_LIMIT;
    if (read_begin(st, &txn) != 0)
        return PV_ERROR;
    if (q->after_id != NULL) {
        rc = aq_item_key(txn, store, prefix, q->after_id, &aq.after);
        if (rc != 0)
            goto lookup_failed;
        aq.has_after = 1;
    }
    if (q->before_id != NULL) {
        rc = aq_item_key(txn, store, prefix, q->before_id, &aq.before);
        if (rc != 0)
            goto lookup_failed;
        aq.has_before = 1;
    }
    if (q->ids != NULL) {
        rc = aq_ids(&aq, txn, store);
    } else {
        rc = mdb_cursor_open(txn, store->dbi, &cur);
        if (rc == 0) {
            rc = aq_scan(&aq, cur);
            mdb_cursor_close(cur);
        }
    }
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, STORAGE_CTX, "query %s: %s", store->name,
               mdb_strerror(rc));
        prc = PV_ERROR;
    }
    if (res->count > 0)
        res->last_id = pv_xstrdup(aq.last_id);
    read_end(st, txn);
    return prc;

lookup_failed:
    read_end(st, txn);
    return rc == MDB_NOTFOUND ? PV_NOTFOUND : PV_ERROR;
}
