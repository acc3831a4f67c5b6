/* src/map.c: string-keyed open-addressing hash map (FNV-1a, linear
 * probing, tombstones). Owns only its slot array. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/mem.h>
#include "map.h"

#define TOMBSTONE ((const char *)&tombstone_mark)
static const char tombstone_mark = 0;

struct pv_map_slot_s {
    const char *key;   /* NULL empty, TOMBSTONE deleted */
    void *value;
    uint32_t hash;
};

static uint32_t
map_hash(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static struct pv_map_slot_s *
map_find(const pv_map_t *m, const char *key, uint32_t h)
{
    size_t i, mask = m->cap - 1;

    if (m->cap == 0)
        return NULL;
    for (i = h & mask;; i = (i + 1) & mask) {
        struct pv_map_slot_s *s = &m->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->key != TOMBSTONE && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

static void
map_grow(pv_map_t *m)
{
    struct pv_map_slot_s *old = m->slots;
    size_t old_cap = m->cap, i, mask;

    m->cap = old_cap ? (m->n * 4 > old_cap ? old_cap * 2 : old_cap) : 16;
    m->slots = pv_xcalloc(m->cap, sizeof(*m->slots));
    m->used = m->n;
    mask = m->cap - 1;
    for (i = 0; i < old_cap; i++) {
        size_t j;
        if (old[i].key == NULL || old[i].key == TOMBSTONE)
            continue;
        for (j = old[i].hash & mask; m->slots[j].key; j = (j + 1) & mask)
            ;
        m->slots[j] = old[i];
    }
    free(old);
}

void *
pv_map_get(const pv_map_t *m, const char *key)
{
    struct pv_map_slot_s *s = map_find(m, key, map_hash(key));

    return s ? s->value : NULL;
}

void
pv_map_put(pv_map_t *m, const char *key, void *value)
{
    uint32_t h = map_hash(key);
    struct pv_map_slot_s *s = map_find(m, key, h);
    size_t i, mask;

    if (s != NULL) {
        s->key = key;
        s->value = value;
        return;
    }
    /* keep the load (including tombstones) under 3/4 */
    if ((m->used + 1) * 4 > m->cap * 3)
        map_grow(m);
    mask = m->cap - 1;
    for (i = h & mask;; i = (i + 1) & mask) {
        s = &m->slots[i];
        if (s->key == NULL || s->key == TOMBSTONE)
            break;
    }
    if (s->key == NULL)
        m->used++;
    s->key = key;
    s->value = value;
    s->hash = h;
    m->n++;
}

void *
pv_map_del(pv_map_t *m, const char *key)
{
    struct pv_map_slot_s *s = map_find(m, key, map_hash(key));
    void *v;

    if (s == NULL)
        return NULL;
    v = s->value;
    s->key = TOMBSTONE;
    s->value = NULL;
    m->n--;
    return v;
}

void
pv_map_each(const pv_map_t *m,
            void (*cb)(void *arg, const char *key, void *value), void *arg)
{
    size_t i;

    for (i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL && m->slots[i].key != TOMBSTONE)
            cb(arg, m->slots[i].key, m->slots[i].value);
}

void
pv_map_clear(pv_map_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = m->used = 0;
}
