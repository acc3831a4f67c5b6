/* tests/unit/test_dataform.c: XEP-0004 field helpers and XEP-0059 <set/>
 * parsing and answers (src/dataform.c): fields built and serialized,
 * first/all values read back, the value limit, and a table of RSM
 * requests (max, after, before, empty before, index, hostile max). */
#include <stdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/dataform.h>

static char *
ser(const pv_node_t *n, pv_buf_t *b)
{
    pv_buf_reset(b);
    pv_node_serialize(n, b, NULL);
    return b->data;
}

static void
text_child(pv_arena_t *a, pv_node_t *parent, const char *name,
           const char *text)
{
    pv_node_t *n = pv_node_new(a, name, NULL, parent);

    if (text != NULL)
        pv_node_add_text(a, n, text, strlen(text));
}

static void
test_form_fields(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_buf_t b = { 0 };
    pv_node_t *x = pv_node_new(a, "x", PV_NS_DATA, NULL);
    pv_node_t *f;
    const char **vals = (const char **)1;
    size_t n = 99;

    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL, "urn:xmpp:mam:2");
    pv_form_add_field(a, x, "with", "jid-single", NULL, NULL);
    pv_form_add_field(a, x, "p", NULL, "A & B", "1<2");
    CU_ASSERT_STRING_EQUAL(ser(x, &b),
        "<x xmlns='jabber:x:data'>"
        "<field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:mam:2</value></field>"
        "<field var='with' type='jid-single'/>"
        "<field var='p' label='A &amp; B'><value>1&lt;2</value></field>"
        "</x>");
    f = pv_node_child(x, "field", NULL);
    CU_ASSERT_STRING_EQUAL(pv_form_field_value(f, a), "urn:xmpp:mam:2");
    f = pv_node_next_child(x, f, "field", NULL);
    CU_ASSERT_PTR_NULL(pv_form_field_value(f, a));
    CU_ASSERT_EQUAL(pv_form_field_values(f, a, 10, &vals, &n), PV_OK);
    CU_ASSERT_PTR_NULL(vals);
    CU_ASSERT_EQUAL(n, 0);

    f = pv_form_add_field(a, x, "ids", "text-multi", NULL, "one");
    text_child(a, f, "value", "two");
    text_child(a, f, "value", NULL);
    text_child(a, f, "other", "ignored");
    text_child(a, f, "value", "four");
    CU_ASSERT_EQUAL(pv_form_field_values(f, a, 4, &vals, &n), PV_OK);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_STRING_EQUAL(vals[0], "one");
    CU_ASSERT_STRING_EQUAL(vals[1], "two");
    CU_ASSERT_STRING_EQUAL(vals[2], "");
    CU_ASSERT_STRING_EQUAL(vals[3], "four");
    /* over the limit: refused, outputs untouched */
    vals = NULL;
    n = 7;
    CU_ASSERT_EQUAL(pv_form_field_values(f, a, 3, &vals, &n), PV_ERROR);
    CU_ASSERT_PTR_NULL(vals);
    CU_ASSERT_EQUAL(n, 7);
    pv_buf_free(&b);
    pv_arena_free(a);
}

typedef struct {
    const char *max, *after, *before;   /* NULL: element absent */
    int index;
    pv_rc_t rc;
    const char *cond;                   /* on PV_ERROR */
    int has_max;
    size_t want_max;
} rsm_case_t;

static const rsm_case_t rsm_cases[] = {
    { "10", NULL, NULL, 0, PV_OK, NULL, 1, 10 },
    { "0", NULL, NULL, 0, PV_OK, NULL, 1, 0 },
    { NULL, "abc", NULL, 0, PV_OK, NULL, 0, 0 },
    { "5", NULL, "", 0, PV_OK, NULL, 1, 5 },
    { "5", "", "xyz", 0, PV_OK, NULL, 1, 5 },
    { "99999999999999999999999999", NULL, NULL, 0, PV_OK, NULL, 1,
      SIZE_MAX },
    { "-1", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { "+1", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { " 1", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { "1x", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { "", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { "0x10", NULL, NULL, 0, PV_ERROR, "bad-request", 0, 0 },
    { "10", NULL, NULL, 1, PV_ERROR, "feature-not-implemented", 0, 0 },
};

static void
test_rsm_parse(void)
{
    size_t i;

    for (i = 0; i < sizeof(rsm_cases) / sizeof(rsm_cases[0]); i++) {
        const rsm_case_t *c = &rsm_cases[i];
        pv_arena_t *a = pv_arena_new(0);
        pv_node_t *q = pv_node_new(a, "query", "urn:xmpp:mam:2", NULL);
        pv_node_t *set = pv_node_new(a, "set", PV_NS_RSM, q);
        const char *cond = NULL, *text = NULL;
        pv_rsm_t r;
        pv_rc_t rc;

        if (c->max != NULL)
            text_child(a, set, "max", c->max);
        if (c->after != NULL)
            text_child(a, set, "after", c->after);
        if (c->before != NULL)
            text_child(a, set, "before", c->before);
        if (c->index)
            text_child(a, set, "index", "3");
        rc = pv_rsm_parse(q, a, &r, &cond, &text);
        if (rc != c->rc)
            fprintf(stderr, "\n  rsm case %zu: rc %d\n", i, (int)rc);
        CU_ASSERT_EQUAL(rc, c->rc);
        if (rc == PV_OK) {
            CU_ASSERT_EQUAL(r.has_max, c->has_max);
            CU_ASSERT_EQUAL(r.max, c->want_max);
            CU_ASSERT(c->after == NULL ? r.after == NULL :
                      r.after != NULL && strcmp(r.after, c->after) == 0);
            CU_ASSERT(c->before == NULL ? r.before == NULL :
                      r.before != NULL && strcmp(r.before, c->before) == 0);
        } else {
            CU_ASSERT(cond != NULL && strcmp(cond, c->cond) == 0);
            CU_ASSERT_PTR_NOT_NULL(text);
        }
        pv_arena_free(a);
    }
}

static void
test_rsm_absent(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *q = pv_node_new(a, "query", "urn:xmpp:mam:2", NULL);
    const char *cond = NULL, *text = NULL;
    pv_rsm_t r;

    /* a <set/> in another namespace is not RSM */
    text_child(a, pv_node_new(a, "set", "urn:example", q), "max", "-1");
    memset(&r, 0x55, sizeof(r));
    CU_ASSERT_EQUAL(pv_rsm_parse(q, a, &r, &cond, &text), PV_NOTFOUND);
    CU_ASSERT_EQUAL(r.has_max, 0);
    CU_ASSERT_PTR_NULL(r.after);
    CU_ASSERT_PTR_NULL(r.before);
    CU_ASSERT_PTR_NULL(cond);
    pv_arena_free(a);
}

static void
test_rsm_answer(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_buf_t b = { 0 };
    pv_node_t *fin = pv_node_new(a, "fin", "urn:xmpp:mam:2", NULL);
    pv_node_t *set;

    set = pv_rsm_answer(a, fin, "a1", "z<9", -1);
    CU_ASSERT_STRING_EQUAL(ser(set, &b),
        "<set xmlns='http://jabber.org/protocol/rsm'><first>a1</first>"
        "<last>z&lt;9</last></set>");
    pv_node_remove(set);
    set = pv_rsm_answer(a, fin, NULL, NULL, 0);
    CU_ASSERT_STRING_EQUAL(ser(set, &b),
        "<set xmlns='http://jabber.org/protocol/rsm'><count>0</count>"
        "</set>");
    pv_node_remove(set);
    set = pv_rsm_answer(a, fin, "f", "l", 1234567890123LL);
    CU_ASSERT_STRING_EQUAL(ser(set, &b),
        "<set xmlns='http://jabber.org/protocol/rsm'><first>f</first>"
        "<last>l</last><count>1234567890123</count></set>");
    pv_node_remove(set);
    set = pv_rsm_answer(a, fin, "only-first", NULL, -1);
    CU_ASSERT_STRING_EQUAL(ser(set, &b),
        "<set xmlns='http://jabber.org/protocol/rsm'/>");
    CU_ASSERT_STRING_EQUAL(ser(fin, &b),
        "<fin xmlns='urn:xmpp:mam:2'>"
        "<set xmlns='http://jabber.org/protocol/rsm'/></fin>");
    pv_buf_free(&b);
    pv_arena_free(a);
}

void
test_suite_dataform(void)
{
    CU_pSuite s = CU_add_suite("dataform", NULL, NULL);

    CU_add_test(s, "form fields", test_form_fields);
    CU_add_test(s, "rsm parse", test_rsm_parse);
    CU_add_test(s, "rsm absent", test_rsm_absent);
    CU_add_test(s, "rsm answer", test_rsm_answer);
}
