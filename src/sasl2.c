/* src/sasl2.c: placeholder for XEP-0388 SASL2 (not offered yet). */
#include <stdlib.h>

#include "palaver.h"

struct pv_sasl2_s {
    pv_c2s_t *c;
};

void
pv_sasl2_features(pv_c2s_t *c, pv_node_t *features, pv_arena_t *a)
{
    (void)c;
    (void)features;
    (void)a;
}

pv_sasl2_t *
pv_sasl2_new(pv_c2s_t *c)
{
    pv_sasl2_t *s = pv_xcalloc(1, sizeof(*s));

    s->c = c;
    return s;
}

void
pv_sasl2_input(pv_sasl2_t *s, pv_node_t *nonza)
{
    (void)nonza;
    pv_c2s_close(s->c, "unsupported-stanza-type");
}

void
pv_sasl2_free(pv_sasl2_t *s)
{
    free(s);
}
