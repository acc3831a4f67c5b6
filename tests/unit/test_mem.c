/* tests/unit/test_mem.c: arenas and growable buffers (src/mem.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/mem.h>

static void
test_arena_alignment_and_growth(void)
{
    pv_arena_t *a = pv_arena_new(64);
    char *prev = NULL;
    size_t i;

    for (i = 0; i < 1000; i++) {
        char *p = pv_arena_alloc(a, i % 37 + 1);
        CU_ASSERT_EQUAL((uintptr_t)p % 8, 0);
        memset(p, 0xab, i % 37 + 1);
        CU_ASSERT_PTR_NOT_EQUAL(p, prev);
        prev = p;
    }
    CU_ASSERT(pv_arena_size(a) > 1000);
    /* a request larger than any block gets a block of its own */
    CU_ASSERT_PTR_NOT_NULL(pv_arena_alloc(a, 200000));
    pv_arena_free(a);
}

static void
test_arena_strings(void)
{
    pv_arena_t *a = pv_arena_new(0);
    char *s = pv_arena_strndup(a, "hello world", 5);

    CU_ASSERT_STRING_EQUAL(s, "hello");
    CU_ASSERT_STRING_EQUAL(pv_arena_printf(a, "%d-%s", 42, "x"), "42-x");
    s = pv_arena_printf(a, "%0300d", 7);
    CU_ASSERT_EQUAL(strlen(s), 300);
    pv_arena_reset(a);
    CU_ASSERT_STRING_EQUAL(pv_arena_strdup(a, "again"), "again");
    pv_arena_free(a);
}

static void
test_buf_escape(void)
{
    pv_buf_t b = {0};
    char *out;
    size_t len;

    pv_buf_append_escaped(&b, "a<b>&'\"", 7, 1);
    CU_ASSERT_STRING_EQUAL(b.data, "a&lt;b&gt;&amp;&apos;&quot;");
    pv_buf_reset(&b);
    pv_buf_append_escaped(&b, "'\"<", 3, 0);
    CU_ASSERT_STRING_EQUAL(b.data, "'\"&lt;");
    pv_buf_printf(&b, "%0500d", 1);
    CU_ASSERT_EQUAL(b.len, 506);
    out = pv_buf_steal(&b, &len);
    CU_ASSERT_EQUAL(len, 506);
    CU_ASSERT_PTR_NULL(b.data);
    free(out);
}

void test_suite_mem(void);

void
test_suite_mem(void)
{
    CU_pSuite s = CU_add_suite("mem", NULL, NULL);

    CU_add_test(s, "arena alignment and growth",
                test_arena_alignment_and_growth);
    CU_add_test(s, "arena strings", test_arena_strings);
    CU_add_test(s, "buffer escaping", test_buf_escape);
}
