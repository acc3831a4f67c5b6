/* src/dataform.c: XEP-0004 data form fields and XEP-0059 result set
 * parameters for the modules (see include/palaver/dataform.h). Kept in
 * the core so that modules, which may not call each other, share one
 * reading of these wire formats. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/dataform.h>

pv_node_t *
pv_form_add_field(pv_arena_t *a, pv_node_t *x, const char *var,
                  const char *type, const char *label, const char *value)
{
    pv_node_t *f = pv_node_new(a, "field", NULL, x);

    pv_node_set_attr(a, f, "var", var);
    if (type != NULL)
        pv_node_set_attr(a, f, "type", type);
    if (label != NULL)
        pv_node_set_attr(a, f, "label", label);
    if (value != NULL)
        pv_node_add_text(a, pv_node_new(a, "value", NULL, f), value,
                         strlen(value));
    return f;
}

const char *
pv_form_field_value(const pv_node_t *field, pv_arena_t *a)
{
    const pv_node_t *v = pv_node_child(field, "value", NULL);

    return v != NULL ? pv_node_text(v, a) : NULL;
}

pv_rc_t
pv_form_field_values(const pv_node_t *field, pv_arena_t *a, size_t max,
                     const char ***vals, size_t *n)
{
    const pv_node_t *v;
    const char **out;
    size_t count = 0, i = 0;

    /* count first: one exact allocation, and the limit is checked
     * before anything is copied */
    for (v = pv_node_child(field, "value", NULL); v != NULL;
         v = pv_node_next_child(field, v, "value", NULL)) {
        if (++count > max)
            return PV_ERROR;
    }
    if (count == 0) {
        *vals = NULL;
        *n = 0;
        return PV_OK;
    }
    out = pv_arena_alloc(a, count * sizeof(*out));
    for (v = pv_node_child(field, "value", NULL); v != NULL;
         v = pv_node_next_child(field, v, "value", NULL))
        out[i++] = pv_node_text(v, a);
    *vals = out;
    *n = count;
    return PV_OK;
}

pv_rc_t
pv_rsm_parse(const pv_node_t *parent, pv_arena_t *a, pv_rsm_t *r,
             const char **cond, const char **text)
{
    const pv_node_t *set, *n;

    memset(r, 0, sizeof(*r));
    set = pv_node_child(parent, "set", PV_NS_RSM);
    if (set == NULL)
        return PV_NOTFOUND;
    if (pv_node_child(set, "index", NULL) != NULL) {
        *cond = "feature-not-implemented";
        *text = "RSM index is not supported";
        return PV_ERROR;
    }
    n = pv_node_child(set, "max", NULL);
    if (n != NULL) {
        const char *t = pv_node_text(n, a);
        char *end;
        unsigned long long m;

        /* strtoull would accept a sign and leading space: refuse them */
        if (*t < '0' || *t > '9') {
            *cond = "bad-request";
            *text = "bad max";
            return PV_ERROR;
        }
        m = strtoull(t, &end, 10);
        if (*end != '\0') {
            *cond = "bad-request";
            *text = "bad max";
            return PV_ERROR;
        }
        r->has_max = 1;
        r->max = m > SIZE_MAX ? SIZE_MAX : (size_t)m;   /* ERANGE: huge */
    }
    n = pv_node_child(set, "after", NULL);
    if (n != NULL)
        r->after = pv_node_text(n, a);
    n = pv_node_child(set, "before", NULL);
    if (n != NULL)
        r->before = pv_node_text(n, a);
    return PV_OK;
}

pv_node_t *
pv_rsm_answer(pv_arena_t *a, pv_node_t *parent, const char *first,
              const char *last, long long count)
{
    pv_node_t *set = pv_node_new(a, "set", PV_NS_RSM, parent);

    if (first != NULL && last != NULL) {
        pv_node_add_text(a, pv_node_new(a, "first", NULL, set), first,
                         strlen(first));
        pv_node_add_text(a, pv_node_new(a, "last", NULL, set), last,
                         strlen(last));
    }
    if (count >= 0) {
        char num[24];
        int len = snprintf(num, sizeof(num), "%lld", count);

        pv_node_add_text(a, pv_node_new(a, "count", NULL, set), num,
                         (size_t)len);
    }
    return set;
}
