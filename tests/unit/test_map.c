/* tests/unit/test_map.c: the string hash map (src/map.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/mem.h>
#include "map.h"

static void
count_cb(void *arg, const char *key, void *value)
{
    (void)key;
    (void)value;
    (*(size_t *)arg)++;
}

static void
test_map_put_get_del(void)
{
    pv_map_t m = {0};
    char keys[5000][16];
    size_t i, n = 0;

    CU_ASSERT_PTR_NULL(pv_map_get(&m, "nothing"));
    for (i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
        pv_map_put(&m, keys[i], (void *)(uintptr_t)(i + 1));
    }
    CU_ASSERT_EQUAL(m.n, 5000);
    for (i = 0; i < 5000; i++)
        CU_ASSERT_EQUAL((uintptr_t)pv_map_get(&m, keys[i]), i + 1);
    /* delete every other key, then the rest must still be found */
    for (i = 0; i < 5000; i += 2)
        CU_ASSERT_EQUAL((uintptr_t)pv_map_del(&m, keys[i]), i + 1);
    CU_ASSERT_PTR_NULL(pv_map_del(&m, keys[0]));
    for (i = 1; i < 5000; i += 2)
        CU_ASSERT_EQUAL((uintptr_t)pv_map_get(&m, keys[i]), i + 1);
    for (i = 0; i < 5000; i += 2)
        CU_ASSERT_PTR_NULL(pv_map_get(&m, keys[i]));
    pv_map_each(&m, count_cb, &n);
    CU_ASSERT_EQUAL(n, 2500);
    /* replacing keeps the count */
    pv_map_put(&m, keys[1], (void *)(uintptr_t)99);
    CU_ASSERT_EQUAL(m.n, 2500);
    CU_ASSERT_EQUAL((uintptr_t)pv_map_get(&m, keys[1]), 99);
    pv_map_clear(&m);
}

static void
test_map_tombstone_churn(void)
{
    pv_map_t m = {0};
    size_t i;

    /* insert/delete cycles must not fill the table with tombstones */
    for (i = 0; i < 100000; i++) {
        pv_map_put(&m, "churn", &m);
        CU_ASSERT_PTR_EQUAL(pv_map_del(&m, "churn"), &m);
    }
    CU_ASSERT(m.cap <= 64);
    pv_map_clear(&m);
}

void test_suite_map(void);

void
test_suite_map(void)
{
    CU_pSuite s = CU_add_suite("map", NULL, NULL);

    CU_add_test(s, "put, get, delete", test_map_put_get_del);
    CU_add_test(s, "tombstone churn", test_map_tombstone_churn);
}
