/* tests/unit/test_datetime.c: XEP-0082 DateTime (src/datetime.c): valid
 * stamps in UTC and with offsets, fractions (truncated past the
 * microsecond), the leap second 60, leap years, a table of malformed or
 * pre-1970 stamps that must be refused, formatting at 0/3/6 fraction
 * digits, short buffers and parse/format round trips. */
#include <stdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/datetime.h>

typedef struct {
    const char *in;
    uint64_t us;
} dt_ok_t;

static const dt_ok_t ok_vectors[] = {
    { "1970-01-01T00:00:00Z", 0 },
    { "1970-01-01T00:00:00.000001Z", 1 },
    { "1970-01-01T01:00:00+01:00", 0 },
    { "1969-12-31T23:00:00-01:00", 0 },
    /* XEP-0082 §3 examples of the DateTime profile */
    { "2002-09-10T23:41:07Z", 1031701267000000ULL },
    { "2002-09-10T23:41:07.123Z", 1031701267123000ULL },
    { "2002-09-10T23:41:07.1234567Z", 1031701267123456ULL },
    { "2002-09-10T23:41:07.5Z", 1031701267500000ULL },
    { "2002-09-11T01:11:07+01:30", 1031701267000000ULL },
    { "2002-09-10T18:41:07-05:00", 1031701267000000ULL },
    { "2002-09-11T23:40:07+23:59", 1031701267000000ULL },
    /* leap second: POSIX time folds it into the next second */
    { "2016-12-31T23:59:60Z", 1483228800000000ULL },
    { "2000-02-29T00:00:00Z", 951782400000000ULL },
    { "2024-02-29T23:59:59Z", 1709251199000000ULL },
    { "2038-01-19T03:14:08Z", 2147483648000000ULL },
    { "2106-02-07T06:28:16Z", 4294967296000000ULL },
    { "9999-12-31T23:59:59.999999Z", 253402300799999999ULL },
};

static const char *const bad_vectors[] = {
    "",
    "garbage",
    "2002-09-10",
    "2002-09-10T23:41:07",           /* no TZD */
    "2002-09-10T23:41:07z",
    "2002-09-10 23:41:07Z",
    "2002-09-10t23:41:07Z",
    "2002-09-10T23:41:07.Z",         /* empty fraction */
    "2002-09-10T23:41:07,5Z",
    "2002-09-10T23:41:07Z ",         /* trailing byte */
    " 2002-09-10T23:41:07Z",
    "2002-09-10T23:41:07ZZ",
    "2002-09-10T23:41:07+0100",
    "2002-09-10T23:41:07+01",
    "2002-09-10T23:41:07+01:00x",
    "2002-09-10T23:41:07+24:00",
    "2002-09-10T23:41:07-00:60",
    "2002-9-10T23:41:07Z",
    "02-09-10T23:41:07Z",
    "+002-09-10T23:41:07Z",
    "-2002-09-10T23:41:07Z",
    "10000-01-01T00:00:00Z",
    "2002-00-10T23:41:07Z",
    "2002-13-10T23:41:07Z",
    "2002-09-00T23:41:07Z",
    "2002-09-31T23:41:07Z",
    "2001-02-29T00:00:00Z",          /* not a leap year */
    "1900-02-29T00:00:00Z",          /* century, not a leap year */
    "2002-09-10T24:00:00Z",
    "2002-09-10T23:60:07Z",
    "2002-09-10T23:41:61Z",
    "2002-09-10T2a:41:07Z",
    /* before the epoch */
    "1969-07-21T02:56:15Z",
    "1969-07-20T21:56:15-05:00",
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00+00:01",
    "0000-01-01T00:00:00Z",
};

static void
test_parse_valid(void)
{
    size_t i;

    for (i = 0; i < sizeof(ok_vectors) / sizeof(ok_vectors[0]); i++) {
        uint64_t us = 42;
        pv_rc_t rc = pv_datetime_parse(ok_vectors[i].in, &us);

        if (rc != PV_OK || us != ok_vectors[i].us)
            fprintf(stderr, "\n  parse %s: rc %d us %llu\n",
                    ok_vectors[i].in, (int)rc, (unsigned long long)us);
        CU_ASSERT_EQUAL(rc, PV_OK);
        CU_ASSERT_EQUAL(us, ok_vectors[i].us);
    }
}

static void
test_parse_invalid(void)
{
    size_t i;
    uint64_t us = 42;

    for (i = 0; i < sizeof(bad_vectors) / sizeof(bad_vectors[0]); i++) {
        pv_rc_t rc = pv_datetime_parse(bad_vectors[i], &us);

        if (rc != PV_ERROR)
            fprintf(stderr, "\n  accepted %s\n", bad_vectors[i]);
        CU_ASSERT_EQUAL(rc, PV_ERROR);
        CU_ASSERT_EQUAL(us, 42);     /* untouched on error */
    }
    CU_ASSERT_EQUAL(pv_datetime_parse(NULL, &us), PV_ERROR);
}

static void
test_format(void)
{
    char out[PV_DATETIME_MAX];
    const uint64_t t = 1031701267123456ULL;

    CU_ASSERT_EQUAL(pv_datetime_format(0, 0, out, sizeof(out)), 20);
    CU_ASSERT_STRING_EQUAL(out, "1970-01-01T00:00:00Z");
    CU_ASSERT_EQUAL(pv_datetime_format(t, 0, out, sizeof(out)), 20);
    CU_ASSERT_STRING_EQUAL(out, "2002-09-10T23:41:07Z");
    CU_ASSERT_EQUAL(pv_datetime_format(t, 3, out, sizeof(out)), 24);
    CU_ASSERT_STRING_EQUAL(out, "2002-09-10T23:41:07.123Z");
    CU_ASSERT_EQUAL(pv_datetime_format(t, 6, out, sizeof(out)), 27);
    CU_ASSERT_STRING_EQUAL(out, "2002-09-10T23:41:07.123456Z");
    CU_ASSERT_EQUAL(pv_datetime_format(951782400000000ULL, 0, out,
                                       sizeof(out)), 20);
    CU_ASSERT_STRING_EQUAL(out, "2000-02-29T00:00:00Z");
    CU_ASSERT_EQUAL(pv_datetime_format(253402300799999999ULL, 6, out,
                                       sizeof(out)), 27);
    CU_ASSERT_STRING_EQUAL(out, "9999-12-31T23:59:59.999999Z");
    /* the fraction is truncated, never rounded into the next second */
    CU_ASSERT_EQUAL(pv_datetime_format(999999, 3, out, sizeof(out)), 24);
    CU_ASSERT_STRING_EQUAL(out, "1970-01-01T00:00:00.999Z");
}

static void
test_format_refused(void)
{
    char out[PV_DATETIME_MAX];

    /* exactly enough, then one byte short */
    CU_ASSERT_EQUAL(pv_datetime_format(0, 0, out, 21), 20);
    memset(out, 'x', sizeof(out));
    CU_ASSERT_EQUAL(pv_datetime_format(0, 0, out, 20), 0);
    CU_ASSERT_EQUAL(out[0], '\0');
    CU_ASSERT_EQUAL(pv_datetime_format(0, 6, out, 27), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(0, 6, out, 28), 27);
    CU_ASSERT_EQUAL(pv_datetime_format(0, 2, out, sizeof(out)), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(0, -1, out, sizeof(out)), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(253402300800000000ULL, 0, out,
                                       sizeof(out)), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(UINT64_MAX, 6, out, sizeof(out)), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(0, 0, NULL, 0), 0);
    CU_ASSERT_EQUAL(pv_datetime_format(0, 0, out, 0), 0);
}

static void
test_round_trip(void)
{
    static const uint64_t samples[] = {
        0, 1, 999999, 1000000, 86399999999ULL, 86400000000ULL,
        951868799999999ULL, 1031701267123456ULL, 1483228799999999ULL,
        4102444800000000ULL, 253402300799999999ULL,
    };
    char out[PV_DATETIME_MAX];
    size_t i;

    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        uint64_t back = 0;

        CU_ASSERT_FATAL(pv_datetime_format(samples[i], 6, out,
                                           sizeof(out)) > 0);
        CU_ASSERT_EQUAL(pv_datetime_parse(out, &back), PV_OK);
        CU_ASSERT_EQUAL(back, samples[i]);
        CU_ASSERT_FATAL(pv_datetime_format(samples[i], 0, out,
                                           sizeof(out)) > 0);
        CU_ASSERT_EQUAL(pv_datetime_parse(out, &back), PV_OK);
        CU_ASSERT_EQUAL(back, samples[i] / 1000000u * 1000000u);
    }
}

void
test_suite_datetime(void)
{
    CU_pSuite s = CU_add_suite("datetime", NULL, NULL);

    CU_add_test(s, "parse valid", test_parse_valid);
    CU_add_test(s, "parse invalid", test_parse_invalid);
    CU_add_test(s, "format", test_format);
    CU_add_test(s, "format refused", test_format_refused);
    CU_add_test(s, "round trip", test_round_trip);
}
