/* tests/unit/test_accounts.c: account records (SCRAM keys, no password)
 * and the accounts table: create, exists-conflict, get, set_password,
 * each, delete (with the user's rows in other stores). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include <palaver/storage.h>

#include "accounts.h"

#define ITER 4096

static char *
tmp_env(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    char *dir;

    snprintf(tmpl, sizeof(tmpl), "%s/pv-accounts-XXXXXX",
             base != NULL && *base != '\0' ? base : "/tmp");
    dir = mkdtemp(tmpl);
    CU_ASSERT_FATAL(dir != NULL);
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
    if (submitted != PV_OK)
        return -100;
    pv_storage_sync(st);
    CU_ASSERT(o->calls == 1);
    return o->rc;
}

static int
contains(const void *hay, size_t hay_len, const char *needle)
{
    return memmem(hay, hay_len, needle, strlen(needle)) != NULL;
}

/* The keys in rec are those of password with rec's salt and count. */
static int
keys_match(const pv_account_t *a, const char *password)
{
    static const pv_scram_hash_t hashes[] = { PV_SCRAM_SHA1,
                                              PV_SCRAM_SHA256 };
    uint8_t stored[32], server[32];
    size_t i, n;

    for (i = 0; i < 2; i++) {
        n = pv_scram_digest_len(hashes[i]);
        if (a->keys[hashes[i]].len != n ||
            pv_scram_derive(hashes[i], password, a->salt, a->salt_len,
                            a->iterations, stored, server) != PV_OK ||
            memcmp(stored, a->keys[hashes[i]].stored_key, n) != 0 ||
            memcmp(server, a->keys[hashes[i]].server_key, n) != 0)
            return 0;
    }
    return 1;
}

static void
test_record(void)
{
    static const char *const bad_passwords[] = { "", NULL };
    static const char password[] = "pencil-Secret-1234";
    pv_account_record_t r1, r2;
    pv_account_t a;
    uint8_t bad[PV_ACCOUNT_RECORD_LEN];
    size_t i;

    CU_ASSERT_FATAL(pv_account_record_build(password, ITER, &r1) == PV_OK);
    CU_ASSERT(r1.len == PV_ACCOUNT_RECORD_LEN);
    CU_ASSERT(r1.data[0] == PV_ACCOUNT_RECORD_VERSION);
    /* Never the password, nor a recognisable piece of it. */
    CU_ASSERT(!contains(r1.data, r1.len, password));
    CU_ASSERT(!contains(r1.data, r1.len, "pencil"));
    CU_ASSERT(!contains(r1.data, r1.len, "Secret"));

    CU_ASSERT_FATAL(pv_account_record_parse(r1.data, r1.len, &a) == PV_OK);
    CU_ASSERT(a.iterations == ITER);
    CU_ASSERT(a.salt_len == PV_ACCOUNT_SALT_LEN);
    CU_ASSERT(a.keys[PV_SCRAM_SHA1].len == 20);
    CU_ASSERT(a.keys[PV_SCRAM_SHA256].len == 32);
    CU_ASSERT(keys_match(&a, password));
    CU_ASSERT(!keys_match(&a, "pencil-Secret-1235"));

    /* A fresh salt each time. */
    CU_ASSERT_FATAL(pv_account_record_build(password, ITER + 1, &r2)
                    == PV_OK);
    CU_ASSERT(memcmp(r1.data + 5, r2.data + 5, PV_ACCOUNT_SALT_LEN) != 0);
    CU_ASSERT(memcmp(r1.data, r2.data, r1.len) != 0);

    for (i = 0; i < PV_COUNTOF(bad_passwords); i++)
        CU_ASSERT(pv_account_record_build(bad_passwords[i], ITER, &r2)
                  == PV_ERROR);
    CU_ASSERT(pv_account_record_build(password, 4095, &r2) == PV_ERROR);
    CU_ASSERT(pv_account_record_build(password, 0, &r2) == PV_ERROR);
    CU_ASSERT(r2.len == 0);

    /* Hostile stored records. */
    CU_ASSERT(pv_account_record_parse(r1.data, r1.len - 1, &a) == PV_ERROR);
    CU_ASSERT(pv_account_record_parse(r1.data, 0, &a) == PV_ERROR);
    memcpy(bad, r1.data, sizeof(bad));
    bad[0] = 2;
    CU_ASSERT(pv_account_record_parse(bad, sizeof(bad), &a) == PV_ERROR);
    memcpy(bad, r1.data, sizeof(bad));
    memset(bad + 1, 0, 4);
    CU_ASSERT(pv_account_record_parse(bad, sizeof(bad), &a) == PV_ERROR);
}

typedef struct {
    char seen[256];
} users_t;

static int
collect_user(const char *user, size_t user_len, void *arg)
{
    users_t *u = arg;

    (void)user_len;
    snprintf(u->seen + strlen(u->seen), sizeof(u->seen) - strlen(u->seen),
             "%s;", user);
    return 0;
}

static void
test_accounts(void)
{
    static const char pw1[] = "correct horse battery staple";
    static const char pw2[] = "Tr0ub4dor&3";
    char *dir = tmp_env();
    pv_storage_t *st = pv_storage_open(dir, NULL);
    pv_store_t *accounts, *roster;
    pv_account_t a1, a2;
    users_t u;
    one_t o, o2;
    void *val;
    size_t len;

    CU_ASSERT_FATAL(st != NULL);
    accounts = pv_account_store(st);
    CU_ASSERT_FATAL(accounts != NULL);
    CU_ASSERT_STRING_EQUAL(pv_store_name(accounts), "accounts.users");
    roster = pv_storage_store(st, "roster", "items", PV_STORE_MAP);
    CU_ASSERT_FATAL(roster != NULL);

    CU_ASSERT(pv_account_exists(st, "example.org", "juliet") == PV_NOTFOUND);
    CU_ASSERT(pv_account_get(st, "example.org", "juliet", &a1)
              == PV_NOTFOUND);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_create(st, "example.org", "juliet",
                                             pw1, ITER, one_cb, &o), &o)
              == PV_OK);
    CU_ASSERT(pv_account_exists(st, "example.org", "juliet") == PV_OK);
    CU_ASSERT(pv_account_exists(st, "example.net", "juliet") == PV_NOTFOUND);
    CU_ASSERT_FATAL(pv_account_get(st, "example.org", "juliet", &a1)
                    == PV_OK);
    CU_ASSERT(a1.iterations == ITER);
    CU_ASSERT(keys_match(&a1, pw1));
    /* What is stored is the record, not the password. */
    CU_ASSERT_FATAL(pv_store_get(accounts, "example.org", "juliet", NULL,
                                 &val, &len) == PV_OK);
    CU_ASSERT(len == PV_ACCOUNT_RECORD_LEN);
    CU_ASSERT(!contains(val, len, pw1));
    CU_ASSERT(!contains(val, len, "horse"));
    free(val);

    /* exists: nothing overwritten */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_create(st, "example.org", "juliet",
                                             pw2, ITER, one_cb, &o), &o)
              == PV_AGAIN);
    CU_ASSERT(pv_account_get(st, "example.org", "juliet", &a2) == PV_OK);
    CU_ASSERT(memcmp(&a1, &a2, sizeof(a1)) == 0);

    /* two creations racing in one transaction: exactly one wins */
    {
        pv_account_record_t r1, r2;

        CU_ASSERT_FATAL(pv_account_record_build(pw1, ITER, &r1) == PV_OK);
        CU_ASSERT_FATAL(pv_account_record_build(pw2, ITER, &r2) == PV_OK);
        memset(&o, 0, sizeof(o));
        memset(&o2, 0, sizeof(o2));
        pv_storage_cork(st);
        CU_ASSERT(pv_account_create_record(st, "example.org", "romeo", &r1,
                                           one_cb, &o) == PV_OK);
        CU_ASSERT(pv_account_create_record(st, "example.org", "romeo", &r2,
                                           one_cb, &o2) == PV_OK);
        pv_storage_uncork(st);
        pv_storage_sync(st);
        CU_ASSERT(o.calls == 1 && o.rc == PV_OK);
        CU_ASSERT(o2.calls == 1 && o2.rc == PV_AGAIN);
        CU_ASSERT(pv_account_get(st, "example.org", "romeo", &a2) == PV_OK);
        CU_ASSERT(keys_match(&a2, pw1));
    }

    /* set_password: new salt and keys */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_set_password(st, "example.org",
                                                   "juliet", pw2, ITER + 10,
                                                   one_cb, &o), &o) == PV_OK);
    CU_ASSERT(pv_account_get(st, "example.org", "juliet", &a2) == PV_OK);
    CU_ASSERT(a2.iterations == ITER + 10);
    CU_ASSERT(memcmp(a1.salt, a2.salt, sizeof(a1.salt)) != 0);
    CU_ASSERT(keys_match(&a2, pw2));
    CU_ASSERT(!keys_match(&a2, pw1));
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_set_password(st, "example.org",
                                                   "nobody", pw2, ITER,
                                                   one_cb, &o), &o)
              == PV_NOTFOUND);
    CU_ASSERT(pv_account_exists(st, "example.org", "nobody") == PV_NOTFOUND);

    /* refused before queueing */
    memset(&o, 0, sizeof(o));
    CU_ASSERT(pv_account_create(st, "example.org", "", pw1, ITER, one_cb,
                                &o) == PV_ERROR);
    CU_ASSERT(pv_account_create(st, NULL, "x", pw1, ITER, one_cb, &o)
              == PV_ERROR);
    CU_ASSERT(pv_account_create(st, "example.org", "x", "", ITER, one_cb,
                                &o) == PV_ERROR);
    CU_ASSERT(pv_account_create(st, "example.org", "x", pw1, 10, one_cb,
                                &o) == PV_ERROR);
    pv_storage_sync(st);
    CU_ASSERT(o.calls == 0);

    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_create(st, "example.net", "juliet",
                                             pw1, ITER, one_cb, &o), &o)
              == PV_OK);
    memset(&u, 0, sizeof(u));
    CU_ASSERT(pv_account_each(st, "example.org", collect_user, &u) == PV_OK);
    CU_ASSERT_STRING_EQUAL(u.seen, "romeo;juliet;");

    /* delete: the account and the user's rows elsewhere */
    CU_ASSERT(pv_store_put(roster, "example.org", "juliet", "romeo@x", "r",
                           1, NULL, NULL) == PV_OK);
    CU_ASSERT(pv_store_put(roster, "example.org", "romeo", "juliet@x", "r",
                           1, NULL, NULL) == PV_OK);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_delete(st, "example.org", "juliet",
                                             one_cb, &o), &o) == PV_OK);
    CU_ASSERT(pv_account_exists(st, "example.org", "juliet") == PV_NOTFOUND);
    CU_ASSERT(pv_account_exists(st, "example.org", "romeo") == PV_OK);
    CU_ASSERT(pv_account_exists(st, "example.net", "juliet") == PV_OK);
    CU_ASSERT(pv_store_get(roster, "example.org", "juliet", "romeo@x", &val,
                           &len) == PV_NOTFOUND);
    CU_ASSERT(pv_store_get(roster, "example.org", "romeo", "juliet@x", &val,
                           &len) == PV_OK);
    free(val);
    memset(&o, 0, sizeof(o));
    CU_ASSERT(write_rc(st, pv_account_delete(st, "example.org", "juliet",
                                             one_cb, &o), &o)
              == PV_NOTFOUND);
    memset(&u, 0, sizeof(u));
    CU_ASSERT(pv_account_each(st, "example.org", collect_user, &u) == PV_OK);
    CU_ASSERT_STRING_EQUAL(u.seen, "romeo;");

    /* A damaged record: get fails, exists still says taken. */
    CU_ASSERT(pv_store_put(accounts, "example.org", "broken", NULL, "xx", 2,
                           NULL, NULL) == PV_OK);
    pv_storage_sync(st);
    CU_ASSERT(pv_account_get(st, "example.org", "broken", &a2) == PV_ERROR);
    CU_ASSERT(pv_account_exists(st, "example.org", "broken") == PV_OK);

    pv_storage_close(st);
    rm_env(dir);
}

void
test_suite_accounts(void)
{
    CU_pSuite s = CU_add_suite("accounts", NULL, NULL);

    CU_add_test(s, "record build and parse", test_record);
    CU_add_test(s, "accounts table", test_accounts);
}
