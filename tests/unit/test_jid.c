/* tests/unit/test_jid.c: table-driven tests of src/jid.c: the RFC 7622
 * §3.5 examples, PRECIS profile edge cases (RFC 8264/8265, RFC 5892
 * Appendix A contexts, RFC 5893 Bidi), IDNA2008 domains, IP literals,
 * length limits, hostile bytes, ownership (arena and malloc) and the
 * single-part preparation functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/jid.h>
#include <palaver/mem.h>

/* CUnit only shows the condition text; say which table row failed. */
static void
expect_str(const char *what, const char *input, const char *got,
           const char *want)
{
    int same = (got == NULL && want == NULL) ||
               (got != NULL && want != NULL && strcmp(got, want) == 0);

    if (!same)
        fprintf(stderr, "\n  %s(\"%s\"): got %s%s%s, want %s%s%s\n", what,
                input, got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
                want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
    CU_ASSERT(same);
}

typedef struct {
    const char *in;
    const char *full;
    const char *node;
    const char *domain;
    const char *resource;
} valid_case_t;

static const valid_case_t valid_cases[] = {
    /* RFC 7622 §3.5, table 1 */
    {"juliet@example.com", "juliet@example.com", "juliet", "example.com", NULL},
    {"juliet@example.com/foo", "juliet@example.com/foo", "juliet",
     "example.com", "foo"},
    {"juliet@example.com/foo bar", "juliet@example.com/foo bar", "juliet",
     "example.com", "foo bar"},
    {"juliet@example.com/foo@bar", "juliet@example.com/foo@bar", "juliet",
     "example.com", "foo@bar"},
    {"foo\\20bar@example.com", "foo\\20bar@example.com", "foo\\20bar",
     "example.com", NULL},
    {"fussball@example.com", "fussball@example.com", "fussball", "example.com",
     NULL},
    {"fu\xc3\x9f"
     "ball@example.com",
     "fu\xc3\x9f"
     "ball@example.com",
     "fu\xc3\x9f"
     "ball",
     "example.com", NULL},
    {"\xcf\x80@example.com", "\xcf\x80@example.com", "\xcf\x80", "example.com",
     NULL},
    {"\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo", "\xcf\x83",
     "example.com", "foo"},
    {"\xcf\x83@example.com/foo", "\xcf\x83@example.com/foo", "\xcf\x83",
     "example.com", "foo"},
    {"\xcf\x82@example.com/foo", "\xcf\x82@example.com/foo", "\xcf\x82",
     "example.com", "foo"},
    {"king@example.com/\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a", "king",
     "example.com", "\xe2\x99\x9a"},
    {"example.com", "example.com", NULL, "example.com", NULL},
    {"example.com/foobar", "example.com/foobar", NULL, "example.com", "foobar"},
    {"a.example.com/b@example.net", "a.example.com/b@example.net", NULL,
     "a.example.com", "b@example.net"},
    /* RFC 7622 §3.5 table 2 lists this as invalid, but verified erratum
     * 4560 withdraws the example: OpaqueString allows a leading space. */
    {"juliet@example.com/ foo", "juliet@example.com/ foo", "juliet",
     "example.com", " foo"},
    /* case mapping of localpart and domainpart, never of the resource */
    {"JuLiEt@ExAmPlE.CoM/FoO", "juliet@example.com/FoO", "juliet",
     "example.com", "FoO"},
    /* only the first '/' separates */
    {"juliet@example.com/foo/bar", "juliet@example.com/foo/bar", "juliet",
     "example.com", "foo/bar"},
    {"example.com//@", "example.com//@", NULL, "example.com", "/@"},
    /* one trailing dot is stripped, RFC 7622 §3.2 */
    {"juliet@example.com./r", "juliet@example.com/r", "juliet", "example.com",
     "r"},
    {"A.Example.nEt.", "a.example.net", NULL, "a.example.net", NULL},
    /* IP literals, canonical form */
    {"[::1]", "[::1]", NULL, "[::1]", NULL},
    {"u@[2001:0DB8:0:0:0:0:0:1]/r", "u@[2001:db8::1]/r", "u", "[2001:db8::1]",
     "r"},
    {"127.0.0.1", "127.0.0.1", NULL, "127.0.0.1", NULL},
    {"u@192.168.1.10.", "u@192.168.1.10", "u", "192.168.1.10", NULL},
    /* IDNA2008: A-labels become U-labels, mapping lowercases */
    {"XN--BCHER-KVA.example",
     "b\xc3\xbc"
     "cher.example",
     NULL,
     "b\xc3\xbc"
     "cher.example",
     NULL},
    {"u@BU\xcc\x88"
     "CHER.example",
     "u@b\xc3\xbc"
     "cher.example",
     "u",
     "b\xc3\xbc"
     "cher.example",
     NULL},
    {"fa\xc3\x9f.de", "fa\xc3\x9f.de", NULL, "fa\xc3\x9f.de", NULL},
    /* decomposed input composes (NFC) in every part */
    {"e\xcc\x81@example.com/e\xcc\x81", "\xc3\xa9@example.com/\xc3\xa9",
     "\xc3\xa9", "example.com", "\xc3\xa9"},
    /* fullwidth localpart is width-mapped, fullwidth resource kept */
    {"\xef\xbc\xa6\xef\xbc\xaf\xef\xbc\xaf@example.com/\xef\xbc\xb2",
     "foo@example.com/\xef\xbc\xb2", "foo", "example.com", "\xef\xbc\xb2"},
    /* a non-ASCII space in a resource becomes U+0020 */
    {"example.com/a\xc2\xa0"
     "b",
     "example.com/a b", NULL, "example.com", "a b"},
};

static void
check_valid(const valid_case_t *c, pv_jid_t *j)
{
    expect_str("full", c->in, j->full, c->full);
    expect_str("node", c->in, j->node, c->node);
    expect_str("domain", c->in, j->domain, c->domain);
    expect_str("resource", c->in, j->resource, c->resource);
}

static void
test_parse_valid(void)
{
    pv_arena_t *arena = pv_arena_new(0);
    size_t i;

    for (i = 0; i < PV_COUNTOF(valid_cases); i++) {
        const valid_case_t *c = &valid_cases[i];
        pv_jid_t j, again;
        char bare[2048];
        int rc = pv_jid_parse(c->in, strlen(c->in), &j, NULL);

        CU_ASSERT_EQUAL(rc, PV_OK);
        if (rc != PV_OK) {
            fprintf(stderr, "\n  parse(\"%s\") failed\n", c->in);
            continue;
        }
        check_valid(c, &j);
        /* bare is full without the resource */
        snprintf(bare, sizeof(bare), "%s%s%s", c->node ? c->node : "",
                 c->node ? "@" : "", c->domain);
        expect_str("bare", c->in, j.bare, bare);
        /* preparing a prepared JID changes nothing */
        CU_ASSERT_EQUAL(pv_jid_parse(j.full, strlen(j.full), &again, arena),
                        PV_OK);
        check_valid(c, &again);
        CU_ASSERT(again.full != NULL && pv_jid_equal(&j, &again));
        /* and pv_jid_make from the parts gives the same JID */
        CU_ASSERT_EQUAL(
            pv_jid_make(j.node, j.domain, j.resource, &again, arena), PV_OK);
        check_valid(c, &again);
        pv_jid_clear(&j);
        CU_ASSERT_PTR_NULL(j.full);
    }
    pv_arena_free(arena);
}

typedef struct {
    const char *in;
    size_t len; /* 0: strlen(in) */
} bad_case_t;

static const bad_case_t invalid_cases[] = {
    /* RFC 7622 §3.5, table 2 (less the example erratum 4560 removed) */
    {"\"juliet\"@example.com", 0},
    {"foo bar@example.com", 0},
    {"@example.com/", 0},
    {"henry\xe2\x85\xa3@example.com", 0},
    {"\xe2\x99\x9a@example.com", 0},
    {"juliet@", 0},
    {"/foobar", 0},
    /* empty parts and stray separators, RFC 7622 §3.1 */
    {"", 0},
    {"@example.com", 0},
    {"example.com/", 0},
    {"juliet@example.com/", 0},
    {"@", 0},
    {"/", 0},
    {"@/", 0},
    {"a@b@example.com", 0},
    {".", 0},
    {"juliet@.", 0},
    {"example.com..", 0},
    /* RFC 7622 §3.3.1 exclusions and PRECIS IdentifierClass */
    {"a&b@example.com", 0},
    {"a'b@example.com", 0},
    {"a:b@example.com", 0},
    {"a<b@example.com", 0},
    {"a>b@example.com", 0},
    {"\xef\xbc\xa0"
     "b@example.com",
     0}, /* fullwidth '@' maps to '@' */
    {"\tjuliet@example.com", 0},
    /* control characters in the resource */
    {"example.com/a\tb", 0},
    {"example.com/a\x7f", 0},
    /* embedded NUL in each part */
    {"a\0@example.com", 14},
    {"a@exa\0mple.com", 14},
    {"a@example.com/r\0", 16},
    {"a@[::1\0x]", 9},
    /* invalid UTF-8: truncated, stray continuation, overlong, surrogate,
     * beyond U+10FFFF, in each part */
    {"\xc3@example.com", 0},
    {"\x80"
     "a@example.com",
     0},
    {"\xc0\xaf@example.com", 0},
    {"\xed\xa0\x80@example.com", 0},
    {"\xf4\x90\x80\x80@example.com", 0},
    {"\xff", 0},
    {"a@ex\xe9mple.com", 0},
    {"a@example.com/\xe2\x82", 0},
    /* domains */
    {"a..b", 0},
    {".example", 0},
    {"-a.example", 0},
    {"a-.example", 0},
    {"ab--cd.example", 0},
    {"_xmpp.example", 0},
    {"a b.example", 0},
    {"example.com:5222", 0},
    {"[::gg]", 0},
    {"[::1", 0},
    {"::1", 0},
    {"[::1%eth0]", 0},
    {"[]", 0},
    {"xn--abc-.example", 0},
    {"\xf0\x9f\x98\x80.example", 0},
};

static void
test_parse_invalid(void)
{
    size_t i;

    for (i = 0; i < PV_COUNTOF(invalid_cases); i++) {
        const bad_case_t *c = &invalid_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        pv_jid_t j;
        int rc;

        memset(&j, 0x5a, sizeof(j));
        rc = pv_jid_parse(c->in, len, &j, NULL);
        if (rc != PV_ERROR) {
            fprintf(stderr, "\n  parse(\"%s\") accepted as \"%s\"\n", c->in,
                    j.full);
            pv_jid_clear(&j);
        }
        CU_ASSERT_EQUAL(rc, PV_ERROR);
        /* the contract: *out is zeroed on error */
        CU_ASSERT_PTR_NULL(j.full);
        CU_ASSERT_PTR_NULL(j.bare);
        CU_ASSERT_PTR_NULL(j.node);
        CU_ASSERT_PTR_NULL(j.domain);
        CU_ASSERT_PTR_NULL(j.resource);
    }
    CU_ASSERT_EQUAL(pv_jid_parse(NULL, 0, &(pv_jid_t){0}, NULL), PV_ERROR);
}

typedef struct {
    const char *in;
    const char *want; /* NULL: must be rejected */
} prep_case_t;

/* UsernameCaseMapped + RFC 7622 §3.3.1 */
static const prep_case_t node_cases[] = {
    {"juliet", "juliet"},
    {"JULIET", "juliet"},
    {"foo\\20bar", "foo\\20bar"},
    {"fu\xc3\x9f"
     "ball",
     "fu\xc3\x9f"
     "ball"}, /* ß stays */
    {"FU\xc3\x9f"
     "BALL",
     "fu\xc3\x9f"
     "ball"},
    {"\xce\xa3", "\xcf\x83"}, /* Σ -> σ */
    /* toLowerCase() is context-sensitive for a final capital sigma */
    {"\xce\x9f\xce\x94\xce\xa5\xce\xa3", "\xce\xbf\xce\xb4\xcf\x85\xcf\x82"},
    {"\xc3\x89", "\xc3\xa9"},                        /* É -> é */
    {"\xef\xbc\xa6\xef\xbc\xaf\xef\xbc\xaf", "foo"}, /* ＦＯＯ */
    {"\xef\xbd\xb6\xef\xbe\x9e", "\xe3\x82\xac"},    /* ｶﾞ -> ガ */
    {"\xc4\xb0", "i\xcc\x87"},                       /* İ */
    {"\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80"},    /* jamo -> 가 */
    {"\xe5\xa4\xa7\xe5\x8e\x9f", "\xe5\xa4\xa7\xe5\x8e\x9f"},
    /* RFC 5892 Appendix A contexts */
    {"l\xc2\xb7l", "l\xc2\xb7l"}, /* A.3 */
    {"L\xc2\xb7L", "l\xc2\xb7l"},
    {"a\xc2\xb7"
     "b",
     NULL},
    {"\xcd\xb5\xce\xb1", "\xcd\xb5\xce\xb1"}, /* A.4 keraia */
    {"\xcd\xb5"
     "a",
     NULL},
    {"\xd7\x90\xd7\xb3", "\xd7\x90\xd7\xb3"}, /* A.5 geresh */
    {"\xd7\xb3\xd7\x90", NULL},
    {"\xe3\x82\xab\xe3\x83\xbb"
     "a",
     "\xe3\x82\xab\xe3\x83\xbb"
     "a"},
    {"a\xe3\x83\xbb"
     "b",
     NULL}, /* A.7 */
    {"\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d\xe0\xa4\xb7",
     "\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d\xe0\xa4\xb7"}, /* A.2 ZWJ */
    {"a\xe2\x80\x8d"
     "b",
     NULL},
    {"\xd8\xa8\xe2\x80\x8c\xd8\xa8", "\xd8\xa8\xe2\x80\x8c\xd8\xa8"},
    {"a\xe2\x80\x8c"
     "b",
     NULL},                                                   /* A.1 ZWNJ */
    {"\xd8\xa8\xd9\xa1\xd9\xa2", "\xd8\xa8\xd9\xa1\xd9\xa2"}, /* A.8 */
    {"\xd8\xa8\xd9\xa1\xdb\xb2", NULL},                       /* A.8/A.9 mix */
    {"\xd9\xa1\xd9\xa2", NULL}, /* Bidi: may not start with AN */
    /* RFC 5893 Bidi Rule */
    {"\xd7\x90\xd7\x91"
     "1",
     "\xd7\x90\xd7\x91"
     "1"},
    {"\xd7\x90\xd7\x91"
     "a",
     NULL},
    {"a\xd7\x90\xd7\x91", NULL},
    {"\xd7\x90\xd7\x91-", NULL},
    /* disallowed code points */
    {"henry\xe2\x85\xa3", NULL}, /* Ⅳ: compatibility */
    {"\xef\xac\x80", NULL},      /* ﬀ ligature */
    {"\xe2\x99\x9a", NULL},      /* ♚ symbol */
    {"\xf0\x9f\x98\x80", NULL},  /* emoji */
    {"\xc2\xad", NULL},          /* soft hyphen: default ignorable */
    {"\xe2\x80\x8b", NULL},      /* zero width space */
    {"\xe2\x80\xae", NULL},      /* RLO */
    {"\xee\x80\x80", NULL},      /* private use */
    {"\xef\xb7\x90", NULL},      /* noncharacter */
    {"\xcd\xb8", NULL},          /* unassigned U+0378 */
    {"\xe1\x84\x80", NULL},      /* lone old Hangul jamo */
    {"\xd9\x80", NULL},          /* tatweel, an exception */
    {"a b", NULL},
    {"a\xc2\xa0"
     "b",
     NULL},                 /* no-break space */
    {"\xef\xbc\x82", NULL}, /* fullwidth '"' maps to '"' */
    {"\xef\xbc\x8f", NULL}, /* fullwidth '/' */
    {"<\xcc\xb8", NULL},    /* NFC makes U+226E, a symbol */
    {"a/b", NULL},
    {"a@b", NULL},
    {"", NULL},
};

/* OpaqueString */
static const prep_case_t resource_cases[] = {
    {"Foo Bar", "Foo Bar"},
    {" foo ", " foo "},
    {"a@b/c", "a@b/c"},
    {"\xef\xbc\xb2", "\xef\xbc\xb2"}, /* no width map */
    {"\xe2\x85\xa3", "\xe2\x85\xa3"}, /* Ⅳ allowed */
    {"\xef\xac\x80", "\xef\xac\x80"},
    {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
    {"\xe2\x99\x9a", "\xe2\x99\x9a"},
    {"A\xc2\xa0"
     "B",
     "A B"},
    {"\xe2\x80\x83x\xe3\x80\x80", " x "},
    {"a\xd7\x90\xd7\x91", "a\xd7\x90\xd7\x91"}, /* no Bidi rule */
    {"e\xcc\x81", "\xc3\xa9"},
    {"\xe1\x84\x80\xe1\x85\xa1", "\xea\xb0\x80"},
    {"<\xcc\xb8", "\xe2\x89\xae"},
    {"\t", NULL},
    {"\x7f", NULL},
    {"\xc2\x85", NULL},
    {"\xc2\xad", NULL},
    {"\xee\x80\x80", NULL},
    {"\xcd\xb8", NULL},
    {"a\xe2\x80\x8d"
     "b",
     NULL},
    {"a\xc2\xb7"
     "b",
     NULL},
    {"", NULL},
};

static const prep_case_t domain_cases[] = {
    {"example.com", "example.com"},
    {"EXAMPLE.COM.", "example.com"},
    {"localhost", "localhost"},
    {"conference.example.org", "conference.example.org"},
    {"xn--bcher-kva.example", "b\xc3\xbc"
                              "cher.example"},
    {"b\xc3\xbc"
     "cher.example",
     "b\xc3\xbc"
     "cher.example"},
    {"\xef\xbc\xa5\xef\xbc\xb8\xef\xbc\xa1\xef\xbc\xad\xef\xbc\xb0"
     "\xef\xbc\xac\xef\xbc\xa5\xe3\x80\x82"
     "com",
     "example.com"},
    {"xn--fa-hia.de", "fa\xc3\x9f.de"},
    {"[2001:DB8::1]", "[2001:db8::1]"},
    {"[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]"},
    {"10.0.0.1", "10.0.0.1"},
    {"[v1.x]", NULL},
    {"", NULL},
    {".", NULL},
    {"a@b", NULL},
    {"a/b", NULL},
    {"xn--.example", NULL},
    {"\xe2\x99\x9a.example", NULL},
    {"a\xc2\xb7"
     "b.example",
     NULL}, /* CONTEXTO A.3 */
    {"l\xc2\xb7l.example", "l\xc2\xb7l.example"},
    {"l\xc2\xb7.lexample", NULL}, /* context is per label */
    {"\xe3\x82\xab\xe3\x83\xbb"
     "a.example",
     "\xe3\x82\xab\xe3\x83\xbb"
     "a.example"},
    {"a\xe3\x83\xbb"
     "b.\xe3\x82\xab",
     NULL}, /* A.7 per label */
    {"a\xe2\x80\x8d"
     "b.example",
     NULL}, /* CONTEXTJ */
};

static void
run_prep_table(const char *what, char *(*fn)(const char *, size_t),
               const prep_case_t *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char *got = fn(cases[i].in, strlen(cases[i].in));
        expect_str(what, cases[i].in, got, cases[i].want);
        if (got != NULL) {
            /* idempotent */
            char *again = fn(got, strlen(got));
            expect_str(what, got, again, got);
            free(again);
        }
        free(got);
    }
}

static void
test_prep_node(void)
{
    run_prep_table("prep_node", pv_jid_prep_node, node_cases,
                   PV_COUNTOF(node_cases));
    CU_ASSERT_PTR_NULL(pv_jid_prep_node(NULL, 0));
}

static void
test_prep_resource(void)
{
    run_prep_table("prep_resource", pv_jid_prep_resource, resource_cases,
                   PV_COUNTOF(resource_cases));
}

static void
test_prep_domain(void)
{
    run_prep_table("prep_domain", pv_jid_prep_domain, domain_cases,
                   PV_COUNTOF(domain_cases));
    CU_ASSERT_PTR_NULL(pv_jid_prep_domain("a\0b", 3));
}

static const prep_case_t opaque_cases[] = {
    {"correct horse battery staple", "correct horse battery staple"},
    {"Pa55w0rd!", "Pa55w0rd!"},
    {"\xef\xbc\xb0\xef\xbd\x81\xef\xbd\x93\xef\xbd\x93",
     "\xef\xbc\xb0\xef\xbd\x81\xef\xbd\x93\xef\xbd\x93"},
    {"\xc2\xa0pass", " pass"},
    {"I\xe2\x85\xa8", "I\xe2\x85\xa8"},
    {"e\xcc\x81t\xc3\xa9", "\xc3\xa9t\xc3\xa9"},
    {"\xe2\x80\x8b", NULL},
    {"a\x01", NULL},
    {"\xc3", NULL},
    {"", NULL},
};

static void
test_precis_opaque(void)
{
    run_prep_table("precis_opaque", pv_precis_opaque, opaque_cases,
                   PV_COUNTOF(opaque_cases));
    CU_ASSERT_PTR_NULL(pv_precis_opaque("a\0b", 3));
}

/* Builds s = prefix + unit * n + suffix in buf. */
static char *
repeat(char *buf, const char *prefix, const char *unit, size_t n,
       const char *suffix)
{
    size_t i;

    strcpy(buf, prefix);
    for (i = 0; i < n; i++)
        strcat(buf, unit);
    strcat(buf, suffix);
    return buf;
}

static int
parses(const char *s)
{
    pv_jid_t j;
    int rc = pv_jid_parse(s, strlen(s), &j, NULL);

    pv_jid_clear(&j);
    return rc == PV_OK;
}

static void
test_length_limits(void)
{
    static char buf[8192];
    pv_jid_t j;

    /* RFC 7622 §3.1: 1023 octets per part after preparation */
    CU_ASSERT(parses(repeat(buf, "", "a", 1023, "@example.com")));
    CU_ASSERT(!parses(repeat(buf, "", "a", 1024, "@example.com")));
    CU_ASSERT(parses(repeat(buf, "example.com/", "a", 1023, "")));
    CU_ASSERT(!parses(repeat(buf, "example.com/", "a", 1024, "")));
    /* counted in octets, not code points */
    CU_ASSERT(parses(repeat(buf, "", "\xc3\xa9", 511, "a@example.com")));
    CU_ASSERT(!parses(repeat(buf, "", "\xc3\xa9", 512, "@example.com")));
    CU_ASSERT(
        !parses(repeat(buf, "example.com/", "\xf0\x9f\x98\x80", 256, "")));
    /* counted after preparation: 1534 input octets compose to 1023 */
    repeat(buf, "", "e\xcc\x81", 511, "a@example.com");
    CU_ASSERT_EQUAL_FATAL(pv_jid_parse(buf, strlen(buf), &j, NULL), PV_OK);
    CU_ASSERT_EQUAL(strlen(j.node), 1023);
    CU_ASSERT_EQUAL(strlen(j.full), 1023 + 12);
    pv_jid_clear(&j);
    /* width mapping shrinks too: 1023 fullwidth letters are 3069 octets */
    CU_ASSERT(parses(repeat(buf, "", "\xef\xbc\xa1", 1023, "@example.com")));
    /* hostile sizes are refused before any Unicode work */
    CU_ASSERT(!parses(repeat(buf, "", "e\xcc\x81", 1400, "@example.com")));
    /* DNS: 63 octets per label, 253 per name */
    CU_ASSERT(parses(repeat(buf, "", "a", 63, ".example")));
    CU_ASSERT(!parses(repeat(buf, "", "a", 64, ".example")));
    repeat(buf, "", "a", 63, ".");
    repeat(buf + 64, "", "b", 63, ".");
    repeat(buf + 128, "", "c", 63, ".");
    repeat(buf + 192, "", "d", 61, "");
    CU_ASSERT_EQUAL(strlen(buf), 253);
    CU_ASSERT(parses(buf));
    strcat(buf, "d");
    CU_ASSERT(!parses(buf));
    /* an A-label of 63 octets is fine, one that does not fit is not */
    CU_ASSERT(parses(repeat(buf, "", "\xc3\xa9", 57, ".example")));
    CU_ASSERT(!parses(repeat(buf, "", "\xc3\xa9", 58, ".example")));
    /* the longest JID */
    repeat(buf, "", "a", 1023, "@");
    strcat(buf, "[::1]/");
    repeat(buf + strlen(buf), "", "r", 1023, "");
    CU_ASSERT(parses(buf));
}

static void
test_ownership(void)
{
    pv_arena_t *arena = pv_arena_new(0);
    pv_jid_t a, b, c, d;
    const char *in = "Romeo@Example.NET/Orchard";

    CU_ASSERT_EQUAL_FATAL(pv_jid_parse(in, strlen(in), &a, arena), PV_OK);
    expect_str("a.full", "", a.full, "romeo@example.net/Orchard");
    expect_str("a.bare", "", a.bare, "romeo@example.net");
    /* copies are deep and independent of their source */
    CU_ASSERT_EQUAL(pv_jid_copy(&a, &b, NULL), PV_OK);
    CU_ASSERT_PTR_NOT_EQUAL(a.full, b.full);
    CU_ASSERT(pv_jid_equal(&a, &b));
    expect_str("b.node", "", b.node, "romeo");
    expect_str("b.domain", "", b.domain, "example.net");
    expect_str("b.resource", "", b.resource, "Orchard");
    /* clearing an arena jid must not free arena memory */
    pv_jid_clear(&a);
    CU_ASSERT_PTR_NULL(a.full);
    CU_ASSERT_EQUAL(pv_jid_copy(&a, &c, NULL), PV_ERROR);
    CU_ASSERT_PTR_NULL(c.full);
    /* copy onto itself */
    CU_ASSERT_EQUAL(pv_jid_copy(&b, &c, arena), PV_OK);
    CU_ASSERT_EQUAL(pv_jid_copy(&c, &c, arena), PV_OK);
    expect_str("c.full", "", c.full, "romeo@example.net/Orchard");
    /* equality: full vs bare */
    CU_ASSERT_EQUAL(pv_jid_make("ROMEO", "example.net", "balcony", &d, NULL),
                    PV_OK);
    CU_ASSERT(!pv_jid_equal(&b, &d));
    CU_ASSERT(pv_jid_bare_equal(&b, &d));
    pv_jid_clear(&d);
    CU_ASSERT_EQUAL(pv_jid_make("Romeo", "example.net", "orchard", &d, NULL),
                    PV_OK);
    CU_ASSERT(!pv_jid_equal(&b, &d)); /* resources are case-sensitive */
    pv_jid_clear(&d);
    /* bare and domain share storage with full when they can */
    CU_ASSERT_EQUAL(pv_jid_make(NULL, "example.net", NULL, &d, NULL), PV_OK);
    CU_ASSERT_PTR_EQUAL(d.full, d.bare);
    CU_ASSERT_PTR_EQUAL(d.bare, d.domain);
    CU_ASSERT_PTR_NULL(d.node);
    CU_ASSERT_PTR_NULL(d.resource);
    pv_jid_clear(&d);
    pv_jid_clear(&d); /* clearing a zeroed jid is a no-op */
    pv_jid_clear(&b);
    pv_arena_free(arena);
}

static void
test_make(void)
{
    pv_jid_t j;

    /* parts are not split again: '/' in a resource is just a character */
    CU_ASSERT_EQUAL(pv_jid_make("juliet", "Example.com.", "a/b@c", &j, NULL),
                    PV_OK);
    expect_str("j.full", "", j.full, "juliet@example.com/a/b@c");
    pv_jid_clear(&j);
    CU_ASSERT_EQUAL(pv_jid_make("", "example.com", NULL, &j, NULL), PV_ERROR);
    CU_ASSERT_EQUAL(pv_jid_make("a", "example.com", "", &j, NULL), PV_ERROR);
    CU_ASSERT_EQUAL(pv_jid_make("a", NULL, NULL, &j, NULL), PV_ERROR);
    CU_ASSERT_EQUAL(pv_jid_make("a@b", "example.com", NULL, &j, NULL),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_jid_make("a", "example.com/x", NULL, &j, NULL),
                    PV_ERROR);
    CU_ASSERT_EQUAL(
        pv_jid_make("henry\xe2\x85\xa3", "example.com", NULL, &j, NULL),
        PV_ERROR);
    CU_ASSERT_PTR_NULL(j.full);
}

void test_suite_jid(void);

void
test_suite_jid(void)
{
    CU_pSuite s = CU_add_suite("jid", NULL, NULL);

    CU_add_test(s, "parse valid (RFC 7622 §3.5 and more)", test_parse_valid);
    CU_add_test(s, "parse invalid", test_parse_invalid);
    CU_add_test(s, "localpart UsernameCaseMapped", test_prep_node);
    CU_add_test(s, "resourcepart OpaqueString", test_prep_resource);
    CU_add_test(s, "domainpart IDNA2008 and IP literals", test_prep_domain);
    CU_add_test(s, "OpaqueString for passwords", test_precis_opaque);
    CU_add_test(s, "length limits", test_length_limits);
    CU_add_test(s, "ownership, copy, equality", test_ownership);
    CU_add_test(s, "make from parts", test_make);
}
