/* tests/unit/main.c: the CUnit runner. Every suite is listed once in
 * tests.inc as TEST_SUITE(name); test_<name>.c defines
 * void test_suite_<name>(void), which adds its suite and tests.
 * Usage: unit_tests [suite-name] (default: all). */
#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#ifndef TESTS_INC
#define TESTS_INC "tests.inc"
#endif

#define TEST_SUITE(name) void test_suite_##name(void);
#include TESTS_INC
#undef TEST_SUITE

static const struct {
    const char *name;
    void (*add)(void);
} suites[] = {
#define TEST_SUITE(name) { #name, test_suite_##name },
#include TESTS_INC
#undef TEST_SUITE
};

int
main(int argc, char **argv)
{
    unsigned failures;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        if (argc < 2 || strcmp(argv[1], suites[i].name) == 0)
            suites[i].add();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
