/* src/map.h: a string-keyed hash map (open addressing, linear probing)
 * for the core's registries: users to sessions, IPs to counters. Keys are
 * borrowed: the value must own the key string and outlive its entry. */
#ifndef PV_MAP_H
#define PV_MAP_H

#include <stddef.h>

typedef struct pv_map_s {
    struct pv_map_slot_s *slots;
    size_t cap;   /* power of two, or 0 */
    size_t n;     /* live entries */
    size_t used;  /* live + tombstones */
} pv_map_t;

/* Zero-initialise a pv_map_t before use; pv_map_clear() frees the table
 * (not the values). */
void *pv_map_get(const pv_map_t *m, const char *key);
/* Inserts or replaces; key must stay valid while the entry exists. */
void pv_map_put(pv_map_t *m, const char *key, void *value);
/* Removes and returns the value (NULL if absent). */
void *pv_map_del(pv_map_t *m, const char *key);
/* Calls cb for each entry; cb must not modify the map. */
void pv_map_each(const pv_map_t *m, void (*cb)(void *arg, const char *key,
                                                void *value), void *arg);
void pv_map_clear(pv_map_t *m);

#endif
