/* tests/unit/test_storage.c: the store API over LMDB: key tuple order,
 * keyval/map/archive reads and writes, group commit and callback order,
 * durability across reopen, map growth, a map grown by another process,
 * deletion of a user everywhere, schema and store-kind checks. Each test
 * works in its own temporary directory. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <lmdb.h>

#include <palaver/storage.h>

#include "storage_lmdb.h"

/* ---- helpers ------------------------------------------------------------ */

static char *
tmp_env(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    char *dir;

    snprintf(tmpl, sizeof(tmpl), "%s/pv-storage-XXXXXX",
             base != NULL && *base != '\0' ? base : "/tmp");
    dir = mkdtemp(tmpl);
    CU_ASSERT_FATAL(dir != NULL);
    /* pv_storage_open makes the directory itself (0700): hand it a fresh
     * path inside the temporary one. */
    strcat(dir, "/db");
    return strdup(dir);
}

static void
rm_env(char *dir)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
    free(dir);
}

/* Records callbacks: order in which they came and their rc. */
typedef struct {
    int n;
    int *order;
    int *rc;
} cblog_t;

typedef struct {
    cblog_t *log;
    int idx;
} cbslot_t;

static void
cblog_init(cblog_t *log, int n)
{
    log->n = 0;
    log->order = calloc((size_t)n, sizeof(int));
    log->rc = calloc((size_t)n, sizeof(int));
}

static void
cblog_free(cblog_t *log)
{
    free(log->order);
    free(log->rc);
}

static void
cblog_cb(void *arg, int rc)
{
    cbslot_t *s = arg;

    s->log->order[s->log->n++] = s->idx;
    s->log->rc[s->idx] = rc;
}

/* The rc of one write, after a sync. */
typedef struct {
    int calls;
    int rc;
} one_t;

static void
one_cb(void *arg, int rc)
{
    one_t *o = arg;

    o->calls++;
    o->rc = rc;
}

static int
write_rc(pv_storage_t *st, pv_rc_t submitted, one_t *o)
{
    CU_ASSERT(submitted == PV_OK);
    pv_storage_sync(st);
    CU_ASSERT(o->calls == 1);
    return o->rc;
}

static pv_storage_t *
open_env(const char *dir, size_t initial)
{
    pv_storage_opts_t opts;

    memset(&opts, 0, sizeof(opts));
    opts.initial_map_size = initial;
    return pv_storage_open(dir, &opts);
}

/* ---- key tuples ------------------------------------------------------- */

typedef struct {
    const char *host;
    const char *user;
    uint64_t ts;
    const char *id;
} tuple_t;

static void
encode(const tuple_t *t, pv_key_t *k)
{
    pv_key_init(k);
    pv_key_add_str(k, t->host, strlen(t->host));
    pv_key_add_str(k, t->user, strlen(t->user));
    pv_key_add_u64(k, t->ts);
    pv_key_add_str(k, t->id, strlen(t->id));
}

static void
test_key_order(void)
{
    /* In tuple order: host first, then user, then ts numerically, then
     * id; strings compare by length, then bytes. */
    static const tuple_t sorted[] = {
        { "a.example", "", 0, "" },
        { "a.example", "", UINT64_MAX, "z" },
        { "a.example", "b", 0, "" },
        { "a.example", "b", 1, "" },
        { "a.example", "b", 255, "x" },
        { "a.example", "b", 256, "a" },
        { "a.example", "b", 256, "b" },
        { "a.example", "b", 256, "aa" },
        { "a.example", "b", 65536, "" },
        { "a.example", "b", (uint64_t)1 << 40, "" },
        { "a.example", "b", UINT64_MAX, "zzzz" },
        { "a.example", "c", 0, "" },
        { "a.example", "ab", 0, "" },
        { "a.example", "\xff\xff", UINT64_MAX, "\xff" },
        { "b.example", "", 0, "" },
        { "aa.example", "a", 0, "" },
    };
    pv_key_t keys[PV_COUNTOF(sorted)];
    size_t i, j;

    for (i = 0; i < PV_COUNTOF(sorted); i++) {
        encode(&sorted[i], &keys[i]);
        CU_ASSERT(!keys[i].is_overflow);
    }
    for (i = 0; i < PV_COUNTOF(sorted); i++)
        for (j = 0; j < PV_COUNTOF(sorted); j++) {
            int c = pv_key_cmp(keys[i].data, keys[i].len, keys[j].data,
                               keys[j].len);

            CU_ASSERT(i < j ? c < 0 : i > j ? c > 0 : c == 0);
        }
}

static void
test_key_codec(void)
{
    static const tuple_t t = { "example.org", "juliet", 0x0102030405060708u,
                               "msg-1" };
    pv_key_t k, p;
    pv_key_reader_t r;
    const char *s;
    size_t n, i;
    uint64_t v;
    char big[600];

    encode(&t, &k);
    CU_ASSERT(k.len == 2 + 11 + 2 + 6 + 8 + 2 + 5);
    CU_ASSERT(memcmp(k.data, "\x00\x0b" "example.org\x00\x06juliet"
                     "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x05msg-1",
                     k.len) == 0);
    pv_key_reader_init(&r, k.data, k.len);
    CU_ASSERT(pv_key_read_str(&r, &s, &n) == PV_OK && n == 11 &&
              memcmp(s, "example.org", 11) == 0);
    CU_ASSERT(pv_key_read_str(&r, &s, &n) == PV_OK && n == 6);
    CU_ASSERT(pv_key_read_u64(&r, &v) == PV_OK && v == t.ts);
    CU_ASSERT(pv_key_read_str(&r, &s, &n) == PV_OK && n == 5);
    CU_ASSERT(pv_key_reader_is_done(&r));
    CU_ASSERT(pv_key_read_str(&r, &s, &n) == PV_ERROR);
    CU_ASSERT(pv_key_read_u64(&r, &v) == PV_ERROR);

    /* Truncations of a valid key never read past the end. */
    for (i = 0; i < k.len; i++) {
        pv_key_reader_init(&r, k.data, i);
        if (pv_key_read_str(&r, &s, &n) != PV_OK ||
            pv_key_read_str(&r, &s, &n) != PV_OK ||
            pv_key_read_u64(&r, &v) != PV_OK ||
            pv_key_read_str(&r, &s, &n) != PV_OK)
            continue;
        CU_FAIL("truncated key decoded");
    }
    /* A length prefix larger than the rest. */
    pv_key_reader_init(&r, "\x00\x05" "abc", 5);
    CU_ASSERT(pv_key_read_str(&r, &s, &n) == PV_ERROR);

    /* (host, user) is a prefix of that user's keys, of no other user's. */
    pv_key_init(&p);
    pv_key_add_str(&p, "example.org", 11);
    pv_key_add_str(&p, "juliet", 6);
    CU_ASSERT(memcmp(k.data, p.data, p.len) == 0);
    pv_key_init(&k);
    pv_key_add_str(&k, "example.org", 11);
    pv_key_add_str(&k, "juliet2", 7);
    CU_ASSERT(memcmp(k.data, p.data, p.len) != 0);

    /* Overflow: too long for an LMDB key, or a string over 65535. */
    memset(big, 'x', sizeof(big));
    pv_key_init(&k);
    pv_key_add_str(&k, big, 300);
    CU_ASSERT(!k.is_overflow);
    pv_key_add_str(&k, big, 300);
    CU_ASSERT(k.is_overflow);
    pv_key_add_u64(&k, 1);
    CU_ASSERT(k.is_overflow);
    pv_key_init(&k);
    pv_key_add_str(&k, big, PV_KEY_MAX - 2);
    CU_ASSERT(!k.is_overflow && k.len == PV_KEY_MAX);
    pv_key_add_u64(&k, 1);
    CU_ASSERT(k.is_overflow);
    pv_key_init(&k);
    pv_key_add_str(&k, big, 70000);
    CU_ASSERT(k.is_overflow);
}

/* ---- keyval ------------------------------------------------------------- */

static void
test_put_get_delete(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *kv, *map;
    one_t o;
    void *val;
    size_t len;
    char *buf, big[600];
    struct stat sb;
    char path[600];

    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    CU_ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);

    kv = pv_storage_store(st, "test", "kv", PV_STORE_KEYVAL);
    map = pv_storage_store(st, "test", "map", PV_STORE_MAP);
    CU_ASSERT_FATAL(kv != NULL && map != NULL);
    CU_ASSERT(pv_storage_store(st, "test", "kv", PV_STORE_KEYVAL) == kv);
    CU_ASSERT_STRING_EQUAL(pv_store_name(kv), "test.kv");
    CU_ASSERT(pv_store_kind(map) == PV_STORE_MAP);

    CU_ASSERT(pv_store_get(kv, "example.org", "juliet", NULL, &val, &len)
              == PV_NOTFOUND);
    /* The value is copied at submission: free it at once (ASan checks). */
    buf = strdup("first value");
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put(kv, "example.org", "juliet", NULL,
                                        buf, strlen(buf), one_cb, &o),
                       &o) == PV_OK);
    free(buf);
    CU_ASSERT_FATAL(pv_store_get(kv, "example.org", "juliet", NULL, &val,
                                 &len) == PV_OK);
    CU_ASSERT(len == 11 && strcmp(val, "first value") == 0);
    free(val);
    CU_ASSERT(pv_store_get(kv, "example.org", "romeo", NULL, &val, &len)
              == PV_NOTFOUND);
    CU_ASSERT(pv_store_get(kv, "example.net", "juliet", NULL, &val, &len)
              == PV_NOTFOUND);

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put_if_absent(kv, "example.org",
                                                  "juliet", NULL, "x", 1,
                                                  one_cb, &o),
                       &o) == PV_AGAIN);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put_if_present(kv, "example.org",
                                                   "romeo", NULL, "x", 1,
                                                   one_cb, &o),
                       &o) == PV_NOTFOUND);
    CU_ASSERT(pv_store_get(kv, "example.org", "romeo", NULL, &val, &len)
              == PV_NOTFOUND);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put_if_present(kv, "example.org",
                                                   "juliet", NULL, "", 0,
                                                   one_cb, &o),
                       &o) == PV_OK);
    CU_ASSERT_FATAL(pv_store_get(kv, "example.org", "juliet", NULL, &val,
                                 &len) == PV_OK);
    CU_ASSERT(len == 0);
    free(val);

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_delete(kv, "example.org", "juliet",
                                           NULL, one_cb, &o), &o) == PV_OK);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_delete(kv, "example.org", "juliet",
                                           NULL, one_cb, &o), &o)
              == PV_NOTFOUND);
    CU_ASSERT(pv_store_get(kv, "example.org", "juliet", NULL, &val, &len)
              == PV_NOTFOUND);

    /* Refused at submission, no callback: wrong kind, bad arguments, a
     * key that does not fit LMDB. */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(pv_store_put(kv, "example.org", "juliet", "key", "x", 1,
                           one_cb, &o) == PV_ERROR);
    CU_ASSERT(pv_store_put(map, "example.org", "juliet", NULL, "x", 1,
                           one_cb, &o) == PV_ERROR);
    CU_ASSERT(pv_store_put(kv, NULL, "juliet", NULL, "x", 1, one_cb, &o)
              == PV_ERROR);
    CU_ASSERT(pv_store_archive_append(kv, "example.org", "juliet", 1, "id",
                                      "x", 1, one_cb, &o) == PV_ERROR);
    memset(big, 'u', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CU_ASSERT(pv_store_put(kv, "example.org", big, NULL, "x", 1, one_cb, &o)
              == PV_ERROR);
    CU_ASSERT(pv_store_get(kv, "example.org", big, NULL, &val, &len)
              == PV_ERROR);
    CU_ASSERT(pv_store_get(kv, "example.org", "juliet", "key", &val, &len)
              == PV_ERROR);
    pv_storage_sync(st);
    CU_ASSERT(o.calls == 0);

    pv_storage_close(st);
    rm_env(dir);
}

/* ---- map ---------------------------------------------------------------- */

typedef struct {
    char seen[512];
    int stop_after;
    int n;
    pv_store_t *nested;         /* read again from inside the callback */
    int nested_ok;
} collect_t;

static int
collect_map(const char *key, size_t key_len, const void *val, size_t val_len,
            void *arg)
{
    collect_t *c = arg;
    void *v;
    size_t l;

    CU_ASSERT(strlen(key) == key_len);
    snprintf(c->seen + strlen(c->seen), sizeof(c->seen) - strlen(c->seen),
             "%s=%.*s;", key, (int)val_len, (const char *)val);
    if (c->nested != NULL &&
        pv_store_get(c->nested, "example.org", "juliet", "k2", &v, &l)
            == PV_OK) {
        c->nested_ok++;
        free(v);
    }
    return ++c->n == c->stop_after;
}

static int
collect_user(const char *user, size_t user_len, void *arg)
{
    collect_t *c = arg;

    CU_ASSERT(strlen(user) == user_len);
    snprintf(c->seen + strlen(c->seen), sizeof(c->seen) - strlen(c->seen),
             "%s;", user);
    return ++c->n == c->stop_after;
}

static void
test_map_each(void)
{
    static const struct {
        const char *host, *user, *key, *val;
    } rows[] = {
        { "example.org", "juliet", "k2", "two" },
        { "example.org", "juliet", "k1", "one" },
        { "example.org", "juliet", "k10", "ten" },
        { "example.org", "romeo", "k1", "r1" },
        { "example.org", "", "k1", "host-level" },
        { "example.net", "juliet", "k1", "other host" },
        { "example.org", "juliet2", "k1", "other user" },
    };
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *map, *kv;
    collect_t c;
    size_t i;

    CU_ASSERT_FATAL(st != NULL);
    map = pv_storage_store(st, "roster", "items", PV_STORE_MAP);
    kv = pv_storage_store(st, "test", "kv", PV_STORE_KEYVAL);
    CU_ASSERT_FATAL(map != NULL && kv != NULL);
    for (i = 0; i < PV_COUNTOF(rows); i++)
        CU_ASSERT(pv_store_put(map, rows[i].host, rows[i].user, rows[i].key,
                               rows[i].val, strlen(rows[i].val), NULL, NULL)
                  == PV_OK);
    CU_ASSERT(pv_store_put(kv, "example.org", "zed", NULL, "z", 1, NULL,
                           NULL) == PV_OK);
    pv_storage_sync(st);

    /* Key order: strings by length, then bytes. */
    memset(&c, 0, sizeof(c));
    c.nested = map;
    CU_ASSERT(pv_store_map_each(map, "example.org", "juliet", collect_map,
                                &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, "k1=one;k2=two;k10=ten;");
    CU_ASSERT(c.nested_ok == 3);

    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    CU_ASSERT(pv_store_map_each(map, "example.org", "juliet", collect_map,
                                &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, "k1=one;k2=two;");

    memset(&c, 0, sizeof(c));
    CU_ASSERT(pv_store_map_each(map, "example.org", "nobody", collect_map,
                                &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, "");
    CU_ASSERT(pv_store_map_each(kv, "example.org", "zed", collect_map, &c)
              == PV_ERROR);

    memset(&c, 0, sizeof(c));
    CU_ASSERT(pv_store_users(map, "example.org", collect_user, &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, ";romeo;juliet;juliet2;");
    memset(&c, 0, sizeof(c));
    c.stop_after = 1;
    CU_ASSERT(pv_store_users(map, "example.net", collect_user, &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, "juliet;");
    memset(&c, 0, sizeof(c));
    CU_ASSERT(pv_store_users(map, "example.com", collect_user, &c) == PV_OK);
    CU_ASSERT_STRING_EQUAL(c.seen, "");

    pv_storage_close(st);
    rm_env(dir);
}

/* ---- archive ------------------------------------------------------------ */

typedef struct {
    char ids[1024];
} arch_t;

static int
collect_arch(uint64_t ts, const char *id, const void *val, size_t val_len,
             void *arg)
{
    arch_t *a = arg;
    char expect[64];

    /* Every item's value is "v<id>@<ts>". */
    snprintf(expect, sizeof(expect), "v%s@%llu", id,
             (unsigned long long)ts);
    CU_ASSERT(val_len == strlen(expect) && memcmp(val, expect, val_len) == 0);
    snprintf(a->ids + strlen(a->ids), sizeof(a->ids) - strlen(a->ids),
             "%s%s", a->ids[0] ? "," : "", id);
    return 0;
}

static void
append(pv_store_t *ar, const char *user, uint64_t ts, const char *id)
{
    char val[64];

    snprintf(val, sizeof(val), "v%s@%llu", id, (unsigned long long)ts);
    CU_ASSERT(pv_store_archive_append(ar, "example.org", user, ts, id, val,
                                      strlen(val), NULL, NULL) == PV_OK);
}

typedef struct {
    const char *name;
    pv_archive_query_t q;
    pv_rc_t rc;
    const char *ids;
    int is_complete;
} aq_case_t;

static void
run_cases(pv_store_t *ar, const char *user, const aq_case_t *cases,
          size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        arch_t a;
        pv_archive_result_t res;
        pv_rc_t rc;

        memset(&a, 0, sizeof(a));
        rc = pv_store_archive_query(ar, "example.org", user, &cases[i].q,
                                    collect_arch, &a, &res);
        if (rc != cases[i].rc || strcmp(a.ids, cases[i].ids) != 0 ||
            (rc == PV_OK && res.is_complete != cases[i].is_complete)) {
            fprintf(stderr, "\n  case %s: rc %d ids '%s' complete %d\n",
                    cases[i].name, rc, a.ids, res.is_complete);
            CU_FAIL("archive query case");
        }
        if (rc == PV_OK && res.count > 0) {
            /* first/last follow delivery order */
            CU_ASSERT(strncmp(a.ids, res.first_id, strlen(res.first_id))
                      == 0);
            CU_ASSERT(strcmp(a.ids + strlen(a.ids) - strlen(res.last_id),
                             res.last_id) == 0);
        }
        pv_archive_result_clear(&res);
    }
}

static void
test_archive(void)
{
    static const char *const some_ids[] = { "i07", "i03", "nope", "i07" };
    static const aq_case_t cases[] = {
        { "fwd5", { .limit = 5 }, PV_OK, "i01,i02,i03,i04,i05", 0 },
        { "fwdall", { .limit = 100 }, PV_OK,
          "i01,i02,i03,i04,i05,i06,i07,i08,i09,i10,i11,i11b,i12", 1 },
        { "fwd13", { .limit = 13 }, PV_OK,
          "i01,i02,i03,i04,i05,i06,i07,i08,i09,i10,i11,i11b,i12", 1 },
        { "rev5", { .limit = 5, .is_reverse = 1 }, PV_OK,
          "i12,i11b,i11,i10,i09", 0 },
        { "range", { .start_us = 5000, .end_us = 8000, .limit = 10 }, PV_OK,
          "i05,i06,i07,i08", 1 },
        { "range-rev", { .start_us = 5000, .end_us = 8000, .limit = 2,
                         .is_reverse = 1 }, PV_OK, "i08,i07", 0 },
        { "start", { .start_us = 10001, .limit = 10 }, PV_OK,
          "i11,i11b,i12", 1 },
        { "end-rev", { .end_us = 11000, .limit = 3, .is_reverse = 1 }, PV_OK,
          "i11b,i11,i10", 0 },
        { "after", { .after_id = "i05", .limit = 3 }, PV_OK, "i06,i07,i08",
          0 },
        { "after-same-ts", { .after_id = "i11", .limit = 3 }, PV_OK,
          "i11b,i12", 1 },
        { "after-end", { .after_id = "i12", .limit = 3 }, PV_OK, "", 1 },
        { "before-rev", { .before_id = "i05", .limit = 10, .is_reverse = 1 },
          PV_OK, "i04,i03,i02,i01", 1 },
        { "before-rev2", { .before_id = "i10", .limit = 2, .is_reverse = 1 },
          PV_OK, "i09,i08", 0 },
        { "before-fwd", { .before_id = "i04", .limit = 10 }, PV_OK,
          "i01,i02,i03", 1 },
        { "after-before", { .after_id = "i03", .before_id = "i07",
                            .limit = 10 }, PV_OK, "i04,i05,i06", 1 },
        { "after-before-rev", { .after_id = "i03", .before_id = "i07",
                                .limit = 2, .is_reverse = 1 }, PV_OK,
          "i06,i05", 0 },
        { "after-range", { .after_id = "i02", .end_us = 4000, .limit = 9 },
          PV_OK, "i03,i04", 1 },
        { "unknown-after", { .after_id = "zzz", .limit = 5 }, PV_NOTFOUND,
          "", 0 },
        { "unknown-before", { .before_id = "zzz", .limit = 5 }, PV_NOTFOUND,
          "", 0 },
        { "ids", { .ids = some_ids, .n_ids = 4, .limit = 10 }, PV_OK,
          "i03,i07", 1 },
        { "ids-rev", { .ids = some_ids, .n_ids = 4, .limit = 1,
                       .is_reverse = 1 }, PV_OK, "i07", 0 },
        { "ids-range", { .ids = some_ids, .n_ids = 4, .start_us = 5000,
                         .limit = 10 }, PV_OK, "i07", 1 },
        { "limit0", { .limit = 0 }, PV_OK, "", 0 },
        { "limit0-empty", { .start_us = 99000, .limit = 0 }, PV_OK, "", 1 },
    };
    static const aq_case_t after_delete[] = {
        { "after-del-id", { .limit = 100 }, PV_OK,
          "i01,i02,i03,i04,i06,i07,i08,i09,i10,i11,i11b,i12", 1 },
        { "deleted-after", { .after_id = "i05", .limit = 5 }, PV_NOTFOUND,
          "", 0 },
    };
    static const aq_case_t after_retention[] = {
        { "retention", { .limit = 100 }, PV_OK, "i09,i10,i11,i11b,i12", 1 },
        { "retention-index", { .after_id = "i03", .limit = 5 }, PV_NOTFOUND,
          "", 0 },
        { "retention-rev", { .limit = 100, .is_reverse = 1 }, PV_OK,
          "i12,i11b,i11,i10,i09", 1 },
    };
    static const aq_case_t empty[] = {
        { "empty", { .limit = 10 }, PV_OK, "", 1 },
        { "empty-rev", { .limit = 10, .is_reverse = 1 }, PV_OK, "", 1 },
    };
    static const int order[] = { 7, 3, 12, 1, 9, 5, 11, 2, 10, 4, 8, 6 };
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *ar;
    one_t o;
    char id[16];
    size_t i;

    CU_ASSERT_FATAL(st != NULL);
    ar = pv_storage_store(st, "mam", "archive", PV_STORE_ARCHIVE);
    CU_ASSERT_FATAL(ar != NULL);
    /* Out of time order on purpose; ts = 1000 * n. i11b shares i11's ts. */
    for (i = 0; i < PV_COUNTOF(order); i++) {
        snprintf(id, sizeof(id), "i%02d", order[i]);
        append(ar, "juliet", (uint64_t)order[i] * 1000, id);
    }
    append(ar, "juliet", 11000, "i11b");
    /* Neighbours that a sloppy range would leak into. */
    append(ar, "juliet2", 1500, "x1");
    append(ar, "julie", 1500, "x2");
    append(ar, "", 1500, "x3");
    pv_storage_sync(st);

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_append(ar, "example.org",
                                                   "juliet", 99, "i03", "x",
                                                   1, one_cb, &o),
                       &o) == PV_AGAIN);
    run_cases(ar, "juliet", cases, PV_COUNTOF(cases));

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_delete_id(ar, "example.org",
                                                      "juliet", "i05",
                                                      one_cb, &o),
                       &o) == PV_OK);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_delete_id(ar, "example.org",
                                                      "juliet", "i05",
                                                      one_cb, &o),
                       &o) == PV_NOTFOUND);
    run_cases(ar, "juliet", after_delete, PV_COUNTOF(after_delete));

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_delete_before(ar, "example.org",
                                                          "juliet", 9000,
                                                          one_cb, &o),
                       &o) == PV_OK);
    run_cases(ar, "juliet", after_retention, PV_COUNTOF(after_retention));
    /* juliet2 untouched by juliet's retention; host-wide retention. */
    {
        static const aq_case_t j2[] = {
            { "j2", { .limit = 10 }, PV_OK, "x1", 1 },
        };
        run_cases(ar, "juliet2", j2, 1);
    }
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_delete_before(ar, "example.org",
                                                          NULL, 10000,
                                                          one_cb, &o),
                       &o) == PV_OK);
    run_cases(ar, "juliet2", empty, PV_COUNTOF(empty));
    run_cases(ar, "", empty, PV_COUNTOF(empty));
    {
        static const aq_case_t j[] = {
            { "host-retention", { .limit = 10 }, PV_OK, "i10,i11,i11b,i12",
              1 },
        };
        run_cases(ar, "juliet", j, 1);
    }

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_delete_user(ar, "example.org", "juliet",
                                                one_cb, &o), &o) == PV_OK);
    run_cases(ar, "juliet", empty, PV_COUNTOF(empty));
    /* The id index went with the items: the id can be used again. */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_append(ar, "example.org",
                                                   "juliet", 5, "i03", "x",
                                                   1, one_cb, &o),
                       &o) == PV_OK);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_delete_user(ar, "example.org", "nobody",
                                                one_cb, &o), &o)
              == PV_NOTFOUND);

    pv_storage_close(st);
    rm_env(dir);
}

/* ---- group commit ------------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_int wakes;
} waker_t;

static void
waker_wake(void *arg)
{
    waker_t *w = arg;

    pthread_mutex_lock(&w->lock);
    atomic_fetch_add(&w->wakes, 1);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

#define N_WRITES 1000

static void
test_group_commit(void)
{
    char *dir = tmp_env();
    pv_storage_opts_t opts;
    pv_storage_t *st;
    pv_storage_stats_t s0, s1;
    pv_store_t *map;
    cblog_t log;
    cbslot_t *slots;
    waker_t w;
    char key[32];
    int i, is_ordered = 1, is_ok = 1;
    size_t ran = 0;

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    atomic_init(&w.wakes, 0);
    memset(&opts, 0, sizeof(opts));
    opts.wake = waker_wake;
    opts.wake_arg = &w;
    st = pv_storage_open(dir, &opts);
    CU_ASSERT_FATAL(st != NULL);
    map = pv_storage_store(st, "test", "map", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);

    /* Without a cork the writer takes whatever has queued up while it
     * was committing. */
    cblog_init(&log, N_WRITES);
    slots = calloc(N_WRITES, sizeof(*slots));
    pv_storage_stats(st, &s0);
    for (i = 0; i < N_WRITES; i++) {
        slots[i].log = &log;
        slots[i].idx = i;
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT(pv_store_put(map, "example.org", "juliet", key, key,
                               strlen(key), cblog_cb, &slots[i]) == PV_OK);
    }
    /* The loop's way: wait for the waker, then run completions. */
    while (ran < N_WRITES) {
        pthread_mutex_lock(&w.lock);
        if (atomic_load(&w.wakes) == 0)
            pthread_cond_wait(&w.cond, &w.lock);
        atomic_store(&w.wakes, 0);
        pthread_mutex_unlock(&w.lock);
        ran += pv_storage_run_completions(st);
    }
    pv_storage_stats(st, &s1);
    CU_ASSERT(ran == N_WRITES);
    CU_ASSERT(log.n == N_WRITES);
    for (i = 0; i < log.n; i++) {
        is_ordered &= log.order[i] == i;
        is_ok &= log.rc[i] == PV_OK;
    }
    CU_ASSERT(is_ordered);
    CU_ASSERT(is_ok);
    CU_ASSERT(s1.requests - s0.requests == N_WRITES);
    CU_ASSERT(s1.commits - s0.commits >= 1);
    CU_ASSERT(s1.commits - s0.commits < N_WRITES);
    fprintf(stderr, "\n  %d writes in %llu commits ", N_WRITES,
            (unsigned long long)(s1.commits - s0.commits));

    /* Corked (one loop turn): exactly one transaction. */
    log.n = 0;
    pv_storage_stats(st, &s0);
    pv_storage_cork(st);
    pv_storage_cork(st);
    for (i = 0; i < N_WRITES; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        CU_ASSERT(pv_store_put(map, "example.org", "romeo", key, key,
                               strlen(key), cblog_cb, &slots[i]) == PV_OK);
    }
    pv_storage_uncork(st);
    usleep(20000);
    CU_ASSERT(pv_storage_run_completions(st) == 0);   /* still corked */
    pv_storage_uncork(st);
    pv_storage_sync(st);
    pv_storage_stats(st, &s1);
    CU_ASSERT(s1.commits - s0.commits == 1);
    CU_ASSERT(log.n == N_WRITES);
    is_ordered = 1;
    for (i = 0; i < log.n; i++)
        is_ordered &= log.order[i] == i;
    CU_ASSERT(is_ordered);

    /* sync also flushes what a cork holds */
    log.n = 0;
    pv_storage_cork(st);
    CU_ASSERT(pv_store_put(map, "example.org", "romeo", "x", "x", 1,
                           cblog_cb, &slots[0]) == PV_OK);
    pv_storage_sync(st);
    CU_ASSERT(log.n == 1);
    pv_storage_uncork(st);

    pv_storage_close(st);
    free(slots);
    cblog_free(&log);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    rm_env(dir);
}

/* ---- durability, growth, resize -------------------------------------- */

static int
count_map(const char *key, size_t key_len, const void *val, size_t val_len,
          void *arg)
{
    (void)key;
    (void)key_len;
    (void)val;
    (void)val_len;
    ++*(int *)arg;
    return 0;
}

static void
test_durability(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *map;
    cblog_t log;
    cbslot_t slots[100];
    char key[32];
    int i, n = 0;
    void *val;
    size_t len;

    CU_ASSERT_FATAL(st != NULL);
    map = pv_storage_store(st, "offline", "queue", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);
    cblog_init(&log, 100);
    for (i = 0; i < 100; i++) {
        slots[i].log = &log;
        slots[i].idx = i;
        snprintf(key, sizeof(key), "m%03d", i);
        CU_ASSERT(pv_store_put(map, "example.org", "juliet", key, key,
                               strlen(key), cblog_cb, &slots[i]) == PV_OK);
    }
    /* close commits what is queued and runs the callbacks */
    pv_storage_close(st);
    CU_ASSERT(log.n == 100);
    cblog_free(&log);

    st = open_env(dir, 0);
    CU_ASSERT_FATAL(st != NULL);
    map = pv_storage_store(st, "offline", "queue", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);
    CU_ASSERT(pv_store_map_each(map, "example.org", "juliet", count_map, &n)
              == PV_OK);
    CU_ASSERT(n == 100);
    CU_ASSERT(pv_store_get(map, "example.org", "juliet", "m042", &val, &len)
              == PV_OK && len == 4 && memcmp(val, "m042", 4) == 0);
    free(val);
    pv_storage_close(st);
    rm_env(dir);
}

#define GROW_N 600
#define GROW_VAL 1024

static void
fill(pv_storage_t *st, pv_store_t *map, const char *user, int n, int corked,
     cblog_t *log, cbslot_t *slots)
{
    char key[32], val[GROW_VAL];
    int i;

    if (corked)
        pv_storage_cork(st);
    for (i = 0; i < n; i++) {
        slots[i].log = log;
        slots[i].idx = i;
        snprintf(key, sizeof(key), "g%04d", i);
        memset(val, 'a' + i % 26, sizeof(val));
        CU_ASSERT(pv_store_put(map, "example.org", user, key, val,
                               sizeof(val), cblog_cb, &slots[i]) == PV_OK);
    }
    if (corked)
        pv_storage_uncork(st);
    pv_storage_sync(st);
}

static int
check_fill(pv_store_t *map, const char *user, int n)
{
    char key[32];
    int i, bad = 0;
    void *val;
    size_t len;

    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "g%04d", i);
        if (pv_store_get(map, "example.org", user, key, &val, &len) != PV_OK) {
            bad++;
            continue;
        }
        bad += len != GROW_VAL || ((char *)val)[GROW_VAL - 1] != 'a' + i % 26;
        free(val);
    }
    return bad;
}

static void
test_map_growth(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 64 * 1024);
    pv_storage_stats_t s;
    pv_store_t *map;
    cblog_t log;
    cbslot_t *slots = calloc(GROW_N, sizeof(*slots));
    int i, is_ok = 1;

    CU_ASSERT_FATAL(st != NULL);
    pv_storage_stats(st, &s);
    CU_ASSERT(s.map_size == 64 * 1024);
    map = pv_storage_store(st, "test", "grow", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);

    /* One batch ~10 times the map: grown and retried, nothing lost. */
    cblog_init(&log, GROW_N);
    fill(st, map, "juliet", GROW_N, 1, &log, slots);
    CU_ASSERT(log.n == GROW_N);
    for (i = 0; i < log.n; i++)
        is_ok &= log.rc[i] == PV_OK && log.order[i] == i;
    CU_ASSERT(is_ok);
    pv_storage_stats(st, &s);
    CU_ASSERT(s.map_grows >= 3);
    CU_ASSERT(s.map_size >= 8 * 64 * 1024);
    CU_ASSERT(s.failed_batches == 0);
    CU_ASSERT(check_fill(map, "juliet", GROW_N) == 0);
    pv_storage_close(st);

    /* The grown size persists; more growth with single writes. */
    st = open_env(dir, 64 * 1024);
    CU_ASSERT_FATAL(st != NULL);
    pv_storage_stats(st, &s);
    CU_ASSERT(s.map_size >= 8 * 64 * 1024);
    map = pv_storage_store(st, "test", "grow", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);
    log.n = 0;
    fill(st, map, "romeo", GROW_N, 0, &log, slots);
    CU_ASSERT(log.n == GROW_N);
    log.n = 0;
    fill(st, map, "mercutio", GROW_N, 0, &log, slots);
    CU_ASSERT(log.n == GROW_N);
    is_ok = 1;
    for (i = 0; i < GROW_N; i++)
        is_ok &= log.rc[i] == PV_OK;
    CU_ASSERT(is_ok);
    CU_ASSERT(check_fill(map, "juliet", GROW_N) == 0);
    CU_ASSERT(check_fill(map, "romeo", GROW_N) == 0);
    CU_ASSERT(check_fill(map, "mercutio", GROW_N) == 0);
    pv_storage_close(st);

    cblog_free(&log);
    free(slots);
    rm_env(dir);
}

/* palaverctl is another process sharing the environment: simulate it with
 * a child that opens its own handle and grows the map well beyond ours
 * (LMDB forbids opening one environment twice in a process). */
static int
child_grow(const char *dir)
{
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *map;
    cblog_t log;
    cbslot_t *slots = calloc(GROW_N, sizeof(*slots));
    int i, bad = 0;

    if (st == NULL)
        return 10;
    map = pv_storage_store(st, "test", "grow", PV_STORE_MAP);
    if (map == NULL)
        return 11;
    cblog_init(&log, GROW_N);
    fill(st, map, "ctl", GROW_N, 1, &log, slots);
    for (i = 0; i < GROW_N; i++)
        bad += log.rc[i] != PV_OK;
    pv_storage_close(st);
    return log.n == GROW_N && bad == 0 ? 0 : 12;
}

static void
test_map_resized(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 64 * 1024);
    pv_storage_stats_t s0, s1;
    pv_store_t *map;
    one_t o;
    pid_t pid;
    int status = -1;

    CU_ASSERT_FATAL(st != NULL);
    map = pv_storage_store(st, "test", "grow", PV_STORE_MAP);
    CU_ASSERT_FATAL(map != NULL);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put(map, "example.org", "juliet", "k",
                                        "v", 1, one_cb, &o), &o) == PV_OK);
    pv_storage_stats(st, &s0);

    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0)
        _exit(child_grow(dir));
    CU_ASSERT(waitpid(pid, &status, 0) == pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Our map is still 64 KiB; the data now reaches far past it. */
    CU_ASSERT(check_fill(map, "ctl", GROW_N) == 0);
    pv_storage_stats(st, &s1);
    CU_ASSERT(s1.map_resizes > s0.map_resizes);
    CU_ASSERT(s1.map_size > s0.map_size);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_put(map, "example.org", "juliet", "k2",
                                        "v", 1, one_cb, &o), &o) == PV_OK);
    CU_ASSERT(check_fill(map, "ctl", GROW_N) == 0);
    pv_storage_close(st);
    rm_env(dir);
}

/* A request LMDB refuses (an empty key: MDB_BAD_VALSIZE) fails its batch;
 * the batch is retried one request at a time so that only that request
 * reports PV_ERROR and its neighbours commit. */
static void
test_bad_request_isolated(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_storage_stats_t s;
    pv_store_t *kv;
    pv_wreq_t *bad;
    one_t o[3];
    void *val;
    size_t len;

    CU_ASSERT_FATAL(st != NULL);
    kv = pv_storage_store(st, "test", "kv", PV_STORE_KEYVAL);
    CU_ASSERT_FATAL(kv != NULL);
    memset(o, 0, sizeof(o));
    bad = calloc(1, sizeof(*bad));
    bad->op = PV_WOP_PUT;
    bad->store = kv;
    bad->key = malloc(1);
    bad->key_len = 0;
    bad->cb = one_cb;
    bad->arg = &o[1];
    pv_storage_cork(st);
    CU_ASSERT(pv_store_put(kv, "example.org", "a", NULL, "A", 1, one_cb,
                           &o[0]) == PV_OK);
    pv_lmdb_submit(st, bad);
    CU_ASSERT(pv_store_put(kv, "example.org", "b", NULL, "B", 1, one_cb,
                           &o[2]) == PV_OK);
    pv_storage_uncork(st);
    pv_storage_sync(st);
    CU_ASSERT(o[0].calls == 1 && o[0].rc == PV_OK);
    CU_ASSERT(o[1].calls == 1 && o[1].rc == PV_ERROR);
    CU_ASSERT(o[2].calls == 1 && o[2].rc == PV_OK);
    pv_storage_stats(st, &s);
    CU_ASSERT(s.failed_batches == 1);
    CU_ASSERT(pv_store_get(kv, "example.org", "a", NULL, &val, &len)
              == PV_OK);
    free(val);
    CU_ASSERT(pv_store_get(kv, "example.org", "b", NULL, &val, &len)
              == PV_OK);
    free(val);
    pv_storage_close(st);
    rm_env(dir);
}

/* ---- delete everywhere, schema, kinds ------------------------------- */

static void
test_delete_everywhere(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);
    pv_store_t *kv, *map, *ar, *other;
    static const char *const users[] = { "juliet", "romeo" };
    void *val;
    size_t len, i;
    one_t o;
    int n;

    CU_ASSERT_FATAL(st != NULL);
    /* A store that the next process will not open. */
    other = pv_storage_store(st, "notloaded", "data", PV_STORE_KEYVAL);
    CU_ASSERT_FATAL(other != NULL);
    for (i = 0; i < 2; i++)
        CU_ASSERT(pv_store_put(other, "example.org", users[i], NULL, "o", 1,
                               NULL, NULL) == PV_OK);
    pv_storage_close(st);

    st = open_env(dir, 0);
    CU_ASSERT_FATAL(st != NULL);
    kv = pv_storage_store(st, "a", "kv", PV_STORE_KEYVAL);
    map = pv_storage_store(st, "b", "map", PV_STORE_MAP);
    ar = pv_storage_store(st, "c", "archive", PV_STORE_ARCHIVE);
    CU_ASSERT_FATAL(kv != NULL && map != NULL && ar != NULL);
    for (i = 0; i < 2; i++) {
        CU_ASSERT(pv_store_put(kv, "example.org", users[i], NULL, "v", 1,
                               NULL, NULL) == PV_OK);
        CU_ASSERT(pv_store_put(map, "example.org", users[i], "k1", "v", 1,
                               NULL, NULL) == PV_OK);
        CU_ASSERT(pv_store_put(map, "example.org", users[i], "k2", "v", 1,
                               NULL, NULL) == PV_OK);
        CU_ASSERT(pv_store_archive_append(ar, "example.org", users[i], 7,
                                          "a1", "v", 1, NULL, NULL) == PV_OK);
    }
    /* same user name on another host: not touched */
    CU_ASSERT(pv_store_put(kv, "example.net", "juliet", NULL, "v", 1, NULL,
                           NULL) == PV_OK);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_storage_delete_user_everywhere(
                               st, "example.org", "juliet", one_cb, &o),
                       &o) == PV_OK);

    CU_ASSERT(pv_store_get(kv, "example.org", "juliet", NULL, &val, &len)
              == PV_NOTFOUND);
    n = 0;
    CU_ASSERT(pv_store_map_each(map, "example.org", "juliet", count_map, &n)
              == PV_OK && n == 0);
    n = 0;
    CU_ASSERT(pv_store_map_each(map, "example.org", "romeo", count_map, &n)
              == PV_OK && n == 2);
    {
        static const aq_case_t gone[] = {
            { "gone", { .limit = 10 }, PV_OK, "", 1 },
        };
        run_cases(ar, "juliet", gone, 1);
    }
    CU_ASSERT(pv_store_get(kv, "example.org", "romeo", NULL, &val, &len)
              == PV_OK);
    free(val);
    CU_ASSERT(pv_store_get(kv, "example.net", "juliet", NULL, &val, &len)
              == PV_OK);
    free(val);
    /* the id index went too: the same id can be appended again */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_store_archive_append(ar, "example.org",
                                                   "juliet", 8, "a1", "v", 1,
                                                   one_cb, &o), &o) == PV_OK);
    other = pv_storage_store(st, "notloaded", "data", PV_STORE_KEYVAL);
    CU_ASSERT_FATAL(other != NULL);
    CU_ASSERT(pv_store_get(other, "example.org", "juliet", NULL, &val, &len)
              == PV_NOTFOUND);
    CU_ASSERT(pv_store_get(other, "example.org", "romeo", NULL, &val, &len)
              == PV_OK);
    free(val);

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_storage_delete_user_everywhere(
                               st, "example.org", "nobody", one_cb, &o),
                       &o) == PV_NOTFOUND);
    pv_storage_close(st);

    /* meta survived: the environment still opens */
    st = open_env(dir, 0);
    CU_ASSERT(st != NULL);
    pv_storage_close(st);
    rm_env(dir);
}

static void
set_schema(const char *dir, uint64_t version)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = { 14, (void *)"schema_version" }, v;
    uint8_t buf[8];
    int i;

    for (i = 0; i < 8; i++)
        buf[i] = (uint8_t)(version >> ((7 - i) * 8));
    v.mv_size = 8;
    v.mv_data = buf;
    CU_ASSERT_FATAL(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 256);
    CU_ASSERT_FATAL(mdb_env_open(env, dir, 0, 0600) == 0);
    CU_ASSERT_FATAL(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
    CU_ASSERT(mdb_put(txn, dbi, &k, &v, 0) == 0);
    CU_ASSERT(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

static void
test_schema_and_kinds(void)
{
    char *dir = tmp_env();
    pv_storage_t *st = open_env(dir, 0);

    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT(pv_storage_store(st, "x", "y", PV_STORE_KEYVAL) != NULL);
    CU_ASSERT(pv_storage_store(st, "x", "y", PV_STORE_MAP) == NULL);
    CU_ASSERT(pv_storage_store(st, "x", "y#id", PV_STORE_MAP) == NULL);
    CU_ASSERT(pv_storage_store(st, "", "y", PV_STORE_MAP) == NULL);
    CU_ASSERT(pv_storage_store(st, "x", NULL, PV_STORE_MAP) == NULL);
    pv_storage_close(st);

    /* The kind is remembered across processes. */
    st = open_env(dir, 0);
    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT(pv_storage_store(st, "x", "y", PV_STORE_ARCHIVE) == NULL);
    CU_ASSERT(pv_storage_store(st, "x", "y", PV_STORE_KEYVAL) != NULL);
    pv_storage_close(st);

    set_schema(dir, PV_STORAGE_SCHEMA_VERSION + 1);
    CU_ASSERT(open_env(dir, 0) == NULL);
    set_schema(dir, PV_STORAGE_SCHEMA_VERSION);
    st = open_env(dir, 0);
    CU_ASSERT(st != NULL);
    pv_storage_close(st);
    pv_storage_close(NULL);
    rm_env(dir);
}

void
test_suite_storage(void)
{
    CU_pSuite s = CU_add_suite("storage", NULL, NULL);

    CU_add_test(s, "key tuple order", test_key_order);
    CU_add_test(s, "key codec", test_key_codec);
    CU_add_test(s, "put get delete", test_put_get_delete);
    CU_add_test(s, "map iteration and users", test_map_each);
    CU_add_test(s, "archive queries", test_archive);
    CU_add_test(s, "group commit and callback order", test_group_commit);
    CU_add_test(s, "durability across reopen", test_durability);
    CU_add_test(s, "map growth", test_map_growth);
    CU_add_test(s, "map resized by another process", test_map_resized);
    CU_add_test(s, "bad request isolated", test_bad_request_isolated);
    CU_add_test(s, "delete user everywhere", test_delete_everywhere);
    CU_add_test(s, "schema version and store kinds", test_schema_and_kinds);
}
