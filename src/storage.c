/* src/storage.c: the store API: key tuple encoding (CONTRACTS.md §4),
 * argument checks and the building of write requests, which are copied
 * here so that callers may free their buffers at once. Transactions, the
 * writer thread and every LMDB call live in storage_lmdb.c. */
#include <stdlib.h>
#include <string.h>

#include <palaver/log.h>
#include <palaver/mem.h>
#include <palaver/storage.h>

#include "storage_lmdb.h"

/* ---- key tuples ------------------------------------------------------ */

void
pv_key_init(pv_key_t *k)
{
    k->len = 0;
    k->is_overflow = 0;
}

void
pv_key_add_str(pv_key_t *k, const char *s, size_t len)
{
    if (k->is_overflow || len > 0xffff || len + 2 > PV_KEY_MAX - k->len) {
        k->is_overflow = 1;
        return;
    }
    k->data[k->len++] = (uint8_t)(len >> 8);
    k->data[k->len++] = (uint8_t)len;
    if (len > 0)
        memcpy(k->data + k->len, s, len);
    k->len += len;
}

void
pv_key_add_u64(pv_key_t *k, uint64_t v)
{
    int i;

    if (k->is_overflow || 8 > PV_KEY_MAX - k->len) {
        k->is_overflow = 1;
        return;
    }
    /* Big-endian so that memcmp order is numeric order. */
    for (i = 7; i >= 0; i--)
        k->data[k->len++] = (uint8_t)(v >> (i * 8));
}

void
pv_key_reader_init(pv_key_reader_t *r, const void *data, size_t len)
{
    r->p = data;
    r->left = len;
}

pv_rc_t
pv_key_read_str(pv_key_reader_t *r, const char **s, size_t *len)
{
    size_t n;

    if (r->left < 2)
        return PV_ERROR;
    n = ((size_t)r->p[0] << 8) | r->p[1];
    if (r->left - 2 < n)
        return PV_ERROR;
    *s = (const char *)r->p + 2;
    *len = n;
    r->p += 2 + n;
    r->left -= 2 + n;
    return PV_OK;
}

pv_rc_t
pv_key_read_u64(pv_key_reader_t *r, uint64_t *v)
{
    uint64_t x = 0;
    int i;

    if (r->left < 8)
        return PV_ERROR;
    for (i = 0; i < 8; i++)
        x = (x << 8) | r->p[i];
    *v = x;
    r->p += 8;
    r->left -= 8;
    return PV_OK;
}

int
pv_key_reader_is_done(const pv_key_reader_t *r)
{
    return r->left == 0;
}

int
pv_key_cmp(const void *a, size_t a_len, const void *b, size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;

    if (c != 0)
        return c;
    return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* Builds host, user[, key]; PV_ERROR when an argument is missing or the
 * tuple does not fit in an LMDB key. */
static pv_rc_t
store_key(pv_key_t *k, const char *host, const char *user, const char *key)
{
    if (host == NULL || user == NULL)
        return PV_ERROR;
    pv_key_init(k);
    pv_key_add_str(k, host, strlen(host));
    pv_key_add_str(k, user, strlen(user));
    if (key != NULL)
        pv_key_add_str(k, key, strlen(key));
    return k->is_overflow ? PV_ERROR : PV_OK;
}

/* KEYVAL takes no key, MAP requires one. */
static pv_rc_t
entry_key(pv_store_t *store, pv_key_t *k, const char *host,
          const char *user, const char *key)
{
    if (store == NULL)
        return PV_ERROR;
    if (store->kind == PV_STORE_KEYVAL && key != NULL)
        return PV_ERROR;
    if (store->kind == PV_STORE_MAP && key == NULL)
        return PV_ERROR;
    if (store->kind == PV_STORE_ARCHIVE)
        return PV_ERROR;
    return store_key(k, host, user, key);
}

static pv_wreq_t *
wreq_new(pv_wop_t op, pv_store_t *store, const pv_key_t *k,
         pv_store_done_t *cb, void *arg)
{
    pv_wreq_t *req = pv_xcalloc(1, sizeof(*req));

    req->op = op;
    req->store = store;
    req->key = pv_xmalloc(k->len > 0 ? k->len : 1);
    memcpy(req->key, k->data, k->len);
    req->key_len = k->len;
    req->cb = cb;
    req->arg = arg;
    return req;
}

static void
wreq_set_key2(pv_wreq_t *req, const pv_key_t *k)
{
    req->key2 = pv_xmalloc(k->len);
    memcpy(req->key2, k->data, k->len);
    req->key2_len = k->len;
}

static void
wreq_set_val(pv_wreq_t *req, const void *val, size_t len)
{
    req->val = pv_xmalloc(len > 0 ? len : 1);
    if (len > 0)
        memcpy(req->val, val, len);
    req->val_len = len;
}

static pv_rc_t
put_common(pv_wop_t op, pv_store_t *store, const char *host,
           const char *user, const char *key, const void *val, size_t len,
           pv_store_done_t *cb, void *arg)
{
    pv_key_t k;
    pv_wreq_t *req;

    if (entry_key(store, &k, host, user, key) != PV_OK ||
        (val == NULL && len > 0))
        return PV_ERROR;
    req = wreq_new(op, store, &k, cb, arg);
    wreq_set_val(req, val, len);
    pv_lmdb_submit(store->storage, req);
    return PV_OK;
}

/* ---- writes ------------------------------------------------------------ */

pv_rc_t
pv_store_put(pv_store_t *store, const char *host, const char *user,
             const char *key, const void *val, size_t len,
             pv_store_done_t *cb, void *arg)
{
    return put_common(PV_WOP_PUT, store, host, user, key, val, len, cb, arg);
}

pv_rc_t
pv_store_put_if_absent(pv_store_t *store, const char *host, const char *user,
                       const char *key, const void *val, size_t len,
                       pv_store_done_t *cb, void *arg)
{
    return put_common(PV_WOP_PUT_IF_ABSENT, store, host, user, key, val, len,
                      cb, arg);
}

pv_rc_t
pv_store_put_if_present(pv_store_t *store, const char *host,
                        const char *user, const char *key, const void *val,
                        size_t len, pv_store_done_t *cb, void *arg)
{
    return put_common(PV_WOP_PUT_IF_PRESENT, store, host, user, key, val,
                      len, cb, arg);
}

pv_rc_t
pv_store_delete(pv_store_t *store, const char *host, const char *user,
                const char *key, pv_store_done_t *cb, void *arg)
{
    pv_key_t k;

    if (entry_key(store, &k, host, user, key) != PV_OK)
        return PV_ERROR;
    pv_lmdb_submit(store->storage, wreq_new(PV_WOP_DEL, store, &k, cb, arg));
    return PV_OK;
}

pv_rc_t
pv_store_delete_user(pv_store_t *store, const char *host, const char *user,
                     pv_store_done_t *cb, void *arg)
{
    pv_key_t k;

    if (store == NULL || store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    pv_lmdb_submit(store->storage,
                   wreq_new(PV_WOP_DEL_PREFIX, store, &k, cb, arg));
    return PV_OK;
}

pv_rc_t
pv_storage_barrier(pv_storage_t *st, pv_store_done_t *cb, void *arg)
{
    pv_key_t k;

    if (st == NULL)
        return PV_ERROR;
    pv_key_init(&k);
    pv_lmdb_submit(st, wreq_new(PV_WOP_BARRIER, NULL, &k, cb, arg));
    return PV_OK;
}

pv_rc_t
pv_storage_delete_user_everywhere(pv_storage_t *st, const char *host,
                                  const char *user, pv_store_done_t *cb,
                                  void *arg)
{
    pv_key_t k;

    if (st == NULL || store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    pv_lmdb_submit(st, wreq_new(PV_WOP_DEL_PREFIX_ALL, NULL, &k, cb, arg));
    return PV_OK;
}

pv_rc_t
pv_store_archive_append(pv_store_t *store, const char *host,
                        const char *user, uint64_t ts_us, const char *id,
                        const void *val, size_t len, pv_store_done_t *cb,
                        void *arg)
{
    pv_key_t k, idk;
    pv_wreq_t *req;

    if (store == NULL || store->kind != PV_STORE_ARCHIVE || id == NULL ||
        (val == NULL && len > 0) ||
        store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    idk = k;
    pv_key_add_u64(&k, ts_us);
    pv_key_add_str(&k, id, strlen(id));
    pv_key_add_str(&idk, id, strlen(id));
    if (k.is_overflow || idk.is_overflow)
        return PV_ERROR;
    req = wreq_new(PV_WOP_ARCHIVE_APPEND, store, &k, cb, arg);
    wreq_set_key2(req, &idk);
    wreq_set_val(req, val, len);
    req->ts = ts_us;
    pv_lmdb_submit(store->storage, req);
    return PV_OK;
}

pv_rc_t
pv_store_archive_delete_before(pv_store_t *store, const char *host,
                               const char *user, uint64_t ts_us,
                               pv_store_done_t *cb, void *arg)
{
    pv_key_t k;
    pv_wreq_t *req;

    if (store == NULL || store->kind != PV_STORE_ARCHIVE || host == NULL)
        return PV_ERROR;
    pv_key_init(&k);
    pv_key_add_str(&k, host, strlen(host));
    if (user != NULL)
        pv_key_add_str(&k, user, strlen(user));
    if (k.is_overflow)
        return PV_ERROR;
    req = wreq_new(PV_WOP_ARCHIVE_DEL_BEFORE, store, &k, cb, arg);
    req->ts = ts_us;
    pv_lmdb_submit(store->storage, req);
    return PV_OK;
}

pv_rc_t
pv_store_archive_delete_id(pv_store_t *store, const char *host,
                           const char *user, const char *id,
                           pv_store_done_t *cb, void *arg)
{
    pv_key_t k, idk;
    pv_wreq_t *req;

    if (store == NULL || store->kind != PV_STORE_ARCHIVE || id == NULL ||
        store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    idk = k;
    pv_key_add_str(&idk, id, strlen(id));
    if (idk.is_overflow)
        return PV_ERROR;
    req = wreq_new(PV_WOP_ARCHIVE_DEL_ID, store, &k, cb, arg);
    wreq_set_key2(req, &idk);
    pv_lmdb_submit(store->storage, req);
    return PV_OK;
}

/* ---- reads ------------------------------------------------------------- */

pv_rc_t
pv_store_get(pv_store_t *store, const char *host, const char *user,
             const char *key, void **val, size_t *len)
{
    pv_key_t k;

    *val = NULL;
    *len = 0;
    if (entry_key(store, &k, host, user, key) != PV_OK)
        return PV_ERROR;
    return pv_lmdb_get(store, &k, val, len);
}

typedef struct {
    size_t prefix_len;
    pv_store_map_cb_t *cb;
    void *arg;
} map_each_t;

static int
map_each_entry(const uint8_t *key, size_t key_len, const void *val,
               size_t val_len, void *arg)
{
    map_each_t *me = arg;
    pv_key_reader_t r;
    const char *s;
    size_t n;
    char buf[PV_KEY_MAX + 1];

    pv_key_reader_init(&r, key + me->prefix_len, key_len - me->prefix_len);
    /* A row that is not host, user, key was not written by this API;
     * skip it rather than hand garbage to a module. */
    if (pv_key_read_str(&r, &s, &n) != PV_OK || !pv_key_reader_is_done(&r))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return me->cb(buf, n, val, val_len, me->arg);
}

pv_rc_t
pv_store_map_each(pv_store_t *store, const char *host, const char *user,
                  pv_store_map_cb_t *cb, void *arg)
{
    pv_key_t k;
    map_each_t me;

    if (store == NULL || store->kind != PV_STORE_MAP || cb == NULL ||
        store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    me.prefix_len = k.len;
    me.cb = cb;
    me.arg = arg;
    return pv_lmdb_scan(store, &k, map_each_entry, &me);
}

pv_rc_t
pv_store_users(pv_store_t *store, const char *host, pv_store_user_cb_t *cb,
               void *arg)
{
    pv_key_t k;

    if (store == NULL || host == NULL || cb == NULL)
        return PV_ERROR;
    pv_key_init(&k);
    pv_key_add_str(&k, host, strlen(host));
    if (k.is_overflow)
        return PV_ERROR;
    return pv_lmdb_users(store, &k, cb, arg);
}

void
pv_archive_result_clear(pv_archive_result_t *res)
{
    free(res->first_id);
    free(res->last_id);
    memset(res, 0, sizeof(*res));
}

pv_rc_t
pv_store_archive_query(pv_store_t *store, const char *host,
                       const char *user, const pv_archive_query_t *q,
                       pv_archive_cb_t *cb, void *arg,
                       pv_archive_result_t *res)
{
    pv_key_t k;
    pv_archive_result_t tmp;
    pv_rc_t rc;

    if (res == NULL)
        res = &tmp;
    memset(res, 0, sizeof(*res));
    if (store == NULL || store->kind != PV_STORE_ARCHIVE || q == NULL ||
        cb == NULL || (q->n_ids > 0 && q->ids == NULL) ||
        q->n_ids > PV_ARCHIVE_MAX_LIMIT ||
        store_key(&k, host, user, NULL) != PV_OK)
        return PV_ERROR;
    rc = pv_lmdb_archive_query(store, &k, q, cb, arg, res);
    if (res == &tmp)
        pv_archive_result_clear(&tmp);
    return rc;
}
