/* include/palaver/dataform.h: XEP-0004 data form fields and the XEP-0059
 * result set (<set/>) that travels beside them in queries such as
 * XEP-0313 MAM: building fields, reading values, parsing a request's
 * paging parameters and writing the answer's. Pure tree helpers over
 * pv_node_t (include/palaver/xml.h): everything lives in the caller's
 * arena; no state. */
#ifndef PALAVER_DATAFORM_H
#define PALAVER_DATAFORM_H

#include <stddef.h>

#include <palaver/defs.h>
#include <palaver/mem.h>
#include <palaver/xml.h>

#define PV_NS_DATA "jabber:x:data"
#define PV_NS_RSM "http://jabber.org/protocol/rsm"

/* Appends <field var=var type=type label=label><value>value</value>
 * </field> to the form x (XEP-0004 §3.2); type, label and value NULL are
 * left out. Strings are copied into arena a. Returns the field. */
pv_node_t *pv_form_add_field(pv_arena_t *a, pv_node_t *x, const char *var,
                             const char *type, const char *label,
                             const char *value);

/* Text of the field's first <value/>, or NULL when it has none ("" for
 * an empty <value/>). Borrowed from the tree or allocated in a. */
const char *pv_form_field_value(const pv_node_t *field, pv_arena_t *a);

/* Every <value/> of a multi-value field, in document order, as an array
 * allocated in a (*vals NULL and *n 0 when there is none). PV_OK, or
 * PV_ERROR (*vals and *n untouched) when the field has more than max
 * values, so that a hostile list is refused before it is copied. */
pv_rc_t pv_form_field_values(const pv_node_t *field, pv_arena_t *a,
                             size_t max, const char ***vals, size_t *n);

/* XEP-0059 request parameters. */
typedef struct pv_rsm_s {
    int has_max;          /* <max/> was given ... */
    size_t max;           /* ... with this value (capped at SIZE_MAX) */
    const char *after;    /* <after/> text, NULL when absent; may be "" */
    const char *before;   /* <before/> text, NULL when absent; "" asks
                           * for the last page (XEP-0059 §2.5) */
} pv_rsm_t;

/* Reads the <set xmlns=PV_NS_RSM/> child of parent into *r (zeroed
 * first). Returns PV_OK, PV_NOTFOUND when there is no <set/>, or
 * PV_ERROR with *cond and *text (static strings) set to
 * "feature-not-implemented" for <index/> (paging by index is not offered)
 * and "bad-request" for a <max/> that is not a non-negative decimal
 * integer. Strings in *r are borrowed from the tree or allocated in a. */
pv_rc_t pv_rsm_parse(const pv_node_t *parent, pv_arena_t *a, pv_rsm_t *r,
                     const char **cond, const char **text);

/* Appends the answer <set xmlns=PV_NS_RSM/> to parent: <first/> and
 * <last/> when both are non-NULL, then <count/> when count >= 0. Returns
 * the <set/>. */
pv_node_t *pv_rsm_answer(pv_arena_t *a, pv_node_t *parent, const char *first,
                         const char *last, long long count);

#endif
