/* tests/unit/test_http_server.c: the pure helpers of src/http.c: address
 * and CIDR matching for http_metrics_allow, Host header normalisation for
 * routes per domain. The server itself is tested end to end by
 * tests/integration/test_http.py and test_upload.py. */
#include <CUnit/CUnit.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

static void
test_ip_allowed(void)
{
    static char *const list[] = { "127.0.0.1", "::1", "10.0.0.0/8",
                                  "192.168.1.128/25", "fd00::/8",
                                  "2001:db8::/126", "0.0.0.0/33",
                                  "bogus", "1.2.3.4/", "1.2.3.4/x",
                                  NULL };
    static const struct {
        const char *ip;
        int want;
    } cases[] = {
        { "127.0.0.1", 1 },
        { "127.0.0.2", 0 },
        { "::1", 1 },
        { "::2", 0 },
        { "::ffff:127.0.0.1", 1 },   /* IPv4-mapped */
        { "10.1.2.3", 1 },
        { "::ffff:10.255.255.255", 1 },
        { "11.0.0.1", 0 },
        { "192.168.1.128", 1 },
        { "192.168.1.255", 1 },
        { "192.168.1.127", 0 },
        { "fd12:3456::1", 1 },
        { "fe80::1", 0 },
        { "2001:db8::3", 1 },
        { "2001:db8::4", 0 },
        { "0.0.0.0", 0 },            /* /33 is malformed, never matches */
        { "1.2.3.4", 0 },            /* "1.2.3.4/" and "/x" neither */
        { "", 0 },
        { "localhost", 0 },
        { "127.0.0.1 ", 0 },
    };
    static char *const none[] = { NULL };
    static char *const all4[] = { "0.0.0.0/0", NULL };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = pv_http_ip_allowed(cases[i].ip, list);

        CU_ASSERT_EQUAL(got, cases[i].want);
        if (got != cases[i].want)
            fprintf(stderr, "ip_allowed(%s) = %d\n", cases[i].ip, got);
    }
    CU_ASSERT_FALSE(pv_http_ip_allowed("127.0.0.1", none));
    CU_ASSERT_FALSE(pv_http_ip_allowed("127.0.0.1", NULL));
    CU_ASSERT_FALSE(pv_http_ip_allowed(NULL, list));
    CU_ASSERT_TRUE(pv_http_ip_allowed("203.0.113.9", all4));
    CU_ASSERT_TRUE(pv_http_ip_allowed("::ffff:203.0.113.9", all4));
    CU_ASSERT_FALSE(pv_http_ip_allowed("2001:db8::1", all4));
}

static void
test_host_normalize(void)
{
    static const struct {
        const char *in;
        const char *want;       /* NULL: refused */
    } cases[] = {
        { "upload.example.org", "upload.example.org" },
        { "Upload.Example.ORG:5281", "upload.example.org" },
        { "upload.localhost.", "upload.localhost" },
        { "upload.localhost.:443", "upload.localhost" },
        { "[::1]:5281", "[::1]" },
        { "[::1]", "[::1]" },
        { "127.0.0.1:80", "127.0.0.1" },
        { "xn--bcher-kva.example", "xn--bcher-kva.example" },
        { "", NULL },
        { ":80", NULL },
        { "host:", NULL },
        { "host:80x", NULL },
        { "host:80:81", NULL },
        { "::1", NULL },             /* IPv6 without brackets */
        { "[::1", NULL },
        { "[::1]x", NULL },
        { "a b", NULL },
        { "a/b", NULL },
        { "a\\b", NULL },
        { "evil.com@upload", NULL },
        { "b\xc3\xbc" "cher.example", NULL },  /* raw UTF-8: not in a Host */
    };
    char buf[64];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = pv_http_host_normalize(cases[i].in, buf,
                                                 sizeof(buf));
        int ok = cases[i].want == NULL
                     ? got == NULL
                     : got != NULL && strcmp(got, cases[i].want) == 0;

        CU_ASSERT_TRUE(ok);
        if (!ok)
            fprintf(stderr, "host_normalize(%s) = %s\n", cases[i].in,
                    got ? got : "NULL");
    }
    CU_ASSERT_PTR_NULL(pv_http_host_normalize(NULL, buf, sizeof(buf)));
    /* does not fit: refused rather than cut */
    CU_ASSERT_PTR_NULL(pv_http_host_normalize("abcdefgh.example", buf, 8));
    CU_ASSERT_PTR_NOT_NULL(pv_http_host_normalize("abcdefg", buf, 8));
}

void test_suite_http_server(void);

void
test_suite_http_server(void)
{
    CU_pSuite s = CU_add_suite("http_server", NULL, NULL);

    CU_add_test(s, "metrics allow list", test_ip_allowed);
    CU_add_test(s, "host normalisation", test_host_normalize);
}
