/* tests/unit/test_fast.c: XEP-0484 FAST records (encode/decode round trip,
 * damaged rows), HT-SHA-256 proofs against vectors computed with Python's
 * hmac module, initial-response parsing and the two-slot check with
 * expiry, count replay and rotation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "fast.h"

static void
hex(const uint8_t *b, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void
test_ht_vectors(void)
{
    static const struct {
        const char *token, *label;
        size_t cb_len;
        const char *want;
    } v[] = {
        /* the token of XEP-0484 Example 3 */
        { "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm", "Initiator", 0,
          "9097787461a184e0fa84ec00c1381190b6c4d16a8ec4453c7b2ac5e7fcf935ed" },
        { "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm", "Responder", 0,
          "4e513409631474863b986c9f3e8c1e27ca29d1d7ab9ed4097e7afd6007bf9c62" },
        /* with 32 bytes of channel binding data 00..1f */
        { "tok", "Initiator", 32,
          "034ffffc78e0540483408696088db81a8e29d4f0ff82792c01a81ea5688858fb" },
    };
    uint8_t cb[32], out[32];
    char h[65];
    size_t i;

    for (i = 0; i < sizeof(cb); i++)
        cb[i] = (uint8_t)i;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        pv_fast_ht_sha256(v[i].token, v[i].label, cb, v[i].cb_len, out);
        hex(out, 32, h);
        CU_ASSERT_STRING_EQUAL(h, v[i].want);
    }
}

static void
test_record_roundtrip(void)
{
    pv_fast_record_t r, d;
    size_t len;
    char *s;

    memset(&r, 0, sizeof(r));
    strcpy(r.fp, "0123456789abcdef");
    strcpy(r.cur.token, "cur-token_1");
    r.cur.expiry = 1800000000;
    r.cur.count = 7;
    strcpy(r.next.token, "next-token");
    r.next.expiry = 1900000000;
    s = pv_fast_record_encode(&r, &len);
    CU_ASSERT_EQUAL(len, strlen(s));
    CU_ASSERT_EQUAL_FATAL(pv_fast_record_decode(s, len, &d), PV_OK);
    CU_ASSERT_STRING_EQUAL(d.fp, r.fp);
    CU_ASSERT_STRING_EQUAL(d.cur.token, "cur-token_1");
    CU_ASSERT_EQUAL(d.cur.expiry, 1800000000);
    CU_ASSERT_EQUAL(d.cur.count, 7);
    CU_ASSERT_STRING_EQUAL(d.next.token, "next-token");
    CU_ASSERT_EQUAL(d.next.count, 0);
    free(s);
    /* an empty slot */
    memset(&r.cur, 0, sizeof(r.cur));
    s = pv_fast_record_encode(&r, &len);
    CU_ASSERT_EQUAL_FATAL(pv_fast_record_decode(s, len, &d), PV_OK);
    CU_ASSERT_STRING_EQUAL(d.cur.token, "");
    free(s);
}

static void
test_record_damaged(void)
{
    static const char *const bad[] = {
        "",
        "1",
        "2 0123456789abcdef a 1 0 - 0 0",            /* version */
        "1 0123456789abcdef a 1 0 - 0",              /* too few */
        "1 0123456789abcdef a 1 0 - 0 0 9",          /* too many */
        "1 0123 a 1 0 - 0 0",                        /* fingerprint */
        "1 0123456789abcdef a x 0 - 0 0",            /* expiry */
        "1 0123456789abcdef a 1 -1 - 0 0",           /* count */
        ("1 0123456789abcdef aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaa 1 0 - 0 0"),       /* token too long */
    };
    pv_fast_record_t d;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(pv_fast_record_decode(bad[i], strlen(bad[i]), &d),
                        PV_ERROR);
    /* an embedded NUL */
    CU_ASSERT_EQUAL(pv_fast_record_decode("1 0123456789abcdef a\0 1 0 - 0 0",
                                          31, &d), PV_ERROR);
    CU_ASSERT_EQUAL(pv_fast_record_decode(NULL, 0, &d), PV_ERROR);
}

static void
test_parse_initial(void)
{
    uint8_t msg[64];
    const char *a;
    const uint8_t *p;
    size_t al;

    memcpy(msg, "romeo", 5);
    msg[5] = 0;
    memset(msg + 6, 0xab, 32);
    CU_ASSERT_EQUAL(pv_fast_parse_initial(msg, 38, &a, &al, &p), PV_OK);
    CU_ASSERT_EQUAL(al, 5);
    CU_ASSERT(memcmp(a, "romeo", 5) == 0);
    CU_ASSERT(p == msg + 6);
    CU_ASSERT_EQUAL(pv_fast_parse_initial(msg, 37, &a, &al, &p), PV_ERROR);
    CU_ASSERT_EQUAL(pv_fast_parse_initial(msg, 39, &a, &al, &p), PV_ERROR);
    CU_ASSERT_EQUAL(pv_fast_parse_initial(msg + 5, 33, &a, &al, &p),
                    PV_ERROR);                        /* empty authcid */
    CU_ASSERT_EQUAL(pv_fast_parse_initial(msg, 5, &a, &al, &p), PV_ERROR);
    CU_ASSERT_EQUAL(pv_fast_parse_initial(NULL, 0, &a, &al, &p), PV_ERROR);
}

static void
proof_of(const char *token, uint8_t out[32])
{
    pv_fast_ht_sha256(token, "Initiator", NULL, 0, out);
}

static void
test_check_slots(void)
{
    pv_fast_record_t r;
    uint8_t pc[32], pn[32], px[32];
    const int64_t now = 1000;

    memset(&r, 0, sizeof(r));
    strcpy(r.cur.token, "current");
    r.cur.expiry = now + 100;
    strcpy(r.next.token, "newer");
    r.next.expiry = now + 200;
    proof_of("current", pc);
    proof_of("newer", pn);
    proof_of("other", px);
    CU_ASSERT_EQUAL(pv_fast_check(&r, px, now, 0, 0), PV_FAST_NO_MATCH);
    /* current with counts: increasing only */
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 1, 5), PV_FAST_MATCH_CUR);
    CU_ASSERT_EQUAL(r.cur.count, 5);
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 1, 5), PV_FAST_NO_MATCH);
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 1, 4), PV_FAST_NO_MATCH);
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 1, 6), PV_FAST_MATCH_CUR);
    /* no count: no replay protection asked for */
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 0, 0), PV_FAST_MATCH_CUR);
    /* expiry */
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now + 100, 1, 7),
                    PV_FAST_NO_MATCH);
    /* the newer token moves into the current slot, voiding the older */
    CU_ASSERT_EQUAL(pv_fast_check(&r, pn, now, 1, 1), PV_FAST_MATCH_NEXT);
    CU_ASSERT_STRING_EQUAL(r.cur.token, "newer");
    CU_ASSERT_EQUAL(r.cur.count, 1);
    CU_ASSERT_STRING_EQUAL(r.next.token, "");
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 1, 10), PV_FAST_NO_MATCH);
    CU_ASSERT_EQUAL(pv_fast_check(&r, pn, now, 1, 2), PV_FAST_MATCH_CUR);
    /* empty record */
    memset(&r, 0, sizeof(r));
    CU_ASSERT_EQUAL(pv_fast_check(&r, pc, now, 0, 0), PV_FAST_NO_MATCH);
}

static void
test_token_and_time(void)
{
    char a[PV_FAST_TOKEN_MAX], b[PV_FAST_TOKEN_MAX], when[32], fp[17];

    CU_ASSERT_EQUAL(pv_fast_token_new(a), PV_OK);
    CU_ASSERT_EQUAL(pv_fast_token_new(b), PV_OK);
    CU_ASSERT_EQUAL(strlen(a), 32);
    CU_ASSERT(strcmp(a, b) != 0);
    CU_ASSERT(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789-_") == 32);
    pv_fast_datetime(0, when);
    CU_ASSERT_STRING_EQUAL(when, "1970-01-01T00:00:00Z");
    pv_fast_datetime(1583937375, when);
    CU_ASSERT_STRING_EQUAL(when, "2020-03-11T14:36:15Z");
    pv_fast_fingerprint("abc", 3, fp);
    CU_ASSERT_STRING_EQUAL(fp, "ba7816bf8f01cfea");
}

void
test_suite_fast(void)
{
    CU_pSuite s = CU_add_suite("fast", NULL, NULL);

    CU_add_test(s, "HT-SHA-256 vectors", test_ht_vectors);
    CU_add_test(s, "record round trip", test_record_roundtrip);
    CU_add_test(s, "damaged records", test_record_damaged);
    CU_add_test(s, "initial response", test_parse_initial);
    CU_add_test(s, "two slots, expiry, count", test_check_slots);
    CU_add_test(s, "token, datetime, fingerprint", test_token_and_time);
}
